//! Loads mailprobe's dynamic check plugins and adapts them to the built-in [`CheckPlugin`]
//! interface, so their results go through the same verdict, report, telemetry and alert path.
//!
//! - Every `*.so` of a directory is loaded with libloading (in file-name order) and refused,
//!   with a message naming the file, when it has no entry point, was built for another ABI
//!   version, or declares a requirement ID that is one of mailprobe's own or another plugin's.
//! - **In-process** (the default), a call runs on tokio's blocking pool: the plugin has its own
//!   std and tokio and cannot run on mailprobe's runtime. The run's deadline bounds the wait; a
//!   thread still stuck in the plugin past it is abandoned (a thread cannot be killed), so give
//!   plugins you do not trust `isolation: process`.
//! - **`isolation: process`** runs each call in a child, `mailprobe plugin-host --library PATH`,
//!   over JSON lines (see [`child`]); a segfault or abort there fails only the plugin's
//!   requirements, and the deadline is enforced by killing the child.
//!
//! All unsafe code of mailprobe is in the `library` module of this crate.
#![deny(unsafe_code)]

pub mod child;
mod library;
pub mod strict;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use mailprobe_core::model::TargetView;
use mailprobe_core::plugin::{BoxFuture, CheckPlugin, PluginError, PluginInfo, PluginKind};
use mailprobe_core::requirement::{Catalog, Origin};
use mailprobe_core::{Registry, RequirementSpec, RunContext};
use mailprobe_plugin_sdk::wire::{ContextJson, Requirement, ResultJson};
use mailprobe_runtime::config::{Isolation, PluginSettings, PluginsConfig};
use serde_json::Value;

pub use child::serve_stdio;

/// What each dynamic plugin returned as its facts, by plugin name, for the plugins after it.
#[derive(Debug, Default, serde::Serialize)]
pub struct DynamicFacts(pub BTreeMap<String, Value>);
mailprobe_core::serde_fact!(DynamicFacts, "extra");

/// What a plugin library says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub requirements: Vec<Requirement>,
    pub path: PathBuf,
}

/// Why a plugin library was refused. Every message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("cannot read the plugin directory {path}: {reason}")]
    Dir { path: String, reason: String },
    #[error("cannot load plugin {path}: {reason}")]
    Open { path: String, reason: String },
    #[error(
        "{path} is not a mailprobe plugin: it exports no `{symbol}` symbol; build it as a cdylib with mailprobe_plugin_sdk::export_plugin!"
    )]
    NoEntryPoint { path: String, symbol: &'static str },
    #[error(
        "{path} was built with plugin SDK ABI {found}, but this mailprobe speaks ABI {expected}: rebuild the plugin against mailprobe-plugin-sdk {sdk}"
    )]
    AbiMismatch {
        path: String,
        found: u32,
        expected: u32,
        sdk: &'static str,
    },
    #[error(
        "{path} exports no `{symbol}` symbol, so its plugin ABI is unknown (it was built with a mailprobe-plugin-sdk older than ABI 2, or by hand without it); this mailprobe speaks ABI {expected}: rebuild the plugin against mailprobe-plugin-sdk {sdk}"
    )]
    NoAbiVersion {
        path: String,
        symbol: &'static str,
        expected: u32,
        sdk: &'static str,
    },
    #[error("plugin {path} is invalid: {reason}")]
    Invalid { path: String, reason: String },
    #[error("plugin path {path} is refused: {reason}")]
    Unsafe { path: String, reason: String },
    #[error(
        "plugin `{name}` ({path}) refuses its configuration: {reason}; fix plugins.settings.{name}.config (or --plugin-config {name}=JSON)"
    )]
    BadConfig {
        path: String,
        name: String,
        reason: String,
    },
    #[error(
        "plugin {path} declares requirement `{id}`, which is one of mailprobe's own; give the plugin's requirements IDs of their own (prefix them with the plugin's name)"
    )]
    BuiltinClash { path: String, id: String },
    #[error("plugin {path} is refused: {reason}")]
    Registry { path: String, reason: String },
    #[error("plugin {path} could not be started in a child process: {reason}")]
    Child { path: String, reason: String },
    #[error(
        "plugin settings name `{name}`, but no plugin of that name was loaded from {dir} (loaded: {loaded})"
    )]
    UnknownSetting {
        name: String,
        dir: String,
        loaded: String,
    },
}

