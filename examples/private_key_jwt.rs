//! `private_key_jwt` client authentication (RFC 7523 §2.2) end to end: a
//! token endpoint runs in this process on loopback and accepts the client
//! only when its signed assertion verifies with the client's registered
//! public key. The key pair is generated at start; nothing to set up.
//!
//! ```text
//! cargo run --example private_key_jwt --features jwt
//! ```

use std::{collections::HashMap, sync::Arc};

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::post, Json, Router};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use p256::{
    elliptic_curve::sec1::ToEncodedPoint,
    pkcs8::{EncodePrivateKey, LineEnding},
};
use tower_alf::{
    grant::ClientCredentials, jwt::PrivateKey, ClientAuth, TokenEndpoint, TokenSource,
};

const CLIENT_ID: &str = "reporting-service";

/// What the authorization server knows about the client.
struct Registration {
    public_key: DecodingKey,
    token_url: String,
}

#[tokio::main]
async fn main() -> Result<(), tower::BoxError> {
    // The client's key pair: a P-256 key from 32 random bytes.
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed)?;
    let secret = p256::SecretKey::from_slice(&seed)?;
    let point = secret.public_key().to_encoded_point(false);
    let (x, y) = (point.x().unwrap(), point.y().unwrap());
    let public_key =
        DecodingKey::from_ec_components(&URL_SAFE_NO_PAD.encode(x), &URL_SAFE_NO_PAD.encode(y))?;
    let pem = secret.to_pkcs8_pem(LineEnding::LF)?;

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
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[&registration.token_url]);
    validation.set_issuer(&[CLIENT_ID]);
    let verified = form.get("client_assertion").map(|jwt| {
        jsonwebtoken::decode::<serde_json::Value>(jwt, &registration.public_key, &validation)
    });
    match verified {
        Some(Ok(data)) => {
            println!(
                "server: assertion verified: kid {:?}, claims {}",
                data.header.kid, data.claims
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
