//! Alertmanager: the alerts the probe wants Alertmanager to hold, synchronised by a worker.
//!
//! Alerts are not queued as events. The exporter keeps, per (mailbox, requirement), the latest
//! alert it wants posted; the worker posts everything pending in one request to
//! `/api/v2/alerts`, retries with backoff while Alertmanager is unreachable, and merges what
//! arrived meanwhile (newer wins). Memory is bounded by mailboxes × requirements, and a
//! resolution is never lost behind a full queue.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hyper::Uri;
use mailprobe_telemetry::{ProbeStats, names};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{Notify, watch};

use crate::http::JsonClient;

/// One alert as Alertmanager's API v2 takes it (`PostableAlert`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PostableAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    #[serde(rename = "endsAt")]
    pub ends_at: String,
}

pub fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t).format(&Rfc3339).unwrap_or_default()
}

type Key = (String, String);

/// The pending alerts and the worker's wake-up.
pub struct Sync {
    pending: Mutex<BTreeMap<Key, PostableAlert>>,
    wake: Notify,
}

impl Sync {
    pub fn new() -> Arc<Sync> {
        Arc::new(Sync {
            pending: Mutex::new(BTreeMap::new()),
            wake: Notify::new(),
        })
    }

    /// Queues alerts (replacing older versions of the same alert) and wakes the worker.
    pub fn push(&self, alerts: Vec<PostableAlert>) {
        if alerts.is_empty() {
            return;
        }
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for a in alerts {
            // A mailbox-wide alert (MailboxCheckIncomplete) has no requirement: its name keys it.
            let key = (
                a.labels.get("mailbox").cloned().unwrap_or_default(),
                a.labels
                    .get("requirement")
                    .or_else(|| a.labels.get("alertname"))
                    .cloned()
                    .unwrap_or_default(),
            );
            p.insert(key, a);
        }
        drop(p);
        self.wake.notify_one();
    }

    fn take(&self) -> BTreeMap<Key, PostableAlert> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts back what could not be sent, unless a newer version arrived meanwhile.
    fn put_back(&self, batch: BTreeMap<Key, PostableAlert>) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (k, a) in batch {
            p.entry(k).or_insert(a);
        }
    }

    pub fn pending(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Posts pending alerts until stopped; then makes one last attempt.
pub async fn worker(
    sync: Arc<Sync>,
    url: Uri,
    client: JsonClient,
    stats: Arc<ProbeStats>,
    mut stop: watch::Receiver<bool>,
) {
    let labels = [("receiver", "alertmanager")];
    let mut backoff = Duration::from_millis(500);
    let mut failing = false;
    loop {
        let stopping = *stop.borrow();
        let batch = sync.take();
        if batch.is_empty() {
            if stopping {
                return;
            }
            tokio::select! {
                _ = sync.wake.notified() => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let alerts: Vec<&PostableAlert> = batch.values().collect();
        let body = serde_json::to_vec(&alerts).unwrap_or_default();
        match client.post(&url, body, &[]).await {
            Ok(()) => {
                stats.add(names::ALERT_NOTIFICATIONS_SENT, &labels, batch.len() as u64);
                backoff = Duration::from_millis(500);
                if failing {
                    failing = false;
                    tracing::info!("Alertmanager takes alerts again");
                }
            }
            Err(e) => {
                stats.add(names::ALERT_DELIVERY_FAILURES, &labels, 1);
                if !failing {
                    failing = true;
                    tracing::warn!(url = %mailprobe_telemetry::urls::shown(&url.to_string()), error = %mailprobe_telemetry::urls::scrub(&e.to_string()), "cannot post alerts to Alertmanager; retrying with backoff");
                }
                if stopping {
                    stats.add(
                        names::ALERT_NOTIFICATIONS_DROPPED,
                        &labels,
                        batch.len() as u64,
                    );
                    return;
                }
                sync.put_back(batch);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}
