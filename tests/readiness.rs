//! The readiness contract (`tower::Service`): a request is sent through the
//! service that was readied for it, and a replay through a clone readied
//! first. `tower_test::mock` panics on a call made before `poll_ready`, and
//! readies only when the test allows; tokens come from a real loopback
//! token endpoint.

mod support;

use std::task::Poll;

use bytes::Bytes;
use http::{header::AUTHORIZATION, Request, Response, StatusCode};
use http_body_util::Full;
use tokio::task::JoinSet;
use tower::{buffer::Buffer, BoxError, Service, ServiceBuilder, ServiceExt};
use tower_alf::BearerAuthLayer;
use tower_test::mock;

use support::{get, send, ResourceServer, TokenServer};

type Req = Request<Full<Bytes>>;
type Res = Response<Full<Bytes>>;

fn status(code: StatusCode) -> Res {
    let mut response = Response::new(Full::default());
    *response.status_mut() = code;
    response
}

fn bearer(request: &Req) -> &str {
    request.headers()[AUTHORIZATION].to_str().unwrap()
}

#[tokio::test]
async fn a_request_waiting_for_its_token_is_sent_through_the_service_readied_for_it() {
    let tokens = TokenServer::start().await;
    let gate = tokens.hold();
    let source = support::source(&tokens);
    let (inner, mut handle) = mock::pair::<Req, Res>();
    handle.allow(1);
    let mut client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source.clone()))
        .service(inner);

    // Readied once, for this request; the token is not there yet.
    let future = client
        .ready()
        .await
        .unwrap()
        .call(get("http://127.0.0.1:9/api/a"));
    let task = tokio::spawn(future);
    tokens.requests_reached(1).await;
    gate.open();

    // A call through an unreadied clone would panic in the mock.
    let (request, reply) = handle.next_request().await.expect("the request");
    assert_eq!(bearer(&request), "Bearer tok-1");
    reply.send_response(status(StatusCode::OK));
    let response = task.await.expect("no panic").expect("a response");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_replay_readies_its_clone_before_calling_it() {
    let tokens = TokenServer::start().await;
    let source = support::source(&tokens);
    source.token().await.unwrap();
    let (inner, mut handle) = mock::pair::<Req, Res>();
    handle.allow(1);
    let mut client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source.clone()))
        .service(inner);

    let future = client
        .ready()
        .await
        .unwrap()
        .call(get("http://127.0.0.1:9/api/a"));
    let task = tokio::spawn(future);
    let (request, reply) = handle.next_request().await.unwrap();
    assert_eq!(bearer(&request), "Bearer tok-1");
    reply.send_response(status(StatusCode::UNAUTHORIZED));

    // The mock is not ready again until allowed: no replay may be sent.
    tokens.requests_reached(2).await;
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    assert!(
        matches!(handle.poll_request(), Poll::Pending),
        "not readied yet"
    );

    handle.allow(1);
    let (replay, reply) = handle.next_request().await.expect("the replay");
    assert_eq!(bearer(&replay), "Bearer tok-2");
    reply.send_response(status(StatusCode::OK));
    let response = task.await.expect("no panic").expect("a response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(source.stats().replays, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_buffered_inner_service_serves_many_tasks_through_a_401_and_a_cold_start() {
    const TASKS: usize = 200;
    let tokens = TokenServer::start().await;
    let api = ResourceServer::start().await;
    api.reject("tok-1");
    let source = support::source(&tokens);
    // A small bound: most tasks wait for a slot, and those waiting for the
    // token hold theirs.
    let buffered = Buffer::new(support::hyper_client::<Full<Bytes>>(), 4);
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source.clone()))
        .service(buffered);

    let mut tasks = JoinSet::new();
    for i in 0..TASKS {
        let client = client.clone();
        let url = api.url(&format!("/api/{i}"));
        tasks.spawn(async move { send(&client, get(&url)).await });
    }
    let mut tokens_sent = Vec::new();
    while let Some(outcome) = support::guard(tasks.join_next(), "the tasks").await {
        let answer: support::Answer = outcome.expect("no panic").map_err(|e: BoxError| e).unwrap();
        tokens_sent.push(answer.token());
    }
    assert_eq!(tokens_sent.len(), TASKS);
    assert!(
        tokens_sent.iter().all(|t| t == "tok-2"),
        "every request ends with tok-2"
    );
    assert_eq!(tokens.requests(), 2, "one fetch, one refresh");
}
