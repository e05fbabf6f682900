//! Servers that misbehave on purpose (see `common/hostile.rs`): for each, `mailprobe check`
//! must not panic, must end by its deadline, must stay under its memory bound, and must not
//! show the password (or its base64 forms) in any report format or in its trace-level log
//! (`common/hostile_check.rs`). Replies too large to keep are in `hostile_bounds.rs`.

mod common;
#[path = "common/hostile.rs"]
mod hostile;
#[path = "common/hostile_check.rs"]
mod hostile_check;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hostile::{Cmd, Mode, Peer, Server, Then};
use hostile_check::{GRACE, PASSWORD, TIMEOUT, USER, check, mailprobe, secrets, status};

fn imap_server(mode: Mode, greeting: &'static str, hook: fn(&mut Peer, &Cmd) -> Then) -> Server {
    hostile::serve(mode, move |p| hostile::imap(p, greeting.as_bytes(), hook))
}

fn well_behaved_imap() -> Server {
    imap_server(Mode::Tls, hostile::IMAP_GREETING, |_, _| Then::Default)
}

fn sent_credentials(server: &Server) -> bool {
    server.lines().iter().any(|l| {
        let u = l.to_ascii_uppercase();
        u.contains(" LOGIN ") || u.contains(" AUTHENTICATE ") || l.contains(PASSWORD)
    })
}

#[test]
fn the_well_behaved_peer_passes_login_and_folders() {
    // The baseline the hostile cases depart from: it must really reach login and LIST.
    let imap = well_behaved_imap();
    let report = check((&imap, Mode::Tls), None);
    assert_eq!(status(&report, "imap.login"), "pass", "{report:#}");
    assert_eq!(status(&report, "imap.folders"), "pass", "{report:#}");
}

#[test]
fn login_refused_with_an_echo_of_the_command() {
    for (word, untagged) in [("NO", false), ("BAD", false), ("NO", true)] {
        let imap = hostile::serve(Mode::Tls, move |p| {
            hostile::imap(p, hostile::IMAP_GREETING.as_bytes(), |p, c| {
                if c.verb != "LOGIN" {
                    return Then::Default;
                }
                let echo = if untagged {
                    format!("* BAD you said: {}\r\n{} NO denied\r\n", c.line, c.tag)
                } else {
                    format!(
                        "{} {word} [AUTHENTICATIONFAILED] you said: {}\r\n",
                        c.tag, c.line
                    )
                };
                p.send(echo);
                Then::Next
            })
        });
        let report = check((&imap, Mode::Tls), None);
        assert_eq!(status(&report, "imap.login"), "fail", "{report:#}");
        assert!(sent_credentials(&imap), "the probe never tried to log in");
    }
}

#[test]
fn authenticate_plain_echoed_in_base64() {
    let imap = hostile::serve(Mode::Tls, |p| {
        hostile::imap(
            p,
            b"* OK [CAPABILITY IMAP4rev1 LOGINDISABLED AUTH=PLAIN] ready\r\n",
            |p, c| match c.verb.as_str() {
                "CAPABILITY" => {
                    p.send(format!(
                        "* CAPABILITY IMAP4rev1 LOGINDISABLED AUTH=PLAIN\r\n{} OK done\r\n",
                        c.tag
                    ));
                    Then::Next
                }
                "AUTHENTICATE" => {
                    let response = match c.line.split(' ').nth(3) {
                        Some(r) => r.to_string(),
                        None => {
                            p.send("+ \r\n");
                            p.line().unwrap_or_default()
                        }
                    };
                    p.send(format!(
                        "* BAD [PARSE] {response}\r\n{} NO [AUTHENTICATIONFAILED] bad {response} in {}\r\n",
                        c.tag, c.line
                    ));
                    Then::Next
                }
                _ => Then::Default,
            },
        )
    });
    let report = check((&imap, Mode::Tls), None);
    assert_eq!(status(&report, "imap.login"), "fail", "{report:#}");
    assert!(sent_credentials(&imap), "the probe never authenticated");
}

#[test]
fn smtp_535_echoes_the_password_at_character_295() {
    let imap = well_behaved_imap();
    let smtp = hostile::serve(Mode::Tls, |p| {
        hostile::smtp(p, hostile::SMTP_GREETING.as_bytes(), |p, line| {
            if !line.to_ascii_uppercase().starts_with("AUTH") {
                return Then::Default;
            }
            // The reply's text is "535 " + this line's rest: the password starts at 295.
            let head = "535 5.7.8 you sent ";
            let filler = "x".repeat(295 - head.len());
            let b64 = line.split(' ').nth(2).unwrap_or_default();
            p.send(format!(
                "535-5.7.8 {b64}\r\n{head}{filler}{PASSWORD} and more after it\r\n"
            ));
            Then::Next
        })
    });
    let report = check((&imap, Mode::Tls), Some((&smtp, Mode::Tls)));
    assert_eq!(status(&report, "smtp.login"), "fail", "{report:#}");
}

