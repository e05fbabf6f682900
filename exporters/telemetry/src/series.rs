//! The gauges of one mailbox, derived from its latest report.
//!
//! Each run replaces the mailbox's whole set of series. A requirement that is now `skip` (or that
//! the run no longer reports), a certificate that could not be read, or a TLS version that was
//! not probed therefore loses its series at the next run instead of keeping a stale value: a
//! Prometheus query then finds no sample (`absent()`), and an OTLP collection leaves it out.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use mailprobe_core::report::Report;
use mailprobe_core::requirement::{Measurement, Verdict};

/// A `server` / `port` label pair.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerPort {
    pub server: Arc<str>,
    pub port: Arc<str>,
}

/// The label values every mailbox repeats (requirement IDs, server names, ports, TLS versions),
/// kept once for the process: 10,000 mailboxes' series then cost pointers, not 10,000 copies of
/// the same few dozen strings.
static LABELS: Mutex<Option<HashSet<Arc<str>>>> = Mutex::new(None);
/// Beyond this many distinct values (a reload storm of new server names) the table starts
/// afresh: values already handed out stay valid, only their sharing is lost.
const MAX_LABELS: usize = 65_536;

/// The shared copy of a label value.
pub fn label(value: &str) -> Arc<str> {
    let mut table = LABELS.lock().unwrap_or_else(|e| e.into_inner());
    let set = table.get_or_insert_with(HashSet::new);
    if let Some(v) = set.get(value) {
        return v.clone();
    }
    if set.len() >= MAX_LABELS {
        set.clear();
    }
    let v: Arc<str> = Arc::from(value);
    set.insert(v.clone());
    v
}

/// The labels of `mailprobe_cert_info` that name one leaf certificate.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct CertIdentity {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub fingerprint_sha256: String,
}

/// Every gauge sample of one mailbox, by the labels that follow `mailbox`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MailboxSeries {
    /// The latest verdict: `mailprobe_verdict{verdict}` is 1 for it and 0 for the others.
    pub verdict: Option<Verdict>,
    /// `mailprobe_compliant`: 1 or 0, the last definitive verdict. An `incomplete` run neither
    /// sets nor clears it ([`SeriesStore::update`] carries the previous value over); `None` (no
    /// sample) only before the mailbox's first definitive verdict.
    pub compliant: Option<f64>,
    /// `mailprobe_last_check_timestamp_seconds`: Unix time the latest run finished.
    pub last_check: Option<f64>,
    /// `mailprobe_requirement_status{requirement}`: 1 pass, 0.5 warn, 0 fail (skip: absent).
    pub requirements: Vec<(Arc<str>, f64)>,
    /// `mailprobe_cert_expiry_timestamp_seconds{server,port}`: the leaf's notAfter (Unix time).
    pub cert_expiry: Vec<(ServerPort, f64)>,
    /// `mailprobe_cert_info{server,port,subject,issuer,serial,fingerprint_sha256}` (always 1).
    pub cert_info: Vec<(ServerPort, CertIdentity)>,
    /// `mailprobe_tls_version_accepted{server,port,version}`: 1 or 0.
    pub tls_versions: Vec<(ServerPort, Arc<str>, f64)>,
    /// `mailprobe_concurrent_connections_achieved`, when the connection plugin reported it.
    pub concurrent_achieved: Option<f64>,
    /// `mailprobe_roundtrip_seconds`, when the round trip ran and its message arrived.
    pub roundtrip_seconds: Option<f64>,
    /// `mailprobe_proof_age_seconds`: the age of the oldest earlier proof (`proved_at`) the
    /// latest run's results rest on, at that run; 0 when it proved everything itself.
    pub proof_age: Option<f64>,
}

