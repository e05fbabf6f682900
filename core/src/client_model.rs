//! The CRM's client as data: the TLS versions and cipher suites it offers, how it checks a
//! certificate's name, the keys and signature algorithms it accepts, whether it fetches a
//! missing intermediate, the SASL mechanisms it uses and its timeouts. A profile holds one
//! (`client:`); the certificate verdicts, the gate that decides whether the password may be
//! sent and the login sessions all read it, so the probe behaves like that client rather than
//! like a browser or like rustls' defaults.
//!
//! The rules here are plain data and plain functions over names and numbers; the TLS side
//! (signature algorithms, chain verification) is in `tls::client`.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::profile::TlsVersion;

/// The client a profile models.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientModel {
    /// What kind of client this is, in words (shown by `mailprobe profiles`).
    pub kind: String,
    /// The TLS versions it offers.
    pub tls_versions: Vec<TlsVersion>,
    /// The cipher suites it offers (IANA names), in its order of preference.
    pub cipher_suites: Vec<String>,
    /// How it matches the server's name against the certificate.
    pub names: NameRules,
    /// The public keys it accepts.
    pub keys: KeyRules,
    /// The certificate signature algorithms it accepts (OpenSSL short names).
    pub signature_algorithms: Vec<String>,
    /// Whether it fetches an intermediate the server did not send (AIA); JSSE does not by
    /// default, so a chain the server sends incomplete fails.
    pub fetches_missing_intermediates: bool,
    /// The SASL mechanisms it uses, in the order it tries them.
    pub sasl_mechanisms: Vec<String>,
    pub timeouts: Timeouts,
}

/// How the client checks a name (RFC 6125).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NameRules {
    /// Whether the subject Common Name is read when the certificate has no DNS name in its
    /// subjectAltName (RFC 6125 §6.4.4; JSSE's HostnameChecker does). A DNS SAN, when there is
    /// one, always wins; an IP host is matched only against IP SANs.
    pub common_name_fallback: bool,
}

/// The keys the client accepts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyRules {
    /// The smallest RSA modulus, in bits. 1024 or more: nothing smaller can be verified here.
    pub rsa_min_bits: u32,
}

/// The client's timeouts, in seconds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    pub connect_seconds: u32,
    pub read_seconds: u32,
}

/// The signature algorithms the probe can verify, by their OpenSSL short names.
pub const KNOWN_SIGNATURE_ALGORITHMS: &[&str] = &[
    "sha1WithRSAEncryption",
    "sha256WithRSAEncryption",
    "sha384WithRSAEncryption",
    "sha512WithRSAEncryption",
    "rsassaPss",
    "ecdsa-with-SHA256",
    "ecdsa-with-SHA384",
    "ED25519",
];

/// The SASL mechanisms the probe can speak for a client.
pub const KNOWN_SASL_MECHANISMS: &[&str] = &["PLAIN", "LOGIN"];

/// Current practice (CA/Browser Forum baseline, browsers, OpenSSL's default security level):
/// what a client may still accept but a certificate should no longer use.
pub const CURRENT_RSA_MIN_BITS: u32 = 2048;

impl ClientModel {
    /// Checks what serde cannot: the numbers and names the probe can act on.
    pub fn check(&self) -> Result<(), String> {
        if self.tls_versions.is_empty() {
            return Err("client.tls_versions is empty: list the versions the client offers".into());
        }
        if self.cipher_suites.is_empty() {
            return Err("client.cipher_suites is empty: list the suites the client offers".into());
        }
        if self.keys.rsa_min_bits < 1024 {
            return Err(format!(
                "client.keys.rsa_min_bits is {}: the probe can verify RSA keys of 1024 bits and more; give 1024 or more",
                self.keys.rsa_min_bits
            ));
        }
        for a in &self.signature_algorithms {
            if !KNOWN_SIGNATURE_ALGORITHMS.contains(&a.as_str()) {
                return Err(format!(
                    "client.signature_algorithms: unknown algorithm `{a}`; known: {}",
                    KNOWN_SIGNATURE_ALGORITHMS.join(", ")
                ));
            }
        }
        if self.sasl_mechanisms.is_empty() {
            return Err(
                "client.sasl_mechanisms is empty: list the mechanisms the client uses".into(),
            );
        }
        for m in &self.sasl_mechanisms {
            if !KNOWN_SASL_MECHANISMS.contains(&m.as_str()) {
                return Err(format!(
                    "client.sasl_mechanisms: the probe cannot speak `{m}`; known: {}",
                    KNOWN_SASL_MECHANISMS.join(", ")
                ));
            }
        }
        if self.fetches_missing_intermediates {
            return Err("client.fetches_missing_intermediates: true is not supported: the probe never fetches an intermediate the server did not send (AIA), so it cannot tell what such a client decides; give false".into());
        }
        if self.timeouts.connect_seconds == 0 || self.timeouts.read_seconds == 0 {
            return Err("client.timeouts: give whole seconds above 0".into());
        }
        Ok(())
    }

