//! A small IMAP conversation engine for the parts of the session the probe must observe closely
//! (greeting, capabilities, STARTTLS, ID, LIST, EXAMINE), bounded in time and size, and the one
//! IMAP preamble ([`read_greeting`], [`capabilities`], [`starttls`]) every plugin uses.
//!
//! Over TLS it reads one byte at a time on purpose: it never reads past the end of a response,
//! so the stream can be handed to async-imap afterwards without losing a byte. Before TLS
//! ([`Wire::buffered`]) it reads in chunks, so a flood of plaintext costs one `read()` per
//! chunk rather than per byte, and [`Wire::into_checked`] refuses to hand the stream to the TLS
//! handshake when the server sent anything past its reply to STARTTLS: bytes a man in the
//! middle injected in clear would otherwise be taken as the first encrypted-session replies
//! (as the SMTP side refuses them too).

use mailprobe_core::transcript::{Direction, Tap};
use std::time::Duration;

use mailprobe_core::NetError;
use mailprobe_core::error::within;
use mailprobe_core::lines::printable;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The longest single response (a line with its literals) accepted from a server.
pub const MAX_RESPONSE: usize = 64 * 1024;
/// The most untagged responses accepted for one command. A LIST of a large mailbox tree is
/// legitimate (tens of thousands of folders), so this only stops a flood of tiny responses;
/// memory is bounded by [`MAX_REPLY`].
pub const MAX_UNTAGGED: usize = 100_000;
/// The most bytes accepted for all responses of one command.
pub const MAX_REPLY: usize = 8 * 1024 * 1024;

/// A server's status word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    Bye,
    Preauth,
}

/// A status response (`* OK [CODE] text`, `A1 NO text`) split into its parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusLine {
    pub status: Status,
    /// The response code without brackets (`CAPABILITY IMAP4rev1 ...`, `ALERT`).
    pub code: Option<String>,
    pub text: String,
    /// The whole line, made printable, for evidence.
    pub line: String,
}

impl StatusLine {
    /// Parses what follows the tag (or `*`) and its space.
    pub fn parse(rest: &str, whole: &str) -> Option<StatusLine> {
        let (word, after) = match rest.split_once(' ') {
            Some((w, a)) => (w, a),
            None => (rest, ""),
        };
        let status = match word.to_ascii_uppercase().as_str() {
            "OK" => Status::Ok,
            "NO" => Status::No,
            "BAD" => Status::Bad,
            "BYE" => Status::Bye,
            "PREAUTH" => Status::Preauth,
            _ => return None,
        };
        let (code, text) = match after.strip_prefix('[') {
            Some(inner) => match inner.find(']') {
                Some(end) => (
                    Some(inner[..end].to_string()),
                    inner[end + 1..].trim_start().to_string(),
                ),
                None => (None, after.to_string()),
            },
            None => (None, after.to_string()),
        };
        Some(StatusLine {
            status,
            code,
            text,
            line: printable(whole),
        })
    }

    /// The capabilities in a `[CAPABILITY ...]` code.
    pub fn capabilities(&self) -> Option<Vec<String>> {
        let code = self.code.as_deref()?;
        let (word, rest) = code.split_once(' ').unwrap_or((code, ""));
        word.eq_ignore_ascii_case("CAPABILITY")
            .then(|| rest.split_whitespace().map(str::to_string).collect())
    }
}

/// What one command got back.
#[derive(Clone, Debug)]
pub struct Reply {
    /// Untagged responses, without the leading `* `.
    pub untagged: Vec<String>,
    pub tagged: StatusLine,
}

impl Reply {
    /// Capabilities from `* CAPABILITY` lines or a `[CAPABILITY]` code of the tagged reply.
    pub fn capabilities(&self) -> Vec<String> {
        let mut caps = Vec::new();
        for u in &self.untagged {
            if let Some(rest) = strip_word(u, "CAPABILITY") {
                caps.extend(rest.split_whitespace().map(str::to_string));
            }
        }
        if caps.is_empty() {
            caps = self.tagged.capabilities().unwrap_or_default();
        }
        caps
    }

