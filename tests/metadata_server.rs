//! `grant::MetadataServer` against an in-process server over loopback that
//! behaves like GCP's metadata server: it refuses a request without
//! `Metadata-Flavor: Google` (403), marks every answer with that header,
//! answers 404 for an account the instance lacks, and can be made to
//! answer HTML (a captive portal in its place), drop the header, or hang.
#![cfg(feature = "metadata")]

mod support;

use std::{
    future::IntoFuture,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use support::{eventually, hold_clock};
use tokio::net::TcpListener;
use tower_alf::{grant::MetadataServer, TokenSource};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Normal,
    Html,
    NoFlavor,
    Hang,
}

#[derive(Default)]
struct Seen {
    flavor: Vec<Option<String>>,
    queries: Vec<Option<String>>,
}

struct Gce {
    mode: Mutex<Mode>,
    issued: Mutex<usize>,
    seen: Mutex<Seen>,
}

impl Gce {
    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
    fn requests(&self) -> usize {
        self.seen.lock().unwrap().flavor.len()
    }
}

async fn token(
    State(gce): State<Arc<Gce>>,
    Path(account): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let flavor_sent = headers
        .get("metadata-flavor")
        .map(|v| v.to_str().unwrap().to_owned());
    {
        let mut seen = gce.seen.lock().unwrap();
        seen.flavor.push(flavor_sent.clone());
        seen.queries.push(query);
    }
    let mode = *gce.mode.lock().unwrap();
    let flavor = [("metadata-flavor", "Google")];
    match mode {
        Mode::Hang => std::future::pending().await,
        Mode::Html => {
            let page = format!(
                "<!DOCTYPE html><html><body>{}<p>Sign in to the guest Wi-Fi: \
                 access_token=ya29.portal-secret</p></body></html>",
                "<div>filler</div>".repeat(500)
            );
            return ([("content-type", "text/html")], page).into_response();
        }
        Mode::NoFlavor => {
            let body =
                r#"{"access_token":"ya29.unflavored","expires_in":3599,"token_type":"Bearer"}"#;
            return ([("content-type", "application/json")], body).into_response();
        }
        Mode::Normal => {}
    }
    if flavor_sent.as_deref() != Some("Google") {
        let body = "Missing required header: Metadata-Flavor";
        return (StatusCode::FORBIDDEN, flavor, body).into_response();
    }
    if account != "default" && account != "worker@proj.iam.gserviceaccount.com" {
        return (StatusCode::NOT_FOUND, flavor, "Not Found").into_response();
    }
    let n = {
        let mut issued = gce.issued.lock().unwrap();
        *issued += 1;
        *issued
    };
    let body =
        format!(r#"{{"access_token":"ya29.token-{n}","expires_in":100,"token_type":"Bearer"}}"#);
    (flavor, [("content-type", "application/json")], body).into_response()
}

async fn start() -> (String, Arc<Gce>) {
    let gce = Arc::new(Gce {
        mode: Mutex::new(Mode::Normal),
        issued: Mutex::new(0),
        seen: Mutex::new(Seen::default()),
    });
    let router = Router::new()
        .route(
            "/computeMetadata/v1/instance/service-accounts/{account}/token",
            get(token),
        )
        .with_state(Arc::clone(&gce));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    tokio::spawn(axum::serve(listener, router).into_future());
    (host, gce)
}

#[tokio::test]
async fn the_token_is_asked_with_the_flavor_header_and_the_scopes() {
    let (host, gce) = start().await;
    let source = TokenSource::new(
        MetadataServer::with_host(&host)
            .account("worker@proj.iam.gserviceaccount.com")
            .scope("https://www.googleapis.com/auth/cloud-platform")
            .scope("openid"),
    );
    let token = source.token().await.unwrap();
    assert_eq!(token.access_token().secret(), "ya29.token-1");
    assert_eq!(token.lifetime(), Some(Duration::from_secs(100)));
    let seen = gce.seen.lock().unwrap();
    assert_eq!(seen.flavor, [Some("Google".to_owned())]);
    assert_eq!(
        seen.queries,
        [Some(
            "scopes=https://www.googleapis.com/auth/cloud-platform,openid".to_owned()
        )]
    );
}

#[tokio::test]
async fn an_unknown_account_is_a_404_status_error() {
    let (host, _gce) = start().await;
    let e = TokenSource::new(MetadataServer::with_host(&host).account("nobody@proj.iam"))
        .token()
        .await
        .unwrap_err();
    assert!(e.is_status(), "{e}");
    assert_eq!(e.status_code().map(|s| s.as_u16()), Some(404));
    assert!(!e.is_retryable(), "{e}");
}

#[tokio::test]
async fn an_html_answer_is_an_invalid_response_with_a_bounded_redacted_excerpt() {
    let (host, gce) = start().await;
    gce.set(Mode::Html);
    let e = TokenSource::new(MetadataServer::with_host(&host))
        .token()
        .await
        .unwrap_err();
    assert!(e.is_invalid_response(), "{e}");
    let excerpt = e.body_excerpt().unwrap_or_default();
    assert!(excerpt.len() < 1024, "{} bytes", excerpt.len());
    let shown = format!("{e} {e:?} {excerpt}");
    assert!(!shown.contains("ya29.portal-secret"), "{shown}");
}

#[tokio::test]
async fn an_answer_without_the_flavor_header_is_refused() {
    let (host, gce) = start().await;
    gce.set(Mode::NoFlavor);
    let e = TokenSource::new(MetadataServer::with_host(&host))
        .token()
        .await
        .unwrap_err();
    assert!(e.is_invalid_response(), "{e}");
    assert!(e.to_string().contains("Metadata-Flavor"), "{e}");
    assert!(!format!("{e} {e:?}").contains("ya29.unflavored"), "{e:?}");
}

#[tokio::test(start_paused = true)]
async fn a_server_that_does_not_answer_is_a_timeout() {
    let (host, gce) = start().await;
    gce.set(Mode::Hang);
    let e = TokenSource::new(MetadataServer::with_host(&host).timeout(Duration::from_secs(2)))
        .token()
        .await
        .unwrap_err();
    assert!(e.is_timeout(), "{e}");
    assert!(e.is_retryable(), "{e}");
}

#[tokio::test(start_paused = true)]
async fn a_valid_token_keeps_serving_while_the_refresh_fails() {
    let _clock = hold_clock();
    let (host, gce) = start().await;
    let source = TokenSource::builder(MetadataServer::with_host(&host))
        .jitter(0.0)
        .build();
    let token = |t: std::sync::Arc<tower_alf::Token>| t.access_token().secret().to_owned();
    assert_eq!(token(source.token().await.unwrap()), "ya29.token-1");

    gce.set(Mode::Html);
    tokio::time::advance(Duration::from_secs(80)).await;
    // Stale: served at once while the background refresh fails.
    assert_eq!(token(source.token().await.unwrap()), "ya29.token-1");
    eventually("the background refresh to fail", || {
        source.stats().failures == 1
    })
    .await;
    assert_eq!(token(source.token().await.unwrap()), "ya29.token-1");
    assert_eq!(gce.requests(), 2);

    gce.set(Mode::Normal);
    tokio::time::advance(Duration::from_secs(25)).await;
    assert_eq!(token(source.token().await.unwrap()), "ya29.token-2");
}

#[tokio::test]
async fn a_host_that_is_not_link_local_is_refused_before_any_request() {
    for host in ["metadata.example.com", "10.1.2.3", "169.254.169.254/evil"] {
        let e = TokenSource::new(MetadataServer::with_host(host))
            .token()
            .await
            .unwrap_err();
        assert!(e.is_config(), "{host}: {e}");
    }
}
