//! `mail.roundtrip` against the lab's real mail path: Postfix (submission, SASL through
//! Dovecot) delivers over LMTP into Dovecot, where the probe finds its test message by
//! Message-ID and deletes it. Every test then reads the users' Maildirs to prove that no test
//! message is left behind: after a pass, after a delivery that never reached the INBOX the
//! probe watched, after a run killed between sending and deleting, and after a daemon run.
//! Also the usage errors of `--roundtrip`, and the daemon's `mailprobe_roundtrip_seconds`.

mod common;
mod telemetry;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::lab::{HOSTNAME, NOSENT_USER, PASSWORD, USER};
use common::probe::{PASSWORD_ENV, lab_args, mailprobe, requirement, run_args, with_smtp};
use common::{DovecotOpts, Lab, PostfixOpts};
use serde_json::Value;

/// The header every test message carries.
const MARKER: &str = "X-Mailprobe-Roundtrip";

/// A Dovecot and a Postfix delivering into it; the Postfix stops first.
struct Mail {
    postfix: Lab,
    dovecot: Lab,
}

fn mail(name: &str) -> Mail {
    let dovecot = Lab::dovecot(&format!("{name}-dc"), DovecotOpts::default());
    let postfix = Lab::postfix(
        &format!("{name}-pf"),
        &dovecot,
        PostfixOpts {
            nosasl: false,
            authplain: false,
            ..Default::default()
        },
    );
    Mail { postfix, dovecot }
}

impl Drop for Mail {
    fn drop(&mut self) {
        self.postfix.stop();
        self.dovecot.stop();
    }
}

/// `mailprobe check` against the lab as `user` over submission (STARTTLS), with `extra`.
fn args(m: &Mail, user: &str, extra: &[&str]) -> Vec<String> {
    let mut a = with_smtp(lab_args(&m.dovecot, "imaps"), &m.postfix, "submission");
    if let Some(i) = a.iter().position(|x| x == "--user") {
        a[i + 1] = user.to_string();
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// Every message file under `dir` (recursively: the `cur`, `new` and `tmp` folders of each
/// Maildir folder, not Dovecot's index and cache files) that holds a test message.
fn marked_in(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let messages = dir
        .file_name()
        .is_some_and(|n| n == "cur" || n == "new" || n == "tmp");
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            marked_in(&p, out);
        } else if messages
            && std::fs::read(&p)
                .map(|b| String::from_utf8_lossy(&b).contains(MARKER))
                .unwrap_or(false)
        {
            out.push(p);
        }
    }
}

/// The test messages in a user's Maildir (INBOX and every folder).
fn marked(m: &Mail, user: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    marked_in(&m.dovecot.maildir(user), &mut out);
    out
}

fn roundtrip(report: &Value) -> &Value {
    requirement(report, "mail.roundtrip")
}

/// Puts a test message an interrupted run left behind into `folder` (a Maildir folder: `""`
/// for INBOX, `.Sent`), as Dovecot's own delivery would, owned by the mail user.
fn strand(m: &Mail, user: &str, folder: &str, id: &str) {
    let dir = m.dovecot.maildir(user).join(folder).join("cur");
    let path = dir.join(format!("1764500000.M{}P1.lab:2,S", id.len() + folder.len()));
    let text = format!(
        "From: <{user}>\r\nTo: <{user}>\r\nSubject: mailprobe round-trip test\r\nMessage-ID: {id}\r\n{MARKER}: {id}\r\n\r\nleft behind\r\n"
    );
    std::fs::write(&path, text).unwrap();
    let owner = std::fs::metadata(&dir).unwrap();
    use std::os::unix::fs::MetadataExt;
    std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).unwrap();
}

#[test]
fn the_message_arrives_is_timed_and_deleted() {
    let m = mail("rt-pass");
    let run = run_args(&args(&m, USER, &["--roundtrip", "--timeout", "20s"]));
    assert!(!run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD));
    let report = run.json();
    let r = roundtrip(&report);
    assert_eq!(r["status"], "pass", "{r:#}\n{}", m.postfix.log());
    let e = &r["evidence"];
    let latency = e["latency_seconds"].as_f64().expect("latency_seconds");
    assert!(latency > 0.0 && latency < 20.0, "{r:#}");
    let id = e["message_id"].as_str().unwrap();
    assert!(
        id.starts_with("<mailprobe-roundtrip.") && id.ends_with("@lab.test>"),
        "{id}"
    );
    assert_eq!(e["deleted"], true, "{r:#}");
    assert_eq!(e["found_in"], "INBOX");
    // Postfix does not save a copy in Sent; the probe looked there.
    assert_eq!(e["sent_copy"], "none", "{r:#}");
    // After the connection-limit check closed the plugins' sessions, it opened its own.
    assert_eq!(e["imap_session"], "opened", "{r:#}");
    assert_eq!(e["to"], USER);
    // The message really went through Postfix and LMTP.
    let log = m.postfix.log();
    assert!(log.contains(&format!("message-id={id}")), "{log}");
    assert!(log.contains("status=sent"), "{log}");
    assert_eq!(marked(&m, USER), Vec::<PathBuf>::new());
    // The measure the exporters publish.
    assert_eq!(
        requirement(&report, "mail.roundtrip")["evidence"]["warn_seconds"],
        60.0
    );
}

