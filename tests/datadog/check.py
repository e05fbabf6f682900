#!/usr/bin/env python3
"""Checks deploy/datadog against Datadog's own API models and against the metrics mailprobe sends.

    check.py [--metrics FILE] [--no-tags] DEPLOY_DATADOG_DIR

- dashboard.json deserializes into datadog-api-client's v1 `Dashboard` and each
  monitors/*.json into v1 `Monitor`, strictly: the client is lenient (it keeps unknown keys and
  marks values that fit no model `_unparsed`), so every level of the result is walked and its keys
  compared with the model's `attribute_map`;
- every monitor query has the shape Datadog's monitor API documents for a metric monitor
  (`time_aggr(time_window):space_aggr:metric{tags} [by {keys}] operator #`, or the `change(...)`
  form), its threshold is `options.thresholds.critical`, and a warning threshold lies on the
  right side of it;
- every monitor message has `{{#is_alert}}` and `{{#is_recovery}}` sections, names the mailbox
  (and the failing requirement where the monitor is grouped by it) with tag variables of keys it
  is grouped by, in the bracket form that dotted keys need, a remedy and a runbook link that
  resolves to a heading of docs/runbook.md; it has tags and a renotify interval;
- every template variable of the dashboard is used by a query, and every `$var` a query uses is
  a template variable;
- with --metrics (a JSON list of {"name", "type": gauge|count|distribution, "tags": [...]}: what
  the Datadog Agent stores for what mailprobe sent), every metric a query names is in the list,
  used as its type allows (`.as_count()` only on counts, percentiles only on distributions), and
  (unless --no-tags) filtered and grouped only by tags it carries, plus the tags the Agent adds
  from the resource (`env`, `service`, `version`, `host`);
- terraform/main.tf parses (PyPI `python-hcl2`), reads the same JSON files and maps every key they
  use onto the `datadog_monitor` argument of the same name.

Exit 0 when all holds; otherwise each problem on its own line, exit 1.
"""
import json
import os
import re
import sys

try:
    from datadog_api_client import ApiClient, Configuration
    from datadog_api_client import model_utils as mu
    from datadog_api_client.v1.model.dashboard import Dashboard
    from datadog_api_client.v1.model.monitor import Monitor
except ImportError:
    sys.exit("datadog-api-client is missing: pip install datadog-api-client (see .ci/install-packages)")

PROBLEMS = []


def problem(msg):
    PROBLEMS.append(msg)


# ---------------------------------------------------------------- strict deserialization


def type_matches(cls, raw):
    """Whether a model's `type` enum (the oneOf discriminator of widgets) allows raw["type"]."""
    types = cls.openapi_types
    types = types() if callable(types) else types
    enum = types.get("type")
    enum = enum[0] if isinstance(enum, tuple) and enum else enum
    allowed = getattr(enum, "allowed_values", None)
    return isinstance(allowed, (set, dict)) and raw.get("type") in allowed


def closest(composed, raw, path):
    """Says why `raw` fits none of a oneOf's models: the problems of the model it comes closest to."""
    best = None
    candidates = [
        cls
        for cls in composed._composed_schemas.get("oneOf", [])
        if isinstance(cls, type) and issubclass(cls, mu.OpenApiModel)
    ]
    typed = [cls for cls in candidates if type_matches(cls, raw)]
    for cls in typed or candidates:
        found = []
        try:
            obj = ApiClient(Configuration()).deserialize(json.dumps(raw), (cls,), True)
        except Exception as e:
            found.append(f"{path}: as {cls.__name__}: {e}".replace("\n", " "))
        else:
            saved = PROBLEMS[:]
            PROBLEMS.clear()
            strict(obj, path)
            found = [f"{p} (as {cls.__name__})" for p in PROBLEMS]
            PROBLEMS[:] = saved
        if best is None or len(found) < len(best):
            best = found
    if best is None:
        best = [f"{path}: fits none of {type(composed).__name__}'s models"]
    for p in best:
        problem(p)


