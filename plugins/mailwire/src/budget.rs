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
    /// A LOGIN to send with literals instead of async-imap's quoted strings.
    rewrite: Option<crate::literal::Rewrite>,
    /// The literal LOGIN being sent.
    active: Option<Active>,
    /// A reply read while waiting for a continuation, handed to the reader first.
    replay: Vec<u8>,
    /// The command line being gathered while a rewrite is armed.
    pending: Vec<u8>,
}

/// A literal LOGIN on its way: the parts, where the sending is, and the line being read when
/// it waits for the server's `+`.
struct Active {
    parts: Vec<zeroize::Zeroizing<Vec<u8>>>,
    part: usize,
    off: usize,
    flush: bool,
    waiting: bool,
    line: Vec<u8>,
    /// What the write reports to the client: the length of the line it asked to write.
    claimed: usize,
}

impl std::fmt::Debug for Active {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Active(literal LOGIN)")
    }
}

impl std::fmt::Debug for crate::literal::Rewrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rewrite(***)")
    }
}

/// The longest continuation line read while sending a literal.
const MAX_CONTINUATION: usize = 1024;

impl<S> Budgeted<S> {
    /// Wraps a stream at a response boundary (nothing of a response read yet), unarmed.
    pub fn new(inner: S) -> Self {
        Budgeted {
            inner,
            budget: None,
            scan: Scan::Text,
            tap: mailprobe_core::transcript::Tap::current(),
            rewrite: None,
            active: None,
            replay: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// The next `LOGIN` with [`crate::literal::USER_PLACEHOLDER`] and
    /// [`crate::literal::PASSWORD_PLACEHOLDER`] goes out with `user` and `password` as literals
    /// (non-synchronizing when `literal_plus`, the server having announced LITERAL+).
    pub fn login_with_literals(&mut self, user: &str, password: &str, literal_plus: bool) {
        self.rewrite = Some(crate::literal::Rewrite::new(user, password, literal_plus));
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
        if !this.replay.is_empty() {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay[..n]);
            this.replay.drain(..n);
        } else {
            ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        }
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

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Budgeted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.active.is_none() {
            let Some(rw) = &this.rewrite else {
                let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
                if let Some(tap) = this.tap.as_mut().filter(|_| this.budget.is_some()) {
                    tap.bytes(Direction::Sent, buf.get(..n).unwrap_or(buf));
                }
                return Poll::Ready(Ok(n));
            };
            // async-imap writes a command in pieces (tag, space, command, CRLF): gather the
            // line, and only at its CRLF decide what goes out.
            this.pending.extend_from_slice(buf);
            if !this.pending.ends_with(b"\r\n") && this.pending.len() <= MAX_CONTINUATION {
                return Poll::Ready(Ok(buf.len()));
            }
            let line = std::mem::take(&mut this.pending);
            // The transcript gets the command as async-imap wrote it (its redactor removes
            // LOGIN's arguments), never the literals that carry the password.
            if let Some(tap) = this.tap.as_mut().filter(|_| this.budget.is_some()) {
                tap.bytes(Direction::Sent, &line);
            }
            let parts = match line.strip_suffix(rw.needle.as_slice()) {
                Some(tag) if !tag.is_empty() && !tag.contains(&b' ') => {
                    let parts = rw.parts(tag);
                    this.rewrite = None;
                    parts
                }
                _ => vec![zeroize::Zeroizing::new(line)],
            };
            this.active = Some(Active {
                parts,
                part: 0,
                off: 0,
                flush: false,
                waiting: false,
                line: Vec::new(),
                claimed: buf.len(),
            });
        }
        let Budgeted {
            inner,
            active,
            replay,
            ..
        } = this;
        loop {
            let Some(a) = active.as_mut() else {
                return Poll::Ready(Ok(buf.len()));
            };
            if a.flush {
                ready!(Pin::new(&mut *inner).poll_flush(cx))?;
                a.flush = false;
                a.waiting = true;
                continue;
            }
            if a.waiting {
                let mut byte = [0u8; 1];
                let mut rb = ReadBuf::new(&mut byte);
                ready!(Pin::new(&mut *inner).poll_read(cx, &mut rb))?;
                if rb.filled().is_empty() {
                    *active = None;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection during LOGIN",
                    )));
                }
                a.line.push(byte[0]);
                if a.line.len() > MAX_CONTINUATION {
                    *active = None;
                    return Poll::Ready(Err(io::Error::other(
                        "a reply line of more than 1024 bytes while sending LOGIN",
                    )));
                }
                if byte[0] == b'\n' {
                    if a.line.starts_with(b"+") {
                        a.line.clear();
                        a.waiting = false;
                        continue;
                    }
                    // Not a continuation (a refusal, most likely): the client reads it as the
                    // reply to its LOGIN; the rest is not sent.
                    *replay = std::mem::take(&mut a.line);
                    let claimed = a.claimed;
                    *active = None;
                    return Poll::Ready(Ok(claimed));
                }
                continue;
            }
            let Some(part) = a.parts.get(a.part) else {
                let claimed = a.claimed;
                *active = None;
                return Poll::Ready(Ok(claimed));
            };
            let n = ready!(Pin::new(&mut *inner).poll_write(cx, &part[a.off..]))?;
            if n == 0 {
                *active = None;
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            a.off += n;
            if a.off >= part.len() {
                a.part += 1;
                a.off = 0;
                if a.part < a.parts.len() {
                    a.flush = true;
                }
            }
        }
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
        if self.rewrite.is_some() || self.active.is_some() {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &**b);
            return self.poll_write(cx, first);
        }
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
        self.rewrite.is_none() && self.active.is_none() && self.inner.is_write_vectored()
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

