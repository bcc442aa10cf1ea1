//! `alf --cert/--key` (mutual TLS, RFC 8705), through the built binary: a
//! token endpoint and an API on loopback, served by tokio-rustls, that both
//! require a client certificate from a CA the test makes (rcgen). The token
//! endpoint binds its tokens to the connection's certificate
//! (`cnf.x5t#S256`); the API accepts a token only over a connection with
//! that certificate.

#[path = "support/pki.rs"]
mod pki;

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_rustls::TlsAcceptor;

use pki::{ClientPem, Pki};

/// The API's body for a token bound to the connection's certificate.
const API_BODY: &str = "hello over mutual TLS";

/// What a token request carried: its form, its Authorization header, and
/// the thumbprint of the connection's client certificate.
#[derive(Clone, Debug)]
struct Seen {
    form: HashMap<String, String>,
    authorization: Option<String>,
    peer: String,
}

/// An HTTPS server that requires a client certificate of the test CA:
/// `/token` issues a token bound to it, `/api` answers [`API_BODY`] to a
/// token bound to the connection's certificate, `/plain-token` refuses
/// everything, and the metadata names `/token` as the mutual-TLS alias.
struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn thumbprint(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(der))
}

impl Server {
    async fn start(pki: &Pki) -> Self {
        let acceptor = TlsAcceptor::from(Arc::new(pki.server_config(true)));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let seen = Arc::clone(&seen);
            async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    let (acceptor, seen) = (acceptor.clone(), Arc::clone(&seen));
                    tokio::spawn(async move {
                        // Without a certificate of the CA, the handshake fails.
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
                            handle(Arc::clone(&seen), peer.clone(), addr, request)
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    });
                }
            }
        });
        Self { addr, seen, task }
    }

    fn url(&self, path: &str) -> String {
        pki::url(self.addr, path)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn handle(
    seen: Arc<Mutex<Vec<Seen>>>,
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
    let respond = |status: StatusCode, body: String| {
        Ok(Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("response"))
    };
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let issuer = pki::url(addr, "");
    match parts.uri.path() {
        "/token" => {
            let form = url::form_urlencoded::parse(&body).into_owned().collect();
            seen.lock().unwrap().push(Seen {
                form,
                authorization,
                peer: peer.clone(),
            });
            let token = serde_json::json!({
                "access_token": format!("at-{peer}"),
                "token_type": "Bearer",
                "expires_in": 3600,
                "cnf": { "x5t#S256": peer },
            });
            respond(StatusCode::OK, token.to_string())
        }
        "/device" => {
            let form = url::form_urlencoded::parse(&body).into_owned().collect();
            seen.lock().unwrap().push(Seen {
                form,
                authorization,
                peer: peer.clone(),
            });
            let answer = serde_json::json!({
                "device_code": "dc-1",
                "user_code": "WDJB-MJHT",
                "verification_uri": pki::url(addr, "/activate"),
                "expires_in": 600,
                "interval": 1,
            });
            respond(StatusCode::OK, answer.to_string())
        }
        "/plain-token" | "/plain-device" => respond(
            StatusCode::BAD_REQUEST,
            r#"{"error":"invalid_client","error_description":"use the mTLS alias"}"#.to_owned(),
        ),
        "/.well-known/oauth-authorization-server" => {
            let metadata = serde_json::json!({
                "issuer": issuer,
                "token_endpoint": pki::url(addr, "/plain-token"),
                "device_authorization_endpoint": pki::url(addr, "/plain-device"),
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "tls_client_auth"],
                "mtls_endpoint_aliases": {
                    "token_endpoint": pki::url(addr, "/token"),
                    "device_authorization_endpoint": pki::url(addr, "/device"),
                },
                "tls_client_certificate_bound_access_tokens": true,
            });
            respond(StatusCode::OK, metadata.to_string())
        }
        "/api" if authorization.as_deref() == Some(&format!("Bearer at-{peer}")) => {
            respond(StatusCode::OK, API_BODY.to_owned())
        }
        "/api" => respond(StatusCode::UNAUTHORIZED, "{}".to_owned()),
        _ => respond(StatusCode::NOT_FOUND, "{}".to_owned()),
    }
}

