//! [`StoreGrant`]: a grant that asks a [`TokenStore`] before fetching.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::{Duration, SystemTime},
};

use tokio::time::Instant;
use tower::{Service, ServiceExt};

use super::{CacheKey, Fingerprint, StoreError, StoredToken, TokenStore};
use crate::{
    error::Error,
    grant::{FetchToken, RefreshReason},
    token::{BindingKey, Token, TokenType},
};

/// Wraps a grant so that its tokens go through a [`TokenStore`]: shared by
/// every source on the same store and key, and fetched once for all of
/// them.
///
/// A grant itself, so it goes where any grant goes:
/// `TokenSource::new(StoreGrant::new(grant, store, key))`. The source keeps
/// its own cache in front, so the store is read only when the source would
/// fetch, and never on a request that finds a usable token.
///
/// # What a fetch does
///
/// 1. On a rejection (`RefreshReason::Rejected`), compare-and-delete the
///    rejected token: it goes only if it is still the stored one.
/// 2. Read the key: a stored token that is usable (more than a tenth of its
///    lifetime left) and is not the one being replaced is returned, and the
///    inner grant is not called.
/// 3. Otherwise take the store's lock for the key, read again, call the
///    inner grant, store the token (compare-and-swap when it replaces a
///    token that had a refresh token) and release the lock. While the inner
///    grant runs, renew the lock's lease every third of
///    [`lock_ttl`](Self::lock_ttl): a holder that dies frees the lock
///    within one lease.
/// 4. When another instance holds the lock, poll the key every
///    [`poll_interval`](Self::poll_interval) and take its token, or the lock
///    once its lease ends. A fetch whose callers wait (no usable token:
///    first use, expiry, a 401) gives up after
///    [`max_wait`](Self::max_wait) and fetches locally, so a holder whose
///    token request hangs stalls it that long at most; a background refresh,
///    whose callers are served the current token meanwhile, waits up to
///    twice the lease.
///
/// # Rotating refresh tokens
///
/// A stored token with a refresh token is a token set, kept past its
/// access token's expiry (see [`TokenStore::put`]). Under the lock, a
/// fetch with no usable token refreshes with the *stored* set (it is
/// handed to the inner grant as [`FetchToken::previous`]), not with the
/// refresh token this instance last saw, which another instance may have
/// rotated away; the new set replaces exactly that one (compare and
/// swap). While another instance holds the lock, an instance waiting to
/// refresh a set does not give up after [`max_wait`](Self::max_wait): it
/// waits for the holder's token or for its lease to end, so one refresh
/// token is never redeemed twice. With
/// [`RefreshTokenGrant::resume`](crate::grant::RefreshTokenGrant::resume),
/// a process started later refreshes from the store, without a login.
///
/// # Tokens that must stay bound
///
/// A stored `DPoP` token is taken only when it can be bound again to this
/// instance's key (`StoreGrant::dpop`, feature `dpop`) and the thumbprint it was stored
/// with is that key's; otherwise it is a miss and this instance fetches
/// its own. It is never sent as a `Bearer` token, nor unbound.
///
/// # Failing soft
///
/// Every store call is bounded by [`timeout`](Self::timeout). When the
/// store fails or is slow, the grant fetches the token itself, emits a
/// `warn` event and counts it in [`StoreStats::store_errors`]; the next
/// fetch tries the store again. A garbage value counts as a miss and is
/// overwritten.
///
/// ```
/// use std::time::Duration;
/// use tower_alf::{
///     grant::ClientCredentials,
///     store::{MemoryStore, StoreGrant},
///     ClientAuth, TokenEndpoint, TokenSource,
/// };
///
/// # fn main() -> Result<(), tower_alf::Error> {
/// let endpoint = TokenEndpoint::builder("https://idp.example/oauth2/token")
///     .client_auth(ClientAuth::basic("my-client", "s3cr3t"))
///     .build()?;
/// let grant = ClientCredentials::new(endpoint).scope("read");
/// let key = grant.cache_key().build();
/// let stored = StoreGrant::new(grant, MemoryStore::new(), key)
///     .timeout(Duration::from_millis(100))
///     .lock_ttl(Duration::from_secs(5));
/// let stats = stored.stats();
/// let tokens = TokenSource::new(stored);
/// # Ok(()) }
/// ```
pub struct StoreGrant<G> {
    inner: G,
    shared: Arc<Shared>,
}