#[test]
fn invalid_utf8_in_list_namespace_capability_and_greeting() {
    let list = imap_server(Mode::Tls, hostile::IMAP_GREETING, |p, c| {
        match c.verb.as_str() {
            "LIST" => {
                let mut raw =
                    b"* LIST () X\xff \"x\"\r\n* LIST (\\Sent) \"/\" \"S\xc3\"\r\n".to_vec();
                raw.extend_from_slice(format!("{} OK done\r\n", c.tag).as_bytes());
                p.send(raw);
                Then::Next
            }
            _ => Then::Default,
        }
    });
    check((&list, Mode::Tls), None);

    let namespace = imap_server(Mode::Tls, hostile::IMAP_GREETING, |p, c| {
        match c.verb.as_str() {
            "NAMESPACE" => {
                let mut raw = b"* NAMESPACE ((\"\xff\xfe\" \"\xc3\")) NIL NIL\r\n".to_vec();
                raw.extend_from_slice(format!("{} OK done\r\n", c.tag).as_bytes());
                p.send(raw);
                Then::Next
            }
            _ => Then::Default,
        }
    });
    check((&namespace, Mode::Tls), None);

    let capability = hostile::serve(Mode::Plain, |p| {
        hostile::imap(p, b"* OK \xff\xc3\x28 greeting\r\n", |p, c| {
            if c.verb != "CAPABILITY" {
                return Then::Default;
            }
            let mut raw = if p.is_tls() {
                b"* CAPABILITY IMAP4rev1 \xff\xfe AUTH=PLAIN\xc3 NAMESPACE\r\n".to_vec()
            } else {
                b"* CAPABILITY IMAP4rev1 STARTTLS \xe2\x82 LOGINDISABLED\r\n".to_vec()
            };
            raw.extend_from_slice(format!("{} OK done\r\n", c.tag).as_bytes());
            p.send(raw);
            Then::Next
        })
    });
    check((&capability, Mode::Plain), None);
}

#[test]
fn invalid_utf8_in_smtp_replies() {
    let imap = well_behaved_imap();
    let smtp = hostile::serve(Mode::Plain, |p| {
        hostile::smtp(p, b"220 mail.lab.test \xff\xfe ESMTP\r\n", |p, line| {
            let verb = line.to_ascii_uppercase();
            if verb.starts_with("EHLO") {
                let mut raw = b"250-mail.lab.test \xc3\r\n250-X\xff\xfe\r\n".to_vec();
                raw.extend_from_slice(if p.is_tls() {
                    b"250 AUTH PLAIN LOGIN\r\n"
                } else {
                    b"250 STARTTLS\r\n"
                });
                p.send(raw);
                Then::Next
            } else if verb.starts_with("AUTH") {
                p.send(b"535 5.7.8 \xff\xfe\xfd no\r\n");
                Then::Next
            } else {
                Then::Default
            }
        })
    });
    let report = check((&imap, Mode::Tls), Some((&smtp, Mode::Plain)));
    assert_eq!(status(&report, "smtp.login"), "fail", "{report:#}");
}

#[test]
fn ansi_escapes_in_no_text() {
    let imap = imap_server(Mode::Tls, hostile::IMAP_GREETING, |p, c| {
        if c.verb != "LOGIN" {
            return Then::Default;
        }
        p.send(format!(
            "{} NO \x1b[2J\x1b]0;owned\x07\x1b[31m denied \u{9b}1m \r\r\n",
            c.tag
        ));
        Then::Next
    });
    let report = check((&imap, Mode::Tls), None);
    assert_eq!(status(&report, "imap.login"), "fail", "{report:#}");
}

#[test]
fn a_one_megabyte_capability_line() {
    for mode in [Mode::Tls, Mode::Plain] {
        let imap = hostile::serve(mode, |p| {
            hostile::imap(p, b"* OK ready\r\n", |p, c| {
                if c.verb != "CAPABILITY" {
                    return Then::Default;
                }
                let mut line = b"* CAPABILITY IMAP4rev1 STARTTLS ".to_vec();
                line.extend(std::iter::repeat_n(b'X', 1024 * 1024));
                line.extend_from_slice(format!("\r\n{} OK done\r\n", c.tag).as_bytes());
                p.send(line);
                Then::Next
            })
        });
        check((&imap, mode), None);
    }
}

