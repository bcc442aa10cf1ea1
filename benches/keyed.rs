//! Keyed sources: what picking the source per request costs, side by side
//! with one `BearerAuth` over one `TokenSource`, in one run.
//!
//! 1. **Hot path** (one thread, the inner service answering at once, a
//!    fresh cached token that expires in an hour, requests with no headers
//!    built outside the timing, each carrying a `Tenant(u32)` extension):
//!    - `bearer`: `BearerAuthLayer::new(source)`, the row the others are
//!      held against;
//!    - `keyed_same_key`: `BearerAuthLayer::keyed_by_extension(sources)`,
//!      every request for the same key (the handle's remembered key: no map
//!      lookup);
//!    - `keyed_16_keys`: the same, the key changing on every request over
//!      16 keys (a map lookup per request);
//!
//!    each with replay off (`NoReplay`) and on (the default). Time: the
//!    median of 41 interleaved rounds of 256 requests. Allocations per
//!    request: the counting allocator of `benches/common`, 1,000 requests
//!    after 100 to warm up.
//! 2. **The map alone**: one lookup of an `Arc` value (cloned, as the
//!    layer does on a key change) among 1,000 keys, in `papaya` (what
//!    `TokenSources` uses), `dashmap` and `std::sync::RwLock<HashMap>`, on
//!    one thread and on two threads reading the same key.
//! 3. **Contention**: a 2-worker runtime, 64 tasks sharing 200,000
//!    requests (each task its own clone of the stack): one `BearerAuth`,
//!    the keyed layer over 1 key, and over 16 keys (task `i` sends for key
//!    `i % 16`). Median throughput of 15 interleaved rounds.
//!
//! 4. **Storm**: 10,000 concurrent first requests over 100 keys on a
//!    2-worker runtime, the grant taking 1 ms: the fetches made (100) and
//!    the time until all are answered, 9 rounds, a fresh map each.
//!
//! `cargo bench -p tower-alf-benches --bench keyed` (add `-- hot`, `-- maps`,
//! `-- contention` or `-- storm` for one part)

mod common;

use std::{
    collections::HashMap,
    hash::Hash,
    hint::black_box,
    sync::{Arc, Barrier, RwLock},
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::{Answer, Counting, LIFETIME};
use http::Request;
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt};
use tower_alf::{keyed::TokenSources, replay::NoReplay, BearerAuthLayer, TokenSource};

#[global_allocator]
static ALLOC: Counting = Counting;

type Body = Full<Bytes>;

const BATCH: usize = 256;
const ROUNDS: usize = 41;
const KEYS: u32 = 16;

/// The key every keyed row reads from the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Tenant(u32);

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

fn sources(rt: &tokio::runtime::Runtime) -> TokenSources<Tenant> {
    let sources =
        TokenSources::new(|_: &Tenant| Ok(TokenSource::new(common::fake_grant(Some(LIFETIME)))));
    rt.block_on(async {
        for key in 0..KEYS {
            sources.token(&Tenant(key)).await.unwrap();
        }
    });
    sources
}

/// A request for `key`: `GET`, no headers, the key in its extensions.
fn request(key: u32) -> Request<Body> {
    let mut request = Request::get("https://api.example.com/v1/orders/8f14e45f?expand=items")
        .body(Full::default())
        .unwrap();
    request.extensions_mut().insert(Tenant(key));
    request
}

// ===== 1. hot path =====

type Send = Box<dyn FnMut(Request<Body>) -> Answer>;

const HOT_ROWS: &[(&str, bool, &str)] = &[
    // (row, keys change per request, held against)
    ("bearer_replay_off", false, ""),
    ("keyed_same_key_replay_off", false, "bearer_replay_off"),
    ("keyed_16_keys_replay_off", true, "bearer_replay_off"),
    ("bearer_replay_on", false, ""),
    ("keyed_same_key_replay_on", false, "bearer_replay_on"),
    ("keyed_16_keys_replay_on", true, "bearer_replay_on"),
];

