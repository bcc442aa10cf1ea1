//! [`TokenSource`]: the shared token cache, single-flight fetches and
//! refresh scheduling.
//!
//! # How it works
//!
//! The current token sits in an [`ArcSwapOption`]: reading it takes no lock,
//! so any number of requests read it at once. Everything else (a miss, a
//! refresh, an invalidation) goes through one short `Mutex` around the
//! *flight*, the fetch in progress. A fetch runs in its own task and
//! publishes its outcome on a `watch` channel; callers wait on the channel,
//! never on the fetch, so a caller that is dropped at any point leaves the
//! fetch, the other callers and the source untouched.
//!
//! # Where it is
//!
//! - here: the handle, its shared state, and compare-and-invalidate;
//! - `builder`: the settings, their defaults and bounds;
//! - `flight`: the fetch in progress, its task, its outcome channel, and
//!   the guard that ends a background refresh however its task ends;
//! - `schedule`: when to fetch (freshness, the background backoff, the
//!   rejection throttle) and time that cannot overflow;
//! - `local`: one middleware handle's lock-free view (the hot path);
//! - `future`: [`TokenFuture`]; `stats`: [`Stats`].

mod builder;
mod flight;
mod future;
mod local;
mod schedule;
mod stats;

use std::{
    fmt,
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    task::{Context, Poll},
};

use arc_swap::ArcSwapOption;
use http::HeaderValue;
use tokio::time::Instant;
use tower::{util::BoxCloneSyncService, Service};

pub(crate) use self::local::{LocalCache, SourceRef};
use self::{
    builder::Limits,
    flight::Flight,
    schedule::{freshness, proven, Freshness},
    stats::Counters,
};
pub use self::{builder::TokenSourceBuilder, future::TokenFuture, stats::Stats};
use crate::{
    error::Error,
    grant::{FetchToken, RefreshReason},
    token::{Binding, Timing, Token, TokenId},
};

type Grant = BoxCloneSyncService<FetchToken, Token, Error>;

/// A request to a [`TokenSource`] used as a tower [`Service`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenRequest {
    /// The current token, fetched if there is none usable.
    Current,
    /// This token was rejected: a replacement (see [`TokenSource::invalidate`]).
    Rejected(TokenId),
}

/// Fetches, caches and refreshes tokens for any number of clients.
///
/// A cheap `Clone` handle onto shared state: clone it into every
/// [`BearerAuthLayer`](crate::BearerAuthLayer), task and client that should
/// share tokens. It is also a tower [`Service`] answering [`TokenRequest`]s.
///
/// # Token states
///
/// A token is *fresh*, then *stale* once less than
/// `min(refresh window, lifetime / 4)` of its lifetime remains (served at once
/// while exactly one background fetch replaces it, so no request waits), then
/// *expired* once less than `min(expiry margin, lifetime / 10)` remains
/// (callers wait for the one fetch in flight). See [`TokenSourceBuilder`] for
/// the defaults and their reasons. A lifetime under
/// [`MIN_LIFETIME`](TokenSourceBuilder::MIN_LIFETIME) (`expires_in: 0`) is
/// scheduled as that least lifetime. All time comes from [`tokio::time`],
/// and no lifetime or setting can overflow it.
///
/// [`BearerAuth`](crate::BearerAuth) does not read the clock per request:
/// a timer task on the runtime that fetched the token marks it stale at
/// its refresh time. If that runtime is no longer driven while another
/// sends the requests, each `BearerAuth` handle still reads the clock once
/// in 64 requests, so a stale token is refreshed at most 63 requests per
/// handle late, and an expired one sent that late is answered 401 and
/// replaced as any rejected token is. [`token`](Self::token) and
/// [`cached`](Self::cached) always read the clock.
///
/// # Concurrency
///
/// At most one fetch is in flight; every caller waiting for it gets its
/// outcome, success or error. Reading a fresh token takes no lock and does
/// not allocate. A fetch runs in a task spawned on the current Tokio
/// runtime, so a caller dropped at any point never cancels it.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_alf::{grant::ClientCredentials, ClientAuth, TokenEndpoint, TokenSource};
///
/// # fn main() -> Result<(), tower_alf::Error> {
/// let endpoint = TokenEndpoint::builder("https://idp.example/oauth2/token")
///     .client_auth(ClientAuth::basic("my-client", "s3cr3t"))
///     .build()?;
/// let tokens = TokenSource::builder(ClientCredentials::new(endpoint).scope("read"))
///     .refresh_window(Duration::from_secs(120))
///     .build();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TokenSource {
    shared: Arc<Shared>,
}

