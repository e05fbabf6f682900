//! Servers rustls cannot speak to, on real Dovecot and Postfix: only TLS 1.2 with a CBC suite
//! with RSA key exchange (AES256-SHA), and only TLS 1.0. The CRM's client speaks both, so a
//! full `mailprobe check` is compliant through the legacy TLS engine (OpenSSL), with the
//! SPEC's warning for the weak version; with that engine switched off
//! (`MAILPROBE_LEGACY_TLS=off`, the same path as a build without it) it is `incomplete`, never
//! compliant and never a failure blamed on the server.

mod common;

use common::probe::{
    PASSWORD_ENV, Run, assert_status, lab_args, mailprobe_env, requirement, run_args, with_smtp,
};
use common::{DovecotOpts, Lab, PostfixOpts};
use serde_json::Value;

/// Postfix first: it is dropped (stopped) before the Dovecot it authenticates against.
struct Mail {
    postfix: Lab,
    dovecot: Lab,
}

fn mail(name: &str, dovecot: DovecotOpts, postfix: PostfixOpts) -> Mail {
    let dovecot = Lab::dovecot(&format!("{name}-dc"), dovecot);
    let postfix = Lab::postfix(&format!("{name}-pf"), &dovecot, postfix);
    Mail { postfix, dovecot }
}

/// A full check (every built-in plugin) of the lab's IMAP and SMTP listeners; with the engine,
/// the opt-in round trip too (a message submitted and found again over OpenSSL).
fn check(m: &Mail, imap: &str, smtp: &str, engine_off: bool) -> Run {
    let mut args = with_smtp(lab_args(&m.dovecot, imap), &m.postfix, smtp);
    if !engine_off {
        args.push("--roundtrip".into());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut env = vec![(PASSWORD_ENV, Lab::password())];
    if engine_off {
        env.push(("MAILPROBE_LEGACY_TLS", "off"));
    }
    let run = mailprobe_env(&refs, &env);
    assert!(
        !run.stdout.contains(Lab::password()) && !run.stderr.contains(Lab::password()),
        "the password leaked"
    );
    run
}

fn statuses(report: &Value) -> String {
    report["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{} {} {}\n", r["id"], r["status"], r["summary"]))
        .collect()
}

/// Everything passes (or warns where `warn` says), and the encryption evidence of both
/// protocols names OpenSSL, `version` and `cipher`.
#[track_caller]
fn assert_compliant_through_openssl(run: &Run, version: &str, cipher: &str, warn: &[&str]) {
    let report = run.json();
    let all = statuses(&report);
    for r in report["requirements"].as_array().unwrap() {
        let id = r["id"].as_str().unwrap();
        let want = if warn.contains(&id) { "warn" } else { "pass" };
        assert_eq!(r["status"], want, "{id}: {r:#}\n{all}");
    }
    for (id, cipher_key) in [
        ("imap.encryption", "cipher"),
        ("smtp.encryption", "tls_cipher"),
    ] {
        let ev = &requirement(&report, id)["evidence"];
        assert_eq!(ev["tls_engine"], "openssl", "{id}: {ev:#}");
        assert_eq!(ev["tls_version"], version, "{id}: {ev:#}");
        assert_eq!(ev[cipher_key], cipher, "{id}: {ev:#}");
    }
    // The chain OpenSSL received was verified by the rustls engine's verifier.
    let imap = &requirement(&report, "imap.encryption")["evidence"];
    assert_eq!(imap["certificate_verified"], true, "{imap:#}");
    // The concurrent sessions ran over the same engine and logged in.
    let cc = &requirement(&report, "connections.concurrent")["evidence"];
    assert_eq!(report["verdict"], "compliant", "{all}");
    assert_eq!(
        run.code,
        if warn.is_empty() { 0 } else { 1 },
        "{all}\n{cc:#}"
    );
}

/// Nothing fails; encryption passes (TLS is there), and login is unverified naming the
/// probe's limit: `incomplete`, exit 3.
#[track_caller]
fn assert_incomplete_without_engine(run: &Run) {
    let report = run.json();
    let all = statuses(&report);
    assert_eq!(report["verdict"], "incomplete", "{all}");
    assert_eq!(run.code, 3, "{all}");
    for r in report["requirements"].as_array().unwrap() {
        assert_ne!(r["status"], "fail", "{r:#}\n{all}");
    }
    for p in ["imap", "smtp"] {
        let enc = requirement(&report, &format!("{p}.encryption"));
        assert_eq!(enc["status"], "pass", "{enc:#}");
        assert_eq!(enc["evidence"]["legacy_tls_only"], true, "{enc:#}");
        assert!(enc.get("remedy").is_none_or(Value::is_null), "{enc:#}");
        let login = requirement(&report, &format!("{p}.login"));
        assert_eq!(login["status"], "skip", "{login:#}");
        assert_eq!(login["evidence"]["reason"], "not_verified", "{login:#}");
        assert!(
            login["summary"]
                .as_str()
                .unwrap()
                .contains("no legacy TLS engine"),
            "{login:#}"
        );
    }
}

