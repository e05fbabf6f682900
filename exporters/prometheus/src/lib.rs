//! The Prometheus endpoint and the health probes, on one listener (`listen` in the config):
//! `/metrics` (OpenMetrics text, the same series as OTLP), `/healthz` (the process is alive) and
//! `/readyz` (the configuration is loaded and the first round is scheduled), and `POST /-/reload`
//! (re-read the configuration file, as Prometheus and blackbox_exporter do).
//!
//! The same listener serves the status page ([`status`]): `/`, `/mailboxes/NAME` and
//! `/api/v1/mailboxes[/NAME]`. `/metrics` answers in the Prometheus text format, or in
//! OpenMetrics when the scraper asks for it ([`format`]).
//!
//! The gauges are read at scrape time from the shared [`SeriesStore`], so a series the latest
//! run no longer has (a requirement now `skip`) disappears instead of going stale. The duration
//! histogram is kept here.
#![forbid(unsafe_code)]

mod auth;
pub mod format;
pub mod reference;
pub mod server;
pub mod status;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use mailprobe_telemetry::series::ServerPort;
use mailprobe_telemetry::stats::CounterSample;
use mailprobe_telemetry::{
    BoxFuture, DURATION_BUCKETS, GaugeSample, LAG_BUCKETS, MailboxSeries, ProbeStats, RunEvent,
    RunSink, SeriesStore, names,
};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

pub use status::StatusBoard;

/// The content type of `/metrics` in OpenMetrics (when the scraper asks for it).
pub const CONTENT_TYPE: &str = format::OPENMETRICS_CONTENT_TYPE;

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

/// A request for a configuration reload from `POST /-/reload`: the daemon answers with what
/// changed, or with the message that `mailprobe validate` gives for the new file.
pub type ReloadRequest = oneshot::Sender<Result<String, String>>;

/// How long `POST /-/reload` waits for the daemon's answer.
const RELOAD_ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// The outcome of the latest configuration load, for the two reload gauges.
#[derive(Debug)]
pub struct ReloadState {
    successful: AtomicBool,
    /// Why the latest load failed, for the status page (cleared by a successful one).
    last_error: std::sync::Mutex<Option<String>>,
    /// Unix time of the latest successful load, as f64 bits.
    last_success: std::sync::atomic::AtomicU64,
}

impl Default for ReloadState {
    /// The configuration loaded at start-up counts as a successful load.
    fn default() -> Self {
        let state = ReloadState {
            successful: AtomicBool::new(true),
            last_error: std::sync::Mutex::new(None),
            last_success: std::sync::atomic::AtomicU64::new(0),
        };
        state.record(true);
        state
    }
}

impl ReloadState {
    /// Records a load: a success also moves the timestamp.
    pub fn record(&self, success: bool) {
        self.successful.store(success, Ordering::SeqCst);
        if success {
            *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            self.last_success.store(now.to_bits(), Ordering::SeqCst);
        }
    }

    /// Records a failed load with the message `mailprobe validate` gives for the file.
    pub fn record_failure(&self, error: &str) {
        self.record(false);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.to_string());
    }

    /// Why the latest load failed, while it is the latest.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn successful(&self) -> bool {
        self.successful.load(Ordering::SeqCst)
    }

    pub fn last_success(&self) -> f64 {
        f64::from_bits(self.last_success.load(Ordering::SeqCst))
    }
}

/// Encodes the store's gauges and the probe's counters at scrape time.
#[derive(Debug)]
struct StoreCollector {
    store: Arc<SeriesStore>,
    stats: Arc<ProbeStats>,
    reloads: Arc<ReloadState>,
    build: BuildInfo,
}

/// `mailprobe_build_info{version,revision}`: what is running, as every Prometheus exporter says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildInfo {
    pub version: String,
    /// The source revision (git commit) it was built from, or `unknown`.
    pub revision: String,
}

impl Default for BuildInfo {
    fn default() -> Self {
        BuildInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision: "unknown".to_string(),
        }
    }
}

