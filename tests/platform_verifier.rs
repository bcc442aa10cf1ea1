//! The operating system's trust store (feature `platform-verifier`): a
//! token endpoint whose certificate comes from a CA the system trusts is
//! reached, while the default webpki roots refuse it. On Linux the
//! platform verifier reads the system store as OpenSSL does, so the test
//! points `SSL_CERT_FILE` at its CA; this binary holds one test, so no
//! other test sees that variable.

#[path = "support/pki.rs"]
mod pki;

use std::{convert::Infallible, sync::Arc};

use bytes::Bytes;
use http::{header, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower_alf::{
    grant::ClientCredentials, ClientAuth, HttpClient, RetryPolicy, TokenEndpoint, TokenSource,
};

use pki::{chain, Pki};

async fn token(url: &str, client: HttpClient) -> Result<Arc<tower_alf::Token>, tower_alf::Error> {
    let endpoint = TokenEndpoint::builder(url)
        .client_auth(ClientAuth::basic("os-trust", "os-secret"))
        .retry(RetryPolicy::none())
        .http_client(client)
        .build()
        .expect("endpoint");
    TokenSource::new(ClientCredentials::new(endpoint))
        .token()
        .await
}

#[tokio::test]
async fn the_platform_verifier_trusts_the_system_store_and_webpki_does_not() {
    let pki = Pki::new();
    let ca_file = std::env::temp_dir().join(format!("tower-alf-ca-{}.pem", std::process::id()));
    std::fs::write(&ca_file, &pki.ca_pem).expect("CA file");
    // NOTE: the only test in this binary; set before any verifier exists.
    std::env::set_var("SSL_CERT_FILE", &ca_file);

    let acceptor = TlsAcceptor::from(Arc::new(pki.server_config(false)));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(|request: Request<Incoming>| async move {
                    let _ = request.into_body().collect().await;
                    let body = r#"{"access_token":"os-trusted","token_type":"Bearer"}"#;
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header(header::CONTENT_TYPE, "application/json")
                            .body(Full::new(Bytes::from_static(body.as_bytes())))
                            .expect("response"),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    let url = pki::url(addr, "/token");

    let webpki = HttpClient::builder().no_proxy().build().expect("client");
    let error = token(&url, webpki).await.expect_err("not a webpki root");
    assert!(chain(&error).contains("certificate"), "{}", chain(&error));

    let platform = HttpClient::builder()
        .platform_verifier()
        .no_proxy()
        .build()
        .expect("client");
    let token = token(&url, platform)
        .await
        .expect("trusted by the system store");
    assert_eq!(token.access_token().secret(), "os-trusted");

    server.abort();
    let _ = std::fs::remove_file(ca_file);
}
