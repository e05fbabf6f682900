//! Pure certificate analysis: parsing, host-name matching, chain trust and
//! expiry. Nothing here touches the network; the probe feeds it the DER
//! certificates a server presented.
//!
//! Trust is deliberately evaluated separately from names and dates so that a
//! report can say "trusted, but expired" or "trusted, but for another name"
//! rather than collapsing everything into the first error webpki hits.

use std::net::IpAddr;
use std::time::Duration;

use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, RootCertStore};
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use time::OffsetDateTime;
use x509_parser::asn1_rs::{Any, Oid};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_DSA, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_PKCS1_RSASSAPSS, OID_SIG_ED448, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;

/// What the probe needs to know about one certificate, detached from the DER
/// buffer so it can outlive the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// RFC 4514-style rendering, e.g. `CN=mail.lab.test, O=Lab`.
    pub subject: String,
    /// The last (most specific) CN attribute, if any.
    pub subject_cn: Option<String>,
    pub san_dns: Vec<String>,
    /// Textual IPv4/IPv6 addresses from iPAddress SAN entries.
    pub san_ip: Vec<String>,
    pub issuer: String,
    pub issuer_cn: Option<String>,
    /// Colon-separated lowercase hex of the DER serial bytes.
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// "RSA", "RSA-PSS", "EC", "Ed25519", "Ed448", "DSA", or the OID's short
    /// name / dotted form for anything else.
    pub key_type: String,
    /// RSA modulus bits, EC curve order bits, 256/456 for Ed25519/Ed448
    /// (public-key length, as openssl's `-text` shows them).
    pub key_bits: Option<u32>,
    /// "P-256", "P-384", "P-521", or the curve OID's short name.
    pub ec_curve: Option<String>,
    /// OpenSSL-style short name, e.g. "sha256WithRSAEncryption".
    pub signature_algorithm: String,
    /// Subject == issuer and the signature verifies with the certificate's
    /// own key. False when the algorithm is not one ring can verify
    /// (e.g. SHA-1), because then we cannot tell.
    pub self_signed: bool,
    /// basicConstraints cA=TRUE.
    pub is_ca: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("certificate is not valid DER X.509: {0}")]
    Malformed(String),
    #[error("{0} bytes of trailing data after the certificate")]
    TrailingData(usize),
    #[error("certificate field `{field}` is invalid: {reason}")]
    InvalidField { field: &'static str, reason: String },
}

pub fn parse_certificate(der: &[u8]) -> Result<CertInfo, CertError> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| CertError::Malformed(e.to_string()))?;
    // A certificate followed by junk is what a truncated/concatenated buffer
    // looks like; webpki rejects it too, so do not silently accept it.
    if !rest.is_empty() {
        return Err(CertError::TrailingData(rest.len()));
    }
    let tbs = &cert.tbs_certificate;

    let mut san_dns = Vec::new();
    let mut san_ip = Vec::new();
    let san = tbs
        .subject_alternative_name()
        .map_err(|e| CertError::InvalidField {
            field: "subjectAltName",
            reason: e.to_string(),
        })?;
    if let Some(san) = san {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => san_dns.push((*d).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        san_ip.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }

    let is_ca = tbs
        .basic_constraints()
        .map_err(|e| CertError::InvalidField {
            field: "basicConstraints",
            reason: e.to_string(),
        })?
        .is_some_and(|bc| bc.value.ca);

    let key = describe_key(&cert)?;

    Ok(CertInfo {
        subject: tbs.subject.to_string(),
        subject_cn: last_cn(&tbs.subject),
        san_dns,
        san_ip,
        issuer: tbs.issuer.to_string(),
        issuer_cn: last_cn(&tbs.issuer),
        serial: tbs.raw_serial_as_string(),
        not_before: tbs.validity.not_before.to_datetime(),
        not_after: tbs.validity.not_after.to_datetime(),
        key_type: key.key_type,
        key_bits: key.bits,
        ec_curve: key.curve,
        signature_algorithm: oid_name(&cert.signature_algorithm.algorithm),
        self_signed: self_signature(&cert) == SelfSignature::Verified,
        is_ca,
    })
}

