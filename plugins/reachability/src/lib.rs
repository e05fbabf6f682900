//! The `reachability` check: can the probe open a TCP connection to the IMAP and SMTP ports?
//! It tells a refused connection (nothing listens, or a firewall rejects) from a timeout (a
//! firewall silently dropping: allowlist the probe's address) and from a DNS failure.
#![forbid(unsafe_code)]

pub mod detect;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use mailprobe_core::context::NetErrorView;
use mailprobe_core::net;
use mailprobe_core::plugin::{BoxFuture, PluginError};
use mailprobe_core::{
    CheckPlugin, Endpoint, NetError, PluginInfo, Protocol, RequirementResult, RequirementSpec,
    RunContext, Security, serde_fact,
};
use serde::Serialize;
use serde_json::json;

pub const NAME: &str = "reachability";

/// The reachability plugin.
#[derive(Debug, Default)]
pub struct Reachability;

/// Reachability of one port.
#[derive(Clone, Debug, Serialize)]
pub struct Reach {
    pub address: Option<SocketAddr>,
    pub local: Option<SocketAddr>,
    pub error: Option<NetErrorView>,
}

/// What this plugin found of each port, for the plugins after it.
#[derive(Debug, Default, Serialize)]
pub struct Reachable(pub BTreeMap<Protocol, Reach>);
serde_fact!(Reachable, "reach");

/// The requirement of one protocol's port.
pub fn reachable(p: Protocol) -> String {
    p.requirement("reachable")
}

/// The plugin, as the binary registers it.
pub fn plugin() -> std::sync::Arc<dyn CheckPlugin> {
    std::sync::Arc::new(Reachability)
}

impl CheckPlugin for Reachability {
    fn info(&self) -> PluginInfo {
        let spec = |p: Protocol| {
            RequirementSpec::new(reachable(p), "TCP connect to the port succeeds")
                .on(p)
                .passes("a TCP connection to the port succeeds")
                .fails("the connection is refused, times out (a firewall that drops: allowlist the probe's address), or the name does not resolve")
                .evidence("address", "the address connected to")
                .evidence("addresses", "when the name has several addresses: each one checked, with this requirement's status there")
                .evidence("local_address", "the probe's own address, the source address when one is given (the one to allowlist)")
                .evidence("error", "what went wrong, where it failed")
                .evidence("security", "on a port that is not a well-known one, with the mode left to the probe: `tls` or `starttls`, as found (then `security_detected` is true)")
        };
        PluginInfo::builtin(NAME, vec![spec(Protocol::Imap), spec(Protocol::Smtp)])
    }

    fn run<'a>(&'a self, cx: &'a mut RunContext) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(async move {
            let endpoints: Vec<Endpoint> = cx.target.endpoints().cloned().collect();
            // Both ports at once, each bounded by most of the deadline, so a firewalled IMAP port
            // does not eat the time the SMTP port needs, and the result is a timeout of its own
            // rather than the run's deadline.
            let wait = cx.remaining().mul_f64(0.75);
            let attempts: Vec<_> = endpoints
                .iter()
                .map(|ep| {
                    let job = cx.connect_job(ep, wait);
                    async move {
                        let started = std::time::Instant::now();
                        let (timer, outcome) = job.await;
                        (timer, outcome, started.elapsed())
                    }
                })
                .collect();
            let outcomes = futures::future::join_all(attempts).await;
            for (ep, (timer, mut outcome, took)) in endpoints.iter().zip(outcomes) {
                cx.record_connect(timer, ep, &outcome);
                let found = match (&mut outcome, ep.auto_security) {
                    (Ok(conn), true) => Some(find_security(cx, ep, conn, took).await),
                    _ => None,
                };
                let untouched = found.is_none();
                judge(cx, ep, &outcome, found);
                // The next plugin to connect to the port starts from this connection.
                if let (Ok(conn), true) = (outcome, untouched) {
                    cx.hand_on(ep.protocol, conn);
                }
            }
            Ok(())
        })
    }
}

