//! The fault matrix: one test per way a real token endpoint misbehaves, over
//! a real loopback socket, asserting what the caller got, how many token
//! requests were made, when, and whether the protected resource was called.
//!
//! The endpoint is a scripted raw-TCP server (`scripted/`, so it can reset a
//! connection mid-body or hang), on the test's runtime. Time is paused and
//! jitter is off, so backoff and `Retry-After` waits are asserted exactly:
//! loopback delivers bytes within the `write` call, so no virtual time
//! passes during I/O.

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
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use scripted::{json, token, Endpoint, Reply};
use tokio::time::Instant;
use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
use tower_alf::{
    grant::ClientCredentials, BearerAuthLayer, ClientAuth, Error, ErrorCode, RetryPolicy,
    TokenEndpoint, TokenSource,
};

fn endpoint_at(url: &str) -> TokenEndpoint {
    TokenEndpoint::builder(url)
        .client_auth(ClientAuth::basic("client", "secret"))
        .retry(RetryPolicy::default().jitter(0.0))
        .build()
        .unwrap()
}

fn source(url: &str) -> TokenSource {
    TokenSource::builder(ClientCredentials::new(endpoint_at(url)))
        .jitter(0.0)
        .build()
}

/// A protected resource that counts its calls and answers 200.
#[derive(Clone, Default)]
struct Resource {
    calls: Arc<AtomicUsize>,
}

impl Resource {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Sends one request through `BearerAuth` over this resource.
    async fn send(&self, source: &TokenSource) -> Result<Response<Full<Bytes>>, BoxError> {
        let calls = self.calls.clone();
        let inner = service_fn(move |_req: Request<Full<Bytes>>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) }
        });
        ServiceBuilder::new()
            .layer(BearerAuthLayer::new(source.clone()))
            .service(inner)
            .oneshot(Request::new(Full::new(Bytes::new())))
            .await
    }
}

fn token_error(result: Result<Response<Full<Bytes>>, BoxError>) -> Error {
    let error = result.expect_err("the request must fail");
    error
        .downcast_ref::<Error>()
        .expect("a tower_alf::Error")
        .clone()
}

// ===== transient failures are retried =====

