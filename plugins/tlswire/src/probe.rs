//! One protocol-version probe over an already connected stream: send our
//! ClientHello for one version, read the server's first flight, classify it.

use std::io::ErrorKind;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::hello::{
    self, Parse, ServerAnswer, TLS13, alert_name, client_hello, parse_server_flight, version_name,
};

/// What the server did with a ClientHello offering exactly one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The server negotiated the requested version. `certificates` is the
    /// DER chain for <= TLS 1.2 (empty for TLS 1.3, where it is encrypted,
    /// and when the chain was larger than [`hello::MAX_FLIGHT`]).
    Accepted {
        version: u16,
        cipher: u16,
        cipher_name: Option<String>,
        certificates: Vec<Vec<u8>>,
    },
    /// Alert, reset, close, or the server chose a different version.
    Refused { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("timed out waiting for the server")]
    Timeout,
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid answer to ClientHello: {0}")]
    Invalid(String),
}

fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

/// Classify a complete server answer for the requested version.
fn classify(requested: u16, answer: ServerAnswer) -> ProbeOutcome {
    match answer {
        ServerAnswer::Hello {
            version,
            cipher,
            cipher_name,
            certificates,
        } => {
            if version == requested {
                ProbeOutcome::Accepted {
                    version,
                    cipher,
                    cipher_name,
                    certificates,
                }
            } else {
                ProbeOutcome::Refused {
                    reason: format!("server answered with {} instead", version_name(version)),
                }
            }
        }
        ServerAnswer::HelloRetryRequest { cipher } => {
            if requested == TLS13 {
                ProbeOutcome::Accepted {
                    version: TLS13,
                    cipher,
                    cipher_name: hello::cipher_name(cipher),
                    certificates: Vec::new(),
                }
            } else {
                ProbeOutcome::Refused {
                    reason: "server answered with TLS 1.3 (HelloRetryRequest) instead".to_owned(),
                }
            }
        }
        ServerAnswer::Alert { level, description } => {
            let name = alert_name(description)
                .map(str::to_owned)
                .unwrap_or_else(|| format!("unknown ({description})"));
            let reason = if level == 1 {
                format!("{name} alert (warning)")
            } else {
                format!("{name} alert")
            };
            ProbeOutcome::Refused { reason }
        }
    }
}

/// How a server answered one ClientHello, before any judgement of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A ServerHello (with whatever of the flight arrived), a HelloRetryRequest or an alert.
    Server(ServerAnswer),
    /// The server closed the connection before it said anything.
    Closed,
    /// The server reset the connection before it said anything.
    Reset,
}

/// Send a ClientHello offering `version` on `stream` (already past any STARTTLS preamble) and
/// read the server's answer, whatever version it chose.
///
/// The write, and then the whole answer, are each bounded by `io_timeout` (one overall deadline
/// for the answer: a server dripping a byte just before every read would time out cannot
/// stretch it), and the answer by [`MAX_ANSWER`] bytes (endless heartbeats or HelloRequests
/// cannot grow it). If the answer ends early (closed, reset, timed out, too long) after a
/// ServerHello, the ServerHello counts, with the certificates seen so far. Does not shut the
/// stream down: the caller drops it.
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    version: u16,
    server_name: Option<&str>,
    io_timeout: Duration,
) -> Result<Answer, ProbeError> {
    let ch = client_hello(version, server_name);
    let write = async {
        stream.write_all(&ch).await?;
        stream.flush().await
    };
    match tokio::time::timeout(io_timeout, write).await {
        Err(_) => return Err(ProbeError::Timeout),
        Ok(Err(e)) if is_reset(&e) => return Ok(Answer::Reset),
        Ok(Err(e)) => return Err(ProbeError::Io(e)),
        Ok(Ok(())) => {}
    }

    let mut buf: Vec<u8> = Vec::with_capacity(8 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    let deadline = tokio::time::Instant::now() + io_timeout;
    loop {
        let ended = match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => Ended::Timeout,
            Ok(Ok(0)) => Ended::Closed,
            Ok(Ok(_)) if buf.len() >= MAX_ANSWER => Ended::TooLong,
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                match parse_server_flight(&buf) {
                    Parse::NeedMore => continue,
                    Parse::Done(answer) => return Ok(Answer::Server(answer)),
                    Parse::Invalid(reason) => return Err(ProbeError::Invalid(reason)),
                }
            }
            Ok(Err(e)) if is_reset(&e) => Ended::Reset,
            Ok(Err(e)) => return Err(ProbeError::Io(e)),
        };
        // The flight ended early. A ServerHello already received settles it.
        if let Some(answer) = hello::hello_so_far(&buf) {
            return Ok(Answer::Server(answer));
        }
        return match ended {
            Ended::Timeout => Err(ProbeError::Timeout),
            Ended::Closed => Ok(Answer::Closed),
            Ended::Reset => Ok(Answer::Reset),
            Ended::TooLong => Err(ProbeError::Invalid(format!(
                "an answer to a ClientHello longer than {MAX_ANSWER} bytes"
            ))),
        };
    }
}

