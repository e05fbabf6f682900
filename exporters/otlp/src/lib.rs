//! mailprobe's OTLP exporter: per run, a span tree (`mailprobe.check` → one span per plugin →
//! one span per protocol step); the metrics, exported periodically; and one log record per
//! compliance transition (an alert firing, or resolving).
//!
//! Export never blocks a check: spans and log records go into the SDK's bounded queues, metrics
//! are read from the shared store at export time, and the network work happens on the SDK's
//! threads (see [`guard`]). A collector that is down costs dropped telemetry, counted in
//! `mailprobe_telemetry_dropped_total{signal}`, and nothing else.
#![forbid(unsafe_code)]

pub mod guard;
mod instruments;
pub mod resource;
pub mod settings;
pub mod spans;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mailprobe_core::secret::Environment;
use mailprobe_telemetry::{
    BoxFuture, Compliance, ProbeStats, RunEvent, RunSink, SeriesStore, Transition, names,
};
use opentelemetry::InstrumentationScope;
use opentelemetry::logs::{AnyValue, LogRecord, Logger, LoggerProvider, Severity};
use opentelemetry::metrics::{Histogram, MeterProvider, ObservableCounter, ObservableGauge};
use opentelemetry::trace::{SpanContext, TracerProvider};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{BatchLogProcessor, SdkLogger, SdkLoggerProvider};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracer, SdkTracerProvider};

pub use guard::GuardContext;
pub use settings::{OtlpSettings, SettingsError, Transport};

/// Spans and log records the SDK queues hold at most; beyond, new ones are dropped.
pub const MAX_QUEUE: usize = 2048;

/// Why the exporter could not be built (bad endpoint, TLS setup).
#[derive(Debug)]
pub struct BuildError(pub String);

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BuildError {}

fn build_err(signal: &str, e: impl std::fmt::Display) -> BuildError {
    BuildError(format!("OTLP {signal} exporter: {e}"))
}

/// The HTTP client of the http/protobuf transport: hyper with rustls (ring), http and https.
fn http_client(
    timeout: Duration,
) -> opentelemetry_http::hyper::HyperClient<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
> {
    let connector = mailprobe_telemetry::http::https_connector();
    opentelemetry_http::hyper::HyperClient::new(connector, timeout, None)
}

fn metadata(
    headers: &std::collections::BTreeMap<String, String>,
) -> opentelemetry_otlp::tonic_types::metadata::MetadataMap {
    let mut map = http::HeaderMap::new();
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            http::header::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            map.insert(k, v);
        }
    }
    opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(map)
}

/// Builds one signal's OTLP exporter for the chosen transport.
macro_rules! otlp_exporter {
    ($ty:path, $settings:expr, $path:literal, $signal:literal) => {{
        let s: &OtlpSettings = $settings;
        match s.transport {
            Transport::Grpc => {
                let mut b = <$ty>::builder().with_tonic().with_timeout(s.export_timeout);
                if let Some(e) = &s.endpoint {
                    b = b.with_endpoint(e.clone());
                }
                if !s.headers.is_empty() {
                    b = b.with_metadata(metadata(&s.headers));
                }
                b.build().map_err(|e| build_err($signal, e))?
            }
            Transport::HttpProtobuf => {
                let mut b = <$ty>::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary)
                    .with_timeout(s.export_timeout)
                    .with_http_client(http_client(s.export_timeout));
                if let Some(e) = s.http_endpoint($path) {
                    b = b.with_endpoint(e);
                }
                if !s.headers.is_empty() {
                    b = b.with_headers(
                        s.headers
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect::<HashMap<_, _>>(),
                    );
                }
                b.build().map_err(|e| build_err($signal, e))?
            }
        }
    }};
}

