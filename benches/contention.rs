//! Contention: a 2-worker Tokio runtime, 64 tasks sharing 200,000 requests
//! (3,125 each, every task with its own clone of the stack, as every
//! connection or handler of a server holds one). Throughput of tower-http's
//! `AddAuthorization`, `BearerAuth` with replay off and on (one shared
//! `TokenSource`, a token that expires in an hour), and the replay floor
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
//! `AddAuthorization`'s.
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
use tower::{util::BoxCloneSyncService, Layer, Service, ServiceBuilder, ServiceExt};
use tower_alf::{replay::NoReplay, BearerAuthLayer, TokenSource};
use tower_http::auth::AddAuthorizationLayer;

const TASKS: usize = 64;
const REQUESTS: usize = 200_000;
const SAMPLE_SIZE: usize = 10;
const ROUNDS: usize = 15;

type Body = Full<Bytes>;
type Stack = BoxCloneSyncService<Request<Body>, Answer, tower::BoxError>;

const ROWS: &[&str] = &[
    "add_authorization",
    "bearer_replay_off",
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

/// The stack of `row`. Boxed, so that every row pays the same indirection.
fn make_row(source: &TokenSource, row: &str) -> Stack {
    let inner = common::inner::<Body>();
    let add_authorization = || AddAuthorizationLayer::bearer(ACCESS_TOKEN).as_sensitive(true);
    match row {
        "add_authorization" => boxed(add_authorization().layer(inner)),
        "bearer_replay_off" => boxed(
            BearerAuthLayer::new(source.clone())
                .clone_body(NoReplay)
                .layer(inner),
        ),
        "bearer_replay_on" => boxed(BearerAuthLayer::new(source.clone()).layer(inner)),
        "floor_replay_on" => boxed(
            ServiceBuilder::new()
                .layer(add_authorization())
                .layer(CopyRequestLayer)
                .service(inner),
        ),
        _ => unreachable!("unknown row {row}"),
    }
}

fn boxed<S>(service: S) -> Stack
where
    S: tower::Service<Request<Body>, Response = Answer> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<tower::BoxError>,
{
    BoxCloneSyncService::new(service.map_err(Into::into))
}

/// One round: 64 tasks, 200,000 requests; how long it took.
fn round(rt: &tokio::runtime::Runtime, stack: &Stack) -> Duration {
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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn contention(c: &mut Criterion) {
    let rt = runtime();
    let source = common::warm_source(&rt, Some(LIFETIME));
    let mut group = c.benchmark_group("contention");
    group
        .sample_size(SAMPLE_SIZE)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(REQUESTS as u64));
    for row in ROWS {
        let stack = make_row(&source, row);
        group.bench_function(*row, |b| {
            b.iter_custom(|iters| {
                let elapsed = (0..iters).map(|_| round(&rt, &stack)).sum();
                common::record(row, iters, elapsed);
                elapsed
            });
        });
    }
    group.finish();
}

fn report() {
    let rt = runtime();
    let source = common::warm_source(&rt, Some(LIFETIME));
    let stacks: Vec<_> = ROWS.iter().map(|row| make_row(&source, row)).collect();
    let mut times = vec![Vec::with_capacity(ROUNDS); ROWS.len()];
    for stack in &stacks {
        round(&rt, stack); // warm up
    }
    for r in 0..ROUNDS {
        for k in 0..ROWS.len() {
            let i = (r + k) % ROWS.len();
            times[i].push(round(&rt, &stacks[i]));
        }
    }
    let median = |i: usize| {
        let mut t = times[i].clone();
        t.sort();
        t[t.len() / 2]
    };
    let per_sec = |d: Duration| REQUESTS as f64 / d.as_secs_f64();
    let base = per_sec(median(0));
    let crit_base = common::median_ns(ROWS[0], SAMPLE_SIZE);
    println!();
    println!(
        "Contention: 2 workers, {TASKS} tasks, {REQUESTS} requests per round; \
         median of {ROUNDS} interleaved rounds (criterion's median of {SAMPLE_SIZE} samples beside)"
    );
    println!();
    println!("| row | requests/s | ratio to add_authorization | criterion requests/s | ratio |");
    println!("|---|---:|---:|---:|---:|");
    for (i, row) in ROWS.iter().enumerate() {
        let rate = per_sec(median(i));
        let (crit, crit_ratio) = match (common::median_ns(row, SAMPLE_SIZE), crit_base) {
            (Some(ns), Some(base_ns)) => (
                format!("{:.2} M", REQUESTS as f64 / ns * 1e3),
                format!("{:.2}×", base_ns / ns),
            ),
            _ => ("–".to_owned(), "–".to_owned()),
        };
        println!(
            "| {row} | {:.2} M | {:.2}× | {crit} | {crit_ratio} |",
            rate / 1e6,
            rate / base
        );
    }
    let stats = source.stats();
    println!();
    println!("token fetches: {}, waits: {}", stats.fetches, stats.waits);
}

criterion_group!(benches, contention);

fn main() {
    common::print_load("before");
    benches();
    Criterion::default().configure_from_args().final_summary();
    report();
    common::print_load("after");
}
