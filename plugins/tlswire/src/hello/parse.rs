//! Reading the server's first flight: records reassembled into handshake messages, up to the
//! ServerHello (TLS 1.3) or ServerHelloDone (older versions, to collect the certificate
//! chain), or an alert. Malformed input is an `Invalid` answer, never a panic.

use tls_parser::{
    TlsMessageHandshake, parse_tls_handshake_msg_certificate, parse_tls_handshake_msg_server_hello,
    parse_tls_raw_record,
};

use super::{
    EXT_SUPPORTED_VERSIONS, HELLO_RETRY_REQUEST_RANDOM, MAX_FLIGHT, SSL3, TLS12, TLS13, cipher_name,
};

/// Largest TLS record allowed (RFC 8446 5.2, TLSCiphertext).
const MAX_RECORD_LEN: usize = (1 << 14) + 256;

/// What the server answered to our ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAnswer {
    /// ServerHello with the version the server chose (for 1.3: from the
    /// supported_versions extension), the cipher suite id and its IANA name
    /// if known, and the DER certificate chain from a Certificate message in
    /// the same flight (only for <= TLS 1.2; TLS 1.3 encrypts it).
    Hello {
        version: u16,
        cipher: u16,
        cipher_name: Option<String>,
        certificates: Vec<Vec<u8>>,
    },
    /// A TLS 1.3 HelloRetryRequest: proves TLS 1.3.
    HelloRetryRequest { cipher: u16 },
    /// The server refused with an alert.
    Alert { level: u8, description: u8 },
}

/// Result of [`parse_server_flight`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// Valid so far, but the answer is not complete: read more.
    NeedMore,
    Done(ServerAnswer),
    /// Not a TLS server answer (garbage, SSLv2, plaintext protocol, ...).
    Invalid(String),
}

struct HelloSeen {
    version: u16,
    cipher: u16,
    certificates: Vec<Vec<u8>>,
}

impl HelloSeen {
    fn into_answer(self) -> ServerAnswer {
        ServerAnswer::Hello {
            version: self.version,
            cipher: self.cipher,
            cipher_name: cipher_name(self.cipher),
            certificates: self.certificates,
        }
    }
}

enum Scan {
    Done(ServerAnswer),
    Invalid(String),
    /// Ran out of bytes; a ServerHello or a warning alert may have been seen.
    Partial(Option<HelloSeen>, Option<ServerAnswer>),
}

/// Parse the bytes received so far (all of them, from the first byte the
/// server sent). Incremental in the sense that it may be called again with
/// a longer buffer after [`Parse::NeedMore`].
///
/// Handles records split across reads, several handshake messages in one
/// record, and a handshake message split across records. For <= TLS 1.2 it
/// reads up to ServerHelloDone to collect the certificate chain; for TLS 1.3
/// it is done at the ServerHello.
pub fn parse_server_flight(buf: &[u8]) -> Parse {
    match scan(buf) {
        Scan::Done(a) => Parse::Done(a),
        Scan::Invalid(r) => Parse::Invalid(r),
        Scan::Partial(..) => Parse::NeedMore,
    }
}

/// For a caller whose connection ended or timed out before the flight was
/// complete: the ServerHello seen so far (with the certificates collected so
/// far), else the last warning alert received, if any.
pub(crate) fn hello_so_far(buf: &[u8]) -> Option<ServerAnswer> {
    match scan(buf) {
        Scan::Done(a) => Some(a),
        Scan::Partial(Some(h), _) => Some(h.into_answer()),
        Scan::Partial(None, warning) => warning,
        Scan::Invalid(_) => None,
    }
}

/// Check the bytes of a record header that are present, so that garbage is
/// reported as soon as possible instead of waiting for more bytes.
fn check_record_header(rest: &[u8]) -> Result<(), String> {
    let bad_type = rest.first().is_some_and(|t| !(20..=24).contains(t));
    let bad_major = rest.get(1).is_some_and(|&major| major != 3);
    if bad_type || bad_major {
        return Err(describe_garbage(rest));
    }
    if rest.len() >= 5 {
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        if len > MAX_RECORD_LEN {
            return Err(format!("TLS record too long ({len} bytes)"));
        }
    }
    Ok(())
}

