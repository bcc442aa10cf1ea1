//! Keeping a copy of a request so that it can be sent again after a 401.
//!
//! `http::Request` is not `Clone`: its parts are, its body may not be. A
//! [`CloneBody`] policy decides, before the first send, whether the body can
//! be copied; when it cannot, the request is sent as it is and a 401 is
//! returned as it came. Streams are kept as they are read by a
//! [`ReplayBody`], which [`ReplayStreams`] puts around every body.
//!
//! For tonic, whose bodies are streams, replay takes one line: wrap every
//! body and box it back with the client's own body constructor.
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::combinators::UnsyncBoxBody;
//! use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
//! use tower_alf::{replay::ReplayStreams, BearerAuthLayer, TokenSource};
//!
//! // With tonic: `tonic::body::Body` and `tonic::body::Body::new`.
//! type Body = UnsyncBoxBody<Bytes, BoxError>;
//!
//! # fn stack(tokens: TokenSource) {
//! let client = ServiceBuilder::new()
//!     .layer(BearerAuthLayer::new(tokens).clone_body(ReplayStreams::new(Body::new)))
//! #   .service(service_fn(|_req: http::Request<Body>| async {
//! #       Ok::<_, BoxError>(http::Response::new(Body::default()))
//! #   }));
//! #   let _ = client.oneshot(http::Request::new(Body::default()));
//! // .service(channel)
//! # }
//! ```

mod body;

use self::body::RecordingHandle;
pub use self::body::ReplayBody;

use std::{fmt, sync::Arc};

use bytes::{Buf, Bytes};
use http::{
    header::AUTHORIZATION, Extensions, HeaderMap, HeaderValue, Method, Request, Uri, Version,
};
use http_body_util::{
    combinators::{BoxBody, UnsyncBoxBody},
    Empty, Full,
};

/// Decides whether a request body can be kept for a replay, and copies it.
///
/// Implement it for your own body type, on your own policy type or on
/// [`CheapClone`]:
///
/// ```
/// use tower_alf::replay::{CheapClone, CloneBody};
///
/// #[derive(Clone)]
/// struct MyBody(bytes::Bytes);
///
/// impl CloneBody<MyBody> for CheapClone {
///     fn clone_body(&self, body: &MyBody) -> Option<MyBody> {
///         Some(body.clone())
///     }
/// }
/// ```
pub trait CloneBody<B>: Clone {
    /// A copy of `body` to send again, or `None` if it cannot be kept.
    fn clone_body(&self, body: &B) -> Option<B>;

    /// Prepares `body` for its first send: returns the body to send and,
    /// when the request may be replayed, what is kept for that.
    ///
    /// The default sends `body` as it is and keeps [`clone_body`]'s copy. A
    /// policy for streams overrides it to wrap the body, as
    /// [`ReplayStreams`] does.
    ///
    /// [`clone_body`]: CloneBody::clone_body
    fn prepare(&self, body: B) -> (B, Option<Kept<B>>) {
        let copy = self.clone_body(&body).map(Kept::new);
        (body, copy)
    }

    /// Whether this policy never keeps anything, so the layer can skip the
    /// copy step altogether. Defaults to `false`; [`NoReplay`] says `true`.
    fn never_keeps(&self) -> bool {
        false
    }

    /// Whether [`prepare`](CloneBody::prepare) is the default one (the body
    /// sent as it is, the copy [`clone_body`](CloneBody::clone_body)'s), so
    /// the layer may copy the request from a reference instead of taking it
    /// apart and putting it back together. Defaults to `false`; the
    /// policies of this crate that keep the default `prepare` say `true`.
    /// A policy that overrides `prepare` must leave it `false`, or its
    /// `prepare` is not called.
    fn copies_by_reference(&self) -> bool {
        false
    }
}

/// A body kept for a replay by [`CloneBody::prepare`].
pub struct Kept<B> {
    body: B,
    recording: Option<RecordingHandle>,
}

impl<B> Kept<B> {
    /// A copy that can be sent again whatever happens to the first send.
    pub fn new(body: B) -> Self {
        Self {
            body,
            recording: None,
        }
    }

    /// A copy of a [`ReplayBody`], made with `rebox` into the body type:
    /// it can be sent again only if the first send read the whole body
    /// within the cap.
    pub fn replay<S>(original: &ReplayBody<S>, rebox: impl FnOnce(ReplayBody<S>) -> B) -> Self {
        Self {
            body: rebox(original.copy()),
            recording: Some(original.recording()),
        }
    }

    /// Whether the copy can be sent, now that the first send was answered.
    pub(crate) fn is_replayable(&self) -> bool {
        self.recording
            .as_ref()
            .is_none_or(RecordingHandle::is_replayable)
    }
}

impl<B> fmt::Debug for Kept<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kept")
            .field("recorded", &self.recording.is_some())
            .finish_non_exhaustive()
    }
}

/// The default policy: copies bodies that are cheap to copy or hold all
/// their data already (`Full`, `Empty`, `String`, `Bytes`, `Vec<u8>`,
/// `&'static str`, `&'static [u8]`), and does not replay boxed bodies, which
/// may be streams.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheapClone;

