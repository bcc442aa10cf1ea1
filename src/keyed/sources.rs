//! [`TokenSources`]: a bounded map from a key to a [`TokenSource`].
//!
//! NOTE: the map is `papaya::HashMap`: a lookup pins an epoch guard and
//! probes the table, with no lock and no write to memory another thread
//! reads (a reader-writer lock's read side writes its lock word, which two
//! workers reading one shard then pass back and forth). Writers (a new key,
//! an eviction, the sweep) take one `Mutex` that readers never see; so does
//! the eviction order, a CLOCK ring (second chance: a read marks its entry,
//! the hand clears marks and evicts the first unmarked entry), the usual
//! approximation of least-recently-used order that readers can keep without
//! a lock. `benches/keyed.rs` measures it beside `dashmap` and an
//! `RwLock<HashMap>`.

use std::{
    collections::VecDeque,
    fmt,
    hash::{Hash, Hasher},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError, Weak,
    },
    time::Duration,
};

use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::{error::Error, source::Stats, source::TokenSource, token::Token};

type Factory<K> = dyn Fn(&K) -> Result<TokenSource, Error> + Send + Sync;
type Lifetime<K> = dyn Fn(&K) -> Option<Duration> + Send + Sync;

/// Longest `Duration` taken as a real setting; longer means "never".
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// A cheap `Clone` map from a key (a tenant, a scope set, a caller) to its
/// own [`TokenSource`], made on first use by your factory.
///
/// Every per-key source keeps the whole contract of a single source: one
/// fetch at a time (per key), background refresh of a stale token,
/// compare-and-invalidate, the rejection throttle, remembered permanent
/// errors. Put it behind
/// [`BearerAuthLayer::keyed`](crate::BearerAuthLayer::keyed) to pick the
/// key per request; see the [module documentation](crate::keyed).
///
/// # Bounded
///
/// At most [`max_keys`](TokenSourcesBuilder::max_keys) keys live at once; a
/// new key past that evicts the least recently used one (CLOCK order: a key
/// read since the hand last passed it gets a second chance). A key unused
/// for [`idle_timeout`](TokenSourcesBuilder::idle_timeout) is dropped too.
/// An evicted key's source is dropped from the map only: a fetch in flight
/// still completes for the requests waiting on it, and nothing is fetched
/// for that source afterwards. The key's next use makes a new source (and
/// fetches anew).
///
/// # Reads
///
/// Looking up an existing key takes no lock and does not allocate; a
/// [`KeyedBearerAuth`](crate::keyed::KeyedBearerAuth) handle that sees the
/// same key again skips the lookup too.
///
/// # Example
///
/// ```
/// use tower_alf::{grant::ClientCredentials, keyed::TokenSources, ClientAuth, TokenEndpoint, TokenSource};
///
/// # fn main() -> Result<(), tower_alf::Error> {
/// let endpoint = TokenEndpoint::builder("https://idp.example/oauth2/token")
///     .client_auth(ClientAuth::basic("gateway", "s3cr3t"))
///     .build()?;
/// // One source per tenant, each asking for its tenant's audience.
/// let tenants = TokenSources::builder(move |tenant: &String| {
///     let grant = ClientCredentials::new(endpoint.clone()).audience(format!("https://{tenant}.api.example"));
///     Ok(TokenSource::new(grant))
/// })
/// .max_keys(1_000)
/// .build();
/// # Ok(()) }
/// ```
pub struct TokenSources<K> {
    inner: Arc<Inner<K>>,
}

/// Configures a [`TokenSources`]; see [`TokenSources::builder`].
#[must_use]
pub struct TokenSourcesBuilder<K> {
    factory: Box<Factory<K>>,
    lifetime: Option<Box<Lifetime<K>>>,
    max_keys: usize,
    idle_timeout: Option<Duration>,
}

