//! When to fetch: a token's freshness, the background refresh's backoff, the
//! rejection throttle's arithmetic, and time that cannot overflow.

use std::{
    sync::{atomic::Ordering, Arc, Weak},
    time::Duration,
};

use tokio::time::Instant;

use super::{flight::Flight, Shared};
use crate::token::{Token, TokenId};

/// What "never" is for the settings that take a [`Duration`]: a wait longer
/// than this (`Duration::MAX` included) is cut to it, so no addition to the
/// clock can overflow. Tokio's own "far future" is the same 30 years.
pub(super) const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// A token rejected this soon after its request was sent counts as refused
/// at birth, even if a request with it was accepted.
const AT_BIRTH: Duration = Duration::from_secs(1);

/// `now + wait`, saturating at [`FAR_FUTURE`]: never panics.
pub(super) fn after(now: Instant, wait: Duration) -> Instant {
    now.checked_add(wait.min(FAR_FUTURE))
        .or_else(|| now.checked_add(Duration::from_secs(3600)))
        .unwrap_or(now)
}

// ===== Freshness =====

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Freshness {
    Fresh,
    Stale,
    Expired,
}

/// Where `token` stands now. Reads the clock only for tokens that expire.
#[inline]
pub(super) fn freshness(token: &Token) -> Freshness {
    let Some(refresh_at) = token.refresh_at else {
        return Freshness::Fresh;
    };
    let now = Instant::now();
    if now < refresh_at {
        Freshness::Fresh
    } else if token.usable_until.is_some_and(|until| now >= until) {
        Freshness::Expired
    } else {
        Freshness::Stale
    }
}

// ===== The phase word =====
//
// NOTE: the hot path of an expiring token read the clock on every request
// (`Instant::now`, a vDSO `clock_gettime`: ~23 ns on the bench machine, a
// third of tower-http's whole `AddAuthorization`). Instead, when a token is
// cached a task on the runtime that fetched it vouches for it: it writes
// the token's id into `Shared::fresh`, sleeps until `refresh_at`, and takes
// the id back (when it wakes, or when it is dropped: aborted by the next
// token, or its runtime shutting down). A middleware handle that reads its
// token's id there sends it without looking at the clock.
//
// The safety net, for a timer that is late or never runs (a runtime that is
// no longer driven while another one sends the requests):
// - the word names one token: a newer token, or an invalidated one, is
//   never vouched for by an older timer;
// - a handle reads the clock anyway on every `CHECK_EVERY`-th request, and
//   any clock read that finds the token stale or expired takes the id back
//   for every handle. A starved timer therefore delays a refresh by at most
//   `CHECK_EVERY - 1` requests per handle; past the expiry margin those
//   requests carry an expired token, and the server's 401 is what the
//   middleware already handles (invalidate, fetch once, replay).
// - `TokenSource::token` and `cached` always read the clock.

/// The phase word when no timer vouches for the cached token.
pub(super) const UNVOUCHED: u64 = 0;

/// A handle reads the clock at least once in this many requests, whatever
/// the phase word says.
pub(crate) const CHECK_EVERY: u8 = 64;

impl Shared {
    /// Whether the phase word vouches for `token`: fresh, without a clock
    /// read.
    #[inline]
    pub(super) fn vouches_for(&self, token: &Token) -> bool {
        self.fresh.load(Ordering::Relaxed) == token.id.get()
    }

    /// Takes back the phase word's word for `token`, found stale or expired
    /// by a clock read.
    #[inline]
    pub(super) fn unvouch(&self, token: &Token) {
        if self.vouches_for(token) {
            let _ = self.fresh.compare_exchange(
                token.id.get(),
                UNVOUCHED,
                Ordering::Release,
                Ordering::Relaxed,
            );
        }
    }

    /// Starts the timer that vouches for `token`, just cached, until its
    /// `refresh_at`, and stops the previous token's. Called in the fetch
    /// task (on a runtime), with the flight lock held.
    pub(super) fn arm_phase(self: &Arc<Self>, flight: &mut Flight, token: &Token) {
        if let Some(previous) = flight.phase_timer.take() {
            previous.abort();
        }
        // A token without expiry is fresh without the clock already.
        let Some(refresh_at) = token.refresh_at else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let timer = Phase {
            shared: Arc::downgrade(self),
            id: token.id,
        };
        let task = runtime.spawn(timer.run(refresh_at));
        flight.phase_timer = Some(task.abort_handle());
    }
}

/// The timer that vouches for one cached token until its `refresh_at`;
/// dropped however its task ends, it takes its word back.
struct Phase {
    shared: Weak<Shared>,
    id: TokenId,
}

impl Phase {
    async fn run(self, refresh_at: Instant) {
        {
            let Some(shared) = self.shared.upgrade() else {
                return;
            };
            let current = shared.cache.load();
            let cached = current.as_ref().is_some_and(|token| token.id == self.id);
            if !cached || Instant::now() >= refresh_at {
                return;
            }
            shared.fresh.store(self.id.get(), Ordering::Release);
        }
        tokio::time::sleep_until(refresh_at).await;
    }
}

