//! Refresh under load, against a real token endpoint: an axum server on
//! 127.0.0.1, on a runtime of its own, answering each token request after a
//! fixed 5 ms, reached through `TokenEndpoint` and `ClientCredentials` with
//! the crate's default HTTP client. Not a criterion bench: each scenario is
//! a count and a latency distribution, printed as a table.
//!
//! 1. Refresh storm: 10,000 concurrent requests, on a 2-worker runtime,
//!    arrive at once (each task waits at a gate, then the gate opens) when
//!    the token has just expired. Counts the token fetches (must be 1 per
//!    storm) and compares the latencies with the same storm on a fresh
//!    token: p50 and p99, and what the expiry added. Two latencies: from
//!    the arrival (the gate's opening, so queueing behind the other 9,999
//!    counts) and each request's own (from its task running to its
//!    response). Five storms of each, on new sources, the latencies pooled.
//! 2. Steady state with background refresh: tokens that live 2 s, 30 s of
//!    paced load (16 tasks, one request every 2 ms each, about 8,000 per
//!    second) with the default refresh window and jitter. Counts the
//!    requests that had to wait for a fetch after the first token (must be
//!    0, from `TokenSource::stats().waits`) and the fetches. Set
//!    `STEADY_SECS` to run it shorter.
//!
//! `cargo bench -p tower-alf-benches --bench refresh`

mod common;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use axum::{
    extract::{Path, State},
    http::header::CONTENT_TYPE,
    routing::post,
    Router,
};
use bytes::Bytes;
use common::percentile;
use http::Request;
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt};
use tower_alf::{
    grant::ClientCredentials, BearerAuthLayer, ClientAuth, TokenEndpoint, TokenSource,
};

const STORM: usize = 10_000;
const STORMS: usize = 5;
const ENDPOINT_LATENCY: Duration = Duration::from_millis(5);
const STEADY_TASKS: usize = 16;
const STEADY_PERIOD: Duration = Duration::from_millis(2);

type Body = Full<Bytes>;

// ===== the token endpoint =====

struct Endpoint {
    addr: SocketAddr,
    state: Arc<EndpointState>,
}

#[derive(Default)]
struct EndpointState {
    hits: AtomicU64,
    /// When the last token request arrived.
    last_request: Mutex<Option<Instant>>,
}

/// Starts the token endpoint on a thread and runtime of its own:
/// `POST /token/{lifetime}` answers a new token that lives `lifetime`
/// seconds, after `ENDPOINT_LATENCY`.
fn start_endpoint() -> Endpoint {
    let state = Arc::new(EndpointState::default());
    let (tx, rx) = std::sync::mpsc::channel();
    let shared = state.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = Router::new()
                .route("/token/{lifetime}", post(token))
                .with_state(shared);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    Endpoint {
        addr: rx.recv().unwrap(),
        state,
    }
}

async fn token(
    State(state): State<Arc<EndpointState>>,
    Path(lifetime): Path<u64>,
) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    *state.last_request.lock().unwrap() = Some(Instant::now());
    let n = state.hits.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::time::sleep(ENDPOINT_LATENCY).await;
    (
        [(CONTENT_TYPE, "application/json")],
        format!(r#"{{"access_token":"tok-{n}","token_type":"Bearer","expires_in":{lifetime}}}"#),
    )
}

impl Endpoint {
    /// A source over this endpoint whose tokens live `lifetime`.
    fn source(&self, lifetime: Duration, jitter: Option<f64>) -> TokenSource {
        let url = format!("http://{}/token/{}", self.addr, lifetime.as_secs());
        let endpoint = TokenEndpoint::builder(url)
            .client_auth(ClientAuth::basic("bench", "s3cr3t"))
            .build()
            .unwrap();
        let builder = TokenSource::builder(ClientCredentials::new(endpoint));
        match jitter {
            Some(jitter) => builder.jitter(jitter).build(),
            None => builder.build(),
        }
    }

    fn hits(&self) -> u64 {
        self.state.hits.load(Ordering::SeqCst)
    }
}

