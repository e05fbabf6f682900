//! The `smtp` check: can the CRM reach the mailbox's SMTP submission server over TLS (implicit
//! TLS, or STARTTLS upgrading a plain session) and log in with username and password?
//!
//! It fills `smtp.encryption` and `smtp.login`. It speaks SMTP itself (see [`client`]) rather
//! than through lettre: lettre takes no rustls configuration of ours, hides the negotiated
//! version and cipher, and returns errors rather than the server's replies, while this check
//! reports every reply it got. No mail is ever sent.
#![forbid(unsafe_code)]

pub mod client;
pub mod session;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use mailprobe_core::context::{HeldSession, NetErrorView, StepTimer};
use mailprobe_core::error::within;
use mailprobe_core::net::Conn;
use mailprobe_core::plugin::{BoxFuture, PluginError};
use mailprobe_core::starttls::{SmtpReply, ehlo_name};
use mailprobe_core::{
    CheckPlugin, Endpoint, Handshake, NetError, PluginInfo, Protocol, RequirementResult,
    RunContext, Secret, Security, TlsVersion, tls,
};
use serde_json::{Map, Value};
use tokio_rustls::client::TlsStream;

use crate::client::{Ehlo, Mechanism, SmtpClient, redact, reply_text, scrubbed_reply};

pub const NAME: &str = "smtp";
pub const ENCRYPTION: &str = "smtp.encryption";
pub const LOGIN: &str = "smtp.login";

const REMEDY_NO_STARTTLS: &str = "Enable STARTTLS on the submission port with a certificate for the server's name (Postfix: smtpd_tls_cert_file, smtpd_tls_key_file and smtpd_tls_security_level = encrypt on the submission service; Exchange: Enable-ExchangeCertificate -Services SMTP), or point mailprobe at the implicit-TLS port 465 with --smtp-security tls.";
const REMEDY_AUTH_BEFORE_TLS: &str = "Offer AUTH only after STARTTLS, so no password can cross the network in clear (Postfix: smtpd_tls_auth_only = yes; Exchange: Set-ReceiveConnector \"Client Frontend <server>\" -AuthMechanism Tls,BasicAuth,BasicAuthRequireTLS).";
const REMEDY_NO_AUTH: &str = "Enable SMTP AUTH after TLS on the submission service. Postfix: smtpd_sasl_auth_enable = yes with a SASL backend (smtpd_sasl_type = dovecot and smtpd_sasl_path = private/auth, or smtpd_sasl_type = cyrus). Exchange: on the \"Client Frontend <server>\" receive connector enable basic authentication offered only after starting TLS (Set-ReceiveConnector -AuthMechanism Tls,BasicAuth,BasicAuthRequireTLS).";
const REMEDY_NO_MECHANISM: &str = "Offer AUTH PLAIN or LOGIN after TLS: the CRM logs in with username and password (Dovecot SASL: auth_mechanisms = plain login; Cyrus SASL: mech_list: plain login; Exchange: enable basic authentication on the client receive connector).";
const REMEDY_REFUSED: &str = "Check the user name (often the full e-mail address) and the password; if they work in a mail client, check that the account may use authenticated SMTP (Microsoft 365: enable Authenticated SMTP for the mailbox) and the server's SASL log for the reason.";
const REMEDY_NO_ESMTP: &str = "The server answers HELO but refuses EHLO, so it can offer neither STARTTLS nor AUTH: point mailprobe at the submission service (587 or 465) of an ESMTP server.";
const REMEDY_LEGACY_TLS: &str = "The server speaks only TLS 1.1 or older, which the CRM accepts but which is weak and cannot be verified by this probe: enable TLS 1.2 (Postfix: smtpd_tls_protocols = >=TLSv1.2 with a current OpenSSL; Exchange: enable TLS 1.2 for Schannel).";

/// The SMTP plugin.
#[derive(Debug, Default)]
pub struct Smtp;

/// An SMTP session over TLS.
pub type TlsClient = SmtpClient<TlsStream<Conn>>;

