//! Configuration reload without a restart, as Prometheus and blackbox_exporter do it: SIGHUP,
//! `POST /-/reload`, or (with `--reload-interval`) a change of the file's content makes the
//! daemon re-read its configuration file.
//!
//! A new file is checked exactly as `mailprobe validate` checks it. When it is bad, the reload
//! is refused with validate's message (logged, counted, and answered to `/-/reload`), and the
//! previous configuration keeps running. When it is good, mailboxes are matched by name:
//! - an unchanged or changed mailbox keeps its place in the schedule and its alerting state (a
//!   changed one uses its new settings from its next run on);
//! - a removed one stops at once, and its series leave /metrics and OTLP;
//! - an added one is scheduled within a tenth of the interval.
//!
//! Settings that belong to the process (`listen`, `otlp`, `alerts`, `plugins`, `concurrency`,
//! `server_connections`, `ip_version`) take effect at the next restart; a reload that changes them
//! says so (and the first configuration loaded after a start with none restarts in place).

use std::collections::{BTreeSet, HashMap};
use std::future::pending;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use mailprobe_core::net::Budgets;
use mailprobe_runtime::config::Config;
use mailprobe_runtime::scheduler::SchedulerHandle;
use mailprobe_runtime::shard::Shard;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::daemon::{MailboxState, Mode};
use crate::telemetry::Telemetry;

/// The state of every configured mailbox, by name: the set a reload replaces, and the one a
/// run checks to know that its mailbox is still configured.
pub type LiveStates = Arc<RwLock<HashMap<String, Arc<MailboxState>>>>;

/// Where the configuration comes from, as `run` was started.
#[derive(Clone, Debug)]
pub struct Source {
    pub path: PathBuf,
    pub shard: Option<Shard>,
    /// Look for a changed file this often (`--reload-interval`).
    pub every: Option<Duration>,
    /// `--web.listen-address`: where to listen, whatever the file's `listen` says (and when
    /// there is no file to say it).
    pub listen: Option<std::net::SocketAddr>,
}

/// How often a file that cannot be loaded is looked at again when `--reload-interval` is not
/// given: a fixed file is picked up by itself.
pub const RETRY_UNLOADABLE: Duration = Duration::from_secs(10);

/// Says that the configuration file cannot be loaded: the log, the reload gauges,
/// `mailprobe_config_valid 0`, and the error kept for the status page.
pub fn report_unloadable(telemetry: &Telemetry, trigger: &str, error: &str) {
    tracing::error!(
        trigger,
        error = %error,
        "the configuration cannot be loaded; mailprobe keeps checking what it last loaded (nothing, if it never loaded a configuration) and loads the file again once it is fixed"
    );
    telemetry.record_reload_failure(error);
}

/// The signals the daemon acts on. Installed first thing, since SIGHUP's default action would
/// end the process.
pub struct Signals {
    term: Option<Signal>,
    hup: Option<Signal>,
}

impl Signals {
    pub fn install() -> Signals {
        let term = signal(SignalKind::terminate());
        let hup = signal(SignalKind::hangup());
        if let Err(e) = &hup {
            tracing::warn!(error = %e, "cannot take SIGHUP; reload with POST /-/reload instead");
        }
        Signals {
            term: term.ok(),
            hup: hup.ok(),
        }
    }
}

/// Waits for a signal; never returns when the signal could not be taken or its stream ended.
async fn next_signal(s: &mut Option<Signal>) {
    if let Some(sig) = s
        && sig.recv().await.is_some()
    {
        return;
    }
    pending().await
}

async fn next_request(
    r: &mut Option<tokio::sync::mpsc::Receiver<mailprobe_exporter_prometheus::ReloadRequest>>,
) -> Option<mailprobe_exporter_prometheus::ReloadRequest> {
    match r {
        Some(rx) => rx.recv().await,
        None => pending().await,
    }
}

async fn next_tick(t: &mut Option<tokio::time::Interval>) {
    match t {
        Some(t) => {
            t.tick().await;
        }
        None => pending().await,
    }
}

/// The configuration file's bytes for change detection, read bounded and off the workers.
async fn snapshot(path: &std::path::Path) -> Option<Vec<u8>> {
    mailprobe_core::file::read_async(
        path,
        mailprobe_runtime::config::MAX_CONFIG_FILE,
        mailprobe_core::file::READ_DEADLINE,
    )
    .await
    .ok()
    .map(|mut b| std::mem::take(&mut *b))
}

/// Serves reloads until SIGTERM or Ctrl-C.
pub async fn serve(
    source: Source,
    mut signals: Signals,
    mut current: Config,
    handle: &mut SchedulerHandle,
    budgets: &Budgets,
    live: &LiveStates,
    telemetry: &Telemetry,
) {
    let mut requests = telemetry.take_reload_requests();
    let mut seen = snapshot(&source.path).await;
    // Without --reload-interval, the file is looked at only while it cannot be loaded.
    let mut tick = {
        let mut t = tokio::time::interval(source.every.unwrap_or(RETRY_UNLOADABLE));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Some(t)
    };
    let mut misses = 0u32;
    loop {
        let trigger = tokio::select! {
            _ = next_signal(&mut signals.term) => return,
            _ = tokio::signal::ctrl_c() => return,
            _ = next_signal(&mut signals.hup) => "SIGHUP",
            request = next_request(&mut requests) => match request {
                Some(reply) => {
                    seen = snapshot(&source.path).await;
                    let result = reload(&source, &mut current, handle, budgets, live, telemetry, "POST /-/reload");
                    let _ = reply.send(result);
                    continue;
                }
                None => {
                    requests = None;
                    continue;
                }
            },
            _ = next_tick(&mut tick) => {
                let valid = telemetry.config_valid();
                if source.every.is_none() && valid {
                    continue;
                }
                // Read bounded in size and time (a FIFO or a hung mount is a miss, never a
                // stall of this loop).
                let Some(now) = snapshot(&source.path).await else {
                    // A file being replaced (a ConfigMap's symlink swap) may be missing for a
                    // moment: only the second look in a row that misses it says so.
                    misses += 1;
                    if misses >= 2 && valid {
                        report_unloadable(
                            telemetry,
                            "file change",
                            &format!(
                                "{}: cannot read the configuration file (missing, unreadable, not a regular file, or too slow to read)",
                                source.path.display()
                            ),
                        );
                        seen = None;
                    }
                    continue;
                };
                misses = 0;
                if seen.as_ref() == Some(&now) {
                    continue;
                }
                seen = Some(now);
                "file change"
            }
        };
        if trigger == "SIGHUP" {
            seen = snapshot(&source.path).await;
        }
        let _ = reload(
            &source,
            &mut current,
            handle,
            budgets,
            live,
            telemetry,
            trigger,
        );
    }
}

