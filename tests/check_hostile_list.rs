//! A hostile IMAP server (a scripted peer: no real server sends this) answers LIST with a line
//! that is not UTF-8. Whatever a plugin makes of it, `mailprobe check` must end with a report
//! and a Nagios exit code, never exit 101: a plugin that panics costs only its own
//! requirements, which become `not_verified`, never `fail`.
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::lab::{HOSTNAME, Lab, USER};
use common::probe::{PASSWORD_ENV, mailprobe};

/// The peer: TLS on a free port (the lab's certificate for mail.lab.test), one thread per
/// connection, scripted answers; it prints its port, then serves until killed.
const PEER: &str = r#"
import socket, ssl, sys, threading
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(16)
print(srv.getsockname()[1], flush=True)
CAPS = b"IMAP4rev1 AUTH=PLAIN ID"
def serve(raw):
    try:
        c = ctx.wrap_socket(raw, server_side=True)
        f = c.makefile("rb")
        c.sendall(b"* OK [CAPABILITY " + CAPS + b"] hostile ready\r\n")
        while True:
            line = f.readline()
            if not line:
                return
            parts = line.strip().split(b" ")
            tag, cmd = parts[0], (parts[1].upper() if len(parts) > 1 else b"")
            if cmd == b"CAPABILITY":
                c.sendall(b"* CAPABILITY " + CAPS + b"\r\n" + tag + b" OK done\r\n")
            elif cmd == b"AUTHENTICATE":
                if len(parts) < 4:
                    c.sendall(b"+ \r\n")
                    f.readline()
                c.sendall(tag + b" OK [CAPABILITY " + CAPS + b"] logged in\r\n")
            elif cmd == b"LOGIN":
                c.sendall(tag + b" OK [CAPABILITY " + CAPS + b"] logged in\r\n")
            elif cmd == b"LIST":
                c.sendall(b'* LIST () X\xff "x"\r\n* LIST (\\Sent) "/" Sent\r\n* LIST () "/" INBOX\r\n' + tag + b" OK done\r\n")
            elif cmd == b"LOGOUT":
                c.sendall(b"* BYE bye\r\n" + tag + b" OK done\r\n")
                return
            else:
                c.sendall(tag + b" OK done\r\n")
    except Exception:
        pass
    finally:
        raw.close()
while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"#;

struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_plugin_panic_on_server_bytes_never_ends_the_check_with_101() {
    let certs = Lab::certs_dir();
    let child = Command::new("python3")
        .arg("-c")
        .arg(PEER)
        .arg(certs.join("good.pem"))
        .arg(certs.join("good.key"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 is needed for the hostile IMAP peer (Debian package python3)");
    let mut peer = Peer(child);
    let mut port = String::new();
    BufReader::new(peer.0.stdout.take().expect("the peer's stdout"))
        .read_line(&mut port)
        .expect("the peer's port");
    let port = port.trim().to_string();
    assert!(!port.is_empty(), "the hostile peer did not start");

    let ca = Lab::ca_file();
    let ca = ca.display().to_string();
    let address = format!("{HOSTNAME}:{port}");
    let connect_to = format!("{HOSTNAME}:127.0.0.1");
    let check = |format: &str| {
        mailprobe(&[
            "check",
            "--imap",
            &address,
            "--imap-security",
            "tls",
            "--connect-to",
            &connect_to,
            "--ca-file",
            &ca,
            "--user",
            USER,
            "--password-env",
            PASSWORD_ENV,
            "--timeout",
            "20s",
            "--format",
            format,
        ])
    };
    let run = check("json");
    assert!(
        run.peak_rss < common::child::MAX_PEAK_RSS,
        "peak RSS {} bytes:\n{}",
        run.peak_rss,
        run.stderr
    );
    assert!(
        (0..=3).contains(&run.code),
        "exit {} (101 is a panic that escaped):\n{}",
        run.code,
        run.stderr
    );
    let report = run.json();
    let folders = report["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "imap.folders")
        .cloned()
        .unwrap_or_default();
    let summary = folders["summary"].as_str().unwrap_or_default();
    if summary.contains("panicked") {
        // The panic was caught: the probe's own failure, not the server's.
        assert_eq!(folders["status"], "skip", "{folders:#}");
        assert_eq!(folders["evidence"]["reason"], "not_verified", "{folders:#}");
        assert!(folders["remedy"].is_null(), "{folders:#}");
        assert_ne!(report["verdict"], "compliant", "{report:#}");
        assert!(
            run.stderr.contains("is incomplete") || report["verdict"] == "non_compliant",
            "{}",
            run.stderr
        );
    }
    assert_ne!(
        folders["status"], "fail",
        "a parse panic is never the server's failure"
    );
    if report["verdict"] == "incomplete" {
        assert_eq!(run.code, 3);
        let nagios = check("nagios");
        assert_eq!(nagios.code, 3, "{}", nagios.stderr);
        assert!(
            nagios.peak_rss < common::child::MAX_PEAK_RSS,
            "{}",
            nagios.stderr
        );
        assert!(
            nagios.stdout.starts_with("MAILPROBE UNKNOWN - ")
                && nagios.stdout.contains(" incomplete; not verified: ")
                && !nagios.stdout.lines().skip(1).any(|l| l.contains('|')),
            "{}",
            nagios.stdout
        );
        let text = check("text");
        assert_eq!(text.code, 3, "{}", text.stderr);
        assert!(
            text.peak_rss < common::child::MAX_PEAK_RSS,
            "{}",
            text.stderr
        );
        assert!(text.stdout.contains(": INCOMPLETE\n"), "{}", text.stdout);
        assert!(text.stdout.contains("\nnot verified: "), "{}", text.stdout);
    }
}
