//! Token stores: tokens that survive restarts and are shared by a fleet.
//!
//! A [`TokenSource`](crate::TokenSource) keeps its current token in memory
//! (its L1 cache) and reads it there on every request. A store adds a
//! second level behind the grant: wrap the grant in a [`StoreGrant`] and the
//! store is consulted only when the source would otherwise fetch, and
//! written after a fetch. So the hot path never touches the store.
//!
//! - [`MemoryStore`]: shares tokens between sources in one process.
//! - `RedisStore` (feature `redis`): shares tokens between processes, with
//!   a fleet-wide single flight, TTLs, and optional encryption at rest.
//! - Your own: implement [`TokenStore`].
//!
//! # Fleet-wide single flight
//!
//! On a fetch, [`StoreGrant`] first drops the rejected token from the store
//! (compare-and-delete: only if it is still the stored one), then takes a
//! stored token that is usable and is not the one being replaced. Otherwise
//! it takes the store's lock for the key, looks again, calls the inner grant
//! (renewing the lock's short lease meanwhile), stores the token and releases
//! the lock. The others wait for the token to appear, polling, and take the
//! lock themselves if its lease ends (its holder died); one whose token has
//! expired waits at most [`StoreGrant::max_wait`] and then fetches itself, so
//! a hung holder stalls nobody for long. If the store fails, is slow or
//! returns garbage, the grant fetches on its own: a store never fails a
//! request that could succeed.
//!
//! ```
//! use tower_alf::{
//!     grant::ClientCredentials,
//!     store::{MemoryStore, StoreGrant},
//!     ClientAuth, TokenEndpoint, TokenSource,
//! };
//!
//! # fn main() -> Result<(), tower_alf::Error> {
//! let endpoint = TokenEndpoint::builder("https://idp.example/oauth2/token")
//!     .client_auth(ClientAuth::basic("my-client", "s3cr3t"))
//!     .build()?;
//! let grant = ClientCredentials::new(endpoint).scope("read");
//! let key = grant.cache_key().namespace("my-app").build();
//! let store = MemoryStore::new();
//! // Two sources over one store and key make one token request between them.
//! let a = TokenSource::new(StoreGrant::new(grant.clone(), store.clone(), key.clone()));
//! let b = TokenSource::new(StoreGrant::new(grant, store, key));
//! # Ok(()) }
//! ```

mod grant;
mod key;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod stored;

use std::{error::Error as StdError, fmt, future::Future, pin::Pin, sync::Arc, time::Duration};

#[cfg(feature = "redis")]
pub use self::redis::{EncryptionKey, RedisStore, RedisStoreBuilder};
pub use self::{
    grant::{StoreGrant, StoreStats},
    key::{CacheKey, CacheKeyBuilder},
    memory::MemoryStore,
    stored::{Fingerprint, StoredToken},
};

/// The future a [`TokenStore`] method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Where tokens are kept between processes, or between sources.
///
/// Object safe, so a store can be chosen at run time (`Arc<dyn TokenStore>`
/// is a store too): its methods return boxed futures. The box costs one
/// allocation per store call, and a store is called only when a token is
/// fetched, never on the hot path.
///
/// Every method takes `&self` and may be called from many tasks at once.
/// Lock methods implement a lease: a lock expires by itself after `ttl`, so
/// a holder that dies does not block the fleet, and its live holder renews
/// it while it fetches ([`TokenStore::renew_lock`]), so the lease can be
/// short. A store call may be retried after a lost connection, so
/// `try_lock` and `renew_lock` must be idempotent for one owner.
pub trait TokenStore: fmt::Debug + Send + Sync + 'static {
    /// The token stored under `key`, if any. Expired tokens may be returned;
    /// the caller checks.
    fn get<'a>(&'a self, key: &'a CacheKey) -> StoreFuture<'a, Option<StoredToken>>;

    /// Stores `token` under `key`, replacing any other. The store should
    /// forget it once [`StoredToken::expires_at`] passes (a TTL), unless it
    /// carries a [refresh token](StoredToken::refresh_token): a token set
    /// outlives its access token, since a source that starts later (a
    /// restart) refreshes with it instead of asking for a new login. Keep
    /// such a set as long as the server's refresh tokens live, or without
    /// a TTL. The same goes for
    /// [`compare_and_swap`](TokenStore::compare_and_swap).
    fn put<'a>(&'a self, key: &'a CacheKey, token: &'a StoredToken) -> StoreFuture<'a, ()>;

    /// Removes the token under `key` only if it is `expected`; whether it did.
    ///
    /// After a 401, this drops the rejected token but never a newer one
    /// another instance stored.
    fn compare_and_delete<'a>(
        &'a self,
        key: &'a CacheKey,
        expected: &'a Fingerprint,
    ) -> StoreFuture<'a, bool>;

    /// Stores `new` under `key` only if the stored token is `expected`
    /// (`None`: only if there is none); whether it did.
    ///
    /// For rotating refresh tokens: the instance that redeemed the old
    /// refresh token replaces exactly that token.
    fn compare_and_swap<'a>(
        &'a self,
        key: &'a CacheKey,
        expected: Option<&'a Fingerprint>,
        new: &'a StoredToken,
    ) -> StoreFuture<'a, bool>;

    /// Takes the fetch lock for `key` for `owner`, for at most `ttl`;
    /// whether it was free (or `owner` held it already).
    fn try_lock<'a>(
        &'a self,
        key: &'a CacheKey,
        owner: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool>;

    /// Extends `owner`'s lease on the lock for `key` to `ttl` from now;
    /// whether `owner` still held it.
    ///
    /// [`StoreGrant`] calls it every third of the lease while it fetches.
    /// The default renews nothing (`false`): the lease then ends `ttl` after
    /// it was taken, and a fetch slower than that may be made twice.
    fn renew_lock<'a>(
        &'a self,
        key: &'a CacheKey,
        owner: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        let _ = (key, owner, ttl);
        Box::pin(async { Ok(false) })
    }

    /// Releases the lock for `key` if `owner` still holds it; whether it did.
    fn unlock<'a>(&'a self, key: &'a CacheKey, owner: &'a str) -> StoreFuture<'a, bool>;
}

