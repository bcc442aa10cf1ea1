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
    error::Error,
    secret::{AccessToken, RefreshToken},
    token::{BindingKey, Token, TokenType},
};

/// The version of [`StoredToken::to_bytes`]'s format. Version 2 records the
/// token type and the DPoP key thumbprint; version 1 recorded neither.
const FORMAT_VERSION: u32 = 2;

/// The first format, still read (see [`StoredToken::from_bytes`]).
const FORMAT_VERSION_1: u32 = 1;

/// The format of a token bound to a client certificate (RFC 8705 §3): as
/// version 2, with its `x5t#S256`. A reader of version 2 only, which would
/// take it for a plain Bearer token, refuses the version instead.
const FORMAT_VERSION_3: u32 = 3;

/// The `cnf` member of a certificate thumbprint (RFC 8705 §3.1).
const X5T_S256: &str = "x5t#S256";

/// A token as a [`TokenStore`](super::TokenStore) keeps it.
///
/// Times are absolute Unix times (milliseconds since 1970-01-01 UTC), never a
/// local-time string, so processes in different time zones and restarted
/// processes agree on when the token expires. They rely on the machines'
/// clocks being roughly in sync (NTP); the source's expiry margin absorbs
/// small skew.
///
/// Everything that changes how the token is sent survives the byte form:
/// its type (`Bearer` or `DPoP`) and, for a DPoP-bound token, the
/// thumbprint of the key it is bound to (RFC 9449 §6 `jkt`). The key itself
/// is never stored: a DPoP token comes back only through
/// `StoredToken::to_dpop_token` (feature `dpop`) with a key of that thumbprint, never as an
/// unbound token. Likewise a token bound to a client certificate (RFC 8705
/// §3) records the certificate's `x5t#S256` and comes back only through
/// `StoreGrant::client_certificate` with that certificate.
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
    /// The thumbprint of the DPoP key a `DPoP` token is bound to.
    jkt: Option<String>,
    /// The thumbprint of the client certificate a token is bound to.
    x5t: Option<String>,
    /// Whether the type was recorded: `false` for a version 1 value, which
    /// reads as `Bearer` whatever the token was.
    type_recorded: bool,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jkt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x5t: Option<String>,
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
            jkt: thumbprint_of(token, "jkt"),
            x5t: thumbprint_of(token, X5T_S256),
            type_recorded: true,
        }
    }

    /// A [`Token`] again, its `Instant`s placed so that its remaining
    /// lifetime is what the Unix times say now.
    ///
    /// Fails when the access token cannot go in a header, and for a `DPoP`
    /// token: it is sent only with a proof of its key, so it comes back
    /// only through `StoredToken::to_dpop_token` (feature `dpop`).
    pub fn to_token(&self) -> Result<Token, Error> {
        if self.x5t.is_some() {
            return Err(Error::config(
                "a stored certificate-bound token needs the client certificate it is bound to",
            ));
        }
        if self.token_type == TokenType::DPoP {
            return Err(Error::config(
                "a stored DPoP token needs the key it is bound to",
            ));
        }
        self.build_token()
    }

    /// A [`Token`] again, bound to `key` when it has `key`'s token type
    /// (`DPoP`); another token comes back as [`StoredToken::to_token`]
    /// gives it. Behind `StoredToken::to_dpop_token` and `StoreGrant`'s
    /// restore.
    ///
    /// Fails when the token is bound to another key (its thumbprint is not
    /// `key`'s), or records no thumbprint.
    pub(crate) fn to_bound_token(&self, key: &dyn BindingKey) -> Result<Token, Error> {
        if key.confirmation() == X5T_S256 {
            return match &self.x5t {
                None => self.to_token(),
                Some(x5t) if x5t == key.thumbprint() => Ok(key.bind(self.build_token()?)),
                Some(_) => Err(Error::config(
                    "the stored token is bound to another client certificate",
                )),
            };
        }
        if self.x5t.is_some() {
            return self.to_token();
        }
        if self.token_type != key.token_type() {
            return self.build_token();
        }
        if self.jkt.as_deref() != Some(key.thumbprint()) {
            return Err(Error::config(
                "the stored DPoP token is bound to another key",
            ));
        }
        Ok(key.bind(self.build_token()?))
    }

    fn build_token(&self) -> Result<Token, Error> {
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
                let left = expires_at.duration_since(wall).unwrap_or_default();
                match now.checked_add(left) {
                    Some(expires) => {
                        let issued = expires.checked_sub(lifetime).unwrap_or(now).min(now);
                        (issued, Some(expires.saturating_duration_since(issued)))
                    }
                    // NOTE: beyond the monotonic clock's range: as good as
                    // no expiry.
                    None => (now, None),
                }
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

    /// The token type, which decides how it is sent.
    pub fn token_type(&self) -> TokenType {
        self.token_type
    }

    /// The thumbprint of the DPoP key a `DPoP` token is bound to; `None`
    /// for a `Bearer` token.
    pub fn dpop_thumbprint(&self) -> Option<&str> {
        self.jkt.as_deref()
    }

    /// Whether the token is bound to something other than `key` (another
    /// key or certificate, or a binding of another kind): `key` cannot
    /// restore it.
    pub(crate) fn bound_elsewhere(&self, key: &dyn BindingKey) -> bool {
        if key.confirmation() == X5T_S256 {
            self.token_type != TokenType::Bearer
                || self
                    .x5t
                    .as_deref()
                    .is_some_and(|x5t| x5t != key.thumbprint())
        } else {
            self.x5t.is_some()
                || (self.token_type == key.token_type()
                    && self.jkt.as_deref() != Some(key.thumbprint()))
        }
    }

    /// The thumbprint (`x5t#S256`, RFC 8705 §3.1) of the client certificate
    /// a token is bound to; `None` for a token not bound to one.
    pub fn certificate_thumbprint(&self) -> Option<&str> {
        self.x5t.as_deref()
    }

    /// Whether the value recorded the token type: `false` for a value in
    /// the first format, which reads as `Bearer` whatever it was.
    pub(crate) fn type_recorded(&self) -> bool {
        self.type_recorded
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
    /// `{"v":2,"at":…,"tt":"Bearer","iat":<unix ms>,"exp":<unix ms>,…}`,
    /// with `"tt":"DPoP","jkt":<thumbprint>` for a DPoP token. It holds the
    /// access token in clear: encrypt it before it leaves the process if
    /// the store is shared (the Redis store can).
    pub fn to_bytes(&self) -> Vec<u8> {
        let wire = Wire {
            v: if self.x5t.is_some() {
                FORMAT_VERSION_3
            } else {
                FORMAT_VERSION
            },
            at: self.access_token.secret().to_owned(),
            tt: Some(self.token_type.scheme().to_owned()),
            iat: unix_millis(self.issued_at),
            exp: self.expires_at.map(unix_millis),
            sc: self.scope.clone(),
            rt: self.refresh_token.as_ref().map(|t| t.secret().to_owned()),
            x: self.extra.clone(),
            jkt: self.jkt.clone(),
            x5t: self.x5t.clone(),
        };
        // NOTE: serializing strings, integers and JSON values cannot fail.
        serde_json::to_vec(&wire).unwrap_or_default()
    }

    /// Parses [`StoredToken::to_bytes`]'s output. Fails, never panics, on
    /// anything else: another version, bad JSON, a token type this crate
    /// cannot send, a `DPoP` token without its key's thumbprint.
    ///
    /// A value in the first format (version 1, which recorded no type)
    /// reads as a `Bearer` token; [`StoreGrant`](super::StoreGrant) takes it
    /// only when it has no DPoP key, since it may have been a DPoP token.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StoreError> {
        let wire: Wire = serde_json::from_slice(bytes)
            .map_err(|_| StoreError::invalid("the stored token is not valid JSON"))?;
        let type_recorded = match wire.v {
            FORMAT_VERSION | FORMAT_VERSION_3 => true,
            FORMAT_VERSION_1 => false,
            _ => {
                return Err(StoreError::invalid(
                    "the stored token has an unknown version",
                ))
            }
        };
        let token_type = match wire.tt.as_deref() {
            None if !type_recorded => TokenType::Bearer,
            None => return Err(StoreError::invalid("the stored token has no type")),
            Some(tt) => TokenType::parse(tt)
                .ok_or_else(|| StoreError::invalid("the stored token has an unknown type"))?,
        };
        let jkt = if type_recorded { wire.jkt } else { None };
        let x5t = if wire.v == FORMAT_VERSION_3 {
            Some(wire.x5t.ok_or_else(|| {
                StoreError::invalid("the stored certificate-bound token has no thumbprint")
            })?)
        } else {
            None
        };
        if x5t.is_some() && (token_type != TokenType::Bearer || jkt.is_some()) {
            return Err(StoreError::invalid(
                "the stored certificate-bound token is not a plain Bearer token",
            ));
        }
        match (token_type, &jkt) {
            (TokenType::DPoP, None) => {
                return Err(StoreError::invalid(
                    "the stored DPoP token has no key thumbprint",
                ))
            }
            (TokenType::Bearer, Some(_)) => {
                return Err(StoreError::invalid(
                    "the stored Bearer token has a key thumbprint",
                ))
            }
            _ => {}
        }
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
            jkt,
            x5t,
            type_recorded,
        })
    }
}

