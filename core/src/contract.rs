//! The contract every check plugin must keep, as a harness its tests (and the binary's test of
//! every built-in) run, in the spirit of Vector's component compliance assertions:
//!
//! - it reports every requirement it declares (for the servers the target configures);
//! - it reports no requirement it does not declare;
//! - it finishes within the run's deadline, whatever the peer does.
//!
//! [`Peer`] makes the hostile peers the harness runs against: a closed port, a peer that
//! accepts and never speaks, and one that answers with garbage.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::driver::RunDriver;
use crate::model::{Endpoint, Protocol, Security, Target};
use crate::net::Budgets;
use crate::plugin::{CheckPlugin, catalog_of};
use crate::profile::Profile;
use crate::secret::Secret;
use crate::tls::Trust;

/// A misbehaving peer on loopback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// Nothing listens: connections are refused.
    Closed,
    /// Accepts and reads, never writes.
    Silent,
    /// Accepts and writes bytes that are no protocol's, then keeps reading.
    Garbage,
}

impl Peer {
    pub const ALL: [Peer; 3] = [Peer::Closed, Peer::Silent, Peer::Garbage];

    /// Starts the peer; returns its port. The peer lives as long as the runtime.
    pub async fn start(self) -> std::io::Result<u16> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        if self == Peer::Closed {
            drop(listener);
            return Ok(port);
        }
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if self == Peer::Garbage {
                        let junk: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
                        let _ = stream.write_all(b"\x00\xff garbage\r\n").await;
                        let _ = stream.write_all(&junk).await;
                    }
                    let mut sink = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut sink).await {
                        if n == 0 {
                            break;
                        }
                    }
                });
            }
        });
        Ok(port)
    }
}

/// A target with its IMAP and SMTP servers on two ports of loopback, as `security`, with a
/// short deadline.
pub fn target(ports: (u16, u16), security: Security, timeout: Duration) -> Target {
    let ep = |protocol, port| Endpoint {
        protocol,
        host: "contract.invalid".into(),
        port,
        security,
        connect_to: Some("127.0.0.1".into()),
        auto_security: false,
        source_address: None,
    };
    Target {
        mailbox: "contract".into(),
        profile: Arc::new(Profile::builtin("hubspot").expect("the built-in profile parses")),
        imap: ep(Protocol::Imap, ports.0),
        smtp: Some(ep(Protocol::Smtp, ports.1)),
        user: "contract@contract.invalid".into(),
        password: Secret::new("contract-password"),
        ca_file: None,
        allow_insecure_cert: false,
        timeout,
        roundtrip: None,
    }
}

/// What a plugin broke of the contract, if anything.
#[derive(Debug, PartialEq, Eq)]
pub struct Breach {
    pub plugin: String,
    pub peer: Peer,
    pub security: Security,
    pub what: String,
}

/// Runs `plugins` (in run order; the last is the one under test, the others are what it
/// depends on) against a target on `peer`, and checks every one of them kept the contract.
pub async fn check(
    plugins: &[Arc<dyn CheckPlugin>],
    peer: Peer,
    security: Security,
) -> Result<(), Breach> {
    let timeout = Duration::from_secs(2);
    let breach = |plugin: &str, what: String| Breach {
        plugin: plugin.to_string(),
        peer,
        security,
        what,
    };
    let mut ports = Vec::new();
    for _ in 0..2 {
        ports.push(
            peer.start()
                .await
                .map_err(|e| breach("-", format!("cannot start the peer: {e}")))?,
        );
    }
    let target = Arc::new(target((ports[0], ports[1]), security, timeout));
    let trust = Trust::load(None).map_err(|e| breach("-", e.to_string()))?;
    let catalog = Arc::new(catalog_of(plugins));
    let mut run = RunDriver::start(target, trust, Arc::new(Budgets::default()), catalog).await;
    // The run's deadline plus the slack the runner gives closing sessions.
    let bound = timeout + Duration::from_secs(3);
    for plugin in plugins {
        let name = plugin.info().name;
        let before: BTreeSet<String> = run
            .context()
            .results()
            .iter()
            .map(|r| r.id.clone())
            .collect();
        let mut cx = run.enter(&name);
        let ran = tokio::time::timeout(bound, plugin.run(&mut cx)).await;
        drop(cx);
        match ran {
            Err(_) => return Err(breach(&name, format!("still running after {bound:?}"))),
            Ok(Err(e)) => return Err(breach(&name, format!("failed as a plugin: {e}"))),
            Ok(Ok(())) => {}
        }
        let declared: BTreeSet<String> = plugin.info().requirements.into_iter().collect();
        let reported: BTreeSet<String> = run
            .context()
            .results()
            .iter()
            .map(|r| r.id.clone())
            .filter(|id| !before.contains(id))
            .collect();
        if let Some(extra) = reported.difference(&declared).next() {
            return Err(breach(&name, format!("reported undeclared `{extra}`")));
        }
        if let Some(missing) = declared.difference(&reported).next() {
            return Err(breach(&name, format!("did not report `{missing}`")));
        }
    }
    for h in run.finish().held {
        h.session.close(Duration::from_millis(200)).await;
    }
    Ok(())
}
