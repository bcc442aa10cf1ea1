//! [`Token`]: an access token with its expiry and the header that carries
//! it, and the seam by which a token authorizes a request.
//!
//! A token sets `Authorization`; a sender-constrained token also sets what
//! its constraint needs. The constraint is a value the token carries (a
//! [`Binding`] over a [`SenderConstraint`]), so the middleware, the source
//! and the store handle every kind alike: DPoP (RFC 9449, `dpop.rs`) and
//! the client-certificate binding (RFC 8705, `http/tls.rs`), whose
//! `authorize` sets nothing per request (the connection carries the
//! certificate) and whose thumbprint is the `x5t#S256`.

use std::{
    any::Any,
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use http::{header::AUTHORIZATION, HeaderMap, HeaderValue, Method, Request, Uri};
use tokio::time::Instant;

use crate::{
    challenge::SchemeChallenge,
    error::Error,
    secret::{AccessToken, RefreshToken},
};

/// The kind of token, from the `token_type` of the token response.
///
/// Compared case-insensitively, as RFC 6749 §7.1 requires. A response that
/// omits `token_type` is taken as `Bearer`, as Go's `oauth2` does; any other
/// type is refused with an error, because sending it as a bearer token would
/// not be what the server meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenType {
    /// `Bearer` (RFC 6750).
    Bearer,
    /// `DPoP` (RFC 9449): accepted only from a token endpoint configured
    /// with a DPoP key (feature `dpop`), and sent with a proof.
    DPoP,
}

impl TokenType {
    /// The scheme used in the `Authorization` header.
    pub const fn scheme(self) -> &'static str {
        match self {
            Self::Bearer => "Bearer",
            Self::DPoP => "DPoP",
        }
    }

    /// Parses a `token_type`, case-insensitively; `None` for types this
    /// crate cannot send.
    pub fn parse(token_type: &str) -> Option<Self> {
        if token_type.eq_ignore_ascii_case("bearer") {
            Some(Self::Bearer)
        } else if token_type.eq_ignore_ascii_case("dpop") {
            Some(Self::DPoP)
        } else {
            None
        }
    }
}

/// How a token is bound to its sender, beyond its `Authorization` header:
/// DPoP's key and `ath`, or a client certificate's thumbprint.
///
/// Every method but [`authorize`](Self::authorize) runs on an answer or a
/// store read, never on a request with a Bearer token.
pub(crate) trait SenderConstraint: fmt::Debug + Send + Sync + 'static {
    /// The `WWW-Authenticate` scheme whose challenge speaks for a token so
    /// bound (`dpop`); `None` when the `Bearer` one does.
    fn challenge_scheme(&self) -> Option<&'static str>;

    /// What a stored token records of its binding (`jkt`, RFC 9449 §6.1).
    fn thumbprint(&self) -> &str;

    /// The `cnf` member the thumbprint is (RFC 7800 §3.1): `jkt` for DPoP,
    /// `x5t#S256` for a client certificate (RFC 8705 §3.1).
    fn confirmation(&self) -> &'static str {
        "jkt"
    }

    /// Sets on a request for `method` and `uri` what the constraint needs
    /// beside `Authorization` (a fresh DPoP proof).
    fn authorize(&self, method: &Method, uri: &Uri, headers: &mut HeaderMap) -> Result<(), Error>;

    /// Removes what [`authorize`](Self::authorize) set, before the request
    /// goes out with another token.
    fn unauthorize(&self, headers: &mut HeaderMap);

    /// Files what an answer from `uri` tells the constraint (a DPoP nonce);
    /// whether the next [`authorize`](Self::authorize) now sends something
    /// new.
    fn on_response(&self, uri: &Uri, headers: &HeaderMap) -> bool;

    /// Whether `challenge` (of [`challenge_scheme`](Self::challenge_scheme))
    /// asks for the same token again, authorized anew, once
    /// [`on_response`](Self::on_response) filed something new (RFC 9449 §9
    /// `use_dpop_nonce`).
    fn needs_replay_without_refresh(&self, challenge: &SchemeChallenge) -> bool;

    /// The implementation, for its own feature's accessors.
    #[cfg_attr(not(feature = "dpop"), allow(dead_code))]
    fn as_any(&self) -> &dyn Any;
}

