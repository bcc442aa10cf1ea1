//! No secret the OAuth 1 flow sent comes back in its errors: a loopback
//! provider echoes every request it gets (the `Authorization` header, the
//! query, the body, as is and in Base64) in its error answers, and no form
//! of the consumer secret, the temporary token secret, the verifier or the
//! signature may appear in the error's `Debug`, `Display`, problem or body
//! excerpt, for `PLAINTEXT` (which sends both secrets) and `HMAC-SHA1`, in
//! every placement.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode, Uri},
    response::IntoResponse,
    routing::post,
    Router,
};
use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    Engine as _,
};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tower_alf::{
    oauth1::{
        ClientCredentials, Error, Flow, Placement, SignatureMethod, TemporaryCredentials, Verifier,
    },
    HttpClient,
};

const CONSUMER_SECRET: &str = "c0nsumer s&cret-Q7";
const TEMPORARY_SECRET: &str = "temp/secret~K9+x";
const VERIFIER: &str = "v3rifier-Z8p4";

/// Every signature the provider was sent.
type Seen = Arc<Mutex<Vec<String>>>;

/// What the provider saw: the header, the query and the body, joined.
fn echo(headers: &HeaderMap, uri: &Uri, body: &[u8]) -> String {
    let authorization = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    format!(
        "{authorization} {} {}",
        uri.query().unwrap_or_default(),
        String::from_utf8_lossy(body)
    )
}

/// The `oauth_signature` of a request, decoded, wherever it was placed.
fn signature_of(text: &str) -> Option<String> {
    let at = text.find("oauth_signature=")? + "oauth_signature=".len();
    let rest = text[at..].trim_start_matches('"');
    let end = rest.find(['"', '&', ' ', ',']).unwrap_or(rest.len());
    Some(
        form_urlencoded::parse(format!("s={}", &rest[..end]).as_bytes())
            .next()?
            .1
            .into_owned(),
    )
}

