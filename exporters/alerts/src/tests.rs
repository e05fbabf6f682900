use super::*;
use mailprobe_core::RequirementResult;
use mailprobe_core::report::{Report, Servers};
use mailprobe_core::requirement::Verdict;
use mailprobe_runtime::runner::RunOutcome;
use mailprobe_telemetry::ComplianceTracker;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn outcome(failing: &[&str]) -> RunOutcome {
    let mut results = vec![RequirementResult::pass("imap.reachable", "ok")];
    for id in failing {
        results.push(RequirementResult::fail(
            id,
            format!("{id} failed"),
            format!("fix {id}"),
        ));
    }
    outcome_of(results)
}

/// A run in which the probe could not verify `imap.login`.
fn incomplete() -> RunOutcome {
    outcome_of(vec![
        RequirementResult::pass("imap.reachable", "ok"),
        RequirementResult::not_verified("imap.login", "not verified: plugin imap panicked"),
    ])
}

fn outcome_of(results: Vec<RequirementResult>) -> RunOutcome {
    RunOutcome {
        report: Report {
            schema: "mailprobe.report/v1".into(),
            mailbox: "sales".into(),
            profile: "hubspot".into(),
            verdict: Verdict::of(&results),
            started_at: "2026-11-26T19:00:00Z".into(),
            duration_ms: 10,
            requirements: results,
            servers: Servers::default(),
            measures: Vec::new(),
        },
        steps: vec![],
        plugin_runs: vec![],
        started_at: SystemTime::now(),
        duration: Duration::from_millis(10),
    }
}

/// A receiver that answers `fail_first` requests with 503, then 200, and keeps the bodies.
async fn receiver(fail_first: usize) -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let g = g.clone();
            let n = seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let k = s.read(&mut chunk).await.unwrap_or(0);
                    if k == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..k]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let head = &text[..end];
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            let body =
                                String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                            let status = if n < fail_first {
                                "503 Service Unavailable"
                            } else {
                                "200 OK"
                            };
                            if n >= fail_first {
                                g.lock().unwrap().push((head.to_string(), body));
                            }
                            let _ = s
                                .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes())
                                .await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), got)
}

