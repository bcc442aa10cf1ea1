//! Errors of the OAuth 1.0a signer and the three-legged flow.

use std::{error::Error as StdError, fmt};

use http::StatusCode;

type Source = Box<dyn StdError + Send + Sync>;

/// Why a request could not be signed, or a step of the three-legged flow
/// failed.
///
/// Opaque on purpose: ask it with the `is_*` predicates and accessors. It
/// never contains a secret: consumer and token secrets, tokens and verifiers
/// are left out of `Debug`, `Display` and the body excerpt, whose
/// credential-bearing fields are masked.
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
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: Kind,
    source: Option<Source>,
}

#[derive(Debug)]
enum Kind {
    Config(String),
    Body(String),
    Transport,
    Timeout,
    Status {
        status: StatusCode,
        problem: Option<String>,
        excerpt: Option<String>,
    },
    InvalidResponse {
        status: StatusCode,
        reason: String,
        excerpt: Option<String>,
    },
    CallbackNotConfirmed,
    Callback(String),
    TokenMismatch,
}

// ===== impl Error =====

impl Error {
    fn new(kind: Kind, source: Option<Source>) -> Self {
        Self {
            inner: Box::new(Inner { kind, source }),
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Self::new(Kind::Config(message.into()), None)
    }

    pub(crate) fn config_with(message: impl Into<String>, source: Source) -> Self {
        Self::new(Kind::Config(message.into()), Some(source))
    }

    pub(crate) fn body(message: impl Into<String>) -> Self {
        Self::new(Kind::Body(message.into()), None)
    }

    pub(crate) fn transport(source: Source) -> Self {
        Self::new(Kind::Transport, Some(source))
    }

    pub(crate) fn timeout() -> Self {
        Self::new(Kind::Timeout, None)
    }

    pub(crate) fn status(status: StatusCode, problem: Option<String>, body: &[u8]) -> Self {
        Self::new(
            Kind::Status {
                status,
                problem: problem.map(|problem| escape_controls(&problem)),
                excerpt: excerpt(body),
            },
            None,
        )
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

    pub(crate) fn callback_not_confirmed() -> Self {
        Self::new(Kind::CallbackNotConfirmed, None)
    }

    /// `reason` may quote the provider (its `oauth_problem`): control
    /// characters are escaped.
    pub(crate) fn callback(reason: impl Into<String>) -> Self {
        Self::new(Kind::Callback(escape_controls(&reason.into())), None)
    }

    pub(crate) fn token_mismatch() -> Self {
        Self::new(Kind::TokenMismatch, None)
    }

    /// The configuration is unusable: an unknown signature method or
    /// placement name, an RSA method without an RSA key, a key that is not
    /// a valid RSA private key, a request URI that is not absolute, a
    /// `realm` that cannot go in a header, a flow URL that is not `https`.
    pub fn is_config(&self) -> bool {
        matches!(self.inner.kind, Kind::Config(_))
    }

    /// The request body could not be signed: a form body that is not
    /// UTF-8, a body this layer cannot read without waiting (see
    /// [`SignableBody`](super::SignableBody)), or body placement on a body
    /// that is not a form.
    pub fn is_body(&self) -> bool {
        matches!(self.inner.kind, Kind::Body(_))
    }

    /// The provider could not be reached, or the connection failed.
    pub fn is_transport(&self) -> bool {
        matches!(self.inner.kind, Kind::Transport)
    }

    /// A flow request took longer than its timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self.inner.kind, Kind::Timeout)
    }

    /// The provider answered with an error: a non-success status, or an
    /// `oauth_problem` (see [`Error::problem`]).
    pub fn is_status(&self) -> bool {
        matches!(self.inner.kind, Kind::Status { .. })
    }

    /// The provider answered success but the body is not a usable
    /// credentials response: not a form, not UTF-8, too large, or without
    /// `oauth_token` or `oauth_token_secret`.
    pub fn is_invalid_response(&self) -> bool {
        matches!(self.inner.kind, Kind::InvalidResponse { .. })
    }

    /// The temporary credentials response did not carry
    /// `oauth_callback_confirmed=true` (RFC 5849 §2.1): the provider may not
    /// implement OAuth 1.0a, and the callback may be ignored.
    pub fn is_callback_not_confirmed(&self) -> bool {
        matches!(self.inner.kind, Kind::CallbackNotConfirmed)
    }

    /// The callback URL is unusable: no `oauth_token` or `oauth_verifier`
    /// in it, or the user denied access.
    pub fn is_callback(&self) -> bool {
        matches!(self.inner.kind, Kind::Callback(_))
    }

    /// The callback's `oauth_token` is not the temporary credential this
    /// flow asked for: the redirect belongs to another authorization, or
    /// was forged.
    pub fn is_token_mismatch(&self) -> bool {
        matches!(self.inner.kind, Kind::TokenMismatch)
    }

    /// The HTTP status the provider answered with, if it answered.
    pub fn status_code(&self) -> Option<StatusCode> {
        match &self.inner.kind {
            Kind::Status { status, .. } | Kind::InvalidResponse { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The `oauth_problem` the provider reported, if any (from the OAuth
    /// Problem Reporting extension many providers use: `token_rejected`,
    /// `signature_invalid`, `timestamp_refused`, …), with its control
    /// characters escaped (`\u{1b}`), as in every text of this error that
    /// comes from the provider: printed to a terminal or a log line, it
    /// cannot move the cursor or fake a line of its own.
    pub fn problem(&self) -> Option<&str> {
        match &self.inner.kind {
            Kind::Status { problem, .. } => problem.as_deref(),
            _ => None,
        }
    }

    /// A bounded excerpt of the provider's response body, with tokens,
    /// secrets and verifiers masked and control characters escaped.
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
            Kind::Config(message) => write!(f, "invalid OAuth 1 configuration: {message}"),
            Kind::Body(message) => write!(f, "cannot sign the request body: {message}"),
            Kind::Transport => f.write_str("could not reach the OAuth 1 provider"),
            Kind::Timeout => f.write_str("OAuth 1 provider request timed out"),
            Kind::Status {
                status,
                problem: Some(problem),
                ..
            } => write!(f, "OAuth 1 provider answered {status}: {problem}"),
            Kind::Status { status, .. } => write!(f, "OAuth 1 provider answered {status}"),
            Kind::InvalidResponse { reason, .. } => {
                write!(f, "invalid OAuth 1 provider response: {reason}")
            }
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

// ===== body excerpts =====

/// Form members whose values are credentials.
fn is_sensitive(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.contains("secret") || name == "oauth_token" || name == "oauth_verifier"
}

/// A bounded, credential-free excerpt of a provider's answer. OAuth 1
/// providers answer in `application/x-www-form-urlencoded`; other bodies
/// (JSON, HTML, text) get the crate's generic treatment.
fn excerpt(body: &[u8]) -> Option<String> {
    if let Some(pairs) = form_pairs(body) {
        let masked = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs.iter().map(|(name, value)| {
                let value = if is_sensitive(name) {
                    "[redacted]"
                } else {
                    value.as_str()
                };
                (name.as_str(), value)
            }))
            .finish();
        return Some(crate::error::truncate(masked, crate::error::EXCERPT_LIMIT));
    }
    crate::error::excerpt(body).map(|text| escape_controls(&text))
}

/// `text` with every control character (C0, DEL, C1) and every bidi
/// override or isolate escaped as Rust writes it (`\n`, `\u{1b}`), so that
/// server text cannot drive a terminal (ESC, BEL), fake a line (CR, LF)
/// or reorder what is shown (U+202E).
pub(crate) fn escape_controls(text: &str) -> String {
    let unsafe_char =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(unsafe_char) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The body as form pairs, if it looks like a form: UTF-8, no whitespace,
/// and an `=` in every member.
pub(crate) fn form_pairs(body: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(body).ok()?;
    let text = text.trim();
    if text.is_empty()
        || text.chars().any(char::is_whitespace)
        || text.split('&').any(|member| !member.contains('='))
    {
        return None;
    }
    Some(
        form_urlencoded::parse(text.as_bytes())
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect(),
    )
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
