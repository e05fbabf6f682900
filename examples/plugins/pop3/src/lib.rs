//! Example mailprobe dynamic plugin: can a CRM that syncs over POP3 use this mailbox?
//!
//! - `pop3.encryption`: implicit TLS (port 995) succeeds, or STLS is advertised in CAPA and the
//!   upgrade succeeds, with a certificate a strict client accepts (or `allow_insecure_cert`).
//! - `pop3.login`: USER/PASS (or AUTH PLAIN when USER is refused) succeeds over TLS, then STAT.
//!
//! Configuration (`plugins.settings.pop3.config`, or `--plugin-config pop3='{...}'`):
//! `host` (default: the IMAP host), `port` (default 995 for tls, 110 for starttls),
//! `security` (`tls` | `starttls`; default by port: 995 tls, other ports starttls, tls without a
//! port) and `connect_to` (default: the IMAP host's, when the host is the same). It connects
//! from the mailbox's `source_address` (`--source-address`) when one is set, as the built-in
//! checks do.
//!
//! It runs its own current-thread tokio runtime (the SDK's `Context::block_on`) and rustls with
//! the ring provider passed explicitly (mailprobe-core's TLS client), with every exchange bounded
//! by the run's deadline.
#![deny(unsafe_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mailprobe_plugin_sdk::mailprobe_core::tls::{self, Handshake, Trust};
use mailprobe_plugin_sdk::{
    Context, NetError, Output, Plugin, Requirement, RequirementResult, Security, StepTimer,
};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const ENCRYPTION: &str = "pop3.encryption";
const LOGIN: &str = "pop3.login";

#[derive(Default)]
pub struct Pop3;

/// The plugin's configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub security: Option<Security>,
    pub connect_to: Option<String>,
}

/// Where to reach the POP3 server, after defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Server {
    host: String,
    port: u16,
    security: Security,
    dial: String,
    /// The mailbox's source address (`source_address`, `--source-address`), bound before
    /// connecting like the built-in checks do.
    source: Option<IpAddr>,
}

impl Server {
    fn resolve(config: &Config, cx: &Context) -> Server {
        let host = config
            .host
            .clone()
            .unwrap_or_else(|| cx.target.imap.host.clone());
        let security = match (config.security, config.port) {
            (Some(s), _) => s,
            (None, Some(995)) | (None, None) => Security::Tls,
            (None, Some(_)) => Security::Starttls,
        };
        let port = config.port.unwrap_or(match security {
            Security::Tls => 995,
            Security::Starttls => 110,
        });
        let dial = config
            .connect_to
            .clone()
            .or_else(|| {
                (host.eq_ignore_ascii_case(&cx.target.imap.host))
                    .then(|| cx.target.imap.connect_to.clone())
                    .flatten()
            })
            .unwrap_or_else(|| host.clone());
        Server {
            host,
            port,
            security,
            dial,
            source: cx.target.imap.source_address,
        }
    }

    fn attributes(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("server.address".to_string(), self.host.clone()),
            ("server.port".to_string(), self.port.to_string()),
            ("network.transport".to_string(), "tcp".to_string()),
            ("network.protocol.name".to_string(), "pop3".to_string()),
        ])
    }
}

impl Plugin for Pop3 {
    type Config = Config;
    const NAME: &'static str = "pop3";

    fn requirements(&self) -> Vec<Requirement> {
        vec![
            Requirement::new(
                ENCRYPTION,
                "POP3 over implicit TLS, or STLS advertised and the upgrade succeeds",
            ),
            Requirement::new(
                LOGIN,
                "the user logs in over TLS (USER/PASS or AUTH PLAIN) and STAT succeeds",
            ),
        ]
    }

    fn run(&self, config: Config, cx: &Context, out: &mut Output) -> Result<(), String> {
        let server = Server::resolve(&config, cx);
        let trust = Trust::load(cx.target.ca_file.as_deref()).map_err(|e| e.to_string())?;
        cx.block_on(check(cx, &server, &trust, out))?;
        Ok(())
    }
}

/// One bounded exchange step's timeout: half the check's, never past the deadline.
fn io_timeout(cx: &Context) -> Duration {
    (Duration::from_millis(cx.target.timeout_ms) / 2).min(cx.remaining())
}

