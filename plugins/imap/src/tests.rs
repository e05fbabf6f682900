//! Unit tests of the plugin's judgments, and of its behaviour against scripted hostile servers
//! (plain TCP, STARTTLS mode: a fake needs no certificate to misbehave before TLS).

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::login::{Method, choose_method, server_words};
use crate::software;
use mailprobe_core::net::Budgets;
use mailprobe_core::tls::Trust;
use mailprobe_core::{Endpoint, Target};
use mailprobe_core::{Profile, Secret, Status as St};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[test]
fn server_words_from_async_imap_errors() {
    assert_eq!(
        server_words(r#"code: Some(AuthenticationFailed), info: Some("Authentication failed.")"#),
        "[AUTHENTICATIONFAILED] Authentication failed."
    );
    assert_eq!(
        server_words(r#"code: None, info: Some("Login failed: \"bad\"")"#),
        r#"Login failed: "bad""#
    );
    assert_eq!(server_words("something else"), "something else");
}

fn hub() -> Vec<String> {
    mailprobe_core::profile::Profile::builtin("hubspot")
        .unwrap()
        .client
        .sasl_mechanisms
}

#[test]
fn login_method_follows_the_client_model_then_logindisabled() {
    let caps = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
    // No mechanism of the client's offered: the LOGIN command, as JavaMail falls back to.
    assert_eq!(
        choose_method(&caps("IMAP4rev1 AUTH=CRAM-MD5"), &hub()),
        Some(Method::Login)
    );
    assert_eq!(
        choose_method(&caps("IMAP4rev1 AUTH=LOGIN"), &hub()),
        Some(Method::AuthenticateLogin)
    );
    assert_eq!(
        choose_method(&caps("IMAP4rev1 AUTH=PLAIN"), &hub()),
        Some(Method::AuthenticatePlain)
    );
    assert_eq!(
        choose_method(&caps("IMAP4rev1 LOGINDISABLED AUTH=PLAIN"), &hub()),
        Some(Method::AuthenticatePlain)
    );
    assert_eq!(
        choose_method(&caps("IMAP4rev1 LOGINDISABLED AUTH=GSSAPI"), &hub()),
        None
    );
    assert_eq!(
        mechanisms(&caps("IMAP4rev1 auth=plain AUTH=LOGIN")),
        vec!["PLAIN", "LOGIN"]
    );
}

fn seen_with(greeting: &str) -> Seen {
    let g = StatusLine::parse(greeting.strip_prefix("* ").unwrap(), greeting).unwrap();
    Seen {
        caps_tls: g.capabilities().unwrap_or_default(),
        greeting: Some(g),
        ..Seen::default()
    }
}

fn courier() -> Vec<String> {
    vec!["Courier-IMAP".to_string()]
}

#[test]
fn software_judgments() {
    let r = software::result(&seen_with(
        "* OK [CAPABILITY IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT THREAD=REFERENCES SORT QUOTA IDLE ACL ACL2=UNION] Courier-IMAP ready. Copyright 1998-2018 Double Precision, Inc.  See COPYING for distribution information.",
    ), &courier())
    .unwrap();
    assert_eq!(r.status, St::Fail);
    assert_eq!(r.evidence["software"], "Courier-IMAP");
    assert!(r.remedy.unwrap().contains("not supported"));

    let r = software::result(
        &seen_with("* OK [CAPABILITY IMAP4rev1 ID] Dovecot (Debian) ready."),
        &courier(),
    )
    .unwrap();
    assert_eq!(r.status, St::Pass);
    assert_eq!(r.evidence["software"], "Dovecot");
    assert_eq!(
        r.evidence["greeting"],
        "* OK [CAPABILITY IMAP4rev1 ID] Dovecot (Debian) ready."
    );

    let r = software::result(&seen_with("* OK IMAP ready"), &courier()).unwrap();
    assert_eq!(r.status, St::Warn);
    assert!(r.evidence["software"].is_null());

    assert!(software::result(&Seen::default(), &courier()).is_none());
}

// ---- scripted servers ----

/// One scripted connection: the server side runs `script` on the accepted socket.
async fn fake<F, Fut>(script: F) -> u16
where
    F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        if let Ok((s, _)) = l.accept().await {
            script(s).await;
        }
    });
    port
}

async fn run_against(port: u16, timeout: Duration) -> RunContext {
    mailprobe_core::install_crypto_provider();
    let target = Target {
        mailbox: "alice@lab.test".into(),
        profile: Arc::new(Profile::builtin("hubspot").unwrap()),
        imap: Endpoint {
            protocol: Protocol::Imap,
            host: "mail.lab.test".into(),
            port,
            security: Security::Starttls,
            connect_to: Some("127.0.0.1".into()),
            auto_security: false,
            source_address: None,
        },
        smtp: None,
        user: "alice@lab.test".into(),
        password: Secret::new("hunter2-secret"),
        ca_file: None,
        allow_insecure_cert: false,
        timeout,
        roundtrip: None,
    };
    let mut cx = RunContext::new(
        Arc::new(target),
        Trust::load(None).unwrap(),
        Arc::new(Budgets::default()),
    )
    .with_catalog(Arc::new(mailprobe_core::plugin::catalog_of(&[Arc::new(
        Imap,
    )])));
    cx.reserve_slots().await;
    Imap.run(&mut cx).await.unwrap();
    cx
}

fn status(cx: &RunContext, id: &str) -> St {
    cx.status(id).unwrap_or_else(|| panic!("{id} not reported"))
}

