//! The run context: what one mailbox run has learned so far, shared by the plugins so that a TLS
//! handshake or a logged-in session is not repeated by every plugin that needs its facts.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::{ErrorType, NetError};
pub use crate::fact::{Fact, Facts};
use crate::model::{Endpoint, Protocol, Target};
use crate::net::{self, Budgets, Conn};
use crate::requirement::{Catalog, RequirementResult, Status};
use crate::session::{MailSession, OpenParams, SessionOpener};
pub use crate::tls::Handshake;
use crate::tls::{SessionCache, Trust};

/// One protocol step (connect, TLS handshake, greeting, login, ...), ready to become a span.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Step {
    pub plugin: String,
    pub name: String,
    pub protocol: Option<Protocol>,
    /// OpenTelemetry semantic-convention attributes (`server.address`, `tls.protocol.version`...).
    pub attributes: BTreeMap<String, String>,
    #[serde(with = "system_time_ms")]
    pub start: SystemTime,
    pub duration: Duration,
    pub error_type: Option<String>,
    pub error: Option<String>,
}

mod system_time_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let ms = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        s.serialize_u64(ms)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let ms = u64::deserialize(d)?;
        Ok(UNIX_EPOCH + Duration::from_millis(ms))
    }
}

impl Step {
    /// A step that ends now: `endpoint` fills the OpenTelemetry `server.*` attributes, and a
    /// failed `outcome` its `error.type` and message.
    pub fn finished<T>(
        plugin: &str,
        timer: StepTimer,
        name: &str,
        endpoint: Option<&Endpoint>,
        outcome: &Result<T, NetError>,
        mut attributes: BTreeMap<String, String>,
    ) -> Step {
        if let Some(ep) = endpoint {
            attributes.insert("server.address".into(), ep.host.clone());
            attributes.insert("server.port".into(), ep.port.to_string());
            attributes.insert("network.transport".into(), "tcp".into());
        }
        let (error_type, error) = match outcome {
            Ok(_) => (None, None),
            Err(e) => (Some(e.error_type().to_string()), Some(e.to_string())),
        };
        Step {
            plugin: plugin.to_string(),
            name: name.to_string(),
            protocol: endpoint.map(|e| e.protocol),
            attributes,
            start: timer.wall,
            duration: timer.mono.elapsed(),
            error_type,
            error,
        }
    }
}

/// The time one step started, to be turned into a [`Step`] when it ends.
#[derive(Clone, Copy, Debug)]
pub struct StepTimer {
    wall: SystemTime,
    mono: Instant,
}

impl StepTimer {
    pub fn start() -> Self {
        StepTimer {
            wall: SystemTime::now(),
            mono: Instant::now(),
        }
    }
}

/// How a plugin ran, for the plugin's span and the daemon's counters.
#[derive(Clone, Debug)]
pub struct PluginRun {
    pub plugin: String,
    pub start: SystemTime,
    pub duration: Duration,
    /// How it ended.
    pub outcome: crate::plugin::PluginOutcome,
}

impl PluginRun {
    /// What went wrong, in the words of a report; `None` when it ran to its end.
    pub fn error(&self) -> Option<String> {
        self.outcome.error()
    }
}

/// A serializable view of a [`NetError`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetErrorView {
    pub error_type: String,
    pub message: String,
    /// The step that failed (`connect`, `starttls`, `tls_handshake`), where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
}

impl From<&NetError> for NetErrorView {
    fn from(e: &NetError) -> Self {
        NetErrorView {
            error_type: e.error_type().to_string(),
            message: e.to_string(),
            step: None,
        }
    }
}

impl NetErrorView {
    /// A view of a failure that is not a network error (e.g. no server configured).
    pub fn new(error_type: ErrorType, message: impl Into<String>) -> Self {
        NetErrorView {
            error_type: error_type.as_str().to_string(),
            message: message.into(),
            step: None,
        }
    }
    pub fn at(mut self, step: &str) -> Self {
        self.step = Some(step.to_string());
        self
    }
}

