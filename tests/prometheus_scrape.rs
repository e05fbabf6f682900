//! `/metrics` as Prometheus users expect it, against a running daemon and a lab Dovecot whose
//! certificate has expired (the mailbox is non-compliant):
//! - content negotiation: the text format 0.0.4 without `Accept`, which `promtool check metrics`
//!   (Debian's `prometheus` package) finds clean; OpenMetrics when `Accept` asks for it;
//! - `mailprobe_cert_info` with the served certificate's SHA-256 fingerprint (computed here with
//!   openssl), `mailprobe_build_info` with the git revision, and
//!   `mailprobe_last_check_timestamp_seconds`, all in a real Prometheus that scrapes the daemon;
//! - `mailprobe_compliant` keeps the last definitive verdict: once the mailbox's password can no
//!   longer be read (its runs are `incomplete`), it stays 0 in Prometheus while
//!   `mailprobe_verdict{verdict="incomplete"}` turns 1.
mod common;
mod telemetry;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use telemetry::*;

/// A GET with extra header lines; (head, body).
fn get(port: u16, path: &str, headers: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    (head.to_ascii_lowercase(), body.to_string())
}

fn query(prom_port: u16, q: &str) -> serde_json::Value {
    let mut enc = String::new();
    for b in q.bytes() {
        if b.is_ascii_alphanumeric() || b"_.".contains(&b) {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    let (status, body) =
        http_get(prom_port, &format!("/api/v1/query?query={enc}")).unwrap_or((0, String::new()));
    assert_eq!(status, 200, "prometheus query {q}: {body}");
    serde_json::from_str(&body).expect("prometheus JSON")
}

fn first_result(prom_port: u16, q: &str) -> Option<serde_json::Value> {
    query(prom_port, q)["data"]["result"]
        .as_array()
        .and_then(|r| r.first().cloned())
}

fn command_output(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e} (is its package installed?)"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn metrics_negotiate_pass_promtool_and_keep_the_last_definitive_verdict() {
    let scratch = Scratch::new("prometheus-scrape");
    let dovecot = Dovecot::start("prometheus-scrape", free_port(), "expired");
    let password = scratch.path("password");
    std::fs::write(&password, common::lab::PASSWORD).unwrap();
    let listen = free_port();
    let config = scratch.path("mailprobe.yaml");
    std::fs::write(
        &config,
        format!(
            "interval: 2s
timeout: 10s
listen: 127.0.0.1:{listen}
mailboxes:
  - name: lab
    imap: mail.lab.test:{imaps}
    imap_security: tls
    connect_to: 127.0.0.1
    ca_file: {ca}
    user: {user}
    password: {{ file: {pw} }}
",
            imaps = dovecot.port,
            ca = common::Lab::ca_file().display(),
            user = common::lab::USER,
            pw = password.display(),
        ),
    )
    .unwrap();
    let log = scratch.path("mailprobe.log");
    let mut probe = mailprobe_run_with(&config, &log, &[], &["--log.level", "debug"]);
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let prom_port = free_port();
    let _prom = prometheus(
        &scratch.0,
        prom_port,
        format!("127.0.0.1:{listen}").parse().unwrap(),
    );
    wait_until("the first check", Duration::from_secs(40), || {
        http_get(listen, "/metrics")
            .is_some_and(|(_, b)| sample(&b, "mailprobe_compliant{mailbox=\"lab\"}").is_some())
    });

    // Without Accept: the text format, clean for promtool.
    let (head, text) = get(listen, "/metrics", "");
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(!text.contains("# EOF"), "{text}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        checked.status.success() && findings.trim().is_empty(),
        "promtool check metrics:\n{findings}\non:\n{text}"
    );

    // OpenMetrics when asked for.
    let (head, om) = get(
        listen,
        "/metrics",
        "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n",
    );
    assert!(
        head.contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(om.trim_end().ends_with("# EOF"), "{om}");
    assert!(om.contains("# TYPE mailprobe_checks counter"), "{om}");

    // The certificate's identity, with the fingerprint of what Dovecot serves.
    let pem = common::Lab::certs_dir().join("expired.pem");
    let fingerprint = command_output(
        Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(&pem),
        "openssl x509 -fingerprint",
    );
    let fingerprint = fingerprint
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_ascii_lowercase();
    assert!(
        text.contains(&format!("fingerprint_sha256=\"{fingerprint}\"")),
        "{fingerprint} not in\n{text}"
    );
    let info = text
        .lines()
        .find(|l| l.starts_with("mailprobe_cert_info{"))
        .unwrap_or_else(|| panic!("no mailprobe_cert_info in\n{text}"));
    assert!(
        info.starts_with("mailprobe_cert_info{mailbox=\"lab\",server=\"mail.lab.test\",port=\"")
            && info.contains("subject=\"")
            && info.contains("issuer=\"")
            && info.contains("serial=\"")
            && info.ends_with(" 1.0"),
        "{info}"
    );

    // What is running, and when each mailbox was last checked.
    let revision = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let revision = std::env::var("MAILPROBE_REVISION").unwrap_or(revision);
    assert!(
        text.contains(&format!(
            "mailprobe_build_info{{version=\"{}\",revision=\"{revision}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let last = sample(
        &text,
        "mailprobe_last_check_timestamp_seconds{mailbox=\"lab\"}",
    )
    .unwrap_or_else(|| panic!("{text}"));
    assert!((now - last).abs() < 60.0, "{last} vs {now}");
    assert_eq!(
        sample(&text, "mailprobe_compliant{mailbox=\"lab\"}"),
        Some(0.0),
        "{text}"
    );

    // The same in Prometheus, which scraped OpenMetrics.
    wait_until("the series in Prometheus", Duration::from_secs(30), || {
        first_result(prom_port, "mailprobe_cert_info{mailbox=\"lab\"}").is_some()
            && first_result(prom_port, "mailprobe_build_info").is_some()
            && first_result(prom_port, "mailprobe_compliant{mailbox=\"lab\"} == 0").is_some()
    });
    let info = first_result(prom_port, "mailprobe_cert_info{mailbox=\"lab\"}").unwrap();
    assert_eq!(info["metric"]["fingerprint_sha256"], fingerprint, "{info}");
    assert!(
        first_result(
            prom_port,
            "time() - mailprobe_last_check_timestamp_seconds{mailbox=\"lab\"} < 60"
        )
        .is_some()
    );

    // The password goes away: the runs turn incomplete, and mailprobe_compliant stays 0.
    std::fs::remove_file(&password).unwrap();
    let _ = Command::new("kill")
        .args(["-HUP", &probe.pid().to_string()])
        .status();
    wait_until(
        "an incomplete verdict in Prometheus",
        Duration::from_secs(40),
        || {
            first_result(
                prom_port,
                "mailprobe_verdict{mailbox=\"lab\",verdict=\"incomplete\"} == 1",
            )
            .is_some()
        },
    );
    let page = http_get(listen, "/metrics").unwrap().1;
    assert_eq!(
        sample(&page, "mailprobe_compliant{mailbox=\"lab\"}"),
        Some(0.0),
        "an incomplete run cleared mailprobe_compliant:\n{page}\n{}",
        read_log()
    );
    // Over the scrapes since, Prometheus never lost the series nor saw it change.
    let v = first_result(
        prom_port,
        "max_over_time(mailprobe_compliant{mailbox=\"lab\"}[1m])",
    )
    .expect("mailprobe_compliant in Prometheus");
    assert_eq!(v["value"][1], "0", "{v}");
    assert!(
        first_result(prom_port, "mailprobe_compliant{mailbox=\"lab\"} == 0").is_some(),
        "mailprobe_compliant vanished from Prometheus while the verdict is incomplete"
    );
    assert!(!read_log().contains(common::lab::PASSWORD));
    probe.terminate(Duration::from_secs(10));
}
