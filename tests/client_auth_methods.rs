//! Every client authentication method, checked by a token endpoint over
//! loopback: the exact form fields and headers it receives, and JWT
//! assertions verified with the public keys.

#[path = "recording_endpoint/mod.rs"]
mod support;

use tower_alf::{
    grant::ClientCredentials,
    jwt::{Algorithm, PrivateKey},
    ClientAuth, TokenEndpoint, TokenSource,
};

use support::{keys, verify, verify_with, Key, Received, TokenServer};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

async fn fetch_with(server: &TokenServer, auth: ClientAuth) -> Received {
    let endpoint = TokenEndpoint::builder(server.token_url())
        .client_auth(auth)
        .build()
        .unwrap();
    let tokens = TokenSource::new(ClientCredentials::new(endpoint).scope("read"));
    tokens.token().await.unwrap();
    server.last()
}

#[tokio::test]
async fn client_secret_basic_sends_form_encoded_credentials_in_the_header() {
    let server = TokenServer::start().await;
    let got = fetch_with(&server, ClientAuth::basic("id:1", "s e+c")).await;
    assert_eq!(got.basic().unwrap(), "id%3A1:s+e%2Bc");
    assert_eq!(got.names(), ["grant_type", "scope"]);
}

#[tokio::test]
async fn client_secret_basic_raw_sends_credentials_unencoded() {
    let server = TokenServer::start().await;
    let got = fetch_with(&server, ClientAuth::basic_raw("id-1", "s e+c")).await;
    assert_eq!(got.basic().unwrap(), "id-1:s e+c");
    assert_eq!(got.names(), ["grant_type", "scope"]);
}

#[tokio::test]
async fn client_secret_post_sends_credentials_in_the_form() {
    let server = TokenServer::start().await;
    let got = fetch_with(&server, ClientAuth::post("id-1", "sec")).await;
    assert!(got.headers.get("authorization").is_none());
    assert_eq!(
        got.names(),
        ["grant_type", "scope", "client_id", "client_secret"]
    );
    assert_eq!(got.field("client_id"), "id-1");
    assert_eq!(got.field("client_secret"), "sec");
}

#[tokio::test]
async fn none_sends_only_the_client_id() {
    let server = TokenServer::start().await;
    let got = fetch_with(&server, ClientAuth::none("public-app")).await;
    assert!(got.headers.get("authorization").is_none());
    assert_eq!(got.names(), ["grant_type", "scope", "client_id"]);
    assert_eq!(got.field("client_id"), "public-app");
}

fn assert_client_assertion_form(got: &Received) {
    assert!(got.headers.get("authorization").is_none());
    assert_eq!(
        got.names(),
        [
            "grant_type",
            "scope",
            "client_id",
            "client_assertion_type",
            "client_assertion"
        ]
    );
    assert_eq!(got.field("client_assertion_type"), ASSERTION_TYPE);
}

#[tokio::test]
async fn private_key_jwt_assertions_verify_with_the_public_key_for_every_algorithm() {
    let server = TokenServer::start().await;
    let cases = [
        (keys::RSA_PKCS1, keys::RSA_PUBLIC, Algorithm::RS256),
        (keys::RSA_PKCS8, keys::RSA_PUBLIC, Algorithm::RS384),
        (keys::RSA_PKCS1, keys::RSA_PUBLIC, Algorithm::RS512),
        (keys::RSA_PKCS8, keys::RSA_PUBLIC, Algorithm::PS256),
        (keys::RSA_PKCS1, keys::RSA_PUBLIC, Algorithm::PS384),
        (keys::RSA_PKCS1, keys::RSA_PUBLIC, Algorithm::PS512),
        (keys::P256_SEC1, keys::P256_PUBLIC, Algorithm::ES256),
        (keys::P256_PKCS8, keys::P256_PUBLIC, Algorithm::ES256),
        (keys::P384_SEC1, keys::P384_PUBLIC, Algorithm::ES384),
        (keys::ED25519, keys::ED25519_PUBLIC, Algorithm::EdDSA),
    ];
    for (private, public, alg) in cases {
        let key = PrivateKey::from_pem(private)
            .unwrap()
            .with_algorithm(alg)
            .unwrap()
            .with_key_id(format!("kid-{alg}"));
        let got = fetch_with(&server, ClientAuth::private_key_jwt("client-7", key)).await;
        assert_client_assertion_form(&got);
        assert_eq!(got.field("client_id"), "client-7");
        let (header, claims) = verify(
            got.field("client_assertion"),
            alg.as_str(),
            public,
            &server.token_url(),
        );
        assert_eq!(header.kid.as_deref(), Some(format!("kid-{alg}").as_str()));
        assert_eq!(claims["iss"], "client-7", "{alg}");
        assert_eq!(claims["sub"], "client-7", "{alg}");
        assert_eq!(claims["aud"], server.token_url(), "{alg}");
        let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
        assert_eq!(lifetime, 60, "{alg}");
        assert_eq!(claims["jti"].as_str().unwrap().len(), 32, "{alg}");
    }
}

