use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

#[cfg(test)]
use http::Request;
use http::{header::AUTHORIZATION, uri::Scheme, HeaderMap, Uri};
use tower_layer::Layer;

use crate::{
    http::{Origin, PlainHttp},
    replay::{CheapClone, ReplayOn},
    service::BearerAuth,
    source::TokenSource,
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
///
/// # Relative URIs (tonic)
///
/// A request whose URI has no scheme and host (tonic's `Channel` sends
/// path-only URIs: the channel knows where it connects) gets a token by
/// default. With [`only_origins`](Self::only_origins), its origin is not
/// in the request, so state it with
/// [`relative_uri_origin`](Self::relative_uri_origin): the channel's
/// origin is then matched against the set, and checked for plain `http`,
/// like an absolute URI. Without it, such a request gets no token, and the
/// first one logs a `warn` event saying so.
///
/// ```
/// use tower_alf::{BearerAuthLayer, TokenSource};
///
/// # fn layer(tokens: TokenSource) -> Result<(), http::uri::InvalidUri> {
/// // Over `Channel::from_static("https://api.example")`:
/// let layer = BearerAuthLayer::new(tokens)
///     .only_origins(["https://api.example".parse()?])
///     .relative_uri_origin("https://api.example".parse()?);
/// # Ok(()) }
/// ```
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
    /// Where requests with a relative URI go (the channel's origin).
    relative_origin: Option<Origin>,
    /// Whether the relative-URI-without-origin warning was logged.
    warned_relative: Arc<AtomicBool>,
    /// Whether tokens go over plain `http` to hosts that are not loopback.
    plain_http: PlainHttp,
    keep_existing_authorization: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            replay_on: ReplayOn::AllMethods,
            origins: None,
            relative_origin: None,
            warned_relative: Arc::new(AtomicBool::new(false)),
            plain_http: PlainHttp::LoopbackOnly,
            keep_existing_authorization: true,
        }
    }
}

impl Options {
    /// Whether `request` gets our token.
    #[cfg(test)]
    pub(crate) fn attaches_to<B>(&self, request: &Request<B>) -> bool {
        self.attaches_to_parts(request.uri(), request.headers())
    }

    /// [`attaches_to`](Self::attaches_to) for a request's URI and headers
    /// (a request that is not an `http::Request`: reqwest's).
    #[cfg(any(test, feature = "reqwest"))]
    #[inline]
    pub(crate) fn attaches_to_parts(&self, uri: &Uri, headers: &HeaderMap) -> bool {
        !self.keeps(headers.contains_key(AUTHORIZATION)) && self.attaches_to_uri(uri, headers)
    }

    /// Whether a request that has an `Authorization` header (`present`)
    /// keeps it and goes without our token.
    #[inline]
    pub(crate) fn keeps(&self, present: bool) -> bool {
        present && self.keep_existing_authorization
    }

    /// Whether a request to `uri` gets our token (`headers` are read only
    /// to word a warning).
    ///
    /// NOTE: the hot path. `Uri::host` searches the authority for `@` and
    /// `:` (about 400 instructions); it is read only for plain `http`,
    /// the one case whose answer depends on the host.
    #[inline]
    pub(crate) fn attaches_to_uri(&self, uri: &Uri, headers: &HeaderMap) -> bool {
        let Some(authority) = uri.authority() else {
            return self.attaches_to_relative(headers);
        };
        if uri.scheme() == Some(&Scheme::HTTP) && !self.plain_http.allows(authority.host()) {
            tracing::debug!("not sending a token over plain http");
            return false;
        }
        match &self.origins {
            None => true,
            Some(origins) => origins.iter().any(|origin| origin.matches(uri)),
        }
    }

    /// The origins tokens go to (see [`BearerAuthLayer::only_origins`]).
    pub(crate) fn set_origins(&mut self, origins: impl IntoIterator<Item = Uri>) {
        self.origins = Some(
            origins
                .into_iter()
                .filter_map(|uri| {
                    let origin = Origin::of(&uri).ok();
                    if origin.is_none() {
                        tracing::warn!(%uri, "only_origins: not an origin (no scheme or host); left out");
                    }
                    origin
                })
                .collect(),
        );
    }

    /// See [`BearerAuthLayer::relative_uri_origin`].
    pub(crate) fn set_relative_origin(&mut self, origin: Uri) {
        self.relative_origin = Origin::of(&origin).ok();
        if self.relative_origin.is_none() {
            tracing::warn!(uri = %origin, "relative_uri_origin: not an origin (no scheme or host); ignored");
        }
    }

    /// See [`BearerAuthLayer::allow_insecure_http`].
    pub(crate) fn set_plain_http(&mut self, allow: bool) {
        self.plain_http = if allow {
            PlainHttp::Allowed
        } else {
            PlainHttp::LoopbackOnly
        };
    }

    /// See [`BearerAuthLayer::keep_existing_authorization`].
    pub(crate) fn set_keep_existing_authorization(&mut self, keep: bool) {
        self.keep_existing_authorization = keep;
    }

