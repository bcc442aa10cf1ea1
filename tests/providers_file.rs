//! `grant::TokenFile`: the token a file holds, read again per fetch, its
//! expiry from a JWT `exp`; rotation on the real file system.

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use tower_alf::{grant::TokenFile, TokenSource};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("alf-token-file-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Rotates `path` as kubelet does: a new file renamed over the old one.
fn rotate(path: &Path, content: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, content).unwrap();
    std::fs::rename(&next, path).unwrap();
}

/// An unsigned JWT-shaped token that expires `lifetime` from now.
fn jwt(subject: &str, lifetime: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = format!(
        r#"{{"sub":"{subject}","iat":{now},"exp":{}}}"#,
        now + lifetime
    );
    format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
        URL_SAFE_NO_PAD.encode(claims)
    )
}

#[tokio::test(start_paused = true)]
async fn a_rotated_token_file_is_served_once_the_jwt_in_it_nears_its_exp() {
    let dir = temp_dir("jwt");
    let path = dir.join("token");
    let (one, two) = (jwt("one", 100), jwt("two", 100));
    rotate(&path, &format!("{one}\n"));
    let source = TokenSource::builder(TokenFile::new(&path))
        .jitter(0.0)
        .build();

    let first = source.token().await.unwrap();
    assert_eq!(first.access_token().secret(), one);
    assert_eq!(first.lifetime(), Some(Duration::from_secs(100)));

    rotate(&path, &two);
    // Fresh: the cached token is served, the file is not read.
    tokio::time::advance(Duration::from_secs(50)).await;
    assert_eq!(source.token().await.unwrap().access_token().secret(), one);
    // Past the expiry margin (10 % of 100 s): read again, the new one.
    tokio::time::advance(Duration::from_secs(45)).await;
    assert_eq!(source.token().await.unwrap().access_token().secret(), two);
    assert_eq!(source.stats().fetches, 2);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_token_file_that_is_no_jwt_is_read_again_every_period_and_on_rejection() {
    let dir = temp_dir("opaque");
    let path = dir.join("token");
    rotate(&path, "opaque-1");
    let source = TokenSource::builder(TokenFile::new(&path).reread_every(Duration::from_secs(20)))
        .jitter(0.0)
        .rejection_interval(Duration::ZERO)
        .build();
    let first = source.token().await.unwrap();
    assert_eq!(first.lifetime(), Some(Duration::from_secs(20)));

    rotate(&path, "opaque-2");
    let second = source.invalidate(first.id()).await.unwrap();
    assert_eq!(second.access_token().secret(), "opaque-2");

    rotate(&path, "opaque-3");
    tokio::time::advance(Duration::from_secs(19)).await;
    assert_eq!(
        source.token().await.unwrap().access_token().secret(),
        "opaque-3"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_valid_token_keeps_serving_while_its_file_is_unusable() {
    let dir = temp_dir("broken");
    let path = dir.join("token");
    rotate(&path, "good-token");
    let source = TokenSource::builder(TokenFile::new(&path).reread_every(Duration::from_secs(100)))
        .jitter(0.0)
        .build();
    source.token().await.unwrap();
    // Stale (the last quarter): the background read fails, the token serves.
    rotate(&path, "");
    tokio::time::advance(Duration::from_secs(80)).await;
    for _ in 0..3 {
        assert_eq!(
            source.token().await.unwrap().access_token().secret(),
            "good-token"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(source.stats().fetches, 2);
    // Past its expiry the failure reaches the caller, typed.
    tokio::time::advance(Duration::from_secs(15)).await;
    let e = source.token().await.unwrap_err();
    assert!(
        e.is_retryable() && e.to_string().contains("is empty"),
        "{e}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_file_that_is_not_a_token_is_a_typed_error_that_does_not_quote_it() {
    let dir = temp_dir("garbage");
    let path = dir.join("token");
    std::fs::write(&path, "s3cr3t\nwith a line break\u{7}").unwrap();
    let e = TokenSource::new(TokenFile::new(&path))
        .token()
        .await
        .unwrap_err();
    let shown = format!("{e} {e:?}");
    assert!(e.is_invalid_token(), "{shown}");
    assert!(!shown.contains("s3cr3t"), "{shown}");

    std::fs::write(&path, vec![b'a'; 64 * 1024 + 1]).unwrap();
    let e = TokenSource::new(TokenFile::new(&path))
        .token()
        .await
        .unwrap_err();
    assert!(e.is_permanent() && e.to_string().contains("64 KiB"), "{e}");
    std::fs::remove_dir_all(dir).unwrap();
}
