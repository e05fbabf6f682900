//! What an administrator should change, per protocol and server software.

use mailprobe_core::{Endpoint, Protocol};

/// Enabling a version (`min`, e.g. "TLS 1.2") on the port's server.
pub fn enable_version(ep: &Endpoint, min: &str) -> String {
    match ep.protocol {
        Protocol::Imap => format!(
            "Enable {min} on the IMAP server: Dovecot `ssl_min_protocol = TLSv1.2` (and no ssl_max_protocol below it); Courier `TLS_PROTOCOL`/`TLS_PRIORITY`; Exchange: enable TLS 1.2 in SCHANNEL."
        ),
        Protocol::Smtp => format!(
            "Enable {min} on the SMTP server: Postfix `smtpd_tls_protocols = >=TLSv1.2` and `smtpd_tls_mandatory_protocols = >=TLSv1.2`; Exchange: enable TLS 1.2 in SCHANNEL."
        ),
    }
}

/// STARTTLS is not offered.
pub fn enable_starttls(ep: &Endpoint) -> String {
    format!(
        "Enable STARTTLS on {} (or use the implicit-TLS port).",
        ep.authority()
    )
}

/// No greeting on a STARTTLS port: it may be an implicit-TLS port.
pub fn maybe_implicit_tls(ep: &Endpoint) -> String {
    format!(
        "If port {} expects TLS from the first byte (implicit TLS), use --{}-security tls (or {}_security: tls); otherwise check the server.",
        ep.port,
        ep.protocol.prefix(),
        ep.protocol.prefix()
    )
}

/// The port does not seem to speak TLS at all.
pub fn check_tls(ep: &Endpoint) -> String {
    format!(
        "Check that {} speaks TLS ({}).",
        ep.authority(),
        ep.security.as_str()
    )
}
