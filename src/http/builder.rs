//! [`HttpClientBuilder`]: the default client (hyper-util's pooled client
//! over hyper-rustls) with its trust, client certificate and proxy.

use std::{fmt, sync::Arc};

use hyper_util::client::legacy::connect::HttpConnector;
use tower::ServiceExt;

use super::{
    proxy::{EnvLookup, Proxy, ProxyConnector, Rules},
    tls::{provider, ClientCertificate},
    HttpClient,
};
use crate::error::Error;

/// Configures the default [`HttpClient`]: hyper-util's pooled client over
/// hyper-rustls, HTTP/1.1 and HTTP/2; see [`HttpClient::builder`].
///
/// - **Trust**: the webpki roots (Mozilla's root program) unless
///   [`root_certificates`](Self::root_certificates) or
///   [`tls_config`](Self::tls_config) say otherwise.
/// - **Proxy**: the `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` variables (and
///   their lower-case forms) unless [`proxy`](Self::proxy) or
///   [`no_proxy`](Self::no_proxy) say otherwise. An `https` destination is
///   reached by a `CONNECT` tunnel, so TLS (and a client certificate) stays
///   end to end; plain `http` by a request in absolute form.
/// - **Client certificate**: none unless
///   [`client_certificate`](Self::client_certificate) gives one (mutual
///   TLS, RFC 8705).
///
/// ```
/// use tower_alf::{HttpClient, Proxy};
///
/// let client = HttpClient::builder()
///     .proxy(Proxy::new("http://proxy.corp.example:3128")?)
///     .no_proxy_hosts("localhost, 127.0.0.1, .corp.example")
///     .build()?;
/// # Ok::<_, tower_alf::Error>(())
/// ```
#[must_use]
pub struct HttpClientBuilder {
    roots: Option<rustls::RootCertStore>,
    #[cfg(feature = "platform-verifier")]
    platform_verifier: bool,
    tls_config: Option<rustls::ClientConfig>,
    certificate: Option<ClientCertificate>,
    proxy: ProxySetting,
}

enum ProxySetting {
    Env(EnvLookup),
    Explicit { proxy: Proxy, no_proxy: String },
    Off,
}

impl HttpClientBuilder {
    pub(super) fn new() -> Self {
        Self {
            roots: None,
            #[cfg(feature = "platform-verifier")]
            platform_verifier: false,
            tls_config: None,
            certificate: None,
            proxy: ProxySetting::Env(Arc::new(|name| std::env::var(name).ok())),
        }
    }

    /// Trusts `roots` instead of the webpki roots: a company CA, a test CA.
    /// Certificates are still fully verified: chain, validity, host name.
    pub fn root_certificates(mut self, roots: rustls::RootCertStore) -> Self {
        self.roots = Some(roots);
        self
    }

    /// Verifies servers as the operating system does (feature
    /// `platform-verifier`, rustls-platform-verifier): on macOS, iOS and
    /// Windows the system verifier, with its trust settings, enterprise
    /// policies and revocation checks; on Android the system's; on Linux
    /// and other Unix systems the certificates of the system trust store
    /// (`/etc/ssl/certs` and the like, or `SSL_CERT_FILE`/`SSL_CERT_DIR`)
    /// under webpki. For a company CA that IT installs on every machine.
    /// It replaces [`root_certificates`](Self::root_certificates).
    ///
    /// The webpki roots stay the default: the same answer on every
    /// machine and in every container (a minimal image has no system
    /// store), with nothing read from the file system.
    #[cfg(feature = "platform-verifier")]
    pub fn platform_verifier(mut self) -> Self {
        self.platform_verifier = true;
        self
    }

    /// Your own rustls configuration (roots, protocol versions, a crypto
    /// provider, a certificate verifier); its ALPN protocols are set to
    /// `h2` and `http/1.1`. It replaces
    /// [`root_certificates`](Self::root_certificates);
    /// [`client_certificate`](Self::client_certificate) still applies.
    pub fn tls_config(mut self, config: rustls::ClientConfig) -> Self {
        self.tls_config = Some(config);
        self
    }

    /// Presents `certificate` on every TLS connection (mutual TLS).
    /// [`ClientAuth::tls_client_auth`](crate::ClientAuth::tls_client_auth)
    /// sets it on the token endpoint's default client itself; set it here
    /// for a client you build, and give the endpoint that client.
    pub fn client_certificate(mut self, certificate: ClientCertificate) -> Self {
        self.certificate = Some(certificate);
        self
    }

