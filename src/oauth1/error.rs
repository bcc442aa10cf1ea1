//! Errors of the OAuth 1.0a signer and the three-legged flow: the crate's
//! [`Error`](crate::Error) core (kind, source, the excerpt, masking and
//! escaping rules of `crate::redact`) with OAuth 1 predicates.

use std::{error::Error as StdError, fmt};

use http::StatusCode;

use crate::{
    error::{Error as Core, Kind},
    redact::SentSecrets,
};

type Source = Box<dyn StdError + Send + Sync>;

/// Why a request could not be signed, or a step of the three-legged flow
/// failed.
///
/// Opaque on purpose: ask it with the `is_*` predicates and accessors. It
/// shares its core with the crate's [`Error`](crate::Error): the same kinds
/// for what both can say (configuration, transport, timeout, status,
/// invalid response), the same rules for what may leave the crate. It never
/// contains a secret: every secret the request sent (the consumer secret,
/// the token or temporary token secret, the verifier, the signature, which
/// `PLAINTEXT` makes of the two secrets) is removed by value, in any
/// encoding, from `Debug`, `Display`, [`Error::problem`] and the body
/// excerpt, whose credential-bearing members are masked by name too.
///
/// [`OAuth1`](super::OAuth1) returns [`tower::BoxError`]; a request that
/// could not be signed shows up as this type, which you can downcast to.
///
/// ```
/// use tower_alf::oauth1::SignatureMethod;
///
/// let e = "HMAC-MD5".parse::<SignatureMethod>().unwrap_err();
/// assert!(e.is_config());
/// ```
#[derive(Clone)]
pub struct Error(Core);

// ===== impl Error =====

impl Error {
    fn new(kind: Kind, source: Option<Source>, body: &[u8]) -> Self {
        Self(Core::oauth1(kind, source.map(Into::into), body))
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(Kind::Config(message.into()), None, &[])
    }

    /// A signature the key failed to make (see [`Error::is_signing`]).
    pub(crate) fn signing_with(message: impl Into<String>, source: Source) -> Self {
        Self::new(Kind::Signing(message.into()), Some(source), &[])
    }

    pub(crate) fn body(message: impl Into<String>) -> Self {
        Self::new(Kind::Body(message.into()), None, &[])
    }

    pub(crate) fn transport(source: Source) -> Self {
        Self::new(Kind::Transport, Some(source), &[])
    }

    pub(crate) fn timeout() -> Self {
        Self::new(Kind::Timeout, None, &[])
    }

    /// `problem` (an `oauth_problem`) is kept as the OAuth error code of
    /// the shared core, so the core's scrubbing and escaping apply to it.
    pub(crate) fn status(status: StatusCode, problem: Option<String>, body: &[u8]) -> Self {
        let oauth = problem.map(|problem| {
            crate::error::OAuthError::new(crate::error::ErrorCode::Other(problem), None, None)
        });
        Self::new(
            Kind::Status {
                status,
                oauth,
                excerpt: None,
                retry_after: None,
            },
            None,
            body,
        )
    }

    pub(crate) fn invalid_response(
        status: StatusCode,
        reason: impl Into<String>,
        body: &[u8],
    ) -> Self {
        Self::new(
            Kind::InvalidResponse {
                status: Some(status),
                reason: reason.into(),
                excerpt: None,
            },
            None,
            body,
        )
    }

    pub(crate) fn callback_not_confirmed() -> Self {
        Self::new(Kind::CallbackNotConfirmed, None, &[])
    }

    /// `reason` may quote the provider (its `oauth_problem`): control
    /// characters are escaped.
    pub(crate) fn callback(reason: impl Into<String>) -> Self {
        Self::new(Kind::Callback(reason.into()), None, &[])
    }

    pub(crate) fn token_mismatch() -> Self {
        Self::new(Kind::TokenMismatch, None, &[])
    }

    /// The same error for an answer to a request that sent `sent`: every
    /// secret removed by value from the excerpt (made again from the whole
    /// `body`), the problem and the reason.
    pub(crate) fn answered(self, status: StatusCode, body: &[u8], sent: &SentSecrets) -> Self {
        Self(self.0.answered(status, body, sent))
    }

    /// The same error with every secret `sent` removed from its texts.
    pub(crate) fn scrubbed(self, sent: &SentSecrets) -> Self {
        Self(self.0.scrubbed(sent))
    }

    fn kind(&self) -> &Kind {
        self.0.kind()
    }

    /// The configuration is unusable: an unknown signature method or
    /// placement name, an RSA method without an RSA key, a key that is not
    /// a valid RSA private key, a request URI that is not absolute, a
    /// `realm` that cannot go in a header, a flow URL that is not `https`.
    pub fn is_config(&self) -> bool {
        self.0.is_config()
    }

    /// The RSA key failed to make a signature (RSA-SHA1, RSA-SHA256):
    /// nothing was sent. The key was read, so this is not a configuration
    /// error; [`std::error::Error::source`] says why.
    pub fn is_signing(&self) -> bool {
        self.0.is_signing()
    }

