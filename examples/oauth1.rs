//! The OAuth 1.0a three-legged dance, end to end, with no setup: a provider
//! runs in this process on loopback (and checks every signature), a
//! `Flow` gets token credentials from it, and a hyper-util client behind
//! `OAuth1Layer` calls its API.
//!
//! ```text
//! cargo run --example oauth1 --features oauth1
//! ```

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    extract::State,
    http::{header, HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
    Router,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tower::{ServiceBuilder, ServiceExt};
use tower_alf::{
    oauth1::{
        signature::{base_string, base_string_uri, normalize_parameters},
        ClientCredentials, Flow, SignatureMethod,
    },
    HttpClient,
};

const CONSUMER_KEY: &str = "printer-client";
const CONSUMER_SECRET: &str = "printer-secret";
const CALLBACK: &str = "http://printer.example/ready";

#[tokio::main]
async fn main() -> Result<(), tower::BoxError> {
    let provider = Arc::new(Provider::default());
    let addr = serve(
        Router::new()
            .route("/oauth/request_token", post(request_token))
            .route("/oauth/authorize", get(authorize))
            .route("/oauth/access_token", post(access_token))
            .route("/api/photos", get(photos))
            .with_state(provider),
    )
    .await?;
    let base = format!("http://{addr}");
    println!("provider listening on {base}\n");

    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let flow = Flow::new(ClientCredentials::new(CONSUMER_KEY, CONSUMER_SECRET))
        .method(SignatureMethod::HmacSha1)
        .http_client(HttpClient::new(http.clone()));

    // 1. Temporary credentials (RFC 5849 §2.1).
    let temporary = flow
        .request_token(&format!("{base}/oauth/request_token"), CALLBACK)
        .await?;
    println!("1. request token:  {temporary:?} (callback confirmed)");

    // 2. The user approves at the authorization URL (§2.2). Here a "browser"
    //    opens it and the provider redirects straight back to the callback.
    let url = flow.authorization_url(&format!("{base}/oauth/authorize"), &temporary)?;
    println!("2. user opens:     {url}");
    let response = http
        .clone()
        .oneshot(http::Request::get(&url).body(Full::default())?)
        .await?;
    let callback = response.headers()[header::LOCATION].to_str()?.to_owned();
    println!("   redirected to:  {}", mask_verifier(&callback));

    // 3. The callback carries our token and the verifier; a forged one does not.
    let forged = format!("{CALLBACK}?oauth_token=someone-else&oauth_verifier=x");
    let e = flow.parse_callback(&forged, &temporary).unwrap_err();
    println!("3. forged callback refused: {e}");
    let verifier = flow.parse_callback(&callback, &temporary)?;
    println!("   verifier:       {verifier:?}");

    // 4. Token credentials (§2.3).
    let token = flow
        .access_token(&format!("{base}/oauth/access_token"), &temporary, &verifier)
        .await?;
    println!("4. access token:   {token:?}");

    // 5. Every API request is signed by the layer.
    let api = ServiceBuilder::new()
        .layer(flow.layer(token))
        .service(http.clone());
    for size in ["original", "thumbnail"] {
        let request =
            http::Request::get(format!("{base}/api/photos?file=vacation.jpg&size={size}"))
                .body(Full::default())?;
        let response = api.clone().oneshot(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        println!(
            "5. GET /api/photos?size={size:<9} → {status} {}",
            String::from_utf8_lossy(&body)
        );
    }

    // And a request signed with the wrong secret is refused.
    let wrong = Flow::new(ClientCredentials::new(CONSUMER_KEY, "not-the-secret"))
        .http_client(HttpClient::new(http.clone()));
    let e = wrong
        .request_token(&format!("{base}/oauth/request_token"), CALLBACK)
        .await
        .unwrap_err();
    println!("\nwrong consumer secret: {e} (problem: {:?})", e.problem());
    Ok(())
}

fn mask_verifier(url: &str) -> String {
    match url.find("oauth_verifier=") {
        Some(at) => format!("{}oauth_verifier=…", &url[..at]),
        None => url.to_owned(),
    }
}

// ===== the provider =====

#[derive(Default)]
struct Provider {
    /// Temporary token → (secret, verifier once authorized).
    temporary: Mutex<HashMap<String, (String, Option<String>)>>,
    /// Access token → secret.
    tokens: Mutex<HashMap<String, String>>,
}

fn random(prefix: &str) -> String {
    let tail: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(16)
        .collect();
    format!("{prefix}-{tail}")
}

fn problem(problem: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "application/x-www-form-urlencoded")],
        format!("oauth_problem={problem}"),
    )
        .into_response()
}

