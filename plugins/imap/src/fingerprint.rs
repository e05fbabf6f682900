//! Which IMAP server software answers: rules over the greeting, the capability lists and the ID
//! response (RFC 2971), kept as data so a new server is one more row and one more test.
//!
//! Courier answers ID only after login and only when configured to, so the greeting and the
//! capability fingerprint must identify it on their own.

use std::collections::BTreeMap;

/// What a rule looks at.
#[derive(Clone, Copy, Debug)]
pub enum Matcher {
    /// The greeting's text (after any `[CODE]`) contains this, case-sensitively.
    Greeting(&'static str),
    /// Every one of these capabilities was advertised (in any of the lists seen).
    Capabilities(&'static [&'static str]),
    /// The ID response's `name` contains this, case-insensitively.
    IdName(&'static str),
}

/// One fingerprint rule.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    pub software: &'static str,
    pub matcher: Matcher,
    /// The server's version is the word after this marker in the greeting, when present.
    pub version_after: Option<&'static str>,
}

const fn greeting(software: &'static str, text: &'static str) -> Rule {
    Rule {
        software,
        matcher: Matcher::Greeting(text),
        version_after: None,
    }
}

const fn id_name(software: &'static str, name: &'static str) -> Rule {
    Rule {
        software,
        matcher: Matcher::IdName(name),
        version_after: None,
    }
}

pub const COURIER: &str = "Courier-IMAP";

/// The rules, Courier first: when any Courier rule matches, the server is Courier whatever else
/// matched (a front end may greet for it).
pub const RULES: &[Rule] = &[
    greeting(COURIER, "Courier-IMAP"),
    id_name(COURIER, "Courier"),
    // Courier's default capability list; ACL2=UNION is Courier's own extension.
    Rule {
        software: COURIER,
        matcher: Matcher::Capabilities(&["ACL2=UNION", "THREAD=ORDEREDSUBJECT", "ACL"]),
        version_after: None,
    },
    greeting("Dovecot", "Dovecot"),
    id_name("Dovecot", "Dovecot"),
    Rule {
        software: "Cyrus",
        matcher: Matcher::Greeting(" Cyrus IMAP"),
        version_after: Some("Cyrus IMAP "),
    },
    id_name("Cyrus", "Cyrus"),
    greeting("Microsoft Exchange", "Microsoft Exchange IMAP4 service"),
    Rule {
        software: "Microsoft Exchange",
        matcher: Matcher::Greeting("Microsoft Exchange Server"),
        version_after: Some("server version "),
    },
    greeting("Gmail", "Gimap ready"),
    id_name("Gmail", "GImap"),
    greeting("Zimbra", "Zimbra IMAP4rev1 server ready"),
    id_name("Zimbra", "Zimbra"),
    Rule {
        software: "Domino",
        matcher: Matcher::Greeting("Domino IMAP4 Server"),
        version_after: Some("Release "),
    },
    greeting("hMailServer", "IMAPrev1"),
    greeting("SmarterMail", "SmarterMail"),
    greeting("Yandex", "Yandex IMAP4rev1 "),
];

/// What the probe saw of the server.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The greeting's text, after any response code.
    pub greeting_text: String,
    /// Every capability seen: before TLS, after TLS and after login.
    pub capabilities: Vec<String>,
    /// The ID response's fields, lower-cased keys.
    pub id: Option<BTreeMap<String, String>>,
}

/// The identified software.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identification {
    pub software: String,
    pub version: Option<String>,
    /// `greeting`, `capabilities` or `id`.
    pub by: &'static str,
}

impl Matcher {
    fn source(self) -> &'static str {
        match self {
            Matcher::Greeting(_) => "greeting",
            Matcher::Capabilities(_) => "capabilities",
            Matcher::IdName(_) => "id",
        }
    }

    fn matches(self, o: &Observed) -> bool {
        match self {
            Matcher::Greeting(text) => o.greeting_text.contains(text),
            Matcher::Capabilities(all) => all.iter().all(|c| {
                o.capabilities
                    .iter()
                    .any(|have| have.eq_ignore_ascii_case(c))
            }),
            Matcher::IdName(name) => {
                o.id.as_ref()
                    .and_then(|id| id.get("name"))
                    .is_some_and(|n| n.to_ascii_lowercase().contains(&name.to_ascii_lowercase()))
            }
        }
    }
}

