//! The one place where text that came from a server is made safe to keep: the password and
//! every form in which a server could echo it back are removed, control characters are escaped
//! and the length is bounded. The runner passes every result, step and plugin error through it,
//! so a plugin that forgets cannot leak a password into a report, a span, a log or an alert.
//!
//! Order matters: redaction runs on the whole text before anything is cut, since cutting first
//! would leave the start of a password that straddles the cut.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// The longest text kept, in characters; longer text is cut and ends with `…`.
pub const MAX_TEXT: usize = 1024;

/// What replaces a removed secret. Fallbacks exist because a password could itself occur in
/// the marker (a password `a` is in `[redacted]`).
const MARKERS: [&str; 3] = ["[redacted]", "***", ""];

/// Characters of the standard base64 alphabet, padding included.
fn is_b64(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '='
}

/// Removes one password (and its echoes) from server text; see the module documentation.
pub struct Redactor {
    /// Literal forms: the password, and as IMAP-quoted and Rust-`Debug` escaping show it.
    literal: Vec<Zeroizing<String>>,
    /// Base64 substrings that only the password's bytes determine, one per alignment of the
    /// password in the encoded data (AUTH PLAIN puts it after `\0user\0`, whose length the
    /// redactor need not know), and the whole AUTH LOGIN encoding. A match removes the whole
    /// base64 word around it.
    base64: Vec<Zeroizing<String>>,
    max: usize,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redactor(***)")
    }
}

impl Redactor {
    /// A redactor for `password`; an empty password only escapes and bounds.
    pub fn new(password: &str) -> Self {
        let mut r = Redactor {
            literal: Vec::new(),
            base64: Vec::new(),
            max: MAX_TEXT,
        };
        if password.is_empty() {
            return r;
        }
        let push = |v: &mut Vec<Zeroizing<String>>, s: Zeroizing<String>| {
            if !s.is_empty() && !v.iter().any(|x| **x == *s) {
                v.push(s);
            }
        };
        push(&mut r.literal, Zeroizing::new(password.to_string()));
        // IMAP quoted string (what LOGIN sends for a password with `"` or `\`).
        push(
            &mut r.literal,
            Zeroizing::new(password.replace('\\', "\\\\").replace('"', "\\\"")),
        );
        // `{:?}`, which async-imap's errors use for the server's text.
        let debug = Zeroizing::new(format!("{password:?}"));
        if let Some(inner) = debug.get(1..debug.len().saturating_sub(1)) {
            push(&mut r.literal, Zeroizing::new(inner.to_string()));
        }
        push(&mut r.base64, Zeroizing::new(STANDARD.encode(password)));
        let n = password.len();
        // A core shorter than four characters would match ordinary words ("e" is in "error"),
        // and says too little of the password to matter: passwords of four bytes or more
        // always have cores that long.
        let min_core = 4;
        for k in 0..3usize {
            let mut raw = Zeroizing::new(vec![0u8; k]);
            raw.extend_from_slice(password.as_bytes());
            let enc = Zeroizing::new(STANDARD_NO_PAD.encode(&*raw));
            // Characters whose six bits all come from the password.
            let start = (8 * k).div_ceil(6);
            let end = (8 * (k + n)) / 6;
            if end >= start + min_core
                && let Some(core) = enc.get(start..end)
            {
                push(&mut r.base64, Zeroizing::new(core.to_string()));
            }
        }
        r
    }

    /// The same redactor, cutting text at `max` characters instead of [`MAX_TEXT`].
    pub fn with_max(mut self, max: usize) -> Self {
        self.max = max;
        self
    }

    /// Redacts, escapes control characters, and bounds the length, in that order.
    pub fn clean(&self, text: &str) -> String {
        for marker in MARKERS {
            let redacted = self.redact(text, marker, true);
            let escaped = escape_controls(&redacted);
            // Escaping could spell out a password made of escape sequences (`\x07`). Command
            // echoes are not looked for again: their line ends are escaped by now.
            let escaped = self.redact(&escaped, marker, false);
            let out = truncate(&escaped, self.max);
            if !self.leaks(&out) {
                return out;
            }
        }
        // Unreachable in practice: the empty marker removes every match until none is left.
        String::new()
    }

    /// Whether `text` still holds the password in any form this redactor knows.
    pub fn leaks(&self, text: &str) -> bool {
        self.literal
            .iter()
            .chain(&self.base64)
            .any(|n| text.contains(n.as_str()))
    }

    /// [`Redactor::clean`] over every string in a JSON value, object keys included (an ID
    /// response's keys are the server's words too).
    pub fn clean_json(&self, v: &mut Value) {
        match v {
            Value::String(s) => *s = self.clean(s),
            Value::Array(items) => items.iter_mut().for_each(|i| self.clean_json(i)),
            Value::Object(map) => self.clean_map(map),
            _ => {}
        }
    }

    pub fn clean_map(&self, map: &mut Map<String, Value>) {
        let old = std::mem::take(map);
        for (k, mut v) in old {
            self.clean_json(&mut v);
            map.insert(self.clean(&k), v);
        }
    }

