//! Command-line interface: every subcommand and flag, parsed by clap. The same definitions
//! produce the shell completions and the manual page, so they cannot drift from the parser.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use mailprobe_core::model::{self, Protocol, SecurityMode, Target};
use mailprobe_core::net::{Budgets, DEFAULT_SERVER_BUDGET};
use mailprobe_core::profile::{DEFAULT_PROFILE, Profile};
use mailprobe_core::secret::{ProcessEnv, SecretSource};
use mailprobe_core::tls::Trust;
use mailprobe_plugin_host::LoadOptions;
use mailprobe_runtime::config::Isolation;
use mailprobe_runtime::runner::{self, RunOutcome};

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
    /// Check one mailbox (or every mailbox of --config) once and print a report (exit 0 compliant, 1 warnings, 2 non-compliant, 3 could not run or incomplete).
    Check(CheckArgs),
    /// The daemon: check every mailbox of the config on a schedule and export the results.
    /// SIGHUP (or `POST /-/reload`, with --web.enable-lifecycle) re-reads the file without a restart.
    Run(RunArgs),
    /// Check a configuration file and exit.
    Validate(ConfigArgs),
    /// About the check plugins.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Print the reference of every requirement the plugins report (markdown or JSON).
    Requirements(RequirementsArgs),
    /// Print the reference of every configuration key (markdown).
    #[command(name = "config-reference")]
    ConfigReference,
    /// Print a shell completion script to stdout (e.g. `mailprobe completions bash > /etc/bash_completion.d/mailprobe`).
    Completions(CompletionsArgs),
    /// Print the manual page (roff) to stdout, or write one page per command into --out-dir.
    Man(ManArgs),
    /// List the known profiles: the built-in ones and those of --profile-file / --config.
    Profiles(ProfilesArgs),
    /// Serves a dynamic plugin to a mailprobe parent process (process isolation).
    #[command(name = "plugin-host", hide = true)]
    PluginHost(PluginHostArgs),
}

#[derive(Args, Debug)]
pub struct ProfilesArgs {
    /// Also list the profiles this file defines (a YAML file with `profiles:`).
    #[arg(long, value_name = "FILE")]
    pub profile_file: Option<PathBuf>,
    /// Also list the profiles of this configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// text or json.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
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
    /// How to print the list: text (a table) or json (an array of name, kind, version,
    /// requirements, path).
    #[arg(long, value_enum, default_value = "text")]
    pub format: ListFormat,
}

/// What `plugins list` can print (a list has no Nagios state).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct RequirementsArgs {
    /// Also load dynamic plugins (*.so) from DIR.
    #[arg(long, value_name = "DIR")]
    pub plugin_dir: Option<PathBuf>,
    #[command(flatten)]
    pub dynamic: DynamicPluginArgs,
    /// How to print the reference: markdown (as in docs/requirements.md) or json.
    #[arg(long, value_enum, default_value = "markdown")]
    pub format: DocFormat,
}

/// The formats of generated reference documentation.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocFormat {
    Markdown,
    Json,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write mailprobe.1 and a page per subcommand (mailprobe-check.1, ...) into DIR instead of
    /// printing mailprobe.1.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// The configuration file (YAML): the mailboxes and how they are checked and exported.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Check only this replica's share of the mailboxes: shard INDEX (0-based) of COUNT, by a
    /// stable hash of the mailbox name. INDEX may be a StatefulSet pod name ending in its
    /// ordinal (`mailprobe-2/5`), so a manifest can set MAILPROBE_SHARD=$(POD_NAME)/5.
    #[arg(long, env = "MAILPROBE_SHARD", value_name = "INDEX/COUNT")]
    pub shard: Option<mailprobe_runtime::shard::Shard>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Serve /metrics, /healthz and /readyz on ADDRESS (e.g. 0.0.0.0:9925), whatever the file's
    /// `listen` says, and also while the file cannot be loaded (default: the file's `listen`,
    /// else 127.0.0.1:9925).
    #[arg(
        long = "web.listen-address",
        env = "MAILPROBE_LISTEN_ADDRESS",
        value_name = "ADDRESS"
    )]
    pub listen_address: Option<std::net::SocketAddr>,
    /// Also reload the file whenever its content changed, looking every DURATION (e.g. 30s):
    /// for where nothing sends SIGHUP or POST /-/reload, such as a Kubernetes ConfigMap.
    #[arg(long, env = "MAILPROBE_RELOAD_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub reload_interval: Option<Duration>,
    /// The least severe log level written (debug, info, warn, error). MAILPROBE_LOG, when set,
    /// is a finer filter (e.g. `info,mailprobe_exporter_otlp=debug`) and takes its place.
    #[arg(long = "log.level", value_enum, value_name = "LEVEL", default_value_t = crate::logformat::LogLevel::Info)]
    pub log_level: crate::logformat::LogLevel,
    /// The log line format on stderr: logfmt (`key=value`) or json (one object per line).
    #[arg(long = "log.format", value_enum, value_name = "FORMAT", default_value_t = crate::logformat::LogFormat::Logfmt)]
    pub log_format: crate::logformat::LogFormat,
    /// The admin endpoint's TLS and basic auth, in Prometheus' exporter-toolkit format
    /// (tls_server_config, basic_auth_users with bcrypt hashes, http_server_config.headers).
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,
    /// Serve POST /-/reload (off by default: it answers 403; SIGHUP always reloads).
    #[arg(long = "web.enable-lifecycle")]
    pub web_enable_lifecycle: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A report for people, grouped by server, with a remedy under each problem.
    Text,
    /// The `mailprobe.report/v1` JSON report (one per line with --config).
    Json,
    /// A Nagios plugin status line with perfdata, then one line per failing or warning
    /// requirement with its remedy.
    Nagios,
}

