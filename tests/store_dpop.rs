//! DPoP tokens through a real Redis shared by two instances: a token stays
//! sender-constrained through the store. A loopback token endpoint binds
//! each token to the key of the proof it was requested with; a loopback
//! resource server accepts a token only with `Authorization: DPoP` and a
//! valid proof of that key for that token.
#![cfg(all(feature = "redis", feature = "dpop", feature = "rustls"))]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
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
use http_body_util::Full;
use redis::AsyncCommands;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tower::{ServiceBuilder, ServiceExt};
use tower_alf::{
    dpop::DPoPKey,
    grant::ClientCredentials,
    store::{CacheKey, RedisStore, StoreGrant, StoredToken},
    BearerAuthLayer, ClientAuth, RetryPolicy, Token, TokenEndpoint, TokenSource,
};

const REDIS: &str = "redis://127.0.0.1:6379/";

/// One resource request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    authorization: String,
    /// The thumbprint of a proof that verified for this request and token.
    proof_jkt: Option<String>,
    status: u16,
}

#[derive(Default)]
struct Server {
    base: String,
    /// Issued token → the thumbprint it is bound to.
    tokens: Mutex<HashMap<String, String>>,
    token_requests: Mutex<usize>,
    seen: Mutex<Vec<Seen>>,
}

/// A unique key namespace for this test run.
fn namespace(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("alf-test:dpop-{test}:{}:{nanos}", std::process::id())
}

#[path = "recording_endpoint/jws.rs"]
mod jws;

/// Verifies a proof's signature with its embedded JWK; its claims and the
/// JWK's RFC 7638 thumbprint.
fn verify(proof: &str) -> Option<(Map<String, Value>, String)> {
    let header = jws::decode_header(proof).ok()?;
    if header.typ.as_deref() != Some("dpop+jwt") {
        return None;
    }
    let jwk = header.jwk?;
    let (_, claims) = jws::verify(proof, jws::Key::Jwk(&jwk)).ok()?;
    let raw = URL_SAFE_NO_PAD.decode(proof.split('.').next()?).ok()?;
    let raw: Value = serde_json::from_slice(&raw).ok()?;
    let jwk = &raw["jwk"];
    let canonical = match jwk["kty"].as_str()? {
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["crv"].as_str()?,
            jwk["x"].as_str()?,
            jwk["y"].as_str()?
        ),
        "RSA" => format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            jwk["e"].as_str()?,
            jwk["n"].as_str()?
        ),
        _ => return None,
    };
    Some((
        claims,
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())),
    ))
}

async fn token(State(server): State<Arc<Server>>, headers: HeaderMap) -> Response {
    let proof = headers.get("dpop").and_then(|v| v.to_str().ok());
    let Some((claims, jkt)) = proof.and_then(verify) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "invalid_dpop_proof" })),
        )
            .into_response();
    };
    assert_eq!(claims["htm"], "POST");
    let mut n = server.token_requests.lock().unwrap();
    *n += 1;
    let access_token = format!("dpop-tok-{n}-{}", fastrand::u32(..));
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
) -> StatusCode {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let token = authorization.strip_prefix("DPoP ");
    let proof_jkt = token.and_then(|token| {
        let (claims, jkt) = verify(headers.get("dpop")?.to_str().ok()?)?;
        let ath = URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
        let valid = claims["htm"] == method.as_str()
            && claims["htu"] == format!("{}{}", server.base, uri.path())
            && claims.get("ath").and_then(Value::as_str) == Some(&ath);
        valid.then_some(jkt)
    });
    let bound_to = token.and_then(|t| server.tokens.lock().unwrap().get(t).cloned());
    let status = if proof_jkt.is_some() && proof_jkt == bound_to {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    };
    server.seen.lock().unwrap().push(Seen {
        authorization,
        proof_jkt,
        status: status.as_u16(),
    });
    status
}

async fn start() -> Arc<Server> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = Arc::new(Server {
        base: format!("http://{}", listener.local_addr().unwrap()),
        ..Server::default()
    });
    let app = Router::new()
        .route("/token", post(token))
        .route("/api", any(api))
        .with_state(server.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    server
}

fn grant(server: &Server, key: &DPoPKey) -> ClientCredentials {
    let endpoint = TokenEndpoint::builder(format!("{}/token", server.base))
        .client_auth(ClientAuth::basic("client", "secret"))
        .retry(RetryPolicy::none())
        .dpop(key.clone())
        .build()
        .unwrap();
    ClientCredentials::new(endpoint)
}

/// One instance: its own Redis connection, as another process would have.
fn instance(grant: ClientCredentials, key: CacheKey, dpop: Option<&DPoPKey>) -> TokenSource {
    let mut stored = StoreGrant::new(grant, RedisStore::new(REDIS).unwrap(), key);
    if let Some(dpop) = dpop {
        stored = stored.dpop(dpop.clone());
    }
    TokenSource::new(stored)
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// Sends `GET /api` with `tokens`; the status.
async fn call(server: &Server, tokens: &TokenSource) -> u16 {
    let client: Client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let service = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(tokens.clone()).allow_insecure_http(true))
        .service(client);
    let request = http::Request::get(format!("{}/api", server.base))
        .body(Full::default())
        .unwrap();
    service.oneshot(request).await.unwrap().status().as_u16()
}

