//! What an administrator should change, for each way the SMTP check fails, with the settings
//! of Postfix and Exchange. Kept apart from the logic so the logic reads short and the wording
//! can be reviewed in one place.

use mailprobe_core::{Endpoint, NetError};

pub const NO_STARTTLS: &str = "Enable STARTTLS on the submission port with a certificate for the server's name (Postfix: smtpd_tls_cert_file, smtpd_tls_key_file and smtpd_tls_security_level = encrypt on the submission service; Exchange: Enable-ExchangeCertificate -Services SMTP), or point mailprobe at the implicit-TLS port 465 with --smtp-security tls.";
pub const AUTH_BEFORE_TLS: &str = "Offer AUTH only after STARTTLS, so no password can cross the network in clear (Postfix: smtpd_tls_auth_only = yes; Exchange: Set-ReceiveConnector \"Client Frontend <server>\" -AuthMechanism Tls,BasicAuth,BasicAuthRequireTLS).";
pub const NO_AUTH: &str = "Enable SMTP AUTH after TLS on the submission service. Postfix: smtpd_sasl_auth_enable = yes with a SASL backend (smtpd_sasl_type = dovecot and smtpd_sasl_path = private/auth, or smtpd_sasl_type = cyrus). Exchange: on the \"Client Frontend <server>\" receive connector enable basic authentication offered only after starting TLS (Set-ReceiveConnector -AuthMechanism Tls,BasicAuth,BasicAuthRequireTLS).";
pub const NO_MECHANISM: &str = "Offer AUTH PLAIN or LOGIN after TLS: the CRM logs in with username and password (Dovecot SASL: auth_mechanisms = plain login; Cyrus SASL: mech_list: plain login; Exchange: enable basic authentication on the client receive connector).";
pub const REFUSED: &str = "Check the user name (often the full e-mail address) and the password; if they work in a mail client, check that the account may use authenticated SMTP (Microsoft 365: enable Authenticated SMTP for the mailbox) and the server's SASL log for the reason.";
pub const NO_ESMTP: &str = "The server answers HELO but refuses EHLO, so it can offer neither STARTTLS nor AUTH: point mailprobe at the submission service (587 or 465) of an ESMTP server.";

/// A remedy that fits an error on the SMTP port.
pub fn for_error(e: &NetError, ep: &Endpoint) -> String {
    let port = ep.port;
    match e {
        NetError::Timeout { .. } => format!(
            "The server on port {port} stopped answering: check that it is an SMTP server and is healthy, and that it does not delay or tarpit the probe's address (Postfix: postscreen greet delay, smtpd_client_connection_rate_limit; a firewall or proxy in between)."
        ),
        NetError::Reset | NetError::Closed(_) => format!(
            "The server on port {port} dropped the connection: check its log for why (connection limits, a blocklisted client address, a crashing smtpd or TLS setup)."
        ),
        NetError::Tls(_) => format!(
            "Check the TLS setup of port {port}: a certificate and key for {host}, and TLS 1.2 enabled (Postfix: smtpd_tls_cert_file, smtpd_tls_key_file, smtpd_tls_protocols; Exchange: the certificate bound to the SMTP service).",
            host = ep.host
        ),
        NetError::Protocol(_) => format!(
            "Port {port} did not answer like an SMTP submission server: check that mailprobe points at the right port, and the server's log for the reply above."
        ),
        NetError::StarttlsNotOffered => NO_STARTTLS.to_string(),
        NetError::Refused { .. }
        | NetError::ConnectTimeout { .. }
        | NetError::Unreachable { .. }
        | NetError::Dns { .. } => format!(
            "The probe reached port {port} once but not again: check the server's connection limits and any firewall rate limit for the probe's address."
        ),
        _ => format!("Check that the SMTP server on port {port} is up and healthy."),
    }
}

pub const AUTH_TEMPORARY: &str = "The server's authentication backend failed: check its SASL service (Postfix with Dovecot: the auth socket in smtpd_sasl_path and Dovecot's log).";

/// A port that answered in plain text to a ClientHello.
pub fn plaintext_on_tls_port(port: u16) -> String {
    format!(
        "Port {port} answered in plain text, not TLS: it probably uses STARTTLS; run with --smtp-security starttls, or point mailprobe at the implicit-TLS port (465)."
    )
}

/// A STARTTLS port that sent no greeting: it may expect TLS from the first byte.
pub fn no_greeting(e: &NetError, ep: &Endpoint) -> String {
    format!(
        "Port {port} sent no SMTP greeting: if it expects TLS from the first byte (implicit TLS, usually 465), run with --smtp-security tls; otherwise {rest}",
        port = ep.port,
        rest = for_error(e, ep)
    )
}

pub const STARTTLS_REFUSED: &str = "The server cannot start TLS: check its certificate and key files and its TLS log (Postfix: smtpd_tls_cert_file / smtpd_tls_key_file, `postfix check`; Exchange: the certificate bound to the SMTP service).";

/// None of the client's SASL mechanisms is offered: the ones to enable, named.
pub fn enable_mechanisms(client: &[String]) -> String {
    let list = client.join(" and ");
    let lower = client
        .iter()
        .map(|m| m.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "Offer AUTH {list} after TLS: the CRM's client logs in with these only (Dovecot SASL: auth_mechanisms = {lower}; Cyrus SASL: mech_list: {lower}; Exchange: enable basic authentication on the client receive connector)."
    )
}