fn hot_row(single: &TokenSource, keyed: &TokenSources<Tenant>, row: &str) -> Send {
    fn boxed<S>(mut service: S) -> Send
    where
        S: Service<Request<Body>, Response = Answer> + 'static,
        S::Error: std::fmt::Debug,
    {
        Box::new(move |request| common::drive(&mut service, request))
    }
    let inner = common::keeping_inner();
    match row {
        "bearer_replay_off" => boxed(
            BearerAuthLayer::new(single.clone())
                .clone_body(NoReplay)
                .layer(inner),
        ),
        "bearer_replay_on" => boxed(BearerAuthLayer::new(single.clone()).layer(inner)),
        "keyed_same_key_replay_off" | "keyed_16_keys_replay_off" => boxed(
            BearerAuthLayer::keyed_by_extension(keyed.clone())
                .clone_body(NoReplay)
                .layer(inner),
        ),
        "keyed_same_key_replay_on" | "keyed_16_keys_replay_on" => {
            boxed(BearerAuthLayer::keyed_by_extension(keyed.clone()).layer(inner))
        }
        _ => unreachable!("unknown row {row}"),
    }
}

fn keys_for(rotate: bool, n: usize) -> impl Iterator<Item = u32> {
    (0..n).map(move |i| if rotate { i as u32 % KEYS } else { 3 })
}

/// Nanoseconds per request of one batch.
fn timed_batch(send: &mut Send, rotate: bool) -> f64 {
    let requests: Vec<_> = keys_for(rotate, BATCH).map(request).collect();
    common::keep_room(BATCH);
    let start = Instant::now();
    for request in requests {
        black_box(send(request));
    }
    let elapsed = start.elapsed();
    common::drop_kept();
    elapsed.as_nanos() as f64 / BATCH as f64
}

fn hot_path(rt: &tokio::runtime::Runtime) {
    let single = common::warm_source(rt, Some(LIFETIME));
    let keyed = sources(rt);
    let mut rows: Vec<_> = HOT_ROWS
        .iter()
        .map(|&(row, rotate, _)| (row, rotate, hot_row(&single, &keyed, row), Vec::new()))
        .collect();
    for (_, rotate, send, _) in &mut rows {
        timed_batch(send, *rotate);
    }
    for round in 0..ROUNDS {
        for k in 0..rows.len() {
            let len = rows.len();
            let (_, rotate, send, times) = &mut rows[(round + k) % len];
            times.push(timed_batch(send, *rotate));
        }
    }
    let median = |times: &mut Vec<f64>| {
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    };
    let medians: HashMap<&str, f64> = rows
        .iter_mut()
        .map(|(row, _, _, times)| (*row, median(times)))
        .collect();

    println!("\n## hot path (no headers), median of {ROUNDS} interleaved rounds of {BATCH}\n");
    println!("| row | time | ratio | to | allocs | bytes |");
    println!("|---|---:|---:|---|---:|---:|");
    for (row, rotate, _, _) in &mut rows {
        let mut send = hot_row(&single, &keyed, row);
        common::keep_room(1_100);
        for key in keys_for(*rotate, 100) {
            send(request(key));
        }
        let mut keys = keys_for(*rotate, 1_000);
        let make = || request(keys.next().unwrap_or(0));
        let (allocs, bytes) = common::allocs_per_call(1_000, make, |request| {
            black_box(send(request));
        });
        common::drop_kept();
        let to = HOT_ROWS.iter().find(|r| r.0 == *row).unwrap().2;
        let time = medians[*row];
        let (ratio, to) = if to.is_empty() {
            ("1.00×".to_owned(), "")
        } else {
            (format!("{:.2}×", time / medians[to]), to)
        };
        println!(
            "| {row} | {} | {ratio} | {to} | {allocs:.2} | {bytes:.0} |",
            common::ns(time)
        );
    }
}

// ===== 2. the map alone =====

trait Map: Sync {
    fn lookup(&self, key: u32) -> Arc<u64>;
}

