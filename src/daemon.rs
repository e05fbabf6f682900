//! `mailprobe run`: the scheduler over the configured mailboxes.
//!
//! The daemon degrades instead of dying: a mailbox whose entry is invalid or whose secret is
//! missing is reported `incomplete` with the reason (and counted), every other mailbox is
//! checked, and `/healthz` stays up. A sidecar that crash-loops on one bad entry would take
//! its host pod's readiness with it.
//!
//! The configuration can change under a running daemon (see [`crate::reload`]), so each run
//! looks up its mailbox's state in the live set, and records its result only while the
//! mailbox is still configured.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mailprobe_core::model::{Endpoint, Protocol, Security, Target};
use mailprobe_core::net::Budgets;
use mailprobe_core::profile::{DEFAULT_PROFILE, Profile};
use mailprobe_core::secret::{ProcessEnv, Secret, SecretSource};
use mailprobe_core::tls::Trust;
use mailprobe_runtime::config::Config;
use mailprobe_runtime::runner;
use mailprobe_runtime::scheduler::{self, SchedulerConfig};
use mailprobe_runtime::shard::Shard;

use crate::telemetry::Telemetry;

pub struct Loaded {
    pub config: Config,
    pub mailboxes: Vec<Mailbox>,
    /// What is wrong but does not stop the start (printed by `validate`, logged by `run`).
    pub warnings: Vec<String>,
}

/// How strict [`load`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `validate`: every mistake in the file is an error; a secret that cannot be read here is
    /// a warning (CI and GitOps checks run where the secrets do not exist).
    Validate,
    /// `run`: a mailbox whose entry or secret cannot be used is reported `incomplete` with the
    /// reason while the others are checked; only a file that cannot be read as a whole stops it.
    Run,
}

/// One mailbox as the daemon schedules it.
pub struct Mailbox {
    /// For a broken entry, a stand-in that carries its label, profile and timeout.
    pub target: Arc<Target>,
    pub state: MailboxState,
}

/// What a run of a mailbox can use.
pub enum MailboxState {
    Ready(Trust),
    /// The password could not be read; it is read again at every run, so a secret created
    /// later is picked up without a restart.
    SecretMissing {
        trust: Trust,
        source: SecretSource,
    },
    /// The entry cannot be used until the file is fixed (and the daemon restarted).
    Broken(String),
}