fn describe_garbage(rest: &[u8]) -> String {
    let head: Vec<u8> = rest.iter().take(16).copied().collect();
    let printable = head
        .iter()
        .all(|&b| b == b'\r' || b == b'\n' || (0x20..0x7f).contains(&b));
    if rest[0] & 0x80 != 0 && rest.len() >= 3 && rest[2] == 4 {
        "not a TLS record: looks like an SSLv2 ServerHello".to_owned()
    } else if printable {
        let text = String::from_utf8_lossy(&head);
        format!("not a TLS record: plaintext answer {:?}", text.trim_end())
    } else {
        let hex: String = head.iter().map(|b| format!("{b:02x}")).collect();
        format!("not a TLS record: starts with {hex}")
    }
}

fn handshake_name(t: u8) -> String {
    match t {
        0 => "HelloRequest".into(),
        1 => "ClientHello".into(),
        2 => "ServerHello".into(),
        4 => "NewSessionTicket".into(),
        6 => "HelloRetryRequest".into(),
        8 => "EncryptedExtensions".into(),
        11 => "Certificate".into(),
        12 => "ServerKeyExchange".into(),
        13 => "CertificateRequest".into(),
        14 => "ServerHelloDone".into(),
        15 => "CertificateVerify".into(),
        20 => "Finished".into(),
        22 => "CertificateStatus".into(),
        t => format!("handshake message type {t}"),
    }
}

/// Walks the records received so far. Each record either ends the scan (an answer or a reason
/// the peer is not a TLS server) or is taken in, and the scan goes on to the next one.
fn scan(buf: &[u8]) -> Scan {
    let mut flight = Flight::default();
    let mut pos = 0usize;
    while pos < buf.len() {
        let rest = &buf[pos..];
        if let Err(e) = check_record_header(rest) {
            return Scan::Invalid(e);
        }
        let (after, record) = match parse_tls_raw_record(rest) {
            Ok(v) => v,
            Err(tls_parser::Err::Incomplete(_)) => break,
            Err(e) => return Scan::Invalid(format!("bad TLS record: {e:?}")),
        };
        pos = buf.len() - after.len();
        if let Some(end) = flight.record(record.hdr.record_type.0, record.data) {
            return end;
        }
    }
    if flight.seen.hello.is_none() && buf.len() > MAX_FLIGHT {
        return Scan::Invalid(format!("no ServerHello in the first {} bytes", buf.len()));
    }
    Scan::Partial(flight.seen.hello, flight.seen.warning)
}

/// The flight as read so far: the reassembled handshake stream (payloads of all handshake
/// records, since a message may span records and a record may hold several messages) and
/// what its messages have told.
#[derive(Default)]
struct Flight {
    stream: Vec<u8>,
    /// Where the first handshake message not yet read starts in `stream`.
    pos: usize,
    seen: Seen,
}

/// What the messages and alerts read so far have told.
#[derive(Default)]
struct Seen {
    hello: Option<HelloSeen>,
    /// Bytes of messages after the ServerHello, bounded by [`MAX_FLIGHT`].
    cert_bytes: usize,
    /// A warning alert received before the ServerHello.
    warning: Option<ServerAnswer>,
}

impl Flight {
    /// Takes in one record; `Some` ends the scan.
    fn record(&mut self, record_type: u8, data: &[u8]) -> Option<Scan> {
        match record_type {
            // change_cipher_spec, application_data: the plaintext part of
            // the flight is over.
            20 | 23 => Some(match self.seen.hello.take() {
                Some(h) => Scan::Done(h.into_answer()),
                None => Scan::Invalid(format!(
                    "{} record before ServerHello",
                    if record_type == 20 {
                        "ChangeCipherSpec"
                    } else {
                        "application data"
                    }
                )),
            }),
            21 => self.seen.alert(data),
            // heartbeat: ignore
            24 => None,
            22 => self.handshake(data),
            t => Some(Scan::Invalid(format!("unknown TLS record type {t}"))),
        }
    }

