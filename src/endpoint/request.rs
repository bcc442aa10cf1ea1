//! The token request: the attempt loop, each attempt built anew, bounded by
//! the endpoint's timeout, retried as its [`RetryPolicy`] says.
//!
//! Two seams feed an attempt without the loop knowing what they are: a
//! grant's [`AttemptParams`] (the JWT-bearer assertion, signed per attempt)
//! passed with the request, and the endpoint's [`Proof`] (a sender
//! constraint: DPoP today) set once on the builder.

use std::{fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{
    header::{ACCEPT, CONTENT_TYPE},
    HeaderMap, HeaderValue, Method, Request, StatusCode, Uri,
};
use http_body_util::Full;
use tokio::time::Instant;

use super::{client_auth::ClientAuth, response::parse_response, retry::RetryPolicy};
use crate::{
    error::Error,
    http::HttpClient,
    redact::SentSecrets,
    token::{Token, TokenType},
};

/// Form parameters a grant adds to every attempt of one request, built anew
/// for each (a JWT-bearer assertion: fresh `jti`, `iat` and `exp`).
pub(crate) trait AttemptParams: fmt::Debug + Send + Sync {
    /// Adds this attempt's parameters; `token_url` is where it is sent, as
    /// configured (verbatim: the default `aud` of an assertion).
    fn add(&self, token_url: &str, form: &mut Vec<(String, String)>) -> Result<(), Error>;
}

/// A sender constraint on token requests: what each attempt proves, what
/// the answer tells the next proof, and which token types it makes usable.
/// The endpoint holds at most one; DPoP (RFC 9449) is the implementation.
pub(crate) trait Proof: fmt::Debug + Send + Sync + 'static {
    /// Adds this attempt's proof to its headers.
    fn attach(&self, method: &Method, url: &Uri, headers: &mut HeaderMap) -> Result<(), Error>;

    /// Reads what an answer says for later proofs (a `DPoP-Nonce`).
    fn answered(&self, url: &Uri, headers: &HeaderMap);

    /// Whether `error` asks for the request again at once, with what
    /// [`answered`](Self::answered) read; granted once per request, not
    /// counted as a failed attempt by the retry policy.
    fn wants_retry(&self, error: &Error) -> bool;

    /// The token as this constraint makes it usable (bound to its key when
    /// its `token_type` says so), or why it cannot be used.
    fn accept(&self, token: Token, status: StatusCode) -> Result<Token, Error>;

    /// A `(name, value)` naming the binding in a cache key: a token bound
    /// to one key is not usable with another.
    fn key_param(&self) -> (&'static str, String);

    /// For the feature's accessor to reach its own type
    /// (`TokenEndpoint::dpop_key`); unused when no feature implements this.
    #[allow(dead_code)]
    fn as_any(&self) -> &dyn std::any::Any;
}

/// Everything one request needs, shared by the endpoint's clones.
pub(super) struct EndpointInner {
    pub(super) url: Uri,
    /// The URL as configured: the default `aud` of assertions, verbatim.
    pub(super) url_text: Arc<str>,
    pub(super) auth: ClientAuth,
    pub(super) timeout: Duration,
    pub(super) max_response_size: usize,
    pub(super) retry: RetryPolicy,
    pub(super) client: HttpClient,
    pub(super) proof: Option<Arc<dyn Proof>>,
}

/// Sends a token request with `form` (plus `extra`'s parameters and the
/// client authentication, added per attempt) and reads the token from the
/// answer, retrying as the endpoint's policy says.
pub(super) async fn send(
    inner: Arc<EndpointInner>,
    form: Vec<(String, String)>,
    extra: Option<Arc<dyn AttemptParams>>,
) -> Result<Token, Error> {
    let started = Instant::now();
    // NOTE: a deadline too far to represent is no deadline.
    let deadline = inner
        .retry
        .deadline_after_start()
        .and_then(|d| started.checked_add(d));
    let mut retry = 0;
    let mut proof_retried = false;
    let mut assertion_retried = false;
    let mut replacement = None;
    loop {
        // NOTE: an assertion from another source is taken (awaited) here,
        // outside the attempt's timeout: that source bounds its own fetch.
        let attempt = inner.auth.for_attempt(replacement.take()).await?;
        let auth = attempt.as_ref().map_or(&inner.auth, |(auth, _)| auth);
        let (request, sent) = inner.build(auth, &form, extra.as_deref())?;
        let sent_at = Instant::now();
        let budget = match deadline {
            Some(deadline) => inner
                .timeout
                .min(deadline.saturating_duration_since(sent_at)),
            None => inner.timeout,
        };
        let error =
            match tokio::time::timeout(budget, inner.exchange(request, sent_at, &sent)).await {
                Ok(Ok(token)) => return Ok(token),
                Ok(Err(error)) => error,
                Err(_) => Error::timeout(),
            };
        if !proof_retried && inner.proof.as_ref().is_some_and(|p| p.wants_retry(&error)) {
            proof_retried = true;
            tracing::debug!("token endpoint asked for a fresh proof (a DPoP nonce); retrying");
            continue;
        }
        if let Some((_, assertion)) = attempt.filter(|_| !assertion_retried) {
            if let Some(fresh) = inner.auth.refused(&assertion, &error).await {
                assertion_retried = true;
                replacement = Some(fresh);
                tracing::debug!(
                    "token endpoint refused the client assertion; retrying with a fresh one"
                );
                continue;
            }
        }
        let Some(wait) = inner.retry.wait(retry, &error) else {
            return Err(error);
        };
        // NOTE: checked: a wait too long to add to the clock ends past
        // any deadline (a huge `Retry-After` with a huge `max_backoff`).
        let past_deadline = deadline.is_some_and(|deadline| {
            Instant::now()
                .checked_add(wait)
                .is_none_or(|end| end >= deadline)
        });
        if past_deadline {
            tracing::debug!(%error, "token request failed; no time left to retry");
            return Err(error);
        }
        retry += 1;
        tracing::info!(
            %error,
            attempt = retry,
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "token request failed; retrying"
        );
        tokio::time::sleep(wait).await;
    }
}

/// A form `POST` to `url` that accepts JSON, authenticated with `auth`
/// (which may add to `form`; `aud` is the URL as configured, an assertion's
/// default audience): the request the token and device authorization
/// endpoints are sent.
pub(crate) fn form_post(
    url: &Uri,
    aud: &str,
    auth: &ClientAuth,
    form: &mut Vec<(String, String)>,
) -> Result<Request<Full<Bytes>>, Error> {
    let mut request = Request::new(Full::default());
    *request.method_mut() = Method::POST;
    *request.uri_mut() = url.clone();
    let headers = request.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    auth.apply(aud, request.headers_mut(), form)?;
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter())
        .finish();
    *request.body_mut() = Full::new(Bytes::from(body));
    Ok(request)
}

