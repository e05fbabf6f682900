//! The `smtp` plugin against the lab's real Postfix (SASL through Dovecot): `mailprobe check
//! --only smtp` as a user runs it, asserting on the JSON report.

mod common;

use common::lab::{DovecotOpts, Lab, PostfixOpts};
use common::probe::{
    PASSWORD_ENV, assert_status, lab_args, mailprobe_env, requirement, run_args, with_smtp,
};
use serde_json::Value;

/// A Dovecot and a Postfix with every SMTP listener (submission, submissions, nosasl,
/// authplain). The Postfix is dropped first (it is declared second in the tuple).
struct Mail {
    postfix: Lab,
    dovecot: Lab,
}

fn mail(name: &str) -> Mail {
    let dovecot = Lab::dovecot(&format!("{name}-dc"), DovecotOpts::default());
    let postfix = Lab::postfix(&format!("{name}-pf"), &dovecot, PostfixOpts::default());
    Mail { postfix, dovecot }
}

impl Drop for Mail {
    fn drop(&mut self) {
        self.postfix.stop();
        self.dovecot.stop();
    }
}

fn check(m: &Mail, listener: &str) -> (Value, String) {
    let mut args = with_smtp(lab_args(&m.dovecot, "imaps"), &m.postfix, listener);
    args.extend(["--only".to_string(), "smtp".to_string()]);
    let run = run_args(&args);
    assert!(
        !run.stdout.contains(Lab::password()) && !run.stderr.contains(Lab::password()),
        "the password leaked"
    );
    (
        run.json(),
        format!("stderr:\n{}\npostfix log:\n{}", run.stderr, m.postfix.log()),
    )
}

fn evidence<'a>(report: &'a Value, id: &str, key: &str) -> &'a Value {
    &requirement(report, id)["evidence"][key]
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn submission_with_starttls_logs_in() {
    let m = mail("smtp-sub");
    let (report, why) = check(&m, "submission");
    assert_status(&report, "smtp.reachable", "pass");
    assert_status(&report, "smtp.encryption", "pass");
    assert_status(&report, "smtp.login", "pass");
    let greeting = evidence(&report, "smtp.encryption", "greeting")
        .as_str()
        .unwrap();
    assert!(greeting.starts_with("220 "), "{greeting}\n{why}");
    let before = strings(evidence(
        &report,
        "smtp.encryption",
        "extensions_before_tls",
    ));
    assert!(before.iter().any(|e| e == "STARTTLS"), "{before:?}");
    assert!(!before.iter().any(|e| e.starts_with("AUTH")), "{before:?}");
    let after = strings(evidence(&report, "smtp.encryption", "extensions_after_tls"));
    assert!(after.iter().any(|e| e.starts_with("AUTH")), "{after:?}");
    assert!(after.iter().any(|e| e.starts_with("SIZE")), "{after:?}");
    assert_eq!(
        evidence(&report, "smtp.encryption", "auth_before_tls"),
        false
    );
    assert!(
        evidence(&report, "smtp.encryption", "tls_version")
            .as_str()
            .unwrap()
            .starts_with("TLSv1.")
    );
    // rustls stays the engine for every server it can speak to.
    assert_eq!(evidence(&report, "smtp.encryption", "tls_engine"), "rustls");
    let mechs = strings(evidence(&report, "smtp.login", "auth_mechanisms"));
    assert!(mechs.contains(&"PLAIN".to_string()), "{mechs:?}");
    assert_eq!(evidence(&report, "smtp.login", "mechanism"), "PLAIN");
    assert_eq!(report["verdict"], "compliant", "{report:#}\n{why}");
}

#[test]
fn submissions_with_implicit_tls_logs_in() {
    let m = mail("smtp-subs");
    let (report, why) = check(&m, "submissions");
    assert_status(&report, "smtp.encryption", "pass");
    assert_status(&report, "smtp.login", "pass");
    assert_eq!(evidence(&report, "smtp.encryption", "security"), "tls");
    assert!(evidence(&report, "smtp.encryption", "extensions_before_tls").is_null());
    let summary = requirement(&report, "smtp.encryption")["summary"]
        .as_str()
        .unwrap();
    assert!(summary.starts_with("implicit TLS"), "{summary}\n{why}");
}

#[test]
fn listener_without_sasl_fails_login_with_remedies() {
    let m = mail("smtp-nosasl");
    let (report, why) = check(&m, "nosasl");
    assert_status(&report, "smtp.encryption", "pass");
    assert_status(&report, "smtp.login", "fail");
    let login = requirement(&report, "smtp.login");
    let remedy = login["remedy"].as_str().unwrap();
    assert!(remedy.contains("smtpd_sasl_auth_enable = yes"), "{remedy}");
    assert!(remedy.contains("smtpd_sasl_type"), "{remedy}");
    assert!(remedy.contains("Client Frontend"), "{remedy}");
    assert!(
        strings(&login["evidence"]["auth_mechanisms"]).is_empty(),
        "{login:#}\n{why}"
    );
    assert_eq!(report["verdict"], "non_compliant");
}