    /// Whether the client accepts a certificate signed with `algorithm` (OpenSSL short name).
    pub fn accepts_signature(&self, algorithm: &str) -> bool {
        self.signature_algorithms.iter().any(|a| a == algorithm)
    }

    /// Whether the client speaks `version`.
    pub fn speaks(&self, version: TlsVersion) -> bool {
        self.tls_versions.contains(&version)
    }
}

/// How a client accepted a certificate for a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRoute {
    /// A DNS name in the subjectAltName matches.
    DnsSan,
    /// An IP address in the subjectAltName matches an IP host.
    IpSan,
    /// The certificate has no DNS SAN and its Common Name matches: clients that follow RFC 6125
    /// strictly (browsers, rustls) refuse it.
    CommonName,
}

/// The names a certificate carries, as the name check reads them.
#[derive(Clone, Copy, Debug)]
pub struct PresentedNames<'a> {
    pub common_name: Option<&'a str>,
    pub dns: &'a [String],
    pub ip: &'a [String],
}

impl NameRules {
    /// Whether the client accepts a certificate carrying `names` for `host`, and how.
    ///
    /// A DNS SAN, when the certificate has one, decides alone; the CN is read only when there
    /// is no DNS SAN and [`NameRules::common_name_fallback`] is set; an IP host matches only an
    /// IP SAN.
    pub fn accepts(&self, names: PresentedNames<'_>, host: &str) -> Option<NameRoute> {
        if let Some(ip) = parse_ip_host(&normalize_name(host)) {
            return names
                .ip
                .iter()
                .any(|s| s.parse::<IpAddr>().ok() == Some(ip))
                .then_some(NameRoute::IpSan);
        }
        if !names.dns.is_empty() {
            return names
                .dns
                .iter()
                .any(|p| host_matches(p, host))
                .then_some(NameRoute::DnsSan);
        }
        if self.common_name_fallback && names.common_name.is_some_and(|cn| host_matches(cn, host)) {
            return Some(NameRoute::CommonName);
        }
        None
    }
}

/// RFC 6125 §6.4 reference-identifier matching of one presented DNS `pattern` against `host`.
///
/// - ASCII case-insensitive; one trailing dot on either side is ignored.
/// - A wildcard is only honoured as the entire leftmost label (`*.example.com`) and stands for
///   exactly one non-empty label, so it matches `mail.example.com` but neither `example.com`
///   nor `a.b.example.com`. Partial-label wildcards (`f*.example.com`), wildcards elsewhere,
///   and multiple wildcards never match.
/// - The wildcard's base must have at least two labels; `*.com` (or a bare `*`) matches
///   nothing. No public-suffix list is consulted.
/// - A host that is an IP literal (optionally bracketed) never matches a DNS pattern.
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

/// An IP literal host (optionally bracketed).
pub fn parse_ip_host(host: &str) -> Option<IpAddr> {
    let unbracketed = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    unbracketed.parse().ok()
}

/// What the client and current practice say about one certificate's key and signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CryptoFinding {
    /// The client refuses it: the reason, in words.
    Refused(String),
    /// The client accepts it, current practice does not: the reason, in words.
    Weak(String),
}

