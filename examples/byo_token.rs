//! Bring your own token, with no setup: a closure provider, and a token
//! file rotated on disk while a source serves it, both behind the same
//! cache, single flight and refresh as the built-in grants.
//!
//! ```text
//! cargo run --example byo_token
//! ```

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use tower_alf::{
    grant::{self, FetchToken, TokenFile},
    Error, Token, TokenSource,
};

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
    std::fs::remove_dir_all(&dir).expect("clean up");
    Ok(())
}
