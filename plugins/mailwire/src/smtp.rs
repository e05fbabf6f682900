//! A small SMTP client for a probe: every command waits for its reply and hands the whole reply
//! back, so the plugin can report what the server said. It speaks only what the checks need
//! (greeting, EHLO/HELO, STARTTLS, AUTH PLAIN/LOGIN, QUIT, and the one test message of the
//! opt-in round-trip check: MAIL, RCPT, DATA); [`starttls`] is the one SMTP preamble every
//! plugin uses.
//!
//! It sits on the core's [`LineStream`], which bounds every line in size and time, so a silent,
//! endless or garbled peer ends in a [`NetError`], never in a hang.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mailprobe_core::NetError;
use mailprobe_core::error::within;
use mailprobe_core::lines::{LineStream, MAX_LINES, printable};
use tokio::io::{AsyncRead, AsyncWrite};
use zeroize::Zeroizing;

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

/// Reads an SMTP reply (all lines of a multi-line reply): its code and its lines' text.
pub async fn read_reply<S: AsyncRead + AsyncWrite + Unpin>(
    lines_in: &mut LineStream<S>,
    wait: Duration,
) -> Result<SmtpReply, NetError> {
    let mut lines = Vec::new();
    loop {
        let line = lines_in.read_line(wait).await?;
        let code = line
            .get(..3)
            .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|c| c.parse::<u16>().ok());
        let Some(code) = code else {
            return Err(NetError::Protocol(format!(
                "not an SMTP reply: {}",
                printable(&line)
            )));
        };
        let more = line.as_bytes().get(3) == Some(&b'-');
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

/// What the SMTP server said before TLS.
#[derive(Debug, Clone, Default)]
pub struct SmtpPreamble {
    pub greeting: String,
    pub extensions: Vec<String>,
}

/// The SMTP STARTTLS preamble: 220 greeting, EHLO, STARTTLS. Returns the stream ready for the
/// TLS handshake.
pub async fn starttls<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    ehlo_name: &str,
    wait: Duration,
) -> Result<(S, SmtpPreamble), NetError> {
    let mut client = SmtpClient::new(stream);
    let greeting = expect(client.reply(wait).await?, 220, "SMTP greeting")?;
    let ehlo = expect(
        client.command(&format!("EHLO {ehlo_name}"), wait).await?,
        250,
        "EHLO",
    )?;
    let ehlo = Ehlo::from_reply(&ehlo);
    if !ehlo.has("STARTTLS") {
        return Err(NetError::StarttlsNotOffered);
    }
    expect(client.command("STARTTLS", wait).await?, 220, "STARTTLS")?;
    Ok((
        client.into_inner()?,
        SmtpPreamble {
            greeting: greeting.lines.join(" "),
            extensions: ehlo.extensions,
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

/// The EHLO reply, split into the server's name line and its extension lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ehlo {
    /// The first line: the server's name and an optional greeting.
    pub domain: String,
    /// One entry per extension line, as sent (`SIZE 10240000`, `AUTH PLAIN LOGIN`).
    pub extensions: Vec<String>,
}

impl Ehlo {
    pub fn from_reply(reply: &SmtpReply) -> Ehlo {
        let mut lines = reply.lines.iter().map(|l| printable(l.trim()));
        Ehlo {
            domain: lines.next().unwrap_or_default(),
            extensions: lines.filter(|l| !l.is_empty()).collect(),
        }
    }

    /// Whether an extension keyword (case-insensitive) is advertised.
    pub fn has(&self, keyword: &str) -> bool {
        self.extensions
            .iter()
            .any(|e| keyword_of(e).eq_ignore_ascii_case(keyword))
    }

    /// Whether AUTH is advertised at all (`AUTH ...` or the pre-RFC `AUTH=...` form).
    pub fn offers_auth(&self) -> bool {
        self.extensions.iter().any(|e| auth_params(e).is_some())
    }

    /// The SASL mechanisms of every AUTH line, upper-cased, without duplicates, in the order
    /// the server listed them.
    pub fn auth_mechanisms(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for params in self.extensions.iter().filter_map(|e| auth_params(e)) {
            for m in params.split_whitespace() {
                let m = m.to_ascii_uppercase();
                if !out.contains(&m) {
                    out.push(m);
                }
            }
        }
        out
    }
}

/// The keyword of an extension line: `SIZE` of `SIZE 1000`, `AUTH` of `AUTH=LOGIN`.
fn keyword_of(line: &str) -> &str {
    line.split([' ', '=']).next().unwrap_or("")
}

/// The mechanism list of an AUTH line (`AUTH PLAIN LOGIN`, `AUTH=PLAIN LOGIN`), else `None`.
fn auth_params(line: &str) -> Option<&str> {
    let head = line.get(..5)?;
    if head.eq_ignore_ascii_case("AUTH ") || head.eq_ignore_ascii_case("AUTH=") {
        Some(&line[5..])
    } else if line.eq_ignore_ascii_case("AUTH") {
        Some("")
    } else {
        None
    }
}

/// The SASL mechanisms the probe logs in with, the CRM's "username and password".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }

    /// The first of a client's mechanisms (in its order) that the server offers and the probe
    /// speaks.
    pub fn choose_in_order(offered: &[String], client: &[String]) -> Option<Mechanism> {
        client
            .iter()
            .filter(|m| offered.iter().any(|o| o.eq_ignore_ascii_case(m)))
            .find_map(|m| match m.to_ascii_uppercase().as_str() {
                "PLAIN" => Some(Mechanism::Plain),
                "LOGIN" => Some(Mechanism::Login),
                _ => None,
            })
    }

    /// PLAIN when offered (one round trip), else LOGIN, else none the probe can use.
    pub fn choose(offered: &[String]) -> Option<Mechanism> {
        let has = |m: &str| offered.iter().any(|o| o.eq_ignore_ascii_case(m));
        if has("PLAIN") {
            Some(Mechanism::Plain)
        } else if has("LOGIN") {
            Some(Mechanism::Login)
        } else {
            None
        }
    }
}

/// The AUTH PLAIN response (RFC 4616): base64 of `authzid NUL authcid NUL password`, with an
/// empty authorization identity. Wiped when dropped, like the raw bytes it encodes.
pub fn plain_response(user: &str, password: &str) -> Zeroizing<String> {
    let mut raw = Zeroizing::new(Vec::with_capacity(user.len() + password.len() + 2));
    raw.push(0);
    raw.extend_from_slice(user.as_bytes());
    raw.push(0);
    raw.extend_from_slice(password.as_bytes());
    Zeroizing::new(STANDARD.encode(&*raw))
}

/// One AUTH LOGIN answer: the user name or the password, in base64, wiped when dropped.
pub fn login_response(value: &str) -> Zeroizing<String> {
    Zeroizing::new(STANDARD.encode(value.as_bytes()))
}

/// Removes every form in which the password could come back in a server's reply (plain, the
/// base64 the probe sent, an echoed command), so a hostile or careless server cannot make it
/// appear in a report. Control characters come out escaped.
pub fn redact(text: &str, password: &str) -> String {
    mailprobe_core::redact::redact(text, password)
}

/// A reply that may echo the credentials, as one line for a report: redacted on the whole
/// reply first, and only then cut to length, so no prefix of a password straddling the cut
/// survives.
pub fn scrubbed_reply(reply: &SmtpReply, password: &str) -> String {
    printable(&redact(&reply.text(), password))
}

/// A reply as one line for a report: `535 5.7.8 Error: authentication failed`, control
/// characters escaped.
pub fn reply_text(reply: &SmtpReply) -> String {
    printable(&reply.text())
}

/// An SMTP session over any stream (plain before STARTTLS, TLS after).
pub struct SmtpClient<S> {
    lines: LineStream<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> SmtpClient<S> {
    pub fn new(stream: S) -> Self {
        SmtpClient {
            lines: LineStream::new(stream),
        }
    }

    /// Reads one reply, the whole of it within `wait` (a peer dripping continuation lines
    /// cannot stretch it).
    pub async fn reply(&mut self, wait: Duration) -> Result<SmtpReply, NetError> {
        within(
            wait,
            "the server's reply",
            read_reply(&mut self.lines, wait),
        )
        .await
    }

    /// Sends one command line and reads its reply, both within `wait`.
    pub async fn command(&mut self, line: &str, wait: Duration) -> Result<SmtpReply, NetError> {
        within(wait, "the server's reply", async {
            self.lines.write_line(line, wait).await?;
            read_reply(&mut self.lines, wait).await
        })
        .await
    }

    /// Runs an AUTH exchange with `mechanism` and returns the server's final reply (235 on
    /// success). The credentials are sent only in base64 lines the caller never logs.
    pub async fn auth(
        &mut self,
        mechanism: Mechanism,
        user: &str,
        password: &str,
        wait: Duration,
    ) -> Result<SmtpReply, NetError> {
        within(wait, "the reply to AUTH", async {
            match mechanism {
                Mechanism::Plain => {
                    let response = plain_response(user, password);
                    let line = Zeroizing::new(format!("AUTH PLAIN {}", response.as_str()));
                    let reply = self.command(&line, wait).await?;
                    if reply.code == 334 {
                        // A server that does not take the initial response asks for it again.
                        return self.command(&response, wait).await;
                    }
                    Ok(reply)
                }
                Mechanism::Login => {
                    let reply = self.command("AUTH LOGIN", wait).await?;
                    if reply.code != 334 {
                        return Ok(reply);
                    }
                    let reply = self.command(&login_response(user), wait).await?;
                    if reply.code != 334 {
                        return Ok(reply);
                    }
                    self.command(&login_response(password), wait).await
                }
            }
        })
        .await
    }

    /// Sends one message from `from` to `to` (plain addresses, checked by the caller) with
    /// MAIL, RCPT and DATA, each reply within `wait`. A refusal is a [`Submission::Refused`],
    /// after which the transaction is reset (RSET, best effort) so the session stays usable.
    pub async fn submit(
        &mut self,
        from: &str,
        to: &str,
        message: &str,
        wait: Duration,
    ) -> Result<Submission, NetError> {
        let steps: [(&'static str, String, &[u16]); 3] = [
            ("MAIL", format!("MAIL FROM:<{from}>"), &[250]),
            ("RCPT", format!("RCPT TO:<{to}>"), &[250, 251]),
            ("DATA", "DATA".to_string(), &[354]),
        ];
        for (command, line, ok) in steps {
            let reply = self.command(&line, wait).await?;
            if !ok.contains(&reply.code) {
                if command != "MAIL" {
                    let _ = self.command("RSET", wait).await;
                }
                return Ok(Submission::Refused { command, reply });
            }
        }
        for line in data_lines(message) {
            self.lines.write_line(&line, wait).await?;
        }
        let reply = self.command(".", wait).await?;
        if reply.code == 250 {
            Ok(Submission::Accepted(reply))
        } else {
            Ok(Submission::Refused {
                command: ".",
                reply,
            })
        }
    }

    /// The stream, for the TLS handshake after a 220 to STARTTLS. Fails when the server sent
    /// anything after that reply (plain text injected ahead of the encrypted session).
    pub fn into_inner(self) -> Result<S, NetError> {
        self.lines.into_inner()
    }
}

/// How the server took a message handed to [`SmtpClient::submit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submission {
    /// The final 250 after the message's data: the server queued it.
    Accepted(SmtpReply),
    /// The server refused `command` (`MAIL`, `RCPT`, `DATA`, or `.` for the data itself).
    Refused {
        command: &'static str,
        reply: SmtpReply,
    },
}

/// The lines of `message` ready for DATA: every line ending made CRLF (the caller sends each
/// line with its CRLF), and a line that starts with `.` doubled (RFC 5321 4.5.2), so no line
/// of the message can end the data early.
pub fn data_lines(message: &str) -> Vec<String> {
    let body = message.strip_suffix('\n').unwrap_or(message);
    body.split('\n')
        .map(|l| {
            let l = l.strip_suffix('\r').unwrap_or(l);
            if l.starts_with('.') {
                format!(".{l}")
            } else {
                l.to_string()
            }
        })
        .collect()
}

/// Checks a reply's code, turning any other into a protocol error naming the command.
pub fn expect(reply: SmtpReply, code: u16, what: &str) -> Result<SmtpReply, NetError> {
    if reply.code == code {
        Ok(reply)
    } else {
        Err(NetError::Protocol(format!(
            "{what}: {}",
            reply_text(&reply)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    #[tokio::test]
    async fn multiline_reply() {
        let (client, mut server) = duplex(4096);
        server
            .write_all(b"250-mail.example\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
            .await
            .unwrap();
        let mut ls = LineStream::new(client);
        let r = read_reply(&mut ls, Duration::from_secs(1)).await.unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.lines, vec!["mail.example", "PIPELINING", "STARTTLS"]);
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
        let e = starttls(client, "probe.test", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(e, NetError::Protocol(_)), "{e:?}");
    }

    #[tokio::test]
    async fn starttls_not_offered() {
        let (client, server) = duplex(4096);
        tokio::spawn(async move {
            let mut ls = LineStream::new(server);
            let w = Duration::from_secs(1);
            ls.write_line("220 hi", w).await.unwrap();
            let _ = ls.read_line(w).await;
            ls.write_line("250-hi\r\n250 AUTH PLAIN", w).await.unwrap();
            let _ = ls.read_line(w).await;
        });
        let e = starttls(client, "probe.test", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert_eq!(e, NetError::StarttlsNotOffered);
    }

    fn reply(code: u16, lines: &[&str]) -> SmtpReply {
        SmtpReply {
            code,
            lines: lines.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn ehlo_extensions_and_auth_mechanisms() {
        let e = Ehlo::from_reply(&reply(
            250,
            &[
                "mail.lab.test",
                "PIPELINING",
                "SIZE 10240000",
                "AUTH PLAIN login",
                "AUTH=LOGIN XOAUTH2",
                "8BITMIME",
            ],
        ));
        assert_eq!(e.domain, "mail.lab.test");
        assert!(e.has("size") && e.has("PIPELINING") && e.has("8BITMIME"));
        assert!(!e.has("STARTTLS"));
        assert!(e.offers_auth());
        assert_eq!(e.auth_mechanisms(), vec!["PLAIN", "LOGIN", "XOAUTH2"]);
    }

    #[test]
    fn no_auth_line_means_no_auth() {
        let e = Ehlo::from_reply(&reply(250, &["mx", "AUTHX", "STARTTLS"]));
        assert!(!e.offers_auth());
        assert!(e.auth_mechanisms().is_empty());
        assert!(e.has("starttls"));
        let bare = Ehlo::from_reply(&reply(250, &["mx"]));
        assert!(bare.extensions.is_empty());
    }

    #[test]
    fn mechanism_choice_prefers_plain() {
        let m =
            |v: &[&str]| Mechanism::choose(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(m(&["LOGIN", "PLAIN"]), Some(Mechanism::Plain));
        assert_eq!(m(&["CRAM-MD5", "LOGIN"]), Some(Mechanism::Login));
        assert_eq!(m(&["XOAUTH2", "GSSAPI"]), None);
    }

    #[test]
    fn auth_encodings() {
        // RFC 4616's example shape: NUL user NUL password.
        assert_eq!(
            plain_response("tim", "tanstaaftanstaaf").as_str(),
            "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"
        );
        assert_eq!(
            login_response("alice@lab.test").as_str(),
            "YWxpY2VAbGFiLnRlc3Q="
        );
        assert_eq!(login_response("Password:").as_str(), "UGFzc3dvcmQ6");
        // Non-ASCII passwords travel as UTF-8.
        assert_eq!(login_response("é").as_str(), "w6k=");
    }

    #[test]
    fn password_never_survives_redaction() {
        let echo = format!(
            "535 bad {} and {} and hunter2",
            plain_response("u", "hunter2").as_str(),
            login_response("hunter2").as_str()
        );
        let r = redact(&echo, "hunter2");
        assert!(!r.contains("hunter2"));
        assert!(!r.contains(login_response("hunter2").as_str()));
        assert_eq!(r, "535 bad [redacted] and [redacted] and [redacted]");
        // The password at character 295 of a long reply: cut after redaction, no prefix left.
        let long = reply(535, &[&format!("{}hunter2 and more", "x".repeat(291))]);
        let r = scrubbed_reply(&long, "hunter2");
        assert!(!r.contains("hunt"), "{r}");
    }

    async fn scripted(script: &'static [(&'static str, &'static str)]) -> Vec<String> {
        let (client, mut server) = duplex(8192);
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            for (expect, answer) in script {
                if !expect.is_empty() {
                    let mut buf = vec![0u8; 1024];
                    let n = server.read(&mut buf).await.unwrap();
                    let line = String::from_utf8_lossy(&buf[..n]).trim_end().to_string();
                    assert!(line.starts_with(expect), "{line} vs {expect}");
                    seen.push(line);
                }
                server.write_all(answer.as_bytes()).await.unwrap();
            }
            seen
        });
        let mut c = SmtpClient::new(client);
        let w = Duration::from_secs(2);
        let _ = c.reply(w).await.unwrap();
        let last = if script[1].0.starts_with("AUTH PLAIN") {
            c.auth(Mechanism::Plain, "u", "p", w).await.unwrap()
        } else {
            c.auth(Mechanism::Login, "u", "p", w).await.unwrap()
        };
        assert_eq!(last.code, 235);
        server.await.unwrap()
    }

    #[tokio::test]
    async fn auth_plain_sends_an_initial_response() {
        let seen = scripted(&[("", "220 hi\r\n"), ("AUTH PLAIN", "235 2.7.0 ok\r\n")]).await;
        assert_eq!(
            seen,
            vec![format!("AUTH PLAIN {}", plain_response("u", "p").as_str())]
        );
    }

    #[tokio::test]
    async fn auth_login_answers_both_challenges() {
        let seen = scripted(&[
            ("", "220 hi\r\n"),
            ("AUTH LOGIN", "334 VXNlcm5hbWU6\r\n"),
            ("dQ==", "334 UGFzc3dvcmQ6\r\n"),
            ("cA==", "235 ok\r\n"),
        ])
        .await;
        assert_eq!(seen, vec!["AUTH LOGIN", "dQ==", "cA=="]);
    }

    #[test]
    fn data_lines_are_crlf_and_dot_stuffed() {
        assert_eq!(
            data_lines("Subject: x\r\n\r\n.\nbody\n..two\r\nend\n"),
            vec!["Subject: x", "", "..", "body", "...two", "end"]
        );
        assert_eq!(data_lines("one"), vec!["one"]);
    }

    #[tokio::test]
    async fn submit_sends_the_transaction_and_stuffs_the_data() {
        let (client, mut server) = duplex(8192);
        let peer = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            for answer in ["250 ok\r\n", "250 ok\r\n", "354 go\r\n"] {
                let n = server.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
                server.write_all(answer.as_bytes()).await.unwrap();
            }
            while !got.ends_with(b"\r\n.\r\n") {
                let n = server.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed before the end of the data");
                got.extend_from_slice(&buf[..n]);
            }
            server
                .write_all(b"250 2.0.0 queued as ABC\r\n")
                .await
                .unwrap();
            String::from_utf8(got).unwrap()
        });
        let mut c = SmtpClient::new(client);
        let out = c
            .submit(
                "a@x.test",
                "b@x.test",
                "S: t\n\n.hidden\n",
                Duration::from_secs(2),
            )
            .await
            .unwrap();
        assert!(matches!(out, Submission::Accepted(r) if r.code == 250));
        assert_eq!(
            peer.await.unwrap(),
            "MAIL FROM:<a@x.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\nS: t\r\n\r\n..hidden\r\n.\r\n"
        );
    }

    #[tokio::test]
    async fn a_refused_recipient_is_reported_and_the_transaction_reset() {
        let (client, mut server) = duplex(8192);
        let peer = tokio::spawn(async move {
            let mut got = String::new();
            let mut buf = [0u8; 1024];
            for answer in [
                "250 ok\r\n",
                "553 5.7.1 not owned by user\r\n",
                "250 reset\r\n",
            ] {
                let n = server.read(&mut buf).await.unwrap();
                got.push_str(&String::from_utf8_lossy(&buf[..n]));
                server.write_all(answer.as_bytes()).await.unwrap();
            }
            got
        });
        let mut c = SmtpClient::new(client);
        let out = c
            .submit("a@x.test", "b@x.test", "x", Duration::from_secs(2))
            .await
            .unwrap();
        match out {
            Submission::Refused { command, reply } => {
                assert_eq!((command, reply.code), ("RCPT", 553));
            }
            other => panic!("{other:?}"),
        }
        assert!(peer.await.unwrap().ends_with("RSET\r\n"));
    }

    #[tokio::test(start_paused = true)]
    async fn dripping_continuation_lines_are_bounded_by_one_wait() {
        let (client, mut server) = duplex(8192);
        tokio::spawn(async move {
            loop {
                if server.write_all(b"250-still going\r\n").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(900)).await;
            }
        });
        let mut c = SmtpClient::new(client);
        let e = c.reply(Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(e.error_type(), "timeout");
    }
}
