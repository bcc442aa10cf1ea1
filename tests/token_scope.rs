//! Where tokens go: only to the configured origins, never in clear to a
//! remote host, never over a request's own `Authorization`.

mod support;

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http::{header::AUTHORIZATION, HeaderValue, Request, Response};
use http_body_util::Full;
use support::{send, ResourceServer, TokenServer};
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_alf::BearerAuthLayer;

#[tokio::test]
async fn a_token_is_never_attached_to_an_origin_outside_the_set() {
    let tokens = TokenServer::start().await;
    let api = ResourceServer::start().await;
    let other = ResourceServer::start().await;
    let source = support::source(&tokens);
    let allowed = api.url("/").parse().unwrap();
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source).only_origins([allowed]))
        .service(support::hyper_client());

    let elsewhere = send(&client, support::get(&other.url("/api")))
        .await
        .unwrap();
    assert_eq!(elsewhere.status, 401);
    assert_eq!(other.tokens(), [None], "no token for another origin");
    assert_eq!(tokens.requests(), 0, "not even fetched");

    assert_eq!(
        send(&client, support::get(&api.url("/api")))
            .await
            .unwrap()
            .token(),
        "tok-1"
    );
}

#[tokio::test]
async fn a_request_with_its_own_authorization_is_left_as_it_is() {
    let tokens = TokenServer::start().await;
    let api = ResourceServer::start().await;
    let source = support::source(&tokens);
    let with_own = || {
        let mut request = support::get(&api.url("/api"));
        request.headers_mut().insert(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer user-supplied"),
        );
        request
    };

    let keep = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source.clone()))
        .service(support::hyper_client());
    assert_eq!(
        send(&keep, with_own()).await.unwrap().token(),
        "user-supplied"
    );
    assert_eq!(tokens.requests(), 0);

    let replace = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source).keep_existing_authorization(false))
        .service(support::hyper_client());
    assert_eq!(send(&replace, with_own()).await.unwrap().token(), "tok-1");
}

#[tokio::test]
async fn plain_http_to_a_remote_host_gets_no_token_unless_allowed() {
    let tokens = TokenServer::start().await;
    let source = support::source(&tokens);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = {
        let seen = seen.clone();
        service_fn(move |req: Request<Full<Bytes>>| {
            seen.lock()
                .unwrap()
                .push(req.headers().get(AUTHORIZATION).cloned());
            async { Ok::<_, Infallible>(Response::new(Full::<Bytes>::default())) }
        })
    };
    let send_to = |layer: BearerAuthLayer, url: &'static str| {
        let service = ServiceBuilder::new().layer(layer).service(recorder.clone());
        async move {
            service
                .oneshot(Request::get(url).body(Full::default()).unwrap())
                .await
                .unwrap()
        }
    };

    send_to(
        BearerAuthLayer::new(source.clone()),
        "http://api.example/v1",
    )
    .await;
    send_to(
        BearerAuthLayer::new(source.clone()),
        "https://api.example/v1",
    )
    .await;
    send_to(
        BearerAuthLayer::new(source.clone()),
        "http://localhost:8080/v1",
    )
    .await;
    send_to(
        BearerAuthLayer::new(source.clone()).allow_insecure_http(true),
        "http://api.example/v1",
    )
    .await;
    let seen: Vec<bool> = seen.lock().unwrap().iter().map(Option::is_some).collect();
    assert_eq!(seen, [false, true, true, true]);
}
