//! Every address of a name: `mail.lab.test` resolves to 127.0.0.1 and ::1 (through a hosts
//! file of the test's own, bind-mounted over /etc/hosts in a private mount namespace, so
//! nothing of the machine changes), where 127.0.0.1 is the lab's Dovecot with a good
//! certificate and ::1 forwards to a second Dovecot whose certificate has expired: the
//! situation where one of a provider's addresses serves a stale certificate. The check runs
//! against both and fails naming ::1; `--ip-version 4` checks only the good one, and
//! `--connect-to` only the address it names.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::lab::{HOSTNAME, PASSWORD, USER};
use common::probe::{PASSWORD_ENV, requirement};
use common::{DovecotOpts, Lab};

/// A hosts file giving `mail.lab.test` both loopback addresses, removed when the test passes.
struct HostsFile(PathBuf);

impl HostsFile {
    fn new() -> HostsFile {
        let path = std::env::temp_dir().join(format!("mailprobe-hosts-{}", std::process::id()));
        std::fs::write(
            &path,
            format!("127.0.0.1 localhost\n127.0.0.1 {HOSTNAME}\n::1 {HOSTNAME}\n"),
        )
        .unwrap();
        HostsFile(path)
    }
}

impl Drop for HostsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Forwards every connection to [::1]:`port` to `to`, byte for byte (a second address of the
/// server name that reaches another real server). Runs until the test process ends.
fn forward_v6(port: u16, to: std::net::SocketAddr) {
    let listener = TcpListener::bind(("::1", port)).unwrap_or_else(|e| {
        panic!(
            "cannot listen on [::1]:{port} ({e}): this test needs IPv6 on the loopback interface"
        )
    });
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect_timeout(&to, Duration::from_secs(5)) else {
                continue;
            };
            let pipe = |mut from: TcpStream, mut to: TcpStream| {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 || to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(Shutdown::Write);
                });
            };
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            pipe(client, server);
            pipe(s2, c2);
        }
    });
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `mailprobe ARGS` in a mount namespace whose /etc/hosts is `hosts`.
fn mailprobe_with_hosts(hosts: &HostsFile, args: &[String]) -> Ran {
    let mut cmd = Command::new("unshare");
    // `--map-root-user`: a user namespace of its own, so the test needs no root itself.
    cmd.args([
        "--mount",
        "--map-root-user",
        "sh",
        "-c",
        "mount --bind \"$0\" /etc/hosts && exec \"$@\"",
    ])
    .arg(&hosts.0)
    .arg(env!("CARGO_BIN_EXE_mailprobe"))
    .args(args)
    .env_remove("MAILPROBE_PASSWORD")
    .env(PASSWORD_ENV, PASSWORD)
    .env("NO_COLOR", "1");
    let ended = common::child::run(&mut cmd, Duration::from_secs(120));
    assert!(
        !ended.overran,
        "mailprobe {args:?} overran: {}",
        ended.stderr
    );
    assert!(
        !ended.stderr.contains("unshare: ") && !ended.stderr.contains("mount: "),
        "this test needs `unshare --mount --map-root-user` and `mount --bind` (Debian: util-linux and mount, with user namespaces enabled): {}",
        ended.stderr
    );
    Ran {
        code: ended.code.unwrap_or(-1),
        stdout: ended.stdout,
        stderr: ended.stderr,
    }
}

