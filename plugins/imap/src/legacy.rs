//! Tells a server that speaks only TLS 1.1 or lower (which rustls cannot talk to, but the CRM
//! can) from one where TLS is broken: after a failed handshake, one hand-built ClientHello that
//! offers at most TLS 1.1 over a fresh connection, and a look at the ServerHello's version.
//! Without this, such a server would get a false `fail`.

use std::time::Duration;

use mailprobe_core::error::within;
use mailprobe_core::{NetError, TlsVersion};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A ClientHello offering TLS 1.1 at most (record version TLS 1.0), with the CBC suites old
/// servers have, SNI for `host`, and the extensions OpenSSL wants for ECDHE.
pub fn client_hello(host: &str) -> Vec<u8> {
    const SUITES: &[u16] = &[
        0xc013, 0xc014, 0xc009, 0xc00a, 0x0033, 0x0039, 0x002f, 0x0035, 0x000a,
    ];
    let mut ext = Vec::new();
    // server_name
    if !host.is_empty() && host.len() < 256 && host.parse::<std::net::IpAddr>().is_err() {
        let name = host.as_bytes();
        ext.extend_from_slice(&[0x00, 0x00]);
        ext.extend_from_slice(&((name.len() + 5) as u16).to_be_bytes());
        ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        ext.push(0);
        ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
        ext.extend_from_slice(name);
    }
    // supported_groups: secp256r1, secp384r1, x25519
    ext.extend_from_slice(&[
        0x00, 0x0a, 0x00, 0x08, 0x00, 0x06, 0x00, 0x17, 0x00, 0x18, 0x00, 0x1d,
    ]);
    // ec_point_formats: uncompressed
    ext.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    // renegotiation_info (empty)
    ext.extend_from_slice(&[0xff, 0x01, 0x00, 0x01, 0x00]);

    let mut body = vec![0x03, 0x02];
    body.extend((0..32u8).map(|i| i.wrapping_mul(37).wrapping_add(11)));
    body.push(0); // no session id
    body.extend_from_slice(&((SUITES.len() * 2) as u16).to_be_bytes());
    for s in SUITES {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[0x01, 0x00]); // compression: null
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);

    let mut hs = vec![0x01];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);

    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

/// Sends the legacy ClientHello on `stream` and returns the version of the ServerHello, when
/// the server answers with one at SSLv3..TLS 1.1.
pub async fn probe<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    wait: Duration,
) -> Result<Option<TlsVersion>, NetError> {
    within(wait, "a ServerHello", async {
        stream
            .write_all(&client_hello(host))
            .await
            .map_err(|e| NetError::from_io(&e))?;
        stream.flush().await.map_err(|e| NetError::from_io(&e))?;
        // Record header (5) + handshake type (1) + length (3) + server_version (2).
        let mut head = [0u8; 11];
        match stream.read_exact(&mut head).await {
            Ok(_) => {}
            Err(_) => return Ok(None),
        }
        if head[0] != 0x16 || head[5] != 0x02 {
            return Ok(None);
        }
        let version = u16::from_be_bytes([head[9], head[10]]);
        Ok(TlsVersion::from_wire(version).filter(|v| *v <= TlsVersion::Tls11))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    #[test]
    fn hello_is_well_formed() {
        let h = client_hello("mail.lab.test");
        assert_eq!(&h[..3], &[0x16, 0x03, 0x01]);
        let record_len = u16::from_be_bytes([h[3], h[4]]) as usize;
        assert_eq!(record_len, h.len() - 5);
        assert_eq!(h[5], 0x01);
        let hs_len = u32::from_be_bytes([0, h[6], h[7], h[8]]) as usize;
        assert_eq!(hs_len, h.len() - 9);
        assert_eq!(&h[9..11], &[0x03, 0x02]);
        assert!(h.windows(13).any(|w| w == b"mail.lab.test"));
    }

    async fn answer(bytes: &'static [u8]) -> Option<TlsVersion> {
        let (client, mut server) = duplex(4096);
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let _ = server.read(&mut buf).await;
            let _ = server.write_all(bytes).await;
        });
        probe(client, "mail.lab.test", Duration::from_secs(2))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn server_hello_versions() {
        let tls10 = b"\x16\x03\x01\x00\x51\x02\x00\x00\x4d\x03\x01";
        assert_eq!(answer(tls10).await, Some(TlsVersion::Tls10));
        let tls12 = b"\x16\x03\x03\x00\x51\x02\x00\x00\x4d\x03\x03";
        assert_eq!(answer(tls12).await, None);
        let alert = b"\x15\x03\x01\x00\x02\x02\x46";
        assert_eq!(answer(alert).await, None);
    }
}
