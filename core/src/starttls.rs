//! The plain-text preambles before a STARTTLS upgrade, for code that needs a raw stream after
//! them (TLS version probes, the shared handshake). Reads are bounded in size and time, so a
//! silent or endless peer cannot hang or bloat the probe.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{NetError, within};

/// The longest line accepted from a server. RFC 5321 allows 512 octets for SMTP replies; IMAP
/// capability lines are longer, but never this long.
pub const MAX_LINE: usize = 16 * 1024;
/// The most lines accepted in one reply (a multi-line EHLO, untagged IMAP lines).
pub const MAX_LINES: usize = 200;

/// A stream with a line buffer in front of it.
pub struct LineStream<S> {
    stream: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> LineStream<S> {
    pub fn new(stream: S) -> Self {
        LineStream {
            stream,
            buf: Vec::with_capacity(1024),
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
                    return Ok(String::from_utf8_lossy(&line).into_owned());
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
            self.stream
                .write_all(&data)
                .await
                .map_err(|e| NetError::from_io(&e))?;
            self.stream.flush().await.map_err(|e| NetError::from_io(&e))
        })
        .await
    }

    /// Reads an SMTP reply (all lines of a multi-line reply): its code and its lines' text.
    pub async fn read_smtp_reply(&mut self, wait: Duration) -> Result<SmtpReply, NetError> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line(wait).await?;
            let bytes = line.as_bytes();
            if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) {
                return Err(NetError::Protocol(format!(
                    "not an SMTP reply: {}",
                    printable(&line)
                )));
            }
            let code: u16 = line[..3].parse().unwrap_or(0);
            let more = bytes.get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_string());
            if !more {
                return Ok(SmtpReply { code, lines });
            }
            if lines.len() >= MAX_LINES {
                return Err(NetError::Protocol(format!(
                    "an SMTP reply of more than {MAX_LINES} lines"
                )));
            }
        }
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

/// One SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpReply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl SmtpReply {
    pub fn text(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" / "))
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

/// What the IMAP server said before TLS.
#[derive(Debug, Clone, Default)]
pub struct ImapPreamble {
    pub greeting: String,
    pub capabilities: Vec<String>,
}

/// Does the IMAP STARTTLS preamble: greeting, CAPABILITY, STARTTLS.
pub async fn imap_starttls<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    wait: Duration,
) -> Result<(S, ImapPreamble), NetError> {
    let mut ls = LineStream::new(stream);
    let greeting = ls.read_line(wait).await?;
    if !greeting.starts_with("* OK") && !greeting.starts_with("* PREAUTH") {
        return Err(NetError::Protocol(format!(
            "IMAP greeting: {}",
            printable(&greeting)
        )));
    }
    let mut capabilities = capabilities_in(&greeting);
    if capabilities.is_empty() {
        ls.write_line("P0 CAPABILITY", wait).await?;
        let (untagged, tagged) = read_tagged(&mut ls, "P0", wait).await?;
        if !tagged.starts_with("P0 OK") {
            return Err(NetError::Protocol(format!(
                "CAPABILITY: {}",
                printable(&tagged)
            )));
        }
        for l in untagged {
            if let Some(rest) = l.strip_prefix("* CAPABILITY ") {
                capabilities.extend(rest.split_whitespace().map(str::to_string));
            }
        }
    }
    if !capabilities
        .iter()
        .any(|c| c.eq_ignore_ascii_case("STARTTLS"))
    {
        return Err(NetError::StarttlsNotOffered);
    }
    ls.write_line("P1 STARTTLS", wait).await?;
    let (_, tagged) = read_tagged(&mut ls, "P1", wait).await?;
    if !tagged.starts_with("P1 OK") {
        return Err(NetError::Protocol(format!(
            "STARTTLS: {}",
            printable(&tagged)
        )));
    }
    Ok((
        ls.into_inner()?,
        ImapPreamble {
            greeting,
            capabilities,
        },
    ))
}

/// `[CAPABILITY a b c]` in a greeting or response code.
pub fn capabilities_in(line: &str) -> Vec<String> {
    let Some(start) = line.find("[CAPABILITY ") else {
        return Vec::new();
    };
    let rest = &line[start + "[CAPABILITY ".len()..];
    let end = rest.find(']').unwrap_or(rest.len());
    rest[..end].split_whitespace().map(str::to_string).collect()
}