/// The thumbprint of what `token` is bound to, when it is the `cnf`
/// member `confirmation` (`jkt`, `x5t#S256`).
fn thumbprint_of(token: &Token, confirmation: &str) -> Option<String> {
    token
        .sender_constraint()
        .filter(|constraint| constraint.confirmation() == confirmation)
        .map(|constraint| constraint.thumbprint().to_owned())
}

impl fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredToken")
            .field("access_token", &self.access_token)
            .field("token_type", &self.token_type)
            .field("dpop_thumbprint", &self.jkt)
            .field("certificate_thumbprint", &self.x5t)
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

    #[test]
    fn certificate_bound_tokens_have_their_own_version_and_need_their_certificate() {
        let v3 = br#"{"v":3,"at":"a","tt":"Bearer","iat":1,"x5t":"thumb"}"#;
        let stored = StoredToken::from_bytes(v3).unwrap();
        assert_eq!(stored.certificate_thumbprint(), Some("thumb"));
        assert!(stored.to_token().unwrap_err().is_config());
        assert!(stored.to_bytes().starts_with(br#"{"v":3,"#));
        for bad in [
            &br#"{"v":3,"at":"a","tt":"Bearer","iat":1}"#[..],
            br#"{"v":3,"at":"a","tt":"DPoP","iat":1,"jkt":"k","x5t":"thumb"}"#,
        ] {
            assert!(StoredToken::from_bytes(bad).is_err());
        }
        // Version 2 carries no certificate thumbprint, even if a member says so.
        let v2 = br#"{"v":2,"at":"a","tt":"Bearer","iat":1,"x5t":"thumb"}"#;
        assert_eq!(
            StoredToken::from_bytes(v2)
                .unwrap()
                .certificate_thumbprint(),
            None
        );
    }

    #[tokio::test]
    async fn round_trips_with_unix_times_and_no_secret_in_debug() {
        let token = Token::bearer("tok-secret")
            .unwrap()
            .with_expires_in(Duration::from_secs(100))
            .with_scope("a b")
            .with_refresh_token("rt-secret");
        let stored = StoredToken::from_token(&token);
        let json: serde_json::Value = serde_json::from_slice(&stored.to_bytes()).unwrap();
        assert_eq!(json["v"], 2);
        assert_eq!(json["tt"], "Bearer");
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
            b"{\"v\":3,\"at\":\"x\",\"iat\":0,\"tt\":\"Bearer\"}",
            b"{\"v\":1,\"at\":\"x\",\"iat\":0,\"tt\":\"mac\"}",
            // Version 2 records the type, and a DPoP token's thumbprint.
            b"{\"v\":2,\"at\":\"x\",\"iat\":0}",
            b"{\"v\":2,\"at\":\"x\",\"iat\":0,\"tt\":\"DPoP\"}",
            b"{\"v\":2,\"at\":\"x\",\"iat\":0,\"tt\":\"Bearer\",\"jkt\":\"k\"}",
            // A DPoP token in the first format has no thumbprint to check.
            b"{\"v\":1,\"at\":\"x\",\"iat\":0,\"tt\":\"DPoP\",\"jkt\":\"k\"}",
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

    #[test]
    fn a_first_format_value_reads_as_bearer_with_its_type_unrecorded() {
        let v1 = br#"{"v":1,"at":"old","iat":0,"exp":253402300799000,"sc":"a"}"#;
        let stored = StoredToken::from_bytes(v1).unwrap();
        assert_eq!(stored.token_type(), TokenType::Bearer);
        assert!(!stored.type_recorded());
        assert_eq!(stored.dpop_thumbprint(), None);
        let token = stored.to_token().unwrap();
        assert_eq!(token.header_value(), "Bearer old");
        assert_eq!(token.scope(), Some("a"));
        // Written again, it is a version 2 value that records the type.
        let again = StoredToken::from_bytes(&stored.to_bytes()).unwrap();
        assert!(again.type_recorded());
    }

    #[tokio::test]
    async fn an_expiry_beyond_the_monotonic_clock_never_panics() {
        let far = br#"{"v":2,"at":"t","tt":"Bearer","iat":0,"exp":253402300799000}"#;
        let token = StoredToken::from_bytes(far).unwrap().to_token().unwrap();
        assert!(token.expires_at().is_none_or(|at| at > Instant::now()));
        let huge = Token::bearer("t").unwrap().with_expires_in(Duration::MAX);
        let stored = StoredToken::from_bytes(&StoredToken::from_token(&huge).to_bytes()).unwrap();
        assert!(stored.to_token().is_ok());
    }
}
