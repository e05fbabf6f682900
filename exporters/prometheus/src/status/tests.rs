use super::html::{escape, path_segment};
use super::*;
use mailprobe_core::RequirementResult;
use mailprobe_core::report::Servers;
use mailprobe_core::requirement::Verdict;

const HOSTILE: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'&";

fn report(mailbox: &str, results: Vec<RequirementResult>) -> Report {
    Report {
        schema: "mailprobe.report/v1".into(),
        mailbox: mailbox.into(),
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
    }
}

fn hostile_report(mailbox: &str) -> Report {
    report(
        mailbox,
        vec![
            RequirementResult::pass("imap.reachable", "ok"),
            RequirementResult::fail(
                "imap.server_software",
                format!("greeting {HOSTILE}"),
                HOSTILE,
            )
            .with("greeting", HOSTILE),
            RequirementResult::warn("imap.certificate.expiry", "expires soon", "Renew it."),
        ],
    )
}

#[test]
fn escaping_leaves_no_markup() {
    assert_eq!(
        escape(HOSTILE),
        "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;&quot;&#39;&amp;"
    );
    assert_eq!(escape("a\u{1b}[31mb"), "a\u{FFFD}[31mb");
    assert_eq!(path_segment("sales/eu?x#y"), "sales%2Feu%3Fx%23y");
    assert_eq!(path_segment("a@b.example"), "a@b.example");
}

#[test]
fn pages_escape_every_server_string() {
    let board = StatusBoard::new();
    board.register("waiting");
    board.record(
        &hostile_report("sales<b>"),
        1_800_000_000.0,
        Some(Arc::from(format!("S: * OK {HOSTILE}"))),
    );
    let reloads = ReloadState::default();
    reloads.record_failure(&format!("config.yaml: line 3: {HOSTILE}"));
    let build = BuildInfo::default();
    let index = html::index(&board.snapshot(), &reloads, &build, 1_800_000_060.0);
    let detail = html::mailbox(
        "sales<b>",
        &board.get("sales<b>").unwrap(),
        &build,
        1_800_000_060.0,
    );
    for page in [&index, &detail] {
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<b>"), "{page}");
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{page}"
        );
        assert!(page.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
    }
    // The index: verdicts, the failing and warning requirements with remedies, the time, the
    // configuration error, and a link to the mailbox's own page.
    assert!(index.contains("Non-compliant"));
    assert!(index.contains("Not checked yet"));
    assert!(index.contains("<code>imap.server_software</code>"));
    assert!(index.contains("Renew it."));
    assert!(index.contains("60 s ago"));
    assert!(index.contains("the latest load failed"));
    assert!(index.contains("href=\"/mailboxes/sales%3Cb%3E\""));
    // The mailbox page: every requirement, the evidence, the transcript.
    assert!(detail.contains("<code>imap.reachable</code>"));
    assert!(detail.contains("S: * OK &lt;script&gt;"));
    let plain = html::mailbox(
        "waiting",
        &board.get("waiting").unwrap(),
        &build,
        1_800_000_060.0,
    );
    assert!(plain.contains("has not been checked yet"), "{plain}");
    let mut no_transcript = board.get("sales<b>").unwrap();
    no_transcript.transcript = None;
    let page = html::mailbox("sales<b>", &no_transcript, &build, 1_800_000_060.0);
    assert!(page.contains("No transcript"), "{page}");
}

#[test]
fn identical_causes_are_one_line() {
    let r = report(
        "a",
        vec![
            RequirementResult::not_verified("imap.login", "deadline"),
            RequirementResult::not_verified("imap.folders", "deadline"),
        ],
    );
    let board = StatusBoard::new();
    board.record(&r, 1.0, None);
    let page = html::index(
        &board.snapshot(),
        &ReloadState::default(),
        &BuildInfo::default(),
        2.0,
    );
    assert!(
        page.contains("<code>imap.login</code>, <code>imap.folders</code>: deadline"),
        "{page}"
    );
}
