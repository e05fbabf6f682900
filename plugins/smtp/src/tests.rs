//! The plugin against small scripted peers on loopback: hostile ones (silence, endless lines,
//! garbage, reset) and a few replies the lab's Postfix cannot produce. Real-server behaviour is
//! covered by the workspace's `tests/smtp_*.rs` against the lab.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailprobe_core::net::Budgets;
use mailprobe_core::tls::Trust;
use mailprobe_core::{Profile, Status, Target};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use serde_json::json;

const PASSWORD: &str = "s3cret-Pw";

fn target(port: u16, security: Security, allow_insecure_cert: bool) -> Target {
    let ep = |protocol, port| Endpoint {
        protocol,
        host: "mail.lab.test".into(),
        port,
        security,
        connect_to: Some("127.0.0.1".into()),
        auto_security: false,
        source_address: None,
    };
    Target {
        mailbox: "alice@lab.test".into(),
        profile: Arc::new(Profile::builtin("hubspot").unwrap()),
        imap: ep(Protocol::Imap, 9),
        smtp: Some(ep(Protocol::Smtp, port)),
        user: "alice@lab.test".into(),
        password: Secret::new(PASSWORD),
        ca_file: None,
        allow_insecure_cert,
        timeout: Duration::from_secs(2),
        roundtrip: None,
    }
}

async fn run(port: u16, security: Security, insecure: bool) -> RunContext {
    mailprobe_core::install_crypto_provider();
    let mut cx = RunContext::new(
        Arc::new(target(port, security, insecure)),
        Trust::load(None).unwrap(),
        Arc::new(Budgets::default()),
    )
    .with_catalog(Arc::new(mailprobe_core::plugin::catalog_of(&[Arc::new(
        Smtp,
    )])));
    cx.reserve_slots().await;
    Smtp.run(&mut cx).await.unwrap();
    cx
}

fn result<'a>(cx: &'a RunContext, id: &str) -> &'a RequirementResult {
    cx.result(id).unwrap_or_else(|| panic!("{id} not reported"))
}

fn step_names(cx: &RunContext) -> Vec<&str> {
    cx.steps().iter().map(|s| s.name.as_str()).collect()
}

/// Lines the fake server received, to prove what the probe sent (and did not send).
type Seen = Arc<Mutex<Vec<String>>>;

