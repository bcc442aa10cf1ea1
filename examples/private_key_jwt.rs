//! `private_key_jwt` client authentication (RFC 7523 §2.2) end to end: a
//! token endpoint runs in this process on loopback and accepts the client
//! only when its signed assertion verifies with the client's registered
//! public key. The key pair is generated at start; nothing to set up.
//!
//! ```text
//! cargo run --example private_key_jwt --features jwt
//! ```

use std::{
    collections::HashMap,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::post, Json, Router};
use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    Engine as _,
};
use ring::{
    rand::SystemRandom,
    signature::{
        EcdsaKeyPair, KeyPair as _, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
        ECDSA_P256_SHA256_FIXED_SIGNING,
    },
};
use serde_json::Value;
use tower_alf::{
    grant::ClientCredentials, jwt::PrivateKey, ClientAuth, TokenEndpoint, TokenSource,
};

const CLIENT_ID: &str = "reporting-service";

/// What the authorization server knows about the client.
struct Registration {
    /// The uncompressed P-256 point.
    public_key: Vec<u8>,
    token_url: String,
}

#[tokio::main]
async fn main() -> Result<(), tower::BoxError> {
    // The client's key pair: a fresh P-256 key.
    let (pem, public_key) = generate_key()?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let token_url = format!("http://{}/token", listener.local_addr()?);
    let registration = Arc::new(Registration {
        public_key,
        token_url: token_url.clone(),
    });
    let app = Router::new()
        .route("/token", post(token))
        .with_state(registration);
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The client: what an application writes.
    let key = PrivateKey::from_pem(pem.as_bytes())?.with_key_id("2024-key-1");
    let endpoint = TokenEndpoint::builder(&token_url)
        .client_auth(ClientAuth::private_key_jwt(CLIENT_ID, key))
        .build()?;
    let tokens = TokenSource::new(ClientCredentials::new(endpoint).scope("reports:read"));

    let token = tokens.token().await?;
    println!(
        "got a token for scope {:?}, valid for {:?}",
        token.scope().unwrap_or_default(),
        token.lifetime().unwrap_or_default()
    );
    Ok(())
}

/// The token endpoint: verifies the client assertion, then issues a token.
async fn token(State(registration): State<Arc<Registration>>, body: String) -> impl IntoResponse {
    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let verified = form.get("client_assertion").and_then(|jwt| {
        verify_es256(
            jwt,
            &registration.public_key,
            CLIENT_ID,
            &registration.token_url,
        )
    });
    match verified {
        Some((header, claims)) => {
            println!(
                "server: assertion verified: kid {}, claims {claims}",
                header["kid"]
            );
            let body = serde_json::json!({
                "access_token": "issued-to-reporting-service",
                "token_type": "Bearer",
                "expires_in": 3600,
                "scope": form.get("scope"),
            });
            (StatusCode::OK, Json(body))
        }
        _ => {
            let body = serde_json::json!({"error": "invalid_client"});
            (StatusCode::UNAUTHORIZED, Json(body))
        }
    }
}

/// The server's check of an ES256 JWT: the signature with the client's
/// public point (ring's verification), then `iss`, `aud` and `exp`.
fn verify_es256(
    jwt: &str,
    public_key: &[u8],
    issuer: &str,
    audience: &str,
) -> Option<(Value, Value)> {
    let (input, signature) = jwt.rsplit_once('.')?;
    let (header, claims) = input.split_once('.')?;
    let json = |part: &str| -> Option<Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
    };
    let (header, claims) = (json(header)?, json(claims)?);
    if header["alg"] != "ES256" {
        return None;
    }
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public_key)
        .verify(input.as_bytes(), &URL_SAFE_NO_PAD.decode(signature).ok()?)
        .ok()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    let fresh = claims["exp"].as_u64().is_some_and(|exp| exp > now);
    (claims["iss"] == issuer && claims["aud"] == audience && fresh).then_some((header, claims))
}

/// A P-256 key pair from ring: its PKCS#8 PEM and its public point.
fn generate_key() -> Result<(String, Vec<u8>), tower::BoxError> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| "no key")?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| "bad key")?;
    let body = STANDARD.encode(pkcs8.as_ref());
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    );
    Ok((pem, pair.public_key().as_ref().to_vec()))
}
