//! `mailprobe check --config FILE`: every mailbox of a configuration file (or the ones named
//! with `--mailbox`) checked once, as a batch job — a CI pipeline, a cron job, a first look at a
//! new file — instead of the daemon. Mailboxes run concurrently within the file's `concurrency`
//! and its per-server connection budget, as they would under `run`, so a batch never hits a
//! server harder than the daemon does. A person watching a terminal sees a progress bar; a pipe
//! or a log file gets only the result.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailprobe_core::Status;
use mailprobe_core::model::Target;
use mailprobe_core::net::Budgets;
use mailprobe_core::report::Report;
use mailprobe_core::secret::ProcessEnv;
use mailprobe_core::tls::Trust;
use mailprobe_runtime::config::Config;
use mailprobe_runtime::runner::{self, RunOptions};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::cli::{CheckArgs, Format};

/// Nagios' UNKNOWN.
const EXIT_UNKNOWN: u8 = 3;
/// How long a check may take past its deadline to close its connections.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// How many names an unknown `--mailbox` message lists before it says "and N more".
const NAMES_SHOWN: usize = 20;

/// What became of one mailbox.
#[derive(Debug)]
enum Outcome {
    Ran(Box<Report>),
    /// The check itself could not finish (it overran its deadline by far, or it panicked).
    NotRun(String),
}

#[derive(Debug)]
struct Row {
    mailbox: String,
    outcome: Outcome,
}

impl Row {
    fn exit_code(&self) -> u8 {
        match &self.outcome {
            Outcome::Ran(r) => u8::try_from(r.exit_code()).unwrap_or(EXIT_UNKNOWN),
            Outcome::NotRun(_) => EXIT_UNKNOWN,
        }
    }
}

/// A mailbox of the file that cannot be checked.
enum Unusable {
    /// Its entry cannot be used (its name, and why).
    Entry(String, String),
    /// Its secret or trust anchors cannot be read: reported `incomplete`, as `run` does.
    Report(Box<Report>),
}

/// A configuration file loaded for one batch.
struct Batch {
    concurrency: usize,
    budgets: Arc<Budgets>,
    /// Each mailbox in the file's order: ready to check, or why it cannot be (its own
    /// UNKNOWN row, as `run` reports it incomplete, while the others are checked).
    targets: Vec<Result<(Arc<Target>, Trust), Unusable>>,
    plugins: Arc<mailprobe_core::Selection>,
    options: RunOptions,
}

pub async fn run(args: &CheckArgs) -> u8 {
    let Some(path) = args.config.as_deref() else {
        return fail(args.format, "--config FILE is missing");
    };
    let mut batch = match prepare(path, &args.mailbox, &args.only) {
        Ok(b) => b,
        Err(msg) => return fail(args.format, &msg),
    };
    let verbose = args.verbose;
    if verbose {
        batch.options.transcript = Some(crate::transcript_on_stderr(None));
    }
    let progress = Progress::new(batch.targets.len(), std::io::stderr().is_terminal());
    let rows = check_all(batch, progress).await;
    let text = match args.format {
        Format::Json => json_lines(&rows),
        Format::Nagios => nagios_line(&rows) + "\n",
        Format::Text => table(&rows),
    };
    crate::out(&text);
    if args.format == Format::Json {
        for row in &rows {
            if let Outcome::NotRun(why) = &row.outcome {
                eprintln!("mailprobe: mailbox `{}`: {why}", row.mailbox);
            }
        }
    }
    worst(rows.iter().map(Row::exit_code))
}

/// A usage or configuration error: the message on stderr, and with `--format nagios` also the
/// one status line a monitoring system reads.
fn fail(format: Format, msg: &str) -> u8 {
    if format == Format::Nagios {
        crate::out(&format!("MAILPROBE UNKNOWN - {msg}\n"));
    }
    crate::usage_error(msg)
}

