//! The `certificate` check: the server certificate's name, trust and expiry, for the IMAP and
//! the SMTP port. The chain comes from the run's shared TLS handshake, or, for a server that
//! speaks only TLS ≤ 1.1 (which rustls cannot), from the clear-text Certificate message of the
//! `tls` plugin's raw probe. Each of the three is always reported on its own: an untrusted
//! certificate still gets its name and expiry checked.
#![forbid(unsafe_code)]

mod remedies;
pub mod x509;

use mailprobe_core::context::NetErrorView;
use mailprobe_core::plugin::{BoxFuture, PluginError};
use mailprobe_core::{
    CheckPlugin, Endpoint, Measure, PluginInfo, Protocol, RequirementResult, RequirementSpec,
    RunContext, Status,
};
use mailprobe_mailwire::handshake;
use mailprobe_plugin_tls::LegacyChain;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use mailprobe_core::client_model::{ClientModel, CryptoFinding, NameRules};
use x509::{CertInfo, NameMatch, TrustOutcome};

pub const NAME: &str = "certificate";

/// What the default profile's client model accepts, in words, for the requirement docs: the
/// reference pages come from the model itself.
fn default_model() -> (String, String) {
    let Ok(p) = mailprobe_core::profile::Profile::shared(mailprobe_core::profile::DEFAULT_PROFILE)
    else {
        return (String::new(), String::new());
    };
    let c = &p.client;
    let names = format!(
        " ({}: {})",
        p.name,
        if c.names.common_name_fallback {
            "the CN is read when there is no DNS SAN"
        } else {
            "the CN is never read"
        }
    );
    let crypto = format!(
        " ({}: RSA keys of {} bits and more, SHA-1 signatures {})",
        p.name,
        c.keys.rsa_min_bits,
        if c.accepts_signature("sha1WithRSAEncryption") {
            "accepted"
        } else {
            "refused"
        }
    );
    (names, crypto)
}

/// The three requirements of one protocol's port.
fn specs(p: Protocol) -> [RequirementSpec; 3] {
    let reachable = [p.requirement("reachable")];
    let (model_names, model_crypto) = default_model();
    [
        RequirementSpec::new(
            p.requirement("certificate.name"),
            "the CRM's client accepts the certificate for the server's host name",
        )
        .passes(format!("the profile's client accepts the certificate for the host (a DNS name in the subjectAltName, RFC 6125 wildcards; the CN only when there is no DNS SAN, if the client reads it; an IP host only against IP SANs){model_names} and the Common Name contains the FQDN"))
        .warns("the client accepts it but the Common Name lacks the FQDN (the vendor asks for it), or accepts it only through the Common Name (no DNS SAN: clients that follow RFC 6125 strictly refuse it)")
        .fails("the client would refuse the certificate for the host, whatever the Common Name says (the summary names the subjectAltName's names)")
        .evidence("subject_cn", "the leaf's subject Common Name")
        .evidence("san", "the leaf's DNS and IP subjectAltNames")
        .evidence("name_route", "how the client accepted it: `dns_san`, `ip_san` or `common_name`"),
        RequirementSpec::new(
            p.requirement("certificate.trust"),
            "the certificate chain verifies to a trusted root",
        )
        .passes(format!("the chain verifies to a trusted root (system roots plus `ca_file`) by the client's rules (its key sizes and signature algorithms{model_crypto}; a missing intermediate is not fetched)"))
        .warns("the chain is untrusted, but `allow_insecure_cert` is set (it relaxes trust only, never the name); or a key or signature algorithm the client accepts but current practice does not (RSA under 2048 bits, SHA-1)")
        .fails("the chain is untrusted (self-signed, unknown issuer, incomplete chain) and insecure certificates are not allowed; or a key or signature algorithm the client refuses")
        .evidence("chain", "each certificate of the chain: subject, key_type, key_bits, signature_algorithm"),
        RequirementSpec::new(
            p.requirement("certificate.expiry"),
            "the certificate is valid for more than warn_days",
        )
        .passes("more than `warn_days` (`cert_warn_days`, else the profile's: 30 for hubspot) are left")
        .warns("fewer than `warn_days` are left")
        .fails("the certificate (or one in its chain) has expired or is not yet valid, or the leaf has fewer than `cert_crit_days` left (when set)")
        .evidence("not_after", "the leaf's notAfter (RFC 3339)")
        .evidence("days_left", "whole days until notAfter")
        .evidence("subject", "the leaf's subject (RFC 4514)")
        .evidence("issuer", "the leaf's issuer (RFC 4514)")
        .evidence("serial", "the leaf's serial number (colon-separated hex)")
        .evidence("fingerprint_sha256", "SHA-256 of the leaf's DER (lowercase hex)")
        .evidence("warn_days", "the warning threshold applied")
        .evidence("crit_days", "the critical threshold applied, when one is set")
        .measures(Measure::CertificateExpiry {
            key: "not_after".into(),
        })
        .measures(Measure::CertificateInfo {
            subject: "subject".into(),
            issuer: "issuer".into(),
            serial: "serial".into(),
            fingerprint_sha256: "fingerprint_sha256".into(),
        }),
    ]
    .map(|s| s.after(&reachable).on(p))
}

