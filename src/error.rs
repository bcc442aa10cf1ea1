//! Errors: why a token could not be obtained.
//!
//! [`BearerAuth`](crate::BearerAuth) returns [`tower::BoxError`]: errors of the
//! inner service pass through unchanged, and a token that could not be
//! obtained shows up as an [`Error`] you can downcast to.

use std::{error::Error as StdError, fmt, sync::Arc, time::Duration};

use http::{HeaderMap, StatusCode};

use crate::redact::{self, SentSecrets};

type Source = Arc<dyn StdError + Send + Sync>;

/// Why a token could not be obtained.
///
/// Opaque on purpose: ask it with the `is_*` predicates and accessors. It is
/// cheap to clone, because one failed fetch is handed to every caller that
/// waited on it. It never contains a secret: response bodies are kept as a
/// bounded excerpt with credentials masked, and every secret the request
/// sent (client secret, assertion, refresh, subject or actor token, code,
/// code verifier) is removed by value, in any encoding, from the excerpt,
/// the OAuth error fields, `Display` and `Debug`. Control characters in
/// server text are escaped (`\u{1b}`), so printing an error is safe.
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
    origin: Origin,
    source: Option<Source>,
}

/// Who answered, or failed to: named in `Display` so that an error says
/// what actually failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "oauth1"), allow(dead_code))]
pub(crate) enum Origin {
    TokenEndpoint,
    Metadata,
    /// An OAuth 1.0a provider, or the OAuth 1 signer: the errors of
    /// [`crate::oauth1::Error`], which wraps this type.
    OAuth1Provider,
}

impl Origin {
    fn name(self) -> &'static str {
        match self {
            Self::TokenEndpoint => "token endpoint",
            Self::Metadata => "authorization server metadata endpoint",
            Self::OAuth1Provider => "OAuth 1 provider",
        }
    }

    fn request(self) -> &'static str {
        match self {
            Self::TokenEndpoint => "token request",
            Self::Metadata => "metadata request",
            Self::OAuth1Provider => "OAuth 1 provider request",
        }
    }

    fn configuration(self) -> &'static str {
        match self {
            Self::TokenEndpoint | Self::Metadata => "token source configuration",
            Self::OAuth1Provider => "OAuth 1 configuration",
        }
    }

    /// The excerpt rule for this origin's answers: OAuth 1 providers answer
    /// in forms, whose credential members are masked by name.
    fn excerpt(self, body: &[u8], sent: &SentSecrets) -> Option<String> {
        match self {
            Self::TokenEndpoint | Self::Metadata => redact::excerpt(body, sent),
            Self::OAuth1Provider => redact::form_excerpt(body, sent),
        }
    }
}

#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "oauth1"), allow(dead_code))]
pub(crate) enum Kind {
    Config(String),
    /// The environment the crate runs in failed: no Tokio runtime, the
    /// operating system's random source, a clock before 1970.
    Runtime(String),
    /// A signature or proof could not be made for one request (a DPoP
    /// proof, a JWT assertion, an OAuth 1 RSA signature).
    Signing(String),
    Transport,
    Timeout,
    Status {
        status: StatusCode,
        oauth: Option<OAuthError>,
        excerpt: Option<String>,
        retry_after: Option<Duration>,
    },
    InvalidResponse {
        /// `None` for a document no server sent (a metadata document read
        /// with `ServerMetadata::from_json`).
        status: Option<StatusCode>,
        reason: String,
        excerpt: Option<String>,
    },
    /// A token that cannot be sent, built by hand or by a custom grant: no
    /// endpoint answered.
    InvalidToken(&'static str),
    Closed,
    Throttled,
    /// A custom grant's own failure, not an answer of an endpoint: a file
    /// that is not a token, a command that failed.
    Provider {
        reason: String,
        permanent: bool,
        retry_after: Option<Duration>,
    },
    Authorization {
        reason: &'static str,
        oauth: Option<OAuthError>,
    },
    // ----- OAuth 1 only (see `crate::oauth1::Error`) -----
    /// A request body the OAuth 1 signer cannot sign.
    Body(String),
    /// `oauth_callback_confirmed` missing or not `true`.
    CallbackNotConfirmed,
    /// An unusable callback URL.
    Callback(String),
    /// The callback's `oauth_token` is not the flow's.
    TokenMismatch,
}

// ===== impl Error =====

impl Error {
    fn new(kind: Kind, source: Option<Source>) -> Self {
        Self {
            inner: Arc::new(Inner {
                kind,
                origin: Origin::TokenEndpoint,
                source,
            }),
        }
    }

