//! Compliance profiles as data: which requirements a profile holds, which TLS versions its client
//! speaks, how many connections it needs, and its thresholds. Built-in profiles are YAML files
//! embedded in the binary.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};

/// A TLS (or SSL) protocol version, named as in the report's `versions` map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TlsVersion {
    #[serde(rename = "SSLv3")]
    Ssl3,
    #[serde(rename = "TLSv1.0")]
    Tls10,
    #[serde(rename = "TLSv1.1")]
    Tls11,
    #[serde(rename = "TLSv1.2")]
    Tls12,
    #[serde(rename = "TLSv1.3")]
    Tls13,
}

impl TlsVersion {
    pub const ALL: [TlsVersion; 5] = [
        TlsVersion::Ssl3,
        TlsVersion::Tls10,
        TlsVersion::Tls11,
        TlsVersion::Tls12,
        TlsVersion::Tls13,
    ];

    /// The version as it travels on the wire.
    pub fn wire(self) -> u16 {
        match self {
            TlsVersion::Ssl3 => 0x0300,
            TlsVersion::Tls10 => 0x0301,
            TlsVersion::Tls11 => 0x0302,
            TlsVersion::Tls12 => 0x0303,
            TlsVersion::Tls13 => 0x0304,
        }
    }

    pub fn from_wire(v: u16) -> Option<Self> {
        TlsVersion::ALL.into_iter().find(|t| t.wire() == v)
    }

    /// The report's name: `SSLv3`, `TLSv1.0` ... `TLSv1.3`.
    pub fn name(self) -> &'static str {
        match self {
            TlsVersion::Ssl3 => "SSLv3",
            TlsVersion::Tls10 => "TLSv1.0",
            TlsVersion::Tls11 => "TLSv1.1",
            TlsVersion::Tls12 => "TLSv1.2",
            TlsVersion::Tls13 => "TLSv1.3",
        }
    }

    /// A human name: `SSL 3.0`, `TLS 1.2`.
    pub fn human(self) -> &'static str {
        match self {
            TlsVersion::Ssl3 => "SSL 3.0",
            TlsVersion::Tls10 => "TLS 1.0",
            TlsVersion::Tls11 => "TLS 1.1",
            TlsVersion::Tls12 => "TLS 1.2",
            TlsVersion::Tls13 => "TLS 1.3",
        }
    }

    /// The OpenTelemetry `tls.protocol.version` value ("1.2", "3.0" for SSLv3).
    pub fn semconv(self) -> &'static str {
        match self {
            TlsVersion::Ssl3 => "3.0",
            TlsVersion::Tls10 => "1.0",
            TlsVersion::Tls11 => "1.1",
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the vendor asks of the server's TLS versions (what the client speaks is in
/// [`ClientModel::tls_versions`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsRules {
    /// Compliant but weak: a warning when these are the only versions shared with the client.
    pub weak_versions: Vec<TlsVersion>,
}

pub use crate::client_model::{ClientModel, KeyRules, NameRules, Timeouts};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CertificateRules {
    pub require_common_name: bool,
    pub warn_days: u32,
    /// A certificate with fewer days left fails, as an expired one does; 0: only an expired
    /// one fails.
    #[serde(default)]
    pub crit_days: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConnectionRules {
    pub imap: u32,
    pub imap_with_other_folders: u32,
    pub smtp: u32,
}

/// A compliance profile.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub requirements: Vec<String>,
    /// The CRM's client: what it offers and accepts. Every verdict and the decision to send the
    /// password come from it; kept apart from the vendor's requirements below so each check's
    /// own settings can move into sections of their own without touching it.
    pub client: ClientModel,
    pub tls: TlsRules,
    pub certificate: CertificateRules,
    pub connections: ConnectionRules,
    pub unsupported_software: Vec<String>,
}

const BUILTIN: &[(&str, &str)] = &[("hubspot", include_str!("../profiles/hubspot.yaml"))];

/// The default profile's name.
pub const DEFAULT_PROFILE: &str = "hubspot";

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("unknown profile `{name}`; known profiles: {known}")]
    Unknown { name: String, known: String },
    #[error("built-in profile `{name}` is malformed: {reason}")]
    Malformed { name: String, reason: String },
    #[error("{reason}")]
    Definition { reason: String },
}

