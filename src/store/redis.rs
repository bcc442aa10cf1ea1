//! [`RedisStore`]: tokens in Redis or Valkey, shared by a fleet.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use redis::{
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    Cmd, Pipeline, RedisFuture, Script, Value,
};
use ring::{
    aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN},
    rand::{SecureRandom as _, SystemRandom},
};

use super::{CacheKey, Fingerprint, StoreError, StoreFuture, StoredToken, TokenStore};

/// The start of every value: the framing version.
const MAGIC: &str = "alf1:";

const COMPARE_AND_DELETE: &str = r"
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, string.len(ARGV[1])) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

const COMPARE_AND_SWAP: &str = r"
local v = redis.call('GET', KEYS[1])
local ok
if ARGV[1] == '' then
  ok = not v
else
  ok = v and string.sub(v, 1, string.len(ARGV[1])) == ARGV[1]
end
if ok then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

/// Takes the lock if it is free or `ARGV[1]` holds it already (so a retried
/// call is harmless), for `ARGV[2]` milliseconds.
const TRY_LOCK: &str = r"
local v = redis.call('GET', KEYS[1])
if not v or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

/// Extends the lease by `ARGV[2]` milliseconds if `ARGV[1]` holds it.
const RENEW_LOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// A [`TokenStore`] in Redis or Valkey, for tokens shared by processes and
/// kept across restarts. Feature `redis`.
///
/// # What is stored
///
/// One string per [`CacheKey`], `alf1:<fingerprint>:p:<json>` (or `…:e:…`
/// when encrypted), where the JSON is [`StoredToken::to_bytes`]: the access
/// token, its issue and expiry times in Unix milliseconds, scope, refresh
/// token and the other response members. Never the client secret. The key's
/// TTL is the token's remaining lifetime, so Redis forgets a token when it
/// expires. The fingerprint (128 bits of a SHA-256 of the access token)
/// lets Lua scripts compare and delete or swap a token without reading it.
/// The fetch lock is `<key>:lock`, set with a `PX` lease to a random owner
/// id, renewed (`PEXPIRE`) and released only by its owner.
///
/// # Encryption at rest
///
/// A token in Redis is a bearer credential: anyone who can read the key can
/// call your APIs. With [`RedisStoreBuilder::encryption_key`], the JSON is
/// sealed with AES-256-GCM, a random 96-bit nonce per value, and the Redis
/// key as associated data (a value copied to another key does not open).
/// With a key set, plaintext values are refused.
///
/// # Connections
///
/// A single node (Redis or Valkey) goes through the `redis` crate's
/// connection manager, which reconnects by itself. A command that fails
/// because the connection was lost (Redis restarted) is sent once more on
/// the new connection, within the same timeout, so the first store call
/// after Redis is back succeeds; every command is safe to send twice (reads,
/// `SET`, and scripts that compare first). With the `redis-cluster`
/// feature, [`RedisStoreBuilder::cluster`] uses the cluster client. The token
/// key and its lock key share a hash tag, so scripts touch one slot.
/// Nothing is connected until first use, so building the store never fails
/// because Redis is down.
///
/// ```no_run
/// use tower_alf::{
///     grant::ClientCredentials,
///     store::{EncryptionKey, RedisStore, StoreGrant},
///     ClientAuth, TokenEndpoint, TokenSource,
/// };
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let endpoint = TokenEndpoint::builder("https://idp.example/oauth2/token")
///     .client_auth(ClientAuth::basic("my-client", std::env::var("CLIENT_SECRET")?))
///     .build()?;
/// let grant = ClientCredentials::new(endpoint).scope("orders:read");
/// let key = grant.cache_key().namespace("orders-service").build();
/// let store = RedisStore::builder("redis://127.0.0.1:6379/")
///     .encryption_key(EncryptionKey::from_base64(&std::env::var("TOKEN_STORE_KEY")?)?)
///     .build()?;
/// let tokens = TokenSource::new(StoreGrant::new(grant, store, key));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    connection: Connection,
    /// AES-256-GCM (ring's) with the store's key.
    cipher: Option<LessSafeKey>,
    ttl_without_expiry: Duration,
    refresh_token_ttl: Duration,
    compare_and_delete: Script,
    compare_and_swap: Script,
    try_lock: Script,
    renew_lock: Script,
    unlock: Script,
    target: String,
}

