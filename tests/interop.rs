//! Interop: the crate against a real, third-party authorization server,
//! `oidc-provider` (the certified OpenID Connect server for Node.js),
//! started on loopback by each test from `tests/interop/server.mjs`.
//!
//! Needs `node` (20 or later). The server's packages are installed from the
//! npm registry by the first test that needs them (`npm ci --prefix
//! tests/interop`, from the committed lockfile), so
//! `cargo test --all-features --test interop` is all it takes. Without
//! `node` every test here fails and says how to install it.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use serde_json::Value;
use tower::{ServiceBuilder, ServiceExt};
use tower_alf::{
    discovery::ServerMetadata,
    grant::{ClientCredentials, RefreshTokenGrant, SubjectToken, TokenExchange},
    jwt::PrivateKey,
    BearerAuthLayer, ClientAuth, HttpClient, TokenEndpoint, TokenSource,
};

const RSA_KEY: &str = include_str!("fixtures/rsa_pkcs1.pem");
const P256_KEY: &str = include_str!("fixtures/p256_sec1.pem");

/// The running oidc-provider; killed when dropped.
struct Provider {
    child: Child,
    issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Installs oidc-provider from the lockfile once, when it is missing.
fn install(dir: &std::path::Path, how: &str) {
    static INSTALLED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if *installed || dir.join("node_modules/oidc-provider/package.json").exists() {
        *installed = true;
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--prefix"])
        .arg(dir)
        .stdout(Stdio::null())
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "`npm ci --prefix tests/interop` failed: {how}"
    );
    *installed = true;
}

impl Provider {
    fn start() -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
        const HOW: &str = "install Node.js 20 or later (e.g. `apt-get install -y nodejs npm`), \
                           then `npm ci --prefix tests/interop`";
        match Command::new("node").arg("--version").output() {
            Ok(out) if out.status.success() => {}
            _ => panic!("the interop tests need `node`, which is not installed: {HOW}"),
        }
        install(&dir, HOW);
        // NOTE: on a loaded 2-core machine one node process in a few dozen
        // has been seen to print its import-time warnings and then never
        // reach `listen`'s callback. A start that is not ready within 30 s is
        // killed and tried again, three times in all.
        for attempt in 1..=3 {
            let mut child = Command::new("node")
                .arg(dir.join("server.mjs"))
                .arg("0")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("node starts");
            let stdout = child.stdout.take().unwrap();
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(issuer) = line.strip_prefix("ready ") {
                        let _ = tx.send(issuer.to_owned());
                    }
                }
            });
            let mut provider = Provider {
                child,
                issuer: String::new(),
            };
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(issuer) => {
                    provider.issuer = issuer;
                    return provider;
                }
                Err(_) => eprintln!("oidc-provider not ready after 30 s (start {attempt} of 3)"),
            }
        }
        panic!("oidc-provider printed `ready` within 30 s in none of 3 starts");
    }

    fn token_url(&self) -> String {
        format!("{}/token", self.issuer)
    }

    fn endpoint(&self, auth: ClientAuth) -> TokenEndpoint {
        TokenEndpoint::builder(self.token_url())
            .client_auth(auth)
            .build()
            .unwrap()
    }

    /// Calls the protected resource through `BearerAuthLayer`.
    async fn whoami(&self, tokens: &TokenSource) -> (StatusCode, Value) {
        let client = ServiceBuilder::new()
            .layer(BearerAuthLayer::new(tokens.clone()))
            .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
        let request = Request::get(format!("{}/api/whoami", self.issuer))
            .body(Full::default())
            .unwrap();
        let response = client.oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// A refresh token for `client_id`, as an authorization-code flow would
    /// have issued it (the server's test-only route).
    async fn refresh_token(&self, client_id: &str) -> String {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let request = Request::post(format!(
            "{}/test/refresh-token?client_id={client_id}",
            self.issuer
        ))
        .body(Full::default())
        .unwrap();
        let body = client
            .request(request)
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        let json: Value = serde_json::from_slice(&body).unwrap();
        json["refresh_token"].as_str().unwrap().to_owned()
    }
}

