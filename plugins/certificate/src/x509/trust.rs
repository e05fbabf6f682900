//! Chain trust: does the chain the server sent verify to a trusted root, and if not, why
//! (self-signed, unknown issuer, incomplete chain, invalid)? Judged apart from names and dates.

use std::time::Duration;

use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, RootCertStore};
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use mailprobe_core::tls::is_trust_anchor;

use super::der::{SelfSignature, der_contents, self_signature, webpki_algorithms};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustOutcome {
    Trusted,
    /// The leaf is self-signed and is not itself a trust anchor.
    SelfSigned,
    /// The chain is complete as sent (it ends in a self-issued root the
    /// server sent), yet that root is not trusted.
    UnknownIssuer {
        issuer: String,
    },
    /// The server did not send the certificate(s) needed to reach a trusted
    /// root; `missing_issuer` is the issuer name of the last certificate we
    /// could link to.
    IncompleteChain {
        missing_issuer: String,
    },
    /// Anything else webpki rejects: bad signature, wrong key/extended key
    /// usage, an intermediate that is not a CA, name constraints, unparseable
    /// certificate, ...
    Invalid {
        reason: String,
    },
}

/// Verifies the chain a server sent (leaf first) against `roots`, judging
/// trust only.
///
/// Uses `rustls::client::verify_server_cert_signed_by_trust_anchor` with the
/// ring provider's algorithms (webpki underneath, server-auth usage, no
/// revocation, no name check).
///
/// The evaluation time is chosen so that dates do not interfere: "now" clamped
/// into the intersection of all sent certificates' validity windows, or — if
/// that intersection is empty, or the first attempt fails — "now" clamped into
/// the leaf's window alone. Expiry is reported separately via
/// [`earliest_expiry`].
///
/// Classification when webpki does not accept the chain:
/// 1. The leaf is exactly a trust anchor (same subject and key) → `Trusted`,
///    even if webpki would refuse it as an end entity (e.g. a pinned
///    self-signed cert with cA=TRUE, which `openssl req -x509` makes).
/// 2. The leaf is self-signed (verifiably) → `SelfSigned`, whatever webpki's
///    error.
/// 3. webpki says `UnknownIssuer`: follow issuer→subject links through the
///    sent certificates from the leaf. If that walk ends in a self-issued
///    certificate, the server sent its root and it is not trusted →
///    `UnknownIssuer` (named by that root). If it ends in a certificate whose
///    issuer was not sent and no trust anchor has that subject →
///    `IncompleteChain` (we cannot tell a missing intermediate from a missing
///    private root, so a lone leaf from an unknown CA lands here). If a trust
///    anchor does have that subject yet webpki still could not chain to it
///    → `UnknownIssuer` (named by that issuer).
/// 4. Any other error → `Invalid` with webpki's reason. Note webpki reports
///    a leaf/intermediate whose issuer *name* matches a trust anchor but
///    whose signature does not verify with that anchor's key as a bad
///    signature, so that case is `Invalid`, not `UnknownIssuer`.
pub fn verify_trust(chain_der: &[Vec<u8>], roots: &RootCertStore) -> TrustOutcome {
    verify_trust_with(chain_der, roots, webpki_algorithms())
}

/// [`verify_trust`] with the signature algorithms a client model accepts (see
/// `ClientPolicy::accepted_algorithms`).
pub fn verify_trust_with(
    chain_der: &[Vec<u8>],
    roots: &RootCertStore,
    algorithms: &[&dyn SignatureVerificationAlgorithm],
) -> TrustOutcome {
    // A real chain is a handful of certificates; a server sending hundreds (or a cycle) must
    // not make path building or the classification walk costly.
    let chain_der = &chain_der[..chain_der.len().min(MAX_CHAIN)];
    let Some((leaf_der, intermediates_der)) = chain_der.split_first() else {
        return TrustOutcome::Invalid {
            reason: "the server sent no certificate".into(),
        };
    };
    let leaf = match X509Certificate::from_der(leaf_der) {
        Ok((_, cert)) => cert,
        Err(e) => {
            return TrustOutcome::Invalid {
                reason: format!("leaf certificate cannot be parsed: {e}"),
            };
        }
    };
    // Intermediates we cannot parse are still handed to webpki (it may use
    // them); they are just invisible to the classification walk.
    let sent: Vec<X509Certificate<'_>> = intermediates_der
        .iter()
        .filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, c)| c))
        .collect();

    if is_trust_anchor(&leaf, roots) {
        return TrustOutcome::Trusted;
    }

    let leaf_cert_der = CertificateDer::from(leaf_der.as_slice());
    let parsed = match ParsedCertificate::try_from(&leaf_cert_der) {
        Ok(p) => p,
        Err(e) => {
            return TrustOutcome::Invalid {
                reason: format!("leaf certificate rejected by webpki: {e}"),
            };
        }
    };
    let intermediates: Vec<CertificateDer<'_>> = intermediates_der
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();

    let mut first_error = None;
    for at in evaluation_times(&leaf, &sent) {
        match verify_server_cert_signed_by_trust_anchor(
            &parsed,
            roots,
            &intermediates,
            at,
            algorithms,
        ) {
            Ok(()) => return TrustOutcome::Trusted,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }

    if self_signature(&leaf) == SelfSignature::Verified {
        return TrustOutcome::SelfSigned;
    }

    match first_error {
        Some(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
            classify_unknown_issuer(&leaf, &sent, roots)
        }
        Some(e) => TrustOutcome::Invalid {
            reason: describe_webpki_error(&e),
        },
        // Only reachable if no evaluation time could be formed, which
        // evaluation_times prevents; keep a truthful answer anyway.
        None => TrustOutcome::Invalid {
            reason: "no time at which the chain could be evaluated".into(),
        },
    }
}

