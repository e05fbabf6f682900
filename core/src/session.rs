//! Authenticated mail sessions as the connection-limit check sees them: something to open, to
//! keep alive with a NOOP, and to close cleanly. The IMAP and SMTP plugins provide them, so the
//! connection-limit plugin needs neither of them as a dependency.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;

use crate::error::NetError;
use crate::future::BoxFuture;
use crate::model::Target;
use crate::net::Budgets;
use crate::tls::{Handshake, Trust};

/// An open, logged-in session.
pub trait MailSession: Send {
    /// A no-op round trip (IMAP `NOOP`, SMTP `NOOP`): proves the server still holds the session.
    fn noop(&mut self, wait: Duration) -> BoxFuture<'_, Result<(), NetError>>;
    /// Ends the session politely (IMAP `LOGOUT`, SMTP `QUIT`), then closes the connection.
    fn close(self: Box<Self>, wait: Duration) -> BoxFuture<'static, ()>;
    /// The session as its concrete type, for a plugin that knows the type of the plugin that
    /// opened it (the round-trip check reuses the IMAP and SMTP plugins' sessions). `None`
    /// when the session does not offer it.
    fn as_any_mut(&mut self) -> Option<&mut (dyn std::any::Any + Send)> {
        None
    }
}

/// The step of opening a session that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStep {
    Connect,
    Greeting,
    Starttls,
    TlsHandshake,
    /// The certificate of the new session is not the one the run already checked.
    Certificate,
    Ehlo,
    Login,
}

impl SessionStep {
    /// The stable name, in evidence (`refused_at`).
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStep::Connect => "connect",
            SessionStep::Greeting => "greeting",
            SessionStep::Starttls => "starttls",
            SessionStep::TlsHandshake => "tls_handshake",
            SessionStep::Certificate => "certificate",
            SessionStep::Ehlo => "ehlo",
            SessionStep::Login => "login",
        }
    }
}

impl std::fmt::Display for SessionStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a session could not be opened, in the server's own words where it gave any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRefusal {
    pub step: SessionStep,
    pub message: String,
}

impl SessionRefusal {
    pub fn at(step: SessionStep, message: impl Into<String>) -> Self {
        SessionRefusal {
            step,
            message: message.into(),
        }
    }
}

/// What an opener needs from the run.
#[derive(Clone)]
pub struct OpenParams {
    pub target: Arc<Target>,
    pub trust: Trust,
    pub budgets: Arc<Budgets>,
    /// Bound for each exchange.
    pub wait: Duration,
    /// The leaf certificate (DER) of the run's first handshake with this port. A new session
    /// proves it talks to the server the run already checked before it sends credentials:
    /// otherwise a man in the middle who lets the first connection through collects the
    /// password on the others.
    pub pinned_leaf: Option<Vec<u8>>,
}

impl OpenParams {
    /// Refuses a new session's certificate before any credential goes out: one a strict client
    /// would reject (unless the user allowed an insecure certificate), or a leaf other than the
    /// pinned one.
    pub fn check_certificate(&self, h: &Handshake) -> Result<(), SessionRefusal> {
        if !h.verified && !self.target.allow_insecure_cert {
            let why = h.verify_error.as_deref().unwrap_or("not verified");
            return Err(SessionRefusal::at(
                SessionStep::Certificate,
                format!("the certificate is not trusted ({why}); credentials were not sent"),
            ));
        }
        if let Some(pinned) = &self.pinned_leaf
            && h.chain.first() != Some(pinned)
        {
            return Err(SessionRefusal::at(
                SessionStep::Certificate,
                "the server presented a leaf certificate other than the one of the run's first \
                 connection; credentials were not sent",
            ));
        }
        Ok(())
    }
}

/// Opens new authenticated sessions to one protocol's server, the way its plugin does.
pub trait SessionOpener: Send + Sync {
    fn open(
        &self,
        params: OpenParams,
        slot: OwnedSemaphorePermit,
    ) -> BoxFuture<'static, Result<Box<dyn MailSession>, SessionRefusal>>;
}
