//! Servers rustls cannot speak to: they answer TLS, but only TLS 1.1 or older, or TLS 1.2 with
//! suites rustls does not have (CBC, RSA key exchange, DHE; old Exchange/IIS, appliances). The
//! CRM's client speaks those, so such a server must get neither a false `fail` nor a `pass`
//! the probe did not earn.
//!
//! After a failed rustls handshake, [`detect`] asks the server once more with a raw ClientHello
//! (TLS 1.2 at most, every suite; no TLS library involved) and looks at the version and suite
//! of its ServerHello. When it shows such a dialect, [`redo`] makes the handshake again with the
//! legacy engine (OpenSSL, see `mailprobe_core::tls::legacy_engine`), over a fresh connection.

use std::time::Duration;

use mailprobe_core::context::StepTimer;
use mailprobe_core::net::Conn;
use mailprobe_core::tls::{self, TlsConn, TlsEngine};
use mailprobe_core::{Endpoint, Handshake, NetError, RunContext, Security, TlsVersion};
use mailprobe_tlswire::hello::{ServerAnswer, TLS12, cipher_name};
use mailprobe_tlswire::probe::{Answer, ProbeError, exchange};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::handshake;

/// What the server chose from a ClientHello that offered everything up to TLS 1.2, when rustls
/// cannot speak it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegacyDialect {
    pub version: TlsVersion,
    /// The suite's IANA name (or its number, `0x0035`).
    pub cipher: String,
}

impl LegacyDialect {
    /// Whether the version itself is one rustls lacks (TLS 1.1 or older).
    pub fn old_version(&self) -> bool {
        self.version < TlsVersion::Tls12
    }

    /// The dialect in words: "only TLS 1.0 or lower", "TLS 1.2 only with suites rustls does
    /// not have (TLS_RSA_WITH_AES_256_CBC_SHA)".
    pub fn describe(&self) -> String {
        if self.old_version() {
            format!("only {} or lower ({})", self.version.human(), self.cipher)
        } else {
            format!(
                "{} only with suites rustls does not have ({})",
                self.version.human(),
                self.cipher
            )
        }
    }
}

/// Sends one ClientHello offering TLS 1.2 at most (every suite) on `stream` and returns the
/// server's choice when rustls cannot speak it.
pub async fn probe<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    wait: Duration,
) -> Result<Option<LegacyDialect>, NetError> {
    match exchange(&mut stream, TLS12, Some(host), wait).await {
        Ok(Answer::Server(ServerAnswer::Hello {
            version,
            cipher,
            cipher_name: name,
            ..
        })) => Ok(judge(version, cipher, name)),
        Ok(_) | Err(ProbeError::Invalid(_)) => Ok(None),
        Err(ProbeError::Timeout) => Err(NetError::Timeout {
            waiting_for: "a ServerHello".into(),
            after: wait,
        }),
        Err(ProbeError::Io(e)) => Err(NetError::from_io(&e)),
    }
}

fn judge(version: u16, cipher: u16, name: Option<String>) -> Option<LegacyDialect> {
    let v = TlsVersion::from_wire(version).filter(|v| *v <= TlsVersion::Tls12)?;
    if tls::rustls_speaks(version, cipher) {
        return None;
    }
    Some(LegacyDialect {
        version: v,
        cipher: name
            .or_else(|| cipher_name(cipher))
            .unwrap_or_else(|| format!("0x{cipher:04x}")),
    })
}

/// After a failed rustls handshake: does the server speak a dialect only the legacy engine
/// can? A fresh connection (with the STARTTLS preamble where the port has one), recorded as the
/// `tls_legacy_probe` step. `None` when it does not, or when it could not be told.
pub async fn detect(cx: &mut RunContext, ep: &Endpoint) -> Option<LegacyDialect> {
    let conn = cx.connect(ep).await.ok()?;
    let wait = cx.io_timeout();
    let host = ep.host.clone();
    let security = ep.security;
    let protocol = ep.protocol;
    cx.step("tls_legacy_probe", Some(ep), async move {
        let stream = match security {
            Security::Starttls => match handshake::preamble(protocol, conn, wait).await {
                Ok(s) => s,
                Err(NetError::Protocol(_) | NetError::StarttlsNotOffered) => return Ok(None),
                Err(e) => return Err(e),
            },
            Security::Tls => conn,
        };
        probe(stream, &host, wait).await
    })
    .await
    .ok()
    .flatten()
}

