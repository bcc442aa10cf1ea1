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

use http::{Request, Response};
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
    replay::{CheapClone, CloneBody, SavedRequest},
    source::LocalCache,
    token,
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
    fn tokens(&mut self, key: K) -> Result<&mut Last<K>, Error> {
        let last = match self.last.take() {
            Some(last) if last.key == key && last.entry.is_live() => {
                self.sources.touch(&last.entry);
                last
            }
            _ => {
                let entry = self.sources.entry(&key)?;
                Last {
                    tokens: entry.source.local(),
                    key,
                    entry,
                }
            }
        };
        Ok(self.last.insert(last))
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

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let untraced = |inner| KeyedResponseFuture {
            inner,
            span: tracing::Span::none(),
        };
        if !self.options.attaches_to(&request) {
            return untraced(ResponseFuture::passthrough(self.inner.call(request)));
        }
        let Some(key) = self.key.key(&request) else {
            return untraced(ResponseFuture::passthrough(self.inner.call(request)));
        };
        let last = match self.tokens(key) {
            Ok(last) => last,
            Err(error) => return untraced(ResponseFuture::failed(error)),
        };
        let span = tracing::debug_span!("keyed_token", key = %last.entry.fingerprint);
        let inner = match last.tokens.cached_header() {
            Some((value, id, binding)) => {
                let source = last.tokens.source().clone();
                // Authorize first: the copy then has room for the header, and
                // a replay only overwrites its value.
                let sent = match token::authorize(value, binding, &mut request) {
                    Ok(sent) => sent,
                    Err(error) => return untraced(ResponseFuture::failed(error)),
                };
                let (request, saved) = keep(&self.inner, &self.clone_body, &self.options, request);
                let future = self.inner.call(request);
                ResponseFuture::called(future, id, source, saved, sent)
            }
            None => {
                let source = last.tokens.source().clone();
                // NOTE: `self.inner` was readied for this request; it goes into
                // the future, which calls it once the token arrives, and a clone
                // stays behind for the next `poll_ready` (see `tower::Service`).
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                let (request, saved) = keep(&ready, &self.clone_body, &self.options, request);
                // NOTE: lazy: the fetch starts when the future is first
                // polled, inside the key's span, so its events name the key.
                let token = source.token();
                ResponseFuture::waiting(token, source, ready, request, saved)
            }
        };
        KeyedResponseFuture { inner, span }
    }
}

/// Keeps what a replay of `request` needs, if its method and body allow
/// (as [`BearerAuth`](crate::BearerAuth) does).
#[inline]
fn keep<S: Clone, B, C: CloneBody<B>>(
    inner: &S,
    clone_body: &C,
    options: &Options,
    request: Request<B>,
) -> (Request<B>, Option<(SavedRequest<B>, S)>) {
    if clone_body.never_keeps() || !options.replay_on.allows(request.method()) {
        return (request, None);
    }
    let (request, saved) = SavedRequest::prepare(request, clone_body);
    let saved = saved.map(|saved| (saved, inner.clone()));
    (request, saved)
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
