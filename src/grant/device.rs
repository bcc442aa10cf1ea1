use std::{
    fmt,
    sync::{Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use http::{HeaderMap, StatusCode, Uri};
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::params::Params;
use crate::{
    endpoint::{
        request::form_post,
        response::{self, oauth_error, retry_after, BadSeconds},
        TokenEndpoint,
    },
    error::{Error, ErrorCode, OAuthError},
    http::{checked_url, default_client, HttpClient, PlainHttp},
    token::Token,
};

/// The `grant_type` of a device access token request (RFC 8628 §3.4).
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The device authorization grant (RFC 8628): for a machine with no browser
/// (an SSH session, a CLI on a server, a TV), the user approves on another
/// device.
///
/// Two steps: [`DeviceAuthorization::start`] asks the server's
/// `device_authorization_endpoint` for a device code, authenticated as the
/// client of the token endpoint is (RFC 8628 §3.1); show the user the
/// [`user_code`](PendingDeviceAuthorization::user_code) and the
/// [`verification_uri`](PendingDeviceAuthorization::verification_uri).
/// Then [`PendingDeviceAuthorization::poll`] asks the token endpoint until
/// the user has approved, and returns the token set. Its refresh token
/// feeds a [`RefreshTokenGrant`](super::RefreshTokenGrant), as the
/// authorization-code flow's does.
///
/// How polling ends:
///
/// | Outcome | How to tell |
/// |---|---|
/// | the user approved | `Ok(token)` |
/// | the user refused (`access_denied`) | [`Error::is_access_denied`] |
/// | the code expired (`expired_token`, or its `expires_in` passed) | [`Error::is_expired_token`] |
/// | any other OAuth error (`invalid_client`, `invalid_grant`, …) | [`Error::is_oauth`], [`Error::oauth_error`] |
/// | the endpoint failed (transport, 5xx after the endpoint's retries) | the other `is_*` predicates |
///
/// ```
/// use tower_alf::{grant::{DeviceAuthorization, RefreshTokenGrant}, ClientAuth, TokenEndpoint, TokenSource};
///
/// # async fn run() -> Result<(), tower_alf::Error> {
/// let endpoint = TokenEndpoint::builder("https://idp.example/oauth2/token")
///     .client_auth(ClientAuth::none("my-cli"))
///     .build()?;
/// let flow = DeviceAuthorization::new(endpoint.clone(), "https://idp.example/oauth2/device")
///     .scope("openid")
///     .scope("offline_access");
/// let pending = flow.start().await?;
/// match pending.verification_uri_complete() {
///     Some(uri) => eprintln!("Open {uri}"),
///     None => eprintln!("Open {} and enter {}", pending.verification_uri(), pending.user_code()),
/// }
/// let token_set = match pending.poll().await {
///     Ok(token_set) => token_set,
///     Err(e) => {
///         if e.is_access_denied() {
///             eprintln!("the sign-in was refused");
///         } else if e.is_expired_token() {
///             eprintln!("the code expired: run this again");
///         }
///         return Err(e);
///     }
/// };
/// let tokens = TokenSource::new(RefreshTokenGrant::from_token(endpoint, token_set)?);
/// # Ok(()) }
/// ```
///
/// # Polling
///
/// The first request waits `interval` after the device code arrived, each
/// later one `interval` after the previous answer. `authorization_pending`
/// polls again; `slow_down` adds 5 s to the interval for this and every
/// later request (RFC 8628 §3.5); a timed-out request doubles it. The
/// interval is [`DEFAULT_INTERVAL`](Self::DEFAULT_INTERVAL) when the server
/// sends none (or 0), and kept between [`MIN_INTERVAL`](Self::MIN_INTERVAL)
/// and [`MAX_INTERVAL`](Self::MAX_INTERVAL). Once the next request would
/// fall at or after the code's expiry, polling ends with an
/// [`Error::is_expired_token`] error and no request is sent.
///
/// # Cancellation
///
/// `poll` spawns nothing and keeps its state (the interval and the time of
/// the next request) in the [`PendingDeviceAuthorization`]: dropping its
/// future at any await leaves nothing running, and calling `poll` again
/// resumes with the same interval, never sooner than the server allows,
/// even when several tasks poll at once. A request dropped in flight may
/// have been answered with the token, though: keep one `poll` future alive
/// (a `tokio::select!` against a progress ticker should pin it and poll it
/// by reference) rather than starting one per tick.
#[derive(Clone)]
pub struct DeviceAuthorization {
    endpoint: TokenEndpoint,
    device_authorization_endpoint: String,
    client: Option<HttpClient>,
    timeout: Duration,
    params: Params,
}

impl DeviceAuthorization {
    /// The interval between polls when the server states none, or 0: 5 s
    /// (RFC 8628 §3.2).
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

    /// The shortest interval between polls: 1 s, whatever the server says.
    pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

    /// The longest interval between polls: 60 s. A larger `interval` (or
    /// `slow_down`s past it) is cut to it, so a user who approved waits at
    /// most a minute for the client to notice.
    pub const MAX_INTERVAL: Duration = Duration::from_secs(60);

    /// The longest lifetime of a device code: 1 hour. A larger
    /// `expires_in` is cut to it, so polling always ends.
    pub const MAX_EXPIRES_IN: Duration = Duration::from_secs(3600);

    /// The flow for the client of `endpoint` (its client authentication
    /// names the `client_id` and authenticates both requests), with the
    /// server's `device_authorization_endpoint` (from
    /// [`ServerMetadata::device_authorization_endpoint`](crate::discovery::ServerMetadata::device_authorization_endpoint)).
    ///
    /// The endpoint must be `https`, except on a loopback host; it is
    /// checked by [`DeviceAuthorization::start`].
    pub fn new(endpoint: TokenEndpoint, device_authorization_endpoint: impl Into<String>) -> Self {
        Self {
            endpoint,
            device_authorization_endpoint: device_authorization_endpoint.into(),
            client: None,
            timeout: TokenEndpoint::DEFAULT_TIMEOUT,
            params: Params::default(),
        }
    }

    /// Asks for a scope; call again for more (`offline_access` for a
    /// refresh token from OpenID Connect servers).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.params.scope(scope.into());
        self
    }

    /// Adds a parameter to the device authorization request (`audience`,
    /// `resource`, …).
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.add(name.into(), value.into());
        self
    }

    /// The HTTP client for the device authorization request. Defaults to
    /// [`HttpClient::default`] (feature `rustls`); give the one the token
    /// endpoint uses when it trusts your own CA. Polls go through the
    /// token endpoint and its own client.
    pub fn http_client(mut self, client: HttpClient) -> Self {
        self.client = Some(client);
        self
    }

    /// Bounds the device authorization request, from sending it to reading
    /// the whole answer. Defaults to [`TokenEndpoint::DEFAULT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The token endpoint polls go to.
    pub fn endpoint(&self) -> &TokenEndpoint {
        &self.endpoint
    }

    /// Sends the device authorization request (RFC 8628 §3.1) and reads
    /// the answer (§3.2): the codes to show the user and to poll with.
    ///
    /// One attempt, bounded by the [`timeout`](Self::timeout); an answer
    /// without `device_code`, `user_code`, `verification_uri` or
    /// `expires_in`, with a negative or non-numeric `interval`, or with
    /// control characters in what is shown to the user, is an
    /// [`Error::is_invalid_response`] error.
    pub async fn start(&self) -> Result<PendingDeviceAuthorization, Error> {
        let url = self.url()?;
        let auth = self.endpoint.client_auth();
        if auth.client_id().is_empty() {
            return Err(Error::config(
                "the device flow needs a client id: give the token endpoint a client_auth",
            ));
        }
        let mut form = Vec::new();
        self.params.extend_form(&mut form, true);
        let attempt = auth.for_attempt(None).await?;
        let auth = attempt.as_ref().map_or(auth, |(auth, _)| auth);
        let request = form_post(&url, &self.device_authorization_endpoint, auth, &mut form)?;

        let client = self.client.clone().or_else(default_client).ok_or_else(|| {
            Error::config(
                "no HTTP client for the device authorization request: enable the `rustls` \
                 feature or call `DeviceAuthorization::http_client`",
            )
        })?;
        let limit = TokenEndpoint::DEFAULT_MAX_RESPONSE_SIZE;
        let sent_at = Instant::now();
        let (parts, body) = client.fetch_within(request, limit, self.timeout).await?;
        tracing::debug!(
            status = parts.status.as_u16(),
            bytes = body.len(),
            "device authorization endpoint answered"
        );
        let answer = parse(parts.status, &parts.headers, &body)?;
        let expires_at = later(sent_at, answer.expires_in);
        let received_at = Instant::now();
        Ok(PendingDeviceAuthorization {
            endpoint: self.endpoint.clone(),
            device_code: answer.device_code,
            user_code: answer.user_code,
            verification_uri: answer.verification_uri,
            verification_uri_complete: answer.verification_uri_complete,
            expires_in: answer.expires_in,
            expires_at,
            state: Mutex::new(PollState {
                interval: answer.interval,
                next_at: later(received_at, answer.interval),
            }),
        })
    }

    /// The device authorization endpoint, checked: https, or http to a
    /// loopback host.
    fn url(&self) -> Result<Uri, Error> {
        checked_url(
            &self.device_authorization_endpoint,
            "device authorization endpoint",
            PlainHttp::LoopbackOnly,
        )
    }
}