/// A logged-in session a plugin keeps open for a later one (the connection-limit check counts it
/// instead of opening one more). The runner closes those nobody took at the end of the run.
pub struct HeldSession {
    pub protocol: Protocol,
    pub session: Box<dyn MailSession>,
}

/// A run's share of one server's connection budget.
struct Reservation {
    size: usize,
    local: Arc<tokio::sync::Semaphore>,
    _share: Option<net::Share>,
}

/// A connection one plugin opened and handed on, with when it was opened.
struct Spare {
    conn: Conn,
    opened: Instant,
}

/// How long a handed-on connection is worth taking: a server may drop a client that stays
/// silent, and a connection it dropped would fail the next plugin for the probe's own doing.
const SPARE_FRESH: Duration = Duration::from_secs(1);

/// Everything one run of one mailbox shares.
pub struct RunContext {
    pub target: Arc<Target>,
    pub trust: Trust,
    pub budgets: Arc<Budgets>,
    /// This run's share of each server's budget, taken whole at the start of the run (IMAP
    /// before SMTP, always in that order), so that runs waiting for each other's connections
    /// cannot deadlock. Every connection of the run takes a slot from here.
    slots: BTreeMap<Protocol, Reservation>,
    deadline: Instant,
    /// What the plugins of this run declare about their requirements.
    pub catalog: Arc<Catalog>,
    pub facts: Facts,
    pub held: Vec<HeldSession>,
    /// How to open more sessions like the plugins' own, by protocol (the IMAP and SMTP plugins
    /// put theirs here for the connection-limit check).
    pub openers: BTreeMap<Protocol, Arc<dyn SessionOpener>>,
    /// The TLS session store and verdicts each port's handshakes share in this run (see
    /// [`SessionCache`]): the sessions after the first resume.
    tls_sessions: BTreeMap<Protocol, SessionCache>,
    /// Connections handed on (reachability's), taken by the next connect to the same port.
    spare: BTreeMap<Protocol, Spare>,
    results: Vec<RequirementResult>,
    steps: Vec<Step>,
    plugin_runs: Vec<PluginRun>,
    current_plugin: String,
    /// A digest of the leaf certificate of each port's first handshake in this run (see
    /// [`RunContext::first_leaf`]).
    leaves: BTreeMap<Protocol, u64>,
}

impl RunContext {
    pub fn new(target: Arc<Target>, trust: Trust, budgets: Arc<Budgets>) -> Self {
        let deadline = Instant::now() + target.timeout;
        // Every verdict and the password gate are the profile's client's.
        let trust = trust.for_client(&target.profile.client);
        RunContext {
            target,
            trust,
            budgets,
            slots: BTreeMap::new(),
            deadline,
            catalog: Arc::new(Catalog::default()),
            facts: Facts::default(),
            held: Vec::new(),
            openers: BTreeMap::new(),
            tls_sessions: [Protocol::Imap, Protocol::Smtp]
                .into_iter()
                .map(|p| (p, SessionCache::new()))
                .collect(),
            spare: BTreeMap::new(),
            results: Vec::new(),
            steps: Vec::new(),
            plugin_runs: Vec::new(),
            current_plugin: String::new(),
            leaves: BTreeMap::new(),
        }
    }

