//! The Alertmanager inhibit example (deploy/prometheus/alertmanager-inhibit.yml) run by a real
//! Alertmanager (Debian's `prometheus-alertmanager`) on loopback: alerts for one cause and its
//! consequences are posted, and Alertmanager must mark exactly the consequences inhibited, so
//! that one cause pages once.

// telemetry/ uses the lab helpers of common/.
mod common;
mod telemetry;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use telemetry::{Proc, Scratch, free_port, http_get, wait_until};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A JSON POST over HTTP/1.0 on loopback: the status.
fn http_post_json(port: u16, path: &str, body: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    text.split_whitespace().nth(1)?.parse().ok()
}

/// The example file with only `group_wait` shortened, so Alertmanager evaluates the alerts
/// within a second instead of 30.
fn config_from_example(dir: &Scratch) -> PathBuf {
    let text = std::fs::read_to_string(root().join("deploy/prometheus/alertmanager-inhibit.yml"))
        .expect("deploy/prometheus/alertmanager-inhibit.yml");
    let mut cfg: serde_norway::Value = serde_norway::from_str(&text).expect("YAML");
    let route = cfg
        .get_mut("route")
        .and_then(serde_norway::Value::as_mapping_mut)
        .expect("route");
    for (k, v) in [("group_wait", "1s"), ("group_interval", "1s")] {
        route.insert(k.into(), v.into());
    }
    let path = dir.path("alertmanager.yml");
    std::fs::write(&path, serde_norway::to_string(&cfg).expect("YAML")).expect("write config");
    path
}

fn start_alertmanager(dir: &Scratch, port: u16) -> Proc {
    let cfg = config_from_example(dir);
    let log = std::fs::File::create(dir.path("alertmanager.log")).expect("log");
    let child = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.path={}", dir.path("am-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "prometheus-alertmanager: {e} (install the Debian package prometheus-alertmanager)"
            )
        });
    let p = Proc {
        name: "alertmanager",
        child: Some(child),
    };
    wait_until("alertmanager ready", Duration::from_secs(30), || {
        http_get(port, "/-/ready").is_some_and(|(s, _)| s == 200)
    });
    p
}

/// The labels (besides `alertname`) that tell an alert apart.
type Labels = &'static [(&'static str, &'static str)];

/// An alert as Alertmanager lists it: (alertname, its other labels sorted).
type AlertKey = (String, Vec<(String, String)>);

/// (alert name, its labels, inhibited?)
const CASES: &[(&str, Labels, bool)] = &[
    // The probe down: its stuck checks and failing deliveries on the same instance are noise,
    // another instance's are not.
    ("MailprobeDown", &[("instance", "p0:9925")], false),
    ("MailprobeNoRecentChecks", &[("instance", "p0:9925")], true),
    (
        "MailprobeTelemetryExportFailing",
        &[("instance", "p0:9925"), ("signal", "metrics")],
        true,
    ),
    ("MailprobeNoRecentChecks", &[("instance", "p1:9925")], false),
    // An expired certificate makes the mailbox non-compliant: page once, for the cause.
    (
        "MailprobeCertificateExpired",
        &[
            ("mailbox", "sales"),
            ("server", "imap.example.com"),
            ("port", "993"),
        ],
        false,
    ),
    (
        "MailprobeMailboxNonCompliant",
        &[("mailbox", "sales")],
        true,
    ),
    (
        "MailboxNonCompliant",
        &[
            ("mailbox", "sales"),
            ("requirement", "imap.certificate.expiry"),
        ],
        true,
    ),
    // The probe's own alert and the rule's for one mailbox: only the probe's pages.
    (
        "MailboxNonCompliant",
        &[("mailbox", "support"), ("requirement", "imap.login")],
        false,
    ),
    (
        "MailprobeMailboxNonCompliant",
        &[("mailbox", "support")],
        true,
    ),
    // Failing delivery and the notifications it dropped: one page.
    (
        "MailprobeAlertDeliveryFailing",
        &[("instance", "p1:9925"), ("receiver", "webhook")],
        false,
    ),
    (
        "MailprobeAlertNotificationsDropped",
        &[("instance", "p1:9925"), ("receiver", "webhook")],
        true,
    ),
];

#[test]
fn the_inhibit_example_makes_one_cause_page_once() {
    let dir = Scratch::new("deploy-am");
    let port = free_port();
    let _am = start_alertmanager(&dir, port);

    let alerts: Vec<serde_json::Value> = CASES
        .iter()
        .map(|(name, labels, _)| {
            let mut l = serde_json::Map::new();
            l.insert("alertname".into(), (*name).into());
            for (k, v) in *labels {
                l.insert((*k).into(), (*v).into());
            }
            serde_json::json!({ "labels": l })
        })
        .collect();
    let body = serde_json::Value::Array(alerts).to_string();
    assert_eq!(
        http_post_json(port, "/api/v2/alerts", &body),
        Some(200),
        "posting the alerts"
    );

    // Alertmanager marks inhibited alerts when it processes their group: wait until every alert
    // it holds has been given a state that says so either way, then compare.
    let key = |labels: &serde_json::Value| -> AlertKey {
        let name = labels["alertname"].as_str().unwrap_or("").to_string();
        let mut rest: Vec<(String, String)> = labels
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| *k != "alertname")
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
            .collect();
        rest.sort();
        (name, rest)
    };
    let mut seen: Vec<(AlertKey, bool)> = Vec::new();
    // A wrong config never reaches that point: compare what there is after the deadline.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some((200, b)) = http_get(port, "/api/v2/alerts")
            && let Ok(serde_json::Value::Array(list)) = serde_json::from_str(&b)
        {
            seen = list
                .iter()
                .map(|a| {
                    let inhibited = a["status"]["inhibitedBy"]
                        .as_array()
                        .is_some_and(|i| !i.is_empty());
                    (key(&a["labels"]), inhibited)
                })
                .collect();
            let expected_inhibited = CASES.iter().filter(|c| c.2).count();
            if seen.len() == CASES.len()
                && seen.iter().filter(|s| s.1).count() >= expected_inhibited
            {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let mut wrong = Vec::new();
    for (name, labels, inhibited) in CASES {
        let mut want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        want.sort();
        let got = seen
            .iter()
            .find(|((n, l), _)| n == name && *l == want)
            .map(|(_, i)| *i);
        if got != Some(*inhibited) {
            wrong.push(format!(
                "{name} {labels:?}: inhibited {got:?}, expected {inhibited}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "the inhibit rules of deploy/prometheus/alertmanager-inhibit.yml:\n  {}",
        wrong.join("\n  ")
    );
}
