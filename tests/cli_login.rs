//! `alf login`: the authorization-code flow with PKCE over a loopback
//! redirect, against an authorization server in this process. The test
//! plays the browser, and the other local processes that can reach the
//! loopback port.

use std::{
    collections::HashMap,
    path::Path,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use axum::{
    extract::State,
    http::{header::LOCATION, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::{self, post},
    Json, Router,
};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use sha2::{Digest, Sha256};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStderr, Command},
};

/// How the authorization server answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A code, exchanged for a token.
    Grant,
    /// The user denies: the redirect carries `error=access_denied`.
    Deny,
    /// A code, but the token endpoint refuses it.
    RefuseCode,
}

struct Server {
    mode: Mode,
    /// The query of the authorization request.
    authorize: Mutex<HashMap<String, String>>,
    /// Token requests served.
    token_requests: AtomicUsize,
}

/// An `error_description` a hostile server could send: it would retitle
/// the terminal (ESC ] 0; … BEL) and fake an `alf:` line (CR LF).
const HOSTILE: &str = "no\x1b]0;pwned\x07\r\nalf: signed in";

async fn authorize(State(server): State<Arc<Server>>, uri: Uri) -> Response {
    let query: HashMap<String, String> =
        form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let location = if server.mode == Mode::Deny {
        let description: String = form_urlencoded::byte_serialize(HOSTILE.as_bytes()).collect();
        format!(
            "{}?error=access_denied&error_description={description}&state={}",
            query["redirect_uri"], query["state"]
        )
    } else {
        format!(
            "{}?code=code-1&state={}",
            query["redirect_uri"], query["state"]
        )
    };
    *server.authorize.lock().unwrap() = query;
    (StatusCode::FOUND, [(LOCATION, location)]).into_response()
}

async fn token(State(server): State<Arc<Server>>, body: String) -> Response {
    server.token_requests.fetch_add(1, Ordering::SeqCst);
    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let asked = server.authorize.lock().unwrap().clone();
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(form["code_verifier"].as_bytes()));
    let valid = server.mode == Mode::Grant
        && form["grant_type"] == "authorization_code"
        && form["code"] == "code-1"
        && form["redirect_uri"] == asked["redirect_uri"]
        && form["client_id"] == "cli"
        && asked["code_challenge_method"] == "S256"
        && challenge == asked["code_challenge"];
    if !valid {
        return (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": "invalid_grant"})),
        )
            .into_response();
    }
    Json(serde_json::json!({
        "access_token": "at-login",
        "token_type": "Bearer",
        "expires_in": 3600,
        "refresh_token": "rt-login",
        "scope": "openid offline_access",
    }))
    .into_response()
}

async fn start(mode: Mode) -> (Arc<Server>, String) {
    let server = Arc::new(Server {
        mode,
        authorize: Mutex::default(),
        token_requests: AtomicUsize::new(0),
    });
    let app = Router::new()
        .route("/authorize", routing::get(authorize))
        .route("/token", post(token))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (server, base)
}

fn alf_login(base: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_alf"));
    command
        .args([
            "login",
            "--client-id",
            "cli",
            "--scope",
            "openid",
            "--scope",
            "offline_access",
        ])
        .args(["--token-url", &format!("{base}/token")])
        .args(["--authorization-url", &format!("{base}/authorize")])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    command
}

/// A running `alf login` that has printed the URL to open.
struct Login {
    child: Child,
    stderr: Lines<BufReader<ChildStderr>>,
    seen: String,
    /// The authorization URL alf printed.
    url: String,
}

