//! The `roundtrip` check (`mail.roundtrip`, opt-in: `--roundtrip`, config `roundtrip: true`):
//! does mail the user sends through the SMTP server reach the user's INBOX, and how fast?
//!
//! The story of a run ([`check`]): take the IMAP plugin's logged-in session, remove the test
//! messages earlier runs left behind (INBOX and Sent, found by their marker header), send one
//! message with a unique Message-ID through the SMTP plugin's logged-in session, search INBOX
//! for it with backoff until the run's deadline (less the time the clean-up needs), then delete
//! it and the server's copy in Sent, if any. It writes to the mailbox, so it never runs unless
//! asked to. It speaks no protocol of its own: SMTP through `mailprobe-mailwire`'s client,
//! IMAP through the IMAP plugin's async-imap session.
#![forbid(unsafe_code)]

pub mod mailbox;
pub mod message;
pub mod remedies;
mod run;
mod sessions;

use std::sync::Arc;

use mailprobe_core::plugin::{BoxFuture, PluginError};
use mailprobe_core::requirement::Measure;
use mailprobe_core::{CheckPlugin, PluginInfo, RequirementSpec, RunContext};

pub const NAME: &str = "roundtrip";
pub const ID: &str = "mail.roundtrip";

/// The round-trip plugin.
#[derive(Debug, Default)]
pub struct Roundtrip;

/// The plugin, as the binary registers it.
pub fn plugin() -> Arc<dyn CheckPlugin> {
    Arc::new(Roundtrip)
}

/// What the plugin declares about `mail.roundtrip`.
pub fn spec() -> RequirementSpec {
    RequirementSpec::new(
        ID,
        "a message sent through the SMTP server as the user arrives in the user's INBOX (opt-in: it writes to the mailbox)",
    )
    .after(&["imap.login", "smtp.login"])
    .passes("the test message is found in INBOX within `roundtrip_warn` (default 60 s), and is deleted again")
    .warns("it arrives, but later than `roundtrip_warn`")
    .fails("the SMTP server refuses the message, or it has not arrived in INBOX by the check's deadline")
    .evidence("latency_seconds", "seconds from the start of the submission until the message was found in INBOX")
    .evidence("message_id", "the test message's Message-ID")
    .evidence("deleted", "whether the test message (and the server's copy in Sent) was deleted again")
    .evidence("found_in", "the folder it was found in (`INBOX`)")
    .evidence("sent_copy", "the server's copy in the Sent folder: `deleted`, `none`, `flagged` or `unknown`")
    .evidence("stale_removed", "test messages of earlier, interrupted runs removed first")
    .measures(Measure::RoundtripLatency {
        key: "latency_seconds".into(),
    })
}

impl CheckPlugin for Roundtrip {
    fn info(&self) -> PluginInfo {
        // After the connection-limit check: the wait for delivery then eats no other check's
        // time, and the sessions that check counts are not in use here.
        PluginInfo::builtin(NAME, vec![spec()])
            .depends_on(&["imap", "smtp"])
            .runs_after(&["connlimit"])
    }

    fn run<'a>(&'a self, cx: &'a mut RunContext) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(async move {
            run::check(cx).await;
            Ok(())
        })
    }
}
