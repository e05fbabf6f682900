//! The `imap` check: is the IMAP session encrypted (implicit TLS or STARTTLS), which server
//! software answers (Courier-IMAP is not supported by the CRM), does the user's password log in
//! over TLS, and are INBOX and a Sent folder there to sync.
//!
//! Up to login the probe speaks IMAP itself ([`wire`]), one byte at a time and bounded in time
//! and size, so that the greeting and every capability list stay observable and a hostile server
//! cannot hang or bloat it. The login goes through async-imap, whose [`ImapSession`] is then kept
//! open for the connection-limit check.
#![forbid(unsafe_code)]

pub mod fingerprint;
pub mod folders;
pub mod legacy;
pub mod session;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mailprobe_core::context::{HeldSession, StepTimer};
use mailprobe_core::net::Conn;
use mailprobe_core::plugin::{BoxFuture, PluginError};
use mailprobe_core::starttls::printable;
use mailprobe_core::{
    CheckPlugin, Endpoint, Handshake, NetError, PluginInfo, Protocol, RequirementResult,
    RunContext, Security, Target, TlsVersion, tls,
};
use serde_json::{Value, json};
use tokio_rustls::client::TlsStream;

use crate::fingerprint::{COURIER, Observed};
use crate::folders::{Folder, Namespace};
use crate::wire::{Reply, Status, StatusLine, Wire, quote};

pub const NAME: &str = "imap";

/// The logged-in session this plugin leaves in `RunContext::held` (protocol IMAP, wrapped in
/// [`session::HeldImap`]) for the connection-limit check. INBOX and the Sent folder have been
/// EXAMINEd in it, so it is in the selected (read-only) state.
pub type ImapSession = async_imap::Session<TlsStream<Conn>>;

const ENCRYPTION: &str = "imap.encryption";
const SOFTWARE: &str = "imap.server_software";
const LOGIN: &str = "imap.login";
const FOLDERS: &str = "imap.folders";

/// The IMAP plugin.
#[derive(Debug, Default)]
pub struct Imap;

impl CheckPlugin for Imap {
    fn info(&self) -> PluginInfo {
        PluginInfo::builtin(
            NAME,
            &[ENCRYPTION, SOFTWARE, LOGIN, FOLDERS],
            &["reachability"],
        )
    }

    fn run<'a>(&'a self, cx: &'a mut RunContext) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(async move {
            probe(cx).await;
            Ok(())
        })
    }
}

/// What the server showed of itself so far.
#[derive(Debug, Default)]
struct Seen {
    greeting: Option<StatusLine>,
    caps_before_tls: Option<Vec<String>>,
    caps_tls: Vec<String>,
    caps_login: Vec<String>,
    id: Option<BTreeMap<String, String>>,
    alerts: Vec<String>,
}

impl Seen {
    fn observed(&self) -> Observed {
        let mut capabilities: Vec<String> = Vec::new();
        for c in self
            .caps_before_tls
            .iter()
            .flatten()
            .chain(&self.caps_tls)
            .chain(&self.caps_login)
        {
            if !capabilities.iter().any(|h| h.eq_ignore_ascii_case(c)) {
                capabilities.push(c.clone());
            }
        }
        Observed {
            greeting_text: self
                .greeting
                .as_ref()
                .map(|g| g.text.clone())
                .unwrap_or_default(),
            capabilities,
            id: self.id.clone(),
        }
    }

    fn note_alerts(&mut self, reply: &Reply) {
        for u in &reply.untagged {
            if let Some(rest) = wire::strip_word(u, "OK")
                && rest.to_ascii_uppercase().starts_with("[ALERT]")
            {
                self.alerts.push(printable(u));
            }
        }
    }
}

fn has(caps: &[String], cap: &str) -> bool {
    caps.iter().any(|c| c.eq_ignore_ascii_case(cap))
}

fn mechanisms(caps: &[String]) -> Vec<String> {
    caps.iter()
        .filter_map(|c| {
            c.get(..5)
                .filter(|p| p.eq_ignore_ascii_case("AUTH="))
                .map(|_| c[5..].to_ascii_uppercase())
        })
        .collect()
}

/// How the run ended before login could be tried.
enum Stop {
    /// The encryption requirement failed (or was found not to be checkable); its result.
    Encryption(RequirementResult),
    /// Encryption passed, but the session broke or was refused before login.
    Session { summary: String, error: NetError },
}