/// Identifies the server, or `None` when no rule matches and the server gave no ID name.
pub fn identify(o: &Observed) -> Option<Identification> {
    let matched: Vec<&Rule> = RULES.iter().filter(|r| r.matcher.matches(o)).collect();
    let rule = matched
        .iter()
        .find(|r| r.software == COURIER)
        .or_else(|| matched.first())
        .copied();
    let id_version = o.id.as_ref().and_then(|id| id.get("version")).cloned();
    match rule {
        Some(r) => {
            let version = r
                .version_after
                .and_then(|m| word_after(&o.greeting_text, m))
                .or_else(|| {
                    // The ID's version belongs to this software only when ID named it.
                    matched
                        .iter()
                        .any(|m| {
                            m.software == r.software && matches!(m.matcher, Matcher::IdName(_))
                        })
                        .then(|| id_version.clone())
                        .flatten()
                });
            Some(Identification {
                software: r.software.to_string(),
                version,
                by: r.matcher.source(),
            })
        }
        // The server's own statement of its name is not a guess.
        None => {
            o.id.as_ref()
                .and_then(|id| id.get("name"))
                .filter(|n| !n.trim().is_empty())
                .map(|n| Identification {
                    software: n.clone(),
                    version: id_version,
                    by: "id",
                })
        }
    }
}

fn word_after(text: &str, marker: &str) -> Option<String> {
    let start = text.find(marker)? + marker.len();
    let word: String = text[start..]
        .split_whitespace()
        .next()?
        .trim_end_matches([',', ')', '.', ';'])
        .to_string();
    let word = word.strip_prefix('v').map(str::to_string).unwrap_or(word);
    (!word.is_empty() && word.chars().any(|c| c.is_ascii_digit())).then_some(word)
}