#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    #[cfg(feature = "redis-cluster")]
    Cluster(Arc<ClusterConnector>),
}

#[cfg(feature = "redis-cluster")]
struct ClusterConnector {
    client: redis::cluster::ClusterClient,
    connection: tokio::sync::OnceCell<redis::cluster_async::ClusterConnection>,
}

/// Configures a [`RedisStore`]; see [`RedisStore::builder`].
#[must_use]
pub struct RedisStoreBuilder {
    urls: Vec<String>,
    cluster: bool,
    key: Option<EncryptionKey>,
    connect_timeout: Duration,
    response_timeout: Duration,
    ttl_without_expiry: Duration,
    refresh_token_ttl: Duration,
}

/// A 256-bit key that encrypts tokens at rest in a [`RedisStore`].
///
/// `Debug` never prints it. Generate one with
/// `head -c 32 /dev/urandom | base64` and keep it where you keep the
/// client secret.
///
/// ```
/// use tower_alf::store::EncryptionKey;
///
/// let key = EncryptionKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
/// assert_eq!(format!("{key:?}"), "EncryptionKey([redacted])");
/// assert!(EncryptionKey::from_base64("too short").is_err());
/// ```
#[derive(Clone)]
pub struct EncryptionKey([u8; 32]);

// ===== impl RedisStore =====

impl RedisStore {
    /// A store on the Redis or Valkey node at `url`
    /// (`redis://[user:password@]host:port/db`), with the defaults.
    pub fn new(url: impl AsRef<str>) -> Result<Self, StoreError> {
        Self::builder(url).build()
    }

