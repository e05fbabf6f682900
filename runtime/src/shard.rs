//! Sharding: which mailboxes one of N probe replicas checks (`--shard INDEX/COUNT`).
//!
//! Each mailbox goes to exactly one shard, picked by rendezvous (highest-random-weight) hashing
//! of the mailbox name with a fixed hash (FNV-1a, then a 64-bit finaliser), never std's
//! randomised hasher: every replica, every restart and every version must agree on the split,
//! or a mailbox would be checked twice or not at all. Rendezvous hashing also keeps a rescale
//! gentle: going from N to N+1 shards moves only about 1/(N+1) of the mailboxes, all of them to
//! the new shard.

use std::fmt;
use std::str::FromStr;

/// One replica's share: shard `index` (0-based) of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

/// Why a `--shard` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    #[error(
        "`{0}` is not a shard; write INDEX/COUNT with a 0-based INDEX, e.g. 2/5, or POD-NAME/COUNT for a StatefulSet pod, e.g. mailprobe-2/5"
    )]
    Syntax(String),
    #[error("`{0}`: the shard count must be at least 1")]
    ZeroCount(String),
    #[error("`{value}`: shard index {index} is out of range; with {count} shards use 0 to {last}", last = count - 1)]
    OutOfRange {
        value: String,
        index: u32,
        count: u32,
    },
}

impl Shard {
    /// Shard `index` of `count`.
    pub fn new(index: u32, count: u32) -> Result<Shard, ShardError> {
        let shown = format!("{index}/{count}");
        if count == 0 {
            return Err(ShardError::ZeroCount(shown));
        }
        if index >= count {
            return Err(ShardError::OutOfRange {
                value: shown,
                index,
                count,
            });
        }
        Ok(Shard { index, count })
    }

    pub fn index(self) -> u32 {
        self.index
    }

    pub fn count(self) -> u32 {
        self.count
    }

