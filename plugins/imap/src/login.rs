//! `imap.login`: log in the way the CRM would (LOGIN, or AUTHENTICATE PLAIN where LOGIN is
//! disabled), over TLS only and only to a server whose certificate a strict client accepts;
//! then hand the session to [`crate::listing`] and keep it for the connection-limit check.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mailprobe_core::context::{HeldSession, StepTimer};
use mailprobe_core::net::Conn;
use mailprobe_core::tls::TlsConn;
use mailprobe_core::{
    Endpoint, Handshake, NetError, Protocol, RequirementResult, RunContext, Target,
};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};

use mailprobe_mailwire::budget::{BudgetExceeded, Budgeted, COMMAND_BUDGET};

use crate::encryption::capability;
use crate::wire::{Status, Wire};
use crate::{
    FOLDERS, ImapSession, ImapStream, LOGIN, Seen, has, listing, mechanisms, refusal, remedies,
    session, software,
};

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

/// AUTHENTICATE LOGIN's two responses: the user name, then the password.
struct SaslLogin<'a> {
    user: &'a str,
    password: &'a str,
    answered: u8,
}

impl async_imap::Authenticator for SaslLogin<'_> {
    type Response = zeroize::Zeroizing<Vec<u8>>;
    fn process(&mut self, _challenge: &[u8]) -> Self::Response {
        self.answered = self.answered.saturating_add(1);
        let v = if self.answered == 1 {
            self.user
        } else {
            self.password
        };
        zeroize::Zeroizing::new(v.as_bytes().to_vec())
    }
}

/// What async-imap gives back when a login fails: the error and the client, to log out.
type LoginFailure = (async_imap::error::Error, async_imap::Client<ImapStream>);

/// Logs in with `method` over TLS; returns the session and, for LOGIN, the capabilities the
/// server sent with its OK. The plugin's own login and the session opener both use it, so the
/// connection-limit check logs in exactly the way the plugin did.
///
/// LOGIN sends quoted strings when they can carry the credentials, else literals
/// (non-synchronizing when `literal_plus`: the server announced LITERAL+); credentials no
/// IMAP form can carry (a NUL byte) are refused before anything is sent.
pub(crate) async fn log_in(
    stream: TlsConn<Conn>,
    method: Method,
    target: &Target,
    literal_plus: bool,
) -> Result<(ImapSession, Option<Vec<String>>), LoginFailure> {
    use mailprobe_mailwire::literal::{self, LoginForm};
    let mut stream = Budgeted::new(stream);
    stream.arm(method.as_str(), COMMAND_BUDGET);
    let (mut user, mut password) = (target.user.as_str(), target.password.expose());
    match literal::login_form(user, password) {
        Ok(LoginForm::Quoted) => {}
        Ok(LoginForm::Literal) => {
            if method == Method::Login {
                stream.login_with_literals(user, password, literal_plus);
                user = literal::USER_PLACEHOLDER;
                password = literal::PASSWORD_PLACEHOLDER;
            }
        }
        Err(why) => {
            let client = async_imap::Client::new(stream);
            return Err((
                async_imap::error::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    why,
                )),
                client,
            ));
        }
    }
    let client = async_imap::Client::new(stream);
    match method {
        Method::Login => client
            .login_with_capabilities(user, password)
            .await
            .map(|(s, c)| (s, c.map(|c| caps_to_strings(&c)))),
        Method::AuthenticatePlain => client
            .authenticate("PLAIN", Plain { user, password })
            .await
            .map(|s| (s, None)),
        Method::AuthenticateLogin => client
            .authenticate(
                "LOGIN",
                SaslLogin {
                    user: &target.user,
                    password: target.password.expose(),
                    answered: 0,
                },
            )
            .await
            .map(|s| (s, None)),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    Login,
    AuthenticatePlain,
    AuthenticateLogin,
}

