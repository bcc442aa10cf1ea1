//! Token stores against a real Redis: the one on 127.0.0.1:6379 (`.ci/run`
//! starts it), or one a test starts itself on a spare port. Each test uses
//! its own key namespace, so tests run in parallel.

use std::{
    collections::HashMap,
    net::SocketAddr,
    process::{Child, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use redis::AsyncCommands;
use tower::{service_fn, ServiceExt};
use tower_alf::{
    grant::{ClientCredentials, FetchToken},
    store::{CacheKey, EncryptionKey, RedisStore, StoreGrant, StoredToken, TokenStore},
    ClientAuth, Error, RefreshReason, Token, TokenEndpoint, TokenSource,
};

const REDIS: &str = "redis://127.0.0.1:6379/";
const SECRET: &str = "store-s3cr3t";

/// A namespace no other test (or earlier run) uses.
fn namespace(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("alf-test:{test}:{}:{nanos}", std::process::id())
}

// ===== a loopback token endpoint and API =====

struct Server {
    lifetime: Duration,
    tokens_issued: AtomicUsize,
    /// Access token → when it expires.
    issued: Mutex<HashMap<String, std::time::Instant>>,
    api_ok: AtomicUsize,
    api_without_token: AtomicUsize,
    api_rejected: AtomicUsize,
}

async fn start(lifetime: Duration) -> (Arc<Server>, SocketAddr) {
    let server = Arc::new(Server {
        lifetime,
        tokens_issued: AtomicUsize::new(0),
        issued: Mutex::new(HashMap::new()),
        api_ok: AtomicUsize::new(0),
        api_without_token: AtomicUsize::new(0),
        api_rejected: AtomicUsize::new(0),
    });
    let app = Router::new()
        .route("/token", post(token_endpoint))
        .route("/api", get(api))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (server, addr)
}

async fn token_endpoint(State(server): State<Arc<Server>>, body: String) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    if form.get("client_secret").map(String::as_str) != Some(SECRET) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let n = server.tokens_issued.fetch_add(1, Ordering::SeqCst) + 1;
    let token = format!("tok-{n}-{}", fastrand::u64(..));
    server
        .issued
        .lock()
        .unwrap()
        .insert(token.clone(), std::time::Instant::now() + server.lifetime);
    Json(serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": server.lifetime.as_secs_f64(),
    }))
    .into_response()
}

/// Accepts a token it issued that has not expired; 401 otherwise.
async fn api(State(server): State<Arc<Server>>, headers: HeaderMap) -> StatusCode {
    let Some(token) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        server.api_without_token.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED;
    };
    let valid = server
        .issued
        .lock()
        .unwrap()
        .get(token)
        .is_some_and(|until| std::time::Instant::now() < *until);
    if valid {
        server.api_ok.fetch_add(1, Ordering::SeqCst);
        StatusCode::OK
    } else {
        server.api_rejected.fetch_add(1, Ordering::SeqCst);
        StatusCode::UNAUTHORIZED
    }
}

fn grant(token_url: &str) -> ClientCredentials {
    let endpoint = TokenEndpoint::builder(token_url)
        .client_auth(ClientAuth::post("store-client", SECRET))
        .build()
        .unwrap();
    ClientCredentials::new(endpoint).scope("read")
}

async fn raw_redis(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("a Redis answers; .ci/run starts one on 127.0.0.1:6379")
}

// ===== two sources, one process =====

#[tokio::test]
async fn two_sources_share_one_fetch_and_a_401_refreshes_once_for_both() {
    let (server, addr) = start(Duration::from_secs(3600)).await;
    let grant = grant(&format!("http://{addr}/token"));
    let key = grant.cache_key().namespace(namespace("two")).build();
    let store = RedisStore::new(REDIS).unwrap();
    let a = TokenSource::new(StoreGrant::new(grant.clone(), store.clone(), key.clone()));
    let b = TokenSource::new(StoreGrant::new(grant, store, key));

    let ta = a.token().await.unwrap();
    let tb = b.token().await.unwrap();
    assert_eq!(ta.access_token(), tb.access_token());
    assert_eq!(
        server.tokens_issued.load(Ordering::SeqCst),
        1,
        "one fetch serves both"
    );

    let ta2 = a.invalidate(ta.id()).await.unwrap();
    assert_ne!(ta2.access_token(), ta.access_token());
    assert_eq!(server.tokens_issued.load(Ordering::SeqCst), 2);
    // b's copy of the old token is rejected too: its compare-and-delete finds
    // a's newer token and leaves it, and b takes it.
    let tb2 = b.invalidate(tb.id()).await.unwrap();
    assert_eq!(tb2.access_token(), ta2.access_token());
    assert_eq!(
        server.tokens_issued.load(Ordering::SeqCst),
        2,
        "the 401 re-fetched once"
    );
}

