//! gRPC through `BearerAuthLayer` on a `tonic::transport::Channel`: a real
//! tonic server on a loopback socket, a real token endpoint (`support`),
//! unary and client-streaming calls.
//!
//! The service is written by hand (prost messages, `tonic::server::Grpc`
//! and `tonic::client::Grpc` with `tonic_prost::ProstCodec`), so no
//! `protoc` is needed. It rejects a token three ways: HTTP 401 (a gRPC
//! server behind an authenticating proxy), HTTP 200 with `grpc-status: 16`
//! in the headers (tonic's Trailers-Only answer, as an interceptor
//! rejects), and `grpc-status: 16` in real trailers after a message (a
//! streaming call the server ends with `UNAUTHENTICATED`).

mod support;

use std::{
    collections::HashSet,
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
};

use bytes::Bytes;
use http::uri::PathAndQuery;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{
    body::Body,
    client::{Grpc as GrpcClient, GrpcService},
    metadata::MetadataValue,
    server::{Grpc as GrpcServer, NamedService},
    service::interceptor::InterceptedService,
    transport::Channel,
    Code, Request, Response, Status, Streaming,
};
use tonic_prost::ProstCodec;
use tower::{BoxError, Service, ServiceBuilder};
use tower_alf::replay::{ReplayBody, ReplayStreams};
use tower_alf::{tonic::GrpcStatusLayer, BearerAuthLayer, TokenSource};

use support::{Reply, TokenServer, CLIENT_SECRET};

// ===== the service: alf.test.Notes =====

#[derive(Clone, PartialEq, prost::Message)]
struct Note {
    #[prost(string, tag = "1")]
    text: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Summary {
    /// How many notes the server received.
    #[prost(uint32, tag = "1")]
    count: u32,
    /// The notes' texts, joined.
    #[prost(string, tag = "2")]
    text: String,
    /// The `authorization` metadata the call carried.
    #[prost(string, tag = "3")]
    authorization: String,
}

const ECHO: &str = "/alf.test.Notes/Echo";
const COUNT: &str = "/alf.test.Notes/Count";
/// Server streaming: one `Summary` per note in the request's text,
/// split on spaces.
const SPLIT: &str = "/alf.test.Notes/Split";

#[derive(Default)]
struct Seen {
    /// Every HTTP request, rejected or not.
    requests: AtomicUsize,
    /// The `authorization` value of every request, in order.
    authorizations: Mutex<Vec<String>>,
    /// Bearer tokens answered with HTTP 401.
    rejected: Mutex<HashSet<String>>,
    /// Bearer tokens answered as tonic does: HTTP 200, `grpc-status: 16`.
    unauthenticated: Mutex<HashSet<String>>,
    /// Bearer tokens whose streaming calls get one message, then
    /// `grpc-status: 16` in the trailers.
    revoked_in_trailers: Mutex<HashSet<String>>,
    /// Bearer tokens answered HTTP 200 with a `grpc-status` that is no
    /// number.
    garbled: Mutex<HashSet<String>>,
}

#[derive(Clone, Default)]
struct Notes {
    seen: Arc<Seen>,
}

impl NamedService for Notes {
    const NAME: &'static str = "alf.test.Notes";
}

fn authorization<T>(request: &Request<T>) -> String {
    request
        .metadata()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

impl Service<http::Request<Body>> for Notes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let seen = Arc::clone(&self.seen);
        Box::pin(async move {
            seen.requests.fetch_add(1, Ordering::SeqCst);
            let value = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            seen.authorizations.lock().unwrap().push(value.clone());
            let token = value.strip_prefix("Bearer ").unwrap_or_default();
            if token.is_empty() || seen.rejected.lock().unwrap().contains(token) {
                let mut response = http::Response::new(Body::empty());
                *response.status_mut() = http::StatusCode::UNAUTHORIZED;
                response.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static(r#"Bearer error="invalid_token""#),
                );
                return Ok(response);
            }
            if seen.unauthenticated.lock().unwrap().contains(token) {
                return Ok(Status::unauthenticated("invalid token").into_http());
            }
            if seen.garbled.lock().unwrap().contains(token) {
                let mut response = http::Response::new(Body::empty());
                let headers = response.headers_mut();
                headers.insert(
                    "content-type",
                    http::HeaderValue::from_static("application/grpc"),
                );
                headers.insert("grpc-status", http::HeaderValue::from_static("sixteen"));
                return Ok(response);
            }
            let revoked = seen.revoked_in_trailers.lock().unwrap().contains(token);
            let codec = ProstCodec::<Summary, Note>::default();
            let response = match request.uri().path() {
                ECHO => {
                    let method = tower::service_fn(|request: Request<Note>| async move {
                        let authorization = authorization(&request);
                        let text = request.into_inner().text;
                        Ok::<_, Status>(Response::new(Summary {
                            count: 1,
                            text,
                            authorization,
                        }))
                    });
                    GrpcServer::new(codec).unary(method, request).await
                }
                COUNT => {
                    let method =
                        tower::service_fn(|request: Request<Streaming<Note>>| async move {
                            let authorization = authorization(&request);
                            let mut notes = request.into_inner();
                            let (mut count, mut text) = (0, String::new());
                            while let Some(note) = notes.message().await? {
                                count += 1;
                                text.push_str(&note.text);
                            }
                            Ok::<_, Status>(Response::new(Summary {
                                count,
                                text,
                                authorization,
                            }))
                        });
                    GrpcServer::new(codec)
                        .client_streaming(method, request)
                        .await
                }
                SPLIT => {
                    let method = tower::service_fn(move |request: Request<Note>| async move {
                        let authorization = authorization(&request);
                        let text = request.into_inner().text;
                        let mut answers: Vec<Result<Summary, Status>> = text
                            .split(' ')
                            .map(|word| {
                                Ok(Summary {
                                    count: 1,
                                    text: word.to_owned(),
                                    authorization: authorization.clone(),
                                })
                            })
                            .collect();
                        if revoked {
                            answers.truncate(1);
                            answers.push(Err(Status::unauthenticated("token revoked")));
                        }
                        Ok::<_, Status>(Response::new(tokio_stream::iter(answers)))
                    });
                    GrpcServer::new(codec)
                        .server_streaming(method, request)
                        .await
                }
                _ => Status::unimplemented("no such method").into_http(),
            };
            Ok(response)
        })
    }
}