async fn read_tagged<S: AsyncRead + AsyncWrite + Unpin>(
    ls: &mut LineStream<S>,
    tag: &str,
    wait: Duration,
) -> Result<(Vec<String>, String), NetError> {
    let mut untagged = Vec::new();
    loop {
        let line = ls.read_line(wait).await?;
        if line.starts_with(tag) && line.as_bytes().get(tag.len()) == Some(&b' ') {
            return Ok((untagged, line));
        }
        if line.starts_with("* BYE") {
            return Err(NetError::Closed(format!(": {}", printable(&line))));
        }
        if untagged.len() >= MAX_LINES {
            return Err(NetError::Protocol(format!(
                "more than {MAX_LINES} untagged lines"
            )));
        }
        untagged.push(line);
    }
}

/// What the SMTP server said before TLS.
#[derive(Debug, Clone, Default)]
pub struct SmtpPreamble {
    pub greeting: String,
    pub extensions: Vec<String>,
}

/// Does the SMTP STARTTLS preamble: 220 greeting, EHLO, STARTTLS.
pub async fn smtp_starttls<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    ehlo_name: &str,
    wait: Duration,
) -> Result<(S, SmtpPreamble), NetError> {
    let mut ls = LineStream::new(stream);
    let greeting = ls.read_smtp_reply(wait).await?;
    if greeting.code != 220 {
        return Err(NetError::Protocol(format!(
            "SMTP greeting: {}",
            printable(&greeting.text())
        )));
    }
    ls.write_line(&format!("EHLO {ehlo_name}"), wait).await?;
    let ehlo = ls.read_smtp_reply(wait).await?;
    if ehlo.code != 250 {
        return Err(NetError::Protocol(format!(
            "EHLO: {}",
            printable(&ehlo.text())
        )));
    }
    let extensions: Vec<String> = ehlo.lines.iter().skip(1).cloned().collect();
    if !extensions
        .iter()
        .any(|e| e.split_whitespace().next() == Some("STARTTLS"))
    {
        return Err(NetError::StarttlsNotOffered);
    }
    ls.write_line("STARTTLS", wait).await?;
    let reply = ls.read_smtp_reply(wait).await?;
    if reply.code != 220 {
        return Err(NetError::Protocol(format!(
            "STARTTLS: {}",
            printable(&reply.text())
        )));
    }
    Ok((
        ls.into_inner()?,
        SmtpPreamble {
            greeting: greeting.lines.join(" "),
            extensions,
        },
    ))
}

/// The name the probe introduces itself with in EHLO.
pub fn ehlo_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| h.contains('.'))
        .unwrap_or_else(|| "mailprobe.localdomain".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    #[tokio::test]
    async fn smtp_multiline_reply() {
        let (client, mut server) = duplex(4096);
        server
            .write_all(b"250-mail.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
            .await
            .unwrap();
        let mut ls = LineStream::new(client);
        let r = ls.read_smtp_reply(Duration::from_secs(1)).await.unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.lines, vec!["mail.example", "PIPELINING", "STARTTLS"]);
    }

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

    #[tokio::test]
    async fn imap_preamble_without_starttls() {
        let (client, server) = duplex(4096);
        tokio::spawn(async move {
            let mut ls = LineStream::new(server);
            ls.write_line(
                "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready",
                Duration::from_secs(1),
            )
            .await
            .unwrap();
        });
        let e = imap_starttls(client, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(e, NetError::StarttlsNotOffered);
    }

    #[tokio::test]
    async fn injected_plaintext_after_starttls_is_refused() {
        let (client, server) = duplex(4096);
        tokio::spawn(async move {
            let mut ls = LineStream::new(server);
            let w = Duration::from_secs(1);
            ls.write_line("220 hi", w).await.unwrap();
            let _ = ls.read_line(w).await;
            ls.write_line("250-hi\r\n250 STARTTLS", w).await.unwrap();
            let _ = ls.read_line(w).await;
            ls.write_line("220 go ahead\r\n250 injected", w)
                .await
                .unwrap();
        });
        let e = smtp_starttls(client, "probe.test", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(e, NetError::Protocol(_)), "{e:?}");
    }

    #[test]
    fn capabilities_in_greeting() {
        assert_eq!(
            capabilities_in("* OK [CAPABILITY IMAP4rev1 STARTTLS] Dovecot ready."),
            vec!["IMAP4rev1", "STARTTLS"]
        );
        assert!(capabilities_in("* OK ready").is_empty());
    }
}
