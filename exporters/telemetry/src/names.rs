//! Metric names (SPEC "Telemetry"): the same in OTLP and Prometheus.

pub const COMPLIANT: &str = "mailprobe_compliant";
pub const REQUIREMENT_STATUS: &str = "mailprobe_requirement_status";
pub const CERT_EXPIRY: &str = "mailprobe_cert_expiry_timestamp_seconds";
pub const TLS_VERSION_ACCEPTED: &str = "mailprobe_tls_version_accepted";
pub const CONCURRENT_ACHIEVED: &str = "mailprobe_concurrent_connections_achieved";
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

/// Span names.
pub const SPAN_CHECK: &str = "mailprobe.check";
/// A plugin's span is `mailprobe.plugin <name>` with the attribute `mailprobe.plugin`.
pub const SPAN_PLUGIN_PREFIX: &str = "mailprobe.plugin";

/// The Alertmanager alert name.
pub const ALERT_NAME: &str = "MailboxNonCompliant";
