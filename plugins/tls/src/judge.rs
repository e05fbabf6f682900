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
    /// Versions no probe could tell (no answer twice: a timeout, a reset, garbage).
    unknown: Vec<TlsVersion>,
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
                    // Unknown, not refused: `null`, and no verdict may rest on it.
                    t.versions.insert(name.clone(), Value::Null);
                    t.errors.insert(name, Value::String(e.to_string()));
                    t.unknown.push(*v);
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
        .filter(|(v, _)| !tally.unknown.contains(v))
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
    let id = tls_versions(ep.protocol);
    let r = match &first {
        // A server fact: there is no TLS to probe.
        Some(NetError::StarttlsNotOffered) => RequirementResult::fail(&id, summary, remedy),
        // No answer at all: the probe cannot tell, and must not blame the server.
        _ => RequirementResult::not_verified(&id, format!("not verified: {summary}")),
    }
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
        .filter(|v| profile.client.tls_versions.contains(v))
        .collect();
    let accepted_text = if tally.accepted.is_empty() {
        "no version".to_string()
    } else {
        list(&tally.accepted)
    };
    // A version the probe could not tell that the client speaks could turn a failure or a
    // warning into a pass: such a verdict would rest on a gap.
    let undecided: Vec<TlsVersion> = tally
        .unknown
        .iter()
        .copied()
        .filter(|v| profile.client.tls_versions.contains(v))
        .filter(|v| shared.is_empty() || !rules.weak_versions.contains(v))
        .collect();
    let passes = !shared.is_empty() && !shared.iter().all(|v| rules.weak_versions.contains(v));
    let mut r = if !passes && !undecided.is_empty() {
        RequirementResult::not_verified(
            &id,
            format!(
                "not verified: accepts {accepted_text}, but whether it accepts {} could not be told (no answer, twice)",
                list(&undecided)
            ),
        )
    } else if shared.is_empty() {
        RequirementResult::fail(
            &id,
            format!(
                "accepts {accepted_text}, none of which the {} client speaks ({})",
                profile.name,
                list(&profile.client.tls_versions)
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
            .with("versions", unknown_versions())
            .with_error_view(e),
    );
}

/// The `versions` map of a port that could not be probed: every version unknown (`null`).
pub fn unknown_versions() -> Value {
    Value::Object(
        TlsVersion::ALL
            .iter()
            .map(|v| (v.name().to_string(), Value::Null))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailprobe_core::requirement::SkipReason;
    use std::sync::Arc;
    use std::time::Duration;

    use mailprobe_core::net::Budgets;
    use mailprobe_core::tls::Trust;
    use mailprobe_core::{Security, Status};

    fn cx() -> RunContext {
        let target =
            mailprobe_core::contract::target((1, 2), Security::Tls, Duration::from_secs(5));
        RunContext::new(
            Arc::new(target),
            Trust::load(None).unwrap(),
            Arc::new(Budgets::default()),
        )
    }

    fn accepted(v: TlsVersion) -> Answer {
        (
            v,
            Ok(ProbeOutcome::Accepted {
                version: v.wire(),
                cipher: 0x1302,
                cipher_name: None,
                certificates: Vec::new(),
            }),
        )
    }
    fn refused(v: TlsVersion) -> Answer {
        (
            v,
            Ok(ProbeOutcome::Refused {
                reason: "protocol_version".into(),
            }),
        )
    }
    fn unknown(v: TlsVersion) -> Answer {
        (
            v,
            Err(NetError::Timeout {
                waiting_for: "a ServerHello".into(),
                after: Duration::from_secs(1),
            }),
        )
    }

    fn judged(probes: Vec<Answer>) -> RequirementResult {
        let cx = cx();
        let ep = cx.target.imap.clone();
        versions_result(&cx, &ep, Tally::of(&probes))
    }

    #[test]
    fn a_stalled_version_that_decides_the_verdict_is_not_verified() {
        // TLS 1.3 accepted, TLS 1.2 unanswered: the client's only modern version is unknown,
        // so "accepts only TLS 1.3" would be a guess.
        let r = judged(vec![
            refused(TlsVersion::Ssl3),
            refused(TlsVersion::Tls10),
            refused(TlsVersion::Tls11),
            unknown(TlsVersion::Tls12),
            accepted(TlsVersion::Tls13),
        ]);
        assert_eq!(r.status, Status::Skip, "{r:?}");
        assert_eq!(r.skip_reason(), Some(SkipReason::NotVerified));
        assert!(r.remedy.is_none());
        assert_eq!(r.evidence["versions"]["TLSv1.2"], serde_json::Value::Null);
        assert_eq!(r.evidence["versions"]["TLSv1.3"], true);
    }

    #[test]
    fn a_stalled_version_that_cannot_change_the_verdict_is_only_noted() {
        let r = judged(vec![
            refused(TlsVersion::Ssl3),
            unknown(TlsVersion::Tls10),
            refused(TlsVersion::Tls11),
            accepted(TlsVersion::Tls12),
            accepted(TlsVersion::Tls13),
        ]);
        assert_eq!(r.status, Status::Pass, "{r:?}");
        assert_eq!(r.evidence["versions"]["TLSv1.0"], serde_json::Value::Null);
    }

    #[test]
    fn refusals_alone_still_fail() {
        let r = judged(vec![
            refused(TlsVersion::Ssl3),
            refused(TlsVersion::Tls10),
            refused(TlsVersion::Tls11),
            refused(TlsVersion::Tls12),
            accepted(TlsVersion::Tls13),
        ]);
        assert_eq!(r.status, Status::Fail, "{r:?}");
    }
}
