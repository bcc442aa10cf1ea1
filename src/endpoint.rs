//! The token endpoint: the request every grant sends, and how its answer is read.

use std::{fmt, net::IpAddr, sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use http::{
    header::{ACCEPT, CONTENT_TYPE},
    Method, Request, Response, StatusCode, Uri,
};
use http_body::Body;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use tokio::time::Instant;
use tower::{util::BoxCloneSyncService, BoxError, Service, ServiceExt};

use crate::{
    error::{ErrorCode, OAuthError},
    secret::{AccessToken, RefreshToken},
    ClientAuth, Error, Token, TokenType,
};

/// Longest lifetime accepted from `expires_in`; longer values are cut to it.
const MAX_EXPIRES_IN: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The HTTP client a [`TokenEndpoint`] sends token requests with.
///
/// Any `tower::Service<http::Request<Full<Bytes>>>` that is `Clone`, `Send`
/// and `Sync` will do; its response body must yield `Bytes`. With the
/// `rustls` feature (on by default), [`HttpClient::default`] is hyper-util's
/// pooled client over hyper-rustls (ring, webpki roots, HTTP/1.1 and HTTP/2).
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use tower::service_fn;
/// use tower_alf::HttpClient;
///
/// let fake = HttpClient::new(service_fn(|_req: http::Request<Full<Bytes>>| async {
///     let body = r#"{"access_token":"t","token_type":"Bearer","expires_in":60}"#;
///     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(body))))
/// }));
/// ```
#[derive(Clone)]
pub struct HttpClient {
    inner: BoxCloneSyncService<Request<Full<Bytes>>, Response<ResponseBody>, BoxError>,
}

type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

impl HttpClient {
    /// Wraps any HTTP client service.
    pub fn new<S, B>(service: S) -> Self
    where
        S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let inner = service
            .map_response(|response: Response<B>| {
                response.map(|body| body.map_err(Into::into).boxed_unsync())
            })
            .map_err(Into::into);
        Self {
            inner: BoxCloneSyncService::new(inner),
        }
    }
}

impl HttpClient {
    /// `GET url` with `Accept: application/json`; the status and the whole
    /// body, at most `limit` bytes, within `timeout`.
    pub(crate) async fn get(
        &self,
        url: Uri,
        timeout: Duration,
        limit: usize,
    ) -> Result<(StatusCode, Bytes), Error> {
        let request = Request::get(url)
            .header(ACCEPT, "application/json")
            .body(Full::default())
            .map_err(|_| Error::config("cannot build the request"))?;
        let fetch = async {
            let response = self
                .inner
                .clone()
                .oneshot(request)
                .await
                .map_err(Error::transport)?;
            let (parts, mut body) = response.into_parts();
            let mut collected = BytesMut::new();
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.map_err(Error::transport)?.into_data() {
                    if collected.len() + data.len() > limit {
                        let reason = format!("response body is larger than {limit} bytes");
                        return Err(Error::invalid_response(parts.status, reason, &[]));
                    }
                    collected.extend_from_slice(&data);
                }
            }
            Ok((parts.status, collected.freeze()))
        };
        tokio::time::timeout(timeout, fetch)
            .await
            .map_err(|_| Error::timeout())?
    }
}

#[cfg(feature = "rustls")]
impl Default for HttpClient {
    /// hyper-util's pooled client over hyper-rustls with the ring provider
    /// and the webpki root certificates, speaking HTTP/1.1 and HTTP/2.
    fn default() -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .expect("the ring provider supports the default protocol versions")
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        Self::new(client)
    }
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient").finish_non_exhaustive()
    }
}

/// A token endpoint: its URL, how the client authenticates, and the limits
/// of one fetch. Every grant sends its request through one.
///
/// ```
/// use std::time::Duration;
/// use tower_alf::{ClientAuth, TokenEndpoint};
///
/// let endpoint = TokenEndpoint::builder("https://idp.example/oauth2/token")
///     .client_auth(ClientAuth::basic("my-client", "s3cr3t"))
///     .timeout(Duration::from_secs(10))
///     .build()
///     .unwrap();
/// assert_eq!(endpoint.url(), "https://idp.example/oauth2/token");
///
/// // Plain http is refused unless the host is loopback or you opt out.
/// assert!(TokenEndpoint::builder("http://idp.example/token").build().unwrap_err().is_config());
/// assert!(TokenEndpoint::builder("http://127.0.0.1:8080/token").build().is_ok());
/// ```
#[derive(Clone)]
pub struct TokenEndpoint {
    inner: Arc<EndpointInner>,
}

#[derive(Clone)]
struct EndpointInner {
    url: Uri,
    auth: ClientAuth,
    timeout: Duration,
    max_response_size: usize,
    client: HttpClient,
}

