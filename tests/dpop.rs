//! DPoP (RFC 9449) over loopback: a token endpoint and a resource server that
//! demand DPoP, verify every proof with the JWK it embeds, issue nonces and
//! rotate them.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    extract::State,
    http::{HeaderMap, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::{any, post},
    Json, Router,
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tower::{ServiceBuilder, ServiceExt};
use tower_alf::{
    dpop::DPoPKey, grant::ClientCredentials, BearerAuthLayer, ClientAuth, RetryPolicy,
    TokenEndpoint, TokenSource,
};

#[path = "recording_endpoint/jws.rs"]
mod jws;

/// How the resource server treats nonces.
#[derive(Clone, Copy, PartialEq)]
enum Nonces {
    /// Requires the current nonce; sends a fresh one with every answer.
    Rotate,
    /// Answers every request with a nonce challenge and a new nonce.
    AlwaysChallenge,
}

/// One resource request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    scheme: String,
    token: String,
    claims: Map<String, Value>,
    status: u16,
}

struct Server {
    /// The authorization server's origin (`/token`).
    as_base: String,
    /// The resource server's origin (`/api`): another port, another origin.
    base: String,
    mode: Mutex<Nonces>,
    as_nonce: Mutex<String>,
    rs_nonce: Mutex<String>,
    counter: Mutex<u32>,
    jtis: Mutex<HashSet<String>>,
    /// Issued token → the thumbprint it is bound to; revoked ones removed.
    tokens: Mutex<HashMap<String, String>>,
    token_requests: Mutex<Vec<Map<String, Value>>>,
    token_statuses: Mutex<Vec<u16>>,
    seen: Mutex<Vec<Seen>>,
}

impl Server {
    fn next(&self, prefix: &str) -> String {
        let mut n = self.counter.lock().unwrap();
        *n += 1;
        format!("{prefix}-{n}")
    }
}

/// Verifies a proof: header, signature with the embedded JWK, a fresh
/// `jti`; the claims and the JWK thumbprint.
fn verify(server: &Server, proof: &str) -> Result<(Map<String, Value>, String), String> {
    let header = jws::decode_header(proof)?;
    if header.typ.as_deref() != Some("dpop+jwt") {
        return Err("typ".into());
    }
    let jwk = header.jwk.ok_or("no jwk")?;
    let (_, claims) =
        jws::verify(proof, jws::Key::Jwk(&jwk)).map_err(|e| format!("signature: {e}"))?;
    let raw = URL_SAFE_NO_PAD
        .decode(proof.split('.').next().unwrap())
        .unwrap();
    let raw: Value = serde_json::from_slice(&raw).unwrap();
    let jwk = &raw["jwk"];
    if jwk.get("d").is_some() {
        return Err("private key in the proof".into());
    }
    let canonical = match jwk["kty"].as_str() {
        Some("EC") => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["crv"].as_str().unwrap(),
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        ),
        Some("RSA") => format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            jwk["e"].as_str().unwrap(),
            jwk["n"].as_str().unwrap()
        ),
        other => return Err(format!("kty {other:?}")),
    };
    let jkt = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    for claim in ["jti", "htm", "htu", "iat"] {
        if !claims.contains_key(claim) {
            return Err(format!("no {claim}"));
        }
    }
    let jti = claims["jti"].as_str().unwrap().to_owned();
    if !server.jtis.lock().unwrap().insert(jti) {
        return Err("jti replayed".into());
    }
    Ok((claims, jkt))
}

fn with_nonce(status: StatusCode, nonce: &str, challenge: Option<&str>, body: Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert("dpop-nonce", nonce.parse().unwrap());
    if let Some(challenge) = challenge {
        response
            .headers_mut()
            .insert("www-authenticate", challenge.parse().unwrap());
    }
    response
}

async fn token(State(server): State<Arc<Server>>, headers: HeaderMap) -> Response {
    let answer = token_answer(&server, &headers);
    server
        .token_statuses
        .lock()
        .unwrap()
        .push(answer.status().as_u16());
    answer
}