/// The logged-in SMTP session this plugin keeps in [`RunContext::held`] for the
/// connection-limit check (a [`mailprobe_core::session::MailSession`]). Dropping it closes the
/// connection without QUIT; [`SmtpSession::quit`] closes it cleanly.
pub struct SmtpSession {
    pub client: TlsClient,
    pub endpoint: Endpoint,
    pub mechanism: Mechanism,
}

impl SmtpSession {
    /// Sends QUIT and waits at most `wait` for its reply.
    pub async fn quit(mut self, wait: Duration) {
        let _ = self.client.command("QUIT", wait).await;
    }
}

impl CheckPlugin for Smtp {
    fn info(&self) -> PluginInfo {
        PluginInfo::builtin(NAME, &[ENCRYPTION, LOGIN], &["reachability"])
    }

    fn run<'a>(&'a self, cx: &'a mut RunContext) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(async move {
            // Without an SMTP server the runner marks smtp.* skip itself.
            let Some(ep) = cx.target.smtp.clone() else {
                return Ok(());
            };
            if cx.skip_if_blocked(ENCRYPTION) {
                cx.skip_if_blocked(LOGIN);
                return Ok(());
            }
            let creds = Creds {
                user: cx.target.user.clone(),
                password: cx.target.password.clone(),
            };
            check(cx, &ep, &creds).await;
            // Anything left unreported (it should not be) is skipped after its prerequisite.
            if cx.result(LOGIN).is_none() {
                cx.skip_if_blocked(LOGIN);
            }
            Ok(())
        })
    }
}

struct Creds {
    user: String,
    password: Secret,
}

impl Creds {
    /// Text from the server, with any echo of the credentials removed.
    fn scrub(&self, text: &str) -> String {
        redact(text, self.password.expose())
    }
    /// A reply that may echo the credentials (to AUTH), redacted before it is cut to length.
    fn reply(&self, r: &SmtpReply) -> String {
        scrubbed_reply(r, self.password.expose())
    }
    fn scrub_error(&self, e: &NetError) -> NetError {
        match e {
            NetError::Protocol(s) => NetError::Protocol(self.scrub(s)),
            other => other.clone(),
        }
    }
}

/// The facts gathered on the way, the evidence of `smtp.encryption`.
struct Findings {
    ep: Endpoint,
    evidence: Map<String, Value>,
    auth_before_tls: Option<Ehlo>,
}

impl Findings {
    fn new(ep: &Endpoint) -> Self {
        let mut evidence = Map::new();
        evidence.insert("security".into(), ep.security.as_str().into());
        Findings {
            ep: ep.clone(),
            evidence,
            auth_before_tls: None,
        }
    }
    fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.evidence.insert(key.into(), value.into());
    }
    fn result(&self, mut r: RequirementResult) -> RequirementResult {
        for (k, v) in &self.evidence {
            r.evidence.entry(k.clone()).or_insert_with(|| v.clone());
        }
        r
    }
    fn fail(&self, summary: impl Into<String>, remedy: impl Into<String>) -> RequirementResult {
        self.result(RequirementResult::fail(ENCRYPTION, summary, remedy))
    }
    fn fail_error(&self, what: &str, e: &NetError, remedy: String) -> RequirementResult {
        self.fail(format!("{what}: {e}"), remedy)
            .with("error", e.to_string())
            .with("error_type", e.error_type())
    }
}

/// Runs one timed step that yields an SMTP reply. A reply of 400 or more marks the step
/// failed (with the reply as its error), but is returned to the caller to judge.
async fn step<F>(
    cx: &mut RunContext,
    creds: &Creds,
    name: &str,
    ep: &Endpoint,
    fut: F,
) -> Result<SmtpReply, NetError>
where
    F: Future<Output = Result<SmtpReply, NetError>>,
{
    let timer = StepTimer::start();
    let out = within(cx.remaining(), name, fut)
        .await
        .map_err(|e| creds.scrub_error(&e));
    let mut attrs = BTreeMap::new();
    let recorded: Result<(), NetError> = match &out {
        Ok(r) => {
            attrs.insert("smtp.reply.code".to_string(), r.code.to_string());
            if r.code >= 400 {
                Err(NetError::Protocol(creds.reply(r)))
            } else {
                Ok(())
            }
        }
        Err(e) => Err(e.clone()),
    };
    cx.record_step(timer, name, Some(ep), &recorded, attrs);
    out
}

