//! The check-plugin interface and the registry of plugins.
//!
//! A plugin declares the requirements it reports ([`RequirementSpec`]) and the plugins whose
//! facts it reads; it reads the target and those facts from the [`RunContext`], does its
//! protocol work, and returns data: requirement results, steps and facts. It never talks to
//! OpenTelemetry, Prometheus or an alert receiver itself. The registry builds the catalogue of
//! requirements from the declarations and the run order from the declared dependencies.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::context::RunContext;
pub use crate::future::BoxFuture;
use crate::profile::Profile;
use crate::requirement::{Catalog, Origin, RequirementSpec};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    Builtin,
    Dynamic,
}

/// What a plugin declares about itself; `mailprobe plugins list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub name: String,
    pub kind: PluginKind,
    pub version: String,
    /// The requirement IDs it reports.
    pub requirements: Vec<String>,
    /// Where a dynamic plugin was loaded from.
    pub path: Option<String>,
    /// Plugins that must run before this one: `--only` pulls them in, and a plugin missing
    /// from the registry is an error at start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Plugins whose facts this one uses when they run: it runs after them, but does not need
    /// them (`--only` does not pull them in).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs_after: Vec<String>,
    /// What it declares about each requirement it reports.
    #[serde(skip)]
    pub specs: Vec<RequirementSpec>,
}

impl PluginInfo {
    /// A built-in plugin of this build's version.
    pub fn builtin(name: &str, specs: Vec<RequirementSpec>) -> Self {
        PluginInfo {
            name: name.to_string(),
            kind: PluginKind::Builtin,
            version: env!("CARGO_PKG_VERSION").to_string(),
            requirements: specs.iter().map(|s| s.id.clone()).collect(),
            path: None,
            depends_on: Vec::new(),
            runs_after: Vec::new(),
            specs,
        }
    }
    /// Plugins that must run first (see [`PluginInfo::depends_on`]).
    pub fn depends_on(mut self, plugins: &[&str]) -> Self {
        self.depends_on
            .extend(plugins.iter().map(|s| s.to_string()));
        self
    }
    /// Plugins to run after when they are there (see [`PluginInfo::runs_after`]).
    pub fn runs_after(mut self, plugins: &[&str]) -> Self {
        self.runs_after
            .extend(plugins.iter().map(|s| s.to_string()));
        self
    }
}

/// A plugin-level failure: the plugin could not evaluate its requirements at all. The
/// requirements it left unreported are then `not_verified`: the probe, not the server, failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PluginError {
    /// The plugin (or its process) crashed or panicked.
    #[error("{0}")]
    Crashed(String),
    /// The plugin answered with something the host cannot read.
    #[error("{0}")]
    BadAnswer(String),
    /// The plugin could not be called (its process could not start, its context not built).
    #[error("{0}")]
    Unavailable(String),
    /// The plugin panicked and caught it itself (a dynamic plugin's SDK does): the message.
    #[error("{0}")]
    Panicked(String),
}

impl PluginError {
    /// The stable `error.type` value.
    pub fn error_type(&self) -> &'static str {
        match self {
            PluginError::Crashed(_) => "plugin_crashed",
            PluginError::BadAnswer(_) => "plugin_bad_answer",
            PluginError::Unavailable(_) => "plugin_unavailable",
            PluginError::Panicked(_) => "plugin_panicked",
        }
    }

    /// The error's text, to be scrubbed in place.
    pub fn message_mut(&mut self) -> &mut String {
        match self {
            PluginError::Crashed(m)
            | PluginError::BadAnswer(m)
            | PluginError::Unavailable(m)
            | PluginError::Panicked(m) => m,
        }
    }
}

/// How one plugin's run ended, as the runner saw it; carried as such to the spans and the
/// daemon's counters (no text to parse).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginOutcome {
    /// It returned normally.
    Done,
    /// It returned an error: it could not evaluate its requirements.
    Failed(PluginError),
    /// It panicked (in this process, or a dynamic plugin's SDK caught it): the message.
    Panicked(String),
    /// It was still running at the check's deadline (the check's timeout).
    TimedOut(std::time::Duration),
    /// It was not started: the check's deadline (its timeout) had already passed.
    NotRun(std::time::Duration),
}