/// Bounds one exchange step, so a silent server becomes a timeout naming what was awaited.
async fn within<T>(
    cx: &Context,
    what: &str,
    fut: impl Future<Output = Result<T, NetError>>,
) -> Result<T, NetError> {
    let wait = io_timeout(cx);
    match tokio::time::timeout(wait, fut).await {
        Ok(r) => r,
        Err(_) => Err(NetError::Timeout {
            waiting_for: what.to_string(),
            after: wait,
        }),
    }
}

/// Resolves (bounded) and dials each address in turn; the last error is the one reported.
async fn connect(cx: &Context, server: &Server) -> Result<TcpStream, NetError> {
    let wait = io_timeout(cx);
    let addrs: Vec<SocketAddr> = match server.dial.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, server.port)],
        Err(_) => match tokio::time::timeout(
            wait,
            tokio::net::lookup_host((server.dial.clone(), server.port)),
        )
        .await
        {
            Ok(Ok(a)) => a.collect(),
            Ok(Err(e)) => {
                return Err(NetError::Dns {
                    host: server.dial.clone(),
                    reason: e.to_string(),
                });
            }
            Err(_) => {
                return Err(NetError::Dns {
                    host: server.dial.clone(),
                    reason: format!("no answer within {wait:?}"),
                });
            }
        },
    };
    let mut last = NetError::Dns {
        host: server.dial.clone(),
        reason: "no address".into(),
    };
    for addr in addrs {
        match mailprobe_plugin_sdk::mailprobe_core::net::dial_from(addr, server.source, wait).await
        {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A POP3 conversation over any stream.
struct Session<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    fn new(stream: S) -> Self {
        Session {
            io: BufReader::new(stream),
        }
    }

    async fn line(&mut self, cx: &Context, what: &str) -> Result<String, NetError> {
        let mut line = String::new();
        let n = within(cx, what, async {
            (&mut self.io)
                .take(8192)
                .read_line(&mut line)
                .await
                .map_err(|e| NetError::from_io(&e))
        })
        .await?;
        if n == 0 {
            return Err(NetError::Closed(format!(" while waiting for {what}")));
        }
        Ok(line.trim_end().to_string())
    }

    /// A single-line reply: `Ok(text)` for `+OK`, `Err(Protocol)` with the server's words for
    /// `-ERR`.
    async fn reply(&mut self, cx: &Context, what: &str) -> Result<String, NetError> {
        let line = self.line(cx, what).await?;
        if let Some(rest) = line.strip_prefix("+OK") {
            Ok(rest.trim().to_string())
        } else {
            Err(NetError::Protocol(line))
        }
    }

    async fn send(&mut self, cx: &Context, command: &str) -> Result<(), NetError> {
        let line = format!("{command}\r\n");
        within(cx, "the server to accept a command", async {
            self.io
                .get_mut()
                .write_all(line.as_bytes())
                .await
                .map_err(|e| NetError::from_io(&e))
        })
        .await
    }

    /// CAPA: the capability lines (empty when the server does not know CAPA).
    async fn capa(&mut self, cx: &Context) -> Result<Vec<String>, NetError> {
        self.send(cx, "CAPA").await?;
        if self.reply(cx, "the CAPA reply").await.is_err() {
            return Ok(Vec::new());
        }
        let mut caps = Vec::new();
        loop {
            let l = self.line(cx, "the CAPA list").await?;
            if l == "." {
                return Ok(caps);
            }
            caps.push(l.to_ascii_uppercase());
        }
    }
}

/// The TLS session and what its handshake established.
type TlsSession = Session<tokio_rustls::client::TlsStream<TcpStream>>;

/// The check as a story: connect, get TLS (implicit or STLS), judge it, then log in; each
/// step that fails says why and skips what depends on it.
async fn check(cx: &Context, server: &Server, trust: &Trust, out: &mut Output) {
    let Some(tcp) = open_tcp(cx, server, out).await else {
        skip_login(out);
        return;
    };
    // The address the server saw, the one its firewall must allow.
    let local = tcp.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let upgraded = match server.security {
        Security::Tls => tls_handshake(cx, server, trust, tcp, out).await,
        Security::Starttls => stls(cx, server, trust, tcp, out).await,
    };
    let Some((mut session, handshake)) = upgraded else {
        skip_login(out);
        return;
    };
    match judge_encryption(cx, server, &handshake) {
        Ok(encryption) => out.report(encryption.with("local_address", local)),
        Err(fail) => {
            out.report(fail);
            skip_login(out);
            return;
        }
    }
    if server.security == Security::Tls && !greeting_over_tls(cx, server, &mut session, out).await {
        return;
    }
    login(cx, server, &mut session, out).await;
}

/// The TCP connection, recorded as the `connect` step; a failure fails `pop3.encryption`.
async fn open_tcp(cx: &Context, server: &Server, out: &mut Output) -> Option<TcpStream> {
    let t = StepTimer::start();
    let tcp = connect(cx, server).await;
    out.step(t, "connect", None, &tcp, server.attributes());
    match tcp {
        Ok(s) => Some(s),
        Err(e) => {
            let fail = RequirementResult::fail(
                ENCRYPTION,
                format!("cannot connect to POP3 at {}:{}: {e}", server.host, server.port),
                "Check that the POP3 service listens on this port and that the firewall lets the CRM in.",
            )
            .with("address", format!("{}:{}", server.dial, server.port))
            .with("error", e.to_string());
            out.report(fail);
            None
        }
    }
}

/// The `pop3.encryption` verdict on a completed handshake: `Ok` with a pass (or a warn for an
/// untrusted certificate that is allowed), `Err` with the failure when the login must not go on.
fn judge_encryption(
    cx: &Context,
    server: &Server,
    handshake: &Handshake,
) -> Result<RequirementResult, RequirementResult> {
    if handshake.verified {
        return Ok(RequirementResult::pass(
            ENCRYPTION,
            format!(
                "{} with {} ({})",
                match server.security {
                    Security::Tls => "implicit TLS",
                    Security::Starttls => "STLS upgrade",
                },
                handshake.version.human(),
                handshake.cipher
            ),
        )
        .with("security", server.security.as_str())
        .with("tls_version", handshake.version.name())
        .with("cipher", handshake.cipher.clone())
        .with("certificate_verified", handshake.verified));
    }
    let why = handshake
        .verify_error
        .clone()
        .unwrap_or_else(|| "not verified".into());
    if cx.target.allow_insecure_cert {
        Ok(RequirementResult::warn(
            ENCRYPTION,
            format!("TLS works, but the certificate is not trusted ({why}); accepted because insecure certificates are allowed"),
            "Install a certificate signed by a public CA for the POP3 server.",
        )
        .with("security", server.security.as_str())
        .with("certificate_verified", false))
    } else {
        Err(RequirementResult::fail(
            ENCRYPTION,
            format!("the POP3 server's certificate is not trusted: {why}"),
            "Install a certificate signed by a public CA, or allow an insecure certificate (--allow-insecure-cert).",
        )
        .with("security", server.security.as_str())
        .with("certificate_verified", false))
    }
}

/// Over implicit TLS the greeting comes only after the handshake; without it there is no
/// POP3 server to log in to (`false`, with `pop3.login` failed).
async fn greeting_over_tls(
    cx: &Context,
    server: &Server,
    session: &mut TlsSession,
    out: &mut Output,
) -> bool {
    let t = StepTimer::start();
    let greeting = session.reply(cx, "the POP3 greeting").await;
    out.step(t, "greeting", None, &greeting, server.attributes());
    if let Err(e) = greeting {
        out.report(RequirementResult::fail(
            LOGIN,
            format!("no POP3 greeting over TLS: {e}"),
            "Check that the port speaks POP3 over implicit TLS (usually 995).",
        ));
        return false;
    }
    true
}

/// The password is only ever sent over TLS, so without encryption there is no login to try.
fn skip_login(out: &mut Output) {
    out.report(RequirementResult::skip(
        LOGIN,
        ENCRYPTION,
        format!("not evaluated: {ENCRYPTION} did not pass (the password is sent over TLS only)"),
    ));
}

/// The TLS handshake (recorded with the negotiated version and cipher); a failure fails
/// `pop3.encryption`.
async fn tls_handshake(
    cx: &Context,
    server: &Server,
    trust: &Trust,
    tcp: TcpStream,
    out: &mut Output,
) -> Option<(TlsSession, Handshake)> {
    let t = StepTimer::start();
    let result = tls::handshake(tcp, &server.host, trust, io_timeout(cx)).await;
    let mut attrs = server.attributes();
    if let Ok((_, h)) = &result {
        attrs.insert("tls.protocol.name".into(), "tls".into());
        attrs.insert("tls.protocol.version".into(), h.version.semconv().into());
        attrs.insert("tls.cipher".into(), h.cipher.clone());
    }
    out.step(t, "tls_handshake", None, &result, attrs);
    match result {
        Ok((stream, h)) => Some((Session::new(stream), h)),
        Err(e) => {
            out.report(
                RequirementResult::fail(
                    ENCRYPTION,
                    format!(
                        "the TLS handshake with {}:{} failed: {e}",
                        server.host, server.port
                    ),
                    "Enable TLS for POP3 (Dovecot: ssl = yes and a pop3s listener on 995).",
                )
                .with("error", e.to_string()),
            );
            None
        }
    }
}

/// Greeting, CAPA, STLS in clear, then the handshake; a server without STLS would have the
/// password travel in clear, so that fails `pop3.encryption`.
async fn stls(
    cx: &Context,
    server: &Server,
    trust: &Trust,
    tcp: TcpStream,
    out: &mut Output,
) -> Option<(TlsSession, Handshake)> {
    let attrs = server.attributes();
    let mut plain = Session::new(tcp);
    let t = StepTimer::start();
    let greeting = plain.reply(cx, "the POP3 greeting").await;
    out.step(t, "greeting", None, &greeting, attrs.clone());
    let t = StepTimer::start();
    let offered = match greeting {
        Ok(_) => plain
            .capa(cx)
            .await
            .map(|caps| caps.iter().any(|c| c == "STLS")),
        Err(e) => Err(e),
    };
    let upgraded = match offered {
        Ok(true) => match plain.send(cx, "STLS").await {
            Ok(()) => plain.reply(cx, "the STLS reply").await.map(|_| ()),
            Err(e) => Err(e),
        },
        Ok(false) => Err(NetError::StarttlsNotOffered),
        Err(e) => Err(e),
    };
    out.step(t, "starttls", None, &upgraded, attrs);
    if let Err(e) = upgraded {
        let (summary, remedy) = match e {
            NetError::StarttlsNotOffered => (
                "the POP3 server does not advertise STLS, so the password would travel in clear"
                    .to_string(),
                "Enable TLS for POP3 (Dovecot: ssl = yes), or use implicit TLS on port 995.",
            ),
            other => (
                format!("the STLS upgrade failed: {other}"),
                "Check the POP3 server's TLS configuration.",
            ),
        };
        out.report(RequirementResult::fail(ENCRYPTION, summary, remedy));
        return None;
    }
    // No bytes may be buffered past the STLS reply: the TLS handshake starts right after it.
    let tcp = plain.io.into_inner();
    tls_handshake(cx, server, trust, tcp, out).await
}

/// `pop3.login`: authenticate, then STAT proves the mailbox can be opened.
async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    cx: &Context,
    server: &Server,
    session: &mut Session<S>,
    out: &mut Output,
) {
    let t = StepTimer::start();
    let (mechanism, result) = authenticate(cx, session).await;
    let mut login_attrs = server.attributes();
    login_attrs.insert("pop3.mechanism".into(), mechanism.into());
    out.step(t, "login", None, &result, login_attrs);
    if let Err(e) = result {
        let (summary, remedy) = match &e {
            NetError::Protocol(words) => (
                format!("POP3 login refused ({mechanism}): {words}"),
                "Check the user name and password, and that POP3 access is enabled for the mailbox.",
            ),
            other => (
                format!("POP3 login failed: {other}"),
                "Check that the POP3 server answers within the timeout.",
            ),
        };
        out.report(RequirementResult::fail(LOGIN, summary, remedy).with("mechanism", mechanism));
        return;
    }
    stat(cx, server, session, mechanism, out).await;
}

