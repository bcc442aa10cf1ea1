//! The transport: the HTTP client every request goes through, the bounded
//! fetch and its errors, and which URLs the crate sends to, checked once,
//! where a URL enters the crate.

use std::{fmt, net::IpAddr, time::Duration};

use bytes::{Bytes, BytesMut};
use http::{header::ACCEPT, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use tower::{util::BoxCloneSyncService, BoxError, Service, ServiceExt};

use crate::error::Error;

#[cfg(feature = "rustls")]
mod builder;
#[cfg(feature = "rustls")]
mod proxy;
#[cfg(feature = "rustls")]
mod tls;

#[cfg(feature = "rustls")]
pub(crate) use self::tls::bind_to_certificate;
#[cfg(feature = "rustls")]
pub use self::{
    builder::HttpClientBuilder,
    proxy::{Proxy, ProxyError},
    tls::ClientCertificate,
};

/// The HTTP client a [`TokenEndpoint`](crate::endpoint::TokenEndpoint) sends token requests with.
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
    /// The client certificate its TLS connections present, if it says.
    #[cfg(feature = "rustls")]
    certificate: Option<ClientCertificate>,
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
            #[cfg(feature = "rustls")]
            certificate: None,
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
        let (parts, body) = self.fetch_within(request, limit, timeout).await?;
        Ok((parts.status, body))
    }

    /// [`fetch`](Self::fetch) within `timeout`, failing with the crate's
    /// error.
    pub(crate) async fn fetch_within(
        &self,
        request: Request<Full<Bytes>>,
        limit: usize,
        timeout: Duration,
    ) -> Result<(http::response::Parts, Bytes), Error> {
        tokio::time::timeout(timeout, self.fetch(request, limit))
            .await
            .map_err(|_| Error::timeout())?
            .map_err(|e| e.into_error(limit))
    }
}

#[cfg(feature = "rustls")]
impl Default for HttpClient {
    /// hyper-util's pooled client over hyper-rustls with the ring provider
    /// (`aws-lc-rs` with that feature) and the webpki root certificates,
    /// speaking HTTP/1.1 and HTTP/2, through the proxy the
    /// `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` variables name, if any (see
    /// [`HttpClientBuilder`]).
    ///
    /// Certificates are verified against the webpki roots (Mozilla's root
    /// program); a server with a certificate from your own CA is refused.
    /// Use [`HttpClient::with_root_certificates`] or
    /// [`HttpClient::with_tls_config`] to trust it.
    ///
    /// A proxy variable that is not an `http://` proxy URL makes every
    /// request fail with that [`Error::is_config`];
    /// [`HttpClient::builder`]`.build()` reports it at once.
    fn default() -> Self {
        HttpClient::builder()
            .build()
            .unwrap_or_else(HttpClient::failing)
    }
}

#[cfg(feature = "rustls")]
impl HttpClient {
    /// Configures the default client: trust, a client certificate, a
    /// proxy. See [`HttpClientBuilder`].
    pub fn builder() -> HttpClientBuilder {
        HttpClientBuilder::new()
    }

    /// The default stack (hyper-util's pooled client over hyper-rustls,
    /// HTTP/1.1 and HTTP/2, the environment's proxy) trusting `roots`
    /// instead of the webpki roots, with the crate's crypto provider and
    /// rustls' safe default protocol versions.
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
        HttpClient::builder()
            .root_certificates(roots)
            .build()
            .unwrap_or_else(HttpClient::failing)
    }

    /// The default stack (hyper-util's pooled client over hyper-rustls,
    /// HTTP/1.1 and HTTP/2, the environment's proxy) with your own rustls
    /// configuration: roots, a client certificate for mutual TLS, protocol
    /// versions, a crypto provider. Its ALPN protocols are set to `h2` and
    /// `http/1.1`.
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
        HttpClient::builder()
            .tls_config(config)
            .build()
            .unwrap_or_else(HttpClient::failing)
    }

    /// Declares that this client presents `certificate` on its TLS
    /// connections: for a client built elsewhere (a reqwest client with
    /// that `Identity`, your own connector), so that a token endpoint with
    /// [`ClientAuth::tls_client_auth`](crate::ClientAuth::tls_client_auth)
    /// accepts it. The crate cannot check what another stack presents:
    /// declare only what is true.
    pub fn presenting(mut self, certificate: ClientCertificate) -> Self {
        self.certificate = Some(certificate);
        self
    }

    /// The client certificate this client presents, if it was built with
    /// one ([`HttpClientBuilder::client_certificate`]) or declares one
    /// ([`HttpClient::presenting`]).
    pub fn client_certificate(&self) -> Option<&ClientCertificate> {
        self.certificate.as_ref()
    }

    /// A client whose every request fails with `error`.
    fn failing(error: Error) -> Self {
        Self::new(tower::service_fn(move |_: Request<Full<Bytes>>| {
            let error = error.clone();
            async move { Err::<Response<Full<Bytes>>, _>(error) }
        }))
    }
}