#[tokio::test(start_paused = true)]
async fn two_500s_then_a_token_succeed_after_waits_of_1_and_2_seconds() {
    let endpoint = Endpoint::start([json(500, "{}"), json(500, "{}"), token(1, 3600)]).await;
    let resource = Resource::default();
    let response = resource.send(&source(&endpoint.url)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(endpoint.requests(), 3);
    assert_eq!(
        endpoint.gaps(),
        [Duration::from_secs(1), Duration::from_secs(2)]
    );
    assert_eq!(resource.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_503_with_retry_after_2_is_retried_after_exactly_2_seconds() {
    let busy = Reply::Http(503, vec![("retry-after", "2".into())], b"busy".to_vec());
    let endpoint = Endpoint::start([busy, token(1, 3600)]).await;
    let resource = Resource::default();
    resource.send(&source(&endpoint.url)).await.unwrap();
    assert_eq!(endpoint.gaps(), [Duration::from_secs(2)]);
    assert_eq!(resource.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_429_with_an_http_date_retry_after_waits_until_that_date() {
    let at = std::time::SystemTime::now() + Duration::from_secs(3);
    let limited = Reply::Http(
        429,
        vec![("retry-after", httpdate::fmt_http_date(at))],
        vec![],
    );
    let endpoint = Endpoint::start([limited, token(1, 3600)]).await;
    Resource::default()
        .send(&source(&endpoint.url))
        .await
        .unwrap();
    let gap = endpoint.gaps()[0];
    // An HTTP date has whole seconds: 2 to 3 s from a wall clock mid-second,
    // less the real milliseconds the wall clock moves before the answer is
    // read (the test's clock is paused, the wall clock is not).
    assert!(
        gap >= Duration::from_millis(1900) && gap <= Duration::from_secs(3),
        "{gap:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn connection_refused_is_retried_then_reported_as_transport() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    drop(listener);
    let resource = Resource::default();
    let started = Instant::now();
    let error = token_error(resource.send(&source(&url)).await);
    assert!(error.is_transport() && error.is_retryable(), "{error:?}");
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(3),
        "waited 1 s and 2 s"
    );
    assert_eq!(resource.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_connection_reset_mid_body_is_retried() {
    let endpoint = Endpoint::start([Reply::ResetMidBody, token(1, 3600)]).await;
    let resource = Resource::default();
    resource.send(&source(&endpoint.url)).await.unwrap();
    assert_eq!(endpoint.requests(), 2);
    assert_eq!(resource.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_hang_times_out_after_10_seconds_and_is_retried() {
    let endpoint = Endpoint::start([Reply::Hang, token(1, 3600)]).await;
    Resource::default()
        .send(&source(&endpoint.url))
        .await
        .unwrap();
    assert_eq!(
        endpoint.gaps(),
        [Duration::from_secs(11)],
        "10 s timeout + 1 s wait"
    );
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_that_always_hangs_fails_at_the_30_second_deadline() {
    let endpoint = Endpoint::start([Reply::Hang, Reply::Hang, Reply::Hang]).await;
    let resource = Resource::default();
    let started = Instant::now();
    let error = token_error(resource.send(&source(&endpoint.url)).await);
    assert!(error.is_timeout(), "{error:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(30));
    assert_eq!(endpoint.requests(), 3);
    assert_eq!(resource.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_html_502_is_retried_and_reported_with_an_excerpt() {
    let html = Reply::Http(
        502,
        vec![("content-type", "text/html".into())],
        b"<html><body>Bad Gateway</body></html>".to_vec(),
    );
    let endpoint = Endpoint::start([html.clone(), html.clone(), html]).await;
    let resource = Resource::default();
    let error = token_error(resource.send(&source(&endpoint.url)).await);
    assert_eq!(error.status_code(), Some(StatusCode::BAD_GATEWAY));
    assert!(error.oauth_error().is_none());
    assert_eq!(
        error.body_excerpt(),
        Some("<html><body>Bad Gateway</body></html>")
    );
    assert_eq!(endpoint.requests(), 3);
    assert_eq!(resource.calls(), 0);
}

// ===== what will not change is not retried =====

#[tokio::test(start_paused = true)]
async fn invalid_client_is_not_retried() {
    let endpoint = Endpoint::start([json(
        400,
        r#"{"error":"invalid_client","error_description":"unknown client"}"#,
    )])
    .await;
    let resource = Resource::default();
    let error = token_error(resource.send(&source(&endpoint.url)).await);
    assert!(error.is_oauth() && error.is_permanent() && !error.is_retryable());
    assert_eq!(
        error.oauth_error().unwrap().code(),
        &ErrorCode::InvalidClient
    );
    assert_eq!(endpoint.requests(), 1);
    assert_eq!(resource.calls(), 0);
}

/// Runs one request against an endpoint answering `reply` once; returns
/// the error, asserting one token request and no resource call.
async fn rejected_once(reply: Reply) -> Error {
    let endpoint = Endpoint::start([reply]).await;
    let resource = Resource::default();
    let error = token_error(resource.send(&source(&endpoint.url)).await);
    assert_eq!(endpoint.requests(), 1, "not retried");
    assert_eq!(resource.calls(), 0);
    error
}

#[tokio::test(start_paused = true)]
async fn a_non_json_200_is_an_invalid_response() {
    let error = rejected_once(Reply::Http(200, vec![], b"<html>login</html>".to_vec())).await;
    assert!(error.is_invalid_response(), "{error:?}");
}

#[tokio::test(start_paused = true)]
async fn a_2_mib_body_is_cut_off_at_the_size_cap() {
    let body = format!(r#"{{"access_token":"{}"}}"#, "a".repeat(2 << 20));
    let error = rejected_once(json(200, &body)).await;
    assert!(error.is_invalid_response());
    assert!(
        error.to_string().contains("larger than 1048576 bytes"),
        "{error}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_mac_token_type_is_refused() {
    let error = rejected_once(json(200, r#"{"access_token":"a","token_type":"mac"}"#)).await;
    assert!(
        error
            .to_string()
            .contains(r#"token_type "mac" is not supported"#),
        "{error}"
    );
}

#[tokio::test(start_paused = true)]
async fn invalid_utf8_is_an_invalid_response() {
    let error = rejected_once(Reply::Http(
        200,
        vec![],
        b"{\"access_token\":\"\xff\xfe\"}".to_vec(),
    ))
    .await;
    assert!(error.to_string().contains("not UTF-8"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn a_negative_expires_in_is_refused() {
    let error = rejected_once(json(200, r#"{"access_token":"a","expires_in":-5}"#)).await;
    assert!(error.is_invalid_response());
}

// ===== expires_in in every shape =====

async fn lifetime_of(body: &str) -> Option<Duration> {
    let endpoint = Endpoint::start([json(200, body)]).await;
    source(&endpoint.url).token().await.unwrap().lifetime()
}

#[tokio::test(start_paused = true)]
async fn expires_in_as_string_float_null_or_missing() {
    let hour = Some(Duration::from_secs(3600));
    assert_eq!(
        lifetime_of(r#"{"access_token":"a","expires_in":"3600"}"#).await,
        hour
    );
    assert_eq!(
        lifetime_of(r#"{"access_token":"a","expires_in":3600.0}"#).await,
        hour
    );
    assert_eq!(
        lifetime_of(r#"{"access_token":"a","expires_in":null}"#).await,
        None
    );
    assert_eq!(lifetime_of(r#"{"access_token":"a"}"#).await, None);
}

// ===== soft failure =====

#[tokio::test(start_paused = true)]
async fn a_failing_background_refresh_keeps_requests_succeeding_without_waiting() {
    // A 100 s token is stale from 75 s, expired from 90 s.
    let failing = (0..30).map(|_| json(503, "{}"));
    let endpoint = Endpoint::start(std::iter::once(token(1, 100)).chain(failing)).await;
    let source = source(&endpoint.url);
    let resource = Resource::default();
    resource.send(&source).await.unwrap();

    tokio::time::sleep(Duration::from_secs(76)).await;
    for _ in 0..10 {
        let started = Instant::now();
        resource.send(&source).await.unwrap();
        assert_eq!(started.elapsed(), Duration::ZERO, "served at once");
        // Sleeping (not `advance`) lets the background fetch's I/O run.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(resource.calls(), 11);
    assert_eq!(
        source.stats().waits,
        1,
        "only the very first request waited"
    );
    assert!(endpoint.requests() >= 2, "the background refresh was tried");
    assert!(source.stats().failures >= 1);
}

#[tokio::test(start_paused = true)]
async fn a_refresh_failing_after_expiry_fails_callers_and_spares_the_resource() {
    let failing = (0..3).map(|_| json(503, "{}"));
    let endpoint = Endpoint::start(std::iter::once(token(1, 100)).chain(failing)).await;
    let source = TokenSource::builder(ClientCredentials::new(endpoint_at(&endpoint.url)))
        .jitter(0.0)
        .refresh_window(Duration::ZERO)
        .build();
    let resource = Resource::default();
    resource.send(&source).await.unwrap();

    tokio::time::sleep(Duration::from_secs(95)).await; // past 90 s: expired
    let error = token_error(resource.send(&source).await);
    assert_eq!(error.status_code(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(endpoint.requests(), 4, "one token, then 3 attempts");
    assert_eq!(
        resource.calls(),
        1,
        "only the first request reached the resource"
    );
}
