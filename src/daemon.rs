//! `mailprobe run`: the scheduler over the configured mailboxes.

use std::path::Path;
use std::sync::Arc;

use mailprobe_core::config::Config;
use mailprobe_core::model::Target;
use mailprobe_core::net::Budgets;
use mailprobe_core::runner;
use mailprobe_core::scheduler::{self, SchedulerConfig};
use mailprobe_core::secret::ProcessEnv;
use mailprobe_core::tls::Trust;

pub struct Loaded {
    pub config: Config,
    pub targets: Vec<(Arc<Target>, Trust)>,
}

/// Loads and checks a config file, secrets and trust stores included.
pub fn load(path: &Path) -> Result<Loaded, String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    let shown = path.display().to_string();
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
    Ok(Loaded { config, targets })
}

pub async fn run(loaded: Loaded) -> u8 {
    let registry = match crate::builtins::registry() {
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
    tracing::info!(
        mailboxes = targets.len(),
        interval = %humantime::format_duration(loaded.config.interval),
        "mailprobe started"
    );
    let handle = scheduler::start(
        targets,
        SchedulerConfig::new(loaded.config.interval, loaded.config.concurrency),
        move |target: Arc<Target>| {
            let plugins = plugins.clone();
            let budgets = budgets.clone();
            let trusts = trusts.clone();
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
            }
        },
    );
    wait_for_signal().await;
    tracing::info!("shutting down");
    handle.shutdown().await;
    0
}

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
