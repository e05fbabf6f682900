//! The plaintext part of an IMAP STARTTLS session, against scripted hostile servers: bytes the
//! server sends past its OK to STARTTLS (a man in the middle's injection, which would be read as
//! the first replies of the encrypted session) fail `imap.encryption` and no credentials are
//! sent; a flood of untagged replies before TLS ends the check within its deadline and memory
//! bound, with the reason named.

mod common;
#[path = "common/hostile.rs"]
mod hostile;
#[path = "common/hostile_check.rs"]
mod hostile_check;

use hostile::{Mode, Then};
use hostile_check::{PASSWORD, check, result, status};

#[test]
fn bytes_after_the_starttls_reply_are_refused_as_injection() {
    let imap = hostile::serve(Mode::Plain, |p| {
        hostile::imap(p, b"* OK hostile-peer ready\r\n", |peer, cmd| {
            if cmd.verb == "STARTTLS" {
                let t = &cmd.tag;
                let _ = peer.send(format!(
                    "{t} OK Begin TLS now\r\n* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] injected\r\n"
                ));
                let _ = peer.start_tls();
                return Then::Next;
            }
            Then::Default
        })
    });
    let report = check((&imap, Mode::Plain), None);
    assert_eq!(status(&report, "imap.encryption"), "fail", "{report:#}");
    let text = result(&report, "imap.encryption").to_string();
    assert!(text.contains("injection"), "{report:#}");
    let sent = imap.lines();
    assert!(
        !sent.iter().any(|l| {
            let u = l.to_ascii_uppercase();
            u.contains(" LOGIN ") || u.contains(" AUTHENTICATE ") || l.contains(PASSWORD)
        }),
        "credentials were sent: {sent:?}"
    );
}

#[test]
fn a_flood_of_untagged_replies_before_tls_ends_the_check() {
    // 10 MB of `* OK` lines in answer to CAPABILITY, in clear.
    let imap = hostile::serve(Mode::Plain, |p| {
        hostile::imap(p, b"* OK hostile-peer ready\r\n", |peer, cmd| {
            if cmd.verb == "CAPABILITY" && !peer.is_tls() {
                let line = format!("* OK {}\r\n", "flood ".repeat(160));
                let chunk = line.repeat(100);
                let mut sent = 0;
                while sent < 10 * 1024 * 1024 {
                    if !peer.send(&chunk) {
                        return Then::Close;
                    }
                    sent += chunk.len();
                }
                let _ = peer.send(format!("{} OK done\r\n", cmd.tag));
                return Then::Close;
            }
            Then::Default
        })
    });
    // `check` asserts the deadline, the memory bound and that nothing leaked.
    let report = check((&imap, Mode::Plain), None);
    assert_ne!(status(&report, "imap.encryption"), "pass", "{report:#}");
    let text = result(&report, "imap.encryption").to_string();
    assert!(
        text.contains("longer than") || text.contains("more than"),
        "{report:#}"
    );
}