fn request() -> Request<Body> {
    common::Shape::TenHeaders.request()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

// ===== 1. refresh storm =====

struct Storm {
    /// From the arrival of all requests (the gate opening) to each response.
    from_arrival: Vec<Duration>,
    /// From each request's start (its task running) to its response.
    own: Vec<Duration>,
    fetches: Vec<u64>,
    waits: u64,
    /// How long after the arrival the token request reached the endpoint.
    to_endpoint: Vec<Duration>,
}

impl Storm {
    fn new() -> Self {
        Self {
            from_arrival: Vec::with_capacity(STORM * STORMS),
            own: Vec::with_capacity(STORM * STORMS),
            fetches: Vec::new(),
            waits: 0,
            to_endpoint: Vec::new(),
        }
    }
}

/// One storm of `STORM` concurrent requests on a new source, its first
/// token fetched, then (if `expired`) left to expire; adds to `storm`.
fn one_storm(rt: &tokio::runtime::Runtime, endpoint: &Endpoint, expired: bool, storm: &mut Storm) {
    // NOTE: at least `TokenSourceBuilder::MIN_LIFETIME` (5 s), or the source
    // schedules the token as that and it is still fresh at the gate.
    let lifetime = if expired {
        Duration::from_secs(10)
    } else {
        common::LIFETIME
    };
    {
        rt.block_on(async {
            // No jitter: the token turns stale at 7.5 s and expired at 9 s
            // (a quarter and a tenth of its lifetime), and nothing touches it
            // in between.
            let source = endpoint.source(lifetime, Some(0.0));
            source.token().await.unwrap();
            if expired {
                // Until it expires; the tasks then take 100 ms to line up.
                tokio::time::sleep(lifetime * 9 / 10).await;
            }
            let service = BearerAuthLayer::new(source.clone()).layer(common::inner::<Body>());
            // Every task waits at the gate, then all requests arrive at once.
            let (gate, _) = tokio::sync::watch::channel(false);
            let tasks: Vec<_> = (0..STORM)
                .map(|_| {
                    let service = service.clone();
                    let mut gate = gate.subscribe();
                    tokio::spawn(async move {
                        gate.wait_for(|open| *open).await.unwrap();
                        let start = Instant::now();
                        let response = service.oneshot(request()).await.unwrap();
                        assert_eq!(response.status(), 200);
                        (start, Instant::now())
                    })
                })
                .collect();
            tokio::time::sleep(Duration::from_millis(100)).await;
            let before = (source.stats(), endpoint.hits());
            let arrival = Instant::now();
            gate.send_replace(true);
            for task in tasks {
                let (start, end) = task.await.unwrap();
                storm.from_arrival.push(end - arrival);
                storm.own.push(end - start);
            }
            let after = (source.stats(), endpoint.hits());
            assert_eq!(after.0.fetches - before.0.fetches, after.1 - before.1);
            storm.fetches.push(after.1 - before.1);
            storm.waits += after.0.waits - before.0.waits;
            if let Some(at) = *endpoint.state.last_request.lock().unwrap() {
                if expired {
                    storm
                        .to_endpoint
                        .push(at.saturating_duration_since(arrival));
                }
            }
        });
    }
}

fn report_storm(rt: &tokio::runtime::Runtime, endpoint: &Endpoint) {
    // Alternated, so that a change of the machine's load weighs on both.
    let (mut fresh, mut expired) = (Storm::new(), Storm::new());
    for _ in 0..STORMS {
        one_storm(rt, endpoint, false, &mut fresh);
        one_storm(rt, endpoint, true, &mut expired);
    }
    for storm in [&mut fresh, &mut expired] {
        storm.from_arrival.sort();
        storm.own.sort();
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let show = |d: Duration| format!("{:.2} ms", ms(d));
    println!();
    println!(
        "Refresh storm: {STORMS} storms of {STORM} concurrent requests, 2 workers, \
         token endpoint latency {} ms",
        ENDPOINT_LATENCY.as_millis()
    );
    println!();
    println!(
        "| token | fetches per storm | requests that waited, per storm \
         | from arrival: p50 | p99 | own: p50 | p99 | max |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for (name, storm) in [("fresh", &fresh), ("just expired", &expired)] {
        println!(
            "| {name} | {:?} | {} | {} | {} | {} | {} | {} |",
            storm.fetches,
            storm.waits / STORMS as u64,
            show(percentile(&storm.from_arrival, 50.0)),
            show(percentile(&storm.from_arrival, 99.0)),
            show(percentile(&storm.own, 50.0)),
            show(percentile(&storm.own, 99.0)),
            show(*storm.own.last().unwrap()),
        );
    }
    let added = |of: fn(&Storm) -> &Vec<Duration>, p: f64| {
        let added = ms(percentile(of(&expired), p)) - ms(percentile(of(&fresh), p));
        format!("{added:+.2} ms ({:+.2}×)", added / ms(ENDPOINT_LATENCY))
    };
    println!(
        "| added by the expiry (× the endpoint's latency) | | | {} | {} | {} | {} | |",
        added(|s| &s.from_arrival, 50.0),
        added(|s| &s.from_arrival, 99.0),
        added(|s| &s.own, 50.0),
        added(|s| &s.own, 99.0),
    );
    let mut to_endpoint = expired.to_endpoint.clone();
    to_endpoint.sort();
    println!();
    println!(
        "The token request of an expired storm reached the endpoint {} after the \
         arrival (median of {STORMS} storms; all: {:?}).",
        show(percentile(&to_endpoint, 50.0)),
        to_endpoint
            .iter()
            .map(|d| format!("{:.1} ms", ms(*d)))
            .collect::<Vec<_>>(),
    );
}

// ===== 2. steady state =====

fn report_steady(rt: &tokio::runtime::Runtime, endpoint: &Endpoint) {
    let secs = std::env::var("STEADY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let duration = Duration::from_secs(secs);
    let lifetime = Duration::from_secs(2);
    let (before, after, hits, mut latencies) = rt.block_on(async {
        let source = endpoint.source(lifetime, None);
        source.token().await.unwrap();
        let before = (source.stats(), endpoint.hits());
        let service = BearerAuthLayer::new(source.clone()).layer(common::inner::<Body>());
        let deadline = tokio::time::Instant::now() + duration;
        let tasks: Vec<_> = (0..STEADY_TASKS)
            .map(|_| {
                let mut service = service.clone();
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let mut tick = tokio::time::interval(STEADY_PERIOD);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    while tick.tick().await < deadline {
                        let start = Instant::now();
                        let response = service.ready().await.unwrap().call(request()).await;
                        assert_eq!(response.unwrap().status(), 200);
                        latencies.push(start.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await.unwrap());
        }
        let after = source.stats();
        (before, after, endpoint.hits() - before.1, latencies)
    });
    latencies.sort();
    let waits = after.waits - before.0.waits;
    println!();
    println!(
        "Steady state: token lifetime {} s, {secs} s of paced load \
         ({STEADY_TASKS} tasks, one request every {} ms each), default window and jitter",
        lifetime.as_secs(),
        STEADY_PERIOD.as_millis()
    );
    println!();
    println!(
        "| requests | waits after the first token | fetches | endpoint hits | p50 | p99 | max |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {waits} | {} | {hits} | {:.1} µs | {:.1} µs | {:.1} µs |",
        latencies.len(),
        after.fetches - before.0.fetches,
        percentile(&latencies, 50.0).as_secs_f64() * 1e6,
        percentile(&latencies, 99.0).as_secs_f64() * 1e6,
        latencies.last().unwrap().as_secs_f64() * 1e6,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that names neither scenario
    // (as `cargo bench -- hot_path` does) skips them.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let wants = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    if !wants("refresh_storm") && !wants("steady_state") {
        return;
    }
    common::print_load("before");
    let endpoint = start_endpoint();
    let rt = runtime();
    if wants("refresh_storm") {
        report_storm(&rt, &endpoint);
    }
    if wants("steady_state") {
        report_steady(&rt, &endpoint);
    }
    common::print_load("after");
}
