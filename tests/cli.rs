//! The `alf` binary, run as a user runs it, against a token endpoint and an
//! API served over loopback by this test process.

#[path = "recording_endpoint/jws.rs"]
mod jws;
mod oauth1_provider;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::{any, post},
    Json, Router,
};
use tokio::process::Command;

/// alf without a token cache between runs (no cache directory: neither
/// `$XDG_CACHE_HOME` nor `$HOME`), as these tests were written; the cache
/// has its own tests in tests/cli_cache.rs.
fn alf_uncached() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_alf"));
    command.env_remove("XDG_CACHE_HOME").env("HOME", "");
    command
}

const SECRET: &str = "cli-s3cr3t";

/// How the API treats tokens.
#[derive(Clone, Copy, PartialEq)]
enum Api {
    /// Accepts every token.
    Accept,
    /// Rejects the first token issued, accepts later ones.
    RejectFirst,
    /// Rejects every token.
    RejectAll,
}

type Call = (Method, Uri, HeaderMap, Bytes);

struct Server {
    api: Api,
    tokens_issued: AtomicUsize,
    api_calls: AtomicUsize,
    /// Method, URI, headers and body of the last API call.
    last: Mutex<Option<Call>>,
}

impl Server {
    fn last(&self) -> Call {
        self.last
            .lock()
            .unwrap()
            .clone()
            .expect("the API was called")
    }
}

async fn start(api: Api) -> (Arc<Server>, SocketAddr) {
    let server = Arc::new(Server {
        api,
        tokens_issued: AtomicUsize::new(0),
        api_calls: AtomicUsize::new(0),
        last: Mutex::new(None),
    });
    let app = Router::new()
        .route("/token", post(token))
        .route("/api/{*rest}", any(resource))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (server, addr)
}

async fn token(State(server): State<Arc<Server>>, headers: HeaderMap, body: String) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    if form.get("client_secret").map(String::as_str) != Some(SECRET) {
        let error = serde_json::json!({
            "error": "invalid_client",
            "error_description": "bad client credentials",
        });
        return (StatusCode::UNAUTHORIZED, Json(error)).into_response();
    }
    let n = server.tokens_issued.fetch_add(1, Ordering::SeqCst) + 1;
    Json(serde_json::json!({
        "access_token": format!("tok-{n}"),
        // A client that proves a DPoP key gets a DPoP-bound token.
        "token_type": if headers.contains_key("dpop") { "DPoP" } else { "Bearer" },
        "expires_in": 3600,
    }))
    .into_response()
}

