//! [`TokenSourceBuilder`]: the settings of a source, their defaults and
//! their bounds.

use std::{
    fmt,
    sync::{
        atomic::{AtomicU32, AtomicU64},
        Arc, Mutex,
    },
    time::Duration,
};

use arc_swap::ArcSwapOption;
use tokio::time::Instant;

use super::{
    flight::Flight,
    schedule::{FAR_FUTURE, IDLE, UNVOUCHED},
    stats::Counters,
    Grant, Shared, TokenSource,
};
#[cfg(doc)]
use crate::error::Error;
use crate::token::{Timing, Token};

/// The hook [`TokenSourceBuilder::on_token`] sets.
pub(super) type OnToken = Arc<dyn Fn(&Token) + Send + Sync>;

/// Bounds on how often the issuer is asked, whatever callers do.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) permanent_error_memory: Duration,
    pub(super) rejection_interval: Duration,
}

// ===== TokenSourceBuilder =====

/// Configures a [`TokenSource`]; see [`TokenSource::builder`].
#[must_use]
pub struct TokenSourceBuilder {
    grant: Grant,
    timing: Timing,
    limits: Limits,
    on_token: Option<OnToken>,
}

impl TokenSourceBuilder {
    /// A builder over `grant` with the default settings.
    pub(super) fn new(grant: Grant) -> Self {
        Self {
            grant,
            limits: Limits {
                permanent_error_memory: Self::DEFAULT_PERMANENT_ERROR_MEMORY,
                rejection_interval: Self::DEFAULT_REJECTION_INTERVAL,
            },
            timing: Timing {
                refresh_window: Self::DEFAULT_REFRESH_WINDOW,
                expiry_margin: Self::DEFAULT_EXPIRY_MARGIN,
                jitter: Self::DEFAULT_JITTER,
                default_lifetime: None,
            },
            on_token: None,
        }
    }

    /// Default refresh window: 5 minutes, as MSAL uses (Google's libraries use
    /// 3¾–4 minutes). A token is stale once less than
    /// `min(window, lifetime / 4)` remains; the fraction, as aliri refreshes
    /// at 75 % of the lifetime, keeps a 5-second token from being stale at
    /// birth.
    pub const DEFAULT_REFRESH_WINDOW: Duration = Duration::from_secs(300);

    /// Default expiry margin: 30 seconds. A token is expired, and callers
    /// wait, once less than `min(margin, lifetime / 10)` remains. Go's 10 s is
    /// known to be too short for slow requests; Spring, Duende and Authlib use
    /// 60 s, which wastes a minute of every short-lived token.
    pub const DEFAULT_EXPIRY_MARGIN: Duration = Duration::from_secs(30);

    /// Default jitter: 0.5. Each token's refresh window is widened by a random
    /// 0–50 %, as the AWS SDKs do, so a fleet started together does not
    /// refresh in lockstep.
    pub const DEFAULT_JITTER: f64 = 0.5;

    /// Default memory of a permanent failure ([`Error::is_permanent`], such
    /// as `invalid_client`): 5 s. Callers in that time get the same error
    /// without a new token request, so a misconfigured client cannot hammer
    /// its issuer, yet a fixed configuration is picked up quickly.
    pub const DEFAULT_PERMANENT_ERROR_MEMORY: Duration = Duration::from_secs(5);

    /// Default first backoff after a token refused at birth: 5 s. A server
    /// that refuses every new token (a wrong audience, say) then costs token
    /// requests 5 s, 10 s, 20 s … (at most 64 × 5 s) apart, not one per
    /// request; meanwhile a rejected request's 401 is returned as it is. A
    /// token that served before it was rejected (revoked) is never
    /// throttled. See [`TokenSource::invalidate`].
    pub const DEFAULT_REJECTION_INTERVAL: Duration = Duration::from_secs(5);

