//! The admin endpoint's web configuration, in the file format of Prometheus' exporter-toolkit
//! (`--web.config.file`, as node_exporter and blackbox_exporter read it): `tls_server_config`
//! (the server's certificate and key, client certificates, TLS versions, cipher suites and
//! curves), `http_server_config.headers` (response headers) and `basic_auth_users` (user name to
//! bcrypt hash). Relative paths are relative to the file's own directory, unknown keys are
//! errors, and a setting rustls cannot honour is an error that says so, never silently ignored:
//! this file decides who may reach the endpoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use serde::Deserialize;

/// The largest web config, certificate, key or CA file read.
const MAX_FILE: u64 = 4 * 1024 * 1024;

/// `--web.config.file` as read: what the server applies.
#[derive(Clone, Default)]
pub struct WebConfig {
    /// TLS for every connection, when the file has a `tls_server_config`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Basic auth for every request, when the file has `basic_auth_users`.
    pub users: Option<Arc<crate::auth::Users>>,
    /// Headers added to every response.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("basic_auth", &self.users.is_some())
            .field("headers", &self.headers.len())
            .finish()
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFile>,
    http_server_config: Option<HttpFile>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    cert: Option<String>,
    key: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    client_ca: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// The response headers exporter-toolkit lets the file set.
const ALLOWED_HEADERS: [&str; 5] = [
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Strict-Transport-Security",
];

impl WebConfig {
    /// Reads and checks the file. Every error names the file and what to change.
    pub fn load(path: &Path) -> Result<WebConfig, String> {
        let shown = path.display().to_string();
        let text = mailprobe_core::file::read_to_string(
            path,
            MAX_FILE,
            mailprobe_core::file::READ_DEADLINE,
        )
        .map_err(|e| format!("--web.config.file: {e}"))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        WebConfig::parse(&text, dir).map_err(|e| format!("--web.config.file {shown}: {e}"))
    }

    /// Parses the file's text; relative paths are taken from `dir`.
    pub fn parse(text: &str, dir: &Path) -> Result<WebConfig, String> {
        let file: File = if text.trim().is_empty() {
            File::default()
        } else {
            serde_norway::from_str(text).map_err(|e| {
                let mut m = e.to_string();
                if m.contains("unknown field") {
                    m.push_str("; the file takes tls_server_config, http_server_config and basic_auth_users (the exporter-toolkit format)");
                }
                m
            })?
        };
        let mut config = WebConfig::default();
        if let Some(http) = file.http_server_config {
            // Only HTTP/1.1 is served; `http2: true` (the toolkit's default) asks for nothing
            // this server refuses, so both values are taken.
            let _ = http.http2;
            for (name, value) in http.headers.unwrap_or_default() {
                let Some(allowed) = ALLOWED_HEADERS
                    .iter()
                    .find(|h| h.eq_ignore_ascii_case(&name))
                else {
                    return Err(format!(
                        "http_server_config.headers: `{name}` cannot be set; allowed: {}",
                        ALLOWED_HEADERS.join(", ")
                    ));
                };
                let name = http::HeaderName::from_bytes(allowed.as_bytes())
                    .map_err(|e| format!("http_server_config.headers: {e}"))?;
                let value = http::HeaderValue::from_str(&value).map_err(|_| {
                    format!("http_server_config.headers.{allowed}: the value is not a valid header value")
                })?;
                config.headers.push((name, value));
            }
        }
        // As in the toolkit, an empty map asks for no authentication.
        if let Some(users) = file.basic_auth_users.filter(|u| !u.is_empty()) {
            config.users = Some(Arc::new(crate::auth::Users::new(users)?));
        }
        if let Some(tls) = file.tls_server_config {
            config.tls = tls_config(tls, dir)?;
        }
        Ok(config)
    }
}

fn read_pem(path: &Path, dir: &Path) -> Result<Vec<u8>, String> {
    let full = dir.join(path);
    mailprobe_core::file::read(&full, MAX_FILE, mailprobe_core::file::READ_DEADLINE)
        .map(|mut b| std::mem::take(&mut *b))
        .map_err(|e| e.to_string())
}

/// Either the inline PEM or the file's.
fn pem(
    inline: Option<String>,
    file: Option<PathBuf>,
    what: &str,
    dir: &Path,
) -> Result<Option<Vec<u8>>, String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(format!(
            "tls_server_config: both `{what}` and `{what}_file` are set; keep one"
        )),
        (Some(text), None) => Ok(Some(text.into_bytes())),
        (None, Some(path)) => {
            Ok(Some(read_pem(&path, dir).map_err(|e| {
                format!("tls_server_config.{what}_file: {e}")
            })?))
        }
        (None, None) => Ok(None),
    }
}