struct Shared {
    store: Arc<dyn TokenStore>,
    key: CacheKey,
    timeout: Duration,
    lock_ttl: Duration,
    poll_interval: Duration,
    max_wait: Duration,
    counters: Arc<StoreCounters>,
    /// The key constrained tokens read back are bound to again (the DPoP
    /// key, set by `StoreGrant::dpop`).
    rebind: Option<Arc<dyn BindingKey>>,
}

#[derive(Default)]
struct StoreCounters {
    hits: AtomicU64,
    fetches: AtomicU64,
    lock_waits: AtomicU64,
    store_errors: AtomicU64,
}

/// What a [`StoreGrant`] has done so far; a snapshot, from
/// [`StoreGrant::stats`] or [`StoreStats::snapshot`].
#[derive(Clone, Default)]
pub struct StoreStats {
    counters: Option<Arc<StoreCounters>>,
    /// Fetches answered by a token from the store.
    pub hits: u64,
    /// Fetches that called the inner grant.
    pub fetches: u64,
    /// Times a fetch waited for another instance's lock.
    pub lock_waits: u64,
    /// Store calls that failed or timed out (each fell back to a local fetch
    /// or was skipped).
    pub store_errors: u64,
}

// ===== impl StoreGrant =====

impl<G> StoreGrant<G> {
    /// Default timeout of one store call: 250 ms. A store that is slower than
    /// that is treated as down for this fetch.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

    /// The longest [`timeout`](Self::timeout): 60 s; longer is clamped.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

    /// Default lock lease: 2 s. Its holder renews it every third of that
    /// while it fetches, so a slow token request keeps it; a holder that
    /// dies frees it within this long.
    pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(2);

    /// The longest [`lock_ttl`](Self::lock_ttl): 10 minutes; longer is
    /// clamped.
    pub const MAX_LOCK_TTL: Duration = Duration::from_secs(600);

    /// Default poll interval while another instance fetches: 25 ms.
    pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(25);

    /// The longest [`poll_interval`](Self::poll_interval): 10 s; longer is
    /// clamped.
    pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(10);

    /// Default wait for another instance's fetch when this one has no usable
    /// token: 1 s. Then it fetches locally, so a hung lock holder stalls the
    /// fleet about this long, never a whole lease.
    pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(1);

    /// The longest [`max_wait`](Self::max_wait): 10 minutes; longer is
    /// clamped.
    pub const MAX_MAX_WAIT: Duration = Duration::from_secs(600);

    /// `inner`'s tokens, kept in `store` under `key`.
    pub fn new<S: TokenStore>(inner: G, store: S, key: CacheKey) -> Self {
        Self {
            inner,
            shared: Arc::new(Shared {
                store: Arc::new(store),
                key,
                timeout: Self::DEFAULT_TIMEOUT,
                lock_ttl: Self::DEFAULT_LOCK_TTL,
                poll_interval: Self::DEFAULT_POLL_INTERVAL,
                max_wait: Self::DEFAULT_MAX_WAIT,
                counters: Arc::default(),
                rebind: None,
            }),
        }
    }