#[cfg(feature = "reqwest")]
impl HttpClient {
    /// Token requests over your reqwest client, with its proxy, TLS, pool
    /// and DNS settings, so a reqwest application builds no second HTTP
    /// stack. Feature `reqwest`.
    ///
    /// The endpoint's rules are the same as over the default client: the
    /// answer is read up to the size cap
    /// ([`TokenEndpointBuilder::max_response_size`](crate::TokenEndpointBuilder::max_response_size))
    /// and every attempt is bounded by the endpoint's timeout, whatever the
    /// client's own settings; a timeout the client sets applies too.
    ///
    /// A token endpoint has no reason to redirect, and the default client
    /// follows no redirect: an answer that reqwest reached by following one
    /// is refused (a transport error). reqwest follows up to 10 by default
    /// and, for a 307 or 308, sends the form again to the new address, so
    /// build the client with `redirect(reqwest::redirect::Policy::none())`
    /// to keep the token request from going anywhere else.
    ///
    /// ```
    /// use tower_alf::{ClientAuth, HttpClient, TokenEndpoint};
    ///
    /// # fn run() -> Result<(), tower::BoxError> {
    /// let client = reqwest::Client::builder()
    ///     .redirect(reqwest::redirect::Policy::none())
    ///     .build()?;
    /// let endpoint = TokenEndpoint::builder("https://idp.example/oauth2/token")
    ///     .client_auth(ClientAuth::basic("my-client", "s3cr3t"))
    ///     .http_client(HttpClient::from_reqwest(client))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn from_reqwest(client: reqwest::Client) -> Self {
        Self::new(tower::service_fn(move |request: Request<Full<Bytes>>| {
            let client = client.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = match body.collect().await {
                    Ok(collected) => collected.to_bytes(),
                    Err(never) => match never {},
                };
                let request = reqwest::Request::try_from(Request::from_parts(parts, body))?;
                let asked = request.url().clone();
                let response = client.execute(request).await?;
                if response.url() != &asked {
                    return Err(BoxError::from(
                        "the token endpoint redirected and the reqwest client followed it \
                         (build it with redirect::Policy::none())",
                    ));
                }
                Ok::<_, BoxError>(Response::<reqwest::Body>::from(response))
            }
        }))
    }
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient").finish_non_exhaustive()
    }
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
        // A client that refuses to send (a bad proxy variable) already
        // says why in the crate's words.
        let transport = |e: BoxError| match e.downcast::<Error>() {
            Ok(error) => *error,
            Err(e) => Error::transport(e),
        };
        self.map(limit, transport, |status, reason| {
            Error::invalid_response(status, reason, &[])
        })
    }

    /// The error of another family for it (OAuth 1's): `transport` takes
    /// the transport failure, `too_large` the status and the reason.
    pub(crate) fn map<E>(
        self,
        limit: usize,
        transport: impl FnOnce(BoxError) -> E,
        too_large: impl FnOnce(StatusCode, String) -> E,
    ) -> E {
        match self {
            Self::Transport(e) => transport(e),
            Self::TooLarge(status) => too_large(
                status,
                format!("response body is larger than {limit} bytes"),
            ),
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

/// The default client ([`HttpClient::default`]) with the `rustls` feature;
/// `None` without it, for the caller to say which setter supplies one.
#[cfg(feature = "rustls")]
pub(crate) fn default_client() -> Option<HttpClient> {
    Some(HttpClient::default())
}

/// The default client ([`HttpClient::builder`]) presenting `certificate`,
/// for a token endpoint that authenticates with it; a configuration error
/// (a bad proxy variable) as it is.
#[cfg(feature = "rustls")]
pub(crate) fn default_client_with(certificate: ClientCertificate) -> Result<HttpClient, Error> {
    HttpClient::builder()
        .client_certificate(certificate)
        .build()
}

/// The default client ([`HttpClient::default`]) with the `rustls` feature;
/// `None` without it, for the caller to say which setter supplies one.
#[cfg(not(feature = "rustls"))]
pub(crate) fn default_client() -> Option<HttpClient> {
    None
}

/// Whether a URL may use plain `http`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlainHttp {
    /// Only to a loopback host ([`is_loopback`]).
    LoopbackOnly,
    /// To any host: the user opted out (`allow_insecure_http`).
    Allowed,
    /// The one narrow exception, for a cloud metadata server
    /// (`grant::MetadataServer`): it speaks only plain http, on a link the
    /// request never leaves. To a loopback host, a link-local address
    /// (`169.254.0.0/16`, `fe80::/10`) or `metadata.google.internal`, and
    /// no other host.
    #[cfg(feature = "metadata")]
    MetadataServer,
}

/// Parses and checks a URL the crate will send to (or sign, or compare):
/// the one rule for token endpoint URLs, issuers, every URL a metadata
/// document names, and token-exchange `resource`s. `what` names the URL in
/// the error ("token URL", "issuer", …).
///
/// The URL must be absolute `http` or `https` with a host; `https` unless
/// `plain_http` allows it (always on a loopback host); its port, if it has
/// one, a number from 1 to 65535 (an empty port means the default, as
/// RFC 3986 §3.2.3 says) — `http::Uri` accepts `:99999` and a client would
/// then dial the scheme's default port; no userinfo (RFC 9110 §4.2.4
/// deprecates it: it would be sent to a proxy, logged, or signed into an
/// assertion or proof); no fragment (RFC 6749 §3.2). Every failure is an
/// [`Error::is_config`] naming the URL and the rule.
pub(crate) fn checked_url(url: &str, what: &str, plain_http: PlainHttp) -> Result<Uri, Error> {
    url_problem(url, what, plain_http).map_err(Error::config)
}

/// [`checked_url`] with the broken rule as text, for a caller that reports
/// it as something other than a configuration error (a URL in a server's
/// metadata document).
pub(crate) fn url_problem(url: &str, what: &str, plain_http: PlainHttp) -> Result<Uri, String> {
    let refuse = |rule: &str| format!("the {what} {rule}");
    if url.contains('#') {
        return Err(refuse("must not have a fragment (#…)"));
    }
    let uri: Uri = url
        .parse()
        .map_err(|_| refuse("is not a valid absolute URL"))?;
    let authority = uri
        .authority()
        .ok_or_else(|| refuse("is not an absolute http(s) URL"))?;
    let host = uri.host().unwrap_or_default();
    if host.is_empty() {
        return Err(refuse("has no host"));
    }
    if authority.as_str().contains('@') {
        return Err(refuse(
            "must not carry credentials (user:password@); configure them where they belong",
        ));
    }
    check_port(authority.as_str()).map_err(|problem| refuse(&problem))?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => {}
        Some(s) if s.eq_ignore_ascii_case("http") => {
            if !plain_http.allows(host) {
                #[cfg(feature = "metadata")]
                if plain_http == PlainHttp::MetadataServer {
                    return Err(refuse(
                        "may use plain http only to a loopback or link-local host, \
                         or metadata.google.internal",
                    ));
                }
                return Err(refuse(
                    "must use https (plain http is allowed only to loopback hosts, \
                     or with allow_insecure_http)",
                ));
            }
        }
        _ => return Err(refuse("must be an http(s) URL")),
    }
    Ok(uri)
}