#[derive(Debug, Default)]
pub struct Certificate;

/// The plugin, as the binary registers it.
pub fn plugin() -> std::sync::Arc<dyn CheckPlugin> {
    std::sync::Arc::new(Certificate)
}

impl CheckPlugin for Certificate {
    fn info(&self) -> PluginInfo {
        let mut all = Vec::new();
        for p in [Protocol::Imap, Protocol::Smtp] {
            all.extend(specs(p));
        }
        PluginInfo::builtin(NAME, all)
            .depends_on(&["reachability"])
            // The handshakes of imap and smtp, and the chain tls reads in clear, when they ran.
            .runs_after(&["imap", "smtp", "tls"])
    }

    fn run<'a>(&'a self, cx: &'a mut RunContext) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(async move {
            let endpoints: Vec<Endpoint> = cx.target.endpoints().cloned().collect();
            for ep in endpoints {
                check(cx, &ep).await;
            }
            Ok(())
        })
    }
}

/// The three IDs of one port, in the order they are judged and reported.
fn ids(p: Protocol) -> [String; 3] {
    [
        p.requirement("certificate.name"),
        p.requirement("certificate.trust"),
        p.requirement("certificate.expiry"),
    ]
}

/// One port's three requirements as a story: can they be judged at all, read the chain, parse
/// the leaf, then judge name, trust and expiry each on its own.
async fn check(cx: &mut RunContext, ep: &Endpoint) {
    let p = ep.protocol;
    let ids = ids(p);
    if all_blocked(cx, &ids) {
        return;
    }
    let enc = p.requirement("encryption");
    let legacy = cx
        .facts
        .get::<LegacyChain>()
        .and_then(|c| c.0.get(&p))
        .cloned();
    let refused_in_tls = matches!(
        handshake::first(cx, p),
        Some(Err(e)) if e.step.as_deref() == Some("tls_handshake")
    );
    if cx.status(&enc) == Some(Status::Fail) && legacy.is_none() && !refused_in_tls {
        skip_all(cx, &ids, &enc);
        return;
    }
    let chain = match read_chain(cx, p, legacy).await {
        Ok(mut c) => {
            c.truncate(x509::MAX_CHAIN);
            c
        }
        Err(e) => {
            report_unreadable(cx, ep, &ids, &e);
            return;
        }
    };
    let Some((leaf, parsed)) = parse_chain(cx, &ids, &chain) else {
        return;
    };
    for (i, c) in parsed.iter().enumerate() {
        mailprobe_core::scope::note(|| {
            format!(
                "certificate {i} of {}: subject {}; issuer {}; DNS names {}; valid {} to {}; {} {}; {}",
                ep.authority(),
                c.subject,
                c.issuer,
                if c.san_dns.is_empty() {
                    "none".to_string()
                } else {
                    c.san_dns.join(", ")
                },
                ts(c.not_before),
                ts(c.not_after),
                c.key_type,
                c.key_bits.map(|b| b.to_string()).unwrap_or_default(),
                c.signature_algorithm
            )
        });
    }
    let [name_id, trust_id, expiry_id] = ids;
    let profile = cx.target.profile.clone();
    let require_cn = profile.certificate.require_common_name;
    let warn_days = profile.warn_days();
    cx.report(judge_name(
        &name_id,
        &leaf,
        &ep.host,
        &profile.client.names,
        require_cn,
    ));
    let trust = x509::verify_trust_with(
        &chain,
        &cx.trust.roots,
        cx.trust.client.accepted_algorithms(),
    );
    let crypto = crypto_findings(&profile.client, &parsed);
    cx.report(
        judge_trust(
            &trust_id,
            &trust,
            &leaf,
            chain.len(),
            cx.target.allow_insecure_cert,
            ep,
        )
        .with_crypto(&crypto, &parsed),
    );
    let expiry = judge_expiry(
        &expiry_id,
        &parsed,
        OffsetDateTime::now_utc(),
        warn_days,
        ep,
    );
    cx.report(with_identity(
        apply_crit_days(expiry, cx.target.profile.crit_days()),
        &leaf,
        chain.first(),
    ));
}

