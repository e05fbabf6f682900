//! The admin endpoint of a real `mailprobe run`, attacked and configured as an operator would:
//! `/healthz`, `/readyz` and `/metrics` keep answering within a second through a slowloris
//! and a flood of 10,000 connections from other addresses; a request head sent one line at a
//! time is cut at its deadline; `POST /-/reload` is 403 without `--web.enable-lifecycle`
//! and refused from a web page with it; `--web.config.file` (the exporter-toolkit format)
//! serves TLS with a certificate the test made and asks for basic auth with a bcrypt hash; a
//! web config that cannot be applied stops `run` with a message naming the file.
mod common;
mod telemetry;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use telemetry::*;

fn config(listen: u16) -> String {
    // A mailbox on a closed port: the daemon runs, and its checks cost nothing.
    format!(
        "interval: 1m\ntimeout: 5s\nlisten: 127.0.0.1:{listen}\nmailboxes:\n  - name: m\n    imap: 127.0.0.1:1\n    imap_security: tls\n    user: u\n    password: {{ env: ADMIN_TEST_PASSWORD }}\n"
    )
}

fn start(config: &Path, log: &Path, args: &[&str]) -> Proc {
    let out = std::fs::File::create(log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_mailprobe"))
        .arg("run")
        .arg("--config")
        .arg(config)
        .args(args)
        .env("ADMIN_TEST_PASSWORD", "pw")
        .env("MAILPROBE_LOG", "info")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("mailprobe run");
    Proc {
        name: "mailprobe",
        child: Some(child),
    }
}

/// One request from 127.0.0.1 with `extra` header lines: (status, body).
fn request(port: u16, method: &str, path: &str, extra: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((
        head.split_whitespace().nth(1)?.parse().ok()?,
        body.to_string(),
    ))
}

/// GET `path` answered 200 within one second, connect included.
fn answers_within_a_second(port: u16, path: &str) -> Result<(), String> {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    )
    .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf)
        .map_err(|e| format!("no answer: {e}"))?;
    let took = started.elapsed();
    let ok =
        buf.starts_with(b"HTTP/1.1 200") || (path == "/readyz" && buf.starts_with(b"HTTP/1.1 503"));
    if !ok {
        return Err(format!("answered {:?}", String::from_utf8_lossy(&buf)));
    }
    if took > Duration::from_secs(1) {
        return Err(format!("answered after {took:?}"));
    }
    Ok(())
}

async fn connect_from(source: [u8; 4], port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
}

