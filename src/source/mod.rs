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

mod stats;

use std::{
    fmt,
    future::Future,
    ops::Deref,
    pin::Pin,
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError,
    },
    task::{Context, Poll},
    time::Duration,
};

use arc_swap::{ArcSwapOption, Cache};
use http::HeaderValue;
use tokio::{sync::watch, time::Instant};
use tower::{util::BoxCloneSyncService, Service, ServiceExt};
use tracing::Instrument;

use self::stats::Counters;
pub use self::stats::Stats;
use crate::{
    grant::FetchToken,
    token::{Binding, Timing},
    Error, Token, TokenId,
};

type Grant = BoxCloneSyncService<FetchToken, Token, Error>;
type Outcome = Result<Arc<Token>, Error>;

/// Why a token is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefreshReason {
    /// No token was fetched yet.
    FirstUse,
    /// The token entered its refresh window; it is still served while the
    /// new one is fetched in the background.
    Stale,
    /// The token is past its expiry (less the margin); callers wait.
    Expired,
    /// A server rejected the token (HTTP 401).
    Rejected,
}

impl fmt::Display for RefreshReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::FirstUse => "first_use",
            Self::Stale => "stale",
            Self::Expired => "expired",
            Self::Rejected => "rejected",
        })
    }
}

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
    /// The background refresh: [`IDLE`], [`RUNNING`], or backing off after
    /// a failure until `epoch` plus this many nanoseconds, less one. Owned
    /// by a [`BackgroundGuard`] while a refresh runs.
    background: AtomicU64,
    background_failures: AtomicU32,
    /// The newest [`TokenId`] a server accepted (a response that was not a
    /// rejection): tells a revoked token from one refused at birth.
    served: AtomicU64,
    /// The origin of the times kept in atomics.
    epoch: Instant,
    counters: Counters,
}

/// No background refresh runs, none is backing off.
const IDLE: u64 = 0;
/// A background refresh runs.
const RUNNING: u64 = u64::MAX;

/// What "never" is for the settings that take a [`Duration`]: a wait longer
/// than this (`Duration::MAX` included) is cut to it, so no addition to the
/// clock can overflow. Tokio's own "far future" is the same 30 years.
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// A token rejected this soon after its request was sent counts as refused
/// at birth, even if a request with it was accepted.
const AT_BIRTH: Duration = Duration::from_secs(1);

/// `now + wait`, saturating at [`FAR_FUTURE`]: never panics.
fn after(now: Instant, wait: Duration) -> Instant {
    now.checked_add(wait.min(FAR_FUTURE))
        .or_else(|| now.checked_add(Duration::from_secs(3600)))
        .unwrap_or(now)
}

/// Bounds on how often the issuer is asked, whatever callers do.
#[derive(Debug, Clone, Copy)]
struct Limits {
    permanent_error_memory: Duration,
    rejection_interval: Duration,
}

#[derive(Default)]
struct Flight {
    /// The fetch in progress: `None` until it publishes its outcome.
    current: Option<watch::Receiver<Option<Outcome>>>,
    /// The last token fetched, handed to the grant as `previous`.
    last: Option<Arc<Token>>,
    /// A permanent failure, and until when callers get it instead of a fetch.
    failure: Option<(Error, Instant)>,
    /// Tokens refused at birth in a row (see [`TokenSource::invalidate`]).
    refused: u32,
    /// Until when a token refused at birth is not replaced.
    throttled_until: Option<Instant>,
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
        TokenSourceBuilder {
            grant: BoxCloneSyncService::new(grant),
            limits: Limits {
                permanent_error_memory: TokenSourceBuilder::DEFAULT_PERMANENT_ERROR_MEMORY,
                rejection_interval: TokenSourceBuilder::DEFAULT_REJECTION_INTERVAL,
            },
            timing: Timing {
                refresh_window: TokenSourceBuilder::DEFAULT_REFRESH_WINDOW,
                expiry_margin: TokenSourceBuilder::DEFAULT_EXPIRY_MARGIN,
                jitter: TokenSourceBuilder::DEFAULT_JITTER,
                default_lifetime: None,
            },
        }
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
        {
            let mut flight = self.shared.lock_flight();
            if let Some(token) = self.shared.cache.load_full() {
                if token.id == rejected {
                    if let Err(e) = self.throttle(&mut flight, &token) {
                        return TokenFuture::ready(Err(e));
                    }
                    self.shared.cache.store(None);
                    tracing::debug!(reason = %RefreshReason::Rejected, "token invalidated");
                }
            }
        }
        if tokio::runtime::Handle::try_current().is_ok() {
            self.wait()
        } else {
            self.token()
        }
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