async fn resource(
    State(server): State<Arc<Server>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    server.api_calls.fetch_add(1, Ordering::SeqCst);
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("DPoP "))
        })
        .unwrap_or_default()
        .to_owned();
    *server.last.lock().unwrap() = Some((method, uri, headers, body.clone()));
    let accepted = match server.api {
        Api::Accept => true,
        Api::RejectFirst => token != "tok-1",
        Api::RejectAll => false,
    };
    if !accepted {
        let challenge = [("www-authenticate", r#"Bearer error="invalid_token""#)];
        return (StatusCode::UNAUTHORIZED, challenge).into_response();
    }
    ([("x-token", token)], body).into_response()
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `alf` with the client options for `addr` (client_secret_post, so the
/// server reads the secret from the form) and the secret in the environment.
fn alf_command(addr: SocketAddr, secret: &str) -> Command {
    let mut cmd = alf_uncached();
    cmd.env("ALF_TEST_SECRET", secret)
        .args(["--token-url", &format!("http://{addr}/token")])
        .args(["--client-id", "cli-client"])
        .args(["--client-secret-env", "ALF_TEST_SECRET"])
        .args(["--auth-method", "post"]);
    cmd
}

async fn alf(addr: SocketAddr, secret: &str, args: &[&str]) -> Output {
    let out = alf_command(addr, secret).args(args).output().await.unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn stats_line(stdout: &str) -> serde_json::Value {
    let last = stdout.lines().last().expect("a stats line");
    serde_json::from_str(last).expect("the last line is JSON")
}

#[tokio::test]
async fn get_sends_the_token_and_prints_the_body() {
    let (server, addr) = start(Api::Accept).await;
    let out = alf(addr, SECRET, &[&format!("http://{addr}/api/hello")]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "", "the echoed (empty) body");
    let (method, uri, headers, _) = server.last();
    assert_eq!(method, Method::GET);
    assert_eq!(uri.path(), "/api/hello");
    assert_eq!(headers["authorization"], "Bearer tok-1");
}

/// The claims of a DPoP proof (its signature is checked in tests/dpop.rs).
fn proof_claims(proof: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = proof.split('.').nth(1).unwrap();
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

#[tokio::test]
async fn dpop_sends_a_dpop_token_with_a_proof() {
    let (server, addr) = start(Api::Accept).await;
    let url = format!("http://{addr}/api/hello?x=1");
    let out = alf(addr, SECRET, &["--dpop", &url]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (_, _, headers, _) = server.last();
    assert_eq!(headers["authorization"], "DPoP tok-1");
    let claims = proof_claims(headers["dpop"].to_str().unwrap());
    assert_eq!(claims["htm"], "GET");
    assert_eq!(claims["htu"], format!("http://{addr}/api/hello"));
    assert!(claims["ath"].is_string());
}

#[tokio::test]
async fn dpop_key_signs_with_the_given_key() {
    let (server, addr) = start(Api::Accept).await;
    let key = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/p256_pkcs8.pem");
    let out = alf(
        addr,
        SECRET,
        &["--dpop-key", key, &format!("http://{addr}/api/k")],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (_, _, headers, _) = server.last();
    assert_eq!(headers["authorization"], "DPoP tok-1");
    let proof = headers["dpop"].to_str().unwrap();
    let header = jws::decode_header(proof).unwrap();
    assert_eq!(header.typ.as_deref(), Some("dpop+jwt"));
    assert_eq!(header.alg, "ES256");
    // Signed by the key in the file: it verifies with the file's public key.
    let public = include_str!("fixtures/p256_public.pem");
    jws::verify(proof, jws::Key::Pem(public)).unwrap();
}

#[tokio::test]
async fn post_sends_a_file_and_headers_as_given() {
    let (server, addr) = start(Api::Accept).await;
    let dir = std::env::temp_dir().join(format!("alf-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("body.json");
    std::fs::write(&file, "{\"order\": 42}\n").unwrap();
    let data = format!("@{}", file.display());
    let url = format!("http://{addr}/api/orders?dry=1");
    let args = [
        "-d",
        &data,
        "-H",
        "Content-Type: application/json",
        "-H",
        "X-Request-Id: abc",
        &url,
    ];
    let out = alf(addr, SECRET, &args).await;
    std::fs::remove_dir_all(dir).unwrap();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "{\"order\": 42}\n", "the echoed body");
    let (method, uri, headers, body) = server.last();
    assert_eq!(method, Method::POST);
    assert_eq!(uri.query(), Some("dry=1"));
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-request-id"], "abc");
    assert_eq!(body, "{\"order\": 42}\n");
}

#[tokio::test]
async fn include_prints_status_and_headers_before_the_body() {
    let (server, addr) = start(Api::Accept).await;
    let url = format!("http://{addr}/api/x");
    let out = alf(addr, SECRET, &["-i", "-X", "PUT", "-d", "x=1", &url]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (head, body) = out
        .stdout
        .split_once("\n\n")
        .expect("a blank line after the headers");
    assert!(head.starts_with("HTTP/1.1 200 OK\n"), "{head}");
    assert!(head.contains("\nx-token: tok-1"), "{head}");
    assert_eq!(body, "x=1");
    let (method, _, headers, _) = server.last();
    assert_eq!(method, Method::PUT);
    assert_eq!(headers["content-type"], "application/x-www-form-urlencoded");
}

#[tokio::test]
async fn repeat_with_concurrency_makes_one_token_request() {
    let (server, addr) = start(Api::Accept).await;
    let url = format!("http://{addr}/api/load");
    let args = ["--repeat", "200", "--concurrency", "16", "--stats", &url];
    let out = alf(addr, SECRET, &args).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 1, "no bodies with --repeat");
    let stats = stats_line(&out.stdout);
    assert_eq!(stats["requests"], 200);
    assert_eq!(stats["status"]["200"], 200);
    assert_eq!(stats["errors"], 0);
    assert_eq!(stats["token_fetches"], 1);
    assert_eq!(stats["token_refreshes"], 0);
    assert_eq!(stats["replays"], 0);
    for key in ["p50_ms", "p90_ms", "p99_ms", "max_ms"] {
        assert!(stats[key].as_f64().unwrap() > 0.0, "{key}");
    }
    assert!(stats["p50_ms"].as_f64() <= stats["p99_ms"].as_f64());
    assert!(stats["p99_ms"].as_f64() <= stats["max_ms"].as_f64());
    assert_eq!(server.tokens_issued.load(Ordering::SeqCst), 1);
    assert_eq!(server.api_calls.load(Ordering::SeqCst), 200);
}

#[tokio::test]
async fn a_rejected_first_token_is_refreshed_and_the_request_replayed() {
    let (server, addr) = start(Api::RejectFirst).await;
    let out = alf(addr, SECRET, &["--stats", &format!("http://{addr}/api/x")]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let stats = stats_line(&out.stdout);
    assert_eq!(stats["status"]["200"], 1);
    assert_eq!(stats["token_fetches"], 2);
    assert_eq!(stats["token_refreshes"], 1);
    assert_eq!(stats["replays"], 1);
    assert_eq!(server.api_calls.load(Ordering::SeqCst), 2);
    assert_eq!(server.last().2["authorization"], "Bearer tok-2");
}

#[tokio::test]
async fn an_api_that_always_says_401_gets_one_replay_and_a_failed_exit() {
    let (server, addr) = start(Api::RejectAll).await;
    let out = alf(addr, SECRET, &["--stats", &format!("http://{addr}/api/x")]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("401"), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
    let stats = stats_line(&out.stdout);
    assert_eq!(stats["status"]["401"], 1);
    assert_eq!(stats["replays"], 1);
    assert_eq!(
        server.api_calls.load(Ordering::SeqCst),
        2,
        "sent, then replayed once"
    );
}

#[tokio::test]
async fn a_wrong_secret_fails_with_the_oauth_error_and_never_shows_the_secret() {
    let (server, addr) = start(Api::Accept).await;
    let wrong = "wr0ng-s3cr3t-value";
    let url = format!("http://{addr}/api/x");
    let out = alf(addr, wrong, &[&url]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("invalid_client: bad client credentials"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains(wrong) && !out.stdout.contains(wrong));

    let out = alf(addr, wrong, &["--repeat", "5", "--stats", &url]).await;
    assert_eq!(out.code, 1);
    assert_eq!(stats_line(&out.stdout)["errors"], 5);
    assert!(!out.stderr.contains(wrong) && !out.stdout.contains(wrong));
    assert_eq!(
        server.api_calls.load(Ordering::SeqCst),
        0,
        "the API is never called"
    );
}

#[tokio::test]
async fn token_prints_metadata_and_the_token_only_when_asked() {
    let (_server, addr) = start(Api::Accept).await;
    let token = |print: bool| async move {
        let mut cmd = alf_uncached();
        cmd.env("ALF_TEST_SECRET", SECRET)
            .arg("token")
            .args(["--token-url", &format!("http://{addr}/token")])
            .args(["--client-id", "cli-client", "--auth-method", "post"])
            .args(["--client-secret-env", "ALF_TEST_SECRET"]);
        if print {
            cmd.arg("--print-token");
        }
        let out = cmd.output().await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let meta = token(false).await;
    assert_eq!(meta["token_type"], "Bearer");
    assert_eq!(meta["expires_in"], 3600.0);
    assert!(meta.get("access_token").is_none(), "{meta}");
    assert_eq!(token(true).await["access_token"], "tok-2");
}

#[tokio::test]
async fn a_missing_secret_is_a_usage_error() {
    let out = alf_uncached()
        .args([
            "--token-url",
            "https://idp.example/token",
            "--client-id",
            "x",
        ])
        .arg("https://api.example/")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("client secret is required"), "{stderr}");
}

// ===== OAuth 1.0a =====

/// `alf` signing with OAuth 1.0a for the verifying provider at `addr`.
async fn alf_oauth1(addr: SocketAddr, method: &str, placement: &str, extra: &[&str]) -> Output {
    let mut cmd = alf_uncached();
    cmd.env("ALF_CONSUMER_SECRET", oauth1_provider::CONSUMER_SECRET)
        .env("ALF_TOKEN_SECRET", oauth1_provider::TOKEN_SECRET)
        .args(["--oauth1-consumer-key", oauth1_provider::CONSUMER_KEY])
        .args(["--oauth1-token", oauth1_provider::TOKEN])
        .args(["--oauth1-token-secret-env", "ALF_TOKEN_SECRET"])
        .args(["--oauth1-method", method, "--oauth1-placement", placement]);
    if method.starts_with("RSA") {
        let key = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/oauth1/test-only-rsa-key.pem"
        );
        cmd.args(["--oauth1-private-key", key]);
    } else {
        cmd.args(["--oauth1-consumer-secret-env", "ALF_CONSUMER_SECRET"]);
    }
    let out = cmd
        .args(extra)
        .arg(format!("http://{addr}/photos?size=original"))
        .output()
        .await
        .unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

#[tokio::test]
async fn oauth1_signs_with_every_method_and_placement() {
    let addr = oauth1_provider::provider().await;
    let methods = [
        "HMAC-SHA1",
        "HMAC-SHA256",
        "HMAC-SHA512",
        "RSA-SHA1",
        "RSA-SHA256",
        "PLAINTEXT",
    ];
    for method in methods {
        for placement in ["header", "query", "body"] {
            let out = alf_oauth1(addr, method, placement, &["-d", "file=vacation.jpg"]).await;
            assert_eq!(out.code, 0, "{method} in {placement}: {}", out.stderr);
            // The provider answers "ok <body length>" only to a valid signature.
            assert!(
                out.stdout.starts_with("ok "),
                "{method} in {placement}: {}",
                out.stdout
            );
        }
    }
}

#[tokio::test]
async fn oauth1_with_a_wrong_secret_is_refused_and_fails() {
    let addr = oauth1_provider::provider().await;
    let out = alf_uncached()
        .env("ALF_CONSUMER_SECRET", "not-the-secret")
        .args(["--oauth1-consumer-key", oauth1_provider::CONSUMER_KEY])
        .args(["--oauth1-consumer-secret-env", "ALF_CONSUMER_SECRET"])
        .arg(format!("http://{addr}/photos"))
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("401"), "{stderr}");
    assert!(!stderr.contains("not-the-secret"));
}

/// A provider for the three-legged dance: it checks that each step carries
/// what the previous one issued.
async fn dance_provider() -> SocketAddr {
    async fn request_token(headers: HeaderMap) -> Response {
        let auth = headers["authorization"].to_str().unwrap().to_owned();
        assert!(auth.contains(r#"oauth_callback="oob""#), "{auth}");
        assert!(auth.contains(r#"oauth_consumer_key="dance-key""#), "{auth}");
        "oauth_token=temp-1&oauth_token_secret=temp-secret&oauth_callback_confirmed=true"
            .into_response()
    }
    async fn access_token(headers: HeaderMap) -> Response {
        let auth = headers["authorization"].to_str().unwrap().to_owned();
        if auth.contains(r#"oauth_token="temp-1""#) && auth.contains(r#"oauth_verifier="v-42""#) {
            "oauth_token=final-7&oauth_token_secret=final-secret".into_response()
        } else {
            (StatusCode::UNAUTHORIZED, "oauth_problem=verifier_invalid").into_response()
        }
    }
    let app = Router::new()
        .route("/request_token", post(request_token))
        .route("/access_token", post(access_token));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn authorize(addr: SocketAddr, stdin: &str, extra: &[&str]) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut child = alf_uncached()
        .env("ALF_CONSUMER_SECRET", "dance-secret")
        .args(["oauth1", "authorize", "--oauth1-consumer-key", "dance-key"])
        .args(["--oauth1-consumer-secret-env", "ALF_CONSUMER_SECRET"])
        .args([
            "--request-token-url",
            &format!("http://{addr}/request_token"),
        ])
        .args(["--authorize-url", "https://provider.example/authorize"])
        .args(["--access-token-url", &format!("http://{addr}/access_token")])
        .args(extra)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

#[tokio::test]
async fn oauth1_authorize_walks_the_three_legged_dance() {
    let addr = dance_provider().await;
    let out = authorize(addr, "v-42\n", &[]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("https://provider.example/authorize?oauth_token=temp-1"),
        "the URL to open: {}",
        out.stderr
    );
    let printed: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(
        printed,
        serde_json::json!({"oauth_token": "final-7"}),
        "no secret unless asked"
    );

    // The whole callback URL works too, and the secret shows when asked for.
    let callback = "https://app.example/cb?oauth_token=temp-1&oauth_verifier=v-42\n";
    let out = authorize(addr, callback, &["--print-secret"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let printed: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(printed["oauth_token_secret"], "final-secret");

    // An endless stdin is cut at 64 KiB.
    let endless = "0".repeat(64 * 1024 + 1);
    let out = authorize(addr, &endless, &[]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("longer than 64 KiB"), "{}", out.stderr);

    // A callback for another request token is refused.
    let wrong = "https://app.example/cb?oauth_token=other&oauth_verifier=v-42\n";
    let out = authorize(addr, wrong, &[]).await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn oauth1_authorize_takes_the_oauth1_options_before_or_after_the_subcommand() {
    use tokio::io::AsyncWriteExt;
    let addr = dance_provider().await;
    let oauth1 = [
        "--oauth1-consumer-key",
        "dance-key",
        "--oauth1-consumer-secret-env",
        "ALF_CONSUMER_SECRET",
    ];
    let urls = [
        format!("--request-token-url=http://{addr}/request_token"),
        "--authorize-url=https://provider.example/authorize".to_owned(),
        format!("--access-token-url=http://{addr}/access_token"),
    ];
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let subcommand = ["oauth1", "authorize"];
    for args in [
        [&oauth1[..], &subcommand, &urls].concat(),
        [&subcommand[..], &oauth1, &urls].concat(),
        [&oauth1[..2], &subcommand, &urls, &oauth1[2..]].concat(),
    ] {
        let mut child = alf_uncached()
            .env("ALF_CONSUMER_SECRET", "dance-secret")
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(b"v-42\n").await.unwrap();
        drop(input);
        let out = child.wait_with_output().await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(printed["oauth_token"], "final-7", "{args:?}");
    }
}

#[tokio::test]
async fn alf_processes_share_one_token_through_redis() {
    let (server, addr) = start(Api::Accept).await;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("alf-cli-test:{}:{nanos}", std::process::id());
    let url = format!("http://{addr}/api/x");
    let store = [
        "--redis",
        "redis://127.0.0.1:6379/",
        "--store-key-prefix",
        &prefix,
    ];
    for _ in 0..3 {
        let out = alf(addr, SECRET, &[&store[..], &[&url]].concat()).await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(server.last().2["authorization"], "Bearer tok-1");
    }
    assert_eq!(
        server.tokens_issued.load(Ordering::SeqCst),
        1,
        "one token for three processes"
    );

    // The same client with another prefix is another key.
    let other = format!("{prefix}-other");
    let out = alf(
        addr,
        SECRET,
        &[
            "--redis",
            "redis://127.0.0.1:6379/",
            "--store-key-prefix",
            &other,
            &url,
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(server.tokens_issued.load(Ordering::SeqCst), 2);

    // Redis unreachable: the request still succeeds, with a local fetch.
    let out = alf(addr, SECRET, &["--redis", "redis://127.0.0.1:1/", &url]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(server.tokens_issued.load(Ordering::SeqCst), 3);
}