    /// The least lifetime a token is scheduled for: 5 s. A token whose
    /// lifetime is shorter (`expires_in: 0`, `expires_in: 1`, a JWT `exp`
    /// already past) is used as if it lived 5 s: stale after 3¾–5 s (with
    /// the jitter), expired after 4½ s. So however small a lifetime a server
    /// sends, a source asks for at most one token per few seconds, whatever
    /// the number of callers: 20 calls at once are one token request.
    ///
    /// Why not Go's "`0` means no expiry": it only covers `0`, and leaves
    /// `expires_in: 1` (always inside Go's 10 s expiry delta) a token
    /// request per call; and a server that sends `0` may mean "expires
    /// now". A floor covers every small value, keeps the token short-lived
    /// as the server asked, and if the server refuses the token sooner the
    /// 401 replay replaces it. [`Token::expires_at`] and [`Token::lifetime`]
    /// still say what the server sent.
    pub const MIN_LIFETIME: Duration = Duration::from_secs(5);

    /// Sets how long a permanent failure is remembered. Defaults to
    /// [`Self::DEFAULT_PERMANENT_ERROR_MEMORY`].
    ///
    /// Any value is safe: one over 30 years (`Duration::MAX`, say) is cut to
    /// 30 years, that is, the failure is remembered for the life of the
    /// source.
    pub fn permanent_error_memory(mut self, memory: Duration) -> Self {
        self.limits.permanent_error_memory = memory.min(FAR_FUTURE);
        self
    }

    /// Sets the first backoff after a token refused at birth; later ones
    /// double, up to 64 times this (see [`TokenSource::invalidate`]).
    /// Defaults to [`Self::DEFAULT_REJECTION_INTERVAL`]; `Duration::ZERO`
    /// turns the throttle off.
    ///
    /// Any value is safe: one over 30 years (`Duration::MAX`, say) is cut to
    /// 30 years, that is, after one token refused at birth and replaced, no
    /// other is replaced until a token is accepted.
    pub fn rejection_interval(mut self, interval: Duration) -> Self {
        self.limits.rejection_interval = interval.min(FAR_FUTURE);
        self
    }

    /// Sets the refresh window. Defaults to [`Self::DEFAULT_REFRESH_WINDOW`].
    /// Any value is safe: the window is at most a quarter of the lifetime.
    pub fn refresh_window(mut self, window: Duration) -> Self {
        self.timing.refresh_window = window;
        self
    }

    /// Sets the expiry margin. Defaults to [`Self::DEFAULT_EXPIRY_MARGIN`].
    /// Any value is safe: the margin is at most a tenth of the lifetime.
    pub fn expiry_margin(mut self, margin: Duration) -> Self {
        self.timing.expiry_margin = margin;
        self
    }

