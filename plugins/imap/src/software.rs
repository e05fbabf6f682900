//! `imap.server_software`: who answered, from the greeting, the capabilities and the ID
//! response (see [`crate::fingerprint`]), judged against the profile's unsupported software.

use mailprobe_core::{Endpoint, RequirementResult, RunContext};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::wire::{Status, Wire};
use crate::{ENCRYPTION, ImapFacts, SOFTWARE, Seen, fingerprint, remedies};

/// The result, when the server showed anything of itself; `unsupported` names the software the
/// profile's client does not support.
pub(crate) fn result(seen: &Seen, unsupported: &[String]) -> Option<RequirementResult> {
    let o = seen.observed();
    if seen.greeting.is_none() && o.capabilities.is_empty() && o.id.is_none() {
        return None;
    }
    let greeting = seen.greeting.as_ref().map(|g| g.line.clone());
    let id = fingerprint::identify(&o);
    let mut r = match &id {
        Some(i)
            if unsupported
                .iter()
                .any(|u| u.eq_ignore_ascii_case(&i.software)) =>
        {
            RequirementResult::fail(
                SOFTWARE,
                format!("the server is {} (identified by its {})", i.software, i.by),
                remedies::unsupported_software(&i.software),
            )
        }
        Some(i) => RequirementResult::pass(
            SOFTWARE,
            format!(
                "the server is {}{} (identified by its {})",
                i.software,
                i.version
                    .as_deref()
                    .map(|v| format!(" {v}"))
                    .unwrap_or_default(),
                i.by
            ),
        ),
        None => RequirementResult::warn(
            SOFTWARE,
            "the IMAP server software is unknown",
            remedies::unknown_software(unsupported),
        ),
    };
    r = r
        .with("software", id.as_ref().map(|i| i.software.clone()))
        .with("version", id.as_ref().and_then(|i| i.version.clone()))
        .with("identified_by", id.as_ref().map(|i| i.by))
        .with("greeting", greeting)
        .with("capabilities", json!(o.capabilities));
    if let Some(idmap) = &o.id {
        r = r.with("id", json!(idmap));
    }
    Some(r)
}

/// Reports `imap.server_software` and shares the software's name.
pub(crate) fn report(cx: &mut RunContext, seen: &Seen) {
    let unsupported = cx.target.profile.unsupported_software.clone();
    match result(seen, &unsupported) {
        Some(r) => {
            cx.facts.entry::<ImapFacts>().software = r
                .evidence
                .get("software")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string);
            cx.report(r);
        }
        None => {
            if !cx.skip_if_blocked(SOFTWARE) {
                cx.report(RequirementResult::skip(
                    SOFTWARE,
                    ENCRYPTION,
                    "not evaluated: no IMAP greeting was received",
                ));
            }
        }
    }
}

/// Sends ID (RFC 2971) as an `id` step; a refusal or an odd answer only means no ID facts.
pub(crate) async fn try_id<S>(
    cx: &mut RunContext,
    ep: &Endpoint,
    wire: &mut Wire<S>,
    seen: &mut Seen,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let wait = cx.io_timeout();
    let command = format!(
        r#"ID ("name" "mailprobe" "version" "{}")"#,
        env!("CARGO_PKG_VERSION")
    );
    let out = cx
        .step("id", Some(ep), async { wire.command(&command, wait).await })
        .await;
    if let Ok(r) = out
        && r.tagged.status == Status::Ok
    {
        seen.id = r.data("ID").find_map(fingerprint::parse_id);
    }
}
