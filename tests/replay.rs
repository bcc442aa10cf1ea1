//! Replay: a 401 for our token refreshes it once and sends the request again,
//! once; what cannot or should not be replayed is returned as it came.
//!
//! Real sockets (token endpoint and resource served by axum on loopback),
//! real time, except the rejection-throttle test, which runs under paused
//! time with the clock held (see `support`).

mod support;

use std::{collections::BTreeMap, convert::Infallible};

use bytes::Bytes;
use http::{header::WWW_AUTHENTICATE, Method, Request, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use tokio::task::JoinSet;
use tower::ServiceBuilder;
use tower_alf::{replay::NoReplay, BearerAuthLayer, ErrorCode};

use support::{get, send, Echo, Reply, ResourceServer, TokenServer};

fn challenge(answer: &support::Answer) -> &str {
    answer
        .headers
        .get(WWW_AUTHENTICATE)
        .expect("a WWW-Authenticate header")
        .to_str()
        .expect("ASCII")
}

fn post_order(url: &str) -> Request<Full<Bytes>> {
    Request::post(url)
        .header("content-type", "application/json")
        .header("x-request-id", "req-42")
        .header("x-multi", "one")
        .header("x-multi", "two")
        .body(Full::new(Bytes::from_static(br#"{"item":"book","qty":2}"#)))
        .expect("a valid request")
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_replays_the_request_intact() {
    let tokens = TokenServer::start().await;
    let api = ResourceServer::start().await;
    api.reject("tok-1");
    let source = support::source(&tokens);
    let client = support::client(&source);

    let answer = send(&client, post_order(&api.url("/api/orders?id=7&q=a%20b")))
        .await
        .expect("the call succeeds");

    let expected_headers = BTreeMap::from([
        (
            "content-type".to_owned(),
            vec!["application/json".to_owned()],
        ),
        (
            "x-multi".to_owned(),
            vec!["one".to_owned(), "two".to_owned()],
        ),
        ("x-request-id".to_owned(), vec!["req-42".to_owned()]),
    ]);
    assert_eq!(
        answer.echo(),
        Echo {
            method: "POST".to_owned(),
            uri: "/api/orders?id=7&q=a%20b".to_owned(),
            token: "tok-2".to_owned(),
            headers: expected_headers,
            body: r#"{"item":"book","qty":2}"#.to_owned(),
        }
    );
    let seen = api.seen();
    assert_eq!(seen.len(), 2, "the request and one replay");
    for (request, token) in seen.iter().zip(["tok-1", "tok-2"]) {
        assert_eq!(request.token.as_deref(), Some(token));
        assert_eq!(request.method, Method::POST);
        assert_eq!(request.uri, "/api/orders?id=7&q=a%20b");
        assert_eq!(request.body, r#"{"item":"book","qty":2}"#);
    }
    assert_eq!(tokens.requests(), 2, "the first fetch and one refresh");
    let stats = source.stats();
    assert_eq!((stats.fetches, stats.refreshes, stats.replays), (2, 1, 1));
}

#[tokio::test]
async fn a_second_401_is_returned_to_the_caller_and_never_replayed_again() {
    let tokens = TokenServer::start().await;
    let api = ResourceServer::start().await;
    api.reject_all();
    let source = support::source(&tokens);
    let client = support::client(&source);

    let answer = send(&client, post_order(&api.url("/api/orders")))
        .await
        .expect("a 401 is a response, not an error");
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert!(challenge(&answer).contains(r#"error="invalid_token""#));
    assert_eq!(api.requests(), 2, "one request, one replay, no more");
    assert_eq!(
        api.tokens(),
        [Some("tok-1".to_owned()), Some("tok-2".to_owned())]
    );
    assert_eq!(tokens.requests(), 2);
    assert_eq!(source.stats().replays, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_401s_for_one_token_cause_one_refresh() {
    const N: usize = 100;
    let tokens = TokenServer::start().await;
    let api = ResourceServer::start().await;
    let source = support::source(&tokens);
    let client = support::client(&source);
    let first = source.token().await.expect("a token");
    assert_eq!(first.access_token().secret(), "tok-1");
    api.reject("tok-1");

    // Every request is sent with tok-1 and held at the resource.
    let api_gate = api.hold();
    let token_gate = tokens.hold();
    let mut requests = JoinSet::new();
    for i in 0..N {
        let client = client.clone();
        let url = api.url(&format!("/api/{i}"));
        requests.spawn(async move { send(&client, get(&url)).await });
    }
    api.requests_reached(N).await;

    // Half of the 401s arrive while the refresh is in flight: they join it.
    api_gate.allow(N / 2);
    tokens.requests_reached(2).await;
    support::eventually("the first half to wait for the refresh", || {
        source.stats().waits == 1 + N as u64 / 2
    })
    .await;
    token_gate.open();
    // Their replays (tok-2) arrive, so tok-2 is cached …
    api.requests_reached(N + N / 2).await;
    // … when the other half's 401s arrive: tok-1 is no longer current, so
    // they get tok-2 without a fetch.
    api_gate.open();

    let answers = support::guard(requests.join_all(), "all requests").await;
    for answer in answers {
        assert_eq!(answer.expect("the call succeeds").token(), "tok-2");
    }
    assert_eq!(tokens.requests(), 2, "the first fetch and one refresh");
    assert_eq!(api.requests(), 2 * N);
    let stats = source.stats();
    assert_eq!(
        (stats.fetches, stats.refreshes, stats.replays),
        (2, 1, N as u64)
    );
    let tokens_seen = api.tokens();
    let count = |token: &str| {
        tokens_seen
            .iter()
            .filter(|seen| seen.as_deref() == Some(token))
            .count()
    };
    assert_eq!((count("tok-1"), count("tok-2")), (N, N));
}

#[tokio::test(start_paused = true)]
async fn a_server_that_rejects_every_token_costs_one_refresh_per_rejection_interval() {
    let _clock = support::hold_clock();
    let tokens = TokenServer::start().await;
    let api = ResourceServer::start().await;
    api.reject_all();
    let source = support::source(&tokens);
    let client = support::client(&source);

    let status = |answer: Result<support::Answer, _>| answer.expect("a response").status;
    assert_eq!(
        status(send(&client, get(&api.url("/api"))).await),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        (tokens.requests(), api.requests()),
        (2, 2),
        "one refresh, one replay"
    );

    // Within the default 5 s: the 401 comes back as it is, nothing refreshed.
    for _ in 0..3 {
        assert_eq!(
            status(send(&client, get(&api.url("/api"))).await),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!((tokens.requests(), api.requests()), (2, 5));
    assert_eq!(source.stats().replays, 1);

    tokio::time::advance(std::time::Duration::from_secs(5)).await;
    assert_eq!(
        status(send(&client, get(&api.url("/api"))).await),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        (tokens.requests(), api.requests()),
        (3, 7),
        "one more refresh"
    );
    assert_eq!(source.stats().replays, 2);
}

#[tokio::test]
async fn a_401_with_insufficient_scope_is_returned_without_a_refresh() {
    let tokens = TokenServer::start().await;
    let api = ResourceServer::start().await;
    api.insufficient_scope();
    let source = support::source(&tokens);
    let client = support::client(&source);

    for _ in 0..2 {
        let answer = send(&client, get(&api.url("/api/admin")))
            .await
            .expect("a 401 is a response");
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert!(challenge(&answer).contains(r#"error="insufficient_scope""#));
    }
    assert_eq!(tokens.requests(), 1, "a new token would not help");
    assert_eq!(
        api.tokens(),
        [Some("tok-1".to_owned()), Some("tok-1".to_owned())],
        "no replay, and the token was kept"
    );
    let stats = source.stats();
    assert_eq!((stats.refreshes, stats.replays), (0, 0));
}

#[tokio::test]
async fn a_request_with_a_boxed_body_is_sent_once_and_its_401_returned() {
    let tokens = TokenServer::start().await;
    let api = ResourceServer::start().await;
    api.reject("tok-1");
    let source = support::source(&tokens);
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source.clone()))
        .service(support::hyper_client::<BoxBody<Bytes, Infallible>>());

    let body = Full::new(Bytes::from_static(b"streamed")).boxed();
    let request = Request::post(api.url("/api/upload"))
        .body(body)
        .expect("a valid request");
    let answer = send(&client, request).await.expect("a 401 is a response");

    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let seen = api.seen();
    assert_eq!(seen.len(), 1, "no replay");
    assert_eq!(seen[0].body, "streamed");
    assert_eq!(tokens.requests(), 1);
    assert_eq!(source.stats().replays, 0);
}

#[tokio::test]
async fn a_request_with_an_unsync_boxed_body_is_sent_once_and_its_401_returned() {
    let tokens = TokenServer::start().await;
    let api = ResourceServer::start().await;
    api.reject("tok-1");
    let source = support::source(&tokens);
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source.clone()))
        .service(support::hyper_client::<
            http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>,
        >());

    let body = Full::new(Bytes::from_static(b"streamed")).boxed_unsync();
    let request = Request::put(api.url("/api/upload"))
        .body(body)
        .expect("a valid request");
    let answer = send(&client, request).await.expect("a 401 is a response");

    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(api.requests(), 1, "no replay");
    assert_eq!(api.seen()[0].body, "streamed");
    assert_eq!(tokens.requests(), 1);
    assert_eq!(source.stats().replays, 0);
}

#[tokio::test]
async fn the_no_replay_policy_returns_the_401_of_a_copyable_request() {
    let tokens = TokenServer::start().await;
    let api = ResourceServer::start().await;
    api.reject("tok-1");
    let source = support::source(&tokens);
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source.clone()).clone_body(NoReplay))
        .service(support::hyper_client::<Full<Bytes>>());

    let answer = send(&client, post_order(&api.url("/api/orders")))
        .await
        .expect("a 401 is a response");
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(api.requests(), 1, "no replay");
    assert_eq!(tokens.requests(), 1);
    assert_eq!(source.stats().replays, 0);
}

#[tokio::test]
async fn a_failed_refresh_after_a_401_fails_the_call_with_the_endpoint_error() {
    let tokens = TokenServer::start().await;
    let api = ResourceServer::start().await;
    api.reject("tok-1");
    let source = support::source(&tokens);
    let client = support::client(&source);
    source.token().await.expect("a first token");
    tokens.always(Reply::json(
        400,
        serde_json::json!({"error": "invalid_client", "error_description": "client disabled"}),
    ));

    let error = send(&client, post_order(&api.url("/api/orders")))
        .await
        .expect_err("no token to replay with");
    let error = support::alf_error(&error);
    assert!(error.is_oauth());
    assert_eq!(
        error.oauth_error().map(|oauth| oauth.code()),
        Some(&ErrorCode::InvalidClient)
    );
    assert_eq!(api.requests(), 1, "the replay was not sent");
    assert_eq!(tokens.requests(), 2);
    assert_eq!(source.stats().replays, 0);
}