/// What a [`TokenSources`] has done so far, in total; see
/// [`TokenSources::stats`]. Per key: [`TokenSources::stats_for`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyedStats {
    /// Keys whose source may be used now (never more than `max_keys`).
    pub live_keys: u64,
    /// Keys whose source was made (a key made again after its eviction
    /// counts again).
    pub created: u64,
    /// Keys evicted to stay within `max_keys`.
    pub evictions: u64,
    /// Keys dropped because they were idle for the idle timeout, or
    /// reached the end of their entry lifetime (the caller's token expired,
    /// for on-behalf-of sources).
    pub expirations: u64,
    /// Factory calls that failed (each failed only its own request).
    pub factory_failures: u64,
    /// The counters of every source, live and dropped, added up: token
    /// requests, refreshes, failures, replays, waits, throttled rejections.
    pub total: Stats,
}

/// A key named for logs: 64 bits of SHA-256 over the key's `Hash` input, as
/// 16 hex digits. Never the key itself (an on-behalf-of key holds a token).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct KeyFingerprint(u64);

struct Inner<K> {
    map: papaya::HashMap<K, Arc<Entry>>,
    factory: Box<Factory<K>>,
    lifetime: Option<Box<Lifetime<K>>>,
    max_keys: usize,
    /// With an idle timeout: the sweep's period and how many periods make
    /// the timeout.
    idle: Option<(Duration, u64)>,
    /// Periods since the sweep began: the coarse clock of `Entry::seen`.
    tick: AtomicU64,
    writer: Mutex<Writer<K>>,
    created: AtomicU64,
    evictions: AtomicU64,
    expirations: AtomicU64,
    factory_failures: AtomicU64,
    sweeping: AtomicBool,
}

/// What only writers touch.
struct Writer<K> {
    /// The CLOCK ring: every live entry once, the hand at the front.
    ring: VecDeque<(K, Arc<Entry>)>,
    /// The counters of sources dropped from the map.
    retired: Stats,
}

/// One key's source and its bookkeeping.
pub(crate) struct Entry {
    pub(crate) source: TokenSource,
    pub(crate) fingerprint: KeyFingerprint,
    /// Read since the CLOCK hand last passed.
    referenced: AtomicBool,
    /// The tick of its last read (with an idle timeout).
    seen: AtomicU64,
    /// Dropped from the map: handles that remember it look the key up again.
    gone: AtomicBool,
    /// The end of its lifetime, if it has one.
    ends_at: Option<Instant>,
}

/// Why an entry left the map.
#[derive(Clone, Copy)]
enum Exit {
    Evicted,
    Expired,
    Removed,
}

// ===== impl TokenSources =====

