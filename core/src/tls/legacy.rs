//! The legacy TLS engine: OpenSSL (the system libssl) for servers rustls cannot speak to —
//! TLS 1.0/1.1, or TLS 1.2 with CBC, RSA-key-exchange or DHE suites only. Security level 0 and
//! TLS 1.0 as the lowest version, for these connections only; nothing else in the process uses
//! OpenSSL.
//!
//! OpenSSL does not judge the certificate here (verification mode none): the chain it received
//! is verified after the handshake by the very verifier the rustls engine uses (webpki, the same
//! trust anchors and host name), so `verified` and `verify_error` mean the same with both. The
//! handshake itself proves the server holds the leaf's key (its signature over the key
//! exchange, or the RSA key exchange), as with rustls.

use std::pin::Pin;
use std::time::Duration;

use openssl::ssl::{
    self, Ssl, SslConnector, SslMethod, SslOptions, SslRef, SslVerifyMode, SslVersion,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_openssl::SslStream;

use super::{Handshake, TlsEngine, Trust, verify_chain};
use crate::error::NetError;
use crate::profile::TlsVersion;

/// OpenSSL's `SSL_OP_LEGACY_SERVER_CONNECT`: OpenSSL 3 refuses servers without RFC 5746
/// secure renegotiation unless told otherwise, and such servers are the ones this engine is for.
/// (The probe never renegotiates.)
const LEGACY_SERVER_CONNECT: u64 = 0x0000_0004;

fn configure(host: &str) -> Result<Ssl, openssl::error::ErrorStack> {
    let mut b = SslConnector::builder(SslMethod::tls_client())?;
    b.set_min_proto_version(Some(SslVersion::TLS1))?;
    b.set_security_level(0);
    b.set_cipher_list("ALL:@SECLEVEL=0")?;
    b.set_options(SslOptions::from_bits_retain(LEGACY_SERVER_CONNECT as _));
    // The chain is verified after the handshake, by the rustls engine's verifier.
    b.set_verify(SslVerifyMode::NONE);
    let mut c = b.build().configure()?;
    c.set_verify_hostname(false);
    // SNI for a name; `into_ssl` leaves it out for an IP address.
    c.set_use_server_name_indication(true);
    c.into_ssl(host)
}

/// Does an OpenSSL handshake over `stream` for `host`, within `wait`.
pub(crate) async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    host: &str,
    trust: &Trust,
    wait: Duration,
) -> Result<(SslStream<S>, Handshake), NetError> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| NetError::Tls(format!("`{host}` is not a valid server name")))?;
    let engine_error = |e: openssl::error::ErrorStack| NetError::Tls(format!("OpenSSL: {e}"));
    let ssl = configure(host).map_err(engine_error)?;
    let mut tls = SslStream::new(ssl, stream).map_err(engine_error)?;
    match tokio::time::timeout(wait, Pin::new(&mut tls).connect()).await {
        Err(_) => {
            return Err(NetError::Timeout {
                waiting_for: "the TLS handshake".into(),
                after: wait,
            });
        }
        Ok(Err(e)) => return Err(classify(&e)),
        Ok(Ok(())) => {}
    }
    let facts = facts(tls.ssl(), &name, trust)?;
    Ok((tls, facts))
}

fn facts(ssl: &SslRef, name: &ServerName<'static>, trust: &Trust) -> Result<Handshake, NetError> {
    let version = ssl
        .version2()
        .and_then(version)
        .ok_or_else(|| NetError::Tls(format!("OpenSSL negotiated {}", ssl.version_str())))?;
    let cipher = ssl
        .current_cipher()
        .map(|c| c.standard_name().unwrap_or(c.name()).to_string())
        .unwrap_or_default();
    // A client's peer chain starts with the leaf.
    let chain: Vec<Vec<u8>> = match ssl.peer_cert_chain() {
        Some(stack) => stack.iter().filter_map(|c| c.to_der().ok()).collect(),
        None => ssl
            .peer_certificate()
            .and_then(|c| c.to_der().ok())
            .into_iter()
            .collect(),
    };
    let verdict = match chain.split_first() {
        None => Err("the server sent no certificate".to_string()),
        Some((leaf, rest)) => {
            let intermediates: Vec<CertificateDer<'_>> = rest
                .iter()
                .map(|c| CertificateDer::from(c.as_slice()))
                .collect();
            verify_chain(
                &trust.roots,
                &trust.client,
                &CertificateDer::from(leaf.as_slice()),
                &intermediates,
                name,
                UnixTime::now(),
            )
        }
    };
    Ok(Handshake {
        version,
        cipher,
        chain,
        verified: verdict.is_ok(),
        verify_error: verdict.err(),
        engine: TlsEngine::Openssl,
        // The OpenSSL engine keeps no sessions: every handshake is a full one.
        resumed: false,
    })
}

fn version(v: SslVersion) -> Option<TlsVersion> {
    [
        (SslVersion::SSL3, TlsVersion::Ssl3),
        (SslVersion::TLS1, TlsVersion::Tls10),
        (SslVersion::TLS1_1, TlsVersion::Tls11),
        (SslVersion::TLS1_2, TlsVersion::Tls12),
        (SslVersion::TLS1_3, TlsVersion::Tls13),
    ]
    .into_iter()
    .find(|(o, _)| *o == v)
    .map(|(_, t)| t)
}

fn classify(e: &ssl::Error) -> NetError {
    if let Some(io) = e.io_error() {
        return match NetError::from_io(io) {
            NetError::Closed(_) => NetError::Closed(" during the TLS handshake".into()),
            other => other,
        };
    }
    if e.code() == ssl::ErrorCode::SYSCALL {
        return NetError::Closed(" during the TLS handshake".into());
    }
    match e.ssl_error() {
        Some(stack) => NetError::Tls(format!("OpenSSL: {stack}")),
        None => NetError::Tls(format!("OpenSSL: {e}")),
    }
}
