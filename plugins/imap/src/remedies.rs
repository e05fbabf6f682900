//! What an administrator should change, for each way an IMAP check fails, with the setting of
//! each server software where it differs. Kept apart from the logic so the logic reads short
//! and the wording can be reviewed in one place.

/// The server does not advertise STARTTLS on a STARTTLS port.
pub fn enable_starttls(port: u16) -> String {
    format!(
        "Enable TLS on the IMAP server so it advertises STARTTLS on port {port} (Dovecot: `ssl = required` with `ssl_cert = </path/fullchain.pem` and `ssl_key = </path/key.pem`; Courier: TLS_CERTFILE in imapd-ssl), or use implicit TLS on port 993."
    )
}

pub const HANDSHAKE_FAILED: &str = "The TLS handshake failed: check that the server has a certificate and key configured (Dovecot: ssl_cert/ssl_key) and accepts TLS 1.2 (Dovecot: ssl_min_protocol = TLSv1.2), and that this port speaks the security mode given (--imap-security).";

/// No greeting on a STARTTLS port: it may expect TLS from the first byte.
pub fn no_greeting(port: u16) -> String {
    format!(
        "No IMAP greeting arrived: if port {port} expects TLS from the first byte (implicit TLS, usually 993), use --imap-security tls (imap_security: tls); otherwise check the IMAP service."
    )
}

pub const NO_TLS: &str = "Check that the IMAP service on this port answers with an `* OK` greeting and accepts STARTTLS or implicit TLS.";

pub const SESSION_BROKEN: &str = "The server broke off the IMAP session before login: check the IMAP service's logs (connection limits per user or per address, a proxy in front of it), and that it answers with an `* OK` greeting.";

/// The software is one the profile's client does not support.
pub fn unsupported_software(software: &str) -> String {
    if software.eq_ignore_ascii_case("Courier-IMAP") {
        "Courier-IMAP is not supported by the CRM: move the mailbox to a supported IMAP server (Dovecot, Cyrus, Microsoft Exchange, or a hosted service such as Gmail or Microsoft 365), or put a non-Courier IMAP proxy in front of it.".to_string()
    } else {
        format!(
            "{software} is not supported by the CRM: move the mailbox to a supported IMAP server (Dovecot, Cyrus, Microsoft Exchange, or a hosted service such as Gmail or Microsoft 365), or put a supported IMAP proxy in front of it."
        )
    }
}

/// The software could not be identified.
pub fn unknown_software(unsupported: &[String]) -> String {
    if unsupported.is_empty() {
        "mailprobe could not tell the server software from its greeting, capabilities or ID response.".to_string()
    } else {
        format!(
            "mailprobe could not tell the server software from its greeting, capabilities or ID response: confirm it is not {}, which the CRM does not support.",
            unsupported.join(" or ")
        )
    }
}

pub const PREAUTH: &str = "Turn off pre-authentication for the CRM's address: the CRM logs in with username and password.";

pub const NO_LOGIN_METHOD: &str = "Allow password logins over TLS: Dovecot `auth_mechanisms = plain login` (with `disable_plaintext_auth = yes` only unencrypted logins are refused); Exchange: enable `PlainTextLogin` or `SecureLogin` for IMAP4 (Set-ImapSettings -LoginType SecureLogin).";

pub const LOGIN_REFUSED: &str = "Check the user name (often the full e-mail address) and the password (an app password when the account uses two-factor authentication), and that IMAP access is enabled for this account.";

pub const LOGIN_BROKEN: &str =
    "The server broke off the session during login: check the IMAP service's logs.";

pub const LOGIN_TIMEOUT: &str = "The server did not answer the login in time: check the IMAP service's authentication backend (LDAP, SQL) and its logs.";

pub const LIST_FAILED: &str = "The server refused or broke off LIST: check the IMAP service's logs and the mailbox's storage.";

pub const INBOX_BROKEN: &str = "The server broke off the session when INBOX was opened: check the mailbox's storage and the IMAP service's logs.";

pub const INBOX_REFUSED: &str = "The server refuses to open INBOX: check the mailbox's storage (permissions, quota, corruption) in the IMAP service's logs.";

pub const NO_SENT: &str = "Create a Sent folder (the CRM syncs sent mail from it): in Dovecot, give the inbox namespace a `mailbox Sent` block with `special_use = \\Sent` and `auto = subscribe`; or create a folder named `Sent` from any mail client.";

pub const SENT_REFUSED: &str = "The server lists the Sent folder but refuses to open it: check that folder's storage and permissions (Dovecot: `doveadm mailbox status -u USER all Sent`).";

pub const SENT_BROKEN: &str = "The server broke off the session when the Sent folder was opened: check the IMAP service's logs.";