/// USER/PASS first; when the server refuses it (or has it disabled), SASL PLAIN if CAPA
/// offers it. Returns the mechanism last tried and its outcome.
async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    cx: &Context,
    session: &mut Session<S>,
) -> (&'static str, Result<(), NetError>) {
    let user = cx.target.user.clone();
    let result: Result<(), NetError> = async {
        session.send(cx, &format!("USER {user}")).await?;
        session.reply(cx, "the USER reply").await?;
        session
            .send(cx, &format!("PASS {}", cx.password.expose()))
            .await?;
        session.reply(cx, "the PASS reply").await.map(|_| ())
    }
    .await;
    if !matches!(result, Err(NetError::Protocol(_))) {
        return ("USER/PASS", result);
    }
    let caps = session.capa(cx).await.unwrap_or_default();
    if !caps
        .iter()
        .any(|c| c.starts_with("SASL") && c.split(' ').any(|m| m == "PLAIN"))
    {
        return ("USER/PASS", result);
    }
    let token = base64(format!("\0{user}\0{}", cx.password.expose()).as_bytes());
    let result = async {
        session.send(cx, &format!("AUTH PLAIN {token}")).await?;
        session.reply(cx, "the AUTH reply").await.map(|_| ())
    }
    .await;
    ("AUTH PLAIN", result)
}