#[test]
fn wrong_password_fails_with_the_servers_reply() {
    let m = mail("smtp-badpw");
    let mut args = with_smtp(lab_args(&m.dovecot, "imaps"), &m.postfix, "submission");
    args.extend(["--only".to_string(), "smtp".to_string()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = mailprobe_env(&refs, &[(PASSWORD_ENV, "not-the-password")]);
    let report = run.json();
    assert_status(&report, "smtp.encryption", "pass");
    assert_status(&report, "smtp.login", "fail");
    let reply = evidence(&report, "smtp.login", "reply").as_str().unwrap();
    assert!(reply.starts_with("535"), "{reply}\n{}", m.postfix.log());
    // The enhanced status code names the reason; the delayed rejection is a rejection.
    let login = evidence(&report, "smtp.login", "enhanced_status");
    assert_eq!(login, "5.7.8", "{report:#}");
    assert_eq!(evidence(&report, "smtp.login", "temporary"), false);
    assert_eq!(evidence(&report, "smtp.login", "mechanism_used"), "PLAIN");
    assert!(!run.stdout.contains("not-the-password"));
    assert_eq!(run.code, 2, "{}", run.stderr);
}

#[test]
fn closed_port_fails_reachable_and_skips_login() {
    let m = mail("smtp-closed");
    // A port nobody listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut args = lab_args(&m.dovecot, "imaps");
    args.extend(
        [
            "--smtp",
            &format!("mail.lab.test:{port}"),
            "--smtp-security",
            "starttls",
            "--only",
            "smtp",
        ]
        .map(String::from),
    );
    let report = run_args(&args).json();
    assert_status(&report, "smtp.reachable", "fail");
    assert!(
        evidence(&report, "smtp.reachable", "error")
            .as_str()
            .unwrap()
            .contains("refused")
    );
    assert_status(&report, "smtp.encryption", "skip");
    assert_status(&report, "smtp.login", "skip");
    assert_eq!(
        evidence(&report, "smtp.login", "prerequisite"),
        "smtp.encryption"
    );
}

#[test]
fn auth_offered_before_starttls_is_a_warning() {
    let m = mail("smtp-authplain");
    let (report, why) = check(&m, "authplain");
    assert_status(&report, "smtp.encryption", "warn");
    let enc = requirement(&report, "smtp.encryption");
    assert_eq!(enc["evidence"]["auth_before_tls"], true, "{enc:#}\n{why}");
    assert!(!strings(&enc["evidence"]["auth_mechanisms_before_tls"]).is_empty());
    assert!(
        enc["remedy"]
            .as_str()
            .unwrap()
            .contains("smtpd_tls_auth_only = yes")
    );
    // The probe still logs in over TLS only.
    assert_status(&report, "smtp.login", "pass");
    assert_eq!(report["verdict"], "compliant");
}

#[test]
fn server_with_only_tls_1_1_or_older_and_no_legacy_engine_is_incomplete() {
    let dovecot = Lab::dovecot("smtp-legacy-dc", DovecotOpts::default());
    let postfix = Lab::postfix(
        "smtp-legacy-pf",
        &dovecot,
        PostfixOpts {
            tls_protocols: Some(">=TLSv1, <=TLSv1.1"),
            ..PostfixOpts::default()
        },
    );
    let m = Mail { postfix, dovecot };
    // With the legacy engine switched off: the same path as a build without it.
    let mut args = with_smtp(lab_args(&m.dovecot, "imaps"), &m.postfix, "submission");
    args.extend(["--only".to_string(), "smtp".to_string()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = mailprobe_env(
        &refs,
        &[
            (PASSWORD_ENV, Lab::password()),
            ("MAILPROBE_LEGACY_TLS", "off"),
        ],
    );
    let report = run.json();
    // TLS is there (the version is smtp.tls_versions' to judge), as imap.encryption says.
    assert_status(&report, "smtp.encryption", "pass");
    assert_eq!(
        evidence(&report, "smtp.encryption", "legacy_tls_only"),
        true
    );
    let login = requirement(&report, "smtp.login");
    assert_eq!(login["status"], "skip", "{login:#}");
    assert!(
        login["summary"]
            .as_str()
            .unwrap()
            .contains("no legacy TLS engine"),
        "{login:#}"
    );
    // Never a false fail; but login could not be tried, so no compliance is claimed either.
    assert_eq!(login["evidence"]["reason"], "not_verified", "{login:#}");
    assert_eq!(report["verdict"], "incomplete");
    assert_eq!(run.code, 3);
}