struct Shared {
    grant: Grant,
    timing: Timing,
    limits: Limits,
    cache: ArcSwapOption<Token>,
    flight: Mutex<Flight>,
    /// The background refresh: [`schedule::IDLE`], [`schedule::RUNNING`],
    /// or backing off after a failure until `epoch` plus this many
    /// nanoseconds, less one (see `schedule`). Owned by the fetch task's
    /// `BackgroundGuard` (see `flight`) while a refresh runs.
    background: AtomicU64,
    background_failures: AtomicU32,
    /// The newest [`TokenId`] a server accepted (a response that was not a
    /// rejection): tells a revoked token from one refused at birth.
    served: AtomicU64,
    /// The phase word: the id of the cached token that its timer vouches is
    /// still before its `refresh_at`, or [`schedule::UNVOUCHED`] (read the
    /// clock). See `schedule::Phase`.
    fresh: AtomicU64,
    /// The origin of the times kept in atomics.
    epoch: Instant,
    counters: Counters,
    /// Called with every new token (see [`TokenSourceBuilder::on_token`]).
    on_token: Option<builder::OnToken>,
}

/// The source's answer to a rejection (see [`TokenSource::replace`]).
pub(crate) enum Replacement {
    /// The token was refused at birth too soon after the last one: it stays
    /// current and nothing is fetched. Return the 401 as it is.
    Throttled,
    /// The replacement: the token cached if it is newer than the rejected
    /// one, else the fetch of a new one.
    Coming(TokenFuture),
}

// ===== impl TokenSource =====

impl TokenSource {
    /// A source over `grant` with the default timing.
    pub fn new<G>(grant: G) -> Self
    where
        G: Service<FetchToken, Response = Token, Error = Error> + Clone + Send + Sync + 'static,
        G::Future: Send + 'static,
    {
        Self::builder(grant).build()
    }

    /// Starts configuring a source over `grant`.
    pub fn builder<G>(grant: G) -> TokenSourceBuilder
    where
        G: Service<FetchToken, Response = Token, Error = Error> + Clone + Send + Sync + 'static,
        G::Future: Send + 'static,
    {
        TokenSourceBuilder::new(BoxCloneSyncService::new(grant))
    }

    /// The current token: at once when a usable one is cached, else once the
    /// fetch in flight (joined or started when the future is first polled)
    /// ends.
    ///
    /// A stale token is returned at once and starts one background refresh.
    /// Like any Rust future it does nothing until polled: it may be made
    /// anywhere and driven by any Tokio runtime (`rt.block_on(source.token())`
    /// works), and the fetch runs in a task on the runtime that polls it.
    /// Polled outside a runtime, it fails with a configuration error.
    pub fn token(&self) -> TokenFuture {
        match self.cached() {
            Some(token) => TokenFuture::ready(Ok(token)),
            None => TokenFuture::lazy(self.clone()),
        }
    }

    /// Reports that the token `rejected` was refused by a server, and returns
    /// its replacement.
    ///
    /// Compare and invalidate: only if `rejected` is still the current token
    /// is it dropped; if a newer token is already cached, that one is
    /// returned. So N concurrent rejections of one token cause one fetch.
    /// The invalidation happens at once, when this is called, even if the
    /// returned future is dropped. Called inside a Tokio runtime, the fetch
    /// of the replacement starts at once too: a 401 that is not replayed
    /// (its future dropped) still leaves a token on its way for the next
    /// request. Called outside one, the fetch starts when the future is
    /// first polled, as [`token`](Self::token)'s does, so
    /// `rt.block_on(source.invalidate(id))` works.
    ///
    /// # Throttle
    ///
    /// A token a server accepted before rejecting it (revoked, say) is always
    /// replaced. A token *refused at birth* — rejected before any request
    /// with it was accepted, or less than a second after its request was
    /// sent — is replaced too, but the next one refused at birth is only
    /// replaced once [`rejection_interval`](TokenSourceBuilder::rejection_interval)
    /// has passed, then twice that, doubling up to 64 times: a server that
    /// refuses every new token (a wrong audience, say) costs a few token
    /// requests, not one per request. Until then the rejected token stays
    /// cached and this fails with [`Error::is_throttled`]. A token that is
    /// accepted ends the backoff.
    pub fn invalidate(&self, rejected: TokenId) -> TokenFuture {
        match self.replace(rejected) {
            Replacement::Throttled => TokenFuture::ready(Err(Error::throttled())),
            Replacement::Coming(token) => token,
        }
    }

