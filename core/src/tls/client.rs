//! The client model's side of TLS: which versions, suites and signature algorithms the probe's
//! handshakes offer, and whether the modelled client accepts a chain for a host (trust by its
//! key and signature rules, the name by its name rules). That verdict is the gate in front of
//! the password: the probe sends it exactly when the client would connect.
//!
//! rustls-webpki accepts RSA keys of 2048 bits and more and no SHA-1. A client that accepts
//! more (a JVM accepts 1024-bit RSA and, under a private CA, SHA-1) gets ring's legacy
//! verification algorithms here, used only where its model accepts them.

use std::net::IpAddr;
use std::sync::Arc;

use ring::signature as ring_sig;
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{
    AlgorithmIdentifier, CertificateDer, InvalidSignature, ServerName,
    SignatureVerificationAlgorithm, UnixTime, alg_id,
};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, RootCertStore, SignatureScheme, SupportedCipherSuite};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::client_model::{ClientModel, NameRules, PresentedNames};
use crate::profile::TlsVersion;

/// One ring verification algorithm under the identifiers webpki compares.
#[derive(Debug)]
struct RingAlg {
    public_key: AlgorithmIdentifier,
    signature: AlgorithmIdentifier,
    ring: &'static dyn ring_sig::VerificationAlgorithm,
}

impl SignatureVerificationAlgorithm for RingAlg {
    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        self.public_key
    }
    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        self.signature
    }
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        ring_sig::UnparsedPublicKey::new(self.ring, public_key)
            .verify(message, signature)
            .map_err(|_| InvalidSignature)
    }
}

/// `sha1WithRSAEncryption` (1.2.840.113549.1.1.5) with NULL parameters, as webpki stores an
/// AlgorithmIdentifier (the SEQUENCE's contents).
const RSA_PKCS1_SHA1_ID: AlgorithmIdentifier = AlgorithmIdentifier::from_slice(&[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05, 0x05, 0x00,
]);

macro_rules! alg {
    ($name:ident, $pk:expr, $sig:expr, $ring:expr) => {
        static $name: &dyn SignatureVerificationAlgorithm = &RingAlg {
            public_key: $pk,
            signature: $sig,
            ring: $ring,
        };
    };
}

alg!(
    ECDSA_P256_SHA256,
    alg_id::ECDSA_P256,
    alg_id::ECDSA_SHA256,
    &ring_sig::ECDSA_P256_SHA256_ASN1
);
alg!(
    ECDSA_P256_SHA384,
    alg_id::ECDSA_P256,
    alg_id::ECDSA_SHA384,
    &ring_sig::ECDSA_P256_SHA384_ASN1
);
alg!(
    ECDSA_P384_SHA256,
    alg_id::ECDSA_P384,
    alg_id::ECDSA_SHA256,
    &ring_sig::ECDSA_P384_SHA256_ASN1
);
alg!(
    ECDSA_P384_SHA384,
    alg_id::ECDSA_P384,
    alg_id::ECDSA_SHA384,
    &ring_sig::ECDSA_P384_SHA384_ASN1
);
alg!(
    ED25519,
    alg_id::ED25519,
    alg_id::ED25519,
    &ring_sig::ED25519
);
alg!(
    RSA_PSS_SHA256,
    alg_id::RSA_ENCRYPTION,
    alg_id::RSA_PSS_SHA256,
    &ring_sig::RSA_PSS_2048_8192_SHA256
);
alg!(
    RSA_PSS_SHA384,
    alg_id::RSA_ENCRYPTION,
    alg_id::RSA_PSS_SHA384,
    &ring_sig::RSA_PSS_2048_8192_SHA384
);
alg!(
    RSA_PSS_SHA512,
    alg_id::RSA_ENCRYPTION,
    alg_id::RSA_PSS_SHA512,
    &ring_sig::RSA_PSS_2048_8192_SHA512
);
alg!(
    RSA_2048_SHA256,
    alg_id::RSA_ENCRYPTION,
    alg_id::RSA_PKCS1_SHA256,
    &ring_sig::RSA_PKCS1_2048_8192_SHA256
);
alg!(
    RSA_2048_SHA384,
    alg_id::RSA_ENCRYPTION,
    alg_id::RSA_PKCS1_SHA384,
    &ring_sig::RSA_PKCS1_2048_8192_SHA384
);
alg!(
    RSA_2048_SHA512,
    alg_id::RSA_ENCRYPTION,
    alg_id::RSA_PKCS1_SHA512,
    &ring_sig::RSA_PKCS1_2048_8192_SHA512
);
alg!(
    RSA_2048_SHA1,
    alg_id::RSA_ENCRYPTION,
    RSA_PKCS1_SHA1_ID,
    &ring_sig::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY
);
alg!(
    RSA_1024_SHA256,
    alg_id::RSA_ENCRYPTION,
    alg_id::RSA_PKCS1_SHA256,
    &ring_sig::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY
);
alg!(
    RSA_1024_SHA512,
    alg_id::RSA_ENCRYPTION,
    alg_id::RSA_PKCS1_SHA512,
    &ring_sig::RSA_PKCS1_1024_8192_SHA512_FOR_LEGACY_USE_ONLY
);
alg!(
    RSA_1024_SHA1,
    alg_id::RSA_ENCRYPTION,
    RSA_PKCS1_SHA1_ID,
    &ring_sig::RSA_PKCS1_1024_8192_SHA1_FOR_LEGACY_USE_ONLY
);