#[tokio::test]
async fn sources_with_different_scopes_never_share_a_token() {
    let (server, addr) = start(Duration::from_secs(3600)).await;
    let ns = namespace("scopes");
    let read = grant(&format!("http://{addr}/token"));
    let write = read.clone().scope("write");
    let store = RedisStore::new(REDIS).unwrap();
    let a = TokenSource::new(StoreGrant::new(
        read.clone(),
        store.clone(),
        read.cache_key().namespace(&ns).build(),
    ));
    let b = TokenSource::new(StoreGrant::new(
        write.clone(),
        store,
        write.cache_key().namespace(&ns).build(),
    ));
    let ta = a.token().await.unwrap();
    let tb = b.token().await.unwrap();
    assert_ne!(ta.access_token(), tb.access_token());
    assert_eq!(server.tokens_issued.load(Ordering::SeqCst), 2);
}

// ===== what is stored =====

#[tokio::test]
async fn stored_values_have_a_ttl_unix_expiry_and_no_secret() {
    let (_server, addr) = start(Duration::from_secs(120)).await;
    let grant = grant(&format!("http://{addr}/token"));
    let mut raw = raw_redis(REDIS).await;
    let sealing = EncryptionKey::new([42; 32]);
    for encrypted in [false, true] {
        let key = grant
            .cache_key()
            .namespace(namespace(&format!("values-{encrypted}")))
            .build();
        assert!(!key.as_str().contains(SECRET));
        let mut store = RedisStore::builder(REDIS);
        if encrypted {
            store = store.encryption_key(sealing.clone());
        }
        let source = TokenSource::new(StoreGrant::new(
            grant.clone(),
            store.build().unwrap(),
            key.clone(),
        ));
        let token = source.token().await.unwrap();
        let access = token.access_token().secret().to_owned();

        let value: Vec<u8> = raw.get(key.as_str()).await.unwrap();
        let text = String::from_utf8(value).unwrap();
        assert!(!text.contains(SECRET), "no client secret");
        let ttl: i64 = raw.pttl(key.as_str()).await.unwrap();
        assert!(
            ttl > 110_000 && ttl <= 120_000,
            "TTL = remaining lifetime, got {ttl} ms"
        );

        if encrypted {
            assert!(!text.contains(&access), "no plaintext token: {text}");
            assert!(text.contains(":e:"));
        } else {
            assert!(text.contains(&access));
            let json = text.splitn(4, ':').nth(3).unwrap();
            let json: serde_json::Value = serde_json::from_str(json).unwrap();
            assert_eq!(json["v"], 2);
            assert_eq!(json["tt"], "Bearer", "the token type is stored");
            let exp = json["exp"].as_u64().expect("expiry in Unix milliseconds");
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            assert!(exp > now + 110_000 && exp <= now + 120_000);
        }
        let _: () = raw.del(key.as_str()).await.unwrap();
    }
}

#[tokio::test]
async fn compare_and_delete_and_swap_touch_only_the_expected_token() {
    let store = RedisStore::builder(REDIS)
        .encryption_key(EncryptionKey::new([1; 32]))
        .build()
        .unwrap();
    let key = CacheKey::builder("https://idp/token", "client_credentials")
        .namespace(namespace("cas"))
        .build();
    let stored = |name: &str| {
        StoredToken::from_token(
            &Token::bearer(name)
                .unwrap()
                .with_expires_in(Duration::from_secs(60)),
        )
    };
    let (one, two, three) = (stored("one"), stored("two"), stored("three"));
    assert!(store.compare_and_swap(&key, None, &one).await.unwrap());
    assert!(!store.compare_and_swap(&key, None, &two).await.unwrap());
    assert!(!store
        .compare_and_swap(&key, Some(&two.fingerprint()), &three)
        .await
        .unwrap());
    assert!(store
        .compare_and_swap(&key, Some(&one.fingerprint()), &two)
        .await
        .unwrap());
    assert!(!store
        .compare_and_delete(&key, &one.fingerprint())
        .await
        .unwrap());
    assert_eq!(store.get(&key).await.unwrap(), Some(two.clone()));
    assert!(store
        .compare_and_delete(&key, &two.fingerprint())
        .await
        .unwrap());
    assert_eq!(store.get(&key).await.unwrap(), None);

    assert!(store
        .try_lock(&key, "me", Duration::from_secs(5))
        .await
        .unwrap());
    assert!(!store
        .try_lock(&key, "you", Duration::from_secs(5))
        .await
        .unwrap());
    assert!(!store.unlock(&key, "you").await.unwrap());
    assert!(store.unlock(&key, "me").await.unwrap());
    assert!(store
        .try_lock(&key, "you", Duration::from_secs(5))
        .await
        .unwrap());
    assert!(store.unlock(&key, "you").await.unwrap());
}

