//! The `alf` binary with the JWT, service-account, refresh-token and
//! discovery options, against a token endpoint over loopback.

#[path = "recording_endpoint/mod.rs"]
mod support;

use serde_json::json;
use tokio::process::Command;

/// alf without a token cache between runs (no cache directory: neither
/// `$XDG_CACHE_HOME` nor `$HOME`), as these tests were written; the cache
/// has its own tests in tests/cli_cache.rs.
fn alf_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_alf"));
    command.env_remove("XDG_CACHE_HOME").env("HOME", "");
    command
}

use support::{keys, verify, TokenServer};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

struct Output {
    code: i32,
    stderr: String,
}

async fn alf(args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = alf_command()
        .args(args)
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn private_key_jwt_with_a_key_file_key_id_and_alg() {
    let server = TokenServer::start().await;
    let key = format!("{FIXTURES}/rsa_pkcs1.pem");
    let url = server.token_url();
    let args = [
        "token",
        "--token-url",
        &url,
        "--client-id",
        "cli",
        "--auth-method",
        "private_key_jwt",
        "--private-key",
        &key,
        "--key-id",
        "k-9",
        "--alg",
        "PS256",
    ];
    let out = alf(&args, &[]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let got = server.last();
    let (header, claims) = verify(
        got.field("client_assertion"),
        "PS256",
        keys::RSA_PUBLIC,
        &url,
    );
    assert_eq!(header.kid.as_deref(), Some("k-9"));
    assert_eq!(claims["iss"], "cli");
}

#[tokio::test]
async fn client_secret_jwt_and_basic_raw_use_the_secret() {
    let server = TokenServer::start().await;
    let url = server.token_url();
    for method in ["jwt", "basic-raw"] {
        let args = [
            "token",
            "--token-url",
            &url,
            "--client-id",
            "cli",
            "--auth-method",
            method,
            "--client-secret-env",
            "ALF_SECRET",
        ];
        let out = alf(&args, &[("ALF_SECRET", "a secret")]).await;
        assert_eq!(out.code, 0, "{method}: {}", out.stderr);
    }
    let received = server.received();
    assert!(received[0].field("client_assertion").starts_with("ey"));
    assert_eq!(received[1].basic().unwrap(), "cli:a secret");
}

#[tokio::test]
async fn a_service_account_file_uses_the_jwt_bearer_grant() {
    let server = TokenServer::start().await;
    let file = json!({
        "type": "service_account",
        "private_key_id": "sa-kid",
        "private_key": keys::P256_PKCS8,
        "client_email": "robot@example",
        "token_uri": server.token_url(),
    });
    let path = std::env::temp_dir().join(format!("alf-sa-{}.json", std::process::id()));
    std::fs::write(&path, file.to_string()).unwrap();
    let out = alf(
        &[
            "token",
            "--service-account",
            path.to_str().unwrap(),
            "--scope",
            "s1",
        ],
        &[],
    )
    .await;
    std::fs::remove_file(&path).unwrap();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let got = server.last();
    assert_eq!(
        got.field("grant_type"),
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    let (_, claims) = verify(
        got.field("assertion"),
        "ES256",
        keys::P256_PUBLIC,
        &server.token_url(),
    );
    assert_eq!(claims["scope"], "s1");
}

#[tokio::test]
async fn refresh_token_env_uses_the_refresh_token_grant() {
    let server = TokenServer::start().await;
    let url = server.token_url();
    let args = [
        "token",
        "--token-url",
        &url,
        "--client-id",
        "cli",
        "--auth-method",
        "none",
        "--refresh-token-env",
        "ALF_RT",
    ];
    let out = alf(&args, &[("ALF_RT", "rt-cli")]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let got = server.last();
    assert_eq!(got.names(), ["grant_type", "refresh_token", "client_id"]);
    assert_eq!(got.field("refresh_token"), "rt-cli");
}

#[tokio::test]
async fn a_revoked_refresh_token_says_to_sign_in_again() {
    let server = TokenServer::start().await;
    server.answer(400, json!({"error": "invalid_grant"}));
    let url = server.token_url();
    let args = [
        "token",
        "--token-url",
        &url,
        "--client-id",
        "cli",
        "--auth-method",
        "none",
        "--refresh-token-env",
        "ALF_RT",
    ];
    let out = alf(&args, &[("ALF_RT", "rt-revoked")]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("invalid_grant"), "{}", out.stderr);
    assert!(out.stderr.contains("sign in again"), "{}", out.stderr);
    assert!(!out.stderr.contains("rt-revoked"));
}

#[tokio::test]
async fn issuer_discovers_the_endpoint_and_a_supported_method() {
    let server = TokenServer::start().await;
    let issuer = server.issuer();
    // The server lists private_key_jwt and client_secret_post, not basic.
    let args = [
        "token",
        "--issuer",
        &issuer,
        "--client-id",
        "cli",
        "--client-secret-env",
        "ALF_SECRET",
    ];
    let out = alf(&args, &[("ALF_SECRET", "s")]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(server.last().field("client_secret"), "s");

    let args = [
        "token",
        "--issuer",
        &issuer,
        "--client-id",
        "cli",
        "--auth-method",
        "basic",
        "--client-secret-env",
        "ALF_SECRET",
    ];
    let out = alf(&args, &[("ALF_SECRET", "s")]).await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("private_key_jwt, client_secret_post"),
        "{}",
        out.stderr
    );
}
