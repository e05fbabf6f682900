//! The sessions the round trip works over: the IMAP and SMTP plugins' own logged-in sessions
//! while the run still holds them (no connection of its own), else new ones opened with those
//! plugins' openers: logged in the way they did, within the run's connection slots, and pinned
//! to the certificate of the run's first handshake with the port before any credential goes out.

use std::collections::BTreeMap;
use std::time::Duration;

use mailprobe_core::context::{HeldSession, StepTimer};
use mailprobe_core::session::MailSession;
use mailprobe_core::{NetError, Protocol, RunContext};
use mailprobe_mailwire::handshake;
use mailprobe_plugin_imap::ImapSession;
use mailprobe_plugin_imap::session::HeldImap;
use mailprobe_plugin_smtp::SmtpSession;

/// A session the check took for a while.
pub struct Borrowed {
    protocol: Protocol,
    session: Box<dyn MailSession>,
    /// Taken from the run's held sessions (given back), rather than opened (closed after).
    reused: bool,
}

impl Borrowed {
    /// Whether it was one the run already held.
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// The IMAP plugin's session, when this is one.
    pub fn imap(&mut self) -> Option<&mut ImapSession> {
        let any = self.session.as_any_mut()?;
        any.downcast_mut::<HeldImap>().map(|h| &mut h.session)
    }

    /// The SMTP plugin's session, when this is one.
    pub fn smtp(&mut self) -> Option<&mut SmtpSession> {
        self.session.as_any_mut()?.downcast_mut::<SmtpSession>()
    }

    /// Gives a reused session that is still good back to the run (the runner closes it at the
    /// end, or a later plugin reuses it), and closes any other.
    pub async fn release(self, cx: &mut RunContext, healthy: bool) {
        if self.reused && healthy {
            cx.held.push(HeldSession {
                protocol: self.protocol,
                session: self.session,
            });
        } else {
            let wait = cx.io_timeout().min(Duration::from_secs(2));
            self.session.close(wait).await;
        }
    }
}

/// Takes a logged-in session of `protocol`: a held one, else a new one from the protocol
/// plugin's opener. The error says why there is none (the probe's limits, not the server's
/// fault: the login itself was judged by the protocol's plugin).
pub async fn take(cx: &mut RunContext, protocol: Protocol) -> Result<Borrowed, String> {
    if let Some(i) = cx.held.iter().position(|h| h.protocol == protocol) {
        let held = cx.held.remove(i);
        return Ok(Borrowed {
            protocol,
            session: held.session,
            reused: true,
        });
    }
    let Some(opener) = cx.openers.get(&protocol).cloned() else {
        return Err(format!(
            "no logged-in {protocol} session to use: the {} plugin did not log in",
            protocol.prefix()
        ));
    };
    let wait = cx.io_timeout();
    // Like the connection-limit check's sessions: the first handshake's leaf and TLS engine.
    let params = handshake::open_params(cx, protocol);
    let timer = StepTimer::start();
    let slot = cx.slot(protocol, wait).await;
    let opened = match slot {
        Ok(slot) => match tokio::time::timeout(cx.remaining(), opener.open(params, slot)).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(r)) => Err(NetError::Protocol(format!(
                "a new {protocol} session was refused at {}: {}",
                r.step, r.message
            ))),
            Err(_) => Err(NetError::Timeout {
                waiting_for: format!("a new {protocol} session"),
                after: cx.remaining(),
            }),
        },
        Err(e) => Err(e),
    };
    let endpoint = cx.target.endpoint(protocol).cloned();
    let outcome: Result<(), NetError> = opened.as_ref().map(|_| ()).map_err(Clone::clone);
    cx.record_step(
        timer,
        "open_session",
        endpoint.as_ref(),
        &outcome,
        BTreeMap::new(),
    );
    match opened {
        Ok(session) => Ok(Borrowed {
            protocol,
            session,
            reused: false,
        }),
        Err(e) => Err(e.to_string()),
    }
}
