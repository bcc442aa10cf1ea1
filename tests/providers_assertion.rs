//! A client assertion made elsewhere (RFC 7521/7523 `client_assertion`),
//! from a callback or from a file re-read for every attempt, against a real
//! token endpoint over loopback that records what it was sent.

mod support;

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use support::{endpoint_builder_with, TokenServer};
use tower_alf::{grant::ClientCredentials, ClientAuth, Error, TokenSource};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A fresh directory of this test's own under the system temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("alf-providers-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `content` to `path` the way kubelet rotates a projected token:
/// a new file renamed over the old one.
fn rotate(path: &std::path::Path, content: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, content).unwrap();
    std::fs::rename(&next, path).unwrap();
}

fn source(server: &TokenServer, auth: ClientAuth) -> TokenSource {
    let endpoint = endpoint_builder_with(server, auth).build().unwrap();
    TokenSource::builder(ClientCredentials::new(endpoint))
        .rejection_interval(Duration::ZERO)
        .build()
}

#[tokio::test]
async fn a_rotated_assertion_file_is_sent_at_the_next_fetch_without_restart() {
    let dir = temp_dir("rotate");
    let path = dir.join("token");
    rotate(&path, "assertion-one\n");
    let server = TokenServer::start().await;
    let source = source(
        &server,
        ClientAuth::client_assertion_file("workload", &path),
    );

    let first = source.token().await.unwrap();
    let seen = server.last();
    assert_eq!(seen.field("client_assertion"), Some("assertion-one"));
    assert_eq!(seen.field("client_assertion_type"), Some(ASSERTION_TYPE));
    assert_eq!(seen.field("client_id"), Some("workload"));
    assert_eq!(seen.header("authorization"), None);

    rotate(&path, "assertion-two");
    source.invalidate(first.id()).await.unwrap();
    assert_eq!(server.requests(), 2);
    assert_eq!(
        server.last().field("client_assertion"),
        Some("assertion-two")
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_callback_assertion_is_asked_for_every_attempt() {
    let server = TokenServer::start().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let auth = ClientAuth::client_assertion("", move || {
        Ok(format!(
            "assertion-{}",
            counted.fetch_add(1, Ordering::SeqCst)
        ))
    });
    let source = source(&server, auth);
    let first = source.token().await.unwrap();
    source.invalidate(first.id()).await.unwrap();
    let sent: Vec<_> = server
        .seen()
        .iter()
        .map(|seen| seen.field("client_assertion").unwrap().to_owned())
        .collect();
    assert_eq!(sent, ["assertion-0", "assertion-1"]);
    // No client id configured: none sent.
    assert_eq!(server.last().field("client_id"), None);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_callback_error_fails_the_fetch_and_nothing_is_sent() {
    let server = TokenServer::start().await;
    let auth = ClientAuth::client_assertion("c", || Err(Error::permanent("no SVID yet")));
    let e = source(&server, auth).token().await.unwrap_err();
    assert!(e.is_permanent(), "{e}");
    assert!(e.to_string().contains("no SVID yet"), "{e}");
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn an_unusable_assertion_file_is_a_typed_error_that_never_quotes_it() {
    let dir = temp_dir("bad");
    let big = dir.join("big");
    std::fs::write(&big, "s3cr3t".repeat(20_000)).unwrap();
    let not_utf8 = dir.join("binary");
    std::fs::write(&not_utf8, b"s3cr3t\xff\xfe").unwrap();
    let empty = dir.join("empty");
    std::fs::write(&empty, "  \n").unwrap();
    let missing = dir.join("missing");
    let server = TokenServer::start().await;

    for (path, permanent, says) in [
        (big, true, "larger than 64 KiB"),
        (not_utf8, true, "not UTF-8"),
        (dir.clone(), true, "not a regular file"),
        (missing, true, "cannot read"),
        (empty, false, "is empty"),
    ] {
        let auth = ClientAuth::client_assertion_file("c", &path);
        let e = source(&server, auth).token().await.unwrap_err();
        let shown = format!("{e} {e:?}");
        assert_eq!(e.is_permanent(), permanent, "{shown}");
        assert_eq!(e.is_retryable(), !permanent, "{shown}");
        assert!(shown.contains(says), "{shown}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
    assert_eq!(server.requests(), 0);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn an_assertion_the_server_echoes_is_removed_from_the_error() {
    let dir = temp_dir("echo");
    let path = dir.join("token");
    rotate(&path, "echoed-assertion-Zq9");
    let server = TokenServer::start_with(support::Reply::json(
        400,
        serde_json::json!({"error": "invalid_client", "error_description": "bad echoed-assertion-Zq9"}),
    ))
    .await;
    let e = source(&server, ClientAuth::client_assertion_file("c", &path))
        .token()
        .await
        .unwrap_err();
    let shown = format!("{e} {e:?} {:?}", e.body_excerpt());
    assert!(e.is_permanent());
    assert!(!shown.contains("echoed-assertion-Zq9"), "{shown}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_rotated_subject_token_file_is_exchanged_at_the_next_fetch() {
    use tower_alf::grant::{SubjectToken, TokenExchange};

    let dir = temp_dir("subject");
    let path = dir.join("token");
    rotate(&path, "subject-one\n");
    let server = TokenServer::start().await;
    let endpoint = endpoint_builder_with(&server, ClientAuth::none("sts-client"))
        .build()
        .unwrap();
    let grant = TokenExchange::new(endpoint, SubjectToken::file(&path, SubjectToken::JWT));
    let source = TokenSource::builder(grant)
        .rejection_interval(Duration::ZERO)
        .build();

    let first = source.token().await.unwrap();
    assert_eq!(server.last().field("subject_token"), Some("subject-one"));
    assert_eq!(
        server.last().field("subject_token_type"),
        Some(SubjectToken::JWT)
    );
    rotate(&path, "subject-two");
    source.invalidate(first.id()).await.unwrap();
    assert_eq!(server.last().field("subject_token"), Some("subject-two"));

    std::fs::remove_file(&path).unwrap();
    let e = TokenSource::new(TokenExchange::new(
        endpoint_builder_with(&server, ClientAuth::none("sts-client"))
            .build()
            .unwrap(),
        SubjectToken::file(&path, SubjectToken::JWT),
    ))
    .token()
    .await
    .unwrap_err();
    assert!(
        e.is_permanent() && e.to_string().contains("subject token file"),
        "{e}"
    );
    assert_eq!(server.requests(), 2);
    std::fs::remove_dir_all(dir).unwrap();
}
