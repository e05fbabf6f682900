//! `mailprobe`: checks that mailboxes' IMAP and SMTP servers meet a CRM's connection
//! requirements, once (`check`, Nagios-compatible) or on a schedule (`run`).
#![forbid(unsafe_code)]

mod builtins;
mod check_many;
mod cli;
mod daemon;
mod logformat;
mod profiles;
mod reference;
mod reload;
mod telemetry;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, Format};

/// Nagios' UNKNOWN: the check could not run (bad usage or configuration).
const EXIT_UNKNOWN: u8 = 3;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                _ => EXIT_UNKNOWN,
            };
            let _ = e.print();
            if code == EXIT_UNKNOWN && nagios_requested() {
                let first = e
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or("bad usage")
                    .trim_start_matches("error: ")
                    .to_string();
                nagios_unknown(&first);
            }
            return ExitCode::from(code);
        }
    };
    init_logging(&cli.command);
    mailprobe_core::install_crypto_provider();
    // One mailbox checked once waits on the network almost all the time: a single thread
    // serves it without starting (and waking) a pool of workers. Many mailboxes, or the
    // daemon, keep one worker per core.
    let one_shot = matches!(&cli.command, Command::Check(args) if args.config.is_none());
    let mut builder = if one_shot {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mailprobe: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_UNKNOWN);
        }
    };
    let code = runtime.block_on(dispatch(cli));
    // Do not wait for lingering blocking tasks (a plugin stuck past its deadline).
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    ExitCode::from(code)
}

async fn dispatch(cli: Cli) -> u8 {
    match cli.command {
        Command::Check(args) if args.config.is_some() => check_many::run(&args).await,
        Command::Check(args) => check_one(&args).await,
        Command::Validate(args) => validate(&args),
        Command::Run(args) => run_daemon(&args).await,
        Command::Requirements(args) => match registry(args.plugin_dir.as_deref(), &args.dynamic) {
            Ok(r) => {
                out(&reference::requirements(&r, args.format));
                0
            }
            Err(e) => usage_error(&e),
        },
        Command::ConfigReference => {
            out(&mailprobe_runtime::reference::markdown());
            0
        }
        Command::Completions(args) => {
            out_bytes(&cli::completions(args.shell));
            0
        }
        Command::Man(args) => match cli::man(args.out_dir.as_deref()) {
            Ok(page) => {
                out_bytes(&page);
                0
            }
            Err(e) => usage_error(&e),
        },
        Command::PluginHost(args) => mailprobe_plugin_host::serve_stdio(&args.library),
        Command::Plugins(cli::PluginsCommand::List(args)) => plugins_list(&args),
        Command::Profiles(args) => profiles::list(&args),
    }
}

/// `mailprobe check` of one mailbox given on the command line.
async fn check_one(args: &cli::CheckArgs) -> u8 {
    let setup = match cli::check_setup(args) {
        Ok(mut s) => {
            if args.verbose {
                s.options.transcript = Some(transcript_on_stderr(None));
            }
            s
        }
        Err(msg) => {
            if args.format == Format::Nagios {
                nagios_unknown(&msg);
            }
            return usage_error(&msg);
        }
    };
    let outcome = cli::run_check(setup).await;
    let report = &outcome.report;
    let text = match args.format {
        Format::Json => report.to_json() + "\n",
        Format::Nagios => report.to_nagios() + "\n",
        Format::Text => {
            let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            report.to_text(colour)
        }
    };
    out(&text);
    // The text and Nagios formats say it themselves; JSON stays pure on stdout.
    if args.format == Format::Json
        && let Some(line) = report.incomplete_line()
    {
        eprintln!("mailprobe: {} is incomplete: {line}", report.mailbox);
    }
    report.exit_code() as u8
}

/// `-v`: each transcript line on stderr as it is recorded (prefixed with the mailbox's name
/// when several run at once).
pub(crate) fn transcript_on_stderr(
    mailbox: Option<&str>,
) -> mailprobe_runtime::runner::TranscriptOptions {
    let prefix = mailbox.map(|m| format!("{m}: ")).unwrap_or_default();
    let live: mailprobe_core::transcript::LiveSink = std::sync::Arc::new(move |line: &str| {
        use std::io::Write;
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{prefix}{line}");
    });
    mailprobe_runtime::runner::TranscriptOptions {
        live: Some(live),
        store: None,
    }
}

/// `mailprobe validate`: everything but the secrets, which are only warned about.
fn validate(args: &cli::ConfigArgs) -> u8 {
    match daemon::load(&args.config, args.shard, daemon::Mode::Validate) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("mailprobe: warning: {w}");
            }
            let shard = args
                .shard
                .map(|s| format!(" in shard {s}"))
                .unwrap_or_default();
            println!(
                "{}: OK, {} mailbox(es){shard}, checked every {}",
                args.config.display(),
                loaded.mailboxes.len(),
                humantime::format_duration(loaded.config.interval)
            );
            0
        }
        Err(msg) => usage_error(&msg),
    }
}