fn evidence(cx: &RunContext, id: &str, key: &str) -> String {
    // Through the JSON report: `error_type` and the like are typed fields of the result.
    serde_json::to_value(cx.result(id).unwrap()).unwrap()["evidence"][key].to_string()
}

fn assert_no_password(cx: &RunContext) {
    let all = serde_json::to_string(cx.results()).unwrap() + &format!("{:?}", cx.steps());
    assert!(!all.contains("hunter2"), "the password leaked: {all}");
}

#[tokio::test]
async fn silent_server_times_out_cleanly() {
    let port = fake(|s| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(s);
    })
    .await;
    let t0 = std::time::Instant::now();
    let cx = run_against(port, Duration::from_secs(2)).await;
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert_eq!(status(&cx, ENCRYPTION), St::Fail);
    assert_eq!(evidence(&cx, ENCRYPTION, "error_type"), "\"timeout\"");
    assert_eq!(status(&cx, LOGIN), St::Skip);
    assert_eq!(status(&cx, FOLDERS), St::Skip);
    assert_eq!(status(&cx, SOFTWARE), St::Skip);
}

#[tokio::test]
async fn garbage_greeting_is_a_protocol_failure() {
    let port = fake(|mut s| async move {
        let _ = s.write_all(b"\x16\x03\x01 hello? \xff\xfe\r\n").await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    let cx = run_against(port, Duration::from_secs(4)).await;
    assert_eq!(status(&cx, ENCRYPTION), St::Fail);
    assert_eq!(evidence(&cx, ENCRYPTION, "error_type"), "\"protocol\"");
    assert!(evidence(&cx, ENCRYPTION, "error").contains("not an IMAP greeting"));
}

#[tokio::test]
async fn endless_greeting_line_is_cut_off() {
    let port = fake(|mut s| async move {
        let junk = vec![b'x'; 16 * 1024];
        for _ in 0..64 {
            if s.write_all(&junk).await.is_err() {
                break;
            }
        }
    })
    .await;
    let cx = run_against(port, Duration::from_secs(5)).await;
    assert_eq!(status(&cx, ENCRYPTION), St::Fail);
    assert!(evidence(&cx, ENCRYPTION, "error").contains("longer than"));
}

#[tokio::test]
async fn reset_after_greeting_is_reported() {
    let port = fake(|mut s| async move {
        let _ = s.write_all(b"* OK IMAP ready\r\n").await;
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf).await;
        let _ = s.set_zero_linger();
        drop(s);
    })
    .await;
    let cx = run_against(port, Duration::from_secs(4)).await;
    assert_eq!(status(&cx, ENCRYPTION), St::Fail);
    let t = evidence(&cx, ENCRYPTION, "error_type");
    assert!(
        t == "\"connection_reset\"" || t == "\"connection_closed\"",
        "{t}"
    );
    // The greeting was seen, so the software is judged (unknown).
    assert_eq!(status(&cx, SOFTWARE), St::Warn);
}

#[tokio::test]
async fn bye_greeting_fails_with_the_servers_words() {
    let port = fake(|mut s| async move {
        let _ = s
            .write_all(b"* BYE Too many connections from your IP address\r\n")
            .await;
    })
    .await;
    let cx = run_against(port, Duration::from_secs(4)).await;
    assert_eq!(status(&cx, ENCRYPTION), St::Fail);
    assert!(evidence(&cx, ENCRYPTION, "error").contains("Too many connections"));
    assert_eq!(status(&cx, LOGIN), St::Skip);
    assert_eq!(cx.result(LOGIN).unwrap().prerequisite(), Some(ENCRYPTION));
}

#[tokio::test]
async fn no_starttls_never_sends_credentials() {
    let (tx, rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
    let port = fake(|mut s| async move {
        let _ = s
            .write_all(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN LOGIN] Dovecot ready.\r\n")
            .await;
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await
        {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        let _ = tx.send(got);
    })
    .await;
    let cx = run_against(port, Duration::from_secs(4)).await;
    assert_eq!(status(&cx, ENCRYPTION), St::Fail);
    assert_eq!(evidence(&cx, ENCRYPTION, "starttls_offered"), "false");
    assert_eq!(status(&cx, SOFTWARE), St::Pass);
    assert_eq!(status(&cx, LOGIN), St::Skip);
    let sent = rx.await.unwrap();
    assert!(
        sent.is_empty(),
        "the probe sent {:?}",
        String::from_utf8_lossy(&sent)
    );
    assert_no_password(&cx);
}

#[tokio::test]
async fn garbage_after_starttls_fails_the_handshake() {
    let port = fake(|mut s| async move {
        let _ = s
            .write_all(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n")
            .await;
        let mut buf = [0u8; 256];
        let _ = s.read(&mut buf).await;
        let _ = s.write_all(b"P1 OK Begin TLS negotiation now\r\n").await;
        let _ = s.read(&mut buf).await;
        let _ = s.write_all(b"this is not TLS at all\r\n\r\n").await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    })
    .await;
    let cx = run_against(port, Duration::from_secs(4)).await;
    assert_eq!(status(&cx, ENCRYPTION), St::Fail);
    assert_eq!(evidence(&cx, ENCRYPTION, "stage"), "\"tls_handshake\"");
    assert_eq!(status(&cx, LOGIN), St::Skip);
    let names: Vec<&str> = cx.steps().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names[..4],
        ["connect", "greeting", "starttls", "tls_handshake"]
    );
    // A failed handshake is followed by the legacy-TLS probe on a second connection (which the
    // fake never serves, so it finds no server speaking a dialect only the legacy engine can).
    assert_eq!(names[4..], ["connect", "tls_legacy_probe"]);
}