struct Peer<S> {
    io: BufReader<S>,
    seen: Seen,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Peer<S> {
    async fn send(&mut self, s: &str) {
        let _ = self.io.get_mut().write_all(s.as_bytes()).await;
    }
    async fn recv(&mut self) -> String {
        let mut line = String::new();
        let _ = self.io.read_line(&mut line).await;
        let line = line.trim_end().to_string();
        self.seen.lock().unwrap().push(line.clone());
        line
    }
}

/// Serves one connection with `script`, returning the port and what the server received.
async fn serve<F, Fut>(script: F) -> (u16, Seen)
where
    F: FnOnce(Peer<TcpStream>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let s2 = seen.clone();
    tokio::spawn(async move {
        if let Ok((sock, _)) = l.accept().await {
            script(Peer {
                io: BufReader::new(sock),
                seen: s2,
            })
            .await;
        }
    });
    (port, seen)
}

fn acceptor() -> tokio_rustls::TlsAcceptor {
    let ck = rcgen::generate_simple_self_signed(vec!["mail.lab.test".to_string()]).unwrap();
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// An implicit-TLS server (self-signed certificate) running `script` after the handshake.
async fn serve_tls<F, Fut>(script: F) -> (u16, Seen)
where
    F: FnOnce(Peer<tokio_rustls::server::TlsStream<TcpStream>>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let acceptor = acceptor();
    serve(move |peer| async move {
        let seen = peer.seen.clone();
        let sock = peer.io.into_inner();
        if let Ok(tls) = acceptor.accept(sock).await {
            script(Peer {
                io: BufReader::new(tls),
                seen,
            })
            .await;
        }
    })
    .await
}

const EHLO_TLS: &str = "250-mail.lab.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n";

fn no_auth_sent(seen: &Seen) {
    let seen = seen.lock().unwrap();
    assert!(seen.iter().all(|l| !l.starts_with("AUTH")), "{seen:?}");
}

#[tokio::test]
async fn silence_is_a_timeout_not_a_hang() {
    let (port, _) = serve(|mut p| async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        p.send("").await;
    })
    .await;
    let t0 = std::time::Instant::now();
    let cx = run(port, Security::Starttls, false).await;
    assert!(t0.elapsed() < Duration::from_secs(3));
    let enc = result(&cx, ENCRYPTION);
    assert_eq!(enc.status, Status::Fail);
    assert_eq!(enc.error_type(), Some("timeout"));
    assert_eq!(result(&cx, LOGIN).status, Status::Skip);
    assert_eq!(result(&cx, LOGIN).prerequisite(), Some(ENCRYPTION));
    assert_eq!(step_names(&cx), vec!["connect", "greeting"]);
}

#[tokio::test]
async fn endless_line_is_cut_off() {
    let (port, _) = serve(|mut p| async move {
        let junk = "A".repeat(4096);
        for _ in 0..64 {
            p.send(&junk).await;
        }
    })
    .await;
    let cx = run(port, Security::Starttls, false).await;
    let enc = result(&cx, ENCRYPTION);
    assert_eq!(enc.status, Status::Fail);
    assert_eq!(enc.error_type(), Some("protocol"));
}

#[tokio::test]
async fn endless_multiline_reply_is_cut_off() {
    let (port, _) = serve(|mut p| async move {
        for _ in 0..1000 {
            p.send("220-still greeting\r\n").await;
        }
    })
    .await;
    let cx = run(port, Security::Starttls, false).await;
    let enc = result(&cx, ENCRYPTION);
    assert_eq!(enc.status, Status::Fail);
    assert!(
        enc.evidence["error"]
            .as_str()
            .unwrap()
            .contains("more than")
    );
}

#[tokio::test]
async fn garbage_is_a_protocol_error() {
    let (port, _) = serve(|mut p| async move {
        p.send("\x16\x03\x01garbage \x1b[31m\r\n").await;
    })
    .await;
    let cx = run(port, Security::Starttls, false).await;
    let enc = result(&cx, ENCRYPTION);
    assert_eq!(enc.status, Status::Fail);
    assert_eq!(enc.error_type(), Some("protocol"), "{enc:?}");
    // Control characters never reach the report.
    assert!(!enc.evidence["error"].as_str().unwrap().contains('\x1b'));
}

#[tokio::test]
async fn reset_after_ehlo_is_reported() {
    let (port, _) = serve(|mut p| async move {
        p.send("220 mail.lab.test ESMTP\r\n").await;
        p.recv().await;
        let sock = p.io.into_inner();
        let _ = sock.set_zero_linger();
        drop(sock);
    })
    .await;
    let cx = run(port, Security::Starttls, false).await;
    let enc = result(&cx, ENCRYPTION);
    assert_eq!(enc.status, Status::Fail);
    let et = enc.error_type().unwrap();
    assert!(
        et == "connection_reset" || et == "connection_closed",
        "{et}"
    );
    assert_eq!(enc.evidence["greeting"], "220 mail.lab.test ESMTP");
}

#[tokio::test]
async fn refusing_greeting_is_a_fail_with_the_reply() {
    let (port, _) = serve(|mut p| async move {
        p.send("554 5.7.1 go away\r\n").await;
    })
    .await;
    let cx = run(port, Security::Starttls, false).await;
    let enc = result(&cx, ENCRYPTION);
    assert_eq!(enc.status, Status::Fail);
    assert!(enc.summary.contains("554 5.7.1 go away"), "{}", enc.summary);
}

#[tokio::test]
async fn auth_in_clear_without_starttls_fails_and_sends_no_password() {
    let (port, seen) = serve(|mut p| async move {
        p.send("220 mail.lab.test ESMTP\r\n").await;
        p.recv().await;
        p.send("250-mail.lab.test\r\n250-AUTH PLAIN LOGIN\r\n250 SIZE 1000\r\n")
            .await;
        p.recv().await;
        p.send("221 bye\r\n").await;
    })
    .await;
    let cx = run(port, Security::Starttls, false).await;
    let enc = result(&cx, ENCRYPTION);
    assert_eq!(enc.status, Status::Fail);
    assert_eq!(enc.evidence["auth_before_tls"], true);
    assert_eq!(
        enc.evidence["auth_mechanisms_before_tls"],
        json!(["PLAIN", "LOGIN"])
    );
    assert!(
        enc.remedy
            .as_deref()
            .unwrap()
            .contains("smtpd_tls_auth_only = yes")
    );
    assert_eq!(result(&cx, LOGIN).status, Status::Skip);
    no_auth_sent(&seen);
    assert_eq!(step_names(&cx), vec!["connect", "greeting", "ehlo", "quit"]);
}

#[tokio::test]
async fn helo_only_server_is_reported_as_not_esmtp() {
    let (port, _) = serve(|mut p| async move {
        p.send("220 old.lab.test SMTP\r\n").await;
        p.recv().await;
        p.send("502 5.5.2 Error: command not recognized\r\n").await;
        p.recv().await;
        p.send("250 old.lab.test\r\n").await;
        p.recv().await;
        p.send("221 bye\r\n").await;
    })
    .await;
    let cx = run(port, Security::Starttls, false).await;
    let enc = result(&cx, ENCRYPTION);
    assert_eq!(enc.status, Status::Fail);
    assert_eq!(enc.evidence["esmtp"], false);
    assert!(enc.summary.contains("ESMTP"));
    assert_eq!(
        step_names(&cx),
        vec!["connect", "greeting", "ehlo", "helo", "quit"]
    );
}

#[tokio::test]
async fn refused_starttls_is_a_fail_with_the_reply() {
    let (port, _) = serve(|mut p| async move {
        p.send("220 mail.lab.test ESMTP\r\n").await;
        p.recv().await;
        p.send("250-mail.lab.test\r\n250 STARTTLS\r\n").await;
        p.recv().await;
        p.send("454 4.7.0 TLS not available due to local problem\r\n")
            .await;
        p.recv().await;
        p.send("221 bye\r\n").await;
    })
    .await;
    let cx = run(port, Security::Starttls, false).await;
    let enc = result(&cx, ENCRYPTION);
    assert_eq!(enc.status, Status::Fail);
    assert!(enc.summary.contains("454 4.7.0"), "{}", enc.summary);
}

#[tokio::test]
async fn implicit_tls_to_a_plain_port_suggests_starttls() {
    let (port, _) = serve(|mut p| async move {
        p.send("220 mail.lab.test ESMTP\r\n").await;
        p.recv().await;
    })
    .await;
    let cx = run(port, Security::Tls, false).await;
    let enc = result(&cx, ENCRYPTION);
    assert_eq!(enc.status, Status::Fail, "{enc:?}");
    assert_eq!(enc.error_type(), Some("tls_handshake"));
    assert!(
        enc.remedy
            .as_deref()
            .unwrap()
            .contains("--smtp-security starttls")
    );
}

#[tokio::test]
async fn starttls_then_login_passes_and_keeps_the_session() {
    let acceptor = acceptor();
    let (port, seen) = serve(move |mut p| async move {
        p.send("220 mail.lab.test ESMTP\r\n").await;
        p.recv().await;
        p.send("250-mail.lab.test\r\n250-STARTTLS\r\n250 SIZE 1000\r\n")
            .await;
        p.recv().await;
        p.send("220 2.0.0 Ready to start TLS\r\n").await;
        let seen = p.seen.clone();
        let tls = acceptor.accept(p.io.into_inner()).await.unwrap();
        let mut p = Peer {
            io: BufReader::new(tls),
            seen,
        };
        p.recv().await;
        p.send(EHLO_TLS).await;
        p.recv().await;
        p.send("235 2.7.0 Authentication successful\r\n").await;
        p.recv().await;
        p.send("221 2.0.0 Bye\r\n").await;
    })
    .await;
    let mut cx = run(port, Security::Starttls, true).await;
    let enc = result(&cx, ENCRYPTION);
    assert_eq!(enc.status, Status::Pass, "{enc:?}");
    assert_eq!(
        enc.evidence["extensions_before_tls"],
        json!(["STARTTLS", "SIZE 1000"])
    );
    assert_eq!(enc.evidence["auth_before_tls"], false);
    assert_eq!(
        enc.evidence["extensions_after_tls"],
        json!([
            "PIPELINING",
            "SIZE 10240000",
            "AUTH PLAIN LOGIN",
            "8BITMIME"
        ])
    );
    let login = result(&cx, LOGIN);
    assert_eq!(login.status, Status::Pass, "{login:?}");
    assert_eq!(login.evidence["mechanism"], "PLAIN");
    assert_eq!(
        step_names(&cx),
        vec![
            "connect",
            "greeting",
            "ehlo",
            "starttls",
            "tls_handshake",
            "ehlo",
            "auth"
        ]
    );
    assert!(handshake::first(&cx, Protocol::Smtp).unwrap().is_ok());
    // The session is held for the connection-limit check; closing it sends QUIT.
    let held = cx.held.pop().unwrap();
    assert_eq!(held.protocol, Protocol::Smtp);
    held.session.close(Duration::from_secs(2)).await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.last().map(String::as_str), Some("QUIT"));
    assert!(seen.iter().all(|l| !l.contains(PASSWORD)));
}

