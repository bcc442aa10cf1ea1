//! The flight: the one fetch in progress, the task that runs it, and the
//! channel that publishes its outcome to every caller waiting for it.

use std::sync::{atomic::Ordering, Arc};

use tokio::{sync::watch, time::Instant};
use tower::ServiceExt;
use tracing::Instrument;

use super::{
    schedule::{after, freshness, proven, Freshness, Throttle, IDLE, RUNNING},
    Shared, TokenFuture, TokenSource,
};
use crate::{
    error::Error,
    grant::{FetchToken, RefreshReason},
    token::Token,
};

/// What a fetch publishes: the new token, or why there is none.
pub(super) type Outcome = Result<Arc<Token>, Error>;

#[derive(Default)]
pub(super) struct Flight {
    /// The fetch in progress: `None` until it publishes its outcome.
    current: Option<watch::Receiver<Option<Outcome>>>,
    /// The last token fetched, handed to the grant as `previous`.
    last: Option<Arc<Token>>,
    /// A permanent failure, and until when callers get it instead of a fetch.
    failure: Option<(Error, Instant)>,
    /// How often a token refused at birth is replaced.
    pub(super) throttle: Throttle,
    /// The freshness timer of the cached token (see `schedule::Phase`).
    pub(super) phase_timer: Option<tokio::task::AbortHandle>,
}

impl Drop for Flight {
    fn drop(&mut self) {
        // The source is gone: its token's timer has nothing left to flip.
        if let Some(timer) = self.phase_timer.take() {
            timer.abort();
        }
    }
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

// ===== Starting a fetch =====

impl TokenSource {
    /// Starts one background refresh of the stale current token, unless one
    /// runs or backs off, or a foreground fetch is already replacing it.
    pub(super) fn refresh_in_background(&self) {
        let shared = &self.shared;
        // Read before the exchange: while a refresh runs or backs off,
        // stale reads stay read-only on the shared word.
        let state = shared.background.load(Ordering::Acquire);
        if !shared.background_may_start(state) {
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
    pub(super) fn wait(&self) -> TokenFuture {
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

// ===== The fetch task =====

impl Shared {
    /// The fetch task: asks the grant, files the outcome in the flight,
    /// then publishes it.
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
                    self.arm_phase(&mut flight, token);
                    let replaced = flight.last.replace(Arc::clone(token));
                    flight.failure = None;
                    let now = Instant::now();
                    let served = self.served.load(Ordering::Relaxed);
                    if replaced.is_some_and(|old| proven(served, &old, now)) {
                        // The token replaced was accepted: the server takes
                        // ours, any backoff of refused tokens is over.
                        flight.throttle.reset();
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
        if let (Some(hook), Ok(token)) = (&self.on_token, &outcome) {
            // Cached, and no waiter woken yet; outside the flight lock, so
            // the hook may ask the source for its token.
            let hook = std::panic::AssertUnwindSafe(|| hook(token));
            if std::panic::catch_unwind(hook).is_err() {
                tracing::warn!("the on_token hook panicked");
            }
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
        self.shared.end_background(self.succeeded);
    }
}

#[cfg(test)]
mod tests {
    use std::{
        collections::VecDeque,
        sync::{
            atomic::{AtomicUsize, Ordering},
            Arc, Mutex,
        },
        time::Duration,
    };

    use tower::service_fn;

    use crate::{
        error::{Error, OAuthError},
        grant::FetchToken,
        source::{
            tests::{lasting, paused_runtime, scripted},
            TokenSource, TokenSourceBuilder,
        },
        token::Token,
    };

    #[tokio::test(start_paused = true)]
    async fn a_permanent_failure_is_remembered_briefly() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let grant = service_fn(move |_request: FetchToken| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    let oauth = OAuthError::new("invalid_client".into(), None, None);
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
}
