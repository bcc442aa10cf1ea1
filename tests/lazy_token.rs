//! `TokenSource::token()` and `invalidate` are lazy: a future made outside
//! any runtime fetches when a runtime polls it, one fetch per source.
//!
//! Plain `#[test]`s: the runtime is built by hand, after (or apart from)
//! the futures, and serves a real loopback token endpoint.

mod support;

use support::TokenServer;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_token_future_made_outside_a_runtime_works_when_a_runtime_awaits_it() {
    let rt = runtime();
    let tokens = rt.block_on(TokenServer::start());
    let source = support::source(&tokens);

    let future = source.token();
    let token = rt.block_on(future).expect("fetched inside the runtime");
    assert_eq!(token.access_token().secret(), "tok-1");
    assert_eq!(tokens.requests(), 1);
}

#[test]
fn many_token_futures_made_before_the_runtime_share_one_fetch() {
    let source_and_server = {
        let rt = runtime();
        let tokens = rt.block_on(TokenServer::start());
        (rt, support::source(&tokens), tokens)
    };
    let (rt, source, tokens) = source_and_server;

    let futures: Vec<_> = (0..100).map(|_| source.token()).collect();
    assert_eq!(tokens.requests(), 0, "nothing is fetched before a poll");
    let outcomes = rt.block_on(futures_util::future::join_all(futures));
    for token in outcomes {
        assert_eq!(token.unwrap().access_token().secret(), "tok-1");
    }
    assert_eq!(tokens.requests(), 1, "one fetch for 100 futures");
}

#[test]
fn invalidate_outside_a_runtime_drops_the_token_at_once_and_fetches_when_polled() {
    let rt = runtime();
    let tokens = rt.block_on(TokenServer::start());
    let source = support::source(&tokens);
    let first = rt.block_on(source.token()).unwrap();

    let replacement = source.invalidate(first.id());
    assert!(
        source.cached().is_none(),
        "the rejected token is gone at once"
    );
    let second = rt.block_on(replacement).unwrap();
    assert_eq!(second.access_token().secret(), "tok-2");
    assert_eq!(tokens.requests(), 2);
}

#[test]
fn a_dropped_invalidation_still_drops_the_token_and_the_next_call_replaces_it() {
    let rt = runtime();
    let tokens = rt.block_on(TokenServer::start());
    let source = support::source(&tokens);
    let first = rt.block_on(source.token()).unwrap();

    drop(source.invalidate(first.id()));
    assert!(source.cached().is_none());
    assert_eq!(tokens.requests(), 1, "no fetch without a poll");
    let second = rt.block_on(source.token()).unwrap();
    assert_eq!(second.access_token().secret(), "tok-2");
    assert_eq!(tokens.requests(), 2);
}
