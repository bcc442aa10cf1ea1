//! [`RetryPolicy`]: how a failed token request is tried again.

use std::{fmt, sync::Arc, time::Duration};

use crate::error::Error;

type Classifier = Arc<dyn Fn(&Error) -> bool + Send + Sync>;

/// How a [`TokenEndpoint`](crate::TokenEndpoint) retries a failed token
/// request, for every grant.
///
/// Only what is transient is retried ([`Error::is_retryable`]: connection
/// failures, timeouts, 408, 429, 500, 502, 503, 504), never an OAuth error
/// that will not change. Waits grow exponentially with jitter; a
/// `Retry-After` from the server replaces the computed wait, up to
/// [`max_backoff`](Self::max_backoff). A [`deadline`](Self::deadline) bounds
/// the whole fetch, waits included. Every attempt is built anew, so anything
/// time-based in it (a client assertion) is fresh.
///
/// The defaults are google-auth's: 3 attempts, 1 s then 2 s, ±10 % jitter;
/// `Retry-After` honoured up to 60 s; 30 s for the whole fetch.
///
/// ```
/// use std::time::Duration;
/// use tower_alf::{ClientAuth, RetryPolicy, TokenEndpoint};
///
/// let patient = RetryPolicy::default()
///     .max_attempts(5)
///     .initial_backoff(Duration::from_millis(200))
///     .deadline(Some(Duration::from_secs(10)));
/// let endpoint = TokenEndpoint::builder("https://idp.example/token")
///     .client_auth(ClientAuth::basic("my-client", "s3cr3t"))
///     .retry(patient)
///     .build()
///     .unwrap();
///
/// // Or no retries at all.
/// let once = RetryPolicy::none();
/// ```
#[derive(Clone)]
#[must_use]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_backoff: Duration,
    multiplier: f64,
    jitter: f64,
    max_backoff: Duration,
    deadline: Option<Duration>,
    classifier: Option<Classifier>,
}

