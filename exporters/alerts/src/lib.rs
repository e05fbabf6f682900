//! mailprobe's alerts, on compliance transitions (see `mailprobe_telemetry::transition`):
//!
//! - **Alertmanager** (`alerts.alertmanager`): one alert `MailboxNonCompliant` per failing
//!   requirement of a mailbox whose alert fired, labels `mailbox` and `requirement`,
//!   annotations `summary`, `remedy` and `description`. While it keeps failing, every run
//!   re-posts it with `endsAt` = now + 4 × max(interval, 1 min), so Alertmanager never times it
//!   out while the probe runs; a requirement that stops failing, or the mailbox's recovery,
//!   posts `endsAt` = now (resolved).
//! - **`MailboxCheckIncomplete`**: one alert per mailbox (labels `mailbox`), fired after
//!   `alert_after` incomplete runs in a row, re-posted like the above while it lasts, resolved
//!   by the first run that is judged again. An incomplete run neither fires nor resolves
//!   `MailboxNonCompliant`: an alert already active is re-posted unchanged.
//! - **Webhook** (`alerts.webhook`): the JSON report of the run that fired or resolved either.
//!
//! Delivery happens in background tasks, with retries and backoff; failures are counted
//! (`mailprobe_alert_delivery_failures_total{receiver}`) and never stop the probe.
#![forbid(unsafe_code)]

pub mod alertmanager;
mod http;
pub mod webhook;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hyper::Uri;
use mailprobe_core::requirement::Verdict;
use mailprobe_runtime::config::AlertsConfig;
use mailprobe_telemetry::transition::Failing;
use mailprobe_telemetry::{BoxFuture, ProbeStats, RunEvent, RunSink, Transition, names};
use tokio::sync::{mpsc, watch};

use alertmanager::{PostableAlert, rfc3339};

/// A bad receiver URL (reported at start-up as a configuration error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn parse_url(field: &str, url: &str) -> Result<Uri, ConfigError> {
    let shown = mailprobe_telemetry::urls::shown(url);
    let uri: Uri = url
        .parse()
        .map_err(|e| ConfigError(format!("alerts.{field} `{shown}` is not a URL: {e}")))?;
    match uri.scheme_str() {
        Some("http") | Some("https") if uri.host().is_some() => {
            if mailprobe_telemetry::urls::plain_to_another_host(url) {
                tracing::warn!(
                    url = %shown,
                    "alerts.{field} sends mailbox reports in clear text to another host; use https://"
                );
            }
            Ok(uri)
        }
        _ => Err(ConfigError(format!(
            "alerts.{field} `{shown}` must be an http:// or https:// URL (e.g. http://127.0.0.1:9093)"
        ))),
    }
}

/// The Alertmanager API URL from its base URL.
pub fn alertmanager_url(base: &str) -> Result<Uri, ConfigError> {
    parse_url(
        "alertmanager",
        &format!("{}/api/v2/alerts", base.trim().trim_end_matches('/')),
    )
}

/// How long an alert stays active in Alertmanager without a re-post.
pub fn alert_ttl(interval: Duration) -> Duration {
    interval.max(Duration::from_secs(60)) * 4
}

/// What is posted for one mailbox while its alert is active.
#[derive(Debug, Default)]
struct Active {
    /// Requirement ID → when its alert started.
    started: BTreeMap<String, SystemTime>,
    /// Requirement ID → what it said when last judged (re-posted as is by an incomplete run).
    last: BTreeMap<String, Failing>,
}