impl TokenEndpoint {
    /// Default bound on one fetch, from sending the request to reading the
    /// whole body: 30 s, the overall deadline google-auth gives a refresh.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    /// Default cap on a response body: 1 MiB. Token responses are a few
    /// KiB at most; a larger body is a broken or hostile server.
    pub const DEFAULT_MAX_RESPONSE_SIZE: usize = 1024 * 1024;

    /// Starts configuring the endpoint at `url`.
    pub fn builder(url: impl AsRef<str>) -> TokenEndpointBuilder {
        TokenEndpointBuilder {
            url: url.as_ref().to_owned(),
            auth: None,
            timeout: Self::DEFAULT_TIMEOUT,
            max_response_size: Self::DEFAULT_MAX_RESPONSE_SIZE,
            allow_insecure_http: false,
            client: None,
        }
    }

    /// The endpoint's URL.
    pub fn url(&self) -> &Uri {
        &self.inner.url
    }

    /// How the client authenticates.
    pub fn client_auth(&self) -> &ClientAuth {
        &self.inner.auth
    }

    /// Sends one token request with these form parameters (client
    /// authentication is added here) and reads the token from the answer.
    ///
    /// The token's lifetime counts from the moment the request is sent, on
    /// the monotonic clock, so the client's wall-clock skew does not matter.
    pub fn request(
        &self,
        mut form: Vec<(String, String)>,
    ) -> impl std::future::Future<Output = Result<Token, Error>> + Send + 'static {
        let inner = self.inner.clone();
        async move {
            let mut request = Request::builder()
                .method(Method::POST)
                .uri(inner.url.clone())
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(ACCEPT, "application/json")
                .body(Full::default())
                .expect("a valid URI, method and headers");
            inner
                .auth
                .apply(&inner.url, request.headers_mut(), &mut form)?;
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&form)
                .finish();
            *request.body_mut() = Full::new(Bytes::from(body));

            let sent_at = Instant::now();
            tokio::time::timeout(inner.timeout, exchange(&inner, request, sent_at))
                .await
                .map_err(|_| Error::timeout())?
        }
    }
}

/// Sends the request and reads the whole answer, at most
/// `max_response_size` bytes of it.
async fn exchange(
    inner: &EndpointInner,
    request: Request<Full<Bytes>>,
    sent_at: Instant,
) -> Result<Token, Error> {
    let response = inner
        .client
        .inner
        .clone()
        .oneshot(request)
        .await
        .map_err(Error::transport)?;
    let (parts, mut body) = response.into_parts();
    let limit = inner.max_response_size;
    let mut collected = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(Error::transport)?;
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > limit {
                let reason = format!("response body is larger than {limit} bytes");
                return Err(Error::invalid_response(parts.status, reason, &[]));
            }
            collected.extend_from_slice(&data);
        }
    }
    let body = collected.freeze();
    tracing::debug!(
        status = parts.status.as_u16(),
        bytes = body.len(),
        "token endpoint answered"
    );
    parse_response(parts.status, &body, sent_at)
}

impl TokenEndpoint {
    /// The same endpoint, with parameters a grant adds to every attempt of
    /// a request (a JWT-bearer assertion, signed fresh for each attempt).
    #[cfg_attr(not(feature = "jwt"), allow(dead_code))]
    pub(crate) fn with_attempt_params(
        &self,
        params: Arc<dyn crate::client_auth::AttemptParams>,
    ) -> TokenEndpoint {
        let mut inner = EndpointInner::clone(&self.inner);
        inner.auth = inner.auth.with_attempt_params(params);
        TokenEndpoint {
            inner: Arc::new(inner),
        }
    }
}

impl fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEndpoint")
            .field("url", &self.inner.url)
            .field("auth", &self.inner.auth)
            .field("timeout", &self.inner.timeout)
            .field("max_response_size", &self.inner.max_response_size)
            .finish()
    }
}

/// Builds a [`TokenEndpoint`]; see [`TokenEndpoint::builder`].
#[derive(Debug)]
#[must_use]
pub struct TokenEndpointBuilder {
    url: String,
    auth: Option<ClientAuth>,
    timeout: Duration,
    max_response_size: usize,
    allow_insecure_http: bool,
    client: Option<HttpClient>,
}

impl TokenEndpointBuilder {
    /// How the client authenticates. Without it, requests carry no client
    /// credentials (a grant may still carry its own, as an assertion does).
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Bounds one fetch, from sending the request to reading the whole
    /// body. Defaults to [`TokenEndpoint::DEFAULT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Caps the response body. Defaults to
    /// [`TokenEndpoint::DEFAULT_MAX_RESPONSE_SIZE`].
    pub fn max_response_size(mut self, bytes: usize) -> Self {
        self.max_response_size = bytes;
        self
    }

