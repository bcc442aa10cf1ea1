//! Shared fixtures for the integration tests: a real token endpoint and a
//! real protected resource, both served by axum over loopback sockets in the
//! test's own runtime, the client every test drives, and a tracing capture.
//!
//! # Paused time and real sockets
//!
//! With `start_paused = true`, Tokio moves the clock to the next timer
//! when the runtime parks with nothing to run, and a runtime waiting for a
//! socket may park. Whether it then jumps depends on which task the socket
//! wakes (a wake of the test's own future since the last park prevents it),
//! so it varies with the interleaving. While a token fetch is in flight its
//! timeout is such a timer, so a jump would move the clock by the whole
//! endpoint timeout and fail the fetch. [`hold_clock`] rules that out: while
//! its guard lives, the clock moves only when the test calls
//! [`tokio::time::advance`], so token instants are exact. Tests that *want*
//! the jump (a hanging endpoint timing out) drop the guard first.
#![allow(dead_code)]

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    future::{Future, IntoFuture},
    io,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    response::Response,
    routing::{any, post},
    Router,
};
use base64::{engine::general_purpose::STANDARD, Engine as _};
use bytes::Bytes;
use http_body::Body as HttpBody;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::{
    net::TcpListener,
    sync::{watch, Semaphore},
    task::JoinHandle,
};
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_alf::{
    grant::ClientCredentials, BearerAuth, BearerAuthLayer, ClientAuth, TokenEndpoint,
    TokenEndpointBuilder, TokenSource,
};

/// The client id the helpers authenticate with.
pub(crate) const CLIENT_ID: &str = "test-client";
/// The client secret the helpers authenticate with.
pub(crate) const CLIENT_SECRET: &str = "test-secret-5Xq";
/// The lifetime the token server grants unless told otherwise.
pub(crate) const LIFETIME: Duration = Duration::from_secs(3600);

// ===== small sync tools =====

/// A count that tests can wait on.
#[derive(Debug)]
pub(crate) struct Counter(watch::Sender<usize>);

impl Counter {
    fn new() -> Self {
        Self(watch::Sender::new(0))
    }

    fn incr(&self) -> usize {
        let mut now = 0;
        self.0.send_modify(|count| {
            *count += 1;
            now = *count;
        });
        now
    }

    /// The count now.
    pub(crate) fn get(&self) -> usize {
        *self.0.borrow()
    }

    /// Waits until the count is at least `n`.
    pub(crate) async fn reached(&self, n: usize) {
        let mut receiver = self.0.subscribe();
        guard(
            receiver.wait_for(|count| *count >= n),
            "a counter to reach its target",
        )
        .await
        .expect("the counter lives as long as its server");
    }
}

/// Holds requests at a server until the test lets them through.
#[derive(Debug, Clone)]
pub(crate) struct Gate(Arc<Semaphore>);

impl Gate {
    fn closed() -> Self {
        Self(Arc::new(Semaphore::new(0)))
    }

    /// Lets every held and later request through.
    pub(crate) fn open(&self) {
        self.0.close();
    }

    /// Lets `n` more requests through.
    pub(crate) fn allow(&self, n: usize) {
        self.0.add_permits(n);
    }

    async fn pass(&self) {
        // A closed semaphore is an open gate.
        if let Ok(permit) = self.0.acquire().await {
            permit.forget();
        }
    }
}

/// Aborts a server task when the server handle is dropped.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn serve(router: Router) -> (SocketAddr, AbortOnDrop) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local address");
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .into_future()
            .await
            .expect("serve");
    });
    (addr, AbortOnDrop(task))
}

// ===== paused time =====

/// Keeps paused time from auto-advancing while it lives (see the module
/// docs). Works through Tokio's rule that a running `spawn_blocking` task
/// inhibits auto-advance on a current-thread runtime.
#[derive(Debug)]
#[must_use = "the clock is held only while the guard lives"]
pub(crate) struct ClockHold(#[allow(dead_code)] std::sync::mpsc::Sender<()>);

/// Holds the paused clock: from now on it moves only by `advance`.
pub(crate) fn hold_clock() -> ClockHold {
    let (sender, receiver) = std::sync::mpsc::channel::<()>();
    drop(tokio::task::spawn_blocking(move || {
        // Returns when the guard (the sender) is dropped.
        let _ = receiver.recv();
    }));
    ClockHold(sender)
}

/// Awaits `future`, failing the test instead of hanging if it takes more
/// than 30 s of real time (paused time cannot bound it).
pub(crate) async fn guard<F: Future>(future: F, what: &str) -> F::Output {
    let (sender, receiver) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(30));
        let _ = sender.send(());
    });
    tokio::select! {
        output = future => output,
        _ = receiver => panic!("timed out (30 s real time) waiting for {what}"),
    }
}

