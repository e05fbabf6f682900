//! Process isolation: mailprobe re-executes itself as `mailprobe plugin-host --library PATH`
//! and speaks JSON lines with that child over its stdin and stdout.
//!
//! ```text
//! child → host   {"type":"hello","abi_version":2,"name":"pop3","version":"0.1.0","requirements":[...]}
//! host  → child  {"type":"request","config":{...},"context":{...}}
//! child → host   {"type":"result","result":{"results":[...],"steps":[...],"facts":{...}}}
//! ```
//! or `{"type":"error","message":"..."}` in place of a hello or a result. The host then closes
//! the child's stdin and the child exits. Lines that are not such messages (a plugin printing to
//! stdout) are skipped. One child serves one call, so a plugin cannot carry state, or damage,
//! from one mailbox's run to the next.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};

use mailprobe_plugin_sdk::abi::ABI_VERSION;
use mailprobe_plugin_sdk::wire::Requirement;

use crate::{LoadError, Manifest, library};

/// The hidden subcommand of the mailprobe binary that serves a plugin.
pub const SUBCOMMAND: &str = "plugin-host";

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Message {
    Hello {
        abi_version: u32,
        name: String,
        version: String,
        requirements: Vec<Requirement>,
    },
    Request {
        config: Value,
        context: Value,
    },
    Result {
        result: Value,
    },
    Error {
        message: String,
    },
}

fn send(out: &mut impl Write, m: &Message) -> std::io::Result<()> {
    let line = serde_json::to_string(m).map_err(std::io::Error::other)?;
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// The child side: loads `library`, says hello, answers requests until stdin closes. Returns
/// the process exit code.
pub fn serve_stdio(library: &Path) -> u8 {
    let stdout = std::io::stdout();
    let (manifest, functions) = match library::open(library) {
        Ok(x) => x,
        Err(e) => {
            let _ = send(
                &mut stdout.lock(),
                &Message::Error {
                    message: e.to_string(),
                },
            );
            return 3;
        }
    };
    let hello = Message::Hello {
        abi_version: ABI_VERSION,
        name: manifest.name,
        version: manifest.version,
        requirements: manifest.requirements,
    };
    if send(&mut stdout.lock(), &hello).is_err() {
        return 3;
    }
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let answer = match serde_json::from_str::<Message>(&line) {
            Ok(Message::Request { config, context }) => {
                match functions.call(&config.to_string(), &context.to_string()) {
                    Ok(text) => match serde_json::from_str::<Value>(&text) {
                        Ok(result) => Message::Result { result },
                        Err(e) => Message::Error {
                            message: format!("the plugin returned unreadable JSON: {e}"),
                        },
                    },
                    Err(message) => Message::Error { message },
                }
            }
            _ => Message::Error {
                message: "mailprobe plugin-host expects a request line".into(),
            },
        };
        if send(&mut stdout.lock(), &answer).is_err() {
            return 3;
        }
    }
    0
}

/// How a child ended, in words: "killed by signal 11 (SIGSEGV)", "exited with status 3".
fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = status.signal() {
        let name = match sig {
            4 => " (SIGILL)",
            6 => " (SIGABRT)",
            7 => " (SIGBUS)",
            8 => " (SIGFPE)",
            9 => " (SIGKILL)",
            11 => " (SIGSEGV)",
            15 => " (SIGTERM)",
            _ => "",
        };
        let core = if status.core_dumped() {
            ", core dumped"
        } else {
            ""
        };
        format!("killed by signal {sig}{name}{core}")
    } else {
        match status.code() {
            Some(c) => format!("exited with status {c}"),
            None => "ended".into(),
        }
    }
}

/// The last few lines the child wrote to stderr, for the error message.
fn stderr_tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
    if tail.is_empty() {
        String::new()
    } else {
        let mut t: String = tail
            .chars()
            .rev()
            .take(400)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if t.len() < tail.len() {
            t.insert_str(0, "...");
        }
        format!("; its last words on stderr: {t}")
    }
}

fn command(exe: &Path, library: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg(SUBCOMMAND)
        .arg("--library")
        .arg(library)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so the deadline kills whatever it forked too.
        .process_group(0)
        .kill_on_drop(true);
    // The parent's environment may hold other mailboxes' passwords; the call's own context
    // already travels on stdin, so the child gets only what a process needs to run.
    cmd.env_clear();
    for key in ["PATH", "LANG", "LC_ALL", "TZ"] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    cmd
}

