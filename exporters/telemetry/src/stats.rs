//! The probe's own counters (checks run, telemetry dropped, alert deliveries that failed,
//! plugin overruns) and gauges (plugins disabled).
//!
//! Exporters add to them; the Prometheus endpoint and the OTLP metric callbacks read them.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::names;

/// One counter series.
#[derive(Clone, Debug, PartialEq)]
pub struct CounterSample {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: u64,
}

/// One gauge series.
#[derive(Clone, Debug, PartialEq)]
pub struct GaugeSample {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

type Key = (&'static str, Vec<(&'static str, String)>);

/// Monotonic counters with labels. Every known series starts at 0, so that `rate()` and
/// "did it increase" work from the first scrape. And a few gauges of the probe's own state.
#[derive(Debug)]
pub struct ProbeStats {
    counters: Mutex<BTreeMap<Key, u64>>,
    gauges: Mutex<BTreeMap<Key, f64>>,
}

fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
    (
        name,
        labels
            .iter()
            .map(|(k, v)| (*k, v.to_string()))
            .collect::<Vec<_>>(),
    )
}

/// Help texts of the counters.
pub fn help(name: &str) -> &'static str {
    match name {
        names::CHECKS => "Mailbox checks run, by verdict.",
        names::TELEMETRY_DROPPED => {
            "Telemetry items dropped (spans, metric streams, log records, runs) because an exporter's queue was full or its collector did not take them."
        }
        names::TELEMETRY_EXPORT_FAILURES => "OTLP export calls that failed, by signal.",
        names::ALERT_DELIVERY_FAILURES => {
            "Failed delivery attempts to an alert receiver (each retry counts)."
        }
        names::ALERT_NOTIFICATIONS_DROPPED => {
            "Alert notifications given up on (retries exhausted or queue full)."
        }
        names::ALERT_NOTIFICATIONS_SENT => "Alert notifications a receiver accepted.",
        names::CONFIG_RELOADS => {
            "Configuration reloads (SIGHUP, POST /-/reload, a changed file), by result."
        }
        names::PROBE_ERRORS => {
            "Mailbox runs the probe itself could not complete (kind: panic, or config for an unusable mailbox entry or secret); their requirements are not_verified."
        }
        names::PLUGIN_OVERRUNS => {
            "In-process calls of a dynamic plugin that overran the run's deadline; their threads were abandoned. After 3 the plugin is disabled until mailprobe restarts."
        }
        names::PLUGIN_DISABLED => {
            "1 when a dynamic plugin is disabled until mailprobe restarts (its calls overran the deadline 3 times; its requirements are not_verified), else 0."
        }
        _ => "mailprobe counter.",
    }
}

impl Default for ProbeStats {
    fn default() -> Self {
        let stats = ProbeStats {
            counters: Mutex::new(BTreeMap::new()),
            gauges: Mutex::new(BTreeMap::new()),
        };
        for verdict in ["compliant", "non_compliant", "incomplete"] {
            stats.add(names::CHECKS, &[("verdict", verdict)], 0);
        }
        for result in ["success", "failure"] {
            stats.add(names::CONFIG_RELOADS, &[("result", result)], 0);
        }
        for signal in ["traces", "metrics", "logs"] {
            stats.add(names::TELEMETRY_DROPPED, &[("signal", signal)], 0);
            stats.add(names::TELEMETRY_EXPORT_FAILURES, &[("signal", signal)], 0);
        }
        for receiver in ["alertmanager", "webhook"] {
            stats.add(names::ALERT_DELIVERY_FAILURES, &[("receiver", receiver)], 0);
            stats.add(
                names::ALERT_NOTIFICATIONS_DROPPED,
                &[("receiver", receiver)],
                0,
            );
            stats.add(
                names::ALERT_NOTIFICATIONS_SENT,
                &[("receiver", receiver)],
                0,
            );
        }
        stats
    }
}