    /// The kind, for the OAuth 1 wrapper's predicates.
    #[cfg_attr(not(feature = "oauth1"), allow(dead_code))]
    pub(crate) fn kind(&self) -> &Kind {
        &self.inner.kind
    }

    /// An error of the OAuth 1 family: `kind`, said of the OAuth 1
    /// provider, its texts escaped and an excerpt of `body` made by the
    /// form rule (see [`crate::redact::form_excerpt`]).
    #[cfg(feature = "oauth1")]
    pub(crate) fn oauth1(kind: Kind, source: Option<Source>, body: &[u8]) -> Self {
        let text = |text: &mut String| *text = redact::escape_controls(text).into_owned();
        let mut kind = kind;
        match &mut kind {
            Kind::Config(message)
            | Kind::Runtime(message)
            | Kind::Signing(message)
            | Kind::Body(message)
            | Kind::Callback(message)
            | Kind::InvalidResponse {
                reason: message, ..
            } => text(message),
            _ => {}
        }
        if let Kind::Status { excerpt, .. } | Kind::InvalidResponse { excerpt, .. } = &mut kind {
            *excerpt = Origin::OAuth1Provider.excerpt(body, &SentSecrets::default());
        }
        Self {
            inner: Arc::new(Inner {
                kind,
                origin: Origin::OAuth1Provider,
                source,
            }),
        }
    }

    /// A configuration error: what the user configured is unusable.
    /// Control characters in the message (which may quote server text, such
    /// as the methods a server lists) are escaped.
    pub(crate) fn config(message: impl Into<String>) -> Self {
        let message = message.into();
        let message = redact::escape_controls(&message).into_owned();
        Self::new(Kind::Config(message), None)
    }

    /// The environment failed; see [`Error::is_runtime`].
    pub(crate) fn runtime(message: impl Into<String>) -> Self {
        Self::new(Kind::Runtime(message.into()), None)
    }

    /// A signature or proof could not be made; see [`Error::is_signing`].
    /// The message may quote server text (a nonce): it is escaped.
    #[cfg_attr(not(any(feature = "jwt", feature = "dpop")), allow(dead_code))]
    pub(crate) fn signing(message: impl Into<String>) -> Self {
        let message = message.into();
        let message = redact::escape_controls(&message).into_owned();
        Self::new(Kind::Signing(message), None)
    }

    /// The endpoint could not be reached: a connection refused or reset, a
    /// DNS failure, a TLS handshake that failed. `source` is kept as the
    /// [`source`](StdError::source) of the error, so keep secrets out of
    /// it. Retryable ([`Error::is_transport`], [`Error::is_retryable`]).
    ///
    /// For a custom grant whose own transport fails:
    ///
    /// ```
    /// use tower_alf::Error;
    ///
    /// let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    /// let e = Error::transport(refused);
    /// assert!(e.is_transport() && e.is_retryable());
    /// ```
    pub fn transport(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::new(Kind::Transport, Some(Arc::from(source.into())))
    }

    /// The request took too long. Retryable ([`Error::is_timeout`]).
    pub fn timeout() -> Self {
        Self::new(Kind::Timeout, None)
    }