#[cfg(test)]
mod literal_tests {
    use super::*;
    use crate::literal::{PASSWORD_PLACEHOLDER, USER_PLACEHOLDER};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    async fn login_as_async_imap_writes_it(s: &mut Budgeted<tokio::io::DuplexStream>) {
        s.write_all(b"A0001").await.unwrap();
        s.write_all(b" ").await.unwrap();
        s.write_all(format!("LOGIN \"{USER_PLACEHOLDER}\" \"{PASSWORD_PLACEHOLDER}\"").as_bytes())
            .await
            .unwrap();
        s.write_all(b"\r\n").await.unwrap();
        s.flush().await.unwrap();
    }

    #[tokio::test]
    async fn literal_plus_goes_out_in_one_piece() {
        let (client, mut server) = duplex(1 << 16);
        let mut s = Budgeted::new(client);
        s.login_with_literals("u", "p\r\nw", true);
        login_as_async_imap_writes_it(&mut s).await;
        drop(s);
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"A0001 LOGIN {1+}\r\nu {4+}\r\np\r\nw\r\n");
    }

    #[tokio::test]
    async fn synchronizing_literals_wait_for_each_continuation() {
        let (client, mut server) = duplex(1 << 16);
        let mut s = Budgeted::new(client);
        s.login_with_literals("u", "pä", false);
        let peer = tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut buf = [0u8; 256];
            for _ in 0..2 {
                let n = server.read(&mut buf).await.unwrap();
                seen.extend_from_slice(&buf[..n]);
                server.write_all(b"+ go on\r\n").await.unwrap();
            }
            let n = server.read(&mut buf).await.unwrap();
            seen.extend_from_slice(&buf[..n]);
            server.write_all(b"A0001 OK logged in\r\n").await.unwrap();
            seen
        });
        login_as_async_imap_writes_it(&mut s).await;
        let mut reply = [0u8; 20];
        s.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"A0001 OK logged in\r\n");
        let seen = peer.await.unwrap();
        assert_eq!(seen, "A0001 LOGIN {1}\r\nu {3}\r\npä\r\n".as_bytes());
    }

    #[tokio::test]
    async fn a_refusal_instead_of_a_continuation_reaches_the_reader() {
        let (client, mut server) = duplex(1 << 16);
        let mut s = Budgeted::new(client);
        s.login_with_literals("u", "p\nw", false);
        server
            .write_all(b"A0001 NO [LIMIT] no literals\r\n")
            .await
            .unwrap();
        login_as_async_imap_writes_it(&mut s).await;
        let mut reply = [0u8; 30];
        s.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"A0001 NO [LIMIT] no literals\r\n");
    }
}
