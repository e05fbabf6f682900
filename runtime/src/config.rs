//! The configuration file of `mailprobe run` / `validate` (YAML). Unknown keys are errors that
//! name the key, the file and the line; every other mistake names the field and the fix.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

mod lines;
mod mailbox;

use lines::{find_key_line, mailbox_line, mailbox_lines};
use mailbox::{check_mailbox, mailbox_error};
use mailprobe_core::model::{self, Protocol, Roundtrip, SecurityMode, Target};
use mailprobe_core::net::DEFAULT_SERVER_BUDGET;
use mailprobe_core::profile::{DEFAULT_PROFILE, Profile};
use mailprobe_core::secret::{Environment, SecretSource};

const MAX_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const MAX_INTERVAL: Duration = Duration::from_secs(24 * 3600);
const MAX_CONCURRENCY: usize = 10_000;
const MAX_SERVER_CONNECTIONS: usize = 100;
const MAX_ALERT_AFTER: u32 = 1000;

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    // A bare number is seconds, as on the command line (`timeout: 30`).
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Seconds(u64),
        Fraction(f64),
        Text(String),
    }
    let s = match Raw::deserialize(d)? {
        Raw::Seconds(n) => return Ok(Duration::from_secs(n)),
        Raw::Fraction(f) => {
            return Duration::try_from_secs_f64(f).map_err(|_| {
                serde::de::Error::custom(format!(
                    "`{f}` is not a duration; write e.g. 30s, 5m or 1h"
                ))
            });
        }
        Raw::Text(s) => s,
    };
    if let Ok(n) = s.trim().parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    humantime::parse_duration(&s).map_err(|_| {
        serde::de::Error::custom(format!("`{s}` is not a duration; write e.g. 30s, 5m or 1h"))
    })
}

pub(crate) fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

fn default_interval() -> Duration {
    Duration::from_secs(300)
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_concurrency() -> usize {
    32
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9925))
}
fn default_server_connections() -> usize {
    DEFAULT_SERVER_BUDGET
}
fn default_profile() -> String {
    DEFAULT_PROFILE.to_string()
}

/// The OTLP exporter. Where a field is absent, the standard `OTEL_EXPORTER_OTLP_*` variables apply.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    pub endpoint: Option<String>,
    /// `grpc` or `http/protobuf`.
    pub protocol: Option<String>,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub export_interval: Option<Duration>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Base URL of Alertmanager (`/api/v2/alerts` is appended).
    pub alertmanager: Option<String>,
    /// A URL that receives the JSON report on every compliance transition.
    pub webhook: Option<String>,
    /// Consecutive failing runs before an alert fires.
    #[serde(default = "default_alert_after")]
    pub alert_after: u32,
}

fn default_alert_after() -> u32 {
    1
}

/// Dynamic check plugins:
///
/// ```yaml
/// plugins:
///   dir: /usr/lib/mailprobe/plugins   # every *.so in it is loaded
///   isolation: in-process             # the default for every plugin (in-process | process)
///   settings:                         # per plugin, by its name (`mailprobe plugins list`)
///     pop3:
///       isolation: process            # run it in a child process: a crash cannot take the probe down
///       config: { port: 995 }         # handed to the plugin as its configuration
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    pub dir: Option<PathBuf>,
    /// How plugins run unless their `settings` entry says otherwise.
    #[serde(default)]
    pub isolation: Isolation,
    /// Per-plugin settings, keyed by the plugin's name. A name that no loaded plugin has is an
    /// error when the plugins are loaded.
    #[serde(default)]
    pub settings: BTreeMap<String, PluginSettings>,
}

/// Where a dynamic plugin runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// Loaded into mailprobe's own process: cheapest, but a crash in the plugin (a segfault, an
    /// abort) takes the probe down. Panics are caught either way.
    #[default]
    InProcess,
    /// Run in a child process (`mailprobe plugin-host`) per call: a crash fails only the
    /// plugin's requirements, and the deadline is enforced by killing the child.
    Process,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::InProcess => "in-process",
            Isolation::Process => "process",
        }
    }
}