/// Hears what the host learns about the health of in-process plugins: the daemon turns it into
/// metrics (`mailprobe_plugin_overruns_total`, `mailprobe_plugin_disabled`).
pub trait HealthSink: Send + Sync {
    /// A plugin was loaded in-process (its overrun count starts at 0).
    fn loaded(&self, plugin: &str);
    /// One of its calls overran the run's deadline: `overruns` so far, and whether the plugin is
    /// now disabled for the rest of the process.
    fn overrun(&self, plugin: &str, overruns: u32, disabled: bool);
}

/// A shared [`HealthSink`].
#[derive(Clone)]
pub struct HealthHook(pub Arc<dyn HealthSink>);

impl std::fmt::Debug for HealthHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HealthHook")
    }
}

/// How to load and run the plugins of a directory.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// The isolation of plugins without a setting of their own.
    pub isolation: Isolation,
    /// Per plugin, by name.
    pub settings: BTreeMap<String, PluginSettings>,
    /// The mailprobe executable that serves `plugin-host` (default: this process's own).
    pub host_exe: Option<PathBuf>,
    /// Who hears of in-process plugins' overruns (none: they are only logged).
    pub health: Option<HealthHook>,
    /// Never load a library in this process: read each one's manifest in a child
    /// (`mailprobe plugin-host`) and call it there. What `validate` uses, so that checking a
    /// configuration never runs plugin code in the checking process.
    pub describe_only: bool,
}

impl From<&PluginsConfig> for LoadOptions {
    fn from(c: &PluginsConfig) -> Self {
        LoadOptions {
            isolation: c.isolation,
            settings: c.settings.clone(),
            host_exe: None,
            health: None,
            describe_only: false,
        }
    }
}

impl LoadOptions {
    fn isolation_of(&self, name: &str) -> Isolation {
        self.settings
            .get(name)
            .and_then(|s| s.isolation)
            .unwrap_or(self.isolation)
    }
    fn any_process(&self) -> bool {
        self.isolation == Isolation::Process
            || self
                .settings
                .values()
                .any(|s| s.isolation == Some(Isolation::Process))
    }
    fn host_exe(&self) -> Result<PathBuf, String> {
        match &self.host_exe {
            Some(p) => Ok(p.clone()),
            None => std::env::current_exe()
                .map_err(|e| format!("cannot find mailprobe's own executable to re-run: {e}")),
        }
    }
}

/// The `*.so` files of `dir`, sorted by name.
pub fn libraries(dir: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let err = |e: std::io::Error| LoadError::Dir {
        path: dir.display().to_string(),
        reason: e.to_string(),
    };
    strict::check(dir, "plugin directory")?;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let path = entry.map_err(err)?.path();
        if path.extension().is_some_and(|e| e == "so") && path.is_file() {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && !s.ends_with('.')
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-' || b == b'.'
        })
}

/// Checks what can be checked of one manifest alone (the registry checks the clashes between
/// plugins).
pub fn validate(m: &Manifest) -> Result<(), LoadError> {
    let path = m.path.display().to_string();
    let invalid = |reason: String| LoadError::Invalid {
        path: path.clone(),
        reason,
    };
    if !valid_name(&m.name) {
        return Err(invalid(format!(
            "its name `{}` must be 1 to 64 lowercase letters, digits, `_` or `-`",
            m.name
        )));
    }
    if m.requirements.is_empty() {
        return Err(invalid("it declares no requirement".into()));
    }
    for (i, r) in m.requirements.iter().enumerate() {
        if !valid_id(&r.id) {
            return Err(invalid(format!(
                "requirement ID `{}` must be lowercase letters, digits, `_`, `-` and inner dots",
                r.id
            )));
        }
        if m.requirements[..i].iter().any(|o| o.id == r.id) {
            return Err(invalid(format!("it declares requirement `{}` twice", r.id)));
        }
    }
    Ok(())
}

/// Refuses a plugin that declares one of the built-in requirement IDs, naming its file.
fn refuse_builtin_ids(catalog: &Catalog, ids: &[String], path: &Path) -> Result<(), LoadError> {
    match ids
        .iter()
        .find(|id| catalog.origin(id) == Some(Origin::Builtin))
    {
        Some(id) => Err(LoadError::BuiltinClash {
            path: path.display().to_string(),
            id: id.clone(),
        }),
        None => Ok(()),
    }
}

/// How a loaded plugin is called.
enum Runner {
    InProcess(library::Functions),
    Process { exe: PathBuf },
}

/// A dynamic plugin, adapted to [`CheckPlugin`].
pub struct DynamicPlugin {
    manifest: Manifest,
    config: Value,
    runner: Runner,
    /// In-process calls that overran their deadline: each left a thread of tokio's blocking
    /// pool running, which nothing can stop, so after a few the plugin is no longer called.
    overruns: Arc<AtomicU32>,
    health: Option<HealthHook>,
}