/// The running OTLP exporter.
pub struct OtlpExporter {
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
    logger_provider: SdkLoggerProvider,
    tracer: SdkTracer,
    logger: SdkLogger,
    durations: Histogram<f64>,
    lag: Histogram<f64>,
    _gauges: Vec<ObservableGauge<f64>>,
    _counters: Vec<ObservableCounter<u64>>,
    settings: OtlpSettings,
}

impl OtlpExporter {
    /// Builds the three pipelines. Must run inside the tokio runtime (the gRPC channel and the
    /// exports live on it). Nothing is sent before the first run; a collector that is not up
    /// yet is not an error.
    /// `version` and `revision` are those of the binary (`mailprobe.build.info`).
    pub fn start(
        settings: OtlpSettings,
        version: &str,
        revision: &str,
        env: &dyn Environment,
        store: Arc<SeriesStore>,
        stats: Arc<ProbeStats>,
    ) -> Result<OtlpExporter, BuildError> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| BuildError("the OTLP exporter needs a tokio runtime".into()))?;
        let cx = GuardContext {
            handle,
            stats: stats.clone(),
            timeout: settings.export_timeout,
        };
        let resource: Resource = resource::build(version, env);
        let scope = InstrumentationScope::builder("mailprobe")
            .with_version(version.to_string())
            .build();

        let tracer_provider = traces(&settings, cx.clone(), resource.clone())?;
        let tracer = tracer_provider.tracer_with_scope(scope.clone());
        let logger_provider = logs(&settings, cx.clone(), resource.clone())?;
        let logger = logger_provider.logger_with_scope(scope.clone());
        let meter_provider = metrics(&settings, cx, resource)?;
        let meter = meter_provider.meter_with_scope(scope);
        let mut gauges = instruments::store_gauges(&meter, &store);
        gauges.extend(instruments::probe_gauges(&meter, &stats));
        gauges.push(instruments::build_info(&meter, version, revision));
        let counters = instruments::counters(&meter, &stats);
        let (durations, lag) = instruments::histograms(&meter);

        Ok(OtlpExporter {
            tracer_provider,
            meter_provider,
            logger_provider,
            tracer,
            logger,
            durations,
            lag,
            _gauges: gauges,
            _counters: counters,
            settings,
        })
    }

    pub fn settings(&self) -> &OtlpSettings {
        &self.settings
    }

    fn transition_record(&self, event: &RunEvent<'_>, t: Transition, root: &SpanContext) {
        let c: &Compliance = event.compliance;
        let report = &event.outcome.report;
        let mut record = self.logger.create_log_record();
        record.set_event_name("mailprobe.compliance.transition");
        record.set_timestamp(SystemTime::now());
        let body = match t {
            Transition::Fired => {
                let items: Vec<String> = c
                    .failing
                    .iter()
                    .map(|f| match &f.remedy {
                        Some(r) => format!("{} ({}; remedy: {r})", f.id, f.summary),
                        None => format!("{} ({})", f.id, f.summary),
                    })
                    .collect();
                record.set_severity_number(Severity::Warn);
                record.set_severity_text("WARN");
                format!(
                    "mailbox {} is non-compliant: {}",
                    c.mailbox,
                    items.join("; ")
                )
            }
            Transition::Resolved => {
                record.set_severity_number(Severity::Info);
                record.set_severity_text("INFO");
                format!("mailbox {} is compliant again", c.mailbox)
            }
        };
        record.set_body(AnyValue::from(body));
        record.add_attribute("mailprobe.mailbox", c.mailbox.clone());
        record.add_attribute("mailprobe.profile", report.profile.clone());
        record.add_attribute("mailprobe.verdict", report.verdict.as_str());
        record.add_attribute("mailprobe.alert", names::ALERT_NAME);
        record.add_attribute("mailprobe.transition", t.as_str());
        record.add_attribute(
            "mailprobe.consecutive_failures",
            i64::from(c.consecutive_failures),
        );
        let list = |v: Vec<String>| {
            AnyValue::ListAny(Box::new(v.into_iter().map(AnyValue::from).collect()))
        };
        record.add_attribute(
            "mailprobe.failing_requirements",
            list(c.failing.iter().map(|f| f.id.clone()).collect()),
        );
        record.add_attribute(
            "mailprobe.remedies",
            list(c.failing.iter().filter_map(|f| f.remedy.clone()).collect()),
        );
        if root.is_valid() {
            record.set_trace_context(root.trace_id(), root.span_id(), Some(root.trace_flags()));
        }
        self.logger.emit(record);
    }

    /// The log record of `MailboxCheckIncomplete` firing (the probe could not vouch for the
    /// mailbox for `alert_after` runs) or resolving (a run was judged again).
    fn incomplete_record(&self, event: &RunEvent<'_>, t: Transition, root: &SpanContext) {
        let c: &Compliance = event.compliance;
        let report = &event.outcome.report;
        let mut record = self.logger.create_log_record();
        record.set_event_name("mailprobe.compliance.transition");
        record.set_timestamp(SystemTime::now());
        let body = match t {
            Transition::Fired => {
                let items: Vec<String> = c
                    .not_verified
                    .iter()
                    .map(|f| format!("{} ({})", f.id, f.summary))
                    .collect();
                record.set_severity_number(Severity::Warn);
                record.set_severity_text("WARN");
                format!(
                    "mailbox {} could not be verified: {}",
                    c.mailbox,
                    items.join("; ")
                )
            }
            Transition::Resolved => {
                record.set_severity_number(Severity::Info);
                record.set_severity_text("INFO");
                format!(
                    "mailbox {} is verified again ({})",
                    c.mailbox,
                    report.verdict.as_str()
                )
            }
        };
        record.set_body(AnyValue::from(body));
        record.add_attribute("mailprobe.mailbox", c.mailbox.clone());
        record.add_attribute("mailprobe.profile", report.profile.clone());
        record.add_attribute("mailprobe.verdict", report.verdict.as_str());
        record.add_attribute("mailprobe.alert", names::ALERT_NAME_INCOMPLETE);
        record.add_attribute("mailprobe.transition", t.as_str());
        record.add_attribute(
            "mailprobe.consecutive_incomplete",
            i64::from(c.consecutive_incomplete),
        );
        record.add_attribute(
            "mailprobe.not_verified_requirements",
            AnyValue::ListAny(Box::new(
                c.not_verified
                    .iter()
                    .map(|f| AnyValue::from(f.id.clone()))
                    .collect(),
            )),
        );
        if root.is_valid() {
            record.set_trace_context(root.trace_id(), root.span_id(), Some(root.trace_flags()));
        }
        self.logger.emit(record);
    }
}

