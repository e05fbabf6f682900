//! The OTLP instruments: named by the OpenTelemetry semantic conventions (dotted, the unit in
//! the instrument, no `_total`), each paired with the `/metrics` name it stands for.
//!
//! The pairing is the contract between the two exporters: the standard OTLP-to-Prometheus
//! translation (the OpenTelemetry Collector's Prometheus translator: every run of characters
//! outside `[a-zA-Z0-9]` becomes one `_`, the unit's Prometheus word is appended unless the name
//! already ends with it (`s` → `_seconds`; an annotation such as `{check}` adds nothing), `_total`
//! for a monotonic sum, and `_ratio` for a gauge of unit `1`) turns [`Instrument::name`] into
//! exactly [`Instrument::prometheus`]. No instrument here has unit `1`, so none gets `_ratio`.
//! A Datadog Agent keeps the OTLP name as it is (see docs/datadog.md).

use super::*;

// `mailprobe_last_check_timestamp_seconds`, `mailprobe_cert_info` and `mailprobe_build_info` are
// spelled out below: their `/metrics` side is built with the Prometheus exporter.

/// What kind of OTLP metric an instrument produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A gauge (observable): the latest value.
    Gauge,
    /// A cumulative monotonic sum (an observable counter): Prometheus adds `_total`.
    Counter,
    /// An explicit-bucket histogram.
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Histogram => "histogram",
        }
    }
}

/// One OTLP instrument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Instrument {
    /// The OTLP name (semantic conventions: lower case, dotted namespaces).
    pub name: &'static str,
    /// UCUM unit: `s`, or an annotation in braces for a count of things.
    pub unit: &'static str,
    pub kind: Kind,
    /// The `/metrics` name the standard translation gives it.
    pub prometheus: &'static str,
}

const fn i(
    name: &'static str,
    unit: &'static str,
    kind: Kind,
    prometheus: &'static str,
) -> Instrument {
    Instrument {
        name,
        unit,
        kind,
        prometheus,
    }
}

/// Every OTLP instrument of mailprobe, in the order of docs/metrics.md.
pub const ALL: &[Instrument] = &[
    i("mailprobe.compliant", "{mailbox}", Kind::Gauge, COMPLIANT),
    i("mailprobe.verdict", "{mailbox}", Kind::Gauge, VERDICT),
    i(
        "mailprobe.last_check.timestamp",
        "s",
        Kind::Gauge,
        "mailprobe_last_check_timestamp_seconds",
    ),
    i("mailprobe.proof.age", "s", Kind::Gauge, PROOF_AGE),
    i(
        "mailprobe.requirement.status",
        "{requirement}",
        Kind::Gauge,
        REQUIREMENT_STATUS,
    ),
    i(
        "mailprobe.cert.expiry.timestamp",
        "s",
        Kind::Gauge,
        CERT_EXPIRY,
    ),
    i(
        "mailprobe.cert.info",
        "{certificate}",
        Kind::Gauge,
        "mailprobe_cert_info",
    ),
    i(
        "mailprobe.tls.version.accepted",
        "{version}",
        Kind::Gauge,
        TLS_VERSION_ACCEPTED,
    ),
    i(
        "mailprobe.concurrent_connections.achieved",
        "{connection}",
        Kind::Gauge,
        CONCURRENT_ACHIEVED,
    ),
    i("mailprobe.roundtrip", "s", Kind::Gauge, ROUNDTRIP_SECONDS),
    i(
        "mailprobe.check.duration",
        "s",
        Kind::Histogram,
        CHECK_DURATION,
    ),
    i("mailprobe.schedule.lag", "s", Kind::Histogram, SCHEDULE_LAG),
    i(
        "mailprobe.build.info",
        "{build}",
        Kind::Gauge,
        "mailprobe_build_info",
    ),
    i("mailprobe.checks", "{check}", Kind::Counter, CHECKS),
    i(
        "mailprobe.probe.errors",
        "{run}",
        Kind::Counter,
        PROBE_ERRORS,
    ),
    i(
        "mailprobe.telemetry.dropped",
        "{item}",
        Kind::Counter,
        TELEMETRY_DROPPED,
    ),
    i(
        "mailprobe.telemetry.export.failures",
        "{export}",
        Kind::Counter,
        TELEMETRY_EXPORT_FAILURES,
    ),
    i(
        "mailprobe.alert.notifications.sent",
        "{notification}",
        Kind::Counter,
        ALERT_NOTIFICATIONS_SENT,
    ),
    i(
        "mailprobe.alert.delivery.failures",
        "{attempt}",
        Kind::Counter,
        ALERT_DELIVERY_FAILURES,
    ),
    i(
        "mailprobe.alert.notifications.dropped",
        "{notification}",
        Kind::Counter,
        ALERT_NOTIFICATIONS_DROPPED,
    ),
    i(
        "mailprobe.config.reloads",
        "{reload}",
        Kind::Counter,
        CONFIG_RELOADS,
    ),
    i(
        "mailprobe.plugin.overruns",
        "{call}",
        Kind::Counter,
        PLUGIN_OVERRUNS,
    ),
    i(
        "mailprobe.plugin.disabled",
        "{plugin}",
        Kind::Gauge,
        PLUGIN_DISABLED,
    ),
];

