//! IMAP sessions for the connection-limit check: the session this plugin keeps after its own
//! login, and an opener that logs in more the way the plugin did.

use std::time::Duration;

use mailprobe_core::net::{self, Conn};
use mailprobe_core::plugin::BoxFuture;
use mailprobe_core::session::{
    MailSession, OpenParams, SessionOpener, SessionRefusal, SessionStep,
};
use mailprobe_core::{NetError, Security, tls};
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::client::TlsStream;

use crate::ImapSession;
use crate::login::{Method, log_in, server_words};
use crate::wire::{self, Status, Wire};

/// A logged-in IMAP session held for the connection-limit check.
pub struct HeldImap(pub ImapSession);

impl MailSession for HeldImap {
    fn noop(&mut self, wait: Duration) -> BoxFuture<'_, Result<(), NetError>> {
        Box::pin(async move {
            match tokio::time::timeout(wait, self.0.noop()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(NetError::Protocol(server_words(&e.to_string()))),
                Err(_) => Err(NetError::Timeout {
                    waiting_for: "the reply to NOOP".into(),
                    after: wait,
                }),
            }
        })
    }

    fn close(mut self: Box<Self>, wait: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let _ = tokio::time::timeout(wait, self.0.logout()).await;
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
            open(params, slot, method)
                .await
                .map(|s| Box::new(HeldImap(s)) as Box<dyn MailSession>)
        })
    }
}

async fn open(
    p: OpenParams,
    slot: OwnedSemaphorePermit,
    method: Method,
) -> Result<ImapSession, SessionRefusal> {
    let ep = p.target.imap.clone();
    let wait = p.wait;
    let conn = net::connect(&ep, &p.budgets, Some(slot), wait)
        .await
        .map_err(|e| SessionRefusal::at(SessionStep::Connect, e.to_string()))?;
    let stream = match ep.security {
        Security::Starttls => {
            // A server at its limit may greet with `* BYE`; the preamble reports it.
            let (conn, _) = wire::starttls(conn, wait)
                .await
                .map_err(|e| SessionRefusal::at(SessionStep::Greeting, e.to_string()))?;
            handshake(conn, &ep.host, &p, wait).await?
        }
        Security::Tls => {
            let tls = handshake(conn, &ep.host, &p, wait).await?;
            let mut w = Wire::new(tls);
            let greeting = wire::read_greeting(&mut w, wait)
                .await
                .map_err(|e| SessionRefusal::at(SessionStep::Greeting, e.to_string()))?;
            if greeting.status == Status::Bye {
                return Err(SessionRefusal::at(SessionStep::Greeting, greeting.line));
            }
            w.into_inner()
        }
    };
    let client = async_imap::Client::new(stream);
    let attempt = tokio::time::timeout(wait, log_in(client, method, &p.target)).await;
    match attempt {
        Ok(Ok((session, _))) => Ok(session),
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
) -> Result<TlsStream<Conn>, SessionRefusal> {
    let (s, h) = tls::handshake(conn, host, &p.trust, wait)
        .await
        .map_err(|e| SessionRefusal::at(SessionStep::TlsHandshake, e.to_string()))?;
    p.check_certificate(&h)?;
    Ok(s)
}
