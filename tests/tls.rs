//! HTTPS end to end: a token endpoint and a protected resource served over
//! TLS on a loopback socket, with a certificate from a CA made by the test
//! (rcgen), served by tokio-rustls and hyper (ring provider throughout).

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
    RootCertStore,
};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_rustls::TlsAcceptor;
use tower::{ServiceBuilder, ServiceExt};
use tower_alf::{
    grant::ClientCredentials, BearerAuthLayer, ClientAuth, HttpClient, TokenEndpoint, TokenSource,
};

// ===== a CA and a server certificate =====

struct Pki {
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// A fresh CA, and a certificate it signed for `localhost` and `127.0.0.1`.
fn pki() -> Pki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tower-alf test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &issuer).expect("server certificate");
    Pki {
        ca: ca_cert.der().clone(),
        chain: vec![cert.der().clone(), ca_cert.der().clone()],
        key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
    }
}

impl Pki {
    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).expect("a valid CA certificate");
        roots
    }
}

// ===== an HTTPS token endpoint and resource =====

#[derive(Default)]
struct State {
    handshakes: AtomicUsize,
    failed_handshakes: AtomicUsize,
    token_requests: AtomicUsize,
    resource_tokens: Mutex<Vec<Option<String>>>,
}

/// `POST /token` issues `tls-tok-<n>`; `/api` answers 200 to a bearer
/// token, 401 without one. HTTP/1.1 over TLS 1.2 or 1.3.
struct HttpsServer {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpsServer {
    async fn start(pki: &Pki) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(pki.chain.clone(), pki.key.clone_key())
            .expect("server certificate and key");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(State::default());
        let task = tokio::spawn({
            let state = Arc::clone(&state);
            async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let (acceptor, state) = (acceptor.clone(), Arc::clone(&state));
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            state.failed_handshakes.fetch_add(1, Ordering::SeqCst);
                            return;
                        };
                        state.handshakes.fetch_add(1, Ordering::SeqCst);
                        let service =
                            service_fn(move |request| handle(Arc::clone(&state), request));
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    });
                }
            }
        });
        Self { addr, state, task }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }
}

async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let _ = body.collect().await;
    let response = match parts.uri.path() {
        "/token" => {
            let n = state.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
            let body = format!(
                r#"{{"access_token":"tls-tok-{n}","token_type":"Bearer","expires_in":3600}}"#
            );
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)))
        }
        "/api" => {
            let token = parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.strip_prefix("Bearer "))
                .map(str::to_owned);
            state
                .resource_tokens
                .lock()
                .expect("lock")
                .push(token.clone());
            let status = match token {
                Some(_) => StatusCode::OK,
                None => StatusCode::UNAUTHORIZED,
            };
            Response::builder()
                .status(status)
                .body(Full::new(Bytes::from_static(b"hello over TLS")))
        }
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::default()),
    };
    Ok(response.expect("a valid response"))
}

fn tls_config(roots: RootCertStore) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// The error and every source below it, as one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(error) = source {
        text.push_str(": ");
        text.push_str(&error.to_string());
        source = error.source();
    }
    text
}

// ===== tests =====

