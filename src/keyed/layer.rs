//! [`KeyedLayer`]: [`BearerAuthLayer::keyed`], and how a request names its key.

use std::{fmt, hash::Hash, marker::PhantomData};

use http::{Request, Uri};
use tower_layer::Layer;

use super::{service::KeyedBearerAuth, sources::TokenSources};
use crate::{
    layer::{BearerAuthLayer, Options},
    replay::{CheapClone, ReplayOn},
};

/// How a request names its key: any `Fn(&Request<B>) -> Option<K>`, or
/// [`FromExtension`].
///
/// `None` means "no token from this layer": the request passes through
/// untouched. A key function that panics panics the caller's `call`, as
/// any closure in a `tower` stack does.
pub trait RequestKey<B> {
    /// The key.
    type Key;

    /// The key of `request`, or `None` to send it without a token.
    fn key(&self, request: &Request<B>) -> Option<Self::Key>;
}

impl<B, K, F> RequestKey<B> for F
where
    F: Fn(&Request<B>) -> Option<K>,
{
    type Key = K;

    #[inline]
    fn key(&self, request: &Request<B>) -> Option<K> {
        self(request)
    }
}

/// The key the application put in the request's extensions (say an axum
/// handler that knows the tenant, or a [`TokenParams`](super::TokenParams)
/// or [`CallerToken`](super::CallerToken)): a clone of the `K` found there;
/// a request without one passes through untouched. See
/// [`BearerAuthLayer::keyed_by_extension`].
pub struct FromExtension<K>(PhantomData<fn() -> K>);

impl<K> FromExtension<K> {
    /// Reads the key from the extension of type `K`.
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<K> Default for FromExtension<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K> Clone for FromExtension<K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for FromExtension<K> {}

impl<K> fmt::Debug for FromExtension<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FromExtension")
            .field(&std::any::type_name::<K>())
            .finish()
    }
}

impl<B, K> RequestKey<B> for FromExtension<K>
where
    K: Clone + Send + Sync + 'static,
{
    type Key = K;

    #[inline]
    fn key(&self, request: &Request<B>) -> Option<K> {
        request.extensions().get::<K>().cloned()
    }
}

/// Applies [`KeyedBearerAuth`] to a service: the token of each request's
/// key, from [`TokenSources`]; made by [`BearerAuthLayer::keyed`].
///
/// Everything [`BearerAuthLayer`] does, it does per key: the same checks of
/// where a token goes (see
/// [`BearerAuthLayer`'s "Where tokens go"](BearerAuthLayer#where-tokens-go)),
/// the same replay after a 401, which invalidates the token of that
/// request's key only.
#[must_use]
pub struct KeyedLayer<K, F, C = CheapClone> {
    sources: TokenSources<K>,
    key: F,
    clone_body: C,
    options: Options,
}

// ===== impl BearerAuthLayer =====

impl BearerAuthLayer {
    /// A layer that authorizes each request with the token of the key
    /// `key` picks for it, from `sources`.
    ///
    /// A request whose key is `None` is sent as it came, without a token
    /// from this layer. A 401 invalidates the token of that request's key
    /// only; other keys' tokens are untouched. When the key's source cannot
    /// be made (the factory failed), that request fails with the
    /// factory's [`Error`](crate::Error), unsent; other requests go on.
    ///
    /// ```
    /// use http::Request;
    /// use http_body_util::Full;
    /// use bytes::Bytes;
    /// use tower::ServiceBuilder;
    /// use tower_alf::{keyed::TokenSources, BearerAuthLayer};
    ///
    /// # fn layer(tenants: TokenSources<String>) {
    /// // The tenant is the request's `x-tenant` header; no header, no token.
    /// let layer = BearerAuthLayer::keyed(tenants, |request: &Request<Full<Bytes>>| {
    ///     let tenant = request.headers().get("x-tenant")?.to_str().ok()?;
    ///     Some(tenant.to_owned())
    /// });
    /// # let client = tower::service_fn(|_: Request<Full<Bytes>>| async {
    /// #     Ok::<_, std::convert::Infallible>(http::Response::new(()))
    /// # });
    /// let client = ServiceBuilder::new().layer(layer).service(client);
    /// # }
    /// ```
    pub fn keyed<K, F>(sources: TokenSources<K>, key: F) -> KeyedLayer<K, F>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
    {
        KeyedLayer {
            sources,
            key,
            clone_body: CheapClone,
            options: Options::default(),
        }
    }

    /// [`keyed`](Self::keyed), the key being the `K` the application put in
    /// the request's extensions ([`FromExtension`]).
    ///
    /// ```
    /// use tower_alf::{keyed::{TokenParams, TokenSources}, BearerAuthLayer};
    ///
    /// # fn layer(by_scope: TokenSources<TokenParams>) {
    /// let layer = BearerAuthLayer::keyed_by_extension(by_scope);
    /// // Per request: request.extensions_mut().insert(TokenParams::builder().scope("read").build());
    /// # }
    /// ```
    pub fn keyed_by_extension<K>(sources: TokenSources<K>) -> KeyedLayer<K, FromExtension<K>>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
    {
        Self::keyed(sources, FromExtension::new())
    }
}

// ===== impl KeyedLayer =====

impl<K, F, C> KeyedLayer<K, F, C> {
    /// See [`BearerAuthLayer::clone_body`].
    pub fn clone_body<C2>(self, policy: C2) -> KeyedLayer<K, F, C2> {
        KeyedLayer {
            sources: self.sources,
            key: self.key,
            clone_body: policy,
            options: self.options,
        }
    }

    /// See [`BearerAuthLayer::replay_on`].
    pub fn replay_on(mut self, replay_on: ReplayOn) -> Self {
        self.options.replay_on = replay_on;
        self
    }

    /// See [`BearerAuthLayer::only_origins`].
    pub fn only_origins(mut self, origins: impl IntoIterator<Item = Uri>) -> Self {
        self.options.set_origins(origins);
        self
    }

    /// See [`BearerAuthLayer::relative_uri_origin`].
    pub fn relative_uri_origin(mut self, origin: Uri) -> Self {
        self.options.set_relative_origin(origin);
        self
    }

    /// See [`BearerAuthLayer::allow_insecure_http`].
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.options.set_plain_http(allow);
        self
    }

    /// See [`BearerAuthLayer::keep_existing_authorization`].
    pub fn keep_existing_authorization(mut self, keep: bool) -> Self {
        self.options.set_keep_existing_authorization(keep);
        self
    }

    /// The sources.
    pub fn sources(&self) -> &TokenSources<K> {
        &self.sources
    }
}

impl<K, F: Clone, C: Clone> Clone for KeyedLayer<K, F, C> {
    fn clone(&self) -> Self {
        Self {
            sources: self.sources.clone(),
            key: self.key.clone(),
            clone_body: self.clone_body.clone(),
            options: self.options.clone(),
        }
    }
}

impl<K, F, C: fmt::Debug> fmt::Debug for KeyedLayer<K, F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLayer")
            .field("sources", &self.sources)
            .field("key", &std::any::type_name::<F>())
            .field("clone_body", &self.clone_body)
            .field("options", &self.options)
            .finish()
    }
}

impl<S, K, F: Clone, C: Clone> Layer<S> for KeyedLayer<K, F, C> {
    type Service = KeyedBearerAuth<S, K, F, C>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyedBearerAuth::new(
            inner,
            self.sources.clone(),
            self.key.clone(),
            self.clone_body.clone(),
            self.options.clone(),
        )
    }
}
