//! An axum gateway that calls an OAuth-protected upstream API: every
//! handler sends its upstream request through one hyper-util client behind
//! `BearerAuthLayer`, kept in the app state with the one `TokenSource` they
//! all share. However many handlers run, at once or one after another, the
//! gateway asks the authorization server for one token.
//!
//! The `/me/orders` route calls the upstream on behalf of its caller: the
//! caller's own token is exchanged (RFC 8693 token exchange) for one the
//! upstream accepts, through `BearerAuthLayer::keyed_by_extension` over
//! `TokenSources::on_behalf_of`. Each caller's exchanged token is cached
//! under a fingerprint of the caller's token, never longer than the
//! caller's token lives, so a caller who calls again costs no exchange.
//!
//! ```text
//! cargo run --example axum_gateway
//! ```
//!
//! The authorization server, the upstream API and the gateway all run in
//! this process on loopback; the example calls the gateway a few times,
//! prints what happened, and exits.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use axum::{
    extract::{Form, Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use serde_json::{json, Value};
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_alf::{
    grant::{ClientCredentials, TokenExchange},
    keyed::{CallerToken, FromExtension, KeyedBearerAuth, TokenSources},
    BearerAuth, BearerAuthLayer, ClientAuth, TokenEndpoint, TokenSource,
};

/// What every gateway handler shares: the upstream client (behind the
/// layer) and the token source it takes its tokens from. Both are cheap
/// handles onto shared state, so cloning the state per request is free.
#[derive(Clone)]
struct Gateway {
    upstream: BearerAuth<Client<HttpConnector, Full<Bytes>>>,
    tokens: TokenSource,
    /// The upstream client on behalf of each caller: its key, the caller's
    /// token, goes in each request's extensions.
    on_behalf: KeyedBearerAuth<HttpClient, CallerToken, FromExtension<CallerToken>>,
    callers: TokenSources<CallerToken>,
    upstream_url: String,
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// What the authorization server has issued: client-credentials tokens and
/// token exchanges.
#[derive(Default)]
struct Issued {
    tokens: AtomicUsize,
    exchanges: AtomicUsize,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let issued = Arc::new(Issued::default());
    let idp = serve(
        Router::new()
            .route("/token", post(issue))
            .with_state(Arc::clone(&issued)),
    )
    .await?;
    let api = serve(Router::new().route("/api/{kind}/{id}", get(upstream_api))).await?;

    // One source for the whole gateway.
    let endpoint = TokenEndpoint::builder(format!("http://{idp}/token"))
        .client_auth(ClientAuth::basic("gateway", "gateway-secret"))
        .build()?;
    let tokens = TokenSource::new(ClientCredentials::new(endpoint.clone()).scope("api:read"));
    let upstream = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(tokens.clone()))
        .service(Client::builder(TokioExecutor::new()).build_http());
    // On behalf of each caller: one exchange per caller's token, cached.
    let callers = TokenSources::on_behalf_of(move |caller: &CallerToken| {
        let exchange =
            TokenExchange::new(endpoint.clone(), caller.subject()).audience("upstream-api");
        Ok(TokenSource::new(exchange))
    })
    .max_keys(10_000)
    .build();
    let on_behalf = ServiceBuilder::new()
        .layer(BearerAuthLayer::keyed_by_extension(callers.clone()))
        .service(Client::builder(TokioExecutor::new()).build_http());
    let state = Gateway {
        upstream,
        tokens,
        on_behalf,
        callers,
        upstream_url: format!("http://{api}/api"),
    };
    let gateway = Router::new()
        .route("/orders/{id}", get(order))
        .route("/me/orders", get(my_orders))
        .route("/customers/{id}", get(customer))
        .route("/stats", get(stats))
        .with_state(state);
    let gateway = serve(gateway).await?;
    println!("gateway on http://{gateway}, upstream on http://{api}, tokens from http://{idp}\n");

    // Some callers of the gateway, eight of them at once, then two more.
    let caller = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let paths: Vec<String> = (1..=4)
        .flat_map(|n| [format!("/orders/{n}"), format!("/customers/{n}")])
        .collect();
    let calls: Vec<_> = paths
        .iter()
        .map(|path| tokio::spawn(get_json(caller.clone(), gateway, path.clone())))
        .collect();
    for (path, call) in paths.iter().zip(calls) {
        println!("GET {path:<14} -> {}", call.await??);
    }
    for path in ["/orders/5", "/customers/5", "/stats"] {
        let answer = get_json(caller.clone(), gateway, path.to_owned()).await?;
        println!("GET {path:<14} -> {answer}");
    }
    println!(
        "\n10 handler calls, {} token request(s) to the authorization server\n",
        issued.tokens.load(Ordering::SeqCst)
    );

    // Callers with their own tokens, each calling twice.
    for caller in ["alice-token", "bob-token", "alice-token", "bob-token"] {
        let answer = get_json_as(caller.to_owned(), &caller_client(), gateway).await?;
        println!("GET /me/orders as {caller:<11} -> {answer}");
    }
    println!(
        "\n4 calls on behalf of 2 callers, {} token exchange(s)",
        issued.exchanges.load(Ordering::SeqCst)
    );
    Ok(())
}

// ===== the gateway's handlers =====

async fn order(State(gateway): State<Gateway>, Path(id): Path<u32>) -> Response {
    forward(&gateway, &format!("orders/{id}")).await
}

async fn customer(State(gateway): State<Gateway>, Path(id): Path<u32>) -> Response {
    forward(&gateway, &format!("customers/{id}")).await
}

async fn stats(State(gateway): State<Gateway>) -> Json<Value> {
    let stats = gateway.tokens.stats();
    let callers = gateway.callers.stats();
    Json(json!({
        "fetches": stats.fetches,
        "refreshes": stats.refreshes,
        "replays": stats.replays,
        "callers": callers.live_keys,
        "exchanges": callers.total.fetches,
    }))
}

/// `GET /me/orders`: the upstream's answer for this caller, fetched with a
/// token exchanged for the caller's own. The caller's token is never sent
/// upstream; it is the key of its exchanged token.
async fn my_orders(State(gateway): State<Gateway>, headers: HeaderMap) -> Response {
    let Some(caller) = CallerToken::from_headers(&headers) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let url = format!("{}/my-orders/1", gateway.upstream_url);
    let mut request = match http::Request::get(url).body(Full::default()) {
        Ok(request) => request,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    request.extensions_mut().insert(caller);
    match gateway.on_behalf.clone().oneshot(request).await {
        Ok(response) => {
            let status = response.status();
            match response.into_body().collect().await {
                Ok(body) => (status, body.to_bytes()).into_response(),
                Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
            }
        }
        // The exchange failed (or the caller's token has expired).
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// Calls the upstream API through the shared, authorized client.
async fn forward(gateway: &Gateway, path: &str) -> Response {
    let url = format!("{}/{path}", gateway.upstream_url);
    let request = match http::Request::get(url).body(Full::default()) {
        Ok(request) => request,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let response = match gateway.upstream.clone().oneshot(request).await {
        Ok(response) => response,
        // A token that could not be obtained, or the upstream unreachable.
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = response.status();
    match response.into_body().collect().await {
        Ok(body) => (status, body.to_bytes()).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

// ===== the authorization server and the upstream API =====

/// `POST /token`: issues `tok-1`, `tok-2`, … for an hour; for a token
/// exchange, `obo-1-for-<subject>`, `obo-2-for-<subject>`, ….
async fn issue(
    State(issued): State<Arc<Issued>>,
    Form(form): Form<HashMap<String, String>>,
) -> Json<Value> {
    let access_token = match form.get("subject_token") {
        Some(subject) => {
            let n = issued.exchanges.fetch_add(1, Ordering::SeqCst) + 1;
            let who = subject.trim_end_matches("-token");
            format!("obo-{n}-for-{who}")
        }
        None => format!("tok-{}", issued.tokens.fetch_add(1, Ordering::SeqCst) + 1),
    };
    Json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": 3600,
    }))
}

/// `GET /api/{kind}/{id}`: needs a bearer token, and says which it got.
async fn upstream_api(Path((kind, id)): Path<(String, u32)>, headers: HeaderMap) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match token {
        Some(token) => Json(json!({ "kind": kind, "id": id, "token": token })).into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

// ===== plumbing =====

async fn serve(app: Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

fn caller_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// `GET /me/orders` on the gateway as the caller holding `token`.
async fn get_json_as(
    token: String,
    caller: &Client<HttpConnector, Full<Bytes>>,
    gateway: SocketAddr,
) -> Result<String, BoxError> {
    let request = http::Request::get(format!("http://{gateway}/me/orders"))
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())?;
    let response = caller.request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(format!("{status} {}", String::from_utf8_lossy(&body)))
}

/// `GET path` on the gateway: its status and body, as one line.
async fn get_json(
    caller: Client<HttpConnector, Full<Bytes>>,
    gateway: SocketAddr,
    path: String,
) -> Result<String, BoxError> {
    let request = http::Request::get(format!("http://{gateway}{path}")).body(Full::default())?;
    let response = caller.request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(format!("{status} {}", String::from_utf8_lossy(&body)))
}
