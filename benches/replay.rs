//! Replay: the cost of one 401 → refresh → replay round, relative to a plain
//! request, both through `BearerAuth` with replay on (the default) and the
//! 10-header request of the hot path.
//!
//! - `plain`: the inner service answers `200 OK`;
//! - `refresh_replay`: it answers the first send `401` with
//!   `WWW-Authenticate: Bearer error="invalid_token"`, so the layer
//!   invalidates the token, the source fetches a new one from a grant with
//!   no I/O (in a task of its own, as always), and the copy is sent again
//!   and answered `200 OK`.
//!
//! The source's rejection throttle is off (`rejection_interval(0)`), so
//! every round refreshes.
//!
//! Both rows run each request to completion with `block_on` on a
//! current-thread runtime, so the fetch task runs as it would in a client.
//! Requests are built before each timed batch and freed after it. The
//! bounded replay body for streams is another issue's row.
//!
//! `cargo bench -p tower-alf-benches --bench replay`

mod common;

use std::{
    convert::Infallible,
    hint::black_box,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use common::{Counting, Shape, LIFETIME};
use criterion::{criterion_group, Criterion};
use http::{header::WWW_AUTHENTICATE, HeaderValue, Request, Response, StatusCode};
use http_body_util::{Empty, Full};
use tower::{Layer, Service, ServiceExt};
use tower_alf::{BearerAuth, BearerAuthLayer, TokenSource};

#[global_allocator]
static ALLOC: Counting = Counting;

const SAMPLE_SIZE: usize = 50;
const ROUNDS: usize = 200;
const BATCH: u64 = 64;
const SHAPE: Shape = Shape::TenHeaders;
const ROWS: &[&str] = &["plain", "refresh_replay"];

type Body = Full<Bytes>;

/// The inner service: keeps each request, and answers `401` once for each
/// time `reject` was set.
#[derive(Clone)]
struct Api {
    reject: Arc<AtomicBool>,
}

impl Service<Request<Body>> for Api {
    type Response = Response<Empty<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        common::keep(request);
        let mut response = Response::new(Empty::new());
        if self.reject.swap(false, Ordering::Relaxed) {
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer error="invalid_token""#),
            );
        }
        std::future::ready(Ok(response))
    }
}

struct Row {
    service: BearerAuth<Api>,
    reject: Arc<AtomicBool>,
    rejects: bool,
}

impl Row {
    fn new(source: &TokenSource, row: &str) -> Self {
        let reject = Arc::new(AtomicBool::new(false));
        let service = BearerAuthLayer::new(source.clone()).layer(Api {
            reject: reject.clone(),
        });
        Self {
            service,
            reject,
            rejects: row == "refresh_replay",
        }
    }

    /// Sends one request to completion; checks the final answer is 200.
    fn send(&mut self, rt: &tokio::runtime::Runtime, request: Request<Body>) {
        self.reject.store(self.rejects, Ordering::Relaxed);
        let response = rt.block_on(async {
            self.service
                .ready()
                .await
                .unwrap()
                .call(request)
                .await
                .unwrap()
        });
        assert_eq!(response.status(), StatusCode::OK);
        black_box(response);
    }

    fn timed_batch(&mut self, rt: &tokio::runtime::Runtime, n: u64) -> Duration {
        let requests: Vec<_> = (0..n).map(|_| SHAPE.request()).collect();
        common::keep_room(2 * n as usize);
        let start = Instant::now();
        for request in requests {
            self.send(rt, request);
        }
        let elapsed = start.elapsed();
        common::drop_kept();
        elapsed
    }
}

/// A source over the fake grant, its first token fetched, with the
/// rejection throttle off: by default a second rejection within 5 s returns
/// the 401 as is, and here every round is a rejection.
fn source(rt: &tokio::runtime::Runtime) -> TokenSource {
    let source = TokenSource::builder(common::fake_grant(Some(LIFETIME)))
        .rejection_interval(Duration::ZERO)
        .build();
    rt.block_on(async { source.token().await }).unwrap();
    source
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn replay(c: &mut Criterion) {
    let rt = runtime();
    let source = source(&rt);
    let mut group = c.benchmark_group("replay");
    group
        .sample_size(SAMPLE_SIZE)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for row in ROWS {
        let mut stack = Row::new(&source, row);
        group.bench_function(*row, |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(BATCH);
                    elapsed += stack.timed_batch(&rt, n);
                    left -= n;
                }
                common::record(row, iters, elapsed);
                elapsed
            });
        });
    }
    group.finish();
}

fn report() {
    let rt = runtime();
    let source = source(&rt);
    let mut rows: Vec<_> = ROWS.iter().map(|row| Row::new(&source, row)).collect();
    let mut times = vec![Vec::with_capacity(ROUNDS); rows.len()];
    for row in &mut rows {
        row.timed_batch(&rt, BATCH); // warm up
    }
    let before = source.stats();
    for round in 0..ROUNDS {
        for k in 0..rows.len() {
            let i = (round + k) % rows.len();
            let elapsed = rows[i].timed_batch(&rt, BATCH);
            times[i].push(elapsed.as_nanos() as f64 / BATCH as f64);
        }
    }
    let after = source.stats();
    let median = |i: usize| {
        let mut t: Vec<f64> = times[i].clone();
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    println!();
    println!(
        "Replay: time per request, median of {ROUNDS} interleaved batches of {BATCH} \
         (criterion's median of {SAMPLE_SIZE} samples beside); allocations per request"
    );
    println!();
    println!("| row | time | ratio to plain | criterion | ratio | allocs/req | bytes/req |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (i, name) in ROWS.iter().enumerate() {
        let time = median(i);
        let (crit, crit_ratio) = match (
            common::median_ns(name, SAMPLE_SIZE),
            common::median_ns(ROWS[0], SAMPLE_SIZE),
        ) {
            (Some(t), Some(b)) => (common::ns(t), format!("{:.2}×", t / b)),
            _ => ("–".to_owned(), "–".to_owned()),
        };
        let row = &mut rows[i];
        common::keep_room(2200);
        for _ in 0..100 {
            row.send(&rt, SHAPE.request());
        }
        let (allocs, bytes) =
            common::allocs_per_call(1000, || SHAPE.request(), |request| row.send(&rt, request));
        common::drop_kept();
        println!(
            "| {name} | {} | {:.2}× | {crit} | {crit_ratio} | {allocs:.1} | {bytes:.0} |",
            common::ns(time),
            time / median(0),
        );
    }
    println!();
    println!(
        "during the interleaved rounds: {} replays, {} token fetches, for {} rejected requests",
        after.replays - before.replays,
        after.fetches - before.fetches,
        ROUNDS as u64 * BATCH,
    );
}

criterion_group!(benches, replay);

fn main() {
    common::print_load("before");
    benches();
    Criterion::default().configure_from_args().final_summary();
    report();
    common::print_load("after");
}
