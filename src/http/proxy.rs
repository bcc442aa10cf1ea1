//! HTTP proxies for the default client: which requests go through one
//! (the `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` rules, read by hyper-util's
//! `Matcher`, or an explicit [`Proxy`]), and the connector that reaches a
//! destination through it: an HTTP `CONNECT` tunnel for `https` (RFC 9110
//! §9.3.6), the absolute-form request for plain `http` (RFC 9112 §3.2.2).

use std::{
    error::Error as StdError,
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use http::{header::PROXY_AUTHORIZATION, HeaderValue, Request, StatusCode, Uri};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::{
    client::{
        legacy::connect::{Connected, Connection},
        proxy::matcher::Matcher,
    },
    rt::TokioIo,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{BoxError, Service};

use crate::{error::Error, secret::ClientSecret};

/// An HTTP proxy the default client reaches token endpoints through: an
/// `https` destination by a `CONNECT` tunnel (the TLS session, and so the
/// token request, stays end to end), a plain `http` one by a request in
/// absolute form.
///
/// The proxy's own URL must be `http://host[:port]` (TLS to the proxy
/// itself is not supported); its port defaults to 80. Credentials, in the
/// URL (`http://user:password@proxy:3128`, percent-decoded) or given with
/// [`basic_auth`](Self::basic_auth), go in a `Proxy-Authorization: Basic`
/// header to the proxy only, marked sensitive; `Debug`, `Display` and
/// every error show the URL without them.
///
/// ```
/// use tower_alf::Proxy;
///
/// let proxy = Proxy::new("http://alice:s3cr3t@proxy.corp.example:3128")?;
/// assert_eq!(proxy.to_string(), "http://proxy.corp.example:3128");
/// assert!(!format!("{proxy:?}").contains("s3cr3t"));
///
/// assert!(Proxy::new("https://proxy.corp.example").unwrap_err().is_config());
/// assert!(Proxy::new("socks5://proxy.corp.example").unwrap_err().is_config());
/// # Ok::<_, tower_alf::Error>(())
/// ```
#[derive(Clone)]
pub struct Proxy {
    /// `http://host:port/`, no userinfo.
    uri: Uri,
    auth: Option<HeaderValue>,
}

impl Proxy {
    /// The proxy at `url`: `http://[user[:password]@]host[:port][/]`.
    /// Anything else (another scheme, a path, a query, a bad port) is an
    /// [`Error::is_config`] naming the rule, never the credentials.
    pub fn new(url: &str) -> Result<Self, Error> {
        parse(url, "proxy URL").map_err(Error::config)
    }

    /// Sends `Proxy-Authorization: Basic` with these credentials, replacing
    /// any from the URL.
    pub fn basic_auth(mut self, user: &str, password: impl Into<ClientSecret>) -> Self {
        self.auth = Some(basic(user, Some(password.into().secret())));
        self
    }

    /// The proxy's URL, without credentials.
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    /// Whether credentials are sent to the proxy.
    pub fn has_credentials(&self) -> bool {
        self.auth.is_some()
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.uri.to_string();
        f.write_str(text.strip_suffix('/').unwrap_or(&text))
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("url", &self.to_string())
            .field(
                "credentials",
                &if self.auth.is_some() {
                    "[redacted]"
                } else {
                    "none"
                },
            )
            .finish()
    }
}

/// A proxy URL checked: `http`, a host, a port from 1 to 65535, no path.
fn parse(url: &str, what: &str) -> Result<Proxy, String> {
    let refuse = |rule: &str| format!("the {what} {rule}");
    // Scheme-less values (`proxy:3128`) are common in the environment;
    // curl reads them as http.
    let with_scheme;
    let url = if url.contains("://") {
        url
    } else {
        with_scheme = format!("http://{url}");
        &with_scheme
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| refuse("is not a URL"))?;
    if scheme.eq_ignore_ascii_case("https") {
        return Err(refuse(
            "uses https: TLS to the proxy itself is not supported; use http://host:port \
             (https destinations are still tunnelled end to end)",
        ));
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(refuse("must be an http:// URL (SOCKS is not supported)"));
    }
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    if !path.is_empty() && path != "/" {
        return Err(refuse("must not have a path, query or fragment"));
    }
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => (Some(userinfo), host_port),
        None => (None, authority),
    };
    if host_port.is_empty() || host_port.starts_with(':') {
        return Err(refuse("has no host"));
    }
    let uri: Uri = format!("http://{host_port}/")
        .parse()
        .map_err(|_| refuse("is not a valid URL"))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(refuse("has no host"));
    }
    super::check_port(host_port).map_err(|problem| refuse(&problem))?;
    let auth = userinfo.map(|userinfo| {
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8_lossy()
                .into_owned()
        };
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (decode(user), Some(decode(password))),
            None => (decode(userinfo), None),
        };
        basic(&user, password.as_deref())
    });
    Ok(Proxy { uri, auth })
}

