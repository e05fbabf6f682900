//! `mailprobe check`, `validate` and `plugins list` end to end: reachability against the lab's
//! real Dovecot and Postfix, refused and silently dropped connections, the output formats, and
//! every bad input ending in a message and exit code 3.

mod common;

use std::net::TcpListener;

use common::lab::{HOSTNAME, PASSWORD};
use common::probe::{
    PASSWORD_ENV, assert_status, lab_args, mailprobe, requirement, run_args, with_smtp,
};
use common::{DovecotOpts, Lab, PostfixOpts};

/// `mailprobe check` of the lab user against `mail.lab.test:PORT` on 127.0.0.1, plus `extra`.
fn port_args(port: u16, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "check",
        "--imap",
        &format!("{HOSTNAME}:{port}"),
        "--connect-to",
        &format!("{HOSTNAME}:127.0.0.1"),
        "--user",
        "alice@lab.test",
        "--password-env",
        PASSWORD_ENV,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn closed_port() -> u16 {
    // Bound then released: nothing listens there.
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn reachability_passes_against_the_lab() {
    let dovecot = Lab::dovecot("basic-reach", DovecotOpts::default());
    let postfix = Lab::postfix("basic-reach", &dovecot, PostfixOpts::default());
    let mut args = with_smtp(lab_args(&dovecot, "imaps"), &postfix, "submission");
    args.extend(["--only".into(), "reachability".into()]);
    let run = run_args(&args);
    let report = run.json();
    assert_status(&report, "imap.reachable", "pass");
    assert_status(&report, "smtp.reachable", "pass");
    assert_eq!(
        requirement(&report, "imap.reachable")["evidence"]["address"],
        format!("127.0.0.1:{}", dovecot.port("imaps"))
    );
    assert_eq!(report["schema"], "mailprobe.report/v1");
    assert_eq!(report["verdict"], "compliant");
    // Only the plugins asked for (and what they need) are in the report.
    assert_eq!(
        report["requirements"].as_array().unwrap().len(),
        2,
        "{report:#}"
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD));
}

#[test]
fn a_closed_port_is_refused_and_non_compliant() {
    let port = closed_port();
    let run = run_args(&port_args(port, &["--format", "json"]));
    let report = run.json();
    let r = requirement(&report, "imap.reachable");
    assert_eq!(r["status"], "fail", "{r:#}");
    assert!(
        r["evidence"]["error"].as_str().unwrap().contains("refused"),
        "{r:#}"
    );
    assert!(r["remedy"].as_str().unwrap().contains(&port.to_string()));
    assert_eq!(report["verdict"], "non_compliant");
    assert_eq!(run.code, 2);
    // Everything after reachability names it as the reason it was not evaluated.
    for other in report["requirements"].as_array().unwrap() {
        if other["id"] != "imap.reachable" && other["id"].as_str().unwrap().starts_with("imap.") {
            assert_eq!(other["status"], "skip", "{other:#}");
            assert_eq!(
                other["evidence"]["prerequisite"], "imap.reachable",
                "{other:#}"
            );
        }
    }
}

/// A listener whose accept queue is full: Linux drops further SYNs without answering, which is
/// what a firewall's DROP rule looks like to a client.
fn dropping_listener() -> (
    tokio::runtime::Runtime,
    tokio::net::TcpListener,
    Vec<std::net::TcpStream>,
    u16,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        s.listen(0).unwrap()
    });
    let port = listener.local_addr().unwrap().port();
    // Fill the queue; connects beyond it hang, so each gets a short timeout.
    let mut held = Vec::new();
    for _ in 0..4 {
        if let Ok(s) = std::net::TcpStream::connect_timeout(
            &format!("127.0.0.1:{port}").parse().unwrap(),
            std::time::Duration::from_millis(300),
        ) {
            held.push(s);
        }
    }
    (rt, listener, held, port)
}

