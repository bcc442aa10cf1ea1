//! What the bench binaries share: a counting allocator, the request shapes,
//! the inner service, the "floor" layer (a request copy done the cheapest
//! honest way), token sources over a fake grant, and a recorder that keeps
//! criterion's samples so each binary can print its table of ratios.
//!
//! Each bench binary includes this module with `mod common;` and uses only
//! part of it.
#![allow(dead_code)]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    collections::BTreeMap,
    convert::Infallible,
    fmt,
    future::Future,
    pin::{pin, Pin},
    sync::Mutex,
    task::{Context, Poll, Waker},
    time::Duration,
};

use bytes::Bytes;
use http::{
    header::{ACCEPT, ACCEPT_ENCODING, CONTENT_TYPE, USER_AGENT},
    Extensions, HeaderMap, Method, Request, Response, Uri, Version,
};
use http_body_util::{Empty, Full};
use pin_project_lite::pin_project;
use tower::{Layer, Service, ServiceBuilder};
use tower_alf::{grant::FetchToken, replay::NoReplay, BearerAuthLayer, Token, TokenSource};
use tower_http::auth::AddAuthorizationLayer;

/// The access token every row sends: 43 characters, the length of a
/// base64url-encoded 256-bit opaque token.
pub const ACCESS_TOKEN: &str = "mF_9.B5f-4.1JqMqCmF_9.B5f-4.1JqMqCmF_9.B5f4";

/// The lifetime of the benches' tokens: an hour, as most servers issue, so
/// that the hot path is the realistic one (an expiring token, checked
/// against the clock on every request).
pub const LIFETIME: Duration = Duration::from_secs(3600);

// ===== counting allocator =====

/// Counts the allocations (and reallocations) made on the current thread.
#[derive(Debug)]
pub struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
}

fn note(bytes: usize) {
    // `try_with`: the counters may already be gone while a thread exits.
    let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
    let _ = BYTES.try_with(|n| n.set(n.get() + bytes as u64));
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counters are plain thread-local cells that never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations and bytes allocated on this thread so far.
pub fn allocated() -> (u64, u64) {
    (ALLOCS.with(Cell::get), BYTES.with(Cell::get))
}

/// Allocations per call of `f`, averaged over `n` calls, and bytes per call.
pub fn allocs_per_call<I>(n: u64, mut make: impl FnMut() -> I, mut f: impl FnMut(I)) -> (f64, f64) {
    let inputs: Vec<I> = (0..n).map(|_| make()).collect();
    let (a0, b0) = allocated();
    for input in inputs {
        f(input);
    }
    let (a1, b1) = allocated();
    ((a1 - a0) as f64 / n as f64, (b1 - b0) as f64 / n as f64)
}

// ===== request shapes =====

/// The requests of the hot-path groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `GET`, no headers, empty body.
    NoHeaders,
    /// `GET` with 10 headers as client code sets them, empty body.
    TenHeaders,
    /// `POST`, `content-type`, a 1 KiB body.
    Body1K,
    /// `POST`, `content-type`, a 64 KiB body.
    Body64K,
}

impl Shape {
    pub const ALL: [Shape; 4] = [
        Shape::NoHeaders,
        Shape::TenHeaders,
        Shape::Body1K,
        Shape::Body64K,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shape::NoHeaders => "no_headers",
            Shape::TenHeaders => "10_headers",
            Shape::Body1K => "body_1k",
            Shape::Body64K => "body_64k",
        }
    }

    /// How many requests to build ahead of one timed batch.
    pub fn batch(self) -> u64 {
        match self {
            Shape::Body64K => 64,
            _ => 1024,
        }
    }

    /// A new request, built as application code builds one: the URI parsed
    /// from a string, header values copied from strings, the body a `Bytes`
    /// made from a `Vec` (as `serde_json::to_vec` gives).
    pub fn request(self) -> Request<Full<Bytes>> {
        let uri = "https://api.example.com/v1/orders/8f14e45f?expand=items";
        match self {
            Shape::NoHeaders => Request::get(uri).body(Full::default()).unwrap(),
            Shape::TenHeaders => Request::get(uri)
                .header(ACCEPT, "application/json")
                .header(ACCEPT_ENCODING, "gzip, br")
                .header(USER_AGENT, "orders-client/1.4.2")
                .header("x-request-id", "0b7c6a0e-6c2f-4d39-9d3e-6d1c1f3d2a11")
                .header("x-correlation-id", "c0ffee00-1234-4abc-8def-0123456789ab")
                .header("x-tenant", "acme")
                .header("x-client-version", "1.4.2")
                .header("x-forwarded-for", "10.1.2.3")
                .header(
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                )
                .header("cache-control", "no-cache")
                .body(Full::default())
                .unwrap(),
            Shape::Body1K | Shape::Body64K => {
                let size = if self == Shape::Body1K {
                    1024
                } else {
                    64 * 1024
                };
                Request::post(uri)
                    .header(CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(vec![b'x'; size])))
                    .unwrap()
            }
        }
    }
}