fn prepare(path: &Path, names: &[String], only: &[String]) -> Result<Batch, String> {
    let shown = path.display().to_string();
    let mut config = Config::load(path).map_err(|e| e.to_string())?;
    if !names.is_empty() {
        let known: Vec<&str> = config.mailboxes.iter().map(|m| m.name.as_str()).collect();
        if let Some(unknown) = names.iter().find(|n| !known.contains(&n.as_str())) {
            let mut list = known
                .iter()
                .take(NAMES_SHOWN)
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            if known.len() > NAMES_SHOWN {
                list.push_str(&format!(" and {} more", known.len() - NAMES_SHOWN));
            }
            return Err(format!(
                "--mailbox `{unknown}`: {shown} has no mailbox of that name; its mailboxes are: {list}"
            ));
        }
        // Before the secrets are read: the mailboxes left out need none.
        config.mailboxes.retain(|m| names.contains(&m.name));
    }
    // A mailbox whose secret or trust anchors cannot be read is its own row; the batch goes on.
    let targets: Vec<Result<(Arc<Target>, Trust), Unusable>> = config
        .mailboxes
        .iter()
        .map(|m| {
            let mut t = config
                .target_without_secret(m, &shown)
                .map_err(|e| Unusable::Entry(m.name.clone(), e.message.clone()))?;
            let unusable = |t: &Target, why: String| {
                let why = format!("cannot be checked: {why}");
                Unusable::Report(Box::new(runner::unverified_outcome(t, &why).report))
            };
            t.password = match m.password.load(&ProcessEnv) {
                Ok(p) => p,
                Err(e) => return Err(unusable(&t, format!("password: {e}"))),
            };
            let trust = match Trust::load(t.ca_file.as_deref()) {
                Ok(trust) => trust,
                Err(e) => return Err(unusable(&t, format!("ca_file: {e}"))),
            };
            Ok((Arc::new(t), trust))
        })
        .collect();
    let registry =
        crate::builtins::registry_for_config(&config).map_err(|e| format!("{shown}: {e}"))?;
    let plugins = registry.select(only).map_err(|e| format!("--only: {e}"))?;
    // A batch's mailboxes of one server take turns: the last in line may wait for every other
    // one's whole check, so none is reported for the queue (`not_verified`) while others run.
    let budgets = Arc::new(Budgets::new(config.server_connections));
    let longest = targets
        .iter()
        .flatten()
        .map(|(t, _)| t.timeout)
        .max()
        .unwrap_or_default();
    budgets.set_queue_limit(Some(
        (longest + CLOSE_GRACE).saturating_mul(u32::try_from(targets.len()).unwrap_or(u32::MAX)),
    ));
    Ok(Batch {
        concurrency: config.concurrency.max(1),
        budgets,
        targets,
        plugins: Arc::new(plugins),
        options: RunOptions {
            ip_version: config.ip_version,
            ..Default::default()
        },
    })
}

/// Runs every target, at most `concurrency` at once; the rows come back in the file's order.
async fn check_all(batch: Batch, mut progress: Progress) -> Vec<Row> {
    let slots = Arc::new(Semaphore::new(batch.concurrency));
    let mut rows: Vec<Option<Row>> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut index_of = HashMap::new();
    let mut set = JoinSet::new();
    for (i, entry) in batch.targets.into_iter().enumerate() {
        let (target, trust) = match entry {
            Ok(ready) => ready,
            Err(unusable) => {
                let row = match unusable {
                    Unusable::Entry(mailbox, why) => Row {
                        mailbox,
                        outcome: Outcome::NotRun(why),
                    },
                    Unusable::Report(report) => Row {
                        mailbox: report.mailbox.clone(),
                        outcome: Outcome::Ran(report),
                    },
                };
                names.push(row.mailbox.clone());
                progress.done += 1;
                rows.push(Some(row));
                continue;
            }
        };
        rows.push(None);
        names.push(target.mailbox.clone());
        let slots = slots.clone();
        let budgets = batch.budgets.clone();
        let plugins = batch.plugins.clone();
        let mut options = batch.options.clone();
        if options.transcript.is_some() {
            options.transcript = Some(crate::transcript_on_stderr(Some(&target.mailbox)));
        }
        let handle = set.spawn(async move {
            let _slot = slots.acquire_owned().await;
            // The runner keeps the mailbox's deadline after its queue for the servers'
            // connections; this only catches a run that ignores them.
            let queue = budgets.queue_limit().unwrap_or(target.timeout);
            let limit = queue.saturating_add(target.timeout + CLOSE_GRACE);
            match tokio::time::timeout(
                limit,
                runner::run_target_with(target.clone(), trust, budgets, &plugins, &options),
            )
            .await
            {
                Ok(outcome) => Outcome::Ran(Box::new(outcome.report)),
                Err(_) => Outcome::NotRun(format!(
                    "the check did not end within {} of its {} deadline",
                    humantime::format_duration(CLOSE_GRACE),
                    humantime::format_duration(target.timeout)
                )),
            }
        });
        index_of.insert(handle.id(), i);
    }
    progress.draw(None);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            joined = set.join_next_with_id() => {
                let (id, outcome) = match joined {
                    None => break,
                    Some(Ok((id, outcome))) => (id, outcome),
                    Some(Err(e)) => (e.id(), Outcome::NotRun(format!("the check failed: {e}"))),
                };
                let Some(&i) = index_of.get(&id) else { continue };
                progress.done += 1;
                progress.draw(Some(&names[i]));
                rows[i] = Some(Row { mailbox: names[i].clone(), outcome });
            }
            _ = tick.tick(), if progress.on => progress.draw(None),
        }
    }
    progress.finish();
    rows.into_iter()
        .zip(names)
        .map(|(row, mailbox)| {
            row.unwrap_or(Row {
                mailbox,
                outcome: Outcome::NotRun("the check never reported back".into()),
            })
        })
        .collect()
}

