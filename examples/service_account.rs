//! A service account (RFC 7523 §2.1, the JWT-bearer grant) end to end: a
//! Google-style key file is written with a freshly generated key, read with
//! `ServiceAccount::from_file`, and its signed assertions are traded for
//! tokens at a token endpoint running in this process on loopback, which
//! verifies them with the account's public key. Nothing to set up.
//!
//! ```text
//! cargo run --example service_account --features jwt
//! ```

use std::{collections::HashMap, sync::Arc};

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::post, Json, Router};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use p256::{
    elliptic_curve::sec1::ToEncodedPoint,
    pkcs8::{EncodePrivateKey, LineEnding},
};
use tower_alf::{grant::ServiceAccount, TokenSource};

const EMAIL: &str = "robot@demo-project.iam.example";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

struct Server {
    public_key: DecodingKey,
    token_url: String,
}

#[tokio::main]
async fn main() -> Result<(), tower::BoxError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed)?;
    let secret = p256::SecretKey::from_slice(&seed)?;
    let point = secret.public_key().to_encoded_point(false);
    let public_key = DecodingKey::from_ec_components(
        &URL_SAFE_NO_PAD.encode(point.x().unwrap()),
        &URL_SAFE_NO_PAD.encode(point.y().unwrap()),
    )?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let token_url = format!("http://{}/token", listener.local_addr()?);
    let server = Arc::new(Server {
        public_key,
        token_url: token_url.clone(),
    });
    let app = Router::new()
        .route("/token", post(token))
        .with_state(server);
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The key file a cloud console would hand out.
    let file = serde_json::json!({
        "type": "service_account",
        "project_id": "demo-project",
        "private_key_id": "5b1c2e",
        "private_key": secret.to_pkcs8_pem(LineEnding::LF)?.as_str(),
        "client_email": EMAIL,
        "token_uri": token_url,
    });
    let path = std::env::temp_dir().join(format!("service-account-{}.json", std::process::id()));
    std::fs::write(&path, file.to_string())?;

    // The client: what an application writes.
    let account = ServiceAccount::from_file(&path)?;
    std::fs::remove_file(&path)?;
    println!("loaded {account:?}");
    let tokens = TokenSource::new(account.grant()?.scope("https://api.example/auth/reports"));
    let token = tokens.token().await?;
    println!(
        "got a token for scope {:?}, valid for {:?}",
        token.scope().unwrap_or_default(),
        token.lifetime().unwrap_or_default()
    );
    Ok(())
}

/// The token endpoint: verifies the assertion, then issues a token for the
/// scopes it asks for.
async fn token(State(server): State<Arc<Server>>, body: String) -> impl IntoResponse {
    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[&server.token_url]);
    validation.set_issuer(&[EMAIL]);
    let verified = match (form.get("grant_type"), form.get("assertion")) {
        (Some(grant), Some(jwt)) if grant == GRANT_TYPE => {
            Some(jsonwebtoken::decode::<serde_json::Value>(
                jwt,
                &server.public_key,
                &validation,
            ))
        }
        _ => None,
    };
    match verified {
        Some(Ok(data)) => {
            println!(
                "server: assertion verified: kid {:?}, claims {}",
                data.header.kid, data.claims
            );
            let body = serde_json::json!({
                "access_token": "issued-to-robot",
                "token_type": "Bearer",
                "expires_in": 3600,
                "scope": data.claims["scope"],
            });
            (StatusCode::OK, Json(body))
        }
        _ => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": "invalid_grant"})),
        ),
    }
}
