//! The token cache between `alf` runs, through the built binary: a token
//! endpoint in this process counts the token requests, and each test has
//! its own `$XDG_CACHE_HOME`.

#![cfg(unix)]

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};

const SECRET: &str = "cache-test-secret-9f2c";

struct Server {
    token_requests: AtomicUsize,
    expires_in: u64,
}

async fn token(State(server): State<Arc<Server>>) -> Response {
    let n = server.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
    Json(serde_json::json!({
        "access_token": format!("at-{n}"),
        "token_type": "Bearer",
        "expires_in": server.expires_in,
    }))
    .into_response()
}

async fn api(headers: HeaderMap) -> Response {
    match headers.get("authorization").and_then(|v| v.to_str().ok()) {
        Some(value) if value.starts_with("Bearer at-") => (StatusCode::OK, "ok").into_response(),
        _ => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn start(expires_in: u64) -> (Arc<Server>, String) {
    let server = Arc::new(Server {
        token_requests: AtomicUsize::new(0),
        expires_in,
    });
    let app = Router::new()
        .route("/token", post(token))
        .route("/api", get(api))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (server, base)
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn alf(cache_home: &Path, base: &str, args: &[&str]) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_alf"))
        .env("XDG_CACHE_HOME", cache_home)
        .env("ALF_CACHE_SECRET", SECRET)
        .args(args)
        .args(["--token-url", &format!("{base}/token")])
        .args(["--client-id", "cache-client"])
        .args(["--client-secret-env", "ALF_CACHE_SECRET"])
        .output()
        .await
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The cache files in `cache_home`.
fn files(cache_home: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(cache_home.join("alf")) {
        Ok(dir) => dir.map(|entry| entry.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn two_runs_within_the_lifetime_make_one_token_request() {
    let (server, base) = start(3600).await;
    let home = tempfile::tempdir().unwrap();
    let first = alf(home.path(), &base, &["token", "--print-token"]).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    let second = alf(home.path(), &base, &["token", "--print-token"]).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(server.token_requests.load(Ordering::SeqCst), 1);
    let token = |run: &Run| {
        serde_json::from_str::<serde_json::Value>(run.stdout.trim()).unwrap()["access_token"]
            .clone()
    };
    assert_eq!(token(&first), "at-1");
    assert_eq!(token(&second), "at-1");
    // A request run takes the cached token too.
    let request = alf(home.path(), &base, &[&format!("{base}/api")]).await;
    assert_eq!(request.code, 0, "{}", request.stderr);
    assert_eq!(request.stdout, "ok");
    assert_eq!(server.token_requests.load(Ordering::SeqCst), 1);

    // Owner-only, and neither the name nor the file holds the secret.
    assert_eq!(mode(&home.path().join("alf")), 0o700);
    let files = files(home.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(mode(&files[0]), 0o600);
    assert!(!files[0].to_str().unwrap().contains(SECRET));
    assert!(!std::fs::read_to_string(&files[0]).unwrap().contains(SECRET));
}

#[tokio::test]
async fn an_expired_cached_token_is_fetched_again() {
    // `expires_in: 0`: expired as soon as it is cached.
    let (server, base) = start(0).await;
    let home = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let run = alf(home.path(), &base, &["token"]).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    assert_eq!(server.token_requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn no_cache_fetches_every_time_and_writes_nothing() {
    let (server, base) = start(3600).await;
    let home = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let run = alf(home.path(), &base, &["token", "--no-cache"]).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    assert_eq!(server.token_requests.load(Ordering::SeqCst), 2);
    assert!(files(home.path()).is_empty());
}

#[tokio::test]
async fn other_scopes_are_another_key_and_scope_order_is_not() {
    let (server, base) = start(3600).await;
    let home = tempfile::tempdir().unwrap();
    for args in [
        &["token", "--scope", "a", "--scope", "b"][..],
        &["token", "--scope", "b", "--scope", "a"],
        &["token", "--scope", "a"],
    ] {
        let run = alf(home.path(), &base, args).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    assert_eq!(server.token_requests.load(Ordering::SeqCst), 2);
    assert_eq!(files(home.path()).len(), 2);
}

#[tokio::test]
async fn forget_removes_the_cached_token() {
    let (server, base) = start(3600).await;
    let home = tempfile::tempdir().unwrap();
    assert_eq!(alf(home.path(), &base, &["token"]).await.code, 0);
    let forget = alf(home.path(), &base, &["token", "--forget"]).await;
    assert_eq!(forget.code, 0, "{}", forget.stderr);
    assert!(
        forget.stderr.starts_with("alf: forgot the cached token"),
        "{}",
        forget.stderr
    );
    assert!(forget.stdout.is_empty());
    assert!(files(home.path()).is_empty());
    assert_eq!(
        server.token_requests.load(Ordering::SeqCst),
        1,
        "forget fetches nothing"
    );
    let again = alf(home.path(), &base, &["token", "--forget"]).await;
    assert_eq!(again.code, 0);
    assert_eq!(again.stderr, "alf: no cached token\n");
    assert_eq!(alf(home.path(), &base, &["token"]).await.code, 0);
    assert_eq!(server.token_requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_corrupt_or_truncated_cache_file_is_ignored_with_a_warning_and_replaced() {
    let (server, base) = start(3600).await;
    let home = tempfile::tempdir().unwrap();
    assert_eq!(alf(home.path(), &base, &["token"]).await.code, 0);
    let file = files(home.path()).pop().unwrap();
    let whole = std::fs::read(&file).unwrap();
    for (n, broken) in [&whole[..whole.len() / 2], b"\x00\xffnot json"]
        .into_iter()
        .enumerate()
    {
        std::fs::write(&file, broken).unwrap();
        let run = alf(home.path(), &base, &["token"]).await;
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
        assert!(
            run.stderr.starts_with("alf: warning: token cache ")
                && run.stderr.contains("ignored, it will be replaced"),
            "{}",
            run.stderr
        );
        assert_eq!(server.token_requests.load(Ordering::SeqCst), n + 2);
        assert_eq!(mode(&file), 0o600);
    }
    // Replaced with a good one: the next run fetches nothing.
    let run = alf(home.path(), &base, &["token"]).await;
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    assert_eq!(server.token_requests.load(Ordering::SeqCst), 3);
}

/// Runs `alf token` on a cache file made unsafe by `spoil`: refused with
/// one line naming `reason`, exit 2, no token request, the file untouched.
async fn refused(spoil: impl FnOnce(&Path), reason: &str) {
    let (server, base) = start(3600).await;
    let home = tempfile::tempdir().unwrap();
    assert_eq!(alf(home.path(), &base, &["token"]).await.code, 0);
    let file = files(home.path()).pop().unwrap();
    spoil(&file);
    let before = std::fs::symlink_metadata(&file).unwrap();
    let run = alf(home.path(), &base, &["token"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.starts_with("alf: token cache ") && run.stderr.contains(reason),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("refused, not read and not replaced"),
        "{}",
        run.stderr
    );
    assert_eq!(server.token_requests.load(Ordering::SeqCst), 1);
    let forget = alf(home.path(), &base, &["token", "--forget"]).await;
    assert_eq!(forget.code, 2, "{}", forget.stderr);
    let after = std::fs::symlink_metadata(&file).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((before.ino(), before.mtime()), (after.ino(), after.mtime()));
}

#[tokio::test]
async fn a_world_readable_cache_file_is_refused() {
    refused(
        |file| std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap(),
        "readable or writable by group or others (mode 644",
    )
    .await;
}

#[tokio::test]
async fn a_symbolic_link_in_the_cache_is_refused() {
    refused(
        |file| {
            let target = file.with_extension("elsewhere");
            std::fs::rename(file, &target).unwrap();
            std::os::unix::fs::symlink(&target, file).unwrap();
        },
        "a symbolic link",
    )
    .await;
}

#[tokio::test]
async fn a_cache_file_of_another_user_is_refused() {
    // Only root can give a file away.
    let root = std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:\t0\t")));
    if !root {
        eprintln!("skipped: not root");
        return;
    }
    refused(
        |file| std::os::unix::fs::chown(file, Some(4242), None).unwrap(),
        "owned by another user (uid 4242)",
    )
    .await;
}

#[tokio::test]
async fn a_cache_directory_open_to_others_is_refused() {
    let (server, base) = start(3600).await;
    let home = tempfile::tempdir().unwrap();
    let dir = home.path().join("alf");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = alf(home.path(), &base, &["token"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("open to group or others (mode 755"),
        "{}",
        run.stderr
    );
    assert_eq!(server.token_requests.load(Ordering::SeqCst), 0);
    // --no-cache does without it.
    let run = alf(home.path(), &base, &["token", "--no-cache"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
}