/// The OTLP instrument that stands for a `/metrics` name.
pub fn of(prometheus: &str) -> Option<&'static Instrument> {
    ALL.iter().find(|i| i.prometheus == prometheus)
}

/// The OTLP attribute key of a `/metrics` label: the span attribute keys where a span has the
/// same fact (`server.address`, `server.port`, `tls.protocol.version`, `mailprobe.mailbox`,
/// `mailprobe.verdict`, `mailprobe.plugin`, `error.type`), else a key in the `mailprobe.`
/// namespace.
pub fn attribute_key(label: &str) -> &'static str {
    match label {
        "mailbox" => "mailprobe.mailbox",
        "verdict" => "mailprobe.verdict",
        "requirement" => "mailprobe.requirement",
        "server" => "server.address",
        "port" => "server.port",
        "version" => "tls.protocol.version",
        "plugin" => "mailprobe.plugin",
        "kind" => "error.type",
        "signal" => "mailprobe.telemetry.signal",
        "receiver" => "mailprobe.alert.receiver",
        "result" => "mailprobe.config.reload.result",
        "subject" => "tls.server.subject",
        "issuer" => "tls.server.issuer",
        "serial" => "mailprobe.cert.serial",
        "fingerprint_sha256" => "tls.server.hash.sha256",
        "revision" => "mailprobe.build.revision",
        _ => "mailprobe.label",
    }
}