/// STAT after the login: the message count and size, then a polite QUIT.
async fn stat<S: AsyncRead + AsyncWrite + Unpin>(
    cx: &Context,
    server: &Server,
    session: &mut Session<S>,
    mechanism: &str,
    out: &mut Output,
) {
    let t = StepTimer::start();
    let stat = async {
        session.send(cx, "STAT").await?;
        session.reply(cx, "the STAT reply").await
    }
    .await;
    out.step(t, "stat", None, &stat, server.attributes());
    match stat {
        Ok(text) => {
            let mut parts = text.split_whitespace().map(|p| p.parse::<u64>().ok());
            let (messages, octets) = (parts.next().flatten(), parts.next().flatten());
            out.report(
                RequirementResult::pass(
                    LOGIN,
                    format!(
                        "logged in with {mechanism}; STAT: {} message(s), {} octets",
                        messages.map_or("?".into(), |m| m.to_string()),
                        octets.map_or("?".into(), |o| o.to_string())
                    ),
                )
                .with("mechanism", mechanism)
                .with("messages", messages)
                .with("octets", octets),
            );
            let _ = session.send(cx, "QUIT").await;
            let _ = session.reply(cx, "the QUIT reply").await;
        }
        Err(e) => out.report(
            RequirementResult::fail(
                LOGIN,
                format!("logged in with {mechanism}, but STAT failed: {e}"),
                "Check that the mailbox can be opened (permissions, quota, mail location).",
            )
            .with("mechanism", mechanism),
        ),
    }
}