    /// The untagged responses that start with `word` (case-insensitive), without the word.
    pub fn data<'a>(&'a self, word: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.untagged
            .iter()
            .filter_map(move |u| strip_word(u, word))
    }
}

/// `rest` when `line` is `WORD rest` (or just `WORD`), comparing the word case-insensitively.
pub fn strip_word<'a>(line: &'a str, word: &str) -> Option<&'a str> {
    let head = line.get(..word.len())?;
    if !head.eq_ignore_ascii_case(word) {
        return None;
    }
    let rest = &line[word.len()..];
    if rest.is_empty() {
        Some(rest)
    } else {
        rest.strip_prefix(' ')
    }
}

/// An IMAP conversation over `S`.
pub struct Wire<S> {
    stream: S,
    next_tag: u32,
    /// The run's transcript, when it keeps one.
    tap: Option<Tap>,
    /// Read ahead, not yet consumed (only for a buffered wire).
    ahead: Vec<u8>,
    at: usize,
    buffered: bool,
}

/// How much a buffered wire reads at once.
const CHUNK: usize = 8 * 1024;

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    pub fn new(stream: S) -> Self {
        Wire {
            stream,
            next_tag: 1,
            tap: Tap::current(),
            ahead: Vec::new(),
            at: 0,
            buffered: false,
        }
    }

    /// A wire that reads ahead in chunks: for the plaintext part of a session, which ends with
    /// [`Wire::into_checked`].
    pub fn buffered(stream: S) -> Self {
        Wire {
            buffered: true,
            ..Wire::new(stream)
        }
    }

    /// A conversation whose tags start at `P{first}`, for a stream that already carried one.
    pub fn starting_at(stream: S, first: u32) -> Self {
        Wire {
            next_tag: first,
            ..Wire::new(stream)
        }
    }

    /// The stream of an unbuffered wire (which never reads ahead). For a buffered one, use
    /// [`Wire::into_checked`]: this drops whatever was read ahead.
    pub fn into_inner(self) -> S {
        self.stream
    }

    /// The stream, for the TLS handshake after the server's OK to STARTTLS. Fails when the
    /// server sent anything past that reply: plain text injected ahead of the encrypted
    /// session.
    pub fn into_checked(self) -> Result<S, NetError> {
        let left = self.ahead.len().saturating_sub(self.at);
        if left > 0 {
            return Err(NetError::Protocol(format!(
                "the server sent {left} byte(s) in clear after its reply to STARTTLS; refused as a command injection (they would be read as if they came over TLS)"
            )));
        }
        Ok(self.stream)
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    async fn byte(&mut self, got: usize) -> Result<u8, NetError> {
        if self.buffered {
            if self.at >= self.ahead.len() {
                self.ahead.clear();
                self.at = 0;
                self.ahead.resize(CHUNK, 0);
                let n = match self.stream.read(&mut self.ahead).await {
                    Ok(n) => n,
                    Err(e) => {
                        self.ahead.clear();
                        return Err(NetError::from_io(&e));
                    }
                };
                self.ahead.truncate(n);
                if n == 0 {
                    return Err(NetError::Closed(if got == 0 {
                        String::new()
                    } else {
                        " in the middle of a response".into()
                    }));
                }
            }
            let b = self.ahead[self.at];
            self.at += 1;
            return Ok(b);
        }
        let mut b = [0u8; 1];
        match self.stream.read(&mut b).await {
            Ok(0) => Err(NetError::Closed(if got == 0 {
                String::new()
            } else {
                " in the middle of a response".into()
            })),
            Ok(_) => Ok(b[0]),
            Err(e) => Err(NetError::from_io(&e)),
        }
    }

    async fn raw_line(&mut self, out: &mut Vec<u8>) -> Result<(), NetError> {
        loop {
            let b = self.byte(out.len()).await?;
            if b == b'\n' {
                if out.last() == Some(&b'\r') {
                    out.pop();
                }
                return Ok(());
            }
            out.push(b);
            if out.len() > MAX_RESPONSE {
                return Err(NetError::Protocol(format!(
                    "a response longer than {MAX_RESPONSE} bytes"
                )));
            }
        }
    }

    /// Reads one response, waiting at most `wait`. Literals (`{n}` CRLF and n bytes) are read
    /// and turned into quoted strings, so callers parse one line of text.
    pub async fn read_response(&mut self, wait: Duration) -> Result<String, NetError> {
        within(wait, "a response from the IMAP server", async {
            let mut out = Vec::new();
            loop {
                self.raw_line(&mut out).await?;
                let Some(n) = trailing_literal(&out) else {
                    break;
                };
                // Drop the `{n}` marker and read the literal's bytes.
                let open = out.iter().rposition(|&b| b == b'{').unwrap_or(out.len());
                out.truncate(open);
                if out.len() + n > MAX_RESPONSE {
                    return Err(NetError::Protocol(format!(
                        "a literal of {n} bytes (more than {MAX_RESPONSE})"
                    )));
                }
                let mut lit = Vec::with_capacity(n);
                while lit.len() < n {
                    let b = self.byte(1).await?;
                    lit.push(b);
                }
                out.push(b'"');
                for b in lit {
                    if b == b'"' || b == b'\\' {
                        out.push(b'\\');
                    }
                    out.push(b);
                }
                out.push(b'"');
            }
            let text = String::from_utf8_lossy(&out).into_owned();
            if let Some(tap) = &self.tap {
                tap.line(Direction::Received, &text);
            }
            Ok(text)
        })
        .await
    }

    /// Sends `TAG command` CRLF.
    pub async fn send(&mut self, tag: &str, command: &str, wait: Duration) -> Result<(), NetError> {
        within(wait, "sending to the IMAP server", async {
            let line = format!("{tag} {command}\r\n");
            if let Some(tap) = &self.tap {
                tap.line(Direction::Sent, &format!("{tag} {command}"));
            }
            self.stream
                .write_all(line.as_bytes())
                .await
                .map_err(|e| NetError::from_io(&e))?;
            self.stream.flush().await.map_err(|e| NetError::from_io(&e))
        })
        .await
    }

    /// Sends a command under a fresh tag and reads its reply; each response must arrive within
    /// `wait`. A `NO` or `BAD` is a reply, not an error; a closed connection is an error naming
    /// the `BYE` the server sent, if any.
    pub async fn command(&mut self, command: &str, wait: Duration) -> Result<Reply, NetError> {
        let tag = format!("P{}", self.next_tag);
        self.next_tag += 1;
        self.send(&tag, command, wait).await?;
        let verb = command.split(' ').next().unwrap_or(command).to_string();
        let mut untagged = Vec::new();
        let mut bye: Option<String> = None;
        let mut total = 0usize;
        loop {
            let line = match self.read_response(wait).await {
                Ok(l) => l,
                Err(NetError::Closed(_)) if bye.is_some() => {
                    return Err(NetError::Closed(format!(
                        " after {verb}: {}",
                        bye.unwrap_or_default()
                    )));
                }
                Err(e) => return Err(e),
            };
            total += line.len() + 2;
            if total > MAX_REPLY {
                return Err(NetError::Protocol(format!(
                    "the reply to {verb} is longer than {MAX_REPLY} bytes"
                )));
            }
            if let Some(rest) = line.strip_prefix(&tag).and_then(|r| r.strip_prefix(' ')) {
                let tagged = StatusLine::parse(rest, &line)
                    .ok_or_else(|| NetError::Protocol(format!("{verb}: {}", printable(&line))))?;
                return Ok(Reply { untagged, tagged });
            }
            if let Some(rest) = line.strip_prefix("* ") {
                if strip_word(rest, "BYE").is_some() {
                    bye = Some(printable(&line));
                }
                if untagged.len() >= MAX_UNTAGGED {
                    return Err(NetError::Protocol(format!(
                        "more than {MAX_UNTAGGED} responses to {verb}"
                    )));
                }
                untagged.push(rest.to_string());
                continue;
            }
            return Err(NetError::Protocol(format!(
                "unexpected response to {verb}: {}",
                printable(&line)
            )));
        }
    }
}