pub struct AlertsExporter {
    am: Option<Arc<alertmanager::Sync>>,
    webhook: Option<mpsc::Sender<webhook::Notification>>,
    active: Mutex<HashMap<String, Active>>,
    ttl: Duration,
    stats: Arc<ProbeStats>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl AlertsExporter {
    /// Starts the delivery tasks (inside the tokio runtime). `interval` is the check interval.
    pub fn start(
        config: &AlertsConfig,
        interval: Duration,
        stats: Arc<ProbeStats>,
    ) -> Result<AlertsExporter, ConfigError> {
        let am_url = config
            .alertmanager
            .as_deref()
            .map(alertmanager_url)
            .transpose()?;
        let hook_url = config
            .webhook
            .as_deref()
            .map(|u| parse_url("webhook", u.trim()))
            .transpose()?;
        let client = http::JsonClient::new(Duration::from_secs(5));
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let am = am_url.map(|url| {
            let sync = alertmanager::Sync::new();
            tasks.push(tokio::spawn(alertmanager::worker(
                sync.clone(),
                url,
                client.clone(),
                stats.clone(),
                stop_rx.clone(),
            )));
            sync
        });
        let webhook = hook_url.map(|url| {
            let (tx, rx) = mpsc::channel(webhook::QUEUE);
            tasks.push(tokio::spawn(webhook::worker(
                rx,
                url,
                client.clone(),
                stats.clone(),
                stop_rx.clone(),
            )));
            tx
        });
        Ok(AlertsExporter {
            am,
            webhook,
            active: Mutex::new(HashMap::new()),
            ttl: alert_ttl(interval),
            stats,
            stop,
            tasks: Mutex::new(tasks),
        })
    }

    /// Alerts waiting for Alertmanager (for tests and debugging).
    pub fn pending(&self) -> usize {
        self.am.as_ref().map_or(0, |s| s.pending())
    }
}

/// The mailbox-wide `MailboxCheckIncomplete` alert.
fn incomplete_alert(
    mailbox: &str,
    not_verified: &[Failing],
    starts: SystemTime,
    ends: SystemTime,
) -> PostableAlert {
    let mut labels = BTreeMap::new();
    labels.insert(
        "alertname".to_string(),
        names::ALERT_NAME_INCOMPLETE.to_string(),
    );
    labels.insert("mailbox".to_string(), mailbox.to_string());
    let items: Vec<String> = not_verified
        .iter()
        .map(|f| format!("{}: {}", f.id, f.summary))
        .collect();
    let mut annotations = BTreeMap::new();
    let summary = if items.is_empty() {
        "the mailbox is checked again".to_string()
    } else {
        format!("not verified: {}", items.join("; "))
    };
    annotations.insert("summary".to_string(), summary.clone());
    annotations.insert(
        "description".to_string(),
        format!("mailprobe cannot vouch for mailbox {mailbox}: {summary}"),
    );
    PostableAlert {
        labels,
        annotations,
        starts_at: rfc3339(starts),
        ends_at: rfc3339(ends),
    }
}

fn alert(mailbox: &str, f: &Failing, starts: SystemTime, ends: SystemTime) -> PostableAlert {
    let mut labels = BTreeMap::new();
    labels.insert("alertname".to_string(), names::ALERT_NAME.to_string());
    labels.insert("mailbox".to_string(), mailbox.to_string());
    labels.insert("requirement".to_string(), f.id.clone());
    let mut annotations = BTreeMap::new();
    annotations.insert("summary".to_string(), f.summary.clone());
    if let Some(r) = &f.remedy {
        annotations.insert("remedy".to_string(), r.clone());
    }
    annotations.insert(
        "description".to_string(),
        format!(
            "Mailbox {mailbox} does not meet requirement {}: {}",
            f.id, f.summary
        ),
    );
    PostableAlert {
        labels,
        annotations,
        starts_at: rfc3339(starts),
        ends_at: rfc3339(ends),
    }
}

impl AlertsExporter {
    /// The alerts that end a removed mailbox's active alert now, rather than at its `endsAt`:
    /// a mailbox no longer checked has nothing left to vouch for.
    fn resolve_removed(&self, mailbox: &str, now: SystemTime) -> Vec<PostableAlert> {
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = active.remove(mailbox) else {
            return Vec::new();
        };
        entry
            .started
            .into_iter()
            .map(|(id, start)| {
                let f = Failing {
                    id,
                    summary: "resolved: the mailbox was removed from the configuration".into(),
                    remedy: None,
                };
                alert(mailbox, &f, start, now)
            })
            .collect()
    }

