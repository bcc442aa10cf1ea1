//! A client assertion taken from another `TokenSource`
//! (`ClientAuth::client_assertion_source`), against a real token endpoint
//! over loopback that refuses assertions it was told are rotated away.

mod support;

use std::{
    collections::HashSet,
    future::IntoFuture,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::post, Router};
use bytes::Bytes;
use serde_json::json;
use tokio::net::TcpListener;
use tower_alf::{
    grant::{self, ClientCredentials, FetchToken, TokenFile},
    ClientAuth, Error, RetryPolicy, Token, TokenEndpoint, TokenSource,
};

/// A token endpoint that answers `invalid_client` to any assertion in
/// `refused` and a token to the others, recording every assertion sent.
#[derive(Default)]
struct Federation {
    refused: Mutex<HashSet<String>>,
    sent: Mutex<Vec<String>>,
    issued: AtomicUsize,
}

impl Federation {
    fn refuse(&self, assertion: &str) {
        self.refused.lock().unwrap().insert(assertion.to_owned());
    }

    fn sent(&self) -> Vec<String> {
        self.sent.lock().unwrap().clone()
    }
}

async fn token(State(state): State<Arc<Federation>>, body: Bytes) -> axum::response::Response {
    let assertion = form_urlencoded::parse(&body)
        .find(|(name, _)| name == "client_assertion")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    state.sent.lock().unwrap().push(assertion.clone());
    if state.refused.lock().unwrap().contains(&assertion) {
        let body = json!({"error": "invalid_client", "error_description": "assertion expired"});
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    let n = state.issued.fetch_add(1, Ordering::SeqCst) + 1;
    let body =
        json!({"access_token": format!("api-{n}"), "token_type": "Bearer", "expires_in": 3600});
    axum::Json(body).into_response()
}

async fn start() -> (String, Arc<Federation>) {
    let state = Arc::new(Federation::default());
    let router = Router::new()
        .route("/token", post(token))
        .with_state(Arc::clone(&state));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, router).into_future());
    (url, state)
}

/// An assertion source handing out `svid-0`, `svid-1`, … (a SPIFFE agent,
/// say), and the count of its fetches.
fn svids() -> (TokenSource, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let grant = grant::from_fn(move |request: FetchToken| {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        async move {
            Ok(Token::bearer(format!("svid-{n}"))?
                .with_issued_at(request.started_at)
                .with_expires_in(Duration::from_secs(3600)))
        }
    });
    let source = TokenSource::builder(grant)
        .rejection_interval(Duration::ZERO)
        .build();
    (source, calls)
}

fn api(url: &str, assertion: &TokenSource) -> TokenSource {
    let endpoint = TokenEndpoint::builder(url)
        .client_auth(ClientAuth::client_assertion_source(
            "workload",
            assertion.clone(),
        ))
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    TokenSource::builder(ClientCredentials::new(endpoint))
        .rejection_interval(Duration::ZERO)
        .build()
}

#[tokio::test]
async fn each_fetch_sends_the_assertion_sources_current_token() {
    let (url, server) = start().await;
    let (assertion, calls) = svids();
    let api = api(&url, &assertion);

    let first = api.token().await.unwrap();
    // The assertion source rotates on its own (its token was replaced).
    let svid = assertion.token().await.unwrap();
    assertion.invalidate(svid.id()).await.unwrap();
    api.invalidate(first.id()).await.unwrap();

    assert_eq!(server.sent(), ["svid-0", "svid-1"]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_refused_assertion_is_invalidated_and_the_fresh_one_sent_at_once() {
    // The platform rotates the projected token on disk; the token endpoint
    // refuses the old one before the assertion source would re-read it.
    let dir = std::env::temp_dir().join(format!("alf-assertion-source-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("identity");
    std::fs::write(&path, "projected-one").unwrap();
    let (url, server) = start().await;
    let assertion = TokenSource::new(TokenFile::new(&path));
    let api = api(&url, &assertion);

    let first = api.token().await.unwrap();
    std::fs::write(&path, "projected-two").unwrap();
    server.refuse("projected-one");
    let second = api.invalidate(first.id()).await.unwrap();

    assert_eq!(second.access_token().secret(), "api-2");
    assert_eq!(
        server.sent(),
        ["projected-one", "projected-one", "projected-two"]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_second_invalid_client_is_the_answer() {
    let (url, server) = start().await;
    let (assertion, calls) = svids();
    server.refuse("svid-0");
    server.refuse("svid-1");

    let e = api(&url, &assertion).token().await.unwrap_err();
    assert_eq!(e.oauth_error().unwrap().code().as_str(), "invalid_client");
    assert!(!format!("{e} {e:?}").contains("svid-"), "{e:?}");
    // One retry with a fresh assertion, not one per refusal.
    assert_eq!(server.sent(), ["svid-0", "svid-1"]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_failing_assertion_source_fails_the_fetch_and_sends_nothing() {
    let (url, server) = start().await;
    let broken = TokenSource::new(grant::from_fn(|_: FetchToken| async {
        Err::<Token, _>(Error::permanent("no SVID: the agent socket is missing"))
    }));
    let e = api(&url, &broken).token().await.unwrap_err();
    assert!(e.is_permanent(), "{e}");
    assert!(e.to_string().contains("agent socket"), "{e}");
    assert!(server.sent().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_sources_share_one_assertion_fetch_and_one_replacement() {
    const SOURCES: usize = 50;
    let (url, server) = start().await;
    let (assertion, calls) = svids();
    let apis: Vec<_> = (0..SOURCES).map(|_| api(&url, &assertion)).collect();

    let handles: Vec<_> = apis
        .iter()
        .map(|api| {
            let api = api.clone();
            tokio::spawn(async move { api.token().await.unwrap() })
        })
        .collect();
    let mut firsts = Vec::new();
    for handle in handles {
        firsts.push(handle.await.unwrap());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(server.sent(), vec!["svid-0"; SOURCES]);

    // svid-0 is rotated away: every source's next request is refused once,
    // and the one assertion is replaced once for all of them.
    server.refuse("svid-0");
    let handles: Vec<_> = apis
        .iter()
        .zip(firsts)
        .map(|(api, first)| {
            let api = api.clone();
            tokio::spawn(async move { api.invalidate(first.id()).await.unwrap() })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // Each source sent svid-1 once, accepted; a source that asked after
    // the replacement came sent it at once, without a refusal first.
    let sent = &server.sent()[SOURCES..];
    let refused = sent.iter().filter(|a| a.as_str() == "svid-0").count();
    let fresh = sent.iter().filter(|a| a.as_str() == "svid-1").count();
    assert_eq!(fresh, SOURCES);
    assert!((1..=SOURCES).contains(&refused), "{refused} refusals");
    assert_eq!(refused + fresh, sent.len());
}
