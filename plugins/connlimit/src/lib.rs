//! The `connlimit` check: can the CRM hold its sessions at once? HubSpot keeps 2 IMAP sessions
//! (3 when the account has folders besides INBOX and Sent) and opens 2 SMTP sessions while
//! sending. This plugin opens exactly that many authenticated sessions, counting the one the
//! run already holds, proves with a NOOP on each that the server holds them all at the same
//! moment, then closes every one of them cleanly — also after a refusal, so no run leaves the
//! account locked by leftovers.
//!
//! It never opens more connections than required, nor more than the run's share of the
//! per-server budget: when the budget is below what is required, the result is `skip`.
#![forbid(unsafe_code)]

mod remedies;

use std::collections::BTreeMap;
use std::time::Duration;

use mailprobe_core::context::StepTimer;
use mailprobe_core::plugin::{BoxFuture, PluginError};
use mailprobe_core::session::{MailSession, SessionRefusal, SessionStep};
use mailprobe_core::{
    CheckPlugin, Measure, NetError, PluginInfo, Protocol, RequirementResult, RequirementSpec,
    RunContext, Status,
};
use mailprobe_mailwire::handshake;
use mailprobe_plugin_imap::ImapFacts;
use serde_json::{Value, json};

pub const NAME: &str = "connlimit";
pub const ID: &str = "connections.concurrent";

/// What a resumed session proves about the certificate, in the evidence.
const RESUMED_NOTE: &str = "resumed: the same certificate as the first handshake by construction \
     (resuming proves the server holds the secret of a session this run established after \
     checking that certificate)";

#[derive(Debug, Default)]
pub struct ConnLimit;

/// The plugin, as the binary registers it.
pub fn plugin() -> std::sync::Arc<dyn CheckPlugin> {
    std::sync::Arc::new(ConnLimit)
}

impl CheckPlugin for ConnLimit {
    fn info(&self) -> PluginInfo {
        PluginInfo::builtin(
            NAME,
            vec![
                RequirementSpec::new(
                    ID,
                    "the server allows the CRM's concurrent IMAP and SMTP sessions",
                )
                .after(&["imap.login", "smtp.login"])
                .passes("the probe holds at once 2 IMAP sessions (3 when there are folders besides INBOX and Sent) and 2 SMTP sessions, all authenticated")
                .fails("the server refuses one of them (the result says how many it allowed and what it said)")
                .evidence("required", "sessions the CRM holds at once")
                .evidence("achieved", "sessions the server held at once")
                .measures(Measure::ConcurrentConnections {
                    key: "achieved".into(),
                }),
            ],
        )
        // Their sessions are reused, and their openers open the others.
        .depends_on(&["imap", "smtp"])
    }

    fn run<'a>(&'a self, cx: &'a mut RunContext) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(async move {
            run(cx).await;
            Ok(())
        })
    }
}

/// How many sessions one protocol needs, and how it went.
#[derive(Debug, Default)]
struct Side {
    required: usize,
    held: usize,
    opened: usize,
    /// Of the opened sessions, those whose TLS handshake resumed an earlier session of the run.
    resumed: usize,
    alive: usize,
    refusal: Option<SessionRefusal>,
    noop_failures: Vec<String>,
    /// Sessions whose reply to NOOP overran the probe's size bound: not held, but not
    /// proven dropped either.
    over_bound: usize,
    /// A new session lost to the probe's own bound (a reply to LOGIN larger than the probe
    /// reads): the ones after it were not tried, so the side proves nothing either way.
    own_limit: Option<SessionRefusal>,
}

impl Side {
    /// The per-protocol evidence: what was required, held, reused, opened, and any refusal.
    fn evidence(&self) -> Value {
        let mut v = json!({
            "required": self.required,
            "achieved": self.alive,
            "reused": self.held,
            "opened": self.opened,
            "resumed": self.resumed,
        });
        if self.resumed > 0 {
            v["resumed_note"] = json!(RESUMED_NOTE);
        }
        if let Some(r) = &self.refusal {
            v["refused_at"] = json!(r.step.as_str());
            v["refusal"] = json!(r.message);
        }
        if let Some(r) = &self.own_limit {
            v["not_verified_at"] = json!(r.step.as_str());
            v["probe_limit"] = json!(r.message);
        }
        if !self.noop_failures.is_empty() {
            v["dropped"] = json!(self.noop_failures);
        }
        v
    }
}

