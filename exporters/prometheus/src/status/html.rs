//! The HTML of the status page, written with plain formatting: every value from a report goes
//! through [`escape`], every path segment through [`path_segment`]. No script, one inline style
//! sheet, colours chosen for a contrast of at least 4.5:1 and never the only sign of a verdict
//! (each badge also says it in words).

use std::fmt::Write;

use mailprobe_core::report::Report;
use mailprobe_core::requirement::{Status, Verdict};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::MailboxStatus;
use crate::{BuildInfo, ReloadState};

/// `&`, `<`, `>`, `"` and `'` as character references: safe in text and in quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters (other than line breaks and tabs) have no business on a page.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A mailbox name as one URL path segment: everything but the unreserved characters is
/// percent-encoded, so a name with `/`, `?` or `#` still links to its own page.
pub fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// RFC 3339 in UTC, to the second.
pub fn timestamp(unix: f64) -> String {
    OffsetDateTime::from_unix_timestamp(unix as i64)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "unknown".to_string())
}

/// `2026-12-08 00:36:03 UTC`, for people.
fn readable(unix: f64) -> String {
    timestamp(unix).replace('T', " ").replace('Z', " UTC")
}

/// "12 s ago", "5 min ago", "3 h ago", "2 days ago".
fn ago(then: f64, now: f64) -> String {
    let s = (now - then).max(0.0) as u64;
    match s {
        0..=89 => format!("{s} s ago"),
        90..=5399 => format!("{} min ago", (s + 30) / 60),
        5400..=129_599 => format!("{} h ago", (s + 1800) / 3600),
        _ => format!("{} days ago", (s + 43_200) / 86_400),
    }
}

