//! A bounded line reader for line-based protocols, and the escaping of server text for
//! display. Reads are bounded in size and time, so a silent or endless peer cannot hang or
//! bloat the probe. The protocols themselves (SMTP replies, IMAP responses) live with the
//! plugins that speak them.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{NetError, within};
use crate::transcript::{Direction, Tap};

/// The longest line accepted from a server. RFC 5321 allows 512 octets for SMTP replies; IMAP
/// capability lines are longer, but never this long.
pub const MAX_LINE: usize = 16 * 1024;
/// The most lines accepted in one reply (a multi-line EHLO, untagged IMAP lines).
pub const MAX_LINES: usize = 200;

/// A stream with a line buffer in front of it.
pub struct LineStream<S> {
    stream: S,
    buf: Vec<u8>,
    /// The run's transcript, when it keeps one.
    tap: Option<Tap>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> LineStream<S> {
    pub fn new(stream: S) -> Self {
        LineStream {
            stream,
            buf: Vec::with_capacity(1024),
            tap: Tap::current(),
        }
    }

    /// Reads one line (without its CRLF), waiting at most `wait`.
    pub async fn read_line(&mut self, wait: Duration) -> Result<String, NetError> {
        within(wait, "a line from the server", async {
            loop {
                if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                    let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    let text = String::from_utf8_lossy(&line).into_owned();
                    if let Some(tap) = &self.tap {
                        tap.line(Direction::Received, &text);
                    }
                    return Ok(text);
                }
                if self.buf.len() > MAX_LINE {
                    return Err(NetError::Protocol(format!(
                        "a line longer than {MAX_LINE} bytes"
                    )));
                }
                let mut chunk = [0u8; 2048];
                let n = self
                    .stream
                    .read(&mut chunk)
                    .await
                    .map_err(|e| NetError::from_io(&e))?;
                if n == 0 {
                    return Err(NetError::Closed(if self.buf.is_empty() {
                        String::new()
                    } else {
                        " in the middle of a line".into()
                    }));
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
    }

    /// Writes `line` followed by CRLF.
    pub async fn write_line(&mut self, line: &str, wait: Duration) -> Result<(), NetError> {
        within(wait, "sending to the server", async {
            // Lines carry AUTH responses: wipe the copy once sent.
            let mut data = zeroize::Zeroizing::new(Vec::with_capacity(line.len() + 2));
            data.extend_from_slice(line.as_bytes());
            data.extend_from_slice(b"\r\n");
            if let Some(tap) = &self.tap {
                tap.line(Direction::Sent, line);
            }
            self.stream
                .write_all(&data)
                .await
                .map_err(|e| NetError::from_io(&e))?;
            self.stream.flush().await.map_err(|e| NetError::from_io(&e))
        })
        .await
    }

    /// The stream, for a TLS handshake. Fails when the server sent bytes before the handshake
    /// (a server must not; accepting them would let an attacker inject plain text into what
    /// looks like the encrypted session).
    pub fn into_inner(self) -> Result<S, NetError> {
        if self.buf.is_empty() {
            Ok(self.stream)
        } else {
            Err(NetError::Protocol(
                "the server sent data after accepting STARTTLS, before the TLS handshake".into(),
            ))
        }
    }
}

/// Escapes control characters so a hostile peer's bytes cannot mess up a terminal or a log.
pub fn printable(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(300)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().count() > 300 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    #[tokio::test]
    async fn endless_line_is_cut_off() {
        let (client, mut server) = duplex(64 * 1024);
        tokio::spawn(async move {
            let junk = vec![b'A'; 4096];
            for _ in 0..10 {
                if server.write_all(&junk).await.is_err() {
                    break;
                }
            }
        });
        let mut ls = LineStream::new(client);
        let e = ls.read_line(Duration::from_secs(2)).await.unwrap_err();
        assert!(matches!(e, NetError::Protocol(_)), "{e:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn silence_times_out() {
        let (client, _server) = duplex(64);
        let mut ls = LineStream::new(client);
        let e = ls.read_line(Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(e.error_type(), "timeout");
    }
}