/// Loads and checks a config file, secrets and trust stores included. With a shard, only the
/// mailboxes of that shard are kept (before their secrets are read: a replica needs only its own).
pub fn load(path: &Path, shard: Option<Shard>, mode: Mode) -> Result<Loaded, String> {
    let (mut config, mut broken) = match mode {
        Mode::Validate => (Config::load(path).map_err(|e| e.to_string())?, Vec::new()),
        Mode::Run => Config::load_lenient(path).map_err(|e| e.to_string())?,
    };
    let shown = path.display().to_string();
    if let Some(shard) = shard {
        let total = config.mailboxes.len() + broken.len();
        config.mailboxes.retain(|m| shard.owns(&m.name));
        broken.retain(|b| shard.owns(&b.name));
        let kept = config.mailboxes.len() + broken.len();
        tracing::info!(%shard, mailboxes = kept, of = total, "sharded");
        if kept == 0 {
            tracing::warn!(%shard, "this shard has no mailbox; are there more shards than mailboxes?");
        }
    }
    let mut warnings = Vec::new();
    let mut mailboxes = Vec::new();
    for b in broken {
        let error = b.error.to_string();
        warnings.push(format!("{error} (mailbox `{}` is not checked)", b.name));
        let profile = b.profile.as_deref().unwrap_or(DEFAULT_PROFILE);
        let profile = Profile::builtin(profile)
            .or_else(|_| Profile::builtin(DEFAULT_PROFILE))
            .map_err(|e| e.to_string())?;
        mailboxes.push(Mailbox {
            target: Arc::new(stand_in(&b.name, profile, config.timeout)),
            state: MailboxState::Broken(error),
        });
    }
    for m in &config.mailboxes {
        // An error in `validate`; in `run`, that mailbox is set aside.
        let entry_error = |warnings: &mut Vec<String>, e: String| -> Result<(), String> {
            match mode {
                Mode::Validate => Err(e),
                Mode::Run => {
                    warnings.push(format!("{e} (mailbox `{}` is not checked)", m.name));
                    Ok(())
                }
            }
        };
        let target = match config.target_without_secret(m, &shown) {
            Ok(t) => t,
            Err(e) => {
                entry_error(&mut warnings, e.to_string())?;
                let profile = Profile::builtin(DEFAULT_PROFILE).map_err(|e| e.to_string())?;
                mailboxes.push(Mailbox {
                    target: Arc::new(stand_in(&m.name, profile, config.timeout)),
                    state: MailboxState::Broken(e.to_string()),
                });
                continue;
            }
        };
        let trust = match Trust::load(target.ca_file.as_deref()) {
            Ok(t) => t,
            Err(e) => {
                let e = format!("{shown}: mailbox `{}`: ca_file: {e}", m.name);
                entry_error(&mut warnings, e.clone())?;
                mailboxes.push(Mailbox {
                    target: Arc::new(target),
                    state: MailboxState::Broken(e),
                });
                continue;
            }
        };
        match m.password.load(&ProcessEnv) {
            Ok(password) => mailboxes.push(Mailbox {
                target: Arc::new(Target { password, ..target }),
                state: MailboxState::Ready(trust),
            }),
            Err(e) => {
                warnings.push(format!("{shown}: mailbox `{}`: password: {e}", m.name));
                mailboxes.push(Mailbox {
                    target: Arc::new(target),
                    state: MailboxState::SecretMissing {
                        trust,
                        source: m.password.clone(),
                    },
                });
            }
        }
    }
    // Load the dynamic plugins now, so that `validate` reports a bad library too.
    // Described by a child: checking a configuration never runs plugin code in this process.
    let registry =
        crate::builtins::registry_described(&config).map_err(|e| format!("{shown}: {e}"))?;
    for m in &mailboxes {
        crate::builtins::check_profile(&registry, &m.target.profile)
            .map_err(|e| format!("{shown}: mailbox `{}`: {e}", m.target.mailbox))?;
    }
    Ok(Loaded {
        config,
        mailboxes,
        warnings,
    })
}

/// The target a broken entry is scheduled under: its label, profile and timeout; nothing in
/// it is ever connected to.
fn stand_in(name: &str, profile: Profile, timeout: Duration) -> Target {
    Target {
        mailbox: name.to_string(),
        profile: Arc::new(profile),
        imap: Endpoint {
            protocol: Protocol::Imap,
            host: String::new(),
            port: 993,
            security: Security::Tls,
            connect_to: None,
            auto_security: false,
            source_address: None,
        },
        smtp: None,
        user: String::new(),
        password: Secret::new(""),
        ca_file: None,
        allow_insecure_cert: false,
        timeout,
        roundtrip: None,
    }
}

/// What `run` starts with when its file cannot be loaded at all (missing, unreadable, invalid):
/// no mailbox, the defaults, and the listen address of `--web.listen-address` if given. The
/// daemon serves `/healthz` and `/metrics`, reports the problem, and loads the file once it is
/// fixed (see [`crate::reload`]).
fn nothing_loaded(source: &crate::reload::Source) -> Result<Loaded, String> {
    let (mut config, _) = Config::parse_lenient("mailboxes: []\n", "(built-in defaults)")
        .map_err(|e| e.to_string())?;
    if let Some(listen) = source.listen {
        config.listen = listen;
    }
    Ok(Loaded {
        config,
        mailboxes: Vec::new(),
        warnings: Vec::new(),
    })
}

