//! The run context: what one mailbox run has learned so far, shared by the plugins so that a TLS
//! handshake or a logged-in session is not repeated by every plugin that needs its facts.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::NetError;
use crate::model::{Endpoint, Protocol, Security, Target};
use crate::net::{self, Budgets, Conn};
use crate::profile::TlsVersion;
use crate::requirement::{self, RequirementResult, Status};
use crate::session::{MailSession, OpenParams, SessionOpener};
use crate::starttls;
pub use crate::tls::Handshake;
use crate::tls::{self, Trust};

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

/// How a plugin ran, for the plugin's span.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PluginRun {
    pub plugin: String,
    #[serde(with = "system_time_ms")]
    pub start: SystemTime,
    pub duration: Duration,
    pub error: Option<String>,
}

/// Reachability of one port.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reach {
    pub address: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
    pub error: Option<NetErrorView>,
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
    pub fn at(mut self, step: &str) -> Self {
        self.step = Some(step.to_string());
        self
    }
}

/// What the IMAP plugin learned that others use.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ImapFacts {
    /// "Dovecot", "Courier-IMAP", ... when identified.
    pub software: Option<String>,
    /// Folders besides INBOX and Sent; decides whether the CRM needs a third IMAP connection.
    pub other_folders: Option<u32>,
}

/// Facts shared between plugins.
#[derive(Debug, Default, Serialize)]
pub struct Facts {
    pub reach: BTreeMap<Protocol, Reach>,
    /// The first TLS handshake made to each port, successful or not.
    pub handshake: BTreeMap<Protocol, Result<Handshake, NetErrorView>>,
    /// The TLS versions each port accepts (filled by the `tls` plugin).
    pub tls_versions: BTreeMap<Protocol, BTreeMap<TlsVersion, bool>>,
    /// A chain read in clear from a TLS ≤1.2 probe, for servers rustls cannot talk to.
    #[serde(skip)]
    pub legacy_chain: BTreeMap<Protocol, Vec<Vec<u8>>>,
    pub imap: ImapFacts,
    /// Free-form facts from dynamic plugins, by plugin name.
    pub extra: BTreeMap<String, serde_json::Value>,
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
    _global: Option<tokio::sync::OwnedSemaphorePermit>,
}

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
    pub facts: Facts,
    pub held: Vec<HeldSession>,
    /// How to open more sessions like the plugins' own, by protocol (the IMAP and SMTP plugins
    /// put theirs here for the connection-limit check).
    pub openers: BTreeMap<Protocol, Arc<dyn SessionOpener>>,
    results: Vec<RequirementResult>,
    steps: Vec<Step>,
    pub(crate) plugin_runs: Vec<PluginRun>,
    pub(crate) current_plugin: String,
}

