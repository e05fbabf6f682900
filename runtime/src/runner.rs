//! Runs the selected plugins against one target and turns what they found into a report.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::FutureExt;
use tokio::time::Instant;

use mailprobe_core::context::{PluginRun, RunContext, Step};
use mailprobe_core::driver::RunDriver;
use mailprobe_core::model::{Protocol, Target};
use mailprobe_core::net::{self, Budgets, IpVersion};
use mailprobe_core::plugin::{CheckPlugin, PluginError, PluginOutcome, Selection};
use mailprobe_core::redact::Redactor;
use mailprobe_core::report::Report;
use mailprobe_core::requirement::{Catalog, Origin, RequirementResult, SkipReason, Status};
use mailprobe_core::scope::{self, RunScope};
use mailprobe_core::tls::Trust;
use mailprobe_core::transcript::{LiveSink, Transcript};

use crate::transcripts::TranscriptStore;

/// Everything a run produced: the report, and the steps and plugin runs that become spans.
#[derive(Debug)]
pub struct RunOutcome {
    pub report: Report,
    pub steps: Vec<Step>,
    pub plugin_runs: Vec<PluginRun>,
    pub started_at: SystemTime,
    pub duration: Duration,
}

/// How a run goes beyond its target: which addresses it checks, and whether it keeps a
/// transcript.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Which addresses of the servers' names are checked (`--ip-version`, `ip_version`).
    pub ip_version: IpVersion,
    /// Also record the run's protocol transcript; `live` gets each line as it happens.
    pub transcript: Option<TranscriptOptions>,
    /// The daemon's cadence per requirement group: a group whose proof is fresh is not
    /// proved again (see [`crate::cadence`]). `None` proves everything.
    pub cadence: Option<crate::cadence::CadenceOptions>,
}

/// Where a run's transcript goes: each line to `live` as it is recorded, and the whole
/// (redacted, bounded) text into `store` under the mailbox's name when the run ends.
#[derive(Clone, Default)]
pub struct TranscriptOptions {
    pub live: Option<LiveSink>,
    pub store: Option<Arc<TranscriptStore>>,
}

impl std::fmt::Debug for TranscriptOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TranscriptOptions")
    }
}

/// Runs `plugins` (in order) against `target`, within the target's deadline, against every
/// address of its servers' names (see [`run_target_with`]).
pub async fn run_target(
    target: Arc<Target>,
    trust: Trust,
    budgets: Arc<Budgets>,
    plugins: &Selection,
) -> RunOutcome {
    run_target_with(target, trust, budgets, plugins, &RunOptions::default()).await
}

/// Runs `plugins` against `target` once per address its server names resolve to (of
/// `options.ip_version`, at most [`net::MAX_ADDRESSES`]; with `connect_to`, that address only),
/// one address after the other so a server never sees more sessions at once than one run
/// holds, each within an equal share of what is left of the deadline. The results are merged:
/// a requirement takes its worst result across the addresses, and its summary names the
/// address where it was worst (see [`merge_by_address`]).
pub async fn run_target_with(
    target: Arc<Target>,
    trust: Trust,
    budgets: Arc<Budgets>,
    plugins: &Selection,
    options: &RunOptions,
) -> RunOutcome {
    let transcript = options
        .transcript
        .as_ref()
        .map(|t| Arc::new(Transcript::new(target.password.expose(), t.live.clone())));
    let scope = RunScope {
        ip_version: options.ip_version,
        transcript: transcript.clone(),
    };
    let outcome = scope::within(scope, async {
        let start = Instant::now();
        let started_at = SystemTime::now();
        let plan = address_plan(&target, options.ip_version).await;
        if plan.len() <= 1 {
            let mut one = plan
                .into_iter()
                .next()
                .map(|(t, _)| t)
                .unwrap_or_else(|| target.clone());
            // A slow resolver's time comes out of the run's deadline, not on top of it.
            let spent = start.elapsed();
            if spent > Duration::from_millis(50) {
                let mut t = (*one).clone();
                t.timeout = target
                    .timeout
                    .saturating_sub(spent)
                    .max(Duration::from_millis(100));
                one = Arc::new(t);
            }
            // A cadence applies to one address: with several, everything is proved.
            if let Some(c) = &options.cadence {
                let plugins = c.wrap(&target, plugins);
                return run_once(one, trust, budgets, &plugins).await;
            }
            return run_once(one, trust, budgets, plugins).await;
        }
        let n = plan.len();
        let mut runs = Vec::with_capacity(n);
        for (i, (t, label)) in plan.into_iter().enumerate() {
            let left = target.timeout.saturating_sub(start.elapsed());
            let share = left / u32::try_from(n - i).unwrap_or(1);
            let mut t = (*t).clone();
            t.timeout = share.max(Duration::from_millis(100));
            // The round trip writes to the mailbox: one test message per check, not per address.
            if i > 0 {
                t.roundtrip = None;
            }
            scope::note(|| format!("checking at {label} ({} of {n})", i + 1));
            let out = run_once(Arc::new(t), trust.clone(), budgets.clone(), plugins).await;
            runs.push((label, out));
        }
        merge_by_address(&target, started_at, start.elapsed(), runs, plugins)
    })
    .await;
    if let (Some(t), Some(store)) = (
        transcript,
        options.transcript.as_ref().and_then(|o| o.store.as_ref()),
    ) {
        store.record(&target.mailbox, t.text());
    }
    outcome
}