/// The most certificates of a chain that are looked at (the leaf included).
pub const MAX_CHAIN: usize = 16;

fn evaluation_times(leaf: &X509Certificate<'_>, sent: &[X509Certificate<'_>]) -> Vec<UnixTime> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let window = |c: &X509Certificate<'_>| {
        let v = &c.tbs_certificate.validity;
        (v.not_before.timestamp(), v.not_after.timestamp())
    };
    let (leaf_from, leaf_to) = window(leaf);
    let (all_from, all_to) = sent
        .iter()
        .map(window)
        .fold((leaf_from, leaf_to), |(f, t), (cf, ct)| {
            (f.max(cf), t.min(ct))
        });

    let mut times = Vec::with_capacity(2);
    if all_from <= all_to {
        times.push(clamp_to_unix(now, all_from, all_to));
    }
    // A leaf whose own window is inverted is rejected by webpki regardless of
    // the time; evaluate at its not_before so that error surfaces.
    let leaf_time = if leaf_from <= leaf_to {
        clamp_to_unix(now, leaf_from, leaf_to)
    } else {
        clamp_to_unix(leaf_from, leaf_from, leaf_from)
    };
    if !times.contains(&leaf_time) {
        times.push(leaf_time);
    }
    times
}

fn clamp_to_unix(now: i64, from: i64, to: i64) -> UnixTime {
    // webpki cannot express pre-1970 instants; such windows are clamped to
    // the epoch, which is still inside them if they extend past it.
    let secs = u64::try_from(now.clamp(from, to)).unwrap_or(0);
    UnixTime::since_unix_epoch(Duration::from_secs(secs))
}

fn classify_unknown_issuer(
    leaf: &X509Certificate<'_>,
    sent: &[X509Certificate<'_>],
    roots: &RootCertStore,
) -> TrustOutcome {
    let mut current = leaf;
    let mut used = vec![false; sent.len()];
    loop {
        let tbs = &current.tbs_certificate;
        if tbs.subject.as_raw() == tbs.issuer.as_raw() {
            return TrustOutcome::UnknownIssuer {
                issuer: tbs.subject.to_string(),
            };
        }
        let next = sent.iter().enumerate().find(|(i, c)| {
            !used.get(*i).copied().unwrap_or(true)
                && c.tbs_certificate.subject.as_raw() == tbs.issuer.as_raw()
        });
        match next {
            Some((i, cert)) => {
                if let Some(flag) = used.get_mut(i) {
                    *flag = true;
                }
                current = cert;
            }
            None => {
                let issuer = tbs.issuer.to_string();
                let known_name = der_contents(tbs.issuer.as_raw())
                    .is_some_and(|name| roots.roots.iter().any(|ta| ta.subject.as_ref() == name));
                return if known_name {
                    TrustOutcome::UnknownIssuer { issuer }
                } else {
                    TrustOutcome::IncompleteChain {
                        missing_issuer: issuer,
                    }
                };
            }
        }
    }
}

fn describe_webpki_error(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::BadSignature) => {
            "a certificate's signature does not verify with its issuer's key (corrupt \
             signature, or signed by another CA with the same name as a trusted one)"
                .into()
        }
        rustls::Error::InvalidCertificate(
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. },
        ) => format!("certificate is not valid for TLS server authentication ({e})"),
        // Reached only when an intermediate is out of date at every instant
        // the leaf is valid, i.e. the chain never validated as a whole.
        rustls::Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => format!("chain is never valid within the leaf's validity period ({e})"),
        rustls::Error::InvalidCertificate(
            CertificateError::UnsupportedSignatureAlgorithmContext { .. }
            | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. },
        ) => "a certificate in the chain is signed with an algorithm or key size the client does not accept".into(),
        rustls::Error::InvalidCertificate(CertificateError::BadEncoding) => {
            "a certificate in the chain is malformed".into()
        }
        rustls::Error::InvalidCertificate(CertificateError::Other(o)) => o.to_string(),
        // Only rustls' Display, never its Debug form: a message a person can read.
        _ => {
            let s = e.to_string();
            if s.contains('{') {
                "the chain is refused by the client's certificate rules".into()
            } else {
                s
            }
        }
    }
}
