//! Command-line interface (see SPEC.md, "Command line").

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use mailprobe_core::config::Isolation;
use mailprobe_core::model::{self, Protocol, Security, Target};
use mailprobe_core::net::{Budgets, DEFAULT_SERVER_BUDGET};
use mailprobe_core::plugin::CheckPlugin;
use mailprobe_core::profile::{DEFAULT_PROFILE, Profile};
use mailprobe_core::runner::{self, RunOutcome};
use mailprobe_core::secret::{ProcessEnv, SecretSource};
use mailprobe_core::tls::Trust;
use mailprobe_plugin_host::LoadOptions;

#[derive(Parser, Debug)]
#[command(name = "mailprobe", version = option_env!("MAILPROBE_VERSION").unwrap_or(env!("CARGO_PKG_VERSION")), about = "Checks that mailboxes' IMAP and SMTP servers meet a CRM's connection requirements.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
// Parsed once per process: the size of the `check` arguments does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Check one mailbox once and print a report (exit 0 compliant, 1 warnings, 2 non-compliant, 3 could not run or incomplete).
    Check(CheckArgs),
    /// The daemon: check every mailbox of the config on a schedule and export the results.
    Run(ConfigArgs),
    /// Check a configuration file and exit.
    Validate(ConfigArgs),
    /// About the check plugins.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Serves a dynamic plugin to a mailprobe parent process (process isolation).
    #[command(name = "plugin-host", hide = true)]
    PluginHost(PluginHostArgs),
}

#[derive(Subcommand, Debug)]
pub enum PluginsCommand {
    /// List the built-in and loaded plugins.
    List(PluginsListArgs),
}

#[derive(Args, Debug)]
pub struct PluginsListArgs {
    /// Also load dynamic plugins (*.so) from DIR.
    #[arg(long, value_name = "DIR")]
    pub plugin_dir: Option<PathBuf>,
    #[command(flatten)]
    pub dynamic: DynamicPluginArgs,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Check only this replica's share of the mailboxes: shard INDEX (0-based) of COUNT, by a
    /// stable hash of the mailbox name. INDEX may be a StatefulSet pod name ending in its
    /// ordinal (`mailprobe-2/5`), so a manifest can set MAILPROBE_SHARD=$(POD_NAME)/5.
    #[arg(long, env = "MAILPROBE_SHARD", value_name = "INDEX/COUNT")]
    pub shard: Option<mailprobe_core::shard::Shard>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Nagios,
}

fn parse_security(s: &str) -> Result<Security, String> {
    s.parse()
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. 10s or 1m"))?;
    if d < Duration::from_millis(100) {
        return Err(format!("`{s}` is too short; give at least 100ms"));
    }
    Ok(d)
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The IMAP server, HOST[:PORT] (993 implies tls, other ports starttls).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub imap: String,
    #[arg(long, value_name = "tls|starttls", value_parser = parse_security)]
    pub imap_security: Option<Security>,
    /// The SMTP server, HOST[:PORT] (465 implies tls, other ports starttls). Without it the SMTP requirements are skipped.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub smtp: Option<String>,
    #[arg(long, value_name = "tls|starttls", value_parser = parse_security)]
    pub smtp_security: Option<Security>,
    /// The login name.
    #[arg(long)]
    pub user: String,
    /// The environment variable holding the password.
    #[arg(long, value_name = "VAR", conflicts_with = "password_file")]
    pub password_env: Option<String>,
    /// A file holding the password.
    #[arg(long, value_name = "PATH")]
    pub password_file: Option<PathBuf>,
    /// Reach HOST at ADDRESS; SNI and certificate name checks still use HOST. Repeatable.
    #[arg(long, value_name = "HOST:ADDRESS")]
    pub connect_to: Vec<String>,
    /// Extra trust anchors (PEM), added to the system's.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Accept a certificate that is not signed by a trusted CA (reported as a warning).
    #[arg(long)]
    pub allow_insecure_cert: bool,
    #[arg(long, default_value = DEFAULT_PROFILE)]
    pub profile: String,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Deadline for the whole check.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Also load dynamic plugins (*.so) from DIR.
    #[arg(long, value_name = "DIR")]
    pub plugin_dir: Option<PathBuf>,
    #[command(flatten)]
    pub dynamic: DynamicPluginArgs,
    /// Run only these plugins (and what they need).
    #[arg(long, value_name = "PLUGIN", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Connections the probe may hold to one server at once.
    #[arg(long, default_value_t = DEFAULT_SERVER_BUDGET)]
    pub server_connections: usize,
}

