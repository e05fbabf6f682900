//! Where and how to export: the config file's `otlp:` section, completed by the standard
//! `OTEL_*` environment variables where the file is silent.

use std::collections::BTreeMap;
use std::time::Duration;

use mailprobe_core::secret::Environment;
use mailprobe_runtime::config::OtlpConfig;

/// The OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    HttpProtobuf,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::HttpProtobuf => "http/protobuf",
        }
    }
}

/// The resolved OTLP settings.
#[derive(Clone, Debug, PartialEq)]
pub struct OtlpSettings {
    pub transport: Transport,
    /// The base endpoint from the config file. `None`: the SDK reads
    /// `OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`, else
    /// its default (`http://localhost:4317` for gRPC, `http://localhost:4318` for HTTP).
    pub endpoint: Option<String>,
    /// Extra headers (gRPC metadata); `OTEL_EXPORTER_OTLP_HEADERS` is added by the SDK.
    pub headers: BTreeMap<String, String>,
    /// How often metrics are exported, and the batch delay of spans and logs when set in the
    /// file. `None`: the SDK defaults (`OTEL_METRIC_EXPORT_INTERVAL`, 60 s; `OTEL_BSP_SCHEDULE_DELAY`,
    /// 5 s; `OTEL_BLRP_SCHEDULE_DELAY`, 1 s).
    pub export_interval: Option<Duration>,
    /// The bound on one export call (the collector may be down: a check never waits for it).
    pub export_timeout: Duration,
}

/// Errors in the OTLP settings (reported at start-up, as a configuration error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError(pub String);

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SettingsError {}

const ENDPOINT_VARS: &[&str] = &[
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
];

impl OtlpSettings {
    /// `None` when OTLP is off: no `otlp:` section and no `OTEL_EXPORTER_OTLP_*ENDPOINT`
    /// variable, or `OTEL_SDK_DISABLED=true`.
    pub fn resolve(
        config: Option<&OtlpConfig>,
        env: &dyn Environment,
    ) -> Result<Option<OtlpSettings>, SettingsError> {
        if env
            .var("OTEL_SDK_DISABLED")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        {
            return Ok(None);
        }
        let from_env = ENDPOINT_VARS
            .iter()
            .any(|v| env.var(v).is_some_and(|s| !s.trim().is_empty()));
        if config.is_none() && !from_env {
            return Ok(None);
        }
        let empty = OtlpConfig::default();
        let config = config.unwrap_or(&empty);
        let protocol = config
            .protocol
            .clone()
            .or_else(|| env.var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .unwrap_or_else(|| "grpc".to_string());
        let transport = match protocol.trim() {
            "grpc" => Transport::Grpc,
            "http/protobuf" => Transport::HttpProtobuf,
            other => {
                return Err(SettingsError(format!(
                    "OTLP protocol `{other}` is not supported; use grpc or http/protobuf (otlp.protocol or OTEL_EXPORTER_OTLP_PROTOCOL)"
                )));
            }
        };
        let endpoint = config
            .endpoint
            .as_ref()
            .map(|e| e.trim().trim_end_matches('/').to_string())
            .filter(|e| !e.is_empty());
        if let Some(e) = endpoint
            .as_ref()
            .filter(|e| !(e.starts_with("http://") || e.starts_with("https://")))
        {
            // The value is not echoed: written without a scheme, there is no telling its host
            // from a key in its query.
            let _ = e;
            return Err(SettingsError(
                "otlp.endpoint must start with http:// or https:// (e.g. http://127.0.0.1:4317); the value is not shown, as it may hold a key".into(),
            ));
        }
        Ok(Some(OtlpSettings {
            transport,
            endpoint,
            headers: config.headers.clone(),
            export_interval: config.export_interval,
            export_timeout: Duration::from_secs(5),
        }))
    }

    /// The endpoint of one signal for HTTP (`/v1/traces`, ...), from the file's base endpoint.
    pub fn http_endpoint(&self, signal_path: &str) -> Option<String> {
        self.endpoint.as_ref().map(|e| format!("{e}{signal_path}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn off_without_config_or_env() {
        assert_eq!(OtlpSettings::resolve(None, &env(&[])).unwrap(), None);
    }

    #[test]
    fn env_alone_turns_it_on_with_its_protocol() {
        let s = OtlpSettings::resolve(
            None,
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.transport, Transport::HttpProtobuf);
        // The SDK reads the variable itself (and appends /v1/<signal>).
        assert_eq!(s.endpoint, None);
    }

    #[test]
    fn the_file_wins_over_env() {
        let c = OtlpConfig {
            endpoint: Some("http://127.0.0.1:4318/".into()),
            protocol: Some("http/protobuf".into()),
            ..OtlpConfig::default()
        };
        let s = OtlpSettings::resolve(Some(&c), &env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]))
            .unwrap()
            .unwrap();
        assert_eq!(s.transport, Transport::HttpProtobuf);
        assert_eq!(
            s.http_endpoint("/v1/traces").as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
    }

    #[test]
    fn disabled_and_bad_values() {
        let c = OtlpConfig::default();
        assert_eq!(
            OtlpSettings::resolve(Some(&c), &env(&[("OTEL_SDK_DISABLED", "true")])).unwrap(),
            None
        );
        let e = OtlpSettings::resolve(
            Some(&c),
            &env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]),
        )
        .unwrap_err();
        assert!(e.0.contains("http/json"), "{e}");
        let c = OtlpConfig {
            endpoint: Some("collector:4317".into()),
            ..OtlpConfig::default()
        };
        assert!(OtlpSettings::resolve(Some(&c), &env(&[])).is_err());
    }
}
