//! What mailprobe really sends over OTLP, received by a real collector (rotel-agent) from
//! `mailprobe run` checking a lab Dovecot:
//! - every instrument carries its semantic-convention name, unit and kind, and the standard
//!   OTLP-to-Prometheus translation of it is a name the same daemon serves on `/metrics`;
//! - the metric attributes are the span attribute keys (`mailprobe.mailbox`, `server.address`,
//!   `server.port`, `tls.protocol.version`), never the Prometheus labels;
//! - the Datadog dashboard and monitors (`deploy/datadog/`) name only metrics the daemon really
//!   sent, as the Datadog Agent stores them, filtered by tags those metrics really carry
//!   (`tests/datadog/check.py`, with PyPI's `datadog-api-client`).
mod common;
mod telemetry;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mailprobe_telemetry::names::otlp::{self, Kind};
use telemetry::*;

/// One metric as the collector's debug log shows it.
#[derive(Debug, Default, Clone, PartialEq)]
struct Received {
    unit: String,
    data_type: String,
    monotonic: Option<bool>,
    attributes: BTreeSet<String>,
}

/// The metrics of rotel's detailed debug log (the OpenTelemetry Collector's debug exporter
/// format): `Name:`, `Unit:`, `DataType:`, `IsMonotonic:`, and each data point's attributes as
/// `-> key: Type(value)` lines under `Data point attributes:`.
fn metrics_of(log: &str) -> BTreeMap<String, Received> {
    let mut out: BTreeMap<String, Received> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut in_points = false;
    for line in log.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("-> Name: ") {
            current = Some(rest.trim().to_string());
            in_points = false;
            out.entry(rest.trim().to_string()).or_default();
            continue;
        }
        let Some(name) = current.clone() else {
            continue;
        };
        let m = out.entry(name).or_default();
        if let Some(rest) = t.strip_prefix("-> Unit: ") {
            m.unit = rest.trim().to_string();
        } else if t == "-> Unit:" {
            m.unit = String::new();
        } else if let Some(rest) = t.strip_prefix("-> DataType: ") {
            m.data_type = rest.trim().to_string();
        } else if let Some(rest) = t.strip_prefix("-> IsMonotonic: ") {
            m.monotonic = Some(rest.trim() == "true");
        } else if t.starts_with("Data point attributes:") {
            in_points = true;
        } else if t.starts_with("Metric #") || t.starts_with("ResourceMetrics #") {
            current = None;
            in_points = false;
        } else if in_points {
            if let Some(rest) = t.strip_prefix("-> ") {
                if let Some((k, _)) = rest.split_once(": ") {
                    m.attributes.insert(k.to_string());
                }
            } else if !t.is_empty() && !t.starts_with("->") {
                in_points = t.starts_with("NumberDataPoints")
                    || t.starts_with("HistogramDataPoints")
                    || t.starts_with("Data point attributes");
            }
        }
    }
    out
}