/// The check as a story: work out what is required, make sure it may be tried, take the held
/// sessions, open the missing ones, NOOP all at once, close all, judge.
async fn run(cx: &mut RunContext) {
    if cx.skip_if_blocked(ID) {
        release_held(cx).await;
        return;
    }
    let other_folders = cx.facts.get::<ImapFacts>().and_then(|f| f.other_folders);
    let want = required_sessions(cx, other_folders);
    let required: usize = want.values().sum();
    if let Some(skip) = cannot_try(cx, &want, required) {
        cx.report(skip);
        release_held(cx).await;
        return;
    }
    let wait = cx.io_timeout();
    let mut sides: BTreeMap<Protocol, Side> = BTreeMap::new();
    let mut sessions = reuse_held(cx, &want, &mut sides, wait).await;
    open_missing(cx, &want, &mut sessions, &mut sides, wait).await;
    let achieved = noop_all(cx, &mut sessions, &mut sides, wait).await;
    close_all(cx, sessions, wait).await;
    let verdict = judge(cx, &sides, required, achieved, other_folders);
    cx.report(verdict);
}

/// How many sessions of each protocol the CRM holds at once, from the profile: the IMAP count
/// depends on whether the account has folders besides INBOX and Sent (unknown counts as none).
fn required_sessions(cx: &RunContext, other_folders: Option<u32>) -> BTreeMap<Protocol, usize> {
    let rules = &cx.target.profile.connections;
    let mut want: BTreeMap<Protocol, usize> = BTreeMap::new();
    want.insert(
        Protocol::Imap,
        if other_folders.unwrap_or(0) > 0 {
            rules.imap_with_other_folders
        } else {
            rules.imap
        } as usize,
    );
    if cx.target.smtp.is_some() {
        want.insert(Protocol::Smtp, rules.smtp as usize);
    }
    want
}

/// The `skip` result when the check may not or cannot be tried: never overstep the budget
/// (better no answer than eating the CRM's own connections), and without a protocol's plugin
/// there is no way to open its sessions.
fn cannot_try(
    cx: &RunContext,
    want: &BTreeMap<Protocol, usize>,
    required: usize,
) -> Option<RequirementResult> {
    for (p, n) in want {
        let reserved = cx.reserved(*p);
        if reserved < *n {
            let server = cx
                .target
                .endpoint(*p)
                .map(|e| e.authority())
                .unwrap_or_default();
            return Some(
                RequirementResult::skip(
                    ID,
                    "server_connections",
                    format!(
                        "not evaluated: {n} {p} sessions are required but the probe may hold only {reserved} to {server}; raise server_connections (--server-connections) to at least {n}"
                    ),
                )
                .with("required", required)
                .with("budget", reserved),
            );
        }
        if !cx.openers.contains_key(p) {
            return Some(RequirementResult::skip(
                ID,
                p.prefix(),
                format!(
                    "not evaluated: the {p} plugin did not run, so no {p} session can be opened"
                ),
            ));
        }
    }
    None
}

/// Takes the logged-in sessions other plugins kept, up to what is required, so the server is
/// never asked for more than the CRM would hold; the surplus is closed at once.
async fn reuse_held(
    cx: &mut RunContext,
    want: &BTreeMap<Protocol, usize>,
    sides: &mut BTreeMap<Protocol, Side>,
    wait: Duration,
) -> Vec<(Protocol, Box<dyn MailSession>)> {
    let mut sessions: Vec<(Protocol, Box<dyn MailSession>)> = Vec::new();
    for held in std::mem::take(&mut cx.held) {
        if want.contains_key(&held.protocol)
            && count(&sessions, held.protocol) < want[&held.protocol]
        {
            sides.entry(held.protocol).or_default().held += 1;
            sessions.push((held.protocol, held.session));
        } else {
            held.session.close(wait).await;
        }
    }
    sessions
}