    /// Whether the rejected current `token` may be replaced now, and the
    /// throttle's state after its rejection. The caller holds the flight lock.
    fn throttle(&self, flight: &mut Flight, token: &Token) -> Result<(), Error> {
        let now = Instant::now();
        let accepted = self.shared.served.load(Ordering::Relaxed) >= token.id.get();
        if accepted && now.saturating_duration_since(token.issued_at()) >= AT_BIRTH {
            // Revoked after serving: the server takes our tokens.
            flight.refused = 0;
            flight.throttled_until = None;
            return Ok(());
        }
        if flight.throttled_until.is_some_and(|until| now < until) {
            self.shared
                .counters
                .throttled
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!("token refused at birth again too soon: not refreshing");
            return Err(Error::throttled());
        }
        let exponent = flight.refused.min(6);
        flight.refused = flight.refused.saturating_add(1);
        let wait = self
            .shared
            .limits
            .rejection_interval
            .saturating_mul(1 << exponent);
        flight.throttled_until = Some(after(now, wait));
        Ok(())
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
        LocalCache {
            source: self.clone(),
            cache: None,
            used: false,
        }
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
                self.refresh_in_background();
                true
            }
            Freshness::Expired => false,
        }
    }

    fn refresh_in_background(&self) {
        let shared = &self.shared;
        // Read before the exchange: while a refresh runs or backs off,
        // stale reads stay read-only on the shared word.
        let state = shared.background.load(Ordering::Acquire);
        if state == RUNNING || (state != IDLE && !shared.backoff_over(state)) {
            return;
        }
        if shared
            .background
            .compare_exchange(state, RUNNING, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let mut flight = shared.lock_flight();
        if flight.running().is_some() {
            // A foreground fetch is already replacing the token.
            shared.background.store(IDLE, Ordering::Release);
            return;
        }
        // NOTE: from here the guard owns the flag: whatever ends the task
        // (an outcome, a panic in the grant, its runtime shutting down)
        // releases it.
        let guard = BackgroundGuard {
            shared: Arc::clone(shared),
            succeeded: false,
        };
        if self
            .start(&mut flight, RefreshReason::Stale, Some(guard))
            .is_err()
        {
            shared.background.store(IDLE, Ordering::Release);
        }
    }

    /// The slow path: take the cached token if usable, else join or start
    /// the fetch. Called when a [`TokenFuture`] is first polled.
    fn wait(&self) -> TokenFuture {
        let receiver = {
            let mut flight = self.shared.lock_flight();
            let mut reason = RefreshReason::FirstUse;
            let now = Instant::now();
            if let Some(token) = self.shared.cache.load_full() {
                match freshness(&token) {
                    Freshness::Fresh => return TokenFuture::ready(Ok(token)),
                    Freshness::Stale => {
                        drop(flight);
                        self.refresh_in_background();
                        return TokenFuture::ready(Ok(token));
                    }
                    Freshness::Expired => reason = RefreshReason::Expired,
                }
            } else if flight.last.is_some() {
                reason = RefreshReason::Rejected;
            }
            if let Some((error, _)) = flight.failure.as_ref().filter(|(_, until)| now < *until) {
                return TokenFuture::ready(Err(error.clone()));
            }
            match flight.running() {
                Some(receiver) => receiver.clone(),
                None => match self.start(&mut flight, reason, None) {
                    Ok(receiver) => receiver,
                    Err(e) => return TokenFuture::ready(Err(e)),
                },
            }
        };
        self.shared.counters.waits.fetch_add(1, Ordering::Relaxed);
        TokenFuture::waiting(receiver)
    }

    /// Starts a fetch in its own task, which owns `guard`. The caller holds
    /// the flight lock.
    fn start(
        &self,
        flight: &mut Flight,
        reason: RefreshReason,
        guard: Option<BackgroundGuard>,
    ) -> Result<watch::Receiver<Option<Outcome>>, Error> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::runtime("fetching a token needs a Tokio runtime"))?;
        let (sender, receiver) = watch::channel(None);
        flight.current = Some(receiver.clone());
        let request = FetchToken::new(reason, flight.last.clone());
        let shared = Arc::clone(&self.shared);
        let span = tracing::info_span!("fetch_token", reason = %reason);
        runtime.spawn(shared.fetch(request, sender, guard).instrument(span));
        Ok(receiver)
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

    /// Whether the background backoff that `state` encodes has ended.
    fn backoff_over(&self, state: u64) -> bool {
        self.nanos(Instant::now()).saturating_add(1) >= state
    }

    /// `at` as nanoseconds after `epoch`.
    fn nanos(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(since).unwrap_or(RUNNING - 1)
    }

    async fn fetch(
        self: Arc<Self>,
        request: FetchToken,
        sender: watch::Sender<Option<Outcome>>,
        mut guard: Option<BackgroundGuard>,
    ) {
        let reason = request.reason;
        self.counters.fetches.fetch_add(1, Ordering::Relaxed);
        if reason != RefreshReason::FirstUse {
            self.counters.refreshes.fetch_add(1, Ordering::Relaxed);
        }
        let outcome = match self.grant.clone().oneshot(request).await {
            Ok(mut token) => {
                token.schedule(&self.timing);
                tracing::info!(expires_in = ?token.lifetime(), "token fetched");
                Ok(Arc::new(token))
            }
            Err(error) => {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "token fetch failed");
                Err(error)
            }
        };
        {
            let mut flight = self.lock_flight();
            match &outcome {
                Ok(token) => {
                    self.cache.store(Some(Arc::clone(token)));
                    let replaced = flight.last.replace(Arc::clone(token));
                    flight.failure = None;
                    let now = Instant::now();
                    let proven = replaced.is_some_and(|old| {
                        self.served.load(Ordering::Relaxed) >= old.id.get()
                            && now.saturating_duration_since(old.issued_at()) >= AT_BIRTH
                    });
                    if proven {
                        // The token replaced was accepted: the server takes
                        // ours, any backoff of refused tokens is over.
                        flight.refused = 0;
                        flight.throttled_until = None;
                    }
                }
                Err(error) if error.is_permanent() => {
                    let until = after(Instant::now(), self.limits.permanent_error_memory);
                    flight.failure = Some((error.clone(), until));
                }
                Err(_) => {}
            }
            flight.current = None;
        }
        if let Some(guard) = guard.as_mut() {
            guard.succeeded = outcome.is_ok();
        }
        sender.send_replace(Some(outcome));
        // The guard, dropped here, ends the background refresh.
    }
}

