//! The daemon's status page in a real browser: `mailprobe run` checks a lab Dovecot (compliant)
//! and a hostile IMAP server whose greeting and login refusal carry `<script>` markup; Debian's
//! headless Chromium then takes a screenshot of `/`, dumps the DOM of `/` and of the hostile
//! mailbox's page, and runs axe-core (the accessibility engine, from npm) over both. The JSON
//! API and the daemon's JSON log lines are checked on the way.
mod common;
#[path = "common/hostile.rs"]
mod hostile;
mod telemetry;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hostile::{Mode, Then};
use telemetry::*;

const HOSTILE_MARKUP: &str = "<script>alert('x')</script><img src=x onerror=alert(1)>";

/// Debian's Chromium, headless, with a fresh profile and nothing that calls home.
fn chromium(profile: &Path, args: &[&str]) -> common::child::Ended {
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args);
    if Command::new("chromium")
        .arg("--version")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        panic!("chromium is missing: install the Debian package `chromium` (.ci/install-packages)");
    }
    let run = common::child::run(&mut cmd, Duration::from_secs(90));
    assert!(
        !run.overran,
        "chromium did not finish within 90 s:\n{}",
        run.stderr
    );
    run
}

/// axe-core's browser bundle, as `.ci/install-packages` installs it from npm.
fn axe_core() -> PathBuf {
    let path = std::env::var_os("AXE_CORE_JS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/mailprobe-axe/node_modules/axe-core/axe.min.js"));
    assert!(
        path.is_file(),
        "{} is missing: run `npm install --prefix /opt/mailprobe-axe axe-core` (see .ci/install-packages), or set AXE_CORE_JS",
        path.display()
    );
    path
}

/// The violations axe-core finds in the page at `url`, as JSON. The page is fetched and written
/// into a local document that has axe loaded (the status page itself allows no script), then
/// axe runs in Chromium with layout, so colour contrast is checked too.
fn axe_violations(scratch: &Scratch, url: &str, tag: &str) -> serde_json::Value {
    let axe = axe_core();
    let html = scratch.path(&format!("axe-{tag}.html"));
    std::fs::write(
        &html,
        format!(
            r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>axe</title>
<script src="file://{axe}"></script></head><body><script>
(async () => {{
  const report = (t) => {{ const p = document.createElement('pre'); p.id = 'axe-result'; p.textContent = t; document.body.appendChild(p); }};
  try {{
    const html = await (await fetch('{url}')).text();
    document.open(); document.write(html); document.close();
    const r = await axe.run(document, {{ resultTypes: ['violations'] }});
    report(JSON.stringify({{ violations: r.violations.map(v => ({{ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.html).slice(0, 3) }})), passes: r.passes.map(p => p.id) }}));
  }} catch (e) {{ report(JSON.stringify({{ error: String(e) }})); }}
}})();
</script></body></html>"#,
            axe = axe.display()
        ),
    )
    .unwrap();
    let run = chromium(
        &scratch.path(&format!("chromium-axe-{tag}")),
        &[
            // Only for this local harness page, so that it may read the status page.
            "--disable-web-security",
            "--virtual-time-budget=20000",
            "--dump-dom",
            &format!("file://{}", html.display()),
        ],
    );
    let dom = run.stdout;
    let start = dom
        .find("<pre id=\"axe-result\">")
        .unwrap_or_else(|| panic!("axe produced no result for {url}:\n{dom}\n{}", run.stderr))
        + "<pre id=\"axe-result\">".len();
    let end = dom[start..].find("</pre>").map(|i| start + i).unwrap();
    let json = dom[start..end]
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("axe result {json}: {e}"))
}

/// Width and height of a PNG, from its IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&png[16..20]), be(&png[20..24]))
}

