use super::*;
use mailprobe_core::RequirementResult;
use mailprobe_core::report::{Report, Servers};
use mailprobe_core::requirement::{Measurement, Verdict};
use mailprobe_runtime::runner::RunOutcome;
use mailprobe_telemetry::ComplianceTracker;
use serde_json::json;
use std::time::SystemTime;

fn outcome(results: Vec<RequirementResult>) -> RunOutcome {
    RunOutcome {
        report: Report {
            schema: "mailprobe.report/v1".into(),
            mailbox: "sales".into(),
            profile: "hubspot".into(),
            verdict: Verdict::of(&results),
            started_at: "2026-11-26T19:00:00Z".into(),
            duration_ms: 412,
            requirements: results,
            servers: Servers {
                imap: Some("imap.example.com:993".into()),
                smtp: None,
            },
            measures: Vec::new(),
        },
        steps: vec![],
        plugin_runs: vec![],
        started_at: SystemTime::now(),
        duration: Duration::from_millis(412),
    }
}

#[test]
fn metrics_page_has_the_spec_series_and_drops_skipped_ones() {
    let store = Arc::new(SeriesStore::new());
    let stats = Arc::new(ProbeStats::new());
    let exp = PrometheusExporter::new(store.clone(), stats.clone());
    let tracker = ComplianceTracker::new(1);
    let mut o = outcome(vec![
        RequirementResult::pass("imap.reachable", "ok"),
        RequirementResult::pass("imap.tls_versions", "ok")
            .with("versions", json!({"TLSv1.2": true, "TLSv1.3": false})),
        RequirementResult::pass("imap.certificate.expiry", "ok")
            .with("not_after", "2027-01-01T00:00:00Z"),
        RequirementResult::pass("imap.folders", "ok"),
    ]);
    // What the runner derives from the plugins' declared measures.
    let tls = |version: &str, accepted| Measurement::TlsVersion {
        server: "imap.example.com".into(),
        port: 993,
        version: version.into(),
        accepted,
    };
    o.report.measures = vec![
        tls("TLSv1.2", true),
        tls("TLSv1.3", false),
        Measurement::CertificateExpiry {
            requirement: "imap.certificate.expiry".into(),
            server: "imap.example.com".into(),
            port: 993,
            not_after_unix: 1_798_761_600,
        },
    ];
    store.update(&o.report);
    let c = tracker.observe(&o.report, SystemTime::now());
    exp.on_run(&RunEvent {
        outcome: &o,
        compliance: &c,
    });
    stats.add(names::TELEMETRY_DROPPED, &[("signal", "traces")], 7);
    let page = exp.render();
    for line in [
        "mailprobe_compliant{mailbox=\"sales\"} 1.0",
        "mailprobe_requirement_status{mailbox=\"sales\",requirement=\"imap.folders\"} 1.0",
        "mailprobe_cert_expiry_timestamp_seconds{mailbox=\"sales\",server=\"imap.example.com\",port=\"993\"} 1798761600.0",
        "mailprobe_tls_version_accepted{mailbox=\"sales\",server=\"imap.example.com\",port=\"993\",version=\"TLSv1.3\"} 0.0",
        "mailprobe_check_duration_seconds_count{mailbox=\"sales\"} 1",
        "mailprobe_telemetry_dropped_total{signal=\"traces\"} 7",
        "mailprobe_checks_total{verdict=\"compliant\"} 0",
        "# TYPE mailprobe_compliant gauge",
        "mailprobe_verdict{mailbox=\"sales\",verdict=\"compliant\"} 1.0",
        "mailprobe_verdict{mailbox=\"sales\",verdict=\"non_compliant\"} 0.0",
        "mailprobe_verdict{mailbox=\"sales\",verdict=\"incomplete\"} 0.0",
        "# TYPE mailprobe_check_duration_seconds histogram",
    ] {
        assert!(page.contains(line), "missing {line:?} in\n{page}");
    }
    assert!(!page.contains("mailprobe_concurrent_connections_achieved{"));

    // The next run skips imap.folders: its series goes away.
    let o = outcome(vec![RequirementResult::skip(
        "imap.folders",
        "imap.login",
        "not evaluated",
    )]);
    store.update(&o.report);
    let page = exp.render();
    assert!(!page.contains("requirement=\"imap.folders\""), "{page}");
}