    /// Allows plain `http` to hosts that are not loopback. Defaults to
    /// `false`: credentials and tokens would cross the network in clear.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// The HTTP client to send token requests with. Defaults to
    /// [`HttpClient::default`] with the `rustls` feature; required without it.
    pub fn http_client(mut self, client: HttpClient) -> Self {
        self.client = Some(client);
        self
    }

    /// Checks the configuration and builds the endpoint.
    pub fn build(self) -> Result<TokenEndpoint, Error> {
        let url: Uri = self
            .url
            .parse()
            .map_err(|_| Error::config("the token URL is not a valid URI"))?;
        let host = url
            .host()
            .ok_or_else(|| Error::config("the token URL has no host"))?;
        match url.scheme_str() {
            Some("https") => {}
            Some("http") if self.allow_insecure_http || is_loopback(host) => {}
            Some("http") => {
                return Err(Error::config(
                    "the token URL must use https (plain http is allowed only to loopback hosts, \
                     or with allow_insecure_http)",
                ))
            }
            _ => return Err(Error::config("the token URL must be an http(s) URL")),
        }
        let client = match self.client {
            Some(client) => client,
            None => default_client()?,
        };
        Ok(TokenEndpoint {
            inner: Arc::new(EndpointInner {
                url,
                auth: self.auth.unwrap_or_else(|| ClientAuth::none("")),
                timeout: self.timeout,
                max_response_size: self.max_response_size,
                client,
            }),
        })
    }
}

#[cfg(feature = "rustls")]
fn default_client() -> Result<HttpClient, Error> {
    Ok(HttpClient::default())
}

#[cfg(not(feature = "rustls"))]
fn default_client() -> Result<HttpClient, Error> {
    Err(Error::config(
        "no HTTP client: enable the `rustls` feature or call `http_client`",
    ))
}

/// `localhost`, a `.localhost` name (RFC 6761), or a loopback address.
pub(crate) fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.to_ascii_lowercase().ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

// ===== response parsing =====

/// Reads a token endpoint answer: RFC 6749 §5.1 on success, §5.2 otherwise.
pub(crate) fn parse_response(
    status: StatusCode,
    body: &[u8],
    sent_at: Instant,
) -> Result<Token, Error> {
    let json = || -> Result<serde_json::Map<String, serde_json::Value>, &'static str> {
        std::str::from_utf8(body).map_err(|_| "response is not UTF-8")?;
        serde_json::from_slice(body).map_err(|_| "response is not a JSON object")
    };
    if !status.is_success() {
        let oauth = json().ok().and_then(|map| oauth_error(&map));
        return Err(Error::status(status, oauth, body));
    }
    let mut map = json().map_err(|reason| Error::invalid_response(status, reason, body))?;
    if let Some(oauth) = oauth_error(&map) {
        return Err(Error::status(status, Some(oauth), body));
    }
    let invalid = |reason: String| Error::invalid_response(status, reason, body);

    let access_token = match map.remove("access_token") {
        Some(serde_json::Value::String(token)) if !token.is_empty() => AccessToken::new(token),
        Some(serde_json::Value::String(_)) => return Err(invalid("access_token is empty".into())),
        Some(_) => return Err(invalid("access_token is not a string".into())),
        None => return Err(invalid("access_token is missing".into())),
    };
    let token_type = match map.remove("token_type") {
        None | Some(serde_json::Value::Null) => TokenType::Bearer,
        Some(serde_json::Value::String(kind)) => TokenType::parse(&kind)
            .ok_or_else(|| invalid(format!("token_type {kind:?} is not supported")))?,
        Some(_) => return Err(invalid("token_type is not a string".into())),
    };
    let expires_in = match map.remove("expires_in") {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => Some(expires_in(&value).map_err(|reason| invalid(reason.into()))?),
    };
    let scope = optional_string(&mut map, "scope").map_err(invalid)?;
    let refresh_token = optional_string(&mut map, "refresh_token").map_err(invalid)?;

    let mut token = Token::new(access_token, token_type, sent_at)?.with_extra(map);
    if let Some(expires_in) = expires_in {
        token = token.with_expires_in(expires_in);
    }
    if let Some(scope) = scope {
        token = token.with_scope(scope);
    }
    if let Some(refresh_token) = refresh_token {
        token = token.with_refresh_token(RefreshToken::new(refresh_token));
    }
    Ok(token)
}

