//! [tonic](https://docs.rs/tonic) gRPC clients: the layer on a `tonic::transport::Channel`, token
//! failures as a [`tonic::Status`], and the synchronous accessor for
//! interceptors. Feature `tonic`.
//!
//! # The layer on a channel
//!
//! [`BearerAuthLayer`](crate::BearerAuthLayer) works on a
//! `tonic::transport::Channel` as on any `tower::Service<http::Request<B>>`:
//! every call carries `authorization: Bearer …` metadata, taken from the
//! shared [`TokenSource`]. Put [`into_status`] outside it
//! so that a token that could not be obtained reaches your code as
//! `Code::Unauthenticated`, not `Code::Unknown`:
//!
//! ```
//! use tonic::transport::Channel;
//! use tower::ServiceBuilder;
//! use tower_alf::{BearerAuthLayer, TokenSource};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # let grant = tower::service_fn(|_: tower_alf::grant::FetchToken| async {
//! #     tower_alf::Token::bearer("t")
//! # });
//! # let tokens = TokenSource::new(grant);
//! let channel = Channel::from_static("http://[::1]:50051").connect_lazy();
//! let channel = ServiceBuilder::new()
//!     .map_err(tower_alf::tonic::into_status)
//!     .layer(BearerAuthLayer::new(tokens.clone()))
//!     .service(channel);
//! // Hand `channel` to a generated client: `MyServiceClient::new(channel)`.
//! # let _ = tonic::client::Grpc::new(channel);
//! # }
//! ```
//!
//! # Replay
//!
//! A gRPC request body (`tonic::body::Body`) is a stream of encoded
//! messages; it cannot be copied before it is sent. The default policy,
//! [`CheapClone`], therefore keeps no copy of it: a call answered with HTTP
//! 401 (as gRPC servers behind an authenticating proxy answer) comes back as
//! it is, `Code::Unauthenticated`. One line turns replay on: the
//! [`ReplayStreams`](crate::replay::ReplayStreams) policy keeps each stream
//! as the channel sends it (up to 64 KiB, trailers included) and replays it
//! whole after a 401 with a fresh token.
//!
//! ```
//! use tonic::{body::Body, transport::Channel};
//! use tower::ServiceBuilder;
//! use tower_alf::{replay::ReplayStreams, BearerAuthLayer, TokenSource};
//!
//! fn authorized(channel: Channel, tokens: TokenSource) -> impl tower::Service<http::Request<Body>> {
//!     ServiceBuilder::new()
//!         .layer(BearerAuthLayer::new(tokens).clone_body(ReplayStreams::new(Body::new)))
//!         .service(channel)
//! }
//! ```
//!
//! # `UNAUTHENTICATED`: gRPC's 401
//!
//! tonic servers (and grpc-go, grpc-java) answer a rejected token with HTTP
//! 200 and `grpc-status: 16` (`UNAUTHENTICATED`), usually as a
//! *Trailers-Only* answer: the status in the headers, no message. The
//! layer reads that as a 401: the token sent is invalidated, and the call
//! is replayed once with a fresh one when its body was kept (with
//! `ReplayStreams`, as above); without a copy the call comes back as
//! `Code::Unauthenticated` and the next one gets a new token. A
//! `grpc-status` that is not a number is no rejection: the answer passes
//! through as it is.
//!
//! A status sent in real trailers, after the response headers (a streaming
//! call the server ends with `UNAUTHENTICATED`), comes after the layer has
//! handed the response on, so it cannot replay the call; the stream ends
//! with the error. To have the token replaced for the next call, put
//! [`GrpcStatusLayer`] *below* the layer: it watches the trailers of every
//! answer and invalidates the token the call was sent with. It is an
//! opt-in, not part of `BearerAuth`, because it changes the response body
//! type (a [`GrpcStatusBody`] around the channel's), and plain HTTP users
//! should not pay for a body wrapper they do not need.
//!
//! ```
//! use tonic::transport::Channel;
//! use tower::ServiceBuilder;
//! use tower_alf::{tonic::GrpcStatusLayer, BearerAuthLayer, TokenSource};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! # let grant = tower::service_fn(|_: tower_alf::grant::FetchToken| async {
//! #     tower_alf::Token::bearer("t")
//! # });
//! # let tokens = TokenSource::new(grant);
//! let channel = Channel::from_static("http://[::1]:50051").connect_lazy();
//! let channel = ServiceBuilder::new()
//!     .map_err(tower_alf::tonic::into_status)
//!     .layer(BearerAuthLayer::new(tokens.clone()))
//!     .layer(GrpcStatusLayer::new(tokens.clone()))
//!     .service(channel);
//! # let _ = tonic::client::Grpc::new(channel);
//! # }
//! ```
//!
//! A token the server accepted in the headers and rejected in the trailers
//! counts as one that served (a revocation), so it is always replaced; the
//! throttle for tokens refused at birth sees only Trailers-Only rejections
//! and 401s.
//!
//! # Interceptors
//!
//! Code that must use a synchronous `tonic` interceptor can read the
//! current token with [`TokenSource::cached`](crate::TokenSource::cached):
//! it never waits, returns a stale token while it starts a background
//! refresh, and returns `None` only when no usable token is cached. Fetch
//! the first token before the first call, and ask for a new one when the
//! cache is empty, so the next call finds it:
//!
//! ```
//! use tonic::{metadata::MetadataValue, service::interceptor::InterceptedService, Request, Status};
//! use tower_alf::TokenSource;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! # let grant = tower::service_fn(|_: tower_alf::grant::FetchToken| async {
//! #     tower_alf::Token::bearer("t")
//! # });
//! # let tokens = TokenSource::new(grant);
//! tokens.token().await?; // the first fetch, before the first call
//!
//! let source = tokens.clone();
//! let authorize = move |mut request: Request<()>| {
//!     let Some(token) = source.cached() else {
//!         // The fetch starts now, in its own task; this call fails.
//!         source.prefetch();
//!         return Err(Status::unavailable("no access token yet"));
//!     };
//!     let value = MetadataValue::try_from(token.header_value().as_bytes())
//!         .map_err(|_| Status::internal("the token is not valid metadata"))?;
//!     request.metadata_mut().insert("authorization", value);
//!     Ok(request)
//! };
//! let channel = tonic::transport::Channel::from_static("http://[::1]:50051").connect_lazy();
//! let channel = InterceptedService::new(channel, authorize);
//! # let _ = channel;
//! # Ok(()) }
//! ```
//!
//! The interceptor gives up what the layer does: waiting for a token
//! instead of failing, and the 401 handling (invalidate, refresh). Prefer
//! the layer where you can.