/// The targets to run, one per address, each labelled with its address(es); a single entry
/// (or none) when there is nothing to tell apart. A name that does not resolve is left to the
/// plugins, which report the DNS failure as they always have.
async fn address_plan(target: &Arc<Target>, version: IpVersion) -> Vec<(Arc<Target>, Addresses)> {
    let wait = (target.timeout / 4).max(Duration::from_millis(100));
    // Both names at once: a slow resolver costs the run its wait once.
    let per_endpoint: Vec<Vec<std::net::IpAddr>> =
        futures::future::join_all(target.endpoints().map(|ep| async move {
            if ep.connect_to.is_some() {
                Vec::new()
            } else {
                net::resolve_all(ep, version, wait)
                    .await
                    .unwrap_or_default()
            }
        }))
        .await;
    let n = per_endpoint.iter().map(Vec::len).max().unwrap_or(0);
    if n <= 1 {
        return vec![(target.clone(), Addresses::default())];
    }
    (0..n)
        .map(|i| {
            let mut t = (**target).clone();
            let mut addresses = Addresses::default();
            let endpoints = std::iter::once(&mut t.imap).chain(t.smtp.as_mut());
            for (ep, ips) in endpoints.zip(&per_endpoint) {
                // An endpoint with fewer addresses than another goes round them again.
                match ips.get(i % ips.len().max(1)) {
                    Some(ip) => {
                        ep.connect_to = Some(ip.to_string());
                        addresses.set(ep.protocol, ip.to_string());
                    }
                    // Its one address (`connect_to`), or a name the plugins will fail to resolve.
                    None => {
                        let at = ep.dial_host().to_string();
                        addresses.set(ep.protocol, at);
                    }
                }
            }
            (Arc::new(t), addresses)
        })
        .collect()
}

/// The addresses one of a check's runs went to, per server.
#[derive(Clone, Debug, Default)]
struct Addresses {
    imap: Option<String>,
    smtp: Option<String>,
}

impl Addresses {
    fn set(&mut self, protocol: Protocol, address: String) {
        match protocol {
            Protocol::Imap => self.imap = Some(address),
            Protocol::Smtp => self.smtp = Some(address),
        }
    }

    /// The address a requirement about `server` was checked at; for one about both servers
    /// (or none), both addresses.
    fn of(&self, server: Option<Protocol>) -> String {
        let one = match server {
            Some(Protocol::Imap) => self.imap.clone(),
            Some(Protocol::Smtp) => self.smtp.clone(),
            None => None,
        };
        one.unwrap_or_else(|| {
            let mut all: Vec<&str> = self
                .imap
                .iter()
                .chain(&self.smtp)
                .map(String::as_str)
                .collect();
            all.dedup();
            all.join(" and ")
        })
    }
}

impl std::fmt::Display for Addresses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.of(None))
    }
}

