//! IMAP credentials in a form the protocol allows (RFC 3501 section 4.3).
//!
//! A quoted string carries only 7-bit text without CR, LF or NUL. A user name or password with
//! CR, LF or 8-bit bytes (any non-ASCII password) must go as a literal, `{n}` CRLF and n octets:
//! non-synchronizing (`{n+}`, RFC 7888) when the server announced LITERAL+, else synchronizing,
//! each part sent after the server's `+` continuation. A literal carries any octet but NUL
//! (`CHAR8`), and SASL PLAIN excludes NUL too (RFC 4616), so a password with a NUL byte is one no
//! IMAP login can carry: [`login_form`] says so, and the caller reports it as the user's to fix.
//!
//! async-imap only sends quoted strings, so a literal LOGIN is made in the stream under it: the
//! client sends `LOGIN` with two quotable placeholders, and [`crate::Budgeted`] replaces that
//! one command with the literal form, reading the continuations itself (a refusal instead of a
//! continuation is passed on to the client, which reports it as the reply to LOGIN).

use zeroize::Zeroizing;

/// The user name async-imap is given when the real one goes as a literal.
pub const USER_PLACEHOLDER: &str = "mailprobe-literal-user-7c1f";
/// The password async-imap is given when the real one goes as a literal.
pub const PASSWORD_PLACEHOLDER: &str = "mailprobe-literal-password-7c1f";

/// How LOGIN can carry a user name and password.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginForm {
    /// Both fit quoted strings.
    Quoted,
    /// One of them needs a literal.
    Literal,
}

/// Why no IMAP login can carry these credentials.
pub const NUL_REFUSED: &str = "the user name or password holds a NUL byte, which no IMAP login can carry (neither a literal, RFC 3501, nor SASL PLAIN, RFC 4616); remove it from the secret";

/// The form LOGIN must use, or why none can carry the credentials.
pub fn login_form(user: &str, password: &str) -> Result<LoginForm, &'static str> {
    let all = user.bytes().chain(password.bytes());
    let mut literal = false;
    for b in all {
        match b {
            0 => return Err(NUL_REFUSED),
            b'\r' | b'\n' | 0x80..=0xff => literal = true,
            _ => {}
        }
    }
    Ok(if literal {
        LoginForm::Literal
    } else {
        LoginForm::Quoted
    })
}

/// What the placeholder LOGIN line becomes.
pub(crate) struct Rewrite {
    /// ` LOGIN "placeholder" "placeholder"` CRLF: what follows the tag in async-imap's line.
    pub(crate) needle: Vec<u8>,
    pub(crate) user: Zeroizing<Vec<u8>>,
    pub(crate) password: Zeroizing<Vec<u8>>,
    /// The server announced LITERAL+.
    pub(crate) plus: bool,
}

impl Rewrite {
    pub(crate) fn new(user: &str, password: &str, plus: bool) -> Rewrite {
        Rewrite {
            needle: format!(" LOGIN \"{USER_PLACEHOLDER}\" \"{PASSWORD_PLACEHOLDER}\"\r\n")
                .into_bytes(),
            user: Zeroizing::new(user.as_bytes().to_vec()),
            password: Zeroizing::new(password.as_bytes().to_vec()),
            plus,
        }
    }

    /// The parts to send for a line carrying `tag`; every part after the first waits for a
    /// continuation, unless LITERAL+ lets it all go at once.
    pub(crate) fn parts(&self, tag: &[u8]) -> Vec<Zeroizing<Vec<u8>>> {
        let m = if self.plus { "+" } else { "" };
        let mut first = Zeroizing::new(tag.to_vec());
        first.extend_from_slice(format!(" LOGIN {{{}{m}}}\r\n", self.user.len()).as_bytes());
        let mut second = Zeroizing::new(self.user.to_vec());
        second.extend_from_slice(format!(" {{{}{m}}}\r\n", self.password.len()).as_bytes());
        let mut third = Zeroizing::new(self.password.to_vec());
        third.extend_from_slice(b"\r\n");
        if self.plus {
            let mut all = first;
            all.extend_from_slice(&second);
            all.extend_from_slice(&third);
            vec![all]
        } else {
            vec![first, second, third]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_follows_rfc_3501() {
        assert_eq!(login_form("alice", "p\"a\\ss"), Ok(LoginForm::Quoted));
        assert_eq!(login_form("alice", "pa\r\nss"), Ok(LoginForm::Literal));
        assert_eq!(login_form("alice", "pässword"), Ok(LoginForm::Literal));
        assert_eq!(login_form("älice", "x"), Ok(LoginForm::Literal));
        assert_eq!(login_form("alice", "a\0b"), Err(NUL_REFUSED));
    }

    #[test]
    fn parts_are_synchronizing_unless_literal_plus() {
        let r = Rewrite::new("u", "p\r\nw", false);
        let parts = r.parts(b"A1");
        assert_eq!(&parts[0][..], b"A1 LOGIN {1}\r\n");
        assert_eq!(&parts[1][..], b"u {4}\r\n");
        assert_eq!(&parts[2][..], b"p\r\nw\r\n");
        let r = Rewrite::new("u", "p\r\nw", true);
        assert_eq!(
            &r.parts(b"A1")[0][..],
            b"A1 LOGIN {1+}\r\nu {4+}\r\np\r\nw\r\n"
        );
    }
}