/// A sensitive `Basic` value for the proxy (RFC 7617: `user:password`).
fn basic(user: &str, password: Option<&str>) -> HeaderValue {
    let credentials = format!("{user}:{}", password.unwrap_or_default());
    let mut value = HeaderValue::try_from(format!("Basic {}", STANDARD.encode(credentials)))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
    value.set_sensitive(true);
    value
}

// ===== the rules =====

/// Where the proxy settings come from when none is set explicitly: the
/// process environment, or a lookup given to the builder.
pub(crate) type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Which destinations go through which proxy.
#[derive(Clone)]
pub(crate) struct Rules {
    http: Option<Proxy>,
    https: Option<Proxy>,
    /// `NO_PROXY` as hyper-util's matcher reads it (curl's rules: domains
    /// and their subdomains, IP addresses and CIDR ranges); `None` for `*`,
    /// every host (the matcher's `*` covers names only).
    no_proxy: Option<Arc<Matcher>>,
}

impl Rules {
    /// `proxy` for every destination but those `no_proxy` names.
    pub(crate) fn explicit(proxy: Proxy, no_proxy: &str) -> Self {
        Self {
            http: Some(proxy.clone()),
            https: Some(proxy),
            no_proxy: no_proxy_matcher(no_proxy),
        }
    }

    /// The proxy variables, as curl and Go read them: `HTTPS_PROXY` or
    /// `https_proxy` for https, `HTTP_PROXY` or `http_proxy` for http (the
    /// upper-case `HTTP_PROXY` ignored under CGI, where a request's
    /// `Proxy:` header would set it: "httpoxy"), `NO_PROXY` or `no_proxy`.
    /// `None` when no proxy is set; an error naming the variable for a
    /// value that is not an `http://` proxy URL.
    pub(crate) fn from_env(lookup: &EnvLookup) -> Result<Option<Self>, Error> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let cgi = lookup("REQUEST_METHOD").is_some();
        let read = |names: &[&'static str]| -> Result<Option<Proxy>, Error> {
            for &name in names {
                if cgi && name == "HTTP_PROXY" {
                    continue;
                }
                if let Some(value) = get(name) {
                    return parse(value.trim(), &format!("proxy URL in {name}"))
                        .map(Some)
                        .map_err(Error::config);
                }
            }
            Ok(None)
        };
        let https = read(&["HTTPS_PROXY", "https_proxy"])?;
        let http = read(&["HTTP_PROXY", "http_proxy"])?;
        if https.is_none() && http.is_none() {
            return Ok(None);
        }
        let no_proxy = get("NO_PROXY").or_else(|| get("no_proxy"));
        Ok(Some(Self {
            http,
            https,
            no_proxy: no_proxy_matcher(no_proxy.as_deref().unwrap_or_default()),
        }))
    }

    /// The proxy for `dst`, if it goes through one.
    fn proxy_for(&self, dst: &Uri) -> Option<&Proxy> {
        let proxy = match dst.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => self.https.as_ref()?,
            Some(s) if s.eq_ignore_ascii_case("http") => self.http.as_ref()?,
            _ => return None,
        };
        // The matcher answers `None` for a host `NO_PROXY` names: its
        // proxy, set to a placeholder, is never used.
        self.no_proxy.as_ref()?.intercept(dst).map(|_| proxy)
    }

    /// Adds `Proxy-Authorization` to a plain-http request that goes through
    /// a proxy with credentials (a tunnel carries them in its `CONNECT`).
    pub(crate) fn authorize<B>(&self, request: &mut Request<B>) {
        if request
            .uri()
            .scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("http"))
        {
            if let Some(auth) = self.proxy_for(request.uri()).and_then(|p| p.auth.clone()) {
                request.headers_mut().insert(PROXY_AUTHORIZATION, auth);
            }
        }
    }
}

