//! The Redis store is never on the hot path (issue 5): a request through
//! `BearerAuth` whose source shares its tokens through Redis costs what one
//! with the memory-only source costs, and sends Redis no command.
//!
//! Two rows, a fresh cached token (expires_in 3600) in both: `memory_only`
//! (a plain `TokenSource`) and `redis_store` (the same grant behind a
//! `StoreGrant` over `RedisStore`). Time per request is the median of
//! interleaved batches; Redis's own `total_commands_processed` is read
//! before and after the timed rounds (other clients of that Redis count too:
//! run it on a quiet one). Needs a Redis on 127.0.0.1:6379
//! (`REDIS_URL` to change it).
//!
//! ```text
//! cargo bench -p tower-alf-benches --bench store
//! ```

mod common;

use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use tower::ServiceBuilder;
use tower_alf::{
    store::{CacheKey, RedisStore, StoreGrant},
    BearerAuthLayer, TokenSource,
};

const BATCH: u64 = 256;
const ROUNDS: usize = 400;
const ROWS: [&str; 2] = ["memory_only", "redis_store"];

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned())
}

/// Redis's count of commands it processed, read with `INFO stats` (which
/// itself counts as one).
fn redis_commands(rt: &tokio::runtime::Runtime) -> u64 {
    rt.block_on(async {
        let client = redis::Client::open(redis_url()).expect("a valid Redis URL");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("a Redis on REDIS_URL (default 127.0.0.1:6379)");
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query_async(&mut conn)
            .await
            .expect("INFO");
        info.lines()
            .find_map(|l| l.strip_prefix("total_commands_processed:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("total_commands_processed in INFO stats")
    })
}

fn sources(rt: &tokio::runtime::Runtime) -> [TokenSource; 2] {
    let lifetime = Some(Duration::from_secs(3600));
    let memory = common::warm_source(rt, lifetime);
    let key = CacheKey::builder("https://bench.example/token", "client_credentials")
        .namespace(format!("alf-bench:{}", std::process::id()))
        .build();
    // The store's connection manager starts a task: build it in the runtime.
    let _guard = rt.enter();
    let store = RedisStore::new(redis_url()).expect("a valid Redis URL");
    let stored = TokenSource::new(StoreGrant::new(common::fake_grant(lifetime), store, key));
    rt.block_on(async { stored.token().await })
        .expect("a token through the store");
    [memory, stored]
}

fn store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let [memory, stored] = sources(&rt);
    let mut group = c.benchmark_group("store");
    for (name, source) in ROWS.iter().zip([&memory, &stored]) {
        let mut service = ServiceBuilder::new()
            .layer(BearerAuthLayer::new(source.clone()))
            .service(common::inner());
        group.bench_function(*name, |b| {
            b.iter(|| common::drive(&mut service, common::Shape::NoHeaders.request()))
        });
    }
    group.finish();
}

/// Interleaved batches of both rows, and the Redis commands they sent.
fn report() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sources = sources(&rt);
    let mut services: Vec<_> = sources
        .iter()
        .map(|source| {
            ServiceBuilder::new()
                .layer(BearerAuthLayer::new(source.clone()))
                .service(common::inner())
        })
        .collect();
    let before = redis_commands(&rt);
    let mut times = [Vec::with_capacity(ROUNDS), Vec::with_capacity(ROUNDS)];
    for round in 0..ROUNDS {
        for k in 0..2 {
            let i = (round + k) % 2;
            let requests: Vec<_> = (0..BATCH)
                .map(|_| common::Shape::NoHeaders.request())
                .collect();
            let started = Instant::now();
            for request in requests {
                std::hint::black_box(common::drive(&mut services[i], request));
            }
            times[i].push(started.elapsed() / BATCH as u32);
        }
    }
    let after = redis_commands(&rt);
    let median = |i: usize| {
        let mut t = times[i].clone();
        t.sort();
        t[t.len() / 2].as_nanos() as f64
    };
    println!();
    println!("Store: time per request, median of {ROUNDS} interleaved batches of {BATCH}");
    println!();
    println!("| row | time | ratio to memory_only |");
    println!("|---|---:|---:|");
    for (i, name) in ROWS.iter().enumerate() {
        println!(
            "| {name} | {} | {:.2}× |",
            common::ns(median(i)),
            median(i) / median(0)
        );
    }
    println!();
    println!(
        "Redis commands during {} requests through the store: {}",
        ROUNDS as u64 * BATCH * 2,
        after.saturating_sub(before + 1)
    );
}

criterion_group!(benches, store);

fn main() {
    common::print_load("before");
    benches();
    Criterion::default().configure_from_args().final_summary();
    report();
    common::print_load("after");
}
