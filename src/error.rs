//! Errors: why a token could not be obtained.
//!
//! [`BearerAuth`](crate::BearerAuth) returns [`tower::BoxError`]: errors of the
//! inner service pass through unchanged, and a token that could not be
//! obtained shows up as an [`Error`] you can downcast to.

use std::{error::Error as StdError, fmt, sync::Arc, time::Duration};

use http::StatusCode;

type Source = Arc<dyn StdError + Send + Sync>;

/// Why a token could not be obtained.
///
/// Opaque on purpose: ask it with the `is_*` predicates and accessors. It is
/// cheap to clone, because one failed fetch is handed to every caller that
/// waited on it. It never contains a secret: response bodies are kept as a
/// bounded excerpt with credentials masked.
///
/// ```
/// # async fn run(source: tower_alf::TokenSource) {
/// match source.token().await {
///     Ok(token) => println!("token expires at {:?}", token.expires_at()),
///     Err(e) if e.is_oauth() => {
///         let oauth = e.oauth_error().unwrap();
///         eprintln!("the server said {}: {:?}", oauth.code(), oauth.description());
///     }
///     Err(e) => eprintln!("no token: {e}"),
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct Error {
    inner: Arc<Inner>,
}

struct Inner {
    kind: Kind,
    source: Option<Source>,
}

#[derive(Debug)]
enum Kind {
    Config(String),
    Transport,
    Timeout,
    Status {
        status: StatusCode,
        oauth: Option<OAuthError>,
        excerpt: Option<String>,
        retry_after: Option<Duration>,
    },
    InvalidResponse {
        status: StatusCode,
        reason: String,
        excerpt: Option<String>,
    },
    Closed,
    Throttled,
    Authorization {
        reason: &'static str,
        oauth: Option<OAuthError>,
    },
}

// ===== impl Error =====

impl Error {
    fn new(kind: Kind, source: Option<Source>) -> Self {
        Self {
            inner: Arc::new(Inner { kind, source }),
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(Kind::Config(message.into()), None)
    }

    pub(crate) fn transport(source: Box<dyn StdError + Send + Sync>) -> Self {
        Self::new(Kind::Transport, Some(Arc::from(source)))
    }

    pub(crate) fn timeout() -> Self {
        Self::new(Kind::Timeout, None)
    }

    pub(crate) fn status(status: StatusCode, oauth: Option<OAuthError>, body: &[u8]) -> Self {
        let excerpt = excerpt(body);
        Self::new(
            Kind::Status {
                status,
                oauth,
                excerpt,
                retry_after: None,
            },
            None,
        )
    }

    /// Records the `Retry-After` the endpoint sent with a status error.
    pub(crate) fn with_retry_after(mut self, wait: Option<Duration>) -> Self {
        if let Some(Inner {
            kind: Kind::Status { retry_after, .. },
            ..
        }) = Arc::get_mut(&mut self.inner)
        {
            *retry_after = wait;
        }
        self
    }

    pub(crate) fn invalid_response(
        status: StatusCode,
        reason: impl Into<String>,
        body: &[u8],
    ) -> Self {
        Self::new(
            Kind::InvalidResponse {
                status,
                reason: reason.into(),
                excerpt: excerpt(body),
            },
            None,
        )
    }

    pub(crate) fn closed() -> Self {
        Self::new(Kind::Closed, None)
    }

    pub(crate) fn throttled() -> Self {
        Self::new(Kind::Throttled, None)
    }

    #[cfg_attr(not(feature = "authorization-code"), allow(dead_code))]
    pub(crate) fn authorization(reason: &'static str, oauth: Option<OAuthError>) -> Self {
        Self::new(Kind::Authorization { reason, oauth }, None)
    }

    /// The configuration is unusable: a bad token URL, plain `http` to a
    /// host that is not loopback, a missing client id.
    pub fn is_config(&self) -> bool {
        matches!(self.inner.kind, Kind::Config(_))
    }

    /// The token endpoint could not be reached, or the connection failed
    /// while sending or receiving (connect refused, reset, TLS, I/O).
    pub fn is_transport(&self) -> bool {
        matches!(self.inner.kind, Kind::Transport)
    }

    /// The fetch took longer than its timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self.inner.kind, Kind::Timeout)
    }

    /// The token endpoint answered with an OAuth error response
    /// (RFC 6749 §5.2); [`Error::oauth_error`] says which.
    pub fn is_oauth(&self) -> bool {
        matches!(self.inner.kind, Kind::Status { oauth: Some(_), .. })
    }

    /// The token endpoint answered with a non-success status (with or
    /// without an OAuth error body).
    pub fn is_status(&self) -> bool {
        matches!(self.inner.kind, Kind::Status { .. })
    }