/// In-process overruns after which a plugin is disabled for the rest of the process.
const MAX_OVERRUNS: u32 = 3;

/// Counts an overrun when an in-process call is dropped unfinished: at its own timeout, or
/// when the run is cancelled at the deadline before that.
struct OverrunGuard {
    overruns: Arc<AtomicU32>,
    finished: bool,
    plugin: String,
    health: Option<HealthHook>,
}

impl Drop for OverrunGuard {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let n = self.overruns.fetch_add(1, Ordering::Relaxed) + 1;
        let disabled = n >= MAX_OVERRUNS;
        tracing::warn!(plugin = %self.plugin, overruns = n, "a plugin call overran its deadline; its thread was abandoned");
        if n == MAX_OVERRUNS {
            tracing::error!(plugin = %self.plugin, overruns = n, "plugin disabled until mailprobe restarts: its calls overran the deadline {MAX_OVERRUNS} times; its requirements are not verified from now on (give it `isolation: process`, or fix it)");
        }
        if let Some(HealthHook(sink)) = &self.health {
            sink.overrun(&self.plugin, n, disabled);
        }
    }
}

impl std::fmt::Debug for DynamicPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamicPlugin")
            .field("manifest", &self.manifest)
            .field("isolation", &self.isolation().as_str())
            .finish_non_exhaustive()
    }
}

impl DynamicPlugin {
    /// Loads one library as `opts` say. Does not check clashes with other plugins.
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<DynamicPlugin, LoadError> {
        let shown = path.display().to_string();
        let (manifest, runner) = if opts.describe_only {
            let exe = opts.host_exe().map_err(|reason| LoadError::Child {
                path: shown.clone(),
                reason,
            })?;
            (child::describe(&exe, path)?, Runner::Process { exe })
        } else if opts.any_process() {
            // Learn the name (which decides the isolation) without loading the library here.
            let exe = opts.host_exe().map_err(|reason| LoadError::Child {
                path: shown.clone(),
                reason,
            })?;
            let manifest = child::describe(&exe, path)?;
            match opts.isolation_of(&manifest.name) {
                Isolation::Process => (manifest, Runner::Process { exe }),
                Isolation::InProcess => {
                    let (m, f) = library::open(path)?;
                    (m, Runner::InProcess(f))
                }
            }
        } else {
            let (m, f) = library::open(path)?;
            (m, Runner::InProcess(f))
        };
        validate(&manifest)?;
        let config = opts
            .settings
            .get(&manifest.name)
            .map(|s| s.config.clone())
            .unwrap_or(Value::Null);
        let plugin = DynamicPlugin {
            manifest,
            config,
            runner,
            overruns: Arc::default(),
            health: opts.health.clone(),
        };
        plugin.check_config()?;
        if let (Runner::InProcess(_), Some(HealthHook(sink))) = (&plugin.runner, &plugin.health) {
            sink.loaded(&plugin.manifest.name);
        }
        Ok(plugin)
    }