    /// An endpoint's answer with a status that is not a success, as the
    /// built-in grants make it: the OAuth error of a JSON or form body
    /// (RFC 6749 §5.2: `invalid_grant` is then [permanent](Error::is_permanent)),
    /// `Retry-After` from `headers`, and a bounded excerpt of `body` made by
    /// the crate's redaction: credential members masked by name, anything
    /// shaped like a JWT masked, every value in `sent` (the secrets your
    /// request carried: a client secret, an assertion) removed in any
    /// encoding before the cut, control characters escaped.
    ///
    /// Retryable for 408, 429, 500, 502, 503 and 504, unless the OAuth error
    /// is permanent. A success status is not an error: it makes an
    /// [invalid response](Error::is_invalid_response).
    ///
    /// ```
    /// use http::{HeaderMap, StatusCode};
    /// use tower_alf::Error;
    ///
    /// let body = br#"{"error":"invalid_grant","error_description":"bad s3cr3t"}"#;
    /// let e = Error::from_response(StatusCode::BAD_REQUEST, &HeaderMap::new(), body, &["s3cr3t"]);
    /// assert!(e.is_permanent() && e.is_reauthorization_required());
    /// assert!(!e.to_string().contains("s3cr3t"));
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("retry-after", "7".parse().unwrap());
    /// let e = Error::from_response(StatusCode::SERVICE_UNAVAILABLE, &headers, b"busy", &[]);
    /// assert!(e.is_retryable());
    /// assert_eq!(e.retry_after(), Some(std::time::Duration::from_secs(7)));
    /// ```
    pub fn from_response(
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        sent: &[&str],
    ) -> Self {
        let mut secrets = SentSecrets::default();
        for secret in sent {
            secrets.add(*secret);
        }
        let error = if status.is_success() {
            Self::invalid_response(status, "the answer is a success, not an error", body)
        } else {
            match crate::endpoint::response::parse_response(
                status,
                headers,
                body,
                tokio::time::Instant::now(),
            ) {
                Err(error) => error,
                Ok(_) => Self::invalid_response(status, "unexpected answer", body),
            }
        };
        error.answered(status, body, &secrets)
    }

    /// A custom grant's failure that trying again could cure (a command
    /// that timed out, a file not written yet): [retryable](Error::is_retryable),
    /// with the wait `retry_after` asks for (see
    /// [`Error::with_retry_after`]). `reason` is shown in `Display`; quote
    /// no secret in it. Control characters and anything shaped like a JWT
    /// in it are escaped and masked.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_alf::Error;
    ///
    /// let e = Error::retryable("the vault agent is not ready")
    ///     .with_retry_after(Some(Duration::from_secs(2)));
    /// assert!(e.is_retryable() && !e.is_permanent());
    /// assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
    /// ```
    pub fn retryable(reason: impl Into<String>) -> Self {
        Self::provider(reason.into(), false)
    }

    /// A custom grant's failure that will repeat until someone changes
    /// something (a credential file missing, a command that is not
    /// executable): [permanent](Error::is_permanent), so the source
    /// remembers it briefly instead of asking again on every call
    /// ([`TokenSourceBuilder::permanent_error_memory`](crate::TokenSourceBuilder::permanent_error_memory)).
    /// `reason` is treated as [`Error::retryable`]'s.
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self::provider(reason.into(), true)
    }

    fn provider(reason: String, permanent: bool) -> Self {
        let reason = redact::mask_schemes(&redact::mask_jwts(&redact::escape_controls(&reason)));
        Self::new(
            Kind::Provider {
                reason,
                permanent,
                retry_after: None,
            },
            None,
        )
    }