#[test]
fn a_dropped_connection_is_a_timeout_within_the_deadline() {
    let (_rt, _listener, _held, port) = dropping_listener();
    let run = run_args(&port_args(port, &["--format", "json", "--timeout", "3s"]));
    let report = run.json();
    let r = requirement(&report, "imap.reachable");
    assert_eq!(r["status"], "fail", "{r:#}");
    assert_eq!(r["evidence"]["error_type"], "timeout", "{r:#}");
    assert!(
        r["summary"].as_str().unwrap().contains("timed out"),
        "{r:#}"
    );
    let remedy = r["remedy"].as_str().unwrap();
    assert!(
        remedy.contains("allowlist the probe's address 127.0.0.1"),
        "{remedy}"
    );
    assert_eq!(r["evidence"]["local_address"], "127.0.0.1");
    // Reported by the check itself, inside its 3 s deadline.
    assert!(report["duration_ms"].as_u64().unwrap() < 3000, "{report:#}");
    assert_eq!(run.code, 2);
}

#[test]
fn nagios_and_text_formats() {
    let port = closed_port();
    let run = run_args(&port_args(
        port,
        &["--only", "reachability", "--format", "nagios"],
    ));
    assert_eq!(run.code, 2);
    let out = run.stdout.trim_end();
    // The status line, then the long output: the failing requirement with its remedy.
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let line = lines[0];
    assert!(
        line.starts_with(
            "MAILPROBE CRITICAL - alice@lab.test non_compliant; failing: imap.reachable | "
        ),
        "{line}"
    );
    assert!(
        lines[1].starts_with("CRITICAL imap.reachable: ") && lines[1].contains(" - remedy: "),
        "{out}"
    );
    assert!(!lines[1].contains('|'), "{out}");
    assert!(
        line.contains("compliant=0") && line.contains("fail=1"),
        "{line}"
    );

    let run = run_args(&port_args(port, &["--only", "reachability"]));
    assert_eq!(run.code, 2);
    assert!(
        run.stdout.contains(&format!("IMAP {HOSTNAME}:{port}")),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("[FAIL] imap.reachable"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("remedy: "), "{}", run.stdout);
    assert!(!run.stdout.contains('\x1b'), "no colour off a terminal");
}

#[test]
fn bad_command_lines_exit_3_with_a_message() {
    let cases: &[(&[&str], &str)] = &[
        (&["check", "--imap", "h"], "--user"),
        (
            &[
                "check",
                "--imap",
                "h:99999",
                "--user",
                "u",
                "--password-env",
                PASSWORD_ENV,
            ],
            "port 99999 is out of range",
        ),
        (
            &[
                "check",
                "--imap",
                "h",
                "--user",
                "u",
                "--password-env",
                PASSWORD_ENV,
                "--profile",
                "nope",
            ],
            "unknown profile `nope`; known profiles: hubspot",
        ),
        (
            &[
                "check",
                "--imap",
                "h",
                "--user",
                "u",
                "--password-file",
                "/nonexistent/pw",
            ],
            "--password-file: cannot read password file /nonexistent/pw",
        ),
        (
            &[
                "check",
                "--imap",
                "h",
                "--user",
                "u",
                "--password-env",
                "MAILPROBE_UNSET_VAR",
            ],
            "environment variable MAILPROBE_UNSET_VAR is not set",
        ),
        (
            &["check", "--imap", "h", "--user", "u"],
            "no password: the password is read from the environment variable MAILPROBE_PASSWORD (environment variable MAILPROBE_PASSWORD is not set",
        ),
        (
            &[
                "check",
                "--imap",
                "h",
                "--user",
                "u",
                "--password-env",
                PASSWORD_ENV,
                "--connect-to",
                "imap.example.com:",
            ],
            "--connect-to `imap.example.com:`: expected [HOST:]ADDRESS",
        ),
        (
            &[
                "check",
                "--imap",
                "h",
                "--user",
                "u",
                "--password-env",
                PASSWORD_ENV,
                "--timeout",
                "soon",
            ],
            "is not a duration",
        ),
        (
            &[
                "check",
                "--imap",
                "h",
                "--user",
                "u",
                "--password-env",
                PASSWORD_ENV,
                "--only",
                "nope",
            ],
            "unknown plugin `nope`",
        ),
        (
            &[
                "check",
                "--imap",
                "h",
                "--user",
                "u",
                "--password-env",
                PASSWORD_ENV,
                "--ca-file",
                "/nonexistent/ca.pem",
            ],
            "--ca-file: cannot read CA file /nonexistent/ca.pem",
        ),
        (&["frobnicate"], "unrecognized subcommand"),
    ];
    for (args, needle) in cases {
        let run = mailprobe(args);
        assert_eq!(run.code, 3, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(needle),
            "{args:?}: expected {needle:?} in:\n{}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("panicked") && !run.stderr.contains("backtrace"),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn a_usage_error_in_nagios_format_prints_one_unknown_line() {
    let cases: &[&[&str]] = &[
        // Refused by the argument parser (no --user)...
        &["check", "--imap", "h", "--format", "nagios"],
        &["check", "--format=nagios", "--imap", "h"],
        // ...and by the check's own set-up (a port out of range).
        &[
            "check",
            "--imap",
            "h:99999",
            "--user",
            "u",
            "--password-env",
            PASSWORD_ENV,
            "--format",
            "nagios",
        ],
    ];
    for args in cases {
        let run = mailprobe(args);
        assert_eq!(run.code, 3, "{args:?}: {}", run.stderr);
        let lines: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {:?}", run.stdout);
        assert!(
            lines[0].starts_with("MAILPROBE UNKNOWN - ") && lines[0].len() > 25,
            "{args:?}: {}",
            lines[0]
        );
        assert!(!lines[0].contains('|'), "{}", lines[0]);
    }
    assert!(
        mailprobe(cases[2])
            .stdout
            .contains("port 99999 is out of range")
    );
    // Without --format nagios, stdout stays empty.
    assert!(mailprobe(&["check", "--imap", "h"]).stdout.is_empty());
}

#[test]
fn validate_pairs_each_invalid_fixture_with_its_exact_message() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixtures = dir.join("tests/fixtures/config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&fixtures).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if !(name.starts_with("invalid-") && name.ends_with(".yaml")) {
            continue;
        }
        let expected = std::fs::read_to_string(path.with_extension("expected")).unwrap();
        let rel = format!("tests/fixtures/config/{name}");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailprobe"))
            .args(["validate", "--config", &rel])
            .current_dir(dir)
            .env(PASSWORD_ENV, PASSWORD)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{name}: {stderr}");
        assert_eq!(
            stderr.trim_end(),
            format!("mailprobe: {}", expected.trim_end()),
            "{name}"
        );
        assert!(
            !stderr.contains("hunter2"),
            "a password typed in the file is never echoed"
        );
        seen += 1;
    }
    assert!(seen >= 6, "only {seen} fixtures");
    // A secret that cannot be read where `validate` runs (CI, GitOps) is a warning, not an
    // error: the file itself is right.
    let mut warned = 0;
    for entry in std::fs::read_dir(&fixtures).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if !(name.starts_with("warning-") && name.ends_with(".yaml")) {
            continue;
        }
        let expected = std::fs::read_to_string(path.with_extension("expected")).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailprobe"))
            .args([
                "validate",
                "--config",
                &format!("tests/fixtures/config/{name}"),
            ])
            .current_dir(dir)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{name}: {stderr}");
        assert_eq!(
            stderr.trim_end(),
            format!("mailprobe: warning: {}", expected.trim_end()),
            "{name}"
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(": OK, 1 mailbox(es)"));
        warned += 1;
    }
    assert!(warned >= 1);
    let run = mailprobe(&[
        "validate",
        "--config",
        &fixtures.join("valid.yaml").display().to_string(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("OK, 1 mailbox(es)"), "{}", run.stdout);
    let sample = dir.join("deploy/examples/mailprobe.yaml");
    let run = common::probe::mailprobe_env(
        &["validate", "--config", &sample.display().to_string()],
        &[("SALES_PASSWORD", "x")],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Without its secret: still valid, with a warning that names the variable.
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_mailprobe"))
        .args(["validate", "--config", &sample.display().to_string()])
        .env_remove("SALES_PASSWORD")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning:") && stderr.contains("SALES_PASSWORD is not set"),
        "{stderr}"
    );
}

#[test]
fn plugins_list_names_the_builtins() {
    let run = mailprobe(&["plugins", "list", "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let list: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for builtin in ["reachability", "tls", "certificate"] {
        assert!(names.contains(&builtin), "{names:?}");
    }
    for p in list.as_array().unwrap() {
        assert_eq!(p["kind"], "builtin");
        assert!(p["requirements"].as_array().is_some_and(|r| !r.is_empty()));
        assert!(p.get("version").is_some() && p.get("path").is_some());
    }
}
