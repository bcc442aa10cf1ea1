//! The three-legged flow (RFC 5849 §2): temporary credentials, the user's
//! authorization, token credentials.

use std::{fmt, time::Duration};

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::Full;

use super::{
    ClientCredentials, Error, OAuth1Layer, Placement, SignatureMethod, Signer,
    TemporaryCredentials, TokenCredentials, Verifier,
};
use crate::{
    http::{default_client, url_problem, HttpClient, PlainHttp},
    redact::form_pairs,
};

/// The three-legged flow of RFC 5849 §2, the way Authlib's `OAuth1Client`
/// runs it, over any HTTP service ([`HttpClient`]).
///
/// 1. [`Flow::request_token`]: fetch temporary credentials, saying where
///    the provider should send the user back (`oauth_callback`).
/// 2. [`Flow::authorization_url`]: send the user there to approve.
/// 3. [`Flow::parse_callback`]: read `oauth_token` and `oauth_verifier` from
///    the URL the user comes back to, checking the token is ours.
/// 4. [`Flow::access_token`]: exchange the verifier for token credentials.
/// 5. [`Flow::layer`]: an [`OAuth1Layer`] that signs with them.
///
/// ```no_run
/// use tower_alf::oauth1::{ClientCredentials, Flow};
///
/// # async fn run() -> Result<(), tower_alf::oauth1::Error> {
/// let flow = Flow::new(ClientCredentials::new("consumer-key", "consumer-secret"));
/// let temporary = flow
///     .request_token("https://provider.example/oauth/request_token", "https://app.example/cb")
///     .await?;
/// let url = flow.authorization_url("https://provider.example/oauth/authorize", &temporary)?;
/// println!("open {url}");
/// // … the provider redirects the user to https://app.example/cb?oauth_token=…&oauth_verifier=…
/// # let callback = "";
/// let verifier = flow.parse_callback(callback, &temporary)?;
/// let token = flow
///     .access_token("https://provider.example/oauth/access_token", &temporary, &verifier)
///     .await?;
/// let layer = flow.layer(token); // sign API requests with it
/// # Ok(()) }
/// ```
///
/// Provider URLs must be `https`, except to loopback hosts or with
/// [`Flow::allow_insecure_http`]: the credentials requests carry secrets
/// that `PLAINTEXT` sends in clear, and their answers always do.
#[derive(Clone)]
#[must_use]
pub struct Flow {
    signer: Signer,
    http: Option<HttpClient>,
    timeout: Duration,
    max_response_size: usize,
    allow_insecure_http: bool,
}

// ===== impl Flow =====

impl Flow {
    /// Default bound on one request, from sending it to reading the whole
    /// answer: 30 s, as for OAuth 2 token endpoints.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    /// Default cap on an answer: 64 KiB. Credentials responses are a few
    /// hundred bytes of form; a larger body is a broken or hostile server.
    pub const DEFAULT_MAX_RESPONSE_SIZE: usize = 64 * 1024;

    /// A flow for `client`. Signature method and placement default as for
    /// [`Signer::new`]; the HTTP client to [`HttpClient::default`] with the
    /// `rustls` feature, and must be given with [`Flow::http_client`]
    /// without it.
    pub fn new(client: ClientCredentials) -> Self {
        Self {
            signer: Signer::new(client),
            http: default_client(),
            timeout: Self::DEFAULT_TIMEOUT,
            max_response_size: Self::DEFAULT_MAX_RESPONSE_SIZE,
            allow_insecure_http: false,
        }
    }

    /// The HTTP client the flow's requests go through. Defaults to
    /// [`HttpClient::default`] with the `rustls` feature.
    pub fn http_client(mut self, client: HttpClient) -> Self {
        self.http = Some(client);
        self
    }

    /// The signature method, for the flow and for [`Flow::layer`]. Defaults
    /// to `RSA-SHA1` for RSA credentials, `HMAC-SHA1` otherwise.
    pub fn method(mut self, method: SignatureMethod) -> Self {
        self.signer = self.signer.method(method);
        self
    }

    /// Where the protocol parameters go, for the flow and for
    /// [`Flow::layer`]. Defaults to [`Placement::Header`].
    pub fn placement(mut self, placement: Placement) -> Self {
        self.signer = self.signer.placement(placement);
        self
    }