impl PluginOutcome {
    /// Whether the plugin panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, PluginOutcome::Panicked(_))
    }

    /// What went wrong, in the words of a report (`failed: …`, `panicked: …`, `timed out: …`,
    /// `was not run: …`); `None` when it ran to its end.
    pub fn error(&self) -> Option<String> {
        match self {
            PluginOutcome::Done => None,
            PluginOutcome::Failed(e) => Some(format!("failed: {e}")),
            PluginOutcome::Panicked(m) => Some(format!("panicked: {m}")),
            PluginOutcome::TimedOut(deadline) => Some(format!(
                "timed out: the check did not finish within its deadline ({deadline:?})"
            )),
            PluginOutcome::NotRun(deadline) => Some(format!(
                "was not run: the check's deadline ({deadline:?}) had passed"
            )),
        }
    }

    /// The span's `error.type`: `timeout`, `deadline_exceeded`, or `_OTHER`; `None` when it
    /// ran to its end.
    pub fn error_type(&self) -> Option<&'static str> {
        match self {
            PluginOutcome::Done => None,
            PluginOutcome::TimedOut(_) => Some("timeout"),
            PluginOutcome::NotRun(_) => Some("deadline_exceeded"),
            PluginOutcome::Failed(_) | PluginOutcome::Panicked(_) => Some("_OTHER"),
        }
    }

    /// Applies `clean` to every text the outcome holds (a panic message can quote a server).
    pub fn clean_text(&mut self, clean: impl Fn(&str) -> String) {
        let text = match self {
            PluginOutcome::Failed(e) => e.message_mut(),
            PluginOutcome::Panicked(m) => m,
            _ => return,
        };
        *text = clean(text);
    }
}

/// A check. Implementations report every requirement they declare (for the configured
/// servers), with `skip` where a prerequisite failed.
pub trait CheckPlugin: Send + Sync {
    fn info(&self) -> PluginInfo;
    fn run<'a>(&'a self, cx: &'a mut RunContext) -> BoxFuture<'a, Result<(), PluginError>>;
}

/// The plugins of this process, with what each declares (asked once, at registration) and
/// the catalogue of their requirements (built once per registration, not per run).
#[derive(Clone, Default)]
pub struct Registry {
    plugins: Vec<Arc<dyn CheckPlugin>>,
    infos: Vec<Arc<PluginInfo>>,
    catalog: Arc<Catalog>,
}

/// Plugins to run, in run order, with their [`PluginInfo`] and their [`Catalog`] computed
/// once ([`Registry::select`]); the runner reads both from here on every run. It derefs to
/// the plugins.
#[derive(Clone, Default)]
pub struct Selection {
    plugins: Vec<Arc<dyn CheckPlugin>>,
    infos: Vec<Arc<PluginInfo>>,
    catalog: Arc<Catalog>,
}

impl Selection {
    /// `plugins` in this order, each asked for its info once.
    pub fn new(plugins: Vec<Arc<dyn CheckPlugin>>) -> Self {
        let infos: Vec<Arc<PluginInfo>> = plugins.iter().map(|p| Arc::new(p.info())).collect();
        let catalog = Arc::new(catalog_from_infos(infos.iter().map(Arc::as_ref)));
        Selection {
            plugins,
            infos,
            catalog,
        }
    }

    /// The same selection with each plugin replaced by `f(plugin, its info)`: for a wrapper
    /// that keeps the plugin's info (name, requirements, order), so neither the infos nor the
    /// catalogue are computed again.
    pub fn map_plugins(
        &self,
        mut f: impl FnMut(&Arc<dyn CheckPlugin>, &PluginInfo) -> Arc<dyn CheckPlugin>,
    ) -> Selection {
        Selection {
            plugins: self
                .plugins
                .iter()
                .zip(&self.infos)
                .map(|(p, i)| f(p, i))
                .collect(),
            infos: self.infos.clone(),
            catalog: self.catalog.clone(),
        }
    }

    /// The plugins, in run order.
    pub fn plugins(&self) -> &[Arc<dyn CheckPlugin>] {
        &self.plugins
    }