#[tokio::test]
async fn refused_credentials_fail_with_the_reply_and_no_password_echo() {
    let echo = format!(
        "535 5.7.8 no: {}\r\n",
        client::plain_response("alice@lab.test", PASSWORD).as_str()
    );
    let (port, _) = serve_tls(move |mut p| async move {
        p.send("220 mail.lab.test ESMTP\r\n").await;
        p.recv().await;
        p.send(EHLO_TLS).await;
        p.recv().await;
        p.send(&echo).await;
        p.recv().await;
        p.send("221 bye\r\n").await;
    })
    .await;
    let cx = run(port, Security::Tls, true).await;
    assert_eq!(result(&cx, ENCRYPTION).status, Status::Pass);
    let login = result(&cx, LOGIN);
    assert_eq!(login.status, Status::Fail);
    assert_eq!(login.evidence["reply"], "535 5.7.8 no: [redacted]");
    let report = serde_json::to_string(&cx.results()).unwrap();
    let steps = serde_json::to_string(&cx.steps()).unwrap();
    for text in [report, steps] {
        assert!(!text.contains(PASSWORD));
        assert!(!text.contains(client::plain_response("alice@lab.test", PASSWORD).as_str()));
    }
    assert_eq!(step_names(&cx).last(), Some(&"quit"));
}

