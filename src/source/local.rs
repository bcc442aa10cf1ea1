//! [`LocalCache`]: one middleware handle's lock-free view of a source.

use std::{fmt, ops::Deref, sync::Arc};

use arc_swap::{ArcSwapOption, Cache};
use http::HeaderValue;

use super::{schedule::CHECK_EVERY, Shared, TokenSource};
use crate::token::{Binding, Token, TokenId};

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
    /// This handle's own reference to the source, made with the cache: what
    /// its response futures hold (see [`SourceRef`]).
    handle: Option<Arc<TokenSource>>,
    /// Requests this handle may still send on the phase word's say-so
    /// before it reads the clock (see `schedule::CHECK_EVERY`).
    trusted: u8,
    used: bool,
}

impl LocalCache {
    /// A view of `source`, without a cache until its second request.
    pub(super) fn new(source: TokenSource) -> Self {
        Self {
            source,
            cache: None,
            handle: None,
            trusted: 0,
            used: false,
        }
    }

    /// The source.
    pub(crate) fn source(&self) -> &TokenSource {
        &self.source
    }

    /// What a response future holds to reach the source: this handle's own
    /// reference once it has one, else the source.
    #[inline]
    pub(crate) fn source_ref(&self) -> SourceRef {
        SourceRef(match &self.handle {
            Some(handle) => Handle::Local(Arc::clone(handle)),
            None => Handle::Shared(self.source.clone()),
        })
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
            self.handle = Some(Arc::new(self.source.clone()));
        }
        let token = self.cache.as_mut()?.load().as_ref()?;
        if self.trusted > 0 && self.source.shared.vouches_for(token) {
            // Fresh by its timer's word: no clock read.
            self.trusted -= 1;
            return Some((token.header_value().clone(), token.id, token.binding()));
        }
        self.trusted = CHECK_EVERY - 1;
        self.source.header(token)
    }
}

impl Clone for LocalCache {
    fn clone(&self) -> Self {
        Self::new(self.source.clone())
    }
}

impl fmt::Debug for LocalCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.source.fmt(f)
    }
}

/// How a response future reaches its [`TokenSource`]: told when a token
/// served or was rejected.
///
/// NOTE: a `TokenSource` clone per request increments and decrements one
/// counter that every handle on every worker shares, so the cache line moves
/// between cores on every request (the contention bench). A handle's own
/// `Arc` is touched by the task that holds the handle: one reference count
/// too, but on a line that stays on its core. A handle makes it with its
/// cache, on its second request, so a handle cloned for one request
/// allocates nothing.
#[derive(Clone)]
pub(crate) struct SourceRef(Handle);

#[derive(Clone)]
enum Handle {
    Shared(TokenSource),
    Local(Arc<TokenSource>),
}

impl Deref for SourceRef {
    type Target = TokenSource;

    #[inline]
    fn deref(&self) -> &TokenSource {
        match &self.0 {
            Handle::Shared(source) => source,
            Handle::Local(source) => source,
        }
    }
}

impl From<TokenSource> for SourceRef {
    fn from(source: TokenSource) -> Self {
        Self(Handle::Shared(source))
    }
}

impl fmt::Debug for SourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
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

#[cfg(test)]
mod tests {
    use std::{sync::atomic::Ordering, time::Duration};

    use tokio::time::Instant;

    use super::*;
    use crate::source::{
        schedule::UNVOUCHED,
        tests::{paused_runtime, queued},
    };

    /// The id the phase word vouches for.
    fn vouched(source: &TokenSource) -> u64 {
        source.shared.fresh.load(Ordering::SeqCst)
    }