async fn probe(cx: &mut RunContext) {
    let ep = cx.target.imap.clone();
    if let Some(p) = cx.blocked_by(ENCRYPTION) {
        for id in [ENCRYPTION, SOFTWARE, LOGIN, FOLDERS] {
            cx.report(RequirementResult::skip(
                id,
                &p,
                format!("not evaluated: {p} did not pass"),
            ));
        }
        return;
    }
    let mut seen = Seen::default();
    let conn = match cx.connect(&ep).await {
        Ok(c) => c,
        Err(e) => {
            let r = encryption_fail(&ep, &seen, "connect", &e);
            return abandon(cx, &seen, Stop::Encryption(r));
        }
    };
    let session = match ep.security {
        Security::Tls => implicit_tls(cx, &ep, conn, &mut seen).await,
        Security::Starttls => starttls(cx, &ep, conn, &mut seen).await,
    };
    let (wire, handshake) = match session {
        Ok(s) => s,
        Err(stop) => return abandon(cx, &seen, stop),
    };
    login_and_folders(cx, &ep, wire, handshake, &mut seen).await;
}

/// Reports what is left after the run stopped before login.
fn abandon(cx: &mut RunContext, seen: &Seen, stop: Stop) {
    match stop {
        Stop::Encryption(r) => {
            let passed = r.status != mailprobe_core::Status::Fail;
            let why = r.summary.clone();
            cx.report(r);
            report_software(cx, seen);
            if passed {
                // TLS is there, but only in a version the probe's TLS library cannot speak.
                cx.report(RequirementResult::skip(
                    LOGIN,
                    "imap.tls_versions",
                    format!("not evaluated: {why}; mailprobe's TLS library cannot log in over TLS 1.1 or lower"),
                ));
            } else {
                cx.skip_if_blocked(LOGIN);
            }
        }
        Stop::Session { summary, error } => {
            report_software(cx, seen);
            let mut r = RequirementResult::fail(
                LOGIN,
                summary,
                "The server broke off the IMAP session before login: check the IMAP service's logs (connection limits per user or per address, a proxy in front of it), and that it answers with an `* OK` greeting.",
            )
            .with("error", error.to_string())
            .with("error_type", error.error_type());
            if let Some(g) = &seen.greeting {
                r = r.with("greeting", g.line.clone());
            }
            cx.report(r);
        }
    }
    cx.skip_if_blocked(FOLDERS);
}

fn encryption_fail(ep: &Endpoint, seen: &Seen, stage: &str, e: &NetError) -> RequirementResult {
    let remedy = match e {
        NetError::StarttlsNotOffered => format!(
            "Enable TLS on the IMAP server so it advertises STARTTLS on port {port} (Dovecot: `ssl = required` with `ssl_cert = </path/fullchain.pem` and `ssl_key = </path/key.pem`; Courier: TLS_CERTFILE in imapd-ssl), or use implicit TLS on port 993.",
            port = ep.port
        ),
        NetError::Tls(_) | NetError::Closed(_) | NetError::Reset if stage == "tls_handshake" => {
            "The TLS handshake failed: check that the server has a certificate and key configured (Dovecot: ssl_cert/ssl_key) and accepts TLS 1.2 (Dovecot: ssl_min_protocol = TLSv1.2), and that this port speaks the security mode given (--imap-security).".to_string()
        }
        // Silence before a STARTTLS greeting is what an implicit-TLS port looks like.
        NetError::Timeout { .. } if stage == "greeting" && ep.security == Security::Starttls => format!(
            "No IMAP greeting arrived: if port {} expects TLS from the first byte (implicit TLS, usually 993), use --imap-security tls (imap_security: tls); otherwise check the IMAP service.",
            ep.port
        ),
        _ => "Check that the IMAP service on this port answers with an `* OK` greeting and accepts STARTTLS or implicit TLS.".to_string(),
    };
    let summary = match e {
        NetError::StarttlsNotOffered => {
            "the server does not offer STARTTLS: credentials would travel in clear".to_string()
        }
        _ => format!("no TLS session ({stage}): {e}"),
    };
    let mut r = RequirementResult::fail(ENCRYPTION, summary, remedy)
        .with("security", ep.security.as_str())
        .with("stage", stage)
        .with("error", e.to_string())
        .with("error_type", e.error_type());
    if let Some(caps) = &seen.caps_before_tls {
        r = r
            .with("starttls_offered", has(caps, "STARTTLS"))
            .with("capabilities_before_tls", json!(caps));
    }
    if let Some(g) = &seen.greeting {
        r = r.with("greeting", g.line.clone());
    }
    r
}

/// After a failed handshake: does the server answer a ClientHello offering TLS 1.1 at most?
/// Runs over a fresh connection (with the STARTTLS preamble again where needed), as a
/// `tls_legacy_probe` step.
async fn legacy_version(cx: &mut RunContext, ep: &Endpoint) -> Option<TlsVersion> {
    let conn = cx.connect(ep).await.ok()?;
    let wait = cx.io_timeout();
    let host = ep.host.clone();
    let security = ep.security;
    cx.step("tls_legacy_probe", Some(ep), async move {
        let stream = if security == Security::Starttls {
            let mut w = Wire::new(conn);
            let g = w.read_response(wait).await?;
            if !g.starts_with("* OK") {
                return Ok(None);
            }
            if w.command("STARTTLS", wait).await?.tagged.status != Status::Ok {
                return Ok(None);
            }
            w.into_inner()
        } else {
            conn
        };
        legacy::probe(stream, &host, wait).await
    })
    .await
    .ok()
    .flatten()
}