#[test]
fn stale_messages_of_interrupted_runs_are_removed_from_inbox_and_sent_first() {
    let m = mail("rt-stale");
    strand(&m, USER, "", "<mailprobe-roundtrip.stale1@lab.test>");
    strand(&m, USER, ".Sent", "<mailprobe-roundtrip.stale2@lab.test>");
    assert_eq!(marked(&m, USER).len(), 2);
    // `--only roundtrip` pulls in imap and smtp but not connlimit: the plugins' own sessions
    // are still held, and the round trip reuses them.
    let run = run_args(&args(&m, USER, &["--roundtrip", "--only", "roundtrip"]));
    let report = run.json();
    let r = roundtrip(&report);
    assert_eq!(r["status"], "pass", "{r:#}");
    assert_eq!(r["evidence"]["stale_removed"], 2, "{r:#}");
    assert_eq!(r["evidence"]["imap_session"], "reused", "{r:#}");
    assert_eq!(r["evidence"]["smtp_session"], "reused", "{r:#}");
    assert_eq!(marked(&m, USER), Vec::<PathBuf>::new());
}

#[test]
fn a_message_that_never_arrives_fails_and_the_recipients_next_run_removes_it() {
    let m = mail("rt-lost");
    // alice sends to nosent: nothing reaches the INBOX the probe watches.
    let run = run_args(&args(
        &m,
        USER,
        &[
            "--roundtrip",
            "--roundtrip-to",
            NOSENT_USER,
            "--only",
            "roundtrip",
            "--timeout",
            "5s",
        ],
    ));
    let report = run.json();
    let r = roundtrip(&report);
    assert_eq!(r["status"], "fail", "{r:#}");
    assert_eq!(run.code, 2, "{}", run.stdout);
    let remedy = r["remedy"].as_str().unwrap();
    assert!(remedy.contains("mail queue"), "{remedy}");
    assert_eq!(r["evidence"]["deleted"], false);
    assert!(
        r["evidence"]["waited_seconds"].as_f64().unwrap() > 1.0,
        "{r:#}"
    );
    assert!(
        r["evidence"]["latency_seconds"].is_null(),
        "no latency for a message that did not arrive: {r:#}"
    );
    assert_eq!(marked(&m, USER), Vec::<PathBuf>::new());
    // Its copy went to nosent. The probe checking nosent's own mailbox removes it first.
    assert_eq!(marked(&m, NOSENT_USER).len(), 1);
    let run = run_args(&args(
        &m,
        NOSENT_USER,
        &["--roundtrip", "--only", "roundtrip"],
    ));
    let r = roundtrip(&run.json()).clone();
    assert_eq!(r["status"], "pass", "{r:#}");
    assert_eq!(r["evidence"]["stale_removed"], 1, "{r:#}");
    // nosent has no Sent folder: nothing to look for there.
    assert_eq!(r["evidence"]["sent_copy"], "unknown", "{r:#}");
    assert_eq!(marked(&m, NOSENT_USER), Vec::<PathBuf>::new());
}

#[test]
fn a_run_killed_after_sending_leaves_one_message_that_the_next_run_removes() {
    let m = mail("rt-kill");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailprobe"))
        .args(args(
            &m,
            USER,
            &[
                "--roundtrip",
                "--roundtrip-to",
                NOSENT_USER,
                "--only",
                "roundtrip",
                "--timeout",
                "60s",
            ],
        ))
        .env_remove("MAILPROBE_PASSWORD")
        .env(PASSWORD_ENV, PASSWORD)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once the message is delivered, while the probe waits for it in alice's INBOX.
    telemetry::wait_until(
        "the test message delivered",
        Duration::from_secs(30),
        || !marked(&m, NOSENT_USER).is_empty(),
    );
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(marked(&m, NOSENT_USER).len(), 1, "one message, no more");
    let run = run_args(&args(
        &m,
        NOSENT_USER,
        &["--roundtrip", "--only", "roundtrip"],
    ));
    let r = roundtrip(&run.json()).clone();
    assert_eq!(r["status"], "pass", "{r:#}");
    assert_eq!(r["evidence"]["stale_removed"], 1, "{r:#}");
    assert_eq!(marked(&m, NOSENT_USER), Vec::<PathBuf>::new());
    assert_eq!(marked(&m, USER), Vec::<PathBuf>::new());
}

