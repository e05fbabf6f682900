//! Live tests of the raw version probes against `openssl s_server` (OpenSSL 3).
//!
//! SSLv3 cannot be tested as accepted here: OpenSSL 3 has no SSLv3 at all
//! (Debian builds it with no-ssl3), so an SSLv3 probe can only be checked to
//! be refused. Accepting SSLv3 is covered by the codec tests in `hello.rs`.
//!
//! Each test starts its own server on a port picked at runtime on
//! 127.0.0.1; every wait is bounded and the server is killed on drop.

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mailprobe_tlswire::hello::{
    self, Parse, SSL3, TLS10, TLS11, TLS12, TLS13, client_hello, parse_server_flight,
};
use mailprobe_tlswire::probe::{ProbeOutcome, probe_version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const IO_TIMEOUT: Duration = Duration::from_secs(5);
const HOST: &str = "mail.lab.test";

/// A temp dir with a fresh self-signed certificate, removed on drop.
struct CertDir {
    dir: PathBuf,
    der: Vec<u8>,
}

impl CertDir {
    fn new() -> CertDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mailprobe-tls-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", &format!("/CN={HOST}")])
            .arg("-keyout")
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(dir.join("cert.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run openssl req")
            .success();
        assert!(ok, "openssl req failed");
        let ok = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(dir.join("cert.pem"))
            .arg("-out")
            .arg(dir.join("cert.der"))
            .status()
            .expect("run openssl x509")
            .success();
        assert!(ok, "openssl x509 failed");
        let der = std::fs::read(dir.join("cert.der")).unwrap();
        CertDir { dir, der }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for CertDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An `openssl s_server` child process, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(certs: &CertDir, args: &[&str]) -> Server {
        // The port is picked by the OS, then released for s_server; if
        // someone grabs it in between, s_server exits and we try another.
        for _attempt in 0..5 {
            let port = StdListener::bind((Ipv4Addr::LOCALHOST, 0))
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let child = Command::new("openssl")
                .arg("s_server")
                .args(["-accept", &addr.to_string()])
                .arg("-cert")
                .arg(certs.path("cert.pem"))
                .arg("-key")
                .arg(certs.path("key.pem"))
                .arg("-www") // answers GET /, never reads our stdin
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn openssl s_server");
            let mut server = Server { child, addr };
            if server.wait_listening(Duration::from_secs(10)) {
                return server;
            }
        }
        panic!("openssl s_server did not start listening");
    }

    /// Retry connecting until it succeeds, the child exits, or the deadline.
    fn wait_listening(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok()
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    async fn probe(&self, version: u16) -> ProbeOutcome {
        let mut stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(self.addr))
            .await
            .expect("connect timeout")
            .expect("connect");
        probe_version(&mut stream, version, Some(HOST), IO_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("probe {} failed: {e}", hello::version_name(version)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Oracle: does `openssl s_client -tls1_X` complete a handshake?
async fn s_client_accepts(addr: SocketAddr, version: u16) -> bool {
    let flag = match version {
        TLS10 => "-tls1",
        TLS11 => "-tls1_1",
        TLS12 => "-tls1_2",
        TLS13 => "-tls1_3",
        _ => unreachable!(),
    };
    let child = tokio::process::Command::new("openssl")
        .arg("s_client")
        .args(["-connect", &addr.to_string(), "-servername", HOST, flag])
        .args(["-cipher", "DEFAULT:@SECLEVEL=0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn openssl s_client");
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("s_client timed out")
        .expect("s_client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let negotiated = stdout.lines().any(|l| {
        let l = l.trim();
        l.starts_with("Protocol") && !l.contains("NONE")
    }) || stdout.contains(", Cipher is ") && !stdout.contains("Cipher is (NONE)");
    out.status.success() && negotiated
}

fn assert_accepted(outcome: &ProbeOutcome, version: u16, cert_der: Option<&[u8]>) {
    match outcome {
        ProbeOutcome::Accepted {
            version: v,
            cipher,
            cipher_name,
            certificates,
        } => {
            assert_eq!(*v, version);
            assert!(cipher_name.is_some(), "unnamed cipher 0x{cipher:04x}");
            match cert_der {
                Some(der) => {
                    assert_eq!(
                        certificates.len(),
                        1,
                        "self-signed chain has one certificate"
                    );
                    assert_eq!(certificates[0], der, "certificate is the server's DER");
                }
                None => assert!(certificates.is_empty()),
            }
        }
        other => panic!(
            "{} should be accepted, got {other:?}",
            hello::version_name(version)
        ),
    }
}

fn assert_refused(outcome: &ProbeOutcome, version: u16) -> String {
    match outcome {
        ProbeOutcome::Refused { reason } => reason.clone(),
        other => panic!(
            "{} should be refused, got {other:?}",
            hello::version_name(version)
        ),
    }
}

#[tokio::test]
async fn tls13_only_server() {
    let certs = CertDir::new();
    let server = Server::start(&certs, &["-tls1_3"]);
    let out = server.probe(TLS13).await;
    assert_accepted(&out, TLS13, None);
    if let ProbeOutcome::Accepted { cipher_name, .. } = &out {
        let name = cipher_name.as_deref().unwrap();
        assert!(
            name.starts_with("TLS_AES_") || name.starts_with("TLS_CHACHA20"),
            "{name}"
        );
    }
    for v in [TLS10, TLS11, TLS12] {
        let reason = assert_refused(&server.probe(v).await, v);
        eprintln!(
            "TLS 1.3-only server, {} probe: {reason}",
            hello::version_name(v)
        );
        assert!(reason.contains("alert"), "{reason}");
    }
    for v in [TLS10, TLS11, TLS12, TLS13] {
        assert_eq!(
            s_client_accepts(server.addr, v).await,
            v == TLS13,
            "oracle {v:04x}"
        );
    }
}

#[tokio::test]
async fn tls12_only_server() {
    let certs = CertDir::new();
    let server = Server::start(&certs, &["-tls1_2"]);
    assert_accepted(&server.probe(TLS12).await, TLS12, Some(&certs.der));
    for v in [SSL3, TLS10, TLS11, TLS13] {
        let reason = assert_refused(&server.probe(v).await, v);
        eprintln!(
            "TLS 1.2-only server, {} probe: {reason}",
            hello::version_name(v)
        );
    }
    for v in [TLS10, TLS11, TLS12, TLS13] {
        assert_eq!(
            s_client_accepts(server.addr, v).await,
            v == TLS12,
            "oracle {v:04x}"
        );
    }
}

#[tokio::test]
async fn all_versions_server() {
    let certs = CertDir::new();
    let server = Server::start(
        &certs,
        &["-cipher", "ALL:@SECLEVEL=0", "-min_protocol", "TLSv1"],
    );
    for v in [TLS10, TLS11, TLS12] {
        assert_accepted(&server.probe(v).await, v, Some(&certs.der));
    }
    assert_accepted(&server.probe(TLS13).await, TLS13, None);
    // OpenSSL 3 has no SSLv3.
    let reason = assert_refused(&server.probe(SSL3).await, SSL3);
    eprintln!("all-versions server, SSLv3 probe: {reason}");
    for v in [TLS10, TLS11, TLS12, TLS13] {
        assert!(s_client_accepts(server.addr, v).await, "oracle {v:04x}");
    }
}

#[tokio::test]
async fn tls12_and_tls11_server_without_seclevel0() {
    // OpenSSL 3 at the default security level refuses TLS 1.0/1.1 even when
    // they are in the protocol range; the probe must see that.
    let certs = CertDir::new();
    let server = Server::start(
        &certs,
        &["-min_protocol", "TLSv1", "-max_protocol", "TLSv1.2"],
    );
    assert_accepted(&server.probe(TLS12).await, TLS12, Some(&certs.der));
    for v in [TLS10, TLS11, TLS13] {
        let reason = assert_refused(&server.probe(v).await, v);
        eprintln!(
            "default-seclevel TLS<=1.2 server, {} probe: {reason}",
            hello::version_name(v)
        );
    }
}

#[tokio::test]
async fn tls10_only_server_answers_higher_probes_with_tls10() {
    // A server limited to TLS 1.0 answers a TLS 1.1/1.2 ClientHello with a
    // TLS 1.0 ServerHello (normal version negotiation): the probe must not
    // count that as 1.1/1.2 support.
    let certs = CertDir::new();
    let server = Server::start(&certs, &["-tls1", "-cipher", "ALL:@SECLEVEL=0"]);
    assert_accepted(&server.probe(TLS10).await, TLS10, Some(&certs.der));
    for v in [SSL3, TLS11, TLS12, TLS13] {
        let reason = assert_refused(&server.probe(v).await, v);
        eprintln!(
            "TLS 1.0-only server, {} probe: {reason}",
            hello::version_name(v)
        );
        if v == TLS11 || v == TLS12 {
            assert_eq!(reason, "server answered with TLS 1.0 instead");
        }
    }
    for v in [TLS10, TLS11, TLS12, TLS13] {
        assert_eq!(
            s_client_accepts(server.addr, v).await,
            v == TLS10,
            "oracle {v:04x}"
        );
    }
}

#[tokio::test]
async fn tls13_hello_retry_request() {
    // The server only wants P-256; our key share is x25519, so it must send
    // a HelloRetryRequest, which still proves TLS 1.3.
    let certs = CertDir::new();
    let server = Server::start(&certs, &["-tls1_3", "-groups", "P-256"]);
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(&client_hello(TLS13, Some(HOST)))
        .await
        .unwrap();
    let answer = read_flight(&mut stream).await;
    assert!(
        matches!(
            parse_server_flight(&answer),
            Parse::Done(hello::ServerAnswer::HelloRetryRequest { .. })
        ),
        "{:?}",
        parse_server_flight(&answer)
    );
    // s_server serves one connection at a time.
    drop(stream);
    assert_accepted(&server.probe(TLS13).await, TLS13, None);
}

/// Read until the codec says the flight is complete; returns the raw bytes.
async fn read_flight(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(IO_TIMEOUT, stream.read(&mut chunk))
            .await
            .expect("read timeout")
            .expect("read");
        if n == 0 {
            return buf;
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse_server_flight(&buf) {
            Parse::NeedMore => {}
            _ => return buf,
        }
    }
}

async fn capture(addr: SocketAddr, version: u16) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&client_hello(version, Some(HOST)))
        .await
        .unwrap();
    read_flight(&mut stream).await
}

fn write_hex(dir: &Path, name: &str, bytes: &[u8]) {
    let hex: String = bytes
        .chunks(32)
        .map(|c| c.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n")
        .collect();
    std::fs::write(dir.join(name), hex).unwrap();
}

/// What a flight says, for comparing a live capture with a committed fixture: the kind of
/// answer and its version or alert, not the random bytes inside.
fn shape(flight: &[u8]) -> String {
    match parse_server_flight(flight) {
        Parse::Done(hello::ServerAnswer::Hello {
            version,
            certificates,
            ..
        }) => format!("hello {version:04x}, {} certificate(s)", certificates.len()),
        Parse::Done(hello::ServerAnswer::HelloRetryRequest { .. }) => "hello retry".into(),
        Parse::Done(hello::ServerAnswer::Alert { level, description }) => {
            format!("alert {level}/{description}")
        }
        other => format!("{other:?}"),
    }
}

fn read_hex(path: &Path) -> Vec<u8> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap_or("00"), 16).unwrap_or(0))
        .collect()
}

/// The codec's fixtures in tests/fixtures were captured from a live s_server: this captures the
/// same flights again and checks each still has the shape of its fixture, so the fixtures
/// cannot drift from what OpenSSL sends. With `MAILPROBE_WRITE_FIXTURES=1` it rewrites them.
#[tokio::test]
async fn fixtures_match_what_a_live_s_server_sends() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let certs = CertDir::new();
    let mut captured: Vec<(&str, Vec<u8>)> = Vec::new();
    {
        let server = Server::start(
            &certs,
            &["-cipher", "ALL:@SECLEVEL=0", "-min_protocol", "TLSv1"],
        );
        captured.push((
            "openssl_tls12_flight.hex",
            capture(server.addr, TLS12).await,
        ));
        captured.push((
            "openssl_tls10_flight.hex",
            capture(server.addr, TLS10).await,
        ));
        captured.push((
            "openssl_tls13_flight.hex",
            capture(server.addr, TLS13).await,
        ));
    }
    {
        let server = Server::start(&certs, &["-tls1_2"]);
        captured.push((
            "openssl_alert_tls11_on_tls12_only.hex",
            capture(server.addr, TLS11).await,
        ));
    }
    {
        let server = Server::start(&certs, &["-tls1_3", "-groups", "P-256"]);
        captured.push(("openssl_hrr.hex", capture(server.addr, TLS13).await));
    }
    if std::env::var_os("MAILPROBE_WRITE_FIXTURES").is_some() {
        std::fs::create_dir_all(&out).unwrap();
        for (name, bytes) in &captured {
            write_hex(&out, name, bytes);
        }
        std::fs::write(out.join("openssl_cert.der.hex"), {
            let mut s: String = certs.der.iter().map(|b| format!("{b:02x}")).collect();
            s.push('\n');
            s
        })
        .unwrap();
    }
    for (name, bytes) in &captured {
        let committed = read_hex(&out.join(name));
        assert_eq!(
            shape(bytes),
            shape(&committed),
            "{name} no longer has the shape of a live capture; regenerate with MAILPROBE_WRITE_FIXTURES=1"
        );
    }
}
