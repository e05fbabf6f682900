//! `mailprobe check --config FILE`: several lab mailboxes in one run (a compliant one and one
//! without a Sent folder), the summary table, JSON lines, the Nagios line, the exit code of the
//! worst mailbox, and the progress bar (under a pseudo-terminal, never on a pipe). Also the
//! command-line conventions: completions, the manual page, and curl-like `--connect-to`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::lab::{HOSTNAME, NOSENT_USER, PASSWORD, USER};
use common::probe::{PASSWORD_ENV, mailprobe};
use common::{DovecotOpts, Lab};

/// A config file in a fresh folder, removed when the test passes.
struct ConfigFile {
    dir: PathBuf,
    path: PathBuf,
}

impl ConfigFile {
    fn new(name: &str, text: &str) -> ConfigFile {
        let dir = std::env::temp_dir().join(format!("mailprobe-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mailprobe.yaml");
        std::fs::write(&path, text).unwrap();
        ConfigFile { dir, path }
    }
    fn arg(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn mailbox(name: &str, user: &str, lab: &Lab) -> String {
    format!(
        "  - name: {name}
    imap: {HOSTNAME}:{port}
    imap_security: tls
    connect_to: {host}
    ca_file: {ca}
    user: {user}
    password: {{ env: {PASSWORD_ENV} }}
",
        port = lab.port("imaps"),
        host = lab.host(),
        ca = Lab::ca_file().display(),
    )
}

fn two_mailboxes(lab: &Lab) -> String {
    format!(
        "timeout: 20s\nconcurrency: 2\nmailboxes:\n{}{}",
        mailbox("good", USER, lab),
        mailbox("nosent", NOSENT_USER, lab)
    )
}

#[test]
fn several_mailboxes_give_a_summary_json_lines_and_the_worst_exit_code() {
    let lab = Lab::dovecot("check-config", DovecotOpts::default());
    let config = ConfigFile::new("check-config", &two_mailboxes(&lab));

    let run = mailprobe(&["check", "--config", config.arg()]);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    let line = |name: &str| {
        run.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{}", run.stdout))
            .to_string()
    };
    assert!(run.stdout.starts_with("MAILBOX"), "{}", run.stdout);
    let good = line("good");
    assert!(
        good.split_whitespace()
            .nth(1)
            .unwrap()
            .starts_with("compliant"),
        "{}",
        run.stdout
    );
    let nosent = line("nosent");
    assert_eq!(
        nosent.split_whitespace().nth(1),
        Some("non_compliant"),
        "{}",
        run.stdout
    );
    assert!(nosent.contains("imap.folders"), "{}", run.stdout);
    assert!(run.stdout.contains("2 mailbox(es):"), "{}", run.stdout);
    // Not a terminal: no progress bar.
    assert!(
        !run.stderr.contains("mailboxes checked") && !run.stderr.contains('\r'),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD));

    // One mailbox by name: its own exit code.
    let run = mailprobe(&["check", "--config", config.arg(), "--mailbox", "good"]);
    assert!(run.code == 0 || run.code == 1, "{}", run.stdout);
    assert!(!run.stdout.contains("nosent"), "{}", run.stdout);

    // JSON lines, one report per mailbox, in the file's order.
    let run = mailprobe(&["check", "--config", config.arg(), "--format", "json"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let reports: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(reports.len(), 2, "{}", run.stdout);
    assert_eq!(reports[0]["schema"], "mailprobe.report/v1");
    assert_eq!(reports[0]["mailbox"], "good");
    assert_eq!(reports[0]["verdict"], "compliant");
    assert_eq!(reports[1]["mailbox"], "nosent");
    assert_eq!(reports[1]["verdict"], "non_compliant");

    // Nagios: one status line for all, then long output: each mailbox with a problem and its
    // failing requirements with their remedies.
    let run = mailprobe(&["check", "--config", config.arg(), "--format", "nagios"]);
    assert_eq!(run.code, 2);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert_eq!(lines[1], "CRITICAL nosent: non_compliant", "{}", run.stdout);
    assert!(
        lines[2].starts_with("  CRITICAL imap.folders: ") && lines[2].contains(" - remedy: "),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .starts_with("MAILPROBE CRITICAL - 2 mailboxes: 1 compliant"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("nosent non_compliant (imap.folders)"));
    assert!(run.stdout.contains("| mailboxes=2 compliant=1"));
}

/// `script` (util-linux, Debian package `bsdutils`) runs a command under a pseudo-terminal.
/// A mailbox whose password is missing is its own UNKNOWN row (reported `incomplete`, as
/// `run` does): the batch goes on, and the other mailboxes are checked.
#[test]
fn a_mailbox_that_cannot_be_checked_is_its_own_unknown_row() {
    let lab = Lab::dovecot("check-config-degrade", DovecotOpts::default());
    let text = format!(
        "timeout: 20s\ncert_warn_days: 1\nmailboxes:\n{}{}",
        mailbox("good", USER, &lab),
        mailbox("nosecret", USER, &lab).replace(PASSWORD_ENV, "MAILPROBE_TEST_UNSET_SECRET")
    );
    let config = ConfigFile::new("check-config-degrade", &text);

    let run = mailprobe(&["check", "--config", config.arg()]);
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    let row = |name: &str| {
        run.stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{}", run.stdout))
            .to_string()
    };
    assert!(
        row("good").split_whitespace().nth(1) == Some("compliant"),
        "{}",
        run.stdout
    );
    let broken = row("nosecret");
    assert!(broken.contains("incomplete"), "{}", run.stdout);
    assert!(
        broken.contains("MAILPROBE_TEST_UNSET_SECRET is not set"),
        "{}",
        run.stdout
    );

    let run = mailprobe(&["check", "--config", config.arg(), "--format", "nagios"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines[0].starts_with("MAILPROBE UNKNOWN - 2 mailboxes: 1 compliant"),
        "{}",
        run.stdout
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("UNKNOWN nosecret: incomplete")
                && l.contains("MAILPROBE_TEST_UNSET_SECRET")),
        "{}",
        run.stdout
    );

    let run = mailprobe(&["check", "--config", config.arg(), "--format", "json"]);
    let reports: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(reports.len(), 2, "{}", run.stdout);
    assert_eq!(reports[1]["mailbox"], "nosecret");
    assert_eq!(reports[1]["verdict"], "incomplete");
}

fn script() -> &'static str {
    let found = Command::new("script").arg("--version").output().is_ok();
    assert!(
        found,
        "`script` is missing: install the Debian package bsdutils (util-linux)"
    );
    "script"
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[test]
fn the_progress_bar_shows_on_a_terminal_only() {
    let lab = Lab::dovecot("check-config-tty", DovecotOpts::default());
    let config = ConfigFile::new("check-config-tty", &two_mailboxes(&lab));
    let command = format!(
        "{} check --config {}",
        shell_quote(env!("CARGO_BIN_EXE_mailprobe")),
        shell_quote(config.arg())
    );
    let out = Command::new(script())
        .args(["-qec", &command, "/dev/null"])
        .env(PASSWORD_ENV, PASSWORD)
        .env("NO_COLOR", "1")
        .output()
        .expect("run script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("mailboxes checked"), "{text}");
    assert!(text.contains("] 2/2 mailboxes checked"), "{text}");
    assert!(text.contains('\r'), "{text}");
    // The summary follows the cleared bar.
    assert!(text.contains("MAILBOX"), "{text}");
    assert!(!text.contains(PASSWORD));
}

#[test]
fn config_mode_usage_errors_say_what_to_change() {
    let config = ConfigFile::new(
        "check-config-usage",
        "mailboxes:\n  - name: sales\n    imap: imap.example.com\n    user: u\n    password: { env: MAILPROBE_UNSET_VAR }\n  - name: support\n    imap: imap.example.com\n    user: s\n    password: { env: MAILPROBE_UNSET_VAR }\n",
    );
    let cases: &[(&[&str], &str)] = &[
        (
            &["check", "--config", config.arg(), "--mailbox", "nope"],
            "--mailbox `nope`: ",
        ),
        (
            &["check", "--config", config.arg(), "--mailbox", "nope"],
            "its mailboxes are: sales, support",
        ),
        (
            &["check", "--config", config.arg(), "--imap", "h"],
            "'--config <FILE>' cannot be used with '--imap",
        ),
        (
            &["check", "--config", config.arg(), "--user", "u"],
            "cannot be used with '--user",
        ),
        (
            &["check", "--imap", "h", "--user", "u", "--mailbox", "x"],
            "--mailbox picks mailboxes of a configuration file",
        ),
        (
            &["check", "--config", config.arg()],
            "MAILPROBE_UNSET_VAR is not set",
        ),
        (
            &["check", "--config", "/nonexistent/mailprobe.yaml"],
            "cannot read the configuration file",
        ),
    ];
    for (args, needle) in cases {
        let run = mailprobe(args);
        assert_eq!(run.code, 3, "{args:?}: {}", run.stderr);
        // A mailbox's own problem is its row on stdout; a usage error is on stderr.
        assert!(
            run.stderr.contains(needle) || run.stdout.contains(needle),
            "{args:?}: expected {needle:?} in:\n{}{}",
            run.stdout,
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    let run = mailprobe(&[
        "check",
        "--config",
        config.arg(),
        "--mailbox",
        "nope",
        "--format",
        "nagios",
    ]);
    assert_eq!(run.code, 3);
    assert!(
        run.stdout
            .starts_with("MAILPROBE UNKNOWN - --mailbox `nope`"),
        "{}",
        run.stdout
    );
}

#[test]
fn completions_and_man_pages_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let run = mailprobe(&["completions", shell]);
        assert_eq!(run.code, 0, "{shell}: {}", run.stderr);
        assert!(run.stdout.len() > 200, "{shell}: {}", run.stdout);
        assert!(run.stdout.contains("check"), "{shell}");
        assert!(run.stdout.contains("--config"), "{shell}");
    }
    let run = mailprobe(&["completions", "tcsh"]);
    assert_eq!(run.code, 3);
    assert!(run.stderr.contains("bash"), "{}", run.stderr);

    let run = mailprobe(&["man"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with(".ie") || run.stdout.contains(".TH"));
    assert!(run.stdout.contains("check"), "{}", run.stdout);

    let dir = std::env::temp_dir().join(format!("mailprobe-man-{}", std::process::id()));
    let run = mailprobe(&["man", "--out-dir", dir.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let page = std::fs::read_to_string(dir.join("mailprobe-check.1")).unwrap();
    assert!(page.contains("\\-\\-config"), "{page}");
    assert!(Path::new(&dir.join("mailprobe.1")).is_file());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn connect_to_for_a_host_this_run_does_not_use_is_ignored() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let imap = format!("{HOSTNAME}:{port}");
    let used = format!("{HOSTNAME}:127.0.0.1");
    let run = mailprobe(&[
        "check",
        "--imap",
        &imap,
        "--user",
        USER,
        "--password-env",
        PASSWORD_ENV,
        "--connect-to",
        "smtp.other.test:192.0.2.1",
        "--connect-to",
        &used,
        "--only",
        "reachability",
        "--format",
        "json",
    ]);
    // It ran (a refused port), instead of stopping at the unused mapping.
    assert_eq!(run.code, 2, "{}", run.stderr);
    let report = run.json();
    let r = common::probe::requirement(&report, "imap.reachable");
    assert_eq!(
        r["evidence"]["address"],
        format!("127.0.0.1:{port}"),
        "{r:#}"
    );
}
