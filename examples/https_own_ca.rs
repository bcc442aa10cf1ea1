//! hyper-util over HTTPS with your own CA: a CA is made on the spot
//! (rcgen), an authorization server and an API are served with it over TLS
//! on loopback (tokio-rustls), and a hyper-util client behind
//! `BearerAuthLayer` calls the API, trusting that CA for both the token
//! endpoint and the API. The default client, which trusts only the webpki
//! roots, is refused.
//!
//! ```text
//! cargo run --example https_own_ca
//! ```
//!
//! `examples/hyper_client.rs` is the same client against real servers.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
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
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::{
    pki_types::{CertificateDer, PrivatePkcs8KeyDer},
    RootCertStore,
};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_alf::{
    grant::ClientCredentials, BearerAuthLayer, ClientAuth, HttpClient, RetryPolicy, TokenEndpoint,
    TokenSource,
};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let (ca, server_config) = make_pki()?;
    let issued = Arc::new(AtomicUsize::new(0));
    let addr = serve_https(server_config, Arc::clone(&issued)).await?;
    println!(
        "authorization server and API on https://{addr}, certificate from a CA made just now\n"
    );

    // The default client trusts the webpki roots only: refused.
    let endpoint = TokenEndpoint::builder(format!("https://{addr}/token"))
        .client_auth(ClientAuth::basic("demo-client", "demo-secret"))
        .retry(RetryPolicy::none())
        .build()?;
    match TokenSource::new(ClientCredentials::new(endpoint))
        .token()
        .await
    {
        Ok(_) => println!("default client: accepted (unexpected)"),
        Err(e) => println!(
            "default client:      refused ({e}; transport error: {})",
            e.is_transport()
        ),
    }

    // Trust our CA, for the token endpoint and for the API.
    let mut roots = RootCertStore::empty();
    roots.add(ca)?;
    let endpoint = TokenEndpoint::builder(format!("https://{addr}/token"))
        .client_auth(ClientAuth::basic("demo-client", "demo-secret"))
        .http_client(HttpClient::with_root_certificates(roots.clone()))
        .build()?;
    let tokens = TokenSource::new(ClientCredentials::new(endpoint));
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let api = ServiceBuilder::new()
        .layer(BearerAuthLayer::new(tokens.clone()))
        .service(Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(https));

    for n in 1..=3 {
        let request = Request::get(format!("https://{addr}/api")).body(Full::default())?;
        let response = api.clone().oneshot(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        println!(
            "trusting our CA, #{n}: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
    println!(
        "\n3 calls over TLS, {} token request(s) over TLS",
        issued.load(Ordering::SeqCst)
    );
    Ok(())
}

/// A CA, and a server configuration with a certificate it signed for
/// `localhost` and `127.0.0.1`.
fn make_pki() -> Result<(CertificateDer<'static>, rustls::ServerConfig), BoxError> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tower-alf example CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate()?;
    let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    let cert = params.signed_by(&key, &issuer)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), ca.der().clone()],
            PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )?;
    Ok((ca.der().clone(), config))
}

/// `POST /token` issues `tok-<n>`; `GET /api` needs a bearer token.
async fn serve_https(
    mut config: rustls::ServerConfig,
    issued: Arc<AtomicUsize>,
) -> std::io::Result<SocketAddr> {
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, issued) = (acceptor.clone(), Arc::clone(&issued));
            tokio::spawn(async move {
                // A client that does not trust the CA ends the handshake.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |request| handle(Arc::clone(&issued), request));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn handle(
    issued: Arc<AtomicUsize>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::default());
    match request.uri().path() {
        "/token" => {
            let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
            let body =
                format!(r#"{{"access_token":"tok-{n}","token_type":"Bearer","expires_in":3600}}"#);
            *response.body_mut() = Full::new(Bytes::from(body));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
        }
        "/api" => {
            let token = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.strip_prefix("Bearer "));
            match token {
                Some(token) => {
                    *response.body_mut() = Full::new(Bytes::from(format!("hello, {token}")));
                }
                None => *response.status_mut() = StatusCode::UNAUTHORIZED,
            }
        }
        _ => *response.status_mut() = StatusCode::NOT_FOUND,
    }
    Ok(response)
}
