//! `alf --repeat N --concurrency C` against a loopback server that counts
//! the connections it accepts: one connection per request in flight, and
//! connection errors counted apart from HTTP statuses in `--stats`.

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpListener, process::Command};

/// A token endpoint and an API on one loopback port, HTTP/1.1 with
/// keep-alive; the number of connections accepted.
async fn start() -> (String, Arc<AtomicUsize>) {
    start_rejecting(0).await
}

/// [`start`], the API answering 401 to its first `reject` requests.
async fn start_rejecting(reject: usize) -> (String, Arc<AtomicUsize>) {
    let rejected = Arc::new(AtomicUsize::new(0));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let rejected = rejected.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let rejected = rejected.clone();
                    async move {
                        let mut response = Response::new(Full::new(Bytes::from(
                            if request.uri().path() == "/token" {
                                r#"{"access_token":"load-token","token_type":"Bearer","expires_in":3600}"#
                            } else {
                                "ok"
                            },
                        )));
                        if request.uri().path() != "/token"
                            && rejected.fetch_add(1, Ordering::SeqCst) < reject
                        {
                            *response.status_mut() = hyper::StatusCode::UNAUTHORIZED;
                        }
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (base, accepted)
}

async fn alf(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_alf"))
        .env_remove("XDG_CACHE_HOME")
        .env("HOME", "")
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

fn stats(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.lines().last().expect("a stats line")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrency_512_opens_at_most_one_connection_per_request_in_flight() {
    let (base, accepted) = start().await;
    let token_url = format!("{base}/token");
    let api = format!("{base}/api");
    let (code, stdout, stderr) = alf(&[
        "--token-url",
        &token_url,
        "--client-id",
        "c",
        "--auth-method",
        "none",
        "--repeat",
        "5000",
        "--concurrency",
        "512",
        "--stats",
        &api,
    ])
    .await;
    assert_eq!(code, 0, "{stderr}");
    // The token request has a connection of its own (another client).
    let connections = accepted.load(Ordering::SeqCst);
    eprintln!("connections accepted: {connections}");
    let line = stats(&stdout);
    assert_eq!(line["status"]["200"], 5000, "{line}");
    assert_eq!(line["connection_errors"], 0, "{line}");
    assert!(
        connections <= 512 + 1,
        "{connections} connections for 512 in flight"
    );
}

#[tokio::test]
async fn connection_errors_are_counted_apart_from_statuses() {
    let (base, _) = start().await;
    let token_url = format!("{base}/token");
    // A port nothing listens on: bound, then closed.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}/api", closed.local_addr().unwrap());
    drop(closed);
    let (code, stdout, stderr) = alf(&[
        "--token-url",
        &token_url,
        "--client-id",
        "c",
        "--auth-method",
        "none",
        "--repeat",
        "20",
        "--concurrency",
        "4",
        "--stats",
        &api,
    ])
    .await;
    assert_eq!(code, 1, "{stderr}");
    let line = stats(&stdout);
    assert_eq!(line["requests"], 20, "{line}");
    assert_eq!(line["errors"], 20, "{line}");
    assert_eq!(line["connection_errors"], 20, "{line}");
    assert_eq!(line["status"], serde_json::json!({}), "{line}");
    assert!(stderr.contains("20 of 20 requests failed"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_after_401s_under_concurrency_do_not_wait_for_a_connection() {
    // Every worker's first answer is a 401 it replays: the replay needs a
    // connection while the bound is reached.
    let (base, accepted) = start_rejecting(8).await;
    let (token_url, api) = (format!("{base}/token"), format!("{base}/api"));
    let run = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        alf(&[
            "--token-url",
            &token_url,
            "--client-id",
            "c",
            "--auth-method",
            "none",
            "--repeat",
            "100",
            "--concurrency",
            "8",
            "--stats",
            &api,
        ]),
    )
    .await
    .expect("alf ends");
    let line = stats(&run.1);
    assert_eq!(line["requests"], 100, "{line} {}", run.2);
    assert_eq!(line["connection_errors"], 0, "{line}");
    assert!(accepted.load(Ordering::SeqCst) > 0);
}