impl<K> TokenSources<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// The maximum number of keys unless set otherwise: 10,000, thousands of
    /// tenants or callers in a few megabytes.
    pub const DEFAULT_MAX_KEYS: usize = 10_000;
    /// How long an unused key stays unless set otherwise: an hour, a token's
    /// usual lifetime, so a key idle that long would need a new token anyway.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

    /// A map whose sources `factory` makes, with the default bounds.
    pub fn new<F>(factory: F) -> Self
    where
        F: Fn(&K) -> Result<TokenSource, Error> + Send + Sync + 'static,
    {
        Self::builder(factory).build()
    }

    /// Starts configuring a map whose sources `factory` makes.
    ///
    /// `factory` is called once per new key (and again after the key is
    /// dropped), under the map's writer lock: build the source there, do not
    /// fetch, and do not use this map from it (that would wait on the lock
    /// it holds). An error it returns fails the one request that needed the key,
    /// with that error, and nothing is kept, so the next request tries again.
    pub fn builder<F>(factory: F) -> TokenSourcesBuilder<K>
    where
        F: Fn(&K) -> Result<TokenSource, Error> + Send + Sync + 'static,
    {
        TokenSourcesBuilder {
            factory: Box::new(factory),
            lifetime: None,
            max_keys: Self::DEFAULT_MAX_KEYS,
            idle_timeout: Some(Self::DEFAULT_IDLE_TIMEOUT),
        }
    }

    /// The source of `key`, made by the factory if `key` has none.
    pub fn source(&self, key: &K) -> Result<TokenSource, Error> {
        Ok(self.entry(key)?.source.clone())
    }

    /// The source of `key` if it has one now; makes nothing.
    pub fn get(&self, key: &K) -> Option<TokenSource> {
        let guard = self.inner.map.guard();
        let entry = self.inner.map.get(key, &guard)?;
        entry.is_live().then(|| entry.source.clone())
    }

    /// The current token of `key` (see [`TokenSource::token`]), its source
    /// made first if needed.
    pub async fn token(&self, key: &K) -> Result<Arc<Token>, Error> {
        self.source(key)?.token().await
    }

    /// Drops `key`'s source, as an eviction does; returns whether it had one.
    pub fn remove(&self, key: &K) -> bool {
        let mut writer = self.inner.lock_writer();
        let guard = self.inner.map.guard();
        let Some(entry) = self.inner.map.get(key, &guard).cloned() else {
            return false;
        };
        writer.ring.retain(|(_, e)| !Arc::ptr_eq(e, &entry));
        self.inner
            .drop_entry(&mut writer, key, &entry, Exit::Removed, &guard);
        true
    }

    /// How many keys the map holds now, never more than `max_keys` (a key
    /// past its entry lifetime is held until the next sweep or its next
    /// use drops it).
    pub fn len(&self) -> usize {
        self.inner.map.len()
    }

    /// Whether no key has a source now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What `key`'s source has done, if it has one now.
    pub fn stats_for(&self, key: &K) -> Option<Stats> {
        self.get(key).map(|source| source.stats())
    }

    /// What the map and all its sources have done so far.
    pub fn stats(&self) -> KeyedStats {
        let inner = &self.inner;
        let mut total = inner.lock_writer().retired;
        let guard = inner.map.guard();
        let mut live = 0;
        for entry in inner.map.values(&guard) {
            live += u64::from(entry.is_live());
            add(&mut total, entry.source.stats());
        }
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        KeyedStats {
            live_keys: live,
            created: read(&inner.created),
            evictions: read(&inner.evictions),
            expirations: read(&inner.expirations),
            factory_failures: read(&inner.factory_failures),
            total,
        }
    }

    /// The live entry of `key`, made if it has none. Takes no lock when it
    /// has one.
    #[inline]
    pub(crate) fn entry(&self, key: &K) -> Result<Arc<Entry>, Error> {
        {
            let guard = self.inner.map.guard();
            if let Some(entry) = self.inner.map.get(key, &guard) {
                if entry.is_live() {
                    self.touch(entry);
                    return Ok(Arc::clone(entry));
                }
            }
        }
        self.make(key)
    }

    /// Notes a read of `entry`: its CLOCK mark, and its tick when there is
    /// an idle timeout. Loads only, once both are up to date.
    #[inline]
    pub(crate) fn touch(&self, entry: &Entry) {
        if !entry.referenced.load(Ordering::Relaxed) {
            entry.referenced.store(true, Ordering::Relaxed);
        }
        if self.inner.idle.is_some() {
            let tick = self.inner.tick.load(Ordering::Relaxed);
            if entry.seen.load(Ordering::Relaxed) != tick {
                entry.seen.store(tick, Ordering::Relaxed);
            }
        }
    }

    /// The slow path: under the writer lock, the entry another caller just
    /// made, or a new one (evicting to stay within the bound).
    #[cold]
    fn make(&self, key: &K) -> Result<Arc<Entry>, Error> {
        let inner = &self.inner;
        let mut writer = inner.lock_writer();
        let guard = inner.map.guard();
        if let Some(entry) = inner.map.get(key, &guard).cloned() {
            if entry.is_live() {
                self.touch(&entry);
                return Ok(entry);
            }
            writer.ring.retain(|(_, e)| !Arc::ptr_eq(e, &entry));
            inner.drop_entry(&mut writer, key, &entry, Exit::Expired, &guard);
        }
        let fingerprint = KeyFingerprint::of(key);
        let now = Instant::now();
        let ends_at = match inner.lifetime.as_ref().and_then(|lifetime| lifetime(key)) {
            Some(lifetime) if lifetime.is_zero() => {
                inner.factory_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(key = %fingerprint, "key at the end of its lifetime: no source made");
                return Err(Error::permanent(
                    "the key's lifetime has ended (for on-behalf-of sources: the caller's token has expired)",
                ));
            }
            Some(lifetime) if lifetime < FAR_FUTURE => now.checked_add(lifetime),
            _ => None,
        };
        let source = match (inner.factory)(key) {
            Ok(source) => source,
            Err(error) => {
                inner.factory_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(key = %fingerprint, %error, "the token source factory failed for a key");
                return Err(error);
            }
        };
        while writer.ring.len() >= inner.max_keys {
            inner.evict_one(&mut writer, &guard);
        }
        let entry = Arc::new(Entry {
            source,
            fingerprint,
            referenced: AtomicBool::new(false),
            seen: AtomicU64::new(inner.tick.load(Ordering::Relaxed)),
            gone: AtomicBool::new(false),
            ends_at,
        });
        inner.map.insert(key.clone(), Arc::clone(&entry), &guard);
        writer.ring.push_back((key.clone(), Arc::clone(&entry)));
        inner.created.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(key = %fingerprint, live = writer.ring.len(), "token source made for a key");
        drop(writer);
        self.start_sweep();
        Ok(entry)
    }

    /// Starts the task that drops idle and ended entries, once, on the
    /// current runtime; it ends when the map is dropped.
    fn start_sweep(&self) {
        let period = match (self.inner.idle, &self.inner.lifetime) {
            (Some((period, _)), _) => period,
            (None, Some(_)) => Duration::from_secs(1),
            (None, None) => return,
        };
        if self.inner.sweeping.load(Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.inner.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        runtime.spawn(sweep(weak, period));
    }
}

