use std::sync::Arc;

use tower_layer::Layer;

use super::{
    ClientCredentials, OAuth1, Placement, SignatureMethod, Signer, TokenCredentials, Verifier,
};

/// Applies [`OAuth1`] to a service: signs every request with OAuth 1.0a
/// (RFC 5849).
///
/// Built from the client credentials, then by-value setters that chain in
/// `ServiceBuilder::layer(..)`; each has the default of the same setter on
/// [`Signer`]. Method and placement parse from their names, so a command
/// line can build one from text:
///
/// ```
/// use tower_alf::oauth1::{ClientCredentials, OAuth1Layer, TokenCredentials};
///
/// # fn main() -> Result<(), tower_alf::oauth1::Error> {
/// let layer = OAuth1Layer::new(ClientCredentials::new("consumer-key", "consumer-secret"))
///     .token(TokenCredentials::new("token", "token-secret"))
///     .method("HMAC-SHA256".parse()?)
///     .placement("header".parse()?);
/// layer.check()?;
/// # Ok(()) }
/// ```
///
/// See the [module documentation](super) for a whole client.
#[derive(Debug, Clone)]
#[must_use]
pub struct OAuth1Layer {
    signer: Arc<Signer>,
}

// ===== impl OAuth1Layer =====

impl OAuth1Layer {
    /// A layer that signs with `client` and no token yet.
    pub fn new(client: ClientCredentials) -> Self {
        Self::from_signer(Signer::new(client))
    }

    /// A layer that signs with `signer`.
    pub fn from_signer(signer: Signer) -> Self {
        Self {
            signer: Arc::new(signer),
        }
    }

    /// The signer every request goes through.
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    fn map(self, f: impl FnOnce(Signer) -> Signer) -> Self {
        let signer = Arc::unwrap_or_clone(self.signer);
        Self::from_signer(f(signer))
    }

    /// Signs with these token credentials; see [`Signer::token`].
    pub fn token(self, token: TokenCredentials) -> Self {
        self.map(|s| s.token(token))
    }

    /// The signature method; see [`Signer::method`].
    pub fn method(self, method: SignatureMethod) -> Self {
        self.map(|s| s.method(method))
    }

    /// Where the protocol parameters go; see [`Signer::placement`].
    pub fn placement(self, placement: Placement) -> Self {
        self.map(|s| s.placement(placement))
    }

    /// The `realm` of the `Authorization` header; see [`Signer::realm`].
    pub fn realm(self, realm: impl Into<String>) -> Self {
        self.map(|s| s.realm(realm))
    }

    /// Sends `oauth_callback`; see [`Signer::callback`].
    pub fn callback(self, callback: impl Into<String>) -> Self {
        self.map(|s| s.callback(callback))
    }

    /// Sends `oauth_verifier`; see [`Signer::verifier`].
    pub fn verifier(self, verifier: Verifier) -> Self {
        self.map(|s| s.verifier(verifier))
    }

    /// Whether to send `oauth_version="1.0"`; see [`Signer::version`].
    pub fn version(self, send: bool) -> Self {
        self.map(|s| s.version(send))
    }

    /// Whether to send `oauth_body_hash`; see [`Signer::body_hash`].
    pub fn body_hash(self, send: bool) -> Self {
        self.map(|s| s.body_hash(send))
    }

    /// Checks that the configuration can sign; see [`Signer::check`].
    pub fn check(&self) -> Result<(), super::Error> {
        self.signer.check()
    }
}

impl<S> Layer<S> for OAuth1Layer {
    type Service = OAuth1<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OAuth1::from_shared(inner, self.signer.clone())
    }
}
