use std::{
    sync::Arc,
    task::{Context, Poll},
};

use http::Request;
use tower::BoxError;
use tower_service::Service;

use super::{future::ResponseFuture, OAuth1Layer, SignableBody, Signer};

/// Middleware that signs every request with OAuth 1.0a (RFC 5849) and
/// passes it to the inner service.
///
/// Signing happens in `call`, with a fresh nonce and the current time; it
/// needs no I/O, so there is no waiting and no replay. When a request
/// cannot be signed (see [`Error`](super::Error): an RSA method without a
/// key, a form body that is not UTF-8, a body that cannot be read) it is
/// not sent, and the call fails with that error inside the [`BoxError`].
/// Errors of the inner service pass through unchanged (boxed).
///
/// # Bodies
///
/// The request body type must implement [`SignableBody`]: the form
/// parameters of an `application/x-www-form-urlencoded` body are signed,
/// so the whole body is read first. See that trait for which bodies can be.
///
/// See the [module documentation](super) for an example.
#[derive(Debug, Clone)]
pub struct OAuth1<S> {
    inner: S,
    signer: Arc<Signer>,
}

// ===== impl OAuth1 =====

impl<S> OAuth1<S> {
    /// Signs requests to `inner` with `signer`.
    pub fn new(inner: S, signer: Signer) -> Self {
        Self::from_shared(inner, Arc::new(signer))
    }

    pub(crate) fn from_shared(inner: S, signer: Arc<Signer>) -> Self {
        Self { inner, signer }
    }

    /// An [`OAuth1Layer`] signing with `signer`.
    pub fn layer(signer: Signer) -> OAuth1Layer {
        OAuth1Layer::from_signer(signer)
    }

    /// The signer.
    pub fn signer(&self) -> &Signer {
        &self.signer
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
}

impl<S, B> Service<Request<B>> for OAuth1<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
    B: SignableBody,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match self.signer.sign(request) {
            Ok(request) => ResponseFuture::called(self.inner.call(request)),
            Err(error) => {
                tracing::debug!(%error, "request not signed");
                ResponseFuture::failed(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        sync::{
            atomic::{AtomicUsize, Ordering},
            Arc,
        },
    };

    use bytes::Bytes;
    use http::{header::CONTENT_TYPE, Response};
    use tower::{service_fn, ServiceExt};

    use super::*;
    use crate::oauth1::{ClientCredentials, Error};

    #[tokio::test]
    async fn a_request_that_cannot_be_signed_is_not_sent() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let inner = service_fn(move |_request: Request<Bytes>| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(())) }
        });
        let service = OAuth1::new(inner, Signer::new(ClientCredentials::new("ck", "cs")));
        let request = Request::post("https://api.example/")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Bytes::from_static(b"a=\xff"))
            .unwrap();
        let error = service.oneshot(request).await.unwrap_err();
        assert!(error.downcast_ref::<Error>().unwrap().is_body());
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn every_request_gets_a_fresh_nonce() {
        let inner = service_fn(|request: Request<Bytes>| async move {
            Ok::<_, Infallible>(Response::new(request.headers()["authorization"].clone()))
        });
        let service = OAuth1::new(inner, Signer::new(ClientCredentials::new("ck", "cs")));
        let get = || {
            Request::get("https://api.example/")
                .body(Bytes::new())
                .unwrap()
        };
        let a = service.clone().oneshot(get()).await.unwrap().into_body();
        let b = service.oneshot(get()).await.unwrap().into_body();
        assert_ne!(a, b);
    }
}
