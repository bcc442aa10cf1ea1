//! Mutual TLS (RFC 8705) end to end over loopback sockets: a token endpoint
//! and a resource server served by tokio-rustls that require a client
//! certificate from a CA made by the test (rcgen). The token endpoint
//! binds its tokens to the connection's certificate (`cnf.x5t#S256`); the
//! resource server accepts a token only over a connection with that
//! certificate.

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

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    client::legacy::Client,
    rt::{TokioExecutor, TokioIo},
};
use sha2::{Digest, Sha256};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_rustls::TlsAcceptor;
use tower::{ServiceBuilder, ServiceExt};
use tower_alf::{
    discovery::ServerMetadata,
    grant::ClientCredentials,
    store::{MemoryStore, StoreGrant, StoredToken, TokenStore},
    BearerAuthLayer, ClientAuth, ClientCertificate, HttpClient, RetryPolicy, TokenEndpoint,
    TokenSource,
};

use pki::{chain, ClientPem, Pki};

// ===== a token endpoint and resource that require a client certificate =====

/// A token request's form, and the Authorization header it had.
type TokenRequestSeen = (HashMap<String, String>, Option<String>);

#[derive(Default)]
struct State {
    token_requests: AtomicUsize,
    /// The form of every token request, and the Authorization it had.
    forms: Mutex<Vec<TokenRequestSeen>>,
    /// Each issued token's `x5t#S256`.
    issued: Mutex<HashMap<String, String>>,
    /// When set, `cnf` names this thumbprint instead of the connection's.
    lie: Mutex<Option<String>>,
    /// Every resource request: the token's thumbprint matched the connection's.
    resource: Mutex<Vec<bool>>,
}

struct MtlsServer {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for MtlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn thumbprint(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(der))
}