#[tokio::test]
async fn unverified_certificate_skips_login_without_sending_the_password() {
    let (port, seen) = serve_tls(|mut p| async move {
        p.send("220 mail.lab.test ESMTP\r\n").await;
        p.recv().await;
        p.send(EHLO_TLS).await;
        p.recv().await;
        p.send("221 bye\r\n").await;
    })
    .await;
    let cx = run(port, Security::Tls, false).await;
    assert_eq!(result(&cx, ENCRYPTION).status, Status::Pass);
    let login = result(&cx, LOGIN);
    assert_eq!(login.status, Status::Skip, "{login:?}");
    assert_eq!(login.prerequisite(), Some("smtp.certificate.trust"));
    no_auth_sent(&seen);
}

#[tokio::test]
async fn only_unusable_mechanisms_fail_login() {
    let (port, seen) = serve_tls(|mut p| async move {
        p.send("220 mail.lab.test ESMTP\r\n").await;
        p.recv().await;
        p.send("250-mail.lab.test\r\n250 AUTH XOAUTH2 CRAM-MD5\r\n")
            .await;
        p.recv().await;
        p.send("221 bye\r\n").await;
    })
    .await;
    let cx = run(port, Security::Tls, true).await;
    let login = result(&cx, LOGIN);
    assert_eq!(login.status, Status::Fail);
    assert!(login.summary.contains("XOAUTH2 CRAM-MD5"));
    no_auth_sent(&seen);
}
