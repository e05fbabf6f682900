//! TLS version enumeration and certificate checks against the lab's real Dovecot and Postfix,
//! with the version map cross-checked against `openssl s_client` as an independent oracle.

mod common;

use std::process::{Command, Stdio};

use common::lab::HOSTNAME;
use common::probe::{assert_status, lab_args, requirement, run_args, with_smtp};
use common::{DovecotOpts, Lab, PostfixOpts};
use serde_json::Value;

/// What `openssl s_client` says about one version (SSLv3 cannot be asked: OpenSSL 3 has none).
fn openssl_accepts(port: u16, starttls: Option<&str>, version: &str) -> bool {
    let flag = match version {
        "TLSv1.0" => "-tls1",
        "TLSv1.1" => "-tls1_1",
        "TLSv1.2" => "-tls1_2",
        "TLSv1.3" => "-tls1_3",
        other => panic!("no openssl flag for {other}"),
    };
    let mut cmd = Command::new("timeout");
    cmd.args([
        "10",
        "openssl",
        "s_client",
        "-connect",
        &format!("127.0.0.1:{port}"),
    ])
    .args([
        "-servername",
        HOSTNAME,
        flag,
        "-cipher",
        "DEFAULT:@SECLEVEL=0",
    ]);
    if let Some(proto) = starttls {
        cmd.args(["-starttls", proto]);
    }
    let out = cmd.stdin(Stdio::null()).output().expect("openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout);
    out.status.success() && text.contains("Cipher is ") && !text.contains("Cipher is (NONE)")
}

fn versions(report: &Value, id: &str) -> Vec<(String, bool)> {
    let map = requirement(report, id)["evidence"]["versions"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    ["SSLv3", "TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
        .iter()
        .map(|v| {
            (
                v.to_string(),
                map.get(*v)
                    .and_then(Value::as_bool)
                    .unwrap_or_else(|| panic!("{v} missing in {map:?}")),
            )
        })
        .collect()
}

fn assert_versions(report: &Value, id: &str, expected: &[(&str, bool)]) {
    let got = versions(report, id);
    for (v, want) in expected {
        let have = got.iter().find(|(n, _)| n == v).map(|(_, b)| *b);
        assert_eq!(have, Some(*want), "{id} {v}: {:#}", requirement(report, id));
    }
}

fn assert_oracle_agrees(report: &Value, id: &str, port: u16, starttls: Option<&str>) {
    for (v, accepted) in versions(report, id) {
        if v == "SSLv3" {
            continue;
        }
        assert_eq!(
            openssl_accepts(port, starttls, &v),
            accepted,
            "{id} {v}: mailprobe and openssl s_client disagree"
        );
    }
}

fn check(lab: &Lab, listener: &str, extra: &[&str]) -> Value {
    let mut args = lab_args(lab, listener);
    args.extend(["--only".into(), "tls,certificate".into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let run = run_args(&args);
    assert!(
        run.code == 0 || run.code == 1 || run.code == 2,
        "{}",
        run.stderr
    );
    run.json()
}

#[test]
fn all_versions_from_tls10_to_13_on_both_ports() {
    let lab = Lab::dovecot(
        "tls-all",
        DovecotOpts {
            tls_min: Some("TLSv1"),
            ..Default::default()
        },
    );
    for (listener, starttls) in [("imaps", None), ("imap", Some("imap"))] {
        let report = check(&lab, listener, &[]);
        assert_versions(
            &report,
            "imap.tls_versions",
            &[
                ("SSLv3", false),
                ("TLSv1.0", true),
                ("TLSv1.1", true),
                ("TLSv1.2", true),
                ("TLSv1.3", true),
            ],
        );
        assert_status(&report, "imap.tls_versions", "pass");
        let ev = &requirement(&report, "imap.tls_versions")["evidence"];
        assert!(
            ev["ciphers"]["TLSv1.2"]
                .as_str()
                .is_some_and(|c| c.starts_with("TLS_")),
            "{ev:#}"
        );
        // The run's session is the client's: TLS 1.2 at most for hubspot.
        assert_eq!(ev["negotiated"]["version"], "TLSv1.2", "{ev:#}");
        assert_oracle_agrees(&report, "imap.tls_versions", lab.port(listener), starttls);
        for id in [
            "imap.certificate.name",
            "imap.certificate.trust",
            "imap.certificate.expiry",
        ] {
            assert_status(&report, id, "pass");
        }
        let exp = &requirement(&report, "imap.certificate.expiry")["evidence"];
        assert!(exp["days_left"].as_i64().unwrap() > 300, "{exp:#}");
        assert!(exp["not_after"].as_str().unwrap().ends_with('Z'), "{exp:#}");
        assert_eq!(report["verdict"], "compliant");
    }
}

#[test]
fn tls13_only_fails_the_hubspot_profile() {
    let lab = Lab::dovecot(
        "tls-13only",
        DovecotOpts {
            tls_min: Some("TLSv1.3"),
            ..Default::default()
        },
    );
    let report = check(&lab, "imaps", &[]);
    assert_versions(
        &report,
        "imap.tls_versions",
        &[
            ("SSLv3", false),
            ("TLSv1.0", false),
            ("TLSv1.1", false),
            ("TLSv1.2", false),
            ("TLSv1.3", true),
        ],
    );
    let r = requirement(&report, "imap.tls_versions");
    assert_eq!(r["status"], "fail", "{r:#}");
    assert!(
        r["remedy"].as_str().unwrap().contains("ssl_min_protocol"),
        "{r:#}"
    );
    assert_oracle_agrees(&report, "imap.tls_versions", lab.port("imaps"), None);
    // The certificate is still checked (read over TLS 1.3, which the client cannot speak).
    assert_status(&report, "imap.certificate.name", "pass");
    assert_eq!(report["verdict"], "non_compliant");
}

#[test]
fn postfix_with_only_tls12_on_submission() {
    let dovecot = Lab::dovecot("tls-pf12-dc", DovecotOpts::default());
    let postfix = Lab::postfix(
        "tls-pf12",
        &dovecot,
        PostfixOpts {
            tls_protocols: Some(">=TLSv1.2, <=TLSv1.2"),
            ..Default::default()
        },
    );
    let mut args = with_smtp(lab_args(&dovecot, "imaps"), &postfix, "submission");
    args.extend(["--only".into(), "tls,certificate".into()]);
    let report = run_args(&args).json();
    assert_versions(
        &report,
        "smtp.tls_versions",
        &[
            ("SSLv3", false),
            ("TLSv1.0", false),
            ("TLSv1.1", false),
            ("TLSv1.2", true),
            ("TLSv1.3", false),
        ],
    );
    assert_status(&report, "smtp.tls_versions", "pass");
    assert_oracle_agrees(
        &report,
        "smtp.tls_versions",
        postfix.port("submission"),
        Some("smtp"),
    );
    for id in [
        "smtp.certificate.name",
        "smtp.certificate.trust",
        "smtp.certificate.expiry",
    ] {
        assert_status(&report, id, "pass");
    }
}

#[test]
fn only_weak_versions_warn_and_the_certificate_comes_from_the_raw_probe() {
    let lab = Lab::dovecot(
        "tls-weak",
        DovecotOpts {
            tls_min: Some("TLSv1"),
            tls_max: Some("TLSv1.1"),
            ..Default::default()
        },
    );
    let report = check(&lab, "imaps", &[]);
    assert_versions(
        &report,
        "imap.tls_versions",
        &[
            ("SSLv3", false),
            ("TLSv1.0", true),
            ("TLSv1.1", true),
            ("TLSv1.2", false),
            ("TLSv1.3", false),
        ],
    );
    assert_status(&report, "imap.tls_versions", "warn");
    assert_oracle_agrees(&report, "imap.tls_versions", lab.port("imaps"), None);
    // rustls cannot talk to this server; the chain was read from the TLS 1.1 probe's
    // clear-text Certificate message.
    assert_status(&report, "imap.certificate.name", "pass");
    assert_status(&report, "imap.certificate.trust", "pass");
    assert_status(&report, "imap.certificate.expiry", "pass");
    assert_eq!(report["verdict"], "compliant");
}

#[test]
fn certificate_problems_are_each_reported_on_their_own() {
    struct Case {
        cert: &'static str,
        extra: &'static [&'static str],
        name: &'static str,
        trust: &'static str,
        expiry: &'static str,
    }
    let cases = [
        Case {
            cert: "expired",
            extra: &[],
            name: "pass",
            trust: "pass",
            expiry: "fail",
        },
        Case {
            cert: "soon",
            extra: &[],
            name: "pass",
            trust: "pass",
            expiry: "warn",
        },
        Case {
            cert: "wrongname",
            extra: &[],
            name: "fail",
            trust: "pass",
            expiry: "pass",
        },
        Case {
            cert: "sanonly",
            extra: &[],
            name: "warn",
            trust: "pass",
            expiry: "pass",
        },
        Case {
            cert: "wildcard",
            extra: &[],
            name: "pass",
            trust: "pass",
            expiry: "pass",
        },
        Case {
            cert: "selfsigned",
            extra: &[],
            name: "pass",
            trust: "fail",
            expiry: "pass",
        },
        Case {
            cert: "selfsigned",
            extra: &["--allow-insecure-cert"],
            name: "pass",
            trust: "warn",
            expiry: "pass",
        },
    ];
    for case in cases {
        let lab = Lab::dovecot(
            &format!("cert-{}", case.cert),
            DovecotOpts {
                cert: case.cert,
                ..Default::default()
            },
        );
        let report = check(&lab, "imaps", case.extra);
        let ctx = format!("cert {} {:?}", case.cert, case.extra);
        for (id, want) in [
            ("imap.certificate.name", case.name),
            ("imap.certificate.trust", case.trust),
            ("imap.certificate.expiry", case.expiry),
        ] {
            let r = requirement(&report, id);
            assert_eq!(r["status"], want, "{ctx}: {r:#}");
            if want != "pass" {
                assert!(
                    r["remedy"].as_str().is_some_and(|s| !s.is_empty()),
                    "{ctx}: {r:#}"
                );
            }
        }
        let name = &requirement(&report, "imap.certificate.name")["evidence"];
        assert!(
            name.get("subject_cn").is_some() && name["san"].is_array(),
            "{name:#}"
        );
        let expiry = &requirement(&report, "imap.certificate.expiry")["evidence"];
        assert!(
            expiry["not_after"].is_string() && expiry["days_left"].is_i64(),
            "{ctx}: {expiry:#}"
        );
        match case.cert {
            "expired" => assert!(expiry["days_left"].as_i64().unwrap() < 0),
            "soon" => assert!((0..30).contains(&expiry["days_left"].as_i64().unwrap())),
            "selfsigned" => assert_eq!(
                requirement(&report, "imap.certificate.trust")["evidence"]["reason"],
                "self_signed"
            ),
            "wrongname" => assert_eq!(name["subject_cn"], "other.example.net"),
            "sanonly" => assert_eq!(name["san"][0], HOSTNAME),
            _ => {}
        }
    }
}

#[test]
fn without_the_lab_ca_the_chain_is_untrusted_but_expiry_is_still_reported() {
    let lab = Lab::dovecot("cert-noca", DovecotOpts::default());
    let mut args = lab_args(&lab, "imaps");
    let i = args.iter().position(|a| a == "--ca-file").unwrap();
    args.drain(i..i + 2);
    args.extend(["--only".into(), "certificate".into()]);
    let report = run_args(&args).json();
    let trust = requirement(&report, "imap.certificate.trust");
    assert_eq!(trust["status"], "fail", "{trust:#}");
    assert!(
        trust["summary"]
            .as_str()
            .unwrap()
            .contains("mailprobe Lab Test CA"),
        "{trust:#}"
    );
    assert_status(&report, "imap.certificate.expiry", "pass");
    assert_status(&report, "imap.certificate.name", "pass");
}