fn tls_config(tls: TlsFile, dir: &Path) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    let cert = pem(tls.cert, tls.cert_file, "cert", dir)?;
    let key = pem(tls.key, tls.key_file, "key", dir)?;
    let (cert, key) = match (cert, key) {
        // exporter-toolkit: a tls_server_config without a certificate serves plain HTTP.
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err("tls_server_config: a certificate without a key; set key_file".into());
        }
        (None, Some(_)) => {
            return Err("tls_server_config: a key without a certificate; set cert_file".into());
        }
        (Some(c), Some(k)) => (c, k),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls_server_config: the certificate is not PEM: {e}"))?;
    if chain.is_empty() {
        return Err("tls_server_config: no certificate in the certificate PEM".into());
    }
    let key = PrivateKeyDer::from_pem_slice(&key)
        .map_err(|e| format!("tls_server_config: no usable private key in the key PEM: {e}"))?;

    if tls.client_allowed_sans.is_some_and(|s| !s.is_empty()) {
        return Err("tls_server_config.client_allowed_sans is not supported; restrict clients with client_ca_file".into());
    }
    let _ = tls.prefer_server_cipher_suites;

    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(names) = tls.cipher_suites.filter(|n| !n.is_empty()) {
        let mut chosen = Vec::new();
        for name in &names {
            let found = provider.cipher_suites.iter().find(|s| {
                let ours = format!("{:?}", s.suite());
                ours == *name || ours.strip_suffix("_SHA256") == Some(name.as_str())
            });
            match found {
                Some(s) => chosen.push(*s),
                None => {
                    return Err(format!(
                        "tls_server_config.cipher_suites: `{name}` is not supported; supported: {}",
                        provider
                            .cipher_suites
                            .iter()
                            .filter(|s| s.tls13().is_none())
                            .map(|s| format!("{:?}", s.suite()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
        // As in Go, the list chooses among TLS 1.2 suites; TLS 1.3's are always offered.
        chosen.extend(
            provider
                .cipher_suites
                .iter()
                .filter(|s| s.tls13().is_some())
                .copied(),
        );
        provider.cipher_suites = chosen;
    }
    if let Some(curves) = tls.curve_preferences.filter(|c| !c.is_empty()) {
        let mut chosen = Vec::new();
        for curve in &curves {
            let group = match curve.as_str() {
                "X25519" => rustls::crypto::ring::kx_group::X25519,
                "CurveP256" => rustls::crypto::ring::kx_group::SECP256R1,
                "CurveP384" => rustls::crypto::ring::kx_group::SECP384R1,
                other => {
                    return Err(format!(
                        "tls_server_config.curve_preferences: `{other}` is not supported; use X25519, CurveP256 or CurveP384"
                    ));
                }
            };
            chosen.push(group);
        }
        provider.kx_groups = chosen;
    }
    let version = |v: &Option<String>, key: &str, default: u8| -> Result<u8, String> {
        match v.as_deref() {
            None | Some("") => Ok(default),
            Some("TLS12") => Ok(12),
            Some("TLS13") => Ok(13),
            Some(old @ ("TLS10" | "TLS11")) => Err(format!(
                "tls_server_config.{key}: {old} is not offered by this server (TLS 1.2 and 1.3 only); use TLS12 or TLS13"
            )),
            Some(other) => Err(format!(
                "tls_server_config.{key}: `{other}` is not a TLS version; use TLS12 or TLS13"
            )),
        }
    };
    let min = version(&tls.min_version, "min_version", 12)?;
    let max = version(&tls.max_version, "max_version", 13)?;
    if min > max {
        return Err("tls_server_config: min_version is above max_version".into());
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, p)| p)
            .collect();
    let builder = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?;

    let auth_type = tls.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let client_ca = pem(tls.client_ca, tls.client_ca_file, "client_ca", dir)?;
    let builder = match auth_type {
        "" | "NoClientCert" => {
            if client_ca.is_some() {
                return Err("tls_server_config: client_ca_file is set but client_auth_type is NoClientCert; set client_auth_type: RequireAndVerifyClientCert".into());
            }
            builder.with_no_client_auth()
        }
        "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {
            let Some(ca) = client_ca else {
                return Err(format!(
                    "tls_server_config: client_auth_type {auth_type} needs client_ca_file"
                ));
            };
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&ca) {
                let c = c.map_err(|e| format!("tls_server_config: client CA is not PEM: {e}"))?;
                roots
                    .add(c)
                    .map_err(|e| format!("tls_server_config: client CA: {e}"))?;
            }
            let mut verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::new(rustls::crypto::ring::default_provider()),
            );
            if auth_type == "VerifyClientCertIfGiven" {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier
                .build()
                .map_err(|e| format!("tls_server_config: client CA: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        "RequestClientCert" | "RequireAnyClientCert" => {
            return Err(format!(
                "tls_server_config.client_auth_type {auth_type} (a client certificate nobody verifies) is not supported; use RequireAndVerifyClientCert or VerifyClientCertIfGiven with client_ca_file"
            ));
        }
        other => {
            return Err(format!(
                "tls_server_config.client_auth_type `{other}` is not known; use NoClientCert, RequireAndVerifyClientCert or VerifyClientCertIfGiven"
            ));
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        format!("tls_server_config: the certificate and key do not go together: {e}")
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// What `mailprobe run` was started with for the admin endpoint.
#[derive(Clone, Debug, Default)]
pub struct WebOptions {
    pub config: WebConfig,
    /// `--web.enable-lifecycle`: `POST /-/reload` is served.
    pub lifecycle: bool,
    /// Why the web config file could not be applied: every request is then answered 503 with
    /// this message, never served without the TLS or authentication the file asks for (and the
    /// process keeps running: a sidecar must never hold its pod back).
    pub refused: Option<String>,
}

static OPTIONS: std::sync::OnceLock<Arc<WebOptions>> = std::sync::OnceLock::new();

/// Sets the options every later [`crate::PrometheusExporter::serve`] applies (once per process:
/// `mailprobe run` calls it from its flags before it starts anything).
pub fn configure(options: WebOptions) {
    let _ = OPTIONS.set(Arc::new(options));
}

/// The options set by [`configure`], or the defaults (plain HTTP, no auth, no lifecycle API).
pub fn options() -> Arc<WebOptions> {
    OPTIONS.get().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_unsupported_settings_are_errors() {
        let dir = Path::new("/nonexistent");
        let e = WebConfig::parse("tls_config: {}\n", dir).unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
        let e = WebConfig::parse("http_server_config:\n  headers:\n    Set-Cookie: x\n", dir)
            .unwrap_err();
        assert!(e.contains("cannot be set"), "{e}");
        let e = WebConfig::parse("basic_auth_users:\n  alice: notahash\n", dir).unwrap_err();
        assert!(e.contains("alice"), "{e}");
        assert!(!e.contains("notahash"), "{e}");
        let e = WebConfig::parse("tls_server_config:\n  cert_file: a.pem\n", dir).unwrap_err();
        assert!(e.contains("cert_file"), "{e}");
        // An empty file and an empty tls_server_config serve plain HTTP, as the toolkit does.
        assert!(WebConfig::parse("", dir).unwrap().tls.is_none());
        assert!(
            WebConfig::parse("tls_server_config: {}\n", dir)
                .unwrap()
                .tls
                .is_none()
        );
    }
}