/// The Notes service on a loopback port, served by tonic.
struct NotesServer {
    addr: SocketAddr,
    seen: Arc<Seen>,
    task: JoinHandle<()>,
}

impl Drop for NotesServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl NotesServer {
    async fn start() -> Self {
        let notes = Notes::default();
        let seen = Arc::clone(&notes.seen);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(notes)
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await
                .expect("serve");
        });
        Self { addr, seen, task }
    }

    /// Answers HTTP 401 to calls carrying `token`.
    fn reject(&self, token: &str) {
        self.seen.rejected.lock().unwrap().insert(token.to_owned());
    }

    /// Answers calls carrying `token` as tonic does: HTTP 200 with
    /// `grpc-status: 16` (`Unauthenticated`).
    fn unauthenticated(&self, token: &str) {
        self.seen
            .unauthenticated
            .lock()
            .unwrap()
            .insert(token.to_owned());
    }

    /// Ends streaming calls carrying `token` with `grpc-status: 16` in the
    /// trailers, after one message.
    fn revoke_in_trailers(&self, token: &str) {
        self.seen
            .revoked_in_trailers
            .lock()
            .unwrap()
            .insert(token.to_owned());
    }

    /// Answers calls carrying `token` with HTTP 200 and `grpc-status:
    /// sixteen`.
    fn garble(&self, token: &str) {
        self.seen.garbled.lock().unwrap().insert(token.to_owned());
    }

    fn requests(&self) -> usize {
        self.seen.requests.load(Ordering::SeqCst)
    }

    fn authorizations(&self) -> Vec<String> {
        self.seen.authorizations.lock().unwrap().clone()
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("a valid URI")
            .connect()
            .await
            .expect("connect to the loopback server")
    }
}