    /// Lets the tasks the source spawned run.
    async fn settle() {
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_vouches_for_a_token_until_its_refresh_at_then_a_request_refreshes_it() {
        let (source, calls) = queued(&[3600, 3600]);
        let first = source.token().await.unwrap();
        settle().await;
        assert_eq!(vouched(&source), first.id().get(), "vouched once cached");
        let mut local = source.local();
        for _ in 0..3 {
            assert_eq!(local.cached_header().unwrap().1, first.id());
        }

        let refresh_at = first.refresh_at.unwrap();
        tokio::time::advance(refresh_at - Instant::now() - Duration::from_millis(1)).await;
        assert_eq!(vouched(&source), first.id().get(), "a millisecond before");
        tokio::time::advance(Duration::from_millis(1)).await;
        settle().await;
        assert_eq!(vouched(&source), UNVOUCHED, "taken back at refresh_at");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the timer fetches nothing");

        assert_eq!(
            local.cached_header().unwrap().1,
            first.id(),
            "stale: served"
        );
        settle().await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one background refresh");
        let second = source.cached().unwrap();
        assert_ne!(second.id(), first.id());
        assert_eq!(vouched(&source), second.id().get(), "the new token's timer");
        assert_eq!(local.cached_header().unwrap().1, second.id());
    }

    #[tokio::test(start_paused = true)]
    async fn a_newer_token_is_never_vouched_for_by_the_timer_of_the_one_it_replaced() {
        let (source, calls) = queued(&[3600, 3600]);
        let first = source.token().await.unwrap();
        settle().await;
        tokio::time::advance(Duration::from_secs(60)).await;
        let second = source.invalidate(first.id()).await.unwrap();
        settle().await;
        assert_eq!(vouched(&source), second.id().get());
        // The first token's timer was stopped: its refresh_at passes without
        // touching the word.
        tokio::time::advance(first.refresh_at.unwrap() - Instant::now()).await;
        settle().await;
        assert_eq!(vouched(&source), second.id().get());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    /// The timer lives on the runtime that fetched the token. Here that
    /// runtime is no longer driven while another one sends the requests,
    /// past the token's expiry: the timer never takes its word back.
    #[test]
    fn a_starved_timer_lets_a_handle_send_at_most_check_every_requests_before_a_clock_read() {
        let (source, calls) = queued(&[3600, 3600]);
        let fetched_on = paused_runtime();
        let mut local = source.local();
        let first = fetched_on.block_on(async {
            let first = source.token().await.unwrap();
            settle().await;
            // The handle's first request, then the one that makes its cache.
            local.cached_header().unwrap();
            local.cached_header().unwrap();
            first
        });
        assert_eq!(vouched(&source), first.id().get());

        let elsewhere = paused_runtime();
        elsewhere.block_on(async {
            tokio::time::advance(Duration::from_secs(2 * 3600)).await;
            let mut sent = 0;
            while local
                .cached_header()
                .is_some_and(|(_, id, _)| id == first.id())
            {
                sent += 1;
                assert!(sent < usize::from(CHECK_EVERY), "the net did not hold");
            }
            assert_eq!(sent, usize::from(CHECK_EVERY) - 1, "then a clock read");
            assert_eq!(vouched(&source), UNVOUCHED, "taken back for every handle");
            assert!(source.local().cached_header().is_none(), "expired");
            let second = source.token().await.unwrap();
            assert_ne!(second.id(), first.id());
        });
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one fetch for the expiry");

        // The runtime that never woke the timer shuts down: the word it gave
        // for its token is gone with it (here, already taken back).
        drop(fetched_on);
        assert_ne!(vouched(&source), first.id().get());
    }

    #[test]
    fn a_runtime_that_shuts_down_takes_its_timers_word_back() {
        let (source, _calls) = queued(&[3600]);
        let runtime = paused_runtime();
        let token = runtime.block_on(async {
            let token = source.token().await.unwrap();
            settle().await;
            token
        });
        assert_eq!(vouched(&source), token.id().get());
        drop(runtime);
        assert_eq!(vouched(&source), UNVOUCHED);
        // Read by the clock again: still fresh.
        let mut local = source.local();
        assert_eq!(local.cached_header().unwrap().1, token.id());
    }

    #[tokio::test(start_paused = true)]
    async fn many_handles_past_refresh_at_start_one_background_fetch() {
        const HANDLES: usize = 64;
        let (source, calls) = queued(&[3600, 3600]);
        let first = source.token().await.unwrap();
        settle().await;
        let mut tasks = Vec::new();
        for _ in 0..HANDLES {
            let mut local = source.local();
            let refresh_at = first.refresh_at.unwrap();
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in 0..10 {
                    ids.push(local.cached_header().unwrap().1);
                    tokio::task::yield_now().await;
                }
                tokio::time::sleep_until(refresh_at).await;
                for _ in 0..200 {
                    ids.push(local.cached_header().unwrap().1);
                    tokio::task::yield_now().await;
                }
                ids
            }));
        }
        let mut saw_second = 0;
        for task in tasks {
            let ids = task.await.unwrap();
            saw_second += usize::from(ids.last() != Some(&first.id()));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one fetch for 64 handles");
        assert_eq!(saw_second, HANDLES, "every handle moved to the new token");
        assert_eq!(source.stats().refreshes, 1);
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
}
