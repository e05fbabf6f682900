//! Real receivers for the telemetry tests, each on loopback with its own ports and folder,
//! started by the test and killed by PID when dropped (also when the test fails):
//! `rotel-agent` (OTLP collector, PyPI `rotel`), Debian's `prometheus` and
//! `prometheus-alertmanager`, a Dovecot on a fixed port that can be restarted with another
//! certificate, and `mailprobe run` itself.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port that is free now, in 12000..20000: below the kernel's ephemeral range (so
/// outgoing connections cannot take it before the receiver binds it) and below the lab's
/// 20000..32000; never handed out twice in this process.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static USED: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let mut used = USED
        .get_or_init(|| Mutex::new(HashSet::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut x = (u64::from(std::process::id()) << 32) ^ u64::from(nanos) ^ 0x2545_f491_4f6c_dd1d;
    for _ in 0..1000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = 12000 + (x % 8000) as u16;
        if !used.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            used.insert(port);
            return port;
        }
    }
    panic!("no free loopback port in 12000..20000");
}

/// A fresh folder for one test's files, removed on drop unless the test failed.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("mailprobe-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out after {within:?} waiting for {what}");
}

pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// A plain HTTP/1.0 GET on loopback: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

fn kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.split_whitespace().nth(2) == Some("Z"))
            .unwrap_or(true)
}

/// Stops a process: SIGTERM, then SIGKILL after `grace`.
pub fn stop_pid(pid: u32, grace: Duration) {
    kill(pid, "TERM");
    let end = Instant::now() + grace;
    while alive(pid) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(pid) {
        kill(pid, "KILL");
    }
}

/// A child process killed on drop.
pub struct Proc {
    pub name: &'static str,
    pub child: Option<Child>,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }
    /// SIGTERM, and how long it took to exit (None: still running after `within`, killed).
    pub fn terminate(&mut self, within: Duration) -> Option<(Duration, std::process::ExitStatus)> {
        let mut child = self.child.take()?;
        let t0 = Instant::now();
        kill(child.id(), "TERM");
        while t0.elapsed() < within {
            if let Ok(Some(st)) = child.try_wait() {
                return Some((t0.elapsed(), st));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            stop_pid(c.id(), Duration::from_secs(3));
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// `rotel-agent`: $ROTEL_AGENT, the PATH, or the binary inside the `rotel` Python package.
pub fn rotel_agent() -> PathBuf {
    if let Some(p) = std::env::var_os("ROTEL_AGENT") {
        return PathBuf::from(p);
    }
    if let Some(p) = which("rotel-agent") {
        return p;
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))",
        ])
        .output()
        .expect("python3");
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        p.is_file(),
        "rotel-agent not found: pip install --pre rotel (see .ci/install-packages)"
    );
    p
}

/// An OTLP collector writing everything it receives to `log`.
pub struct Rotel {
    pub grpc: u16,
    pub http: u16,
    pub log: PathBuf,
    pid_file: PathBuf,
    pid: Option<u32>,
}