impl MtlsServer {
    async fn start(pki: &Pki) -> Self {
        let acceptor = TlsAcceptor::from(Arc::new(pki.server_config(true)));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let state = Arc::new(State::default());
        let task = tokio::spawn({
            let state = Arc::clone(&state);
            async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let (acceptor, state) = (acceptor.clone(), Arc::clone(&state));
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let peer = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|certs| certs.first())
                            .map(|leaf| thumbprint(leaf))
                            .expect("the verifier requires a client certificate");
                        let service = service_fn(move |request| {
                            handle(Arc::clone(&state), peer.clone(), addr, request)
                        });
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
        pki::url(self.addr, path)
    }

    fn token_requests(&self) -> usize {
        self.state.token_requests.load(Ordering::SeqCst)
    }
}

async fn handle(
    state: Arc<State>,
    peer: String,
    addr: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let json = |status: StatusCode, body: String| {
        Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("response")
    };
    let response = match parts.uri.path() {
        "/token" => {
            let form: HashMap<String, String> =
                form_urlencoded::parse(&body).into_owned().collect();
            let authorization = parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            state
                .forms
                .lock()
                .expect("lock")
                .push((form, authorization));
            let n = state.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
            let access_token = format!("mtls-tok-{n}");
            let bound = state.lie.lock().expect("lock").clone().unwrap_or(peer);
            state
                .issued
                .lock()
                .expect("lock")
                .insert(access_token.clone(), bound.clone());
            json(
                StatusCode::OK,
                serde_json::json!({
                    "access_token": access_token,
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "cnf": {"x5t#S256": bound},
                })
                .to_string(),
            )
        }
        "/.well-known/oauth-authorization-server" => {
            let issuer = format!("https://127.0.0.1:{}", addr.port());
            json(
                StatusCode::OK,
                serde_json::json!({
                    "issuer": issuer,
                    "token_endpoint": format!("{issuer}/plain-token"),
                    "token_endpoint_auth_methods_supported": ["tls_client_auth"],
                    "tls_client_certificate_bound_access_tokens": true,
                    "mtls_endpoint_aliases": {"token_endpoint": format!("{issuer}/token")},
                })
                .to_string(),
            )
        }
        "/api" => {
            // RFC 8705 §3.2: the token's cnf against the connection.
            let token = parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_owned);
            let bound = token.and_then(|t| state.issued.lock().expect("lock").get(&t).cloned());
            let ok = bound.as_deref() == Some(peer.as_str());
            state.resource.lock().expect("lock").push(ok);
            if ok {
                json(StatusCode::OK, r#"{"hello":"mtls"}"#.into())
            } else {
                Response::builder()
                    .status(StatusCode::UNAUTHORIZED)
                    .header(
                        header::WWW_AUTHENTICATE,
                        r#"Bearer error="invalid_token", error_description="certificate mismatch""#,
                    )
                    .body(Full::default())
                    .expect("response")
            }
        }
        _ => json(
            StatusCode::BAD_REQUEST,
            r#"{"error":"invalid_request"}"#.into(),
        ),
    };
    Ok(response)
}

// ===== helpers =====

fn certificate(pem: &ClientPem) -> ClientCertificate {
    ClientCertificate::from_pem(&pem.chain_pem, &pem.key_pem).expect("a client certificate")
}

fn endpoint(server: &MtlsServer, pki: &Pki, auth: ClientAuth) -> TokenEndpoint {
    let certificate = auth.client_certificate().cloned().expect("mTLS auth");
    let client = HttpClient::builder()
        .root_certificates(pki.roots())
        .client_certificate(certificate)
        .no_proxy()
        .build()
        .expect("client");
    TokenEndpoint::builder(server.url("/token"))
        .client_auth(auth)
        .retry(RetryPolicy::none())
        .http_client(client)
        .build()
        .expect("endpoint")
}

// ===== tests =====

#[tokio::test]
async fn tls_client_auth_sends_the_certificate_and_the_client_id_only() {
    let pki = Pki::new();
    let server = MtlsServer::start(&pki).await;
    let pem = pki.client("mtls-client");
    let auth =
        ClientAuth::tls_client_auth("mtls-client", &pem.chain_pem, &pem.key_pem).expect("auth");
    assert_eq!(auth.method_name(), "tls_client_auth");
    let tokens = TokenSource::new(ClientCredentials::new(endpoint(&server, &pki, auth)));

    let token = tokens.token().await.expect("a token over mutual TLS");
    assert_eq!(token.access_token().secret(), "mtls-tok-1");
    assert_eq!(server.token_requests(), 1);
    let forms = server.state.forms.lock().expect("lock");
    let (form, authorization) = &forms[0];
    assert_eq!(
        form.get("client_id").map(String::as_str),
        Some("mtls-client")
    );
    assert_eq!(
        form.get("grant_type").map(String::as_str),
        Some("client_credentials")
    );
    assert!(!form.contains_key("client_secret"));
    assert_eq!(authorization, &None);
    // Bound to the certificate the connection presented.
    assert_eq!(
        token.certificate_thumbprint(),
        Some(thumbprint(&pem.der).as_str())
    );
}

#[tokio::test]
async fn an_mtls_endpoint_builds_its_default_client_itself() {
    let pki = Pki::new();
    let server = MtlsServer::start(&pki).await;
    let pem = pki.client("self-signed-client");
    let auth =
        ClientAuth::self_signed_tls_client_auth("c", &pem.chain_pem, &pem.key_pem).expect("auth");
    assert_eq!(auth.method_name(), "self_signed_tls_client_auth");
    // No http_client: the endpoint builds the default one, with the
    // certificate. It trusts the webpki roots only, so the test CA's
    // server is refused.
    let endpoint = TokenEndpoint::builder(server.url("/token"))
        .client_auth(auth.clone())
        .retry(RetryPolicy::none())
        .build()
        .expect("endpoint");
    let error = TokenSource::new(ClientCredentials::new(endpoint))
        .token()
        .await
        .expect_err("the server's CA is not trusted by default");
    assert!(chain(&error).contains("certificate"), "{}", chain(&error));

    assert!(error.is_transport(), "{error:?}");
    assert_eq!(server.token_requests(), 0);
}

#[tokio::test]
async fn without_a_client_certificate_the_handshake_fails_and_nothing_is_sent() {
    let pki = Pki::new();
    let server = MtlsServer::start(&pki).await;
    let endpoint = TokenEndpoint::builder(server.url("/token"))
        .client_auth(ClientAuth::basic("no-cert", "basic-secret-3"))
        .retry(RetryPolicy::none())
        .http_client(HttpClient::with_root_certificates(pki.roots()))
        .build()
        .expect("endpoint");
    let error = TokenSource::new(ClientCredentials::new(endpoint))
        .token()
        .await
        .expect_err("the server requires a certificate");
    assert!(error.is_transport(), "{error:?}");
    assert!(!chain(&error).contains("basic-secret-3"));
    assert_eq!(server.token_requests(), 0);
}

#[tokio::test]
async fn an_mtls_endpoint_refuses_a_client_that_does_not_present_its_certificate() {
    let pki = Pki::new();
    let pem = pki.client("c");
    let auth = ClientAuth::tls_client_auth("c", &pem.chain_pem, &pem.key_pem).expect("auth");
    let plain = HttpClient::with_root_certificates(pki.roots());
    let error = TokenEndpoint::builder("https://127.0.0.1:1/token")
        .client_auth(auth.clone())
        .http_client(plain.clone())
        .build()
        .expect_err("the client does not present the certificate");
    assert!(error.is_config());
    assert!(error.to_string().contains("tls_client_auth"), "{error}");
    // Another certificate is no better.
    let other = certificate(&pki.client("other"));
    let error = TokenEndpoint::builder("https://127.0.0.1:1/token")
        .client_auth(auth.clone())
        .http_client(plain.clone().presenting(other))
        .build()
        .expect_err("another certificate");
    assert!(error.is_config());
    // A client built elsewhere that declares the certificate is accepted.
    let declared = plain.presenting(auth.client_certificate().cloned().expect("certificate"));
    TokenEndpoint::builder("https://127.0.0.1:1/token")
        .client_auth(auth)
        .http_client(declared)
        .build()
        .expect("declared");
}

#[tokio::test]
async fn the_resource_server_sees_the_same_certificate_as_the_token_endpoint() {
    let pki = Pki::new();
    let server = MtlsServer::start(&pki).await;
    let pem = pki.client("resource-client");
    let certificate = certificate(&pem);
    let auth = ClientAuth::tls_client_auth_with("resource-client", certificate.clone());
    let tokens = TokenSource::new(ClientCredentials::new(endpoint(&server, &pki, auth)));

    // The documented recipe: hyper-util over hyper-rustls with the
    // certificate's TLS configuration.
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(certificate.tls_config(pki.roots()).expect("config"))
        .https_only()
        .enable_http1()
        .build();
    let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(connector);
    let service = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(tokens.clone()))
        .service(client);
    let response = service
        .clone()
        .oneshot(
            Request::get(server.url("/api"))
                .body(Full::default())
                .expect("request"),
        )
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);

    // Over a connection with another certificate, the token is refused.
    let other = certificate_of(&pki, "intruder");
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(other.tls_config(pki.roots()).expect("config"))
        .https_only()
        .enable_http1()
        .build();
    let stolen = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(tokens.clone()))
        .service(Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(connector));
    let response = stolen
        .oneshot(
            Request::get(server.url("/api"))
                .body(Full::default())
                .expect("request"),
        )
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // The replay after the 401 went over the intruder's connection too.
    let seen = server.state.resource.lock().expect("lock").clone();
    assert!(seen[0]);
    assert!(
        seen.len() >= 2 && seen[1..].iter().all(|ok| !ok),
        "{seen:?}"
    );
}

