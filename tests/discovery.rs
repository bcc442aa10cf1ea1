//! Discovery (RFC 8414, OpenID Connect Discovery) over loopback, then a
//! token from the discovered endpoint with the chosen client authentication.

#[path = "recording_endpoint/mod.rs"]
mod support;

use axum::{routing::get, Json, Router};
use serde_json::json;
use tower_alf::{
    discovery::ServerMetadata, grant::ClientCredentials, ClientAuth, HttpClient, TokenSource,
};

use support::TokenServer;

/// Serves `document` at `path` on a free port; returns the issuer URL.
async fn issuer(path: &'static str, mut document: serde_json::Value) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    document["issuer"] = issuer.clone().into();
    let app = Router::new().route(path, get(move || async move { Json(document) }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    issuer
}

#[tokio::test]
async fn the_openid_document_is_used_when_rfc_8414_is_absent() {
    let server = TokenServer::start().await;
    let issuer = issuer(
        "/.well-known/openid-configuration",
        json!({
            "token_endpoint": server.token_url(),
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
        }),
    )
    .await;
    let metadata = ServerMetadata::discover(&issuer, &HttpClient::default())
        .await
        .unwrap();
    assert_eq!(metadata.token_endpoint(), server.token_url());
    let auth = metadata
        .choose_client_auth([ClientAuth::basic("app", "s"), ClientAuth::post("app", "s")])
        .unwrap();
    let endpoint = metadata
        .token_endpoint_builder()
        .client_auth(auth)
        .build()
        .unwrap();
    TokenSource::new(ClientCredentials::new(endpoint))
        .token()
        .await
        .unwrap();
    assert_eq!(server.last().field("client_secret"), "s");
}

#[tokio::test]
async fn the_rfc_8414_document_is_read_first() {
    let issuer = issuer(
        "/.well-known/oauth-authorization-server",
        json!({"token_endpoint": "http://127.0.0.1:1/token"}),
    )
    .await;
    let metadata = ServerMetadata::discover(&format!("{issuer}/"), &HttpClient::default())
        .await
        .unwrap();
    assert_eq!(metadata.token_endpoint(), "http://127.0.0.1:1/token");
    assert_eq!(
        metadata.token_endpoint_auth_methods_supported(),
        ["client_secret_basic"]
    );
}

#[tokio::test]
async fn an_issuer_without_metadata_is_a_status_error() {
    let issuer = issuer("/elsewhere", json!({})).await;
    let e = ServerMetadata::discover(&issuer, &HttpClient::default())
        .await
        .unwrap_err();
    assert_eq!(e.status_code(), Some(http::StatusCode::NOT_FOUND), "{e}");
}

#[tokio::test]
async fn a_plain_http_issuer_off_loopback_is_refused() {
    let e = ServerMetadata::discover("http://idp.example", &HttpClient::default())
        .await
        .unwrap_err();
    assert!(e.is_config());
}
