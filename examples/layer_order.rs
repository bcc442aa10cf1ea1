//! The layer order the README recommends, compiled and run: a timeout
//! outside `BearerAuthLayer` (so it bounds the token wait too), a retry
//! inside it (so retries reuse the token), over a hyper-util client; the
//! resulting service kept in an axum state; and how to tell the stack's
//! timeout (tower's `Elapsed`) from a token endpoint's (`Error::is_timeout`).
//!
//! ```text
//! cargo run --example layer_order
//! ```
//!
//! The authorization servers, the upstream API and the gateway all run in
//! this process on loopback; the example calls the gateway three times,
//! prints what happened, and exits.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{
    extract::{Path, State},
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
use tower::{
    retry::{Policy, Retry, RetryLayer},
    timeout::{error::Elapsed, Timeout, TimeoutLayer},
    BoxError, ServiceBuilder, ServiceExt,
};
use tower_alf::{
    grant::ClientCredentials, BearerAuth, BearerAuthLayer, ClientAuth, RetryPolicy, TokenEndpoint,
    TokenSource,
};

/// The HTTP client at the bottom of the stack.
type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// The whole stack, outermost first: what `ServiceBuilder` below builds.
type Upstream = Timeout<BearerAuth<Retry<RetryServerErrors, HttpClient>>>;

/// The axum state: the stack is `Clone` (each layer is, over a `Clone`
/// client), so every handler gets its own handle onto the same pool.
#[derive(Clone)]
struct Gateway {
    upstream: Upstream,
    upstream_url: String,
}

/// Retries a `5xx` answer or a failed connection, at most `left` more times.
///
/// `http::Request` is not `Clone`: `clone_request` rebuilds it from its
/// parts, which works because the body, `Full<Bytes>`, is `Clone`. The
/// retry sits below `BearerAuthLayer`, so the request it copies already
/// carries the token, and every attempt reuses it.
#[derive(Clone, Debug)]
struct RetryServerErrors {
    left: usize,
}

impl<Res, E> Policy<http::Request<Full<Bytes>>, http::Response<Res>, E> for RetryServerErrors {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _request: &mut http::Request<Full<Bytes>>,
        result: &mut Result<http::Response<Res>, E>,
    ) -> Option<Self::Future> {
        let failed = match result {
            Ok(response) => response.status().is_server_error(),
            Err(_) => true,
        };
        if failed && self.left > 0 {
            self.left -= 1;
            Some(std::future::ready(()))
        } else {
            None
        }
    }

    fn clone_request(
        &mut self,
        request: &http::Request<Full<Bytes>>,
    ) -> Option<http::Request<Full<Bytes>>> {
        let mut copy = http::Request::new(request.body().clone());
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.version_mut() = request.version();
        *copy.headers_mut() = request.headers().clone();
        Some(copy)
    }
}

/// The stack over `tokens`, with a 1 s bound on each call.
fn upstream(tokens: TokenSource) -> Upstream {
    ServiceBuilder::new()
        .layer(TimeoutLayer::new(Duration::from_secs(1))) // bounds the token wait as well
        .layer(BearerAuthLayer::new(tokens)) // sets the header, replays on 401
        .layer(RetryLayer::new(RetryServerErrors { left: 2 })) // retries reuse the token
        .service(Client::builder(TokioExecutor::new()).build_http())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let issued = Arc::new(AtomicUsize::new(0));
    let idp = serve(
        Router::new()
            .route("/token", post(issue))
            .route("/slow-token", post(slow_token))
            .with_state(Arc::clone(&issued)),
    )
    .await?;
    let calls = Arc::new(AtomicUsize::new(0));
    let api = serve(
        Router::new()
            .route("/api/{what}", get(upstream_api))
            .with_state(Arc::clone(&calls)),
    )
    .await?;

    // A healthy token endpoint, and one that answers after 2 s, bounded
    // by the endpoint's own 300 ms timeout.
    let tokens = TokenSource::new(ClientCredentials::new(
        TokenEndpoint::builder(format!("http://{idp}/token"))
            .client_auth(ClientAuth::basic("gateway", "gateway-secret"))
            .build()?,
    ));
    let slow_tokens = TokenSource::new(ClientCredentials::new(
        TokenEndpoint::builder(format!("http://{idp}/slow-token"))
            .client_auth(ClientAuth::basic("gateway", "gateway-secret"))
            .timeout(Duration::from_millis(300))
            .retry(RetryPolicy::none())
            .build()?,
    ));
    let upstream_url = format!("http://{api}/api");
    let gateway = Router::new()
        .route("/{what}", get(forward))
        .with_state(Gateway {
            upstream: upstream(tokens),
            upstream_url: upstream_url.clone(),
        })
        .route(
            "/slow-token/{what}",
            get(forward).with_state(Gateway {
                upstream: upstream(slow_tokens),
                upstream_url,
            }),
        );
    let gateway = serve(gateway).await?;

    let caller = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    for (path, what) in [
        (
            "/flaky",
            "the API answers 503 twice; the retry layer tries again with the same token",
        ),
        ("/hang", "the API hangs; the stack's timeout ends the call"),
        (
            "/slow-token/flaky",
            "the token endpoint is slow; its own timeout ends the fetch",
        ),
    ] {
        println!(
            "{what}:\n  GET {path} -> {}",
            get_text(&caller, gateway, path).await?
        );
    }
    println!(
        "\n{} token request(s) answered, {} upstream calls",
        issued.load(Ordering::SeqCst),
        calls.load(Ordering::SeqCst)
    );
    Ok(())
}

