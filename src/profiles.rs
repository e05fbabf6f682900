//! Profiles of the user's own on the command line: `check --profile-file FILE` loads them for
//! one run, and `mailprobe profiles` lists every known profile with its client model.

use std::path::Path;

use mailprobe_core::profile::Profile;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::cli::{Format, ProfilesArgs};
use crate::{out, usage_error};

/// A profile file is small; anything larger is a mistake (or not a profile file).
const MAX_PROFILE_FILE: u64 = 1024 * 1024;

/// A file of profiles: `profiles:` and nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    profiles: Vec<Value>,
}

/// Reads a profile file and makes its profiles known for this run. The message names the file
/// and, for a mistake in a profile, which one and why.
pub fn load_file(path: &Path) -> Result<Vec<String>, String> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: cannot read it: {e}"))?;
    if meta.len() > MAX_PROFILE_FILE {
        return Err(format!(
            "{shown}: {} bytes is too large for a profile file (at most {MAX_PROFILE_FILE})",
            meta.len()
        ));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("{shown}: cannot read it: {e}"))?;
    let file: ProfileFile = serde_norway::from_str(&text).map_err(|e| format!("{shown}: {e}"))?;
    let mut built = Vec::new();
    for (i, def) in file.profiles.iter().enumerate() {
        built.push(Profile::derive(def).map_err(|e| format!("{shown}: profiles[{i}]: {e}"))?);
    }
    Profile::register(&built);
    Ok(built.into_iter().map(|p| p.name).collect())
}

/// `mailprobe profiles`.
pub fn list(args: &ProfilesArgs) -> u8 {
    if let Some(file) = &args.profile_file
        && let Err(e) = load_file(file)
    {
        return usage_error(&format!("--profile-file: {e}"));
    }
    // Loading the configuration registers its profiles.
    if let Some(config) = &args.config
        && let Err(e) = mailprobe_runtime::config::Config::load(config)
    {
        return usage_error(&format!("--config: {e}"));
    }
    let all = Profile::registered();
    match args.format {
        Format::Json => {
            let rows: Vec<Value> = all
                .iter()
                .map(|(p, builtin)| {
                    json!({
                        "name": p.name,
                        "kind": if *builtin { "builtin" } else { "user" },
                        "description": p.description,
                        "requirements": p.requirements,
                        "client": p.client,
                    })
                })
                .collect();
            out(&format!(
                "{}\n",
                serde_json::to_string_pretty(&rows).unwrap_or_else(|_| "[]".into())
            ));
        }
        Format::Text | Format::Nagios => {
            for (p, builtin) in &all {
                let c = &p.client;
                let versions: Vec<&str> = c.tls_versions.iter().map(|v| v.name()).collect();
                out(&format!(
                    "{:<16} {:<8} {}\n  client: {}; TLS {}; CN fallback {}; RSA >= {} bits; SHA-1 {}; SASL {}\n",
                    p.name,
                    if *builtin { "builtin" } else { "user" },
                    p.description,
                    c.kind,
                    versions.join(", "),
                    if c.names.common_name_fallback {
                        "yes"
                    } else {
                        "no"
                    },
                    c.keys.rsa_min_bits,
                    if c.accepts_signature("sha1WithRSAEncryption") {
                        "accepted"
                    } else {
                        "refused"
                    },
                    c.sasl_mechanisms.join(", "),
                ));
            }
        }
    }
    0
}
