//! `RefreshTokenGrant` behind a `StoreGrant`: a token set shared by several
//! sources (each with its own store handle, as separate processes have),
//! against a loopback token endpoint that rotates refresh tokens and
//! answers `invalid_grant` to one already redeemed. In memory and in the
//! real Redis on 127.0.0.1:6379.
//!
//! Paused time, held (see `support`): the clock moves only as `drive`
//! advances it, 1 ms at a time while the fleet works, so the instances
//! waiting on another's lock poll as they would.

mod support;

use std::{
    future::{Future, IntoFuture},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::post, Router};
use bytes::Bytes;
use serde_json::json;
use support::hold_clock;
use tokio::net::TcpListener;
use tower_alf::{
    grant::RefreshTokenGrant,
    store::{CacheKey, MemoryStore, StoreGrant, StoredToken, TokenStore},
    ClientAuth, RetryPolicy, Token, TokenEndpoint, TokenSource,
};

const LIFETIME: Duration = Duration::from_secs(100);

/// A token endpoint whose refresh tokens are used once: each refresh
/// answers `at-<n>` and `rt-<n>`, and only the latest refresh token works.
struct Rotating {
    /// How long each answer takes, of Tokio time.
    delay: Mutex<Duration>,
    current: Mutex<String>,
    refreshes: AtomicUsize,
    invalid_grants: AtomicUsize,
}

impl Rotating {
    fn refreshes(&self) -> usize {
        self.refreshes.load(Ordering::SeqCst)
    }
    fn invalid_grants(&self) -> usize {
        self.invalid_grants.load(Ordering::SeqCst)
    }
}