/// A client-credentials token for `auth`, used at the protected resource.
async fn client_credentials_reach_the_resource(auth: ClientAuth) {
    let provider = Provider::start();
    let client_id = auth.client_id().to_owned();
    let grant = ClientCredentials::new(provider.endpoint(auth)).scope("api:read");
    let tokens = TokenSource::new(grant);
    let token = tokens.token().await.unwrap();
    assert_eq!(token.scope(), Some("api:read"));
    let (status, body) = provider.whoami(&tokens).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["client_id"], client_id.as_str());
    assert_eq!(body["scope"], "api:read");
}

#[tokio::test]
async fn client_credentials_with_client_secret_basic() {
    // The secret has characters RFC 6749 §2.3.1 form-encodes.
    client_credentials_reach_the_resource(ClientAuth::basic(
        "cc-basic",
        "basic secret/with+chars&:",
    ))
    .await;
}

#[tokio::test]
async fn client_credentials_with_client_secret_post() {
    client_credentials_reach_the_resource(ClientAuth::post("cc-post", "post-secret")).await;
}

#[tokio::test]
async fn client_credentials_with_client_secret_jwt() {
    let secret = "client-secret-jwt-shared-secret-0123456789";
    client_credentials_reach_the_resource(ClientAuth::client_secret_jwt("cc-jwt", secret)).await;
}

#[tokio::test]
async fn client_credentials_with_private_key_jwt_rs256() {
    let key = PrivateKey::from_pem(RSA_KEY).unwrap();
    client_credentials_reach_the_resource(ClientAuth::private_key_jwt("cc-rs256", key)).await;
}

#[tokio::test]
async fn client_credentials_with_private_key_jwt_es256() {
    let key = PrivateKey::from_pem(P256_KEY).unwrap();
    client_credentials_reach_the_resource(ClientAuth::private_key_jwt("cc-es256", key)).await;
}

#[tokio::test]
async fn private_key_jwt_with_the_issuer_as_audience() {
    let provider = Provider::start();
    let key = PrivateKey::from_pem(P256_KEY).unwrap();
    let auth = ClientAuth::private_key_jwt("cc-es256", key).assertion_audience(&provider.issuer);
    let tokens = TokenSource::new(ClientCredentials::new(provider.endpoint(auth)));
    tokens.token().await.unwrap();
}

#[tokio::test]
async fn a_wrong_secret_is_invalid_client() {
    let provider = Provider::start();
    let grant = ClientCredentials::new(provider.endpoint(ClientAuth::post("cc-post", "wrong")));
    let e = TokenSource::new(grant).token().await.unwrap_err();
    assert_eq!(e.oauth_error().unwrap().code().as_str(), "invalid_client");
    assert!(!e.is_reauthorization_required());
}

#[tokio::test]
async fn refresh_tokens_are_rotated_and_a_reused_one_needs_reauthorization() {
    let provider = Provider::start();
    let original = provider.refresh_token("app").await;
    let grant = RefreshTokenGrant::new(
        provider.endpoint(ClientAuth::basic("app", "app-secret")),
        original.as_str(),
    );
    let tokens = TokenSource::new(grant.clone());

    let first = tokens.token().await.unwrap();
    let rotated = grant.refresh_token().secret().to_owned();
    assert_ne!(rotated, original, "oidc-provider rotates on every use");
    assert_eq!(first.refresh_token().unwrap().secret(), rotated);
    let (status, body) = provider.whoami(&tokens).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["sub"], "alice");

    let second = tokens.invalidate(first.id()).await.unwrap();
    assert_ne!(second.access_token(), first.access_token());
    assert_ne!(grant.refresh_token().secret(), rotated);

    // The first refresh token was consumed: reusing it is invalid_grant.
    let stale = RefreshTokenGrant::new(
        provider.endpoint(ClientAuth::basic("app", "app-secret")),
        original.as_str(),
    );
    let e = TokenSource::new(stale).token().await.unwrap_err();
    assert!(e.is_reauthorization_required(), "{e}");
}