macro_rules! clone_bodies {
    ($($body:ty),*) => {$(
        impl CloneBody<$body> for CheapClone {
            #[inline]
            fn clone_body(&self, body: &$body) -> Option<$body> {
                Some(body.clone())
            }

            #[inline]
            fn copies_by_reference(&self) -> bool {
                true
            }
        }
    )*};
}

clone_bodies!(String, Bytes, Vec<u8>, &'static str, &'static [u8]);

impl<D: Buf + Clone> CloneBody<Full<D>> for CheapClone {
    #[inline]
    fn clone_body(&self, body: &Full<D>) -> Option<Full<D>> {
        Some(body.clone())
    }

    #[inline]
    fn copies_by_reference(&self) -> bool {
        true
    }
}

impl<D> CloneBody<Empty<D>> for CheapClone {
    #[inline]
    fn clone_body(&self, _body: &Empty<D>) -> Option<Empty<D>> {
        Some(Empty::new())
    }

    #[inline]
    fn copies_by_reference(&self) -> bool {
        true
    }
}

/// A [`ReplayBody`] the caller wrapped: its copy replays what the first
/// send read.
impl<B> CloneBody<ReplayBody<B>> for CheapClone {
    fn clone_body(&self, body: &ReplayBody<B>) -> Option<ReplayBody<B>> {
        Some(body.copy())
    }

    fn prepare(&self, body: ReplayBody<B>) -> (ReplayBody<B>, Option<Kept<ReplayBody<B>>>) {
        let kept = Kept::replay(&body, |copy| copy);
        (body, Some(kept))
    }
}

impl<D, E> CloneBody<BoxBody<D, E>> for CheapClone {
    fn clone_body(&self, _body: &BoxBody<D, E>) -> Option<BoxBody<D, E>> {
        None
    }
}

impl<D, E> CloneBody<UnsyncBoxBody<D, E>> for CheapClone {
    fn clone_body(&self, _body: &UnsyncBoxBody<D, E>) -> Option<UnsyncBoxBody<D, E>> {
        None
    }
}

/// Never replays: every request is sent once, and a 401 is returned as is.
/// Works with any body type.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoReplay;

impl<B> CloneBody<B> for NoReplay {
    #[inline]
    fn clone_body(&self, _body: &B) -> Option<B> {
        None
    }

    #[inline]
    fn never_keeps(&self) -> bool {
        true
    }
}

/// Replays streaming bodies: wraps each body in a [`ReplayBody`] and boxes
/// it back into the client's body type with `rebox` (`tonic::body::Body::new`,
/// `UnsyncBoxBody::new`, `BoxBody::new`).
///
/// Bodies up to the cap ([`ReplayBody::DEFAULT_CAP`] unless set) are
/// replayed after a 401 once the first send has read them whole; larger
/// ones are sent once.
#[derive(Clone)]
pub struct ReplayStreams<F> {
    rebox: F,
    cap: usize,
}

impl<F> ReplayStreams<F> {
    /// Wraps bodies, boxing them back with `rebox`.
    pub fn new(rebox: F) -> Self {
        Self {
            rebox,
            cap: ReplayBody::<()>::DEFAULT_CAP,
        }
    }

    /// Sets how many bytes of a body are kept. Defaults to
    /// [`ReplayBody::DEFAULT_CAP`].
    pub fn cap(mut self, bytes: usize) -> Self {
        self.cap = bytes;
        self
    }
}

impl<B, F> CloneBody<B> for ReplayStreams<F>
where
    F: Fn(ReplayBody<B>) -> B + Clone,
{
    fn clone_body(&self, _body: &B) -> Option<B> {
        None
    }

    fn prepare(&self, body: B) -> (B, Option<Kept<B>>) {
        let body = ReplayBody::with_cap(body, self.cap);
        let kept = Kept::replay(&body, &self.rebox);
        ((self.rebox)(body), Some(kept))
    }
}

impl<F> fmt::Debug for ReplayStreams<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayStreams")
            .field("rebox", &std::any::type_name::<F>())
            .field("cap", &self.cap)
            .finish()
    }
}

/// A [`CloneBody`] policy from a closure; see [`clone_body_fn`].
pub struct CloneBodyFn<F> {
    f: Arc<F>,
}

impl<F> Clone for CloneBodyFn<F> {
    fn clone(&self) -> Self {
        Self {
            f: Arc::clone(&self.f),
        }
    }
}

/// Replays bodies the closure can copy.
///
/// ```
/// use http_body_util::{combinators::BoxBody, BodyExt, Full};
/// use tower_alf::replay::clone_body_fn;
///
/// // Bodies boxed from a `Full` cannot be told apart from streams, so say
/// // that these never can be copied.
/// let policy = clone_body_fn(|_body: &BoxBody<bytes::Bytes, std::convert::Infallible>| None);
/// ```
pub fn clone_body_fn<F, B>(f: F) -> CloneBodyFn<F>
where
    F: Fn(&B) -> Option<B>,
{
    CloneBodyFn { f: Arc::new(f) }
}