impl Login {
    async fn start(base: &str, extra: &[&str]) -> Self {
        let mut child = alf_login(base, extra).spawn().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = String::new();
        let url = loop {
            let line = stderr
                .next_line()
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("alf prints the URL; it printed {seen}"));
            seen.push_str(&line);
            seen.push('\n');
            if line.starts_with("http") {
                break line;
            }
        };
        Self {
            child,
            stderr,
            seen,
            url,
        }
    }

    /// A parameter of the authorization URL.
    fn param(&self, name: &str) -> String {
        let query = self.url.split_once('?').unwrap().1;
        form_urlencoded::parse(query.as_bytes())
            .find(|(n, _)| n == name)
            .unwrap()
            .1
            .into_owned()
    }

    /// The redirect URI alf listens on, from the authorization URL.
    fn redirect_uri(&self) -> String {
        self.param("redirect_uri")
    }

    /// The browser at the authorization server: where it is sent back.
    async fn callback(&self) -> String {
        let (status, location, _) = get(&self.url).await;
        assert_eq!(status, 302);
        let callback = location.unwrap();
        assert!(callback.starts_with("http://127.0.0.1:"), "{callback}");
        callback
    }

    /// Waits for alf to exit: its exit code, stdout and stderr.
    async fn finish(mut self) -> (i32, String, String) {
        let lines = async {
            while let Some(line) = self.stderr.next_line().await.unwrap() {
                self.seen.push_str(&line);
                self.seen.push('\n');
            }
        };
        tokio::time::timeout(Duration::from_secs(20), lines)
            .await
            .expect("alf exits");
        let out = self.child.wait_with_output().await.unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            self.seen,
        )
    }
}

/// A GET: status, `Location`, body.
async fn get(url: &str) -> (u16, Option<String>, String) {
    send(http::Method::GET, url).await
}

async fn send(method: http::Method, url: &str) -> (u16, Option<String>, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = http::Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(20), client.request(request))
        .await
        .expect("an answer")
        .unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get(LOCATION)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        location,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// The whole login as the user's browser does it: the page it shows and
/// alf's exit code, stdout and stderr.
async fn login(base: &str, extra: &[&str]) -> (u16, String, (i32, String, String)) {
    let login = Login::start(base, extra).await;
    let callback = login.callback().await;
    let (status, _, page) = get(&callback).await;
    (status, page, login.finish().await)
}

