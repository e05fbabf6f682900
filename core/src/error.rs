//! Network errors, each with a stable `error.type` value for spans and metrics.

use std::net::SocketAddr;
use std::time::Duration;

/// What went wrong on the wire. Each variant carries what a user needs to act on it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetError {
    #[error("DNS lookup of {host} failed: {reason}")]
    Dns { host: String, reason: String },
    #[error("connection to {address} refused")]
    Refused { address: SocketAddr },
    #[error("connection to {address} timed out after {after:?} (from {local})")]
    ConnectTimeout {
        address: SocketAddr,
        local: String,
        after: Duration,
    },
    #[error("no route to {address}: {reason}")]
    Unreachable { address: SocketAddr, reason: String },
    #[error("timed out after {after:?} waiting for {waiting_for}")]
    Timeout {
        waiting_for: String,
        after: Duration,
    },
    #[error("connection reset by the server")]
    Reset,
    #[error("the server closed the connection{0}")]
    Closed(String),
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error("unexpected reply: {0}")]
    Protocol(String),
    #[error("the check's deadline passed while waiting for a connection slot to {server}")]
    BudgetExhausted { server: String },
    #[error("the server does not offer STARTTLS")]
    StarttlsNotOffered,
    #[error("{0}")]
    Io(String),
    /// The reply overran the probe's own size bound for it: the probe's limit, not a verdict on
    /// the server (results that rest on it are `not_verified`).
    #[error("{0}")]
    TooLarge(String),
}

/// The stable `error.type` values of spans, `error_type` in evidence and metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorType {
    DnsFailure,
    ConnectionRefused,
    Timeout,
    HostUnreachable,
    ConnectionReset,
    ConnectionClosed,
    TlsHandshake,
    Protocol,
    ConnectionBudget,
    StarttlsNotOffered,
    Io,
    /// The target has no such server (no `--smtp`).
    NotConfigured,
    /// The server sent no certificate.
    NoCertificate,
    /// A reply larger than the probe's bound for it.
    ReplyTooLarge,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::DnsFailure => "dns_failure",
            ErrorType::ConnectionRefused => "connection_refused",
            ErrorType::Timeout => "timeout",
            ErrorType::HostUnreachable => "host_unreachable",
            ErrorType::ConnectionReset => "connection_reset",
            ErrorType::ConnectionClosed => "connection_closed",
            ErrorType::TlsHandshake => "tls_handshake",
            ErrorType::Protocol => "protocol",
            ErrorType::ConnectionBudget => "connection_budget",
            ErrorType::StarttlsNotOffered => "starttls_not_offered",
            ErrorType::Io => "io",
            ErrorType::NotConfigured => "not_configured",
            ErrorType::NoCertificate => "no_certificate",
            ErrorType::ReplyTooLarge => "reply_too_large",
        }
    }
}

impl std::fmt::Display for ErrorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl NetError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorType {
        match self {
            NetError::Dns { .. } => ErrorType::DnsFailure,
            NetError::Refused { .. } => ErrorType::ConnectionRefused,
            NetError::ConnectTimeout { .. } | NetError::Timeout { .. } => ErrorType::Timeout,
            NetError::Unreachable { .. } => ErrorType::HostUnreachable,
            NetError::Reset => ErrorType::ConnectionReset,
            NetError::Closed(_) => ErrorType::ConnectionClosed,
            NetError::Tls(_) => ErrorType::TlsHandshake,
            NetError::Protocol(_) => ErrorType::Protocol,
            NetError::BudgetExhausted { .. } => ErrorType::ConnectionBudget,
            NetError::StarttlsNotOffered => ErrorType::StarttlsNotOffered,
            NetError::Io(_) => ErrorType::Io,
            NetError::TooLarge(_) => ErrorType::ReplyTooLarge,
        }
    }

    /// The stable `error.type` value.
    pub fn error_type(&self) -> &'static str {
        self.kind().as_str()
    }

    /// Maps an I/O error during an exchange (not a connect) onto the variants above.
    pub fn from_io(e: &std::io::Error) -> NetError {
        use std::io::ErrorKind::*;
        match e.kind() {
            ConnectionReset | ConnectionAborted | BrokenPipe => NetError::Reset,
            UnexpectedEof => NetError::Closed(String::new()),
            TimedOut => NetError::Timeout {
                waiting_for: "the server".into(),
                after: Duration::ZERO,
            },
            _ => NetError::Io(e.to_string()),
        }
    }
}

/// Runs `fut` with a timeout, naming what it waited for when it expires.
pub async fn within<T, F>(after: Duration, waiting_for: &str, fut: F) -> Result<T, NetError>
where
    F: std::future::Future<Output = Result<T, NetError>>,
{
    match tokio::time::timeout(after, fut).await {
        Ok(r) => r,
        Err(_) => Err(NetError::Timeout {
            waiting_for: waiting_for.to_string(),
            after,
        }),
    }
}
