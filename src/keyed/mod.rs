//! Keyed token sources: per-tenant, per-scope and per-caller tokens through
//! one layer.
//!
//! One [`TokenSource`](crate::TokenSource) holds one token. A service that
//! calls an API for many tenants, with different scopes or audiences per
//! route, or on behalf of each of its own callers, needs one source per
//! combination: [`TokenSources`] makes them on first use, from a key, with
//! your factory, keeps at most a bounded number (least recently used and
//! idle keys go), and [`BearerAuthLayer::keyed`](crate::BearerAuthLayer::keyed)
//! picks the key per request.
//!
//! - **A key of your own** (a tenant id, a route's scope set): the factory
//!   `Fn(&K) -> Result<TokenSource, Error>` builds the grant from the key.
//!   The layer takes the key from the request with a closure, or from the
//!   request's extensions ([`FromExtension`]), where an axum handler that
//!   knows the tenant puts it.
//! - **Per-request parameters** without a key type: [`TokenParams`] in the
//!   request's extensions (scopes, audience, resource), compared as a
//!   store's [`CacheKey`](crate::store::CacheKey) is, so scope order does
//!   not matter.
//! - **On behalf of each caller**: [`CallerToken`] keys a source by a
//!   fingerprint of the caller's token, and
//!   [`TokenSources::on_behalf_of`] makes each an RFC 8693 exchange that
//!   lives no longer than the caller's token.
//! - **A fleet**: with a [`StoreGrant`](crate::store::StoreGrant) in the
//!   factory, give each key its own store key (for example
//!   [`TokenParams::cache_key`], or a grant's `cache_key()` after the key's
//!   parameters are set): the fleet then shares each key's token, and its
//!   single flight is per key.
//!
//! A request whose key is `None` passes through untouched. A 401
//! invalidates that request's key's token only. Every per-key source keeps
//! the whole contract of a single one: single flight, background refresh,
//! compare-and-invalidate, the rejection throttle. [`TokenSources::stats`]
//! counts keys (live, made, evicted, expired) and adds up every source's
//! [`Stats`](crate::Stats); [`TokenSources::stats_for`] gives one key's.
//! Events and the token fetch of a keyed request are inside a `keyed_token`
//! span whose `key` field is a 64-bit fingerprint of the key, never the key.
//!
//! ```
//! use http::Request;
//! use http_body_util::Full;
//! use bytes::Bytes;
//! use tower::ServiceBuilder;
//! use tower_alf::{
//!     grant::ClientCredentials, keyed::TokenSources, BearerAuthLayer, ClientAuth, Error,
//!     TokenEndpoint, TokenSource,
//! };
//!
//! /// The tenant a request is for, put in its extensions by the application.
//! #[derive(Clone, PartialEq, Eq, Hash)]
//! struct Tenant(&'static str);
//!
//! # fn main() -> Result<(), Error> {
//! let endpoint = TokenEndpoint::builder("https://idp.example/oauth2/token")
//!     .client_auth(ClientAuth::basic("gateway", "s3cr3t"))
//!     .build()?;
//! let tenants = TokenSources::builder(move |tenant: &Tenant| match tenant.0 {
//!     "acme" | "globex" => Ok(TokenSource::new(
//!         ClientCredentials::new(endpoint.clone()).audience(format!("https://{}.api", tenant.0)),
//!     )),
//!     // A bad tenant fails its own request, with this error.
//!     _ => Err(Error::permanent("unknown tenant")),
//! })
//! .max_keys(1_000)
//! .build();
//! # let client = tower::service_fn(|_: Request<Full<Bytes>>| async {
//! #     Ok::<_, std::convert::Infallible>(http::Response::new(()))
//! # });
//! let client = ServiceBuilder::new()
//!     .layer(BearerAuthLayer::keyed_by_extension::<Tenant>(tenants.clone()))
//!     .service(client);
//! // let mut request = Request::get("https://acme.api/orders").body(Full::default())?;
//! // request.extensions_mut().insert(Tenant("acme"));
//! # Ok(()) }
//! ```

mod caller;
mod layer;
mod params;
mod service;
mod sources;

pub use self::{
    caller::CallerToken,
    layer::{FromExtension, KeyedLayer, RequestKey},
    params::{ParamsGrant, TokenParams, TokenParamsBuilder},
    service::{KeyedBearerAuth, KeyedResponseFuture},
    sources::{KeyedStats, TokenSources, TokenSourcesBuilder},
};
