//! Caching: the first request fetches a token, later ones reuse it; a stale
//! token is served at once while one background refresh replaces it; an
//! expired one makes requests wait for one fetch.
//!
//! Real sockets (token endpoint and resource served by axum on loopback)
//! under paused time, with the clock held (see `support`), so it moves only
//! by `advance` and the instants are exact: a token granted for 3600 s with
//! no jitter turns stale at 3300 s (the 5-minute refresh window) and expires
//! at 3570 s (the 30 s margin), counted from when it was requested.

mod support;

use std::time::Duration;

use tokio::{task::JoinSet, time::Instant};

use support::{get_ok, send, Reply, ResourceServer, TokenServer};

const STALE_AT: Duration = Duration::from_secs(3300);
const EXPIRED_AT: Duration = Duration::from_secs(3570);
const MILLI: Duration = Duration::from_millis(1);

async fn advance_to(instant: Instant) {
    let now = Instant::now();
    assert!(instant >= now, "cannot go back in time");
    tokio::time::advance(instant - now).await;
}

fn cached_token(source: &tower_alf::TokenSource) -> Option<String> {
    source
        .cached()
        .map(|token| token.access_token().secret().to_owned())
}

#[tokio::test(start_paused = true)]
async fn the_first_request_fetches_a_token_and_later_ones_reuse_it_until_it_turns_stale() {
    let _clock = support::hold_clock();
    let tokens = TokenServer::start().await;
    let api = ResourceServer::start().await;
    let source = support::source(&tokens);
    let client = support::client(&source);
    let start = Instant::now();
    assert_eq!(
        tokens.requests(),
        0,
        "nothing is fetched before it is needed"
    );

    assert_eq!(get_ok(&client, &api.url("/api/a")).await.token(), "tok-1");
    assert_eq!(tokens.requests(), 1);
    for _ in 0..5 {
        assert_eq!(get_ok(&client, &api.url("/api/b")).await.token(), "tok-1");
    }
    assert_eq!(tokens.requests(), 1, "a fresh token is reused");

    advance_to(start + STALE_AT - MILLI).await;
    assert_eq!(get_ok(&client, &api.url("/api/c")).await.token(), "tok-1");
    assert_eq!(
        source.stats().fetches,
        1,
        "still fresh 1 ms before the window"
    );
    assert_eq!(tokens.requests(), 1);

    advance_to(start + STALE_AT).await;
    assert_eq!(
        get_ok(&client, &api.url("/api/d")).await.token(),
        "tok-1",
        "a stale token is still served"
    );
    tokens.requests_reached(2).await;
    support::eventually("the refreshed token to be cached", || {
        cached_token(&source).as_deref() == Some("tok-2")
    })
    .await;
    assert_eq!(get_ok(&client, &api.url("/api/e")).await.token(), "tok-2");

    assert_eq!(tokens.requests(), 2);
    let stats = source.stats();
    assert_eq!((stats.fetches, stats.refreshes, stats.failures), (2, 1, 0));
    let expected: Vec<Option<String>> = ["tok-1"; 8]
        .into_iter()
        .chain(["tok-2"])
        .map(|token| Some(token.to_owned()))
        .collect();
    assert_eq!(api.tokens(), expected);
}

#[tokio::test(start_paused = true)]
async fn a_stale_token_is_served_at_once_while_exactly_one_background_refresh_runs() {
    let _clock = support::hold_clock();
    let tokens = TokenServer::start().await;
    let api = ResourceServer::start().await;
    let source = support::source(&tokens);
    let client = support::client(&source);
    let start = Instant::now();
    assert_eq!(get_ok(&client, &api.url("/api")).await.token(), "tok-1");

    // The refresh will be held at the token endpoint until the gate opens.
    let gate = tokens.hold();
    advance_to(start + STALE_AT + Duration::from_secs(1)).await;
    let waits_before = source.stats().waits;

    let mut requests = JoinSet::new();
    for i in 0..50 {
        let client = client.clone();
        let url = api.url(&format!("/api/stale/{i}"));
        requests.spawn(async move { send(&client, support::get(&url)).await });
    }
    let answers = support::guard(requests.join_all(), "stale requests to be answered").await;
    for answer in answers {
        assert_eq!(answer.expect("the call succeeds").token(), "tok-1");
    }
    // More requests in the same window, one after another.
    for _ in 0..5 {
        assert_eq!(
            get_ok(&client, &api.url("/api/more")).await.token(),
            "tok-1"
        );
    }

    // All of them were answered while the one refresh was still held.
    tokens.requests_reached(2).await;
    assert_eq!(tokens.requests(), 2, "exactly one background refresh");
    assert_eq!(tokens.answered(), 1, "the refresh is still in flight");
    assert_eq!(source.stats().fetches, 2);
    assert_eq!(
        source.stats().waits,
        waits_before,
        "no request waited for the refresh"
    );

    gate.open();
    support::eventually("the refreshed token to be cached", || {
        cached_token(&source).as_deref() == Some("tok-2")
    })
    .await;
    assert_eq!(
        get_ok(&client, &api.url("/api/after")).await.token(),
        "tok-2"
    );
    assert_eq!(tokens.requests(), 2);
    let stats = source.stats();
    assert_eq!((stats.fetches, stats.refreshes), (2, 1));
    assert_eq!(api.requests(), 1 + 50 + 5 + 1);
}

