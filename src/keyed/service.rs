//! [`KeyedBearerAuth`]: [`BearerAuth`](crate::BearerAuth), the source picked
//! per request.

use std::{
    fmt,
    future::Future,
    hash::Hash,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{header::AUTHORIZATION, Request, Response};
use pin_project_lite::pin_project;
use tower::BoxError;
use tower_service::Service;

use super::{
    layer::RequestKey,
    sources::{Entry, TokenSources},
};
use crate::{
    error::Error,
    future::ResponseFuture,
    layer::Options,
    replay::{CheapClone, CloneBody},
    service::authorize_call,
    source::LocalCache,
};

/// Middleware that authorizes each request with the token of its key;
/// see [`BearerAuthLayer::keyed`](crate::BearerAuthLayer::keyed).
///
/// Per request: the key function names the key (`None`: passed through
/// untouched), the key's source is looked up (no lock) or made, and from
/// there on the request goes the way of [`BearerAuth`](crate::BearerAuth)
/// with that source: the same response future, 401 handling, replay and
/// DPoP. A handle remembers the last key it saw, with its own lock-free
/// view of that key's token, so a handle that sends for one key again and
/// again skips the map.
///
/// # Clone
///
/// As [`BearerAuth`](crate::BearerAuth): the inner service must be `Clone`.
pub struct KeyedBearerAuth<S, K, F, C = CheapClone> {
    inner: S,
    sources: TokenSources<K>,
    key: F,
    clone_body: C,
    options: Options,
    last: Option<Last<K>>,
}

/// The key a handle saw last, its entry and the handle's view of its token.
struct Last<K> {
    key: K,
    entry: Arc<Entry>,
    tokens: LocalCache,
}

pin_project! {
    /// Response future for [`KeyedBearerAuth`]: the
    /// [`ResponseFuture`](crate::ResponseFuture) of the key's
    /// source, polled inside a `debug` span that names the key by its
    /// fingerprint.
    #[must_use = "futures do nothing unless polled"]
    pub struct KeyedResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        inner: ResponseFuture<S, B>,
        span: tracing::Span,
    }
}

// ===== impl KeyedBearerAuth =====

impl<S, K, F, C> KeyedBearerAuth<S, K, F, C> {
    pub(super) fn new(
        inner: S,
        sources: TokenSources<K>,
        key: F,
        clone_body: C,
        options: Options,
    ) -> Self {
        Self {
            inner,
            sources,
            key,
            clone_body,
            options,
            last: None,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the middleware, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The sources.
    pub fn sources(&self) -> &TokenSources<K> {
        &self.sources
    }
}

impl<S, K, F, C> KeyedBearerAuth<S, K, F, C>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// This handle's view of `key`'s token: the one it kept, if it is the
    /// same key and its entry is live, else a lookup.
    #[inline]
    fn tokens<'a>(
        last: &'a mut Option<Last<K>>,
        sources: &TokenSources<K>,
        key: K,
    ) -> Result<&'a mut Last<K>, Error> {
        let found = match last.take() {
            Some(last) if last.key == key && last.entry.is_live() => {
                sources.touch(&last.entry);
                last
            }
            _ => {
                let entry = sources.entry(&key)?;
                Last {
                    tokens: entry.source.local(),
                    key,
                    entry,
                }
            }
        };
        Ok(last.insert(found))
    }
}

impl<S, K, F, C, ReqBody, ResBody> Service<Request<ReqBody>> for KeyedBearerAuth<S, K, F, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    C: CloneBody<ReqBody>,
    F: RequestKey<ReqBody, Key = K>,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = KeyedResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let untraced = |inner| KeyedResponseFuture {
            inner,
            span: tracing::Span::none(),
        };
        if !self
            .options
            .attaches_to_uri(request.uri(), request.headers())
            || self
                .options
                .keeps(request.headers().contains_key(AUTHORIZATION))
        {
            return untraced(ResponseFuture::passthrough(self.inner.call(request)));
        }
        let Some(key) = self.key.key(&request) else {
            return untraced(ResponseFuture::passthrough(self.inner.call(request)));
        };
        let last = match Self::tokens(&mut self.last, &self.sources, key) {
            Ok(last) => last,
            Err(error) => return untraced(ResponseFuture::failed(error)),
        };
        let span = tracing::debug_span!("keyed_token", key = %last.entry.fingerprint);
        // NOTE: a token future is lazy: a fetch starts when the response
        // future is first polled, inside the key's span, so its events name
        // the key.
        let inner = authorize_call(
            &mut self.inner,
            &mut last.tokens,
            &self.clone_body,
            &self.options,
            request,
        );
        KeyedResponseFuture { inner, span }
    }
}

impl<S: Clone, K, F: Clone, C: Clone> Clone for KeyedBearerAuth<S, K, F, C> {
    fn clone(&self) -> Self {
        Self::new(
            self.inner.clone(),
            self.sources.clone(),
            self.key.clone(),
            self.clone_body.clone(),
            self.options.clone(),
        )
    }
}

impl<S: fmt::Debug, K, F, C: fmt::Debug> fmt::Debug for KeyedBearerAuth<S, K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedBearerAuth")
            .field("inner", &self.inner)
            .field("sources", &self.sources)
            .field("key", &std::any::type_name::<F>())
            .field("clone_body", &self.clone_body)
            .field("options", &self.options)
            .field(
                "last_key",
                &self.last.as_ref().map(|last| last.entry.fingerprint),
            )
            .finish()
    }
}

// ===== impl KeyedResponseFuture =====

impl<S, B, ResBody> Future for KeyedResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<ResBody>, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        this.inner.poll(cx)
    }
}

impl<S, B> fmt::Debug for KeyedResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedResponseFuture")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}