/// Nagios' exit codes ranked as Icinga ranks states: OK < WARNING < UNKNOWN < CRITICAL. A
/// mailbox known to be non-compliant outweighs one that could not be checked.
fn worst(codes: impl Iterator<Item = u8>) -> u8 {
    let rank = |c: u8| match c {
        0 => 0,
        1 => 1,
        2 => 3,
        _ => 2,
    };
    codes.max_by_key(|c| rank(*c)).unwrap_or(0)
}

fn verdict_label(row: &Row) -> String {
    match &row.outcome {
        Outcome::Ran(r) if r.exit_code() == 1 => format!("{} (warnings)", r.verdict.as_str()),
        Outcome::Ran(r) => r.verdict.as_str().to_string(),
        Outcome::NotRun(_) => "not_run".to_string(),
    }
}

fn ids(report: &Report, status: Status) -> Vec<&str> {
    report
        .requirements
        .iter()
        .filter(|r| r.status == status)
        .map(|r| r.id.as_str())
        .collect()
}

/// What the third column says: the failing requirements, else the warning ones.
fn detail(row: &Row) -> String {
    match &row.outcome {
        Outcome::NotRun(why) => why.clone(),
        Outcome::Ran(r) => {
            let failing = ids(r, Status::Fail);
            let warning = ids(r, Status::Warn);
            if !failing.is_empty() {
                failing.join(", ")
            } else if let Some(line) = r.incomplete_line() {
                line
            } else if !warning.is_empty() {
                format!("warnings: {}", warning.join(", "))
            } else {
                "-".to_string()
            }
        }
    }
}

/// Counts by verdict label, in a fixed order, for the closing line and the Nagios perfdata.
fn counts(rows: &[Row]) -> [(&'static str, usize); 4] {
    let mut c = [("ok", 0), ("warning", 0), ("critical", 0), ("unknown", 0)];
    for row in rows {
        let slot = match row.exit_code() {
            0 => 0,
            1 => 1,
            2 => 2,
            _ => 3,
        };
        c[slot].1 += 1;
    }
    c
}

fn table(rows: &[Row]) -> String {
    let header = ("MAILBOX", "VERDICT", "FAILING REQUIREMENTS");
    let cells: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r.mailbox.clone(), verdict_label(r), detail(r)))
        .collect();
    let w0 = cells
        .iter()
        .map(|c| c.0.chars().count())
        .chain([header.0.len()])
        .max()
        .unwrap_or(0);
    let w1 = cells
        .iter()
        .map(|c| c.1.chars().count())
        .chain([header.1.len()])
        .max()
        .unwrap_or(0);
    let mut out = format!("{:<w0$}  {:<w1$}  {}\n", header.0, header.1, header.2);
    for (a, b, c) in &cells {
        out.push_str(&format!("{a:<w0$}  {b:<w1$}  {c}\n"));
    }
    let [ok, warn, crit, unknown] = counts(rows);
    out.push_str(&format!(
        "{} mailbox(es): {} compliant, {} compliant with warnings, {} non-compliant, {} not verified\n",
        rows.len(),
        ok.1,
        warn.1,
        crit.1,
        unknown.1
    ));
    out
}

