//! Secrets (passwords) come from an environment variable or a file, never from the command line,
//! and never appear in a `Debug`/`Display` output, a log, a span or a report. The memory that
//! held one is wiped when the last copy is dropped.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// A password. Its `Debug` and `Display` never show it; `expose` is the only way in. Clones
/// share one buffer, zeroed when the last of them is dropped.
#[derive(Clone)]
pub struct Secret(Arc<Zeroizing<String>>);

/// The largest password file read: a password is short, and a file this big is a mistake
/// (the wrong path) that should not be loaded into memory whole.
pub const MAX_SECRET_FILE: u64 = 64 * 1024;

impl Secret {
    /// Takes the string without copying it, so no unwiped copy is left behind.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Arc::new(Zeroizing::new(value.into())))
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

const SOURCE_HELP: &str = "write `{ env: VARIABLE }` or `{ file: /path/to/secret }`; a password is never written in the configuration itself";

impl Serialize for SecretSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        match self {
            SecretSource::Env(v) => m.serialize_entry("env", v)?,
            SecretSource::File(f) => m.serialize_entry("file", f)?,
        }
        m.end()
    }
}

// Hand-written so that a password typed in the file by mistake is never echoed back in the
// error message (serde's "invalid type: string ..." would quote it).
impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SecretSource;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("{ env: VARIABLE } or { file: PATH }")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<SecretSource, A::Error> {
                let mut found: Option<SecretSource> = None;
                while let Some(key) = map.next_key::<String>()? {
                    let value = match key.as_str() {
                        "env" => SecretSource::Env(map.next_value::<String>()?),
                        "file" => SecretSource::File(map.next_value::<PathBuf>()?),
                        other => {
                            return Err(serde::de::Error::custom(format!(
                                "unknown field `{other}` in password; {SOURCE_HELP}"
                            )));
                        }
                    };
                    if found.is_some() {
                        return Err(serde::de::Error::custom(format!(
                            "password has both `env` and `file`; {SOURCE_HELP}"
                        )));
                    }
                    found = Some(value);
                }
                match found {
                    Some(SecretSource::Env(v)) if v.is_empty() => Err(serde::de::Error::custom(
                        format!("password: the variable name is empty; {SOURCE_HELP}"),
                    )),
                    Some(s) => Ok(s),
                    None => Err(serde::de::Error::custom(format!(
                        "password is empty; {SOURCE_HELP}"
                    ))),
                }
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<SecretSource, E> {
                Err(E::custom(format!(
                    "password is a plain value; {SOURCE_HELP}"
                )))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<SecretSource, E> {
                Err(E::custom(format!(
                    "password is a plain value; {SOURCE_HELP}"
                )))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<SecretSource, E> {
                Err(E::custom(format!(
                    "password is a plain value; {SOURCE_HELP}"
                )))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<SecretSource, E> {
                Err(E::custom(format!(
                    "password is a plain value; {SOURCE_HELP}"
                )))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<SecretSource, E> {
                Err(E::custom(format!(
                    "password is a plain value; {SOURCE_HELP}"
                )))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                _: A,
            ) -> Result<SecretSource, A::Error> {
                Err(serde::de::Error::custom(format!(
                    "password is a list; {SOURCE_HELP}"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("environment variable {0} is not set; export it with the mailbox password")]
    EnvMissing(String),
    #[error("environment variable {0} is empty; export it with the mailbox password")]
    EnvEmpty(String),
    #[error(
        "cannot read password file {path}: {reason}; check the path and that mailprobe may read it"
    )]
    FileUnreadable { path: String, reason: String },
    #[error("password file {0} is empty; write the mailbox password into it")]
    FileEmpty(String),
    #[error(
        "password file {path} is larger than a password ({max} bytes at most); check that the path names the password file"
    )]
    FileTooLarge { path: String, size: u64, max: u64 },
    #[error("password file: {0}")]
    File(crate::file::FileError),
    #[error(
        "password file {0} holds a NUL byte, which no IMAP or SMTP login can carry (IMAP literals, RFC 3501, and SASL PLAIN, RFC 4616, exclude it); remove it"
    )]
    FileHasNul(String),
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
                let bytes = crate::file::read(path, MAX_SECRET_FILE, crate::file::READ_DEADLINE)
                    .map_err(|e| SecretError::from_file(path, e))?;
                file_secret(path, bytes)
            }
        }
    }

    /// As [`SecretSource::load`], for async code: a file is read on a thread of its own, so a
    /// hostile or hung file holds up only the task that asked for it.
    pub async fn load_async(&self, env: &(dyn Environment + Sync)) -> Result<Secret, SecretError> {
        match self {
            SecretSource::Env(_) => self.load(env),
            SecretSource::File(path) => {
                let bytes =
                    crate::file::read_async(path, MAX_SECRET_FILE, crate::file::READ_DEADLINE)
                        .await
                        .map_err(|e| SecretError::from_file(path, e))?;
                file_secret(path, bytes)
            }
        }
    }
}