/// Finds out how a port is secured (see [`detect`]) as the `detect_security` step, and makes
/// the run's target say so for every plugin after this one. A port that cannot be told keeps
/// the guess (STARTTLS), and the encryption check then reports what it meets.
async fn find_security(
    cx: &mut RunContext,
    ep: &Endpoint,
    conn: &mut net::Conn,
    connect_time: std::time::Duration,
) -> Result<Security, NetError> {
    let wait = cx.io_timeout();
    let greeting = detect::greeting_wait(connect_time);
    let host = ep.host.clone();
    let found = cx
        .step(
            "detect_security",
            Some(ep),
            detect::detect(conn, &host, greeting, wait),
        )
        .await;
    if let Ok(security) = found {
        let mut target = (*cx.target).clone();
        let endpoint = match ep.protocol {
            Protocol::Imap => Some(&mut target.imap),
            Protocol::Smtp => target.smtp.as_mut(),
        };
        if let Some(e) = endpoint {
            e.security = security;
        }
        cx.target = std::sync::Arc::new(target);
    }
    found
}

fn judge(
    cx: &mut RunContext,
    ep: &Endpoint,
    outcome: &Result<net::Conn, NetError>,
    found: Option<Result<Security, NetError>>,
) {
    let id = ep.protocol.requirement("reachable");
    let mut result = match outcome {
        Ok(conn) => RequirementResult::pass(
            &id,
            format!("connected to {} ({})", ep.authority(), conn.peer),
        )
        .with("address", conn.peer.to_string())
        .with("local_address", conn.local.to_string()),
        Err(e) => judge_failure(&id, ep, e),
    };
    match found {
        Some(Ok(security)) => {
            result = result
                .with("security", security.as_str())
                .with("security_detected", true);
        }
        Some(Err(e)) if e.to_string().contains(detect::NEITHER) => {
            // Reachable, but not a mail server the CRM can use: said so, rather than left to a
            // greeting that will never come.
            result = RequirementResult::fail(
                &id,
                format!("{} answers, but {e}", ep.authority()),
                format!(
                    "Point mailprobe (and the CRM) at the {} port of the mail server: port {} answers with something else.",
                    service(ep.protocol),
                    ep.port
                ),
            )
            .with("security_detection_error", e.to_string());
        }
        Some(Err(e)) => {
            result = result.with("security_detection_error", e.to_string());
        }
        None => {}
    }
    cx.facts.entry::<Reachable>().0.insert(
        ep.protocol,
        match outcome {
            Ok(c) => Reach {
                address: Some(c.peer),
                local: Some(c.local),
                error: None,
            },
            Err(e) => Reach {
                address: None,
                local: None,
                error: Some(e.into()),
            },
        },
    );
    cx.report(result);
}

fn service(p: Protocol) -> &'static str {
    match p {
        Protocol::Imap => "IMAP",
        Protocol::Smtp => "SMTP submission",
    }
}

