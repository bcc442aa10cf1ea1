//! reqwest through `tower_alf::reqwest::BearerAuthMiddleware`, and token
//! requests through `HttpClient::from_reqwest`: a real reqwest client, a
//! real token endpoint and a real protected resource (`support`), over
//! loopback sockets.

mod support;

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use axum::{response::Redirect, routing::any, Router};
use bytes::Bytes;
use http::StatusCode;
use http_body::Frame;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use serde_json::json;
use tokio::{net::TcpListener, task::JoinSet};
use tower_alf::{
    grant::ClientCredentials, replay::ReplayOn, reqwest::BearerAuthMiddleware, HttpClient,
    TokenSource,
};

use support::{Echo, Reply, ResourceServer, TokenServer, CLIENT_ID, CLIENT_SECRET};

/// A reqwest client builder. The tests' reqwest has rustls without a
/// crypto provider (`tests/tls.rs` gives it a ring configuration), so ring
/// is installed as the process default first, as an application on ring
/// does.
fn http() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// A reqwest client with the middleware over `source`.
fn client(source: &TokenSource) -> ClientWithMiddleware {
    client_with(BearerAuthMiddleware::new(source.clone()))
}

fn client_with(middleware: BearerAuthMiddleware) -> ClientWithMiddleware {
    ClientBuilder::new(http().build().unwrap())
        .with(middleware)
        .build()
}

async fn echo(response: reqwest::Response) -> Echo {
    assert_eq!(response.status(), StatusCode::OK, "an accepted request");
    response.json().await.expect("an echo")
}

/// A request body that is a stream: reqwest cannot copy it.
fn streaming(chunks: &'static [&'static str]) -> reqwest::Body {
    let frames = chunks
        .iter()
        .map(|chunk| Ok::<_, Infallible>(Frame::data(Bytes::from_static(chunk.as_bytes()))));
    reqwest::Body::wrap(http_body_util::StreamBody::new(tokio_stream::iter(frames)))
}

#[tokio::test]
async fn a_401_is_replayed_once_with_a_fresh_token_and_the_same_json_body() {
    let (idp, api) = (TokenServer::start().await, ResourceServer::start().await);
    let tokens = support::source(&idp);
    let client = client(&tokens);
    // tok-1 serves, then is revoked.
    let first = echo(client.get(api.url("/api/a")).send().await.unwrap()).await;
    assert_eq!(first.token, "tok-1");
    api.reject("tok-1");

    let order = json!({ "item": "tea", "quantity": 2 });
    let response = client
        .post(api.url("/api/orders"))
        .header("x-request", "42")
        .json(&order)
        .send()
        .await
        .expect("the call succeeds");
    let replayed = echo(response).await;
    assert_eq!(replayed.token, "tok-2");
    assert_eq!(replayed.method, "POST");
    assert_eq!(replayed.headers["x-request"], ["42"]);
    assert_eq!(replayed.headers["content-type"], ["application/json"]);
    let seen = api.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[1].token.as_deref(), Some("tok-1"));
    assert_eq!(seen[2].token.as_deref(), Some("tok-2"));
    for sent in &seen[1..] {
        let body: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
        assert_eq!(body, order, "the same body both times");
    }
    let stats = tokens.stats();
    assert_eq!((stats.fetches, stats.replays), (2, 1));
    assert_eq!(idp.requests(), 2);
}

#[tokio::test]
async fn a_streaming_body_is_not_replayed_its_401_returned_and_the_token_replaced() {
    let (idp, api) = (TokenServer::start().await, ResourceServer::start().await);
    api.reject("tok-1");
    let tokens = support::source(&idp);
    let client = client(&tokens);

    let response = client
        .post(api.url("/api/upload"))
        .body(streaming(&["part one, ", "part two"]))
        .send()
        .await
        .expect("an answer");
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "returned as it came"
    );
    assert_eq!(api.requests(), 1, "not replayed");
    assert_eq!(&api.seen()[0].body[..], b"part one, part two");

    // The rejected token was invalidated all the same.
    let next = echo(client.get(api.url("/api/next")).send().await.unwrap()).await;
    assert_eq!(next.token, "tok-2");
    let stats = tokens.stats();
    assert_eq!((stats.fetches, stats.replays), (2, 0));
}

