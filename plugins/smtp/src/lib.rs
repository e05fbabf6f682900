//! The `smtp` check: can the CRM reach the mailbox's SMTP submission server over TLS (implicit
//! TLS, or STARTTLS upgrading a plain session) and log in with username and password?
//!
//! The story of a run ([`check`]): [`encryption`] connects, greets, and establishes TLS, then
//! EHLO over it; [`login`] authenticates the way the CRM would and keeps the session for the
//! connection-limit check. It speaks SMTP itself (the shared client of `mailprobe-mailwire`)
//! rather than through lettre: lettre takes no rustls configuration of ours, hides the
//! negotiated version and cipher, and returns errors rather than the server's replies, while
//! this check reports every reply it got. No mail is ever sent.
#![forbid(unsafe_code)]

pub mod encryption;
pub mod login;
mod refusal;
pub mod remedies;
pub mod session;

/// The SMTP client, shared with the other plugins through `mailprobe-mailwire`.
pub use mailprobe_mailwire::smtp as client;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use mailprobe_core::context::{NetErrorView, StepTimer};
use mailprobe_core::error::within;
use mailprobe_core::net::Conn;
use mailprobe_core::plugin::{BoxFuture, PluginError};
use mailprobe_core::tls::TlsConn;
use mailprobe_core::{
    CheckPlugin, Endpoint, Handshake, NetError, PluginInfo, Protocol, RequirementResult,
    RequirementSpec, RunContext, Secret, Security,
};
use mailprobe_mailwire::handshake;
use mailprobe_mailwire::legacy::LegacyDialect;
use serde_json::{Map, Value};

use crate::client::{Ehlo, Mechanism, SmtpClient, SmtpReply, redact, scrubbed_reply};
use crate::encryption::Ehlofail;

pub const NAME: &str = "smtp";
pub const ENCRYPTION: &str = "smtp.encryption";
pub const LOGIN: &str = "smtp.login";

/// The SMTP plugin.
#[derive(Debug, Default)]
pub struct Smtp;

/// An SMTP session over TLS.
pub type TlsClient = SmtpClient<TlsConn<Conn>>;

/// The logged-in SMTP session this plugin keeps in [`RunContext::held`] for the
/// connection-limit check (a [`mailprobe_core::session::MailSession`]). Dropping it closes the
/// connection without QUIT; [`SmtpSession::quit`] closes it cleanly.
pub struct SmtpSession {
    pub client: TlsClient,
    pub endpoint: Endpoint,
    pub mechanism: Mechanism,
    /// Whether its TLS handshake resumed an earlier session of the run.
    pub resumed: bool,
}

impl SmtpSession {
    /// Sends QUIT and waits at most `wait` for its reply.
    pub async fn quit(mut self, wait: Duration) {
        let _ = self.client.command("QUIT", wait).await;
    }
}

/// The plugin, as the binary registers it.
pub fn plugin() -> std::sync::Arc<dyn CheckPlugin> {
    std::sync::Arc::new(Smtp)
}

