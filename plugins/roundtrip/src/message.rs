//! The test message: a minimal RFC 5322 message with a Message-ID no other message has, and a
//! marker header by which any run finds the test messages of earlier runs (a run that was
//! cancelled between sending and deleting leaves one behind; the next run removes it).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc2822;

/// The header that marks a test message. Its value is the message's own Message-ID.
pub const MARKER: &str = "X-Mailprobe-Roundtrip";
/// How every test Message-ID starts (after `<`): what the marker search looks for.
pub const ID_PREFIX: &str = "mailprobe-roundtrip.";
/// The subject of every test message.
pub const SUBJECT: &str = "mailprobe round-trip test";

/// A unique Message-ID: `<mailprobe-roundtrip.<random>@<domain>>`.
pub fn message_id(domain: &str) -> String {
    let random: String = (0..24)
        .map(|_| fastrand::alphanumeric().to_ascii_lowercase())
        .collect();
    format!("<{ID_PREFIX}{random}@{}>", id_domain(domain))
}

/// The domain part of a Message-ID: the given one when it is a plain host name, else one that
/// cannot collide with a real one.
fn id_domain(domain: &str) -> &str {
    let plain = !domain.is_empty()
        && domain.len() <= 253
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if plain { domain } else { "mailprobe.invalid" }
}

/// The domain for Message-IDs: the login's when it is an address, else the SMTP host's.
pub fn domain_for(login: &str, smtp_host: &str) -> String {
    match login.rsplit_once('@') {
        Some((_, d)) if !d.is_empty() => d.to_string(),
        _ => smtp_host.to_string(),
    }
}

/// The message, with CRLF line endings. `from` and `to` are plain addresses (checked when the
/// configuration was loaded), `id` a [`message_id`].
pub fn compose(from: &str, to: &str, id: &str, now: OffsetDateTime) -> String {
    let date = now
        .format(&Rfc2822)
        .unwrap_or_else(|_| "Thu, 01 Jan 1970 00:00:00 +0000".to_string());
    format!(
        "Date: {date}\r\n\
         From: <{from}>\r\n\
         To: <{to}>\r\n\
         Subject: {SUBJECT}\r\n\
         Message-ID: {id}\r\n\
         {MARKER}: {id}\r\n\
         Auto-Submitted: auto-generated\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         This message tests that mail sent through this mailbox's SMTP server arrives in its\r\n\
         inbox. mailprobe deletes it as soon as it has arrived; if you see it, a check was\r\n\
         interrupted, and the next check removes it.\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_safe_to_search_for() {
        let a = message_id("lab.test");
        let b = message_id("lab.test");
        assert_ne!(a, b);
        assert!(
            a.starts_with("<mailprobe-roundtrip.") && a.ends_with("@lab.test>"),
            "{a}"
        );
        assert!(!a.contains('"') && !a.contains('\\') && !a.contains(' '));
        assert!(message_id("bad host\"x").ends_with("@mailprobe.invalid>"));
    }

    #[test]
    fn the_domain_is_the_logins_else_the_smtp_hosts() {
        assert_eq!(domain_for("alice@lab.test", "smtp.x.test"), "lab.test");
        assert_eq!(domain_for("alice", "smtp.x.test"), "smtp.x.test");
    }

    #[test]
    fn the_message_is_minimal_crlf_and_marked() {
        let when = OffsetDateTime::from_unix_timestamp(1_798_761_600).unwrap();
        let m = compose(
            "a@x.test",
            "b@x.test",
            "<mailprobe-roundtrip.1@x.test>",
            when,
        );
        assert!(
            m.starts_with("Date: Fri, 01 Jan 2027 00:00:00 +0000\r\n"),
            "{m}"
        );
        for header in [
            "From: <a@x.test>\r\n",
            "To: <b@x.test>\r\n",
            "Subject: mailprobe round-trip test\r\n",
            "Message-ID: <mailprobe-roundtrip.1@x.test>\r\n",
            "X-Mailprobe-Roundtrip: <mailprobe-roundtrip.1@x.test>\r\n",
        ] {
            assert!(m.contains(header), "{header:?} in {m}");
        }
        assert!(m.contains("\r\n\r\n"), "a body after the headers");
        assert!(!m.replace("\r\n", "").contains('\n'), "bare LF in {m:?}");
        assert!(m.lines().all(|l| l.len() <= 998));
    }
}