    /// Appends a handshake record to the stream and reads every message now complete.
    fn handshake(&mut self, data: &[u8]) -> Option<Scan> {
        self.stream.extend_from_slice(data);
        loop {
            let pending = &self.stream[self.pos..];
            if pending.len() < 4 {
                break;
            }
            let msg_type = pending[0];
            let msg_len = u32::from_be_bytes([0, pending[1], pending[2], pending[3]]) as usize;
            if msg_len > MAX_FLIGHT
                || (self.seen.hello.is_some() && self.seen.cert_bytes + msg_len > MAX_FLIGHT)
            {
                return Some(self.seen.too_big(msg_type, msg_len));
            }
            if pending.len() < 4 + msg_len {
                break;
            }
            let body = &pending[4..4 + msg_len];
            self.pos += 4 + msg_len;
            if let Some(end) = self.seen.message(msg_type, msg_len, body) {
                return Some(end);
            }
        }
        // Bound the buffering of partial handshake messages too.
        if self.seen.hello.is_some() && self.stream.len() - self.pos > MAX_FLIGHT {
            return self.seen.hello.take().map(|h| Scan::Done(h.into_answer()));
        }
        None
    }
}

impl Seen {
    /// An alert ends the scan, except a warning before the ServerHello: some servers send
    /// one (e.g. unrecognized_name) and go on.
    fn alert(&mut self, data: &[u8]) -> Option<Scan> {
        if let Some(h) = self.hello.take() {
            // The version was negotiated; report what we got.
            return Some(Scan::Done(h.into_answer()));
        }
        if data.len() < 2 {
            return Some(Scan::Invalid(format!(
                "alert record of {} bytes",
                data.len()
            )));
        }
        let alert = ServerAnswer::Alert {
            level: data[0],
            description: data[1],
        };
        if data[0] == 1 && data[1] != 0 {
            self.warning = Some(alert);
            return None;
        }
        Some(Scan::Done(alert))
    }

    /// A message too big to buffer: keep what we have.
    fn too_big(&mut self, msg_type: u8, msg_len: usize) -> Scan {
        match self.hello.take() {
            Some(h) => Scan::Done(h.into_answer()),
            None => Scan::Invalid(format!(
                "{} of {msg_len} bytes before ServerHello",
                handshake_name(msg_type)
            )),
        }
    }

    /// Takes in one complete handshake message; `Some` ends the scan.
    fn message(&mut self, msg_type: u8, msg_len: usize, body: &[u8]) -> Option<Scan> {
        match (msg_type, self.hello.is_some()) {
            (0, _) => None, // HelloRequest: ignore
            (2, false) => self.server_hello(body),
            (6, false) => Some(draft_retry_request(body)),
            (t, false) => Some(Scan::Invalid(format!(
                "{} before ServerHello",
                handshake_name(t)
            ))),
            (2, true) => Some(Scan::Invalid("second ServerHello".into())),
            (11, true) => self.certificate(msg_len, body),
            (14, true) => self.hello.take().map(|h| Scan::Done(h.into_answer())),
            (_, true) => {
                // ServerKeyExchange, CertificateRequest,
                // CertificateStatus, ...: not needed.
                self.cert_bytes += msg_len;
                None
            }
        }
    }