/// The port of an authority (after any userinfo): none, empty, or 1–65535.
fn check_port(authority: &str) -> Result<(), String> {
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let after_host = match host_port.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or("", |(_, after)| after),
        None => host_port.find(':').map_or("", |at| &host_port[at..]),
    };
    let Some(port) = after_host.strip_prefix(':') else {
        return Ok(());
    };
    if port.is_empty() {
        return Ok(());
    }
    match port.parse::<u32>() {
        Ok(1..=65535) if port.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err(format!(
            "has an invalid port {port:?} (a port is a number from 1 to 65535)"
        )),
    }
}

/// A link-local address (`169.254.0.0/16`, `fe80::/10`) or GCP's
/// metadata server name, `metadata.google.internal`: where
/// [`PlainHttp::MetadataServer`] allows plain http.
#[cfg(feature = "metadata")]
fn is_metadata_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_link_local(),
        Ok(IpAddr::V6(ip)) => (ip.segments()[0] & 0xffc0) == 0xfe80,
        Err(_) => bare.eq_ignore_ascii_case("metadata.google.internal"),
    }
}

/// `localhost`, a `.localhost` name (RFC 6761), or a loopback address.
pub(crate) fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.to_ascii_lowercase().ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str) -> Result<Uri, Error> {
        checked_url(url, "token URL", PlainHttp::LoopbackOnly)
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

    #[test]
    fn ports_out_of_range_are_refused() {
        for url in [
            "http://127.0.0.1:99999/token",
            "http://127.0.0.1:65536/token",
            "http://127.0.0.1:0/token",
            "https://idp.example:4294967297/token",
            "http://[::1]:70000/token",
        ] {
            let e = check(url).unwrap_err();
            assert!(e.is_config(), "{url}");
            assert!(e.to_string().contains("invalid port"), "{url}: {e}");
        }
        for url in [
            "http://127.0.0.1:65535/token",
            "http://127.0.0.1:1/token",
            "https://idp.example/token",
            "https://idp.example:/token",
            "http://[::1]:8080/token",
            "http://[::1]/token",
        ] {
            assert!(check(url).is_ok(), "{url}");
        }
    }

    #[test]
    fn userinfo_fragments_and_other_schemes_are_refused() {
        for (url, says) in [
            ("https://user:pw@idp.example/token", "credentials"),
            ("https://user@idp.example/token", "credentials"),
            ("https://idp.example/token#frag", "fragment"),
            ("ftp://idp.example/token", "http(s)"),
            ("/token", "absolute"),
            ("http://idp.example/token", "https"),
            ("not a url", "valid"),
        ] {
            let e = check(url).unwrap_err();
            assert!(e.to_string().contains(says), "{url}: {e}");
        }
        assert!(checked_url("http://idp.example/t", "token URL", PlainHttp::Allowed).is_ok());
        assert!(check("HTTPS://IDP.example/token").is_ok());
    }
}

