//! Bring your own token, with no setup: a closure provider, a token file
//! rotated on disk while a source serves it, a command (feature `command`),
//! and workload identity: a client assertion from a rotated projected-token
//! file, and one taken from another source, sent to an in-process token
//! endpoint. All behind the same cache, single flight and refresh as the
//! built-in grants.
//!
//! ```text
//! cargo run --example byo_token --features command
//! ```

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{routing::post, Json, Router};
use tower_alf::{
    grant::{self, ClientCredentials, FetchToken, TokenFile},
    ClientAuth, Error, Token, TokenEndpoint, TokenSource,
};

/// A token endpoint that issues a token naming the client assertion it
/// was sent (a real one would verify it against the platform's keys).
async fn start_token_endpoint() -> Result<String, Error> {
    let router = Router::new().route(
        "/token",
        post(|body: String| async move {
            let assertion = form_urlencoded::parse(body.as_bytes())
                .find(|(name, _)| name == "client_assertion")
                .map(|(_, value)| value.into_owned())
                .unwrap_or_default();
            Json(serde_json::json!({
                "access_token": format!("api-token-for-{assertion}"),
                "token_type": "Bearer",
                "expires_in": 3600,
            }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(Error::transport)?;
    let url = format!(
        "http://{}/token",
        listener.local_addr().map_err(Error::transport)?
    );
    tokio::spawn(std::future::IntoFuture::into_future(axum::serve(
        listener, router,
    )));
    Ok(url)
}

/// A source over the client credentials grant at `url`, authenticated by
/// `auth`.
fn api_source(url: &str, auth: ClientAuth) -> Result<TokenSource, Error> {
    let endpoint = TokenEndpoint::builder(url).client_auth(auth).build()?;
    Ok(TokenSource::builder(ClientCredentials::new(endpoint))
        .rejection_interval(Duration::ZERO)
        .build())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    // 1. A closure: called once however many callers ask at the same time.
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let source = TokenSource::new(grant::from_fn(move |request: FetchToken| {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_millis(100)).await; // your vault, STS, IdP…
            Ok(Token::bearer(format!("closure-token-{n}"))?
                .with_issued_at(request.started_at)
                .with_expires_in(Duration::from_secs(3600)))
        }
    }));
    let callers: Vec<_> = (0..100)
        .map(|_| {
            let source = source.clone();
            tokio::spawn(async move { source.token().await })
        })
        .collect();
    for caller in callers {
        caller.await.expect("caller")?;
    }
    println!(
        "100 callers, {} call of the closure",
        calls.load(Ordering::SeqCst)
    );

    // 2. A token file, rotated on disk (as a Vault agent or kubelet does).
    let dir = std::env::temp_dir().join(format!("alf-byo-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("token");
    std::fs::write(&path, "file-token-1").expect("write");
    let source = TokenSource::builder(TokenFile::new(&path))
        .rejection_interval(Duration::ZERO)
        .build();
    let first = source.token().await?;
    println!("from the file: {}", first.access_token().secret());
    std::fs::write(dir.join("next"), "file-token-2").expect("write");
    std::fs::rename(dir.join("next"), &path).expect("rotate");
    // A server rejecting the old token (a 401) makes the source read again.
    let second = source.invalidate(first.id()).await?;
    println!("after rotation: {}", second.access_token().secret());

    // 3. A command (an exec credential plugin), run directly, never by a
    //    shell: here `echo`, printing the JSON a real plugin would.
    #[cfg(feature = "command")]
    {
        let source = TokenSource::new(
            grant::TokenCommand::new("echo")
                .arg(r#"{"access_token":"command-token","expires_in":3600}"#)
                .timeout(Duration::from_secs(5)),
        );
        let token = source.token().await?;
        println!(
            "from the command: {} for {:?}",
            token.access_token().secret(),
            token.lifetime()
        );
    }
    #[cfg(not(feature = "command"))]
    println!("(the command provider needs `--features command`)");

    // 4. Workload identity: the platform's projected token, rotated on
    //    disk, is the client assertion, read again for every attempt.
    let url = start_token_endpoint().await?;
    let projected = dir.join("projected");
    std::fs::write(&projected, "projected-jwt-1").expect("write");
    let api = api_source(
        &url,
        ClientAuth::client_assertion_file("my-workload", &projected),
    )?;
    let first = api.token().await?;
    println!("assertion file: {}", first.access_token().secret());
    std::fs::write(dir.join("next"), "projected-jwt-2").expect("write");
    std::fs::rename(dir.join("next"), &projected).expect("rotate");
    let second = api.invalidate(first.id()).await?;
    println!("after rotation: {}", second.access_token().secret());

    // 5. The assertion taken from another source (a SPIFFE agent's JWT-SVID,
    //    your own signer): its cache and refresh serve the assertion too.
    let svid = TokenSource::new(grant::from_fn(|request: FetchToken| async move {
        Ok(Token::bearer("svid-jwt")?
            .with_issued_at(request.started_at)
            .with_expires_in(Duration::from_secs(300)))
    }));
    let api = api_source(
        &url,
        ClientAuth::client_assertion_source("my-workload", svid),
    )?;
    println!(
        "assertion source: {}",
        api.token().await?.access_token().secret()
    );

    std::fs::remove_dir_all(&dir).expect("clean up");
    Ok(())
}