#[tokio::test]
async fn a_public_client_refreshes_with_auth_method_none() {
    let provider = Provider::start();
    let refresh_token = provider.refresh_token("cli").await;
    let grant = RefreshTokenGrant::new(provider.endpoint(ClientAuth::none("cli")), refresh_token);
    let tokens = TokenSource::new(grant);
    let (status, _) = provider.whoami(&tokens).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn discovery_chooses_a_supported_method_and_gets_a_token() {
    let provider = Provider::start();
    let metadata = ServerMetadata::discover(&provider.issuer, &HttpClient::default())
        .await
        .unwrap();
    assert_eq!(metadata.token_endpoint(), provider.token_url());
    assert!(metadata
        .token_endpoint_auth_methods_supported()
        .iter()
        .any(|m| m == "private_key_jwt"));
    let key = PrivateKey::from_pem(P256_KEY).unwrap();
    let auth = metadata
        .choose_client_auth([
            ClientAuth::private_key_jwt("cc-es256", key),
            ClientAuth::basic("cc-es256", "unused"),
        ])
        .unwrap();
    assert_eq!(auth.method_name(), "private_key_jwt");
    let endpoint = metadata
        .token_endpoint_builder()
        .client_auth(auth)
        .build()
        .unwrap();
    let tokens = TokenSource::new(ClientCredentials::new(endpoint).scope("api:write"));
    let (status, body) = provider.whoami(&tokens).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["scope"], "api:write");
}

/// oidc-provider has no built-in token exchange; `server.mjs` registers a
/// minimal RFC 8693 grant through its extension point, so this checks the
/// request against oidc-provider's parameter parsing and client
/// authentication, and the chain end to end.
#[tokio::test]
async fn token_exchange_of_another_sources_token() {
    let provider = Provider::start();
    let own = TokenSource::new(
        ClientCredentials::new(provider.endpoint(ClientAuth::post("cc-post", "post-secret")))
            .scope("api:read"),
    );
    let key = PrivateKey::from_pem(P256_KEY).unwrap();
    let exchange = TokenExchange::new(
        provider.endpoint(ClientAuth::private_key_jwt("cc-es256", key)),
        SubjectToken::source(own),
    )
    .audience("backend")
    .requested_token_type(SubjectToken::ACCESS_TOKEN)
    .scope("api:write");
    let tokens = TokenSource::new(exchange);
    let (status, body) = provider.whoami(&tokens).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["client_id"], "cc-es256");
    assert_eq!(body["subject_client_id"], "cc-post");
    assert_eq!(body["audience"], "backend");
    assert_eq!(body["scope"], "api:write");
}

/// A browser for oidc-provider's development sign-in screens: follows
/// redirects with a cookie jar, signs in as `alice` and consents, until the
/// authorization server redirects to `redirect_prefix`; then calls that
/// callback and returns its status.
async fn sign_in(start: &str, redirect_prefix: &str) -> StatusCode {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut cookies: HashMap<String, String> = HashMap::new();
    let mut url = start.to_owned();
    let mut form: Option<String> = None;
    for _ in 0..20 {
        if url.starts_with(redirect_prefix) {
            let response = client.get(url.parse().unwrap()).await.unwrap();
            return response.status();
        }
        let mut request = match form.take() {
            Some(body) => Request::post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from(body))),
            None => Request::get(&url).body(Full::default()),
        }
        .unwrap();
        let jar: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if !jar.is_empty() {
            request
                .headers_mut()
                .insert("cookie", jar.join("; ").parse().unwrap());
        }
        let response = client.request(request).await.unwrap();
        for value in response.headers().get_all("set-cookie") {
            let pair = value.to_str().unwrap().split(';').next().unwrap();
            if let Some((name, value)) = pair.split_once('=') {
                cookies.insert(name.trim().to_owned(), value.to_owned());
            }
        }
        let status = response.status();
        if status.is_redirection() {
            let location = response.headers()["location"].to_str().unwrap().to_owned();
            url = if location.starts_with('/') {
                let origin: String = url.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
                format!("{origin}{location}")
            } else {
                location
            };
            continue;
        }
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let page = String::from_utf8_lossy(&body);
        assert_eq!(status, StatusCode::OK, "{url}: {page}");
        form = Some(if page.contains(r#"name="prompt" value="login""#) {
            "prompt=login&login=alice&password=any".to_owned()
        } else if page.contains(r#"name="prompt" value="consent""#) {
            "prompt=consent".to_owned()
        } else {
            panic!("an unexpected page at {url}: {page}");
        });
    }
    panic!("the sign-in did not reach the redirect URI");
}