    /// The request body could not be signed: a form body that is not
    /// UTF-8, a body this layer cannot read without waiting (see
    /// [`SignableBody`](super::SignableBody)), or body placement on a body
    /// that is not a form.
    pub fn is_body(&self) -> bool {
        matches!(self.kind(), Kind::Body(_))
    }

    /// The provider could not be reached, or the connection failed.
    pub fn is_transport(&self) -> bool {
        self.0.is_transport()
    }

    /// A flow request took longer than its timeout.
    pub fn is_timeout(&self) -> bool {
        self.0.is_timeout()
    }

    /// The provider answered with an error: a non-success status, or an
    /// `oauth_problem` (see [`Error::problem`]).
    pub fn is_status(&self) -> bool {
        self.0.is_status()
    }

    /// The provider answered success but the body is not a usable
    /// credentials response: not a form, not UTF-8, too large, or without
    /// `oauth_token` or `oauth_token_secret`.
    pub fn is_invalid_response(&self) -> bool {
        self.0.is_invalid_response()
    }

    /// The temporary credentials response did not carry
    /// `oauth_callback_confirmed=true` (RFC 5849 §2.1): the provider may not
    /// implement OAuth 1.0a, and the callback may be ignored.
    pub fn is_callback_not_confirmed(&self) -> bool {
        matches!(self.kind(), Kind::CallbackNotConfirmed)
    }

    /// The callback URL is unusable: no `oauth_token` or `oauth_verifier`
    /// in it, or the user denied access.
    pub fn is_callback(&self) -> bool {
        matches!(self.kind(), Kind::Callback(_))
    }

    /// The callback's `oauth_token` is not the temporary credential this
    /// flow asked for: the redirect belongs to another authorization, or
    /// was forged.
    pub fn is_token_mismatch(&self) -> bool {
        matches!(self.kind(), Kind::TokenMismatch)
    }

    /// The HTTP status the provider answered with, if it answered.
    pub fn status_code(&self) -> Option<StatusCode> {
        self.0.status_code()
    }

    /// The `oauth_problem` the provider reported, if any (from the OAuth
    /// Problem Reporting extension many providers use: `token_rejected`,
    /// `signature_invalid`, `timestamp_refused`, …), with its control
    /// characters escaped (`\u{1b}`), as in every text of this error that
    /// comes from the provider: printed to a terminal or a log line, it
    /// cannot move the cursor or fake a line of its own.
    pub fn problem(&self) -> Option<&str> {
        self.0.oauth_error().map(|problem| problem.code().as_str())
    }

    /// A bounded excerpt of the provider's response body, with tokens,
    /// secrets and verifiers masked, every secret the request sent removed
    /// by value, and control characters escaped.
    pub fn body_excerpt(&self) -> Option<&str> {
        self.0.body_excerpt()
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.0.source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_masks_credentials_in_form_bodies() {
        let body = b"oauth_token=tok-1&oauth_token_secret=sec-2&oauth_problem=token_rejected";
        let e = Error::status(
            StatusCode::UNAUTHORIZED,
            Some("token_rejected".into()),
            body,
        );
        let excerpt = e.body_excerpt().unwrap();
        assert!(!excerpt.contains("tok-1") && !excerpt.contains("sec-2"));
        assert!(excerpt.contains("oauth_problem=token_rejected"));
    }

    #[test]
    fn problem_shows_in_display() {
        let e = Error::status(StatusCode::UNAUTHORIZED, Some("nonce_used".into()), b"");
        assert_eq!(e.problem(), Some("nonce_used"));
        assert_eq!(
            e.to_string(),
            "OAuth 1 provider answered 401 Unauthorized: nonce_used"
        );
    }

    #[test]
    fn server_text_cannot_drive_the_terminal() {
        let hostile = "bad\u{1b}]0;pwned\u{7}\r\nalf: fake line\u{202e}";
        let e = Error::status(
            StatusCode::UNAUTHORIZED,
            Some(hostile.into()),
            hostile.as_bytes(),
        );
        let callback = Error::callback(format!("the provider reported {hostile}"));
        for text in [
            e.to_string(),
            e.problem().unwrap().to_owned(),
            e.body_excerpt().unwrap().to_owned(),
            callback.to_string(),
            format!("{e:?}"),
        ] {
            assert!(
                !text.chars().any(|c| c.is_control() || c == '\u{202e}'),
                "{text:?}"
            );
            assert!(text.contains("pwned"), "{text:?}");
        }
        assert!(e
            .to_string()
            .contains("\\u{1b}]0;pwned\\u{7}\\r\\nalf: fake line"));
    }

    #[test]
    fn text_bodies_are_kept_and_bounded() {
        let body = "Invalid signature. ".repeat(100);
        let e = Error::invalid_response(StatusCode::OK, "not a form", body.as_bytes());
        let excerpt = e.body_excerpt().unwrap();
        assert!(excerpt.starts_with("Invalid signature."));
        assert!(excerpt.len() < body.len());
    }
}
