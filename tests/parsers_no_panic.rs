//! Every parser of server bytes, fed arbitrary and mutated-real input: none may panic, and the
//! redactor's promise (no password, no control character) holds for any text. The same
//! parsers are fuzz targets in `fuzz/` for longer runs; this is the short run in every
//! `cargo test`.

use std::time::Duration;

use mailprobe_core::lines::LineStream;
use mailprobe_core::redact::Redactor;
use mailprobe_plugin_certificate::x509;
use mailprobe_plugin_imap::{fingerprint, folders, wire::Wire};
use mailprobe_plugin_smtp::client::{Ehlo, SmtpClient, scrubbed_reply};
use mailprobe_tlswire::hello::parse_server_flight;
use proptest::prelude::*;
use tokio::io::AsyncWriteExt;

const WAIT: Duration = Duration::from_secs(1);

/// Real replies, from the unit tests and the lab servers, that mutations start from.
const IMAP_SEEDS: &[&[u8]] = &[
    b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS AUTH=PLAIN] Dovecot ready.\r\n",
    b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\nP1 OK done\r\n",
    b"* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent Items\"\r\n* LIST () \".\" INBOX\r\nP1 OK LIST done\r\n",
    b"* LIST () \"/\" {8}\r\nSent \"x\"\r\nP1 OK done\r\n",
    b"* NAMESPACE ((\"INBOX.\" \".\")) NIL ((\"#shared.\" \".\"))\r\nP1 OK done\r\n",
    b"* ID (\"name\" \"Dovecot\" \"version\" \"2.3.19\")\r\nP1 OK ID completed\r\n",
    b"* LIST () \"/\" \"&AMk-l&AOk-ments envoy&AOk-s\"\r\nP1 NO [ALERT] no\r\n",
    b"* LIST () X\xff \"x\"\r\n* BYE bye\r\n",
];

const SMTP_SEEDS: &[&[u8]] = &[
    b"220 mail.lab.test ESMTP Postfix\r\n",
    b"250-mail.lab.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-AUTH PLAIN LOGIN\r\n250-AUTH=LOGIN\r\n250 8BITMIME\r\n",
    b"535 5.7.8 Error: authentication failed: UGFzc3dvcmQ6\r\n",
    b"334 VXNlcm5hbWU6\r\n",
];

fn fixture_hex(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/plugins/tlswire/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let s: String = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect();
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

fn tls_seeds() -> Vec<Vec<u8>> {
    [
        "openssl_tls10_flight.hex",
        "openssl_tls12_flight.hex",
        "openssl_tls13_flight.hex",
        "openssl_hrr.hex",
        "openssl_alert_tls11_on_tls12_only.hex",
    ]
    .iter()
    .map(|n| fixture_hex(n))
    .collect()
}

fn cert_seeds() -> Vec<Vec<u8>> {
    let der = std::fs::read(format!(
        "{}/plugins/certificate/tests/fixtures/rsa2048-selfsigned.der",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("certificate fixture");
    vec![der, fixture_hex("openssl_cert.der.hex")]
}

/// A seed with a few bytes replaced, inserted or cut: structure survives, so the parsers get
/// past their first checks.
fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::sample::select(seeds),
        proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..8),
        proptest::option::of(any::<usize>()),
    )
        .prop_map(|(mut data, edits, cut)| {
            for (at, byte, kind) in edits {
                let i = at % (data.len() + 1);
                match kind {
                    0 if i < data.len() => data[i] = byte,
                    1 => data.insert(i, byte),
                    _ if i < data.len() => {
                        data.remove(i);
                    }
                    _ => data.push(byte),
                }
            }
            if let Some(c) = cut {
                data.truncate(c % (data.len() + 1));
            }
            data
        })
}

fn input(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..600),
        mutated(seeds),
    ]
}

fn owned(seeds: &[&[u8]]) -> Vec<Vec<u8>> {
    seeds.iter().map(|s| s.to_vec()).collect()
}