#[tokio::test]
async fn settings_of_duration_max_are_clamped_to_what_redis_accepts() {
    let store = RedisStore::builder(REDIS)
        .connect_timeout(Duration::MAX)
        .response_timeout(Duration::MAX)
        .ttl_without_expiry(Duration::MAX)
        .build()
        .unwrap();
    let key = CacheKey::builder("https://idp/token", "client_credentials")
        .namespace(namespace("max"))
        .build();
    let forever = StoredToken::from_token(&Token::bearer("forever").unwrap());
    store.put(&key, &forever).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap(), Some(forever));
    assert!(store.try_lock(&key, "me", Duration::MAX).await.unwrap());
    assert!(store.renew_lock(&key, "me", Duration::MAX).await.unwrap());
    assert!(!store.renew_lock(&key, "you", Duration::MAX).await.unwrap());
    let mut raw = raw_redis(REDIS).await;
    let ttl: i64 = raw.pttl(format!("{key}:lock")).await.unwrap();
    assert!(ttl > 0 && ttl <= 365 * 24 * 3600 * 1000, "{ttl}");
    assert!(store.unlock(&key, "me").await.unwrap());
    let _: () = raw.del(key.as_str()).await.unwrap();
}

#[tokio::test]
async fn garbage_in_redis_is_a_miss_and_is_overwritten() {
    let (server, addr) = start(Duration::from_secs(3600)).await;
    let grant = grant(&format!("http://{addr}/token"));
    let key = grant.cache_key().namespace(namespace("garbage")).build();
    let mut raw = raw_redis(REDIS).await;
    let _: () = raw
        .set_ex(key.as_str(), b"\xff\xfenot a token".to_vec(), 60)
        .await
        .unwrap();
    let stored = StoreGrant::new(grant, RedisStore::new(REDIS).unwrap(), key.clone());
    let stats = stored.stats();
    let token = TokenSource::new(stored).token().await.unwrap();
    assert_eq!(server.tokens_issued.load(Ordering::SeqCst), 1);
    // Seen twice: before taking the lock and after (the double check).
    assert_eq!(stats.snapshot().store_errors, 2);
    let value: Vec<u8> = raw.get(key.as_str()).await.unwrap();
    assert!(String::from_utf8_lossy(&value).contains(token.access_token().secret()));
    let _: () = raw.del(key.as_str()).await.unwrap();
}

// ===== a lock holder that dies =====