/// The longest line a child may write on stdout: a manifest or a result fits well within it.
const MAX_LINE: usize = 4 * 1024 * 1024;
/// All a child may write on stdout in one exchange, so noise between messages is bounded too.
const MAX_OUTPUT: usize = 16 * 1024 * 1024;

/// Kills the child and everything in its process group: a grandchild holding a socket must
/// not outlive the call.
fn kill_group(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        kill_pgid(pid);
    }
    let _ = child.start_kill();
}

/// Kills the child's process group when dropped.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            kill_pgid(pgid);
        }
    }
}

/// Kills the process group `pgid` (the child's pid, as it leads its own group). Also used
/// after the child was reaped: the group lives on while a grandchild does, and its id cannot
/// be handed to a new process meanwhile.
#[allow(unsafe_code)]
fn kill_pgid(pgid: u32) {
    if let Ok(pgid) = libc::pid_t::try_from(pgid)
        && pgid > 0
    {
        // SAFETY: kill(2) with a negative pid signals a process group; it touches no memory.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// Reads a child's stdout line by line with a bound per line and in total, so a child printing
/// endlessly without a newline cannot grow this process's memory.
struct BoundedLines<R> {
    reader: R,
    total: usize,
}

impl<R: tokio::io::AsyncBufRead + Unpin> BoundedLines<R> {
    fn new(reader: R) -> Self {
        Self { reader, total: 0 }
    }

    /// The next line, `Ok(None)` at end of file, an error when a bound is crossed.
    async fn next_line(&mut self) -> std::io::Result<Option<String>> {
        let mut line = Vec::new();
        loop {
            let buf = self.reader.fill_buf().await?;
            if buf.is_empty() {
                if line.is_empty() {
                    return Ok(None);
                }
                break;
            }
            let (take, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            self.total += take;
            if line.len() + take > MAX_LINE || self.total > MAX_OUTPUT {
                return Err(std::io::Error::other(format!(
                    "the plugin process wrote more than {} KiB on a line or {} MiB in all",
                    MAX_LINE / 1024,
                    MAX_OUTPUT / (1024 * 1024)
                )));
            }
            line.extend_from_slice(&buf[..take]);
            self.reader.consume(take);
            if done {
                break;
            }
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        Ok(Some(String::from_utf8_lossy(&line).into_owned()))
    }
}

/// Reads lines until one is a protocol message; `None` at end of file.
async fn next_message<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut BoundedLines<R>,
) -> Option<Message> {
    while let Ok(Some(line)) = lines.next_line().await {
        match serde_json::from_str::<Message>(&line) {
            Ok(m) => return Some(m),
            Err(_) => {
                tracing::debug!(line = %line, "plugin host: skipped a line that is not a message")
            }
        }
    }
    None
}

/// What one exchange with a child produced.
enum Exchange {
    Hello(Manifest),
    Result(String),
    Failed(String),
    Ended,
}

/// Starts a child for `library` and, with `request`, makes one call; without, only reads the
/// hello. Bounded by `wait`: the child is killed when it runs out.
async fn exchange(
    exe: &Path,
    library: &Path,
    request: Option<(Value, Value)>,
    expect_name: Option<&str>,
    wait: Duration,
) -> Result<Exchange, String> {
    let mut child = command(exe, library)
        .spawn()
        .map_err(|e| format!("cannot start `{} {SUBCOMMAND}`: {e}", exe.display()))?;
    // Kills the whole group however this call ends, including when the caller drops it at
    // the run's deadline (then `kill_on_drop` alone would spare the grandchildren).
    let _group = GroupGuard(child.id());
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err("the plugin process has no stdio pipes".into());
    };
    let stderr_task = keep_stderr_tail(stderr);
    let talk = talk(stdout, &mut stdin, library, request, expect_name);
    let Ok(outcome) = tokio::time::timeout(wait, talk).await else {
        kill_group(&mut child);
        let _ = child.wait().await;
        stderr_task.abort();
        return Err(format!(
            "did not finish within the run's deadline ({wait:?} left when it started); the plugin process was killed"
        ));
    };
    if let Exchange::Ended = outcome {
        return Err(crashed(&mut child, stderr_task).await);
    }
    // Answered: close its stdin so it exits, and reap it without waiting long.
    drop(stdin);
    if tokio::time::timeout(Duration::from_secs(2), child.wait())
        .await
        .is_err()
    {
        kill_group(&mut child);
        let _ = child.wait().await;
    }
    stderr_task.abort();
    Ok(outcome)
}

/// Reads the child's stderr in the background, keeping only its last few KiB: its last words
/// explain a crash, and a chatty plugin must not fill memory.
fn keep_stderr_tail(mut stderr: ChildStderr) -> tokio::task::JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > 16 * 1024 {
                buf.drain(..buf.len() - 8 * 1024);
            }
        }
        buf
    })
}

