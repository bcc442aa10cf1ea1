//! Everything a full run writes to tracing (fetch, retry, background
//! refresh, 401 replay, failure), at TRACE level with span fields, holds no
//! client secret and no access or refresh token.

mod scripted;

use std::{
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use scripted::{json, Endpoint, Reply};
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_alf::{
    grant::ClientCredentials, BearerAuthLayer, ClientAuth, RetryPolicy, TokenEndpoint, TokenSource,
};

const SECRET: &str = "cs-9f8e7d6c5b4a";
const JWT_IN_HTML: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJsZWFrIn0.c2lnbmF0dXJl";

fn issued(n: u32, expires_in: u64) -> Reply {
    json(
        200,
        &format!(
            r#"{{"access_token":"at-{n}-7f3a9c","token_type":"Bearer","expires_in":{expires_in},"refresh_token":"rt-{n}-51c0de"}}"#
        ),
    )
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_run_logs_no_secret_and_no_token() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let html = Reply::Http(
        502,
        vec![],
        format!("<p>upstream token {JWT_IN_HTML}</p>").into_bytes(),
    );
    let invalid_client = json(
        401,
        r#"{"error":"invalid_client","error_description":"bad secret"}"#,
    );
    let endpoint = Endpoint::start([
        html,           // first fetch: a 502, retried
        issued(1, 100), // tok 1
        issued(2, 100), // background refresh at 75 s
        issued(3, 100), // after the 401
        invalid_client, // the last refresh fails
    ])
    .await;
    let grant = ClientCredentials::new(
        TokenEndpoint::builder(&endpoint.url)
            .client_auth(ClientAuth::basic("client-id", SECRET))
            .retry(RetryPolicy::default().jitter(0.0))
            .build()
            .unwrap(),
    );
    let source = TokenSource::builder(grant).jitter(0.0).build();
    let client = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source.clone()))
        .service(service_fn(|req: Request<Full<Bytes>>| async move {
            // The API rejects token 2 once, so that a replay happens.
            let status = if req.headers()["authorization"] == "Bearer at-2-7f3a9c" {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::OK
            };
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = status;
            Ok::<_, std::convert::Infallible>(response)
        }));
    let send = || {
        client
            .clone()
            .oneshot(Request::new(Full::new(Bytes::new())))
    };

    assert_eq!(send().await.unwrap().status(), StatusCode::OK); // fetch with a retry
    tokio::time::sleep(Duration::from_secs(80)).await;
    assert_eq!(send().await.unwrap().status(), StatusCode::OK); // stale: background refresh
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(send().await.unwrap().status(), StatusCode::OK); // 401, refresh, replay
    tokio::time::sleep(Duration::from_secs(200)).await;
    let failure = send().await.unwrap_err(); // expired, and the refresh fails
    tracing::error!(error = %failure, debug = ?failure, "what an application would log");
    tracing::error!(source = ?source, "and the source itself");
    assert_eq!(endpoint.requests(), 5);
    assert_eq!(source.stats().replays, 1);

    let output = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    for event in [
        "token request failed; retrying",
        "token fetched",
        "reason=stale",
        "reason=rejected",
        "replaying",
        "token fetch failed",
    ] {
        assert!(
            output.contains(event),
            "the run logged {event:?}:\n{output}"
        );
    }
    let secrets = [
        SECRET,
        "at-1-7f3a9c",
        "at-2-7f3a9c",
        "at-3-7f3a9c",
        "rt-1-51c0de",
        "rt-2-51c0de",
        "rt-3-51c0de",
        JWT_IN_HTML,
        "Y2xpZW50LWlkOmNzLTlmOGU3ZDZjNWI0YQ", // Basic credentials
    ];
    for secret in secrets {
        assert!(
            !output.contains(secret),
            "{secret:?} leaked into:\n{output}"
        );
    }
}