/// The certificate signature algorithms by the OpenSSL names a client model lists them with,
/// and the smallest RSA key each verifies.
const CHAIN_ALGORITHMS: &[(&str, u32, &&dyn SignatureVerificationAlgorithm)] = &[
    ("ecdsa-with-SHA256", 0, &ECDSA_P256_SHA256),
    ("ecdsa-with-SHA256", 0, &ECDSA_P384_SHA256),
    ("ecdsa-with-SHA384", 0, &ECDSA_P256_SHA384),
    ("ecdsa-with-SHA384", 0, &ECDSA_P384_SHA384),
    ("ED25519", 0, &ED25519),
    ("rsassaPss", 2048, &RSA_PSS_SHA256),
    ("rsassaPss", 2048, &RSA_PSS_SHA384),
    ("rsassaPss", 2048, &RSA_PSS_SHA512),
    ("sha256WithRSAEncryption", 2048, &RSA_2048_SHA256),
    ("sha384WithRSAEncryption", 2048, &RSA_2048_SHA384),
    ("sha512WithRSAEncryption", 2048, &RSA_2048_SHA512),
    ("sha1WithRSAEncryption", 2048, &RSA_2048_SHA1),
    ("sha256WithRSAEncryption", 1024, &RSA_1024_SHA256),
    ("sha512WithRSAEncryption", 1024, &RSA_1024_SHA512),
    ("sha1WithRSAEncryption", 1024, &RSA_1024_SHA1),
];

/// What the handshakes offer and verify the server's handshake signature with. Whether the
/// client accepts the key is the policy's verdict on the chain ([`ClientPolicy::verify`]); the
/// handshake only proves the server holds it, so it verifies every key ring can (RSA from 1024
/// bits). PKCS#1 before PSS: ring verifies PSS only with keys of 2048 bits and more, and a
/// TLS 1.2 server picks by the client's order.
pub(crate) static HANDSHAKE_ALGORITHMS: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
    all: &[
        ECDSA_P256_SHA256,
        ECDSA_P256_SHA384,
        ECDSA_P384_SHA256,
        ECDSA_P384_SHA384,
        ED25519,
        RSA_PSS_SHA256,
        RSA_PSS_SHA384,
        RSA_PSS_SHA512,
        RSA_1024_SHA256,
        RSA_2048_SHA384,
        RSA_1024_SHA512,
        RSA_1024_SHA1,
    ],
    mapping: &[
        (
            SignatureScheme::ECDSA_NISTP384_SHA384,
            &[ECDSA_P384_SHA384, ECDSA_P256_SHA384],
        ),
        (
            SignatureScheme::ECDSA_NISTP256_SHA256,
            &[ECDSA_P256_SHA256, ECDSA_P384_SHA256],
        ),
        (SignatureScheme::ED25519, &[ED25519]),
        (SignatureScheme::RSA_PKCS1_SHA512, &[RSA_1024_SHA512]),
        (SignatureScheme::RSA_PKCS1_SHA384, &[RSA_2048_SHA384]),
        (SignatureScheme::RSA_PKCS1_SHA256, &[RSA_1024_SHA256]),
        (SignatureScheme::RSA_PSS_SHA512, &[RSA_PSS_SHA512]),
        (SignatureScheme::RSA_PSS_SHA384, &[RSA_PSS_SHA384]),
        (SignatureScheme::RSA_PSS_SHA256, &[RSA_PSS_SHA256]),
        (SignatureScheme::RSA_PKCS1_SHA1, &[RSA_1024_SHA1]),
    ],
};

/// Every signature algorithm the probe can verify, the legacy ones included: to tell whether a
/// certificate is self-signed whatever a client accepts.
pub fn every_algorithm() -> &'static [&'static dyn SignatureVerificationAlgorithm] {
    HANDSHAKE_ALGORITHMS.all
}

