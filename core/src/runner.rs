//! Runs the selected plugins against one target and turns what they found into a report.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::context::{PluginRun, RunContext, Step};
use crate::model::Target;
use crate::net::Budgets;
use crate::plugin::{CheckPlugin, catalog_of};
use crate::report::Report;
use crate::requirement::{Origin, RequirementResult};
use crate::tls::Trust;

/// Everything a run produced: the report, and the steps and plugin runs that become spans.
#[derive(Debug)]
pub struct RunOutcome {
    pub report: Report,
    pub steps: Vec<Step>,
    pub plugin_runs: Vec<PluginRun>,
    pub started_at: SystemTime,
    pub duration: Duration,
}

/// Runs `plugins` (in order) against `target`, within the target's deadline.
pub async fn run_target(
    target: Arc<Target>,
    trust: Trust,
    budgets: Arc<Budgets>,
    plugins: &[Arc<dyn CheckPlugin>],
) -> RunOutcome {
    let started_at = SystemTime::now();
    let start = Instant::now();
    let catalog = Arc::new(catalog_of(plugins));
    let mut cx = RunContext::new(target.clone(), trust, budgets).with_catalog(catalog.clone());
    cx.reserve_slots().await;

    for plugin in plugins {
        let info = plugin.info();
        cx.current_plugin = info.name.clone();
        let wall = SystemTime::now();
        let t0 = Instant::now();
        let wait = cx.deadline().saturating_duration_since(Instant::now());
        let outcome = if wait.is_zero() {
            Err(format!(
                "not run: the check's deadline ({:?}) had passed",
                target.timeout
            ))
        } else {
            match tokio::time::timeout(wait, plugin.run(&mut cx)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!(
                    "timed out: the check did not finish within its deadline ({:?})",
                    target.timeout
                )),
            }
        };
        cx.plugin_runs.push(PluginRun {
            plugin: info.name.clone(),
            start: wall,
            duration: t0.elapsed(),
            error: outcome.clone().err(),
        });
        for id in &info.requirements {
            if cx.result(id).is_some() {
                continue;
            }
            if let Some(p) = catalog.get(id).and_then(|s| s.server)
                && target.endpoint(p).is_none()
            {
                cx.report(RequirementResult::skip(
                    id,
                    p.prefix(),
                    format!(
                        "not evaluated: no {} server configured (give --{} HOST[:PORT])",
                        p.label(),
                        p.prefix()
                    ),
                ));
                continue;
            }
            let result = match &outcome {
                Err(why) => RequirementResult::fail(
                    id,
                    format!("plugin {} failed: {why}", info.name),
                    "Check that the server answers within the timeout (--timeout / timeout), or report the plugin error.",
                )
                .with("error", why.clone()),
                Ok(()) => match cx.blocked_by(id) {
                    Some(p) => RequirementResult::skip(
                        id,
                        &p,
                        format!("not evaluated: {p} did not pass"),
                    ),
                    None => RequirementResult::fail(
                        id,
                        format!("plugin {} did not evaluate this requirement", info.name),
                        "This is a bug in the plugin; report it with the JSON report attached.",
                    ),
                },
            };
            cx.report(result);
        }
    }

    // Close the sessions plugins kept for each other and nobody took, all at once and briefly:
    // the run may already be at its deadline.
    let wait = Duration::from_secs(2);
    let closing = std::mem::take(&mut cx.held)
        .into_iter()
        .map(|held| held.session.close(wait));
    let _ = tokio::time::timeout(wait, futures::future::join_all(closing)).await;

    let profile = target.profile.clone();
    let mut results = cx.take_results();
    // Built-in requirements the profile does not hold are left out; a dynamic plugin's own IDs
    // are kept after the profile's.
    results.retain(|r| profile.holds(&r.id) || catalog.origin(&r.id) == Some(Origin::Dynamic));
    results.sort_by_key(|r| {
        profile
            .requirements
            .iter()
            .position(|p| p == &r.id)
            .unwrap_or(usize::MAX)
    });
    let duration = start.elapsed();
    let mut report = Report::new(&target, started_at, duration, results);
    report.measures = catalog.measurements(&target, &report.requirements);
    RunOutcome {
        report,
        steps: cx.take_steps(),
        plugin_runs: std::mem::take(&mut cx.plugin_runs),
        started_at,
        duration,
    }
}