/// The traces pipeline, on its own so that each signal's queue and schedule are set up in one
/// place: spans go through a bounded batch queue ([`MAX_QUEUE`]) to a guarded exporter, so a
/// slow or absent collector drops spans instead of holding up a check.
fn traces(
    settings: &OtlpSettings,
    cx: GuardContext,
    resource: Resource,
) -> Result<SdkTracerProvider, BuildError> {
    let span_exporter = otlp_exporter!(
        opentelemetry_otlp::SpanExporter,
        settings,
        "/v1/traces",
        "traces"
    );
    let mut span_batch =
        opentelemetry_sdk::trace::BatchConfigBuilder::default().with_max_queue_size(MAX_QUEUE);
    if let Some(i) = settings.export_interval {
        span_batch = span_batch.with_scheduled_delay(i);
    }
    Ok(SdkTracerProvider::builder()
        .with_resource(resource)
        .with_span_processor(
            BatchSpanProcessor::builder(guard::Guarded::new(span_exporter, cx, "traces"))
                .with_batch_config(span_batch.build())
                .build(),
        )
        .build())
}

/// The logs pipeline (the compliance transitions): like [`traces`], a bounded batch queue in
/// front of a guarded exporter, so a transition record never waits for the collector.
fn logs(
    settings: &OtlpSettings,
    cx: GuardContext,
    resource: Resource,
) -> Result<SdkLoggerProvider, BuildError> {
    let log_exporter = otlp_exporter!(
        opentelemetry_otlp::LogExporter,
        settings,
        "/v1/logs",
        "logs"
    );
    let mut log_batch =
        opentelemetry_sdk::logs::BatchConfigBuilder::default().with_max_queue_size(MAX_QUEUE);
    if let Some(i) = settings.export_interval {
        log_batch = log_batch.with_scheduled_delay(i);
    }
    Ok(SdkLoggerProvider::builder()
        .with_resource(resource)
        .with_log_processor(
            BatchLogProcessor::builder(guard::Guarded::new(log_exporter, cx, "logs"))
                .with_batch_config(log_batch.build())
                .build(),
        )
        .build())
}