    /// Whether this shard checks the mailbox called `name`.
    pub fn owns(self, name: &str) -> bool {
        shard_of(name, self.count) == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = ShardError;

    /// `INDEX/COUNT`, where INDEX is a number or a StatefulSet pod name whose ordinal ends it
    /// (`mailprobe-2/5` is shard 2 of 5), so a manifest can say `$(POD_NAME)/5`.
    fn from_str(s: &str) -> Result<Shard, ShardError> {
        let syntax = || ShardError::Syntax(s.to_string());
        let (index, count) = s.trim().split_once('/').ok_or_else(syntax)?;
        let count: u32 = count.trim().parse().map_err(|_| syntax())?;
        let index = index.trim();
        let ordinal = match index.rsplit_once('-') {
            Some(("", _)) => return Err(syntax()),
            Some((_, n)) => n,
            None => index,
        };
        if ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let index: u32 = ordinal.parse().map_err(|_| syntax())?;
        Shard::new(index, count).map_err(|e| match e {
            ShardError::ZeroCount(_) => ShardError::ZeroCount(s.to_string()),
            ShardError::OutOfRange { index, count, .. } => ShardError::OutOfRange {
                value: s.to_string(),
                index,
                count,
            },
            other => other,
        })
    }
}

/// The shard (0-based, below `count`) that checks the mailbox called `name`. `count` 0 is
/// treated as 1.
pub fn shard_of(name: &str, count: u32) -> u32 {
    let base = fnv1a(name.as_bytes());
    (0..count.max(1))
        .max_by_key(|&i| (weight(base, i), std::cmp::Reverse(i)))
        .unwrap_or(0)
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// The rendezvous weight of shard `i` for a name hashed to `base`: FNV-1a's low bits mix
/// poorly, so the pair goes through splitmix64's finaliser.
fn weight(base: u64, i: u32) -> u64 {
    let mut z = base ^ (u64::from(i).wrapping_add(1)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| match i % 3 {
                0 => format!("sales-{i}"),
                1 => format!("user{i}@example.com"),
                _ => format!("support.team.{i}"),
            })
            .collect()
    }

    #[test]
    fn the_shards_cover_every_mailbox_exactly_once() {
        let all = names(500);
        for count in 1..=12 {
            let mut seen = vec![0u32; all.len()];
            for index in 0..count {
                let shard = Shard::new(index, count).unwrap();
                for (k, name) in all.iter().enumerate() {
                    if shard.owns(name) {
                        seen[k] += 1;
                    }
                }
            }
            assert!(
                seen.iter().all(|&n| n == 1),
                "count {count}: a mailbox is checked by {:?} shards",
                seen.iter().find(|&&n| n != 1)
            );
        }
    }

    #[test]
    fn the_shards_are_balanced() {
        let all = names(5000);
        for count in [2u32, 3, 5, 8, 16] {
            let mut sizes = vec![0usize; count as usize];
            for name in &all {
                sizes[shard_of(name, count) as usize] += 1;
            }
            let fair = all.len() as f64 / f64::from(count);
            for (i, &size) in sizes.iter().enumerate() {
                let off = (size as f64 - fair).abs() / fair;
                assert!(
                    off < 0.15,
                    "count {count}: shard {i} has {size} mailboxes, fair is {fair:.0}: {sizes:?}"
                );
            }
        }
    }

    #[test]
    fn the_split_never_changes_between_versions() {
        // Replicas of different versions run side by side during a rolling update: pin the
        // hash so a change to it is a deliberate one (values cross-checked with a Python
        // implementation of the same functions).
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let pinned: Vec<u32> = ["sales", "support", "alice@example.com", "billing", "ops"]
            .iter()
            .map(|n| shard_of(n, 5))
            .collect();
        assert_eq!(pinned, PINNED_5);
    }

    const PINNED_5: [u32; 5] = [4, 2, 0, 4, 0];

    #[test]
    fn growing_by_one_shard_moves_mailboxes_only_to_the_new_shard() {
        let all = names(3000);
        for count in 1..8u32 {
            let mut moved = 0;
            for name in &all {
                let before = shard_of(name, count);
                let after = shard_of(name, count + 1);
                if before != after {
                    assert_eq!(after, count, "{name} moved between old shards");
                    moved += 1;
                }
            }
            let expected = all.len() as f64 / f64::from(count + 1);
            assert!(
                (moved as f64 - expected).abs() / expected < 0.2,
                "{count}->{}: {moved} moved, about {expected:.0} expected",
                count + 1
            );
        }
    }

    #[test]
    fn parses_index_count_and_statefulset_pod_names() {
        assert_eq!("2/5".parse::<Shard>(), Ok(Shard::new(2, 5).unwrap()));
        assert_eq!(" 0 / 1 ".parse::<Shard>(), Ok(Shard::new(0, 1).unwrap()));
        assert_eq!(
            "mailprobe-3/4".parse::<Shard>(),
            Ok(Shard::new(3, 4).unwrap())
        );
        assert_eq!(
            "crm-mailprobe-shard-10/12".parse::<Shard>(),
            Ok(Shard::new(10, 12).unwrap())
        );
        assert_eq!(Shard::new(2, 5).unwrap().to_string(), "2/5");
    }

    #[test]
    fn refuses_bad_shards_with_the_fix() {
        let e = "5/5".parse::<Shard>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "`5/5`: shard index 5 is out of range; with 5 shards use 0 to 4"
        );
        assert_eq!(
            "0/0".parse::<Shard>().unwrap_err().to_string(),
            "`0/0`: the shard count must be at least 1"
        );
        for bad in [
            "",
            "3",
            "a/5",
            "mailprobe/5",
            "mailprobe-/5",
            "1/x",
            "-1/5",
            "1/-5",
        ] {
            let e = bad.parse::<Shard>().unwrap_err();
            assert!(matches!(e, ShardError::Syntax(_)), "{bad:?}: {e}");
            assert!(e.to_string().contains("INDEX/COUNT"), "{e}");
        }
    }

    #[test]
    fn one_shard_owns_everything() {
        let one = Shard::new(0, 1).unwrap();
        assert!(names(100).iter().all(|n| one.owns(n)));
        assert_eq!(shard_of("x", 0), 0);
    }
}
