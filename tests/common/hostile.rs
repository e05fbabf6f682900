//! A scripted hostile peer: a TCP server on loopback (plain, or TLS with a certificate made
//! here for `mail.lab.test` by a CA made here) whose every connection runs a script. Real
//! servers never misbehave on cue, so this is the one place a hand-written server is used: to
//! send what a broken or malicious one would, byte for byte.
//!
//! std threads and rustls' blocking API: the probe under test is a separate process, and a
//! thread per connection keeps a script a plain sequence of reads and writes.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The name the certificate is for.
pub const HOSTNAME: &str = "mail.lab.test";

/// How long a peer waits for the probe before it gives up on the connection.
const PEER_WAIT: Duration = Duration::from_secs(30);
/// The longest line a peer reads from the probe.
const MAX_LINE: usize = 64 * 1024;

struct Pki {
    ca_file: PathBuf,
    config: Arc<rustls::ServerConfig>,
    /// Another leaf for the same name from the same CA: valid, yet not the one a run saw first.
    other: Arc<rustls::ServerConfig>,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mailprobe hostile-peer test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        let server_config = || {
            let leaf_key = KeyPair::generate().expect("leaf key");
            let mut leaf_params =
                CertificateParams::new(vec![HOSTNAME.to_string()]).expect("leaf params");
            leaf_params
                .distinguished_name
                .push(rcgen::DnType::CommonName, HOSTNAME);
            let leaf = leaf_params
                .signed_by(&leaf_key, &ca)
                .expect("leaf certificate");
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
            let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone(), ca.der().clone()];
            let config = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server certificate");
            Arc::new(config)
        };
        let dir = std::env::temp_dir().join(format!("mailprobe-hostile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("write CA");
        Pki {
            ca_file,
            config: server_config(),
            other: server_config(),
        }
    })
}

/// The CA that issued the peers' certificate, for `--ca-file`.
pub fn ca_file() -> PathBuf {
    pki().ca_file.clone()
}

enum Io {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
    Gone,
}

/// One connection, seen from the server side.
pub struct Peer {
    io: Io,
    buf: Vec<u8>,
    /// Every line the probe sent on any connection of this server, in order.
    pub seen: Arc<Mutex<Vec<String>>>,
    /// Presents the other certificate (see `serve_switching`).
    other_cert: bool,
}

impl Peer {
    fn stream(&mut self) -> Option<&mut dyn ReadWrite> {
        match &mut self.io {
            Io::Plain(s) => Some(s),
            Io::Tls(s) => Some(s.as_mut()),
            Io::Gone => None,
        }
    }

    /// Sends bytes as they are; false when the probe has gone.
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) -> bool {
        let Some(s) = self.stream() else {
            return false;
        };
        s.write_all(bytes.as_ref()).and_then(|_| s.flush()).is_ok()
    }

    /// The next line from the probe without its line end; `None` when it closed or went quiet.
    pub fn line(&mut self) -> Option<String> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                let line = String::from_utf8_lossy(&line).into_owned();
                if let Ok(mut seen) = self.seen.lock() {
                    seen.push(line.clone());
                }
                return Some(line);
            }
            if self.buf.len() > MAX_LINE {
                return None;
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream()?.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads until the probe closes the connection (a server that never answers).
    pub fn hang(&mut self) {
        while self.line().is_some() {}
    }

    /// Upgrades a plain connection to TLS (after a STARTTLS reply).
    pub fn start_tls(&mut self) -> bool {
        let Io::Plain(tcp) = std::mem::replace(&mut self.io, Io::Gone) else {
            return false;
        };
        let config = if self.other_cert {
            pki().other.clone()
        } else {
            pki().config.clone()
        };
        let Ok(conn) = rustls::ServerConnection::new(config) else {
            return false;
        };
        self.io = Io::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)));
        true
    }

    /// A TLS session on `tcp` whose ClientHello (`hello`, already read off the wire) goes to a
    /// real rustls acceptor first: the peer decided to answer it after looking at it. `None`
    /// when rustls refused the hello (its alert has been sent).
    pub fn tls_after(mut tcp: TcpStream, hello: &[u8]) -> Option<Peer> {
        let mut conn = rustls::ServerConnection::new(pki().config.clone()).ok()?;
        let mut rest = hello;
        while !rest.is_empty() {
            conn.read_tls(&mut rest).ok()?;
            if conn.process_new_packets().is_err() {
                // The alert that says why (an unsupported version).
                let _ = conn.write_tls(&mut tcp);
                return None;
            }
        }
        Some(Peer {
            io: Io::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))),
            buf: Vec::new(),
            seen: Arc::new(Mutex::new(Vec::new())),
            other_cert: false,
        })
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.io, Io::Tls(_))
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Plain text from the first byte, or TLS from the first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Tls,
}