    /// Sets the timeout of each store call, at most [`Self::MAX_TIMEOUT`].
    /// Defaults to [`Self::DEFAULT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.shared_mut(|s| s.timeout = timeout.min(Self::MAX_TIMEOUT));
        self
    }

    /// Binds constrained tokens read back from the store to `key` again
    /// (see `StoreGrant::dpop`, its one caller today).
    #[cfg_attr(
        not(any(feature = "dpop", feature = "rustls")),
        allow(dead_code, reason = "called by the features that constrain tokens")
    )]
    pub(crate) fn rebind_with(mut self, key: Arc<dyn BindingKey>) -> Self {
        self.shared_mut(|s| s.rebind = Some(key));
        self
    }

    /// Sets the lease of the fetch lock, from 3 ms to [`Self::MAX_LOCK_TTL`]
    /// (clamped). Defaults to [`Self::DEFAULT_LOCK_TTL`].
    ///
    /// The holder renews it every third of `ttl` while it fetches, so it
    /// need not outlast a slow token request: it bounds how long a holder
    /// that died keeps the others waiting.
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        let ttl = ttl.clamp(Duration::from_millis(3), Self::MAX_LOCK_TTL);
        self.shared_mut(|s| s.lock_ttl = ttl);
        self
    }

    /// Sets how often a waiting instance looks for the token, from 1 ms to
    /// [`Self::MAX_POLL_INTERVAL`] (clamped). Defaults to
    /// [`Self::DEFAULT_POLL_INTERVAL`].
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        let interval = interval.clamp(Duration::from_millis(1), Self::MAX_POLL_INTERVAL);
        self.shared_mut(|s| s.poll_interval = interval);
        self
    }

    /// Sets how long an instance with no usable token (first use, expiry,
    /// a 401) waits for another instance's fetch before it fetches the
    /// token itself, at most [`Self::MAX_MAX_WAIT`] (clamped). Defaults to
    /// [`Self::DEFAULT_MAX_WAIT`].
    ///
    /// A background refresh is not bounded by it: its callers are served
    /// meanwhile, so it waits up to twice the [`lock_ttl`](Self::lock_ttl).
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.shared_mut(|s| s.max_wait = wait.min(Self::MAX_MAX_WAIT));
        self
    }

    /// The key the tokens are stored under.
    pub fn key(&self) -> &CacheKey {
        &self.shared.key
    }

    /// A live view of the counters: call [`StoreStats::snapshot`] on it
    /// later, after the grant moved into a source.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            counters: Some(Arc::clone(&self.shared.counters)),
            ..StoreStats::default()
        }
        .snapshot()
    }

    fn shared_mut(&mut self, f: impl FnOnce(&mut Shared)) {
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => f(shared),
            None => {
                let mut shared = Shared {
                    store: Arc::clone(&self.shared.store),
                    key: self.shared.key.clone(),
                    timeout: self.shared.timeout,
                    lock_ttl: self.shared.lock_ttl,
                    poll_interval: self.shared.poll_interval,
                    max_wait: self.shared.max_wait,
                    counters: Arc::clone(&self.shared.counters),
                    rebind: self.shared.rebind.clone(),
                };
                f(&mut shared);
                self.shared = Arc::new(shared);
            }
        }
    }
}

impl<G: Clone> Clone for StoreGrant<G> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<G> Service<FetchToken> for StoreGrant<G>
where
    G: Service<FetchToken, Response = Token, Error = Error> + Clone + Send + 'static,
    G::Future: Send + 'static,
{
    type Response = Token;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Token, Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // NOTE: the inner grant is readied in `fetch`, only when it is called.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: FetchToken) -> Self::Future {
        let inner = self.inner.clone();
        let shared = Arc::clone(&self.shared);
        Box::pin(shared.fetch(inner, request))
    }
}

impl<G: fmt::Debug> fmt::Debug for StoreGrant<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreGrant")
            .field("inner", &self.inner)
            .field("store", &self.shared.store)
            .field("key", &self.shared.key)
            .field("timeout", &self.shared.timeout)
            .field("lock_ttl", &self.shared.lock_ttl)
            .field("poll_interval", &self.shared.poll_interval)
            .field("max_wait", &self.shared.max_wait)
            .finish()
    }
}

/// What [`Shared::lookup`] found in the store.
enum Found {
    /// A usable token that is not the one being replaced: served as is.
    Usable(Token),
    /// No usable token, but a stored token set with a refresh token
    /// (expired, nearly so, or the one being replaced): the next refresh
    /// redeems its refresh token.
    Refreshable(Token),
    /// Nothing to use.
    Nothing,
}

// ===== impl Shared =====