/// The conversation itself: the hello, checked, then (with a request) one request and its
/// answer. `Ended` when the child stopped talking.
async fn talk(
    stdout: ChildStdout,
    stdin: &mut ChildStdin,
    library: &Path,
    request: Option<(Value, Value)>,
    expect_name: Option<&str>,
) -> Exchange {
    let mut lines = BoundedLines::new(BufReader::new(stdout));
    let hello = match read_hello(&mut lines, library).await {
        Ok(h) => h,
        Err(end) => return end,
    };
    if let Some(expected) = expect_name
        && hello.name != expected
    {
        return Exchange::Failed(format!(
            "the library now calls itself `{}`, not `{expected}`; restart mailprobe after replacing a plugin",
            hello.name
        ));
    }
    let Some((config, context)) = request else {
        return Exchange::Hello(hello);
    };
    let line = match serde_json::to_string(&Message::Request { config, context }) {
        Ok(l) => l + "\n",
        Err(e) => return Exchange::Failed(e.to_string()),
    };
    if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
        return Exchange::Ended;
    }
    match next_message(&mut lines).await {
        Some(Message::Result { result }) => Exchange::Result(result.to_string()),
        Some(Message::Error { message }) => Exchange::Failed(message),
        Some(_) => Exchange::Failed("the plugin host answered out of turn".into()),
        None => Exchange::Ended,
    }
}

/// The child's first message: its manifest, in the ABI this host speaks, or why not.
async fn read_hello(
    lines: &mut BoundedLines<BufReader<ChildStdout>>,
    library: &Path,
) -> Result<Manifest, Exchange> {
    match next_message(lines).await {
        Some(Message::Hello {
            abi_version,
            name,
            version,
            requirements,
        }) => {
            if abi_version != ABI_VERSION {
                return Err(Exchange::Failed(format!(
                    "the plugin host speaks ABI version {abi_version}, expected {ABI_VERSION}"
                )));
            }
            Ok(Manifest {
                name,
                version,
                requirements,
                path: library.to_path_buf(),
            })
        }
        Some(Message::Error { message }) => Err(Exchange::Failed(message)),
        Some(_) => Err(Exchange::Failed("the plugin host did not say hello".into())),
        None => Err(Exchange::Ended),
    }
}

/// The child died before answering: say how, with its last words on stderr.
async fn crashed(
    child: &mut tokio::process::Child,
    stderr_task: tokio::task::JoinHandle<Vec<u8>>,
) -> String {
    let status = match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
        Ok(Ok(s)) => describe_exit(s),
        _ => {
            kill_group(child);
            "closed its output".into()
        }
    };
    let tail = tokio::time::timeout(Duration::from_secs(1), stderr_task)
        .await
        .ok()
        .and_then(Result::ok)
        .map(|b| stderr_tail(&b))
        .unwrap_or_default();
    format!("the plugin process crashed: {status}{tail}")
}

/// Reads a library's manifest through a child process, so the library is never loaded into
/// mailprobe itself. Synchronous: used while loading, before the first run.
pub(crate) fn describe(exe: &Path, library: &Path) -> Result<Manifest, LoadError> {
    let shown = library.display().to_string();
    let run = async { exchange(exe, library, None, None, Duration::from_secs(10)).await };
    let result = match tokio::runtime::Handle::try_current() {
        // Inside mailprobe's runtime: run it on a helper thread with a runtime of its own.
        Ok(_) => std::thread::scope(|s| {
            s.spawn(|| block_on(run))
                .join()
                .unwrap_or_else(|_| Err("the describe thread panicked".into()))
        }),
        Err(_) => block_on(run),
    };
    match result {
        Ok(Exchange::Hello(m)) => Ok(m),
        Ok(Exchange::Failed(reason)) | Err(reason) => Err(LoadError::Child {
            path: shown,
            reason,
        }),
        Ok(Exchange::Result(_)) | Ok(Exchange::Ended) => Err(LoadError::Child {
            path: shown,
            reason: "the plugin host ended without saying hello".into(),
        }),
    }
}