impl Method {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Method::Login => "LOGIN",
            Method::AuthenticatePlain => "AUTHENTICATE PLAIN",
            Method::AuthenticateLogin => "AUTHENTICATE LOGIN",
        }
    }

    /// The mechanism in evidence: the SASL mechanism, or `LOGIN` for the LOGIN command.
    pub(crate) fn mechanism(self) -> &'static str {
        match self {
            Method::Login | Method::AuthenticateLogin => "LOGIN",
            Method::AuthenticatePlain => "PLAIN",
        }
    }
}

/// The method the profile's client would use, as JavaMail does: its SASL mechanisms in its
/// order, each only when the server offers it (`AUTH=`), then the LOGIN command unless the
/// server disables it.
pub(crate) fn choose_method(caps: &[String], client_mechanisms: &[String]) -> Option<Method> {
    let offered = mechanisms(caps);
    for m in client_mechanisms {
        if !offered.iter().any(|o| o.eq_ignore_ascii_case(m)) {
            continue;
        }
        match m.to_ascii_uppercase().as_str() {
            "PLAIN" => return Some(Method::AuthenticatePlain),
            "LOGIN" => return Some(Method::AuthenticateLogin),
            _ => {}
        }
    }
    (!has(caps, "LOGINDISABLED")).then_some(Method::Login)
}