def strict(value, path):
    """Walks a deserialized model: every level's keys must be the model's own."""
    if isinstance(value, mu.ModelComposed):
        inner = value.get_oneof_instance()
        if inner is None:
            problem(f"{path}: no model of {type(value).__name__} matched")
        elif isinstance(inner, mu.UnparsedObject) or getattr(value, "_unparsed", False):
            raw = inner._data_store if isinstance(inner, mu.OpenApiModel) else inner
            closest(value, dict(raw), path)
        else:
            strict(inner, path)
    elif isinstance(value, mu.UnparsedObject):
        problem(f"{path}: not a valid value here ({value._data_store})")
    elif isinstance(value, mu.ModelSimple):
        if getattr(value, "_unparsed", False):
            problem(f"{path}: {value.value!r} is not an allowed value of {type(value).__name__}")
    elif isinstance(value, mu.OpenApiModel):
        if getattr(value, "_unparsed", False):
            problem(f"{path}: does not fit {type(value).__name__}")
        known = set(type(value).attribute_map.keys())
        for key, v in value._data_store.items():
            if key not in known:
                problem(f"{path}.{key}: unknown key for {type(value).__name__}")
            strict(v, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            strict(v, f"{path}[{i}]")
    elif isinstance(value, dict):
        for k, v in value.items():
            strict(v, f"{path}.{k}")


def load_model(path, model):
    text = open(path, encoding="utf-8").read()
    try:
        json.loads(text)
    except ValueError as e:
        problem(f"{path}: not JSON: {e}")
        return None
    try:
        obj = ApiClient(Configuration()).deserialize(text, (model,), True)
    except Exception as e:  # the client's own type errors
        problem(f"{path}: does not deserialize into {model.__name__}: {e}")
        return None
    strict(obj, os.path.basename(path))
    return obj


# ---------------------------------------------------------------- queries

REF = re.compile(
    r"(?P<agg>avg|min|max|sum|count|p\d{1,2}(?:\.\d+)?):"
    r"(?P<metric>[A-Za-z][A-Za-z0-9_.]*)"
    r"\{(?P<filter>[^}]*)\}"
    r"(?:\s*by\s*\{(?P<by>[^}]*)\})?"
    r"(?P<suffix>(?:\.[a-z_]+\([^)]*\))*)"
)
RESOURCE_TAGS = {"env", "service", "version", "host"}


def filter_terms(text):
    terms = []
    for part in re.split(r"\s+(?:OR|AND)\s+|,", text):
        part = part.strip().strip("()").strip()
        if part.startswith("NOT "):
            part = part[4:].strip()
        if part and part != "*":
            terms.append(part)
    return terms


def check_query(where, query, metrics, template_vars, check_tags):
    refs = list(REF.finditer(query))
    if not refs:
        problem(f"{where}: no metric in query {query!r}")
    for ref in refs:
        name = ref.group("metric")
        agg = ref.group("agg")
        suffix = ref.group("suffix") or ""
        if metrics is None:
            continue
        m = metrics.get(name)
        if m is None:
            problem(f"{where}: {name} is not a metric mailprobe sends (query {query!r})")
            continue
        kind = m["type"]
        if (".as_count()" in suffix or ".as_rate()" in suffix) and kind != "count":
            problem(f"{where}: {name} is a {kind}: .as_count()/.as_rate() apply to counts only")
        if kind == "count" and ".as_count()" not in suffix and ".as_rate()" not in suffix:
            problem(f"{where}: {name} is a count: say .as_count() or .as_rate()")
        if agg.startswith("p") and kind != "distribution":
            problem(f"{where}: {name} is a {kind}: percentiles apply to distributions only")
        if not check_tags:
            continue
        tags = set(m.get("tags", [])) | RESOURCE_TAGS
        for term in filter_terms(ref.group("filter")):
            if term.startswith("$"):
                var = term[1:]
                prefix = template_vars.get(var)
                if prefix is not None and prefix not in tags:
                    problem(f"{where}: ${var} filters {name} by {prefix}, a tag it does not carry")
                continue
            key = term.split(":", 1)[0].strip()
            if key not in tags:
                problem(f"{where}: {name} has no tag {key} (filter {term!r})")
        for key in (ref.group("by") or "").split(","):
            key = key.strip()
            if key and key not in tags:
                problem(f"{where}: {name} has no tag {key} to group by")


def metric_queries(node, out):
    """Every metrics query string of a dashboard (new-style `queries` of widget requests)."""
    if isinstance(node, dict):
        if node.get("data_source") == "metrics" and isinstance(node.get("query"), str):
            out.append(node["query"])
        for v in node.values():
            metric_queries(v, out)
    elif isinstance(node, list):
        for v in node:
            metric_queries(v, out)
    return out


# ---------------------------------------------------------------- runbook links


def runbook_anchors(repo):
    path = os.path.join(repo, "docs", "runbook.md")
    anchors = set()
    for line in open(path, encoding="utf-8"):
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^a-z0-9 _-]", "", title).replace(" ", "-"))
    return anchors


