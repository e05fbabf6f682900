//! Sending the ClientHellos: one connection per version and port, all at once (as many as the
//! run's share of the server's connections allows), each behind the port's STARTTLS preamble
//! where it has one, each recorded as a `tls_probe <version>` step. A version the run's own
//! handshake already proved is not probed again.

use std::collections::BTreeMap;
use std::time::Duration;

use mailprobe_core::context::StepTimer;
use mailprobe_core::{Endpoint, NetError, Protocol, RunContext, Security, TlsVersion, net};
use mailprobe_mailwire::handshake;

use crate::probe::{self, ProbeOutcome};

/// What one version's probe got.
pub type Answer = (TlsVersion, Result<ProbeOutcome, NetError>);

/// The time every probe leaves before the run's deadline, so the plugin can still judge and
/// report the answers: a probe that ran into the deadline would cost the whole `versions` map
/// (the runner would report the plugin as timed out instead).
const JUDGE_MARGIN: Duration = Duration::from_millis(500);

/// What the run's own rustls handshake with a port already proved: it negotiated TLS 1.3, so
/// the port accepts TLS 1.3 and a probe would only repeat it (one connection, and on a STARTTLS
/// port five round trips, fewer). The cipher is the one that handshake got.
pub fn known_tls13(cx: &RunContext, protocol: Protocol) -> Option<Answer> {
    match handshake::first(cx, protocol)? {
        Ok(h) if h.version == TlsVersion::Tls13 => Some((
            TlsVersion::Tls13,
            Ok(ProbeOutcome::Accepted {
                version: TlsVersion::Tls13.wire(),
                cipher: 0,
                cipher_name: Some(h.cipher.clone()),
                certificates: Vec::new(),
            }),
        )),
        _ => None,
    }
}

/// Probes every version on every port at once, but those `known` already (one answer per port,
/// in the order of `endpoints`); returns the probes' answers per port, in the order of
/// `endpoints`. Each probe waits for a slot of the run's share of its server's budget. A probe
/// that got no answer (a timeout, a reset before any record, garbage) is tried once more:
/// an unknown must not pass for a refusal.
pub async fn run_all(
    cx: &mut RunContext,
    endpoints: &[Endpoint],
    known: &[Option<Answer>],
) -> Vec<Vec<Answer>> {
    let all: Vec<(Endpoint, TlsVersion)> = endpoints
        .iter()
        .enumerate()
        .flat_map(|(i, ep)| {
            let skip = known.get(i).and_then(|k| k.as_ref()).map(|(v, _)| *v);
            TlsVersion::ALL
                .into_iter()
                .filter(move |v| Some(*v) != skip)
                .map(move |v| (ep.clone(), v))
        })
        .collect();
    let mut answers = round(cx, all).await;
    let unknown: Vec<(Endpoint, TlsVersion)> = answers
        .iter()
        .filter(|(_, _, out)| out.is_err())
        .map(|(ep, v, _)| (ep.clone(), *v))
        .collect();
    if !unknown.is_empty() && cx.remaining() > 2 * JUDGE_MARGIN {
        for (ep, v, out) in round(cx, unknown).await {
            if let Some(a) = answers
                .iter_mut()
                .find(|(e, w, _)| e.protocol == ep.protocol && *w == v)
            {
                a.2 = out;
            }
        }
    }
    let mut per_port: Vec<Vec<Answer>> = vec![Vec::new(); endpoints.len()];
    for (ep, version, out) in answers {
        if let Some(i) = endpoints.iter().position(|e| e.protocol == ep.protocol) {
            per_port[i].push((version, out));
        }
    }
    per_port
}

/// One probe per (port, version), all at once, each recorded as a step.
async fn round(
    cx: &mut RunContext,
    probes: Vec<(Endpoint, TlsVersion)>,
) -> Vec<(Endpoint, TlsVersion, Result<ProbeOutcome, NetError>)> {
    let io = cx.io_timeout();
    let wait = cx.remaining();
    let margin = JUDGE_MARGIN.min(wait / 4);
    let end = tokio::time::Instant::now() + wait.saturating_sub(margin);
    let jobs: Vec<_> = probes
        .into_iter()
        .map(|(ep, version)| {
            let slot = cx.slot(ep.protocol, wait);
            let budgets = cx.budgets.clone();
            async move {
                let timer = StepTimer::start();
                let began = tokio::time::Instant::now();
                let probe = async {
                    let slot = slot.await?;
                    let conn = net::connect(&ep, &budgets, Some(slot), io).await?;
                    probe_one(conn, &ep, version, io).await
                };
                let out = match tokio::time::timeout_at(end, probe).await {
                    Ok(out) => out,
                    Err(_) => Err(NetError::Timeout {
                        waiting_for:
                            "the server's answer to the ClientHello (the check's deadline was near)"
                                .into(),
                        after: began.elapsed(),
                    }),
                };
                (ep, version, timer, out)
            }
        })
        .collect();
    let results = futures::future::join_all(jobs).await;
    results
        .into_iter()
        .map(|(ep, version, timer, out)| {
            record(cx, &ep, version, timer, &out);
            (ep, version, out)
        })
        .collect()
}

fn record(
    cx: &mut RunContext,
    ep: &Endpoint,
    version: TlsVersion,
    timer: StepTimer,
    out: &Result<ProbeOutcome, NetError>,
) {
    let mut attrs = BTreeMap::new();
    attrs.insert("tls.protocol.version".into(), version.semconv().to_string());
    if let Ok(ProbeOutcome::Accepted {
        cipher_name: Some(c),
        ..
    }) = out
    {
        attrs.insert("tls.cipher".into(), c.clone());
    }
    let outcome: Result<(), NetError> = match out {
        Ok(_) => Ok(()),
        Err(e) => Err(e.clone()),
    };
    cx.record_step(
        timer,
        &format!("tls_probe {}", version.name()),
        Some(ep),
        &outcome,
        attrs,
    );
}

/// Does the STARTTLS preamble where needed and sends one ClientHello.
async fn probe_one(
    conn: net::Conn,
    ep: &Endpoint,
    version: TlsVersion,
    io: Duration,
) -> Result<ProbeOutcome, NetError> {
    let mut stream = match ep.security {
        Security::Tls => conn,
        Security::Starttls => handshake::preamble(ep.protocol, conn, io).await?,
    };
    probe::probe_version(&mut stream, version.wire(), Some(&ep.host), io)
        .await
        .map_err(|e| match e {
            probe::ProbeError::Timeout => NetError::Timeout {
                waiting_for: "the server's answer to the ClientHello".into(),
                after: io,
            },
            probe::ProbeError::Io(e) => NetError::from_io(&e),
            probe::ProbeError::Invalid(s) => NetError::Protocol(s),
        })
}