/// Opens the missing sessions, each resuming the run's TLS session with its port: one after
/// the other per protocol, stopping at the first refusal (the server has said what its limit
/// is, and more attempts would only add to its count), the IMAP and SMTP ones at the same time.
/// Not all of one protocol at once: Dovecot counts a user's sessions when each has logged in,
/// so logins racing each other all get through a limit the CRM's sessions, opened one by one,
/// would meet.
async fn open_missing(
    cx: &mut RunContext,
    want: &BTreeMap<Protocol, usize>,
    sessions: &mut Vec<(Protocol, Box<dyn MailSession>)>,
    sides: &mut BTreeMap<Protocol, Side>,
    wait: Duration,
) {
    let mut lanes = Vec::new();
    for (&p, &n) in want {
        sides.entry(p).or_default().required = n;
        let opener = cx.openers[&p].clone();
        let params = handshake::open_params(cx, p);
        // Each slot is taken only when its turn comes.
        let turns: Vec<_> = (count(sessions, p) + 1..=n)
            .map(|index| (index, cx.slot(p, wait)))
            .collect();
        lanes.push(async move {
            let mut opened = Vec::new();
            for (index, slot) in turns {
                let timer = StepTimer::start();
                let out = match slot.await {
                    Ok(slot) => opener.open(params.clone(), slot).await,
                    Err(e) => Err(SessionRefusal::at(SessionStep::Connect, e.to_string())),
                };
                let refused = out.is_err();
                opened.push((p, index, timer, out));
                if refused {
                    break;
                }
            }
            opened
        });
    }
    let all = futures::future::join_all(lanes).await;
    for (p, index, timer, opened) in all.into_iter().flatten() {
        record_open(cx, p, index, timer, &opened);
        let side = sides.entry(p).or_default();
        match opened {
            Ok(s) => {
                side.opened += 1;
                side.resumed += usize::from(s.resumed());
                sessions.push((p, s));
            }
            Err(r) if r.own_limit => side.own_limit = Some(r),
            Err(r) => side.refusal = Some(r),
        }
    }
}

/// How many of `sessions` speak `protocol`.
fn count(sessions: &[(Protocol, Box<dyn MailSession>)], protocol: Protocol) -> usize {
    sessions.iter().filter(|(q, _)| *q == protocol).count()
}

/// Records one opening as a step, with its index, so a trace shows which session was refused.
fn record_open(
    cx: &mut RunContext,
    p: Protocol,
    index: usize,
    timer: StepTimer,
    opened: &Result<Box<dyn MailSession>, SessionRefusal>,
) {
    let ep = cx.target.endpoint(p).cloned();
    let outcome: Result<(), NetError> = match opened {
        Ok(_) => Ok(()),
        Err(r) => Err(NetError::Protocol(format!("{}: {}", r.step, r.message))),
    };
    let mut attrs = BTreeMap::new();
    attrs.insert("mailprobe.session.index".into(), index.to_string());
    if let Ok(s) = opened {
        attrs.insert("tls.resumed".into(), s.resumed().to_string());
    }
    cx.record_step(
        timer,
        &format!("open {} session", p.prefix()),
        ep.as_ref(),
        &outcome,
        attrs,
    );
}

/// All of them at the same moment: a NOOP on each while every one is open, all sent at once.
/// Returns how many answered.
async fn noop_all(
    cx: &mut RunContext,
    sessions: &mut [(Protocol, Box<dyn MailSession>)],
    sides: &mut BTreeMap<Protocol, Side>,
    wait: Duration,
) -> usize {
    let noops = sessions.iter_mut().map(|(p, s)| async move {
        let timer = StepTimer::start();
        (*p, timer, s.noop(wait).await)
    });
    let mut achieved = 0;
    for (p, timer, out) in futures::future::join_all(noops).await {
        let ep = cx.target.endpoint(p).cloned();
        cx.record_step(
            timer,
            &format!("noop {}", p.prefix()),
            ep.as_ref(),
            &out,
            BTreeMap::new(),
        );
        let side = sides.entry(p).or_default();
        match out {
            Ok(()) => {
                side.alive += 1;
                achieved += 1;
            }
            Err(e @ NetError::TooLarge(_)) => {
                side.over_bound += 1;
                side.noop_failures.push(e.to_string());
            }
            // The server's own words where it gave any.
            Err(NetError::Protocol(words)) => side.noop_failures.push(words),
            Err(e) => side.noop_failures.push(e.to_string()),
        }
    }
    achieved
}