    /// The `realm` of the `Authorization` header. Defaults to none.
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.signer = self.signer.realm(realm);
        self
    }

    /// Bounds one request. Defaults to [`Flow::DEFAULT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Caps an answer's body. Defaults to
    /// [`Flow::DEFAULT_MAX_RESPONSE_SIZE`].
    pub fn max_response_size(mut self, bytes: usize) -> Self {
        self.max_response_size = bytes;
        self
    }

    /// Allows plain `http` to hosts that are not loopback. Defaults to
    /// `false`.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Step 1 (§2.1): asks the temporary credentials endpoint for a request
    /// token, with `callback` as `oauth_callback` (`"oob"` when the user
    /// will copy the verifier by hand).
    ///
    /// The answer must carry `oauth_token`, `oauth_token_secret` and
    /// `oauth_callback_confirmed=true`, compared without regard to case
    /// (Authlib's provider sends `True`); without the last, or with another
    /// value, the error says
    /// [`is_callback_not_confirmed`](Error::is_callback_not_confirmed).
    pub async fn request_token(
        &self,
        url: &str,
        callback: &str,
    ) -> Result<TemporaryCredentials, Error> {
        let signer = self.signer.clone().callback(callback);
        let pairs = self.post(url, &signer).await?;
        let (token, secret) = credentials(&pairs)?;
        let confirmed = pairs.iter().any(|(name, value)| {
            name == "oauth_callback_confirmed" && value.eq_ignore_ascii_case("true")
        });
        if !confirmed {
            return Err(Error::callback_not_confirmed());
        }
        Ok(TemporaryCredentials::new(token, secret))
    }

    /// Step 2 (§2.2): the resource owner authorization URL, `url` with
    /// `oauth_token` added to its query (any query it has is kept).
    pub fn authorization_url(
        &self,
        url: &str,
        temporary: &TemporaryCredentials,
    ) -> Result<String, Error> {
        let (base, fragment) = match url.split_once('#') {
            Some((base, fragment)) => (base, Some(fragment)),
            None => (url, None),
        };
        self.check_url(base, "authorization URL")?;
        let token = form_urlencoded::Serializer::new(String::new())
            .append_pair("oauth_token", temporary.token())
            .finish();
        let separator = match base.find('?') {
            None => "?",
            Some(at) if at + 1 == base.len() || base.ends_with('&') => "",
            Some(_) => "&",
        };
        let mut out = format!("{base}{separator}{token}");
        if let Some(fragment) = fragment {
            out.push('#');
            out.push_str(fragment);
        }
        Ok(out)
    }

    /// Step 3 (§2.2): reads the callback the provider redirected the user
    /// to, a whole URL or just its query, and returns its `oauth_verifier`.
    ///
    /// Fails with [`is_token_mismatch`](Error::is_token_mismatch) when its
    /// `oauth_token` is not `temporary`'s, and with
    /// [`is_callback`](Error::is_callback) when a parameter is missing or the
    /// user denied access.
    pub fn parse_callback(
        &self,
        callback: &str,
        temporary: &TemporaryCredentials,
    ) -> Result<Verifier, Error> {
        let query = match callback.split_once('?') {
            Some((_, query)) => query,
            None => callback,
        };
        let query = query.split('#').next().unwrap_or_default();
        // A provider's `oauth_problem` could quote what it was sent.
        let mut sent = self.signer.secrets();
        sent.add(temporary.secret());
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            if name == "oauth_verifier" {
                sent.add(value);
            }
        }
        self.read_callback(query, temporary)
            .map_err(|e| e.scrubbed(&sent))
    }

    fn read_callback(
        &self,
        query: &str,
        temporary: &TemporaryCredentials,
    ) -> Result<Verifier, Error> {
        let mut token = None;
        let mut verifier = None;
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*name {
                "oauth_token" => token = Some(value.into_owned()),
                "oauth_verifier" => verifier = Some(value.into_owned()),
                "denied" => return Err(Error::callback("the user denied access")),
                "oauth_problem" => {
                    return Err(Error::callback(format!("the provider reported {value}")))
                }
                _ => {}
            }
        }
        let token = token.ok_or_else(|| Error::callback("no oauth_token in the callback"))?;
        if token != temporary.token() {
            return Err(Error::token_mismatch());
        }
        let verifier =
            verifier.ok_or_else(|| Error::callback("no oauth_verifier in the callback"))?;
        Ok(Verifier::new(verifier))
    }

    /// Step 4 (§2.3): exchanges the verifier for token credentials, with a
    /// request signed by the temporary credentials.
    pub async fn access_token(
        &self,
        url: &str,
        temporary: &TemporaryCredentials,
        verifier: &Verifier,
    ) -> Result<TokenCredentials, Error> {
        let signer = self
            .signer
            .clone()
            .token(TokenCredentials::new(temporary.token(), temporary.secret()))
            .verifier(verifier.clone());
        let pairs = self.post(url, &signer).await?;
        let (token, secret) = credentials(&pairs)?;
        Ok(TokenCredentials::new(token, secret))
    }

    /// An [`OAuth1Layer`] that signs with the flow's client credentials,
    /// method, placement and realm, and `token`.
    pub fn layer(&self, token: TokenCredentials) -> OAuth1Layer {
        OAuth1Layer::from_signer(self.signer.clone().token(token))
    }

    /// The crate's one URL rule (`crate::http::checked_url`): absolute
    /// http(s), https unless loopback or `allow_insecure_http`, a valid
    /// port, no userinfo.
    fn check_url(&self, url: &str, what: &str) -> Result<Uri, Error> {
        let plain_http = if self.allow_insecure_http {
            PlainHttp::Allowed
        } else {
            PlainHttp::LoopbackOnly
        };
        url_problem(url, what, plain_http).map_err(Error::config)
    }

    /// POSTs an empty, signed request to `url` and reads the form answer.
    async fn post(&self, url: &str, signer: &Signer) -> Result<Vec<(String, String)>, Error> {
        let uri = self.check_url(url, "provider URL")?;
        let http = self.http.clone().ok_or_else(|| {
            Error::config("no HTTP client: enable the `rustls` feature or call `http_client`")
        })?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .body(Full::<Bytes>::default())
            .map_err(|_| Error::config("cannot build the provider request"))?;
        let (request, sent) = signer.sign_naming_secrets(request)?;
        let limit = self.max_response_size;
        let answer = tokio::time::timeout(self.timeout, http.fetch(request, limit))
            .await
            .map_err(|_| Error::timeout())?;
        let (parts, body) = answer.map_err(|e| {
            e.map(limit, Error::transport, |status, reason| {
                Error::invalid_response(status, reason, &[])
            })
        })?;
        let status = parts.status;
        tracing::debug!(
            status = status.as_u16(),
            bytes = body.len(),
            "OAuth 1 provider answered"
        );
        parse_answer(status, &body).map_err(|e| e.answered(status, &body, &sent))
    }
}

