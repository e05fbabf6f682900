//! The admin listener's own limits: at most [`MAX_CONNECTIONS`] connections at once (a flood of
//! idle connections cannot exhaust the probe's file descriptors), and a connection on which
//! nothing arrives for [`IDLE`] is closed (a client that opens one and goes silent cannot hold
//! it, slowloris style). A scraper opens one connection every interval; these limits are far
//! above what Prometheus, a kubelet probe and a human need at once.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a connection may stay silent.
pub const IDLE: Duration = Duration::from_secs(30);

/// A TCP listener that waits for a free place before it accepts.
pub struct Limited {
    listener: TcpListener,
    places: Arc<Semaphore>,
    idle: Duration,
}

impl Limited {
    pub fn new(listener: TcpListener, max: usize, idle: Duration) -> Self {
        Limited {
            listener,
            places: Arc::new(Semaphore::new(max.max(1))),
            idle,
        }
    }
}

impl axum::serve::Listener for Limited {
    type Io = Guarded;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Guarded, SocketAddr) {
        loop {
            let Ok(place) = self.places.clone().acquire_owned().await else {
                // The semaphore is never closed; wait rather than spin if it ever were.
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            match self.listener.accept().await {
                Ok((stream, addr)) => {
                    let idle = self.idle;
                    return (
                        Guarded {
                            stream,
                            _place: place,
                            idle,
                            timer: Box::pin(tokio::time::sleep(idle)),
                        },
                        addr,
                    );
                }
                // Out of descriptors and the like: back off briefly, as axum's own loop does.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// A connection that holds its place until dropped and closes when it stays silent.
pub struct Guarded {
    stream: TcpStream,
    _place: OwnedSemaphorePermit,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
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
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client stayed silent",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Guarded {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::serve::Listener;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_silent_connection_is_closed_and_the_places_are_bounded() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut limited = Limited::new(listener, 1, Duration::from_millis(200));
        let _first = TcpStream::connect(addr).await.unwrap();
        let (mut io, _) = limited.accept().await;
        // The one place is taken: a second connection is not accepted while it is held.
        let _second = TcpStream::connect(addr).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(100), limited.accept()).await;
        assert!(
            waiting.is_err(),
            "a second connection was accepted past the limit"
        );
        // Silence closes the first.
        let mut buf = [0u8; 8];
        let e = io.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        drop(io);
        // Its place is free again.
        let accepted = tokio::time::timeout(Duration::from_secs(2), limited.accept()).await;
        assert!(accepted.is_ok());
    }
}