struct Papaya(papaya::HashMap<u32, Arc<u64>>);
struct Dash(dashmap::DashMap<u32, Arc<u64>>);
struct Locked(RwLock<HashMap<u32, Arc<u64>>>);

impl Map for Papaya {
    #[inline]
    fn lookup(&self, key: u32) -> Arc<u64> {
        let guard = self.0.guard();
        Arc::clone(self.0.get(&key, &guard).unwrap())
    }
}

impl Map for Dash {
    #[inline]
    fn lookup(&self, key: u32) -> Arc<u64> {
        Arc::clone(&self.0.get(&key).unwrap())
    }
}

impl Map for Locked {
    #[inline]
    fn lookup(&self, key: u32) -> Arc<u64> {
        Arc::clone(&self.0.read().unwrap()[&key])
    }
}

fn filled<M: FromIterator<(u32, Arc<u64>)>>() -> M {
    (0..1_000).map(|k| (k, Arc::new(u64::from(k)))).collect()
}

/// Nanoseconds per lookup, `threads` threads each doing `n` lookups of
/// one key (all threads the same key).
fn lookups(map: &dyn Map, threads: usize, n: usize) -> f64 {
    let barrier = Barrier::new(threads);
    let per_thread: Vec<f64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..n {
                        black_box(map.lookup(black_box(7)));
                    }
                    start.elapsed().as_nanos() as f64 / n as f64
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    per_thread.iter().sum::<f64>() / threads as f64
}

fn maps() {
    let papaya = Papaya(filled());
    let dash = Dash(filled());
    let locked = Locked(RwLock::new(filled()));
    let rows: [(&str, &dyn Map); 3] = [
        ("papaya::HashMap", &papaya),
        ("dashmap::DashMap", &dash),
        ("RwLock<HashMap>", &locked),
    ];
    let mut times = vec![(Vec::new(), Vec::new()); rows.len()];
    for round in 0..15 {
        for k in 0..rows.len() {
            let i = (round + k) % rows.len();
            times[i].0.push(lookups(rows[i].1, 1, 200_000));
            times[i].1.push(lookups(rows[i].1, 2, 200_000));
        }
    }
    println!("\n## one lookup (an Arc cloned), 1,000 keys, median of 15 interleaved rounds\n");
    println!("| map | 1 thread | 2 threads, same key |");
    println!("|---|---:|---:|");
    for ((name, _), (one, two)) in rows.iter().zip(&mut times) {
        one.sort_by(f64::total_cmp);
        two.sort_by(f64::total_cmp);
        println!(
            "| {name} | {} | {} |",
            common::ns(one[one.len() / 2]),
            common::ns(two[two.len() / 2])
        );
    }
}

// ===== 3. contention =====

const TASKS: usize = 64;
const REQUESTS: usize = 200_000;

