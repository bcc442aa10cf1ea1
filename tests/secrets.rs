//! Secrets (the client secret, access tokens, refresh tokens) never show in
//! `Debug` or `Display` output, in errors built from what a token endpoint
//! sent, or in tracing output at `TRACE`.
//!
//! Real sockets throughout. The full-run tracing tests use paused time with
//! the clock held (see `support`) to reach a stale token; they run on a
//! current-thread runtime so that the spawned fetch task logs to the
//! capturing subscriber of the test's thread.

mod support;

use std::time::Duration;

use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde_json::json;
use tower::ServiceBuilder;
use tower_alf::{
    grant::ClientCredentials, BearerAuthLayer, ClientAuth, TokenEndpoint, TokenSource,
};

use support::{get, get_ok, send, Reply, ResourceServer, TokenServer};

const SECRET: &str = "cs-Secret-9f7Q";
const ACCESS: &str = "at-Zq9x-";
const REFRESH: &str = "rt-Wx7k-";

/// Fails if `text` shows any of `secrets`.
fn assert_hides(text: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(!secret.is_empty());
        assert!(
            !text.contains(secret.as_str()),
            "{secret:?} appears in:\n{text}"
        );
    }
}

/// The client secret, and the first `n` access and refresh tokens.
fn secrets(n: usize) -> Vec<String> {
    let mut secrets = vec![SECRET.to_owned()];
    for i in 1..=n {
        secrets.push(format!("{ACCESS}{i}"));
        secrets.push(format!("{REFRESH}{i}"));
    }
    secrets
}

async fn token_server() -> TokenServer {
    let tokens = TokenServer::start().await;
    tokens.token_prefix(ACCESS);
    tokens.refresh_tokens(REFRESH);
    tokens
}

#[tokio::test]
async fn debug_output_never_shows_secrets() {
    let tokens = token_server().await;
    let api = ResourceServer::start().await;
    let basic = ClientAuth::basic("id", SECRET);
    let post = ClientAuth::post("id", SECRET);
    let builder = support::endpoint_builder_with(&tokens, basic.clone());
    let builder_debug = format!("{builder:?}");
    let endpoint = builder.build().expect("a valid endpoint");
    let grant = ClientCredentials::new(endpoint.clone()).param("audience", "aud");
    let source = TokenSource::builder(grant.clone()).jitter(0.0).build();
    let layer = BearerAuthLayer::new(source.clone());
    let client = ServiceBuilder::new()
        .layer(layer.clone())
        .service(support::hyper_client::<http_body_util::Full<bytes::Bytes>>());
    assert_eq!(
        get_ok(&client, &api.url("/api")).await.token(),
        format!("{ACCESS}1")
    );
    let token = source.cached().expect("a cached token");
    assert_eq!(
        token.refresh_token().map(|r| r.secret().to_owned()),
        Some(format!("{REFRESH}1"))
    );

    let outputs = [
        format!("{basic:?}"),
        format!("{post:?}"),
        builder_debug,
        format!("{endpoint:?}"),
        format!("{grant:?}"),
        format!("{source:?}"),
        format!("{source:#?}"),
        format!("{token:?}"),
        format!("{token:#?}"),
        format!("{:?} {}", token.access_token(), token.access_token()),
        format!("{:?}", token.refresh_token()),
        format!("{:?}", token.header_value()),
        format!("{layer:?}"),
        format!("{client:?}"),
    ];
    for output in &outputs {
        assert_hides(output, &secrets(1));
    }
    assert!(outputs[0].contains("id"), "the client id is shown");
}

