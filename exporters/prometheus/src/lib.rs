//! The Prometheus endpoint and the health probes, on one listener (`listen` in the config):
//! `/metrics` (OpenMetrics text, the same series as OTLP), `/healthz` (the process is alive) and
//! `/readyz` (the configuration is loaded and the first round is scheduled).
//!
//! The gauges are read at scrape time from the shared [`SeriesStore`], so a series the latest
//! run no longer has (a requirement now `skip`) disappears instead of going stale. The duration
//! histogram is kept here.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use mailprobe_telemetry::series::ServerPort;
use mailprobe_telemetry::{
    BoxFuture, DURATION_BUCKETS, LAG_BUCKETS, ProbeStats, RunEvent, RunSink, SeriesStore, names,
};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The content type of `/metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(&'static str, String)>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS.iter().copied())
}

/// Readiness, set by the daemon once the first round is scheduled and cleared on shutdown.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Encodes the store's gauges and the probe's counters at scrape time.
#[derive(Debug)]
struct StoreCollector {
    store: Arc<SeriesStore>,
    stats: Arc<ProbeStats>,
}

fn sp(mailbox: &str, s: &ServerPort) -> Labels {
    vec![
        ("mailbox", mailbox.to_string()),
        ("server", s.server.clone()),
        ("port", s.port.clone()),
    ]
}

fn gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: Vec<(Labels, f64)>,
) -> Result<(), std::fmt::Error> {
    if samples.is_empty() {
        return Ok(());
    }
    let proto = ConstGauge::new(0.0f64);
    let mut family = encoder.encode_descriptor(name, help, None, proto.metric_type())?;
    for (labels, value) in samples {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.store.snapshot();
        let mb = |m: &str| ("mailbox", m.to_string());
        gauges(
            &mut encoder,
            names::COMPLIANT,
            "1 when the mailbox meets every requirement of its profile (no requirement fails), else 0.",
            snapshot
                .iter()
                .map(|(m, s)| (vec![mb(m)], s.compliant))
                .collect(),
        )?;
        gauges(
            &mut encoder,
            names::REQUIREMENT_STATUS,
            "Status of one requirement: 1 pass, 0.5 warn, 0 fail; no sample when skipped.",
            snapshot
                .iter()
                .flat_map(|(m, s)| {
                    s.requirements
                        .iter()
                        .map(move |(r, v)| (vec![mb(m), ("requirement", r.clone())], *v))
                })
                .collect(),
        )?;
        gauges(
            &mut encoder,
            names::CERT_EXPIRY,
            "notAfter of the server's leaf certificate, as a Unix timestamp.",
            snapshot
                .iter()
                .flat_map(|(m, s)| s.cert_expiry.iter().map(move |(p, v)| (sp(m, p), *v)))
                .collect(),
        )?;
        gauges(
            &mut encoder,
            names::TLS_VERSION_ACCEPTED,
            "1 when the server accepts the TLS/SSL version, else 0.",
            snapshot
                .iter()
                .flat_map(|(m, s)| {
                    s.tls_versions.iter().map(move |(p, ver, v)| {
                        let mut l = sp(m, p);
                        l.push(("version", ver.clone()));
                        (l, *v)
                    })
                })
                .collect(),
        )?;
        gauges(
            &mut encoder,
            names::CONCURRENT_ACHIEVED,
            "Authenticated sessions the probe held at once (IMAP and SMTP together).",
            snapshot
                .iter()
                .filter_map(|(m, s)| s.concurrent_achieved.map(|v| (vec![mb(m)], v)))
                .collect(),
        )?;
        // The probe's own counters. prometheus-client appends `_total` to counter samples.
        let counters = self.stats.snapshot();
        let mut i = 0;
        while i < counters.len() {
            let name = counters[i].name;
            let base = name.strip_suffix("_total").unwrap_or(name);
            let proto = ConstCounter::new(0u64);
            let mut family =
                encoder.encode_descriptor(base, counters[i].help, None, proto.metric_type())?;
            while i < counters.len() && counters[i].name == name {
                let labels: Labels = counters[i].labels.clone();
                ConstCounter::new(counters[i].value).encode(family.encode_family(&labels)?)?;
                i += 1;
            }
        }
        Ok(())
    }
}

/// The `/metrics` registry, and the run sink that feeds its histogram.
pub struct PrometheusExporter {
    registry: Arc<Registry>,
    durations: Family<Labels, Histogram, fn() -> Histogram>,
    lag: Histogram,
    readiness: Readiness,
}

impl PrometheusExporter {
    pub fn new(store: Arc<SeriesStore>, stats: Arc<ProbeStats>) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(StoreCollector { store, stats }));
        let durations: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        registry.register(
            names::CHECK_DURATION,
            "Wall time of one mailbox check, in seconds.",
            durations.clone(),
        );
        let lag = Histogram::new(LAG_BUCKETS.iter().copied());
        registry.register(
            names::SCHEDULE_LAG,
            "Time from when a mailbox's check was due to when it started, in seconds.",
            lag.clone(),
        );
        PrometheusExporter {
            registry: Arc::new(registry),
            durations,
            lag,
            readiness: Readiness::default(),
        }
    }

    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// The `/metrics` page as it would be served now.
    pub fn render(&self) -> String {
        render(&self.registry)
    }

    /// Binds `addr` and serves `/metrics`, `/healthz` and `/readyz` until [`AdminServer::shutdown`].
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<AdminServer> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let state = AppState {
            registry: self.registry.clone(),
            readiness: self.readiness.clone(),
        };
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .with_state(state);
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let result = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "the metrics listener stopped");
            }
        });
        Ok(AdminServer {
            local,
            stop,
            task: std::sync::Mutex::new(Some(task)),
        })
    }
}

fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        tracing::warn!(error = %e, "cannot encode the metrics");
    }
    out
}

impl RunSink for PrometheusExporter {
    fn name(&self) -> &'static str {
        "prometheus"
    }

    fn on_run(&self, event: &RunEvent<'_>) {
        let labels: Labels = vec![("mailbox", event.outcome.report.mailbox.clone())];
        self.durations
            .get_or_create(&labels)
            .observe(event.outcome.duration.as_secs_f64());
    }

    fn on_schedule_lag(&self, lag: Duration) {
        self.lag.observe(lag.as_secs_f64());
    }

    fn shutdown(&self, _within: Duration) -> BoxFuture<'_, ()> {
        self.readiness.set(false);
        Box::pin(async {})
    }
}

/// The running listener.
pub struct AdminServer {
    local: SocketAddr,
    stop: watch::Sender<bool>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl AdminServer {
    /// The address it listens on (with the real port when `listen` said port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops accepting, lets requests in flight finish within `within`.
    pub async fn shutdown(&self, within: Duration) {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(mut task) = task else { return };
        if tokio::time::timeout(within, &mut task).await.is_err() {
            task.abort();
        }
    }
}

#[derive(Clone)]
struct AppState {
    registry: Arc<Registry>,
    readiness: Readiness,
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        render(&state.registry),
    )
}

async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.readiness.get() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

#[cfg(test)]
mod tests;
