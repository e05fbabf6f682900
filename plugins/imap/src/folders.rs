//! Folders: LIST/XLIST and NAMESPACE responses, modified UTF-7 names, and which folder is the
//! Sent folder (`\Sent` special-use, RFC 6154, else a well-known name under the personal
//! namespace).

/// One LIST (or XLIST) entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Folder {
    /// The name as the server spells it (modified UTF-7): what EXAMINE needs.
    pub name: String,
    /// The name for people (decoded).
    pub display: String,
    pub delimiter: Option<char>,
    /// Attributes such as `\Sent`, `\Noselect`, as sent.
    pub attributes: Vec<String>,
}

impl Folder {
    pub fn has(&self, attribute: &str) -> bool {
        self.attributes
            .iter()
            .any(|a| a.eq_ignore_ascii_case(attribute))
    }
    pub fn selectable(&self) -> bool {
        !self.has("\\Noselect") && !self.has("\\NonExistent")
    }
    pub fn is_inbox(&self) -> bool {
        self.name.eq_ignore_ascii_case("INBOX")
    }
}

/// The user's personal namespace (RFC 2342): a prefix such as `INBOX.` and its delimiter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Namespace {
    pub prefix: String,
    pub delimiter: Option<char>,
}

/// How the Sent folder was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SentBy {
    SpecialUse,
    Name,
}

impl SentBy {
    pub fn as_str(self) -> &'static str {
        match self {
            SentBy::SpecialUse => "special-use",
            SentBy::Name => "name",
        }
    }
}

/// Names mail clients and servers give the Sent folder, in order of preference; compared
/// case-insensitively with the name under the personal namespace, and with the full name.
pub const SENT_NAMES: &[&str] = &[
    "Sent",
    "Sent Items",
    "Sent Messages",
    "Sent Mail",
    "Sent-Mail",
    "INBOX.Sent",
    "INBOX/Sent",
    "[Gmail]/Sent Mail",
    "[Google Mail]/Sent Mail",
    "Gesendet",
    "Gesendete Objekte",
    "Gesendete Elemente",
    "Envoyés",
    "Éléments envoyés",
    "Messages envoyés",
    "Enviados",
    "Elementos enviados",
    "Itens enviados",
    "Posta inviata",
    "Inviata",
    "Verzonden",
    "Verzonden items",
    "Skickat",
    "Skickade objekt",
    "Skickade meddelanden",
    "Sendt",
    "Sendte elementer",
    "Sendte",
    "Lähetetyt",
    "Wysłane",
    "Elementy wysłane",
    "Odeslaná pošta",
    "Отправленные",
    "送信済みアイテム",
    "已发送",
];

/// Parses what follows `LIST ` or `XLIST `: `(attributes) delimiter name [extended items]`.
pub fn parse_list(rest: &str) -> Option<Folder> {
    let mut p = Parser::new(rest);
    let attributes = p.paren_words()?;
    p.space()?;
    let delimiter = p.nstring()?.and_then(|d| d.chars().next());
    p.space()?;
    let name = p.astring()?;
    Some(Folder {
        display: decode_mutf7(&name),
        name,
        delimiter,
        attributes,
    })
}

/// Parses a NAMESPACE response's first personal namespace.
pub fn parse_namespace(rest: &str) -> Option<Namespace> {
    let mut p = Parser::new(rest);
    if p.eat_nil() {
        return Some(Namespace::default());
    }
    p.expect('(')?;
    p.expect('(')?;
    let prefix = p.quoted()?;
    p.space()?;
    let delimiter = p.nstring()?.and_then(|d| d.chars().next());
    Some(Namespace { prefix, delimiter })
}

/// The Sent folder among `folders`: a selectable `\Sent` folder, else the first well-known
/// name in [`SENT_NAMES`] order.
pub fn find_sent<'a>(folders: &'a [Folder], ns: &Namespace) -> Option<(&'a Folder, SentBy)> {
    if let Some(f) = folders.iter().find(|f| f.has("\\Sent") && f.selectable()) {
        return Some((f, SentBy::SpecialUse));
    }
    for want in SENT_NAMES {
        let want = want.to_lowercase();
        for f in folders.iter().filter(|f| f.selectable() && !f.is_inbox()) {
            let full = f.display.to_lowercase();
            if full == want || relative(f, ns).is_some_and(|r| r.to_lowercase() == want) {
                return Some((f, SentBy::Name));
            }
        }
    }
    None
}