#[tokio::test]
async fn errors_from_answers_that_echo_tokens_never_show_them() {
    let leaked = [
        "at-LEAK-1",
        "rt-LEAK-1",
        "at-LEAK-2",
        "at-LEAK-3",
        "at-LEAK-4",
        "rt-LEAK-4",
        "at-LEAK-5",
        "rt-LEAK-5",
        "at-LEAK-6",
    ];
    let tokens = TokenServer::start().await;
    tokens.script([
        // expires_in is not a number
        Reply::json(
            200,
            json!({"access_token": "at-LEAK-1", "refresh_token": "rt-LEAK-1", "expires_in": "soon"}),
        ),
        // a token type this crate cannot send
        Reply::json(200, json!({"access_token": "at-LEAK-2", "token_type": "mac"})),
        // cut-off JSON
        Reply::raw(200, "application/json", r#"{"access_token":"at-LEAK-3","expi"#),
        // an error status that echoes tokens, nested too
        Reply::json(
            400,
            json!({"error": "invalid_request", "access_token": "at-LEAK-4",
                   "details": {"refresh_token": "rt-LEAK-4"}}),
        ),
        // a form-encoded body
        Reply::raw(
            500,
            "application/x-www-form-urlencoded",
            "access_token=at-LEAK-5&refresh_token=rt-LEAK-5",
        ),
        // a token that cannot go in a header
        Reply::json(200, json!({"access_token": "at-LEAK-6\nX-Injected: 1"})),
    ]);
    let endpoint = support::endpoint_builder_with(&tokens, ClientAuth::basic("id", SECRET))
        .build()
        .expect("a valid endpoint");
    let source = support::source_from(endpoint);

    let mut secrets: Vec<String> = leaked.iter().map(|s| (*s).to_owned()).collect();
    secrets.push(SECRET.to_owned());
    for _ in 0..6 {
        let error = source.token().await.expect_err("a malformed answer");
        assert!(error.is_invalid_response() || error.is_status(), "{error}");
        let shown = format!("{error:?}\n{error:#?}\n{error}\n{:?}", error.body_excerpt());
        assert_hides(&shown, &secrets);
    }
    assert_eq!(tokens.requests(), 6);
}

#[tokio::test]
async fn errors_from_an_endpoint_echoing_the_request_never_show_the_basic_credentials() {
    let credentials = STANDARD.encode(format!("id:{SECRET}"));
    let tokens = TokenServer::start_with(Reply::json(
        200,
        json!({
            "form": {"grant_type": "client_credentials"},
            "headers": {
                "Accept": "application/json",
                "Authorization": format!("Basic {credentials}"),
            },
            "url": "https://echo.example/post",
        }),
    ))
    .await;
    let endpoint = support::endpoint_builder_with(&tokens, ClientAuth::basic("id", SECRET))
        .build()
        .expect("a valid endpoint");
    let error = support::source_from(endpoint)
        .token()
        .await
        .expect_err("no access_token");
    assert!(error.is_invalid_response());
    let shown = format!("{error:?}\n{error}\n{:?}", error.body_excerpt());
    assert_hides(&shown, &[SECRET.to_owned(), credentials]);
}

/// Fetch, stale background refresh, 401 and replay, then a failed refresh,
/// all under a capturing subscriber; returns what it wrote.
async fn full_run(auth: ClientAuth) -> String {
    let (captured, _subscriber) = support::capture_tracing();
    let _clock = support::hold_clock();
    let tokens = token_server().await;
    let api = ResourceServer::start().await;
    let endpoint = support::endpoint_builder_with(&tokens, auth)
        .build()
        .expect("a valid endpoint");
    // Two rejections follow each other below: no throttle between them.
    let source =
        tower_alf::TokenSource::builder(tower_alf::grant::ClientCredentials::new(endpoint))
            .jitter(0.0)
            .rejection_interval(Duration::ZERO)
            .build();
    let client = support::client(&source);

    // First use.
    assert_eq!(
        get_ok(&client, &api.url("/api")).await.token(),
        format!("{ACCESS}1")
    );
    // Stale: served while one background refresh runs.
    tokio::time::advance(Duration::from_secs(3301)).await;
    assert_eq!(
        get_ok(&client, &api.url("/api")).await.token(),
        format!("{ACCESS}1")
    );
    support::eventually("the background refresh", || {
        source
            .cached()
            .is_some_and(|t| t.access_token().secret() == format!("{ACCESS}2"))
    })
    .await;
    // 401: refresh and replay.
    api.reject(&format!("{ACCESS}2"));
    assert_eq!(
        get_ok(&client, &api.url("/api")).await.token(),
        format!("{ACCESS}3")
    );
    // A failed refresh after a 401.
    tokens.always(Reply::json(
        401,
        json!({"error": "invalid_client", "error_description": "unknown client"}),
    ));
    api.reject(&format!("{ACCESS}3"));
    let error = send(&client, get(&api.url("/api")))
        .await
        .expect_err("the refresh fails");
    assert!(support::alf_error(&error).is_oauth());
    assert_eq!(tokens.requests(), 4);

    let text = captured.text();
    for expected in ["token fetched", "replaying", "token fetch failed", "stale"] {
        assert!(text.contains(expected), "no {expected:?} in:\n{text}");
    }
    text
}

#[tokio::test(start_paused = true)]
async fn tracing_output_of_a_full_run_with_client_secret_basic_never_shows_secrets() {
    let text = full_run(ClientAuth::basic("id", SECRET)).await;
    let mut secrets = secrets(3);
    secrets.push(STANDARD.encode(format!("id:{SECRET}")));
    assert_hides(&text, &secrets);
}

#[tokio::test(start_paused = true)]
async fn tracing_output_of_a_full_run_with_client_secret_post_never_shows_secrets() {
    let text = full_run(ClientAuth::post("id", SECRET)).await;
    assert_hides(&text, &secrets(3));
}

#[tokio::test]
async fn the_token_endpoint_refuses_plain_http_to_other_hosts() {
    let error = TokenEndpoint::builder("http://idp.example/token")
        .client_auth(ClientAuth::basic("id", SECRET))
        .build()
        .expect_err("credentials would cross the network in clear");
    assert!(error.is_config());
    assert_hides(&format!("{error:?} {error}"), &[SECRET.to_owned()]);
}
