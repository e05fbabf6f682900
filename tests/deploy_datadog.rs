//! The Datadog side (`deploy/datadog`), checked with Datadog's own API client (PyPI
//! `datadog-api-client`, driven by `tests/datadog/check.py`): the dashboard and every monitor
//! deserialize strictly into its `Dashboard` and `Monitor` models, monitor queries and messages
//! have the documented shapes, the template variables are used, the Terraform example maps every
//! key, and every metric named is one of mailprobe's OTLP instruments with the Datadog type the
//! Agent gives it. (`tests/telemetry_otlp_names.rs` checks the same files against what a running
//! probe really sent, tags included.)

use std::path::{Path, PathBuf};
use std::process::Command;

use mailprobe_telemetry::names::otlp::{self, Kind};
use serde_norway::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check(deploy: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new("python3")
        .arg(root().join("tests/datadog/check.py"))
        .args(extra)
        .arg(deploy)
        .output()
        .expect("python3");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The Datadog metrics of mailprobe's OTLP instruments, as the Agent stores them (docs/datadog.md):
/// the OTLP name; a gauge stays a gauge, a monotonic sum is a count, a histogram a distribution.
fn agent_metrics(dir: &Path) -> PathBuf {
    let list: Vec<serde_json::Value> = otlp::ALL
        .iter()
        .map(|i| {
            let kind = match i.kind {
                Kind::Gauge => "gauge",
                Kind::Counter => "count",
                Kind::Histogram => "distribution",
            };
            serde_json::json!({"name": i.name, "type": kind})
        })
        .collect();
    let path = dir.join("agent-metrics.json");
    std::fs::write(&path, serde_json::to_string(&list).unwrap()).unwrap();
    path
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mailprobe-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn dashboard_monitors_and_terraform_pass_datadogs_models() {
    let dir = scratch("deploy-datadog");
    let metrics = agent_metrics(&dir);
    let (ok, out) = check(
        &root().join("deploy/datadog"),
        &["--metrics", metrics.to_str().unwrap(), "--no-tags"],
    );
    assert!(ok, "tests/datadog/check.py:\n{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The check is strict: a copy with an unknown key, a value outside an enum, a metric mailprobe
/// does not send and a message without a recovery section is refused, each said.
#[test]
fn the_check_refuses_what_datadog_would_not_take() {
    let dir = scratch("deploy-datadog-bad");
    let deploy = dir.join("deploy/datadog");
    std::fs::create_dir_all(deploy.join("monitors")).unwrap();
    std::fs::create_dir_all(deploy.join("terraform")).unwrap();
    std::fs::create_dir_all(dir.join("docs")).unwrap();
    let src = root().join("deploy/datadog");
    std::fs::copy(root().join("docs/runbook.md"), dir.join("docs/runbook.md")).unwrap();
    std::fs::copy(
        src.join("terraform/main.tf"),
        deploy.join("terraform/main.tf"),
    )
    .unwrap();
    let mut dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("dashboard.json")).unwrap())
            .unwrap();
    dash["widgets"][0]["definition"]["colour"] = "red".into();
    dash["widgets"][0]["definition"]["text_align"] = "middle".into();
    std::fs::write(deploy.join("dashboard.json"), dash.to_string()).unwrap();
    let mut monitor: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(src.join("monitors/mailbox-incomplete.json")).unwrap(),
    )
    .unwrap();
    monitor["query"] = "min(last_30m):min:mailprobe_verdict{*} by {mailprobe.mailbox} >= 1".into();
    monitor["message"] = "{{#is_alert}}down{{/is_alert}}".into();
    std::fs::write(deploy.join("monitors/bad.json"), monitor.to_string()).unwrap();

    let metrics = agent_metrics(&dir);
    let (ok, out) = check(
        &deploy,
        &["--metrics", metrics.to_str().unwrap(), "--no-tags"],
    );
    assert!(!ok, "a broken copy passed:\n{out}");
    for needle in [
        "colour: unknown key",
        "text_align",
        "mailprobe_verdict is not a metric mailprobe sends",
        "no {{#is_recovery}}",
        "no link to the runbook",
    ] {
        assert!(out.contains(needle), "{needle:?} not said:\n{out}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Agent excerpt turns on what the dashboard and monitors rely on: the OTLP receiver,
/// histograms as distributions, and logs (the compliance-transition records).
#[test]
fn the_agent_config_receives_what_the_dashboard_reads() {
    let text = std::fs::read_to_string(root().join("deploy/datadog/datadog.yaml")).unwrap();
    let v: Value = serde_norway::from_str(&text).unwrap();
    let at =
        |path: &[&str]| -> Option<Value> { path.iter().try_fold(&v, |v, k| v.get(*k)).cloned() };
    assert_eq!(
        at(&["otlp_config", "metrics", "histograms", "mode"]),
        Some(Value::from("distributions"))
    );
    assert_eq!(at(&["logs_enabled"]), Some(Value::from(true)));
    assert_eq!(
        at(&["otlp_config", "logs", "enabled"]),
        Some(Value::from(true))
    );
    assert!(at(&["otlp_config", "receiver", "protocols", "grpc", "endpoint"]).is_some());
}