impl CheckPlugin for Smtp {
    fn info(&self) -> PluginInfo {
        PluginInfo::builtin(
            NAME,
            vec![
                RequirementSpec::new(
                    ENCRYPTION,
                    "implicit TLS, or STARTTLS advertised and the upgrade succeeds",
                )
                .after(&["smtp.reachable"])
                .on(Protocol::Smtp)
                .passes("the implicit TLS handshake succeeds, or STARTTLS is advertised and the upgrade succeeds")
                .warns("AUTH is offered before STARTTLS (passwords invited in clear)")
                .fails("no TLS is possible, or STARTTLS is not offered")
                .evidence("security", "`tls` or `starttls`")
                .evidence("tls_version", "the version the handshake negotiated")
                .evidence("tls_engine", "`rustls`, or `openssl` (the legacy engine) for a server that speaks only TLS ≤ 1.1 or TLS 1.2 suites rustls lacks"),
                RequirementSpec::new(
                    LOGIN,
                    "the user logs in with username and password, over TLS only",
                )
                .after(&[ENCRYPTION])
                .on(Protocol::Smtp)
                .passes("AUTH with the first of the profile's client mechanisms the server offers (hubspot: PLAIN, then LOGIN) succeeds after TLS")
                .fails("the credentials are refused (the enhanced status code, e.g. 5.7.8, chooses the remedy; a 4xx refusal is said to be temporary), or none of the client's mechanisms is offered after TLS (the remedy names them)")
                .evidence("mechanism", "`PLAIN` or `LOGIN`")
                .evidence("mechanism_used", "`PLAIN` or `LOGIN`")
                .evidence("mechanisms_offered", "the mechanisms the server offers after TLS")
                .evidence("enhanced_status", "the refusal's enhanced status code (RFC 3463)")
                .evidence("reply", "the server's reply, credentials removed"),
            ],
        )
        .depends_on(&["reachability"])
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

pub(crate) struct Creds {
    user: String,
    password: Secret,
}

impl Creds {
    /// Text from the server, with any echo of the credentials removed.
    pub(crate) fn scrub(&self, text: &str) -> String {
        redact(text, self.password.expose())
    }
    /// A reply that may echo the credentials (to AUTH), redacted before it is cut to length.
    pub(crate) fn reply(&self, r: &SmtpReply) -> String {
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
pub(crate) struct Findings {
    pub(crate) ep: Endpoint,
    pub(crate) evidence: Map<String, Value>,
    pub(crate) auth_before_tls: Option<Ehlo>,
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
    pub(crate) fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.evidence.insert(key.into(), value.into());
    }
    pub(crate) fn result(&self, mut r: RequirementResult) -> RequirementResult {
        for (k, v) in &self.evidence {
            r.evidence.entry(k.clone()).or_insert_with(|| v.clone());
        }
        r
    }
    pub(crate) fn fail(
        &self,
        summary: impl Into<String>,
        remedy: impl Into<String>,
    ) -> RequirementResult {
        self.result(RequirementResult::fail(ENCRYPTION, summary, remedy))
    }
    pub(crate) fn fail_error(&self, what: &str, e: &NetError, remedy: String) -> RequirementResult {
        self.fail(format!("{what}: {e}"), remedy).with_error(e)
    }
}

/// Runs one timed step that yields an SMTP reply. A reply of 400 or more marks the step
/// failed (with the reply as its error), but is returned to the caller to judge.
pub(crate) async fn step<F>(
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

/// Sends QUIT as the `quit` step, briefly; its outcome changes no result.
pub(crate) async fn quit<S>(
    cx: &mut RunContext,
    creds: &Creds,
    ep: &Endpoint,
    client: &mut SmtpClient<S>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let wait = cx.io_timeout().min(Duration::from_secs(2));
    let _ = step(cx, creds, "quit", ep, client.command("QUIT", wait)).await;
}

/// Why TLS could not be had.
pub(crate) enum NoTls {
    /// A failure of `smtp.encryption`, its result.
    Failed(RequirementResult),
    /// A failed handshake not judged yet (inside `encryption`).
    Error(NetError),
    /// A server that speaks TLS only in a dialect rustls lacks (TLS ≤ 1.1, TLS 1.2 CBC/RSA
    /// suites), which the probe could not complete either (`limit` says why): compliant for
    /// the CRM as far as the probe can tell, so never a false fail, but unverified.
    Legacy {
        dialect: LegacyDialect,
        error: NetError,
        limit: String,
    },
}

/// The check, top to bottom.
async fn check(cx: &mut RunContext, ep: &Endpoint, creds: &Creds) {
    let mut f = Findings::new(ep);
    let Some((mut client, hs)) = establish(cx, ep, creds, &mut f).await else {
        return;
    };
    // Implicit TLS: the greeting comes over TLS.
    if ep.security == Security::Tls {
        let wait = cx.io_timeout();
        let greeting = step(cx, creds, "greeting", ep, client.reply(wait)).await;
        if let Err(why) = encryption::greeting_ok(&mut f, greeting) {
            encryption::report(cx, &f);
            cx.report(login::error_result(why, ep));
            return;
        }
    }
    let Some(after) = ehlo_after_tls(cx, ep, creds, &mut client, &mut f).await else {
        return;
    };
    f.set("extensions_after_tls", after.extensions.clone());
    encryption::report(cx, &f);
    login::authenticate(cx, ep, creds, client, &hs, &after, &f).await;
}

/// Connects and establishes TLS; when it cannot, reports `smtp.encryption` and `smtp.login`
/// and shares the failure with the plugins after this one.
async fn establish(
    cx: &mut RunContext,
    ep: &Endpoint,
    creds: &Creds,
    f: &mut Findings,
) -> Option<(TlsClient, Handshake)> {
    let conn = match cx.connect(ep).await {
        Ok(c) => c,
        Err(e) => {
            handshake::keep(
                cx,
                Protocol::Smtp,
                Err(NetErrorView::from(&e).at("connect")),
            );
            let r = f.fail_error("cannot connect", &e, remedies::for_error(&e, ep));
            cx.report(r);
            cx.skip_if_blocked(LOGIN);
            return None;
        }
    };
    let established = match ep.security {
        Security::Tls => encryption::implicit_tls(cx, ep, conn, f).await,
        Security::Starttls => encryption::starttls(cx, creds, ep, conn, f).await,
    };
    match established {
        Ok(x) => {
            f.set("tls_version", x.1.version.name());
            f.set("tls_cipher", x.1.cipher.clone());
            f.set("tls_engine", x.1.engine.as_str());
            Some(x)
        }
        Err(NoTls::Failed(r)) => {
            // A failed handshake is already shared; what failed before it was the preamble.
            let view = NetErrorView {
                error_type: r.error_type().unwrap_or("starttls_failed").to_string(),
                message: r.summary.clone(),
                step: Some("starttls".into()),
            };
            handshake::keep(cx, Protocol::Smtp, Err(view));
            cx.report(r);
            cx.skip_if_blocked(LOGIN);
            None
        }
        Err(NoTls::Error(e)) => {
            // Not reached: `encryption` judges every error it returns; a failure all the same.
            let r = f.fail_error("the TLS handshake failed", &e, remedies::for_error(&e, ep));
            cx.report(r);
            cx.skip_if_blocked(LOGIN);
            None
        }
        Err(NoTls::Legacy {
            dialect,
            error,
            limit,
        }) => {
            // The same statuses as imap.encryption for the same server: TLS is there (the
            // version is smtp.tls_versions' to judge), login is the probe's limit.
            let r = f
                .result(RequirementResult::pass(
                    ENCRYPTION,
                    format!(
                        "the server offers TLS, but {} ({error}), which the CRM accepts (see smtp.tls_versions)",
                        dialect.describe()
                    ),
                ))
                .with("legacy_tls_only", true)
                .with("tls_version", dialect.version.name())
                .with("tls_cipher", dialect.cipher.clone())
                .with("error", error.to_string())
                .with("dialect", dialect.describe())
                .with("limit", limit.clone());
            cx.report(r);
            cx.report(RequirementResult::not_verified(
                LOGIN,
                format!(
                    "not verified: the server speaks {}; {limit}",
                    dialect.describe()
                ),
            ));
            None
        }
    }
}

/// EHLO over TLS; when it fails, reports `smtp.encryption` and `smtp.login`.
async fn ehlo_after_tls(
    cx: &mut RunContext,
    ep: &Endpoint,
    creds: &Creds,
    client: &mut TlsClient,
    f: &mut Findings,
) -> Option<Ehlo> {
    match encryption::ehlo_or_helo(cx, creds, ep, client, f).await {
        Ok(e) => Some(e),
        Err(Ehlofail::Error(e)) => {
            encryption::report(cx, f);
            cx.report(login::error_result(e, ep));
            None
        }
        Err(Ehlofail::NoEsmtp(text)) => {
            encryption::report(cx, f);
            cx.report(
                RequirementResult::fail(
                    LOGIN,
                    "the server does not speak ESMTP over TLS, so it offers no AUTH",
                    remedies::NO_ESMTP,
                )
                .with("esmtp", false)
                .with("helo_reply", text),
            );
            quit(cx, creds, ep, client).await;
            None
        }
    }
}

#[cfg(test)]
mod tests;
