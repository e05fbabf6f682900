//! Tells a server that speaks only TLS 1.1 or lower (which rustls cannot talk to, but the CRM
//! can) from one where TLS is broken: after a failed handshake, one ClientHello that offers at
//! most TLS 1.1 over a fresh connection, and a look at the ServerHello's version. Without this,
//! such a server would get a false `fail`.

use std::time::Duration;

use mailprobe_core::{NetError, TlsVersion};
use mailprobe_tlswire::hello::{ServerAnswer, TLS11};
use mailprobe_tlswire::probe::{Answer, ProbeError, exchange};
use tokio::io::{AsyncRead, AsyncWrite};

/// Sends a ClientHello offering TLS 1.1 at most on `stream` and returns the version of the
/// ServerHello, when the server answers with one at SSLv3..TLS 1.1.
pub async fn probe<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    wait: Duration,
) -> Result<Option<TlsVersion>, NetError> {
    match exchange(&mut stream, TLS11, Some(host), wait).await {
        Ok(Answer::Server(ServerAnswer::Hello { version, .. })) => {
            Ok(TlsVersion::from_wire(version).filter(|v| *v <= TlsVersion::Tls11))
        }
        Ok(_) | Err(ProbeError::Invalid(_)) => Ok(None),
        Err(ProbeError::Timeout) => Err(NetError::Timeout {
            waiting_for: "a ServerHello".into(),
            after: wait,
        }),
        Err(ProbeError::Io(e)) => Err(NetError::from_io(&e)),
    }
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

    async fn answer(bytes: Vec<u8>) -> Option<TlsVersion> {
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
    async fn server_hello_versions() {
        // Real flights captured from `openssl s_server` (see the tlswire crate's fixtures).
        let tls10 = hex(include_str!(
            "../../tlswire/tests/fixtures/openssl_tls10_flight.hex"
        ));
        assert_eq!(answer(tls10).await, Some(TlsVersion::Tls10));
        let tls12 = hex(include_str!(
            "../../tlswire/tests/fixtures/openssl_tls12_flight.hex"
        ));
        assert_eq!(answer(tls12).await, None);
        let alert = b"\x15\x03\x01\x00\x02\x02\x46".to_vec();
        assert_eq!(answer(alert).await, None);
    }
}