def check_runbook_links(where, text, anchors):
    links = re.findall(r"docs/runbook\.md(?:#([A-Za-z0-9_-]+))?", text)
    if not links:
        problem(f"{where}: no link to the runbook (docs/runbook.md)")
    for anchor in links:
        if anchor and anchor not in anchors:
            problem(f"{where}: runbook anchor #{anchor} is no heading of docs/runbook.md")


# ---------------------------------------------------------------- monitors

MONITOR_QUERY = re.compile(
    r"^(?P<change>change|pct_change)?\(?"
    r"(?P<time_aggr>avg|min|max|sum)\(last_(?P<window>\d+)(?P<unit>[mhdw])\)"
    r"(?:,last_\d+[mhdw]\))?"
    r":(?P<body>.+?)\s*(?P<op><=|>=|<|>|==|!=)\s*(?P<threshold>-?\d+(?:\.\d+)?)$"
)


def check_monitor(path, raw, metrics, check_tags, anchors):
    where = os.path.basename(path)
    if raw.get("type") not in ("query alert", "metric alert"):
        problem(f"{where}: type {raw.get('type')!r}: the metric monitors here are 'query alert'")
    query = raw.get("query", "")
    m = MONITOR_QUERY.match(query)
    if not m:
        problem(f"{where}: query {query!r} is not time_aggr(last_N):space_aggr:metric{{tags}} [by {{keys}}] op #")
        return
    if m.group("change") and not query.startswith(m.group("change") + "("):
        problem(f"{where}: change form must read change(time_aggr(window),timeshift):...")
    check_query(where, m.group("body"), metrics, {}, check_tags)
    options = raw.get("options", {})
    thresholds = options.get("thresholds", {})
    threshold = float(m.group("threshold"))
    if thresholds.get("critical") is None or float(thresholds["critical"]) != threshold:
        problem(f"{where}: the query's threshold {threshold} is not options.thresholds.critical {thresholds.get('critical')}")
    warning = thresholds.get("warning")
    if warning is not None:
        op = m.group("op")
        if op in (">", ">=") and not float(warning) < threshold:
            problem(f"{where}: with {op} the warning threshold must be below the critical one")
        if op in ("<", "<=") and not float(warning) > threshold:
            problem(f"{where}: with {op} the warning threshold must be above the critical one")
    if not options.get("renotify_interval"):
        problem(f"{where}: no renotify_interval")
    if not raw.get("tags"):
        problem(f"{where}: no tags")
    message = raw.get("message", "")
    for section in ("is_alert", "is_recovery"):
        if "{{#" + section + "}}" not in message or "{{/" + section + "}}" not in message:
            problem(f"{where}: message has no {{{{#{section}}}}}...{{{{/{section}}}}} section")
    if "remedy" not in message.lower():
        problem(f"{where}: message gives no remedy")
    check_runbook_links(where, message, anchors)
    group_by = set()
    for ref in REF.finditer(m.group("body")):
        group_by |= {k.strip() for k in (ref.group("by") or "").split(",") if k.strip()}
    text = raw.get("name", "") + "\n" + message
    for var in re.findall(r"\{\{\s*(\[[^\]]+\]|[A-Za-z0-9_.-]+)\.name\s*\}\}", text):
        key = var.strip("[]")
        if var.startswith("[") is False and "." in key:
            problem(f"{where}: {{{{{key}.name}}}}: a dotted key needs the bracket form {{{{[{key}].name}}}}")
        if key not in group_by:
            problem(f"{where}: {{{{{var}.name}}}} names a tag the monitor is not grouped by ({sorted(group_by)})")
    if "mailprobe.mailbox" in group_by and "{{[mailprobe.mailbox].name}}" not in message:
        problem(f"{where}: grouped by mailbox but the message does not name it")
    if "mailprobe.requirement" in group_by and "{{[mailprobe.requirement].name}}" not in message:
        problem(f"{where}: grouped by requirement but the message does not name it")


# ---------------------------------------------------------------- terraform