impl RunContext {
    pub fn new(target: Arc<Target>, trust: Trust, budgets: Arc<Budgets>) -> Self {
        let deadline = Instant::now() + target.timeout;
        RunContext {
            target,
            trust,
            budgets,
            slots: BTreeMap::new(),
            deadline,
            facts: Facts::default(),
            held: Vec::new(),
            openers: BTreeMap::new(),
            results: Vec::new(),
            steps: Vec::new(),
            plugin_runs: Vec::new(),
            current_plugin: String::new(),
        }
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
    /// profile's client holds at once to that port, capped by the budget.
    pub async fn reserve_slots(&mut self) {
        let endpoints: Vec<Endpoint> = self.target.endpoints().cloned().collect();
        for ep in endpoints {
            let rules = &self.target.profile.connections;
            let want = match ep.protocol {
                Protocol::Imap => rules.imap_with_other_folders.max(rules.imap),
                Protocol::Smtp => rules.smtp,
            }
            .max(1) as usize;
            let n = want.min(self.budgets.per_server());
            let wait = self.remaining();
            let global = self.budgets.acquire(&ep, n as u32, wait).await;
            self.slots.insert(
                ep.protocol,
                Reservation {
                    size: if global.is_ok() { n } else { 0 },
                    local: Arc::new(tokio::sync::Semaphore::new(if global.is_ok() {
                        n
                    } else {
                        0
                    })),
                    _global: global.ok(),
                },
            );
        }
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

    /// What a [`SessionOpener`] needs to open a session for this run.
    pub fn open_params(&self) -> OpenParams {
        OpenParams {
            target: self.target.clone(),
            trust: self.trust.clone(),
            budgets: self.budgets.clone(),
            wait: self.io_timeout(),
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

    /// Records a requirement result. A second result for the same ID replaces the first.
    pub fn report(&mut self, result: RequirementResult) {
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

    /// The first prerequisite of `id` that failed or was skipped, if any. Prerequisites on a
    /// protocol that is not configured (SMTP without `--smtp`) do not block.
    pub fn blocked_by(&self, id: &str) -> Option<String> {
        let info = requirement::info(id)?;
        info.prerequisites
            .iter()
            .filter(|p| !(p.starts_with("smtp.") && self.target.smtp.is_none()))
            .find(|p| matches!(self.status(p), Some(Status::Fail | Status::Skip)))
            .map(|p| p.to_string())
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
    pub async fn connect(&mut self, endpoint: &Endpoint) -> Result<Conn, NetError> {
        let timer = StepTimer::start();
        let wait = self.remaining();
        let out = match self.slot(endpoint.protocol, wait).await {
            Ok(slot) => net::connect(endpoint, &self.budgets, Some(slot), wait).await,
            Err(e) => Err(e),
        };
        let mut attrs = BTreeMap::new();
        if let Ok(c) = &out {
            attrs.insert("network.peer.address".into(), c.peer.ip().to_string());
            attrs.insert("network.peer.port".into(), c.peer.port().to_string());
        }
        self.record_step(timer, "connect", Some(endpoint), &out, attrs);
        out
    }

    /// Records a TLS handshake's facts as a `tls_handshake` step, and keeps the first one per
    /// protocol for the plugins that need it.
    pub fn note_handshake(
        &mut self,
        timer: StepTimer,
        endpoint: &Endpoint,
        outcome: &Result<Handshake, NetError>,
    ) {
        let mut attrs = BTreeMap::new();
        if let Ok(h) = outcome {
            attrs.insert("tls.protocol.name".into(), "tls".into());
            attrs.insert("tls.protocol.version".into(), h.version.semconv().into());
            attrs.insert("tls.cipher".into(), h.cipher.clone());
            attrs.insert("tls.established".into(), "true".into());
        }
        self.record_step(timer, "tls_handshake", Some(endpoint), outcome, attrs);
        self.facts
            .handshake
            .entry(endpoint.protocol)
            .or_insert_with(|| match outcome {
                Ok(h) => Ok(h.clone()),
                Err(e) => Err(NetErrorView::from(e).at("tls_handshake")),
            });
    }

    /// The TLS handshake with a port, made once per run and shared: implicit TLS or STARTTLS as
    /// the endpoint says. Returns the first handshake's outcome.
    pub async fn tls_handshake(&mut self, protocol: Protocol) -> Result<Handshake, NetErrorView> {
        if let Some(h) = self.facts.handshake.get(&protocol) {
            return h.clone();
        }
        let Some(endpoint) = self.target.endpoint(protocol).cloned() else {
            return Err(NetErrorView {
                error_type: "not_configured".into(),
                message: format!("no {protocol} server configured"),
                step: None,
            });
        };
        let conn = match self.connect(&endpoint).await {
            Ok(c) => c,
            Err(e) => {
                let view = NetErrorView::from(&e).at("connect");
                self.facts.handshake.insert(protocol, Err(view.clone()));
                return Err(view);
            }
        };
        let conn = if endpoint.security == Security::Starttls {
            let wait = self.io_timeout();
            let pre = match protocol {
                Protocol::Imap => {
                    self.step("starttls", Some(&endpoint), async {
                        starttls::imap_starttls(conn, wait).await.map(|(s, _)| s)
                    })
                    .await
                }
                Protocol::Smtp => {
                    let name = starttls::ehlo_name();
                    self.step("starttls", Some(&endpoint), async {
                        starttls::smtp_starttls(conn, &name, wait)
                            .await
                            .map(|(s, _)| s)
                    })
                    .await
                }
            };
            match pre {
                Ok(c) => c,
                Err(e) => {
                    let view = NetErrorView::from(&e).at("starttls");
                    self.facts.handshake.insert(protocol, Err(view.clone()));
                    return Err(view);
                }
            }
        } else {
            conn
        };
        let timer = StepTimer::start();
        let out = tls::handshake(conn, &endpoint.host, &self.trust, self.io_timeout())
            .await
            .map(|(_stream, h)| h);
        self.note_handshake(timer, &endpoint, &out);
        self.facts
            .handshake
            .get(&protocol)
            .cloned()
            .unwrap_or_else(|| Err(NetErrorView::from(&NetError::Io("no handshake".into()))))
    }

    /// Whether credentials may be sent to this port: only over a TLS session whose certificate a
    /// strict client accepts, or when the user allows an insecure certificate. Returns the reason
    /// when they may not.
    pub fn credentials_allowed(&self, handshake: &Handshake) -> Result<(), String> {
        if handshake.verified || self.target.allow_insecure_cert {
            Ok(())
        } else {
            Err(format!(
                "the certificate was not accepted ({}), and sending the password to an unverified server is not allowed; fix the certificate or set allow_insecure_cert / --allow-insecure-cert",
                handshake.verify_error.as_deref().unwrap_or("not verified")
            ))
        }
    }

    pub(crate) fn take_results(&mut self) -> Vec<RequirementResult> {
        std::mem::take(&mut self.results)
    }

    pub(crate) fn take_steps(&mut self) -> Vec<Step> {
        std::mem::take(&mut self.steps)
    }
}