/// The daemon, until SIGTERM. It never exits on a configuration problem: a file that cannot be
/// loaded (`loaded` is its error) is reported and looked at again until it can be.
pub async fn run(loaded: Result<Loaded, String>, source: crate::reload::Source) -> u8 {
    // Before anything else: SIGHUP's default action ends the process.
    let signals = crate::reload::Signals::install();
    let (loaded, load_error) = match loaded {
        Ok(l) => (l, None),
        Err(msg) => match nothing_loaded(&source) {
            Ok(l) => (l, Some(msg)),
            Err(e) => {
                eprintln!("mailprobe: {msg}; and the built-in defaults cannot be used: {e}");
                return 3;
            }
        },
    };
    let telemetry = Arc::new(Telemetry::start(&loaded.config).await);
    if let Some(msg) = &load_error {
        crate::reload::report_unloadable(&telemetry, "start-up", msg);
    }
    // After the telemetry, which hears of the plugins' overruns.
    let health = mailprobe_plugin_host::HealthHook(telemetry.clone());
    let plugins: Arc<mailprobe_core::Selection> = match crate::builtins::registry_with_health(
        &loaded.config,
        Some(health),
    )
    .and_then(|r| r.select(&[]).map_err(|e| e.to_string()))
    {
        Ok(p) => Arc::new(p),
        Err(e) => {
            // The file loaded a moment ago (plugins included); a library that changed since
            // costs its own plugins only, never the process.
            tracing::error!(error = %e, "the dynamic plugins cannot be loaded; checking with the built-in plugins only until mailprobe restarts");
            match crate::builtins::registry_for_config(&Config {
                plugins: None,
                ..loaded.config.clone()
            })
            .and_then(|r| r.select(&[]).map_err(|e| e.to_string()))
            {
                Ok(p) => Arc::new(p),
                Err(e) => {
                    eprintln!("mailprobe: the built-in plugins cannot be loaded: {e}");
                    return 3;
                }
            }
        }
    };
    for w in &loaded.warnings {
        tracing::error!("{w}; it is reported incomplete until this is fixed");
    }
    let budgets = Arc::new(Budgets::new(loaded.config.server_connections));
    // A run queues for its servers' connections for up to an interval (it is due again then),
    // instead of its timeout: mailboxes of one server take turns and none is judged for it.
    budgets.set_queue_limit(Some(loaded.config.interval));
    let targets: Vec<Arc<Target>> = loaded.mailboxes.iter().map(|m| m.target.clone()).collect();
    let config = loaded.config;
    let live: crate::reload::LiveStates = Arc::new(std::sync::RwLock::new(
        loaded
            .mailboxes
            .into_iter()
            .map(|m| (m.target.mailbox.clone(), Arc::new(m.state)))
            .collect(),
    ));
    for t in &targets {
        telemetry.register_mailbox(&t.mailbox);
    }
    tracing::info!(
        mailboxes = targets.len(),
        interval = %humantime::format_duration(config.interval),
        "mailprobe started"
    );
    let mut scheduling = SchedulerConfig::new(config.interval, config.concurrency);
    // Runs in flight get 6 s after SIGTERM, telemetry the rest: the process is gone within 10 s.
    scheduling.shutdown_grace = RUN_GRACE;
    let lag_feed = telemetry.clone();
    scheduling.on_lag = Some(scheduler::LagHook(Arc::new(move |lag| {
        lag_feed.record_lag(lag)
    })));
    let on_panic = panic_handler(telemetry.clone());
    let states = live.clone();
    let feed = telemetry.clone();
    let reload_budgets = budgets.clone();
    // Every run keeps its transcript for the status page (see runner::RunOptions).
    let options = runner::RunOptions {
        ip_version: config.ip_version,
        transcript: Some(runner::TranscriptOptions {
            live: None,
            store: Some(mailprobe_runtime::transcripts::TranscriptStore::shared()),
        }),
        cadence: Some(mailprobe_runtime::cadence::CadenceOptions {
            cadence: config.cadence.clone(),
            store: mailprobe_runtime::cadence::ProofStore::new(),
        }),
    };
    let mut handle = scheduler::start_guarded(
        targets,
        scheduling,
        move |target: Arc<Target>| {
            let run = Run {
                plugins: plugins.clone(),
                budgets: budgets.clone(),
                states: states.clone(),
                feed: feed.clone(),
                options: options.clone(),
            };
            async move { run.check(target).await }
        },
        on_panic,
    );
    // Ready once a configuration runs: with none loaded yet, /readyz says so.
    telemetry.set_ready(load_error.is_none());
    crate::reload::serve(
        source,
        signals,
        config,
        &mut handle,
        &reload_budgets,
        &live,
        &telemetry,
    )
    .await;
    let stopping = std::time::Instant::now();
    tracing::info!("shutting down");
    telemetry.set_ready(false);
    handle.shutdown().await;
    let left = SHUTDOWN_BUDGET
        .saturating_sub(stopping.elapsed())
        .max(Duration::from_millis(500));
    telemetry.shutdown(left).await;
    tracing::info!(took_ms = stopping.elapsed().as_millis() as u64, "stopped");
    0
}

