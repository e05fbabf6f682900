//! Dynamic plugins are loaded the way sshd's StrictModes treats key files: a plugin directory
//! or library that group or others may write, or that another user owns, is refused with a
//! message naming it, before any code of it runs. `validate` never runs plugin code in its own
//! process: a library's ELF constructor runs only in the `plugin-host` child that describes
//! it. A configuration file others may write is a warning.
mod dynamic_support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use dynamic_support::*;

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn config(dir: &Path) -> String {
    format!(
        "listen: 127.0.0.1:0\nplugins:\n  dir: {}\nmailboxes:\n  - name: m\n    imap: 127.0.0.1:1\n    imap_security: tls\n    user: u\n    password: {{ env: MAILPROBE_PASSWORD }}\n",
        dir.display()
    )
}

fn validate(config_file: &Path) -> (Option<i32>, String) {
    let o = run(
        &["validate", "--config", config_file.to_str().unwrap()],
        &[],
    );
    (o.status.code(), format!("{}{}", stdout(&o), stderr(&o)))
}

#[test]
fn a_plugin_path_others_may_write_or_own_is_refused() {
    let dir = plugin_dir("strict-modes", &["mailprobe-pop3"]);
    let lib = dir.join("libmailprobe_pop3.so");
    let file = dir.with_extension("yaml");
    std::fs::write(&file, config(&dir)).unwrap();
    chmod(&file, 0o600);
    chmod(&dir, 0o755);
    chmod(&lib, 0o755);
    let (code, out) = validate(&file);
    assert_eq!(code, Some(0), "the safe layout is refused: {out}");
    let listed = run(
        &["plugins", "list", "--plugin-dir", dir.to_str().unwrap()],
        &[],
    );
    assert!(listed.status.success(), "{}", stderr(&listed));

    // A world-writable directory, a group-writable library, a library of another user.
    let cases: [(&Path, &dyn Fn(), &str); 3] = [
        (&dir, &|| chmod(&dir, 0o777), "can be written by any user"),
        (&lib, &|| chmod(&lib, 0o775), "can be written by its group"),
        (
            &lib,
            &|| {
                let ok = Command::new("chown")
                    .args(["65534", lib.to_str().unwrap()])
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "chown (the test runs as root, as CI does)");
            },
            "owned by uid 65534",
        ),
    ];
    for (path, make_unsafe, expect) in cases {
        make_unsafe();
        let (code, out) = validate(&file);
        assert_eq!(code, Some(3), "{expect}: {out}");
        assert!(
            out.contains(&path.display().to_string()) && out.contains(expect),
            "{expect}: {out}"
        );
        let listed = run(
            &["plugins", "list", "--plugin-dir", dir.to_str().unwrap()],
            &[],
        );
        assert!(!listed.status.success(), "plugins list loaded it: {expect}");
        let check = run(
            &[
                "check",
                "--imap",
                "127.0.0.1:1",
                "--imap-security",
                "tls",
                "--user",
                "u",
                "--plugin-dir",
                dir.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(check.status.code(), Some(3), "check loaded it: {expect}");
        // Back to the safe layout.
        chmod(&dir, 0o755);
        chmod(&lib, 0o755);
        let _ = Command::new("chown")
            .args(["0", lib.to_str().unwrap()])
            .status();
    }

    // A configuration file others may write: a warning, not a refusal.
    chmod(&file, 0o666);
    let (code, out) = validate(&file);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("can be written by other users") && out.contains("chmod go-w"),
        "{out}"
    );
}

#[test]
fn validate_never_runs_plugin_code_in_its_own_process() {
    let dir = plugin_dir("strict-ctor", &[]);
    let marker = dir.with_extension("marker");
    let _ = std::fs::remove_file(&marker);
    let source = dir.with_extension("c");
    std::fs::write(
        &source,
        format!(
            r#"#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void ran(void) {{
    FILE *f = fopen("{}", "a");
    if (f) {{ fprintf(f, "%d\n", (int)getpid()); fclose(f); }}
}}
"#,
            marker.display()
        ),
    )
    .unwrap();
    let lib = dir.join("libctor.so");
    let built = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&source)
        .status()
        .expect("cc (Debian package gcc)");
    assert!(built.success());
    chmod(&lib, 0o755);
    let file = dir.with_extension("yaml");
    std::fs::write(&file, config(&dir)).unwrap();
    chmod(&file, 0o600);

    let child = Command::new(mailprobe())
        .args(["validate", "--config", file.to_str().unwrap()])
        .env("MAILPROBE_PASSWORD", "x")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    // Not a mailprobe plugin: refused, naming it.
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(text.contains("libctor.so"), "{text}");
    let ran_in: Vec<String> = std::fs::read_to_string(&marker)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    assert!(
        !ran_in.contains(&pid.to_string()),
        "the library's constructor ran inside `validate` (pid {pid}): {ran_in:?}"
    );
}