// ===== the gateway's handler =====

/// Calls the upstream through the stack and says how it went.
async fn forward(State(gateway): State<Gateway>, Path(what): Path<String>) -> Response {
    let url = format!("{}/{what}", gateway.upstream_url);
    let request = match http::Request::get(url).body(Full::default()) {
        Ok(request) => request,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    match gateway.upstream.oneshot(request).await {
        Ok(response) => {
            let status = response.status();
            match response.into_body().collect().await {
                Ok(body) => (status, body.to_bytes()).into_response(),
                Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
            }
        }
        Err(error) => {
            let (status, why) = classify(&*error);
            (status, why).into_response()
        }
    }
}

/// Every layer's error is a `BoxError`: downcast to tell them apart.
fn classify(error: &(dyn std::error::Error + Send + Sync + 'static)) -> (StatusCode, String) {
    if error.is::<Elapsed>() {
        // The TimeoutLayer on top: the whole call (token wait included)
        // took longer than its 1 s.
        (
            StatusCode::GATEWAY_TIMEOUT,
            "timeout: the call took over 1 s".to_owned(),
        )
    } else if let Some(alf) = error.downcast_ref::<tower_alf::Error>() {
        if alf.is_timeout() {
            // The token endpoint did not answer within its own timeout.
            (StatusCode::SERVICE_UNAVAILABLE, format!("no token: {alf}"))
        } else {
            (StatusCode::BAD_GATEWAY, format!("no token: {alf}"))
        }
    } else {
        (StatusCode::BAD_GATEWAY, format!("upstream: {error}"))
    }
}

// ===== the authorization server and the upstream API =====

/// `POST /token`: issues `tok-1`, `tok-2`, … for an hour.
async fn issue(State(issued): State<Arc<AtomicUsize>>) -> Json<Value> {
    let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
    Json(json!({ "access_token": format!("tok-{n}"), "token_type": "Bearer", "expires_in": 3600 }))
}

/// `POST /slow-token`: the same, after 2 s.
async fn slow_token(state: State<Arc<AtomicUsize>>) -> Json<Value> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    issue(state).await
}

/// `GET /api/flaky`: 503 twice, then 200 with the token it got.
/// `GET /api/hang`: answers after 5 s.
async fn upstream_api(
    State(calls): State<Arc<AtomicUsize>>,
    Path(what): Path<String>,
    headers: HeaderMap,
) -> Response {
    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
    let token = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("none")
        .to_owned();
    match what.as_str() {
        "flaky" if n <= 2 => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("busy ({token})")).into_response()
        }
        "hang" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            StatusCode::OK.into_response()
        }
        _ => (StatusCode::OK, format!("ok, call {n}, {token}")).into_response(),
    }
}

// ===== plumbing =====

async fn serve(app: Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// `GET path` on the gateway: its status and body, as one line.
async fn get_text(
    caller: &HttpClient,
    gateway: SocketAddr,
    path: &str,
) -> Result<String, BoxError> {
    let request = http::Request::get(format!("http://{gateway}{path}")).body(Full::default())?;
    let response = caller.request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(format!("{status} {}", String::from_utf8_lossy(&body)))
}