#[test]
fn every_address_of_the_name_is_checked_and_a_bad_one_is_named() {
    let good = Lab::dovecot("addr-good", DovecotOpts::default());
    let expired = Lab::dovecot(
        "addr-expired",
        DovecotOpts {
            cert: "expired",
            imap: false,
            ..DovecotOpts::default()
        },
    );
    let port = good.port("imaps");
    forward_v6(port, expired.addr("imaps"));
    let hosts = HostsFile::new();
    let ca = Lab::ca_file();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "check",
            "--imap",
            &format!("{HOSTNAME}:{port}"),
            "--imap-security",
            "tls",
            "--user",
            USER,
            "--password-env",
            PASSWORD_ENV,
            "--ca-file",
            ca.to_str().unwrap(),
            "--timeout",
            "30",
            "--format",
            "json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let json = |run: &Ran| -> serde_json::Value {
        serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", run.stdout, run.stderr))
    };

    // Both addresses: the expiry requirement fails, and says where.
    let run = mailprobe_with_hosts(&hosts, &args(&[]));
    let report = json(&run);
    assert_eq!(report["verdict"], "non_compliant", "{report:#}");
    assert_eq!(run.code, 2);
    let expiry = requirement(&report, "imap.certificate.expiry");
    assert_eq!(expiry["status"], "fail", "{report:#}");
    let summary = expiry["summary"].as_str().unwrap();
    assert!(summary.starts_with("at ::1: expired on "), "{summary}");
    assert_eq!(expiry["evidence"]["address"], "::1", "{report:#}");
    let per_address = expiry["evidence"]["addresses"].as_array().unwrap();
    assert_eq!(per_address.len(), 2, "{report:#}");
    assert!(
        per_address.contains(&serde_json::json!({"address": "127.0.0.1", "status": "pass"})),
        "{report:#}"
    );
    assert!(
        per_address.contains(&serde_json::json!({"address": "::1", "status": "fail"})),
        "{report:#}"
    );
    // Reachable at both: a pass that lists each address.
    let reach = requirement(&report, "imap.reachable");
    assert_eq!(reach["status"], "pass", "{report:#}");
    assert_eq!(reach["evidence"]["addresses"].as_array().unwrap().len(), 2);

    // IPv4 only: the good server alone, compliant.
    let run = mailprobe_with_hosts(&hosts, &args(&["--ip-version", "4"]));
    let report = json(&run);
    assert_eq!(report["verdict"], "compliant", "{report:#}");
    let expiry = requirement(&report, "imap.certificate.expiry");
    assert!(expiry["evidence"].get("addresses").is_none(), "{report:#}");

    // IPv6 only: the expired one, named by its own handshake.
    let run = mailprobe_with_hosts(&hosts, &args(&["--ip-version", "6"]));
    let report = json(&run);
    assert_eq!(report["verdict"], "non_compliant", "{report:#}");
    assert_eq!(
        requirement(&report, "imap.certificate.expiry")["status"],
        "fail"
    );
    let reach = requirement(&report, "imap.reachable");
    assert!(
        reach["evidence"]["address"]
            .as_str()
            .unwrap()
            .starts_with("[::1]:"),
        "{report:#}"
    );

    // --connect-to: that address only, whatever the name resolves to.
    let run = mailprobe_with_hosts(&hosts, &args(&["--connect-to", "127.0.0.1"]));
    let report = json(&run);
    assert_eq!(report["verdict"], "compliant", "{report:#}");

    // Nagios: the long output names the address too.
    let mut nagios = args(&[]);
    let at = nagios.iter().position(|a| a == "json").unwrap();
    nagios[at] = "nagios".into();
    let run = mailprobe_with_hosts(&hosts, &nagios);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("CRITICAL imap.certificate.expiry: at ::1: expired on ")),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD));

    // The configuration file's `ip_version`, under `check --config`.
    let config = std::env::temp_dir().join(format!("mailprobe-addr-{}.yaml", std::process::id()));
    let mailbox = |version: &str| {
        format!(
            "ip_version: {version}\ntimeout: 30s\nmailboxes:\n  - name: sales\n    imap: {HOSTNAME}:{port}\n    imap_security: tls\n    ca_file: {}\n    user: {USER}\n    password: {{ env: {PASSWORD_ENV} }}\n",
            ca.display()
        )
    };
    for (version, verdict) in [("4", "compliant"), ("any", "non_compliant")] {
        std::fs::write(&config, mailbox(version)).unwrap();
        let run = mailprobe_with_hosts(
            &hosts,
            &[
                "check".into(),
                "--config".into(),
                config.display().to_string(),
                "--format".into(),
                "json".into(),
            ],
        );
        let report = json(&run);
        assert_eq!(
            report["verdict"], verdict,
            "ip_version {version}: {report:#}"
        );
    }
    let _ = std::fs::remove_file(&config);
}
