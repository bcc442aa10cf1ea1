//! `TokenSourceBuilder::on_token`: called once per new token, after it is
//! cached and before any caller waiting for it wakes.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::Duration,
};

use futures_util::FutureExt as _;
use tokio::sync::Semaphore;
use tower_alf::{
    grant::{self, FetchToken},
    Error, Token, TokenSource,
};

/// A grant whose n-th fetch waits for a permit, then answers `token-n`
/// (or fails, for the n in `failing`).
fn gated(
    gate: Arc<Semaphore>,
    failing: &'static [usize],
) -> grant::FromFn<
    impl Fn(FetchToken) -> futures_util::future::BoxFuture<'static, Result<Token, Error>>
        + Send
        + Sync
        + 'static,
> {
    let calls = Arc::new(AtomicUsize::new(0));
    grant::from_fn(move |request: FetchToken| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        let gate = Arc::clone(&gate);
        async move {
            gate.acquire().await.unwrap().forget();
            if failing.contains(&n) {
                return Err(Error::retryable("not now"));
            }
            Ok(Token::bearer(format!("token-{n}"))?
                .with_issued_at(request.started_at)
                .with_expires_in(Duration::from_secs(3600)))
        }
        .boxed()
    })
}

// Multi-threaded, so that a waiter woken early would run at once on
// another worker while the hook is still running.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_token_runs_once_per_new_token_after_caching_and_before_waiters_wake() {
    let gate = Arc::new(Semaphore::new(0));
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let this: Arc<OnceLock<TokenSource>> = Arc::new(OnceLock::new());
    let (hook_log, hook_source) = (Arc::clone(&log), Arc::clone(&this));
    let source = TokenSource::builder(gated(Arc::clone(&gate), &[]))
        .rejection_interval(Duration::ZERO)
        .on_token(move |token| {
            // Already cached: the source answers it at once.
            let cached = hook_source.get().unwrap().token().now_or_never();
            let cached = cached.expect("cached before the hook").unwrap();
            assert_eq!(cached.id(), token.id());
            // Widens the window in which a waiter woken too early would
            // log before the hook does.
            std::thread::sleep(Duration::from_millis(30));
            hook_log
                .lock()
                .unwrap()
                .push(format!("hook {}", token.access_token().secret()));
        })
        .build();
    this.set(source.clone()).unwrap();

    let waiters: Vec<_> = (0..200)
        .map(|_| {
            let (source, log) = (source.clone(), Arc::clone(&log));
            tokio::spawn(async move {
                let token = source.token().await.unwrap();
                log.lock()
                    .unwrap()
                    .push(format!("waiter {}", token.access_token().secret()));
                token
            })
        })
        .collect();
    // Every caller waits on the fetch (none arrives after it and takes
    // the cached token, which may happen while the hook still runs).
    while source.stats().waits < 200 {
        tokio::task::yield_now().await;
    }
    assert!(log.lock().unwrap().is_empty());
    gate.add_permits(1);
    let mut first = None;
    for waiter in waiters {
        first = Some(waiter.await.unwrap());
    }

    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 201);
    assert_eq!(seen[0], "hook token-0");
    assert!(
        seen[1..].iter().all(|line| line == "waiter token-0"),
        "{seen:?}"
    );

    // A replacement is a new token: the hook runs again, once.
    gate.add_permits(1);
    source.invalidate(first.unwrap().id()).await.unwrap();
    let hooks: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|line| line.starts_with("hook"))
        .cloned()
        .collect();
    assert_eq!(hooks, ["hook token-0", "hook token-1"]);
}

#[tokio::test(start_paused = true)]
async fn on_token_is_not_called_for_a_failed_fetch() {
    let gate = Arc::new(Semaphore::new(10));
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let source = TokenSource::builder(gated(gate, &[0]))
        .on_token(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
        })
        .build();
    assert!(source.token().await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    source.token().await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_on_token_hook_does_not_lose_the_token() {
    let gate = Arc::new(Semaphore::new(10));
    let source = TokenSource::builder(gated(gate, &[]))
        .on_token(|_| panic!("the disk is full"))
        .build();
    let token = source.token().await.unwrap();
    assert_eq!(token.access_token().secret(), "token-0");
    assert_eq!(source.stats().fetches, 1);
}