fn token_answer(server: &Server, headers: &HeaderMap) -> Response {
    let bad =
        |error: &str| (StatusCode::BAD_REQUEST, Json(json!({ "error": error }))).into_response();
    let Some(proof) = headers.get("dpop").and_then(|v| v.to_str().ok()) else {
        return bad("invalid_dpop_proof");
    };
    let Ok((claims, jkt)) = verify(server, proof) else {
        return bad("invalid_dpop_proof");
    };
    server.token_requests.lock().unwrap().push(claims.clone());
    if claims["htm"] != "POST"
        || claims["htu"] != format!("{}/token", server.as_base)
        || claims.contains_key("ath")
    {
        return bad("invalid_dpop_proof");
    }
    let nonce = server.as_nonce.lock().unwrap().clone();
    if claims.get("nonce").and_then(Value::as_str) != Some(&nonce) {
        return with_nonce(
            StatusCode::BAD_REQUEST,
            &nonce,
            None,
            json!({ "error": "use_dpop_nonce", "error_description": "nonce required" }),
        );
    }
    let access_token = server.next("tok");
    server
        .tokens
        .lock()
        .unwrap()
        .insert(access_token.clone(), jkt);
    Json(json!({ "access_token": access_token, "token_type": "DPoP", "expires_in": 3600 }))
        .into_response()
}

async fn api(
    State(server): State<Arc<Server>>,
    method: Method,
    uri: http::Uri,
    headers: HeaderMap,
) -> Response {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (scheme, token) = authorization.split_once(' ').unwrap_or(("", ""));
    let proof = headers
        .get("dpop")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let verified = verify(&server, proof);
    let claims = verified
        .as_ref()
        .map(|(c, _)| c.clone())
        .unwrap_or_default();
    let answer = api_answer(&server, &method, uri.path(), scheme, token, verified);
    server.seen.lock().unwrap().push(Seen {
        scheme: scheme.to_owned(),
        token: token.to_owned(),
        claims,
        status: answer.status().as_u16(),
    });
    answer
}