/// Send a ClientHello offering exactly `version` and judge the answer: accepted only when the
/// server chose that very version. EOF or a reset before a ServerHello is a refusal ("connection
/// closed" / "connection reset").
pub async fn probe_version<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    version: u16,
    server_name: Option<&str>,
    io_timeout: Duration,
) -> Result<ProbeOutcome, ProbeError> {
    Ok(
        match exchange(stream, version, server_name, io_timeout).await? {
            Answer::Server(answer) => classify(version, answer),
            Answer::Closed => ProbeOutcome::Refused {
                reason: "connection closed".to_owned(),
            },
            Answer::Reset => ProbeOutcome::Refused {
                reason: "connection reset".to_owned(),
            },
        },
    )
}

enum Ended {
    Timeout,
    Closed,
    Reset,
    TooLong,
}

/// The most bytes read in answer to one ClientHello: a whole flight (bounded by
/// [`hello::MAX_FLIGHT`] for the parts kept) with room for the records around it.
pub const MAX_ANSWER: usize = 4 * hello::MAX_FLIGHT;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hello::{TLS10, TLS11, TLS12};
    use tokio::io::AsyncWriteExt;

    fn record(t: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![t, 3, 3];
        v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn server_hello(version: u16, cipher: u16) -> Vec<u8> {
        let mut body = version.to_be_bytes().to_vec();
        body.extend_from_slice(&[7u8; 32]);
        body.push(0);
        body.extend_from_slice(&cipher.to_be_bytes());
        body.push(0);
        body.extend_from_slice(&[0, 0]);
        let mut hs = vec![2, 0, 0, body.len() as u8];
        hs.extend_from_slice(&body);
        hs
    }

    /// Runs probe_version against a scripted server end of a duplex pipe.
    async fn run(
        version: u16,
        answer: Vec<u8>,
        close: bool,
    ) -> (Result<ProbeOutcome, ProbeError>, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let server_task = tokio::spawn(async move {
            let mut got = vec![0u8; 5];
            server.read_exact(&mut got).await.unwrap();
            let len = u16::from_be_bytes([got[3], got[4]]) as usize;
            let mut rest = vec![0u8; len];
            server.read_exact(&mut rest).await.unwrap();
            got.extend_from_slice(&rest);
            // Dribble the answer byte by byte to exercise reassembly.
            for b in answer {
                server.write_all(&[b]).await.unwrap();
            }
            // Keep the server end open (silent) unless asked to close it.
            (got, if close { None } else { Some(server) })
        });
        let res = probe_version(
            &mut client,
            version,
            Some("mail.lab.test"),
            Duration::from_millis(1000),
        )
        .await;
        let (hello, _server) = server_task.await.unwrap();
        (res, hello)
    }

    #[tokio::test]
    async fn accepted_with_certificate() {
        let mut flight = server_hello(TLS12, 0xc02f);
        flight.extend_from_slice(&[11, 0, 0, 9, 0, 0, 6, 0, 0, 3, 0x30, 0x01, 0x00]);
        flight.extend_from_slice(&[14, 0, 0, 0]);
        let (res, hello) = run(TLS12, record(22, &flight), false).await;
        assert_eq!(&hello[9..11], &[3, 3]);
        assert_eq!(
            res.unwrap(),
            ProbeOutcome::Accepted {
                version: TLS12,
                cipher: 0xc02f,
                cipher_name: Some("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into()),
                certificates: vec![vec![0x30, 0x01, 0x00]],
            }
        );
    }

    #[tokio::test]
    async fn lower_version_is_refused() {
        let mut flight = server_hello(TLS10, 0xc014);
        flight.extend_from_slice(&[14, 0, 0, 0]);
        let (res, _) = run(TLS11, record(22, &flight), false).await;
        assert_eq!(
            res.unwrap(),
            ProbeOutcome::Refused {
                reason: "server answered with TLS 1.0 instead".into()
            }
        );
    }

    #[tokio::test]
    async fn alerts_are_named() {
        let (res, _) = run(TLS11, record(21, &[2, 70]), false).await;
        assert_eq!(
            res.unwrap(),
            ProbeOutcome::Refused {
                reason: "protocol_version alert".into()
            }
        );
        let (res, _) = run(TLS10, record(21, &[2, 40]), false).await;
        assert_eq!(
            res.unwrap(),
            ProbeOutcome::Refused {
                reason: "handshake_failure alert".into()
            }
        );
    }

    #[tokio::test]
    async fn close_before_answer_is_refused() {
        let (res, _) = run(TLS10, Vec::new(), true).await;
        assert_eq!(
            res.unwrap(),
            ProbeOutcome::Refused {
                reason: "connection closed".into()
            }
        );
    }

    #[tokio::test]
    async fn silence_is_timeout() {
        let (res, _) = run(TLS10, Vec::new(), false).await;
        assert!(matches!(res, Err(ProbeError::Timeout)), "{res:?}");
    }

    #[tokio::test]
    async fn close_after_server_hello_still_accepts() {
        let flight = server_hello(TLS10, 0x002f);
        let (res, _) = run(TLS10, record(22, &flight), true).await;
        assert!(matches!(
            res,
            Ok(ProbeOutcome::Accepted {
                version: TLS10,
                cipher: 0x002f,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn warning_alert_then_close_names_the_alert() {
        let (res, _) = run(TLS12, record(21, &[1, 112]), true).await;
        assert_eq!(
            res.unwrap(),
            ProbeOutcome::Refused {
                reason: "unrecognized_name alert (warning)".into()
            }
        );
    }

    #[tokio::test]
    async fn hello_retry_request_proves_tls13_only() {
        let mut body = vec![3, 3];
        body.extend_from_slice(&hello::HELLO_RETRY_REQUEST_RANDOM);
        body.extend_from_slice(&[0, 0x13, 0x01, 0, 0, 6, 0, 0x2b, 0, 2, 3, 4]);
        let mut hs = vec![2, 0, 0, body.len() as u8];
        hs.extend_from_slice(&body);
        let (res, hello) = run(TLS13, record(22, &hs), false).await;
        // legacy record version 0x0301, legacy_version 0x0303
        assert_eq!(&hello[..3], &[0x16, 3, 1]);
        assert_eq!(&hello[9..11], &[3, 3]);
        assert!(matches!(
            res.unwrap(),
            ProbeOutcome::Accepted {
                version: TLS13,
                cipher: 0x1301,
                ..
            }
        ));
        let (res, _) = run(TLS12, record(22, &hs), false).await;
        assert!(matches!(res.unwrap(), ProbeOutcome::Refused { .. }));
    }

    #[tokio::test]
    async fn plaintext_answer_is_invalid() {
        let (res, _) = run(TLS12, b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(), false).await;
        assert!(matches!(res, Err(ProbeError::Invalid(_))), "{res:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_dripping_bytes_cannot_stretch_the_answer_past_its_deadline() {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let mut hello = vec![0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut server, &mut hello).await;
            // A valid record header, then one byte just before every per-read timeout.
            let _ = server.write_all(&[22, 3, 3, 0x40, 0x00]).await;
            for _ in 0..1000 {
                tokio::time::sleep(Duration::from_millis(900)).await;
                if server.write_all(&[0]).await.is_err() {
                    break;
                }
            }
        });
        let started = tokio::time::Instant::now();
        let out = exchange(&mut client, TLS12, Some("h"), Duration::from_secs(1)).await;
        assert!(matches!(out, Err(ProbeError::Timeout)), "{out:?}");
        assert!(started.elapsed() <= Duration::from_millis(1100));
    }

    #[tokio::test]
    async fn endless_records_after_a_server_hello_stop_at_the_bound() {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let mut hello = vec![0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut server, &mut hello).await;
            let _ = server
                .write_all(&record(22, &server_hello(TLS12, 0x002f)))
                .await;
            // Heartbeat records for ever.
            let beat = record(24, &[1, 0, 16, 0, 0, 0]);
            loop {
                if server.write_all(&beat).await.is_err() {
                    break;
                }
            }
        });
        let out = exchange(&mut client, TLS12, Some("h"), Duration::from_secs(5)).await;
        // The ServerHello settles it; the endless rest is cut off.
        assert!(matches!(out, Ok(Answer::Server(_))), "{out:?}");
    }
}
