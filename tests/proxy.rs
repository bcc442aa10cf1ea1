//! The default client behind an HTTP proxy, over real loopback sockets: an
//! in-process proxy that tunnels `CONNECT` (and counts its tunnels), asks
//! for credentials, refuses, or answers garbage, in front of an HTTPS token
//! endpoint with a certificate from a test CA. The proxy variables come
//! from a lookup given to the builder, never the process environment.

#[path = "support/pki.rs"]
mod pki;

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use bytes::Bytes;
use http::{header, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};
use tokio_rustls::TlsAcceptor;
use tower_alf::{
    grant::ClientCredentials, ClientAuth, HttpClient, HttpClientBuilder, Proxy, ProxyError,
    RetryPolicy, TokenEndpoint, TokenSource,
};

use pki::{chain, Pki};

// ===== an HTTPS token endpoint =====

struct Endpoint {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Endpoint {
    async fn start(pki: &Pki) -> Self {
        let acceptor = TlsAcceptor::from(Arc::new(pki.server_config(false)));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let requests = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let requests = Arc::clone(&requests);
            async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let (acceptor, requests) = (acceptor.clone(), Arc::clone(&requests));
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let service = service_fn(move |request: Request<Incoming>| {
                            let requests = Arc::clone(&requests);
                            async move {
                                let _ = request.into_body().collect().await;
                                let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
                                let body = format!(
                                    r#"{{"access_token":"proxied-{n}","token_type":"Bearer","expires_in":3600}}"#
                                );
                                Ok::<_, Infallible>(
                                    Response::builder()
                                        .header(header::CONTENT_TYPE, "application/json")
                                        .body(Full::new(Bytes::from(body)))
                                        .expect("response"),
                                )
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    });
                }
            }
        });
        Self {
            addr,
            requests,
            task,
        }
    }

    fn url(&self) -> String {
        pki::url(self.addr, "/token")
    }
}

// ===== an HTTP proxy =====

#[derive(Clone, Copy)]
enum Mode {
    /// Tunnels `CONNECT`, when the credentials (if asked for) match.
    Tunnel,
    /// Answers every `CONNECT` with this status line.
    Refuse(&'static str),
    /// Answers with something that is not HTTP.
    Garbage,
    /// Closes the connection at once.
    Hangup,
    /// Answers a plain-http request in absolute form itself, with a token.
    Forward,
}

struct ProxyServer {
    addr: SocketAddr,
    tunnels: Arc<AtomicUsize>,
    /// Every request head the proxy read.
    heads: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for ProxyServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ProxyServer {
    /// With `credentials`, `Proxy-Authorization: Basic` of them is required.
    async fn start(mode: Mode, credentials: Option<&str>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let tunnels = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let expected = credentials.map(|c| format!("Basic {}", STANDARD.encode(c)));
        let task = tokio::spawn({
            let (tunnels, heads) = (Arc::clone(&tunnels), Arc::clone(&heads));
            async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let (tunnels, heads, expected) =
                        (Arc::clone(&tunnels), Arc::clone(&heads), expected.clone());
                    tokio::spawn(serve(tcp, mode, expected, tunnels, heads));
                }
            }
        });
        Self {
            addr,
            tunnels,
            heads,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    fn tunnels(&self) -> usize {
        self.tunnels.load(Ordering::SeqCst)
    }
}

async fn read_head(tcp: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).ok()
}

async fn serve(
    mut tcp: TcpStream,
    mode: Mode,
    expected: Option<String>,
    tunnels: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
) {
    if let Mode::Hangup = mode {
        return;
    }
    let Some(head) = read_head(&mut tcp).await else {
        return;
    };
    heads.lock().expect("lock").push(head.clone());
    let fields: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    let authorized = expected.is_none() || fields.get("proxy-authorization").cloned() == expected;
    let request_line = head.lines().next().unwrap_or_default().to_owned();
    match mode {
        Mode::Garbage => {
            let _ = tcp.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
        }
        Mode::Refuse(status) => {
            let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
            let _ = tcp.write_all(answer.as_bytes()).await;
        }
        _ if !authorized => {
            let _ = tcp
                .write_all(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                      Proxy-Authenticate: Basic realm=\"corp\"\r\nContent-Length: 0\r\n\r\n",
                )
                .await;
        }
        Mode::Tunnel => {
            let Some(target) = request_line
                .strip_prefix("CONNECT ")
                .and_then(|rest| rest.split(' ').next())
            else {
                let _ = tcp
                    .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                    .await;
                return;
            };
            let Ok(mut upstream) = TcpStream::connect(target).await else {
                let _ = tcp.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                return;
            };
            tunnels.fetch_add(1, Ordering::SeqCst);
            let _ = tcp
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await;
            let _ = tokio::io::copy_bidirectional(&mut tcp, &mut upstream).await;
        }
        Mode::Forward => {
            let length: usize = fields
                .get("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; length];
            let _ = tcp.read_exact(&mut body).await;
            let json = r#"{"access_token":"forwarded","token_type":"Bearer","expires_in":3600}"#;
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
                json.len()
            );
            let _ = tcp.write_all(answer.as_bytes()).await;
        }
        Mode::Hangup => {}
    }
}

// ===== helpers =====

fn env(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
    let pairs: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    move |name| pairs.get(name).cloned()
}

fn source(url: String, client: HttpClient) -> TokenSource {
    let endpoint = TokenEndpoint::builder(url)
        .client_auth(ClientAuth::basic("proxied-client", "client-secret-1"))
        .retry(RetryPolicy::none())
        .http_client(client)
        .build()
        .expect("endpoint");
    TokenSource::new(ClientCredentials::new(endpoint))
}

fn trusting(pki: &Pki) -> HttpClientBuilder {
    HttpClient::builder().root_certificates(pki.roots())
}

fn proxy_error(error: &tower_alf::Error) -> &ProxyError {
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(found) = e.downcast_ref::<ProxyError>() {
            return found;
        }
        source = e.source();
    }
    panic!("no ProxyError in {}", chain(error));
}

