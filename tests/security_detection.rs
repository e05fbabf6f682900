//! Auto-detection on ports that are not well-known cannot hide a TLS failure: real Dovecot
//! servers that speak only TLS 1.3 or only TLS 1.0 are found to speak TLS (and the real failure
//! or warning is reported by the requirement it belongs to), and a peer that answers a
//! ClientHello with garbage is said to speak neither IMAP nor TLS, never a greeting timeout.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use common::lab::HOSTNAME;
use common::probe::{assert_status, lab_args, requirement, run_args};
use common::{DovecotOpts, Lab};
use serde_json::Value;

fn without(mut args: Vec<String>, flag: &str) -> Vec<String> {
    let i = args.iter().position(|a| a == flag).expect(flag);
    args.drain(i..=i + 1);
    args
}

fn auto(lab: &Lab) -> Value {
    let mut args = without(lab_args(lab, "imaps"), "--imap-security");
    args.extend(["--only".into(), "imap,tls".into()]);
    run_args(&args).json()
}

fn no_greeting_timeout(report: &Value) {
    for r in report["requirements"].as_array().unwrap() {
        let s = r["summary"].as_str().unwrap_or_default();
        assert!(
            !(s.contains("timed out") && s.contains("greeting")),
            "a greeting timeout hides what happened: {r:#}"
        );
    }
}

#[test]
fn a_tls_1_3_only_server_is_found_to_speak_tls_and_fails_its_versions() {
    let lab = Lab::dovecot(
        "detect-13",
        DovecotOpts {
            tls_min: Some("TLSv1.3"),
            imap: false,
            ..Default::default()
        },
    );
    let report = auto(&lab);
    let reach = &requirement(&report, "imap.reachable")["evidence"];
    assert_eq!(reach["security"], "tls", "{reach:#}");
    assert_eq!(reach["security_detected"], true, "{reach:#}");
    assert_status(&report, "imap.tls_versions", "fail");
    no_greeting_timeout(&report);
    // The client's TLS 1.2 handshake is refused: a TLS failure, in well under the timeout.
    let enc = requirement(&report, "imap.encryption");
    assert_eq!(enc["status"], "fail", "{enc:#}");
    assert!(
        !enc["summary"].as_str().unwrap().contains("timed out"),
        "{enc:#}"
    );
}

#[test]
fn a_tls_1_0_only_server_is_found_to_speak_tls() {
    let lab = Lab::dovecot(
        "detect-10",
        DovecotOpts {
            imap: false,
            ..DovecotOpts::tls10_only()
        },
    );
    let report = auto(&lab);
    let reach = &requirement(&report, "imap.reachable")["evidence"];
    assert_eq!(reach["security"], "tls", "{reach:#}");
    assert_status(&report, "imap.tls_versions", "warn");
    assert_status(&report, "imap.encryption", "pass");
    no_greeting_timeout(&report);
}

#[test]
fn a_peer_answering_garbage_speaks_neither_imap_nor_tls() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let peer = std::thread::spawn(move || {
        // Every connection: silence, then garbage in answer to whatever comes.
        listener.set_nonblocking(false).unwrap();
        for conn in listener.incoming().take(4) {
            let Ok(mut c) = conn else { break };
            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            if matches!(c.read(&mut buf), Ok(n) if n > 0) {
                let _ = c.write_all(b"\x00\x07garbage\r\n");
            }
        }
    });
    let run = run_args(&[
        "check".into(),
        "--imap".into(),
        format!("{HOSTNAME}:{port}"),
        "--connect-to".into(),
        format!("{HOSTNAME}:127.0.0.1"),
        "--user".into(),
        Lab::user().into(),
        "--password-env".into(),
        common::probe::PASSWORD_ENV.into(),
        "--only".into(),
        "imap".into(),
        "--timeout".into(),
        "8s".into(),
        "--format".into(),
        "json".into(),
    ]);
    let report = run.json();
    no_greeting_timeout(&report);
    let text = report.to_string();
    assert!(text.contains("speaks neither"), "{report:#}");
    assert_ne!(report["verdict"], "compliant");
    drop(peer);
}