// ===== running alf =====

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// The files of a run: the CA, a client certificate and its key.
struct Files {
    dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn new(pki: &Pki, client: &ClientPem) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        std::fs::write(&ca, &pki.ca_pem).unwrap();
        std::fs::write(&cert, &client.chain_pem).unwrap();
        std::fs::write(&key, &client.key_pem).unwrap();
        Self { dir, ca, cert, key }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Runs alf with `args`, the token cache in `cache` (none without it).
async fn alf_cached(args: &[&str], cache: Option<&Path>) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_alf"));
    command.env_remove("XDG_CACHE_HOME").env("HOME", "");
    if let Some(cache) = cache {
        command.env("XDG_CACHE_HOME", cache);
    }
    let out = command.args(args).output().await.unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn alf(args: &[&str]) -> Run {
    alf_cached(args, None).await
}

/// Whether `stderr` quotes any of the key: its PEM lines or its label.
fn leaks_key(stderr: &str, key_pem: &str) -> bool {
    stderr.contains("PRIVATE KEY")
        || key_pem
            .lines()
            .filter(|line| !line.starts_with("-----") && line.len() > 8)
            .any(|line| stderr.contains(line))
}

fn one_line(run: &Run) -> bool {
    run.stderr.ends_with('\n') && run.stderr.trim_end().lines().count() == 1
}

// ===== the tests =====

#[tokio::test]
async fn a_client_certificate_authenticates_at_the_token_endpoint_and_the_api() {
    let pki = Pki::new();
    let (idp, api) = (Server::start(&pki).await, Server::start(&pki).await);
    let client = pki.client("alf-client");
    let files = Files::new(&pki, &client);
    let run = alf(&[
        "--cacert",
        text(&files.ca),
        "--cert",
        text(&files.cert),
        "--key",
        text(&files.key),
        "--auth-method",
        "tls_client_auth",
        "--client-id",
        "x",
        "--token-url",
        &idp.url("/token"),
        &api.url("/api"),
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, API_BODY);
    let seen = idp.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].peer, thumbprint(&client.der), "the certificate");
    assert_eq!(seen[0].form["client_id"], "x");
    assert_eq!(seen[0].form["grant_type"], "client_credentials");
    assert!(!seen[0].form.contains_key("client_secret"), "{seen:?}");
    assert_eq!(seen[0].authorization, None, "no Basic credentials");
}

#[tokio::test]
async fn self_signed_tls_client_auth_sends_the_client_id_over_the_certificate() {
    let pki = Pki::new();
    let (idp, api) = (Server::start(&pki).await, Server::start(&pki).await);
    let client = pki.client("alf-client");
    let files = Files::new(&pki, &client);
    let run = alf(&[
        "--cacert",
        text(&files.ca),
        "--cert",
        text(&files.cert),
        "--key",
        text(&files.key),
        "--auth-method",
        "self_signed_tls_client_auth",
        "--client-id",
        "self-signed",
        "--token-url",
        &idp.url("/token"),
        &api.url("/api"),
    ])
    .await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, API_BODY),
        "{}",
        run.stderr
    );
    let seen = idp.seen();
    assert_eq!(seen[0].form["client_id"], "self-signed");
    assert_eq!(seen[0].peer, thumbprint(&client.der));
}

#[tokio::test]
async fn with_a_certificate_and_no_secret_the_method_is_tls_client_auth() {
    let pki = Pki::new();
    let server = Server::start(&pki).await;
    let client = pki.client("alf-client");
    let files = Files::new(&pki, &client);
    let run = alf(&[
        "--cacert",
        text(&files.ca),
        "--cert",
        text(&files.cert),
        "--key",
        text(&files.key),
        "--client-id",
        "x",
        "--token-url",
        &server.url("/token"),
        &server.url("/api"),
    ])
    .await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, API_BODY),
        "{}",
        run.stderr
    );
    assert_eq!(server.seen()[0].form["client_id"], "x");
}

