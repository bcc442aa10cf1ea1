//! [`MemoryStore`]: tokens shared between sources in one process.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, SystemTime},
};

use tokio::time::Instant;

use super::{CacheKey, Fingerprint, StoreFuture, StoredToken, TokenStore};

/// A [`TokenStore`] in this process's memory: a cheap `Clone` handle onto
/// one map, for sources in one process that should share tokens (two
/// sources over the same key, or a source rebuilt during the program's life).
///
/// Tokens are kept in their byte form ([`StoredToken::to_bytes`]), as a
/// shared store keeps them, so what survives this store is exactly what
/// survives Redis: a DPoP token comes back DPoP, with its key's thumbprint.
///
/// Without any store, a [`TokenSource`](crate::TokenSource) keeps its token
/// in its own cache only; that is the default and costs nothing.
///
/// ```
/// use tower_alf::store::{CacheKey, MemoryStore, StoredToken, TokenStore};
/// use tower_alf::Token;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryStore::new();
/// let key = CacheKey::builder("https://idp.example/token", "client_credentials").build();
/// let token = StoredToken::from_token(&Token::bearer("t")?);
/// store.put(&key, &token).await?;
/// assert_eq!(store.get(&key).await?, Some(token));
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Maps>>,
}

#[derive(Default)]
struct Maps {
    tokens: HashMap<CacheKey, Entry>,
    /// The owner of each lock, and when its lease ends (`None`: never).
    locks: HashMap<CacheKey, (String, Option<Instant>)>,
}

/// A token in its byte form, with what the map needs without parsing it.
struct Entry {
    bytes: Arc<[u8]>,
    fingerprint: Fingerprint,
    expires_at: Option<SystemTime>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn maps(&self) -> MutexGuard<'_, Maps> {
        // NOTE: nothing panics with the lock held; recover rather than poison.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Entry {
    fn of(token: &StoredToken) -> Self {
        // NOTE: a token set with a refresh token outlives its access token:
        // a restart resumes from it (`TokenStore::put`).
        let expires_at = match token.refresh_token() {
            Some(_) => None,
            None => token.expires_at(),
        };
        Self {
            bytes: token.to_bytes().into(),
            fingerprint: token.fingerprint(),
            expires_at,
        }
    }
}

impl Maps {
    /// The token under `key`, dropping it first if it expired (the TTL).
    fn live(&mut self, key: &CacheKey) -> Option<&Entry> {
        let now = SystemTime::now();
        if self
            .tokens
            .get(key)
            .and_then(|t| t.expires_at)
            .is_some_and(|at| at <= now)
        {
            self.tokens.remove(key);
        }
        self.tokens.get(key)
    }

    /// Whether `owner` may hold the lock for `key` at `now`: it is free, its
    /// lease ended, or `owner` holds it already.
    fn lock_free_for(&self, key: &CacheKey, owner: &str, now: Instant) -> bool {
        self.locks.get(key).is_none_or(|(holder, until)| {
            holder == owner || until.is_some_and(|until| until <= now)
        })
    }
}

impl TokenStore for MemoryStore {
    fn get<'a>(&'a self, key: &'a CacheKey) -> StoreFuture<'a, Option<StoredToken>> {
        let bytes = self.maps().live(key).map(|t| Arc::clone(&t.bytes));
        Box::pin(async move {
            bytes
                .map(|bytes| StoredToken::from_bytes(&bytes))
                .transpose()
        })
    }