/// Reads the greeting: `* OK`, `* PREAUTH` or `* BYE` (the caller decides what a BYE means).
/// Anything else is a protocol error.
pub async fn read_greeting<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<S>,
    wait: Duration,
) -> Result<StatusLine, NetError> {
    let line = wire.read_response(wait).await?;
    line.strip_prefix("* ")
        .and_then(|rest| StatusLine::parse(rest, &line))
        .filter(|s| matches!(s.status, Status::Ok | Status::Preauth | Status::Bye))
        .ok_or_else(|| NetError::Protocol(format!("not an IMAP greeting: {}", printable(&line))))
}

/// The capabilities: from the greeting's `[CAPABILITY ...]` code, else by asking.
pub async fn capabilities<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<S>,
    greeting: &StatusLine,
    wait: Duration,
) -> Result<Vec<String>, NetError> {
    if let Some(c) = greeting.capabilities() {
        return Ok(c);
    }
    ask_capabilities(wire, wait).await
}

/// Runs CAPABILITY.
pub async fn ask_capabilities<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<S>,
    wait: Duration,
) -> Result<Vec<String>, NetError> {
    let r = wire.command("CAPABILITY", wait).await?;
    if r.tagged.status != Status::Ok {
        return Err(NetError::Protocol(format!("CAPABILITY: {}", r.tagged.line)));
    }
    Ok(r.capabilities())
}

