//! The IMAP side of the round trip, over the IMAP plugin's logged-in session (async-imap):
//! open a folder read-write, find messages by a header, delete them. Every command is bounded
//! by a wait, and a server's refusal comes back as a [`NetError`] carrying its words.
//!
//! Deleting is `UID STORE +FLAGS.SILENT (\Deleted)` then `UID EXPUNGE` of exactly those UIDs
//! (UIDPLUS). A server without UIDPLUS only has the plain `EXPUNGE`, which removes every message
//! flagged `\Deleted` in the folder: the probe runs it only when no other message is flagged,
//! so it never expunges what a user's mail client only marked.

use std::future::Future;
use std::time::Duration;

use futures::TryStreamExt;
use mailprobe_core::NetError;
use mailprobe_core::lines::printable;
use mailprobe_plugin_imap::login::{arm, imap_error};

/// The logged-in IMAP session of the IMAP plugin.
pub type Session = mailprobe_plugin_imap::ImapSession;

/// Runs one async-imap command within `wait`; a refusal or a broken session becomes an error
/// naming the command. Arm the session's byte budget for it first ([`arm`]).
async fn bounded<T, F>(what: &str, wait: Duration, fut: F) -> Result<T, NetError>
where
    F: Future<Output = async_imap::error::Result<T>>,
{
    match tokio::time::timeout(wait, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e @ async_imap::error::Error::Io(_))) => Err(imap_error(&e)),
        Ok(Err(e)) => Err(NetError::Protocol(format!(
            "{what}: {}",
            printable(&e.to_string())
        ))),
        Err(_) => Err(NetError::Timeout {
            waiting_for: format!("the reply to {what}"),
            after: wait,
        }),
    }
}

/// Whether the server offers UID EXPUNGE (UIDPLUS).
pub async fn has_uidplus(session: &mut Session, wait: Duration) -> Result<bool, NetError> {
    arm(session, "CAPABILITY");
    let caps = bounded("CAPABILITY", wait, session.capabilities()).await?;
    Ok(caps.has_str("UIDPLUS"))
}

/// Opens `folder` read-write (SELECT).
pub async fn select(session: &mut Session, folder: &str, wait: Duration) -> Result<(), NetError> {
    // async-imap quotes the name itself (and refuses CR/LF in it).
    arm(session, "SELECT");
    bounded("SELECT", wait, session.select(folder)).await?;
    Ok(())
}

/// The UIDs of the messages whose header `name` contains `value`, in ascending order.
pub async fn find(
    session: &mut Session,
    name: &str,
    value: &str,
    wait: Duration,
) -> Result<Vec<u32>, NetError> {
    let Some(value) = mailprobe_mailwire::imap::quote(value) else {
        return Err(NetError::Protocol(format!(
            "cannot search for a {name} header holding CR, LF or NUL"
        )));
    };
    let query = format!("HEADER {name} {value}");
    arm(session, "UID SEARCH");
    let found = bounded("UID SEARCH", wait, session.uid_search(query)).await?;
    let mut uids: Vec<u32> = found.into_iter().collect();
    uids.sort_unstable();
    Ok(uids)
}

/// Asks the server for news (NOOP), so a server that syncs only on demand sees a new message.
pub async fn refresh(session: &mut Session, wait: Duration) -> Result<(), NetError> {
    arm(session, "NOOP");
    bounded("NOOP", wait, session.noop()).await
}

/// How far a deletion got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// Flagged and expunged: gone.
    Expunged,
    /// Flagged `\Deleted` but left in place: the server has no UIDPLUS and other messages of
    /// the folder are flagged too, so a plain EXPUNGE would have removed them as well.
    FlaggedOnly,
}

fn uid_set(uids: &[u32]) -> String {
    uids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Deletes the messages `uids` of the selected folder (see the module's note on EXPUNGE).
pub async fn delete(
    session: &mut Session,
    uids: &[u32],
    uidplus: bool,
    wait: Duration,
) -> Result<Deletion, NetError> {
    if uids.is_empty() {
        return Ok(Deletion::Expunged);
    }
    let set = uid_set(uids);
    arm(session, "UID STORE");
    bounded("UID STORE", wait, async {
        session
            .uid_store(&set, "+FLAGS.SILENT (\\Deleted)")
            .await?
            .try_collect::<Vec<_>>()
            .await
    })
    .await?;
    if uidplus {
        arm(session, "UID EXPUNGE");
        bounded("UID EXPUNGE", wait, async {
            session
                .uid_expunge(&set)
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        return Ok(Deletion::Expunged);
    }
    arm(session, "UID SEARCH");
    let flagged = bounded("UID SEARCH", wait, session.uid_search("DELETED")).await?;
    if flagged.iter().any(|u| !uids.contains(u)) {
        return Ok(Deletion::FlaggedOnly);
    }
    arm(session, "EXPUNGE");
    bounded("EXPUNGE", wait, async {
        session.expunge().await?.try_collect::<Vec<_>>().await
    })
    .await?;
    Ok(Deletion::Expunged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_sets_are_comma_separated() {
        assert_eq!(uid_set(&[3, 7, 12]), "3,7,12");
    }
}