/// The server's words from async-imap's `code: Some(X), info: Some("text")` error text.
pub(crate) fn server_words(s: &str) -> String {
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

/// The evidence every `imap.login` result carries.
fn base(
    r: RequirementResult,
    method: Option<Method>,
    caps: &[String],
    seen: &Seen,
) -> RequirementResult {
    let mut r = r
        .with("method", method.map(Method::as_str))
        .with("mechanisms", json!(mechanisms(caps)))
        .with("mechanisms_offered", json!(mechanisms(caps)))
        .with("mechanism_used", method.map(Method::mechanism))
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
pub(crate) async fn logout<S>(cx: &mut RunContext, ep: &Endpoint, wire: &mut Wire<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let wait = cx.io_timeout().min(Duration::from_secs(2));
    let _ = cx
        .step("logout", Some(ep), async {
            wire.command("LOGOUT", wait).await
        })
        .await;
}

/// Logs in, checks the folders, and keeps the session: the rest of the check once TLS is up.
pub(crate) async fn login_and_folders(
    cx: &mut RunContext,
    ep: &Endpoint,
    mut wire: Wire<TlsConn<Conn>>,
    hs: Handshake,
    seen: &mut Seen,
) {
    let caps = seen.caps_tls.clone();
    // Dovecot answers ID before login; Courier only after (and only when configured to).
    if has(&caps, "ID") {
        software::try_id(cx, ep, &mut wire, seen).await;
    }
    let Some(method) = may_log_in(cx, ep, &mut wire, &hs, &caps, seen).await else {
        return;
    };
    let Some((session, login_caps)) = attempt(cx, ep, wire, method, &caps, seen).await else {
        return;
    };
    after_login(cx, ep, session, login_caps, method, &caps, seen).await;
}

/// Whether the probe may and can log in; when not, reports why and ends the session.
async fn may_log_in(
    cx: &mut RunContext,
    ep: &Endpoint,
    wire: &mut Wire<TlsConn<Conn>>,
    hs: &Handshake,
    caps: &[String],
    seen: &Seen,
) -> Option<Method> {
    let method = choose_method(caps, &cx.target.profile.client.sasl_mechanisms);
    let refusal = if let Err(why) = cx.credentials_allowed(hs) {
        let gate = cx.gate_requirement(mailprobe_core::Protocol::Imap, hs);
        RequirementResult::skip(LOGIN, &gate, format!("not evaluated: {why}"))
    } else if seen
        .greeting
        .as_ref()
        .is_some_and(|g| g.status == Status::Preauth)
    {
        software::report(cx, seen);
        cx.report(base(
            RequirementResult::warn(
                LOGIN,
                "the server pre-authenticated the session (PREAUTH): the CRM's LOGIN would be refused in that state",
                remedies::PREAUTH,
            ),
            method,
            caps,
            seen,
        ));
        let list = listing::list_folders(cx, ep, wire, caps).await;
        listing::judge(cx, ep, wire, list).await;
        logout(cx, ep, wire).await;
        return None;
    } else if method.is_none() {
        RequirementResult::fail(
            LOGIN,
            format!(
                "the server offers no login the CRM's client can use: LOGIN is disabled and none of its mechanisms ({}) is offered over TLS",
                cx.target.profile.client.sasl_mechanisms.join(", ")
            ),
            remedies::NO_LOGIN_METHOD,
        )
    } else {
        return method;
    };
    software::report(cx, seen);
    cx.report(base(refusal, method, caps, seen));
    cx.skip_if_blocked(FOLDERS);
    logout(cx, ep, wire).await;
    None
}

fn login_attrs(method: Method) -> BTreeMap<String, String> {
    BTreeMap::from([("imap.auth.method".to_string(), method.as_str().to_string())])
}

/// The login itself, as the `login` step; on failure, reports `imap.login` and ends the session.
async fn attempt(
    cx: &mut RunContext,
    ep: &Endpoint,
    wire: Wire<TlsConn<Conn>>,
    method: Method,
    caps: &[String],
    seen: &Seen,
) -> Option<(ImapSession, Option<Vec<String>>)> {
    // A server delays a failed login on purpose (Dovecot's auth_failure_delay, more under
    // load): the reply is waited for until the check's deadline, so a delayed rejection is
    // reported as the rejection it is.
    let wait = cx.remaining();
    let target: Arc<Target> = cx.target.clone();
    let timer = StepTimer::start();
    let outcome = tokio::time::timeout(
        wait,
        log_in(wire.into_inner(), method, &target, has(caps, "LITERAL+")),
    )
    .await;
    let mut over_budget = false;
    let (error, refused, mut client) = match outcome {
        Ok(Ok(x)) => {
            let ok: Result<(), NetError> = Ok(());
            cx.record_step(timer, "login", Some(ep), &ok, login_attrs(method));
            return Some(x);
        }
        Ok(Err((e, client))) => {
            let (error, refused) = login_error(&e, method);
            over_budget = matches!(error, NetError::TooLarge(_));
            (error, refused, Some(client))
        }
        Err(_) => {
            let error = NetError::Timeout {
                waiting_for: format!("the reply to {}", method.as_str()),
                after: wait,
            };
            (error, None, None)
        }
    };
    let failed: Result<(), NetError> = Err(error.clone());
    cx.record_step(timer, "login", Some(ep), &failed, login_attrs(method));
    software::report(cx, seen);
    let r = match (&refused, &client) {
        // The probe's own bound, not a verdict on the server: the session is dropped unread.
        _ if over_budget => {
            client = None;
            RequirementResult::not_verified(
                LOGIN,
                format!("not verified: the login did not complete: {error}"),
            )
        }
        (Some(words), _) => {
            let code = refusal::response_code(words);
            let meaning = refusal::meaning(code.as_deref());
            let how = if meaning.temporary {
                "temporarily refused"
            } else {
                "refused"
            };
            RequirementResult::fail(
                LOGIN,
                format!(
                    "the server {how} the login of {} ({}): {words}",
                    target.user, meaning.what
                ),
                meaning.remedy,
            )
            .with("server_response", words.clone())
            .with("response_code", code)
            .with("temporary", meaning.temporary)
        }
        (None, Some(_)) => RequirementResult::fail(
            LOGIN,
            format!("the login did not complete: {error}"),
            remedies::LOGIN_BROKEN,
        ),
        // No answer at all within the bound.
        (None, None) => RequirementResult::fail(
            LOGIN,
            format!("the login did not complete: {error}"),
            remedies::LOGIN_TIMEOUT,
        ),
    };
    cx.report(
        base(r, Some(method), caps, seen)
            .with("user", target.user.clone())
            .with_error(&error),
    );
    cx.skip_if_blocked(FOLDERS);
    if let Some(client) = client {
        let mut stream = client.into_inner();
        // The engine bounds each reply itself.
        stream.disarm();
        let mut w = Wire::starting_at(stream, 90);
        logout(cx, ep, &mut w).await;
    }
    None
}

/// A failed login as an error, and the server's words when it refused.
fn login_error(e: &async_imap::error::Error, method: Method) -> (NetError, Option<String>) {
    match e {
        async_imap::error::Error::No(s) | async_imap::error::Error::Bad(s) => {
            let words = server_words(s);
            (
                NetError::Protocol(format!("{} refused: {words}", method.as_str())),
                Some(words),
            )
        }
        async_imap::error::Error::Io(_) => (imap_error(e), None),
        async_imap::error::Error::ConnectionLost => (
            NetError::Closed(format!(" during {}", method.as_str())),
            None,
        ),
        other => (NetError::Protocol(other.to_string()), None),
    }
}

/// Once logged in: capabilities and ID again, `imap.login` and `imap.folders`, and the session
/// kept for the connection-limit check (or logged out when it is no good).
async fn after_login(
    cx: &mut RunContext,
    ep: &Endpoint,
    mut session: ImapSession,
    login_caps: Option<Vec<String>>,
    method: Method,
    caps: &[String],
    seen: &mut Seen,
) {
    // After login the probe speaks on the session's own stream; async-imap has consumed the
    // tagged reply to LOGIN and nothing after it. The engine bounds each reply itself.
    session.get_mut().disarm();
    let mut wire = Wire::starting_at(session.get_mut(), 20);
    seen.caps_login = match login_caps {
        Some(c) if !c.is_empty() => c,
        _ => capability(cx, ep, &mut wire).await.unwrap_or_default(),
    };
    if seen.id.is_none() && has(&seen.caps_login, "ID") {
        software::try_id(cx, ep, &mut wire, seen).await;
    }
    software::report(cx, seen);
    let user = cx.target.user.clone();
    cx.report(
        base(
            RequirementResult::pass(LOGIN, format!("{user} logged in with {}", method.as_str())),
            Some(method),
            caps,
            seen,
        )
        .with("user", user),
    );
    let login_caps = seen.caps_login.clone();
    let list = listing::list_folders(cx, ep, &mut wire, &login_caps).await;
    if listing::judge(cx, ep, &mut wire, list).await {
        cx.held.push(HeldSession {
            protocol: Protocol::Imap,
            session: Box::new(session::HeldImap {
                session,
                resumed: false,
            }),
        });
        cx.openers
            .insert(Protocol::Imap, Arc::new(session::ImapOpener { method }));
    } else {
        close(cx, ep, session).await;
    }
}

/// LOGOUT through async-imap, as the `logout` step.
async fn close(cx: &mut RunContext, ep: &Endpoint, mut session: ImapSession) {
    let timer = StepTimer::start();
    let wait = Duration::from_secs(2);
    arm(&mut session, "LOGOUT");
    let out = match tokio::time::timeout(wait, session.logout()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(imap_error(&e)),
        Err(_) => Err(NetError::Timeout {
            waiting_for: "the reply to LOGOUT".into(),
            after: wait,
        }),
    };
    cx.record_step(timer, "logout", Some(ep), &out, BTreeMap::new());
}

/// Gives the session's next async-imap command (`verb`) its byte budget.
pub fn arm(session: &mut ImapSession, verb: &str) {
    session.get_mut().arm(verb, COMMAND_BUDGET);
}

/// An async-imap error as a step error: a budget overrun in its own words, the server's words
/// for the rest.
pub fn imap_error(e: &async_imap::error::Error) -> NetError {
    match e {
        async_imap::error::Error::Io(io) => match BudgetExceeded::find(io) {
            Some(over) => NetError::TooLarge(over.to_string()),
            None => NetError::from_io(io),
        },
        other => NetError::Protocol(server_words(&other.to_string())),
    }
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