/// Sends STARTTLS (after the greeting and capabilities were read) and returns the stream for
/// the TLS handshake.
pub async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    mut wire: Wire<S>,
    wait: Duration,
) -> Result<S, NetError> {
    let r = wire.command("STARTTLS", wait).await?;
    if r.tagged.status != Status::Ok {
        return Err(NetError::Protocol(format!("STARTTLS: {}", r.tagged.line)));
    }
    wire.into_checked()
}

/// What the IMAP server said before TLS.
#[derive(Debug, Clone)]
pub struct ImapPreamble {
    pub greeting: StatusLine,
    pub capabilities: Vec<String>,
}

/// The IMAP STARTTLS preamble: greeting, capabilities, STARTTLS. Returns the stream ready for
/// the TLS handshake.
pub async fn starttls<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    wait: Duration,
) -> Result<(S, ImapPreamble), NetError> {
    let mut wire = Wire::buffered(stream);
    let greeting = read_greeting(&mut wire, wait).await?;
    if greeting.status == Status::Bye {
        return Err(NetError::Closed(format!(
            " with its greeting: {}",
            greeting.line
        )));
    }
    let capabilities = capabilities(&mut wire, &greeting, wait).await?;
    if !capabilities
        .iter()
        .any(|c| c.eq_ignore_ascii_case("STARTTLS"))
    {
        return Err(NetError::StarttlsNotOffered);
    }
    let stream = upgrade(wire, wait).await?;
    Ok((
        stream,
        ImapPreamble {
            greeting,
            capabilities,
        },
    ))
}

