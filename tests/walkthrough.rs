//! `docs/adding-a-check.md` cannot rot: this test takes the crate the walkthrough writes (its
//! `Cargo.toml` and `src/lib.rs` blocks, exactly as printed), builds it as a crate of its own
//! against this workspace's core, and runs it through the plugin contract.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The fenced blocks of the walkthrough whose info string is `LANG walkthrough:PATH`.
fn blocks(doc: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let Some(path) = info
            .split_whitespace()
            .find_map(|w| w.strip_prefix("walkthrough:"))
        else {
            continue;
        };
        let mut body = String::new();
        for l in lines.by_ref() {
            if l.starts_with("```") {
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        out.push((path.to_string(), body));
    }
    out
}

#[test]
fn the_walkthrough_check_builds_and_keeps_the_contract() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/adding-a-check.md")).unwrap();
    let files = blocks(&doc);
    let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        names,
        ["Cargo.toml", "src/lib.rs"],
        "the walkthrough's blocks"
    );

    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let krate = target_dir.join("walkthrough").join("banner");
    let _ = std::fs::remove_dir_all(&krate);
    std::fs::create_dir_all(krate.join("src")).unwrap();
    std::fs::create_dir_all(krate.join("tests")).unwrap();
    for (path, body) in &files {
        let mut body = body.clone();
        if path == "Cargo.toml" {
            // The walkthrough's crate sits in plugins/; this copy sits elsewhere, so its path
            // dependencies point at the workspace's crates, and it is a workspace of its own.
            body = body
                .replace("\"../../core\"", &format!("{:?}", root.join("core")))
                .replace(
                    "\"../mailwire\"",
                    &format!("{:?}", root.join("plugins/mailwire")),
                );
            body.push_str("\n[workspace]\n");
        }
        std::fs::write(krate.join(path), body).unwrap();
    }
    std::fs::write(
        krate.join("tests/contract.rs"),
        r#"
use mailprobe_core::contract::{self, Peer};
use mailprobe_core::Security;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn banner_keeps_the_contract() {
    mailprobe_core::install_crypto_provider();
    for peer in Peer::ALL {
        for security in [Security::Tls, Security::Starttls] {
            contract::check(&[mailprobe_plugin_banner::plugin()], peer, security)
                .await
                .unwrap();
        }
    }
}
"#,
    )
    .unwrap();
    // The workspace's lock file, so the copy builds with the same versions (and reuses them).
    std::fs::copy(root.join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .arg("test")
        .arg("--quiet")
        .arg("--manifest-path")
        .arg(krate.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .output()
        .expect("cannot run cargo");
    assert!(
        out.status.success(),
        "the walkthrough's crate failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