impl std::str::FromStr for Isolation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "in-process" => Ok(Isolation::InProcess),
            "process" => Ok(Isolation::Process),
            other => Err(format!(
                "`{other}` is not an isolation mode; use in-process or process"
            )),
        }
    }
}

/// One plugin's entry under `plugins.settings`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSettings {
    /// Overrides `plugins.isolation` for this plugin.
    #[serde(default)]
    pub isolation: Option<Isolation>,
    /// The plugin's own configuration, passed to it as JSON (null when absent).
    #[serde(default)]
    pub config: serde_json::Value,
}

/// One mailbox to check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxConfig {
    /// The `mailbox` label everywhere.
    pub name: String,
    #[serde(default = "default_profile")]
    pub profile: String,
    pub imap: String,
    pub imap_security: Option<SecurityMode>,
    pub smtp: Option<String>,
    pub smtp_security: Option<SecurityMode>,
    pub user: String,
    pub password: SecretSource,
    /// The address to reach both hosts at (SNI and name checks still use the host names).
    pub connect_to: Option<String>,
    /// The local address to connect from (the one the mailbox's firewall allowlists).
    pub source_address: Option<std::net::IpAddr>,
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub allow_insecure_cert: bool,
    /// Overrides the file's `timeout` for this mailbox.
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// The opt-in `mail.roundtrip` check (it writes to the mailbox).
    #[serde(default)]
    pub roundtrip: bool,
    /// Where the round trip's test message goes (default: `user`, when it is an address).
    pub roundtrip_to: Option<String>,
    /// A delivery slower than this warns.
    #[serde(default, deserialize_with = "opt_duration")]
    pub roundtrip_warn: Option<Duration>,
    /// Overrides the file's `cert_warn_days` for this mailbox.
    #[serde(default)]
    pub cert_warn_days: Option<u32>,
    /// Overrides the file's `cert_crit_days` for this mailbox.
    #[serde(default)]
    pub cert_crit_days: Option<u32>,
}

/// The whole file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_interval", deserialize_with = "duration")]
    pub interval: Duration,
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Connections the probe may hold to one server at once, across all mailboxes.
    #[serde(default = "default_server_connections")]
    pub server_connections: usize,
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Which addresses of the servers' names are checked (4, 6 or any).
    #[serde(default)]
    pub ip_version: mailprobe_core::net::IpVersion,
    /// Certificate expiry thresholds in days, overriding the profiles'.
    #[serde(default)]
    pub cert_warn_days: Option<u32>,
    #[serde(default)]
    pub cert_crit_days: Option<u32>,
    #[serde(default)]
    pub otlp: Option<OtlpConfig>,
    #[serde(default)]
    pub alerts: Option<AlertsConfig>,
    #[serde(default)]
    pub plugins: Option<PluginsConfig>,
    /// Profiles of the user's own, each `extends:` a built-in one and holds only the keys that
    /// differ (see docs/client-model.md and docs/configuration.md).
    #[serde(default)]
    pub profiles: Vec<serde_json::Value>,
    /// How long each requirement group's proof holds in the daemon (see `crate::cadence`).
    #[serde(default)]
    pub cadence: crate::cadence::Cadence,
    pub mailboxes: Vec<MailboxConfig>,
}

/// A mailbox entry that `run` cannot use: it is reported `incomplete` with the error, while
/// the other mailboxes are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenMailbox {
    /// Its `mailbox` label: its name, or `mailboxes[INDEX]` when it has no usable name of its own.
    pub name: String,
    /// The profile it names, if any (whose requirements it is reported on).
    pub profile: Option<String>,
    pub error: ConfigError,
}

/// A configuration mistake: where it is and what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: {}", self.file, self.message),
            (Some(l), None) => write!(f, "{}:{l}: {}", self.file, self.message),
            _ => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Why a receiver URL (OTLP endpoint, Alertmanager, webhook) cannot be used, in words that never
