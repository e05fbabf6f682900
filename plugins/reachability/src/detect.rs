//! Finding out how a port that is not a well-known one is secured, when the user left it to
//! the probe: a server that speaks clear text greets at once (IMAP `* OK`, SMTP `220`), while
//! an implicit-TLS server waits for the client's ClientHello. So the probe listens briefly for
//! a greeting; when none comes, it sends a ClientHello and reads the first byte back: a TLS
//! record (handshake or alert) means TLS, text means a server that was only slow to greet.
//! One round trip more than a plain connect, and never the 5-second wait of a wrong guess.
//!
//! The ClientHello offers every version the probe can tell apart (SSLv3 to TLS 1.3), so any TLS
//! server answers it. A server that closes after it without having greeted is a TLS server that
//! refused the hello (the TLS handshake then says why, e.g. `*.tls_versions`); a first byte that
//! is neither a TLS record nor the start of a greeting means the port speaks neither.

use std::time::Duration;

use mailprobe_core::{NetError, Security};
use mailprobe_tlswire::hello::detection_hello;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// TLS record types a server answers a ClientHello with: handshake (ServerHello) or alert.
const TLS_HANDSHAKE: u8 = 0x16;
const TLS_ALERT: u8 = 0x15;

/// How long to listen for a clear-text greeting: long enough for a server on the other side of
/// the connection's round trip, short enough not to matter on a TLS port.
pub fn greeting_wait(connect_time: Duration) -> Duration {
    (connect_time * 3 + Duration::from_millis(250)).min(Duration::from_secs(1))
}

/// The security the server on `stream` speaks. `wait` bounds the whole exchange.
pub async fn detect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
    greeting: Duration,
    wait: Duration,
) -> Result<Security, NetError> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(greeting.min(wait), stream.read(&mut first)).await {
        Ok(Ok(0)) => return Err(NetError::Closed(" before it greeted".into())),
        Ok(Ok(_)) => return Ok(classify(first[0])),
        Ok(Err(e)) => return Err(NetError::from_io(&e)),
        Err(_) => {}
    }
    let hello = detection_hello(Some(host));
    let left = wait.saturating_sub(greeting);
    let answer = tokio::time::timeout(left, async {
        stream.write_all(&hello).await?;
        stream.flush().await?;
        stream.read(&mut first).await
    })
    .await;
    match answer {
        // No greeting, then a close in answer to the hello: a TLS server refusing it.
        Ok(Ok(0)) => Ok(Security::Tls),
        Ok(Ok(_)) => answer_to_hello(first[0]),
        // A reset in answer to the hello, after silence: a TLS server refusing it too.
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(Security::Tls),
        Ok(Err(e)) => Err(NetError::from_io(&e)),
        Err(_) => Err(NetError::Timeout {
            waiting_for: "a greeting or an answer to a ClientHello".into(),
            after: wait,
        }),
    }
}

/// How the error of a port that speaks neither begins.
pub const NEITHER: &str = "this port speaks neither the mail protocol nor TLS";

/// After silence and a ClientHello: a TLS record means TLS, the start of a greeting (IMAP `*`,
/// an SMTP reply digit) a server that was only slow to greet; anything else, neither.
fn answer_to_hello(first: u8) -> Result<Security, NetError> {
    match first {
        TLS_HANDSHAKE | TLS_ALERT => Ok(Security::Tls),
        b'*' | b'2' | b'4' | b'5' => Ok(Security::Starttls),
        other => Err(NetError::Protocol(format!(
            "{NEITHER}: it sent no greeting and answered a ClientHello with byte 0x{other:02x}, which starts neither a TLS record nor a greeting"
        ))),
    }
}

fn classify(first: u8) -> Security {
    if first == TLS_HANDSHAKE || first == TLS_ALERT {
        Security::Tls
    } else {
        Security::Starttls
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    const W: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn a_greeting_means_starttls() {
        let (mut client, mut server) = duplex(4096);
        server.write_all(b"* OK ready\r\n").await.unwrap();
        let s = detect(&mut client, "h", Duration::from_millis(200), W).await;
        assert_eq!(s, Ok(Security::Starttls));
    }

    #[tokio::test]
    async fn silence_then_a_tls_answer_means_tls() {
        let (mut client, mut server) = duplex(4096);
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let n = server.read(&mut buf).await.unwrap();
            assert_eq!(buf[0], TLS_HANDSHAKE, "a ClientHello record ({n} bytes)");
            server
                .write_all(&[TLS_HANDSHAKE, 3, 3, 0, 0])
                .await
                .unwrap();
        });
        let s = detect(&mut client, "h", Duration::from_millis(50), W).await;
        assert_eq!(s, Ok(Security::Tls));
    }

    #[tokio::test]
    async fn a_slow_greeter_is_still_clear_text() {
        let (mut client, mut server) = duplex(4096);
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let _ = server.read(&mut buf).await;
            server.write_all(b"220 late\r\n").await.unwrap();
        });
        let s = detect(&mut client, "h", Duration::from_millis(50), W).await;
        assert_eq!(s, Ok(Security::Starttls));
    }

    #[tokio::test]
    async fn a_close_after_the_hello_means_tls_and_garbage_means_neither() {
        let (mut client, mut server) = duplex(4096);
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let _ = server.read(&mut buf).await;
            drop(server);
        });
        let s = detect(&mut client, "h", Duration::from_millis(50), W).await;
        assert_eq!(s, Ok(Security::Tls));

        let (mut client, mut server) = duplex(4096);
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let _ = server.read(&mut buf).await;
            server.write_all(b"\x00\x01garbage").await.unwrap();
        });
        let e = detect(&mut client, "h", Duration::from_millis(50), W)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("neither"), "{e}");
    }

    #[test]
    fn the_detection_hello_offers_every_version() {
        let h = detection_hello(Some("mail.lab.test"));
        // supported_versions: 1.3, 1.2, 1.1, 1.0.
        let needle = [
            0x00, 0x2b, 0x00, 0x09, 0x08, 0x03, 0x04, 0x03, 0x03, 0x03, 0x02, 0x03, 0x01,
        ];
        assert!(h.windows(needle.len()).any(|w| w == needle));
    }

    #[tokio::test(start_paused = true)]
    async fn total_silence_times_out_within_the_bound() {
        let (mut client, _server) = duplex(4096);
        let e = detect(&mut client, "h", Duration::from_millis(50), W)
            .await
            .unwrap_err();
        assert_eq!(e.error_type(), "timeout");
    }
}