/// One run of `plugins` against `target` (its endpoints' addresses fixed or not).
async fn run_once(
    target: Arc<Target>,
    trust: Trust,
    budgets: Arc<Budgets>,
    plugins: &Selection,
) -> RunOutcome {
    let started_at = SystemTime::now();
    let start = Instant::now();
    let catalog = plugins.catalog().clone();
    let mut run = RunDriver::start(target.clone(), trust, budgets, catalog.clone()).await;

    for (plugin, info) in plugins.with_info() {
        let wall = SystemTime::now();
        let t0 = Instant::now();
        let outcome = run_plugin(&mut run.enter(&info.name), plugin.as_ref()).await;
        run.record_run(PluginRun {
            plugin: info.name.clone(),
            start: wall,
            duration: t0.elapsed(),
            outcome: outcome.clone(),
        });
        for id in &info.requirements {
            if run.context().result(id).is_none() {
                let r = unreported(run.context(), &catalog, &info.name, id, &outcome);
                run.report(r);
            }
        }
    }
    let record = run.finish();

    // Close the sessions plugins kept for each other and nobody took, all at once and briefly:
    // the run may already be at its deadline.
    let wait = Duration::from_secs(2);
    let closing = record.held.into_iter().map(|held| held.session.close(wait));
    let _ = tokio::time::timeout(wait, futures::future::join_all(closing)).await;

    let profile = target.profile.clone();
    let detected = record.target;
    let mut results = normalize_skips(record.results);
    mark_detected_security(&detected, &catalog, &mut results);
    // Requirements the profile does not hold are left out; a dynamic plugin's own IDs are kept
    // after the profile's.
    results.retain(|r| profile.holds(&r.id) || catalog.origin(&r.id) == Some(Origin::Dynamic));
    results.sort_by_key(|r| {
        profile
            .requirements
            .iter()
            .position(|p| p == &r.id)
            .unwrap_or(usize::MAX)
    });
    let mut steps = record.steps;
    let mut plugin_runs = record.plugin_runs;
    sanitize(
        &Redactor::new(target.password.expose()),
        &mut results,
        &mut steps,
        &mut plugin_runs,
    );
    let duration = start.elapsed();
    let mut report = Report::new(&target, started_at, duration, results);
    report.measures = catalog.measurements(&target, &report.requirements);
    RunOutcome {
        report,
        steps,
        plugin_runs,
        started_at,
        duration,
    }
}

/// How bad a result is, for merging the results of several addresses: a failure outweighs a
/// skip behind a failure, which outweighs one the probe could not verify, then a warning,
/// then a pass.
fn severity(r: &RequirementResult) -> u8 {
    match r.status {
        Status::Fail => 5,
        Status::Skip => match r.skip_reason() {
            Some(SkipReason::Prerequisite) => 4,
            Some(SkipReason::NotVerified) => 3,
            _ => 0,
        },
        Status::Warn => 2,
        Status::Pass => 1,
    }
}

/// One report from the runs of several addresses (each labelled with its address). Each
/// requirement takes its worst result; a failing, warning or unverified one says at which
/// address, and every merged result carries `address` (the one it comes from) and
/// `addresses` (each address checked, with its status there).
fn merge_by_address(
    target: &Arc<Target>,
    started_at: SystemTime,
    duration: Duration,
    runs: Vec<(Addresses, RunOutcome)>,
    plugins: &Selection,
) -> RunOutcome {
    let catalog = plugins.catalog();
    let mut merged: Vec<RequirementResult> = Vec::new();
    // Each requirement's addresses in the order checked, with its worst result at each (a
    // server with fewer addresses than the other is checked at one of them more than once).
    type AtAddress = (String, Status, u8);
    let mut statuses: Vec<(String, Vec<AtAddress>)> = Vec::new();
    let mut steps = Vec::new();
    let mut plugin_runs = Vec::new();
    for (addresses, out) in runs {
        steps.extend(out.steps);
        plugin_runs.extend(out.plugin_runs);
        for mut r in out.report.requirements {
            let label = addresses.of(catalog.get(&r.id).and_then(|s| s.server));
            let here = (label.clone(), r.status, severity(&r));
            match statuses.iter_mut().find(|(id, _)| *id == r.id) {
                Some((_, list)) => match list.iter_mut().find(|(a, _, _)| *a == label) {
                    Some(seen) if here.2 > seen.2 => *seen = here,
                    Some(_) => {}
                    None => list.push(here),
                },
                None => statuses.push((r.id.clone(), vec![here])),
            }
            let named = matches!(r.status, Status::Fail | Status::Warn)
                || r.skip_reason() == Some(SkipReason::NotVerified);
            if named {
                r.summary = format!("at {label}: {}", r.summary);
            }
            // `*.reachable` names the socket address it connected to: kept.
            r.evidence
                .entry("address")
                .or_insert_with(|| label.clone().into());
            match merged.iter_mut().find(|m| m.id == r.id) {
                Some(m) if severity(&r) > severity(m) => *m = r,
                Some(_) => {}
                None => merged.push(r),
            }
        }
    }
    for r in &mut merged {
        if let Some((_, list)) = statuses.iter().find(|(id, _)| *id == r.id)
            && list.len() > 1
        {
            let list: Vec<serde_json::Value> = list
                .iter()
                .map(|(a, s, _)| serde_json::json!({"address": a, "status": s.as_str()}))
                .collect();
            r.evidence.insert("addresses".into(), list.into());
        }
    }
    let mut report = Report::new(target, started_at, duration, merged);
    report.measures = catalog.measurements(target, &report.requirements);
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
        r.clean_typed(|t| redactor.clean(t));
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
        p.outcome.clean_text(|t| redactor.clean(t));
    }
}

