//! A service account (RFC 7523 §2.1, the JWT-bearer grant) end to end: a
//! Google-style key file is written with a freshly generated key, read with
//! `ServiceAccount::from_file`, and its signed assertions are traded for
//! tokens at a token endpoint running in this process on loopback, which
//! verifies them with the account's public key. Nothing to set up.
//!
//! ```text
//! cargo run --example service_account --features jwt
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
use tower_alf::{grant::ServiceAccount, TokenSource};

const EMAIL: &str = "robot@demo-project.iam.example";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

struct Server {
    /// The uncompressed P-256 point.
    public_key: Vec<u8>,
    token_url: String,
}

#[tokio::main]
async fn main() -> Result<(), tower::BoxError> {
    let (pem, public_key) = generate_key()?;

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
        "private_key": pem,
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
    let verified = match (form.get("grant_type"), form.get("assertion")) {
        (Some(grant), Some(jwt)) if grant == GRANT_TYPE => {
            verify_es256(jwt, &server.public_key, EMAIL, &server.token_url)
        }
        _ => None,
    };
    match verified {
        Some((header, claims)) => {
            println!(
                "server: assertion verified: kid {}, claims {claims}",
                header["kid"]
            );
            let body = serde_json::json!({
                "access_token": "issued-to-robot",
                "token_type": "Bearer",
                "expires_in": 3600,
                "scope": claims["scope"],
            });
            (StatusCode::OK, Json(body))
        }
        _ => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": "invalid_grant"})),
        ),
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