/// Parses the fields of an ID response (`("name" "Dovecot" "version" "2.3")`, or `NIL`).
pub fn parse_id(data: &str) -> Option<BTreeMap<String, String>> {
    let inner = data.trim().strip_prefix('(')?.strip_suffix(')')?;
    let mut tokens = Vec::new();
    let mut chars = inner.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' => {
                chars.next();
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some(n) = chars.next() {
                                s.push(n);
                            }
                        }
                        '"' => break,
                        _ => s.push(c),
                    }
                }
                tokens.push(Some(s));
            }
            _ => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c == ' ' {
                        break;
                    }
                    s.push(c);
                    chars.next();
                }
                tokens.push((!s.eq_ignore_ascii_case("NIL")).then_some(s));
            }
        }
    }
    let mut map = BTreeMap::new();
    for pair in tokens.chunks(2) {
        if let [Some(k), Some(v)] = pair {
            map.insert(k.to_ascii_lowercase(), v.clone());
        }
    }
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::StatusLine;

    /// Observes a real greeting line the way the plugin does.
    fn seen(line: &str) -> Observed {
        let s = StatusLine::parse(line.strip_prefix("* ").unwrap(), line).unwrap();
        Observed {
            greeting_text: s.text.clone(),
            capabilities: s.capabilities().unwrap_or_default(),
            id: None,
        }
    }

    fn who(o: &Observed) -> Option<(String, Option<String>)> {
        identify(o).map(|i| (i.software, i.version))
    }

    #[test]
    fn courier_greeting() {
        let o = seen(
            "* OK [CAPABILITY IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT THREAD=REFERENCES SORT QUOTA IDLE ACL ACL2=UNION STARTTLS] Courier-IMAP ready. Copyright 1998-2018 Double Precision, Inc.  See COPYING for distribution information.",
        );
        assert_eq!(identify(&o).unwrap().software, COURIER);
        assert_eq!(identify(&o).unwrap().by, "greeting");
    }

    #[test]
    fn courier_capabilities_with_a_custom_greeting() {
        let mut o = seen(
            "* OK [CAPABILITY IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT THREAD=REFERENCES SORT QUOTA IDLE ACL ACL2=UNION] Welcome to Example Mail.",
        );
        assert_eq!(identify(&o).unwrap().software, COURIER);
        assert_eq!(identify(&o).unwrap().by, "capabilities");
        o.capabilities.retain(|c| c != "ACL2=UNION");
        assert_eq!(identify(&o), None);
    }

    #[test]
    fn courier_id_after_login() {
        let o = Observed {
            greeting_text: "Mail server ready.".into(),
            capabilities: vec![],
            id: parse_id(r#"("NAME" "Courier-IMAP" "VERSION" "5.0.13")"#),
        };
        assert_eq!(who(&o), Some((COURIER.into(), Some("5.0.13".into()))));
    }

    #[test]
    fn dovecot_greetings_and_id() {
        let o = seen(
            "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] Dovecot (Debian) ready.",
        );
        assert_eq!(who(&o), Some(("Dovecot".into(), None)));
        let o = seen("* OK [CAPABILITY IMAP4rev1 ID] Dovecot ready.");
        assert_eq!(who(&o).unwrap().0, "Dovecot");
        let o = Observed {
            greeting_text: "Hello.".into(),
            capabilities: vec![],
            id: parse_id(r#"("name" "Dovecot" "version" "2.3.19.1")"#),
        };
        assert_eq!(who(&o), Some(("Dovecot".into(), Some("2.3.19.1".into()))));
    }

    #[test]
    fn cyrus() {
        let o = seen(
            "* OK [CAPABILITY IMAP4rev1 LITERAL+ ID ENABLE STARTTLS AUTH=PLAIN SASL-IR] mail.example.com Cyrus IMAP 3.6.1-Debian-3.6.1-4 server ready",
        );
        assert_eq!(
            who(&o),
            Some(("Cyrus".into(), Some("3.6.1-Debian-3.6.1-4".into())))
        );
        let o = seen(
            "* OK mail.example.org Cyrus IMAP v2.4.17-Debian-2.4.17+caldav~beta9-3 server ready",
        );
        assert_eq!(
            who(&o).unwrap().1.as_deref(),
            Some("2.4.17-Debian-2.4.17+caldav~beta9-3")
        );
    }

    #[test]
    fn exchange() {
        let o = seen(
            "* OK The Microsoft Exchange IMAP4 service is ready. [TQBXADIAUABSADAAMQBDAEEAMAAwADEAOQAuAG8AdQB0AGwAbwBvAGsALgBjAG8AbQA=]",
        );
        assert_eq!(who(&o), Some(("Microsoft Exchange".into(), None)));
        let o = seen(
            "* OK Microsoft Exchange Server 2003 IMAP4rev1 server version 6.5.7638.1 (mail.example.com) ready.",
        );
        assert_eq!(
            who(&o),
            Some(("Microsoft Exchange".into(), Some("6.5.7638.1".into())))
        );
    }

    #[test]
    fn gmail() {
        let o = seen("* OK Gimap ready for requests from 203.0.113.5 e2mb123456789wrq");
        assert_eq!(who(&o).unwrap().0, "Gmail");
    }

    #[test]
    fn zimbra() {
        let o = seen("* OK mail.example.com Zimbra IMAP4rev1 server ready");
        assert_eq!(who(&o).unwrap().0, "Zimbra");
    }

    #[test]
    fn domino() {
        let o =
            seen("* OK Domino IMAP4 Server Release 9.0.1FP10 ready Tue, 5 Nov 2019 10:44:00 +0100");
        assert_eq!(who(&o), Some(("Domino".into(), Some("9.0.1FP10".into()))));
    }

    #[test]
    fn hmailserver() {
        let o = seen("* OK IMAPrev1");
        assert_eq!(who(&o).unwrap().0, "hMailServer");
    }

    #[test]
    fn smartermail() {
        let o = seen("* OK IMAP4rev1 SmarterMail");
        assert_eq!(who(&o).unwrap().0, "SmarterMail");
    }

    #[test]
    fn yandex() {
        let o = seen(
            "* OK Yandex IMAP4rev1 at sas1-0123456789ab.qloud-c.yandex.net:993 ready to talk with 203.0.113.5:51234, 2024-Nov-26 19:00:00, abcdEF1234",
        );
        assert_eq!(who(&o).unwrap().0, "Yandex");
    }

    #[test]
    fn unknown_is_none_not_a_guess() {
        let o = seen("* OK [CAPABILITY IMAP4rev1 STARTTLS] IMAP server ready");
        assert_eq!(identify(&o), None);
    }

    #[test]
    fn every_rule_has_a_test_above() {
        // A rule added to the table without a greeting here fails this test on purpose.
        let covered = [
            COURIER,
            "Dovecot",
            "Cyrus",
            "Microsoft Exchange",
            "Gmail",
            "Zimbra",
            "Domino",
            "hMailServer",
            "SmarterMail",
            "Yandex",
        ];
        for r in RULES {
            assert!(covered.contains(&r.software), "{} has no test", r.software);
        }
    }

    #[test]
    fn id_parsing() {
        let id = parse_id(r#"("name" "Dovecot" "version" NIL "x" "a \"q\"")"#).unwrap();
        assert_eq!(id.get("name").unwrap(), "Dovecot");
        assert!(!id.contains_key("version"));
        assert_eq!(id.get("x").unwrap(), r#"a "q""#);
        assert!(parse_id("NIL").is_none());
    }
}