/// How the dynamic plugins of `--plugin-dir` run (the command-line side of the config's
/// `plugins.isolation` and `plugins.settings`).
#[derive(Args, Debug, Default)]
pub struct DynamicPluginArgs {
    /// Where dynamic plugins run: MODE for all of them, or NAME=MODE for one (MODE: in-process
    /// or process). Repeatable.
    #[arg(long, value_name = "[NAME=]MODE")]
    pub plugin_isolation: Vec<String>,
    /// A dynamic plugin's configuration, as JSON: NAME=JSON, e.g. pop3='{"port":995}'. Repeatable.
    #[arg(long, value_name = "NAME=JSON")]
    pub plugin_config: Vec<String>,
}

impl DynamicPluginArgs {
    pub fn options(&self, dir: Option<&std::path::Path>) -> Result<LoadOptions, String> {
        let mut opts = LoadOptions::default();
        if dir.is_none() && !(self.plugin_isolation.is_empty() && self.plugin_config.is_empty()) {
            return Err(
                "--plugin-isolation and --plugin-config apply to dynamic plugins; add --plugin-dir DIR"
                    .into(),
            );
        }
        for entry in &self.plugin_isolation {
            match entry.split_once('=') {
                None => {
                    opts.isolation = entry
                        .parse::<Isolation>()
                        .map_err(|e| format!("--plugin-isolation: {e}"))?
                }
                Some((name, mode)) => {
                    opts.settings.entry(name.to_string()).or_default().isolation = Some(
                        mode.parse::<Isolation>()
                            .map_err(|e| format!("--plugin-isolation {name}: {e}"))?,
                    )
                }
            }
        }
        for entry in &self.plugin_config {
            let Some((name, json)) = entry.split_once('=') else {
                return Err(format!(
                    "--plugin-config `{entry}`: expected NAME=JSON, e.g. pop3='{{\"port\":995}}'"
                ));
            };
            let value: serde_json::Value = serde_json::from_str(json)
                .map_err(|e| format!("--plugin-config {name}: not JSON ({e})"))?;
            opts.settings.entry(name.to_string()).or_default().config = value;
        }
        Ok(opts)
    }
}

/// The hidden `mailprobe plugin-host --library PATH`: serves one plugin library over stdio for
/// `isolation: process` (mailprobe runs it itself).
#[derive(Args, Debug)]
pub struct PluginHostArgs {
    #[arg(long, value_name = "PATH")]
    pub library: PathBuf,
}

/// A check ready to run.
pub struct CheckSetup {
    pub target: Arc<Target>,
    pub trust: Trust,
    pub plugins: Vec<Arc<dyn CheckPlugin>>,
    pub budgets: Arc<Budgets>,
}

/// Applies `--connect-to HOST:ADDRESS` entries to the endpoints whose host is HOST.
pub fn apply_connect_to(
    entries: &[String],
    endpoints: &mut [&mut model::Endpoint],
) -> Result<(), String> {
    for entry in entries {
        let Some((host, address)) = entry.split_once(':') else {
            return Err(format!(
                "--connect-to `{entry}`: expected HOST:ADDRESS, e.g. imap.example.com:192.0.2.10"
            ));
        };
        let address = address.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || address.is_empty() {
            return Err(format!(
                "--connect-to `{entry}`: expected HOST:ADDRESS, e.g. imap.example.com:192.0.2.10"
            ));
        }
        let mut used = false;
        for ep in endpoints.iter_mut() {
            if ep.host.eq_ignore_ascii_case(host) {
                ep.connect_to = Some(address.to_string());
                used = true;
            }
        }
        if !used {
            return Err(format!(
                "--connect-to `{entry}`: `{host}` is neither the --imap nor the --smtp host"
            ));
        }
    }
    Ok(())
}