    /// The same context, judging prerequisites by `catalog`.
    pub fn with_catalog(mut self, catalog: Arc<Catalog>) -> Self {
        self.catalog = catalog;
        self
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Time left before the run's deadline (at least 1 ms, so a zero timeout never panics).
    pub fn remaining(&self) -> Duration {
        self.deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    }

    /// Takes this run's share of each configured server's budget: as many connections as the
    /// profile's client holds at once to that port, from the budget of this mailbox's user on
    /// the server's address and from the address's cap (see [`Budgets`]). The wait for it is a
    /// queue, not part of the check: it may last up to the budgets' queue limit (else the
    /// check's timeout), and the deadline starts when the share is taken, so mailboxes that
    /// share a server take turns instead of running out of time (and being judged for the
    /// probe's own crowding). IMAP before SMTP, always in that order.
    pub async fn reserve_slots(&mut self) {
        let endpoints: Vec<Endpoint> = self.target.endpoints().cloned().collect();
        let queue = self.budgets.queue_limit().unwrap_or(self.target.timeout);
        let queue_until = Instant::now() + queue;
        for ep in endpoints {
            let rules = &self.target.profile.connections;
            let want = match ep.protocol {
                Protocol::Imap => rules.imap_with_other_folders.max(rules.imap),
                Protocol::Smtp => rules.smtp,
            }
            .max(1) as usize;
            let left = || {
                queue_until
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1))
            };
            let key = net::ServerKey::resolve(&ep, left().min(self.target.timeout)).await;
            let share = self
                .budgets
                .reserve(&self.target.user, &key, want, left())
                .await
                .ok();
            let size = share.as_ref().map_or(0, |s| s.size);
            self.slots.insert(
                ep.protocol,
                Reservation {
                    size,
                    local: Arc::new(tokio::sync::Semaphore::new(size)),
                    _share: share,
                },
            );
        }
        self.deadline = Instant::now() + self.target.timeout;
    }

    /// How many connections this run may hold at once to a protocol's server.
    pub fn reserved(&self, protocol: Protocol) -> usize {
        self.slots.get(&protocol).map_or(0, |r| r.size)
    }

    /// Takes one of this run's connection slots for a protocol's server, waiting at most `wait`.
    /// Pass the permit to [`net::connect`]; the connection holds it until dropped.
    pub fn slot(
        &self,
        protocol: Protocol,
        wait: Duration,
    ) -> impl Future<Output = Result<tokio::sync::OwnedSemaphorePermit, NetError>> + Send + 'static
    {
        let sem = self.slots.get(&protocol).map(|r| r.local.clone());
        let server = self
            .target
            .endpoint(protocol)
            .map(|e| e.authority())
            .unwrap_or_default();
        async move {
            let Some(sem) = sem else {
                return Err(NetError::BudgetExhausted { server });
            };
            match tokio::time::timeout(wait, sem.acquire_owned()).await {
                Ok(Ok(p)) => Ok(p),
                _ => Err(NetError::BudgetExhausted { server }),
            }
        }
    }

    /// The TLS sessions of this run with a protocol's port: pass it to
    /// [`crate::tls::handshake_in`] so that every handshake after the first resumes.
    pub fn tls_sessions(&self, protocol: Protocol) -> SessionCache {
        self.tls_sessions
            .get(&protocol)
            .cloned()
            .unwrap_or_default()
    }

    /// What a [`SessionOpener`] needs to open a session to `protocol`'s port for this run.
    pub fn open_params(&self, protocol: Protocol) -> OpenParams {
        OpenParams {
            target: self.target.clone(),
            trust: self.trust.clone(),
            budgets: self.budgets.clone(),
            wait: self.io_timeout(),
            pinned_leaf: None,
            engine: crate::tls::TlsEngine::Rustls,
            tls_sessions: self.tls_sessions(protocol),
        }
    }

    /// The bound for one network exchange (a read, a handshake): half the check's timeout, and
    /// never past the deadline. A silent server then fails that step with a timeout of its own
    /// while time is left to report it.
    pub fn io_timeout(&self) -> Duration {
        (self.target.timeout / 2).min(self.remaining())
    }

    /// The plugin now running (steps are attributed to it).
    pub fn current_plugin(&self) -> &str {
        &self.current_plugin
    }

    // ---- results ----

    /// Records a requirement result. A second result for the same ID replaces the first. A
    /// failure that is the probe's own (no free connection slot within the run's budget) is
    /// recorded as `not_verified`: the server was not judged.
    pub fn report(&mut self, result: RequirementResult) {
        let result = own_limit_is_not_a_verdict(result);
        if let Some(existing) = self.results.iter_mut().find(|r| r.id == result.id) {
            *existing = result;
        } else {
            self.results.push(result);
        }
    }

    pub fn result(&self, id: &str) -> Option<&RequirementResult> {
        self.results.iter().find(|r| r.id == id)
    }

    pub fn status(&self, id: &str) -> Option<Status> {
        self.result(id).map(|r| r.status)
    }

    pub fn results(&self) -> &[RequirementResult] {
        &self.results
    }

    /// Whether the server a requirement is about is configured (an SMTP requirement without
    /// `--smtp` is not).
    pub fn configured(&self, id: &str) -> bool {
        match self.catalog.get(id).and_then(|s| s.server) {
            Some(p) => self.target.endpoint(p).is_some(),
            None => true,
        }
    }

    /// The first prerequisite of `id` that failed or was skipped, if any. Prerequisites about a
    /// server that is not configured do not block.
    pub fn blocked_by(&self, id: &str) -> Option<String> {
        let spec = self.catalog.get(id)?;
        spec.prerequisites
            .iter()
            .filter(|p| self.configured(p))
            .find(|p| matches!(self.status(p), Some(Status::Fail | Status::Skip)))
            .cloned()
    }

    /// Reports `id` as skipped when a prerequisite failed; returns whether it did.
    pub fn skip_if_blocked(&mut self, id: &str) -> bool {
        match self.blocked_by(id) {
            Some(p) => {
                let why = format!("not evaluated: {p} did not pass");
                self.report(RequirementResult::skip(id, &p, why));
                true
            }
            None => false,
        }
    }

    // ---- steps ----

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Records a step that was timed elsewhere: a dynamic plugin returns its steps finished.
    pub fn push_step(&mut self, step: Step) {
        self.steps.push(step);
    }

    /// Records a finished step. `endpoint` fills the `server.*` attributes.
    pub fn record_step<T>(
        &mut self,
        timer: StepTimer,
        name: &str,
        endpoint: Option<&Endpoint>,
        outcome: &Result<T, NetError>,
        attributes: BTreeMap<String, String>,
    ) {
        let step = Step::finished(
            &self.current_plugin,
            timer,
            name,
            endpoint,
            outcome,
            attributes,
        );
        crate::scope::note(|| transcript_line(&step, endpoint));
        self.steps.push(step);
    }

    /// Runs `fut` as a step, bounded by the run's deadline.
    pub async fn step<T, F>(
        &mut self,
        name: &str,
        endpoint: Option<&Endpoint>,
        fut: F,
    ) -> Result<T, NetError>
    where
        F: Future<Output = Result<T, NetError>>,
    {
        let timer = StepTimer::start();
        let wait = self.remaining();
        let out = crate::error::within(wait, name, fut).await;
        self.record_step(timer, name, endpoint, &out, BTreeMap::new());
        out
    }

    // ---- shared network operations ----

    /// Connects to an endpoint within the server budget and the deadline, as a `connect` step.
    /// A fresh connection handed on to this port (see [`RunContext::hand_on`]) is taken instead:
    /// one round trip less (two on a port whose greeting has arrived meanwhile).
    pub async fn connect(&mut self, endpoint: &Endpoint) -> Result<Conn, NetError> {
        if let Some(conn) = self.take_spare(endpoint) {
            let out = Ok(conn);
            self.record_connect(StepTimer::start(), endpoint, &out);
            if let Some(step) = self.steps.last_mut() {
                step.attributes
                    .insert("mailprobe.connection.handed_on".into(), "true".into());
            }
            return out;
        }
        let (timer, out) = self.connect_job(endpoint, self.remaining()).await;
        self.record_connect(timer, endpoint, &out);
        out
    }

    /// Hands a connection on to the next plugin that connects to `protocol`'s port, unread and
    /// unwritten (it keeps its slot meanwhile). Taken only while fresh; else dropped then.
    pub fn hand_on(&mut self, protocol: Protocol, conn: Conn) {
        let opened = Instant::now();
        self.spare.insert(protocol, Spare { conn, opened });
    }

    fn take_spare(&mut self, endpoint: &Endpoint) -> Option<Conn> {
        let spare = self.spare.remove(&endpoint.protocol)?;
        (spare.opened.elapsed() < SPARE_FRESH && spare.conn.peer.port() == endpoint.port)
            .then_some(spare.conn)
    }

    /// A connection attempt that does not hold the context, for connecting to several ports at
    /// once; record its outcome with [`RunContext::record_connect`].
    pub fn connect_job(
        &self,
        endpoint: &Endpoint,
        wait: Duration,
    ) -> impl Future<Output = (StepTimer, Result<Conn, NetError>)> + Send + 'static {
        let slot = self.slot(endpoint.protocol, wait);
        let budgets = self.budgets.clone();
        let endpoint = endpoint.clone();
        async move {
            let timer = StepTimer::start();
            let out = match slot.await {
                Ok(slot) => net::connect(&endpoint, &budgets, Some(slot), wait).await,
                Err(e) => Err(e),
            };
            (timer, out)
        }
    }

    /// Records a connection attempt as the `connect` step, with the peer's address.
    pub fn record_connect(
        &mut self,
        timer: StepTimer,
        endpoint: &Endpoint,
        outcome: &Result<Conn, NetError>,
    ) {
        let mut attrs = BTreeMap::new();
        if let Ok(c) = outcome {
            attrs.insert("network.peer.address".into(), c.peer.ip().to_string());
            attrs.insert("network.peer.port".into(), c.peer.port().to_string());
        }
        self.record_step(timer, "connect", Some(endpoint), outcome, attrs);
    }

    /// Records a TLS handshake as a `tls_handshake` step with its semantic-convention
    /// attributes.
    pub fn record_handshake(
        &mut self,
        timer: StepTimer,
        endpoint: &Endpoint,
        outcome: &Result<Handshake, NetError>,
    ) {
        let mut attrs = BTreeMap::new();
        if let Ok(h) = outcome {
            crate::scope::note(|| {
                format!(
                    "TLS with {}: {} {}, {} certificate(s), {}{}",
                    endpoint.authority(),
                    h.version,
                    h.cipher,
                    h.chain.len(),
                    if h.verified {
                        "verified"
                    } else {
                        "not verified"
                    },
                    h.verify_error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                )
            });
            attrs.insert("tls.protocol.name".into(), "tls".into());
            attrs.insert("tls.protocol.version".into(), h.version.semconv().into());
            attrs.insert("tls.cipher".into(), h.cipher.clone());
            attrs.insert("tls.established".into(), "true".into());
            attrs.insert("tls.resumed".into(), h.resumed.to_string());
            if let Some(leaf) = h.chain.first() {
                self.leaves
                    .entry(endpoint.protocol)
                    .or_insert_with(|| digest(leaf));
            }
        }
        self.record_step(timer, "tls_handshake", Some(endpoint), outcome, attrs);
    }

    /// Whether credentials may be sent to this port: exactly when the profile's client would
    /// connect (its name and trust rules), or, for trust only, when the user allows an insecure
    /// certificate. Returns the reason when they may not.
    pub fn credentials_allowed(&self, handshake: &Handshake) -> Result<(), String> {
        let name_refused = handshake
            .verify_error
            .as_deref()
            .is_some_and(crate::tls::is_name_refusal);
        if name_refused {
            // An insecure certificate allowed relaxes trust only, never the name.
            Err(format!(
                "the CRM's client would not connect: {}; the password was not sent",
                handshake.verify_error.as_deref().unwrap_or_default()
            ))
        } else if handshake.verified || self.target.allow_insecure_cert {
            Ok(())
        } else {
            Err(format!(
                "the certificate was not accepted ({}), and sending the password to an unverified server is not allowed; fix the certificate or set allow_insecure_cert / --allow-insecure-cert",
                handshake.verify_error.as_deref().unwrap_or("not verified")
            ))
        }
    }

    /// The certificate requirement that keeps the password back for `handshake`: the name when
    /// the client refuses the name, else the trust.
    pub fn gate_requirement(&self, protocol: Protocol, handshake: &Handshake) -> String {
        let name = handshake
            .verify_error
            .as_deref()
            .is_some_and(crate::tls::is_name_refusal);
        protocol.requirement(if name {
            "certificate.name"
        } else {
            "certificate.trust"
        })
    }

    /// A digest of the leaf certificate the port's first handshake of this run saw, to tell
    /// whether the server's certificate changed since an earlier run (not a security check:
    /// the certificate plugin judges the chain).
    pub fn first_leaf(&self, protocol: Protocol) -> Option<u64> {
        self.leaves.get(&protocol).copied()
    }

    // ---- for the runner (through `RunDriver` only) ----

    /// Attributes the steps recorded from now on to `plugin`.
    pub(crate) fn set_current_plugin(&mut self, plugin: &str) {
        self.current_plugin = plugin.to_string();
    }

    /// Records how a plugin ran, for its span.
    pub(crate) fn push_plugin_run(&mut self, run: PluginRun) {
        self.plugin_runs.push(run);
    }

    /// How every plugin ran, taken out of the context.
    pub(crate) fn take_plugin_runs(&mut self) -> Vec<PluginRun> {
        std::mem::take(&mut self.plugin_runs)
    }

    /// Every result, taken out of the context.
    pub(crate) fn take_results(&mut self) -> Vec<RequirementResult> {
        std::mem::take(&mut self.results)
    }

    /// Every step, taken out of the context.
    pub(crate) fn take_steps(&mut self) -> Vec<Step> {
        std::mem::take(&mut self.steps)
    }
}

