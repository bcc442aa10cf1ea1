//! The `alf` binary with the options that bring a token or an assertion
//! from elsewhere (`--client-assertion-file`, `--token-file`,
//! `--token-command`, `--subject-token-*`, `--actor-token-*`,
//! `--assertion-file`) and with a refresh token kept across runs
//! (`--refresh-token-file`, `--redis`), against a token endpoint and an API
//! over loopback, with real files and real processes.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{any, post},
    Json, Router,
};
use tokio::process::Command;

type Form = HashMap<String, String>;

/// Run by the server once, while it answers.
type Then = Box<dyn FnOnce() + Send>;

/// What the server saw and how it behaves.
#[derive(Default)]
struct Server {
    /// Every token request's form (and its Authorization header).
    token_requests: Mutex<Vec<Form>>,
    /// Every API request's bearer token.
    api_tokens: Mutex<Vec<String>>,
    /// The refresh token the server accepts next (rotating: each is good
    /// once); `None`: refresh tokens are not expected.
    valid_refresh: Mutex<Option<String>>,
    /// The lifetime of issued tokens.
    expires_in: Mutex<u64>,
    /// The first token request answers 503 after running this.
    on_first_token: Mutex<Option<Then>>,
    /// The API rejects this token once with a 401, after running this.
    reject_once: Mutex<Option<(String, Then)>>,
    issued: Mutex<u64>,
}

impl Server {
    fn token_requests(&self) -> Vec<Form> {
        self.token_requests.lock().unwrap().clone()
    }

    fn api_tokens(&self) -> Vec<String> {
        self.api_tokens.lock().unwrap().clone()
    }
}

