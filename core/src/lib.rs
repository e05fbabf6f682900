//! mailprobe's core: the mailbox model and its configuration, secrets, the check-plugin interface
//! and registry, the run context that lets checks share what they learned, the profile and
//! verdict model, the report renderers and the scheduler.
//!
//! Plugins and exporters depend on this crate only; they never depend on each other.
#![forbid(unsafe_code)]

pub mod config;
pub mod context;
pub mod error;
pub mod model;
pub mod net;
pub mod plugin;
pub mod profile;
pub mod redact;
pub mod report;
pub mod requirement;
pub mod runner;
pub mod scheduler;
pub mod secret;
pub mod session;
pub mod shard;
pub mod starttls;
pub mod tls;

pub use context::{Handshake, RunContext, Step};
pub use error::NetError;
pub use model::{Endpoint, Protocol, Security, Target};
pub use plugin::{CheckPlugin, PluginInfo, Registry};
pub use profile::{Profile, TlsVersion};
pub use requirement::{RequirementResult, Status, Verdict};
pub use secret::Secret;

/// Installs ring as the process-wide rustls crypto provider. Safe to call more than once.
///
/// Both rustls and lettre are built on ring here; with no provider installed explicitly,
/// `ClientConfig::builder()` would panic when it cannot pick one.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
