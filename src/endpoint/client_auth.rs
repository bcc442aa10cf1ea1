//! How the client authenticates to the token endpoint (RFC 6749 §2.3).

#[cfg(feature = "jwt")]
use std::time::Duration;
use std::{
    fmt,
    io::Read as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use http::{header::AUTHORIZATION, HeaderMap, HeaderValue};

#[cfg(feature = "jwt")]
use crate::jwt::PrivateKey;
use crate::{
    error::Error,
    redact::SentSecrets,
    secret::ClientSecret,
    source::TokenSource,
    token::{Token, TokenId},
};

/// The `client_assertion_type` of RFC 7523 §2.2.
pub(crate) const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Client authentication for token requests.
///
/// `Debug` shows the method and client id, never the secret or key. The
/// credentials are built again for every request sent, so a JWT assertion
/// (`private_key_jwt`, `client_secret_jwt`) is fresh for each attempt, with
/// its own `jti`, and never reused across retries.
///
/// ```
/// use tower_alf::ClientAuth;
///
/// let auth = ClientAuth::basic("my-client", "s3cr3t");
/// assert_eq!(auth.client_id(), "my-client");
/// assert_eq!(auth.method_name(), "client_secret_basic");
/// assert!(!format!("{auth:?}").contains("s3cr3t"));
/// ```
#[derive(Clone, Debug)]
pub struct ClientAuth {
    client_id: String,
    method: Method,
    #[cfg(feature = "jwt")]
    assertion_audience: Option<String>,
    #[cfg(feature = "jwt")]
    assertion_lifetime: Duration,
}

#[derive(Clone, Debug)]
enum Method {
    Basic(ClientSecret),
    BasicRaw(ClientSecret),
    Post(ClientSecret),
    None,
    #[cfg(feature = "jwt")]
    SecretJwt(ClientSecret, crate::jwt::Hmac),
    #[cfg(feature = "jwt")]
    PrivateKeyJwt(PrivateKey),
    /// A client assertion made elsewhere (RFC 7521 §4.2).
    Assertion(AssertionSource),
    /// Mutual TLS (RFC 8705 §2): the certificate on the connection.
    #[cfg(feature = "rustls")]
    Tls(TlsClientAuth),
}

/// The certificate of `tls_client_auth` or `self_signed_tls_client_auth`.
#[cfg(feature = "rustls")]
#[derive(Clone, Debug)]
struct TlsClientAuth {
    certificate: crate::http::ClientCertificate,
    /// RFC 8705 §2.2 (the certificate registered with the client), rather
    /// than §2.1 (a certificate the server's CAs issued).
    self_signed: bool,
}

/// Where an assertion made elsewhere comes from, asked for each attempt.
#[derive(Clone)]
enum AssertionSource {
    Callback(Arc<dyn Fn() -> Result<String, Error> + Send + Sync>),
    File(PathBuf),
    /// Another source's current token, taken before each attempt
    /// ([`ClientAuth::for_attempt`]).
    Source(TokenSource),
    /// The token [`ClientAuth::for_attempt`] took from a `Source`, for one
    /// attempt.
    Taken(Arc<Token>),
}

impl fmt::Debug for AssertionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Callback(_) => f.write_str("Callback"),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Source(source) => f.debug_tuple("Source").field(source).finish(),
            Self::Taken(_) => f.write_str("Taken"),
        }
    }
}

impl AssertionSource {
    fn get(&self) -> Result<String, Error> {
        let assertion = match self {
            Self::Callback(callback) => callback()?,
            Self::File(path) => read_credential_file(path, "client assertion file")?,
            Self::Taken(token) => token.access_token().secret().to_owned(),
            // NOTE: `for_attempt` replaces a source with its token before
            // every attempt; reaching here is a caller that skipped it.
            Self::Source(_) => {
                return Err(Error::config(
                    "a client assertion from a token source was used without taking its token",
                ))
            }
        };
        if assertion.is_empty() {
            return Err(Error::retryable("the client assertion is empty"));
        }
        Ok(assertion)
    }
}