fn certificate_of(pki: &Pki, name: &str) -> ClientCertificate {
    certificate(&pki.client(name))
}

#[tokio::test]
async fn a_token_bound_to_another_certificate_is_refused() {
    let pki = Pki::new();
    let server = MtlsServer::start(&pki).await;
    *server.state.lie.lock().expect("lock") = Some("bm90LW91ci1jZXJ0aWZpY2F0ZQ".into());
    let pem = pki.client("c");
    let auth = ClientAuth::tls_client_auth("c", &pem.chain_pem, &pem.key_pem).expect("auth");
    let error = TokenSource::new(ClientCredentials::new(endpoint(&server, &pki, auth)))
        .token()
        .await
        .expect_err("cnf names another certificate");
    assert!(error.is_invalid_response(), "{error:?}");
    assert!(error.to_string().contains("another certificate"), "{error}");
    assert!(!error.to_string().contains("mtls-tok-1"), "{error}");
}

#[tokio::test]
async fn keys_in_pkcs8_sec1_and_pkcs1_are_read() {
    let pki = Pki::new();
    let fixture = |name: &str| {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("fixture")
    };
    for (signing, key) in [
        ("p256_pkcs8.pem", "p256_sec1.pem"),
        ("p256_pkcs8.pem", "p256_pkcs8.pem"),
        ("rsa_pkcs8.pem", "rsa_pkcs1.pem"),
    ] {
        let pair = rcgen::KeyPair::from_pem(&fixture(signing)).expect("rcgen key");
        let pem = pki.client_with("fixture", &pair);
        let certificate = ClientCertificate::from_pem(&pem.chain_pem, fixture(key))
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(certificate.thumbprint(), thumbprint(&pem.der));
    }
}

#[tokio::test]
async fn unreadable_pem_and_a_key_of_another_certificate_are_config_errors() {
    let pki = Pki::new();
    let a = pki.client("a");
    let b = pki.client("b");
    let key_text = a.key_pem.lines().nth(1).expect("a key line").to_owned();
    for (chain_pem, key_pem, says) in [
        ("", a.key_pem.as_str(), "no CERTIFICATE"),
        ("not pem at all", a.key_pem.as_str(), "no CERTIFICATE"),
        (
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
            a.key_pem.as_str(),
            "not readable PEM",
        ),
        (a.chain_pem.as_str(), "", "not a readable PEM private key"),
        (
            a.chain_pem.as_str(),
            a.chain_pem.as_str(),
            "not a readable PEM private key",
        ),
        (a.chain_pem.as_str(), b.key_pem.as_str(), "does not match"),
    ] {
        let error = ClientAuth::tls_client_auth("c", chain_pem, key_pem).expect_err(says);
        assert!(error.is_config(), "{says}: {error:?}");
        let text = format!("{error} {error:?}");
        assert!(text.contains(says), "{says}: {text}");
        assert!(!text.contains(&key_text), "{text}");
    }
    let junk = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let error = ClientCertificate::from_pem(junk, &a.key_pem).expect_err("not X.509");
    assert!(error.is_config(), "{error:?}");
}