/// The metric family names of a Prometheus text page (`# TYPE name kind`).
fn families(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(|n| n.trim_end_matches("_total").to_string())
        .collect()
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn otlp_instruments_translate_to_the_metrics_page_and_feed_the_datadog_side() {
    let scratch = Scratch::new("otlp-names");
    // Dovecot and Postfix, so that the SMTP series and the opt-in round trip are sent too.
    let dovecot = common::Lab::dovecot("otlp-names-dc", common::DovecotOpts::default());
    let postfix = common::Lab::postfix(
        "otlp-names-pf",
        &dovecot,
        common::PostfixOpts {
            nosasl: false,
            authplain: false,
            ..Default::default()
        },
    );
    let mut rotel = Rotel::start(&scratch.0, "names", free_port(), free_port());
    let listen = free_port();
    let config = scratch.path("mailprobe.yaml");
    std::fs::write(
        &config,
        format!(
            "interval: 3s
timeout: 20s
listen: 127.0.0.1:{listen}
otlp:
  endpoint: http://127.0.0.1:{grpc}
  protocol: grpc
  export_interval: 1s
mailboxes:
  - name: lab
    imap: mail.lab.test:{imaps}
    imap_security: tls
    smtp: mail.lab.test:{submission}
    smtp_security: starttls
    roundtrip: true
    connect_to: {addr}
    ca_file: {ca}
    user: {user}
    password: {{ env: LAB_TEST_PASSWORD }}
",
            grpc = rotel.grpc,
            imaps = dovecot.port("imaps"),
            submission = postfix.port("submission"),
            addr = dovecot.host(),
            ca = common::Lab::ca_file().display(),
            user = common::lab::USER,
        ),
    )
    .unwrap();
    let probe_log = scratch.path("mailprobe.log");
    let _probe = mailprobe_run(
        &config,
        &probe_log,
        &[("LAB_TEST_PASSWORD", common::lab::PASSWORD)],
    );
    let wanted = [
        "mailprobe.compliant",
        "mailprobe.verdict",
        "mailprobe.requirement.status",
        "mailprobe.cert.expiry.timestamp",
        "mailprobe.tls.version.accepted",
        "mailprobe.last_check.timestamp",
        "mailprobe.check.duration",
        "mailprobe.checks",
        "mailprobe.build.info",
        "mailprobe.roundtrip",
        "mailprobe.concurrent_connections.achieved",
    ];
    wait_until(
        "the lab mailbox's metrics at the collector",
        Duration::from_secs(90),
        || {
            let got = metrics_of(&rotel.output());
            wanted.iter().all(|w| got.contains_key(*w))
        },
    );
    // One more export, so that every instrument has had a data point.
    std::thread::sleep(Duration::from_secs(2));
    let received = metrics_of(&rotel.output());
    let page = http_get(listen, "/metrics").expect("/metrics").1;
    let served = families(&page);

    let mut problems = Vec::new();
    for (name, m) in &received {
        let Some(i) = otlp::ALL.iter().find(|i| i.name == *name) else {
            problems.push(format!("{name}: not in names::otlp"));
            continue;
        };
        if m.unit != i.unit {
            problems.push(format!("{name}: unit {:?}, table {:?}", m.unit, i.unit));
        }
        let (kind, want_type) = match (m.data_type.as_str(), m.monotonic) {
            ("Gauge", _) => (Kind::Gauge, "gauge"),
            ("Sum", Some(true)) => (Kind::Counter, "counter"),
            ("Histogram", _) => (Kind::Histogram, "histogram"),
            (other, mono) => {
                problems.push(format!("{name}: data type {other} monotonic {mono:?}"));
                continue;
            }
        };
        if kind != i.kind {
            problems.push(format!("{name}: sent as {want_type}, table {:?}", i.kind));
        }
        // The standard translation of what was really received.
        let translated = otlp::prometheus_name(name, &m.unit, kind);
        if translated != i.prometheus {
            problems.push(format!(
                "{name}: translates to {translated}, not {}",
                i.prometheus
            ));
        }
        let on_page = served.contains(translated.trim_end_matches("_total"));
        if !on_page {
            problems.push(format!("{name}: {translated} is not on /metrics"));
        }
        for key in &m.attributes {
            if !key.contains('.') {
                problems.push(format!("{name}: attribute {key} is not a span-style key"));
            }
        }
    }
    for w in wanted {
        if !received.contains_key(w) {
            problems.push(format!("{w}: never received"));
        }
    }
    let attrs = |n: &str| {
        received
            .get(n)
            .map(|m| m.attributes.clone())
            .unwrap_or_default()
    };
    for key in ["mailprobe.mailbox", "server.address", "server.port"] {
        if !attrs("mailprobe.cert.expiry.timestamp").contains(key) {
            problems.push(format!("mailprobe.cert.expiry.timestamp lacks {key}"));
        }
    }
    if !attrs("mailprobe.tls.version.accepted").contains("tls.protocol.version") {
        problems.push("mailprobe.tls.version.accepted lacks tls.protocol.version".into());
    }
    let out = rotel.output();
    assert!(
        out.contains("server.port: Int("),
        "server.port is not an integer attribute"
    );
    assert!(problems.is_empty(), "{problems:#?}\n{received:#?}");

    // The Datadog side: every metric a query or monitor names is one of these, as the Agent
    // stores it (docs/datadog.md): the OTLP name as it is; a gauge stays a gauge, a monotonic
    // sum becomes a count, a histogram a distribution.
    let agent: Vec<serde_json::Value> = received
        .iter()
        .map(|(name, m)| {
            let kind = match m.data_type.as_str() {
                "Sum" => "count",
                "Histogram" => "distribution",
                _ => "gauge",
            };
            serde_json::json!({"name": name, "type": kind, "tags": m.attributes})
        })
        .collect();
    let metrics_file = scratch.path("datadog-metrics.json");
    std::fs::write(&metrics_file, serde_json::to_string_pretty(&agent).unwrap()).unwrap();
    let out = Command::new("python3")
        .arg(root().join("tests/datadog/check.py"))
        .arg("--metrics")
        .arg(&metrics_file)
        .arg(root().join("deploy/datadog"))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "tests/datadog/check.py --metrics:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    rotel.stop();
}