fn form(pairs: &[(&str, &str)]) -> Response {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    (
        [(header::CONTENT_TYPE, "application/x-www-form-urlencoded")],
        body,
    )
        .into_response()
}

/// The protocol parameters of `Authorization: OAuth …`, decoded.
fn oauth_params(headers: &HeaderMap) -> Vec<(String, String)> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("OAuth "))
        .unwrap_or_default();
    value
        .split(',')
        .filter_map(|param| {
            let (name, value) = param.trim().split_once('=')?;
            let value = value.trim_matches('"');
            let value = percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .ok()?;
            Some((name.to_owned(), value.into_owned()))
        })
        .collect()
}

/// Checks an HMAC-SHA1 signature as a provider does (§3.2), with the crate's
/// public signature pieces. Returns the protocol parameters, or the
/// `oauth_problem` to answer with.
fn check(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    token_secret: impl Fn(Option<&str>) -> Option<String>,
) -> Result<HashMap<String, String>, &'static str> {
    let params = oauth_params(headers);
    let get = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    if get("oauth_consumer_key").as_deref() != Some(CONSUMER_KEY) {
        return Err("consumer_key_unknown");
    }
    let secret = token_secret(get("oauth_token").as_deref()).ok_or("token_rejected")?;
    let host = headers[header::HOST].to_str().unwrap_or_default();
    let full: Uri = format!("http://{host}{uri}")
        .parse()
        .map_err(|_| "bad_uri")?;
    let mut signed: Vec<(String, String)> = full
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    signed.extend(
        params
            .iter()
            .filter(|(n, _)| n != "realm" && n != "oauth_signature")
            .cloned(),
    );
    let base = base_string(
        method,
        &base_string_uri(&full).map_err(|_| "bad_uri")?,
        &normalize_parameters(signed),
    );
    let expected = SignatureMethod::HmacSha1
        .sign(&base, CONSUMER_SECRET, &secret, None)
        .map_err(|_| "signature_method_rejected")?;
    if get("oauth_signature").as_deref() != Some(expected.as_str()) {
        return Err("signature_invalid");
    }
    Ok(params.into_iter().collect())
}

async fn request_token(
    State(provider): State<Arc<Provider>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let params = match check(&method, &uri, &headers, |token| {
        token.is_none().then(String::new)
    }) {
        Ok(params) => params,
        Err(refused) => return problem(refused),
    };
    if params.get("oauth_callback").map(String::as_str) != Some(CALLBACK) {
        return problem("parameter_absent");
    }
    let (token, secret) = (random("request"), random("secret"));
    provider
        .temporary
        .lock()
        .unwrap()
        .insert(token.clone(), (secret.clone(), None));
    form(&[
        ("oauth_token", &token),
        ("oauth_token_secret", &secret),
        ("oauth_callback_confirmed", "true"),
    ])
}

async fn authorize(State(provider): State<Arc<Provider>>, uri: Uri) -> Response {
    let token = form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .find(|(name, _)| name == "oauth_token")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    let mut temporary = provider.temporary.lock().unwrap();
    let Some((_, verifier)) = temporary.get_mut(&token) else {
        return (StatusCode::BAD_REQUEST, "unknown request token").into_response();
    };
    let code = random("verifier");
    *verifier = Some(code.clone());
    Redirect::to(&format!(
        "{CALLBACK}?oauth_token={token}&oauth_verifier={code}"
    ))
    .into_response()
}

async fn access_token(
    State(provider): State<Arc<Provider>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let lookup = |token: Option<&str>| {
        let temporary = provider.temporary.lock().unwrap();
        temporary.get(token?).map(|(secret, _)| secret.clone())
    };
    let params = match check(&method, &uri, &headers, lookup) {
        Ok(params) => params,
        Err(refused) => return problem(refused),
    };
    let token = params["oauth_token"].clone();
    let Some((_, Some(verifier))) = provider.temporary.lock().unwrap().remove(&token) else {
        return problem("token_rejected");
    };
    if params.get("oauth_verifier") != Some(&verifier) {
        return problem("verifier_invalid");
    }
    let (token, secret) = (random("access"), random("secret"));
    provider
        .tokens
        .lock()
        .unwrap()
        .insert(token.clone(), secret.clone());
    form(&[("oauth_token", &token), ("oauth_token_secret", &secret)])
}

async fn photos(
    State(provider): State<Arc<Provider>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let lookup = |token: Option<&str>| provider.tokens.lock().unwrap().get(token?).cloned();
    match check(&method, &uri, &headers, lookup) {
        Ok(_) => (StatusCode::OK, "[\"vacation.jpg\"] signature ok").into_response(),
        Err(refused) => problem(refused),
    }
}

async fn serve(app: Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}
