//! Replies too large to keep, sent where async-imap reads them (after the handshake: LOGIN, the
//! NOOP of a session held for `connections.concurrent`, LOGOUT): a `{536000000}` literal, which
//! async-imap would make room for before reading a byte of it, and an endless flood of untagged
//! responses. Each run must end by its deadline, show no password, and stay under the peak
//! memory bound (`common/hostile_check.rs`); the byte budget's error names the command.

mod common;
#[path = "common/hostile.rs"]
mod hostile;
#[path = "common/hostile_check.rs"]
mod hostile_check;

use hostile::{Cmd, Mode, Peer, Server, Then};
use hostile_check::{check, result, status};

/// What a hostile server sends instead of a reply.
#[derive(Clone, Copy, Debug)]
enum Reply {
    /// A mailbox name announced as a literal of 536,000,000 bytes, then a trickle of it.
    HugeLiteral,
    /// Untagged responses without end, until the probe hangs up.
    Flood,
}

fn misbehave(peer: &mut Peer, how: Reply) {
    match how {
        Reply::HugeLiteral => {
            if peer.send("* LIST (\\HasNoChildren) \"/\" {536000000}\r\n") {
                peer.send(vec![b'x'; 4096]);
            }
            peer.hang();
        }
        Reply::Flood => {
            let chunk =
                "* OK [ALERT] flood flood flood flood flood flood flood flood\r\n".repeat(256);
            // The peer's write timeout ends this if the probe stops reading without closing.
            while peer.send(&chunk) {}
        }
    }
}

/// An IMAP server that misbehaves in reply to `verb` and is well-behaved otherwise.
fn server(verb: &'static str, how: Reply) -> Server {
    hostile::serve(Mode::Tls, move |p| {
        hostile::imap(p, hostile::IMAP_GREETING.as_bytes(), move |p, c: &Cmd| {
            if c.verb != verb {
                return Then::Default;
            }
            misbehave(p, how);
            Then::Close
        })
    })
}

#[test]
fn a_huge_literal_or_a_flood_in_reply_to_login_is_cut_at_the_budget() {
    for how in [Reply::HugeLiteral, Reply::Flood] {
        let imap = server("LOGIN", how);
        let report = check((&imap, Mode::Tls), None);
        let login = result(&report, "imap.login");
        // The probe's own bound, not a verdict on the server.
        assert_eq!(login["status"], "skip", "{how:?}: {login:#}");
        assert_eq!(
            login["evidence"]["reason"], "not_verified",
            "{how:?}: {login:#}"
        );
        let error = login["evidence"]["error"].as_str().unwrap_or_default();
        assert!(error.contains("in reply to LOGIN"), "{how:?}: {login:#}");
        assert_eq!(report["verdict"], "incomplete", "{how:?}: {report:#}");
    }
}

#[test]
fn a_huge_literal_or_a_flood_in_reply_to_noop_of_a_held_session_is_cut_at_the_budget() {
    for how in [Reply::HugeLiteral, Reply::Flood] {
        let imap = server("NOOP", how);
        let report = check((&imap, Mode::Tls), None);
        assert_eq!(status(&report, "imap.login"), "pass", "{how:?}: {report:#}");
        let held = result(&report, "connections.concurrent");
        // The probe's own bound: neither a pass nor a limit blamed on the server.
        assert_eq!(held["status"], "skip", "{how:?}: {held:#}");
        assert_eq!(
            held["evidence"]["reason"], "not_verified",
            "{how:?}: {held:#}"
        );
        assert!(held["remedy"].is_null(), "{how:?}: {held:#}");
        let dropped = held["evidence"]["imap"]["dropped"].to_string();
        assert!(dropped.contains("in reply to NOOP"), "{how:?}: {held:#}");
    }
}

#[test]
fn a_huge_literal_or_a_flood_in_reply_to_logout_ends_the_session() {
    for how in [Reply::HugeLiteral, Reply::Flood] {
        let imap = server("LOGOUT", how);
        let report = check((&imap, Mode::Tls), None);
        assert_eq!(status(&report, "imap.login"), "pass", "{how:?}: {report:#}");
        assert_eq!(
            status(&report, "connections.concurrent"),
            "pass",
            "{how:?}: {report:#}"
        );
    }
}

/// A server that lets the first LOGIN through and answers every later one (the sessions
/// `connections.concurrent` opens) with a reply larger than the probe reads.
fn server_after_first_login(how: Reply) -> Server {
    let logins = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    hostile::serve(Mode::Tls, move |p| {
        let logins = logins.clone();
        hostile::imap(p, hostile::IMAP_GREETING.as_bytes(), move |p, c: &Cmd| {
            if c.verb != "LOGIN" || logins.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                return Then::Default;
            }
            misbehave(p, how);
            Then::Close
        })
    })
}

#[test]
fn a_huge_literal_or_a_flood_in_reply_to_the_login_of_a_new_session_is_not_a_refusal() {
    for how in [Reply::HugeLiteral, Reply::Flood] {
        let imap = server_after_first_login(how);
        let report = check((&imap, Mode::Tls), None);
        assert_eq!(status(&report, "imap.login"), "pass", "{how:?}: {report:#}");
        let cc = result(&report, "connections.concurrent");
        // The probe's own bound, not the server's connection limit: no fail, no remedy.
        assert_eq!(cc["status"], "skip", "{how:?}: {cc:#}");
        assert_eq!(cc["evidence"]["reason"], "not_verified", "{how:?}: {cc:#}");
        assert!(cc["remedy"].is_null(), "{how:?}: {cc:#}");
        let why = cc["evidence"]["imap"]["probe_limit"].to_string();
        assert!(why.contains("in reply to LOGIN"), "{how:?}: {cc:#}");
        assert_eq!(report["verdict"], "incomplete", "{how:?}: {report:#}");
    }
}
