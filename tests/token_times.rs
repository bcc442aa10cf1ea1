//! When a token's lifetime starts: when its request was sent, not when the
//! answer arrived, for built-in and custom grants alike; and the same
//! instants on the wall clock.
//!
//! A real token endpoint on loopback answers after a 300 ms round trip of
//! paused Tokio time, with the clock held (see `support`), so the instants
//! are exact.

mod support;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tower::service_fn;
use tower_alf::{grant::FetchToken, store::StoredToken, Error, Token, TokenSource};

use support::{TokenServer, LIFETIME};

const ROUND_TRIP: Duration = Duration::from_millis(300);

/// Fetches a token from `source` while `server` answers after
/// [`ROUND_TRIP`]; the token, when the fetch started and when it ended.
async fn fetch_with_round_trip(
    server: &TokenServer,
    source: &TokenSource,
) -> (Token, Instant, Instant) {
    server.delay(ROUND_TRIP);
    let started = Instant::now();
    let fetch = tokio::spawn({
        let source = source.clone();
        async move { source.token().await }
    });
    server.requests_reached(1).await;
    tokio::time::advance(ROUND_TRIP).await;
    let token = support::guard(fetch, "the token").await.unwrap().unwrap();
    let answered = Instant::now();
    assert_eq!(answered - started, ROUND_TRIP, "the round trip took 300 ms");
    (Token::clone(&token), started, answered)
}

/// A grant of your own: POSTs to the token endpoint with a plain hyper
/// client and builds the token itself; with `stamp`, from the moment the
/// fetch started.
fn custom_grant(
    url: String,
    stamp: bool,
) -> impl tower::Service<FetchToken, Response = Token, Error = Error, Future = impl Send>
       + Clone
       + Send
       + 'static {
    service_fn(move |request: FetchToken| {
        let url = url.clone();
        async move {
            let post = http::Request::post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from_static(
                    b"grant_type=client_credentials",
                )))
                .unwrap();
            let answer = support::hyper_client().request(post).await.unwrap();
            let body = answer.into_body().collect().await.unwrap().to_bytes();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let token = Token::bearer(json["access_token"].as_str().unwrap().to_owned())?;
            let token = if stamp {
                token.with_issued_at(request.started_at)
            } else {
                token
            };
            Ok(token.with_expires_in(Duration::from_secs(json["expires_in"].as_u64().unwrap())))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_built_in_grants_lifetime_counts_from_when_the_request_was_sent() {
    let _clock = support::hold_clock();
    let server = TokenServer::start().await;
    let source = support::source(&server);
    let (token, started, answered) = fetch_with_round_trip(&server, &source).await;
    assert_eq!(token.issued_at(), started);
    assert_eq!(token.expires_at(), Some(started + LIFETIME));
    assert_eq!(
        token.expires_at().unwrap() - answered,
        LIFETIME - ROUND_TRIP
    );
}

#[tokio::test(start_paused = true)]
async fn a_custom_grant_counts_from_fetch_token_started_at_with_with_issued_at() {
    let _clock = support::hold_clock();
    let server = TokenServer::start().await;
    let source = TokenSource::builder(custom_grant(server.url(), true))
        .jitter(0.0)
        .build();
    let (token, started, answered) = fetch_with_round_trip(&server, &source).await;
    assert_eq!(token.issued_at(), started);
    assert_eq!(token.expires_at(), Some(started + LIFETIME));
    assert_eq!(
        token.expires_at().unwrap() - answered,
        LIFETIME - ROUND_TRIP
    );
}

#[tokio::test(start_paused = true)]
async fn a_custom_grant_that_does_not_stamp_its_token_counts_from_the_answer() {
    // What `with_issued_at` fixes: 300 ms of drift, the round trip.
    let _clock = support::hold_clock();
    let server = TokenServer::start().await;
    let source = TokenSource::builder(custom_grant(server.url(), false))
        .jitter(0.0)
        .build();
    let (token, started, answered) = fetch_with_round_trip(&server, &source).await;
    assert_eq!(token.issued_at(), answered);
    assert_eq!(token.expires_at(), Some(started + LIFETIME + ROUND_TRIP));
}

#[tokio::test(start_paused = true)]
async fn wall_clock_times_agree_with_the_stored_form() {
    let _clock = support::hold_clock();
    let server = TokenServer::start().await;
    let source = support::source(&server);
    let before = SystemTime::now();
    let (token, _, _) = fetch_with_round_trip(&server, &source).await;
    // Paused Tokio time moved 300 ms past the request; the wall clock did
    // not, so the token was requested 300 ms before the wall clock's now.
    let issued = token.issued_at_system_time();
    let expires = token.expires_at_system_time().expect("an expiry");
    let close = |a: SystemTime, b: SystemTime, what: &str| {
        let gap = a.duration_since(b).unwrap_or_else(|e| e.duration());
        assert!(gap < Duration::from_millis(50), "{what}: {gap:?} apart");
    };
    close(
        issued,
        before - ROUND_TRIP,
        "issued at, against the request",
    );
    close(
        expires,
        issued + LIFETIME,
        "expires at, against the lifetime",
    );
    let stored = StoredToken::from_token(&token);
    close(stored.issued_at(), issued, "the stored issued_at");
    close(
        stored.expires_at().unwrap(),
        expires,
        "the stored expires_at",
    );
}