impl<T: TokenStore + ?Sized> TokenStore for Arc<T> {
    fn get<'a>(&'a self, key: &'a CacheKey) -> StoreFuture<'a, Option<StoredToken>> {
        (**self).get(key)
    }

    fn put<'a>(&'a self, key: &'a CacheKey, token: &'a StoredToken) -> StoreFuture<'a, ()> {
        (**self).put(key, token)
    }

    fn compare_and_delete<'a>(
        &'a self,
        key: &'a CacheKey,
        expected: &'a Fingerprint,
    ) -> StoreFuture<'a, bool> {
        (**self).compare_and_delete(key, expected)
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a CacheKey,
        expected: Option<&'a Fingerprint>,
        new: &'a StoredToken,
    ) -> StoreFuture<'a, bool> {
        (**self).compare_and_swap(key, expected, new)
    }

    fn try_lock<'a>(
        &'a self,
        key: &'a CacheKey,
        owner: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        (**self).try_lock(key, owner, ttl)
    }

    fn renew_lock<'a>(
        &'a self,
        key: &'a CacheKey,
        owner: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        (**self).renew_lock(key, owner, ttl)
    }

    fn unlock<'a>(&'a self, key: &'a CacheKey, owner: &'a str) -> StoreFuture<'a, bool> {
        (**self).unlock(key, owner)
    }
}

/// Why a store operation failed. [`StoreGrant`] never passes it on: it
/// logs it, counts it and fetches the token itself.
///
/// ```
/// use tower_alf::store::StoreError;
///
/// let e = StoreError::new("connection refused");
/// assert!(!e.is_timeout());
/// assert_eq!(e.to_string(), "token store failed: connection refused");
/// ```
#[derive(Clone)]
pub struct StoreError {
    kind: StoreErrorKind,
}

#[derive(Clone)]
enum StoreErrorKind {
    Timeout,
    Invalid(&'static str),
    Other(Arc<dyn StdError + Send + Sync>),
}

impl StoreError {
    /// A failure of the store (connection, protocol, server error).
    pub fn new(error: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self {
            kind: StoreErrorKind::Other(Arc::from(error.into())),
        }
    }

    pub(crate) fn timeout() -> Self {
        Self {
            kind: StoreErrorKind::Timeout,
        }
    }

    pub(crate) fn invalid(reason: &'static str) -> Self {
        Self {
            kind: StoreErrorKind::Invalid(reason),
        }
    }

    /// The store did not answer in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, StoreErrorKind::Timeout)
    }

    /// The store returned a value that is not a token this crate stored
    /// (another format, another key, a wrong encryption key, garbage).
    pub fn is_invalid(&self) -> bool {
        matches!(self.kind, StoreErrorKind::Invalid(_))
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            StoreErrorKind::Timeout => f.write_str("token store timed out"),
            StoreErrorKind::Invalid(reason) => write!(f, "invalid stored token: {reason}"),
            StoreErrorKind::Other(e) => write!(f, "token store failed: {e}"),
        }
    }
}

impl fmt::Debug for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            StoreErrorKind::Timeout => f.write_str("StoreError(Timeout)"),
            StoreErrorKind::Invalid(reason) => write!(f, "StoreError(Invalid({reason:?}))"),
            StoreErrorKind::Other(e) => write!(f, "StoreError({e:?})"),
        }
    }
}

impl StdError for StoreError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.kind {
            StoreErrorKind::Other(e) => Some(&**e as &(dyn StdError + 'static)),
            _ => None,
        }
    }
}
