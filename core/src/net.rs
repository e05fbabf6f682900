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
use crate::model::{Endpoint, Protocol};

/// The default number of connections the probe may hold at once to one server address (per
/// protocol), across all mailboxes and users: room for two runs that each hold the CRM's 3 IMAP
/// (or 2 SMTP) sessions, and politeness towards a provider that hosts many of the mailboxes.
pub const DEFAULT_SERVER_BUDGET: usize = 8;

/// Where a run's connections of one protocol go: the server's address as resolved when the run
/// reserved its connections (or, when the name did not resolve, the name itself, so that the
/// run still goes on to report the DNS failure). Host names that are aliases of one address,
/// and the ports of one address (IMAP 143 and 993), share one key: servers count connections
/// per address, not per name the probe was given.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerKey {
    pub address: String,
    pub protocol: Protocol,
}

impl std::fmt::Display for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.address, self.protocol)
    }
}

impl ServerKey {
    /// The key of an endpoint: its first resolved address, waiting at most `wait` for DNS.
    pub async fn resolve(endpoint: &Endpoint, wait: Duration) -> ServerKey {
        let addrs = resolve(endpoint, wait).await.unwrap_or_default();
        ServerKey::of(endpoint, &addrs)
    }

    /// The key of an endpoint resolved to `addrs`: the first address, else the name itself.
    fn of(endpoint: &Endpoint, addrs: &[SocketAddr]) -> ServerKey {
        ServerKey {
            address: addrs
                .first()
                .map(|a| a.ip().to_string())
                .unwrap_or_else(|| endpoint.dial_host().to_string()),
            protocol: endpoint.protocol,
        }
    }
}

/// A run's share of one server: slots of its user's budget and of the server address's cap,
/// held together until dropped.
#[derive(Debug)]
pub struct Share {
    pub size: usize,
    _user: OwnedSemaphorePermit,
    _server: OwnedSemaphorePermit,
}

/// The connection budgets shared by every run of the process:
///
/// * per **user and server address** (and protocol): at most as many connections as the CRM
///   holds for one user (the profile's count), which is what servers limit per user and client
///   address (Dovecot's `mail_max_userip_connections`). Two runs of one user on one server take
///   turns; runs of different users do not wait for each other here.
/// * per **server address** (and protocol), across all users: at most `per_server`
///   (`server_connections`), the probe's politeness towards a server that hosts many of the
///   mailboxes.
///
/// A run takes its share of both before its check starts (see `RunContext::reserve_slots`):
/// the wait is a queue, bounded by [`Budgets::queue_limit`] or else the check's timeout.
#[derive(Debug)]
pub struct Budgets {
    per_server: usize,
    /// How long a run may queue for its share; `None`: as long as its timeout.
    queue_limit: Mutex<Option<Duration>>,
    servers: Mutex<HashMap<ServerKey, Arc<Semaphore>>>,
    users: Mutex<UserBudgets>,
}