// ===== the client =====

/// `BearerAuthLayer` on a channel, its errors as `tonic::Status`.
async fn authorized(
    server: &NotesServer,
    tokens: &TokenSource,
) -> GrpcClient<
    impl GrpcService<
        Body,
        Error = Status,
        ResponseBody = impl http_body::Body<Data = Bytes, Error = impl Into<BoxError>> + Send + 'static,
    >,
> {
    let channel = ServiceBuilder::new()
        .map_err(tower_alf::tonic::into_status)
        .layer(BearerAuthLayer::new(tokens.clone()))
        .service(server.channel().await);
    GrpcClient::new(channel)
}

async fn echo<T>(grpc: &mut GrpcClient<T>, text: &str) -> Result<Summary, Status>
where
    T: GrpcService<Body>,
    T::Error: Into<BoxError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<BoxError> + Send,
{
    grpc.ready()
        .await
        .map_err(|e| Status::from_error(e.into()))?;
    let request = Request::new(Note {
        text: text.to_owned(),
    });
    let codec = ProstCodec::<Note, Summary>::default();
    let response = grpc
        .unary(request, PathAndQuery::from_static(ECHO), codec)
        .await?;
    Ok(response.into_inner())
}

async fn count<T>(grpc: &mut GrpcClient<T>, notes: &[&str]) -> Result<Summary, Status>
where
    T: GrpcService<Body>,
    T::Error: Into<BoxError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<BoxError> + Send,
{
    grpc.ready()
        .await
        .map_err(|e| Status::from_error(e.into()))?;
    let notes: Vec<Note> = notes
        .iter()
        .map(|text| Note {
            text: (*text).to_owned(),
        })
        .collect();
    let request = Request::new(tokio_stream::iter(notes));
    let codec = ProstCodec::<Note, Summary>::default();
    let response = grpc
        .client_streaming(request, PathAndQuery::from_static(COUNT), codec)
        .await?;
    Ok(response.into_inner())
}

/// A server-streaming call: every message, then the status the stream
/// ended with.
async fn split<T>(grpc: &mut GrpcClient<T>, text: &str) -> (Vec<Summary>, Result<(), Status>)
where
    T: GrpcService<Body>,
    T::Error: Into<BoxError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<BoxError> + Send,
{
    if let Err(e) = grpc.ready().await {
        return (Vec::new(), Err(Status::from_error(e.into())));
    }
    let request = Request::new(Note {
        text: text.to_owned(),
    });
    let codec = ProstCodec::<Note, Summary>::default();
    let mut stream = match grpc
        .server_streaming(request, PathAndQuery::from_static(SPLIT), codec)
        .await
    {
        Ok(response) => response.into_inner(),
        Err(status) => return (Vec::new(), Err(status)),
    };
    let mut messages = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(message)) => messages.push(message),
            Ok(None) => return (messages, Ok(())),
            Err(status) => return (messages, Err(status)),
        }
    }
}

const NOTES: [&str; 5] = ["one ", "two ", "three ", "four ", "five"];

// ===== tests =====

#[tokio::test]
async fn unary_calls_carry_the_token_as_authorization_metadata() {
    let (idp, server) = (TokenServer::start().await, NotesServer::start().await);
    let tokens = support::source(&idp);
    let mut grpc = authorized(&server, &tokens).await;

    for text in ["first", "second", "third"] {
        let summary = echo(&mut grpc, text).await.expect("the call succeeds");
        assert_eq!(summary.text, text);
        assert_eq!(summary.authorization, "Bearer tok-1");
    }
    assert_eq!(tokens.stats().fetches, 1);
    assert_eq!(idp.requests(), 1);
    assert_eq!(server.authorizations(), vec!["Bearer tok-1"; 3]);
}