#[tokio::test]
async fn login_exchanges_the_code_with_pkce_and_saves_the_token_set_privately() {
    let (server, base) = start(Mode::Grant).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.json");
    let (status, page, (code, stdout, stderr)) =
        login(&base, &["--save", path.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(status, 200);
    assert!(page.contains("Signed in"), "{page}");
    let metadata: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(metadata["refresh_token"], true);
    assert!(!stdout.contains("at-login") && !stderr.contains("rt-login"));

    let asked = server.authorize.lock().unwrap().clone();
    assert_eq!(asked["scope"], "openid offline_access");
    assert!(asked["redirect_uri"].ends_with("/callback"));

    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(saved["refresh_token"], "rt-login");
    assert_eq!(saved["access_token"], "at-login");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Only FILE is left: no temporary file.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["token.json"]);
}

#[tokio::test]
async fn a_denied_login_tells_the_browser_and_reports_the_servers_error_escaped() {
    let (server, base) = start(Mode::Deny).await;
    let (status, page, (code, _, stderr)) = login(&base, &[]).await;
    assert_eq!(code, 1);
    assert_eq!(status, 403);
    assert!(
        page.contains("denied") && !page.contains("Signed in"),
        "{page}"
    );
    assert!(stderr.contains("access_denied"), "{stderr}");
    // The server's description is there, with its controls escaped: no
    // ESC, BEL or CR reached the terminal, and no line of its own.
    assert!(stderr.contains("pwned"), "{stderr}");
    assert!(!stderr.contains(['\x1b', '\x07', '\r']), "{stderr:?}");
    assert!(!stderr
        .lines()
        .any(|line| line.starts_with("alf: signed in")));
    assert_eq!(server.token_requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_refused_code_tells_the_browser_the_login_failed() {
    let (server, base) = start(Mode::RefuseCode).await;
    let (status, page, (code, stdout, stderr)) = login(&base, &[]).await;
    assert_eq!(code, 1);
    assert_eq!(status, 502);
    assert!(
        page.contains("failed") && !page.contains("Signed in"),
        "{page}"
    );
    assert!(stderr.contains("invalid_grant"), "{stderr}");
    assert!(stdout.is_empty());
    assert_eq!(server.token_requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_forged_callback_first_is_refused_and_the_real_one_signs_in() {
    let (_, base) = start(Mode::Grant).await;
    let login = Login::start(&base, &[]).await;
    // Another local process, before the browser.
    let forged = format!("{}?code=stolen&state=forged", login.redirect_uri());
    let (status, _, page) = get(&forged).await;
    assert_eq!(status, 400);
    assert!(page.contains("still waiting"), "{page}");
    // No state at all, and this login's state twice, are forged too.
    let (status, _, _) = get(&format!("{}?code=stolen", login.redirect_uri())).await;
    assert_eq!(status, 400);
    let state = login.param("state");
    let twice = format!(
        "{}?code=stolen&state={state}&state={state}",
        login.redirect_uri()
    );
    let (status, _, _) = get(&twice).await;
    assert_eq!(status, 400);

    let callback = login.callback().await;
    let (status, _, page) = get(&callback).await;
    assert_eq!(status, 200);
    assert!(page.contains("Signed in"), "{page}");
    let (code, stdout, stderr) = login.finish().await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("\"refresh_token\":true"), "{stdout}");
    assert!(stderr.contains("ignored a callback"), "{stderr}");
}

#[tokio::test]
async fn only_get_on_the_callback_path_is_served() {
    let (server, base) = start(Mode::Grant).await;
    let login = Login::start(&base, &[]).await;
    let callback = login.callback().await;
    let (root, query) = callback.split_once("/callback?").unwrap();
    // The real state, but the wrong method or path: not taken.
    let (status, _, _) = send(http::Method::POST, &callback).await;
    assert_eq!(status, 405);
    for path in ["/callbackx?", "/callback/?", "/other?", "/Callback?"] {
        let (status, _, _) = get(&format!("{root}{path}{query}")).await;
        assert_eq!(status, 404, "{path}");
    }
    assert_eq!(server.token_requests.load(Ordering::SeqCst), 0);
    let (status, _, _) = get(&callback).await;
    assert_eq!(status, 200);
    let (code, _, stderr) = login.finish().await;
    assert_eq!(code, 0, "{stderr}");
}

#[tokio::test]
async fn an_idle_connection_does_not_stall_the_login() {
    let (_, base) = start(Mode::Grant).await;
    let login = Login::start(&base, &[]).await;
    let authority = login.redirect_uri()["http://".len()..]
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    // One connection that says nothing, one that stops mid-request.
    let _idle = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let mut slow = tokio::net::TcpStream::connect(&authority).await.unwrap();
    slow.write_all(b"GET /callback?sta").await.unwrap();

    let callback = login.callback().await;
    let started = std::time::Instant::now();
    let (status, _, _) = get(&callback).await;
    assert_eq!(status, 200);
    // Served at once, not after the idle ones time out (10 s).
    assert!(started.elapsed() < Duration::from_secs(5));
    let (code, _, stderr) = login.finish().await;
    assert_eq!(code, 0, "{stderr}");
}

#[tokio::test]
async fn a_reset_connection_does_not_end_the_login() {
    let (_, base) = start(Mode::Grant).await;
    let login = Login::start(&base, &[]).await;
    let authority = login.redirect_uri()["http://".len()..]
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    for _ in 0..3 {
        let stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
        let mut stream = stream;
        stream
            .write_all(b"GET /callback?state=x HTTP/1.1\r\n")
            .await
            .unwrap();
        stream.set_zero_linger().unwrap();
        drop(stream);
    }
    let callback = login.callback().await;
    let (status, _, _) = get(&callback).await;
    assert_eq!(status, 200);
    let (code, _, stderr) = login.finish().await;
    assert_eq!(code, 0, "{stderr}");
}

#[tokio::test]
async fn a_callback_with_a_repeated_code_is_refused() {
    let (server, base) = start(Mode::Grant).await;
    let login = Login::start(&base, &[]).await;
    let callback = login.callback().await;
    let (status, _, page) = get(&format!("{callback}&code=code-2")).await;
    assert_eq!(status, 502);
    assert!(page.contains("failed"), "{page}");
    let (code, stdout, stderr) = login.finish().await;
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert!(stderr.contains("repeats the parameter code"), "{stderr}");
    assert_eq!(server.token_requests.load(Ordering::SeqCst), 0);
}

/// `alf login --save FILE` run to its end without a browser: it must stop
/// before printing the URL.
async fn login_refused(base: &str, save: &Path) -> (i32, String) {
    let out = alf_login(base, &["--save", save.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("Open this URL"), "{stderr}");
    (out.status.code().unwrap_or(-1), stderr)
}

#[tokio::test]
async fn save_through_a_symlink_is_refused_before_the_url_and_the_target_is_untouched() {
    let (server, base) = start(Mode::Grant).await;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("precious");
    std::fs::write(&target, "keep me\n").unwrap();
    let link = dir.path().join("token.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let before = std::fs::metadata(&target).unwrap();

    let (code, stderr) = login_refused(&base, &link).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert!(stderr.contains(link.to_str().unwrap()), "{stderr}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me\n");
    let after = std::fs::metadata(&target).unwrap();
    assert_eq!(after.permissions(), before.permissions());
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(server.token_requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn save_over_a_file_of_another_user_is_refused() {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
        eprintln!("skipped: chown to another user needs root");
        return;
    }
    let (_, base) = start(Mode::Grant).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.json");
    std::fs::write(&path, "theirs\n").unwrap();
    // nobody
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();

    let (code, stderr) = login_refused(&base, &path).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("owned by another user"), "{stderr}");
    assert!(stderr.contains(path.to_str().unwrap()), "{stderr}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "theirs\n");
    assert_eq!(std::fs::metadata(&path).unwrap().uid(), 65534);
}

#[tokio::test]
async fn save_over_a_file_open_to_others_is_refused_with_the_reason() {
    let (server, base) = start(Mode::Grant).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.json");
    std::fs::write(&path, "someone's\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let open = std::fs::Permissions::from_mode(0o644);
        std::fs::set_permissions(&path, open).unwrap();
    }
    let (code, stderr) = login_refused(&base, &path).await;
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("readable or writable by group or others (mode 644)"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "someone's\n");
    assert_eq!(server.token_requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn save_in_a_missing_directory_fails_before_the_url_naming_the_path() {
    let (_, base) = start(Mode::Grant).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("token.json");
    let (code, stderr) = login_refused(&base, &path).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(path.to_str().unwrap()), "{stderr}");
}

#[tokio::test]
async fn save_replaces_the_file_atomically() {
    use std::io::Read;
    let (_, base) = start(Mode::Grant).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.json");
    std::fs::write(&path, "old contents\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        let private = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(&path, private).unwrap();
    }
    // A reader that opened FILE before the login.
    let mut reader = std::fs::File::open(&path).unwrap();

    let (status, _, (code, _, stderr)) = login(&base, &["--save", path.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(status, 200);
    let mut old = String::new();
    reader.read_to_string(&mut old).unwrap();
    assert_eq!(old, "old contents\n");
    assert!(!old.contains("rt-login"));
    let new = std::fs::read_to_string(&path).unwrap();
    assert!(new.contains("rt-login"), "{new}");
}

#[tokio::test]
async fn a_failed_save_still_prints_the_metadata_and_tells_the_browser() {
    let (_, base) = start(Mode::Grant).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token.json");
    let login = Login::start(&base, &["--save", path.to_str().unwrap()]).await;
    // FILE turns into a link while the user signs in.
    std::os::unix::fs::symlink("/etc/passwd", &path).unwrap();
    let callback = login.callback().await;
    let (status, _, page) = get(&callback).await;
    assert_eq!(status, 200);
    assert!(page.contains("could not save"), "{page}");
    let (code, stdout, stderr) = login.finish().await;
    assert_eq!(code, 2, "{stderr}");
    let metadata: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(metadata["refresh_token"], true);
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert!(stderr.contains(path.to_str().unwrap()), "{stderr}");
    assert!(std::fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_symlink());
}