impl fmt::Debug for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flow")
            .field("signer", &self.signer)
            .field("http", &self.http)
            .field("timeout", &self.timeout)
            .field("max_response_size", &self.max_response_size)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish()
    }
}

/// Reads a credentials answer (§2.1, §2.3): a form on success; on failure,
/// the `oauth_problem` if the provider sent one.
fn parse_answer(status: StatusCode, body: &[u8]) -> Result<Vec<(String, String)>, Error> {
    let pairs = form_pairs(body);
    let problem = pairs.as_ref().and_then(|pairs| {
        pairs
            .iter()
            .find(|(name, _)| name == "oauth_problem")
            .map(|(_, value)| value.clone())
    });
    if !status.is_success() || problem.is_some() {
        return Err(Error::status(status, problem, body));
    }
    match pairs {
        Some(pairs) => Ok(pairs),
        None if std::str::from_utf8(body).is_err() => Err(Error::invalid_response(
            status,
            "response is not UTF-8",
            body,
        )),
        None => Err(Error::invalid_response(
            status,
            "response is not application/x-www-form-urlencoded",
            body,
        )),
    }
}

/// `oauth_token` and `oauth_token_secret` from an answer.
fn credentials(pairs: &[(String, String)]) -> Result<(String, String), Error> {
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.clone())
    };
    let missing = |what: &str| Error::invalid_response(StatusCode::OK, what.to_owned(), &[]);
    let token = get("oauth_token")
        .filter(|token| !token.is_empty())
        .ok_or_else(|| missing("oauth_token is missing"))?;
    let secret =
        get("oauth_token_secret").ok_or_else(|| missing("oauth_token_secret is missing"))?;
    Ok((token, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> Flow {
        Flow::new(ClientCredentials::new("ck", "cs"))
    }

    fn temporary() -> TemporaryCredentials {
        TemporaryCredentials::new("hh5s93j4hdidpola", "hdhd0244k9j7ao03")
    }

    #[test]
    fn authorization_url_adds_the_token() {
        let f = flow();
        let t = temporary();
        let url = f
            .authorization_url("https://p.example/authorize", &t)
            .unwrap();
        assert_eq!(
            url,
            "https://p.example/authorize?oauth_token=hh5s93j4hdidpola"
        );
        let url = f
            .authorization_url("https://p.example/authorize?lang=fr#top", &t)
            .unwrap();
        assert_eq!(
            url,
            "https://p.example/authorize?lang=fr&oauth_token=hh5s93j4hdidpola#top"
        );
    }

    #[test]
    fn authorization_url_must_be_https() {
        let e = flow()
            .authorization_url("http://p.example/authorize", &temporary())
            .unwrap_err();
        assert!(e.is_config());
    }

    #[test]
    fn callback_gives_the_verifier() {
        let v = flow()
            .parse_callback(
                "https://app.example/cb?oauth_token=hh5s93j4hdidpola&oauth_verifier=hfdp7dh39dks9884",
                &temporary(),
            )
            .unwrap();
        assert_eq!(v.secret(), "hfdp7dh39dks9884");
        let v = flow()
            .parse_callback(
                "oauth_token=hh5s93j4hdidpola&oauth_verifier=x",
                &temporary(),
            )
            .unwrap();
        assert_eq!(v.secret(), "x");
    }

    #[test]
    fn callback_with_another_token_is_a_mismatch() {
        let e = flow()
            .parse_callback(
                "https://app.example/cb?oauth_token=other&oauth_verifier=v",
                &temporary(),
            )
            .unwrap_err();
        assert!(e.is_token_mismatch());
        assert!(!e.to_string().contains("hh5s93j4hdidpola"));
    }

    #[test]
    fn callback_without_verifier_or_denied_is_a_callback_error() {
        for callback in [
            "https://app.example/cb?oauth_token=hh5s93j4hdidpola",
            "https://app.example/cb?denied=hh5s93j4hdidpola",
            "https://app.example/cb",
        ] {
            let e = flow().parse_callback(callback, &temporary()).unwrap_err();
            assert!(e.is_callback(), "{callback}: {e}");
        }
    }

    #[test]
    fn provider_errors_carry_the_problem() {
        let e = parse_answer(
            StatusCode::UNAUTHORIZED,
            b"oauth_problem=signature_invalid&oauth_problem_advice=check%20the%20key",
        )
        .unwrap_err();
        assert!(e.is_status());
        assert_eq!(e.problem(), Some("signature_invalid"));
        assert_eq!(e.status_code(), Some(StatusCode::UNAUTHORIZED));
        let e = parse_answer(StatusCode::BAD_REQUEST, b"Invalid consumer key").unwrap_err();
        assert!(e.is_status() && e.problem().is_none());
        assert_eq!(e.body_excerpt(), Some("Invalid consumer key"));
    }

    #[test]
    fn success_bodies_must_be_forms_with_credentials() {
        for body in [
            &b"{\"oauth_token\":\"a\"}"[..],
            b"\xff=1",
            b"oauth_token_secret=s",
        ] {
            let e = parse_answer(StatusCode::OK, body)
                .and_then(|pairs| credentials(&pairs))
                .unwrap_err();
            assert!(e.is_invalid_response(), "{e}");
        }
    }

    // ===== over a fake provider =====

    use std::sync::{Arc, Mutex};

    use http::Response;
    use tower::service_fn;

    type Seen = Arc<Mutex<Vec<Request<Full<Bytes>>>>>;

    /// A flow whose HTTP client answers `status` and `body` to everything,
    /// and keeps the requests it was sent.
    fn fake(status: u16, body: &'static str) -> (Flow, Seen) {
        let seen = Seen::default();
        let log = seen.clone();
        let client = HttpClient::new(service_fn(move |request: Request<Full<Bytes>>| {
            log.lock().unwrap().push(request);
            async move {
                let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
                *response.status_mut() = StatusCode::from_u16(status).unwrap();
                Ok::<_, std::convert::Infallible>(response)
            }
        }));
        (flow().http_client(client), seen)
    }

    const REQUEST_TOKEN_URL: &str = "https://p.example/request_token";

    #[tokio::test]
    async fn request_token_sends_a_signed_post_with_the_callback() {
        let (flow, seen) = fake(
            200,
            "oauth_token=rt&oauth_token_secret=rs&oauth_callback_confirmed=true",
        );
        let temporary = flow
            .request_token(REQUEST_TOKEN_URL, "https://app.example/cb")
            .await
            .unwrap();
        assert_eq!((temporary.token(), temporary.secret()), ("rt", "rs"));
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0].method(), Method::POST);
        let authorization = seen[0].headers()["authorization"].to_str().unwrap();
        assert!(authorization.contains("oauth_callback=\"https%3A%2F%2Fapp.example%2Fcb\""));
        assert!(authorization.contains("oauth_signature=\""));
    }

    #[tokio::test]
    async fn request_token_accepts_the_confirmation_in_any_case() {
        // Authlib's provider answers `True` (Python's `str(True)`).
        for confirmed in ["true", "True", "TRUE"] {
            let body = format!(
                "oauth_token=rt&oauth_token_secret=rs&oauth_callback_confirmed={confirmed}"
            );
            let (flow, _) = fake(200, Box::leak(body.into_boxed_str()));
            let temporary = flow.request_token(REQUEST_TOKEN_URL, "oob").await;
            assert_eq!(temporary.unwrap().token(), "rt", "{confirmed}");
        }
    }

    #[tokio::test]
    async fn request_token_requires_the_callback_to_be_confirmed() {
        for body in [
            "oauth_token=rt&oauth_token_secret=rs",
            "oauth_token=rt&oauth_token_secret=rs&oauth_callback_confirmed=false",
            "oauth_token=rt&oauth_token_secret=rs&oauth_callback_confirmed=False",
            "oauth_token=rt&oauth_token_secret=rs&oauth_callback_confirmed=",
            "oauth_token=rt&oauth_token_secret=rs&oauth_callback_confirmed=1",
            "oauth_token=rt&oauth_token_secret=rs&oauth_callback_confirmed=truex",
        ] {
            let (flow, _) = fake(200, body);
            let e = flow
                .request_token(REQUEST_TOKEN_URL, "oob")
                .await
                .unwrap_err();
            assert!(e.is_callback_not_confirmed(), "{body}: {e}");
        }
    }

    #[tokio::test]
    async fn access_token_sends_the_verifier_signed_with_the_temporary_token() {
        let (flow, seen) = fake(200, "oauth_token=at&oauth_token_secret=as&user_id=7");
        let token = flow
            .access_token(
                "https://p.example/access_token",
                &temporary(),
                &Verifier::new("hfdp7dh39dks9884"),
            )
            .await
            .unwrap();
        assert_eq!((token.token(), token.secret()), ("at", "as"));
        let seen = seen.lock().unwrap();
        let authorization = seen[0].headers()["authorization"].to_str().unwrap();
        assert!(authorization.contains("oauth_token=\"hh5s93j4hdidpola\""));
        assert!(authorization.contains("oauth_verifier=\"hfdp7dh39dks9884\""));
    }

    #[tokio::test]
    async fn access_token_reports_the_providers_problem() {
        let (flow, _) = fake(401, "oauth_problem=verifier_invalid");
        let e = flow
            .access_token(
                "https://p.example/access_token",
                &temporary(),
                &Verifier::new("hfdp7dh39dks9884"),
            )
            .await
            .unwrap_err();
        assert!(e.is_status());
        assert_eq!(e.problem(), Some("verifier_invalid"));
        assert_eq!(e.status_code(), Some(StatusCode::UNAUTHORIZED));
    }

    #[tokio::test]
    async fn oversized_answers_are_invalid_responses() {
        let (flow, _) = fake(200, "oauth_token=rt&oauth_token_secret=rs");
        let e = flow
            .max_response_size(8)
            .request_token(REQUEST_TOKEN_URL, "oob")
            .await
            .unwrap_err();
        assert!(e.is_invalid_response(), "{e}");
    }

    #[tokio::test]
    async fn plain_http_to_a_remote_provider_is_refused_before_sending() {
        let (flow, seen) = fake(200, "");
        let e = flow
            .request_token("http://p.example/request_token", "oob")
            .await
            .unwrap_err();
        assert!(e.is_config());
        assert!(seen.lock().unwrap().is_empty());
    }
}
