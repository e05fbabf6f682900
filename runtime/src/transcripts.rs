//! The daemon's last transcript of each mailbox, for the status page: what was said on the
//! wire in the mailbox's latest run, redacted and bounded (see
//! [`mailprobe_core::transcript`]). The store is bounded as a whole too: past [`MAX_TOTAL`]
//! bytes the transcripts stored longest ago give way, so a large fleet costs a fixed amount
//! of memory (a page then shows no transcript for those mailboxes until their next run).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// The most transcript text the store holds, across all mailboxes.
pub const MAX_TOTAL: usize = 32 * 1024 * 1024;

/// Mailbox name → its last run's transcript.
#[derive(Debug, Default)]
pub struct TranscriptStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Each transcript with the sequence number of its store, for evicting the oldest.
    map: HashMap<String, (u64, Arc<str>)>,
    total: usize,
    seq: u64,
    max_total: usize,
}

impl TranscriptStore {
    pub fn new() -> TranscriptStore {
        TranscriptStore::with_limit(MAX_TOTAL)
    }

    /// A store that holds at most `max_total` bytes.
    pub fn with_limit(max_total: usize) -> TranscriptStore {
        TranscriptStore {
            inner: Mutex::new(Inner {
                max_total,
                ..Inner::default()
            }),
        }
    }

    /// The store the daemon fills, for whatever serves pages in the same process.
    pub fn shared() -> Arc<TranscriptStore> {
        static STORE: OnceLock<Arc<TranscriptStore>> = OnceLock::new();
        STORE
            .get_or_init(|| Arc::new(TranscriptStore::new()))
            .clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `text` as `mailbox`'s last transcript, in place of the one before.
    pub fn record(&self, mailbox: &str, text: String) {
        let mut inner = self.lock();
        let text: Arc<str> = Arc::from(text);
        inner.seq += 1;
        let seq = inner.seq;
        if let Some((_, old)) = inner.map.insert(mailbox.to_string(), (seq, text.clone())) {
            inner.total -= old.len();
        }
        inner.total += text.len();
        while inner.total > inner.max_total && inner.map.len() > 1 {
            let Some(oldest) = inner
                .map
                .iter()
                .filter(|(name, _)| name.as_str() != mailbox)
                .min_by_key(|(_, (s, _))| *s)
                .map(|(name, _)| name.clone())
            else {
                break;
            };
            if let Some((_, gone)) = inner.map.remove(&oldest) {
                inner.total -= gone.len();
            }
        }
    }

    /// `mailbox`'s last transcript, if there is one.
    pub fn get(&self, mailbox: &str) -> Option<Arc<str>> {
        self.lock().map.get(mailbox).map(|(_, t)| t.clone())
    }

    /// Forgets the mailboxes not in `keep` (after a reload removed them).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut inner = self.lock();
        let mut freed = 0;
        inner.map.retain(|name, (_, t)| {
            let k = keep(name);
            if !k {
                freed += t.len();
            }
            k
        });
        inner.total -= freed;
    }

    /// The bytes held.
    pub fn total(&self) -> usize {
        self.lock().total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_transcript_per_mailbox_within_its_limit() {
        let store = TranscriptStore::with_limit(100);
        store.record("a", "x".repeat(40));
        store.record("b", "y".repeat(40));
        store.record("a", "z".repeat(30));
        assert_eq!(store.get("a").as_deref(), Some("z".repeat(30).as_str()));
        assert_eq!(store.total(), 70);
        // Over the limit: the oldest other mailbox gives way.
        store.record("c", "w".repeat(50));
        assert!(store.get("b").is_none());
        assert!(store.get("a").is_some() && store.get("c").is_some());
        assert!(store.total() <= 100);
        store.retain(|m| m == "c");
        assert!(store.get("a").is_none());
        assert_eq!(store.total(), 50);
    }
}
