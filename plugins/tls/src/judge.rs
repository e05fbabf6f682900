//! Turning a port's probe answers into its `*.tls_versions` result, as the profile's client
//! sees them: pass when the server shares a version with the client, warn when the shared ones
//! are all weak, fail when none is shared.

use mailprobe_core::context::NetErrorView;
use mailprobe_core::{Endpoint, NetError, RequirementResult, RunContext, Security, TlsVersion};
use mailprobe_mailwire::handshake;
use serde_json::{Map, Value, json};

use crate::probe::ProbeOutcome;
use crate::probes::Answer;
use crate::{LegacyChain, TlsVersions, remedies, tls_versions};

/// The answers of one port, sorted into evidence.
#[derive(Default)]
struct Tally {
    versions: Map<String, Value>,
    ciphers: Map<String, Value>,
    errors: Map<String, Value>,
    refusals: Map<String, Value>,
    accepted: Vec<TlsVersion>,
    legacy_chain: Option<Vec<Vec<u8>>>,
}

impl Tally {
    fn of(probes: &[Answer]) -> Tally {
        let mut t = Tally::default();
        for (v, out) in probes {
            let name = v.name().to_string();
            match out {
                Ok(ProbeOutcome::Accepted {
                    cipher,
                    cipher_name,
                    certificates,
                    ..
                }) => {
                    t.versions.insert(name.clone(), Value::Bool(true));
                    let cipher = cipher_name
                        .clone()
                        .unwrap_or_else(|| format!("0x{cipher:04x}"));
                    t.ciphers.insert(name, Value::String(cipher));
                    t.accepted.push(*v);
                    if !certificates.is_empty() {
                        t.legacy_chain = Some(certificates.clone());
                    }
                }
                Ok(ProbeOutcome::Refused { reason }) => {
                    t.versions.insert(name.clone(), Value::Bool(false));
                    t.refusals.insert(name, Value::String(reason.clone()));
                }
                Err(e) => {
                    t.versions.insert(name.clone(), Value::Bool(false));
                    t.errors.insert(name, Value::String(e.to_string()));
                }
            }
        }
        t
    }
}

/// Judges one port and shares what it accepts.
pub async fn judge(cx: &mut RunContext, ep: &Endpoint, probes: Vec<Answer>) {
    let tally = Tally::of(&probes);
    let accepted = probes
        .iter()
        .map(|(v, _)| (*v, tally.accepted.contains(v)))
        .collect();
    cx.facts
        .entry::<TlsVersions>()
        .0
        .insert(ep.protocol, accepted);
    if let Some(chain) = tally.legacy_chain.clone() {
        cx.facts.entry::<LegacyChain>().0.insert(ep.protocol, chain);
    }
    let result = if tally.accepted.is_empty() && tally.refusals.is_empty() {
        // Every probe failed before the server could answer a ClientHello: the preamble or the
        // connection is the problem, not the versions.
        nothing_answered(ep, &probes, tally)
    } else {
        let r = versions_result(cx, ep, tally);
        with_negotiated(cx, ep, r).await
    };
    cx.report(result);
}

fn nothing_answered(ep: &Endpoint, probes: &[Answer], tally: Tally) -> RequirementResult {
    let first = probes.iter().find_map(|(_, o)| o.as_ref().err().cloned());
    let (summary, remedy) = match &first {
        Some(NetError::StarttlsNotOffered) => (
            "STARTTLS is not offered, so no TLS version can be negotiated".to_string(),
            remedies::enable_starttls(ep),
        ),
        Some(e) => (
            format!("no TLS version could be probed: {e}"),
            remedies::check_tls(ep),
        ),
        None => (
            "no TLS version could be probed".to_string(),
            "Check the server.".to_string(),
        ),
    };
    let r = RequirementResult::fail(&tls_versions(ep.protocol), summary, remedy)
        .with("versions", Value::Object(tally.versions))
        .with("errors", Value::Object(tally.errors));
    match first {
        Some(e) => r.with_error(&e),
        None => r,
    }
}

fn list(vs: &[TlsVersion]) -> String {
    vs.iter().map(|v| v.human()).collect::<Vec<_>>().join(", ")
}

fn versions_result(cx: &RunContext, ep: &Endpoint, tally: Tally) -> RequirementResult {
    let id = tls_versions(ep.protocol);
    let profile = &cx.target.profile;
    let rules = &profile.tls;
    let shared: Vec<TlsVersion> = tally
        .accepted
        .iter()
        .copied()
        .filter(|v| rules.client_versions.contains(v))
        .collect();
    let accepted_text = if tally.accepted.is_empty() {
        "no version".to_string()
    } else {
        list(&tally.accepted)
    };
    let mut r = if shared.is_empty() {
        RequirementResult::fail(
            &id,
            format!(
                "accepts {accepted_text}, none of which the {} client speaks ({})",
                profile.name,
                list(&rules.client_versions)
            ),
            remedies::enable_version(ep, "TLS 1.2"),
        )
    } else if shared.iter().all(|v| rules.weak_versions.contains(v)) {
        RequirementResult::warn(
            &id,
            format!(
                "accepts {accepted_text}; the only versions shared with the client are weak ({})",
                list(&shared)
            ),
            remedies::enable_version(ep, "TLS 1.2"),
        )
    } else {
        RequirementResult::pass(&id, format!("accepts {accepted_text}"))
    };
    r = r
        .with("versions", Value::Object(tally.versions))
        .with("ciphers", Value::Object(tally.ciphers));
    if !tally.refusals.is_empty() {
        r = r.with("refused", Value::Object(tally.refusals));
    }
    if !tally.errors.is_empty() {
        r = r.with("errors", Value::Object(tally.errors));
    }
    r
}

/// Adds what the run's normal handshake negotiated.
async fn with_negotiated(
    cx: &mut RunContext,
    ep: &Endpoint,
    r: RequirementResult,
) -> RequirementResult {
    match handshake::shared(cx, ep.protocol).await {
        Ok(h) => r.with(
            "negotiated",
            json!({"version": h.version.name(), "cipher": h.cipher}),
        ),
        Err(e) => r.with("negotiated", json!({"error": e.message})),
    }
}

/// Reports a port on which no ClientHello could be sent at all.
pub fn report_unprobeable(cx: &mut RunContext, ep: &Endpoint, e: &NetErrorView) {
    let (summary, remedy) = match (e.error_type.as_str(), ep.security) {
        ("starttls_not_offered", _) => (
            "STARTTLS is not offered, so no TLS version can be negotiated".to_string(),
            remedies::enable_starttls(ep),
        ),
        ("timeout", Security::Starttls) => (
            format!(
                "the server sent no {} greeting: {}",
                ep.protocol.label(),
                e.message
            ),
            remedies::maybe_implicit_tls(ep),
        ),
        _ => (
            format!("no TLS version could be probed: {}", e.message),
            remedies::check_tls(ep),
        ),
    };
    cx.report(
        RequirementResult::fail(&tls_versions(ep.protocol), summary, remedy)
            .with("error", e.message.clone())
            .with("error_type", e.error_type.clone()),
    );
}
