//! `alf login`: the authorization-code flow with PKCE over a loopback
//! redirect, against an authorization server in this process. The test
//! plays the browser.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    extract::State,
    http::{header::LOCATION, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use sha2::{Digest, Sha256};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

#[derive(Default)]
struct Server {
    /// The query of the authorization request.
    authorize: Mutex<HashMap<String, String>>,
    /// Answer the authorization with this error instead of a code.
    deny: bool,
}

async fn authorize(State(server): State<Arc<Server>>, uri: Uri) -> Response {
    let query: HashMap<String, String> =
        form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let location = if server.deny {
        format!(
            "{}?error=access_denied&error_description=no&state={}",
            query["redirect_uri"], query["state"]
        )
    } else {
        format!(
            "{}?code=code-1&state={}",
            query["redirect_uri"], query["state"]
        )
    };
    *server.authorize.lock().unwrap() = query;
    (StatusCode::FOUND, [(LOCATION, location)]).into_response()
}

async fn token(State(server): State<Arc<Server>>, body: String) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let asked = server.authorize.lock().unwrap().clone();
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(form["code_verifier"].as_bytes()));
    let valid = form["grant_type"] == "authorization_code"
        && form["code"] == "code-1"
        && form["redirect_uri"] == asked["redirect_uri"]
        && form["client_id"] == "cli"
        && asked["code_challenge_method"] == "S256"
        && challenge == asked["code_challenge"];
    if !valid {
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": "invalid_grant"})),
        )
            .into_response();
    }
    Json(serde_json::json!({
        "access_token": "at-login",
        "token_type": "Bearer",
        "expires_in": 3600,
        "refresh_token": "rt-login",
        "scope": "openid offline_access",
    }))
    .into_response()
}

async fn start(deny: bool) -> (Arc<Server>, String) {
    let server = Arc::new(Server {
        deny,
        ..Server::default()
    });
    let app = Router::new()
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (server, base)
}

/// Runs `alf login`, follows the URL it prints like a browser would, and
/// returns its exit code, stdout and stderr.
async fn login(base: &str, extra: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_alf"))
        .args([
            "login",
            "--client-id",
            "cli",
            "--scope",
            "openid",
            "--scope",
            "offline_access",
        ])
        .args(["--token-url", &format!("{base}/token")])
        .args(["--authorization-url", &format!("{base}/authorize")])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    let url = loop {
        let line = stderr
            .next_line()
            .await
            .unwrap()
            .expect("alf prints the URL");
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with("http") {
            break line;
        }
    };
    // The browser: the authorization server redirects to alf's loopback.
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = client.get(url.parse().unwrap()).await.unwrap();
    assert_eq!(response.status(), 302);
    let callback = response.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(callback.starts_with("http://127.0.0.1:"), "{callback}");
    let response = client.get(callback.parse().unwrap()).await.unwrap();
    assert_eq!(response.status(), 200);

    while let Some(line) = stderr.next_line().await.unwrap() {
        seen.push_str(&line);
        seen.push('\n');
    }
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        seen,
    )
}

#[tokio::test]
async fn login_exchanges_the_code_with_pkce_and_saves_the_token_set_privately() {
    let (server, base) = start(false).await;
    let path = std::env::temp_dir().join(format!("alf-login-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let (code, stdout, stderr) = login(&base, &["--save", path.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{stderr}");
    let metadata: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(metadata["refresh_token"], true);
    assert!(!stdout.contains("at-login") && !stderr.contains("rt-login"));

    let asked = server.authorize.lock().unwrap().clone();
    assert_eq!(asked["scope"], "openid offline_access");
    assert!(asked["redirect_uri"].ends_with("/callback"));

    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(saved["refresh_token"], "rt-login");
    assert_eq!(saved["access_token"], "at-login");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::remove_file(&path).unwrap();
}

#[tokio::test]
async fn a_denied_login_reports_the_servers_error() {
    let (_, base) = start(true).await;
    let (code, _, stderr) = login(&base, &[]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("access_denied"), "{stderr}");
}
