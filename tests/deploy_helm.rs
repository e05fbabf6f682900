//! The Helm chart (deploy/helm/mailprobe), rendered by Helm's own Go SDK through PyPI's
//! `helm-python-sdk` (tests/helm/render.py: `helm lint --strict` and `helm template`, offline),
//! for the defaults and every `ci/*-values.yaml`, with the sidecar's contract asserted on what
//! is rendered: the application's pod is never rolled by a probe config change (no config
//! checksum; the probe reloads the mounted file), keeps its QoS class (requests = limits), is
//! never evicted for the probe's scratch space (memory-backed, bounded), never waits on or is
//! made unready by a probe of the sidecar, and gets nothing pod-wide from the chart. Also the
//! chart's own conventions, checked on its files: every value a template reads is defined and
//! every value is used, `values.schema.json` covers every value (and types `config`, so a typo
//! fails at install), the README's values table is generated from values.yaml, Chart.yaml is
//! complete, and the shard count comes from the one `replicas` value.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_norway::Value;

const CHART: &str = "deploy/helm/mailprobe";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Value {
    let v: Value = serde_norway::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    if v.is_null() {
        Value::Mapping(Default::default())
    } else {
        v
    }
}

fn values() -> Value {
    yaml(&format!("{CHART}/values.yaml"))
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn top_keys(v: &Value) -> Vec<String> {
    v.as_mapping()
        .map(|m| {
            m.keys()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Every `.Values.a.b.c` path a template uses.
fn values_refs(template: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find(".Values.") {
        let tail = &rest[i + ".Values.".len()..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(tail.len());
        let path: Vec<String> = tail[..end]
            .trim_end_matches('.')
            .split('.')
            .map(str::to_string)
            .collect();
        out.push(path);
        rest = &tail[end..];
    }
    out
}

fn chart_templates() -> Vec<(String, String)> {
    let dir = root().join(CHART).join("templates");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("templates/")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read_to_string(&p).expect("template"))
        })
        .collect();
    files.sort();
    files
}

fn template(name: &str) -> String {
    read(&format!("{CHART}/templates/{name}"))
}

/// The body of `{{- define "NAME" -}} ... {{- end -}}` in _helpers.tpl (up to the next define).
fn define(name: &str) -> String {
    let helpers = template("_helpers.tpl");
    let start = helpers
        .find(&format!("define \"{name}\""))
        .unwrap_or_else(|| panic!("_helpers.tpl defines no {name}"));
    let body = &helpers[start..];
    let end = body[1..].find("define \"").map_or(body.len(), |e| e + 1);
    body[..end].to_string()
}

/// ci/*-values.yaml: (file name, values).
fn ci_values() -> Vec<(String, Value)> {
    let dir = root().join(CHART).join("ci");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with("-values.yaml"))
        .map(|n| {
            let v = yaml(&format!("{CHART}/ci/{n}"));
            (n, v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Helm's coalescing of a values file over the defaults: maps merge, anything else replaces.
fn merge(base: &Value, over: &Value) -> Value {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            let mut out = b.clone();
            for (k, v) in o {
                let merged = match b.get(k) {
                    Some(bv) => merge(bv, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Mapping(out)
        }
        _ => over.clone(),
    }
}

#[test]
fn templates_use_only_values_that_values_yaml_defines_and_every_value_is_used() {
    let values = values();
    let templates = chart_templates();
    assert!(templates.len() >= 9, "{templates:?}");
    let mut used_top = std::collections::BTreeSet::new();
    let mut used = 0;
    for (name, text) in &templates {
        for path in values_refs(text) {
            used += 1;
            let refs: Vec<&str> = path.iter().map(String::as_str).collect();
            assert!(
                s(&values, &refs).is_some(),
                "templates/{name}: .Values.{} is not in values.yaml",
                path.join(".")
            );
            used_top.insert(path[0].clone());
        }
    }
    assert!(
        used > 40,
        "only {used} references found: is the parser broken?"
    );
    for key in top_keys(&values) {
        assert!(
            used_top.contains(&key),
            "values.yaml: `{key}` is read by no template"
        );
    }
}

#[test]
fn values_follow_the_community_chart_layout() {
    let values = values();
    for path in [
        "nameOverride",
        "fullnameOverride",
        "image.registry",
        "image.repository",
        "image.tag",
        "image.digest",
        "image.pullPolicy",
        "imagePullSecrets",
        "replicas",
        "mode",
        "mailboxes",
        "existingSecret",
        "otlp.endpoint",
        "alertmanager.url",
        "config",
        "extraEnv",
        "extraEnvFrom",
        "extraVolumes",
        "extraVolumeMounts",
        "podSecurityContext",
        "securityContext",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "resources",
        "serviceAccount.create",
        "serviceAccount.name",
        "podDisruptionBudget.enabled",
        "networkPolicy.enabled",
        "serviceMonitor.enabled",
        "serviceMonitor.interval",
        "serviceMonitor.labels",
        "serviceMonitor.relabelings",
        "prometheusRule.enabled",
        "prometheusRule.labels",
        "prometheusRule.runbookUrl",
        "nodeSelector",
        "tolerations",
        "affinity",
    ] {
        let p: Vec<&str> = path.split('.').collect();
        assert!(s(&values, &p).is_some(), "values.yaml has no {path}");
    }
    assert_eq!(
        values.get("mode").and_then(Value::as_str),
        Some("standalone")
    );
    // No fixed UID, GID or fsGroup: OpenShift's restricted-v2 assigns them.
    for sc in ["securityContext", "podSecurityContext", "app"] {
        for key in ["runAsUser", "runAsGroup", "fsGroup"] {
            let found =
                s(&values, &[sc, key]).or_else(|| s(&values, &[sc, "podSecurityContext", key]));
            assert!(found.is_none(), "values.yaml: {sc}.{key} is fixed");
        }
    }
    assert_eq!(
        s(&values, &["securityContext", "runAsNonRoot"]).and_then(Value::as_bool),
        Some(true)
    );
    assert_eq!(
        s(&values, &["securityContext", "readOnlyRootFilesystem"]).and_then(Value::as_bool),
        Some(true)
    );
    // Passwords never come from values.
    assert!(
        !read(&format!("{CHART}/values.yaml"))
            .lines()
            .any(|l| !l.trim_start().starts_with('#') && l.contains("password:")),
        "values.yaml: a password"
    );
    // Each optional object has its own template, of the right kind.
    for (file, kind, gate) in [
        (
            "poddisruptionbudget.yaml",
            "PodDisruptionBudget",
            "podDisruptionBudget.enabled",
        ),
        (
            "networkpolicy.yaml",
            "NetworkPolicy",
            "networkPolicy.enabled",
        ),
        (
            "serviceaccount.yaml",
            "ServiceAccount",
            "serviceAccount.create",
        ),
        (
            "servicemonitor.yaml",
            "ServiceMonitor",
            "serviceMonitor.enabled",
        ),
        (
            "prometheusrule.yaml",
            "PrometheusRule",
            "prometheusRule.enabled",
        ),
    ] {
        let t = template(file);
        assert!(t.contains(&format!("kind: {kind}")), "{file}: kind {kind}");
        assert!(
            t.contains(&format!(".Values.{gate}")),
            "{file} is not gated by {gate}"
        );
    }
    // The image reference: registry (global first), repository, tag, digest.
    let image = define("mailprobe.image");
    for v in [
        ".Values.global.imageRegistry",
        ".Values.image.registry",
        ".Values.image.repository",
        ".Values.image.tag",
        ".Values.image.digest",
    ] {
        assert!(image.contains(v), "mailprobe.image ignores {v}");
    }
    let names = define("mailprobe.fullname");
    assert!(names.contains(".Values.fullnameOverride") && names.contains(".Values.nameOverride"));
    let container = define("mailprobe.container");
    for v in [
        ".Values.extraEnv",
        ".Values.extraEnvFrom",
        ".Values.extraVolumeMounts",
        ".Values.securityContext",
        ".Values.livenessProbe",
        ".Values.readinessProbe",
        ".Values.resources",
    ] {
        assert!(container.contains(v), "mailprobe.container ignores {v}");
    }
    assert!(define("mailprobe.volumes").contains(".Values.extraVolumes"));
    assert!(define("mailprobe.podScheduling").contains(".Values.imagePullSecrets"));
    assert!(define("mailprobe.config").contains(".Values.config"));
}

#[test]
fn nothing_can_stop_helm_lint_on_the_default_values() {
    for (name, text) in chart_templates() {
        let mut rest = text.as_str();
        while let Some(i) = rest.find("{{") {
            let Some(j) = rest[i..].find("}}") else { break };
            let action = &rest[i + 2..i + j];
            let words: Vec<&str> = action
                .split(|c: char| c.is_whitespace() || c == '(' || c == '|' || c == '-')
                .collect();
            for bad in ["fail", "required"] {
                assert!(
                    !words.contains(&bad),
                    "templates/{name}: `{bad}` in {{{{{action}}}}}: the defaults must render (helm lint)"
                );
            }
            rest = &rest[i + j + 2..];
        }
    }
    let ci = ci_values();
    let names: Vec<&str> = ci.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"default-values.yaml"), "{names:?}");
    let modes: Vec<&str> = ci
        .iter()
        .map(|(_, v)| {
            v.get("mode")
                .and_then(Value::as_str)
                .unwrap_or("standalone")
        })
        .collect();
    assert!(
        modes.contains(&"sidecar") && modes.contains(&"standalone"),
        "ci/ covers both modes: {modes:?}"
    );
    let values = values();
    for (name, v) in &ci {
        for key in top_keys(v) {
            assert!(
                values.get(key.as_str()).is_some(),
                "ci/{name}: `{key}` is not a value of the chart"
            );
        }
    }
}

#[test]
fn values_schema_covers_every_value_and_accepts_the_defaults_and_ci_values() {
    let schema: serde_json::Value =
        serde_json::from_str(&read(&format!("{CHART}/values.schema.json")))
            .expect("values.schema.json is JSON");
    let values = values();
    let mut declared: Vec<String> = schema["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .cloned()
        .collect();
    declared.sort();
    let mut keys = top_keys(&values);
    keys.sort();
    assert_eq!(
        declared, keys,
        "values.schema.json's properties and values.yaml's keys differ"
    );
    assert_eq!(
        schema["additionalProperties"], false,
        "a misspelt value must be refused, not ignored"
    );

    let ci = ci_values();
    let mut docs = vec![values.clone()];
    docs.extend(ci.iter().map(|(_, v)| merge(&values, v)));
    // And what the schema must refuse.
    let bad: Vec<(&str, &str)> = vec![
        ("mode", "mode: sidecars"),
        ("replicas", "replicas: 0"),
        (
            "password",
            "mailboxes: [{name: a, imap: i, user: u, password: x}]",
        ),
        ("digest", "image: {digest: latest}"),
        ("unknown", "shards: 3"),
        ("interval", "interval: 5 minutes"),
    ];
    for (_, text) in &bad {
        let over: Value = serde_norway::from_str(text).expect("bad values");
        docs.push(merge(&values, &over));
    }
    let errors = schema_errors(&docs);
    assert_eq!(errors.len(), docs.len());
    assert_eq!(errors[0], "", "values.yaml does not match its schema");
    for (i, (name, _)) in ci.iter().enumerate() {
        assert_eq!(errors[i + 1], "", "ci/{name} does not match the schema");
    }
    for (i, (what, text)) in bad.iter().enumerate() {
        assert!(
            !errors[1 + ci.len() + i].is_empty(),
            "the schema accepts {text} ({what})"
        );
    }
}

#[test]
fn the_shard_count_is_the_one_replicas_value() {
    let workload = template("workload.yaml");
    assert!(workload.contains("replicas: {{ .Values.replicas }}"));
    let container = define("mailprobe.container");
    assert!(container.contains("fieldPath: metadata.labels['apps.kubernetes.io/pod-index']"));
    assert!(container.contains(r#"value: "$(POD_INDEX)/{{ .Values.replicas }}""#));
    assert!(
        !read(&format!("{CHART}/values.yaml")).contains("shards:"),
        "a second shard count"
    );
}

/// Validates `docs` against the chart's schema with Debian's python3-jsonschema: the errors
/// of each document, as text.
fn schema_errors(docs: &[Value]) -> Vec<String> {
    let schema: serde_json::Value =
        serde_json::from_str(&read(&format!("{CHART}/values.schema.json")))
            .expect("values.schema.json is JSON");
    let input = serde_json::json!({
        "schema": schema,
        "values": docs.iter().map(|d| serde_json::to_value(d).expect("YAML as JSON")).collect::<Vec<_>>(),
    });
    let program = r#"
import json, sys
try:
    import jsonschema
except ImportError:
    sys.exit("python3-jsonschema is not installed (apt-get install python3-jsonschema)")
d = json.load(sys.stdin)
jsonschema.Draft7Validator.check_schema(d["schema"])
v = jsonschema.Draft7Validator(d["schema"])
print(json.dumps([sorted("/".join(map(str, e.path)) + ": " + e.message for e in v.iter_errors(x)) for x in d["values"]]))
"#;
    // Debian's interpreter: the package installs there, whatever python3 is first on the PATH.
    let python = "/usr/bin/python3";
    let mut child = Command::new(python)
        .args(["-c", program])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{python}: {e} (apt-get install python3 python3-jsonschema)"));
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(input.to_string().as_bytes())
            .expect("write to python3");
    }
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "jsonschema: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let per_doc: Vec<Vec<String>> =
        serde_json::from_slice(&out.stdout).expect("jsonschema's answer");
    per_doc.into_iter().map(|e| e.join("; ")).collect()
}

/// `helm lint --strict` and `helm template` through tests/helm/render.py.
struct Rendered {
    lint_errors: Vec<String>,
    render_error: Option<String>,
    /// Every document, by template path.
    docs: Vec<(String, Value)>,
    /// Every document as Helm wrote it (YAML 1.1, as the API server reads it: `0444` is octal).
    raw: Vec<String>,
    /// What `helm install` prints (NOTES.txt).
    notes: String,
}

impl Rendered {
    fn kind(&self, kind: &str) -> Vec<&Value> {
        self.docs
            .iter()
            .map(|(_, d)| d)
            .filter(|d| d.get("kind").and_then(Value::as_str) == Some(kind))
            .collect()
    }

    fn one(&self, kind: &str) -> &Value {
        let all = self.kind(kind);
        assert_eq!(all.len(), 1, "one {kind}");
        all[0]
    }
}

fn helm(values_file: Option<&str>, json: Option<&str>, kube_version: Option<&str>) -> Rendered {
    let mut cmd = Command::new("python3");
    cmd.arg(root().join("tests/helm/render.py"))
        .arg(root().join(CHART));
    if let Some(f) = values_file {
        cmd.arg(root().join(CHART).join("ci").join(f));
    }
    if let Some(j) = json {
        cmd.args(["--json", j]);
    }
    if let Some(k) = kube_version {
        cmd.args(["--kube-version", k]);
    }
    let out = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "tests/helm/render.py failed (install the PyPI package helm-python-sdk; .ci/install-packages does): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("render.py's JSON");
    let lint_errors = report["lint"]["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let render_error = report["render_error"].as_str().map(String::from);
    let mut docs = Vec::new();
    let mut raw = Vec::new();
    let mut notes = String::new();
    if let Some(m) = report["manifests"].as_object() {
        let mut paths: Vec<&String> = m.keys().collect();
        paths.sort();
        for path in paths {
            if path.ends_with("NOTES.txt") {
                notes = m[path].as_str().unwrap_or_default().to_string();
                continue;
            }
            let text = m[path].as_str().unwrap_or_default();
            for part in text.split("\n---") {
                let v: Value = serde_norway::from_str(part)
                    .unwrap_or_else(|e| panic!("{path}: not YAML: {e}\n{part}"));
                if !v.is_null() {
                    docs.push((path.clone(), v));
                    raw.push(part.to_string());
                }
            }
        }
    }
    Rendered {
        lint_errors,
        render_error,
        docs,
        raw,
        notes,
    }
}

/// The defaults (None) and every ci/*-values.yaml.
fn every_values_file() -> Vec<Option<String>> {
    let mut all = vec![None];
    all.extend(ci_values().into_iter().map(|(n, _)| Some(n)));
    all
}

fn pod_spec(workload: &Value) -> &Value {
    s(workload, &["spec", "template", "spec"]).expect("a pod template")
}

fn seq(v: Option<&Value>) -> Vec<&Value> {
    v.and_then(Value::as_sequence)
        .map(|s| s.iter().collect())
        .unwrap_or_default()
}

fn named<'a>(list: Vec<&'a Value>, name: &str) -> Option<&'a Value> {
    list.into_iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
}

/// A quantity as a number (cores or bytes), enough to compare requests with limits.
fn quantity(v: &Value) -> f64 {
    let t = match v {
        Value::Number(n) => return n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) => s.as_str(),
        _ => return f64::NAN,
    };
    for (suffix, factor) in [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("m", 0.001),
    ] {
        if let Some(n) = t.strip_suffix(suffix) {
            return n.parse::<f64>().map_or(f64::NAN, |n| n * factor);
        }
    }
    t.parse().unwrap_or(f64::NAN)
}

/// Kubernetes' QoS class of a pod: Guaranteed when every container (init containers included)
/// has cpu and memory limits, and requests equal to them.
fn guaranteed(pod: &Value) -> bool {
    let mut all = seq(pod.get("containers"));
    all.extend(seq(pod.get("initContainers")));
    all.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let limit = s(c, &["resources", "limits", r]);
            let request = s(c, &["resources", "requests", r]).or(limit);
            matches!((request, limit), (Some(a), Some(b)) if quantity(a) == quantity(b))
        })
    })
}

