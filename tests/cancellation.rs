//! Callers dropped at random points while waiting for a fetch strand
//! nobody: the others get the token, one token request is made, and the
//! source stays usable.

mod scripted;

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use scripted::{token, Endpoint, Reply};
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_alf::{
    grant::ClientCredentials, BearerAuthLayer, ClientAuth, TokenEndpoint, TokenSource,
};

#[tokio::test(start_paused = true)]
async fn a_thousand_waiters_half_dropped_at_random_leave_one_fetch_and_a_working_source() {
    let slow = Reply::After(Duration::from_millis(500), Box::new(token(1, 3600)));
    let endpoint = Endpoint::start([slow, token(2, 3600)]).await;
    let grant = ClientCredentials::new(
        TokenEndpoint::builder(&endpoint.url)
            .client_auth(ClientAuth::basic("c", "s"))
            .build()
            .unwrap(),
    );
    let source = TokenSource::new(grant);
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source.clone()))
        .service(service_fn(move |req: Request<Full<Bytes>>| {
            counter.fetch_add(1, Ordering::SeqCst);
            let token = req.headers()["authorization"].clone();
            async move { Ok::<_, Infallible>(Response::new(token)) }
        }));

    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for i in 0..1000 {
        let request = client
            .clone()
            .oneshot(Request::new(Full::new(Bytes::new())));
        let handle = tokio::spawn(request);
        if fastrand::bool() {
            // Dropped before its first poll, or at a random point of the wait.
            let at = Duration::from_millis(fastrand::u64(0..500));
            dropped.push(tokio::spawn(async move {
                if i % 7 != 0 {
                    tokio::time::sleep(at).await;
                }
                handle.abort();
                handle.await
            }));
        } else {
            kept.push(handle);
        }
    }
    let kept_count = kept.len();
    for handle in kept {
        let response = handle.await.unwrap().expect("a kept request succeeds");
        assert_eq!(response.body(), "Bearer tok-1");
    }
    for handle in dropped {
        assert!(handle.await.unwrap().unwrap_err().is_cancelled());
    }
    assert_eq!(endpoint.requests(), 1, "one token request for all 1,000");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        kept_count,
        "dropped ones never reached the API"
    );

    // The source still works: cached, then refreshed on demand.
    let token = source.token().await.unwrap();
    assert_eq!(token.access_token().secret(), "tok-1");
    let fresh = source.invalidate(token.id()).await.unwrap();
    assert_eq!(fresh.access_token().secret(), "tok-2");
    assert_eq!(endpoint.requests(), 2);
}