    fn put<'a>(&'a self, key: &'a CacheKey, token: &'a StoredToken) -> StoreFuture<'a, ()> {
        let entry = Entry::of(token);
        self.maps().tokens.insert(key.clone(), entry);
        Box::pin(async { Ok(()) })
    }

    fn compare_and_delete<'a>(
        &'a self,
        key: &'a CacheKey,
        expected: &'a Fingerprint,
    ) -> StoreFuture<'a, bool> {
        let mut maps = self.maps();
        let matches = maps.live(key).is_some_and(|t| t.fingerprint == *expected);
        if matches {
            maps.tokens.remove(key);
        }
        Box::pin(async move { Ok(matches) })
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a CacheKey,
        expected: Option<&'a Fingerprint>,
        new: &'a StoredToken,
    ) -> StoreFuture<'a, bool> {
        let entry = Entry::of(new);
        let mut maps = self.maps();
        let current = maps.live(key).map(|t| t.fingerprint);
        let matches = current.as_ref() == expected;
        if matches {
            maps.tokens.insert(key.clone(), entry);
        }
        Box::pin(async move { Ok(matches) })
    }

    fn try_lock<'a>(
        &'a self,
        key: &'a CacheKey,
        owner: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        let now = Instant::now();
        let mut maps = self.maps();
        let free = maps.lock_free_for(key, owner, now);
        if free {
            maps.locks
                .insert(key.clone(), (owner.to_owned(), now.checked_add(ttl)));
        }
        Box::pin(async move { Ok(free) })
    }

    fn renew_lock<'a>(
        &'a self,
        key: &'a CacheKey,
        owner: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        let now = Instant::now();
        let mut maps = self.maps();
        let held = match maps.locks.get_mut(key) {
            Some((holder, until)) if holder == owner && until.is_none_or(|until| until > now) => {
                *until = now.checked_add(ttl);
                true
            }
            _ => false,
        };
        Box::pin(async move { Ok(held) })
    }

    fn unlock<'a>(&'a self, key: &'a CacheKey, owner: &'a str) -> StoreFuture<'a, bool> {
        let mut maps = self.maps();
        let held = maps.locks.get(key).is_some_and(|(o, _)| o == owner);
        if held {
            maps.locks.remove(key);
        }
        Box::pin(async move { Ok(held) })
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let maps = self.maps();
        f.debug_struct("MemoryStore")
            .field("tokens", &maps.tokens.len())
            .field("locks", &maps.locks.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Token;

    #[tokio::test]
    async fn an_expired_token_is_forgotten_and_compares_as_absent() {
        let store = MemoryStore::new();
        let key = CacheKey::builder("https://idp/token", "client_credentials").build();
        let gone = StoredToken::from_token(
            &Token::bearer("t")
                .unwrap()
                .with_expires_in(Duration::from_millis(1)),
        );
        store.put(&key, &gone).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(store.get(&key).await.unwrap(), None);
        let fresh = StoredToken::from_token(&Token::bearer("u").unwrap());
        assert!(store.compare_and_swap(&key, None, &fresh).await.unwrap());
        assert!(!store
            .compare_and_delete(&key, &gone.fingerprint())
            .await
            .unwrap());
        assert!(store
            .compare_and_delete(&key, &fresh.fingerprint())
            .await
            .unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_is_renewed_only_by_its_live_owner_and_max_never_panics() {
        let store = MemoryStore::new();
        let key = CacheKey::builder("https://idp/token", "client_credentials").build();
        let lease = Duration::from_secs(2);
        assert!(store.try_lock(&key, "a", lease).await.unwrap());
        assert!(!store.try_lock(&key, "b", lease).await.unwrap());
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert!(store.renew_lock(&key, "a", lease).await.unwrap());
        assert!(!store.renew_lock(&key, "b", lease).await.unwrap());
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert!(!store.try_lock(&key, "b", lease).await.unwrap(), "renewed");
        tokio::time::advance(Duration::from_millis(600)).await;
        assert!(!store.renew_lock(&key, "a", lease).await.unwrap(), "lapsed");
        assert!(store.try_lock(&key, "b", Duration::MAX).await.unwrap());
        assert!(store.renew_lock(&key, "b", Duration::MAX).await.unwrap());
        tokio::time::advance(Duration::from_secs(86_400 * 365)).await;
        assert!(!store.try_lock(&key, "a", lease).await.unwrap());
    }
}
