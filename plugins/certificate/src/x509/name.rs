//! Host-name matching as the client model says (RFC 6125): does the client accept the
//! certificate for the host, and does the Common Name carry the FQDN as the vendor asks? The
//! rules themselves live in the core (`client_model`), where the password gate reads them too.

pub use mailprobe_core::client_model::host_matches;
use mailprobe_core::client_model::{NameRoute, NameRules, PresentedNames, parse_ip_host};

use super::CertInfo;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameMatch {
    /// The client accepts the certificate for the host (by a SAN) and the Common Name carries
    /// the FQDN too.
    CommonName,
    /// The client accepts it by a SAN, but the Common Name lacks the FQDN.
    SanOnly,
    /// The client accepts it only through the Common Name: the certificate has no DNS SAN.
    /// Clients that follow RFC 6125 strictly refuse it.
    CommonNameFallback,
    /// The client refuses it for the host, whatever the CN says.
    NoMatch,
}

/// [`match_name_with`] under RFC 6125 with the CN fallback (the `hubspot` client's rules).
pub fn match_name(leaf: &CertInfo, host: &str) -> NameMatch {
    match_name_with(
        leaf,
        host,
        &NameRules {
            common_name_fallback: true,
        },
    )
}

/// Whether a client with `rules` accepts `leaf` for `host`, and whether its CN carries the FQDN.
pub fn match_name_with(leaf: &CertInfo, host: &str, rules: &NameRules) -> NameMatch {
    let names = PresentedNames {
        common_name: leaf.subject_cn.as_deref(),
        dns: &leaf.san_dns,
        ip: &leaf.san_ip,
    };
    match rules.accepts(names, host) {
        None => NameMatch::NoMatch,
        Some(NameRoute::CommonName) => NameMatch::CommonNameFallback,
        Some(_) if cn_carries(leaf.subject_cn.as_deref(), host) => NameMatch::CommonName,
        Some(_) => NameMatch::SanOnly,
    }
}

/// The CN carries the FQDN: it matches it by RFC 6125 rules, or is the same IP address.
fn cn_carries(cn: Option<&str>, host: &str) -> bool {
    let Some(cn) = cn else { return false };
    match parse_ip_host(host.trim_end_matches('.')) {
        Some(ip) => cn.trim().parse().ok() == Some(ip),
        None => host_matches(cn, host),
    }
}