/// `expires_in` as an integer, a float or a numeric string (real servers
/// send all three); negative or non-finite values are refused.
fn expires_in(value: &serde_json::Value) -> Result<Duration, &'static str> {
    let seconds = match value {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .ok_or("expires_in is not a number")?;
    if !seconds.is_finite() || seconds < 0.0 {
        return Err("expires_in is negative or not finite");
    }
    Ok(Duration::try_from_secs_f64(seconds)
        .unwrap_or(MAX_EXPIRES_IN)
        .min(MAX_EXPIRES_IN))
}

fn optional_string(
    map: &mut serde_json::Map<String, serde_json::Value>,
    key: &'static str,
) -> Result<Option<String>, String> {
    match map.remove(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{key} is not a string")),
    }
}

fn oauth_error(map: &serde_json::Map<String, serde_json::Value>) -> Option<OAuthError> {
    let code = map.get("error")?.as_str()?;
    let text = |key: &str| map.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    Some(OAuthError::new(
        ErrorCode::from(code),
        text("error_description"),
        text("error_uri"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Result<Token, Error> {
        parse_response(StatusCode::OK, body.as_bytes(), Instant::now())
    }

    #[test]
    fn expires_in_accepts_integer_float_and_string() {
        for body in [
            r#"{"access_token":"a","token_type":"bearer","expires_in":3600}"#,
            r#"{"access_token":"a","token_type":"Bearer","expires_in":3600.0}"#,
            r#"{"access_token":"a","token_type":"BEARER","expires_in":"3600"}"#,
        ] {
            assert_eq!(
                ok(body).unwrap().lifetime(),
                Some(Duration::from_secs(3600)),
                "{body}"
            );
        }
    }

    #[test]
    fn missing_or_null_expires_in_leaves_no_expiry() {
        assert_eq!(
            ok(r#"{"access_token":"a","token_type":"Bearer"}"#)
                .unwrap()
                .lifetime(),
            None
        );
        assert_eq!(
            ok(r#"{"access_token":"a","expires_in":null}"#)
                .unwrap()
                .lifetime(),
            None
        );
    }

    #[test]
    fn malformed_success_bodies_are_invalid_responses() {
        for body in [
            "not json",
            "[1,2]",
            r#"{"token_type":"Bearer"}"#,
            r#"{"access_token":42}"#,
            r#"{"access_token":""}"#,
            r#"{"access_token":"a","expires_in":"soon"}"#,
            r#"{"access_token":"a","expires_in":-5}"#,
            r#"{"access_token":"a","token_type":"mac"}"#,
            r#"{"access_token":"a","scope":["x"]}"#,
        ] {
            let e = ok(body).unwrap_err();
            assert!(e.is_invalid_response(), "{body}: {e}");
        }
        let e = parse_response(
            StatusCode::OK,
            b"{\"access_token\":\"\xff\"}",
            Instant::now(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid token endpoint response: response is not UTF-8"
        );
    }

    #[test]
    fn huge_expires_in_is_capped() {
        let t = ok(r#"{"access_token":"a","expires_in":1e300}"#).unwrap();
        assert_eq!(t.lifetime(), Some(MAX_EXPIRES_IN));
    }

    #[test]
    fn unknown_members_are_kept() {
        let t =
            ok(r#"{"access_token":"a","scope":"x y","refresh_token":"r","id_token":"i","n":1}"#)
                .unwrap();
        assert_eq!(t.scope(), Some("x y"));
        assert_eq!(t.refresh_token().unwrap().secret(), "r");
        assert_eq!(t.extra()["n"], 1);
        assert!(t.extra().contains_key("id_token"));
    }

    #[test]
    fn error_responses_carry_rfc_6749_fields() {
        let body =
            br#"{"error":"invalid_client","error_description":"nope","error_uri":"https://e/x"}"#;
        let e = parse_response(StatusCode::UNAUTHORIZED, body, Instant::now()).unwrap_err();
        let oauth = e.oauth_error().unwrap();
        assert_eq!(oauth.code(), &ErrorCode::InvalidClient);
        assert_eq!(oauth.description(), Some("nope"));
        assert_eq!(oauth.uri(), Some("https://e/x"));
        assert_eq!(e.status_code(), Some(StatusCode::UNAUTHORIZED));
    }

    #[test]
    fn a_success_status_with_an_error_member_is_an_error() {
        let e = ok(r#"{"error":"invalid_scope"}"#).unwrap_err();
        assert_eq!(e.oauth_error().unwrap().code(), &ErrorCode::InvalidScope);
    }

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "LOCALHOST",
            "api.localhost",
            "127.0.0.1",
            "127.3.2.1",
            "[::1]",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["example.com", "10.0.0.1", "localhost.example.com", "[::2]"] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