fn api_answer(
    server: &Server,
    method: &Method,
    path: &str,
    scheme: &str,
    token: &str,
    verified: Result<(Map<String, Value>, String), String>,
) -> Response {
    let nonce = server.rs_nonce.lock().unwrap().clone();
    let invalid = |error: &str| {
        with_nonce(
            StatusCode::UNAUTHORIZED,
            &nonce,
            Some(&format!(
                r#"DPoP error="{error}", algs="ES256 RS256 PS256""#
            )),
            json!({}),
        )
    };
    if scheme != "DPoP" {
        return invalid("invalid_token");
    }
    let Ok((claims, jkt)) = verified else {
        return invalid("invalid_dpop_proof");
    };
    let ath = URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
    if claims["htm"] != method.as_str()
        || claims["htu"] != format!("{}{path}", server.base)
        || claims.get("ath").and_then(Value::as_str) != Some(&ath)
    {
        return invalid("invalid_dpop_proof");
    }
    if server.tokens.lock().unwrap().get(token) != Some(&jkt) {
        return invalid("invalid_token");
    }
    let mode = *server.mode.lock().unwrap();
    if mode == Nonces::AlwaysChallenge {
        let fresh = server.next("rs-nonce");
        *server.rs_nonce.lock().unwrap() = fresh.clone();
        return with_nonce(
            StatusCode::UNAUTHORIZED,
            &fresh,
            Some(r#"DPoP error="use_dpop_nonce""#),
            json!({}),
        );
    }
    if claims.get("nonce").and_then(Value::as_str) != Some(&nonce) {
        return with_nonce(
            StatusCode::UNAUTHORIZED,
            &nonce,
            Some(r#"DPoP error="use_dpop_nonce", error_description="nonce required""#),
            json!({}),
        );
    }
    // Rotate: the next request must use the nonce sent with this answer.
    let fresh = server.next("rs-nonce");
    *server.rs_nonce.lock().unwrap() = fresh.clone();
    with_nonce(StatusCode::OK, &fresh, None, json!({ "ok": true }))
}

async fn start(mode: Nonces) -> Arc<Server> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let as_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let as_addr: SocketAddr = as_listener.local_addr().unwrap();
    let server = Arc::new(Server {
        as_base: format!("http://{as_addr}"),
        base: format!("http://{addr}"),
        mode: Mutex::new(mode),
        as_nonce: Mutex::new("as-nonce-0".into()),
        rs_nonce: Mutex::new("rs-nonce-0".into()),
        counter: Mutex::new(0),
        jtis: Mutex::default(),
        tokens: Mutex::default(),
        token_requests: Mutex::default(),
        token_statuses: Mutex::default(),
        seen: Mutex::default(),
    });
    let app = Router::new()
        .route("/token", post(token))
        .route("/api", any(api))
        .route("/api/{*rest}", any(api))
        .with_state(server.clone());
    let as_app = app.clone();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    tokio::spawn(async move { axum::serve(as_listener, as_app).await.unwrap() });
    server
}

fn source(server: &Server, key: &DPoPKey) -> TokenSource {
    let endpoint = TokenEndpoint::builder(format!("{}/token", server.as_base))
        .client_auth(ClientAuth::basic("client", "secret"))
        .retry(RetryPolicy::none())
        .dpop(key.clone())
        .build()
        .unwrap();
    TokenSource::new(ClientCredentials::new(endpoint))
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

fn client() -> Client {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

async fn send(
    tokens: &TokenSource,
    method: Method,
    url: &str,
) -> http::Response<hyper::body::Incoming> {
    let service = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(tokens.clone()).allow_insecure_http(true))
        .service(client());
    let request = http::Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    service.oneshot(request).await.unwrap()
}

#[tokio::test]
async fn dpop_tokens_are_fetched_and_sent_with_proofs_never_as_bearer() {
    let server = start(Nonces::Rotate).await;
    let key = DPoPKey::generate().unwrap();
    let tokens = source(&server, &key);

    // The token endpoint asks for a nonce once; the resource server too.
    let url = format!("{}/api/orders?page=2", server.base);
    let response = send(&tokens, Method::GET, &url).await;
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"ok":true}"#);

    assert_eq!(*server.token_statuses.lock().unwrap(), [400, 200]);
    let token_proofs = server.token_requests.lock().unwrap().clone();
    assert!(token_proofs[0].get("nonce").is_none());
    assert_eq!(token_proofs[1]["nonce"], "as-nonce-0");
    let stats = tokens.stats();
    assert_eq!(stats.fetches, 1);
    assert_eq!(
        stats.replays, 1,
        "exactly one replay on the nonce challenge"
    );

    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].status, 401);
    assert_eq!(seen[1].status, 200);
    assert!(seen[0].claims.get("nonce").is_none());
    assert_eq!(seen[1].claims["nonce"], "rs-nonce-0");
    assert_eq!(seen[1].claims["htu"], format!("{}/api/orders", server.base));
    for s in &seen {
        assert_eq!(s.scheme, "DPoP", "no bearer fallback");
        assert_eq!(s.token, seen[0].token, "the same token on a nonce replay");
        let ath = URL_SAFE_NO_PAD.encode(Sha256::digest(s.token.as_bytes()));
        assert_eq!(s.claims["ath"], ath.as_str());
    }
    assert_ne!(seen[0].claims["jti"], seen[1].claims["jti"]);

    // The rotated nonce came with the 200: the next request uses it, no challenge.
    let response = send(&tokens, Method::POST, &format!("{}/api", server.base)).await;
    assert_eq!(response.status(), 200);
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].claims["htm"], "POST");
    // `tok-1` took the first number, the nonce rotated with the 200 the second.
    assert_eq!(seen[2].claims["nonce"], "rs-nonce-2");
    assert_eq!(tokens.stats().replays, 1);

    // A nonce rotated behind the client's back: one challenge, one replay.
    *server.rs_nonce.lock().unwrap() = "rotated-silently".into();
    let response = send(&tokens, Method::GET, &format!("{}/api", server.base)).await;
    assert_eq!(response.status(), 200);
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[3].status, 401);
    assert_eq!(seen[4].claims["nonce"], "rotated-silently");
    assert_eq!(tokens.stats().replays, 2);
    assert_eq!(
        tokens.stats().fetches,
        1,
        "a nonce challenge does not refresh"
    );
    assert!(seen.iter().all(|s| s.scheme == "DPoP"));
}

#[tokio::test]
async fn a_second_nonce_challenge_is_returned_not_replayed() {
    let server = start(Nonces::AlwaysChallenge).await;
    let key = DPoPKey::generate().unwrap();
    let tokens = source(&server, &key);
    let response = send(&tokens, Method::GET, &format!("{}/api", server.base)).await;
    assert_eq!(response.status(), 401);
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "exactly one replay");
    assert_eq!(seen[1].claims["nonce"], "rs-nonce-2");
    assert_eq!(tokens.stats().replays, 1);
    assert_eq!(tokens.stats().fetches, 1);
}

#[tokio::test]
async fn invalid_token_refreshes_and_replays_with_a_proof_for_the_new_token() {
    let server = start(Nonces::Rotate).await;
    let key = DPoPKey::generate().unwrap();
    let tokens = source(&server, &key);
    let url = format!("{}/api", server.base);
    assert_eq!(send(&tokens, Method::GET, &url).await.status(), 200);
    server.tokens.lock().unwrap().clear();
    let response = send(&tokens, Method::GET, &url).await;
    assert_eq!(response.status(), 200);
    let seen = server.seen.lock().unwrap().clone();
    let (rejected, replayed) = (&seen[seen.len() - 2], &seen[seen.len() - 1]);
    assert_eq!(rejected.status, 401);
    assert_ne!(rejected.token, replayed.token);
    let ath = URL_SAFE_NO_PAD.encode(Sha256::digest(replayed.token.as_bytes()));
    assert_eq!(replayed.claims["ath"], ath.as_str());
    assert_eq!(tokens.stats().fetches, 2);
}