#[test]
fn health_answers_through_a_slowloris_and_a_connection_flood() {
    let scratch = Scratch::new("admin-attack");
    let listen = free_port();
    let file = scratch.path("mailprobe.yaml");
    let log = scratch.path("mailprobe.log");
    std::fs::write(&file, config(listen)).unwrap();
    let _daemon = start(&file, &log, &[]);
    wait_until("/healthz", Duration::from_secs(30), || {
        answers_within_a_second(listen, "/healthz").is_ok()
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(AtomicUsize::new(0));

    // The slowloris: 64 connections from 127.0.0.2, each sending one header line every 2 s and
    // opening again when the server cuts it.
    for i in 0..64 {
        let stop = stop.clone();
        runtime.spawn(async move {
            use tokio::io::AsyncWriteExt;
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut s) = connect_from([127, 0, 0, 2], listen).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let _ = s.write_all(b"GET /healthz HTTP/1.1\r\n").await;
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    n += 1;
                    if s.write_all(format!("X-Slow-{i}-{n}: 1\r\n").as_bytes())
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        });
    }
    // The flood: 10,000 connection attempts from 127.0.0.3, 200 at a time, each held for a
    // moment and dropped.
    {
        let stop = stop.clone();
        let attempts = attempts.clone();
        runtime.spawn(async move {
            let gate = Arc::new(tokio::sync::Semaphore::new(200));
            while attempts.load(Ordering::Relaxed) < 10_000 && !stop.load(Ordering::Relaxed) {
                let Ok(permit) = gate.clone().acquire_owned().await else {
                    break;
                };
                attempts.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    if let Ok(s) = connect_from([127, 0, 0, 3], listen).await {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        drop(s);
                    }
                    drop(permit);
                });
            }
        });
    }
    // A request head sent one byte a second from 127.0.0.4: cut at the head deadline (10 s),
    // although it never stays silent.
    let cut = runtime.spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = connect_from([127, 0, 0, 4], listen).await.ok()?;
        let started = Instant::now();
        let head = b"GET /healthz HTTP/1.1\r\nX-Drip: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for b in head {
            if s.write_all(&[*b]).await.is_err() {
                return Some(started.elapsed());
            }
            let mut buf = [0u8; 64];
            match tokio::time::timeout(Duration::from_secs(1), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
                _ => {}
            }
        }
        None
    });

    // Throughout: the probes and the scrape, from 127.0.0.1, every 100 ms for 25 s.
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut answered = 0;
    while started.elapsed() < Duration::from_secs(25) {
        for path in ["/healthz", "/readyz", "/metrics"] {
            match answers_within_a_second(listen, path) {
                Ok(()) => answered += 1,
                Err(e) => failures.push(format!("{:?} {path}: {e}", started.elapsed())),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let flooded = attempts.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let cut_after = runtime.block_on(cut).unwrap();
    runtime.shutdown_timeout(Duration::from_secs(1));
    assert!(
        failures.is_empty(),
        "{} of {} probes failed during the attack:\n{}",
        failures.len(),
        failures.len() + answered,
        failures.join("\n")
    );
    assert!(
        flooded >= 10_000,
        "only {flooded} flood connections were tried"
    );
    let cut_after = cut_after.expect("a head sent one byte a second was never cut");
    assert!(
        cut_after < Duration::from_secs(14),
        "the dripped head was cut only after {cut_after:?}"
    );
}

#[test]
fn reload_needs_the_lifecycle_flag_and_is_never_taken_from_a_page() {
    let scratch = Scratch::new("admin-lifecycle");
    let file = scratch.path("mailprobe.yaml");
    let log = scratch.path("mailprobe.log");

    let listen = free_port();
    std::fs::write(&file, config(listen)).unwrap();
    let mut daemon = start(&file, &log, &[]);
    wait_until("/healthz", Duration::from_secs(30), || port_open(listen));
    let (status, body) = request(listen, "POST", "/-/reload", "").expect("POST /-/reload");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("--web.enable-lifecycle"), "{body}");
    daemon.terminate(Duration::from_secs(10));

    let listen = free_port();
    std::fs::write(&file, config(listen)).unwrap();
    let _daemon = start(&file, &log, &["--web.enable-lifecycle"]);
    wait_until("/healthz", Duration::from_secs(30), || port_open(listen));
    let (status, body) = request(listen, "POST", "/-/reload", "").expect("POST /-/reload");
    assert_eq!(status, 200, "{body}");
    for extra in [
        "Origin: http://attacker.example\r\n",
        "Origin: null\r\n",
        "Sec-Fetch-Site: cross-site\r\n",
    ] {
        let (status, body) = request(listen, "POST", "/-/reload", extra).expect("POST");
        assert_eq!(status, 403, "{extra}: {body}");
    }
    let (status, body) = request(
        listen,
        "POST",
        "/-/reload",
        "Content-Type: application/x-www-form-urlencoded\r\n",
    )
    .expect("POST");
    assert_eq!(status, 415, "{body}");
}

/// curl's answer: the HTTP status (000 when there was none) and stderr.
fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args(args)
        .output()
        .expect("curl (Debian package curl)");
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn the_web_config_serves_tls_and_basic_auth() {
    let scratch = Scratch::new("admin-web-config");
    let listen = free_port();
    let file = scratch.path("mailprobe.yaml");
    let log = scratch.path("mailprobe.log");
    std::fs::write(&file, config(listen)).unwrap();

    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(scratch.path("server.pem"), cert.pem()).unwrap();
    std::fs::write(scratch.path("server.key"), key.serialize_pem()).unwrap();
    let hash = bcrypt::hash("correct horse", 4).unwrap();
    let web = scratch.path("web.yml");
    // Relative paths: relative to the web config's own directory, as in exporter-toolkit.
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  min_version: TLS12\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\nbasic_auth_users:\n  prometheus: {hash}\n"
        ),
    )
    .unwrap();
    let _daemon = start(&file, &log, &["--web.config.file", web.to_str().unwrap()]);
    wait_until("the TLS listener", Duration::from_secs(30), || {
        port_open(listen)
    });
    let url = format!("https://localhost:{listen}/healthz");
    let ca = scratch.path("server.pem");
    let ca = ca.to_str().unwrap();
    let resolve = format!("localhost:{listen}:127.0.0.1");
    let base = ["--cacert", ca, "--resolve", resolve.as_str()];
    let with = |extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        a.push(&url);
        curl(&a)
    };
    wait_until("an answer over TLS", Duration::from_secs(30), || {
        with(&[]).0 == "401"
    });
    assert_eq!(with(&["-u", "prometheus:wrong"]).0, "401");
    assert_eq!(with(&["-u", "nobody:correct horse"]).0, "401");
    let (code, err) = with(&["-u", "prometheus:correct horse"]);
    assert_eq!(code, "200", "{err}");
    // The header from http_server_config.headers.
    let out = Command::new("curl")
        .args([
            "-sS",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-u",
            "prometheus:correct horse",
        ])
        .args(base)
        .arg(&url)
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(head.contains("x-frame-options: deny"), "{head}");
    // Plain HTTP on the TLS port gets no answer from the endpoint.
    let plain = curl(&[&format!("http://127.0.0.1:{listen}/healthz")]).0;
    assert_ne!(plain, "200");
    // The log never shows the hash or the password.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains(&hash) && !text.contains("correct horse"),
        "{text}"
    );
}

