//! What to change when the server holds fewer sessions than the CRM needs, keyed by the server
//! software the `imap` plugin identified. Kept apart from the check so the long, vendor-specific
//! advice can be read and corrected without reading the logic.

use mailprobe_core::Protocol;

/// The remedy for the protocols that fell `short`, each with the number of sessions it needs.
pub(crate) fn remedy(short: &[(Protocol, usize)], software: Option<&str>) -> String {
    let parts: Vec<String> = short
        .iter()
        .map(|&(p, need)| match p {
            Protocol::Imap => imap(software, need),
            Protocol::Smtp => smtp(need),
        })
        .collect();
    if parts.is_empty() {
        "Check the server's connection limits.".to_string()
    } else {
        parts.join("; ") + "."
    }
}

/// The per-user/per-IP IMAP limit of each known server, by its identified name.
fn imap(software: Option<&str>, need: usize) -> String {
    match software {
        Some("Dovecot") => format!(
            "Dovecot: raise `mail_max_userip_connections` (protocol imap) to at least {} (the CRM holds {need} at once from one address; 10 or more leaves room for mail clients)",
            need.max(10)
        ),
        Some("Courier-IMAP") => format!(
            "Courier: raise MAXPERIP in /etc/courier/imapd to at least {} (default 4)",
            need.max(10)
        ),
        Some("Gmail") => "Gmail allows 15 simultaneous IMAP connections per account: close other clients of this mailbox".to_string(),
        Some("Microsoft Exchange") => format!(
            "Exchange: raise MaxConnectionsPerUser / MaxConnectionFromSingleIP of the IMAP4 service (Set-ImapSettings) to at least {need}"
        ),
        _ => format!("Raise the IMAP server's per-user/per-IP connection limit to at least {need}"),
    }
}

/// SMTP servers are not told apart: Postfix, the common one, is named.
fn smtp(need: usize) -> String {
    format!(
        "Raise the SMTP server's concurrent connection limit to at least {need} (Postfix: `smtpd_client_connection_count_limit`, or list the CRM's addresses in `smtpd_client_event_limit_exceptions`)"
    )
}