/// Turns a connect failure into a failing result with a remedy that fits its cause.
fn judge_failure(id: &str, ep: &Endpoint, e: &NetError) -> RequirementResult {
    let port = ep.port;
    let (summary, remedy, address) = match e {
        NetError::Refused { address } => (
            format!("connection to {address} refused"),
            format!(
                "Nothing accepts connections on port {port} of {host}, or a firewall rejects them: start the {svc} service on port {port} (or open the port), or point mailprobe at the right port.",
                host = ep.host,
                svc = service(ep.protocol)
            ),
            Some(address.to_string()),
        ),
        NetError::ConnectTimeout { address, local, after } => (
            format!("connection to {address} timed out after {after:?} (probably dropped by a firewall)"),
            format!(
                "Packets to port {port} are silently dropped, which is what a firewall does: allowlist the probe's address {local} (and the CRM's addresses) for port {port} on {host}.",
                host = ep.host
            ),
            Some(address.to_string()),
        ),
        NetError::Unreachable { address, reason } => (
            format!("{address} is unreachable: {reason}"),
            "Check the routing between the probe and the server, and that the address is right.".to_string(),
            Some(address.to_string()),
        ),
        NetError::Dns { host, reason } => (
            format!("DNS lookup of {host} failed: {reason}"),
            format!("Check the host name `{host}`: publish an A/AAAA record for it, or fix the name in the configuration."),
            None,
        ),
        NetError::BudgetExhausted { server } => (
            format!("no free connection slot to {server} before the deadline"),
            "Other checks held all the probe's connections to this server: raise server_connections or the timeout, or check fewer mailboxes of this server at once.".to_string(),
            None,
        ),
        other => (
            format!("cannot connect: {other}"),
            "Check that the server is up and reachable from the probe.".to_string(),
            None,
        ),
    };
    let mut r = RequirementResult::fail(id, summary, remedy).with_error(e);
    if let Some(a) = address {
        r = r.with("address", a);
    }
    if let NetError::ConnectTimeout { local, after, .. } = e {
        r = r
            .with("local_address", local.clone())
            .with("timeout_ms", json!(after.as_millis() as u64));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailprobe_core::Security;
    use std::time::Duration;

    fn ep() -> Endpoint {
        Endpoint {
            protocol: Protocol::Imap,
            host: "imap.example.com".into(),
            port: 993,
            security: Security::Tls,
            connect_to: None,
            auto_security: false,
            source_address: None,
        }
    }

    #[test]
    fn refused_says_refused() {
        let r = judge_failure(
            "imap.reachable",
            &ep(),
            &NetError::Refused {
                address: "192.0.2.1:993".parse().unwrap(),
            },
        );
        assert!(r.evidence["error"].as_str().unwrap().contains("refused"));
        assert_eq!(r.evidence["address"], "192.0.2.1:993");
    }

    #[test]
    fn timeout_names_the_local_address_to_allowlist() {
        let r = judge_failure(
            "imap.reachable",
            &ep(),
            &NetError::ConnectTimeout {
                address: "192.0.2.1:993".parse().unwrap(),
                local: "198.51.100.7".into(),
                after: Duration::from_secs(10),
            },
        );
        assert!(r.summary.contains("timed out"));
        assert!(
            r.remedy
                .as_deref()
                .unwrap()
                .contains("allowlist the probe's address 198.51.100.7")
        );
        assert_eq!(r.error_type(), Some("timeout"));
    }

    /// A reachability-only run verifies no certificate, so it must not pay for parsing the
    /// system's trust store.
    #[tokio::test]
    async fn a_reachability_run_loads_no_trust_anchors() {
        use mailprobe_core::model::Target;
        use mailprobe_core::net::Budgets;
        use mailprobe_core::profile::Profile;
        use mailprobe_core::secret::Secret;
        use mailprobe_core::tls::Trust;
        use std::sync::Arc;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accept = tokio::spawn(async move {
            let _held = listener.accept().await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        });
        let target = Arc::new(Target {
            mailbox: "reach".into(),
            profile: Arc::new(Profile::builtin("hubspot").unwrap()),
            imap: Endpoint {
                protocol: Protocol::Imap,
                host: "127.0.0.1".into(),
                port,
                security: Security::Tls,
                connect_to: None,
                auto_security: false,
                source_address: None,
            },
            smtp: None,
            user: "u".into(),
            password: Secret::new("p"),
            ca_file: None,
            allow_insecure_cert: false,
            timeout: Duration::from_secs(5),
            roundtrip: None,
        });
        let trust = Trust::load(None).unwrap();
        let plugins: Vec<Arc<dyn CheckPlugin>> = vec![Arc::new(Reachability)];
        let catalog = Arc::new(mailprobe_core::plugin::catalog_of(&plugins));
        let mut cx = RunContext::new(target, trust.clone(), Arc::new(Budgets::default()))
            .with_catalog(catalog);
        cx.reserve_slots().await;
        Reachability.run(&mut cx).await.unwrap();
        let reach = cx
            .result("imap.reachable")
            .expect("imap.reachable reported");
        assert_eq!(reach.status, mailprobe_core::Status::Pass, "{reach:?}");
        assert!(!trust.roots.is_loaded());
        accept.abort();
    }
}