impl Shared {
    async fn fetch<G>(self: Arc<Self>, inner: G, request: FetchToken) -> Result<Token, Error>
    where
        G: Service<FetchToken, Response = Token, Error = Error> + Send,
        G::Future: Send,
    {
        let replacing = request.previous.as_deref().map(Fingerprint::of_token);
        if request.reason == RefreshReason::Rejected {
            if let Some(rejected) = &replacing {
                if let Err(e) = self
                    .call(self.store.compare_and_delete(&self.key, rejected))
                    .await
                {
                    return self.fetch_locally(inner, request, &e).await;
                }
            }
        }
        // NOTE: a rotating refresh token must be redeemed once fleet-wide:
        // while another instance holds the lock, wait for it (its lease
        // ends if it dies) rather than give up and redeem the same one.
        let mut rotating = request
            .previous
            .as_ref()
            .is_some_and(|p| p.refresh_token().is_some());
        match self.lookup(replacing.as_ref()).await {
            Ok(Found::Usable(token)) => return Ok(token),
            Ok(Found::Refreshable(_)) => rotating = true,
            Ok(Found::Nothing) => {}
            Err(e) => return self.fetch_locally(inner, request, &e).await,
        }

        let owner = format!("{:032x}", fastrand::u128(..));
        // NOTE: callers of a background refresh are served meanwhile; the
        // others are stalled, so they wait only briefly for another holder.
        let wait = match request.reason {
            RefreshReason::Stale => self.lock_ttl.saturating_mul(2),
            _ => self.max_wait,
        };
        let give_up = Instant::now().checked_add(wait);
        let mut waited = false;
        loop {
            match self
                .call(self.store.try_lock(&self.key, &owner, self.lock_ttl))
                .await
            {
                Ok(true) => return self.fetch_holding_lock(inner, request, &owner).await,
                Ok(false) => {}
                Err(e) => return self.fetch_locally(inner, request, &e).await,
            }
            if !waited {
                waited = true;
                self.counters.lock_waits.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(key = %self.key, "another instance is fetching; waiting");
            }
            tokio::time::sleep(self.poll_interval).await;
            match self.lookup(replacing.as_ref()).await {
                Ok(Found::Usable(token)) => return Ok(token),
                Ok(Found::Refreshable(_)) => rotating = true,
                Ok(Found::Nothing) => {}
                Err(e) => return self.fetch_locally(inner, request, &e).await,
            }
            if !rotating && give_up.is_some_and(|at| Instant::now() >= at) {
                tracing::warn!(key = %self.key, reason = %request.reason, "gave up waiting for another instance's fetch; fetching locally");
                return self.fetch_and_store(inner, request).await;
            }
        }
    }

    /// What the store holds: a usable token that is not `replacing`, else
    /// a token set to refresh with. Garbage is a miss.
    async fn lookup(&self, replacing: Option<&Fingerprint>) -> Result<Found, StoreError> {
        let usable = self.usable(replacing).await?;
        Ok(match usable {
            Ok(token) => Found::Usable(token),
            Err(Some(set)) => match self.restore(&set) {
                Ok(Some(token)) => Found::Refreshable(token),
                _ => Found::Nothing,
            },
            Err(None) => Found::Nothing,
        })
    }

