//! The daemon's cadence per requirement group against a real Dovecot: within the cadence, the
//! second run opens fewer sessions (Dovecot's own log counts them) and its report says which
//! results rest on the first run's proof (`proved_at`), with the same statuses; the proof's age
//! is on `/metrics`. When the server's certificate changes, the next run proves everything.
mod common;
mod telemetry;

use std::time::Duration;

use serde_json::Value;
use telemetry::*;

/// The groups with a cadence in this test, and a requirement of each.
const CADENCED: [&str; 5] = [
    "imap.tls_versions",
    "imap.certificate.name",
    "imap.certificate.trust",
    "imap.certificate.expiry",
    "connections.concurrent",
];

/// Sessions Dovecot saw since it (re)started: each connection ends with one `imap-login:` line
/// (a login, or a disconnect before one).
fn sessions(state: &std::path::Path) -> usize {
    std::fs::read_to_string(state.join("dovecot.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("imap-login: "))
        .count()
}

/// The mailbox's latest report, once one started after `after` (a `started_at`).
fn next_report(listen: u16, after: &str) -> Value {
    let mut report = Value::Null;
    wait_until("the next run's report", Duration::from_secs(90), || {
        report = http_get(listen, "/api/v1/mailboxes/lab")
            .and_then(|(s, b)| (s == 200).then_some(b))
            .and_then(|b| serde_json::from_str::<Value>(&b).ok())
            .map(|v| v["report"].clone())
            .unwrap_or(Value::Null);
        report["started_at"]
            .as_str()
            .is_some_and(|s| s > after && !s.is_empty())
    });
    // Dovecot logs a session as it notices its end: let the last ones land.
    std::thread::sleep(Duration::from_millis(700));
    report
}

fn result<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["requirements"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["id"] == id))
        .unwrap_or_else(|| panic!("{id} missing from {report:#}"))
}

fn statuses(report: &Value) -> Vec<(String, String)> {
    report["requirements"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| (r["id"].to_string(), r["status"].to_string()))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_fresh_proof_is_not_proved_again_and_a_new_certificate_proves_everything() {
    let scratch = Scratch::new("cadence");
    let dovecot = Dovecot::start("cadence", free_port(), "good");
    let state = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/lab/state")
        .join(format!("cadence-{}", std::process::id()));
    let listen = free_port();
    let config = scratch.path("mailprobe.yaml");
    std::fs::write(
        &config,
        format!(
            "interval: 4s
timeout: 20s
listen: 127.0.0.1:{listen}
cadence:
  tls_versions: 1h
  certificate: 1h
  connections: 1h
mailboxes:
  - name: lab
    imap: mail.lab.test:{imaps}
    imap_security: tls
    connect_to: 127.0.0.1
    ca_file: {ca}
    user: {user}
    password: {{ env: LAB_TEST_PASSWORD }}
",
            imaps = dovecot.port,
            ca = common::Lab::ca_file().display(),
            user = common::lab::USER,
        ),
    )
    .unwrap();
    let log = scratch.path("mailprobe.log");
    let _probe = mailprobe_run(
        &config,
        &log,
        &[("LAB_TEST_PASSWORD", common::lab::PASSWORD)],
    );
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    // The first run proves everything.
    let first = next_report(listen, "");
    let first_sessions = sessions(&state);
    assert_eq!(first["verdict"], "compliant", "{first:#}\n{}", log_text());
    for id in CADENCED {
        assert!(
            result(&first, id)["evidence"].get("proved_at").is_none(),
            "{id} of the first run rests on no earlier proof: {first:#}"
        );
    }

    // The second, within the cadence: fewer sessions, the same verdicts, `proved_at` on each
    // result that rests on the first run's proof, and only on those.
    let second = next_report(listen, first["started_at"].as_str().unwrap());
    let second_sessions = sessions(&state) - first_sessions;
    assert!(
        second_sessions < first_sessions,
        "the run within the cadence opened {second_sessions} sessions, the full one {first_sessions}"
    );
    assert_eq!(statuses(&first), statuses(&second), "{second:#}");
    assert_eq!(first["verdict"], second["verdict"]);
    for id in CADENCED {
        let at = result(&second, id)["evidence"]["proved_at"].as_str();
        assert!(
            at.is_some_and(|at| at.len() == 20 && at < second["started_at"].as_str().unwrap()),
            "{id} carries the first run's proved_at (RFC 3339): {second:#}"
        );
    }
    for id in ["imap.login", "imap.folders", "imap.encryption"] {
        assert!(
            result(&second, id)["evidence"].get("proved_at").is_none(),
            "{id} is proved on every run: {second:#}"
        );
    }
    let page = http_get(listen, "/metrics")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let age = sample(&page, "mailprobe_proof_age_seconds{mailbox=\"lab\"}");
    assert!(
        age.is_some_and(|a| a >= 1.0),
        "mailprobe_proof_age_seconds is the first proof's age at the second run: {age:?}\n{page}"
    );

    // A new certificate: the next run that sees it proves everything again.
    dovecot.restart("sanonly");
    // Reports name their start to the second: the next one that started in a later second.
    let restarted = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let third = next_report(listen, &restarted);
    assert_eq!(third["verdict"], "compliant", "{third:#}\n{}", log_text());
    for id in CADENCED {
        assert!(
            result(&third, id)["evidence"].get("proved_at").is_none(),
            "{id} is proved again after the certificate changed: {third:#}"
        );
    }
    assert_ne!(
        result(&first, "imap.certificate.expiry")["evidence"]["fingerprint_sha256"],
        result(&third, "imap.certificate.expiry")["evidence"]["fingerprint_sha256"],
        "the lab's certificate changed"
    );
    let third_sessions = sessions(&state);
    eprintln!(
        "sessions: full {first_sessions}, within the cadence {second_sessions}, after the new certificate {third_sessions}"
    );
    assert!(
        third_sessions > second_sessions,
        "the run after the change opened {third_sessions} sessions, the one within the cadence {second_sessions}"
    );
}