/// quote it: it may carry user information, a token in its path or a key in its query.
fn receiver_url(url: &str) -> Result<(), &'static str> {
    let url = url.trim();
    if url.is_empty() {
        return Ok(());
    }
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return Err("must start with http:// or https://");
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("holds a space or a control character");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => return Err("has an IPv6 address without its closing `]`"),
        },
        None => match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        },
    };
    if host.is_empty() {
        return Err("has no host");
    }
    if let Some(p) = port
        && p.parse::<u16>().map_or(true, |p| p == 0)
    {
        return Err("has a port that is not a number from 1 to 65535");
    }
    Ok(())
}

/// The largest configuration file read: far above 100,000 mailboxes' entries, far below what
/// would exhaust memory (`/dev/zero` given by mistake is refused as a device anyway).
pub const MAX_CONFIG_FILE: u64 = 256 * 1024 * 1024;

/// The configuration decides where passwords are sent: a file others may write is told (a
/// warning, as sshd's StrictModes would refuse it, but many deployments mount it group-writable).
fn warn_if_others_may_write(path: &Path) {
    #[cfg(unix)]
    if std::fs::metadata(path).is_ok_and(|m| m.is_file())
        && let Ok(w) = mailprobe_core::file::writers(path)
        && w.shared()
    {
        tracing::warn!(
            file = %path.display(),
            mode = %format!("{:o}", w.mode),
            "the configuration file can be written by other users, and it decides where passwords are sent; run `chmod go-w` on it"
        );
    }
}

/// Reads the configuration file bounded in size and time, off the caller's thread.
fn read_config(path: &Path) -> Result<String, ConfigError> {
    warn_if_others_may_write(path);
    mailprobe_core::file::read_to_string(path, MAX_CONFIG_FILE, mailprobe_core::file::READ_DEADLINE)
        .map(|mut text| std::mem::take(&mut *text))
        .map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            column: None,
            message: format!("cannot read the configuration file: {e}"),
        })
}