/// The sender constraint a token carries: a reference count to clone.
#[derive(Debug, Clone)]
pub(crate) struct Binding(Arc<dyn SenderConstraint>);

impl Binding {
    #[cfg_attr(not(any(feature = "dpop", feature = "rustls")), allow(dead_code))]
    pub(crate) fn new(constraint: impl SenderConstraint) -> Self {
        Self(Arc::new(constraint))
    }

    /// The constraint.
    pub(crate) fn constraint(&self) -> &dyn SenderConstraint {
        &*self.0
    }

    /// Sets what the constraint needs on a request for `method` and `uri`;
    /// what its answers and a replay need.
    pub(crate) fn authorize(
        self,
        method: Method,
        uri: Uri,
        headers: &mut HeaderMap,
    ) -> Result<Sent, Error> {
        self.0.authorize(&method, &uri, headers)?;
        Ok(Sent {
            binding: self,
            method,
            uri,
        })
    }
}

/// A request sent with a constrained token: the binding, with the method
/// and URI it was authorized for, to file the answers and authorize a
/// replay of the same request.
#[derive(Debug)]
pub(crate) struct Sent {
    binding: Binding,
    method: Method,
    uri: Uri,
}

impl Sent {
    /// The constraint the request was sent under.
    pub(crate) fn constraint(&self) -> &dyn SenderConstraint {
        self.binding.constraint()
    }

    /// Files what `headers` of an answer tell; whether it is news (see
    /// [`SenderConstraint::on_response`]).
    pub(crate) fn on_response(&self, headers: &HeaderMap) -> bool {
        self.binding.0.on_response(&self.uri, headers)
    }

    /// Authorizes the copy of the request anew, for the same token.
    pub(crate) fn authorize_again(&self, headers: &mut HeaderMap) -> Result<(), Error> {
        self.binding.0.authorize(&self.method, &self.uri, headers)
    }

    /// Removes what was set for this token from the copy of the request.
    pub(crate) fn unauthorize(&self, headers: &mut HeaderMap) {
        self.binding.0.unauthorize(headers);
    }
}

/// A key that tokens read back from a store are bound to again (the DPoP
/// key of the grant): a stored token keeps its binding's thumbprint, not
/// the key.
pub(crate) trait BindingKey: fmt::Debug + Send + Sync + 'static {
    /// The token type tokens bound to it have.
    fn token_type(&self) -> TokenType;

    /// The thumbprint its tokens record ([`SenderConstraint::thumbprint`]).
    fn thumbprint(&self) -> &str;

    /// The `cnf` member of that thumbprint
    /// ([`SenderConstraint::confirmation`]).
    fn confirmation(&self) -> &'static str {
        "jkt"
    }

    /// `token`, bound to this key.
    fn bind(&self, token: Token) -> Token;
}

/// Sets `Authorization: header` on `request`, and what `binding` needs; for
/// a constrained token, what its answers and a replay need.
#[inline]
pub(crate) fn authorize<B>(
    header: HeaderValue,
    binding: Option<Binding>,
    request: &mut Request<B>,
) -> Result<Option<Sent>, Error> {
    request.headers_mut().insert(AUTHORIZATION, header);
    constrain(binding, request)
}

/// Sets what `binding` needs on `request`, whose `Authorization` is set;
/// for a constrained token, what its answers and a replay need. A Bearer
/// token (`None`) costs nothing.
#[inline]
pub(crate) fn constrain<B>(
    binding: Option<Binding>,
    request: &mut Request<B>,
) -> Result<Option<Sent>, Error> {
    match binding {
        None => Ok(None),
        Some(binding) => {
            let (method, uri) = (request.method().clone(), request.uri().clone());
            binding
                .authorize(method, uri, request.headers_mut())
                .map(Some)
        }
    }
}

/// Identifies one token a [`TokenSource`](crate::TokenSource) handed out, so
/// that a rejection can name exactly that token (compare and invalidate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenId(u64);

