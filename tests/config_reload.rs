//! A running `mailprobe run` against the lab's Dovecot has its configuration file rewritten:
//! a mailbox added and one removed (SIGHUP), another added (`POST /-/reload`), then a broken
//! file (refused with `validate`'s message, the old configuration still running), and with
//! `--reload-interval` a change picked up with no signal at all, and a file that disappears
//! reported (`mailprobe_config_valid 0`) while the last configuration keeps running. Each step
//! is read back from /metrics, and the process is the same one throughout.

mod common;
mod telemetry;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::lab::{HOSTNAME, NOSENT_USER, PASSWORD, USER};
use common::probe::PASSWORD_ENV;
use common::{DovecotOpts, Lab};
use telemetry::*;

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

fn config(listen: u16, mailboxes: &[String]) -> String {
    format!(
        "interval: 2s\ntimeout: 10s\nlisten: 127.0.0.1:{listen}\nmailboxes:\n{}",
        mailboxes.concat()
    )
}

/// A plain HTTP/1.0 POST with an empty body: (status, body).
fn http_post(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(40))).ok()?;
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((
        head.split_whitespace().nth(1)?.parse().ok()?,
        body.to_string(),
    ))
}

fn metrics(listen: u16) -> String {
    http_get(listen, "/metrics")
        .map(|r| r.1)
        .unwrap_or_default()
}

fn has_mailbox(page: &str, name: &str) -> bool {
    sample(page, &format!("mailprobe_compliant{{mailbox=\"{name}\"}}")).is_some()
}

fn hup(pid: u32) {
    let ok = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -HUP {pid}");
}

fn start(config: &Path, log: &Path, reload_interval: Option<&str>) -> Proc {
    let mut env = vec![(PASSWORD_ENV, PASSWORD)];
    if let Some(every) = reload_interval {
        env.push(("MAILPROBE_RELOAD_INTERVAL", every));
    }
    mailprobe_run_with(config, log, &env, &["--web.enable-lifecycle"])
}

fn still_running(p: &mut Proc) {
    let child = p.child.as_mut().expect("the daemon");
    assert!(
        matches!(child.try_wait(), Ok(None)),
        "the daemon exited: {:?}",
        child.try_wait()
    );
}

#[test]
fn a_running_daemon_reloads_its_configuration() {
    let lab = Lab::dovecot("reload", DovecotOpts::default());
    let scratch = Scratch::new("config-reload");
    let listen = free_port();
    let file = scratch.path("mailprobe.yaml");
    let log = scratch.path("mailprobe.log");
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let good = mailbox("good", USER, &lab);
    std::fs::write(
        &file,
        config(
            listen,
            &[good.clone(), mailbox("nosent", NOSENT_USER, &lab)],
        ),
    )
    .unwrap();
    let mut daemon = start(&file, &log, None);
    let pid = daemon.pid();
    wait_until(
        "both mailboxes in /metrics",
        Duration::from_secs(40),
        || {
            let page = metrics(listen);
            has_mailbox(&page, "good") && has_mailbox(&page, "nosent")
        },
    );
    let page = metrics(listen);
    assert_eq!(
        sample(&page, "mailprobe_config_last_reload_successful"),
        Some(1.0),
        "{page}"
    );
    let loaded_at = sample(
        &page,
        "mailprobe_config_last_reload_success_timestamp_seconds",
    )
    .expect("reload timestamp");

    // 1. SIGHUP: `nosent` removed, `second` added.
    std::fs::write(
        &file,
        config(listen, &[good.clone(), mailbox("second", USER, &lab)]),
    )
    .unwrap();
    hup(pid);
    wait_until(
        "`second` checked and `nosent` gone",
        Duration::from_secs(40),
        || {
            let page = metrics(listen);
            has_mailbox(&page, "second") && !has_mailbox(&page, "nosent")
        },
    );
    let page = metrics(listen);
    assert!(has_mailbox(&page, "good"), "{page}");
    assert!(!page.contains("mailbox=\"nosent\""), "{page}");
    assert_eq!(
        sample(&page, "mailprobe_config_reloads_total{result=\"success\"}"),
        Some(1.0),
        "{page}"
    );
    assert!(
        sample(
            &page,
            "mailprobe_config_last_reload_success_timestamp_seconds"
        )
        .unwrap()
            >= loaded_at
    );
    assert!(
        read_log().contains("configuration reloaded"),
        "{}",
        read_log()
    );

    // 2. POST /-/reload: `third` added; the answer says what changed.
    std::fs::write(
        &file,
        config(
            listen,
            &[
                good.clone(),
                mailbox("second", USER, &lab),
                mailbox("third", USER, &lab),
            ],
        ),
    )
    .unwrap();
    let (status, body) = http_post(listen, "/-/reload").expect("POST /-/reload");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("added: third"), "{body}");
    assert!(body.contains("removed: none"), "{body}");
    wait_until("`third` checked", Duration::from_secs(40), || {
        has_mailbox(&metrics(listen), "third")
    });

    // 3. A broken file: refused with validate's message; the old configuration keeps running.
    let broken = std::fs::read_to_string(&file)
        .unwrap()
        .replace("interval: 2s", "intervall: 2s");
    std::fs::write(&file, broken).unwrap();
    let validate = Command::new(env!("CARGO_BIN_EXE_mailprobe"))
        .args(["validate", "--config", file.to_str().unwrap()])
        .env(PASSWORD_ENV, PASSWORD)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(validate.status.code(), Some(3));
    let message = String::from_utf8_lossy(&validate.stderr)
        .trim()
        .trim_start_matches("mailprobe: ")
        .to_string();
    assert!(message.contains("unknown field `intervall`"), "{message}");
    let (status, body) = http_post(listen, "/-/reload").expect("POST /-/reload");
    assert_eq!(status, 500, "{body}");
    assert_eq!(body.trim(), format!("failed to reload config: {message}"));
    hup(pid);
    wait_until(
        "two refused reloads counted",
        Duration::from_secs(20),
        || {
            sample(
                &metrics(listen),
                "mailprobe_config_reloads_total{result=\"failure\"}",
            ) == Some(2.0)
        },
    );
    let page = metrics(listen);
    assert_eq!(
        sample(&page, "mailprobe_config_last_reload_successful"),
        Some(0.0),
        "{page}"
    );
    for name in ["good", "second", "third"] {
        assert!(has_mailbox(&page, name), "{name}: {page}");
    }
    let checks =
        |page: &str| sample(page, "mailprobe_checks_total{verdict=\"compliant\"}").unwrap_or(0.0);
    let before = checks(&page);
    wait_until(
        "checks going on under the old configuration",
        Duration::from_secs(30),
        || checks(&metrics(listen)) >= before + 3.0,
    );
    assert!(
        read_log().contains("configuration reload refused"),
        "{}",
        read_log()
    );
    assert_eq!(
        sample(&metrics(listen), "mailprobe_config_valid"),
        Some(0.0)
    );
    // A GET does not reload.
    assert_eq!(http_get(listen, "/-/reload").map(|r| r.0), Some(405));
    still_running(&mut daemon);
    assert!(!read_log().contains(PASSWORD));
    daemon.terminate(Duration::from_secs(12));
}