impl ClientModel {
    /// Judges one certificate's key and signature algorithm. `position` names it in words
    /// ("the server's certificate", "chain certificate CN=…"). A self-signed root's own
    /// signature is not judged: nothing verifies it.
    pub fn judge_crypto(
        &self,
        position: &str,
        key_type: &str,
        key_bits: Option<u32>,
        signature_algorithm: &str,
        signature_checked: bool,
    ) -> Vec<CryptoFinding> {
        let mut out = Vec::new();
        if key_type == "RSA"
            && let Some(bits) = key_bits
        {
            if bits < self.keys.rsa_min_bits {
                out.push(CryptoFinding::Refused(format!(
                    "{position} has a {bits}-bit RSA key; the client accepts {} bits and more",
                    self.keys.rsa_min_bits
                )));
            } else if bits < CURRENT_RSA_MIN_BITS {
                out.push(CryptoFinding::Weak(format!(
                    "{position} has a {bits}-bit RSA key: the client accepts it, but current practice is {CURRENT_RSA_MIN_BITS} bits or more"
                )));
            }
        }
        if signature_checked {
            if !self.accepts_signature(signature_algorithm) {
                out.push(CryptoFinding::Refused(format!(
                    "{position} is signed with {signature_algorithm}, which the client does not accept"
                )));
            } else if signature_algorithm.starts_with("sha1") {
                out.push(CryptoFinding::Weak(format!(
                    "{position} is signed with {signature_algorithm} (SHA-1): the client accepts it, but SHA-1 signatures are no longer trusted by current clients"
                )));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(fallback: bool) -> NameRules {
        NameRules {
            common_name_fallback: fallback,
        }
    }

    fn names<'a>(cn: Option<&'a str>, dns: &'a [String], ip: &'a [String]) -> PresentedNames<'a> {
        PresentedNames {
            common_name: cn,
            dns,
            ip,
        }
    }

    #[test]
    fn a_dns_san_decides_alone_and_the_cn_is_a_fallback_only() {
        let host = "mail.example.com";
        let other = vec!["other.example.com".to_string()];
        // CN = host, SAN lists another name: every client refuses it.
        assert_eq!(
            rules(true).accepts(names(Some(host), &other, &[]), host),
            None
        );
        // CN only, no SAN at all: JSSE, OpenSSL and Python accept it.
        assert_eq!(
            rules(true).accepts(names(Some(host), &[], &[]), host),
            Some(NameRoute::CommonName)
        );
        assert_eq!(
            rules(false).accepts(names(Some(host), &[], &[]), host),
            None
        );
        let wild = vec!["*.example.com".to_string()];
        assert_eq!(
            rules(true).accepts(names(Some("x"), &wild, &[]), host),
            Some(NameRoute::DnsSan)
        );
        assert_eq!(
            rules(true).accepts(names(None, &wild, &[]), "a.mail.example.com"),
            None
        );
    }

    #[test]
    fn an_ip_host_is_matched_against_ip_sans_only() {
        let ip = vec!["127.0.0.1".to_string()];
        assert_eq!(
            rules(true).accepts(names(None, &[], &ip), "127.0.0.1"),
            Some(NameRoute::IpSan)
        );
        assert_eq!(
            rules(true).accepts(names(Some("127.0.0.1"), &[], &[]), "127.0.0.1"),
            None
        );
    }

    #[test]
    fn wildcards_follow_rfc_6125() {
        assert!(host_matches("*.example.com", "mail.example.com"));
        assert!(host_matches("MAIL.example.com.", "mail.example.COM"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", "a.b.example.com"));
        assert!(!host_matches("f*.example.com", "foo.example.com"));
        assert!(!host_matches("*.com", "example.com"));
        assert!(!host_matches("*.example.com", "127.0.0.1"));
    }

    #[test]
    fn weak_and_refused_crypto_are_told_apart_in_words() {
        let p = crate::profile::Profile::builtin("hubspot").unwrap();
        let c = &p.client;
        let f = c.judge_crypto("the leaf", "RSA", Some(1024), "sha1WithRSAEncryption", true);
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(f.iter().all(|x| matches!(x, CryptoFinding::Weak(_))));
        let mut strict = c.clone();
        strict.keys.rsa_min_bits = 2048;
        strict
            .signature_algorithms
            .retain(|a| !a.starts_with("sha1"));
        let f = strict.judge_crypto("the leaf", "RSA", Some(1024), "sha1WithRSAEncryption", true);
        assert!(f.iter().all(|x| matches!(x, CryptoFinding::Refused(_))));
        assert!(
            c.judge_crypto("root", "RSA", Some(4096), "sha1WithRSAEncryption", false)
                .is_empty()
        );
    }

    #[test]
    fn the_model_is_checked_with_messages_that_say_what_to_give() {
        let p = crate::profile::Profile::builtin("hubspot").unwrap();
        let mut c = p.client.clone();
        c.keys.rsa_min_bits = 512;
        assert!(c.check().unwrap_err().contains("1024 or more"));
        let mut c = p.client.clone();
        c.sasl_mechanisms = vec!["GSSAPI".into()];
        assert!(c.check().unwrap_err().contains("cannot speak `GSSAPI`"));
        let mut c = p.client.clone();
        c.fetches_missing_intermediates = true;
        assert!(c.check().unwrap_err().contains("never fetches"));
    }
}