impl PlainHttp {
    /// Whether plain `http` may go to `host`: the https-unless-loopback
    /// rule, for the URLs the crate is configured with ([`checked_url`])
    /// and for the requests a token is attached to.
    pub(crate) fn allows(self, host: &str) -> bool {
        #[cfg(feature = "metadata")]
        if self == Self::MetadataServer && is_metadata_host(host) {
            return true;
        }
        self == Self::Allowed || is_loopback(host)
    }
}

/// An origin (RFC 6454 §4): scheme, host and port, normalised as RFC 3986
/// §6.2.2–6.2.3 says (scheme and host in lower case, percent-encodings of
/// unreserved characters decoded, the default port dropped), userinfo left
/// out. The one origin rule: [`only_origins`](crate::BearerAuthLayer::only_origins)
/// matches with it, and DPoP keys its nonce cache and `htu` by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Origin {
    scheme: String,
    host: String,
    /// `None` for the scheme's default port.
    port: Option<u16>,
}

/// Why a URI has no [`Origin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotAnOrigin {
    /// No scheme or no host: a relative URI.
    Relative,
    /// An empty or malformed host.
    Host,
    /// A port that is not a number from 0 to 65535.
    Port,
}

impl Origin {
    /// The origin of an absolute `uri`.
    pub(crate) fn of(uri: &Uri) -> Result<Self, NotAnOrigin> {
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(NotAnOrigin::Relative);
        };
        let (host, port) = split_authority(authority.as_str())?;
        let host = normalise_host(host);
        if host.is_empty() || host == "[]" {
            return Err(NotAnOrigin::Host);
        }
        Ok(Self {
            scheme: scheme.to_ascii_lowercase(),
            port: parse_port(port, scheme)?,
            host,
        })
    }

    /// Whether `uri` is for this origin. Allocates nothing unless its host
    /// has a percent-encoding: it runs on every request under
    /// `only_origins`.
    pub(crate) fn matches(&self, uri: &Uri) -> bool {
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return false;
        };
        let Ok((host, port)) = split_authority(authority.as_str()) else {
            return false;
        };
        scheme.eq_ignore_ascii_case(&self.scheme)
            && parse_port(port, scheme) == Ok(self.port)
            && if host.contains('%') {
                normalise_host(host) == self.host
            } else {
                host.eq_ignore_ascii_case(&self.host)
            }
    }

    /// The scheme, in lower case.
    pub(crate) fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Whether a token may go to this origin: `https`, a loopback host, or
    /// any host when `plain_http` allows it; the rule [`checked_url`]
    /// applies to the URLs the crate is configured with.
    pub(crate) fn allows_token(&self, plain_http: PlainHttp) -> bool {
        self.scheme() != "http" || plain_http.allows(&self.host)
    }
}

