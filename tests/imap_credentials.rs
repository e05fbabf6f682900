//! IMAP credentials in a form the protocol allows, against the lab's Dovecot: a non-ASCII
//! password logs in as a literal (LITERAL+ for the plugin's own login, synchronizing literals
//! for the extra sessions of `connections.concurrent`); a password with CR and LF reaches the
//! server's authentication as a well-formed literal and gets the server's own answer (Dovecot's
//! passdb refuses control characters in any password), never a session the probe broke off
//! itself; a password with a NUL byte, which no IMAP form carries, is a usage error naming the
//! file. The exact bytes on the wire are tested next to the encoder (mailwire's `budget` and
//! `literal` modules).
mod common;

use std::process::Command;

use common::DovecotOpts;
use common::lab::{HOSTNAME, Lab};

const CRLF_USER: &str = "crlf@lab.test";
const CRLF_PASSWORD: &[u8] = b"Li\r\nne\"s\\ \x7e";
const UTF8_USER: &str = "utf8@lab.test";
const UTF8_PASSWORD: &str = "Pässwörd-ß-€";

fn check(
    lab: &Lab,
    listener: &str,
    security: &str,
    user: &str,
    file: &std::path::Path,
) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mailprobe"))
        .args([
            "check",
            "--imap",
            &format!("{HOSTNAME}:{}", lab.port(listener)),
            "--imap-security",
            security,
            "--connect-to",
            &format!("{HOSTNAME}:{}", lab.host()),
            "--ca-file",
            Lab::ca_file().to_str().unwrap(),
            "--user",
            user,
            "--password-file",
            file.to_str().unwrap(),
            "--format",
            "json",
            "--timeout",
            "20s",
        ])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn status(report: &str, id: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(report).unwrap_or_default();
    v["requirements"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["id"] == id))
        .map(|r| r["status"].as_str().unwrap_or("").to_string())
        .unwrap_or_else(|| "absent".into())
}

#[test]
fn passwords_a_quoted_string_cannot_carry_log_in_as_literals() {
    let lab = Lab::dovecot(
        "literal-login",
        DovecotOpts {
            byte_users: vec![
                (CRLF_USER, CRLF_PASSWORD.to_vec()),
                (UTF8_USER, UTF8_PASSWORD.as_bytes().to_vec()),
            ],
            ..DovecotOpts::default()
        },
    );
    let dir = std::env::temp_dir().join(format!("mailprobe-literal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let crlf = dir.join("crlf.pw");
    std::fs::write(&crlf, CRLF_PASSWORD).unwrap();
    let utf8 = dir.join("utf8.pw");
    std::fs::write(&utf8, UTF8_PASSWORD).unwrap();
    for (listener, security) in [("imaps", "tls"), ("imap", "starttls")] {
        let (code, out, err) = check(&lab, listener, security, UTF8_USER, &utf8);
        assert_eq!(
            status(&out, "imap.login"),
            "pass",
            "{security}: {code:?}\n{out}\n{err}"
        );
        assert_eq!(status(&out, "imap.folders"), "pass", "{security}:\n{out}");
        // The extra sessions log in with synchronizing literals.
        assert_eq!(
            status(&out, "connections.concurrent"),
            "pass",
            "{security}:\n{out}"
        );
        // CR and LF: the server's own refusal, after it parsed the literal LOGIN.
        let (_, out, _) = check(&lab, listener, security, CRLF_USER, &crlf);
        assert_eq!(status(&out, "imap.login"), "fail", "{out}");
        assert!(out.contains("AUTHENTICATIONFAILED"), "{out}");
        assert!(!out.contains("broke off"), "{out}");
    }
    assert!(
        lab.log().contains("user=<crlf@lab.test>"),
        "the server never saw the CR/LF login:\n{}",
        lab.log()
    );

    // NUL: no IMAP form carries it; a usage error naming the file.
    let nul = dir.join("nul.pw");
    std::fs::write(&nul, b"a\0b").unwrap();
    let (code, out, err) = check(&lab, "imaps", "tls", CRLF_USER, &nul);
    assert_eq!(code, Some(3), "{out}\n{err}");
    assert!(
        err.contains("NUL") && err.contains(nul.to_str().unwrap()),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
