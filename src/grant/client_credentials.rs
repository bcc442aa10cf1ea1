use std::fmt;

use super::{
    params::{grant_service, GrantFuture, Params},
    FetchToken,
};
use crate::{endpoint::TokenEndpoint, store::CacheKeyBuilder};

/// The client credentials grant (RFC 6749 §4.4): the client trades its own
/// credentials for a token, with no user involved.
///
/// ```
/// use tower_alf::{grant::ClientCredentials, ClientAuth, TokenEndpoint, TokenSource};
///
/// # fn main() -> Result<(), tower_alf::Error> {
/// let endpoint = TokenEndpoint::builder("https://idp.example/oauth2/token")
///     .client_auth(ClientAuth::basic("my-client", "s3cr3t"))
///     .build()?;
/// let grant = ClientCredentials::new(endpoint)
///     .scope("orders:read")
///     .scope("orders:write")
///     .audience("https://api.example");
/// let tokens = TokenSource::new(grant);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClientCredentials {
    endpoint: TokenEndpoint,
    params: Params,
}

impl ClientCredentials {
    /// The grant against this endpoint, with no scope and no extra parameter.
    pub fn new(endpoint: TokenEndpoint) -> Self {
        Self {
            endpoint,
            params: Params::default(),
        }
    }

    /// Asks for a scope; call again for more. Sent space-separated, in the
    /// order given (RFC 6749 §3.3).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.params.scope(scope.into());
        self
    }

    /// Sets the `audience` parameter (Auth0, Okta and RFC 8693 style),
    /// replacing any audience given before: one call, one audience. Use
    /// [`add_audience`](Self::add_audience) for a server that takes several.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.params.set("audience", audience.into());
        self
    }

    /// Adds an `audience` parameter beside those given before; the request
    /// carries one `audience` per call.
    pub fn add_audience(self, audience: impl Into<String>) -> Self {
        self.param("audience", audience)
    }

    /// Adds a `resource` parameter (RFC 8707) beside those given before:
    /// a token may be for several resources, and the request carries one
    /// `resource` per call.
    pub fn resource(self, resource: impl Into<String>) -> Self {
        self.param("resource", resource)
    }

    /// Adds any other form parameter to the token request, beside any of
    /// the same name given before.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.add(name.into(), value.into());
        self
    }

    /// The token endpoint.
    pub fn endpoint(&self) -> &TokenEndpoint {
        &self.endpoint
    }

    /// The [`CacheKey`](crate::store::CacheKey) of this grant's tokens, to name them in a
    /// [`TokenStore`](crate::store::TokenStore): the token URL, the grant
    /// type, the client id, the scopes and every other parameter; never the
    /// client secret (nor `client_secret`, `client_assertion` or `password`
    /// passed with [`param`](Self::param)). Set a namespace on the builder
    /// before [`build`](CacheKeyBuilder::build).
    pub fn cache_key(&self) -> CacheKeyBuilder {
        self.params
            .cache_key(&self.endpoint, "client_credentials", None)
    }

    fn start(&mut self, _request: FetchToken) -> GrantFuture {
        let form = self.params.form("client_credentials", []);
        Box::pin(self.endpoint.request(form))
    }
}

grant_service!(ClientCredentials);

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("ClientCredentials");
        f.field("endpoint", &self.endpoint);
        self.params.debug_fields(&mut f);
        f.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{endpoint::client_auth::ClientAuth, http::HttpClient};

    fn grant(secret: &str) -> ClientCredentials {
        let client = HttpClient::new(tower::service_fn(
            |_: http::Request<http_body_util::Full<bytes::Bytes>>| async {
                Err::<http::Response<http_body_util::Full<bytes::Bytes>>, _>(std::io::Error::other(
                    "unused",
                ))
            },
        ));
        let endpoint = TokenEndpoint::builder("https://idp.example/token")
            .client_auth(ClientAuth::basic("client", secret))
            .http_client(client)
            .build()
            .unwrap();
        ClientCredentials::new(endpoint)
    }

    #[test]
    fn the_cache_key_ignores_the_secret_and_scope_spelling() {
        let a = grant("one").scope("read write").cache_key().build();
        let b = grant("two")
            .scope("write")
            .scope("read")
            .cache_key()
            .build();
        assert_eq!(a, b, "the secret is not part of the key");
        let c = grant("one")
            .scope("read write")
            .param("client_assertion", "eyJ…")
            .cache_key()
            .build();
        assert_eq!(a, c, "credential parameters stay out");
        let d = grant("one")
            .scope("read write")
            .audience("x")
            .cache_key()
            .build();
        assert_ne!(a, d);
    }
}
