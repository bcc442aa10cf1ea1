//! Keyed token sources stay within their bounds: the most keys, least
//! recently used first, idle keys dropped (paused time), and an evicted
//! key's fetch in flight still ends for its waiters.

mod support;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use support::{endpoint_builder, guard, TokenServer};
use tower_alf::{
    grant::{self, ClientCredentials, FetchToken},
    keyed::TokenSources,
    TokenSource,
};

/// A map over `grant::from_fn` that counts fetches per key (`u32` keys
/// below `keys`), tokens lasting an hour.
fn counted(keys: usize, max_keys: usize) -> (TokenSources<u32>, Arc<Vec<AtomicUsize>>) {
    let fetches: Arc<Vec<AtomicUsize>> = Arc::new((0..keys).map(|_| AtomicUsize::new(0)).collect());
    let counts = Arc::clone(&fetches);
    let sources = TokenSources::builder(move |key: &u32| {
        let counts = Arc::clone(&counts);
        let key = *key;
        let grant = grant::from_fn(move |_: FetchToken| {
            counts[key as usize].fetch_add(1, Ordering::Relaxed);
            async move {
                Ok(tower_alf::Token::bearer(format!("tok-{key}"))?
                    .with_expires_in(Duration::from_secs(3600)))
            }
        });
        Ok(TokenSource::builder(grant).jitter(0.0).build())
    })
    .max_keys(max_keys)
    .idle_timeout(Duration::MAX)
    .build();
    (sources, fetches)
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_100_000_distinct_keys_never_holds_more_than_1_000() {
    let (sources, fetches) = counted(100_000, 1_000);
    for key in 0..100_000u32 {
        let token = sources.token(&key).await.unwrap();
        assert_eq!(token.access_token().secret(), format!("tok-{key}"));
        assert!(sources.len() <= 1_000, "{} keys live", sources.len());
    }
    let stats = sources.stats();
    assert_eq!(stats.live_keys, 1_000);
    assert_eq!(stats.created, 100_000);
    assert_eq!(stats.evictions, 99_000);
    assert_eq!(stats.total.fetches, 100_000);
    assert!(
        fetches.iter().all(|n| n.load(Ordering::Relaxed) == 1),
        "one fetch per key"
    );
    // The first keys went first: the last 1,000 are the live ones.
    assert!(sources.get(&0).is_none());
    assert!(sources.get(&99_999).is_some());

    // An hour on, every token is due. The live keys refresh when read; an
    // evicted key's old source fetches nothing more.
    tokio::time::advance(Duration::from_secs(3500)).await;
    for key in 99_000..100_000u32 {
        sources.token(&key).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    let refreshed = fetches[99_000..]
        .iter()
        .filter(|n| n.load(Ordering::Relaxed) == 2)
        .count();
    assert_eq!(
        refreshed, 1_000,
        "every live key refreshed in the background"
    );
    assert!(
        fetches[..99_000]
            .iter()
            .all(|n| n.load(Ordering::Relaxed) == 1),
        "no fetch for an evicted key after its eviction"
    );
    assert_eq!(sources.stats().total.fetches, 101_000);
}

#[tokio::test]
async fn the_least_recently_used_key_is_evicted_first() {
    let made = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&made);
    let sources = TokenSources::builder(move |key: &&'static str| {
        log.lock().unwrap().push(*key);
        Ok(TokenSource::new(grant::from_fn(|_: FetchToken| async {
            tower_alf::Token::bearer("t")
        })))
    })
    .max_keys(2)
    .build();

    sources.source(&"a").unwrap();
    sources.source(&"b").unwrap();
    sources.source(&"a").unwrap(); // a is used again: b is now the older
    sources.source(&"c").unwrap();
    assert!(sources.get(&"a").is_some(), "a was used after b");
    assert!(sources.get(&"b").is_none(), "b was the least recently used");
    sources.source(&"d").unwrap();
    assert_eq!(sources.len(), 2);
    assert!(sources.get(&"d").is_some());
    sources.source(&"b").unwrap();
    assert_eq!(*made.lock().unwrap(), ["a", "b", "c", "d", "b"]);
    assert_eq!(sources.stats().evictions, 3);
}

#[tokio::test]
async fn an_evicted_keys_fetch_in_flight_still_completes_for_its_waiters() {
    let server = TokenServer::start().await;
    let endpoint = endpoint_builder(&server).build().unwrap();
    let sources = TokenSources::builder(move |tenant: &&'static str| {
        Ok(TokenSource::new(
            ClientCredentials::new(endpoint.clone()).scope(*tenant),
        ))
    })
    .max_keys(1)
    .build();
    let gate = server.hold();

    let waiters: Vec<_> = (0..10)
        .map(|_| {
            let sources = sources.clone();
            tokio::spawn(async move { sources.token(&"a").await })
        })
        .collect();
    guard(server.requests_reached(1), "a's fetch").await;
    let b = {
        let sources = sources.clone();
        tokio::spawn(async move { sources.token(&"b").await })
    };
    guard(server.requests_reached(2), "b's fetch").await;
    assert!(sources.get(&"a").is_none(), "a was evicted for b");
    gate.open();

    for waiter in waiters {
        let token = guard(waiter, "a's waiter").await.unwrap().unwrap();
        assert_eq!(token.access_token().secret(), "tok-1");
    }
    guard(b, "b's request").await.unwrap().unwrap();
    assert_eq!(server.requests(), 2, "a fetched once, b once");
    let stats = sources.stats();
    assert_eq!((stats.live_keys, stats.evictions), (1, 1));
    assert_eq!(
        stats.total.fetches, 2,
        "a's fetch counted after its eviction"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_key_is_dropped_after_the_idle_timeout_and_made_anew_on_next_use() {
    let (sources, fetches) = {
        let fetches = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&fetches);
        let sources = TokenSources::builder(move |_: &u8| {
            let counter = Arc::clone(&counter);
            Ok(TokenSource::new(grant::from_fn(move |_: FetchToken| {
                counter.fetch_add(1, Ordering::SeqCst);
                async {
                    Ok(tower_alf::Token::bearer("t")?.with_expires_in(Duration::from_secs(86_400)))
                }
            })))
        })
        .idle_timeout(Duration::from_secs(60))
        .build();
        (sources, fetches)
    };

    sources.token(&1).await.unwrap();
    sources.token(&2).await.unwrap();
    for _ in 0..5 {
        // Key 1 is used every 50 s; key 2 never again.
        tokio::time::sleep(Duration::from_secs(50)).await;
        sources.token(&1).await.unwrap();
        assert!(sources.get(&1).is_some(), "a key in use stays");
    }
    assert!(sources.get(&2).is_none(), "an idle key went");
    assert_eq!(sources.stats().expirations, 1);

    // Not before the timeout: a key idle 59 s is still there.
    sources.token(&3).await.unwrap();
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert!(sources.get(&3).is_some(), "idle less than the timeout");
    // At most 1.25 × the timeout after its last use, it is gone.
    tokio::time::sleep(Duration::from_secs(16)).await;
    assert!(sources.get(&3).is_none(), "idle past 1.25 × the timeout");

    assert_eq!(fetches.load(Ordering::SeqCst), 3);
    sources.token(&2).await.unwrap();
    assert_eq!(fetches.load(Ordering::SeqCst), 4, "made anew, fetched anew");
    assert_eq!(sources.stats().created, 4);
}