pub fn check_setup(args: &CheckArgs) -> Result<CheckSetup, String> {
    if args.user.trim().is_empty() {
        return Err("--user is empty; give the mailbox's login name".into());
    }
    let profile = Profile::builtin(&args.profile).map_err(|e| format!("--profile: {e}"))?;
    let mut imap = model::endpoint(Protocol::Imap, &args.imap, args.imap_security)
        .map_err(|e| format!("--imap: {e}"))?;
    let mut smtp = match &args.smtp {
        Some(s) => Some(
            model::endpoint(Protocol::Smtp, s, args.smtp_security)
                .map_err(|e| format!("--smtp: {e}"))?,
        ),
        None if args.smtp_security.is_some() => {
            return Err("--smtp-security is given without --smtp; add --smtp HOST[:PORT]".into());
        }
        None => None,
    };
    {
        let mut eps: Vec<&mut model::Endpoint> = vec![&mut imap];
        if let Some(s) = smtp.as_mut() {
            eps.push(s);
        }
        apply_connect_to(&args.connect_to, &mut eps)?;
    }
    let source = match (&args.password_env, &args.password_file) {
        (_, Some(f)) => SecretSource::File(f.clone()),
        (Some(v), None) => SecretSource::Env(v.clone()),
        (None, None) => SecretSource::Env("MAILPROBE_PASSWORD".into()),
    };
    let password = source.load(&ProcessEnv).map_err(|e| {
        let flag = match source {
            SecretSource::File(_) => "--password-file",
            SecretSource::Env(_) => "--password-env",
        };
        format!("{flag}: {e}")
    })?;
    let trust = Trust::load(args.ca_file.as_deref()).map_err(|e| format!("--ca-file: {e}"))?;
    if args.server_connections < 2 {
        return Err("--server-connections must be at least 2".into());
    }
    let options = args.dynamic.options(args.plugin_dir.as_deref())?;
    let registry = crate::builtins::registry_with_dynamic(args.plugin_dir.as_deref(), &options)?;
    let plugins = registry.select(&args.only).map_err(|e| e.to_string())?;
    let target = Target {
        mailbox: args.user.clone(),
        profile: Arc::new(profile),
        imap,
        smtp,
        user: args.user.clone(),
        password,
        ca_file: args.ca_file.clone(),
        allow_insecure_cert: args.allow_insecure_cert,
        timeout: args.timeout,
    };
    Ok(CheckSetup {
        target: Arc::new(target),
        trust,
        plugins,
        budgets: Arc::new(Budgets::new(args.server_connections)),
    })
}

pub async fn run_check(setup: CheckSetup) -> RunOutcome {
    runner::run_target(setup.target, setup.trust, setup.budgets, &setup.plugins).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_to_applies_to_the_named_host_only() {
        let mut a = model::endpoint(Protocol::Imap, "imap.x.test", None).unwrap();
        let mut b = model::endpoint(Protocol::Smtp, "smtp.x.test", None).unwrap();
        apply_connect_to(&["imap.x.test:127.0.0.1".into()], &mut [&mut a, &mut b]).unwrap();
        assert_eq!(a.connect_to.as_deref(), Some("127.0.0.1"));
        assert_eq!(b.connect_to, None);
        let e = apply_connect_to(&["other:1.2.3.4".into()], &mut [&mut a]).unwrap_err();
        assert!(e.contains("neither"));
        apply_connect_to(&["imap.x.test:[::1]".into()], &mut [&mut a]).unwrap();
        assert_eq!(a.connect_to.as_deref(), Some("::1"));
    }
}