    /// Replaces every match with `marker` until none is left (a replacement can join two
    /// halves into a new match when the marker is empty).
    fn redact(&self, text: &str, marker: &str, commands: bool) -> String {
        let mut out = text.to_string();
        // Each pass removes at least one match or stops; the bound is a guard, not a limit
        // reached in practice.
        for _ in 0..64 {
            let ranges = self.matches(&out, commands);
            if ranges.is_empty() {
                return out;
            }
            let mut next = String::with_capacity(out.len());
            let mut at = 0;
            for (a, b) in ranges {
                next.push_str(&out[at..a]);
                next.push_str(marker);
                at = b;
            }
            next.push_str(&out[at..]);
            if next == out {
                return out;
            }
            out = next;
        }
        out
    }

    /// Byte ranges to remove, sorted and merged, all on char boundaries.
    fn matches(&self, text: &str, commands: bool) -> Vec<(usize, usize)> {
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for n in &self.literal {
            for (i, m) in text.match_indices(n.as_str()) {
                ranges.push((i, i + m.len()));
            }
        }
        for n in &self.base64 {
            for (i, m) in text.match_indices(n.as_str()) {
                let start = text[..i]
                    .char_indices()
                    .rev()
                    .take_while(|(_, c)| is_b64(*c))
                    .last()
                    .map_or(i, |(j, _)| j);
                let end = text[i + m.len()..]
                    .char_indices()
                    .find(|(_, c)| !is_b64(*c))
                    .map_or(text.len(), |(j, _)| i + m.len() + j);
                ranges.push((start, end));
            }
        }
        // Text that some code cut before it got here (`…`) may end in the start of a password.
        for (cut, _) in text.match_indices('…') {
            let before = &text[..cut];
            for (needles, min) in [(&self.literal, 1), (&self.base64, 4)] {
                for n in needles {
                    let longest = n
                        .char_indices()
                        .map(|(k, _)| k)
                        .filter(|&k| k >= min && before.ends_with(&n[..k]))
                        .max();
                    if let Some(k) = longest {
                        let mut start = cut - k;
                        if min > 1 {
                            start = before[..start]
                                .char_indices()
                                .rev()
                                .take_while(|(_, c)| is_b64(*c))
                                .last()
                                .map_or(start, |(j, _)| j);
                        }
                        ranges.push((start, cut));
                    }
                }
            }
        }
        if commands {
            ranges.extend(command_arguments(text));
        }
        ranges.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
        for (a, b) in ranges {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        merged
    }
}

/// The argument lists of echoed `TAG LOGIN ...` and `TAG AUTHENTICATE ...` commands, up to the
/// end of their line: whatever escaping or quoting the server applied, the password is in there.
/// A tag is a word with a digit (`a1`, `A0001`), or `*`/`+`, so that prose such as "logged in
/// with AUTHENTICATE PLAIN" is left alone.
fn command_arguments(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for verb in ["LOGIN ", "AUTHENTICATE "] {
        for (i, _) in text.match_indices(verb) {
            let before = &text[..i];
            let Some(head) = before.strip_suffix(' ') else {
                continue;
            };
            let tag_start = head.rfind(|c: char| c.is_whitespace()).map_or(0, |j| {
                j + head[j..].chars().next().map_or(1, char::len_utf8)
            });
            let tag = &head[tag_start..];
            // `AUTH LOGIN PLAIN` (an SMTP mechanism list, `250-AUTH`) is not an echo.
            let mechanisms = tag.to_ascii_uppercase().ends_with("AUTH");
            let tag_like = tag == "*"
                || tag == "+"
                || (!tag.is_empty()
                    && tag.bytes().any(|b| b.is_ascii_digit())
                    && tag.bytes().all(|b| b.is_ascii_graphic()));
            if !tag_like || mechanisms {
                continue;
            }
            let args = i + verb.len();
            let end = text[args..]
                .find(['\r', '\n'])
                .map_or(text.len(), |j| args + j);
            if end > args {
                out.push((args, end));
            }
        }
    }
    out
}

/// Escapes characters that a terminal or a log viewer would act on: C0 and C1 controls (ESC,
/// CR, BEL, CSI...) as `\x1b`/`\u{9b}`, and the bidirectional overrides that reorder what is
/// shown.
pub fn escape_controls(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let n = c as u32;
        if n < 0x20 || n == 0x7f {
            let _ = write!(out, "\\x{n:02x}");
        } else if c.is_control() || matches!(n, 0x200e | 0x200f | 0x202a..=0x202e | 0x2066..=0x2069)
        {
            let _ = write!(out, "\\u{{{n:x}}}");
        } else {
            out.push(c);
        }
    }
    out
}

/// At most `max` characters, the last being `…` when something was cut.
pub fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some(_) if max == 0 => String::new(),
        Some(_) => {
            let cut = s.char_indices().nth(max - 1).map_or(s.len(), |(i, _)| i);
            let mut out = s[..cut].to_string();
            out.push('…');
            out
        }
    }
}

