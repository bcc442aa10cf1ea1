//! Mutual TLS (RFC 8705) with no setup: a CA and a client certificate are
//! made on the spot (rcgen); a token endpoint and an API that both require
//! a client certificate are served on loopback (tokio-rustls). The client
//! authenticates with `tls_client_auth`, the token comes back bound to its
//! certificate (`cnf.x5t#S256`), and the API accepts it only over a
//! connection that presents that certificate.
//!
//! ```text
//! cargo run --example mtls
//! ```

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
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
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::{
    pki_types::{CertificateDer, PrivatePkcs8KeyDer},
    server::WebPkiClientVerifier,
    RootCertStore,
};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_alf::{
    grant::ClientCredentials, BearerAuthLayer, ClientAuth, ClientCertificate, HttpClient,
    RetryPolicy, TokenEndpoint, TokenSource,
};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // ----- a CA, a server certificate and a client certificate (PEM) -----
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "example CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let mut roots = RootCertStore::empty();
    roots.add(ca_cert.der().clone())?;

    let server_key = KeyPair::generate()?;
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_owned()])?;
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server.signed_by(&server_key, &issuer)?;

    let client_key = KeyPair::generate()?;
    let mut client = CertificateParams::new(Vec::<String>::new())?;
    client
        .distinguished_name
        .push(DnType::CommonName, "example-client");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client.signed_by(&client_key, &issuer)?;
    // What a deployment reads from client.crt and client.key.
    let (chain_pem, key_pem) = (client_cert.pem(), client_key.serialize_pem());

    // ----- a token endpoint and an API that require a client certificate -----
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots.clone()), provider.clone())
            .build()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![server_cert.der().clone()],
            PrivatePkcs8KeyDer::from(server_key.serialize_der()).into(),
        )?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let addr = serve(TlsAcceptor::from(Arc::new(config))).await?;

    // ----- the client -----
    let certificate = ClientCertificate::from_pem(&chain_pem, &key_pem)?;
    let token_client = HttpClient::builder()
        .root_certificates(roots.clone())
        .client_certificate(certificate.clone())
        .build()?;
    let endpoint = TokenEndpoint::builder(format!("https://{addr}/token"))
        .client_auth(ClientAuth::tls_client_auth_with(
            "example-client",
            certificate.clone(),
        ))
        .http_client(token_client)
        .retry(RetryPolicy::none())
        .build()?;
    let tokens = TokenSource::new(ClientCredentials::new(endpoint));
    let token = tokens.token().await?;
    println!(
        "token bound to x5t#S256 {}",
        token.certificate_thumbprint().unwrap_or("(none)")
    );

    // Resource requests over a connection with the same certificate.
    let call = |tls: rustls::ClientConfig| {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .build();
        let api = ServiceBuilder::new()
            .layer(BearerAuthLayer::new(tokens.clone()))
            .service(Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(connector));
        let request = Request::get(format!("https://{addr}/api")).body(Full::default());
        async move { Ok::<_, BoxError>(api.oneshot(request?).await?.status()) }
    };
    let status = call(certificate.tls_config(roots.clone())?).await?;
    println!("API with the token's certificate: {status}");
    assert_eq!(status, StatusCode::OK);

    // The same token over a connection with another certificate is refused.
    let other_key = KeyPair::generate()?;
    let other = CertificateParams::new(Vec::<String>::new())?.signed_by(&other_key, &issuer)?;
    let other = ClientCertificate::from_pem(other.pem(), other_key.serialize_pem())?;
    let status = call(other.tls_config(roots)?).await?;
    println!("API with another certificate: {status}");
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    Ok(())
}

/// Serves `POST /token` (a token bound to the connection's certificate)
/// and `GET /api` (200 when the token's binding is the connection's
/// certificate, 401 otherwise) on a loopback port.
async fn serve(acceptor: TlsAcceptor) -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let issued: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, issued) = (acceptor.clone(), Arc::clone(&issued));
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Some(leaf) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) else {
                    return;
                };
                let x5t = thumbprint(leaf);
                let service =
                    service_fn(move |request| handle(request, x5t.clone(), Arc::clone(&issued)));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

fn thumbprint(certificate: &CertificateDer<'_>) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(certificate))
}

async fn handle(
    request: Request<Incoming>,
    x5t: String,
    issued: Arc<Mutex<HashMap<String, String>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let _ = body.collect().await;
    let mut issued = issued.lock().unwrap_or_else(|e| e.into_inner());
    let response = if parts.uri.path() == "/token" {
        let access_token = format!("bound-{}", issued.len() + 1);
        issued.insert(access_token.clone(), x5t.clone());
        let body = serde_json::json!({
            "access_token": access_token, "token_type": "Bearer", "expires_in": 3600,
            "cnf": {"x5t#S256": x5t},
        });
        Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
    } else {
        let bound = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|token| issued.get(token));
        let status = if bound == Some(&x5t) {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        Response::builder().status(status).body(Full::default())
    };
    Ok(response.unwrap_or_default())
}
