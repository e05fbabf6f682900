//! The daemon's telemetry: builds the exporters from the configuration and feeds every finished
//! run to them. Feeding never waits on the network: exporters queue (bounded) and send from
//! their own tasks and threads.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mailprobe_core::secret::ProcessEnv;
use mailprobe_exporter_alerts::AlertsExporter;
use mailprobe_exporter_otlp::{OtlpExporter, OtlpSettings};
use mailprobe_exporter_prometheus::{
    AdminServer, BuildInfo, PrometheusExporter, Readiness, ReloadRequest, ReloadState, StatusBoard,
};
use mailprobe_runtime::config::Config;
use mailprobe_runtime::runner::RunOutcome;
use mailprobe_telemetry::{
    ComplianceTracker, ProbeStats, RunEvent, RunSink, SeriesStore, Transition, names,
};

/// Every exporter, and the state they share.
pub struct Telemetry {
    store: Arc<SeriesStore>,
    stats: Arc<ProbeStats>,
    tracker: ComplianceTracker,
    sinks: Vec<Arc<dyn RunSink>>,
    /// The listener, once bound (see [`listen`]).
    admin: Arc<std::sync::Mutex<Option<AdminServer>>>,
    /// Retries the bind while the address cannot be taken.
    binding: Option<tokio::task::JoinHandle<()>>,
    readiness: Readiness,
    reloads: Arc<ReloadState>,
    reload_requests: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<ReloadRequest>>>,
    board: Arc<StatusBoard>,
}

impl Telemetry {
    /// Starts the listener and the exporters. Nothing here stops the daemon: a receiver that
    /// cannot be set up is off until the configuration is fixed, and an address that cannot be
    /// bound is retried (see [`listen`]).
    pub async fn start(config: &Config) -> Telemetry {
        let store = Arc::new(SeriesStore::new());
        let stats = Arc::new(ProbeStats::new());
        let build = BuildInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision: env!("MAILPROBE_REVISION").to_string(),
        };
        let prometheus = Arc::new(PrometheusExporter::with_build_info(
            store.clone(),
            stats.clone(),
            build,
        ));
        let readiness = prometheus.readiness();
        let board = prometheus.status_board();
        let reloads = prometheus.reload_state();
        let reload_requests = std::sync::Mutex::new(prometheus.take_reload_requests());
        let mut sinks: Vec<Arc<dyn RunSink>> = vec![prometheus.clone()];