#[tokio::test]
async fn an_aborted_lock_holder_is_taken_over_within_the_lock_ttl() {
    let (server, addr) = start(Duration::from_secs(3600)).await;
    let real = grant(&format!("http://{addr}/token"));
    let key = real.cache_key().namespace(namespace("abort")).build();
    let store = RedisStore::new(REDIS).unwrap();
    let ttl = Duration::from_secs(1);

    // Instance A: its token request never answers; it is aborted holding the lock.
    let (started, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
    let hanging = service_fn(move |_: FetchToken| {
        let _ = started.send(());
        async { std::future::pending::<Result<Token, Error>>().await }
    });
    let a = StoreGrant::new(hanging, store.clone(), key.clone()).lock_ttl(ttl);
    let holder = tokio::spawn(a.oneshot(FetchToken::new(RefreshReason::FirstUse, None)));
    started_rx.recv().await.unwrap();
    holder.abort();
    let mut raw = raw_redis(REDIS).await;
    let lock: Option<String> = raw.get(format!("{key}:lock")).await.unwrap();
    assert!(lock.is_some(), "A died holding the lock");

    // Instance B waits for the lock to expire, then fetches itself.
    let b = StoreGrant::new(real, store, key.clone()).lock_ttl(ttl);
    let stats = b.stats();
    let began = std::time::Instant::now();
    let token = tokio::time::timeout(Duration::from_secs(5), TokenSource::new(b).token())
        .await
        .expect("nobody waits forever")
        .unwrap();
    let waited = began.elapsed();
    assert!(
        waited < ttl + Duration::from_millis(500),
        "took over after {waited:?}"
    );
    assert!(token.access_token().secret().starts_with("tok-1-"));
    assert_eq!(server.tokens_issued.load(Ordering::SeqCst), 1);
    assert_eq!(stats.snapshot().lock_waits, 1);
    let _: () = raw.del(key.as_str()).await.unwrap();
}

// ===== Redis stopped and restarted =====

struct OwnRedis {
    port: u16,
    child: Child,
}

impl OwnRedis {
    fn start(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is on PATH (.ci/run installs it)");
        Self { port, child }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn ready(&self) {
        for _ in 0..100 {
            if let Ok(client) = redis::Client::open(self.url()) {
                if let Ok(mut c) = client.get_multiplexed_async_connection().await {
                    if redis::cmd("PING")
                        .query_async::<String>(&mut c)
                        .await
                        .is_ok()
                    {
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server on {} did not start", self.port);
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spare_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

type Body = http_body_util::Full<bytes::Bytes>;

/// Sends one request through `api`; its status.
async fn send<S>(api: &S) -> u16
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>> + Clone,
    S::Error: std::fmt::Debug,
{
    let request = http::Request::get("https://api.example/")
        .body(Body::default())
        .unwrap();
    api.clone()
        .oneshot(request)
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn requests_keep_succeeding_while_redis_is_down_and_use_it_again_after() {
    let (server, addr) = start(Duration::from_secs(3600)).await;
    let grant = grant(&format!("http://{addr}/token"));
    let key = grant.cache_key().namespace(namespace("outage")).build();
    let mut redis = OwnRedis::start(spare_port());
    redis.ready().await;
    let stored = StoreGrant::new(grant, RedisStore::new(redis.url()).unwrap(), key.clone())
        .timeout(Duration::from_millis(200));
    let stats = stored.stats();
    // The test forces fetches by rejecting token after token: no throttle.
    let source = TokenSource::builder(stored)
        .rejection_interval(Duration::ZERO)
        .build();
    let api = tower::ServiceBuilder::new()
        .layer(tower_alf::BearerAuthLayer::new(source.clone()))
        .service(service_fn(|req: http::Request<Body>| async move {
            let status = if req.headers().contains_key("authorization") {
                200
            } else {
                401
            };
            let response = http::Response::builder()
                .status(status)
                .body(Body::default());
            Ok::<_, http::Error>(response.unwrap())
        }));
    let t1 = source.token().await.unwrap();
    assert_eq!(send(&api).await, 200);
    assert_eq!(stats.snapshot().store_errors, 0);

    redis.stop();
    let t2 = source.invalidate(t1.id()).await.expect("a local fetch");
    assert_eq!(send(&api).await, 200);
    let t3 = source.invalidate(t2.id()).await.expect("a local fetch");
    assert_eq!(send(&api).await, 200);
    assert!(stats.snapshot().store_errors >= 2, "{:?}", stats.snapshot());
    assert_eq!(server.tokens_issued.load(Ordering::SeqCst), 3);

    let restarted = OwnRedis::start(redis.port);
    restarted.ready().await;
    let mut raw = raw_redis(&restarted.url()).await;
    let mut last = t3;
    let mut resumed = false;
    for _ in 0..50 {
        last = source.invalidate(last.id()).await.unwrap();
        assert_eq!(send(&api).await, 200);
        let value: Option<Vec<u8>> = raw.get(key.as_str()).await.unwrap();
        if value.is_some_and(|v| String::from_utf8_lossy(&v).contains(last.access_token().secret()))
        {
            resumed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(resumed, "the token is stored in Redis again");
    drop(restarted);
}

/// Redis restarted, with or without store calls while it was down: the
/// first store call after it is back succeeds (the connection manager's
/// reconnect is awaited, not reported as a failure), so sharing resumes at
/// once instead of one refresh cycle later.
#[tokio::test]
async fn the_first_store_call_after_a_redis_restart_succeeds() {
    for calls_while_down in [false, true] {
        let (server, addr) = start(Duration::from_secs(3600)).await;
        let grant = grant(&format!("http://{addr}/token"));
        let key = grant.cache_key().namespace(namespace("restart")).build();
        let mut redis = OwnRedis::start(spare_port());
        redis.ready().await;
        let stored = StoreGrant::new(grant, RedisStore::new(redis.url()).unwrap(), key.clone());
        let stats = stored.stats();
        let source = TokenSource::builder(stored)
            .rejection_interval(Duration::ZERO)
            .build();
        let t1 = source.token().await.unwrap();
        assert_eq!(stats.snapshot().store_errors, 0);

        redis.stop();
        let mut last = t1;
        if calls_while_down {
            last = source.invalidate(last.id()).await.expect("a local fetch");
            assert!(stats.snapshot().store_errors >= 1);
        }
        let restarted = OwnRedis::start(redis.port);
        restarted.ready().await;
        let errors = stats.snapshot().store_errors;
        let next = source.invalidate(last.id()).await.unwrap();
        assert_eq!(
            stats.snapshot().store_errors,
            errors,
            "calls while down: {calls_while_down}; {:?}",
            stats.snapshot()
        );
        let mut raw = raw_redis(&restarted.url()).await;
        let value: Option<Vec<u8>> = raw.get(key.as_str()).await.unwrap();
        assert!(
            value.is_some_and(|v| String::from_utf8_lossy(&v).contains(next.access_token().secret())),
            "the token went to Redis on the first call"
        );
        assert!(server.tokens_issued.load(Ordering::SeqCst) >= 2);
        drop(restarted);
    }
}

// ===== a fleet of processes =====

/// The worker half of `eight_processes_make_one_token_request_per_refresh`:
/// this test binary, started again with `ALF_FLEET_*` set. Without them
/// (a normal test run) it does nothing.
#[test]
fn fleet_worker() {
    let Ok(token_url) = std::env::var("ALF_FLEET_TOKEN_URL") else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap();
    let api_url = var("ALF_FLEET_API_URL");
    let namespace = var("ALF_FLEET_NAMESPACE");
    let run = Duration::from_millis(var("ALF_FLEET_RUN_MS").parse().unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        use hyper_util::{client::legacy::Client, rt::TokioExecutor};

        let grant = grant(&token_url);
        // The key of another grant's endpoint, to share a key with a holder
        // whose inner grant reaches another endpoint.
        let key = match std::env::var("ALF_FLEET_KEY_TOKEN_URL") {
            Ok(url) => self::grant(&url).cache_key(),
            Err(_) => grant.cache_key(),
        }
        .namespace(namespace)
        .build();
        let store = RedisStore::new(REDIS).unwrap();
        let mut stored = StoreGrant::new(grant, store, key);
        if let Ok(ttl) = std::env::var("ALF_FLEET_LOCK_TTL_MS") {
            stored = stored.lock_ttl(Duration::from_millis(ttl.parse().unwrap()));
        }
        let source = TokenSource::new(stored);
        if std::env::var("ALF_FLEET_HANG").is_ok() {
            // The token endpoint never answers: this process holds the lock
            // until it is killed.
            let _ = source.token().await;
            return;
        }
        if std::env::var("ALF_FLEET_FIRST_TOKEN").is_ok() {
            // How long this process's first token took: its stall.
            let began = tokio::time::Instant::now();
            let token = source.token().await.unwrap();
            let line = serde_json::json!({
                "stall_ms": began.elapsed().as_millis() as u64,
                "token": token.access_token().secret(),
            });
            println!("FLEET-RESULT {line}");
            return;
        }
        let client = Client::builder(TokioExecutor::new()).build_http::<Body>();
        let api = tower::ServiceBuilder::new()
            .layer(tower_alf::BearerAuthLayer::new(source.clone()))
            .service(client);
        let (mut ok, mut failed) = (0u64, 0u64);
        let end = tokio::time::Instant::now() + run;
        while tokio::time::Instant::now() < end {
            let request = http::Request::get(&api_url).body(Body::default()).unwrap();
            match api.clone().oneshot(request).await {
                Ok(response) if response.status() == 200 => ok += 1,
                _ => failed += 1,
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stats = source.stats();
        let line = serde_json::json!({
            "ok": ok,
            "failed": failed,
            "fetches": stats.fetches,
            "replays": stats.replays,
        });
        println!("FLEET-RESULT {line}");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_make_one_token_request_per_refresh() {
    const PROCESSES: usize = 8;
    let lifetime = Duration::from_secs(2);
    let run = Duration::from_secs(6);
    let (server, addr) = start(lifetime).await;
    let ns = namespace("fleet");
    let began = std::time::Instant::now();
    let workers: Vec<_> = (0..PROCESSES)
        .map(|_| {
            tokio::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "fleet_worker",
                    "--exact",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env("ALF_FLEET_TOKEN_URL", format!("http://{addr}/token"))
                .env("ALF_FLEET_API_URL", format!("http://{addr}/api"))
                .env("ALF_FLEET_NAMESPACE", &ns)
                .env("ALF_FLEET_RUN_MS", run.as_millis().to_string())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap()
        })
        .collect();
    let mut results = Vec::new();
    for worker in workers {
        let out = tokio::time::timeout(Duration::from_secs(30), worker.wait_with_output())
            .await
            .expect("a worker finished")
            .unwrap();
        assert!(out.status.success());
        let stdout = String::from_utf8(out.stdout).unwrap();
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("FLEET-RESULT ").map(|(_, json)| json))
            .unwrap_or_else(|| panic!("no result line in {stdout}"));
        results.push(serde_json::from_str::<serde_json::Value>(line).unwrap());
    }
    let elapsed = began.elapsed();

    let ok: u64 = results.iter().map(|r| r["ok"].as_u64().unwrap()).sum();
    let failed: u64 = results.iter().map(|r| r["failed"].as_u64().unwrap()).sum();
    let tokens = server.tokens_issued.load(Ordering::SeqCst);
    // The fleet refreshes when its first member finds the token stale: with
    // the default jitter, 62–75 % into the lifetime. So one request per
    // 0.62 lifetimes at most, where 8 unshared processes would make 8.
    let cycles = (elapsed.as_secs_f64() / (lifetime.as_secs_f64() * 0.62)).ceil() as usize;
    eprintln!(
        "fleet: {PROCESSES} processes, {elapsed:?}, {tokens} token requests (bound {}), \
         {ok} requests ok, {failed} failed, {} without a token, {} rejected; {results:?}",
        cycles + 1,
        server.api_without_token.load(Ordering::SeqCst),
        server.api_rejected.load(Ordering::SeqCst),
    );
    assert!(ok > 1000, "the fleet made requests");
    assert_eq!(failed, 0, "no request failed");
    assert_eq!(
        server.api_without_token.load(Ordering::SeqCst),
        0,
        "no request without a token"
    );
    assert!(tokens >= 3, "tokens were refreshed during the run");
    assert!(
        tokens <= cycles + 1,
        "{tokens} token requests, more than one per refresh"
    );
}

#[tokio::test]
async fn a_redis_that_never_answers_costs_one_short_timeout_per_fetch() {
    let (server, addr) = start(Duration::from_secs(3600)).await;
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let grant = grant(&format!("http://{addr}/token"));
    let key = grant.cache_key().namespace(namespace("silent")).build();
    let store = RedisStore::new(format!("redis://{silent_addr}/")).unwrap();
    let stored = StoreGrant::new(grant, store, key).timeout(Duration::from_millis(100));
    let stats = stored.stats();
    let source = TokenSource::new(stored);
    let began = std::time::Instant::now();
    let token = source.token().await.unwrap();
    assert!(
        began.elapsed() < Duration::from_secs(1),
        "{:?}",
        began.elapsed()
    );
    let began = std::time::Instant::now();
    source.invalidate(token.id()).await.unwrap();
    assert!(
        began.elapsed() < Duration::from_secs(1),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(server.tokens_issued.load(Ordering::SeqCst), 2);
    assert_eq!(stats.snapshot().store_errors, 2);
}

#[tokio::test]
async fn a_killed_lock_holder_process_is_taken_over_within_the_lock_ttl() {
    let ttl = Duration::from_secs(1);
    let (server, addr) = start(Duration::from_secs(3600)).await;
    // A token endpoint that accepts and never answers, for the doomed holder.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let ns = namespace("killed");
    let mut holder = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "fleet_worker",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("ALF_FLEET_TOKEN_URL", format!("http://{silent_addr}/token"))
        .env("ALF_FLEET_API_URL", "unused")
        .env("ALF_FLEET_NAMESPACE", &ns)
        .env("ALF_FLEET_RUN_MS", "0")
        .env("ALF_FLEET_LOCK_TTL_MS", ttl.as_millis().to_string())
        .env("ALF_FLEET_HANG", "1")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // The holder's key, named from its grant.
    let grant_there = grant(&format!("http://{silent_addr}/token"));
    let key = grant_there.cache_key().namespace(&ns).build();
    let mut raw = raw_redis(REDIS).await;
    for attempt in 0.. {
        let lock: Option<String> = raw.get(format!("{key}:lock")).await.unwrap();
        if lock.is_some() {
            break;
        }
        assert!(attempt < 500, "the holder never took the lock");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    holder.kill().await.unwrap();
    let killed_at = std::time::Instant::now();

    // Another instance on the same key, whose inner grant reaches the real
    // endpoint, waits out the dead holder's lease and fetches.
    let real = grant(&format!("http://{addr}/token"));
    let b = StoreGrant::new(real, RedisStore::new(REDIS).unwrap(), key.clone()).lock_ttl(ttl);
    let stats = b.stats();
    let token = tokio::time::timeout(Duration::from_secs(5), TokenSource::new(b).token())
        .await
        .expect("nobody waits forever")
        .unwrap();
    let waited = killed_at.elapsed();
    assert!(
        waited < ttl + Duration::from_millis(500),
        "took over after {waited:?}"
    );
    assert!(token.access_token().secret().starts_with("tok-1-"));
    assert_eq!(server.tokens_issued.load(Ordering::SeqCst), 1);
    assert_eq!(stats.snapshot().lock_waits, 1);
    let _: () = raw.del(key.as_str()).await.unwrap();
}

// ===== Redis Cluster =====

/// A three-node Redis Cluster (no replicas) this test starts and stops.
#[cfg(feature = "redis-cluster")]
struct OwnCluster {
    nodes: Vec<OwnRedis>,
    dir: std::path::PathBuf,
}

#[cfg(feature = "redis-cluster")]
impl OwnCluster {
    async fn start() -> Self {
        let dir = std::env::temp_dir().join(namespace("cluster").replace(':', "-"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut nodes = Vec::new();
        while nodes.len() < 3 {
            let port = spare_port();
            // The cluster bus listens on port + 10000.
            if port > 55_000 || std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_err() {
                continue;
            }
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .arg("--dir")
                .arg(&dir)
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server is on PATH (.ci/run installs it)");
            let node = OwnRedis { port, child };
            node.ready().await;
            nodes.push(node);
        }
        let created = tokio::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .await
            .expect("redis-cli is on PATH");
        assert!(
            created.status.success(),
            "{}",
            String::from_utf8_lossy(&created.stdout)
        );
        for node in &nodes {
            let mut c = raw_redis(&node.url()).await;
            for attempt in 0.. {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut c)
                    .await
                    .unwrap();
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(attempt < 100, "the cluster did not converge: {info}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Self { nodes, dir }
    }

    fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(OwnRedis::url).collect()
    }
}

#[cfg(feature = "redis-cluster")]
impl Drop for OwnCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(feature = "redis-cluster")]
#[tokio::test]
async fn a_redis_cluster_shares_tokens_and_keeps_a_token_and_its_lock_in_one_slot() {
    let cluster = OwnCluster::start().await;
    let (server, addr) = start(Duration::from_secs(3600)).await;
    let grant = grant(&format!("http://{addr}/token"));
    let key = grant.cache_key().namespace(namespace("cluster")).build();
    let urls = cluster.urls();
    let store = RedisStore::builder(&urls[0])
        .cluster(urls[1..].to_vec())
        .encryption_key(EncryptionKey::new([3; 32]))
        .build()
        .unwrap();
    let a_grant = StoreGrant::new(grant.clone(), store.clone(), key.clone());
    let stats = a_grant.stats();
    let a = TokenSource::new(a_grant);
    let b = TokenSource::new(StoreGrant::new(grant, store.clone(), key.clone()));

    let ta = a.token().await.unwrap();
    let tb = b.token().await.unwrap();
    assert_eq!(ta.access_token(), tb.access_token());
    assert_eq!(server.tokens_issued.load(Ordering::SeqCst), 1);
    let ta2 = a.invalidate(ta.id()).await.unwrap();
    let tb2 = b.invalidate(tb.id()).await.unwrap();
    assert_eq!(ta2.access_token(), tb2.access_token());
    assert_eq!(server.tokens_issued.load(Ordering::SeqCst), 2);
    assert_eq!(stats.snapshot().store_errors, 0, "{:?}", stats.snapshot());

    let mut raw = raw_redis(&urls[0]).await;
    let slot = |k: String| redis::cmd("CLUSTER").arg("KEYSLOT").arg(k).clone();
    let token_slot: i64 = slot(key.to_string()).query_async(&mut raw).await.unwrap();
    let lock_slot: i64 = slot(format!("{key}:lock"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(token_slot, lock_slot);
    drop(cluster);
}

// ===== the fleet's worst stall on a dead or hung lock holder =====

/// Starts this test binary as a fleet worker with `env`.
fn worker(env: &[(&str, String)]) -> tokio::process::Child {
    let mut command = tokio::process::Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "fleet_worker",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    command.spawn().unwrap()
}

/// The `FLEET-RESULT` line of a finished worker.
async fn result_of(worker: tokio::process::Child) -> serde_json::Value {
    let out = tokio::time::timeout(Duration::from_secs(30), worker.wait_with_output())
        .await
        .expect("a worker finished")
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("FLEET-RESULT ").map(|(_, json)| json))
        .unwrap_or_else(|| panic!("no result line in {stdout}"));
    serde_json::from_str(line).unwrap()
}

/// A token endpoint that accepts connections and never answers.
async fn silent_endpoint() -> SocketAddr {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    addr
}

/// A lock holder process (default settings) whose token request hangs, and
/// four processes on its key that need their first token: each waits at
/// most about `StoreGrant::DEFAULT_MAX_WAIT` and fetches itself, whether
/// the holder hangs (and keeps renewing its lease) or was killed (and its
/// lease runs out within one lock TTL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_or_hung_lock_holder_stalls_the_fleet_at_most_two_seconds() {
    const WAITERS: usize = 4;
    let (server, addr) = start(Duration::from_secs(3600)).await;
    let silent = silent_endpoint().await;
    let silent_url = format!("http://{silent}/token");
    let mut raw = raw_redis(REDIS).await;
    let mut figures = Vec::new();
    for killed in [false, true] {
        let ns = namespace(if killed { "stall-killed" } else { "stall-hung" });
        let key = grant(&silent_url).cache_key().namespace(&ns).build();
        let lock_key = format!("{key}:lock");
        let mut holder = worker(&[
            ("ALF_FLEET_TOKEN_URL", silent_url.clone()),
            ("ALF_FLEET_API_URL", "unused".into()),
            ("ALF_FLEET_NAMESPACE", ns.clone()),
            ("ALF_FLEET_RUN_MS", "0".into()),
            ("ALF_FLEET_HANG", "1".into()),
        ]);
        for attempt in 0.. {
            let lock: Option<String> = raw.get(&lock_key).await.unwrap();
            if lock.is_some() {
                break;
            }
            assert!(attempt < 500, "the holder never took the lock");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let freed = if killed {
            holder.kill().await.unwrap();
            let killed_at = std::time::Instant::now();
            let mut watch = raw_redis(REDIS).await;
            let lock_key = lock_key.clone();
            Some(tokio::spawn(async move {
                loop {
                    let lock: Option<String> = watch.get(&lock_key).await.unwrap();
                    if lock.is_none() {
                        return killed_at.elapsed();
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }))
        } else {
            None
        };
        let waiters: Vec<_> = (0..WAITERS)
            .map(|_| {
                worker(&[
                    ("ALF_FLEET_TOKEN_URL", format!("http://{addr}/token")),
                    ("ALF_FLEET_KEY_TOKEN_URL", silent_url.clone()),
                    ("ALF_FLEET_API_URL", "unused".into()),
                    ("ALF_FLEET_NAMESPACE", ns.clone()),
                    ("ALF_FLEET_RUN_MS", "0".into()),
                    ("ALF_FLEET_FIRST_TOKEN", "1".into()),
                ])
            })
            .collect();
        let mut stalls = Vec::new();
        for waiter in waiters {
            let result = result_of(waiter).await;
            assert!(result["token"].as_str().unwrap().starts_with("tok-"));
            stalls.push(Duration::from_millis(result["stall_ms"].as_u64().unwrap()));
        }
        let worst = stalls.iter().max().copied().unwrap();
        let freed = match freed {
            Some(watch) => Some(
                tokio::time::timeout(Duration::from_secs(15), watch)
                    .await
                    .expect("the dead holder's lease ends")
                    .unwrap(),
            ),
            None => {
                let held: Option<String> = raw.get(&lock_key).await.unwrap();
                holder.kill().await.unwrap();
                // Alive, the holder renews its lease past its 2 s TTL.
                assert!(held.is_some(), "the hung holder still holds its lease");
                None
            }
        };
        figures.push(format!(
            "{}: worst stall {worst:?} of {stalls:?}, lease freed after {freed:?}",
            if killed {
                "killed holder"
            } else {
                "hung holder"
            }
        ));
        eprintln!("fleet stall: {}", figures.last().unwrap());
        assert!(worst <= Duration::from_secs(2), "{figures:?}");
        if let Some(freed) = freed {
            assert!(freed <= Duration::from_millis(2500), "{figures:?}");
        }
        let _: () = raw.del(key.as_str()).await.unwrap();
    }
    assert!(server.tokens_issued.load(Ordering::SeqCst) >= 2);
}