#[test]
fn reload_interval_picks_up_a_changed_file_without_a_signal() {
    let lab = Lab::dovecot("reload-watch", DovecotOpts::default());
    let scratch = Scratch::new("config-reload-watch");
    let listen = free_port();
    let file = scratch.path("mailprobe.yaml");
    let log = scratch.path("mailprobe.log");
    std::fs::write(&file, config(listen, &[mailbox("first", USER, &lab)])).unwrap();
    let mut daemon = start(&file, &log, Some("500ms"));
    wait_until("`first` in /metrics", Duration::from_secs(40), || {
        has_mailbox(&metrics(listen), "first")
    });
    // Replaced the way a Kubernetes ConfigMap volume does it: a new file renamed into place.
    let next = scratch.path("mailprobe.yaml.new");
    std::fs::write(&next, config(listen, &[mailbox("renamed", USER, &lab)])).unwrap();
    std::fs::rename(&next, &file).unwrap();
    wait_until("`renamed` in, `first` out", Duration::from_secs(40), || {
        let page = metrics(listen);
        has_mailbox(&page, "renamed") && !has_mailbox(&page, "first")
    });
    let page = metrics(listen);
    assert_eq!(
        sample(&page, "mailprobe_config_reloads_total{result=\"success\"}"),
        Some(1.0),
        "{page}"
    );
    // The file disappears (a ConfigMap deleted): said at the second look that misses it, while
    // the configuration it last loaded keeps running; back, it is loaded again.
    let kept = std::fs::read_to_string(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    wait_until("mailprobe_config_valid 0", Duration::from_secs(20), || {
        sample(&metrics(listen), "mailprobe_config_valid") == Some(0.0)
    });
    let page = metrics(listen);
    assert!(has_mailbox(&page, "renamed"), "{page}");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("cannot read the configuration file"),
        "the log says why"
    );
    let checks =
        |page: &str| sample(page, "mailprobe_checks_total{verdict=\"compliant\"}").unwrap_or(0.0);
    let before = checks(&page);
    wait_until(
        "checks going on without the file",
        Duration::from_secs(30),
        || checks(&metrics(listen)) >= before + 2.0,
    );
    std::fs::write(&file, kept).unwrap();
    wait_until(
        "mailprobe_config_valid 1 again",
        Duration::from_secs(20),
        || sample(&metrics(listen), "mailprobe_config_valid") == Some(1.0),
    );
    still_running(&mut daemon);
    daemon.terminate(Duration::from_secs(12));
}