#[test]
fn list_with_20001_folders() {
    let imap = imap_server(Mode::Tls, hostile::IMAP_GREETING, |p, c| {
        if c.verb != "LIST" {
            return Then::Default;
        }
        let mut out = String::with_capacity(20_001 * 40);
        out.push_str("* LIST (\\HasNoChildren) \"/\" INBOX\r\n");
        out.push_str("* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n");
        for i in 2..20_001 {
            out.push_str(&format!(
                "* LIST (\\HasNoChildren) \"/\" \"Folder {i}\"\r\n"
            ));
        }
        out.push_str(&format!("{} OK LIST done\r\n", c.tag));
        p.send(out);
        Then::Next
    });
    let report = check((&imap, Mode::Tls), None);
    // A big tree is a real mailbox, not an attack: it is listed, within the byte budget.
    assert_eq!(status(&report, "imap.folders"), "pass", "{report:#}");
}

#[test]
fn bye_in_the_middle_of_list() {
    let imap = imap_server(Mode::Tls, hostile::IMAP_GREETING, |p, c| {
        if c.verb != "LIST" {
            return Then::Default;
        }
        p.send("* LIST () \"/\" INBOX\r\n* BYE shutting down now\r\n* LIST () \"/\" Sent\r\n");
        Then::Close
    });
    let report = check((&imap, Mode::Tls), None);
    assert_eq!(status(&report, "imap.folders"), "fail", "{report:#}");
}

#[test]
fn preauth_greeting_gets_no_credentials() {
    let imap = imap_server(
        Mode::Tls,
        "* PREAUTH [CAPABILITY IMAP4rev1 NAMESPACE] already logged in\r\n",
        |_, _| Then::Default,
    );
    check((&imap, Mode::Tls), None);
    assert!(
        !sent_credentials(&imap),
        "credentials were sent after a PREAUTH greeting: {:?}",
        imap.lines()
    );
}

#[test]
fn a_server_that_never_answers_logout_or_quit() {
    let imap = imap_server(Mode::Tls, hostile::IMAP_GREETING, |p, c| {
        if c.verb != "LOGOUT" {
            return Then::Default;
        }
        p.hang();
        Then::Close
    });
    let smtp = hostile::serve(Mode::Tls, |p| {
        hostile::smtp(p, hostile::SMTP_GREETING.as_bytes(), |p, line| {
            if !line.eq_ignore_ascii_case("QUIT") {
                return Then::Default;
            }
            p.hang();
            Then::Close
        })
    });
    let report = check((&imap, Mode::Tls), Some((&smtp, Mode::Tls)));
    assert_eq!(status(&report, "imap.login"), "pass", "{report:#}");
    assert_eq!(status(&report, "smtp.login"), "pass", "{report:#}");
}

#[test]
fn smtp_that_answers_334_forever() {
    let imap = well_behaved_imap();
    let smtp = hostile::serve(Mode::Tls, |p| {
        let mut authenticating = false;
        hostile::smtp(p, hostile::SMTP_GREETING.as_bytes(), move |p, line| {
            if line.to_ascii_uppercase().starts_with("AUTH") {
                authenticating = true;
            }
            if !authenticating {
                return Then::Default;
            }
            p.send("334 UGFzc3dvcmQ6\r\n");
            Then::Next
        })
    });
    let report = check((&imap, Mode::Tls), Some((&smtp, Mode::Tls)));
    assert_eq!(status(&report, "smtp.login"), "fail", "{report:#}");
}

/// async-imap traces every command through `log`, LOGIN with its password: against a real
/// Dovecot, at the most verbose settings of both log switches, the password must not appear.
#[test]
fn trace_logging_never_prints_the_password() {
    use common::lab::{DovecotOpts, Lab, PASSWORD as LAB_PASSWORD};
    let dovecot = Lab::dovecot("hostile-trace", DovecotOpts::default());
    let mut args = common::probe::lab_args(&dovecot, "imaps");
    // Without its trailing `--format json`.
    args.truncate(args.len() - 2);
    for format in ["json", "text"] {
        let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
        a.extend(["--format", format]);
        let run = common::probe::mailprobe_env(
            &a,
            &[
                (common::probe::PASSWORD_ENV, LAB_PASSWORD),
                ("MAILPROBE_LOG", "trace"),
                ("RUST_LOG", "trace"),
            ],
        );
        let all = format!("{}\n{}", run.stdout, run.stderr);
        assert!(
            run.stdout.contains("imap.login"),
            "the check did not run:\n{all}"
        );
        assert!(
            run.peak_rss < common::child::MAX_PEAK_RSS,
            "peak RSS {} bytes:\n{all}",
            run.peak_rss
        );
        assert!(
            !all.contains(LAB_PASSWORD),
            "the password is in the output at trace level:\n{all}"
        );
    }
}