/// `at + by`, or `at` itself in the (unreachable, given the caps) case
/// the sum does not fit: never a panic.
fn later(at: Instant, by: Duration) -> Instant {
    at.checked_add(by).unwrap_or(at)
}

/// One device authorization in progress: what to show the user, and the
/// device code to poll the token endpoint with
/// ([`PendingDeviceAuthorization::poll`]). From
/// [`DeviceAuthorization::start`].
pub struct PendingDeviceAuthorization {
    endpoint: TokenEndpoint,
    device_code: DeviceCode,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: Option<String>,
    expires_in: Duration,
    expires_at: Instant,
    state: Mutex<PollState>,
}

/// What polling remembers between requests (and between `poll` calls).
#[derive(Debug)]
struct PollState {
    /// The wait between requests, `slow_down`s included.
    interval: Duration,
    /// No request before this.
    next_at: Instant,
}

impl PendingDeviceAuthorization {
    /// The device code, sent with every poll. A secret: whoever holds it
    /// gets the token once the user approves.
    pub fn device_code(&self) -> &DeviceCode {
        &self.device_code
    }

    /// The code the user enters at the verification URI.
    pub fn user_code(&self) -> &str {
        &self.user_code
    }

    /// Where the user goes to enter the user code (`verification_uri`;
    /// Google's `verification_url` is read too).
    pub fn verification_uri(&self) -> &str {
        &self.verification_uri
    }

