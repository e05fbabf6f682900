//! Wrappers around the OTLP exporters that (1) run every export on the daemon's tokio runtime,
//! bounded by a timeout, although the SDK's batch processors and periodic reader call them from
//! their own threads; and (2) count what a failed export dropped, in the probe's own counters.
//!
//! The SDK's queues are bounded (2048 spans, 2048 log records; metrics are aggregates), so with
//! the collector down memory stays flat: each batch is tried once, then dropped and counted.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mailprobe_telemetry::{ProbeStats, names};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::{LogBatch, LogExporter};
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tokio::runtime::Handle;

/// What the wrappers share: the runtime, the counters and the export bound.
#[derive(Clone)]
pub struct GuardContext {
    pub handle: Handle,
    pub stats: Arc<ProbeStats>,
    pub timeout: Duration,
}

/// An exporter of one signal, wrapped.
pub struct Guarded<E> {
    inner: E,
    cx: GuardContext,
    signal: &'static str,
    failing: AtomicBool,
}

impl<E> fmt::Debug for Guarded<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guarded")
            .field("signal", &self.signal)
            .finish_non_exhaustive()
    }
}

impl<E> Guarded<E> {
    pub fn new(inner: E, cx: GuardContext, signal: &'static str) -> Self {
        Guarded {
            inner,
            cx,
            signal,
            failing: AtomicBool::new(false),
        }
    }

    /// Runs one export within the timeout, on the runtime, and counts a failure.
    async fn run<F>(&self, items: u64, export: F) -> OTelSdkResult
    where
        F: Future<Output = OTelSdkResult> + Send,
    {
        let timeout = self.cx.timeout;
        let bounded = async move {
            match tokio::time::timeout(timeout, export).await {
                Ok(r) => r,
                Err(_) => Err(OTelSdkError::Timeout(timeout)),
            }
        };
        // The SDK calls from its own thread, outside the runtime; tonic and hyper need it.
        let result = if Handle::try_current().is_ok() {
            bounded.await
        } else {
            self.cx.handle.block_on(bounded)
        };
        self.note(items, &result);
        result
    }

    fn note(&self, items: u64, result: &OTelSdkResult) {
        match result {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!(signal = self.signal, "OTLP export works again");
                }
            }
            Err(e) => {
                let labels = [("signal", self.signal)];
                self.cx
                    .stats
                    .add(names::TELEMETRY_EXPORT_FAILURES, &labels, 1);
                self.cx.stats.add(names::TELEMETRY_DROPPED, &labels, items);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        signal = self.signal,
                        error = %mailprobe_telemetry::urls::scrub(&e.to_string()),
                        "OTLP export failed; telemetry is dropped and counted (mailprobe_telemetry_dropped_total) until the collector answers"
                    );
                }
            }
        }
    }
}

impl<E: SpanExporter> SpanExporter for Guarded<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        self.run(n, self.inner.export(batch)).await
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: LogExporter> LogExporter for Guarded<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let n = batch.iter().count() as u64;
        self.run(n, self.inner.export(batch)).await
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: PushMetricExporter> PushMetricExporter for Guarded<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let n = metrics
            .scope_metrics()
            .map(|s| s.metrics().count())
            .sum::<usize>() as u64;
        self.run(n, self.inner.export(metrics)).await
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}
