//! `mailprobe run`: the scheduler over the configured mailboxes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mailprobe_core::config::Config;
use mailprobe_core::model::Target;
use mailprobe_core::net::Budgets;
use mailprobe_core::runner;
use mailprobe_core::scheduler::{self, SchedulerConfig};
use mailprobe_core::secret::ProcessEnv;
use mailprobe_core::shard::Shard;
use mailprobe_core::tls::Trust;

use crate::telemetry::Telemetry;

pub struct Loaded {
    pub config: Config,
    pub targets: Vec<(Arc<Target>, Trust)>,
}

/// Loads and checks a config file, secrets and trust stores included. With a shard, only the
/// mailboxes of that shard are kept (before their secrets are read: a replica needs only its own).
pub fn load(path: &Path, shard: Option<Shard>) -> Result<Loaded, String> {
    let mut config = Config::load(path).map_err(|e| e.to_string())?;
    let shown = path.display().to_string();
    if let Some(shard) = shard {
        let total = config.mailboxes.len();
        config.mailboxes.retain(|m| shard.owns(&m.name));
        tracing::info!(%shard, mailboxes = config.mailboxes.len(), of = total, "sharded");
        if config.mailboxes.is_empty() {
            tracing::warn!(%shard, "this shard has no mailbox; are there more shards than mailboxes?");
        }
    }
    let targets = config
        .targets(&shown, &ProcessEnv)
        .map_err(|e| e.to_string())?;
    let targets = targets
        .into_iter()
        .map(|t| {
            let trust = Trust::load(t.ca_file.as_deref())
                .map_err(|e| format!("{shown}: mailbox `{}`: ca_file: {e}", t.mailbox))?;
            Ok((Arc::new(t), trust))
        })
        .collect::<Result<Vec<_>, String>>()?;
    // Load the dynamic plugins now, so that `validate` reports a bad library too.
    crate::builtins::registry_for_config(&config).map_err(|e| format!("{shown}: {e}"))?;
    Ok(Loaded { config, targets })
}

pub async fn run(loaded: Loaded) -> u8 {
    let registry = match crate::builtins::registry_for_config(&loaded.config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mailprobe: {e}");
            return 3;
        }
    };
    let plugins: Arc<Vec<_>> = Arc::new(registry.plugins().to_vec());
    let budgets = Arc::new(Budgets::new(loaded.config.server_connections));
    let trusts: Arc<std::collections::HashMap<String, Trust>> = Arc::new(
        loaded
            .targets
            .iter()
            .map(|(t, tr)| (t.mailbox.clone(), tr.clone()))
            .collect(),
    );
    let targets: Vec<Arc<Target>> = loaded.targets.iter().map(|(t, _)| t.clone()).collect();
    let telemetry = match Telemetry::start(&loaded.config).await {
        Ok(t) => Arc::new(t),
        Err(e) => {
            eprintln!("mailprobe: {e}");
            return 3;
        }
    };
    let feed = telemetry.clone();
    tracing::info!(
        mailboxes = targets.len(),
        interval = %humantime::format_duration(loaded.config.interval),
        "mailprobe started"
    );
    let mut scheduling = SchedulerConfig::new(loaded.config.interval, loaded.config.concurrency);
    // Runs in flight get 6 s after SIGTERM, telemetry the rest: the process is gone within 10 s.
    scheduling.shutdown_grace = RUN_GRACE;
    let lag_feed = telemetry.clone();
    scheduling.on_lag = Some(scheduler::LagHook(Arc::new(move |lag| {
        lag_feed.record_lag(lag)
    })));
    let handle = scheduler::start(targets, scheduling, move |target: Arc<Target>| {
        let plugins = plugins.clone();
        let budgets = budgets.clone();
        let trusts = trusts.clone();
        let feed = feed.clone();
        async move {
            let Some(trust) = trusts.get(&target.mailbox).cloned() else {
                return;
            };
            let outcome = runner::run_target(target, trust, budgets, &plugins).await;
            let r = &outcome.report;
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
                "check finished"
            );
            feed.record(&outcome);
        }
    });
    telemetry.set_ready(true);
    wait_for_signal().await;
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

/// From SIGTERM to exit, everything included (Kubernetes' default grace period is 30 s; the
/// SPEC asks for 10).
const SHUTDOWN_BUDGET: Duration = Duration::from_millis(9_300);
/// What runs in flight get of it; telemetry flushing gets the rest.
const RUN_GRACE: Duration = Duration::from_secs(6);

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
