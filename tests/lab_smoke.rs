//! Smoke test of the local mail lab (tests/lab/): the servers start, greet, and deliver.
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{CourierOpts, DovecotOpts, Lab, PostfixOpts};

fn connect(lab: &Lab, which: &str) -> BufReader<TcpStream> {
    let s = TcpStream::connect_timeout(&lab.addr(which), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {which} {}: {e}", lab.addr(which)));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    BufReader::new(s)
}

fn line(r: &mut BufReader<TcpStream>) -> String {
    let mut l = String::new();
    r.read_line(&mut l).expect("read line");
    l
}

/// Reads one (possibly multi-line) SMTP reply, returns its last line.
fn smtp_reply(r: &mut BufReader<TcpStream>) -> String {
    loop {
        let l = line(r);
        if l.len() < 4 || l.as_bytes()[3] != b'-' {
            return l;
        }
    }
}

fn send(r: &mut BufReader<TcpStream>, cmd: &str) {
    r.get_mut()
        .write_all(format!("{cmd}\r\n").as_bytes())
        .unwrap();
}

/// Greeting of an implicit-TLS port, through `openssl s_client` (std has no TLS), with the
/// certificate verified against the lab CA for mail.lab.test.
fn tls_greeting(lab: &Lab, which: &str, bye: &str) -> String {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-verify_return_error",
            "-verify_hostname",
            "mail.lab.test",
        ])
        .arg("-CAfile")
        .arg(Lab::ca_file())
        .arg("-connect")
        .arg(lab.addr(which).to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    let mut out = child.stdout.take().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut chunk = [0u8; 4096];
    // Read the greeting, then say goodbye so the server closes the connection.
    while !buf.contains(&b'\n') && Instant::now() < deadline {
        match out.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let _ = stdin.write_all(format!("{bye}\r\n").as_bytes());
    drop(stdin);
    let _ = out.read_to_end(&mut buf);
    let _ = child.wait();
    let text = String::from_utf8_lossy(&buf).into_owned();
    text.lines().next().unwrap_or("").to_string()
}

#[test]
fn dovecot_and_postfix_greet_and_deliver() {
    let dovecot = Lab::dovecot(
        "smoke-dovecot",
        DovecotOpts {
            pop3: true,
            ..Default::default()
        },
    );
    let postfix = Lab::postfix("smoke-postfix", &dovecot, PostfixOpts::default());

    let g = line(&mut connect(&dovecot, "imap"));
    assert!(g.starts_with("* OK"), "imap greeting: {g:?}");
    assert!(g.contains("STARTTLS"), "imap greeting: {g:?}");
    let g = line(&mut connect(&dovecot, "pop3"));
    assert!(g.starts_with("+OK"), "pop3 greeting: {g:?}");
    let g = tls_greeting(&dovecot, "imaps", "a LOGOUT");
    assert!(g.starts_with("* OK"), "imaps greeting: {g:?}");
    let g = tls_greeting(&dovecot, "pop3s", "QUIT");
    assert!(g.starts_with("+OK"), "pop3s greeting: {g:?}");

    for which in ["submission", "nosasl", "authplain"] {
        let g = line(&mut connect(&postfix, which));
        assert!(g.starts_with("220 "), "{which} greeting: {g:?}");
    }
    let g = tls_greeting(&postfix, "submissions", "QUIT");
    assert!(g.starts_with("220 "), "submissions greeting: {g:?}");

    // IMAP LOGIN works (loopback counts as secure for Dovecot).
    let mut c = connect(&dovecot, "imap");
    line(&mut c);
    send(
        &mut c,
        &format!("a LOGIN {} {}", Lab::user(), Lab::password()),
    );
    let mut l = line(&mut c);
    while l.starts_with('*') {
        l = line(&mut c);
    }
    assert!(l.starts_with("a OK"), "LOGIN: {l:?}");

    // Deliver a message through the "authplain" port (AUTH PLAIN before TLS) into Dovecot.
    let token = format!("lab-smoke-{}", std::process::id());
    let mut c = connect(&postfix, "authplain");
    assert!(smtp_reply(&mut c).starts_with("220"));
    send(&mut c, "EHLO smoke.lab.test");
    assert!(smtp_reply(&mut c).starts_with("250"));
    send(
        &mut c,
        &format!(
            "AUTH PLAIN {}",
            base64(&format!("\0{}\0{}", Lab::user(), Lab::password()))
        ),
    );
    let r = smtp_reply(&mut c);
    assert!(r.starts_with("235"), "AUTH: {r:?}");
    for cmd in ["MAIL FROM:<alice@lab.test>", "RCPT TO:<alice@lab.test>"] {
        send(&mut c, cmd);
        let r = smtp_reply(&mut c);
        assert!(r.starts_with("250"), "{cmd}: {r:?}");
    }
    send(&mut c, "DATA");
    assert!(smtp_reply(&mut c).starts_with("354"));
    send(
        &mut c,
        &format!("Subject: {token}\r\nFrom: alice@lab.test\r\n\r\nsmoke\r\n."),
    );
    let r = smtp_reply(&mut c);
    assert!(r.starts_with("250"), "DATA: {r:?}");
    send(&mut c, "QUIT");

    let new = dovecot.maildir(Lab::user()).join("new");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let found = std::fs::read_dir(&new)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                std::fs::read_to_string(e.path())
                    .map(|t| t.contains(&token))
                    .unwrap_or(false)
            });
        if found {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "message not delivered; postfix log:\n{}",
            postfix.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn dovecot_logindisabled() {
    let dovecot = Lab::dovecot(
        "smoke-logindis",
        DovecotOpts {
            logindisabled: true,
            imaps: false,
            ..Default::default()
        },
    );
    let g = line(&mut connect(&dovecot, "imap"));
    assert!(
        g.starts_with("* OK") && g.contains("LOGINDISABLED"),
        "greeting: {g:?}"
    );
}

#[test]
fn courier_greets() {
    let courier = Lab::courier("smoke-courier", CourierOpts::default());
    let g = line(&mut connect(&courier, "imap"));
    assert!(
        g.starts_with("* OK") && g.contains("Courier-IMAP ready"),
        "greeting: {g:?}"
    );
    let g = tls_greeting(&courier, "imaps", "a LOGOUT");
    assert!(
        g.starts_with("* OK") && g.contains("Courier-IMAP"),
        "imaps greeting: {g:?}"
    );
}

fn base64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &c)| acc | (u32::from(c) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