    /// A usable stored token that is not `replacing`, else the stored
    /// token set that has a refresh token, if any. Garbage is a miss.
    async fn usable(
        &self,
        replacing: Option<&Fingerprint>,
    ) -> Result<Result<Token, Option<StoredToken>>, StoreError> {
        let stored = match self.call(self.store.get(&self.key)).await {
            Ok(stored) => stored,
            Err(e) if e.is_invalid() => {
                self.count_error(&e, "ignoring an invalid stored token");
                None
            }
            Err(e) => return Err(e),
        };
        let Some(stored) = stored else {
            return Ok(Err(None));
        };
        if Some(&stored.fingerprint()) == replacing || !stored.is_usable(SystemTime::now()) {
            return Ok(Err(stored.refresh_token().is_some().then_some(stored)));
        }
        match self.restore(&stored) {
            Ok(Some(token)) => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(key = %self.key, token_type = token.token_type().scheme(), "token taken from the store");
                Ok(Ok(token))
            }
            Ok(None) => Ok(Err(None)),
            Err(_) => {
                self.count_error(
                    &StoreError::invalid("the access token cannot go in a header"),
                    "ignoring an invalid stored token",
                );
                Ok(Err(None))
            }
        }
    }

    /// `stored` as this instance may send it: a constrained (`DPoP`) token
    /// bound again to this instance's key, if it is the key the token was
    /// bound to. `Ok(None)` (a miss) when its binding cannot be restored.
    fn restore(&self, stored: &StoredToken) -> Result<Option<Token>, Error> {
        if let Some(key) = &self.rebind {
            if !stored.type_recorded() {
                tracing::debug!(key = %self.key, "a stored token of unrecorded type and a binding key: a miss");
                return Ok(None);
            }
            if stored.bound_elsewhere(key.as_ref()) {
                tracing::debug!(key = %self.key, "a stored constrained token bound to another key: a miss");
                return Ok(None);
            }
            return stored.to_bound_token(key.as_ref()).map(Some);
        }
        if stored.token_type() != TokenType::Bearer || stored.certificate_thumbprint().is_some() {
            tracing::debug!(key = %self.key, "a stored constrained token and no binding key: a miss");
            return Ok(None);
        }
        stored.to_token().map(Some)
    }

    async fn fetch_holding_lock<G>(
        &self,
        inner: G,
        request: FetchToken,
        owner: &str,
    ) -> Result<Token, Error>
    where
        G: Service<FetchToken, Response = Token, Error = Error> + Send,
        G::Future: Send,
    {
        let replacing = request.previous.as_deref().map(Fingerprint::of_token);
        // Double-checked: the previous holder may have stored a token between
        // our read and our lock.
        let outcome = match self.lookup(replacing.as_ref()).await {
            Ok(Found::Usable(token)) => Ok(token),
            found => {
                let mut request = request;
                // NOTE: under the lock the stored set is the truth: its
                // refresh token is the latest (another instance, or the
                // process before a restart, may have rotated ours away),
                // and the new set replaces exactly it.
                if let Ok(Found::Refreshable(set)) = found {
                    tracing::debug!(key = %self.key, "refreshing with the stored token set");
                    request.previous = Some(Arc::new(set));
                }
                self.renewing(owner, self.fetch_and_store(inner, request))
                    .await
            }
        };
        if let Err(e) = self.call(self.store.unlock(&self.key, owner)).await {
            self.count_error(
                &e,
                "could not release the token store lock; it expires by itself",
            );
        }
        outcome
    }

    async fn fetch_and_store<G>(&self, inner: G, request: FetchToken) -> Result<Token, Error>
    where
        G: Service<FetchToken, Response = Token, Error = Error> + Send,
        G::Future: Send,
    {
        let previous = request.previous.clone();
        self.counters.fetches.fetch_add(1, Ordering::Relaxed);
        let token = inner.oneshot(request).await?;
        let stored = StoredToken::from_token(&token);
        let written = match previous.filter(|p| p.refresh_token().is_some()) {
            // A rotating refresh token: replace exactly the token it came
            // from, or write it where there is none.
            Some(previous) => {
                let expected = Fingerprint::of_token(&previous);
                match self
                    .call(
                        self.store
                            .compare_and_swap(&self.key, Some(&expected), &stored),
                    )
                    .await
                {
                    Ok(true) => Ok(()),
                    Ok(false) => self
                        .call(self.store.compare_and_swap(&self.key, None, &stored))
                        .await
                        .map(drop),
                    Err(e) => Err(e),
                }
            }
            None => self.call(self.store.put(&self.key, &stored)).await,
        };
        if let Err(e) = written {
            self.count_error(&e, "could not store the token");
        }
        Ok(token)
    }

    /// Runs `work` while renewing `owner`'s lease every third of the lock
    /// TTL; renewal stops when the lease is lost or the store fails.
    async fn renewing<F: Future>(&self, owner: &str, work: F) -> F::Output {
        let renew = async {
            let every = self.lock_ttl / 3;
            loop {
                tokio::time::sleep(every).await;
                match self
                    .call(self.store.renew_lock(&self.key, owner, self.lock_ttl))
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::debug!(key = %self.key, "the token store lock's lease ended; fetching on");
                        break;
                    }
                    Err(e) => {
                        self.count_error(&e, "could not renew the token store lock");
                        break;
                    }
                }
            }
            std::future::pending::<()>().await;
        };
        let mut work = std::pin::pin!(work);
        let mut renew = std::pin::pin!(renew);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(output) = work.as_mut().poll(cx) {
                return Poll::Ready(output);
            }
            let _ = renew.as_mut().poll(cx);
            Poll::Pending
        })
        .await
    }

    async fn fetch_locally<G>(
        &self,
        inner: G,
        request: FetchToken,
        error: &StoreError,
    ) -> Result<Token, Error>
    where
        G: Service<FetchToken, Response = Token, Error = Error> + Send,
        G::Future: Send,
    {
        self.count_error(error, "token store unavailable; fetching the token locally");
        self.counters.fetches.fetch_add(1, Ordering::Relaxed);
        inner.oneshot(request).await
    }

    async fn call<T>(
        &self,
        future: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, future)
            .await
            .unwrap_or_else(|_| Err(StoreError::timeout()))
    }

    fn count_error(&self, error: &StoreError, message: &'static str) {
        self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(key = %self.key, %error, "{message}");
    }
}

