//! The Grafana dashboard, checked against Grafana's provisioning conventions (no Grafana runs
//! here): a `datasource` variable every panel uses and no `__inputs`, `job` and `namespace`
//! variables in every query, `$mailbox` in every per-mailbox query, one TLS row per server and
//! port, certificate days shown as days. And every metric (and label) the dashboard and the
//! Prometheus alert rules query must be one the probe really exports: read from a real
//! `/metrics` scrape of `mailprobe run` checking a lab mailbox (Dovecot + Postfix on loopback),
//! with a dynamic plugin loaded in-process (the test fixture `misbehave`, which passes).
//! Also: the daemon stops within 10 s of SIGTERM, which the manifests' grace periods rely on.

mod common;
mod dynamic_support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::lab::{DovecotOpts, HOSTNAME, Lab, PASSWORD, PostfixOpts, USER};

const PASSWORD_ENV: &str = "MAILPROBE_TEST_PASSWORD";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `GET path` over plain HTTP/1.0; the body, or None if nothing answers yet.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// Sample names and label names of a Prometheus text / OpenMetrics exposition.
fn exposition(body: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut names = BTreeSet::new();
    let mut labels = BTreeSet::new();
    for line in body.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        names.insert(line[..end].to_string());
        if line[end..].starts_with('{')
            && let Some(close) = line.find('}')
        {
            // Values are quoted and may hold commas: take what precedes each `="`.
            for part in line[end + 1..close].split("\",") {
                if let Some((k, _)) = part.split_once("=\"") {
                    labels.insert(k.trim().to_string());
                }
            }
        }
    }
    (names, labels)
}

/// The `mailprobe_*` metric names a PromQL expression uses.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("mailprobe_") {
        let boundary = i == 0 || {
            let c = rest.as_bytes()[i - 1];
            !(c.is_ascii_alphanumeric() || c == b'_')
        };
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        if boundary {
            out.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

/// Label names an expression groups by or matches on, and a legend's `{{label}}`s.
fn label_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for kw in ["by (", "by(", "without (", "on (", "ignoring ("] {
        let mut rest = expr;
        while let Some(i) = rest.find(kw) {
            let tail = &rest[i + kw.len()..];
            let close = tail.find(')').unwrap_or(tail.len());
            out.extend(tail[..close].split(',').map(|l| l.trim().to_string()));
            rest = &tail[close..];
        }
    }
    let mut rest = expr;
    while let Some(i) = rest.find('{') {
        let tail = &rest[i + 1..];
        let close = tail.find('}').unwrap_or(tail.len());
        let inner = &tail[..close];
        if inner.starts_with('{') {
            // a legend's {{label}}
            out.insert(inner.trim_start_matches('{').trim().to_string());
        } else {
            for m in inner.split(',') {
                if let Some(k) = m.split(['=', '!']).next() {
                    out.insert(k.trim().to_string());
                }
            }
        }
        rest = &tail[close.min(tail.len())..];
    }
    // Labels the query itself creates are not the probe's to export.
    for f in ["label_join(", "label_replace("] {
        let mut rest = expr;
        while let Some(i) = rest.find(f) {
            let tail = &rest[i + f.len()..];
            if let Some(dst) = second_argument(tail) {
                out.remove(&dst);
            }
            rest = tail;
        }
    }
    out.retain(|l| !l.is_empty() && !l.starts_with('$'));
    out
}

/// The string literal that is the second argument of a call whose arguments start `args`
/// (label_join's and label_replace's destination label).
fn second_argument(args: &str) -> Option<String> {
    let (mut depth, mut quoted) = (0i32, false);
    for (i, c) in args.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '(' | '{' | '[' if !quoted => depth += 1,
            ')' | '}' | ']' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                let rest = args[i + 1..].trim_start().strip_prefix('"')?;
                return Some(rest[..rest.find('"')?].to_string());
            }
            _ => {}
        }
    }
    None
}