#[test]
fn an_incomplete_run_keeps_mailprobe_compliant_and_sets_the_verdict_state() {
    let store = Arc::new(SeriesStore::new());
    let exp = PrometheusExporter::new(store.clone(), Arc::new(ProbeStats::new()));
    store.update(&outcome(vec![RequirementResult::pass("imap.reachable", "ok")]).report);
    assert!(
        exp.render()
            .contains("mailprobe_compliant{mailbox=\"sales\"} 1.0")
    );
    store.update(
        &outcome(vec![
            RequirementResult::pass("imap.reachable", "ok"),
            RequirementResult::not_verified("imap.login", "plugin imap panicked"),
        ])
        .report,
    );
    let page = exp.render();
    // The last definitive verdict stays: an incomplete run neither sets nor clears it.
    assert!(
        page.contains("mailprobe_compliant{mailbox=\"sales\"} 1.0"),
        "{page}"
    );
    assert!(
        page.contains("mailprobe_last_check_timestamp_seconds{mailbox=\"sales\"}"),
        "{page}"
    );
    for line in [
        "mailprobe_verdict{mailbox=\"sales\",verdict=\"compliant\"} 0.0",
        "mailprobe_verdict{mailbox=\"sales\",verdict=\"non_compliant\"} 0.0",
        "mailprobe_verdict{mailbox=\"sales\",verdict=\"incomplete\"} 1.0",
        "mailprobe_checks_total{verdict=\"incomplete\"} 0",
    ] {
        assert!(page.contains(line), "missing {line:?} in\n{page}");
    }
}

#[tokio::test]
async fn health_endpoints_answer() {
    let exp = PrometheusExporter::new(Arc::new(SeriesStore::new()), Arc::new(ProbeStats::new()));
    let server = exp.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();
    let get = |path: &'static str| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    assert!(get("/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(get("/readyz").await.starts_with("HTTP/1.1 503"));
    exp.readiness().set(true);
    assert!(get("/readyz").await.starts_with("HTTP/1.1 200"));
    let m = get("/metrics").await;
    assert!(m.contains("text/plain; version=0.0.4"), "{m}");
    assert!(m.contains("# TYPE mailprobe_checks_total counter"), "{m}");
    assert!(!m.contains("# EOF"), "{m}");
    let om = request_with(
        addr,
        "GET",
        "/metrics",
        "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n",
    )
    .await;
    assert!(om.contains("application/openmetrics-text"), "{om}");
    assert!(om.contains("# TYPE mailprobe_checks counter"), "{om}");
    assert!(om.trim_end().ends_with("# EOF"), "{om}");
    assert!(om.contains("mailprobe_build_info{version=\""), "{om}");
    server.shutdown(Duration::from_secs(2)).await;
}

async fn request(addr: SocketAddr, method: &str, path: &str) -> String {
    request_with(addr, method, path, "").await
}

