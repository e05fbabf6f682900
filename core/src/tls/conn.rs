//! The TLS session of a mail connection, whichever engine completed its handshake: rustls for
//! everything it can speak, and (feature `legacy-tls`) OpenSSL for servers rustls cannot speak
//! to at all: TLS 1.1 and older, or TLS 1.2 with only suites rustls does not have (CBC, RSA key
//! exchange, DHE). [`TlsConn`] reads and writes the same either way, so the IMAP and SMTP
//! sessions above it do not know which engine they run on.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{Handshake, SessionCache, Trust};
use crate::error::NetError;

/// The TLS library that completed a handshake (evidence `tls_engine`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsEngine {
    #[default]
    Rustls,
    Openssl,
}

impl TlsEngine {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsEngine::Rustls => "rustls",
            TlsEngine::Openssl => "openssl",
        }
    }
}

impl std::fmt::Display for TlsEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The environment variable that switches the legacy engine off at run time (`off`, `0`,
/// `false`, `no`): the probe then behaves exactly as a build without it.
pub const LEGACY_SWITCH: &str = "MAILPROBE_LEGACY_TLS";

/// Whether the legacy (OpenSSL) engine may be used; when not, the probe's limit in words, for
/// the summary of the requirements it leaves unverified. The one place that decides it.
pub fn legacy_engine() -> Result<(), &'static str> {
    if !cfg!(feature = "legacy-tls") {
        return Err(
            "this build has no legacy TLS engine (built without the `legacy-tls` feature), so it cannot speak the server's TLS dialect",
        );
    }
    if switched_off(std::env::var(LEGACY_SWITCH).ok().as_deref()) {
        return Err(
            "this build has no legacy TLS engine in use (switched off with MAILPROBE_LEGACY_TLS=off), so it cannot speak the server's TLS dialect",
        );
    }
    Ok(())
}

/// [`legacy_engine`] as a yes or no.
pub fn legacy_engine_available() -> bool {
    legacy_engine().is_ok()
}

fn switched_off(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        ["off", "0", "false", "no"]
            .iter()
            .any(|o| v.trim().eq_ignore_ascii_case(o))
    })
}

/// Whether rustls (as configured here: ring, TLS 1.2 and 1.3) can speak a version and suite a
/// server chose (wire numbers, from a ServerHello).
pub fn rustls_speaks(version: u16, cipher: u16) -> bool {
    (version == 0x0303 || version == 0x0304)
        && rustls::crypto::ring::ALL_CIPHER_SUITES
            .iter()
            .any(|s| u16::from(s.suite()) == cipher)
}

/// A TLS session over `S`, by either engine.
#[derive(Debug)]
pub enum TlsConn<S> {
    Rustls(Box<tokio_rustls::client::TlsStream<S>>),
    #[cfg(feature = "legacy-tls")]
    Openssl(Box<tokio_openssl::SslStream<S>>),
}

impl<S> TlsConn<S> {
    pub fn engine(&self) -> TlsEngine {
        match self {
            TlsConn::Rustls(_) => TlsEngine::Rustls,
            #[cfg(feature = "legacy-tls")]
            TlsConn::Openssl(_) => TlsEngine::Openssl,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsConn<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TlsConn::Rustls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            #[cfg(feature = "legacy-tls")]
            TlsConn::Openssl(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsConn<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            TlsConn::Rustls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            #[cfg(feature = "legacy-tls")]
            TlsConn::Openssl(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TlsConn::Rustls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            #[cfg(feature = "legacy-tls")]
            TlsConn::Openssl(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            TlsConn::Rustls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            #[cfg(feature = "legacy-tls")]
            TlsConn::Openssl(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A TLS handshake over `stream` for `host` with `engine`, within `wait`; with rustls it
/// resumes a session of `sessions` when the server accepts it (the OpenSSL engine always makes
/// a full handshake). Asking for the OpenSSL engine where [`legacy_engine`] says no is a TLS
/// error naming the probe's limit.
pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    host: &str,
    trust: &Trust,
    sessions: &SessionCache,
    wait: Duration,
    engine: TlsEngine,
) -> Result<(TlsConn<S>, Handshake), NetError> {
    match engine {
        TlsEngine::Rustls => super::handshake_in(stream, host, trust, sessions, wait)
            .await
            .map(|(s, h)| (TlsConn::Rustls(Box::new(s)), h)),
        TlsEngine::Openssl => {
            legacy_engine().map_err(|why| NetError::Tls(why.to_string()))?;
            openssl(stream, host, trust, wait).await
        }
    }
}

#[cfg(feature = "legacy-tls")]
async fn openssl<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    host: &str,
    trust: &Trust,
    wait: Duration,
) -> Result<(TlsConn<S>, Handshake), NetError> {
    super::legacy::handshake(stream, host, trust, wait)
        .await
        .map(|(s, h)| (TlsConn::Openssl(Box::new(s)), h))
}

#[cfg(not(feature = "legacy-tls"))]
async fn openssl<S: AsyncRead + AsyncWrite + Unpin>(
    _stream: S,
    _host: &str,
    _trust: &Trust,
    _wait: Duration,
) -> Result<(TlsConn<S>, Handshake), NetError> {
    Err(NetError::Tls(
        "this build has no legacy TLS engine".to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_reads_off_words_only() {
        for off in ["off", "OFF", "0", "false", "no", " off "] {
            assert!(switched_off(Some(off)), "{off}");
        }
        for on in ["on", "1", "", "yes"] {
            assert!(!switched_off(Some(on)), "{on}");
        }
        assert!(!switched_off(None));
    }

    #[test]
    fn rustls_suites_are_told_from_legacy_ones() {
        // TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 and TLS_AES_128_GCM_SHA256: rustls has them.
        assert!(rustls_speaks(0x0303, 0xc02f));
        assert!(rustls_speaks(0x0304, 0x1301));
        // TLS_RSA_WITH_AES_256_CBC_SHA, TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA: it has not.
        assert!(!rustls_speaks(0x0303, 0x0035));
        assert!(!rustls_speaks(0x0303, 0xc014));
        // Any suite in TLS 1.0.
        assert!(!rustls_speaks(0x0301, 0xc02f));
    }

    #[test]
    fn engines_serialize_lowercase() {
        assert_eq!(
            serde_json::to_value(TlsEngine::Openssl).unwrap(),
            serde_json::json!("openssl")
        );
        assert_eq!(TlsEngine::default(), TlsEngine::Rustls);
    }
}