async fn handshake(
    cx: &mut RunContext,
    ep: &Endpoint,
    conn: Conn,
    seen: &Seen,
) -> Result<(TlsStream<Conn>, Handshake), Stop> {
    let timer = StepTimer::start();
    let out = tls::handshake(conn, &ep.host, &cx.trust, cx.io_timeout()).await;
    let view = match &out {
        Ok((_, h)) => Ok(h.clone()),
        Err(e) => Err(e.clone()),
    };
    cx.note_handshake(timer, ep, &view);
    match out {
        Ok(x) => Ok(x),
        Err(e) if matches!(e, NetError::Tls(_) | NetError::Closed(_) | NetError::Reset) => {
            match legacy_version(cx, ep).await {
                Some(v) => Err(Stop::Encryption(
                    RequirementResult::pass(
                        ENCRYPTION,
                        format!("the server offers TLS, but only {} or lower ({e}), which the CRM accepts (see imap.tls_versions)", v.human()),
                    )
                    .with("security", ep.security.as_str())
                    .with("legacy_tls_only", true)
                    .with("tls_version", v.name())
                    .with("error", e.to_string()),
                )),
                None => Err(Stop::Encryption(encryption_fail(ep, seen, "tls_handshake", &e))),
            }
        }
        Err(e) => Err(Stop::Encryption(encryption_fail(ep, seen, "tls_handshake", &e))),
    }
}

/// Reads the greeting as a `greeting` step.
async fn greeting<S>(
    cx: &mut RunContext,
    ep: &Endpoint,
    wire: &mut Wire<S>,
    seen: &mut Seen,
) -> Result<StatusLine, NetError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let wait = cx.io_timeout();
    let out = cx
        .step("greeting", Some(ep), async {
            let line = wire.read_response(wait).await?;
            let parsed = line
                .strip_prefix("* ")
                .and_then(|rest| StatusLine::parse(rest, &line))
                .filter(|s| matches!(s.status, Status::Ok | Status::Preauth | Status::Bye));
            parsed.ok_or_else(|| {
                NetError::Protocol(format!("not an IMAP greeting: {}", printable(&line)))
            })
        })
        .await?;
    seen.greeting = Some(out.clone());
    if out
        .code
        .as_deref()
        .is_some_and(|c| c.eq_ignore_ascii_case("ALERT"))
    {
        seen.alerts.push(out.line.clone());
    }
    if out.status == Status::Bye {
        return Err(NetError::Closed(format!(
            " with its greeting: {}",
            out.line
        )));
    }
    Ok(out)
}

/// Runs CAPABILITY as a `capability` step.
async fn capability<S>(
    cx: &mut RunContext,
    ep: &Endpoint,
    wire: &mut Wire<S>,
) -> Result<Vec<String>, NetError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let wait = cx.io_timeout();
    cx.step("capability", Some(ep), async {
        let r = wire.command("CAPABILITY", wait).await?;
        if r.tagged.status != Status::Ok {
            return Err(NetError::Protocol(format!("CAPABILITY: {}", r.tagged.line)));
        }
        Ok(r.capabilities())
    })
    .await
}

async fn implicit_tls(
    cx: &mut RunContext,
    ep: &Endpoint,
    conn: Conn,
    seen: &mut Seen,
) -> Result<(Wire<TlsStream<Conn>>, Handshake), Stop> {
    let (stream, hs) = handshake(cx, ep, conn, seen).await?;
    report_encryption_pass(cx, ep, &hs, seen);
    let mut wire = Wire::new(stream);
    let g = greeting(cx, ep, &mut wire, seen)
        .await
        .map_err(|error| Stop::Session {
            summary: format!("no usable IMAP greeting over TLS: {error}"),
            error,
        })?;
    seen.caps_tls = match g.capabilities() {
        Some(c) => c,
        None => capability(cx, ep, &mut wire)
            .await
            .map_err(|error| Stop::Session {
                summary: format!("CAPABILITY failed: {error}"),
                error,
            })?,
    };
    Ok((wire, hs))
}

