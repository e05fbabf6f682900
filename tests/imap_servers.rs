//! The `imap` plugin against real servers from the lab (Dovecot, Courier-IMAP) and one scripted
//! fake for a server that greets with `* BYE`. Each test runs the real `mailprobe check`.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::thread;

use common::probe::{PASSWORD_ENV, assert_status, lab_args, mailprobe_env, requirement, run_args};
use common::{CourierOpts, DovecotOpts, Lab};
use serde_json::Value;

fn dovecot(name: &str, opts: DovecotOpts) -> Lab {
    Lab::dovecot(name, opts)
}

/// Replaces the value after `flag` in an argument list.
fn set(mut args: Vec<String>, flag: &str, value: &str) -> Vec<String> {
    let i = args.iter().position(|a| a == flag).expect(flag);
    args[i + 1] = value.to_string();
    args
}

fn imap_results(report: &Value) -> Vec<(String, String)> {
    report["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["id"].as_str().unwrap_or("").starts_with("imap."))
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[track_caller]
fn assert_good_dovecot(report: &Value, security: &str) {
    assert_status(report, "imap.encryption", "pass");
    assert_status(report, "imap.server_software", "pass");
    assert_status(report, "imap.login", "pass");
    assert_status(report, "imap.folders", "pass");
    let enc = &requirement(report, "imap.encryption")["evidence"];
    assert_eq!(enc["security"], security);
    // rustls stays the engine for every server it can speak to.
    assert_eq!(enc["tls_engine"], "rustls", "{enc:#}");
    let sw = &requirement(report, "imap.server_software")["evidence"];
    assert_eq!(sw["software"], "Dovecot", "{sw:#}");
    assert!(
        sw["greeting"].as_str().unwrap().contains("Dovecot"),
        "{sw:#}"
    );
    let login = &requirement(report, "imap.login")["evidence"];
    // The hubspot client (JavaMail) uses SASL PLAIN where the server offers it.
    assert_eq!(login["method"], "AUTHENTICATE PLAIN", "{login:#}");
    assert_eq!(login["mechanism_used"], "PLAIN", "{login:#}");
    assert!(
        login["mechanisms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "PLAIN"),
        "{login:#}"
    );
    let f = &requirement(report, "imap.folders")["evidence"];
    assert_eq!(f["sent_folder"], "Sent", "{f:#}");
    assert_eq!(f["sent_by"], "special-use", "{f:#}");
    // Drafts, Trash, Projects.
    assert_eq!(f["other_folders"], 3, "{f:#}");
}

#[test]
fn dovecot_good_starttls_and_implicit_tls() {
    let lab = dovecot("imap-good", DovecotOpts::default());
    for (listener, security) in [("imap", "starttls"), ("imaps", "tls")] {
        let run = run_args(&lab_args(&lab, listener));
        let report = run.json();
        assert_good_dovecot(&report, security);
        assert!(
            !run.stdout.contains(common::lab::PASSWORD),
            "the password leaked"
        );
        assert!(
            !run.stderr.contains(common::lab::PASSWORD),
            "the password leaked"
        );
    }
}

/// Removes a flag and its value from an argument list.
fn without(mut args: Vec<String>, flag: &str) -> Vec<String> {
    let i = args.iter().position(|a| a == flag).expect(flag);
    args.drain(i..=i + 1);
    args
}

#[test]
fn security_is_found_out_on_ports_that_are_not_well_known() {
    // The lab's ports are not 993/143: with no --imap-security the probe finds out which of
    // them speaks TLS from the first byte and says so.
    let lab = dovecot("imap-auto", DovecotOpts::default());
    for (listener, security) in [("imap", "starttls"), ("imaps", "tls")] {
        let run = run_args(&without(lab_args(&lab, listener), "--imap-security"));
        let report = run.json();
        assert_good_dovecot(&report, security);
        let enc = &requirement(&report, "imap.encryption")["evidence"];
        assert_eq!(enc["security_detected"], true, "{enc:#}");
        let reach = &requirement(&report, "imap.reachable")["evidence"];
        assert_eq!(reach["security"], security, "{reach:#}");
    }
}

#[test]
fn courier_is_identified_on_both_ports() {
    let lab = Lab::courier("imap-courier", CourierOpts::default());
    for listener in ["imap", "imaps"] {
        let run = run_args(&lab_args(&lab, listener));
        let report = run.json();
        assert_status(&report, "imap.encryption", "pass");
        assert_status(&report, "imap.server_software", "fail");
        let sw = requirement(&report, "imap.server_software");
        assert_eq!(sw["evidence"]["software"], "Courier-IMAP", "{sw:#}");
        assert!(
            sw["evidence"]["greeting"]
                .as_str()
                .unwrap()
                .contains("Courier-IMAP")
        );
        assert!(
            sw["remedy"].as_str().unwrap().contains("not supported"),
            "{sw:#}"
        );
        // Courier is usable otherwise: login and folders work (INBOX.Sent found by name).
        assert_status(&report, "imap.login", "pass");
        assert_status(&report, "imap.folders", "pass");
        let f = &requirement(&report, "imap.folders")["evidence"];
        assert_eq!(f["sent_folder"], "INBOX.Sent", "{f:#}");
        assert_eq!(f["sent_by"], "name", "{f:#}");
        assert_eq!(report["verdict"], "non_compliant");
        assert_eq!(run.code, 2, "{}", run.stderr);
    }
}

#[test]
fn server_without_tls_fails_encryption_and_skips_login() {
    let lab = dovecot(
        "imap-notls",
        DovecotOpts {
            ssl: "no",
            imaps: false,
            ..Default::default()
        },
    );
    let run = run_args(&lab_args(&lab, "imap"));
    let report = run.json();
    assert_status(&report, "imap.encryption", "fail");
    let enc = requirement(&report, "imap.encryption");
    assert_eq!(enc["evidence"]["starttls_offered"], false, "{enc:#}");
    assert!(
        enc["remedy"].as_str().unwrap().contains("ssl = required"),
        "{enc:#}"
    );
    assert_status(&report, "imap.login", "skip");
    assert_eq!(
        requirement(&report, "imap.login")["evidence"]["prerequisite"],
        "imap.encryption"
    );
    assert_status(&report, "imap.folders", "skip");
    // The greeting was plain text: the software is still identified.
    assert_status(&report, "imap.server_software", "pass");
    assert_eq!(run.code, 2);
}

#[test]
fn account_without_a_sent_folder() {
    let lab = dovecot("imap-nosent", DovecotOpts::default());
    let args = set(lab_args(&lab, "imaps"), "--user", "nosent@lab.test");
    let report = run_args(&args).json();
    assert_status(&report, "imap.login", "pass");
    assert_status(&report, "imap.folders", "fail");
    let f = requirement(&report, "imap.folders");
    assert!(f["evidence"]["sent_folder"].is_null(), "{f:#}");
    assert_eq!(f["evidence"]["other_folders"], 2, "{f:#}");
    assert!(f["remedy"].as_str().unwrap().contains("Sent"), "{f:#}");
}

#[test]
fn wrong_password_is_refused_with_the_servers_words() {
    let lab = dovecot("imap-badpw", DovecotOpts::default());
    let args = lab_args(&lab, "imap");
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let wrong = "Not-The-Password-42";
    let run = mailprobe_env(&refs, &[(PASSWORD_ENV, wrong)]);
    let report = run.json();
    assert_status(&report, "imap.encryption", "pass");
    assert_status(&report, "imap.login", "fail");
    let l = requirement(&report, "imap.login");
    let words = l["evidence"]["server_response"].as_str().unwrap();
    assert!(words.contains("Authentication failed"), "{l:#}");
    // RFC 5530: the code chooses the remedy; a wrong password is not temporary.
    assert_eq!(
        l["evidence"]["response_code"], "AUTHENTICATIONFAILED",
        "{l:#}"
    );
    assert_eq!(l["evidence"]["temporary"], false, "{l:#}");
    assert!(
        l["summary"]
            .as_str()
            .unwrap()
            .contains("user name or the password"),
        "{l:#}"
    );
    assert!(l["remedy"].as_str().unwrap().contains("password"), "{l:#}");
    assert_status(&report, "imap.folders", "skip");
    assert_eq!(
        requirement(&report, "imap.folders")["evidence"]["prerequisite"],
        "imap.login"
    );
    assert!(
        !run.stdout.contains(wrong) && !run.stderr.contains(wrong),
        "the password leaked"
    );
}

#[test]
fn logindisabled_before_starttls_is_respected() {
    let lab = dovecot(
        "imap-logindisabled",
        DovecotOpts {
            logindisabled: true,
            imaps: false,
            ..Default::default()
        },
    );
    let report = run_args(&lab_args(&lab, "imap")).json();
    assert_status(&report, "imap.encryption", "pass");
    let enc = &requirement(&report, "imap.encryption")["evidence"];
    let before: Vec<&str> = enc["capabilities_before_tls"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(before.contains(&"LOGINDISABLED"), "{enc:#}");
    assert_status(&report, "imap.login", "pass");
    let l = &requirement(&report, "imap.login")["evidence"];
    assert_eq!(l["login_disabled_before_tls"], true, "{l:#}");
    assert_eq!(l["login_disabled"], false, "{l:#}");
    assert_status(&report, "imap.folders", "pass");
}

#[test]
fn courier_logindisabled_before_starttls() {
    let lab = Lab::courier(
        "imap-courier-ld",
        CourierOpts {
            logindisabled: true,
            imaps: false,
            ..Default::default()
        },
    );
    let report = run_args(&lab_args(&lab, "imap")).json();
    assert_status(&report, "imap.encryption", "pass");
    assert_status(&report, "imap.login", "pass");
    assert_eq!(
        requirement(&report, "imap.login")["evidence"]["login_disabled_before_tls"],
        true
    );
    assert_status(&report, "imap.server_software", "fail");
}

/// A server that answers every connection with `* BYE` and closes: no real server does this on
/// demand, so a scripted one stands in.
fn bye_server(text: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.write_all(text.as_bytes());
        }
    });
    port
}

#[test]
fn bye_greeting_is_a_clear_failure() {
    let port = bye_server("* BYE Too many connections, try again later\r\n");
    let imap = format!("mail.lab.test:{port}");
    let args = [
        "check",
        "--imap",
        &imap,
        "--imap-security",
        "starttls",
        "--connect-to",
        "mail.lab.test:127.0.0.1",
        "--user",
        "alice@lab.test",
        "--password-env",
        PASSWORD_ENV,
        "--format",
        "json",
        "--timeout",
        "5s",
    ];
    let run = mailprobe_env(&args, &[(PASSWORD_ENV, "x")]);
    let report = run.json();
    assert_status(&report, "imap.reachable", "pass");
    assert_status(&report, "imap.encryption", "fail");
    let enc = requirement(&report, "imap.encryption");
    assert!(
        enc["evidence"]["error"]
            .as_str()
            .unwrap()
            .contains("Too many connections"),
        "{enc:#}"
    );
    assert!(
        enc["evidence"]["greeting"]
            .as_str()
            .unwrap()
            .starts_with("* BYE"),
        "{enc:#}"
    );
    assert_status(&report, "imap.login", "skip");
    assert_status(&report, "imap.folders", "skip");
    assert!(run.elapsed.as_secs() < 10, "{:?}", run.elapsed);
    assert_eq!(run.code, 2, "{:?}", imap_results(&report));
}

#[test]
fn tls_1_0_only_server_without_legacy_engine_skips_login_instead_of_failing_it() {
    let lab = dovecot("imap-tls10", DovecotOpts::tls10_only());
    for listener in ["imap", "imaps"] {
        // The legacy engine switched off: the same path as a build without it (with it, see
        // tests/legacy_tls.rs).
        let args = lab_args(&lab, listener);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let report = mailprobe_env(
            &refs,
            &[
                (PASSWORD_ENV, Lab::password()),
                ("MAILPROBE_LEGACY_TLS", "off"),
            ],
        )
        .json();
        assert_status(&report, "imap.encryption", "pass");
        assert_eq!(
            requirement(&report, "imap.encryption")["evidence"]["legacy_tls_only"],
            true
        );
        assert_status(&report, "imap.login", "skip");
        assert_eq!(
            requirement(&report, "imap.login")["evidence"]["reason"],
            "not_verified"
        );
        assert_status(&report, "imap.folders", "skip");
        assert_ne!(
            crate::common::probe::status(&report, "imap.server_software"),
            "fail"
        );
        assert_eq!(report["verdict"], "incomplete");
    }
}