/// The first configuration that loads, after a start with none, may set what belongs to the
/// process (`otlp`, `alerts`, `listen`, ...): mailprobe replaces itself with a fresh copy (the
/// same process, so no container restart and nothing for Kubernetes to see). Nothing was
/// checked yet, so nothing is lost. Returns only when that fails.
fn restart_in_place(keys: &[&str]) {
    use std::os::unix::process::CommandExt;
    tracing::info!(
        keys = %keys.join(", "),
        "the first configuration that loads sets process-wide settings; mailprobe restarts in place (same process id) to apply them"
    );
    let error = match std::env::current_exe() {
        Ok(exe) => std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .exec(),
        Err(e) => e,
    };
    tracing::error!(error = %error, "cannot restart in place; the mailboxes are checked, the other settings wait for the next restart");
}

/// The process-wide settings that differ between two configurations.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if old.listen != new.listen {
        keys.push("listen");
    }
    if old.otlp != new.otlp {
        keys.push("otlp");
    }
    if old.alerts != new.alerts {
        keys.push("alerts");
    }
    if old.plugins != new.plugins {
        keys.push("plugins");
    }
    if old.concurrency != new.concurrency {
        keys.push("concurrency");
    }
    if old.server_connections != new.server_connections {
        keys.push("server_connections");
    }
    if old.ip_version != new.ip_version {
        keys.push("ip_version");
    }
    keys
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Loads the file again and applies it; returns what changed, or validate's message.
fn reload(
    source: &Source,
    current: &mut Config,
    handle: &mut SchedulerHandle,
    budgets: &Budgets,
    live: &LiveStates,
    telemetry: &Telemetry,
    trigger: &str,
) -> Result<String, String> {
    // As strict as `validate`: a reload that would break a mailbox is refused, and the running
    // configuration stays (a secret that cannot be read is only a warning, as in `validate`).
    let loaded = match crate::daemon::load(&source.path, source.shard, Mode::Validate) {
        Ok(l) => l,
        Err(msg) => {
            tracing::error!(
                trigger,
                error = %msg,
                "configuration reload refused; the previous configuration keeps running"
            );
            telemetry.record_reload_failure(&msg);
            return Err(msg);
        }
    };
    // --web.listen-address wins over the file's `listen`, as at start-up.
    let mut loaded = loaded;
    if let Some(listen) = source.listen {
        loaded.config.listen = listen;
    }
    let restart = needs_restart(current, &loaded.config);
    // Not ready yet: nothing was ever loaded, and the process runs on the built-in defaults.
    if !telemetry.ready() && !restart.is_empty() {
        restart_in_place(&restart);
    }
    if !restart.is_empty() {
        tracing::warn!(
            keys = %restart.join(", "),
            "these settings changed, but take effect only when mailprobe restarts"
        );
    }
    let wanted: BTreeSet<String> = loaded
        .mailboxes
        .iter()
        .map(|m| m.target.mailbox.clone())
        .collect();
    let (mut added, mut removed, mut changed) = (Vec::new(), Vec::new(), Vec::new());
    {
        // Held while mailboxes go, so that no run of a removed mailbox records after it.
        let mut states = live.write().unwrap_or_else(|e| e.into_inner());
        for name in handle.mailboxes() {
            if !wanted.contains(&name) {
                handle.remove(&name);
                states.remove(&name);
                telemetry.forget(&name);
                mailprobe_runtime::transcripts::TranscriptStore::shared()
                    .retain(|m| m != name.as_str());
                removed.push(name);
            }
        }
        for m in loaded.mailboxes {
            let target = m.target;
            let name = target.mailbox.clone();
            states.insert(name.clone(), Arc::new(m.state));
            if handle.update(target.clone()) {
                let before = current.mailboxes.iter().find(|m| m.name == name);
                let after = loaded.config.mailboxes.iter().find(|m| m.name == name);
                if before != after || current.timeout != loaded.config.timeout {
                    changed.push(name);
                }
            } else {
                telemetry.register_mailbox(&name);
                handle.add(target);
                added.push(name);
            }
        }
    }
    handle.set_interval(loaded.config.interval);
    // Runs may queue for their servers' connections for up to an interval (see daemon.rs).
    budgets.set_queue_limit(Some(loaded.config.interval));
    *current = loaded.config;
    telemetry.record_reload(true);
    telemetry.set_ready(true);
    let summary = format!(
        "configuration reloaded: {} mailbox(es); added: {}; removed: {}; changed: {}",
        handle.mailboxes().len(),
        list(&added),
        list(&removed),
        list(&changed)
    );
    tracing::info!(
        trigger,
        added = %list(&added),
        removed = %list(&removed),
        changed = %list(&changed),
        "configuration reloaded"
    );
    Ok(summary)
}