/// A TLS handshake as the `tls_handshake` step, shared with the tls/certificate plugins.
async fn handshake<S>(
    cx: &mut RunContext,
    ep: &Endpoint,
    stream: S,
) -> Result<(TlsStream<S>, Handshake), NetError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let timer = StepTimer::start();
    let out = tls::handshake(stream, &ep.host, &cx.trust, cx.io_timeout()).await;
    let noted: Result<Handshake, NetError> = match &out {
        Ok((_, h)) => Ok(h.clone()),
        Err(e) => Err(e.clone()),
    };
    cx.note_handshake(timer, ep, &noted);
    out
}

/// Sends QUIT as the `quit` step, briefly; its outcome changes no result.
async fn quit<S>(cx: &mut RunContext, creds: &Creds, ep: &Endpoint, client: &mut SmtpClient<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let wait = cx.io_timeout().min(Duration::from_secs(2));
    let _ = step(cx, creds, "quit", ep, client.command("QUIT", wait)).await;
}

/// Tells the tls and certificate plugins that this port's TLS could not be reached, so they do
/// not repeat a connection that fails the same way. A handshake failure is shared by
/// `note_handshake` itself.
fn share_failure(cx: &mut RunContext, e: &NetError, step: &str) {
    cx.facts
        .handshake
        .entry(Protocol::Smtp)
        .or_insert_with(|| Err(NetErrorView::from(e).at(step)));
}

/// Why TLS could not be had: either a failure of `smtp.encryption`, or a server that speaks
/// only TLS ≤ 1.1, which rustls cannot complete (compliant for the CRM, so never a false fail).
enum NoTls {
    Fail(RequirementResult),
    Legacy(NetError),
}

