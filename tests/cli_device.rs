//! `alf login --device`: the device authorization grant (RFC 8628) through
//! the built binary, against a device authorization endpoint and a token
//! endpoint in this process that script the user's answer. The server's
//! `interval` is 1 s (the library's floor), so a run polls in real seconds,
//! a few at most.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
    Json, Router,
};

/// What the user does, and what the device endpoint says.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Approves after two `authorization_pending` polls.
    Approve,
    /// Refuses after one `authorization_pending` poll.
    Deny,
    /// Never approves: the server says `expired_token`.
    Expire,
    /// The device endpoint answers without a `device_code`.
    Garbage,
    /// The device endpoint sends `verification_uri_complete`.
    Complete,
}

struct Server {
    mode: Mode,
    device_requests: AtomicUsize,
    polls: AtomicUsize,
    /// The last poll's form.
    poll_form: std::sync::Mutex<HashMap<String, String>>,
}

async fn device(State(server): State<Arc<Server>>, body: String) -> Response {
    server.device_requests.fetch_add(1, Ordering::SeqCst);
    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(form["client_id"], "cli");
    assert_eq!(form["scope"], "openid offline_access");
    let mut answer = serde_json::json!({
        "device_code": "dc-secret-1",
        "user_code": "WDJB-MJHT",
        "verification_uri": "http://127.0.0.1/device",
        "expires_in": 600,
        "interval": 1,
    });
    match server.mode {
        Mode::Garbage => {
            answer.as_object_mut().unwrap().remove("device_code");
        }
        Mode::Complete => {
            answer["verification_uri_complete"] =
                "http://127.0.0.1/device?user_code=WDJB-MJHT".into();
        }
        _ => {}
    }
    Json(answer).into_response()
}

async fn token(State(server): State<Arc<Server>>, body: String) -> Response {
    let poll = server.polls.fetch_add(1, Ordering::SeqCst) + 1;
    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    *server.poll_form.lock().unwrap() = form;
    let error = |code: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({
                "error": code,
                "error_description": "said \x1b]0;pwned\x07 the server",
            })),
        )
            .into_response()
    };
    match server.mode {
        Mode::Approve | Mode::Complete if poll > 2 => Json(serde_json::json!({
            "access_token": "at-device",
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": "rt-device",
            "scope": "openid offline_access",
        }))
        .into_response(),
        Mode::Deny if poll > 1 => error("access_denied"),
        Mode::Expire => error("expired_token"),
        _ => error("authorization_pending"),
    }
}

async fn start(mode: Mode) -> (Arc<Server>, String) {
    let server = Arc::new(Server {
        mode,
        device_requests: AtomicUsize::new(0),
        polls: AtomicUsize::new(0),
        poll_form: Default::default(),
    });
    let app = Router::new()
        .route("/device", post(device))
        .route("/token", post(token))
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (server, base)
}

