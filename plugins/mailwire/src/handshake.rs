//! The first TLS handshake with each port, shared: the imap and smtp plugins record theirs, and
//! the tls and certificate plugins reuse it instead of connecting again. When no plugin made one
//! yet, [`shared`] makes it (implicit TLS, or the protocol's STARTTLS preamble first).

use std::collections::BTreeMap;

use mailprobe_core::context::{NetErrorView, StepTimer};
use mailprobe_core::error::ErrorType;
use mailprobe_core::session::OpenParams;
use mailprobe_core::tls::{self, TlsConn, TlsEngine};
use mailprobe_core::{Endpoint, Handshake, NetError, Protocol, RunContext, Security, serde_fact};
use serde::Serialize;

use crate::{imap, smtp};

/// The first handshake made with each port of the run, successful or not.
#[derive(Debug, Default, Serialize)]
pub struct Handshakes(pub BTreeMap<Protocol, Result<Handshake, NetErrorView>>);
serde_fact!(Handshakes, "handshake");

/// Records a handshake as the `tls_handshake` step and keeps the first one of its port.
pub fn note(
    cx: &mut RunContext,
    timer: StepTimer,
    endpoint: &Endpoint,
    outcome: &Result<Handshake, NetError>,
) {
    cx.record_handshake(timer, endpoint, outcome);
    let first = match outcome {
        Ok(h) => Ok(h.clone()),
        Err(e) => Err(NetErrorView::from(e).at("tls_handshake")),
    };
    keep(cx, endpoint.protocol, first);
}

/// Keeps `outcome` as the port's handshake unless one is already there: a failure before the
/// handshake (the connection, the preamble) tells the other plugins not to try again.
pub fn keep(cx: &mut RunContext, protocol: Protocol, outcome: Result<Handshake, NetErrorView>) {
    cx.facts
        .entry::<Handshakes>()
        .0
        .entry(protocol)
        .or_insert(outcome);
}

/// Makes a successful handshake the port's handshake in place of whatever was kept: the legacy
/// engine's, after rustls failed with a server it cannot speak to.
pub fn replace(cx: &mut RunContext, protocol: Protocol, handshake: Handshake) {
    cx.facts
        .entry::<Handshakes>()
        .0
        .insert(protocol, Ok(handshake));
}

/// The port's first handshake, if one was made.
pub fn first(cx: &RunContext, protocol: Protocol) -> Option<&Result<Handshake, NetErrorView>> {
    cx.facts.get::<Handshakes>()?.0.get(&protocol)
}

/// What a session opener needs for another session like the run's first with `protocol`'s
/// port: pinned to that handshake's leaf certificate (checked before any credential is sent)
/// and made with the same TLS engine.
pub fn open_params(cx: &RunContext, protocol: Protocol) -> OpenParams {
    let mut params = cx.open_params(protocol);
    if let Some(Ok(h)) = first(cx, protocol) {
        params.pinned_leaf = h.chain.first().cloned();
        params.engine = h.engine;
    }
    params
}

/// The handshake with a port, made once per run: the first one any plugin made, else a new one
/// (implicit TLS or STARTTLS as the endpoint says).
pub async fn shared(cx: &mut RunContext, protocol: Protocol) -> Result<Handshake, NetErrorView> {
    if let Some(h) = first(cx, protocol) {
        return h.clone();
    }
    let Some(endpoint) = cx.target.endpoint(protocol).cloned() else {
        return Err(NetErrorView::new(
            ErrorType::NotConfigured,
            format!("no {protocol} server configured"),
        ));
    };
    let conn = match cx.connect(&endpoint).await {
        Ok(c) => c,
        Err(e) => {
            let view = NetErrorView::from(&e).at("connect");
            keep(cx, protocol, Err(view.clone()));
            return Err(view);
        }
    };
    let conn = if endpoint.security == Security::Starttls {
        let wait = cx.io_timeout();
        let upgraded = cx
            .step("starttls", Some(&endpoint), preamble(protocol, conn, wait))
            .await;
        match upgraded {
            Ok(c) => c,
            Err(e) => {
                let view = NetErrorView::from(&e).at("starttls");
                keep(cx, protocol, Err(view.clone()));
                return Err(view);
            }
        }
    } else {
        conn
    };
    let _ = with_rustls(cx, &endpoint, conn).await;
    first(cx, protocol)
        .cloned()
        .unwrap_or_else(|| Err(NetErrorView::from(&NetError::Io("no handshake".into()))))
}

/// The run's rustls handshake with a port over `stream` (resuming the run's session with it
/// where the server allows), recorded by [`note`].
pub async fn with_rustls<S>(
    cx: &mut RunContext,
    ep: &Endpoint,
    stream: S,
) -> Result<(TlsConn<S>, Handshake), NetError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let timer = StepTimer::start();
    let sessions = cx.tls_sessions(ep.protocol);
    let out = tls::connect(
        stream,
        &ep.host,
        &cx.trust,
        &sessions,
        cx.io_timeout(),
        TlsEngine::Rustls,
    )
    .await;
    let view = match &out {
        Ok((_, h)) => Ok(h.clone()),
        Err(e) => Err(e.clone()),
    };
    note(cx, timer, ep, &view);
    out
}

/// The protocol's plain-text preamble up to the TLS handshake.
pub async fn preamble<S>(
    protocol: Protocol,
    stream: S,
    wait: std::time::Duration,
) -> Result<S, NetError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match protocol {
        Protocol::Imap => imap::starttls(stream, wait).await.map(|(s, _)| s),
        Protocol::Smtp => smtp::starttls(stream, &smtp::ehlo_name(), wait)
            .await
            .map(|(s, _)| s),
    }
}

/// The chain a port presents, read with a handshake of current practice (TLS 1.2 and 1.3) when
/// the profile's client could not complete its own (a server that speaks only TLS 1.3 to a
/// TLS 1.2 client): the certificate is still the server's, and its name, trust and expiry are
/// still worth reporting. No credential ever goes over this session; it is closed at once.
pub async fn chain_for_inspection(
    cx: &mut RunContext,
    protocol: Protocol,
) -> Result<Vec<Vec<u8>>, NetErrorView> {
    let Some(endpoint) = cx.target.endpoint(protocol).cloned() else {
        return Err(NetErrorView::new(
            ErrorType::NotConfigured,
            format!("no {protocol} server configured"),
        ));
    };
    let conn = cx
        .connect(&endpoint)
        .await
        .map_err(|e| NetErrorView::from(&e).at("connect"))?;
    let wait = cx.io_timeout();
    let conn = if endpoint.security == Security::Starttls {
        cx.step("starttls", Some(&endpoint), preamble(protocol, conn, wait))
            .await
            .map_err(|e| NetErrorView::from(&e).at("starttls"))?
    } else {
        conn
    };
    let inspect = tls::Trust {
        roots: cx.trust.roots.clone(),
        client: tls::ClientPolicy::current_practice(),
    };
    let host = endpoint.host.clone();
    let out = cx
        .step(
            "tls_handshake",
            Some(&endpoint),
            tls::handshake(conn, &host, &inspect, wait),
        )
        .await;
    match out {
        Ok((_, h)) if !h.chain.is_empty() => Ok(h.chain),
        Ok(_) => Err(
            NetErrorView::new(ErrorType::NoCertificate, "the server sent no certificate")
                .at("tls_handshake"),
        ),
        Err(e) => Err(NetErrorView::from(&e).at("tls_handshake")),
    }
}
