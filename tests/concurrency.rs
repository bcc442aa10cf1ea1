//! Concurrency: one fetch for any number of callers, and callers that are
//! dropped while they wait never strand the others or the source.
//!
//! Real sockets, real time (nothing here depends on a token's age). The
//! token endpoint holds its answer behind a gate, so the tests decide when
//! the fetch ends and can check who is waiting meanwhile.

mod support;

use tokio::task::JoinSet;
use tower::{Service, ServiceExt};

use support::{get, get_ok, send, ResourceServer, TokenServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_first_requests_share_one_token_fetch() {
    const N: usize = 1000;
    let tokens = TokenServer::start().await;
    let api = ResourceServer::start().await;
    let source = support::source(&tokens);
    let client = support::client(&source);
    let gate = tokens.hold();

    let mut requests = JoinSet::new();
    for i in 0..N {
        let client = client.clone();
        let url = api.url(&format!("/api/items/{i}"));
        requests.spawn(async move { send(&client, get(&url)).await });
    }
    // Every request is waiting for the one fetch before it may end.
    tokens.requests_reached(1).await;
    support::eventually("every request to wait for the token", || {
        source.stats().waits == N as u64
    })
    .await;
    assert_eq!(api.requests(), 0, "nothing is sent without a token");
    gate.open();

    let answers = support::guard(requests.join_all(), "all requests to be answered").await;
    assert_eq!(answers.len(), N);
    for answer in answers {
        assert_eq!(answer.expect("the call succeeds").token(), "tok-1");
    }
    assert_eq!(tokens.requests(), 1, "exactly one token request");
    assert_eq!(source.stats().fetches, 1);
    assert_eq!(api.requests(), N);
    assert!(api
        .tokens()
        .iter()
        .all(|token| token.as_deref() == Some("tok-1")));
}

#[tokio::test]
async fn dropping_waiters_mid_fetch_leaves_the_source_working() {
    let tokens = TokenServer::start().await;
    let api = ResourceServer::start().await;
    let source = support::source(&tokens);
    let mut client = support::client(&source);
    let gate = tokens.hold();

    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = client.clone();
        let url = api.url(&format!("/api/{i}"));
        tasks.push(tokio::spawn(async move { send(&client, get(&url)).await }));
    }
    tokens.requests_reached(1).await;
    support::eventually("20 waiters", || source.stats().waits == 20).await;

    // Abort every other task while it waits for the token …
    let (aborted, kept): (Vec<_>, Vec<_>) =
        tasks.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    for (_, task) in &aborted {
        task.abort();
    }
    for (_, task) in aborted {
        let error = task.await.expect_err("the task was aborted");
        assert!(error.is_cancelled());
    }
    // … and drop response futures that were never polled (lazy: they never
    // joined the fetch).
    for _ in 0..5 {
        let future = client
            .ready()
            .await
            .expect("ready")
            .call(get(&api.url("/api/dropped")));
        drop(future);
    }
    assert_eq!(source.stats().waits, 20);

    gate.open();
    for (_, task) in kept {
        let answer = support::guard(task, "a kept waiter")
            .await
            .expect("the task ran")
            .expect("the call succeeds");
        assert_eq!(answer.token(), "tok-1");
    }
    assert_eq!(
        tokens.requests(),
        1,
        "one fetch, not restarted by the drops"
    );
    assert_eq!(api.requests(), 10, "dropped requests were never sent");

    // Later requests reuse the token, and a later fetch still works.
    assert_eq!(
        get_ok(&client, &api.url("/api/later")).await.token(),
        "tok-1"
    );
    assert_eq!(tokens.requests(), 1);
    api.reject("tok-1");
    assert_eq!(
        get_ok(&client, &api.url("/api/later")).await.token(),
        "tok-2"
    );
    assert_eq!(tokens.requests(), 2);
}

#[tokio::test]
async fn dropping_every_waiter_mid_fetch_still_caches_the_fetched_token() {
    let tokens = TokenServer::start().await;
    let api = ResourceServer::start().await;
    let source = support::source(&tokens);
    let client = support::client(&source);
    let gate = tokens.hold();

    let mut requests = JoinSet::new();
    for _ in 0..10 {
        let client = client.clone();
        let url = api.url("/api");
        requests.spawn(async move { send(&client, get(&url)).await });
    }
    tokens.requests_reached(1).await;
    support::eventually("10 waiters", || source.stats().waits == 10).await;
    requests.abort_all();
    while let Some(result) = requests.join_next().await {
        assert!(result.expect_err("aborted").is_cancelled());
    }

    gate.open();
    support::eventually("the fetch to finish with nobody waiting", || {
        source.cached().is_some()
    })
    .await;
    assert_eq!(get_ok(&client, &api.url("/api")).await.token(), "tok-1");
    assert_eq!(tokens.requests(), 1);
    assert_eq!(api.requests(), 1);
}

#[tokio::test]
async fn a_failed_fetch_is_handed_to_every_waiter_and_the_next_request_fetches_again() {
    let tokens = TokenServer::start().await;
    let api = ResourceServer::start().await;
    let source = support::source(&tokens);
    let client = support::client(&source);
    tokens.push(support::Reply::raw(502, "text/plain", "bad gateway"));
    let gate = tokens.hold();

    let mut requests = JoinSet::new();
    for _ in 0..10 {
        let client = client.clone();
        let url = api.url("/api");
        requests.spawn(async move { send(&client, get(&url)).await });
    }
    tokens.requests_reached(1).await;
    support::eventually("10 waiters", || source.stats().waits == 10).await;
    gate.open();
    for result in support::guard(requests.join_all(), "the waiters").await {
        let error = result.expect_err("the fetch failed");
        let error = support::alf_error(&error);
        assert!(error.is_status());
        assert_eq!(error.status_code(), Some(http::StatusCode::BAD_GATEWAY));
    }
    assert_eq!(tokens.requests(), 1, "one failed fetch for all the waiters");
    assert_eq!(api.requests(), 0);

    assert_eq!(get_ok(&client, &api.url("/api")).await.token(), "tok-1");
    assert_eq!(tokens.requests(), 2);
    let stats = source.stats();
    assert_eq!((stats.fetches, stats.failures), (2, 1));
}