async fn check(cx: &mut RunContext, ep: &Endpoint, creds: &Creds) {
    let mut f = Findings::new(ep);
    let conn = match cx.connect(ep).await {
        Ok(c) => c,
        Err(e) => {
            share_failure(cx, &e, "connect");
            let r = f.fail_error("cannot connect", &e, remedy_for(&e, ep));
            cx.report(r);
            cx.skip_if_blocked(LOGIN);
            return;
        }
    };
    let established = match ep.security {
        Security::Tls => implicit_tls(cx, ep, conn, &mut f).await,
        Security::Starttls => starttls(cx, creds, ep, conn, &mut f).await,
    };
    let (mut client, hs) = match established {
        Ok(x) => x,
        Err(NoTls::Fail(r)) => {
            // A failed handshake is already shared; what failed before it was the preamble.
            let view = NetErrorView {
                error_type: r
                    .evidence
                    .get("error_type")
                    .and_then(Value::as_str)
                    .unwrap_or("starttls_failed")
                    .to_string(),
                message: r.summary.clone(),
                step: Some("starttls".into()),
            };
            cx.facts
                .handshake
                .entry(Protocol::Smtp)
                .or_insert(Err(view));
            cx.report(r);
            cx.skip_if_blocked(LOGIN);
            return;
        }
        Err(NoTls::Legacy(e)) => {
            let r = f
                .result(RequirementResult::warn(
                    ENCRYPTION,
                    format!(
                        "the server offers TLS, but only a version older than TLS 1.2, which this probe cannot complete ({e})"
                    ),
                    REMEDY_LEGACY_TLS,
                ))
                .with("error", e.to_string());
            cx.report(r);
            cx.report(RequirementResult::skip(
                LOGIN,
                ENCRYPTION,
                "not evaluated: the server speaks only TLS 1.1 or older, and the probe's TLS library (rustls) cannot log in over it; see smtp.tls_versions",
            ));
            return;
        }
    };
    f.set("tls_version", hs.version.name());
    f.set("tls_cipher", hs.cipher.clone());

    // Implicit TLS: the greeting comes over TLS.
    if ep.security == Security::Tls {
        let wait = cx.io_timeout();
        let greeting = step(cx, creds, "greeting", ep, client.reply(wait)).await;
        if let Err(why) = greeting_ok(&mut f, greeting) {
            report_encryption(cx, &f);
            cx.report(login_error(why, ep));
            return;
        }
    }

    // EHLO over TLS.
    let after = match ehlo_or_helo(cx, creds, ep, &mut client, &mut f).await {
        Ok(e) => e,
        Err(Ehlofail::Error(e)) => {
            report_encryption(cx, &f);
            cx.report(login_error(e, ep));
            return;
        }
        Err(Ehlofail::NoEsmtp(text)) => {
            report_encryption(cx, &f);
            cx.report(
                RequirementResult::fail(
                    LOGIN,
                    "the server does not speak ESMTP over TLS, so it offers no AUTH",
                    REMEDY_NO_ESMTP,
                )
                .with("esmtp", false)
                .with("helo_reply", text),
            );
            quit(cx, creds, ep, &mut client).await;
            return;
        }
    };
    f.set("extensions_after_tls", after.extensions.clone());
    report_encryption(cx, &f);

    // Login.
    let mechanisms = after.auth_mechanisms();
    let base = |r: RequirementResult| {
        r.with("auth_mechanisms", mechanisms.clone())
            .with("auth_before_tls", f.auth_before_tls.is_some())
    };
    if let Err(why) = cx.credentials_allowed(&hs) {
        cx.report(base(RequirementResult::skip(
            LOGIN,
            "smtp.certificate.trust",
            why,
        )));
        quit(cx, creds, ep, &mut client).await;
        return;
    }
    if !after.offers_auth() {
        cx.report(base(RequirementResult::fail(
            LOGIN,
            "the server offers no AUTH after TLS, so the CRM cannot log in to send",
            REMEDY_NO_AUTH,
        )));
        quit(cx, creds, ep, &mut client).await;
        return;
    }
    let Some(mechanism) = Mechanism::choose(&mechanisms) else {
        cx.report(base(RequirementResult::fail(
            LOGIN,
            format!(
                "the server offers AUTH {} after TLS, but neither PLAIN nor LOGIN, the username-and-password mechanisms the CRM uses",
                mechanisms.join(" ")
            ),
            REMEDY_NO_MECHANISM,
        )));
        quit(cx, creds, ep, &mut client).await;
        return;
    };
    let wait = cx.io_timeout();
    let password = creds.password.clone();
    let reply = step(
        cx,
        creds,
        "auth",
        ep,
        client.auth(mechanism, &creds.user, password.expose(), wait),
    )
    .await;
    let base = |r: RequirementResult| {
        base(r)
            .with("mechanism", mechanism.name())
            .with("user", creds.user.clone())
    };
    match reply {
        Err(e) => cx.report(base(login_error(e, ep))),
        Ok(r) if r.code == 235 => {
            cx.report(base(
                RequirementResult::pass(
                    LOGIN,
                    format!(
                        "AUTH {} over {} accepted for {}",
                        mechanism.name(),
                        hs.version.human(),
                        creds.user
                    ),
                )
                .with("reply", creds.reply(&r)),
            ));
            cx.held.push(HeldSession {
                protocol: Protocol::Smtp,
                session: Box::new(SmtpSession {
                    client,
                    endpoint: ep.clone(),
                    mechanism,
                }),
            });
            cx.openers.insert(
                Protocol::Smtp,
                std::sync::Arc::new(session::SmtpOpener { mechanism }),
            );
        }
        Ok(r) => {
            let text = creds.reply(&r);
            cx.report(base(auth_refused(&r, &text)).with("reply", text));
            quit(cx, creds, ep, &mut client).await;
        }
    }
}