impl SecretError {
    fn from_file(path: &std::path::Path, e: crate::file::FileError) -> SecretError {
        let shown = path.display().to_string();
        match e {
            crate::file::FileError::TooLarge { max, .. } => SecretError::FileTooLarge {
                path: shown,
                size: max + 1,
                max,
            },
            crate::file::FileError::Unreadable { reason, .. } => SecretError::FileUnreadable {
                path: shown,
                reason,
            },
            other => SecretError::File(other),
        }
    }
}

/// A password file's content as the password: UTF-8, one trailing newline dropped.
fn file_secret(path: &std::path::Path, bytes: Zeroizing<Vec<u8>>) -> Result<Secret, SecretError> {
    let shown = path.display().to_string();
    if let Ok(meta) = std::fs::metadata(path)
        && let Some(mode) = loose_mode(&meta)
    {
        tracing::warn!(
            file = %shown,
            mode = %format!("{mode:o}"),
            "the password file can be read by other users; restrict it with `chmod 600`"
        );
    }
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) => t,
        Err(_) => {
            return Err(SecretError::FileUnreadable {
                path: shown,
                reason: "it is not UTF-8 text".into(),
            });
        }
    };
    // Files written by `echo` or by Kubernetes tooling end in a newline that is not part of
    // the password.
    let value = text.strip_suffix('\n').unwrap_or(text);
    let value = value.strip_suffix('\r').unwrap_or(value);
    if value.is_empty() {
        return Err(SecretError::FileEmpty(shown));
    }
    if value.contains('\0') {
        return Err(SecretError::FileHasNul(shown));
    }
    Ok(Secret::new(value))
}

/// The permission bits when group or others may read the file (Unix only).
#[cfg(unix)]
fn loose_mode(meta: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = meta.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn loose_mode(_: &std::fs::Metadata) -> Option<u32> {
    None
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
    fn a_password_written_inline_is_not_echoed() {
        let e = serde_norway::from_str::<SecretSource>("hunter2")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("env: VARIABLE"), "{e}");
        let s: SecretSource = serde_norway::from_str("{ file: /run/secrets/x }").unwrap();
        assert_eq!(s, SecretSource::File("/run/secrets/x".into()));
        assert!(serde_norway::from_str::<SecretSource>("{ env: A, file: b }").is_err());
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
        let s = SecretSource::File(f.clone())
            .load(&HashMap::<String, String>::new())
            .unwrap();
        assert_eq!(s.expose(), "with space ");
        std::fs::write(&f, "\n").unwrap();
        assert!(matches!(
            SecretSource::File(f.clone()).load(&HashMap::<String, String>::new()),
            Err(SecretError::FileEmpty(_))
        ));
        std::fs::write(&f, "x".repeat(64 * 1024 + 1)).unwrap();
        let err = SecretSource::File(f.clone())
            .load(&HashMap::<String, String>::new())
            .unwrap_err();
        assert!(matches!(err, SecretError::FileTooLarge { .. }), "{err}");
        assert!(err.to_string().contains("check that the path"), "{err}");
        let missing = SecretSource::File(dir.join("missing"));
        let err = missing.load(&HashMap::<String, String>::new()).unwrap_err();
        assert!(err.to_string().contains("cannot read password file"));
    }
}
