//! `mailprobe run` with an in-process plugin that sleeps past the run's deadline for one
//! mailbox: each overrun is counted in `mailprobe_plugin_overruns_total`, after the third the
//! plugin is disabled for the rest of the process (`mailprobe_plugin_disabled` 1) and its
//! requirements are `skip` `not_verified` on every mailbox (verdict incomplete, never compliant
//! nor failed), while the daemon keeps checking both mailboxes against the lab's Dovecot and
//! the built-in requirements keep passing.
mod common;
mod dynamic_support;
mod telemetry;

use std::time::Duration;

use common::DovecotOpts;
use common::lab::{HOSTNAME, Lab, PASSWORD, USER};
use telemetry::*;

/// The `check finished` log lines of `mailbox`, from `log`.
fn finished<'a>(log: &'a str, mailbox: &str) -> Vec<&'a str> {
    let needle = format!("mailbox={mailbox} ");
    log.lines()
        .filter(|l| l.contains("check finished") && l.contains(&needle))
        .collect()
}

/// The value of `key=` in a logfmt line (up to the next space; an empty value is `""`).
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let value = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line}"));
    if value == "\"\"" { "" } else { value }
}

#[test]
fn a_plugin_that_overruns_three_times_is_disabled_and_counted_and_the_daemon_goes_on() {
    let dovecot = Lab::dovecot("overrun", DovecotOpts::default());
    let plugins = dynamic_support::plugin_dir("daemon-overrun", &["mailprobe-test-misbehave"]);
    let scratch = Scratch::new("daemon-overrun");
    let listen = free_port();
    let mailbox = |name: &str| {
        format!(
            "  - name: {name}
    imap: {HOSTNAME}:{port}
    imap_security: tls
    connect_to: 127.0.0.1
    ca_file: {ca}
    user: {USER}
    password: {{ env: OVERRUN_PASSWORD }}
",
            port = dovecot.port("imaps"),
            ca = Lab::ca_file().display(),
        )
    };
    let config = scratch.path("mailprobe.yaml");
    // The plugin sleeps 20 s on mailbox `slow` only, past its 6 s deadline; on `fast` it passes.
    // Room on the server for both runs at once: mailboxes that share a server's connection
    // budget take turns, and `fast` must not wait for `slow`'s overrunning runs.
    std::fs::write(
        &config,
        format!(
            "interval: 1s
timeout: 6s
server_connections: 8
listen: 127.0.0.1:{listen}
plugins:
  dir: {plugins}
  isolation: in-process
  settings:
    misbehave:
      config: {{ mode: sleep, sleep_ms: 20000, mailbox: slow }}
mailboxes:
{slow}{fast}",
            plugins = plugins.display(),
            slow = mailbox("slow"),
            fast = mailbox("fast"),
        ),
    )
    .unwrap();
    let log_path = scratch.path("mailprobe.log");
    let mut probe = mailprobe_run(&config, &log_path, &[("OVERRUN_PASSWORD", PASSWORD)]);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let page = || {
        http_get(listen, "/metrics")
            .map(|r| r.1)
            .unwrap_or_default()
    };
    const OVERRUNS: &str = "mailprobe_plugin_overruns_total{plugin=\"misbehave\"}";
    const DISABLED: &str = "mailprobe_plugin_disabled{plugin=\"misbehave\"}";

    wait_until(
        "the plugin's series on /metrics",
        Duration::from_secs(30),
        || sample(&page(), DISABLED).is_some(),
    );
    let p = page();
    assert!(sample(&p, OVERRUNS).is_some(), "{p}");
    wait_until("the plugin disabled", Duration::from_secs(120), || {
        sample(&page(), DISABLED) == Some(1.0)
    });
    assert_eq!(sample(&page(), OVERRUNS), Some(3.0), "{}", log());
    // Before that, the plugin passed on the mailbox it did not sleep on.
    let before = log();
    assert!(
        finished(&before, "fast")
            .iter()
            .any(|l| field(l, "verdict") == "compliant"),
        "{before}"
    );
    let disabled_at = before
        .find("plugin disabled until mailprobe restarts")
        .unwrap_or_else(|| panic!("no disabling in the log:\n{before}"));

    // Both mailboxes are checked again after that, without calling the plugin.
    let runs_after = |mailbox: &str| {
        let text = log();
        let tail = text.get(disabled_at..).unwrap_or_default().to_string();
        finished(&tail, mailbox)
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
    };
    wait_until(
        "two runs of each mailbox after the plugin was disabled",
        Duration::from_secs(60),
        || runs_after("slow").len() >= 2 && runs_after("fast").len() >= 2,
    );
    for m in ["slow", "fast"] {
        for line in runs_after(m) {
            assert_eq!(field(&line, "verdict"), "incomplete", "{m}: {line}");
            let not_verified = field(&line, "not_verified");
            assert!(
                not_verified.contains("misbehave.ok") && not_verified.contains("misbehave.extra"),
                "{m}: {line}"
            );
            // Not verified is never a failure.
            assert_eq!(field(&line, "failing"), "", "{m}: {line}");
        }
    }
    let p = page();
    assert_eq!(
        sample(&p, OVERRUNS),
        Some(3.0),
        "no call after disabling\n{p}"
    );
    assert_eq!(sample(&p, DISABLED), Some(1.0), "{p}");
    for m in ["slow", "fast"] {
        let series = |what: &str| format!("mailprobe_{what}{{mailbox=\"{m}\"");
        assert_eq!(
            sample(
                &p,
                &format!("{},verdict=\"incomplete\"}}", series("verdict"))
            ),
            Some(1.0),
            "{m}\n{p}"
        );
        // No new compliance claimed: `mailprobe_compliant` keeps the last definitive verdict
        // (fast was compliant before the plugin was disabled; slow never had one)...
        let compliant = sample(&p, &format!("{}}}", series("compliant")));
        let kept = if m == "fast" { Some(1.0) } else { None };
        assert_eq!(compliant, kept, "{m}\n{p}");
        // ...and no status for a skipped requirement...
        assert!(
            !p.contains(&format!(
                "{},requirement=\"misbehave.ok\"}}",
                series("requirement_status")
            )),
            "{m}\n{p}"
        );
        // ...while the built-in requirements are still judged.
        assert_eq!(
            sample(
                &p,
                &format!(
                    "{},requirement=\"imap.login\"}}",
                    series("requirement_status")
                )
            ),
            Some(1.0),
            "{m}\n{p}"
        );
    }
    assert_eq!(http_get(listen, "/healthz").map(|r| r.0), Some(200));
    let (_, status) = probe
        .terminate(Duration::from_secs(15))
        .expect("mailprobe run was still running and stopped on SIGTERM");
    assert!(status.success(), "{status:?}\n{}", log());
}
