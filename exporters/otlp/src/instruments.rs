//! The OTLP exporter's metric instruments, apart from the pipelines that export them: the gauges
//! read from the shared store, the probe's counters, and the two histograms the run sink records
//! into. Each gauge family is one small function from a mailbox's series to its samples, so a
//! family is read (and changed) in one place, next to its name and description.
//!
//! Observable instruments report only what their callback saw at export time, so a series the
//! latest run no longer has disappears here too, as it does on `/metrics`.
//!
//! Names, units and kinds come from `names::otlp` (the semantic conventions; the standard
//! OTLP-to-Prometheus translation gives the `/metrics` names back), and the attributes use the
//! span attribute keys (`mailprobe.mailbox`, `server.address`, `server.port`,
//! `tls.protocol.version`, ...), so spans and metrics join on one key.

use std::sync::Arc;

use mailprobe_core::TlsVersion;
use mailprobe_telemetry::names::otlp::{self, Instrument, attribute_key};
use mailprobe_telemetry::series::ServerPort;
use mailprobe_telemetry::{
    DURATION_BUCKETS, LAG_BUCKETS, MailboxSeries, ProbeStats, SeriesStore, names,
};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, Meter, ObservableCounter, ObservableGauge};

/// One mailbox's samples of a gauge family: each value with its attributes.
type Samples = Vec<(f64, Vec<KeyValue>)>;

/// A gauge family read from the store: its name, description, and how one mailbox's series
/// turns into samples.
struct StoreGauge {
    name: &'static str,
    description: &'static str,
    samples: fn(&str, &MailboxSeries) -> Samples,
}

/// The store's gauge families, in the order they are registered.
const STORE_GAUGES: [StoreGauge; 10] = [
    StoreGauge {
        name: names::COMPLIANT,
        description: "The last definitive verdict: 1 compliant, 0 non-compliant; an incomplete run neither sets nor clears it (the store decides).",
        samples: compliant,
    },
    StoreGauge {
        name: names::VERDICT,
        description: "The latest verdict as a state set: 1 for it, 0 for the other two.",
        samples: verdict,
    },
    StoreGauge {
        name: names::REQUIREMENT_STATUS,
        description: "Status of one requirement: 1 pass, 0.5 warn, 0 fail; absent when skipped.",
        samples: requirement_status,
    },
    StoreGauge {
        name: names::PROOF_AGE,
        description: "Age of the oldest earlier proof the latest verdict rests on (a cadence per requirement group), at that run; 0 when it proved everything.",
        samples: proof_age,
    },
    StoreGauge {
        name: names::CERT_EXPIRY,
        description: "notAfter of the server's leaf certificate, as a Unix timestamp.",
        samples: cert_expiry,
    },
    StoreGauge {
        name: names::TLS_VERSION_ACCEPTED,
        description: "1 when the server accepts the TLS/SSL version, else 0.",
        samples: tls_version_accepted,
    },
    StoreGauge {
        name: names::CONCURRENT_ACHIEVED,
        description: "Authenticated sessions the probe held at once (IMAP and SMTP together).",
        samples: concurrent_achieved,
    },
    StoreGauge {
        name: names::LAST_CHECK_TIMESTAMP,
        description: "Unix time when the mailbox's latest check finished.",
        samples: last_check,
    },
    StoreGauge {
        name: names::CERT_INFO,
        description: "1 per leaf certificate seen, with its subject, issuer, serial and SHA-256 fingerprint.",
        samples: cert_info,
    },
    StoreGauge {
        name: names::ROUNDTRIP_SECONDS,
        description: "Seconds the mail.roundtrip test message took from submission to INBOX (when the check ran and the message arrived).",
        samples: roundtrip_seconds,
    },
];

/// The OTLP instrument of a `/metrics` name. Every name the exporters use is in the table (a
/// unit test says so), so the fallback only keeps a forgotten one visible.
pub(crate) fn instrument(prometheus: &'static str) -> Instrument {
    otlp::of(prometheus).copied().unwrap_or(Instrument {
        name: prometheus,
        unit: "",
        kind: otlp::Kind::Gauge,
        prometheus,
    })
}

pub(crate) fn mb(m: &str) -> KeyValue {
    KeyValue::new(attribute_key("mailbox"), m.to_string())
}

/// `server.port` is an integer in the semantic conventions (and on the spans).
fn port(p: &str) -> KeyValue {
    match p.parse::<i64>() {
        Ok(n) => KeyValue::new(attribute_key("port"), n),
        Err(_) => KeyValue::new(attribute_key("port"), p.to_string()),
    }
}