#[tokio::test]
async fn a_token_bound_to_another_key_is_refused_by_the_server() {
    let server = start(Nonces::Rotate).await;
    let tokens = source(&server, &DPoPKey::generate().unwrap());
    let token = tokens.token().await.unwrap();
    assert_eq!(token.token_type(), tower_alf::TokenType::DPoP);
    assert_eq!(
        token
            .header_value()
            .to_str()
            .unwrap()
            .split_once(' ')
            .unwrap()
            .0,
        "DPoP"
    );
    // The same server, another key: the cache key differs too.
    let other = DPoPKey::generate().unwrap();
    assert_ne!(other.thumbprint(), token.dpop_thumbprint().unwrap());
    let endpoint = |key: &DPoPKey| {
        TokenEndpoint::builder(format!("{}/token", server.as_base))
            .client_auth(ClientAuth::basic("client", "secret"))
            .dpop(key.clone())
            .build()
            .unwrap()
    };
    let a = ClientCredentials::new(endpoint(&other)).cache_key().build();
    let b = ClientCredentials::new(endpoint(&DPoPKey::generate().unwrap()))
        .cache_key()
        .build();
    assert_ne!(a.as_str(), b.as_str());
}

#[tokio::test]
async fn dpop_token_type_is_refused_without_a_key() {
    let server = start(Nonces::Rotate).await;
    // A server that answers DPoP to a client that did not ask: refused.
    let fake = tower_alf::HttpClient::new(tower::service_fn(
        |_req: http::Request<Full<Bytes>>| async {
            let body = r#"{"access_token":"t","token_type":"DPoP","expires_in":60}"#;
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(body))))
        },
    ));
    let endpoint = TokenEndpoint::builder(format!("{}/token", server.as_base))
        .client_auth(ClientAuth::basic("client", "secret"))
        .http_client(fake)
        .build()
        .unwrap();
    let error = TokenSource::new(ClientCredentials::new(endpoint))
        .token()
        .await
        .unwrap_err();
    assert!(error.is_invalid_response(), "{error}");
}

/// The same contract through reqwest: proofs on every request, a nonce
/// challenge replayed with the same token, a revoked token refreshed and
/// the request replayed with a proof for the new one.
#[cfg(feature = "reqwest")]
#[tokio::test]
async fn over_reqwest_proofs_nonces_and_refreshes_follow_the_layers_contract() {
    let server = start(Nonces::Rotate).await;
    let key = DPoPKey::generate().unwrap();
    let tokens = source(&server, &key);
    // The tests' reqwest has rustls without a provider: ring, as an
    // application on ring installs it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(tower_alf::reqwest::BearerAuthMiddleware::new(
            tokens.clone(),
        ))
        .build();
    let url = format!("{}/api/orders?page=2", server.base);

    // The resource server asks for its nonce once: one replay, same token.
    let response = client.post(&url).body("{}").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!((seen[0].status, seen[1].status), (401, 200));
    assert_eq!(
        seen[0].token, seen[1].token,
        "the same token on a nonce replay"
    );
    assert_eq!(seen[1].claims["nonce"], "rs-nonce-0");
    assert_eq!(seen[1].claims["htm"], "POST");
    assert_eq!(seen[1].claims["htu"], format!("{}/api/orders", server.base));
    assert_ne!(seen[0].claims["jti"], seen[1].claims["jti"]);
    assert_eq!((tokens.stats().fetches, tokens.stats().replays), (1, 1));

    // Revoked: refreshed, and replayed with a proof bound to the new token.
    server.tokens.lock().unwrap().clear();
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = server.seen.lock().unwrap().clone();
    let (rejected, replayed) = (&seen[seen.len() - 2], &seen[seen.len() - 1]);
    assert_eq!(rejected.status, 401);
    assert_ne!(rejected.token, replayed.token);
    let ath = URL_SAFE_NO_PAD.encode(Sha256::digest(replayed.token.as_bytes()));
    assert_eq!(replayed.claims["ath"], ath.as_str());
    assert!(seen.iter().all(|s| s.scheme == "DPoP"), "never as Bearer");
    assert_eq!((tokens.stats().fetches, tokens.stats().replays), (2, 2));
}