impl RetryPolicy {
    /// Default attempts, the first included: 3, as google-auth makes.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
    /// Default first wait: 1 s (google-auth).
    pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_secs(1);
    /// Default growth of the wait per attempt: ×2 (google-auth).
    pub const DEFAULT_MULTIPLIER: f64 = 2.0;
    /// Default jitter: ±10 % of each wait (google-auth).
    pub const DEFAULT_JITTER: f64 = 0.1;
    /// Default cap on one wait, `Retry-After` included: 60 s. Longer than
    /// that, a caller is better served by the error.
    pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60);
    /// Default bound on one fetch, waits included: 30 s, the deadline
    /// google-auth gives a refresh.
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

    /// One attempt, no retry.
    pub fn none() -> Self {
        Self::default().max_attempts(1)
    }

    /// Sets how many attempts a fetch makes, the first included (at least
    /// one). Defaults to [`Self::DEFAULT_MAX_ATTEMPTS`].
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the wait before the first retry. Defaults to
    /// [`Self::DEFAULT_INITIAL_BACKOFF`]. Every wait is then capped by
    /// [`max_backoff`](Self::max_backoff), so any value is safe.
    pub fn initial_backoff(mut self, wait: Duration) -> Self {
        self.initial_backoff = wait;
        self
    }

    /// Sets the factor each wait grows by (at least 1). Defaults to
    /// [`Self::DEFAULT_MULTIPLIER`].
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = if multiplier.is_finite() {
            multiplier.max(1.0)
        } else {
            1.0
        };
        self
    }

    /// Sets the jitter, a fraction from 0 to 1 each wait is randomly moved
    /// by, up or down. Defaults to [`Self::DEFAULT_JITTER`].
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        self
    }

    /// Caps any one wait, including one asked for with `Retry-After`.
    /// Defaults to [`Self::DEFAULT_MAX_BACKOFF`].
    ///
    /// Any value is safe, `Duration::MAX` included: it means "no cap beyond
    /// the server's own", and a `Retry-After` is read as at most one hour.
    /// A wait that would end past the [`deadline`](Self::deadline) is not
    /// made: the fetch fails with the error the server sent.
    pub fn max_backoff(mut self, cap: Duration) -> Self {
        self.max_backoff = cap;
        self
    }

    /// Bounds a whole fetch, attempts and waits; `None` for no bound beyond
    /// the attempts' own timeouts. A retry whose wait would end past the
    /// deadline is not made. Defaults to [`Self::DEFAULT_DEADLINE`].
    ///
    /// A deadline too far to add to the clock (`Some(Duration::MAX)`) is the
    /// same as `None`.
    pub fn deadline(mut self, deadline: Option<Duration>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Decides which errors are retried, instead of [`Error::is_retryable`].
    ///
    /// ```
    /// use tower_alf::RetryPolicy;
    ///
    /// // Also retry the `slow_down` some servers answer with.
    /// let policy = RetryPolicy::default().retry_if(|e| {
    ///     e.is_retryable()
    ///         || e.oauth_error().is_some_and(|o| o.code().as_str() == "slow_down")
    /// });
    /// ```
    pub fn retry_if<F>(mut self, classifier: F) -> Self
    where
        F: Fn(&Error) -> bool + Send + Sync + 'static,
    {
        self.classifier = Some(Arc::new(classifier));
        self
    }

    /// The wait before retry number `retry` (0 for the first) after
    /// `error`, or `None` when `error` is not to be retried then.
    pub(crate) fn wait(&self, retry: u32, error: &Error) -> Option<Duration> {
        if retry.saturating_add(1) >= self.max_attempts {
            return None;
        }
        let retryable = match &self.classifier {
            Some(classifier) => classifier(error),
            None => error.is_retryable(),
        };
        if !retryable {
            return None;
        }
        if let Some(asked) = error.retry_after() {
            return Some(asked.min(self.max_backoff));
        }
        let exponent = i32::try_from(retry).unwrap_or(i32::MAX);
        let base = self.initial_backoff.as_secs_f64() * self.multiplier.powi(exponent);
        let jittered = base * (1.0 + self.jitter * (2.0 * fastrand::f64() - 1.0));
        let wait = Duration::try_from_secs_f64(jittered).unwrap_or(self.max_backoff);
        Some(wait.min(self.max_backoff))
    }

    pub(crate) fn deadline_after_start(&self) -> Option<Duration> {
        self.deadline
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            initial_backoff: Self::DEFAULT_INITIAL_BACKOFF,
            multiplier: Self::DEFAULT_MULTIPLIER,
            jitter: Self::DEFAULT_JITTER,
            max_backoff: Self::DEFAULT_MAX_BACKOFF,
            deadline: Some(Self::DEFAULT_DEADLINE),
            classifier: None,
        }
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("initial_backoff", &self.initial_backoff)
            .field("multiplier", &self.multiplier)
            .field("jitter", &self.jitter)
            .field("max_backoff", &self.max_backoff)
            .field("deadline", &self.deadline)
            .field("custom_classifier", &self.classifier.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn unavailable() -> Error {
        Error::status(StatusCode::SERVICE_UNAVAILABLE, None, b"")
    }

    #[test]
    fn waits_grow_exponentially_within_the_jitter() {
        let policy = RetryPolicy::default().max_attempts(5);
        for _ in 0..100 {
            for (retry, base) in [(0, 1.0), (1, 2.0), (2, 4.0)] {
                let wait = policy.wait(retry, &unavailable()).unwrap().as_secs_f64();
                assert!(wait >= base * 0.9 && wait <= base * 1.1, "{retry}: {wait}");
            }
        }
    }

    #[test]
    fn attempts_are_bounded() {
        let policy = RetryPolicy::default().jitter(0.0);
        assert_eq!(policy.wait(0, &unavailable()), Some(Duration::from_secs(1)));
        assert_eq!(policy.wait(1, &unavailable()), Some(Duration::from_secs(2)));
        assert_eq!(
            policy.wait(2, &unavailable()),
            None,
            "three attempts in all"
        );
        assert_eq!(RetryPolicy::none().wait(0, &unavailable()), None);
    }

    #[test]
    fn retry_after_replaces_the_wait_up_to_the_cap() {
        let policy = RetryPolicy::default().max_backoff(Duration::from_secs(10));
        let asked = |secs| unavailable().with_retry_after(Some(Duration::from_secs(secs)));
        assert_eq!(policy.wait(0, &asked(2)), Some(Duration::from_secs(2)));
        assert_eq!(policy.wait(0, &asked(600)), Some(Duration::from_secs(10)));
    }

    #[test]
    fn only_transient_errors_are_retried_unless_told_otherwise() {
        let policy = RetryPolicy::default();
        let bad_request = Error::status(StatusCode::BAD_REQUEST, None, b"");
        assert_eq!(policy.wait(0, &bad_request), None);
        assert!(policy.wait(0, &Error::timeout()).is_some());
        let policy = policy.retry_if(|e| e.status_code() == Some(StatusCode::BAD_REQUEST));
        assert!(policy.wait(0, &bad_request).is_some());
        assert!(policy.wait(0, &Error::timeout()).is_none());
    }

    #[test]
    fn odd_settings_are_tamed() {
        let policy = RetryPolicy::default()
            .max_attempts(0)
            .multiplier(f64::NAN)
            .jitter(7.0);
        assert_eq!(policy.max_attempts, 1);
        assert_eq!(policy.multiplier, 1.0);
        assert_eq!(policy.jitter, 1.0);
    }
}
