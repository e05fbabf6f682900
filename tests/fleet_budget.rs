//! Many mailboxes on one real server: `mailprobe check --config` with 50 users of one lab
//! Dovecot, and one user configured twice (ports 143 and 993 of the same address), under a
//! small per-server cap. None is judged for the probe's own crowding (no `fail`, no skip for a
//! connection budget), and the probe never holds more connections to the server's address than
//! the cap: the test samples the kernel's table of established TCP connections
//! (`/proc/net/tcp`) while the batch runs. Dovecot's own per-user limit is lowered too, so a
//! user's runs that overlapped would be refused by the server itself.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::lab::{HOSTNAME, USER, established_to};
use common::probe::{PASSWORD_ENV, mailprobe};
use common::{DovecotOpts, Lab};
use serde_json::Value;

const USERS: u32 = 50;
/// `server_connections`: two runs at once (each holds the CRM's 3 IMAP sessions).
const CAP: usize = 6;

fn mailbox(name: &str, user: &str, port: u16, security: &str) -> String {
    format!(
        "  - name: {name}
    imap: {HOSTNAME}:{port}
    imap_security: {security}
    connect_to: 127.0.0.1
    ca_file: {ca}
    user: {user}
    password: {{ env: {PASSWORD_ENV} }}
",
        ca = Lab::ca_file().display(),
    )
}

#[test]
fn fifty_users_on_one_server_queue_within_the_cap_and_none_is_judged_for_it() {
    let lab = Lab::dovecot(
        "fleet-budget",
        DovecotOpts {
            extra_users: USERS,
            // Room for the CRM's 3 sessions of one user (and a closing one's late count), not
            // for two runs of one user at once.
            max_userip: Some(5),
            ..Default::default()
        },
    );
    let (imap, imaps) = (lab.port("imap"), lab.port("imaps"));
    let mut text = format!(
        "timeout: 30s\nconcurrency: 16\nserver_connections: {CAP}\nmailboxes:\n{}{}",
        // One user twice, on both ports of the address: the same budget, so they take turns.
        mailbox("alice-993", USER, imaps, "tls"),
        mailbox("alice-143", USER, imap, "starttls"),
    );
    for i in 1..=USERS {
        text.push_str(&mailbox(
            &format!("user{i:02}"),
            &format!("user{i:02}@lab.test"),
            imaps,
            "tls",
        ));
    }
    let dir: PathBuf = std::env::temp_dir().join(format!("mailprobe-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("mailprobe.yaml");
    std::fs::write(&config, text).unwrap();

    // Sample the connections to the server while the batch runs.
    let ports: BTreeSet<u16> = [imap, imaps].into();
    let done = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(0));
    let samples = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (done, most, samples) = (done.clone(), most.clone(), samples.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                most.fetch_max(established_to(&ports), Ordering::SeqCst);
                samples.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        })
    };
    let run = mailprobe(&[
        "check",
        "--config",
        config.to_str().unwrap(),
        "--format",
        "json",
    ]);
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();

    let reports: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{}", run.stderr)))
        .collect();
    assert_eq!(reports.len(), USERS as usize + 2, "{}", run.stderr);
    for r in &reports {
        let name = r["mailbox"].as_str().unwrap_or_default();
        for req in r["requirements"].as_array().unwrap() {
            let status = req["status"].as_str().unwrap_or_default();
            assert_ne!(status, "fail", "{name}: {req:#}");
            let said = req.to_string();
            assert!(
                !(status == "skip"
                    && (said.contains("connection slot")
                        || said.contains("server_connections")
                        || said.contains("connection_budget"))),
                "{name} was not verified for the probe's own budget: {req:#}"
            );
        }
        assert_eq!(r["verdict"], "compliant", "{name}: {r:#}");
    }
    assert!(samples.load(Ordering::SeqCst) > 0);
    let most = most.load(Ordering::SeqCst);
    eprintln!("most connections at once: {most} (cap {CAP})");
    assert!(most > 0, "the sampler never saw the probe's connections");
    assert!(
        most <= CAP,
        "the probe held {most} connections to the server at once (cap {CAP})"
    );
    assert!(!run.stdout.contains(Lab::password()) && !run.stderr.contains(Lab::password()));
    let _ = std::fs::remove_dir_all(&dir);
}