impl fmt::Debug for Rules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxies")
            .field("http", &self.http)
            .field("https", &self.https)
            .finish_non_exhaustive()
    }
}

/// A matcher that intercepts every http(s) destination `no_proxy` does not
/// name; the proxy it names is a placeholder. `*.example.com` is read as
/// `.example.com` (a common spelling curl's rules do not have); `None`
/// when an entry is `*`.
fn no_proxy_matcher(no_proxy: &str) -> Option<Arc<Matcher>> {
    let mut entries = Vec::new();
    for entry in no_proxy.split(',').map(str::trim) {
        if entry == "*" {
            return None;
        }
        entries.push(
            entry
                .strip_prefix('*')
                .filter(|e| e.starts_with('.'))
                .unwrap_or(entry),
        );
    }
    let matcher = Matcher::builder()
        .all("http://proxy.invalid")
        .no(entries.join(","))
        .build();
    Some(Arc::new(matcher))
}

// ===== the connector =====

/// Why the proxy gave no way through.
///
/// It is the source of an [`Error::is_transport`] (find it with
/// `std::error::Error::source`); its text names the proxy without its
/// credentials, and the destination, never what the proxy's answer held
/// beyond its status line.
#[derive(Debug)]
pub struct ProxyError {
    proxy: String,
    status: Option<StatusCode>,
    reason: String,
    source: Option<BoxError>,
}

impl ProxyError {
    /// The proxy's answer to the `CONNECT`, when it answered HTTP (`407`:
    /// it wants credentials or refused them; `403`: its policy refuses the
    /// destination).
    pub fn status(&self) -> Option<StatusCode> {
        self.status
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "proxy {}: {}", self.proxy, self.reason)
    }
}

impl StdError for ProxyError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}

/// A connector that reaches destinations through the proxy the [`Rules`]
/// name, over `inner` (hyper-util's `HttpConnector`), and directly
/// otherwise. Under hyper-rustls: TLS runs over what it returns.
#[derive(Clone)]
pub(crate) struct ProxyConnector<C> {
    inner: C,
    rules: Option<Rules>,
}

impl<C> ProxyConnector<C> {
    pub(crate) fn new(inner: C, rules: Option<Rules>) -> Self {
        Self { inner, rules }
    }
}

impl<C: fmt::Debug> fmt::Debug for ProxyConnector<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyConnector")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

/// The most a proxy's answer to `CONNECT` may take, headers included.
const MAX_CONNECT_RESPONSE: usize = 16 * 1024;

type Connecting = Pin<Box<dyn Future<Output = Result<Proxied, BoxError>> + Send>>;