/// Owns the background-refresh flag for the task that refreshes: dropped
/// when the task ends however it ends (an outcome, a panic in the grant, its
/// runtime shutting down), it frees the flag, or arms the backoff when the
/// refresh did not succeed, so a dead task never leaves the source without
/// background refreshes.
struct BackgroundGuard {
    shared: Arc<Shared>,
    succeeded: bool,
}

impl Drop for BackgroundGuard {
    fn drop(&mut self) {
        let shared = &self.shared;
        if self.succeeded {
            shared.background_failures.store(0, Ordering::Relaxed);
            shared.background.store(IDLE, Ordering::Release);
            return;
        }
        // Keep serving the still-valid token; allow the next background
        // attempt only after a backoff.
        let failures = shared.background_failures.fetch_add(1, Ordering::Relaxed);
        let until = after(Instant::now(), background_backoff(failures));
        let state = shared.nanos(until).saturating_add(1).min(RUNNING - 1);
        shared.background.store(state, Ordering::Release);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freshness {
    Fresh,
    Stale,
    Expired,
}

/// Where `token` stands now. Reads the clock only for tokens that expire.
#[inline]
fn freshness(token: &Token) -> Freshness {
    let Some(refresh_at) = token.refresh_at else {
        return Freshness::Fresh;
    };
    let now = Instant::now();
    if now < refresh_at {
        Freshness::Fresh
    } else if token.usable_until.is_some_and(|until| now >= until) {
        Freshness::Expired
    } else {
        Freshness::Stale
    }
}

/// Wait before the next background attempt after `failures` failed ones:
/// 1 s, doubling, at most 60 s.
fn background_backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(6)).min(Duration::from_secs(60))
}