    /// Whether a request with a relative URI (no host) gets our token.
    #[inline]
    fn attaches_to_relative(&self, headers: &HeaderMap) -> bool {
        match (&self.relative_origin, &self.origins) {
            (None, None) => true,
            (None, Some(_)) => {
                if self.keeps(headers.contains_key(AUTHORIZATION)) {
                    // Its own header: it gets no token either way.
                } else if !self.warned_relative.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "only_origins is set but the request URI is relative (as tonic's \
                         Channel sends): no token is sent; state the channel's origin with \
                         BearerAuthLayer::relative_uri_origin"
                    );
                } else {
                    tracing::debug!("relative request URI and no relative_uri_origin: no token");
                }
                false
            }
            (Some(origin), origins) => {
                if !origin.allows_token(self.plain_http) {
                    tracing::debug!("not sending a token over plain http");
                    return false;
                }
                origins
                    .as_ref()
                    .is_none_or(|origins| origins.contains(origin))
            }
        }
    }
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

    /// Sets which methods are replayed after a 401. Defaults to
    /// [`ReplayOn::AllMethods`].
    pub fn replay_on(mut self, replay_on: ReplayOn) -> Self {
        self.options.replay_on = replay_on;
        self
    }

    /// Attaches tokens only to requests for these origins (scheme, host and
    /// port; the path is ignored), replacing any set given before. Defaults
    /// to every origin. A URI without a scheme or host is no origin: it is
    /// left out, with a `warn` event. Requests with a relative URI (tonic)
    /// need [`relative_uri_origin`](Self::relative_uri_origin) to match.
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
        self.options.set_origins(origins);
        self
    }

    /// Sets the origin that requests with a relative URI are sent to: the
    /// origin of the channel under the layer (tonic's `Channel` sends
    /// path-only URIs). Such requests are then treated as requests for that
    /// origin: matched against [`only_origins`](Self::only_origins) and
    /// refused a token over plain `http` to a host that is not loopback.
    /// Defaults to none: relative URIs get a token unless `only_origins` is
    /// set. A URI without a scheme or host is ignored, with a `warn` event.
    pub fn relative_uri_origin(mut self, origin: Uri) -> Self {
        self.options.set_relative_origin(origin);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn options(layer: BearerAuthLayer) -> Options {
        layer.options
    }

    fn source() -> TokenSource {
        TokenSource::new(tower::service_fn(|_: crate::grant::FetchToken| async {
            crate::token::Token::bearer("t")
        }))
    }

    fn path_only() -> Request<()> {
        Request::get("/pkg.Service/Method").body(()).unwrap()
    }

    #[tokio::test]
    async fn a_path_only_request_gets_a_token_without_only_origins() {
        assert!(options(BearerAuthLayer::new(source())).attaches_to(&path_only()));
    }

    #[tokio::test]
    async fn a_path_only_request_gets_no_token_with_only_origins_alone() {
        let layer =
            BearerAuthLayer::new(source()).only_origins(["https://api.example".parse().unwrap()]);
        assert!(!options(layer).attaches_to(&path_only()));
    }

    #[tokio::test]
    async fn a_path_only_request_is_matched_against_its_stated_origin() {
        let layer = BearerAuthLayer::new(source())
            .only_origins(["https://API.example:443".parse().unwrap()])
            .relative_uri_origin("https://api.example".parse().unwrap());
        assert!(options(layer).attaches_to(&path_only()));
        let layer = BearerAuthLayer::new(source())
            .only_origins(["https://files.example".parse().unwrap()])
            .relative_uri_origin("https://api.example".parse().unwrap());
        assert!(!options(layer).attaches_to(&path_only()));
    }

    #[tokio::test]
    async fn a_stated_plain_http_origin_gets_no_token_unless_loopback_or_allowed() {
        let http = |layer: BearerAuthLayer| {
            layer.relative_uri_origin("http://api.example".parse().unwrap())
        };
        assert!(!options(http(BearerAuthLayer::new(source()))).attaches_to(&path_only()));
        let allowed = http(BearerAuthLayer::new(source()).allow_insecure_http(true));
        assert!(options(allowed).attaches_to(&path_only()));
        let loopback = BearerAuthLayer::new(source())
            .relative_uri_origin("http://127.0.0.1:50051".parse().unwrap());
        assert!(options(loopback).attaches_to(&path_only()));
    }

    #[tokio::test]
    async fn only_origins_called_twice_keeps_the_second_set() {
        let layer = BearerAuthLayer::new(source())
            .only_origins(["https://a.example".parse().unwrap()])
            .only_origins(["https://b.example".parse().unwrap()]);
        let options = options(layer);
        let to = |uri: &str| Request::get(uri).body(()).unwrap();
        assert!(!options.attaches_to(&to("https://a.example/x")));
        assert!(options.attaches_to(&to("https://b.example/x")));
    }
}
