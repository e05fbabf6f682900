//! A refused SMTP AUTH, named by its enhanced status code (RFC 3463, RFC 4954 §6): the code
//! picks the words and the remedy.

use crate::client::SmtpReply;

/// The enhanced status code of a reply's first line (`5.7.8`), when it has one whose class
/// matches the reply code's.
pub(crate) fn enhanced_status(r: &SmtpReply) -> Option<String> {
    let first = r.lines.first()?;
    let word = first.split_whitespace().next()?;
    let mut parts = word.split('.');
    let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    let ok = parts.next().is_none()
        && matches!(class, "2" | "4" | "5")
        && digits(subject, 3)
        && digits(detail, 3)
        && r.code / 100 == u16::from(class.as_bytes()[0] - b'0');
    ok.then(|| word.to_string())
}

/// What an enhanced status code means for a login.
pub(crate) struct Meaning {
    pub what: &'static str,
    pub remedy: &'static str,
}

pub(crate) fn meaning(code: &str) -> Option<Meaning> {
    let m = |what, remedy| Some(Meaning { what, remedy });
    match code {
        "5.7.8" => m(
            "the user name or the password is wrong",
            crate::remedies::REFUSED,
        ),
        "4.7.0" | "4.7.1" => m(
            "a temporary authentication failure on the server",
            crate::remedies::AUTH_TEMPORARY,
        ),
        "5.7.9" => m(
            "the server refuses this mechanism as too weak",
            "The server refuses PLAIN/LOGIN as too weak: allow them over TLS (Postfix with Dovecot: auth_mechanisms = plain login; smtpd_tls_auth_only = yes keeps them off unencrypted sessions).",
        ),
        "5.7.11" => m(
            "the server wants encryption for this mechanism",
            "The server asks for encryption before this mechanism: offer AUTH only after STARTTLS (or on the implicit-TLS port) and make sure the session is encrypted.",
        ),
        "4.7.12" | "5.7.12" => m(
            "the password must be changed first",
            "The account needs a password change (a transition is required): set a new password and enter it in the CRM.",
        ),
        "5.7.139" | "5.7.57" => m(
            "authenticated SMTP is disabled for this account",
            "Enable authenticated SMTP (SMTP AUTH) for this mailbox (Microsoft 365: Set-CASMailbox -SmtpClientAuthenticationDisabled $false, and in the tenant's security defaults).",
        ),
        "5.7.0" => m(
            "a security policy of the server refuses the login",
            "The server refuses the login for a policy reason: check its SASL log for the reason (a blocked account, a client address not allowed).",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, line: &str) -> SmtpReply {
        SmtpReply {
            code,
            lines: vec![line.to_string()],
        }
    }

    #[test]
    fn enhanced_codes_are_read_only_when_they_match_the_reply() {
        assert_eq!(
            enhanced_status(&reply(535, "5.7.8 Error: authentication failed")).as_deref(),
            Some("5.7.8")
        );
        assert_eq!(
            enhanced_status(&reply(454, "4.7.0 Temporary authentication failure")).as_deref(),
            Some("4.7.0")
        );
        assert_eq!(enhanced_status(&reply(535, "Authentication failed")), None);
        assert_eq!(enhanced_status(&reply(535, "4.7.0 mismatch")), None);
        assert_eq!(enhanced_status(&reply(535, "5.7.8.9 x")), None);
        assert!(meaning("5.7.8").is_some() && meaning("5.7.139").is_some());
        assert!(meaning("5.1.1").is_none());
    }
}