impl TokenId {
    fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// The id as a number; ids grow with every token made.
    pub(crate) fn get(self) -> u64 {
        self.0
    }
}

/// An access token, as the token endpoint issued it.
///
/// Built by grants from the token response (RFC 6749 §5.1); custom grants
/// build one with [`Token::bearer`]. The `Authorization` header value is built
/// once, here, and marked sensitive, so sending the token costs a reference
/// count, not a formatting step. `Debug` never prints the access or refresh
/// token, nor the values of unrecognised response members.
///
/// ```
/// use std::time::Duration;
/// use tower_alf::Token;
///
/// let token = Token::bearer("2YotnFZFEjr1zCsicMWpAA")
///     .unwrap()
///     .with_expires_in(Duration::from_secs(3600));
/// assert_eq!(token.header_value(), "Bearer 2YotnFZFEjr1zCsicMWpAA");
/// assert!(token.header_value().is_sensitive());
/// assert!(!format!("{token:?}").contains("2YotnFZFEjr1zCsicMWpAA"));
/// ```
#[derive(Clone)]
pub struct Token {
    access_token: AccessToken,
    token_type: TokenType,
    issued_at: Instant,
    expires_at: Option<Instant>,
    scope: Option<String>,
    refresh_token: Option<RefreshToken>,
    extra: serde_json::Map<String, serde_json::Value>,
    header: HeaderValue,
    pub(crate) id: TokenId,
    /// From here on the token is stale: served, while one background refresh runs.
    pub(crate) refresh_at: Option<Instant>,
    /// From here on the token is expired: callers wait for a fetch.
    pub(crate) usable_until: Option<Instant>,
    /// The sender constraint the token is bound to; `None` for Bearer.
    binding: Option<Binding>,
}

impl Token {
    /// A bearer token, issued now, that never expires until set otherwise
    /// with [`Token::with_expires_in`].
    ///
    /// "Now" is when the token is built, after the answer arrived; a grant
    /// sets the moment its request was sent with [`Token::with_issued_at`]
    /// (see [`FetchToken::started_at`](crate::grant::FetchToken::started_at)).
    ///
    /// Fails when the token has characters that cannot go in a header.
    pub fn bearer(access_token: impl Into<AccessToken>) -> Result<Self, Error> {
        Self::new(access_token.into(), TokenType::Bearer, Instant::now())
    }

    pub(crate) fn new(
        access_token: AccessToken,
        token_type: TokenType,
        issued_at: Instant,
    ) -> Result<Self, Error> {
        let value = format!("{} {}", token_type.scheme(), access_token.secret());
        let mut header = HeaderValue::from_maybe_shared(Bytes::from(value)).map_err(|_| {
            Error::invalid_token("the access token has characters that cannot be sent in a header")
        })?;
        header.set_sensitive(true);
        // NOTE: the first clone of a `Bytes` made from a `Vec` moves it to a
        // shared allocation; do it now so no request ever pays for it.
        drop(header.clone());
        Ok(Self {
            access_token,
            token_type,
            issued_at,
            expires_at: None,
            scope: None,
            refresh_token: None,
            extra: serde_json::Map::new(),
            header,
            id: TokenId::next(),
            refresh_at: None,
            usable_until: None,
            binding: None,
        })
    }

    /// Binds the token to a sender constraint.
    #[cfg_attr(not(any(feature = "dpop", feature = "rustls")), allow(dead_code))]
    pub(crate) fn bound(mut self, binding: Binding) -> Self {
        self.binding = Some(binding);
        self
    }

    /// The sender constraint the token is bound to (a reference count);
    /// `None` for a Bearer token.
    pub(crate) fn binding(&self) -> Option<Binding> {
        self.binding.clone()
    }

    /// The sender constraint the token is bound to, borrowed.
    pub(crate) fn sender_constraint(&self) -> Option<&dyn SenderConstraint> {
        self.binding.as_ref().map(Binding::constraint)
    }

    /// Sets `Authorization` on `request`, and what the token's sender
    /// constraint needs (see [`authorize`]).
    pub(crate) fn authorize<B>(&self, request: &mut Request<B>) -> Result<Option<Sent>, Error> {
        authorize(self.header.clone(), self.binding(), request)
    }