    /// Asks the plugin to check its configuration now, so `mailprobe validate` and the start of
    /// `run` refuse a bad one with the plugin's own message, rather than every run failing.
    fn check_config(&self) -> Result<(), LoadError> {
        let context = serde_json::json!({ mailprobe_plugin_sdk::wire::VALIDATE_ONLY: true });
        let answer = match &self.runner {
            Runner::InProcess(functions) => {
                functions.call(&self.config.to_string(), &context.to_string())
            }
            Runner::Process { exe } => {
                child::call_blocking(exe, &self.manifest, self.config.clone(), context)
            }
        };
        let refusal = match answer {
            Ok(text) => serde_json::from_str::<ResultJson>(&text)
                .map_err(|e| format!("its answer to the configuration check is unreadable: {e}"))
                .and_then(|r| r.error.map_or(Ok(()), Err)),
            Err(reason) => Err(reason),
        };
        refusal.map_err(|reason| LoadError::BadConfig {
            path: self.manifest.path.display().to_string(),
            name: self.manifest.name.clone(),
            reason,
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn isolation(&self) -> Isolation {
        match self.runner {
            Runner::InProcess(_) => Isolation::InProcess,
            Runner::Process { .. } => Isolation::Process,
        }
    }

    fn context(&self, cx: &RunContext) -> ContextJson {
        ContextJson {
            plugin: self.manifest.name.clone(),
            target: TargetView::from(&*cx.target),
            password: cx.target.password.expose().to_string(),
            remaining_ms: cx.remaining().as_millis() as u64,
            facts: cx.facts.to_json(),
        }
    }

    async fn call(&self, context: Value, wait: std::time::Duration) -> Result<String, String> {
        match &self.runner {
            Runner::InProcess(functions) => {
                let functions = *functions;
                let config = self.config.to_string();
                let context = context.to_string();
                let task = tokio::task::spawn_blocking(move || functions.call(&config, &context));
                let mut guard = OverrunGuard {
                    overruns: Arc::clone(&self.overruns),
                    finished: false,
                    plugin: self.manifest.name.clone(),
                    health: self.health.clone(),
                };
                let outcome = tokio::time::timeout(wait, task).await;
                guard.finished = outcome.is_ok();
                drop(guard);
                match outcome {
                    Err(_) => Err(format!(
                        "did not finish within the run's deadline ({wait:?} left when it started); its thread was abandoned"
                    )),
                    Ok(Err(e)) => Err(format!("the plugin's thread failed: {e}")),
                    Ok(Ok(r)) => r,
                }
            }
            Runner::Process { exe } => {
                child::call(exe, &self.manifest, self.config.clone(), context, wait).await
            }
        }
    }

    /// Moves what the plugin returned into the run: results for the requirements it declared
    /// (others are dropped: a plugin cannot speak for another's requirements), its steps, and
    /// its facts under its name.
    fn apply(&self, cx: &mut RunContext, text: &str) -> Result<(), PluginError> {
        let out: ResultJson = serde_json::from_str(text).map_err(|e| {
            PluginError::BadAnswer(format!("the plugin returned unreadable JSON: {e}"))
        })?;
        let name = &self.manifest.name;
        for r in out.results {
            if self.manifest.requirements.iter().any(|d| d.id == r.id) {
                cx.report(r);
            } else {
                tracing::warn!(plugin = %name, requirement = %r.id, "dropped a result for a requirement the plugin did not declare");
            }
        }
        for mut step in out.steps {
            step.plugin = name.clone();
            cx.push_step(step);
        }
        if !out.facts.is_null() {
            cx.facts
                .entry::<DynamicFacts>()
                .0
                .insert(name.clone(), out.facts);
        }
        match out.error {
            Some(e) if out.panicked => Err(PluginError::Panicked(e)),
            Some(e) => Err(PluginError::Crashed(e)),
            None => Ok(()),
        }
    }
}

impl CheckPlugin for DynamicPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo {
            name: self.manifest.name.clone(),
            kind: PluginKind::Dynamic,
            version: self.manifest.version.clone(),
            requirements: self
                .manifest
                .requirements
                .iter()
                .map(|r| r.id.clone())
                .collect(),
            path: Some(self.manifest.path.display().to_string()),
            depends_on: Vec::new(),
            runs_after: Vec::new(),
            specs: self
                .manifest
                .requirements
                .iter()
                .map(|r| RequirementSpec::new(r.id.clone(), r.description.clone()))
                .collect(),
        }
    }

    fn run<'a>(&'a self, cx: &'a mut RunContext) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(async move {
            let overruns = self.overruns.load(Ordering::Relaxed);
            if overruns >= MAX_OVERRUNS {
                return Err(PluginError::Crashed(format!(
                    "disabled until mailprobe restarts: {overruns} of its calls overran their deadline, and their threads may still be running"
                )));
            }
            let wait = cx.remaining();
            let context = serde_json::to_value(self.context(cx)).map_err(|e| {
                PluginError::Unavailable(format!("cannot build the plugin's context: {e}"))
            })?;
            let text = self
                .call(context, wait)
                .await
                .map_err(PluginError::Crashed)?;
            self.apply(cx, &text)
        })
    }
}

/// Loads every plugin of `dir` into `registry` (after what is there, the built-ins), refusing
/// the first library that is not acceptable. Checks that every `settings` entry names a loaded
/// plugin.
pub fn register_dir(
    registry: &mut Registry,
    dir: &Path,
    opts: &LoadOptions,
) -> Result<Vec<PluginInfo>, LoadError> {
    let mut loaded = Vec::new();
    for path in libraries(dir)? {
        strict::check_library(&path)?;
        let plugin = DynamicPlugin::load(&path, opts)?;
        let info = plugin.info();
        refuse_builtin_ids(&registry.catalog(), &info.requirements, &path)?;
        registry
            .register(Arc::new(plugin))
            .map_err(|e| LoadError::Registry {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        loaded.push(info);
    }
    if let Some(name) = opts
        .settings
        .keys()
        .find(|n| !loaded.iter().any(|i| &i.name == *n))
    {
        return Err(LoadError::UnknownSetting {
            name: name.clone(),
            dir: dir.display().to_string(),
            loaded: if loaded.is_empty() {
                "none".into()
            } else {
                loaded
                    .iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        });
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests;