fn parse_security(s: &str) -> Result<SecurityMode, String> {
    s.parse()
}

/// A duration: `10s`, `1m30s`, or a bare number of seconds (`10`), as Nagios plugins take it.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let d = match t.parse::<f64>() {
        Ok(secs) if (0.0..=86_400.0).contains(&secs) => Duration::from_secs_f64(secs),
        Ok(_) => {
            return Err(format!(
                "`{s}` is not a duration; write e.g. 10 (seconds), 10s or 1m"
            ));
        }
        Err(_) => humantime::parse_duration(t).map_err(|e| {
            format!("`{s}` is not a duration ({e}); write e.g. 10 (seconds), 10s or 1m")
        })?,
    };
    if d < Duration::from_millis(100) {
        return Err(format!("`{s}` is too short; give at least 100ms"));
    }
    Ok(d)
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Check every mailbox of this configuration file (the one `run` takes) instead of the one
    /// that --imap, --user etc. describe. A mailbox that cannot be checked (e.g. its password
    /// is missing) is its own UNKNOWN row; the others are checked.
    #[arg(long, value_name = "FILE", conflicts_with_all = [
        "imap", "imap_security", "smtp", "smtp_security", "user", "password_env", "password_file",
        "connect_to", "source_address", "ca_file", "allow_insecure_cert", "profile", "profile_file", "timeout", "plugin_dir",
        "server_connections", "plugin_isolation", "plugin_config", "roundtrip", "roundtrip_to",
        "roundtrip_warn", "cert_warn_days", "cert_crit_days", "ip_version",
    ])]
    pub config: Option<PathBuf>,
    /// With --config: check only this mailbox (its `name`). Repeatable.
    #[arg(long, value_name = "NAME")]
    pub mailbox: Vec<String>,
    /// The IMAP server, HOST[:PORT] (default port 993). Port 993 means tls and 143 starttls;
    /// on any other port the probe finds out itself (see --imap-security).
    #[arg(long, value_name = "HOST[:PORT]", required_unless_present = "config")]
    pub imap: Option<String>,
    /// How the IMAP port is secured: tls (from the first byte), starttls, or auto (the
    /// default: well-known ports mean what they mean, any other port is detected).
    #[arg(long, value_name = "tls|starttls|auto", value_parser = parse_security)]
    pub imap_security: Option<SecurityMode>,
    /// The SMTP server, HOST[:PORT] (default port 465). Port 465 means tls, 587 and 25
    /// starttls; on any other port the probe finds out itself. Without it the SMTP
    /// requirements are skipped.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub smtp: Option<String>,
    /// How the SMTP port is secured: tls, starttls, or auto (the default, as for --imap-security).
    #[arg(long, value_name = "tls|starttls|auto", value_parser = parse_security)]
    pub smtp_security: Option<SecurityMode>,
    /// The login name.
    #[arg(long, required_unless_present = "config")]
    pub user: Option<String>,
    /// The environment variable holding the password (default: MAILPROBE_PASSWORD). A
    /// password is never taken on the command line.
    #[arg(long, value_name = "VAR", conflicts_with = "password_file")]
    pub password_env: Option<String>,
    /// A file holding the password (instead of an environment variable).
    #[arg(long, value_name = "PATH")]
    pub password_file: Option<PathBuf>,
    /// Reach HOST at ADDRESS; SNI and certificate name checks still use HOST. ADDRESS alone
    /// (as the config's connect_to) applies to both servers. Repeatable.
    #[arg(long, value_name = "[HOST:]ADDRESS")]
    pub connect_to: Vec<String>,
    /// Connect from this local address (e.g. the one the mailbox's firewall allowlists).
    #[arg(long, value_name = "ADDR", value_parser = parse_source_address)]
    pub source_address: Option<std::net::IpAddr>,
    /// Extra trust anchors (PEM), added to the system's.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Accept a certificate that is not signed by a trusted CA (reported as a warning).
    #[arg(long)]
    pub allow_insecure_cert: bool,
    /// The profile to judge against: a built-in one, or one of --profile-file (see `mailprobe
    /// profiles` and `mailprobe requirements`).
    #[arg(long, default_value = DEFAULT_PROFILE)]
    pub profile: String,
    /// A YAML file with `profiles:` of your own (each `extends:` a built-in one), for this run.
    #[arg(long, value_name = "FILE")]
    pub profile_file: Option<PathBuf>,
    /// How to print the result.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Deadline for the whole check: a duration (10s, 1m) or a bare number of seconds.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// A certificate that expires in fewer than N days is a warning (default: the profile's,
    /// 30 for hubspot).
    #[arg(long, value_name = "N")]
    pub cert_warn_days: Option<u32>,
    /// A certificate that expires in fewer than N days fails, as an expired one does (default:
    /// only an expired one fails).
    #[arg(long, value_name = "N")]
    pub cert_crit_days: Option<u32>,
    /// Which addresses of the server names are checked: 4, 6, or any (the default: every
    /// address a name resolves to, at most 8, one after the other).
    #[arg(long, value_name = "4|6|any", default_value = "any")]
    pub ip_version: mailprobe_core::net::IpVersion,
    /// Print the protocol transcript on stderr as it happens (connections, lines sent and
    /// received, TLS parameters, certificates), with the password and its encodings redacted.
    #[arg(short, long)]
    pub verbose: bool,
    /// Also load dynamic plugins (*.so) from DIR.
    #[arg(long, value_name = "DIR")]
    pub plugin_dir: Option<PathBuf>,
    #[command(flatten)]
    pub dynamic: DynamicPluginArgs,
    /// Run only these plugins (and what they need); the others' requirements are left out
    /// (default: every plugin).
    #[arg(long, value_name = "PLUGIN", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Connections the probe may hold at once to one server address (per protocol).
    #[arg(long, default_value_t = DEFAULT_SERVER_BUDGET)]
    pub server_connections: usize,
    /// Also run mail.roundtrip: send a test message through --smtp to the mailbox, wait for it in INBOX, then delete it (this writes to the mailbox). Needs --smtp.
    #[arg(long)]
    pub roundtrip: bool,
    /// Where the round trip's test message goes (default: --user, when it is an e-mail address).
    #[arg(long, value_name = "ADDRESS")]
    pub roundtrip_to: Option<String>,
    /// A round trip slower than this is a warning (default: 60s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub roundtrip_warn: Option<Duration>,
}

