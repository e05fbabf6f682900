//! The admin listener: how connections are admitted and served, around whatever routes the
//! router has (so every route, present and future, gets the same protection).
//!
//! - **Admission.** Every connection is accepted at once (nothing waits in the kernel's
//!   backlog), then kept only while its source has fewer than [`PER_SOURCE`] connections open
//!   (an IPv6 source counts by its /64) and the listener fewer than [`TOTAL`]; otherwise it is
//!   closed right away. One attacker's slowloris or connection flood fills its own share,
//!   never the places of the kubelet's probe or Prometheus' scrape, which come from other
//!   addresses.
//! - **Deadlines.** The TLS handshake and each request head must be complete within
//!   [`HEAD_DEADLINE`] of their start (one byte every few seconds does not extend it), and a
//!   connection silent for [`IDLE`] is closed.
//! - **Per request** ([`guard`]): basic auth when the web config has users; `POST /-/reload`
//!   and any other state-changing request only with `--web.enable-lifecycle`, never from a
//!   browser page (an `Origin` header, a cross-site `Sec-Fetch-Site`) and never with a form
//!   content type; the web config's response headers.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

use crate::web::WebOptions;

/// Connections one source may hold open at once.
pub const PER_SOURCE: usize = 16;
/// Connections held open at once in all.
pub const TOTAL: usize = 512;
/// The TLS handshake and each request head are complete within this, or the connection closes.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(10);
/// A connection on which nothing arrives for this long is closed.
pub const IDLE: Duration = Duration::from_secs(30);

/// The message `POST /-/reload` gets without `--web.enable-lifecycle` (as Prometheus words it,
/// plus the flag to set).
pub const LIFECYCLE_OFF: &str =
    "Lifecycle API is not enabled; start `mailprobe run` with --web.enable-lifecycle\n";

/// Wraps the whole router with the per-request rules.
pub fn protect(app: Router, options: Arc<WebOptions>) -> Router {
    app.layer(axum::middleware::from_fn_with_state(options, guard))
}

async fn guard(State(options): State<Arc<WebOptions>>, request: Request, next: Next) -> Response {
    if let Some(why) = &options.refused {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response();
    }
    if let Some(users) = &options.config.users {
        let authorization = request
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if !users.check(authorization).await {
            let mut r = (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic"),
            );
            return with_headers(r, &options);
        }
    }
    let method = request.method().clone();
    let reads = method == Method::GET || method == Method::HEAD || method == Method::OPTIONS;
    if !reads && let Some(refusal) = refuse_change(&request, options.lifecycle) {
        return with_headers(refusal, &options);
    }
    let response = next.run(request).await;
    with_headers(response, &options)
}

/// Why a state-changing request is refused, if it is.
fn refuse_change(request: &Request, lifecycle: bool) -> Option<Response> {
    if request.uri().path().starts_with("/-/") && !lifecycle {
        return Some((StatusCode::FORBIDDEN, LIFECYCLE_OFF).into_response());
    }
    let headers = request.headers();
    // A browser sends Origin with every POST, and Sec-Fetch-Site with every request; curl,
    // scripts and operators' tools send neither. Nothing legitimate changes state from a page.
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.eq_ignore_ascii_case("none"));
    if headers.contains_key(header::ORIGIN) || cross_site {
        return Some(
            (
                StatusCode::FORBIDDEN,
                "state-changing requests are not taken from a web page (Origin or Sec-Fetch-Site is set); send it with curl or a script\n",
            )
                .into_response(),
        );
    }
    // The content types a page can send without a CORS preflight.
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|t| {
            t == "application/x-www-form-urlencoded"
                || t == "multipart/form-data"
                || t == "text/plain"
        });
    if form {
        return Some(
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "a form content type is not taken; send the request with no body\n",
            )
                .into_response(),
        );
    }
    None
}

