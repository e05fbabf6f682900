//! What to change when a certificate check does not pass. Kept apart from the judging so the
//! long advice can be read and corrected on its own; where the fix is a server setting, it is
//! keyed by the server software the lab and most mailboxes run (Dovecot for IMAP, Postfix for
//! SMTP).

use mailprobe_core::Protocol;

/// The certificate cannot be parsed at all.
pub(crate) const UNPARSABLE: &str = "Install a valid X.509 certificate on the server.";
/// The leaf is its own issuer.
pub(crate) const SELF_SIGNED: &str = "Install a certificate signed by a public CA (e.g. Let's Encrypt); otherwise the user must allow an insecure certificate when connecting the inbox.";
/// The chain ends at a root nobody trusts.
pub(crate) const UNKNOWN_ISSUER: &str = "Install a certificate from a CA the CRM trusts (a public CA); for a private CA, the user must allow an insecure certificate (and mailprobe needs --ca-file to trust it).";
/// webpki rejects the chain for another reason.
pub(crate) const INVALID_CHAIN: &str =
    "Install a valid certificate chain issued for TLS server use.";
/// The expiry check got an empty chain.
pub(crate) const NO_CERTIFICATE: &str = "Install a certificate.";
/// The leaf's validity starts in the future.
pub(crate) const NOT_YET_VALID: &str = "Check the server's clock and the certificate's validity dates; install a certificate that is valid now.";

/// Where each server is told which chain to send.
fn chain_setting(p: Protocol) -> &'static str {
    match p {
        Protocol::Imap => "Dovecot: ssl_cert = </path/fullchain.pem",
        Protocol::Smtp => "Postfix: smtpd_tls_chain_files = /path/key.pem, /path/fullchain.pem",
    }
}

/// No chain could be read because TLS itself did not work.
pub(crate) fn make_tls_work(authority: &str, encryption_id: &str) -> String {
    format!("Make TLS work on {authority} (see {encryption_id}) so the certificate can be checked.")
}

/// Only a subjectAltName matches, and the profile asks for the Common Name.
pub(crate) fn common_name_only(host: &str) -> String {
    format!(
        "Reissue the certificate with Common Name (CN) = {host}: the CRM checks the CN, not only the subjectAltName."
    )
}

/// The client refuses the certificate for the host.
pub(crate) fn wrong_name(host: &str) -> String {
    format!(
        "Install a certificate that lists {host} in its subjectAltName (clients read the SAN) and as its Common Name, or configure the CRM with a host name the certificate carries."
    )
}

/// Accepted only through the Common Name: no DNS name in the SAN.
pub(crate) fn add_san(host: &str) -> String {
    format!(
        "Reissue the certificate with subjectAltName DNS:{host} (keep CN = {host}): clients that follow RFC 6125 strictly ignore the Common Name."
    )
}

/// A key or signature algorithm the client refuses.
pub(crate) const REISSUE_STRONGER: &str = "Reissue the certificate (and any intermediate the server sends) with an RSA key of 2048 bits or more (or an ECDSA key) signed with SHA-256 or stronger.";

/// Keys or algorithms the client accepts but current practice does not.
pub(crate) fn weak_crypto(findings: &[&str]) -> String {
    let mut what = Vec::new();
    if findings.iter().any(|f| f.contains("-bit RSA key")) {
        let bits: Vec<&str> = findings
            .iter()
            .filter_map(|f| f.split_once("-bit RSA key").map(|(a, _)| a))
            .filter_map(|a| a.rsplit(' ').next())
            .collect();
        what.push(format!(
            "replace the {}-bit RSA key with one of 2048 bits or more (or ECDSA P-256)",
            bits.first().copied().unwrap_or("short")
        ));
    }
    if findings.iter().any(|f| f.contains("SHA-1")) {
        what.push(
            "have it signed with SHA-256 instead of SHA-1 (sha1WithRSAEncryption)".to_string(),
        );
    }
    format!(
        "Reissue the certificate: {}. The CRM's client accepts it today, current clients do not.",
        what.join("; ")
    )
}

/// The issuer is neither sent nor trusted: a missing intermediate, or a private CA.
pub(crate) fn incomplete_chain(missing_issuer: &str, p: Protocol) -> String {
    format!(
        "If `{missing_issuer}` is an intermediate of a public CA, configure the server to send the full chain ({}); if it is a private CA, install a certificate from a public CA or let the user allow an insecure certificate (and give mailprobe --ca-file).",
        chain_setting(p)
    )
}

/// The leaf expires soon or has expired.
pub(crate) fn renew(host: &str) -> String {
    format!(
        "Renew the certificate of {host} (and reload the server); automate renewal, e.g. with an ACME client."
    )
}

/// An intermediate the server sends has expired.
pub(crate) fn expired_intermediate(p: Protocol) -> String {
    format!(
        "Replace the expired intermediate in the chain the server sends; {}.",
        chain_setting(p)
    )
}

/// An intermediate the server sends expires soon.
pub(crate) fn expiring_intermediate(p: Protocol) -> String {
    format!(
        "Update the intermediate certificate in the chain the server sends; {}.",
        chain_setting(p)
    )
}
