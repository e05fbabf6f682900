//! The reference table of `/metrics` in docs/metrics.md, generated from the registry itself: an
//! exporter is fed one example of everything it can show, its page is rendered, and each family's
//! name, type, labels and help text are read back from it. What the docs say is therefore what
//! a scrape returns.

use std::fmt::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mailprobe_core::RequirementResult;
use mailprobe_core::report::{Report, Servers};
use mailprobe_core::requirement::{Measurement, Verdict};
use mailprobe_runtime::runner::RunOutcome;
use mailprobe_telemetry::{ComplianceTracker, ProbeStats, RunEvent, RunSink, SeriesStore};

use crate::PrometheusExporter;

/// The markers around the generated part of docs/metrics.md.
pub const BEGIN: &str = "<!-- BEGIN prometheus metrics: generated from the registry; regenerate with `UPDATE_DOCS=1 cargo test --test metrics_reference` -->";
pub const END: &str = "<!-- END prometheus metrics -->";

/// One metric family as `/metrics` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Family {
    /// The name as the Prometheus text format writes it (counters with `_total`).
    pub name: String,
    pub kind: String,
    pub labels: Vec<String>,
    pub help: String,
}

fn example_report() -> Report {
    let results = vec![
        RequirementResult::pass("imap.reachable", "ok"),
        RequirementResult::pass("imap.certificate.expiry", "ok"),
    ];
    let server = "imap.example.com";
    Report {
        schema: "mailprobe.report/v1".into(),
        mailbox: "example".into(),
        profile: "hubspot".into(),
        verdict: Verdict::of(&results),
        started_at: "2026-11-26T19:00:00Z".into(),
        duration_ms: 412,
        requirements: results,
        servers: Servers {
            imap: Some(format!("{server}:993")),
            smtp: None,
        },
        measures: vec![
            Measurement::CertificateExpiry {
                requirement: "imap.certificate.expiry".into(),
                server: server.into(),
                port: 993,
                not_after_unix: 1_798_761_600,
            },
            Measurement::CertificateInfo {
                requirement: "imap.certificate.expiry".into(),
                server: server.into(),
                port: 993,
                subject: "CN=imap.example.com".into(),
                issuer: "CN=Example CA".into(),
                serial: "01".into(),
                fingerprint_sha256: "00".into(),
            },
            Measurement::TlsVersion {
                server: server.into(),
                port: 993,
                version: "TLSv1.2".into(),
                accepted: true,
            },
            Measurement::ConcurrentConnections {
                requirement: "connections.concurrent".into(),
                achieved: 3.0,
            },
            Measurement::RoundtripLatency {
                requirement: "mail.roundtrip".into(),
                seconds: 1.0,
            },
        ],
    }
}

/// Every family the exporter can show, in the order of `/metrics`.
pub fn families() -> Vec<Family> {
    let store = Arc::new(SeriesStore::new());
    let stats = Arc::new(ProbeStats::new());
    stats.register_mailbox("example");
    stats.register_plugin("example");
    let exporter = PrometheusExporter::new(store.clone(), stats);
    let report = example_report();
    store.update(&report);
    let outcome = RunOutcome {
        report,
        steps: Vec::new(),
        plugin_runs: Vec::new(),
        started_at: SystemTime::now(),
        duration: Duration::from_millis(412),
    };
    let compliance = ComplianceTracker::new(1).observe(&outcome.report, SystemTime::now());
    exporter.on_run(&RunEvent {
        outcome: &outcome,
        compliance: &compliance,
    });
    exporter.on_schedule_lag(Duration::from_millis(3));
    parse(&crate::format::to_text(&exporter.render()))
}

/// The families of a page in the Prometheus text format.
pub fn parse(text: &str) -> Vec<Family> {
    let mut out: Vec<Family> = Vec::new();
    let mut help = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = rest.split_once(' ').map_or("", |(_, h)| h).to_string();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            out.push(Family {
                name: name.to_string(),
                kind: kind.to_string(),
                labels: Vec::new(),
                help: std::mem::take(&mut help),
            });
        } else if !line.starts_with('#')
            && let Some(family) = out.last_mut()
        {
            for label in label_names(line) {
                if label != "le" && !family.labels.contains(&label) {
                    family.labels.push(label);
                }
            }
        }
    }
    out
}

/// The label names of one sample line (`name{a="x",b="y"} 1`).
fn label_names(sample: &str) -> Vec<String> {
    let Some((_, rest)) = sample.split_once('{') else {
        return Vec::new();
    };
    let mut names = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let name = name.trim_start_matches(',').trim().to_string();
        if name.is_empty() || name.starts_with('}') {
            break;
        }
        names.push(name);
        // The quoted value, with its escapes.
        if chars.next() != Some('"') {
            break;
        }
        let mut escaped = false;
        for c in chars.by_ref() {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => break,
                _ => escaped = false,
            }
        }
        if chars.peek() == Some(&'}') {
            break;
        }
    }
    names
}

/// The generated part of docs/metrics.md, markers included.
pub fn markdown() -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{BEGIN}");
    out.push_str("\n| name | type | labels | meaning |\n|---|---|---|---|\n");
    for f in families() {
        let labels = f
            .labels
            .iter()
            .map(|l| format!("`{l}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let labels = if labels.is_empty() {
            "–".to_string()
        } else {
            labels
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            f.name,
            f.kind,
            labels,
            f.help.replace('|', "\\|")
        );
    }
    let _ = writeln!(out, "\n{END}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailprobe_telemetry::names;

    #[test]
    fn every_family_has_help_and_the_spec_labels() {
        let families = families();
        for f in &families {
            assert!(!f.help.is_empty(), "{} has no help", f.name);
        }
        let labels = |name: &str| {
            families
                .iter()
                .find(|f| f.name == name)
                .unwrap_or_else(|| panic!("{name} missing"))
                .labels
                .clone()
        };
        assert_eq!(
            labels("mailprobe_cert_info"),
            [
                "mailbox",
                "server",
                "port",
                "subject",
                "issuer",
                "serial",
                "fingerprint_sha256"
            ]
        );
        assert_eq!(labels("mailprobe_build_info"), ["version", "revision"]);
        assert_eq!(labels("mailprobe_checks_total"), ["verdict"]);
        assert_eq!(
            labels("mailprobe_last_check_timestamp_seconds"),
            ["mailbox"]
        );
        assert!(labels("mailprobe_schedule_lag_seconds").is_empty());
        assert!(labels(names::CONFIG_LAST_RELOAD_SUCCESSFUL).is_empty());
    }

    #[test]
    fn label_names_read_escaped_values() {
        assert_eq!(
            label_names(r#"x{a="1,b=\"2\"",c="}"} 1"#),
            ["a".to_string(), "c".to_string()]
        );
        assert!(label_names("x 1").is_empty());
    }
}
