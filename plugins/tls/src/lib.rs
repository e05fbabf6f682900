//! The `tls` check: which protocol versions (SSLv3 to TLS 1.3) the IMAP and SMTP ports accept,
//! found with one raw ClientHello per version (rustls speaks only TLS 1.2 and 1.3), after the
//! protocol's STARTTLS preamble where the port needs it. The probes of a run go out at once,
//! within the run's share of the server's connection budget.
//!
//! The story of a run: [`ports_to_probe`] drops the ports that cannot be probed (reporting why),
//! [`probes::run_all`] sends every ClientHello at once, and [`judge::judge`] turns each port's
//! answers into its requirement and shares them as [`TlsVersions`] and [`LegacyChain`].
#![forbid(unsafe_code)]

pub mod judge;
pub mod probes;
pub mod remedies;

pub use mailprobe_tlswire::{hello, probe};

use std::collections::BTreeMap;

use mailprobe_core::plugin::{BoxFuture, PluginError};
use mailprobe_core::{
    CheckPlugin, Endpoint, Measure, PluginInfo, Protocol, RequirementResult, RequirementSpec,
    RunContext, Status, TlsVersion, serde_fact,
};
use mailprobe_mailwire::handshake;
use serde::Serialize;

pub const NAME: &str = "tls";

#[derive(Debug, Default)]
pub struct Tls;

/// The versions each port accepts, for the plugins after this one.
#[derive(Debug, Default, Serialize)]
pub struct TlsVersions(pub BTreeMap<Protocol, BTreeMap<TlsVersion, bool>>);
serde_fact!(TlsVersions, "tls_versions");

/// A certificate chain read in clear from a TLS ≤ 1.2 probe (leaf first, DER), for servers the
/// probe's TLS library cannot complete a handshake with.
#[derive(Debug, Default)]
pub struct LegacyChain(pub BTreeMap<Protocol, Vec<Vec<u8>>>);

impl mailprobe_core::Fact for LegacyChain {
    const KEY: &'static str = "legacy_chain";
    fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

/// The requirement of one protocol's port.
pub fn tls_versions(p: Protocol) -> String {
    p.requirement("tls_versions")
}

/// The plugin, as the binary registers it.
pub fn plugin() -> std::sync::Arc<dyn CheckPlugin> {
    std::sync::Arc::new(Tls)
}

impl CheckPlugin for Tls {
    fn info(&self) -> PluginInfo {
        let spec = |p: Protocol| {
            RequirementSpec::new(
                tls_versions(p),
                "the server accepts a TLS version the profile's client speaks",
            )
            .after(&[p.requirement("reachable")])
            .on(p)
            .passes("the server accepts at least one version the profile's client speaks (hubspot: SSLv3, TLS 1.0, 1.1, 1.2)")
            .warns("the only versions it shares with the client are weak (SSLv3, TLS 1.0, 1.1)")
            .fails("it accepts only versions outside the client's set (e.g. TLS 1.3 only)")
            .evidence("versions", "each version (SSLv3 … TLSv1.3) mapped to whether the server accepts it")
            .evidence("ciphers", "the suite the server picked for each accepted version")
            .measures(Measure::TlsVersions {
                key: "versions".into(),
            })
        };
        PluginInfo::builtin(NAME, vec![spec(Protocol::Imap), spec(Protocol::Smtp)])
            .depends_on(&["reachability"])
            // Their handshakes and encryption results are reused when they ran. After connlimit,
            // which closes the sessions imap and smtp held: the probes then have the run's
            // whole share of each server's connections, not what the held sessions left.
            .runs_after(&["imap", "smtp", "connlimit"])
    }

    fn run<'a>(&'a self, cx: &'a mut RunContext) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(async move {
            let endpoints = ports_to_probe(cx).await;
            let known: Vec<Option<probes::Answer>> = endpoints
                .iter()
                .map(|ep| probes::known_tls13(cx, ep.protocol))
                .collect();
            let answers = probes::run_all(cx, &endpoints, &known).await;
            for ((ep, mut probes), known) in endpoints.iter().zip(answers).zip(known) {
                probes.extend(known);
                probes.sort_by_key(|(v, _)| *v);
                judge::judge(cx, ep, probes).await;
            }
            Ok(())
        })
    }
}

/// The configured ports worth probing. The others get their result here: skipped after a
/// failed prerequisite, or after `*.encryption` found no TLS at all, or failed when not even
/// the connection or the STARTTLS preamble works (five probes would only fail the same way).
async fn ports_to_probe(cx: &mut RunContext) -> Vec<Endpoint> {
    let mut endpoints = Vec::new();
    for ep in cx.target.endpoints().cloned().collect::<Vec<_>>() {
        let id = tls_versions(ep.protocol);
        if cx.skip_if_blocked(&id) {
            continue;
        }
        let enc = ep.protocol.requirement("encryption");
        // The client's own handshake refused (e.g. a TLS 1.3-only server and a TLS 1.2 client):
        // the server speaks TLS, and which versions it accepts is exactly what to report.
        let refused_in_tls = matches!(
            handshake::first(cx, ep.protocol),
            Some(Err(e)) if e.step.as_deref() == Some("tls_handshake")
        );
        if cx.status(&enc) == Some(Status::Fail) && !refused_in_tls {
            cx.report(
                RequirementResult::skip(&id, &enc, format!("not evaluated: {enc} failed"))
                    .with("versions", judge::unknown_versions()),
            );
            continue;
        }
        match handshake::shared(cx, ep.protocol).await {
            Err(e) if matches!(e.step.as_deref(), Some("connect" | "starttls")) => {
                judge::report_unprobeable(cx, &ep, &e);
            }
            _ => endpoints.push(ep),
        }
    }
    endpoints
}