    /// Each plugin with what it declared.
    pub fn with_info(&self) -> impl Iterator<Item = (&Arc<dyn CheckPlugin>, &PluginInfo)> {
        self.plugins.iter().zip(self.infos.iter().map(Arc::as_ref))
    }

    /// What the selected plugins declare.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }
}

impl From<Vec<Arc<dyn CheckPlugin>>> for Selection {
    fn from(plugins: Vec<Arc<dyn CheckPlugin>>) -> Self {
        Selection::new(plugins)
    }
}

impl std::ops::Deref for Selection {
    type Target = [Arc<dyn CheckPlugin>];
    fn deref(&self) -> &Self::Target {
        &self.plugins
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryError {
    #[error("plugin `{0}` is registered twice")]
    DuplicateName(String),
    #[error("plugins `{first}` and `{second}` both report requirement `{id}`")]
    RequirementClash {
        id: String,
        first: String,
        second: String,
    },
    #[error("unknown plugin `{name}` in --only; known plugins: {known}")]
    UnknownPlugin { name: String, known: String },
    #[error("plugin `{plugin}` depends on `{missing}`, which is not registered")]
    MissingDependency { plugin: String, missing: String },
    #[error("plugins depend on each other in a cycle: {0}")]
    Cycle(String),
    #[error(
        "requirement `{id}` (plugin `{plugin}`) needs `{missing}` first, which no plugin reports"
    )]
    UnknownPrerequisite {
        id: String,
        plugin: String,
        missing: String,
    },
    #[error(
        "profile `{profile}` holds requirement `{id}`, which no plugin reports; known requirements: {known}"
    )]
    UnknownProfileRequirement {
        profile: String,
        id: String,
        known: String,
    },
}

impl Registry {
    pub fn new() -> Self {
        Registry::default()
    }

    /// Adds a plugin. Its name and its requirement IDs must not clash with those already there;
    /// its dependencies may be registered later (see [`Registry::validate`]).
    pub fn register(&mut self, plugin: Arc<dyn CheckPlugin>) -> Result<(), RegistryError> {
        let info = plugin.info();
        for other in &self.infos {
            if other.name == info.name {
                return Err(RegistryError::DuplicateName(info.name));
            }
            if let Some(id) = info
                .requirements
                .iter()
                .find(|r| other.requirements.contains(r))
            {
                return Err(RegistryError::RequirementClash {
                    id: id.clone(),
                    first: other.name.clone(),
                    second: info.name,
                });
            }
        }
        self.plugins.push(plugin);
        self.infos.push(Arc::new(info));
        self.catalog = Arc::new(catalog_from_infos(self.infos.iter().map(Arc::as_ref)));
        Ok(())
    }

    /// Checks what registration cannot: every dependency is registered, the dependencies have
    /// no cycle, and every prerequisite is a requirement some plugin reports.
    pub fn validate(&self) -> Result<(), RegistryError> {
        let infos = self.infos();
        for info in &infos {
            if let Some(missing) = info
                .depends_on
                .iter()
                .find(|d| !infos.iter().any(|i| &i.name == *d))
            {
                return Err(RegistryError::MissingDependency {
                    plugin: info.name.clone(),
                    missing: missing.clone(),
                });
            }
            for spec in &info.specs {
                if let Some(missing) = spec
                    .prerequisites
                    .iter()
                    .find(|p| !self.catalog.contains(p))
                {
                    return Err(RegistryError::UnknownPrerequisite {
                        id: spec.id.clone(),
                        plugin: info.name.clone(),
                        missing: missing.clone(),
                    });
                }
            }
        }
        run_order(&infos).map(|_| ())
    }

