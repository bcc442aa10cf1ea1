//! [reqwest](https://docs.rs/reqwest) clients: a
//! [`reqwest-middleware`](https://docs.rs/reqwest-middleware) middleware
//! that authorizes requests with tokens from a
//! [`TokenSource`], and
//! [`HttpClient::from_reqwest`](crate::HttpClient::from_reqwest), which
//! sends the token requests themselves over your reqwest client. Feature
//! `reqwest`.
//!
//! # The middleware
//!
//! [`BearerAuthMiddleware`] keeps the contract of
//! [`BearerAuthLayer`](crate::BearerAuthLayer):
//!
//! - the token is set before the request is sent (`Authorization`, marked
//!   sensitive; a DPoP proof too when the token is bound to a key);
//! - a **401** for that token invalidates it at the source (compare and
//!   invalidate: N concurrent 401s for one token cause one fetch), and the
//!   request is sent **once** more with a fresh token when its body can be
//!   copied ([`reqwest::Request::try_clone`]: bytes, text, JSON and form
//!   bodies; a streaming body cannot, and its 401 is returned as it came,
//!   the token replaced all the same for the next request);
//! - a 401 that says `insufficient_scope`, that challenges another scheme
//!   only, or that the source throttles (a token refused at birth again too
//!   soon) is returned as it is;
//! - a request that already has an `Authorization` header, a plain `http`
//!   request to a host that is not loopback, and with
//!   [`only_origins`](BearerAuthMiddleware::only_origins) a request for
//!   another origin are sent without a token.
//!
//! ```
//! use reqwest_middleware::ClientBuilder;
//! use tower_alf::{reqwest::BearerAuthMiddleware, TokenSource};
//!
//! # fn run(tokens: TokenSource) -> Result<(), http::uri::InvalidUri> {
//! let client = ClientBuilder::new(reqwest::Client::new())
//!     .with(BearerAuthMiddleware::new(tokens).only_origins(["https://api.example".parse()?]))
//!     .build();
//! // client.get("https://api.example/orders").send().await?
//! # let _ = client;
//! # Ok(()) }
//! ```
//!
//! # Middleware order
//!
//! reqwest-middleware runs middlewares in the order they are added. Add a
//! retry middleware (`reqwest-retry`) *after* this one, so each retry reuses
//! the token and a 401 reaches this middleware, not the retry policy. A
//! timeout set on the reqwest client bounds each send, not the token wait:
//! the token endpoint has its own timeout
//! ([`TokenEndpointBuilder::timeout`](crate::TokenEndpointBuilder::timeout)).
//!
//! # Errors
//!
//! When no token can be obtained the request is not sent, and the call
//! fails with `reqwest_middleware::Error::Middleware` holding the crate's
//! [`Error`]; [`token_error`] finds it.

use ::reqwest::{Request, Response};
use async_trait::async_trait;
use http::{Extensions, Uri};
use reqwest_middleware::{Middleware, Next};

use crate::{
    error::Error,
    future::{verdict, Verdict},
    layer::Options,
    replay::ReplayOn,
    source::{Replacement, TokenSource},
    token::{Sent, TokenId},
};

/// A reqwest-middleware [`Middleware`] that authorizes requests with tokens
/// from a [`TokenSource`], invalidates a token a server rejects with 401,
/// and replays the request once with a fresh one when its body can be
/// copied. See the [module documentation](self).
///
/// Cheap to clone: clones share the source.
#[derive(Debug, Clone)]
#[must_use]
pub struct BearerAuthMiddleware {
    source: TokenSource,
    options: Options,
}

impl BearerAuthMiddleware {
    /// A middleware that takes its tokens from `source`, sends them to every
    /// origin over https (and plain http to loopback hosts), and replays
    /// requests of every method.
    pub fn new(source: TokenSource) -> Self {
        Self {
            source,
            options: Options::default(),
        }
    }

    /// Attaches tokens only to requests for these origins (scheme, host and
    /// port; the path is ignored), replacing any set given before. Defaults
    /// to every origin. A URI without a scheme or host is no origin: it is
    /// left out, with a `warn` event. As
    /// [`BearerAuthLayer::only_origins`](crate::BearerAuthLayer::only_origins).
    pub fn only_origins(mut self, origins: impl IntoIterator<Item = Uri>) -> Self {
        self.options.set_origins(origins);
        self
    }