/// Standard base64 with padding (RFC 4648), for AUTH PLAIN.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

mailprobe_plugin_sdk::export_plugin!(Pop3);

#[cfg(test)]
mod tests {
    use super::*;
    use mailprobe_plugin_sdk::wire::ContextJson;

    fn cx(imap: &str, connect_to: Option<&str>) -> Context {
        let mut endpoint = mailprobe_plugin_sdk::mailprobe_core::model::endpoint(
            mailprobe_plugin_sdk::Protocol::Imap,
            imap,
            None,
        )
        .unwrap();
        endpoint.connect_to = connect_to.map(str::to_string);
        Context::from_wire(ContextJson {
            plugin: "pop3".into(),
            target: mailprobe_plugin_sdk::TargetView {
                mailbox: "m".into(),
                profile: "hubspot".into(),
                imap: endpoint,
                smtp: None,
                user: "u".into(),
                ca_file: None,
                allow_insecure_cert: false,
                timeout_ms: 10_000,
            },
            password: "p".into(),
            remaining_ms: 10_000,
            facts: serde_json::Value::Null,
        })
    }

    #[test]
    fn server_defaults_follow_the_imap_host() {
        let c = cx("mail.lab.test", Some("127.0.0.1"));
        let s = Server::resolve(&Config::default(), &c);
        assert_eq!(
            (s.port, s.security, s.dial.as_str()),
            (995, Security::Tls, "127.0.0.1")
        );
        let s = Server::resolve(
            &Config {
                port: Some(110),
                ..Config::default()
            },
            &c,
        );
        assert_eq!(s.security, Security::Starttls);
        let s = Server::resolve(
            &Config {
                host: Some("pop.other.test".into()),
                ..Config::default()
            },
            &c,
        );
        assert_eq!(s.dial, "pop.other.test");
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"\0u\0p"), "AHUAcA==");
    }
}
