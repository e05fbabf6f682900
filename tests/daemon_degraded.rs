//! `mailprobe run` with bad mailboxes next to a good one, against the lab's Dovecot: a mailbox
//! whose secret is missing (a variable never set, a file that appears only later) and entries
//! that cannot be used (a port out of range, a misspelt key) are reported `incomplete` with
//! the reason and counted, while the good mailbox is checked and `/healthz` stays up. A
//! plugin that panics on every run makes its mailbox incomplete, is counted, and the mailbox
//! keeps being checked.
mod common;
mod dynamic_support;
mod telemetry;

use std::time::Duration;

use common::DovecotOpts;
use common::lab::{HOSTNAME, Lab, PASSWORD, USER};
use telemetry::*;

#[test]
fn one_bad_mailbox_never_stops_the_others() {
    let dovecot = Lab::dovecot("degraded", DovecotOpts::default());
    let scratch = Scratch::new("daemon-degraded");
    let listen = free_port();
    let port = dovecot.port("imaps");
    let ca = Lab::ca_file();
    let late = scratch.path("late-password");
    let server = |name: &str, password: &str| {
        format!(
            "  - name: {name}
    imap: {HOSTNAME}:{port}
    imap_security: tls
    connect_to: 127.0.0.1
    ca_file: {ca}
    user: {USER}
    password: {password}
",
            ca = ca.display()
        )
    };
    let config = scratch.path("mailprobe.yaml");
    std::fs::write(
        &config,
        format!(
            "interval: 2s
timeout: 20s
listen: 127.0.0.1:{listen}
mailboxes:
{good}{nosecret}{late}  - name: badport
    imap: {HOSTNAME}:99999
    user: {USER}
    password: {{ env: DEGRADED_GOOD_PASSWORD }}
  - name: typo
    imap: {HOSTNAME}:{port}
    usr: {USER}
    password: {{ env: DEGRADED_GOOD_PASSWORD }}
",
            good = server("good", "{ env: DEGRADED_GOOD_PASSWORD }"),
            nosecret = server("nosecret", "{ env: DEGRADED_UNSET_PASSWORD }"),
            late = server("late", &format!("{{ file: {} }}", late.display())),
        ),
    )
    .unwrap();
    let log_path = scratch.path("mailprobe.log");
    let mut probe = mailprobe_run(&config, &log_path, &[("DEGRADED_GOOD_PASSWORD", PASSWORD)]);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let page = || {
        http_get(listen, "/metrics")
            .map(|r| r.1)
            .unwrap_or_default()
    };
    let verdict = |page: &str, mailbox: &str, v: &str| {
        sample(
            page,
            &format!("mailprobe_verdict{{mailbox=\"{mailbox}\",verdict=\"{v}\"}}"),
        )
    };

    wait_until(
        "a verdict for every mailbox on /metrics",
        Duration::from_secs(60),
        || {
            let p = page();
            ["good", "nosecret", "late", "badport", "typo"]
                .iter()
                .all(|m| verdict(&p, m, "compliant").is_some())
        },
    );
    let p = page();
    assert_eq!(
        sample(&p, "mailprobe_compliant{mailbox=\"good\"}"),
        Some(1.0),
        "{p}\n{}",
        log()
    );
    assert_eq!(verdict(&p, "good", "compliant"), Some(1.0));
    for m in ["nosecret", "late", "badport", "typo"] {
        assert_eq!(verdict(&p, m, "incomplete"), Some(1.0), "{m}\n{p}");
        assert_eq!(verdict(&p, m, "non_compliant"), Some(0.0), "{m}\n{p}");
        // No compliance claimed either way for a mailbox that was not checked.
        assert!(
            !p.contains(&format!("mailprobe_compliant{{mailbox=\"{m}\"}}")),
            "{m}\n{p}"
        );
        assert!(
            !p.contains(&format!("mailprobe_requirement_status{{mailbox=\"{m}\",")),
            "{m}\n{p}"
        );
        let errors = sample(
            &p,
            &format!("mailprobe_probe_errors_total{{mailbox=\"{m}\",kind=\"config\"}}"),
        );
        assert!(errors.is_some_and(|n| n >= 1.0), "{m}: {errors:?}\n{p}");
    }
    assert_eq!(
        sample(
            &p,
            "mailprobe_probe_errors_total{mailbox=\"good\",kind=\"config\"}"
        ),
        Some(0.0),
        "{p}"
    );
    assert_eq!(http_get(listen, "/healthz").map(|r| r.0), Some(200));
    assert_eq!(http_get(listen, "/readyz").map(|r| r.0), Some(200));
    // Each reason is in the log, naming what to fix.
    let text = log();
    for needle in [
        "DEGRADED_UNSET_PASSWORD is not set",
        "cannot read password file",
        "port 99999 is out of range",
        "unknown field `usr`",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
    assert!(!text.contains(PASSWORD), "the password is in the log");

    // The secret file appears: the next run reads it, without a restart.
    std::fs::write(&late, format!("{PASSWORD}\n")).unwrap();
    wait_until(
        "the late mailbox checked once its secret exists",
        Duration::from_secs(60),
        || sample(&page(), "mailprobe_compliant{mailbox=\"late\"}") == Some(1.0),
    );
    assert_eq!(http_get(listen, "/healthz").map(|r| r.0), Some(200));
    let stopped = probe.terminate(Duration::from_secs(15));
    let (_, status) = stopped.expect("mailprobe run was still running and stopped on SIGTERM");
    assert!(status.success(), "{status:?}\n{}", log());
}

#[test]
fn a_plugin_that_panics_every_run_is_counted_and_the_mailbox_stays_checked() {
    let dovecot = Lab::dovecot("panicking", DovecotOpts::default());
    let plugins = dynamic_support::plugin_dir("daemon-panic", &["mailprobe-test-misbehave"]);
    let scratch = Scratch::new("daemon-panic");
    let listen = free_port();
    let am_port = free_port();
    let _am = alertmanager(&scratch.0, am_port);
    let config = scratch.path("mailprobe.yaml");
    std::fs::write(
        &config,
        format!(
            "interval: 1s
timeout: 20s
listen: 127.0.0.1:{listen}
alerts:
  alertmanager: http://127.0.0.1:{am_port}
  alert_after: 2
plugins:
  dir: {plugins}
  settings:
    misbehave:
      config: {{ mode: panic }}
mailboxes:
  - name: lab
    imap: {HOSTNAME}:{port}
    imap_security: tls
    connect_to: 127.0.0.1
    ca_file: {ca}
    user: {USER}
    password: {{ env: PANICKING_PASSWORD }}
",
            plugins = plugins.display(),
            port = dovecot.port("imaps"),
            ca = Lab::ca_file().display(),
        ),
    )
    .unwrap();
    let log_path = scratch.path("mailprobe.log");
    let mut probe = mailprobe_run(&config, &log_path, &[("PANICKING_PASSWORD", PASSWORD)]);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let panics = || {
        let page = http_get(listen, "/metrics")
            .map(|r| r.1)
            .unwrap_or_default();
        sample(
            &page,
            "mailprobe_probe_errors_total{mailbox=\"lab\",kind=\"panic\"}",
        )
        .unwrap_or(0.0)
    };
    wait_until("a first panicking run", Duration::from_secs(60), || {
        panics() >= 1.0
    });
    let first = panics();
    // The mailbox is still scheduled: more runs, more panics counted.
    wait_until(
        "the mailbox checked again after a panic",
        Duration::from_secs(60),
        || panics() >= first + 2.0,
    );
    let page = http_get(listen, "/metrics").unwrap().1;
    assert_eq!(
        sample(
            &page,
            "mailprobe_verdict{mailbox=\"lab\",verdict=\"incomplete\"}"
        ),
        Some(1.0),
        "{page}\n{}",
        log()
    );
    assert!(
        !page.contains("mailprobe_compliant{mailbox=\"lab\"}"),
        "{page}"
    );
    // The built-in requirements were still judged.
    assert_eq!(
        sample(
            &page,
            "mailprobe_requirement_status{mailbox=\"lab\",requirement=\"imap.login\"}"
        ),
        Some(1.0),
        "{page}"
    );
    assert_eq!(http_get(listen, "/healthz").map(|r| r.0), Some(200));
    assert!(log().contains("misbehave panics on purpose"), "{}", log());
    // Alertmanager holds MailboxCheckIncomplete for the mailbox, never MailboxNonCompliant.
    let alerts = || {
        let (status, body) = http_get(am_port, "/api/v2/alerts").unwrap_or((0, String::new()));
        assert_eq!(status, 200, "alertmanager: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("alertmanager JSON");
        v.as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["labels"]["mailbox"] == "lab")
            .map(|a| {
                a["labels"]["alertname"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect::<Vec<_>>()
    };
    wait_until(
        "MailboxCheckIncomplete in Alertmanager",
        Duration::from_secs(60),
        || alerts().iter().any(|n| n == "MailboxCheckIncomplete"),
    );
    assert!(
        !alerts().iter().any(|n| n == "MailboxNonCompliant"),
        "{:?}",
        alerts()
    );
    let (_, status) = probe
        .terminate(Duration::from_secs(15))
        .expect("mailprobe run was still running");
    assert!(status.success(), "{status:?}\n{}", log());
}