/// Runs one plugin within what is left of the deadline. A panicking plugin (a bug, or bytes
/// from a hostile server it did not expect) costs only its own requirements, never the whole
/// check or the daemon's loop. The error text is scrubbed of the password.
async fn run_plugin(cx: &mut RunContext, plugin: &dyn CheckPlugin) -> PluginOutcome {
    let target = cx.target.clone();
    let wait = cx.deadline().saturating_duration_since(Instant::now());
    if wait.is_zero() {
        return PluginOutcome::NotRun(target.timeout);
    }
    let run = AssertUnwindSafe(plugin.run(cx)).catch_unwind();
    // A panic message can quote whatever bytes a server sent: the one redactor masks, escapes
    // and bounds it like every other text of the run.
    let redactor = Redactor::new(target.password.expose());
    match tokio::time::timeout(wait, run).await {
        Ok(Ok(Ok(()))) => PluginOutcome::Done,
        // A dynamic plugin's SDK catches its own panic and says so.
        Ok(Ok(Err(PluginError::Panicked(message)))) => {
            PluginOutcome::Panicked(redactor.clean(&message))
        }
        Ok(Ok(Err(mut e))) => {
            let clean = redactor.clean(e.message_mut());
            *e.message_mut() = clean;
            PluginOutcome::Failed(e)
        }
        Ok(Err(panic)) => PluginOutcome::Panicked(redactor.clean(&panic_message(panic.as_ref()))),
        Err(_) => PluginOutcome::TimedOut(target.timeout),
    }
}

/// The result of a requirement its plugin left unreported. A failure of the probe is never
/// reported as a failure of the server: it was not verified, unless a prerequisite explains it
/// or its server is not configured.
fn unreported(
    cx: &RunContext,
    catalog: &Catalog,
    plugin: &str,
    id: &str,
    outcome: &PluginOutcome,
) -> RequirementResult {
    if let Some(p) = catalog.get(id).and_then(|s| s.server)
        && cx.target.endpoint(p).is_none()
    {
        return RequirementResult::not_configured(id, not_configured_summary(p));
    }
    match (cx.blocked_by(id), outcome.error()) {
        (Some(p), _) => RequirementResult::skip(id, &p, format!("not evaluated: {p} did not pass")),
        (None, Some(why)) => {
            RequirementResult::not_verified(id, format!("not verified: plugin {plugin} {why}"))
                .with("error", why)
        }
        (None, None) => RequirementResult::not_verified(
            id,
            format!(
                "not verified: plugin {plugin} did not evaluate this requirement (a bug in the plugin; report it with the JSON report attached)"
            ),
        ),
    }
}

/// Where the probe found out a port's security itself (the user left it to `auto` on a port
/// that is not a well-known one), every result that names the security says so.
fn mark_detected_security(target: &Target, catalog: &Catalog, results: &mut [RequirementResult]) {
    for r in results.iter_mut() {
        let Some(ep) = catalog
            .get(&r.id)
            .and_then(|s| s.server)
            .and_then(|p| target.endpoint(p))
        else {
            continue;
        };
        if ep.auto_security && r.evidence.contains_key("security") {
            r.evidence
                .insert("security".into(), ep.security.as_str().into());
            r.evidence.insert("security_detected".into(), true.into());
        }
    }
}

/// Why a requirement about a server the user left out was not evaluated.
fn not_configured_summary(p: Protocol) -> String {
    format!(
        "not evaluated: no {} server configured (give --{} HOST[:PORT])",
        p.label(),
        p.prefix()
    )
}