    /// Checks that every requirement `profile` holds is reported by a registered plugin.
    pub fn check_profile(&self, profile: &Profile) -> Result<(), RegistryError> {
        let catalog = self.catalog();
        match profile.requirements.iter().find(|id| !catalog.contains(id)) {
            None => Ok(()),
            Some(id) => Err(RegistryError::UnknownProfileRequirement {
                profile: profile.name.clone(),
                id: id.clone(),
                known: catalog
                    .specs()
                    .map(|s| s.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    pub fn plugins(&self) -> &[Arc<dyn CheckPlugin>] {
        &self.plugins
    }

    /// What each registered plugin declared when it was registered.
    pub fn infos(&self) -> Vec<&PluginInfo> {
        self.infos.iter().map(Arc::as_ref).collect()
    }

    /// Every requirement the registered plugins declare (shared, built at registration).
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.clone()
    }

    /// The plugins named in `only` and those they depend on, in run order; all when `only` is
    /// empty.
    pub fn select(&self, only: &[String]) -> Result<Selection, RegistryError> {
        let infos = self.infos();
        let mut wanted: BTreeSet<String> = BTreeSet::new();
        if only.is_empty() {
            wanted.extend(infos.iter().map(|i| i.name.clone()));
        }
        let mut stack: Vec<String> = only.to_vec();
        while let Some(name) = stack.pop() {
            let Some(info) = infos.iter().find(|i| i.name == name) else {
                return Err(RegistryError::UnknownPlugin {
                    name,
                    known: infos
                        .iter()
                        .map(|i| i.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            };
            if wanted.insert(name) {
                stack.extend(info.depends_on.iter().cloned());
            }
        }
        let order = run_order(&infos)?;
        let (plugins, infos): (Vec<_>, Vec<_>) = order
            .into_iter()
            .filter(|&i| wanted.contains(&infos[i].name))
            .map(|i| (self.plugins[i].clone(), self.infos[i].clone()))
            .unzip();
        let catalog = Arc::new(catalog_from_infos(infos.iter().map(Arc::as_ref)));
        Ok(Selection {
            plugins,
            infos,
            catalog,
        })
    }
}

/// The catalogue of what `plugins` declare (asks each for its info; a [`Selection`] or a
/// [`Registry`] holds one built once).
pub fn catalog_of(plugins: &[Arc<dyn CheckPlugin>]) -> Catalog {
    let infos: Vec<PluginInfo> = plugins.iter().map(|p| p.info()).collect();
    catalog_from_infos(infos.iter())
}

/// The catalogue of what `infos` declare.
fn catalog_from_infos<'a>(infos: impl Iterator<Item = &'a PluginInfo>) -> Catalog {
    let mut entries = Vec::new();
    for info in infos {
        let origin = match info.kind {
            PluginKind::Builtin => Origin::Builtin,
            PluginKind::Dynamic => Origin::Dynamic,
        };
        entries.extend(info.specs.iter().cloned().map(|s| (s, origin)));
    }
    Catalog::new(entries)
}

/// Indexes of `infos` in an order where each plugin comes after those it depends on or runs
/// after (Kahn's algorithm; ties keep registration order, so the order is stable).
fn run_order(infos: &[&PluginInfo]) -> Result<Vec<usize>, RegistryError> {
    let before = |i: usize| -> Vec<usize> {
        infos[i]
            .depends_on
            .iter()
            .chain(&infos[i].runs_after)
            .filter_map(|n| infos.iter().position(|o| &o.name == n))
            .collect()
    };
    let mut placed: Vec<usize> = Vec::with_capacity(infos.len());
    while placed.len() < infos.len() {
        let next = (0..infos.len())
            .find(|&i| !placed.contains(&i) && before(i).iter().all(|b| placed.contains(b)));
        match next {
            Some(i) => placed.push(i),
            None => {
                let stuck: Vec<&str> = (0..infos.len())
                    .filter(|i| !placed.contains(i))
                    .map(|i| infos[i].name.as_str())
                    .collect();
                return Err(RegistryError::Cycle(stuck.join(", ")));
            }
        }
    }
    Ok(placed)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(PluginInfo);
    impl CheckPlugin for Fake {
        fn info(&self) -> PluginInfo {
            self.0.clone()
        }
        fn run<'a>(&'a self, _cx: &'a mut RunContext) -> BoxFuture<'a, Result<(), PluginError>> {
            Box::pin(async { Ok(()) })
        }
    }

    fn fake(name: &str, reqs: &[&str], deps: &[&str], after: &[&str]) -> Arc<dyn CheckPlugin> {
        let specs = reqs.iter().map(|r| RequirementSpec::new(*r, "d")).collect();
        Arc::new(Fake(
            PluginInfo::builtin(name, specs)
                .depends_on(deps)
                .runs_after(after),
        ))
    }

    fn names(plugins: &[Arc<dyn CheckPlugin>]) -> Vec<String> {
        plugins.iter().map(|p| p.info().name).collect()
    }

    /// Counts the calls of `info()`.
    struct Counting(std::sync::atomic::AtomicUsize, &'static str);
    impl CheckPlugin for Counting {
        fn info(&self) -> PluginInfo {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            PluginInfo::builtin(
                self.1,
                vec![RequirementSpec::new(format!("{}.x", self.1), "d")],
            )
        }
        fn run<'a>(&'a self, _cx: &'a mut RunContext) -> BoxFuture<'a, Result<(), PluginError>> {
            Box::pin(async { Ok(()) })
        }
    }

    #[test]
    fn info_and_catalogue_are_computed_once_per_registration() {
        let plugins: Vec<Arc<Counting>> = ["a", "b", "c", "d"]
            .into_iter()
            .map(|n| Arc::new(Counting(Default::default(), n)))
            .collect();
        let mut r = Registry::new();
        for p in &plugins {
            r.register(p.clone()).unwrap();
        }
        r.validate().unwrap();
        for _ in 0..3 {
            let selection = r.select(&[]).unwrap();
            assert_eq!(selection.catalog().specs().count(), 4);
            assert_eq!(selection.with_info().count(), 4);
            assert!(r.catalog().contains("d.x"));
            assert_eq!(r.infos().len(), 4);
        }
        for p in &plugins {
            assert_eq!(p.0.load(std::sync::atomic::Ordering::SeqCst), 1, "{}", p.1);
        }
    }

    #[test]
    fn clashing_requirement_ids_are_refused() {
        let mut r = Registry::new();
        r.register(fake("a", &["x.one"], &[], &[])).unwrap();
        let e = r.register(fake("b", &["x.one"], &[], &[])).unwrap_err();
        assert!(matches!(e, RegistryError::RequirementClash { .. }));
        assert!(e.to_string().contains("x.one"));
    }

    #[test]
    fn run_order_follows_declarations_not_registration() {
        let mut r = Registry::new();
        r.register(fake("cert", &["c"], &["reach"], &["tls"]))
            .unwrap();
        r.register(fake("tls", &["t"], &["reach"], &[])).unwrap();
        r.register(fake("reach", &["r"], &[], &[])).unwrap();
        r.validate().unwrap();
        assert_eq!(names(&r.select(&[]).unwrap()), vec!["reach", "tls", "cert"]);
        // `runs_after` orders but does not pull in.
        assert_eq!(
            names(&r.select(&["cert".into()]).unwrap()),
            vec!["reach", "cert"]
        );
        assert!(matches!(
            r.select(&["nope".into()]),
            Err(RegistryError::UnknownPlugin { .. })
        ));
    }

    #[test]
    fn cycles_and_missing_dependencies_are_errors_at_start() {
        let mut r = Registry::new();
        r.register(fake("a", &["a.x"], &["b"], &[])).unwrap();
        r.register(fake("b", &["b.x"], &[], &["a"])).unwrap();
        let e = r.validate().unwrap_err();
        assert!(matches!(e, RegistryError::Cycle(_)), "{e}");
        assert!(e.to_string().contains("a, b"), "{e}");

        let mut r = Registry::new();
        r.register(fake("a", &["a.x"], &["ghost"], &[])).unwrap();
        let e = r.validate().unwrap_err();
        assert_eq!(
            e.to_string(),
            "plugin `a` depends on `ghost`, which is not registered"
        );
    }

    #[test]
    fn prerequisites_must_be_declared_by_some_plugin() {
        let mut r = Registry::new();
        let spec = RequirementSpec::new("a.x", "d").after(&["b.y"]);
        r.register(Arc::new(Fake(PluginInfo::builtin("a", vec![spec]))))
            .unwrap();
        let e = r.validate().unwrap_err();
        assert!(e.to_string().contains("`b.y`"), "{e}");
    }
}