#[tokio::test]
async fn a_stored_certificate_bound_token_comes_back_only_with_its_certificate() {
    let pki = Pki::new();
    let server = MtlsServer::start(&pki).await;
    let pem = pki.client("stored");
    let certificate = certificate(&pem);
    let auth = ClientAuth::tls_client_auth_with("stored", certificate.clone());
    let grant = ClientCredentials::new(endpoint(&server, &pki, auth));
    let key = grant.cache_key().namespace("mtls").build();
    // The certificate is part of the key: another one names other tokens.
    let other_auth = ClientAuth::tls_client_auth_with("stored", certificate_of(&pki, "x"));
    let other_key = ClientCredentials::new(endpoint(&server, &pki, other_auth))
        .cache_key()
        .namespace("mtls")
        .build();
    assert_ne!(key, other_key);
    let store = MemoryStore::new();

    // Instance 1 fetches and stores a bound token.
    let first = TokenSource::new(
        StoreGrant::new(grant.clone(), store.clone(), key.clone())
            .client_certificate(certificate.clone()),
    );
    let token = first.token().await.expect("a token");
    assert_eq!(server.token_requests(), 1);
    let stored = store.get(&key).await.expect("store").expect("stored");
    let stored = StoredToken::from_bytes(&stored.to_bytes()).expect("the byte form");
    assert_eq!(
        stored.certificate_thumbprint(),
        Some(certificate.thumbprint())
    );
    let error = stored.to_token().expect_err("needs its certificate");
    assert!(error.to_string().contains("certificate"), "{error}");

    // Instance 2 with the same certificate takes it, bound again.
    let second = TokenSource::new(
        StoreGrant::new(grant.clone(), store.clone(), key.clone())
            .client_certificate(certificate.clone()),
    );
    let again = second.token().await.expect("the stored token");
    assert_eq!(again.access_token(), token.access_token());
    assert_eq!(
        again.certificate_thumbprint(),
        Some(certificate.thumbprint())
    );
    assert_eq!(server.token_requests(), 1);

    // Instance 3 without the certificate, and instance 4 with another, do
    // not use it: each fetches its own.
    let third = TokenSource::new(StoreGrant::new(grant.clone(), store.clone(), key.clone()));
    let own = third.token().await.expect("its own token");
    assert_ne!(own.access_token(), token.access_token());
    assert_eq!(server.token_requests(), 2);
    let other = certificate_of(&pki, "other");
    let fourth = TokenSource::new(
        StoreGrant::new(grant, store.clone(), key.clone()).client_certificate(other),
    );
    let own = fourth.token().await.expect("its own token");
    assert_ne!(own.access_token(), token.access_token());
    assert_eq!(server.token_requests(), 3);
}

#[tokio::test]
async fn discovery_picks_tls_client_auth_and_its_mtls_alias() {
    let pki = Pki::new();
    let server = MtlsServer::start(&pki).await;
    let pem = pki.client("discovered");
    let certificate = certificate(&pem);
    let client = HttpClient::builder()
        .root_certificates(pki.roots())
        .client_certificate(certificate.clone())
        .no_proxy()
        .build()
        .expect("client");
    let issuer = format!("https://127.0.0.1:{}", server.addr.port());
    let metadata = ServerMetadata::discover(&issuer, &client)
        .await
        .expect("metadata");
    assert!(metadata.tls_client_certificate_bound_access_tokens());
    let auth = metadata
        .choose_client_auth([
            ClientAuth::basic("discovered", "s"),
            ClientAuth::tls_client_auth_with("discovered", certificate),
        ])
        .expect("tls_client_auth is supported");
    assert_eq!(auth.method_name(), "tls_client_auth");
    assert_eq!(metadata.token_endpoint_for(&auth), server.url("/token"));
    let endpoint = metadata
        .token_endpoint_builder_for(auth)
        .retry(RetryPolicy::none())
        .http_client(client)
        .build()
        .expect("endpoint");
    TokenSource::new(ClientCredentials::new(endpoint))
        .token()
        .await
        .expect("a token from the alias");
    assert_eq!(server.token_requests(), 1);
}
