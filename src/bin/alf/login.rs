//! `alf login`: the authorization-code flow with PKCE and a loopback
//! redirect (RFC 8252 §7.3).

use std::{path::Path, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tower::BoxError;
use tower_alf::{grant::AuthorizationCode, Token};

use crate::{
    args::{AuthMethod, OAuthArgs},
    tokens::{self, Usage},
};

/// How long to wait for the browser to come back.
const WAIT: Duration = Duration::from_secs(300);

pub(crate) async fn run(
    args: &OAuthArgs,
    authorization_url: Option<&str>,
    port: u16,
    save: Option<&Path>,
) -> Result<Token, BoxError> {
    let default = if tokens::has_credentials(args) {
        AuthMethod::Basic
    } else {
        AuthMethod::None
    };
    let (endpoint, metadata) = tokens::token_endpoint(args, default).await?;
    let authorization_url = match (authorization_url, &metadata) {
        (Some(url), _) => url.to_owned(),
        (None, Some(metadata)) => metadata
            .get("authorization_endpoint")
            .and_then(|v| v.as_str())
            .ok_or_else(|| Usage("the server's metadata has no authorization_endpoint".into()))?
            .to_owned(),
        (None, None) => {
            return Err(Usage("--authorization-url (or --issuer) is required".into()).into())
        }
    };

    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let redirect_uri = format!(
        "http://127.0.0.1:{}/callback",
        listener.local_addr()?.port()
    );
    let mut flow = AuthorizationCode::new(endpoint, authorization_url, &redirect_uri);
    for scope in &args.scopes {
        flow = flow.scope(scope);
    }
    for (name, value) in &args.params {
        flow = flow.param(name, value);
    }
    let pending = flow.authorize()?;
    eprintln!(
        "Open this URL in your browser to sign in:\n{}",
        pending.url()
    );

    let target = tokio::time::timeout(WAIT, callback(&listener))
        .await
        .map_err(|_| Usage("no sign-in within 5 minutes".into()))??;
    let token = pending.finish(&target).await?;
    if let Some(path) = save {
        save_token(path, &token)?;
        eprintln!("saved the token set to {}", path.display());
    }
    Ok(token)
}

/// Serves the loopback redirect until the browser comes back to
/// `/callback`; returns its request target.
async fn callback(listener: &TcpListener) -> Result<String, BoxError> {
    loop {
        let (mut stream, _) = listener.accept().await?;
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&head);
        let target = head
            .lines()
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .unwrap_or_default()
            .to_owned();
        if !target.starts_with("/callback") {
            let _ = stream
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            continue;
        }
        let body = "<!doctype html><title>alf</title><p>Signed in: you can close this window \
                    and return to the terminal.</p>";
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
        return Ok(target);
    }
}

/// Writes the token set as JSON to a file only its owner can read.
fn save_token(path: &Path, token: &Token) -> Result<(), BoxError> {
    use std::io::Write;
    let expires_at = token.lifetime().and_then(|lifetime| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        Some((now + lifetime).as_secs())
    });
    let json = serde_json::json!({
        "access_token": token.access_token().secret(),
        "token_type": token.token_type().scheme(),
        "refresh_token": token.refresh_token().map(|t| t.secret()),
        "scope": token.scope(),
        "expires_at": expires_at,
    });
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let mut file = options.open(path)?;
        // An existing file keeps its mode on open: narrow it too.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        writeln!(file, "{json}")?;
    }
    #[cfg(not(unix))]
    {
        let mut file = options.open(path)?;
        writeln!(file, "{json}")?;
    }
    Ok(())
}
