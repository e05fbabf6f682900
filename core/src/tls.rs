//! The probe's own TLS client: one rustls configuration that records the server's chain and the
//! verification outcome instead of aborting on an untrusted certificate, so that a bad
//! certificate is reported (name, trust and expiry) rather than hiding everything behind it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

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

mod conn;
#[cfg(feature = "legacy-tls")]
mod legacy;

pub use conn::{
    LEGACY_SWITCH, TlsConn, TlsEngine, connect, legacy_engine, legacy_engine_available,
    rustls_speaks,
};

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
    /// The TLS library that completed the handshake: rustls, or OpenSSL for a server rustls
    /// cannot speak to (see [`legacy_engine`]).
    #[serde(default)]
    pub engine: TlsEngine,
}

/// Trust anchors: the system's roots plus the user's `--ca-file`.
///
/// Cheap to clone. The anchors themselves live in a process-wide cache, one store per distinct
/// CA set, so ten thousand mailboxes with the same `ca_file` share one store instead of holding
/// ten thousand copies of every system root.
#[derive(Clone, Debug)]
pub struct Trust {
    pub roots: Roots,
}

/// The trust anchors of one [`Trust`], parsed on first use: a run that never verifies a
/// certificate (`--only reachability`) never reads the system's CA bundle. Dereferences to the
/// shared [`RootCertStore`].
#[derive(Clone)]
pub struct Roots {
    ca: Option<CaFile>,
    cell: Arc<OnceLock<Arc<RootCertStore>>>,
}

/// A `--ca-file` as it was when loaded: the cache key is the path and its modification time, so
/// a replaced file is read again by the next [`Trust::load`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CaKey {
    path: PathBuf,
    modified: Option<SystemTime>,
}

#[derive(Clone, Debug)]
struct CaFile {
    key: CaKey,
    certs: Arc<[CertificateDer<'static>]>,
}

impl std::fmt::Debug for Roots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Roots")
            .field("ca_file", &self.ca.as_ref().map(|c| &c.key.path))
            .field("loaded", &self.is_loaded())
            .finish()
    }
}

impl std::ops::Deref for Roots {
    type Target = RootCertStore;
    fn deref(&self) -> &RootCertStore {
        self.store()
    }
}

impl Roots {
    /// The shared store, parsed (once per process and CA set) on the first call.
    pub fn store(&self) -> &Arc<RootCertStore> {
        self.cell.get_or_init(|| shared_store(self.ca.as_ref()))
    }