/// `mailprobe run`: the daemon, until SIGTERM.
/// It never exits on a configuration problem: a file that cannot be loaded is reported, and
/// loaded once it is fixed (a sidecar that exits holds its pod back).
async fn run_daemon(args: &cli::RunArgs) -> u8 {
    // Before anything listens: a web config that cannot be applied is never served without the
    // TLS or the authentication it asks for. The probe keeps running (a sidecar must never hold
    // its pod back), every request to the endpoint is answered 503 with the reason, and the log
    // says what to fix.
    let web = match args.web_config_file.as_deref() {
        Some(path) => match mailprobe_exporter_prometheus::web::WebConfig::load(path) {
            Ok(c) => Ok(c),
            Err(e) => {
                tracing::error!(error = %e, "the web config cannot be applied: the admin endpoint answers 503 until it is fixed and mailprobe restarted");
                Err(e)
            }
        },
        None => Ok(Default::default()),
    };
    let (config, refused) = match web {
        Ok(c) => (c, None),
        Err(e) => (Default::default(), Some(e)),
    };
    mailprobe_exporter_prometheus::web::configure(mailprobe_exporter_prometheus::web::WebOptions {
        config,
        lifecycle: args.web_enable_lifecycle,
        refused,
    });
    let loaded = daemon::load(&args.config.config, args.config.shard, daemon::Mode::Run).map(
        |mut loaded| {
            if let Some(listen) = args.listen_address {
                loaded.config.listen = listen;
            }
            loaded
        },
    );
    no_core_dumps();
    let source = reload::Source {
        path: args.config.config.clone(),
        shard: args.config.shard,
        every: args.reload_interval,
        listen: args.listen_address,
    };
    daemon::run(loaded, source).await
}

/// The built-ins and the dynamic plugins of `dir`.
fn registry(
    dir: Option<&std::path::Path>,
    dynamic: &cli::DynamicPluginArgs,
) -> Result<mailprobe_core::Registry, String> {
    dynamic
        .options(dir)
        .and_then(|o| builtins::registry_with_dynamic(dir, &o))
}

/// `mailprobe plugins list`.
fn plugins_list(args: &cli::PluginsListArgs) -> u8 {
    let registry = match registry(args.plugin_dir.as_deref(), &args.dynamic) {
        Ok(r) => r,
        Err(e) => return usage_error(&e),
    };
    let infos = registry.infos();
    if args.format == cli::ListFormat::Json {
        out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&infos).unwrap_or_else(|_| "[]".into())
        ));
        return 0;
    }
    for i in infos {
        let kind = match i.kind {
            mailprobe_core::plugin::PluginKind::Builtin => "builtin",
            mailprobe_core::plugin::PluginKind::Dynamic => "dynamic",
        };
        out(&format!(
            "{:<14} {kind:<8} {:<8} {}{}\n",
            i.name,
            i.version,
            i.requirements.join(", "),
            i.path
                .as_ref()
                .map(|p| format!("  ({p})"))
                .unwrap_or_default()
        ));
    }
    0
}

/// Writes to stdout; a closed pipe (`mailprobe check | head`) is not an error worth a panic.
pub(crate) fn out(text: &str) {
    out_bytes(text.as_bytes());
}

fn out_bytes(bytes: &[u8]) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(bytes).and_then(|_| stdout.flush());
}

/// Whether the raw command line asks for `--format nagios` (read before clap could parse it,
/// so that even a usage error gives Nagios its one status line).
fn nagios_requested() -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    args.iter().enumerate().any(|(i, a)| {
        a == "--format=nagios"
            || (a == "--format" && args.get(i + 1).is_some_and(|v| v == "nagios"))
    })
}

/// Nagios' UNKNOWN status line on stdout, where a Nagios-compatible scheduler reads it.
fn nagios_unknown(msg: &str) {
    let msg: String = msg
        .chars()
        .map(|c| if c.is_control() || c == '|' { ' ' } else { c })
        .collect();
    out(&format!("MAILPROBE UNKNOWN - {}\n", msg.trim()));
}

pub(crate) fn usage_error(msg: &str) -> u8 {
    eprintln!("mailprobe: {msg}");
    EXIT_UNKNOWN
}

// `log` is compiled out (see Cargo.toml); this fails the build if a dependency change ever
// turns it back on, since async-imap's trace of LOGIN carries the password.
const _: () = assert!(matches!(log::STATIC_MAX_LEVEL, log::LevelFilter::Off));

/// The daemon holds every mailbox's password for its whole life: a core dump (or a debugger
/// attaching as the same user) would write them all out. Failure is only a warning: the probe
/// still works, and a container may forbid these calls.
fn no_core_dumps() {
    use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};
    let none = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    if let Err(e) = setrlimit(Resource::Core, none) {
        tracing::warn!(error = %e, "cannot turn core dumps off (RLIMIT_CORE)");
    }
    if let Err(e) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        tracing::warn!(error = %e, "cannot mark the process not dumpable (PR_SET_DUMPABLE)");
    }
}

fn init_logging(command: &Command) {
    // No logger is ever installed for `log`; pin its runtime level too, for good measure.
    log::set_max_level(log::LevelFilter::Off);
    use tracing_subscriber::EnvFilter;
    let default = match command {
        Command::Run(args) => args.log_level.as_str(),
        _ => "warn",
    };
    // MAILPROBE_LOG, when set, is the whole filter (it can name modules); else the level. Either
    // way only mailprobe's own events pass (see telemetry::own_targets): a dependency's trace
    // could carry a receiver's user info, path or headers.
    let spec = std::env::var("MAILPROBE_LOG").unwrap_or_else(|_| default.to_string());
    let filter = EnvFilter::try_new(telemetry::own_targets(&spec))
        .unwrap_or_else(|_| EnvFilter::new(telemetry::own_targets(default)));
    if let Command::Run(args) = command {
        // The daemon's lines for log collectors, as Prometheus exporters write them.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .event_format(logformat::Lines(args.log_format))
            .try_init();
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
