//! Interop: the three-legged OAuth 1.0a dance of [`Flow`] against a real
//! provider built on Authlib's server classes (`authlib.oauth1`'s
//! `AuthorizationServer` and `ResourceProtector`, which check every
//! signature with Authlib's own code), started on loopback by each test
//! from `tests/authlib_oauth1/provider.py`.
//!
//! Needs `python3` with `venv`: the pinned packages are installed from PyPI
//! into `tests/authlib_oauth1/.venv` by the first test (see
//! `tests/authlib_oauth1/mod.rs`).

mod authlib_oauth1;

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use bytes::Bytes;
use http::{header::CONTENT_TYPE, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use tower::{ServiceBuilder, ServiceExt};
use tower_alf::{
    oauth1::{
        ClientCredentials, Flow, Placement, RsaKey, SignatureMethod, TemporaryCredentials,
        TokenCredentials,
    },
    HttpClient,
};

const RSA_PRIVATE: &str = include_str!("fixtures/oauth1/test-only-rsa-key.pem");
/// The secret of `hmac-client` in `provider.py`: a space, `&` and `~`.
const HMAC_SECRET: &str = "authlib c0nsumer&secret~";
const CALLBACK: &str = "http://127.0.0.1:9/callback";

/// The running Authlib provider; killed when dropped.
struct Provider {
    child: Child,
    base: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Provider {
    fn start() -> Self {
        let python = authlib_oauth1::python();
        let dir = authlib_oauth1::dir();
        let mut child = Command::new(python)
            .arg(dir.join("provider.py"))
            .arg(dir.join("../fixtures/oauth1/test-only-rsa-key.pub.pem"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the Authlib provider starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(base) = line.strip_prefix("ready ") {
                    let _ = tx.send(base.to_owned());
                }
            }
        });
        let mut provider = Provider {
            child,
            base: String::new(),
        };
        provider.base = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the Authlib provider printed `ready` within 60 s");
        provider
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn hyper_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn flow(method: SignatureMethod) -> Flow {
    let client = if method.is_rsa() {
        ClientCredentials::rsa("rsa-client", RsaKey::from_pem(RSA_PRIVATE).unwrap())
    } else {
        ClientCredentials::new("hmac-client", HMAC_SECRET)
    };
    Flow::new(client)
        .method(method)
        .http_client(HttpClient::new(hyper_client()))
}

async fn send(request: Request<Full<Bytes>>) -> (StatusCode, http::HeaderMap, String) {
    let response = hyper_client().request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// Step 2 as the user's browser does it once the user approved: opens the
/// authorization URL (`user=` is this provider's stand-in for a login) and
/// gets the redirect to the callback.
async fn authorize(provider: &Provider, flow: &Flow, temporary: &TemporaryCredentials) -> String {
    let url = flow
        .authorization_url(&provider.url("/authorize"), temporary)
        .unwrap();
    let (status, headers, body) = send(
        Request::get(format!("{url}&user=alice"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FOUND, "{body}");
    let location = headers["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(CALLBACK), "{location}");
    location
}

/// The whole dance: temporary credentials, authorization, token
/// credentials.
async fn dance(provider: &Provider, flow: &Flow) -> TokenCredentials {
    let temporary = flow
        .request_token(&provider.url("/initiate"), CALLBACK)
        .await
        .expect("Authlib's temporary credentials (oauth_callback_confirmed=True) are accepted");
    let callback = authorize(provider, flow, &temporary).await;
    let verifier = flow.parse_callback(&callback, &temporary).unwrap();
    flow.access_token(&provider.url("/token"), &temporary, &verifier)
        .await
        .expect("Authlib issues token credentials")
}

/// Calls the protected resource through the flow's layer, with a query
/// of reserved and non-ASCII characters and, for POST, a form body.
async fn call_resource(
    provider: &Provider,
    flow: &Flow,
    token: TokenCredentials,
    post: bool,
) -> (StatusCode, String) {
    let client = ServiceBuilder::new()
        .layer(flow.layer(token))
        .service(hyper_client());
    let uri = provider.url("/resource?q=caf%C3%A9%20%2B%20cr%C3%A8me&tag=b&tag=a&empty=");
    let request = if post {
        Request::post(uri)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from_static(
                b"status=Hello+Ladies%20%2B%20Gentlemen%21&n=%E2%98%83",
            )))
    } else {
        Request::get(uri).body(Full::default())
    }
    .unwrap();
    let response = client.oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn the_whole_dance_works(method: SignatureMethod) {
    let provider = Provider::start();
    let client_id = if method.is_rsa() {
        "rsa-client"
    } else {
        "hmac-client"
    };
    for placement in [Placement::Header, Placement::Query, Placement::Body] {
        let flow = flow(method).placement(placement);
        let token = dance(&provider, &flow).await;
        for post in [false, true] {
            let (status, body) = call_resource(&provider, &flow, token.clone(), post).await;
            assert_eq!(
                (status, body.as_str()),
                (
                    StatusCode::OK,
                    format!("hello alice via {client_id}").as_str()
                ),
                "{method} {placement} post={post}"
            );
        }
    }
}

#[tokio::test]
async fn three_legged_dance_with_hmac_sha1_against_authlib() {
    the_whole_dance_works(SignatureMethod::HmacSha1).await;
}

#[tokio::test]
async fn three_legged_dance_with_rsa_sha1_against_authlib() {
    the_whole_dance_works(SignatureMethod::RsaSha1).await;
}

#[tokio::test]
async fn authlib_refuses_a_call_signed_with_the_wrong_token_secret() {
    let provider = Provider::start();
    let flow = flow(SignatureMethod::HmacSha1);
    let token = dance(&provider, &flow).await;
    let forged = TokenCredentials::new(token.token(), "not-the-secret");
    let (status, body) = call_resource(&provider, &flow, forged, false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("invalid_signature"), "{body}");
    // The real secret still works: the provider checks, it does not refuse all.
    let (status, _) = call_resource(&provider, &flow, token, false).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn authlib_refuses_a_verifier_that_was_not_issued() {
    let provider = Provider::start();
    let flow = flow(SignatureMethod::HmacSha1);
    let temporary = flow
        .request_token(&provider.url("/initiate"), CALLBACK)
        .await
        .unwrap();
    authorize(&provider, &flow, &temporary).await;
    let wrong = tower_alf::oauth1::Verifier::new("guessed");
    let e = flow
        .access_token(&provider.url("/token"), &temporary, &wrong)
        .await
        .unwrap_err();
    assert!(e.is_status(), "{e}");
    assert_eq!(e.status_code(), Some(StatusCode::BAD_REQUEST), "{e}");
}
