//! Token endpoint failures: the real request is not sent and the caller gets
//! a `tower_alf::Error` (inside the `BoxError`) saying what went wrong; the
//! inner service's own errors pass through untouched. Also the odd but
//! valid answers real servers send.
//!
//! Real sockets throughout, with retries off (`support` builds endpoints
//! with `RetryPolicy::none()`; retries have `fault_matrix.rs`). Real time,
//! except: the permanent-failure memory runs under paused time with the
//! clock held, and the hanging endpoint under paused time with the clock
//! held until the request has arrived, then left to jump to the timeout.

mod support;

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use tower::{service_fn, BoxError, ServiceBuilder};
use tower_alf::{BearerAuthLayer, ErrorCode};

use support::{get, send, Reply, ResourceServer, TokenServer};

/// Sends one GET through a fresh source over `tokens`; returns the error.
async fn failed_call(tokens: &TokenServer, api: &ResourceServer) -> BoxError {
    let source = support::source(tokens);
    let client = support::client(&source);
    let error = send(&client, get(&api.url("/api")))
        .await
        .expect_err("the call fails without a token");
    assert_eq!(source.stats().failures, 1);
    error
}

#[tokio::test]
async fn an_invalid_client_answer_fails_the_call_with_the_oauth_error_and_sends_nothing() {
    let tokens = TokenServer::start_with(Reply::json(
        400,
        json!({
            "error": "invalid_client",
            "error_description": "Client authentication failed",
            "error_uri": "https://idp.example/errors#invalid_client",
        }),
    ))
    .await;
    let api = ResourceServer::start().await;

    let error = failed_call(&tokens, &api).await;
    let error = support::alf_error(&error);
    assert!(error.is_oauth() && error.is_status());
    assert!(!error.is_invalid_response() && !error.is_timeout() && !error.is_transport());
    assert_eq!(error.status_code(), Some(http::StatusCode::BAD_REQUEST));
    let oauth = error.oauth_error().expect("the OAuth error response");
    assert_eq!(oauth.code(), &ErrorCode::InvalidClient);
    assert_eq!(oauth.description(), Some("Client authentication failed"));
    assert_eq!(
        oauth.uri(),
        Some("https://idp.example/errors#invalid_client")
    );
    assert!(error.to_string().contains("invalid_client"));
    assert_eq!(api.requests(), 0, "the resource is never called");
    assert_eq!(tokens.requests(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_permanent_failure_is_remembered_for_five_seconds_without_new_token_requests() {
    let _clock = support::hold_clock();
    let tokens = TokenServer::start_with(Reply::json(
        401,
        json!({"error": "invalid_client", "error_description": "unknown client"}),
    ))
    .await;
    let api = ResourceServer::start().await;
    let source = support::source(&tokens);
    let client = support::client(&source);

    for _ in 0..3 {
        let error = send(&client, get(&api.url("/api")))
            .await
            .expect_err("no token");
        let error = support::alf_error(&error);
        assert!(error.is_oauth() && error.is_permanent(), "{error:?}");
    }
    assert_eq!(tokens.requests(), 1, "the failure is remembered");

    tokens.always(Reply::token());
    tokio::time::advance(Duration::from_millis(4999)).await;
    let error = send(&client, get(&api.url("/api")))
        .await
        .expect_err("still remembered");
    assert!(support::alf_error(&error).is_permanent());
    assert_eq!(tokens.requests(), 1);

    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(
        support::get_ok(&client, &api.url("/api")).await.token(),
        "tok-1",
        "a fixed configuration is picked up"
    );
    assert_eq!(tokens.requests(), 2);
    assert_eq!(api.requests(), 1);
}

#[tokio::test]
async fn a_500_is_a_status_error_and_sends_nothing() {
    let tokens = TokenServer::start_with(Reply::raw(
        500,
        "text/html",
        "<h1>Internal Server Error</h1>",
    ))
    .await;
    let api = ResourceServer::start().await;

    let error = failed_call(&tokens, &api).await;
    let error = support::alf_error(&error);
    assert!(error.is_status());
    assert!(!error.is_oauth());
    assert_eq!(error.oauth_error(), None);
    assert_eq!(
        error.status_code(),
        Some(http::StatusCode::INTERNAL_SERVER_ERROR)
    );
    assert_eq!(error.body_excerpt(), Some("<h1>Internal Server Error</h1>"));
    assert_eq!(api.requests(), 0);
}

#[tokio::test]
async fn a_success_that_is_not_json_is_an_invalid_response() {
    let tokens =
        TokenServer::start_with(Reply::raw(200, "text/html", "<html>Sign in</html>")).await;
    let api = ResourceServer::start().await;

    let error = failed_call(&tokens, &api).await;
    let error = support::alf_error(&error);
    assert!(error.is_invalid_response());
    assert!(!error.is_status());
    assert_eq!(error.status_code(), Some(http::StatusCode::OK));
    assert_eq!(api.requests(), 0);
}

#[tokio::test]
async fn a_success_without_an_access_token_is_an_invalid_response() {
    let tokens = TokenServer::start_with(Reply::json(
        200,
        json!({"token_type": "Bearer", "expires_in": 3600}),
    ))
    .await;
    let api = ResourceServer::start().await;

    let error = failed_call(&tokens, &api).await;
    let error = support::alf_error(&error);
    assert!(error.is_invalid_response());
    assert!(error.to_string().contains("access_token"), "{error}");
    assert_eq!(api.requests(), 0);
}

fn huge_token_body() -> String {
    let padding = "x".repeat(2 * 1024 * 1024);
    json!({
        "access_token": "tok-huge",
        "token_type": "Bearer",
        "expires_in": 3600,
        "padding": padding,
    })
    .to_string()
}

#[tokio::test]
async fn a_two_mib_answer_is_refused_by_the_size_cap() {
    let tokens =
        TokenServer::start_with(Reply::raw(200, "application/json", huge_token_body())).await;
    let api = ResourceServer::start().await;

    let error = failed_call(&tokens, &api).await;
    let error = support::alf_error(&error);
    assert!(error.is_invalid_response());
    assert!(error.to_string().contains("larger than"), "{error}");
    assert_eq!(api.requests(), 0);

    // The same answer is a valid token under a larger cap: the cap refused it.
    let endpoint = support::endpoint_builder(&tokens)
        .max_response_size(4 * 1024 * 1024)
        .build()
        .expect("a valid endpoint");
    let token = support::source_from(endpoint)
        .token()
        .await
        .expect("a token under a 4 MiB cap");
    assert_eq!(token.access_token().secret(), "tok-huge");
}

#[tokio::test]
async fn expires_in_as_a_numeric_string_gives_the_token_that_lifetime() {
    let tokens = TokenServer::start_with(Reply::token_expiring(json!("3600"))).await;
    let api = ResourceServer::start().await;
    let source = support::source(&tokens);
    let client = support::client(&source);

    assert_eq!(
        support::get_ok(&client, &api.url("/api")).await.token(),
        "tok-1"
    );
    let token = source.cached().expect("a cached token");
    assert_eq!(token.lifetime(), Some(Duration::from_secs(3600)));
}

#[tokio::test(start_paused = true)]
async fn a_hanging_token_endpoint_times_out_after_the_endpoint_timeout() {
    const TIMEOUT: Duration = Duration::from_secs(5);
    let clock = support::hold_clock();
    let tokens = TokenServer::start_with(Reply::Hang).await;
    let api = ResourceServer::start().await;
    let endpoint = support::endpoint_builder(&tokens)
        .timeout(TIMEOUT)
        .build()
        .expect("a valid endpoint");
    let source = support::source_from(endpoint);
    let client = support::client(&source);

    let start = Instant::now();
    let url = api.url("/api");
    let call = tokio::spawn(async move { send(&client, get(&url)).await });
    tokens.requests_reached(1).await;
    assert!(!call.is_finished());
    // Let the clock run to the next timer, the endpoint's timeout.
    drop(clock);
    let error = support::guard(call, "the timeout")
        .await
        .expect("the task ran")
        .expect_err("the fetch timed out");

    let elapsed = start.elapsed();
    assert!(
        elapsed >= TIMEOUT && elapsed < TIMEOUT + Duration::from_millis(10),
        "timed out after {elapsed:?}"
    );
    assert!(support::alf_error(&error).is_timeout());
    assert_eq!(api.requests(), 0);
}

#[tokio::test]
async fn an_unreachable_token_endpoint_is_a_transport_error() {
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        listener.local_addr().expect("address").port()
    };
    let api = ResourceServer::start().await;
    let endpoint = tower_alf::TokenEndpoint::builder(format!("http://127.0.0.1:{closed}/token"))
        .client_auth(tower_alf::ClientAuth::basic("id", "secret"))
        // One attempt: retries (and their real-time backoff) are
        // `fault_matrix.rs`'s subject.
        .retry(tower_alf::RetryPolicy::none())
        .build()
        .expect("a valid endpoint");
    let source = support::source_from(endpoint);
    let client = support::client(&source);

    let error = send(&client, get(&api.url("/api")))
        .await
        .expect_err("no token");
    assert!(support::alf_error(&error).is_transport());
    assert_eq!(api.requests(), 0);
}

#[tokio::test]
async fn the_inner_services_connect_error_passes_through_as_its_own_type() {
    let tokens = TokenServer::start().await;
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        listener.local_addr().expect("address").port()
    };
    let source = support::source(&tokens);
    let client = support::client(&source);

    let error = send(&client, get(&format!("http://127.0.0.1:{closed}/api")))
        .await
        .expect_err("nothing listens there");
    assert!(
        error.downcast_ref::<tower_alf::Error>().is_none(),
        "not a token error: {error:?}"
    );
    let inner = error
        .downcast_ref::<hyper_util::client::legacy::Error>()
        .unwrap_or_else(|| panic!("the hyper-util error, got {error:?}"));
    assert!(inner.is_connect());
    assert_eq!(tokens.requests(), 1, "the token was fetched first");
}

#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("refused by the inner service")
    }
}

