//! URLs from outside are checked once, where they enter: a port out of
//! range, userinfo or a fragment is a configuration error at build time,
//! never a request to another port; server text in errors has its control
//! characters escaped.

mod scripted;

use scripted::{json, Endpoint};
use tower_alf::{
    discovery::ServerMetadata,
    grant::{ClientCredentials, SubjectToken, TokenExchange},
    ClientAuth, HttpClient, RetryPolicy, Token, TokenEndpoint, TokenSource,
};

#[test]
fn a_token_url_with_a_port_out_of_range_is_refused_at_build_time() {
    for url in [
        "http://127.0.0.1:99999/token",
        "http://127.0.0.1:65536/token",
        "http://127.0.0.1:0/token",
        "https://idp.example:123456/token",
    ] {
        let e = TokenEndpoint::builder(url)
            .client_auth(ClientAuth::basic("id", "secret"))
            .build()
            .unwrap_err();
        assert!(e.is_config(), "{url}: {e}");
        assert!(e.to_string().contains("invalid port"), "{url}: {e}");
    }
}

#[test]
fn a_token_url_with_userinfo_or_a_fragment_is_refused() {
    for url in [
        "https://user:pw@idp.example/token",
        "http://pw@127.0.0.1:8080/token",
        "https://idp.example/token#x",
    ] {
        let e = TokenEndpoint::builder(url).build().unwrap_err();
        assert!(e.is_config(), "{url}: {e}");
        assert!(!e.to_string().contains("pw"), "{e}");
    }
    // With the opt-out for plain http, the other rules still hold.
    let e = TokenEndpoint::builder("http://idp.example:99999/token")
        .allow_insecure_http(true)
        .build()
        .unwrap_err();
    assert!(e.is_config(), "{e}");
}

#[tokio::test]
async fn an_issuer_with_a_bad_port_is_refused_before_any_request() {
    let client = HttpClient::default();
    for issuer in [
        "http://127.0.0.1:99999",
        "https://u:p@idp.example",
        "https://idp.example?x=1",
    ] {
        let e = ServerMetadata::discover(issuer, &client).await.unwrap_err();
        assert!(e.is_config(), "{issuer}: {e}");
    }
}

#[test]
fn metadata_naming_a_bad_url_is_refused_and_says_no_server_answered() {
    for (member, url) in [
        ("token_endpoint", "http://127.0.0.1:99999/token"),
        ("token_endpoint", "https://u:p@idp.example/token"),
        ("token_endpoint", "http://idp.example/token"),
        ("jwks_uri", "https://idp.example:0/jwks"),
        ("revocation_endpoint", "https://idp.example/r#f"),
    ] {
        let mut doc = serde_json::json!({
            "issuer": "https://idp.example",
            "token_endpoint": "https://idp.example/token",
        });
        doc[member] = url.into();
        let e = ServerMetadata::from_json("https://idp.example", doc.to_string().as_bytes())
            .unwrap_err();
        assert!(e.is_invalid_response(), "{member}={url}: {e}");
        assert!(e.to_string().contains(member), "{e}");
        assert!(
            e.to_string()
                .starts_with("invalid authorization server metadata"),
            "{e}"
        );
        assert_eq!(e.status_code(), None, "no server answered");
    }
}

#[tokio::test]
async fn a_token_exchange_resource_with_userinfo_or_a_bad_port_is_refused() {
    let server = Endpoint::start([]).await;
    let endpoint = TokenEndpoint::builder(&server.url)
        .client_auth(ClientAuth::basic("app", "s3cret"))
        .build()
        .unwrap();
    for resource in [
        "https://u:p@backend.example/",
        "https://backend.example:70000/",
        "https://backend.example/#frag",
        "not-a-uri",
    ] {
        let grant = TokenExchange::new(
            endpoint.clone(),
            SubjectToken::token("s", SubjectToken::JWT),
        )
        .resource(resource);
        let e = TokenSource::new(grant).token().await.unwrap_err();
        assert!(e.is_config(), "{resource}: {e}");
    }
    assert_eq!(server.requests(), 0, "nothing was sent");
}

#[tokio::test]
async fn control_characters_in_server_text_are_escaped() {
    let body = r#"{"error":"invalid_client\u001b]0;x\u0007","error_description":"Jeton refus\u00e9\r\nalf: token ok \u001b[2J","error_uri":"https://e.example/\u009b"}"#;
    let server = Endpoint::start([json(401, body)]).await;
    let endpoint = TokenEndpoint::builder(&server.url)
        .client_auth(ClientAuth::basic("app", "s3cret"))
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let e = TokenSource::new(ClientCredentials::new(endpoint))
        .token()
        .await
        .unwrap_err();
    let oauth = e.oauth_error().unwrap();
    assert_eq!(
        oauth.description(),
        Some("Jeton refusé\\r\\nalf: token ok \\u{1b}[2J")
    );
    assert_eq!(oauth.uri(), Some("https://e.example/\\u{9b}"));
    assert_eq!(oauth.code().as_str(), "invalid_client\\u{1b}]0;x\\u{7}");
    for text in [
        e.to_string(),
        format!("{e:?}"),
        e.body_excerpt().unwrap().to_owned(),
    ] {
        assert!(
            !text.chars().any(|c| c.is_control()),
            "a control character in {text:?}"
        );
    }
}

#[test]
fn a_hand_built_token_that_cannot_be_sent_names_no_endpoint() {
    let e = Token::bearer("bad\ntoken").unwrap_err();
    assert!(e.is_invalid_token(), "{e}");
    assert!(!e.is_invalid_response());
    assert_eq!(e.status_code(), None, "no endpoint answered");
    assert!(!e.to_string().contains("endpoint"), "{e}");
    assert!(
        !e.to_string().contains("bad"),
        "the token is not shown: {e}"
    );
}

#[tokio::test]
async fn an_endpoint_answering_a_token_that_cannot_be_sent_is_an_invalid_response() {
    let server = Endpoint::start([json(200, r#"{"access_token":"a\u0001b"}"#)]).await;
    let endpoint = TokenEndpoint::builder(&server.url)
        .client_auth(ClientAuth::basic("app", "s3cret"))
        .build()
        .unwrap();
    let e = TokenSource::new(ClientCredentials::new(endpoint))
        .token()
        .await
        .unwrap_err();
    assert!(e.is_invalid_response(), "{e}");
    assert_eq!(e.status_code(), Some(http::StatusCode::OK));
}

#[tokio::test]
async fn discovery_errors_name_the_metadata_endpoint() {
    let server = Endpoint::start([json(404, "{}"), json(404, "{}")]).await;
    let issuer = server.url.trim_end_matches("/token");
    let e = ServerMetadata::discover(issuer, &HttpClient::default())
        .await
        .unwrap_err();
    assert_eq!(e.status_code(), Some(http::StatusCode::NOT_FOUND));
    assert!(
        e.to_string().contains("metadata endpoint answered 404"),
        "{e}"
    );
}