// ===== impl StoreStats =====

impl StoreStats {
    /// The counters now. On a snapshot taken from [`StoreGrant::stats`],
    /// this reads the grant's counters again.
    pub fn snapshot(&self) -> Self {
        let Some(c) = &self.counters else {
            return self.clone();
        };
        Self {
            counters: Some(Arc::clone(c)),
            hits: c.hits.load(Ordering::Relaxed),
            fetches: c.fetches.load(Ordering::Relaxed),
            lock_waits: c.lock_waits.load(Ordering::Relaxed),
            store_errors: c.store_errors.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Debug for StoreStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreStats")
            .field("hits", &self.hits)
            .field("fetches", &self.fetches)
            .field("lock_waits", &self.lock_waits)
            .field("store_errors", &self.store_errors)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{atomic::AtomicUsize, Mutex};

    use tower::service_fn;

    use super::*;
    use crate::{store::MemoryStore, TokenSource};

    type Counted = (
        tower::util::BoxCloneSyncService<FetchToken, Token, Error>,
        Arc<AtomicUsize>,
    );

    /// A grant that issues `tok-1`, `tok-2`, … living `secs` each.
    fn counted(secs: u64) -> Counted {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let grant = service_fn(move |_: FetchToken| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                Ok(Token::bearer(format!("tok-{n}"))?.with_expires_in(Duration::from_secs(secs)))
            }
        });
        (tower::util::BoxCloneSyncService::new(grant), calls)
    }

    fn key() -> CacheKey {
        CacheKey::builder("https://idp/token", "client_credentials").build()
    }

