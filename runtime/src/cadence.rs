//! A cadence per requirement group (the daemon only): what rarely changes — the TLS versions a
//! port accepts, its certificate, the connection limit — need not be re-proved every interval.
//! Within its cadence, a group's plugin is not run: its last proof is reported again, each
//! result carrying `proved_at` (RFC 3339, when the proof was made). The plugin runs again, and
//! its results become the new proof, when
//!
//! - the proof is as old as the cadence (a verdict never rests on an older proof);
//! - the run's own sessions saw another server: a different leaf certificate in a port's first
//!   handshake, or a different IMAP or SMTP greeting, than the run that made the proof;
//! - the mailbox's settings changed (servers, ports, profile), or a requirement of the group
//!   is behind a failure in this run (the plugin itself then says why);
//! - the proof was not definitive (a requirement could not be verified).
//!
//! `check` never uses it: it always proves everything. A check of several addresses neither.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use mailprobe_core::context::RunContext;
use mailprobe_core::model::{Protocol, Target};
use mailprobe_core::plugin::{BoxFuture, CheckPlugin, PluginError, PluginInfo, Selection};
use mailprobe_core::redact::Redactor;
use mailprobe_core::requirement::{RequirementResult, SkipReason, Status};

/// The evidence key of a result that rests on an earlier run's proof.
pub const PROVED_AT: &str = "proved_at";

/// The longest cadence accepted.
pub const MAX_CADENCE: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long each group's proof holds (`cadence:` in the configuration). Absent or `0`: proved
/// on every run, as `check` does.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cadence {
    /// `*.tls_versions` (the `tls` plugin's version probes).
    #[serde(default, deserialize_with = "crate::config::opt_duration")]
    pub tls_versions: Option<Duration>,
    /// `*.certificate.name`, `.trust`, `.expiry` (the `certificate` plugin).
    #[serde(default, deserialize_with = "crate::config::opt_duration")]
    pub certificate: Option<Duration>,
    /// `connections.concurrent` (the `connlimit` plugin's extra sessions).
    #[serde(default, deserialize_with = "crate::config::opt_duration")]
    pub connections: Option<Duration>,
}

impl Cadence {
    /// Each group's plugin and cadence, for the groups with one.
    pub fn groups(&self) -> Vec<(&'static str, Duration)> {
        [
            ("tls", self.tls_versions),
            ("certificate", self.certificate),
            ("connlimit", self.connections),
        ]
        .into_iter()
        .filter_map(|(plugin, d)| d.filter(|d| !d.is_zero()).map(|d| (plugin, d)))
        .collect()
    }

    /// What is wrong with it, naming the key and the fix.
    pub fn problem(&self) -> Option<String> {
        let keys = [
            ("tls_versions", self.tls_versions),
            ("certificate", self.certificate),
            ("connections", self.connections),
        ];
        keys.into_iter().find_map(|(k, d)| {
            d.filter(|d| *d > MAX_CADENCE).map(|_| {
                format!(
                    "cadence.{k} is longer than 7d; set it to at most 7d (0 proves it on every run)"
                )
            })
        })
    }
}

/// The server a proof was made against, as the run's own sessions saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Identity {
    /// The mailbox's servers, ports and profile.
    settings: String,
    /// Digests of each port's first leaf certificate.
    leaves: Vec<(Protocol, Option<u64>)>,
    /// The IMAP and SMTP greetings.
    greetings: Vec<Option<String>>,
}

impl Identity {
    fn of(cx: &RunContext) -> Identity {
        let greeting = |id: &str| {
            cx.result(id)
                .and_then(|r| r.evidence.get("greeting"))
                .and_then(|g| g.as_str())
                .map(str::to_string)
        };
        Identity {
            settings: settings(&cx.target),
            leaves: [Protocol::Imap, Protocol::Smtp]
                .into_iter()
                .map(|p| (p, cx.first_leaf(p)))
                .collect(),
            greetings: vec![greeting("imap.encryption"), greeting("smtp.encryption")],
        }
    }
}

fn settings(t: &Target) -> String {
    let endpoints: Vec<String> = t
        .endpoints()
        .map(|e| format!("{:?}:{}:{}:{:?}", e.protocol, e.host, e.port, e.security))
        .collect();
    format!(
        "{}|{}|{}",
        t.profile.name,
        endpoints.join(","),
        t.allow_insecure_cert
    )
}

/// One group's last proof.
#[derive(Clone, Debug)]
struct Proof {
    at: SystemTime,
    identity: Identity,
    results: Vec<RequirementResult>,
}

/// The daemon's proofs, by mailbox and plugin (in memory: a restart proves everything again).
#[derive(Debug, Default)]
pub struct ProofStore {
    proofs: Mutex<HashMap<String, HashMap<&'static str, Proof>>>,
}

impl ProofStore {
    pub fn new() -> Arc<ProofStore> {
        Arc::new(ProofStore::default())
    }

    fn get(&self, mailbox: &str, plugin: &str) -> Option<Proof> {
        let all = self.proofs.lock().unwrap_or_else(|e| e.into_inner());
        all.get(mailbox)?.get(plugin).cloned()
    }