    /// Sends every request through `proxy`, whatever the environment says,
    /// except to the hosts [`no_proxy_hosts`](Self::no_proxy_hosts) names.
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        let no_proxy = match self.proxy {
            ProxySetting::Explicit { no_proxy, .. } => no_proxy,
            _ => String::new(),
        };
        self.proxy = ProxySetting::Explicit { proxy, no_proxy };
        self
    }

    /// The hosts an explicit [`proxy`](Self::proxy) is not used for, in
    /// `NO_PROXY`'s syntax (curl's rules): a comma-separated list of domain
    /// names (each matching itself and its subdomains; a leading `.` is
    /// the same), IP addresses, CIDR ranges (`10.0.0.0/8`), or `*` for all.
    /// Call it after [`proxy`](Self::proxy); without an explicit proxy it
    /// does nothing (the environment's `NO_PROXY` applies to the
    /// environment's proxy).
    pub fn no_proxy_hosts(mut self, hosts: &str) -> Self {
        if let ProxySetting::Explicit { no_proxy, .. } = &mut self.proxy {
            *no_proxy = hosts.to_owned();
        }
        self
    }

    /// Connects directly, ignoring the proxy variables.
    pub fn no_proxy(mut self) -> Self {
        self.proxy = ProxySetting::Off;
        self
    }

    /// Reads the proxy variables through `lookup` instead of the process
    /// environment (it is asked for `HTTPS_PROXY`, `https_proxy`,
    /// `HTTP_PROXY`, `http_proxy`, `NO_PROXY`, `no_proxy` and
    /// `REQUEST_METHOD`): settings kept elsewhere, or a test that must not
    /// touch the process's environment.
    ///
    /// ```
    /// use tower_alf::HttpClient;
    ///
    /// let client = HttpClient::builder()
    ///     .proxy_env(|name| (name == "HTTPS_PROXY").then(|| "http://127.0.0.1:3128".to_owned()))
    ///     .build()?;
    /// // A value that is not an http:// proxy URL is refused, by name.
    /// let e = HttpClient::builder()
    ///     .proxy_env(|name| (name == "HTTPS_PROXY").then(|| "socks5://proxy:1080".to_owned()))
    ///     .build()
    ///     .unwrap_err();
    /// assert!(e.is_config() && e.to_string().contains("HTTPS_PROXY"));
    /// # Ok::<_, tower_alf::Error>(())
    /// ```
    pub fn proxy_env<F>(mut self, lookup: F) -> Self
    where
        F: Fn(&str) -> Option<String> + Send + Sync + 'static,
    {
        self.proxy = ProxySetting::Env(Arc::new(lookup));
        self
    }

    /// Builds the client. The proxy variables are read here, once.
    ///
    /// Fails with an [`Error::is_config`] when a proxy variable is not an
    /// `http://` proxy URL (naming the variable, never its credentials),
    /// or when the crypto provider supports no TLS version.
    pub fn build(mut self) -> Result<HttpClient, Error> {
        let proxy = std::mem::replace(&mut self.proxy, ProxySetting::Off);
        let rules = match proxy {
            ProxySetting::Env(lookup) => Rules::from_env(&lookup)?,
            ProxySetting::Explicit { proxy, no_proxy } => Some(Rules::explicit(proxy, &no_proxy)),
            ProxySetting::Off => None,
        };
        let config = match self.tls_config.take() {
            Some(config) => config,
            None => {
                let builder = rustls::ClientConfig::builder_with_provider(provider()?)
                    .with_safe_default_protocol_versions()
                    .map_err(|_| Error::config("the crypto provider supports no TLS version"))?;
                #[cfg(feature = "platform-verifier")]
                if self.platform_verifier {
                    let provider = Arc::clone(builder.crypto_provider());
                    let verifier =
                        rustls_platform_verifier::Verifier::new(provider).map_err(|e| {
                            Error::config(format!("cannot use the platform's verifier: {e}"))
                        })?;
                    return Ok(self.finish(
                        builder
                            .dangerous()
                            .with_custom_certificate_verifier(Arc::new(verifier))
                            .with_no_client_auth(),
                        rules,
                    ));
                }
                let roots = self.roots.take().unwrap_or_else(|| rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                });
                builder.with_root_certificates(roots).with_no_client_auth()
            }
        };
        Ok(self.finish(config, rules))
    }

    /// The client over `config`, presenting the certificate if any,
    /// through the proxies `rules` name.
    fn finish(self, mut config: rustls::ClientConfig, rules: Option<Rules>) -> HttpClient {
        if let Some(certificate) = &self.certificate {
            certificate.present_in(&mut config);
        }
        let mut http = HttpConnector::new();
        // NOTE: hyper-rustls hands https destinations to this connector.
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(ProxyConnector::new(http, rules.clone()));
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(connector);
        let mut built = match rules {
            Some(rules) => HttpClient::new(client.map_request(
                move |mut request: http::Request<http_body_util::Full<bytes::Bytes>>| {
                    rules.authorize(&mut request);
                    request
                },
            )),
            None => HttpClient::new(client),
        };
        built.certificate = self.certificate;
        built
    }
}

impl fmt::Debug for HttpClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proxy: &dyn fmt::Debug = match &self.proxy {
            ProxySetting::Env(_) => &"from the environment",
            ProxySetting::Explicit { proxy, .. } => proxy,
            ProxySetting::Off => &"none",
        };
        f.debug_struct("HttpClientBuilder")
            .field("custom_roots", &self.roots.is_some())
            .field("custom_tls_config", &self.tls_config.is_some())
            .field("certificate", &self.certificate)
            .field("proxy", proxy)
            .finish()
    }
}