#[tokio::test]
async fn a_client_streaming_call_carries_the_token_and_every_message() {
    let (idp, server) = (TokenServer::start().await, NotesServer::start().await);
    let tokens = support::source(&idp);
    let mut grpc = authorized(&server, &tokens).await;

    let summary = count(&mut grpc, &NOTES).await.expect("the call succeeds");
    assert_eq!(summary.count, 5);
    assert_eq!(summary.text, NOTES.concat());
    assert_eq!(summary.authorization, "Bearer tok-1");
    assert_eq!(tokens.stats().fetches, 1);
}

#[tokio::test]
async fn a_401_comes_back_as_unauthenticated_and_the_next_call_gets_a_fresh_token() {
    let (idp, server) = (TokenServer::start().await, NotesServer::start().await);
    server.reject("tok-1");
    let tokens = support::source(&idp);
    let mut grpc = authorized(&server, &tokens).await;

    let status = echo(&mut grpc, "hello").await.expect_err("rejected");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // The call was not replayed (a gRPC body is not copied by default), but
    // the rejected token was replaced: the next call carries a new one.
    let summary = count(&mut grpc, &NOTES).await.expect("a fresh token");
    assert_eq!(summary.authorization, "Bearer tok-2");
    assert_eq!(server.requests(), 2);
    let stats = tokens.stats();
    assert_eq!((stats.fetches, stats.replays), (2, 0));
}

#[tokio::test]
async fn a_trailers_only_unauthenticated_invalidates_the_token_for_the_next_call() {
    let (idp, server) = (TokenServer::start().await, NotesServer::start().await);
    server.unauthenticated("tok-1");
    let tokens = support::source(&idp);
    let mut grpc = authorized(&server, &tokens).await;

    // The default policy keeps no copy of a gRPC body: the status comes
    // back as the server sent it …
    let status = echo(&mut grpc, "hello").await.expect_err("rejected");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(status.message(), "invalid token");
    assert_eq!(server.requests(), 1);
    // … and the rejected token was replaced: the next call carries a new one.
    let summary = echo(&mut grpc, "again").await.expect("a fresh token");
    assert_eq!(summary.authorization, "Bearer tok-2");
    let stats = tokens.stats();
    assert_eq!((stats.fetches, stats.replays), (2, 0));
}

#[tokio::test]
async fn a_token_revoked_mid_run_is_replaced_and_the_call_replayed() {
    let (idp, server) = (TokenServer::start().await, NotesServer::start().await);
    let tokens = support::source(&idp);
    let channel = ServiceBuilder::new()
        .map_err(tower_alf::tonic::into_status)
        .layer(replaying_layer(&tokens))
        .service(server.channel().await);
    let mut grpc = GrpcClient::new(channel);

    for text in ["one", "two"] {
        let summary = echo(&mut grpc, text).await.expect("accepted");
        assert_eq!(summary.authorization, "Bearer tok-1");
    }
    // The server revokes tok-1, answering as tonic's interceptors do.
    server.unauthenticated("tok-1");
    let summary = echo(&mut grpc, "three").await.expect("replayed");
    assert_eq!(summary.text, "three");
    assert_eq!(summary.authorization, "Bearer tok-2");
    let summary = count(&mut grpc, &NOTES)
        .await
        .expect("the new token serves");
    assert_eq!(summary.authorization, "Bearer tok-2");
    assert_eq!(
        server.authorizations(),
        [
            "Bearer tok-1",
            "Bearer tok-1",
            "Bearer tok-1",
            "Bearer tok-2",
            "Bearer tok-2"
        ]
    );
    let stats = tokens.stats();
    assert_eq!((stats.fetches, stats.replays), (2, 1));
    assert_eq!(idp.requests(), 2);
}

