//! The reference documents in `docs/` are generated from the code: each must equal what the
//! binary prints now. After changing a declaration, regenerate with the command named in the
//! failure.

use std::process::Command;

fn generated(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mailprobe"))
        .args(args)
        .output()
        .expect("run mailprobe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn committed(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn requirements_reference_is_what_the_plugins_declare() {
    let now = generated(&["requirements", "--format", "markdown"]);
    assert!(
        now == committed("docs/requirements.md"),
        "docs/requirements.md is out of date: run `cargo run -- requirements > docs/requirements.md`"
    );
    // Every requirement of the default profile is documented, with when it passes and fails.
    for id in ["imap.login", "smtp.tls_versions", "connections.concurrent"] {
        assert!(now.contains(&format!("## `{id}`")), "{id}");
    }
    assert!(!now.contains("- **Passes** when ."));
}

#[test]
fn configuration_reference_is_what_the_code_declares() {
    assert!(
        generated(&["config-reference"]) == committed("docs/configuration.md"),
        "docs/configuration.md is out of date: run `cargo run -- config-reference > docs/configuration.md`"
    );
}

#[test]
fn requirements_as_json_name_their_plugin() {
    let json: serde_json::Value =
        serde_json::from_str(&generated(&["requirements", "--format", "json"])).unwrap();
    let list = json.as_array().unwrap();
    assert!(list.len() >= 17);
    assert!(
        list.iter()
            .all(|r| r["plugin"].is_string() && r["id"].is_string())
    );
}