#[tokio::test(start_paused = true)]
async fn an_expired_token_makes_requests_wait_for_one_fetch() {
    let _clock = support::hold_clock();
    let tokens = TokenServer::start().await;
    let api = ResourceServer::start().await;
    let source = support::source(&tokens);
    let client = support::client(&source);
    let start = Instant::now();
    assert_eq!(get_ok(&client, &api.url("/api")).await.token(), "tok-1");
    let waits_before = source.stats().waits;

    let gate = tokens.hold();
    advance_to(start + EXPIRED_AT).await;

    let mut requests = JoinSet::new();
    for i in 0..50 {
        let client = client.clone();
        let url = api.url(&format!("/api/expired/{i}"));
        requests.spawn(async move { send(&client, support::get(&url)).await });
    }
    tokens.requests_reached(2).await;
    support::eventually("every request to wait for the fetch", || {
        source.stats().waits == waits_before + 50
    })
    .await;
    assert_eq!(requests.len(), 50);
    assert!(
        requests.try_join_next().is_none(),
        "no request finished before the fetch did"
    );
    assert_eq!(api.requests(), 1, "the expired token was never sent");

    gate.open();
    let answers = support::guard(requests.join_all(), "waiting requests to be answered").await;
    for answer in answers {
        assert_eq!(answer.expect("the call succeeds").token(), "tok-2");
    }
    assert_eq!(
        tokens.requests(),
        2,
        "one fetch for all the waiting requests"
    );
    let stats = source.stats();
    assert_eq!((stats.fetches, stats.refreshes), (2, 1));
    assert_eq!(api.requests(), 51);
    assert!(api.tokens()[1..]
        .iter()
        .all(|token| token.as_deref() == Some("tok-2")));
}

#[tokio::test(start_paused = true)]
async fn a_token_is_stale_and_then_expired_at_the_documented_instants() {
    let _clock = support::hold_clock();
    let tokens = TokenServer::start().await;
    let source = support::source(&tokens);
    let start = Instant::now();
    let token = source.token().await.expect("a token");
    assert_eq!(token.issued_at(), start);
    assert_eq!(token.expires_at(), Some(start + support::LIFETIME));

    let gate = tokens.hold();
    advance_to(start + EXPIRED_AT - MILLI).await;
    assert_eq!(
        cached_token(&source).as_deref(),
        Some("tok-1"),
        "stale, still served 1 ms before expiry"
    );
    tokens.requests_reached(2).await;
    advance_to(start + EXPIRED_AT).await;
    assert_eq!(source.cached().map(|t| t.id()), None, "expired: not served");
    gate.open();
    let fresh = support::guard(source.token(), "the refreshed token")
        .await
        .expect("a token");
    assert_eq!(fresh.access_token().secret(), "tok-2");
    assert_eq!(tokens.requests(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_background_refresh_keeps_the_stale_token_served_and_retries_after_a_backoff() {
    let _clock = support::hold_clock();
    let tokens = TokenServer::start().await;
    let api = ResourceServer::start().await;
    let source = support::source(&tokens);
    let client = support::client(&source);
    let start = Instant::now();
    assert_eq!(get_ok(&client, &api.url("/api")).await.token(), "tok-1");

    tokens.push(Reply::raw(503, "text/plain", "try later"));
    advance_to(start + STALE_AT).await;
    assert_eq!(get_ok(&client, &api.url("/api")).await.token(), "tok-1");
    support::eventually("the background refresh to fail", || {
        source.stats().failures == 1
    })
    .await;

    // Still served, and no second attempt before the backoff (1 s) is over.
    for _ in 0..3 {
        assert_eq!(get_ok(&client, &api.url("/api")).await.token(), "tok-1");
    }
    assert_eq!(tokens.requests(), 2);

    tokio::time::advance(Duration::from_secs(1)).await;
    support::eventually("a second background attempt", || {
        // Reading the cache is what starts a background refresh.
        let _ = source.cached();
        tokens.requests() == 3
    })
    .await;
    support::eventually("the refreshed token to be cached", || {
        cached_token(&source).as_deref() == Some("tok-2")
    })
    .await;
    assert_eq!(get_ok(&client, &api.url("/api")).await.token(), "tok-2");
    let stats = source.stats();
    assert_eq!((stats.fetches, stats.failures, stats.waits), (3, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_token_without_expires_in_is_used_until_a_server_rejects_it() {
    let _clock = support::hold_clock();
    let tokens = TokenServer::start_with(Reply::Token { expires_in: None }).await;
    let api = ResourceServer::start().await;
    let source = support::source(&tokens);
    let client = support::client(&source);

    assert_eq!(get_ok(&client, &api.url("/api")).await.token(), "tok-1");
    tokio::time::advance(Duration::from_secs(365 * 24 * 3600)).await;
    assert_eq!(get_ok(&client, &api.url("/api")).await.token(), "tok-1");
    assert_eq!(tokens.requests(), 1);

    api.reject("tok-1");
    assert_eq!(get_ok(&client, &api.url("/api")).await.token(), "tok-2");
    assert_eq!(tokens.requests(), 2);
}