/// How the dynamic plugins of `--plugin-dir` run (the command-line side of the config's
/// `plugins.isolation` and `plugins.settings`).
#[derive(Args, Debug, Default)]
pub struct DynamicPluginArgs {
    /// Where dynamic plugins run: MODE for all of them, or NAME=MODE for one (MODE: in-process
    /// or process; default in-process). Repeatable.
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
    /// The plugin library (*.so) to serve.
    #[arg(long, value_name = "PATH")]
    pub library: PathBuf,
}

/// A check ready to run.
pub struct CheckSetup {
    pub target: Arc<Target>,
    pub trust: Trust,
    pub plugins: mailprobe_core::Selection,
    pub budgets: Arc<Budgets>,
    pub options: runner::RunOptions,
}

/// Applies `--connect-to` entries: `HOST:ADDRESS` to the endpoints whose host is HOST, and
/// `ADDRESS` alone (an IP address, `[V6]`, or a name without `:`, as the config's
/// `connect_to`) to every endpoint. As with curl's `--connect-to`, an entry for a host this
/// run does not use is ignored: one list of mappings can then serve every mailbox of a script.
pub fn apply_connect_to(
    entries: &[String],
    endpoints: &mut [&mut model::Endpoint],
) -> Result<(), String> {
    for entry in entries {
        let bare = entry.trim().trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<std::net::IpAddr>().is_ok() || (!bare.is_empty() && !bare.contains(':')) {
            for ep in endpoints.iter_mut() {
                ep.connect_to = Some(bare.to_string());
            }
            continue;
        }
        let Some((host, address)) = entry.split_once(':') else {
            return Err(format!(
                "--connect-to `{entry}`: expected [HOST:]ADDRESS, e.g. imap.example.com:192.0.2.10, or 192.0.2.10 for both servers"
            ));
        };
        let address = address.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || address.is_empty() {
            return Err(format!(
                "--connect-to `{entry}`: expected [HOST:]ADDRESS, e.g. imap.example.com:192.0.2.10, or 192.0.2.10 for both servers"
            ));
        }
        for ep in endpoints.iter_mut() {
            if ep.host.eq_ignore_ascii_case(host) {
                ep.connect_to = Some(address.to_string());
            }
        }
    }
    Ok(())
}

