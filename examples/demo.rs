//! tower-alf in one screen: an authorization server and an API run in this
//! process on loopback, and a hyper-util client behind `BearerAuthLayer`
//! calls the API. Watch a token fetched, reused, refreshed in the
//! background, and a request replayed after a 401.
//!
//! ```text
//! cargo run --example demo
//! ```
//!
//! `cargo run --example demo -- serve [ADDR]` only runs the two servers (on
//! 127.0.0.1:4000 unless ADDR says otherwise), for trying the `alf` CLI.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
    routing::{get, post},
    Json, Router,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tower::{ServiceBuilder, ServiceExt};
use tower_alf::{
    grant::ClientCredentials, BearerAuthLayer, ClientAuth, TokenEndpoint, TokenSource,
};

/// Tokens from the demo authorization server live this long.
const LIFETIME_SECS: u64 = 4;

#[derive(Default)]
struct Issuer {
    issued: AtomicUsize,
    /// Tokens the API accepts; revoking one makes the API answer 401.
    valid: Mutex<Vec<String>>,
}

#[tokio::main]
async fn main() -> Result<(), tower::BoxError> {
    let issuer = Arc::new(Issuer::default());
    let app = Router::new()
        .route("/token", post(issue))
        .route("/orders", get(orders))
        .with_state(issuer.clone());

    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("serve") {
        let addr = args.next().unwrap_or_else(|| "127.0.0.1:4000".to_owned());
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!(
            "token endpoint: http://{addr}/token  (client id demo-client, secret demo-secret)"
        );
        println!("API:            http://{addr}/orders");
        println!("tokens live {LIFETIME_SECS} s; Ctrl-C to stop");
        axum::serve(listener, app).await?;
        return Ok(());
    }
    let token_url = serve(app).await?;

    let endpoint = TokenEndpoint::builder(format!("http://{token_url}/token"))
        .client_auth(ClientAuth::basic("demo-client", "demo-secret"))
        .build()?;
    let tokens = TokenSource::builder(ClientCredentials::new(endpoint).scope("orders:read"))
        .jitter(0.0)
        .build();
    let api = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(tokens.clone()))
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let url = format!("http://{token_url}/orders");

    println!(
        "tokens live {LIFETIME_SECS} s: stale after 3 s (lifetime / 4 left), expired after 3.6 s\n"
    );
    let call = |label: &'static str| {
        let (api, url, tokens) = (api.clone(), url.clone(), tokens.clone());
        async move {
            let started = tokio::time::Instant::now();
            let request = http::Request::get(&url).body(Full::default())?;
            let response = api.oneshot(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            let s = tokens.stats();
            println!(
                "{label:<44} {status} {:<10} {:>5.1} ms   fetches {} refreshes {} replays {}",
                String::from_utf8_lossy(&body),
                started.elapsed().as_secs_f64() * 1e3,
                s.fetches,
                s.refreshes,
                s.replays,
            );
            Ok::<_, tower::BoxError>(())
        }
    };

    call("1. first request: fetches a token").await?;
    call("2. second request: reuses it").await?;
    call("3. third request: reuses it").await?;

    tokio::time::sleep(Duration::from_millis(3100)).await;
    call("4. token stale: served now, refresh behind").await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    call("5. the refreshed token is in use").await?;

    let revoked = issuer.valid.lock().unwrap().pop();
    println!("\n   (the API revokes {})", revoked.unwrap_or_default());
    call("6. 401 → one refresh → request replayed").await?;

    let s = tokens.stats();
    println!(
        "\n6 requests, {} token requests ({} refreshes), {} replay; {} calls waited for a token \
         (the first request and the replay), none for a refresh",
        s.fetches, s.refreshes, s.replays, s.waits
    );
    Ok(())
}

/// `POST /token`: the client-credentials grant, checking the client.
async fn issue(State(issuer): State<Arc<Issuer>>, headers: HeaderMap) -> impl IntoResponse {
    // "demo-client:demo-secret", Base64 (RFC 6749 §2.3.1).
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some("Basic ZGVtby1jbGllbnQ6ZGVtby1zZWNyZXQ=")
    {
        let body = serde_json::json!({ "error": "invalid_client" });
        return (StatusCode::UNAUTHORIZED, Json(body));
    }
    let token = format!("tok-{}", issuer.issued.fetch_add(1, Ordering::SeqCst) + 1);
    issuer.valid.lock().unwrap().push(token.clone());
    let body = serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": LIFETIME_SECS,
    });
    (StatusCode::OK, Json(body))
}

/// `GET /orders`: answers with the token it was sent, or 401.
async fn orders(State(issuer): State<Arc<Issuer>>, headers: HeaderMap) -> impl IntoResponse {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if issuer.valid.lock().unwrap().iter().any(|t| t == token) {
        token.to_owned().into_response()
    } else {
        let challenge = [("www-authenticate", r#"Bearer error="invalid_token""#)];
        (StatusCode::UNAUTHORIZED, challenge).into_response()
    }
}

async fn serve(app: Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}