fn sp(mailbox: &str, s: &ServerPort) -> Labels {
    vec![
        ("mailbox", mailbox.to_string()),
        ("server", s.server.to_string()),
        ("port", s.port.to_string()),
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

/// A gauge family read from the store: its name, help, and how one mailbox's series turns into
/// samples. One small function per family keeps each family's labels next to its name.
struct StoreGauge {
    name: &'static str,
    help: &'static str,
    samples: fn(&str, &MailboxSeries) -> Vec<(Labels, f64)>,
}

/// The store's gauge families, in the order `/metrics` shows them.
const STORE_GAUGES: [StoreGauge; 10] = [
    StoreGauge {
        name: names::COMPLIANT,
        help: "The last definitive verdict: 1 compliant (no requirement fails), 0 non-compliant; an incomplete run neither sets nor clears it; no sample before the first definitive verdict.",
        samples: compliant,
    },
    StoreGauge {
        name: names::VERDICT,
        help: "The latest verdict as a state set: 1 for it, 0 for the other two (compliant, non_compliant, incomplete).",
        samples: verdict,
    },
    StoreGauge {
        name: names::LAST_CHECK_TIMESTAMP,
        help: "Unix time the mailbox's latest check finished, whatever its verdict.",
        samples: last_check,
    },
    StoreGauge {
        name: names::REQUIREMENT_STATUS,
        help: "Status of one requirement: 1 pass, 0.5 warn, 0 fail; no sample when skipped.",
        samples: requirement_status,
    },
    StoreGauge {
        name: names::PROOF_AGE,
        help: "Age of the oldest earlier proof the latest verdict rests on (a cadence per requirement group), at that run; 0 when it proved everything.",
        samples: proof_age,
    },
    StoreGauge {
        name: names::CERT_EXPIRY,
        help: "notAfter of the server's leaf certificate, as a Unix timestamp.",
        samples: cert_expiry,
    },
    StoreGauge {
        name: names::CERT_INFO,
        help: "Always 1: the identity of the server's leaf certificate (subject, issuer, serial, SHA-256 fingerprint of its DER); a renewal is a new series.",
        samples: cert_info,
    },
    StoreGauge {
        name: names::TLS_VERSION_ACCEPTED,
        help: "1 when the server accepts the TLS/SSL version, else 0.",
        samples: tls_version_accepted,
    },
    StoreGauge {
        name: names::CONCURRENT_ACHIEVED,
        help: "Authenticated sessions the probe held at once (IMAP and SMTP together).",
        samples: concurrent_achieved,
    },
    StoreGauge {
        name: names::ROUNDTRIP_SECONDS,
        help: "Seconds the mail.roundtrip test message took from submission to INBOX (when the check ran and the message arrived).",
        samples: roundtrip_seconds,
    },
];

fn mb(m: &str) -> (&'static str, String) {
    ("mailbox", m.to_string())
}

fn compliant(m: &str, s: &MailboxSeries) -> Vec<(Labels, f64)> {
    s.compliant.map(|v| (vec![mb(m)], v)).into_iter().collect()
}

fn verdict(m: &str, s: &MailboxSeries) -> Vec<(Labels, f64)> {
    s.verdict_states()
        .into_iter()
        .map(|(v, x)| (vec![mb(m), ("verdict", v.to_string())], x))
        .collect()
}

fn last_check(m: &str, s: &MailboxSeries) -> Vec<(Labels, f64)> {
    s.last_check.map(|v| (vec![mb(m)], v)).into_iter().collect()
}

fn cert_info(m: &str, s: &MailboxSeries) -> Vec<(Labels, f64)> {
    s.cert_info
        .iter()
        .map(|(p, id)| {
            let mut l = sp(m, p);
            l.push(("subject", id.subject.clone()));
            l.push(("issuer", id.issuer.clone()));
            l.push(("serial", id.serial.clone()));
            l.push(("fingerprint_sha256", id.fingerprint_sha256.clone()));
            (l, 1.0)
        })
        .collect()
}

fn requirement_status(m: &str, s: &MailboxSeries) -> Vec<(Labels, f64)> {
    s.requirements
        .iter()
        .map(|(r, v)| (vec![mb(m), ("requirement", r.to_string())], *v))
        .collect()
}

fn proof_age(m: &str, s: &MailboxSeries) -> Vec<(Labels, f64)> {
    s.proof_age.map(|v| (vec![mb(m)], v)).into_iter().collect()
}

fn cert_expiry(m: &str, s: &MailboxSeries) -> Vec<(Labels, f64)> {
    s.cert_expiry.iter().map(|(p, v)| (sp(m, p), *v)).collect()
}

fn tls_version_accepted(m: &str, s: &MailboxSeries) -> Vec<(Labels, f64)> {
    s.tls_versions
        .iter()
        .map(|(p, ver, v)| {
            let mut l = sp(m, p);
            l.push(("version", ver.to_string()));
            (l, *v)
        })
        .collect()
}

fn concurrent_achieved(m: &str, s: &MailboxSeries) -> Vec<(Labels, f64)> {
    s.concurrent_achieved
        .map(|v| (vec![mb(m)], v))
        .into_iter()
        .collect()
}

fn roundtrip_seconds(m: &str, s: &MailboxSeries) -> Vec<(Labels, f64)> {
    s.roundtrip_seconds
        .map(|v| (vec![mb(m)], v))
        .into_iter()
        .collect()
}

/// The two gauges of the latest configuration load, which live in [`ReloadState`], not in the
/// store.
fn reload_gauges(
    encoder: &mut DescriptorEncoder,
    reloads: &ReloadState,
) -> Result<(), std::fmt::Error> {
    gauges(
        encoder,
        names::CONFIG_LAST_RELOAD_SUCCESSFUL,
        "1 when the latest configuration load (start-up or reload) succeeded, else 0 (the previous configuration keeps running).",
        vec![(Vec::new(), f64::from(u8::from(reloads.successful())))],
    )?;
    gauges(
        encoder,
        names::CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP,
        "Unix time of the latest successful configuration load.",
        vec![(Vec::new(), reloads.last_success())],
    )?;
    gauges(
        encoder,
        names::CONFIG_VALID,
        "1 when the configuration file as last read is valid, else 0: it is missing, unreadable or invalid, and mailprobe checks what it last loaded (nothing, if it never loaded one) until the file is fixed.",
        vec![(Vec::new(), f64::from(u8::from(reloads.successful())))],
    )
}

/// The probe's own gauges (plugins disabled), one family per name (the snapshot keeps a name's
/// samples together).
fn probe_gauges(
    encoder: &mut DescriptorEncoder,
    samples: &[GaugeSample],
) -> Result<(), std::fmt::Error> {
    for name in names::PROBE_GAUGES {
        let family: Vec<(Labels, f64)> = samples
            .iter()
            .filter(|g| g.name == *name)
            .map(|g| (g.labels.clone(), g.value))
            .collect();
        gauges(
            encoder,
            name,
            mailprobe_telemetry::stats::help(name),
            family,
        )?;
    }
    Ok(())
}

/// The probe's own counters, one family per counter name (the snapshot keeps a name's samples
/// together). prometheus-client appends `_total` to counter samples, so the family is named
/// without it.
fn counter_families(
    encoder: &mut DescriptorEncoder,
    counters: &[CounterSample],
) -> Result<(), std::fmt::Error> {
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

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.store.snapshot();
        for family in &STORE_GAUGES {
            let samples = snapshot
                .iter()
                .flat_map(|(m, s)| (family.samples)(m, s))
                .collect();
            gauges(&mut encoder, family.name, family.help, samples)?;
        }
        reload_gauges(&mut encoder, &self.reloads)?;
        gauges(
            &mut encoder,
            names::BUILD_INFO,
            "Always 1: the version of mailprobe and the source revision it was built from.",
            vec![(
                vec![
                    ("version", self.build.version.clone()),
                    ("revision", self.build.revision.clone()),
                ],
                1.0,
            )],
        )?;
        probe_gauges(&mut encoder, &self.stats.gauge_snapshot())?;
        counter_families(&mut encoder, &self.stats.snapshot())
    }
}

/// The `/metrics` registry, and the run sink that feeds its histogram.
pub struct PrometheusExporter {
    registry: Arc<Registry>,
    durations: Family<Labels, Histogram, fn() -> Histogram>,
    lag: Histogram,
    readiness: Readiness,
    reloads: Arc<ReloadState>,
    reload_tx: mpsc::Sender<ReloadRequest>,
    reload_rx: std::sync::Mutex<Option<mpsc::Receiver<ReloadRequest>>>,
    board: Arc<StatusBoard>,
    build: BuildInfo,
}

impl PrometheusExporter {
    pub fn new(store: Arc<SeriesStore>, stats: Arc<ProbeStats>) -> Self {
        Self::with_build_info(store, stats, BuildInfo::default())
    }

    /// [`PrometheusExporter::new`] with the binary's own version and revision.
    pub fn with_build_info(
        store: Arc<SeriesStore>,
        stats: Arc<ProbeStats>,
        build: BuildInfo,
    ) -> Self {
        let mut registry = Registry::default();
        let reloads = Arc::new(ReloadState::default());
        registry.register_collector(Box::new(StoreCollector {
            store,
            stats,
            reloads: reloads.clone(),
            build: build.clone(),
        }));
        // A few requests may wait while one reload runs; more are refused, not queued.
        let (reload_tx, reload_rx) = mpsc::channel(4);
        let durations: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        registry.register(
            names::CHECK_DURATION,
            "Wall time of one mailbox check, in seconds",
            durations.clone(),
        );
        let lag = Histogram::new(LAG_BUCKETS.iter().copied());
        registry.register(
            names::SCHEDULE_LAG,
            "Time from when a mailbox's check was due to when it started (waiting for a concurrency slot), in seconds; one series for the process",
            lag.clone(),
        );
        PrometheusExporter {
            registry: Arc::new(registry),
            durations,
            lag,
            readiness: Readiness::default(),
            reloads,
            reload_tx,
            reload_rx: std::sync::Mutex::new(Some(reload_rx)),
            board: Arc::new(StatusBoard::new()),
            build,
        }
    }

    /// The status page's latest reports, which this exporter fills after every run; the
    /// daemon registers configured mailboxes in it.
    pub fn status_board(&self) -> Arc<StatusBoard> {
        self.board.clone()
    }

    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// Where the daemon records each configuration load for the reload gauges.
    pub fn reload_state(&self) -> Arc<ReloadState> {
        self.reloads.clone()
    }

    /// The `POST /-/reload` requests, for the one task that reloads (None after the first call).
    /// Until it is taken, or once it is dropped, the endpoint answers 503.
    pub fn take_reload_requests(&self) -> Option<mpsc::Receiver<ReloadRequest>> {
        self.reload_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// The `/metrics` page as it would be served now.
    pub fn render(&self) -> String {
        render(&self.registry)
    }

    /// Binds `addr` and serves `/metrics`, `/healthz` and `/readyz` until [`AdminServer::shutdown`].
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<AdminServer> {
        self.serve_with(addr, web::options()).await
    }

    /// As [`PrometheusExporter::serve`], with these web options rather than the process's.
    pub async fn serve_with(
        &self,
        addr: SocketAddr,
        options: Arc<web::WebOptions>,
    ) -> std::io::Result<AdminServer> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let state = AppState {
            registry: self.registry.clone(),
            readiness: self.readiness.clone(),
            reload: self.reload_tx.clone(),
        };
        let pages = status::routes(status::PageState {
            board: self.board.clone(),
            reloads: self.reloads.clone(),
            build: self.build.clone(),
        });
        let app = Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/-/reload", post(reload))
            .with_state(state)
            .merge(pages);
        // TLS, basic auth, lifecycle gating and the connection limits cover every route,
        // the status page's included.
        let app = server::protect(app, options.clone());
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(server::run(listener, app, options, stopped));
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
        let finished = event
            .outcome
            .started_at
            .checked_add(event.outcome.duration)
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0.0, |d| d.as_secs_f64());
        // The daemon's runner keeps each mailbox's last transcript (redacted and bounded) in the
        // process-wide store; the board reads it from there when a page asks, so a transcript
        // the store's bound evicted is not kept alive here (at 10,000 mailboxes that was
        // hundreds of MiB).
        self.board.record(&event.outcome.report, finished, None);
    }

    fn forget(&self, mailbox: &str) {
        self.board.forget(mailbox);
        self.durations
            .remove(&vec![("mailbox", mailbox.to_string())]);
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
    reload: mpsc::Sender<ReloadRequest>,
}

/// The text format by default, OpenMetrics when `Accept` prefers it.
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let wanted = format::negotiate(accept);
    let page = render(&state.registry);
    let body = match wanted {
        format::Format::OpenMetrics => page,
        format::Format::Text => format::to_text(&page),
    };
    (
        [
            (header::CONTENT_TYPE, wanted.content_type()),
            (header::VARY, "Accept"),
        ],
        body,
    )
}

/// Answers as Prometheus' `/-/reload` does: 200 when the new configuration is running, 500 with
/// the reason when it was refused (the previous one keeps running).
async fn reload(State(state): State<AppState>) -> impl IntoResponse {
    let (reply, answer) = oneshot::channel();
    if state.reload.try_send(reply).is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "cannot reload now: reloads are not being taken, or too many are waiting; retry\n"
                .to_string(),
        );
    }
    match tokio::time::timeout(RELOAD_ANSWER_WITHIN, answer).await {
        Ok(Ok(Ok(summary))) => (StatusCode::OK, format!("{summary}\n")),
        Ok(Ok(Err(e))) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}\n"),
        ),
        Ok(Err(_)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "cannot reload now: the daemon is shutting down\n".to_string(),
        ),
        Err(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            "the reload did not answer within 30 s; see the log\n".to_string(),
        ),
    }
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