impl EndpointInner {
    /// One token request, a fresh one per attempt, and the secrets it sends
    /// (to scrub from the answer if it is an error).
    fn build(
        &self,
        auth: &ClientAuth,
        form: &[(String, String)],
        extra: Option<&dyn AttemptParams>,
    ) -> Result<(Request<Full<Bytes>>, SentSecrets), Error> {
        let mut form = form.to_vec();
        if let Some(extra) = extra {
            extra.add(&self.url_text, &mut form)?;
        }
        let mut request = form_post(&self.url, &self.url_text, auth, &mut form)?;
        if let Some(proof) = &self.proof {
            proof.attach(&Method::POST, &self.url, request.headers_mut())?;
        }
        let mut sent = SentSecrets::default();
        auth.sent_secrets(&mut sent);
        sent.add_form(&form);
        Ok((request, sent))
    }

    /// Sends the request and reads the whole answer, at most
    /// `max_response_size` bytes of it. An error built from the answer has
    /// every secret in `sent` scrubbed from it.
    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
        sent_at: Instant,
        sent: &SentSecrets,
    ) -> Result<Token, Error> {
        let limit = self.max_response_size;
        let (parts, body) = self
            .client
            .fetch(request, limit)
            .await
            .map_err(|e| e.into_error(limit))?;
        tracing::debug!(
            status = parts.status.as_u16(),
            bytes = body.len(),
            "token endpoint answered"
        );
        if let Some(proof) = &self.proof {
            proof.answered(&self.url, &parts.headers);
        }
        let token = parse_response(parts.status, &parts.headers, &body, sent_at)
            .map_err(|error| error.answered(parts.status, &body, sent))?;
        let token = match &self.proof {
            Some(proof) => proof.accept(token, parts.status)?,
            None if token.token_type() == TokenType::DPoP => {
                return Err(Error::invalid_response(
                    parts.status,
                    "token_type DPoP, but this endpoint has no DPoP key to use it with",
                    &[],
                ))
            }
            None => token,
        };
        // RFC 8705 §3: a token bound to the connection's certificate
        // (`cnf.x5t#S256`) carries it; a token carries one binding, and a
        // DPoP one keeps its key's.
        #[cfg(feature = "rustls")]
        if token.sender_constraint().is_none() {
            return crate::http::bind_to_certificate(
                token,
                self.client.client_certificate(),
                parts.status,
            );
        }
        Ok(token)
    }
}
