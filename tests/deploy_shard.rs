//! `--shard INDEX/COUNT` and `MAILPROBE_SHARD` on `mailprobe validate`: the replicas of a
//! sharded StatefulSet together check every mailbox once (the split itself is unit-tested in
//! core/src/shard.rs).

use std::process::Command;

fn validate(config: &std::path::Path, shard: Option<&str>, env: Option<&str>) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailprobe"));
    cmd.arg("validate").arg("--config").arg(config);
    cmd.env_remove("MAILPROBE_SHARD")
        .env("DEPLOY_SHARD_PW", "x");
    if let Some(s) = shard {
        cmd.args(["--shard", s]);
    }
    if let Some(e) = env {
        cmd.env("MAILPROBE_SHARD", e);
    }
    let out = cmd.output().expect("run mailprobe");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The mailbox count `validate` reports.
fn count(out: &str) -> usize {
    out.split("OK, ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {out:?}"))
}

fn config(n: usize) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mailprobe-deploy-shard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut text = String::from("mailboxes:\n");
    for i in 0..n {
        text.push_str(&format!(
            "  - {{ name: box{i}@example.com, imap: imap.example.com, user: u{i}, password: {{ env: DEPLOY_SHARD_PW }} }}\n"
        ));
    }
    // One file per size: the tests of this binary run in parallel in one process.
    let path = dir.join(format!("mailprobe-{n}.yaml"));
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn the_shards_of_a_statefulset_split_the_mailboxes_between_them() {
    let path = config(40);
    let (code, out) = validate(&path, None, None);
    assert_eq!((code, count(&out)), (0, 40), "{out}");
    for n in [1u32, 3, 7] {
        let mut total = 0;
        for i in 0..n {
            let (code, out) = validate(&path, Some(&format!("{i}/{n}")), None);
            assert_eq!(code, 0, "{out}");
            assert!(out.contains(&format!("in shard {i}/{n}")), "{out}");
            let by_flag = count(&out);
            // The StatefulSet form: MAILPROBE_SHARD=$(POD_NAME)/N.
            let (code, out) = validate(&path, None, Some(&format!("mailprobe-{i}/{n}")));
            assert_eq!((code, count(&out)), (0, by_flag), "{out}");
            total += by_flag;
        }
        assert_eq!(total, 40, "{n} shards");
    }
}

#[test]
fn a_bad_shard_is_a_usage_error_that_says_what_to_write() {
    let path = config(2);
    let (code, out) = validate(&path, Some("3/3"), None);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("shard index 3 is out of range; with 3 shards use 0 to 2"),
        "{out}"
    );
    let (code, out) = validate(&path, None, Some("mailprobe/3"));
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("INDEX/COUNT"), "{out}");
}
