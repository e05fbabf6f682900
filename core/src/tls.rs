//! The probe's own TLS client: one rustls configuration that records the server's chain and the
//! verification outcome instead of aborting on an untrusted certificate, so that a bad
//! certificate is reported (name, trust and expiry) rather than hiding everything behind it.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::error::NetError;
use crate::profile::TlsVersion;

/// What one TLS handshake established.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Handshake {
    pub version: TlsVersion,
    /// IANA name of the cipher suite.
    pub cipher: String,
    /// The chain as the server sent it, leaf first (DER).
    #[serde(skip)]
    pub chain: Vec<Vec<u8>>,
    /// Whether the chain verified for the host name against the trust store, at the time of
    /// the handshake (what a strict client would decide).
    pub verified: bool,
    pub verify_error: Option<String>,
}

/// Trust anchors: the system's roots plus the user's `--ca-file`.
#[derive(Clone, Debug)]
pub struct Trust {
    pub roots: Arc<RootCertStore>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error(
        "cannot read CA file {path}: {reason}; give a PEM file with one or more CA certificates"
    )]
    CaFile { path: String, reason: String },
    #[error(
        "CA file {path} holds no certificate; give a PEM file with one or more CA certificates"
    )]
    CaFileEmpty { path: String },
}

fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

impl Trust {
    pub fn load(ca_file: Option<&Path>) -> Result<Trust, TrustError> {
        let mut roots = RootCertStore::empty();
        let (_added, _ignored) = roots.add_parsable_certificates(system_roots().iter().cloned());
        if let Some(path) = ca_file {
            let shown = path.display().to_string();
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| TrustError::CaFile {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?
                .collect::<Result<_, _>>()
                .map_err(|e| TrustError::CaFile {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
            if certs.is_empty() {
                return Err(TrustError::CaFileEmpty { path: shown });
            }
            for c in certs {
                roots.add(c).map_err(|e| TrustError::CaFile {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
            }
        }
        Ok(Trust {
            roots: Arc::new(roots),
        })
    }
}

type Outcome = Arc<Mutex<Option<Result<(), String>>>>;

/// Verifies like a strict client, records the outcome, and lets the handshake go on.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Option<Arc<WebPkiServerVerifier>>,
    schemes: Vec<SignatureScheme>,
    outcome: Outcome,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = match &self.inner {
            Some(v) => v
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => Err(
                "no trust anchors: the system has no CA certificates and no --ca-file was given"
                    .into(),
            ),
        };
        if let Ok(mut o) = self.outcome.lock() {
            *o = Some(result);
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(trust: &Trust, outcome: Outcome) -> Result<ClientConfig, NetError> {
    let provider = provider();
    let inner = if trust.roots.is_empty() {
        None
    } else {
        Some(
            WebPkiServerVerifier::builder_with_provider(trust.roots.clone(), provider.clone())
                .build()
                .map_err(|e| NetError::Tls(format!("trust store: {e}")))?,
        )
    };
    let verifier = RecordingVerifier {
        inner,
        schemes: provider
            .signature_verification_algorithms
            .supported_schemes(),
        outcome,
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| NetError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(config)
}

/// Does a TLS handshake over `stream` for `host` (SNI and name checks use it), within `wait`.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    host: &str,
    trust: &Trust,
    wait: Duration,
) -> Result<(TlsStream<S>, Handshake), NetError> {
    let outcome: Outcome = Arc::new(Mutex::new(None));
    let config = client_config(trust, outcome.clone())?;
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| NetError::Tls(format!("`{host}` is not a valid server name")))?;
    let connector = TlsConnector::from(Arc::new(config));
    let tls = match tokio::time::timeout(wait, connector.connect(name, stream)).await {
        Err(_) => {
            return Err(NetError::Timeout {
                waiting_for: "the TLS handshake".into(),
                after: wait,
            });
        }
        Ok(Err(e)) => return Err(classify_handshake_error(&e)),
        Ok(Ok(s)) => s,
    };
    let (_, conn) = tls.get_ref();
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => TlsVersion::Tls13,
        _ => TlsVersion::Tls12,
    };
    let cipher = conn
        .negotiated_cipher_suite()
        .map(|s| iana_cipher_name(s.suite()))
        .unwrap_or_default();
    let chain = conn
        .peer_certificates()
        .map(|c| c.iter().map(|d| d.as_ref().to_vec()).collect())
        .unwrap_or_default();
    let verdict = outcome
        .lock()
        .ok()
        .and_then(|o| o.clone())
        .unwrap_or_else(|| Err("the server sent no certificate".into()));
    Ok((
        tls,
        Handshake {
            version,
            cipher,
            chain,
            verified: verdict.is_ok(),
            verify_error: verdict.err(),
        },
    ))
}

fn classify_handshake_error(e: &std::io::Error) -> NetError {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionReset | ConnectionAborted | BrokenPipe => NetError::Reset,
        UnexpectedEof => NetError::Closed(" during the TLS handshake".into()),
        _ => NetError::Tls(e.to_string()),
    }
}

/// rustls calls TLS 1.3 suites `TLS13_*`; IANA and OpenTelemetry call them `TLS_*`.
pub fn iana_cipher_name(suite: rustls::CipherSuite) -> String {
    let name = format!("{suite:?}");
    match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name,
    }
}