/// A `fail` or `warn` whose error is the probe's connection budget becomes `not_verified`,
/// keeping its evidence and remedy.
fn own_limit_is_not_a_verdict(result: RequirementResult) -> RequirementResult {
    let budget = result.error_type() == Some(ErrorType::ConnectionBudget.as_str());
    if !budget || !matches!(result.status, Status::Fail | Status::Warn) {
        return result;
    }
    let mut unverified =
        RequirementResult::not_verified(&result.id, format!("not verified: {}", result.summary));
    for (k, v) in result.evidence {
        unverified.evidence.entry(k).or_insert(v);
    }
    unverified.remedy = result.remedy;
    unverified.typed.error_type = result.typed.error_type;
    unverified
}

/// A finished step as a transcript line: its name, server, outcome and attributes.
fn transcript_line(step: &Step, endpoint: Option<&Endpoint>) -> String {
    let server = endpoint
        .map(|e| format!(" {}", e.authority()))
        .unwrap_or_default();
    let outcome = match &step.error {
        Some(e) => format!("failed: {e}"),
        None => "ok".to_string(),
    };
    let attrs: Vec<String> = step
        .attributes
        .iter()
        .filter(|(k, _)| !k.starts_with("server."))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let attrs = if attrs.is_empty() {
        String::new()
    } else {
        format!(" ({})", attrs.join(", "))
    };
    format!(
        "{} {}{server}: {outcome} in {} ms{attrs}",
        step.plugin,
        step.name,
        step.duration.as_millis()
    )
}

