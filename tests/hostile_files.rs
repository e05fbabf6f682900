//! Files an attacker with a writable path can put where mailprobe reads: a FIFO as a password
//! or configuration file, a device as the configuration (`/dev/zero`), a directory. Each is
//! refused at once with a message naming the file; `check`, `validate` and `run` never hang;
//! in `run` such a secret costs its own mailbox only, while `/healthz`, SIGHUP and SIGTERM keep
//! working and the other mailbox is checked.
mod common;
mod telemetry;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::child;
use telemetry::*;

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {}", path.display());
}

fn mailprobe(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailprobe"));
    c.args(args).env("MAILPROBE_LOG", "info");
    c
}

#[test]
fn check_and_validate_refuse_a_fifo_a_device_and_a_directory_at_once() {
    let scratch = Scratch::new("hostile-files-cli");
    let fifo = scratch.path("pw.fifo");
    mkfifo(&fifo);
    let fifo_s = fifo.to_str().unwrap();

    let started = Instant::now();
    let ended = child::run(
        mailprobe(&[
            "check",
            "--imap",
            "127.0.0.1:1",
            "--imap-security",
            "tls",
            "--user",
            "u",
            "--password-file",
            fifo_s,
            "--timeout",
            "3s",
        ])
        .env_remove("MAILPROBE_PASSWORD"),
        Duration::from_secs(20),
    );
    assert!(!ended.overran, "check hung on a FIFO password file");
    assert_eq!(ended.code, Some(3), "{}", ended.stderr);
    assert!(
        ended.stderr.contains(fifo_s) && ended.stderr.contains("FIFO"),
        "{}",
        ended.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // The configuration itself: a device, a FIFO, a directory.
    for (config, kind) in [
        ("/dev/zero", "a device"),
        (fifo_s, "a FIFO"),
        (scratch.0.to_str().unwrap(), "a directory"),
    ] {
        let ended = child::run(
            &mut mailprobe(&["validate", "--config", config]),
            Duration::from_secs(20),
        );
        assert!(!ended.overran, "validate --config {config} hung");
        assert_eq!(ended.code, Some(3), "validate {config}: {}", ended.stderr);
        assert!(
            ended.stderr.contains(config) && ended.stderr.contains(kind),
            "validate {config}: {}",
            ended.stderr
        );
        ended.assert_peak_rss(&format!("validate --config {config}"));
        // `run` never exits on a configuration problem (a sidecar must not hold its pod back):
        // it says at once what is wrong with the file, and keeps running to pick up a fixed one.
        let ended = child::run(
            &mut mailprobe(&[
                "run",
                "--config",
                config,
                "--web.listen-address",
                "127.0.0.1:0",
            ]),
            Duration::from_secs(6),
        );
        assert!(ended.overran, "run {config} exited: {}", ended.stderr);
        assert!(
            ended.stderr.contains(config) && ended.stderr.contains(kind),
            "run {config}: {}",
            ended.stderr
        );
        ended.assert_peak_rss(&format!("run --config {config}"));
    }

    // validate with a mailbox whose password file is a FIFO: finishes, and names it.
    let file = scratch.path("c.yaml");
    std::fs::write(
        &file,
        format!(
            "listen: 127.0.0.1:0\nmailboxes:\n  - name: m\n    imap: 127.0.0.1:1\n    imap_security: tls\n    user: u\n    password: {{ file: {fifo_s} }}\n"
        ),
    )
    .unwrap();
    let ended = child::run(
        &mut mailprobe(&["validate", "--config", file.to_str().unwrap()]),
        Duration::from_secs(20),
    );
    assert!(!ended.overran, "validate hung on a FIFO password file");
    let all = format!("{}{}", ended.stdout, ended.stderr);
    assert!(all.contains(fifo_s) && all.contains("FIFO"), "{all}");
    // And check --config: that mailbox is its own UNKNOWN row, the command ends.
    let ended = child::run(
        &mut mailprobe(&["check", "--config", file.to_str().unwrap()]),
        Duration::from_secs(30),
    );
    assert!(
        !ended.overran,
        "check --config hung on a FIFO password file"
    );
}

#[test]
fn run_keeps_its_health_signals_and_other_mailboxes_when_a_secret_turns_hostile() {
    let scratch = Scratch::new("hostile-files-run");
    let listen = free_port();
    let secret = scratch.path("late.pw");
    let good = scratch.path("good.pw");
    std::fs::write(&good, "pw\n").unwrap();
    let file = scratch.path("c.yaml");
    let log = scratch.path("run.log");
    let mailbox = |name: &str, pw: &Path| {
        format!(
            "  - name: {name}\n    imap: 127.0.0.1:1\n    imap_security: tls\n    user: u\n    password: {{ file: {} }}\n",
            pw.display()
        )
    };
    std::fs::write(
        &file,
        format!(
            "interval: 2s\ntimeout: 5s\nlisten: 127.0.0.1:{listen}\nmailboxes:\n{}{}",
            mailbox("hostile", &secret),
            mailbox("good", &good)
        ),
    )
    .unwrap();
    // The secret is missing at start-up and appears later as a FIFO (secrets are read again
    // on every run until they load).
    let mut daemon = mailprobe_run(&file, &log, &[]);
    wait_until("/healthz", Duration::from_secs(30), || {
        http_get(listen, "/healthz").is_some_and(|(s, _)| s == 200)
    });
    mkfifo(&secret);
    let checks = |page: &str, name: &str| {
        page.lines()
            .filter(|l| {
                l.starts_with("mailprobe_verdict{") && l.contains(&format!("mailbox=\"{name}\""))
            })
            .count()
    };
    wait_until("both mailboxes run", Duration::from_secs(30), || {
        let page = http_get(listen, "/metrics")
            .map(|r| r.1)
            .unwrap_or_default();
        checks(&page, "good") > 0 && checks(&page, "hostile") > 0
    });
    // A few rounds with the FIFO in place: /healthz answers each time, at once.
    for _ in 0..5 {
        let t = Instant::now();
        let ok = http_get(listen, "/healthz").is_some_and(|(s, _)| s == 200);
        assert!(
            ok && t.elapsed() < Duration::from_secs(1),
            "/healthz slow or down"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // SIGHUP reloads.
    let _ = Command::new("kill")
        .args(["-HUP", &daemon.pid().to_string()])
        .status();
    wait_until("the reload", Duration::from_secs(15), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("configuration reloaded")
    });
    let text = std::fs::read_to_string(&log).unwrap();
    // SIGTERM ends it.
    let ended = daemon.terminate(Duration::from_secs(10));
    assert!(ended.is_some(), "SIGTERM did not end the daemon:\n{text}");
}
