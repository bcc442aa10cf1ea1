//! The refresh-token grant against a token endpoint over loopback.

#[path = "recording_endpoint/mod.rs"]
mod support;

use std::time::Duration;

use serde_json::json;
use tower_alf::{grant::RefreshTokenGrant, ClientAuth, Token, TokenEndpoint, TokenSource};

use support::TokenServer;

/// No retries: each test scripts one answer per fetch.
fn endpoint(server: &TokenServer) -> TokenEndpoint {
    TokenEndpoint::builder(server.token_url())
        .client_auth(ClientAuth::post("app", "sec"))
        .retry(tower_alf::RetryPolicy::none())
        .build()
        .unwrap()
}

fn token_with(access: &str, refresh: Option<&str>) -> serde_json::Value {
    let mut body = json!({"access_token": access, "token_type": "Bearer", "expires_in": 3600});
    if let Some(refresh) = refresh {
        body["refresh_token"] = refresh.into();
    }
    body
}

#[tokio::test]
async fn sends_the_refresh_token_grant_form() {
    let server = TokenServer::start().await;
    let grant = RefreshTokenGrant::new(endpoint(&server), "rt-1").scope("read");
    TokenSource::new(grant).token().await.unwrap();
    let got = server.last();
    assert_eq!(
        got.names(),
        [
            "grant_type",
            "refresh_token",
            "scope",
            "client_id",
            "client_secret"
        ]
    );
    assert_eq!(got.field("grant_type"), "refresh_token");
    assert_eq!(got.field("refresh_token"), "rt-1");
    assert_eq!(got.field("scope"), "read");
}

#[tokio::test]
async fn a_rotated_refresh_token_is_used_next_and_kept() {
    let server = TokenServer::start().await;
    server.answer(200, token_with("at-1", Some("rt-2")));
    server.answer(200, token_with("at-2", Some("rt-3")));
    let grant = RefreshTokenGrant::new(endpoint(&server), "rt-1");
    let tokens = TokenSource::new(grant.clone());

    let first = tokens.token().await.unwrap();
    assert_eq!(first.refresh_token().unwrap().secret(), "rt-2");
    assert_eq!(grant.refresh_token().secret(), "rt-2");
    let second = tokens.invalidate(first.id()).await.unwrap();
    assert_eq!(second.access_token().secret(), "at-2");

    let sent: Vec<_> = server
        .received()
        .iter()
        .map(|r| r.field("refresh_token").to_owned())
        .collect();
    assert_eq!(sent, ["rt-1", "rt-2"]);
    assert_eq!(grant.refresh_token().secret(), "rt-3");
}

#[tokio::test]
async fn without_rotation_the_same_refresh_token_is_kept() {
    let server = TokenServer::start().await;
    let grant = RefreshTokenGrant::new(endpoint(&server), "rt-1");
    let tokens = TokenSource::new(grant.clone());
    let first = tokens.token().await.unwrap();
    assert_eq!(first.refresh_token().unwrap().secret(), "rt-1");
    tokens.invalidate(first.id()).await.unwrap();
    assert_eq!(server.last().field("refresh_token"), "rt-1");
    assert_eq!(grant.refresh_token().secret(), "rt-1");
}

#[tokio::test]
async fn invalid_grant_means_a_new_authorization_is_needed() {
    let server = TokenServer::start().await;
    server.answer(
        400,
        json!({"error": "invalid_grant", "error_description": "refresh token revoked"}),
    );
    let tokens = TokenSource::new(RefreshTokenGrant::new(endpoint(&server), "rt-revoked"));
    let e = tokens.token().await.unwrap_err();
    assert!(e.is_reauthorization_required(), "{e}");
    assert!(e.is_oauth() && !e.is_transport() && !e.is_timeout());
    assert!(!e.to_string().contains("rt-revoked"));
}

#[tokio::test]
async fn other_failures_do_not_ask_for_a_new_authorization() {
    let server = TokenServer::start().await;
    server.answer(401, json!({"error": "invalid_client"}));
    server.answer(503, json!({}));
    let tokens = TokenSource::new(RefreshTokenGrant::new(endpoint(&server), "rt"));
    assert!(!tokens
        .token()
        .await
        .unwrap_err()
        .is_reauthorization_required());
    let tokens = TokenSource::new(RefreshTokenGrant::new(endpoint(&server), "rt"));
    assert!(!tokens
        .token()
        .await
        .unwrap_err()
        .is_reauthorization_required());
}

#[tokio::test]
async fn a_valid_initial_token_set_is_served_without_a_request() {
    let server = TokenServer::start().await;
    let initial = Token::bearer("at-0")
        .unwrap()
        .with_expires_in(Duration::from_secs(3600))
        .with_refresh_token("rt-0");
    let grant = RefreshTokenGrant::from_token(endpoint(&server), initial).unwrap();
    let tokens = TokenSource::new(grant);
    let token = tokens.token().await.unwrap();
    assert_eq!(token.access_token().secret(), "at-0");
    assert!(server.received().is_empty());
    tokens.invalidate(token.id()).await.unwrap();
    assert_eq!(server.last().field("refresh_token"), "rt-0");
}

#[tokio::test]
async fn an_expired_initial_token_set_is_refreshed_at_once() {
    let server = TokenServer::start().await;
    let initial = Token::bearer("at-0")
        .unwrap()
        .with_expires_in(Duration::from_secs(5))
        .with_refresh_token("rt-0");
    let grant = RefreshTokenGrant::from_token(endpoint(&server), initial).unwrap();
    let token = TokenSource::new(grant).token().await.unwrap();
    assert_eq!(token.access_token().secret(), "tok-1");
    assert_eq!(server.last().field("refresh_token"), "rt-0");
}

#[test]
fn a_token_set_without_a_refresh_token_is_refused() {
    let endpoint = TokenEndpoint::builder("https://idp.example/token")
        .client_auth(ClientAuth::none("cli"))
        .build()
        .unwrap();
    let e = RefreshTokenGrant::from_token(endpoint, Token::bearer("at").unwrap()).unwrap_err();
    assert!(e.is_config());
}

#[test]
fn debug_never_shows_the_refresh_token() {
    let endpoint = TokenEndpoint::builder("https://idp.example/token")
        .client_auth(ClientAuth::none("cli"))
        .build()
        .unwrap();
    let grant = RefreshTokenGrant::new(endpoint, "rt-secret-value");
    assert!(!format!("{grant:?}").contains("rt-secret-value"));
}