/// Yields until `condition` holds; fails after 10 s of real time.
pub(crate) async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out (10 s real time) waiting for {what}"
        );
        tokio::task::yield_now().await;
    }
}

// ===== token server =====

/// One canned answer of the token server.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// Issues the next token, `<prefix><n>`, with this `expires_in` member
    /// (`None`: omitted), and a refresh token `<refresh prefix><n>` when set.
    Token { expires_in: Option<Value> },
    /// Any status and body, with a content type.
    Raw {
        status: StatusCode,
        content_type: &'static str,
        body: Bytes,
    },
    /// Never answers.
    Hang,
}

impl Reply {
    /// A token with the default lifetime, `expires_in` as a JSON number.
    pub(crate) fn token() -> Self {
        Self::Token {
            expires_in: Some(json!(LIFETIME.as_secs())),
        }
    }

    /// A token with this `expires_in` member, sent as given.
    pub(crate) fn token_expiring(expires_in: Value) -> Self {
        Self::Token {
            expires_in: Some(expires_in),
        }
    }

    /// A JSON body with this status.
    pub(crate) fn json(status: u16, body: Value) -> Self {
        Self::Raw {
            status: StatusCode::from_u16(status).expect("status"),
            content_type: "application/json",
            body: Bytes::from(body.to_string()),
        }
    }

    /// Any body, as given.
    pub(crate) fn raw(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Self::Raw {
            status: StatusCode::from_u16(status).expect("status"),
            content_type,
            body: body.into(),
        }
    }
}

/// What the token server saw in one request.
#[derive(Debug, Clone)]
pub(crate) struct TokenRequestSeen {
    pub(crate) headers: HeaderMap,
    /// The form fields, in order, duplicates kept.
    pub(crate) form: Vec<(String, String)>,
}

impl TokenRequestSeen {
    /// Every value of form field `name`.
    pub(crate) fn field_all(&self, name: &str) -> Vec<&str> {
        self.form
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }

    /// The single value of form field `name`, if present.
    pub(crate) fn field(&self, name: &str) -> Option<&str> {
        let values = self.field_all(name);
        assert!(
            values.len() <= 1,
            "form field {name} sent {} times",
            values.len()
        );
        values.first().copied()
    }

    /// Header `name` as a string.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|value| value.to_str().expect("ASCII header"))
    }

    /// The client id and secret from a `Basic` authorization header,
    /// decoded as RFC 6749 §2.3.1 says: Base64, split at the first `:`,
    /// then each part form-urlencoded-decoded.
    pub(crate) fn basic_credentials(&self) -> Option<(String, String)> {
        let value = self.header("authorization")?;
        let encoded = value.strip_prefix("Basic ")?;
        let decoded = String::from_utf8(STANDARD.decode(encoded).expect("base64"))
            .expect("UTF-8 credentials");
        let (id, secret) = decoded
            .split_once(':')
            .expect("a ':' between id and secret");
        Some((form_decode(id), form_decode(secret)))
    }
}

/// `application/x-www-form-urlencoded` decoding of one value: `+` is a
/// space, `%XX` a byte.
pub(crate) fn form_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("percent escape");
                out.push(u8::from_str_radix(hex, 16).expect("hex digits"));
                i += 2;
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).expect("UTF-8 after decoding")
}

#[derive(Debug)]
struct Behaviour {
    /// Answers used first, in order.
    queue: VecDeque<Reply>,
    /// The answer once the queue is empty; `None`: running out is a failure.
    fallback: Option<Reply>,
    gate: Option<Gate>,
    delay: Option<Duration>,
    token_prefix: String,
    refresh_prefix: Option<String>,
}

