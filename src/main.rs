//! `mailprobe`: checks that mailboxes' IMAP and SMTP servers meet a CRM's connection
//! requirements, once (`check`, Nagios-compatible) or on a schedule (`run`).
#![forbid(unsafe_code)]

mod builtins;
mod cli;
mod daemon;
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
            return ExitCode::from(code);
        }
    };
    init_logging(&cli.command);
    mailprobe_core::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
        Command::Check(args) => match cli::check_setup(&args) {
            Err(msg) => usage_error(&msg),
            Ok(setup) => {
                let outcome = cli::run_check(setup).await;
                let report = &outcome.report;
                let text = match args.format {
                    Format::Json => report.to_json() + "\n",
                    Format::Nagios => report.to_nagios() + "\n",
                    Format::Text => {
                        let colour = std::io::stdout().is_terminal()
                            && std::env::var_os("NO_COLOR").is_none();
                        report.to_text(colour)
                    }
                };
                out(&text);
                report.exit_code() as u8
            }
        },
        Command::Validate(args) => match daemon::load(&args.config, args.shard) {
            Ok(loaded) => {
                let shard = args
                    .shard
                    .map(|s| format!(" in shard {s}"))
                    .unwrap_or_default();
                println!(
                    "{}: OK, {} mailbox(es){shard}, checked every {}",
                    args.config.display(),
                    loaded.targets.len(),
                    humantime::format_duration(loaded.config.interval)
                );
                0
            }
            Err(msg) => usage_error(&msg),
        },
        Command::Run(args) => match daemon::load(&args.config, args.shard) {
            Ok(loaded) => {
                no_core_dumps();
                daemon::run(loaded).await
            }
            Err(msg) => usage_error(&msg),
        },
        Command::PluginHost(args) => mailprobe_plugin_host::serve_stdio(&args.library),
        Command::Plugins(cli::PluginsCommand::List(args)) => {
            let registry = match args
                .dynamic
                .options(args.plugin_dir.as_deref())
                .and_then(|o| builtins::registry_with_dynamic(args.plugin_dir.as_deref(), &o))
            {
                Ok(r) => r,
                Err(e) => return usage_error(&e),
            };
            let infos = registry.infos();
            match args.format {
                Format::Json => out(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(&infos).unwrap_or_else(|_| "[]".into())
                )),
                _ => {
                    for i in infos {
                        out(&format!(
                            "{:<14} {:<8} {:<8} {}{}\n",
                            i.name,
                            match i.kind {
                                mailprobe_core::plugin::PluginKind::Builtin => "builtin",
                                mailprobe_core::plugin::PluginKind::Dynamic => "dynamic",
                            },
                            i.version,
                            i.requirements.join(", "),
                            i.path.map(|p| format!("  ({p})")).unwrap_or_default()
                        ));
                    }
                }
            }
            0
        }
    }
}

/// Writes to stdout; a closed pipe (`mailprobe check | head`) is not an error worth a panic.
fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush());
}

fn usage_error(msg: &str) -> u8 {
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
        Command::Run(_) => "info",
        _ => "warn",
    };
    let filter =
        EnvFilter::try_from_env("MAILPROBE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
