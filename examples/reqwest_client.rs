//! A reqwest client with tokens from tower-alf, no setup needed: a token
//! endpoint and an API, both served in-process by axum on loopback ports.
//!
//! One reqwest client carries both the token requests
//! (`HttpClient::from_reqwest`) and the API calls (`BearerAuthMiddleware`).
//! The API revokes the first token after two calls; the next call is
//! answered 401, the token replaced, and the call replayed with its JSON
//! body, so the application sees a 200.
//!
//! ```text
//! cargo run --example reqwest_client --features reqwest
//! ```

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use axum::{
    extract::State,
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{any, post},
    Json, Router,
};
use reqwest_middleware::ClientBuilder;
use serde_json::{json, Value};
use tower_alf::{
    grant::ClientCredentials, reqwest::BearerAuthMiddleware, ClientAuth, HttpClient, TokenEndpoint,
    TokenSource,
};

#[derive(Default)]
struct Idp {
    issued: AtomicUsize,
}

async fn token(State(idp): State<Arc<Idp>>) -> Json<Value> {
    let n = idp.issued.fetch_add(1, Ordering::SeqCst) + 1;
    Json(
        json!({ "access_token": format!("token-{n}"), "token_type": "Bearer", "expires_in": 3600 }),
    )
}

#[derive(Default)]
struct Api {
    calls: AtomicUsize,
    revoked: Mutex<HashSet<String>>,
}

async fn orders(State(api): State<Arc<Api>>, headers: HeaderMap, body: String) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    if token.is_empty() || api.revoked.lock().unwrap().contains(&token) {
        let challenge = [(header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)];
        return (StatusCode::UNAUTHORIZED, challenge).into_response();
    }
    // The second accepted call is the last for this token: revoke it.
    if api.calls.fetch_add(1, Ordering::SeqCst) == 1 {
        api.revoked.lock().unwrap().insert(token.clone());
    }
    Json(json!({ "token": token, "received": body })).into_response()
}

async fn serve(router: Router) -> Result<String, std::io::Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(format!("http://{addr}"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let idp = Arc::new(Idp::default());
    let idp_url = serve(
        Router::new()
            .route("/token", post(token))
            .with_state(idp.clone()),
    )
    .await?;
    let api_url = serve(
        Router::new()
            .route("/orders", any(orders))
            .with_state(Arc::new(Api::default())),
    )
    .await?;

    // reqwest on rustls with the ring provider (reqwest's `rustls-no-provider`
    // feature): install ring before building a client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // One reqwest client: its pool, proxy and TLS settings serve both sides.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let endpoint = TokenEndpoint::builder(format!("{idp_url}/token"))
        .client_auth(ClientAuth::basic("example-client", "example-secret"))
        .http_client(HttpClient::from_reqwest(http.clone()))
        .build()?;
    let tokens = TokenSource::new(ClientCredentials::new(endpoint).scope("orders"));
    let client = ClientBuilder::new(http)
        .with(BearerAuthMiddleware::new(tokens.clone()))
        .build();

    for n in 1..=3 {
        let response = client
            .post(format!("{api_url}/orders"))
            .json(&json!({ "order": n }))
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        println!("call {n}: {status} {body}");
        assert_eq!(status, StatusCode::OK);
    }
    let stats = tokens.stats();
    println!(
        "token requests: {}, replays after a 401: {}",
        idp.issued.load(Ordering::SeqCst),
        stats.replays
    );
    assert_eq!((stats.fetches, stats.replays), (2, 1));
    Ok(())
}
