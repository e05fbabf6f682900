//! `connections.concurrent` against real servers with their connection limits lowered, and the
//! check that no session outlives a run.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::probe::{lab_args, requirement, run_args, with_smtp};
use common::{CourierOpts, DovecotOpts, Lab, PostfixOpts};
use serde_json::Value;

fn check(args: Vec<String>) -> Value {
    let mut args = args;
    args.extend(["--only".into(), "connlimit".into()]);
    let run = run_args(&args);
    assert!(!run.stdout.contains(Lab::password()) && !run.stderr.contains(Lab::password()));
    run.json()
}

/// Users with a session open on this Dovecot, by `doveadm who`; waits (bounded) for it to drop
/// to zero and returns what it last saw.
fn dovecot_sessions_after_run(lab: &Lab) -> String {
    let conf = lab.state_dir().join("dovecot.conf");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = Command::new("doveadm")
            .arg("-c")
            .arg(&conf)
            .arg("who")
            .output()
            .expect("doveadm who");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let users: Vec<&str> = text
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .collect();
        if users.is_empty() || Instant::now() > deadline {
            return users.join("\n");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn dovecot_with_room_for_the_crm_passes() {
    let lab = Lab::dovecot(
        "conn-10",
        DovecotOpts {
            max_userip: Some(10),
            ..Default::default()
        },
    );
    let report = check(lab_args(&lab, "imaps"));
    let r = requirement(&report, "connections.concurrent");
    assert_eq!(r["status"], "pass", "{r:#}");
    // alice has folders besides INBOX and Sent, so the CRM holds a third IMAP session.
    assert_eq!(r["evidence"]["required"], 3, "{r:#}");
    assert_eq!(r["evidence"]["achieved"], 3, "{r:#}");
    assert_eq!(
        r["evidence"]["imap"]["reused"], 1,
        "the logged-in session of the run is counted: {r:#}"
    );
    assert_eq!(dovecot_sessions_after_run(&lab), "");
}

#[test]
fn dovecot_limit_of_two_fails_with_its_own_words_and_leaves_nothing_open() {
    let lab = Lab::dovecot(
        "conn-2",
        DovecotOpts {
            max_userip: Some(2),
            ..Default::default()
        },
    );
    let run = run_args(&{
        let mut a = lab_args(&lab, "imaps");
        a.extend(["--only".into(), "connlimit".into()]);
        a
    });
    let report = run.json();
    let r = requirement(&report, "connections.concurrent");
    assert_eq!(r["status"], "fail", "{r:#}");
    assert_eq!(r["evidence"]["required"], 3, "{r:#}");
    assert_eq!(r["evidence"]["achieved"], 2, "{r:#}");
    let refusal = r["evidence"]["imap"]["refusal"].as_str().unwrap();
    assert!(refusal.contains("Maximum number of connections"), "{r:#}");
    assert!(
        r["remedy"]
            .as_str()
            .unwrap()
            .contains("mail_max_userip_connections"),
        "{r:#}"
    );
    assert_eq!(run.code, 2);
    assert_eq!(
        dovecot_sessions_after_run(&lab),
        "",
        "a session outlived the run"
    );
    // And the account is usable right away: a new run logs in.
    let again = check(lab_args(&lab, "imaps"));
    assert_eq!(requirement(&again, "imap.login")["status"], "pass");
}

#[test]
fn dovecot_limit_of_three_is_enough_and_the_folder_count_sets_the_requirement() {
    let lab = Lab::dovecot(
        "conn-3",
        DovecotOpts {
            max_userip: Some(3),
            ..Default::default()
        },
    );
    let report = check(lab_args(&lab, "imap"));
    let r = requirement(&report, "connections.concurrent");
    assert_eq!(r["status"], "pass", "{r:#}");
    assert_eq!(r["evidence"]["achieved"], 3, "{r:#}");

    let lab = Lab::dovecot(
        "conn-2-nosent",
        DovecotOpts {
            max_userip: Some(2),
            ..Default::default()
        },
    );
    let mut args = lab_args(&lab, "imaps");
    let i = args.iter().position(|a| a == "--user").unwrap();
    args[i + 1] = common::lab::NOSENT_USER.into();
    let report = check(args);
    // The requirement follows the folders found: nosent has no Sent folder but Drafts and
    // Trash besides INBOX, so the CRM would still hold 3 IMAP sessions, and 2 are not enough.
    let r = requirement(&report, "connections.concurrent");
    assert_eq!(r["evidence"]["required"], 3, "{r:#}");
    assert_eq!(r["status"], "fail", "{r:#}");
    assert_eq!(r["evidence"]["achieved"], 2, "{r:#}");
}

#[test]
fn postfix_client_limit_of_one_fails_the_smtp_side() {
    let dovecot = Lab::dovecot("conn-pf-dc", DovecotOpts::default());
    let postfix = Lab::postfix(
        "conn-pf",
        &dovecot,
        PostfixOpts {
            client_limit: Some(1),
            ..Default::default()
        },
    );
    let report = check(with_smtp(
        lab_args(&dovecot, "imaps"),
        &postfix,
        "submission",
    ));
    let r = requirement(&report, "connections.concurrent");
    assert_eq!(r["status"], "fail", "{r:#}");
    assert_eq!(r["evidence"]["required"], 5, "{r:#}");
    assert_eq!(r["evidence"]["achieved"], 4, "{r:#}");
    assert_eq!(r["evidence"]["smtp"]["achieved"], 1, "{r:#}");
    assert!(
        r["evidence"]["smtp"]["refusal"]
            .as_str()
            .unwrap()
            .contains("421"),
        "{r:#}"
    );
    assert!(
        r["remedy"]
            .as_str()
            .unwrap()
            .contains("smtpd_client_connection_count_limit"),
        "{r:#}"
    );
    // Nothing left open: with a limit of 1, a new client is greeted with 220, not 421.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = TcpStream::connect(postfix.addr("submission")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        if line.starts_with("220") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still refused after the run: {line}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn courier_default_per_ip_limit_holds_the_crm_sessions() {
    let lab = Lab::courier("conn-courier", CourierOpts::default());
    let report = check(lab_args(&lab, "imaps"));
    let r = requirement(&report, "connections.concurrent");
    // Courier's MAXPERIP is 4; the lab user has only INBOX and Sent, so the CRM needs 2.
    assert_eq!(r["status"], "pass", "{r:#}");
    assert_eq!(r["evidence"]["required"], 2, "{r:#}");
    assert_eq!(r["evidence"]["achieved"], 2, "{r:#}");
}

#[test]
fn a_budget_below_the_requirement_is_a_skip_not_an_overstep() {
    let lab = Lab::dovecot("conn-budget", DovecotOpts::default());
    let mut args = lab_args(&lab, "imaps");
    args.extend(["--server-connections".into(), "2".into()]);
    let report = check(args);
    let r = requirement(&report, "connections.concurrent");
    assert_eq!(r["status"], "skip", "{r:#}");
    assert!(
        r["summary"]
            .as_str()
            .unwrap()
            .contains("server_connections"),
        "{r:#}"
    );
    // The probe's own budget stopped it: not verified, so no verdict of compliance.
    assert_eq!(r["evidence"]["reason"], "not_verified", "{r:#}");
    assert_eq!(report["verdict"], "incomplete");
    assert_eq!(dovecot_sessions_after_run(&lab), "");
}

/// Client connections to `port` on 127.0.0.1 that are ESTABLISHED.
fn established_to(port: u16) -> usize {
    common::lab::established_to(&[port].into())
}

/// `bench/delayproxy.py` in front of a lab port, stopped when dropped.
struct DelayProxy(common::child::Running);

impl DelayProxy {
    fn start(listen: u16, target: std::net::SocketAddr, one_way_ms: u32) -> DelayProxy {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/delayproxy.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg("--one-way-ms")
            .arg(one_way_ms.to_string())
            .arg(format!("{listen}:{}:{}", target.ip(), target.port()));
        let proxy = DelayProxy(common::child::start(&mut cmd));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", listen)).is_err() {
            assert!(Instant::now() < deadline, "the delay proxy did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        proxy
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.0.signal(libc::SIGKILL);
    }
}

/// SIGTERM while the daemon is inside `connections.concurrent`, holding its sessions: every one
/// of them is closed (the server sees no established connection left) within 10 s. A proxy
/// adds 250 ms each way so the sessions are held long enough to be seen.
#[test]
fn sigterm_during_the_connection_limit_check_closes_every_session() {
    let lab = Lab::dovecot("conn-term", DovecotOpts::default());
    let upstream = lab.addr("imaps");
    let port = common::lab::free_port("127.0.0.1");
    let _proxy = DelayProxy::start(port, upstream, 250);
    let dir = std::env::temp_dir().join(format!("mailprobe-conn-term-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("mailprobe.yaml");
    std::fs::write(
        &config,
        format!(
            "interval: 1h\ntimeout: 2m\nlisten: 127.0.0.1:0\nmailboxes:\n  - name: term\n    \
             imap: {host}:{port}\n    imap_security: tls\n    user: {user}\n    \
             password: {{ env: {env} }}\n    connect_to: 127.0.0.1\n    ca_file: {ca}\n",
            host = common::lab::HOSTNAME,
            user = Lab::user(),
            env = common::probe::PASSWORD_ENV,
            ca = Lab::ca_file().display(),
        ),
    )
    .expect("write config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailprobe"));
    cmd.args(["run", "--config"])
        .arg(&config)
        .env_remove("MAILPROBE_SHARD")
        .env(common::probe::PASSWORD_ENV, Lab::password());
    let mut daemon = common::child::start(&mut cmd);
    // Inside the check: the run's own session plus one the check opened, both logged in (the
    // plugins before it log in once; `ss` alone would also count the TLS probes).
    let logins = || lab.log().matches("Login: user=<").count();
    let start = Instant::now();
    while !(logins() >= 2 && established_to(upstream.port()) >= 2) {
        if start.elapsed() > Duration::from_secs(90) || daemon.ended().is_some() {
            let ended = daemon.kill();
            panic!(
                "the daemon never held 2 sessions (logins {}):\n{}\n{}",
                logins(),
                ended.stderr,
                lab.log()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon.signal(libc::SIGTERM);
    let term = Instant::now();
    let mut left = established_to(upstream.port());
    while left > 0 && term.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
        left = established_to(upstream.port());
    }
    let ended = daemon.wait(term, Duration::from_secs(15));
    assert_eq!(
        left,
        0,
        "{left} sessions still open 10 s after SIGTERM:\n{}\n{}",
        ended.stderr,
        lab.log()
    );
    assert!(
        !ended.overran,
        "the daemon outlived SIGTERM by 15 s:\n{}",
        ended.stderr
    );
    assert!(
        !ended.stderr.contains(Lab::password()),
        "the daemon's log shows the password"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_extra_sessions_resume_the_runs_tls_session_and_the_pin_holds() {
    // The lab's Dovecot runs its login processes in high-performance mode and Postfix shares
    // its ticket keys through tlsmgr: both honour the tickets they issued.
    let dovecot = Lab::dovecot(
        "conn-resume",
        DovecotOpts {
            max_userip: Some(10),
            ..Default::default()
        },
    );
    let postfix = Lab::postfix("conn-resume-pf", &dovecot, PostfixOpts::default());
    let report = check(with_smtp(
        lab_args(&dovecot, "imaps"),
        &postfix,
        "submission",
    ));
    let r = requirement(&report, "connections.concurrent");
    // Passing means every extra session showed the certificate pinned from the run's first
    // handshake (the one carried by the session it resumed) before it sent credentials.
    assert_eq!(r["status"], "pass", "{r:#}");
    for (side, opened) in [("imap", 2), ("smtp", 1)] {
        let e = &r["evidence"][side];
        assert_eq!(e["opened"], opened, "{side}: {r:#}");
        assert_eq!(
            e["resumed"], opened,
            "{side}: every extra session resumed: {r:#}"
        );
        assert!(
            e["resumed_note"]
                .as_str()
                .unwrap()
                .contains("the same certificate as the first handshake by construction"),
            "{r:#}"
        );
    }
}