    /// The Alertmanager alerts one run calls for.
    fn alerts_for(&self, event: &RunEvent<'_>, now: SystemTime) -> Vec<PostableAlert> {
        let c = event.compliance;
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        if c.firing && c.verdict == Verdict::Incomplete {
            // No judgement this run: keep what is active alive, unchanged.
            if let Some(entry) = active.get(&c.mailbox) {
                for (id, start) in &entry.started {
                    if let Some(f) = entry.last.get(id) {
                        out.push(alert(&c.mailbox, f, *start, now + self.ttl));
                    }
                }
            }
        } else if c.firing {
            let entry = active.entry(c.mailbox.clone()).or_default();
            let since = c.firing_since.unwrap_or(now);
            // Requirements that no longer fail: resolved now.
            let gone: Vec<String> = entry
                .started
                .keys()
                .filter(|id| !c.failing.iter().any(|f| &f.id == *id))
                .cloned()
                .collect();
            for id in gone {
                entry.last.remove(&id);
                if let Some(start) = entry.started.remove(&id) {
                    let f = Failing {
                        id,
                        summary: "no longer failing".into(),
                        remedy: None,
                    };
                    out.push(alert(&c.mailbox, &f, start, now));
                }
            }
            for f in &c.failing {
                let start = *entry
                    .started
                    .entry(f.id.clone())
                    .or_insert(if c.transition.is_some() { since } else { now });
                entry.last.insert(f.id.clone(), f.clone());
                out.push(alert(&c.mailbox, f, start, now + self.ttl));
            }
        } else if c.verdict != Verdict::Incomplete
            && let Some(entry) = active.remove(&c.mailbox)
        {
            for (id, start) in entry.started {
                let f = Failing {
                    id,
                    summary: "resolved: the mailbox is compliant".into(),
                    remedy: None,
                };
                out.push(alert(&c.mailbox, &f, start, now));
            }
        }
        let since = c.incomplete_since.unwrap_or(now);
        if c.incomplete_firing {
            out.push(incomplete_alert(
                &c.mailbox,
                &c.not_verified,
                since,
                now + self.ttl,
            ));
        } else if c.incomplete_transition == Some(Transition::Resolved) {
            out.push(incomplete_alert(&c.mailbox, &[], since, now));
        }
        out
    }
}

impl RunSink for AlertsExporter {
    fn name(&self) -> &'static str {
        "alerts"
    }

    fn on_run(&self, event: &RunEvent<'_>) {
        let now = SystemTime::now();
        if let Some(am) = &self.am {
            am.push(self.alerts_for(event, now));
        }
        let Some(tx) = &self.webhook else { return };
        let c = event.compliance;
        let transitions = [
            (names::ALERT_NAME, c.transition),
            (names::ALERT_NAME_INCOMPLETE, c.incomplete_transition),
        ];
        for (alert, t) in transitions {
            let Some(t) = t else { continue };
            let body = serde_json::to_vec(&event.outcome.report).unwrap_or_default();
            if tx.try_send((alert, t.as_str(), body)).is_err() {
                self.stats.add(
                    names::ALERT_NOTIFICATIONS_DROPPED,
                    &[("receiver", "webhook")],
                    1,
                );
            }
        }
    }

    fn forget(&self, mailbox: &str) {
        let resolved = self.resolve_removed(mailbox, SystemTime::now());
        if let Some(am) = &self.am
            && !resolved.is_empty()
        {
            am.push(resolved);
        }
    }

    fn shutdown(&self, within: Duration) -> BoxFuture<'_, ()> {
        let _ = self.stop.send(true);
        let tasks: Vec<_> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + within;
            for mut t in tasks {
                if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                    t.abort();
                }
            }
        })
    }
}

#[cfg(test)]
mod tests;