/// The folder's name under the personal namespace prefix, or under `INBOX` + delimiter.
fn relative<'a>(f: &'a Folder, ns: &Namespace) -> Option<&'a str> {
    let name = f.display.as_str();
    let strip = |prefix: &str| -> Option<&'a str> {
        if prefix.is_empty() || name.len() <= prefix.len() || !name.is_char_boundary(prefix.len()) {
            return None;
        }
        name[..prefix.len()]
            .eq_ignore_ascii_case(prefix)
            .then(|| &name[prefix.len()..])
    };
    strip(&ns.prefix).or_else(|| {
        let d = f.delimiter?;
        strip(&format!("INBOX{d}"))
    })
}

/// Folders besides INBOX and the Sent folder that the CRM would sync.
pub fn others<'a>(folders: &'a [Folder], sent: Option<&Folder>) -> Vec<&'a Folder> {
    folders
        .iter()
        .filter(|f| f.selectable() && !f.is_inbox())
        .filter(|f| sent.is_none_or(|s| s.name != f.name))
        .collect()
}

/// Decodes a modified UTF-7 mailbox name (RFC 3501 5.1.3); leaves malformed parts as they are.
pub fn decode_mutf7(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('-') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let encoded = &after[..end];
        if encoded.is_empty() {
            out.push('&');
        } else {
            match decode_b64_utf16(encoded) {
                Some(s) => out.push_str(&s),
                None => out.push_str(&rest[start..start + 1 + end + 1]),
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn decode_b64_utf16(s: &str) -> Option<String> {
    let mut bits: u32 = 0;
    let mut nbits = 0;
    let mut bytes = Vec::new();
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b',' => 63,
            _ => return None,
        } as u32;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            bytes.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    if bytes.len() % 2 != 0 {
        return None;
    }
    let units: Vec<u16> = bytes
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).ok()
}

/// A cursor over one response's text.
struct Parser<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Parser<'a> {
    fn new(s: &'a str) -> Self {
        Parser { s, i: 0 }
    }
    fn peek(&self) -> Option<char> {
        self.s[self.i..].chars().next()
    }
    fn expect(&mut self, c: char) -> Option<()> {
        (self.peek()? == c).then(|| self.i += c.len_utf8())
    }
    fn space(&mut self) -> Option<()> {
        self.expect(' ')
    }
    fn eat_nil(&mut self) -> bool {
        let rest = &self.s[self.i..];
        // `get`: byte 3 may fall inside a character of a name that is not ASCII.
        let nil = rest.get(..3).is_some_and(|w| w.eq_ignore_ascii_case("NIL"))
            && rest[3..]
                .chars()
                .next()
                .is_none_or(|c| c == ' ' || c == ')');
        if nil {
            self.i += 3;
        }
        nil
    }
    fn paren_words(&mut self) -> Option<Vec<String>> {
        self.expect('(')?;
        let end = self.s[self.i..].find(')')? + self.i;
        let words = self.s[self.i..end]
            .split_whitespace()
            .map(str::to_string)
            .collect();
        self.i = end + 1;
        Some(words)
    }
    fn quoted(&mut self) -> Option<String> {
        self.expect('"')?;
        let mut out = String::new();
        let mut chars = self.s[self.i..].char_indices();
        while let Some((k, c)) = chars.next() {
            match c {
                '\\' => {
                    let (_, n) = chars.next()?;
                    out.push(n);
                }
                '"' => {
                    self.i += k + 1;
                    return Some(out);
                }
                _ => out.push(c),
            }
        }
        None
    }
    /// A quoted string or NIL.
    fn nstring(&mut self) -> Option<Option<String>> {
        if self.eat_nil() {
            Some(None)
        } else {
            self.quoted().map(Some)
        }
    }
    /// A quoted string or an atom.
    fn astring(&mut self) -> Option<String> {
        if self.peek()? == '"' {
            return self.quoted();
        }
        let rest = &self.s[self.i..];
        let end = rest.find([' ', '(', ')']).unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        self.i += end;
        Some(rest[..end].to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folders(lines: &[&str]) -> Vec<Folder> {
        lines.iter().map(|l| parse_list(l).unwrap()).collect()
    }

    #[test]
    fn list_lines() {
        let f = parse_list(r#"(\HasNoChildren \Sent) "/" "Sent Items""#).unwrap();
        assert_eq!(f.name, "Sent Items");
        assert_eq!(f.delimiter, Some('/'));
        assert!(f.has("\\sent"));
        let f = parse_list(r#"() "." INBOX"#).unwrap();
        assert!(f.is_inbox());
        let f = parse_list(r#"(\Noselect) NIL """#).unwrap();
        assert_eq!(f.delimiter, None);
        assert!(!f.selectable());
        let f = parse_list(r#"(\HasNoChildren) "." "INBOX.Sent" ("CHILDINFO" ("SUBSCRIBED"))"#)
            .unwrap();
        assert_eq!(f.name, "INBOX.Sent");
        assert!(parse_list("garbage").is_none());
        // Invalid UTF-8 reaches the parser as U+FFFD, three bytes long.
        assert!(parse_list("() X\u{fffd} \"x\"").is_none());
        assert!(parse_namespace("X\u{fffd}\u{fffd}").is_none());
    }

    #[test]
    fn namespaces() {
        assert_eq!(
            parse_namespace(r##"(("INBOX." ".")) NIL (("#shared." "."))"##).unwrap(),
            Namespace {
                prefix: "INBOX.".into(),
                delimiter: Some('.')
            }
        );
        assert_eq!(parse_namespace(r#"(("" "/")) NIL NIL"#).unwrap().prefix, "");
        assert_eq!(
            parse_namespace("NIL NIL NIL").unwrap(),
            Namespace::default()
        );
    }

    #[test]
    fn special_use_wins_over_names() {
        let fs = folders(&[
            r#"(\HasNoChildren) "/" INBOX"#,
            r#"(\HasNoChildren) "/" Sent"#,
            r#"(\HasNoChildren \Sent) "/" "Sent Messages""#,
            r#"(\HasNoChildren) "/" Archive"#,
        ]);
        let (s, by) = find_sent(&fs, &Namespace::default()).unwrap();
        assert_eq!((s.name.as_str(), by), ("Sent Messages", SentBy::SpecialUse));
        assert_eq!(others(&fs, Some(s)).len(), 2);
    }

    #[test]
    fn courier_style_namespace() {
        let fs = folders(&[
            r#"(\Unmarked \HasChildren) "." "INBOX""#,
            r#"(\HasNoChildren) "." "INBOX.Drafts""#,
            r#"(\HasNoChildren) "." "INBOX.Sent""#,
            r#"(\HasNoChildren) "." "INBOX.Trash""#,
        ]);
        let ns = Namespace {
            prefix: "INBOX.".into(),
            delimiter: Some('.'),
        };
        let (s, by) = find_sent(&fs, &ns).unwrap();
        assert_eq!((s.name.as_str(), by), ("INBOX.Sent", SentBy::Name));
        // Without NAMESPACE the INBOX + delimiter rule still finds it.
        let (s, _) = find_sent(&fs, &Namespace::default()).unwrap();
        assert_eq!(s.name, "INBOX.Sent");
        assert_eq!(others(&fs, Some(s)).len(), 2);
    }

    #[test]
    fn gmail_and_localised_names() {
        let fs = folders(&[
            r#"(\HasNoChildren) "/" "INBOX""#,
            r#"(\HasChildren \Noselect) "/" "[Gmail]""#,
            r#"(\HasNoChildren) "/" "[Gmail]/Sent Mail""#,
        ]);
        assert_eq!(
            find_sent(&fs, &Namespace::default()).unwrap().0.name,
            "[Gmail]/Sent Mail"
        );
        let fs = folders(&[r#"() "/" "&AMk-l&AOk-ments envoy&AOk-s""#]);
        assert_eq!(fs[0].display, "Éléments envoyés");
        assert_eq!(
            find_sent(&fs, &Namespace::default()).unwrap().1,
            SentBy::Name
        );
    }

    #[test]
    fn no_sent_folder() {
        let fs = folders(&[r#"() "/" INBOX"#, r#"() "/" Notes"#]);
        assert!(find_sent(&fs, &Namespace::default()).is_none());
        assert_eq!(others(&fs, None).len(), 1);
    }

    #[test]
    fn mutf7() {
        assert_eq!(decode_mutf7("Entw&APw-rfe"), "Entwürfe");
        assert_eq!(decode_mutf7("A&-B"), "A&B");
        assert_eq!(
            decode_mutf7("&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-"),
            "Отправленные"
        );
        assert_eq!(decode_mutf7("bad&!!-x"), "bad&!!-x");
    }
}
