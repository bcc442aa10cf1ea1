//! A tonic gRPC client behind `BearerAuthLayer`: an authorization server
//! and a gRPC server run in this process on loopback, and every call
//! carries `authorization: Bearer …` metadata from one shared `TokenSource`.
//!
//! ```text
//! cargo run --example tonic_client --features tonic
//! ```
//!
//! The gRPC service is written by hand (prost messages, tonic's `Grpc`
//! helpers) so the example needs no `protoc`; a real project would generate
//! it with `tonic-prost-build` and pass the layered channel to the
//! generated client's `new`.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use axum::{routing::post, Json, Router};
use bytes::Bytes;
use http::uri::PathAndQuery;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{
    body::Body,
    client::{Grpc as GrpcClient, GrpcService},
    server::{Grpc as GrpcServer, NamedService},
    transport::Channel,
    Request, Response, Status, Streaming,
};
use tonic_prost::ProstCodec;
use tower::{BoxError, Service, ServiceBuilder};
use tower_alf::{
    grant::ClientCredentials, BearerAuthLayer, ClientAuth, TokenEndpoint, TokenSource,
};

#[derive(Clone, PartialEq, prost::Message)]
struct Note {
    #[prost(string, tag = "1")]
    text: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Summary {
    #[prost(uint32, tag = "1")]
    count: u32,
    #[prost(string, tag = "2")]
    text: String,
    #[prost(string, tag = "3")]
    authorization: String,
}

const ECHO: &str = "/demo.Notes/Echo";
const COUNT: &str = "/demo.Notes/Count";

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let token_addr = serve_tokens().await?;
    let grpc_addr = serve_notes().await?;

    let endpoint = TokenEndpoint::builder(format!("http://{token_addr}/token"))
        .client_auth(ClientAuth::basic("demo-client", "demo-secret"))
        .build()?;
    let tokens = TokenSource::new(ClientCredentials::new(endpoint).scope("notes"));

    let channel = Channel::from_shared(format!("http://{grpc_addr}"))?
        .connect()
        .await?;
    let channel = ServiceBuilder::new()
        .map_err(tower_alf::tonic::into_status)
        .layer(BearerAuthLayer::new(tokens.clone()))
        .service(channel);
    let mut grpc = GrpcClient::new(channel);

    for text in ["hello", "again", "and again"] {
        let summary = echo(&mut grpc, text).await?;
        println!(
            "unary Echo({text:?}) -> {:?}, sent with {:?}",
            summary.text, summary.authorization
        );
    }
    let notes = ["one ", "two ", "three"];
    let summary = count(&mut grpc, &notes).await?;
    println!(
        "client-streaming Count({notes:?}) -> {} notes, {:?}, sent with {:?}",
        summary.count, summary.text, summary.authorization
    );
    let stats = tokens.stats();
    println!(
        "\n4 calls, {} token request(s), {} replay(s)",
        stats.fetches, stats.replays
    );
    Ok(())
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

// ===== the in-process servers =====

/// `POST /token`: issues `tok-1`, `tok-2`, … for an hour.
async fn serve_tokens() -> std::io::Result<SocketAddr> {
    let issued = Arc::new(AtomicUsize::new(0));
    let app = Router::new().route(
        "/token",
        post(move || {
            let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                Json(serde_json::json!({
                    "access_token": format!("tok-{n}"),
                    "token_type": "Bearer",
                    "expires_in": 3600,
                }))
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// The `demo.Notes` gRPC service; calls without a bearer token get
/// `Unauthenticated`.
#[derive(Clone)]
struct Notes;

impl NamedService for Notes {
    const NAME: &'static str = "demo.Notes";
}

fn bearer<T>(request: &Request<T>) -> Result<String, Status> {
    request
        .metadata()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .filter(|value| value.starts_with("Bearer "))
        .map(str::to_owned)
        .ok_or_else(|| Status::unauthenticated("no bearer token"))
}

impl Service<http::Request<Body>> for Notes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        Box::pin(async move {
            let codec = ProstCodec::<Summary, Note>::default();
            let response = match request.uri().path() {
                ECHO => {
                    let method = tower::service_fn(|request: Request<Note>| async move {
                        let authorization = bearer(&request)?;
                        let text = request.into_inner().text;
                        Ok(Response::new(Summary {
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
                            let authorization = bearer(&request)?;
                            let mut notes = request.into_inner();
                            let (mut count, mut text) = (0, String::new());
                            while let Some(note) = notes.message().await? {
                                count += 1;
                                text.push_str(&note.text);
                            }
                            Ok(Response::new(Summary {
                                count,
                                text,
                                authorization,
                            }))
                        });
                    GrpcServer::new(codec)
                        .client_streaming(method, request)
                        .await
                }
                _ => Status::unimplemented("no such method").into_http(),
            };
            Ok(response)
        })
    }
}

async fn serve_notes() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(Notes)
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    Ok(addr)
}