    /// Starts configuring a store on the node at `url`.
    pub fn builder(url: impl AsRef<str>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            urls: vec![url.as_ref().to_owned()],
            cluster: false,
            key: None,
            connect_timeout: RedisStoreBuilder::DEFAULT_CONNECT_TIMEOUT,
            response_timeout: RedisStoreBuilder::DEFAULT_RESPONSE_TIMEOUT,
            ttl_without_expiry: RedisStoreBuilder::DEFAULT_TTL_WITHOUT_EXPIRY,
            refresh_token_ttl: RedisStoreBuilder::DEFAULT_REFRESH_TOKEN_TTL,
        }
    }

    fn connection(&self) -> Connection {
        self.inner.connection.clone()
    }

    fn lock_key(key: &CacheKey) -> String {
        format!("{key}:lock")
    }

    /// Runs a lease script (take or renew) for `owner`: whether it holds
    /// the lease for `ttl` from now.
    async fn lease(
        &self,
        script: &Script,
        key: &CacheKey,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut connection = self.connection();
        let held: i64 = script
            .key(Self::lock_key(key))
            .arg(owner)
            .arg(lease_millis(ttl))
            .invoke_async(&mut connection)
            .await
            .map_err(failed)?;
        Ok(held == 1)
    }

    /// The value stored for `token` under `key`.
    fn encode(&self, key: &CacheKey, token: &StoredToken) -> Result<Vec<u8>, StoreError> {
        let json = token.to_bytes();
        let mut value = format!("{MAGIC}{}:", token.fingerprint()).into_bytes();
        match &self.inner.cipher {
            None => {
                value.extend_from_slice(b"p:");
                value.extend_from_slice(&json);
            }
            Some(cipher) => {
                // The nonce, then the ciphertext and its 16-byte tag.
                let failed = |_| StoreError::new("could not encrypt the token");
                let mut nonce = [0u8; NONCE_LEN];
                SystemRandom::new().fill(&mut nonce).map_err(failed)?;
                let mut raw = nonce.to_vec();
                raw.extend_from_slice(&json);
                let mut sealed = raw.split_off(NONCE_LEN);
                cipher
                    .seal_in_place_append_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(key.as_str().as_bytes()),
                        &mut sealed,
                    )
                    .map_err(failed)?;
                raw.extend_from_slice(&sealed);
                value.extend_from_slice(b"e:");
                value.extend_from_slice(URL_SAFE_NO_PAD.encode(raw).as_bytes());
            }
        }
        Ok(value)
    }

    /// The token in a stored value; anything else is
    /// [`StoreError::is_invalid`].
    fn decode(&self, key: &CacheKey, value: &[u8]) -> Result<StoredToken, StoreError> {
        let rest = value
            .strip_prefix(MAGIC.as_bytes())
            .ok_or_else(|| StoreError::invalid("not a tower-alf value"))?;
        let (fingerprint, rest) = split_at_colon(rest)?;
        let (kind, payload) = split_at_colon(rest)?;
        let json = match (kind, &self.inner.cipher) {
            (b"p", None) => payload.to_vec(),
            (b"e", Some(cipher)) => {
                let raw = URL_SAFE_NO_PAD
                    .decode(payload)
                    .map_err(|_| StoreError::invalid("the sealed token is not base64"))?;
                let Some((nonce, _)) = raw.split_first_chunk::<NONCE_LEN>() else {
                    return Err(StoreError::invalid("the sealed token is too short"));
                };
                let nonce = Nonce::assume_unique_for_key(*nonce);
                let mut sealed = raw[NONCE_LEN..].to_vec();
                let json = cipher
                    .open_in_place(nonce, Aad::from(key.as_str().as_bytes()), &mut sealed)
                    .map_err(|_| {
                        StoreError::invalid("the sealed token does not open with this key")
                    })?;
                json.to_vec()
            }
            (b"p", Some(_)) => {
                return Err(StoreError::invalid(
                    "a plaintext token where encryption is required",
                ))
            }
            (b"e", None) => {
                return Err(StoreError::invalid(
                    "an encrypted token and no encryption key",
                ))
            }
            _ => return Err(StoreError::invalid("unknown value kind")),
        };
        let token = StoredToken::from_bytes(&json)?;
        if token.fingerprint().to_string().as_bytes() != fingerprint {
            return Err(StoreError::invalid(
                "the fingerprint does not match the token",
            ));
        }
        Ok(token)
    }

    /// The TTL to write for `token` now, in milliseconds; `None` once expired.
    fn ttl_millis(&self, token: &StoredToken) -> Option<u64> {
        let remaining = token.remaining(SystemTime::now());
        let ttl = match token.refresh_token() {
            // A token set outlives its access token (`TokenStore::put`).
            Some(_) => remaining
                .unwrap_or_default()
                .max(self.inner.refresh_token_ttl),
            None => remaining.unwrap_or(self.inner.ttl_without_expiry),
        };
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        (millis > 0).then_some(millis)
    }
}

fn split_at_colon(bytes: &[u8]) -> Result<(&[u8], &[u8]), StoreError> {
    let at = bytes
        .iter()
        .position(|b| *b == b':')
        .ok_or_else(|| StoreError::invalid("a truncated value"))?;
    Ok((&bytes[..at], &bytes[at + 1..]))
}

fn prefix(expected: &Fingerprint) -> String {
    format!("{MAGIC}{expected}:")
}

/// A lease in milliseconds, as Redis takes it: at least 1, and at most a
/// year (clamped; `PX` refuses values near `i64::MAX`).
fn lease_millis(ttl: Duration) -> u64 {
    const MAX_MILLIS: u64 = 365 * 24 * 3600 * 1000;
    u64::try_from(ttl.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_MILLIS)
}

fn failed(error: redis::RedisError) -> StoreError {
    StoreError::new(error)
}

impl TokenStore for RedisStore {
    fn get<'a>(&'a self, key: &'a CacheKey) -> StoreFuture<'a, Option<StoredToken>> {
        Box::pin(async move {
            let mut connection = self.connection();
            let value: Option<Vec<u8>> = redis::cmd("GET")
                .arg(key.as_str())
                .query_async(&mut connection)
                .await
                .map_err(failed)?;
            value.map(|value| self.decode(key, &value)).transpose()
        })
    }