    #[tokio::test]
    async fn two_sources_share_one_fetch_and_one_refresh_after_a_401() {
        let (grant, calls) = counted(3600);
        let store = MemoryStore::new();
        let a = TokenSource::new(StoreGrant::new(grant.clone(), store.clone(), key()));
        let b = TokenSource::new(StoreGrant::new(grant, store, key()));

        let ta = a.token().await.unwrap();
        let tb = b.token().await.unwrap();
        assert_eq!(ta.access_token(), tb.access_token());
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let ta2 = a.invalidate(ta.id()).await.unwrap();
        assert_eq!(ta2.access_token().secret(), "tok-2");
        let tb2 = b.invalidate(tb.id()).await.unwrap();
        assert_eq!(
            tb2.access_token().secret(),
            "tok-2",
            "b takes a's new token"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_rejected_token_is_never_taken_back_from_the_store() {
        let (grant, calls) = counted(3600);
        let store = MemoryStore::new();
        let stored = StoreGrant::new(grant, store.clone(), key());
        let a = TokenSource::new(stored.clone());
        let t1 = a.token().await.unwrap();
        // Another instance put the same token back after our 401 (a race).
        let t2 = a.invalidate(t1.id()).await.unwrap();
        assert_ne!(t1.access_token(), t2.access_token());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(stored.stats().fetches, 2);
    }

    #[derive(Debug)]
    struct Broken {
        hang: bool,
        calls: Mutex<usize>,
    }

    impl Broken {
        fn fail<'a, T: Send + 'a>(&'a self) -> crate::store::StoreFuture<'a, T> {
            *self.calls.lock().unwrap() += 1;
            let hang = self.hang;
            Box::pin(async move {
                if hang {
                    std::future::pending::<()>().await;
                }
                Err(StoreError::new("down"))
            })
        }
    }

    impl TokenStore for Broken {
        fn get<'a>(
            &'a self,
            _: &'a CacheKey,
        ) -> crate::store::StoreFuture<'a, Option<StoredToken>> {
            self.fail()
        }
        fn put<'a>(
            &'a self,
            _: &'a CacheKey,
            _: &'a StoredToken,
        ) -> crate::store::StoreFuture<'a, ()> {
            self.fail()
        }
        fn compare_and_delete<'a>(
            &'a self,
            _: &'a CacheKey,
            _: &'a Fingerprint,
        ) -> crate::store::StoreFuture<'a, bool> {
            self.fail()
        }
        fn compare_and_swap<'a>(
            &'a self,
            _: &'a CacheKey,
            _: Option<&'a Fingerprint>,
            _: &'a StoredToken,
        ) -> crate::store::StoreFuture<'a, bool> {
            self.fail()
        }
        fn try_lock<'a>(
            &'a self,
            _: &'a CacheKey,
            _: &'a str,
            _: Duration,
        ) -> crate::store::StoreFuture<'a, bool> {
            self.fail()
        }
        fn unlock<'a>(
            &'a self,
            _: &'a CacheKey,
            _: &'a str,
        ) -> crate::store::StoreFuture<'a, bool> {
            self.fail()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_or_hanging_store_falls_back_to_a_local_fetch() {
        for hang in [false, true] {
            let (grant, calls) = counted(3600);
            let stored = StoreGrant::new(
                grant,
                Broken {
                    hang,
                    calls: Mutex::new(0),
                },
                key(),
            );
            let stats = stored.stats();
            let source = TokenSource::new(stored);
            let t1 = source.token().await.unwrap();
            let t2 = source.invalidate(t1.id()).await.unwrap();
            assert_eq!(t2.access_token().secret(), "tok-2");
            assert_eq!(calls.load(Ordering::SeqCst), 2);
            assert_eq!(stats.snapshot().store_errors, 2, "hang={hang}");
        }
    }

    /// A [`MemoryStore`] that counts its calls.
    #[derive(Debug, Default)]
    struct Counting {
        store: MemoryStore,
        calls: AtomicUsize,
    }

    impl Counting {
        fn count(&self) {
            self.calls.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl TokenStore for Counting {
        fn get<'a>(
            &'a self,
            k: &'a CacheKey,
        ) -> crate::store::StoreFuture<'a, Option<StoredToken>> {
            self.count();
            self.store.get(k)
        }
        fn put<'a>(
            &'a self,
            k: &'a CacheKey,
            t: &'a StoredToken,
        ) -> crate::store::StoreFuture<'a, ()> {
            self.count();
            self.store.put(k, t)
        }
        fn compare_and_delete<'a>(
            &'a self,
            k: &'a CacheKey,
            f: &'a Fingerprint,
        ) -> crate::store::StoreFuture<'a, bool> {
            self.count();
            self.store.compare_and_delete(k, f)
        }
        fn compare_and_swap<'a>(
            &'a self,
            k: &'a CacheKey,
            f: Option<&'a Fingerprint>,
            t: &'a StoredToken,
        ) -> crate::store::StoreFuture<'a, bool> {
            self.count();
            self.store.compare_and_swap(k, f, t)
        }
        fn try_lock<'a>(
            &'a self,
            k: &'a CacheKey,
            o: &'a str,
            d: Duration,
        ) -> crate::store::StoreFuture<'a, bool> {
            self.count();
            self.store.try_lock(k, o, d)
        }
        fn unlock<'a>(
            &'a self,
            k: &'a CacheKey,
            o: &'a str,
        ) -> crate::store::StoreFuture<'a, bool> {
            self.count();
            self.store.unlock(k, o)
        }
    }

    #[tokio::test]
    async fn the_store_is_never_called_while_a_cached_token_is_usable() {
        let (grant, _) = counted(3600);
        let store = Arc::new(Counting::default());
        let source = TokenSource::new(StoreGrant::new(grant, Arc::clone(&store), key()));
        source.token().await.unwrap();
        let after_fetch = store.calls.load(Ordering::SeqCst);
        assert_eq!(after_fetch, 5, "get, lock, get, put, unlock");
        for _ in 0..1000 {
            source.token().await.unwrap();
            assert!(source.cached_header().is_some());
        }
        assert_eq!(store.calls.load(Ordering::SeqCst), after_fetch);
    }

    /// A grant whose token request never answers; counts its calls.
    fn hanging() -> Counted {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let grant = service_fn(move |_: FetchToken| {
            counter.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<Result<Token, Error>>()
        });
        (tower::util::BoxCloneSyncService::new(grant), calls)
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_holder_keeps_its_lease_but_stalls_a_waiter_only_max_wait() {
        let store = MemoryStore::new();
        let (stuck, stuck_calls) = hanging();
        let holder = tokio::spawn(
            StoreGrant::new(stuck, store.clone(), key())
                .oneshot(FetchToken::new(RefreshReason::FirstUse, None)),
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(stuck_calls.load(Ordering::SeqCst), 1, "the holder fetches");

        let (grant, calls) = counted(3600);
        let waiter = StoreGrant::new(grant, store.clone(), key());
        let stats = waiter.stats();
        let started = Instant::now();
        let token = TokenSource::new(waiter).token().await.unwrap();
        let stalled = started.elapsed();
        assert_eq!(token.access_token().secret(), "tok-1");
        assert!(stalled >= StoreGrant::<()>::DEFAULT_MAX_WAIT, "{stalled:?}");
        assert!(stalled < Duration::from_millis(1100), "{stalled:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(stats.snapshot().lock_waits, 1);

        // The holder is alive: it renews its 2 s lease while it fetches.
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!store
            .try_lock(&key(), "other", Duration::from_secs(1))
            .await
            .unwrap());
        holder.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_background_refresh_takes_the_lock_once_a_dead_holders_lease_ends() {
        let (grant, calls) = counted(3600);
        let store = MemoryStore::new();
        // A holder that took the lock and died: nobody renews it.
        assert!(store
            .try_lock(&key(), "dead", Duration::from_secs(2))
            .await
            .unwrap());
        let stored = StoreGrant::new(grant, store.clone(), key());
        let stats = stored.stats();
        let previous = Arc::new(Token::bearer("old").unwrap());
        let started = Instant::now();
        let token = stored
            .oneshot(FetchToken::new(RefreshReason::Stale, Some(previous)))
            .await
            .unwrap();
        assert_eq!(token.access_token().secret(), "tok-1");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_secs(2), "{waited:?}");
        assert!(waited < Duration::from_millis(2100), "{waited:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(stats.snapshot().lock_waits, 1);
        assert!(
            store
                .try_lock(&key(), "next", Duration::from_secs(1))
                .await
                .unwrap(),
            "it took the lock and released it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn settings_of_duration_max_are_clamped_and_never_panic() {
        let (grant, calls) = counted(3600);
        let store = MemoryStore::new();
        assert!(store.try_lock(&key(), "dead", Duration::MAX).await.unwrap());
        let stored = StoreGrant::new(grant, store, key())
            .timeout(Duration::MAX)
            .lock_ttl(Duration::MAX)
            .poll_interval(Duration::MAX)
            .max_wait(Duration::MAX);
        let debug = format!("{stored:?}");
        assert!(debug.contains("timeout: 60s"), "{debug}");
        assert!(debug.contains("lock_ttl: 600s"), "{debug}");
        assert!(debug.contains("poll_interval: 10s"), "{debug}");
        assert!(debug.contains("max_wait: 600s"), "{debug}");
        let started = Instant::now();
        let source = TokenSource::new(stored.clone());
        let token = source.token().await.unwrap();
        // A lock that never expires: the waiter fetches after the clamped wait.
        assert_eq!(started.elapsed(), StoreGrant::<()>::MAX_MAX_WAIT);
        // A background refresh waits twice the clamped lease, no more.
        let started = Instant::now();
        stored
            .oneshot(FetchToken::new(RefreshReason::Stale, Some(token)))
            .await
            .unwrap();
        assert_eq!(started.elapsed(), StoreGrant::<()>::MAX_LOCK_TTL * 2);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let tiny = StoreGrant::new(counted(1).0, MemoryStore::new(), key())
            .lock_ttl(Duration::ZERO)
            .poll_interval(Duration::ZERO);
        let debug = format!("{tiny:?}");
        assert!(debug.contains("lock_ttl: 3ms") && debug.contains("poll_interval: 1ms"));
    }
}