async fn request_with(addr: SocketAddr, method: &str, path: &str, headers: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn reload_endpoint_passes_requests_on_and_answers_with_the_outcome() {
    let exp = PrometheusExporter::new(Arc::new(SeriesStore::new()), Arc::new(ProbeStats::new()));
    let lifecycle = Arc::new(crate::web::WebOptions {
        lifecycle: true,
        ..Default::default()
    });
    let server = exp
        .serve_with("127.0.0.1:0".parse().unwrap(), lifecycle)
        .await
        .unwrap();
    let addr = server.local_addr();
    let mut requests = exp.take_reload_requests().unwrap();
    assert!(exp.take_reload_requests().is_none());
    let answers = tokio::spawn(async move {
        let first = requests.recv().await.unwrap();
        let _ = first.send(Ok("configuration reloaded: 1 mailbox(es)".into()));
        let second = requests.recv().await.unwrap();
        let _ = second.send(Err("c.yaml:3:1: unknown field `x`".into()));
        // Dropped: no one takes reloads any more.
    });
    let ok = request(addr, "POST", "/-/reload").await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("configuration reloaded"), "{ok}");
    let refused = request(addr, "POST", "/-/reload").await;
    assert!(refused.starts_with("HTTP/1.1 500"), "{refused}");
    assert!(
        refused.contains("failed to reload config: c.yaml:3:1: unknown field `x`"),
        "{refused}"
    );
    answers.await.unwrap();
    let gone = request(addr, "POST", "/-/reload").await;
    assert!(gone.starts_with("HTTP/1.1 503"), "{gone}");
    let get = request(addr, "GET", "/-/reload").await;
    assert!(get.starts_with("HTTP/1.1 405"), "{get}");
    server.shutdown(Duration::from_secs(2)).await;
}

#[test]
fn reload_gauges_follow_the_latest_load() {
    let exp = PrometheusExporter::new(Arc::new(SeriesStore::new()), Arc::new(ProbeStats::new()));
    let page = exp.render();
    assert!(
        page.contains("\nmailprobe_config_last_reload_successful 1.0\n"),
        "{page}"
    );
    let state = exp.reload_state();
    let loaded = state.last_success();
    assert!(loaded > 1.7e9, "{loaded}");
    state.record(false);
    let page = exp.render();
    assert!(
        page.contains("\nmailprobe_config_last_reload_successful 0.0\n"),
        "{page}"
    );
    assert_eq!(state.last_success(), loaded);
}

#[test]
fn schedule_lag_is_one_histogram_for_the_process() {
    let exp = PrometheusExporter::new(Arc::new(SeriesStore::new()), Arc::new(ProbeStats::new()));
    exp.on_schedule_lag(Duration::from_millis(3));
    exp.on_schedule_lag(Duration::from_millis(700));
    let page = exp.render();
    for line in [
        "# TYPE mailprobe_schedule_lag_seconds histogram",
        "mailprobe_schedule_lag_seconds_count 2",
        "mailprobe_schedule_lag_seconds_bucket{le=\"0.005\"} 1",
        "mailprobe_schedule_lag_seconds_bucket{le=\"1.0\"} 2",
    ] {
        assert!(page.contains(line), "missing {line:?} in\n{page}");
    }
}

#[test]
fn plugin_overruns_and_disabling_are_on_the_page() {
    let stats = Arc::new(ProbeStats::new());
    let exp = PrometheusExporter::new(Arc::new(SeriesStore::new()), stats.clone());
    assert!(!exp.render().contains("mailprobe_plugin_"), "no plugin yet");
    stats.register_plugin("pop3");
    let page = exp.render();
    for line in [
        "# TYPE mailprobe_plugin_overruns counter",
        "mailprobe_plugin_overruns_total{plugin=\"pop3\"} 0",
        "# TYPE mailprobe_plugin_disabled gauge",
        "mailprobe_plugin_disabled{plugin=\"pop3\"} 0.0",
    ] {
        assert!(page.contains(line), "missing {line:?} in\n{page}");
    }
    stats.add(names::PLUGIN_OVERRUNS, &[("plugin", "pop3")], 3);
    stats.set_gauge(names::PLUGIN_DISABLED, &[("plugin", "pop3")], 1.0);
    let page = exp.render();
    for line in [
        "mailprobe_plugin_overruns_total{plugin=\"pop3\"} 3",
        "mailprobe_plugin_disabled{plugin=\"pop3\"} 1.0",
    ] {
        assert!(page.contains(line), "missing {line:?} in\n{page}");
    }
}

