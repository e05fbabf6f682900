//! Login failures named by what the server said, where no lab server says it on cue (real
//! Dovecot and Postfix refusals are in `imap_servers.rs` and `smtp_postfix.rs`): scripted peers
//! answer the probe's login with each RFC 5530 response code and SMTP enhanced status code, a
//! rejection delayed past half the check's timeout, and SASL mechanisms the client does not use.

mod common;
#[path = "common/hostile.rs"]
mod hostile;
#[path = "common/hostile_check.rs"]
mod hostile_check;

use std::time::Duration;

use hostile::{Cmd, Mode, Peer, Server, Then};
use hostile_check::result;
use serde_json::Value;

/// One JSON run against scripted peers (the hostile-peer harness's leak and memory checks run
/// in `hostile_peers.rs`; here only the verdicts matter).
fn run(mut args: Vec<String>) -> Value {
    args.extend(["--format".into(), "json".into()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = common::probe::mailprobe_env(
        &refs,
        &[(hostile_check::PASSWORD_ENV, hostile_check::PASSWORD)],
    );
    run.json()
}

fn check(imap: (&Server, Mode), smtp: Option<(&Server, Mode)>) -> Value {
    run(hostile_check::check_args(imap, smtp))
}

/// An IMAP server over TLS that refuses AUTHENTICATE with `reply` (after `delay`).
fn refusing_imap(reply: &'static str, delay: Duration) -> Server {
    hostile::serve(Mode::Tls, move |p| {
        hostile::imap(
            p,
            hostile::IMAP_GREETING.as_bytes(),
            |peer: &mut Peer, c: &Cmd| {
                if c.verb != "AUTHENTICATE" && c.verb != "LOGIN" {
                    return Then::Default;
                }
                if c.verb == "AUTHENTICATE" && (!peer.send("+ \r\n") || peer.line().is_none()) {
                    return Then::Close;
                }
                std::thread::sleep(delay);
                if peer.send(format!("{} {reply}\r\n", c.tag)) {
                    Then::Next
                } else {
                    Then::Close
                }
            },
        )
    })
}

fn login(report: &Value, id: &str) -> Value {
    common::probe::assert_no_debug_text(report);
    result(report, id).clone()
}

#[test]
fn imap_response_codes_choose_the_remedy_and_temporary_is_said() {
    for (reply, code, temporary, remedy) in [
        (
            "NO [UNAVAILABLE] Temporary authentication failure",
            Some("UNAVAILABLE"),
            true,
            "not the password",
        ),
        (
            "NO [LIMIT] Too many connections",
            Some("LIMIT"),
            true,
            "connection limit",
        ),
        (
            "NO [EXPIRED] Password expired",
            Some("EXPIRED"),
            false,
            "expired",
        ),
        (
            "NO [AUTHENTICATIONFAILED] Authentication failed.",
            Some("AUTHENTICATIONFAILED"),
            false,
            "password",
        ),
        ("NO Login failed", None, false, "password"),
    ] {
        let server = refusing_imap(reply, Duration::ZERO);
        let report = check((&server, Mode::Tls), None);
        let l = login(&report, "imap.login");
        assert_eq!(l["status"], "fail", "{reply}: {l:#}");
        assert_eq!(
            l["evidence"]["response_code"].as_str(),
            code,
            "{reply}: {l:#}"
        );
        assert_eq!(l["evidence"]["temporary"], temporary, "{reply}: {l:#}");
        let summary = l["summary"].as_str().unwrap();
        assert_eq!(
            summary.contains("temporarily"),
            temporary,
            "{reply}: {summary}"
        );
        assert!(
            l["remedy"].as_str().unwrap().contains(remedy),
            "{reply}: {l:#}"
        );
        // The greeting offers no AUTH=: the client's last resort, the LOGIN command.
        assert_eq!(l["evidence"]["mechanism_used"], "LOGIN", "{l:#}");
    }
}

#[test]
fn a_delayed_rejection_is_a_rejection_not_a_timeout() {
    // Past half of the check's timeout (8 s): the reply wait is the rest of the deadline.
    let server = refusing_imap(
        "NO [AUTHENTICATIONFAILED] Authentication failed.",
        Duration::from_secs(5),
    );
    let report = check((&server, Mode::Tls), None);
    let l = login(&report, "imap.login");
    assert_eq!(
        l["evidence"]["response_code"], "AUTHENTICATIONFAILED",
        "{l:#}"
    );
    assert!(
        !l["summary"].as_str().unwrap().contains("timed out"),
        "{l:#}"
    );
}

/// An SMTP server over TLS with `ehlo` after TLS that answers AUTH with `reply`.
fn smtp_server(ehlo: &'static str, reply: &'static str) -> Server {
    hostile::serve(Mode::Tls, move |p| {
        hostile::smtp(
            p,
            hostile::SMTP_GREETING.as_bytes(),
            |peer: &mut Peer, line: &str| {
                let verb = line
                    .split(' ')
                    .next()
                    .unwrap_or_default()
                    .to_ascii_uppercase();
                let text = match verb.as_str() {
                    "EHLO" => ehlo,
                    "AUTH" => reply,
                    _ => return Then::Default,
                };
                if peer.send(text) {
                    Then::Next
                } else {
                    Then::Close
                }
            },
        )
    })
}

fn smtp_check(smtp: &Server) -> Value {
    let imap = hostile::serve(Mode::Tls, |p| {
        hostile::imap(p, hostile::IMAP_GREETING.as_bytes(), |_, _| Then::Default)
    });
    let mut args = hostile_check::check_args((&imap, Mode::Tls), Some((smtp, Mode::Tls)));
    args.extend(["--only".into(), "smtp".into()]);
    run(args)
}

#[test]
fn smtp_enhanced_status_codes_and_the_clients_mechanisms() {
    let ehlo = "250-mail.lab.test\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n";
    for (reply, code, temporary) in [
        ("535 5.7.8 Error: authentication failed\r\n", "5.7.8", false),
        (
            "454 4.7.0 Temporary authentication failure\r\n",
            "4.7.0",
            true,
        ),
        (
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled\r\n",
            "5.7.139",
            false,
        ),
    ] {
        let server = smtp_server(ehlo, reply);
        let report = smtp_check(&server);
        let l = login(&report, "smtp.login");
        assert_eq!(l["status"], "fail", "{reply}: {l:#}");
        assert_eq!(l["evidence"]["enhanced_status"], code, "{l:#}");
        assert_eq!(l["evidence"]["temporary"], temporary, "{l:#}");
        assert_eq!(
            l["summary"].as_str().unwrap().contains("temporarily"),
            temporary,
            "{l:#}"
        );
    }
    // Only CRAM-MD5: none of the client's mechanisms; the remedy names the ones to enable.
    let server = smtp_server(
        "250-mail.lab.test\r\n250-AUTH CRAM-MD5\r\n250 8BITMIME\r\n",
        "535 5.7.8 no\r\n",
    );
    let report = smtp_check(&server);
    let l = login(&report, "smtp.login");
    assert_eq!(l["status"], "fail", "{l:#}");
    assert_eq!(l["evidence"]["mechanisms_offered"][0], "CRAM-MD5", "{l:#}");
    let remedy = l["remedy"].as_str().unwrap();
    assert!(remedy.contains("PLAIN and LOGIN"), "{remedy}");
}
