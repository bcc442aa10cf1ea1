//! [`CacheKey`]: names a token in a store, from everything that changes it.

use std::{fmt, sync::Arc};

use sha2::{Digest, Sha256};

/// Names a token in a [`TokenStore`](super::TokenStore).
///
/// Derived from everything that changes the token a grant gets: the token
/// URL, the grant type, the client id, the scopes (sorted, so their order
/// does not matter), and every other parameter (audience, resource, …). It
/// is a SHA-256 of those, in hex, after a namespace you choose; it never
/// holds the client secret, and two grants that ask for different scopes
/// never share a key.
///
/// The key reads `<namespace>:{<hex>}`; the braces are a Redis Cluster hash
/// tag, so a token and its lock key live in one slot.
///
/// ```
/// use tower_alf::{grant::ClientCredentials, store::CacheKey, ClientAuth, TokenEndpoint};
///
/// # fn main() -> Result<(), tower_alf::Error> {
/// let endpoint = TokenEndpoint::builder("https://idp.example/oauth2/token")
///     .client_auth(ClientAuth::basic("my-client", "s3cr3t"))
///     .build()?;
/// let read = ClientCredentials::new(endpoint.clone()).scope("read");
/// let write = ClientCredentials::new(endpoint).scope("write");
/// let key = read.cache_key().namespace("billing").build();
/// assert!(key.as_str().starts_with("billing:{"));
/// assert!(!key.as_str().contains("s3cr3t"));
/// assert_ne!(key, write.cache_key().namespace("billing").build());
///
/// // A grant of your own names its key by hand.
/// let custom = CacheKey::builder("https://idp.example/oauth2/token", "urn:example:my-grant")
///     .client_id("my-client")
///     .scope("read")
///     .build();
/// # Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    name: Arc<str>,
}

/// Builds a [`CacheKey`]; see [`CacheKey::builder`].
#[derive(Clone)]
#[must_use]
pub struct CacheKeyBuilder {
    namespace: String,
    token_url: String,
    grant_type: String,
    client_id: Option<String>,
    scopes: Vec<String>,
    params: Vec<(String, String)>,
}

// ===== impl CacheKey =====

impl CacheKey {
    /// The namespace used unless set otherwise.
    pub const DEFAULT_NAMESPACE: &'static str = "tower-alf";

    /// Starts a key for tokens of `grant_type` from the endpoint at `token_url`.
    pub fn builder(token_url: impl Into<String>, grant_type: impl Into<String>) -> CacheKeyBuilder {
        CacheKeyBuilder {
            namespace: Self::DEFAULT_NAMESPACE.to_owned(),
            token_url: token_url.into(),
            grant_type: grant_type.into(),
            client_id: None,
            scopes: Vec::new(),
            params: Vec::new(),
        }
    }

    /// The key, as a store writes it: `<namespace>:{<hex>}`.
    pub fn as_str(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CacheKey").field(&&*self.name).finish()
    }
}

// ===== impl CacheKeyBuilder =====

impl CacheKeyBuilder {
    /// Sets the namespace, the readable prefix of the key. Braces are
    /// replaced by `_` (they would break the Redis Cluster hash tag).
    /// Defaults to [`CacheKey::DEFAULT_NAMESPACE`].
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into().replace(['{', '}'], "_");
        self
    }

    /// Sets the client id.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// Adds a scope; the order of scopes does not change the key.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// Adds any other parameter that changes the token (audience, resource,
    /// …). Never pass a secret: it would not be in the key, but it need not
    /// be either.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// The key.
    pub fn build(mut self) -> CacheKey {
        self.scopes.sort_unstable();
        self.scopes.dedup();
        self.params.sort_unstable();
        let mut hash = Sha256::new();
        // Every field is length-prefixed, so no two inputs hash alike by
        // shifting bytes from one field to the next.
        let mut field = |tag: &str, value: &str| {
            hash.update(tag.as_bytes());
            hash.update((value.len() as u64).to_be_bytes());
            hash.update(value.as_bytes());
        };
        field("v", "1");
        field("url", &self.token_url);
        field("grant", &self.grant_type);
        if let Some(client_id) = &self.client_id {
            field("client", client_id);
        }
        for scope in &self.scopes {
            field("scope", scope);
        }
        for (name, value) in &self.params {
            field("param", name);
            field("value", value);
        }
        let digest = hash.finalize();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        CacheKey {
            name: format!("{}:{{{hex}}}", self.namespace).into(),
        }
    }
}

impl fmt::Debug for CacheKeyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheKeyBuilder")
            .field("namespace", &self.namespace)
            .field("token_url", &self.token_url)
            .field("grant_type", &self.grant_type)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field(
                "params",
                &self.params.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> CacheKeyBuilder {
        CacheKey::builder("https://idp/token", "client_credentials").client_id("c")
    }

    #[test]
    fn scope_order_does_not_matter_but_scopes_do() {
        let ab = base().scope("a").scope("b").build();
        assert_eq!(ab, base().scope("b").scope("a").build());
        assert_ne!(ab, base().scope("a").build());
        assert_ne!(ab, base().scope("a b").build());
    }

    #[test]
    fn every_input_changes_the_key() {
        let key = base().build();
        assert_ne!(key, base().param("audience", "x").build());
        assert_ne!(key, base().namespace("other").build());
        assert_ne!(
            key,
            CacheKey::builder("https://idp/token2", "client_credentials")
                .client_id("c")
                .build()
        );
        assert_ne!(
            key,
            CacheKey::builder("https://idp/token", "x")
                .client_id("c")
                .build()
        );
        assert_ne!(
            base().param("a", "bc").build(),
            base().param("ab", "c").build()
        );
    }

    #[test]
    fn namespace_cannot_break_the_hash_tag() {
        let key = base().namespace("a{b}").build();
        assert!(key.as_str().starts_with("a_b_:{"));
        assert_eq!(key.as_str().matches('{').count(), 1);
    }
}