/// The OpenTelemetry Collector's Prometheus translator (`BuildCompliantName` with metric
/// suffixes on, as the Collector's `prometheus` and `prometheusremotewrite` exporters and
/// Prometheus' own OTLP receiver run it), step by step:
/// 1. the name is split into tokens at every character outside `[a-zA-Z0-9]`;
/// 2. the unit (before a `/`) adds its Prometheus word (`s` → `seconds`, `By` → `bytes`,
///    ...) unless a token already is that word; a unit holding `{` or `}` adds nothing;
///    the part after `/` adds `per_<word>`;
/// 3. a monotonic sum drops any `total` token and ends with `total`;
/// 4. a gauge of unit `1` drops any `ratio` token and ends with `ratio`;
/// 5. the tokens are joined with `_`.
pub fn prometheus_name(name: &str, unit: &str, kind: Kind) -> String {
    fn word(unit: &str) -> &str {
        match unit {
            "d" => "days",
            "h" => "hours",
            "min" => "minutes",
            "s" => "seconds",
            "ms" => "milliseconds",
            "us" => "microseconds",
            "ns" => "nanoseconds",
            "By" => "bytes",
            "KiBy" => "kibibytes",
            "MiBy" => "mebibytes",
            "%" => "percent",
            "1" => "",
            other => other,
        }
    }
    fn per_word(unit: &str) -> &str {
        match unit {
            "s" => "second",
            "m" => "minute",
            "h" => "hour",
            "d" => "day",
            other => other,
        }
    }
    let mut tokens: Vec<String> = name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    let (main, per) = match unit.split_once('/') {
        Some((m, p)) => (m.trim(), Some(p.trim())),
        None => (unit.trim(), None),
    };
    if !main.is_empty() && !main.contains(['{', '}']) {
        let w = word(main);
        if !w.is_empty() && !tokens.iter().any(|t| t == w) {
            tokens.push(w.to_string());
        }
    }
    if let Some(p) = per.filter(|p| !p.is_empty() && !p.contains(['{', '}'])) {
        let w = format!("per_{}", per_word(p));
        if !tokens.contains(&w) {
            tokens.push(w);
        }
    }
    if kind == Kind::Counter {
        tokens.retain(|t| t != "total");
        tokens.push("total".into());
    }
    if kind == Kind::Gauge && unit == "1" {
        tokens.retain(|t| t != "ratio");
        tokens.push("ratio".into());
    }
    tokens.join("_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_translation_gives_the_prometheus_names() {
        for i in ALL {
            assert_eq!(
                prometheus_name(i.name, i.unit, i.kind),
                i.prometheus,
                "{i:?}"
            );
        }
    }

    /// docs/metrics.md lists every instrument in its "Over OTLP" table.
    #[test]
    fn the_docs_list_every_instrument() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md");
        let docs = std::fs::read_to_string(path).expect("docs/metrics.md");
        for i in ALL {
            let row = format!(
                "| `{}` | `{}` | {} | `{}`",
                i.name,
                i.unit,
                i.kind.as_str(),
                i.prometheus
            );
            assert!(docs.contains(&row), "docs/metrics.md lacks the row {row} |");
        }
    }

    #[test]
    fn the_translation_rules_as_documented() {
        let t = prometheus_name;
        assert_eq!(
            t("http.server.request.duration", "s", Kind::Histogram),
            "http_server_request_duration_seconds"
        );
        assert_eq!(
            t("system.cpu.utilization", "1", Kind::Gauge),
            "system_cpu_utilization_ratio"
        );
        assert_eq!(
            t("system.cpu.utilization", "1", Kind::Counter),
            "system_cpu_utilization_total"
        );
        assert_eq!(
            t("http.requests", "{request}", Kind::Counter),
            "http_requests_total"
        );
        assert_eq!(t("queue.seconds", "s", Kind::Gauge), "queue_seconds");
        assert_eq!(t("io", "By/s", Kind::Gauge), "io_bytes_per_second");
    }

    #[test]
    fn every_instrument_is_named_once_and_by_the_conventions() {
        let mut seen = std::collections::HashSet::new();
        for i in ALL {
            assert!(seen.insert(i.name), "{} twice", i.name);
            assert!(i.name.starts_with("mailprobe."), "{}", i.name);
            assert!(!i.name.ends_with("total"), "{}", i.name);
            assert!(
                i.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_'),
                "{}",
                i.name
            );
            assert_ne!(i.unit, "1", "{}: unit 1 on a gauge adds _ratio", i.name);
            assert!(!i.unit.is_empty(), "{} has no unit", i.name);
        }
    }

    #[test]
    fn the_labels_of_the_store_and_counters_have_keys() {
        for l in [
            "mailbox",
            "verdict",
            "requirement",
            "server",
            "port",
            "version",
            "plugin",
            "kind",
            "signal",
            "receiver",
            "result",
        ] {
            assert_ne!(attribute_key(l), "mailprobe.label", "{l}");
        }
    }
}
