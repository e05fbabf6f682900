//! The `tls` check: which protocol versions (SSLv3 to TLS 1.3) the IMAP and SMTP ports accept,
//! found with one raw ClientHello per version (rustls speaks only TLS 1.2 and 1.3), after the
//! protocol's STARTTLS preamble where the port needs it. The probes of a run go out at once,
//! within the run's share of the server's connection budget.
#![forbid(unsafe_code)]

pub use mailprobe_tlswire::{hello, probe};

use std::collections::BTreeMap;

use mailprobe_core::context::{NetErrorView, StepTimer};
use mailprobe_core::plugin::{BoxFuture, PluginError};
use mailprobe_core::{
    CheckPlugin, Endpoint, NetError, PluginInfo, Protocol, RequirementResult, RunContext, Security,
    Status, TlsVersion, net, starttls,
};
use serde_json::{Map, Value, json};

use probe::ProbeOutcome;

pub const NAME: &str = "tls";

#[derive(Debug, Default)]
pub struct Tls;

impl CheckPlugin for Tls {
    fn info(&self) -> PluginInfo {
        PluginInfo::builtin(
            NAME,
            &["imap.tls_versions", "smtp.tls_versions"],
            &["reachability"],
        )
    }

    fn run<'a>(&'a self, cx: &'a mut RunContext) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(async move {
            let mut endpoints: Vec<Endpoint> = Vec::new();
            for ep in cx.target.endpoints().cloned().collect::<Vec<_>>() {
                let id = ep.protocol.requirement("tls_versions");
                if cx.skip_if_blocked(&id) {
                    continue;
                }
                // No TLS at all on this port (the imap/smtp plugin found out): nothing to probe.
                let enc = ep.protocol.requirement("encryption");
                if cx.status(&enc) == Some(Status::Fail) {
                    cx.report(RequirementResult::skip(
                        &id,
                        &enc,
                        format!("not evaluated: {enc} failed"),
                    ));
                    continue;
                }
                // The shared handshake first: when even the connection or the STARTTLS
                // preamble fails, five probes would only fail the same way, five times slower.
                match cx.tls_handshake(ep.protocol).await {
                    Err(e) if matches!(e.step.as_deref(), Some("connect" | "starttls")) => {
                        report_unprobeable(cx, &ep, &e);
                    }
                    _ => endpoints.push(ep),
                }
            }
            // Every probe of every port at once; each waits for a slot of the run's share of
            // its server's budget.
            let io = cx.io_timeout();
            let wait = cx.remaining();
            let budgets = cx.budgets.clone();
            let mut jobs = Vec::new();
            for ep in &endpoints {
                for version in TlsVersion::ALL {
                    let slot = cx.slot(ep.protocol, wait);
                    let budgets = budgets.clone();
                    let ep = ep.clone();
                    jobs.push(async move {
                        let timer = StepTimer::start();
                        let out = async {
                            let slot = slot.await?;
                            let conn = net::connect(&ep, &budgets, Some(slot), io).await?;
                            probe_one(conn, &ep, version, io).await
                        }
                        .await;
                        (ep, version, timer, out)
                    });
                }
            }
            let results = futures::future::join_all(jobs).await;
            for ep in &endpoints {
                let mine: Vec<_> = results
                    .iter()
                    .filter(|(e, ..)| e.protocol == ep.protocol)
                    .collect();
                for (e, v, timer, out) in &mine {
                    let mut attrs = BTreeMap::new();
                    attrs.insert("tls.protocol.version".into(), v.semconv().to_string());
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
                        *timer,
                        &format!("tls_probe {}", v.name()),
                        Some(e),
                        &outcome,
                        attrs,
                    );
                }
                let probes: Vec<(TlsVersion, Result<ProbeOutcome, NetError>)> = mine
                    .into_iter()
                    .map(|(_, v, _, o)| (*v, o.clone()))
                    .collect();
                judge(cx, ep, probes).await;
            }
            Ok(())
        })
    }
}

/// Reports a port on which no ClientHello could be sent at all.
fn report_unprobeable(cx: &mut RunContext, ep: &Endpoint, e: &NetErrorView) {
    let id = ep.protocol.requirement("tls_versions");
    let (summary, remedy) = match (e.error_type.as_str(), ep.security) {
        ("starttls_not_offered", _) => (
            "STARTTLS is not offered, so no TLS version can be negotiated".to_string(),
            format!(
                "Enable STARTTLS on {} (or use the implicit-TLS port).",
                ep.authority()
            ),
        ),
        ("timeout", Security::Starttls) => (
            format!(
                "the server sent no {} greeting: {}",
                ep.protocol.label(),
                e.message
            ),
            format!(
                "If port {} expects TLS from the first byte (implicit TLS), use --{}-security tls (or {}_security: tls); otherwise check the server.",
                ep.port,
                ep.protocol.prefix(),
                ep.protocol.prefix()
            ),
        ),
        _ => (
            format!("no TLS version could be probed: {}", e.message),
            format!(
                "Check that {} speaks TLS ({}).",
                ep.authority(),
                ep.security.as_str()
            ),
        ),
    };
    cx.report(
        RequirementResult::fail(&id, summary, remedy)
            .with("error", e.message.clone())
            .with("error_type", e.error_type.clone()),
    );
}

