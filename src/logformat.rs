//! The daemon's log lines in the formats Prometheus exporters write (exporter-toolkit's
//! `--log.format`): logfmt (`ts=… level=info msg="…" key=value`), or one JSON object per line.
//! Both carry the same keys: `ts` (RFC 3339, UTC), `level`, `target`, `msg`, then the event's
//! own fields and those of the spans it happened in.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// `--log.format`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `key=value` pairs, values quoted where they hold spaces, quotes or `=`.
    #[default]
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// `--log.level`: the least severe level written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// Formats each event as one logfmt or JSON line.
pub struct Lines(pub LogFormat);

/// An event's fields in the order they were recorded, message apart.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    pairs: Vec<(String, Value)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_string()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // `%x` fields arrive here too, wrapped so that Debug prints their Display.
        self.put(field, Value::String(format!("{value:?}")));
    }
}

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.pairs.push((field.name().to_string(), value));
        }
    }
}

/// A logfmt value: bare when it is a plain token, else quoted with `\"`, `\\` and `\n` escaped.
fn logfmt_value(out: &mut String, value: &str) {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != '=' && c != '\\');
    if plain {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let ts = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let level = meta.level().as_str().to_ascii_lowercase();
        // The spans the event happened in, outermost first, by name.
        let spans: Vec<String> = ctx
            .event_scope()
            .map(|scope| scope.from_root().map(|s| s.name().to_string()).collect())
            .unwrap_or_default();
        let mut head: Vec<(String, Value)> = vec![
            ("ts".into(), Value::String(ts)),
            ("level".into(), Value::String(level)),
            ("target".into(), Value::String(meta.target().to_string())),
        ];
        if !spans.is_empty() {
            head.push(("span".into(), Value::String(spans.join(":"))));
        }
        head.push((
            "msg".into(),
            Value::String(fields.message.take().unwrap_or_default()),
        ));
        let all = head.into_iter().chain(fields.pairs);
        match self.0 {
            LogFormat::Json => {
                let map: Map<String, Value> = all.collect();
                let line = serde_json::to_string(&Value::Object(map)).map_err(|_| fmt::Error)?;
                writeln!(writer, "{line}")
            }
            LogFormat::Logfmt => {
                let mut line = String::new();
                for (i, (k, v)) in all.enumerate() {
                    if i > 0 {
                        line.push(' ');
                    }
                    line.push_str(&k);
                    line.push('=');
                    match v {
                        Value::String(s) => logfmt_value(&mut line, &s),
                        other => logfmt_value(&mut line, &other.to_string()),
                    }
                }
                writeln!(writer, "{line}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(s: &str) -> String {
        let mut out = String::new();
        logfmt_value(&mut out, s);
        out
    }

    #[test]
    fn logfmt_values_are_quoted_only_when_they_must_be() {
        assert_eq!(value("lab"), "lab");
        assert_eq!(value("imap.login,smtp.login"), "imap.login,smtp.login");
        assert_eq!(value(""), "\"\"");
        assert_eq!(value("a b"), "\"a b\"");
        assert_eq!(value("say \"hi\"\n"), "\"say \\\"hi\\\"\\n\"");
        assert_eq!(value("k=v"), "\"k=v\"");
    }
}
