//! [`LocalCache`]: one middleware handle's lock-free view of a source.

use std::{fmt, ops::Deref, sync::Arc};

use arc_swap::{ArcSwapOption, Cache};
use http::HeaderValue;

use super::{Shared, TokenSource};
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
    used: bool,
}

impl LocalCache {
    /// A view of `source`, without a cache until its second request.
    pub(super) fn new(source: TokenSource) -> Self {
        Self {
            source,
            cache: None,
            handle: None,
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
    use crate::source::tests::queued;

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
