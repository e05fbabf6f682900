//! The plugin ABI as a plugin written in C sees it (`tests/fixtures/c_plugin/plugin.c`, built
//! here with the system's `cc`): a correct C plugin loads and runs, also with its table at an
//! odd address; every way of breaking the ABI is a load error naming the file and the fault,
//! never a crash, in mailprobe or in the child of `isolation: process`; and a library built
//! for another ABI version is refused before any of its functions runs.
mod dynamic_support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use dynamic_support::{report, requirement, run, stderr, stdout};

/// The C source of the fixture.
fn source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/c_plugin/plugin.c")
}

/// A C plugin built with `-DVARIANT_<variant>`, alone in a fresh plugin directory of the test
/// `test` (tests run in parallel); also the marker file its entry point writes when it is
/// called (removed beforehand).
struct CPlugin {
    dir: PathBuf,
    library: PathBuf,
    marker: PathBuf,
}

impl CPlugin {
    fn build(test: &str, variant: &str) -> CPlugin {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("c-plugins")
            .join(format!("{test}-{variant}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the plugin directory");
        let library = dir.join(format!("libcplug_{}.so", variant.to_lowercase()));
        let out = Command::new("cc")
            .args(["-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", "-o"])
            .arg(&library)
            .arg(format!("-DVARIANT_{variant}"))
            .arg(source())
            .output()
            .expect("cannot run cc: install the Debian package gcc");
        assert!(
            out.status.success(),
            "cc failed for {variant}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let marker = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("c-plugins")
            .join(format!("{test}-{variant}-{}.called", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        CPlugin {
            dir,
            library,
            marker,
        }
    }

    /// `mailprobe plugins list` of the plugin's directory: exit code, stdout, stderr.
    fn list(&self) -> (Option<i32>, String, String) {
        let out = run(
            &[
                "plugins",
                "list",
                "--format",
                "json",
                "--plugin-dir",
                self.dir.to_str().unwrap(),
            ],
            &[("CPLUG_MARKER", self.marker.to_str().unwrap())],
        );
        (out.status.code(), stdout(&out), stderr(&out))
    }

    /// The same under `--plugin-isolation process` (the child reads the library): exit code and
    /// stderr. The child's environment is cleared, so it writes no marker.
    fn list_in_a_child(&self) -> (Option<i32>, String) {
        let out = run(
            &[
                "plugins",
                "list",
                "--plugin-isolation",
                "process",
                "--plugin-dir",
                self.dir.to_str().unwrap(),
            ],
            &[],
        );
        (out.status.code(), stderr(&out))
    }

    fn entry_called(&self) -> bool {
        self.marker.exists()
    }
}

/// Loading `variant` fails with exit 3 (not a signal), a message naming the library and
/// holding every one of `needles`; returns whether its entry point was called.
fn refused(variant: &str, needles: &[&str]) -> bool {
    let plugin = CPlugin::build("refused", variant);
    let (code, out, err) = plugin.list();
    assert_eq!(code, Some(3), "{variant}: stdout {out}\nstderr {err}");
    assert!(
        err.contains(plugin.library.to_str().unwrap()),
        "{variant}: {err}"
    );
    for needle in needles {
        assert!(err.contains(needle), "{variant}: {needle:?} not in {err}");
    }
    plugin.entry_called()
}

#[test]
fn a_correct_c_plugin_loads_and_runs_even_with_its_table_at_an_odd_address() {
    for variant in ["GOOD", "MISALIGNED"] {
        let plugin = CPlugin::build("correct", variant);
        let (code, out, err) = plugin.list();
        assert_eq!(code, Some(0), "{variant}: {err}");
        let list: serde_json::Value = serde_json::from_str(&out).unwrap();
        let cplug = list
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "cplug")
            .unwrap_or_else(|| panic!("{variant}: no cplug in {out}"));
        assert_eq!(cplug["version"], "0.0.1", "{variant}: {cplug}");
        assert_eq!(
            cplug["requirements"],
            serde_json::json!(["cplug.ok"]),
            "{variant}"
        );
        assert!(plugin.entry_called(), "{variant}");

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let imap = listener.local_addr().unwrap().to_string();
        let out = run(
            &[
                "check",
                "--imap",
                &imap,
                "--imap-security",
                "tls",
                "--user",
                "u",
                "--format",
                "json",
                "--only",
                "cplug,reachability",
                "--plugin-dir",
                plugin.dir.to_str().unwrap(),
            ],
            &[],
        );
        let r = report(&out);
        let ok = requirement(&r, "cplug.ok");
        assert_eq!(ok["status"], "pass", "{variant}: {ok}");
        assert_eq!(ok["summary"], "a C plugin ran", "{variant}: {ok}");
    }
}

#[test]
fn a_library_for_another_abi_is_refused_before_any_of_its_code_runs() {
    let called = refused(
        "WRONG_ABI",
        &[
            "built with plugin SDK ABI 7",
            "this mailprobe speaks ABI 2",
            "rebuild the plugin against mailprobe-plugin-sdk",
        ],
    );
    assert!(
        !called,
        "the entry point of a mismatched library was called"
    );
    // A library of ABI 1 has no version symbol: refused the same way, without a call.
    let called = refused(
        "NO_ABI",
        &["`mailprobe_plugin_abi`", "speaks ABI 2", "rebuild"],
    );
    assert!(!called, "the entry point of a library of ABI 1 was called");
}

#[test]
fn a_table_that_breaks_the_abi_is_a_load_error_naming_the_fault() {
    for (variant, needles) in [
        ("TABLE_ABI", &["table says ABI version 1"][..]),
        ("NULL_TABLE", &["returned no plugin table"]),
        ("NULL_RUN", &["`run` function pointer is NULL"]),
        ("NULL_FREE", &["`free_string` function pointer is NULL"]),
        ("HUGE_LEN", &["1099511627776 requirements", "at most 1024"]),
        (
            "HUGE_STRING",
            &["requirement description has no NUL terminator within 4096 bytes"],
        ),
        ("UNTERMINATED", &["name has no NUL terminator within 4096"]),
        ("BAD_UTF8", &["requirement ID is not UTF-8"]),
    ] {
        let called = refused(variant, needles);
        // The version matched, so the entry point ran: the table was what was wrong.
        assert!(called, "{variant}: the entry point was not called");
    }
}

#[test]
fn under_process_isolation_the_child_refuses_the_library_with_the_same_message() {
    for (variant, needle) in [
        ("WRONG_ABI", "built with plugin SDK ABI 7"),
        ("NULL_RUN", "`run` function pointer is NULL"),
        ("BAD_UTF8", "requirement ID is not UTF-8"),
    ] {
        let plugin = CPlugin::build("child", variant);
        let (code, err) = plugin.list_in_a_child();
        assert_eq!(code, Some(3), "{variant}: {err}");
        assert!(err.contains("child process"), "{variant}: {err}");
        assert!(
            err.contains(plugin.library.to_str().unwrap()) && err.contains(needle),
            "{variant}: {err}"
        );
    }
}
