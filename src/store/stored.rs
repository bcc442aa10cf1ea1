//! [`StoredToken`]: a token as a store keeps it, with absolute Unix times.

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::StoreError;
use crate::{
    secret::{AccessToken, RefreshToken},
    Error, Token, TokenType,
};

/// The version of [`StoredToken::to_bytes`]'s format.
const FORMAT_VERSION: u32 = 1;

/// A token as a [`TokenStore`](super::TokenStore) keeps it.
///
/// Times are absolute Unix times (milliseconds since 1970-01-01 UTC), never a
/// local-time string, so processes in different time zones and restarted
/// processes agree on when the token expires. They rely on the machines'
/// clocks being roughly in sync (NTP); the source's expiry margin absorbs
/// small skew.
///
/// `Debug` never prints the access or refresh token.
///
/// ```
/// use std::time::Duration;
/// use tower_alf::{store::StoredToken, Token};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_alf::Error> {
/// let token = Token::bearer("2YotnFZFEjr1zCsicMWpAA")?.with_expires_in(Duration::from_secs(60));
/// let stored = StoredToken::from_token(&token);
/// let bytes = stored.to_bytes();
/// let back = StoredToken::from_bytes(&bytes).unwrap().to_token()?;
/// assert_eq!(back.access_token(), token.access_token());
/// assert!(back.lifetime().unwrap() <= Duration::from_secs(60));
/// # Ok(()) }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct StoredToken {
    access_token: AccessToken,
    token_type: TokenType,
    issued_at: SystemTime,
    expires_at: Option<SystemTime>,
    scope: Option<String>,
    refresh_token: Option<RefreshToken>,
    extra: serde_json::Map<String, serde_json::Value>,
}

/// Identifies a token without revealing it: the first 128 bits of a
/// SHA-256 of its access token. Compare-and-delete and compare-and-swap
/// compare fingerprints, so a store can compare tokens it keeps encrypted.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 16]);

/// The wire form of [`StoredToken`]: short field names, Unix milliseconds.
#[derive(Serialize, Deserialize)]
struct Wire {
    v: u32,
    at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tt: Option<String>,
    iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rt: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    x: serde_json::Map<String, serde_json::Value>,
}

// ===== impl StoredToken =====

impl StoredToken {
    /// The token's parts, its `Instant`s turned into Unix times.
    pub fn from_token(token: &Token) -> Self {
        let now = SystemTime::now();
        let age = Instant::now().saturating_duration_since(token.issued_at());
        let issued_at = to_millis(now.checked_sub(age).unwrap_or(now));
        let expires_at = token
            .lifetime()
            .and_then(|lifetime| issued_at.checked_add(lifetime))
            .map(to_millis);
        Self {
            access_token: token.access_token().clone(),
            token_type: token.token_type(),
            issued_at,
            expires_at,
            scope: token.scope().map(str::to_owned),
            refresh_token: token.refresh_token().cloned(),
            extra: token.extra().clone(),
        }
    }

    /// A [`Token`] again, its `Instant`s placed so that its remaining
    /// lifetime is what the Unix times say now.
    ///
    /// Fails when the access token cannot go in a header.
    pub fn to_token(&self) -> Result<Token, Error> {
        let now = Instant::now();
        let wall = SystemTime::now();
        let age = wall.duration_since(self.issued_at).unwrap_or_default();
        let (issued_at, lifetime) = match self.expires_at {
            Some(expires_at) => {
                // Place the expiry exactly; the issue time follows from the
                // lifetime, when the monotonic clock reaches back that far.
                let lifetime = expires_at
                    .duration_since(self.issued_at)
                    .unwrap_or_default();
                let expires = now + expires_at.duration_since(wall).unwrap_or_default();
                let issued = expires.checked_sub(lifetime).unwrap_or(now).min(now);
                (issued, Some(expires - issued))
            }
            None => (now.checked_sub(age).unwrap_or(now), None),
        };
        let mut token = Token::new(self.access_token.clone(), self.token_type, issued_at)?
            .with_extra(self.extra.clone());
        if let Some(lifetime) = lifetime {
            token = token.with_expires_in(lifetime);
        }
        if let Some(scope) = &self.scope {
            token = token.with_scope(scope.clone());
        }
        if let Some(refresh_token) = &self.refresh_token {
            token = token.with_refresh_token(refresh_token.clone());
        }
        Ok(token)
    }

    /// The access token.
    pub fn access_token(&self) -> &AccessToken {
        &self.access_token
    }

    /// When the token was requested.
    pub fn issued_at(&self) -> SystemTime {
        self.issued_at
    }

    /// When the token expires; `None` when the server gave no lifetime.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// The refresh token, if any.
    pub fn refresh_token(&self) -> Option<&RefreshToken> {
        self.refresh_token.as_ref()
    }

    /// How long the token has left at `now`: `None` when it does not expire,
    /// zero once it has expired. A store sets its TTL from this.
    pub fn remaining(&self, now: SystemTime) -> Option<Duration> {
        self.expires_at
            .map(|at| at.duration_since(now).unwrap_or_default())
    }

    /// Whether the token is worth handing out now: it does not expire, or
    /// more than a tenth of its lifetime remains.
    pub(crate) fn is_usable(&self, now: SystemTime) -> bool {
        let Some(expires_at) = self.expires_at else {
            return true;
        };
        let lifetime = expires_at
            .duration_since(self.issued_at)
            .unwrap_or_default();
        self.remaining(now)
            .is_some_and(|remaining| !remaining.is_zero() && remaining > lifetime / 10)
    }