/// Every `period`: one tick, and the idle and ended entries dropped.
async fn sweep<K>(weak: Weak<Inner<K>>, period: Duration)
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    let mut interval = tokio::time::interval_at(Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(inner) = weak.upgrade() else {
            return;
        };
        inner.sweep();
    }
}

impl<K> Clone for TokenSources<K> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K> fmt::Debug for TokenSources<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSources")
            .field("created", &self.inner.created.load(Ordering::Relaxed))
            .field("max_keys", &self.inner.max_keys)
            .field(
                "idle_timeout",
                &self
                    .inner
                    .idle
                    .map(|(period, ticks)| period.saturating_mul(ticks as u32)),
            )
            .finish_non_exhaustive()
    }
}

// ===== impl TokenSourcesBuilder =====

impl<K> TokenSourcesBuilder<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// Sets the most keys kept at once (at least 1); a new key past that
    /// evicts the least recently used. Defaults to
    /// [`TokenSources::DEFAULT_MAX_KEYS`].
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys.max(1);
        self
    }

    /// Sets how long a key may go unused before its source is dropped
    /// (at least 4 ms; 30 years or more means never). A key is dropped
    /// between `timeout` and `1.25 × timeout` after its last use, by a task
    /// on the runtime that made the first key, woken every quarter of it.
    /// Defaults to [`TokenSources::DEFAULT_IDLE_TIMEOUT`].
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = (timeout < FAR_FUTURE).then_some(timeout);
        self
    }

    /// Sets how long a key's entry may live at most, from when its source
    /// is made, as `lifetime` says for that key (`None`: no limit). A key
    /// whose lifetime is zero gets no source: its request fails with an
    /// [`Error::is_permanent`] error. Used by
    /// [`TokenSources::on_behalf_of`], so that an exchanged token is never
    /// used past the caller's own. Defaults to no limit.
    pub fn entry_lifetime<F>(mut self, lifetime: F) -> Self
    where
        F: Fn(&K) -> Option<Duration> + Send + Sync + 'static,
    {
        self.lifetime = Some(Box::new(lifetime));
        self
    }

    /// The map.
    pub fn build(self) -> TokenSources<K> {
        let idle = self.idle_timeout.map(|timeout| {
            let period = (timeout / 4).max(Duration::from_millis(1));
            (period, 4)
        });
        TokenSources {
            inner: Arc::new(Inner {
                map: papaya::HashMap::new(),
                factory: self.factory,
                lifetime: self.lifetime,
                max_keys: self.max_keys,
                idle,
                tick: AtomicU64::new(0),
                writer: Mutex::new(Writer {
                    ring: VecDeque::new(),
                    retired: Stats::default(),
                }),
                created: AtomicU64::new(0),
                evictions: AtomicU64::new(0),
                expirations: AtomicU64::new(0),
                factory_failures: AtomicU64::new(0),
                sweeping: AtomicBool::new(false),
            }),
        }
    }
}

