//! mailprobe's core: what a check plugin sees. The mailbox model, secrets, the check-plugin
//! interface and registry (with the catalogue of requirements the plugins declare), the run
//! context that lets checks share what they learned (typed facts, steps, held sessions), the
//! requirement and verdict model, the report, and the network and TLS helpers every plugin uses.
//!
//! It knows no mail protocol and no requirement ID: those belong to the plugins. The runtime
//! that drives plugins (configuration, runner, scheduler, sharding) is `mailprobe-runtime`.
//! Plugins depend on this crate (and on interface crates such as `mailprobe-mailwire`), never
//! on the runtime.
#![forbid(unsafe_code)]

pub mod client_model;
pub mod context;
pub mod contract;
pub mod driver;
pub mod error;
pub mod fact;
pub mod file;
pub mod future;
pub mod lines;
pub mod model;
pub mod net;
pub mod plugin;
pub mod profile;
pub mod redact;
pub mod report;
pub mod requirement;
pub mod scope;
pub mod secret;
pub mod session;
pub mod tls;
pub mod transcript;

pub use context::{Handshake, RunContext, Step};
pub use driver::{RunDriver, RunRecord};
pub use error::NetError;
pub use fact::{Fact, Facts};
pub use model::{Endpoint, Protocol, Security, Target};
pub use plugin::{CheckPlugin, PluginError, PluginInfo, PluginOutcome, Registry, Selection};
pub use profile::{Profile, TlsVersion};
pub use requirement::{Measure, RequirementResult, RequirementSpec, Status, Verdict};
pub use secret::Secret;

/// Installs ring as the process-wide rustls crypto provider. Safe to call more than once.
///
/// rustls is built on ring only here; installing it explicitly keeps `ClientConfig::builder()`
/// from panicking should another provider ever be compiled in beside it.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