        // A receiver that cannot be set up costs its own signal only: the probe keeps checking
        // and serving /metrics, and says what to fix (a sidecar that exits takes its pod along).
        let otlp = OtlpSettings::resolve(config.otlp.as_ref(), &ProcessEnv).unwrap_or_else(|e| {
            tracing::error!(error = %mailprobe_telemetry::urls::scrub(&e.to_string()), "OTLP export is off until the configuration is fixed");
            None
        });
        if let Some(settings) = otlp {
            let endpoint = settings.endpoint.as_deref();
            let shown = format!(
                "{} {}",
                settings.transport.as_str(),
                endpoint
                    .map(mailprobe_telemetry::urls::shown)
                    .unwrap_or_else(|| "(from OTEL_EXPORTER_OTLP_* or the default)".into())
            );
            if !settings.headers.is_empty()
                && endpoint.is_some_and(mailprobe_telemetry::urls::plain_to_another_host)
            {
                tracing::warn!(
                    endpoint = %shown,
                    "otlp.headers (often an API key) go in clear text to another host; use https://"
                );
            }
            match OtlpExporter::start(
                settings,
                env!("CARGO_PKG_VERSION"),
                option_env!("MAILPROBE_REVISION").unwrap_or("unknown"),
                &ProcessEnv,
                store.clone(),
                stats.clone(),
            ) {
                Ok(exporter) => {
                    tracing::info!(endpoint = %shown, "OTLP export on");
                    sinks.push(Arc::new(exporter));
                }
                Err(e) => tracing::error!(
                    endpoint = %shown,
                    error = %mailprobe_telemetry::urls::scrub(&e.to_string()),
                    "OTLP export is off until the configuration is fixed"
                ),
            }
        }
        let alert_after = config.alerts.as_ref().map_or(1, |a| a.alert_after);
        if let Some(alerts) = config
            .alerts
            .as_ref()
            .filter(|a| a.alertmanager.is_some() || a.webhook.is_some())
        {
            match AlertsExporter::start(alerts, config.interval, stats.clone()) {
                Ok(exporter) => sinks.push(Arc::new(exporter)),
                Err(e) => tracing::error!(
                    error = %mailprobe_telemetry::urls::scrub(&e.to_string()),
                    "alerts are off until the configuration is fixed"
                ),
            }
        }
        let admin = Arc::new(std::sync::Mutex::new(None));
        let binding = listen(prometheus, config.listen, admin.clone()).await;
        Telemetry {
            store,
            stats,
            tracker: ComplianceTracker::new(alert_after),
            sinks,
            admin,
            binding,
            readiness,
            reloads,
            reload_requests,
            board,
        }
    }

    /// Whether the configuration file as last read is valid (`mailprobe_config_valid`).
    pub fn config_valid(&self) -> bool {
        self.reloads.successful()
    }

    /// The `POST /-/reload` requests (once).
    pub fn take_reload_requests(&self) -> Option<tokio::sync::mpsc::Receiver<ReloadRequest>> {
        self.reload_requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Counts a refused reload, and keeps its message for the status page.
    pub fn record_reload_failure(&self, error: &str) {
        self.record_reload(false);
        self.reloads.record_failure(error);
    }

    /// Counts a configuration reload and sets the reload gauges.
    pub fn record_reload(&self, success: bool) {
        self.reloads.record(success);
        let result = if success { "success" } else { "failure" };
        self.stats
            .add(names::CONFIG_RELOADS, &[("result", result)], 1);
    }

    /// Drops everything kept for a mailbox that a reload removed: its series disappear from
    /// /metrics and OTLP, and its alerting state starts afresh if it comes back.
    pub fn forget(&self, mailbox: &str) {
        self.store.remove(mailbox);
        self.stats.forget_mailbox(mailbox);
        self.tracker.forget(mailbox);
        for sink in &self.sinks {
            sink.forget(mailbox);
        }
    }

    /// Creates a mailbox's probe-error series at 0.
    pub fn register_mailbox(&self, mailbox: &str) {
        self.stats.register_mailbox(mailbox);
        self.board.register(mailbox);
    }

    /// Counts a run the probe could not complete (`kind`: panic or config).
    pub fn probe_error(&self, mailbox: &str, kind: &'static str) {
        self.probe_error_n(mailbox, kind, 1);
    }

    /// Counts `n` probe errors at once (several plugins of one run panicked).
    pub fn probe_error_n(&self, mailbox: &str, kind: &'static str, n: u64) {
        self.stats.add(
            names::PROBE_ERRORS,
            &[("mailbox", mailbox), ("kind", kind)],
            n,
        );
    }

    /// Whether `/readyz` answers 200 (a configuration runs).
    pub fn ready(&self) -> bool {
        self.readiness.get()
    }

    /// `/readyz` answers 200 from now on (after the first round is scheduled).
    pub fn set_ready(&self, ready: bool) {
        self.readiness.set(ready);
    }

    /// Feeds one finished run to every exporter. Returns at once.
    pub fn record(&self, outcome: &RunOutcome) {
        let report = &outcome.report;
        self.store.update(report);
        self.stats
            .add(names::CHECKS, &[("verdict", report.verdict.as_str())], 1);
        let compliance = self.tracker.observe(report, SystemTime::now());
        match compliance.transition {
            Some(Transition::Fired) => {
                let ids: Vec<&str> = compliance.failing.iter().map(|f| f.id.as_str()).collect();
                tracing::warn!(mailbox = %report.mailbox, failing = %ids.join(","), "mailbox turned non-compliant");
            }
            Some(Transition::Resolved) => {
                tracing::info!(mailbox = %report.mailbox, "mailbox is compliant again");
            }
            None => {}
        }
        match compliance.incomplete_transition {
            Some(Transition::Fired) => {
                let ids: Vec<&str> = compliance
                    .not_verified
                    .iter()
                    .map(|f| f.id.as_str())
                    .collect();
                tracing::warn!(mailbox = %report.mailbox, not_verified = %ids.join(","), "mailbox could not be verified (incomplete)");
            }
            Some(Transition::Resolved) => {
                tracing::info!(mailbox = %report.mailbox, verdict = report.verdict.as_str(), "mailbox is verified again");
            }
            None => {}
        }
        let event = RunEvent {
            outcome,
            compliance: &compliance,
        };
        for sink in &self.sinks {
            sink.on_run(&event);
        }
    }

    /// Feeds one run's schedule lag to every exporter. Returns at once.
    pub fn record_lag(&self, lag: Duration) {
        for sink in &self.sinks {
            sink.on_schedule_lag(lag);
        }
    }

    /// Flushes and stops every exporter, then the listener, within `within` in all.
    pub async fn shutdown(&self, within: Duration) {
        self.readiness.set(false);
        let each = within.saturating_sub(Duration::from_millis(300));
        let all = futures_join_all(self.sinks.iter().map(|s| s.shutdown(each)).collect());
        let _ = tokio::time::timeout(within, all).await;
        if let Some(binding) = &self.binding {
            binding.abort();
        }
        let admin = self.admin.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(admin) = admin {
            admin.shutdown(Duration::from_millis(300)).await;
        }
    }
}