// ===== the inner service =====

/// What the inner service answers: an empty `200 OK`, at once.
pub type Answer = Response<Empty<Bytes>>;

/// The inner service of every row: takes the request (and drops it, as a
/// client that sent it would) and answers `200 OK` at once, with no I/O.
pub fn inner<B>(
) -> impl Service<Request<B>, Response = Answer, Error = Infallible, Future: Send> + Clone + Send + Sync
where
    B: Send + 'static,
{
    tower::service_fn(|request: Request<B>| {
        std::hint::black_box(&request);
        std::future::ready(Ok::<_, Infallible>(Response::new(Empty::new())))
    })
}

thread_local! {
    static KEPT: std::cell::RefCell<Vec<Request<Full<Bytes>>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The inner service of the hot-path rows: like [`inner`], but it keeps the
/// request instead of dropping it, so that freeing what the bench built (a
/// 64 KiB body, the header map) stays outside the timing in every row, as
/// building it does. Call [`keep_room`] before and [`drop_kept`] after each
/// timed batch.
pub fn keeping_inner(
) -> impl Service<Request<Full<Bytes>>, Response = Answer, Error = Infallible> + Clone {
    tower::service_fn(|request: Request<Full<Bytes>>| {
        keep(request);
        std::future::ready(Ok::<_, Infallible>(Response::new(Empty::new())))
    })
}

/// Keeps `request` until [`drop_kept`].
pub fn keep(request: Request<Full<Bytes>>) {
    KEPT.with_borrow_mut(|kept| kept.push(request));
}

/// Makes room for `n` kept requests, so keeping one never allocates.
pub fn keep_room(n: usize) {
    KEPT.with_borrow_mut(|kept| kept.reserve(n));
}

/// Drops the kept requests.
pub fn drop_kept() {
    KEPT.with_borrow_mut(Vec::clear);
}

// ===== the floor: AddAuthorization plus a request copy =====

/// Keeps a copy of each request until its response arrives, as a layer
/// that can replay must: method, URI, version, headers, extensions and a
/// clone of the body. Put it *inside* `AddAuthorization`, so the copy is made
/// with the token already in the map (no reallocation to add it later).
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyRequestLayer;

impl<S> Layer<S> for CopyRequestLayer {
    type Service = CopyRequest<S>;

    fn layer(&self, inner: S) -> CopyRequest<S> {
        CopyRequest { inner }
    }
}

/// See [`CopyRequestLayer`].
#[derive(Debug, Clone)]
pub struct CopyRequest<S> {
    inner: S,
}

/// A copy of a request's parts and body.
pub struct Copied<B> {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    extensions: Extensions,
    body: B,
}

impl<B: Clone> Copied<B> {
    fn of(request: &Request<B>) -> Self {
        Self {
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            headers: request.headers().clone(),
            extensions: request.extensions().clone(),
            body: request.body().clone(),
        }
    }
}

pin_project! {
    /// The inner future, holding the copy until it completes.
    pub struct HoldCopy<F, B> {
        #[pin]
        future: F,
        copy: Option<Copied<B>>,
    }
}

impl<F: Future, B> Future for HoldCopy<F, B> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = std::task::ready!(this.future.poll(cx));
        std::hint::black_box(this.copy.take());
        Poll::Ready(output)
    }
}

impl<S, B> Service<Request<B>> for CopyRequest<S>
where
    S: Service<Request<B>>,
    B: Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = HoldCopy<S::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let copy = Copied::of(&request);
        HoldCopy {
            future: self.inner.call(request),
            copy: Some(copy),
        }
    }
}

// ===== token sources =====

/// A grant with no I/O: a fresh token with `lifetime` (or none) at once.
pub fn fake_grant(
    lifetime: Option<Duration>,
) -> impl Service<FetchToken, Response = Token, Error = tower_alf::Error, Future: Send + 'static>
       + Clone
       + Send
       + Sync
       + 'static {
    tower::service_fn(move |_request: FetchToken| async move {
        let token = Token::bearer(ACCESS_TOKEN)?;
        Ok(match lifetime {
            Some(lifetime) => token.with_expires_in(lifetime),
            None => token,
        })
    })
}

/// A source over [`fake_grant`], its first token already fetched (on `rt`).
pub fn warm_source(rt: &tokio::runtime::Runtime, lifetime: Option<Duration>) -> TokenSource {
    let source = TokenSource::new(fake_grant(lifetime));
    // NOTE: `token()` starts the fetch when called, so call it inside the
    // runtime: `rt.block_on(source.token())` would call it outside.
    rt.block_on(async { source.token().await })
        .expect("the fake grant never fails");
    source
}