impl Config {
    /// Reads and checks a file; see [`Config::parse`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = read_config(path)?;
        Config::parse(&text, &shown)
    }

    /// Parses YAML text and checks everything that can be checked without the network.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let config: Config = serde_norway::from_str(text).map_err(|e| {
            let loc = e.location();
            let mut message = e.to_string();
            // The location is shown in front; drop serde_norway's own " at line N column M".
            if let Some(i) = message.find(" at line ") {
                message.truncate(i);
            }
            if message.contains("unknown field") {
                message.push_str("; remove it or correct its spelling");
            }
            if message.contains("missing field") {
                message.push_str("; add it");
            }
            let mut line = loc.as_ref().map(|l| l.line());
            let mut column = loc.as_ref().map(|l| l.column());
            // A scalar's own error (a bad duration) comes without the key's name or place: find
            // the line that holds the quoted value.
            if let Some(value) = message
                .strip_prefix('`')
                .and_then(|m| m.split_once("` is not a duration"))
                .map(|(v, _)| v.to_string())
                && let Some((i, l)) = text
                    .lines()
                    .enumerate()
                    .find(|(_, l)| l.split_once(':').is_some_and(|(_, v)| v.trim() == value))
            {
                let key = l
                    .split_once(':')
                    .map(|(k, _)| k.trim().trim_start_matches("- "));
                message = format!("{}: {message}", key.unwrap_or("value"));
                line = Some(i + 1);
                column = None;
            }
            ConfigError {
                file: file.to_string(),
                line,
                column,
                message,
            }
        })?;
        config.check(text, file)?;
        Ok(config)
    }

    fn check(&self, text: &str, file: &str) -> Result<(), ConfigError> {
        self.check_top(text, file, false)?;
        let mut names = HashSet::new();
        let starts = mailbox_lines(text);
        for (i, m) in self.mailboxes.iter().enumerate() {
            check_mailbox(i, starts.get(i).copied(), m, text, file, &mut names)?;
        }
        Ok(())
    }

    /// The checks of everything but the mailbox entries.
    fn check_top(&self, text: &str, file: &str, allow_empty: bool) -> Result<(), ConfigError> {
        let err = |line: Option<usize>, message: String| ConfigError {
            file: file.to_string(),
            line,
            column: None,
            message,
        };
        let top = |key: &str| find_key_line(text, 0, key);
        // Before the mailboxes: they may name these profiles.
        self.register_profiles(text, file)?;
        if self.interval < Duration::from_secs(1) {
            return Err(err(top("interval"), "interval must be at least 1s".into()));
        }
        if self.timeout < Duration::from_secs(1) {
            return Err(err(top("timeout"), "timeout must be at least 1s".into()));
        }
        // Upper bounds: a typo such as `300000000000y` must be refused here, not overflow a
        // deadline computation later; none of these limits is near a real need.
        if self.interval > MAX_INTERVAL {
            return Err(err(top("interval"), "interval must be at most 24h".into()));
        }
        if self.timeout > MAX_TIMEOUT {
            return Err(err(top("timeout"), "timeout must be at most 10m".into()));
        }
        if let Some(problem) = self.cadence.problem() {
            return Err(err(top("cadence"), problem));
        }
        for (i, m) in self.mailboxes.iter().enumerate() {
            if let Some(t) = m.timeout
                && !(Duration::from_secs(1)..=MAX_TIMEOUT).contains(&t)
            {
                let line = mailbox_line(text, i).and_then(|l| find_key_line(text, l, "timeout"));
                return Err(err(
                    line,
                    format!(
                        "mailboxes[{i}].timeout must be between 1s and 10m (the check of one mailbox)"
                    ),
                ));
            }
        }
        if self.concurrency > MAX_CONCURRENCY {
            return Err(err(
                top("concurrency"),
                format!("concurrency must be at most {MAX_CONCURRENCY}"),
            ));
        }
        if self.server_connections > MAX_SERVER_CONNECTIONS {
            return Err(err(
                top("server_connections"),
                format!("server_connections must be at most {MAX_SERVER_CONNECTIONS}"),
            ));
        }
        if let Some(alerts) = &self.alerts
            && !(1..=MAX_ALERT_AFTER).contains(&alerts.alert_after)
        {
            return Err(err(
                top("alerts").and_then(|l| find_key_line(text, l, "alert_after")),
                format!(
                    "alerts.alert_after must be between 1 and {MAX_ALERT_AFTER} (consecutive failing runs)"
                ),
            ));
        }
        if self.concurrency == 0 {
            return Err(err(
                top("concurrency"),
                "concurrency must be at least 1 (mailboxes checked at once)".into(),
            ));
        }
        if self.server_connections < 2 {
            return Err(err(
                top("server_connections"),
                "server_connections must be at least 2 (connections the probe may hold to one server address)"
                    .into(),
            ));
        }
        if self.mailboxes.is_empty() && !allow_empty {
            return Err(err(
                top("mailboxes"),
                "mailboxes is empty; list at least one mailbox to check".into(),
            ));
        }
        if let Some(otlp) = &self.otlp
            && let Some(p) = &otlp.protocol
            && p != "grpc"
            && p != "http/protobuf"
        {
            return Err(err(
                top("otlp").and_then(|l| find_key_line(text, l, "protocol")),
                format!("otlp.protocol `{p}` is not supported; use grpc or http/protobuf"),
            ));
        }
        let receivers = [
            (
                "otlp",
                "endpoint",
                self.otlp.as_ref().and_then(|o| o.endpoint.as_deref()),
            ),
            (
                "alerts",
                "alertmanager",
                self.alerts.as_ref().and_then(|a| a.alertmanager.as_deref()),
            ),
            (
                "alerts",
                "webhook",
                self.alerts.as_ref().and_then(|a| a.webhook.as_deref()),
            ),
        ];
        for (section, key, url) in receivers {
            if let Some(url) = url
                && let Err(why) = receiver_url(url)
            {
                return Err(err(
                    top(section).and_then(|l| find_key_line(text, l, key)),
                    format!(
                        "{section}.{key} {why} (e.g. https://host:port/...); the value is not shown, as it may hold a credential"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Builds the file's own profiles and makes them known by name. A mistake names the
    /// profile, the key or requirement ID, and its line.
    pub fn register_profiles(&self, text: &str, file: &str) -> Result<(), ConfigError> {
        let built = self
            .profiles
            .iter()
            .enumerate()
            .map(|(i, def)| {
                Profile::derive(def).map_err(|e| {
                    let message = e.to_string();
                    let word = message.split('`').nth(1).filter(|w| !w.is_empty());
                    // The profile's own name comes first in the message: look for the key or ID
                    // after it.
                    let word = message.split('`').nth(3).filter(|w| !w.is_empty()).or(word);
                    ConfigError {
                        file: file.to_string(),
                        line: lines::word_line_in_item(text, "profiles", i, word),
                        column: None,
                        message: format!("profiles[{i}]: {message}"),
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Profile::register(&built);
        Ok(())
    }

    /// Reads a file for `run`; see [`Config::parse_lenient`].
    pub fn load_lenient(path: &Path) -> Result<(Config, Vec<BrokenMailbox>), ConfigError> {
        let shown = path.display().to_string();
        let text = read_config(path)?;
        Config::parse_lenient(&text, &shown)
    }

    /// As [`Config::parse`], but a mailbox entry that is wrong on its own (an unknown or
    /// missing key, a bad port, an unknown profile, a duplicate name) is set aside as a
    /// [`BrokenMailbox`] with the error `validate` gives, and the rest is kept: one bad entry
    /// must not stop the checks of every other mailbox. Only a file that cannot be read as a
    /// whole (YAML syntax, an unknown or invalid top-level key) is an error.
    pub fn parse_lenient(
        text: &str,
        file: &str,
    ) -> Result<(Config, Vec<BrokenMailbox>), ConfigError> {
        use serde_norway::Value;
        let strict = match Config::parse(text, file) {
            Ok(c) => return Ok((c, Vec::new())),
            Err(e) => e,
        };
        let Ok(Value::Mapping(mut top)) = serde_norway::from_str::<Value>(text) else {
            return Err(strict);
        };
        let Some(Value::Sequence(entries)) = top.remove("mailboxes") else {
            return Err(strict);
        };
        top.insert("mailboxes".into(), Value::Sequence(Vec::new()));
        let Ok(mut config) = serde_norway::from_value::<Config>(Value::Mapping(top)) else {
            return Err(strict);
        };
        config.check_top(text, file, true)?;
        let mut names = HashSet::new();
        let starts = mailbox_lines(text);
        let mut broken = Vec::new();
        for (i, entry) in entries.into_iter().enumerate() {
            let field = |k: &str| {
                entry
                    .get(k)
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
            };
            let (name, profile) = (field("name"), field("profile"));
            let fresh = name.as_ref().is_some_and(|n| !names.contains(n));
            let start = starts.get(i).copied();
            let end = starts.get(i + 1).copied();
            let within = |e: &ConfigError| matches!((e.line, start), (Some(l), Some(s)) if l >= s && end.is_none_or(|n| l < n));
            let result = match serde_norway::from_value::<MailboxConfig>(entry) {
                // The strict parse stopped at this entry: its message has the exact place.
                Err(_) if within(&strict) => Err(strict.clone()),
                Err(e) => Err(ConfigError {
                    file: file.to_string(),
                    line: start,
                    column: None,
                    message: format!("mailboxes[{i}]: {e}"),
                }),
                Ok(m) => check_mailbox(i, start, &m, text, file, &mut names).map(|_| m),
            };
            match result {
                Ok(m) => config.mailboxes.push(m),
                Err(error) => {
                    // The label must not collide with a mailbox that is checked.
                    let label = match name {
                        Some(n) if fresh => {
                            names.insert(n.clone());
                            n
                        }
                        _ => format!("mailboxes[{i}]"),
                    };
                    broken.push(BrokenMailbox {
                        name: label,
                        profile,
                        error,
                    });
                }
            }
        }
        Ok((config, broken))
    }

    /// The targets to check, with their secrets loaded from `env` or files.
    pub fn targets(&self, file: &str, env: &dyn Environment) -> Result<Vec<Target>, ConfigError> {
        self.mailboxes
            .iter()
            .map(|m| {
                let mut t = self.target_without_secret(m, file)?;
                t.password = m
                    .password
                    .load(env)
                    .map_err(|e| mailbox_error(file, m, format!("password: {e}")))?;
                Ok(t)
            })
            .collect()
    }

    /// A mailbox's target with an empty password, for a caller that loads the secret itself
    /// (the daemon reads a missing secret again at every run, so that one created later, e.g.
    /// a Kubernetes Secret, is picked up without a restart).
    pub fn target_without_secret(
        &self,
        m: &MailboxConfig,
        file: &str,
    ) -> Result<Target, ConfigError> {
        let err = |message: String| mailbox_error(file, m, message);
        let mut profile = Profile::shared(&m.profile).map_err(|e| err(e.to_string()))?;
        let warn = m.cert_warn_days.or(self.cert_warn_days);
        let crit = m.cert_crit_days.or(self.cert_crit_days);
        if warn.is_some() || crit.is_some() {
            profile = std::sync::Arc::new(
                profile
                    .with_cert_days(warn, crit)
                    .map_err(|e| err(format!("cert_warn_days/cert_crit_days: {e}")))?,
            );
        }
        let mut imap = model::endpoint(
            Protocol::Imap,
            &m.imap,
            m.imap_security.and_then(SecurityMode::explicit),
        )
        .map_err(|e| err(format!("imap: {e}")))?;
        imap.connect_to = m.connect_to.clone();
        imap.source_address = m.source_address;
        let smtp = match &m.smtp {
            Some(s) => {
                let mut e = model::endpoint(
                    Protocol::Smtp,
                    s,
                    m.smtp_security.and_then(SecurityMode::explicit),
                )
                .map_err(|e| err(format!("smtp: {e}")))?;
                e.connect_to = m.connect_to.clone();
                e.source_address = m.source_address;
                Some(e)
            }
            None => None,
        };
        Ok(Target {
            mailbox: m.name.clone(),
            profile,
            imap,
            smtp,
            user: m.user.clone(),
            password: mailprobe_core::secret::Secret::new(""),
            ca_file: m.ca_file.clone(),
            allow_insecure_cert: m.allow_insecure_cert,
            timeout: m.timeout.unwrap_or(self.timeout),
            roundtrip: match m.roundtrip {
                true => Some(
                    Roundtrip::new(&m.user, m.roundtrip_to.as_deref(), m.roundtrip_warn)
                        .map_err(|e| err(format!("roundtrip: {e}")))?,
                ),
                false => None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const GOOD: &str = "\
interval: 5m
timeout: 30s
mailboxes:
  - name: sales
    imap: imap.example.com:993
    smtp: smtp.example.com:587
    smtp_security: starttls
    user: sales@example.com
    password: { env: SALES_PASSWORD }
    connect_to: 10.0.0.5
  - name: support
    imap: imap.example.com
    user: support@example.com
    password: { file: /run/secrets/support }
";

    #[test]
    fn good_config_parses_with_defaults() {
        let c = Config::parse(GOOD, "c.yaml").unwrap();
        assert_eq!(c.interval, Duration::from_secs(300));
        assert_eq!(c.concurrency, 32);
        assert_eq!(c.listen, "127.0.0.1:9925".parse().unwrap());
        assert_eq!(c.mailboxes[1].profile, "hubspot");
        let mut env = HashMap::new();
        env.insert("SALES_PASSWORD".to_string(), "pw".to_string());
        let e = Config {
            mailboxes: vec![c.mailboxes[0].clone()],
            ..c.clone()
        }
        .targets("c.yaml", &env)
        .unwrap();
        assert_eq!(e[0].imap.connect_to.as_deref(), Some("10.0.0.5"));
        assert_eq!(e[0].smtp.as_ref().unwrap().port, 587);
    }

    #[test]
    fn source_address_reaches_both_endpoints_and_must_be_local() {
        let text = GOOD.replace(
            "    connect_to: 10.0.0.5\n",
            "    connect_to: 10.0.0.5\n    source_address: 127.0.0.2\n",
        );
        let c = Config::parse(&text, "c.yaml").unwrap();
        let t = c.target_without_secret(&c.mailboxes[0], "c.yaml").unwrap();
        let ip: std::net::IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(t.imap.source_address, Some(ip));
        assert_eq!(t.smtp.as_ref().unwrap().source_address, Some(ip));

        let text = GOOD.replace(
            "    connect_to: 10.0.0.5\n",
            "    connect_to: 10.0.0.5\n    source_address: 192.0.2.1\n",
        );
        let e = Config::parse(&text, "c.yaml").unwrap_err();
        assert!(e.message.contains("not a local address"), "{e}");
        assert_eq!(e.line, Some(11), "{e}");
    }

    #[test]
    fn a_bare_number_is_seconds_as_on_the_command_line() {
        let text = GOOD.replace("timeout: 30s", "timeout: 45");
        assert_ne!(text, GOOD);
        let c = Config::parse(&text, "f.yaml").unwrap();
        assert_eq!(c.timeout, Duration::from_secs(45));
        let c = Config::parse(&GOOD.replace("timeout: 30s", "timeout: \"20\""), "f.yaml").unwrap();
        assert_eq!(c.timeout, Duration::from_secs(20));
        let c = Config::parse(&GOOD.replace("timeout: 30s", "timeout: 2.5"), "f.yaml").unwrap();
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert!(Config::parse(&GOOD.replace("timeout: 30s", "timeout: -3"), "f.yaml").is_err());
    }

    #[test]
    fn spec_sample_parses() {
        let sample = include_str!("../../deploy/examples/mailprobe.yaml");
        Config::parse(sample, "mailprobe.yaml").unwrap();
    }

    #[test]
    fn unknown_key_names_key_file_and_line() {
        let text = GOOD.replace("    connect_to: 10.0.0.5\n", "    conect_to: 10.0.0.5\n");
        let e = Config::parse(&text, "c.yaml").unwrap_err();
        assert_eq!(e.line, Some(10), "{e}");
        let s = e.to_string();
        assert!(s.starts_with("c.yaml:10:"), "{s}");
        assert!(s.contains("unknown field `conect_to`"), "{s}");
    }

    #[test]
    fn semantic_errors_name_the_field_and_line() {
        let text = GOOD.replace("imap.example.com:993", "imap.example.com:99999");
        let e = Config::parse(&text, "c.yaml").unwrap_err();
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.message.contains("out of range"), "{e}");

        let text = GOOD.replace(
            "  - name: support\n    imap: imap.example.com\n",
            "  - name: support\n    profile: nope\n    imap: imap.example.com\n",
        );
        let e = Config::parse(&text, "c.yaml").unwrap_err();
        assert_eq!(e.line, Some(12), "{e}");
        assert!(e.message.contains("unknown profile `nope`"), "{e}");
    }

    #[test]
    fn profiles_of_ones_own_extend_a_builtin_one_and_errors_name_their_line() {
        let text = "profiles:\n  - name: cfg-strict\n    extends: hubspot\n    client:\n      names:\n        common_name_fallback: false\nmailboxes:\n  - name: sales\n    profile: cfg-strict\n    imap: imap.example.com:993\n    user: u\n    password: { env: P }\n";
        let c = Config::parse(text, "c.yaml").unwrap();
        assert_eq!(c.mailboxes[0].profile, "cfg-strict");
        let p = Profile::shared("cfg-strict").unwrap();
        assert!(!p.client.names.common_name_fallback);

        let bad = text.replace("common_name_fallback: false", "common_name_fallbak: false");
        let e = Config::parse(&bad, "c.yaml").unwrap_err();
        assert_eq!(e.line, Some(6), "{e}");
        assert!(
            e.message.contains("unknown field `common_name_fallbak`"),
            "{e}"
        );

        let bad = text.replace(
            "    client:\n",
            "    requirements: [imap.reachable, imap.nope]\n    client:\n",
        );
        let e = Config::parse(&bad, "c.yaml").unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.message.contains("unknown requirement `imap.nope`"), "{e}");
    }

    #[test]
    fn missing_secret_says_what_to_set() {
        let c = Config::parse(GOOD, "c.yaml").unwrap();
        let e = c
            .targets("c.yaml", &HashMap::<String, String>::new())
            .unwrap_err();
        assert!(e.message.contains("SALES_PASSWORD is not set"), "{e}");
    }

    #[test]
    fn lenient_parse_sets_bad_entries_aside_with_the_validate_message() {
        // An unknown key in the second entry: validate's exact message, the first kept.
        let text = GOOD.replace(
            "    imap: imap.example.com\n",
            "    imap: imap.example.com\n    colour: blue\n",
        );
        let strict = Config::parse(&text, "c.yaml").unwrap_err();
        let (c, broken) = Config::parse_lenient(&text, "c.yaml").unwrap();
        assert_eq!(c.mailboxes.len(), 1);
        assert_eq!(c.mailboxes[0].name, "sales");
        assert_eq!(broken.len(), 1);
        assert_eq!(broken[0].name, "support");
        assert_eq!(broken[0].error, strict);
        assert!(
            broken[0]
                .error
                .to_string()
                .contains("unknown field `colour`")
        );

        // A semantic error (port), a duplicate name and a missing field, all at once.
        let text = format!(
            "{GOOD}  - name: sales\n    imap: x\n    user: u\n    password: {{ env: X }}\n  - name: nouser\n    imap: x:99999\n    password: {{ env: X }}\n  - name: badport\n    imap: x:99999\n    user: u\n    password: {{ env: X }}\n"
        );
        let (c, broken) = Config::parse_lenient(&text, "c.yaml").unwrap();
        assert_eq!(c.mailboxes.len(), 2);
        let names: Vec<&str> = broken.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["mailboxes[2]", "nouser", "badport"]);
        assert!(
            broken[0].error.message.contains("used twice"),
            "{:?}",
            broken[0]
        );
        assert!(
            broken[1].error.message.contains("missing field `user`"),
            "{:?}",
            broken[1]
        );
        assert!(
            broken[2].error.message.contains("out of range"),
            "{:?}",
            broken[2]
        );
        assert_eq!(broken[2].error.line, Some(23), "{}", broken[2].error);

        // Every entry broken: still no error, nothing to check.
        let text = GOOD.replace("    user: ", "    usr: ");
        let (c, broken) = Config::parse_lenient(&text, "c.yaml").unwrap();
        assert!(c.mailboxes.is_empty());
        assert_eq!(broken.len(), 2);
    }

    #[test]
    fn lenient_parse_still_refuses_a_file_it_cannot_read_as_a_whole() {
        for text in [
            format!("{GOOD}  - [unclosed\n"),
            format!("colour: blue\n{GOOD}"),
            GOOD.replace("interval: 5m", "interval: 0s"),
            "interval: 5m\n".to_string(),
        ] {
            let strict = Config::parse(&text, "c.yaml").unwrap_err();
            let lenient = Config::parse_lenient(&text, "c.yaml").unwrap_err();
            assert_eq!(strict, lenient, "{text}");
        }
    }

    #[test]
    fn plugins_section_takes_isolation_and_per_plugin_settings() {
        let text = format!(
            "plugins:\n  dir: /usr/lib/mailprobe/plugins\n  settings:\n    pop3:\n      isolation: process\n      config: {{ port: 995 }}\n{GOOD}"
        );
        let c = Config::parse(&text, "c.yaml").unwrap();
        let p = c.plugins.unwrap();
        assert_eq!(p.isolation, Isolation::InProcess);
        assert_eq!(p.settings["pop3"].isolation, Some(Isolation::Process));
        assert_eq!(p.settings["pop3"].config["port"], 995);

        let text = text.replace("isolation: process", "isolation: sandbox");
        let e = Config::parse(&text, "c.yaml").unwrap_err();
        assert!(e.to_string().contains("sandbox"), "{e}");
        let text = format!("plugins:\n  dri: /x\n{GOOD}");
        let e = Config::parse(&text, "c.yaml").unwrap_err();
        assert!(e.to_string().contains("unknown field `dri`"), "{e}");
    }

    #[test]
    fn bad_duration_is_explained() {
        let text = GOOD.replace("interval: 5m", "interval: five minutes");
        let e = Config::parse(&text, "c.yaml").unwrap_err();
        assert!(e.to_string().contains("not a duration"), "{e}");
        assert_eq!(e.line, Some(1));
    }
}