#[derive(Debug)]
struct TokenState {
    requests: Counter,
    answered: Counter,
    issued: Mutex<usize>,
    seen: Mutex<Vec<TokenRequestSeen>>,
    behaviour: Mutex<Behaviour>,
    ran_out: Mutex<bool>,
}

/// A token endpoint at `POST /token` on a loopback port.
///
/// By default it issues `tok-1`, `tok-2`, … with `expires_in: 3600` to any
/// request. [`TokenServer::script`] replaces that with a fixed list of
/// answers; running out of it fails the test.
#[derive(Debug)]
pub(crate) struct TokenServer {
    addr: SocketAddr,
    state: Arc<TokenState>,
    _task: AbortOnDrop,
}

impl TokenServer {
    /// Starts a server that issues tokens with the default lifetime.
    pub(crate) async fn start() -> Self {
        Self::start_with(Reply::token()).await
    }

    /// Starts a server that answers every request with `reply`.
    pub(crate) async fn start_with(reply: Reply) -> Self {
        let state = Arc::new(TokenState {
            requests: Counter::new(),
            answered: Counter::new(),
            issued: Mutex::new(0),
            seen: Mutex::new(Vec::new()),
            behaviour: Mutex::new(Behaviour {
                queue: VecDeque::new(),
                fallback: Some(reply),
                gate: None,
                delay: None,
                token_prefix: "tok-".to_owned(),
                refresh_prefix: None,
            }),
            ran_out: Mutex::new(false),
        });
        let router = Router::new()
            .route("/token", post(token_handler))
            .with_state(Arc::clone(&state));
        let (addr, task) = serve(router).await;
        Self {
            addr,
            state,
            _task: task,
        }
    }

    /// The token URL.
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.addr.port())
    }

    /// From now on, answers exactly `replies`, in order; a request past
    /// the end fails the test.
    pub(crate) fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        let mut behaviour = lock(&self.state.behaviour);
        behaviour.queue = replies.into_iter().collect();
        behaviour.fallback = None;
    }

    /// Answers `reply` to the next request, then goes on as before.
    pub(crate) fn push(&self, reply: Reply) {
        lock(&self.state.behaviour).queue.push_back(reply);
    }

    /// From now on, answers every request with `reply`.
    pub(crate) fn always(&self, reply: Reply) {
        let mut behaviour = lock(&self.state.behaviour);
        behaviour.queue.clear();
        behaviour.fallback = Some(reply);
    }

    /// Holds every later request until the returned gate opens.
    pub(crate) fn hold(&self) -> Gate {
        let gate = Gate::closed();
        lock(&self.state.behaviour).gate = Some(gate.clone());
        gate
    }

    /// Delays every later answer by `delay` (of Tokio time).
    pub(crate) fn delay(&self, delay: Duration) {
        lock(&self.state.behaviour).delay = Some(delay);
    }

    /// Issues tokens named `<prefix><n>`; defaults to `tok-`.
    pub(crate) fn token_prefix(&self, prefix: &str) {
        lock(&self.state.behaviour).token_prefix = prefix.to_owned();
    }

    /// Issues a refresh token `<prefix><n>` with every token.
    pub(crate) fn refresh_tokens(&self, prefix: &str) {
        lock(&self.state.behaviour).refresh_prefix = Some(prefix.to_owned());
    }

    /// Token requests received so far.
    pub(crate) fn requests(&self) -> usize {
        self.state.requests.get()
    }

    /// Waits until `n` token requests have arrived.
    pub(crate) async fn requests_reached(&self, n: usize) {
        self.state.requests.reached(n).await;
    }

    /// Token requests answered so far.
    pub(crate) fn answered(&self) -> usize {
        self.state.answered.get()
    }

    /// Every request seen so far.
    pub(crate) fn seen(&self) -> Vec<TokenRequestSeen> {
        lock(&self.state.seen).clone()
    }

    /// The last request seen.
    pub(crate) fn last(&self) -> TokenRequestSeen {
        self.seen().pop().expect("no token request was received")
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        if *lock(&self.state.ran_out) && !std::thread::panicking() {
            panic!("the token server received more requests than it was scripted to answer");
        }
    }
}