impl Rotel {
    pub fn start(dir: &Path, tag: &str, grpc: u16, http: u16) -> Rotel {
        let log = dir.join(format!("rotel-{tag}.log"));
        let pid_file = dir.join(format!("rotel-{tag}.pid"));
        let _ = std::fs::remove_file(&pid_file);
        let st = Command::new(rotel_agent())
            .arg("start")
            .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc}")])
            .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http}")])
            .args(["--exporter", "blackhole"])
            .args([
                "--debug-log",
                "traces",
                "--debug-log",
                "metrics",
                "--debug-log",
                "logs",
            ])
            .args(["--debug-log-verbosity", "detailed"])
            .arg("--daemon")
            .arg("--log-file")
            .arg(&log)
            .arg("--pid-file")
            .arg(&pid_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("start rotel-agent");
        assert!(st.success(), "rotel-agent start: {st}");
        let mut r = Rotel {
            grpc,
            http,
            log,
            pid_file,
            pid: None,
        };
        wait_until(
            "rotel's pid file and ports",
            Duration::from_secs(20),
            || {
                r.pid = std::fs::read_to_string(&r.pid_file)
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
                r.pid.is_some() && port_open(grpc) && port_open(http)
            },
        );
        r
    }

    /// What it received so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        if let Some(pid) = self.pid.take() {
            stop_pid(pid, Duration::from_secs(5));
        }
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Debian's Prometheus scraping `target` every second.
pub fn prometheus(dir: &Path, port: u16, target: SocketAddr) -> Proc {
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: mailprobe\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("prom-data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("prometheus (Debian package `prometheus`)");
    let p = Proc {
        name: "prometheus",
        child: Some(child),
    };
    wait_until("prometheus ready", Duration::from_secs(30), || {
        http_get(port, "/-/ready").is_some_and(|(s, _)| s == 200)
    });
    p
}

/// Debian's Alertmanager, clustering off.
pub fn alertmanager(dir: &Path, port: u16) -> Proc {
    let cfg = dir.join("alertmanager.yml");
    std::fs::write(
        &cfg,
        "route:\n  receiver: blackhole\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: blackhole\n",
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("alertmanager.log")).unwrap();
    let child = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.path={}", dir.join("am-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("prometheus-alertmanager (Debian package)");
    let p = Proc {
        name: "alertmanager",
        child: Some(child),
    };
    wait_until("alertmanager ready", Duration::from_secs(30), || {
        http_get(port, "/-/ready").is_some_and(|(s, _)| s == 200)
    });
    p
}

/// `mailprobe run --config FILE`, its stderr in `log`.
pub fn mailprobe_run(config: &Path, log: &Path, env: &[(&str, &str)]) -> Proc {
    mailprobe_run_with(config, log, env, &[])
}

/// [`mailprobe_run`] with more flags (`--log.format json`, `--web.enable-lifecycle`, ...).
pub fn mailprobe_run_with(config: &Path, log: &Path, env: &[(&str, &str)], args: &[&str]) -> Proc {
    let out = std::fs::File::create(log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailprobe"));
    cmd.arg("run").arg("--config").arg(config).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // The test's own OTEL_* must not leak in.
    for (k, _) in std::env::vars() {
        if k.starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    let child = cmd
        .env("MAILPROBE_LOG", "info")
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

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// The value of one sample in a Prometheus text page (first line starting with `series`).
pub fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l[series.len()..].split_whitespace().next()?.parse().ok())
}

/// Dovecot on a fixed implicit-TLS port, restartable with another certificate
/// (`tests/lab/dovecot.sh`, the lab's script, driven directly to keep the port).
pub struct Dovecot {
    state: PathBuf,
    pub port: u16,
}

impl Dovecot {
    pub fn start(name: &str, port: u16, cert: &str) -> Dovecot {
        let d = Dovecot {
            state: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/lab/state")
                .join(format!("{name}-{}", std::process::id())),
            port,
        };
        d.restart(cert);
        d
    }

    /// (Re)starts the server on the same port with certificate `cert` (good, expired, ...).
    pub fn restart(&self, cert: &str) {
        let certs = crate::common::Lab::certs_dir();
        let out = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/dovecot.sh"))
            .arg("start")
            .arg(&self.state)
            .env("LAB_CERTS", &certs)
            .env("LAB_CERT", cert)
            .env("LAB_IMAPS_PORT", self.port.to_string())
            .env("LAB_IMAP_PORT", "0")
            .env("LAB_LMTP", "0")
            .env("LAB_OWNER_PID", std::process::id().to_string())
            .output()
            .expect("dovecot.sh");
        assert!(
            out.status.success(),
            "dovecot.sh start: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/dovecot.sh"))
            .arg("stop")
            .arg(&self.state)
            .output();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.state);
        }
    }
}
