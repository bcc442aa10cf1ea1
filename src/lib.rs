//! OAuth 2 client middleware for [`tower`]: tokens fetched, cached and
//! refreshed for you, and a request replayed once when it is answered 401.
//!
//! # Overview
//!
//! - [`BearerAuthLayer`] wraps any `tower::Service<http::Request<B>>` (a
//!   hyper-util client, a tonic channel, a test mock) and sets
//!   `Authorization: Bearer …` on every request.
//! - [`TokenSource`] is the shared, cheaply cloned token cache behind it:
//!   one fetch in flight at a time, tokens refreshed in the background before
//!   they expire so no request waits, compare-and-invalidate on rejection.
//! - A [grant] fetches the tokens: [`grant::ClientCredentials`],
//!   [`grant::RefreshTokenGrant`], [`grant::TokenExchange`], the JWT-bearer
//!   grant and service accounts (feature `jwt`) over a [`TokenEndpoint`],
//!   or any tower service you write. The device authorization grant
//!   ([`grant::DeviceAuthorization`], RFC 8628) signs a user in from a
//!   machine without a browser. [`discovery`] finds the endpoint and a
//!   client authentication method from an issuer URL.
//! - A [store] shares tokens between sources, processes and restarts:
//!   wrap the grant in a [`store::StoreGrant`] over a [`store::MemoryStore`],
//!   a Redis store (feature `redis`) or your own [`store::TokenStore`].
//! - [Keyed sources](keyed) give each tenant, scope set or caller its own
//!   source through one layer: [`keyed::TokenSources`] (bounded, made on
//!   first use) behind [`BearerAuthLayer::keyed`], with on-behalf-of token
//!   exchange per caller.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_alf::{grant::ClientCredentials, BearerAuthLayer, ClientAuth, TokenEndpoint, TokenSource};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! # let http_client = tower_alf::HttpClient::new(service_fn(|_req: Request<Full<Bytes>>| async {
//! #     let body = r#"{"access_token":"2YotnFZFEjr1zCsicMWpAA","token_type":"Bearer","expires_in":3600}"#;
//! #     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(body))))
//! # }));
//! let endpoint = TokenEndpoint::builder("https://idp.example/oauth2/token")
//!     .client_auth(ClientAuth::basic("my-client", "s3cr3t"))
//! #   .http_client(http_client)
//!     .build()?;
//! let tokens = TokenSource::new(ClientCredentials::new(endpoint).scope("orders:read"));
//!
//! # let api = service_fn(|req: Request<Full<Bytes>>| async move {
//! #     assert_eq!(req.headers()["authorization"], "Bearer 2YotnFZFEjr1zCsicMWpAA");
//! #     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("[]"))))
//! # });
//! // `api` is your client: hyper-util's `Client`, a tonic `Channel`, …
//! let client = ServiceBuilder::new()
//!     .layer(BearerAuthLayer::new(tokens.clone()))
//!     .service(api);
//!
//! let response = client
//!     .oneshot(Request::get("https://api.example/orders").body(Full::default())?)
//!     .await?;
//! assert_eq!(response.status(), 200);
//! assert_eq!(tokens.stats().fetches, 1);
//! # Ok(()) }
//! ```
//!
//! # Layer order
//!
//! Put [`BearerAuthLayer`] *inside* a timeout (so the timeout bounds the
//! token wait too) and *outside* a retry layer (so retries reuse the token).
//! A 401 is not an error to a retry policy; this layer handles it.
//! `examples/layer_order.rs` builds that stack (a timeout, this layer, a
//! retry over a policy that clones `Request<Full<Bytes>>`) and tells a
//! timeout of the stack from a token endpoint's timeout.
//!
//! # Feature flags
//!
//! The items of a feature are documented only when it is on (docs.rs
//! builds with every feature), so they are named here without links.
//!
//! - `rustls` (default): [`HttpClient::default`], hyper-util's client over
//!   hyper-rustls, so `https` token endpoints work out of the box, through
//!   the `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` proxy; `HttpClient::builder`
//!   (a proxy, your roots, a client certificate) and mutual TLS
//!   (`ClientAuth::tls_client_auth`, RFC 8705). Without it, give the
//!   [`TokenEndpoint`] your own client.
//! - `ring` (default): the default client's crypto provider (enables
//!   `rustls`).
//! - `aws-lc-rs`: aws-lc-rs as the crypto provider instead of ring; without
//!   `ring`, one crypto stack (enables `rustls`).
//! - `platform-verifier`: `HttpClientBuilder::platform_verifier`, the
//!   operating system's verifier and trust store (enables `rustls`).
//! - `oauth1`: `tower_alf::oauth1`, OAuth 1.0a (RFC 5849): a layer that
//!   signs every request (HMAC-SHA1/256/512, RSA-SHA1/256, PLAINTEXT) and
//!   the three-legged flow.
//! - `redis`: `store::RedisStore`, tokens in Redis or Valkey shared by
//!   a fleet, with a fleet-wide single flight and optional encryption at rest.
//! - `redis-cluster`: Redis Cluster for the Redis store (enables `redis`).
//! - `command`: `grant::TokenCommand`, a token from a program's JSON
//!   output (an exec credential plugin), on Tokio's process support.
//! - `metadata`: `grant::MetadataServer`, a token from a GCP-style
//!   metadata server (plain http to a link-local host only).
//! - `cli`: the `alf` command-line client (enables `rustls`, `ring`,
//!   `oauth1`, `redis`, `jwt`, `dpop`, `authorization-code` and `command`).
//! - `jwt`: JWT client authentication (`ClientAuth::private_key_jwt`,
//!   `ClientAuth::client_secret_jwt`), the JWT-bearer grant
//!   (`grant::JwtBearer`), service-account files (`grant::ServiceAccount`)
//!   and `jwt::PrivateKey`, signed by `ring` (the library rustls uses).
//! - `dpop`: `tower_alf::dpop`, sender-constrained tokens (RFC 9449): one
//!   setting, `TokenEndpointBuilder::dpop`, binds tokens to a key the
//!   client holds (enables `jwt`).
//! - `authorization-code`: the authorization-code flow with PKCE
//!   (`grant::AuthorizationCode`).
//! - `tonic`: `tower_alf::tonic`, token failures as a `tonic::Status` and
//!   the default body policy for `tonic::transport::Channel`.
//! - `reqwest`: `tower_alf::reqwest`, a reqwest-middleware middleware over
//!   a [`TokenSource`] (the layer's contract: 401 → invalidate → one
//!   replay), and `HttpClient::from_reqwest`, token requests over your
//!   reqwest client.
//! - `full`: all of the above.
//!
//! # Defaults
//!
//! See [`TokenSourceBuilder`] (refresh window, expiry margin, jitter, default
//! lifetime) and [`TokenEndpoint`] (timeout, response size cap), each with the
//! reason for its value.
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod challenge;
mod endpoint;
mod error;
mod future;
mod http;
mod layer;
mod redact;
mod secret;
mod service;
mod source;
mod token;