/// [`HANDSHAKE_ALGORITHMS`] without RSA-PSS, for a client that accepts RSA keys under 2048 bits
/// and speaks TLS 1.2 at most: ring verifies PSS only with keys of 2048 bits and more, and an
/// OpenSSL server that prefers its own order picks PSS whenever it is offered, so a 1024-bit
/// server could not prove its key. TLS 1.2 servers all sign with PKCS#1 too.
pub(crate) static HANDSHAKE_ALGORITHMS_SHORT_RSA: WebPkiSupportedAlgorithms =
    WebPkiSupportedAlgorithms {
        all: HANDSHAKE_ALGORITHMS.all,
        mapping: &[
            (
                SignatureScheme::ECDSA_NISTP384_SHA384,
                &[ECDSA_P384_SHA384, ECDSA_P256_SHA384],
            ),
            (
                SignatureScheme::ECDSA_NISTP256_SHA256,
                &[ECDSA_P256_SHA256, ECDSA_P384_SHA256],
            ),
            (SignatureScheme::ED25519, &[ED25519]),
            (SignatureScheme::RSA_PKCS1_SHA512, &[RSA_1024_SHA512]),
            (SignatureScheme::RSA_PKCS1_SHA384, &[RSA_2048_SHA384]),
            (SignatureScheme::RSA_PKCS1_SHA256, &[RSA_1024_SHA256]),
            (SignatureScheme::RSA_PKCS1_SHA1, &[RSA_1024_SHA1]),
        ],
    };

/// A client model made ready for TLS: the algorithms it accepts, its versions and suites.
#[derive(Clone, Debug)]
pub struct ClientPolicy {
    pub names: NameRules,
    rsa_min_bits: u32,
    versions: Vec<TlsVersion>,
    suites: Vec<String>,
    accepted: Vec<&'static dyn SignatureVerificationAlgorithm>,
}

impl ClientPolicy {
    /// The policy of a profile's client.
    pub fn of(model: &ClientModel) -> Arc<ClientPolicy> {
        let accepted = CHAIN_ALGORITHMS
            .iter()
            .filter(|(name, min, _)| {
                model.accepts_signature(name) && (*min != 1024 || model.keys.rsa_min_bits < 2048)
            })
            .map(|(_, _, a)| **a)
            .collect();
        Arc::new(ClientPolicy {
            names: model.names.clone(),
            rsa_min_bits: model.keys.rsa_min_bits,
            versions: model.tls_versions.clone(),
            suites: model.cipher_suites.clone(),
            accepted,
        })
    }

    /// Current practice, for a handshake outside any profile: RFC 6125 without the CN
    /// fallback, RSA from 2048 bits, no SHA-1, TLS 1.2 and 1.3, every suite rustls has.
    pub fn current_practice() -> Arc<ClientPolicy> {
        Arc::new(ClientPolicy {
            names: NameRules {
                common_name_fallback: false,
            },
            rsa_min_bits: crate::client_model::CURRENT_RSA_MIN_BITS,
            versions: vec![TlsVersion::Tls12, TlsVersion::Tls13],
            suites: rustls::crypto::ring::ALL_CIPHER_SUITES
                .iter()
                .map(|s| super::iana_cipher_name(s.suite()))
                .collect(),
            accepted: CHAIN_ALGORITHMS
                .iter()
                .filter(|(name, min, _)| *min != 1024 && !name.starts_with("sha1"))
                .map(|(_, _, a)| **a)
                .collect(),
        })
    }