    /// Whether this trust's anchors were needed yet.
    pub fn is_loaded(&self) -> bool {
        self.cell.get().is_some()
    }
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

/// Where distributions keep the whole system trust store as one PEM file. Reading it is one
/// `open`; `rustls_native_certs` also reads every file of `/etc/ssl/certs` (~150 here).
const BUNDLE_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The system bundle file: `SSL_CERT_FILE` when set (as OpenSSL and rustls-native-certs honour
/// it), else the first of [`BUNDLE_FILES`] that exists. `None` when only a directory is
/// configured (`SSL_CERT_DIR`) or no bundle exists: then rustls-native-certs looks.
fn bundle_file() -> Option<PathBuf> {
    if let Some(f) = std::env::var_os("SSL_CERT_FILE") {
        return Some(f.into());
    }
    if std::env::var_os("SSL_CERT_DIR").is_some() {
        return None;
    }
    BUNDLE_FILES.iter().map(PathBuf::from).find(|p| p.is_file())
}

fn system_certs() -> Vec<CertificateDer<'static>> {
    if let Some(path) = bundle_file()
        && let Ok(iter) = CertificateDer::pem_file_iter(&path)
    {
        let certs: Vec<_> = iter.filter_map(Result::ok).collect();
        if !certs.is_empty() {
            return certs;
        }
    }
    rustls_native_certs::load_native_certs().certs
}

/// The system roots alone, parsed once per process.
fn system_store() -> &'static Arc<RootCertStore> {
    static SYSTEM: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    SYSTEM.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        let (_added, _ignored) = roots.add_parsable_certificates(system_certs());
        Arc::new(roots)
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One store per distinct CA set (system roots + a CA file at a given mtime), shared.
fn shared_store(ca: Option<&CaFile>) -> Arc<RootCertStore> {
    let Some(ca) = ca else {
        return system_store().clone();
    };
    static STORES: OnceLock<Mutex<HashMap<CaKey, Arc<RootCertStore>>>> = OnceLock::new();
    let stores = STORES.get_or_init(Default::default);
    if let Some(s) = lock(stores).get(&ca.key) {
        return s.clone();
    }
    let mut roots = RootCertStore {
        roots: system_store().roots.clone(),
    };
    // The CA file was parsed and checked by `Trust::load`; a certificate webpki cannot use as
    // an anchor was reported there.
    let (_added, _ignored) = roots.add_parsable_certificates(ca.certs.iter().cloned());
    let roots = Arc::new(roots);
    let mut map = lock(stores);
    // A file replaced since: its older store is no longer handed out.
    map.retain(|k, _| k.path != ca.key.path || k.modified == ca.key.modified);
    map.entry(ca.key.clone()).or_insert(roots).clone()
}

/// Reads and checks a CA file, once per path and modification time.
fn ca_file(path: &Path) -> Result<CaFile, TrustError> {
    static FILES: OnceLock<Mutex<HashMap<CaKey, Arc<[CertificateDer<'static>]>>>> = OnceLock::new();
    let files = FILES.get_or_init(Default::default);
    let shown = path.display().to_string();
    let read_err = |e: String| TrustError::CaFile {
        path: shown.clone(),
        reason: e,
    };
    let modified = std::fs::metadata(path)
        .map_err(|e| read_err(e.to_string()))?
        .modified()
        .ok();
    let key = CaKey {
        path: path.to_path_buf(),
        modified,
    };
    if let Some(certs) = lock(files).get(&key) {
        return Ok(CaFile {
            key,
            certs: certs.clone(),
        });
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| read_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(TrustError::CaFileEmpty { path: shown });
    }
    // Checked here, where the error can name the file, rather than when the store is built.
    let mut check = RootCertStore::empty();
    for c in &certs {
        check.add(c.clone()).map_err(|e| read_err(e.to_string()))?;
    }
    let certs: Arc<[CertificateDer<'static>]> = certs.into();
    let mut map = lock(files);
    map.retain(|k, _| k.path != key.path);
    map.insert(key.clone(), certs.clone());
    Ok(CaFile { key, certs })
}

impl Trust {
    /// Checks the CA file (read once per path and mtime); the system roots are read later, on
    /// the first certificate to verify.
    pub fn load(ca_file: Option<&Path>) -> Result<Trust, TrustError> {
        let ca = ca_file.map(self::ca_file).transpose()?;
        Ok(Trust {
            roots: Roots {
                ca,
                cell: Arc::new(OnceLock::new()),
            },
        })
    }
}

type Outcome = Arc<Mutex<Option<Result<(), String>>>>;

/// Verifies like a strict client, records the outcome, and lets the handshake go on.
#[derive(Debug)]
struct RecordingVerifier {
    /// Read only when a certificate arrives: that is when the anchors get parsed.
    roots: Roots,
    provider: Arc<rustls::crypto::CryptoProvider>,
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
        let result = verify_chain(
            &self.roots,
            &self.provider,
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
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

/// What a strict client decides about a chain for `server_name`: the one verification of both
/// engines, so `verified` and `verify_error` mean the same whichever completed the handshake.
pub(crate) fn verify_chain(
    roots: &Roots,
    provider: &Arc<rustls::crypto::CryptoProvider>,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
    ocsp_response: &[u8],
    now: UnixTime,
) -> Result<(), String> {
    let store = roots.store();
    if store.is_empty() {
        return Err(
            "no trust anchors: the system has no CA certificates and no --ca-file was given".into(),
        );
    }
    WebPkiServerVerifier::builder_with_provider(store.clone(), provider.clone())
        .build()
        .map_err(|e| format!("trust store: {e}"))
        .and_then(|v| {
            v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(trust: &Trust, outcome: Outcome) -> Result<ClientConfig, NetError> {
    let provider = provider();
    let verifier = RecordingVerifier {
        roots: trust.roots.clone(),
        provider: provider.clone(),
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
            engine: TlsEngine::Rustls,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed CA (P-256, valid until 2126) used only as a trust anchor here.
    const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBmjCCAT+gAwIBAgIUAfG6KABvDHQe6FVYtNbTojw9FUYwCgYIKoZIzj0EAwIw
ITEfMB0GA1UEAwwWbWFpbHByb2JlIHVuaXQtdGVzdCBDQTAgFw0yNjEyMDEwNjE1
MzZaGA8yMTI2MTEwNzA2MTUzNlowITEfMB0GA1UEAwwWbWFpbHByb2JlIHVuaXQt
dGVzdCBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABIC5QHNV91U32YfEbc6Q
odhjBCn3NCnbqmA40G6SUWtwoGukQ4KB0egretGNChFXgHHgsy5Rhw6guBLo09Az
B3+jUzBRMB0GA1UdDgQWBBTCA+/WbJuXEabn8icIbYVQxDVgaDAfBgNVHSMEGDAW
gBTCA+/WbJuXEabn8icIbYVQxDVgaDAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49
BAMCA0kAMEYCIQCYcYXaEvyTWe4kx20r5VICFGnoNREYeROaOWZ242CkxAIhAJOb
LRTXRreZ/h/dW4S/wzDfucMvnOSNEqgdqMhPmr3l
-----END CERTIFICATE-----
";

    fn temp_ca(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mailprobe-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ca.pem");
        std::fs::write(&path, TEST_CA).unwrap();
        path
    }

    #[test]
    fn many_targets_share_one_root_store_per_ca_set() {
        let ca = temp_ca("shared");
        let with_ca: Vec<Trust> = (0..1000).map(|_| Trust::load(Some(&ca)).unwrap()).collect();
        let system: Vec<Trust> = (0..1000).map(|_| Trust::load(None).unwrap()).collect();
        // Nothing is parsed until a certificate has to be verified.
        assert!(with_ca.iter().chain(&system).all(|t| !t.roots.is_loaded()));

        let first = with_ca[0].roots.store().clone();
        assert!(with_ca.iter().all(|t| Arc::ptr_eq(t.roots.store(), &first)));
        let sys = system[0].roots.store().clone();
        assert!(system.iter().all(|t| Arc::ptr_eq(t.roots.store(), &sys)));
        // Two CA sets, two stores; the CA file's anchor is in its own only.
        assert!(!Arc::ptr_eq(&first, &sys));
        assert_eq!(first.len(), sys.len() + 1);
        let _ = std::fs::remove_dir_all(ca.parent().unwrap());
    }

    #[test]
    fn a_replaced_ca_file_is_read_again() {
        let ca = temp_ca("replaced");
        let before = Trust::load(Some(&ca)).unwrap();
        let before = before.roots.store().clone();
        // Same content, a later mtime: a new key, so the next load reads the file again.
        let later = SystemTime::now() + Duration::from_secs(120);
        std::fs::File::options()
            .write(true)
            .open(&ca)
            .unwrap()
            .set_modified(later)
            .unwrap();
        let after = Trust::load(Some(&ca)).unwrap();
        assert!(!Arc::ptr_eq(after.roots.store(), &before));
        let _ = std::fs::remove_dir_all(ca.parent().unwrap());
    }

    #[test]
    fn a_bad_ca_file_is_reported_at_load_naming_the_file() {
        let dir = temp_ca("bad");
        let empty = dir.with_file_name("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let e = Trust::load(Some(&empty)).unwrap_err().to_string();
        assert!(
            e.contains("empty.pem") && e.contains("holds no certificate"),
            "{e}"
        );
        let missing = dir.with_file_name("missing.pem");
        let e = Trust::load(Some(&missing)).unwrap_err().to_string();
        assert!(e.contains("cannot read CA file"), "{e}");
        let _ = std::fs::remove_dir_all(dir.parent().unwrap());
    }
}