/// The attributes of a per-server series: the mailbox, and the server and port it was seen on.
fn sp(m: &str, p: &ServerPort) -> Vec<KeyValue> {
    vec![
        mb(m),
        KeyValue::new(attribute_key("server"), p.server.to_string()),
        port(&p.port),
    ]
}

/// `tls.protocol.name` and `tls.protocol.version` as on the `tls_handshake` spans (`tls`,
/// `1.2`; `ssl`, `3.0`), from the `/metrics` label (`TLSv1.2`, `SSLv3`).
fn tls_protocol(version: &str) -> [KeyValue; 2] {
    match version.parse::<TlsVersion>() {
        Ok(v) => [
            KeyValue::new(
                "tls.protocol.name",
                if v == TlsVersion::Ssl3 { "ssl" } else { "tls" },
            ),
            KeyValue::new(attribute_key("version"), v.semconv()),
        ],
        Err(_) => [
            KeyValue::new("tls.protocol.name", "tls"),
            KeyValue::new(attribute_key("version"), version.to_string()),
        ],
    }
}

/// A counter's or gauge's `/metrics` labels as OTLP attributes.
fn attributes(labels: &[(&'static str, String)]) -> Vec<KeyValue> {
    labels
        .iter()
        .map(|(k, v)| match *k {
            "port" => port(v),
            _ => KeyValue::new(attribute_key(k), v.clone()),
        })
        .collect()
}

fn compliant(m: &str, s: &MailboxSeries) -> Samples {
    s.compliant.map(|v| (v, vec![mb(m)])).into_iter().collect()
}

fn verdict(m: &str, s: &MailboxSeries) -> Samples {
    s.verdict_states()
        .into_iter()
        .map(|(v, x)| (x, vec![mb(m), KeyValue::new(attribute_key("verdict"), v)]))
        .collect()
}

fn requirement_status(m: &str, s: &MailboxSeries) -> Samples {
    s.requirements
        .iter()
        .map(|(r, v)| {
            (
                *v,
                vec![
                    mb(m),
                    KeyValue::new(attribute_key("requirement"), r.to_string()),
                ],
            )
        })
        .collect()
}

fn cert_expiry(m: &str, s: &MailboxSeries) -> Samples {
    s.cert_expiry.iter().map(|(p, v)| (*v, sp(m, p))).collect()
}

fn tls_version_accepted(m: &str, s: &MailboxSeries) -> Samples {
    s.tls_versions
        .iter()
        .map(|(p, ver, v)| {
            let mut attrs = sp(m, p);
            attrs.extend(tls_protocol(ver));
            (*v, attrs)
        })
        .collect()
}

fn concurrent_achieved(m: &str, s: &MailboxSeries) -> Samples {
    s.concurrent_achieved
        .map(|v| (v, vec![mb(m)]))
        .into_iter()
        .collect()
}

fn proof_age(m: &str, s: &MailboxSeries) -> Samples {
    s.proof_age.map(|v| (v, vec![mb(m)])).into_iter().collect()
}

fn last_check(m: &str, s: &MailboxSeries) -> Samples {
    s.last_check.map(|v| (v, vec![mb(m)])).into_iter().collect()
}

fn cert_info(m: &str, s: &MailboxSeries) -> Samples {
    s.cert_info
        .iter()
        .map(|(p, c)| {
            let mut attrs = sp(m, p);
            attrs.extend([
                KeyValue::new(attribute_key("subject"), c.subject.clone()),
                KeyValue::new(attribute_key("issuer"), c.issuer.clone()),
                KeyValue::new(attribute_key("serial"), c.serial.clone()),
                KeyValue::new(
                    attribute_key("fingerprint_sha256"),
                    c.fingerprint_sha256.clone(),
                ),
            ]);
            (1.0, attrs)
        })
        .collect()
}

fn roundtrip_seconds(m: &str, s: &MailboxSeries) -> Samples {
    s.roundtrip_seconds
        .map(|v| (v, vec![mb(m)]))
        .into_iter()
        .collect()
}

/// The gauges read from the store at export time, one per family of [`STORE_GAUGES`].
pub(crate) fn store_gauges(meter: &Meter, store: &Arc<SeriesStore>) -> Vec<ObservableGauge<f64>> {
    STORE_GAUGES
        .iter()
        .map(|family| {
            let s = store.clone();
            let samples = family.samples;
            let i = instrument(family.name);
            meter
                .f64_observable_gauge(i.name)
                .with_description(family.description)
                .with_unit(i.unit)
                .with_callback(move |o| {
                    for (m, series) in s.snapshot() {
                        for (v, attrs) in samples(&m, &series) {
                            o.observe(v, &attrs);
                        }
                    }
                })
                .build()
        })
        .collect()
}

/// The probe's own counters, one instrument per counter name, read from `stats` at export time.
pub(crate) fn counters(meter: &Meter, stats: &Arc<ProbeStats>) -> Vec<ObservableCounter<u64>> {
    let mut counter_names: Vec<&'static str> = stats.snapshot().iter().map(|c| c.name).collect();
    // Per-mailbox and per-plugin counters may have no series yet when the instruments are built.
    counter_names.push(names::PROBE_ERRORS);
    counter_names.push(names::PLUGIN_OVERRUNS);
    counter_names.sort_unstable();
    counter_names.dedup();
    counter_names
        .into_iter()
        .map(|name| {
            let st = stats.clone();
            let i = instrument(name);
            meter
                .u64_observable_counter(i.name)
                .with_description(mailprobe_telemetry::stats::help(name))
                .with_unit(i.unit)
                .with_callback(move |o| {
                    for c in st.snapshot().into_iter().filter(|c| c.name == name) {
                        o.observe(c.value, &attributes(&c.labels));
                    }
                })
                .build()
        })
        .collect()
}

/// The probe's own gauges (plugins disabled), one instrument per name, read from `stats` at
/// export time.
pub(crate) fn probe_gauges(meter: &Meter, stats: &Arc<ProbeStats>) -> Vec<ObservableGauge<f64>> {
    names::PROBE_GAUGES
        .iter()
        .map(|name| {
            let st = stats.clone();
            let i = instrument(name);
            meter
                .f64_observable_gauge(i.name)
                .with_description(mailprobe_telemetry::stats::help(name))
                .with_unit(i.unit)
                .with_callback(move |o| {
                    for g in st.gauge_snapshot().into_iter().filter(|g| g.name == *name) {
                        o.observe(g.value, &attributes(&g.labels));
                    }
                })
                .build()
        })
        .collect()
}

/// The histograms the run sink records into: a check's duration, and the schedule lag.
pub(crate) fn histograms(meter: &Meter) -> (Histogram<f64>, Histogram<f64>) {
    let d = instrument(names::CHECK_DURATION);
    let l = instrument(names::SCHEDULE_LAG);
    let durations = meter
        .f64_histogram(d.name)
        .with_description("Wall time of one mailbox check, in seconds.")
        .with_unit(d.unit)
        .with_boundaries(DURATION_BUCKETS.to_vec())
        .build();
    let lag = meter
        .f64_histogram(l.name)
        .with_description(
            "Time from when a mailbox's check was due to when it started, in seconds.",
        )
        .with_unit(l.unit)
        .with_boundaries(LAG_BUCKETS.to_vec())
        .build();
    (durations, lag)
}

/// `mailprobe.build.info`: 1, with the version and revision the binary was built from.
pub(crate) fn build_info(meter: &Meter, version: &str, revision: &str) -> ObservableGauge<f64> {
    let bi = instrument(names::BUILD_INFO);
    let attrs = [
        KeyValue::new("service.version", version.to_string()),
        KeyValue::new(attribute_key("revision"), revision.to_string()),
    ];
    meter
        .f64_observable_gauge(bi.name)
        .with_description("1, with the version and revision mailprobe was built from.")
        .with_unit(bi.unit)
        .with_callback(move |o| o.observe(1.0, &attrs))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_the_exporter_uses_has_an_instrument() {
        let mut used: Vec<&str> = STORE_GAUGES.iter().map(|g| g.name).collect();
        used.extend(names::PROBE_GAUGES);
        used.extend([
            names::CHECK_DURATION,
            names::SCHEDULE_LAG,
            names::PROBE_ERRORS,
            names::PLUGIN_OVERRUNS,
            "mailprobe_last_check_timestamp_seconds",
            "mailprobe_build_info",
        ]);
        used.extend(ProbeStats::new().snapshot().iter().map(|c| c.name));
        for name in used {
            assert!(otlp::of(name).is_some(), "{name} has no OTLP instrument");
        }
    }

    /// The OpenTelemetry SDK's own Prometheus exporter (crate `opentelemetry-prometheus`, a
    /// second implementation of the specification's naming: the unit's suffix, `_total` on
    /// counters) turns the instruments this exporter builds into exactly the `/metrics` names.
    #[test]
    fn the_sdks_prometheus_exporter_names_the_instruments_as_metrics_does() {
        use mailprobe_core::RequirementResult;
        use mailprobe_core::report::{Report, Servers};
        use mailprobe_core::requirement::{Measurement, Verdict};
        use opentelemetry::metrics::MeterProvider;

        let registry = prometheus::Registry::new();
        let reader = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_target_info()
            .build()
            .expect("prometheus exporter");
        let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
            .with_reader(reader)
            .build();
        let meter = provider.meter("mailprobe");

        let results = vec![
            RequirementResult::pass("imap.tls_versions", "ok"),
            RequirementResult::fail("imap.certificate.expiry", "expired", "renew it")
                .with("subject", "CN=imap.example.com")
                .with("issuer", "CN=Example CA")
                .with("serial", "01:02")
                .with("fingerprint_sha256", "ab".repeat(32)),
        ];
        let report = Report {
            schema: "mailprobe.report/v1".into(),
            mailbox: "lab".into(),
            profile: "hubspot".into(),
            verdict: Verdict::of(&results),
            started_at: "2026-11-26T19:00:00Z".into(),
            duration_ms: 412,
            requirements: results,
            servers: Servers {
                imap: Some("imap.example.com:993".into()),
                smtp: None,
            },
            measures: vec![
                Measurement::TlsVersion {
                    server: "imap.example.com".into(),
                    port: 993,
                    version: "TLSv1.2".into(),
                    accepted: true,
                },
                Measurement::CertificateExpiry {
                    requirement: "imap.certificate.expiry".into(),
                    server: "imap.example.com".into(),
                    port: 993,
                    not_after_unix: 1_798_761_600,
                },
                Measurement::CertificateInfo {
                    requirement: "imap.certificate.expiry".into(),
                    server: "imap.example.com".into(),
                    port: 993,
                    subject: "CN=imap.example.com".into(),
                    issuer: "CN=Example CA".into(),
                    serial: "01:02".into(),
                    fingerprint_sha256: "ab".repeat(32),
                },
                Measurement::ConcurrentConnections {
                    requirement: "connections.concurrent".into(),
                    achieved: 2.0,
                },
                Measurement::RoundtripLatency {
                    requirement: "mail.roundtrip".into(),
                    seconds: 1.5,
                },
            ],
        };
        let store = Arc::new(SeriesStore::new());
        store.update(&report);
        let stats = Arc::new(ProbeStats::new());
        stats.register_mailbox("lab");
        stats.register_plugin("pop3");
        let _gauges = store_gauges(&meter, &store);
        let _probe = probe_gauges(&meter, &stats);
        let _build = build_info(&meter, "0.1.0", "abc123");
        let _counters = counters(&meter, &stats);
        let (durations, lag) = histograms(&meter);
        durations.record(0.4, &[mb("lab")]);
        lag.record(0.01, &[]);

        let served: std::collections::BTreeSet<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        for i in otlp::ALL {
            assert!(
                served.contains(i.prometheus),
                "{} ({}, {:?}) became none of {served:?}",
                i.name,
                i.unit,
                i.kind
            );
        }
        for name in &served {
            assert!(
                otlp::ALL.iter().any(|i| i.prometheus == name),
                "{name} is no /metrics name"
            );
        }
    }

    #[test]
    fn a_certificate_identity_carries_span_style_keys() {
        use mailprobe_telemetry::series::CertIdentity;
        let series = MailboxSeries {
            cert_info: vec![(
                ServerPort {
                    server: "smtp.example.com".into(),
                    port: "587".into(),
                },
                CertIdentity {
                    subject: "CN=smtp.example.com".into(),
                    issuer: "CN=CA".into(),
                    serial: "0a".into(),
                    fingerprint_sha256: "00".into(),
                },
            )],
            ..MailboxSeries::default()
        };
        let got = cert_info("lab", &series);
        assert_eq!(got.len(), 1);
        let keys: Vec<&str> = got[0].1.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "mailprobe.mailbox",
                "server.address",
                "server.port",
                "tls.server.subject",
                "tls.server.issuer",
                "mailprobe.cert.serial",
                "tls.server.hash.sha256"
            ]
        );
    }

    #[test]
    fn tls_versions_become_the_span_attributes() {
        let [n, v] = tls_protocol("TLSv1.2");
        assert_eq!(
            (n.value.as_str(), v.value.as_str()),
            ("tls".into(), "1.2".into())
        );
        assert_eq!(v.key.as_str(), "tls.protocol.version");
        let [n, v] = tls_protocol("SSLv3");
        assert_eq!(
            (n.value.as_str(), v.value.as_str()),
            ("ssl".into(), "3.0".into())
        );
    }

    #[test]
    fn labels_become_span_keys_and_the_port_an_integer() {
        let a = attributes(&[
            ("mailbox", "sales".into()),
            ("kind", "panic".into()),
            ("port", "993".into()),
        ]);
        assert_eq!(a[0], KeyValue::new("mailprobe.mailbox", "sales"));
        assert_eq!(a[1], KeyValue::new("error.type", "panic"));
        assert_eq!(a[2], KeyValue::new("server.port", 993_i64));
    }
}
