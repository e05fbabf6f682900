//! `mailprobe run --log.level/--log.format`: the daemon's stderr as logfmt (the default) or JSON,
//! at the level asked for, and `MAILPROBE_LOG` as a finer filter that takes the level's place.
//! The daemon checks one mailbox whose port refuses connections, so it logs a run at once.
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

/// Runs the daemon with `args` and `env` until its first finished check is logged (or 20 s),
/// then stops it with SIGTERM; its stderr.
fn daemon_log(tag: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let dir =
        std::env::temp_dir().join(format!("mailprobe-log-flags-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("mailprobe.yaml");
    std::fs::write(
        &config,
        "interval: 1h\ntimeout: 5s\nlisten: 127.0.0.1:0\nmailboxes:\n  - name: closed\n    imap: localhost:1\n    user: someone\n    password: { env: MAILPROBE_LOG_FLAGS_PW }\n",
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailprobe"));
    cmd.args(["run", "--config"])
        .arg(&config)
        .args(args)
        .env_remove("MAILPROBE_LOG")
        .env_remove("MAILPROBE_SHARD")
        .env("MAILPROBE_LOG_FLAGS_PW", "not-a-real-password");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let daemon = common::child::start(&mut cmd);
    // The run against a closed port ends within a second; give the log a moment.
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    daemon.signal(libc::SIGTERM);
    let ended = daemon.wait(started, Duration::from_secs(20));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(ended.code, Some(0), "{}", ended.stderr);
    assert!(
        !ended.stderr.contains("not-a-real-password"),
        "{}",
        ended.stderr
    );
    ended.stderr
}

#[test]
fn logfmt_is_the_default_at_info() {
    let log = daemon_log("logfmt", &[], &[]);
    let finished = log
        .lines()
        .find(|l| l.contains("msg=\"check finished\""))
        .unwrap_or_else(|| panic!("no finished check logged:\n{log}"));
    for key in [
        "ts=",
        "level=info",
        "target=",
        "mailbox=closed",
        "verdict=non_compliant",
    ] {
        assert!(finished.contains(key), "{key} missing in {finished}");
    }
    assert!(log.lines().all(|l| l.starts_with("ts=")), "{log}");
    assert!(!log.contains("level=debug"), "{log}");
}

#[test]
fn json_lines_and_the_level_flag() {
    let log = daemon_log(
        "json",
        &["--log.format", "json", "--log.level", "warn"],
        &[],
    );
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"] == "warn" || v["level"] == "error",
            "below --log.level warn: {line}"
        );
        assert!(v["ts"].is_string() && v["msg"].is_string(), "{line}");
    }
    // At warn the non-compliant mailbox is still said.
    assert!(
        log.contains("\"msg\":\"mailbox turned non-compliant\""),
        "{log}"
    );
    assert!(!log.contains("check finished"), "{log}");
}

#[test]
fn mailprobe_log_is_a_finer_filter_that_takes_the_levels_place() {
    let log = daemon_log(
        "env",
        &["--log.level", "error"],
        &[("MAILPROBE_LOG", "warn,mailprobe::daemon=info")],
    );
    assert!(log.contains("msg=\"check finished\""), "{log}");
    assert!(log.contains("mailbox turned non-compliant"), "{log}");
    assert!(
        !log.contains("target=mailprobe::telemetry msg=\"serving"),
        "{log}"
    );
}