fn block_on<F: std::future::Future<Output = Result<Exchange, String>>>(
    fut: F,
) -> Result<Exchange, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?
        .block_on(fut)
}

/// One call of a plugin in a fresh child process, from synchronous code (while loading).
pub(crate) fn call_blocking(
    exe: &Path,
    manifest: &Manifest,
    config: Value,
    context: Value,
) -> Result<String, String> {
    let run = call(exe, manifest, config, context, Duration::from_secs(10));
    let run = async { run.await.map(Exchange::Result) };
    let result = match tokio::runtime::Handle::try_current() {
        // Inside mailprobe's runtime: run it on a helper thread with a runtime of its own.
        Ok(_) => std::thread::scope(|s| {
            s.spawn(|| block_on(run))
                .join()
                .unwrap_or_else(|_| Err("the configuration check's thread panicked".into()))
        }),
        Err(_) => block_on(run),
    };
    match result? {
        Exchange::Result(text) => Ok(text),
        _ => Err("the plugin host gave no result".into()),
    }
}

/// One call of a plugin in a fresh child process.
pub(crate) async fn call(
    exe: &Path,
    manifest: &Manifest,
    config: Value,
    context: Value,
    wait: Duration,
) -> Result<String, String> {
    // The child's stderr and its error messages end up in the report: a plugin that prints
    // the password it was given must not put it there.
    let password = context
        .get("password")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let outcome = exchange(
        exe,
        &manifest.path,
        Some((config, context)),
        Some(&manifest.name),
        wait,
    )
    .await;
    match outcome {
        Ok(Exchange::Result(text)) => Ok(text),
        Ok(Exchange::Failed(reason)) | Err(reason) => Err(redact(reason, &password)),
        Ok(Exchange::Hello(_) | Exchange::Ended) => Err("the plugin host gave no result".into()),
    }
}

/// `text` through the core's one redactor: the password in every form a server or the plugin
/// could echo it (quoted, base64), control characters escaped, the length bounded.
fn redact(text: String, secret: &str) -> String {
    mailprobe_core::redact::redact(&text, secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_masked_in_error_text() {
        assert_eq!(
            redact("stderr: s3cret! here".into(), "s3cret!"),
            "stderr: [redacted] here"
        );
        assert_eq!(redact("nothing".into(), ""), "nothing");
        let b64 = "czNjcmV0IQ=="; // base64 of the password
        assert_eq!(
            redact(format!("AUTH PLAIN {b64}"), "s3cret!"),
            "AUTH PLAIN [redacted]"
        );
    }

    #[tokio::test]
    async fn lines_are_bounded_in_length() {
        let long = vec![b'x'; MAX_LINE + 10];
        let mut lines = BoundedLines::new(BufReader::new(&long[..]));
        assert!(lines.next_line().await.is_err());
        let mut ok = BoundedLines::new(BufReader::new(&b"one\ntwo"[..]));
        assert_eq!(ok.next_line().await.unwrap().as_deref(), Some("one"));
        assert_eq!(ok.next_line().await.unwrap().as_deref(), Some("two"));
        assert_eq!(ok.next_line().await.unwrap(), None);
    }

    #[test]
    fn messages_are_tagged_json_lines() {
        let m = Message::Error {
            message: "x".into(),
        };
        let mut out = Vec::new();
        send(&mut out, &m).unwrap();
        assert_eq!(out, b"{\"type\":\"error\",\"message\":\"x\"}\n");
    }

    #[test]
    fn exit_statuses_are_named() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            describe_exit(ExitStatus::from_raw(11)),
            "killed by signal 11 (SIGSEGV)"
        );
        assert_eq!(
            describe_exit(ExitStatus::from_raw(3 << 8)),
            "exited with status 3"
        );
    }

    #[test]
    fn stderr_tail_keeps_the_last_lines() {
        let t = stderr_tail(b"one\n\ntwo\nthree\nfour\n");
        assert_eq!(t, "; its last words on stderr: two | three | four");
        assert_eq!(stderr_tail(b""), "");
    }
}
