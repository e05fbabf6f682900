//! The SDK for mailprobe's dynamic check plugins.
//!
//! A plugin is a `cdylib` that implements [`Plugin`] and exports it with [`export_plugin!`]:
//!
//! ```ignore
//! use mailprobe_plugin_sdk::{Context, Output, Plugin, Requirement, RequirementResult};
//!
//! #[derive(Default)]
//! pub struct Hello;
//!
//! impl Plugin for Hello {
//!     type Config = ();
//!     const NAME: &'static str = "hello";
//!     fn requirements(&self) -> Vec<Requirement> {
//!         vec![Requirement::new("hello.greeting", "the plugin says hello")]
//!     }
//!     fn run(&self, _config: (), cx: &Context, out: &mut Output) -> Result<(), String> {
//!         out.report(RequirementResult::pass("hello.greeting", format!("hello, {}", cx.target.user)));
//!         Ok(())
//!     }
//! }
//!
//! mailprobe_plugin_sdk::export_plugin!(Hello);
//! ```
//!
//! Underneath, the macro exports a `#[repr(C)]` table (see [`abi`]) whose `run` takes and
//! returns JSON (see [`wire`]). The SDK catches panics inside the plugin and returns them as an
//! error result: a panic must never unwind into mailprobe, which would abort the process.
//!
//! A plugin has its own copy of std and tokio: it cannot use mailprobe's runtime. Run async
//! code with [`Context::block_on`], which starts a current-thread runtime in the plugin and
//! bounds the future by the run's deadline.
//!
//! The whole path, from `cargo new --lib` to the loaded check, is in this crate's README.

pub mod abi;
pub mod wire;

#[doc(hidden)]
pub mod export;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

pub use mailprobe_core;
pub use mailprobe_core::context::StepTimer;
pub use mailprobe_core::model::{Endpoint, Protocol, Security, TargetView};
pub use mailprobe_core::{NetError, RequirementResult, Secret, Status, Step};
pub use serde_json;
pub use serde_json::Value;
pub use wire::Requirement;

/// A check in a plugin library.
///
/// The host makes one call of [`Plugin::run`] per mailbox run, on a thread of its own (or in a
/// child process, under `isolation: process`). Calls for different mailboxes may overlap, so
/// keep `run` free of shared mutable state.
pub trait Plugin: Send + Sync + 'static {
    /// The plugin's configuration: the `config` of its entry under `plugins.settings` in the
    /// YAML file, or `--plugin-config NAME=JSON` on the command line. Absent means `Default`.
    type Config: serde::de::DeserializeOwned + Default;

    /// A unique name: lowercase letters, digits, `_` and `-`. By convention it is also the
    /// prefix of the plugin's requirement IDs (`pop3` reports `pop3.login`).
    const NAME: &'static str;

    /// The requirement IDs this plugin reports, with a one-line description each. They must not
    /// be IDs of mailprobe's own requirements or of another plugin's: mailprobe refuses such a
    /// library when it loads it.
    fn requirements(&self) -> Vec<Requirement>;

    /// Evaluates the requirements for `cx.target` and reports each declared requirement into
    /// `out` (with `skip` where a prerequisite failed). An `Err` means nothing could be
    /// evaluated: the requirements left unreported are then `not_verified` with this message.
    fn run(&self, config: Self::Config, cx: &Context, out: &mut Output) -> Result<(), String>;

    /// Checks the configuration beyond its shape (which `Config`'s deserialization checks). The
    /// host calls it when it loads the library, so `mailprobe validate` and the start of `run`
    /// refuse a bad configuration with this message instead of every run failing on it.
    fn validate(&self, _config: &Self::Config) -> Result<(), String> {
        Ok(())
    }
}

/// What a plugin knows of the run that calls it.
#[derive(Debug)]
pub struct Context {
    /// The plugin's own name.
    pub plugin: String,
    /// The mailbox: servers, user, CA file, whether an insecure certificate is allowed.
    pub target: TargetView,
    /// The mailbox password. `Debug` and `Display` hide it; never put it in a result or a log.
    pub password: Secret,
    /// A JSON snapshot of what the plugins that ran before found (the core's `Facts`:
    /// `reach`, `handshake`, `tls_versions`, `imap`, and other plugins' facts under `extra`).
    pub facts: Value,
    deadline: Instant,
}

