//! The `reachability` check: can the probe open a TCP connection to the IMAP and SMTP ports?
//! It tells a refused connection (nothing listens, or a firewall rejects) from a timeout (a
//! firewall silently dropping: allowlist the probe's address) and from a DNS failure.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use mailprobe_core::context::{Reach, StepTimer};
use mailprobe_core::net;
use mailprobe_core::plugin::{BoxFuture, PluginError};
use mailprobe_core::{
    CheckPlugin, Endpoint, NetError, PluginInfo, Protocol, RequirementResult, RunContext,
};
use serde_json::json;

pub const NAME: &str = "reachability";

/// The reachability plugin.
#[derive(Debug, Default)]
pub struct Reachability;

impl CheckPlugin for Reachability {
    fn info(&self) -> PluginInfo {
        PluginInfo::builtin(NAME, &["imap.reachable", "smtp.reachable"], &[])
    }

    fn run<'a>(&'a self, cx: &'a mut RunContext) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin(async move {
            let endpoints: Vec<Endpoint> = cx.target.endpoints().cloned().collect();
            // Both ports at once, each bounded by most of the deadline, so a firewalled IMAP port
            // does not eat the time the SMTP port needs, and the result is a timeout of its own
            // rather than the run's deadline.
            let wait = cx.remaining().mul_f64(0.75);
            let budgets = cx.budgets.clone();
            let attempts = endpoints.iter().map(|ep| {
                let budgets = budgets.clone();
                let slot = cx.slot(ep.protocol, wait);
                async move {
                    let timer = StepTimer::start();
                    let out = match slot.await {
                        Ok(slot) => net::connect(ep, &budgets, Some(slot), wait).await,
                        Err(e) => Err(e),
                    };
                    (timer, out)
                }
            });
            let outcomes = futures::future::join_all(attempts).await;
            for (ep, (timer, outcome)) in endpoints.iter().zip(outcomes) {
                let mut attrs = BTreeMap::new();
                if let Ok(c) = &outcome {
                    attrs.insert("network.peer.address".into(), c.peer.ip().to_string());
                    attrs.insert("network.peer.port".into(), c.peer.port().to_string());
                }
                cx.record_step(timer, "connect", Some(ep), &outcome, attrs);
                judge(cx, ep, &outcome);
            }
            Ok(())
        })
    }
}

fn judge(cx: &mut RunContext, ep: &Endpoint, outcome: &Result<net::Conn, NetError>) {
    let id = ep.protocol.requirement("reachable");
    let result = match outcome {
        Ok(conn) => RequirementResult::pass(
            &id,
            format!("connected to {} ({})", ep.authority(), conn.peer),
        )
        .with("address", conn.peer.to_string())
        .with("local_address", conn.local.to_string()),
        Err(e) => judge_failure(&id, ep, e),
    };
    cx.facts.reach.insert(
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
    let mut r = RequirementResult::fail(id, summary, remedy)
        .with("error", e.to_string())
        .with("error_type", e.error_type());
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
        assert_eq!(r.evidence["error_type"], "timeout");
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
            },
            smtp: None,
            user: "u".into(),
            password: Secret::new("p"),
            ca_file: None,
            allow_insecure_cert: false,
            timeout: Duration::from_secs(5),
        });
        let trust = Trust::load(None).unwrap();
        let plugins: Vec<Arc<dyn CheckPlugin>> = vec![Arc::new(Reachability)];
        let out = mailprobe_core::runner::run_target(
            target,
            trust.clone(),
            Arc::new(Budgets::default()),
            &plugins,
        )
        .await;
        let reach = out
            .report
            .requirements
            .iter()
            .find(|r| r.id == "imap.reachable")
            .expect("imap.reachable reported");
        assert_eq!(reach.status, mailprobe_core::Status::Pass, "{reach:?}");
        assert!(!trust.roots.is_loaded());
        accept.abort();
    }
}
