//! Custom providers are first-class: a grant made with `grant::from_fn`
//! gets single flight, background refresh with backoff, the memory of a
//! permanent failure and the crate's redaction, as the built-in grants do.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use http::{HeaderMap, StatusCode};
use tower_alf::{
    grant::{self, FetchToken},
    Error, Token, TokenSource,
};

fn counted<F>(
    answer: F,
) -> (
    Arc<AtomicUsize>,
    grant::FromFn<impl Fn(FetchToken) -> Fut + Send + Sync + 'static>,
)
where
    F: Fn(usize, FetchToken) -> Result<Token, Error> + Send + Sync + 'static,
{
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let grant = grant::from_fn(move |request: FetchToken| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        let answer = answer(n, request);
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            answer
        }) as Fut
    });
    (calls, grant)
}

type Fut = Pin<Box<dyn Future<Output = Result<Token, Error>> + Send>>;

fn token(n: usize, request: &FetchToken, lifetime: u64) -> Result<Token, Error> {
    Ok(Token::bearer(format!("token-{n}"))?
        .with_issued_at(request.started_at)
        .with_expires_in(Duration::from_secs(lifetime)))
}

#[tokio::test(start_paused = true)]
async fn a_closure_grant_is_called_once_for_a_thousand_concurrent_callers() {
    let (calls, grant) = counted(|n, request| token(n, &request, 3600));
    let source = TokenSource::new(grant);
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let source = source.clone();
            tokio::spawn(async move { source.token().await })
        })
        .collect();
    for task in tasks {
        let token = task.await.unwrap().unwrap();
        assert_eq!(token.access_token().secret(), "token-0");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(source.stats().fetches, 1);
}

#[tokio::test(start_paused = true)]
async fn a_retryable_failure_of_a_closure_grant_is_retried_after_the_backoff_while_the_token_serves(
) {
    // The first token lives 100 s; the background refresh at 75 s fails
    // once with a retryable error, then succeeds.
    let (calls, grant) = counted(|n, request| match n {
        1 => Err(Error::retryable("the agent is not ready")),
        _ => token(n, &request, 100),
    });
    let source = TokenSource::builder(grant).jitter(0.0).build();
    assert_eq!(
        source.token().await.unwrap().access_token().secret(),
        "token-0"
    );

    tokio::time::advance(Duration::from_secs(80)).await;
    // Stale: served at once, a background refresh starts and fails.
    assert_eq!(
        source.token().await.unwrap().access_token().secret(),
        "token-0"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // Within the backoff: still the cached token, no new call.
    assert_eq!(
        source.token().await.unwrap().access_token().secret(),
        "token-0"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // After it, the refresh is tried again and replaces the token.
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(
        source.token().await.unwrap().access_token().secret(),
        "token-0"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        source.token().await.unwrap().access_token().secret(),
        "token-2"
    );
}

#[tokio::test(start_paused = true)]
async fn a_retryable_failure_at_first_use_is_not_remembered() {
    let (calls, grant) = counted(|n, request| match n {
        0 => Err(Error::retryable("busy").with_retry_after(Some(Duration::from_secs(3)))),
        _ => token(n, &request, 3600),
    });
    let source = TokenSource::new(grant);
    let e = source.token().await.unwrap_err();
    assert!(e.is_retryable() && !e.is_permanent());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
    assert_eq!(
        source.token().await.unwrap().access_token().secret(),
        "token-1"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_permanent_failure_of_a_closure_grant_is_remembered_then_asked_again() {
    let (calls, grant) = counted(|n, request| match n {
        0 => Err(Error::permanent("the credential file is missing")),
        _ => token(n, &request, 3600),
    });
    let source = TokenSource::builder(grant)
        .permanent_error_memory(Duration::from_secs(5))
        .build();
    for _ in 0..10 {
        let e = source.token().await.unwrap_err();
        assert!(e.is_permanent() && !e.is_retryable());
        assert!(
            e.to_string().contains("the credential file is missing"),
            "{e}"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(
        source.token().await.unwrap().access_token().secret(),
        "token-1"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn an_endpoint_answer_from_a_closure_grant_is_classified_and_redacted() {
    let body = br#"{"error":"invalid_grant","error_description":"assertion hunter2 expired","access_token":"leaked-at","note":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"}"#;
    let (calls, grant) = counted(move |_, _| {
        Err(Error::from_response(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            body,
            &["hunter2"],
        ))
    });
    let source = TokenSource::new(grant);
    let e = source.token().await.unwrap_err();
    assert!(e.is_permanent() && e.is_reauthorization_required());
    assert_eq!(e.status_code(), Some(StatusCode::BAD_REQUEST));
    let shown = format!("{e} {e:?} {}", e.body_excerpt().unwrap());
    for secret in ["hunter2", "leaked-at", "eyJhbGciOiJIUzI1NiJ9"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(shown.contains("invalid_grant"), "{shown}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_provider_reason_cannot_carry_a_jwt_or_control_characters() {
    let (_, grant) = counted(|_, _| {
        Err(Error::retryable(
            "bad output \u{1b}[2J: eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln and Bearer abc.def",
        ))
    });
    let e = TokenSource::new(grant).token().await.unwrap_err();
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains('\u{1b}'), "{shown}");
    assert!(!shown.contains("eyJhbGciOiJIUzI1NiJ9"), "{shown}");
    assert!(!shown.contains("abc.def"), "{shown}");
}

#[tokio::test(start_paused = true)]
async fn a_token_built_with_a_wall_clock_expiry_is_refreshed_before_it() {
    let (calls, grant) = counted(|n, _| {
        Ok(Token::bearer(format!("token-{n}"))?
            .with_scope("read")
            .with_extra_member("issued_by", "vault")
            .with_expires_at(std::time::SystemTime::now() + Duration::from_secs(600)))
    });
    let source = TokenSource::builder(grant).jitter(0.0).build();
    let first = source.token().await.unwrap();
    assert_eq!(first.scope(), Some("read"));
    assert_eq!(first.extra()["issued_by"], "vault");
    let lifetime = first.lifetime().unwrap();
    assert!(lifetime <= Duration::from_secs(600) && lifetime > Duration::from_secs(590));
    // Expired (less the margin) by 590 s: the next caller waits for a new one.
    tokio::time::advance(Duration::from_secs(595)).await;
    assert_eq!(
        source.token().await.unwrap().access_token().secret(),
        "token-1"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