impl Context {
    /// Builds the context from the host's JSON (done by the SDK; public for plugin unit tests).
    pub fn from_wire(w: wire::ContextJson) -> Self {
        Context {
            plugin: w.plugin,
            target: w.target,
            password: Secret::new(w.password),
            facts: w.facts,
            deadline: Instant::now() + Duration::from_millis(w.remaining_ms),
        }
    }

    /// When the run's deadline passes. The host gives up on the plugin then.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Time left before the deadline (at least 1 ms).
    pub fn remaining(&self) -> Duration {
        self.deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    }

    /// Runs `fut` to completion on a new current-thread tokio runtime (with I/O and timers),
    /// bounded by the deadline. The plugin's tokio is its own, separate from mailprobe's.
    pub fn block_on<F: Future>(&self, fut: F) -> Result<F::Output, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the plugin's async runtime: {e}"))?;
        let wait = self.remaining();
        runtime
            .block_on(async { tokio::time::timeout(wait, fut).await })
            .map_err(|_| format!("did not finish within the run's deadline ({wait:?} left)"))
    }
}

/// What a plugin reports: requirement results, protocol steps (they become spans) and facts.
#[derive(Debug)]
pub struct Output {
    plugin: String,
    results: Vec<RequirementResult>,
    steps: Vec<Step>,
    facts: Value,
}

impl Output {
    pub fn new(plugin: &str) -> Self {
        Output {
            plugin: plugin.to_string(),
            results: Vec::new(),
            steps: Vec::new(),
            facts: Value::Null,
        }
    }

    /// Records a requirement result; a second one for the same ID replaces the first.
    pub fn report(&mut self, result: RequirementResult) {
        match self.results.iter_mut().find(|r| r.id == result.id) {
            Some(existing) => *existing = result,
            None => self.results.push(result),
        }
    }

    pub fn result(&self, id: &str) -> Option<&RequirementResult> {
        self.results.iter().find(|r| r.id == id)
    }

    pub fn results(&self) -> &[RequirementResult] {
        &self.results
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Records a finished protocol step (connect, tls_handshake, greeting, login ...), with the
    /// OpenTelemetry `server.*` attributes filled from `endpoint`.
    pub fn step<T>(
        &mut self,
        timer: StepTimer,
        name: &str,
        endpoint: Option<&Endpoint>,
        outcome: &Result<T, NetError>,
        attributes: BTreeMap<String, String>,
    ) {
        let step = Step::finished(&self.plugin, timer, name, endpoint, outcome, attributes);
        self.steps.push(step);
    }

    /// The plugin's own facts, for the plugins that run after it (`facts.extra.<name>`).
    pub fn set_facts(&mut self, facts: Value) {
        self.facts = facts;
    }

    pub fn into_wire(self, error: Option<String>) -> wire::ResultJson {
        wire::ResultJson {
            results: self.results,
            steps: self.steps,
            facts: self.facts,
            error,
            panicked: false,
        }
    }
}

/// Exports a [`Plugin`] (which must also implement `Default`) as this library's entry point,
/// with the ABI version as a data symbol next to it. Use it once, in the crate root of a
/// `cdylib`.
///
/// The generated items carry `#[unsafe(no_mangle)]` / `#[unsafe(export_name)]` with
/// `#[allow(unsafe_code)]`, so a plugin crate can keep `#![deny(unsafe_code)]` (not `forbid`,
/// which no `allow` can lift).
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        /// The plugin ABI version this library was built with, read by mailprobe before it
        /// calls anything here (see `mailprobe_plugin_sdk::abi`).
        #[allow(unsafe_code)]
        #[unsafe(export_name = "mailprobe_plugin_abi")]
        pub static MAILPROBE_PLUGIN_ABI: u32 = $crate::abi::ABI_VERSION;

        /// mailprobe's entry point (see `mailprobe_plugin_sdk::abi`).
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn mailprobe_plugin_entry() -> *const $crate::abi::PluginTable {
            $crate::export::entry::<$plugin>(env!("CARGO_PKG_VERSION"))
        }
    };
}