    /// The verification URI with the user code in it, when the server
    /// sends one (for a link or a QR code: the user need not type the
    /// code).
    pub fn verification_uri_complete(&self) -> Option<&str> {
        self.verification_uri_complete.as_deref()
    }

    /// The device code's lifetime, as the server said (at most
    /// [`DeviceAuthorization::MAX_EXPIRES_IN`]).
    pub fn expires_in(&self) -> Duration {
        self.expires_in
    }

    /// When the device code expires, on the monotonic clock: `expires_in`
    /// after the device authorization request was sent.
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }

    /// The interval between polls now: the server's, or the default,
    /// with every `slow_down` so far added.
    pub fn interval(&self) -> Duration {
        self.lock().interval
    }

    /// The token endpoint polls go to.
    pub fn endpoint(&self) -> &TokenEndpoint {
        &self.endpoint
    }

    /// Polls the token endpoint (RFC 8628 §3.4) until the user approves,
    /// refuses, or the device code expires: the token set, or an error
    /// (see the table on [`DeviceAuthorization`]).
    ///
    /// Each request goes through the token endpoint as any grant's does
    /// (client authentication, its timeout and [`RetryPolicy`](crate::RetryPolicy),
    /// DPoP when it has a key). Cancel-safe: see
    /// [Cancellation](DeviceAuthorization#cancellation).
    pub async fn poll(&self) -> Result<Token, Error> {
        loop {
            let wait_until = {
                let mut state = self.lock();
                if state.next_at >= self.expires_at {
                    return Err(self.expired());
                }
                let now = Instant::now();
                if now < state.next_at {
                    Some(state.next_at)
                } else {
                    // Take the slot before sending, under the same lock as
                    // the check: a poll dropped in flight, or another task
                    // polling, cannot send sooner than the interval allows.
                    state.next_at = later(now, state.interval);
                    None
                }
            };
            if let Some(at) = wait_until {
                tokio::time::sleep_until(at).await;
                // Another poller may have taken this slot: look again.
                continue;
            }
            let form = vec![
                ("grant_type".to_owned(), GRANT_TYPE.to_owned()),
                (
                    "device_code".to_owned(),
                    self.device_code.secret().to_owned(),
                ),
            ];
            let error = match self.endpoint.request(form).await {
                Ok(token) => return Ok(token),
                Err(error) => error,
            };
            let answered_at = Instant::now();
            let code = error.oauth_error().map(|oauth| oauth.code().as_str());
            let mut state = self.lock();
            match code {
                Some("authorization_pending") => {
                    tracing::debug!("device authorization pending");
                }
                Some("slow_down") => {
                    state.interval = clamp(state.interval.saturating_add(SLOW_DOWN));
                    tracing::debug!(
                        interval_s = state.interval.as_secs(),
                        "the token endpoint asked to slow down"
                    );
                }
                _ if error.is_timeout() => {
                    // RFC 8628 §3.5: back off on a connection timeout.
                    state.interval = clamp(state.interval.saturating_mul(2));
                    tracing::debug!(
                        interval_s = state.interval.as_secs(),
                        "device token request timed out; polling less often"
                    );
                }
                _ => return Err(error),
            }
            state.next_at = later(answered_at, state.interval);
        }
    }

    fn expired(&self) -> Error {
        let oauth = OAuthError::new(
            ErrorCode::from("expired_token"),
            Some("the device code's expires_in passed; no request was sent".to_owned()),
            None,
        );
        Error::authorization(
            "the device code expired before the user approved it",
            Some(oauth),
        )
    }

    fn lock(&self) -> MutexGuard<'_, PollState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What `slow_down` adds to the interval (RFC 8628 §3.5).
