//! The rejection throttle spares revoked tokens and only slows down a
//! server that refuses every new token, with an exponential backoff.
//!
//! Real token endpoint and protected resource over loopback, paused time
//! held so it moves only by `advance`.

mod support;

use std::time::Duration;

use http::StatusCode;
use support::{get, send, ResourceServer, TokenServer};

#[tokio::test(start_paused = true)]
async fn a_token_that_served_and_is_revoked_every_2_s_is_always_refreshed_and_replayed() {
    let _clock = support::hold_clock();
    let tokens = TokenServer::start().await;
    let api = ResourceServer::start().await;
    let source = support::source(&tokens);
    let client = support::client(&source);

    let mut unauthorized = 0;
    let mut revocations = 0;
    // 60 s: a request every 100 ms, every token revoked every 2 s.
    for step in 1..=600 {
        if step % 20 == 0 {
            for n in 1..=tokens.requests() {
                api.reject(&format!("tok-{n}"));
            }
            revocations += 1;
        }
        let answer = send(&client, get(&api.url("/api"))).await.unwrap();
        if answer.status == StatusCode::UNAUTHORIZED {
            unauthorized += 1;
        }
        tokio::time::advance(Duration::from_millis(100)).await;
    }
    assert_eq!(unauthorized, 0, "no request ends 401");
    assert_eq!(revocations, 30);
    assert_eq!(
        tokens.requests(),
        1 + revocations,
        "one refresh per revocation"
    );
    let stats = source.stats();
    assert_eq!((stats.replays, stats.throttled), (30, 0));
}

#[tokio::test(start_paused = true)]
async fn a_server_that_refuses_every_new_token_is_asked_with_exponential_backoff() {
    let _clock = support::hold_clock();
    let tokens = TokenServer::start().await;
    let api = ResourceServer::start().await;
    api.reject_all();
    let source = support::source(&tokens);
    let client = support::client(&source);

    // 100 s: a request every 500 ms; note when each token request is made.
    let mut fetched_at = Vec::new();
    for step in 0..200u64 {
        let before = tokens.requests();
        let answer = send(&client, get(&api.url("/api"))).await.unwrap();
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        for _ in before..tokens.requests() {
            fetched_at.push(step * 500);
        }
        tokio::time::advance(Duration::from_millis(500)).await;
    }
    // The first token, its one replacement, then 5 s, 10 s, 20 s, 40 s apart.
    assert_eq!(fetched_at, [0, 0, 5_000, 15_000, 35_000, 75_000]);
    assert_eq!(api.requests(), 200 + 5, "five replays");
}

#[tokio::test(start_paused = true)]
async fn a_token_that_serves_ends_the_backoff() {
    let _clock = support::hold_clock();
    let tokens = TokenServer::start().await;
    let api = ResourceServer::start().await;
    let source = support::source(&tokens);
    let client = support::client(&source);

    // tok-1 and tok-2 are refused at birth; tok-2 stays cached, throttled.
    api.reject("tok-1");
    api.reject("tok-2");
    let status = |answer: Result<support::Answer, _>| answer.unwrap().status;
    assert_eq!(
        status(send(&client, get(&api.url("/api"))).await),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(send(&client, get(&api.url("/api"))).await),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!((tokens.requests(), source.stats().throttled), (2, 1));

    // After the first backoff tok-3 is fetched and accepted.
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(
        status(send(&client, get(&api.url("/api"))).await),
        StatusCode::OK
    );
    assert_eq!(tokens.requests(), 3);

    // tok-3 is revoked after serving; tok-4 is refused at birth. The
    // backoff (10 s now, had tok-3 not served) is over: tok-4 is replaced.
    tokio::time::advance(Duration::from_secs(2)).await;
    api.reject("tok-3");
    api.reject("tok-4");
    assert_eq!(
        status(send(&client, get(&api.url("/api"))).await),
        StatusCode::UNAUTHORIZED,
        "tok-4 refused on the replay"
    );
    assert_eq!(tokens.requests(), 4);
    assert_eq!(
        status(send(&client, get(&api.url("/api"))).await),
        StatusCode::OK
    );
    assert_eq!((tokens.requests(), source.stats().throttled), (5, 1));
}
