//! A run becomes a span tree, built after the fact from the recorded timings:
//!
//! ```text
//! mailprobe.check                       mailprobe.mailbox, mailprobe.profile, mailprobe.verdict
//! ├── mailprobe.plugin reachability     mailprobe.plugin = reachability
//! │   ├── connect                       server.address, server.port, network.transport, ...
//! │   └── ...
//! └── mailprobe.plugin tls
//!     └── tls_handshake                 tls.protocol.version, tls.cipher, error.type on failure
//! ```

use std::time::{Duration, SystemTime};

use mailprobe_core::requirement::Verdict;
use mailprobe_core::{Status as ReqStatus, Step};
use mailprobe_runtime::runner::RunOutcome;
use mailprobe_telemetry::names;
use opentelemetry::trace::{Span, SpanContext, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue, Value};

/// Semantic-convention attributes whose values are integers.
fn is_int_attribute(key: &str) -> bool {
    key.ends_with(".port")
}

fn step_attributes(step: &Step) -> Vec<KeyValue> {
    let mut attrs: Vec<KeyValue> = step
        .attributes
        .iter()
        .map(|(k, v)| {
            let value = match v.parse::<i64>() {
                Ok(n) if is_int_attribute(k) => Value::I64(n),
                _ => Value::from(v.clone()),
            };
            KeyValue::new(k.clone(), value)
        })
        .collect();
    if let Some(p) = step.protocol {
        attrs.push(KeyValue::new("mailprobe.protocol", p.prefix()));
    }
    attrs.push(KeyValue::new("mailprobe.plugin", step.plugin.clone()));
    if let Some(t) = &step.error_type {
        attrs.push(KeyValue::new("error.type", t.clone()));
    }
    attrs
}

fn end(start: SystemTime, duration: Duration) -> SystemTime {
    start.checked_add(duration).unwrap_or(start)
}

/// Emits the span tree of one run and returns the root span's context (for log correlation).
pub fn emit<T: Tracer>(tracer: &T, outcome: &RunOutcome) -> SpanContext
where
    T::Span: Send + Sync + 'static,
{
    let report = &outcome.report;
    let failing: Vec<&str> = report
        .requirements
        .iter()
        .filter(|r| r.status == ReqStatus::Fail)
        .map(|r| r.id.as_str())
        .collect();
    let mut root_attrs = vec![
        KeyValue::new("mailprobe.mailbox", report.mailbox.clone()),
        KeyValue::new("mailprobe.profile", report.profile.clone()),
        KeyValue::new("mailprobe.verdict", report.verdict.as_str()),
    ];
    if !failing.is_empty() {
        root_attrs.push(KeyValue::new("mailprobe.failing", failing.join(",")));
    }
    let root = tracer
        .span_builder(names::SPAN_CHECK)
        .with_kind(SpanKind::Internal)
        .with_start_time(outcome.started_at)
        .with_attributes(root_attrs)
        .start_with_context(tracer, &Context::new());
    let root_sc = root.span_context().clone();
    let root_cx = Context::new().with_span(root);
    if report.verdict == Verdict::NonCompliant {
        root_cx.span().set_status(Status::error(format!(
            "non_compliant: {}",
            failing.join(", ")
        )));
    } else if let Some(line) = report.incomplete_line() {
        root_cx
            .span()
            .set_status(Status::error(format!("incomplete: {line}")));
    }

    let mut placed = vec![false; outcome.steps.len()];
    for run in &outcome.plugin_runs {
        let span = tracer
            .span_builder(format!("{} {}", names::SPAN_PLUGIN_PREFIX, run.plugin))
            .with_kind(SpanKind::Internal)
            .with_start_time(run.start)
            .with_attributes(vec![KeyValue::new("mailprobe.plugin", run.plugin.clone())])
            .start_with_context(tracer, &root_cx);
        let plugin_cx = root_cx.with_span(span);
        for (i, step) in outcome.steps.iter().enumerate() {
            if !placed[i] && step.plugin == run.plugin {
                placed[i] = true;
                emit_step(tracer, step, &plugin_cx);
            }
        }
        let span = plugin_cx.span();
        if let (Some(e), Some(kind)) = (run.error(), run.outcome.error_type()) {
            span.set_attribute(KeyValue::new("error.type", kind));
            span.set_status(Status::error(e));
        }
        span.end_with_timestamp(end(run.start, run.duration));
    }
    // Steps of a plugin that left no run record go under the root.
    for (i, step) in outcome.steps.iter().enumerate() {
        if !placed[i] {
            emit_step(tracer, step, &root_cx);
        }
    }
    root_cx
        .span()
        .end_with_timestamp(end(outcome.started_at, outcome.duration));
    root_sc
}

fn emit_step<T: Tracer>(tracer: &T, step: &Step, parent: &Context) {
    let kind = if step.attributes.contains_key("server.address") {
        SpanKind::Client
    } else {
        SpanKind::Internal
    };
    let mut span = tracer
        .span_builder(step.name.clone())
        .with_kind(kind)
        .with_start_time(step.start)
        .with_attributes(step_attributes(step))
        .start_with_context(tracer, parent);
    if step.error_type.is_some() || step.error.is_some() {
        span.set_status(Status::error(step.error.clone().unwrap_or_default()));
    }
    span.end_with_timestamp(end(step.start, step.duration));
}