/// Runs `alf login --device` to its end: exit code, stdout, stderr.
async fn alf_device(base: &str, extra: &[&str]) -> (i32, String, String) {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_alf"))
        .args([
            "login",
            "--device",
            "--client-id",
            "cli",
            "--scope",
            "openid",
            "--scope",
            "offline_access",
        ])
        .args(["--token-url", &format!("{base}/token")])
        .args(["--device-url", &format!("{base}/device")])
        .args(extra)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("alf exits")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn an_approval_after_two_pending_polls_saves_the_token_set() {
    let (server, base) = start(Mode::Approve).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let (code, stdout, stderr) = alf_device(&base, &["--save", file.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("http://127.0.0.1/device\nand enter the code WDJB-MJHT"),
        "{stderr}"
    );
    assert_eq!(server.device_requests.load(Ordering::SeqCst), 1);
    assert_eq!(server.polls.load(Ordering::SeqCst), 3);
    let form = server.poll_form.lock().unwrap().clone();
    assert_eq!(
        form["grant_type"],
        "urn:ietf:params:oauth:grant-type:device_code"
    );
    assert_eq!(form["device_code"], "dc-secret-1");
    // The metadata on stdout, as alf login prints it; no token, no code.
    let metadata: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(metadata["refresh_token"], true);
    assert_eq!(metadata["scope"], "openid offline_access");
    for secret in ["at-device", "rt-device", "dc-secret-1"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{secret}"
        );
    }
    // Saved as alf login --save saves: owner-only JSON with both tokens.
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(saved["access_token"], "at-device");
    assert_eq!(saved["refresh_token"], "rt-device");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(stderr.contains("saved the token set to"), "{stderr}");
}

#[tokio::test]
async fn the_complete_verification_uri_is_shown_when_the_server_sends_one() {
    let (_, base) = start(Mode::Complete).await;
    let (code, _, stderr) = alf_device(&base, &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("http://127.0.0.1/device?user_code=WDJB-MJHT\nand check that it shows the code WDJB-MJHT"),
        "{stderr}"
    );
}

#[tokio::test]
async fn qr_prints_the_complete_verification_uri_as_a_qr_code() {
    use qrcode::render::unicode::Dense1x2;
    let (_, base) = start(Mode::Complete).await;
    let (code, _, stderr) = alf_device(&base, &["--qr"]).await;
    assert_eq!(code, 0, "{stderr}");
    // The code of the URL to open, with the code in it, and not another.
    let expected = qrcode::QrCode::new("http://127.0.0.1/device?user_code=WDJB-MJHT")
        .unwrap()
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build();
    assert!(stderr.contains(&expected), "{stderr}");
    // Without --qr, none.
    let (code, _, stderr) = alf_device(&base, &[]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !stderr.contains('\u{2580}') && !stderr.contains('\u{2588}'),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_refused_sign_in_exits_3_with_one_escaped_line() {
    let (server, base) = start(Mode::Deny).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let (code, stdout, stderr) = alf_device(&base, &["--save", file.to_str().unwrap()]).await;
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(server.polls.load(Ordering::SeqCst), 2);
    assert!(stdout.is_empty(), "{stdout}");
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("alf: the sign-in was refused: ") && last.contains("access_denied"),
        "{stderr}"
    );
    // The server's description is there, its control characters escaped.
    assert!(last.contains("]0;pwned"), "{stderr}");
    assert!(
        !stderr.contains('\x1b') && !stderr.contains('\x07'),
        "{stderr:?}"
    );
    assert!(!file.exists(), "nothing saved");
}

#[tokio::test]
async fn an_expired_code_exits_4() {
    let (server, base) = start(Mode::Expire).await;
    let (code, stdout, stderr) = alf_device(&base, &[]).await;
    assert_eq!(code, 4, "{stderr}");
    assert_eq!(server.polls.load(Ordering::SeqCst), 1);
    assert!(stdout.is_empty(), "{stdout}");
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("alf: the code expired before the sign-in was approved"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_device_endpoint_answering_without_a_device_code_exits_1_before_any_poll() {
    let (server, base) = start(Mode::Garbage).await;
    let (code, stdout, stderr) = alf_device(&base, &[]).await;
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(server.polls.load(Ordering::SeqCst), 0);
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("alf: "), "{stderr}");
    assert!(stderr.contains("device_code"), "{stderr}");
}

#[tokio::test]
async fn device_flags_that_cannot_work_are_usage_errors() {
    let (server, base) = start(Mode::Approve).await;
    // No device endpoint and no issuer to find it.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_alf"))
        .args(["login", "--device", "--client-id", "cli"])
        .args(["--token-url", &format!("{base}/token")])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--device-url (or --issuer) is required"),
        "{stderr}"
    );
    // --device with the authorization-code flow's options.
    let (code, _, stderr) = alf_device(&base, &["--authorization-url", "http://127.0.0.1/a"]).await;
    assert_eq!(code, 2, "{stderr}");
    // --device-url without --device.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_alf"))
        .args([
            "login",
            "--client-id",
            "cli",
            "--device-url",
            "http://127.0.0.1/d",
        ])
        .args(["--token-url", &format!("{base}/token")])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(server.device_requests.load(Ordering::SeqCst), 0);
}