/// `alf login` against oidc-provider: discovery, PKCE, the loopback
/// redirect, a token set saved to a file; then the saved refresh token
/// feeds the refresh-token grant.
#[tokio::test]
async fn alf_login_with_pkce_then_refresh_from_the_saved_token_set() {
    use tokio::io::AsyncBufReadExt;

    let provider = Provider::start();
    let path = std::env::temp_dir().join(format!("alf-interop-login-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_alf"))
        .args(["login", "--issuer", &provider.issuer, "--client-id", "cli"])
        .args(["--scope", "openid", "--scope", "offline_access"])
        .args(["--param", "prompt=consent"])
        .args(["--save", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = stderr
            .next_line()
            .await
            .unwrap()
            .expect("alf prints the URL");
        if line.starts_with("http") {
            break line;
        }
    };
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    let redirect_uri = form_urlencoded::parse(url.split_once('?').unwrap().1.as_bytes())
        .find(|(k, _)| k == "redirect_uri")
        .unwrap()
        .1
        .into_owned();
    let status = sign_in(&url, &redirect_uri).await;
    assert_eq!(status, StatusCode::OK);
    let out = child.wait_with_output().await.unwrap();
    let mut rest = String::new();
    while let Ok(Some(line)) = stderr.next_line().await {
        rest.push_str(&line);
    }
    assert!(out.status.success(), "{rest}");
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["refresh_token"], true);

    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    std::fs::remove_file(&path).unwrap();
    let refresh_token = saved["refresh_token"].as_str().unwrap().to_owned();
    let grant = RefreshTokenGrant::new(
        provider.endpoint(ClientAuth::none("cli")),
        refresh_token.as_str(),
    );
    let tokens = TokenSource::new(grant.clone());
    let (status, body) = provider.whoami(&tokens).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["sub"], "alice");
    assert_eq!(body["client_id"], "cli");
    assert_ne!(grant.refresh_token().secret(), refresh_token, "rotated");
}

/// DPoP against oidc-provider with its nonce requirement on: a DPoP-bound
/// client-credentials token (the client is registered with
/// `dpop_bound_access_tokens`), used at a resource that verifies the proof
/// and the binding and issues nonces of its own on another origin.
#[tokio::test]
async fn dpop_bound_client_credentials_reach_a_resource_that_checks_the_binding() {
    use tower_alf::{dpop::DPoPKey, TokenType};

    let provider = Provider::start();
    let key = DPoPKey::generate().unwrap();
    let endpoint = TokenEndpoint::builder(provider.token_url())
        .client_auth(ClientAuth::basic("cc-dpop", "dpop-secret"))
        .dpop(key.clone())
        .build()
        .unwrap();
    let tokens = TokenSource::new(ClientCredentials::new(endpoint).scope("api:read"));
    let token = tokens.token().await.unwrap();
    assert_eq!(token.token_type(), TokenType::DPoP);
    assert_eq!(token.dpop_thumbprint(), Some(key.thumbprint()));

    // The issuer is http://127.0.0.1:PORT; the resource is another origin.
    let resource = format!(
        "{}/api/dpop",
        provider.issuer.replace("127.0.0.1", "localhost")
    );
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(tokens.clone()))
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    for round in 1..=3 {
        let request = Request::get(&resource).body(Full::default()).unwrap();
        let response = client.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "round {round}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["client_id"], "cc-dpop");
        assert_eq!(body["jkt"], key.thumbprint());
        // One nonce challenge, on the first request; then the rotated nonce
        // of each answer is used by the next request.
        assert_eq!(body["nonce_challenges"], 1);
    }
    let stats = tokens.stats();
    assert_eq!(stats.fetches, 1);
    assert_eq!(stats.replays, 1);

    // Without a DPoP key the same client gets no token.
    let bearer = TokenSource::new(ClientCredentials::new(
        provider.endpoint(ClientAuth::basic("cc-dpop", "dpop-secret")),
    ));
    assert!(bearer.token().await.is_err());
}