/// The most a credential file (a client assertion, a token) may hold: 64 KiB.
pub(crate) const MAX_CREDENTIAL_FILE: u64 = 64 * 1024;

/// Reads a credential file anew (a Kubernetes projected token, rotated on
/// disk): a regular file (symbolic links followed) of at most
/// [`MAX_CREDENTIAL_FILE`] bytes, UTF-8, surrounding whitespace trimmed.
/// A file that is missing, unreadable, too large, not a regular file or not
/// UTF-8 is [permanent](Error::is_permanent) until someone fixes it; an
/// empty one (a writer caught mid-write) and other I/O failures are
/// retryable. `what` names the file in the error, which never quotes it.
pub(crate) fn read_credential_file(path: &Path, what: &str) -> Result<String, Error> {
    let shown = path.display();
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
            Error::permanent(format!("cannot read the {what} {shown}: {e}"))
        }
        _ => Error::retryable(format!("cannot read the {what} {shown}: {e}")),
    };
    let regular = |meta: &std::fs::Metadata| {
        if !meta.is_file() {
            return Err(Error::permanent(format!(
                "the {what} {shown} is not a regular file"
            )));
        }
        if meta.len() > MAX_CREDENTIAL_FILE {
            return Err(Error::permanent(format!(
                "the {what} {shown} is larger than {} KiB",
                MAX_CREDENTIAL_FILE / 1024
            )));
        }
        Ok(())
    };
    // Checked before opening too: opening a FIFO would block.
    regular(&std::fs::metadata(path).map_err(io)?)?;
    let file = std::fs::File::open(path).map_err(io)?;
    regular(&file.metadata().map_err(io)?)?;
    let mut bytes = Vec::new();
    file.take(MAX_CREDENTIAL_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_CREDENTIAL_FILE {
        return Err(Error::permanent(format!(
            "the {what} {shown} is larger than {} KiB",
            MAX_CREDENTIAL_FILE / 1024
        )));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::permanent(format!("the {what} {shown} is not UTF-8 text")))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::retryable(format!("the {what} {shown} is empty")));
    }
    Ok(text.to_owned())
}

impl ClientAuth {
    /// Lifetime of a client assertion: 60 s. The assertion is used at once;
    /// a short life limits replay (RFC 7523 §3 asks for a limited lifetime).
    #[cfg(feature = "jwt")]
    pub const DEFAULT_ASSERTION_LIFETIME: Duration = Duration::from_secs(60);

    fn with_method(client_id: impl Into<String>, method: Method) -> Self {
        Self {
            client_id: client_id.into(),
            method,
            #[cfg(feature = "jwt")]
            assertion_audience: None,
            #[cfg(feature = "jwt")]
            assertion_lifetime: Self::DEFAULT_ASSERTION_LIFETIME,
        }
    }

    /// `client_secret_basic`: HTTP Basic authentication, the id and secret
    /// each form-urlencoded before the Base64 step, as RFC 6749 §2.3.1 says.
    /// The method every server must support.
    pub fn basic(client_id: impl Into<String>, secret: impl Into<ClientSecret>) -> Self {
        Self::with_method(client_id, Method::Basic(secret.into()))
    }

    /// `client_secret_basic` without the form-encoding step: `id:secret`
    /// Base64-encoded as they are, for servers that do not decode the
    /// RFC 6749 §2.3.1 encoding (it matters only when the id or secret has
    /// characters other than letters, digits and `*-._`).
    pub fn basic_raw(client_id: impl Into<String>, secret: impl Into<ClientSecret>) -> Self {
        Self::with_method(client_id, Method::BasicRaw(secret.into()))
    }

    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    pub fn post(client_id: impl Into<String>, secret: impl Into<ClientSecret>) -> Self {
        Self::with_method(client_id, Method::Post(secret.into()))
    }

    /// `none`: a public client (a CLI, a native app), identified by
    /// `client_id` in the body only, with no secret (RFC 6749 §2.1). This is
    /// how a public client is declared:
    /// [`TokenEndpointBuilder::build`](crate::TokenEndpointBuilder::build)
    /// refuses an endpoint with no client authentication at all.
    pub fn none(client_id: impl Into<String>) -> Self {
        Self::with_method(client_id, Method::None)
    }