const SLOW_DOWN: Duration = Duration::from_secs(5);

fn clamp(interval: Duration) -> Duration {
    interval.clamp(
        DeviceAuthorization::MIN_INTERVAL,
        DeviceAuthorization::MAX_INTERVAL,
    )
}

/// The device code of a [`PendingDeviceAuthorization`] (RFC 8628 §3.2).
///
/// `Debug` and `Display` print `[redacted]`; read the value with
/// [`DeviceCode::secret`].
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceCode(String);

impl DeviceCode {
    /// The secret value. Take care where it goes.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DeviceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeviceCode([redacted])")
    }
}

impl fmt::Display for DeviceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A device authorization response, read.
struct Answer {
    device_code: DeviceCode,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: Option<String>,
    expires_in: Duration,
    interval: Duration,
}

/// Reads a device authorization answer (RFC 8628 §3.2; errors §3.3, as
/// RFC 6749 §5.2). Error excerpts of the body mask `device_code`.
fn parse(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<Answer, Error> {
    let json = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let map = serde_json::from_slice::<Map<String, Value>>(json);
    if !status.is_success() {
        let oauth = map.as_ref().ok().and_then(oauth_error);
        return Err(Error::status(status, oauth, body).with_retry_after(retry_after(headers)));
    }
    let map = map.map_err(|_| {
        Error::invalid_response(status, "device authorization: not a JSON object", body)
    })?;
    if let Some(oauth) = oauth_error(&map) {
        return Err(Error::status(status, Some(oauth), body));
    }
    let invalid = |reason: String| {
        Error::invalid_response(status, format!("device authorization: {reason}"), body)
    };
    let text = |name: &str| -> Result<Option<String>, Error> {
        match map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Err(invalid(format!("{name} is empty"))),
            Some(Value::String(s)) if s.chars().any(char::is_control) => {
                Err(invalid(format!("{name} has control characters")))
            }
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid(format!("{name} is not a string"))),
        }
    };
    let required = |name: &str| text(name)?.ok_or_else(|| invalid(format!("{name} is missing")));
    let device_code = DeviceCode(required("device_code")?);
    let user_code = required("user_code")?;
    let verification_uri = match text("verification_uri")? {
        Some(uri) => uri,
        None => text("verification_url")?
            .ok_or_else(|| invalid("verification_uri is missing".to_owned()))?,
    };
    let verification_uri_complete = text("verification_uri_complete")?;
    let expires_in = match map.get("expires_in") {
        None | Some(Value::Null) => return Err(invalid("expires_in is missing".to_owned())),
        Some(value) => seconds(value)
            .map_err(|reason| invalid(format!("expires_in {reason}")))?
            .min(DeviceAuthorization::MAX_EXPIRES_IN),
    };
    let interval = match map.get("interval") {
        None | Some(Value::Null) => DeviceAuthorization::DEFAULT_INTERVAL,
        Some(value) => {
            let interval =
                seconds(value).map_err(|reason| invalid(format!("interval {reason}")))?;
            if interval.is_zero() {
                DeviceAuthorization::DEFAULT_INTERVAL
            } else {
                clamp(interval)
            }
        }
    };
    Ok(Answer {
        device_code,
        user_code,
        verification_uri,
        verification_uri_complete,
        expires_in,
        interval,
    })
}