/// A usage error: exit 3 and the message on stderr.
fn usage_error(extra: &[&str]) -> String {
    let mut a = vec![
        "check",
        "--imap",
        "imap.example.invalid:993",
        "--user",
        "sales",
        "--password-env",
        PASSWORD_ENV,
    ];
    a.extend_from_slice(extra);
    let run = mailprobe(&a);
    assert_eq!(run.code, 3, "{extra:?}: {}{}", run.stdout, run.stderr);
    run.stderr
}

#[test]
fn roundtrip_flags_are_checked_before_anything_runs() {
    let e = usage_error(&["--roundtrip", "--roundtrip-to", "sales@example.com"]);
    assert!(e.contains("--roundtrip needs --smtp"), "{e}");
    let e = usage_error(&["--smtp", "smtp.example.invalid:587", "--roundtrip"]);
    assert!(
        e.contains("the login `sales` is not an e-mail address") && e.contains("--roundtrip-to"),
        "{e}"
    );
    let e = usage_error(&[
        "--smtp",
        "smtp.example.invalid:587",
        "--roundtrip",
        "--roundtrip-to",
        "not an address",
    ]);
    assert!(
        e.contains("--roundtrip-to: `not an address` is not an e-mail address"),
        "{e}"
    );
    let e = usage_error(&["--roundtrip-to", "sales@example.com"]);
    assert!(
        e.contains("--roundtrip-to is given without --roundtrip"),
        "{e}"
    );
    // Nagios gets its one UNKNOWN line.
    let run = mailprobe(&[
        "check",
        "--imap",
        "imap.example.invalid:993",
        "--user",
        "sales@example.com",
        "--password-env",
        PASSWORD_ENV,
        "--roundtrip",
        "--format",
        "nagios",
    ]);
    assert_eq!(run.code, 3);
    assert!(
        run.stdout.starts_with("MAILPROBE UNKNOWN - ") && run.stdout.contains("--smtp"),
        "{}",
        run.stdout
    );
}

#[test]
fn the_daemon_exports_the_roundtrip_latency() {
    let m = mail("rt-daemon");
    let scratch = telemetry::Scratch::new("roundtrip-daemon");
    let listen = telemetry::free_port();
    let config = scratch.path("mailprobe.yaml");
    std::fs::write(
        &config,
        format!(
            "interval: 60s
timeout: 20s
listen: 127.0.0.1:{listen}
mailboxes:
  - name: rt
    imap: {HOSTNAME}:{imaps}
    imap_security: tls
    smtp: {HOSTNAME}:{submission}
    smtp_security: starttls
    connect_to: 127.0.0.1
    ca_file: {ca}
    user: {USER}
    password: {{ env: RT_PASSWORD }}
    roundtrip: true
    roundtrip_warn: 30s
",
            imaps = m.dovecot.port("imaps"),
            submission = m.postfix.port("submission"),
            ca = Lab::ca_file().display(),
        ),
    )
    .unwrap();
    let log = scratch.path("mailprobe.log");
    let mut daemon = telemetry::mailprobe_run(&config, &log, &[("RT_PASSWORD", PASSWORD)]);
    let series = "mailprobe_roundtrip_seconds{mailbox=\"rt\"}";
    let page = || {
        telemetry::http_get(listen, "/metrics")
            .map(|r| r.1)
            .unwrap_or_default()
    };
    telemetry::wait_until(
        "the round trip on /metrics",
        Duration::from_secs(40),
        || telemetry::sample(&page(), series).is_some(),
    );
    let p = page();
    let seconds = telemetry::sample(&p, series).unwrap();
    assert!(seconds > 0.0 && seconds < 20.0, "{p}");
    assert!(p.contains("# HELP mailprobe_roundtrip_seconds "), "{p}");
    assert_eq!(
        telemetry::sample(
            &p,
            "mailprobe_requirement_status{mailbox=\"rt\",requirement=\"mail.roundtrip\"}"
        ),
        Some(1.0),
        "{p}"
    );
    // The run that published it also deleted its message.
    assert_eq!(marked(&m, USER), Vec::<PathBuf>::new());
    daemon.terminate(Duration::from_secs(10));
}