/// The result of an AUTH the server answered with something other than 235.
fn auth_refused(r: &SmtpReply, text: &str) -> RequirementResult {
    let (summary, remedy) = match r.code {
        535 => (
            format!("the server refused the credentials: {text}"),
            REMEDY_REFUSED.to_string(),
        ),
        534 | 538 => (
            format!("the server refused the mechanism: {text}"),
            REMEDY_NO_MECHANISM.to_string(),
        ),
        454 | 421 | 451 => (
            format!("the server could not authenticate (a temporary failure): {text}"),
            "The server's authentication backend failed: check its SASL service (Postfix with Dovecot: the auth socket in smtpd_sasl_path and Dovecot's log).".to_string(),
        ),
        _ => (
            format!("AUTH was not accepted: {text}"),
            REMEDY_REFUSED.to_string(),
        ),
    };
    RequirementResult::fail(LOGIN, summary, remedy)
}

fn login_error(e: NetError, ep: &Endpoint) -> RequirementResult {
    RequirementResult::fail(
        LOGIN,
        format!("the SMTP session failed: {e}"),
        remedy_for(&e, ep),
    )
    .with("error", e.to_string())
    .with("error_type", e.error_type())
}

fn report_encryption(cx: &mut RunContext, f: &Findings) {
    let tls = f
        .evidence
        .get("tls_version")
        .and_then(Value::as_str)
        .and_then(|v| v.parse::<TlsVersion>().ok())
        .map(TlsVersion::human)
        .unwrap_or("TLS");
    let how = match f.ep.security {
        Security::Tls => format!("implicit {tls}"),
        Security::Starttls => format!("STARTTLS upgraded to {tls}"),
    };
    let cipher = f
        .evidence
        .get("tls_cipher")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let r = match &f.auth_before_tls {
        Some(before) => RequirementResult::warn(
            ENCRYPTION,
            format!(
                "{how} ({cipher}), but AUTH {} is offered before STARTTLS, inviting passwords in clear",
                before.auth_mechanisms().join(" ")
            ),
            REMEDY_AUTH_BEFORE_TLS,
        ),
        None => RequirementResult::pass(ENCRYPTION, format!("{how} ({cipher})")),
    };
    cx.report(f.result(r));
}

enum Ehlofail {
    Error(NetError),
    /// EHLO refused but HELO accepted: the server has no ESMTP. Carries HELO's reply.
    NoEsmtp(String),
}

/// EHLO, falling back to HELO only to tell a server without ESMTP apart.
async fn ehlo_or_helo<S>(
    cx: &mut RunContext,
    creds: &Creds,
    ep: &Endpoint,
    client: &mut SmtpClient<S>,
    f: &mut Findings,
) -> Result<Ehlo, Ehlofail>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let name = ehlo_name();
    let wait = cx.io_timeout();
    let reply = step(
        cx,
        creds,
        "ehlo",
        ep,
        client.command(&format!("EHLO {name}"), wait),
    )
    .await
    .map_err(Ehlofail::Error)?;
    if reply.code == 250 {
        f.set("esmtp", true);
        return Ok(Ehlo::from_reply(&reply));
    }
    let ehlo_text = reply_text(&reply);
    if !(500..=504).contains(&reply.code) {
        return Err(Ehlofail::Error(NetError::Protocol(format!(
            "EHLO: {ehlo_text}"
        ))));
    }
    let wait = cx.io_timeout();
    let helo = step(
        cx,
        creds,
        "helo",
        ep,
        client.command(&format!("HELO {name}"), wait),
    )
    .await
    .map_err(Ehlofail::Error)?;
    f.set("ehlo_reply", ehlo_text.clone());
    if helo.code == 250 {
        f.set("esmtp", false);
        Err(Ehlofail::NoEsmtp(reply_text(&helo)))
    } else {
        Err(Ehlofail::Error(NetError::Protocol(format!(
            "EHLO: {ehlo_text}; HELO: {}",
            reply_text(&helo)
        ))))
    }
}

/// Judges the greeting: 220 goes on; anything else is an error naming the reply.
fn greeting_ok(f: &mut Findings, greeting: Result<SmtpReply, NetError>) -> Result<(), NetError> {
    let g = greeting?;
    let text = reply_text(&g);
    f.set("greeting", text.clone());
    if g.code == 220 {
        Ok(())
    } else {
        Err(NetError::Protocol(format!(
            "the server refused the session at the greeting: {text}"
        )))
    }
}

