//! An in-process token endpoint over loopback that records what it receives.

#![allow(dead_code, unreachable_pub)]

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde_json::Value;

/// One token request as the server saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    /// The form, in the order sent.
    pub form: Vec<(String, String)>,
}

impl Received {
    /// The value of a form field; panics when it is absent or repeated.
    pub fn field(&self, name: &str) -> &str {
        let values: Vec<_> = self.form.iter().filter(|(k, _)| k == name).collect();
        assert_eq!(values.len(), 1, "{name} in {:?}", self.names());
        &values[0].1
    }

    /// The form field names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.form.iter().map(|(k, _)| k.as_str()).collect()
    }

    /// The decoded `user:password` of a Basic header.
    pub fn basic(&self) -> Option<String> {
        let value = self.headers.get("authorization")?.to_str().ok()?;
        let encoded = value.strip_prefix("Basic ")?;
        String::from_utf8(STANDARD.decode(encoded).ok()?).ok()
    }
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    /// Answers to give, in order; a default token after they run out.
    queued: VecDeque<(StatusCode, Value)>,
    issued: usize,
}

/// The server handle.
#[derive(Clone, Default)]
pub struct TokenServer {
    inner: Arc<Mutex<Inner>>,
    pub addr: Option<SocketAddr>,
}

impl TokenServer {
    /// Starts a server on a free loopback port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Self {
            addr: Some(listener.local_addr().unwrap()),
            ..Self::default()
        };
        let app = Router::new()
            .route("/token", post(token))
            .route("/", post(token))
            .route("/.well-known/openid-configuration", get(metadata))
            .with_state(server.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        server
    }

    /// `http://127.0.0.1:PORT/token`
    pub fn token_url(&self) -> String {
        format!("http://{}/token", self.addr.unwrap())
    }

    /// `http://127.0.0.1:PORT`, whose discovery metadata lists
    /// `private_key_jwt` (ES256, RS256) and `client_secret_post`.
    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr.unwrap())
    }

    /// Queues one answer.
    pub fn answer(&self, status: u16, body: Value) {
        self.inner
            .lock()
            .unwrap()
            .queued
            .push_back((StatusCode::from_u16(status).unwrap(), body));
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// The last request received.
    pub fn last(&self) -> Received {
        self.received().pop().expect("a token request was received")
    }
}

async fn token(State(server): State<TokenServer>, headers: HeaderMap, body: String) -> Response {
    let form = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let mut inner = server.inner.lock().unwrap();
    inner.received.push(Received { headers, form });
    if let Some((status, body)) = inner.queued.pop_front() {
        return (status, Json(body)).into_response();
    }
    inner.issued += 1;
    Json(serde_json::json!({
        "access_token": format!("tok-{}", inner.issued),
        "token_type": "Bearer",
        "expires_in": 3600,
    }))
    .into_response()
}

/// OpenID Connect discovery metadata naming this server's token endpoint;
/// the auth methods are those of `issuer()`'s default.
async fn metadata(State(server): State<TokenServer>) -> Json<Value> {
    Json(serde_json::json!({
        "issuer": server.issuer(),
        "token_endpoint": server.token_url(),
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_post"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256"],
    }))
}

/// The public keys matching the private test keys in tests/fixtures.
pub mod keys {
    pub const RSA_PKCS1: &str = include_str!("../fixtures/rsa_pkcs1.pem");
    pub const RSA_PKCS8: &str = include_str!("../fixtures/rsa_pkcs8.pem");
    pub const RSA_PUBLIC: &str = include_str!("../fixtures/rsa_public.pem");
    pub const P256_SEC1: &str = include_str!("../fixtures/p256_sec1.pem");
    pub const P256_PKCS8: &str = include_str!("../fixtures/p256_pkcs8.pem");
    pub const P256_PUBLIC: &str = include_str!("../fixtures/p256_public.pem");
    pub const P384_SEC1: &str = include_str!("../fixtures/p384_sec1.pem");
    pub const P384_PUBLIC: &str = include_str!("../fixtures/p384_public.pem");
    pub const ED25519: &str = include_str!("../fixtures/ed25519_pkcs8.pem");
    pub const ED25519_PUBLIC: &str = include_str!("../fixtures/ed25519_public.pem");
}

pub mod jws;

pub use jws::{Header, Key};

/// Verifies a JWT's signature with a public PEM key and its `alg`, checks
/// `aud` and `exp`, and returns the header and claims.
pub fn verify(
    jwt: &str,
    alg: &str,
    public_pem: &str,
    audience: &str,
) -> (Header, serde_json::Map<String, Value>) {
    verify_with(jwt, alg, Key::Pem(public_pem), audience)
}

/// As [`verify`], with another key (a JWK, an HMAC secret): the header's
/// `alg` must be `alg`, the signature verify with `key`, `aud` be (or
/// contain) `audience`, `exp` be in the future (60 s leeway) and `iss`,
/// `sub` be present.
pub fn verify_with(
    jwt: &str,
    alg: &str,
    key: Key<'_>,
    audience: &str,
) -> (Header, serde_json::Map<String, Value>) {
    let (header, claims) =
        jws::verify(jwt, key).unwrap_or_else(|e| panic!("{alg} assertion does not verify: {e}"));
    assert_eq!(header.alg, alg, "the header's alg");
    for name in ["exp", "iss", "sub", "aud"] {
        assert!(claims.contains_key(name), "{alg} assertion has no {name:?}");
    }
    let aud = &claims["aud"];
    assert!(
        aud == audience
            || aud
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v == audience)),
        "{alg} assertion's aud {aud} is not {audience:?}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let exp = claims["exp"].as_u64().expect("a numeric exp");
    assert!(exp + 60 > now, "{alg} assertion expired");
    (header, claims)
}