#[test]
fn tls12_cbc_only_servers_are_compliant_through_openssl() {
    let m = mail(
        "legacy-cbc",
        DovecotOpts::tls12_cbc_only(),
        PostfixOpts::tls12_cbc_only(),
    );
    for (imap, smtp) in [("imaps", "submissions"), ("imap", "submission")] {
        let run = check(&m, imap, smtp, false);
        assert_compliant_through_openssl(&run, "TLSv1.2", "TLS_RSA_WITH_AES_256_CBC_SHA", &[]);
        let report = run.json();
        // The raw version probes see the same server whatever the engine.
        let v = &requirement(&report, "imap.tls_versions")["evidence"]["versions"];
        assert_eq!(v["TLSv1.2"], true, "{v:#}");
        assert_eq!(v["TLSv1.3"], false, "{v:#}");
        assert_eq!(v["TLSv1.0"], false, "{v:#}");
    }
}

#[test]
fn tls12_cbc_only_servers_without_the_engine_are_incomplete() {
    let m = mail(
        "legacy-cbc-off",
        DovecotOpts::tls12_cbc_only(),
        PostfixOpts::tls12_cbc_only(),
    );
    for (imap, smtp) in [("imaps", "submissions"), ("imap", "submission")] {
        let run = check(&m, imap, smtp, true);
        assert_incomplete_without_engine(&run);
        let report = run.json();
        // The certificate checks do not depend on the engine.
        assert_status(&report, "imap.certificate.trust", "pass");
        assert_status(&report, "smtp.certificate.trust", "pass");
        assert_status(&report, "imap.tls_versions", "pass");
        let enc = requirement(&report, "smtp.encryption");
        assert!(
            !enc["summary"]
                .as_str()
                .unwrap()
                .contains("older than TLS 1.2"),
            "{enc:#}"
        );
    }
}

#[test]
fn tls10_only_servers_are_compliant_with_warnings_through_openssl() {
    let m = mail(
        "legacy-tls10",
        DovecotOpts::tls10_only(),
        PostfixOpts::tls10_only(),
    );
    for (imap, smtp) in [("imaps", "submissions"), ("imap", "submission")] {
        let run = check(&m, imap, smtp, false);
        let report = run.json();
        let cipher = requirement(&report, "imap.encryption")["evidence"]["cipher"].clone();
        assert_compliant_through_openssl(
            &run,
            "TLSv1.0",
            cipher.as_str().unwrap_or("?"),
            &["imap.tls_versions", "smtp.tls_versions"],
        );
        let w = requirement(&report, "imap.tls_versions");
        assert!(w["remedy"].as_str().unwrap().contains("TLS 1.2"), "{w:#}");
    }
}

#[test]
fn tls10_only_servers_without_the_engine_are_incomplete() {
    let m = mail(
        "legacy-tls10-off",
        DovecotOpts::tls10_only(),
        PostfixOpts::tls10_only(),
    );
    let run = check(&m, "imaps", "submission", true);
    assert_incomplete_without_engine(&run);
}

/// Certificate verification is as strict through OpenSSL as through rustls: the same verdict
/// and the same words for the same certificate, and no password to the unverified server.
#[test]
fn an_untrusted_certificate_is_judged_the_same_by_both_engines() {
    let legacy = Lab::dovecot(
        "legacy-selfsigned",
        DovecotOpts {
            cert: "selfsigned",
            ..DovecotOpts::tls12_cbc_only()
        },
    );
    let modern = Lab::dovecot(
        "modern-selfsigned",
        DovecotOpts {
            cert: "selfsigned",
            ..Default::default()
        },
    );
    let legacy = run_args(&lab_args(&legacy, "imaps")).json();
    let modern = run_args(&lab_args(&modern, "imaps")).json();
    let enc = &requirement(&legacy, "imap.encryption")["evidence"];
    assert_eq!(enc["tls_engine"], "openssl", "{enc:#}");
    assert_eq!(enc["certificate_verified"], false, "{enc:#}");
    assert_eq!(
        requirement(&modern, "imap.encryption")["evidence"]["tls_engine"],
        "rustls"
    );
    for id in ["imap.certificate.trust", "imap.login", "imap.folders"] {
        let (l, m) = (requirement(&legacy, id), requirement(&modern, id));
        assert_eq!(l["status"], m["status"], "{id}: {l:#}\n{m:#}");
        assert_eq!(l["summary"], m["summary"], "{id}: {l:#}\n{m:#}");
    }
    // Login was not tried: the password never went to the unverified server.
    assert_status(&legacy, "imap.login", "skip");
    assert_eq!(legacy["verdict"], "non_compliant");
}
