//! The Prometheus part of docs/metrics.md is generated from the exporter's own registry (see
//! `mailprobe_exporter_prometheus::reference`): it must equal what the code would write now.
//! Regenerate it with `UPDATE_DOCS=1 cargo test --test metrics_reference`.

use mailprobe_exporter_prometheus::reference::{BEGIN, END, markdown};

const DOC: &str = "docs/metrics.md";

fn path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(DOC)
}

/// The document split around its generated part: (before, generated, after).
fn split(doc: &str) -> (&str, &str, &str) {
    let start = doc
        .find(BEGIN)
        .unwrap_or_else(|| panic!("{DOC} has no line {BEGIN}"));
    let end = doc[start..]
        .find(END)
        .map(|i| start + i + END.len() + 1)
        .unwrap_or_else(|| panic!("{DOC} has no line {END} after the BEGIN marker"));
    let end = end.min(doc.len());
    (&doc[..start], &doc[start..end], &doc[end..])
}

#[test]
fn prometheus_metrics_reference_is_what_the_registry_serves() {
    let doc = std::fs::read_to_string(path()).unwrap_or_else(|e| panic!("{DOC}: {e}"));
    let (before, generated, after) = split(&doc);
    let now = markdown();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(path(), format!("{before}{now}{after}")).expect("write docs/metrics.md");
        return;
    }
    assert!(
        generated == now,
        "{DOC} is out of date: run `UPDATE_DOCS=1 cargo test --test metrics_reference`\n--- committed\n{generated}\n--- now\n{now}"
    );
    for name in [
        "mailprobe_compliant",
        "mailprobe_schedule_lag_seconds",
        "mailprobe_cert_info",
        "mailprobe_build_info",
        "mailprobe_last_check_timestamp_seconds",
    ] {
        assert!(now.contains(&format!("| `{name}` |")), "{name}");
    }
}