async fn starttls(
    cx: &mut RunContext,
    ep: &Endpoint,
    conn: Conn,
    seen: &mut Seen,
) -> Result<(Wire<TlsStream<Conn>>, Handshake), Stop> {
    let mut plain = Wire::new(conn);
    let fail = |seen: &Seen, stage: &str, e: NetError| {
        Stop::Encryption(encryption_fail(ep, seen, stage, &e))
    };
    let g = match greeting(cx, ep, &mut plain, seen).await {
        Ok(g) => g,
        Err(e) => return Err(fail(seen, "greeting", e)),
    };
    let caps = match g.capabilities() {
        Some(c) => c,
        None => match capability(cx, ep, &mut plain).await {
            Ok(c) => c,
            Err(e) => return Err(fail(seen, "capability", e)),
        },
    };
    seen.caps_before_tls = Some(caps.clone());
    if !has(&caps, "STARTTLS") {
        return Err(fail(seen, "capability", NetError::StarttlsNotOffered));
    }
    let wait = cx.io_timeout();
    let reply = cx
        .step("starttls", Some(ep), async {
            let r = plain.command("STARTTLS", wait).await?;
            if r.tagged.status != Status::Ok {
                return Err(NetError::Protocol(format!(
                    "STARTTLS refused: {}",
                    r.tagged.line
                )));
            }
            Ok(r)
        })
        .await;
    match reply {
        Ok(r) => seen.note_alerts(&r),
        Err(e) => return Err(fail(seen, "starttls", e)),
    }
    let (stream, hs) = handshake(cx, ep, plain.into_inner(), seen).await?;
    report_encryption_pass(cx, ep, &hs, seen);
    let mut wire = Wire::starting_at(stream, 10);
    // Capabilities change after TLS (LOGINDISABLED goes, AUTH= mechanisms appear): ask again.
    seen.caps_tls = capability(cx, ep, &mut wire)
        .await
        .map_err(|error| Stop::Session {
            summary: format!("CAPABILITY after STARTTLS failed: {error}"),
            error,
        })?;
    Ok((wire, hs))
}

fn report_encryption_pass(cx: &mut RunContext, ep: &Endpoint, hs: &Handshake, seen: &Seen) {
    let how = match ep.security {
        Security::Tls => "implicit TLS",
        Security::Starttls => "STARTTLS",
    };
    let mut r = RequirementResult::pass(
        ENCRYPTION,
        format!(
            "{how} to {} established ({}, {})",
            ep.authority(),
            hs.version.human(),
            hs.cipher
        ),
    )
    .with("security", ep.security.as_str())
    .with("tls_version", hs.version.name())
    .with("cipher", hs.cipher.clone())
    .with("certificate_verified", hs.verified);
    if let Some(caps) = &seen.caps_before_tls {
        r = r
            .with("starttls_offered", has(caps, "STARTTLS"))
            .with("capabilities_before_tls", json!(caps));
    }
    cx.report(r);
}

const COURIER_REMEDY: &str = "Courier-IMAP is not supported by the CRM: move the mailbox to a supported IMAP server (Dovecot, Cyrus, Microsoft Exchange, or a hosted service such as Gmail or Microsoft 365), or put a non-Courier IMAP proxy in front of it.";

fn software_result(seen: &Seen) -> Option<RequirementResult> {
    let o = seen.observed();
    if seen.greeting.is_none() && o.capabilities.is_empty() && o.id.is_none() {
        return None;
    }
    let greeting = seen.greeting.as_ref().map(|g| g.line.clone());
    let id = fingerprint::identify(&o);
    let mut r = match &id {
        Some(i) if i.software == COURIER => RequirementResult::fail(
            SOFTWARE,
            format!("the server is Courier-IMAP (identified by its {})", i.by),
            COURIER_REMEDY,
        ),
        Some(i) => RequirementResult::pass(
            SOFTWARE,
            format!(
                "the server is {}{} (identified by its {})",
                i.software,
                i.version
                    .as_deref()
                    .map(|v| format!(" {v}"))
                    .unwrap_or_default(),
                i.by
            ),
        ),
        None => RequirementResult::warn(
            SOFTWARE,
            "the IMAP server software is unknown",
            "mailprobe could not tell the server software from its greeting, capabilities or ID response: confirm it is not Courier-IMAP, which the CRM does not support.",
        ),
    };
    r = r
        .with("software", id.as_ref().map(|i| i.software.clone()))
        .with("version", id.as_ref().and_then(|i| i.version.clone()))
        .with("identified_by", id.as_ref().map(|i| i.by))
        .with("greeting", greeting)
        .with("capabilities", json!(o.capabilities));
    if let Some(idmap) = &o.id {
        r = r.with("id", json!(idmap));
    }
    Some(r)
}

fn report_software(cx: &mut RunContext, seen: &Seen) {
    match software_result(seen) {
        Some(r) => {
            cx.facts.imap.software = r
                .evidence
                .get("software")
                .and_then(Value::as_str)
                .map(str::to_string);
            cx.report(r);
        }
        None => {
            if !cx.skip_if_blocked(SOFTWARE) {
                cx.report(RequirementResult::skip(
                    SOFTWARE,
                    ENCRYPTION,
                    "not evaluated: no IMAP greeting was received",
                ));
            }
        }
    }
}

