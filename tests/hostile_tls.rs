//! A live peer that answers the TLS 1.3 ClientHello (and refuses SSLv3 to TLS 1.1, through a
//! real rustls acceptor that gets the bytes the peer already read) but stalls a ClientHello
//! offering at most TLS 1.2: it reads it and never answers. Whether the server speaks TLS 1.2
//! is then unknown, and the CRM's client speaks nothing newer, so `imap.tls_versions` cannot be
//! judged: `skip` (`not_verified`), never a `fail` that blames the server.

mod common;
#[path = "common/hostile.rs"]
mod hostile;
#[path = "common/hostile_check.rs"]
mod hostile_check;

use std::io::Read;
use std::net::TcpStream;

use hostile::{Peer, Then};
use hostile_check::{assert_sound, check_args, mailprobe, result};

/// Reads what the probe sends until it hangs up (or the peer's read timeout), answering nothing.
fn stall(mut tcp: TcpStream) {
    let mut sink = [0u8; 4096];
    while matches!(tcp.read(&mut sink), Ok(n) if n > 0) {}
}

fn tls12_staller(mut tcp: TcpStream) {
    let Some(hello) = hostile::read_first_record(&mut tcp) else {
        return;
    };
    if hostile::highest_offered(&hello) == Some(0x0303) {
        stall(tcp);
        return;
    }
    if let Some(mut peer) = Peer::tls_after(tcp, &hello) {
        hostile::imap(&mut peer, hostile::IMAP_GREETING.as_bytes(), |_, _| {
            Then::Default
        });
    }
}

#[test]
fn a_stalled_tls_1_2_hello_leaves_the_versions_unverified() {
    let imap = hostile::serve_tcp(tls12_staller);
    let mut args = check_args((&imap, hostile::Mode::Tls), None);
    args.extend(["--only", "tls", "--format", "json"].map(String::from));
    let run = mailprobe(&args);
    assert_sound(&run, "json");
    let report: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", run.stdout, run.stderr));
    let r = result(&report, "imap.tls_versions");
    assert_eq!(r["status"], "skip", "{r:#}\n{}", run.stderr);
    assert_eq!(r["evidence"]["reason"], "not_verified", "{r:#}");
    assert!(r["remedy"].is_null(), "a remedy blames the server: {r:#}");
    let versions = &r["evidence"]["versions"];
    assert_eq!(versions["TLSv1.2"], serde_json::Value::Null, "{r:#}");
    assert_eq!(versions["TLSv1.3"], true, "{r:#}");
    for old in ["SSLv3", "TLSv1.0", "TLSv1.1"] {
        assert_eq!(versions[old], false, "{old}: {r:#}");
    }
    assert_eq!(report["verdict"], "incomplete", "{report:#}");
    assert_eq!(run.code, Some(3), "{report:#}");
}
