//! Raw DER and signature helpers that both parsing (is it self-signed?) and trust (is it a
//! trust anchor?) need: the exact encoded bytes webpki compares, which x509-parser re-decodes.

use rustls_pki_types::SignatureVerificationAlgorithm;
use x509_parser::certificate::X509Certificate;

/// Splits the first DER TLV off `input`, returning (contents, rest).
///
/// Hand-rolled because we need the exact encoded bytes of a few fields
/// (AlgorithmIdentifiers, Name) to compare with what webpki stores, and
/// x509-parser re-decodes those rather than keeping them.
pub(super) fn der_split(input: &[u8]) -> Option<(&[u8], &[u8])> {
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

pub(super) fn der_contents(tlv: &[u8]) -> Option<&[u8]> {
    der_split(tlv).map(|(contents, _)| contents)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SelfSignature {
    NotSelfIssued,
    Verified,
    BadSignature,
    /// ring (via rustls) has no verifier for this key/signature combination.
    Unsupported,
}

pub(super) fn webpki_algorithms() -> &'static [&'static dyn SignatureVerificationAlgorithm] {
    // The slice is 'static; building the provider only to read it is cheap
    // and keeps ring as the single source of crypto.
    rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all
}

/// Checks the certificate's signature against its own key using the same
/// ring algorithm table rustls/webpki use, so "self-signed" means exactly
/// what a TLS client would conclude.
pub(super) fn self_signature(cert: &X509Certificate<'_>) -> SelfSignature {
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
    for alg in mailprobe_core::tls::every_algorithm() {
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