/// A stream that yields `data` and then ends, and swallows what is written to it.
async fn stream_of(data: &[u8]) -> tokio::io::DuplexStream {
    let (client, mut server) = tokio::io::duplex(data.len() + 64);
    let _ = server.write_all(data).await;
    // The server half must outlive the writes of the client, but not block its reads past
    // the data: drop it after a shutdown so reads see the end.
    let _ = server.shutdown().await;
    tokio::spawn(async move {
        let mut sink = tokio::io::sink();
        let _ = tokio::io::copy(&mut server, &mut sink).await;
    });
    client
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn imap(data: &[u8]) {
    block_on(async {
        let mut w = Wire::new(stream_of(data).await);
        if let Ok(r) = w.command(r#"LIST "" "*""#, WAIT).await {
            let caps = r.capabilities();
            let list: Vec<folders::Folder> =
                r.data("LIST").filter_map(folders::parse_list).collect();
            let ns = r
                .data("NAMESPACE")
                .find_map(folders::parse_namespace)
                .unwrap_or_default();
            let _ = folders::find_sent(&list, &ns);
            let _ = folders::others(&list, None);
            let id = r.data("ID").find_map(fingerprint::parse_id);
            let _ = fingerprint::identify(&fingerprint::Observed {
                greeting_text: r.tagged.text.clone(),
                capabilities: caps,
                id,
            });
        }
    });
    let text = String::from_utf8_lossy(data);
    for line in text.lines() {
        let _ = folders::parse_list(line);
        let _ = folders::parse_namespace(line);
        let _ = folders::decode_mutf7(line);
        let _ = fingerprint::parse_id(line);
        if let Some(s) = mailprobe_plugin_imap::wire::StatusLine::parse(line, line) {
            let _ = s.capabilities();
        }
    }
}

fn smtp(data: &[u8]) {
    block_on(async {
        let mut c = SmtpClient::new(stream_of(data).await);
        while let Ok(r) = c.reply(WAIT).await {
            let e = Ehlo::from_reply(&r);
            let _ = (e.offers_auth(), e.auth_mechanisms());
            let _ = scrubbed_reply(&r, "pw-1234");
        }
        let mut lines = LineStream::new(stream_of(data).await);
        while lines.read_line(WAIT).await.is_ok() {}
    });
}

fn tls(data: &[u8]) {
    let _ = parse_server_flight(data);
    // Every prefix: the prober parses what has arrived so far, record by record.
    for end in (0..data.len()).step_by(7) {
        let _ = parse_server_flight(&data[..end]);
    }
}

fn certificate(data: &[u8]) {
    if let Ok(info) = x509::parse_certificate(data) {
        let _ = x509::match_name(&info, "mail.lab.test");
        let _ = x509::earliest_expiry(std::slice::from_ref(&info));
    }
    let roots = rustls::RootCertStore::empty();
    let _ = x509::verify_trust(&[data.to_vec(), data.to_vec()], &roots);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn imap_replies(data in input(owned(IMAP_SEEDS))) {
        imap(&data);
    }

    #[test]
    fn smtp_replies(data in input(owned(SMTP_SEEDS))) {
        smtp(&data);
    }

    #[test]
    fn tls_server_flights(data in input(tls_seeds())) {
        tls(&data);
    }

    #[test]
    fn certificates(data in input(cert_seeds())) {
        certificate(&data);
    }

    #[test]
    fn redaction_of_any_text(pw in "\\PC{4,30}", text in any::<Vec<u8>>()) {
        let text = String::from_utf8_lossy(&text);
        let text = format!("{text}{pw}{text}");
        let out = Redactor::new(&pw).clean(&text);
        prop_assert!(!out.contains(&pw));
        prop_assert!(!out.chars().any(char::is_control));
    }
}

#[test]
fn the_seeds_themselves_parse() {
    for s in IMAP_SEEDS {
        imap(s);
    }
    for s in SMTP_SEEDS {
        smtp(s);
    }
    for s in tls_seeds() {
        assert!(!s.is_empty());
        tls(&s);
    }
    for s in cert_seeds() {
        assert!(
            x509::parse_certificate(&s).is_ok(),
            "a seed certificate does not parse"
        );
        certificate(&s);
    }
}
