use std::sync::atomic::{AtomicU64, Ordering};

/// What a [`TokenSource`](crate::TokenSource) has done so far; see
/// [`TokenSource::stats`](crate::TokenSource::stats).
///
/// Counts only go up; subtract two snapshots to measure an interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Token requests sent (each fetch, whatever its outcome).
    pub fetches: u64,
    /// Fetches that replaced an earlier token (stale, expired or rejected).
    pub refreshes: u64,
    /// Fetches that failed.
    pub failures: u64,
    /// Requests replayed after a 401.
    pub replays: u64,
    /// Callers that had to wait for a fetch, having no usable token.
    pub waits: u64,
    /// Rejections not followed by a refresh: tokens refused at birth inside
    /// the throttle's backoff (see [`TokenSource::invalidate`](crate::TokenSource::invalidate)).
    pub throttled: u64,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) fetches: AtomicU64,
    pub(super) refreshes: AtomicU64,
    pub(super) failures: AtomicU64,
    pub(super) replays: AtomicU64,
    pub(super) waits: AtomicU64,
    pub(super) throttled: AtomicU64,
}

impl Counters {
    pub(super) fn snapshot(&self) -> Stats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            fetches: read(&self.fetches),
            refreshes: read(&self.refreshes),
            failures: read(&self.failures),
            replays: read(&self.replays),
            waits: read(&self.waits),
            throttled: read(&self.throttled),
        }
    }
}
