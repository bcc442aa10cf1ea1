//! A token from a GCP-style metadata server, with no setup: an in-process
//! server on loopback answers as Compute Engine's does (it refuses a
//! request without `Metadata-Flavor: Google` and marks its answer with
//! it), and `grant::MetadataServer` serves its token through a source.
//!
//! On GCP, `MetadataServer::new()` is all it takes (the host comes from
//! `GCE_METADATA_HOST`, else `metadata.google.internal`).
//!
//! ```text
//! cargo run --example metadata_server --features metadata
//! ```

use std::future::IntoFuture;

use axum::{
    extract::{Path, RawQuery},
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
    routing::get,
    Router,
};
use tower_alf::{grant::MetadataServer, Error, TokenSource};

/// What Compute Engine's metadata server answers for a service account.
async fn token(
    Path(account): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> impl IntoResponse {
    let flavor = [("metadata-flavor", "Google")];
    if headers.get("metadata-flavor").map(|v| v.as_bytes()) != Some(b"Google") {
        return (
            StatusCode::FORBIDDEN,
            flavor,
            "Missing Metadata-Flavor:Google header.",
        )
            .into_response();
    }
    if account != "default" {
        return (StatusCode::NOT_FOUND, flavor, "Not Found").into_response();
    }
    println!("metadata server: token asked, query {query:?}");
    let body = r#"{"access_token":"ya29.example-token","expires_in":3599,"token_type":"Bearer"}"#;
    (flavor, [("content-type", "application/json")], body).into_response()
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let router = Router::new().route(
        "/computeMetadata/v1/instance/service-accounts/{account}/token",
        get(token),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(Error::transport)?;
    let host = listener.local_addr().map_err(Error::transport)?.to_string();
    tokio::spawn(axum::serve(listener, router).into_future());

    let source = TokenSource::new(
        MetadataServer::with_host(&host).scope("https://www.googleapis.com/auth/cloud-platform"),
    );
    let token = source.token().await?;
    println!(
        "token {} for {:?}",
        token.access_token().secret(),
        token.lifetime()
    );

    // An account the instance does not have: a typed error with the status.
    let e = TokenSource::new(MetadataServer::with_host(&host).account("other@example.iam"))
        .token()
        .await
        .unwrap_err();
    println!("another account: {e} (status {:?})", e.status_code());
    Ok(())
}
