//! Basic auth against the web config's `basic_auth_users` (bcrypt hashes), as exporter-toolkit
//! does it: an unknown user costs the same bcrypt run as a known one (no user enumeration by
//! timing), and a verified user/password pair is remembered so a scraper or a kubelet probe
//! does not pay a bcrypt run (tens of milliseconds of CPU) on every request. bcrypt runs on the
//! blocking pool, at most [`AT_ONCE`] at a time, so a flood of wrong passwords costs bounded
//! CPU and never holds a runtime worker.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

/// bcrypt runs at once.
const AT_ONCE: usize = 2;
/// Verified pairs remembered (by digest, never in clear).
const REMEMBERED: usize = 256;

/// The users and their bcrypt hashes.
pub struct Users {
    hashes: BTreeMap<String, String>,
    verified: Mutex<HashSet<[u8; 32]>>,
    bcrypt: Arc<Semaphore>,
}

impl Users {
    /// Checks that every hash is a bcrypt hash. The error names the user, never the hash.
    pub fn new(hashes: BTreeMap<String, String>) -> Result<Users, String> {
        for (user, hash) in &hashes {
            if user.contains(':') {
                return Err(format!(
                    "basic_auth_users: the user name `{user}` contains `:`, which basic auth cannot carry"
                ));
            }
            let ok = hash.len() == 60
                && ["$2a$", "$2b$", "$2y$", "$2x$"]
                    .iter()
                    .any(|p| hash.starts_with(p));
            if !ok {
                return Err(format!(
                    "basic_auth_users: the password of `{user}` is not a bcrypt hash; write the hash (e.g. from `htpasswd -nBC 10 \"\" | tr -d ':\\n'`), never the password"
                ));
            }
        }
        Ok(Users {
            hashes,
            verified: Mutex::new(HashSet::new()),
            bcrypt: Arc::new(Semaphore::new(AT_ONCE)),
        })
    }

    /// Whether the `Authorization` header's value names a user with the right password.
    pub async fn check(&self, authorization: Option<&[u8]>) -> bool {
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return false;
        };
        let digest = digest(&user, &password);
        if self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&digest)
        {
            return true;
        }
        // An unknown user is checked against another user's hash, at the same cost, and
        // refused whatever the result.
        let (hash, known) = match self.hashes.get(&user) {
            Some(h) => (h.clone(), true),
            None => match self.hashes.values().next() {
                Some(h) => (h.clone(), false),
                None => return false,
            },
        };
        let Ok(_turn) = self.bcrypt.clone().acquire_owned().await else {
            return false;
        };
        let verified =
            tokio::task::spawn_blocking(move || bcrypt::verify(password.as_bytes(), &hash))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(false);
        if verified && known {
            let mut set = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if set.len() >= REMEMBERED {
                set.clear();
            }
            set.insert(digest);
            return true;
        }
        false
    }
}

fn digest(user: &str, password: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(user.as_bytes());
    ctx.update(&[0]);
    ctx.update(password.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// `Basic base64(user:password)`.
fn parse_basic(value: &[u8]) -> Option<(String, zeroize::Zeroizing<String>)> {
    use base64::Engine as _;
    let value = std::str::from_utf8(value).ok()?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?,
    );
    let text = std::str::from_utf8(&decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((
        user.to_string(),
        zeroize::Zeroizing::new(password.to_string()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bcrypt_hash_admits_its_password_only() {
        use base64::Engine as _;
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let users = Users::new(BTreeMap::from([("alice".to_string(), hash)])).unwrap();
        let header = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        assert!(
            users
                .check(Some(header("alice", "s3cret").as_bytes()))
                .await
        );
        // Remembered: the second time needs no bcrypt run, and still says yes.
        assert!(
            users
                .check(Some(header("alice", "s3cret").as_bytes()))
                .await
        );
        assert!(!users.check(Some(header("alice", "wrong").as_bytes())).await);
        assert!(!users.check(Some(header("bob", "s3cret").as_bytes())).await);
        assert!(!users.check(None).await);
        assert!(!users.check(Some(b"Bearer x")).await);
        let e = Users::new(BTreeMap::from([("a".to_string(), "plain".to_string())]))
            .err()
            .unwrap();
        assert!(!e.contains("plain"), "{e}");
    }
}
