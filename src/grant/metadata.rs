//! [`MetadataServer`]: a token from a cloud metadata server (GCP's), an
//! example of a token endpoint that is not OAuth's.

use std::{ffi::OsString, fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{header::ACCEPT, HeaderMap, Request, StatusCode};
use http_body_util::Full;
use tokio::time::Instant;

use super::{
    params::{grant_service, GrantFuture},
    FetchToken,
};
use crate::{
    endpoint::response::parse_response,
    error::Error,
    http::{checked_url, default_client, HttpClient, PlainHttp},
    redact::SentSecrets,
    token::{Token, TokenType},
};

/// The header a metadata request carries, and its answer too.
const FLAVOR: &str = "metadata-flavor";

/// A grant that asks a GCP-style metadata server for the access token of
/// the workload's service account: `GET
/// http://<host>/computeMetadata/v1/instance/service-accounts/<account>/token`
/// with `Metadata-Flavor: Google`, as Compute Engine, GKE workload
/// identity, Cloud Run and Cloud Functions serve it.
///
/// It shows how a token endpoint that is not OAuth's becomes a grant: a
/// `GET` with a header instead of a form `POST`, no client
/// authentication, an answer checked for the server's own header. The
/// answer is RFC 6749's shape (`access_token`, `expires_in`,
/// `token_type`), read by the same parser as a token endpoint's. The
/// source in front keeps the rest: the cache, single flight, the refresh
/// ahead of expiry (the server hands out the same token until its last
/// minutes, then a new one), and a valid token served while a refresh
/// fails.
///
/// # Plain http, and which hosts
///
/// The metadata server is reached over plain `http` on a link-local
/// address: it never offers `https`, and the link never leaves the host.
/// So this grant is the one narrow exception to the crate's https rule:
/// plain `http` is allowed to a loopback host, a link-local address
/// (`169.254.0.0/16`, `fe80::/10`) or `metadata.google.internal`, and to
/// no other host. The host is `GCE_METADATA_HOST` when that environment
/// variable is set (as Google's client libraries read it: `host` or
/// `host:port`), else `metadata.google.internal`; or give it with
/// [`with_host`](Self::with_host).
///
/// # Failures
///
/// An answer without `Metadata-Flavor: Google` (a proxy, a captive
/// portal, another server on that address) is an
/// [invalid response](Error::is_invalid_response), as is a body that is
/// not such a token (HTML, say) or a `token_type` other than `Bearer`;
/// each error carries a bounded, redacted excerpt of the body. Another
/// status (`403`, `404` for an account the instance does not have) is an
/// [`Error::is_status`] error with that status, not retried; a server slower than the
/// [timeout](Self::timeout) a [timeout](Error::is_timeout). One request
/// per fetch: the source retries a failed background refresh with
/// backoff, serving the token it has meanwhile.
///
/// ```
/// use tower_alf::{grant::MetadataServer, TokenSource};
///
/// let source = TokenSource::new(
///     MetadataServer::new().scope("https://www.googleapis.com/auth/cloud-platform"),
/// );
/// ```
#[derive(Clone)]
pub struct MetadataServer {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    host: String,
    account: String,
    scopes: Vec<String>,
    timeout: Duration,
    max_response_size: usize,
    client: Option<HttpClient>,
}

impl MetadataServer {
    /// The metadata server's name on GCP: `metadata.google.internal`.
    pub const DEFAULT_HOST: &'static str = "metadata.google.internal";

    /// The environment variable that names another host (an emulator, a
    /// proxy on the node): `GCE_METADATA_HOST`.
    pub const HOST_ENV: &'static str = "GCE_METADATA_HOST";

    /// The service account asked for unless told otherwise: `default`, the
    /// instance's own.
    pub const DEFAULT_ACCOUNT: &'static str = "default";

    /// How long one request may take: 5 s. The server is on the link; a
    /// slower answer means it is not there (off GCP) or overloaded.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// The largest answer read: 64 KiB (a token answer is well under 4).
    pub const MAX_RESPONSE_SIZE: usize = 64 * 1024;

    /// The grant for the `default` service account, on the host named by
    /// `GCE_METADATA_HOST`, else `metadata.google.internal`.
    pub fn new() -> Self {
        Self::with_host(host_from(std::env::var_os(Self::HOST_ENV)))
    }

    /// The grant for the `default` service account on `host` (`host` or
    /// `host:port`; a loopback host for a test server). A host that is not
    /// loopback, link-local or `metadata.google.internal`, or is not a
    /// plain host, fails each fetch with [`Error::is_config`].
    pub fn with_host(host: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                host: host.into(),
                account: Self::DEFAULT_ACCOUNT.to_owned(),
                scopes: Vec::new(),
                timeout: Self::DEFAULT_TIMEOUT,
                max_response_size: Self::MAX_RESPONSE_SIZE,
                client: None,
            }),
        }
    }

    /// Asks for another service account attached to the instance (its
    /// email), replacing the one before. Defaults to
    /// [`Self::DEFAULT_ACCOUNT`].
    pub fn account(mut self, account: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.inner).account = account.into();
        self
    }

    /// Adds a scope to those asked for (the `scopes` query parameter,
    /// comma-separated); call again for more. Without any, the server
    /// grants the scopes the instance was given.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.inner).scopes.push(scope.into());
        self
    }

    /// Sets how long one request may take. Defaults to
    /// [`Self::DEFAULT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        Arc::make_mut(&mut self.inner).timeout = timeout;
        self
    }

    /// Sends the requests with `client`. Defaults to
    /// [`HttpClient::default`] (feature `rustls`); without that feature,
    /// required.
    pub fn http_client(mut self, client: HttpClient) -> Self {
        Arc::make_mut(&mut self.inner).client = Some(client);
        self
    }

    /// The URL a fetch asks, checked: plain `http` to an allowed host,
    /// the account as one path segment, the scopes as a query.
    ///
    /// ```
    /// use tower_alf::grant::MetadataServer;
    ///
    /// let url = MetadataServer::with_host("169.254.169.254").scope("a").scope("b").url()?;
    /// assert_eq!(
    ///     url.to_string(),
    ///     "http://169.254.169.254/computeMetadata/v1/instance/service-accounts/default/token?scopes=a,b"
    /// );
    /// assert!(MetadataServer::with_host("metadata.example.com").url().unwrap_err().is_config());
    /// # Ok::<(), tower_alf::Error>(())
    /// ```
    pub fn url(&self) -> Result<http::Uri, Error> {
        let inner = &self.inner;
        let host = &inner.host;
        if host.is_empty()
            || host.contains(['/', '?', '#', '@', '\\'])
            || host.contains(char::is_whitespace)
        {
            return Err(Error::config(
                "the metadata server host must be a host or host:port",
            ));
        }
        if inner.account.is_empty() {
            return Err(Error::config("the metadata server account is empty"));
        }
        let mut url = format!(
            "http://{host}/computeMetadata/v1/instance/service-accounts/{}/token",
            path_segment(&inner.account)
        );
        if !inner.scopes.is_empty() {
            let scopes: Vec<String> = inner.scopes.iter().map(|s| query_value(s)).collect();
            url.push_str("?scopes=");
            url.push_str(&scopes.join(","));
        }
        checked_url(&url, "metadata server URL", PlainHttp::MetadataServer)
    }

    fn start(&mut self, request: FetchToken) -> GrantFuture {
        let inner = Arc::clone(&self.inner);
        let url = self.url();
        Box::pin(async move {
            let url = url?;
            let client = inner
                .client
                .clone()
                .or_else(default_client)
                .ok_or_else(|| {
                    Error::config(
                        "no HTTP client for the metadata server: enable the `rustls` feature \
                     or call `MetadataServer::http_client`",
                    )
                })?;
            let http_request = Request::get(url)
                .header(FLAVOR, "Google")
                .header(ACCEPT, "application/json")
                .body(Full::<Bytes>::default())
                .map_err(|_| Error::config("cannot build the metadata request"))?;
            let limit = inner.max_response_size;
            let sent_at = Instant::now().max(request.started_at);
            let (parts, body) = client
                .fetch_within(http_request, limit, inner.timeout)
                .await?;
            tracing::debug!(
                status = parts.status.as_u16(),
                bytes = body.len(),
                "metadata server answered"
            );
            read_answer(parts.status, &parts.headers, &body, sent_at)
        })
    }
}

