//! Instructions per request of the hot-path rows, counted by valgrind's
//! callgrind through `gungraun`: deterministic figures beside the
//! wall-clock ratios of `hot_path.rs`, which move by ±0.1 between runs on a
//! shared machine.
//!
//! The rows and shapes are those of `hot_path.rs` (`common::make_row`):
//! `bare`, `add_authorization`, `bearer_replay_off` (an expiring token),
//! `bearer_replay_off_no_expiry` (a token without expiry, no clock),
//! `floor_replay_on` and `bearer_replay_on`, for no headers, 10 headers, and
//! 1 KiB and 64 KiB bodies. Each benchmark sends [`REQUESTS`] requests
//! through a stack that already served [`WARM_UP`]; the setup (runtime,
//! source, stack, warm-up, building the requests) is not counted, nor is
//! freeing what the inner service kept. Instructions per request are the
//! count divided by [`REQUESTS`].
//!
//! Needs the runner: `cargo install gungraun-runner --version 0.20.0`
//! (the version of the `gungraun` library here), and valgrind. Then
//! `cargo bench -p tower-alf-benches --bench instructions`; the benchmark
//! ids are `<shape>_<row>`.
//!
//! A caveat: valgrind does not run the vDSO, so the clock read an expiring
//! token costs (`clock_gettime`, ~24 ns of real time here) counts as a few
//! dozen instructions and a system call. The `_no_expiry` row shows it.

mod common;

use std::hint::black_box;

use bytes::Bytes;
use common::{make_row, Sender, Shape, Sources};
use gungraun::{library_benchmark, library_benchmark_group, main};
use http::Request;
use http_body_util::Full;

/// Requests per benchmark: the count is divided by it.
const REQUESTS: usize = 1000;

/// Requests a stack serves before counting (a handle's cache is made on
/// its second request).
const WARM_UP: usize = 10;

/// What one benchmark sends through, built by [`setup`].
struct Input {
    // Dropped last: the stack holds the sources, the sources a task handle.
    send: Sender,
    requests: Vec<Request<Full<Bytes>>>,
    _sources: Sources,
    _runtime: tokio::runtime::Runtime,
}

/// The stack of `row`, warm, and [`REQUESTS`] new requests of `shape`.
fn setup(row: &str, shape: Shape) -> Input {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sources = Sources::warm(&runtime);
    let mut send = make_row(&sources, row);
    common::keep_room(WARM_UP + REQUESTS);
    for _ in 0..WARM_UP {
        black_box(send(shape.request()));
    }
    let requests = (0..REQUESTS).map(|_| shape.request()).collect();
    Input {
        send,
        requests,
        _sources: sources,
        _runtime: runtime,
    }
}

/// Sends every request of `input`; returns the stack, so that freeing it
/// is not counted.
fn send_all(mut input: Input) -> Input {
    for request in std::mem::take(&mut input.requests) {
        black_box((input.send)(request));
    }
    input
}

macro_rules! rows {
    ($name:ident, $shape:expr) => {
        #[library_benchmark]
        #[bench::bare(setup("bare", $shape))]
        #[bench::add_authorization(setup("add_authorization", $shape))]
        #[bench::bearer_replay_off(setup("bearer_replay_off", $shape))]
        #[bench::bearer_replay_off_no_expiry(setup("bearer_replay_off_no_expiry", $shape))]
        #[bench::floor_replay_on(setup("floor_replay_on", $shape))]
        #[bench::bearer_replay_on(setup("bearer_replay_on", $shape))]
        fn $name(input: Input) -> Input {
            black_box(send_all(input))
        }
    };
}

rows!(no_headers, Shape::NoHeaders);
rows!(ten_headers, Shape::TenHeaders);
rows!(body_1k, Shape::Body1K);
rows!(body_64k, Shape::Body64K);

library_benchmark_group!(
    name = hot_path,
    benchmarks = [no_headers, ten_headers, body_1k, body_64k]
);

main!(library_benchmark_groups = hot_path);