async fn token_handler(
    State(state): State<Arc<TokenState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = form_urlencoded::parse(&body).into_owned().collect();
    lock(&state.seen).push(TokenRequestSeen { headers, form });
    let (reply, gate, delay) = {
        let mut behaviour = lock(&state.behaviour);
        let reply = behaviour
            .queue
            .pop_front()
            .or_else(|| behaviour.fallback.clone());
        (reply, behaviour.gate.clone(), behaviour.delay)
    };
    state.requests.incr();
    if let Some(gate) = gate {
        gate.pass().await;
    }
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let response = match reply {
        None => {
            *lock(&state.ran_out) = true;
            eprintln!("token server: a request arrived after the script ran out");
            respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                "token server: no canned reply left",
            )
        }
        Some(Reply::Hang) => std::future::pending().await,
        Some(Reply::Raw {
            status,
            content_type,
            body,
        }) => respond(status, content_type, body),
        Some(Reply::Token { expires_in }) => {
            let (prefix, refresh_prefix) = {
                let behaviour = lock(&state.behaviour);
                (
                    behaviour.token_prefix.clone(),
                    behaviour.refresh_prefix.clone(),
                )
            };
            let n = {
                let mut issued = lock(&state.issued);
                *issued += 1;
                *issued
            };
            let mut body = json!({
                "access_token": format!("{prefix}{n}"),
                "token_type": "Bearer",
            });
            if let Some(expires_in) = expires_in {
                body["expires_in"] = expires_in;
            }
            if let Some(refresh_prefix) = refresh_prefix {
                body["refresh_token"] = json!(format!("{refresh_prefix}{n}"));
            }
            respond(StatusCode::OK, "application/json", body.to_string())
        }
    };
    state.answered.incr();
    response
}

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .body(body.into())
        .expect("a valid response")
}

// ===== resource server =====

/// How the resource server treats bearer tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Accepts any token not in the rejected set.
    Accept,
    /// Answers 401 `invalid_token` to every request.
    RejectAll,
    /// Answers 401 `insufficient_scope` to every request.
    InsufficientScope,
}

/// What the resource server saw in one request.
#[derive(Debug, Clone)]
pub(crate) struct ResourceRequestSeen {
    pub(crate) method: Method,
    pub(crate) uri: String,
    /// The bearer token, if the request carried one.
    pub(crate) token: Option<String>,
    pub(crate) body: Bytes,
}

#[derive(Debug)]
struct ResourceState {
    requests: Counter,
    seen: Mutex<Vec<ResourceRequestSeen>>,
    access: Mutex<Access>,
    rejected: Mutex<HashSet<String>>,
    gate: Mutex<Option<Gate>>,
}

/// A protected resource at `/api` and `/api/…`, any method.
///
/// A request with an accepted bearer token gets 200 and a JSON [`Echo`] of
/// what it sent; any other gets 401 with
/// `WWW-Authenticate: Bearer error="invalid_token"`.
#[derive(Debug)]
pub(crate) struct ResourceServer {
    addr: SocketAddr,
    state: Arc<ResourceState>,
    _task: AbortOnDrop,
}

impl ResourceServer {
    /// Starts a server that accepts every bearer token.
    pub(crate) async fn start() -> Self {
        let state = Arc::new(ResourceState {
            requests: Counter::new(),
            seen: Mutex::new(Vec::new()),
            access: Mutex::new(Access::Accept),
            rejected: Mutex::new(HashSet::new()),
            gate: Mutex::new(None),
        });
        let router = Router::new()
            .route("/api", any(resource_handler))
            .route("/api/{*rest}", any(resource_handler))
            .with_state(Arc::clone(&state));
        let (addr, task) = serve(router).await;
        Self {
            addr,
            state,
            _task: task,
        }
    }