/// Closes everything, whatever happened, so no session outlives the run.
async fn close_all(
    cx: &mut RunContext,
    sessions: Vec<(Protocol, Box<dyn MailSession>)>,
    wait: Duration,
) {
    let timer = StepTimer::start();
    futures::future::join_all(sessions.into_iter().map(|(_, s)| s.close(wait))).await;
    cx.record_step::<()>(timer, "close sessions", None, &Ok(()), BTreeMap::new());
}

/// The verdict: pass when every required session answered at once, else a failure quoting
/// each refusal, with the remedy for the identified server software.
fn judge(
    cx: &RunContext,
    sides: &BTreeMap<Protocol, Side>,
    required: usize,
    achieved: usize,
    other_folders: Option<u32>,
) -> RequirementResult {
    let detail = sides
        .iter()
        .map(|(p, s)| format!("{}/{} {p}", s.alive, s.required))
        .collect::<Vec<_>>()
        .join(", ");
    let over_bound: usize = sides.values().map(|s| s.over_bound).sum();
    let mut r = if achieved >= required {
        RequirementResult::pass(
            ID,
            format!("held {achieved} authenticated sessions at once ({detail})"),
        )
    } else if sides
        .values()
        .all(|s| s.alive + s.over_bound >= s.required || s.own_limit.is_some())
    {
        // Every side short lost its sessions to a reply the probe would not read whole (to
        // NOOP, or to the LOGIN of a new session): the probe's own bound, never the server's
        // connection limit.
        RequirementResult::not_verified(
            ID,
            format!(
                "not verified: {over_bound} of the {required} sessions answered NOOP, or a new one its LOGIN, with more than the probe reads ({detail})"
            ),
        )
    } else {
        let software = cx.facts.get::<ImapFacts>().and_then(|f| f.software.clone());
        let short: Vec<(Protocol, usize)> = sides
            .iter()
            .filter(|(_, s)| s.alive < s.required)
            .map(|(p, s)| (*p, s.required))
            .collect();
        RequirementResult::fail(
            ID,
            format!(
                "the server allowed {achieved} of the {required} concurrent sessions the CRM needs ({detail}){}",
                refusals(sides)
            ),
            remedies::remedy(&short, software.as_deref()),
        )
    };
    r = r.with("required", required).with("achieved", achieved);
    if other_folders.is_none() {
        r = r.with(
            "note",
            "the folder count is unknown, so 2 IMAP sessions were assumed",
        );
    }
    for (p, side) in sides {
        r = r.with(p.prefix(), side.evidence());
    }
    if r.status == Status::Pass {
        r.remedy = None;
    }
    r
}

/// The servers' refusals, quoted, as a suffix of the summary (empty when none refused).
fn refusals(sides: &BTreeMap<Protocol, Side>) -> String {
    let said = sides
        .iter()
        .filter_map(|(p, s)| {
            s.refusal
                .as_ref()
                .map(|r| format!("{p} refused session {}: {}", s.alive + 1, r.message))
        })
        .collect::<Vec<_>>()
        .join("; ");
    if said.is_empty() {
        String::new()
    } else {
        format!("; {said}")
    }
}

/// Closes the sessions other plugins left for this one when it cannot use them.
async fn release_held(cx: &mut RunContext) {
    let wait = cx.io_timeout().min(Duration::from_secs(5));
    for held in std::mem::take(&mut cx.held) {
        held.session.close(wait).await;
    }
}
