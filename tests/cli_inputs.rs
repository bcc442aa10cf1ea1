//! What `alf` reads from files and the environment, and what it prints of
//! a server's text: checked at the edge, against a token endpoint and an
//! API over loopback.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use axum::{
    extract::State,
    http::{HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use tokio::process::Command;

/// alf without a token cache between runs (no cache directory: neither
/// `$XDG_CACHE_HOME` nor `$HOME`), as these tests were written; the cache
/// has its own tests in tests/cli_cache.rs.
fn alf_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_alf"));
    command.env_remove("XDG_CACHE_HOME").env("HOME", "");
    command
}

const SECRET: &str = "inputs-s3cr3t";

/// A hostile `error_description`: ESC ] 0; … BEL retitles the terminal,
/// CR LF starts a fake `alf:` line.
const HOSTILE: &str = "bad\x1b]0;pwned\x07\r\nalf: all good\x1b[2K";

#[derive(Default)]
struct Server {
    token_requests: AtomicUsize,
}

async fn token(State(server): State<Arc<Server>>, body: String) -> Response {
    server.token_requests.fetch_add(1, Ordering::SeqCst);
    let secret = form_urlencoded::parse(body.as_bytes())
        .find(|(name, _)| name == "client_secret")
        .map(|(_, value)| value.into_owned());
    match secret.as_deref() {
        Some(SECRET) => Json(serde_json::json!({
            "access_token": "tok-1",
            "token_type": "Bearer",
            "expires_in": 3600,
            // C1 and DEL in a field alf prints on stdout.
            "scope": "read\u{9b}2J\x7f",
        }))
        .into_response(),
        _ => (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({"error": "invalid_client", "error_description": HOSTILE})),
        )
            .into_response(),
    }
}

async fn api() -> Response {
    let mut response = "body\x1b[31m raw\n".into_response();
    response.headers_mut().insert(
        "x-note",
        HeaderValue::from_bytes(b"caf\xe9 \x9b2J end").unwrap(),
    );
    response
}

async fn start() -> (Arc<Server>, SocketAddr) {
    let server = Arc::new(Server::default());
    let app = Router::new()
        .route("/token", post(token))
        .route("/api", get(api))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (server, addr)
}

struct Output {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
    took: Duration,
}