const STYLE: &str = r#"
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1f2328; background: #f6f8fa; }
header { background: #24292f; color: #ffffff; padding: 14px 28px; display: flex; align-items: baseline; gap: 18px; flex-wrap: wrap; }
header h1 { font-size: 20px; margin: 0; }
header a { color: #ffffff; }
header .meta { color: #d0d7de; font-size: 13px; }
main { padding: 20px 28px 32px; max-width: 1400px; }
h2 { font-size: 17px; margin: 24px 0 10px; }
a { color: #0550ae; }
.summary { display: flex; gap: 12px; flex-wrap: wrap; margin: 0 0 16px; padding: 0; list-style: none; }
.summary li { background: #ffffff; border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 14px; }
.summary strong { font-size: 20px; margin-right: 6px; }
.config { background: #ffffff; border: 1px solid #d0d7de; border-left: 6px solid #1a7f37; border-radius: 6px; padding: 8px 14px; margin: 0 0 20px; }
.config h2 { display: inline; font-size: 15px; margin: 0 8px 0 0; }
.config p { display: inline; margin: 0; }
.config.bad p { display: block; margin: 4px 0 0; }
.config.bad { border-left-color: #b42318; background: #fff5f5; }
.config pre { white-space: pre-wrap; margin: 6px 0 0; }
table { border-collapse: collapse; width: 100%; background: #ffffff; border: 1px solid #d0d7de; }
caption { text-align: left; font-weight: 600; padding: 0 0 8px; }
th, td { text-align: left; vertical-align: top; padding: 8px 12px; border-bottom: 1px solid #d0d7de; }
thead th { background: #eaeef2; font-size: 13px; text-transform: uppercase; letter-spacing: .03em; }
tbody tr:hover { background: #f6f8fa; }
.badge { display: inline-block; font-weight: 600; font-size: 13px; padding: 2px 10px; border-radius: 12px; border: 1px solid; white-space: nowrap; }
.compliant, .pass { color: #116329; background: #dafbe1; border-color: #4ac26b; }
.non_compliant, .fail { color: #a40e26; background: #ffebe9; border-color: #ff8182; }
.incomplete, .warn { color: #6c4400; background: #fff8c5; border-color: #d4a72c; }
.unchecked, .skip { color: #424a53; background: #eaeef2; border-color: #afb8c1; }
ul.problems { margin: 0; padding-left: 0; list-style: none; }
ul.problems li { margin: 0 0 6px; }
.remedy { color: #424a53; display: block; }
.remedy::before { content: "Fix: "; font-weight: 600; color: #1f2328; }
.muted { color: #57606a; }
code, pre { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 13px; }
pre.transcript { background: #ffffff; border: 1px solid #d0d7de; border-radius: 6px; padding: 12px; overflow-x: auto; white-space: pre-wrap; word-break: break-all; max-height: 40em; }
pre.transcript:focus { outline: 2px solid #0969da; outline-offset: 2px; }
details summary { white-space: nowrap; cursor: pointer; }
details pre { white-space: pre-wrap; word-break: break-all; margin: 4px 0 0; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; background: #ffffff; border: 1px solid #d0d7de; border-radius: 6px; padding: 12px 16px; margin: 0; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; }
td.when { white-space: nowrap; }
footer { padding: 12px 28px 24px; color: #57606a; font-size: 13px; }
"#;

fn page(title: &str, build: &BuildInfo, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
<header><h1><a href=\"/\">mailprobe</a></h1><span class=\"meta\">CRM mailbox compliance · version {version}</span></header>\n\
<main id=\"main\">\n{body}</main>\n\
<footer><nav aria-label=\"Machine-readable views\"><a href=\"/api/v1/mailboxes\">JSON</a> · <a href=\"/metrics\">Prometheus metrics</a> · <a href=\"/healthz\">health</a></nav></footer>\n\
</body>\n</html>\n",
        title = escape(title),
        version = escape(&build.version),
    )
}

fn verdict_badge(verdict: Option<Verdict>) -> String {
    match verdict {
        Some(v) => {
            let words = match v {
                Verdict::Compliant => "Compliant",
                Verdict::NonCompliant => "Non-compliant",
                Verdict::Incomplete => "Incomplete",
            };
            format!("<span class=\"badge {}\">{words}</span>", v.as_str())
        }
        None => "<span class=\"badge unchecked\">Not checked yet</span>".to_string(),
    }
}

fn status_badge(status: Status, reason: Option<&str>) -> String {
    let words = match (status, reason) {
        (Status::Pass, _) => "Pass".to_string(),
        (Status::Warn, _) => "Warn".to_string(),
        (Status::Fail, _) => "Fail".to_string(),
        (Status::Skip, Some("not_verified")) => "Not verified".to_string(),
        (Status::Skip, _) => "Skipped".to_string(),
    };
    let class = match (status, reason) {
        (Status::Skip, Some("not_verified")) => "warn",
        _ => status.as_str(),
    };
    format!("<span class=\"badge {class}\">{words}</span>")
}

/// Requirements with one outcome: (status, skip reason, summary, remedy, their IDs).
type ProblemGroup<'a> = (
    Status,
    Option<&'a str>,
    &'a str,
    Option<&'a str>,
    Vec<&'a str>,
);

/// The failing and warning requirements of a report, and the ones that could not be verified,
/// each with its summary and remedy. Requirements with the same outcome, summary and remedy (one
/// cause that left a dozen requirements unverified) are one line naming them all.
fn problems(report: &Report) -> String {
    let mut groups: Vec<ProblemGroup<'_>> = Vec::new();
    for r in &report.requirements {
        let reason = r.skip_reason().map(|x| x.as_str());
        let shown =
            matches!(r.status, Status::Fail | Status::Warn) || reason == Some("not_verified");
        if !shown {
            continue;
        }
        let key = (r.status, reason, r.summary.as_str(), r.remedy.as_deref());
        match groups.iter_mut().find(|g| (g.0, g.1, g.2, g.3) == key) {
            Some(g) => g.4.push(&r.id),
            None => groups.push((key.0, key.1, key.2, key.3, vec![&r.id])),
        }
    }
    if groups.is_empty() {
        return "<span class=\"muted\">none</span>".to_string();
    }
    // Failures first, then warnings, then what could not be verified.
    groups.sort_by_key(|g| match g.0 {
        Status::Fail => 0,
        Status::Warn => 1,
        _ => 2,
    });
    let mut items = String::new();
    for (status, reason, summary, remedy, ids) in groups {
        let ids: Vec<String> = ids
            .iter()
            .map(|id| format!("<code>{}</code>", escape(id)))
            .collect();
        let _ = write!(
            items,
            "<li>{} {}: {}",
            status_badge(status, reason),
            ids.join(", "),
            escape(summary)
        );
        if let Some(remedy) = remedy {
            let _ = write!(items, "<span class=\"remedy\">{}</span>", escape(remedy));
        }
        items.push_str("</li>");
    }
    format!("<ul class=\"problems\">{items}</ul>")
}

fn config_status(reloads: &ReloadState, now: f64) -> String {
    match reloads.last_error() {
        Some(error) if !reloads.successful() => format!(
            "<section class=\"config bad\" aria-labelledby=\"config-h\"><h2 id=\"config-h\">Configuration: the latest load failed</h2>\
<p>The previous configuration keeps running. Fix the file; it is picked up again on reload.</p><pre>{}</pre></section>\n",
            escape(&error)
        ),
        _ if !reloads.successful() => "<section class=\"config bad\" aria-labelledby=\"config-h\"><h2 id=\"config-h\">Configuration: the latest load failed</h2>\
<p>The previous configuration keeps running; see the log for why.</p></section>\n".to_string(),
        _ => {
            let at = reloads.last_success();
            format!(
                "<section class=\"config\" aria-labelledby=\"config-h\"><h2 id=\"config-h\">Configuration loaded</h2>\
<p>Last loaded at <time datetime=\"{t}\">{shown}</time> ({ago}).</p></section>\n",
                t = timestamp(at),
                shown = readable(at),
                ago = ago(at, now)
            )
        }
    }
}

/// `/`: every mailbox.
pub fn index(
    mailboxes: &[(String, MailboxStatus)],
    reloads: &ReloadState,
    build: &BuildInfo,
    now: f64,
) -> String {
    let count = |v: Option<Verdict>| {
        mailboxes
            .iter()
            .filter(|(_, s)| s.report.as_ref().map(|r| r.verdict) == v)
            .count()
    };
    let mut body = String::new();
    body.push_str("<h2 id=\"overview-h\">Overview</h2>\n<ul class=\"summary\" aria-labelledby=\"overview-h\">");
    let _ = write!(
        body,
        "<li><strong>{}</strong>mailboxes</li>\
<li><strong>{}</strong>{}</li><li><strong>{}</strong>{}</li><li><strong>{}</strong>{}</li><li><strong>{}</strong>{}</li></ul>",
        mailboxes.len(),
        count(Some(Verdict::NonCompliant)),
        verdict_badge(Some(Verdict::NonCompliant)),
        count(Some(Verdict::Incomplete)),
        verdict_badge(Some(Verdict::Incomplete)),
        count(Some(Verdict::Compliant)),
        verdict_badge(Some(Verdict::Compliant)),
        count(None),
        verdict_badge(None),
    );
    body.push('\n');
    body.push_str(&config_status(reloads, now));
    body.push_str(
        "<table>\n<caption>Mailboxes, most urgent first</caption>\n<thead><tr><th scope=\"col\">Mailbox</th>\
<th scope=\"col\">Verdict</th><th scope=\"col\">Profile</th><th scope=\"col\">Last check</th>\
<th scope=\"col\">Failing, warning and unverified requirements</th></tr></thead>\n<tbody>\n",
    );
    if mailboxes.is_empty() {
        body.push_str(
            "<tr><td colspan=\"5\" class=\"muted\">No mailbox is configured.</td></tr>\n",
        );
    }
    let mut rows: Vec<&(String, MailboxStatus)> = mailboxes.iter().collect();
    rows.sort_by_key(|(name, s)| {
        let rank = match s.report.as_ref().map(|r| r.verdict) {
            Some(Verdict::NonCompliant) => 0,
            Some(Verdict::Incomplete) => 1,
            None => 2,
            Some(Verdict::Compliant) => 3,
        };
        (rank, name.clone())
    });
    for (name, status) in rows {
        let link = format!(
            "<a href=\"/mailboxes/{}\">{}</a>",
            path_segment(name),
            escape(name)
        );
        let (verdict, profile, problems) = match &status.report {
            Some(r) => (Some(r.verdict), escape(&r.profile), problems(r)),
            None => (None, String::new(), String::new()),
        };
        let last = match status.finished_unix {
            Some(t) => format!(
                "<time datetime=\"{ts}\">{ago}</time><br><span class=\"muted\">{shown}</span>",
                ts = timestamp(t),
                shown = readable(t),
                ago = ago(t, now)
            ),
            None => "<span class=\"muted\">never</span>".to_string(),
        };
        let _ = writeln!(
            body,
            "<tr><th scope=\"row\">{link}</th><td>{}</td><td>{profile}</td><td class=\"when\">{last}</td><td>{problems}</td></tr>",
            verdict_badge(verdict)
        );
    }
    body.push_str("</tbody>\n</table>\n");
    page("mailprobe status", build, &body)
}

/// `/mailboxes/NAME`: one mailbox's latest report and transcript.
pub fn mailbox(name: &str, status: &MailboxStatus, build: &BuildInfo, now: f64) -> String {
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<p><a href=\"/\">← All mailboxes</a></p>\n<h2 id=\"mailbox-h\">Mailbox {} {}</h2>",
        escape(name),
        verdict_badge(status.report.as_ref().map(|r| r.verdict))
    );
    let Some(report) = &status.report else {
        body.push_str(
            "<p>This mailbox has not been checked yet; its first check is scheduled.</p>\n",
        );
        return page(&format!("{name} · mailprobe"), build, &body);
    };
    body.push_str("<dl class=\"facts\">");
    let finished = status
        .finished_unix
        .map(|t| format!("{} ({})", readable(t), ago(t, now)))
        .unwrap_or_else(|| "unknown".into());
    for (k, v) in [
        ("Profile", escape(&report.profile)),
        (
            "Started",
            escape(&report.started_at.replace('T', " ").replace('Z', " UTC")),
        ),
        ("Finished", finished),
        (
            "Duration",
            format!("{:.1} s", report.duration_ms as f64 / 1000.0),
        ),
        (
            "IMAP server",
            escape(report.servers.imap.as_deref().unwrap_or("–")),
        ),
        (
            "SMTP server",
            escape(report.servers.smtp.as_deref().unwrap_or("not configured")),
        ),
    ] {
        let _ = write!(body, "<dt>{k}</dt><dd>{v}</dd>");
    }
    body.push_str("</dl>\n");
    body.push_str(
        "<h2 id=\"req-h\">Requirements</h2>\n<table aria-labelledby=\"req-h\">\n<thead><tr><th scope=\"col\">Requirement</th>\
<th scope=\"col\">Status</th><th scope=\"col\">Summary and remedy</th><th scope=\"col\">Evidence</th></tr></thead>\n<tbody>\n",
    );
    for r in &report.requirements {
        let reason = r.skip_reason().map(|x| x.as_str());
        let remedy = r
            .remedy
            .as_ref()
            .map(|m| format!("<span class=\"remedy\">{}</span>", escape(m)))
            .unwrap_or_default();
        let evidence = if r.evidence.is_empty() {
            "<span class=\"muted\">–</span>".to_string()
        } else {
            let json = serde_json::to_string_pretty(&r.evidence).unwrap_or_default();
            format!(
                "<details><summary>{} {}</summary><pre>{}</pre></details>",
                r.evidence.len(),
                if r.evidence.len() == 1 { "key" } else { "keys" },
                escape(&json)
            )
        };
        let _ = writeln!(
            body,
            "<tr><th scope=\"row\"><code>{}</code></th><td>{}</td><td>{}{remedy}</td><td>{evidence}</td></tr>",
            escape(&r.id),
            status_badge(r.status, reason),
            escape(&r.summary)
        );
    }
    body.push_str("</tbody>\n</table>\n");
    body.push_str("<h2 id=\"transcript-h\">Transcript of the last run</h2>\n");
    match &status.transcript {
        Some(t) => {
            // Focusable: a transcript taller than its box scrolls, and a keyboard must reach it.
            let _ = writeln!(
                body,
                "<pre class=\"transcript\" tabindex=\"0\" aria-labelledby=\"transcript-h\">{}</pre>",
                escape(t)
            );
        }
        None => body.push_str(
            "<p class=\"muted\">No transcript: none was kept for the last run of this mailbox.</p>\n",
        ),
    }
    let _ = writeln!(
        body,
        "<p><a href=\"/api/v1/mailboxes/{}\">This report as JSON</a></p>",
        path_segment(name)
    );
    page(&format!("{name} · mailprobe"), build, &body)
}

/// A mailbox that is not configured.
pub fn not_found(name: &str, build: &BuildInfo) -> String {
    let body = format!(
        "<h2>No mailbox named {}</h2>\n<p>It is not in the running configuration. <a href=\"/\">All mailboxes</a></p>\n",
        escape(name)
    );
    page("Not found · mailprobe", build, &body)
}
