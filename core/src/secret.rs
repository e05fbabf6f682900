//! Secrets (passwords) come from an environment variable or a file, never from the command line,
//! and never appear in a `Debug`/`Display` output, a log, a span or a report.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A password. Its `Debug` and `Display` never show it; `expose` is the only way in.
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Arc::from(value.into()))
    }
    /// The secret itself, to hand to a protocol exchange. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a secret comes from: `{ env: VAR }` or `{ file: PATH }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SecretSourceRepr", into = "SecretSourceRepr")]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

/// The YAML form: a map with exactly one of `env` and `file`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretSourceRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<PathBuf>,
}

impl TryFrom<SecretSourceRepr> for SecretSource {
    type Error = String;
    fn try_from(r: SecretSourceRepr) -> Result<Self, Self::Error> {
        match (r.env, r.file) {
            (Some(e), None) if !e.is_empty() => Ok(SecretSource::Env(e)),
            (None, Some(f)) => Ok(SecretSource::File(f)),
            (Some(_), Some(_)) => Err("give either `env` or `file`, not both".into()),
            _ => Err("give `{ env: VARIABLE }` or `{ file: /path/to/secret }` (a password is never written in the file)".into()),
        }
    }
}

impl From<SecretSource> for SecretSourceRepr {
    fn from(s: SecretSource) -> Self {
        match s {
            SecretSource::Env(e) => SecretSourceRepr { env: Some(e), file: None },
            SecretSource::File(f) => SecretSourceRepr { env: None, file: Some(f) },
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("environment variable {0} is not set; export it with the mailbox password")]
    EnvMissing(String),
    #[error("environment variable {0} is empty; export it with the mailbox password")]
    EnvEmpty(String),
    #[error("cannot read password file {path}: {reason}; check the path and that mailprobe may read it")]
    FileUnreadable { path: String, reason: String },
    #[error("password file {0} is empty; write the mailbox password into it")]
    FileEmpty(String),
}

/// Reads the environment through a function so that tests pass a map, not the real environment.
pub trait Environment {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<S: std::hash::BuildHasher> Environment for std::collections::HashMap<String, String, S> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl SecretSource {
    pub fn load(&self, env: &dyn Environment) -> Result<Secret, SecretError> {
        match self {
            SecretSource::Env(name) => match env.var(name) {
                None => Err(SecretError::EnvMissing(name.clone())),
                Some(v) if v.is_empty() => Err(SecretError::EnvEmpty(name.clone())),
                Some(v) => Ok(Secret::new(v)),
            },
            SecretSource::File(path) => {
                let shown = path.display().to_string();
                let text =
                    std::fs::read_to_string(path).map_err(|e| SecretError::FileUnreadable {
                        path: shown.clone(),
                        reason: e.to_string(),
                    })?;
                // Files written by `echo` or by Kubernetes tooling end in a newline that is not
                // part of the password.
                let value = text.strip_suffix('\n').unwrap_or(&text);
                let value = value.strip_suffix('\r').unwrap_or(value);
                if value.is_empty() {
                    return Err(SecretError::FileEmpty(shown));
                }
                Ok(Secret::new(value))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn env_source_reads_the_injected_environment() {
        let mut env = HashMap::new();
        env.insert("PW".to_string(), "pa55".to_string());
        let s = SecretSource::Env("PW".into()).load(&env).unwrap();
        assert_eq!(s.expose(), "pa55");
        assert_eq!(
            SecretSource::Env("NOPE".into()).load(&env).unwrap_err(),
            SecretError::EnvMissing("NOPE".into())
        );
    }

    #[test]
    fn file_source_strips_one_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("mailprobe-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pw");
        std::fs::write(&f, "with space \n").unwrap();
        let s = SecretSource::File(f.clone()).load(&HashMap::<String, String>::new()).unwrap();
        assert_eq!(s.expose(), "with space ");
        std::fs::write(&f, "\n").unwrap();
        assert!(matches!(
            SecretSource::File(f).load(&HashMap::<String, String>::new()),
            Err(SecretError::FileEmpty(_))
        ));
        let missing = SecretSource::File(dir.join("missing"));
        let err = missing.load(&HashMap::<String, String>::new()).unwrap_err();
        assert!(err.to_string().contains("cannot read password file"));
    }
}