async fn implicit_tls(
    cx: &mut RunContext,
    ep: &Endpoint,
    conn: Conn,
    f: &mut Findings,
) -> Result<(TlsClient, Handshake), NoTls> {
    match handshake(cx, ep, conn).await {
        Ok((tls, hs)) => Ok((SmtpClient::new(tls), hs)),
        Err(e) if speaks_only_legacy_tls(cx, &e) => Err(NoTls::Legacy(e)),
        Err(e) => {
            let remedy = if plaintext_on_tls_port(&e) {
                format!(
                    "Port {} answered in plain text, not TLS: it probably uses STARTTLS; run with --smtp-security starttls, or point mailprobe at the implicit-TLS port (465).",
                    ep.port
                )
            } else {
                remedy_for(&e, ep)
            };
            Err(NoTls::Fail(f.fail_error(
                "the TLS handshake failed",
                &e,
                remedy,
            )))
        }
    }
}

async fn starttls(
    cx: &mut RunContext,
    creds: &Creds,
    ep: &Endpoint,
    conn: Conn,
    f: &mut Findings,
) -> Result<(TlsClient, Handshake), NoTls> {
    let mut client = SmtpClient::new(conn);
    let wait = cx.io_timeout();
    let greeting = step(cx, creds, "greeting", ep, client.reply(wait)).await;
    if let Err(e) = greeting_ok(f, greeting) {
        let remedy = match e {
            // An implicit-TLS port waits silently for the client's TLS hello.
            NetError::Timeout { .. } => format!(
                "Port {port} sent no SMTP greeting: if it expects TLS from the first byte (implicit TLS, usually 465), run with --smtp-security tls; otherwise {rest}",
                port = ep.port,
                rest = remedy_for(&e, ep)
            ),
            _ => remedy_for(&e, ep),
        };
        return Err(NoTls::Fail(f.fail_error("no SMTP greeting", &e, remedy)));
    }
    let before = match ehlo_or_helo(cx, creds, ep, &mut client, f).await {
        Ok(e) => e,
        Err(Ehlofail::Error(e)) => {
            let remedy = remedy_for(&e, ep);
            return Err(NoTls::Fail(f.fail_error("EHLO failed", &e, remedy)));
        }
        Err(Ehlofail::NoEsmtp(text)) => {
            quit(cx, creds, ep, &mut client).await;
            return Err(NoTls::Fail(
                f.fail(
                    "the server does not speak ESMTP (EHLO refused, HELO accepted), so it cannot offer STARTTLS",
                    REMEDY_NO_ESMTP,
                )
                .with("helo_reply", text),
            ));
        }
    };
    f.set("extensions_before_tls", before.extensions.clone());
    f.set("auth_before_tls", before.offers_auth());
    if before.offers_auth() {
        f.set("auth_mechanisms_before_tls", before.auth_mechanisms());
        f.auth_before_tls = Some(before.clone());
    }
    if !before.has("STARTTLS") {
        quit(cx, creds, ep, &mut client).await;
        let mut summary = "the server does not offer STARTTLS".to_string();
        let mut remedy = REMEDY_NO_STARTTLS.to_string();
        if before.offers_auth() {
            summary.push_str(", yet offers AUTH in clear text");
            remedy = format!("{remedy} {REMEDY_AUTH_BEFORE_TLS}");
        }
        return Err(NoTls::Fail(f.fail(summary, remedy)));
    }
    let wait = cx.io_timeout();
    let reply = match step(cx, creds, "starttls", ep, client.command("STARTTLS", wait)).await {
        Ok(r) => r,
        Err(e) => {
            let remedy = remedy_for(&e, ep);
            return Err(NoTls::Fail(f.fail_error("STARTTLS failed", &e, remedy)));
        }
    };
    f.set("starttls_reply", reply_text(&reply));
    if reply.code != 220 {
        let text = reply_text(&reply);
        quit(cx, creds, ep, &mut client).await;
        return Err(NoTls::Fail(f.fail(
            format!("the server advertises STARTTLS but refused it: {text}"),
            "The server cannot start TLS: check its certificate and key files and its TLS log (Postfix: smtpd_tls_cert_file / smtpd_tls_key_file, `postfix check`; Exchange: the certificate bound to the SMTP service).",
        )));
    }
    let stream = match client.into_inner() {
        Ok(s) => s,
        Err(e) => {
            let remedy = remedy_for(&e, ep);
            return Err(NoTls::Fail(f.fail_error("STARTTLS failed", &e, remedy)));
        }
    };
    match handshake(cx, ep, stream).await {
        Ok((tls, hs)) => Ok((SmtpClient::new(tls), hs)),
        Err(e) if speaks_only_legacy_tls(cx, &e) => Err(NoTls::Legacy(e)),
        Err(e) => {
            let remedy = remedy_for(&e, ep);
            Err(NoTls::Fail(f.fail_error(
                "the TLS handshake after STARTTLS failed",
                &e,
                remedy,
            )))
        }
    }
}

