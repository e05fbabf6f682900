//! No secret in any log at any level: a real `mailprobe run` at `MAILPROBE_LOG=trace` (and with
//! directives that ask for hyper's, h2's and tonic's own traces) exports to receivers whose URLs
//! carry user information, a token in the path and a key in the query, and OTLP headers; the
//! receiver answers every request with an error, so every failure path logs. All the output
//! is searched for each secret. A malformed endpoint is a `validate` error that shows none.
mod common;
mod telemetry;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use telemetry::*;

const SECRETS: &[&str] = &[
    "OtlpUserSecret1",
    "OtlpPassSecret2",
    "OtlpPathSecret3",
    "OtlpQuerySecret4",
    "OtlpHeaderSecret5",
    "AmUserSecret6",
    "AmPassSecret7",
    "AmPathSecret8",
    "AmQuerySecret9",
    "HookUserSecret10",
    "HookPassSecret11",
    "HookPathSecret12",
    "HookQuerySecret13",
    "MailboxPasswordSecret14",
];

/// A receiver that reads each request and answers 503, counting the requests.
fn failing_receiver(stop: Arc<AtomicBool>, seen: Arc<AtomicUsize>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut s, _)) => {
                    seen.fetch_add(1, Ordering::Relaxed);
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                    let mut buf = [0u8; 65536];
                    let _ = s.read(&mut buf);
                    let _ = s.write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    port
}

fn config(listen: u16, receiver: u16, protocol: &str) -> String {
    format!(
        "interval: 2s
timeout: 5s
listen: 127.0.0.1:{listen}
otlp:
  endpoint: http://OtlpUserSecret1:OtlpPassSecret2@127.0.0.1:{receiver}/OtlpPathSecret3?api_key=OtlpQuerySecret4
  protocol: {protocol}
  export_interval: 1s
  headers:
    x-api-key: OtlpHeaderSecret5
alerts:
  alertmanager: http://AmUserSecret6:AmPassSecret7@127.0.0.1:{receiver}/AmPathSecret8?token=AmQuerySecret9
  webhook: http://HookUserSecret10:HookPassSecret11@127.0.0.1:{receiver}/services/HookPathSecret12?key=HookQuerySecret13
mailboxes:
  - name: m
    imap: 127.0.0.1:1
    imap_security: tls
    user: u
    password: {{ env: LOG_TEST_PASSWORD }}
"
    )
}

#[test]
fn a_daemon_at_trace_level_logs_no_receiver_secret() {
    for (protocol, filter) in [
        ("http/protobuf", "trace"),
        (
            "grpc",
            "trace,hyper=trace,hyper_util=trace,h2=trace,tonic=trace,tower=trace,opentelemetry=trace,opentelemetry_sdk=trace",
        ),
    ] {
        let scratch = Scratch::new("no-secrets");
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicUsize::new(0));
        let receiver = failing_receiver(stop.clone(), seen.clone());
        let listen = free_port();
        let file = scratch.path("mailprobe.yaml");
        let log = scratch.path("mailprobe.log");
        std::fs::write(&file, config(listen, receiver, protocol)).unwrap();
        let mut daemon = {
            let out = std::fs::File::create(&log).unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_mailprobe"))
                .args(["run", "--config"])
                .arg(&file)
                .env("LOG_TEST_PASSWORD", "MailboxPasswordSecret14")
                .env("MAILPROBE_LOG", filter)
                .stdin(std::process::Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap();
            Proc {
                name: "mailprobe",
                child: Some(child),
            }
        };
        // Long enough for checks, alerts to both receivers and several OTLP exports.
        wait_until("the receivers to be tried", Duration::from_secs(40), || {
            seen.load(Ordering::Relaxed) >= 4
        });
        std::thread::sleep(Duration::from_secs(4));
        // A reload through SIGHUP logs the receivers again.
        let _ = Command::new("kill")
            .args(["-HUP", &daemon.pid().to_string()])
            .status();
        std::thread::sleep(Duration::from_secs(2));
        daemon.terminate(Duration::from_secs(15));
        stop.store(true, Ordering::Relaxed);
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.lines().count() > 10,
            "{protocol}: the daemon logged almost nothing:\n{text}"
        );
        // The receivers are named: scheme, host and port.
        assert!(
            text.contains(&format!("http://127.0.0.1:{receiver}")),
            "{protocol}: no receiver named in the log:\n{text}"
        );
        for secret in SECRETS {
            let hits: Vec<&str> = text.lines().filter(|l| l.contains(secret)).collect();
            assert!(
                hits.is_empty(),
                "{protocol} at {filter}: `{secret}` in the log:\n{}",
                hits.join("\n")
            );
        }
    }
}

#[test]
fn a_malformed_endpoint_is_a_validate_error_that_shows_no_secret() {
    let scratch = Scratch::new("no-secrets-validate");
    let file = scratch.path("mailprobe.yaml");
    let mailbox =
        "mailboxes:\n  - name: m\n    imap: 127.0.0.1:1\n    user: u\n    password: { env: X }\n";
    for (section, expect) in [
        (
            "otlp:\n  endpoint: collector.example:4317?api_key=KeySecret1\n",
            "otlp.endpoint must start with http:// or https://",
        ),
        (
            "alerts:\n  webhook: hooks.example.com/services/TokenSecret2\n",
            "alerts.webhook must start with http:// or https://",
        ),
        (
            "alerts:\n  alertmanager: \"http://user:PassSecret3@:9093/\"\n",
            "alerts.alertmanager has no host",
        ),
        (
            "alerts:\n  webhook: \"https://hooks.example.com:99999/TokenSecret4\"\n",
            "alerts.webhook has a port",
        ),
    ] {
        std::fs::write(&file, format!("{section}{mailbox}")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_mailprobe"))
            .args(["validate", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(3), "{section}: {all}");
        assert!(all.contains(expect), "{section}: {all}");
        assert!(!all.contains("Secret"), "{section}: {all}");
    }
}
