//! `imap.folders`: LIST the folders (with special-use where offered), find the Sent folder
//! ([`crate::folders`] parses and matches), then EXAMINE INBOX and it, read-only.

use std::collections::BTreeMap;

use mailprobe_core::context::StepTimer;
use mailprobe_core::lines::printable;
use mailprobe_core::{Endpoint, NetError, RequirementResult, RunContext};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::folders::{self, Folder, Namespace, SentBy};
use crate::wire::{Status, Wire, quote};
use crate::{FOLDERS, ImapFacts, has, remedies};

/// What LIST found.
pub(crate) struct Listing {
    folders: Vec<Folder>,
    namespace: Namespace,
    /// `LIST ... RETURN (SPECIAL-USE)`, `XLIST` or `LIST`.
    command: &'static str,
}

/// NAMESPACE and LIST (special-use, XLIST or plain, the best the server offers) as the `list`
/// step.
pub(crate) async fn list_folders<S>(
    cx: &mut RunContext,
    ep: &Endpoint,
    wire: &mut Wire<S>,
    caps: &[String],
) -> Result<Listing, NetError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let wait = cx.io_timeout();
    let special = has(caps, "SPECIAL-USE");
    let xlist = has(caps, "XLIST");
    let namespace = has(caps, "NAMESPACE");
    cx.step("list", Some(ep), async {
        let namespace = if namespace {
            let r = wire.command("NAMESPACE", wait).await?;
            r.data("NAMESPACE")
                .find_map(folders::parse_namespace)
                .unwrap_or_default()
        } else {
            Namespace::default()
        };
        let mut attempts: Vec<(&'static str, &'static str, &'static str)> = Vec::new();
        if special {
            attempts.push((
                r#"LIST "" "*" RETURN (SPECIAL-USE)"#,
                "LIST",
                "LIST RETURN (SPECIAL-USE)",
            ));
        } else if xlist {
            attempts.push((r#"XLIST "" "*""#, "XLIST", "XLIST"));
        }
        attempts.push((r#"LIST "" "*""#, "LIST", "LIST"));
        let mut last = None;
        for (command, word, name) in attempts {
            let r = wire.command(command, wait).await?;
            if r.tagged.status == Status::Ok {
                let folders = r.data(word).filter_map(folders::parse_list).collect();
                return Ok(Listing {
                    folders,
                    namespace,
                    command: name,
                });
            }
            last = Some(r.tagged.line);
        }
        Err(NetError::Protocol(format!(
            "LIST refused: {}",
            last.unwrap_or_default()
        )))
    })
    .await
}

/// EXAMINEs a folder as an `examine` step: `Ok(None)` when it opened, `Ok(Some(words))` with the
/// server's refusal.
async fn examine<S>(
    cx: &mut RunContext,
    ep: &Endpoint,
    wire: &mut Wire<S>,
    name: &str,
) -> Result<Option<String>, NetError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let wait = cx.io_timeout();
    let Some(quoted) = quote(name) else {
        return Ok(Some(format!(
            "the name {} cannot be sent in a command",
            printable(name)
        )));
    };
    let timer = StepTimer::start();
    let out = wire.command(&format!("EXAMINE {quoted}"), wait).await;
    let step_outcome = match &out {
        Ok(r) if r.tagged.status == Status::Ok => Ok(()),
        Ok(r) => Err(NetError::Protocol(format!(
            "EXAMINE {}: {}",
            printable(name),
            r.tagged.line
        ))),
        Err(e) => Err(e.clone()),
    };
    let attributes = BTreeMap::from([("imap.mailbox".to_string(), printable(name))]);
    cx.record_step(timer, "examine", Some(ep), &step_outcome, attributes);
    let r = out?;
    Ok((r.tagged.status != Status::Ok).then_some(r.tagged.line))
}

/// Reports `imap.folders`; returns whether the session is still good to keep.
pub(crate) async fn judge<S>(
    cx: &mut RunContext,
    ep: &Endpoint,
    wire: &mut Wire<S>,
    listing: Result<Listing, NetError>,
) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let listing = match listing {
        Ok(l) => l,
        Err(e) => {
            cx.report(
                RequirementResult::fail(
                    FOLDERS,
                    format!("the folders could not be listed: {e}"),
                    remedies::LIST_FAILED,
                )
                .with_error(&e),
            );
            return false;
        }
    };
    let sent = folders::find_sent(&listing.folders, &listing.namespace);
    let others = folders::others(&listing.folders, sent.map(|(f, _)| f));
    let facts = cx.facts.entry::<ImapFacts>();
    facts.other_folders = Some(others.len() as u32);
    facts.sent_folder = sent.map(|(f, _)| f.name.clone());
    let evidence = Evidence {
        listing: &listing,
        sent,
        others: others.len(),
    };
    // INBOX always exists in IMAP, listed or not: examine it by its name.
    let (result, keep) = match examine(cx, ep, wire, "INBOX").await {
        Ok(None) => judge_sent(cx, ep, wire, &evidence).await,
        Ok(Some(words)) => (
            RequirementResult::fail(
                FOLDERS,
                format!("INBOX cannot be opened: {words}"),
                remedies::INBOX_REFUSED,
            )
            .with("server_response", words),
            true,
        ),
        Err(e) => (
            RequirementResult::fail(
                FOLDERS,
                format!("EXAMINE INBOX did not complete: {e}"),
                remedies::INBOX_BROKEN,
            )
            .with_error(&e),
            false,
        ),
    };
    cx.report(evidence.add(result));
    keep
}

/// What every `imap.folders` result says of the listing.
struct Evidence<'a> {
    listing: &'a Listing,
    sent: Option<(&'a Folder, SentBy)>,
    others: usize,
}

impl Evidence<'_> {
    fn add(&self, r: RequirementResult) -> RequirementResult {
        let names: Vec<String> = self
            .listing
            .folders
            .iter()
            .map(|f| f.display.clone())
            .take(50)
            .collect();
        r.with("sent_folder", self.sent.map(|(f, _)| f.display.clone()))
            .with("sent_by", self.sent.map(|(_, by)| by.as_str()))
            .with("other_folders", self.others as u64)
            .with("folders", json!(names))
            .with("list_command", self.listing.command)
            .with("namespace_prefix", self.listing.namespace.prefix.clone())
    }
}

/// With INBOX open: is there a Sent folder, and does it open? Returns the result and whether
/// the session is still good to keep.
async fn judge_sent<S>(
    cx: &mut RunContext,
    ep: &Endpoint,
    wire: &mut Wire<S>,
    evidence: &Evidence<'_>,
) -> (RequirementResult, bool)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some((sent, by)) = evidence.sent else {
        let summary = format!(
            "no Sent folder: no folder has the \\Sent special-use attribute or a well-known name ({} folders listed)",
            evidence.listing.folders.len()
        );
        return (
            RequirementResult::fail(FOLDERS, summary, remedies::NO_SENT),
            true,
        );
    };
    match examine(cx, ep, wire, &sent.name).await {
        Ok(None) => (
            RequirementResult::pass(
                FOLDERS,
                format!(
                    "INBOX and the Sent folder `{}` (found by {}) can be opened; {} other folder(s)",
                    sent.display,
                    by.as_str(),
                    evidence.others
                ),
            ),
            true,
        ),
        Ok(Some(words)) => (
            RequirementResult::fail(
                FOLDERS,
                format!(
                    "the Sent folder `{}` is listed but cannot be opened: {words}",
                    sent.display
                ),
                remedies::SENT_REFUSED,
            )
            .with("server_response", words),
            true,
        ),
        Err(e) => (
            RequirementResult::fail(
                FOLDERS,
                format!("EXAMINE of the Sent folder did not complete: {e}"),
                remedies::SENT_BROKEN,
            )
            .with_error(&e),
            false,
        ),
    }
}