    /// No client authentication and no `client_id`: for grants whose
    /// assertion identifies the client, such as the JWT-bearer grant
    /// (`grant::JwtBearer`, feature `jwt`; RFC 7523 §2.1: client
    /// authentication is optional there) and service accounts.
    ///
    /// ```
    /// use tower_alf::ClientAuth;
    ///
    /// let auth = ClientAuth::anonymous();
    /// assert_eq!(auth.client_id(), "");
    /// assert_eq!(auth.method_name(), "none");
    /// ```
    pub fn anonymous() -> Self {
        Self::with_method(String::new(), Method::None)
    }

    /// `client_secret_jwt` (RFC 7523 §2.2, OpenID Connect Core §9): a JWT
    /// signed with HS256 and the client secret, sent as `client_assertion`.
    ///
    /// ```
    /// use tower_alf::ClientAuth;
    ///
    /// let auth = ClientAuth::client_secret_jwt("my-client", "a-long-shared-secret");
    /// assert_eq!(auth.method_name(), "client_secret_jwt");
    /// ```
    #[cfg(feature = "jwt")]
    pub fn client_secret_jwt(
        client_id: impl Into<String>,
        secret: impl Into<ClientSecret>,
    ) -> Self {
        Self::with_method(
            client_id,
            Method::SecretJwt(secret.into(), crate::jwt::Hmac::HS256),
        )
    }

    /// Signs `client_secret_jwt` assertions with `alg`: `HS256` (the
    /// default), `HS384` or `HS512` (RFC 7518 §3.2). A configuration error
    /// for another algorithm, or when the method is not
    /// `client_secret_jwt`.
    ///
    /// ```
    /// use tower_alf::ClientAuth;
    ///
    /// let auth = ClientAuth::client_secret_jwt("my-client", "a-long-shared-secret")
    ///     .with_hmac_algorithm("HS512")?;
    /// assert_eq!(auth.signing_algorithm(), Some("HS512"));
    /// assert!(ClientAuth::basic("c", "s").with_hmac_algorithm("HS512").is_err());
    /// # Ok::<_, tower_alf::Error>(())
    /// ```
    #[cfg(feature = "jwt")]
    pub fn with_hmac_algorithm(mut self, alg: &str) -> Result<Self, Error> {
        use crate::jwt::Hmac;
        let Method::SecretJwt(_, hmac) = &mut self.method else {
            return Err(Error::config(format!(
                "an HMAC algorithm is for client_secret_jwt, not {}",
                self.method_name()
            )));
        };
        *hmac = [Hmac::HS256, Hmac::HS384, Hmac::HS512]
            .into_iter()
            .find(|h| h.as_str() == alg)
            .ok_or_else(|| {
                Error::config(format!(
                    "unsupported client_secret_jwt algorithm {alg:?}: expected HS256, HS384 \
                     or HS512"
                ))
            })?;
        Ok(self)
    }