/// The longest wait between two attempts to bind the listen address.
const BIND_RETRY_MAX: Duration = Duration::from_secs(30);

/// Binds the admin listener. When the address cannot be taken (in use, not an address of this
/// host, not allowed), it says so and retries in the background, 1 s, 2 s, 4 s ... up to every
/// 30 s, while the checks go on: a sidecar that exits on it would take its pod's readiness along.
/// Returns the retrying task, if there is one.
async fn listen(
    prometheus: Arc<PrometheusExporter>,
    addr: std::net::SocketAddr,
    slot: Arc<std::sync::Mutex<Option<AdminServer>>>,
) -> Option<tokio::task::JoinHandle<()>> {
    let bound = move |admin: AdminServer| {
        tracing::info!(listen = %admin.local_addr(), "serving /metrics, /healthz, /readyz and the status page");
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(admin);
    };
    let error = match prometheus.serve(addr).await {
        Ok(admin) => {
            bound(admin);
            return None;
        }
        Err(e) => e,
    };
    let say = move |e: &std::io::Error, wait: Duration| {
        tracing::error!(
            listen = %addr,
            error = %e,
            retry_in = %humantime::format_duration(wait),
            "cannot listen (`listen` in the configuration, or --web.listen-address); the checks go on, /metrics and /healthz are not served until it can; retrying"
        );
    };
    let mut wait = Duration::from_secs(1);
    say(&error, wait);
    Some(tokio::spawn(async move {
        loop {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(BIND_RETRY_MAX);
            match prometheus.serve(addr).await {
                Ok(admin) => {
                    bound(admin);
                    return;
                }
                Err(e) => say(&e, wait),
            }
        }
    }))
}

/// In-process dynamic plugins' overruns, as `mailprobe_plugin_overruns_total{plugin}` and
/// `mailprobe_plugin_disabled{plugin}`.
impl mailprobe_plugin_host::HealthSink for Telemetry {
    fn loaded(&self, plugin: &str) {
        self.stats.register_plugin(plugin);
    }

    fn overrun(&self, plugin: &str, _overruns: u32, disabled: bool) {
        self.stats
            .add(names::PLUGIN_OVERRUNS, &[("plugin", plugin)], 1);
        self.stats.set_gauge(
            names::PLUGIN_DISABLED,
            &[("plugin", plugin)],
            f64::from(u8::from(disabled)),
        );
    }
}

/// Awaits boxed futures concurrently (no extra dependency for one join).
async fn futures_join_all(futs: Vec<mailprobe_telemetry::BoxFuture<'_, ()>>) {
    let mut set = Vec::new();
    for f in futs {
        set.push(f);
    }
    // Drive them concurrently by polling in one task.
    std::future::poll_fn(move |cx| {
        set.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if set.is_empty() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

/// A log filter (`MAILPROBE_LOG`, EnvFilter syntax) rewritten to let only mailprobe's own events
/// through: a bare level applies to mailprobe's targets, and a directive for any other target
/// (hyper, h2, tonic, rustls, ...) is dropped. Dependencies' events are off at every level,
/// even `trace`, because the HTTP and gRPC clients log what mailprobe never would: user
/// information, paths and headers of receiver URLs.
pub fn own_targets(spec: &str) -> String {
    let kept: Vec<String> = spec
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .filter_map(|d| {
            if d.starts_with("mailprobe") {
                Some(d.to_string())
            } else if d.contains(['=', '[', ':']) {
                None
            } else {
                // A bare level (or an unknown word, which EnvFilter refuses as it would have).
                Some(format!("mailprobe={d}"))
            }
        })
        .collect();
    if kept.is_empty() {
        "off".to_string()
    } else {
        kept.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::own_targets;

    #[test]
    fn only_mailprobe_targets_pass_the_log_filter() {
        assert_eq!(own_targets("trace"), "mailprobe=trace");
        assert_eq!(
            own_targets("info,hyper=trace,h2=debug,mailprobe_core=trace"),
            "mailprobe=info,mailprobe_core=trace"
        );
        assert_eq!(own_targets("tonic=trace"), "off");
        assert_eq!(own_targets("[span]=trace"), "off");
        assert_eq!(own_targets(""), "off");
    }
}