impl<C> Service<Uri> for ProxyConnector<C>
where
    C: Service<Uri, Response = TokioIo<tokio::net::TcpStream>> + Clone + Send + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send + 'static,
{
    type Response = Proxied;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let proxy = self.rules.as_ref().and_then(|rules| rules.proxy_for(&dst));
        let Some(proxy) = proxy.cloned() else {
            let connecting = self.inner.call(dst);
            return Box::pin(async move {
                let io = connecting.await.map_err(Into::into)?;
                Ok(Proxied { io, forward: false })
            });
        };
        let connecting = self.inner.call(proxy.uri.clone());
        let https = dst
            .scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("https"));
        Box::pin(async move {
            let fail = |status, reason: String, source: Option<BoxError>| -> BoxError {
                Box::new(ProxyError {
                    proxy: proxy.to_string(),
                    status,
                    reason,
                    source,
                })
            };
            let io = connecting
                .await
                .map_err(|e| fail(None, "cannot connect to the proxy".into(), Some(e.into())))?;
            if !https {
                return Ok(Proxied { io, forward: true });
            }
            let host = dst.host().unwrap_or_default();
            let port = dst.port_u16().unwrap_or(443);
            let target = format!("{host}:{port}");
            let mut tcp = io.into_inner();
            let mut connect = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
            if let Some(auth) = &proxy.auth {
                connect.push_str("Proxy-Authorization: ");
                connect.push_str(auth.to_str().unwrap_or_default());
                connect.push_str("\r\n");
            }
            connect.push_str("\r\n");
            tcp.write_all(connect.as_bytes()).await.map_err(|e| {
                let reason = if is_hangup(&e) {
                    "closed the connection instead of answering CONNECT".into()
                } else {
                    format!("cannot send CONNECT {target}")
                };
                fail(None, reason, Some(e.into()))
            })?;
            drop(connect);
            let status = read_connect_answer(&mut tcp)
                .await
                .map_err(|(status, reason, source)| fail(status, reason, source))?;
            match status {
                s if s.is_success() => Ok(Proxied {
                    io: TokioIo::new(tcp),
                    forward: false,
                }),
                StatusCode::PROXY_AUTHENTICATION_REQUIRED => Err(fail(
                    Some(status),
                    format!(
                        "refused the tunnel to {target}: {status} ({})",
                        if proxy.auth.is_some() {
                            "the credentials were refused"
                        } else {
                            "it wants credentials: put them in the proxy URL or use \
                             Proxy::basic_auth"
                        }
                    ),
                    None,
                )),
                _ => Err(fail(
                    Some(status),
                    format!("refused the tunnel to {target}: {status}"),
                    None,
                )),
            }
        })
    }
}

/// Reads the proxy's answer to `CONNECT` up to the end of its header
/// section, and its status; no byte past it (the TLS handshake follows).
async fn read_connect_answer(
    tcp: &mut tokio::net::TcpStream,
) -> Result<StatusCode, (Option<StatusCode>, String, Option<BoxError>)> {
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    // NOTE: one byte at a time: whatever follows the blank line belongs to
    // the tunnel. A CONNECT answer is a few hundred bytes, once per
    // connection.
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_CONNECT_RESPONSE {
            return Err((None, "answered CONNECT with an endless header".into(), None));
        }
        match tcp.read(&mut byte).await {
            Ok(0) => {
                return Err((
                    None,
                    "closed the connection instead of answering CONNECT".into(),
                    None,
                ))
            }
            Ok(_) => head.push(byte[0]),
            Err(e) if is_hangup(&e) => {
                return Err((
                    None,
                    "closed the connection instead of answering CONNECT".into(),
                    Some(e.into()),
                ))
            }
            Err(e) => return Err((None, "failed answering CONNECT".into(), Some(e.into()))),
        }
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    let version = words.next().unwrap_or_default();
    let code = words.next().unwrap_or_default();
    let status = (version.starts_with(b"HTTP/1.") && code.len() == 3)
        .then(|| StatusCode::from_bytes(code).ok())
        .flatten();
    status.ok_or_else(|| {
        (
            None,
            "answered CONNECT with something that is not HTTP".into(),
            None,
        )
    })
}

/// Whether the peer closed or reset the connection.
fn is_hangup(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(
        e.kind(),
        BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof
    )
}

/// A connection made by [`ProxyConnector`]: direct, tunnelled, or to a
/// proxy that forwards plain-http requests (which hyper then sends in
/// absolute form).
#[derive(Debug)]
pub(crate) struct Proxied {
    io: TokioIo<tokio::net::TcpStream>,
    forward: bool,
}

impl Connection for Proxied {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.forward)
    }
}

