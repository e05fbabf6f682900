//! Connecting: name resolution (honouring `connect_to`), the per-server connection budget, and
//! connect errors told apart (refused, timeout, unreachable, DNS).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::NetError;
use crate::model::Endpoint;

/// The default number of connections the probe may hold to one server at once, across all
/// mailboxes. It leaves room for the CRM's own sessions while covering the CRM's needs per port
/// (3 IMAP or 2 SMTP).
pub const DEFAULT_SERVER_BUDGET: usize = 4;

/// Per-server connection budgets shared by every run of the process, so that the probe never
/// holds more than `per_server` connections to one `host:port`.
#[derive(Debug)]
pub struct Budgets {
    per_server: usize,
    servers: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets::new(DEFAULT_SERVER_BUDGET)
    }
}

impl Budgets {
    pub fn new(per_server: usize) -> Self {
        Budgets {
            per_server: per_server.max(1),
            servers: Mutex::new(HashMap::new()),
        }
    }
    pub fn per_server(&self) -> usize {
        self.per_server
    }
    /// The semaphore of one server, keyed by the name the user gave and the port.
    pub fn server(&self, endpoint: &Endpoint) -> Arc<Semaphore> {
        let key = endpoint.authority();
        let mut map = self
            .servers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(key)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_server)))
            .clone()
    }
    /// Takes `n` connection slots of a server, waiting at most `wait`.
    pub async fn acquire(
        &self,
        endpoint: &Endpoint,
        n: u32,
        wait: Duration,
    ) -> Result<OwnedSemaphorePermit, NetError> {
        let sem = self.server(endpoint);
        match tokio::time::timeout(wait, sem.acquire_many_owned(n)).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(NetError::BudgetExhausted {
                server: endpoint.authority(),
            }),
        }
    }
}

/// A TCP connection that holds a slot of its server's budget until it is dropped.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    _slot: Option<OwnedSemaphorePermit>,
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Resolves the address to dial: `connect_to` when set, else the host name.
pub async fn resolve(endpoint: &Endpoint, wait: Duration) -> Result<Vec<SocketAddr>, NetError> {
    let host = endpoint.dial_host();
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, endpoint.port)]);
    }
    let lookup = tokio::net::lookup_host((host.to_string(), endpoint.port));
    match tokio::time::timeout(wait, lookup).await {
        Err(_) => Err(NetError::Dns {
            host: host.to_string(),
            reason: format!("no answer within {wait:?}"),
        }),
        Ok(Err(e)) => Err(NetError::Dns {
            host: host.to_string(),
            reason: dns_reason(&e),
        }),
        Ok(Ok(addrs)) => {
            let addrs: Vec<_> = addrs.collect();
            if addrs.is_empty() {
                Err(NetError::Dns {
                    host: host.to_string(),
                    reason: "the name has no address".into(),
                })
            } else {
                Ok(addrs)
            }
        }
    }
}

fn dns_reason(e: &io::Error) -> String {
    let s = e.to_string();
    if s.contains("failed to lookup address information") {
        // getaddrinfo's text, e.g. "Name or service not known".
        s.rsplit(": ").next().unwrap_or(&s).to_string()
    } else {
        s
    }
}

/// The local address the kernel would use to reach `peer`, found without sending a packet.
/// It tells an IT team which address to allowlist when a firewall drops the probe.
pub fn local_address_for(peer: SocketAddr) -> Option<SocketAddr> {
    let bind: SocketAddr = if peer.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let sock = std::net::UdpSocket::bind(bind).ok()?;
    sock.connect(peer).ok()?;
    sock.local_addr().ok()
}

/// Dials one address, classifying the failure.
pub async fn dial(addr: SocketAddr, wait: Duration) -> Result<TcpStream, NetError> {
    dial_from(addr, None, wait).await
}

/// Checks at setup that `source` is an address of this machine, by binding a socket to it: a
/// probe told to connect from an address it does not have would otherwise fail every check
/// with a misleading network error.
pub fn check_source_address(source: IpAddr) -> Result<(), String> {
    std::net::TcpListener::bind(SocketAddr::new(source, 0))
        .map(drop)
        .map_err(|e| {
            format!(
                "source address {source} is not a local address of this machine ({e}); give one of its own addresses (see `ip address`), or leave the source address out"
            )
        })
}

/// Binds a socket to `source` (port chosen by the kernel) and connects it, so the server and
/// its firewall see the probe coming from that address.
async fn connect_from(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect(addr).await;
    };
    if source.is_ipv4() != addr.is_ipv4() {
        return Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("source address {source} cannot reach {addr} (different address family)"),
        ));
    }
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(addr).await
}