/// Redacts `password` from `text`, escapes it and bounds it: [`Redactor::clean`] for one text.
pub fn redact(text: &str, password: &str) -> String {
    Redactor::new(password).clean(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn plain(user: &str, pw: &str) -> String {
        STANDARD.encode(format!("\0{user}\0{pw}"))
    }

    #[test]
    fn removes_the_password_and_its_base64_forms() {
        let pw = "hunter2-Secret";
        let text = format!(
            "NO bad {pw} / {} / {} / end",
            STANDARD.encode(pw),
            plain("alice@example.com", pw)
        );
        let out = redact(&text, pw);
        assert_eq!(out, "NO bad [redacted] / [redacted] / [redacted] / end");
    }

    #[test]
    fn login_echo_loses_its_whole_argument_list() {
        let out = redact(r#"a1 NO you said: a1 LOGIN "alice" "p\"w" ok?"#, r#"p"w"#);
        assert_eq!(out, "a1 NO you said: a1 LOGIN [redacted]");
        let out = redact("A0002 AUTHENTICATE PLAIN AGFAYgBj\r\nnext", "zzz");
        assert_eq!(out, r"A0002 AUTHENTICATE [redacted]\x0d\x0anext");
        // Prose naming the method is not an echo.
        let out = redact("alice logged in with AUTHENTICATE PLAIN", "zzz");
        assert_eq!(out, "alice logged in with AUTHENTICATE PLAIN");
        let out = redact("250-AUTH LOGIN PLAIN", "zzz");
        assert_eq!(out, "250-AUTH LOGIN PLAIN");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            redact("\x1b[31mred\x07\r\n\u{9b}2J\u{202e}x", ""),
            r"\x1b[31mred\x07\x0d\x0a\u{9b}2J\u{202e}x"
        );
    }

    #[test]
    fn redacts_before_cutting() {
        let pw = "Secr3t-Lab!";
        let text = format!("{}{pw} tail", "x".repeat(295));
        let out = Redactor::new(pw).with_max(300).clean(&text);
        assert!(!out.contains("Secr"), "{out}");
        assert_eq!(out.chars().count(), 300);
        assert!(out.ends_with('…'));
    }

    #[test]
    fn a_prefix_left_by_an_earlier_cut_goes() {
        let pw = "Secr3t-Lab!";
        let out = redact("535 you said Secr3…", pw);
        assert_eq!(out, "535 you said [redacted]…");
        let b64 = STANDARD.encode(pw);
        let out = redact(&format!("x {}… y", &b64[..6]), pw);
        assert_eq!(out, "x [redacted]… y");
    }

    #[test]
    fn cuts_on_a_char_boundary() {
        let out = truncate(&"é".repeat(10), 4);
        assert_eq!(out, "ééé…");
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 0), "");
    }

    #[test]
    fn a_short_password_does_not_eat_base64_words() {
        // Only its literal occurrences go; no one-letter base64 "core" matches "error".
        assert_eq!(redact("error: x", "x"), "error: [redacted]");
    }

    #[test]
    fn a_password_inside_the_marker_still_goes() {
        let out = redact("a password a", "a");
        assert!(!out.contains('a'), "{out}");
    }

    #[test]
    fn json_keys_and_nested_values() {
        let r = Redactor::new("pw-1234");
        let mut v = serde_json::json!({"k pw-1234": ["x pw-1234", {"y": "\x1b"}], "n": 1});
        r.clean_json(&mut v);
        let s = v.to_string();
        assert!(!s.contains("pw-1234"), "{s}");
        assert!(!s.contains("\\u001b"), "{s}");
    }

    fn password() -> impl Strategy<Value = String> {
        prop_oneof![
            "[ -~]{4,40}",
            "\\PC{4,24}",
            proptest::collection::vec(any::<char>(), 4..20)
                .prop_map(|v| v.into_iter().collect::<String>()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn never_leaks_and_never_emits_a_control_char(
            pw in password(),
            user in "[a-z@.]{0,20}",
            before in "\\PC{0,400}",
            after in ".{0,40}",
            form in 0usize..6,
            max in 10usize..1200,
        ) {
            let echo = match form {
                0 => pw.clone(),
                1 => STANDARD.encode(&pw),
                2 => plain(&user, &pw),
                3 => format!("a1 LOGIN \"{user}\" {}", pw),
                4 => format!("{:?}", pw),
                _ => STANDARD_NO_PAD.encode(format!("{user}{pw}{user}")),
            };
            let text = format!("{before}{echo}{after}");
            let out = Redactor::new(&pw).with_max(max).clean(&text);
            prop_assert!(!out.contains(&pw));
            prop_assert!(!out.contains(&STANDARD.encode(&pw)));
            prop_assert!(!out.contains(&plain(&user, &pw)));
            prop_assert!(!out.chars().any(char::is_control), "{:?}", out);
            prop_assert!(out.chars().count() <= max);
        }

        #[test]
        fn text_without_a_password_is_only_escaped(text in "[ -~]{0,200}") {
            let out = Redactor::new("").clean(&text);
            prop_assert_eq!(out, text);
        }
    }
}
