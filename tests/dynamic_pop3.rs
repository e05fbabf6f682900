//! The example POP3 plugin (`examples/plugins/pop3`), loaded with `mailprobe check
//! --plugin-dir`, against the lab's Dovecot with POP3 enabled (`tests/lab/`).
mod common;
mod dynamic_support;

use common::{DovecotOpts, Lab};
use dynamic_support::{plugin_dir, report, requirement, run, stderr};

fn check_pop3(
    lab: &Lab,
    test: &str,
    config: &str,
    extra: &[&str],
    password: &str,
) -> std::process::Output {
    let dir = plugin_dir(test, &["mailprobe-pop3"]);
    let imap = format!("{}:{}", common::lab::HOSTNAME, lab.port("imaps"));
    let connect_to = format!("{}:{}", common::lab::HOSTNAME, lab.host());
    let ca = Lab::ca_file();
    let plugin_config = format!("pop3={config}");
    let mut args = vec![
        "check",
        "--imap",
        &imap,
        "--connect-to",
        &connect_to,
        "--ca-file",
        ca.to_str().unwrap(),
        "--user",
        Lab::user(),
        "--format",
        "json",
        "--timeout",
        "15s",
        "--only",
        "pop3",
        "--plugin-dir",
        dir.to_str().unwrap(),
        "--plugin-config",
        &plugin_config,
    ];
    args.extend_from_slice(extra);
    run(&args, &[("MAILPROBE_PASSWORD", password)])
}