impl<F, B> CloneBody<B> for CloneBodyFn<F>
where
    F: Fn(&B) -> Option<B>,
{
    fn clone_body(&self, body: &B) -> Option<B> {
        (self.f)(body)
    }

    fn copies_by_reference(&self) -> bool {
        true
    }
}

impl<F> fmt::Debug for CloneBodyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloneBodyFn")
            .field("f", &std::any::type_name::<F>())
            .finish()
    }
}

/// Which requests are kept for a replay after a 401, by method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayOn {
    /// Every method, as Python's alf does: the request was refused for its
    /// token before it took effect. The default.
    #[default]
    AllMethods,
    /// Only idempotent methods (RFC 9110 §9.2.2: GET, HEAD, OPTIONS, TRACE,
    /// PUT, DELETE), for servers that may act on a request and still
    /// answer 401.
    IdempotentMethods,
    /// Never: a 401 is returned as it came.
    Never,
}

impl ReplayOn {
    #[inline]
    pub(crate) fn allows(self, method: &Method) -> bool {
        match self {
            Self::AllMethods => true,
            Self::IdempotentMethods => method.is_idempotent(),
            Self::Never => false,
        }
    }
}

/// A request kept for one replay: its parts (with our `Authorization`
/// header already in place, so replacing the token never grows the map)
/// and what the policy kept of its body.
pub(crate) struct SavedRequest<B> {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    extensions: Extensions,
    body: Kept<B>,
}

impl<B> SavedRequest<B> {
    /// Prepares `request` for its first send; returns the copy, or `None`
    /// when `policy` keeps nothing of its body.
    #[inline]
    pub(crate) fn prepare<C: CloneBody<B>>(
        request: Request<B>,
        policy: &C,
    ) -> (Request<B>, Option<Self>) {
        let (parts, body) = request.into_parts();
        let (body, kept) = policy.prepare(body);
        let saved = kept.map(|body| Self {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
            extensions: parts.extensions.clone(),
            body,
        });
        (Request::from_parts(parts, body), saved)
    }

    /// A copy of `request` made from a reference, for a policy whose
    /// `prepare` is the default ([`CloneBody::copies_by_reference`]).
    ///
    /// NOTE: the hot path of replay on. `into_parts` and `from_parts` move
    /// the whole request twice, and returning it moves it again.
    #[inline]
    pub(crate) fn copy<C: CloneBody<B>>(request: &Request<B>, policy: &C) -> Option<Self> {
        let body = policy.clone_body(request.body())?;
        Some(Self {
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            headers: request.headers().clone(),
            extensions: request.extensions().clone(),
            body: Kept::new(body),
        })
    }

    /// Whether the copy can be sent, now that the first send was answered.
    pub(crate) fn is_replayable(&self) -> bool {
        self.body.is_replayable()
    }

    pub(crate) fn set_authorization(&mut self, value: HeaderValue) {
        self.headers.insert(AUTHORIZATION, value);
    }

    pub(crate) fn headers_mut(&mut self) -> &mut http::HeaderMap {
        &mut self.headers
    }

    pub(crate) fn method(&self) -> &http::Method {
        &self.method
    }

    pub(crate) fn uri(&self) -> &http::Uri {
        &self.uri
    }

    pub(crate) fn into_request(self) -> Request<B> {
        let mut request = Request::new(self.body.body);
        *request.method_mut() = self.method;
        *request.uri_mut() = self.uri;
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers;
        *request.extensions_mut() = self.extensions;
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_saved_request_comes_back_whole() {
        let mut original = Request::builder()
            .method(Method::PUT)
            .uri("http://api.example/v1/items/7?x=1")
            .version(Version::HTTP_2)
            .header("x-trace", "abc")
            .header("x-multi", "1")
            .header("x-multi", "2")
            .body(Full::new(Bytes::from_static(b"payload")))
            .unwrap();
        original.extensions_mut().insert(42u32);
        let (original, saved) = SavedRequest::prepare(original, &CheapClone);
        let mut saved = saved.unwrap();
        saved.set_authorization(HeaderValue::from_static("Bearer new"));
        let copy = saved.into_request();
        assert_eq!(copy.method(), Method::PUT);
        assert_eq!(copy.uri(), original.uri());
        assert_eq!(copy.version(), Version::HTTP_2);
        assert_eq!(copy.headers()["x-trace"], "abc");
        assert_eq!(copy.headers().get_all("x-multi").iter().count(), 2);
        assert_eq!(copy.headers()[AUTHORIZATION], "Bearer new");
        assert_eq!(copy.extensions().get::<u32>(), Some(&42));
        let body = copy.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "payload");
    }

    #[test]
    fn boxed_bodies_are_not_replayed() {
        let body: BoxBody<Bytes, std::convert::Infallible> = Full::new(Bytes::new()).boxed();
        let request = Request::new(body);
        assert!(SavedRequest::prepare(request, &CheapClone).1.is_none());
        assert!(
            SavedRequest::prepare(Request::new(String::new()), &NoReplay)
                .1
                .is_none()
        );
    }
}