#[cfg(feature = "dpop")]
pub mod dpop;
pub mod grant;
#[cfg(feature = "jwt")]
pub mod jwt;
pub mod keyed;
#[cfg(feature = "oauth1")]
pub mod oauth1;
pub mod replay;
#[cfg(feature = "reqwest")]
pub mod reqwest;
pub mod store;
#[cfg(feature = "tonic")]
pub mod tonic;

#[doc(inline)]
pub use self::endpoint::discovery;
#[doc(inline)]
pub use self::{
    endpoint::{client_auth::ClientAuth, retry::RetryPolicy, TokenEndpoint, TokenEndpointBuilder},
    error::{Error, ErrorCode, OAuthError},
    future::ResponseFuture,
    grant::RefreshReason,
    http::HttpClient,
    layer::BearerAuthLayer,
    secret::{AccessToken, ClientSecret, RefreshToken},
    service::BearerAuth,
    source::{Stats, TokenFuture, TokenRequest, TokenSource, TokenSourceBuilder},
    token::{Token, TokenId, TokenType},
};

#[cfg(feature = "rustls")]
#[doc(inline)]
pub use self::http::{ClientCertificate, HttpClientBuilder, Proxy, ProxyError};

#[cfg(all(
    doctest,
    feature = "rustls",
    feature = "oauth1",
    feature = "redis",
    feature = "jwt",
    feature = "dpop",
    feature = "tonic",
    feature = "reqwest"
))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Entry points for the fuzz targets under `fuzz/` and the property tests:
/// the parsers of untrusted input. Not part of the API.
#[doc(hidden)]
pub mod fuzzing {
    use std::time::Duration;

    use http::{header, HeaderMap, HeaderValue, StatusCode};

    use crate::{Error, Token};

    /// Parses a token endpoint answer.
    pub fn token_response(status: u16, content_type: &[u8], body: &[u8]) -> Result<Token, Error> {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_bytes(content_type) {
            headers.insert(header::CONTENT_TYPE, value);
        }
        crate::endpoint::response::parse_response(
            status,
            &headers,
            body,
            tokio::time::Instant::now(),
        )
    }

    /// The `error` of the `Bearer` challenge in a `WWW-Authenticate` value.
    pub fn bearer_error(value: &[u8]) -> Option<String> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_bytes(value).ok()?,
        );
        crate::challenge::bearer_error(&headers)
    }

    /// The challenge for `scheme` in `WWW-Authenticate` header values:
    /// `None` when there is none, else its `error` parameter.
    pub fn challenge_error(values: &[&[u8]], scheme: &str) -> Option<Option<String>> {
        match crate::challenge::of_values(values.iter().copied(), scheme) {
            crate::challenge::SchemeChallenge::Challenge(error) => Some(error),
            _ => None,
        }
    }

    /// A `Retry-After` value as a wait from now.
    pub fn retry_after(value: &[u8]) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        headers.insert(header::RETRY_AFTER, HeaderValue::from_bytes(value).ok()?);
        crate::endpoint::response::retry_after(&headers)
    }
}
