//! The probe's own TLS client: one rustls configuration that records the server's chain and the
//! verification outcome instead of aborting on an untrusted certificate, so that a bad
//! certificate is reported (name, trust and expiry) rather than hiding everything behind it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, Resumption};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::error::NetError;
use crate::profile::TlsVersion;

mod client;
mod conn;
#[cfg(feature = "legacy-tls")]
mod legacy;

pub use client::{ClientPolicy, LeafNames, every_algorithm, is_name_refusal, is_trust_anchor};

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
    /// Whether the handshake resumed a session of the same run and port (a TLS 1.3 ticket, a
    /// TLS 1.2 session ID or ticket) instead of a full handshake. The server then sends no
    /// certificate: `chain` and `verified` are those of the handshake that created the session,
    /// and the resumption itself proves that the server holds that session's secret, so it is
    /// the same server (and certificate) by construction.
    #[serde(default)]
    pub resumed: bool,
}

/// Trust anchors: the system's roots plus the user's `--ca-file`.
///
/// Cheap to clone. The anchors themselves live in a process-wide cache, one store per distinct
/// CA set, so ten thousand mailboxes with the same `ca_file` share one store instead of holding
/// ten thousand copies of every system root.
#[derive(Clone, Debug)]
pub struct Trust {
    pub roots: Roots,
    /// The client whose decisions the verdicts are: current practice unless a profile's client
    /// model was given ([`Trust::for_client`]).
    pub client: Arc<ClientPolicy>,
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

/// The largest CA file read (a bundle of every public root is about 200 KiB).
pub const MAX_CA_FILE: u64 = 4 * 1024 * 1024;

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
    // Bounded in size and time: a CA file is a few certificates, never a FIFO or a device.
    let pem = crate::file::read(path, MAX_CA_FILE, crate::file::READ_DEADLINE)
        .map_err(|e| read_err(e.to_string()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
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
            client: ClientPolicy::current_practice(),
        })
    }

    /// The same anchors, judged as `model`'s client judges them.
    pub fn for_client(&self, model: &crate::client_model::ClientModel) -> Trust {
        Trust {
            roots: self.roots.clone(),
            client: ClientPolicy::of(model),
        }
    }
}

