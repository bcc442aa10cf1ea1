//! The token endpoint: the request every grant sends, and how its answer is read.

use std::{fmt, sync::Arc, time::Duration};

use bytes::{Bytes, BytesMut};
use http::{
    header::{ACCEPT, CONTENT_TYPE},
    HeaderValue, Method, Request, Response, StatusCode, Uri,
};
use http_body::Body;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use tokio::time::Instant;
use tower::{util::BoxCloneSyncService, BoxError, Service, ServiceExt};

// The one URL rule lives in `crate::http`.
use crate::{
    http::{checked_url, PlainHttp},
    redact::SentSecrets,
    response::parse_response,
    ClientAuth, Error, RetryPolicy, Token,
};

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
        let answer = tokio::time::timeout(timeout, self.fetch(request, limit))
            .await
            .map_err(|_| Error::timeout())?;
        let (parts, body) = answer.map_err(|e| e.into_error(limit))?;
        Ok((parts.status, body))
    }
}

#[cfg(feature = "rustls")]
impl Default for HttpClient {
    /// hyper-util's pooled client over hyper-rustls with the ring provider
    /// and the webpki root certificates, speaking HTTP/1.1 and HTTP/2.
    ///
    /// Certificates are verified against the webpki roots (Mozilla's root
    /// program); a server with a certificate from your own CA is refused.
    /// Use [`HttpClient::with_root_certificates`] or
    /// [`HttpClient::with_tls_config`] to trust it.
    fn default() -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .expect("the ring provider supports the default protocol versions")
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        Self::over(connector)
    }
}