use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use ::tonic::{Code, Status};
use http::{header::AUTHORIZATION, Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::BoxError;
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    challenge,
    error::Error,
    replay::{CheapClone, CloneBody},
    source::TokenSource,
    token::TokenId,
};

/// The `tonic::Status` for a token that could not be obtained.
///
/// - a timeout: `DeadlineExceeded`;
/// - the token endpoint unreachable, or the fetch cut short: `Unavailable`;
/// - anything else (the endpoint refused the client, a bad answer, a bad
///   configuration, a token rejected again too soon): `Unauthenticated`.
///
/// The message is the error's `Display`, which never holds a secret.
///
/// ```
/// # async fn run(tokens: tower_alf::TokenSource) {
/// if let Err(error) = tokens.token().await {
///     let status = tower_alf::tonic::status(&error);
///     eprintln!("{:?}: {}", status.code(), status.message());
/// }
/// # }
/// ```
pub fn status(error: &Error) -> Status {
    let code = if error.is_timeout() {
        Code::DeadlineExceeded
    } else if error.is_transport() || error.is_closed() {
        Code::Unavailable
    } else {
        Code::Unauthenticated
    };
    Status::new(code, format!("no access token: {error}"))
}

/// Turns the error of [`BearerAuth`](crate::BearerAuth) into a
/// `tonic::Status`, for `ServiceBuilder::map_err` outside the layer.
///
/// A token failure ([`Error`]) is mapped by [`status`]; any other error (the
/// channel's own) is left to tonic's mapping, `Status::from_error`, just as
/// tonic maps it without this layer.
///
/// ```
/// use tonic::Code;
///
/// let error: tower::BoxError = "connection reset".into();
/// assert_eq!(tower_alf::tonic::into_status(error).code(), Code::Unknown);
/// ```
pub fn into_status(error: BoxError) -> Status {
    match error.downcast::<Error>() {
        Ok(error) => status(&error),
        Err(error) => Status::from_error(error),
    }
}

impl From<Error> for Status {
    /// See [`status`].
    fn from(error: Error) -> Self {
        status(&error)
    }
}

/// gRPC bodies are streams: the default policy keeps no copy, so a 401 is
/// returned as it is (see the [module docs](self#replay)).
impl CloneBody<::tonic::body::Body> for CheapClone {
    #[inline]
    fn clone_body(&self, _body: &::tonic::body::Body) -> Option<::tonic::body::Body> {
        None
    }
}

// ===== GrpcStatusLayer =====

/// Watches the trailers of gRPC answers for `grpc-status: 16`
/// (`UNAUTHENTICATED`) and invalidates the token the call was sent with, so
/// the next call gets a fresh one. Goes *below*
/// [`BearerAuthLayer`](crate::BearerAuthLayer), over the channel, with the
/// same [`TokenSource`]; see the [module docs](self#unauthenticated-grpcs-401).
///
/// A call whose `authorization` is not the source's current token (sent
/// without a token, or with one already replaced) is left alone: compare
/// and invalidate, as for a 401.
#[derive(Debug, Clone)]
#[must_use]
pub struct GrpcStatusLayer {
    source: TokenSource,
}

