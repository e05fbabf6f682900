//! Parsing one DER certificate into [`CertInfo`]: the names, dates, key and signature facts
//! the checks report, detached from the DER buffer so they outlive the connection.

use std::net::IpAddr;

use time::OffsetDateTime;
use x509_parser::asn1_rs::{Any, Oid};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_DSA, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
    OID_PKCS1_RSAENCRYPTION, OID_PKCS1_RSASSAPSS, OID_SIG_ED448, OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;

use super::der::{SelfSignature, der_split, self_signature};

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