// RFC 6125 §6.4.4 says to use the "most specific" CN when several exist,
// which in practice (OpenSSL, NSS) means the last one in the DN.
fn last_cn(name: &x509_parser::x509::X509Name<'_>) -> Option<String> {
    name.iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .last()
        .map(str::to_owned)
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn oid_name(oid: &Oid<'_>) -> String {
    x509_parser::objects::oid2sn(oid, x509_parser::objects::oid_registry())
        .map(str::to_owned)
        .unwrap_or_else(|_| oid.to_id_string())
}

struct KeyDescription {
    key_type: String,
    bits: Option<u32>,
    curve: Option<String>,
}

fn describe_key(cert: &X509Certificate<'_>) -> Result<KeyDescription, CertError> {
    let spki = &cert.tbs_certificate.subject_pki;
    let alg = &spki.algorithm.algorithm;
    let key_bytes: &[u8] = &spki.subject_public_key.data;

    if *alg == OID_PKCS1_RSAENCRYPTION || *alg == OID_PKCS1_RSASSAPSS {
        let key_type = if *alg == OID_PKCS1_RSAENCRYPTION {
            "RSA"
        } else {
            "RSA-PSS"
        };
        // x509-parser only recognises rsaEncryption for `parsed()`; both OIDs
        // carry the same RSAPublicKey structure, so read the modulus directly.
        let bits = rsa_modulus_bits(key_bytes).ok_or_else(|| CertError::InvalidField {
            field: "subjectPublicKeyInfo",
            reason: "RSA public key is not a valid RSAPublicKey".into(),
        })?;
        return Ok(KeyDescription {
            key_type: key_type.into(),
            bits: Some(bits),
            curve: None,
        });
    }
    if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve_oid = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| Oid::try_from(p).ok());
        let (curve, bits) = match &curve_oid {
            Some(c) if *c == OID_EC_P256 => (Some("P-256".to_owned()), Some(256)),
            Some(c) if *c == OID_NIST_EC_P384 => (Some("P-384".to_owned()), Some(384)),
            Some(c) if *c == OID_NIST_EC_P521 => (Some("P-521".to_owned()), Some(521)),
            // Unknown curve: the point length is the best size estimate we
            // have (exact for curves whose order fills whole bytes).
            Some(c) => (Some(oid_name(c)), ec_point_bits(key_bytes)),
            // Implicit/specified-curve parameters: rare and not usable by
            // any TLS client we care about; still report the key type.
            None => (None, ec_point_bits(key_bytes)),
        };
        return Ok(KeyDescription {
            key_type: "EC".into(),
            bits,
            curve,
        });
    }
    if *alg == OID_SIG_ED25519 {
        return Ok(KeyDescription {
            key_type: "Ed25519".into(),
            bits: Some(256),
            curve: None,
        });
    }
    if *alg == OID_SIG_ED448 {
        return Ok(KeyDescription {
            key_type: "Ed448".into(),
            bits: Some(456),
            curve: None,
        });
    }
    if *alg == OID_KEY_TYPE_DSA {
        return Ok(KeyDescription {
            key_type: "DSA".into(),
            bits: dsa_p_bits(spki.algorithm.parameters.as_ref()),
            curve: None,
        });
    }
    Ok(KeyDescription {
        key_type: oid_name(alg),
        bits: None,
        curve: None,
    })
}

/// Bit length of an unsigned big-endian integer, ignoring leading zeros.
fn uint_bits(bytes: &[u8]) -> Option<u32> {
    let start = bytes.iter().position(|b| *b != 0)?;
    let significant = &bytes[start..];
    let bytes_len = u32::try_from(significant.len()).ok()?;
    let top = significant.first()?;
    Some((bytes_len - 1) * 8 + (8 - top.leading_zeros()))
}

// x509-parser's own RSA key_size() assumes exactly one leading zero byte; count
// the real bits so odd-sized moduli are reported correctly.
fn rsa_modulus_bits(rsa_public_key: &[u8]) -> Option<u32> {
    let (seq, _) = der_split(rsa_public_key)?;
    let (modulus, _) = der_split(seq)?;
    uint_bits(modulus)
}

fn ec_point_bits(point: &[u8]) -> Option<u32> {
    let coords = match point.split_first()? {
        (4, rest) => rest.len() / 2,
        (2 | 3, rest) => rest.len(),
        _ => return None,
    };
    u32::try_from(coords * 8).ok().filter(|b| *b > 0)
}

