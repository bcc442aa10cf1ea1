//! Grants: how a [`TokenSource`](crate::TokenSource) obtains tokens.
//!
//! A grant is a tower [`Service`](tower::Service) that takes a [`FetchToken`]
//! and answers a [`Token`]. The source calls it at most once at
//! a time, so a grant needs no locking of its own. Any service of that shape
//! is a grant, which is how you plug in one this crate does not ship;
//! [`from_fn`] makes one from an async closure.

#[cfg(feature = "authorization-code")]
mod authorization_code;
mod client_credentials;
#[cfg(feature = "command")]
mod command;
mod device;
mod file;
mod from_fn;
#[cfg(feature = "jwt")]
mod jwt_bearer;
#[cfg(feature = "metadata")]
mod metadata;
mod params;
mod refresh_token;
#[cfg(feature = "jwt")]
mod service_account;
mod token_exchange;

use std::{fmt, sync::Arc};

use tokio::time::Instant;

#[cfg(feature = "authorization-code")]
pub use authorization_code::{AuthorizationCode, PendingAuthorization};
pub use client_credentials::ClientCredentials;
#[cfg(feature = "command")]
pub use command::TokenCommand;
pub use device::{DeviceAuthorization, DeviceCode, PendingDeviceAuthorization};
pub use file::TokenFile;
pub use from_fn::{from_fn, FromFn};
#[cfg(feature = "jwt")]
pub use jwt_bearer::JwtBearer;
#[cfg(feature = "metadata")]
pub use metadata::MetadataServer;
pub use refresh_token::RefreshTokenGrant;
#[cfg(feature = "jwt")]
pub use service_account::ServiceAccount;
pub use token_exchange::{SubjectToken, TokenExchange};

use crate::token::Token;

/// Why a token is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefreshReason {
    /// No token was fetched yet.
    FirstUse,
    /// The token entered its refresh window; it is still served while the
    /// new one is fetched in the background.
    Stale,
    /// The token is past its expiry (less the margin); callers wait.
    Expired,
    /// A server rejected the token (HTTP 401).
    Rejected,
}

impl fmt::Display for RefreshReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::FirstUse => "first_use",
            Self::Stale => "stale",
            Self::Expired => "expired",
            Self::Rejected => "rejected",
        })
    }
}

/// What a [`TokenSource`](crate::TokenSource) asks of its grant: one new token.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FetchToken {
    /// Why the token is wanted.
    pub reason: RefreshReason,
    /// The token this one replaces, if any (a refresh-token grant reads its
    /// refresh token from here).
    pub previous: Option<Arc<Token>>,
    /// When the fetch started, before the grant sent anything.
    ///
    /// A token's lifetime counts from when its request was sent, not from
    /// when the answer arrived, so that a slow round trip does not make it
    /// look valid for longer than the server meant. A custom grant passes
    /// this moment (or its own, later, moment of sending) to
    /// [`Token::with_issued_at`] before [`Token::with_expires_in`]. The
    /// built-in grants need not: [`TokenEndpoint::request`](crate::TokenEndpoint::request)
    /// stamps each token with the moment the attempt that got it was sent,
    /// never earlier than this one.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_alf::{grant::FetchToken, Error, Token};
    ///
    /// async fn my_grant(request: FetchToken) -> Result<Token, Error> {
    ///     let (access_token, expires_in) = ("t", Duration::from_secs(3600)); // ask your server
    ///     Ok(Token::bearer(access_token)?
    ///         .with_issued_at(request.started_at)
    ///         .with_expires_in(expires_in))
    /// }
    /// ```
    pub started_at: Instant,
}

impl FetchToken {
    /// A request for a token, for this reason, replacing `previous`,
    /// started now.
    pub fn new(reason: RefreshReason, previous: Option<Arc<Token>>) -> Self {
        Self {
            reason,
            previous,
            started_at: Instant::now(),
        }
    }
}
