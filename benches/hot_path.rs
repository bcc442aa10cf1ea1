//! Hot path: one request through the stack, the inner service answering at
//! once, in one criterion group per request shape (no headers; 10 headers;
//! 1 KiB and 64 KiB `Full<Bytes>` bodies). Rows:
//!
//! - `bare`: the inner service alone;
//! - `add_authorization`: tower-http's static `AddAuthorization::bearer`;
//! - `bearer_replay_off`: `BearerAuth`, a fresh cached token that expires in
//!   an hour, replay off (`clone_body(NoReplay)`);
//! - `bearer_replay_on`: the same with replay on (the default);
//! - `floor_replay_on`: `AddAuthorization` plus a copy of the request kept
//!   until the response, the least any layer that can replay must do;
//! - `bearer_replay_off_no_expiry` (first two shapes): a token without
//!   expiry, which skips the clock; for comparison only;
//! - `add_authorization_cloned`, `bearer_replay_off_cloned` (first shape):
//!   the stack cloned for every request, as `svc.clone().oneshot(..)` does.
//!
//! Requests are built before each timed batch and freed after it, outside
//! the timing: the inner service keeps each request it is sent.
//!
//! After criterion, the binary runs every row again in interleaved rounds
//! of short batches and prints a table: each row's median time as a ratio
//! to the row it is held against (criterion's estimate beside), and
//! allocations per request, counted by a counting global allocator.
//!
//! `cargo bench -p tower-alf-benches --bench hot_path` (add `-- table`, a
//! filter that matches no benchmark, for the table alone)

mod common;

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use common::{make_row, Counting, Sender, Shape, Sources};
use criterion::{criterion_group, BenchmarkGroup, Criterion};

#[global_allocator]
static ALLOC: Counting = Counting;

const SAMPLE_SIZE: usize = 50;

/// The rows, in table order, with the row each is held against.
const ROWS: &[(&str, Option<&str>)] = &[
    ("bare", Some("add_authorization")),
    ("add_authorization", None),
    ("bearer_replay_off", Some("add_authorization")),
    ("bearer_replay_off_no_expiry", Some("add_authorization")),
    ("floor_replay_on", Some("add_authorization")),
    ("bearer_replay_on", Some("floor_replay_on")),
    ("add_authorization_cloned", Some("add_authorization")),
    ("bearer_replay_off_cloned", Some("add_authorization_cloned")),
];

/// Sends `n` new requests of `shape` through `send`; the time they took.
/// Building and freeing the requests is not timed.
fn timed_batch(send: &mut Sender, shape: Shape, n: u64) -> Duration {
    let requests: Vec<_> = (0..n).map(|_| shape.request()).collect();
    common::keep_room(n as usize);
    let start = Instant::now();
    for request in requests {
        black_box(send(request));
    }
    let elapsed = start.elapsed();
    common::drop_kept();
    elapsed
}

fn rows_for(shape: Shape) -> impl Iterator<Item = &'static str> {
    ROWS.iter()
        .map(|(row, _)| *row)
        .filter(move |row| match *row {
            "bearer_replay_off_no_expiry" => matches!(shape, Shape::NoHeaders | Shape::TenHeaders),
            "add_authorization_cloned" | "bearer_replay_off_cloned" => shape == Shape::NoHeaders,
            _ => true,
        })
}

fn bench_shape(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    sources: &Sources,
    shape: Shape,
) {
    for row in rows_for(shape) {
        let key = format!("{}/{row}", shape.name());
        let mut send = make_row(sources, row);
        group.bench_function(row, |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(shape.batch());
                    elapsed += timed_batch(&mut send, shape, n);
                    left -= n;
                }
                common::record(&key, iters, elapsed);
                elapsed
            });
        });
    }
}

