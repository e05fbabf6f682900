//! Host-name matching (RFC 6125): does the certificate carry the name the user gave, in its
//! Common Name or only in a subjectAltName?

use std::net::IpAddr;

use super::CertInfo;

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