/// The leaf's identity as evidence of the expiry result (`mailprobe_cert_info`): which
/// certificate the dates are about, so a renewal shows as a new series.
fn with_identity(
    r: RequirementResult,
    leaf: &CertInfo,
    der: Option<&Vec<u8>>,
) -> RequirementResult {
    let r = r
        .with("subject", leaf.subject.clone())
        .with("issuer", leaf.issuer.clone())
        .with("serial", leaf.serial.clone());
    match der {
        Some(der) => r.with("fingerprint_sha256", sha256_hex(der)),
        None => r,
    }
}

fn sha256_hex(der: &[u8]) -> String {
    use std::fmt::Write;
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest.as_ref().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The user's critical threshold (`--cert-crit-days`, `cert_crit_days`): a leaf with fewer
/// days left than that fails, as check_ssl_cert's `-c` does; the remedy stays "renew". 0 (the
/// default) leaves the verdict to expiry alone.
pub fn apply_crit_days(mut r: RequirementResult, crit_days: u32) -> RequirementResult {
    if crit_days == 0 {
        return r;
    }
    r = r.with("crit_days", crit_days);
    let days_left = r.evidence.get("days_left").and_then(|v| v.as_i64());
    if let Some(days) = days_left
        && r.status != Status::Fail
        && days >= 0
        && days < i64::from(crit_days)
    {
        let not_after = r
            .evidence
            .get("not_after")
            .and_then(|v| v.as_str())
            .unwrap_or("soon")
            .to_string();
        r.status = Status::Fail;
        r.summary =
            format!("expires on {not_after} ({days} days left, under the critical {crit_days})");
    }
    r
}

/// When a prerequisite blocks all three, each is reported as skipped for that reason.
fn all_blocked(cx: &mut RunContext, ids: &[String; 3]) -> bool {
    if !ids.iter().all(|id| cx.blocked_by(id).is_some()) {
        return false;
    }
    for id in ids {
        cx.skip_if_blocked(id);
    }
    true
}

/// When encryption itself failed, that is the cause to name, rather than repeating the
/// failure three times.
fn skip_all(cx: &mut RunContext, ids: &[String; 3], enc: &str) {
    for id in ids {
        cx.report(RequirementResult::skip(
            id,
            enc,
            format!("not evaluated: {enc} failed, so no certificate could be read"),
        ));
    }
}

/// The chain the server sent: from the run's shared handshake, else (a server that speaks
/// only TLS ≤ 1.1) the one the `tls` plugin read in clear.
async fn read_chain(
    cx: &mut RunContext,
    p: Protocol,
    legacy: Option<Vec<Vec<u8>>>,
) -> Result<Vec<Vec<u8>>, NetErrorView> {
    match handshake::shared(cx, p).await {
        Ok(h) if !h.chain.is_empty() => Ok(h.chain),
        other => match legacy {
            Some(c) if !c.is_empty() => Ok(c),
            // The client's own handshake failed in TLS itself (e.g. a TLS 1.3-only server and a
            // TLS 1.2 client; `*.tls_versions` says so): read the certificate anyway.
            _ if other
                .as_ref()
                .err()
                .is_some_and(|e| e.step.as_deref() == Some("tls_handshake")) =>
            {
                handshake::chain_for_inspection(cx, p).await
            }
            _ => Err(match other {
                Err(e) => e,
                Ok(_) => NetErrorView::new(
                    mailprobe_core::error::ErrorType::NoCertificate,
                    "the server sent no certificate",
                )
                .at("tls_handshake"),
            }),
        },
    }
}

/// Without a chain nothing can be said: a failure per requirement with the reason, or a skip
/// when encryption already failed.
fn report_unreadable(cx: &mut RunContext, ep: &Endpoint, ids: &[String; 3], e: &NetErrorView) {
    let enc = ep.protocol.requirement("encryption");
    if cx.status(&enc) == Some(Status::Fail) {
        skip_all(cx, ids, &enc);
        return;
    }
    for id in ids {
        cx.report(
            RequirementResult::fail(
                id,
                format!("no certificate could be read: {}", e.message),
                remedies::make_tls_work(&ep.authority(), &enc),
            )
            .with_error_view(e),
        );
    }
}

/// The leaf and every chain certificate that parses; an unparsable leaf fails all three
/// (`None`), while an unparsable intermediate is left to the trust verdict.
fn parse_chain(
    cx: &mut RunContext,
    ids: &[String; 3],
    chain: &[Vec<u8>],
) -> Option<(CertInfo, Vec<CertInfo>)> {
    let infos: Vec<Result<CertInfo, x509::CertError>> =
        chain.iter().map(|d| x509::parse_certificate(d)).collect();
    let leaf = match infos.first() {
        Some(Ok(l)) => l.clone(),
        Some(Err(e)) => {
            for id in ids {
                cx.report(RequirementResult::fail(
                    id,
                    format!("the server's certificate cannot be parsed: {e}"),
                    remedies::UNPARSABLE,
                ));
            }
            return None;
        }
        None => return None,
    };
    let parsed: Vec<CertInfo> = infos.into_iter().filter_map(Result::ok).collect();
    Some((leaf, parsed))
}

/// Dates in evidence and summaries are RFC 3339, as the report format promises.
fn ts(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// `*.certificate.name`: the client model decides whether the certificate is accepted for the
/// host; the vendor asks, besides, for the FQDN in the Common Name.
pub fn judge_name(
    id: &str,
    leaf: &CertInfo,
    host: &str,
    rules: &NameRules,
    require_cn: bool,
) -> RequirementResult {
    let san: Vec<Value> = leaf
        .san_dns
        .iter()
        .chain(leaf.san_ip.iter())
        .map(|s| Value::String(s.clone()))
        .collect();
    let cn_text = leaf
        .subject_cn
        .as_deref()
        .map(|c| format!("`{c}`"))
        .unwrap_or_else(|| "absent".into());
    let matched = x509::match_name_with(leaf, host, rules);
    let route = match matched {
        NameMatch::CommonName | NameMatch::SanOnly => {
            if mailprobe_core::client_model::parse_ip_host(host).is_some() {
                Some("ip_san")
            } else {
                Some("dns_san")
            }
        }
        NameMatch::CommonNameFallback => Some("common_name"),
        _ => None,
    };
    let r = match matched {
        NameMatch::CommonName => RequirementResult::pass(
            id,
            format!("the certificate is valid for {host} and its Common Name {cn_text} carries it"),
        ),
        NameMatch::SanOnly if require_cn => RequirementResult::warn(
            id,
            format!(
                "the client accepts the certificate for {host} (subjectAltName), but its Common Name is {cn_text}, not the FQDN the vendor asks for"
            ),
            remedies::common_name_only(host),
        ),
        NameMatch::SanOnly => {
            RequirementResult::pass(id, format!("a subjectAltName matches {host}"))
        }
        NameMatch::CommonNameFallback => RequirementResult::warn(
            id,
            format!(
                "accepted for {host} only through the Common Name {cn_text}: the certificate has no DNS name in its subjectAltName, and clients that follow RFC 6125 strictly refuse it"
            ),
            remedies::add_san(host),
        ),
        NameMatch::NoMatch => {
            let names = mailprobe_core::tls::LeafNames {
                common_name: leaf.subject_cn.clone(),
                dns: leaf.san_dns.clone(),
                ip: leaf.san_ip.clone(),
            };
            RequirementResult::fail(
                id,
                names.why_not(host, rules.common_name_fallback),
                remedies::wrong_name(host),
            )
        }
    };
    r.with("host", host)
        .with("subject_cn", leaf.subject_cn.clone())
        .with("san", Value::Array(san))
        .with("name_route", route)
        .with("subject", leaf.subject.clone())
        .with("issuer", leaf.issuer.clone())
}

/// The key and signature findings of every certificate of the chain, by the client model. A
/// self-issued certificate's own signature is not judged: nothing verifies it.
pub fn crypto_findings(client: &ClientModel, chain: &[CertInfo]) -> Vec<CryptoFinding> {
    chain
        .iter()
        .enumerate()
        .flat_map(|(i, c)| {
            let position = if i == 0 {
                "the server's certificate".to_string()
            } else {
                format!("chain certificate {}", c.subject)
            };
            client.judge_crypto(
                &position,
                &c.key_type,
                c.key_bits,
                &c.signature_algorithm,
                c.subject != c.issuer,
            )
        })
        .collect()
}

/// The trust result with the chain's key and signature facts as evidence, and the client
/// model's findings on them: one the client refuses fails; one it accepts but current practice
/// does not turns a pass into a warning naming it.
trait WithCrypto {
    fn with_crypto(self, findings: &[CryptoFinding], chain: &[CertInfo]) -> RequirementResult;
}

impl WithCrypto for RequirementResult {
    fn with_crypto(mut self, findings: &[CryptoFinding], chain: &[CertInfo]) -> RequirementResult {
        let facts: Vec<Value> = chain
            .iter()
            .map(|c| {
                json!({
                    "subject": c.subject,
                    "key_type": c.key_type,
                    "key_bits": c.key_bits,
                    "signature_algorithm": c.signature_algorithm,
                })
            })
            .collect();
        let refused: Vec<&str> = findings
            .iter()
            .filter_map(|f| match f {
                CryptoFinding::Refused(s) => Some(s.as_str()),
                CryptoFinding::Weak(_) => None,
            })
            .collect();
        let weak: Vec<&str> = findings
            .iter()
            .filter_map(|f| match f {
                CryptoFinding::Weak(s) => Some(s.as_str()),
                CryptoFinding::Refused(_) => None,
            })
            .collect();
        if !refused.is_empty() && self.status != Status::Fail {
            self.status = Status::Fail;
            self.summary = format!("the client refuses the certificate: {}", refused.join("; "));
            self.remedy = Some(remedies::REISSUE_STRONGER.to_string());
        } else if !weak.is_empty() && self.status == Status::Pass {
            self.status = Status::Warn;
            self.summary = format!("{}; {}", self.summary, weak.join("; "));
            self.remedy = Some(remedies::weak_crypto(&weak));
        }
        self.with("chain", Value::Array(facts)).with(
            "weak_crypto",
            weak.iter()
                .map(|s| Value::String((*s).to_string()))
                .collect::<Vec<_>>(),
        )
    }
}

/// `*.certificate.trust`: the verification outcome, with the reason named and the leaf's key
/// facts as evidence; an untrusted chain only warns when insecure certificates are allowed.
pub fn judge_trust(
    id: &str,
    outcome: &TrustOutcome,
    leaf: &CertInfo,
    chain_len: usize,
    allow_insecure: bool,
    ep: &Endpoint,
) -> RequirementResult {
    let (why, remedy) = match outcome {
        TrustOutcome::Trusted => {
            return RequirementResult::pass(
                id,
                format!(
                    "the chain verifies to a trusted root (issuer {})",
                    leaf.issuer
                ),
            )
            .with("issuer", leaf.issuer.clone())
            .with("chain_length", chain_len)
            .with("self_signed", leaf.self_signed)
            .with("key_type", leaf.key_type.clone())
            .with("key_bits", leaf.key_bits)
            .with("signature_algorithm", leaf.signature_algorithm.clone());
        }
        TrustOutcome::SelfSigned => (
            "the certificate is self-signed".to_string(),
            remedies::SELF_SIGNED.to_string(),
        ),
        TrustOutcome::UnknownIssuer { issuer } => (
            format!("the chain ends at `{issuer}`, which is not a trusted root"),
            remedies::UNKNOWN_ISSUER.to_string(),
        ),
        TrustOutcome::IncompleteChain { missing_issuer } => (
            format!(
                "the issuer `{missing_issuer}` is neither sent by the server nor a trusted root (a missing intermediate, or a private CA)"
            ),
            remedies::incomplete_chain(missing_issuer, ep.protocol),
        ),
        TrustOutcome::Invalid { reason } => (
            format!("the chain is invalid: {reason}"),
            remedies::INVALID_CHAIN.to_string(),
        ),
    };
    let reason = match outcome {
        TrustOutcome::SelfSigned => "self_signed",
        TrustOutcome::UnknownIssuer { .. } => "unknown_issuer",
        TrustOutcome::IncompleteChain { .. } => "incomplete_chain",
        _ => "invalid",
    };
    let r = if allow_insecure {
        RequirementResult::warn(
            id,
            format!("untrusted, but an insecure certificate is allowed: {why}"),
            remedy,
        )
    } else {
        RequirementResult::fail(id, format!("untrusted: {why}"), remedy)
    };
    r.with("reason", reason)
        .with("detail", why)
        .with("issuer", leaf.issuer.clone())
        .with("chain_length", chain_len)
        .with("self_signed", leaf.self_signed)
        .with("key_type", leaf.key_type.clone())
        .with("key_bits", leaf.key_bits)
        .with("signature_algorithm", leaf.signature_algorithm.clone())
}

/// `*.certificate.expiry`: the leaf's dates against `warn_days`, and an intermediate that
/// expires before the leaf, since that breaks the chain first.
pub fn judge_expiry(
    id: &str,
    chain: &[CertInfo],
    now: OffsetDateTime,
    warn_days: u32,
    ep: &Endpoint,
) -> RequirementResult {
    let Some(leaf) = chain.first() else {
        return RequirementResult::fail(id, "no certificate", remedies::NO_CERTIFICATE);
    };
    let days_left = (leaf.not_after - now).whole_days();
    let renew = remedies::renew(&ep.host);
    let mut r = if now < leaf.not_before {
        RequirementResult::fail(
            id,
            format!("not valid before {}", ts(leaf.not_before)),
            remedies::NOT_YET_VALID,
        )
    } else if now > leaf.not_after {
        RequirementResult::fail(
            id,
            format!(
                "expired on {} ({} days ago)",
                ts(leaf.not_after),
                -days_left
            ),
            renew.clone(),
        )
    } else if days_left < i64::from(warn_days) {
        RequirementResult::warn(
            id,
            format!(
                "expires on {} ({days_left} days left, under {warn_days})",
                ts(leaf.not_after)
            ),
            renew.clone(),
        )
    } else {
        RequirementResult::pass(
            id,
            format!("valid until {} ({days_left} days left)", ts(leaf.not_after)),
        )
    };
    // An intermediate that expires before the leaf breaks the chain first: say so.
    if let Some((i, when)) = x509::earliest_expiry(chain)
        && i > 0
        && when < leaf.not_after
    {
        let c = &chain[i];
        r = r
            .with("earliest_not_after", ts(when))
            .with("earliest_subject", c.subject.clone());
        if when < now && r.status != Status::Fail {
            r.status = Status::Fail;
            r.summary = format!("chain certificate {} expired on {}", c.subject, ts(when));
            r.remedy = Some(remedies::expired_intermediate(ep.protocol));
        } else if (when - now).whole_days() < i64::from(warn_days) && r.status == Status::Pass {
            r.status = Status::Warn;
            r.summary = format!("chain certificate {} expires on {}", c.subject, ts(when));
            r.remedy = Some(remedies::expiring_intermediate(ep.protocol));
        }
    }
    r.with("not_before", ts(leaf.not_before))
        .with("not_after", ts(leaf.not_after))
        .with("days_left", json!(days_left))
        .with("warn_days", warn_days)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailprobe_core::Security;
    use time::Duration;

    fn cert(subject: &str, not_before: OffsetDateTime, not_after: OffsetDateTime) -> CertInfo {
        CertInfo {
            subject: format!("CN={subject}"),
            subject_cn: Some(subject.into()),
            san_dns: vec![subject.into()],
            san_ip: vec![],
            issuer: "CN=Issuer".into(),
            issuer_cn: Some("Issuer".into()),
            serial: "01".into(),
            not_before,
            not_after,
            key_type: "RSA".into(),
            key_bits: Some(2048),
            ec_curve: None,
            signature_algorithm: "sha256WithRSAEncryption".into(),
            self_signed: false,
            is_ca: false,
        }
    }

    fn ep() -> Endpoint {
        Endpoint {
            protocol: Protocol::Imap,
            host: "mail.example.com".into(),
            port: 993,
            security: Security::Tls,
            connect_to: None,
            auto_security: false,
            source_address: None,
        }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    #[test]
    fn leaf_expiry_thresholds() {
        let n = now();
        let ok = cert(
            "mail.example.com",
            n - Duration::days(10),
            n + Duration::days(90),
        );
        let r = judge_expiry("imap.certificate.expiry", &[ok], n, 30, &ep());
        assert_eq!(r.status, Status::Pass);
        assert_eq!(r.evidence["days_left"], 90);

        let soon = cert(
            "mail.example.com",
            n - Duration::days(10),
            n + Duration::days(5),
        );
        let r = judge_expiry("imap.certificate.expiry", &[soon], n, 30, &ep());
        assert_eq!(r.status, Status::Warn);
        // Within the user's critical days: a failure, still with the renewal remedy.
        let crit = apply_crit_days(r.clone(), 7);
        assert_eq!(crit.status, Status::Fail, "{crit:?}");
        assert!(
            crit.summary.contains("under the critical 7"),
            "{}",
            crit.summary
        );
        assert!(crit.remedy.is_some());
        assert_eq!(crit.evidence["crit_days"], 7);
        // Outside them, or without them, the warning stands.
        assert_eq!(apply_crit_days(r.clone(), 3).status, Status::Warn);
        assert_eq!(apply_crit_days(r, 0).status, Status::Warn);

        let gone = cert(
            "mail.example.com",
            n - Duration::days(100),
            n - Duration::days(1),
        );
        let r = judge_expiry("imap.certificate.expiry", &[gone], n, 30, &ep());
        assert_eq!(r.status, Status::Fail);
        assert!(r.summary.contains("expired"));

        let early = cert(
            "mail.example.com",
            n + Duration::days(1),
            n + Duration::days(90),
        );
        let r = judge_expiry("imap.certificate.expiry", &[early], n, 30, &ep());
        assert_eq!(r.status, Status::Fail);
        assert!(r.summary.contains("not valid before"));
    }

    #[test]
    fn an_intermediate_expiring_before_the_leaf_is_reported() {
        let n = now();
        let leaf = cert(
            "mail.example.com",
            n - Duration::days(10),
            n + Duration::days(300),
        );
        let inter = cert(
            "Intermediate CA",
            n - Duration::days(1000),
            n + Duration::days(12),
        );
        let r = judge_expiry(
            "imap.certificate.expiry",
            &[leaf.clone(), inter],
            n,
            30,
            &ep(),
        );
        assert_eq!(r.status, Status::Warn, "{r:?}");
        assert_eq!(r.evidence["earliest_subject"], "CN=Intermediate CA");
        assert!(r.evidence["earliest_not_after"].is_string());
        // The leaf's own dates stay the report's `not_after`.
        assert_eq!(r.evidence["days_left"], 300);

        let dead = cert(
            "Intermediate CA",
            n - Duration::days(1000),
            n - Duration::days(2),
        );
        let r = judge_expiry("imap.certificate.expiry", &[leaf, dead], n, 30, &ep());
        assert_eq!(r.status, Status::Fail, "{r:?}");
        assert!(r.summary.contains("Intermediate CA"));
    }

    #[test]
    fn name_rules_follow_the_profile() {
        let n = now();
        let mut san_only = cert("Lab Mail Server", n, n + Duration::days(90));
        san_only.san_dns = vec!["mail.example.com".into()];
        let rules = NameRules {
            common_name_fallback: true,
        };
        let id = "imap.certificate.name";
        let r = judge_name(id, &san_only, "mail.example.com", &rules, true);
        assert_eq!(r.status, Status::Warn);
        let r = judge_name(id, &san_only, "mail.example.com", &rules, false);
        assert_eq!(r.status, Status::Pass);
        let r = judge_name(id, &san_only, "other.example.com", &rules, true);
        assert_eq!(r.status, Status::Fail);
        assert_eq!(r.evidence["subject_cn"], "Lab Mail Server");

        // CN = host but the SAN lists another name: every client refuses it.
        let mut cn_host = cert("mail.example.com", n, n + Duration::days(90));
        cn_host.san_dns = vec!["other.example.com".into()];
        let r = judge_name(id, &cn_host, "mail.example.com", &rules, true);
        assert_eq!(r.status, Status::Fail);
        assert!(
            r.summary.contains("other.example.com") && r.summary.contains("subjectAltName"),
            "{}",
            r.summary
        );
        // CN only, no SAN: the client accepts it through the CN, with a warning.
        cn_host.san_dns.clear();
        let r = judge_name(id, &cn_host, "mail.example.com", &rules, true);
        assert_eq!(r.status, Status::Warn);
        assert_eq!(r.evidence["name_route"], "common_name");
        let strict = NameRules {
            common_name_fallback: false,
        };
        assert_eq!(
            judge_name(id, &cn_host, "mail.example.com", &strict, true).status,
            Status::Fail
        );
    }

    #[test]
    fn weak_crypto_warns_and_refused_crypto_fails_in_words() {
        let n = now();
        let mut leaf = cert("mail.example.com", n, n + Duration::days(90));
        leaf.key_bits = Some(1024);
        leaf.signature_algorithm = "sha1WithRSAEncryption".into();
        let hub = mailprobe_core::profile::Profile::builtin("hubspot").unwrap();
        let found = crypto_findings(&hub.client, std::slice::from_ref(&leaf));
        let r = judge_trust(
            "imap.certificate.trust",
            &TrustOutcome::Trusted,
            &leaf,
            1,
            false,
            &ep(),
        )
        .with_crypto(&found, std::slice::from_ref(&leaf));
        assert_eq!(r.status, Status::Warn, "{r:?}");
        let remedy = r.remedy.clone().unwrap();
        assert!(
            remedy.contains("1024-bit RSA") && remedy.contains("SHA-1"),
            "{remedy}"
        );
        let mut strict = hub.client.clone();
        strict.keys.rsa_min_bits = 2048;
        let found = crypto_findings(&strict, std::slice::from_ref(&leaf));
        let r = judge_trust(
            "imap.certificate.trust",
            &TrustOutcome::Trusted,
            &leaf,
            1,
            true,
            &ep(),
        )
        .with_crypto(&found, std::slice::from_ref(&leaf));
        assert_eq!(r.status, Status::Fail);
        assert!(r.summary.contains("1024-bit RSA key"), "{}", r.summary);
        assert_eq!(r.evidence["chain"][0]["key_bits"], 1024);
    }
}