fn last_seen(server: &Server) -> Seen {
    server.seen.lock().unwrap().last().cloned().unwrap()
}

#[tokio::test]
async fn a_second_instance_sends_the_shared_dpop_token_with_a_proof() {
    let server = start().await;
    let dpop = DPoPKey::generate().unwrap();
    let grant = grant(&server, &dpop);
    let key = grant.cache_key().namespace(namespace("shared")).build();
    let a = instance(grant.clone(), key.clone(), Some(&dpop));
    let b = instance(grant, key.clone(), Some(&dpop));

    assert_eq!(call(&server, &a).await, 200);
    let first = last_seen(&server);
    assert_eq!(call(&server, &b).await, 200);
    let second = last_seen(&server);
    assert_eq!(
        *server.token_requests.lock().unwrap(),
        1,
        "b took a's token"
    );
    assert_eq!(second.authorization, first.authorization, "the same token");
    assert!(second.authorization.starts_with("DPoP "), "{second:?}");
    assert_eq!(second.proof_jkt.as_deref(), Some(dpop.thumbprint()));

    // The value in Redis records the type and the key's thumbprint.
    let mut raw = redis::Client::open(REDIS)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("a Redis answers on 127.0.0.1:6379");
    let value: Vec<u8> = raw.get(key.as_str()).await.unwrap();
    let text = String::from_utf8(value).unwrap();
    assert!(text.contains(r#""tt":"DPoP""#), "{text}");
    assert!(text.contains(dpop.thumbprint()), "{text}");
    let _: () = raw.del(key.as_str()).await.unwrap();
}

#[tokio::test]
async fn a_dpop_token_is_never_taken_from_redis_without_its_key() {
    let server = start().await;
    let (one, two) = (DPoPKey::generate().unwrap(), DPoPKey::generate().unwrap());
    // One key by hand for all three, so each meets the others' tokens.
    let key = CacheKey::builder(format!("{}/token", server.base), "client_credentials")
        .namespace(namespace("other-key"))
        .build();
    let a = instance(grant(&server, &one), key.clone(), Some(&one));
    assert_eq!(call(&server, &a).await, 200);
    let a_seen = last_seen(&server);

    // Another key: the stored token is bound to `one`; b fetches its own.
    let b = instance(grant(&server, &two), key.clone(), Some(&two));
    assert_eq!(call(&server, &b).await, 200);
    let b_seen = last_seen(&server);
    assert_eq!(*server.token_requests.lock().unwrap(), 2);
    assert_ne!(b_seen.authorization, a_seen.authorization);
    assert!(b_seen.authorization.starts_with("DPoP "));
    assert_eq!(b_seen.proof_jkt.as_deref(), Some(two.thumbprint()));

    // No key given to the store grant: a stored DPoP token is a miss.
    let c = instance(grant(&server, &one), key.clone(), None);
    assert_eq!(call(&server, &c).await, 200);
    let c_seen = last_seen(&server);
    assert_eq!(*server.token_requests.lock().unwrap(), 3);
    assert_ne!(c_seen.authorization, b_seen.authorization);
    assert_eq!(c_seen.proof_jkt.as_deref(), Some(one.thumbprint()));

    let seen = server.seen.lock().unwrap().clone();
    assert!(seen.iter().all(|s| s.status == 200), "{seen:?}");
    assert!(seen.iter().all(|s| !s.authorization.starts_with("Bearer")));
}

#[tokio::test]
async fn a_first_format_value_is_never_sent_as_bearer_by_a_dpop_instance() {
    let server = start().await;
    let dpop = DPoPKey::generate().unwrap();
    let grant = grant(&server, &dpop);
    let key = grant.cache_key().namespace(namespace("v1")).build();
    // What the first format wrote for any token: no type, no thumbprint.
    let fingerprint = StoredToken::from_token(&Token::bearer("legacy").unwrap()).fingerprint();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let v1 = format!(
        r#"alf1:{fingerprint}:p:{{"v":1,"at":"legacy","iat":{now},"exp":{}}}"#,
        now + 3_600_000
    );
    let mut raw = redis::Client::open(REDIS)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("a Redis answers on 127.0.0.1:6379");
    let _: () = raw.set_ex(key.as_str(), v1, 60).await.unwrap();

    let a = instance(grant, key.clone(), Some(&dpop));
    assert_eq!(call(&server, &a).await, 200);
    let seen = last_seen(&server);
    assert!(!seen.authorization.contains("legacy"), "{seen:?}");
    assert_eq!(seen.proof_jkt.as_deref(), Some(dpop.thumbprint()));
    assert_eq!(*server.token_requests.lock().unwrap(), 1);
    let _: () = raw.del(key.as_str()).await.unwrap();
}