/// A number of seconds: an integer, a float or a numeric string; never
/// negative, and saturating (10^30 is `Duration::MAX`).
fn seconds(value: &Value) -> Result<Duration, &'static str> {
    response::seconds(value).map_err(|bad| match bad {
        BadSeconds::NotANumber => "is not a number",
        BadSeconds::Negative => "is negative or not finite",
    })
}

impl fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("DeviceAuthorization");
        f.field("endpoint", &self.endpoint)
            .field(
                "device_authorization_endpoint",
                &self.device_authorization_endpoint,
            )
            .field("timeout", &self.timeout);
        self.params.debug_fields(&mut f);
        f.finish_non_exhaustive()
    }
}

impl fmt::Debug for PendingDeviceAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingDeviceAuthorization")
            .field("device_code", &self.device_code)
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("verification_uri_complete", &self.verification_uri_complete)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(body: Value) -> Result<Answer, Error> {
        parse(
            StatusCode::OK,
            &HeaderMap::new(),
            body.to_string().as_bytes(),
        )
    }

    fn answer(extra: Value) -> Value {
        let mut body = serde_json::json!({
            "device_code": "dc-SECRET-1",
            "user_code": "WDJB-MJHT",
            "verification_uri": "https://idp.example/device",
            "expires_in": 1800,
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    }

    #[test]
    fn the_interval_defaults_to_5_s_and_is_clamped() {
        let cases = [
            (Value::Null, 5),
            (serde_json::json!(0), 5),
            (serde_json::json!(0.2), 1),
            (serde_json::json!("7"), 7),
            (serde_json::json!(1_000_000_000u64), 60),
            (serde_json::json!(1e300), 60),
        ];
        for (interval, secs) in cases {
            let a = read(answer(serde_json::json!({ "interval": interval }))).unwrap();
            assert_eq!(a.interval, Duration::from_secs(secs), "{interval}");
        }
        for bad in [serde_json::json!(-1), serde_json::json!("soon")] {
            let e = read(answer(serde_json::json!({ "interval": bad })))
                .err()
                .unwrap();
            assert!(e.is_invalid_response(), "{e}");
            assert!(e.to_string().contains("interval"), "{e}");
        }
    }

    #[test]
    fn expires_in_is_required_and_capped_at_an_hour() {
        let a = read(answer(serde_json::json!({ "expires_in": 1e30 }))).unwrap();
        assert_eq!(a.expires_in, DeviceAuthorization::MAX_EXPIRES_IN);
        let mut body = answer(serde_json::json!({}));
        body.as_object_mut().unwrap().remove("expires_in");
        let e = read(body).err().unwrap();
        assert!(e.to_string().contains("expires_in is missing"), "{e}");
    }

    #[test]
    fn googles_verification_url_is_read() {
        let mut body = answer(serde_json::json!({ "verification_url": "https://g.co/device" }));
        body.as_object_mut().unwrap().remove("verification_uri");
        assert_eq!(read(body).unwrap().verification_uri, "https://g.co/device");
    }

    #[test]
    fn control_characters_in_what_the_user_sees_are_refused() {
        let e = read(answer(serde_json::json!({ "user_code": "AB\u{1b}[2J" })))
            .err()
            .unwrap();
        assert!(e.to_string().contains("user_code has control characters"));
    }

    #[test]
    fn errors_never_show_the_device_code() {
        let e = read(answer(serde_json::json!({ "user_code": 7 })))
            .err()
            .unwrap();
        assert!(e.is_invalid_response());
        let shown = format!("{e} {e:?} {:?}", e.body_excerpt());
        assert!(!shown.contains("dc-SECRET-1"), "{shown}");
        assert!(shown.contains("user_code is not a string"), "{shown}");
    }

    #[test]
    fn the_device_code_is_redacted() {
        let code = DeviceCode("dc-SECRET-2".to_owned());
        assert_eq!(format!("{code:?}"), "DeviceCode([redacted])");
        assert_eq!(code.to_string(), "[redacted]");
        assert_eq!(code.secret(), "dc-SECRET-2");
    }
}