impl Flight {
    /// The fetch in progress, unless its task ended without publishing
    /// (its runtime shut down): that one must not be joined.
    fn running(&self) -> Option<&watch::Receiver<Option<Outcome>>> {
        self.current
            .as_ref()
            .filter(|receiver| receiver.has_changed().is_ok())
    }
}

// ===== LocalCache =====

/// One [`BearerAuth`](crate::BearerAuth)'s view of a [`TokenSource`]: the
/// source, and the token this handle last saw.
///
/// NOTE: this is the hot path. `ArcSwapOption::load` writes a debt slot
/// and reads it back, which costs about as much as tower-http's whole
/// header clone (~12 ns on the bench machine). `arc_swap::Cache` only
/// compares the shared pointer with the one it holds (one plain load) and
/// reloads when a token was stored or dropped; `BearerAuth::call` has
/// `&mut self`, so each handle can keep one. It is made on a handle's
/// second request, and a clone starts without one: a handle cloned for a
/// single request (`svc.clone().oneshot(..)`) then costs what it did
/// before, one reference count on the source, and takes the plain load.
/// The price: a handle keeps the token it last saw alive until its next
/// request.
pub(crate) struct LocalCache {
    source: TokenSource,
    cache: Option<Cache<CacheRef, Option<Arc<Token>>>>,
    used: bool,
}

impl LocalCache {
    /// The source.
    pub(crate) fn source(&self) -> &TokenSource {
        &self.source
    }

    /// The header value of a usable cached token and its id. Takes no lock,
    /// allocates nothing (but once per handle, on its second request); a
    /// stale token starts one background refresh.
    #[inline]
    pub(crate) fn cached_header(&mut self) -> Option<(HeaderValue, TokenId, Option<Binding>)> {
        if self.cache.is_none() {
            if !self.used {
                self.used = true;
                return self.source.cached_header();
            }
            let shared = CacheRef(Arc::clone(&self.source.shared));
            self.cache = Some(Cache::new(shared));
        }
        let token = self.cache.as_mut()?.load().as_ref()?;
        self.source.header(token)
    }
}

impl Clone for LocalCache {
    fn clone(&self) -> Self {
        Self {
            source: self.source.clone(),
            cache: None,
            used: false,
        }
    }
}

impl fmt::Debug for LocalCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.source.fmt(f)
    }
}

/// What [`Cache`] reads: the source's shared cell.
#[derive(Clone)]
struct CacheRef(Arc<Shared>);

impl Deref for CacheRef {
    type Target = ArcSwapOption<Token>;

    fn deref(&self) -> &Self::Target {
        &self.0.cache
    }
}

// ===== TokenFuture =====

/// The future returned by [`TokenSource::token`] and
/// [`TokenSource::invalidate`]; response future of the [`TokenSource`] service.
#[must_use = "futures do nothing unless polled"]
pub struct TokenFuture {
    state: FutureState,
}

enum FutureState {
    Ready(Option<Outcome>),
    /// Not polled yet: joins or starts the fetch when it is.
    Lazy(TokenSource),
    Waiting(Pin<Box<dyn Future<Output = Outcome> + Send>>),
}

impl TokenFuture {
    /// Whether this is the answer to a rejection that was throttled.
    pub(crate) fn is_throttled(&self) -> bool {
        matches!(&self.state, FutureState::Ready(Some(Err(e))) if e.is_throttled())
    }

    fn ready(outcome: Outcome) -> Self {
        Self {
            state: FutureState::Ready(Some(outcome)),
        }
    }

    fn lazy(source: TokenSource) -> Self {
        Self {
            state: FutureState::Lazy(source),
        }
    }

    fn waiting(mut receiver: watch::Receiver<Option<Outcome>>) -> Self {
        let wait = async move {
            match receiver.wait_for(Option::is_some).await {
                Ok(outcome) => outcome.clone().unwrap_or_else(|| Err(Error::closed())),
                Err(_) => Err(Error::closed()),
            }
        };
        Self {
            state: FutureState::Waiting(Box::pin(wait)),
        }
    }
}

