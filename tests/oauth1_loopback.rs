//! OAuth 1.0a over loopback: a provider built on axum verifies every
//! request with a verifier written from RFC 5849 (`oauth1_provider/`, no
//! code shared with the crate's signer), and a hyper-util client behind
//! `OAuth1Layer` calls it.

mod oauth1_provider;

use std::net::SocketAddr;

use axum::http::StatusCode;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use oauth1_provider::{provider, CONSUMER_KEY, CONSUMER_SECRET, RSA_PRIVATE, TOKEN, TOKEN_SECRET};
use tower::{ServiceBuilder, ServiceExt};
use tower_alf::oauth1::{
    ClientCredentials, OAuth1Layer, Placement, RsaKey, SignatureMethod, TokenCredentials,
};

fn layer(method: SignatureMethod, placement: Placement) -> OAuth1Layer {
    let client = if method.is_rsa() {
        ClientCredentials::rsa(CONSUMER_KEY, RsaKey::from_pem(RSA_PRIVATE).unwrap())
    } else {
        ClientCredentials::new(CONSUMER_KEY, CONSUMER_SECRET)
    };
    OAuth1Layer::new(client)
        .token(TokenCredentials::new(TOKEN, TOKEN_SECRET))
        .method(method)
        .placement(placement)
        .realm("loopback")
}

fn http_client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn form_request(addr: SocketAddr) -> http::Request<Full<Bytes>> {
    http::Request::post(format!(
        "http://{addr}/statuses/update?include_entities=true&x=%E2%98%83"
    ))
    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
    .body(Full::new(Bytes::from_static(
        b"status=Hello%20Ladies%20%2b%20Gentlemen&tag=a&tag=b&empty=",
    )))
    .unwrap()
}

async fn status(response: http::Response<hyper::body::Incoming>) -> (StatusCode, String) {
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn provider_accepts_every_method_and_placement() {
    let addr = provider().await;
    for method in SignatureMethod::ALL {
        for placement in [Placement::Header, Placement::Query, Placement::Body] {
            let client = ServiceBuilder::new()
                .layer(layer(method, placement))
                .service(http_client());
            let response = client.oneshot(form_request(addr)).await.unwrap();
            let (status, body) = status(response).await;
            assert_eq!(status, StatusCode::OK, "{method} {placement}: {body}");
        }
    }
}

#[tokio::test]
async fn provider_accepts_a_get_with_a_query() {
    let addr = provider().await;
    let client = ServiceBuilder::new()
        .layer(layer(SignatureMethod::HmacSha1, Placement::Header))
        .service(http_client());
    let request = http::Request::get(format!(
        "http://{addr}/photos?file=vacation.jpg&size=original"
    ))
    .body(Full::default())
    .unwrap();
    let (status, body) = status(client.oneshot(request).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn provider_accepts_a_json_body_with_its_hash() {
    let addr = provider().await;
    for method in SignatureMethod::ALL {
        let client = ServiceBuilder::new()
            .layer(layer(method, Placement::Header).body_hash(true))
            .service(http_client());
        let request = http::Request::post(format!("http://{addr}/api"))
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from_static(br#"{"amount":100}"#)))
            .unwrap();
        let (status, body) = status(client.oneshot(request).await.unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{method}: {body}");
    }
}

/// Changes the body between the signer and the wire, as a tampering proxy
/// would.
fn tamper(request: http::Request<Full<Bytes>>, body: &'static [u8]) -> http::Request<Full<Bytes>> {
    let (mut parts, _) = request.into_parts();
    parts.headers.remove(http::header::CONTENT_LENGTH);
    http::Request::from_parts(parts, Full::new(Bytes::from_static(body)))
}

#[tokio::test]
async fn provider_rejects_a_form_body_altered_after_signing() {
    let addr = provider().await;
    for method in SignatureMethod::ALL
        .into_iter()
        .filter(|m| *m != SignatureMethod::Plaintext)
    {
        let client = ServiceBuilder::new()
            .layer(layer(method, Placement::Header))
            .map_request(|request| tamper(request, b"status=Goodbye&tag=a&tag=b&empty="))
            .service(http_client());
        let (status, body) = status(client.oneshot(form_request(addr)).await.unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method}");
        assert_eq!(body, "oauth_problem=signature_invalid");
    }
}

#[tokio::test]
async fn provider_rejects_a_hashed_body_altered_after_signing() {
    let addr = provider().await;
    let client = ServiceBuilder::new()
        .layer(layer(SignatureMethod::HmacSha256, Placement::Header).body_hash(true))
        .map_request(|request| tamper(request, br#"{"amount":9999}"#))
        .service(http_client());
    let request = http::Request::post(format!("http://{addr}/api"))
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(br#"{"amount":100}"#)))
        .unwrap();
    let (status, body) = status(client.oneshot(request).await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, "oauth_problem=body hash mismatch");
}

#[tokio::test]
async fn provider_rejects_a_wrong_secret() {
    let addr = provider().await;
    let client = ServiceBuilder::new()
        .layer(
            OAuth1Layer::new(ClientCredentials::new(CONSUMER_KEY, "not the secret"))
                .token(TokenCredentials::new(TOKEN, TOKEN_SECRET)),
        )
        .service(http_client());
    let (status, _) = status(client.oneshot(form_request(addr)).await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