/// The token in a metadata server's answer: only from an answer that says
/// it is one (`Metadata-Flavor: Google`), and only a bearer token.
fn read_answer(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    sent_at: Instant,
) -> Result<Token, Error> {
    let nothing_sent = SentSecrets::default();
    let flavored = headers
        .get_all(FLAVOR)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"Google"));
    if !flavored {
        return Err(Error::invalid_response(
            status,
            "the answer has no Metadata-Flavor: Google header: not a metadata server",
            body,
        )
        .answered(status, body, &nothing_sent));
    }
    let token = parse_response(status, headers, body, sent_at)
        .map_err(|e| e.answered(status, body, &nothing_sent))?;
    if token.token_type() != TokenType::Bearer {
        return Err(Error::invalid_response(
            status,
            "the metadata server issued a token that is not a Bearer token",
            &[],
        ));
    }
    Ok(token)
}

/// `GCE_METADATA_HOST`'s value if set and not empty, else the default.
fn host_from(env: Option<OsString>) -> String {
    env.and_then(|v| v.into_string().ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| MetadataServer::DEFAULT_HOST.to_owned())
}

/// One path segment: everything but RFC 3986 unreserved characters and
/// `@` (service account emails) percent-encoded.
fn path_segment(text: &str) -> String {
    encode(text, |b| b.is_ascii_alphanumeric() || b"-._~@".contains(&b))
}