/// (where, PromQL) of every dashboard query, legend and template variable.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("deploy/grafana/mailprobe.json"))
        .expect("deploy/grafana/mailprobe.json");
    let d: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            let at = format!("panel {:?} {}", p["title"], t["refId"]);
            out.push((at.clone(), t["expr"].as_str().unwrap_or("").to_string()));
            if let Some(l) = t["legendFormat"].as_str() {
                out.push((format!("{at} legend"), l.to_string()));
            }
        }
    }
    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if let Some(q) = v["definition"].as_str() {
            out.push((format!("variable {}", v["name"]), q.to_string()));
        }
    }
    out
}

/// (alert, expr) of every rule in deploy/prometheus/rules.yml.
fn rule_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("deploy/prometheus/rules.yml")).expect("rules");
    let v: serde_norway::Value = serde_norway::from_str(&text).expect("rules YAML");
    let mut out = Vec::new();
    for g in v["groups"].as_sequence().expect("groups") {
        for r in g["rules"].as_sequence().expect("rules") {
            out.push((
                format!("rule {}", r["alert"].as_str().unwrap_or("?")),
                r["expr"].as_str().expect("expr").to_string(),
            ));
        }
    }
    out
}

fn dashboard() -> serde_json::Value {
    let text = std::fs::read_to_string(root().join("deploy/grafana/mailprobe.json"))
        .expect("deploy/grafana/mailprobe.json");
    serde_json::from_str(&text).expect("dashboard JSON")
}

/// Every panel but the rows (which only group them).
fn panels(d: &serde_json::Value) -> Vec<&serde_json::Value> {
    d["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter(|p| p["type"] != "row")
        .collect()
}

/// Every `mailprobe_*{...}` selector of an expression: (metric, matchers).
fn selectors(expr: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for name in metric_names(expr) {
        let mut rest = expr;
        while let Some(i) = rest.find(&name) {
            let tail = &rest[i + name.len()..];
            let next = tail.chars().next();
            if next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                rest = tail;
                continue;
            }
            let matchers = tail
                .strip_prefix('{')
                .and_then(|t| t.find('}').map(|j| t[..j].to_string()))
                .unwrap_or_default();
            out.push((name.clone(), matchers));
            rest = tail;
        }
    }
    out
}

/// Metrics with a `mailbox` label: a query on them must honour the `$mailbox` variable.
const PER_MAILBOX: &[&str] = &[
    "mailprobe_compliant",
    "mailprobe_verdict",
    "mailprobe_requirement_status",
    "mailprobe_cert_expiry_timestamp_seconds",
    "mailprobe_tls_version_accepted",
    "mailprobe_concurrent_connections_achieved",
    "mailprobe_roundtrip_seconds",
    "mailprobe_check_duration_seconds",
];

#[test]
fn dashboard_takes_its_data_source_from_a_variable_and_has_no_import_inputs() {
    let d = dashboard();
    assert!(
        d.get("__inputs").is_none(),
        "__inputs is substituted only by the UI's import, never by file provisioning or the \
         kube-prometheus-stack sidecar: use the `datasource` variable"
    );
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let ds = vars
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("a `datasource` template variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    for v in vars.iter().filter(|v| v["type"] == "query") {
        assert_eq!(
            v["datasource"]["uid"], "${datasource}",
            "variable {}",
            v["name"]
        );
    }
    assert!(panels(&d).len() >= 6);
    for p in panels(&d) {
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "panel {}",
            p["title"]
        );
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            assert_eq!(
                t["datasource"]["uid"], "${datasource}",
                "panel {} {}",
                p["title"], t["refId"]
            );
        }
    }
    assert!(
        !serde_json::to_string(&d)
            .unwrap_or_default()
            .contains("DS_PROMETHEUS"),
        "a leftover ${{DS_PROMETHEUS}}"
    );
}