fn hot_path(c: &mut Criterion) {
    let rt = runtime();
    let _guard = rt.enter();
    let sources = Sources::warm(&rt);
    for shape in Shape::ALL {
        let mut group = c.benchmark_group(format!("hot_path_{}", shape.name()));
        group
            .sample_size(SAMPLE_SIZE)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        bench_shape(&mut group, &sources, shape);
        group.finish();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Allocations per request of `row` for `shape`, counted over 1,000
/// requests after 100 to warm up.
fn allocations(sources: &Sources, shape: Shape, row: &str) -> (f64, f64) {
    let mut send = make_row(sources, row);
    common::keep_room(1100);
    for _ in 0..100 {
        black_box(send(shape.request()));
    }
    let counted = common::allocs_per_call(
        1000,
        || shape.request(),
        |request| {
            black_box(send(request));
        },
    );
    common::drop_kept();
    counted
}

/// Rounds of the interleaved pass.
const ROUNDS: usize = 400;

/// The interleaved pass: `ROUNDS` rounds, each sending one short batch
/// through every row, in an order that rotates each round. A batch lasts
/// tens of microseconds, so the few that another process preempts fall
/// outside the median, and a load that changes during the run weighs on
/// every row alike. Returns each row's median time per request.
fn interleaved(sources: &Sources, shape: Shape) -> Vec<(&'static str, f64)> {
    let mut rows: Vec<(&'static str, Sender, Vec<f64>)> = rows_for(shape)
        .map(|row| (row, make_row(sources, row), Vec::with_capacity(ROUNDS)))
        .collect();
    let n = shape.batch().min(256);
    for (_, send, _) in &mut rows {
        timed_batch(send, shape, n); // warm up
    }
    for round in 0..ROUNDS {
        for k in 0..rows.len() {
            let i = (round + k) % rows.len();
            let (_, send, times) = &mut rows[i];
            let elapsed = timed_batch(send, shape, n);
            times.push(elapsed.as_nanos() as f64 / n as f64);
        }
    }
    rows.into_iter()
        .map(|(row, _, mut times)| {
            times.sort_by(f64::total_cmp);
            (row, times[times.len() / 2])
        })
        .collect()
}

fn report() {
    let rt = runtime();
    let _guard = rt.enter();
    let sources = Sources::warm(&rt);
    println!();
    println!(
        "Hot path: time per request, median of {ROUNDS} interleaved batches \
         (criterion's median of {SAMPLE_SIZE} samples beside); allocations per request"
    );
    println!();
    println!("| shape | row | time | ratio | to | criterion | ratio | allocs/req | bytes/req |");
    println!("|---|---|---:|---:|---|---:|---:|---:|---:|");
    for shape in Shape::ALL {
        let times = interleaved(&sources, shape);
        let time_of = |row: &str| times.iter().find(|(r, _)| *r == row).map(|(_, t)| *t);
        let key = |row: &str| format!("{}/{row}", shape.name());
        for row in rows_for(shape) {
            let base_row = ROWS.iter().find(|(r, _)| *r == row).and_then(|(_, b)| *b);
            let ratio = |time: Option<f64>, base: Option<f64>| match (time, base, base_row) {
                (Some(t), Some(b), _) => (common::ns(t), format!("{:.2}×", t / b)),
                (Some(t), None, None) => (common::ns(t), "1.00×".to_owned()),
                _ => ("–".to_owned(), "–".to_owned()),
            };
            let (time, time_ratio) = ratio(time_of(row), base_row.and_then(time_of));
            let (crit, crit_ratio) = ratio(
                common::median_ns(&key(row), SAMPLE_SIZE),
                base_row.and_then(|b| common::median_ns(&key(b), SAMPLE_SIZE)),
            );
            let (allocs, bytes) = allocations(&sources, shape, row);
            println!(
                "| {} | {row} | {time} | {time_ratio} | {} | {crit} | {crit_ratio} | {allocs:.1} | {bytes:.0} |",
                shape.name(),
                base_row.unwrap_or("itself"),
            );
        }
    }
}

criterion_group!(benches, hot_path);

fn main() {
    common::print_load("before");
    benches();
    Criterion::default().configure_from_args().final_summary();
    report();
    common::print_load("after");
}