impl Profile {
    /// Looks up a built-in profile by name.
    pub fn builtin(name: &str) -> Result<Profile, ProfileError> {
        let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name) else {
            let mut known: Vec<String> = Profile::names().iter().map(|n| n.to_string()).collect();
            known.extend(lock_user().iter().cloned());
            return Err(ProfileError::Unknown {
                name: name.to_string(),
                known: known.join(", "),
            });
        };
        let p: Profile = serde_norway::from_str(text).map_err(|e| ProfileError::Malformed {
            name: name.to_string(),
            reason: e.to_string(),
        })?;
        p.client.check().map_err(|reason| ProfileError::Malformed {
            name: name.to_string(),
            reason,
        })?;
        Ok(p)
    }

    /// A built-in profile, parsed once per process and shared: thousands of mailboxes on one
    /// profile hold one copy (parsing it again per mailbox cost about 1.6 KB each and most of a
    /// large configuration's start-up).
    pub fn shared(name: &str) -> Result<Arc<Profile>, ProfileError> {
        let mut cache = lock_cache();
        if let Some(p) = cache.iter().find(|p| p.name == name) {
            return Ok(p.clone());
        }
        let p = Arc::new(Profile::builtin(name)?);
        cache.push(p.clone());
        Ok(p)
    }

    pub fn names() -> Vec<&'static str> {
        BUILTIN.iter().map(|(n, _)| *n).collect()
    }

    /// A profile of the user's own from its definition: `name`, `extends` (a built-in profile)
    /// and only the keys that differ, merged over the built-in one (mappings key by key, lists
    /// and values replaced). Unknown keys and requirement IDs are errors that name them.
    pub fn derive(def: &serde_json::Value) -> Result<Profile, ProfileError> {
        let bad = |reason: String| ProfileError::Definition { reason };
        let serde_json::Value::Object(map) = def else {
            return Err(bad(
                "a profile is a mapping with `name`, `extends` and the keys that differ".into(),
            ));
        };
        let text = |k: &str| {
            map.get(k)
                .and_then(serde_json::Value::as_str)
                .map(str::trim)
        };
        let name = text("name")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad("a profile needs a `name`".into()))?
            .to_string();
        if BUILTIN.iter().any(|(n, _)| *n == name) {
            return Err(bad(format!(
                "profile `{name}`: a built-in profile has that name; choose another"
            )));
        }
        let extends = text("extends").ok_or_else(|| {
            bad(format!(
                "profile `{name}` needs `extends:` naming a built-in profile ({})",
                Profile::names().join(", ")
            ))
        })?;
        let base = Profile::builtin(extends).map_err(|e| bad(format!("profile `{name}`: {e}")))?;
        let mut merged = serde_json::to_value(&base).map_err(|e| bad(e.to_string()))?;
        let mut changes = map.clone();
        changes.remove("extends");
        merge(&mut merged, serde_json::Value::Object(changes));
        let p: Profile =
            serde_json::from_value(merged).map_err(|e| bad(format!("profile `{name}`: {e}")))?;
        p.client
            .check()
            .map_err(|reason| bad(format!("profile `{name}`: {reason}")))?;
        let known = base.requirements.clone();
        if let Some(unknown) = p.requirements.iter().find(|r| !known.contains(r)) {
            return Err(bad(format!(
                "profile `{name}`: unknown requirement `{unknown}`; known: {}",
                known.join(", ")
            )));
        }
        Ok(p)
    }

    /// Makes profiles of the user's own known to [`Profile::shared`] and
    /// [`Profile::registered`] (one of the same name is replaced: a reloaded configuration).
    pub fn register(profiles: &[Profile]) {
        let mut cache = lock_cache();
        for p in profiles {
            cache.retain(|c| c.name != p.name);
            cache.push(Arc::new(p.clone()));
        }
        let mut user = lock_user();
        for p in profiles {
            user.retain(|n| n != &p.name);
            user.push(p.name.clone());
        }
    }

    /// Every known profile: the built-in ones, then the user's own (registered), each with
    /// whether it is built in.
    pub fn registered() -> Vec<(Arc<Profile>, bool)> {
        let mut out = Vec::new();
        for n in Profile::names() {
            if let Ok(p) = Profile::shared(n) {
                out.push((p, true));
            }
        }
        let user = lock_user().clone();
        for n in user {
            if let Ok(p) = Profile::shared(&n) {
                out.push((p, false));
            }
        }
        out
    }

    pub fn holds(&self, requirement: &str) -> bool {
        self.requirements.iter().any(|r| r == requirement)
    }

    pub fn warn_days(&self) -> u32 {
        self.certificate.warn_days
    }

    pub fn crit_days(&self) -> u32 {
        self.certificate.crit_days
    }

    /// This profile with the user's certificate expiry thresholds (`--cert-warn-days`,
    /// `--cert-crit-days`, config `cert_warn_days`/`cert_crit_days`) in place of its own.
    /// The critical threshold must be below the warning one, so both states can happen.
    pub fn with_cert_days(&self, warn: Option<u32>, crit: Option<u32>) -> Result<Profile, String> {
        let mut p = self.clone();
        if let Some(w) = warn {
            p.certificate.warn_days = w;
        }
        if let Some(c) = crit {
            p.certificate.crit_days = c;
        }
        const MAX_DAYS: u32 = 3650;
        if p.certificate.warn_days > MAX_DAYS {
            return Err(format!(
                "{} warning days is more than ten years; give at most {MAX_DAYS}",
                p.certificate.warn_days
            ));
        }
        if p.certificate.crit_days > 0 && p.certificate.crit_days >= p.certificate.warn_days {
            return Err(format!(
                "the critical threshold ({} days) must be below the warning one ({} days)",
                p.certificate.crit_days, p.certificate.warn_days
            ));
        }
        Ok(p)
    }
}