    fn put<'a>(&'a self, key: &'a CacheKey, token: &'a StoredToken) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let Some(ttl) = self.ttl_millis(token) else {
                return Ok(());
            };
            let value = self.encode(key, token)?;
            let mut connection = self.connection();
            redis::cmd("SET")
                .arg(key.as_str())
                .arg(value)
                .arg("PX")
                .arg(ttl)
                .query_async::<()>(&mut connection)
                .await
                .map_err(failed)
        })
    }

    fn compare_and_delete<'a>(
        &'a self,
        key: &'a CacheKey,
        expected: &'a Fingerprint,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut connection = self.connection();
            let deleted: i64 = self
                .inner
                .compare_and_delete
                .key(key.as_str())
                .arg(prefix(expected))
                .invoke_async(&mut connection)
                .await
                .map_err(failed)?;
            Ok(deleted == 1)
        })
    }

    fn compare_and_swap<'a>(
        &'a self,
        key: &'a CacheKey,
        expected: Option<&'a Fingerprint>,
        new: &'a StoredToken,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let Some(ttl) = self.ttl_millis(new) else {
                return Ok(false);
            };
            let value = self.encode(key, new)?;
            let mut connection = self.connection();
            let swapped: i64 = self
                .inner
                .compare_and_swap
                .key(key.as_str())
                .arg(expected.map(prefix).unwrap_or_default())
                .arg(value)
                .arg(ttl)
                .invoke_async(&mut connection)
                .await
                .map_err(failed)?;
            Ok(swapped == 1)
        })
    }

    fn try_lock<'a>(
        &'a self,
        key: &'a CacheKey,
        owner: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(self.lease(&self.inner.try_lock, key, owner, ttl))
    }

    fn renew_lock<'a>(
        &'a self,
        key: &'a CacheKey,
        owner: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(self.lease(&self.inner.renew_lock, key, owner, ttl))
    }

    fn unlock<'a>(&'a self, key: &'a CacheKey, owner: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut connection = self.connection();
            let deleted: i64 = self
                .inner
                .unlock
                .key(Self::lock_key(key))
                .arg(owner)
                .invoke_async(&mut connection)
                .await
                .map_err(failed)?;
            Ok(deleted == 1)
        })
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("target", &self.inner.target)
            .field("encrypted", &self.inner.cipher.is_some())
            .field("ttl_without_expiry", &self.inner.ttl_without_expiry)
            .field("refresh_token_ttl", &self.inner.refresh_token_ttl)
            .finish_non_exhaustive()
    }
}