fn json_lines(rows: &[Row]) -> String {
    let mut out = String::new();
    for row in rows {
        if let Outcome::Ran(report) = &row.outcome {
            match serde_json::to_string(report) {
                Ok(line) => {
                    out.push_str(&line);
                    out.push('\n');
                }
                Err(e) => eprintln!("mailprobe: mailbox `{}`: {e}", row.mailbox),
            }
        }
    }
    out
}

/// One status line for all the mailboxes, with perfdata counting each state.
fn nagios_line(rows: &[Row]) -> String {
    let state = match worst(rows.iter().map(Row::exit_code)) {
        0 => "OK",
        1 => "WARNING",
        2 => "CRITICAL",
        _ => "UNKNOWN",
    };
    let [ok, warn, crit, unknown] = counts(rows);
    let mut problems: Vec<String> = rows
        .iter()
        .filter(|r| r.exit_code() != 0)
        .map(|r| format!("{} {} ({})", r.mailbox, verdict_label(r), detail(r)))
        .collect();
    if problems.len() > NAMES_SHOWN {
        let more = problems.len() - NAMES_SHOWN;
        problems.truncate(NAMES_SHOWN);
        problems.push(format!("and {more} more"));
    }
    let detail = if problems.is_empty() {
        String::new()
    } else {
        format!("; {}", problems.join("; "))
    };
    // A `|` would start the perfdata early.
    let detail = detail.replace('|', "/");
    // Long output: each mailbox with a problem, and its failing or warning requirements with
    // their remedies.
    let mut long = String::new();
    for row in rows.iter().filter(|r| r.exit_code() != 0) {
        let text = match &row.outcome {
            Outcome::NotRun(why) => format!("\nUNKNOWN {}: {why}", row.mailbox),
            Outcome::Ran(r) => {
                let state = match r.exit_code() {
                    1 => "WARNING",
                    2 => "CRITICAL",
                    _ => "UNKNOWN",
                };
                let mut t = format!("\n{state} {}: {}", row.mailbox, verdict_label(row));
                if let Some(line) = r.incomplete_line() {
                    t.push_str(&format!("; {line}"));
                }
                for l in r.nagios_long_output().lines().filter(|l| !l.is_empty()) {
                    t.push_str(&format!("\n  {}", l));
                }
                t
            }
        };
        long.push_str(&text.replace('|', "/"));
    }
    format!(
        "MAILPROBE {state} - {} mailboxes: {} compliant, {} with warnings, {} non-compliant, {} not verified{detail} | mailboxes={} compliant={} warning={} non_compliant={} unknown={}",
        rows.len(),
        ok.1,
        warn.1,
        crit.1,
        unknown.1,
        rows.len(),
        ok.1,
        warn.1,
        crit.1,
        unknown.1
    ) + &long
}

/// A one-line progress bar on stderr, redrawn in place; off when stderr is not a terminal, so
/// logs and pipes never get carriage returns.
struct Progress {
    total: usize,
    done: usize,
    on: bool,
    started: Instant,
}

impl Progress {
    const WIDTH: usize = 24;

    fn new(total: usize, on: bool) -> Progress {
        Progress {
            total,
            done: 0,
            on,
            started: Instant::now(),
        }
    }

    fn draw(&self, last: Option<&str>) {
        if !self.on {
            return;
        }
        let filled = (self.done * Self::WIDTH)
            .checked_div(self.total)
            .unwrap_or(Self::WIDTH);
        let bar = format!("{}{}", "#".repeat(filled), "-".repeat(Self::WIDTH - filled));
        // Kept short: a line longer than the terminal wraps, and `\r` then redraws only its
        // last part.
        let last = last
            .map(|m| {
                let name: String = m.chars().take(24).collect();
                format!(", last: {name}")
            })
            .unwrap_or_default();
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K[{bar}] {}/{} mailboxes checked, {}s{last}",
            self.done,
            self.total,
            self.started.elapsed().as_secs()
        );
        let _ = err.flush();
    }

    /// Clears the bar, so the summary starts on a clean line.
    fn finish(&self) {
        if self.on {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn critical_outweighs_unknown_and_unknown_outweighs_warning() {
        assert_eq!(worst([0, 1, 3, 2].into_iter()), 2);
        assert_eq!(worst([0, 3, 1].into_iter()), 3);
        assert_eq!(worst([1, 0].into_iter()), 1);
        assert_eq!(worst(std::iter::empty()), 0);
    }
}
