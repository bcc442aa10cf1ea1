//! Streaming bodies replayed after a 401 through `ReplayStreams`, the
//! replay-by-method policy, and 401s that must not be replayed. Real sockets
//! (hyper-util client, axum servers), real time.

mod support;

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use support::{send, ResourceServer, TokenServer};
use tower::{service_fn, BoxError, ServiceBuilder, ServiceExt};
use tower_alf::{
    replay::{ReplayOn, ReplayStreams},
    BearerAuthLayer,
};

type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body that arrives in chunks, as a proxy's or tonic's does.
fn stream(chunks: &[&'static str]) -> Body {
    let frames: Vec<Result<Frame<Bytes>, BoxError>> = chunks
        .iter()
        .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
        .collect();
    StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
}

fn post(url: &str, body: Body) -> Request<Body> {
    Request::post(url)
        .header("x-request-id", "r-7")
        .body(body)
        .unwrap()
}

#[tokio::test]
async fn a_streamed_body_under_the_cap_is_replayed_whole_after_a_401() {
    let tokens = TokenServer::start().await;
    let api = ResourceServer::start().await;
    api.reject("tok-1");
    let source = support::source(&tokens);
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source.clone()).clone_body(ReplayStreams::new(Body::new)))
        .service(support::hyper_client::<Body>());

    let answer = send(
        &client,
        post(
            &api.url("/api/upload"),
            stream(&["alpha ", "beta ", "gamma"]),
        ),
    )
    .await
    .unwrap();
    let echo = answer.echo();
    assert_eq!(echo.token, "tok-2");
    assert_eq!(
        echo.body, "alpha beta gamma",
        "replayed whole, not truncated nor doubled"
    );
    assert_eq!(echo.headers["x-request-id"], ["r-7"]);
    let seen = api.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[0].body, seen[1].body,
        "both sends carried the same body"
    );
    assert_eq!(source.stats().replays, 1);
}

#[tokio::test]
async fn a_streamed_body_over_the_cap_gets_its_401_back_and_no_replay() {
    let tokens = TokenServer::start().await;
    let api = ResourceServer::start().await;
    api.reject("tok-1");
    let source = support::source(&tokens);
    let replay = ReplayStreams::new(Body::new).cap(8);
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source.clone()).clone_body(replay))
        .service(support::hyper_client::<Body>());

    let answer = send(
        &client,
        post(&api.url("/api"), stream(&["0123456789", "0123456789"])),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(api.requests(), 1, "sent once");
    assert_eq!(api.seen()[0].body.len(), 20, "the one send was whole");
    assert_eq!(source.stats().replays, 0);
}

#[tokio::test]
async fn the_idempotent_only_policy_replays_a_put_but_not_a_post() {
    let tokens = TokenServer::start().await;
    let api = ResourceServer::start().await;
    // Two rejections in a row below: no throttle between them.
    let source = tower_alf::TokenSource::builder(tower_alf::grant::ClientCredentials::new(
        support::endpoint_builder(&tokens).build().unwrap(),
    ))
    .rejection_interval(std::time::Duration::ZERO)
    .build();
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source.clone()).replay_on(ReplayOn::IdempotentMethods))
        .service(support::hyper_client());
    let request = |method: Method| {
        Request::builder()
            .method(method)
            .uri(api.url("/api"))
            .body(Full::new(Bytes::from_static(b"order=42")))
            .unwrap()
    };

    api.reject("tok-1");
    let post = send(&client, request(Method::POST)).await.unwrap();
    assert_eq!(
        post.status,
        StatusCode::UNAUTHORIZED,
        "a POST is not replayed"
    );
    assert_eq!(api.requests(), 1);
    // But its rejected token is replaced, by a fetch of its own.
    support::guard(tokens.requests_reached(2), "the replacement fetch").await;

    api.reject("tok-2");
    let put = send(&client, request(Method::PUT)).await.unwrap();
    assert_eq!(put.token(), "tok-3", "a PUT is replayed");
    assert_eq!(
        api.tokens(),
        [
            Some("tok-1".into()),
            Some("tok-2".into()),
            Some("tok-3".into())
        ]
    );
    assert_eq!(source.stats().replays, 1);
}

#[tokio::test]
async fn a_401_that_cannot_be_replayed_still_replaces_the_rejected_token() {
    let tokens = TokenServer::start().await;
    let api = ResourceServer::start().await;
    let source = support::source(&tokens);
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source.clone()).clone_body(tower_alf::replay::NoReplay))
        .service(support::hyper_client());

    api.reject("tok-1");
    let first = send(&client, support::get(&api.url("/api"))).await.unwrap();
    assert_eq!(
        first.status,
        StatusCode::UNAUTHORIZED,
        "returned as it came"
    );
    let next = send(&client, support::get(&api.url("/api"))).await.unwrap();
    assert_eq!(
        next.token(),
        "tok-2",
        "the next request does not resend the rejected token"
    );
    assert_eq!(tokens.requests(), 2);
    assert_eq!(source.stats().replays, 0);
}

/// A resource answering 401 with this challenge, counting its calls.
fn challenging(
    challenge: &'static str,
    calls: Arc<AtomicUsize>,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Send,
> + Clone {
    service_fn(move |_req: Request<Full<Bytes>>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut response = Response::new(Full::default());
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response
                .headers_mut()
                .insert("www-authenticate", challenge.parse().unwrap());
            Ok(response)
        }
    })
}

#[tokio::test]
async fn a_401_that_challenges_another_scheme_is_returned_untouched() {
    let tokens = TokenServer::start().await;
    let source = support::source(&tokens);
    let calls = Arc::new(AtomicUsize::new(0));
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source.clone()))
        .service(challenging(r#"Basic realm="admin""#, calls.clone()));
    let response = client.oneshot(Request::new(Full::default())).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"],
        r#"Basic realm="admin""#
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(tokens.requests(), 1, "the token was not refreshed");
}