#[tokio::test]
async fn without_a_certificate_the_handshake_fails_in_one_line() {
    let pki = Pki::new();
    let (idp, api) = (Server::start(&pki).await, Server::start(&pki).await);
    let files = Files::new(&pki, &pki.client("alf-client"));
    let run = alf(&[
        "--cacert",
        text(&files.ca),
        "--auth-method",
        "none",
        "--client-id",
        "x",
        "--token-url",
        &idp.url("/token"),
        &api.url("/api"),
    ])
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(one_line(&run), "{}", run.stderr);
    assert!(
        run.stderr.starts_with("alf: could not get a token"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("CertificateRequired"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(idp.seen().is_empty());
    // And the mutual-TLS methods say what they need.
    let run = alf(&[
        "--auth-method",
        "tls_client_auth",
        "--client-id",
        "x",
        "--token-url",
        &idp.url("/token"),
        &api.url("/api"),
    ])
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "alf: --auth-method tls_client_auth needs --cert FILE (and --key FILE)\n"
    );
}

#[tokio::test]
async fn a_key_that_is_not_the_certificates_is_a_usage_error_that_quotes_no_key() {
    let pki = Pki::new();
    let idp = Server::start(&pki).await;
    let client = pki.client("alf-client");
    let other = pki.client("someone-else");
    let files = Files::new(&pki, &client);
    let wrong_key = files.write("other.pem", &other.key_pem);
    let run = alf(&[
        "--cacert",
        text(&files.ca),
        "--cert",
        text(&files.cert),
        "--key",
        text(&wrong_key),
        "--auth-method",
        "tls_client_auth",
        "--client-id",
        "x",
        "--token-url",
        &idp.url("/token"),
        &idp.url("/api"),
    ])
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(one_line(&run), "{}", run.stderr);
    assert!(
        run.stderr.contains("does not match its private key"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(text(&wrong_key)), "{}", run.stderr);
    assert!(!leaks_key(&run.stderr, &other.key_pem), "{}", run.stderr);
    assert!(idp.seen().is_empty(), "nothing is sent");

    // A key file that is not a key, nor PEM at all: the same, no bytes of it.
    let garbage = files.write("garbage.pem", "-----BEGIN PRIVATE KEY-----\nc2VjcmV0IQ==\n");
    let run = alf(&[
        "--cert",
        text(&files.cert),
        "--key",
        text(&garbage),
        &idp.url("/api"),
    ])
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(one_line(&run), "{}", run.stderr);
    assert!(!run.stderr.contains("c2VjcmV0"), "{}", run.stderr);
}

#[tokio::test]
async fn the_key_may_follow_the_certificate_in_one_file() {
    let pki = Pki::new();
    let (idp, api) = (Server::start(&pki).await, Server::start(&pki).await);
    let client = pki.client("alf-client");
    let files = Files::new(&pki, &client);
    let both = files.write(
        "both.pem",
        &format!("{}{}", client.chain_pem, client.key_pem),
    );
    let run = alf(&[
        "--cacert",
        text(&files.ca),
        "--cert",
        text(&both),
        "--auth-method",
        "tls_client_auth",
        "--client-id",
        "x",
        "--token-url",
        &idp.url("/token"),
        &api.url("/api"),
    ])
    .await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, API_BODY),
        "{}",
        run.stderr
    );
    assert_eq!(idp.seen()[0].peer, thumbprint(&client.der));

    // A certificate file without a key, and no --key: said so.
    let run = alf(&["--cert", text(&files.cert), &api.url("/api")]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        format!(
            "alf: --cert {}: no private key in it; give it with --key FILE\n",
            files.cert.display()
        )
    );
}

#[tokio::test]
async fn a_key_without_a_certificate_and_a_file_without_one_are_usage_errors() {
    let pki = Pki::new();
    let files = Files::new(&pki, &pki.client("alf-client"));
    let run = alf(&["--key", text(&files.key), "https://127.0.0.1:1/api"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        "alf: --key needs --cert FILE: the client certificate the key belongs to\n"
    );
    // A certificate option given the key file: no certificate in it.
    let run = alf(&[
        "--cert",
        text(&files.key),
        "--key",
        text(&files.key),
        "https://127.0.0.1:1/api",
    ])
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("no PEM certificate in it"),
        "{}",
        run.stderr
    );
    assert!(!leaks_key(
        &run.stderr,
        &std::fs::read_to_string(&files.key).unwrap()
    ));
}

#[tokio::test]
async fn verbose_presents_the_certificate_too_and_prints_no_key() {
    let pki = Pki::new();
    let (idp, api) = (Server::start(&pki).await, Server::start(&pki).await);
    let client = pki.client("alf-client");
    let files = Files::new(&pki, &client);
    let run = alf(&[
        "-v",
        "--cacert",
        text(&files.ca),
        "--cert",
        text(&files.cert),
        "--key",
        text(&files.key),
        "--auth-method",
        "tls_client_auth",
        "--client-id",
        "x",
        "--token-url",
        &idp.url("/token"),
        &api.url("/api"),
    ])
    .await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, API_BODY),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("> POST /token"), "{}", run.stderr);
    let note = format!(
        "* client certificate (--cert): x5t#S256 {}\n",
        thumbprint(&client.der)
    );
    assert!(run.stderr.contains(&note), "{}", run.stderr);
    assert!(!leaks_key(&run.stderr, &client.key_pem), "{}", run.stderr);
    // The token is shown by its fingerprint only.
    assert!(
        !run.stderr
            .contains(&format!("at-{}", thumbprint(&client.der))),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn discovery_chooses_tls_client_auth_and_the_mtls_alias() {
    let pki = Pki::new();
    let (idp, api) = (Server::start(&pki).await, Server::start(&pki).await);
    let client = pki.client("alf-client");
    let files = Files::new(&pki, &client);
    let run = alf(&[
        "--cacert",
        text(&files.ca),
        "--cert",
        text(&files.cert),
        "--key",
        text(&files.key),
        "--client-id",
        "x",
        "--issuer",
        &idp.url(""),
        &api.url("/api"),
    ])
    .await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, API_BODY),
        "{}",
        run.stderr
    );
    // The token request went to the alias, /token (not /plain-token).
    let seen = idp.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].form["client_id"], "x");
    assert_eq!(seen[0].peer, thumbprint(&client.der));
}