/// The metrics pipeline: a periodic reader collects the instruments (see [`instruments`]) on
/// its own schedule and hands them to a guarded exporter, so a check never waits for an export.
fn metrics(
    settings: &OtlpSettings,
    cx: GuardContext,
    resource: Resource,
) -> Result<SdkMeterProvider, BuildError> {
    let metric_exporter = otlp_exporter!(
        opentelemetry_otlp::MetricExporter,
        settings,
        "/v1/metrics",
        "metrics"
    );
    let mut reader = PeriodicReader::builder(guard::Guarded::new(metric_exporter, cx, "metrics"));
    if let Some(i) = settings.export_interval {
        reader = reader.with_interval(i);
    }
    Ok(SdkMeterProvider::builder()
        .with_resource(resource)
        .with_reader(reader.build())
        .build())
}

impl RunSink for OtlpExporter {
    fn name(&self) -> &'static str {
        "otlp"
    }

    fn on_run(&self, event: &RunEvent<'_>) {
        let outcome = event.outcome;
        let root = spans::emit(&self.tracer, outcome);
        self.durations.record(
            outcome.duration.as_secs_f64(),
            &[instruments::mb(&outcome.report.mailbox)],
        );
        if let Some(t) = event.compliance.transition {
            self.transition_record(event, t, &root);
        }
        if let Some(t) = event.compliance.incomplete_transition {
            self.incomplete_record(event, t, &root);
        }
    }

    fn on_schedule_lag(&self, lag: Duration) {
        self.lag.record(lag.as_secs_f64(), &[]);
    }

    fn shutdown(&self, within: Duration) -> BoxFuture<'_, ()> {
        let t = self.tracer_provider.clone();
        let m = self.meter_provider.clone();
        let l = self.logger_provider.clone();
        Box::pin(async move {
            // The SDK's shutdown blocks: give each provider its own blocking thread, in parallel.
            let each = within.saturating_sub(Duration::from_millis(200));
            let tasks = [
                tokio::task::spawn_blocking(move || {
                    t.shutdown_with_timeout(each)
                        .err()
                        .map(|e| ("traces", e.to_string()))
                }),
                tokio::task::spawn_blocking(move || {
                    l.shutdown_with_timeout(each)
                        .err()
                        .map(|e| ("logs", e.to_string()))
                }),
                tokio::task::spawn_blocking(move || {
                    m.shutdown_with_timeout(each)
                        .err()
                        .map(|e| ("metrics", e.to_string()))
                }),
            ];
            let all = futures_join(tasks);
            match tokio::time::timeout(within, all).await {
                Ok(results) => {
                    for (signal, e) in results.into_iter().flatten() {
                        tracing::debug!(signal, error = %mailprobe_telemetry::urls::scrub(&e.to_string()), "OTLP shutdown");
                    }
                }
                Err(_) => tracing::warn!("OTLP flush did not finish in time; the rest is dropped"),
            }
        })
    }
}

async fn futures_join<T: Send + 'static>(
    tasks: [tokio::task::JoinHandle<Option<T>>; 3],
) -> Vec<Option<T>> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.ok().flatten());
    }
    out
}