    /// Sets whether tokens go on plain `http` requests for hosts that are
    /// not loopback too. Defaults to `false`.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.options.set_plain_http(allow);
        self
    }

    /// Leaves a request that already has an `Authorization` header as it is
    /// (no token, no replay). Defaults to `true`; `false` replaces the header.
    pub fn keep_existing_authorization(mut self, keep: bool) -> Self {
        self.options.set_keep_existing_authorization(keep);
        self
    }

    /// Sets which methods are replayed after a 401. Defaults to
    /// [`ReplayOn::AllMethods`].
    pub fn replay_on(mut self, replay_on: ReplayOn) -> Self {
        self.options.replay_on = replay_on;
        self
    }

    /// The token source.
    pub fn source(&self) -> &TokenSource {
        &self.source
    }
}

/// The crate's [`Error`] inside an error of a client with
/// [`BearerAuthMiddleware`]: why no token could be obtained (the request
/// was not sent). `None` for any other error.
///
/// ```
/// # async fn run(client: reqwest_middleware::ClientWithMiddleware) {
/// match client.get("https://api.example/orders").send().await {
///     Ok(response) => println!("{}", response.status()),
///     Err(error) => match tower_alf::reqwest::token_error(&error) {
///         Some(token) if token.is_timeout() => eprintln!("the token endpoint timed out"),
///         Some(token) => eprintln!("no access token: {token}"),
///         None => eprintln!("request failed: {error}"),
///     },
/// }
/// # }
/// ```
pub fn token_error(error: &reqwest_middleware::Error) -> Option<&Error> {
    match error {
        reqwest_middleware::Error::Middleware(error) => error.downcast_ref::<Error>(),
        reqwest_middleware::Error::Reqwest(_) => None,
    }
}

fn failed(error: Error) -> reqwest_middleware::Error {
    reqwest_middleware::Error::middleware(error)
}

#[async_trait]
impl Middleware for BearerAuthMiddleware {
    async fn handle(
        &self,
        mut request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        let Ok(uri) = Uri::try_from(request.url().as_str()) else {
            tracing::debug!("the request URL is no http::Uri: sent without a token");
            return next.run(request, extensions).await;
        };
        if !self.options.attaches_to_parts(&uri, request.headers()) {
            return next.run(request, extensions).await;
        }
        let token = self.source.token().await.map_err(failed)?;
        let method = request.method().clone();
        let sent = token
            .authorize_headers(&method, &uri, request.headers_mut())
            .map_err(failed)?;
        // Decided before the first send: a body that cannot be copied now
        // cannot be replayed later.
        let copy = if self.options.replay_on.allows(&method) {
            request.try_clone()
        } else {
            None
        };
        let response = next.clone().run(request, extensions).await?;

        let news = sent
            .as_ref()
            .is_some_and(|sent| sent.on_response(response.headers()));
        let constraint = sent.as_ref().map(|sent| (sent.constraint(), news));
        let replayable = copy.is_some();
        match verdict(response.status(), response.headers(), constraint, || {
            replayable
        }) {
            Verdict::Served => {
                self.source.served(token.id());
                Ok(response)
            }
            Verdict::AsIs => Ok(response),
            Verdict::ReplaySameToken => {
                let (Some(sent), Some(mut copy)) = (sent, copy) else {
                    return Ok(response);
                };
                if sent.authorize_again(copy.headers_mut()).is_err() {
                    return Ok(response);
                }
                tracing::debug!(
                    "sender constraint challenge (a new DPoP nonce): replaying with the same token"
                );
                self.replay(copy, token.id(), Some(sent), extensions, next)
                    .await
            }
            Verdict::Rejected { replay } => {
                // NOTE: invalidate even when this request cannot be
                // replayed, or later requests would keep sending the
                // rejected token until it expires.
                let Replacement::Coming(fresh) = self.source.replace(token.id()) else {
                    return Ok(response);
                };
                let (true, Some(mut copy)) = (replay, copy) else {
                    return Ok(response);
                };
                tracing::debug!("request answered 401: refreshing the token to replay it");
                let fresh = fresh.await.map_err(failed)?;
                if let Some(old) = &sent {
                    old.unauthorize(copy.headers_mut());
                }
                let sent = fresh
                    .authorize_headers(&method, &uri, copy.headers_mut())
                    .map_err(failed)?;
                drop(response);
                tracing::debug!("replaying the request with a fresh token");
                self.replay(copy, fresh.id(), sent, extensions, next).await
            }
        }
    }
}

impl BearerAuthMiddleware {
    /// Sends the copy, authorized for `token`; its answer is final.
    async fn replay(
        &self,
        copy: Request,
        token: TokenId,
        sent: Option<Sent>,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        self.source.count_replay();
        let response = next.run(copy, extensions).await?;
        if !crate::challenge::rejects_credentials(response.status(), response.headers()) {
            self.source.served(token);
        }
        if let Some(sent) = &sent {
            sent.on_response(response.headers());
        }
        Ok(response)
    }
}