// ===== tests =====

#[tokio::test]
async fn https_proxy_from_the_environment_carries_token_requests_in_one_tunnel() {
    let pki = Pki::new();
    let endpoint = Endpoint::start(&pki).await;
    let proxy = ProxyServer::start(Mode::Tunnel, None).await;
    let client = trusting(&pki)
        .proxy_env(env(&[("HTTPS_PROXY", proxy.url())]))
        .build()
        .expect("client");

    let tokens = source(endpoint.url(), client);
    let first = tokens.token().await.expect("a token through the proxy");
    assert_eq!(first.access_token().secret(), "proxied-1");
    let second = tokens.invalidate(first.id()).await.expect("a second token");
    assert_eq!(second.access_token().secret(), "proxied-2");

    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 2);
    // One tunnel: the pooled TLS connection inside it serves both.
    assert_eq!(proxy.tunnels(), 1);
    let heads = proxy.heads.lock().expect("lock");
    let target = format!("127.0.0.1:{}", endpoint.addr.port());
    assert!(
        heads[0].starts_with(&format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n")),
        "{}",
        heads[0]
    );
    // The token request's credentials are inside TLS, not in the CONNECT.
    assert!(!heads[0].contains("client-secret-1"));
}

#[tokio::test]
async fn lower_case_https_proxy_is_honoured() {
    let pki = Pki::new();
    let endpoint = Endpoint::start(&pki).await;
    let proxy = ProxyServer::start(Mode::Tunnel, None).await;
    let client = trusting(&pki)
        .proxy_env(env(&[("https_proxy", proxy.url())]))
        .build()
        .expect("client");
    source(endpoint.url(), client)
        .token()
        .await
        .expect("a token");
    assert_eq!(proxy.tunnels(), 1);
}

