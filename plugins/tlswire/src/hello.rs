//! Raw TLS ClientHello builder and server-flight parser (pure codec, no I/O).
//!
//! rustls only speaks TLS 1.2 and 1.3, so to learn which protocol versions a
//! server accepts (SSLv3 .. TLS 1.3) we send our own ClientHello offering exactly
//! one version and read the server's first flight, the way sslscan and
//! testssl.sh do. We never finish the handshake.
//!
//! Writing the ClientHello lives in `hello/build.rs`, reading the answer in
//! `hello/parse.rs`; this file holds what both sides and the callers share.

mod build;
mod parse;

pub use build::{client_hello, detection_hello};
pub(crate) use parse::hello_so_far;
pub use parse::{Parse, ServerAnswer, parse_server_flight};

use tls_parser::TlsCipherSuite;

pub const SSL3: u16 = 0x0300;
pub const TLS10: u16 = 0x0301;
pub const TLS11: u16 = 0x0302;
pub const TLS12: u16 = 0x0303;
pub const TLS13: u16 = 0x0304;

/// The extension that carries the offered (ClientHello) and chosen (ServerHello) version from
/// TLS 1.3 on: both sides of the codec need it.
const EXT_SUPPORTED_VERSIONS: u16 = 0x002b;

/// How many handshake bytes (after the ServerHello) we are willing to buffer
/// to collect the certificate chain. Past this we stop collecting
/// certificates and return the ServerHello we have.
pub const MAX_FLIGHT: usize = 64 * 1024;

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

#[cfg(test)]
mod tests {
    use super::build::{EMPTY_RENEGOTIATION_INFO_SCSV, put_u24};
    use super::*;
    use tls_parser::{
        Serialize, TlsExtension, TlsMessage, TlsMessageHandshake, TlsRecordType,
        TlsServerHelloContents, parse_tls_client_hello_extensions, parse_tls_plaintext,
        parse_tls_raw_record,
    };

    // Captured from `openssl s_server` (OpenSSL 3.0) answering our own
    // ClientHellos; `fixtures_match_what_a_live_s_server_sends` in tests/openssl_server.rs
    // checks they still match, and rewrites them with MAILPROBE_WRITE_FIXTURES=1.
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
