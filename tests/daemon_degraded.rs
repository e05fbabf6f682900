//! `mailprobe run` with bad mailboxes next to a good one, against the lab's Dovecot: a mailbox
//! whose secret is missing (a variable never set, a file that appears only later) and entries
//! that cannot be used (a port out of range, a misspelt key) are reported `incomplete` with
//! the reason and counted, while the good mailbox is checked and `/healthz` stays up. A
//! plugin that panics on every run makes its mailbox incomplete, is counted, and the mailbox
//! keeps being checked.
//!
//! And the sidecar's contract: `run` never exits on a configuration problem. Started with a
//! missing file, or with a file that is invalid as a whole, it stays up, serves `/healthz` and
//! `/metrics` (`mailprobe_config_valid 0`, the error in the log), and picks up the fixed file
//! by itself, in the same process; a listen address it cannot bind is said, retried, and taken
//! once it is free, while the process keeps running.
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

/// `mailprobe run --config FILE ARGS...`, its output in `log`.
fn run_with(config: &std::path::Path, log: &std::path::Path, args: &[&str]) -> Proc {
    let out = std::fs::File::create(log).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mailprobe"));
    cmd.arg("run").arg("--config").arg(config).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    let child = cmd
        .env("MAILPROBE_LOG", "info")
        .env("DEGRADED_GOOD_PASSWORD", PASSWORD)
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("mailprobe run");
    Proc {
        name: "mailprobe",
        child: Some(child),
    }
}

/// Whether the process is still running (not exited, not a zombie).
fn alive(p: &mut Proc) -> bool {
    p.child
        .as_mut()
        .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
}

fn good_config(listen: u16, dovecot: &Lab, extra: &str) -> String {
    format!(
        "interval: 2s
timeout: 20s
listen: 127.0.0.1:{listen}
{extra}mailboxes:
  - name: good
    imap: {HOSTNAME}:{port}
    imap_security: tls
    connect_to: 127.0.0.1
    ca_file: {ca}
    user: {USER}
    password: {{ env: DEGRADED_GOOD_PASSWORD }}
",
        port = dovecot.port("imaps"),
        ca = Lab::ca_file().display()
    )
}

/// Started on a file that cannot be loaded: it stays up and says so, then loads the fixed file
/// without a restart. `fixed` is written once the problem has been seen.
fn unloadable_then_fixed(name: &str, broken: Option<&str>, expect: &str, extra: &str) {
    let dovecot = Lab::dovecot(name, DovecotOpts::default());
    let scratch = Scratch::new(name);
    let listen = free_port();
    let config = scratch.path("mailprobe.yaml");
    if let Some(text) = broken {
        std::fs::write(&config, text).unwrap();
    }
    let log_path = scratch.path("mailprobe.log");
    let address = format!("127.0.0.1:{listen}");
    // No --reload-interval: a file that cannot be loaded is looked at again by itself.
    let mut probe = run_with(&config, &log_path, &["--web.listen-address", &address]);
    let pid = probe.pid();
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let page = || {
        http_get(listen, "/metrics")
            .map(|r| r.1)
            .unwrap_or_default()
    };
    wait_until(
        "mailprobe_config_valid 0 on /metrics",
        Duration::from_secs(20),
        || sample(&page(), "mailprobe_config_valid") == Some(0.0),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(alive(&mut probe), "it exited:\n{}", log());
    assert_eq!(http_get(listen, "/healthz").map(|r| r.0), Some(200));
    // Nothing runs yet: not ready (a readiness probe, where there is one, says so).
    assert_eq!(http_get(listen, "/readyz").map(|r| r.0), Some(503));
    let p = page();
    assert_eq!(
        sample(&p, "mailprobe_config_last_reload_successful"),
        Some(0.0),
        "{p}"
    );
    assert!(!p.contains("mailprobe_verdict{"), "{p}");
    let l = log();
    assert!(l.contains("the configuration cannot be loaded"), "{l}");
    assert!(l.contains(expect), "expected {expect:?} in the log:\n{l}");

    std::fs::write(&config, good_config(listen, &dovecot, extra)).unwrap();
    wait_until(
        "the fixed file loaded and its mailbox checked",
        Duration::from_secs(60),
        || {
            let p = page();
            sample(&p, "mailprobe_config_valid") == Some(1.0)
                && sample(
                    &p,
                    "mailprobe_verdict{mailbox=\"good\",verdict=\"compliant\"}",
                ) == Some(1.0)
        },
    );
    assert!(alive(&mut probe), "it exited:\n{}", log());
    assert_eq!(probe.pid(), pid);
    if !extra.is_empty() {
        assert!(log().contains("restarts in place"), "{}", log());
    }
    assert_eq!(
        http_get(listen, "/readyz").map(|r| r.0),
        Some(200),
        "{}",
        log()
    );
    assert_eq!(
        sample(&page(), "mailprobe_config_last_reload_successful"),
        Some(1.0)
    );
    let (_, status) = probe
        .terminate(Duration::from_secs(12))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}\n{}", log());
}

#[test]
fn a_missing_file_is_reported_and_picked_up_once_it_exists() {
    unloadable_then_fixed(
        "missing-config",
        None,
        "cannot read the configuration file",
        "",
    );
}

#[test]
fn an_invalid_file_is_reported_and_picked_up_once_fixed() {
    // An unknown top-level key makes the whole file invalid (not one mailbox). The fixed file
    // also sets a process-wide setting, which the first load applies by restarting in place.
    unloadable_then_fixed(
        "invalid-config",
        Some("interval: 2s\nlisten: 127.0.0.1:1\nintervall: 5m\nmailboxes: []\n"),
        "unknown field `intervall`",
        "concurrency: 4\n",
    );
}

#[test]
fn a_listen_address_it_cannot_bind_is_retried_never_an_exit() {
    let scratch = Scratch::new("unbindable-listen");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = scratch.path("mailprobe.yaml");
    std::fs::write(
        &config,
        format!(
            "interval: 1h\nlisten: 127.0.0.1:{port}\nmailboxes:\n  - name: nowhere\n    imap: {HOSTNAME}:993\n    connect_to: 127.0.0.1\n    user: {USER}\n    password: {{ env: DEGRADED_GOOD_PASSWORD }}\n"
        ),
    )
    .unwrap();
    let log_path = scratch.path("mailprobe.log");
    let mut probe = run_with(&config, &log_path, &[]);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_until(
        "the bind failure in the log",
        Duration::from_secs(20),
        || log().contains("cannot listen"),
    );
    std::thread::sleep(Duration::from_secs(4));
    assert!(alive(&mut probe), "it exited:\n{}", log());
    let l = log();
    assert!(l.contains(&format!("127.0.0.1:{port}")), "{l}");
    assert!(
        l.matches("cannot listen").count() >= 2,
        "it retries, and says so each time:\n{l}"
    );
    // Once the address is free, it is taken without a restart.
    drop(taken);
    wait_until(
        "/healthz on the freed port",
        Duration::from_secs(40),
        || http_get(port, "/healthz").is_some_and(|r| r.0 == 200),
    );
    assert!(alive(&mut probe), "{}", log());
    assert!(
        http_get(port, "/metrics").is_some_and(|r| r.1.contains("mailprobe_config_valid 1")),
        "{}",
        log()
    );
}
