//! `imap.encryption`: connect, read the greeting and capabilities, and establish TLS (implicit,
//! or STARTTLS), recording each exchange as a step and what the server showed in [`Seen`].
//! A server whose rustls handshake fails is asked once more with a raw ClientHello; one that
//! speaks only a dialect rustls lacks (TLS ≤ 1.1, TLS 1.2 CBC/RSA suites; the CRM speaks them)
//! gets the handshake again with the legacy engine (`mailprobe_mailwire::legacy`), never a fail.

use mailprobe_core::net::Conn;
use mailprobe_core::tls::TlsConn;
use mailprobe_core::{Endpoint, Handshake, NetError, RequirementResult, RunContext, Security};
use mailprobe_mailwire::handshake;
use mailprobe_mailwire::legacy::{self, Fallback, LegacyDialect};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::wire::{self, Status, StatusLine, Wire};
use crate::{ENCRYPTION, Seen, Stop, has, remedies};

/// The failing `imap.encryption` result of an error at `stage`.
pub(crate) fn fail(ep: &Endpoint, seen: &Seen, stage: &str, e: &NetError) -> RequirementResult {
    let remedy = match e {
        NetError::StarttlsNotOffered => remedies::enable_starttls(ep.port),
        NetError::Tls(_) | NetError::Closed(_) | NetError::Reset if stage == "tls_handshake" => {
            remedies::HANDSHAKE_FAILED.to_string()
        }
        // Silence before a STARTTLS greeting is what an implicit-TLS port looks like.
        NetError::Timeout { .. } if stage == "greeting" && ep.security == Security::Starttls => {
            remedies::no_greeting(ep.port)
        }
        _ => remedies::NO_TLS.to_string(),
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
        .with_error(e);
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

/// The TLS handshake, shared with the plugins after this one. When rustls fails and the raw
/// probe shows a server it cannot speak to (TLS ≤ 1.1, or TLS 1.2 with suites it lacks), the
/// handshake is redone with the legacy engine over a fresh connection; without that engine (or
/// when it fails too) TLS is there but the probe cannot go on: see [`legacy_stop`].
async fn establish(
    cx: &mut RunContext,
    ep: &Endpoint,
    conn: Conn,
    seen: &Seen,
) -> Result<(TlsConn<Conn>, Handshake), Stop> {
    let e = match handshake::with_rustls(cx, ep, conn).await {
        Ok(x) => return Ok(x),
        Err(e) => e,
    };
    if !matches!(e, NetError::Tls(_) | NetError::Closed(_) | NetError::Reset) {
        return Err(Stop::Encryption(fail(ep, seen, "tls_handshake", &e)));
    }
    match legacy::fallback(cx, ep).await {
        Fallback::Redone(conn, hs) => Ok((conn, hs)),
        Fallback::NotLegacy => Err(Stop::Encryption(fail(ep, seen, "tls_handshake", &e))),
        Fallback::Unspoken { dialect, limit } => {
            Err(Stop::Encryption(legacy_stop(ep, &dialect, &e, limit)))
        }
    }
}

/// A server that speaks TLS, but only in a dialect the probe could not complete: encryption
/// passes (the CRM's client speaks it; `imap.tls_versions` judges the version), and `limit`
/// (the probe's own limit) is what the requirements behind the handshake are left unverified
/// with.
fn legacy_stop(
    ep: &Endpoint,
    dialect: &LegacyDialect,
    e: &NetError,
    limit: String,
) -> RequirementResult {
    RequirementResult::pass(
        ENCRYPTION,
        format!(
            "the server offers TLS, but {} ({e}), which the CRM accepts (see imap.tls_versions)",
            dialect.describe()
        ),
    )
    .with("security", ep.security.as_str())
    .with("legacy_tls_only", true)
    .with("tls_version", dialect.version.name())
    .with("cipher", dialect.cipher.clone())
    .with("error", e.to_string())
    .with("dialect", dialect.describe())
    .with("limit", limit)
}

/// Reads the greeting as a `greeting` step; a `* BYE` greeting is a closed session.
pub(crate) async fn greeting<S>(
    cx: &mut RunContext,
    ep: &Endpoint,
    wire: &mut Wire<S>,
    seen: &mut Seen,
) -> Result<StatusLine, NetError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let wait = cx.io_timeout();
    let out = cx
        .step("greeting", Some(ep), wire::read_greeting(wire, wait))
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
pub(crate) async fn capability<S>(
    cx: &mut RunContext,
    ep: &Endpoint,
    wire: &mut Wire<S>,
) -> Result<Vec<String>, NetError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let wait = cx.io_timeout();
    cx.step("capability", Some(ep), wire::ask_capabilities(wire, wait))
        .await
}

/// TLS from the first byte; the greeting and capabilities come over it.
pub(crate) async fn implicit_tls(
    cx: &mut RunContext,
    ep: &Endpoint,
    conn: Conn,
    seen: &mut Seen,
) -> Result<(Wire<TlsConn<Conn>>, Handshake), Stop> {
    let (stream, hs) = establish(cx, ep, conn, seen).await?;
    report_pass(cx, ep, &hs, seen);
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

/// A plain session upgraded with STARTTLS; the capabilities are asked again over TLS.
pub(crate) async fn starttls(
    cx: &mut RunContext,
    ep: &Endpoint,
    conn: Conn,
    seen: &mut Seen,
) -> Result<(Wire<TlsConn<Conn>>, Handshake), Stop> {
    let mut plain = Wire::buffered(conn);
    let stop = |seen: &Seen, stage: &str, e: NetError| Stop::Encryption(fail(ep, seen, stage, &e));
    let g = match greeting(cx, ep, &mut plain, seen).await {
        Ok(g) => g,
        Err(e) => return Err(stop(seen, "greeting", e)),
    };
    let caps = match g.capabilities() {
        Some(c) => c,
        None => match capability(cx, ep, &mut plain).await {
            Ok(c) => c,
            Err(e) => return Err(stop(seen, "capability", e)),
        },
    };
    seen.caps_before_tls = Some(caps.clone());
    if !has(&caps, "STARTTLS") {
        return Err(stop(seen, "capability", NetError::StarttlsNotOffered));
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
        Err(e) => return Err(stop(seen, "starttls", e)),
    }
    let plain = match plain.into_checked() {
        Ok(p) => p,
        Err(e) => return Err(stop(seen, "starttls", e)),
    };
    let (stream, hs) = establish(cx, ep, plain, seen).await?;
    report_pass(cx, ep, &hs, seen);
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

fn report_pass(cx: &mut RunContext, ep: &Endpoint, hs: &Handshake, seen: &Seen) {
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
    .with("tls_engine", hs.engine.as_str())
    .with("certificate_verified", hs.verified);
    if let Some(caps) = &seen.caps_before_tls {
        r = r
            .with("starttls_offered", has(caps, "STARTTLS"))
            .with("capabilities_before_tls", json!(caps));
    }
    cx.report(r);
}
