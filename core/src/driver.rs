//! The runner's side of a run: [`RunDriver`] owns the [`RunContext`] that plugins see, lets
//! one plugin at a time into it ([`RunDriver::enter`]) and, at the end, takes out what the run
//! recorded ([`RunDriver::finish`]). The methods that attribute steps to a plugin, record how a
//! plugin ran and take the results out are the driver's: a plugin, which only ever gets a
//! `&mut RunContext`, cannot call them:
//!
//! ```compile_fail
//! fn a_plugin(cx: &mut mailprobe_core::RunContext) {
//!     let _ = cx.take_results(); // runner-only: private to the core
//! }
//! ```
//! ```compile_fail
//! fn a_plugin(cx: &mut mailprobe_core::RunContext) {
//!     cx.set_current_plugin("someone else");
//! }
//! ```

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use crate::context::{HeldSession, PluginRun, RunContext, Step};
use crate::model::Target;
use crate::net::Budgets;
use crate::requirement::{Catalog, RequirementResult};
use crate::tls::Trust;

/// Drives one run's [`RunContext`].
pub struct RunDriver {
    cx: RunContext,
}

/// What a run recorded, taken out of its context by [`RunDriver::finish`].
pub struct RunRecord {
    /// The target as the run ended with it (a port's security found out by detection).
    pub target: Arc<Target>,
    /// Every requirement result, in the order reported.
    pub results: Vec<RequirementResult>,
    /// Every step, for the spans.
    pub steps: Vec<Step>,
    /// How each plugin ran, for the spans and the daemon's counters.
    pub plugin_runs: Vec<PluginRun>,
    /// Sessions plugins kept for each other that nobody took: the runner closes them.
    pub held: Vec<HeldSession>,
}

impl RunDriver {
    /// A run of `target` judged by `catalog`, once it has its share of the servers' connection
    /// budgets (which may mean waiting in line; see [`RunContext::reserve_slots`]).
    pub async fn start(
        target: Arc<Target>,
        trust: Trust,
        budgets: Arc<Budgets>,
        catalog: Arc<Catalog>,
    ) -> Self {
        let mut cx = RunContext::new(target, trust, budgets).with_catalog(catalog);
        cx.reserve_slots().await;
        RunDriver { cx }
    }

    /// Lets `plugin` into the context: the steps recorded until the guard is dropped are
    /// attributed to it.
    pub fn enter(&mut self, plugin: &str) -> Entered<'_> {
        self.cx.set_current_plugin(plugin);
        Entered { cx: &mut self.cx }
    }

    /// The context as it stands, to read (between plugins).
    pub fn context(&self) -> &RunContext {
        &self.cx
    }

    /// Records a result on behalf of a plugin that left a requirement unreported.
    pub fn report(&mut self, result: RequirementResult) {
        self.cx.report(result);
    }

    /// Records how a plugin ran.
    pub fn record_run(&mut self, run: PluginRun) {
        self.cx.push_plugin_run(run);
    }

    /// Ends the run and takes out everything it recorded.
    pub fn finish(mut self) -> RunRecord {
        RunRecord {
            target: self.cx.target.clone(),
            results: self.cx.take_results(),
            steps: self.cx.take_steps(),
            plugin_runs: self.cx.take_plugin_runs(),
            held: std::mem::take(&mut self.cx.held),
        }
    }
}

/// One plugin's time in the context ([`RunDriver::enter`]); derefs to the context the plugin
/// is given. When it is dropped, steps are no longer attributed to that plugin.
pub struct Entered<'a> {
    cx: &'a mut RunContext,
}

impl Deref for Entered<'_> {
    type Target = RunContext;
    fn deref(&self) -> &RunContext {
        self.cx
    }
}

impl DerefMut for Entered<'_> {
    fn deref_mut(&mut self) -> &mut RunContext {
        self.cx
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.cx.set_current_plugin("");
    }
}