fn dsa_p_bits(params: Option<&Any<'_>>) -> Option<u32> {
    // Dss-Parms ::= SEQUENCE { p INTEGER, q INTEGER, g INTEGER }
    let (p, _) = der_split(params?.data)?;
    uint_bits(p)
}

/// Splits the first DER TLV off `input`, returning (contents, rest).
///
/// Hand-rolled because we need the exact encoded bytes of a few fields
/// (AlgorithmIdentifiers, Name) to compare with what webpki stores, and
/// x509-parser re-decodes those rather than keeping them.
fn der_split(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    // High-tag-number form never occurs in the structures we read.
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first_len, rest) = rest.split_first()?;
    let (len, rest) = if first_len < 0x80 {
        (usize::from(first_len), rest)
    } else {
        let n = usize::from(first_len & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(n);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    Some(rest.split_at(len))
}

fn der_contents(tlv: &[u8]) -> Option<&[u8]> {
    der_split(tlv).map(|(contents, _)| contents)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SelfSignature {
    NotSelfIssued,
    Verified,
    BadSignature,
    /// ring (via rustls) has no verifier for this key/signature combination.
    Unsupported,
}

fn webpki_algorithms() -> &'static [&'static dyn SignatureVerificationAlgorithm] {
    // The slice is 'static; building the provider only to read it is cheap
    // and keeps ring as the single source of crypto.
    rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all
}

/// Checks the certificate's signature against its own key using the same
/// ring algorithm table rustls/webpki use, so "self-signed" means exactly
/// what a TLS client would conclude.
fn self_signature(cert: &X509Certificate<'_>) -> SelfSignature {
    let tbs = &cert.tbs_certificate;
    if tbs.subject.as_raw() != tbs.issuer.as_raw() {
        return SelfSignature::NotSelfIssued;
    }
    // Certificate ::= SEQUENCE { tbs, signatureAlgorithm, signatureValue }
    let sig_alg_id = der_contents(cert.as_raw())
        .and_then(der_split)
        .and_then(|(_, after_tbs)| der_split(after_tbs))
        .map(|(sig_alg, _)| sig_alg);
    // The signature covers the whole TBS TLV, header included.
    let tbs_raw = tbs.as_ref();
    let spki_alg_id = der_contents(tbs.subject_pki.raw)
        .and_then(der_split)
        .map(|(alg, _)| alg);
    let (Some(sig_alg_id), Some(spki_alg_id)) = (sig_alg_id, spki_alg_id) else {
        return SelfSignature::Unsupported;
    };
    let public_key: &[u8] = &tbs.subject_pki.subject_public_key.data;
    let signature: &[u8] = &cert.signature_value.data;

    let mut any_candidate = false;
    for alg in webpki_algorithms() {
        if alg.signature_alg_id().as_ref() != sig_alg_id
            || alg.public_key_alg_id().as_ref() != spki_alg_id
        {
            continue;
        }
        any_candidate = true;
        if alg.verify_signature(public_key, tbs_raw, signature).is_ok() {
            return SelfSignature::Verified;
        }
    }
    if any_candidate {
        SelfSignature::BadSignature
    } else {
        SelfSignature::Unsupported
    }
}

/// RFC 6125 §6.4 reference-identifier matching of one presented DNS `pattern`
/// against `host`.
///
/// - ASCII case-insensitive; one trailing dot on either side is ignored.
/// - A wildcard is only honoured as the entire leftmost label (`*.example.com`)
///   and stands for exactly one non-empty label, so it matches
///   `mail.example.com` but neither `example.com` nor `a.b.example.com`.
///   Partial-label wildcards (`f*.example.com`), wildcards elsewhere, and
///   multiple wildcards never match.
/// - The wildcard's base must have at least two labels; `*.com` (or a bare
///   `*`) matches nothing. No public-suffix list is consulted, so `*.co.uk`
///   is accepted.
/// - IDNA A-labels (`xn--…`) are compared as plain ASCII; U-labels are not
///   converted.
/// - A host that is an IP literal (optionally bracketed) never matches, since
///   IP addresses are only valid in iPAddress SANs.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let host = normalize_name(host);
    let pattern = normalize_name(pattern);
    if host.is_empty() || pattern.is_empty() || parse_ip_host(&host).is_some() {
        return false;
    }
    if host.contains('*') || !labels_well_formed(&host) || !labels_well_formed(&pattern) {
        return false;
    }
    let Some(base) = pattern.strip_prefix("*.") else {
        return !pattern.contains('*') && pattern == host;
    };
    if base.contains('*') || !base.contains('.') {
        return false;
    }
    match host.split_once('.') {
        Some((first, rest)) => !first.is_empty() && rest == base,
        None => false,
    }
}