    /// The token endpoint answered success but the body is not a usable
    /// token response: not JSON, not UTF-8, too large, no `access_token`,
    /// fields of the wrong type, or a `token_type` this crate cannot send.
    pub fn is_invalid_response(&self) -> bool {
        matches!(self.inner.kind, Kind::InvalidResponse { .. })
    }

    /// The fetch ended without an outcome, because the runtime running it
    /// shut down.
    pub fn is_closed(&self) -> bool {
        matches!(self.inner.kind, Kind::Closed)
    }

    /// A rejected token was not replaced: it was refused at birth (before
    /// any request with it was accepted) while the throttle backs off, as a
    /// server that refuses every new token (a wrong audience, say) must not
    /// turn each request into a token request. A token that served before
    /// it was rejected is never throttled. See
    /// [`TokenSource::invalidate`](crate::TokenSource::invalidate).
    pub fn is_throttled(&self) -> bool {
        matches!(self.inner.kind, Kind::Throttled)
    }

    /// Whether trying again could succeed: connection failures, timeouts,
    /// and the statuses 408, 429, 500, 502, 503 and 504, unless the body is
    /// an OAuth error that will not change ([`Error::is_permanent`]).
    pub fn is_retryable(&self) -> bool {
        match &self.inner.kind {
            Kind::Transport | Kind::Timeout => true,
            Kind::Status { status, .. } => {
                matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504) && !self.is_permanent()
            }
            _ => false,
        }
    }

    /// Whether the failure will repeat until someone changes something: a
    /// bad configuration, or the OAuth errors `invalid_client`,
    /// `invalid_grant`, `unauthorized_client`, `unsupported_grant_type` and
    /// `invalid_scope`. Never retried, and remembered briefly by the source
    /// so that a misconfiguration cannot hammer the issuer.
    pub fn is_permanent(&self) -> bool {
        match &self.inner.kind {
            Kind::Config(_) => true,
            Kind::Status {
                oauth: Some(oauth), ..
            } => matches!(
                oauth.code(),
                ErrorCode::InvalidClient
                    | ErrorCode::InvalidGrant
                    | ErrorCode::UnauthorizedClient
                    | ErrorCode::UnsupportedGrantType
                    | ErrorCode::InvalidScope
            ),
            _ => false,
        }
    }

    /// The wait the endpoint asked for with `Retry-After`, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match &self.inner.kind {
            Kind::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A new authorization is needed: the server answered `invalid_grant`
    /// (RFC 6749 §5.2), so the grant itself (a refresh token, an
    /// authorization code, an assertion) is invalid, expired or revoked.
    /// For a refresh token, the user must sign in again (`alf login`);
    /// retrying with the same grant cannot succeed.
    ///
    /// ```
    /// # async fn run(source: tower_alf::TokenSource) {
    /// if let Err(e) = source.token().await {
    ///     if e.is_reauthorization_required() {
    ///         eprintln!("your session has ended: sign in again");
    ///     }
    /// }
    /// # }
    /// ```
    pub fn is_reauthorization_required(&self) -> bool {
        self.oauth_error()
            .is_some_and(|oauth| oauth.code() == &ErrorCode::InvalidGrant)
    }

    /// The authorization step (the browser part of the authorization-code
    /// flow) failed: the server redirected back with an `error` (RFC 6749
    /// §4.1.2.1, in [`Error::oauth_error`]), or the callback is not the one
    /// expected (its `state` does not match, or it has no code).
    pub fn is_authorization(&self) -> bool {
        matches!(self.inner.kind, Kind::Authorization { .. })
    }

    /// The HTTP status the token endpoint answered with, if it answered.
    pub fn status_code(&self) -> Option<StatusCode> {
        match &self.inner.kind {
            Kind::Status { status, .. } | Kind::InvalidResponse { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The OAuth error response (RFC 6749 §5.2), if the endpoint sent one,
    /// or the error an authorization callback carried (§4.1.2.1).
    pub fn oauth_error(&self) -> Option<&OAuthError> {
        match &self.inner.kind {
            Kind::Status { oauth, .. } | Kind::Authorization { oauth, .. } => oauth.as_ref(),
            _ => None,
        }
    }

    /// A bounded excerpt of the response body, credentials masked.
    pub fn body_excerpt(&self) -> Option<&str> {
        match &self.inner.kind {
            Kind::Status { excerpt, .. } | Kind::InvalidResponse { excerpt, .. } => {
                excerpt.as_deref()
            }
            _ => None,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.inner.kind);
        if let Some(source) = &self.inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner.kind {
            Kind::Config(message) => write!(f, "invalid token source configuration: {message}"),
            Kind::Transport => f.write_str("could not reach the token endpoint"),
            Kind::Timeout => f.write_str("token request timed out"),
            Kind::Status {
                status,
                oauth: Some(oauth),
                ..
            } => write!(f, "token endpoint answered {status}: {oauth}"),
            Kind::Status { status, .. } => write!(f, "token endpoint answered {status}"),
            Kind::InvalidResponse { reason, .. } => {
                write!(f, "invalid token endpoint response: {reason}")
            }
            Kind::Closed => f.write_str("token fetch ended without a result"),
            Kind::Throttled => f.write_str(
                "the token was rejected again right after a refresh; not refreshing it again yet",
            ),
            Kind::Authorization {
                reason,
                oauth: Some(oauth),
            } => write!(f, "authorization failed: {reason}: {oauth}"),
            Kind::Authorization { reason, .. } => write!(f, "authorization failed: {reason}"),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

// ===== OAuth error response =====

/// An OAuth 2 error response from the token endpoint (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    code: ErrorCode,
    description: Option<String>,
    uri: Option<String>,
}

impl OAuthError {
    pub(crate) fn new(code: ErrorCode, description: Option<String>, uri: Option<String>) -> Self {
        Self {
            code,
            description,
            uri,
        }
    }

    /// The `error` code.
    pub fn code(&self) -> &ErrorCode {
        &self.code
    }

    /// The `error_description`, if any.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The `error_uri`, if any.
    pub fn uri(&self) -> Option<&str> {
        self.uri.as_deref()
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(description) = &self.description {
            write!(f, ": {description}")?;
        }
        Ok(())
    }
}

/// The `error` code of an OAuth error response (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `invalid_request`
    InvalidRequest,
    /// `invalid_client`: client authentication failed.
    InvalidClient,
    /// `invalid_grant`: the grant (refresh token, assertion, code) is invalid,
    /// expired or revoked.
    InvalidGrant,
    /// `unauthorized_client`
    UnauthorizedClient,
    /// `unsupported_grant_type`
    UnsupportedGrantType,
    /// `invalid_scope`
    InvalidScope,
    /// Any other code, as the server sent it.
    Other(String),
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::Other(code) => code,
        }
    }
}

impl From<&str> for ErrorCode {
    fn from(code: &str) -> Self {
        match code {
            "invalid_request" => Self::InvalidRequest,
            "invalid_client" => Self::InvalidClient,
            "invalid_grant" => Self::InvalidGrant,
            "unauthorized_client" => Self::UnauthorizedClient,
            "unsupported_grant_type" => Self::UnsupportedGrantType,
            "invalid_scope" => Self::InvalidScope,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ===== body excerpts =====

/// How much of a response body an error keeps.
pub(crate) const EXCERPT_LIMIT: usize = 512;

/// Member names whose values are credentials.
const SENSITIVE_KEYS: &[&str] = &[
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "client_assertion",
    "assertion",
    "password",
    "code",
    "token",
    "authorization",
    "proxy-authorization",
];

/// A bounded, credential-free excerpt of a response body.
pub(crate) fn excerpt(body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(mut json) => {
            mask(&mut json);
            json.to_string()
        }
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let lower = text.to_ascii_lowercase();
            if SENSITIVE_KEYS.iter().any(|key| lower.contains(key)) {
                return Some("[body withheld: it may contain credentials]".to_owned());
            }
            text.into_owned()
        }
    };
    Some(truncate(mask_schemes(&mask_jwts(&text)), EXCERPT_LIMIT))
}

/// Replaces anything shaped like a JWT (`eyJ…` header, two dots) with
/// `[redacted]`: an access token can hide in any member or in plain text.
fn mask_jwts(text: &str) -> String {
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("eyJ") {
        out.push_str(&rest[..at]);
        let candidate = &rest[at..];
        let len = candidate
            .find(|c: char| !is_b64(c) && c != '.')
            .unwrap_or(candidate.len());
        if candidate[..len].matches('.').count() >= 2 {
            out.push_str("[redacted]");
        } else {
            out.push_str(&candidate[..len]);
        }
        rest = &candidate[len..];
    }
    out.push_str(rest);
    out
}

/// Replaces the credentials after `Basic`, `Bearer` or `DPoP` with
/// `[redacted]`: an endpoint that echoes the request (httpbin-style) would
/// otherwise show the client secret in Base64.
fn mask_schemes(text: &str) -> String {
    const SCHEMES: [&str; 3] = ["basic ", "bearer ", "dpop "];
    let is_token68 = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    loop {
        let next = SCHEMES
            .iter()
            .filter_map(|scheme| {
                lower[done..]
                    .find(scheme)
                    .map(|at| (done + at, scheme.len()))
            })
            .min();
        let Some((at, len)) = next else { break };
        let start = at + len;
        let end = text[start..]
            .find(|c: char| !is_token68(c))
            .map_or(text.len(), |n| start + n);
        let at_word = at == 0 || !lower.as_bytes()[at - 1].is_ascii_alphanumeric();
        out.push_str(&text[done..start]);
        if at_word && end > start {
            out.push_str("[redacted]");
        } else {
            out.push_str(&text[start..end]);
        }
        done = end;
    }
    out.push_str(&text[done..]);
    out
}

fn mask(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                if SENSITIVE_KEYS.contains(&key.to_ascii_lowercase().as_str()) {
                    *value = serde_json::Value::String("[redacted]".to_owned());
                } else {
                    mask(value);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask),
        _ => {}
    }
}

pub(crate) fn truncate(mut text: String, limit: usize) -> String {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_masks_tokens_in_json() {
        let body = br#"{"access_token":"sekret","nested":{"refresh_token":"r"},"x":1}"#;
        let e = Error::invalid_response(StatusCode::OK, "bad", body);
        let excerpt = e.body_excerpt().unwrap();
        assert!(!excerpt.contains("sekret"));
        assert!(!excerpt.contains("\"r\""));
        assert!(excerpt.contains("\"x\":1"));
    }

    #[test]
    fn excerpt_withholds_non_json_bodies_that_mention_tokens() {
        let e = Error::invalid_response(StatusCode::OK, "bad", b"access_token=abc&x=y");
        assert!(!e.body_excerpt().unwrap().contains("abc"));
    }

    #[test]
    fn excerpt_is_bounded_and_cut_on_a_char_boundary() {
        let body = "é".repeat(2000);
        let e = Error::status(StatusCode::BAD_GATEWAY, None, body.as_bytes());
        let excerpt = e.body_excerpt().unwrap();
        assert!(excerpt.len() <= EXCERPT_LIMIT + '…'.len_utf8());
        assert!(excerpt.ends_with('…'));
    }

    #[test]
    fn excerpt_masks_jwts_anywhere() {
        let body = b"<html>upstream said eyJhbGciOi.eyJzdWIiOiJ4In0.c2ln and eyJnot-a-jwt</html>";
        let e = Error::status(StatusCode::BAD_GATEWAY, None, body);
        assert_eq!(
            e.body_excerpt(),
            Some("<html>upstream said [redacted] and eyJnot-a-jwt</html>")
        );
    }

    #[test]
    fn excerpt_masks_credentials_after_an_auth_scheme() {
        let body = b"echo: Basic aWQ6c2VjcmV0 and bearer abc.def~ but Basicity stays";
        let e = Error::status(StatusCode::BAD_GATEWAY, None, body);
        assert_eq!(
            e.body_excerpt(),
            Some("echo: Basic [redacted] and bearer [redacted] but Basicity stays")
        );
    }

    #[test]
    fn retryable_and_permanent_are_told_apart() {
        let oauth = |code: &str| Some(OAuthError::new(ErrorCode::from(code), None, None));
        for status in [408, 429, 500, 502, 503, 504] {
            let status = StatusCode::from_u16(status).unwrap();
            assert!(Error::status(status, None, b"").is_retryable(), "{status}");
        }
        assert!(!Error::status(StatusCode::BAD_REQUEST, None, b"").is_retryable());
        assert!(!Error::status(StatusCode::NOT_IMPLEMENTED, None, b"").is_retryable());
        let e = Error::status(
            StatusCode::SERVICE_UNAVAILABLE,
            oauth("invalid_client"),
            b"",
        );
        assert!(e.is_permanent() && !e.is_retryable());
        let e = Error::status(StatusCode::BAD_REQUEST, oauth("slow_down"), b"");
        assert!(!e.is_permanent() && !e.is_retryable());
        assert!(Error::timeout().is_retryable() && Error::config("x").is_permanent());
    }

    #[test]
    fn oauth_error_shows_in_display() {
        let oauth = OAuthError::new(
            ErrorCode::from("invalid_client"),
            Some("bad secret".into()),
            None,
        );
        let e = Error::status(StatusCode::BAD_REQUEST, Some(oauth), b"{}");
        assert!(e.is_oauth() && e.is_status());
        assert_eq!(e.oauth_error().unwrap().code(), &ErrorCode::InvalidClient);
        assert_eq!(
            e.to_string(),
            "token endpoint answered 400 Bad Request: invalid_client: bad secret"
        );
    }

    #[test]
    fn only_invalid_grant_requires_reauthorization() {
        let oauth = |code: &str| OAuthError::new(ErrorCode::from(code), None, None);
        let e = Error::status(StatusCode::BAD_REQUEST, Some(oauth("invalid_grant")), b"");
        assert!(e.is_reauthorization_required());
        let e = Error::status(StatusCode::UNAUTHORIZED, Some(oauth("invalid_client")), b"");
        assert!(!e.is_reauthorization_required());
        assert!(!Error::timeout().is_reauthorization_required());
    }
}
