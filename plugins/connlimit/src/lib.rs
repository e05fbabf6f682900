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

use std::collections::BTreeMap;
use std::time::Duration;

use mailprobe_core::context::StepTimer;
use mailprobe_core::plugin::{BoxFuture, PluginError};
use mailprobe_core::session::{MailSession, SessionRefusal, SessionStep};
use mailprobe_core::{
    CheckPlugin, Measure, NetError, PluginInfo, Protocol, RequirementResult, RequirementSpec,
    RunContext, Status,
};
use mailprobe_plugin_imap::ImapFacts;
use serde_json::{Value, json};

pub const NAME: &str = "connlimit";
pub const ID: &str = "connections.concurrent";

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
    alive: usize,
    refusal: Option<SessionRefusal>,
    noop_failures: Vec<String>,
}

impl Side {
    fn evidence(&self) -> Value {
        let mut v = json!({
            "required": self.required,
            "achieved": self.alive,
            "reused": self.held,
            "opened": self.opened,
        });
        if let Some(r) = &self.refusal {
            v["refused_at"] = json!(r.step.as_str());
            v["refusal"] = json!(r.message);
        }
        if !self.noop_failures.is_empty() {
            v["dropped"] = json!(self.noop_failures);
        }
        v
    }
}

async fn run(cx: &mut RunContext) {
    if cx.skip_if_blocked(ID) {
        release_held(cx).await;
        return;
    }
    let rules = cx.target.profile.connections.clone();
    let other_folders = cx.facts.get::<ImapFacts>().and_then(|f| f.other_folders);
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
    let required: usize = want.values().sum();

    // Never overstep the budget: better no answer than eating the CRM's own connections.
    for (p, n) in &want {
        let reserved = cx.reserved(*p);
        if reserved < *n {
            let server = cx
                .target
                .endpoint(*p)
                .map(|e| e.authority())
                .unwrap_or_default();
            cx.report(
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
            release_held(cx).await;
            return;
        }
        if !cx.openers.contains_key(p) {
            cx.report(RequirementResult::skip(
                ID,
                p.prefix(),
                format!(
                    "not evaluated: the {p} plugin did not run, so no {p} session can be opened"
                ),
            ));
            release_held(cx).await;
            return;
        }
    }

    let wait = cx.io_timeout();
    let mut sessions: Vec<(Protocol, Box<dyn MailSession>)> = Vec::new();
    let mut sides: BTreeMap<Protocol, Side> = BTreeMap::new();
    for held in std::mem::take(&mut cx.held) {
        if want.contains_key(&held.protocol)
            && sessions.iter().filter(|(p, _)| *p == held.protocol).count() < want[&held.protocol]
        {
            sides.entry(held.protocol).or_default().held += 1;
            sessions.push((held.protocol, held.session));
        } else {
            held.session.close(wait).await;
        }
    }

    // Open the missing sessions one after the other, stopping a protocol at its first refusal:
    // the server has said what its limit is, and more attempts would only add to its count.
    let params = cx.open_params();
    for (p, n) in want.clone() {
        let side = sides.entry(p).or_default();
        side.required = n;
        let opener = cx.openers[&p].clone();
        while sessions.iter().filter(|(q, _)| *q == p).count() < n {
            let index = sessions.iter().filter(|(q, _)| *q == p).count() + 1;
            let timer = StepTimer::start();
            let slot = cx.slot(p, wait).await;
            let opened = match slot {
                Ok(slot) => opener.open(params.clone(), slot).await,
                Err(e) => Err(SessionRefusal::at(SessionStep::Connect, e.to_string())),
            };
            let ep = cx.target.endpoint(p).cloned();
            let outcome: Result<(), NetError> = match &opened {
                Ok(_) => Ok(()),
                Err(r) => Err(NetError::Protocol(format!("{}: {}", r.step, r.message))),
            };
            let mut attrs = BTreeMap::new();
            attrs.insert("mailprobe.session.index".into(), index.to_string());
            cx.record_step(
                timer,
                &format!("open {} session", p.prefix()),
                ep.as_ref(),
                &outcome,
                attrs,
            );
            let side = sides.entry(p).or_default();
            match opened {
                Ok(s) => {
                    side.opened += 1;
                    sessions.push((p, s));
                }
                Err(r) => {
                    side.refusal = Some(r);
                    break;
                }
            }
        }
    }

    // All of them at the same moment: a NOOP on each while every one is open.
    let mut achieved = 0;
    for (p, s) in sessions.iter_mut() {
        let timer = StepTimer::start();
        let out = s.noop(wait).await;
        let ep = cx.target.endpoint(*p).cloned();
        cx.record_step(
            timer,
            &format!("noop {}", p.prefix()),
            ep.as_ref(),
            &out,
            BTreeMap::new(),
        );
        let side = sides.entry(*p).or_default();
        match out {
            Ok(()) => {
                side.alive += 1;
                achieved += 1;
            }
            // The server's own words where it gave any.
            Err(NetError::Protocol(words)) => side.noop_failures.push(words),
            Err(e) => side.noop_failures.push(e.to_string()),
        }
    }

    // Close everything, whatever happened, so no session outlives the run.
    let timer = StepTimer::start();
    futures::future::join_all(sessions.into_iter().map(|(_, s)| s.close(wait))).await;
    cx.record_step::<()>(timer, "close sessions", None, &Ok(()), BTreeMap::new());

    let software = cx.facts.get::<ImapFacts>().and_then(|f| f.software.clone());
    let mut evidence = serde_json::Map::new();
    for (p, side) in &sides {
        evidence.insert(p.prefix().to_string(), side.evidence());
    }
    let detail = sides
        .iter()
        .map(|(p, s)| format!("{}/{} {p}", s.alive, s.required))
        .collect::<Vec<_>>()
        .join(", ");
    let mut r = if achieved >= required {
        RequirementResult::pass(
            ID,
            format!("held {achieved} authenticated sessions at once ({detail})"),
        )
    } else {
        let short: Vec<Protocol> = sides
            .iter()
            .filter(|(_, s)| s.alive < s.required)
            .map(|(p, _)| *p)
            .collect();
        let said = sides
            .iter()
            .filter_map(|(p, s)| {
                s.refusal
                    .as_ref()
                    .map(|r| format!("{p} refused session {}: {}", s.alive + 1, r.message))
            })
            .collect::<Vec<_>>()
            .join("; ");
        RequirementResult::fail(
            ID,
            format!(
                "the server allowed {achieved} of the {required} concurrent sessions the CRM needs ({detail}){}",
                if said.is_empty() {
                    String::new()
                } else {
                    format!("; {said}")
                }
            ),
            remedy(&short, software.as_deref(), &sides),
        )
    };
    r = r.with("required", required).with("achieved", achieved);
    if other_folders.is_none() {
        r = r.with(
            "note",
            "the folder count is unknown, so 2 IMAP sessions were assumed",
        );
    }
    for (k, v) in evidence {
        r = r.with(&k, v);
    }
    if r.status == Status::Pass {
        r.remedy = None;
    }
    cx.report(r);
}

/// Closes the sessions other plugins left for this one when it cannot use them.
async fn release_held(cx: &mut RunContext) {
    let wait = cx.io_timeout().min(Duration::from_secs(5));
    for held in std::mem::take(&mut cx.held) {
        held.session.close(wait).await;
    }
}

fn remedy(short: &[Protocol], software: Option<&str>, sides: &BTreeMap<Protocol, Side>) -> String {
    let mut parts = Vec::new();
    for p in short {
        let need = sides.get(p).map_or(0, |s| s.required);
        parts.push(match p {
            Protocol::Imap => match software {
                Some("Dovecot") => format!(
                    "Dovecot: raise `mail_max_userip_connections` (protocol imap) to at least {} (the CRM holds {need} at once from one address; 10 or more leaves room for mail clients)",
                    need.max(10)
                ),
                Some("Courier-IMAP") => format!(
                    "Courier: raise MAXPERIP in /etc/courier/imapd to at least {} (default 4)",
                    need.max(10)
                ),
                Some("Gmail") => "Gmail allows 15 simultaneous IMAP connections per account: close other clients of this mailbox".to_string(),
                Some("Microsoft Exchange") => format!(
                    "Exchange: raise MaxConnectionsPerUser / MaxConnectionFromSingleIP of the IMAP4 service (Set-ImapSettings) to at least {need}"
                ),
                _ => format!("Raise the IMAP server's per-user/per-IP connection limit to at least {need}"),
            },
            Protocol::Smtp => format!(
                "Raise the SMTP server's concurrent connection limit to at least {need} (Postfix: `smtpd_client_connection_count_limit`, or list the CRM's addresses in `smtpd_client_event_limit_exceptions`)"
            ),
        });
    }
    if parts.is_empty() {
        "Check the server's connection limits.".to_string()
    } else {
        parts.join("; ") + "."
    }
}
