//! The JWT-bearer grant and service-account files against a token endpoint
//! over loopback: the exact form fields, and the assertion verified with the
//! public key.

#[path = "recording_endpoint/mod.rs"]
mod support;

use std::time::Duration;

use tower_alf::{
    grant::{JwtBearer, ServiceAccount},
    jwt::{Algorithm, PrivateKey},
    ClientAuth, TokenEndpoint, TokenSource,
};

use support::{keys, verify, TokenServer};

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

fn endpoint(server: &TokenServer) -> TokenEndpoint {
    TokenEndpoint::builder(server.token_url())
        .client_auth(ClientAuth::anonymous())
        .build()
        .unwrap()
}

#[tokio::test]
async fn sends_the_grant_type_scope_and_a_verifiable_assertion() {
    let server = TokenServer::start().await;
    let key = PrivateKey::from_pem(keys::RSA_PKCS8)
        .unwrap()
        .with_key_id("sa-key");
    let grant = JwtBearer::new(endpoint(&server), key, "robot@example")
        .subject("alice@example")
        .scope("a")
        .scope("b")
        .lifetime(Duration::from_secs(120))
        .claim("tenant", "acme");
    let token = TokenSource::new(grant).token().await.unwrap();
    assert_eq!(token.access_token().secret(), "tok-1");

    let got = server.last();
    assert_eq!(got.names(), ["grant_type", "scope", "assertion"]);
    assert_eq!(got.field("grant_type"), GRANT_TYPE);
    assert_eq!(got.field("scope"), "a b");
    assert!(got.headers.get("authorization").is_none());
    let (header, claims) = verify(
        got.field("assertion"),
        "RS256",
        keys::RSA_PUBLIC,
        &server.token_url(),
    );
    assert_eq!(header.kid.as_deref(), Some("sa-key"));
    assert_eq!(claims["iss"], "robot@example");
    assert_eq!(claims["sub"], "alice@example");
    assert_eq!(claims["tenant"], "acme");
    assert!(claims.get("scope").is_none());
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 120);
    assert_eq!(claims["jti"].as_str().unwrap().len(), 32);
}

#[tokio::test]
async fn scope_can_be_a_claim_and_audience_can_be_set() {
    let server = TokenServer::start().await;
    let key = PrivateKey::from_pem(keys::P256_SEC1).unwrap();
    let grant = JwtBearer::new(endpoint(&server), key, "iss")
        .scope("x")
        .scope("y")
        .scope_as_claim(true)
        .audience("https://issuer.example");
    TokenSource::new(grant).token().await.unwrap();
    let got = server.last();
    assert_eq!(got.names(), ["grant_type", "assertion"]);
    let (_, claims) = verify(
        got.field("assertion"),
        "ES256",
        keys::P256_PUBLIC,
        "https://issuer.example",
    );
    assert_eq!(claims["scope"], "x y");
    assert_eq!(claims["sub"], "iss", "sub defaults to the issuer");
}

#[tokio::test]
async fn assertions_verify_for_every_algorithm() {
    let server = TokenServer::start().await;
    for (private, public, alg) in [
        (keys::RSA_PKCS1, keys::RSA_PUBLIC, Algorithm::RS256),
        (keys::RSA_PKCS1, keys::RSA_PUBLIC, Algorithm::RS384),
        (keys::RSA_PKCS1, keys::RSA_PUBLIC, Algorithm::RS512),
        (keys::RSA_PKCS1, keys::RSA_PUBLIC, Algorithm::PS256),
        (keys::P256_PKCS8, keys::P256_PUBLIC, Algorithm::ES256),
        (keys::P384_SEC1, keys::P384_PUBLIC, Algorithm::ES384),
        (keys::ED25519, keys::ED25519_PUBLIC, Algorithm::EdDSA),
    ] {
        let key = PrivateKey::from_pem(private)
            .unwrap()
            .with_algorithm(alg)
            .unwrap();
        let grant = JwtBearer::new(endpoint(&server), key, "iss");
        TokenSource::new(grant).token().await.unwrap();
        let (header, _) = verify(
            server.last().field("assertion"),
            alg.as_str(),
            public,
            &server.token_url(),
        );
        assert_eq!(header.alg, alg.as_str());
    }
}

#[tokio::test]
async fn each_fetch_signs_a_new_assertion() {
    let server = TokenServer::start().await;
    let key = PrivateKey::from_pem(keys::ED25519).unwrap();
    let grant = JwtBearer::new(endpoint(&server), key, "iss");
    let tokens = TokenSource::new(grant);
    let first = tokens.token().await.unwrap();
    tokens.invalidate(first.id()).await.unwrap();
    let received = server.received();
    assert_eq!(received.len(), 2);
    assert_ne!(
        received[0].field("assertion"),
        received[1].field("assertion")
    );
}