#[test]
fn dashboard_queries_filter_by_job_namespace_and_mailbox() {
    let d = dashboard();
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    for name in ["cluster", "job", "namespace", "mailbox"] {
        let v = vars
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no `{name}` variable"));
        assert_eq!(v["includeAll"], true, "{name}");
        assert_eq!(
            v["allValue"], ".*",
            "{name}: All must match an absent label too"
        );
    }
    let mut checked = 0;
    for (at, expr) in dashboard_queries() {
        if at.ends_with("legend") {
            continue;
        }
        for (metric, matchers) in selectors(&expr) {
            checked += 1;
            for want in [
                r#"job=~"$job""#,
                r#"namespace=~"$namespace""#,
                r#"cluster=~"$cluster""#,
            ] {
                // The variables cascade: cluster, job within it, then namespace, then mailbox.
                let cascade = at == "variable \"cluster\""
                    || (at == "variable \"job\"" && !want.starts_with("cluster"))
                    || (at == "variable \"namespace\"" && want.starts_with("namespace"));
                assert!(
                    matchers.contains(want) || cascade,
                    "{at}: {metric}{{{matchers}}} lacks {want}, so two deployments merge"
                );
            }
            if PER_MAILBOX.iter().any(|m| metric.starts_with(m)) && !at.starts_with("variable") {
                assert!(
                    matchers.contains(r#"mailbox=~"$mailbox""#),
                    "{at}: {metric}{{{matchers}}} ignores $mailbox"
                );
            }
        }
    }
    assert!(
        checked >= 12,
        "only {checked} selectors: is the parser broken?"
    );
}

#[test]
fn dashboard_shows_incomplete_and_the_probes_own_health_with_a_unit_on_every_panel() {
    let d = dashboard();
    for p in panels(&d) {
        let unit = p["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or("");
        assert!(!unit.is_empty(), "panel {} has no unit", p["title"]);
    }
    let queries = dashboard_queries();
    let queried = |metric: &str| queries.iter().any(|(_, q)| q.contains(metric));
    // Incomplete mailboxes are shown, and the mailbox variable keeps them (mailprobe_compliant
    // has no sample before a mailbox's first definitive verdict).
    assert!(
        queries
            .iter()
            .any(|(_, q)| q.contains("mailprobe_verdict{verdict=\"incomplete\"")),
        "no panel shows incomplete mailboxes"
    );
    let vars = d["templating"]["list"].as_array().expect("variables");
    let mailbox = vars
        .iter()
        .find(|v| v["name"] == "mailbox")
        .expect("mailbox");
    assert!(
        mailbox["definition"]
            .as_str()
            .is_some_and(|q| q.contains("mailprobe_verdict")),
        "{mailbox}"
    );
    for metric in [
        "mailprobe_probe_errors_total",
        "mailprobe_telemetry_dropped_total",
        "mailprobe_alert_delivery_failures_total",
        "mailprobe_schedule_lag_seconds_bucket",
        "mailprobe_config_last_reload_successful",
        "mailprobe_config_valid",
        "mailprobe_roundtrip_seconds",
    ] {
        assert!(queried(metric), "no panel queries {metric}");
    }
    // Links: the runbook, and each mailbox's page on the probe's status page.
    let links = d["links"].as_array().expect("dashboard links");
    assert!(
        links.iter().any(|l| l["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("docs/runbook.md"))),
        "{links:?}"
    );
    let status_link = panels(&d).iter().any(|p| {
        p["fieldConfig"]["defaults"]["links"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|l| {
                l["url"]
                    .as_str()
                    .is_some_and(|u| u.contains("${__field.labels.instance}/mailboxes/"))
            })
    });
    assert!(status_link, "no data link to the status page");
    let annotations = d["annotations"]["list"].as_array().expect("annotations");
    assert!(
        annotations
            .iter()
            .any(|a| a["expr"].as_str().is_some_and(|e| e.contains("mailprobe_"))),
        "no annotation from the probe's series"
    );
}

#[test]
fn dashboard_tls_table_has_one_row_per_server_and_port() {
    let d = dashboard();
    let p = panels(&d)
        .into_iter()
        .find(|p| p["title"] == "Accepted TLS versions per server")
        .expect("the TLS table");
    let expr = p["targets"][0]["expr"].as_str().expect("expr");
    let matrix = p["transformations"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["id"] == "groupingToMatrix"))
        .expect("groupingToMatrix");
    let row = matrix["options"]["rowField"].as_str().expect("rowField");
    assert_eq!(matrix["options"]["columnField"], "version");
    // The row is a label made of both server and port, and the query keeps it apart.
    assert!(
        expr.contains("label_join(")
            && expr.contains(&format!(r#""{row}", ":", "server", "port""#)),
        "rowField {row} is not server:port in {expr}"
    );
    assert!(
        expr.contains(&format!("by ({row}, version)")),
        "{expr}: aggregate by the row and the version"
    );
}

#[test]
fn dashboard_certificate_panel_shows_days_as_days() {
    let d = dashboard();
    let p = panels(&d)
        .into_iter()
        .find(|p| p["title"] == "Certificate expiry (days left)")
        .expect("certificate panel");
    let expr = p["targets"][0]["expr"].as_str().expect("expr");
    assert!(
        expr.starts_with("sort(") && expr.contains("/ 86400"),
        "{expr}"
    );
    let unit = p["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or("");
    // Grafana's time units (`d`, `dtdurations`, ...) roll 30 days into "4 week"; a custom
    // suffix unit prints the number as it is.
    assert!(
        unit == "suffix: d" || unit == "none",
        "unit {unit:?}: Grafana would not print a plain number of days"
    );
    let steps: Vec<f64> = p["fieldConfig"]["defaults"]["thresholds"]["steps"]
        .as_array()
        .expect("thresholds")
        .iter()
        .filter_map(|s| s["value"].as_f64())
        .collect();
    assert_eq!(
        steps,
        vec![14.0, 30.0],
        "thresholds in days, as the alert rules"
    );
    let titles: Vec<&str> = panels(&d)
        .iter()
        .filter_map(|p| p["title"].as_str())
        .collect();
    for want in [
        "Verdict per mailbox",
        "Failing and warning requirements",
        "Certificate expiry (days left)",
        "Accepted TLS versions per server",
        "Check duration",
        "Concurrent connections achieved",
    ] {
        assert!(titles.contains(&want), "no panel {want:?} in {titles:?}");
    }
    let mut ids = std::collections::HashSet::new();
    for p in panels(&d) {
        assert!(ids.insert(p["id"].as_u64()), "duplicate panel id");
    }
    assert_eq!(d["uid"], "mailprobe");
}

struct Probe(Child);

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[test]
fn parsers_find_metric_and_label_names() {
    assert_eq!(
        metric_names(
            "sum by (le) (rate(mailprobe_check_duration_seconds_bucket[5m])) / x_mailprobe_no"
        ),
        BTreeSet::from(["mailprobe_check_duration_seconds_bucket".to_string()])
    );
    assert_eq!(
        label_names(r#"max by (server, port) (m{mailbox=~"$mailbox", version!="x"})"#),
        ["mailbox", "port", "server", "version"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
    assert_eq!(label_names("{{server}}:{{port}}").len(), 2);
    assert_eq!(
        label_names(r#"max by (sp) (label_join(m{a="$x"}, "sp", ":", "server", "port"))"#),
        ["a"].iter().map(|s| s.to_string()).collect()
    );
    let (names, labels) = exposition(
        "# TYPE a gauge\na{mailbox=\"x,y\",server=\"s\"} 1\nb_bucket{le=\"+Inf\"} 2\nc 3\n",
    );
    assert_eq!(names.len(), 3);
    assert_eq!(
        labels,
        ["le", "mailbox", "server"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}

#[test]
fn dashboard_and_rules_query_only_metrics_the_probe_exports() {
    let dovecot = Lab::dovecot(
        "deploy-dash",
        DovecotOpts {
            imaps: false,
            ..DovecotOpts::default()
        },
    );
    let postfix = Lab::postfix(
        "deploy-dash",
        &dovecot,
        PostfixOpts {
            submissions: false,
            nosasl: false,
            authplain: false,
            ..PostfixOpts::default()
        },
    );
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("mailprobe-deploy-dash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("mailprobe.yaml");
    // A dynamic plugin loaded in-process, for the plugin series the rules query; the round trip
    // (opt-in) for its latency panel.
    let plugins = dynamic_support::plugin_dir("deploy-dash", &["mailprobe-test-misbehave"]);
    std::fs::write(
        &config,
        format!(
            "interval: 2s\ntimeout: 20s\nlisten: 127.0.0.1:{port}\nplugins:\n  dir: {plugins}\n\
             mailboxes:\n  - name: lab\n    \
             imap: {HOSTNAME}:{imap}\n    imap_security: starttls\n    smtp: {HOSTNAME}:{smtp}\n    \
             smtp_security: starttls\n    user: {USER}\n    password: {{ env: {PASSWORD_ENV} }}\n    \
             connect_to: 127.0.0.1\n    ca_file: {ca}\n    roundtrip: true\n    roundtrip_warn: 30s\n",
            imap = dovecot.port("imap"),
            smtp = postfix.port("submission"),
            ca = Lab::ca_file().display(),
            plugins = plugins.display(),
        ),
    )
    .expect("write config");
    let stderr = std::fs::File::create(dir.join("stderr.log")).expect("log file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailprobe"));
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        .env(PASSWORD_ENV, PASSWORD)
        .env_remove("MAILPROBE_SHARD")
        .stdout(Stdio::null())
        .stderr(stderr);
    for (k, _) in std::env::vars() {
        if k.starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    let mut probe = Probe(cmd.spawn().expect("start mailprobe run"));
    let log = || std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();

    let queries: Vec<(String, String)> = dashboard_queries()
        .into_iter()
        .chain(rule_queries())
        .collect();
    let wanted: BTreeSet<String> = queries.iter().flat_map(|(_, q)| metric_names(q)).collect();
    assert!(wanted.len() >= 6, "{wanted:?}");

    // Wait for a scrape that holds a finished check and every name the queries want; a name
    // that never comes is reported below.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut body = String::new();
    loop {
        if let Ok(Some(status)) = probe.0.try_wait() {
            panic!(
                "mailprobe run exited ({status}) before serving /metrics:\n{}",
                log()
            );
        }
        if let Some((200, b)) = http_get(port, "/metrics") {
            let (names, _) = exposition(&b);
            let done =
                b.contains("mailprobe_compliant{") && wanted.iter().all(|n| names.contains(n));
            body = b;
            if done {
                break;
            }
        }
        if Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        body.contains("mailprobe_compliant{"),
        "no mailprobe_compliant in 90 s of /metrics on 127.0.0.1:{port} (is /metrics served?).\n\
         last body:\n{body}\nprobe log:\n{}",
        log()
    );
    let (names, mut labels) = exposition(&body);
    // Added by Prometheus at scrape time (job, instance) or used only in legends/matchers of
    // Prometheus' own series (`up`).
    // `namespace` is added by a prometheus-operator ServiceMonitor's scrape, `cluster` by
    // Prometheus' external labels or remote write.
    labels.extend(["job", "instance", "namespace", "cluster"].map(String::from));

    let mut missing = Vec::new();
    for (at, q) in &queries {
        for n in metric_names(q) {
            if !names.contains(&n) {
                missing.push(format!("{at}: metric {n}"));
            }
        }
        for l in label_names(q) {
            if !labels.contains(&l) {
                missing.push(format!("{at}: label {l}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "queried but not exported by the probe:\n  {}\nexported: {names:?}\nlabels: {labels:?}",
        missing.join("\n  ")
    );
    let readyz = http_get(port, "/readyz").map(|(c, _)| c);
    assert_eq!(readyz, Some(200), "/readyz after the first round");
    assert_eq!(
        http_get(port, "/healthz").map(|(c, _)| c),
        Some(200),
        "/healthz"
    );

    // The manifests give the probe 20 s to stop; it promises 10.
    let pid = probe.0.id().to_string();
    let sent = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let stopped = loop {
        if let Ok(Some(status)) = probe.0.try_wait() {
            break Some(status);
        }
        if sent.elapsed() > Duration::from_secs(15) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let took = sent.elapsed();
    assert!(
        stopped.is_some() && took <= Duration::from_secs(10),
        "mailprobe run took {took:?} to stop after SIGTERM ({stopped:?}):\n{}",
        log()
    );
    drop(probe);
    drop(postfix);
    drop(dovecot);
    let _ = std::fs::remove_dir_all(&dir);
}
