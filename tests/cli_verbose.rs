//! The `alf` binary's `-v` (the exchanges on stderr, nothing secret in
//! them), `-L` (redirects, the token never sent to another origin) and
//! `alf token --decode`, against servers over loopback.

use std::sync::{Arc, Mutex};

use axum::{
    extract::State,
    http::{HeaderMap, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::{any, post},
    Json, Router,
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use sha2::{Digest, Sha256};
use tokio::process::Command;

const SECRET: &str = "v-s3cret&XYZ";
const ACCESS_TOKEN: &str = "at-verbose-123456";
const REFRESH_TOKEN: &str = "rt-verbose-654321";

/// What the servers saw: method, path, headers, body of each request.
type Seen = Arc<Mutex<Vec<(Method, String, HeaderMap, String)>>>;

#[derive(Clone)]
struct App {
    seen: Seen,
    /// The access token the token endpoint issues.
    access_token: String,
    /// Where /away redirects to (another origin).
    elsewhere: String,
}

async fn token(State(app): State<App>, body: String) -> Response {
    // A careless server that echoes the client's secret back.
    let echoed = format!("client_secret was {SECRET}");
    let answer = serde_json::json!({
        "access_token": app.access_token,
        "refresh_token": REFRESH_TOKEN,
        "token_type": "Bearer",
        "expires_in": 3600,
        "note": echoed,
        "form": body,
    });
    ([("x-echo", SECRET)], Json(answer)).into_response()
}

async fn record(
    State(app): State<App>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let path = uri.path().to_owned();
    app.seen
        .lock()
        .unwrap()
        .push((method.clone(), path.clone(), headers, body.clone()));
    let redirect =
        |status: StatusCode, to: String| (status, [("location", to)], "moved").into_response();
    match path.as_str() {
        "/start" => redirect(StatusCode::FOUND, "/next".into()),
        "/next" => redirect(StatusCode::FOUND, format!("{}/landing", app.elsewhere)),
        "/loop" => redirect(StatusCode::FOUND, "/loop".into()),
        "/form" => redirect(StatusCode::SEE_OTHER, "/result".into()),
        "/keep" => redirect(StatusCode::TEMPORARY_REDIRECT, "/result".into()),
        _ => format!("{method} {path} {body}").into_response(),
    }
}

/// A token endpoint and an API (`base`), and another origin (`other`)
/// that records what reaches it.
async fn start(access_token: &str) -> (Seen, String, Seen, String) {
    let other_seen = Seen::default();
    let other_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    // "localhost", not 127.0.0.1: another origin on the same machine.
    let other = format!(
        "http://localhost:{}",
        other_listener.local_addr().unwrap().port()
    );
    let other_app = Router::new().fallback(any(record)).with_state(App {
        seen: other_seen.clone(),
        access_token: access_token.into(),
        elsewhere: String::new(),
    });
    tokio::spawn(async move { axum::serve(other_listener, other_app).await });

    let seen = Seen::default();
    let app = Router::new()
        .route("/token", post(token))
        .fallback(any(record))
        .with_state(App {
            seen: seen.clone(),
            access_token: access_token.into(),
            elsewhere: other.clone(),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (seen, base, other_seen, other)
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `alf` with a client_secret_post client of `base`'s token endpoint.
async fn alf(base: &str, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_alf"))
        .env_remove("XDG_CACHE_HOME")
        .env("HOME", "")
        .env("ALF_SECRET", SECRET)
        .args(args)
        .args(["--token-url", &format!("{base}/token")])
        .args(["--client-id", "verbose-client"])
        .args(["--client-secret-env", "ALF_SECRET", "--auth-method", "post"])
        .output()
        .await
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn fingerprint(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("[sha256:{hex}]")
}

/// Every secret of these tests, in the forms a server or a header might
/// carry it.
fn assert_no_secret(text: &str) {
    let encoded: String = form_urlencoded::byte_serialize(SECRET.as_bytes()).collect();
    for secret in [
        SECRET,
        encoded.as_str(),
        ACCESS_TOKEN,
        REFRESH_TOKEN,
        "key-987654321",
        "cookie-value-42",
    ] {
        assert!(!text.contains(secret), "{secret} shown in:\n{text}");
    }
}

#[tokio::test]
async fn verbose_prints_the_token_exchange_and_the_request_with_every_secret_redacted() {
    let (_, base, _, _) = start(ACCESS_TOKEN).await;
    let api = format!("{base}/api/items");
    let run = alf(
        &base,
        &[
            "-v",
            "-H",
            "X-Api-Key: key-987654321",
            "-H",
            "Cookie: session=cookie-value-42",
            &api,
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout, "GET /api/items ",
        "the body on stdout, as it is"
    );
    let err = &run.stderr;
    assert_no_secret(err);
    // The token exchange, as curl prints one.
    assert!(err.contains("> POST /token HTTP/1.1\n"), "{err}");
    assert!(
        err.contains("> client_id=verbose-client&client_secret=[redacted]")
            || err.contains("&client_secret=[redacted]"),
        "{err}"
    );
    assert!(err.contains("< HTTP/1.1 200 OK\n"), "{err}");
    assert!(err.contains("* authorization server answered: {"), "{err}");
    assert!(
        err.contains(&format!(
            r#""access_token":"{}""#,
            fingerprint(ACCESS_TOKEN)
        )),
        "{err}"
    );
    // The request: the token by its fingerprint, the other credentials
    // masked too.
    assert!(err.contains("> GET /api/items HTTP/1.1\n"), "{err}");
    assert!(
        err.contains(&format!(
            "> authorization: Bearer {}\n",
            fingerprint(ACCESS_TOKEN)
        )),
        "{err}"
    );
    assert!(err.contains("> x-api-key: [sha256:"), "{err}");
    assert!(err.contains("* connection 127.0.0.1:"), "{err}");
    assert!(
        err.lines().all(|line| line.starts_with(['>', '<', '*'])),
        "{err}"
    );
}

#[tokio::test]
async fn verbose_works_before_and_after_a_subcommand() {
    let (_, base, _, _) = start(ACCESS_TOKEN).await;
    for args in [["-v", "token"], ["token", "--verbose"]] {
        let run = alf(&base, &args).await;
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("> POST /token HTTP/1.1"),
            "{args:?}: {}",
            run.stderr
        );
        assert_no_secret(&run.stderr);
        assert_no_secret(&run.stdout);
    }
}

#[tokio::test]
async fn verbose_with_quiet_or_with_repeat_is_a_one_line_usage_error() {
    let (_, base, _, _) = start(ACCESS_TOKEN).await;
    let api = format!("{base}/api");
    for args in [&["-v", "-q", &api][..], &["-v", "--repeat", "2", &api]] {
        let run = alf(&base, args).await;
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {}", run.stderr);
    }
}

#[tokio::test]
async fn location_follows_redirects_and_never_sends_the_token_to_another_origin() {
    let (seen, base, other_seen, other) = start(ACCESS_TOKEN).await;
    let start_url = format!("{base}/start");
    let run = alf(
        &base,
        &["-L", "-H", "Cookie: session=cookie-value-42", &start_url],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "GET /landing ");
    // Same origin: the token on each hop.
    let seen = seen.lock().unwrap();
    let paths: Vec<&str> = seen.iter().map(|(_, path, _, _)| path.as_str()).collect();
    assert_eq!(paths, ["/start", "/next"]);
    for (_, _, headers, _) in seen.iter() {
        assert_eq!(headers["authorization"], format!("Bearer {ACCESS_TOKEN}"));
    }
    // Another origin: neither the token nor the user's cookie.
    let other_seen = other_seen.lock().unwrap();
    assert_eq!(other_seen.len(), 1, "{other}");
    let (_, path, headers, _) = &other_seen[0];
    assert_eq!(path, "/landing");
    assert!(headers.get("authorization").is_none(), "{headers:?}");
    assert!(headers.get("cookie").is_none(), "{headers:?}");
}

#[tokio::test]
async fn without_location_the_redirect_is_the_answer() {
    let (_, base, other_seen, _) = start(ACCESS_TOKEN).await;
    let run = alf(&base, &["-i", &format!("{base}/start")]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.starts_with("HTTP/1.1 302 Found\n"),
        "{}",
        run.stdout
    );
    assert!(other_seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn location_stops_at_max_redirs_with_curls_exit_code() {
    let (seen, base, _, _) = start(ACCESS_TOKEN).await;
    let run = alf(&base, &["-L", "--max-redirs", "3", &format!("{base}/loop")]).await;
    assert_eq!(run.code, 47, "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("gave up after 3 redirects"),
        "{}",
        run.stderr
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        4,
        "the first request and 3 redirects"
    );
}

#[tokio::test]
async fn location_turns_a_post_into_a_get_after_303_and_keeps_it_after_307() {
    let (seen, base, _, _) = start(ACCESS_TOKEN).await;
    let run = alf(&base, &["-L", "-d", "a=1", &format!("{base}/form")]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "GET /result ");
    let run = alf(&base, &["-L", "-d", "a=1", &format!("{base}/keep")]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "POST /result a=1");
    assert_eq!(seen.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn max_redirs_without_location_is_a_one_line_usage_error() {
    let (_, base, _, _) = start(ACCESS_TOKEN).await;
    let run = alf(&base, &["--max-redirs", "3", &format!("{base}/start")]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
}

/// An unsigned-looking JWT with a recognizable signature part.
fn jwt() -> String {
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"k1","typ":"at+jwt"}"#);
    let claims = URL_SAFE_NO_PAD.encode(r#"{"sub":"svc","aud":"https://api","exp":4102444800}"#);
    format!("{header}.{claims}.c2lnbmF0dXJlLWJ5dGVz")
}

#[tokio::test]
async fn decode_prints_the_jwts_header_and_claims_never_its_signature() {
    let token = jwt();
    let (_, base, _, _) = start(&token).await;
    let run = alf(&base, &["token", "--decode"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(out["header"]["kid"], "k1");
    assert_eq!(out["header"]["typ"], "at+jwt");
    assert_eq!(out["claims"]["sub"], "svc");
    assert_eq!(out["claims"]["exp"], 4102444800u64);
    assert!(out.get("access_token").is_none());
    assert!(
        !run.stdout.contains("c2lnbmF0dXJlLWJ5dGVz"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn decode_of_an_opaque_token_exits_5_with_one_line() {
    let (_, base, _, _) = start(ACCESS_TOKEN).await;
    let run = alf(&base, &["token", "--decode"]).await;
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("not a JWT"), "{}", run.stderr);
    assert!(run.stdout.is_empty());
    assert_no_secret(&run.stderr);
}

#[tokio::test]
async fn location_to_another_origin_under_repeat_does_not_wait_for_a_connection() {
    // Idle connections to the first origin must not hold up the second's.
    let (_, base, other_seen, _) = start(ACCESS_TOKEN).await;
    let start_url = format!("{base}/start");
    let run = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        alf(
            &base,
            &[
                "-L",
                "--repeat",
                "20",
                "--concurrency",
                "2",
                "--stats",
                &start_url,
            ],
        ),
    )
    .await
    .expect("alf ends");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let stats: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(stats["status"]["200"], 20, "{stats}");
    let other_seen = other_seen.lock().unwrap();
    assert_eq!(other_seen.len(), 20);
    assert!(other_seen
        .iter()
        .all(|(_, _, headers, _)| headers.get("authorization").is_none()));
}