/// Whether a failed handshake means the server speaks only TLS ≤ 1.1: rustls says so
/// (a protocol_version alert, or a ServerHello below TLS 1.2), or the tls plugin found that
/// only legacy versions are accepted.
fn speaks_only_legacy_tls(cx: &RunContext, e: &NetError) -> bool {
    if let Some(versions) = cx.facts.tls_versions.get(&Protocol::Smtp) {
        let modern = [TlsVersion::Tls12, TlsVersion::Tls13]
            .iter()
            .any(|v| versions.get(v).copied().unwrap_or(false));
        let legacy = [TlsVersion::Ssl3, TlsVersion::Tls10, TlsVersion::Tls11]
            .iter()
            .any(|v| versions.get(v).copied().unwrap_or(false));
        if legacy && !modern {
            return true;
        }
    }
    match e {
        NetError::Tls(msg) => legacy_tls_message(msg),
        _ => false,
    }
}

fn legacy_tls_message(msg: &str) -> bool {
    msg.contains("ProtocolVersion")
        || msg.contains("peer is incompatible")
        || msg.contains("Tls12NotOffered")
        || msg.contains("SupportTls12")
}

/// A TLS client that meets a plain-text server sees a record that is not TLS.
fn plaintext_on_tls_port(e: &NetError) -> bool {
    matches!(e, NetError::Tls(m) if m.contains("corrupt message") || m.contains("InvalidContentType"))
}

/// A remedy that fits an error on the SMTP port.
fn remedy_for(e: &NetError, ep: &Endpoint) -> String {
    let port = ep.port;
    match e {
        NetError::Timeout { .. } => format!(
            "The server on port {port} stopped answering: check that it is an SMTP server and is healthy, and that it does not delay or tarpit the probe's address (Postfix: postscreen greet delay, smtpd_client_connection_rate_limit; a firewall or proxy in between)."
        ),
        NetError::Reset | NetError::Closed(_) => format!(
            "The server on port {port} dropped the connection: check its log for why (connection limits, a blocklisted client address, a crashing smtpd or TLS setup)."
        ),
        NetError::Tls(_) => format!(
            "Check the TLS setup of port {port}: a certificate and key for {host}, and TLS 1.2 enabled (Postfix: smtpd_tls_cert_file, smtpd_tls_key_file, smtpd_tls_protocols; Exchange: the certificate bound to the SMTP service).",
            host = ep.host
        ),
        NetError::Protocol(_) => format!(
            "Port {port} did not answer like an SMTP submission server: check that mailprobe points at the right port, and the server's log for the reply above."
        ),
        NetError::StarttlsNotOffered => REMEDY_NO_STARTTLS.to_string(),
        NetError::Refused { .. }
        | NetError::ConnectTimeout { .. }
        | NetError::Unreachable { .. }
        | NetError::Dns { .. } => format!(
            "The probe reached port {port} once but not again: check the server's connection limits and any firewall rate limit for the probe's address."
        ),
        _ => format!("Check that the SMTP server on port {port} is up and healthy."),
    }
}

#[cfg(test)]
mod tests;
