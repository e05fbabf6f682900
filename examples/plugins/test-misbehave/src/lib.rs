//! Test fixture: a plugin that misbehaves on request (its config's `mode`), for mailprobe's
//! dynamic-plugin tests (`tests/dynamic_*.rs`).
//!
//! Modes: `ok` (reports both requirements, a step and facts, plus a result for a requirement it
//! did not declare, which the host must drop), `error` (returns an error), `panic`, `abort`,
//! `segfault`, `sleep` (for `sleep_ms`, default 60 s), `flood` (writes to stdout without a
//! newline, forever), `grandchild` (starts a process holding a listening socket, writes its
//! port to `file`, then sleeps), `env` (reports the environment it sees), `leak` (prints the
//! password to stderr, then aborts). With `mailbox`, the mode applies to that mailbox only, and
//! the others get `ok`.
#![deny(unsafe_code)]

use std::collections::BTreeMap;

use mailprobe_plugin_sdk::{
    Context, NetError, Output, Plugin, Requirement, RequirementResult, StepTimer, Value,
};
use serde::Deserialize;

#[derive(Default)]
pub struct Misbehave;

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    sleep_ms: Option<u64>,
    #[serde(default)]
    file: Option<String>,
    /// The mode applies to this mailbox only (by name); the others get `ok`.
    #[serde(default)]
    mailbox: Option<String>,
}

impl Plugin for Misbehave {
    type Config = Config;
    const NAME: &'static str = "misbehave";

    fn requirements(&self) -> Vec<Requirement> {
        vec![
            Requirement::new("misbehave.ok", "the fixture ran"),
            Requirement::new("misbehave.extra", "the fixture saw the target"),
        ]
    }

    fn run(&self, config: Config, cx: &Context, out: &mut Output) -> Result<(), String> {
        let applies = config
            .mailbox
            .as_ref()
            .is_none_or(|m| *m == cx.target.mailbox);
        let mode = if applies {
            config.mode.as_deref().unwrap_or("ok")
        } else {
            "ok"
        };
        match mode {
            "ok" => {
                let t = StepTimer::start();
                out.step::<()>(t, "think", Some(&cx.target.imap), &Ok(()), BTreeMap::new());
                let t = StepTimer::start();
                out.step::<()>(
                    t,
                    "fail_on_purpose",
                    None,
                    &Err(NetError::Reset),
                    BTreeMap::new(),
                );
                out.report(RequirementResult::pass("misbehave.ok", "ran in a plugin"));
                out.report(
                    RequirementResult::pass(
                        "misbehave.extra",
                        format!("user {} on {}", cx.target.user, cx.target.imap.host),
                    )
                    .with("password_given", !cx.password.expose().is_empty())
                    .with("remaining_ms", cx.remaining().as_millis() as u64),
                );
                // Not declared: the host must drop it.
                out.report(RequirementResult::pass("imap.login", "forged"));
                let keys: Vec<Value> = match &cx.facts {
                    Value::Object(m) => m.keys().map(|k| Value::String(k.clone())).collect(),
                    _ => Vec::new(),
                };
                out.set_facts(serde_json::json!({ "fact_keys": keys }));
                Ok(())
            }
            "error" => Err("misbehave was told to fail".into()),
            "panic" => panic!("misbehave panics on purpose"),
            "abort" => std::process::abort(),
            "segfault" => {
                let p = std::hint::black_box(0usize) as *mut u8;
                #[allow(unsafe_code)]
                // SAFETY: none; this writes to address 0 on purpose to crash the process.
                unsafe {
                    p.write_volatile(1)
                };
                Ok(())
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_millis(
                    config.sleep_ms.unwrap_or(60_000),
                ));
                Ok(())
            }
            "flood" => {
                use std::io::Write;
                let chunk = [b'x'; 64 * 1024];
                let mut stdout = std::io::stdout();
                while stdout.write_all(&chunk).is_ok() {}
                Ok(())
            }
            "grandchild" => {
                let listener =
                    std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
                let port = listener.local_addr().map_err(|e| e.to_string())?.port();
                // The socket becomes the grandchild's stdin: it lives as long as the grandchild.
                let fd = std::os::fd::OwnedFd::from(listener);
                std::process::Command::new("sleep")
                    .arg("300")
                    .stdin(std::process::Stdio::from(fd))
                    .spawn()
                    .map_err(|e| format!("cannot start sleep: {e}"))?;
                if let Some(file) = &config.file {
                    std::fs::write(file, port.to_string()).map_err(|e| e.to_string())?;
                }
                std::thread::sleep(std::time::Duration::from_millis(
                    config.sleep_ms.unwrap_or(60_000),
                ));
                Ok(())
            }
            "env" => {
                let env: serde_json::Map<String, Value> = std::env::vars()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect();
                out.report(
                    RequirementResult::pass("misbehave.ok", "saw its environment")
                        .with("env", Value::Object(env)),
                );
                Ok(())
            }
            "leak" => {
                eprintln!("the password is {}", cx.password.expose());
                std::process::abort()
            }
            other => Err(format!("unknown mode `{other}`")),
        }
    }
}

mailprobe_plugin_sdk::export_plugin!(Misbehave);
