//! Runs the real `mailprobe` binary and reads its JSON report.
#![allow(dead_code)]

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::lab::{HOSTNAME, Lab, PASSWORD};

/// The variable the tests put the lab password in.
pub const PASSWORD_ENV: &str = "MAILPROBE_TEST_PASSWORD";

/// One finished `mailprobe` process.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// Peak resident memory in bytes (see `common::child`).
    pub peak_rss: u64,
}

impl Run {
    /// The report, after checking that no summary or remedy in it is Debug-formatted text:
    /// every report the tests read passes through here.
    pub fn json(&self) -> Value {
        let report: Value = serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        });
        assert_no_debug_text(&report);
        report
    }
}

/// Fails when a summary or remedy holds Rust Debug output (`Name { field: … }`, `Some(…)`, a
/// bare error variant): what a person reads must be words.
pub fn assert_no_debug_text(report: &Value) {
    fn walk(v: &Value, path: &str) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let here = format!("{path}.{k}");
                    if let ("summary" | "remedy", Value::String(s)) = (k.as_str(), v)
                        && let Some(why) = debug_text(s)
                    {
                        panic!("{here} holds Debug-formatted text ({why}): {s}");
                    }
                    walk(v, &here);
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    walk(v, &format!("{path}[{i}]"));
                }
            }
            _ => {}
        }
    }
    walk(report, "report");
}

/// Why `s` looks like Debug output, if it does.
pub fn debug_text(s: &str) -> Option<&'static str> {
    const VARIANTS: &[&str] = &[
        "BadSignature",
        "UnknownIssuer",
        "NotValidForName",
        "UnsupportedSignatureAlgorithm",
        "BadEncoding",
        "InvalidPurpose",
        "UnexpectedEof",
        "ConnectionReset",
        "ConnectionRefused",
        "TimedOut",
    ];
    if ["Some(", "Ok(", "Err(", "None)"]
        .iter()
        .any(|p| s.contains(p))
    {
        return Some("an Option or Result");
    }
    if VARIANTS.iter().any(|v| s.contains(v)) {
        return Some("an error variant's name");
    }
    // `Name { field: ...`: a CamelCase word, " { ", a snake_case field and a colon.
    for (i, _) in s.match_indices(" { ") {
        let before = &s[..i];
        let word = before
            .rsplit(|c: char| !c.is_ascii_alphanumeric())
            .next()
            .unwrap_or_default();
        let after = &s[i + 3..];
        let field: String = after
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        let camel = word.chars().next().is_some_and(|c| c.is_ascii_uppercase());
        if camel && !field.is_empty() && after[field.len()..].starts_with(':') {
            return Some("a struct");
        }
    }
    None
}

/// Runs `mailprobe ARGS` with the lab password in [`PASSWORD_ENV`] and no other password in
/// the environment.
pub fn mailprobe(args: &[&str]) -> Run {
    mailprobe_env(args, &[(PASSWORD_ENV, PASSWORD)])
}

pub fn mailprobe_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let start = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailprobe"));
    cmd.args(args)
        .env_remove("MAILPROBE_PASSWORD")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    // A run that hangs is a failure of its test, not of the whole suite.
    let ended = super::child::run(&mut cmd, Duration::from_secs(300));
    assert!(
        !ended.overran,
        "mailprobe {args:?} ran for 300 s: {ended:?}"
    );
    Run {
        code: ended.code.unwrap_or(-1),
        stdout: ended.stdout,
        stderr: ended.stderr,
        elapsed: start.elapsed(),
        peak_rss: ended.peak_rss,
    }
}

/// The arguments that point `mailprobe check` at a lab IMAP port as `mail.lab.test`.
pub fn lab_args(imap: &Lab, imap_listener: &str) -> Vec<String> {
    let security = if imap_listener.ends_with('s') {
        "tls"
    } else {
        "starttls"
    };
    vec![
        "check".into(),
        "--imap".into(),
        format!("{HOSTNAME}:{}", imap.port(imap_listener)),
        "--imap-security".into(),
        security.into(),
        "--connect-to".into(),
        format!("{HOSTNAME}:{}", imap.host()),
        "--ca-file".into(),
        Lab::ca_file().display().to_string(),
        "--user".into(),
        Lab::user().into(),
        "--password-env".into(),
        PASSWORD_ENV.into(),
        "--format".into(),
        "json".into(),
    ]
}

/// Adds `--smtp mail.lab.test:PORT --smtp-security ...` for a lab SMTP listener.
pub fn with_smtp(mut args: Vec<String>, smtp: &Lab, listener: &str) -> Vec<String> {
    let security = if listener == "submissions" {
        "tls"
    } else {
        "starttls"
    };
    args.push("--smtp".into());
    args.push(format!("{HOSTNAME}:{}", smtp.port(listener)));
    args.push("--smtp-security".into());
    args.push(security.into());
    args
}

pub fn run_args(args: &[String]) -> Run {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    mailprobe(&refs)
}

/// The result of one requirement in a report; panics with the report when it is absent.
pub fn requirement<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["requirements"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["id"] == id))
        .unwrap_or_else(|| panic!("no {id} in report:\n{report:#}"))
}

/// The status of one requirement.
pub fn status<'a>(report: &'a Value, id: &str) -> &'a str {
    requirement(report, id)["status"].as_str().unwrap_or("?")
}

/// Asserts a requirement's status, showing the whole result when it differs.
#[track_caller]
pub fn assert_status(report: &Value, id: &str, expected: &str) {
    let r = requirement(report, id);
    assert_eq!(r["status"], expected, "{id}: {r:#}");
}