/// Parses `--source-address` and makes sure the machine has that address, so that a typo is a
/// usage error rather than every check failing to connect.
fn parse_source_address(s: &str) -> Result<std::net::IpAddr, String> {
    let ip: std::net::IpAddr = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not an IP address; give one of this machine's addresses"))?;
    mailprobe_core::net::check_source_address(ip)?;
    Ok(ip)
}

pub fn check_setup(args: &CheckArgs) -> Result<CheckSetup, String> {
    // clap requires both unless --config is given, and --config takes another path.
    let (Some(imap_arg), Some(user)) = (&args.imap, &args.user) else {
        return Err("give --imap HOST[:PORT] and --user USER, or --config FILE".into());
    };
    if !args.mailbox.is_empty() {
        return Err(
            "--mailbox picks mailboxes of a configuration file; add --config FILE, or drop --mailbox"
                .into(),
        );
    }
    if user.trim().is_empty() {
        return Err("--user is empty; give the mailbox's login name".into());
    }
    if let Some(file) = &args.profile_file {
        crate::profiles::load_file(file).map_err(|e| format!("--profile-file: {e}"))?;
    }
    let profile = Profile::shared(&args.profile).map_err(|e| format!("--profile: {e}"))?;
    let profile = match (args.cert_warn_days, args.cert_crit_days) {
        (None, None) => profile,
        (warn, crit) => Arc::new(
            profile
                .with_cert_days(warn, crit)
                .map_err(|e| format!("--cert-warn-days/--cert-crit-days: {e}"))?,
        ),
    };
    let mut imap = model::endpoint(
        Protocol::Imap,
        imap_arg,
        args.imap_security.and_then(SecurityMode::explicit),
    )
    .map_err(|e| format!("--imap: {e}"))?;
    let mut smtp = match &args.smtp {
        Some(s) => Some(
            model::endpoint(
                Protocol::Smtp,
                s,
                args.smtp_security.and_then(SecurityMode::explicit),
            )
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
        for ep in eps {
            ep.source_address = args.source_address;
        }
    }
    let source = match (&args.password_env, &args.password_file) {
        (_, Some(f)) => SecretSource::File(f.clone()),
        (Some(v), None) => SecretSource::Env(v.clone()),
        (None, None) => SecretSource::Env("MAILPROBE_PASSWORD".into()),
    };
    let password = source
        .load(&ProcessEnv)
        .map_err(|e| password_error(args, &e))?;
    let trust = Trust::load(args.ca_file.as_deref()).map_err(|e| format!("--ca-file: {e}"))?;
    if args.server_connections < 2 {
        return Err("--server-connections must be at least 2".into());
    }
    let options = args.dynamic.options(args.plugin_dir.as_deref())?;
    let registry = crate::builtins::registry_with_dynamic(args.plugin_dir.as_deref(), &options)?;
    let plugins = registry.select(&args.only).map_err(|e| e.to_string())?;
    crate::builtins::check_profile(&registry, &profile)?;
    let roundtrip = roundtrip_settings(args, user)?;
    let target = Target {
        mailbox: user.clone(),
        profile: profile.clone(),
        imap,
        smtp,
        user: user.clone(),
        password,
        ca_file: args.ca_file.clone(),
        allow_insecure_cert: args.allow_insecure_cert,
        timeout: args.timeout,
        roundtrip,
    };
    Ok(CheckSetup {
        target: Arc::new(target),
        trust,
        plugins,
        budgets: Arc::new(Budgets::new(args.server_connections)),
        options: runner::RunOptions {
            ip_version: args.ip_version,
            ..Default::default()
        },
    })
}

/// What to do about a password that cannot be read, in the words the user used: the flag
/// they gave, or (when they gave none) the default variable the probe read.
fn password_error(args: &CheckArgs, e: &mailprobe_core::secret::SecretError) -> String {
    match (&args.password_env, &args.password_file) {
        (_, Some(_)) => format!("--password-file: {e}"),
        (Some(_), None) => format!("--password-env: {e}"),
        (None, None) => format!(
            "no password: the password is read from the environment variable MAILPROBE_PASSWORD ({e}), or give --password-env VAR or --password-file PATH"
        ),
    }
}

/// `--roundtrip` and its options: only together, and only with `--smtp` and an address to
/// send to.
fn roundtrip_settings(args: &CheckArgs, user: &str) -> Result<Option<model::Roundtrip>, String> {
    if !args.roundtrip {
        for (flag, set) in [
            ("--roundtrip-to", args.roundtrip_to.is_some()),
            ("--roundtrip-warn", args.roundtrip_warn.is_some()),
        ] {
            if set {
                return Err(format!(
                    "{flag} is given without --roundtrip; add --roundtrip"
                ));
            }
        }
        return Ok(None);
    }
    if args.smtp.is_none() {
        return Err(
            "--roundtrip needs --smtp HOST[:PORT], the server the test message is sent through; add --smtp"
                .into(),
        );
    }
    if let Some(w) = args.roundtrip_warn
        && w > Duration::from_secs(600)
    {
        return Err("--roundtrip-warn must be at most 10m".into());
    }
    model::Roundtrip::new(user, args.roundtrip_to.as_deref(), args.roundtrip_warn)
        .map(Some)
        .map_err(|e| match args.roundtrip_to {
            Some(_) => format!("--roundtrip-to: {e}"),
            None => format!("--roundtrip: {e} with --roundtrip-to ADDRESS"),
        })
}

pub async fn run_check(setup: CheckSetup) -> RunOutcome {
    runner::run_target_with(
        setup.target,
        setup.trust,
        setup.budgets,
        &setup.plugins,
        &setup.options,
    )
    .await
}

/// The completion script of `shell`, generated from the parser's own definitions.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "mailprobe", &mut out);
    out
}

