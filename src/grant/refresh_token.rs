use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::time::Instant;

use super::{
    params::{grant_service, GrantFuture, Params},
    FetchToken,
};
use crate::{endpoint::TokenEndpoint, error::Error, secret::RefreshToken, token::Token};

/// The refresh-token grant (RFC 6749 §6): trades a refresh token, obtained
/// elsewhere (an authorization-code flow, `alf login`, a saved token set),
/// for access tokens.
///
/// - The refresh token comes from the last token fetched
///   ([`FetchToken::previous`]), else the one this grant started with.
/// - When the server rotates the refresh token, the new one is kept and
///   used from then on; when it does not, the token returned carries the old
///   one, so [`Token::refresh_token`] is always the one to use next. Read it
///   with [`RefreshTokenGrant::refresh_token`] to save it.
/// - `invalid_grant` (the refresh token is revoked or expired) is an
///   [`Error`] for which [`Error::is_reauthorization_required`] is true:
///   retrying cannot help, a new authorization is needed.
///
/// ```
/// use tower_alf::{grant::RefreshTokenGrant, ClientAuth, TokenEndpoint, TokenSource};
///
/// # fn main() -> Result<(), tower_alf::Error> {
/// let endpoint = TokenEndpoint::builder("https://idp.example/oauth2/token")
///     .client_auth(ClientAuth::none("my-cli"))
///     .build()?;
/// let grant = RefreshTokenGrant::new(endpoint, "tGzv3JOkF0XG5Qx2TlKWIA");
/// let saved = grant.clone(); // shares the rotated refresh token
/// let tokens = TokenSource::new(grant);
/// // … later, to save it: saved.refresh_token()
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RefreshTokenGrant {
    endpoint: TokenEndpoint,
    state: Arc<Mutex<State>>,
    params: Params,
}

struct State {
    /// `None` for a grant that resumes from a store and has not refreshed.
    refresh_token: Option<RefreshToken>,
    /// An access token obtained with the refresh token, served once on
    /// first use while it is still valid.
    initial: Option<Token>,
}

impl RefreshTokenGrant {
    /// A still-valid initial access token is served on first use only when
    /// more than this remains of it.
    const INITIAL_MARGIN: Duration = Duration::from_secs(30);

    /// The grant against `endpoint`, starting from `refresh_token`. The
    /// first token is fetched with it.
    pub fn new(endpoint: TokenEndpoint, refresh_token: impl Into<RefreshToken>) -> Self {
        Self::with_state(endpoint, Some(refresh_token.into()), None)
    }

    /// The grant with no refresh token of its own, for a token set kept in
    /// a [`TokenStore`](crate::store::TokenStore): wrapped in a
    /// [`StoreGrant`](crate::store::StoreGrant), every refresh redeems the
    /// stored set's refresh token, so a process started later (a restart,
    /// another replica) resumes from the store without a new login.
    ///
    /// The store keeps a set with a refresh token past its access token's
    /// expiry, and two instances never redeem the same refresh token: the
    /// one that holds the store's lock refreshes, the new set replaces the
    /// old one by compare and swap, the others take it. With nothing stored
    /// (no login yet, or the store lost it), a fetch fails with a
    /// [permanent](Error::is_permanent) error saying so; seed the store
    /// once with [`new`](Self::new) or [`from_token`](Self::from_token)
    /// (the first token it fetches is stored).
    ///
    /// ```
    /// use tower_alf::{grant::RefreshTokenGrant, store::{MemoryStore, StoreGrant}, ClientAuth, TokenEndpoint, TokenSource};
    ///
    /// # fn main() -> Result<(), tower_alf::Error> {
    /// let endpoint = TokenEndpoint::builder("https://idp.example/oauth2/token")
    ///     .client_auth(ClientAuth::basic("my-client", "s3cr3t"))
    ///     .build()?;
    /// let grant = RefreshTokenGrant::resume(endpoint);
    /// let key = grant.cache_key().build();
    /// let store = MemoryStore::new(); // a RedisStore across processes
    /// let tokens = TokenSource::new(StoreGrant::new(grant, store, key));
    /// # Ok(()) }
    /// ```
    pub fn resume(endpoint: TokenEndpoint) -> Self {
        Self::with_state(endpoint, None, None)
    }

