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
    tokens: HashMap<CacheKey, StoredToken>,
    locks: HashMap<CacheKey, (String, Instant)>,
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

impl Maps {
    /// The token under `key`, dropping it first if it expired (the TTL).
    fn live(&mut self, key: &CacheKey) -> Option<&StoredToken> {
        let now = SystemTime::now();
        if self
            .tokens
            .get(key)
            .is_some_and(|t| t.remaining(now) == Some(Duration::ZERO))
        {
            self.tokens.remove(key);
        }
        self.tokens.get(key)
    }
}

impl TokenStore for MemoryStore {
    fn get<'a>(&'a self, key: &'a CacheKey) -> StoreFuture<'a, Option<StoredToken>> {
        let token = self.maps().live(key).cloned();
        Box::pin(async move { Ok(token) })
    }

    fn put<'a>(&'a self, key: &'a CacheKey, token: &'a StoredToken) -> StoreFuture<'a, ()> {
        self.maps().tokens.insert(key.clone(), token.clone());
        Box::pin(async { Ok(()) })
    }

    fn compare_and_delete<'a>(
        &'a self,
        key: &'a CacheKey,
        expected: &'a Fingerprint,
    ) -> StoreFuture<'a, bool> {
        let mut maps = self.maps();
        let matches = maps.live(key).is_some_and(|t| t.fingerprint() == *expected);
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
        let mut maps = self.maps();
        let current = maps.live(key).map(StoredToken::fingerprint);
        let matches = current.as_ref() == expected;
        if matches {
            maps.tokens.insert(key.clone(), new.clone());
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
        let free = maps.locks.get(key).is_none_or(|(_, until)| *until <= now);
        if free {
            maps.locks
                .insert(key.clone(), (owner.to_owned(), now + ttl));
        }
        Box::pin(async move { Ok(free) })
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
}
