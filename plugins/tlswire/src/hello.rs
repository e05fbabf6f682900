//! Raw TLS ClientHello builder and server-flight parser (pure codec, no I/O).
//!
//! rustls only speaks TLS 1.2 and 1.3, so to learn which protocol versions a
//! server accepts (SSLv3 .. TLS 1.3) we send our own ClientHello offering exactly
//! one version and read the server's first flight, the way sslscan and
//! testssl.sh do. We never finish the handshake.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use tls_parser::{
    TlsCipherSuite, TlsMessageHandshake, parse_tls_handshake_msg_certificate,
    parse_tls_handshake_msg_server_hello, parse_tls_raw_record,
};

pub const SSL3: u16 = 0x0300;
pub const TLS10: u16 = 0x0301;
pub const TLS11: u16 = 0x0302;
pub const TLS12: u16 = 0x0303;
pub const TLS13: u16 = 0x0304;

/// How many handshake bytes (after the ServerHello) we are willing to buffer
/// to collect the certificate chain. Past this we stop collecting
/// certificates and return the ServerHello we have.
pub const MAX_FLIGHT: usize = 64 * 1024;

/// Largest TLS record allowed (RFC 8446 5.2, TLSCiphertext).
const MAX_RECORD_LEN: usize = (1 << 14) + 256;

/// `random` of a HelloRetryRequest: SHA-256("HelloRetryRequest"), RFC 8446 4.1.3.
pub const HELLO_RETRY_REQUEST_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Human name of a protocol version ("SSLv3", "TLS 1.2", or "0x7f12").
pub fn version_name(version: u16) -> String {
    match version {
        SSL3 => "SSLv3".to_owned(),
        TLS10 => "TLS 1.0".to_owned(),
        TLS11 => "TLS 1.1".to_owned(),
        TLS12 => "TLS 1.2".to_owned(),
        TLS13 => "TLS 1.3".to_owned(),
        0x0002 => "SSLv2".to_owned(),
        v => format!("0x{v:04x}"),
    }
}

/// IANA name of a cipher suite, if tls-parser knows it.
pub fn cipher_name(id: u16) -> Option<String> {
    TlsCipherSuite::from_id(id).map(|c| c.name.to_owned())
}

