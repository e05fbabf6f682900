//! A per-command byte budget on a stream that a third-party IMAP client reads (async-imap, for
//! LOGIN/AUTHENTICATE, NOOP of a held session and LOGOUT).
//!
//! Limiting the bytes read is not enough on its own: async-imap grows its buffer to the size a
//! literal announces (`{536000000}` CRLF makes it zero-fill 511 MiB) before it reads a byte of
//! the literal. So [`Budgeted`] also follows the literal announcements in what passes through
//! it, and fails the read that carries an announcement larger than what is left of the budget,
//! before async-imap sees it. Either way the read fails with a [`BudgetExceeded`] inside an
//! `io::Error`, whose text names the command ("the server sent more than 1048576 bytes in reply
//! to LOGIN").

use mailprobe_core::transcript::Direction;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The default budget of one command's reply: far more than any LOGIN, NOOP or LOGOUT reply of a
/// real server (a few hundred bytes), small enough that async-imap's buffer stays small.
pub const COMMAND_BUDGET: usize = 1024 * 1024;

/// Why a budgeted read failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BudgetExceeded {
    Sent {
        verb: String,
        limit: usize,
    },
    Announced {
        verb: String,
        announced: u64,
        limit: usize,
    },
}

impl std::fmt::Display for BudgetExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BudgetExceeded::Sent { verb, limit } => {
                write!(
                    f,
                    "the server sent more than {limit} bytes in reply to {verb}"
                )
            }
            BudgetExceeded::Announced {
                verb,
                announced,
                limit,
            } => write!(
                f,
                "the server announced a literal of {announced} bytes in reply to {verb}, more than the {limit} bytes allowed"
            ),
        }
    }
}

impl std::error::Error for BudgetExceeded {}

impl BudgetExceeded {
    /// The overrun inside an error async-imap (or anything else) passed on, if it is one.
    pub fn find(e: &io::Error) -> Option<&BudgetExceeded> {
        e.get_ref()?.downcast_ref::<BudgetExceeded>()
    }
}

/// The budget of the command now running.
#[derive(Debug)]
struct Budget {
    verb: String,
    limit: usize,
    used: usize,
}

/// Where the scanner is in the server's bytes: following `{digits}` CRLF announcements and
/// skipping the literals they announce (so a literal's own bytes are never taken for one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scan {
    Text,
    /// Inside `{`, with the number so far and whether a digit was seen.
    Digits(u64, bool),
    /// After `{n+` (a non-synchronizing literal).
    Plus(u64),
    /// After `{n}`.
    Closed(u64),
    /// After `{n}` CR.
    ClosedCr(u64),
    /// Inside a literal, with the bytes still to come.
    Literal(u64),
}

impl Scan {
    /// Feeds one byte; returns the size of a literal whose announcement this byte completed.
    fn feed(&mut self, b: u8) -> Option<u64> {
        let (next, announced) = match (*self, b) {
            (Scan::Literal(n), _) => (
                if n > 1 {
                    Scan::Literal(n - 1)
                } else {
                    Scan::Text
                },
                None,
            ),
            (_, b'{') => (Scan::Digits(0, false), None),
            (Scan::Digits(n, _), b'0'..=b'9') => (
                Scan::Digits(
                    n.saturating_mul(10).saturating_add(u64::from(b - b'0')),
                    true,
                ),
                None,
            ),
            (Scan::Digits(n, true), b'+') => (Scan::Plus(n), None),
            (Scan::Digits(n, true) | Scan::Plus(n), b'}') => (Scan::Closed(n), None),
            (Scan::Closed(n), b'\r') => (Scan::ClosedCr(n), None),
            (Scan::ClosedCr(0), b'\n') => (Scan::Text, Some(0)),
            (Scan::ClosedCr(n), b'\n') => (Scan::Literal(n), Some(n)),
            _ => (Scan::Text, None),
        };
        *self = next;
        announced
    }
}

/// A stream whose reads count against the budget of the command in flight (see the module
/// documentation). Writes pass through. Unarmed, it only follows the literals: a reader with
/// bounds of its own (the [`crate::imap::Wire`] engine) is reading.
#[derive(Debug)]
pub struct Budgeted<S> {
    inner: S,
    budget: Option<Budget>,
    scan: Scan,
    /// The run's transcript, when it keeps one: the bytes read and written while armed, as
    /// lines. Unarmed, the reader on top (the `Wire` engine) records its own lines.
    tap: Option<mailprobe_core::transcript::Tap>,
}

impl<S> Budgeted<S> {
    /// Wraps a stream at a response boundary (nothing of a response read yet), unarmed.
    pub fn new(inner: S) -> Self {
        Budgeted {
            inner,
            budget: None,
            scan: Scan::Text,
            tap: mailprobe_core::transcript::Tap::current(),
        }
    }