#[tokio::test]
async fn status_routes_serve_html_and_json_on_the_admin_listener() {
    let store = Arc::new(SeriesStore::new());
    let exp = PrometheusExporter::new(store.clone(), Arc::new(ProbeStats::new()));
    exp.status_board().register("idle");
    let o = outcome(vec![RequirementResult::fail(
        "imap.login",
        "<script>x</script>",
        "Use the right password.",
    )]);
    let c = ComplianceTracker::new(1).observe(&o.report, SystemTime::now());
    exp.on_run(&RunEvent {
        outcome: &o,
        compliance: &c,
    });
    let server = exp.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr();
    let index = request(addr, "GET", "/").await;
    assert!(index.starts_with("HTTP/1.1 200"), "{index}");
    assert!(
        index.contains("content-type: text/html; charset=utf-8"),
        "{index}"
    );
    assert!(
        index.contains("content-security-policy: default-src 'none'"),
        "{index}"
    );
    assert!(index.contains("&lt;script&gt;x&lt;/script&gt;"), "{index}");
    assert!(!index.contains("<script>"), "{index}");
    let page = request(addr, "GET", "/mailboxes/sales").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("Use the right password."), "{page}");
    let missing = request(addr, "GET", "/mailboxes/nobody").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    let list = request(addr, "GET", "/api/v1/mailboxes").await;
    let body: serde_json::Value =
        serde_json::from_str(list.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["mailboxes"][0]["mailbox"], "idle");
    assert_eq!(body["mailboxes"][0]["verdict"], serde_json::Value::Null);
    assert_eq!(body["mailboxes"][1]["verdict"], "non_compliant");
    assert_eq!(body["mailboxes"][1]["failing"][0]["id"], "imap.login");
    assert_eq!(body["config"]["last_load_successful"], true);
    let one = request(addr, "GET", "/api/v1/mailboxes/sales").await;
    let body: serde_json::Value =
        serde_json::from_str(one.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["report"]["schema"], "mailprobe.report/v1");
    assert_eq!(body["transcript"], serde_json::Value::Null);
    assert!(
        request(addr, "GET", "/api/v1/mailboxes/nobody")
            .await
            .starts_with("HTTP/1.1 404")
    );
    // A removed mailbox leaves the page.
    exp.forget("sales");
    assert!(
        request(addr, "GET", "/mailboxes/sales")
            .await
            .starts_with("HTTP/1.1 404")
    );
    server.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test]
async fn reload_is_refused_without_the_lifecycle_flag_and_from_a_page() {
    let exp = PrometheusExporter::new(Arc::new(SeriesStore::new()), Arc::new(ProbeStats::new()));
    let server = exp
        .serve_with("127.0.0.1:0".parse().unwrap(), Arc::default())
        .await
        .unwrap();
    let off = request(server.local_addr(), "POST", "/-/reload").await;
    assert!(off.starts_with("HTTP/1.1 403"), "{off}");
    assert!(off.contains("--web.enable-lifecycle"), "{off}");
    server.shutdown(Duration::from_secs(2)).await;

    let lifecycle = Arc::new(crate::web::WebOptions {
        lifecycle: true,
        ..Default::default()
    });
    let server = exp
        .serve_with("127.0.0.1:0".parse().unwrap(), lifecycle)
        .await
        .unwrap();
    let addr = server.local_addr();
    let raw = |extra: &'static str| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("POST /-/reload HTTP/1.1\r\nHost: x\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let page = raw("Origin: http://evil.example\r\n").await;
    assert!(page.starts_with("HTTP/1.1 403"), "{page}");
    let fetch = raw("Sec-Fetch-Site: cross-site\r\n").await;
    assert!(fetch.starts_with("HTTP/1.1 403"), "{fetch}");
    let form = raw("Content-Type: application/x-www-form-urlencoded\r\n").await;
    assert!(form.starts_with("HTTP/1.1 415"), "{form}");
    server.shutdown(Duration::from_secs(2)).await;
}