impl Future for TokenFuture {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        loop {
            match &mut self.state {
                FutureState::Ready(outcome) => {
                    return Poll::Ready(outcome.take().unwrap_or_else(|| Err(Error::closed())))
                }
                FutureState::Lazy(source) => {
                    // Never `Lazy` again: `wait` answers ready or waiting.
                    let next = source.wait().state;
                    self.state = next;
                }
                FutureState::Waiting(wait) => return wait.as_mut().poll(cx),
            }
        }
    }
}

impl fmt::Debug for TokenFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            FutureState::Ready(_) => "ready",
            FutureState::Lazy(_) => "not polled",
            FutureState::Waiting(_) => "waiting",
        };
        f.debug_struct("TokenFuture")
            .field("state", &state)
            .finish()
    }
}

// ===== TokenSourceBuilder =====

/// Configures a [`TokenSource`]; see [`TokenSource::builder`].
#[must_use]
pub struct TokenSourceBuilder {
    grant: Grant,
    timing: Timing,
    limits: Limits,
}

impl TokenSourceBuilder {
    /// Default refresh window: 5 minutes, as MSAL uses (Google's libraries use
    /// 3¾–4 minutes). A token is stale once less than
    /// `min(window, lifetime / 4)` remains; the fraction, as aliri refreshes
    /// at 75 % of the lifetime, keeps a 5-second token from being stale at
    /// birth.
    pub const DEFAULT_REFRESH_WINDOW: Duration = Duration::from_secs(300);

    /// Default expiry margin: 30 seconds. A token is expired, and callers
    /// wait, once less than `min(margin, lifetime / 10)` remains. Go's 10 s is
    /// known to be too short for slow requests; Spring, Duende and Authlib use
    /// 60 s, which wastes a minute of every short-lived token.
    pub const DEFAULT_EXPIRY_MARGIN: Duration = Duration::from_secs(30);

    /// Default jitter: 0.5. Each token's refresh window is widened by a random
    /// 0–50 %, as the AWS SDKs do, so a fleet started together does not
    /// refresh in lockstep.
    pub const DEFAULT_JITTER: f64 = 0.5;

    /// Default memory of a permanent failure ([`Error::is_permanent`], such
    /// as `invalid_client`): 5 s. Callers in that time get the same error
    /// without a new token request, so a misconfigured client cannot hammer
    /// its issuer, yet a fixed configuration is picked up quickly.
    pub const DEFAULT_PERMANENT_ERROR_MEMORY: Duration = Duration::from_secs(5);

    /// Default first backoff after a token refused at birth: 5 s. A server
    /// that refuses every new token (a wrong audience, say) then costs token
    /// requests 5 s, 10 s, 20 s … (at most 64 × 5 s) apart, not one per
    /// request; meanwhile a rejected request's 401 is returned as it is. A
    /// token that served before it was rejected (revoked) is never
    /// throttled. See [`TokenSource::invalidate`].
    pub const DEFAULT_REJECTION_INTERVAL: Duration = Duration::from_secs(5);

    /// The least lifetime a token is scheduled for: 5 s. A token whose
    /// lifetime is shorter (`expires_in: 0`, `expires_in: 1`, a JWT `exp`
    /// already past) is used as if it lived 5 s: stale after 3¾–5 s (with
    /// the jitter), expired after 4½ s. So however small a lifetime a server
    /// sends, a source asks for at most one token per few seconds, whatever
    /// the number of callers: 20 calls at once are one token request.
    ///
    /// Why not Go's "`0` means no expiry": it only covers `0`, and leaves
    /// `expires_in: 1` (always inside Go's 10 s expiry delta) a token
    /// request per call; and a server that sends `0` may mean "expires
    /// now". A floor covers every small value, keeps the token short-lived
    /// as the server asked, and if the server refuses the token sooner the
    /// 401 replay replaces it. [`Token::expires_at`] and [`Token::lifetime`]
    /// still say what the server sent.
    pub const MIN_LIFETIME: Duration = Duration::from_secs(5);