#[tokio::test]
async fn a_certificate_bound_token_is_reused_from_the_cache_by_the_next_run() {
    let pki = Pki::new();
    let (idp, api) = (Server::start(&pki).await, Server::start(&pki).await);
    let client = pki.client("alf-client");
    let files = Files::new(&pki, &client);
    let cache = tempfile::tempdir().unwrap();
    let args = [
        "--cacert",
        text(&files.ca),
        "--cert",
        text(&files.cert),
        "--key",
        text(&files.key),
        "--client-id",
        "x",
        "--token-url",
        &idp.url("/token"),
        &api.url("/api"),
    ];
    for _ in 0..2 {
        let run = alf_cached(&args, Some(cache.path())).await;
        assert_eq!(
            (run.code, run.stdout.as_str()),
            (0, API_BODY),
            "{}",
            run.stderr
        );
    }
    assert_eq!(idp.seen().len(), 1, "the second run used the cached token");
}

#[tokio::test]
async fn help_lists_the_certificate_options_and_methods() {
    let run = alf(&["--help"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    for shown in [
        "--cert <FILE>",
        "--key <FILE>",
        "- tls_client_auth:",
        "- self_signed_tls_client_auth:",
    ] {
        assert!(run.stdout.contains(shown), "{shown} in {}", run.stdout);
    }
}

#[tokio::test]
async fn the_device_flow_uses_the_mtls_aliases_with_the_certificate() {
    let pki = Pki::new();
    let idp = Server::start(&pki).await;
    let client = pki.client("alf-client");
    let files = Files::new(&pki, &client);
    let run = alf(&[
        "login",
        "--device",
        "--cacert",
        text(&files.ca),
        "--cert",
        text(&files.cert),
        "--key",
        text(&files.key),
        "--client-id",
        "x",
        "--issuer",
        &idp.url(""),
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("WDJB-MJHT"), "{}", run.stderr);
    // The device request, then the token request: both to the aliases,
    // over the certificate, with the client_id of tls_client_auth.
    let seen = idp.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(!seen[0].form.contains_key("grant_type"), "{seen:?}");
    assert_eq!(
        seen[1].form["grant_type"],
        "urn:ietf:params:oauth:grant-type:device_code"
    );
    for request in &seen {
        assert_eq!(request.form["client_id"], "x");
        assert_eq!(request.peer, thumbprint(&client.der));
        assert_eq!(request.authorization, None);
    }
}