impl Drop for Phase {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            let _ = shared.fresh.compare_exchange(
                self.id.get(),
                UNVOUCHED,
                Ordering::Release,
                Ordering::Relaxed,
            );
        }
    }
}

// ===== The background refresh =====

/// The background-refresh word: no background refresh runs, none is
/// backing off.
pub(super) const IDLE: u64 = 0;
/// The background-refresh word: a background refresh runs.
pub(super) const RUNNING: u64 = u64::MAX;

/// Wait before the next background attempt after `failures` failed ones:
/// 1 s, doubling, at most 60 s.
fn background_backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(6)).min(Duration::from_secs(60))
}

impl Shared {
    /// Whether a background refresh may start when the background word
    /// reads `state`: none runs, and no backoff holds it off.
    pub(super) fn background_may_start(&self, state: u64) -> bool {
        state != RUNNING && (state == IDLE || self.backoff_over(state))
    }

    /// Ends the background refresh that owns the word: frees it, or, when
    /// the refresh did not succeed, holds the next one off for a backoff.
    pub(super) fn end_background(&self, succeeded: bool) {
        if succeeded {
            self.background_failures.store(0, Ordering::Relaxed);
            self.background.store(IDLE, Ordering::Release);
            return;
        }
        // Keep serving the still-valid token; allow the next background
        // attempt only after a backoff.
        let failures = self.background_failures.fetch_add(1, Ordering::Relaxed);
        let until = after(Instant::now(), background_backoff(failures));
        let state = self.nanos(until).saturating_add(1).min(RUNNING - 1);
        self.background.store(state, Ordering::Release);
    }

    /// Whether the background backoff that `state` encodes has ended.
    fn backoff_over(&self, state: u64) -> bool {
        self.nanos(Instant::now()).saturating_add(1) >= state
    }

    /// `at` as nanoseconds after `epoch`.
    fn nanos(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(since).unwrap_or(RUNNING - 1)
    }
}

// ===== The rejection throttle =====

/// Whether a server accepted `token`, `served` being the newest id a server
/// accepted: a token rejected less than [`AT_BIRTH`] after it was issued
/// counts as refused at birth even so.
pub(super) fn proven(served: u64, token: &Token, now: Instant) -> bool {
    served >= token.id.get() && now.saturating_duration_since(token.issued_at()) >= AT_BIRTH
}

/// How often a token refused at birth is replaced (see
/// [`TokenSource::invalidate`](super::TokenSource::invalidate)).
#[derive(Debug, Default)]
pub(super) struct Throttle {
    /// Tokens refused at birth in a row.
    refused: u32,
    /// Until when a token refused at birth is not replaced.
    until: Option<Instant>,
}

impl Throttle {
    /// Whether a token refused at birth at `now` may be replaced. If so, the
    /// next one may be only after `interval`, doubled for each refusal in a
    /// row before it, up to 64 times.
    pub(super) fn admit(&mut self, now: Instant, interval: Duration) -> bool {
        if self.until.is_some_and(|until| now < until) {
            return false;
        }
        let exponent = self.refused.min(6);
        self.refused = self.refused.saturating_add(1);
        self.until = Some(after(now, interval.saturating_mul(1 << exponent)));
        true
    }

    /// A token was accepted: the server takes ours, the backoff is over.
    pub(super) fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::source::{tests::queued, TokenSourceBuilder};

    #[test]
    fn the_throttle_doubles_its_wait_up_to_64_times_the_interval() {
        let interval = Duration::from_secs(5);
        let mut throttle = Throttle::default();
        let mut now = Instant::now();
        let mut waits = Vec::new();
        for _ in 0..9 {
            assert!(throttle.admit(now, interval));
            let until = throttle.until.unwrap();
            assert!(
                !throttle.admit(until - Duration::from_millis(1), interval),
                "held off until the wait ends"
            );
            waits.push((until - now).as_secs());
            now = until;
        }
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 320, 320]);

        throttle.reset();
        assert!(throttle.admit(now, interval));
        assert_eq!(throttle.until.unwrap() - now, interval, "back to the start");
    }

    #[test]
    fn a_zero_rejection_interval_never_throttles() {
        let mut throttle = Throttle::default();
        let now = Instant::now();
        for _ in 0..100 {
            assert!(throttle.admit(now, Duration::ZERO));
        }
    }

    #[test]
    fn the_background_backoff_doubles_from_one_second_to_a_minute() {
        let waits: Vec<u64> = (0..9).map(|n| background_backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(background_backoff(u32::MAX), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_rejected_again_right_after_a_refresh_is_not_refreshed_again() {
        let (source, calls) = queued(&[3600, 3600, 3600]);
        let first = source.token().await.unwrap();
        let second = source.invalidate(first.id()).await.unwrap();
        let again = source.invalidate(second.id()).await;
        assert!(again.unwrap_err().is_throttled());
        assert_eq!(source.cached().unwrap().id(), second.id(), "still current");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(source.stats().throttled, 1);

        tokio::time::advance(TokenSourceBuilder::DEFAULT_REJECTION_INTERVAL).await;
        let third = source.invalidate(second.id()).await.unwrap();
        assert_ne!(third.id(), second.id(), "allowed once the interval passed");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }
}
