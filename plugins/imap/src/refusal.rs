//! A refused IMAP login, named by what the server said: the RFC 5530 response code picks the
//! summary and the remedy, and a refusal the code calls temporary is said to be temporary.

/// The response code of a tagged reply's text (`[AUTHENTICATIONFAILED] ...`), upper-cased.
pub(crate) fn response_code(words: &str) -> Option<String> {
    let rest = words.trim_start().strip_prefix('[')?;
    let end = rest.find([']', ' '])?;
    let code = rest.get(..end)?;
    (!code.is_empty()
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
    .then(|| code.to_ascii_uppercase())
}

/// What a refusal means, by its response code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meaning {
    /// A few words for the summary.
    pub what: &'static str,
    /// The server may accept the same login later.
    pub temporary: bool,
    pub remedy: &'static str,
}

pub(crate) const CREDENTIALS: &str = crate::remedies::LOGIN_REFUSED;

pub(crate) fn meaning(code: Option<&str>) -> Meaning {
    let m = |what, temporary, remedy| Meaning {
        what,
        temporary,
        remedy,
    };
    match code {
        Some("AUTHENTICATIONFAILED") => {
            m("the user name or the password is wrong", false, CREDENTIALS)
        }
        Some("UNAVAILABLE") => m(
            "the server's authentication backend is failing (not the password)",
            true,
            "The provider's authentication backend is failing, not the password: check the IMAP server's authentication service (LDAP, SQL, Dovecot's auth process) and its logs; the login is worth trying again later.",
        ),
        Some("LIMIT") => m(
            "the server refuses more connections or logins for this user",
            true,
            "Raise the server's per-user connection limit so the CRM can hold its sessions (Dovecot: mail_max_userip_connections, at least 5 plus the user's own clients), or close other clients of this account.",
        ),
        Some("EXPIRED") => m(
            "the account's password has expired",
            false,
            "The password has expired: set a new one for the account and enter it in the CRM.",
        ),
        Some("AUTHORIZATIONFAILED") => m(
            "the credentials are right but this user may not log in here",
            false,
            "The credentials were accepted but the account may not use IMAP (or act as this user): enable IMAP access for the mailbox.",
        ),
        Some("PRIVACYREQUIRED") => m(
            "the server wants a more private connection",
            false,
            "The server refuses the login over this connection: allow password logins over TLS (Dovecot: disable_plaintext_auth applies only to unencrypted connections).",
        ),
        Some("CONTACTADMIN") => m(
            "the server asks the user to contact the administrator",
            false,
            "The account is blocked or needs attention on the provider's side: the server asks the user to contact its administrator.",
        ),
        Some("INUSE") => m(
            "the mailbox is in use",
            true,
            "The mailbox is locked by another session: the login is worth trying again later; check for a client holding it.",
        ),
        Some("SERVERBUG") => m(
            "the server reports an internal error",
            true,
            "The server reports an internal error during login: check its logs.",
        ),
        _ => m("the server refused the credentials", false, CREDENTIALS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_read_and_named() {
        assert_eq!(
            response_code("[AUTHENTICATIONFAILED] Authentication failed."),
            Some("AUTHENTICATIONFAILED".into())
        );
        assert_eq!(
            response_code("[unavailable] backend down"),
            Some("UNAVAILABLE".into())
        );
        assert_eq!(response_code("Authentication failed."), None);
        assert_eq!(response_code("[]"), None);
        assert!(meaning(Some("UNAVAILABLE")).temporary);
        assert!(
            meaning(Some("UNAVAILABLE"))
                .remedy
                .contains("not the password")
        );
        assert!(meaning(Some("LIMIT")).remedy.contains("connection limit"));
        assert!(meaning(Some("EXPIRED")).remedy.contains("expired"));
        assert_eq!(meaning(None).remedy, CREDENTIALS);
        assert!(!meaning(Some("AUTHENTICATIONFAILED")).temporary);
    }
}
