//! `mailprobe check -v` against the lab's real Dovecot and Postfix: the protocol transcript on
//! stderr, as it happens (connections, lines sent and received, TLS parameters, certificates),
//! with the password and every encoding of it (IMAP LOGIN's quoted string, AUTH PLAIN's
//! base64) redacted, while stdout keeps the report alone.

mod common;
#[path = "common/hostile.rs"]
mod hostile;
#[path = "common/hostile_check.rs"]
mod hostile_check;

use base64::Engine as _;

use common::lab::{HOSTNAME, PASSWORD, USER};
use common::probe::{lab_args, run_args, with_smtp};
use common::{DovecotOpts, Lab, PostfixOpts};

#[test]
fn verbose_prints_the_redacted_transcript_on_stderr() {
    let dovecot = Lab::dovecot("transcript", DovecotOpts::default());
    let postfix = Lab::postfix("transcript", &dovecot, PostfixOpts::default());
    let mut args = with_smtp(lab_args(&dovecot, "imap"), &postfix, "submission");
    args.push("-v".into());
    let run = run_args(&args);
    // stdout is the report, untouched.
    let report = run.json();
    assert_eq!(report["verdict"], "compliant", "{report:#}\n{}", run.stderr);
    let err = &run.stderr;
    let imap = dovecot.port("imap");
    let smtp = postfix.port("submission");
    for wanted in [
        format!("* connecting to {HOSTNAME}:{imap} at 127.0.0.1:{imap}"),
        format!("* connected to 127.0.0.1:{imap} from 127.0.0.1:"),
        "< * OK [CAPABILITY IMAP4rev1".to_string(),
        "> P1 STARTTLS".to_string(),
        // The hubspot client speaks TLS 1.2 at most, and so do its login sessions.
        format!("* TLS with {HOSTNAME}:{imap}: TLSv1.2 "),
        format!("* certificate 0 of {HOSTNAME}:{imap}: subject CN={HOSTNAME}"),
        // Dovecot offers AUTH=PLAIN, which the client model prefers to LOGIN.
        "> A0001 AUTHENTICATE [redacted]".to_string(),
        "> EHLO ".to_string(),
        "< 250-AUTH PLAIN LOGIN".to_string(),
        "> AUTH PLAIN [redacted]".to_string(),
        "< 235 2.7.0 Authentication successful".to_string(),
        format!("* imap login {HOSTNAME}:{imap}: ok in "),
        format!("* smtp auth {HOSTNAME}:{smtp}: ok in "),
    ] {
        assert!(err.contains(&wanted), "no {wanted:?} in:\n{err}");
    }
    // Every line is one line of the transcript: nothing raw from a server (no CR, no escape).
    assert!(!err.contains('\r') && !err.contains('\x1b'), "{err}");
    // The password in none of its forms.
    let b64 = base64::engine::general_purpose::STANDARD;
    for secret in [
        PASSWORD.to_string(),
        b64.encode(PASSWORD),
        b64.encode(format!("\0{USER}\0{PASSWORD}")),
    ] {
        assert!(
            !err.contains(&secret),
            "{secret:?} in the transcript:\n{err}"
        );
        assert!(!run.stdout.contains(&secret));
    }

    // Without -v: no transcript at all.
    args.pop();
    let quiet = run_args(&args);
    assert_eq!(quiet.json()["verdict"], "compliant");
    assert!(!quiet.stderr.contains("> P1 STARTTLS"), "{}", quiet.stderr);
}

/// A hostile server that echoes the password back (plain, base64), sends terminal escapes and a
/// line far longer than any real one: the transcript on stderr shows none of it raw, and stays
/// bounded.
#[test]
fn a_hostile_server_cannot_put_the_password_or_escapes_into_the_transcript() {
    use hostile::{Mode, Then};
    let b64 = base64::engine::general_purpose::STANDARD.encode(hostile_check::PASSWORD);
    let server = hostile::serve(Mode::Tls, move |peer| {
        let b64 = b64.clone();
        let greeting = "* OK [CAPABILITY IMAP4rev1] \x1b[31mhostile\x07 ready\r\n";
        hostile::imap(peer, greeting.as_bytes(), move |peer, cmd| {
            if cmd.verb != "LOGIN" {
                return Then::Default;
            }
            let long = "A".repeat(12_000);
            peer.send(format!(
                "* OK {long}\r\n{} NO [AUTHENTICATIONFAILED] you sent {} ({b64}) \x1b]0;title\x07\r\n",
                cmd.tag,
                hostile_check::PASSWORD
            ));
            Then::Next
        });
    });
    let mut args = hostile_check::check_args((&server, Mode::Tls), None);
    args.extend(["--format".into(), "json".into(), "-v".into()]);
    let run = hostile_check::mailprobe(&args);
    hostile_check::assert_sound(&run, "-v against a hostile server");
    assert!(
        run.stderr.contains("> A0001 LOGIN [redacted]"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("[AUTHENTICATIONFAILED] you sent [redacted]"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("\\x1b[31mhostile"), "{}", run.stderr);
    // Every line is bounded (the 12 000-byte one is cut), and so is the whole.
    let longest = run
        .stderr
        .lines()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0);
    assert!(longest < 700, "a transcript line of {longest} characters");
    assert!(
        run.stderr.len() < 256 * 1024,
        "{} bytes on stderr",
        run.stderr.len()
    );
}