/// IANA name of an alert description (`handshake_failure`, `protocol_version`, ...).
pub fn alert_name(description: u8) -> Option<&'static str> {
    Some(match description {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        21 => "decryption_failed",
        22 => "record_overflow",
        30 => "decompression_failure",
        40 => "handshake_failure",
        41 => "no_certificate",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        60 => "export_restriction",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        100 => "no_renegotiation",
        109 => "missing_extension",
        110 => "unsupported_extension",
        111 => "certificate_unobtainable",
        112 => "unrecognized_name",
        113 => "bad_certificate_status_response",
        114 => "bad_certificate_hash_value",
        115 => "unknown_psk_identity",
        116 => "certificate_required",
        120 => "no_application_protocol",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// ClientHello
// ---------------------------------------------------------------------------

/// TLS 1.3 suites (only offered in the TLS 1.3 probe).
const TLS13_SUITES: &[u16] = &[
    0x1301, // TLS_AES_128_GCM_SHA256
    0x1302, // TLS_AES_256_GCM_SHA384
    0x1303, // TLS_CHACHA20_POLY1305_SHA256
    0x1304, // TLS_AES_128_CCM_SHA256
    0x1305, // TLS_AES_128_CCM_8_SHA256
];

/// Broad list of TLS <= 1.2 suites, modern first, then the old RSA / 3DES /
/// RC4 / CBC / export / anonymous / NULL suites that legacy servers (or
/// OpenSSL with `@SECLEVEL=0`) may be limited to. Servers that follow the
/// client's order pick a strong one when they can.
const LEGACY_SUITES: &[u16] = &[
    // ECDHE AEAD
    0xc02c, 0xc030, 0xc02b, 0xc02f, 0xcca9, 0xcca8, 0xc0ad, 0xc0ac, 0xc09f, 0xc09e,
    // DHE AEAD
    0x009f, 0x009e, 0xccaa, 0x00a3, 0x00a2, 0xc09d, 0xc09c, // ECDHE CBC
    0xc024, 0xc028, 0xc023, 0xc027, 0xc00a, 0xc014, 0xc009, 0xc013, 0xc073, 0xc077, 0xc072, 0xc076,
    // DHE CBC
    0x006b, 0x006a, 0x0067, 0x0040, 0x0039, 0x0038, 0x0033, 0x0032, 0x0088, 0x0087, 0x0045, 0x0044,
    0x009a, 0x0099, // RSA key exchange
    0x009d, 0x009c, 0x003d, 0x003c, 0x0035, 0x002f, 0x0084, 0x0041, 0x0096, 0x0007,
    // static ECDH
    0xc032, 0xc02e, 0xc02a, 0xc026, 0xc00f, 0xc005, 0xc031, 0xc02d, 0xc029, 0xc025, 0xc00e, 0xc004,
    // 3DES
    0xc008, 0xc012, 0x0016, 0x0013, 0x000a, 0xc003, 0xc00d, // RC4
    0xc007, 0xc011, 0x0005, 0x0004, 0xc002, 0xc00c, // single DES and export
    0x0015, 0x0012, 0x0009, 0x0014, 0x0011, 0x0008, 0x0006, 0x0003, 0x0064, 0x0062,
    // anonymous
    0xc019, 0xc018, 0x00a7, 0x00a6, 0x006d, 0x006c, 0x003a, 0x0034, 0x001b, 0x0018, 0x0017,
    // NULL encryption
    0xc010, 0xc006, 0x003b, 0x0002, 0x0001,
];

/// Signalling suite for secure renegotiation (RFC 5746), used for SSLv3,
/// which carries no extensions.
const EMPTY_RENEGOTIATION_INFO_SCSV: u16 = 0x00ff;

/// supported_groups: x25519, secp256r1, secp384r1, secp521r1, x448, ffdhe*,
/// then older curves some legacy servers are limited to.
const GROUPS: &[u16] = &[
    0x001d, 0x0017, 0x0018, 0x0019, 0x001e, 0x0100, 0x0101, 0x0102, 0x0016, 0x001a, 0x001b, 0x001c,
    0x0015, 0x0013, 0x000e, 0x000d, 0x000b, 0x000c, 0x0009, 0x000a,
];

/// signature_algorithms: TLS 1.3 schemes first, then the TLS 1.2 pairs incl. SHA-1/SHA-224/DSA.
const SIG_ALGS: &[u16] = &[
    0x0403, 0x0503, 0x0603, 0x0807, 0x0808, 0x0804, 0x0805, 0x0806, 0x0809, 0x080a, 0x080b, 0x081a,
    0x081b, 0x081c, 0x0401, 0x0501, 0x0601, 0x0303, 0x0301, 0x0302, 0x0203, 0x0201, 0x0202, 0x0402,
    0x0502, 0x0602,
];

const EXT_SERVER_NAME: u16 = 0x0000;
const EXT_SUPPORTED_GROUPS: u16 = 0x000a;
const EXT_EC_POINT_FORMATS: u16 = 0x000b;
const EXT_SIGNATURE_ALGORITHMS: u16 = 0x000d;
const EXT_PADDING: u16 = 0x0015;
const EXT_EXTENDED_MASTER_SECRET: u16 = 0x0017;
const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;
const EXT_PSK_KEY_EXCHANGE_MODES: u16 = 0x002d;
const EXT_KEY_SHARE: u16 = 0x0033;
const EXT_RENEGOTIATION_INFO: u16 = 0xff01;
const GROUP_X25519: u16 = 0x001d;

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u24(out: &mut Vec<u8>, v: usize) {
    debug_assert!(v < 1 << 24);
    out.extend_from_slice(&(v as u32).to_be_bytes()[1..]);
}

fn put_ext(out: &mut Vec<u8>, ext_type: u16, data: &[u8]) {
    put_u16(out, ext_type);
    put_u16(out, data.len() as u16);
    out.extend_from_slice(data);
}

fn u16_list(prefix_len_bytes: usize, items: &[u16]) -> Vec<u8> {
    let mut v = Vec::with_capacity(prefix_len_bytes + 2 * items.len());
    let len = 2 * items.len();
    if prefix_len_bytes == 1 {
        v.push(len as u8);
    } else {
        put_u16(&mut v, len as u16);
    }
    for &i in items {
        put_u16(&mut v, i);
    }
    v
}

/// Random-looking bytes without an extra dependency: SipHash with the
/// per-process random keys of `RandomState`, a counter and the clock. Not
/// for secrets; we never complete a handshake.
fn random_bytes(out: &mut [u8]) {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let state = RandomState::new();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    for chunk in out.chunks_mut(8) {
        let mut h = state.build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u128(nanos);
        chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
    }
}

/// SNI host name to send: a DNS name, not an IP literal (RFC 6066 section 3),
/// without a trailing dot.
fn sni_host(server_name: Option<&str>) -> Option<&str> {
    let name = server_name?.trim_end_matches('.');
    if name.is_empty()
        || name.len() > 253
        || name.parse::<std::net::IpAddr>().is_ok()
        || name.starts_with('[')
    {
        return None;
    }
    Some(name)
}

/// Build one complete TLS record holding a ClientHello that offers exactly
/// `version` (one of [`SSL3`], [`TLS10`], [`TLS11`], [`TLS12`], [`TLS13`]).
///
/// - record-layer version 0x0301 (0x0300 for SSLv3);
/// - for <= TLS 1.2: client_version = `version`, no supported_versions
///   extension (so a TLS 1.3 server answers with a legacy version);
/// - for TLS 1.3: legacy_version 0x0303, supported_versions = [0x0304] only,
///   an x25519 key_share and psk_key_exchange_modes;
/// - SSLv3: no extensions at all, renegotiation SCSV instead;
/// - padded (RFC 7685) out of the 256..=511 byte range that hangs some
///   old F5 load balancers.
pub fn client_hello(version: u16, server_name: Option<&str>) -> Vec<u8> {
    let is13 = version >= TLS13;
    let ssl3 = version <= SSL3;

    let mut body = Vec::with_capacity(600);
    put_u16(&mut body, if is13 { TLS12 } else { version });
    let mut random = [0u8; 32];
    random_bytes(&mut random);
    body.extend_from_slice(&random);
    if is13 {
        // "Middlebox compatibility mode" session id, as browsers send.
        let mut sid = [0u8; 32];
        random_bytes(&mut sid);
        body.push(32);
        body.extend_from_slice(&sid);
    } else {
        body.push(0);
    }

    let mut suites: Vec<u16> = Vec::new();
    if is13 {
        suites.extend_from_slice(TLS13_SUITES);
    }
    suites.extend_from_slice(LEGACY_SUITES);
    if ssl3 {
        suites.push(EMPTY_RENEGOTIATION_INFO_SCSV);
    }
    body.extend_from_slice(&u16_list(2, &suites));
    body.extend_from_slice(&[1, 0]); // compression: null only

    if !ssl3 {
        let mut ext = Vec::with_capacity(300);
        if let Some(host) = sni_host(server_name) {
            let mut d = Vec::with_capacity(host.len() + 5);
            put_u16(&mut d, (host.len() + 3) as u16);
            d.push(0); // host_name
            put_u16(&mut d, host.len() as u16);
            d.extend_from_slice(host.as_bytes());
            put_ext(&mut ext, EXT_SERVER_NAME, &d);
        }
        put_ext(&mut ext, EXT_SUPPORTED_GROUPS, &u16_list(2, GROUPS));
        put_ext(&mut ext, EXT_EC_POINT_FORMATS, &[1, 0]); // uncompressed
        if version >= TLS12 {
            put_ext(&mut ext, EXT_SIGNATURE_ALGORITHMS, &u16_list(2, SIG_ALGS));
        }
        put_ext(&mut ext, EXT_EXTENDED_MASTER_SECRET, &[]);
        put_ext(&mut ext, EXT_RENEGOTIATION_INFO, &[0]);
        if is13 {
            put_ext(&mut ext, EXT_SUPPORTED_VERSIONS, &u16_list(1, &[TLS13]));
            let mut key = [0u8; 32];
            random_bytes(&mut key);
            key[31] &= 0x7f; // canonical u-coordinate (RFC 7748 5)
            let mut d = Vec::with_capacity(38);
            put_u16(&mut d, 36);
            put_u16(&mut d, GROUP_X25519);
            put_u16(&mut d, 32);
            d.extend_from_slice(&key);
            put_ext(&mut ext, EXT_KEY_SHARE, &d);
            put_ext(&mut ext, EXT_PSK_KEY_EXCHANGE_MODES, &[1, 1]); // psk_dhe_ke
        }
        // Handshake message length so far: header 4 + body + ext length 2 + ext.
        let len = 4 + body.len() + 2 + ext.len();
        if (256..512).contains(&len) {
            let pad = (512 - len).saturating_sub(4);
            put_ext(&mut ext, EXT_PADDING, &vec![0u8; pad]);
        }
        put_u16(&mut body, ext.len() as u16);
        body.extend_from_slice(&ext);
    }

    let mut out = Vec::with_capacity(body.len() + 9);
    out.push(0x16);
    put_u16(&mut out, if ssl3 { SSL3 } else { TLS10 });
    put_u16(&mut out, (body.len() + 4) as u16);
    out.push(1); // client_hello
    put_u24(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

// ---------------------------------------------------------------------------
// Server flight
// ---------------------------------------------------------------------------

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

fn scan(buf: &[u8]) -> Scan {
    let mut pos = 0usize;
    // Reassembled handshake stream (payloads of all handshake records).
    let mut hs: Vec<u8> = Vec::new();
    let mut hs_pos = 0usize;
    let mut hello: Option<HelloSeen> = None;
    let mut cert_bytes = 0usize;
    let mut warning: Option<ServerAnswer> = None;

    loop {
        let rest = &buf[pos..];
        if rest.is_empty() {
            break;
        }
        if let Err(e) = check_record_header(rest) {
            return Scan::Invalid(e);
        }
        let (after, record) = match parse_tls_raw_record(rest) {
            Ok(v) => v,
            Err(tls_parser::Err::Incomplete(_)) => break,
            Err(e) => return Scan::Invalid(format!("bad TLS record: {e:?}")),
        };
        pos = buf.len() - after.len();

        match record.hdr.record_type.0 {
            // change_cipher_spec, application_data: the plaintext part of
            // the flight is over.
            20 | 23 => {
                return match hello {
                    Some(h) => Scan::Done(h.into_answer()),
                    None => Scan::Invalid(format!(
                        "{} record before ServerHello",
                        if record.hdr.record_type.0 == 20 {
                            "ChangeCipherSpec"
                        } else {
                            "application data"
                        }
                    )),
                };
            }
            // alert
            21 => {
                if let Some(h) = hello {
                    // The version was negotiated; report what we got.
                    return Scan::Done(h.into_answer());
                }
                if record.data.len() < 2 {
                    return Scan::Invalid(format!("alert record of {} bytes", record.data.len()));
                }
                let alert = ServerAnswer::Alert {
                    level: record.data[0],
                    description: record.data[1],
                };
                // Some servers send a warning (e.g. unrecognized_name)
                // before their ServerHello and go on: keep reading.
                if record.data[0] == 1 && record.data[1] != 0 {
                    warning = Some(alert);
                    continue;
                }
                return Scan::Done(alert);
            }
            // heartbeat: ignore
            24 => continue,
            // handshake
            22 => {
                hs.extend_from_slice(record.data);
                loop {
                    let pending = &hs[hs_pos..];
                    if pending.len() < 4 {
                        break;
                    }
                    let msg_type = pending[0];
                    let msg_len =
                        u32::from_be_bytes([0, pending[1], pending[2], pending[3]]) as usize;
                    if msg_len > MAX_FLIGHT
                        || (hello.is_some() && cert_bytes + msg_len > MAX_FLIGHT)
                    {
                        // Too big to buffer: keep what we have.
                        return match hello {
                            Some(h) => Scan::Done(h.into_answer()),
                            None => Scan::Invalid(format!(
                                "{} of {msg_len} bytes before ServerHello",
                                handshake_name(msg_type)
                            )),
                        };
                    }
                    if pending.len() < 4 + msg_len {
                        break;
                    }
                    let body = &pending[4..4 + msg_len];
                    hs_pos += 4 + msg_len;
                    match (msg_type, hello.as_mut()) {
                        (0, _) => {} // HelloRequest: ignore
                        (2, None) => match parse_server_hello(body) {
                            Ok(ServerHelloKind::Retry(cipher)) => {
                                return Scan::Done(ServerAnswer::HelloRetryRequest { cipher });
                            }
                            Ok(ServerHelloKind::Hello { version, cipher }) => {
                                let h = HelloSeen {
                                    version,
                                    cipher,
                                    certificates: Vec::new(),
                                };
                                if version >= TLS13 {
                                    // TLS 1.3 (or a draft): the rest is encrypted.
                                    return Scan::Done(h.into_answer());
                                }
                                hello = Some(h);
                            }
                            Err(e) => return Scan::Invalid(e),
                        },
                        (6, None) => {
                            // Draft-era HelloRetryRequest message type.
                            if body.len() < 4 {
                                return Scan::Invalid("short HelloRetryRequest".into());
                            }
                            let cipher = u16::from_be_bytes([body[2], body[3]]);
                            return Scan::Done(ServerAnswer::HelloRetryRequest { cipher });
                        }
                        (t, None) => {
                            return Scan::Invalid(format!(
                                "{} before ServerHello",
                                handshake_name(t)
                            ));
                        }
                        (2, Some(_)) => return Scan::Invalid("second ServerHello".into()),
                        (11, Some(h)) => match parse_tls_handshake_msg_certificate(body) {
                            Ok((_, TlsMessageHandshake::Certificate(c))) => {
                                cert_bytes += msg_len;
                                h.certificates =
                                    c.cert_chain.iter().map(|c| c.data.to_vec()).collect();
                            }
                            Ok(_) | Err(_) => {
                                return Scan::Invalid("malformed Certificate message".into());
                            }
                        },
                        (14, Some(_)) => {
                            return Scan::Done(hello.take().expect("hello is set").into_answer());
                        }
                        (_, Some(_)) => {
                            // ServerKeyExchange, CertificateRequest,
                            // CertificateStatus, ...: not needed.
                            cert_bytes += msg_len;
                        }
                    }
                }
                // Bound the buffering of partial handshake messages too.
                if hello.is_some() && hs.len() - hs_pos > MAX_FLIGHT {
                    return Scan::Done(hello.take().expect("hello is set").into_answer());
                }
            }
            t => return Scan::Invalid(format!("unknown TLS record type {t}")),
        }
    }
    if hello.is_none() && buf.len() > MAX_FLIGHT {
        return Scan::Invalid(format!("no ServerHello in the first {} bytes", buf.len()));
    }
    Scan::Partial(hello, warning)
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
    // Walk the extensions by hand rather than with tls-parser's
    // per-extension parsers, which reject some content that real servers
    // send; only supported_versions matters here.
    let mut selected: Option<u16> = None;
    let mut ext = sh.ext.unwrap_or(&[]);
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
    Ok(ServerHelloKind::Hello {
        version: selected.unwrap_or(sh.version.0),
        cipher,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tls_parser::{
        Serialize, TlsExtension, TlsMessage, TlsRecordType, TlsServerHelloContents,
        parse_tls_client_hello_extensions, parse_tls_plaintext,
    };

    // Captured from `openssl s_server` (OpenSSL 3.0) answering our own
    // ClientHellos; regenerate with the ignored `capture_fixtures` test in
    // tests/openssl_server.rs.
    const TLS12_FLIGHT: &str = include_str!("../tests/fixtures/openssl_tls12_flight.hex");
    const TLS10_FLIGHT: &str = include_str!("../tests/fixtures/openssl_tls10_flight.hex");
    const TLS13_FLIGHT: &str = include_str!("../tests/fixtures/openssl_tls13_flight.hex");
    const HRR: &str = include_str!("../tests/fixtures/openssl_hrr.hex");
    const ALERT: &str = include_str!("../tests/fixtures/openssl_alert_tls11_on_tls12_only.hex");
    const CERT_DER: &str = include_str!("../tests/fixtures/openssl_cert.der.hex");

    fn unhex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    fn done(buf: &[u8]) -> ServerAnswer {
        match parse_server_flight(buf) {
            Parse::Done(a) => a,
            other => panic!("expected Done, got {other:?}"),
        }
    }

    fn record(t: u8, version: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![t];
        v.extend_from_slice(&version.to_be_bytes());
        v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn handshake(t: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![t];
        put_u24(&mut v, body.len());
        v.extend_from_slice(body);
        v
    }

    /// A ServerHello handshake message built with tls-parser's serializer.
    fn server_hello(version: u16, random: &[u8; 32], cipher: u16, ext: Option<&[u8]>) -> Vec<u8> {
        let sh = TlsServerHelloContents::new(version, random, None, cipher, 0, ext);
        TlsMessage::Handshake(TlsMessageHandshake::ServerHello(sh))
            .serialize()
            .unwrap()
    }

    fn certificate_msg(certs: &[&[u8]]) -> Vec<u8> {
        let mut list = Vec::new();
        for c in certs {
            put_u24(&mut list, c.len());
            list.extend_from_slice(c);
        }
        let mut body = Vec::new();
        put_u24(&mut body, list.len());
        body.extend_from_slice(&list);
        handshake(11, &body)
    }

    /// Handshake payload of all handshake records in `flight`, plus the
    /// bytes after the handshake records (CCS, encrypted...).
    fn handshake_stream(flight: &[u8]) -> Vec<u8> {
        let mut rest = flight;
        let mut hs = Vec::new();
        while !rest.is_empty() {
            let (after, rec) = parse_tls_raw_record(rest).unwrap();
            if rec.hdr.record_type == TlsRecordType::Handshake {
                hs.extend_from_slice(rec.data);
            }
            rest = after;
        }
        hs
    }

    fn rerecord(hs: &[u8], fragment: usize) -> Vec<u8> {
        hs.chunks(fragment)
            .flat_map(|c| record(22, TLS12, c))
            .collect()
    }

    // ----- ClientHello --------------------------------------------------

    #[test]
    fn client_hello_round_trips_through_tls_parser() {
        for version in [SSL3, TLS10, TLS11, TLS12, TLS13] {
            let ch = client_hello(version, Some("mail.lab.test"));
            let (rest, rec) = parse_tls_plaintext(&ch).expect("record parses");
            assert!(rest.is_empty(), "one record, nothing after it");
            assert_eq!(rec.hdr.record_type, TlsRecordType::Handshake);
            assert_eq!(
                rec.hdr.version.0,
                if version == SSL3 { SSL3 } else { TLS10 }
            );
            assert_eq!(rec.msg.len(), 1);
            let TlsMessage::Handshake(TlsMessageHandshake::ClientHello(h)) = &rec.msg[0] else {
                panic!("not a ClientHello: {:?}", rec.msg[0]);
            };
            let legacy = if version == TLS13 { TLS12 } else { version };
            assert_eq!(h.version.0, legacy);
            assert_eq!(h.random.len(), 32);
            assert_eq!(h.comp.len(), 1);
            let ids: Vec<u16> = h.ciphers.iter().map(|c| c.0).collect();
            // Old suites that TLS 1.0/1.1 servers at @SECLEVEL=0 pick.
            for old in [0x002f, 0x0035, 0x000a, 0x0005, 0xc013, 0xc014, 0x0033] {
                assert!(ids.contains(&old), "{old:04x} offered for {version:04x}");
            }
            assert!(ids.contains(&0xc02f) && ids.contains(&0xc030));
            let tls13_suites = ids
                .iter()
                .filter(|&&c| (0x1301..=0x1303).contains(&c))
                .count();
            assert_eq!(tls13_suites, if version == TLS13 { 3 } else { 0 });
            assert!(!ids.contains(&0x5600), "never TLS_FALLBACK_SCSV");
            assert_eq!(
                ids.contains(&EMPTY_RENEGOTIATION_INFO_SCSV),
                version == SSL3
            );

            // Handshake message outside the 256..=511 F5 range.
            let hs_len = ch.len() - 5;
            assert!(!(256..512).contains(&hs_len), "{version:04x}: {hs_len}");

            if version == SSL3 {
                assert!(h.ext.is_none(), "no extensions for SSLv3");
                continue;
            }
            let (rest, exts) = parse_tls_client_hello_extensions(h.ext.unwrap()).unwrap();
            assert!(rest.is_empty());
            let has = |f: &dyn Fn(&TlsExtension) -> bool| exts.iter().any(f);
            let sni: Vec<&[u8]> = exts
                .iter()
                .filter_map(|e| match e {
                    TlsExtension::SNI(names) => Some(names[0].1),
                    _ => None,
                })
                .collect();
            assert_eq!(sni, vec![b"mail.lab.test".as_slice()]);
            assert!(has(
                &|e| matches!(e, TlsExtension::EllipticCurves(g) if g[0].0 == 0x001d
                && g.iter().any(|g| g.0 == 0x0017) && g.iter().any(|g| g.0 == 0x0018))
            ));
            assert!(has(&|e| matches!(e, TlsExtension::EcPointFormats(_))));
            assert!(has(
                &|e| matches!(e, TlsExtension::RenegotiationInfo(r) if r.is_empty())
            ));
            assert_eq!(
                has(&|e| matches!(e, TlsExtension::SignatureAlgorithms(_))),
                version >= TLS12
            );
            let versions: Vec<Vec<u16>> = exts
                .iter()
                .filter_map(|e| match e {
                    TlsExtension::SupportedVersions(v) => Some(v.iter().map(|v| v.0).collect()),
                    _ => None,
                })
                .collect();
            if version == TLS13 {
                assert_eq!(versions, vec![vec![TLS13]], "only 0x0304 offered");
                assert_eq!(h.session_id.map(<[u8]>::len), Some(32));
                let share = exts
                    .iter()
                    .find_map(|e| match e {
                        TlsExtension::KeyShare(k) => Some(*k),
                        _ => None,
                    })
                    .expect("key_share");
                // client_shares<..>: one x25519 entry of 32 bytes.
                assert_eq!(&share[..6], &[0, 36, 0, 0x1d, 0, 32]);
                assert_eq!(share.len(), 38);
                assert!(has(
                    &|e| matches!(e, TlsExtension::PskExchangeModes(m) if m == &[1])
                ));
            } else {
                assert!(
                    versions.is_empty(),
                    "no supported_versions for {version:04x}"
                );
                assert!(!has(&|e| matches!(e, TlsExtension::KeyShare(_))));
            }
        }
    }

    fn sni_of(ch: &[u8]) -> Option<Vec<u8>> {
        let (_, rec) = parse_tls_plaintext(ch).unwrap();
        let TlsMessage::Handshake(TlsMessageHandshake::ClientHello(h)) = &rec.msg[0] else {
            panic!("not a ClientHello")
        };
        let (_, exts) = parse_tls_client_hello_extensions(h.ext.unwrap()).unwrap();
        exts.iter().find_map(|e| match e {
            TlsExtension::SNI(names) => Some(names[0].1.to_vec()),
            _ => None,
        })
    }

    #[test]
    fn client_hello_without_sni_for_ip_or_none() {
        for name in [None, Some("192.0.2.1"), Some("2001:db8::1"), Some("")] {
            assert_eq!(sni_of(&client_hello(TLS12, name)), None, "{name:?}");
        }
        // A trailing dot is dropped.
        assert_eq!(
            sni_of(&client_hello(TLS11, Some("mail.lab.test."))),
            Some(b"mail.lab.test".to_vec())
        );
    }

    #[test]
    fn client_randoms_differ() {
        let a = client_hello(TLS13, None);
        let b = client_hello(TLS13, None);
        assert_eq!(a.len(), b.len());
        assert_ne!(a[11..43], b[11..43], "client random");
        assert_ne!(a[..], b[..]);
    }

    // ----- captured server flights ----------------------------------------

    #[test]
    fn openssl_tls12_flight_with_certificate() {
        let der = unhex(CERT_DER);
        match done(&unhex(TLS12_FLIGHT)) {
            ServerAnswer::Hello {
                version,
                cipher,
                cipher_name,
                certificates,
            } => {
                assert_eq!(version, TLS12);
                assert_eq!(cipher_name, super::cipher_name(cipher));
                assert!(cipher_name.unwrap().starts_with("TLS_ECDHE_RSA_"));
                assert_eq!(certificates, vec![der]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn openssl_tls10_flight_with_certificate() {
        match done(&unhex(TLS10_FLIGHT)) {
            ServerAnswer::Hello {
                version,
                cipher_name,
                certificates,
                ..
            } => {
                assert_eq!(version, TLS10);
                assert!(cipher_name.is_some());
                assert_eq!(certificates, vec![unhex(CERT_DER)]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn openssl_tls13_flight() {
        match done(&unhex(TLS13_FLIGHT)) {
            ServerAnswer::Hello {
                version,
                cipher_name,
                certificates,
                ..
            } => {
                assert_eq!(version, TLS13);
                assert!(cipher_name.unwrap().starts_with("TLS_"));
                assert!(certificates.is_empty(), "encrypted in TLS 1.3");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn openssl_hello_retry_request() {
        assert!(matches!(
            done(&unhex(HRR)),
            ServerAnswer::HelloRetryRequest {
                cipher: 0x1301..=0x1303
            }
        ));
    }

    #[test]
    fn openssl_protocol_version_alert() {
        assert_eq!(
            done(&unhex(ALERT)),
            ServerAnswer::Alert {
                level: 2,
                description: 70
            }
        );
        assert_eq!(alert_name(70), Some("protocol_version"));
    }

    #[test]
    fn every_cut_point_needs_more_never_panics() {
        for (name, hex) in [
            ("tls12", TLS12_FLIGHT),
            ("tls10", TLS10_FLIGHT),
            ("tls13", TLS13_FLIGHT),
            ("hrr", HRR),
            ("alert", ALERT),
        ] {
            let full = unhex(hex);
            let answer = done(&full);
            let first_record_len = 5 + u16::from_be_bytes([full[3], full[4]]) as usize;
            for cut in 0..full.len() {
                match parse_server_flight(&full[..cut]) {
                    Parse::NeedMore => {}
                    // TLS 1.3 is settled by the ServerHello record alone.
                    Parse::Done(a)
                        if (name == "tls13" || name == "hrr") && cut >= first_record_len =>
                    {
                        assert_eq!(a, answer)
                    }
                    other => panic!("{name} cut at {cut}/{}: {other:?}", full.len()),
                }
            }
            // A <= 1.2 flight is only done at ServerHelloDone.
            if name == "tls12" || name == "tls10" {
                assert!(matches!(
                    parse_server_flight(&full[..full.len() - 1]),
                    Parse::NeedMore
                ));
                assert!(hello_so_far(&full[..full.len() - 1]).is_some());
            }
        }
    }

    #[test]
    fn handshake_messages_split_across_records_and_merged() {
        for hex in [TLS12_FLIGHT, TLS10_FLIGHT] {
            let full = unhex(hex);
            let answer = done(&full);
            let hs = handshake_stream(&full);
            // All messages in one record.
            assert_eq!(done(&record(22, TLS12, &hs)), answer);
            // Every message split over many small records, cut at every byte.
            for frag in [1, 3, 7, 100, 1000] {
                let split = rerecord(&hs, frag);
                assert_eq!(done(&split), answer, "fragment {frag}");
            }
            let split = rerecord(&hs, 5);
            for cut in (0..split.len()).step_by(7) {
                assert_eq!(parse_server_flight(&split[..cut]), Parse::NeedMore);
            }
        }
    }

    // ----- answers built with tls-parser's serializer --------------------

    #[test]
    fn serialized_tls13_server_hello_and_hrr() {
        // supported_versions = 0x0304, key_share x25519 (dummy).
        let mut ext = vec![0x00, 0x2b, 0x00, 0x02, 0x03, 0x04];
        ext.extend_from_slice(&[0x00, 0x33, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20]);
        ext.extend_from_slice(&[9u8; 32]);
        let sh = server_hello(TLS12, &[1u8; 32], 0x1302, Some(&ext));
        assert_eq!(
            done(&record(22, TLS12, &sh)),
            ServerAnswer::Hello {
                version: TLS13,
                cipher: 0x1302,
                cipher_name: Some("TLS_AES_256_GCM_SHA384".into()),
                certificates: vec![],
            }
        );
        let hrr_ext = [
            0x00, 0x2b, 0x00, 0x02, 0x03, 0x04, 0x00, 0x33, 0x00, 0x02, 0x00, 0x17,
        ];
        let hrr = server_hello(TLS12, &HELLO_RETRY_REQUEST_RANDOM, 0x1301, Some(&hrr_ext));
        assert_eq!(
            done(&record(22, TLS12, &hrr)),
            ServerAnswer::HelloRetryRequest { cipher: 0x1301 }
        );
    }

    #[test]
    fn serialized_ssl3_flight() {
        // SSLv3 cannot be tested live (OpenSSL 3 has no SSLv3).
        let mut hs = server_hello(SSL3, &[2u8; 32], 0x000a, None);
        hs.truncate(hs.len() - 2); // SSLv3 ServerHello: no extensions block
        let fix = hs.len() - 4;
        hs[1..4].copy_from_slice(&(fix as u32).to_be_bytes()[1..]);
        hs.extend_from_slice(&certificate_msg(&[b"\x30\x03\x02\x01\x00", b"\x30\x00"]));
        hs.extend_from_slice(&handshake(14, &[]));
        let flight = record(22, SSL3, &hs);
        assert_eq!(
            done(&flight),
            ServerAnswer::Hello {
                version: SSL3,
                cipher: 0x000a,
                cipher_name: Some("TLS_RSA_WITH_3DES_EDE_CBC_SHA".into()),
                certificates: vec![b"\x30\x03\x02\x01\x00".to_vec(), b"\x30\x00".to_vec()],
            }
        );
        for cut in 0..flight.len() {
            assert_eq!(parse_server_flight(&flight[..cut]), Parse::NeedMore);
        }
        // SSLv3 handshake_failure alert.
        assert_eq!(
            done(&record(21, SSL3, &[2, 40])),
            ServerAnswer::Alert {
                level: 2,
                description: 40
            }
        );
    }

    #[test]
    fn tls12_flight_ends_at_ccs_or_encrypted_record() {
        let sh = server_hello(TLS12, &[3u8; 32], 0xc02f, None);
        let mut flight = record(22, TLS12, &sh);
        assert_eq!(parse_server_flight(&flight), Parse::NeedMore);
        assert!(hello_so_far(&flight).is_some());
        flight.extend_from_slice(&record(20, TLS12, &[1]));
        assert!(matches!(
            done(&flight),
            ServerAnswer::Hello { version: TLS12, .. }
        ));
        let mut flight = record(22, TLS12, &sh);
        flight.extend_from_slice(&record(23, TLS12, &[0xaa; 40]));
        assert!(matches!(
            done(&flight),
            ServerAnswer::Hello { version: TLS12, .. }
        ));
    }

    #[test]
    fn certificate_chain_over_cap_still_returns_hello() {
        let sh = server_hello(TLS12, &[4u8; 32], 0xc030, None);
        let mut hs = sh.clone();
        // Certificate message announcing 100 KiB: we do not buffer it.
        hs.extend_from_slice(&[11, 0x01, 0x90, 0x00]);
        hs.extend_from_slice(&[0u8; 100]);
        let got = done(&record(22, TLS12, &hs));
        assert!(
            matches!(got, ServerAnswer::Hello { version: TLS12, ref certificates, .. } if certificates.is_empty())
        );
        // A big chain (many certificate messages' worth) stops at the cap.
        let big = vec![0x30u8; 16_000];
        let mut hs = sh.clone();
        for _ in 0..5 {
            hs.extend_from_slice(&certificate_msg(&[&big]));
        }
        let flight = rerecord(&hs, 16_000);
        assert!(matches!(done(&flight), ServerAnswer::Hello { .. }));
    }

    #[test]
    fn garbage_and_foreign_protocols_are_invalid() {
        let cases: &[(&str, &[u8])] = &[
            ("http", b"HTTP/1.1 400 Bad Request\r\n\r\n"),
            ("smtp", b"220 mail.lab.test ESMTP\r\n"),
            ("imap", b"* OK IMAP4rev1 ready\r\n"),
            (
                "sslv2 server hello",
                &[0x80, 0x4a, 0x04, 0x00, 0x01, 0x00, 0x02],
            ),
            ("zeros", &[0, 0, 0, 0, 0, 0, 0]),
            (
                "bad major version",
                &[0x16, 0x02, 0x00, 0x00, 0x04, 1, 2, 3, 4],
            ),
            ("record too long", &[0x16, 0x03, 0x03, 0xff, 0xff]),
            (
                "unknown content type",
                &[0x19, 0x03, 0x03, 0x00, 0x01, 0x00],
            ),
            ("ccs first", &[0x14, 0x03, 0x03, 0x00, 0x01, 0x01]),
            ("short alert", &[0x15, 0x03, 0x03, 0x00, 0x01, 0x02]),
            (
                "client hello back",
                &[0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00],
            ),
            (
                "empty server hello",
                &[0x16, 0x03, 0x03, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00],
            ),
            (
                "certificate first",
                &[
                    0x16, 0x03, 0x03, 0x00, 0x07, 0x0b, 0x00, 0x00, 0x03, 0, 0, 0,
                ],
            ),
        ];
        for (name, bytes) in cases {
            match parse_server_flight(bytes) {
                Parse::Invalid(reason) => {
                    if name.starts_with("sslv2") {
                        assert!(reason.contains("SSLv2"), "{reason}");
                    }
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        // Decided from the first bytes, without waiting for more.
        assert!(matches!(parse_server_flight(b"H"), Parse::Invalid(_)));
        assert!(matches!(parse_server_flight(&[0x80]), Parse::Invalid(_)));
        assert!(matches!(parse_server_flight(&[]), Parse::NeedMore));

        // ServerHello with an unknown version.
        let mut sh = server_hello(TLS12, &[5u8; 32], 0xc02f, None);
        sh[4..6].copy_from_slice(&[0x03, 0x05]);
        assert!(matches!(
            parse_server_flight(&record(22, TLS12, &sh)),
            Parse::Invalid(_)
        ));
        // Malformed certificate list after a good ServerHello.
        let mut hs = server_hello(TLS12, &[5u8; 32], 0xc02f, None);
        hs.extend_from_slice(&handshake(11, &[0, 0, 9, 0, 0, 1]));
        assert!(matches!(
            parse_server_flight(&record(22, TLS12, &hs)),
            Parse::Invalid(_)
        ));
        // Endless records that carry no ServerHello.
        let hb: Vec<u8> = (0..5)
            .flat_map(|_| record(24, TLS12, &[0u8; 16_000]))
            .collect();
        assert!(matches!(parse_server_flight(&hb), Parse::Invalid(_)));
    }

    #[test]
    fn mutated_flights_never_panic() {
        // Deterministic xorshift mutations of the captured flights.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for hex in [TLS12_FLIGHT, TLS13_FLIGHT, HRR, ALERT] {
            let full = unhex(hex);
            for _ in 0..300 {
                let mut m = full.clone();
                for _ in 0..(1 + next() % 4) {
                    let i = (next() as usize) % m.len();
                    m[i] = next() as u8;
                }
                let cut = (next() as usize) % (m.len() + 1);
                let _ = parse_server_flight(&m[..cut]);
                let _ = hello_so_far(&m[..cut]);
            }
        }
    }

    #[test]
    fn warning_alert_before_server_hello_is_skipped() {
        let warn = record(21, TLS12, &[1, 112]); // unrecognized_name, warning
        assert_eq!(parse_server_flight(&warn), Parse::NeedMore);
        assert_eq!(
            hello_so_far(&warn),
            Some(ServerAnswer::Alert {
                level: 1,
                description: 112
            })
        );
        let mut flight = warn.clone();
        flight.extend_from_slice(&unhex(TLS12_FLIGHT));
        assert!(matches!(
            done(&flight),
            ServerAnswer::Hello { version: TLS12, .. }
        ));
        // A warning close_notify ends it.
        assert_eq!(
            done(&record(21, TLS12, &[1, 0])),
            ServerAnswer::Alert {
                level: 1,
                description: 0
            }
        );
    }

    #[test]
    fn server_hello_with_unusual_extensions() {
        // Empty SNI ack, ALPN, an unknown extension, EMS, renegotiation_info.
        let ext = [
            0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x05, 0x00, 0x03, 0x02, b'h', b'2', 0xfe,
            0x01, 0x00, 0x01, 0x07, 0x00, 0x17, 0x00, 0x00, 0xff, 0x01, 0x00, 0x01, 0x00,
        ];
        let sh = server_hello(TLS12, &[6u8; 32], 0xc02f, Some(&ext));
        let mut hs = sh;
        hs.extend_from_slice(&handshake(14, &[]));
        assert!(matches!(
            done(&record(22, TLS12, &hs)),
            ServerAnswer::Hello { version: TLS12, .. }
        ));
        // Truncated extension list.
        let sh = server_hello(TLS12, &[6u8; 32], 0xc02f, Some(&ext[..7]));
        assert!(matches!(
            parse_server_flight(&record(22, TLS12, &sh)),
            Parse::Invalid(_)
        ));
    }

    #[test]
    fn names() {
        assert_eq!(version_name(TLS11), "TLS 1.1");
        assert_eq!(version_name(SSL3), "SSLv3");
        assert_eq!(
            cipher_name(0x1301).as_deref(),
            Some("TLS_AES_128_GCM_SHA256")
        );
        assert_eq!(cipher_name(0xfefe), None);
        assert_eq!(alert_name(40), Some("handshake_failure"));
    }
}
