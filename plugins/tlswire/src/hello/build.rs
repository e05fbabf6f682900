//! Writing the ClientHello: one record offering exactly one protocol version, with the broad
//! cipher-suite, group and signature lists (data tables) that let a legacy server find
//! something it speaks, the way sslscan and testssl.sh probe.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{EXT_SUPPORTED_VERSIONS, SSL3, TLS10, TLS12, TLS13};

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
pub(super) const EMPTY_RENEGOTIATION_INFO_SCSV: u16 = 0x00ff;

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
const EXT_PSK_KEY_EXCHANGE_MODES: u16 = 0x002d;
const EXT_KEY_SHARE: u16 = 0x0033;
const EXT_RENEGOTIATION_INFO: u16 = 0xff01;
const GROUP_X25519: u16 = 0x001d;

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(super) fn put_u24(out: &mut Vec<u8>, v: usize) {
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
    hello(version, &[TLS13], server_name)
}

/// One ClientHello offering every version the probe can tell apart, SSLv3 to TLS 1.3 (TLS 1.3
/// to TLS 1.0 in supported_versions, TLS 1.2 as the legacy version, which an SSLv3-only server
/// answers with SSLv3): the hello of security detection, which any TLS server answers with a
/// TLS record, whatever versions it speaks.
pub fn detection_hello(server_name: Option<&str>) -> Vec<u8> {
    hello(TLS13, &[TLS13, TLS12, super::TLS11, TLS10], server_name)
}

fn hello(version: u16, tls13_versions: &[u16], server_name: Option<&str>) -> Vec<u8> {
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
        let ext = extensions(version, tls13_versions, server_name, body.len());
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

/// The extensions of a TLS 1.0+ ClientHello whose body so far is `body_len` bytes: SNI for a
/// DNS name, the broad group and signature lists, and for TLS 1.3 supported_versions with an
/// x25519 key_share. Padded (RFC 7685) out of the 256..=511 byte range that hangs some old F5
/// load balancers.
fn extensions(
    version: u16,
    tls13_versions: &[u16],
    server_name: Option<&str>,
    body_len: usize,
) -> Vec<u8> {
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
    if version >= TLS13 {
        put_ext(
            &mut ext,
            EXT_SUPPORTED_VERSIONS,
            &u16_list(1, tls13_versions),
        );
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
    let len = 4 + body_len + 2 + ext.len();
    if (256..512).contains(&len) {
        let pad = (512 - len).saturating_sub(4);
        put_ext(&mut ext, EXT_PADDING, &vec![0u8; pad]);
    }
    ext
}