#[tokio::test]
async fn a_second_401_is_returned_as_is() {
    let (idp, api) = (TokenServer::start().await, ResourceServer::start().await);
    api.reject_all();
    let tokens = support::source(&idp);
    let response = client(&tokens)
        .get(api.url("/api/x"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.tokens(), [Some("tok-1".into()), Some("tok-2".into())]);
    let stats = tokens.stats();
    assert_eq!((stats.fetches, stats.replays), (2, 1));
}

#[tokio::test]
async fn a_server_refusing_every_new_token_is_throttled_not_asked_per_call() {
    let (idp, api) = (TokenServer::start().await, ResourceServer::start().await);
    api.reject_all();
    let tokens = support::source(&idp);
    let client = client(&tokens);
    for _ in 0..3 {
        let response = client.get(api.url("/api/x")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // tok-1 refused, replaced and replayed with tok-2, refused; then tok-2
    // refused at birth again too soon: kept, the 401 returned as it came.
    assert_eq!(idp.requests(), 2);
    assert_eq!(
        api.tokens(),
        ["tok-1", "tok-2", "tok-2", "tok-2"].map(|t| Some(t.to_owned()))
    );
    let stats = tokens.stats();
    assert_eq!((stats.fetches, stats.replays, stats.throttled), (2, 1, 2));
}

#[tokio::test]
async fn insufficient_scope_is_returned_as_is_and_the_token_kept() {
    let (idp, api) = (TokenServer::start().await, ResourceServer::start().await);
    api.insufficient_scope();
    let tokens = support::source(&idp);
    let client = client(&tokens);
    for _ in 0..3 {
        let response = client.get(api.url("/api/admin")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.contains("insufficient_scope"), "{challenge}");
    }
    assert_eq!(api.requests(), 3, "never replayed");
    let stats = tokens.stats();
    assert_eq!((stats.fetches, stats.replays), (1, 0));
}

#[tokio::test]
async fn replay_on_idempotent_methods_does_not_replay_a_post() {
    let (idp, api) = (TokenServer::start().await, ResourceServer::start().await);
    api.reject("tok-1");
    let tokens = support::source(&idp);
    let client = client_with(
        BearerAuthMiddleware::new(tokens.clone()).replay_on(ReplayOn::IdempotentMethods),
    );
    let response = client
        .post(api.url("/api/pay"))
        .body("once")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = client
        .put(api.url("/api/put"))
        .body("twice")
        .send()
        .await
        .unwrap();
    assert_eq!(echo(response).await.token, "tok-2");
    assert_eq!(api.tokens().len(), 2, "the POST went once, the PUT once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_first_requests_make_one_token_request() {
    const N: usize = 1000;
    let (idp, api) = (TokenServer::start().await, ResourceServer::start().await);
    let tokens = support::source(&idp);
    let client = client(&tokens);
    let gate = idp.hold();

    let mut requests = JoinSet::new();
    for i in 0..N {
        let request = client.get(api.url(&format!("/api/items/{i}")));
        requests.spawn(async move { request.send().await });
    }
    idp.requests_reached(1).await;
    support::eventually("every request to wait for the token", || {
        tokens.stats().waits == N as u64
    })
    .await;
    assert_eq!(api.requests(), 0, "nothing is sent without a token");
    gate.open();

    let answers = support::guard(requests.join_all(), "all requests to be answered").await;
    for answer in answers {
        assert_eq!(answer.expect("the call succeeds").status(), StatusCode::OK);
    }
    assert_eq!(idp.requests(), 1, "exactly one token request");
    assert_eq!(tokens.stats().fetches, 1);
    assert_eq!(api.requests(), N);
    assert!(api.tokens().iter().all(|t| t.as_deref() == Some("tok-1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_401s_for_one_token_make_one_refresh() {
    const N: usize = 200;
    let (idp, api) = (TokenServer::start().await, ResourceServer::start().await);
    let tokens = support::source(&idp);
    let client = client(&tokens);
    tokens.token().await.expect("tok-1");
    api.reject("tok-1");
    // Every first send is answered only once all N have arrived, so each
    // 401 is for tok-1.
    let gate = api.hold();

    let mut requests = JoinSet::new();
    for i in 0..N {
        let request = client.get(api.url(&format!("/api/{i}")));
        requests.spawn(async move { request.send().await });
    }
    api.requests_reached(N).await;
    gate.open();
    let answers = support::guard(requests.join_all(), "all requests to be answered").await;
    for answer in answers {
        assert_eq!(echo(answer.expect("replayed")).await.token, "tok-2");
    }
    assert_eq!(idp.requests(), 2, "one refresh for N rejections");
    let stats = tokens.stats();
    assert_eq!((stats.fetches, stats.replays), (2, N as u64));
}

#[tokio::test]
async fn tokens_go_only_where_the_layer_would_send_them() {
    let (idp, api) = (TokenServer::start().await, ResourceServer::start().await);
    let tokens = support::source(&idp);

    // Another origin than the only one allowed: no token, no fetch.
    let other: http::Uri = "https://api.example".parse().unwrap();
    let elsewhere = client_with(BearerAuthMiddleware::new(tokens.clone()).only_origins([other]));
    let response = elsewhere.get(api.url("/api/x")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(idp.requests(), 0);

    // The request's own Authorization is kept, never replayed.
    let client = client(&tokens);
    let response = client
        .get(api.url("/api/y"))
        .bearer_auth("my-own")
        .send()
        .await
        .unwrap();
    assert_eq!(echo(response).await.token, "my-own");
    assert_eq!(idp.requests(), 0);

    // Plain http to a host that is not loopback: no token (the request
    // itself fails to connect: nothing listens on that name).
    let _ = client.get("http://api.invalid/z").send().await;
    assert_eq!(idp.requests(), 0);
    assert_eq!(api.tokens(), [None, Some("my-own".into())]);
}

#[tokio::test]
async fn a_token_failure_fails_the_call_unsent_and_token_error_finds_it() {
    let idp = TokenServer::start_with(Reply::json(
        401,
        json!({ "error": "invalid_client", "error_description": "unknown client" }),
    ))
    .await;
    let api = ResourceServer::start().await;
    let tokens = support::source(&idp);
    let error = client(&tokens)
        .get(api.url("/api/x"))
        .send()
        .await
        .expect_err("no token");
    let token = tower_alf::reqwest::token_error(&error).expect("a token error");
    assert_eq!(
        token.oauth_error().map(|e| e.code().as_str().to_owned()),
        Some("invalid_client".to_owned())
    );
    assert_eq!(api.requests(), 0, "not sent without a token");
    for text in [format!("{error}"), format!("{error:?}")] {
        assert!(!text.contains(CLIENT_SECRET), "{text}");
    }
}

// ===== HttpClient::from_reqwest =====

fn reqwest_source(idp: &TokenServer, client: reqwest::Client) -> TokenSource {
    let endpoint = support::endpoint_builder(idp)
        .http_client(HttpClient::from_reqwest(client))
        .build()
        .expect("a valid endpoint");
    TokenSource::new(ClientCredentials::new(endpoint).scope("orders:read"))
}

#[tokio::test]
async fn the_token_endpoint_is_reached_through_from_reqwest() {
    let (idp, api) = (TokenServer::start().await, ResourceServer::start().await);
    let http = http()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let tokens = reqwest_source(&idp, http.clone());
    // One reqwest client for both: the token endpoint and the API.
    let client = ClientBuilder::new(http)
        .with(BearerAuthMiddleware::new(tokens.clone()))
        .build();
    let answer = echo(client.get(api.url("/api/x")).send().await.unwrap()).await;
    assert_eq!(answer.token, "tok-1");

    let seen = idp.last();
    assert_eq!(
        seen.basic_credentials(),
        Some((CLIENT_ID.to_owned(), CLIENT_SECRET.to_owned()))
    );
    assert_eq!(seen.field("grant_type"), Some("client_credentials"));
    assert_eq!(seen.field("scope"), Some("orders:read"));
    assert_eq!(
        seen.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(idp.requests(), 1);
}

#[tokio::test]
async fn from_reqwest_keeps_the_size_cap() {
    let idp = TokenServer::start_with(Reply::raw(200, "application/json", vec![b' '; 4096])).await;
    let endpoint = support::endpoint_builder(&idp)
        .http_client(HttpClient::from_reqwest(http().build().unwrap()))
        .max_response_size(1024)
        .build()
        .unwrap();
    let error = TokenSource::new(ClientCredentials::new(endpoint))
        .token()
        .await
        .expect_err("too large");
    assert!(
        error.to_string().contains("larger than 1024 bytes"),
        "{error}"
    );
}

#[tokio::test(start_paused = true)]
async fn from_reqwest_keeps_the_endpoint_timeout() {
    let idp = TokenServer::start_with(Reply::Hang).await;
    let endpoint = support::endpoint_builder(&idp)
        .http_client(HttpClient::from_reqwest(http().build().unwrap()))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let error = TokenSource::new(ClientCredentials::new(endpoint))
        .token()
        .await
        .expect_err("no answer");
    assert!(error.is_timeout(), "{error:?}");
}

/// `/token` redirects to `/elsewhere`, which answers a token.
async fn redirecting_endpoint() -> SocketAddr {
    let router = Router::new()
        .route(
            "/token",
            any(|| async { Redirect::temporary("/elsewhere") }),
        )
        .route(
            "/elsewhere",
            any(|| async {
                axum::Json(json!({ "access_token": "moved", "token_type": "Bearer" }))
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

#[tokio::test]
async fn an_answer_reached_by_a_redirect_is_refused() {
    let addr = redirecting_endpoint().await;
    let endpoint = tower_alf::TokenEndpoint::builder(format!("http://{addr}/token"))
        .client_auth(tower_alf::ClientAuth::basic(CLIENT_ID, CLIENT_SECRET))
        .retry(tower_alf::RetryPolicy::none())
        // reqwest's default policy follows redirects.
        .http_client(HttpClient::from_reqwest(http().build().unwrap()))
        .build()
        .unwrap();
    let error = TokenSource::new(ClientCredentials::new(endpoint))
        .token()
        .await
        .expect_err("refused");
    assert!(error.is_transport(), "{error:?}");
    assert!(format!("{error:?}").contains("redirect"), "{error:?}");

    // With redirects off, the 307 itself is the answer: not a token.
    let endpoint = tower_alf::TokenEndpoint::builder(format!("http://{addr}/token"))
        .client_auth(tower_alf::ClientAuth::basic(CLIENT_ID, CLIENT_SECRET))
        .retry(tower_alf::RetryPolicy::none())
        .http_client(HttpClient::from_reqwest(
            http()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        ))
        .build()
        .unwrap();
    let error = TokenSource::new(ClientCredentials::new(endpoint))
        .token()
        .await
        .expect_err("a redirect is no token");
    assert_eq!(
        error.status_code(),
        Some(StatusCode::TEMPORARY_REDIRECT),
        "{error:?}"
    );
}