/// Verifies like a strict client, records the verdict, and lets the handshake go on.
///
/// One per run and port (see [`SessionCache`]): rustls resumes a session only with the verifier
/// that created it. The verdicts are kept by chain, so concurrent handshakes each find their own.
#[derive(Debug)]
struct RecordingVerifier {
    /// Read only when a certificate arrives: that is when the anchors get parsed.
    roots: Roots,
    client: Arc<ClientPolicy>,
    schemes: Vec<SignatureScheme>,
    verdicts: Verdicts,
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
        let name = server_name.to_str();
        let chain: Vec<&[u8]> = std::iter::once(end_entity.as_ref())
            .chain(intermediates.iter().map(|c| c.as_ref()))
            .collect();
        // The same chain for the same name, already judged in this run: the verdict stands (the
        // handshake still checks the server's signature, so it proves the key).
        if self.verdicts.find(&name, &chain).is_none() {
            let _ = ocsp_response;
            let v = verify_chain(
                &self.roots,
                &self.client,
                end_entity,
                intermediates,
                server_name,
                now,
            );
            self.verdicts.remember(&name, &chain, v);
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
            self.client.handshake_algorithms(),
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
            self.client.handshake_algorithms(),
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

/// What the modelled client decides about a chain for `server_name`: the one verification of
/// both engines, so `verified` and `verify_error` mean the same whichever completed the
/// handshake.
pub(crate) fn verify_chain(
    roots: &Roots,
    client: &ClientPolicy,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> Result<(), String> {
    let store = roots.store();
    if store.is_empty() {
        return Err(
            "no trust anchors: the system has no CA certificates and no --ca-file was given".into(),
        );
    }
    client.verify(store, end_entity, intermediates, server_name, now)
}

fn client_config(trust: &Trust, cache: &CacheInner) -> Result<ClientConfig, NetError> {
    let client = trust.client.clone();
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = client.rustls_suites();
    provider.signature_verification_algorithms = *client.handshake_algorithms();
    let versions = client.rustls_versions();
    if versions.is_empty() || provider.cipher_suites.is_empty() {
        return Err(NetError::Tls(
            "the profile's client offers no TLS 1.2 or 1.3 suite this probe's TLS library has"
                .into(),
        ));
    }
    let verifier = RecordingVerifier {
        roots: trust.roots.clone(),
        client,
        schemes: trust.client.handshake_algorithms().supported_schemes(),
        verdicts: cache.verdicts.clone(),
    };
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&versions)
        .map_err(|e| NetError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.resumption = Resumption::store(cache.store.clone());
    Ok(config)
}

/// What the TLS sessions of one run with one port share: one rustls configuration with its
/// store of the server's session tickets and IDs, so every session after the first resumes (no
/// certificate sent, no chain to verify, no signature, for the client and the server alike),
/// and the verdicts on chains already verified, so a full handshake that presents the same
/// chain again is not verified again. Cheap to clone (one `Arc`); one per run and port, never
/// shared across runs (a session is resumed only with the run that checked its certificate).
#[derive(Clone, Default)]
pub struct SessionCache {
    inner: Arc<CacheInner>,
}

struct CacheInner {
    store: Arc<dyn ClientSessionStore>,
    verdicts: Verdicts,
    /// Built on the first handshake, with the run's trust anchors.
    config: OnceLock<Arc<ClientConfig>>,
}

impl Default for CacheInner {
    fn default() -> Self {
        CacheInner {
            // A run opens a few sessions per port: a few tickets are all it can use.
            store: Arc::new(ClientSessionMemoryCache::new(8)),
            verdicts: Verdicts::default(),
            config: OnceLock::new(),
        }
    }
}

/// Verdicts on the chains a run saw, by server name and chain (leaf first).
#[derive(Clone, Debug, Default)]
struct Verdicts(Arc<Mutex<Vec<Verdict>>>);

#[derive(Debug)]
struct Verdict {
    name: String,
    chain: Vec<Vec<u8>>,
    result: Result<(), String>,
}

/// A port presents one chain, maybe a second while a certificate is replaced: a handful of
/// verdicts is plenty, and a hostile server cannot grow the list.
const MAX_VERDICTS: usize = 4;

impl Verdicts {
    fn find(&self, name: &str, chain: &[&[u8]]) -> Option<Result<(), String>> {
        lock(&self.0)
            .iter()
            .find(|v| v.name == name && v.chain.iter().map(Vec::as_slice).eq(chain.iter().copied()))
            .map(|v| v.result.clone())
    }

    fn remember(&self, name: &str, chain: &[&[u8]], result: Result<(), String>) {
        let mut verdicts = lock(&self.0);
        if verdicts.len() >= MAX_VERDICTS {
            verdicts.remove(0);
        }
        verdicts.push(Verdict {
            name: name.to_string(),
            chain: chain.iter().map(|c| c.to_vec()).collect(),
            result,
        });
    }

    /// The verdict on the chain a handshake ended with. A resumed session carries the chain of
    /// the handshake of this run that created it, and that handshake's verdict.
    fn of(&self, name: &str, chain: &[Vec<u8>], resumed: bool) -> Result<(), String> {
        if chain.is_empty() && !resumed {
            return Err("the server sent no certificate".into());
        }
        let found = if chain.is_empty() {
            // A TLS library that does not carry the chain with the session: when this run saw
            // one chain only, that is the one the resumed session was created with.
            let verdicts = lock(&self.0);
            let mut seen = verdicts.iter().filter(|v| v.name == name);
            match (seen.next(), seen.next()) {
                (Some(v), None) => Some(v.result.clone()),
                _ => None,
            }
        } else {
            let chain: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
            self.find(name, &chain)
        };
        found.unwrap_or_else(|| Err("the certificate's verdict was not recorded".into()))
    }
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCache")
            .field("verdicts", &lock(&self.inner.verdicts.0).len())
            .finish()
    }
}

impl SessionCache {
    pub fn new() -> Self {
        SessionCache::default()
    }

    /// The run's configuration for this port (built with `trust` on the first handshake).
    fn config(&self, trust: &Trust) -> Result<Arc<ClientConfig>, NetError> {
        if let Some(c) = self.inner.config.get() {
            return Ok(c.clone());
        }
        let built = Arc::new(client_config(trust, &self.inner)?);
        Ok(self.inner.config.get_or_init(|| built).clone())
    }
}

/// Does a TLS handshake over `stream` for `host` (SNI and name checks use it), within `wait`,
/// as a session of its own (no resumption).
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    host: &str,
    trust: &Trust,
    wait: Duration,
) -> Result<(TlsStream<S>, Handshake), NetError> {
    handshake_in(stream, host, trust, &SessionCache::new(), wait).await
}

/// Does a TLS handshake over `stream` for `host` (SNI and name checks use it), within `wait`,
/// resuming a session of `cache` when the server accepts it, and leaving the server's tickets
/// there for the next one.
pub async fn handshake_in<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    host: &str,
    trust: &Trust,
    cache: &SessionCache,
    wait: Duration,
) -> Result<(TlsStream<S>, Handshake), NetError> {
    let config = cache.config(trust)?;
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| NetError::Tls(format!("`{host}` is not a valid server name")))?;
    let shown_name = name.to_str().into_owned();
    let connector = TlsConnector::from(config);
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
    // For a resumed session rustls gives the chain of the session it resumed.
    let chain: Vec<Vec<u8>> = conn
        .peer_certificates()
        .map(|c| c.iter().map(|d| d.as_ref().to_vec()).collect())
        .unwrap_or_default();
    let resumed = conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let verdict = cache.inner.verdicts.of(&shown_name, &chain, resumed);
    Ok((
        tls,
        Handshake {
            version,
            cipher,
            chain,
            verified: verdict.is_ok(),
            verify_error: verdict.err(),
            engine: TlsEngine::Rustls,
            resumed,
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

    #[test]
    fn a_chain_is_judged_once_per_run_and_the_verdicts_stay_few() {
        let verdicts = Verdicts::default();
        let chain: [&[u8]; 2] = [b"leaf", b"ca"];
        let name = "mail.lab.test";
        assert!(verdicts.find(name, &chain).is_none());
        verdicts.remember(name, &chain, Err("expired".into()));
        assert_eq!(verdicts.find(name, &chain), Some(Err("expired".into())));
        assert!(verdicts.find("other.lab.test", &chain).is_none());
        // A resumed session carries the chain of the session it resumed: same verdict.
        let carried = vec![b"leaf".to_vec(), b"ca".to_vec()];
        assert_eq!(verdicts.of(name, &carried, true), Err("expired".into()));
        assert!(verdicts.of(name, &[b"other".to_vec()], false).is_err());
        // No chain: a full handshake proves nothing; a resumed one has the run's one verdict.
        assert!(verdicts.of(name, &[], false).is_err());
        assert_eq!(verdicts.of(name, &[], true), Err("expired".into()));
        // A hostile server presenting ever new chains cannot grow the list.
        for i in 0..10u8 {
            verdicts.remember(name, &[&[i]], Ok(()));
        }
        assert_eq!(lock(&verdicts.0).len(), MAX_VERDICTS);
    }
}