#[test]
fn a_web_config_that_cannot_be_applied_is_never_served_and_never_stops_run() {
    let scratch = Scratch::new("admin-web-bad");
    let file = scratch.path("mailprobe.yaml");
    let log = scratch.path("mailprobe.log");
    let web = scratch.path("web.yml");
    for (text, expect) in [
        (
            "basic_auth_users:\n  admin: hunter2\n",
            "is not a bcrypt hash",
        ),
        ("tls_config:\n  cert_file: x\n", "unknown field"),
        (
            "tls_server_config:\n  cert_file: missing.pem\n  key_file: missing.key\n",
            "missing.pem",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS10\n",
            "cert_file",
        ),
    ] {
        let listen = free_port();
        std::fs::write(&file, config(listen)).unwrap();
        std::fs::write(&web, text).unwrap();
        let web_arg = web.to_str().unwrap();
        let mut proc = start(&file, &log, &["--web.config.file", web_arg]);
        // A sidecar must never hold its pod back: the process keeps running, and every request
        // is refused with the reason rather than served without the protection asked for.
        let deadline = Instant::now() + Duration::from_secs(20);
        let answer = loop {
            if let Some(a) = request(listen, "GET", "/healthz", "") {
                break a;
            }
            assert!(
                Instant::now() < deadline,
                "{text}: no answer: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(answer.0, 503, "{text}: {answer:?}");
        assert!(answer.1.contains(expect), "{text}: {answer:?}");
        assert!(answer.1.contains("web.yml"), "{text}: {answer:?}");
        for path in ["/metrics", "/", "/api/v1/mailboxes"] {
            let (status, _) = request(listen, "GET", path, "").expect("an answer");
            assert_eq!(status, 503, "{text}: {path} was served");
        }
        assert!(
            proc.child
                .as_mut()
                .and_then(|c| c.try_wait().ok())
                .flatten()
                .is_none(),
            "{text}: run exited"
        );
        drop(proc);
        let err = std::fs::read_to_string(&log).unwrap();
        assert!(err.contains(expect), "{text}: {err}");
        assert!(err.contains("web.yml"), "{text}: {err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert!(!answer.1.contains("hunter2"), "{answer:?}");
    }
}