/// `mailprobe man`: the top page on stdout, or every page into `out_dir` (returns what it wrote).
pub fn man(out_dir: Option<&std::path::Path>) -> Result<Vec<u8>, String> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    match out_dir {
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .map_err(|e| format!("cannot render the manual page: {e}"))?;
            Ok(out)
        }
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("--out-dir: cannot create {}: {e}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir).map_err(|e| {
                format!(
                    "--out-dir: cannot write the manual pages into {}: {e}",
                    dir.display()
                )
            })?;
            Ok(format!("wrote the manual pages into {}\n", dir.display()).into_bytes())
        }
    }
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
        // Like curl: a mapping for a host this run does not use changes nothing.
        apply_connect_to(&["other:1.2.3.4".into()], &mut [&mut a, &mut b]).unwrap();
        assert_eq!(a.connect_to.as_deref(), Some("127.0.0.1"));
        assert_eq!(b.connect_to, None);
        apply_connect_to(&["imap.x.test:[::1]".into()], &mut [&mut a]).unwrap();
        assert_eq!(a.connect_to.as_deref(), Some("::1"));
    }

    #[test]
    fn connect_to_address_alone_applies_to_both_servers_as_in_the_config() {
        for (entry, want) in [
            ("127.0.0.1", "127.0.0.1"),
            ("::1", "::1"),
            ("[::1]", "::1"),
            ("gateway.lab.test", "gateway.lab.test"),
        ] {
            let mut a = model::endpoint(Protocol::Imap, "imap.x.test", None).unwrap();
            let mut b = model::endpoint(Protocol::Smtp, "smtp.x.test", None).unwrap();
            apply_connect_to(&[entry.into()], &mut [&mut a, &mut b]).unwrap();
            assert_eq!(a.connect_to.as_deref(), Some(want), "{entry}");
            assert_eq!(b.connect_to.as_deref(), Some(want), "{entry}");
        }
    }

    #[test]
    fn a_bare_number_is_seconds() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("0").unwrap_err().contains("too short"));
        assert!(parse_duration("-3").unwrap_err().contains("not a duration"));
        assert!(parse_duration("ten").unwrap_err().contains("10 (seconds)"));
    }

    /// What `--help` renders: every flag and subcommand of every command says what it does.
    #[test]
    fn every_flag_and_subcommand_has_help() {
        use clap::CommandFactory;
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") || arg.is_hide_set() {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} --{}", arg.get_long().unwrap_or(id)));
                }
            }
            for sub in cmd.get_subcommands() {
                let name = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(name.clone());
                }
                walk(sub, &name, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "mailprobe", &mut missing);
        assert!(missing.is_empty(), "without help text: {missing:#?}");
    }
}