    fn put(&self, mailbox: &str, plugin: &'static str, proof: Option<Proof>) {
        let mut all = self.proofs.lock().unwrap_or_else(|e| e.into_inner());
        match proof {
            Some(p) => {
                all.entry(mailbox.to_string())
                    .or_default()
                    .insert(plugin, p);
            }
            None => {
                if let Some(m) = all.get_mut(mailbox) {
                    m.remove(plugin);
                }
            }
        }
    }

    /// Forgets the proofs of mailboxes `keep` refuses (removed from the configuration).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut all = self.proofs.lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|m, _| keep(m));
    }
}

/// The cadence and where the proofs are kept, for [`crate::runner::RunOptions`].
#[derive(Clone, Debug)]
pub struct CadenceOptions {
    pub cadence: Cadence,
    pub store: Arc<ProofStore>,
}

impl CadenceOptions {
    /// `plugins` with each plugin of a group that has a cadence wrapped so that it reports its
    /// fresh proof instead of running (see the module's documentation).
    pub fn wrap(&self, target: &Target, plugins: &Selection) -> Selection {
        let groups = self.cadence.groups();
        plugins.map_plugins(
            |p, info| match groups.iter().find(|(name, _)| *name == info.name) {
                Some((name, every)) => Arc::new(Cadenced {
                    inner: p.clone(),
                    name,
                    every: *every,
                    mailbox: target.mailbox.clone(),
                    store: self.store.clone(),
                }) as Arc<dyn CheckPlugin>,
                None => p.clone(),
            },
        )
    }
}

/// A plugin that reports its fresh proof instead of running.
struct Cadenced {
    inner: Arc<dyn CheckPlugin>,
    name: &'static str,
    every: Duration,
    mailbox: String,
    store: Arc<ProofStore>,
}

impl Cadenced {
    /// The proof this run may rest on, if any.
    fn fresh(&self, cx: &RunContext, ids: &[String]) -> Option<Proof> {
        let proof = self.store.get(&self.mailbox, self.name)?;
        let age = SystemTime::now().duration_since(proof.at).ok()?;
        let usable = age < self.every
            && proof.identity == Identity::of(cx)
            && ids.iter().all(|id| cx.blocked_by(id).is_none());
        usable.then_some(proof)
    }
}

/// Whether a result can be a proof: it says something about the server, rather than that the
/// probe could not look.
fn definitive(r: &RequirementResult) -> bool {
    r.status != Status::Skip || r.skip_reason() == Some(SkipReason::NotConfigured)
}

impl CheckPlugin for Cadenced {
    fn info(&self) -> PluginInfo {
        self.inner.info()
    }

    fn run<'a>(&'a self, cx: &'a mut RunContext) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(async move {
            let ids = self.inner.info().requirements;
            if let Some(proof) = self.fresh(cx, &ids) {
                let at = rfc3339(proof.at);
                mailprobe_core::scope::note(|| {
                    format!(
                        "{}: not run; its proof of {at} holds for {}",
                        self.name,
                        humantime::format_duration(self.every)
                    )
                });
                for r in proof.results {
                    cx.report(r.with(PROVED_AT, at.clone()));
                }
                return Ok(());
            }
            let identity = Identity::of(cx);
            let at = SystemTime::now();
            let out = self.inner.run(cx).await;
            let mut results: Vec<RequirementResult> =
                ids.iter().filter_map(|id| cx.result(id).cloned()).collect();
            let proof = (out.is_ok() && !results.is_empty() && results.iter().all(definitive))
                .then(|| {
                    let redactor = Redactor::new(cx.target.password.expose());
                    crate::runner::sanitize(&redactor, &mut results, &mut [], &mut []);
                    Proof {
                        at,
                        identity,
                        results,
                    }
                });
            self.store.put(&self.mailbox, self.name, proof);
            out
        })
    }
}

/// A time as RFC 3339 (UTC, seconds).
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn parse(cadence: &str) -> Result<Config, String> {
        let text = format!(
            "{cadence}mailboxes:\n  - name: sales\n    imap: imap.example.com:993\n    user: u\n    password: {{ env: P }}\n"
        );
        Config::parse(&text, "c.yaml").map_err(|e| e.to_string())
    }

    #[test]
    fn absent_proves_everything_on_every_run() {
        let c = parse("").unwrap();
        assert_eq!(c.cadence, Cadence::default());
        assert!(c.cadence.groups().is_empty());
        let c = parse("cadence: { tls_versions: 0 }\n").unwrap();
        assert!(c.cadence.groups().is_empty());
    }

    #[test]
    fn each_group_names_its_plugin() {
        let c =
            parse("cadence:\n  tls_versions: 6h\n  certificate: 1h\n  connections: 90\n").unwrap();
        assert_eq!(
            c.cadence.groups(),
            vec![
                ("tls", Duration::from_secs(6 * 3600)),
                ("certificate", Duration::from_secs(3600)),
                ("connlimit", Duration::from_secs(90)),
            ]
        );
    }

    #[test]
    fn too_long_or_unknown_is_refused_with_the_key() {
        let e = parse("cadence: { certificate: 8d }\n").unwrap_err();
        assert!(e.contains("cadence.certificate") && e.contains("7d"), "{e}");
        let e = parse("cadence: { server_software: 1h }\n").unwrap_err();
        assert!(e.contains("server_software"), "{e}");
    }
}