    /// What the handshakes offer and verify the server's handshake signature with.
    pub(crate) fn handshake_algorithms(&self) -> &'static WebPkiSupportedAlgorithms {
        if self.rsa_min_bits < crate::client_model::CURRENT_RSA_MIN_BITS
            && !self.versions.contains(&TlsVersion::Tls13)
        {
            &HANDSHAKE_ALGORITHMS_SHORT_RSA
        } else {
            &HANDSHAKE_ALGORITHMS
        }
    }

    /// The certificate signature algorithms the client accepts (keys and hashes).
    pub fn accepted_algorithms(&self) -> &[&'static dyn SignatureVerificationAlgorithm] {
        &self.accepted
    }

    /// The rustls versions of the client's versions (rustls speaks 1.2 and 1.3 only; the rest
    /// is the legacy engine's).
    pub(crate) fn rustls_versions(&self) -> Vec<&'static rustls::SupportedProtocolVersion> {
        let mut v = Vec::new();
        if self.versions.contains(&TlsVersion::Tls13) {
            v.push(&rustls::version::TLS13);
        }
        if self.versions.contains(&TlsVersion::Tls12) {
            v.push(&rustls::version::TLS12);
        }
        v
    }

    /// The rustls suites of the client's suites, in rustls' order; TLS 1.3's suites when the
    /// client speaks TLS 1.3 (JSSE's TLS 1.3 suites are fixed).
    pub(crate) fn rustls_suites(&self) -> Vec<SupportedCipherSuite> {
        let tls13 = self.versions.contains(&TlsVersion::Tls13);
        rustls::crypto::ring::ALL_CIPHER_SUITES
            .iter()
            .filter(|s| {
                let name = super::iana_cipher_name(s.suite());
                match s {
                    SupportedCipherSuite::Tls13(_) => tls13,
                    SupportedCipherSuite::Tls12(_) => self.suites.contains(&name),
                }
            })
            .copied()
            .collect()
    }

    /// Whether the client offers TLS 1.2 or 1.3 with a suite rustls has; otherwise only the
    /// legacy engine can speak like it.
    pub fn rustls_can_speak(&self) -> bool {
        let suites = self.rustls_suites();
        !self.rustls_versions().is_empty()
            && suites.iter().any(|s| match s {
                SupportedCipherSuite::Tls13(_) => self.versions.contains(&TlsVersion::Tls13),
                SupportedCipherSuite::Tls12(_) => self.versions.contains(&TlsVersion::Tls12),
            })
    }

    /// Whether the client would connect to a server presenting this chain for
    /// `server_name`: trust by its algorithms and keys (no intermediate fetched), then the
    /// name by its name rules. The reason, in words, when it would not.
    pub fn verify(
        &self,
        roots: &RootCertStore,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), String> {
        let leaf = X509Certificate::from_der(end_entity.as_ref())
            .map(|(_, c)| c)
            .map_err(|e| format!("the server's certificate cannot be parsed: {e}"))?;
        // The name first: a name the client refuses is never relaxed (an insecure certificate
        // allowed relaxes trust only), so it must be the reason when both fail.
        let host = server_name.to_str();
        self.check_name(&leaf, &host)?;
        if !is_trust_anchor(&leaf, roots) {
            let parsed = ParsedCertificate::try_from(end_entity)
                .map_err(|e| format!("the server's certificate is rejected: {}", describe(&e)))?;
            verify_server_cert_signed_by_trust_anchor(
                &parsed,
                roots,
                intermediates,
                now,
                &self.accepted,
            )
            .map_err(|e| describe(&e))?;
        }
        self.check_keys(&leaf, intermediates)
    }

    fn check_keys(
        &self,
        leaf: &X509Certificate<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), String> {
        let others = intermediates
            .iter()
            .filter_map(|d| X509Certificate::from_der(d.as_ref()).ok().map(|(_, c)| c));
        for (i, c) in std::iter::once(leaf.clone()).chain(others).enumerate() {
            if let Some(bits) = rsa_bits(&c)
                && bits < self.rsa_min_bits
            {
                let which = if i == 0 {
                    "the server's certificate".to_string()
                } else {
                    format!("chain certificate {}", c.tbs_certificate.subject)
                };
                return Err(format!(
                    "{which} has a {bits}-bit RSA key; the client accepts {} bits and more",
                    self.rsa_min_bits
                ));
            }
        }
        Ok(())
    }

    fn check_name(&self, leaf: &X509Certificate<'_>, host: &str) -> Result<(), String> {
        let names = LeafNames::of(leaf);
        if self.names.accepts(names.presented(), host).is_some() {
            return Ok(());
        }
        Err(names.why_not(host, self.names.common_name_fallback))
    }
}

/// How every name refusal of [`ClientPolicy::verify`] begins.
const NAME_REFUSAL: &str = "the certificate is not valid for ";

/// Whether a verification error is the client refusing the name (which no setting relaxes)
/// rather than the chain.
pub fn is_name_refusal(verify_error: &str) -> bool {
    verify_error.starts_with(NAME_REFUSAL)
}

/// The names of a leaf, as the name rules read them.
#[derive(Debug, Default)]
pub struct LeafNames {
    pub common_name: Option<String>,
    pub dns: Vec<String>,
    pub ip: Vec<String>,
}