    pub(crate) fn status(status: StatusCode, oauth: Option<OAuthError>, body: &[u8]) -> Self {
        let excerpt = redact::excerpt(body, &SentSecrets::default());
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

    /// Records the wait asked for (`Retry-After`) with a status error or a
    /// [retryable](Error::retryable) one; [`Error::retry_after`] returns
    /// it, and a [`RetryPolicy`](crate::RetryPolicy) waits that long
    /// (within its bounds). Other errors are returned unchanged.
    pub fn with_retry_after(self, wait: Option<Duration>) -> Self {
        self.map(|inner| {
            if let Kind::Status { retry_after, .. } | Kind::Provider { retry_after, .. } =
                &mut inner.kind
            {
                *retry_after = wait;
            }
        })
    }

    /// An answer that is not a usable token response: not JSON, no
    /// `access_token`, a command's output that is not the JSON it should
    /// be. `status` is the answer's, if an HTTP endpoint sent it (`None`
    /// for a file or a command). `reason` is shown in `Display` (control
    /// characters escaped); `body` is kept as a bounded excerpt made by
    /// the crate's redaction (see [`Error::from_response`]). Neither
    /// retryable nor permanent.
    ///
    /// ```
    /// use tower_alf::Error;
    ///
    /// let e = Error::invalid_response(None, "not JSON", b"<html>oops</html>");
    /// assert!(e.is_invalid_response() && !e.is_retryable());
    /// assert_eq!(e.body_excerpt(), Some("<html>oops</html>"));
    /// ```
    pub fn invalid_response(
        status: impl Into<Option<StatusCode>>,
        reason: impl Into<String>,
        body: &[u8],
    ) -> Self {
        Self::invalid(status.into(), reason.into(), body)
    }

    fn invalid(status: Option<StatusCode>, reason: String, body: &[u8]) -> Self {
        Self::new(
            Kind::InvalidResponse {
                status,
                reason: redact::escape_controls(&reason).into_owned(),
                excerpt: redact::excerpt(body, &SentSecrets::default()),
            },
            None,
        )
    }

    /// An authorization server metadata document that is not usable; no
    /// status until [`Error::with_status`] says which answer carried it.
    pub(crate) fn invalid_metadata(reason: impl Into<String>, body: &[u8]) -> Self {
        Self::invalid(None, reason.into(), body).of_metadata()
    }

    /// A token that cannot be sent; see [`Error::is_invalid_token`].
    pub(crate) fn invalid_token(reason: &'static str) -> Self {
        Self::new(Kind::InvalidToken(reason), None)
    }

    /// The same error, said of the authorization server metadata endpoint
    /// rather than the token endpoint.
    pub(crate) fn of_metadata(self) -> Self {
        self.map(|inner| inner.origin = Origin::Metadata)
    }

    /// Records the status of the answer an invalid document came in.
    pub(crate) fn with_status(self, answered: StatusCode) -> Self {
        self.map(|inner| {
            if let Kind::InvalidResponse { status, .. } = &mut inner.kind {
                *status = Some(answered);
            }
        })
    }

    /// The error for an answer to a request that sent `sent`: `body` is the
    /// answer's, and every secret sent is scrubbed by value from the
    /// excerpt (made again from the whole body, so no cut falls inside a
    /// secret), the OAuth error and the reason. A token the answer carried
    /// that cannot be sent becomes an invalid response with the answer's
    /// status.
    pub(crate) fn answered(self, status: StatusCode, body: &[u8], sent: &SentSecrets) -> Self {
        self.map(|inner| {
            let origin = inner.origin;
            match &mut inner.kind {
                Kind::Status { oauth, excerpt, .. } => {
                    if let Some(oauth) = oauth {
                        oauth.scrub(sent);
                    }
                    *excerpt = origin.excerpt(body, sent);
                }
                Kind::InvalidResponse {
                    reason, excerpt, ..
                } => {
                    *reason = sent.scrub(reason).into_owned();
                    *excerpt = origin.excerpt(body, sent);
                }
                Kind::InvalidToken(reason) => {
                    inner.kind = Kind::InvalidResponse {
                        status: Some(status),
                        reason: (*reason).to_owned(),
                        excerpt: origin.excerpt(body, sent),
                    };
                }
                _ => {}
            }
        })
    }

    /// The same error with every secret `sent` removed by value from its
    /// texts that can quote a server (messages, reasons, the OAuth error):
    /// for errors with no answer body, such as an OAuth 1 callback.
    #[cfg_attr(not(feature = "oauth1"), allow(dead_code))]
    pub(crate) fn scrubbed(self, sent: &SentSecrets) -> Self {
        self.map(|inner| match &mut inner.kind {
            Kind::Config(text)
            | Kind::Signing(text)
            | Kind::Body(text)
            | Kind::Callback(text)
            | Kind::Provider { reason: text, .. }
            | Kind::InvalidResponse { reason: text, .. } => {
                *text = sent.scrub(text).into_owned();
            }
            Kind::Status { oauth, excerpt, .. } => {
                if let Some(oauth) = oauth {
                    oauth.scrub(sent);
                }
                if let Some(excerpt) = excerpt {
                    *excerpt = sent.scrub(excerpt).into_owned();
                }
            }
            _ => {}
        })
    }

    /// Changes a fresh error in place, or a copy of a shared one.
    fn map(mut self, change: impl FnOnce(&mut Inner)) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => change(inner),
            None => {
                let mut inner = Inner {
                    kind: self.inner.kind.clone(),
                    origin: self.inner.origin,
                    source: self.inner.source.clone(),
                };
                change(&mut inner);
                self.inner = Arc::new(inner);
            }
        }
        self
    }

    pub(crate) fn closed() -> Self {
        Self::new(Kind::Closed, None)
    }

    pub(crate) fn throttled() -> Self {
        Self::new(Kind::Throttled, None)
    }

    pub(crate) fn authorization(reason: &'static str, oauth: Option<OAuthError>) -> Self {
        Self::new(Kind::Authorization { reason, oauth }, None)
    }

    /// The configuration is unusable: a bad token URL, plain `http` to a
    /// host that is not loopback, a missing client id, a private key that
    /// cannot be read. Only what the user configured: it will fail the same
    /// way until the configuration changes ([`Error::is_permanent`]).
    pub fn is_config(&self) -> bool {
        matches!(self.inner.kind, Kind::Config(_))
    }

    /// The environment the crate runs in failed, not its configuration: a
    /// token was asked for outside a Tokio runtime, the operating system's
    /// random source failed, or the system clock is before 1970. Neither
    /// retryable nor permanent: fix the host or call from a runtime; the
    /// source does not remember it.
    pub fn is_runtime(&self) -> bool {
        matches!(self.inner.kind, Kind::Runtime(_))
    }

    /// A signature or proof could not be made for one request, though its
    /// key was read: a DPoP proof (the server's nonce cannot go in a proof,
    /// the proof cannot be encoded) or a JWT the key failed to sign. Nothing
    /// was sent. Neither retryable nor permanent: another request, or a new
    /// nonce, may succeed. (A request URI no proof can name, relative or
    /// with a bad port, is [`Error::is_config`], as for every URL the
    /// crate takes.)
    pub fn is_signing(&self) -> bool {
        matches!(self.inner.kind, Kind::Signing(_))
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
    /// Also an authorization server metadata document that is not usable
    /// (with [`Error::status_code`] `None` when no server sent it).
    pub fn is_invalid_response(&self) -> bool {
        matches!(self.inner.kind, Kind::InvalidResponse { .. })
    }

    /// A token built by hand or by a custom grant cannot be sent: its
    /// access token has characters that cannot go in an HTTP header. No
    /// endpoint answered, so [`Error::status_code`] is `None`. (A token
    /// endpoint answering such a token is [`Error::is_invalid_response`].)
    pub fn is_invalid_token(&self) -> bool {
        matches!(self.inner.kind, Kind::InvalidToken(_))
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
            Kind::Provider { permanent, .. } => !permanent,
            Kind::Status { status, .. } => {
                matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504) && !self.is_permanent()
            }
            _ => false,
        }
    }

    /// Whether the failure will repeat until someone changes something: a
    /// bad configuration ([`Error::is_config`], never
    /// [`Error::is_runtime`] or [`Error::is_signing`]), or the OAuth errors `invalid_client`,
    /// `invalid_grant`, `unauthorized_client`, `unsupported_grant_type` and
    /// `invalid_scope`. Never retried, and remembered briefly by the source
    /// so that a misconfiguration cannot hammer the issuer.
    pub fn is_permanent(&self) -> bool {
        match &self.inner.kind {
            Kind::Config(_) => true,
            Kind::Provider { permanent, .. } => *permanent,
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
            Kind::Status { retry_after, .. } | Kind::Provider { retry_after, .. } => *retry_after,
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
    /// expected (its `state` does not match, or it has no code); or the
    /// device code of a device authorization expired before the user
    /// approved it ([`Error::is_expired_token`]).
    pub fn is_authorization(&self) -> bool {
        matches!(self.inner.kind, Kind::Authorization { .. })
    }

    /// The user or the server refused the authorization: the OAuth error
    /// `access_denied`, from a device-flow poll (RFC 8628 §3.5) or an
    /// authorization callback (RFC 6749 §4.1.2.1). Asking again cannot help
    /// until the user starts over.
    pub fn is_access_denied(&self) -> bool {
        self.oauth_error()
            .is_some_and(|oauth| oauth.code().as_str() == "access_denied")
    }

    /// The device code of a [`DeviceAuthorization`](crate::grant::DeviceAuthorization)
    /// expired before the user approved it (RFC 8628 §3.5 `expired_token`,
    /// from the server, or its `expires_in` passed at the client, which
    /// then sends no more requests): start a new device authorization.
    pub fn is_expired_token(&self) -> bool {
        self.oauth_error()
            .is_some_and(|oauth| oauth.code().as_str() == "expired_token")
    }

    /// The HTTP status the token endpoint (or, for discovery, the metadata
    /// endpoint) answered with, if one answered.
    pub fn status_code(&self) -> Option<StatusCode> {
        match &self.inner.kind {
            Kind::Status { status, .. } => Some(*status),
            Kind::InvalidResponse { status, .. } => *status,
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

    /// A bounded excerpt of the response body: credentials masked by name,
    /// every secret the request sent removed by value, control characters
    /// escaped.
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
        if self.inner.origin != Origin::TokenEndpoint {
            d.field("origin", &self.inner.origin);
        }
        if let Some(source) = &self.inner.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = self.inner.origin;
        let name = origin.name();
        match &self.inner.kind {
            Kind::Config(message) => write!(f, "invalid {}: {message}", origin.configuration()),
            Kind::Runtime(message) => write!(f, "cannot run: {message}"),
            Kind::Signing(message) if origin == Origin::OAuth1Provider => {
                write!(f, "cannot sign the request: {message}")
            }
            Kind::Signing(message) => write!(f, "cannot sign: {message}"),
            Kind::Transport => write!(f, "could not reach the {name}"),
            Kind::Timeout => write!(f, "{} timed out", origin.request()),
            Kind::Status {
                status,
                oauth: Some(oauth),
                ..
            } => write!(f, "{name} answered {status}: {oauth}"),
            Kind::Status { status, .. } => write!(f, "{name} answered {status}"),
            Kind::InvalidResponse {
                reason,
                status: None,
                ..
            } if origin == Origin::Metadata => {
                write!(f, "invalid authorization server metadata: {reason}")
            }
            Kind::InvalidResponse { reason, .. } => write!(f, "invalid {name} response: {reason}"),
            Kind::InvalidToken(reason) => write!(f, "invalid token: {reason}"),
            Kind::Closed => f.write_str("token fetch ended without a result"),
            Kind::Provider { reason, .. } => write!(f, "token provider failed: {reason}"),
            Kind::Throttled => f.write_str(
                "the token was rejected again right after a refresh; not refreshing it again yet",
            ),
            Kind::Authorization {
                reason,
                oauth: Some(oauth),
            } => write!(f, "authorization failed: {reason}: {oauth}"),
            Kind::Authorization { reason, .. } => write!(f, "authorization failed: {reason}"),
            Kind::Body(message) => write!(f, "cannot sign the request body: {message}"),
            Kind::CallbackNotConfirmed => f.write_str(
                "the provider did not confirm the callback (oauth_callback_confirmed is not \
                 \"true\"): it may not implement OAuth 1.0a",
            ),
            Kind::Callback(reason) => write!(f, "unusable callback: {reason}"),
            Kind::TokenMismatch => f.write_str(
                "the callback's oauth_token is not the temporary credential of this flow",
            ),
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
    /// The fields as a server sent them, control characters escaped.
    pub(crate) fn new(code: ErrorCode, description: Option<String>, uri: Option<String>) -> Self {
        let mut error = Self {
            code,
            description,
            uri,
        };
        error.scrub(&SentSecrets::default());
        error
    }

    /// Removes every secret `sent` from the fields and escapes their
    /// control characters.
    pub(crate) fn scrub(&mut self, sent: &SentSecrets) {
        let clean = |text: &mut String| *text = redact::server_text(text, sent);
        if let ErrorCode::Other(code) = &mut self.code {
            clean(code);
        }
        self.description.iter_mut().for_each(clean);
        self.uri.iter_mut().for_each(clean);
    }

    /// The `error` code.
    pub fn code(&self) -> &ErrorCode {
        &self.code
    }

    /// The `error_description`, if any: as the server sent it, less any
    /// secret the request sent, control characters escaped.
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
    /// Any other code, as the server sent it (control characters escaped
    /// when it came from a server).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::EXCERPT_LIMIT;

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
    fn runtime_and_signing_failures_are_neither_config_nor_permanent() {
        for e in [
            Error::runtime("fetching a token needs a Tokio runtime"),
            Error::signing("the DPoP proof is not a valid header value"),
        ] {
            assert!(!e.is_config(), "{e}");
            assert!(!e.is_permanent() && !e.is_retryable(), "{e}");
        }
        assert!(Error::runtime("x").is_runtime() && !Error::runtime("x").is_signing());
        assert!(Error::signing("x").is_signing() && !Error::signing("x").is_runtime());
        assert_eq!(
            Error::signing("nonce \u{1b}[2J").to_string(),
            "cannot sign: nonce \\u{1b}[2J"
        );
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