#[test]
fn status_page_in_headless_chromium() {
    let scratch = Scratch::new("status-page");
    let dovecot = Dovecot::start("status-page", free_port(), "good");
    // Markup in the greeting and in the refusal of LOGIN: both end up in the report.
    let evil = hostile::serve(Mode::Tls, |p| {
        let greeting = format!("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] {HOSTILE_MARKUP} ready\r\n");
        hostile::imap(p, greeting.as_bytes(), |peer, cmd| {
            if cmd.verb == "LOGIN" || cmd.verb == "AUTHENTICATE" {
                peer.send(format!(
                    "{} NO [AUTHENTICATIONFAILED] {HOSTILE_MARKUP}\r\n",
                    cmd.tag
                ));
                return Then::Next;
            }
            Then::Default
        })
    });
    let listen = free_port();
    let config = scratch.path("mailprobe.yaml");
    std::fs::write(
        &config,
        format!(
            "interval: 1h
timeout: 20s
listen: 127.0.0.1:{listen}
mailboxes:
  - name: lab
    imap: mail.lab.test:{imaps}
    imap_security: tls
    connect_to: 127.0.0.1
    ca_file: {lab_ca}
    user: {user}
    password: {{ env: LAB_TEST_PASSWORD }}
  - name: evil
    imap: {host}:{evil_port}
    imap_security: tls
    connect_to: 127.0.0.1
    ca_file: {evil_ca}
    user: someone@example.com
    password: {{ env: LAB_TEST_PASSWORD }}
  - name: waiting
    imap: mail.lab.test:{imaps}
    connect_to: 127.0.0.1
    user: nobody
    password: {{ env: MAILPROBE_TEST_UNSET_PASSWORD }}
",
            imaps = dovecot.port,
            lab_ca = common::Lab::ca_file().display(),
            user = common::lab::USER,
            host = hostile::HOSTNAME,
            evil_port = evil.port,
            evil_ca = hostile::ca_file().display(),
        ),
    )
    .unwrap();
    let log = scratch.path("mailprobe.log");
    let _probe = mailprobe_run_with(
        &config,
        &log,
        &[("LAB_TEST_PASSWORD", common::lab::PASSWORD)],
        &["--log.format", "json"],
    );
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();

    // Every mailbox checked once.
    let mut api = serde_json::Value::Null;
    wait_until("every mailbox checked", Duration::from_secs(60), || {
        api = http_get(listen, "/api/v1/mailboxes")
            .and_then(|(s, b)| (s == 200).then_some(b))
            .and_then(|b| serde_json::from_str(&b).ok())
            .unwrap_or(serde_json::Value::Null);
        api["mailboxes"]
            .as_array()
            .is_some_and(|m| m.len() == 3 && m.iter().all(|x| x["last_check"].is_string()))
    });
    let by_name = |name: &str| {
        api["mailboxes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mailbox"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        by_name("lab")["verdict"],
        "compliant",
        "{api}\n{}",
        read_log()
    );
    assert_eq!(by_name("evil")["verdict"], "non_compliant", "{api}");
    assert_eq!(by_name("waiting")["verdict"], "incomplete", "{api}");
    assert!(
        by_name("evil")["failing"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["id"] == "imap.login" && f["remedy"].is_string()),
        "{api}"
    );
    let (status, one) = http_get(listen, "/api/v1/mailboxes/evil").unwrap();
    assert_eq!(status, 200, "{one}");
    let one: serde_json::Value = serde_json::from_str(&one).unwrap();
    assert_eq!(one["report"]["schema"], "mailprobe.report/v1");
    // The last run's transcript, kept by the daemon: the session as it went, the password
    // (sent to this hostile server too) redacted.
    let transcript = one["transcript"]
        .as_str()
        .unwrap_or_else(|| panic!("no transcript kept for the last run: {one}"));
    assert!(transcript.contains("* imap login "), "{transcript}");
    assert!(
        transcript.contains("AUTHENTICATE [redacted]"),
        "{transcript}"
    );
    assert!(!transcript.contains(common::lab::PASSWORD), "{transcript}");

    // The log: one JSON object per line, with the exporter-toolkit keys.
    let text = read_log();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["ts"].is_string() && l["level"].is_string() && l["msg"].is_string()),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["msg"] == "check finished" && l["mailbox"] == "evil"),
        "{text}"
    );
    assert!(!text.contains(common::lab::PASSWORD), "{text}");

    // The screenshot: the size asked for, and a page with content (a blank page compresses to a
    // few kilobytes).
    let shot = scratch.path("status.png");
    let root = format!("http://127.0.0.1:{listen}/");
    let run = chromium(
        &scratch.path("chromium-shot"),
        &[
            "--window-size=1366,900",
            &format!("--screenshot={}", shot.display()),
            &root,
        ],
    );
    let png =
        std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot ({e}):\n{}", run.stderr));
    assert_eq!(png_size(&png), (1366, 900));
    assert!(
        png.len() > 30_000,
        "a nearly blank screenshot: {} bytes",
        png.len()
    );
    // Kept for a person to look at.
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::copy(&shot, &keep);
    eprintln!("screenshot: {}", keep.display());

    // The DOM as Chromium built it: content there, and the hostile markup only as text.
    let dom = chromium(&scratch.path("chromium-dom"), &["--dump-dom", &root]).stdout;
    for needle in [
        "<title>mailprobe status</title>",
        "href=\"/mailboxes/evil\"",
        "Compliant",
        "Non-compliant",
        "Incomplete",
        "<code>imap.login</code>",
        "MAILPROBE_TEST_UNSET_PASSWORD",
        "Configuration loaded",
    ] {
        assert!(dom.contains(needle), "{needle:?} not in the page:\n{dom}");
    }
    assert!(
        !dom.contains("<script"),
        "markup from a server became a script:\n{dom}"
    );
    assert!(
        !dom.contains("<img"),
        "markup from a server became an element:\n{dom}"
    );
    assert!(dom.contains("&lt;script&gt;"), "{dom}");
    let page = chromium(
        &scratch.path("chromium-evil"),
        &["--dump-dom", &format!("{root}mailboxes/evil")],
    )
    .stdout;
    for needle in [
        "<code>imap.server_software</code>",
        "Transcript of the last run",
    ] {
        assert!(page.contains(needle), "{needle:?} not in the page:\n{page}");
    }
    assert!(!page.contains("<script"), "{page}");
    assert!(!page.contains("<img"), "{page}");

    // Accessibility: axe-core finds nothing on either page (contrast included).
    for (tag, url) in [
        ("index", root.clone()),
        ("mailbox", format!("{root}mailboxes/evil")),
    ] {
        let result = axe_violations(&scratch, &url, tag);
        assert!(result.get("error").is_none(), "axe on {url}: {result}");
        assert_eq!(
            result["violations"],
            serde_json::json!([]),
            "accessibility violations on {url}"
        );
        let passes = result["passes"].as_array().unwrap();
        for rule in [
            "color-contrast",
            "html-has-lang",
            "document-title",
            "landmark-one-main",
        ] {
            assert!(
                passes.iter().any(|p| p == rule),
                "axe did not check {rule} on {url}: {result}"
            );
        }
    }
}