fn contention() {
    let rt = runtime(2);
    let single = common::warm_source(&rt, Some(LIFETIME));
    let keyed = sources(&rt);
    type Round = Box<dyn Fn(&tokio::runtime::Runtime) -> Duration>;
    fn rounds<S>(stack: S, keys: u32) -> Round
    where
        S: Service<Request<Body>, Response = Answer> + Clone + std::marker::Send + 'static,
        S::Future: std::marker::Send,
        S::Error: std::fmt::Debug,
    {
        Box::new(move |rt| {
            rt.block_on(async {
                let start = Instant::now();
                let tasks: Vec<_> = (0..TASKS)
                    .map(|task| {
                        let mut stack = stack.clone();
                        let key = task as u32 % keys;
                        tokio::spawn(async move {
                            for _ in 0..REQUESTS / TASKS {
                                let response = stack
                                    .ready()
                                    .await
                                    .unwrap()
                                    .call(request(key))
                                    .await
                                    .unwrap();
                                black_box(response);
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
                start.elapsed()
            })
        })
    }
    let inner = common::inner::<Body>();
    let rows: Vec<(&str, Round)> = vec![
        (
            "bearer, 1 source",
            rounds(
                BearerAuthLayer::new(single.clone())
                    .clone_body(NoReplay)
                    .layer(inner.clone()),
                1,
            ),
        ),
        (
            "keyed, 1 key",
            rounds(
                BearerAuthLayer::keyed_by_extension(keyed.clone())
                    .clone_body(NoReplay)
                    .layer(inner.clone()),
                1,
            ),
        ),
        (
            "keyed, 16 keys",
            rounds(
                BearerAuthLayer::keyed_by_extension(keyed.clone())
                    .clone_body(NoReplay)
                    .layer(inner),
                KEYS,
            ),
        ),
    ];
    let mut times = vec![Vec::new(); rows.len()];
    for (_, run) in &rows {
        run(&rt);
    }
    for round in 0..15 {
        for k in 0..rows.len() {
            let i = (round + k) % rows.len();
            times[i].push(rows[i].1(&rt));
        }
    }
    println!("\n## contention: 2 workers, {TASKS} tasks, {REQUESTS} requests, replay off, median of 15 rounds\n");
    println!("| row | throughput | ratio to bearer |");
    println!("|---|---:|---:|");
    let mut base = 0.0;
    for ((name, _), times) in rows.iter().zip(&mut times) {
        times.sort();
        let rate = REQUESTS as f64 / times[times.len() / 2].as_secs_f64();
        if base == 0.0 {
            base = rate;
        }
        println!("| {name} | {:.2} M/s | {:.2}× |", rate / 1e6, rate / base);
    }
}

// ===== 4. first-request storm =====

/// 10,000 concurrent first requests over 100 keys on a 2-worker runtime,
/// a fresh map each round, its grant taking 1 ms: fetches made (must be
/// 100) and the time until every request is answered.
fn storm() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    let rt = runtime(2);
    let mut times = Vec::new();
    let mut fetches = Vec::new();
    for _ in 0..9 {
        let count = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&count);
        let sources = TokenSources::new(move |_: &Tenant| {
            let counter = Arc::clone(&counter);
            let grant = tower::service_fn(move |_: tower_alf::grant::FetchToken| {
                counter.fetch_add(1, Ordering::Relaxed);
                async {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    Ok::<_, tower_alf::Error>(
                        tower_alf::Token::bearer(common::ACCESS_TOKEN)?.with_expires_in(LIFETIME),
                    )
                }
            });
            Ok(TokenSource::new(grant))
        });
        let stack = BearerAuthLayer::keyed_by_extension(sources)
            .clone_body(NoReplay)
            .layer(common::inner::<Body>());
        let elapsed = rt.block_on(async {
            let start = Instant::now();
            let tasks: Vec<_> = (0..10_000u32)
                .map(|n| {
                    let stack = stack.clone();
                    tokio::spawn(async move { stack.oneshot(request(n % 100)).await.unwrap() })
                })
                .collect();
            for task in tasks {
                black_box(task.await.unwrap());
            }
            start.elapsed()
        });
        times.push(elapsed);
        fetches.push(count.load(Ordering::Relaxed));
    }
    times.sort();
    println!(
        "\n## first-request storm: 10,000 concurrent requests over 100 keys, 2 workers, 9 rounds\n"
    );
    println!(
        "fetches per round: {fetches:?}; time to answer all: median {:.1} ms (min {:.1}, max {:.1})",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
    );
}

fn main() {
    // `-- hot`, `-- maps` or `-- contention` runs one part; `cargo bench`
    // passes `--bench`, which runs them all.
    let part = std::env::args().skip(1).find(|arg| !arg.starts_with('-'));
    let runs = |name: &str| part.as_deref().is_none_or(|part| part == name);
    common::print_load("before");
    if runs("hot") {
        hot_path(&runtime(1));
    }
    if runs("maps") {
        maps();
    }
    if runs("contention") {
        contention();
    }
    if runs("storm") {
        storm();
    }
    common::print_load("after");
}
