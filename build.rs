//! Generates the list of built-in check plugins from this package's own dependencies: every
//! dependency whose manifest says `[package.metadata.mailprobe] check = true` is registered
//! through the `plugin()` function its crate exports. Adding a built-in check is therefore one
//! new crate and one dependency line in this package's Cargo.toml, and nothing else.
//!
//! It also records the source revision for `mailprobe_build_info{revision}`: the
//! `MAILPROBE_REVISION` variable when set (a build from a tarball or in a container without
//! `.git`), else `git rev-parse HEAD`, else `unknown`.
//!
//! std only (a build script's dependencies cost every build): it reads the two manifest forms
//! this workspace uses, `name.workspace = true` (resolved in `[workspace.dependencies]`) and
//! `name = { path = "..." }`.

use std::collections::BTreeMap;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    let root =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let manifest = root.join("Cargo.toml");
    println!("cargo:rerun-if-changed={}", manifest.display());
    let text = fs::read_to_string(&manifest).expect("read Cargo.toml");
    let own = sections(&text);
    let workspace = paths_of(own.get("workspace.dependencies").map(String::as_str));
    let mut checks = Vec::new();
    for (name, path) in deps(own.get("dependencies").map(String::as_str), &workspace) {
        let dep_manifest = root.join(&path).join("Cargo.toml");
        println!("cargo:rerun-if-changed={}", dep_manifest.display());
        let Ok(dep) = fs::read_to_string(&dep_manifest) else {
            continue;
        };
        let dep_sections = sections(&dep);
        let is_check = dep_sections
            .get("package.metadata.mailprobe")
            .is_some_and(|s| s.lines().any(|l| squash(l) == "check=true"));
        if is_check {
            checks.push(name.replace('-', "_"));
        }
    }
    let mut out = String::from(
        "/// The built-in check plugins: every dependency that declares itself a check.\n\
         pub fn builtin_plugins() -> Vec<std::sync::Arc<dyn mailprobe_core::CheckPlugin>> {\n    vec![\n",
    );
    for c in &checks {
        out.push_str(&format!("        {c}::plugin(),\n"));
    }
    out.push_str("    ]\n}\n");
    let dest = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("builtins.rs");
    fs::write(dest, out).expect("write builtins.rs");
    println!("cargo:rustc-env=MAILPROBE_REVISION={}", revision(&root));
}

/// The git commit being built, short enough for a label, or `unknown`.
fn revision(root: &Path) -> String {
    println!("cargo:rerun-if-env-changed=MAILPROBE_REVISION");
    if let Ok(r) = env::var("MAILPROBE_REVISION")
        && !r.trim().is_empty()
    {
        return r.trim().to_string();
    }
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    // Rebuild when HEAD moves (a commit or a checkout), in a worktree too.
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        for f in ["HEAD", "logs/HEAD"] {
            let p = Path::new(&dir).join(f);
            if p.exists() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
    git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_string())
}

/// The text of each `[section]`, by name.
fn sections(text: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') && t.ends_with(']') && !t.starts_with("[[") {
            current = t.trim_matches(['[', ']']).trim().to_string();
            continue;
        }
        out.entry(current.clone()).or_default().push_str(line);
        out.entry(current.clone()).or_default().push('\n');
    }
    out
}

/// A line without spaces or comment.
fn squash(line: &str) -> String {
    let line = line.split('#').next().unwrap_or("");
    line.chars().filter(|c| !c.is_whitespace()).collect()
}

/// `name = { path = "p" ... }` entries of a dependency table.
fn paths_of(table: Option<&str>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in table.unwrap_or("").lines() {
        let l = squash(line);
        let Some((name, rest)) = l.split_once('=') else {
            continue;
        };
        if let Some(path) = rest
            .split("path=\"")
            .nth(1)
            .and_then(|p| p.split('"').next())
        {
            out.insert(name.to_string(), path.to_string());
        }
    }
    out
}

/// The `mailprobe-*` dependencies with a path, resolving `name.workspace = true`.
fn deps(table: Option<&str>, workspace: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let direct = paths_of(table);
    let mut out = Vec::new();
    for line in table.unwrap_or("").lines() {
        let l = squash(line);
        let Some((key, _)) = l.split_once('=') else {
            continue;
        };
        let name = key.strip_suffix(".workspace").unwrap_or(key);
        if !name.starts_with("mailprobe-") {
            continue;
        }
        let path = if key.ends_with(".workspace") {
            workspace.get(name)
        } else {
            direct.get(name)
        };
        if let Some(p) = path {
            out.push((name.to_string(), p.clone()));
        }
    }
    out
}