#[tokio::test]
async fn no_proxy_bypasses_the_proxy() {
    let pki = Pki::new();
    let endpoint = Endpoint::start(&pki).await;
    let proxy = ProxyServer::start(Mode::Tunnel, None).await;
    for no_proxy in ["127.0.0.1", "127.0.0.0/8", "*", "example.com, 127.0.0.1"] {
        let client = trusting(&pki)
            .proxy_env(env(&[
                ("HTTPS_PROXY", proxy.url()),
                ("NO_PROXY", no_proxy.to_owned()),
            ]))
            .build()
            .expect("client");
        source(endpoint.url(), client)
            .token()
            .await
            .unwrap_or_else(|e| panic!("NO_PROXY={no_proxy}: {e}"));
    }
    assert_eq!(proxy.tunnels(), 0);
    assert!(proxy.heads.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn an_explicit_proxy_wins_over_the_environment_and_sends_its_credentials() {
    let pki = Pki::new();
    let endpoint = Endpoint::start(&pki).await;
    let proxy = ProxyServer::start(Mode::Tunnel, Some("alice:proxy-pass-9")).await;
    let wrong = ProxyServer::start(Mode::Tunnel, None).await;
    let client = trusting(&pki)
        .proxy_env(env(&[("HTTPS_PROXY", wrong.url())]))
        .proxy(
            Proxy::new(&proxy.url())
                .expect("proxy")
                .basic_auth("alice", "proxy-pass-9"),
        )
        .build()
        .expect("client");
    assert!(!format!("{client:?}").contains("proxy-pass-9"));
    source(endpoint.url(), client)
        .token()
        .await
        .expect("a token");
    assert_eq!((proxy.tunnels(), wrong.tunnels()), (1, 0));
}

#[tokio::test]
async fn credentials_in_the_proxy_url_are_decoded_and_sent() {
    let pki = Pki::new();
    let endpoint = Endpoint::start(&pki).await;
    let proxy = ProxyServer::start(Mode::Tunnel, Some("bob@corp:p@ss:w0rd")).await;
    let url = format!(
        "http://bob%40corp:p%40ss%3Aw0rd@127.0.0.1:{}",
        proxy.addr.port()
    );
    let client = trusting(&pki)
        .proxy_env(env(&[("HTTPS_PROXY", url)]))
        .build()
        .expect("client");
    source(endpoint.url(), client)
        .token()
        .await
        .expect("a token");
    assert_eq!(proxy.tunnels(), 1);
}

#[tokio::test]
async fn a_proxy_that_wants_credentials_is_a_typed_error_without_secrets() {
    let pki = Pki::new();
    let endpoint = Endpoint::start(&pki).await;
    let proxy = ProxyServer::start(Mode::Tunnel, Some("alice:right")).await;
    for proxy_url in [
        proxy.url(),
        format!("http://alice:wrong-pass-7@127.0.0.1:{}", proxy.addr.port()),
    ] {
        let client = trusting(&pki)
            .proxy(Proxy::new(&proxy_url).expect("proxy"))
            .build()
            .expect("client");
        let error = source(endpoint.url(), client)
            .token()
            .await
            .expect_err("refused");
        assert!(error.is_transport(), "{error:?}");
        assert_eq!(
            proxy_error(&error).status(),
            Some(http::StatusCode::PROXY_AUTHENTICATION_REQUIRED)
        );
        let text = format!("{} {error:?}", chain(&error));
        assert!(text.contains("407"), "{text}");
        assert!(!text.contains("wrong-pass-7"), "{text}");
        assert!(!text.contains("client-secret-1"), "{text}");
    }
    assert_eq!(proxy.tunnels(), 0);
    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_proxy_that_refuses_the_destination_is_a_typed_error() {
    let pki = Pki::new();
    let endpoint = Endpoint::start(&pki).await;
    let proxy = ProxyServer::start(Mode::Refuse("403 Forbidden"), None).await;
    let client = trusting(&pki)
        .proxy_env(env(&[("HTTPS_PROXY", proxy.url())]))
        .build()
        .expect("client");
    let error = source(endpoint.url(), client)
        .token()
        .await
        .expect_err("refused");
    assert!(error.is_transport());
    assert_eq!(
        proxy_error(&error).status(),
        Some(http::StatusCode::FORBIDDEN)
    );
    let text = chain(&error);
    assert!(
        text.contains("refused the tunnel") && text.contains("403"),
        "{text}"
    );
}

#[tokio::test]
async fn a_proxy_that_answers_garbage_or_hangs_up_is_a_typed_error() {
    let pki = Pki::new();
    let endpoint = Endpoint::start(&pki).await;
    for (mode, says) in [
        (Mode::Garbage, "not HTTP"),
        (Mode::Hangup, "closed the connection"),
    ] {
        let proxy = ProxyServer::start(mode, None).await;
        let client = trusting(&pki)
            .proxy_env(env(&[("HTTPS_PROXY", proxy.url())]))
            .build()
            .expect("client");
        let error = source(endpoint.url(), client)
            .token()
            .await
            .expect_err("no tunnel");
        assert!(error.is_transport(), "{error:?}");
        assert_eq!(proxy_error(&error).status(), None);
        let text = chain(&error);
        assert!(text.contains(says), "{text}");
    }
    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn plain_http_goes_to_the_proxy_in_absolute_form_with_its_credentials() {
    let proxy = ProxyServer::start(Mode::Forward, Some("carol:fwd-pass")).await;
    let client = HttpClient::builder()
        .proxy_env(env(&[(
            "HTTP_PROXY",
            format!("http://carol:fwd-pass@127.0.0.1:{}", proxy.addr.port()),
        )]))
        .build()
        .expect("client");
    // Nothing listens here: only the proxy answers.
    let token = source("http://127.0.0.1:9/token".to_owned(), client)
        .token()
        .await
        .expect("a token from the proxy");
    assert_eq!(token.access_token().secret(), "forwarded");
    let heads = proxy.heads.lock().expect("lock");
    assert!(
        heads[0].starts_with("POST http://127.0.0.1:9/token HTTP/1.1\r\n"),
        "{}",
        heads[0]
    );
    assert!(heads[0].contains(&format!(
        "proxy-authorization: Basic {}",
        STANDARD.encode("carol:fwd-pass")
    )));
}

#[tokio::test]
async fn a_bad_proxy_variable_fails_the_build_and_the_default_client_by_name() {
    let bad = env(&[(
        "HTTPS_PROXY",
        "socks5://u:sock-pass@127.0.0.1:1080".to_owned(),
    )]);
    let error = HttpClient::builder()
        .proxy_env(bad)
        .build()
        .expect_err("refused");
    assert!(error.is_config());
    let text = error.to_string();
    assert!(text.contains("HTTPS_PROXY"), "{text}");
    assert!(!text.contains("sock-pass"), "{text}");
}

#[tokio::test]
async fn no_proxy_on_the_builder_ignores_the_environment() {
    let pki = Pki::new();
    let endpoint = Endpoint::start(&pki).await;
    let proxy = ProxyServer::start(Mode::Tunnel, None).await;
    let client = trusting(&pki)
        .proxy_env(env(&[("HTTPS_PROXY", proxy.url())]))
        .no_proxy()
        .build()
        .expect("client");
    source(endpoint.url(), client)
        .token()
        .await
        .expect("a token");
    assert_eq!(proxy.tunnels(), 0);
}