impl Read for Proxied {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl Write for Proxied {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> EnvLookup {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Arc::new(move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    fn uri(text: &str) -> Uri {
        text.parse().unwrap()
    }

    #[test]
    fn proxy_urls_keep_credentials_out_of_text() {
        let proxy = Proxy::new("http://us%40er:p%3Ass@proxy.example:3128/").unwrap();
        assert_eq!(proxy.to_string(), "http://proxy.example:3128");
        let auth = proxy.auth.as_ref().unwrap();
        assert!(auth.is_sensitive());
        assert_eq!(auth, &format!("Basic {}", STANDARD.encode("us@er:p:ss")));
        assert!(!format!("{proxy:?}").contains("p:ss"));
        assert_eq!(
            Proxy::new("proxy.example:8080").unwrap().to_string(),
            "http://proxy.example:8080"
        );
        for (bad, says) in [
            ("https://proxy.example", "https"),
            ("socks5://u:sekret@proxy.example", "SOCKS"),
            ("http://u:sekret@proxy.example:99999", "port"),
            ("http://proxy.example/path", "path"),
            ("http://u:sekret@", "host"),
        ] {
            let e = Proxy::new(bad).unwrap_err();
            assert!(e.is_config(), "{bad}");
            assert!(e.to_string().contains(says), "{bad}: {e}");
            assert!(!e.to_string().contains("sekret"), "{bad}: {e}");
        }
    }

    #[test]
    fn environment_rules_follow_curl_and_go() {
        let rules = Rules::from_env(&env(&[
            ("https_proxy", "http://secure.proxy:3128"),
            ("HTTP_PROXY", "http://plain.proxy:3128"),
            ("no_proxy", "internal.example, 10.0.0.0/8"),
        ]))
        .unwrap()
        .unwrap();
        let via = |url: &str| rules.proxy_for(&uri(url)).map(ToString::to_string);
        assert_eq!(
            via("https://idp.example/t").as_deref(),
            Some("http://secure.proxy:3128")
        );
        assert_eq!(
            via("http://idp.example/t").as_deref(),
            Some("http://plain.proxy:3128")
        );
        assert_eq!(via("https://idp.internal.example/t"), None);
        assert_eq!(via("https://internal.example/t"), None);
        assert_eq!(via("https://10.1.2.3/t"), None);
        assert_eq!(
            via("https://notinternal.example/t").as_deref(),
            Some("http://secure.proxy:3128")
        );

        // Upper case wins over lower case.
        let rules = Rules::from_env(&env(&[
            ("HTTPS_PROXY", "http://upper:1"),
            ("https_proxy", "http://lower:2"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            rules
                .proxy_for(&uri("https://a.example"))
                .unwrap()
                .to_string(),
            "http://upper:1"
        );
        // Nothing set, or only empty values: no proxy.
        assert!(Rules::from_env(&env(&[])).unwrap().is_none());
        assert!(Rules::from_env(&env(&[("HTTPS_PROXY", " ")]))
            .unwrap()
            .is_none());
    }

    #[test]
    fn under_cgi_the_upper_case_http_proxy_is_ignored() {
        let lookup = env(&[("REQUEST_METHOD", "GET"), ("HTTP_PROXY", "http://evil:1")]);
        assert!(Rules::from_env(&lookup).unwrap().is_none());
        let lookup = env(&[("REQUEST_METHOD", "GET"), ("http_proxy", "http://ok:1")]);
        assert!(Rules::from_env(&lookup).unwrap().is_some());
    }

    #[test]
    fn a_bad_proxy_variable_is_a_config_error_naming_it() {
        let e = Rules::from_env(&env(&[("HTTPS_PROXY", "socks5://u:sekret@p:1")])).unwrap_err();
        assert!(e.is_config());
        assert!(e.to_string().contains("HTTPS_PROXY"), "{e}");
        assert!(!e.to_string().contains("sekret"), "{e}");
    }

    #[test]
    fn explicit_proxies_honour_their_no_proxy_list() {
        let rules = Rules::explicit(Proxy::new("http://p:1").unwrap(), "*.corp.example");
        assert!(rules.proxy_for(&uri("https://idp.example")).is_some());
        assert!(rules.proxy_for(&uri("https://idp.corp.example")).is_none());
        let all = Rules::explicit(Proxy::new("http://p:1").unwrap(), "*");
        assert!(all.proxy_for(&uri("https://idp.example")).is_none());
    }

    #[test]
    fn plain_http_requests_carry_proxy_credentials_https_ones_do_not() {
        let rules = Rules::explicit(Proxy::new("http://u:pw@p:1").unwrap(), "");
        let mut plain = Request::get("http://idp.example/t").body(()).unwrap();
        rules.authorize(&mut plain);
        assert!(plain.headers()[PROXY_AUTHORIZATION].is_sensitive());
        let mut tls = Request::get("https://idp.example/t").body(()).unwrap();
        rules.authorize(&mut tls);
        assert!(tls.headers().get(PROXY_AUTHORIZATION).is_none());
    }
}
