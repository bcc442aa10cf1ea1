//! Calls an OAuth-protected HTTPS API with hyper-util's client and tokens
//! from a real authorization server (client credentials).
//!
//! ```text
//! TOKEN_URL=https://idp.example/oauth2/token CLIENT_ID=my-client \
//! CLIENT_SECRET=... SCOPE="orders:read" \
//! cargo run --example hyper_client -- https://api.example/orders
//! ```

use std::{env, process::ExitCode};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tower::{ServiceBuilder, ServiceExt};
use tower_alf::{
    grant::ClientCredentials, BearerAuthLayer, ClientAuth, TokenEndpoint, TokenSource,
};

#[tokio::main]
async fn main() -> ExitCode {
    let (Some(url), Ok(token_url), Ok(client_id), Ok(secret)) = (
        env::args().nth(1),
        env::var("TOKEN_URL"),
        env::var("CLIENT_ID"),
        env::var("CLIENT_SECRET"),
    ) else {
        eprintln!(
            "usage: TOKEN_URL=… CLIENT_ID=… CLIENT_SECRET=… [SCOPE=…] \
             cargo run --example hyper_client -- URL"
        );
        return ExitCode::from(2);
    };
    match run(&url, &token_url, client_id, secret).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    url: &str,
    token_url: &str,
    id: String,
    secret: String,
) -> Result<(), tower::BoxError> {
    let endpoint = TokenEndpoint::builder(token_url)
        .client_auth(ClientAuth::basic(id, secret))
        .build()?;
    let mut grant = ClientCredentials::new(endpoint);
    for scope in env::var("SCOPE").unwrap_or_default().split_whitespace() {
        grant = grant.scope(scope);
    }
    let tokens = TokenSource::new(grant);

    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())?
        .https_or_http()
        .enable_http1()
        .build();
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(tokens.clone()))
        .service(Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(https));

    let response = client
        .oneshot(http::Request::get(url).body(Full::default())?)
        .await?;
    eprintln!("{} ({:?})", response.status(), tokens.stats());
    let body = response.into_body().collect().await?.to_bytes();
    println!("{}", String::from_utf8_lossy(&body));
    Ok(())
}
