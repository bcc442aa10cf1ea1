//! Client authentication and the token request, as the token server sees
//! them: `client_secret_basic` encoded per RFC 6749 §2.3.1, and
//! `client_secret_post` with the grant's parameters in the form.
//!
//! Real sockets (the token endpoint), real time.

mod support;

use base64::{engine::general_purpose::STANDARD, Engine as _};
use tower_alf::{grant::ClientCredentials, ClientAuth, TokenSource};

use support::TokenServer;

#[tokio::test]
async fn client_secret_basic_form_encodes_the_id_and_secret_before_base64() {
    let (id, secret) = ("my:client id", "s:e+c%r e€t");
    let tokens = TokenServer::start().await;
    let endpoint = support::endpoint_builder_with(&tokens, ClientAuth::basic(id, secret))
        .build()
        .expect("a valid endpoint");
    support::source_from(endpoint)
        .token()
        .await
        .expect("a token");

    let seen = tokens.last();
    // As a server must read it: Base64, split at the first ':', form-decode.
    assert_eq!(
        seen.basic_credentials(),
        Some((id.to_owned(), secret.to_owned()))
    );
    // And the exact bytes: every ':' in the id and secret is escaped, so the
    // first one separates them.
    let encoded = seen
        .header("authorization")
        .and_then(|value| value.strip_prefix("Basic "))
        .expect("a Basic authorization header");
    let decoded = String::from_utf8(STANDARD.decode(encoded).expect("base64")).expect("UTF-8");
    assert_eq!(decoded, "my%3Aclient+id:s%3Ae%2Bc%25r+e%E2%82%ACt");

    assert_eq!(seen.field("client_id"), None);
    assert_eq!(seen.field("client_secret"), None);
    assert_eq!(seen.field("grant_type"), Some("client_credentials"));
    assert_eq!(seen.header("accept"), Some("application/json"));
    assert_eq!(
        seen.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
}

#[tokio::test]
async fn client_secret_post_sends_the_credentials_scope_and_parameters_in_the_form() {
    let (id, secret) = ("post client", "p@ss w0rd&=+%€");
    let tokens = TokenServer::start().await;
    let endpoint = support::endpoint_builder_with(&tokens, ClientAuth::post(id, secret))
        .build()
        .expect("a valid endpoint");
    let grant = ClientCredentials::new(endpoint)
        .scope("orders:read")
        .scope("orders:write")
        .audience("https://api.example")
        .resource("https://a.example/")
        .resource("https://b.example/")
        .param("tenant", "acme & co");
    let source = TokenSource::builder(grant).jitter(0.0).build();
    source.token().await.expect("a token");

    let seen = tokens.last();
    assert_eq!(seen.field("grant_type"), Some("client_credentials"));
    assert_eq!(seen.field("client_id"), Some(id));
    assert_eq!(seen.field("client_secret"), Some(secret));
    assert_eq!(seen.field("scope"), Some("orders:read orders:write"));
    assert_eq!(seen.field("audience"), Some("https://api.example"));
    assert_eq!(
        seen.field_all("resource"),
        ["https://a.example/", "https://b.example/"]
    );
    assert_eq!(seen.field("tenant"), Some("acme & co"));
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.header("accept"), Some("application/json"));
    assert_eq!(
        seen.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
}

#[tokio::test]
async fn every_fetch_sends_the_same_request() {
    let tokens = TokenServer::start().await;
    let source = support::source(&tokens);
    let first = source.token().await.expect("a token");
    source.invalidate(first.id()).await.expect("a second token");

    let seen = tokens.seen();
    assert_eq!(seen.len(), 2);
    for request in &seen {
        assert_eq!(
            request.basic_credentials(),
            Some((
                support::CLIENT_ID.to_owned(),
                support::CLIENT_SECRET.to_owned()
            ))
        );
        assert_eq!(
            request.form,
            [("grant_type".into(), "client_credentials".into())]
        );
    }
}
