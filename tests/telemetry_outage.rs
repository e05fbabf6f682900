//! The collector goes away mid-run (OTLP over http/protobuf): checks go on, memory stays flat,
//! the drops are counted, and telemetry resumes when the collector is back on the same port.
mod common;
mod telemetry;

use std::time::{Duration, Instant};

use telemetry::*;

const PASSWORD: &str = common::lab::PASSWORD;

fn counters(listen: u16) -> (f64, f64) {
    let page = http_get(listen, "/metrics")
        .map(|r| r.1)
        .unwrap_or_default();
    let checks = sample(&page, "mailprobe_checks_total{verdict=\"compliant\"}").unwrap_or(0.0)
        + sample(&page, "mailprobe_checks_total{verdict=\"non_compliant\"}").unwrap_or(0.0);
    let dropped = sample(
        &page,
        "mailprobe_telemetry_dropped_total{signal=\"traces\"}",
    )
    .unwrap_or(0.0);
    (checks, dropped)
}

#[test]
fn collector_outage_is_survived_and_counted() {
    let scratch = Scratch::new("telemetry-outage");
    let (grpc, http) = (free_port(), free_port());
    let mut rotel = Rotel::start(&scratch.0, "before", grpc, http);
    let listen = free_port();
    let closed = free_port();
    let config = scratch.path("mailprobe.yaml");
    std::fs::write(
        &config,
        format!(
            "interval: 1s
timeout: 5s
listen: 127.0.0.1:{listen}
otlp:
  endpoint: http://127.0.0.1:{http}
  protocol: http/protobuf
  export_interval: 1s
mailboxes:
  - name: closed
    imap: mail.lab.test:{closed}
    connect_to: 127.0.0.1
    user: {user}
    password: {{ env: LAB_TEST_PASSWORD }}
",
            user = common::lab::USER,
        ),
    )
    .unwrap();
    let probe_log = scratch.path("mailprobe.log");
    let mut probe = mailprobe_run(&config, &probe_log, &[("LAB_TEST_PASSWORD", PASSWORD)]);
    let log = || std::fs::read_to_string(&probe_log).unwrap_or_default();

    wait_until("spans at the collector", Duration::from_secs(30), || {
        rotel.output().contains("Name           : mailprobe.check")
    });
    let before = rotel.output();

    // Outage.
    rotel.stop();
    let (checks0, dropped0) = counters(listen);
    let t0 = Instant::now();
    let mut rss = Vec::new();
    while t0.elapsed() < Duration::from_secs(16) {
        rss.push(rss_kib(probe.pid()));
        std::thread::sleep(Duration::from_secs(1));
    }
    let (checks1, dropped1) = counters(listen);
    assert!(
        checks1 >= checks0 + 8.0,
        "checks stalled during the outage: {checks0} -> {checks1}\n{}",
        log()
    );
    assert!(
        dropped1 > dropped0,
        "no drop counted: {dropped0} -> {dropped1}\n{}",
        log()
    );
    eprintln!(
        "outage: checks {checks0} -> {checks1}, dropped spans {dropped0} -> {dropped1}, RSS KiB {rss:?}"
    );
    let half = rss.len() / 2;
    let first = *rss[..half].iter().max().unwrap();
    let second = *rss[half..].iter().max().unwrap();
    assert!(
        second <= first + 4 * 1024,
        "memory grows during the outage (KiB, per second): {rss:?}"
    );
    assert!(log().contains("OTLP export failed"), "{}", log());

    // The collector is back, same ports: telemetry resumes.
    let mut rotel = Rotel::start(&scratch.0, "after", grpc, http);
    wait_until(
        "telemetry after the outage",
        Duration::from_secs(30),
        || {
            let out = rotel.output();
            out.contains("Name           : mailprobe.check")
                && out.contains("Name: mailprobe.telemetry.dropped")
        },
    );

    let (took, status) = probe
        .terminate(Duration::from_secs(12))
        .expect("mailprobe did not exit within 12 s of SIGTERM");
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    assert!(status.success(), "exit status {status}\n{}", log());
    for (what, text) in [
        ("collector (before)", before),
        ("collector (after)", rotel.output()),
        ("probe log", log()),
    ] {
        assert!(
            !text.contains(PASSWORD),
            "the password appears in the {what}"
        );
    }
    rotel.stop();
}