#[tokio::test]
async fn concurrent_trailers_only_rejections_of_one_token_make_one_refresh() {
    const N: usize = 50;
    let (idp, server) = (TokenServer::start().await, NotesServer::start().await);
    let tokens = support::source(&idp);
    let channel = ServiceBuilder::new()
        .map_err(tower_alf::tonic::into_status)
        .layer(replaying_layer(&tokens))
        .service(server.channel().await);
    let grpc = GrpcClient::new(channel);
    tokens.token().await.expect("tok-1");
    server.unauthenticated("tok-1");

    let mut calls = tokio::task::JoinSet::new();
    for i in 0..N {
        let mut grpc = grpc.clone();
        calls.spawn(async move { echo(&mut grpc, &format!("call {i}")).await });
    }
    for summary in calls.join_all().await {
        assert_eq!(summary.expect("replayed").authorization, "Bearer tok-2");
    }
    assert_eq!(
        idp.requests(),
        2,
        "one refresh for every rejection of tok-1"
    );
    // Every call sent with tok-1 (most, if not all) was replayed once.
    let first_sends = server
        .authorizations()
        .iter()
        .filter(|a| *a == "Bearer tok-1")
        .count();
    assert!(first_sends > 1, "concurrent rejections: {first_sends}");
    assert_eq!(tokens.stats().replays, first_sends as u64);
    assert_eq!(server.requests(), N + first_sends);
}

#[tokio::test]
async fn a_grpc_status_that_is_not_a_number_passes_through() {
    let (idp, server) = (TokenServer::start().await, NotesServer::start().await);
    server.garble("tok-1");
    let tokens = support::source(&idp);
    let mut grpc = authorized(&server, &tokens).await;
    // Whatever tonic makes of it, the layer neither replays nor refreshes.
    let _ = echo(&mut grpc, "hello").await;
    assert_eq!(server.requests(), 1);
    assert_eq!(tokens.stats().fetches, 1);
    assert_eq!(
        tokens.cached().expect("kept").header_value(),
        "Bearer tok-1"
    );
}

/// The layer on a channel, with `GrpcStatusLayer` below it.
async fn watching(
    server: &NotesServer,
    tokens: &TokenSource,
) -> GrpcClient<
    impl GrpcService<
        Body,
        Error = Status,
        ResponseBody = impl http_body::Body<Data = Bytes, Error = impl Into<BoxError>> + Send + 'static,
    >,
> {
    let channel = ServiceBuilder::new()
        .map_err(tower_alf::tonic::into_status)
        .layer(BearerAuthLayer::new(tokens.clone()))
        .layer(GrpcStatusLayer::new(tokens.clone()))
        .service(server.channel().await);
    GrpcClient::new(channel)
}

#[tokio::test]
async fn unauthenticated_in_trailers_replaces_the_token_with_grpc_status_layer() {
    let (idp, server) = (TokenServer::start().await, NotesServer::start().await);
    let tokens = support::source(&idp);
    let mut grpc = watching(&server, &tokens).await;

    let (messages, end) = split(&mut grpc, "a b c").await;
    assert_eq!(messages.len(), 3);
    end.expect("the stream ends well");
    // Revoked mid-run: the next stream gets one message, then status 16 in
    // the trailers.
    server.revoke_in_trailers("tok-1");
    let (messages, end) = split(&mut grpc, "d e f").await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].authorization, "Bearer tok-1");
    let status = end.expect_err("ended UNAUTHENTICATED");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // The token was invalidated as the trailers arrived: a fresh one now.
    let (messages, end) = split(&mut grpc, "g h").await;
    end.expect("a fresh token");
    assert!(messages.iter().all(|m| m.authorization == "Bearer tok-2"));
    let summary = echo(&mut grpc, "unary").await.expect("accepted");
    assert_eq!(summary.authorization, "Bearer tok-2");
    let stats = tokens.stats();
    assert_eq!((stats.fetches, stats.replays), (2, 0));
    assert_eq!(idp.requests(), 2);
}

#[tokio::test]
async fn without_grpc_status_layer_a_status_in_trailers_keeps_the_token() {
    let (idp, server) = (TokenServer::start().await, NotesServer::start().await);
    server.revoke_in_trailers("tok-1");
    let tokens = support::source(&idp);
    let mut grpc = authorized(&server, &tokens).await;
    let (_, end) = split(&mut grpc, "a b").await;
    assert_eq!(end.expect_err("revoked").code(), Code::Unauthenticated);
    let (_, end) = split(&mut grpc, "c d").await;
    assert!(end.is_err(), "the layer alone cannot see trailers");
    assert_eq!(tokens.stats().fetches, 1);
}