/// The user's side of the device flow on oidc-provider's pages, as a
/// browser with a cookie jar would do it: from `start` (the verification
/// URI, complete with the user code), submit each page's form (the code,
/// the confirmation or, with `abort`, its abort button, the development
/// sign-in as `alice`, the consent) until a page without a form; its status
/// and text.
async fn device_user(start: &str, abort: bool) -> (StatusCode, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let origin: String = start.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
    let absolute = |url: &str| {
        if url.starts_with('/') {
            format!("{origin}{url}")
        } else {
            url.to_owned()
        }
    };
    let mut cookies: HashMap<String, String> = HashMap::new();
    let mut url = start.to_owned();
    let mut form: Option<String> = None;
    let mut aborted = false;
    for _ in 0..20 {
        let mut request = match form.take() {
            Some(body) => Request::post(&url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from(body))),
            None => Request::get(&url).body(Full::default()),
        }
        .unwrap();
        let jar: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if !jar.is_empty() {
            request
                .headers_mut()
                .insert("cookie", jar.join("; ").parse().unwrap());
        }
        let response = client.request(request).await.unwrap();
        for value in response.headers().get_all("set-cookie") {
            let pair = value.to_str().unwrap().split(';').next().unwrap();
            if let Some((name, value)) = pair.split_once('=') {
                cookies.insert(name.trim().to_owned(), value.to_owned());
            }
        }
        let status = response.status();
        if status.is_redirection() {
            url = absolute(response.headers()["location"].to_str().unwrap());
            continue;
        }
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let page = String::from_utf8_lossy(&body).into_owned();
        let form_fields = html_form(&page);
        // After an abort the server shows the code form again, with a note.
        let (Some((action, mut fields)), false) = (form_fields, aborted) else {
            return (status, page);
        };
        assert_eq!(status, StatusCode::OK, "{url}: {page}");
        if page.contains(r#"name="prompt" value="login""#) {
            fields.push(("login".into(), "alice".into()));
            fields.push(("password".into(), "any".into()));
        } else if page.contains("op.deviceConfirmForm") && abort {
            fields.push(("abort".into(), "yes".into()));
            aborted = true;
        }
        url = if action.is_empty() {
            url
        } else {
            absolute(&action)
        };
        form = Some(
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&fields)
                .finish(),
        );
    }
    panic!("the device sign-in did not end");
}

/// The first form of `page`: its action and its hidden inputs, unescaped.
fn html_form(page: &str) -> Option<(String, Vec<(String, String)>)> {
    let start = page.find("<form")?;
    let form = &page[start
        ..page[start..]
            .find("</form>")
            .map_or(page.len(), |e| start + e)];
    let attribute = |tag: &str, name: &str| -> Option<String> {
        let at = tag.find(&format!("{name}=\""))? + name.len() + 2;
        let value = &tag[at..at + tag[at..].find('"')?];
        Some(
            value
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&"),
        )
    };
    let head = &form[..form.find('>')?];
    let action = attribute(head, "action").unwrap_or_default();
    let fields = form
        .split("<input")
        .skip(1)
        .filter_map(|input| {
            let tag = &input[..input.find('>')?];
            tag.contains(r#"type="hidden""#)
                .then(|| Some((attribute(tag, "name")?, attribute(tag, "value")?)))
                .flatten()
        })
        .collect();
    Some((action, fields))
}

/// The device authorization grant against oidc-provider: the endpoint from
/// discovery, client_secret_basic on both requests, the user's side driven
/// through the pages while the client polls, then the token set hands over
/// to the refresh-token grant, which rotates.
#[tokio::test]
async fn device_flow_through_the_users_pages_then_refresh() {
    use tower_alf::grant::DeviceAuthorization;

    let provider = Provider::start();
    let metadata = ServerMetadata::discover(&provider.issuer, &HttpClient::default())
        .await
        .unwrap();
    let device_endpoint = metadata.device_authorization_endpoint().unwrap().to_owned();
    assert_eq!(device_endpoint, format!("{}/device/auth", provider.issuer));
    let endpoint = provider.endpoint(ClientAuth::basic("device-app", "device-secret"));
    let pending = DeviceAuthorization::new(endpoint.clone(), device_endpoint)
        .scope("openid")
        .scope("offline_access")
        .param("prompt", "consent")
        .start()
        .await
        .unwrap();
    assert_eq!(
        pending.verification_uri(),
        format!("{}/device", provider.issuer)
    );
    assert_eq!(
        pending.interval(),
        Duration::from_secs(5),
        "oidc-provider sends none"
    );
    let complete = pending.verification_uri_complete().unwrap().to_owned();
    assert!(complete.contains(pending.user_code()), "{complete}");

    let (token_set, (status, page)) = tokio::join!(pending.poll(), device_user(&complete, false));
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Sign-in Success"), "{page}");
    let token_set = token_set.unwrap();
    assert!(token_set.refresh_token().is_some());

    let grant = RefreshTokenGrant::from_token(endpoint, token_set.clone()).unwrap();
    let tokens = TokenSource::new(grant.clone());
    let (status, body) = provider.whoami(&tokens).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["sub"], "alice");
    assert_eq!(body["client_id"], "device-app");
    let first = tokens.token().await.unwrap();
    assert_eq!(first.access_token(), token_set.access_token());
    let refreshed = tokens.invalidate(first.id()).await.unwrap();
    assert_ne!(refreshed.access_token(), token_set.access_token());
    assert_ne!(
        grant.refresh_token().secret(),
        token_set.refresh_token().unwrap().secret(),
        "rotated"
    );
    // The device code was used: polling again is refused.
    let e = pending.poll().await.unwrap_err();
    assert!(e.is_oauth(), "{e}");
}