// ===== impl Connection =====

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => Box::pin(async move {
                match connection.send_packed_command(cmd).await {
                    // NOTE: the manager has started a reconnect; the second
                    // attempt waits for it. Every command here is safe to
                    // send twice.
                    Err(e) if lost_connection(&e) => connection.send_packed_command(cmd).await,
                    result => result,
                }
            }),
            #[cfg(feature = "redis-cluster")]
            Self::Cluster(connector) => {
                let connector = Arc::clone(connector);
                Box::pin(async move { connector.connection().await?.req_packed_command(cmd).await })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => Box::pin(async move {
                match connection.send_packed_commands(cmd, offset, count).await {
                    Err(e) if lost_connection(&e) => {
                        connection.send_packed_commands(cmd, offset, count).await
                    }
                    result => result,
                }
            }),
            #[cfg(feature = "redis-cluster")]
            Self::Cluster(connector) => {
                let connector = Arc::clone(connector);
                Box::pin(async move {
                    connector
                        .connection()
                        .await?
                        .req_packed_commands(cmd, offset, count)
                        .await
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            #[cfg(feature = "redis-cluster")]
            Self::Cluster(_) => 0,
        }
    }
}

/// Whether `error` means the connection is gone (the manager reconnects on
/// it), not that Redis answered with an error.
fn lost_connection(error: &redis::RedisError) -> bool {
    error.is_io_error() || error.is_connection_dropped() || error.is_unrecoverable_error()
}

#[cfg(feature = "redis-cluster")]
impl ClusterConnector {
    /// The cluster connection, made on first use; a failed attempt is tried
    /// again on the next call.
    async fn connection(&self) -> redis::RedisResult<redis::cluster_async::ClusterConnection> {
        self.connection
            .get_or_try_init(|| self.client.get_async_connection())
            .await
            .cloned()
    }
}

// ===== impl RedisStoreBuilder =====

impl RedisStoreBuilder {
    /// Default time to connect: 250 ms. Redis is local to the fleet; a store
    /// that cannot be reached quickly is skipped, not waited for.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(250);

    /// Default time for one command: 250 ms.
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_millis(250);

    /// The longest connect or command timeout: 60 s; longer is clamped.
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

    /// Default TTL of a token the server gave no lifetime: 1 hour, so a
    /// token is never kept forever.
    pub const DEFAULT_TTL_WITHOUT_EXPIRY: Duration = Duration::from_secs(3600);

    /// Default TTL of a token set with a refresh token: 30 days from its
    /// last refresh, however soon its access token expires, so a source
    /// started later resumes from it. Refresh tokens commonly live that
    /// long without use; set the server's own with
    /// [`refresh_token_ttl`](Self::refresh_token_ttl).
    pub const DEFAULT_REFRESH_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

    /// The longest TTL of a token without an expiry: 365 days; longer is
    /// clamped (Redis refuses a `PX` near `i64::MAX` milliseconds).
    pub const MAX_TTL_WITHOUT_EXPIRY: Duration = Duration::from_secs(365 * 24 * 3600);

    /// Encrypts tokens at rest with `key`. Defaults to none (plaintext).
    pub fn encryption_key(mut self, key: EncryptionKey) -> Self {
        self.key = Some(key);
        self
    }

    /// Sets the connect timeout, at most [`Self::MAX_TIMEOUT`] (clamped).
    /// Defaults to [`Self::DEFAULT_CONNECT_TIMEOUT`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout.min(Self::MAX_TIMEOUT);
        self
    }

    /// Sets the command timeout, at most [`Self::MAX_TIMEOUT`] (clamped).
    /// Defaults to [`Self::DEFAULT_RESPONSE_TIMEOUT`].
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout.min(Self::MAX_TIMEOUT);
        self
    }

    /// Sets the TTL of tokens without an expiry, at most
    /// [`Self::MAX_TTL_WITHOUT_EXPIRY`] (clamped). Defaults to
    /// [`Self::DEFAULT_TTL_WITHOUT_EXPIRY`].
    pub fn ttl_without_expiry(mut self, ttl: Duration) -> Self {
        self.ttl_without_expiry = ttl.min(Self::MAX_TTL_WITHOUT_EXPIRY);
        self
    }

    /// Sets the TTL of a token set with a refresh token (from each write,
    /// and never shorter than its access token's life), at most
    /// [`Self::MAX_TTL_WITHOUT_EXPIRY`] (clamped). Defaults to
    /// [`Self::DEFAULT_REFRESH_TOKEN_TTL`].
    pub fn refresh_token_ttl(mut self, ttl: Duration) -> Self {
        self.refresh_token_ttl = ttl.min(Self::MAX_TTL_WITHOUT_EXPIRY);
        self
    }

    /// Talks to a Redis Cluster: the URL given to the builder and `nodes`
    /// are its seed nodes. Feature `redis-cluster`.
    #[cfg(feature = "redis-cluster")]
    pub fn cluster<I, S>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.cluster = true;
        self.urls.extend(nodes.into_iter().map(Into::into));
        self
    }

    /// Builds the store. Connects lazily: fails only on a malformed URL, or
    /// when called outside a Tokio runtime (the connection manager runs as a
    /// task).
    pub fn build(self) -> Result<RedisStore, StoreError> {
        // NOTE: the connection manager starts a task; outside a runtime the
        // redis crate would panic.
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StoreError::new(
                "a RedisStore must be built inside a Tokio runtime",
            ));
        }
        let target = self
            .urls
            .iter()
            .map(|url| redact_password(url))
            .collect::<Vec<_>>()
            .join(",");
        let connection = if self.cluster {
            self.cluster_connection()?
        } else {
            let url = self.urls.first().map(String::as_str).unwrap_or_default();
            let client = redis::Client::open(url).map_err(failed)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.connect_timeout))
                .set_response_timeout(Some(self.response_timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(500));
            Connection::Single(
                ConnectionManager::new_lazy_with_config(client, config).map_err(failed)?,
            )
        };
        Ok(RedisStore {
            inner: Arc::new(Inner {
                connection,
                cipher: match self.key {
                    Some(key) => Some(LessSafeKey::new(
                        UnboundKey::new(&AES_256_GCM, &key.0)
                            .map_err(|_| StoreError::new("cannot use the encryption key"))?,
                    )),
                    None => None,
                },
                ttl_without_expiry: self.ttl_without_expiry,
                refresh_token_ttl: self.refresh_token_ttl,
                compare_and_delete: Script::new(COMPARE_AND_DELETE),
                compare_and_swap: Script::new(COMPARE_AND_SWAP),
                try_lock: Script::new(TRY_LOCK),
                renew_lock: Script::new(RENEW_LOCK),
                unlock: Script::new(UNLOCK),
                target,
            }),
        })
    }

    #[cfg(feature = "redis-cluster")]
    fn cluster_connection(&self) -> Result<Connection, StoreError> {
        let client = redis::cluster::ClusterClient::builder(self.urls.clone())
            .connection_timeout(self.connect_timeout)
            .response_timeout(self.response_timeout)
            .build()
            .map_err(failed)?;
        Ok(Connection::Cluster(Arc::new(ClusterConnector {
            client,
            connection: tokio::sync::OnceCell::new(),
        })))
    }

    #[cfg(not(feature = "redis-cluster"))]
    fn cluster_connection(&self) -> Result<Connection, StoreError> {
        Err(StoreError::new(
            "Redis Cluster needs the redis-cluster feature",
        ))
    }
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field(
                "urls",
                &self
                    .urls
                    .iter()
                    .map(|u| redact_password(u))
                    .collect::<Vec<_>>(),
            )
            .field("cluster", &self.cluster)
            .field("encrypted", &self.key.is_some())
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("ttl_without_expiry", &self.ttl_without_expiry)
            .field("refresh_token_ttl", &self.refresh_token_ttl)
            .finish()
    }
}