impl std::fmt::Display for Origin {
    /// `scheme://host[:port]`, the port only when it is not the default.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// An authority's host and port text, userinfo dropped (it is no part of
/// an origin).
fn split_authority(authority: &str) -> Result<(&str, Option<&str>), NotAnOrigin> {
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, rest)| rest);
    match host_port.strip_prefix('[') {
        Some(v6) => {
            let (inside, rest) = v6.split_once(']').ok_or(NotAnOrigin::Host)?;
            let host = &host_port[..inside.len() + 2];
            match rest {
                "" => Ok((host, None)),
                rest => Ok((host, Some(rest.strip_prefix(':').ok_or(NotAnOrigin::Host)?))),
            }
        }
        None => Ok(match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }),
    }
}

/// A port as an origin keeps it: `None` when absent, empty (RFC 3986
/// §3.2.3) or the scheme's default.
fn parse_port(port: Option<&str>, scheme: &str) -> Result<Option<u16>, NotAnOrigin> {
    let default = if scheme.eq_ignore_ascii_case("https") {
        Some(443)
    } else if scheme.eq_ignore_ascii_case("http") {
        Some(80)
    } else {
        None
    };
    match port {
        None | Some("") => Ok(None),
        Some(text) => {
            let port: u16 = text
                .parse()
                .ok()
                .filter(|_| text.bytes().all(|b| b.is_ascii_digit()))
                .ok_or(NotAnOrigin::Port)?;
            Ok((Some(port) != default).then_some(port))
        }
    }
}

/// A reg-name, IPv4 or IPv6 host: percent-encodings normalised, the rest in
/// lower case.
fn normalise_host(host: &str) -> String {
    normalise_percent(host, true)
}

/// RFC 3986 §6.2.2.1–6.2.2.2: `%xx` of an unreserved character decoded,
/// other `%xx` in upper case; with `lower`, every other character in lower
/// case (a host is case-insensitive).
pub(crate) fn normalise_percent(text: &str, lower: bool) -> String {
    fn hex(b: u8) -> Option<u8> {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            if let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                let decoded = h * 16 + l;
                if decoded.is_ascii_alphanumeric() || b"-._~".contains(&decoded) {
                    let c = char::from(decoded);
                    out.push(if lower { c.to_ascii_lowercase() } else { c });
                } else {
                    out.push('%');
                    out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
                    out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
                }
                i += 3;
                continue;
            }
        }
        // `http::Uri` holds ASCII only.
        let c = char::from(b);
        out.push(if lower { c.to_ascii_lowercase() } else { c });
        i += 1;
    }
    out
}

#[cfg(test)]
mod origin_tests {
    use super::*;

    fn origin(uri: &str) -> Result<Origin, NotAnOrigin> {
        Origin::of(&uri.parse().unwrap())
    }

    #[test]
    fn origins_drop_default_ports_userinfo_and_case() {
        let a = origin("HTTPS://user:pw@API.example:443/x?q").unwrap();
        assert_eq!(a.to_string(), "https://api.example");
        for same in [
            "https://api.example",
            "https://api.example:/y",
            "https://Api.Example:443",
        ] {
            assert_eq!(origin(same).unwrap(), a, "{same}");
            assert!(a.matches(&same.parse().unwrap()), "{same}");
        }
        for other in [
            "http://api.example",
            "https://api.example:8443",
            "https://b.example",
        ] {
            assert!(!a.matches(&other.parse().unwrap()), "{other}");
        }
        assert_eq!(
            origin("http://[::1]:80/").unwrap().to_string(),
            "http://[::1]"
        );
        assert_eq!(
            origin("http://[::1]:8080").unwrap().to_string(),
            "http://[::1]:8080"
        );
    }

    #[test]
    fn relative_uris_and_bad_ports_have_no_origin() {
        assert_eq!(origin("/x"), Err(NotAnOrigin::Relative));
        assert_eq!(origin("https://api.example:99999/"), Err(NotAnOrigin::Port));
        assert!(!origin("https://a.example")
            .unwrap()
            .matches(&"https://a.example:99999/".parse().unwrap()));
    }

    #[test]
    fn plain_http_origins_take_a_token_only_on_loopback_or_when_allowed() {
        let remote = origin("http://api.example").unwrap();
        assert!(!remote.allows_token(PlainHttp::LoopbackOnly));
        assert!(remote.allows_token(PlainHttp::Allowed));
        assert!(origin("http://127.0.0.1:50051")
            .unwrap()
            .allows_token(PlainHttp::LoopbackOnly));
        assert!(origin("https://api.example")
            .unwrap()
            .allows_token(PlainHttp::LoopbackOnly));
    }
}