#[tokio::test]
async fn private_key_jwt_from_a_jwk_signs_with_its_alg_and_kid() {
    let server = TokenServer::start().await;
    // RFC 8037 Appendix A.
    let jwk = r#"{"kty":"OKP","crv":"Ed25519","kid":"rfc8037","alg":"EdDSA",
        "d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
        "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
    let key = PrivateKey::from_jwk(jwk).unwrap();
    let got = fetch_with(&server, ClientAuth::private_key_jwt("c", key)).await;
    let public = serde_json::json!({"kty": "OKP", "crv": "Ed25519",
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
    let (header, _) = verify_with(
        got.field("client_assertion"),
        "EdDSA",
        Key::Jwk(&public),
        &server.token_url(),
    );
    assert_eq!(header.kid.as_deref(), Some("rfc8037"));
}

#[tokio::test]
async fn client_secret_jwt_assertions_verify_with_hs256_and_the_secret() {
    let server = TokenServer::start().await;
    let secret = "a-shared-secret-of-at-least-32-bytes";
    let got = fetch_with(&server, ClientAuth::client_secret_jwt("client-9", secret)).await;
    assert_client_assertion_form(&got);
    let (header, claims) = verify_with(
        got.field("client_assertion"),
        "HS256",
        Key::Secret(secret.as_bytes()),
        &server.token_url(),
    );
    assert_eq!(header.alg, "HS256");
    assert_eq!(claims["iss"], "client-9");
    assert_eq!(claims["sub"], "client-9");
}

#[tokio::test]
async fn the_assertion_audience_can_be_set_to_the_issuer() {
    let server = TokenServer::start().await;
    let key = PrivateKey::from_pem(keys::P256_SEC1).unwrap();
    let auth = ClientAuth::private_key_jwt("c", key)
        .assertion_audience("https://issuer.example")
        .assertion_lifetime(std::time::Duration::from_secs(30));
    let got = fetch_with(&server, auth).await;
    let (_, claims) = verify(
        got.field("client_assertion"),
        "ES256",
        keys::P256_PUBLIC,
        "https://issuer.example",
    );
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 30);
}

/// RFC 7523 §3 compares `aud` as a string: the token URL goes in as
/// configured, not as `http::Uri` prints it (`/` added, scheme lowered).
#[tokio::test]
async fn the_default_assertion_audience_is_the_token_url_verbatim() {
    let server = TokenServer::start().await;
    let addr = server.addr.unwrap();
    for url in [
        format!("http://{addr}"),
        format!("HTTP://{addr}/token"),
        format!("http://{addr}/token?"),
    ] {
        for (auth, alg, public) in [
            (
                ClientAuth::private_key_jwt("c", PrivateKey::from_pem(keys::P256_SEC1).unwrap()),
                "ES256",
                keys::P256_PUBLIC,
            ),
            (
                ClientAuth::private_key_jwt("c", PrivateKey::from_pem(keys::ED25519).unwrap()),
                "EdDSA",
                keys::ED25519_PUBLIC,
            ),
        ] {
            let endpoint = TokenEndpoint::builder(&url)
                .client_auth(auth)
                .build()
                .unwrap();
            endpoint.request(vec![]).await.unwrap();
            let got = server.last();
            let (_, claims) = verify(got.field("client_assertion"), alg, public, &url);
            assert_eq!(claims["aud"], url.as_str());
        }
        let secret = "a-shared-secret-of-32-bytes-or-more!";
        let endpoint = TokenEndpoint::builder(&url)
            .client_auth(ClientAuth::client_secret_jwt("c", secret))
            .build()
            .unwrap();
        endpoint.request(vec![]).await.unwrap();
        let (_, claims) = verify_with(
            server.last().field("client_assertion"),
            "HS256",
            Key::Secret(secret.as_bytes()),
            &url,
        );
        assert_eq!(claims["aud"], url.as_str());
    }
}

#[tokio::test]
async fn every_request_carries_a_fresh_assertion() {
    let server = TokenServer::start().await;
    let key = PrivateKey::from_pem(keys::ED25519).unwrap();
    let endpoint = TokenEndpoint::builder(server.token_url())
        .client_auth(ClientAuth::private_key_jwt("c", key))
        .build()
        .unwrap();
    endpoint.request(vec![]).await.unwrap();
    endpoint.request(vec![]).await.unwrap();
    let received = server.received();
    let jti = |r: &Received| {
        verify(
            r.field("client_assertion"),
            "EdDSA",
            keys::ED25519_PUBLIC,
            &server.token_url(),
        )
        .1["jti"]
            .clone()
    };
    assert_ne!(
        received[0].field("client_assertion"),
        received[1].field("client_assertion")
    );
    assert_ne!(jti(&received[0]), jti(&received[1]));
}

#[test]
fn jwt_methods_never_show_their_secrets_in_debug() {
    let auth = ClientAuth::client_secret_jwt("c", "hunter2-hunter2");
    assert!(!format!("{auth:?}").contains("hunter2"));
    let key = PrivateKey::from_pem(keys::RSA_PKCS1).unwrap();
    let auth = ClientAuth::private_key_jwt("c", key);
    let debug = format!("{auth:?}");
    let line = keys::RSA_PKCS1.lines().nth(1).unwrap();
    assert!(!debug.contains(&line[..16]), "{debug}");
}

#[tokio::test]
async fn the_assertion_client_auth_shows_is_signed_as_the_one_it_sends() {
    let server = TokenServer::start().await;
    let url = server.token_url();
    let key = PrivateKey::from_pem(keys::RSA_PKCS1)
        .unwrap()
        .with_algorithm(Algorithm::PS384)
        .unwrap();
    let secret = "a-shared-secret-of-at-least-48-bytes-for-hs384!!";
    for (auth, alg, key) in [
        (
            ClientAuth::private_key_jwt("c", key),
            "PS384",
            Key::Pem(keys::RSA_PUBLIC),
        ),
        (
            ClientAuth::client_secret_jwt("c", secret)
                .with_hmac_algorithm("HS384")
                .unwrap(),
            "HS384",
            Key::Secret(secret.as_bytes()),
        ),
    ] {
        let shown = auth
            .assertion(&url)
            .unwrap()
            .expect("a JWT method's assertion");
        let got = fetch_with(&server, auth.clone()).await;
        let (shown_header, shown) = verify_with(&shown, alg, key, &url);
        let (sent_header, sent) = verify_with(got.field("client_assertion"), alg, key, &url);
        assert_eq!(shown_header.raw, sent_header.raw, "{alg}");
        for claim in ["iss", "sub", "aud"] {
            assert_eq!(shown[claim], sent[claim], "{alg} {claim}");
        }
        assert_ne!(shown["jti"], sent["jti"], "{alg}");
    }
    for auth in [
        ClientAuth::basic("c", "s"),
        ClientAuth::post("c", "s"),
        ClientAuth::none("c"),
    ] {
        assert_eq!(
            auth.assertion(&url).unwrap(),
            None,
            "{}",
            auth.method_name()
        );
    }
}

#[tokio::test]
async fn an_unknown_hmac_algorithm_is_a_config_error() {
    for alg in ["HS1", "none", "RS256", "hs256"] {
        let e = ClientAuth::client_secret_jwt("c", "s")
            .with_hmac_algorithm(alg)
            .unwrap_err();
        assert!(e.is_config(), "{alg}: {e}");
    }
    let e = ClientAuth::post("c", "s")
        .with_hmac_algorithm("HS256")
        .unwrap_err();
    assert!(
        e.is_config() && e.to_string().contains("client_secret_post"),
        "{e}"
    );
}