/// The outcome of a run that could not happen (the mailbox's entry or secret cannot be used,
/// or the run panicked): every requirement of the target's profile is `not_verified` with
/// `why` (SMTP ones `not_configured` when there is no SMTP server), so the verdict is
/// `incomplete`, never a guess.
pub fn unverified_outcome(target: &Target, why: &str) -> RunOutcome {
    let started_at = SystemTime::now();
    let results = target
        .profile
        .requirements
        .iter()
        .map(|id| {
            // Without the catalog, the server a requirement is about is read from its prefix.
            let unconfigured = [Protocol::Imap, Protocol::Smtp].into_iter().find(|p| {
                target.endpoint(*p).is_none() && id.starts_with(&format!("{}.", p.prefix()))
            });
            match unconfigured {
                Some(p) => RequirementResult::not_configured(id, not_configured_summary(p)),
                None => RequirementResult::not_verified(id, why),
            }
        })
        .collect();
    let mut report = Report::new(target, started_at, Duration::ZERO, results);
    if target.imap.host.is_empty() {
        // A stand-in target: there is no server to name.
        report.servers = Default::default();
    }
    RunOutcome {
        report,
        steps: Vec::new(),
        plugin_runs: Vec::new(),
        started_at,
        duration: Duration::ZERO,
    }
}

