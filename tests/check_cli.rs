//! One command line: `mailprobe --help` and the help of every subcommand it lists (and of
//! theirs) say what each flag does, and each command's `--format` takes only what the command
//! can print.

mod common;

use std::process::Command;

use common::probe::mailprobe;

fn help(path: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mailprobe"))
        .args(path)
        .arg("--help")
        .output()
        .expect("run mailprobe --help");
    assert!(out.status.success(), "mailprobe {path:?} --help failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The entries of one section (`Commands:`, `Options:`) of a help text, as (first line, help
/// lines below it).
fn section(text: &str, title: &str) -> Vec<(String, Vec<String>)> {
    let mut entries: Vec<(String, Vec<String>)> = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            inside = line == title;
            continue;
        }
        if !inside || line.trim().is_empty() {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        // clap indents an entry by 2 (6 for a long flag without a short one) and its help, on
        // lines of its own, by 10.
        if indent < 10 {
            entries.push((line.trim().to_string(), Vec::new()));
        } else if let Some(last) = entries.last_mut() {
            last.1.push(line.trim().to_string());
        }
    }
    entries
}

/// Whether an entry says something besides its own name: text after the name on its line, or
/// lines below it.
fn has_help(entry: &(String, Vec<String>)) -> bool {
    let (first, below) = entry;
    let rest = first
        .split_once("  ")
        .map(|(_, r)| r.trim())
        .unwrap_or_default();
    !rest.is_empty() || below.iter().any(|l| !l.starts_with("[default"))
}

#[test]
fn every_subcommand_and_flag_has_help_text() {
    let mut missing = Vec::new();
    let mut queue: Vec<Vec<String>> = vec![Vec::new()];
    let mut seen = 0;
    let mut flags = 0;
    while let Some(path) = queue.pop() {
        seen += 1;
        let refs: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help(&refs);
        for entry in section(&text, "Commands:") {
            let name = entry
                .0
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            if name == "help" {
                continue;
            }
            if !has_help(&entry) {
                missing.push(format!("mailprobe {} {name}", path.join(" ")));
            }
            let mut sub = path.clone();
            sub.push(name);
            queue.push(sub);
        }
        for entry in section(&text, "Options:") {
            flags += 1;
            if !has_help(&entry) {
                missing.push(format!("mailprobe {}: {}", path.join(" "), entry.0));
            }
        }
    }
    assert!(seen >= 9, "walked only {seen} commands");
    assert!(flags >= 50, "read only {flags} flags");
    assert!(missing.is_empty(), "without help text: {missing:#?}");
}

#[test]
fn the_defaults_the_help_names_are_the_real_ones() {
    let text = help(&["check"]);
    // The security a port gets when none is given is auto-detection, and the help says so.
    assert!(
        text.contains("auto (the\n") || text.contains("auto (the default"),
        "{text}"
    );
    assert!(!text.contains("other ports starttls"), "{text}");
    assert!(text.contains("MAILPROBE_PASSWORD"), "{text}");
    assert!(text.contains("bare number of seconds"), "{text}");
}

#[test]
fn format_takes_only_what_each_command_prints() {
    // A list has no Nagios state: refused with the values it takes.
    let run = mailprobe(&["plugins", "list", "--format", "nagios"]);
    assert_eq!(run.code, 3, "{}", run.stdout);
    assert!(
        run.stderr.contains("invalid value 'nagios'") && run.stderr.contains("text, json"),
        "{}",
        run.stderr
    );
    let run = mailprobe(&["plugins", "list", "--format", "json"]);
    assert_eq!(run.code, 0);
    let list: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(list.as_array().is_some_and(|l| !l.is_empty()));
    let run = mailprobe(&["requirements", "--format", "json"]);
    assert_eq!(run.code, 0);
    assert!(serde_json::from_str::<serde_json::Value>(&run.stdout).is_ok());
}

#[test]
fn timeout_takes_a_bare_number_of_seconds_and_ip_version_its_three_values() {
    for (args, needle) in [
        (
            &["check", "--imap", "h", "--user", "u", "--timeout", "ten"][..],
            "write e.g. 10 (seconds), 10s or 1m",
        ),
        (
            &["check", "--imap", "h", "--user", "u", "--ip-version", "5"][..],
            "give 4, 6 or any",
        ),
        (
            &[
                "check",
                "--imap",
                "h",
                "--user",
                "u",
                "--cert-warn-days",
                "10",
                "--cert-crit-days",
                "20",
            ][..],
            "the critical threshold (20 days) must be below the warning one (10 days)",
        ),
    ] {
        let run = mailprobe_with_password(args);
        assert_eq!(run.code, 3, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
    }
    // `--timeout 10` is accepted: the run goes on to the network (and fails to resolve `h.invalid`).
    let run = mailprobe_with_password(&[
        "check",
        "--imap",
        "h.invalid",
        "--user",
        "u",
        "--timeout",
        "10",
        "--only",
        "reachability",
        "--format",
        "json",
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stdout.contains("imap.reachable"), "{}", run.stdout);
}

fn mailprobe_with_password(args: &[&str]) -> common::probe::Run {
    common::probe::mailprobe_env(args, &[("MAILPROBE_PASSWORD", "pw-for-usage-tests")])
}
