use std::task::{Context, Poll};

use http::{header::AUTHORIZATION, Request, Response};
use tower::BoxError;
use tower_service::Service;

use crate::{
    future::ResponseFuture,
    layer::{BearerAuthLayer, Options},
    replay::{CheapClone, CloneBody, SavedRequest},
    source::{LocalCache, TokenSource},
    token,
};

/// Middleware that authorizes requests with tokens from a [`TokenSource`].
///
/// For each request it takes the current token (no lock, no allocation when
/// a fresh one is cached), sets `Authorization: Bearer …` (marked sensitive),
/// keeps a copy of the request when its body can be copied (see
/// [`CloneBody`]), and calls the inner service. If the inner service answers
/// **401** for the token it was sent, the token is invalidated at the source
/// (also when the request cannot be replayed, so later requests get a new
/// one), a fresh one awaited, and the copy sent **once**. A second 401 is returned
/// as it is; so is a 401 whose `WWW-Authenticate` says `insufficient_scope`
/// (RFC 6750 §3.1: a new token would not help), and one for a token refused
/// at birth while the throttle backs off (see
/// [`TokenSource::invalidate`](crate::TokenSource::invalidate)), so a server
/// that refuses every new token costs no token request per call. A token
/// that served before it was rejected (revoked) is always replaced.
///
/// When no token can be obtained the request is not sent, and the call fails
/// with an [`Error`](crate::Error) inside the [`BoxError`]. Errors of the inner
/// service pass through unchanged (boxed).
///
/// See the [crate documentation](crate) for an example.
///
/// # Clone
///
/// The inner service must be `Clone`. A request that waits for a token takes
/// the service that was readied for it (so it keeps any slot it holds), and a
/// replay is sent through a clone that is readied again first. If your
/// service is not `Clone`, wrap it in `tower::buffer::Buffer`.
#[derive(Debug, Clone)]
pub struct BearerAuth<S, C = CheapClone> {
    inner: S,
    tokens: LocalCache,
    clone_body: C,
    options: Options,
}

impl<S> BearerAuth<S> {
    /// Authorizes requests to `inner` with tokens from `source`.
    pub fn new(inner: S, source: TokenSource) -> Self {
        Self::with_options(inner, source, CheapClone, Options::default())
    }

    /// A [`BearerAuthLayer`] for this middleware.
    pub fn layer(source: TokenSource) -> BearerAuthLayer {
        BearerAuthLayer::new(source)
    }
}

impl<S, C> BearerAuth<S, C> {
    pub(crate) fn with_options(
        inner: S,
        source: TokenSource,
        clone_body: C,
        options: Options,
    ) -> Self {
        Self {
            inner,
            tokens: source.local(),
            clone_body,
            options,
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

    /// The token source.
    pub fn source(&self) -> &TokenSource {
        self.tokens.source()
    }
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for BearerAuth<S, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    C: CloneBody<ReqBody>,
{
    type Response = Response<ResBody>;
    type Error = BoxError;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if !self
            .options
            .attaches_to_uri(request.uri(), request.headers())
        {
            return ResponseFuture::passthrough(self.inner.call(request));
        }
        if self
            .options
            .keeps(request.headers().contains_key(AUTHORIZATION))
        {
            return ResponseFuture::passthrough(self.inner.call(request));
        }
        authorize_call(
            &mut self.inner,
            &mut self.tokens,
            &self.clone_body,
            &self.options,
            request,
        )
    }
}

/// Authorizes `request` with the token of `tokens` and calls `inner`, or
/// moves the readied `inner` into a future that waits for a token: what
/// [`BearerAuth::call`] does once a request is to get a token, shared with
/// the keyed middleware ([`KeyedBearerAuth`](crate::keyed::KeyedBearerAuth)).
#[inline]
pub(crate) fn authorize_call<S, C, ReqBody, ResBody>(
    inner: &mut S,
    tokens: &mut LocalCache,
    clone_body: &C,
    options: &Options,
    mut request: Request<ReqBody>,
) -> ResponseFuture<S, ReqBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    C: CloneBody<ReqBody>,
{
    match tokens.cached_header() {
        Some((value, id, binding)) => {
            // Authorize first: the copy then has room for the header, and
            // a replay only overwrites its value.
            request.headers_mut().insert(AUTHORIZATION, value);
            let sent = match token::constrain(binding, &mut request) {
                Ok(sent) => sent,
                Err(error) => return ResponseFuture::failed(error),
            };
            let (request, saved) = if copies_by_reference(clone_body, options, &request) {
                let saved = SavedRequest::copy(&request, clone_body);
                (request, saved.map(|saved| (saved, inner.clone())))
            } else {
                keep(inner, clone_body, options, request)
            };
            let future = inner.call(request);
            ResponseFuture::called(future, id, tokens.source_ref(), saved, sent)
        }
        None => {
            // NOTE: `inner` was readied for this request; it goes into the
            // future, which calls it once the token arrives, and a clone
            // stays behind for the next `poll_ready` (see `tower::Service`).
            let clone = inner.clone();
            let ready = std::mem::replace(inner, clone);
            let (request, saved) = keep(&ready, clone_body, options, request);
            let token = tokens.source().token();
            ResponseFuture::waiting(token, tokens.source_ref(), ready, request, saved)
        }
    }
}

/// Whether a replay of `request` is kept, and copied from a reference
/// ([`CloneBody::copies_by_reference`]).
#[inline]
fn copies_by_reference<B, C: CloneBody<B>>(
    clone_body: &C,
    options: &Options,
    request: &Request<B>,
) -> bool {
    clone_body.copies_by_reference()
        && !clone_body.never_keeps()
        && options.replay_on.allows(request.method())
}

/// Keeps what a replay of `request` needs, if its method and body allow.
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