impl<K> fmt::Debug for TokenSourcesBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSourcesBuilder")
            .field("max_keys", &self.max_keys)
            .field("idle_timeout", &self.idle_timeout)
            .field("entry_lifetime", &self.lifetime.is_some())
            .finish_non_exhaustive()
    }
}

// ===== impl Inner =====

impl<K> Inner<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    fn lock_writer(&self) -> MutexGuard<'_, Writer<K>> {
        // NOTE: a factory that panics does so under this lock; the ring is
        // consistent at every call of the factory, so recover.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Evicts one entry: the first the CLOCK hand finds unmarked, clearing
    /// marks as it passes (after two turns, the one at the hand anyway).
    fn evict_one(&self, writer: &mut Writer<K>, guard: &impl papaya::Guard) {
        let mut budget = 2 * writer.ring.len() + 1;
        while let Some((key, entry)) = writer.ring.pop_front() {
            budget -= 1;
            if budget > 0 && entry.referenced.swap(false, Ordering::Relaxed) {
                writer.ring.push_back((key, entry));
                continue;
            }
            self.drop_entry(writer, &key, &entry, Exit::Evicted, guard);
            return;
        }
    }

    /// Drops `entry` (already out of the ring) from the map.
    fn drop_entry(
        &self,
        writer: &mut Writer<K>,
        key: &K,
        entry: &Arc<Entry>,
        exit: Exit,
        guard: &impl papaya::Guard,
    ) {
        if entry.gone.swap(true, Ordering::Relaxed) {
            return;
        }
        if self
            .map
            .get(key, guard)
            .is_some_and(|current| Arc::ptr_eq(current, entry))
        {
            self.map.remove(key, guard);
        }
        add(&mut writer.retired, entry.source.stats());
        let (counter, what) = match exit {
            Exit::Evicted => (Some(&self.evictions), "evicted (max_keys)"),
            Exit::Expired => (Some(&self.expirations), "expired (idle or end of lifetime)"),
            Exit::Removed => (None, "removed"),
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        tracing::debug!(key = %entry.fingerprint, "token source {what}");
    }

    /// One tick; drops the entries idle for the timeout or past their end.
    fn sweep(&self) {
        let tick = self.tick.fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        let mut writer = self.lock_writer();
        let guard = self.map.guard();
        let ring = std::mem::take(&mut writer.ring);
        let mut kept = VecDeque::with_capacity(ring.len());
        for (key, entry) in ring {
            let idle = self
                .idle
                .is_some_and(|(_, ticks)| tick - entry.seen.load(Ordering::Relaxed) > ticks);
            let ended = entry.ends_at.is_some_and(|end| end <= now);
            if idle || ended {
                self.drop_entry(&mut writer, &key, &entry, Exit::Expired, &guard);
            } else {
                kept.push_back((key, entry));
            }
        }
        writer.ring = kept;
    }
}

// ===== impl Entry =====

impl Entry {
    /// Whether the entry may still be used: in the map, and not past its
    /// end. Reads the clock only for an entry with an end.
    #[inline]
    pub(crate) fn is_live(&self) -> bool {
        !self.gone.load(Ordering::Relaxed) && self.ends_at.is_none_or(|end| Instant::now() < end)
    }
}

// ===== impl KeyFingerprint =====

impl KeyFingerprint {
    pub(crate) fn of<K: Hash>(key: &K) -> Self {
        let mut hasher = Sha256Hasher(Sha256::new());
        key.hash(&mut hasher);
        let digest = hasher.0.finalize();
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&digest[..8]);
        Self(u64::from_be_bytes(bytes))
    }
}

impl fmt::Display for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyFingerprint({self})")
    }
}

/// Feeds a key's `Hash` input to SHA-256.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Adds `more` to `total`, counter by counter.
fn add(total: &mut Stats, more: Stats) {
    total.fetches += more.fetches;
    total.refreshes += more.refreshes;
    total.failures += more.failures;
    total.replays += more.replays;
    total.waits += more.waits;
    total.throttled += more.throttled;
}