#[derive(Debug, Default)]
struct UserBudgets {
    /// Each user's semaphore and its size.
    map: HashMap<(String, ServerKey), (Arc<Semaphore>, usize)>,
    /// The map's size after the last sweep of unused entries (a sweep runs when it doubles).
    swept_at: usize,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets::new(DEFAULT_SERVER_BUDGET)
    }
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Budgets {
    pub fn new(per_server: usize) -> Self {
        Budgets {
            per_server: per_server.max(1),
            queue_limit: Mutex::new(None),
            servers: Mutex::new(HashMap::new()),
            users: Mutex::new(UserBudgets::default()),
        }
    }
    /// The connections the probe may hold at once to one server address (per protocol).
    pub fn per_server(&self) -> usize {
        self.per_server
    }
    /// Lets runs queue up to `limit` for their share instead of their timeout (the daemon
    /// passes its interval: a run that waited that long is due again anyway).
    pub fn set_queue_limit(&self, limit: Option<Duration>) {
        *locked(&self.queue_limit) = limit;
    }
    /// How long a run may queue for its share; `None` means its own timeout.
    pub fn queue_limit(&self) -> Option<Duration> {
        *locked(&self.queue_limit)
    }
    /// The cap semaphore of one server address.
    pub fn server(&self, key: &ServerKey) -> Arc<Semaphore> {
        locked(&self.servers)
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_server)))
            .clone()
    }
    /// The budget of one user on one server address and its size: `size` slots when it is
    /// created (the profile's count; mailboxes of one user share the first one's).
    fn user(&self, user: &str, key: &ServerKey, size: usize) -> (Arc<Semaphore>, usize) {
        let mut users = locked(&self.users);
        if users.map.len() >= 2 * users.swept_at.max(64) {
            // Nobody holds or waits for an entry whose only reference is the map's.
            users.map.retain(|_, (s, _)| Arc::strong_count(s) > 1);
            users.swept_at = users.map.len();
        }
        let size = size.max(1);
        let (sem, size) = users
            .map
            .entry((user.to_string(), key.clone()))
            .or_insert_with(|| (Arc::new(Semaphore::new(size)), size));
        (sem.clone(), *size)
    }
    /// Takes `n` slots of a server address's cap, waiting at most `wait`.
    pub async fn acquire(
        &self,
        key: &ServerKey,
        n: u32,
        wait: Duration,
    ) -> Result<OwnedSemaphorePermit, NetError> {
        let sem = self.server(key);
        let n = n.min(self.per_server as u32);
        match tokio::time::timeout(wait, sem.acquire_many_owned(n)).await {
            Ok(Ok(p)) => Ok(p),
            _ => Err(NetError::BudgetExhausted {
                server: key.to_string(),
            }),
        }
    }
    /// Takes a run's share of a server for `user`: `n` connections (at most the server cap),
    /// first from the user's budget on that address, then from the address's cap, always in
    /// that order, so runs waiting for each other cannot deadlock. Waits at most `wait` in all.
    pub async fn reserve(
        &self,
        user: &str,
        key: &ServerKey,
        n: usize,
        wait: Duration,
    ) -> Result<Share, NetError> {
        let n = n.clamp(1, self.per_server);
        let (user_sem, size) = self.user(user, key, n);
        let n = n.min(size);
        let take = async {
            let u = user_sem.acquire_many_owned(n as u32).await.ok()?;
            let s = self.server(key).acquire_many_owned(n as u32).await.ok()?;
            Some(Share {
                size: n,
                _user: u,
                _server: s,
            })
        };
        match tokio::time::timeout(wait, take).await {
            Ok(Some(share)) => Ok(share),
            _ => Err(NetError::BudgetExhausted {
                server: key.to_string(),
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

/// The most addresses of one name that a check runs against: a name with more (a large
/// round-robin pool) is checked at its first ones, in the resolver's order.
pub const MAX_ADDRESSES: usize = 8;

/// Which addresses of a name are checked (`--ip-version`, config `ip_version`): like
/// monitoring-plugins' `-4`/`-6`, or blackbox_exporter's `preferred_ip_protocol` without the
/// fallback. `Any` (the default) checks every address the name resolves to, since the CRM
/// connects to whichever one it gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum IpVersion {
    V4,
    V6,
    #[default]
    Any,
}

impl IpVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            IpVersion::V4 => "4",
            IpVersion::V6 => "6",
            IpVersion::Any => "any",
        }
    }
    /// Whether `ip` is of this version.
    pub fn admits(self, ip: IpAddr) -> bool {
        match self {
            IpVersion::V4 => ip.is_ipv4(),
            IpVersion::V6 => ip.is_ipv6(),
            IpVersion::Any => true,
        }
    }
}

impl std::fmt::Display for IpVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for IpVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "4" | "ipv4" | "ip4" => Ok(IpVersion::V4),
            "6" | "ipv6" | "ip6" => Ok(IpVersion::V6),
            "any" => Ok(IpVersion::Any),
            _ => Err(format!("`{s}` is not an IP version; give 4, 6 or any")),
        }
    }
}

