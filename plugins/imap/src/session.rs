//! IMAP sessions for the connection-limit check: the session this plugin keeps after its own
//! login, and an opener that logs in more the way the plugin did.

use std::time::Duration;

use mailprobe_core::net::{self, Conn};
use mailprobe_core::plugin::BoxFuture;
use mailprobe_core::session::{
    MailSession, OpenParams, SessionOpener, SessionRefusal, SessionStep,
};
use mailprobe_core::tls::TlsConn;
use mailprobe_core::{NetError, Security, tls};
use tokio::sync::OwnedSemaphorePermit;

use crate::ImapSession;
use crate::login::{Method, arm, imap_error, log_in, server_words};
use crate::wire::{self, Status, Wire};

/// A logged-in IMAP session held for the connection-limit check.
pub struct HeldImap {
    pub session: ImapSession,
    /// Whether its TLS handshake resumed an earlier session of the run.
    pub resumed: bool,
}

impl MailSession for HeldImap {
    fn resumed(&self) -> bool {
        self.resumed
    }

    fn noop(&mut self, wait: Duration) -> BoxFuture<'_, Result<(), NetError>> {
        Box::pin(async move {
            arm(&mut self.session, "NOOP");
            match tokio::time::timeout(wait, self.session.noop()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(imap_error(&e)),
                Err(_) => Err(NetError::Timeout {
                    waiting_for: "the reply to NOOP".into(),
                    after: wait,
                }),
            }
        })
    }

    fn close(mut self: Box<Self>, wait: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            arm(&mut self.session, "LOGOUT");
            let _ = tokio::time::timeout(wait, self.session.logout()).await;
        })
    }

    fn as_any_mut(&mut self) -> Option<&mut (dyn std::any::Any + Send)> {
        Some(self)
    }
}

/// Opens authenticated IMAP sessions with the method the plugin's own login used.
pub struct ImapOpener {
    pub(crate) method: Method,
}

impl SessionOpener for ImapOpener {
    fn open(
        &self,
        params: OpenParams,
        slot: OwnedSemaphorePermit,
    ) -> BoxFuture<'static, Result<Box<dyn MailSession>, SessionRefusal>> {
        let method = self.method;
        Box::pin(async move {
            open(params, slot, method).await.map(|(session, resumed)| {
                Box::new(HeldImap { session, resumed }) as Box<dyn MailSession>
            })
        })
    }
}

async fn open(
    p: OpenParams,
    slot: OwnedSemaphorePermit,
    method: Method,
) -> Result<(ImapSession, bool), SessionRefusal> {
    let ep = p.target.imap.clone();
    let wait = p.wait;
    let conn = net::connect(&ep, &p.budgets, Some(slot), wait)
        .await
        .map_err(|e| SessionRefusal::at(SessionStep::Connect, e.to_string()))?;
    let (stream, resumed) = match ep.security {
        Security::Starttls => {
            // A server at its limit may greet with `* BYE`; the preamble reports it.
            let (conn, _) = wire::starttls(conn, wait)
                .await
                .map_err(|e| SessionRefusal::at(SessionStep::Greeting, e.to_string()))?;
            handshake(conn, &ep.host, &p, wait).await?
        }
        Security::Tls => {
            let (tls, resumed) = handshake(conn, &ep.host, &p, wait).await?;
            let mut w = Wire::new(tls);
            let greeting = wire::read_greeting(&mut w, wait)
                .await
                .map_err(|e| SessionRefusal::at(SessionStep::Greeting, e.to_string()))?;
            if greeting.status == Status::Bye {
                return Err(SessionRefusal::at(SessionStep::Greeting, greeting.line));
            }
            (w.into_inner(), resumed)
        }
    };
    let attempt = tokio::time::timeout(wait, log_in(stream, method, &p.target, false)).await;
    match attempt {
        Ok(Ok((session, _))) => Ok((session, resumed)),
        Ok(Err((e @ async_imap::error::Error::Io(_), _))) => Err(match imap_error(&e) {
            // A reply larger than the probe reads: its own bound, not a refusal.
            too_large @ NetError::TooLarge(_) => {
                SessionRefusal::probe_limit(SessionStep::Login, too_large.to_string())
            }
            other => SessionRefusal::at(SessionStep::Login, other.to_string()),
        }),
        Ok(Err((e, _))) => Err(SessionRefusal::at(
            SessionStep::Login,
            server_words(&e.to_string()),
        )),
        Err(_) => Err(SessionRefusal::at(
            SessionStep::Login,
            format!("no answer to {} within {wait:?}", method.as_str()),
        )),
    }
}

async fn handshake(
    conn: Conn,
    host: &str,
    p: &OpenParams,
    wait: Duration,
) -> Result<(TlsConn<Conn>, bool), SessionRefusal> {
    let (s, h) = tls::connect(conn, host, &p.trust, &p.tls_sessions, wait, p.engine)
        .await
        .map_err(|e| SessionRefusal::at(SessionStep::TlsHandshake, e.to_string()))?;
    p.check_certificate(&h)?;
    Ok((s, h.resumed))
}
