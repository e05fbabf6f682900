//! The `imap` check: is the IMAP session encrypted (implicit TLS or STARTTLS), which server
//! software answers (Courier-IMAP is not supported by the CRM), does the user's password log in
//! over TLS, and are INBOX and a Sent folder there to sync.
//!
//! The story of a run ([`probe`]): [`encryption`] connects and establishes TLS, watching the
//! greeting and every capability list; [`software`] tells who answered; [`login`] logs in the
//! way the CRM would; [`listing`] finds INBOX and the Sent folder. Up to login the probe speaks
//! IMAP itself (the shared engine of `mailprobe-mailwire`), bounded in time and size, so that a
//! hostile server cannot hang or bloat it. The login goes through async-imap, whose
//! [`ImapSession`] is then kept open for the connection-limit check; every command async-imap
//! sends (LOGIN or AUTHENTICATE, NOOP, LOGOUT) has a byte budget for its reply.
#![forbid(unsafe_code)]

pub mod encryption;
pub mod fingerprint;
pub mod folders;
pub mod listing;
pub mod login;
mod refusal;
pub mod remedies;
pub mod session;
pub mod software;

/// The IMAP engine, shared with the other plugins through `mailprobe-mailwire`.
pub use mailprobe_mailwire::imap as wire;

use std::collections::BTreeMap;

use mailprobe_core::net::Conn;
use mailprobe_core::plugin::{BoxFuture, PluginError};
use mailprobe_core::tls::TlsConn;
use mailprobe_core::{
    CheckPlugin, NetError, PluginInfo, Protocol, RequirementResult, RequirementSpec, RunContext,
    Security, serde_fact,
};
use serde::Serialize;

use crate::fingerprint::Observed;
use crate::wire::{Reply, StatusLine};

pub const NAME: &str = "imap";

/// The logged-in session this plugin leaves in `RunContext::held` (protocol IMAP, wrapped in
/// [`session::HeldImap`]) for the connection-limit check. INBOX and the Sent folder have been
/// EXAMINEd in it, so it is in the selected (read-only) state. Its stream carries a byte
/// budget that each async-imap command arms first (see [`login::arm`]).
pub type ImapSession = async_imap::Session<ImapStream>;

/// The stream async-imap reads: TLS with a per-command byte budget, so a hostile reply (a
/// `{536000000}` literal, an endless flood) cannot make it allocate or read without bound.
pub type ImapStream = mailprobe_mailwire::Budgeted<TlsConn<Conn>>;

pub const ENCRYPTION: &str = "imap.encryption";
pub const SOFTWARE: &str = "imap.server_software";
pub const LOGIN: &str = "imap.login";
pub const FOLDERS: &str = "imap.folders";

/// What this plugin learned that others use (the connection-limit check: how many sessions the
/// CRM needs, and which server's setting to name in a remedy; the round-trip check: where the
/// Sent folder is).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ImapFacts {
    /// "Dovecot", "Courier-IMAP", ... when identified.
    pub software: Option<String>,
    /// Folders besides INBOX and Sent; decides whether the CRM needs a third IMAP connection.
    pub other_folders: Option<u32>,
    /// The Sent folder's name as the server spells it (modified UTF-7), when one was found
    /// (the round-trip check looks there for the server's copy of its test message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_folder: Option<String>,
}
serde_fact!(ImapFacts, "imap");

/// The IMAP plugin.
#[derive(Debug, Default)]
pub struct Imap;

/// The plugin, as the binary registers it.
pub fn plugin() -> std::sync::Arc<dyn CheckPlugin> {
    std::sync::Arc::new(Imap)
}