#[test]
fn pop3_plugin_passes_over_implicit_tls_and_stls() {
    let lab = Lab::dovecot(
        "dyn-pop3",
        DovecotOpts {
            pop3: true,
            ..Default::default()
        },
    );

    // Implicit TLS, in-process.
    let config = format!(r#"{{"port":{},"security":"tls"}}"#, lab.port("pop3s"));
    let out = check_pop3(&lab, "pop3s", &config, &[], Lab::password());
    let r = report(&out);
    assert_eq!(out.status.code(), Some(0), "{r:#}\n{}", stderr(&out));
    let enc = requirement(&r, "pop3.encryption");
    assert_eq!(enc["status"], "pass", "{enc}");
    assert_eq!(enc["evidence"]["security"], "tls");
    let login = requirement(&r, "pop3.login");
    assert_eq!(login["status"], "pass", "{login}");
    assert_eq!(login["evidence"]["mechanism"], "USER/PASS");
    assert!(login["evidence"]["messages"].is_u64(), "{login}");

    // STLS on the plain port, in a child process.
    let config = format!(r#"{{"port":{},"security":"starttls"}}"#, lab.port("pop3"));
    let out = check_pop3(
        &lab,
        "pop3-stls",
        &config,
        &["--plugin-isolation", "process"],
        Lab::password(),
    );
    let r = report(&out);
    assert_eq!(out.status.code(), Some(0), "{r:#}\n{}", stderr(&out));
    let enc = requirement(&r, "pop3.encryption");
    assert_eq!(enc["status"], "pass", "{enc}");
    assert!(enc["summary"].as_str().unwrap().contains("STLS"), "{enc}");
    assert_eq!(requirement(&r, "pop3.login")["status"], "pass");
}

#[test]
fn pop3_plugin_connects_from_the_source_address_in_and_out_of_process() {
    let lab = Lab::dovecot(
        "dyn-pop3-src",
        DovecotOpts {
            pop3: true,
            ..Default::default()
        },
    );
    let config = format!(r#"{{"port":{},"security":"tls"}}"#, lab.port("pop3s"));
    let local_address = |extra: &[&str], test: &str| {
        let out = check_pop3(&lab, test, &config, extra, Lab::password());
        let r = report(&out);
        assert_eq!(out.status.code(), Some(0), "{r:#}\n{}", stderr(&out));
        assert_eq!(requirement(&r, "pop3.login")["status"], "pass", "{r:#}");
        let enc = requirement(&r, "pop3.encryption");
        enc["evidence"]["local_address"]
            .as_str()
            .unwrap_or_else(|| panic!("no local_address in {enc}"))
            .to_string()
    };
    let default = local_address(&[], "pop3-src-none");
    assert!(!default.starts_with("127.0.0.2:"), "{default}");
    for isolation in ["in-process", "process"] {
        let from = local_address(
            &[
                "--source-address",
                "127.0.0.2",
                "--plugin-isolation",
                isolation,
            ],
            &format!("pop3-src-{isolation}"),
        );
        assert!(from.starts_with("127.0.0.2:"), "{isolation}: {from}");
    }
    // Dovecot saw the logins come from there.
    let log = lab.log();
    assert!(
        log.lines()
            .any(|l| l.contains("pop3-login") && l.contains("rip=127.0.0.2")),
        "{log}"
    );
}

#[test]
fn pop3_plugin_reports_a_refused_login_and_no_password_in_the_report() {
    let lab = Lab::dovecot(
        "dyn-pop3-bad",
        DovecotOpts {
            pop3: true,
            ..Default::default()
        },
    );
    let config = format!(r#"{{"port":{},"security":"tls"}}"#, lab.port("pop3s"));
    let out = check_pop3(&lab, "pop3-badpw", &config, &[], "wrong-Passw0rd");
    let r = report(&out);
    assert_eq!(out.status.code(), Some(2), "{r:#}\n{}", stderr(&out));
    assert_eq!(requirement(&r, "pop3.encryption")["status"], "pass");
    let login = requirement(&r, "pop3.login");
    assert_eq!(login["status"], "fail", "{login}");
    assert!(login["remedy"].is_string());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("wrong-Passw0rd"), "{text}");
}

#[test]
fn pop3_plugin_fails_encryption_without_tls() {
    let lab = Lab::dovecot(
        "dyn-pop3-notls",
        DovecotOpts {
            pop3: true,
            ssl: "no",
            imaps: false,
            ..Default::default()
        },
    );
    let dir = plugin_dir("pop3-notls", &["mailprobe-pop3"]);
    let imap = format!("{}:{}", common::lab::HOSTNAME, lab.port("imap"));
    let connect_to = format!("{}:{}", common::lab::HOSTNAME, lab.host());
    let config = format!(r#"pop3={{"port":{}}}"#, lab.port("pop3"));
    let out = run(
        &[
            "check",
            "--imap",
            &imap,
            "--connect-to",
            &connect_to,
            "--user",
            Lab::user(),
            "--format",
            "json",
            "--only",
            "pop3",
            "--plugin-dir",
            dir.to_str().unwrap(),
            "--plugin-config",
            &config,
        ],
        &[],
    );
    let r = report(&out);
    assert_eq!(out.status.code(), Some(2), "{r:#}");
    let enc = requirement(&r, "pop3.encryption");
    assert_eq!(enc["status"], "fail", "{enc}");
    assert!(enc["summary"].as_str().unwrap().contains("STLS"), "{enc}");
    let login = requirement(&r, "pop3.login");
    assert_eq!(login["status"], "skip");
    assert_eq!(login["evidence"]["prerequisite"], "pop3.encryption");
}

#[test]
fn a_bad_plugin_configuration_is_refused_when_the_plugin_loads() {
    // `port` must be a number: the plugin's own check refuses it, in `validate` and before any
    // run, naming the plugin and the setting to fix.
    let dir = plugin_dir("pop3-bad-config", &["mailprobe-pop3"]);
    let file = dir.join("mailprobe.yaml");
    std::fs::write(
        &file,
        format!(
            "plugins:\n  dir: {}\n  settings:\n    pop3:\n      config: {{ port: not-a-port }}\nmailboxes:\n  - name: m\n    imap: mail.lab.test:993\n    user: u\n    password: {{ env: NOT_SET_ANYWHERE }}\n",
            dir.display()
        ),
    )
    .unwrap();
    let out = run(&["validate", "--config", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("plugin `pop3`")
            && err.contains("invalid configuration for plugin pop3")
            && err.contains("plugins.settings.pop3.config"),
        "{err}"
    );
    // The same setting, well formed, loads.
    std::fs::write(
        &file,
        format!(
            "plugins:\n  dir: {}\n  settings:\n    pop3:\n      config: {{ port: 995 }}\nmailboxes:\n  - name: m\n    imap: mail.lab.test:993\n    user: u\n    password: {{ env: NOT_SET_ANYWHERE }}\n",
            dir.display()
        ),
    )
    .unwrap();
    let out = run(&["validate", "--config", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