impl MailboxSeries {
    /// The series of a report: a status per requirement, and the measurements its plugins
    /// declared (the exporter knows no requirement ID).
    pub fn from_report(report: &Report) -> MailboxSeries {
        let mut s = MailboxSeries {
            verdict: Some(report.verdict),
            compliant: match report.verdict {
                Verdict::Compliant => Some(1.0),
                Verdict::NonCompliant => Some(0.0),
                Verdict::Incomplete => None,
            },
            ..MailboxSeries::default()
        };
        for r in &report.requirements {
            if let Some(v) = r.status.metric_value() {
                s.requirements.push((label(&r.id), v));
            }
        }
        s.proof_age = Some(proof_age(report));
        for m in &report.measures {
            match m {
                Measurement::CertificateExpiry {
                    server,
                    port,
                    not_after_unix,
                    ..
                } => s
                    .cert_expiry
                    .push((server_port(server, *port), *not_after_unix as f64)),
                Measurement::CertificateInfo {
                    server,
                    port,
                    subject,
                    issuer,
                    serial,
                    fingerprint_sha256,
                    ..
                } => s.cert_info.push((
                    server_port(server, *port),
                    CertIdentity {
                        subject: clip(subject),
                        issuer: clip(issuer),
                        serial: clip(serial),
                        fingerprint_sha256: clip(fingerprint_sha256),
                    },
                )),
                Measurement::TlsVersion {
                    server,
                    port,
                    version,
                    accepted,
                } => s.tls_versions.push((
                    server_port(server, *port),
                    label(version),
                    if *accepted { 1.0 } else { 0.0 },
                )),
                Measurement::ConcurrentConnections { achieved, .. } => {
                    s.concurrent_achieved = Some(*achieved)
                }
                Measurement::RoundtripLatency { seconds, .. } => {
                    s.roundtrip_seconds = Some(*seconds)
                }
            }
        }
        s.requirements.shrink_to_fit();
        s.cert_expiry.shrink_to_fit();
        s.cert_info.shrink_to_fit();
        s.tls_versions.shrink_to_fit();
        s
    }

    /// The `mailprobe_verdict` state set: (verdict label, 1 or 0) for every verdict.
    pub fn verdict_states(&self) -> Vec<(&'static str, f64)> {
        let Some(latest) = self.verdict else {
            return Vec::new();
        };
        Verdict::ALL
            .iter()
            .map(|v| (v.as_str(), if *v == latest { 1.0 } else { 0.0 }))
            .collect()
    }
}

/// Seconds from the oldest `proved_at` of the report's results to the run's start (0 when none).
fn proof_age(report: &Report) -> f64 {
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;
    let Ok(run) = OffsetDateTime::parse(&report.started_at, &Rfc3339) else {
        return 0.0;
    };
    report
        .requirements
        .iter()
        .filter_map(|r| r.evidence.get("proved_at")?.as_str())
        .filter_map(|at| OffsetDateTime::parse(at, &Rfc3339).ok())
        .map(|at| (run - at).as_seconds_f64().max(0.0))
        .fold(0.0, f64::max)
}

/// The longest certificate label value kept: a hostile certificate's subject must not make
/// every scrape (and Prometheus' index) carry kilobytes.
const MAX_CERT_LABEL: usize = 256;

fn clip(value: &str) -> String {
    match value.char_indices().nth(MAX_CERT_LABEL) {
        Some((at, _)) => format!("{}…", &value[..at]),
        None => value.to_string(),
    }
}

fn server_port(server: &str, port: u16) -> ServerPort {
    ServerPort {
        server: label(server),
        port: label(&port.to_string()),
    }
}

/// `host:port` or `[v6]:port` into labels; the port stays a string label.
pub fn split_authority(authority: &str) -> Option<ServerPort> {
    let (host, port) = authority.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some(ServerPort {
        server: label(host),
        port: label(port),
    })
}

/// The latest series of every mailbox. Writers replace a mailbox's set; readers (a Prometheus
/// scrape, an OTLP collection) take a consistent copy (of pointers: a scrape of 10,000
/// mailboxes does not copy their series).
#[derive(Debug, Default)]
pub struct SeriesStore {
    by_mailbox: RwLock<BTreeMap<Arc<str>, Arc<MailboxSeries>>>,
}