/// AUTHENTICATE PLAIN's single response (RFC 4616).
struct Plain<'a> {
    user: &'a str,
    password: &'a str,
}

impl async_imap::Authenticator for Plain<'_> {
    // Wiped when async-imap drops it after encoding.
    type Response = zeroize::Zeroizing<Vec<u8>>;
    fn process(&mut self, _challenge: &[u8]) -> Self::Response {
        let mut out = zeroize::Zeroizing::new(Vec::with_capacity(
            self.user.len() + self.password.len() + 2,
        ));
        out.push(0);
        out.extend_from_slice(self.user.as_bytes());
        out.push(0);
        out.extend_from_slice(self.password.as_bytes());
        out
    }
}

/// Logs in with `method` over TLS; returns the session and, for LOGIN, the capabilities the
/// server sent with its OK. The plugin's own login and the session opener both use it, so the
/// connection-limit check logs in exactly the way the plugin did.
async fn log_in(
    client: async_imap::Client<TlsStream<Conn>>,
    method: Method,
    target: &Target,
) -> Result<
    (ImapSession, Option<Vec<String>>),
    (
        async_imap::error::Error,
        async_imap::Client<TlsStream<Conn>>,
    ),
> {
    match method {
        Method::Login => client
            .login_with_capabilities(&target.user, target.password.expose())
            .await
            .map(|(s, c)| (s, c.map(|c| caps_to_strings(&c)))),
        Method::AuthenticatePlain => client
            .authenticate(
                "PLAIN",
                Plain {
                    user: &target.user,
                    password: target.password.expose(),
                },
            )
            .await
            .map(|s| (s, None)),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Login,
    AuthenticatePlain,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Login => "LOGIN",
            Method::AuthenticatePlain => "AUTHENTICATE PLAIN",
        }
    }
}

/// The method the CRM would use: LOGIN, or AUTHENTICATE PLAIN when LOGIN is disabled.
fn choose_method(caps: &[String]) -> Option<Method> {
    if !has(caps, "LOGINDISABLED") {
        Some(Method::Login)
    } else if mechanisms(caps).iter().any(|m| m == "PLAIN") {
        Some(Method::AuthenticatePlain)
    } else {
        None
    }
}

/// The server's words from async-imap's `code: Some(X), info: Some("text")` error text.
fn server_words(s: &str) -> String {
    let Some((code, info)) = s.split_once(", info: ") else {
        return s.to_string();
    };
    let code = code
        .strip_prefix("code: Some(")
        .and_then(|c| c.strip_suffix(')'))
        .map(|c| format!("[{}] ", c.to_ascii_uppercase()));
    let info = info
        .strip_prefix("Some(\"")
        .and_then(|i| i.strip_suffix("\")"))
        .map(|i| {
            i.replace("\\\"", "\"")
                .replace("\\'", "'")
                .replace("\\\\", "\\")
        })
        .unwrap_or_default();
    format!("{}{}", code.unwrap_or_default(), info)
        .trim()
        .to_string()
}

fn login_base(
    r: RequirementResult,
    method: Option<Method>,
    caps: &[String],
    seen: &Seen,
) -> RequirementResult {
    let mut r = r
        .with("method", method.map(Method::as_str))
        .with("mechanisms", json!(mechanisms(caps)))
        .with("login_disabled", has(caps, "LOGINDISABLED"));
    if let Some(before) = &seen.caps_before_tls {
        r = r.with("login_disabled_before_tls", has(before, "LOGINDISABLED"));
    }
    if !seen.alerts.is_empty() {
        r = r.with("alerts", json!(seen.alerts));
    }
    r
}

/// Sends LOGOUT over a session the probe gives up, as a `logout` step.
async fn logout<S>(cx: &mut RunContext, ep: &Endpoint, wire: &mut Wire<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let wait = cx.io_timeout().min(Duration::from_secs(2));
    let _ = cx
        .step("logout", Some(ep), async {
            wire.command("LOGOUT", wait).await
        })
        .await;
}