impl CheckPlugin for Imap {
    fn info(&self) -> PluginInfo {
        let on = |s: RequirementSpec| s.on(Protocol::Imap);
        PluginInfo::builtin(
            NAME,
            vec![
                on(RequirementSpec::new(
                    ENCRYPTION,
                    "implicit TLS, or STARTTLS advertised and the upgrade succeeds",
                )
                .after(&["imap.reachable"])
                .passes("the implicit TLS handshake succeeds, or STARTTLS is advertised and the upgrade succeeds")
                .fails("no TLS is possible, or STARTTLS is not offered")
                .evidence("security", "`tls` or `starttls`")
                .evidence("tls_version", "the version the handshake negotiated")
                .evidence("tls_engine", "`rustls`, or `openssl` (the legacy engine) for a server that speaks only TLS ≤ 1.1 or TLS 1.2 suites rustls lacks")),
                on(
                    RequirementSpec::new(SOFTWARE, "the IMAP server is not Courier-IMAP")
                        .after(&["imap.reachable"])
                        .passes("the server is not one the profile does not support")
                        .warns("the server software is unknown")
                        .fails("the server is identified (greeting, ID response or capabilities) as one the profile does not support (hubspot: Courier-IMAP)")
                        .evidence("software", "the identified software, e.g. `Dovecot`, `Courier-IMAP`")
                        .evidence("greeting", "the server's greeting line"),
                ),
                on(RequirementSpec::new(
                    LOGIN,
                    "the user logs in with username and password, over TLS only",
                )
                .after(&[ENCRYPTION])
                .passes("the login the profile's client makes succeeds over TLS, after its certificate gate: its SASL mechanisms in its order where the server offers them (hubspot: AUTHENTICATE PLAIN, then LOGIN), else the LOGIN command")
                .warns("the server pre-authenticates the session (PREAUTH)")
                .fails("the credentials are refused (the RFC 5530 response code chooses the remedy; a temporary refusal is said so), or the server offers no mechanism the CRM uses")
                .evidence("method", "`LOGIN`, `AUTHENTICATE PLAIN` or `AUTHENTICATE LOGIN`")
                .evidence("mechanisms_offered", "the SASL mechanisms the server offers (AUTH=)")
                .evidence("mechanism_used", "`PLAIN` or `LOGIN`")
                .evidence("response_code", "the refusal's response code (AUTHENTICATIONFAILED, UNAVAILABLE, LIMIT, EXPIRED, ...)")
                .evidence("server_response", "the server's refusal, credentials removed")),
                on(
                    RequirementSpec::new(FOLDERS, "INBOX and a Sent folder can be selected")
                        .after(&[LOGIN])
                        .passes("INBOX and a Sent folder (`\\Sent` special-use, else a well-known name) can be opened")
                        .fails("either is missing or cannot be opened")
                        .evidence("sent_folder", "the Sent folder found")
                        .evidence("other_folders", "how many folders besides INBOX and Sent (decides the CRM's third IMAP session)"),
                ),
            ],
        )
        .depends_on(&["reachability"])
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
pub(crate) struct Seen {
    pub(crate) greeting: Option<StatusLine>,
    pub(crate) caps_before_tls: Option<Vec<String>>,
    pub(crate) caps_tls: Vec<String>,
    pub(crate) caps_login: Vec<String>,
    pub(crate) id: Option<BTreeMap<String, String>>,
    pub(crate) alerts: Vec<String>,
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
                self.alerts.push(mailprobe_core::lines::printable(u));
            }
        }
    }
}

pub(crate) fn has(caps: &[String], cap: &str) -> bool {
    caps.iter().any(|c| c.eq_ignore_ascii_case(cap))
}

pub(crate) fn mechanisms(caps: &[String]) -> Vec<String> {
    caps.iter()
        .filter_map(|c| {
            c.get(..5)
                .filter(|p| p.eq_ignore_ascii_case("AUTH="))
                .and_then(|_| c.get(5..))
                .map(str::to_ascii_uppercase)
        })
        .collect()
}

/// How the run ended before login could be tried.
pub(crate) enum Stop {
    /// The encryption requirement failed (or was found not to be checkable); its result.
    Encryption(RequirementResult),
    /// Encryption passed, but the session broke or was refused before login.
    Session { summary: String, error: NetError },
}

/// The check, top to bottom.
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
            let r = encryption::fail(&ep, &seen, "connect", &e);
            return abandon(cx, &seen, Stop::Encryption(r));
        }
    };
    let session = match ep.security {
        Security::Tls => encryption::implicit_tls(cx, &ep, conn, &mut seen).await,
        Security::Starttls => encryption::starttls(cx, &ep, conn, &mut seen).await,
    };
    let (wire, handshake) = match session {
        Ok(s) => s,
        Err(stop) => return abandon(cx, &seen, stop),
    };
    login::login_and_folders(cx, &ep, wire, handshake, &mut seen).await;
}

/// Reports what is left after the run stopped before login.
fn abandon(cx: &mut RunContext, seen: &Seen, stop: Stop) {
    match stop {
        Stop::Encryption(r) => {
            let passed = r.status != mailprobe_core::Status::Fail;
            let text = |key: &str| {
                r.evidence
                    .get(key)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            let (dialect, limit) = (text("dialect"), text("limit"));
            cx.report(r);
            software::report(cx, seen);
            if passed {
                // TLS is there, but only in a dialect the probe could not complete: its limit,
                // not the server's fault, so unverified.
                cx.report(RequirementResult::not_verified(
                    LOGIN,
                    format!("not verified: the server speaks {dialect}; {limit}"),
                ));
            } else {
                cx.skip_if_blocked(LOGIN);
            }
        }
        Stop::Session { summary, error } => {
            software::report(cx, seen);
            let mut r = RequirementResult::fail(LOGIN, summary, remedies::SESSION_BROKEN)
                .with_error(&error);
            if let Some(g) = &seen.greeting {
                r = r.with("greeting", g.line.clone());
            }
            cx.report(r);
        }
    }
    cx.skip_if_blocked(FOLDERS);
}

#[cfg(test)]
mod tests;