async fn provider() -> (SocketAddr, Seen) {
    let seen = Seen::default();
    let record = |seen: &Seen, text: &str| {
        if let Some(signature) = signature_of(text) {
            seen.lock().unwrap().push(signature);
        }
    };
    let app = Router::new()
        .route(
            "/form",
            post(
                move |State(seen): State<Seen>, headers: HeaderMap, uri: Uri, body: Bytes| async move {
                    let text = echo(&headers, &uri, &body);
                    record(&seen, &text);
                    let answer = form_urlencoded::Serializer::new(String::new())
                        .append_pair("oauth_problem", &text)
                        .append_pair("echo", &text)
                        .append_pair("b64", &STANDARD.encode(&text))
                        .append_pair("b64url", &URL_SAFE_NO_PAD.encode(&text))
                        .finish();
                    (StatusCode::UNAUTHORIZED, answer).into_response()
                },
            ),
        )
        .route(
            "/json",
            post(
                move |State(seen): State<Seen>, headers: HeaderMap, uri: Uri, body: Bytes| async move {
                    let text = echo(&headers, &uri, &body);
                    record(&seen, &text);
                    let answer = serde_json::json!({
                        "echo": text,
                        "b64": STANDARD.encode(&text),
                    });
                    (StatusCode::OK, answer.to_string()).into_response()
                },
            ),
        )
        .route(
            "/text",
            post(
                move |State(seen): State<Seen>, headers: HeaderMap, uri: Uri, body: Bytes| async move {
                    let text = echo(&headers, &uri, &body);
                    record(&seen, &text);
                    let b64 = STANDARD.encode(&text);
                    (StatusCode::BAD_GATEWAY, format!("upstream got {text} ({b64})")).into_response()
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

fn flow(method: SignatureMethod, placement: Placement) -> Flow {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    Flow::new(ClientCredentials::new("echo-client", CONSUMER_SECRET))
        .method(method)
        .placement(placement)
        .http_client(HttpClient::new(client))
}

/// The forms a server could echo `secret` in.
fn forms(secret: &str) -> Vec<String> {
    let form: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let mut rfc3986 = String::new();
    for b in secret.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            rfc3986.push(char::from(b));
        } else {
            rfc3986.push_str(&format!("%{b:02X}"));
        }
    }
    vec![
        secret.to_owned(),
        form,
        rfc3986.clone(),
        rfc3986.to_ascii_lowercase(),
        STANDARD.encode(secret),
        URL_SAFE_NO_PAD.encode(secret),
    ]
}

/// Every output of `e`, with what it is, for the failure message.
fn outputs(e: &Error) -> Vec<(&'static str, String)> {
    vec![
        ("Debug", format!("{e:?}")),
        ("Display", e.to_string()),
        (
            "body_excerpt",
            e.body_excerpt().unwrap_or_default().to_owned(),
        ),
        ("problem", e.problem().unwrap_or_default().to_owned()),
    ]
}

fn assert_no_secret(e: &Error, secrets: &[String], case: &str) {
    for (channel, text) in outputs(e) {
        for secret in secrets {
            for form in forms(secret) {
                assert!(
                    !text.contains(&form),
                    "{case}: {form:?} (a form of a sent secret) in {channel}: {text}"
                );
            }
        }
    }
}

const METHODS: [SignatureMethod; 2] = [SignatureMethod::Plaintext, SignatureMethod::HmacSha1];
const PLACEMENTS: [Placement; 3] = [Placement::Header, Placement::Query, Placement::Body];

#[tokio::test]
async fn request_token_errors_never_show_the_consumer_secret_or_the_signature() {
    let (addr, seen) = provider().await;
    for method in METHODS {
        for placement in PLACEMENTS {
            for path in ["form", "json", "text"] {
                let case = format!("{method} {placement:?} /{path}");
                seen.lock().unwrap().clear();
                let e = flow(method, placement)
                    .request_token(&format!("http://{addr}/{path}"), "oob")
                    .await
                    .unwrap_err();
                match path {
                    "form" => assert!(e.is_status() && e.problem().is_some(), "{case}: {e}"),
                    "json" => assert!(e.is_invalid_response(), "{case}: {e}"),
                    _ => assert!(e.is_status(), "{case}: {e}"),
                }
                assert!(e.body_excerpt().is_some(), "{case}: the provider echoed");
                let mut secrets = seen.lock().unwrap().clone();
                assert_eq!(secrets.len(), 1, "{case}: one request, signed");
                if method == SignatureMethod::Plaintext {
                    assert!(secrets[0].starts_with("c0nsumer%20s%26cret-Q7&"), "{case}");
                }
                secrets.push(CONSUMER_SECRET.to_owned());
                assert_no_secret(&e, &secrets, &case);
            }
        }
    }
}

#[tokio::test]
async fn access_token_errors_never_show_the_temporary_secret_or_the_verifier() {
    let (addr, seen) = provider().await;
    let temporary = TemporaryCredentials::new("temp-token", TEMPORARY_SECRET);
    let verifier = Verifier::new(VERIFIER);
    for method in METHODS {
        for placement in PLACEMENTS {
            for path in ["form", "json", "text"] {
                let case = format!("{method} {placement:?} /{path}");
                seen.lock().unwrap().clear();
                let e = flow(method, placement)
                    .access_token(&format!("http://{addr}/{path}"), &temporary, &verifier)
                    .await
                    .unwrap_err();
                assert!(e.body_excerpt().is_some(), "{case}: {e}");
                let mut secrets = seen.lock().unwrap().clone();
                assert_eq!(secrets.len(), 1, "{case}");
                if method == SignatureMethod::Plaintext {
                    assert!(
                        secrets[0] == "c0nsumer%20s%26cret-Q7&temp%2Fsecret~K9%2Bx",
                        "{case}: {}",
                        secrets[0]
                    );
                }
                secrets.extend([CONSUMER_SECRET, TEMPORARY_SECRET, VERIFIER].map(String::from));
                assert_no_secret(&e, &secrets, &case);
            }
        }
    }
}

#[test]
fn a_callback_problem_quoting_the_secrets_does_not_show_them() {
    let flow = Flow::new(ClientCredentials::new("echo-client", CONSUMER_SECRET));
    let temporary = TemporaryCredentials::new("temp-token", TEMPORARY_SECRET);
    let quoted = format!("{CONSUMER_SECRET} {TEMPORARY_SECRET} {VERIFIER}");
    let callback = form_urlencoded::Serializer::new(String::from("https://app.example/cb?"))
        .append_pair("oauth_verifier", VERIFIER)
        .append_pair("oauth_problem", &quoted)
        .finish();
    let e = flow.parse_callback(&callback, &temporary).unwrap_err();
    assert!(e.is_callback(), "{e}");
    assert!(e.to_string().contains("[redacted]"), "{e}");
    let secrets = [CONSUMER_SECRET, TEMPORARY_SECRET, VERIFIER].map(String::from);
    assert_no_secret(&e, &secrets, "callback");
}
