//! Dynamic plugins through the mailprobe binary: loading and refusing libraries, results
//! flowing into the report, and plugins that panic, crash or overrun the deadline.
//!
//! Needs no mail server: `--only misbehave,reachability` runs the fixture plugin (and the
//! reachability check against a local listener, to show the other checks go on).
mod dynamic_support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use dynamic_support::{plugin_dir, report, requirement, run, stderr, stdout};

const MISBEHAVE: &str = "mailprobe-test-misbehave";

/// A local "IMAP server" that only accepts TCP connections: enough for `imap.reachable`.
fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

/// `mailprobe check` of the misbehave fixture in `mode`, with `extra` arguments.
fn check_misbehave(test: &str, mode: &str, extra: &[&str]) -> (std::process::Output, Duration) {
    let config = serde_json::json!({ "mode": mode });
    check_misbehave_with(test, &config, extra, &[])
}

/// `mailprobe check` of the misbehave fixture with its whole `config`, and `env` variables.
fn check_misbehave_with(
    test: &str,
    config: &serde_json::Value,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (std::process::Output, Duration) {
    let dir = plugin_dir(test, &[MISBEHAVE]);
    let (_l, imap) = listener();
    let config = format!("misbehave={config}");
    let mut args = vec![
        "check",
        "--imap",
        &imap,
        "--imap-security",
        "tls",
        "--user",
        "alice@lab.test",
        "--format",
        "json",
        "--only",
        "misbehave,reachability",
        "--plugin-dir",
        dir.to_str().unwrap(),
        "--plugin-config",
        &config,
    ];
    args.extend_from_slice(extra);
    let t = Instant::now();
    let out = run(&args, env);
    (out, t.elapsed())
}

#[test]
fn plugins_list_shows_builtins_and_loaded_plugins() {
    let dir = plugin_dir("list", &[MISBEHAVE, "mailprobe-pop3"]);
    let out = run(
        &[
            "plugins",
            "list",
            "--plugin-dir",
            dir.to_str().unwrap(),
            "--format",
            "json",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for builtin in ["reachability", "tls", "certificate", "imap", "smtp"] {
        assert!(names.contains(&builtin), "{names:?}");
    }
    let pop3 = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "pop3")
        .unwrap();
    assert_eq!(pop3["kind"], "dynamic");
    assert_eq!(
        pop3["requirements"],
        serde_json::json!(["pop3.encryption", "pop3.login"])
    );
    assert!(
        pop3["path"]
            .as_str()
            .unwrap()
            .ends_with("libmailprobe_pop3.so"),
        "{pop3}"
    );
    assert!(pop3["version"].is_string());

    // The same through a child process (what `isolation: process` uses to read the manifest).
    let out = run(
        &[
            "plugins",
            "list",
            "--plugin-dir",
            dir.to_str().unwrap(),
            "--plugin-isolation",
            "process",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("misbehave") && text.contains("dynamic"),
        "{text}"
    );
}

#[test]
fn a_dynamic_plugins_results_flow_into_the_report_in_and_out_of_process() {
    for isolation in ["in-process", "process"] {
        let (out, _) = check_misbehave(
            &format!("ok-{isolation}"),
            "ok",
            &["--plugin-isolation", &format!("misbehave={isolation}")],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{isolation}: {}\n{}",
            stdout(&out),
            stderr(&out)
        );
        let r = report(&out);
        assert_eq!(requirement(&r, "misbehave.ok")["status"], "pass");
        let extra = requirement(&r, "misbehave.extra");
        assert_eq!(
            extra["summary"], "user alice@lab.test on 127.0.0.1",
            "{extra}"
        );
        assert_eq!(extra["evidence"]["password_given"], true);
        assert_eq!(requirement(&r, "imap.reachable")["status"], "pass");
        // A result for a requirement the plugin did not declare is dropped.
        assert!(
            r["requirements"]
                .as_array()
                .unwrap()
                .iter()
                .all(|x| x["id"] != "imap.login"),
            "{r:#}"
        );
        // The password never reaches the report.
        assert!(!stdout(&out).contains("Secr3t-Lab!"));
    }
}

#[test]
fn a_plugin_error_leaves_its_requirements_not_verified_with_the_reason() {
    let (out, _) = check_misbehave("error", "error", &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let r = report(&out);
    assert_eq!(r["verdict"], "incomplete");
    let ok = requirement(&r, "misbehave.ok");
    assert_not_verified(ok);
    assert!(
        ok["summary"]
            .as_str()
            .unwrap()
            .contains("misbehave was told to fail"),
        "{ok}"
    );
    assert_eq!(requirement(&r, "imap.reachable")["status"], "pass");
}

#[test]
fn a_panic_in_process_is_caught_and_leaves_only_its_requirements_not_verified() {
    let (out, _) = check_misbehave("panic", "panic", &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let r = report(&out);
    assert_eq!(r["verdict"], "incomplete");
    for id in ["misbehave.ok", "misbehave.extra"] {
        let x = requirement(&r, id);
        assert_not_verified(x);
        let s = x["summary"].as_str().unwrap();
        assert!(
            s.contains("panicked") && s.contains("misbehave panics on purpose"),
            "{x}"
        );
    }
    assert_eq!(requirement(&r, "imap.reachable")["status"], "pass");
}

#[test]
fn an_abort_or_segfault_under_process_isolation_leaves_only_its_requirements_not_verified() {
    for (mode, signal) in [("abort", "SIGABRT"), ("segfault", "SIGSEGV")] {
        let (out, _) = check_misbehave(mode, mode, &["--plugin-isolation", "misbehave=process"]);
        assert_eq!(out.status.code(), Some(3), "{mode}: {}", stderr(&out));
        let r = report(&out);
        let x = requirement(&r, "misbehave.ok");
        assert_not_verified(x);
        let s = x["summary"].as_str().unwrap();
        assert!(s.contains("crashed") && s.contains(signal), "{mode}: {x}");
        assert_not_verified(requirement(&r, "misbehave.extra"));
        assert_eq!(requirement(&r, "imap.reachable")["status"], "pass");
    }
}

#[test]
fn a_plugin_that_overruns_the_deadline_is_not_verified_in_time() {
    for isolation in ["in-process", "process"] {
        let (out, took) = check_misbehave(
            &format!("sleep-{isolation}"),
            "sleep",
            &["--timeout", "2s", "--plugin-isolation", isolation],
        );
        assert_eq!(out.status.code(), Some(3), "{isolation}: {}", stderr(&out));
        assert!(took < Duration::from_secs(8), "{isolation}: took {took:?}");
        let r = report(&out);
        let x = requirement(&r, "misbehave.ok");
        assert_not_verified(x);
        assert!(
            x["summary"].as_str().unwrap().contains("deadline"),
            "{isolation}: {x}"
        );
        assert_eq!(requirement(&r, "imap.reachable")["status"], "pass");
    }
}

const PROCESS: [&str; 2] = ["--plugin-isolation", "misbehave=process"];

#[test]
fn a_child_printing_endlessly_without_a_newline_is_cut_off() {
    let (out, _) = check_misbehave_with(
        "flood",
        &serde_json::json!({ "mode": "flood" }),
        &PROCESS,
        &[],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let r = report(&out);
    assert_not_verified(requirement(&r, "misbehave.ok"));
    assert_eq!(requirement(&r, "imap.reachable")["status"], "pass");
}

#[test]
fn a_grandchild_holding_a_socket_dies_with_the_child_at_the_deadline() {
    let dir = std::env::temp_dir().join(format!("mailprobe-grandchild-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("port");
    let _ = std::fs::remove_file(&file);
    let config = serde_json::json!({ "mode": "grandchild", "file": file.to_str().unwrap() });
    let extra = ["--timeout", "3s", "--plugin-isolation", "misbehave=process"];
    let (out, _) = check_misbehave_with("grandchild", &config, &extra, &[]);
    let r = report(&out);
    let x = requirement(&r, "misbehave.ok");
    assert_not_verified(x);
    assert!(x["summary"].as_str().unwrap().contains("deadline"), "{x}");
    let port: u16 = std::fs::read_to_string(&file)
        .expect("the fixture wrote its grandchild's port")
        .trim()
        .parse()
        .unwrap();
    // The grandchild held the listening socket: once it is killed, nobody accepts there.
    // SIGKILL is delivered asynchronously, so give the kernel a few chances to finish it.
    let gone = (0..50).any(|_| {
        let refused = std::net::TcpStream::connect(("127.0.0.1", port)).is_err();
        if !refused {
            std::thread::sleep(Duration::from_millis(100));
        }
        refused
    });
    assert!(gone, "the grandchild still listens on port {port}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_child_sees_no_password_in_its_environment() {
    let env = [("OTHER_BOX_PASSWORD", "Other-Secr3t")];
    let (out, _) =
        check_misbehave_with("env", &serde_json::json!({ "mode": "env" }), &PROCESS, &env);
    let r = report(&out);
    let x = requirement(&r, "misbehave.ok");
    assert_eq!(x["status"], "pass", "{x}");
    let seen = x["evidence"]["env"]
        .as_object()
        .expect("the environment it saw");
    for (k, v) in seen {
        assert!(!k.contains("PASSWORD"), "the child saw {k}");
        let v = v.as_str().unwrap_or_default();
        assert!(!v.contains("Secr3t"), "the child saw a secret in {k}");
    }
}

#[test]
fn a_password_printed_on_the_childs_stderr_reaches_no_output() {
    let (out, _) = check_misbehave_with(
        "leak",
        &serde_json::json!({ "mode": "leak" }),
        &PROCESS,
        &[],
    );
    let r = report(&out);
    let x = requirement(&r, "misbehave.ok");
    assert_not_verified(x);
    assert!(x["summary"].as_str().unwrap().contains("crashed"), "{x}");
    assert!(!stdout(&out).contains("Secr3t-Lab!"), "{}", stdout(&out));
    assert!(!stderr(&out).contains("Secr3t-Lab!"), "{}", stderr(&out));
}

/// A failure of the probe (or of a plugin) is never blamed on the server.
fn assert_not_verified(x: &serde_json::Value) {
    assert_eq!(x["status"], "skip", "{x}");
    assert_eq!(x["evidence"]["reason"], "not_verified", "{x}");
    assert!(x["remedy"].is_null(), "{x}");
}

/// `mailprobe check` with a plugin directory; returns the exit code and stderr.
fn load_error(test: &str, packages: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = plugin_dir(test, packages);
    let out = run(
        &[
            "check",
            "--imap",
            "127.0.0.1:1",
            "--user",
            "u",
            "--plugin-dir",
            dir.to_str().unwrap(),
        ],
        env,
    );
    (out.status.code(), stderr(&out))
}

#[test]
fn a_library_for_another_abi_version_is_refused_naming_the_file() {
    let (code, err) = load_error("abi", &["mailprobe-test-abi"], &[]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("libmailprobe_test_abi.so"), "{err}");
    assert!(
        err.contains("ABI 999") && err.contains("speaks ABI 2") && err.contains("rebuild"),
        "{err}"
    );
    // Its entry point aborts the process: refused from the version symbol alone.
    assert!(!err.contains("entry point was called"), "{err}");
}

#[test]
fn a_library_without_the_entry_point_is_refused_naming_the_file() {
    let (code, err) = load_error("nosym", &["mailprobe-test-nosym"], &[]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("libmailprobe_test_nosym.so"), "{err}");
    assert!(err.contains("mailprobe_plugin_entry"), "{err}");
}

#[test]
fn requirement_id_clashes_are_refused_naming_the_file() {
    // With one of mailprobe's own requirements.
    let (code, err) = load_error("clash-builtin", &["mailprobe-test-clash"], &[]);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("libmailprobe_test_clash.so") && err.contains("imap.login"),
        "{err}"
    );
    // With another plugin's.
    let (code, err) = load_error(
        "clash-dynamic",
        &["mailprobe-test-clash", MISBEHAVE],
        &[("MAILPROBE_TEST_CLASH_ID", "misbehave.ok")],
    );
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("libmailprobe_test_misbehave.so"), "{err}");
    assert!(
        err.contains("misbehave.ok") && err.contains("clash"),
        "{err}"
    );
}

#[test]
fn settings_for_an_unknown_plugin_are_refused() {
    let dir = plugin_dir("unknown-setting", &[MISBEHAVE]);
    let out = run(
        &[
            "plugins",
            "list",
            "--plugin-dir",
            dir.to_str().unwrap(),
            "--plugin-config",
            "nope={}",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("`nope`"), "{}", stderr(&out));
}