    /// The ServerHello: for TLS 1.3 (or a draft) the rest is encrypted, so it ends the scan;
    /// for older versions the certificates follow.
    fn server_hello(&mut self, body: &[u8]) -> Option<Scan> {
        match parse_server_hello(body) {
            Ok(ServerHelloKind::Retry(cipher)) => {
                Some(Scan::Done(ServerAnswer::HelloRetryRequest { cipher }))
            }
            Ok(ServerHelloKind::Hello { version, cipher }) => {
                let h = HelloSeen {
                    version,
                    cipher,
                    certificates: Vec::new(),
                };
                if version >= TLS13 {
                    return Some(Scan::Done(h.into_answer()));
                }
                self.hello = Some(h);
                None
            }
            Err(e) => Some(Scan::Invalid(e)),
        }
    }

    /// The Certificate message after the ServerHello: the chain a legacy server presents.
    fn certificate(&mut self, msg_len: usize, body: &[u8]) -> Option<Scan> {
        match parse_tls_handshake_msg_certificate(body) {
            Ok((_, TlsMessageHandshake::Certificate(c))) => {
                self.cert_bytes += msg_len;
                if let Some(h) = self.hello.as_mut() {
                    h.certificates = c.cert_chain.iter().map(|c| c.data.to_vec()).collect();
                }
                None
            }
            Ok(_) | Err(_) => Some(Scan::Invalid("malformed Certificate message".into())),
        }
    }
}

/// The draft-era HelloRetryRequest message type (6): proves TLS 1.3 all the same.
fn draft_retry_request(body: &[u8]) -> Scan {
    if body.len() < 4 {
        return Scan::Invalid("short HelloRetryRequest".into());
    }
    let cipher = u16::from_be_bytes([body[2], body[3]]);
    Scan::Done(ServerAnswer::HelloRetryRequest { cipher })
}

enum ServerHelloKind {
    Hello { version: u16, cipher: u16 },
    Retry(u16),
}

fn parse_server_hello(body: &[u8]) -> Result<ServerHelloKind, String> {
    let sh = match parse_tls_handshake_msg_server_hello(body) {
        Ok((_, TlsMessageHandshake::ServerHello(sh))) => sh,
        Ok((_, TlsMessageHandshake::ServerHelloV13Draft18(sh))) => {
            return Ok(ServerHelloKind::Hello {
                version: sh.version.0,
                cipher: sh.cipher.0,
            });
        }
        Ok(_) => return Err("malformed ServerHello".into()),
        Err(_) => {
            let v = body.get(..2).map(|v| u16::from_be_bytes([v[0], v[1]]));
            return Err(match v {
                Some(v) if !matches!(v, SSL3..=TLS12) => {
                    format!("ServerHello with unknown version 0x{v:04x}")
                }
                _ => "malformed ServerHello".into(),
            });
        }
    };
    let cipher = sh.cipher.0;
    if sh.random == HELLO_RETRY_REQUEST_RANDOM {
        return Ok(ServerHelloKind::Retry(cipher));
    }
    let selected = selected_version(sh.ext.unwrap_or(&[]))?;
    Ok(ServerHelloKind::Hello {
        version: selected.unwrap_or(sh.version.0),
        cipher,
    })
}

/// The version a ServerHello's supported_versions extension selected, if it has one. The
/// extensions are walked by hand rather than with tls-parser's per-extension parsers, which
/// reject some content that real servers send; only supported_versions matters here.
fn selected_version(mut ext: &[u8]) -> Result<Option<u16>, String> {
    let mut selected: Option<u16> = None;
    while !ext.is_empty() {
        if ext.len() < 4 {
            return Err("malformed ServerHello extensions".into());
        }
        let ext_type = u16::from_be_bytes([ext[0], ext[1]]);
        let len = u16::from_be_bytes([ext[2], ext[3]]) as usize;
        let Some(data) = ext.get(4..4 + len) else {
            return Err("malformed ServerHello extensions".into());
        };
        if ext_type == EXT_SUPPORTED_VERSIONS {
            match data {
                [a, b] => selected = Some(u16::from_be_bytes([*a, *b])),
                _ => return Err("malformed supported_versions in ServerHello".into()),
            }
        }
        ext = &ext[4 + len..];
    }
    Ok(selected)
}