    /// The [`CacheKey`](crate::store::CacheKey) of this grant's token set,
    /// to name it in a [`TokenStore`](crate::store::TokenStore): the token
    /// URL, the `refresh_token` grant type, the client id, the scopes and
    /// the other parameters; never the refresh token itself, so a grant
    /// made with [`resume`](Self::resume) finds the set one made with
    /// [`new`](Self::new) stored. Set a namespace (the user, the account)
    /// on the builder before [`build`](crate::store::CacheKeyBuilder::build)
    /// when several token sets share an endpoint and client.
    pub fn cache_key(&self) -> crate::store::CacheKeyBuilder {
        self.params
            .cache_key(&self.endpoint, "refresh_token", Some("refresh_token"))
    }

    /// The grant starting from a token set: its access token is served
    /// first while it is valid (more than 30 s left, or no expiry), then its
    /// refresh token is used. Fails when the token has no refresh token.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_alf::{grant::RefreshTokenGrant, ClientAuth, TokenEndpoint, Token};
    ///
    /// # fn main() -> Result<(), tower_alf::Error> {
    /// let endpoint = TokenEndpoint::builder("https://idp.example/token")
    ///     .client_auth(ClientAuth::none("my-cli"))
    ///     .build()?;
    /// let token_set = Token::bearer("SlAV32hkKG")?
    ///     .with_expires_in(Duration::from_secs(3600))
    ///     .with_refresh_token("8xLOxBtZp8");
    /// let grant = RefreshTokenGrant::from_token(endpoint, token_set)?;
    /// assert_eq!(grant.refresh_token().secret(), "8xLOxBtZp8");
    /// # Ok(()) }
    /// ```
    pub fn from_token(endpoint: TokenEndpoint, token: Token) -> Result<Self, Error> {
        let refresh_token = token
            .refresh_token()
            .cloned()
            .ok_or_else(|| Error::config("the token set has no refresh token"))?;
        Ok(Self::with_state(endpoint, Some(refresh_token), Some(token)))
    }

    fn with_state(
        endpoint: TokenEndpoint,
        refresh_token: Option<RefreshToken>,
        initial: Option<Token>,
    ) -> Self {
        Self {
            endpoint,
            state: Arc::new(Mutex::new(State {
                refresh_token,
                initial,
            })),
            params: Params::default(),
        }
    }

    /// Asks for a scope (at most the originally granted ones, RFC 6749 §6);
    /// call again for more. Without it, the server grants the original scope.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.params.scope(scope.into());
        self
    }

    /// Adds any other form parameter to the token request.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.add(name.into(), value.into());
        self
    }

    /// The refresh token to use next: the latest one the server issued.
    /// Save it (to a store, a file) after each fetch if the server rotates
    /// refresh tokens. Empty for a grant made with [`resume`](Self::resume)
    /// until its first refresh.
    pub fn refresh_token(&self) -> RefreshToken {
        self.lock()
            .refresh_token
            .clone()
            .unwrap_or_else(|| RefreshToken::new(""))
    }

    /// The token endpoint.
    pub fn endpoint(&self) -> &TokenEndpoint {
        &self.endpoint
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl RefreshTokenGrant {
    fn start(&mut self, request: FetchToken) -> GrantFuture {
        let refresh_token = {
            let mut state = self.lock();
            if let Some(initial) = state.initial.take() {
                let usable = initial.expires_at().is_none_or(|at| {
                    at.saturating_duration_since(Instant::now()) > Self::INITIAL_MARGIN
                });
                if request.previous.is_none() && usable {
                    return Box::pin(std::future::ready(Ok(initial)));
                }
            }
            let refresh_token = request
                .previous
                .as_ref()
                .and_then(|token| token.refresh_token().cloned())
                .or_else(|| state.refresh_token.clone());
            match refresh_token {
                Some(refresh_token) => refresh_token,
                None => {
                    return Box::pin(std::future::ready(Err(Error::permanent(
                        "no refresh token to resume from: the store holds no token set \
                         (log in first)",
                    ))))
                }
            }
        };
        let form = self.params.form(
            "refresh_token",
            [(
                "refresh_token".to_owned(),
                refresh_token.secret().to_owned(),
            )],
        );
        let response = self.endpoint.request(form);
        let state = self.state.clone();
        Box::pin(async move {
            let mut token = response.await?;
            match token.refresh_token() {
                Some(rotated) => {
                    tracing::debug!("the refresh token was rotated");
                    state
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .refresh_token = Some(rotated.clone());
                }
                None => token = token.with_refresh_token(refresh_token),
            }
            Ok(token)
        })
    }
}

grant_service!(RefreshTokenGrant);

impl fmt::Debug for RefreshTokenGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("RefreshTokenGrant");
        f.field("endpoint", &self.endpoint)
            .field("refresh_token", &self.lock().refresh_token);
        self.params.debug_fields(&mut f);
        f.finish()
    }
}