    /// Gives the next command (`verb`, for the error text) `limit` bytes for all of its reply.
    pub fn arm(&mut self, verb: &str, limit: usize) {
        self.budget = Some(Budget {
            verb: verb.to_string(),
            limit,
            used: 0,
        });
    }

    /// No budget: the reader now bounds what it reads itself.
    pub fn disarm(&mut self) {
        self.budget = None;
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Counts `bytes` just read; an error when they overrun the budget.
    fn account(&mut self, bytes: &[u8]) -> Result<(), BudgetExceeded> {
        let mut scan = self.scan;
        for (i, &b) in bytes.iter().enumerate() {
            let Some(n) = scan.feed(b) else {
                continue;
            };
            if let Some(budget) = &self.budget {
                let used = budget.used.saturating_add(i + 1);
                let left = budget.limit.saturating_sub(used);
                if n > left as u64 {
                    return Err(BudgetExceeded::Announced {
                        verb: budget.verb.clone(),
                        announced: n,
                        limit: budget.limit,
                    });
                }
            }
        }
        self.scan = scan;
        if let Some(budget) = &mut self.budget {
            budget.used = budget.used.saturating_add(bytes.len());
            if budget.used > budget.limit {
                return Err(BudgetExceeded::Sent {
                    verb: budget.verb.clone(),
                    limit: budget.limit,
                });
            }
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Budgeted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let outcome = this.account(&buf.filled()[before..]);
        match outcome {
            Ok(()) => {
                if let Some(tap) = this.tap.as_mut().filter(|_| this.budget.is_some()) {
                    tap.bytes(Direction::Received, &buf.filled()[before..]);
                }
                Poll::Ready(Ok(()))
            }
            Err(e) => {
                // The caller never sees the bytes that broke the budget.
                buf.set_filled(before);
                Poll::Ready(Err(io::Error::other(e)))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Budgeted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        if let Some(tap) = this.tap.as_mut().filter(|_| this.budget.is_some()) {
            tap.bytes(Direction::Sent, buf.get(..n).unwrap_or(buf));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        if let Some(tap) = this.tap.as_mut().filter(|_| this.budget.is_some()) {
            let mut left = n;
            for b in bufs {
                let take = left.min(b.len());
                tap.bytes(Direction::Sent, &b[..take]);
                left -= take;
                if left == 0 {
                    break;
                }
            }
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    async fn read_all(s: &mut Budgeted<tokio::io::DuplexStream>) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 7];
        loop {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&chunk[..n]);
        }
    }

    async fn feed(bytes: &'static [u8], verb: Option<&str>, limit: usize) -> io::Result<Vec<u8>> {
        let (client, mut server) = duplex(1 << 16);
        server.write_all(bytes).await.unwrap();
        drop(server);
        let mut s = Budgeted::new(client);
        if let Some(v) = verb {
            s.arm(v, limit);
        }
        read_all(&mut s).await
    }

    #[tokio::test]
    async fn a_reply_within_the_budget_passes_unchanged() {
        let reply =
            b"* CAPABILITY IMAP4rev1\r\n* 1 FETCH (BODY[] {5}\r\n{999}\r\n)\r\nA1 OK done\r\n";
        assert_eq!(feed(reply, Some("LOGIN"), 1024).await.unwrap(), reply);
    }

    #[tokio::test]
    async fn a_huge_literal_is_refused_at_its_announcement() {
        let e = feed(b"A1 OK {536000000}\r\nxx", Some("LOGIN"), COMMAND_BUDGET)
            .await
            .unwrap_err();
        let why = BudgetExceeded::find(&e).expect("a budget error");
        assert!(matches!(
            why,
            BudgetExceeded::Announced {
                announced: 536_000_000,
                ..
            }
        ));
        assert!(e.to_string().contains("in reply to LOGIN"), "{e}");
    }

    #[tokio::test]
    async fn an_endless_reply_is_cut_at_the_budget() {
        let e = feed(&[b'*'; 5000], Some("NOOP"), 4096).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "the server sent more than 4096 bytes in reply to NOOP"
        );
    }

    #[tokio::test]
    async fn unarmed_it_only_follows_literals() {
        let bytes: &'static [u8] = b"* LIST () \"/\" {536000000}\r\n";
        assert_eq!(feed(bytes, None, 0).await.unwrap(), bytes);
    }

    #[test]
    fn literal_bytes_are_not_taken_for_an_announcement() {
        let mut s = Budgeted::new(());
        s.arm("NOOP", 100);
        // The 12-byte literal itself spells out a larger announcement.
        assert!(s.account(b"* X {12}\r\n{99999999}\r\n OK\r\n").is_ok());
        // A `{n}` inside a line is no announcement; only `{n}` CRLF is.
        assert!(s.account(b"* OK {99999999} text\r\n").is_ok());
        // Split over reads.
        assert!(s.account(b"* Y {9999").is_ok());
        assert!(s.account(b"9999}\r\n").is_err());
    }
}
