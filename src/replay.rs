//! Keeping a copy of a request so that it can be sent again after a 401.
//!
//! `http::Request` is not `Clone`: its parts are, its body may not be. A
//! [`CloneBody`] policy decides, before the first send, whether the body can
//! be copied; when it cannot, the request is sent as it is and a 401 is
//! returned as it came.

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
        }
    )*};
}

clone_bodies!(String, Bytes, Vec<u8>, &'static str, &'static [u8]);

impl<D: Buf + Clone> CloneBody<Full<D>> for CheapClone {
    #[inline]
    fn clone_body(&self, body: &Full<D>) -> Option<Full<D>> {
        Some(body.clone())
    }
}

impl<D> CloneBody<Empty<D>> for CheapClone {
    #[inline]
    fn clone_body(&self, _body: &Empty<D>) -> Option<Empty<D>> {
        Some(Empty::new())
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
}

impl<F> fmt::Debug for CloneBodyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloneBodyFn")
            .field("f", &std::any::type_name::<F>())
            .finish()
    }
}

/// A request kept for one replay: its parts (with our `Authorization`
/// header already in place, so replacing the token never grows the map)
/// and a copy of its body.
pub(crate) struct SavedRequest<B> {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    extensions: Extensions,
    body: B,
}

impl<B> SavedRequest<B> {
    /// Copies `request`, or `None` when `policy` cannot copy its body.
    #[inline]
    pub(crate) fn new<C: CloneBody<B>>(request: &Request<B>, policy: &C) -> Option<Self> {
        let body = policy.clone_body(request.body())?;
        Some(Self {
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            headers: request.headers().clone(),
            extensions: request.extensions().clone(),
            body,
        })
    }

    pub(crate) fn set_authorization(&mut self, value: HeaderValue) {
        self.headers.insert(AUTHORIZATION, value);
    }

    pub(crate) fn into_request(self) -> Request<B> {
        let mut request = Request::new(self.body);
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
        let mut saved = SavedRequest::new(&original, &CheapClone).unwrap();
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
        assert!(SavedRequest::new(&request, &CheapClone).is_none());
        assert!(SavedRequest::new(&Request::new(String::new()), &NoReplay).is_none());
    }
}