/// Connects, does the STARTTLS preamble where needed, and sends one ClientHello.
async fn probe_one(
    conn: net::Conn,
    ep: &Endpoint,
    version: TlsVersion,
    io: std::time::Duration,
) -> Result<ProbeOutcome, NetError> {
    let mut stream = match (ep.security, ep.protocol) {
        (Security::Tls, _) => conn,
        (Security::Starttls, Protocol::Imap) => starttls::imap_starttls(conn, io).await?.0,
        (Security::Starttls, Protocol::Smtp) => {
            starttls::smtp_starttls(conn, &starttls::ehlo_name(), io)
                .await?
                .0
        }
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

fn list(vs: &[TlsVersion]) -> String {
    vs.iter().map(|v| v.human()).collect::<Vec<_>>().join(", ")
}

fn remedy_for(ep: &Endpoint, min: &str) -> String {
    match ep.protocol {
        Protocol::Imap => format!(
            "Enable {min} on the IMAP server: Dovecot `ssl_min_protocol = TLSv1.2` (and no ssl_max_protocol below it); Courier `TLS_PROTOCOL`/`TLS_PRIORITY`; Exchange: enable TLS 1.2 in SCHANNEL."
        ),
        Protocol::Smtp => format!(
            "Enable {min} on the SMTP server: Postfix `smtpd_tls_protocols = >=TLSv1.2` and `smtpd_tls_mandatory_protocols = >=TLSv1.2`; Exchange: enable TLS 1.2 in SCHANNEL."
        ),
    }
}

async fn judge(
    cx: &mut mailprobe_core::RunContext,
    ep: &Endpoint,
    probes: Vec<(TlsVersion, Result<ProbeOutcome, NetError>)>,
) {
    let id = ep.protocol.requirement("tls_versions");
    let mut versions = Map::new();
    let mut ciphers = Map::new();
    let mut errors = Map::new();
    let mut refusals = Map::new();
    let mut accepted = Vec::new();
    let mut legacy_chain: Option<Vec<Vec<u8>>> = None;
    for (v, out) in &probes {
        match out {
            Ok(ProbeOutcome::Accepted {
                cipher,
                cipher_name,
                certificates,
                ..
            }) => {
                versions.insert(v.name().into(), Value::Bool(true));
                ciphers.insert(
                    v.name().into(),
                    Value::String(
                        cipher_name
                            .clone()
                            .unwrap_or_else(|| format!("0x{cipher:04x}")),
                    ),
                );
                accepted.push(*v);
                if !certificates.is_empty() {
                    legacy_chain = Some(certificates.clone());
                }
            }
            Ok(ProbeOutcome::Refused { reason }) => {
                versions.insert(v.name().into(), Value::Bool(false));
                refusals.insert(v.name().into(), Value::String(reason.clone()));
            }
            Err(e) => {
                versions.insert(v.name().into(), Value::Bool(false));
                errors.insert(v.name().into(), Value::String(e.to_string()));
            }
        }
    }
    cx.facts.tls_versions.insert(
        ep.protocol,
        probes
            .iter()
            .map(|(v, _)| (*v, accepted.contains(v)))
            .collect(),
    );
    if let Some(chain) = legacy_chain {
        cx.facts.legacy_chain.insert(ep.protocol, chain);
    }

    // Every probe failed before the server could answer a ClientHello: the preamble or the
    // connection is the problem, not the versions.
    if accepted.is_empty() && refusals.is_empty() {
        let first = probes.iter().find_map(|(_, o)| o.as_ref().err().cloned());
        let (summary, remedy) = match &first {
            Some(NetError::StarttlsNotOffered) => (
                "STARTTLS is not offered, so no TLS version can be negotiated".to_string(),
                format!(
                    "Enable STARTTLS on {} (or use the implicit-TLS port).",
                    ep.authority()
                ),
            ),
            Some(e) => (
                format!("no TLS version could be probed: {e}"),
                format!(
                    "Check that {} speaks TLS ({}).",
                    ep.authority(),
                    ep.security.as_str()
                ),
            ),
            None => (
                "no TLS version could be probed".to_string(),
                "Check the server.".to_string(),
            ),
        };
        let mut r = RequirementResult::fail(&id, summary, remedy)
            .with("versions", Value::Object(versions))
            .with("errors", Value::Object(errors));
        if let Some(e) = first {
            r = r
                .with("error", e.to_string())
                .with("error_type", e.error_type());
        }
        cx.report(r);
        return;
    }

    let rules = cx.target.profile.tls.clone();
    let shared: Vec<TlsVersion> = accepted
        .iter()
        .copied()
        .filter(|v| rules.client_versions.contains(v))
        .collect();
    let accepted_text = if accepted.is_empty() {
        "no version".to_string()
    } else {
        list(&accepted)
    };
    let mut r = if shared.is_empty() {
        RequirementResult::fail(
            &id,
            format!(
                "accepts {accepted_text}, none of which the {} client speaks ({})",
                cx.target.profile.name,
                list(&rules.client_versions)
            ),
            remedy_for(ep, "TLS 1.2"),
        )
    } else if shared.iter().all(|v| rules.weak_versions.contains(v)) {
        RequirementResult::warn(
            &id,
            format!(
                "accepts {accepted_text}; the only versions shared with the client are weak ({})",
                list(&shared)
            ),
            remedy_for(ep, "TLS 1.2"),
        )
    } else {
        RequirementResult::pass(&id, format!("accepts {accepted_text}"))
    };
    r = r
        .with("versions", Value::Object(versions))
        .with("ciphers", Value::Object(ciphers));
    if !refusals.is_empty() {
        r = r.with("refused", Value::Object(refusals));
    }
    if !errors.is_empty() {
        r = r.with("errors", Value::Object(errors));
    }
    match cx.tls_handshake(ep.protocol).await {
        Ok(h) => {
            r = r.with(
                "negotiated",
                json!({"version": h.version.name(), "cipher": h.cipher}),
            )
        }
        Err(e) => r = r.with("negotiated", json!({"error": e.message})),
    }
    cx.report(r);
}