    /// [`invalidate`](Self::invalidate), saying plainly when the throttle
    /// keeps the rejected token.
    pub(crate) fn replace(&self, rejected: TokenId) -> Replacement {
        {
            let mut flight = self.shared.lock_flight();
            if let Some(token) = self.shared.cache.load_full() {
                if token.id == rejected {
                    if !self.admit_rejection(&mut flight, &token) {
                        return Replacement::Throttled;
                    }
                    self.shared.cache.store(None);
                    tracing::debug!(reason = %RefreshReason::Rejected, "token invalidated");
                }
            }
        }
        Replacement::Coming(if tokio::runtime::Handle::try_current().is_ok() {
            self.wait()
        } else {
            self.token()
        })
    }

    /// Whether the rejected current `token` may be replaced now; counts a
    /// throttled rejection. The caller holds the flight lock.
    fn admit_rejection(&self, flight: &mut Flight, token: &Token) -> bool {
        let now = Instant::now();
        if proven(self.shared.served.load(Ordering::Relaxed), token, now) {
            // Revoked after serving: the server takes our tokens.
            flight.throttle.reset();
            return true;
        }
        if flight
            .throttle
            .admit(now, self.shared.limits.rejection_interval)
        {
            return true;
        }
        self.shared
            .counters
            .throttled
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!("token refused at birth again too soon: not refreshing");
        false
    }

    /// Starts a fetch now, in a task on the current Tokio runtime, unless a
    /// usable token is cached or a fetch is in flight; does nothing outside
    /// a runtime.
    ///
    /// [`token`](Self::token) is lazy: dropping its future unpolled starts
    /// nothing. Code that cannot wait, such as a synchronous interceptor
    /// that found [`cached`](Self::cached) empty, calls this instead.
    pub fn prefetch(&self) {
        if tokio::runtime::Handle::try_current().is_ok() && self.cached().is_none() {
            drop(self.wait());
        }
    }

    /// Notes that a server accepted the token `id`. One relaxed load when
    /// it is already known (every response but a token's first few).
    #[inline]
    pub(crate) fn served(&self, id: TokenId) {
        let served = &self.shared.served;
        if served.load(Ordering::Relaxed) < id.get() {
            served.fetch_max(id.get(), Ordering::Relaxed);
        }
    }

    /// The cached token, if it is usable now, without waiting. A stale token
    /// is returned and starts one background refresh.
    ///
    /// For code that cannot wait, such as a synchronous interceptor.
    pub fn cached(&self) -> Option<Arc<Token>> {
        let guard = self.shared.cache.load();
        let token = guard.as_ref()?;
        self.check(token).then(|| Arc::clone(token))
    }

    /// What this source has done so far.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// A view of this source for one [`BearerAuth`](crate::BearerAuth).
    pub(crate) fn local(&self) -> LocalCache {
        LocalCache::new(self.clone())
    }

    /// The header value of a usable cached token, its id, and its DPoP
    /// binding when it has one (a reference count; `None` for Bearer). Takes
    /// no lock, allocates nothing; a stale token starts one background
    /// refresh. [`BearerAuth`](crate::BearerAuth) reads through a [`LocalCache`].
    #[inline]
    pub(crate) fn cached_header(&self) -> Option<(HeaderValue, TokenId, Option<Binding>)> {
        let guard = self.shared.cache.load();
        self.header(guard.as_ref()?)
    }

    /// The header value of `token` and its id, if it may be sent now.
    #[inline]
    fn header(&self, token: &Token) -> Option<(HeaderValue, TokenId, Option<Binding>)> {
        self.check(token)
            .then(|| (token.header_value().clone(), token.id, token.binding()))
    }