impl serde::Serialize for IpVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for IpVersion {
    /// YAML reads `ip_version: 4` as a number and `any` as a string: both are taken.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Number(n) => n.to_string(),
            Raw::Text(t) => t,
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The addresses a check of `endpoint` runs against: `connect_to` alone when set (whatever
/// its version: the user named it), else the name's addresses of `version`, at most
/// [`MAX_ADDRESSES`], without duplicates. A name with addresses of the other version only is a
/// DNS failure that says so.
pub async fn resolve_all(
    endpoint: &Endpoint,
    version: IpVersion,
    wait: Duration,
) -> Result<Vec<IpAddr>, NetError> {
    let all = crate::scope::within(
        crate::scope::RunScope {
            ip_version: version,
            transcript: None,
        },
        resolve(endpoint, wait),
    )
    .await?;
    if endpoint.connect_to.is_some() {
        return Ok(all.iter().map(|a| a.ip()).take(1).collect());
    }
    let mut ips: Vec<IpAddr> = Vec::new();
    for a in &all {
        if !ips.contains(&a.ip()) {
            ips.push(a.ip());
        }
    }
    ips.truncate(MAX_ADDRESSES);
    Ok(ips)
}

/// Resolves the address to dial: `connect_to` when set, else the host name, keeping only the
/// addresses of the run's IP version (see [`crate::scope`]).
pub async fn resolve(endpoint: &Endpoint, wait: Duration) -> Result<Vec<SocketAddr>, NetError> {
    let all = resolve_unfiltered(endpoint, wait).await?;
    let version = crate::scope::ip_version();
    if endpoint.connect_to.is_some() || version == IpVersion::Any {
        return Ok(all);
    }
    let kept: Vec<SocketAddr> = all
        .iter()
        .copied()
        .filter(|a| version.admits(a.ip()))
        .collect();
    if kept.is_empty() {
        return Err(NetError::Dns {
            host: endpoint.host.clone(),
            reason: format!(
                "the name has no IPv{version} address (it resolves to {}); drop --ip-version or ip_version, or set it to any",
                all.iter()
                    .map(|a| a.ip().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    Ok(kept)
}

async fn resolve_unfiltered(
    endpoint: &Endpoint,
    wait: Duration,
) -> Result<Vec<SocketAddr>, NetError> {
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

/// Resolves and connects to an endpoint within its server budget: one slot of the address's
/// cap is taken from `budgets` (waiting at most `wait`) unless `slot` already holds one (a slot
/// of a run's reservation, see `RunContext::slot`).
pub async fn connect(
    endpoint: &Endpoint,
    budgets: &Budgets,
    slot: Option<OwnedSemaphorePermit>,
    wait: Duration,
) -> Result<Conn, NetError> {
    let addrs = resolve(endpoint, wait).await?;
    let slot = match slot {
        Some(s) => s,
        None => {
            budgets
                .acquire(&ServerKey::of(endpoint, &addrs), 1, wait)
                .await?
        }
    };
    let mut last = None;
    for addr in addrs {
        crate::scope::note(|| format!("connecting to {} at {addr}", endpoint.authority()));
        let dialled = dial_from(addr, endpoint.source_address, wait).await;
        if let Err(e) = &dialled {
            crate::scope::note(|| format!("connection to {addr} failed: {e}"));
        }
        match dialled {
            Ok(stream) => {
                let local = stream
                    .local_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                crate::scope::note(|| format!("connected to {addr} from {local}"));
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

    #[test]
    fn ip_version_parses_numbers_and_words() {
        assert_eq!("4".parse::<IpVersion>(), Ok(IpVersion::V4));
        assert_eq!("IPv6".parse::<IpVersion>(), Ok(IpVersion::V6));
        assert_eq!("any".parse::<IpVersion>(), Ok(IpVersion::Any));
        assert!(
            "5".parse::<IpVersion>()
                .unwrap_err()
                .contains("4, 6 or any")
        );
        let v: IpVersion = serde_norway::from_str("4").unwrap();
        assert_eq!(v, IpVersion::V4);
        let v: IpVersion = serde_norway::from_str("any").unwrap();
        assert_eq!(v, IpVersion::Any);
    }

    #[tokio::test]
    async fn resolve_all_filters_by_version_and_keeps_connect_to() {
        let mut e = ep(993);
        e.connect_to = None;
        e.host = "localhost".into();
        let v4 = resolve_all(&e, IpVersion::V4, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(!v4.is_empty() && v4.iter().all(|ip| ip.is_ipv4()), "{v4:?}");
        let any = resolve_all(&e, IpVersion::Any, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(
            any.len() <= MAX_ADDRESSES && any.contains(&v4[0]),
            "{any:?}"
        );
        // connect_to wins, whatever the version asked.
        let only = resolve_all(&ep(993), IpVersion::V6, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(only, vec![IpAddr::from([127, 0, 0, 1])]);
        // A literal of the other version is no address of this one.
        let mut lit = ep(993);
        lit.connect_to = None;
        lit.host = "127.0.0.1".into();
        let err = resolve_all(&lit, IpVersion::V6, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no IPv6 address"), "{err}");
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
    async fn budget_caps_connections_per_server_address() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let budgets = Budgets::new(2);
        let a = connect(&ep(port), &budgets, None, Duration::from_secs(1))
            .await
            .unwrap();
        // Another name and port of the same address count against the same cap.
        let mut alias = ep(port);
        alias.host = "alias.lab.test".into();
        let _b = connect(&alias, &budgets, None, Duration::from_secs(1))
            .await
            .unwrap();
        let c = connect(&ep(port), &budgets, None, Duration::from_millis(100)).await;
        assert!(matches!(c, Err(NetError::BudgetExhausted { .. })), "{c:?}");
        drop(a);
        connect(&ep(port), &budgets, None, Duration::from_secs(1))
            .await
            .unwrap();
    }

    fn key(address: &str) -> ServerKey {
        ServerKey {
            address: address.into(),
            protocol: Protocol::Imap,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn two_users_share_a_server_but_one_user_takes_turns() {
        let budgets = Budgets::new(8);
        let wait = Duration::from_secs(1);
        let alice = budgets
            .reserve("alice", &key("192.0.2.1"), 3, wait)
            .await
            .unwrap();
        // Another user on the same server runs at once...
        let bob = budgets
            .reserve("bob", &key("192.0.2.1"), 3, wait)
            .await
            .unwrap();
        assert_eq!((alice.size, bob.size), (3, 3));
        // ...the same user on the same address (another alias or port) waits for the first run,
        let again = budgets.reserve("alice", &key("192.0.2.1"), 3, wait).await;
        assert!(
            matches!(again, Err(NetError::BudgetExhausted { .. })),
            "{again:?}"
        );
        // ...and on another address does not.
        budgets
            .reserve("alice", &key("192.0.2.2"), 3, wait)
            .await
            .unwrap();
        drop(alice);
        budgets
            .reserve("alice", &key("192.0.2.1"), 3, wait)
            .await
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_server_cap_bounds_all_users_together() {
        let budgets = Budgets::new(6);
        let wait = Duration::from_secs(1);
        let a = budgets
            .reserve("a", &key("192.0.2.1"), 3, wait)
            .await
            .unwrap();
        let _b = budgets
            .reserve("b", &key("192.0.2.1"), 3, wait)
            .await
            .unwrap();
        let c = budgets.reserve("c", &key("192.0.2.1"), 3, wait).await;
        assert!(matches!(c, Err(NetError::BudgetExhausted { .. })), "{c:?}");
        // The queue: `c` gets its share as soon as `a` is done.
        let waiting = tokio::spawn({
            let budgets = Arc::new(budgets);
            async move {
                budgets
                    .reserve("c", &key("192.0.2.1"), 3, Duration::from_secs(60))
                    .await
                    .map(|s| s.size)
            }
        });
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(a);
        assert_eq!(waiting.await.unwrap().unwrap(), 3);
        // A share never exceeds the cap.
        let small = Budgets::new(2);
        assert_eq!(
            small.reserve("d", &key("x"), 3, wait).await.unwrap().size,
            2
        );
    }

    #[tokio::test]
    async fn an_unresolvable_name_is_its_own_key() {
        let mut e = ep(993);
        e.connect_to = Some("no-such-host.invalid".into());
        let k = ServerKey::resolve(&e, Duration::from_secs(5)).await;
        assert_eq!(k.address, "no-such-host.invalid");
        let k = ServerKey::resolve(&ep(993), Duration::from_secs(5)).await;
        assert_eq!(k.address, "127.0.0.1");
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