impl LeafNames {
    fn of(leaf: &X509Certificate<'_>) -> LeafNames {
        let mut out = LeafNames {
            common_name: leaf
                .tbs_certificate
                .subject
                .iter_common_name()
                .last()
                .and_then(|a| a.as_str().ok())
                .map(str::to_string),
            ..LeafNames::default()
        };
        if let Ok(Some(san)) = leaf.tbs_certificate.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    GeneralName::DNSName(d) => out.dns.push((*d).to_string()),
                    GeneralName::IPAddress(b) => {
                        if let Some(ip) = ip_of(b) {
                            out.ip.push(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        out
    }

    pub fn presented(&self) -> PresentedNames<'_> {
        PresentedNames {
            common_name: self.common_name.as_deref(),
            dns: &self.dns,
            ip: &self.ip,
        }
    }

    /// Why the client refuses the certificate for `host`, naming what it lists.
    pub fn why_not(&self, host: &str, cn_fallback: bool) -> String {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        if crate::client_model::parse_ip_host(host).is_some() {
            return format!(
                "{NAME_REFUSAL}{host}: an IP address is matched only against the subjectAltName's IP addresses, which are {}",
                list(&self.ip)
            );
        }
        if !self.dns.is_empty() {
            return format!(
                "{NAME_REFUSAL}{host}: its subjectAltName lists {} (clients read the subjectAltName, not the Common Name, when it has DNS names)",
                list(&self.dns)
            );
        }
        match (&self.common_name, cn_fallback) {
            (Some(cn), true) => format!(
                "{NAME_REFUSAL}{host}: it has no DNS name in its subjectAltName and its Common Name is {cn}"
            ),
            (_, false) => format!(
                "{NAME_REFUSAL}{host}: it has no DNS name in its subjectAltName (this client does not read the Common Name)"
            ),
            (None, true) => format!("{NAME_REFUSAL}{host}: it carries no DNS name at all"),
        }
    }
}

fn ip_of(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
        _ => None,
    }
}

fn rsa_bits(c: &X509Certificate<'_>) -> Option<u32> {
    match c.public_key().parsed() {
        Ok(PublicKey::RSA(k)) => u32::try_from(k.key_size()).ok(),
        _ => None,
    }
}

/// The leaf is itself a trust anchor (same subject and key): a pinned self-signed certificate
/// given with `--ca-file`, which a JVM trust store accepts as it is.
pub fn is_trust_anchor(cert: &X509Certificate<'_>, roots: &RootCertStore) -> bool {
    let tbs = &cert.tbs_certificate;
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

/// The contents of one DER TLV.
fn der_contents(tlv: &[u8]) -> Option<&[u8]> {
    let (_, rest) = tlv.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (l, rest) = rest.split_at(n);
        (
            l.iter().fold(0usize, |a, b| (a << 8) | usize::from(*b)),
            rest,
        )
    };
    rest.get(..len)
}

/// A verification error in words (never a Debug dump).
fn describe(e: &rustls::Error) -> String {
    use CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "the chain does not lead to a trusted root (an unknown issuer, or a missing intermediate the client does not fetch)".into(),
            C::BadSignature => "a certificate's signature does not verify with its issuer's key".into(),
            C::UnsupportedSignatureAlgorithmContext { .. }
            | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
                "a certificate in the chain is signed with an algorithm or key size the client does not accept".into()
            }
            C::Expired | C::ExpiredContext { .. } => "a certificate in the chain has expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "a certificate in the chain is not valid yet".into()
            }
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                "the certificate is not valid for TLS server authentication".into()
            }
            C::Revoked => "the certificate is revoked".into(),
            C::BadEncoding => "a certificate in the chain is malformed".into(),
            _ => "the chain is refused by the client's certificate rules".into(),
        },
        rustls::Error::General(s) => s.clone(),
        _ => "the certificate chain could not be verified".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Profile;

    #[test]
    fn the_hubspot_client_accepts_legacy_algorithms_and_current_practice_does_not() {
        let hub = ClientPolicy::of(&Profile::builtin("hubspot").unwrap().client);
        let sha1 = |p: &ClientPolicy| {
            p.accepted
                .iter()
                .any(|a| a.signature_alg_id() == RSA_PKCS1_SHA1_ID)
        };
        assert!(sha1(&hub));
        assert!(!sha1(&ClientPolicy::current_practice()));
        assert_eq!(hub.rustls_versions().len(), 1, "TLS 1.2 only");
        assert!(
            hub.rustls_suites()
                .iter()
                .all(|s| matches!(s, SupportedCipherSuite::Tls12(_)))
        );
        assert!(hub.rustls_can_speak());
    }

    #[test]
    fn errors_are_words() {
        let e = rustls::Error::InvalidCertificate(CertificateError::BadEncoding);
        let s = describe(&e);
        assert!(!s.contains('{') && !s.contains("Unsupported"), "{s}");
    }
}