/// `Some(n)` when the line ends with a literal announcement `{n}` or `{n+}`.
fn trailing_literal(line: &[u8]) -> Option<usize> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Quotes a string as an IMAP quoted string; `None` when it cannot be one (CR, LF, NUL).
pub fn quote(s: &str) -> Option<String> {
    if s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return None;
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    const W: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn preamble_without_starttls() {
        let (client, mut server) = duplex(4096);
        tokio::spawn(async move {
            server
                .write_all(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n")
                .await
                .unwrap();
            let mut sink = [0u8; 64];
            let _ = server.read(&mut sink).await;
        });
        let e = starttls(client, W).await.unwrap_err();
        assert_eq!(e, NetError::StarttlsNotOffered);
    }

    #[tokio::test]
    async fn bye_greeting_is_a_closed_session() {
        let (client, mut server) = duplex(4096);
        tokio::spawn(async move {
            server.write_all(b"* BYE too many\r\n").await.unwrap();
        });
        let e = starttls(client, W).await.unwrap_err();
        assert!(matches!(e, NetError::Closed(_)), "{e:?}");
    }

    #[test]
    fn status_lines() {
        let s = StatusLine::parse(
            "OK [CAPABILITY IMAP4rev1 STARTTLS] Dovecot ready.",
            "* OK [CAPABILITY IMAP4rev1 STARTTLS] Dovecot ready.",
        )
        .unwrap();
        assert_eq!(s.status, Status::Ok);
        assert_eq!(s.text, "Dovecot ready.");
        assert_eq!(s.capabilities().unwrap(), vec!["IMAP4rev1", "STARTTLS"]);
        let s = StatusLine::parse("NO [AUTHENTICATIONFAILED] Authentication failed.", "").unwrap();
        assert_eq!(s.status, Status::No);
        assert_eq!(s.code.as_deref(), Some("AUTHENTICATIONFAILED"));
        assert!(s.capabilities().is_none());
        assert_eq!(StatusLine::parse("BYE", "").unwrap().status, Status::Bye);
        assert!(StatusLine::parse("HELLO there", "").is_none());
    }

    #[tokio::test]
    async fn literals_become_quoted_strings() {
        let (client, mut server) = duplex(4096);
        server
            .write_all(b"* LIST () \"/\" {8}\r\nSent \"x\"\r\n")
            .await
            .unwrap();
        let mut w = Wire::new(client);
        let l = w.read_response(W).await.unwrap();
        assert_eq!(l, r#"* LIST () "/" "Sent \"x\"""#);
    }

    #[tokio::test]
    async fn command_collects_untagged_and_tagged() {
        let (client, mut server) = duplex(4096);
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let _ = server.read(&mut buf).await;
            server
                .write_all(b"* OK [ALERT] maintenance tonight\r\n* CAPABILITY IMAP4rev1 STARTTLS\r\nP1 OK done\r\n")
                .await
                .unwrap();
        });
        let mut w = Wire::new(client);
        let r = w.command("CAPABILITY", W).await.unwrap();
        assert_eq!(r.capabilities(), vec!["IMAP4rev1", "STARTTLS"]);
        assert_eq!(r.tagged.status, Status::Ok);
    }

    #[tokio::test]
    async fn bye_then_close_names_the_bye() {
        let (client, mut server) = duplex(4096);
        tokio::spawn(async move {
            let mut buf = [0u8; 64];
            let _ = server.read(&mut buf).await;
            server.write_all(b"* BYE shutting down\r\n").await.unwrap();
        });
        let mut w = Wire::new(client);
        let e = w.command("CAPABILITY", W).await.unwrap_err();
        assert!(e.to_string().contains("shutting down"), "{e}");
    }

    #[tokio::test]
    async fn endless_line_is_cut_off() {
        let (client, mut server) = duplex(64 * 1024);
        tokio::spawn(async move {
            let junk = vec![b'A'; 8192];
            for _ in 0..20 {
                if server.write_all(&junk).await.is_err() {
                    break;
                }
            }
        });
        let mut w = Wire::new(client);
        let e = w.read_response(W).await.unwrap_err();
        assert!(matches!(e, NetError::Protocol(_)), "{e:?}");
    }

    #[tokio::test]
    async fn huge_literal_is_refused() {
        let (client, mut server) = duplex(4096);
        server
            .write_all(b"* LIST () \"/\" {99999999}\r\n")
            .await
            .unwrap();
        let mut w = Wire::new(client);
        let e = w.read_response(W).await.unwrap_err();
        assert!(matches!(e, NetError::Protocol(_)), "{e:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn silence_times_out() {
        let (client, _server) = duplex(64);
        let mut w = Wire::new(client);
        let e = w.read_response(Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(e.error_type(), "timeout");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote(r#"a"b\c"#).unwrap(), r#""a\"b\\c""#);
        assert!(quote("a\r\nb").is_none());
    }
}
