//! The cache of validated tokens: SHA-256 of a token → what Keystone said of it, for
//! min(`--token-cache-secs`, the token's own expiry). Unknown tokens are cached too (a
//! token never becomes valid later), so a client retrying a bad token costs one call.
//!
//! Single flight: the first request with a token puts a pending cell in the map and asks
//! Keystone; concurrent requests with the same token wait on that cell instead of asking
//! again, so 10,000 requests with one token cost one validation. A failed validation
//! (Keystone unreachable) is shared by the requests waiting on it, then dropped: the next
//! request asks again.
//!
//! Bounded: at [`MAX_ENTRIES`] an insert first drops the ended entries, then, if still
//! full, the oldest eighth. Must not: hold a raw token (only its digest), or hold the map's
//! lock across an await.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use aggregates::instance::Caller;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::KeystoneError;

/// Most tokens remembered at once (docs/security.md). An entry is a few hundred bytes,
/// so the cache stays under ~25 MB.
pub const MAX_ENTRIES: usize = 50_000;

/// SHA-256 of a token: the cache never holds the token itself.
pub(super) type Key = [u8; 32];

/// The key of `token`.
pub(super) fn key(token: &str) -> Key {
    Sha256::digest(token.as_bytes()).into()
}

/// What a validation found: the caller (`None`: the token is not valid, or has no
/// project scope), and until when that may be believed.
#[derive(Clone, Debug)]
pub(super) struct Validated {
    pub caller: Option<Caller>,
    pub until: Instant,
}

pub(super) type Outcome = Result<Validated, KeystoneError>;

/// A cache entry: its validation, pending or done.
struct Slot {
    cell: Arc<OnceCell<Outcome>>,
    created: Instant,
}

impl Slot {
    /// Done, and no longer to be believed (ended, or a failure).
    fn ended(&self, now: Instant) -> bool {
        match self.cell.get() {
            Some(Ok(v)) => v.until <= now,
            Some(Err(_)) => true,
            None => false,
        }
    }
}

/// The token cache.
pub(super) struct TokenCache {
    /// `--token-cache-secs`; zero: no cache (every request asks Keystone).
    ttl: Duration,
    max: usize,
    slots: Mutex<HashMap<Key, Slot>>,
}

/// Whether an answer came from the cache (or a validation another request started).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Source {
    Hit,
    Miss,
}

impl TokenCache {
    pub fn new(ttl: Duration, max: usize) -> TokenCache {
        TokenCache {
            ttl,
            max: max.max(1),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The longest an entry may live (`--token-cache-secs`).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// What is known of the token with `key`, validating it with `validate` unless
    /// the cache or a validation in flight already answers.
    pub async fn get_or_validate<F, Fut>(&self, key: Key, validate: F) -> (Outcome, Source)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Outcome>,
    {
        if self.ttl.is_zero() {
            return (validate().await, Source::Miss);
        }
        let cell = self.slot(key);
        let mut ran = false;
        let outcome = cell
            .get_or_init(|| {
                ran = true;
                validate()
            })
            .await
            .clone();
        if outcome.is_err() {
            self.forget(key, &cell);
        }
        (outcome, if ran { Source::Miss } else { Source::Hit })
    }

    /// The cell of `key`: the live one, or a new pending one.
    fn slot(&self, key: Key) -> Arc<OnceCell<Outcome>> {
        let now = Instant::now();
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = slots.get(&key) {
            if !slot.ended(now) {
                return slot.cell.clone();
            }
            slots.remove(&key);
        }
        if slots.len() >= self.max {
            evict(&mut slots, self.max, now);
        }
        let cell = Arc::new(OnceCell::new());
        slots.insert(
            key,
            Slot {
                cell: cell.clone(),
                created: now,
            },
        );
        cell
    }

    /// Drops `key`'s entry if it still is `cell` (a failure is not remembered).
    fn forget(&self, key: Key, cell: &Arc<OnceCell<Outcome>>) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if slots.get(&key).is_some_and(|s| Arc::ptr_eq(&s.cell, cell)) {
            slots.remove(&key);
        }
    }

    /// Entries held now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Makes room: the ended entries go first; if that is not enough, the oldest eighth.
fn evict(slots: &mut HashMap<Key, Slot>, max: usize, now: Instant) {
    slots.retain(|_, s| !s.ended(now));
    if slots.len() < max {
        return;
    }
    let mut ages: Vec<Instant> = slots.values().map(|s| s.created).collect();
    let drop = (max / 8).max(1).min(ages.len() - 1);
    let (_, cutoff, _) = ages.select_nth_unstable(drop);
    let cutoff = *cutoff;
    slots.retain(|_, s| s.created > cutoff);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn valid(user: &str, for_: Duration) -> Outcome {
        Ok(Validated {
            caller: Some(Caller {
                user_id: user.into(),
                project_id: "p1".into(),
                roles: vec!["member".into()],
            }),
            until: Instant::now() + for_,
        })
    }

    #[tokio::test]
    async fn concurrent_requests_with_one_token_validate_it_once() {
        let cache = Arc::new(TokenCache::new(Duration::from_secs(60), 100));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..1000 {
            let (cache, calls) = (cache.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                let (out, _) = cache
                    .get_or_validate(key("tok"), || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        valid("alice", Duration::from_secs(60))
                    })
                    .await;
                out.unwrap().caller.unwrap().user_id
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), "alice");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn entries_end_with_the_token_and_failures_are_not_kept() {
        let cache = TokenCache::new(Duration::from_secs(60), 100);
        let short = || async { valid("a", Duration::from_millis(30)) };
        assert_eq!(cache.get_or_validate(key("t"), short).await.1, Source::Miss);
        assert_eq!(cache.get_or_validate(key("t"), short).await.1, Source::Hit);
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(cache.get_or_validate(key("t"), short).await.1, Source::Miss);
        let down = || async {
            Err(KeystoneError::Status {
                what: "token validation",
                status: 503,
            })
        };
        assert!(cache.get_or_validate(key("u"), down).await.0.is_err());
        assert_eq!(cache.get_or_validate(key("u"), down).await.1, Source::Miss);
        let off = TokenCache::new(Duration::ZERO, 100);
        let long = || async { valid("a", Duration::from_secs(60)) };
        assert_eq!(off.get_or_validate(key("t"), long).await.1, Source::Miss);
        assert_eq!(off.get_or_validate(key("t"), long).await.1, Source::Miss);
    }

    #[tokio::test]
    async fn the_cache_stays_within_its_bound() {
        let cache = TokenCache::new(Duration::from_secs(60), 64);
        for i in 0..1000 {
            let token = format!("t{i}");
            let (out, _) = cache
                .get_or_validate(key(&token), || async {
                    valid("a", Duration::from_secs(60))
                })
                .await;
            assert!(out.is_ok());
            assert!(cache.len() <= 64);
        }
        // The newest survived the evictions.
        let (_, source) = cache
            .get_or_validate(key("t999"), || async {
                valid("a", Duration::from_secs(60))
            })
            .await;
        assert_eq!(source, Source::Hit);
    }
}
