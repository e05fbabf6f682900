//! `--source-address`: the probe connects from the address a mailbox's firewall allowlists.
//! A real firewall (iptables on loopback) drops one source address in front of the lab's
//! Dovecot: from the allowed address the check passes, from the dropped one it fails as a
//! probable firewall drop whose remedy names the address to allowlist.

mod common;

use std::process::Command;

use common::probe::{assert_status, lab_args, mailprobe, requirement, run_args};
use common::{DovecotOpts, Lab};

/// An iptables rule that drops TCP packets from `source` to `port`, removed when dropped (even
/// when the test fails), so that no rule outlives the test.
struct DropRule {
    spec: Vec<String>,
}

impl DropRule {
    fn add(source: &str, port: u16) -> DropRule {
        let spec: Vec<String> = [
            "INPUT",
            "-p",
            "tcp",
            "--dport",
            &port.to_string(),
            "-s",
            source,
            "-j",
            "DROP",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = Command::new("iptables")
            .arg("-A")
            .args(&spec)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run iptables ({e}): install the Debian package `iptables`")
            });
        assert!(
            out.status.success(),
            "iptables -A failed (the test needs root and netfilter): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        DropRule { spec }
    }
}

impl Drop for DropRule {
    fn drop(&mut self) {
        let _ = Command::new("iptables").arg("-D").args(&self.spec).status();
    }
}

#[test]
fn a_firewall_that_allowlists_one_source_address() {
    let dovecot = Lab::dovecot("source-address", DovecotOpts::default());
    let port = dovecot.port("imaps");
    let _rule = DropRule::add("127.0.0.3", port);
    let with_source = |source: &str| {
        let mut args = lab_args(&dovecot, "imaps");
        args.extend(
            [
                "--only",
                "reachability",
                "--timeout",
                "3s",
                "--source-address",
                source,
            ]
            .map(String::from),
        );
        run_args(&args).json()
    };

    let allowed = with_source("127.0.0.2");
    assert_status(&allowed, "imap.reachable", "pass");
    let local = requirement(&allowed, "imap.reachable")["evidence"]["local_address"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(local.starts_with("127.0.0.2:"), "{local}");

    let dropped = with_source("127.0.0.3");
    assert_status(&dropped, "imap.reachable", "fail");
    let r = requirement(&dropped, "imap.reachable");
    assert_eq!(r["evidence"]["local_address"], "127.0.0.3", "{r:#}");
    assert_eq!(r["evidence"]["error_type"], "timeout", "{r:#}");
    let remedy = r["remedy"].as_str().unwrap_or_default();
    assert!(remedy.contains("allowlist"), "{remedy}");
    assert!(remedy.contains("127.0.0.3"), "{remedy}");
}

#[test]
fn a_source_address_the_machine_does_not_have_is_a_usage_error() {
    let run = mailprobe(&[
        "check",
        "--imap",
        "mail.example.com",
        "--user",
        "u",
        "--source-address",
        "192.0.2.1",
    ]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("not a local address"), "{}", run.stderr);
    assert!(run.stderr.contains("192.0.2.1"), "{}", run.stderr);
}