#[tokio::test]
async fn grpc_status_layer_leaves_a_call_without_our_token_alone() {
    let (idp, server) = (TokenServer::start().await, NotesServer::start().await);
    let tokens = support::source(&idp);
    let mut grpc = watching(&server, &tokens).await;
    let (_, end) = split(&mut grpc, "x").await;
    end.expect("tok-1 serves");
    // A call with another token, rejected in its trailers, through the
    // watcher alone: tok-1 is not touched.
    server.revoke_in_trailers("someone-elses");
    let source = tokens.clone();
    let other = ServiceBuilder::new()
        .map_request(|mut request: http::Request<Body>| {
            request.headers_mut().insert(
                http::header::AUTHORIZATION,
                http::HeaderValue::from_static("Bearer someone-elses"),
            );
            request
        })
        .layer(GrpcStatusLayer::new(source))
        .service(server.channel().await);
    let mut other = GrpcClient::new(other);
    let (_, end) = split(&mut other, "y z").await;
    assert_eq!(end.expect_err("revoked").code(), Code::Unauthenticated);
    assert_eq!(
        tokens.cached().expect("kept").header_value(),
        "Bearer tok-1"
    );
    assert_eq!(tokens.stats().fetches, 1);
}

#[tokio::test]
async fn a_token_failure_is_unauthenticated_and_the_call_is_not_sent() {
    let idp = TokenServer::start_with(Reply::json(
        401,
        serde_json::json!({ "error": "invalid_client", "error_description": "unknown client" }),
    ))
    .await;
    let server = NotesServer::start().await;
    let tokens = support::source(&idp);
    let mut grpc = authorized(&server, &tokens).await;

    let status = echo(&mut grpc, "hello").await.expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("invalid_client"), "{status:?}");
    assert!(!format!("{status:?}").contains(CLIENT_SECRET), "{status:?}");
    let status = count(&mut grpc, &NOTES).await.expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn an_unreachable_token_endpoint_is_unavailable() {
    // A port that was free a moment ago: nothing listens there.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("local address");
    let endpoint = tower_alf::TokenEndpoint::builder(format!("http://{closed}/token"))
        .client_auth(tower_alf::ClientAuth::basic("client", "secret"))
        .retry(tower_alf::RetryPolicy::none())
        .build()
        .expect("a loopback endpoint");
    let server = NotesServer::start().await;
    let tokens = support::source_from(endpoint);
    let mut grpc = authorized(&server, &tokens).await;

    let status = echo(&mut grpc, "hello").await.expect_err("no token");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(server.requests(), 0);
}

#[tokio::test]
async fn an_interceptor_reads_the_cached_token_synchronously() {
    let (idp, server) = (TokenServer::start().await, NotesServer::start().await);
    let tokens = support::source(&idp);
    let source = tokens.clone();
    let authorize = move |mut request: Request<()>| {
        let Some(token) = source.cached() else {
            source.prefetch();
            return Err(Status::unavailable("no access token yet"));
        };
        let value = MetadataValue::try_from(token.header_value().as_bytes())
            .map_err(|_| Status::internal("the token is not valid metadata"))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    };
    let mut grpc = GrpcClient::new(InterceptedService::new(server.channel().await, authorize));

    // Nothing cached yet: the first call fails at once and starts a fetch.
    let status = echo(&mut grpc, "early").await.expect_err("no token yet");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(server.requests(), 0);
    idp.requests_reached(1).await;
    tokens
        .token()
        .await
        .expect("the fetch the interceptor started");
    assert_eq!(tokens.stats().fetches, 1);

    let summary = echo(&mut grpc, "later").await.expect("a token is cached");
    assert_eq!(summary.authorization, "Bearer tok-1");
    assert_eq!(tokens.stats().fetches, 1);
}

/// How a replayed gRPC body is boxed back: `tonic::body::Body::new`.
type Rebox = fn(ReplayBody<tonic::body::Body>) -> tonic::body::Body;

