//! `mailprobe run` against the lab, with real receivers: an OTLP collector (rotel-agent, gRPC),
//! Prometheus scraping `/metrics`, and Alertmanager. The mailbox starts non-compliant (Dovecot
//! serves an expired certificate), then Dovecot is restarted on the same port with a good one,
//! and the mailbox recovers: the alert must fire, then resolve.
mod common;
mod telemetry;

use std::time::Duration;

use telemetry::*;

const PASSWORD: &str = common::lab::PASSWORD;

fn query(prom_port: u16, q: &str) -> serde_json::Value {
    let path = format!(
        "/api/v1/query?query={}",
        q.replace('{', "%7B")
            .replace('}', "%7D")
            .replace('"', "%22")
            .replace('=', "%3D")
    );
    let (status, body) = http_get(prom_port, &path).unwrap_or((0, String::new()));
    assert_eq!(status, 200, "prometheus query {q}: {body}");
    serde_json::from_str(&body).expect("prometheus JSON")
}

fn compliant_in_prometheus(prom_port: u16) -> Option<String> {
    let v = query(prom_port, "mailprobe_compliant{mailbox=\"lab\"}");
    v["data"]["result"][0]["value"][1]
        .as_str()
        .map(str::to_string)
}

/// Alertmanager's active alerts for the lab mailbox, as (requirement, state).
fn lab_alerts(am_port: u16) -> Vec<(String, String)> {
    let (status, body) = http_get(am_port, "/api/v2/alerts").unwrap_or((0, String::new()));
    assert_eq!(status, 200, "alertmanager: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("alertmanager JSON");
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|a| {
            a["labels"]["alertname"] == "MailboxNonCompliant" && a["labels"]["mailbox"] == "lab"
        })
        .map(|a| {
            (
                a["labels"]["requirement"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                a["status"]["state"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

#[test]
fn lab_run_reaches_collector_prometheus_and_alertmanager() {
    let scratch = Scratch::new("telemetry-receivers");
    let imaps = free_port();
    let dovecot = Dovecot::start("telemetry-receivers", imaps, "expired");
    let mut rotel = Rotel::start(&scratch.0, "a", free_port(), free_port());
    let am_port = free_port();
    let _am = alertmanager(&scratch.0, am_port);
    let listen = free_port();
    let config = scratch.path("mailprobe.yaml");
    std::fs::write(
        &config,
        format!(
            "interval: 2s
timeout: 10s
listen: 127.0.0.1:{listen}
otlp:
  endpoint: http://127.0.0.1:{grpc}
  protocol: grpc
  export_interval: 1s
alerts:
  alertmanager: http://127.0.0.1:{am_port}
  alert_after: 1
mailboxes:
  - name: lab
    imap: mail.lab.test:{imaps}
    imap_security: tls
    connect_to: 127.0.0.1
    ca_file: {ca}
    user: {user}
    password: {{ env: LAB_TEST_PASSWORD }}
",
            grpc = rotel.grpc,
            ca = common::Lab::ca_file().display(),
            user = common::lab::USER,
        ),
    )
    .unwrap();
    let probe_log = scratch.path("mailprobe.log");
    let mut probe = mailprobe_run(&config, &probe_log, &[("LAB_TEST_PASSWORD", PASSWORD)]);
    let prom_port = free_port();
    let _prom = prometheus(
        &scratch.0,
        prom_port,
        format!("127.0.0.1:{listen}").parse().unwrap(),
    );
    let log = || std::fs::read_to_string(&probe_log).unwrap_or_default();

    // Health endpoints.
    wait_until("/readyz", Duration::from_secs(20), || {
        http_get(listen, "/readyz").is_some_and(|(s, _)| s == 200)
    });
    assert_eq!(http_get(listen, "/healthz").map(|r| r.0), Some(200));

    // Non-compliant: the alert fires in Alertmanager.
    wait_until(
        "an active MailboxNonCompliant alert",
        Duration::from_secs(30),
        || {
            lab_alerts(am_port)
                .iter()
                .any(|(r, s)| r == "imap.certificate.expiry" && s == "active")
        },
    );
    let text = log();
    assert!(text.contains("mailbox turned non-compliant"), "{text}");
    let page = http_get(listen, "/metrics").unwrap().1;
    assert_eq!(
        sample(&page, "mailprobe_compliant{mailbox=\"lab\"}"),
        Some(0.0),
        "{page}"
    );
    assert_eq!(
        sample(
            &page,
            "mailprobe_requirement_status{mailbox=\"lab\",requirement=\"imap.certificate.expiry\"}"
        ),
        Some(0.0),
        "{page}"
    );
    assert!(
        page.contains(
            "mailprobe_cert_expiry_timestamp_seconds{mailbox=\"lab\",server=\"mail.lab.test\""
        ),
        "{page}"
    );
    assert!(
        page.contains("mailprobe_tls_version_accepted{mailbox=\"lab\",server=\"mail.lab.test\""),
        "{page}"
    );

    wait_until(
        "mailprobe_compliant 0 in Prometheus",
        Duration::from_secs(20),
        || compliant_in_prometheus(prom_port).as_deref() == Some("0"),
    );

    // Recovery through the server's configuration: same port, good certificate.
    dovecot.restart("good");
    wait_until("the alert resolved", Duration::from_secs(40), || {
        let a = lab_alerts(am_port);
        !a.iter().any(|(_, s)| s == "active")
    });
    let page = http_get(listen, "/metrics").unwrap().1;
    assert_eq!(
        sample(&page, "mailprobe_compliant{mailbox=\"lab\"}"),
        Some(1.0),
        "{page}\n{}",
        log()
    );

    // Prometheus scraped both states.
    wait_until(
        "mailprobe_compliant in Prometheus",
        Duration::from_secs(20),
        || compliant_in_prometheus(prom_port).as_deref() == Some("1"),
    );
    let history = query(
        prom_port,
        "min_over_time(mailprobe_compliant{mailbox=\"lab\"}[5m])",
    );
    assert_eq!(history["data"]["result"][0]["value"][1], "0", "{history}");

    // The collector got spans, metrics and both transition log records.
    wait_until(
        "the resolution log record at the collector",
        Duration::from_secs(20),
        || {
            rotel
                .output()
                .contains("mailprobe.transition: Str(resolved)")
        },
    );
    let otlp = rotel.output();
    for needle in [
        "Name           : mailprobe.check",
        "mailprobe.mailbox: Str(lab)",
        "mailprobe.profile: Str(hubspot)",
        "mailprobe.verdict: Str(non_compliant)",
        "mailprobe.verdict: Str(compliant)",
        "Name           : mailprobe.plugin tls",
        "Name           : tls_handshake",
        "server.address: Str(mail.lab.test)",
        "tls.protocol.version:",
        "service.name: Str(mailprobe)",
        "Name: mailprobe.compliant",
        "Name: mailprobe.verdict",
        "Name: mailprobe.requirement.status",
        "Name: mailprobe.cert.expiry.timestamp",
        "Name: mailprobe.tls.version.accepted",
        "Name: mailprobe.check.duration",
        "Name: mailprobe.checks",
        "EventName: mailprobe.compliance.transition",
        "mailprobe.transition: Str(firing)",
        "mailprobe.alert: Str(MailboxNonCompliant)",
        "mailprobe.failing_requirements: Slice(Str(imap.certificate",
    ] {
        assert!(
            otlp.contains(needle),
            "the collector did not get {needle:?}"
        );
    }

    // SIGTERM: out within 10 s, telemetry flushed.
    let (took, status) = probe
        .terminate(Duration::from_secs(12))
        .expect("mailprobe did not exit within 12 s of SIGTERM");
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    assert!(status.success(), "exit status {status}\n{}", log());

    // The password is nowhere: collector output, scrape, probe log.
    let scrape = page;
    for (what, text) in [
        ("collector", rotel.output()),
        ("/metrics", scrape),
        ("probe log", log()),
    ] {
        assert!(
            !text.contains(PASSWORD),
            "the password appears in the {what}"
        );
    }
    rotel.stop();
}
