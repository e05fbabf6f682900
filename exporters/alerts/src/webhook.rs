//! The generic JSON webhook: the JSON report of every compliance transition, POSTed as is
//! (`Content-Type: application/json`), with the headers `X-Mailprobe-Transition: firing` or
//! `resolved` and `X-Mailprobe-Alert: MailboxNonCompliant` or `MailboxCheckIncomplete`. A bounded queue; each notification is retried with backoff, then dropped and
//! counted.

use std::sync::Arc;
use std::time::Duration;

use hyper::Uri;
use mailprobe_telemetry::{ProbeStats, names};
use tokio::sync::{mpsc, watch};

use crate::http::JsonClient;

/// Notifications waiting for the webhook at most; beyond, new ones are dropped and counted.
pub const QUEUE: usize = 256;
/// One notification: the alert's name, `firing` or `resolved`, and the JSON report.
pub type Notification = (&'static str, &'static str, Vec<u8>);

/// Attempts per notification.
pub const ATTEMPTS: u32 = 5;

pub async fn worker(
    mut rx: mpsc::Receiver<Notification>,
    url: Uri,
    client: JsonClient,
    stats: Arc<ProbeStats>,
    mut stop: watch::Receiver<bool>,
) {
    let labels = [("receiver", "webhook")];
    loop {
        // Once stopping, only what is already queued gets one more try.
        let (alert, transition, body) = if *stop.borrow() {
            match rx.try_recv() {
                Ok(b) => b,
                Err(_) => return,
            }
        } else {
            tokio::select! {
                b = rx.recv() => match b { Some(b) => b, None => return },
                _ = stop.changed() => continue,
            }
        };
        let mut backoff = Duration::from_millis(500);
        let mut sent = false;
        for attempt in 1..=ATTEMPTS {
            match client
                .post(
                    &url,
                    body.clone(),
                    &[
                        ("x-mailprobe-transition", transition),
                        ("x-mailprobe-alert", alert),
                    ],
                )
                .await
            {
                Ok(()) => {
                    sent = true;
                    break;
                }
                Err(e) => {
                    stats.add(names::ALERT_DELIVERY_FAILURES, &labels, 1);
                    tracing::warn!(url = %mailprobe_telemetry::urls::shown(&url.to_string()), attempt, error = %mailprobe_telemetry::urls::scrub(&e.to_string()), "webhook delivery failed");
                    if *stop.borrow() || attempt == ATTEMPTS {
                        break;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        let name = if sent {
            names::ALERT_NOTIFICATIONS_SENT
        } else {
            names::ALERT_NOTIFICATIONS_DROPPED
        };
        stats.add(name, &labels, 1);
    }
}
