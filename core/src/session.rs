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
use crate::tls::{Handshake, SessionCache, TlsEngine, Trust};

/// An open, logged-in session.
pub trait MailSession: Send {
    /// Whether its TLS handshake resumed a session of the run (see [`Handshake::resumed`]).
    fn resumed(&self) -> bool {
        false
    }
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
    /// The session failed on the probe's own bound (a reply larger than the probe reads), not
    /// because the server refused it: a check must not blame the server for it.
    pub own_limit: bool,
}

impl SessionRefusal {
    pub fn at(step: SessionStep, message: impl Into<String>) -> Self {
        SessionRefusal {
            step,
            message: message.into(),
            own_limit: false,
        }
    }

    /// A session lost to the probe's own bound at `step` (see [`SessionRefusal::own_limit`]).
    pub fn probe_limit(step: SessionStep, message: impl Into<String>) -> Self {
        SessionRefusal {
            own_limit: true,
            ..SessionRefusal::at(step, message)
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
    /// The TLS engine of the run's first handshake with this port: OpenSSL for a server rustls
    /// cannot speak to, rustls otherwise. The new sessions use the same.
    pub engine: TlsEngine,
    /// The run's TLS sessions with this port: a new session resumes one of them.
    pub tls_sessions: SessionCache,
}

impl OpenParams {
    /// Refuses a new session's certificate before any credential goes out: one a strict client
    /// would reject (unless the user allowed an insecure certificate), or a leaf other than the
    /// pinned one.
    ///
    /// A resumed session shows no certificate on the wire: its chain and verdict are those of
    /// the session it resumed, which only a handshake of this run with this port can have
    /// created (the store is the run's own). The server proved it holds that session's secret,
    /// so the pin compares the leaf that session was created with, and holds by construction
    /// when it was the run's first.
    pub fn check_certificate(&self, h: &Handshake) -> Result<(), SessionRefusal> {
        let name_refused = h
            .verify_error
            .as_deref()
            .is_some_and(crate::tls::is_name_refusal);
        if !h.verified && (name_refused || !self.target.allow_insecure_cert) {
            let why = h.verify_error.as_deref().unwrap_or("not verified");
            return Err(SessionRefusal::at(
                SessionStep::Certificate,
                format!("the certificate is not trusted ({why}); credentials were not sent"),
            ));
        }
        // A TLS library that does not carry the chain with a resumed session: the resumption
        // is the proof.
        let carried = !(h.resumed && h.chain.is_empty());
        if let Some(pinned) = &self.pinned_leaf
            && carried
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Budgets;

    fn params(pinned: &[u8]) -> OpenParams {
        OpenParams {
            target: Arc::new(crate::model::tests::target()),
            trust: Trust::load(None).unwrap(),
            budgets: Arc::new(Budgets::new(1)),
            wait: Duration::from_secs(1),
            pinned_leaf: Some(pinned.to_vec()),
            engine: TlsEngine::Rustls,
            tls_sessions: SessionCache::new(),
        }
    }

    fn handshake(chain: Vec<Vec<u8>>, resumed: bool) -> Handshake {
        Handshake {
            version: crate::profile::TlsVersion::Tls13,
            cipher: "TLS_AES_256_GCM_SHA384".into(),
            chain,
            verified: true,
            verify_error: None,
            engine: TlsEngine::Rustls,
            resumed,
        }
    }

    #[test]
    fn a_resumed_session_is_held_to_the_leaf_of_the_session_it_resumed() {
        let p = params(b"first leaf");
        // rustls carries the resumed session's chain: the pin compares it.
        assert!(
            p.check_certificate(&handshake(vec![b"first leaf".to_vec()], true))
                .is_ok()
        );
        let other = p
            .check_certificate(&handshake(vec![b"another leaf".to_vec()], true))
            .unwrap_err();
        assert_eq!(other.step, SessionStep::Certificate);
    }

    #[test]
    fn a_resumed_session_without_a_chain_relies_on_the_resumption() {
        let p = params(b"first leaf");
        assert!(p.check_certificate(&handshake(Vec::new(), true)).is_ok());
        // A full handshake without a certificate proves nothing.
        let e = p
            .check_certificate(&handshake(Vec::new(), false))
            .unwrap_err();
        assert_eq!(e.step, SessionStep::Certificate);
    }
}