/// Dials one address from `source` when given, classifying the failure. A timeout names the
/// local address the server saw (the one to allowlist).
pub async fn dial_from(
    addr: SocketAddr,
    source: Option<IpAddr>,
    wait: Duration,
) -> Result<TcpStream, NetError> {
    let local = || match source {
        Some(ip) => ip.to_string(),
        None => local_address_for(addr)
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|| "an unknown local address".into()),
    };
    match tokio::time::timeout(wait, connect_from(addr, source)).await {
        Err(_) => Err(NetError::ConnectTimeout {
            address: addr,
            local: local(),
            after: wait,
        }),
        Ok(Err(e)) => Err(match e.kind() {
            io::ErrorKind::ConnectionRefused => NetError::Refused { address: addr },
            io::ErrorKind::TimedOut => NetError::ConnectTimeout {
                address: addr,
                local: local(),
                after: wait,
            },
            io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
                NetError::Unreachable {
                    address: addr,
                    reason: e.to_string(),
                }
            }
            _ => NetError::Io(format!("connect to {addr}: {e}")),
        }),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

/// Resolves and connects to an endpoint within its server budget: one slot is taken from
/// `budgets` (waiting at most `wait`) unless `slot` already holds one (a slot of a run's
/// reservation, see `RunContext::slot`).
pub async fn connect(
    endpoint: &Endpoint,
    budgets: &Budgets,
    slot: Option<OwnedSemaphorePermit>,
    wait: Duration,
) -> Result<Conn, NetError> {
    let slot = match slot {
        Some(s) => s,
        None => budgets.acquire(endpoint, 1, wait).await?,
    };
    let addrs = resolve(endpoint, wait).await?;
    let mut last = None;
    for addr in addrs {
        match dial_from(addr, endpoint.source_address, wait).await {
            Ok(stream) => {
                let local = stream
                    .local_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                return Ok(Conn {
                    stream,
                    peer: addr,
                    local,
                    _slot: Some(slot),
                });
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| NetError::Io("no address to connect to".into())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Protocol, Security};

    fn ep(port: u16) -> Endpoint {
        Endpoint {
            protocol: Protocol::Imap,
            host: "mail.lab.test".into(),
            port,
            security: Security::Tls,
            connect_to: Some("127.0.0.1".into()),
            auto_security: false,
            source_address: None,
        }
    }

    #[tokio::test]
    async fn refused_is_told_apart() {
        // Bind then drop to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let budgets = Budgets::new(2);
        let e = connect(&ep(port), &budgets, None, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(e, NetError::Refused { .. }), "{e:?}");
        assert_eq!(e.error_type(), "connection_refused");
    }

    #[tokio::test]
    async fn dns_failure_is_told_apart() {
        let mut e = ep(993);
        e.connect_to = Some("no-such-host.invalid".into());
        let err = connect(&e, &Budgets::new(1), None, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, NetError::Dns { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn budget_caps_connections_per_server() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let budgets = Budgets::new(2);
        let a = connect(&ep(port), &budgets, None, Duration::from_secs(1))
            .await
            .unwrap();
        let _b = connect(&ep(port), &budgets, None, Duration::from_secs(1))
            .await
            .unwrap();
        let c = connect(&ep(port), &budgets, None, Duration::from_millis(100)).await;
        assert!(matches!(c, Err(NetError::BudgetExhausted { .. })), "{c:?}");
        drop(a);
        connect(&ep(port), &budgets, None, Duration::from_secs(1))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn connects_from_the_source_address() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let mut e = ep(port);
        e.source_address = Some("127.0.0.2".parse().unwrap());
        let c = connect(&e, &Budgets::new(1), None, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(c.local.ip().to_string(), "127.0.0.2");
        let (_, seen) = l.accept().await.unwrap();
        assert_eq!(seen.ip().to_string(), "127.0.0.2");
    }

    #[test]
    fn a_foreign_source_address_is_refused_at_setup() {
        assert!(check_source_address("127.0.0.2".parse().unwrap()).is_ok());
        let e = check_source_address("192.0.2.1".parse().unwrap()).unwrap_err();
        assert!(e.contains("not a local address"), "{e}");
    }

    #[test]
    fn local_address_is_found_without_traffic() {
        let a = local_address_for("127.0.0.1:9".parse().unwrap()).unwrap();
        assert!(a.ip().is_loopback());
    }
}
