//! Time arithmetic never panics: huge values from a server (`Retry-After`,
//! `expires_in`) and `Duration::MAX` settings end in the server's own error
//! or a bounded schedule, never in a panic of the fetch task; a tiny
//! `expires_in` cannot turn calls into token requests.
//!
//! Over a real loopback token endpoint (`scripted/`), with paused time.

mod scripted;

use std::time::Duration;

use http::StatusCode;
use scripted::{json, token, Endpoint, Reply};
use tower_alf::{
    grant::ClientCredentials, ClientAuth, RetryPolicy, TokenEndpoint, TokenSource,
    TokenSourceBuilder,
};

fn source(url: &str, retry: RetryPolicy) -> TokenSource {
    let endpoint = TokenEndpoint::builder(url)
        .client_auth(ClientAuth::basic("client", "secret"))
        .retry(retry.jitter(0.0))
        .build()
        .unwrap();
    TokenSource::builder(ClientCredentials::new(endpoint))
        .jitter(0.0)
        .build()
}

fn busy(retry_after: &str) -> Reply {
    Reply::Http(
        503,
        vec![("retry-after", retry_after.to_owned())],
        b"busy".to_vec(),
    )
}

#[tokio::test(start_paused = true)]
async fn a_huge_retry_after_with_an_unbounded_max_backoff_yields_the_503_the_server_sent() {
    let endpoint = Endpoint::start([busy("18446744073709551615")]).await;
    let policy = RetryPolicy::default().max_backoff(Duration::MAX);
    let error = source(&endpoint.url, policy).token().await.unwrap_err();
    assert!(!error.is_closed(), "the fetch task must not die: {error}");
    assert_eq!(error.status_code(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(endpoint.requests(), 1, "the wait ends past the deadline");
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_longer_than_a_u64_is_waited_as_one_hour_without_a_deadline() {
    let endpoint = Endpoint::start([
        busy("99999999999999999999999999"),
        busy(&u64::MAX.to_string()),
    ])
    .await;
    let policy = RetryPolicy::default()
        .max_attempts(2)
        .max_backoff(Duration::MAX)
        .deadline(None);
    let error = source(&endpoint.url, policy).token().await.unwrap_err();
    assert_eq!(error.status_code(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(endpoint.gaps(), [Duration::from_secs(3600)]);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_date_far_in_the_future_is_cut_to_one_hour() {
    let endpoint = Endpoint::start([busy("Fri, 31 Dec 9999 23:59:59 GMT"), token(1, 3600)]).await;
    let policy = RetryPolicy::default()
        .max_backoff(Duration::MAX)
        .deadline(Some(Duration::MAX));
    let token = source(&endpoint.url, policy).token().await.unwrap();
    assert_eq!(token.access_token().secret(), "tok-1");
    assert_eq!(endpoint.gaps(), [Duration::from_secs(3600)]);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_of_duration_max_is_no_deadline() {
    let endpoint = Endpoint::start([json(500, "{}"), token(1, 3600)]).await;
    let policy = RetryPolicy::default()
        .deadline(Some(Duration::MAX))
        .initial_backoff(Duration::MAX)
        .max_backoff(Duration::from_secs(3));
    let token = source(&endpoint.url, policy).token().await.unwrap();
    assert_eq!(token.access_token().secret(), "tok-1");
    assert_eq!(endpoint.gaps(), [Duration::from_secs(3)]);
}

#[tokio::test(start_paused = true)]
async fn expires_in_0_gives_one_token_request_for_20_calls() {
    let endpoint = Endpoint::start([token(1, 0), token(2, 0)]).await;
    let source = source(&endpoint.url, RetryPolicy::none());

    let calls = (0..10).map(|_| source.token());
    for token in futures_util::future::join_all(calls).await {
        assert_eq!(token.unwrap().access_token().secret(), "tok-1");
    }
    for _ in 0..10 {
        let token = source.token().await.unwrap();
        assert_eq!(token.access_token().secret(), "tok-1");
        assert_eq!(token.lifetime(), Some(Duration::ZERO), "as the server said");
    }
    assert_eq!(endpoint.requests(), 1, "20 calls, 1 token request");

    // Scheduled as the least lifetime: stale after 3.75 s, one refresh.
    tokio::time::advance(TokenSourceBuilder::MIN_LIFETIME).await;
    for _ in 0..20 {
        source.token().await.unwrap();
    }
    assert_eq!(endpoint.requests(), 2, "one token per least lifetime");
}

#[tokio::test(start_paused = true)]
async fn a_huge_expires_in_is_capped_and_never_overflows_the_schedule() {
    let endpoint = Endpoint::start([json(
        200,
        r#"{"access_token":"t","token_type":"Bearer","expires_in":18446744073709551615}"#,
    )])
    .await;
    let endpoint_url = endpoint.url.clone();
    let token = source(&endpoint_url, RetryPolicy::none())
        .token()
        .await
        .unwrap();
    assert_eq!(
        token.lifetime(),
        Some(Duration::from_secs(10 * 365 * 24 * 3600)),
        "cut to ten years"
    );
}
