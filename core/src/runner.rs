//! Runs the selected plugins against one target and turns what they found into a report.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::context::{PluginRun, RunContext, Step};
use crate::model::Target;
use crate::net::Budgets;
use crate::plugin::CheckPlugin;
use crate::redact::Redactor;
use crate::report::Report;
use crate::requirement::{self, RequirementResult};
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
    let mut cx = RunContext::new(target.clone(), trust, budgets);
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
                Ok(Err(e)) => Err(e.0),
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
            if id.starts_with("smtp.") && target.smtp.is_none() {
                cx.report(RequirementResult::skip(
                    id,
                    "smtp",
                    "not evaluated: no SMTP server configured (give --smtp HOST[:PORT])",
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
    results.retain(|r| profile.holds(&r.id) || requirement::info(&r.id).is_none());
    results.sort_by_key(|r| {
        profile
            .requirements
            .iter()
            .position(|p| p == &r.id)
            .unwrap_or(usize::MAX)
    });
    let mut steps = cx.take_steps();
    let mut plugin_runs = std::mem::take(&mut cx.plugin_runs);
    sanitize(
        &Redactor::new(target.password.expose()),
        &mut results,
        &mut steps,
        &mut plugin_runs,
    );
    let duration = start.elapsed();
    let report = Report::new(&target, started_at, duration, results);
    RunOutcome {
        report,
        steps,
        plugin_runs,
        started_at,
        duration,
    }
}

/// Passes everything a run produced through the redactor before any of it leaves the runner:
/// plugins quote servers in summaries, evidence, step errors and attributes, and one that
/// forgot to scrub a reply must not be able to put the password in a report, span or alert.
pub fn sanitize(
    redactor: &Redactor,
    results: &mut [RequirementResult],
    steps: &mut [Step],
    plugin_runs: &mut [PluginRun],
) {
    for r in results {
        r.summary = redactor.clean(&r.summary);
        if let Some(remedy) = &mut r.remedy {
            *remedy = redactor.clean(remedy);
        }
        redactor.clean_map(&mut r.evidence);
    }
    for s in steps {
        for text in [&mut s.error, &mut s.error_type].into_iter().flatten() {
            *text = redactor.clean(text);
        }
        for v in s.attributes.values_mut() {
            *v = redactor.clean(v);
        }
    }
    for p in plugin_runs {
        if let Some(e) = &mut p.error {
            *e = redactor.clean(e);
        }
    }
}