/// Runs `alf` with the token endpoint at `addr` (client_secret_post).
async fn alf(addr: SocketAddr, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Output {
    let mut command = alf_command();
    command
        .args(["--token-url", &format!("http://{addr}/token")])
        .args(["--client-id", "inputs"])
        .args(args)
        .kill_on_drop(true);
    if !args.contains(&"--auth-method") {
        command.args(["--auth-method", "post"]);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(20), command.output())
        .await
        .expect("alf ends")
        .unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

fn os(value: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(value)
}

#[tokio::test]
async fn endless_devices_as_inputs_are_refused_fast_with_a_clear_error() {
    let (server, addr) = start().await;
    let api = format!("http://{addr}/api");
    // A regular file, for the option beside the device.
    let pem = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/p256_pkcs8.pem");
    let cases: [(&[&str], &str); 9] = [
        (
            &["--client-secret-file", "/dev/zero"],
            "--client-secret-file /dev/zero: not a regular file",
        ),
        (
            &["--cert", "/dev/zero", "--key", pem],
            "--cert /dev/zero: not a regular file",
        ),
        (
            &["--cert", pem, "--key", "/dev/zero"],
            "--key /dev/zero: not a regular file",
        ),
        (
            &[
                "--auth-method",
                "private_key_jwt",
                "--private-key",
                "/dev/zero",
            ],
            "--private-key /dev/zero: not a regular file",
        ),
        (
            &["--auth-method", "none", "--dpop-key", "/dev/zero"],
            "--dpop-key /dev/zero: not a regular file",
        ),
        (
            &["--service-account", "/dev/zero"],
            "--service-account /dev/zero: not a regular file",
        ),
        (
            &[
                "--oauth1-consumer-key",
                "k",
                "--oauth1-private-key",
                "/dev/zero",
            ],
            "--oauth1-private-key /dev/zero: not a regular file",
        ),
        (
            &["--client-secret-file", "/dev/null", "--cacert", "/dev/zero"],
            "--cacert /dev/zero: not a regular file",
        ),
        (
            &["--client-secret-file", "/dev/null", "-d", "@/dev/zero"],
            "-d @/dev/zero: larger than 16 MiB",
        ),
    ];
    for (args, expected) in cases {
        let mut args = args.to_vec();
        args.push(&api);
        // --oauth1-* and --token-url exclude each other; the others need it.
        let out = if args.contains(&"--oauth1-consumer-key") {
            alf_plain(&args).await
        } else {
            alf(addr, &args, &[]).await
        };
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(expected), "{args:?}: {}", out.stderr);
        assert!(
            out.took < Duration::from_secs(5),
            "{args:?} took {:?}",
            out.took
        );
    }
    assert_eq!(server.token_requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn devices_as_token_and_assertion_files_are_refused_fast_with_a_clear_error() {
    let (server, addr) = start().await;
    let api = format!("http://{addr}/api");
    let token_url = format!("http://{addr}/token");
    let endpoint = ["--token-url", &token_url, "--client-id", "inputs"];
    let public = ["--auth-method", "none"];
    let cases: [(Vec<&str>, &str); 6] = [
        (
            [&endpoint[..], &["--client-assertion-file", "/dev/zero"]].concat(),
            "--client-assertion-file /dev/zero: not a regular file",
        ),
        (
            vec!["--token-file", "/dev/zero"],
            "--token-file /dev/zero: not a regular file",
        ),
        (
            [
                &endpoint[..],
                &public,
                &["--subject-token-file", "/dev/zero"],
            ]
            .concat(),
            "--subject-token-file /dev/zero: not a regular file",
        ),
        (
            [
                &endpoint[..],
                &public,
                &[
                    "--subject-token-env",
                    "HOME",
                    "--actor-token-file",
                    "/dev/zero",
                ],
            ]
            .concat(),
            "--actor-token-file /dev/zero: not a regular file",
        ),
        (
            vec!["--token-url", &token_url, "--assertion-file", "/dev/zero"],
            "--assertion-file /dev/zero: not a regular file",
        ),
        (
            [
                &endpoint[..],
                &public,
                &["--refresh-token-file", "/dev/zero"],
            ]
            .concat(),
            "--refresh-token-file /dev/zero: not a regular file",
        ),
    ];
    for (mut args, expected) in cases {
        args.push(&api);
        let out = alf_plain(&args).await;
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(expected), "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {}", out.stderr);
    }
    assert_eq!(server.token_requests.load(Ordering::SeqCst), 0);
}

/// `alf` without the token endpoint options.
async fn alf_plain(args: &[&str]) -> Output {
    let started = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        alf_command().args(args).kill_on_drop(true).output(),
    )
    .await
    .expect("alf ends")
    .unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

#[tokio::test]
async fn a_fifo_as_a_secret_file_is_refused_without_waiting_for_a_writer() {
    let (_, addr) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("secret");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let api = format!("http://{addr}/api");
    let out = alf(
        addr,
        &["--client-secret-file", fifo.to_str().unwrap(), &api],
        &[],
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("not a regular file"), "{}", out.stderr);
}

#[tokio::test]
async fn a_key_file_over_64_kib_is_refused() {
    let (_, addr) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("key.pem");
    std::fs::write(&big, vec![b'A'; 64 * 1024 + 1]).unwrap();
    let api = format!("http://{addr}/api");
    let args = [
        "--auth-method",
        "private_key_jwt",
        "--private-key",
        big.to_str().unwrap(),
        &api,
    ];
    let out = alf(addr, &args, &[]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("larger than 64 KiB"), "{}", out.stderr);
    assert!(out.stderr.contains(big.to_str().unwrap()), "{}", out.stderr);
}

#[tokio::test]
async fn an_empty_secret_is_an_error_of_its_own_and_never_sent() {
    let (server, addr) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let api = format!("http://{addr}/api");

    let out = alf(
        addr,
        &["--client-secret-env", "ALF_EMPTY", &api],
        &[("ALF_EMPTY", os(""))],
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("ALF_EMPTY is empty"), "{}", out.stderr);

    for contents in ["", "\n", "\r\n"] {
        let path = dir.path().join("secret");
        std::fs::write(&path, contents).unwrap();
        let out = alf(
            addr,
            &["--client-secret-file", path.to_str().unwrap(), &api],
            &[],
        )
        .await;
        assert_eq!(out.code, 2, "{contents:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("is empty"),
            "{contents:?}: {}",
            out.stderr
        );
    }
    assert_eq!(server.token_requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_non_utf8_secret_is_reported_as_such_not_as_unset() {
    use std::os::unix::ffi::OsStrExt;
    let (server, addr) = start().await;
    let api = format!("http://{addr}/api");
    let bad = std::ffi::OsStr::from_bytes(b"s\xffcret");

    let out = alf(
        addr,
        &["--client-secret-env", "ALF_BAD", &api],
        &[("ALF_BAD", bad)],
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("ALF_BAD is not valid UTF-8"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("not set"), "{}", out.stderr);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, b"s\xffcret\n").unwrap();
    let out = alf(
        addr,
        &["--client-secret-file", path.to_str().unwrap(), &api],
        &[],
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("not UTF-8"), "{}", out.stderr);

    // Every other secret variable reads the same way.
    let out = alf(
        addr,
        &[
            "--client-secret-env",
            "ALF_OK",
            "--refresh-token-env",
            "ALF_BAD",
            &api,
        ],
        &[("ALF_OK", os(SECRET)), ("ALF_BAD", bad)],
    )
    .await;
    assert!(
        out.stderr.contains("ALF_BAD is not valid UTF-8"),
        "{}",
        out.stderr
    );
    assert_eq!(server.token_requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_body_file_is_sent_up_to_the_cap() {
    let (_, addr) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("body");
    std::fs::write(&big, vec![b'x'; 16 * 1024 * 1024 + 1]).unwrap();
    let api = format!("http://{addr}/api");
    let data = format!("@{}", big.display());
    let args = ["--client-secret-env", "S", "-X", "GET", "-d", &data, &api];
    let out = alf(addr, &args, &[("S", os(SECRET))]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("larger than 16 MiB"), "{}", out.stderr);
    assert!(out.stderr.contains(big.to_str().unwrap()), "{}", out.stderr);
}

/// No byte that drives a terminal: C0 controls but LF, DEL, and C1.
fn assert_no_controls(text: &str) {
    let bad: Vec<char> = text
        .chars()
        .filter(|&c| (c.is_control() && c != '\n') || c == '\u{7f}')
        .collect();
    assert!(bad.is_empty(), "{bad:?} in {text:?}");
}

#[tokio::test]
async fn a_servers_error_description_is_printed_escaped() {
    let (_, addr) = start().await;
    let api = format!("http://{addr}/api");
    let out = alf(
        addr,
        &["--client-secret-env", "S", &api],
        &[("S", os("wrong"))],
    )
    .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("invalid_client"), "{}", out.stderr);
    assert!(out.stderr.contains("pwned"), "{}", out.stderr);
    assert_no_controls(&out.stderr);
    // One line: no fake `alf:` line of the server's.
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);

    let out = alf(
        addr,
        &["token", "--client-secret-env", "S"],
        &[("S", os("wrong"))],
    )
    .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_no_controls(&out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

#[tokio::test]
async fn headers_with_include_are_escaped_and_the_body_stays_raw() {
    let (_, addr) = start().await;
    let api = format!("http://{addr}/api");
    let out = alf(
        addr,
        &["--client-secret-env", "S", "-i", &api],
        &[("S", os(SECRET))],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(r"x-note: caf\xe9 \x9b2J end"), "{stdout}");
    // The body, as curl prints it.
    assert!(out.stdout.ends_with(b"body\x1b[31m raw\n"), "{stdout}");
}

#[tokio::test]
async fn token_metadata_on_stdout_has_no_terminal_controls() {
    let (_, addr) = start().await;
    let out = alf(
        addr,
        &["token", "--client-secret-env", "S"],
        &[("S", os(SECRET))],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_no_controls(&stdout);
    let metadata: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(metadata["scope"], "read\u{9b}2J\x7f");
}

#[tokio::test]
async fn token_options_go_before_or_after_the_subcommand() {
    let (_, addr) = start().await;
    let token_url = format!("http://{addr}/token");
    let secret = [("S", os(SECRET))];
    let options = [
        "--token-url",
        &token_url,
        "--client-id",
        "inputs",
        "--auth-method",
        "post",
        "--client-secret-env",
        "S",
    ];
    for args in [
        [&options[..], &["token"]].concat(),
        [&["token"], &options[..]].concat(),
        [&options[..4], &["token"], &options[4..]].concat(),
    ] {
        let mut command = alf_command();
        command.args(&args).env(secret[0].0, secret[0].1);
        let out = command.output().await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(metadata["token_type"], "Bearer", "{args:?}");
    }
}

#[tokio::test]
async fn options_a_subcommand_would_ignore_are_refused() {
    for args in [
        &["token", "--oauth1-consumer-key", "k"][..],
        &["--oauth1-consumer-key", "k", "login"][..],
        &[
            "--token-url",
            "http://127.0.0.1:1/t",
            "oauth1",
            "authorize",
            "--request-token-url",
            "http://127.0.0.1:1/r",
            "--authorize-url",
            "http://127.0.0.1:1/a",
            "--access-token-url",
            "http://127.0.0.1:1/t",
        ][..],
        // Request options and a URL with a subcommand.
        &["-H", "A: b", "token"][..],
        &["--repeat", "3", "login"][..],
        &["http://127.0.0.1:1/api", "token"][..],
    ] {
        let out = alf_plain(args).await;
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("not used by"),
            "{args:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn every_input_file_option_is_covered() {
    // The options that name a file to read: each is in the device test above.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_alf"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let mut files: Vec<&str> = help
        .lines()
        .filter(|line| line.contains("<FILE>"))
        .filter_map(|line| line.split_whitespace().find(|w| w.starts_with("--")))
        .map(|w| w.trim_end_matches(','))
        // -o FILE is written, not read.
        .filter(|w| *w != "--output")
        .collect();
    let tested = [
        "--cacert",
        "--client-secret-file",
        "--private-key",
        "--dpop-key",
        "--service-account",
        "--oauth1-private-key",
        "--cert",
        "--key",
        // In the test below.
        "--client-assertion-file",
        "--token-file",
        "--subject-token-file",
        "--actor-token-file",
        "--assertion-file",
        "--refresh-token-file",
    ];
    files.sort_unstable();
    let mut tested = tested.to_vec();
    tested.sort_unstable();
    assert_eq!(files, tested);
    assert!(help.contains("DATA|@FILE"));
}