    pub(crate) fn count_replay(&self) {
        self.shared.counters.replays.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether `token` may be sent now; starts a background refresh when it
    /// is stale. Must not be called with the flight lock held.
    #[inline]
    fn check(&self, token: &Token) -> bool {
        match freshness(token) {
            Freshness::Fresh => true,
            Freshness::Stale => {
                self.shared.unvouch(token);
                self.refresh_in_background();
                true
            }
            Freshness::Expired => {
                self.shared.unvouch(token);
                false
            }
        }
    }
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("timing", &self.shared.timing)
            .field("token", &self.shared.cache.load().as_deref())
            .field("stats", &self.stats())
            .finish()
    }
}

impl Service<TokenRequest> for TokenSource {
    type Response = Arc<Token>;
    type Error = Error;
    type Future = TokenFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: TokenRequest) -> TokenFuture {
        match request {
            TokenRequest::Current => self.token(),
            TokenRequest::Rejected(id) => self.invalidate(id),
        }
    }
}

// ===== impl Shared =====

impl Shared {
    fn lock_flight(&self) -> MutexGuard<'_, Flight> {
        // NOTE: no code panics while holding the lock; recover anyway rather
        // than poison every later caller.
        self.flight.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    //! Grants that answer as a test says, for the tests of every part of
    //! the source; and the tests of the handle itself.

    use std::{collections::VecDeque, future::Future, sync::atomic::AtomicUsize, time::Duration};

    use tower::service_fn;

    use super::*;

    /// A grant that hands out queued tokens, one per call, and fails the test
    /// when the queue runs dry.
    pub(super) fn queued(lifetimes: &[u64]) -> (TokenSource, Arc<AtomicUsize>) {
        let queue = Arc::new(Mutex::new(
            lifetimes
                .iter()
                .copied()
                .enumerate()
                .collect::<VecDeque<_>>(),
        ));
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let grant = service_fn(move |_request: FetchToken| {
            counter.fetch_add(1, Ordering::SeqCst);
            let next = queue.lock().unwrap().pop_front();
            async move {
                let (n, secs) =
                    next.expect("the grant was called more often than the test expects");
                Ok::<_, Error>(
                    Token::bearer(format!("tok-{}", n + 1))?
                        .with_expires_in(Duration::from_secs(secs)),
                )
            }
        });
        (TokenSource::builder(grant).jitter(0.0).build(), calls)
    }

    /// A source whose grant's call number `n` (from 0) answers `answer(n)`.
    pub(super) fn scripted<F, Fut>(answer: F) -> (TokenSource, Arc<AtomicUsize>)
    where
        F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Token, Error>> + Send + 'static,
    {
        scripted_with(answer, |builder| builder)
    }

    /// [`scripted`], with settings.
    pub(super) fn scripted_with<F, Fut>(
        answer: F,
        configure: fn(TokenSourceBuilder) -> TokenSourceBuilder,
    ) -> (TokenSource, Arc<AtomicUsize>)
    where
        F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Token, Error>> + Send + 'static,
    {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let grant =
            service_fn(move |_request: FetchToken| answer(counter.fetch_add(1, Ordering::SeqCst)));
        let builder = configure(TokenSource::builder(grant).jitter(0.0));
        (builder.build(), calls)
    }

    pub(super) fn lasting(secs: u64) -> Result<Token, Error> {
        Ok(Token::bearer("t")?.with_expires_in(Duration::from_secs(secs)))
    }

    pub(super) fn paused_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn rejecting_an_old_token_returns_the_stale_current_one_and_refreshes_it() {
        let (source, calls) = queued(&[3600, 3600, 3600]);
        let first = source.token().await.unwrap();
        let second = source.invalidate(first.id()).await.unwrap();
        assert_ne!(first.id(), second.id());

        tokio::time::advance(Duration::from_secs(3400)).await; // second is stale now
        let again = tokio::time::timeout(Duration::from_secs(1), source.invalidate(first.id()))
            .await
            .expect("a stale current token is returned at once")
            .unwrap();
        assert_eq!(again.id(), second.id());
        tokio::task::yield_now().await;
        assert_eq!(calls.load(Ordering::SeqCst), 3, "one background refresh");
        assert_eq!(source.stats().refreshes, 2);
    }
}