impl GrpcStatusLayer {
    /// Watches answers for tokens of `source`.
    pub fn new(source: TokenSource) -> Self {
        Self { source }
    }
}

impl<S> Layer<S> for GrpcStatusLayer {
    type Service = GrpcStatus<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcStatus {
            inner,
            source: self.source.clone(),
        }
    }
}

/// The service of [`GrpcStatusLayer`]: answers' bodies wrapped in a
/// [`GrpcStatusBody`].
#[derive(Debug, Clone)]
pub struct GrpcStatus<S> {
    inner: S,
    source: TokenSource,
}

impl<S> GrpcStatus<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes the middleware, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResBody> Service<Request<B>> for GrpcStatus<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<GrpcStatusBody<ResBody>>;
    type Error = S::Error;
    type Future = GrpcStatusFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The token sent: the source's current one, if that is what the
        // request carries (a comparison of two shared byte strings).
        let sent = request.headers().get(AUTHORIZATION).and_then(|value| {
            let token = self.source.cached()?;
            (token.header_value() == value).then(|| token.id())
        });
        GrpcStatusFuture {
            future: self.inner.call(request),
            watch: sent.map(|id| Watch {
                id,
                source: self.source.clone(),
            }),
        }
    }
}

/// The token a call was sent with, and where it came from.
#[derive(Debug)]
struct Watch {
    id: TokenId,
    source: TokenSource,
}

pin_project! {
    /// Response future for [`GrpcStatus`].
    #[must_use = "futures do nothing unless polled"]
    #[derive(Debug)]
    pub struct GrpcStatusFuture<F> {
        #[pin]
        future: F,
        watch: Option<Watch>,
    }
}

impl<F, ResBody, E> Future for GrpcStatusFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<GrpcStatusBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.future.poll(cx))?;
        let watch = this.watch.take();
        Poll::Ready(Ok(response.map(|inner| GrpcStatusBody { inner, watch })))
    }
}

pin_project! {
    /// A response body that invalidates the token its call was sent with
    /// when its trailers say `grpc-status: 16`. Frames pass through
    /// unchanged.
    #[derive(Debug)]
    pub struct GrpcStatusBody<B> {
        #[pin]
        inner: B,
        watch: Option<Watch>,
    }
}

impl<B> GrpcStatusBody<B> {
    /// The body it wraps.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: HttpBody> HttpBody for GrpcStatusBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(Ok(trailers)) = frame.as_ref().map(|f| f.as_ref().map(Frame::trailers_ref)) {
            if trailers.is_some_and(challenge::is_grpc_unauthenticated) {
                if let Some(watch) = this.watch.take() {
                    tracing::debug!("grpc-status 16 in the trailers: invalidating the token");
                    // The invalidation happens now; the fetch of the next
                    // token starts at once and nobody here waits for it.
                    drop(watch.source.invalidate(watch.id));
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;

    #[test]
    fn token_failures_map_to_codes() {
        let cases = [
            (Error::timeout(), Code::DeadlineExceeded),
            (Error::transport("refused"), Code::Unavailable),
            (Error::closed(), Code::Unavailable),
            (Error::config("bad URL"), Code::Unauthenticated),
            (Error::throttled(), Code::Unauthenticated),
            (
                Error::status(StatusCode::UNAUTHORIZED, None, b"{}"),
                Code::Unauthenticated,
            ),
            (
                Error::invalid_response(StatusCode::OK, "not JSON", b"<html>"),
                Code::Unauthenticated,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(status(&error).code(), code, "{error:?}");
            assert_eq!(Status::from(error.clone()).code(), code);
            assert_eq!(into_status(Box::new(error)).code(), code);
        }
    }

    #[test]
    fn the_message_holds_no_secret() {
        let body = br#"{"error":"invalid_client","access_token":"leaked-9Zq"}"#;
        let status = status(&Error::status(StatusCode::BAD_REQUEST, None, body));
        assert!(!status.message().contains("leaked-9Zq"), "{status:?}");
        assert!(!format!("{status:?}").contains("leaked-9Zq"), "{status:?}");
        assert!(status.message().starts_with("no access token"));
    }

    #[test]
    fn other_errors_keep_tonics_mapping() {
        let inner = Status::resource_exhausted("slow down");
        assert_eq!(into_status(Box::new(inner)).code(), Code::ResourceExhausted);
    }

    #[test]
    fn grpc_bodies_are_not_copied() {
        let body = ::tonic::body::Body::empty();
        assert!(CheapClone.clone_body(&body).is_none());
    }
}