    /// `private_key_jwt` (RFC 7523 §2.2, OpenID Connect Core §9): a JWT
    /// signed with the client's private key, sent as `client_assertion`.
    /// The key's algorithm and `kid` are used.
    ///
    /// ```
    /// use tower_alf::{jwt::PrivateKey, ClientAuth};
    ///
    /// # fn main() -> Result<(), tower_alf::Error> {
    /// # let pem = include_str!("../../tests/fixtures/p256_sec1.pem");
    /// let key = PrivateKey::from_pem(pem)?.with_key_id("key-1");
    /// let auth = ClientAuth::private_key_jwt("my-client", key)
    ///     .assertion_audience("https://idp.example/");
    /// assert_eq!(auth.method_name(), "private_key_jwt");
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "jwt")]
    pub fn private_key_jwt(client_id: impl Into<String>, key: PrivateKey) -> Self {
        Self::with_method(client_id, Method::PrivateKeyJwt(key))
    }

    /// A client assertion made elsewhere (RFC 7521 §4.2, RFC 7523 §2.2), as
    /// `client_assertion` with the JWT-bearer `client_assertion_type`:
    /// `assertion` is called for every attempt, so it can hand out a new
    /// one each time (from a SPIFFE agent, a cloud SDK, a signer you run).
    /// `client_id` is sent too, unless empty. It is called on the task that
    /// sends the request: keep it quick (read a cache, not the network).
    /// Its error fails the attempt as it is: make it with
    /// [`Error::retryable`] or [`Error::permanent`].
    ///
    /// The server sees `private_key_jwt`, which is what
    /// [`method_name`](Self::method_name) says. The assertion is a secret:
    /// it is removed by value from any error the answer makes.
    ///
    /// ```
    /// use tower_alf::ClientAuth;
    ///
    /// let auth = ClientAuth::client_assertion("my-client", || Ok("eyJ…signed-elsewhere".into()));
    /// assert_eq!(auth.method_name(), "private_key_jwt");
    /// ```
    pub fn client_assertion<F>(client_id: impl Into<String>, assertion: F) -> Self
    where
        F: Fn() -> Result<String, Error> + Send + Sync + 'static,
    {
        let source = AssertionSource::Callback(Arc::new(assertion));
        Self::with_method(client_id, Method::Assertion(source))
    }

    /// A client assertion read from `path` for every attempt: workload
    /// identity, where the platform writes a short-lived JWT to a file and
    /// rotates it (a Kubernetes projected service-account token, as Azure
    /// workload identity, GKE and EKS federation use; a SPIFFE JWT-SVID on
    /// disk). A rotated file is picked up at the next attempt, without a
    /// restart. Otherwise as [`client_assertion`](Self::client_assertion).
    ///
    /// The file must be a regular file (symbolic links, which Kubernetes
    /// uses for atomic rotation, are followed) of at most 64 KiB; its
    /// surrounding whitespace is trimmed. Otherwise the attempt fails with
    /// a [permanent](Error::is_permanent) error naming the file, never its
    /// content; an empty file (caught mid-write) is retryable.
    ///
    /// ```
    /// use tower_alf::ClientAuth;
    ///
    /// let auth = ClientAuth::client_assertion_file(
    ///     "00000000-aaaa-bbbb-cccc-000000000000",
    ///     "/var/run/secrets/azure/tokens/azure-identity-token",
    /// );
    /// assert_eq!(auth.method_name(), "private_key_jwt");
    /// ```
    pub fn client_assertion_file(client_id: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self::with_method(
            client_id,
            Method::Assertion(AssertionSource::File(path.into())),
        )
    }

    /// A client assertion taken from another [`TokenSource`] (RFC 7521
    /// §4.2, RFC 7523 §2.2): each attempt sends that source's current access
    /// token as `client_assertion`, fetched or refreshed by it as needed, so
    /// its cache, single flight and background refresh serve the assertion
    /// too. This is how federated workload identity is chained: an Azure
    /// workload identity or GKE token, a SPIFFE JWT-SVID from an agent, an
    /// in-house signer behind [`grant::from_fn`](crate::grant::from_fn).
    /// Otherwise as [`client_assertion`](Self::client_assertion).
    ///
    /// When the token endpoint answers `invalid_client`, the assertion it
    /// was sent is invalidated in `source` (compare and invalidate, so
    /// concurrent refusals of one assertion cost one fetch) and the request
    /// is sent again at once with the fresh one, once per token request,
    /// not counted by the [`RetryPolicy`](crate::RetryPolicy). A second
    /// `invalid_client`, or a source that cannot replace the assertion (its
    /// throttle, its error), ends the request with that answer. A failure
    /// of `source` itself ends the attempt with `source`'s error.
    ///
    /// ```
    /// use tower_alf::{grant::TokenFile, ClientAuth, TokenSource};
    ///
    /// // The platform's JWT, re-read as the file rotates, is the assertion.
    /// let federated = TokenSource::new(TokenFile::new("/var/run/secrets/tokens/identity"));
    /// let auth = ClientAuth::client_assertion_source("my-client", federated);
    /// assert_eq!(auth.method_name(), "private_key_jwt");
    /// ```
    pub fn client_assertion_source(client_id: impl Into<String>, source: TokenSource) -> Self {
        Self::with_method(
            client_id,
            Method::Assertion(AssertionSource::Source(source)),
        )
    }

    /// The authentication of one attempt: `None` to use `self` as it is;
    /// for an assertion from a source, a copy holding that source's current
    /// token (or `taken`, a replacement already in hand), and the token, to
    /// invalidate if the endpoint refuses it ([`Self::refused`]).
    pub(crate) async fn for_attempt(
        &self,
        taken: Option<Arc<Token>>,
    ) -> Result<Option<(Self, Arc<Token>)>, Error> {
        let Method::Assertion(AssertionSource::Source(source)) = &self.method else {
            return Ok(None);
        };
        let token = match taken {
            Some(token) => token,
            None => source.token().await?,
        };
        let mut auth = self.clone();
        auth.method = Method::Assertion(AssertionSource::Taken(Arc::clone(&token)));
        Ok(Some((auth, token)))
    }

    /// After `error` answered an attempt that sent `sent` (from
    /// [`Self::for_attempt`]): when it is `invalid_client` and the
    /// assertion came from a source, invalidates it there and returns the
    /// replacement (never the refused token itself).
    pub(crate) async fn refused(&self, sent: &Token, error: &Error) -> Option<Arc<Token>> {
        let Method::Assertion(AssertionSource::Source(source)) = &self.method else {
            return None;
        };
        let invalid_client = error
            .oauth_error()
            .is_some_and(|e| *e.code() == crate::error::ErrorCode::InvalidClient);
        if !invalid_client {
            return None;
        }
        let refused: TokenId = sent.id();
        match source.invalidate(refused).await {
            Ok(fresh) if fresh.id() != refused => Some(fresh),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(error = %e, "the client assertion source has no replacement");
                None
            }
        }
    }

    /// `tls_client_auth` (RFC 8705 §2.1): mutual TLS with a certificate
    /// from a CA the server trusts, which it matches against the client's
    /// registered subject; `client_id` goes in the form. `cert_chain_pem`
    /// holds the client's certificate first, then any intermediates;
    /// `key_pem` its private key (PKCS#8, SEC1 or PKCS#1).
    ///
    /// The token endpoint's default client presents the certificate on
    /// its connections; give [`http_client`](crate::TokenEndpointBuilder::http_client)
    /// only a client built with the same
    /// [`client_certificate`](crate::HttpClientBuilder::client_certificate)
    /// (or one that declares it, [`HttpClient::presenting`](crate::HttpClient::presenting)):
    /// [`build`](crate::TokenEndpointBuilder::build) refuses another.
    /// Tokens the server binds to the certificate (`cnf.x5t#S256`,
    /// RFC 8705 §3) are checked against it and carry it.
    ///
    /// A PEM that cannot be read, or a key that is not the certificate's,
    /// is an [`Error::is_config`] that never quotes the key.
    ///
    /// ```
    /// use tower_alf::{ClientAuth, TokenEndpoint};
    ///
    /// # fn run(chain_pem: &str, key_pem: &str) -> Result<(), tower_alf::Error> {
    /// let auth = ClientAuth::tls_client_auth("my-client", chain_pem, key_pem)?;
    /// assert_eq!(auth.method_name(), "tls_client_auth");
    /// let endpoint = TokenEndpoint::builder("https://mtls.idp.example/token")
    ///     .client_auth(auth)
    ///     .build()?;
    /// # Ok(()) }
    /// let e = ClientAuth::tls_client_auth("my-client", "no PEM", "here").unwrap_err();
    /// assert!(e.is_config());
    /// ```
    #[cfg(feature = "rustls")]
    pub fn tls_client_auth(
        client_id: impl Into<String>,
        cert_chain_pem: impl AsRef<[u8]>,
        key_pem: impl AsRef<[u8]>,
    ) -> Result<Self, Error> {
        let certificate = crate::http::ClientCertificate::from_pem(cert_chain_pem, key_pem)?;
        Ok(Self::with_certificate(client_id, certificate, false))
    }

    /// `self_signed_tls_client_auth` (RFC 8705 §2.2): mutual TLS with a
    /// certificate the client registered with the server (its `jwks` or
    /// `jwks_uri`), typically self-signed. Otherwise as
    /// [`tls_client_auth`](Self::tls_client_auth).
    #[cfg(feature = "rustls")]
    pub fn self_signed_tls_client_auth(
        client_id: impl Into<String>,
        cert_chain_pem: impl AsRef<[u8]>,
        key_pem: impl AsRef<[u8]>,
    ) -> Result<Self, Error> {
        let certificate = crate::http::ClientCertificate::from_pem(cert_chain_pem, key_pem)?;
        Ok(Self::with_certificate(client_id, certificate, true))
    }

    /// [`tls_client_auth`](Self::tls_client_auth) with a certificate
    /// already read (one [`ClientCertificate`](crate::ClientCertificate)
    /// shared with the client of your resource requests).
    #[cfg(feature = "rustls")]
    pub fn tls_client_auth_with(
        client_id: impl Into<String>,
        certificate: crate::http::ClientCertificate,
    ) -> Self {
        Self::with_certificate(client_id, certificate, false)
    }

    /// [`self_signed_tls_client_auth`](Self::self_signed_tls_client_auth)
    /// with a certificate already read.
    #[cfg(feature = "rustls")]
    pub fn self_signed_tls_client_auth_with(
        client_id: impl Into<String>,
        certificate: crate::http::ClientCertificate,
    ) -> Self {
        Self::with_certificate(client_id, certificate, true)
    }

    #[cfg(feature = "rustls")]
    fn with_certificate(
        client_id: impl Into<String>,
        certificate: crate::http::ClientCertificate,
        self_signed: bool,
    ) -> Self {
        Self::with_method(
            client_id,
            Method::Tls(TlsClientAuth {
                certificate,
                self_signed,
            }),
        )
    }

    /// The client certificate of the mutual-TLS methods; `None` for the
    /// others.
    #[cfg(feature = "rustls")]
    pub fn client_certificate(&self) -> Option<&crate::http::ClientCertificate> {
        match &self.method {
            Method::Tls(tls) => Some(&tls.certificate),
            _ => None,
        }
    }

    /// Sets the `aud` of the client assertion, replacing any set before.
    /// Defaults to the token endpoint URL, as RFC 7523 §3 suggests; some
    /// servers want their issuer identifier instead. Only used by the JWT
    /// methods.
    #[cfg(feature = "jwt")]
    pub fn assertion_audience(mut self, audience: impl Into<String>) -> Self {
        self.assertion_audience = Some(audience.into());
        self
    }

    /// How long a client assertion is valid (`exp` - `iat`). Defaults to
    /// [`ClientAuth::DEFAULT_ASSERTION_LIFETIME`]. Only used by the JWT
    /// methods.
    #[cfg(feature = "jwt")]
    pub fn assertion_lifetime(mut self, lifetime: Duration) -> Self {
        self.assertion_lifetime = lifetime;
        self
    }

    /// The client identifier.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The method's registered name (RFC 7591 §2), e.g. `client_secret_basic`.
    pub fn method_name(&self) -> &'static str {
        match self.method {
            Method::Basic(_) | Method::BasicRaw(_) => "client_secret_basic",
            Method::Post(_) => "client_secret_post",
            Method::None => "none",
            #[cfg(feature = "jwt")]
            Method::SecretJwt(..) => "client_secret_jwt",
            #[cfg(feature = "jwt")]
            Method::PrivateKeyJwt(_) => "private_key_jwt",
            Method::Assertion(_) => "private_key_jwt",
            #[cfg(feature = "rustls")]
            Method::Tls(TlsClientAuth {
                self_signed: false, ..
            }) => "tls_client_auth",
            #[cfg(feature = "rustls")]
            Method::Tls(TlsClientAuth {
                self_signed: true, ..
            }) => "self_signed_tls_client_auth",
        }
    }

    /// The signing algorithm of a JWT method (`HS256` for
    /// `client_secret_jwt` unless another was chosen), `None` for the others.
    pub fn signing_algorithm(&self) -> Option<&'static str> {
        match &self.method {
            #[cfg(feature = "jwt")]
            Method::SecretJwt(_, hmac) => Some(hmac.as_str()),
            #[cfg(feature = "jwt")]
            Method::PrivateKeyJwt(key) => Some(key.algorithm().as_str()),
            _ => None,
        }
    }

    /// The `client_assertion` this authentication sends to `token_url` now:
    /// for `private_key_jwt` and `client_secret_jwt`, a JWT signed here and
    /// then, with its own `jti`, exactly as a token request signs it; for
    /// [`ClientAuth::client_assertion`] and
    /// [`ClientAuth::client_assertion_file`], what the callback or file
    /// gives. `None` for the methods that send no assertion.
    ///
    /// ```
    /// use tower_alf::ClientAuth;
    ///
    /// let auth = ClientAuth::client_secret_jwt("my-client", "a-long-shared-secret");
    /// let jwt = auth.assertion("https://idp.example/token")?.unwrap();
    /// assert_eq!(jwt.split('.').count(), 3);
    /// assert_eq!(ClientAuth::basic("c", "s").assertion("https://idp.example/token")?, None);
    /// # Ok::<_, tower_alf::Error>(())
    /// ```
    pub fn assertion(&self, token_url: &str) -> Result<Option<String>, Error> {
        let mut form = Vec::new();
        self.apply(token_url, &mut HeaderMap::new(), &mut form)?;
        Ok(form
            .into_iter()
            .find(|(name, _)| name == "client_assertion")
            .map(|(_, value)| value))
    }

    /// Adds the credentials to a token request's headers and form. Called
    /// once per attempt: assertions are signed here, fresh each time.
    /// `token_url` is the token endpoint's URL as configured: an
    /// assertion's default `aud`, sent verbatim (RFC 7523 §3 compares it as
    /// a string; `https://idp.example` must not become
    /// `https://idp.example/`).
    #[cfg_attr(not(feature = "jwt"), allow(unused_variables))]
    pub(crate) fn apply(
        &self,
        token_url: &str,
        headers: &mut HeaderMap,
        form: &mut Vec<(String, String)>,
    ) -> Result<(), Error> {
        match &self.method {
            Method::Basic(secret) => {
                let credentials = format!(
                    "{}:{}",
                    form_encode(&self.client_id),
                    form_encode(secret.secret())
                );
                headers.insert(AUTHORIZATION, basic(&credentials)?);
            }
            Method::BasicRaw(secret) => {
                let credentials = format!("{}:{}", self.client_id, secret.secret());
                headers.insert(AUTHORIZATION, basic(&credentials)?);
            }
            Method::Post(secret) => {
                form.push(("client_id".into(), self.client_id.clone()));
                form.push(("client_secret".into(), secret.secret().to_owned()));
            }
            Method::None if self.client_id.is_empty() => {}
            Method::None => form.push(("client_id".into(), self.client_id.clone())),
            // RFC 8705 §2: the certificate is on the connection; the
            // client_id parameter is required.
            #[cfg(feature = "rustls")]
            Method::Tls(_) => form.push(("client_id".into(), self.client_id.clone())),
            #[cfg(feature = "jwt")]
            Method::SecretJwt(secret, hmac) => {
                let claims = self.client_claims(token_url)?;
                let jwt = crate::jwt::sign_hmac(*hmac, secret.secret().as_bytes(), &claims)?;
                self.push_assertion(form, jwt);
            }
            #[cfg(feature = "jwt")]
            Method::PrivateKeyJwt(key) => {
                let jwt = key.sign(&self.client_claims(token_url)?)?;
                self.push_assertion(form, jwt);
            }
            Method::Assertion(source) => {
                let assertion = source.get()?;
                self.push_assertion(form, assertion);
            }
        }
        Ok(())
    }

    /// Registers the secrets this authentication sends (or signs with), in
    /// the forms it sends them, so that an error built from the answer can
    /// scrub them by value.
    pub(crate) fn sent_secrets(&self, sent: &mut SentSecrets) {
        match &self.method {
            Method::Basic(secret) => {
                sent.add(secret.secret());
                sent.add(format!(
                    "{}:{}",
                    form_encode(&self.client_id),
                    form_encode(secret.secret())
                ));
            }
            Method::BasicRaw(secret) => {
                sent.add(secret.secret());
                sent.add(format!("{}:{}", self.client_id, secret.secret()));
            }
            Method::Post(secret) => sent.add(secret.secret()),
            #[cfg(feature = "jwt")]
            Method::SecretJwt(secret, _) => sent.add(secret.secret()),
            Method::None => {}
            #[cfg(feature = "jwt")]
            Method::PrivateKeyJwt(_) => {}
            // Sent in the form, whence the request takes it.
            Method::Assertion(_) => {}
            // The key never leaves the TLS stack.
            #[cfg(feature = "rustls")]
            Method::Tls(_) => {}
        }
    }

    /// RFC 7523 §3: `iss` and `sub` are the client id, `aud` the token
    /// endpoint (or the configured audience).
    #[cfg(feature = "jwt")]
    fn client_claims(
        &self,
        token_url: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, Error> {
        let audience = self.assertion_audience.as_deref().unwrap_or(token_url);
        crate::jwt::assertion_claims(
            &self.client_id,
            &self.client_id,
            audience,
            self.assertion_lifetime,
        )
    }

    /// `client_id` is sent too (unless empty): RFC 7521 §4.2 makes it
    /// optional, and many servers (oidc-provider, Keycloak) look the client
    /// up by it.
    fn push_assertion(&self, form: &mut Vec<(String, String)>, jwt: String) {
        if !self.client_id.is_empty() {
            form.push(("client_id".into(), self.client_id.clone()));
        }
        form.push((
            "client_assertion_type".into(),
            JWT_BEARER_ASSERTION_TYPE.into(),
        ));
        form.push(("client_assertion".into(), jwt));
    }
}