    /// The URL of `path` (which starts with `/api`).
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.addr.port())
    }

    /// Answers 401 `invalid_token` to requests carrying `token`.
    pub(crate) fn reject(&self, token: &str) {
        lock(&self.state.rejected).insert(token.to_owned());
    }

    /// Answers 401 `invalid_token` to every request.
    pub(crate) fn reject_all(&self) {
        *lock(&self.state.access) = Access::RejectAll;
    }

    /// Answers 401 `insufficient_scope` to every request.
    pub(crate) fn insufficient_scope(&self) {
        *lock(&self.state.access) = Access::InsufficientScope;
    }

    /// Holds every later request, after counting it, until the gate lets it
    /// through.
    pub(crate) fn hold(&self) -> Gate {
        let gate = Gate::closed();
        *lock(&self.state.gate) = Some(gate.clone());
        gate
    }

    /// Requests received so far.
    pub(crate) fn requests(&self) -> usize {
        self.state.requests.get()
    }

    /// Waits until `n` requests have arrived.
    pub(crate) async fn requests_reached(&self, n: usize) {
        self.state.requests.reached(n).await;
    }

    /// Every request seen so far, in arrival order.
    pub(crate) fn seen(&self) -> Vec<ResourceRequestSeen> {
        lock(&self.state.seen).clone()
    }

    /// The bearer token of every request, in arrival order.
    pub(crate) fn tokens(&self) -> Vec<Option<String>> {
        self.seen().into_iter().map(|seen| seen.token).collect()
    }
}

async fn resource_handler(State(state): State<Arc<ResourceState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let token = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::to_owned);
    let uri = parts.uri.to_string();
    lock(&state.seen).push(ResourceRequestSeen {
        method: parts.method.clone(),
        uri: uri.clone(),
        token: token.clone(),
        body: body.clone(),
    });
    state.requests.incr();
    let gate = lock(&state.gate).clone();
    if let Some(gate) = gate {
        gate.pass().await;
    }

    let access = *lock(&state.access);
    let error = match (&token, access) {
        (None, _) | (Some(_), Access::RejectAll) => Some("invalid_token"),
        (Some(_), Access::InsufficientScope) => Some("insufficient_scope"),
        (Some(token), Access::Accept) if lock(&state.rejected).contains(token) => {
            Some("invalid_token")
        }
        (Some(_), Access::Accept) => None,
    };
    if let Some(error) = error {
        let mut response = respond(StatusCode::UNAUTHORIZED, "text/plain", "unauthorized");
        let challenge = format!(r#"Bearer realm="api", error="{error}""#);
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&challenge).expect("a valid challenge"),
        );
        return response;
    }

    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        if name.as_str().starts_with("x-") || name == header::CONTENT_TYPE {
            headers
                .entry(name.as_str().to_owned())
                .or_default()
                .push(value.to_str().unwrap_or("<binary>").to_owned());
        }
    }
    let echo = json!({
        "method": parts.method.as_str(),
        "uri": uri,
        "token": token,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    respond(StatusCode::OK, "application/json", echo.to_string())
}

/// What the resource server echoes for an accepted request.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub(crate) struct Echo {
    pub(crate) method: String,
    pub(crate) uri: String,
    pub(crate) token: String,
    /// `x-*` headers and `content-type`, every value in order.
    pub(crate) headers: BTreeMap<String, Vec<String>>,
    pub(crate) body: String,
}

// ===== client side =====

/// A token endpoint builder for `server`, authenticating with
/// `client_secret_basic` as [`CLIENT_ID`] / [`CLIENT_SECRET`].
pub(crate) fn endpoint_builder(server: &TokenServer) -> TokenEndpointBuilder {
    endpoint_builder_with(server, ClientAuth::basic(CLIENT_ID, CLIENT_SECRET))
}

/// A token endpoint builder for `server` with this client authentication.
pub(crate) fn endpoint_builder_with(
    server: &TokenServer,
    auth: ClientAuth,
) -> TokenEndpointBuilder {
    // NOTE: no retries: these suites count token requests per fetch; retries
    // have their own suite (`fault_matrix.rs`).
    let builder = TokenEndpoint::builder(server.url())
        .client_auth(auth)
        .retry(tower_alf::RetryPolicy::none());
    // With `rustls` (the default) the endpoint's own default client is used,
    // as a user's would be; without it, a plain hyper-util client.
    if cfg!(feature = "rustls") {
        builder
    } else {
        builder.http_client(tower_alf::HttpClient::new(hyper_client::<Full<Bytes>>()))
    }
}

/// A source over the client credentials grant against `server`, with no
/// jitter, so stale and expiry instants are exact.
pub(crate) fn source(server: &TokenServer) -> TokenSource {
    source_from(endpoint_builder(server).build().expect("a valid endpoint"))
}

