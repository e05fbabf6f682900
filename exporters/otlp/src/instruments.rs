//! The OTLP exporter's metric instruments, apart from the pipelines that export them: the gauges
//! read from the shared store, the probe's counters, and the two histograms the run sink records
//! into. Each gauge family is one small function from a mailbox's series to its samples, so a
//! family is read (and changed) in one place, next to its name and description.
//!
//! Observable instruments report only what their callback saw at export time, so a series the
//! latest run no longer has disappears here too, as it does on `/metrics`.

use std::sync::Arc;

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
const STORE_GAUGES: [StoreGauge; 7] = [
    StoreGauge {
        name: names::COMPLIANT,
        description: "1 when the mailbox meets every requirement of its profile, else 0; no sample while the latest verdict is incomplete.",
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
        name: names::ROUNDTRIP_SECONDS,
        description: "Seconds the mail.roundtrip test message took from submission to INBOX (when the check ran and the message arrived).",
        samples: roundtrip_seconds,
    },
];

fn mb(m: &str) -> KeyValue {
    KeyValue::new("mailbox", m.to_string())
}

/// The attributes of a per-server series: the mailbox, and the server and port it was seen on.
fn sp(m: &str, p: &ServerPort) -> Vec<KeyValue> {
    vec![
        mb(m),
        KeyValue::new("server", p.server.to_string()),
        KeyValue::new("port", p.port.to_string()),
    ]
}

fn compliant(m: &str, s: &MailboxSeries) -> Samples {
    s.compliant.map(|v| (v, vec![mb(m)])).into_iter().collect()
}

fn verdict(m: &str, s: &MailboxSeries) -> Samples {
    s.verdict_states()
        .into_iter()
        .map(|(v, x)| (x, vec![mb(m), KeyValue::new("verdict", v)]))
        .collect()
}

fn requirement_status(m: &str, s: &MailboxSeries) -> Samples {
    s.requirements
        .iter()
        .map(|(r, v)| (*v, vec![mb(m), KeyValue::new("requirement", r.to_string())]))
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
            attrs.push(KeyValue::new("version", ver.to_string()));
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
            meter
                .f64_observable_gauge(family.name)
                .with_description(family.description)
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
            meter
                .u64_observable_counter(name)
                .with_description(mailprobe_telemetry::stats::help(name))
                .with_callback(move |o| {
                    for c in st.snapshot().into_iter().filter(|c| c.name == name) {
                        let attrs: Vec<KeyValue> = c
                            .labels
                            .iter()
                            .map(|(k, v)| KeyValue::new(*k, v.clone()))
                            .collect();
                        o.observe(c.value, &attrs);
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
            meter
                .f64_observable_gauge(*name)
                .with_description(mailprobe_telemetry::stats::help(name))
                .with_callback(move |o| {
                    for g in st.gauge_snapshot().into_iter().filter(|g| g.name == *name) {
                        let attrs: Vec<KeyValue> = g
                            .labels
                            .iter()
                            .map(|(k, v)| KeyValue::new(*k, v.clone()))
                            .collect();
                        o.observe(g.value, &attrs);
                    }
                })
                .build()
        })
        .collect()
}

/// The histograms the run sink records into: a check's duration, and the schedule lag.
pub(crate) fn histograms(meter: &Meter) -> (Histogram<f64>, Histogram<f64>) {
    let durations = meter
        .f64_histogram(names::CHECK_DURATION)
        .with_description("Wall time of one mailbox check, in seconds.")
        .with_unit("s")
        .with_boundaries(DURATION_BUCKETS.to_vec())
        .build();
    let lag = meter
        .f64_histogram(names::SCHEDULE_LAG)
        .with_description(
            "Time from when a mailbox's check was due to when it started, in seconds.",
        )
        .with_unit("s")
        .with_boundaries(LAG_BUCKETS.to_vec())
        .build();
    (durations, lag)
}
