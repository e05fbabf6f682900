//! `smtp.login`: AUTH PLAIN or LOGIN after TLS, the CRM's username and password, only to a
//! server whose certificate a strict client accepts; the logged-in session is kept for the
//! connection-limit check.

use mailprobe_core::context::HeldSession;
use mailprobe_core::{Endpoint, Handshake, NetError, Protocol, RequirementResult, RunContext};

use crate::client::{Ehlo, Mechanism, SmtpReply};
use crate::{Creds, Findings, LOGIN, SmtpSession, TlsClient, quit, remedies, session, step};

/// Authenticates over the TLS session and reports `smtp.login`.
pub(crate) async fn authenticate(
    cx: &mut RunContext,
    ep: &Endpoint,
    creds: &Creds,
    mut client: TlsClient,
    hs: &Handshake,
    after: &Ehlo,
    f: &Findings,
) {
    // Login.
    let mechanisms = after.auth_mechanisms();
    let base = |r: RequirementResult| {
        r.with("auth_mechanisms", mechanisms.clone())
            .with("auth_before_tls", f.auth_before_tls.is_some())
    };
    if let Err(why) = cx.credentials_allowed(hs) {
        let gate = cx.gate_requirement(mailprobe_core::Protocol::Smtp, hs);
        cx.report(base(RequirementResult::skip(LOGIN, &gate, why)));
        quit(cx, creds, ep, &mut client).await;
        return;
    }
    if !after.offers_auth() {
        cx.report(base(RequirementResult::fail(
            LOGIN,
            "the server offers no AUTH after TLS, so the CRM cannot log in to send",
            remedies::NO_AUTH,
        )));
        quit(cx, creds, ep, &mut client).await;
        return;
    }
    let client_mechanisms = cx.target.profile.client.sasl_mechanisms.clone();
    let Some(mechanism) = Mechanism::choose_in_order(&mechanisms, &client_mechanisms) else {
        cx.report(base(
            RequirementResult::fail(
                LOGIN,
                format!(
                    "the server offers AUTH {} after TLS, but none of the mechanisms the CRM's client uses ({})",
                    mechanisms.join(" "),
                    client_mechanisms.join(", ")
                ),
                remedies::enable_mechanisms(&client_mechanisms),
            )
            .with("mechanisms_offered", mechanisms.clone()),
        ));
        quit(cx, creds, ep, &mut client).await;
        return;
    };
    // A server delays a failed AUTH on purpose (Postfix's error sleep, Dovecot's
    // auth_failure_delay): the reply is waited for until the check's deadline.
    let wait = cx.remaining();
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
            .with("mechanism_used", mechanism.name())
            .with("mechanisms_offered", mechanisms.clone())
            .with("user", creds.user.clone())
    };
    match reply {
        Err(e) => cx.report(base(error_result(e, ep))),
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
                    resumed: false,
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

/// The result of an AUTH the server answered with something other than 235: the enhanced
/// status code (RFC 3463) names the reason where the server sent one, the reply code otherwise;
/// a 4xx refusal is said to be temporary.
fn auth_refused(r: &SmtpReply, text: &str) -> RequirementResult {
    let enhanced = crate::refusal::enhanced_status(r);
    let temporary = (400..500).contains(&r.code);
    if let Some(m) = enhanced.as_deref().and_then(crate::refusal::meaning) {
        let how = if temporary {
            "temporarily refused"
        } else {
            "refused"
        };
        return RequirementResult::fail(
            LOGIN,
            format!("the server {how} the login ({}): {text}", m.what),
            m.remedy,
        )
        .with("enhanced_status", enhanced)
        .with("temporary", temporary);
    }
    let (summary, remedy) = match r.code {
        535 => (
            format!("the server refused the credentials: {text}"),
            remedies::REFUSED.to_string(),
        ),
        534 | 538 => (
            format!("the server refused the mechanism: {text}"),
            remedies::NO_MECHANISM.to_string(),
        ),
        454 | 421 | 451 => (
            format!("the server could not authenticate (a temporary failure): {text}"),
            remedies::AUTH_TEMPORARY.to_string(),
        ),
        _ if temporary => (
            format!("the server temporarily refused AUTH: {text}"),
            remedies::AUTH_TEMPORARY.to_string(),
        ),
        _ => (
            format!("AUTH was not accepted: {text}"),
            remedies::REFUSED.to_string(),
        ),
    };
    RequirementResult::fail(LOGIN, summary, remedy)
        .with("enhanced_status", enhanced)
        .with("temporary", temporary)
}

/// The failing `smtp.login` of a session that broke before AUTH could complete.
pub(crate) fn error_result(e: NetError, ep: &Endpoint) -> RequirementResult {
    RequirementResult::fail(
        LOGIN,
        format!("the SMTP session failed: {e}"),
        remedies::for_error(&e, ep),
    )
    .with_error(&e)
}