async fn token(State(server): State<Arc<Rotating>>, body: Bytes) -> axum::response::Response {
    let delay = *server.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let sent = form_urlencoded::parse(&body)
        .find(|(name, _)| name == "refresh_token")
        .map(|(_, value)| value.into_owned());
    let mut current = server.current.lock().unwrap();
    if sent.as_deref() != Some(current.as_str()) {
        server.invalid_grants.fetch_add(1, Ordering::SeqCst);
        let body = json!({"error": "invalid_grant", "error_description": "refresh token reused"});
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    let n = server.refreshes.fetch_add(1, Ordering::SeqCst) + 1;
    *current = format!("rt-{n}");
    axum::Json(json!({
        "access_token": format!("at-{n}"),
        "token_type": "Bearer",
        "expires_in": LIFETIME.as_secs(),
        "refresh_token": format!("rt-{n}"),
    }))
    .into_response()
}

async fn start() -> (TokenEndpoint, Arc<Rotating>) {
    let server = Arc::new(Rotating {
        delay: Mutex::new(Duration::ZERO),
        current: Mutex::new("rt-0".to_owned()),
        refreshes: AtomicUsize::new(0),
        invalid_grants: AtomicUsize::new(0),
    });
    let router = Router::new()
        .route("/token", post(token))
        .with_state(Arc::clone(&server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, router).into_future());
    let endpoint = TokenEndpoint::builder(url)
        .client_auth(ClientAuth::none("fleet-cli"))
        .retry(RetryPolicy::none())
        .timeout(Duration::from_secs(3600))
        .build()
        .unwrap();
    (endpoint, server)
}

/// A source over the token set in `store` under `key`.
fn instance<S: TokenStore>(grant: RefreshTokenGrant, store: S, key: &CacheKey) -> TokenSource {
    let stored = StoreGrant::new(grant, store, key.clone())
        .timeout(StoreGrant::<RefreshTokenGrant>::MAX_TIMEOUT)
        .lock_ttl(Duration::from_secs(60))
        .poll_interval(Duration::from_millis(1));
    TokenSource::builder(stored).jitter(0.0).build()
}

/// Awaits `work`, moving the held clock 1 ms whenever it waits.
async fn drive<T>(work: impl Future<Output = T>) -> T {
    let mut work = std::pin::pin!(work);
    let started = std::time::Instant::now();
    loop {
        tokio::select! {
            biased;
            out = &mut work => return out,
            () = tokio::task::yield_now() => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the fleet did not settle"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
    }
}

/// `callers` concurrent `token()` calls on each source; the access tokens
/// they got.
async fn everyone_asks(sources: &[TokenSource], callers: usize) -> Vec<String> {
    let tasks: Vec<_> = sources
        .iter()
        .flat_map(|source| (0..callers).map(move |_| source.clone()))
        .map(|source| tokio::spawn(async move { source.token().await }))
        .collect();
    drive(async {
        let mut tokens = Vec::new();
        for task in tasks {
            let token = task.await.unwrap().expect("a token");
            tokens.push(token.access_token().secret().to_owned());
        }
        tokens
    })
    .await
}

/// Two instances (one seeded with the login's refresh token, one resuming
/// from the store), many callers each, several expiries: one refresh per
/// expiry for the fleet and no refresh token redeemed twice. Then a
/// restart resumes from the store, with the access token fresh and long
/// expired.
async fn a_fleet_shares_one_rotating_token_set<S: TokenStore + Clone>(store: S, key: CacheKey) {
    let _clock = hold_clock();
    let (endpoint, server) = start().await;
    let sources = [
        instance(
            RefreshTokenGrant::new(endpoint.clone(), "rt-0"),
            store.clone(),
            &key,
        ),
        instance(
            RefreshTokenGrant::resume(endpoint.clone()),
            store.clone(),
            &key,
        ),
    ];

    for round in 1..=5 {
        let tokens = everyone_asks(&sources, 50).await;
        assert!(
            tokens.iter().all(|t| *t == format!("at-{round}")),
            "round {round}: {tokens:?}"
        );
        assert_eq!(server.refreshes(), round, "one refresh per expiry");
        assert_eq!(server.invalid_grants(), 0);
        tokio::time::advance(LIFETIME).await;
    }
    drop(sources);

    // A restart while the stored access token is still fresh: taken as is.
    let restarted = instance(
        RefreshTokenGrant::resume(endpoint.clone()),
        store.clone(),
        &key,
    );
    let token = drive(restarted.token()).await.unwrap();
    assert_eq!(token.access_token().secret(), "at-5");
    assert_eq!(server.refreshes(), 5);
    drop(restarted);

    // The fleet was down past the access token's expiry (on the wall
    // clock the store keeps): the set is still there, and a restart
    // refreshes with its refresh token, no login needed.
    let stored = store.get(&key).await.unwrap().expect("the token set");
    let expired = Token::bearer(stored.access_token().secret())
        .unwrap()
        .with_expires_at(SystemTime::now() - Duration::from_secs(3600))
        .with_refresh_token(stored.refresh_token().unwrap().clone());
    store
        .put(&key, &StoredToken::from_token(&expired))
        .await
        .unwrap();
    let restarted = instance(RefreshTokenGrant::resume(endpoint), store.clone(), &key);
    let token = drive(restarted.token()).await.unwrap();
    assert_eq!(token.access_token().secret(), "at-6");
    assert_eq!(server.refreshes(), 6);
    assert_eq!(server.invalid_grants(), 0);
    let stored = store.get(&key).await.unwrap().expect("the new set");
    assert_eq!(stored.refresh_token().unwrap().secret(), "rt-6");
}

/// A refresh slower than `StoreGrant`'s `max_wait` (1 s): the others wait
/// for the lock holder instead of redeeming the same refresh token.
#[tokio::test(start_paused = true)]
async fn a_slow_refresh_is_waited_for_not_redeemed_twice() {
    let _clock = hold_clock();
    let (endpoint, server) = start().await;
    let store = MemoryStore::new();
    let key = key("slow");
    let sources: Vec<_> = (0..4)
        .map(|_| {
            let grant = StoreGrant::new(
                RefreshTokenGrant::new(endpoint.clone(), "rt-0"),
                store.clone(),
                key.clone(),
            )
            .poll_interval(Duration::from_millis(1));
            TokenSource::builder(grant).jitter(0.0).build()
        })
        .collect();
    assert!(everyone_asks(&sources, 10)
        .await
        .iter()
        .all(|t| t == "at-1"));

    *server.delay.lock().unwrap() = Duration::from_secs(3);
    tokio::time::advance(LIFETIME).await;
    let tokens = everyone_asks(&sources, 10).await;
    assert!(tokens.iter().all(|t| t == "at-2"), "{tokens:?}");
    assert_eq!(server.refreshes(), 2);
    assert_eq!(server.invalid_grants(), 0);
}

fn key(test: &str) -> CacheKey {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    CacheKey::builder("https://idp.example/token", "refresh_token")
        .namespace(format!("alf-test:{test}:{}:{nanos}", std::process::id()))
        .build()
}

#[tokio::test(start_paused = true)]
async fn a_fleet_shares_one_rotating_token_set_in_memory() {
    // Each instance its own handle onto the one map, as each process has
    // its own connection to Redis.
    a_fleet_shares_one_rotating_token_set(MemoryStore::new(), key("memory")).await;
}

#[cfg(feature = "redis")]
#[tokio::test(start_paused = true)]
async fn a_fleet_shares_one_rotating_token_set_in_redis() {
    let store = tower_alf::store::RedisStore::builder("redis://127.0.0.1:6379/")
        .connect_timeout(Duration::from_secs(60))
        .response_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    a_fleet_shares_one_rotating_token_set(store, key("redis")).await;
}

#[tokio::test]
async fn resuming_from_an_empty_store_fails_without_a_request() {
    let (endpoint, server) = start().await;
    let source = instance(
        RefreshTokenGrant::resume(endpoint),
        MemoryStore::new(),
        &key("empty"),
    );
    let e = source.token().await.unwrap_err();
    assert!(e.is_permanent(), "{e}");
    assert!(e.to_string().contains("log in first"), "{e}");
    assert_eq!(server.refreshes() + server.invalid_grants(), 0);
}

#[tokio::test]
async fn a_stored_token_set_outlives_its_access_token_in_memory() {
    let store = MemoryStore::new();
    let key = key("outlives");
    let expired = |refresh: Option<&str>| {
        let token = Token::bearer("at-old")
            .unwrap()
            .with_expires_at(SystemTime::now() - Duration::from_secs(1));
        StoredToken::from_token(&match refresh {
            Some(r) => token.with_refresh_token(r),
            None => token,
        })
    };
    store.put(&key, &expired(None)).await.unwrap();
    assert!(store.get(&key).await.unwrap().is_none(), "expired, gone");
    store.put(&key, &expired(Some("rt-9"))).await.unwrap();
    let kept = store.get(&key).await.unwrap().expect("a set is kept");
    assert_eq!(kept.refresh_token().unwrap().secret(), "rt-9");
}