/// A running hostile server; stops accepting when dropped.
pub struct Server {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// Every line the probe sent so far.
    pub fn lines(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Serves `script` on every connection to a fresh loopback port.
pub fn serve(mode: Mode, script: impl Fn(&mut Peer) + Send + Sync + 'static) -> Server {
    serve_switching(mode, Arc::new(AtomicBool::new(false)), script)
}

/// Like `serve`, but the connections accepted once `switch` is set present another valid
/// certificate for the same name: a man in the middle who let the first connection through.
pub fn serve_switching(
    mode: Mode,
    switch: Arc<AtomicBool>,
    script: impl Fn(&mut Peer) + Send + Sync + 'static,
) -> Server {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    listen(seen, move |tcp| {
        let mut peer = Peer {
            io: Io::Plain(tcp),
            buf: Vec::new(),
            seen: seen2.clone(),
            other_cert: switch.load(Ordering::SeqCst),
        };
        if mode == Mode::Tls && !peer.start_tls() {
            return;
        }
        script(&mut peer);
    })
}

/// Serves `script` on every raw TCP connection, for a peer that reads the ClientHello itself
/// before it decides what to do (see [`Peer::tls_after`]).
pub fn serve_tcp(script: impl Fn(TcpStream) + Send + Sync + 'static) -> Server {
    listen(Arc::new(Mutex::new(Vec::new())), script)
}

/// Accepts on a fresh loopback port, one thread per connection, until the server is dropped.
fn listen(
    seen: Arc<Mutex<Vec<String>>>,
    handler: impl Fn(TcpStream) + Send + Sync + 'static,
) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.set_nonblocking(true).expect("non-blocking");
    let port = listener.local_addr().expect("local address").port();
    let stop = Arc::new(AtomicBool::new(false));
    let handler = Arc::new(handler);
    let stop2 = stop.clone();
    std::thread::spawn(move || {
        while !stop2.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((tcp, _)) => {
                    let handler = handler.clone();
                    std::thread::spawn(move || {
                        let _ = tcp.set_nonblocking(false);
                        let _ = tcp.set_read_timeout(Some(PEER_WAIT));
                        let _ = tcp.set_write_timeout(Some(PEER_WAIT));
                        handler(tcp);
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    Server { port, seen, stop }
}

/// The TLS record that opens a connection (the ClientHello), read whole: at most 5 + 16 KiB.
pub fn read_first_record(tcp: &mut TcpStream) -> Option<Vec<u8>> {
    let mut record = vec![0u8; 5];
    tcp.read_exact(&mut record).ok()?;
    let len = usize::from(u16::from_be_bytes([*record.get(3)?, *record.get(4)?]));
    if len > 16 * 1024 + 2048 {
        return None;
    }
    let mut body = vec![0u8; len];
    tcp.read_exact(&mut body).ok()?;
    record.extend_from_slice(&body);
    Some(record)
}

/// The highest protocol version a ClientHello record offers: the largest of its
/// `supported_versions` extension, else its `client_version` (0x0303 is TLS 1.2).
pub fn highest_offered(record: &[u8]) -> Option<u16> {
    let u16_at = |b: &[u8], i: usize| Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]));
    // Record header (5), handshake header (4), client_version (2), random (32).
    let hello = record.get(9..)?;
    let client_version = u16_at(hello, 0)?;
    let mut at = 34;
    at += 1 + usize::from(*hello.get(at)?);
    at += 2 + usize::from(u16_at(hello, at)?);
    at += 1 + usize::from(*hello.get(at)?);
    let Some(ext_len) = u16_at(hello, at) else {
        return Some(client_version);
    };
    let exts = hello.get(at + 2..at + 2 + usize::from(ext_len))?;
    let mut i = 0;
    while i + 4 <= exts.len() {
        let (kind, len) = (u16_at(exts, i)?, usize::from(u16_at(exts, i + 2)?));
        let body = exts.get(i + 4..i + 4 + len)?;
        if kind == 0x002b {
            let list = body.get(1..1 + usize::from(*body.first()?))?;
            return list
                .chunks_exact(2)
                .map(|v| u16::from_be_bytes([v[0], v[1]]))
                // GREASE values (0x?a?a) offer nothing.
                .filter(|v| v & 0x0f0f != 0x0a0a)
                .max();
        }
        i += 4 + len;
    }
    Some(client_version)
}

/// One IMAP command from the probe.
#[derive(Clone, Debug)]
pub struct Cmd {
    pub tag: String,
    /// The command word, upper case (`LOGIN`, `LIST`).
    pub verb: String,
    pub line: String,
}

/// What a hook did with a command.
pub enum Then {
    /// Not handled: answer as a well-behaved server would.
    Default,
    /// Handled; read the next command.
    Next,
    /// Handled; end the session.
    Close,
}

/// A well-behaved IMAP server's greeting (before or after TLS).
pub const IMAP_GREETING: &str = "* OK [CAPABILITY IMAP4rev1] hostile-peer ready\r\n";

/// Runs an IMAP session: sends `greeting`, then for each command asks `hook` and, unless it
/// handled it, answers as a small well-behaved server with INBOX and Sent would.
pub fn imap(peer: &mut Peer, greeting: &[u8], mut hook: impl FnMut(&mut Peer, &Cmd) -> Then) {
    if !peer.send(greeting) {
        return;
    }
    while let Some(line) = peer.line() {
        let mut words = line.splitn(3, ' ');
        let tag = words.next().unwrap_or_default().to_string();
        let verb = words.next().unwrap_or_default().to_ascii_uppercase();
        let cmd = Cmd { tag, verb, line };
        match hook(peer, &cmd) {
            Then::Next => continue,
            Then::Close => return,
            Then::Default => {}
        }
        if !imap_default(peer, &cmd) {
            return;
        }
    }
}

/// The well-behaved answer to `cmd`; false when the session ends.
pub fn imap_default(peer: &mut Peer, cmd: &Cmd) -> bool {
    let t = &cmd.tag;
    let text = match cmd.verb.as_str() {
        "CAPABILITY" if peer.is_tls() => {
            format!("* CAPABILITY IMAP4rev1 AUTH=PLAIN NAMESPACE ID\r\n{t} OK CAPABILITY done\r\n")
        }
        "CAPABILITY" => {
            format!("* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n{t} OK CAPABILITY done\r\n")
        }
        "STARTTLS" => {
            return peer.send(format!("{t} OK Begin TLS now\r\n")) && peer.start_tls();
        }
        "LOGIN" => format!("{t} OK [CAPABILITY IMAP4rev1 NAMESPACE ID] logged in\r\n"),
        "AUTHENTICATE" => {
            // With no initial response the client sends it after an empty challenge.
            if cmd.line.split(' ').count() < 4 && (!peer.send("+ \r\n") || peer.line().is_none()) {
                return false;
            }
            format!("{t} OK [CAPABILITY IMAP4rev1 NAMESPACE ID] logged in\r\n")
        }
        "ID" => format!("* ID (\"name\" \"hostile\")\r\n{t} OK ID done\r\n"),
        "NAMESPACE" => format!("* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n{t} OK NAMESPACE done\r\n"),
        "LIST" | "XLIST" => format!(
            "* LIST (\\HasNoChildren) \"/\" INBOX\r\n* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n{t} OK LIST done\r\n"
        ),
        "EXAMINE" | "SELECT" => {
            format!("* 0 EXISTS\r\n* 0 RECENT\r\n{t} OK [READ-ONLY] EXAMINE done\r\n")
        }
        "NOOP" => format!("{t} OK NOOP done\r\n"),
        "LOGOUT" => {
            let _ = peer.send(format!("* BYE bye\r\n{t} OK LOGOUT done\r\n"));
            return false;
        }
        _ => format!("{t} BAD unknown command\r\n"),
    };
    peer.send(text)
}

/// A well-behaved SMTP greeting.
pub const SMTP_GREETING: &str = "220 mail.lab.test ESMTP hostile-peer\r\n";

/// Runs an SMTP session: sends `greeting`, then for each command line asks `hook` and, unless
/// it handled it, answers as a small well-behaved submission server would.
pub fn smtp(peer: &mut Peer, greeting: &[u8], mut hook: impl FnMut(&mut Peer, &str) -> Then) {
    if !peer.send(greeting) {
        return;
    }
    while let Some(line) = peer.line() {
        match hook(peer, &line) {
            Then::Next => continue,
            Then::Close => return,
            Then::Default => {}
        }
        let verb = line
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let text = match verb.as_str() {
            "EHLO" if peer.is_tls() => {
                "250-mail.lab.test\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n".to_string()
            }
            "EHLO" => "250-mail.lab.test\r\n250-STARTTLS\r\n250 8BITMIME\r\n".to_string(),
            "HELO" => "250 mail.lab.test\r\n".to_string(),
            "STARTTLS" => {
                if !peer.send("220 2.0.0 go ahead\r\n") || !peer.start_tls() {
                    return;
                }
                continue;
            }
            "AUTH" => "235 2.7.0 Authentication successful\r\n".to_string(),
            "NOOP" => "250 2.0.0 ok\r\n".to_string(),
            "QUIT" => {
                let _ = peer.send("221 2.0.0 bye\r\n");
                return;
            }
            _ => "502 5.5.2 unknown command\r\n".to_string(),
        };
        if !peer.send(text) {
            return;
        }
    }
}
