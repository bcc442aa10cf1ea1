//! What the library warns about reaches `alf`'s stderr (`-q` silences it),
//! and `--stats` carries the throttled count and the store's counters,
//! through the built binary against a token endpoint in this process.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};

async fn token(State(requests): State<Arc<AtomicUsize>>) -> Response {
    let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
    Json(serde_json::json!({
        "access_token": format!("at-{n}"),
        "token_type": "Bearer",
        "expires_in": 3600,
    }))
    .into_response()
}

async fn api(headers: HeaderMap) -> Response {
    match headers.get("authorization") {
        Some(_) => (StatusCode::OK, "ok").into_response(),
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn start() -> (Arc<AtomicUsize>, String) {
    let requests = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route("/token", post(token))
        .route("/api", get(api))
        .with_state(requests.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (requests, base)
}

async fn alf(cache_home: &std::path::Path, base: &str, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_alf"))
        .env("XDG_CACHE_HOME", cache_home)
        .env("ALF_WARN_SECRET", "warn-secret-77")
        .args(["--token-url", &format!("{base}/token")])
        .args(["--client-id", "warn-client"])
        .args(["--client-secret-env", "ALF_WARN_SECRET"])
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_store_that_is_down_is_warned_about_and_quiet_silences_it() {
    let (requests, base) = start().await;
    let home = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: the store is down, the token is fetched
    // locally, and the library says so.
    let (code, _, stderr) = alf(
        home.path(),
        &base,
        &["token", "--redis", "redis://127.0.0.1:1/"],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("WARN"), "{stderr}");
    assert!(stderr.to_lowercase().contains("store"), "{stderr}");
    assert!(!stderr.contains("warn-secret-77"), "{stderr}");
    let (code, _, stderr) = alf(
        home.path(),
        &base,
        &["token", "-q", "--redis", "redis://127.0.0.1:1/"],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn quiet_silences_the_corrupt_cache_warning() {
    let (requests, base) = start().await;
    let home = tempfile::tempdir().unwrap();
    assert_eq!(alf(home.path(), &base, &["token"]).await.0, 0);
    let dir = home.path().join("alf");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&file, "{").unwrap();
    let (code, _, stderr) = alf(home.path(), &base, &["token", "-q"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    assert_eq!(requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn stats_count_the_cache_as_a_store_and_throttled_rejections() {
    let (requests, base) = start().await;
    let home = tempfile::tempdir().unwrap();
    let api = format!("{base}/api");
    let mut lines = Vec::new();
    for _ in 0..2 {
        let (code, stdout, stderr) = alf(home.path(), &base, &[&api, "--stats"]).await;
        assert_eq!(code, 0, "{stderr}");
        lines.push(serde_json::from_str::<serde_json::Value>(stdout.trim()).unwrap());
    }
    assert_eq!(requests.load(Ordering::SeqCst), 1);
    assert_eq!(lines[0]["throttled"], 0);
    assert_eq!(
        lines[0]["store"],
        serde_json::json!({"hits": 0, "fetches": 1, "lock_waits": 0, "errors": 0})
    );
    assert_eq!(
        lines[1]["store"],
        serde_json::json!({"hits": 1, "fetches": 0, "lock_waits": 0, "errors": 0})
    );
    assert_eq!(
        lines[1]["token_fetches"], 1,
        "the source asked its grant once"
    );
    // Without a store: null.
    let (code, stdout, _) = alf(home.path(), &base, &[&api, "--stats", "--no-cache"]).await;
    assert_eq!(code, 0);
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(line["store"].is_null(), "{line}");
}

#[tokio::test]
async fn stats_with_redis_carry_the_store_counters() {
    let (requests, base) = start().await;
    let home = tempfile::tempdir().unwrap();
    let prefix = format!(
        "alf-cli-warnings-{}-{}",
        std::process::id(),
        base.rsplit(':').next().unwrap()
    );
    let api = format!("{base}/api");
    let mut stores = Vec::new();
    for _ in 0..2 {
        let (code, stdout, stderr) = alf(
            home.path(),
            &base,
            &[
                &api,
                "--stats",
                "--redis",
                "redis://127.0.0.1:6379/",
                "--store-key-prefix",
                &prefix,
            ],
        )
        .await;
        assert_eq!(code, 0, "{stderr}");
        let line: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        stores.push(line["store"].clone());
    }
    assert_eq!(
        requests.load(Ordering::SeqCst),
        1,
        "the second run took Redis's token"
    );
    assert_eq!(stores[0]["fetches"], 1);
    assert_eq!(stores[1]["hits"], 1);
    assert_eq!(stores[1]["errors"], 0);
}

#[tokio::test]
async fn a_failed_token_fetch_is_said_once() {
    let home = tempfile::tempdir().unwrap();
    // Nothing listens on port 1.
    let (code, _, stderr) = alf(home.path(), "http://127.0.0.1:1", &["token"]).await;
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("alf: could not get a token: "),
        "{stderr}"
    );
}