impl ProbeStats {
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates the probe-error series of a mailbox at 0, so that `increase()` sees its first error.
    pub fn register_mailbox(&self, mailbox: &str) {
        for kind in names::PROBE_ERROR_KINDS {
            self.add(
                names::PROBE_ERRORS,
                &[("mailbox", mailbox), ("kind", kind)],
                0,
            );
        }
    }

    /// Creates the series of a dynamic plugin loaded in-process at 0: its overruns, and whether
    /// it is disabled.
    pub fn register_plugin(&self, plugin: &str) {
        self.add(names::PLUGIN_OVERRUNS, &[("plugin", plugin)], 0);
        self.set_gauge(names::PLUGIN_DISABLED, &[("plugin", plugin)], 0.0);
    }

    /// Drops every series of a mailbox that is no longer configured.
    pub fn forget_mailbox(&self, mailbox: &str) {
        let mut map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|(_, labels), _| !labels.iter().any(|(k, v)| *k == "mailbox" && v == mailbox));
    }

    /// Adds `n` to a counter series (creating it at `n`).
    pub fn add(&self, name: &'static str, labels: &[(&'static str, &str)], n: u64) {
        let mut map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(key(name, labels)).or_insert(0) += n;
    }

    /// Sets a gauge series (creating it).
    pub fn set_gauge(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        let mut map = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(key(name, labels), value);
    }

    /// Every gauge series, grouped by name.
    pub fn gauge_snapshot(&self) -> Vec<GaugeSample> {
        let map = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .map(|((name, labels), value)| GaugeSample {
                name,
                help: help(name),
                labels: labels.clone(),
                value: *value,
            })
            .collect()
    }

    /// The value of one series (0 when unknown).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .find(|((n, l), _)| {
                *n == name
                    && l.len() == labels.len()
                    && l.iter()
                        .zip(labels)
                        .all(|((k, v), (k2, v2))| k == k2 && v == v2)
            })
            .map_or(0, |(_, v)| *v)
    }

    /// Every series, grouped by name.
    pub fn snapshot(&self) -> Vec<CounterSample> {
        let map = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .map(|((name, labels), value)| CounterSample {
                name,
                help: help(name),
                labels: labels.clone(),
                value: *value,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_start_at_zero_and_add_up() {
        let s = ProbeStats::new();
        assert_eq!(s.get(names::TELEMETRY_DROPPED, &[("signal", "traces")]), 0);
        s.add(names::TELEMETRY_DROPPED, &[("signal", "traces")], 3);
        s.add(names::TELEMETRY_DROPPED, &[("signal", "traces")], 2);
        assert_eq!(s.get(names::TELEMETRY_DROPPED, &[("signal", "traces")]), 5);
        assert!(
            s.snapshot()
                .iter()
                .any(|c| c.name == names::CHECKS && c.value == 0)
        );
    }

    #[test]
    fn a_registered_plugin_starts_at_zero_and_not_disabled() {
        let s = ProbeStats::new();
        s.register_plugin("pop3");
        assert_eq!(s.get(names::PLUGIN_OVERRUNS, &[("plugin", "pop3")]), 0);
        s.add(names::PLUGIN_OVERRUNS, &[("plugin", "pop3")], 1);
        assert_eq!(s.get(names::PLUGIN_OVERRUNS, &[("plugin", "pop3")]), 1);
        let disabled = |s: &ProbeStats| {
            s.gauge_snapshot()
                .into_iter()
                .find(|g| g.name == names::PLUGIN_DISABLED)
                .map(|g| (g.labels, g.value))
        };
        assert_eq!(disabled(&s), Some((vec![("plugin", "pop3".into())], 0.0)));
        s.set_gauge(names::PLUGIN_DISABLED, &[("plugin", "pop3")], 1.0);
        assert_eq!(disabled(&s), Some((vec![("plugin", "pop3".into())], 1.0)));
    }
}
