//! One run of the round trip, top to bottom ([`check`]), and its verdict.

use std::collections::BTreeMap;
use std::time::Duration;

use mailprobe_core::context::StepTimer;
use mailprobe_core::model::Roundtrip as Settings;
use mailprobe_core::{Endpoint, NetError, Protocol, RequirementResult, RunContext};
use mailprobe_mailwire::smtp::{Submission, scrubbed_reply};
use mailprobe_plugin_imap::ImapFacts;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::mailbox::{self, Deletion, Session};
use crate::message::{self, ID_PREFIX, MARKER};
use crate::sessions;
use crate::{ID, remedies};

/// The first pause between two searches of INBOX; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(200);
const MAX_PAUSE: Duration = Duration::from_secs(2);
/// The least time worth sending a message for: less than this before the deadline, and the
/// run could only report a delivery it had no time to see.
const MIN_WAIT: Duration = Duration::from_secs(1);

/// What one run found, the evidence of its result.
#[derive(Default)]
struct Trip {
    evidence: serde_json::Map<String, Value>,
    /// An IMAP command failed: the session is not given back to the run.
    broken: bool,
}

impl Trip {
    fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.evidence.insert(key.to_string(), value.into());
    }
    fn result(&self, mut r: RequirementResult) -> RequirementResult {
        for (k, v) in &self.evidence {
            r.evidence.entry(k.clone()).or_insert_with(|| v.clone());
        }
        r
    }
    fn not_verified(&self, why: impl Into<String>) -> RequirementResult {
        self.result(RequirementResult::not_verified(ID, why))
    }
}

/// The check: settings, prerequisites, the IMAP session, the trip, the verdict.
pub(crate) async fn check(cx: &mut RunContext) {
    let Some(settings) = cx.target.roundtrip.clone() else {
        cx.report(RequirementResult::not_configured(
            ID,
            "opt-in: the round trip writes to the mailbox; enable it with --roundtrip (config: roundtrip: true)",
        ));
        return;
    };
    let Some(smtp) = cx.target.smtp.clone() else {
        cx.report(RequirementResult::not_configured(
            ID,
            "no SMTP server configured (--smtp) to send the test message through",
        ));
        return;
    };
    if cx.skip_if_blocked(ID) {
        return;
    }
    let mut imap = match sessions::take(cx, Protocol::Imap).await {
        Ok(s) => s,
        Err(why) => {
            let r = RequirementResult::not_verified(ID, format!("not verified: {why}"));
            cx.report(r);
            return;
        }
    };
    let mut trip = Trip::default();
    trip.set("to", settings.to.clone());
    trip.set("warn_seconds", settings.warn.as_secs_f64());
    trip.set(
        "imap_session",
        if imap.reused() { "reused" } else { "opened" },
    );
    let result = match imap.imap() {
        Some(session) => travel(cx, &settings, &smtp, session, &mut trip).await,
        None => trip.not_verified("not verified: the held IMAP session is not the IMAP plugin's"),
    };
    imap.release(cx, !trip.broken).await;
    cx.report(result);
}

/// Clean up, send, wait, delete, judge: the trip over one IMAP session.
async fn travel(
    cx: &mut RunContext,
    settings: &Settings,
    smtp: &Endpoint,
    session: &mut Session,
    trip: &mut Trip,
) -> RequirementResult {
    let ep = cx.target.imap.clone();
    let wait = cx.io_timeout();
    let uidplus = cx
        .step("capability", Some(&ep), mailbox::has_uidplus(session, wait))
        .await
        .unwrap_or(false);
    let sent_folder = cx
        .facts
        .get::<ImapFacts>()
        .and_then(|f| f.sent_folder.clone());
    match sweep(cx, &ep, session, sent_folder.as_deref(), uidplus).await {
        Ok(n) => trip.set("stale_removed", n),
        Err(e) => {
            trip.broken = true;
            return trip
                .not_verified(format!(
                    "not verified: INBOX could not be prepared for the test: {e}"
                ))
                .with_error(&e);
        }
    }
    let reserve = cleanup_reserve(cx.target.timeout);
    if cx.remaining() < reserve + MIN_WAIT {
        return trip.not_verified(format!(
            "not verified: too little of the check's timeout ({:?}) was left to send a message and wait for it; raise the timeout",
            cx.target.timeout
        ));
    }
    let domain = message::domain_for(&cx.target.user, &smtp.host);
    let id = message::message_id(&domain);
    trip.set("message_id", id.clone());
    let started = Instant::now();
    if let Err(r) = submit(cx, settings, smtp, &id, trip).await {
        return r;
    }
    let found = wait_for_delivery(cx, &ep, session, &id, started, reserve).await;
    match found {
        Err(e) => {
            trip.broken = true;
            trip.set("deleted", false);
            trip.not_verified(format!(
                "not verified: the search of INBOX failed while waiting for the test message: {e}; the next run removes it"
            ))
            .with_error(&e)
        }
        Ok(None) => {
            trip.set("deleted", false);
            trip.set("waited_seconds", seconds(started.elapsed()));
            trip.result(RequirementResult::fail(
                ID,
                format!(
                    "the test message {id} was accepted by the SMTP server but had not arrived in INBOX after {:.1} s (the check's deadline); the next run removes it if it arrives later",
                    started.elapsed().as_secs_f64()
                ),
                remedies::NOT_ARRIVED,
            ))
        }
        Ok(Some((uids, latency))) => {
            trip.set("latency_seconds", seconds(latency));
            trip.set("found_in", "INBOX");
            let deleted = remove(
                cx,
                &ep,
                session,
                &uids,
                sent_folder.as_deref(),
                &id,
                uidplus,
                trip,
            )
            .await;
            judge(settings, latency, deleted, trip)
        }
    }
}

