//! Shared by the `tests/dynamic_*.rs` integration tests: builds the plugin fixtures and runs
//! the mailprobe binary with a plugin directory.
//!
//! The fixture libraries (`examples/plugins/*`) are cdylibs that `cargo test` does not build
//! for the mailprobe binary, so the first test that needs them runs `$CARGO build -p ...` into
//! the same target directory and profile as the binary under test (`target/debug/lib<name>.so`,
//! or under `CARGO_TARGET_DIR`). Each test then copies the libraries it wants into a directory
//! of its own, because `--plugin-dir` loads every `*.so` of a directory.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Package name → library file name.
pub const FIXTURES: &[(&str, &str)] = &[
    ("mailprobe-pop3", "libmailprobe_pop3.so"),
    ("mailprobe-test-misbehave", "libmailprobe_test_misbehave.so"),
    ("mailprobe-test-clash", "libmailprobe_test_clash.so"),
    ("mailprobe-test-abi", "libmailprobe_test_abi.so"),
    ("mailprobe-test-nosym", "libmailprobe_test_nosym.so"),
];

pub fn mailprobe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_mailprobe"))
}

/// Builds every fixture once per test binary; returns the folder holding the libraries.
pub fn fixtures_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let profile_dir = mailprobe()
            .parent()
            .expect("the binary's folder")
            .to_path_buf();
        let target_dir = profile_dir.parent().expect("the target folder");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("build")
            .arg("--quiet")
            .arg("--target-dir")
            .arg(target_dir);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        for (package, _) in FIXTURES {
            cmd.arg("-p").arg(package);
        }
        let out = cmd
            .output()
            .expect("cannot run cargo to build the plugin fixtures");
        assert!(
            out.status.success(),
            "building the plugin fixtures failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        profile_dir
    })
}

/// A fresh plugin directory holding the given fixture libraries (by package name).
pub fn plugin_dir(test: &str, packages: &[&str]) -> PathBuf {
    let built = fixtures_dir();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("dynamic-plugins")
        .join(format!("{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the plugin directory");
    for package in packages {
        let (_, file) = FIXTURES
            .iter()
            .find(|(p, _)| p == package)
            .unwrap_or_else(|| panic!("unknown fixture {package}"));
        std::fs::copy(built.join(file), dir.join(file))
            .unwrap_or_else(|e| panic!("copy {file}: {e}"));
    }
    dir
}

/// Runs mailprobe with `args`, the password in `MAILPROBE_PASSWORD`, and `env`.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(mailprobe());
    cmd.args(args).env("MAILPROBE_PASSWORD", "Secr3t-Lab!");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run mailprobe")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The JSON report of a `check --format json`.
pub fn report(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not a JSON report ({e}); exit {:?}\nstdout: {}\nstderr: {}",
            o.status.code(),
            stdout(o),
            stderr(o)
        )
    })
}

/// The result of one requirement in a report.
pub fn requirement<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["requirements"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["id"] == id))
        .unwrap_or_else(|| panic!("no {id} in {report:#}"))
}