async fn login_and_folders(
    cx: &mut RunContext,
    ep: &Endpoint,
    mut wire: Wire<TlsStream<Conn>>,
    hs: Handshake,
    seen: &mut Seen,
) {
    let caps = seen.caps_tls.clone();
    let wait = cx.io_timeout();
    // Dovecot answers ID before login; Courier only after (and only when configured to).
    if has(&caps, "ID") {
        try_id(cx, ep, &mut wire, seen).await;
    }
    let method = choose_method(&caps);

    if let Err(why) = cx.credentials_allowed(&hs) {
        report_software(cx, seen);
        cx.report(login_base(
            RequirementResult::skip(
                LOGIN,
                "imap.certificate.trust",
                format!("not evaluated: {why}"),
            ),
            method,
            &caps,
            seen,
        ));
        cx.skip_if_blocked(FOLDERS);
        logout(cx, ep, &mut wire).await;
        return;
    }
    if seen
        .greeting
        .as_ref()
        .is_some_and(|g| g.status == Status::Preauth)
    {
        report_software(cx, seen);
        cx.report(login_base(
            RequirementResult::warn(
                LOGIN,
                "the server pre-authenticated the session (PREAUTH): the CRM's LOGIN would be refused in that state",
                "Turn off pre-authentication for the CRM's address: the CRM logs in with username and password.",
            ),
            method,
            &caps,
            seen,
        ));
        let list = list_folders(cx, ep, &mut wire, &caps).await;
        judge_folders(cx, ep, &mut wire, list).await;
        logout(cx, ep, &mut wire).await;
        return;
    }
    let Some(method) = method else {
        report_software(cx, seen);
        cx.report(login_base(
            RequirementResult::fail(
                LOGIN,
                "the server offers no login the CRM can use: LOGIN is disabled and AUTHENTICATE PLAIN is not offered over TLS",
                "Allow password logins over TLS: Dovecot `auth_mechanisms = plain login` (with `disable_plaintext_auth = yes` only unencrypted logins are refused); Exchange: enable `PlainTextLogin` or `SecureLogin` for IMAP4 (Set-ImapSettings -LoginType SecureLogin).",
            ),
            None,
            &caps,
            seen,
        ));
        cx.skip_if_blocked(FOLDERS);
        logout(cx, ep, &mut wire).await;
        return;
    };

    let target: Arc<Target> = cx.target.clone();
    let client = async_imap::Client::new(wire.into_inner());
    let timer = StepTimer::start();
    let attempt = tokio::time::timeout(wait, log_in(client, method, &target)).await;
    let (mut session, login_caps) = match attempt {
        Ok(Ok(x)) => {
            cx.record_step(
                timer,
                "login",
                Some(ep),
                &Ok::<(), NetError>(()),
                attrs(method),
            );
            x
        }
        Ok(Err((e, client))) => {
            let (refused, error) = match &e {
                async_imap::error::Error::No(s) | async_imap::error::Error::Bad(s) => {
                    let words = server_words(s);
                    (
                        Some(words.clone()),
                        NetError::Protocol(format!("{} refused: {words}", method.as_str())),
                    )
                }
                async_imap::error::Error::Io(io) => (None, NetError::from_io(io)),
                async_imap::error::Error::ConnectionLost => (
                    None,
                    NetError::Closed(format!(" during {}", method.as_str())),
                ),
                other => (None, NetError::Protocol(other.to_string())),
            };
            cx.record_step(
                timer,
                "login",
                Some(ep),
                &Err::<(), _>(error.clone()),
                attrs(method),
            );
            report_software(cx, seen);
            let r = match refused {
                Some(words) => RequirementResult::fail(
                    LOGIN,
                    format!("the server refused the login of {}: {words}", target.user),
                    "Check the user name (often the full e-mail address) and the password (an app password when the account uses two-factor authentication), and that IMAP access is enabled for this account.",
                )
                .with("server_response", words),
                None => RequirementResult::fail(
                    LOGIN,
                    format!("the login did not complete: {error}"),
                    "The server broke off the session during login: check the IMAP service's logs.",
                ),
            };
            cx.report(
                login_base(r, Some(method), &caps, seen)
                    .with("user", target.user.clone())
                    .with("error", error.to_string())
                    .with("error_type", error.error_type()),
            );
            cx.skip_if_blocked(FOLDERS);
            let mut w = Wire::starting_at(client.into_inner(), 90);
            logout(cx, ep, &mut w).await;
            return;
        }
        Err(_) => {
            let error = NetError::Timeout {
                waiting_for: format!("the reply to {}", method.as_str()),
                after: wait,
            };
            cx.record_step(
                timer,
                "login",
                Some(ep),
                &Err::<(), _>(error.clone()),
                attrs(method),
            );
            report_software(cx, seen);
            cx.report(
                login_base(
                    RequirementResult::fail(
                        LOGIN,
                        format!("the login did not complete: {error}"),
                        "The server did not answer the login in time: check the IMAP service's authentication backend (LDAP, SQL) and its logs.",
                    ),
                    Some(method),
                    &caps,
                    seen,
                )
                .with("user", target.user.clone())
                .with("error", error.to_string())
                .with("error_type", error.error_type()),
            );
            cx.skip_if_blocked(FOLDERS);
            return;
        }
    };

    // After login the probe speaks on the session's own stream; async-imap has consumed the
    // tagged reply to LOGIN and nothing after it.
    let mut wire = Wire::starting_at(session.get_mut(), 20);
    seen.caps_login = match login_caps {
        Some(c) if !c.is_empty() => c,
        _ => capability(cx, ep, &mut wire).await.unwrap_or_default(),
    };
    if seen.id.is_none() && has(&seen.caps_login, "ID") {
        try_id(cx, ep, &mut wire, seen).await;
    }
    report_software(cx, seen);
    cx.report(
        login_base(
            RequirementResult::pass(
                LOGIN,
                format!("{} logged in with {}", target.user, method.as_str()),
            ),
            Some(method),
            &caps,
            seen,
        )
        .with("user", target.user.clone()),
    );
    let login_caps = seen.caps_login.clone();
    let list = list_folders(cx, ep, &mut wire, &login_caps).await;
    let ok = judge_folders(cx, ep, &mut wire, list).await;
    if ok {
        cx.held.push(HeldSession {
            protocol: Protocol::Imap,
            session: Box::new(session::HeldImap(session)),
        });
        cx.openers
            .insert(Protocol::Imap, Arc::new(session::ImapOpener { method }));
    } else {
        let timer = StepTimer::start();
        let out = tokio::time::timeout(Duration::from_secs(2), session.logout()).await;
        let out = match out {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(NetError::Protocol(e.to_string())),
            Err(_) => Err(NetError::Timeout {
                waiting_for: "the reply to LOGOUT".into(),
                after: Duration::from_secs(2),
            }),
        };
        cx.record_step(timer, "logout", Some(ep), &out, BTreeMap::new());
    }
}

