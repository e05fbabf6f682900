//! The JSON documents that cross the ABI (and the process-isolation pipe). They carry the same
//! serde types as mailprobe's built-in plugin interface, so a dynamic plugin's results and steps
//! go through the same verdict, report, telemetry and alert path.

use std::fmt;

use mailprobe_core::model::TargetView;
use mailprobe_core::{RequirementResult, Step};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `context_json` argument of `run`.
///
/// The password is a field of its own: [`TargetView`] never holds it. This document is never
/// logged, by the host or by the SDK, and its `Debug` output hides the password.
#[derive(Clone, Serialize, Deserialize)]
pub struct ContextJson {
    /// The plugin's own name (its steps and facts are filed under it).
    pub plugin: String,
    pub target: TargetView,
    /// The mailbox password, for plugins that log in. Never log it, never put it in a result.
    pub password: String,
    /// Time left before the run's deadline when the host made the call, in milliseconds. A
    /// duration rather than a point in time, because the plugin may run in another process.
    pub remaining_ms: u64,
    /// A snapshot of what the plugins that ran before this one found (`Facts` of the core).
    #[serde(default)]
    pub facts: Value,
}

impl fmt::Debug for ContextJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextJson")
            .field("plugin", &self.plugin)
            .field("target", &self.target)
            .field("password", &"***")
            .field("remaining_ms", &self.remaining_ms)
            .finish_non_exhaustive()
    }
}

/// The key of the context with which the host asks a plugin only to check its configuration:
/// `{"validate_only": true}`; the answer is a [`ResultJson`] with no results, and an `error`
/// when the configuration is refused.
pub const VALIDATE_ONLY: &str = "validate_only";

/// The `result_json` that `run` returns: `{ results, steps, facts }`, plus `error` when the
/// plugin could not evaluate its requirements at all (it panicked, its config was invalid).
/// Requirements it declared but did not report are then `not_verified` with that error.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ResultJson {
    #[serde(default)]
    pub results: Vec<RequirementResult>,
    #[serde(default)]
    pub steps: Vec<Step>,
    /// The plugin's own facts, kept under its name in `Facts::extra` for later plugins.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub facts: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `error` is the message of a panic the SDK caught (not the plugin's own error). Absent
    /// (false) from an answer of an SDK older than this field: its panics read as failures.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub panicked: bool,
}

impl ResultJson {
    pub fn error(message: impl Into<String>) -> Self {
        ResultJson {
            error: Some(message.into()),
            ..ResultJson::default()
        }
    }

    /// The answer of a run that panicked, with the panic's message.
    pub fn panicked(message: impl Into<String>) -> Self {
        ResultJson {
            panicked: true,
            ..ResultJson::error(message)
        }
    }
}

/// A requirement as a plugin declares it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    pub id: String,
    pub description: String,
}

impl Requirement {
    pub fn new(id: impl Into<String>, description: impl Into<String>) -> Self {
        Requirement {
            id: id.into(),
            description: description.into(),
        }
    }
}
