//! The token endpoint: the request every grant sends, and how its answer is read.

pub(crate) mod client_auth;
pub mod discovery;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod retry;

use std::{fmt, future::Future, sync::Arc, time::Duration};

use http::Uri;

use self::{
    client_auth::ClientAuth,
    request::{AttemptParams, EndpointInner, Proof},
    retry::RetryPolicy,
};
use crate::{
    error::Error,
    http::{checked_url, default_client, HttpClient, PlainHttp},
    token::Token,
};

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
            proof: None,
        }
    }

    /// The endpoint's URL.
    pub fn url(&self) -> &Uri {
        &self.inner.url
    }

    /// The URL as configured, verbatim: an assertion's default `aud`.
    #[cfg(feature = "jwt")]
    pub(crate) fn url_text(&self) -> &str {
        &self.inner.url_text
    }

    /// How the client authenticates.
    pub fn client_auth(&self) -> &ClientAuth {
        &self.inner.auth
    }

    /// The DPoP key token requests prove possession of, if any.
    #[cfg(feature = "dpop")]
    pub fn dpop_key(&self) -> Option<&crate::dpop::DPoPKey> {
        self.inner.proof.as_ref()?.as_any().downcast_ref()
    }

    /// The cache-key parameter naming the endpoint's sender constraint
    /// (`dpop_jkt` and the key's thumbprint), if it has one.
    pub(crate) fn proof_key_param(&self) -> Option<(&'static str, String)> {
        if let Some(proof) = &self.inner.proof {
            return Some(proof.key_param());
        }
        // A token bound to a client certificate is usable only over a
        // connection with it (RFC 8705 §3).
        #[cfg(feature = "rustls")]
        if let Some(certificate) = self.inner.client.client_certificate() {
            return Some(("x5t#S256", certificate.thumbprint().to_owned()));
        }
        None
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
    ) -> impl Future<Output = Result<Token, Error>> + Send + 'static {
        request::send(self.inner.clone(), form, None)
    }

    /// [`request`](Self::request) with parameters a grant adds to every
    /// attempt, built anew for each (a JWT-bearer assertion).
    #[cfg_attr(not(feature = "jwt"), allow(dead_code))]
    pub(crate) fn request_with(
        &self,
        form: Vec<(String, String)>,
        per_attempt: Arc<dyn AttemptParams>,
    ) -> impl Future<Output = Result<Token, Error>> + Send + 'static {
        request::send(self.inner.clone(), form, Some(per_attempt))
    }
}

impl fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("TokenEndpoint");
        f.field("url", &self.inner.url)
            .field("auth", &self.inner.auth)
            .field("timeout", &self.inner.timeout)
            .field("max_response_size", &self.inner.max_response_size)
            .field("retry", &self.inner.retry)
            .field("dpop", &self.inner.proof);
        f.finish()
    }
}

fn no_client() -> Error {
    Error::config("no HTTP client: enable the `rustls` feature or call `http_client`")
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
    proof: Option<Arc<dyn Proof>>,
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
        self.proof = Some(Arc::new(key));
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
        #[cfg(feature = "rustls")]
        let client = match (auth.client_certificate(), self.client) {
            (Some(certificate), None) => crate::http::default_client_with(certificate.clone())?,
            (Some(certificate), Some(client)) => {
                if client.client_certificate() != Some(certificate) {
                    return Err(Error::config(format!(
                        "{} needs an HTTP client that presents its certificate: build it with \
                         HttpClient::builder().client_certificate(..), declare it with \
                         HttpClient::presenting(..), or leave the default client",
                        auth.method_name()
                    )));
                }
                client
            }
            (None, client) => client.or_else(default_client).ok_or_else(no_client)?,
        };
        #[cfg(not(feature = "rustls"))]
        let client = self.client.or_else(default_client).ok_or_else(no_client)?;
        Ok(TokenEndpoint {
            inner: Arc::new(EndpointInner {
                url,
                url_text: self.url.as_str().into(),
                auth,
                timeout: self.timeout,
                max_response_size: self.max_response_size,
                retry: self.retry,
                client,
                proof: self.proof,
            }),
        })
    }
}
