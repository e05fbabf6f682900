//! The Helm chart (deploy/helm/mailprobe), checked against the conventions of the
//! prometheus-community charts without a `helm` binary (Helm is packaged neither for Debian 12
//! nor on PyPI/npm): every value a template reads is defined, every value is used, the
//! `values.schema.json` is a valid JSON Schema covering every top-level value and accepting the
//! defaults and each `ci/*-values.yaml` (checked by Debian's python3-jsonschema), no `fail` or
//! `required` can stop `helm lint` on the defaults, the sidecar mode sets nothing pod-wide on
//! the application, and the shard count comes from the one `replicas` value.

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
fn template_actions_are_balanced() {
    for (name, text) in chart_templates() {
        assert_eq!(
            text.matches("{{").count(),
            text.matches("}}").count(),
            "templates/{name}: unbalanced braces"
        );
        let mut depth: i32 = 0;
        let mut rest = text.as_str();
        while let Some(i) = rest.find("{{") {
            let Some(j) = rest[i..].find("}}") else { break };
            let action = rest[i + 2..i + j].trim_matches(|c: char| c == '-' || c.is_whitespace());
            let word = action.split_whitespace().next().unwrap_or("");
            match word {
                "if" | "range" | "with" | "define" | "block" => depth += 1,
                "end" => depth -= 1,
                _ => {}
            }
            assert!(
                depth >= 0,
                "templates/{name}: `end` without an opening action"
            );
            rest = &rest[i + j + 2..];
        }
        assert_eq!(
            depth, 0,
            "templates/{name}: an if/range/with/define lacks its end"
        );
    }
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
fn sidecar_mode_sets_nothing_pod_wide_on_the_application() {
    let workload = template("workload.yaml");
    let start = workload
        .find(r#"if eq .Values.mode "sidecar""#)
        .expect("a sidecar branch");
    let end = workload[start..]
        .find("{{- else }}")
        .map(|e| start + e)
        .expect("the standalone branch");
    let sidecar = &workload[start..end];
    for forbidden in [
        "terminationGracePeriodSeconds",
        "automountServiceAccountToken",
        ".Values.podSecurityContext",
        "mailprobe.serviceAccountName",
    ] {
        assert!(
            !sidecar.contains(forbidden),
            "sidecar mode sets {forbidden} on the application's pod"
        );
    }
    for wanted in [
        "initContainers",
        "mailprobe.nativeSidecar",
        ".Values.app.podSecurityContext",
    ] {
        assert!(sidecar.contains(wanted), "sidecar mode lacks {wanted}");
    }
    let container = define("mailprobe.container");
    assert!(container.contains("restartPolicy: Always"));
    // Readiness and startup probes only where the probe is its own pod.
    let standalone_at = container
        .find("{{- if $standalone }}\n  {{- with .Values.readinessProbe }}")
        .expect("readinessProbe only in standalone mode");
    assert!(
        container[..standalone_at].find("readinessProbe").is_none()
            && container.matches("startupProbe:").count() == 1,
        "a readiness or startup probe outside the standalone branch"
    );
    let volumes = define("mailprobe.volumes");
    assert!(
        volumes.contains("optional: true"),
        "the Secret volume must be optional"
    );
    for (file, obj) in [
        ("networkpolicy.yaml", "NetworkPolicy"),
        ("poddisruptionbudget.yaml", "PodDisruptionBudget"),
        ("serviceaccount.yaml", "ServiceAccount"),
    ] {
        assert!(
            template(file).contains(r#"ne .Values.mode "sidecar""#),
            "{file}: a {obj} in sidecar mode would apply to the application's pods"
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

#[test]
fn chart_metadata_and_rules_copy() {
    let chart = yaml(&format!("{CHART}/Chart.yaml"));
    assert_eq!(chart.get("apiVersion").and_then(Value::as_str), Some("v2"));
    assert_eq!(chart.get("name").and_then(Value::as_str), Some("mailprobe"));
    assert!(chart.get("version").is_some() && chart.get("appVersion").is_some());
    // A chart can only read files inside itself: it carries a copy of the rules.
    let rules = read("deploy/prometheus/rules.yml");
    assert_eq!(
        read(&format!("{CHART}/files/rules.yml")),
        rules,
        "{CHART}/files/rules.yml must be a copy of deploy/prometheus/rules.yml"
    );
    // prometheusRule.runbookUrl rewrites the runbook links' base, which must be the one the
    // rules use.
    let t = template("prometheusrule.yaml");
    let base = t
        .split('"')
        .find(|p| p.ends_with("docs/runbook.md"))
        .expect("the runbook base prometheusrule.yaml replaces");
    assert!(
        rules.contains(&format!("runbook_url: {base}#")),
        "the rules' runbook_url does not start with {base}"
    );
}
