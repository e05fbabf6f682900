//! `mailprobe check` against the hostile peers of `common/hostile.rs`, with the assertions every
//! case shares: no panic, a Nagios exit code, an end by the deadline, no password (nor its base64
//! forms) in any output at trace level, no terminal escape, and peak memory under
//! `common::child::MAX_PEAK_RSS`.
//!
//! Included with `#[path]` next to `common` and `hostile` (`mod hostile_check;`).
#![allow(dead_code)]

use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::common::child::{self, Ended};
use crate::hostile::{self, Mode, Server};

pub const USER: &str = "alice@lab.test";
/// Distinctive, so that any prefix of it in an output is a leak and nothing else.
pub const PASSWORD: &str = "Qz7-hostile-Pw!x";
pub const PASSWORD_ENV: &str = "MAILPROBE_HOSTILE_PASSWORD";
/// The check's deadline (`--timeout`).
pub const TIMEOUT: Duration = Duration::from_secs(8);
/// How long past its deadline a run may take to close sessions, print and exit before it counts
/// as hung (the probe allows itself 2 s to close leftover sessions).
pub const GRACE: Duration = Duration::from_secs(5);

/// The forms of the password that must never be printed.
pub fn secrets() -> Vec<String> {
    vec![
        PASSWORD.to_string(),
        PASSWORD[..5].to_string(),
        STANDARD.encode(PASSWORD),
        STANDARD.encode(format!("\0{USER}\0{PASSWORD}")),
        STANDARD.encode(format!("{USER}\0{PASSWORD}")),
    ]
}

/// `mailprobe ARGS` at trace level, with the password in [`PASSWORD_ENV`].
pub fn command(args: &[String]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailprobe"));
    cmd.args(args)
        .env_remove("MAILPROBE_PASSWORD")
        .env(PASSWORD_ENV, PASSWORD)
        .env("MAILPROBE_LOG", "trace")
        .env("RUST_LOG", "trace")
        .env("NO_COLOR", "1");
    cmd
}

/// Runs `mailprobe ARGS`; fails the test if it outlives its deadline or its memory bound.
pub fn mailprobe(args: &[String]) -> Ended {
    let run = child::run(&mut command(args), TIMEOUT + GRACE);
    assert!(
        !run.overran,
        "mailprobe {args:?} still ran {:?} after its start:\n{}\n{}",
        TIMEOUT + GRACE,
        run.stdout,
        run.stderr
    );
    run.assert_peak_rss(&format!("mailprobe {args:?}"));
    run
}

pub fn security(mode: Mode) -> &'static str {
    match mode {
        Mode::Tls => "tls",
        Mode::Plain => "starttls",
    }
}

/// The arguments of a check of the mailbox served by `imap` (and `smtp`), without `--format`.
pub fn check_args(imap: (&Server, Mode), smtp: Option<(&Server, Mode)>) -> Vec<String> {
    let mut base: Vec<String> = [
        "check",
        "--imap",
        &format!("{}:{}", hostile::HOSTNAME, imap.0.port),
        "--imap-security",
        security(imap.1),
        "--connect-to",
        &format!("{}:127.0.0.1", hostile::HOSTNAME),
        "--ca-file",
        &hostile::ca_file().display().to_string(),
        "--user",
        USER,
        "--password-env",
        PASSWORD_ENV,
        "--timeout",
        &format!("{}s", TIMEOUT.as_secs()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some((s, mode)) = smtp {
        base.extend([
            "--smtp".to_string(),
            format!("{}:{}", hostile::HOSTNAME, s.port),
            "--smtp-security".to_string(),
            security(mode).to_string(),
        ]);
    }
    base
}

/// Asserts what every run must hold: no panic, a Nagios exit code, no leak, no escape.
#[track_caller]
pub fn assert_sound(run: &Ended, what: &str) {
    let all = format!("{}\n{}", run.stdout, run.stderr);
    assert_ne!(run.code, Some(101), "mailprobe panicked ({what}):\n{all}");
    assert!(
        !all.contains("panicked"),
        "mailprobe panicked ({what}):\n{all}"
    );
    assert!(
        matches!(run.code, Some(0..=3)),
        "exit code {:?} ({what}):\n{all}",
        run.code
    );
    for s in secrets() {
        assert!(
            !all.contains(&s),
            "the output ({what}) shows the password as {s:?}:\n{all}"
        );
    }
    assert!(
        !all.contains('\x1b') && !all.contains('\x07'),
        "a terminal escape reached the output ({what}):\n{all:?}"
    );
}

/// Checks the mailbox in every report format with [`assert_sound`]; returns the JSON report.
pub fn check(imap: (&Server, Mode), smtp: Option<(&Server, Mode)>) -> serde_json::Value {
    check_with(check_args(imap, smtp))
}

/// [`check`] with arguments of the caller's own (without `--format`).
pub fn check_with(base: Vec<String>) -> serde_json::Value {
    let mut json = serde_json::Value::Null;
    for format in ["json", "text", "nagios"] {
        let mut args = base.clone();
        args.extend(["--format".to_string(), format.to_string()]);
        let started = Instant::now();
        let run = mailprobe(&args);
        assert_sound(&run, format);
        if format == "json" {
            json = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
                panic!(
                    "not JSON ({e}) after {:?}:\n{}\n{}",
                    started.elapsed(),
                    run.stdout,
                    run.stderr
                )
            });
        }
    }
    json
}

/// The result of requirement `id` (`Null` when absent).
pub fn result<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["requirements"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["id"] == id))
        .unwrap_or(&serde_json::Value::Null)
}

pub fn status<'a>(report: &'a serde_json::Value, id: &str) -> &'a str {
    result(report, id)["status"].as_str().unwrap_or("absent")
}
