//! Contention: a 2-worker Tokio runtime, 64 tasks sharing 200,000 requests
//! (3,125 each, every task with its own clone of the stack, as every
//! connection or handler of a server holds one). Throughput of tower-http's
//! `AddAuthorization`, `BearerAuth` with replay off and on (one shared
//! `TokenSource`, a token that expires in an hour; replay off also with a
//! token that never expires, which skips the clock), and the replay floor
//! (`AddAuthorization` plus a request copy).
//!
//! The requests are small and built in the loop from static parts (a
//! static URI and two static headers, an empty body), so that what is
//! shared between the two workers is what the layers share: the token's
//! header bytes, and for `BearerAuth` the source.
//!
//! Criterion times one round of 200,000 requests per iteration. After it,
//! the binary runs the rows in interleaved rounds (each row once per round,
//! the order rotating) and prints each row's median throughput as a ratio to
//! `AddAuthorization`'s (and replay on's to its floor's), on 2 workers and,
//! to tell contention from plain per-request cost, on 1 worker.
//!
//! `cargo bench -p tower-alf-benches --bench contention`

mod common;

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::{Answer, CopyRequestLayer, ACCESS_TOKEN, LIFETIME};
use criterion::{criterion_group, Criterion, Throughput};
use http::{
    header::{ACCEPT, USER_AGENT},
    HeaderValue, Request, Uri,
};
use http_body_util::Full;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_alf::{replay::NoReplay, BearerAuthLayer, TokenSource};
use tower_http::auth::AddAuthorizationLayer;

const TASKS: usize = 64;
const REQUESTS: usize = 200_000;
const SAMPLE_SIZE: usize = 10;
const ROUNDS: usize = 31;
const ROUNDS_ONE_WORKER: usize = 15;

type Body = Full<Bytes>;

const ROWS: &[&str] = &[
    "add_authorization",
    "bearer_replay_off",
    "bearer_replay_off_no_expiry",
    "floor_replay_on",
    "bearer_replay_on",
];

fn request() -> Request<Body> {
    Request::get(Uri::from_static("https://api.example.com/v1/orders"))
        .header(ACCEPT, HeaderValue::from_static("application/json"))
        .header(USER_AGENT, HeaderValue::from_static("orders-client/1.4.2"))
        .body(Full::default())
        .unwrap()
}

/// Runs one round through a row's stack.
type Rounds = Box<dyn Fn(&tokio::runtime::Runtime) -> Duration>;

/// The stack of `row`, as something that runs rounds through it. The
/// stacks are not boxed services: a boxed service boxes every response
/// future, and `BearerAuth`'s is larger than `AddAuthorization`'s.
fn make_row(source: &TokenSource, no_expiry: &TokenSource, row: &str) -> Rounds {
    let inner = common::inner::<Body>();
    let add_authorization = || AddAuthorizationLayer::bearer(ACCESS_TOKEN).as_sensitive(true);
    match row {
        "add_authorization" => rounds(add_authorization().layer(inner)),
        "bearer_replay_off" => rounds(
            BearerAuthLayer::new(source.clone())
                .clone_body(NoReplay)
                .layer(inner),
        ),
        "bearer_replay_off_no_expiry" => rounds(
            BearerAuthLayer::new(no_expiry.clone())
                .clone_body(NoReplay)
                .layer(inner),
        ),
        "bearer_replay_on" => rounds(BearerAuthLayer::new(source.clone()).layer(inner)),
        "floor_replay_on" => rounds(
            ServiceBuilder::new()
                .layer(add_authorization())
                .layer(CopyRequestLayer)
                .service(inner),
        ),
        _ => unreachable!("unknown row {row}"),
    }
}

fn rounds<S>(stack: S) -> Rounds
where
    S: Service<Request<Body>, Response = Answer> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
{
    Box::new(move |rt| round(rt, &stack))
}