fn normalize_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

fn labels_well_formed(name: &str) -> bool {
    name.split('.').all(|label| !label.is_empty())
}

fn parse_ip_host(host: &str) -> Option<IpAddr> {
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    unbracketed.parse().ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameMatch {
    /// The subject CN matches (a SAN may match too). Clients that still look
    /// at the CN, or only at it, will accept the certificate.
    CommonName,
    /// Only a subjectAltName matches; CN-only clients will reject it.
    SanOnly,
    NoMatch,
}

/// Checks `host` against the leaf's CN first, then its SANs.
///
/// For an IP-literal host, iPAddress SANs are compared numerically, and a CN
/// that is the same IP literal also counts (legacy servers do this and
/// CN-reading clients accept it); DNS patterns never match IPs.
pub fn match_name(leaf: &CertInfo, host: &str) -> NameMatch {
    if let Some(ip) = parse_ip_host(normalize_name(host).as_str()) {
        let cn_ip = leaf
            .subject_cn
            .as_deref()
            .and_then(|cn| cn.trim().parse::<IpAddr>().ok());
        if cn_ip == Some(ip) {
            return NameMatch::CommonName;
        }
        let san_match = leaf
            .san_ip
            .iter()
            .any(|s| s.parse::<IpAddr>().ok() == Some(ip));
        return if san_match {
            NameMatch::SanOnly
        } else {
            NameMatch::NoMatch
        };
    }
    if leaf
        .subject_cn
        .as_deref()
        .is_some_and(|cn| host_matches(cn, host))
    {
        return NameMatch::CommonName;
    }
    if leaf.san_dns.iter().any(|p| host_matches(p, host)) {
        return NameMatch::SanOnly;
    }
    NameMatch::NoMatch
}

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
            webpki_algorithms(),
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

fn is_trust_anchor(cert: &X509Certificate<'_>, roots: &RootCertStore) -> bool {
    let tbs = &cert.tbs_certificate;
    // TrustAnchor stores the *contents* of the Name and SPKI SEQUENCEs.
    let (Some(subject), Some(spki)) = (
        der_contents(tbs.subject.as_raw()),
        der_contents(tbs.subject_pki.raw),
    ) else {
        return false;
    };
    roots
        .roots
        .iter()
        .any(|ta| ta.subject.as_ref() == subject && ta.subject_public_key_info.as_ref() == spki)
}

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
        _ => e.to_string(),
    }
}

