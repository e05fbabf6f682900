//! The interface between the daemon and its exporters.
//!
//! A finished run ([`RunOutcome`]) is turned here, once, into what every exporter shows:
//! - the series of the metrics ([`series`]), kept per mailbox in a [`SeriesStore`] that the
//!   Prometheus endpoint and the OTLP metric callbacks both read, so both show the same series;
//! - the mailbox's compliance state and its transitions ([`transition`]), which become OTLP log
//!   records and alerts;
//! - the probe's own counters ([`ProbeStats`]).
//!
//! Exporters implement [`RunSink`]. They depend on `mailprobe-core` and on this crate only,
//! never on each other, and never talk to plugins.
#![forbid(unsafe_code)]

pub mod http;
pub mod names;
pub mod series;
pub mod stats;
pub mod transition;
pub mod urls;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use mailprobe_runtime::runner::RunOutcome;

pub use series::{MailboxSeries, SeriesStore};
pub use stats::{GaugeSample, ProbeStats};
pub use transition::{Compliance, ComplianceTracker, Transition};

/// Buckets of `mailprobe_check_duration_seconds`, in seconds (OTLP and Prometheus alike).
pub const DURATION_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0];

/// Buckets of `mailprobe_schedule_lag_seconds`: fine below a second, where a healthy scheduler
/// lives, coarse up to the interval, where an overloaded one ends up.
pub const LAG_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 180.0, 300.0,
];

/// One finished run, as the exporters see it.
pub struct RunEvent<'a> {
    pub outcome: &'a RunOutcome,
    /// The mailbox's alerting state after this run.
    pub compliance: &'a Compliance,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An exporter fed by the daemon after every run.
pub trait RunSink: Send + Sync {
    /// The exporter's name in logs (`otlp`, `prometheus`, `alerts`).
    fn name(&self) -> &'static str;

    /// Takes one run. Must return at once: anything slow (network) happens in the exporter's
    /// own tasks, behind bounded queues.
    fn on_run(&self, event: &RunEvent<'_>);

    /// Forgets a mailbox that a configuration reload removed (its per-mailbox series). Most
    /// exporters keep nothing per mailbox.
    fn forget(&self, _mailbox: &str) {}

    /// Takes one run's schedule lag (one histogram for the whole process: per-mailbox series
    /// would cost memory at fleet scale). Must return at once.
    fn on_schedule_lag(&self, _lag: Duration) {}

    /// Flushes what is pending and stops, within `within`.
    fn shutdown(&self, within: Duration) -> BoxFuture<'_, ()>;
}