fn arg<'a>(container: &'a Value, flag: &str) -> Option<&'a str> {
    seq(container.get("args"))
        .into_iter()
        .filter_map(Value::as_str)
        .find_map(|a| a.strip_prefix(flag)?.strip_prefix('='))
}

#[test]
fn helm_lint_strict_and_template_pass_for_the_defaults_and_every_ci_values_file() {
    for file in every_values_file() {
        let r = helm(file.as_deref(), None, None);
        assert!(r.lint_errors.is_empty(), "{file:?}: {:?}", r.lint_errors);
        assert!(r.render_error.is_none(), "{file:?}: {:?}", r.render_error);
        assert!(!r.docs.is_empty(), "{file:?}: nothing rendered");
        // Both sides of app.nativeSidecar: auto (before and after native sidecars).
        for kube in ["v1.27.0", "v1.30.0"] {
            let r = helm(file.as_deref(), None, Some(kube));
            assert!(
                r.lint_errors.is_empty(),
                "{file:?} on {kube}: {:?}",
                r.lint_errors
            );
        }
    }
}

#[test]
fn sidecar_contract_holds_on_what_the_chart_renders() {
    let mut sidecars = 0;
    let mut natives = 0;
    for file in every_values_file() {
        let json = if file.is_none() {
            // The defaults in sidecar mode.
            Some(r#"{"mode": "sidecar"}"#)
        } else {
            None
        };
        let r = helm(file.as_deref(), json, None);
        assert!(r.render_error.is_none(), "{file:?}: {:?}", r.render_error);
        if r.kind("StatefulSet").len() == 1 {
            continue;
        }
        sidecars += 1;
        let deployment = r.one("Deployment");
        let pod = pod_spec(deployment);
        let what = format!("{file:?}");
        // No rollout for a probe config change: nothing of the config on the pod template.
        let annotations = s(deployment, &["spec", "template", "metadata", "annotations"]);
        assert!(
            annotations.is_none_or(|a| a.get("checksum/config").is_none()),
            "{what}: checksum/config on the application's pod template rolls it on every probe config change"
        );
        let init = named(seq(pod.get("initContainers")), "mailprobe");
        let plain = named(seq(pod.get("containers")), "mailprobe");
        let probe = match (init, plain) {
            (Some(c), None) => {
                natives += 1;
                assert_eq!(
                    c.get("restartPolicy").and_then(Value::as_str),
                    Some("Always"),
                    "{what}: an init container without restartPolicy: Always never lets the application start"
                );
                c
            }
            (None, Some(c)) => {
                assert!(c.get("restartPolicy").is_none(), "{what}");
                c
            }
            _ => panic!("{what}: exactly one mailprobe container"),
        };
        // Reload from the mounted file; listen where the kubelet and Prometheus reach it,
        // whatever the config says.
        let every = arg(probe, "--reload-interval").expect("--reload-interval");
        assert!(
            every.ends_with('s') || every.ends_with('m'),
            "{what}: {every}"
        );
        let listen = arg(probe, "--web.listen-address").expect("--web.listen-address");
        assert!(listen.starts_with("0.0.0.0:"), "{what}: {listen}");
        let port = seq(probe.get("ports"))
            .first()
            .and_then(|p| p.get("containerPort"))
            .and_then(Value::as_u64)
            .expect("a containerPort");
        assert!(
            listen.ends_with(&format!(":{port}")),
            "{what}: {listen} vs {port}"
        );
        // No probe on the sidecar: each could hold back or unready the application's pod.
        for p in ["startupProbe", "readinessProbe", "livenessProbe"] {
            assert!(probe.get(p).is_none(), "{what}: the sidecar has a {p}");
        }
        // QoS: requests equal limits; a Guaranteed application stays Guaranteed.
        for r in ["cpu", "memory"] {
            let req = s(probe, &["resources", "requests", r]).expect("a request");
            let lim = s(probe, &["resources", "limits", r]).expect("a limit");
            assert_eq!(quantity(req), quantity(lim), "{what}: {r}");
        }
        let app_guaranteed = {
            let mut p = pod.clone();
            for key in ["containers", "initContainers"] {
                if let Some(Value::Sequence(list)) = p.get_mut(key) {
                    list.retain(|c| c.get("name").and_then(Value::as_str) != Some("mailprobe"));
                }
            }
            guaranteed(&p)
        };
        assert_eq!(
            guaranteed(pod),
            app_guaranteed,
            "{what}: the probe changes the pod's QoS class"
        );
        // Scratch space: memory-backed and bounded (a write error, never an eviction).
        let tmp = named(seq(pod.get("volumes")), "mailprobe-tmp").expect("the scratch volume");
        assert_eq!(
            s(tmp, &["emptyDir", "medium"]).and_then(Value::as_str),
            Some("Memory"),
            "{what}"
        );
        assert!(
            s(tmp, &["emptyDir", "sizeLimit"]).is_some(),
            "{what}: unbounded"
        );
        // A missing Secret never keeps the pod from starting.
        let secret = named(seq(pod.get("volumes")), "mailprobe-passwords").expect("passwords");
        assert_eq!(
            s(secret, &["secret", "optional"]).and_then(Value::as_bool),
            Some(true)
        );
        // A fully qualified image: the first component is a registry host.
        let image = probe.get("image").and_then(Value::as_str).expect("image");
        let host = image.split('/').next().unwrap_or_default();
        assert!(
            image.contains('/')
                && (host.contains('.') || host.contains(':') || host == "localhost"),
            "{what}: {image} is not fully qualified"
        );
        // Nothing pod-wide from the chart, no object selecting the application's pods.
        for key in [
            "terminationGracePeriodSeconds",
            "automountServiceAccountToken",
            "serviceAccountName",
        ] {
            assert!(
                pod.get(key).is_none(),
                "{what}: sets {key} on the application's pod"
            );
        }
        for kind in ["PodDisruptionBudget", "NetworkPolicy", "ServiceAccount"] {
            assert!(r.kind(kind).is_empty(), "{what}: a {kind} in sidecar mode");
        }
    }
    assert!(
        sidecars >= 3 && natives >= 1,
        "{sidecars} sidecar renders, {natives} native"
    );
}

#[test]
fn a_guaranteed_application_pod_stays_guaranteed() {
    // The ci files give the application requests = limits; so must the probe.
    for f in ["sidecar-values.yaml", "native-sidecar-values.yaml"] {
        let r = helm(Some(f), None, None);
        assert!(guaranteed(pod_spec(r.one("Deployment"))), "{f}");
    }
}

#[test]
fn standalone_shards_roll_on_config_change_and_never_block_a_drain() {
    let r = helm(None, None, None);
    let sts = r.one("StatefulSet");
    let annotations =
        s(sts, &["spec", "template", "metadata", "annotations"]).expect("annotations");
    assert!(annotations.get("checksum/config").is_some());
    let c = named(seq(pod_spec(sts).get("containers")), "mailprobe").expect("the probe");
    assert!(c.get("livenessProbe").is_some() && c.get("readinessProbe").is_some());
    assert!(arg(c, "--reload-interval").is_some());
    let pdb = r.one("PodDisruptionBudget");
    assert_eq!(
        s(pdb, &["spec", "unhealthyPodEvictionPolicy"]).and_then(Value::as_str),
        Some("AlwaysAllow")
    );
    let tmp = named(seq(pod_spec(sts).get("volumes")), "mailprobe-tmp").expect("scratch");
    assert_eq!(
        s(tmp, &["emptyDir", "medium"]).and_then(Value::as_str),
        Some("Memory")
    );
}

#[test]
fn a_misspelt_config_key_fails_at_install() {
    let r = helm(None, Some(r#"{"config": {"intervall": "5m"}}"#), None);
    assert!(
        r.lint_errors.iter().any(|e| e.contains("intervall")),
        "{:?}",
        r.lint_errors
    );
    assert!(r.render_error.is_some_and(|e| e.contains("intervall")));
    let r = helm(
        None,
        Some(r#"{"config": {"otlp": {"endpont": "http://x:4317"}}}"#),
        None,
    );
    assert!(r.render_error.is_some_and(|e| e.contains("endpont")));
    let r = helm(
        None,
        Some(r#"{"config": {"alerts": {"alert_after": 3}, "server_connections": 4}}"#),
        None,
    );
    assert!(
        r.render_error.is_none() && r.lint_errors.is_empty(),
        "{:?}",
        r.lint_errors
    );
}

#[test]
fn the_schema_types_every_key_of_the_config_file() {
    let out = Command::new(env!("CARGO_BIN_EXE_mailprobe"))
        .arg("config-reference")
        .output()
        .expect("mailprobe config-reference");
    let text = String::from_utf8_lossy(&out.stdout);
    let top = text
        .split("## Top level")
        .nth(1)
        .and_then(|t| t.split("\n## ").next())
        .expect("the top-level table");
    let keys: Vec<&str> = top
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .collect();
    assert!(keys.contains(&"interval"), "{keys:?}");
    let schema: serde_json::Value =
        serde_json::from_str(&read(&format!("{CHART}/values.schema.json"))).expect("schema");
    let config = &schema["properties"]["config"];
    assert_eq!(
        config["additionalProperties"],
        serde_json::Value::Bool(false)
    );
    for key in keys {
        // The chart writes the mailboxes itself, from `mailboxes`.
        if key == "mailboxes" {
            continue;
        }
        assert!(
            config["properties"].get(key).is_some(),
            "values.schema.json does not type config.{key}: a user could not set it"
        );
    }
    // And every key of a mailbox entry (`mailboxes`), where a typo fails at install too.
    let entry = text
        .split("## `mailboxes[]`")
        .nth(1)
        .and_then(|t| t.split("\n## ").next())
        .expect("the mailboxes[] table");
    let mailbox = &schema["properties"]["mailboxes"]["items"];
    assert_eq!(
        mailbox["additionalProperties"],
        serde_json::Value::Bool(false)
    );
    for key in entry
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
    {
        assert!(
            mailbox["properties"].get(key).is_some(),
            "values.schema.json does not type mailboxes[].{key}"
        );
    }
    let r = helm(
        None,
        Some(
            r#"{"mailboxes": [{"name": "a", "imap": "imap.example.com", "user": "u", "usr": "u"}]}"#,
        ),
        None,
    );
    assert!(r.render_error.is_some_and(|e| e.contains("usr")));
}

#[test]
fn chart_metadata_is_complete() {
    let chart = yaml(&format!("{CHART}/Chart.yaml"));
    for key in [
        "apiVersion",
        "name",
        "version",
        "appVersion",
        "kubeVersion",
        "home",
        "sources",
        "maintainers",
        "icon",
        "description",
    ] {
        assert!(chart.get(key).is_some(), "Chart.yaml lacks {key}");
    }
    assert_eq!(chart.get("apiVersion").and_then(Value::as_str), Some("v2"));
    // home is the repository the runbook links point into.
    let cargo = read("Cargo.toml");
    let repo = cargo
        .lines()
        .find_map(|l| l.strip_prefix("repository = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("Cargo.toml's repository");
    assert_eq!(chart.get("home").and_then(Value::as_str), Some(repo));
    let icon = chart
        .get("icon")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let local = icon
        .strip_prefix(&format!("{repo}/raw/main/"))
        .expect("the icon is a file of the repository");
    assert!(root().join(local).is_file(), "{local}");
    // A chart can only read files inside itself: it carries a copy of the rules.
    assert_eq!(
        read(&format!("{CHART}/files/rules.yml")),
        read("deploy/prometheus/rules.yml"),
        "{CHART}/files/rules.yml must be a copy of deploy/prometheus/rules.yml"
    );
}

fn rules_of(r: &Rendered) -> Vec<&Value> {
    seq(s(r.one("PrometheusRule"), &["spec", "groups"]))
        .into_iter()
        .flat_map(|g| seq(g.get("rules")))
        .collect()
}

fn alert(rule: &Value) -> &str {
    rule.get("alert")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

#[test]
fn prometheus_rules_link_the_runbook_and_can_be_disabled_and_labelled() {
    let chart = yaml(&format!("{CHART}/Chart.yaml"));
    let home = chart.get("home").and_then(Value::as_str).unwrap();
    let app = chart.get("appVersion").and_then(Value::as_str).unwrap();
    let shipped: Vec<String> =
        serde_norway::from_str::<Value>(&read("deploy/prometheus/rules.yml"))
            .map(|v| {
                seq(v.get("groups"))
                    .into_iter()
                    .flat_map(|g| seq(g.get("rules")))
                    .map(|r| alert(r).to_string())
                    .collect()
            })
            .unwrap();
    let runbook = read("docs/runbook.md");
    // The defaults: every shipped rule, linking the runbook of this chart's version.
    let r = helm(None, Some(r#"{"prometheusRule": {"enabled": true}}"#), None);
    let rules = rules_of(&r);
    assert_eq!(rules.iter().map(|r| alert(r)).collect::<Vec<_>>(), shipped);
    for rule in &rules {
        let name = alert(rule);
        let url = s(rule, &["annotations", "runbook_url"])
            .and_then(Value::as_str)
            .unwrap();
        assert_eq!(
            url,
            format!("{home}/blob/v{app}/docs/runbook.md#{}", name.to_lowercase())
        );
        assert!(
            runbook.contains(&format!("\n## {name}\n")),
            "{name}: no runbook section"
        );
    }
    // ci/standalone-values.yaml: a base URL, a rule left out, labels for all and for one.
    let r = helm(Some("standalone-values.yaml"), None, None);
    let rules = rules_of(&r);
    assert!(
        rules.iter().all(|r| alert(r) != "MailprobeAbsent"),
        "disabled"
    );
    assert_eq!(
        rules.iter().filter(|r| !alert(r).is_empty()).count(),
        shipped.len()
    );
    for rule in &rules {
        let name = alert(rule);
        if name.is_empty() || name == "MailprobeSalesNonCompliant" {
            continue;
        }
        assert_eq!(
            s(rule, &["labels", "team"]).and_then(Value::as_str),
            Some("mail"),
            "{name}"
        );
        let url = s(rule, &["annotations", "runbook_url"])
            .and_then(Value::as_str)
            .unwrap();
        assert_eq!(
            url,
            format!(
                "https://docs.example.com/mailprobe/runbook#{}",
                name.to_lowercase()
            )
        );
    }
    let vanished = rules
        .iter()
        .find(|r| alert(r) == "MailprobeMailboxVanished")
        .unwrap();
    assert_eq!(
        s(vanished, &["labels", "severity"]).and_then(Value::as_str),
        Some("warning")
    );
    // A template of the user's own.
    let r = helm(
        None,
        Some(
            r##"{"prometheusRule": {"enabled": true, "runbookUrl": "https://wiki.example.com/{{ .Chart.Name }}#{{ .anchor }}"}}"##,
        ),
        None,
    );
    let url = s(rules_of(&r)[0], &["annotations", "runbook_url"])
        .and_then(Value::as_str)
        .unwrap();
    assert_eq!(
        url,
        "https://wiki.example.com/mailprobe#mailprobemailboxnoncompliant"
    );
}

#[test]
fn readme_values_table_is_generated_from_values_yaml() {
    let out = Command::new("python3")
        .arg(root().join("deploy/helm/values-table.py"))
        .arg("--check")
        .arg(root().join(CHART))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `kubernetes-validate --strict -k VERSION` over the rendered workloads: the plain-container
/// mode is valid on a cluster before native sidecars (1.27), the native one from 1.29 on.
#[test]
fn rendered_workloads_are_valid_for_the_kubernetes_versions_they_target() {
    let dir = std::env::temp_dir().join(format!("mailprobe-helm-kv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for (file, kube) in [
        ("sidecar-values.yaml", "1.27.0"),
        ("native-sidecar-values.yaml", "1.29.0"),
        ("standalone-values.yaml", "1.27.0"),
    ] {
        let r = helm(Some(file), None, None);
        let mut text = String::new();
        for ((_, d), raw) in r.docs.iter().zip(&r.raw) {
            // The prometheus-operator kinds are not in Kubernetes' own schemas.
            let kind = d.get("kind").and_then(Value::as_str).unwrap_or_default();
            if kind == "ServiceMonitor" || kind == "PrometheusRule" {
                continue;
            }
            text.push_str("\n---\n");
            text.push_str(raw);
        }
        let path = dir.join(file);
        std::fs::write(&path, text).expect("write");
        let out = Command::new("kubernetes-validate")
            .args(["--strict", "--quiet", "-k", kube])
            .arg(&path)
            .output()
            .expect("kubernetes-validate (the PyPI package kubernetes-validate)");
        assert!(
            out.status.success(),
            "{file} on Kubernetes {kube}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // And the native sidecar is indeed refused before 1.28: the reason for the plain mode.
    let r = helm(Some("native-sidecar-values.yaml"), None, None);
    let deployment = r
        .docs
        .iter()
        .zip(&r.raw)
        .find(|((_, d), _)| d.get("kind").and_then(Value::as_str) == Some("Deployment"))
        .map(|(_, raw)| raw.clone())
        .expect("a Deployment");
    let path = dir.join("native-1.27.yaml");
    std::fs::write(&path, deployment).expect("write");
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet", "-k", "1.27.0"])
        .arg(&path)
        .output()
        .expect("kubernetes-validate");
    assert!(
        !out.status.success(),
        "restartPolicy on an init container passes on 1.27?"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn notes_warn_while_the_image_registry_is_the_placeholder() {
    let r = helm(None, Some(r#"{"mode": "sidecar"}"#), None);
    assert!(
        r.notes.contains("image.registry is the placeholder"),
        "{}",
        r.notes
    );
    assert!(r.notes.contains("In sidecar"), "{}", r.notes);
    let r = helm(Some("sidecar-values.yaml"), None, None);
    assert!(!r.notes.contains("placeholder"), "{}", r.notes);
}
