//! [`TokenParams`]: per-request token parameters, as a key.

use std::{
    fmt,
    hash::{Hash, Hasher},
    sync::Arc,
};

use crate::store::CacheKey;

/// What a request needs its token to carry: scopes, an audience, a
/// resource, any other parameter. Put it in the request's extensions and
/// key the layer on it with
/// [`BearerAuthLayer::keyed_by_extension`](crate::BearerAuthLayer::keyed_by_extension),
/// and your factory makes one source per distinct set.
///
/// Two `TokenParams` are the same key when a store's [`CacheKey`] would be
/// the same: scopes sorted and deduplicated (their order never matters),
/// every other parameter counted. Cheap to clone (one reference count) and
/// to compare (a digest).
///
/// ```
/// use tower_alf::{
///     grant::ClientCredentials, keyed::{TokenParams, TokenSources}, BearerAuthLayer, ClientAuth,
///     TokenEndpoint, TokenSource,
/// };
///
/// # fn main() -> Result<(), tower_alf::Error> {
/// let endpoint = TokenEndpoint::builder("https://idp.example/oauth2/token")
///     .client_auth(ClientAuth::basic("my-client", "s3cr3t"))
///     .build()?;
/// let by_params = TokenSources::new(move |params: &TokenParams| {
///     Ok(TokenSource::new(params.apply(ClientCredentials::new(endpoint.clone()))))
/// });
/// let layer = BearerAuthLayer::keyed_by_extension(by_params);
///
/// let read_write = TokenParams::builder().scope("orders:write").scope("orders:read").build();
/// let write_read = TokenParams::builder().scope("orders:read").scope("orders:write").build();
/// assert_eq!(read_write, write_read, "one token for both");
/// // Per request: request.extensions_mut().insert(read_write.clone());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TokenParams {
    inner: Arc<Params>,
}

/// Builds [`TokenParams`]; see [`TokenParams::builder`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct TokenParamsBuilder {
    scopes: Vec<String>,
    params: Vec<(String, String)>,
}

struct Params {
    scopes: Vec<String>,
    params: Vec<(String, String)>,
    /// The store's key over the same inputs: what `Eq` and `Hash` compare.
    key: CacheKey,
}

/// Grants that take scopes and parameters: what [`TokenParams::apply`] sets.
pub trait ParamsGrant: Sized {
    /// Adds a scope.
    fn scope(self, scope: String) -> Self;
    /// Adds a parameter.
    fn param(self, name: String, value: String) -> Self;
}

macro_rules! params_grant {
    ($($grant:ty),*) => {$(
        impl ParamsGrant for $grant {
            fn scope(self, scope: String) -> Self {
                <$grant>::scope(self, scope)
            }
            fn param(self, name: String, value: String) -> Self {
                <$grant>::param(self, name, value)
            }
        }
    )*};
}

params_grant!(crate::grant::ClientCredentials, crate::grant::TokenExchange);

// ===== impl TokenParams =====

impl TokenParams {
    /// Starts a set of parameters.
    pub fn builder() -> TokenParamsBuilder {
        TokenParamsBuilder::default()
    }

    /// The scopes, sorted and without duplicates.
    pub fn scopes(&self) -> &[String] {
        &self.inner.scopes
    }

    /// Every other parameter (`audience`, `resource`, …), sorted by name
    /// then value.
    pub fn params(&self) -> &[(String, String)] {
        &self.inner.params
    }

    /// The value of parameter `name`, the first if it has several.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.inner
            .params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }

    /// `grant` with these scopes and parameters added.
    pub fn apply<G: ParamsGrant>(&self, grant: G) -> G {
        let grant = self
            .scopes()
            .iter()
            .fold(grant, |grant, scope| grant.scope(scope.clone()));
        self.params().iter().fold(grant, |grant, (name, value)| {
            grant.param(name.clone(), value.clone())
        })
    }

    /// The store key of these parameters for a grant whose own key is
    /// `base` (a grant's `cache_key()`, or [`CacheKey::builder`]): give each
    /// key its own store key with it.
    pub fn cache_key(&self, base: crate::store::CacheKeyBuilder) -> CacheKey {
        let base = self
            .scopes()
            .iter()
            .fold(base, |base, scope| base.scope(scope.as_str()));
        self.params()
            .iter()
            .fold(base, |base, (name, value)| {
                base.param(name.as_str(), value.as_str())
            })
            .build()
    }
}

impl PartialEq for TokenParams {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner) || self.inner.key == other.inner.key
    }
}

impl Eq for TokenParams {}

impl Hash for TokenParams {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.key.hash(state);
    }
}

impl fmt::Debug for TokenParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenParams")
            .field("scopes", &self.inner.scopes)
            .field(
                "params",
                &self.inner.params.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

// ===== impl TokenParamsBuilder =====

impl TokenParamsBuilder {
    /// Adds a scope; their order does not matter.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// Adds scopes; their order does not matter.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Adds an `audience` (RFC 8693 §2.1; also what Auth0 and others read).
    pub fn audience(self, audience: impl Into<String>) -> Self {
        self.param("audience", audience)
    }

    /// Adds a `resource` (RFC 8707 resource indicator).
    pub fn resource(self, resource: impl Into<String>) -> Self {
        self.param("resource", resource)
    }

    /// Adds any other parameter that changes the token. Never a secret: it
    /// is part of the key and shows in `Debug` by name.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// The parameters.
    pub fn build(mut self) -> TokenParams {
        self.scopes.sort_unstable();
        self.scopes.dedup();
        self.params.sort_unstable();
        // The store's rules, over empty grant fields: one place says how
        // parameters make a key.
        let key = self
            .scopes
            .iter()
            .fold(CacheKey::builder("", ""), |key, scope| {
                key.scope(scope.as_str())
            });
        let key = self
            .params
            .iter()
            .fold(key, |key, (name, value)| {
                key.param(name.as_str(), value.as_str())
            })
            .namespace("params")
            .build();
        TokenParams {
            inner: Arc::new(Params {
                scopes: self.scopes,
                params: self.params,
                key,
            }),
        }
    }
}
