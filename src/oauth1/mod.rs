//! OAuth 1.0a (RFC 5849): a layer that signs every request, and the
//! three-legged flow that gets the token to sign with.
//!
//! Many APIs still speak OAuth 1.0a (Twitter/X v1.1, Trello, Flickr,
//! Garmin, Tumblr, NetSuite, Evernote). Put [`OAuth1Layer`] in front of any
//! `tower::Service<http::Request<B>>` and each request goes out with a fresh
//! nonce, the current timestamp and `oauth_signature`, computed as §3.4
//! says, over the method, the base string URI and every parameter: the
//! query's, the protocol parameters, and those of an
//! `application/x-www-form-urlencoded` body.
//!
//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_alf::oauth1::{ClientCredentials, OAuth1Layer, TokenCredentials};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! # let api = service_fn(|req: Request<Full<Bytes>>| async move {
//! #     let authorization = req.headers()["authorization"].to_str().unwrap();
//! #     assert!(authorization.starts_with("OAuth oauth_consumer_key=\"consumer-key\""));
//! #     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("[]"))))
//! # });
//! // `api` is your client: hyper-util's `Client`, a tonic `Channel`, …
//! let client = ServiceBuilder::new()
//!     .layer(
//!         OAuth1Layer::new(ClientCredentials::new("consumer-key", "consumer-secret"))
//!             .token(TokenCredentials::new("token", "token-secret")),
//!     )
//!     .service(api);
//!
//! let request = Request::get("https://api.example/1.1/statuses/home_timeline.json?count=5")
//!     .body(Full::default())?;
//! let response = client.oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! # Ok(()) }
//! ```
//!
//! To get the token credentials in the first place, run the three-legged
//! dance with [`Flow`]; `examples/oauth1.rs` runs all of it against a
//! provider in the same process.
//!
//! # What is signed
//!
//! - **Signature methods** ([`SignatureMethod`]): `HMAC-SHA1` (the
//!   default), `HMAC-SHA256`, `HMAC-SHA512`, `RSA-SHA1`, `RSA-SHA256` (with
//!   an [`RsaKey`] read from PKCS#1 or PKCS#8 PEM) and `PLAINTEXT`.
//! - **Placement** ([`Placement`]): the `Authorization` header (default,
//!   marked sensitive), the query string, or the form body.
//! - **Optional parameters**: `realm`, `oauth_callback`, `oauth_verifier`,
//!   `oauth_version` (sent by default, as Authlib and oauthlib do), and
//!   `oauth_body_hash` for bodies that are not forms.
//! - **Encoding**: §3.6 exactly (only `A–Z a–z 0–9 - . _ ~` stay as they
//!   are, `%XX` in upper case); query and form values are decoded to octets
//!   and encoded again, so nothing is lost to a UTF-8 round trip.
//!
//! The pieces are public in [`signature`], and [`Signer`] signs one
//! request by hand, with a fixed nonce and timestamp if you need to
//! reproduce a signature ([`Signer::sign_with_base_string`] also returns the
//! base string, to compare with a provider's).
//!
//! # Bodies
//!
//! The parameters of a form body are signed, so the signer needs the whole
//! body before the request is sent, and must hand the inner service the same
//! bytes. The layer therefore asks for bodies that can be read at once,
//! [`SignableBody`]: `Full<Bytes>`, `Empty<Bytes>`, `String`, `Bytes`,
//! `Vec<u8>`. Boxed bodies pass through when they take no part in the
//! signature, and fail with [`Error::is_body`] when they would. The layer
//! does not buffer streams itself: how much memory a stream may take is the
//! caller's decision, so collect it first and send a `Full<Bytes>`.
//!
//! # Security
//!
//! Consumer secrets, RSA keys, tokens, token secrets and verifiers never
//! appear in `Debug`, `Display` or errors; the `Authorization` header is
//! marked sensitive. The nonce is 32 alphanumeric characters from
//! `fastrand`: it must be unique, not secret, for the signature is what
//! cannot be forged. `PLAINTEXT` sends the secrets themselves: use it only
//! over TLS. The flow's provider URLs must be `https` (loopback excepted).
//!
//! # Feature
//!
//! This module needs the `oauth1` feature, and Rust 1.87 (for `rsa` 0.10,
//! whose constant-time arithmetic fixes the Marvin timing attack,
//! RUSTSEC-2023-0071, of 0.9).

mod body;
mod credentials;
mod error;
mod flow;
mod future;
mod layer;
mod service;
pub mod signature;
mod signer;

#[doc(inline)]
pub use self::{
    body::SignableBody,
    credentials::{ClientCredentials, RsaKey, TemporaryCredentials, TokenCredentials, Verifier},
    error::Error,
    flow::Flow,
    future::ResponseFuture,
    layer::OAuth1Layer,
    service::OAuth1,
    signature::{Placement, SignatureMethod},
    signer::Signer,
};