    /// [`authorize`](Self::authorize) for a request that is not an
    /// `http::Request` (reqwest's): its `method`, `uri` and `headers`.
    #[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
    pub(crate) fn authorize_headers(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &mut HeaderMap,
    ) -> Result<Option<Sent>, Error> {
        headers.insert(AUTHORIZATION, self.header.clone());
        match self.binding() {
            None => Ok(None),
            Some(binding) => binding
                .authorize(method.clone(), uri.clone(), headers)
                .map(Some),
        }
    }

    /// Sets the lifetime, counted from [`issued_at`](Self::issued_at): when
    /// the token was requested, if the grant said so with
    /// [`with_issued_at`](Self::with_issued_at), else when it was built.
    pub fn with_expires_in(mut self, expires_in: Duration) -> Self {
        self.expires_at = self.issued_at.checked_add(expires_in);
        self
    }

    /// Sets when the token was requested, the start of its lifetime:
    /// [`FetchToken::started_at`](crate::grant::FetchToken::started_at), or
    /// the moment the grant sent its request. A lifetime set before keeps
    /// its length and moves with it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tokio::time::Instant;
    /// use tower_alf::Token;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_alf::Error> {
    /// let sent = Instant::now();
    /// // … the request goes out; the answer comes back …
    /// let token = Token::bearer("t")?
    ///     .with_issued_at(sent)
    ///     .with_expires_in(Duration::from_secs(60));
    /// assert_eq!(token.issued_at(), sent);
    /// assert_eq!(token.expires_at(), Some(sent + Duration::from_secs(60)));
    /// # Ok(()) }
    /// ```
    pub fn with_issued_at(mut self, issued_at: Instant) -> Self {
        let lifetime = self.lifetime();
        self.issued_at = issued_at;
        self.expires_at = lifetime.and_then(|lifetime| issued_at.checked_add(lifetime));
        self
    }

    /// Sets the granted scope.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Sets the refresh token.
    pub fn with_refresh_token(mut self, refresh_token: impl Into<RefreshToken>) -> Self {
        self.refresh_token = Some(refresh_token.into());
        self
    }

    /// Sets the expiry on the wall clock, for a provider that is told when
    /// its token expires (a JWT `exp`, an RFC 3339 `expiration`) rather
    /// than for how long. Read against the wall clock now and kept on the
    /// monotonic one, as the other times are; an expiry already past counts
    /// as now (the source then schedules
    /// [`MIN_LIFETIME`](crate::TokenSourceBuilder::MIN_LIFETIME)). Call it
    /// after [`with_issued_at`](Self::with_issued_at), which moves a
    /// lifetime set before it.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use tower_alf::Token;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_alf::Error> {
    /// let at = SystemTime::now() + Duration::from_secs(600);
    /// let token = Token::bearer("t")?.with_expires_at(at);
    /// let left = token.lifetime().unwrap();
    /// assert!(left > Duration::from_secs(590) && left <= Duration::from_secs(600));
    /// # Ok(()) }
    /// ```
    pub fn with_expires_at(mut self, expires_at: SystemTime) -> Self {
        let left = expires_at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let now = Instant::now().max(self.issued_at);
        self.expires_at = now.checked_add(left);
        self
    }

    /// Sets the other members of the token response, as
    /// [`extra`](Self::extra) returns them (the values are never shown in
    /// `Debug`).
    pub fn with_extra(mut self, extra: serde_json::Map<String, serde_json::Value>) -> Self {
        self.extra = extra;
        self
    }

    /// Adds one member to [`extra`](Self::extra), replacing one of the
    /// same name.
    pub fn with_extra_member(
        mut self,
        name: impl Into<String>,
        value: impl Into<serde_json::Value>,
    ) -> Self {
        self.extra.insert(name.into(), value.into());
        self
    }

    /// The access token.
    pub fn access_token(&self) -> &AccessToken {
        &self.access_token
    }

    /// The token type.
    pub fn token_type(&self) -> TokenType {
        self.token_type
    }