#[tokio::test]
async fn client_authentication_is_sent_alongside_the_assertion() {
    let server = TokenServer::start().await;
    let endpoint = TokenEndpoint::builder(server.token_url())
        .client_auth(ClientAuth::basic("app", "sec"))
        .build()
        .unwrap();
    let key = PrivateKey::from_pem(keys::ED25519).unwrap();
    TokenSource::new(JwtBearer::new(endpoint, key, "iss"))
        .token()
        .await
        .unwrap();
    let got = server.last();
    assert_eq!(got.basic().unwrap(), "app:sec");
    assert_eq!(got.names(), ["grant_type", "assertion"]);
}

#[tokio::test]
async fn a_service_account_file_becomes_a_working_grant() {
    let server = TokenServer::start().await;
    let json = serde_json::json!({
        "type": "service_account",
        "project_id": "demo",
        "private_key_id": "0123abcd",
        "private_key": keys::RSA_PKCS8,
        "client_email": "robot@demo.iam.example",
        "client_id": "1234",
        "token_uri": server.token_url(),
    });
    let path = std::env::temp_dir().join(format!("tower-alf-sa-{}.json", std::process::id()));
    std::fs::write(&path, json.to_string()).unwrap();
    let account = ServiceAccount::from_file(&path).unwrap();
    std::fs::remove_file(&path).unwrap();

    let grant = account.grant().unwrap().scope("cloud-platform");
    TokenSource::new(grant).token().await.unwrap();
    let got = server.last();
    assert_eq!(got.names(), ["grant_type", "assertion"]);
    let (header, claims) = verify(
        got.field("assertion"),
        "RS256",
        keys::RSA_PUBLIC,
        &server.token_url(),
    );
    assert_eq!(header.kid.as_deref(), Some("0123abcd"));
    assert_eq!(claims["iss"], "robot@demo.iam.example");
    assert_eq!(claims["scope"], "cloud-platform");
}

#[test]
fn a_missing_service_account_file_is_a_config_error() {
    let e = ServiceAccount::from_file("/nonexistent/sa.json").unwrap_err();
    assert!(e.is_config());
    assert!(e.to_string().contains("/nonexistent/sa.json"), "{e}");
}

#[tokio::test]
async fn jwt_bearer_setters_replace_and_claim_replaces_a_claim_of_the_same_name() {
    let server = TokenServer::start().await;
    let key = PrivateKey::from_pem(keys::P256_SEC1).unwrap();
    let grant = JwtBearer::new(endpoint(&server), key, "iss")
        .audience("https://first.example")
        .audience("https://second.example")
        .subject("first")
        .subject("second")
        .claim("tenant", "one")
        .claim("tenant", "two");
    TokenSource::new(grant).token().await.unwrap();
    let got = server.last();
    let (_, claims) = verify(
        got.field("assertion"),
        "ES256",
        keys::P256_PUBLIC,
        "https://second.example",
    );
    assert_eq!(claims["aud"], "https://second.example");
    assert_eq!(claims["sub"], "second");
    assert_eq!(claims["tenant"], "two");
}

#[tokio::test]
async fn the_assertion_a_grant_shows_is_signed_as_the_one_it_sends() {
    let server = TokenServer::start().await;
    let key = PrivateKey::from_pem(keys::P256_SEC1)
        .unwrap()
        .with_key_id("k-1");
    let grant = JwtBearer::new(endpoint(&server), key, "robot@example")
        .subject("alice@example")
        .scope("a")
        .scope_as_claim(true)
        .claim("tenant", "acme");
    let shown = grant.assertion().unwrap();
    let again = grant.assertion().unwrap();
    TokenSource::new(grant).token().await.unwrap();
    let sent = server.last();
    let check = |jwt: &str| verify(jwt, "ES256", keys::P256_PUBLIC, &server.token_url());
    let (shown_header, shown) = check(&shown);
    let (sent_header, sent) = check(sent.field("assertion"));
    assert_eq!(shown_header.raw, sent_header.raw);
    for claim in ["iss", "sub", "aud", "scope", "tenant"] {
        assert_eq!(shown[claim], sent[claim], "{claim}");
    }
    assert_eq!(shown.len(), sent.len());
    // Each is signed afresh.
    assert_ne!(shown["jti"], check(&again).1["jti"]);
    assert_ne!(shown["jti"], sent["jti"]);
}