/// Polls one request through `service` to its response, with a no-op
/// waker: every service here is ready at once and answers at once.
#[inline]
pub fn drive<S, B>(service: &mut S, request: Request<B>) -> S::Response
where
    S: Service<Request<B>>,
    S::Error: fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match service.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(e)) => panic!("poll_ready failed: {e:?}"),
        Poll::Pending => panic!("the service was not ready at once"),
    }
    let mut future = pin!(service.call(request));
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(response)) => response,
        Poll::Ready(Err(e)) => panic!("the request failed: {e:?}"),
        Poll::Pending => panic!("the response was not ready at once"),
    }
}

// ===== the hot-path rows =====

/// The token sources of the hot-path rows: a token that expires in an hour
/// ([`LIFETIME`]), and one that never expires.
pub struct Sources {
    pub expiring: TokenSource,
    pub no_expiry: TokenSource,
}

impl Sources {
    /// Both sources, their first token fetched on `rt`.
    pub fn warm(rt: &tokio::runtime::Runtime) -> Self {
        Self {
            expiring: warm_source(rt, Some(LIFETIME)),
            no_expiry: warm_source(rt, None),
        }
    }
}

/// tower-http's static header, sensitive as ours is.
pub fn add_authorization() -> AddAuthorizationLayer {
    AddAuthorizationLayer::bearer(ACCESS_TOKEN).as_sensitive(true)
}

/// Something that sends one request through a row's stack.
pub type Sender = Box<dyn FnMut(Request<Full<Bytes>>) -> Answer>;

fn boxed<S>(mut service: S) -> Sender
where
    S: Service<Request<Full<Bytes>>, Response = Answer> + 'static,
    S::Error: fmt::Debug,
{
    Box::new(move |request| drive(&mut service, request))
}

/// A stack cloned for every request, as `svc.clone().oneshot(request)` does.
fn cloned<S>(service: S) -> Sender
where
    S: Service<Request<Full<Bytes>>, Response = Answer> + Clone + 'static,
    S::Error: fmt::Debug,
{
    Box::new(move |request| drive(&mut service.clone(), request))
}

/// The stack of the hot-path row `row` (see `hot_path.rs`), over
/// [`keeping_inner`].
pub fn make_row(sources: &Sources, row: &str) -> Sender {
    let inner = keeping_inner();
    match row {
        "bare" => boxed(inner),
        "add_authorization" => boxed(add_authorization().layer(inner)),
        "bearer_replay_off" => boxed(
            BearerAuthLayer::new(sources.expiring.clone())
                .clone_body(NoReplay)
                .layer(inner),
        ),
        "bearer_replay_off_no_expiry" => boxed(
            BearerAuthLayer::new(sources.no_expiry.clone())
                .clone_body(NoReplay)
                .layer(inner),
        ),
        "bearer_replay_on" => boxed(BearerAuthLayer::new(sources.expiring.clone()).layer(inner)),
        "add_authorization_cloned" => cloned(add_authorization().layer(inner)),
        "bearer_replay_off_cloned" => cloned(
            BearerAuthLayer::new(sources.expiring.clone())
                .clone_body(NoReplay)
                .layer(inner),
        ),
        "floor_replay_on" => boxed(
            ServiceBuilder::new()
                .layer(add_authorization())
                .layer(CopyRequestLayer)
                .service(inner),
        ),
        _ => unreachable!("unknown row {row}"),
    }
}

// ===== sample recorder =====

static SAMPLES: Mutex<BTreeMap<String, Vec<(u64, Duration)>>> = Mutex::new(BTreeMap::new());

/// Keeps one criterion sample (`iters` iterations took `elapsed`) of `id`.
pub fn record(id: &str, iters: u64, elapsed: Duration) {
    SAMPLES
        .lock()
        .unwrap()
        .entry(id.to_owned())
        .or_default()
        .push((iters, elapsed));
}

/// Time per iteration of `id`: the median of the per-sample means of its
/// last `sample_size` samples (criterion's measurement, after its warm-up).
/// `None` when `id` did not run (filtered out).
pub fn median_ns(id: &str, sample_size: usize) -> Option<f64> {
    let samples = SAMPLES.lock().unwrap();
    let all = samples.get(id)?;
    let last = &all[all.len().saturating_sub(sample_size)..];
    let mut means: Vec<f64> = last
        .iter()
        .map(|(iters, elapsed)| elapsed.as_nanos() as f64 / *iters as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let mid = means.len() / 2;
    Some(if means.len() % 2 == 1 {
        means[mid]
    } else {
        (means[mid - 1] + means[mid]) / 2.0
    })
}

/// Formats nanoseconds for a table.
pub fn ns(value: f64) -> String {
    if value >= 10_000.0 {
        format!("{:.1} µs", value / 1000.0)
    } else {
        format!("{value:.0} ns")
    }
}

/// Prints the machine's load, for the report.
pub fn print_load(when: &str) {
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average {when}: {}", load.trim());
    }
}

/// A percentile (0–100) of sorted `values`.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
