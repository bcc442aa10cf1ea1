//! `TokenSource` used directly as a tower `Service`: `TokenRequest::Current`
//! and `TokenRequest::Rejected(id)` with compare-and-invalidate.
//!
//! Real sockets (the token endpoint), real time.

mod support;

use std::time::Duration;

use tower::{Service, ServiceExt};
use tower_alf::{TokenRequest, TokenSource};

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

    let third = ask(&mut source, TokenRequest::Rejected(second.id())).await;
    assert_eq!(secret(&third), "tok-3");
    assert_eq!(tokens.requests(), 3);
    let stats = source.stats();
    assert_eq!((stats.fetches, stats.refreshes), (3, 2));
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
