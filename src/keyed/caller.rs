//! [`CallerToken`]: on-behalf-of, keyed by a fingerprint of the caller's token.

use std::{
    fmt,
    hash::{Hash, Hasher},
    sync::Arc,
    time::{Duration, SystemTime},
};

use http::{header::AUTHORIZATION, HeaderMap};

use super::sources::{TokenSources, TokenSourcesBuilder};
use crate::{
    endpoint::response::jwt_expires_at, error::Error, grant::SubjectToken, secret::AccessToken,
    source::TokenSource, store::Fingerprint,
};

/// The token a caller of your service sent, as the key of an on-behalf-of
/// source: [`TokenSources::on_behalf_of`] exchanges it (RFC 8693) for a
/// token to call the next service with, one source per caller.
///
/// The key is the token's [`Fingerprint`] (128 bits of SHA-256), never the
/// token: `Hash`, `Eq`, `Debug` and logs see the fingerprint only. The token
/// itself is kept for the factory, which sends it as the subject. Its
/// expiry is the JWT `exp` (read unverified, only to bound the cache: your
/// service validates the caller's token before trusting it), or one you
/// give with [`with_expires_at`](Self::with_expires_at); with neither, it
/// is taken to last [`DEFAULT_LIFETIME`](Self::DEFAULT_LIFETIME).
///
/// ```
/// use http::HeaderMap;
/// use tower_alf::keyed::CallerToken;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("authorization", "Bearer caller-token-1".parse().unwrap());
/// let caller = CallerToken::from_headers(&headers).unwrap();
/// assert!(!format!("{caller:?}").contains("caller-token-1"));
/// assert_eq!(caller, CallerToken::new("caller-token-1"));
/// ```
#[derive(Clone)]
pub struct CallerToken {
    inner: Arc<Caller>,
}

struct Caller {
    token: AccessToken,
    fingerprint: Fingerprint,
    expires_at: Option<SystemTime>,
}

impl CallerToken {
    /// How long a caller's token whose expiry is unknown (an opaque token)
    /// is taken to last from its first use: 5 minutes, so a revoked opaque
    /// token is not exchanged for longer than that.
    pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

    /// The caller's access token; its expiry read from its JWT `exp`, if it
    /// is a JWT.
    pub fn new(token: impl Into<AccessToken>) -> Self {
        let token = token.into();
        let expires_at = jwt_expires_at(token.secret());
        Self {
            inner: Arc::new(Caller {
                fingerprint: Fingerprint::of(&token),
                token,
                expires_at,
            }),
        }
    }

    /// The bearer token of an `Authorization: Bearer …` header (RFC 6750
    /// §2.1; the scheme in any case), if `headers` has one.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        let token = token.trim_matches(' ');
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
            .then(|| Self::new(token))
    }

    /// Sets when the caller's token expires, replacing what its JWT said.
    pub fn with_expires_at(self, expires_at: SystemTime) -> Self {
        Self {
            inner: Arc::new(Caller {
                token: self.inner.token.clone(),
                fingerprint: self.inner.fingerprint,
                expires_at: Some(expires_at),
            }),
        }
    }

    /// The token's fingerprint: the key.
    pub fn fingerprint(&self) -> Fingerprint {
        self.inner.fingerprint
    }

    /// When the token expires, if known.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.inner.expires_at
    }

    /// How long the token has left now: zero once it has expired,
    /// [`DEFAULT_LIFETIME`](Self::DEFAULT_LIFETIME) when its expiry is
    /// unknown.
    pub fn remaining(&self) -> Duration {
        match self.inner.expires_at {
            Some(at) => at
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO),
            None => Self::DEFAULT_LIFETIME,
        }
    }

    /// The token as the subject of a token exchange
    /// ([`SubjectToken::ACCESS_TOKEN`]).
    pub fn subject(&self) -> SubjectToken {
        SubjectToken::token(self.inner.token.clone(), SubjectToken::ACCESS_TOKEN)
    }
}

impl PartialEq for CallerToken {
    fn eq(&self, other: &Self) -> bool {
        self.inner.fingerprint == other.inner.fingerprint
    }
}

impl Eq for CallerToken {}

impl Hash for CallerToken {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.fingerprint.hash(state);
    }
}

impl fmt::Debug for CallerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallerToken")
            .field("fingerprint", &self.inner.fingerprint)
            .field("expires_at", &self.inner.expires_at)
            .finish_non_exhaustive()
    }
}

impl TokenSources<CallerToken> {
    /// Starts an on-behalf-of map: one source per caller's token, made by
    /// `factory` (typically a [`TokenExchange`](crate::grant::TokenExchange)
    /// with [`CallerToken::subject`] as its subject), each living no longer
    /// than the caller's token ([`TokenSourcesBuilder::entry_lifetime`] set
    /// to [`CallerToken::remaining`]). A caller whose token has expired gets
    /// no exchange: its request fails with an [`Error::is_permanent`] error.
    ///
    /// ```
    /// use tower_alf::{
    ///     grant::TokenExchange, keyed::{CallerToken, TokenSources}, BearerAuthLayer, ClientAuth,
    ///     TokenEndpoint, TokenSource,
    /// };
    ///
    /// # fn main() -> Result<(), tower_alf::Error> {
    /// let endpoint = TokenEndpoint::builder("https://idp.example/oauth2/token")
    ///     .client_auth(ClientAuth::basic("gateway", "s3cr3t"))
    ///     .build()?;
    /// let callers = TokenSources::on_behalf_of(move |caller: &CallerToken| {
    ///     let exchange = TokenExchange::new(endpoint.clone(), caller.subject())
    ///         .audience("https://orders.internal");
    ///     Ok(TokenSource::new(exchange))
    /// })
    /// .max_keys(50_000)
    /// .build();
    /// // The handler puts the caller's token in each downstream request:
    /// // request.extensions_mut().insert(CallerToken::from_headers(incoming.headers()));
    /// let layer = BearerAuthLayer::keyed_by_extension(callers);
    /// # Ok(()) }
    /// ```
    pub fn on_behalf_of<F>(factory: F) -> TokenSourcesBuilder<CallerToken>
    where
        F: Fn(&CallerToken) -> Result<TokenSource, Error> + Send + Sync + 'static,
    {
        Self::builder(factory).entry_lifetime(|caller: &CallerToken| Some(caller.remaining()))
    }
}
