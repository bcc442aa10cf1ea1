//! `grant::TokenCommand`: a token from a program's JSON output, with
//! small `#!/bin/sh` scripts the tests write into a temp dir.

mod support;

use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use support::{eventually, hold_clock};
use tower_alf::{grant::TokenCommand, TokenSource};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("alf-command-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes an executable `#!/bin/sh` script.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn a_command_token_is_served_and_its_arguments_are_never_given_to_a_shell() {
    let dir = temp_dir("serve");
    let current = dir.join("current");
    std::fs::write(&current, "cmd-1").unwrap();
    let program = script(
        &dir,
        "token",
        r#"printf '{"access_token":"%s","expires_in":3600,"scope":"read","arg":"%s"}' "$(cat "$1")" "$2""#,
    );
    let tricky = "$(touch pwned); `touch pwned2` *";
    let source = TokenSource::builder(TokenCommand::new(&program).arg(&current).arg(tricky))
        .rejection_interval(Duration::ZERO)
        .build();

    let first = source.token().await.unwrap();
    assert_eq!(first.access_token().secret(), "cmd-1");
    assert_eq!(first.scope(), Some("read"));
    assert_eq!(first.lifetime(), Some(Duration::from_secs(3600)));
    assert_eq!(first.extra()["arg"], tricky);
    assert!(!Path::new("pwned").exists() && !dir.join("pwned").exists());

    // The command runs again for every fetch: a new token is picked up.
    std::fs::write(&current, "cmd-2").unwrap();
    let second = source.invalidate(first.id()).await.unwrap();
    assert_eq!(second.access_token().secret(), "cmd-2");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn an_rfc_3339_expiration_sets_the_expiry() {
    let dir = temp_dir("expiration");
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    // Formatted by `date`, as a plugin would.
    let program = script(
        &dir,
        "token",
        &format!(
            r#"printf '{{"access_token":"t","expiration":"%s"}}' "$(date -u -d @{at} +%Y-%m-%dT%H:%M:%SZ)""#
        ),
    );
    let token = TokenSource::new(TokenCommand::new(program))
        .token()
        .await
        .unwrap();
    let expires = token.expires_at_system_time().unwrap();
    let unix = expires.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    assert!((unix - at as f64).abs() < 2.0, "{unix} vs {at}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_failing_command_is_a_typed_error_that_keeps_its_output_and_stderr_out() {
    let dir = temp_dir("garbage");
    let cases = [
        (
            script(&dir, "html", "echo '<html>access_token=s3cr3t-out</html>'"),
            "is not a JSON object",
        ),
        (
            script(
                &dir,
                "exit",
                r#"echo s3cr3t-err >&2; echo '{"access_token":"s3cr3t-out"}'; exit 3"#,
            ),
            "failed (exit status: 3)",
        ),
        (
            script(&dir, "no_token", r#"echo '{"token":"s3cr3t-out"}'"#),
            "has no access_token",
        ),
        (
            script(
                &dir,
                "bad_expiry",
                r#"echo '{"access_token":"s3cr3t-out","expiration":"soon"}'"#,
            ),
            "not an RFC 3339 time",
        ),
        (
            script(&dir, "huge", "head -c 70000 /dev/zero | tr '\\0' a"),
            "wrote more than 64 KiB",
        ),
    ];
    for (program, says) in cases {
        let e = TokenSource::new(TokenCommand::new(&program))
            .token()
            .await
            .unwrap_err();
        let shown = format!("{e} {e:?} {:?}", e.body_excerpt());
        assert!(shown.contains(says), "{shown}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.len() < 2_000, "unbounded: {} bytes", shown.len());
    }
    let e = TokenSource::new(TokenCommand::new("/nonexistent/alf-token-plugin"))
        .token()
        .await
        .unwrap_err();
    assert!(
        e.is_permanent() && e.to_string().contains("cannot run"),
        "{e}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_command_that_hangs_is_killed_at_its_timeout() {
    let dir = temp_dir("hang");
    let pid_file = dir.join("pid");
    let program = script(&dir, "hang", r#"echo $$ > "$1"; exec sleep 30"#);
    let e = TokenSource::new(
        TokenCommand::new(program)
            .arg(&pid_file)
            .timeout(Duration::from_millis(500)),
    )
    .token()
    .await
    .unwrap_err();
    assert!(
        e.is_retryable() && e.to_string().contains("did not finish"),
        "{e}"
    );
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let stat = format!("/proc/{}/stat", pid.trim());
    eventually("the hung command to be killed", || {
        // Gone, or a zombie waiting to be reaped.
        std::fs::read_to_string(&stat).map_or(true, |s| s.contains(") Z"))
    })
    .await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_valid_token_keeps_serving_while_its_command_fails() {
    let _clock = hold_clock();
    let dir = temp_dir("stale");
    let fail = dir.join("fail");
    let program = script(
        &dir,
        "token",
        r#"if [ -f "$1" ]; then echo broken; exit 7; fi; echo '{"access_token":"good","expires_in":100}'"#,
    );
    let source = TokenSource::builder(TokenCommand::new(program).arg(&fail))
        .jitter(0.0)
        .build();
    assert_eq!(
        source.token().await.unwrap().access_token().secret(),
        "good"
    );

    std::fs::write(&fail, "").unwrap();
    tokio::time::advance(Duration::from_secs(80)).await;
    // Stale: served at once while the background run fails.
    assert_eq!(
        source.token().await.unwrap().access_token().secret(),
        "good"
    );
    eventually("the background run to fail", || {
        source.stats().failures == 1
    })
    .await;
    assert_eq!(
        source.token().await.unwrap().access_token().secret(),
        "good"
    );
    assert_eq!(source.stats().fetches, 2);
    std::fs::remove_dir_all(dir).unwrap();
}