    /// Sets how long a permanent failure is remembered. Defaults to
    /// [`Self::DEFAULT_PERMANENT_ERROR_MEMORY`].
    ///
    /// Any value is safe: one over 30 years (`Duration::MAX`, say) is cut to
    /// 30 years, that is, the failure is remembered for the life of the
    /// source.
    pub fn permanent_error_memory(mut self, memory: Duration) -> Self {
        self.limits.permanent_error_memory = memory.min(FAR_FUTURE);
        self
    }

    /// Sets the first backoff after a token refused at birth; later ones
    /// double, up to 64 times this (see [`TokenSource::invalidate`]).
    /// Defaults to [`Self::DEFAULT_REJECTION_INTERVAL`]; `Duration::ZERO`
    /// turns the throttle off.
    ///
    /// Any value is safe: one over 30 years (`Duration::MAX`, say) is cut to
    /// 30 years, that is, after one token refused at birth and replaced, no
    /// other is replaced until a token is accepted.
    pub fn rejection_interval(mut self, interval: Duration) -> Self {
        self.limits.rejection_interval = interval.min(FAR_FUTURE);
        self
    }

    /// Sets the refresh window. Defaults to [`Self::DEFAULT_REFRESH_WINDOW`].
    /// Any value is safe: the window is at most a quarter of the lifetime.
    pub fn refresh_window(mut self, window: Duration) -> Self {
        self.timing.refresh_window = window;
        self
    }

    /// Sets the expiry margin. Defaults to [`Self::DEFAULT_EXPIRY_MARGIN`].
    /// Any value is safe: the margin is at most a tenth of the lifetime.
    pub fn expiry_margin(mut self, margin: Duration) -> Self {
        self.timing.expiry_margin = margin;
        self
    }

    /// Sets the jitter, a fraction from 0 (none) to 1, clamped to that range.
    /// Defaults to [`Self::DEFAULT_JITTER`].
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.timing.jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        self
    }

    /// The lifetime of a token whose response has no `expires_in`.
    ///
    /// Defaults to `None`: such a token is used until a server rejects it,
    /// as Go's `oauth2` and Duende do. The server did not say it expires,
    /// and the 401 replay recovers when it does; set a lifetime for servers
    /// known to omit `expires_in` on short-lived tokens. A lifetime too long
    /// to add to the clock (`Some(Duration::MAX)`) is the same as `None`.
    pub fn default_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.timing.default_lifetime = lifetime;
        self
    }

    /// Builds the source. Nothing is fetched until the first token is asked for.
    pub fn build(self) -> TokenSource {
        TokenSource {
            shared: Arc::new(Shared {
                grant: self.grant,
                timing: self.timing,
                limits: self.limits,
                cache: ArcSwapOption::empty(),
                flight: Mutex::new(Flight::default()),
                background: AtomicU64::new(IDLE),
                background_failures: AtomicU32::new(0),
                served: AtomicU64::new(0),
                epoch: Instant::now(),
                counters: Counters::default(),
            }),
        }
    }
}