/// The user aborts on the confirmation page: a public client's poll ends
/// with `access_denied`.
#[tokio::test]
async fn device_flow_aborted_by_the_user_is_access_denied() {
    use tower_alf::grant::DeviceAuthorization;

    let provider = Provider::start();
    let endpoint = provider.endpoint(ClientAuth::none("device-cli"));
    let pending = DeviceAuthorization::new(endpoint, format!("{}/device/auth", provider.issuer))
        .scope("openid")
        .start()
        .await
        .unwrap();
    let complete = pending.verification_uri_complete().unwrap().to_owned();
    let (outcome, (_, page)) = tokio::join!(pending.poll(), device_user(&complete, true));
    assert!(page.contains("request was interrupted"), "{page}");
    let e = outcome.unwrap_err();
    assert!(e.is_access_denied(), "{e}");
}

/// `alf login --device` against oidc-provider: the device endpoint from
/// discovery, the complete verification URI printed, the user's side
/// driven through the pages while alf polls, the token set saved.
#[tokio::test]
async fn alf_login_device_through_the_users_pages() {
    use tokio::io::AsyncBufReadExt;

    let provider = Provider::start();
    let dir = std::env::temp_dir().join(format!("alf-interop-device-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tokens.json");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_alf"))
        .args(["login", "--device", "--issuer", &provider.issuer])
        .args(["--client-id", "device-cli"])
        .args(["--scope", "openid", "--scope", "offline_access"])
        .args(["--param", "prompt=consent"])
        .args(["--save", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = stderr
            .next_line()
            .await
            .unwrap()
            .expect("alf prints the URL");
        if line.starts_with("http") {
            break line;
        }
    };
    assert!(
        url.starts_with(&format!("{}/device?user_code=", provider.issuer)),
        "{url}"
    );
    let (status, page) = device_user(&url, false).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("alf exits")
        .unwrap();
    let mut rest = String::new();
    while let Ok(Some(line)) = stderr.next_line().await {
        rest.push_str(&line);
    }
    assert!(out.status.success(), "{rest}");
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["token_type"], "Bearer");
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(saved["access_token"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));
    assert_eq!(printed["refresh_token"], saved["refresh_token"].is_string());
}

/// `private_key_jwt` on the device authorization request: the assertion's
/// audience is the endpoint it is sent to, which oidc-provider accepts.
#[tokio::test]
async fn device_authorization_with_private_key_jwt() {
    use tower_alf::grant::DeviceAuthorization;

    let provider = Provider::start();
    let key = PrivateKey::from_pem(P256_KEY).unwrap();
    let endpoint = provider.endpoint(ClientAuth::private_key_jwt("device-es256", key));
    let pending = DeviceAuthorization::new(endpoint, format!("{}/device/auth", provider.issuer))
        .start()
        .await
        .unwrap();
    assert!(!pending.user_code().is_empty());
    assert!(
        pending.expires_in() > Duration::from_secs(500),
        "ttl.DeviceCode is 600 s"
    );

    let wrong = PrivateKey::from_pem(RSA_KEY).unwrap();
    let endpoint = provider.endpoint(ClientAuth::private_key_jwt("device-es256", wrong));
    let e = DeviceAuthorization::new(endpoint, format!("{}/device/auth", provider.issuer))
        .start()
        .await
        .unwrap_err();
    assert_eq!(
        e.oauth_error().unwrap().code().as_str(),
        "invalid_client",
        "{e}"
    );
}
