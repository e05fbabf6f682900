//! The protocol transcript of one run (`check -v`, and the daemon's last run per mailbox):
//! each connection, line sent and received, TLS handshake and certificate, as `curl -v` shows
//! them. Every line passes through the run's [`Redactor`] before it is printed or kept, so the
//! password and its encodings (base64 of AUTH PLAIN/LOGIN, IMAP quoted or literal) never
//! appear, control characters are escaped and each line is bounded. What is kept is bounded
//! too: past [`MAX_KEPT`] bytes the lines are counted, not kept.
//!
//! The code that speaks to servers finds the transcript through the run's scope
//! ([`crate::scope`]); without one (no `-v`, no daemon store) nothing is formatted at all.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::redact::Redactor;

/// How much of a run's transcript is kept (in bytes of text).
pub const MAX_KEPT: usize = 64 * 1024;
/// The longest line kept or printed, in characters (a long capability list still fits).
const MAX_LINE: usize = 512;
/// How much of a line not yet ended a tap buffers before it emits what it has.
const MAX_PARTIAL: usize = 4096;

/// Receives each line as it is recorded (`check -v` prints it on stderr).
pub type LiveSink = Arc<dyn Fn(&str) + Send + Sync>;

/// Which way a line went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Sent,
    Received,
}

/// One run's transcript.
pub struct Transcript {
    redactor: Redactor,
    live: Option<LiveSink>,
    started: Instant,
    kept: Mutex<Kept>,
    next_stream: std::sync::atomic::AtomicU32,
}

#[derive(Default)]
struct Kept {
    text: String,
    dropped: usize,
}

impl fmt::Debug for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Transcript")
    }
}

impl Transcript {
    /// A transcript that redacts `password`; `live` also gets each line as it is recorded.
    pub fn new(password: &str, live: Option<LiveSink>) -> Transcript {
        Transcript {
            redactor: Redactor::new(password).with_max(MAX_LINE),
            live,
            started: Instant::now(),
            kept: Mutex::new(Kept::default()),
            next_stream: std::sync::atomic::AtomicU32::new(1),
        }
    }

    fn push(&self, marker: &str, text: &str) {
        let clean = self.redactor.clean(text);
        let line = format!(
            "[{:7.3}s] {marker} {clean}",
            self.started.elapsed().as_secs_f64()
        );
        if let Some(live) = &self.live {
            live(&line);
        }
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.text.len() + line.len() + 1 > MAX_KEPT {
            kept.dropped += 1;
        } else {
            kept.text.push_str(&line);
            kept.text.push('\n');
        }
    }

    /// An event: a connection, a handshake, a step's outcome.
    pub fn note(&self, text: &str) {
        self.push("*", text);
    }

    /// A line on stream `stream` (see [`Transcript::tap`]).
    pub fn line(&self, stream: u32, direction: Direction, text: &str) {
        let marker = match direction {
            Direction::Sent => format!("#{stream} >"),
            Direction::Received => format!("#{stream} <"),
        };
        self.push(&marker, text);
    }

    /// A tap for one stream of lines, numbered in the order streams start.
    pub fn tap(self: &Arc<Self>) -> Tap {
        let id = self
            .next_stream
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.note(&format!("stream #{id} opened"));
        Tap {
            transcript: self.clone(),
            id,
            partial: [Vec::new(), Vec::new()],
        }
    }

    /// The text kept so far (with a last line saying how many were not kept).
    pub fn text(&self) -> String {
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = kept.text.clone();
        if kept.dropped > 0 {
            text.push_str(&format!(
                "… {} more lines not kept (the transcript keeps {} KiB)\n",
                kept.dropped,
                MAX_KEPT / 1024
            ));
        }
        text
    }
}

/// One stream's view of the transcript: whole lines (`line`), or bytes as a stream carries
/// them (`bytes`), cut into lines here.
pub struct Tap {
    transcript: Arc<Transcript>,
    id: u32,
    partial: [Vec<u8>; 2],
}

impl fmt::Debug for Tap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tap(#{})", self.id)
    }
}

impl Tap {
    /// The tap of the current run's transcript, if the run keeps one.
    pub fn current() -> Option<Tap> {
        crate::scope::transcript().map(|t| t.tap())
    }

    pub fn line(&self, direction: Direction, text: &str) {
        self.transcript.line(self.id, direction, text);
    }

    /// Bytes that went `direction`: each complete line is recorded; a line longer than the
    /// buffer is recorded in pieces.
    pub fn bytes(&mut self, direction: Direction, data: &[u8]) {
        let slot = match direction {
            Direction::Sent => 0,
            Direction::Received => 1,
        };
        for &b in data {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.partial[slot]);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.line(direction, &String::from_utf8_lossy(&line));
                zeroize::Zeroize::zeroize(&mut line);
            } else {
                self.partial[slot].push(b);
                if self.partial[slot].len() >= MAX_PARTIAL {
                    let mut line = std::mem::take(&mut self.partial[slot]);
                    self.line(direction, &String::from_utf8_lossy(&line));
                    zeroize::Zeroize::zeroize(&mut line);
                }
            }
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        for (slot, direction) in [(0, Direction::Sent), (1, Direction::Received)] {
            if !self.partial[slot].is_empty() {
                let mut line = std::mem::take(&mut self.partial[slot]);
                self.line(direction, &String::from_utf8_lossy(&line));
                zeroize::Zeroize::zeroize(&mut line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn the_password_and_its_encodings_never_appear() {
        let password = "Pa55w0rd-secret";
        let t = Arc::new(Transcript::new(password, None));
        let mut tap = t.tap();
        tap.line(Direction::Sent, &format!("P1 LOGIN alice \"{password}\""));
        let plain =
            base64::engine::general_purpose::STANDARD.encode(format!("\0alice\0{password}"));
        tap.line(Direction::Sent, &format!("AUTH PLAIN {plain}"));
        let login = base64::engine::general_purpose::STANDARD.encode(password);
        tap.bytes(Direction::Sent, login.as_bytes());
        tap.bytes(Direction::Sent, b"\r\n");
        // An IMAP literal: the password on a line of its own after the server's `+`.
        tap.bytes(Direction::Sent, b"A2 LOGIN alice {15}\r\n");
        tap.bytes(Direction::Sent, format!("{password}\r\n").as_bytes());
        tap.bytes(Direction::Received, b"* OK \x1b[31mhi\r\nP1 OK");
        drop(tap);
        let text = t.text();
        assert!(!text.contains(password), "{text}");
        assert!(!text.contains(&plain) && !text.contains(&login), "{text}");
        assert!(!text.contains('\x1b'), "{text}");
        assert!(text.contains("#1 > P1 LOGIN "), "{text}");
        assert!(text.contains("#1 < P1 OK"), "{text}");
        assert!(text.contains("#1 > A2 LOGIN [redacted]"), "{text}");
    }

    #[test]
    fn what_is_kept_is_bounded() {
        let t = Arc::new(Transcript::new("pw-long-enough", None));
        for i in 0..10_000 {
            t.note(&format!("line {i} {}", "x".repeat(100)));
        }
        let text = t.text();
        assert!(text.len() <= MAX_KEPT + 200, "{}", text.len());
        assert!(text.contains("more lines not kept"));
    }
}
