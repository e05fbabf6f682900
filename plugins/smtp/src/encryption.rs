//! `smtp.encryption`: connect, greet, EHLO, and establish TLS (implicit, or STARTTLS),
//! recording each exchange as a step and what the server showed in [`Findings`]. AUTH offered
//! before STARTTLS is a warning: it invites passwords in clear.

use mailprobe_core::net::Conn;
use mailprobe_core::{
    Endpoint, Handshake, NetError, RequirementResult, RunContext, Security, TlsVersion,
};
use mailprobe_mailwire::handshake;
use mailprobe_mailwire::legacy::{self, Fallback};
use mailprobe_mailwire::smtp::{Ehlo, SmtpClient, SmtpReply, ehlo_name, reply_text};
use serde_json::Value;

use crate::{Creds, ENCRYPTION, Findings, NoTls, TlsClient, quit, remedies, step};

/// After a failed rustls handshake: a server that speaks only a dialect rustls lacks gets the
/// handshake again with the legacy engine (a fresh connection); `Err` is the failure to report
/// when it does not speak one.
async fn fallback(
    cx: &mut RunContext,
    ep: &Endpoint,
    e: NetError,
) -> Result<(TlsClient, Handshake), NoTls> {
    match legacy::fallback(cx, ep).await {
        Fallback::Redone(conn, hs) => Ok((SmtpClient::new(conn), hs)),
        Fallback::NotLegacy => Err(NoTls::Error(e)),
        Fallback::Unspoken { dialect, limit } => Err(NoTls::Legacy {
            dialect,
            error: e,
            limit,
        }),
    }
}

pub(crate) fn report(cx: &mut RunContext, f: &Findings) {
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
            remedies::AUTH_BEFORE_TLS,
        ),
        None => RequirementResult::pass(ENCRYPTION, format!("{how} ({cipher})")),
    };
    cx.report(f.result(r));
}

pub(crate) enum Ehlofail {
    Error(NetError),
    /// EHLO refused but HELO accepted: the server has no ESMTP. Carries HELO's reply.
    NoEsmtp(String),
}

/// EHLO, falling back to HELO only to tell a server without ESMTP apart.
pub(crate) async fn ehlo_or_helo<S>(
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
pub(crate) fn greeting_ok(
    f: &mut Findings,
    greeting: Result<SmtpReply, NetError>,
) -> Result<(), NetError> {
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

pub(crate) async fn implicit_tls(
    cx: &mut RunContext,
    ep: &Endpoint,
    conn: Conn,
    f: &mut Findings,
) -> Result<(TlsClient, Handshake), NoTls> {
    let e = match handshake::with_rustls(cx, ep, conn).await {
        Ok((tls, hs)) => return Ok((SmtpClient::new(tls), hs)),
        Err(e) if plaintext_on_tls_port(&e) => {
            let remedy = remedies::plaintext_on_tls_port(ep.port);
            return Err(NoTls::Failed(f.fail_error(
                "the TLS handshake failed",
                &e,
                remedy,
            )));
        }
        Err(e) => e,
    };
    match legacy_candidate(cx, ep, e).await {
        Err(NoTls::Error(e)) => {
            let remedy = remedies::for_error(&e, ep);
            Err(NoTls::Failed(f.fail_error(
                "the TLS handshake failed",
                &e,
                remedy,
            )))
        }
        other => other,
    }
}

pub(crate) async fn starttls(
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
            NetError::Timeout { .. } => remedies::no_greeting(&e, ep),
            _ => remedies::for_error(&e, ep),
        };
        return Err(NoTls::Failed(f.fail_error("no SMTP greeting", &e, remedy)));
    }
    let before = match ehlo_or_helo(cx, creds, ep, &mut client, f).await {
        Ok(e) => e,
        Err(Ehlofail::Error(e)) => {
            let remedy = remedies::for_error(&e, ep);
            return Err(NoTls::Failed(f.fail_error("EHLO failed", &e, remedy)));
        }
        Err(Ehlofail::NoEsmtp(text)) => {
            quit(cx, creds, ep, &mut client).await;
            return Err(NoTls::Failed(
                f.fail(
                    "the server does not speak ESMTP (EHLO refused, HELO accepted), so it cannot offer STARTTLS",
                    remedies::NO_ESMTP,
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
        let mut remedy = remedies::NO_STARTTLS.to_string();
        if before.offers_auth() {
            summary.push_str(", yet offers AUTH in clear text");
            remedy = format!("{remedy} {}", remedies::AUTH_BEFORE_TLS);
        }
        return Err(NoTls::Failed(f.fail(summary, remedy)));
    }
    let wait = cx.io_timeout();
    let reply = match step(cx, creds, "starttls", ep, client.command("STARTTLS", wait)).await {
        Ok(r) => r,
        Err(e) => {
            let remedy = remedies::for_error(&e, ep);
            return Err(NoTls::Failed(f.fail_error("STARTTLS failed", &e, remedy)));
        }
    };
    f.set("starttls_reply", reply_text(&reply));
    if reply.code != 220 {
        let text = reply_text(&reply);
        quit(cx, creds, ep, &mut client).await;
        return Err(NoTls::Failed(f.fail(
            format!("the server advertises STARTTLS but refused it: {text}"),
            remedies::STARTTLS_REFUSED,
        )));
    }
    let stream = match client.into_inner() {
        Ok(s) => s,
        Err(e) => {
            let remedy = remedies::for_error(&e, ep);
            return Err(NoTls::Failed(f.fail_error("STARTTLS failed", &e, remedy)));
        }
    };
    let e = match handshake::with_rustls(cx, ep, stream).await {
        Ok((tls, hs)) => return Ok((SmtpClient::new(tls), hs)),
        Err(e) => e,
    };
    match legacy_candidate(cx, ep, e).await {
        Err(NoTls::Error(e)) => {
            let remedy = remedies::for_error(&e, ep);
            Err(NoTls::Failed(f.fail_error(
                "the TLS handshake after STARTTLS failed",
                &e,
                remedy,
            )))
        }
        other => other,
    }
}

/// A failed handshake worth the legacy probe (the server broke it off, or alerted): see
/// [`fallback`]. Any other error is returned as it is.
async fn legacy_candidate(
    cx: &mut RunContext,
    ep: &Endpoint,
    e: NetError,
) -> Result<(TlsClient, Handshake), NoTls> {
    match e {
        NetError::Tls(_) | NetError::Closed(_) | NetError::Reset => fallback(cx, ep, e).await,
        other => Err(NoTls::Error(other)),
    }
}

/// A TLS client that meets a plain-text server sees a record that is not TLS.
fn plaintext_on_tls_port(e: &NetError) -> bool {
    matches!(e, NetError::Tls(m) if m.contains("corrupt message") || m.contains("InvalidContentType"))
}