async fn token(State(server): State<Arc<Server>>, headers: HeaderMap, body: String) -> Response {
    let mut form: Form = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    if let Some(auth) = headers.get("authorization") {
        form.insert("authorization".into(), auth.to_str().unwrap().into());
    }
    server.token_requests.lock().unwrap().push(form.clone());
    if let Some(first) = server.on_first_token.lock().unwrap().take() {
        first();
        return (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
    }
    let mut rotated = None;
    if form.get("grant_type").map(String::as_str) == Some("refresh_token") {
        let mut valid = server.valid_refresh.lock().unwrap();
        if form.get("refresh_token") != valid.as_ref() {
            let error = serde_json::json!({
                "error": "invalid_grant",
                "error_description": "the refresh token was used already",
            });
            return (StatusCode::BAD_REQUEST, Json(error)).into_response();
        }
        let n = *server.issued.lock().unwrap() + 1;
        *valid = Some(format!("rt-{n}"));
        rotated = valid.clone();
    }
    let n = {
        let mut issued = server.issued.lock().unwrap();
        *issued += 1;
        *issued
    };
    let mut answer = serde_json::json!({
        "access_token": format!("at-{n}"),
        "token_type": "Bearer",
        "expires_in": *server.expires_in.lock().unwrap(),
    });
    if let Some(rotated) = rotated {
        answer["refresh_token"] = rotated.into();
    }
    Json(answer).into_response()
}

async fn api(State(server): State<Arc<Server>>, headers: HeaderMap) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    server.api_tokens.lock().unwrap().push(token.clone());
    let mut reject = server.reject_once.lock().unwrap();
    if reject
        .as_ref()
        .is_some_and(|(rejected, _)| *rejected == token)
    {
        let (_, then) = reject.take().unwrap();
        then();
        let challenge = [("www-authenticate", r#"Bearer error="invalid_token""#)];
        return (StatusCode::UNAUTHORIZED, challenge).into_response();
    }
    token.into_response()
}

async fn start() -> (Arc<Server>, String) {
    let server = Arc::new(Server::default());
    *server.expires_in.lock().unwrap() = 3600;
    let app = Router::new()
        .route("/token", post(token))
        .route("/api", any(api))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (server, base)
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn alf(args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_alf"))
        .env_remove("XDG_CACHE_HOME")
        .env("HOME", "")
        .envs(env.iter().copied())
        .args(args)
        .output()
        .await
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `contents` in a new owner-only file in `dir`.
fn private_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[tokio::test]
async fn client_assertion_file_is_read_again_for_every_attempt() {
    let (server, base) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = private_file(dir.path(), "assertion", "eyJhbGciOiJSUzI1NiJ9.first.sig\n");
    // The platform rotates the file while the first attempt is answered
    // (503, retried).
    let rotate = file.clone();
    *server.on_first_token.lock().unwrap() = Some(Box::new(move || {
        std::fs::write(rotate, "eyJhbGciOiJSUzI1NiJ9.second.sig").unwrap();
    }));
    let token_url = format!("{base}/token");
    let file_arg = file.to_str().unwrap();
    let args = [
        "token",
        "--token-url",
        &token_url,
        "--client-id",
        "workload",
        "--client-assertion-file",
        file_arg,
    ];
    let run = alf(&args, &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let seen = server.token_requests();
    assert_eq!(seen.len(), 2, "one retry");
    let assertion = |form: &Form| form["client_assertion"].clone();
    assert_eq!(assertion(&seen[0]), "eyJhbGciOiJSUzI1NiJ9.first.sig");
    assert_eq!(assertion(&seen[1]), "eyJhbGciOiJSUzI1NiJ9.second.sig");
    assert_eq!(
        seen[1]["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    assert_eq!(seen[1]["client_id"], "workload");
    assert!(!run.stderr.contains("second.sig") && !run.stdout.contains("second.sig"));
}

#[tokio::test]
async fn client_assertion_file_excludes_a_secret_in_one_line() {
    let (_, base) = start().await;
    let token_url = format!("{base}/token");
    let run = alf(
        &[
            "token",
            "--token-url",
            &token_url,
            "--client-id",
            "c",
            "--client-assertion-file",
            "/etc/hostname",
            "--client-secret-env",
            "HOME",
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("cannot be used with"), "{}", run.stderr);
}

#[tokio::test]
async fn token_file_is_served_and_read_again_after_a_401() {
    let (server, base) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = private_file(dir.path(), "token", "file-token-1\n");
    // The API refuses the first token; meanwhile the sidecar rotated it.
    let rotate = file.clone();
    *server.reject_once.lock().unwrap() = Some((
        "file-token-1".into(),
        Box::new(move || std::fs::write(rotate, "file-token-2\n").unwrap()),
    ));
    let api = format!("{base}/api");
    let run = alf(&["--token-file", file.to_str().unwrap(), &api], &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "file-token-2");
    assert_eq!(server.api_tokens(), ["file-token-1", "file-token-2"]);
    assert!(server.token_requests().is_empty());
}

#[tokio::test]
async fn token_file_with_token_endpoint_options_is_a_one_line_usage_error() {
    let run = alf(
        &[
            "--token-file",
            "/etc/hostname",
            "--token-url",
            "http://127.0.0.1:1/token",
            "http://127.0.0.1:1/api",
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("--token-url is not used with --token-file"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn token_command_runs_the_program_without_a_shell_before_or_after_the_url() {
    let (server, base) = start().await;
    let api = format!("{base}/api");
    let json = r#"{"access_token":"cmd-token","expires_in":60}"#;
    // Last on the command line: everything after it is the program's.
    let run = alf(&[&api, "--token-command", "printf", "%s", json], &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "cmd-token");
    // Ended by ';', then the URL; `$HOME` reaches printf as it is.
    let json = r#"{"access_token":"cmd-$HOME","expires_in":60}"#;
    let run = alf(&["--token-command", "printf", "%s", json, ";", &api], &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "cmd-$HOME");
    assert_eq!(server.api_tokens(), ["cmd-token", "cmd-$HOME"]);
}

#[tokio::test]
async fn a_failing_or_garbage_token_command_is_a_one_line_error_that_leaks_nothing() {
    let (server, base) = start().await;
    let api = format!("{base}/api");
    let run = alf(&[&api, "--token-command", "false"], &[]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr.starts_with("alf: could not get a token"),
        "{}",
        run.stderr
    );
    let run = alf(
        &[
            &api,
            "--token-command",
            "printf",
            "not json, sekrit-value-123",
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(server.api_tokens().is_empty());
}

#[tokio::test]
async fn subject_and_actor_tokens_from_a_file_and_the_environment_are_exchanged() {
    let (server, base) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let subject = private_file(dir.path(), "subject", "eyJraWQiOiJrOHMifQ.sub.sig\n");
    let token_url = format!("{base}/token");
    let api = format!("{base}/api");
    let args = [
        "--token-url",
        &token_url,
        "--client-id",
        "sts-client",
        "--auth-method",
        "none",
        "--subject-token-file",
        subject.to_str().unwrap(),
        "--subject-token-type",
        "jwt",
        "--actor-token-env",
        "ALF_ACTOR",
        "--requested-token-type",
        "access_token",
        "--audience",
        "https://backend.example",
        "--scope",
        "orders:read",
        &api,
    ];
    let run = alf(&args, &[("ALF_ACTOR", "actor-token-7")]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let seen = &server.token_requests()[0];
    assert_eq!(
        seen["grant_type"],
        "urn:ietf:params:oauth:grant-type:token-exchange"
    );
    assert_eq!(seen["subject_token"], "eyJraWQiOiJrOHMifQ.sub.sig");
    assert_eq!(
        seen["subject_token_type"],
        "urn:ietf:params:oauth:token-type:jwt"
    );
    assert_eq!(seen["actor_token"], "actor-token-7");
    assert_eq!(
        seen["actor_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(
        seen["requested_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(seen["audience"], "https://backend.example");
    assert_eq!(seen["scope"], "orders:read");
    assert_eq!(server.api_tokens(), ["at-1"]);
}

#[tokio::test]
async fn actor_without_subject_and_two_grants_are_one_line_usage_errors() {
    let endpoint = [
        "--token-url",
        "http://127.0.0.1:1/token",
        "--client-id",
        "c",
        "--auth-method",
        "none",
    ];
    let cases: [(Vec<&str>, &str); 3] = [
        (
            [&endpoint[..], &["--actor-token-env", "HOME"]].concat(),
            "needs --subject-token-file or --subject-token-env",
        ),
        (
            vec![
                "--token-file",
                "/etc/hostname",
                "--assertion-file",
                "/etc/hostname",
            ],
            "--token-file and --assertion-file exclude each other",
        ),
        (
            [
                &endpoint[..],
                &[
                    "--subject-token-env",
                    "HOME",
                    "--subject-token-type",
                    "nonsense",
                ],
            ]
            .concat(),
            "--subject-token-type nonsense: not a token type",
        ),
    ];
    for (mut args, expected) in cases {
        args.push("http://127.0.0.1:1/api");
        let run = alf(&args, &[]).await;
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
    }
}

#[tokio::test]
async fn assertion_file_uses_the_jwt_bearer_grant_and_is_read_for_every_fetch() {
    let (server, base) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = private_file(dir.path(), "assertion", "eyJhbGciOiJFUzI1NiJ9.user-1.sig\n");
    let token_url = format!("{base}/token");
    let api = format!("{base}/api");
    // The API refuses the first token; the user's assertion was renewed.
    let rotate = file.clone();
    *server.reject_once.lock().unwrap() = Some((
        "at-1".into(),
        Box::new(move || std::fs::write(rotate, "eyJhbGciOiJFUzI1NiJ9.user-2.sig").unwrap()),
    ));
    let args = [
        "--token-url",
        &token_url,
        "--assertion-file",
        file.to_str().unwrap(),
        "--scope",
        "calendar",
        &api,
    ];
    let run = alf(&args, &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let seen = server.token_requests();
    assert_eq!(seen.len(), 2);
    for form in &seen {
        assert_eq!(
            form["grant_type"],
            "urn:ietf:params:oauth:grant-type:jwt-bearer"
        );
        assert_eq!(form["scope"], "calendar");
        // No client authentication without --client-id.
        assert!(!form.contains_key("authorization") && !form.contains_key("client_id"));
    }
    assert_eq!(seen[0]["assertion"], "eyJhbGciOiJFUzI1NiJ9.user-1.sig");
    assert_eq!(seen[1]["assertion"], "eyJhbGciOiJFUzI1NiJ9.user-2.sig");
    assert_eq!(server.api_tokens(), ["at-1", "at-2"]);
}

/// The options of a public client against `base`'s rotating server.
fn refresh_args<'a>(token_url: &'a str, file: &'a str, api: &'a str) -> Vec<&'a str> {
    vec![
        "--token-url",
        token_url,
        "--client-id",
        "cli",
        "--auth-method",
        "none",
        "--refresh-token-file",
        file,
        api,
    ]
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn two_runs_in_a_row_against_a_rotating_server_both_work_with_a_refresh_token_file() {
    let (server, base) = start().await;
    // Lifetimes shorter than the 30 s margin: every run refreshes.
    *server.expires_in.lock().unwrap() = 20;
    *server.valid_refresh.lock().unwrap() = Some("rt-0".into());
    let dir = tempfile::tempdir().unwrap();
    let file = private_file(dir.path(), "rt", "rt-0\n");
    let (token_url, api) = (format!("{base}/token"), format!("{base}/api"));
    let args = refresh_args(&token_url, file.to_str().unwrap(), &api);

    let first = alf(&args, &[]).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    // One refresh token on a line stays one refresh token on a line.
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "rt-1\n");
    assert_eq!(mode(&file), 0o600);
    let second = alf(&args, &[]).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "rt-2\n");
    let used: Vec<String> = server
        .token_requests()
        .iter()
        .map(|form| form["refresh_token"].clone())
        .collect();
    assert_eq!(used, ["rt-0", "rt-1"]);
    assert_eq!(server.api_tokens(), ["at-1", "at-2"]);

    // What the file replaced: --refresh-token-env with the first refresh
    // token fails now, as the second run did before.
    let stale = [
        "--token-url",
        &token_url,
        "--client-id",
        "cli",
        "--auth-method",
        "none",
        "--refresh-token-env",
        "ALF_RT",
        &api,
    ];
    let run = alf(&stale, &[("ALF_RT", "rt-1")]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("invalid_grant"), "{}", run.stderr);
}

#[tokio::test]
async fn a_saved_token_set_is_served_while_valid_and_kept_after_a_rotation() {
    let (server, base) = start().await;
    *server.valid_refresh.lock().unwrap() = Some("rt-0".into());
    let dir = tempfile::tempdir().unwrap();
    // As alf login --save writes it, the access token long expired.
    let saved = r#"{"access_token":"at-old","token_type":"Bearer","refresh_token":"rt-0","scope":null,"expires_at":1}"#;
    let file = private_file(dir.path(), "tokens.json", saved);
    let (token_url, api) = (format!("{base}/token"), format!("{base}/api"));
    let args = refresh_args(&token_url, file.to_str().unwrap(), &api);

    let first = alf(&args, &[]).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    let set: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(set["refresh_token"], "rt-1");
    assert_eq!(set["access_token"], "at-1");
    assert_eq!(mode(&file), 0o600);
    // The saved access token is still valid: no token request.
    let second = alf(&args, &[]).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(server.token_requests().len(), 1);
    assert_eq!(server.api_tokens(), ["at-1", "at-1"]);
}

#[tokio::test]
async fn a_refresh_token_file_open_to_others_is_refused_with_the_reason_and_kept() {
    use std::os::unix::fs::PermissionsExt;
    let (server, base) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = private_file(dir.path(), "rt", "rt-0\n");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (token_url, api) = (format!("{base}/token"), format!("{base}/api"));
    let run = alf(&refresh_args(&token_url, file.to_str().unwrap(), &api), &[]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("readable or writable by group or others (mode 644)"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("rt-0"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "rt-0\n");
    assert_eq!(mode(&file), 0o644);
    assert!(server.token_requests().is_empty());

    // A symbolic link is refused too, and what it points to is untouched.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    let run = alf(&refresh_args(&token_url, link.to_str().unwrap(), &api), &[]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("symbolic link"), "{}", run.stderr);
}

#[tokio::test]
async fn a_refresh_token_file_of_another_user_is_refused() {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
        eprintln!("skipped: chown to another user needs root");
        return;
    }
    let (server, base) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = private_file(dir.path(), "rt", "rt-0\n");
    std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
    let (token_url, api) = (format!("{base}/token"), format!("{base}/api"));
    let run = alf(&refresh_args(&token_url, file.to_str().unwrap(), &api), &[]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("owned by another user"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::metadata(&file).unwrap().uid(), 65534);
    assert!(server.token_requests().is_empty());
}

#[tokio::test]
async fn redis_shares_the_rotated_token_set_of_the_refresh_token_grant() {
    let (server, base) = start().await;
    *server.valid_refresh.lock().unwrap() = Some("rt-0".into());
    let prefix = format!(
        "alf-test-refresh-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let (token_url, api) = (format!("{base}/token"), format!("{base}/api"));
    let args = [
        "--token-url",
        &token_url,
        "--client-id",
        "cli",
        "--auth-method",
        "none",
        "--refresh-token-env",
        "ALF_RT",
        "--redis",
        "redis://127.0.0.1:6379/",
        "--store-key-prefix",
        &prefix,
        &api,
    ];
    let env = [("ALF_RT", "rt-0")];
    let first = alf(&args, &env).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    // The second process takes the token set from the store.
    let second = alf(&args, &env).await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(server.token_requests().len(), 1);
    // The third one's token is refused: it refreshes with the rotated
    // refresh token from the store, not the stale rt-0 it was given.
    *server.reject_once.lock().unwrap() = Some(("at-1".into(), Box::new(|| {})));
    let third = alf(&args, &env).await;
    assert_eq!(third.code, 0, "{}", third.stderr);
    let used: Vec<String> = server
        .token_requests()
        .iter()
        .map(|form| form["refresh_token"].clone())
        .collect();
    assert_eq!(used, ["rt-0", "rt-1"]);
    assert_eq!(server.api_tokens(), ["at-1", "at-1", "at-1", "at-2"]);
}

#[tokio::test]
async fn the_new_token_options_work_before_and_after_the_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let file = private_file(dir.path(), "token", "file-token-9\n");
    let path = file.to_str().unwrap();
    let json = r#"{"access_token":"cmd-token","expires_in":60}"#;
    let runs: [&[&str]; 4] = [
        &["--token-file", path, "token", "--print-token"],
        &["token", "--print-token", "--token-file", path],
        &[
            "--token-command",
            "printf",
            "%s",
            json,
            ";",
            "token",
            "--print-token",
        ],
        &[
            "token",
            "--print-token",
            "--token-command",
            "printf",
            "%s",
            json,
        ],
    ];
    for args in runs {
        let run = alf(args, &[]).await;
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
        let out: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
        let expected = if args.contains(&"--token-file") {
            "file-token-9"
        } else {
            "cmd-token"
        };
        assert_eq!(out["access_token"], expected, "{args:?}");
    }
}