fn digest(der: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    der.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::Trust;

    #[tokio::test(start_paused = true)]
    async fn the_wait_for_a_busy_servers_connections_does_not_eat_the_deadline() {
        let mut target = crate::model::tests::target();
        target.imap.connect_to = Some("192.0.2.1".into());
        let target = Arc::new(target);
        let budgets = Arc::new(Budgets::new(4));
        // Another run holds every connection of the server for 8 s of a 10 s timeout.
        let key = net::ServerKey::resolve(&target.imap, Duration::from_secs(1)).await;
        let held = budgets
            .acquire(&key, 4, Duration::from_secs(1))
            .await
            .unwrap();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(8)).await;
            drop(held);
        });
        let mut cx = RunContext::new(target.clone(), Trust::load(None).unwrap(), budgets);
        cx.reserve_slots().await;
        assert!(
            cx.reserved(Protocol::Imap) > 0,
            "the share was taken after the queue"
        );
        // The check still has its whole timeout.
        assert_eq!(cx.remaining(), target.timeout);
    }

    #[tokio::test]
    async fn a_fresh_handed_on_connection_is_taken_once_instead_of_a_new_one() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut target = crate::model::tests::target();
        target.imap.port = listener.local_addr().unwrap().port();
        target.imap.connect_to = Some("127.0.0.1".into());
        let budgets = Arc::new(Budgets::new(4));
        let mut cx = RunContext::new(Arc::new(target), Trust::load(None).unwrap(), budgets);
        cx.reserve_slots().await;
        let ep = cx.target.imap.clone();
        let first = cx.connect(&ep).await.unwrap();
        let local = first.local;
        cx.hand_on(Protocol::Imap, first);
        let taken = cx.connect(&ep).await.unwrap();
        assert_eq!(taken.local, local, "the handed-on connection");
        let step = cx.steps().last().unwrap();
        assert_eq!(step.name, "connect");
        assert_eq!(
            step.attributes.get("mailprobe.connection.handed_on"),
            Some(&"true".to_string())
        );
        // Taken once: the next connect dials.
        let next = cx.connect(&ep).await.unwrap();
        assert_ne!(next.local, local);
    }

    #[tokio::test(start_paused = true)]
    async fn no_slot_is_not_verified_never_fail() {
        let mut target = crate::model::tests::target();
        target.imap.connect_to = Some("192.0.2.1".into());
        let target = Arc::new(target);
        let budgets = Arc::new(Budgets::new(4));
        let key = net::ServerKey::resolve(&target.imap, Duration::from_secs(1)).await;
        let _all = budgets
            .acquire(&key, 4, Duration::from_secs(1))
            .await
            .unwrap();
        let mut cx = RunContext::new(target.clone(), Trust::load(None).unwrap(), budgets);
        cx.reserve_slots().await;
        assert_eq!(cx.reserved(Protocol::Imap), 0);
        let ep = target.imap.clone();
        let e = cx.connect(&ep).await.unwrap_err();
        assert_eq!(e.error_type(), "connection_budget");
        cx.report(RequirementResult::fail("imap.reachable", e.to_string(), "wait").with_error(&e));
        let r = cx.result("imap.reachable").unwrap();
        assert_eq!(r.status, Status::Skip);
        assert_eq!(
            r.skip_reason(),
            Some(crate::requirement::SkipReason::NotVerified)
        );
        assert_eq!(r.error_type(), Some("connection_budget"));
    }

    #[tokio::test(start_paused = true)]
    async fn two_users_on_one_server_run_at_once() {
        let budgets = Arc::new(Budgets::new(8));
        let mut contexts = Vec::new();
        for user in ["alice", "bob"] {
            let mut target = crate::model::tests::target();
            target.imap.connect_to = Some("192.0.2.1".into());
            target.user = user.into();
            let mut cx = RunContext::new(
                Arc::new(target),
                Trust::load(None).unwrap(),
                budgets.clone(),
            );
            cx.reserve_slots().await;
            contexts.push(cx);
        }
        // Both hold their whole share at once, without waiting.
        assert!(contexts.iter().all(|cx| cx.reserved(Protocol::Imap) == 3));
        assert!(
            contexts
                .iter()
                .all(|cx| cx.remaining() == Duration::from_secs(10))
        );
    }
}