/// `url` fit to print: parsed, its password and secret query parameters
/// redacted (see [`crate::redact::connection_url`]).
fn redact_password(url: &str) -> String {
    crate::redact::connection_url(url)
}

// ===== impl EncryptionKey =====

impl EncryptionKey {
    /// A key from its 32 bytes.
    pub const fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A key from 32 bytes in standard or URL-safe base64 (padded or not).
    pub fn from_base64(text: &str) -> Result<Self, StoreError> {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE};
        let text = text.trim();
        let bytes = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE.decode(text))
            .or_else(|_| URL_SAFE_NO_PAD.decode(text))
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .map_err(|_| StoreError::new("the encryption key is not base64"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| StoreError::new("the encryption key must be 32 bytes"))?;
        Ok(Self(bytes))
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Token;

    fn key() -> CacheKey {
        CacheKey::builder("https://idp/token", "client_credentials").build()
    }

    #[tokio::test]
    async fn values_round_trip_and_reject_tampering() {
        let token = StoredToken::from_token(
            &Token::bearer("tok-secret")
                .unwrap()
                .with_expires_in(Duration::from_secs(60)),
        );
        let plain = RedisStore::new("redis://127.0.0.1:1/").unwrap();
        let sealed = RedisStore::builder("redis://127.0.0.1:1/")
            .encryption_key(EncryptionKey::new([7; 32]))
            .build()
            .unwrap();
        for store in [&plain, &sealed] {
            let value = store.encode(&key(), &token).unwrap();
            assert_eq!(store.decode(&key(), &value).unwrap(), token);
        }
        let value = sealed.encode(&key(), &token).unwrap();
        assert!(!String::from_utf8_lossy(&value).contains("tok-secret"));
        let other = CacheKey::builder("https://idp/token", "x").build();
        assert!(sealed.decode(&other, &value).unwrap_err().is_invalid());
        assert!(plain.decode(&key(), &value).unwrap_err().is_invalid());
        let plain_value = plain.encode(&key(), &token).unwrap();
        assert!(sealed
            .decode(&key(), &plain_value)
            .unwrap_err()
            .is_invalid());
        for garbage in [
            &b""[..],
            b"alf1:",
            b"alf1:00:p:{}",
            b"\xff\x00",
            b"alf1:x:e:!!",
        ] {
            assert!(sealed.decode(&key(), garbage).is_err());
            assert!(plain.decode(&key(), garbage).is_err());
        }
    }

    /// A value the previous implementation (RustCrypto's aes-gcm 0.10)
    /// sealed with the key `[7; 32]` still opens: the layout (nonce,
    /// ciphertext, tag) and the AAD (the cache key) are unchanged.
    #[tokio::test]
    async fn values_sealed_by_earlier_versions_still_open() {
        const EARLIER: &str = "alf1:66323820494d91b9c6ea1373cab22c13:e:KKW3ofERZVpWJimrpPSmAVkPY-FR4iQqMEdMNtvKI988JaVYjF-2YNSLUUwVnozLqEjGxRccf6DvLXKjEJIwBqJkWCGx2IJDvRi7TcYHNBK6Wt_8dRl2";
        let sealed = RedisStore::builder("redis://127.0.0.1:1/")
            .encryption_key(EncryptionKey::new([7; 32]))
            .build()
            .unwrap();
        let token = sealed.decode(&key(), EARLIER.as_bytes()).unwrap();
        assert_eq!(token.access_token().secret(), "tok-secret");
        assert_eq!(token.token_type(), crate::TokenType::Bearer);
        assert_eq!(token.expires_at(), None);
        let other = RedisStore::builder("redis://127.0.0.1:1/")
            .encryption_key(EncryptionKey::new([8; 32]))
            .build()
            .unwrap();
        assert!(other
            .decode(&key(), EARLIER.as_bytes())
            .unwrap_err()
            .is_invalid());
        // Each value gets its own nonce.
        let a = sealed.encode(&key(), &token).unwrap();
        assert_ne!(a, sealed.encode(&key(), &token).unwrap());
    }

    #[tokio::test]
    async fn settings_of_duration_max_are_clamped() {
        let builder = RedisStore::builder("redis://127.0.0.1:1/")
            .connect_timeout(Duration::MAX)
            .response_timeout(Duration::MAX)
            .ttl_without_expiry(Duration::MAX);
        assert_eq!(builder.connect_timeout, RedisStoreBuilder::MAX_TIMEOUT);
        assert_eq!(builder.response_timeout, RedisStoreBuilder::MAX_TIMEOUT);
        let store = builder.build().unwrap();
        let forever = StoredToken::from_token(&Token::bearer("t").unwrap());
        let year = 365 * 24 * 3600 * 1000;
        assert_eq!(store.ttl_millis(&forever), Some(year));
        assert_eq!(lease_millis(Duration::MAX), year);
        assert_eq!(lease_millis(Duration::ZERO), 1);
    }

    #[tokio::test]
    async fn passwords_are_not_shown() {
        for url in [
            "redis://user:hunter2@host:6379/0",
            "redis+unix:///run/redis.sock?pass=hunter2",
            "unix:///run/redis.sock?db=0&password=hunter2",
            "redis://:hunter2@host/?protocol=resp3",
        ] {
            let builder = RedisStore::builder(url);
            assert!(!format!("{builder:?}").contains("hunter2"), "{builder:?}");
            let store = builder.build().unwrap();
            assert!(!format!("{store:?}").contains("hunter2"), "{store:?}");
        }
        assert_eq!(redact_password("redis://host/"), "redis://host/");
    }
}

#[cfg(test)]
mod build_tests {
    use super::*;

    #[test]
    fn building_outside_a_runtime_is_an_error_not_a_panic() {
        let error = RedisStore::new("redis://127.0.0.1:6379/").unwrap_err();
        assert!(error.to_string().contains("Tokio runtime"), "{error}");
    }
}
