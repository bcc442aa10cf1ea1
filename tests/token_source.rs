//! `TokenSource` used directly as a tower `Service`: `TokenRequest::Current`
//! and `TokenRequest::Rejected(id)` with compare-and-invalidate.
//!
//! Real sockets (the token endpoint); real time, except the throttle test,
//! which runs under paused time with the clock held (see `support`).

mod support;

use std::time::Duration;

use tower::{Service, ServiceExt};
use tower_alf::{grant::ClientCredentials, TokenRequest, TokenSource};

use support::TokenServer;

async fn ask(source: &mut TokenSource, request: TokenRequest) -> std::sync::Arc<tower_alf::Token> {
    source
        .ready()
        .await
        .expect("always ready")
        .call(request)
        .await
        .expect("a token")
}

/// A source over `tokens` with no jitter and this rejection interval.
fn source_with_rejection_interval(tokens: &TokenServer, interval: Duration) -> TokenSource {
    let endpoint = support::endpoint_builder(tokens)
        .build()
        .expect("a valid endpoint");
    TokenSource::builder(ClientCredentials::new(endpoint))
        .jitter(0.0)
        .rejection_interval(interval)
        .build()
}

fn secret(token: &tower_alf::Token) -> &str {
    token.access_token().secret()
}

#[tokio::test]
async fn current_fetches_once_and_then_answers_from_the_cache() {
    let tokens = TokenServer::start().await;
    let mut source = support::source(&tokens);

    let first = ask(&mut source, TokenRequest::Current).await;
    assert_eq!(secret(&first), "tok-1");
    assert_eq!(first.lifetime(), Some(Duration::from_secs(3600)));
    assert_eq!(first.header_value(), "Bearer tok-1");
    assert!(first.header_value().is_sensitive());

    let again = ask(&mut source, TokenRequest::Current).await;
    assert_eq!(again.id(), first.id());
    assert_eq!(tokens.requests(), 1);
}

#[tokio::test]
async fn rejecting_an_old_token_when_a_newer_one_is_cached_returns_the_newer_without_a_fetch() {
    let tokens = TokenServer::start().await;
    let mut source = support::source(&tokens);

    let first = ask(&mut source, TokenRequest::Current).await;
    assert_eq!(secret(&first), "tok-1");

    let second = ask(&mut source, TokenRequest::Rejected(first.id())).await;
    assert_eq!(
        secret(&second),
        "tok-2",
        "rejecting the current token fetches"
    );
    assert_ne!(second.id(), first.id());
    assert_eq!(tokens.requests(), 2);

    let again = ask(&mut source, TokenRequest::Rejected(first.id())).await;
    assert_eq!(again.id(), second.id(), "the newer token, not a new one");
    assert_eq!(secret(&again), "tok-2");
    assert_eq!(tokens.requests(), 2, "no fetch for a stale rejection");

    let current = ask(&mut source, TokenRequest::Current).await;
    assert_eq!(current.id(), second.id());

    // Rejecting the replacement right away is throttled (a server that
    // rejects every token must not cost a token request per call).
    let throttled = source
        .ready()
        .await
        .expect("always ready")
        .call(TokenRequest::Rejected(second.id()))
        .await
        .expect_err("too soon after the last rejection");
    assert!(throttled.is_throttled());
    assert_eq!(tokens.requests(), 2);
    let stats = source.stats();
    assert_eq!((stats.fetches, stats.refreshes, stats.throttled), (2, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rejections_of_one_token_cause_one_fetch() {
    let tokens = TokenServer::start().await;
    let mut source = support::source(&tokens);
    let first = ask(&mut source, TokenRequest::Current).await;

    let gate = tokens.hold();
    let mut rejections = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let source = source.clone();
        let id = first.id();
        rejections.spawn(async move { source.oneshot(TokenRequest::Rejected(id)).await });
    }
    tokens.requests_reached(2).await;
    gate.open();
    let replacements = support::guard(rejections.join_all(), "the rejections").await;
    for replacement in replacements {
        assert_eq!(secret(&replacement.expect("a token")), "tok-2");
    }
    assert_eq!(tokens.requests(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_second_rejection_of_the_current_token_within_the_interval_is_throttled_without_a_fetch()
{
    let _clock = support::hold_clock();
    let tokens = TokenServer::start().await;
    let mut source = source_with_rejection_interval(&tokens, Duration::from_secs(5));
    let first = ask(&mut source, TokenRequest::Current).await;
    let second = ask(&mut source, TokenRequest::Rejected(first.id())).await;
    assert_eq!(secret(&second), "tok-2");

    tokio::time::advance(Duration::from_millis(4999)).await;
    let error = source
        .ready()
        .await
        .expect("always ready")
        .call(TokenRequest::Rejected(second.id()))
        .await
        .expect_err("too soon after the last rejection");
    assert!(error.is_throttled(), "{error:?}");
    assert_eq!(tokens.requests(), 2, "no fetch while throttled");
    let current = ask(&mut source, TokenRequest::Current).await;
    assert_eq!(current.id(), second.id(), "the token is kept");

    tokio::time::advance(Duration::from_millis(1)).await;
    let third = ask(&mut source, TokenRequest::Rejected(second.id())).await;
    assert_eq!(secret(&third), "tok-3");
    assert_eq!(tokens.requests(), 3);
}