impl fmt::Debug for TokenSourceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSourceBuilder")
            .field("timing", &self.timing)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::VecDeque, sync::atomic::AtomicUsize};

    use tower::service_fn;

    use super::*;

    /// A grant that hands out queued tokens, one per call, and fails the test
    /// when the queue runs dry.
    fn queued(lifetimes: &[u64]) -> (TokenSource, Arc<AtomicUsize>) {
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

    #[tokio::test(start_paused = true)]
    async fn a_failed_background_refresh_keeps_the_token_and_backs_off() {
        let queue = Arc::new(Mutex::new(VecDeque::from([Ok(100u64), Err(()), Ok(100)])));
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let grant = service_fn(move |_request: FetchToken| {
            counter.fetch_add(1, Ordering::SeqCst);
            let next = queue.lock().unwrap().pop_front().expect("unexpected fetch");
            async move {
                match next {
                    Ok(secs) => Ok(Token::bearer("t")?.with_expires_in(Duration::from_secs(secs))),
                    Err(()) => Err(Error::timeout()),
                }
            }
        });
        let source = TokenSource::builder(grant).jitter(0.0).build();
        let first = source.token().await.unwrap();

        tokio::time::advance(Duration::from_secs(80)).await; // stale at 75 s
        assert_eq!(source.cached().unwrap().id(), first.id());
        tokio::task::yield_now().await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "the background refresh ran and failed"
        );
        for _ in 0..10 {
            assert_eq!(source.cached().unwrap().id(), first.id(), "still served");
        }
        tokio::task::yield_now().await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "no retry before the backoff"
        );

        tokio::time::advance(Duration::from_millis(1100)).await;
        tokio::task::yield_now().await; // the backoff ends
        assert_eq!(source.cached().unwrap().id(), first.id());
        tokio::task::yield_now().await;
        assert_eq!(calls.load(Ordering::SeqCst), 3, "one retry after 1 s");
        assert_ne!(source.cached().unwrap().id(), first.id());
        assert_eq!(source.stats().failures, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_rejected_again_right_after_a_refresh_is_not_refreshed_again() {
        let (source, calls) = queued(&[3600, 3600, 3600]);
        let first = source.token().await.unwrap();
        let second = source.invalidate(first.id()).await.unwrap();
        let again = source.invalidate(second.id()).await;
        assert!(again.unwrap_err().is_throttled());
        assert_eq!(source.cached().unwrap().id(), second.id(), "still current");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(source.stats().throttled, 1);

        tokio::time::advance(TokenSourceBuilder::DEFAULT_REJECTION_INTERVAL).await;
        let third = source.invalidate(second.id()).await.unwrap();
        assert_ne!(third.id(), second.id(), "allowed once the interval passed");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_failure_is_remembered_briefly() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let grant = service_fn(move |_request: FetchToken| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    let oauth = crate::OAuthError::new("invalid_client".into(), None, None);
                    Err(Error::status(
                        http::StatusCode::UNAUTHORIZED,
                        Some(oauth),
                        b"",
                    ))
                } else {
                    Token::bearer("t")
                }
            }
        });
        let source = TokenSource::new(grant);
        for _ in 0..50 {
            let e = source.token().await.unwrap_err();
            assert!(e.is_permanent());
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "one token request, 50 answers"
        );

        tokio::time::advance(TokenSourceBuilder::DEFAULT_PERMANENT_ERROR_MEMORY).await;
        assert!(
            source.token().await.is_ok(),
            "asked again after the memory ends"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_failure_is_not_remembered() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let grant = service_fn(move |_request: FetchToken| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err(Error::timeout())
                } else {
                    Token::bearer("t")
                }
            }
        });
        let source = TokenSource::new(grant);
        assert!(source.token().await.unwrap_err().is_timeout());
        assert!(source.token().await.is_ok());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_local_cache_follows_every_change_of_the_source() {
        let (source, _calls) = queued(&[3600, 3600]);
        let mut local = source.local();
        assert!(local.cached_header().is_none(), "nothing fetched yet");
        assert!(local.cached_header().is_none(), "nothing cached yet");

        let first = source.token().await.unwrap();
        assert_eq!(local.cached_header().unwrap().1, first.id());
        let mut once = local.clone();
        assert_eq!(once.cached_header().unwrap().1, first.id(), "uncached");

        let replacement = source.invalidate(first.id());
        assert!(
            local.cached_header().is_none(),
            "a rejected token is not served from a local cache"
        );
        let second = replacement.await.unwrap();
        assert_eq!(local.cached_header().unwrap().1, second.id());
        assert_eq!(local.clone().cached_header().unwrap().1, second.id());
    }

    /// A source whose grant's call number `n` (from 0) answers `answer(n)`.
    fn scripted<F, Fut>(answer: F) -> (TokenSource, Arc<AtomicUsize>)
    where
        F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Token, Error>> + Send + 'static,
    {
        scripted_with(answer, |builder| builder)
    }

    /// [`scripted`], with settings.
    fn scripted_with<F, Fut>(
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

    fn lasting(secs: u64) -> Result<Token, Error> {
        Ok(Token::bearer("t")?.with_expires_in(Duration::from_secs(secs)))
    }

    fn paused_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    }

    #[test]
    fn a_background_refresh_cut_by_its_runtime_shutting_down_leaves_background_refreshes_working() {
        let (source, calls) = scripted(|n| async move {
            if n == 1 {
                // The background refresh that the shutdown cuts.
                std::future::pending::<()>().await;
            }
            lasting(100)
        });
        let doomed = paused_runtime();
        let first = doomed.block_on(async {
            let first = source.token().await.unwrap();
            tokio::time::advance(Duration::from_secs(80)).await; // stale at 75 s
            assert_eq!(source.cached().unwrap().id(), first.id());
            tokio::task::yield_now().await;
            first
        });
        assert_eq!(calls.load(Ordering::SeqCst), 2, "the refresh started");
        drop(doomed);

        paused_runtime().block_on(async {
            // The token is stale here too (expired only at 90 s).
            tokio::time::advance(Duration::from_secs(85)).await;
            let waits = source.stats().waits;
            assert_eq!(source.cached().unwrap().id(), first.id(), "still served");
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            assert_eq!(calls.load(Ordering::SeqCst), 3, "a new background refresh");
            assert_ne!(source.cached().unwrap().id(), first.id(), "replaced");
            assert_eq!(source.stats().waits, waits, "no caller waited");
        });
    }

    #[tokio::test(start_paused = true)]
    async fn a_grant_that_panics_in_a_background_refresh_leaves_background_refreshes_working() {
        let (source, calls) = scripted(|n| async move {
            assert_ne!(n, 1, "a grant bug (this panic is expected)");
            lasting(100)
        });
        let first = source.token().await.unwrap();
        tokio::time::advance(Duration::from_secs(80)).await;
        assert_eq!(source.cached().unwrap().id(), first.id());
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "the refresh ran and panicked"
        );
        assert_eq!(source.cached().unwrap().id(), first.id(), "still served");
        tokio::task::yield_now().await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "backing off, as after a failure"
        );

        tokio::time::advance(Duration::from_millis(1100)).await;
        assert_eq!(source.cached().unwrap().id(), first.id());
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3, "a new background refresh");
        assert_ne!(source.cached().unwrap().id(), first.id());
        assert_eq!(source.stats().waits, 1, "only the first use waited");
    }

    #[tokio::test(start_paused = true)]
    async fn a_rejection_interval_of_duration_max_throttles_without_panicking() {
        let (source, calls) = scripted_with(
            |n| async move { Token::bearer(format!("t{n}")) },
            |builder| builder.rejection_interval(Duration::MAX),
        );
        let first = source.token().await.unwrap();
        let second = source.invalidate(first.id()).await.unwrap();
        for _ in 0..3 {
            let again = source.invalidate(second.id()).await;
            assert!(again.unwrap_err().is_throttled());
            tokio::time::advance(Duration::from_secs(365 * 24 * 3600)).await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn duration_max_settings_are_cut_to_never() {
        let grant = service_fn(|_request: FetchToken| async { Token::bearer("t") });
        let builder = TokenSource::builder(grant)
            .rejection_interval(Duration::MAX)
            .permanent_error_memory(Duration::MAX);
        assert_eq!(builder.limits.rejection_interval, FAR_FUTURE);
        assert_eq!(builder.limits.permanent_error_memory, FAR_FUTURE);
        let now = Instant::now();
        assert!(after(now, Duration::MAX) >= now + Duration::from_secs(3600));
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_error_memory_of_duration_max_keeps_the_oauth_error() {
        let (source, calls) = scripted_with(
            |n| async move {
                if n == 0 {
                    let oauth = crate::OAuthError::new("invalid_client".into(), None, None);
                    return Err(Error::status(
                        http::StatusCode::UNAUTHORIZED,
                        Some(oauth),
                        b"",
                    ));
                }
                Token::bearer("t")
            },
            |builder| builder.permanent_error_memory(Duration::MAX),
        );
        for _ in 0..3 {
            let error = source.token().await.unwrap_err();
            assert_eq!(
                error.oauth_error().unwrap().code().as_str(),
                "invalid_client"
            );
            tokio::time::advance(Duration::from_secs(365 * 24 * 3600)).await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn polled_without_a_runtime_a_fetch_is_an_error_not_a_panic() {
        let (source, calls) = queued(&[]);
        let mut future = std::pin::pin!(source.token());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let Poll::Ready(outcome) = future.as_mut().poll(&mut cx) else {
            panic!("without a runtime the answer is at once");
        };
        assert!(outcome.unwrap_err().is_runtime());
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}