impl SeriesStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the series of `mailbox` with those of its latest report, finished now.
    pub fn update(&self, report: &Report) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.update_at(report, now);
    }

    /// [`SeriesStore::update`] with the run's end as Unix time. `mailprobe_compliant` keeps the
    /// last definitive verdict across `incomplete` runs: a non-compliant mailbox the probe can
    /// no longer judge must not resolve `mailprobe_compliant == 0`.
    pub fn update_at(&self, report: &Report, finished_unix: f64) {
        let mut series = MailboxSeries::from_report(report);
        series.last_check = Some(finished_unix);
        let mut map = self.by_mailbox.write().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(report.mailbox.as_str()) {
            Some(slot) => {
                if series.compliant.is_none() {
                    series.compliant = slot.compliant;
                }
                *slot = Arc::new(series);
            }
            None => {
                map.insert(Arc::from(report.mailbox.as_str()), Arc::new(series));
            }
        }
    }

    /// One mailbox's series.
    pub fn get(&self, mailbox: &str) -> Option<Arc<MailboxSeries>> {
        let map = self.by_mailbox.read().unwrap_or_else(|e| e.into_inner());
        map.get(mailbox).cloned()
    }

    /// Forgets a mailbox that is no longer configured, so its series disappear at once.
    pub fn remove(&self, mailbox: &str) {
        let mut map = self.by_mailbox.write().unwrap_or_else(|e| e.into_inner());
        map.remove(mailbox);
    }

    /// Every mailbox's series, in mailbox order.
    pub fn snapshot(&self) -> Vec<(Arc<str>, Arc<MailboxSeries>)> {
        let map = self.by_mailbox.read().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailprobe_core::RequirementResult;
    use mailprobe_core::report::Servers;

    pub(crate) fn report(results: Vec<RequirementResult>) -> Report {
        Report {
            schema: "mailprobe.report/v1".into(),
            mailbox: "sales".into(),
            profile: "hubspot".into(),
            verdict: Verdict::of(&results),
            started_at: "2026-11-26T19:00:00Z".into(),
            duration_ms: 412,
            requirements: results,
            servers: Servers {
                imap: Some("imap.example.com:993".into()),
                smtp: Some("[2001:db8::1]:587".into()),
            },
            measures: Vec::new(),
        }
    }

    #[test]
    fn series_follow_the_report() {
        let mut r = report(vec![
            RequirementResult::pass("imap.reachable", "ok"),
            RequirementResult::warn("imap.tls_versions", "weak", "raise it"),
            RequirementResult::skip("imap.folders", "imap.login", "not evaluated"),
            RequirementResult::fail("connections.concurrent", "refused", "raise the limit"),
        ]);
        r.measures = vec![
            Measurement::TlsVersion {
                server: "imap.example.com".into(),
                port: 993,
                version: "TLSv1.0".into(),
                accepted: true,
            },
            Measurement::CertificateExpiry {
                requirement: "smtp.certificate.expiry".into(),
                server: "2001:db8::1".into(),
                port: 587,
                not_after_unix: 1_798_761_600,
            },
            Measurement::ConcurrentConnections {
                requirement: "connections.concurrent".into(),
                achieved: 3.0,
            },
            Measurement::RoundtripLatency {
                requirement: "mail.roundtrip".into(),
                seconds: 1.5,
            },
            Measurement::CertificateInfo {
                requirement: "smtp.certificate.expiry".into(),
                server: "2001:db8::1".into(),
                port: 587,
                subject: format!("CN={}", "x".repeat(300)),
                issuer: "CN=CA".into(),
                serial: "01:02".into(),
                fingerprint_sha256: "ab".repeat(32),
            },
        ];
        let s = MailboxSeries::from_report(&r);
        let (at, id) = &s.cert_info[0];
        assert_eq!(at.port.as_ref(), "587");
        assert_eq!(id.issuer, "CN=CA");
        assert_eq!(id.fingerprint_sha256.len(), 64);
        // A hostile subject is cut, not carried whole into every scrape.
        assert_eq!(id.subject.chars().count(), MAX_CERT_LABEL + 1);
        assert_eq!(s.roundtrip_seconds, Some(1.5));
        assert_eq!(s.compliant, Some(0.0));
        assert_eq!(
            s.verdict_states(),
            vec![
                ("compliant", 0.0),
                ("non_compliant", 1.0),
                ("incomplete", 0.0)
            ]
        );
        assert_eq!(
            s.requirements,
            vec![
                (label("imap.reachable"), 1.0),
                (label("imap.tls_versions"), 0.5),
                (label("connections.concurrent"), 0.0),
            ]
        );
        let smtp = ServerPort {
            server: "2001:db8::1".into(),
            port: "587".into(),
        };
        assert_eq!(s.cert_expiry, vec![(smtp, 1_798_761_600.0)]);
        let imap = ServerPort {
            server: "imap.example.com".into(),
            port: "993".into(),
        };
        assert_eq!(s.tls_versions, vec![(imap, "TLSv1.0".into(), 1.0)]);
        assert_eq!(s.concurrent_achieved, Some(3.0));
    }

    #[test]
    fn an_incomplete_run_has_no_compliant_sample_but_a_verdict() {
        let s = MailboxSeries::from_report(&report(vec![
            RequirementResult::pass("imap.reachable", "ok"),
            RequirementResult::not_verified("imap.login", "plugin panicked"),
        ]));
        assert_eq!(s.compliant, None);
        assert_eq!(
            s.verdict_states(),
            vec![
                ("compliant", 0.0),
                ("non_compliant", 0.0),
                ("incomplete", 1.0)
            ]
        );
    }

    #[test]
    fn compliant_keeps_the_last_definitive_verdict_through_incomplete_runs() {
        let store = SeriesStore::new();
        let incomplete = || {
            report(vec![RequirementResult::not_verified(
                "imap.login",
                "deadline",
            )])
        };
        // Absent before the first definitive verdict.
        store.update_at(&incomplete(), 10.0);
        assert_eq!(store.snapshot()[0].1.compliant, None);
        store.update_at(
            &report(vec![RequirementResult::fail(
                "imap.login",
                "refused",
                "fix",
            )]),
            20.0,
        );
        assert_eq!(store.snapshot()[0].1.compliant, Some(0.0));
        // An incomplete run neither sets nor clears it, but moves the verdict and the time.
        store.update_at(&incomplete(), 30.0);
        let s = store.get("sales").unwrap();
        assert_eq!(s.compliant, Some(0.0));
        assert_eq!(s.verdict, Some(Verdict::Incomplete));
        assert_eq!(s.last_check, Some(30.0));
        store.update_at(
            &report(vec![RequirementResult::pass("imap.login", "ok")]),
            40.0,
        );
        assert_eq!(store.get("sales").unwrap().compliant, Some(1.0));
        // A mailbox removed and added again starts afresh.
        store.remove("sales");
        store.update_at(&incomplete(), 50.0);
        assert_eq!(store.get("sales").unwrap().compliant, None);
    }

    #[test]
    fn a_requirement_now_skipped_loses_its_series() {
        let store = SeriesStore::new();
        store.update(&report(vec![RequirementResult::pass("imap.folders", "ok")]));
        assert_eq!(store.snapshot()[0].1.requirements.len(), 1);
        store.update(&report(vec![RequirementResult::skip(
            "imap.folders",
            "imap.login",
            "not evaluated",
        )]));
        assert!(store.snapshot()[0].1.requirements.is_empty());
    }
}

#[cfg(test)]
mod label_tests {
    use super::*;

    #[test]
    fn label_values_are_shared() {
        let a = label("imap.tls_versions");
        let b = label(&String::from("imap.tls_versions"));
        assert!(Arc::ptr_eq(&a, &b));
    }
}