#[cfg(feature = "rustls")]
impl HttpClient {
    /// The default stack (hyper-util's pooled client over hyper-rustls,
    /// HTTP/1.1 and HTTP/2) trusting `roots` instead of the webpki roots,
    /// with the ring provider and rustls' safe default protocol versions.
    ///
    /// For a token endpoint whose certificate comes from your own CA (a
    /// company CA, a test CA). Certificates are still fully verified: chain,
    /// validity and host name.
    ///
    /// ```
    /// use tower_alf::{ClientAuth, HttpClient, TokenEndpoint};
    ///
    /// # fn run(ca_der: Vec<u8>) -> Result<(), tower::BoxError> {
    /// // `ca_der`: your CA's certificate, DER-encoded.
    /// let mut roots = rustls::RootCertStore::empty();
    /// roots.add(rustls::pki_types::CertificateDer::from(ca_der))?;
    /// let endpoint = TokenEndpoint::builder("https://idp.internal/oauth2/token")
    ///     .client_auth(ClientAuth::basic("my-client", "s3cr3t"))
    ///     .http_client(HttpClient::with_root_certificates(roots))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn with_root_certificates(roots: rustls::RootCertStore) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self::with_tls_config(config)
    }

    /// The default stack (hyper-util's pooled client over hyper-rustls,
    /// HTTP/1.1 and HTTP/2) with your own rustls configuration: roots, a
    /// client certificate for mutual TLS, protocol versions, a crypto
    /// provider. Its ALPN protocols are set to `h2` and `http/1.1`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use tower_alf::HttpClient;
    ///
    /// let roots = rustls::RootCertStore::empty(); // add your roots here
    /// let config = rustls::ClientConfig::builder_with_provider(Arc::new(
    ///         rustls::crypto::ring::default_provider(),
    ///     ))
    ///     .with_protocol_versions(&[&rustls::version::TLS13])?
    ///     .with_root_certificates(roots)
    ///     .with_no_client_auth();
    /// let client = HttpClient::with_tls_config(config);
    /// # Ok::<_, rustls::Error>(())
    /// ```
    pub fn with_tls_config(config: rustls::ClientConfig) -> Self {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        Self::over(connector)
    }

    fn over<C>(connector: C) -> Self
    where
        C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
    {
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
/// let public = |url: &str| TokenEndpoint::builder(url).client_auth(ClientAuth::none("my-cli"));
/// assert!(public("http://idp.example/token").build().unwrap_err().is_config());
/// assert!(public("http://127.0.0.1:8080/token").build().is_ok());
///
/// // Without client authentication, `build` fails: a public client says so.
/// assert!(TokenEndpoint::builder("https://idp.example/token").build().unwrap_err().is_config());
/// ```
#[derive(Clone)]
pub struct TokenEndpoint {
    inner: Arc<EndpointInner>,
}

#[derive(Clone)]
struct EndpointInner {
    url: Uri,
    /// The URL as configured: the default `aud` of assertions, verbatim.
    url_text: Arc<str>,
    auth: ClientAuth,
    timeout: Duration,
    max_response_size: usize,
    retry: RetryPolicy,
    client: HttpClient,
    #[cfg(feature = "dpop")]
    dpop: Option<crate::dpop::DPoPKey>,
}

impl TokenEndpoint {
    /// Default bound on one attempt, from sending the request to reading
    /// the whole body: 10 s, so that a hung connection leaves time for a
    /// retry within the [`RetryPolicy`]'s 30 s deadline.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

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
            retry: RetryPolicy::default(),
            client: None,
            #[cfg(feature = "dpop")]
            dpop: None,
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

    /// The DPoP key token requests prove possession of, if any.
    #[cfg(feature = "dpop")]
    pub fn dpop_key(&self) -> Option<&crate::dpop::DPoPKey> {
        self.inner.dpop.as_ref()
    }

    /// Sends a token request with these form parameters (client
    /// authentication is added here) and reads the token from the answer,
    /// retrying as the endpoint's [`RetryPolicy`] says.
    ///
    /// Each attempt is built anew and bounded by the endpoint's timeout; the
    /// policy's deadline bounds them all, waits included. The token's
    /// lifetime counts from the moment its request was sent, on the
    /// monotonic clock, so the client's wall-clock skew does not matter.
    ///
    /// With a DPoP key (feature `dpop`), each attempt carries a fresh proof,
    /// and a `400 use_dpop_nonce` answer is retried at once, once per
    /// request, with the server's nonce; that retry is not a failed attempt
    /// for the policy.
    pub fn request(
        &self,
        form: Vec<(String, String)>,
    ) -> impl std::future::Future<Output = Result<Token, Error>> + Send + 'static {
        let inner = self.inner.clone();
        async move {
            let started = Instant::now();
            // NOTE: a deadline too far to represent is no deadline.
            let deadline = inner
                .retry
                .deadline_after_start()
                .and_then(|d| started.checked_add(d));
            let mut retry = 0;
            let mut nonce_retried = false;
            loop {
                let (request, sent) = inner.build(&form)?;
                let sent_at = Instant::now();
                let budget = match deadline {
                    Some(deadline) => inner
                        .timeout
                        .min(deadline.saturating_duration_since(sent_at)),
                    None => inner.timeout,
                };
                let error =
                    match tokio::time::timeout(budget, exchange(&inner, request, sent_at, &sent))
                        .await
                    {
                        Ok(Ok(token)) => return Ok(token),
                        Ok(Err(error)) => error,
                        Err(_) => Error::timeout(),
                    };
                if !nonce_retried && inner.wants_nonce_retry(&error) {
                    nonce_retried = true;
                    tracing::debug!("token endpoint asked for a DPoP nonce; retrying with it");
                    continue;
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
    }
}

impl EndpointInner {
    /// Whether `error` is a `use_dpop_nonce` answer to retry with the nonce
    /// it carried (RFC 9449 §8).
    fn wants_nonce_retry(&self, error: &Error) -> bool {
        #[cfg(feature = "dpop")]
        if self.dpop.is_some() {
            return error.status_code() == Some(StatusCode::BAD_REQUEST)
                && error
                    .oauth_error()
                    .is_some_and(|e| e.code().as_str() == "use_dpop_nonce");
        }
        let _ = error;
        false
    }

    /// One token request, a fresh one per attempt, and the secrets it sends
    /// (to scrub from the answer if it is an error).
    fn build(
        &self,
        form: &[(String, String)],
    ) -> Result<(Request<Full<Bytes>>, SentSecrets), Error> {
        let mut form = form.to_vec();
        let mut request = Request::new(Full::default());
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.url.clone();
        let headers = request.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        self.auth
            .apply(&self.url_text, request.headers_mut(), &mut form)?;
        #[cfg(feature = "dpop")]
        if let Some(key) = &self.dpop {
            let proof = key.proof(&Method::POST, &self.url, None)?;
            request.headers_mut().insert(crate::dpop::DPOP, proof);
        }
        let mut sent = SentSecrets::default();
        self.auth.sent_secrets(&mut sent);
        sent.add_form(&form);
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&form)
            .finish();
        *request.body_mut() = Full::new(Bytes::from(body));
        Ok((request, sent))
    }
}

/// Sends the request and reads the whole answer, at most
/// `max_response_size` bytes of it. An error built from the answer has
/// every secret in `sent` scrubbed from it.
async fn exchange(
    inner: &EndpointInner,
    request: Request<Full<Bytes>>,
    sent_at: Instant,
    sent: &SentSecrets,
) -> Result<Token, Error> {
    let limit = inner.max_response_size;
    let (parts, body) = inner
        .client
        .fetch(request, limit)
        .await
        .map_err(|e| e.into_error(limit))?;
    tracing::debug!(
        status = parts.status.as_u16(),
        bytes = body.len(),
        "token endpoint answered"
    );
    #[cfg(feature = "dpop")]
    if let Some(key) = &inner.dpop {
        key.remember_nonce(&inner.url, &parts.headers);
    }
    let token = parse_response(parts.status, &parts.headers, &body, sent_at)
        .map_err(|error| error.answered(parts.status, &body, sent))?;
    if token.token_type() == crate::TokenType::DPoP {
        #[cfg(feature = "dpop")]
        if let Some(key) = &inner.dpop {
            return Ok(token.with_dpop(key.clone()));
        }
        return Err(Error::invalid_response(
            parts.status,
            "token_type DPoP, but this endpoint has no DPoP key to use it with",
            &[],
        ));
    }
    Ok(token)
}

/// Why [`HttpClient::fetch`] has no answer.
pub(crate) enum FetchError {
    /// The request or the body failed.
    Transport(BoxError),
    /// The body is larger than the limit; the status came first.
    TooLarge(StatusCode),
}

impl FetchError {
    /// The crate's error for it; `limit` is the cap that was passed.
    pub(crate) fn into_error(self, limit: usize) -> Error {
        match self {
            Self::Transport(e) => Error::transport(e),
            Self::TooLarge(status) => {
                let reason = format!("response body is larger than {limit} bytes");
                Error::invalid_response(status, reason, &[])
            }
        }
    }
}

impl HttpClient {
    /// Sends `request` and reads the whole answer, at most `limit` bytes.
    pub(crate) async fn fetch(
        &self,
        request: Request<Full<Bytes>>,
        limit: usize,
    ) -> Result<(http::response::Parts, Bytes), FetchError> {
        let response = self
            .inner
            .clone()
            .oneshot(request)
            .await
            .map_err(FetchError::Transport)?;
        let (parts, mut body) = response.into_parts();
        let mut collected = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(FetchError::Transport)?;
            if let Ok(data) = frame.into_data() {
                if collected.len() + data.len() > limit {
                    return Err(FetchError::TooLarge(parts.status));
                }
                collected.extend_from_slice(&data);
            }
        }
        Ok((parts, collected.freeze()))
    }
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
        let mut f = f.debug_struct("TokenEndpoint");
        f.field("url", &self.inner.url)
            .field("auth", &self.inner.auth)
            .field("timeout", &self.inner.timeout)
            .field("max_response_size", &self.inner.max_response_size)
            .field("retry", &self.inner.retry);
        #[cfg(feature = "dpop")]
        f.field("dpop", &self.inner.dpop);
        f.finish()
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
    retry: RetryPolicy,
    client: Option<HttpClient>,
    #[cfg(feature = "dpop")]
    dpop: Option<crate::dpop::DPoPKey>,
}

impl TokenEndpointBuilder {
    /// How the client authenticates. Required: [`build`](Self::build)
    /// refuses an endpoint without it, so that a forgotten secret is a
    /// configuration error here rather than `invalid_client` from the server.
    ///
    /// A confidential client gives its credentials
    /// ([`ClientAuth::basic`], [`ClientAuth::post`], the JWT methods); a
    /// public client (a CLI, a native app) declares itself with
    /// [`ClientAuth::none`] and its client id; a grant whose assertion
    /// identifies the client (the JWT-bearer grant) may use
    /// [`ClientAuth::anonymous`].
    ///
    /// ```
    /// use tower_alf::{ClientAuth, TokenEndpoint};
    ///
    /// let error = TokenEndpoint::builder("https://idp.example/token").build().unwrap_err();
    /// assert!(error.is_config());
    /// let public = TokenEndpoint::builder("https://idp.example/token")
    ///     .client_auth(ClientAuth::none("my-cli"))
    ///     .build()?;
    /// # Ok::<_, tower_alf::Error>(())
    /// ```
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Bounds one attempt, from sending the request to reading the whole
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

    /// How failed requests are retried. Defaults to
    /// [`RetryPolicy::default`]; [`RetryPolicy::none`] turns retries off.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
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

    /// Binds tokens to `key` with DPoP (RFC 9449): every token request
    /// carries a proof, `token_type: DPoP` answers are accepted, and
    /// [`BearerAuth`](crate::BearerAuth) sends those tokens with a proof per
    /// request. Defaults to none: Bearer tokens only. See [`crate::dpop`].
    ///
    /// ```
    /// use tower_alf::{dpop::DPoPKey, ClientAuth, TokenEndpoint};
    ///
    /// let endpoint = TokenEndpoint::builder("https://idp.example/token")
    ///     .client_auth(ClientAuth::none("my-cli"))
    ///     .dpop(DPoPKey::generate()?)
    ///     .build()?;
    /// assert!(endpoint.dpop_key().is_some());
    /// # Ok::<_, tower_alf::Error>(())
    /// ```
    #[cfg(feature = "dpop")]
    pub fn dpop(mut self, key: crate::dpop::DPoPKey) -> Self {
        self.dpop = Some(key);
        self
    }

    /// Checks the configuration and builds the endpoint.
    ///
    /// The token URL must be an absolute `https` URL (plain `http` only to
    /// a loopback host, or with [`allow_insecure_http`](Self::allow_insecure_http)),
    /// with a port from 1 to 65535 if it has one, no `user:password@` and
    /// no fragment; anything else is an [`Error::is_config`].
    pub fn build(self) -> Result<TokenEndpoint, Error> {
        let plain_http = if self.allow_insecure_http {
            PlainHttp::Allowed
        } else {
            PlainHttp::LoopbackOnly
        };
        let url = checked_url(&self.url, "token URL", plain_http)?;
        let auth = self.auth.ok_or_else(|| {
            Error::config(
                "no client authentication: call client_auth(..) with the client's credentials \
                 (ClientAuth::basic, ClientAuth::post, ..), ClientAuth::none(client_id) for a \
                 public client, or ClientAuth::anonymous() when the grant's assertion \
                 identifies the client",
            )
        })?;
        let client = match self.client {
            Some(client) => client,
            None => default_client()?,
        };
        Ok(TokenEndpoint {
            inner: Arc::new(EndpointInner {
                url,
                url_text: self.url.as_str().into(),
                auth,
                timeout: self.timeout,
                max_response_size: self.max_response_size,
                retry: self.retry,
                client,
                #[cfg(feature = "dpop")]
                dpop: self.dpop,
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