    /// When the token was requested (the start of its lifetime), on Tokio's
    /// monotonic clock. [`issued_at_system_time`](Self::issued_at_system_time)
    /// gives it on the wall clock, for logs or your own store.
    pub fn issued_at(&self) -> Instant {
        self.issued_at
    }

    /// When the token expires, on Tokio's monotonic clock; `None` when it
    /// lives until a server rejects it.
    /// [`expires_at_system_time`](Self::expires_at_system_time) gives it on
    /// the wall clock.
    pub fn expires_at(&self) -> Option<Instant> {
        self.expires_at
    }

    /// [`issued_at`](Self::issued_at) on the wall clock: now, less the time
    /// since the token was requested. The same arithmetic the
    /// [stored form](crate::store::StoredToken) uses for its Unix times, so
    /// the two agree (the stored form keeps whole milliseconds). Computed
    /// when called: a wall clock set back or forth in between moves it too.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use tower_alf::Token;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_alf::Error> {
    /// let token = Token::bearer("t")?.with_expires_in(Duration::from_secs(3600));
    /// let expires = token.expires_at_system_time().unwrap();
    /// let left = expires.duration_since(SystemTime::now()).unwrap();
    /// assert!(left > Duration::from_secs(3590) && left <= Duration::from_secs(3600));
    /// # Ok(()) }
    /// ```
    pub fn issued_at_system_time(&self) -> SystemTime {
        to_system_time(self.issued_at)
    }

    /// [`expires_at`](Self::expires_at) on the wall clock, computed as
    /// [`issued_at_system_time`](Self::issued_at_system_time) is; `None`
    /// when the token lives until a server rejects it.
    pub fn expires_at_system_time(&self) -> Option<SystemTime> {
        self.expires_at.map(to_system_time)
    }

    /// The lifetime the server granted, if any.
    pub fn lifetime(&self) -> Option<Duration> {
        self.expires_at
            .map(|at| at.saturating_duration_since(self.issued_at))
    }

    /// The granted scope, if the server said (RFC 6749 §5.1).
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The refresh token, if the server issued one.
    pub fn refresh_token(&self) -> Option<&RefreshToken> {
        self.refresh_token.as_ref()
    }

    /// The other members of the token response, as sent.
    pub fn extra(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.extra
    }

    /// The `Authorization` header value: `Bearer <token>`, marked sensitive.
    pub fn header_value(&self) -> &HeaderValue {
        &self.header
    }

    /// This token's identity, for [`TokenSource::invalidate`](crate::TokenSource::invalidate).
    pub fn id(&self) -> TokenId {
        self.id
    }

