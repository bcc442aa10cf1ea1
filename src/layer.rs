use std::sync::Arc;

use http::{header::AUTHORIZATION, uri::Scheme, Request, Uri};
use tower_layer::Layer;

use crate::{
    endpoint::is_loopback,
    replay::{CheapClone, ReplayOn},
    BearerAuth, TokenSource,
};

/// Applies [`BearerAuth`] to a service: adds `Authorization: Bearer …` from a
/// shared [`TokenSource`] and replays a request once after a 401.
///
/// See the [crate documentation](crate) for an example.
///
/// # Where tokens go
///
/// By default a token is attached to every request, except:
/// - a request that already has an `Authorization` header, which is sent as
///   it is ([`keep_existing_authorization`](Self::keep_existing_authorization));
/// - a plain `http` request to a host that is not loopback, which is sent
///   without a token, since a bearer token in clear is anyone's
///   ([`allow_insecure_http`](Self::allow_insecure_http)).
///
/// [`only_origins`](Self::only_origins) narrows it to a set of origins.
/// Requests with a relative URI (tonic's, whose channel knows the origin)
/// count as secure and match no origin set.
///
/// # Layer order
///
/// Put `BearerAuthLayer` *below* tower-http's `FollowRedirect`, so that each
/// hop comes back through it: with [`only_origins`](Self::only_origins) a
/// cross-origin redirect then carries no token (and `FollowRedirect`'s own
/// `FilterCredentials` removes a header from the first hop). Put tower-http's
/// `Trace` *above* it and its `SetSensitiveRequestHeaders` around it if you
/// log headers; the header this layer sets is marked sensitive already.
#[derive(Debug, Clone)]
#[must_use]
pub struct BearerAuthLayer<C = CheapClone> {
    source: TokenSource,
    clone_body: C,
    options: Options,
}

/// Where and when [`BearerAuth`] attaches a token and replays.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) replay_on: ReplayOn,
    origins: Option<Arc<[Origin]>>,
    allow_insecure_http: bool,
    keep_existing_authorization: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            replay_on: ReplayOn::AllMethods,
            origins: None,
            allow_insecure_http: false,
            keep_existing_authorization: true,
        }
    }
}

impl Options {
    /// Whether `request` gets our token.
    #[inline]
    pub(crate) fn attaches_to<B>(&self, request: &Request<B>) -> bool {
        if self.keep_existing_authorization && request.headers().contains_key(AUTHORIZATION) {
            return false;
        }
        let uri = request.uri();
        if uri.scheme() == Some(&Scheme::HTTP)
            && !self.allow_insecure_http
            && !uri.host().is_some_and(is_loopback)
        {
            tracing::debug!("not sending a token over plain http");
            return false;
        }
        match &self.origins {
            None => true,
            Some(origins) => origins.iter().any(|origin| origin.matches(uri)),
        }
    }
}

/// Scheme, host and port, compared case-insensitively, default ports filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    fn of(uri: &Uri) -> Option<Self> {
        Some(Self {
            scheme: uri.scheme_str()?.to_ascii_lowercase(),
            host: uri.host()?.to_ascii_lowercase(),
            port: port(uri),
        })
    }

    fn matches(&self, uri: &Uri) -> bool {
        uri.scheme_str()
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case(&self.scheme))
            && uri
                .host()
                .is_some_and(|host| host.eq_ignore_ascii_case(&self.host))
            && port(uri) == self.port
    }
}

fn port(uri: &Uri) -> Option<u16> {
    uri.port_u16().or(match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => Some(443),
        Some(s) if s.eq_ignore_ascii_case("http") => Some(80),
        _ => None,
    })
}

impl BearerAuthLayer {
    /// A layer that takes its tokens from `source` and replays requests whose
    /// body is cheap to copy (see [`CheapClone`]).
    pub fn new(source: TokenSource) -> Self {
        Self {
            source,
            clone_body: CheapClone,
            options: Options::default(),
        }
    }
}

impl<C> BearerAuthLayer<C> {
    /// Chooses which request bodies are kept for a replay after a 401:
    /// [`NoReplay`](crate::replay::NoReplay) to never replay, a
    /// [`clone_body_fn`](crate::replay::clone_body_fn) closure,
    /// [`ReplayStreams`](crate::replay::ReplayStreams) for streams (tonic),
    /// or your own [`CloneBody`](crate::replay::CloneBody). Defaults to
    /// [`CheapClone`].
    pub fn clone_body<C2>(self, policy: C2) -> BearerAuthLayer<C2> {
        BearerAuthLayer {
            source: self.source,
            clone_body: policy,
            options: self.options,
        }
    }

    /// Chooses which methods are replayed after a 401. Defaults to
    /// [`ReplayOn::AllMethods`].
    pub fn replay_on(mut self, replay_on: ReplayOn) -> Self {
        self.options.replay_on = replay_on;
        self
    }

    /// Attaches tokens only to requests for these origins (scheme, host and
    /// port; the path is ignored). Defaults to every origin.
    ///
    /// ```
    /// use tower_alf::{BearerAuthLayer, TokenSource};
    ///
    /// # fn layer(tokens: TokenSource) -> Result<(), http::uri::InvalidUri> {
    /// let layer = BearerAuthLayer::new(tokens)
    ///     .only_origins(["https://api.example".parse()?, "https://files.example:8443".parse()?]);
    /// # Ok(()) }
    /// ```
    pub fn only_origins(mut self, origins: impl IntoIterator<Item = Uri>) -> Self {
        self.options.origins = Some(
            origins
                .into_iter()
                .filter_map(|uri| Origin::of(&uri))
                .collect(),
        );
        self
    }

    /// Attaches tokens to plain `http` requests for hosts that are not
    /// loopback too. Defaults to `false`.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.options.allow_insecure_http = allow;
        self
    }

    /// Leaves a request that already has an `Authorization` header as it is
    /// (no token, no replay). Defaults to `true`; `false` replaces the header.
    pub fn keep_existing_authorization(mut self, keep: bool) -> Self {
        self.options.keep_existing_authorization = keep;
        self
    }
}

impl<S, C: Clone> Layer<S> for BearerAuthLayer<C> {
    type Service = BearerAuth<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerAuth::with_options(
            inner,
            self.source.clone(),
            self.clone_body.clone(),
            self.options.clone(),
        )
    }
}