    /// Sets the jitter, a fraction from 0 (none) to 1, clamped to that range.
    /// Defaults to [`Self::DEFAULT_JITTER`].
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.timing.jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        self
    }

    /// The lifetime of a token whose response has no `expires_in`.
    ///
    /// Defaults to `None`: such a token is used until a server rejects it,
    /// as Go's `oauth2` and Duende do. The server did not say it expires,
    /// and the 401 replay recovers when it does; set a lifetime for servers
    /// known to omit `expires_in` on short-lived tokens. A lifetime too long
    /// to add to the clock (`Some(Duration::MAX)`) is the same as `None`.
    pub fn default_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.timing.default_lifetime = lifetime;
        self
    }

    /// Calls `hook` with every new token the grant hands back: once per
    /// token, synchronously, on the fetch task, after the token is cached
    /// and before any caller waiting for it wakes. So when a caller has the
    /// token, the hook has run for it.
    ///
    /// The place to persist what a refresh hands back, such as a rotated
    /// refresh token (an authorization server that rotates them refuses
    /// the old one from now on: save the new one before anyone uses the
    /// token). Keep it quick and non-blocking (a write to a local file,
    /// a message to a channel); it holds up the callers waiting. A panic in
    /// it is caught and logged; the token is served all the same.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use tower_alf::{grant::RefreshTokenGrant, ClientAuth, TokenEndpoint, TokenSource};
    ///
    /// # fn main() -> Result<(), tower_alf::Error> {
    /// let endpoint = TokenEndpoint::builder("https://idp.example/token")
    ///     .client_auth(ClientAuth::none("my-cli"))
    ///     .build()?;
    /// let saved = Arc::new(Mutex::new(None));
    /// let keep = Arc::clone(&saved);
    /// let source = TokenSource::builder(RefreshTokenGrant::new(endpoint, "rt-from-login"))
    ///     .on_token(move |token| {
    ///         if let Some(refresh) = token.refresh_token() {
    ///             // e.g. write it to your keychain or an owner-only file
    ///             *keep.lock().unwrap() = Some(refresh.secret().to_owned());
    ///         }
    ///     })
    ///     .build();
    /// # Ok(()) }
    /// ```
    pub fn on_token<F>(mut self, hook: F) -> Self
    where
        F: Fn(&Token) + Send + Sync + 'static,
    {
        self.on_token = Some(Arc::new(hook));
        self
    }

    /// Builds the source. Nothing is fetched until the first token is asked for.
    pub fn build(self) -> TokenSource {
        TokenSource {
            shared: Arc::new(Shared {
                grant: self.grant,
                timing: self.timing,
                limits: self.limits,
                cache: ArcSwapOption::empty(),
                flight: Mutex::new(Flight::default()),
                background: AtomicU64::new(IDLE),
                background_failures: AtomicU32::new(0),
                served: AtomicU64::new(0),
                fresh: AtomicU64::new(UNVOUCHED),
                epoch: Instant::now(),
                counters: Counters::default(),
                on_token: self.on_token,
            }),
        }
    }
}

impl fmt::Debug for TokenSourceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSourceBuilder")
            .field("timing", &self.timing)
            .field("limits", &self.limits)
            .field("on_token", &self.on_token.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use tower::service_fn;

    use super::*;
    use crate::{
        error::{Error, OAuthError},
        grant::FetchToken,
        source::{schedule::after, tests::scripted_with},
        token::Token,
    };

    #[test]
    fn duration_max_settings_are_cut_to_never() {
        let grant = service_fn(|_request: FetchToken| async { Token::bearer("t") });
        let builder = TokenSource::builder(grant)
            .rejection_interval(Duration::MAX)
            .permanent_error_memory(Duration::MAX);
        assert_eq!(builder.limits.rejection_interval, FAR_FUTURE);
        assert_eq!(builder.limits.permanent_error_memory, FAR_FUTURE);
        let now = Instant::now();
        assert!(after(now, Duration::MAX) >= now + Duration::from_secs(3600));
    }

    #[tokio::test(start_paused = true)]
    async fn a_rejection_interval_of_duration_max_throttles_without_panicking() {
        let (source, calls) = scripted_with(
            |n| async move { Token::bearer(format!("t{n}")) },
            |builder| builder.rejection_interval(Duration::MAX),
        );
        let first = source.token().await.unwrap();
        let second = source.invalidate(first.id()).await.unwrap();
        for _ in 0..3 {
            let again = source.invalidate(second.id()).await;
            assert!(again.unwrap_err().is_throttled());
            tokio::time::advance(Duration::from_secs(365 * 24 * 3600)).await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_error_memory_of_duration_max_keeps_the_oauth_error() {
        let (source, calls) = scripted_with(
            |n| async move {
                if n == 0 {
                    let oauth = OAuthError::new("invalid_client".into(), None, None);
                    return Err(Error::status(
                        http::StatusCode::UNAUTHORIZED,
                        Some(oauth),
                        b"",
                    ));
                }
                Token::bearer("t")
            },
            |builder| builder.permanent_error_memory(Duration::MAX),
        );
        for _ in 0..3 {
            let error = source.token().await.unwrap_err();
            assert_eq!(
                error.oauth_error().unwrap().code().as_str(),
                "invalid_client"
            );
            tokio::time::advance(Duration::from_secs(365 * 24 * 3600)).await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