/// One round: 64 tasks, 200,000 requests; how long it took.
fn round<S>(rt: &tokio::runtime::Runtime, stack: &S) -> Duration
where
    S: Service<Request<Body>, Response = Answer> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
{
    rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let mut stack = stack.clone();
                tokio::spawn(async move {
                    for _ in 0..REQUESTS / TASKS {
                        let response = stack.ready().await.unwrap().call(request()).await;
                        black_box(response.unwrap());
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        start.elapsed()
    })
}

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

fn contention(c: &mut Criterion) {
    let rt = runtime(2);
    let source = common::warm_source(&rt, Some(LIFETIME));
    let no_expiry = common::warm_source(&rt, None);
    let mut group = c.benchmark_group("contention");
    group
        .sample_size(SAMPLE_SIZE)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(REQUESTS as u64));
    for row in ROWS {
        let stack = make_row(&source, &no_expiry, row);
        group.bench_function(*row, |b| {
            b.iter_custom(|iters| {
                let elapsed = (0..iters).map(|_| stack(&rt)).sum();
                common::record(row, iters, elapsed);
                elapsed
            });
        });
    }
    group.finish();
}

/// Median requests per second of each row over `rounds` interleaved rounds
/// on a runtime with `workers` workers.
fn interleaved(workers: usize, rounds: usize) -> Vec<f64> {
    let rt = runtime(workers);
    let source = common::warm_source(&rt, Some(LIFETIME));
    let no_expiry = common::warm_source(&rt, None);
    let stacks: Vec<_> = ROWS
        .iter()
        .map(|row| make_row(&source, &no_expiry, row))
        .collect();
    let mut times = vec![Vec::with_capacity(rounds); ROWS.len()];
    for stack in &stacks {
        stack(&rt); // warm up
    }
    for r in 0..rounds {
        for k in 0..ROWS.len() {
            let i = (r + k) % ROWS.len();
            times[i].push(stacks[i](&rt));
        }
    }
    let stats = source.stats();
    assert_eq!(
        (stats.fetches, stats.waits),
        (1, 1),
        "one fetch, to warm up"
    );
    times
        .into_iter()
        .map(|mut t| {
            t.sort();
            REQUESTS as f64 / t[t.len() / 2].as_secs_f64()
        })
        .collect()
}

fn report() {
    let two = interleaved(2, ROUNDS);
    let one = interleaved(1, ROUNDS_ONE_WORKER);
    let criterion: Vec<Option<f64>> = ROWS
        .iter()
        .map(|row| common::median_ns(row, SAMPLE_SIZE).map(|ns| REQUESTS as f64 / ns * 1e9))
        .collect();
    println!();
    println!(
        "Contention: {TASKS} tasks, {REQUESTS} requests per round; median of {ROUNDS} \
         interleaved rounds on 2 workers ({ROUNDS_ONE_WORKER} on 1 worker, for comparison; \
         criterion's median of {SAMPLE_SIZE} samples beside)"
    );
    println!();
    println!("| row | 2 workers | ratio | to | 1 worker | ratio | criterion, 2 workers | ratio |");
    println!("|---|---:|---:|---|---:|---:|---:|---:|");
    for (i, row) in ROWS.iter().enumerate() {
        // Replay on is held against its floor as well as AddAuthorization.
        let bases: &[usize] = if *row == "bearer_replay_on" {
            &[0, 3]
        } else {
            &[0]
        };
        for &b in bases {
            let crit = match (criterion[i], criterion[b]) {
                (Some(rate), Some(base)) => {
                    format!("{:.2} M | {:.2}×", rate / 1e6, rate / base)
                }
                _ => "– | –".to_owned(),
            };
            println!(
                "| {row} | {:.2} M | {:.2}× | {} | {:.2} M | {:.2}× | {crit} |",
                two[i] / 1e6,
                two[i] / two[b],
                ROWS[b],
                one[i] / 1e6,
                one[i] / one[b],
            );
        }
    }
}

criterion_group!(benches, contention);

fn main() {
    common::print_load("before");
    benches();
    Criterion::default().configure_from_args().final_summary();
    report();
    common::print_load("after");
}