fn with_headers(mut response: Response, options: &WebOptions) -> Response {
    for (name, value) in &options.config.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

/// How many connections each source and the listener hold.
#[derive(Default)]
struct Places {
    by_source: HashMap<IpAddr, usize>,
    total: usize,
}

/// A held place, given back when the connection ends.
struct Place {
    places: Arc<Mutex<Places>>,
    source: IpAddr,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut p = self.places.lock().unwrap_or_else(|e| e.into_inner());
        p.total = p.total.saturating_sub(1);
        if let Some(n) = p.by_source.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                p.by_source.remove(&self.source);
            }
        }
    }
}

/// The address connections are counted under: an IPv6 address by its /64 (one host has a
/// whole /64 to pick from).
fn source_of(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

fn admit(places: &Arc<Mutex<Places>>, peer: IpAddr) -> Option<Place> {
    let source = source_of(peer);
    let mut p = places.lock().unwrap_or_else(|e| e.into_inner());
    let held = p.by_source.get(&source).copied().unwrap_or(0);
    if held >= PER_SOURCE || p.total >= TOTAL {
        return None;
    }
    p.total += 1;
    *p.by_source.entry(source).or_insert(0) += 1;
    Some(Place {
        places: places.clone(),
        source,
    })
}

/// Accepts and serves until `stop` turns true; then lets requests in flight finish.
pub async fn run(
    listener: TcpListener,
    app: Router,
    options: Arc<WebOptions>,
    mut stop: watch::Receiver<bool>,
) {
    let places = Arc::new(Mutex::new(Places::default()));
    let tls = options
        .config
        .tls
        .clone()
        .map(tokio_rustls::TlsAcceptor::from);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
            // Reap finished connection tasks as they end, so the set stays small.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            // Out of descriptors and the like: back off briefly, as axum's own loop does.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Some(place) = admit(&places, peer.ip()) else {
            // Closed at once: over its source's share or the listener's total.
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_connection(
            stream,
            peer,
            place,
            tls.clone(),
            app.clone(),
            stop.clone(),
        ));
    }
    // Requests in flight finish (the caller bounds how long it waits for this).
    while connections.join_next().await.is_some() {}
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn serve_connection(
    stream: TcpStream,
    _peer: SocketAddr,
    place: Place,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    mut stop: watch::Receiver<bool>,
) {
    let _place = place;
    let stream = Silent::new(stream, IDLE);
    let io: Box<dyn Io> = match tls {
        Some(acceptor) => {
            match tokio::time::timeout(HEAD_DEADLINE, acceptor.accept(stream)).await {
                Ok(Ok(s)) => Box::new(s),
                _ => return,
            }
        }
        None => Box::new(stream),
    };
    let service = hyper_util::service::TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_DEADLINE)
        .max_buf_size(64 * 1024)
        .keep_alive(true);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = async { let _ = stop.wait_for(|s| *s).await; } => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// A stream that fails its read once nothing arrived for `idle`.
struct Silent {
    stream: TcpStream,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
}

impl Silent {
    fn new(stream: TcpStream, idle: Duration) -> Silent {
        Silent {
            stream,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl AsyncRead for Silent {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    let deadline = Instant::now() + self.idle;
                    self.timer.as_mut().reset(deadline);
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client stayed silent",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Silent {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_holds_at_most_its_share() {
        let places = Arc::new(Mutex::new(Places::default()));
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.1".parse().unwrap();
        let held: Vec<Place> = (0..PER_SOURCE)
            .map(|_| admit(&places, a).unwrap())
            .collect();
        assert!(admit(&places, a).is_none());
        assert!(admit(&places, b).is_some());
        drop(held);
        assert!(admit(&places, a).is_some());
        // Two addresses of one IPv6 /64 share a count.
        let x: IpAddr = "2001:db8::1".parse().unwrap();
        let y: IpAddr = "2001:db8::2".parse().unwrap();
        assert_eq!(source_of(x), source_of(y));
    }
}