    /// Fixes when this token turns stale and when it expires, from its
    /// lifetime and the source's timing (see [`Timing`]).
    ///
    /// A lifetime under [`MIN_LIFETIME`](crate::TokenSourceBuilder::MIN_LIFETIME)
    /// (`expires_in: 0`, a past `exp`) is scheduled as that least lifetime;
    /// [`Token::expires_at`] still says what the server said. Every step is
    /// checked: no lifetime or setting can overflow the clock.
    pub(crate) fn schedule(&mut self, timing: &Timing) {
        if self.expires_at.is_none() {
            if let Some(default) = timing.default_lifetime {
                self.expires_at = self.issued_at.checked_add(default);
            }
        }
        let (Some(expires_at), Some(lifetime)) = (self.expires_at, self.lifetime()) else {
            return;
        };
        let least = crate::source::TokenSourceBuilder::MIN_LIFETIME;
        let (expires_at, lifetime) = match self.issued_at.checked_add(least) {
            Some(floor) if lifetime < least => (floor, least),
            _ => (expires_at, lifetime),
        };
        let margin = timing.expiry_margin.min(lifetime / 10);
        let window = timing.refresh_window.min(lifetime / 4);
        // At most `lifetime / 2`: the product always fits.
        let window = Duration::try_from_secs_f64(
            window.as_secs_f64() * (1.0 + timing.jitter * fastrand::f64()),
        )
        .unwrap_or(window);
        let usable_until = expires_at.checked_sub(margin).unwrap_or(self.issued_at);
        self.usable_until = Some(usable_until);
        // NOTE: never later than `usable_until`: the hot path compares with
        // `refresh_at` alone, so a window smaller than the margin must not
        // make an expired token look fresh.
        let refresh_at = expires_at.checked_sub(window).unwrap_or(self.issued_at);
        self.refresh_at = Some(refresh_at.max(self.issued_at).min(usable_until));
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &self.access_token)
            .field("token_type", &self.token_type)
            .field("expires_in", &self.lifetime())
            .field("scope", &self.scope)
            .field("refresh_token", &self.refresh_token)
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `at` on the wall clock: now, moved by how far `at` is from now.
fn to_system_time(at: Instant) -> SystemTime {
    let (wall, now) = (SystemTime::now(), Instant::now());
    if at <= now {
        let age = now - at;
        wall.checked_sub(age).unwrap_or(wall)
    } else {
        let ahead = at - now;
        wall.checked_add(ahead).unwrap_or(wall)
    }
}

/// When tokens turn stale and expired; see
/// [`TokenSourceBuilder`](crate::TokenSourceBuilder) for the reasons behind
/// the defaults.
#[derive(Debug, Clone)]
pub(crate) struct Timing {
    pub(crate) refresh_window: Duration,
    pub(crate) expiry_margin: Duration,
    pub(crate) jitter: f64,
    pub(crate) default_lifetime: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(jitter: f64) -> Timing {
        Timing {
            refresh_window: Duration::from_secs(300),
            expiry_margin: Duration::from_secs(30),
            jitter,
            default_lifetime: None,
        }
    }

    #[test]
    fn token_type_is_case_insensitive() {
        assert_eq!(TokenType::parse("bEaReR"), Some(TokenType::Bearer));
        assert_eq!(TokenType::parse("mac"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_hour_long_token_turns_stale_five_minutes_before_expiry() {
        let mut t = Token::bearer("t")
            .unwrap()
            .with_expires_in(Duration::from_secs(3600));
        t.schedule(&timing(0.0));
        let start = t.issued_at();
        assert_eq!(t.refresh_at, Some(start + Duration::from_secs(3300)));
        assert_eq!(t.usable_until, Some(start + Duration::from_secs(3570)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_token_uses_fractions_of_its_lifetime() {
        let mut t = Token::bearer("t")
            .unwrap()
            .with_expires_in(Duration::from_secs(8));
        t.schedule(&timing(0.0));
        let start = t.issued_at();
        assert_eq!(t.refresh_at, Some(start + Duration::from_secs(6)));
        assert_eq!(t.usable_until, Some(start + Duration::from_millis(7200)));
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_only_moves_the_refresh_earlier_within_bounds() {
        for _ in 0..100 {
            let mut t = Token::bearer("t")
                .unwrap()
                .with_expires_in(Duration::from_secs(3600));
            t.schedule(&timing(0.5));
            let at = t.refresh_at.unwrap() - t.issued_at();
            assert!(at <= Duration::from_secs(3300) && at >= Duration::from_secs(3150));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_smaller_than_the_margin_never_outlives_expiry() {
        let mut t = Token::bearer("t")
            .unwrap()
            .with_expires_in(Duration::from_secs(100));
        t.schedule(&Timing {
            refresh_window: Duration::ZERO,
            ..timing(0.0)
        });
        assert_eq!(t.refresh_at, t.usable_until);
        assert_eq!(
            t.usable_until,
            Some(t.issued_at() + Duration::from_secs(90))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn default_lifetime_applies_only_when_the_server_gave_none() {
        let mut t = Token::bearer("t").unwrap();
        t.schedule(&Timing {
            default_lifetime: Some(Duration::from_secs(900)),
            ..timing(0.0)
        });
        assert_eq!(t.lifetime(), Some(Duration::from_secs(900)));

        let mut forever = Token::bearer("t").unwrap();
        forever.schedule(&timing(0.0));
        assert_eq!(forever.expires_at(), None);
        assert_eq!(forever.refresh_at, None);
    }

    #[test]
    fn header_refuses_control_characters() {
        assert!(Token::bearer("a\nb").is_err());
    }
}