/// A sensitive `Basic` header value for these credentials.
fn basic(credentials: &str) -> Result<HeaderValue, Error> {
    let mut value = HeaderValue::try_from(format!("Basic {}", STANDARD.encode(credentials)))
        .map_err(|_| Error::config("the Basic credentials are not a valid header value"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749
/// Appendix B): space as `+`, everything but `*-._` and alphanumerics escaped.
fn form_encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> &'static str {
        "https://idp.example/token"
    }

    fn basic_header(auth: &ClientAuth) -> String {
        let mut headers = HeaderMap::new();
        auth.apply(url(), &mut headers, &mut Vec::new()).unwrap();
        let value = headers[AUTHORIZATION].to_str().unwrap();
        let encoded = value.strip_prefix("Basic ").unwrap();
        String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap()
    }

    #[test]
    fn basic_form_encodes_before_base64() {
        // The example value of RFC 6749 Appendix B, plus ':' and '+'.
        let auth = ClientAuth::basic("id:1", " %&+£€:");
        assert_eq!(basic_header(&auth), "id%3A1:+%25%26%2B%C2%A3%E2%82%AC%3A");
    }

    #[test]
    fn basic_header_is_sensitive() {
        let mut headers = HeaderMap::new();
        ClientAuth::basic("a", "b")
            .apply(url(), &mut headers, &mut Vec::new())
            .unwrap();
        assert!(headers[AUTHORIZATION].is_sensitive());
    }

    #[test]
    fn post_puts_credentials_in_the_form() {
        let mut headers = HeaderMap::new();
        let mut form = Vec::new();
        ClientAuth::post("a", "b")
            .apply(url(), &mut headers, &mut form)
            .unwrap();
        assert!(headers.is_empty());
        assert_eq!(
            form,
            [
                ("client_id".into(), "a".into()),
                ("client_secret".into(), "b".into())
            ]
        );
    }

    #[test]
    fn basic_raw_does_not_form_encode() {
        let auth = ClientAuth::basic_raw("id:1", " %&+");
        assert_eq!(basic_header(&auth), "id:1: %&+");
    }

    #[test]
    fn none_with_an_empty_client_id_adds_nothing() {
        let mut form = Vec::new();
        ClientAuth::none("")
            .apply(url(), &mut HeaderMap::new(), &mut form)
            .unwrap();
        assert!(form.is_empty());
    }
}