/// The text of a caught panic (a `&str` or `String` payload; anything else is unnamed).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Makes every `prerequisite` skip true to its word: it names a requirement ID that failed (or
/// that is itself skipped behind a failure). A skip that names something else (a setting, a
/// protocol), whose prerequisite passed (the probe could not go on for its own reasons, e.g. a
/// TLS version it cannot speak), or whose chain ends in a gap becomes `not_verified`; one whose
/// chain ends in something the user left out becomes `not_configured`.
fn normalize_skips(mut results: Vec<RequirementResult>) -> Vec<RequirementResult> {
    let root_reason = |results: &[RequirementResult], start: &str| -> Option<SkipReason> {
        let mut id = start.to_string();
        // Bounded: a cycle of prerequisites is a gap, not a hang.
        for _ in 0..=results.len() {
            let Some(r) = results.iter().find(|r| r.id == id) else {
                return Some(SkipReason::NotVerified);
            };
            match r.status {
                Status::Fail => return None,
                Status::Pass | Status::Warn => return Some(SkipReason::NotVerified),
                Status::Skip => match r.skip_reason() {
                    Some(SkipReason::Prerequisite) => match r.prerequisite() {
                        Some(p) => id = p.to_string(),
                        None => return Some(SkipReason::NotVerified),
                    },
                    other => return other,
                },
            }
        }
        Some(SkipReason::NotVerified)
    };
    let recast: Vec<(usize, SkipReason)> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.skip_reason() == Some(SkipReason::Prerequisite))
        .filter_map(|(i, r)| {
            let reason = match r.prerequisite() {
                Some(p) if p != r.id => root_reason(&results, p)?,
                _ => SkipReason::NotVerified,
            };
            Some((i, reason))
        })
        .collect();
    for (i, reason) in recast {
        let r = std::mem::replace(&mut results[i], RequirementResult::pass("", String::new()));
        results[i] = r.recast_skip(reason);
    }
    // A skip from a plugin that names no reason (a foreign or older one) gets the one it is
    // read as, so every skip in the report says why.
    for r in &mut results {
        r.name_skip_reason();
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailprobe_core::model::{Endpoint, Protocol, Security};
    use mailprobe_core::plugin::{BoxFuture, PluginError, PluginInfo};
    use mailprobe_core::profile::Profile;
    use mailprobe_core::requirement::RequirementSpec;
    use mailprobe_core::requirement::Verdict;
    use mailprobe_core::secret::Secret;

    /// How a test plugin behaves after reporting `imap.reachable`.
    #[derive(Clone, Copy)]
    enum Misbehave {
        Panic,
        /// Panics quoting a server's reply: a terminal escape, the password, and much more.
        PanicWith,
        Error,
        /// Says it panicked, as a dynamic plugin's SDK does of a panic it caught.
        SdkPanic,
        Hang,
        Nothing,
    }

    struct Test(Misbehave);

    const PANIC_PASSWORD: &str = "Secr3t-Test";

    impl CheckPlugin for Test {
        fn info(&self) -> PluginInfo {
            let spec = |id: &str, p| RequirementSpec::new(id, "d").on(p);
            PluginInfo::builtin(
                "test",
                vec![
                    spec("imap.reachable", Protocol::Imap),
                    spec("imap.login", Protocol::Imap).after(&["imap.reachable"]),
                    spec("smtp.reachable", Protocol::Smtp),
                ],
            )
        }
        fn run<'a>(&'a self, cx: &'a mut RunContext) -> BoxFuture<'a, Result<(), PluginError>> {
            Box::pin(async move {
                cx.report(RequirementResult::pass("imap.reachable", "connected"));
                match self.0 {
                    Misbehave::Panic => panic!("boom from a test plugin"),
                    Misbehave::PanicWith => {
                        panic!(
                            "\x1b[31mthe server said: {PANIC_PASSWORD} {}",
                            "x".repeat(3000)
                        )
                    }
                    Misbehave::Error => Err(PluginError::Crashed("the plugin's own error".into())),
                    Misbehave::SdkPanic => Err(PluginError::Panicked(format!(
                        "caught by the SDK, with {PANIC_PASSWORD}"
                    ))),
                    Misbehave::Hang => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        Ok(())
                    }
                    Misbehave::Nothing => Ok(()),
                }
            })
        }
    }

    fn target(smtp: bool) -> Arc<Target> {
        let ep = |protocol, port| Endpoint {
            protocol,
            host: "mail.invalid".into(),
            port,
            security: Security::Tls,
            connect_to: None,
            auto_security: false,
            source_address: None,
        };
        Arc::new(Target {
            mailbox: "m".into(),
            profile: Arc::new(Profile::builtin("hubspot").unwrap()),
            imap: ep(Protocol::Imap, 993),
            smtp: smtp.then(|| ep(Protocol::Smtp, 465)),
            user: "u".into(),
            password: Secret::new(PANIC_PASSWORD),
            ca_file: None,
            allow_insecure_cert: false,
            timeout: Duration::from_secs(10),
            roundtrip: None,
        })
    }

    async fn run(how: Misbehave, smtp: bool) -> Report {
        let plugins = Selection::from(vec![Arc::new(Test(how)) as Arc<dyn CheckPlugin>]);
        let trust = Trust::load(None).unwrap();
        run_target(target(smtp), trust, Arc::new(Budgets::new(8)), &plugins)
            .await
            .report
    }

    fn get<'a>(r: &'a Report, id: &str) -> &'a RequirementResult {
        r.requirements.iter().find(|x| x.id == id).unwrap()
    }

    /// Fails `imap.login` at ::1 only, and says something with the password in it.
    struct ByAddress;

    impl CheckPlugin for ByAddress {
        fn info(&self) -> PluginInfo {
            let spec = |id: &str| RequirementSpec::new(id, "d").on(Protocol::Imap);
            PluginInfo::builtin(
                "byaddress",
                vec![spec("imap.reachable"), spec("imap.login")],
            )
        }
        fn run<'a>(&'a self, cx: &'a mut RunContext) -> BoxFuture<'a, Result<(), PluginError>> {
            Box::pin(async move {
                let at = cx.target.imap.connect_to.clone().unwrap_or_default();
                mailprobe_core::scope::note(|| format!("at {at} with {PANIC_PASSWORD}"));
                cx.report(RequirementResult::pass("imap.reachable", "connected"));
                cx.report(if at == "::1" {
                    RequirementResult::fail("imap.login", "refused", "fix the login")
                } else {
                    RequirementResult::pass("imap.login", "logged in")
                });
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn one_failing_address_fails_the_requirement_and_is_named() {
        let plugins = Selection::from(vec![Arc::new(ByAddress) as Arc<dyn CheckPlugin>]);
        let trust = Trust::load(None).unwrap();
        let budgets = Arc::new(Budgets::new(8));
        let mut runs = Vec::new();
        for at in ["127.0.0.1", "::1"] {
            let mut t = (*target(false)).clone();
            t.imap.connect_to = Some(at.into());
            let out = run_once(Arc::new(t), trust.clone(), budgets.clone(), &plugins).await;
            let mut addresses = Addresses::default();
            addresses.set(Protocol::Imap, at.into());
            addresses.set(Protocol::Smtp, "192.0.2.25".into());
            runs.push((addresses, out));
        }
        let out = merge_by_address(
            &target(false),
            SystemTime::now(),
            Duration::from_millis(5),
            runs,
            &plugins,
        );
        let r = &out.report;
        assert_eq!(r.verdict, Verdict::NonCompliant);
        let login = get(r, "imap.login");
        assert_eq!(login.status, Status::Fail);
        assert_eq!(login.summary, "at ::1: refused");
        assert_eq!(login.evidence["address"], "::1");
        assert_eq!(
            login.evidence["addresses"],
            serde_json::json!([
                {"address": "127.0.0.1", "status": "pass"},
                {"address": "::1", "status": "fail"}
            ])
        );
        let reach = get(r, "imap.reachable");
        assert_eq!(reach.status, Status::Pass);
        assert_eq!(reach.summary, "connected");
    }

    #[tokio::test]
    async fn a_run_keeps_its_transcript_redacted_only_when_asked() {
        let plugins = Selection::from(vec![Arc::new(ByAddress) as Arc<dyn CheckPlugin>]);
        let trust = Trust::load(None).unwrap();
        let mut t = (*target(false)).clone();
        t.imap.connect_to = Some("127.0.0.1".into());
        let t = Arc::new(t);
        let lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let seen = lines.clone();
        let store = Arc::new(TranscriptStore::new());
        let options = RunOptions {
            ip_version: IpVersion::Any,
            transcript: Some(TranscriptOptions {
                live: Some(Arc::new(move |l: &str| {
                    seen.lock().unwrap().push(l.to_string())
                })),
                store: Some(store.clone()),
            }),
            cadence: None,
        };
        run_target_with(
            t.clone(),
            trust.clone(),
            Arc::new(Budgets::new(8)),
            &plugins,
            &options,
        )
        .await;
        let text = store.get("m").expect("a transcript");
        assert!(text.contains("at 127.0.0.1 with [redacted]"), "{text}");
        assert!(!text.contains(PANIC_PASSWORD), "{text}");
        assert_eq!(lines.lock().unwrap().len(), text.lines().count());
        // Without a transcript asked for, nothing is recorded (the store keeps the last one).
        let quiet = RunOptions::default();
        run_target_with(t, trust, Arc::new(Budgets::new(8)), &plugins, &quiet).await;
        assert_eq!(store.get("m").as_deref(), Some(&*text));
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_failure_is_not_verified_never_a_fail() {
        for (how, said) in [
            (Misbehave::Panic, "panicked: boom from a test plugin"),
            (Misbehave::Error, "failed: the plugin's own error"),
            (Misbehave::Hang, "timed out"),
            (Misbehave::Nothing, "did not evaluate"),
        ] {
            let r = run(how, true).await;
            assert_eq!(r.verdict, Verdict::Incomplete, "{said}: {r:#?}");
            assert_eq!(r.exit_code(), 3);
            assert_eq!(get(&r, "imap.reachable").status, Status::Pass);
            for id in ["imap.login", "smtp.reachable"] {
                let x = get(&r, id);
                assert_eq!(x.skip_reason(), Some(SkipReason::NotVerified), "{x:?}");
                assert!(x.summary.contains(said), "{said}: {}", x.summary);
                assert!(x.remedy.is_none());
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_plugin_run_ends_in_a_typed_outcome() {
        let secs = Duration::from_secs(10);
        for (how, expected) in [
            (
                Misbehave::Panic,
                PluginOutcome::Panicked("boom from a test plugin".into()),
            ),
            (
                Misbehave::SdkPanic,
                PluginOutcome::Panicked("caught by the SDK, with [redacted]".into()),
            ),
            (
                Misbehave::Error,
                PluginOutcome::Failed(PluginError::Crashed("the plugin's own error".into())),
            ),
            (Misbehave::Hang, PluginOutcome::TimedOut(secs)),
            (Misbehave::Nothing, PluginOutcome::Done),
        ] {
            let plugins = Selection::from(vec![Arc::new(Test(how)) as Arc<dyn CheckPlugin>]);
            let trust = Trust::load(None).unwrap();
            let out = run_target(target(true), trust, Arc::new(Budgets::new(8)), &plugins).await;
            assert_eq!(out.plugin_runs.len(), 1);
            let run = &out.plugin_runs[0];
            assert_eq!(run.outcome, expected);
            assert_eq!(
                run.outcome.is_panic(),
                matches!(expected, PluginOutcome::Panicked(_))
            );
            if let Some(why) = run.error() {
                let x = get(&out.report, "imap.login");
                assert_eq!(x.summary, format!("not verified: plugin test {why}"));
            }
        }
        assert_eq!(
            PluginOutcome::NotRun(secs).error().as_deref(),
            Some("was not run: the check's deadline (10s) had passed")
        );
        assert_eq!(
            PluginOutcome::NotRun(secs).error_type(),
            Some("deadline_exceeded")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_scheduler_keeps_checking_a_mailbox_whose_plugin_panics() {
        use crate::scheduler::{self, SchedulerConfig};
        use mailprobe_core::plugin::Registry;
        let mut registry = Registry::new();
        registry.register(Arc::new(Test(Misbehave::Panic))).unwrap();
        let plugins = Arc::new(registry.select(&[]).unwrap());
        let trust = Trust::load(None).unwrap();
        let verdicts = Arc::new(std::sync::Mutex::new(Vec::new()));
        let v = verdicts.clone();
        let h = scheduler::start(
            vec![target(true)],
            SchedulerConfig::new(Duration::from_secs(60), 1),
            move |t| {
                let (plugins, trust, v) = (plugins.clone(), trust.clone(), v.clone());
                async move {
                    let o = run_target(t, trust, Arc::new(Budgets::new(8)), &plugins).await;
                    v.lock().unwrap().push(o.report.verdict);
                }
            },
        );
        tokio::time::sleep(Duration::from_secs(60 * 3 + 30)).await;
        h.shutdown().await;
        let verdicts = verdicts.lock().unwrap();
        assert!(verdicts.len() >= 3, "{verdicts:?}");
        assert!(verdicts.iter().all(|v| *v == Verdict::Incomplete));
    }

    #[tokio::test(start_paused = true)]
    async fn smtp_left_out_is_not_configured() {
        let r = run(Misbehave::Error, false).await;
        let x = get(&r, "smtp.reachable");
        assert_eq!(x.skip_reason(), Some(SkipReason::NotConfigured));
        assert_eq!(x.prerequisite(), None);
        let json = serde_json::to_value(x).unwrap();
        assert!(json["evidence"].get("prerequisite").is_none(), "{json}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_panic_message_is_masked_escaped_and_bounded_by_the_redactor() {
        let r = run(Misbehave::PanicWith, true).await;
        let x = get(&r, "imap.login");
        let text = serde_json::to_string(&x).unwrap();
        assert!(
            !text.contains(PANIC_PASSWORD) && !text.contains('\x1b'),
            "{text}"
        );
        assert!(
            x.summary
                .contains("panicked: \\x1b[31mthe server said: [redacted] xxx"),
            "{}",
            x.summary
        );
        let error = x.evidence["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with("panicked: \\x1b[31mthe server"),
            "{error}"
        );
        assert!(error.ends_with('…'), "{error}");
        assert!(
            error.chars().count() <= mailprobe_core::redact::MAX_TEXT,
            "{}",
            error.chars().count()
        );
    }

    #[test]
    fn a_skip_names_a_requirement_that_did_not_pass_or_becomes_a_gap() {
        let rs = normalize_skips(vec![
            RequirementResult::fail("imap.reachable", "refused", "open it"),
            RequirementResult::skip("imap.encryption", "imap.reachable", "x"),
            RequirementResult::skip("imap.login", "imap.encryption", "x"),
            RequirementResult::warn("imap.tls_versions", "TLS 1.0 only", "raise"),
            // Passed prerequisite: the probe itself could not go on.
            RequirementResult::skip("imap.folders", "imap.tls_versions", "x"),
            // Not a requirement ID.
            RequirementResult::skip("connections.concurrent", "server_connections", "x"),
            RequirementResult::not_configured("smtp.reachable", "no --smtp"),
            RequirementResult::skip("smtp.login", "smtp.reachable", "x"),
            RequirementResult::not_verified("smtp.encryption", "x"),
            RequirementResult::skip("smtp.tls_versions", "smtp.encryption", "x"),
            // A foreign skip that gives no reason and names nothing: a gap, said so.
            serde_json::from_value(serde_json::json!(
                {"id": "pop3.login", "status": "skip", "summary": "x"}
            ))
            .unwrap(),
        ]);
        let reason = |id: &str| rs.iter().find(|r| r.id == id).unwrap().skip_reason();
        assert_eq!(reason("imap.encryption"), Some(SkipReason::Prerequisite));
        assert_eq!(reason("imap.login"), Some(SkipReason::Prerequisite));
        assert_eq!(reason("imap.folders"), Some(SkipReason::NotVerified));
        assert_eq!(
            reason("connections.concurrent"),
            Some(SkipReason::NotVerified)
        );
        assert_eq!(reason("smtp.login"), Some(SkipReason::NotConfigured));
        assert_eq!(reason("smtp.tls_versions"), Some(SkipReason::NotVerified));
        assert_eq!(reason("pop3.login"), Some(SkipReason::NotVerified));
        assert!(
            rs.iter()
                .filter(|r| r.status == Status::Skip)
                .all(|r| serde_json::to_value(r).unwrap()["evidence"]["reason"].is_string())
        );
        // Every prerequisite named is a requirement of the run.
        assert!(
            rs.iter()
                .filter_map(|r| r.prerequisite())
                .all(|p| rs.iter().any(|r| r.id == p))
        );
    }
}
