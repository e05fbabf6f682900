//! The check-plugin interface and the registry of plugins.
//!
//! A plugin reads the target and the facts other plugins left in the [`RunContext`], does its
//! protocol work, and returns data: requirement results, steps and facts. It never talks to
//! OpenTelemetry, Prometheus or an alert receiver itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::context::RunContext;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    Builtin,
    Dynamic,
}

/// What `mailprobe plugins list` shows of a plugin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub name: String,
    pub kind: PluginKind,
    pub version: String,
    /// The requirement IDs it reports.
    pub requirements: Vec<String>,
    /// Where a dynamic plugin was loaded from.
    pub path: Option<String>,
    /// Plugins that must run before this one (their facts are used).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

impl PluginInfo {
    pub fn builtin(name: &str, requirements: &[&str], depends_on: &[&str]) -> Self {
        PluginInfo {
            name: name.to_string(),
            kind: PluginKind::Builtin,
            version: env!("CARGO_PKG_VERSION").to_string(),
            requirements: requirements.iter().map(|s| s.to_string()).collect(),
            path: None,
            depends_on: depends_on.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// A plugin-level failure: the plugin could not evaluate its requirements at all (a crash in a
/// dynamic plugin, say). Requirements it left unreported become `fail` with this message.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct PluginError(pub String);

/// A check. Implementations report every requirement they declare (for the configured
/// protocols), with `skip` where a prerequisite failed.
pub trait CheckPlugin: Send + Sync {
    fn info(&self) -> PluginInfo;
    fn run<'a>(&'a self, cx: &'a mut RunContext) -> BoxFuture<'a, Result<(), PluginError>>;
}

/// The plugins of this process, in run order (a plugin comes after those it depends on).
#[derive(Clone, Default)]
pub struct Registry {
    plugins: Vec<Arc<dyn CheckPlugin>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
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
}

impl Registry {
    pub fn new() -> Self {
        Registry::default()
    }

    /// Adds a plugin. Its name and its requirement IDs must not clash with those already there.
    pub fn register(&mut self, plugin: Arc<dyn CheckPlugin>) -> Result<(), RegistryError> {
        let info = plugin.info();
        for existing in &self.plugins {
            let other = existing.info();
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
                    first: other.name,
                    second: info.name,
                });
            }
        }
        for dep in &info.depends_on {
            if !self.plugins.iter().any(|p| &p.info().name == dep) {
                return Err(RegistryError::MissingDependency {
                    plugin: info.name,
                    missing: dep.clone(),
                });
            }
        }
        self.plugins.push(plugin);
        Ok(())
    }

    pub fn plugins(&self) -> &[Arc<dyn CheckPlugin>] {
        &self.plugins
    }

    pub fn infos(&self) -> Vec<PluginInfo> {
        self.plugins.iter().map(|p| p.info()).collect()
    }

    /// The plugins named in `only` and those they depend on, in run order; all when `only` is
    /// empty.
    pub fn select(&self, only: &[String]) -> Result<Vec<Arc<dyn CheckPlugin>>, RegistryError> {
        if only.is_empty() {
            return Ok(self.plugins.clone());
        }
        let infos = self.infos();
        let mut wanted: Vec<String> = Vec::new();
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
            if !wanted.contains(&name) {
                stack.extend(info.depends_on.iter().cloned());
                wanted.push(name);
            }
        }
        Ok(self
            .plugins
            .iter()
            .filter(|p| wanted.contains(&p.info().name))
            .cloned()
            .collect())
    }
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

    fn fake(name: &str, reqs: &[&str], deps: &[&str]) -> Arc<dyn CheckPlugin> {
        Arc::new(Fake(PluginInfo::builtin(name, reqs, deps)))
    }

    #[test]
    fn clashing_requirement_ids_are_refused() {
        let mut r = Registry::new();
        r.register(fake("a", &["x.one"], &[])).unwrap();
        let e = r.register(fake("b", &["x.one"], &[])).unwrap_err();
        assert!(matches!(e, RegistryError::RequirementClash { .. }));
        assert!(e.to_string().contains("x.one"));
    }

    #[test]
    fn select_pulls_in_dependencies_in_run_order() {
        let mut r = Registry::new();
        r.register(fake("reach", &["r"], &[])).unwrap();
        r.register(fake("tls", &["t"], &["reach"])).unwrap();
        r.register(fake("cert", &["c"], &["reach"])).unwrap();
        let names: Vec<_> = r
            .select(&["tls".into()])
            .unwrap()
            .iter()
            .map(|p| p.info().name)
            .collect();
        assert_eq!(names, vec!["reach", "tls"]);
        assert!(matches!(
            r.select(&["nope".into()]),
            Err(RegistryError::UnknownPlugin { .. })
        ));
    }
}
