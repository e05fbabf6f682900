//! Authenticated mail sessions as the connection-limit check sees them: something to open, to
//! keep alive with a NOOP, and to close cleanly. The IMAP and SMTP plugins provide them, so the
//! connection-limit plugin needs neither of them as a dependency.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;

use crate::model::Target;
use crate::net::Budgets;
use crate::plugin::BoxFuture;
use crate::tls::Trust;

/// An open, logged-in session.
pub trait MailSession: Send {
    /// A no-op round trip (IMAP `NOOP`, SMTP `NOOP`): proves the server still holds the session.
    fn noop(&mut self, wait: Duration) -> BoxFuture<'_, Result<(), String>>;
    /// Ends the session politely (IMAP `LOGOUT`, SMTP `QUIT`), then closes the connection.
    fn close(self: Box<Self>, wait: Duration) -> BoxFuture<'static, ()>;
}

/// Why a session could not be opened, in the server's own words where it gave any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRefusal {
    /// The step that failed: `connect`, `greeting`, `starttls`, `tls_handshake`, `login`.
    pub step: String,
    pub message: String,
}

impl SessionRefusal {
    pub fn at(step: &str, message: impl Into<String>) -> Self {
        SessionRefusal {
            step: step.to_string(),
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
}

/// Opens new authenticated sessions to one protocol's server, the way its plugin does.
pub trait SessionOpener: Send + Sync {
    fn open(
        &self,
        params: OpenParams,
        slot: OwnedSemaphorePermit,
    ) -> BoxFuture<'static, Result<Box<dyn MailSession>, SessionRefusal>>;
}