    /// This token's [`Fingerprint`].
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.access_token)
    }

    /// The versioned serialization: a compact JSON object
    /// `{"v":1,"at":…,"iat":<unix ms>,"exp":<unix ms>,…}`. It holds the
    /// access token in clear: encrypt it before it leaves the process if
    /// the store is shared (the Redis store can).
    pub fn to_bytes(&self) -> Vec<u8> {
        let wire = Wire {
            v: FORMAT_VERSION,
            at: self.access_token.secret().to_owned(),
            tt: None,
            iat: unix_millis(self.issued_at),
            exp: self.expires_at.map(unix_millis),
            sc: self.scope.clone(),
            rt: self.refresh_token.as_ref().map(|t| t.secret().to_owned()),
            x: self.extra.clone(),
        };
        // NOTE: serializing strings, integers and JSON values cannot fail.
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// Parses [`StoredToken::to_bytes`]'s output. Fails, never panics, on
    /// anything else: another version, bad JSON, a token type this crate
    /// cannot send.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StoreError> {
        let wire: Wire = serde_json::from_slice(bytes)
            .map_err(|_| StoreError::invalid("the stored token is not valid JSON"))?;
        if wire.v != FORMAT_VERSION {
            return Err(StoreError::invalid(
                "the stored token has an unknown version",
            ));
        }
        let token_type = match wire.tt.as_deref() {
            None => TokenType::Bearer,
            Some(tt) => TokenType::parse(tt)
                .ok_or_else(|| StoreError::invalid("the stored token has an unknown type"))?,
        };
        let issued_at = from_unix_millis(wire.iat)?;
        let expires_at = wire.exp.map(from_unix_millis).transpose()?;
        Ok(Self {
            access_token: AccessToken::new(wire.at),
            token_type,
            issued_at,
            expires_at,
            scope: wire.sc,
            refresh_token: wire.rt.map(RefreshToken::new),
            extra: wire.x,
        })
    }
}

impl fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredToken")
            .field("access_token", &self.access_token)
            .field("fingerprint", &self.fingerprint())
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .field("refresh_token", &self.refresh_token)
            .finish_non_exhaustive()
    }
}

/// `at`, to the millisecond, as it is stored.
fn to_millis(at: SystemTime) -> SystemTime {
    from_unix_millis(unix_millis(at)).unwrap_or(at)
}

fn unix_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn from_unix_millis(millis: u64) -> Result<SystemTime, StoreError> {
    /// 9999-12-31: anything later is garbage.
    const MAX_MILLIS: u64 = 253_402_300_799_000;
    if millis > MAX_MILLIS {
        return Err(StoreError::invalid(
            "the stored token has a time out of range",
        ));
    }
    UNIX_EPOCH
        .checked_add(Duration::from_millis(millis))
        .ok_or_else(|| StoreError::invalid("the stored token has a time out of range"))
}

// ===== impl Fingerprint =====

impl Fingerprint {
    /// The fingerprint of an access token.
    pub fn of(access_token: &AccessToken) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"tower-alf fingerprint v1\0");
        hash.update(access_token.secret().as_bytes());
        let digest = hash.finalize();
        let mut out = [0; 16];
        out.copy_from_slice(&digest[..16]);
        Self(out)
    }

    /// The fingerprint of `token`.
    pub fn of_token(token: &Token) -> Self {
        Self::of(token.access_token())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trips_with_unix_times_and_no_secret_in_debug() {
        let token = Token::bearer("tok-secret")
            .unwrap()
            .with_expires_in(Duration::from_secs(100))
            .with_scope("a b")
            .with_refresh_token("rt-secret");
        let stored = StoredToken::from_token(&token);
        let json: serde_json::Value = serde_json::from_slice(&stored.to_bytes()).unwrap();
        assert_eq!(json["v"], 1);
        let exp = json["exp"].as_u64().unwrap();
        let now = unix_millis(SystemTime::now());
        assert!(
            exp > now + 99_000 && exp <= now + 100_000,
            "absolute Unix ms"
        );
        let back = StoredToken::from_bytes(&stored.to_bytes()).unwrap();
        assert_eq!(back, stored);
        let token2 = back.to_token().unwrap();
        assert_eq!(token2.scope(), Some("a b"));
        assert_eq!(token2.refresh_token().unwrap().secret(), "rt-secret");
        let left = token2.expires_at().unwrap() - Instant::now();
        assert!(left > Duration::from_secs(98) && left <= Duration::from_secs(100));
        let debug = format!("{back:?}");
        assert!(!debug.contains("tok-secret") && !debug.contains("rt-secret"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"\xff\xfe",
            b"{}",
            b"{\"v\":2,\"at\":\"x\",\"iat\":0}",
            b"{\"v\":1,\"at\":\"x\",\"iat\":0,\"tt\":\"mac\"}",
            b"{\"v\":1,\"at\":\"x\",\"iat\":18446744073709551615}",
        ] {
            assert!(StoredToken::from_bytes(bad).is_err());
        }
    }

    #[tokio::test]
    async fn an_expired_or_nearly_expired_token_is_not_usable() {
        let token = Token::bearer("t")
            .unwrap()
            .with_expires_in(Duration::from_secs(10));
        let stored = StoredToken::from_token(&token);
        let now = SystemTime::now();
        assert!(stored.is_usable(now));
        assert!(!stored.is_usable(now + Duration::from_millis(9500)));
        assert!(!stored.is_usable(now + Duration::from_secs(20)));
    }
}