/// Seconds, to the millisecond, for evidence.
fn seconds(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// The time kept back from the wait for the clean-up after it: a fifth of the check's
/// timeout, between 1 and 5 seconds.
pub(crate) fn cleanup_reserve(timeout: Duration) -> Duration {
    (timeout / 5).clamp(Duration::from_secs(1), Duration::from_secs(5))
}

/// Removes the test messages of earlier runs from the Sent folder (when there is one) and from
/// INBOX, and leaves INBOX selected. Returns how many it removed.
async fn sweep(
    cx: &mut RunContext,
    ep: &Endpoint,
    session: &mut Session,
    sent: Option<&str>,
    uidplus: bool,
) -> Result<usize, NetError> {
    let mut removed = 0;
    for folder in sent.into_iter().chain(["INBOX"]) {
        let wait = cx.io_timeout();
        cx.step("select", Some(ep), mailbox::select(session, folder, wait))
            .await?;
        let stale = cx
            .step(
                "search",
                Some(ep),
                mailbox::find(session, MARKER, ID_PREFIX, wait),
            )
            .await?;
        if !stale.is_empty() {
            cx.step(
                "delete",
                Some(ep),
                mailbox::delete(session, &stale, uidplus, wait),
            )
            .await?;
            removed += stale.len();
        }
    }
    Ok(removed)
}

/// Sends the test message through the SMTP plugin's session; `Err` is the result when it
/// could not be sent.
async fn submit(
    cx: &mut RunContext,
    settings: &Settings,
    ep: &Endpoint,
    id: &str,
    trip: &mut Trip,
) -> Result<(), RequirementResult> {
    let mut smtp = sessions::take(cx, Protocol::Smtp)
        .await
        .map_err(|why| trip.not_verified(format!("not verified: {why}")))?;
    trip.set(
        "smtp_session",
        if smtp.reused() { "reused" } else { "opened" },
    );
    let from = cx.target.user.clone();
    let text = message::compose(&from, &settings.to, id, OffsetDateTime::now_utc());
    let wait = cx.io_timeout();
    let Some(client) = smtp.smtp() else {
        smtp.release(cx, false).await;
        return Err(
            trip.not_verified("not verified: the held SMTP session is not the SMTP plugin's")
        );
    };
    let outcome = cx
        .step(
            "submit",
            Some(ep),
            client.client.submit(&from, &settings.to, &text, wait),
        )
        .await;
    let healthy = matches!(outcome, Ok(Submission::Accepted(_)));
    smtp.release(cx, healthy).await;
    let password = cx.target.password.clone();
    match outcome {
        Ok(Submission::Accepted(_)) => Ok(()),
        Ok(Submission::Refused { command, reply }) => {
            let words = scrubbed_reply(&reply, password.expose());
            Err(trip.result(
                RequirementResult::fail(
                    ID,
                    format!("the SMTP server refused the test message at {command}: {words}"),
                    remedies::refused(command, &reply),
                )
                .with("refused_at", command)
                .with("reply", words)
                .with("deleted", true),
            ))
        }
        Err(e @ NetError::Timeout { .. }) => Err(trip
            .not_verified(format!(
                "not verified: the SMTP server did not answer in time while the test message was sent: {e}; the next run removes it if it arrives"
            ))
            .with_error(&e)),
        Err(e) => Err(trip
            .result(RequirementResult::fail(
                ID,
                format!("the SMTP session broke while the test message was sent: {e}"),
                remedies::SUBMISSION_BROKEN,
            ))
            .with_error(&e)),
    }
}

/// Searches INBOX for the message until it is there or the deadline (less `reserve`) comes,
/// pausing longer each time. Recorded as one `wait_for_delivery` step.
async fn wait_for_delivery(
    cx: &mut RunContext,
    ep: &Endpoint,
    session: &mut Session,
    id: &str,
    started: Instant,
    reserve: Duration,
) -> Result<Option<(Vec<u32>, Duration)>, NetError> {
    let timer = StepTimer::start();
    let until = cx
        .deadline()
        .checked_sub(reserve)
        .unwrap_or_else(Instant::now);
    let mut pause = FIRST_PAUSE;
    let mut searches = 0u32;
    let out = loop {
        let wait = cx.io_timeout().min(
            until
                .saturating_duration_since(Instant::now())
                .max(MIN_WAIT),
        );
        let looked = async {
            mailbox::refresh(session, wait).await?;
            mailbox::find(session, "Message-ID", id, wait).await
        }
        .await;
        searches += 1;
        match looked {
            Err(e) => break Err(e),
            Ok(uids) if !uids.is_empty() => break Ok(Some((uids, started.elapsed()))),
            Ok(_) => {}
        }
        let now = Instant::now();
        if now >= until {
            break Ok(None);
        }
        tokio::time::sleep(pause.min(until - now)).await;
        pause = (pause * 2).min(MAX_PAUSE);
    };
    let attributes = BTreeMap::from([(
        "mailprobe.roundtrip.searches".to_string(),
        searches.to_string(),
    )]);
    cx.record_step(timer, "wait_for_delivery", Some(ep), &out, attributes);
    out
}

/// Deletes the delivered message from INBOX and the server's copy from Sent; returns whether
/// both are gone, and records how in the evidence.
#[allow(clippy::too_many_arguments)]
async fn remove(
    cx: &mut RunContext,
    ep: &Endpoint,
    session: &mut Session,
    uids: &[u32],
    sent: Option<&str>,
    id: &str,
    uidplus: bool,
    trip: &mut Trip,
) -> bool {
    let wait = cx.io_timeout();
    let inbox = cx
        .step(
            "delete",
            Some(ep),
            mailbox::delete(session, uids, uidplus, wait),
        )
        .await;
    let inbox_gone = match inbox {
        Ok(Deletion::Expunged) => true,
        Ok(Deletion::FlaggedOnly) => {
            trip.set("inbox_copy", "flagged");
            false
        }
        Err(e) => {
            trip.broken = true;
            trip.set("delete_error", e.to_string());
            false
        }
    };
    let Some(sent) = sent.filter(|_| !trip.broken) else {
        trip.set("sent_copy", "unknown");
        trip.set("deleted", inbox_gone);
        return inbox_gone;
    };
    let copy = async {
        let wait = cx.io_timeout();
        cx.step("select", Some(ep), mailbox::select(session, sent, wait))
            .await?;
        let found = cx
            .step(
                "search",
                Some(ep),
                mailbox::find(session, "Message-ID", id, wait),
            )
            .await?;
        if found.is_empty() {
            return Ok(None);
        }
        cx.step(
            "delete",
            Some(ep),
            mailbox::delete(session, &found, uidplus, wait),
        )
        .await
        .map(Some)
    }
    .await;
    let sent_gone = match copy {
        Ok(None) => {
            trip.set("sent_copy", "none");
            true
        }
        Ok(Some(Deletion::Expunged)) => {
            trip.set("sent_copy", "deleted");
            true
        }
        Ok(Some(Deletion::FlaggedOnly)) => {
            trip.set("sent_copy", "flagged");
            false
        }
        Err(e) => {
            trip.broken = true;
            trip.set("sent_copy", "unknown");
            trip.set("delete_error", e.to_string());
            false
        }
    };
    trip.set("deleted", inbox_gone && sent_gone);
    inbox_gone && sent_gone
}

/// Pass within `roundtrip_warn`, warn when slower; a message left behind is said, not judged
/// (the next run removes it).
fn judge(settings: &Settings, latency: Duration, deleted: bool, trip: &Trip) -> RequirementResult {
    let secs = latency.as_secs_f64();
    let left = if deleted {
        "and was deleted again"
    } else {
        "but could not be deleted completely (the next run removes it)"
    };
    if latency <= settings.warn {
        trip.result(RequirementResult::pass(
            ID,
            format!("the test message arrived in INBOX after {secs:.1} s {left}"),
        ))
    } else {
        trip.result(RequirementResult::warn(
            ID,
            format!(
                "the test message arrived in INBOX after {secs:.1} s, more than roundtrip_warn ({:.0} s), {left}",
                settings.warn.as_secs_f64()
            ),
            remedies::SLOW,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cleanup_reserve_is_a_fifth_of_the_timeout_within_bounds() {
        assert_eq!(
            cleanup_reserve(Duration::from_secs(2)),
            Duration::from_secs(1)
        );
        assert_eq!(
            cleanup_reserve(Duration::from_secs(10)),
            Duration::from_secs(2)
        );
        assert_eq!(
            cleanup_reserve(Duration::from_secs(600)),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn slow_delivery_warns_and_a_leftover_is_said() {
        let settings = Settings {
            to: "a@x.test".into(),
            warn: Duration::from_secs(60),
        };
        let trip = Trip::default();
        let r = judge(&settings, Duration::from_millis(1500), true, &trip);
        assert_eq!(r.status, mailprobe_core::Status::Pass);
        assert!(
            r.summary.contains("after 1.5 s and was deleted again"),
            "{}",
            r.summary
        );
        let r = judge(&settings, Duration::from_secs(61), false, &trip);
        assert_eq!(r.status, mailprobe_core::Status::Warn);
        assert!(
            r.summary.contains("the next run removes it"),
            "{}",
            r.summary
        );
        assert_eq!(r.remedy.as_deref(), Some(remedies::SLOW));
    }
}