/// The earliest `not_after` in `chain` (leaf included) and its index; the
/// lowest index wins ties, so the leaf is blamed before its issuers.
pub fn earliest_expiry(chain: &[CertInfo]) -> Option<(usize, OffsetDateTime)> {
    chain
        .iter()
        .enumerate()
        .map(|(i, c)| (i, c.not_after))
        .min_by_key(|(i, t)| (*t, *i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
        KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519,
    };
    use time::macros::datetime;

    const RSA_FIXTURE: &[u8] = include_bytes!("../tests/fixtures/rsa2048-selfsigned.der");

    struct Ca {
        der: Vec<u8>,
        issuer: Issuer<'static, KeyPair>,
    }

    fn dn(cn: &str) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        dn
    }

    fn ca_params(cn: &str) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
    }

    fn root_ca(cn: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let params = ca_params(cn);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        }
    }

    fn intermediate_ca(cn: &str, parent: &Ca) -> Ca {
        let key = KeyPair::generate().unwrap();
        let params = ca_params(cn);
        let cert = params.signed_by(&key, &parent.issuer).unwrap();
        Ca {
            der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf_params(cn: &str, sans: &[&str]) -> CertificateParams {
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name = dn(cn);
        params
    }

    fn leaf_signed_by(params: &CertificateParams, ca: &Ca) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, &ca.issuer).unwrap().der().to_vec()
    }

    fn roots_with(certs: &[&[u8]]) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        for der in certs {
            roots.add(CertificateDer::from(der.to_vec())).unwrap();
        }
        roots
    }

    #[test]
    fn ca_and_leaf_trusted_when_ca_is_a_root() {
        let ca = root_ca("Lab Root CA");
        let leaf = leaf_signed_by(&leaf_params("mail.lab.test", &["mail.lab.test"]), &ca);
        let roots = roots_with(&[&ca.der]);
        assert_eq!(
            verify_trust(std::slice::from_ref(&leaf), &roots),
            TrustOutcome::Trusted
        );
        // Sending the root too is redundant but harmless.
        assert_eq!(
            verify_trust(&[leaf.clone(), ca.der.clone()], &roots),
            TrustOutcome::Trusted
        );

        let info = parse_certificate(&leaf).unwrap();
        assert_eq!(info.subject, "CN=mail.lab.test");
        assert_eq!(info.subject_cn.as_deref(), Some("mail.lab.test"));
        assert_eq!(info.san_dns, vec!["mail.lab.test".to_owned()]);
        assert_eq!(info.issuer_cn.as_deref(), Some("Lab Root CA"));
        assert_eq!(info.key_type, "EC");
        assert_eq!(info.key_bits, Some(256));
        assert_eq!(info.ec_curve.as_deref(), Some("P-256"));
        assert_eq!(info.signature_algorithm, "ecdsa-with-SHA256");
        assert!(!info.self_signed);
        assert!(!info.is_ca);
        assert!(!info.serial.is_empty());
        assert_eq!(match_name(&info, "mail.lab.test"), NameMatch::CommonName);

        let ca_info = parse_certificate(&ca.der).unwrap();
        assert!(ca_info.is_ca);
        assert!(ca_info.self_signed);
    }

    #[test]
    fn ca_not_in_roots_unknown_issuer_or_incomplete() {
        let ca = root_ca("Private Root CA");
        let leaf = leaf_signed_by(&leaf_params("mail.lab.test", &["mail.lab.test"]), &ca);
        let other = root_ca("Some Other Root");
        let roots = roots_with(&[&other.der]);

        // Root sent along: the chain is complete, only trust is missing.
        assert_eq!(
            verify_trust(&[leaf.clone(), ca.der.clone()], &roots),
            TrustOutcome::UnknownIssuer {
                issuer: "CN=Private Root CA".into()
            }
        );
        // Leaf alone from an unknown CA: nothing to link to.
        assert_eq!(
            verify_trust(std::slice::from_ref(&leaf), &roots),
            TrustOutcome::IncompleteChain {
                missing_issuer: "CN=Private Root CA".into()
            }
        );
        // Empty root store behaves the same.
        assert_eq!(
            verify_trust(&[leaf, ca.der.clone()], &RootCertStore::empty()),
            TrustOutcome::UnknownIssuer {
                issuer: "CN=Private Root CA".into()
            }
        );
    }

    #[test]
    fn same_name_different_key_root_is_invalid_signature() {
        // webpki finds the anchor by name and reports the failed signature
        // check; it cannot know a different, untrusted CA shares the name.
        let real = root_ca("Lab Root CA");
        let impostor = root_ca("Lab Root CA");
        let leaf = leaf_signed_by(&leaf_params("mail.lab.test", &["mail.lab.test"]), &impostor);
        let roots = roots_with(&[&real.der]);
        let outcome = verify_trust(&[leaf], &roots);
        assert!(
            matches!(&outcome, TrustOutcome::Invalid { reason } if reason.contains("signature")),
            "{outcome:?}"
        );
    }

    #[test]
    fn omitted_intermediate_is_incomplete_chain() {
        let root = root_ca("Lab Root CA");
        let inter = intermediate_ca("Lab Issuing CA 1", &root);
        let leaf = leaf_signed_by(&leaf_params("mail.lab.test", &["mail.lab.test"]), &inter);
        let roots = roots_with(&[&root.der]);

        assert_eq!(
            verify_trust(&[leaf.clone(), inter.der.clone()], &roots),
            TrustOutcome::Trusted
        );
        assert_eq!(
            verify_trust(std::slice::from_ref(&leaf), &roots),
            TrustOutcome::IncompleteChain {
                missing_issuer: "CN=Lab Issuing CA 1".into()
            }
        );
        // Intermediate sent but its root is unknown and not sent.
        assert_eq!(
            verify_trust(&[leaf, inter.der.clone()], &RootCertStore::empty()),
            TrustOutcome::IncompleteChain {
                missing_issuer: "CN=Lab Root CA".into()
            }
        );
    }

    #[test]
    fn self_signed_leaf() {
        let key = KeyPair::generate().unwrap();
        let cert = leaf_params("mail.lab.test", &["mail.lab.test"])
            .self_signed(&key)
            .unwrap();
        let der = cert.der().to_vec();
        let info = parse_certificate(&der).unwrap();
        assert!(info.self_signed);
        let other = root_ca("Lab Root CA");
        assert_eq!(
            verify_trust(std::slice::from_ref(&der), &roots_with(&[&other.der])),
            TrustOutcome::SelfSigned
        );
        // Pinned: the self-signed leaf itself is the anchor.
        assert_eq!(
            verify_trust(std::slice::from_ref(&der), &roots_with(&[&der])),
            TrustOutcome::Trusted
        );
    }

    #[test]
    fn self_issued_but_not_self_signed_is_not_self_signed() {
        // Same name as its issuer, but signed by another key.
        let ca = root_ca("mail.lab.test");
        let leaf = leaf_signed_by(&leaf_params("mail.lab.test", &["mail.lab.test"]), &ca);
        let info = parse_certificate(&leaf).unwrap();
        assert_eq!(info.subject, info.issuer);
        assert!(!info.self_signed);
        assert_ne!(
            verify_trust(&[leaf], &RootCertStore::empty()),
            TrustOutcome::SelfSigned
        );
    }

    #[test]
    fn expired_leaf_is_still_trusted_and_reported_by_expiry() {
        let ca = root_ca("Lab Root CA");
        let mut params = leaf_params("mail.lab.test", &["mail.lab.test"]);
        params.not_before = datetime!(2020-01-01 0:00 UTC);
        params.not_after = datetime!(2021-01-01 0:00 UTC);
        let leaf = leaf_signed_by(&params, &ca);
        let roots = roots_with(&[&ca.der]);
        assert_eq!(
            verify_trust(&[leaf.clone(), ca.der.clone()], &roots),
            TrustOutcome::Trusted
        );
        let chain = [
            parse_certificate(&leaf).unwrap(),
            parse_certificate(&ca.der).unwrap(),
        ];
        assert_eq!(
            earliest_expiry(&chain),
            Some((0, datetime!(2021-01-01 0:00 UTC)))
        );
        assert_eq!(earliest_expiry(&[]), None);
    }

    #[test]
    fn expired_intermediate_still_trusted_and_blamed_by_expiry() {
        let root = root_ca("Lab Root CA");
        let key = KeyPair::generate().unwrap();
        let mut inter_params = ca_params("Lab Issuing CA 1");
        inter_params.not_before = datetime!(2019-01-01 0:00 UTC);
        inter_params.not_after = datetime!(2022-01-01 0:00 UTC);
        let inter_der = inter_params
            .signed_by(&key, &root.issuer)
            .unwrap()
            .der()
            .to_vec();
        let inter = Ca {
            der: inter_der,
            issuer: Issuer::new(inter_params, key),
        };
        let mut params = leaf_params("mail.lab.test", &["mail.lab.test"]);
        params.not_before = datetime!(2020-01-01 0:00 UTC);
        params.not_after = datetime!(2030-01-01 0:00 UTC);
        let leaf = leaf_signed_by(&params, &inter);
        assert_eq!(
            verify_trust(
                &[leaf.clone(), inter.der.clone()],
                &roots_with(&[&root.der])
            ),
            TrustOutcome::Trusted
        );
        let chain = [
            parse_certificate(&leaf).unwrap(),
            parse_certificate(&inter.der).unwrap(),
        ];
        assert_eq!(
            earliest_expiry(&chain),
            Some((1, datetime!(2022-01-01 0:00 UTC)))
        );
    }

    #[test]
    fn non_ca_issuer_is_invalid() {
        let root = root_ca("Lab Root CA");
        // An end-entity cert (no cA) used to sign another cert.
        let key = KeyPair::generate().unwrap();
        let mut params = leaf_params("Not A CA", &["notaca.lab.test"]);
        params.is_ca = IsCa::ExplicitNoCa;
        let not_ca_der = params.signed_by(&key, &root.issuer).unwrap().der().to_vec();
        let not_ca = Ca {
            der: not_ca_der,
            issuer: Issuer::new(params, key),
        };
        let leaf = leaf_signed_by(&leaf_params("mail.lab.test", &["mail.lab.test"]), &not_ca);
        let outcome = verify_trust(&[leaf, not_ca.der.clone()], &roots_with(&[&root.der]));
        assert!(
            matches!(outcome, TrustOutcome::Invalid { .. }),
            "{outcome:?}"
        );
    }

    #[test]
    fn garbage_and_empty_chains() {
        assert!(parse_certificate(b"").is_err());
        assert!(parse_certificate(b"\x30\x03\x02\x01\x01").is_err());
        assert!(parse_certificate(&[0xff; 64]).is_err());
        let err = parse_certificate(b"not a certificate at all").unwrap_err();
        assert!(!err.to_string().is_empty());

        let ca = root_ca("Lab Root CA");
        let mut trailing = ca.der.clone();
        trailing.push(0);
        assert_eq!(
            parse_certificate(&trailing),
            Err(CertError::TrailingData(1))
        );
        // Truncation anywhere must be an error, not a panic.
        for len in 0..ca.der.len() {
            assert!(parse_certificate(&ca.der[..len]).is_err());
        }

        let roots = roots_with(&[&ca.der]);
        assert!(matches!(
            verify_trust(&[], &roots),
            TrustOutcome::Invalid { .. }
        ));
        assert!(matches!(
            verify_trust(&[b"garbage".to_vec()], &roots),
            TrustOutcome::Invalid { .. }
        ));
        // A garbage "intermediate" does not stop a good chain.
        let leaf = leaf_signed_by(&leaf_params("mail.lab.test", &["mail.lab.test"]), &ca);
        assert_eq!(
            verify_trust(&[leaf, b"garbage".to_vec()], &roots),
            TrustOutcome::Trusted
        );
    }

    #[test]
    fn wildcard_cn() {
        let ca = root_ca("Lab Root CA");
        let leaf = leaf_signed_by(&leaf_params("*.lab.test", &["*.lab.test"]), &ca);
        let info = parse_certificate(&leaf).unwrap();
        assert_eq!(match_name(&info, "mail.lab.test"), NameMatch::CommonName);
        assert_eq!(match_name(&info, "MAIL.lab.test."), NameMatch::CommonName);
        assert_eq!(match_name(&info, "a.b.lab.test"), NameMatch::NoMatch);
        assert_eq!(match_name(&info, "lab.test"), NameMatch::NoMatch);
    }

    #[test]
    fn san_only_and_no_match() {
        let ca = root_ca("Lab Root CA");
        let leaf = leaf_signed_by(
            &leaf_params("Lab Mail Server", &["mail.lab.test", "192.0.2.10"]),
            &ca,
        );
        let info = parse_certificate(&leaf).unwrap();
        assert_eq!(info.subject_cn.as_deref(), Some("Lab Mail Server"));
        assert_eq!(info.san_ip, vec!["192.0.2.10".to_owned()]);
        assert_eq!(match_name(&info, "mail.lab.test"), NameMatch::SanOnly);
        assert_eq!(match_name(&info, "192.0.2.10"), NameMatch::SanOnly);
        assert_eq!(match_name(&info, "imap.lab.test"), NameMatch::NoMatch);
        assert_eq!(match_name(&info, "192.0.2.11"), NameMatch::NoMatch);
        assert_eq!(match_name(&info, ""), NameMatch::NoMatch);
    }

    #[test]
    fn key_types() {
        let rsa = parse_certificate(RSA_FIXTURE).unwrap();
        assert_eq!(rsa.key_type, "RSA");
        assert_eq!(rsa.key_bits, Some(2048));
        assert_eq!(rsa.ec_curve, None);
        assert_eq!(rsa.signature_algorithm, "sha256WithRSAEncryption");
        assert_eq!(rsa.subject_cn.as_deref(), Some("rsa.lab.test"));
        // openssl req -x509 marks it cA=TRUE; it is still self-signed.
        assert!(rsa.is_ca);
        assert!(rsa.self_signed);
        assert_eq!(
            verify_trust(&[RSA_FIXTURE.to_vec()], &RootCertStore::empty()),
            TrustOutcome::SelfSigned
        );
        assert_eq!(
            verify_trust(&[RSA_FIXTURE.to_vec()], &roots_with(&[RSA_FIXTURE])),
            TrustOutcome::Trusted
        );

        let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
        let ed = parse_certificate(
            leaf_params("ed.lab.test", &[])
                .self_signed(&key)
                .unwrap()
                .der(),
        )
        .unwrap();
        assert_eq!(ed.key_type, "Ed25519");
        assert_eq!(ed.key_bits, Some(256));
        assert_eq!(ed.signature_algorithm, "ed25519");
        assert!(ed.self_signed);

        let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
        let p384 = parse_certificate(
            leaf_params("p384.lab.test", &[])
                .self_signed(&key)
                .unwrap()
                .der(),
        )
        .unwrap();
        assert_eq!(p384.key_type, "EC");
        assert_eq!(p384.key_bits, Some(384));
        assert_eq!(p384.ec_curve.as_deref(), Some("P-384"));
        assert_eq!(p384.signature_algorithm, "ecdsa-with-SHA384");
        assert!(p384.self_signed);

        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let p256 = parse_certificate(
            leaf_params("p256.lab.test", &[])
                .self_signed(&key)
                .unwrap()
                .der(),
        )
        .unwrap();
        assert_eq!(p256.ec_curve.as_deref(), Some("P-256"));
    }

    #[test]
    fn host_matches_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("mail.example.com", "mail.example.com", true),
            ("MAIL.Example.COM", "mail.example.com", true),
            ("mail.example.com", "MAIL.EXAMPLE.COM", true),
            ("mail.example.com.", "mail.example.com", true),
            ("mail.example.com", "mail.example.com.", true),
            ("mail.example.com", "imap.example.com", false),
            ("mail.example.com", "example.com", false),
            ("*.example.com", "mail.example.com", true),
            ("*.example.com", "MAIL.EXAMPLE.COM.", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "a.b.example.com", false),
            ("*.example.com", ".example.com", false),
            ("*", "example", false),
            ("*", "mail.example.com", false),
            ("*.com", "example.com", false),
            ("*.", "example.", false),
            ("f*.example.com", "foo.example.com", false),
            ("*o.example.com", "foo.example.com", false),
            ("mail.*.com", "mail.example.com", false),
            ("*.*.example.com", "a.b.example.com", false),
            ("*.*.example.com", "a.example.com", false),
            ("*.example.com", "*.example.com", false),
            ("xn--bcher-kva.example", "xn--bcher-kva.example", true),
            (
                "*.xn--bcher-kva.example",
                "mail.xn--bcher-kva.example",
                true,
            ),
            ("*.example.com", "xn--bcher-kva.example.com", true),
            ("192.0.2.1", "192.0.2.1", false),
            ("*.2.0.192", "1.2.0.192", false),
            ("*.0.2.1", "192.0.2.1", false),
            ("::1", "::1", false),
            ("example.com", "[::1]", false),
            ("", "", false),
            ("example.com", "", false),
            ("mail..example.com", "mail..example.com", false),
        ];
        for (pattern, host, expected) in cases {
            assert_eq!(
                host_matches(pattern, host),
                *expected,
                "host_matches({pattern:?}, {host:?})"
            );
        }
    }

    #[test]
    fn earliest_expiry_ties_prefer_leaf() {
        let ca = root_ca("Lab Root CA");
        let leaf = leaf_signed_by(&leaf_params("mail.lab.test", &["mail.lab.test"]), &ca);
        // rcgen's default not_after is the same for both.
        let chain = [
            parse_certificate(&leaf).unwrap(),
            parse_certificate(&ca.der).unwrap(),
        ];
        assert_eq!(chain[0].not_after, chain[1].not_after);
        assert_eq!(earliest_expiry(&chain).map(|(i, _)| i), Some(0));
    }
}
