//! SMTP sessions for the connection-limit check: the session this plugin keeps after its own
//! login, and an opener that logs in more the same way.

use std::time::Duration;

use mailprobe_core::net::{self, Conn};
use mailprobe_core::plugin::BoxFuture;
use mailprobe_core::session::{
    MailSession, OpenParams, SessionOpener, SessionRefusal, SessionStep,
};
use mailprobe_core::{NetError, Security, tls};
use tokio::sync::OwnedSemaphorePermit;

use crate::client::{Mechanism, SmtpClient, redact, reply_text, scrubbed_reply};
use crate::{SmtpSession, TlsClient};

impl MailSession for SmtpSession {
    fn resumed(&self) -> bool {
        self.resumed
    }

    fn noop(&mut self, wait: Duration) -> BoxFuture<'_, Result<(), NetError>> {
        Box::pin(async move {
            match self.client.command("NOOP", wait).await {
                Ok(r) if r.code == 250 => Ok(()),
                Ok(r) => Err(NetError::Protocol(reply_text(&r))),
                Err(e) => Err(e),
            }
        })
    }

    fn close(self: Box<Self>, wait: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async move { self.quit(wait).await })
    }

    fn as_any_mut(&mut self) -> Option<&mut (dyn std::any::Any + Send)> {
        Some(self)
    }
}

/// Opens authenticated SMTP sessions with the mechanism the plugin's own login used.
pub struct SmtpOpener {
    pub mechanism: Mechanism,
}

impl SessionOpener for SmtpOpener {
    fn open(
        &self,
        params: OpenParams,
        slot: OwnedSemaphorePermit,
    ) -> BoxFuture<'static, Result<Box<dyn MailSession>, SessionRefusal>> {
        let mechanism = self.mechanism;
        Box::pin(async move {
            open(params, slot, mechanism)
                .await
                .map(|s| Box::new(s) as Box<dyn MailSession>)
        })
    }
}

async fn open(
    p: OpenParams,
    slot: OwnedSemaphorePermit,
    mechanism: Mechanism,
) -> Result<SmtpSession, SessionRefusal> {
    let Some(ep) = p.target.smtp.clone() else {
        return Err(SessionRefusal::at(
            SessionStep::Connect,
            "no SMTP server configured",
        ));
    };
    let wait = p.wait;
    let conn = net::connect(&ep, &p.budgets, Some(slot), wait)
        .await
        .map_err(|e| SessionRefusal::at(SessionStep::Connect, e.to_string()))?;
    let ehlo = crate::client::ehlo_name();
    let (stream, resumed) = match ep.security {
        Security::Tls => handshake(conn, &ep.host, &p, wait).await?,
        Security::Starttls => {
            let mut plain = SmtpClient::new(conn);
            greet(&mut plain, &ehlo, wait).await?;
            let r = plain
                .command("STARTTLS", wait)
                .await
                .map_err(|e| SessionRefusal::at(SessionStep::Starttls, e.to_string()))?;
            if r.code != 220 {
                return Err(SessionRefusal::at(SessionStep::Starttls, reply_text(&r)));
            }
            let conn = plain
                .into_inner()
                .map_err(|e| SessionRefusal::at(SessionStep::Starttls, e.to_string()))?;
            handshake(conn, &ep.host, &p, wait).await?
        }
    };
    let mut client: TlsClient = SmtpClient::new(stream);
    if ep.security == Security::Tls {
        greet(&mut client, &ehlo, wait).await?;
    } else {
        say_ehlo(&mut client, &ehlo, wait).await?;
    }
    let password = p.target.password.expose();
    let user = &p.target.user;
    let r = client
        .auth(mechanism, user, password, wait)
        .await
        .map_err(|e| SessionRefusal::at(SessionStep::Login, redact(&e.to_string(), password)))?;
    if r.code != 235 {
        return Err(SessionRefusal::at(
            SessionStep::Login,
            scrubbed_reply(&r, password),
        ));
    }
    Ok(SmtpSession {
        client,
        endpoint: ep,
        mechanism,
        resumed,
    })
}

/// Reads the 220 greeting (a server at its limit says 421 here) and says EHLO.
async fn greet<S>(
    client: &mut SmtpClient<S>,
    ehlo: &str,
    wait: Duration,
) -> Result<(), SessionRefusal>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let g = client
        .reply(wait)
        .await
        .map_err(|e| SessionRefusal::at(SessionStep::Greeting, e.to_string()))?;
    if g.code != 220 {
        return Err(SessionRefusal::at(SessionStep::Greeting, reply_text(&g)));
    }
    say_ehlo(client, ehlo, wait).await
}

/// Says EHLO and wants 250 (after the greeting, and again after STARTTLS).
async fn say_ehlo<S>(
    client: &mut SmtpClient<S>,
    ehlo: &str,
    wait: Duration,
) -> Result<(), SessionRefusal>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let r = client
        .command(&format!("EHLO {ehlo}"), wait)
        .await
        .map_err(|e| SessionRefusal::at(SessionStep::Ehlo, e.to_string()))?;
    if r.code != 250 {
        return Err(SessionRefusal::at(SessionStep::Ehlo, reply_text(&r)));
    }
    Ok(())
}

async fn handshake(
    conn: Conn,
    host: &str,
    p: &OpenParams,
    wait: Duration,
) -> Result<(tls::TlsConn<Conn>, bool), SessionRefusal> {
    let (s, h) = tls::connect(conn, host, &p.trust, &p.tls_sessions, wait, p.engine)
        .await
        .map_err(|e| SessionRefusal::at(SessionStep::TlsHandshake, e.to_string()))?;
    p.check_certificate(&h)?;
    Ok((s, h.resumed))
}