/// Built-in profiles as parsed, and the user's own once registered.
fn lock_cache() -> std::sync::MutexGuard<'static, Vec<Arc<Profile>>> {
    static CACHE: OnceLock<Mutex<Vec<Arc<Profile>>>> = OnceLock::new();
    CACHE
        .get_or_init(|| Mutex::new(Vec::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// The names of the user's own profiles, in the order they were registered.
fn lock_user() -> std::sync::MutexGuard<'static, Vec<String>> {
    static USER: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    USER.get_or_init(|| Mutex::new(Vec::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// `changes` over `base`: mappings merged key by key, anything else replaced.
fn merge(base: &mut serde_json::Value, changes: serde_json::Value) {
    match (base, changes) {
        (serde_json::Value::Object(b), serde_json::Value::Object(c)) => {
            for (k, v) in c {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

impl FromStr for TlsVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TlsVersion::ALL
            .into_iter()
            .find(|v| v.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown TLS version `{s}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_profiles_are_parsed_once() {
        let a = Profile::shared("hubspot").unwrap();
        let b = Profile::shared("hubspot").unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(Profile::shared("nope").is_err());
    }

    #[test]
    fn every_builtin_profile_parses() {
        for name in Profile::names() {
            let p = Profile::builtin(name).unwrap();
            assert_eq!(p.name, name);
            assert!(!p.requirements.is_empty());
        }
    }

    #[test]
    fn hubspot_profile_matches_the_source() {
        let p = Profile::builtin("hubspot").unwrap();
        assert_eq!(
            p.client.tls_versions,
            vec![
                TlsVersion::Ssl3,
                TlsVersion::Tls10,
                TlsVersion::Tls11,
                TlsVersion::Tls12
            ]
        );
        assert!(!p.client.tls_versions.contains(&TlsVersion::Tls13));
        assert!(p.client.names.common_name_fallback);
        assert_eq!(p.client.keys.rsa_min_bits, 1024);
        assert!(p.client.accepts_signature("sha1WithRSAEncryption"));
        assert!(!p.client.fetches_missing_intermediates);
        assert_eq!(p.client.sasl_mechanisms, vec!["PLAIN", "LOGIN"]);
        assert_eq!(p.connections.imap + p.connections.smtp, 4);
        assert_eq!(
            p.connections.imap_with_other_folders + p.connections.smtp,
            5
        );
        assert_eq!(p.certificate.warn_days, 30);
        assert_eq!(p.unsupported_software, vec!["Courier-IMAP".to_string()]);
    }

    #[test]
    fn unknown_profile_lists_the_known_ones() {
        let e = Profile::builtin("salesforce").unwrap_err().to_string();
        assert!(
            e.contains("unknown profile `salesforce`") && e.contains("hubspot"),
            "{e}"
        );
    }

    #[test]
    fn a_profile_of_ones_own_extends_a_builtin_one() {
        let def = serde_json::json!({
            "name": "strict-client",
            "extends": "hubspot",
            "description": "a client that follows RFC 6125 strictly",
            "client": {"names": {"common_name_fallback": false}, "keys": {"rsa_min_bits": 2048}},
            "certificate": {"warn_days": 14},
        });
        let p = Profile::derive(&def).unwrap();
        assert_eq!(p.name, "strict-client");
        assert!(!p.client.names.common_name_fallback);
        assert_eq!(p.client.keys.rsa_min_bits, 2048);
        // Untouched keys are the built-in's.
        assert_eq!(p.client.sasl_mechanisms, vec!["PLAIN", "LOGIN"]);
        assert_eq!(p.warn_days(), 14);
        Profile::register(std::slice::from_ref(&p));
        assert_eq!(Profile::shared("strict-client").unwrap().warn_days(), 14);
        assert!(
            Profile::registered()
                .iter()
                .any(|(p, builtin)| p.name == "strict-client" && !builtin)
        );

        let e = Profile::derive(
            &serde_json::json!({"name": "x", "extends": "hubspot", "client": {"nmaes": {}}}),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown field `nmaes`"), "{e}");
        let e = Profile::derive(
            &serde_json::json!({"name": "x", "extends": "hubspot", "requirements": ["imap.nope"]}),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown requirement `imap.nope`"), "{e}");
        let e = Profile::derive(&serde_json::json!({"name": "x", "extends": "nope"}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown profile `nope`"), "{e}");
    }

    #[test]
    fn version_names_round_trip() {
        for v in TlsVersion::ALL {
            assert_eq!(v.name().parse::<TlsVersion>().unwrap(), v);
            assert_eq!(TlsVersion::from_wire(v.wire()), Some(v));
        }
    }
}