impl std::error::Error for Refused {}

#[tokio::test]
async fn the_inner_services_own_error_type_passes_through() {
    let tokens = TokenServer::start().await;
    let source = support::source(&tokens);
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source.clone()))
        .service(service_fn(|request: http::Request<String>| async move {
            assert_eq!(request.headers()["authorization"], "Bearer tok-1");
            Err::<http::Response<String>, _>(Refused)
        }));

    let error = send(&client, http::Request::new(String::new()))
        .await
        .expect_err("the inner service fails");
    assert!(error.downcast_ref::<Refused>().is_some(), "{error:?}");
    assert!(error.downcast_ref::<tower_alf::Error>().is_none());
    assert_eq!(tokens.requests(), 1);
}

#[test]
fn an_endpoint_without_client_authentication_is_a_config_error() {
    let error = tower_alf::TokenEndpoint::builder("https://idp.example/token")
        .build()
        .expect_err("no client authentication was chosen");
    assert!(error.is_config(), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("client_auth"), "{message}");
    assert!(message.contains("ClientAuth::none"), "{message}");
}

#[test]
fn a_public_client_is_declared_with_client_auth_none() {
    let endpoint = tower_alf::TokenEndpoint::builder("https://idp.example/token")
        .client_auth(tower_alf::ClientAuth::none("my-cli"))
        .build()
        .expect("a public client");
    assert_eq!(endpoint.client_auth().method_name(), "none");
    assert_eq!(endpoint.client_auth().client_id(), "my-cli");
    let anonymous = tower_alf::TokenEndpoint::builder("https://idp.example/token")
        .client_auth(tower_alf::ClientAuth::anonymous())
        .build()
        .expect("an assertion grant's endpoint");
    assert_eq!(anonymous.client_auth().client_id(), "");
}