#[tokio::test]
async fn fires_reposts_and_resolves() {
    let stats = Arc::new(ProbeStats::new());
    let config = AlertsConfig {
        alertmanager: Some("http://127.0.0.1:9".into()),
        webhook: None,
        alert_after: 2,
    };
    let exp = AlertsExporter::start(&config, Duration::from_secs(60), stats).unwrap();
    let tracker = ComplianceTracker::new(2);
    let run = |failing: &[&str]| {
        let o = outcome(failing);
        let c = tracker.observe(&o.report, SystemTime::now());
        exp.alerts_for(
            &RunEvent {
                outcome: &o,
                compliance: &c,
            },
            SystemTime::now(),
        )
    };
    // One failing run is below alert_after: nothing.
    assert!(run(&["imap.login"]).is_empty());
    let fired = run(&["imap.login", "imap.folders"]);
    assert_eq!(fired.len(), 2);
    assert_eq!(fired[0].labels["alertname"], "MailboxNonCompliant");
    assert_eq!(fired[0].labels["mailbox"], "sales");
    assert_eq!(fired[0].annotations["remedy"], "fix imap.login");
    assert!(fired[0].ends_at > fired[0].starts_at);
    // Still failing, one requirement fewer: it is resolved, the other re-posted.
    let next = run(&["imap.login"]);
    let folders = next
        .iter()
        .find(|a| a.labels["requirement"] == "imap.folders")
        .unwrap();
    let login = next
        .iter()
        .find(|a| a.labels["requirement"] == "imap.login")
        .unwrap();
    assert_eq!(
        login.starts_at,
        fired
            .iter()
            .find(|a| a.labels["requirement"] == "imap.login")
            .unwrap()
            .starts_at
    );
    assert!(login.ends_at > folders.ends_at);
    // Recovery: the remaining alert ends now.
    let resolved = run(&[]);
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].labels["requirement"], "imap.login");
    assert!(run(&[]).is_empty());
    exp.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_removed_mailbox_has_its_alerts_resolved() {
    let config = AlertsConfig {
        alertmanager: Some("http://127.0.0.1:9".into()),
        webhook: None,
        alert_after: 1,
    };
    let exp = AlertsExporter::start(
        &config,
        Duration::from_secs(60),
        Arc::new(ProbeStats::new()),
    )
    .unwrap();
    let tracker = ComplianceTracker::new(1);
    let o = outcome(&["imap.login"]);
    let c = tracker.observe(&o.report, SystemTime::now());
    let fired = exp.alerts_for(
        &RunEvent {
            outcome: &o,
            compliance: &c,
        },
        SystemTime::now(),
    );
    assert_eq!(fired.len(), 1);
    let now = SystemTime::now();
    let resolved = exp.resolve_removed("sales", now);
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].labels["requirement"], "imap.login");
    assert_eq!(resolved[0].starts_at, fired[0].starts_at);
    assert_eq!(resolved[0].ends_at, rfc3339(now));
    // Nothing is left to resolve, and an unknown mailbox has nothing either.
    assert!(exp.resolve_removed("sales", now).is_empty());
    assert!(exp.resolve_removed("other", now).is_empty());
    exp.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn an_incomplete_run_keeps_non_compliance_and_fires_its_own_alert() {
    let stats = Arc::new(ProbeStats::new());
    let config = AlertsConfig {
        alertmanager: Some("http://127.0.0.1:9".into()),
        webhook: None,
        alert_after: 2,
    };
    let exp = AlertsExporter::start(&config, Duration::from_secs(60), stats).unwrap();
    let tracker = ComplianceTracker::new(2);
    let run = |o: RunOutcome| {
        let c = tracker.observe(&o.report, SystemTime::now());
        exp.alerts_for(
            &RunEvent {
                outcome: &o,
                compliance: &c,
            },
            SystemTime::now(),
        )
    };
    let name = |a: &PostableAlert| a.labels["alertname"].clone();
    assert!(run(outcome(&["imap.folders"])).is_empty());
    let fired = run(outcome(&["imap.folders"]));
    assert_eq!(fired.len(), 1);
    // Incomplete: the non-compliance alert is re-posted as it was, never resolved; one
    // incomplete run is below alert_after.
    let kept = run(incomplete());
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(name(&kept[0]), "MailboxNonCompliant");
    assert_eq!(kept[0].starts_at, fired[0].starts_at);
    assert_eq!(kept[0].annotations["remedy"], "fix imap.folders");
    assert!(kept[0].ends_at > kept[0].starts_at);
    let second = run(incomplete());
    let inc = second
        .iter()
        .find(|a| name(a) == "MailboxCheckIncomplete")
        .expect("MailboxCheckIncomplete after alert_after incomplete runs");
    assert!(!inc.labels.contains_key("requirement"));
    assert!(inc.annotations["summary"].contains("imap.login"), "{inc:?}");
    assert!(second.iter().any(|a| name(a) == "MailboxNonCompliant"));
    // Judged again (compliant): both end now.
    let resolved = run(outcome(&[]));
    assert_eq!(resolved.len(), 2, "{resolved:?}");
    assert!(
        resolved
            .iter()
            .all(|a| a.ends_at <= rfc3339(SystemTime::now()))
    );
    assert!(run(outcome(&[])).is_empty());
    exp.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn delivery_is_retried_and_counted() {
    let (am_url, am_got) = receiver(2).await;
    let (hook_url, hook_got) = receiver(1).await;
    let stats = Arc::new(ProbeStats::new());
    let config = AlertsConfig {
        alertmanager: Some(am_url),
        webhook: Some(format!("{hook_url}/hook")),
        alert_after: 1,
    };
    let exp = AlertsExporter::start(&config, Duration::from_secs(60), stats.clone()).unwrap();
    let tracker = ComplianceTracker::new(1);
    let o = outcome(&["smtp.login"]);
    let c = tracker.observe(&o.report, SystemTime::now());
    exp.on_run(&RunEvent {
        outcome: &o,
        compliance: &c,
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while (am_got.lock().unwrap().is_empty() || hook_got.lock().unwrap().is_empty())
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (head, body) = am_got.lock().unwrap()[0].clone();
    assert!(head.starts_with("POST /api/v2/alerts "), "{head}");
    let alerts: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(alerts[0]["labels"]["requirement"], "smtp.login");
    let (head, body) = hook_got.lock().unwrap()[0].clone();
    assert!(head.starts_with("POST /hook "), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("x-mailprobe-transition: firing"),
        "{head}"
    );
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["schema"], "mailprobe.report/v1");
    assert_eq!(report["verdict"], "non_compliant");
    assert_eq!(
        stats.get(
            names::ALERT_DELIVERY_FAILURES,
            &[("receiver", "alertmanager")]
        ),
        2
    );
    assert_eq!(
        stats.get(names::ALERT_DELIVERY_FAILURES, &[("receiver", "webhook")]),
        1
    );
    assert_eq!(
        stats.get(names::ALERT_NOTIFICATIONS_SENT, &[("receiver", "webhook")]),
        1
    );
    exp.shutdown(Duration::from_secs(2)).await;
}

#[test]
fn bad_urls_are_config_errors() {
    assert!(alertmanager_url("127.0.0.1:9093").is_err());
    assert_eq!(
        alertmanager_url("http://am:9093/").unwrap().to_string(),
        "http://am:9093/api/v2/alerts"
    );
}