/// The handshake again with the legacy engine, over a fresh connection (the STARTTLS preamble
/// first where the port has one). Recorded as a `tls_handshake` step; when it succeeds it
/// becomes the port's shared handshake in place of the failed one, so the certificate of the
/// extra sessions is pinned to its leaf and they use the same engine.
pub async fn redo(
    cx: &mut RunContext,
    ep: &Endpoint,
) -> Result<(TlsConn<Conn>, Handshake), NetError> {
    tls::legacy_engine().map_err(|why| NetError::Tls(why.to_string()))?;
    let conn = cx.connect(ep).await?;
    let wait = cx.io_timeout();
    let stream = match ep.security {
        Security::Starttls => {
            cx.step(
                "starttls",
                Some(ep),
                handshake::preamble(ep.protocol, conn, wait),
            )
            .await?
        }
        Security::Tls => conn,
    };
    let timer = StepTimer::start();
    let out = tls::connect(
        stream,
        &ep.host,
        &cx.trust,
        &cx.tls_sessions(ep.protocol),
        wait,
        TlsEngine::Openssl,
    )
    .await;
    let view = match &out {
        Ok((_, h)) => Ok(h.clone()),
        Err(e) => Err(e.clone()),
    };
    cx.record_handshake(timer, ep, &view);
    if let Ok(h) = view {
        handshake::replace(cx, ep.protocol, h);
    }
    out
}

/// What the legacy engine made of a server whose rustls handshake failed.
pub enum Fallback {
    /// The server speaks no dialect only the legacy engine can: the rustls failure stands.
    NotLegacy,
    /// The handshake, made again with the legacy engine.
    Redone(TlsConn<Conn>, Handshake),
    /// It speaks `dialect`, but the probe could not complete a handshake in it: `limit` says
    /// why (no legacy engine in this build, or the engine failed too). The probe's limit, not
    /// the server's fault.
    Unspoken {
        dialect: LegacyDialect,
        limit: String,
    },
}

/// After a failed rustls handshake: [`detect`] the dialect, then [`redo`] the handshake in it
/// when the legacy engine is there. The IMAP and SMTP plugins both go this way.
pub async fn fallback(cx: &mut RunContext, ep: &Endpoint) -> Fallback {
    let Some(dialect) = detect(cx, ep).await else {
        return Fallback::NotLegacy;
    };
    // Only a dialect the profile's client speaks: its versions and its suites. Otherwise the
    // client cannot connect either, and the rustls failure stands (`*.tls_versions` says why).
    let client = &cx.target.profile.client;
    if !client.speaks(dialect.version) || !client.cipher_suites.contains(&dialect.cipher) {
        return Fallback::NotLegacy;
    }
    let limit = match tls::legacy_engine() {
        Err(why) => why.to_string(),
        Ok(()) => match redo(cx, ep).await {
            Ok((conn, hs)) => return Fallback::Redone(conn, hs),
            Err(e) => format!(
                "the legacy TLS engine (OpenSSL) could not complete the handshake either: {e}"
            ),
        },
    };
    Fallback::Unspoken { dialect, limit }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    async fn answer(bytes: Vec<u8>) -> Option<LegacyDialect> {
        let (client, mut server) = duplex(64 * 1024);
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let _ = server.read(&mut buf).await;
            let _ = server.write_all(&bytes).await;
        });
        probe(client, "mail.lab.test", Duration::from_secs(2))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn server_flights() {
        // Real flights captured from `openssl s_server` (see the tlswire crate's fixtures).
        let tls10 = hex(include_str!(
            "../../tlswire/tests/fixtures/openssl_tls10_flight.hex"
        ));
        assert_eq!(
            answer(tls10).await.map(|d| d.version),
            Some(TlsVersion::Tls10)
        );
        let tls12 = hex(include_str!(
            "../../tlswire/tests/fixtures/openssl_tls12_flight.hex"
        ));
        assert_eq!(answer(tls12).await, None);
        let alert = b"\x15\x03\x01\x00\x02\x02\x46".to_vec();
        assert_eq!(answer(alert).await, None);
    }

    #[test]
    fn dialects_rustls_cannot_speak() {
        // TLS 1.0 with a suite rustls has in TLS 1.2: the version decides.
        let d = judge(0x0301, 0xc014, None).unwrap();
        assert_eq!(d.version, TlsVersion::Tls10);
        assert!(d.old_version());
        assert!(d.describe().starts_with("only TLS 1.0 or lower"), "{d:?}");
        // TLS 1.2 with AES256-SHA (RSA key exchange, CBC).
        let d = judge(0x0303, 0x0035, None).unwrap();
        assert_eq!(d.version, TlsVersion::Tls12);
        assert_eq!(d.cipher, "TLS_RSA_WITH_AES_256_CBC_SHA");
        assert!(!d.old_version());
        // TLS 1.2 with an ECDHE-GCM suite, and TLS 1.3: rustls speaks them.
        assert_eq!(judge(0x0303, 0xc02f, None), None);
        assert_eq!(judge(0x0304, 0x1301, None), None);
        // Garbage versions are not a dialect.
        assert_eq!(judge(0x7f7f, 0x0035, None), None);
    }
}
