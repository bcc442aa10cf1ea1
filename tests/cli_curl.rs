//! curl habits of `alf`, through the built binary: `-f`, `-o`, `-w`,
//! `--json`, `--data-urlencode`, `-d @-` and `-s`, against a token endpoint
//! and a resource in this process.

use std::{
    process::Stdio,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use axum::{
    extract::Path,
    http::{HeaderMap, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::{any, get, post},
    Json, Router,
};
use base64::Engine as _;
use tokio::io::AsyncWriteExt;

async fn token() -> Response {
    Json(serde_json::json!({
        "access_token": "at-curl",
        "token_type": "Bearer",
        "expires_in": 3600,
    }))
    .into_response()
}

/// What the request was, as JSON.
async fn echo(method: Method, headers: HeaderMap, body: String) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    Json(serde_json::json!({
        "method": method.as_str(),
        "content_type": header("content-type"),
        "accept": header("accept"),
        "authorization": header("authorization"),
        "body": body,
    }))
    .into_response()
}

async fn status(Path(code): Path<u16>) -> Response {
    (StatusCode::from_u16(code).unwrap(), "status body").into_response()
}

async fn start() -> String {
    let app = Router::new()
        .route("/token", post(token))
        .route("/echo", any(echo))
        .route("/status/{code}", get(status));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn alf_with_stdin(base: &str, args: &[&str], stdin: &[u8]) -> Run {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_alf"))
        .env_remove("XDG_CACHE_HOME")
        .env("HOME", "")
        .args(["--token-url", &format!("{base}/token")])
        .args(["--client-id", "curl-client", "--auth-method", "none"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

async fn alf(base: &str, args: &[&str]) -> Run {
    alf_with_stdin(base, args, b"").await
}

fn echoed(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|_| panic!("{} {}", run.stdout, run.stderr))
}

#[tokio::test]
async fn fail_exits_22_without_the_body_for_a_status_of_400_or_more() {
    let base = start().await;
    let url = format!("{base}/status/404");
    let plain = alf(&base, &[&url]).await;
    assert_eq!((plain.code, plain.stdout.as_str()), (0, "status body"));
    let failed = alf(&base, &["-f", &url]).await;
    assert_eq!(failed.code, 22, "{}", failed.stderr);
    assert!(failed.stdout.is_empty(), "{}", failed.stdout);
    assert_eq!(
        failed.stderr,
        "alf: the server answered 404 Not Found (-f)\n"
    );
    let ok = alf(&base, &["--fail", &format!("{base}/status/204")]).await;
    assert_eq!(ok.code, 0, "{}", ok.stderr);
}

#[tokio::test]
async fn output_writes_the_body_to_a_file() {
    let base = start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body.txt");
    let run = alf(
        &base,
        &["-o", file.to_str().unwrap(), &format!("{base}/status/200")],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.is_empty());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "status body");
}

#[tokio::test]
async fn write_out_fills_in_the_status_the_size_and_the_time() {
    let base = start().await;
    let run = alf(
        &base,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download} %{time_total}\\n",
            &format!("{base}/status/201"),
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let fields: Vec<&str> = run.stdout.strip_suffix('\n').unwrap().split(' ').collect();
    assert_eq!(fields[..2], ["201", "11"]);
    let time: f64 = fields[2].parse().unwrap();
    assert!(time > 0.0 && time < 30.0, "{time}");
    // With -f, -w still reports the status, as curl does.
    let run = alf(
        &base,
        &["-f", "-w", "%{http_code}", &format!("{base}/status/500")],
    )
    .await;
    assert_eq!((run.code, run.stdout.as_str()), (22, "500"));
}

#[tokio::test]
async fn write_out_with_an_unknown_variable_is_a_usage_error() {
    let base = start().await;
    let run = alf(&base, &["-w", "%{url_effective}", &format!("{base}/echo")]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("%{url_effective} is not a variable alf knows"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn single_request_flags_with_repeat_are_usage_errors() {
    let base = start().await;
    for flag in [&["-f"][..], &["-o", "/dev/null"], &["-w", "%{http_code}"]] {
        let mut args = flag.to_vec();
        let url = format!("{base}/echo");
        args.extend(["--repeat", "2", &url]);
        let run = alf(&base, &args).await;
        assert_eq!(run.code, 2, "{flag:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("is for a single request"),
            "{}",
            run.stderr
        );
    }
}

#[tokio::test]
async fn json_posts_with_json_content_type_and_accept() {
    let base = start().await;
    let run = alf(&base, &["--json", r#"{"a":1}"#, &format!("{base}/echo")]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let echo = echoed(&run);
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["content_type"], "application/json");
    assert_eq!(echo["accept"], "application/json");
    assert_eq!(echo["body"], r#"{"a":1}"#);
    assert_eq!(echo["authorization"], "Bearer at-curl");
    // From stdin.
    let run = alf_with_stdin(&base, &["--json", "@-", &format!("{base}/echo")], b"[1,2]").await;
    assert_eq!(echoed(&run)["body"], "[1,2]");
    // Not with -d.
    let run = alf(
        &base,
        &["--json", "{}", "-d", "a=b", &format!("{base}/echo")],
    )
    .await;
    assert_eq!(run.code, 2);
}

#[tokio::test]
async fn data_urlencode_encodes_each_field_and_joins_them_with_data() {
    let base = start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("field");
    std::fs::write(&file, "x&y=z").unwrap();
    let from_file = format!("f@{}", file.display());
    let run = alf(
        &base,
        &[
            "-d",
            "k=v",
            "--data-urlencode",
            "q=a b&c",
            "--data-urlencode",
            "plain=",
            "--data-urlencode",
            &from_file,
            &format!("{base}/echo"),
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let echo = echoed(&run);
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["content_type"], "application/x-www-form-urlencoded");
    assert_eq!(echo["body"], "k=v&q=a+b%26c&plain=&f=x%26y%3Dz");
}

#[tokio::test]
async fn data_from_stdin_is_sent_as_it_is() {
    let base = start().await;
    let run = alf_with_stdin(
        &base,
        &["-d", "@-", &format!("{base}/echo")],
        b"a=1\nb=\x01",
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(echoed(&run)["body"], "a=1\nb=\u{1}");
}

#[tokio::test]
async fn silent_is_quiet() {
    let base = start().await;
    for flag in ["-s", "--silent", "-q"] {
        let run = alf(
            &base,
            &[
                flag,
                "--redis",
                "redis://127.0.0.1:1/",
                &format!("{base}/echo"),
            ],
        )
        .await;
        assert_eq!(run.code, 0, "{flag}: {}", run.stderr);
        assert!(run.stderr.is_empty(), "{flag}: {}", run.stderr);
    }
    let loud = alf(
        &base,
        &["--redis", "redis://127.0.0.1:1/", &format!("{base}/echo")],
    )
    .await;
    assert!(loud.stderr.contains("WARN"), "{}", loud.stderr);
}

#[tokio::test]
async fn data_from_an_endless_stdin_stops_at_the_cap() {
    let base = start().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_alf"))
        .env("HOME", "")
        .env_remove("XDG_CACHE_HOME")
        .args(["--token-url", &format!("{base}/token")])
        .args(["--client-id", "curl-client", "--auth-method", "none"])
        .args(["-d", "@-", &format!("{base}/echo")])
        .stdin(std::fs::File::open("/dev/zero").unwrap())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "alf: -d @-: larger than 16 MiB, the most alf sends as a body\n"
    );
}

// ===== --cacert: a token endpoint and a resource over TLS =====

/// A fresh CA (as PEM) and an HTTPS server on loopback, certified by it,
/// that issues a token at /token and answers /api; the token requests it
/// served.
async fn https_server() -> (String, String, Arc<AtomicUsize>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(ca.der());
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");

    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        PrivateKeyDer::from(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/token", post(token))
        .route("/echo", any(echo));
    let tokens = Arc::new(AtomicUsize::new(0));
    let counted = tokens.clone();
    let app = app.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let counted = counted.clone();
            async move {
                if request.uri().path() == "/token" {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
                next.run(request).await
            }
        },
    ));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (base, pem, tokens)
}

#[tokio::test]
async fn cacert_trusts_a_private_ca_for_the_token_endpoint_and_the_request() {
    let (base, pem, tokens) = https_server().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pem).unwrap();
    let url = format!("{base}/echo");
    // Without it, the built-in roots refuse the server.
    let refused = alf(&base, &[&url]).await;
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("could not get a token"),
        "{}",
        refused.stderr
    );
    assert_eq!(tokens.load(Ordering::SeqCst), 0);
    let run = alf(&base, &["--cacert", ca.to_str().unwrap(), &url]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(echoed(&run)["authorization"], "Bearer at-curl");
    assert_eq!(tokens.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_cacert_file_without_a_certificate_is_a_usage_error() {
    let base = start().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let run = alf(
        &base,
        &["--cacert", ca.to_str().unwrap(), &format!("{base}/echo")],
    )
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("no PEM certificate in it"),
        "{}",
        run.stderr
    );
    let run = alf(
        &base,
        &[
            "--cacert",
            dir.path().to_str().unwrap(),
            &format!("{base}/echo"),
        ],
    )
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("not a regular file"), "{}", run.stderr);
}