fn attrs(method: Method) -> BTreeMap<String, String> {
    BTreeMap::from([("imap.auth.method".to_string(), method.as_str().to_string())])
}

fn caps_to_strings(c: &async_imap::types::Capabilities) -> Vec<String> {
    use async_imap::types::Capability;
    c.iter()
        .map(|c| match c {
            Capability::Imap4rev1 => "IMAP4rev1".to_string(),
            Capability::Auth(m) => format!("AUTH={m}"),
            Capability::Atom(a) => a.clone(),
        })
        .collect()
}

/// Sends ID (RFC 2971) as an `id` step; a refusal or an odd answer only means no ID facts.
async fn try_id<S>(cx: &mut RunContext, ep: &Endpoint, wire: &mut Wire<S>, seen: &mut Seen)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let wait = cx.io_timeout();
    let command = format!(
        r#"ID ("name" "mailprobe" "version" "{}")"#,
        env!("CARGO_PKG_VERSION")
    );
    let out = cx
        .step("id", Some(ep), async { wire.command(&command, wait).await })
        .await;
    if let Ok(r) = out
        && r.tagged.status == Status::Ok
    {
        seen.id = r.data("ID").find_map(fingerprint::parse_id);
    }
}

/// What LIST found.
struct Listing {
    folders: Vec<Folder>,
    namespace: Namespace,
    /// `LIST ... RETURN (SPECIAL-USE)`, `XLIST` or `LIST`.
    command: &'static str,
}