/// One query value, the comma (the scopes' separator) encoded too.
fn query_value(text: &str) -> String {
    encode(text, |b| {
        b.is_ascii_alphanumeric() || b"-._~:/".contains(&b)
    })
}

fn encode(text: &str, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Default for MetadataServer {
    fn default() -> Self {
        Self::new()
    }
}

grant_service!(MetadataServer);

impl fmt::Debug for MetadataServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetadataServer")
            .field("host", &self.inner.host)
            .field("account", &self.inner.account)
            .field("scopes", &self.inner.scopes)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn the_host_comes_from_the_environment_else_the_default() {
        assert_eq!(host_from(None), "metadata.google.internal");
        assert_eq!(host_from(Some(" ".into())), "metadata.google.internal");
        assert_eq!(host_from(Some("127.0.0.1:8080".into())), "127.0.0.1:8080");
    }

    #[test]
    fn plain_http_goes_only_to_link_local_or_the_metadata_name() {
        for host in ["169.254.169.254", "[fe80::1]", "metadata.google.internal"] {
            assert!(MetadataServer::with_host(host).url().is_ok(), "{host}");
        }
        for host in [
            "10.0.0.1",
            "metadata.google.internal.evil.example",
            "[2001:db8::1]",
            "evil.example/computeMetadata",
            "user@169.254.169.254",
            "",
        ] {
            let e = MetadataServer::with_host(host).url().unwrap_err();
            assert!(e.is_config(), "{host}: {e}");
        }
    }

    #[test]
    fn the_account_is_one_path_segment_and_scopes_are_encoded() {
        let url = MetadataServer::with_host("169.254.169.254")
            .account("sa@p.iam.gserviceaccount.com/../x")
            .scope("https://www.googleapis.com/auth/cloud-platform")
            .scope("a,b c")
            .url()
            .unwrap();
        assert_eq!(
            url.to_string(),
            "http://169.254.169.254/computeMetadata/v1/instance/service-accounts/\
             sa@p.iam.gserviceaccount.com%2F..%2Fx/token\
             ?scopes=https://www.googleapis.com/auth/cloud-platform,a%2Cb%20c"
        );
    }

    #[test]
    fn an_answer_without_the_flavor_header_is_not_a_token() {
        let body = br#"{"access_token":"ya29.c.leak","expires_in":3599,"token_type":"Bearer"}"#;
        let e = read_answer(StatusCode::OK, &HeaderMap::new(), body, Instant::now()).unwrap_err();
        assert!(e.is_invalid_response(), "{e}");
        assert!(e.to_string().contains("Metadata-Flavor"), "{e}");
        let shown = format!("{e} {e:?} {:?}", e.body_excerpt());
        assert!(!shown.contains("ya29.c.leak"), "{shown}");
        let mut headers = HeaderMap::new();
        headers.insert(FLAVOR, HeaderValue::from_static("Google"));
        let token = read_answer(StatusCode::OK, &headers, body, Instant::now()).unwrap();
        assert_eq!(token.access_token().secret(), "ya29.c.leak");
        assert_eq!(token.lifetime(), Some(Duration::from_secs(3599)));
    }
}