/// A source over the client credentials grant against `endpoint`, with no
/// jitter.
pub(crate) fn source_from(endpoint: TokenEndpoint) -> TokenSource {
    TokenSource::builder(ClientCredentials::new(endpoint))
        .jitter(0.0)
        .build()
}

/// hyper-util's legacy client over plain TCP, for any request body.
pub(crate) type HyperClient<B = Full<Bytes>> = Client<HttpConnector, B>;

/// The client the tests drive: [`BearerAuthLayer`] over [`HyperClient`].
pub(crate) type AuthClient = BearerAuth<HyperClient>;

/// A hyper-util legacy client over plain TCP.
pub(crate) fn hyper_client<B>() -> HyperClient<B>
where
    B: HttpBody + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    Client::builder(TokioExecutor::new()).build_http()
}

/// `BearerAuthLayer::new(source)` over a hyper-util client.
pub(crate) fn client(source: &TokenSource) -> AuthClient {
    ServiceBuilder::new()
        .layer(BearerAuthLayer::new(source.clone()))
        .service(hyper_client())
}

/// A `GET` of `url` with an empty body.
pub(crate) fn get(url: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(url)
        .body(Full::default())
        .expect("a valid request")
}

/// A response with its body read.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Answer {
    /// The echo of an accepted request; fails the test on any other answer.
    pub(crate) fn echo(&self) -> Echo {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "expected an accepted request, got {} {:?}",
            self.status,
            self.body
        );
        serde_json::from_slice(&self.body).expect("an echo")
    }

    /// The token the accepted request carried.
    pub(crate) fn token(&self) -> String {
        self.echo().token
    }
}

/// Sends `request` through `service` and reads the whole answer.
pub(crate) async fn send<S, B, RB>(
    service: &S,
    request: http::Request<B>,
) -> Result<Answer, BoxError>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>, Error = BoxError> + Clone,
    RB: HttpBody,
    RB::Error: Into<BoxError>,
{
    let response = service.clone().oneshot(request).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(Into::into)?.to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// `GET url` through `client`; panics if the call fails.
pub(crate) async fn get_ok(client: &AuthClient, url: &str) -> Answer {
    guard(send(client, get(url)), "a GET to answer")
        .await
        .expect("the call succeeds")
}

/// The `tower_alf::Error` inside a middleware error; fails the test if the
/// error is anything else.
pub(crate) fn alf_error(error: &BoxError) -> &tower_alf::Error {
    error
        .downcast_ref::<tower_alf::Error>()
        .unwrap_or_else(|| panic!("expected a tower_alf::Error, got {error:?}"))
}

// ===== tracing capture =====

/// Everything the capturing subscriber wrote on one thread, at every level.
#[derive(Debug, Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// The output so far.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&lock(&self.0)).into_owned()
    }
}

std::thread_local! {
    static SINK: std::cell::RefCell<Option<Captured>> = const { std::cell::RefCell::new(None) };
}

/// The writer of the global subscriber: appends to this thread's capture,
/// if any, and drops the output otherwise.
#[derive(Debug)]
struct ThreadSink;

impl io::Write for ThreadSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        SINK.with(|sink| {
            if let Some(captured) = sink.borrow().as_ref() {
                lock(&captured.0).extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Ends a capture when dropped.
#[derive(Debug)]
#[must_use = "output is captured only while the guard lives"]
pub(crate) struct CaptureGuard(());

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        SINK.with(|sink| sink.borrow_mut().take());
    }
}

/// Captures all tracing output, at `TRACE` and up, written on this thread
/// until the guard is dropped. Use a current-thread runtime so that spawned
/// tasks (the token fetch) run on this thread.
///
/// NOTE: the subscriber is the process-wide default, installed once, and
/// routes each event to the capture of the thread that emits it. A
/// thread-local subscriber (`set_default`) is not enough when other tests
/// of the binary run at once: while it is the only scoped subscriber,
/// `tracing` caches the interest of a callsite first hit on another thread
/// as "never", for every thread, and its events go missing.
pub(crate) fn capture_tracing() -> (Captured, CaptureGuard) {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(|| ThreadSink)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this test binary");
    });
    let captured = Captured::default();
    SINK.with(|sink| *sink.borrow_mut() = Some(captured.clone()));
    (captured, CaptureGuard(()))
}
