//! Metric names (see docs/metrics.md): the same in OTLP and Prometheus.

pub const COMPLIANT: &str = "mailprobe_compliant";
/// A state set: 1 for the latest verdict, 0 for the other two.
pub const VERDICT: &str = "mailprobe_verdict";
pub const REQUIREMENT_STATUS: &str = "mailprobe_requirement_status";
pub const CERT_EXPIRY: &str = "mailprobe_cert_expiry_timestamp_seconds";
/// Always 1: the leaf certificate's subject, issuer, serial and SHA-256 fingerprint as labels.
pub const CERT_INFO: &str = "mailprobe_cert_info";
/// Unix time a mailbox's latest check finished.
pub const LAST_CHECK_TIMESTAMP: &str = "mailprobe_last_check_timestamp_seconds";
/// Always 1: `version` and `revision` of the running binary.
pub const BUILD_INFO: &str = "mailprobe_build_info";
pub const TLS_VERSION_ACCEPTED: &str = "mailprobe_tls_version_accepted";
pub const CONCURRENT_ACHIEVED: &str = "mailprobe_concurrent_connections_achieved";
/// Seconds the `mail.roundtrip` test message took to arrive.
/// How old the oldest proof a mailbox's latest verdict rests on was at that run (a cadence per
/// requirement group); 0 when the run proved everything itself.
pub const PROOF_AGE: &str = "mailprobe_proof_age_seconds";
pub const ROUNDTRIP_SECONDS: &str = "mailprobe_roundtrip_seconds";
pub const CHECK_DURATION: &str = "mailprobe_check_duration_seconds";
/// From when a mailbox's run was due to when it started (waiting for a concurrency slot).
pub const SCHEDULE_LAG: &str = "mailprobe_schedule_lag_seconds";

/// The probe's own counters. Prometheus counter names carry `_total`; OTLP names are the same
/// strings, so that a collector's Prometheus exporter shows one name.
pub const CHECKS: &str = "mailprobe_checks_total";
pub const TELEMETRY_DROPPED: &str = "mailprobe_telemetry_dropped_total";
pub const TELEMETRY_EXPORT_FAILURES: &str = "mailprobe_telemetry_export_failures_total";
pub const ALERT_DELIVERY_FAILURES: &str = "mailprobe_alert_delivery_failures_total";
pub const ALERT_NOTIFICATIONS_DROPPED: &str = "mailprobe_alert_notifications_dropped_total";
pub const ALERT_NOTIFICATIONS_SENT: &str = "mailprobe_alert_notifications_sent_total";
/// Configuration reloads, by `result` (`success`, `failure`).
pub const CONFIG_RELOADS: &str = "mailprobe_config_reloads_total";

/// The configuration reload gauges, named as Prometheus and Alertmanager name theirs so that
/// the same alert rules apply.
pub const CONFIG_LAST_RELOAD_SUCCESSFUL: &str = "mailprobe_config_last_reload_successful";
pub const CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP: &str =
    "mailprobe_config_last_reload_success_timestamp_seconds";
/// 1 when the configuration file as last read is valid, else 0 (missing, unreadable or invalid).
pub const CONFIG_VALID: &str = "mailprobe_config_valid";
/// Runs the probe itself could not complete, by mailbox and kind (see [`PROBE_ERROR_KINDS`]).
pub const PROBE_ERRORS: &str = "mailprobe_probe_errors_total";
/// `panic`: a run panicked; `config`: the mailbox's entry or secret could not be used.
pub const PROBE_ERROR_KINDS: &[&str] = &["panic", "config"];

/// In-process calls of a dynamic plugin that overran the run's deadline (their threads were
/// abandoned), by `plugin`.
pub const PLUGIN_OVERRUNS: &str = "mailprobe_plugin_overruns_total";
/// 1 when a dynamic plugin is disabled until mailprobe restarts (it overran too often), else 0,
/// by `plugin`.
pub const PLUGIN_DISABLED: &str = "mailprobe_plugin_disabled";
/// The gauges of [`crate::ProbeStats`] (the probe's own state, not a mailbox's).
pub const PROBE_GAUGES: &[&str] = &[PLUGIN_DISABLED];

/// Span names.
pub const SPAN_CHECK: &str = "mailprobe.check";
/// A plugin's span is `mailprobe.plugin <name>` with the attribute `mailprobe.plugin`.
pub const SPAN_PLUGIN_PREFIX: &str = "mailprobe.plugin";

/// The Alertmanager alert name.
pub const ALERT_NAME: &str = "MailboxNonCompliant";
/// The alert of a mailbox whose checks stayed `incomplete` for `alert_after` runs: the probe
/// cannot vouch for it either way.
pub const ALERT_NAME_INCOMPLETE: &str = "MailboxCheckIncomplete";

/// The OTLP instruments and attribute keys, and the `/metrics` name each stands for.
pub mod otlp;