#[tokio::test]
async fn the_default_client_refuses_a_server_whose_ca_it_does_not_trust() {
    let pki = pki();
    let server = HttpsServer::start(&pki).await;
    let endpoint = TokenEndpoint::builder(server.url("/token"))
        .client_auth(ClientAuth::basic("tls-client", "tls-secret"))
        .retry(tower_alf::RetryPolicy::none())
        .build()
        .expect("an https endpoint");
    let tokens = TokenSource::new(ClientCredentials::new(endpoint));

    let error = tokens
        .token()
        .await
        .expect_err("the certificate is refused");
    assert!(error.is_transport(), "{error:?}");
    let text = chain(&error);
    assert!(text.contains("certificate"), "{text}");
    assert!(!text.contains("tls-secret"), "{text}");
    assert_eq!(server.state.token_requests.load(Ordering::SeqCst), 0);
    assert_eq!(server.state.handshakes.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_trusted_ca_fetches_the_token_and_calls_the_resource_over_https() {
    let pki = pki();
    let server = HttpsServer::start(&pki).await;
    let endpoint = TokenEndpoint::builder(server.url("/token"))
        .client_auth(ClientAuth::basic("tls-client", "tls-secret"))
        .http_client(HttpClient::with_root_certificates(pki.roots()))
        .build()
        .expect("an https endpoint");
    let tokens = TokenSource::new(ClientCredentials::new(endpoint));

    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(pki.roots()))
        .https_only()
        .enable_http1()
        .build();
    let api = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(tokens.clone()))
        .service(Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(https));

    for _ in 0..3 {
        let request = Request::get(server.url("/api"))
            .body(Full::default())
            .expect("request");
        let response = api.clone().oneshot(request).await.expect("a response");
        assert_eq!(response.status(), StatusCode::OK);
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(body, "hello over TLS");
    }
    assert_eq!(tokens.stats().fetches, 1);
    assert_eq!(server.state.token_requests.load(Ordering::SeqCst), 1);
    assert_eq!(
        *server.state.resource_tokens.lock().expect("lock"),
        vec![Some("tls-tok-1".to_owned()); 3]
    );
    assert_eq!(server.state.failed_handshakes.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn with_tls_config_uses_the_given_configuration() {
    let pki = pki();
    let server = HttpsServer::start(&pki).await;
    let trusting = TokenEndpoint::builder(server.url("/token"))
        .client_auth(ClientAuth::basic("tls-client", "tls-secret"))
        .http_client(HttpClient::with_tls_config(tls_config(pki.roots())))
        .build()
        .expect("an https endpoint");
    let token = TokenSource::new(ClientCredentials::new(trusting))
        .token()
        .await
        .expect("a token over https");
    assert_eq!(token.access_token().secret(), "tls-tok-1");

    // An empty root store trusts nobody.
    let distrusting = TokenEndpoint::builder(server.url("/token"))
        .client_auth(ClientAuth::basic("tls-client", "tls-secret"))
        .http_client(HttpClient::with_tls_config(tls_config(
            RootCertStore::empty(),
        )))
        .retry(tower_alf::RetryPolicy::none())
        .build()
        .expect("an https endpoint");
    let error = TokenSource::new(ClientCredentials::new(distrusting))
        .token()
        .await
        .expect_err("no root trusts the server");
    assert!(error.is_transport(), "{error:?}");
    assert_eq!(server.state.token_requests.load(Ordering::SeqCst), 1);
}

#[test]
fn plain_http_token_endpoints_are_refused_except_loopback() {
    for url in [
        "http://idp.example/token",
        "http://10.0.0.1/token",
        "http://localhost.example.com/token",
    ] {
        let error = TokenEndpoint::builder(url)
            .client_auth(ClientAuth::basic("tls-client", "tls-secret"))
            .build()
            .expect_err(url);
        assert!(error.is_config(), "{url}: {error:?}");
        assert!(error.to_string().contains("https"), "{url}: {error}");
    }
    for url in [
        "http://127.0.0.1:8080/token",
        "http://localhost:8080/token",
        "http://[::1]:8080/token",
        "https://idp.example/token",
    ] {
        let built = TokenEndpoint::builder(url)
            .client_auth(ClientAuth::basic("tls-client", "tls-secret"))
            .build();
        assert!(built.is_ok(), "{url}: {built:?}");
    }
    // The explicit opt-out.
    assert!(TokenEndpoint::builder("http://idp.example/token")
        .client_auth(ClientAuth::basic("tls-client", "tls-secret"))
        .allow_insecure_http(true)
        .build()
        .is_ok());
}

/// reqwest on rustls with the ring provider (no aws-lc-rs): one client,
/// trusting the test CA, carries the token request (`from_reqwest`) and
/// the API call (`BearerAuthMiddleware`) over one pooled connection.
#[cfg(feature = "reqwest")]
#[tokio::test]
async fn reqwest_on_ring_carries_the_token_request_and_the_api_call_over_https() {
    let pki = pki();
    let server = HttpsServer::start(&pki).await;
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.clone()).expect("the CA");
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config(roots))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a reqwest client");
    let endpoint = TokenEndpoint::builder(server.url("/token"))
        .client_auth(ClientAuth::basic("client", "secret"))
        .http_client(HttpClient::from_reqwest(http.clone()))
        .build()
        .expect("an https endpoint");
    let tokens = TokenSource::new(ClientCredentials::new(endpoint));
    let client = reqwest_middleware::ClientBuilder::new(http)
        .with(tower_alf::reqwest::BearerAuthMiddleware::new(
            tokens.clone(),
        ))
        .build();

    let response = client
        .get(server.url("/api"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "hello over TLS");
    let state = &server.state;
    assert_eq!(
        *state.resource_tokens.lock().unwrap(),
        [Some("tls-tok-1".to_owned())]
    );
    assert_eq!(state.token_requests.load(Ordering::SeqCst), 1);
    assert_eq!(
        state.handshakes.load(Ordering::SeqCst),
        1,
        "the token answer was read whole, so its connection served the API call"
    );
}
