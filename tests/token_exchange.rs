//! The token exchange grant (RFC 8693) against a token endpoint over
//! loopback.

#[path = "recording_endpoint/mod.rs"]
mod support;

use tower_alf::{
    grant::{ClientCredentials, SubjectToken, TokenExchange},
    ClientAuth, TokenEndpoint, TokenSource,
};

use support::TokenServer;

fn endpoint(server: &TokenServer) -> TokenEndpoint {
    TokenEndpoint::builder(server.token_url())
        .client_auth(ClientAuth::basic("gw", "sec"))
        .build()
        .unwrap()
}

#[tokio::test]
async fn sends_every_rfc_8693_parameter() {
    let server = TokenServer::start().await;
    let grant = TokenExchange::new(
        endpoint(&server),
        SubjectToken::token("subj-jwt", SubjectToken::JWT),
    )
    .actor(SubjectToken::token("actor-at", SubjectToken::ACCESS_TOKEN))
    .requested_token_type(SubjectToken::ACCESS_TOKEN)
    .audience("backend")
    .resource("https://backend.example/api")
    .scope("orders:read");
    TokenSource::new(grant).token().await.unwrap();
    let got = server.last();
    assert_eq!(
        got.names(),
        [
            "grant_type",
            "subject_token",
            "subject_token_type",
            "actor_token",
            "actor_token_type",
            "requested_token_type",
            "scope",
            "audience",
            "resource"
        ]
    );
    assert_eq!(
        got.field("grant_type"),
        "urn:ietf:params:oauth:grant-type:token-exchange"
    );
    assert_eq!(got.field("subject_token"), "subj-jwt");
    assert_eq!(
        got.field("subject_token_type"),
        "urn:ietf:params:oauth:token-type:jwt"
    );
    assert_eq!(got.field("actor_token"), "actor-at");
    assert_eq!(got.basic().unwrap(), "gw:sec");
}

#[tokio::test]
async fn a_delegation_chain_exchanges_each_source_token_in_turn() {
    let server = TokenServer::start().await;
    let own = TokenSource::new(ClientCredentials::new(endpoint(&server)));
    let first = TokenSource::new(
        TokenExchange::new(endpoint(&server), SubjectToken::source(own)).audience("a"),
    );
    let second = TokenSource::new(
        TokenExchange::new(endpoint(&server), SubjectToken::source(first)).audience("b"),
    );
    let token = second.token().await.unwrap();
    assert_eq!(token.access_token().secret(), "tok-3");
    let received = server.received();
    assert_eq!(received[0].field("grant_type"), "client_credentials");
    assert_eq!(received[1].field("subject_token"), "tok-1");
    assert_eq!(received[1].field("audience"), "a");
    assert_eq!(received[2].field("subject_token"), "tok-2");
    assert_eq!(
        received[2].field("subject_token_type"),
        "urn:ietf:params:oauth:token-type:access_token"
    );
}

#[tokio::test]
async fn a_failing_subject_source_fails_the_exchange_without_a_request() {
    let server = TokenServer::start().await;
    server.answer(401, serde_json::json!({"error": "invalid_client"}));
    let own = TokenSource::new(ClientCredentials::new(endpoint(&server)));
    let exchange = TokenSource::new(TokenExchange::new(
        endpoint(&server),
        SubjectToken::source(own),
    ));
    let e = exchange.token().await.unwrap_err();
    assert_eq!(e.oauth_error().unwrap().code().as_str(), "invalid_client");
    assert_eq!(server.received().len(), 1);
}

#[test]
fn debug_never_shows_a_fixed_subject_token() {
    let subject = SubjectToken::token("very-secret-subject", SubjectToken::ACCESS_TOKEN);
    assert!(!format!("{subject:?}").contains("very-secret-subject"));
}

/// The values of every `name` field of a request, in order.
fn values<'a>(got: &'a support::Received, name: &str) -> Vec<&'a str> {
    got.form
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

#[tokio::test]
async fn token_exchange_audience_sets_and_add_audience_adds() {
    let server = TokenServer::start().await;
    let subject = || SubjectToken::token("subj", SubjectToken::ACCESS_TOKEN);
    let set = TokenExchange::new(endpoint(&server), subject())
        .audience("first")
        .audience("second")
        .resource("https://one.example")
        .resource("https://two.example");
    TokenSource::new(set).token().await.unwrap();
    let got = server.last();
    assert_eq!(values(&got, "audience"), ["second"]);
    // `resource` adds: a token may be for several resources.
    assert_eq!(
        values(&got, "resource"),
        ["https://one.example", "https://two.example"]
    );

    let added = TokenExchange::new(endpoint(&server), subject())
        .audience("first")
        .add_audience("second");
    TokenSource::new(added).token().await.unwrap();
    let got = server.last();
    assert_eq!(values(&got, "audience"), ["first", "second"]);
}

#[tokio::test]
async fn token_exchange_actor_and_requested_type_set_once() {
    let server = TokenServer::start().await;
    let grant = TokenExchange::new(
        endpoint(&server),
        SubjectToken::token("subj", SubjectToken::ACCESS_TOKEN),
    )
    .actor(SubjectToken::token("actor-1", SubjectToken::ACCESS_TOKEN))
    .actor(SubjectToken::token("actor-2", SubjectToken::ACCESS_TOKEN))
    .requested_token_type(SubjectToken::JWT)
    .requested_token_type(SubjectToken::ACCESS_TOKEN);
    TokenSource::new(grant).token().await.unwrap();
    let got = server.last();
    assert_eq!(got.field("actor_token"), "actor-2");
    assert_eq!(
        got.field("requested_token_type"),
        SubjectToken::ACCESS_TOKEN
    );
}

#[tokio::test]
async fn client_credentials_audience_sets_and_add_audience_adds() {
    let server = TokenServer::start().await;
    let set = ClientCredentials::new(endpoint(&server))
        .param("audience", "from-param")
        .audience("first")
        .audience("second")
        .resource("https://one.example")
        .resource("https://two.example");
    TokenSource::new(set).token().await.unwrap();
    let got = server.last();
    assert_eq!(values(&got, "audience"), ["second"]);
    // `resource` adds: a token may be for several resources.
    assert_eq!(
        values(&got, "resource"),
        ["https://one.example", "https://two.example"]
    );

    let added = ClientCredentials::new(endpoint(&server))
        .add_audience("first")
        .add_audience("second");
    TokenSource::new(added).token().await.unwrap();
    let got = server.last();
    assert_eq!(values(&got, "audience"), ["first", "second"]);
}