def check_terraform(deploy, monitors):
    """main.tf parses as HCL2, reads the same JSON files, and maps every key they use onto the
    `datadog_monitor` argument of the same name."""
    path = os.path.join(deploy, "terraform", "main.tf")
    if not os.path.isfile(path):
        problem("terraform/main.tf is missing")
        return
    try:
        import hcl2
    except ImportError:
        problem("python-hcl2 is missing: pip install python-hcl2 (see .ci/install-packages)")
        return
    tf = open(path, encoding="utf-8").read()
    try:
        parsed = hcl2.loads(tf)
    except Exception as e:
        problem(f"terraform/main.tf does not parse as HCL2: {e}")
        return
    resources = {}
    for block in parsed.get("resource", []):
        for rtype, named in block.items():
            for _, body in named.items():
                resources[rtype.strip('"')] = body
    monitor = resources.get("datadog_monitor")
    if monitor is None:
        problem("terraform/main.tf has no datadog_monitor resource")
        return
    dashboard = resources.get("datadog_dashboard_json", {})
    if "../dashboard.json" not in str(dashboard.get("dashboard", "")):
        problem("terraform/main.tf: datadog_dashboard_json does not read ../dashboard.json")
    local_text = json.dumps(parsed.get("locals", []))
    if "../monitors" not in local_text or "jsondecode" not in local_text:
        problem("terraform/main.tf does not read ../monitors/*.json")
    if "local.monitors" not in str(monitor.get("for_each", "")):
        problem("terraform/main.tf: datadog_monitor is not one per monitor file")
    thresholds = (monitor.get("monitor_thresholds") or [{}])[0]
    for name, raw in monitors.items():
        for key in raw:
            if key == "options":
                continue
            if f"each.value.{key}" not in str(monitor.get(key, "")):
                problem(f"terraform/main.tf: datadog_monitor.{key} does not take {key} (used by {name})")
        for key in raw.get("options", {}):
            if key == "thresholds":
                continue
            if f"each.value.options.{key}" not in str(monitor.get(key, "")):
                problem(f"terraform/main.tf: datadog_monitor.{key} does not take options.{key} (used by {name})")
        for key in raw.get("options", {}).get("thresholds", {}):
            if f"each.value.options.thresholds.{key}" not in str(thresholds.get(key, "")):
                problem(f"terraform/main.tf: monitor_thresholds.{key} does not take options.thresholds.{key} (used by {name})")


# ---------------------------------------------------------------- main


def main(argv):
    metrics_file = None
    check_tags = True
    args = []
    i = 0
    while i < len(argv):
        if argv[i] == "--metrics":
            metrics_file = argv[i + 1]
            i += 2
            continue
        if argv[i] == "--no-tags":
            check_tags = False
        else:
            args.append(argv[i])
        i += 1
    if len(args) != 1:
        sys.exit(__doc__)
    deploy = args[0]
    repo = os.path.dirname(os.path.dirname(os.path.abspath(deploy)))
    anchors = runbook_anchors(repo)
    metrics = None
    if metrics_file:
        metrics = {m["name"]: m for m in json.load(open(metrics_file, encoding="utf-8"))}

    dash_path = os.path.join(deploy, "dashboard.json")
    load_model(dash_path, Dashboard)
    dash = json.load(open(dash_path, encoding="utf-8"))
    template_vars = {v["name"]: v.get("prefix") for v in dash.get("template_variables", [])}
    queries = metric_queries(dash.get("widgets", []), [])
    if not queries:
        problem("dashboard.json: no metric queries")
    for q in queries:
        check_query("dashboard.json", q, metrics, template_vars, check_tags)
        for var in re.findall(r"\$([A-Za-z0-9_]+)", q):
            if var not in template_vars:
                problem(f"dashboard.json: ${var} is no template variable (query {q!r})")
    for var in template_vars:
        if not any(re.search(r"\$" + re.escape(var) + r"\b", q) for q in queries):
            problem(f"dashboard.json: template variable ${var} is used by no query")
    check_runbook_links("dashboard.json", json.dumps(dash), anchors)

    monitor_dir = os.path.join(deploy, "monitors")
    monitors = {}
    for name in sorted(os.listdir(monitor_dir)):
        if not name.endswith(".json"):
            continue
        path = os.path.join(monitor_dir, name)
        load_model(path, Monitor)
        raw = json.load(open(path, encoding="utf-8"))
        monitors[name] = raw
        check_monitor(path, raw, metrics, check_tags, anchors)
    if not monitors:
        problem("monitors/: no monitor")
    check_terraform(deploy, monitors)

    if PROBLEMS:
        print("\n".join(PROBLEMS))
        return 1
    print(f"ok: dashboard ({len(queries)} queries), {len(monitors)} monitors, terraform")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