/// Records a panicked run as a probe error whose requirements were not verified.
fn panic_handler(feed: Arc<Telemetry>) -> scheduler::PanicHandler {
    Arc::new(move |target: Arc<Target>, message: String| {
        feed.probe_error(&target.mailbox, "panic");
        let outcome = runner::unverified_outcome(
            &target,
            &format!(
                "not verified: the check panicked ({message}); this is a bug in mailprobe, report it"
            ),
        );
        feed.record(&outcome);
    })
}

/// What one scheduled run needs.
struct Run {
    plugins: Arc<mailprobe_core::Selection>,
    budgets: Arc<Budgets>,
    states: crate::reload::LiveStates,
    feed: Arc<Telemetry>,
    options: runner::RunOptions,
}

impl Run {
    /// Checks one mailbox as its live state allows, and records the outcome while the mailbox
    /// is still configured.
    async fn check(self, target: Arc<Target>) {
        let state = self
            .states
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&target.mailbox)
            .cloned();
        let Some(state) = state else {
            return;
        };
        let name = target.mailbox.clone();
        let outcome = self.outcome(target, &state).await;
        let panicked = outcome
            .plugin_runs
            .iter()
            .filter(|p| p.outcome.is_panic())
            .count();
        if panicked > 0 {
            self.feed.probe_error_n(&name, "panic", panicked as u64);
        }
        log_outcome(&outcome);
        // Under the lock a reload takes to remove mailboxes: a run that ends as its mailbox is
        // removed cannot bring the mailbox's series back.
        let still_configured = self.states.read().unwrap_or_else(|e| e.into_inner());
        if still_configured.contains_key(&name) {
            self.feed.record(&outcome);
        } else {
            // Its transcript was stored as the run ended: it goes with the mailbox.
            mailprobe_runtime::transcripts::TranscriptStore::shared().retain(|m| m != name);
            if let Some(c) = &self.options.cadence {
                c.store.retain(|m| m != name);
            }
        }
    }

    async fn outcome(&self, target: Arc<Target>, state: &MailboxState) -> runner::RunOutcome {
        let (target, trust) = match state {
            MailboxState::Ready(trust) => (target, trust.clone()),
            // Read again at each run, bounded in size and time: a hostile file costs this
            // mailbox only.
            MailboxState::SecretMissing { trust, source } => {
                match source.load_async(&ProcessEnv).await {
                    Ok(password) => {
                        let target = Arc::new(Target {
                            password,
                            ..(*target).clone()
                        });
                        (target, trust.clone())
                    }
                    Err(e) => {
                        self.feed.probe_error(&target.mailbox, "config");
                        return runner::unverified_outcome(
                            &target,
                            &format!("not verified: the mailbox's password cannot be read: {e}"),
                        );
                    }
                }
            }
            MailboxState::Broken(error) => {
                self.feed.probe_error(&target.mailbox, "config");
                return runner::unverified_outcome(
                    &target,
                    &format!(
                        "not verified: the mailbox's configuration entry cannot be used: {error}"
                    ),
                );
            }
        };
        runner::run_target_with(
            target,
            trust,
            self.budgets.clone(),
            &self.plugins,
            &self.options,
        )
        .await
    }
}

fn log_outcome(outcome: &runner::RunOutcome) {
    let r = &outcome.report;
    let not_verified: Vec<&str> = r.not_verified().map(|x| x.id.as_str()).collect();
    let failing: Vec<&str> = r
        .requirements
        .iter()
        .filter(|x| x.status == mailprobe_core::Status::Fail)
        .map(|x| x.id.as_str())
        .collect();
    tracing::info!(
        mailbox = %r.mailbox,
        verdict = r.verdict.as_str(),
        duration_ms = r.duration_ms,
        failing = %failing.join(","),
        not_verified = %not_verified.join(","),
        "check finished"
    );
}

/// From SIGTERM to exit, everything included (Kubernetes' default grace period is 30 s; the
/// probe promises 10).
const SHUTDOWN_BUDGET: Duration = Duration::from_millis(9_300);
/// What runs in flight get of it; telemetry flushing gets the rest.
const RUN_GRACE: Duration = Duration::from_secs(6);