/// The daemon holds passwords for its whole life: no core dumps, a warning for a password file
/// others can read, and nothing of the password in its log when a server echoes it back.
#[cfg(target_os = "linux")]
#[test]
fn the_daemon_runs_without_core_dumps_and_warns_about_a_readable_password_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let imap = imap_server(Mode::Tls, hostile::IMAP_GREETING, |p, c| {
        if c.verb != "LOGIN" {
            return Then::Default;
        }
        p.send(format!("{} NO you said {}\r\n", c.tag, c.line));
        Then::Next
    });
    let dir = std::env::temp_dir().join(format!("mailprobe-hostile-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let pw_file = dir.join("password");
    std::fs::write(&pw_file, format!("{PASSWORD}\n")).expect("password file");
    std::fs::set_permissions(&pw_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let config = dir.join("mailprobe.yaml");
    std::fs::write(
        &config,
        format!(
            "interval: 1h\ntimeout: {t}s\nlisten: 127.0.0.1:0\nmailboxes:\n  - name: hostile\n    \
             imap: {host}:{port}\n    imap_security: tls\n    user: {USER}\n    \
             password: {{ file: {pw} }}\n    connect_to: 127.0.0.1\n    ca_file: {ca}\n",
            t = TIMEOUT.as_secs(),
            host = hostile::HOSTNAME,
            port = imap.port,
            pw = pw_file.display(),
            ca = hostile::ca_file().display(),
        ),
    )
    .expect("write config");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mailprobe"));
    cmd.args(["run", "--config"])
        .arg(&config)
        .env("MAILPROBE_LOG", "trace")
        .env("RUST_LOG", "trace")
        .env_remove("MAILPROBE_SHARD");
    let mut daemon = common::child::start(&mut cmd);
    let pid = daemon.id();
    // Wait (bounded) for the first check to get past its refused login.
    let start = Instant::now();
    let mut limits = String::new();
    while start.elapsed() < TIMEOUT + GRACE && daemon.ended().is_none() {
        limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
        if imap.lines().iter().any(|l| l.contains("LOGOUT")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let ended = daemon.kill();
    let log = ended.stderr.clone();
    ended.assert_peak_rss("mailprobe run");
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap_or_else(|| panic!("no core limit in /proc/{pid}/limits:\n{limits}\n{log}"));
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(
        fields.get(4..6),
        Some(&["0", "0"][..]),
        "core dumps are on: {core}\n{log}"
    );
    assert!(
        log.contains("chmod 600"),
        "no warning about the readable password file:\n{log}"
    );
    assert!(
        imap.lines().iter().any(|l| l.contains(" LOGIN ")),
        "the daemon never tried to log in:\n{log}"
    );
    for s in secrets() {
        assert!(!log.contains(&s), "the daemon's log shows {s:?}:\n{log}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn extra_sessions_with_another_certificate_get_no_credentials() {
    // The first connection presents the certificate the run checks; once it has logged in,
    // every later connection presents another one, valid for the name but not the same leaf.
    let switch = Arc::new(AtomicBool::new(false));
    let flag = switch.clone();
    let imap = hostile::serve_switching(Mode::Tls, switch, move |p| {
        let flag = flag.clone();
        hostile::imap(p, hostile::IMAP_GREETING.as_bytes(), move |_, cmd| {
            if cmd.verb == "LOGIN" || cmd.verb == "AUTHENTICATE" {
                flag.store(true, Ordering::SeqCst);
            }
            Then::Default
        })
    });
    let mut args = hostile_check::check_args((&imap, Mode::Tls), None);
    args.extend(["--only", "connlimit", "--format", "json"].map(String::from));
    let run = mailprobe(&args);
    hostile_check::assert_sound(&run, "json");
    let report: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", run.stdout, run.stderr));
    let logins = imap
        .lines()
        .iter()
        .filter(|l| {
            let u = l.to_ascii_uppercase();
            u.contains(" LOGIN ") || u.contains(" AUTHENTICATE ")
        })
        .count();
    assert_eq!(
        logins,
        1,
        "only the first connection may log in; the peer got (tag and verb): {:?}",
        imap.lines()
            .iter()
            .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
    );
    let r = report["requirements"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["id"] == "connections.concurrent"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(r["status"], "fail", "{r:#}");
    assert_eq!(r["evidence"]["imap"]["refused_at"], "certificate", "{r:#}");
}