/// The one line that gives a tonic channel replay of streams.
fn replaying_layer(tokens: &TokenSource) -> BearerAuthLayer<ReplayStreams<Rebox>> {
    BearerAuthLayer::new(tokens.clone()).clone_body(ReplayStreams::new(tonic::body::Body::new))
}

#[tokio::test]
async fn a_client_stream_rejected_once_is_replayed_whole_with_a_fresh_token() {
    let (idp, server) = (TokenServer::start().await, NotesServer::start().await);
    server.reject("tok-1");
    let tokens = support::source(&idp);
    let channel = ServiceBuilder::new()
        .map_err(tower_alf::tonic::into_status)
        .layer(replaying_layer(&tokens))
        .service(server.channel().await);
    let mut grpc = GrpcClient::new(channel);

    let summary = count(&mut grpc, &NOTES).await.expect("replayed");
    assert_eq!(summary.count, 5, "every message arrives in the replay");
    assert_eq!(summary.text, NOTES.concat());
    assert_eq!(summary.authorization, "Bearer tok-2");
    assert_eq!(server.authorizations(), ["Bearer tok-1", "Bearer tok-2"]);
    let stats = tokens.stats();
    assert_eq!((stats.fetches, stats.replays), (2, 1));
}

/// A writer that keeps what a `tracing` subscriber writes.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// `BearerAuthLayer` built by `layer`, on a channel to `server`.
async fn authorized_with(
    server: &NotesServer,
    layer: BearerAuthLayer,
) -> GrpcClient<
    impl GrpcService<
        Body,
        Error = Status,
        ResponseBody = impl http_body::Body<Data = Bytes, Error = impl Into<BoxError>> + Send + 'static,
    >,
> {
    let channel = ServiceBuilder::new()
        .map_err(tower_alf::tonic::into_status)
        .layer(layer)
        .service(server.channel().await);
    GrpcClient::new(channel)
}

#[tokio::test]
async fn only_origins_matches_a_channels_relative_uris_against_the_stated_origin() {
    let (idp, server) = (TokenServer::start().await, NotesServer::start().await);
    let tokens = support::source(&idp);
    let origin: http::Uri = format!("http://{}", server.addr).parse().unwrap();
    let layer = BearerAuthLayer::new(tokens.clone())
        .only_origins([origin.clone()])
        .relative_uri_origin(origin);
    let mut grpc = authorized_with(&server, layer).await;
    let summary = echo(&mut grpc, "hello").await.expect("the call succeeds");
    assert_eq!(summary.authorization, "Bearer tok-1");

    // The same channel stated as another origin: no token.
    let other: http::Uri = "https://api.example".parse().unwrap();
    let layer = BearerAuthLayer::new(tokens)
        .only_origins([other])
        .relative_uri_origin(format!("http://{}", server.addr).parse().unwrap());
    let mut grpc = authorized_with(&server, layer).await;
    let status = echo(&mut grpc, "hello")
        .await
        .expect_err("sent without a token");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(server.authorizations(), ["Bearer tok-1", ""]);
}

#[tokio::test]
async fn only_origins_without_a_relative_uri_origin_sends_no_token_and_warns_once() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (idp, server) = (TokenServer::start().await, NotesServer::start().await);
    let origin: http::Uri = format!("http://{}", server.addr).parse().unwrap();
    let layer = BearerAuthLayer::new(support::source(&idp)).only_origins([origin]);
    let mut grpc = authorized_with(&server, layer).await;
    for text in ["one", "two", "three"] {
        let status = echo(&mut grpc, text)
            .await
            .expect_err("sent without a token");
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    assert_eq!(
        server.authorizations(),
        ["", "", ""],
        "no token without the origin"
    );
    assert_eq!(idp.requests(), 0);
    let text = logs.text();
    assert_eq!(
        text.matches("relative_uri_origin").count(),
        1,
        "one warning, naming the fix: {text}"
    );
    assert!(text.contains("WARN"), "{text}");
}