async fn list_folders<S>(
    cx: &mut RunContext,
    ep: &Endpoint,
    wire: &mut Wire<S>,
    caps: &[String],
) -> Result<Listing, NetError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let wait = cx.io_timeout();
    let special = has(caps, "SPECIAL-USE");
    let xlist = has(caps, "XLIST");
    let namespace = has(caps, "NAMESPACE");
    cx.step("list", Some(ep), async {
        let namespace = if namespace {
            let r = wire.command("NAMESPACE", wait).await?;
            r.data("NAMESPACE")
                .find_map(folders::parse_namespace)
                .unwrap_or_default()
        } else {
            Namespace::default()
        };
        let mut attempts: Vec<(&'static str, &'static str, &'static str)> = Vec::new();
        if special {
            attempts.push((
                r#"LIST "" "*" RETURN (SPECIAL-USE)"#,
                "LIST",
                "LIST RETURN (SPECIAL-USE)",
            ));
        } else if xlist {
            attempts.push((r#"XLIST "" "*""#, "XLIST", "XLIST"));
        }
        attempts.push((r#"LIST "" "*""#, "LIST", "LIST"));
        let mut last = None;
        for (command, word, name) in attempts {
            let r = wire.command(command, wait).await?;
            if r.tagged.status == Status::Ok {
                let folders = r.data(word).filter_map(folders::parse_list).collect();
                return Ok(Listing {
                    folders,
                    namespace,
                    command: name,
                });
            }
            last = Some(r.tagged.line);
        }
        Err(NetError::Protocol(format!(
            "LIST refused: {}",
            last.unwrap_or_default()
        )))
    })
    .await
}

/// EXAMINEs a folder as an `examine` step: `Ok(None)` when it opened, `Ok(Some(words))` with the
/// server's refusal.
async fn examine<S>(
    cx: &mut RunContext,
    ep: &Endpoint,
    wire: &mut Wire<S>,
    name: &str,
) -> Result<Option<String>, NetError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let wait = cx.io_timeout();
    let Some(quoted) = quote(name) else {
        return Ok(Some(format!(
            "the name {} cannot be sent in a command",
            printable(name)
        )));
    };
    let timer = StepTimer::start();
    let out = wire.command(&format!("EXAMINE {quoted}"), wait).await;
    let step_outcome = match &out {
        Ok(r) if r.tagged.status == Status::Ok => Ok(()),
        Ok(r) => Err(NetError::Protocol(format!(
            "EXAMINE {}: {}",
            printable(name),
            r.tagged.line
        ))),
        Err(e) => Err(e.clone()),
    };
    let attributes = BTreeMap::from([("imap.mailbox".to_string(), printable(name))]);
    cx.record_step(timer, "examine", Some(ep), &step_outcome, attributes);
    let r = out?;
    Ok((r.tagged.status != Status::Ok).then_some(r.tagged.line))
}

const NO_SENT_REMEDY: &str = "Create a Sent folder (the CRM syncs sent mail from it): in Dovecot, give the inbox namespace a `mailbox Sent` block with `special_use = \\Sent` and `auto = subscribe`; or create a folder named `Sent` from any mail client.";

/// Reports `imap.folders`; returns whether the session is still good to keep.
async fn judge_folders<S>(
    cx: &mut RunContext,
    ep: &Endpoint,
    wire: &mut Wire<S>,
    listing: Result<Listing, NetError>,
) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let listing = match listing {
        Ok(l) => l,
        Err(e) => {
            cx.report(
                RequirementResult::fail(
                    FOLDERS,
                    format!("the folders could not be listed: {e}"),
                    "The server refused or broke off LIST: check the IMAP service's logs and the mailbox's storage.",
                )
                .with("error", e.to_string())
                .with("error_type", e.error_type()),
            );
            return false;
        }
    };
    let sent = folders::find_sent(&listing.folders, &listing.namespace);
    let others = folders::others(&listing.folders, sent.map(|(f, _)| f));
    cx.facts.imap.other_folders = Some(others.len() as u32);
    let names: Vec<String> = listing
        .folders
        .iter()
        .map(|f| f.display.clone())
        .take(50)
        .collect();
    let base = |r: RequirementResult| {
        r.with("sent_folder", sent.map(|(f, _)| f.display.clone()))
            .with("sent_by", sent.map(|(_, by)| by.as_str()))
            .with("other_folders", others.len() as u64)
            .with("folders", json!(names))
            .with("list_command", listing.command)
            .with("namespace_prefix", listing.namespace.prefix.clone())
    };

    // INBOX always exists in IMAP, listed or not: examine it by its name.
    let inbox = match examine(cx, ep, wire, "INBOX").await {
        Ok(None) => None,
        Ok(Some(words)) => Some(words),
        Err(e) => {
            cx.report(
                base(RequirementResult::fail(
                    FOLDERS,
                    format!("EXAMINE INBOX did not complete: {e}"),
                    "The server broke off the session when INBOX was opened: check the mailbox's storage and the IMAP service's logs.",
                ))
                .with("error", e.to_string())
                .with("error_type", e.error_type()),
            );
            return false;
        }
    };
    if let Some(words) = inbox {
        cx.report(
            base(RequirementResult::fail(
                FOLDERS,
                format!("INBOX cannot be opened: {words}"),
                "The server refuses to open INBOX: check the mailbox's storage (permissions, quota, corruption) in the IMAP service's logs.",
            ))
            .with("server_response", words),
        );
        return true;
    }
    let Some((sent, by)) = sent else {
        cx.report(base(RequirementResult::fail(
            FOLDERS,
            format!(
                "no Sent folder: no folder has the \\Sent special-use attribute or a well-known name ({} folders listed)",
                listing.folders.len()
            ),
            NO_SENT_REMEDY,
        )));
        return true;
    };
    match examine(cx, ep, wire, &sent.name).await {
        Ok(None) => {
            cx.report(base(RequirementResult::pass(
                FOLDERS,
                format!(
                    "INBOX and the Sent folder `{}` (found by {}) can be opened; {} other folder(s)",
                    sent.display,
                    by.as_str(),
                    others.len()
                ),
            )));
            true
        }
        Ok(Some(words)) => {
            cx.report(
                base(RequirementResult::fail(
                    FOLDERS,
                    format!("the Sent folder `{}` is listed but cannot be opened: {words}", sent.display),
                    "The server lists the Sent folder but refuses to open it: check that folder's storage and permissions (Dovecot: `doveadm mailbox status -u USER all Sent`).",
                ))
                .with("server_response", words),
            );
            true
        }
        Err(e) => {
            cx.report(
                base(RequirementResult::fail(
                    FOLDERS,
                    format!("EXAMINE of the Sent folder did not complete: {e}"),
                    "The server broke off the session when the Sent folder was opened: check the IMAP service's logs.",
                ))
                .with("error", e.to_string())
                .with("error_type", e.error_type()),
            );
            false
        }
    }
}

#[cfg(test)]
mod tests;
