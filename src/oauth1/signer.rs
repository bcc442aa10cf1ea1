//! `Signer`: signs one `http::Request` as RFC 5849 §3 says.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::{
    header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST},
    uri::PathAndQuery,
    HeaderMap, HeaderValue, Request, Uri,
};

use super::{
    signature::{self, encode},
    ClientCredentials, Error, Placement, SignableBody, SignatureMethod, TokenCredentials, Verifier,
};
use crate::redact::SentSecrets;

const FORM: &str = "application/x-www-form-urlencoded";

/// Length of a generated `oauth_nonce`, in alphanumeric characters.
const NONCE_LEN: usize = 32;

/// Signs requests with OAuth 1.0a (RFC 5849): the credentials and choices
/// that make `oauth_signature`, without any service around it.
///
/// [`OAuth1Layer`](super::OAuth1Layer) signs every request with one; use a
/// `Signer` directly to sign a request by hand, or with a fixed nonce and
/// timestamp ([`Signer::sign_with`]) to reproduce a signature.
///
/// ```
/// use tower_alf::oauth1::{ClientCredentials, Signer, TokenCredentials};
///
/// // RFC 5849 §1.2: the client asks for the photo.
/// let signer = Signer::new(ClientCredentials::new("dpf43f3p2l4k3l03", "kd94hf93k423kf44"))
///     .token(TokenCredentials::new("nnch734d00sl2jdk", "pfkkdhi9sl3r4s00"))
///     .realm("Photos")
///     .version(false); // the RFC's example sends no oauth_version
/// let request = http::Request::get("http://photos.example.net/photos?file=vacation.jpg&size=original")
///     .body(String::new())
///     .unwrap();
/// let signed = signer.sign_with(request, "chapoH", 137131202).unwrap();
/// let authorization = signed.headers()["authorization"].to_str().unwrap();
/// assert!(authorization.starts_with(r#"OAuth realm="Photos", oauth_consumer_key="dpf43f3p2l4k3l03""#));
/// assert!(authorization.contains(r#"oauth_signature="MdpQcU8iPSUjWoN%2FUDMsK2sui9I%3D""#));
/// ```
#[derive(Debug, Clone)]
pub struct Signer {
    client: ClientCredentials,
    token: Option<TokenCredentials>,
    method: SignatureMethod,
    placement: Placement,
    realm: Option<String>,
    callback: Option<String>,
    verifier: Option<Verifier>,
    version: bool,
    body_hash: bool,
}

// ===== impl Signer =====

impl Signer {
    /// A signer for `client`, with no token yet. The method defaults to
    /// `RSA-SHA1` for RSA credentials and `HMAC-SHA1` otherwise; the
    /// placement to the `Authorization` header.
    pub fn new(client: ClientCredentials) -> Self {
        let method = if client.rsa_key().is_some() {
            SignatureMethod::RsaSha1
        } else {
            SignatureMethod::HmacSha1
        };
        Self {
            client,
            token: None,
            method,
            placement: Placement::Header,
            realm: None,
            callback: None,
            verifier: None,
            version: true,
            body_hash: false,
        }
    }

    /// Signs with these token credentials (`oauth_token`, and the token
    /// secret in the key). Defaults to none: requests signed with the
    /// client credentials alone ("two-legged").
    pub fn token(mut self, token: TokenCredentials) -> Self {
        self.token = Some(token);
        self
    }

    /// The signature method. Defaults to `RSA-SHA1` for RSA credentials,
    /// `HMAC-SHA1` otherwise.
    pub fn method(mut self, method: SignatureMethod) -> Self {
        self.method = method;
        self
    }

    /// Where the protocol parameters go. Defaults to
    /// [`Placement::Header`].
    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    /// The `realm` of the `Authorization` header (§3.5.1); not signed, and
    /// only sent with header placement. Defaults to none.
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// Sends `oauth_callback` (§2.1), the URI the provider redirects the
    /// user to (`oob` for out-of-band). Defaults to none.
    pub fn callback(mut self, callback: impl Into<String>) -> Self {
        self.callback = Some(callback.into());
        self
    }

    /// Sends `oauth_verifier` (§2.3). Defaults to none.
    pub fn verifier(mut self, verifier: Verifier) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// Whether to send `oauth_version="1.0"`, which RFC 5849 makes
    /// optional. Defaults to `true`: Authlib and oauthlib send it, and some
    /// providers refuse requests without it.
    pub fn version(mut self, send: bool) -> Self {
        self.version = send;
        self
    }

    /// Whether to send `oauth_body_hash` (the OAuth Request Body Hash
    /// extension) for requests whose body is not a form: Base64 of the
    /// body's digest with the signature method's hash (SHA-1 for
    /// `PLAINTEXT`), so the signature covers a JSON or binary body too. Form
    /// bodies never get one; their parameters are signed instead. Defaults
    /// to `false`.
    pub fn body_hash(mut self, send: bool) -> Self {
        self.body_hash = send;
        self
    }

    /// The client credentials.
    pub fn client(&self) -> &ClientCredentials {
        &self.client
    }

    /// The signature method.
    pub fn signature_method(&self) -> SignatureMethod {
        self.method
    }

    /// The placement of the protocol parameters.
    pub fn parameter_placement(&self) -> Placement {
        self.placement
    }

    /// Checks that the configuration can sign: an RSA method needs RSA
    /// credentials, a `realm` must fit in a header. [`OAuth1Layer`] signing
    /// fails on each request otherwise; call this once at start-up to fail
    /// early.
    ///
    /// [`OAuth1Layer`]: super::OAuth1Layer
    pub fn check(&self) -> Result<(), Error> {
        if self.method.is_rsa() && self.client.rsa_key().is_none() {
            return Err(Error::config(format!(
                "{} needs an RSA private key (ClientCredentials::rsa)",
                self.method
            )));
        }
        if let Some(realm) = &self.realm {
            quoted(realm)?;
        }
        Ok(())
    }

    /// Signs `request` with a fresh nonce and the current time.
    pub fn sign<B: SignableBody>(&self, request: Request<B>) -> Result<Request<B>, Error> {
        self.sign_with(request, &nonce(), timestamp())
    }

    /// Signs `request` with this `oauth_nonce` and `oauth_timestamp`
    /// (seconds since the Unix epoch), to reproduce a signature. A nonce
    /// must never be reused with the same timestamp and token: use
    /// [`Signer::sign`] for real requests.
    pub fn sign_with<B: SignableBody>(
        &self,
        request: Request<B>,
        nonce: &str,
        timestamp: u64,
    ) -> Result<Request<B>, Error> {
        self.sign_with_base_string(request, nonce, timestamp)
            .map(|(request, _)| request)
    }

    /// Like [`Signer::sign_with`], and also returns the signature base
    /// string (§3.4.1.1), to compare with the one a provider computed.
    pub fn sign_with_base_string<B: SignableBody>(
        &self,
        request: Request<B>,
        nonce: &str,
        timestamp: u64,
    ) -> Result<(Request<B>, String), Error> {
        self.sign_all(request, nonce, timestamp)
            .map(|(request, base_string, _)| (request, base_string))
    }

    /// Signs `request` like [`Signer::sign`], and names every secret the
    /// signed request carries or was made from, to scrub by value from
    /// whatever the provider answers: the consumer and token secrets (which
    /// `PLAINTEXT` sends), the verifier, the signature.
    pub(crate) fn sign_naming_secrets<B: SignableBody>(
        &self,
        request: Request<B>,
    ) -> Result<(Request<B>, SentSecrets), Error> {
        let (request, _, signature) = self.sign_all(request, &nonce(), timestamp())?;
        let mut sent = self.secrets();
        sent.add(signature);
        Ok((request, sent))
    }

    /// The secrets this signer holds (consumer secret, token secret,
    /// verifier), for scrubbing by value.
    pub(crate) fn secrets(&self) -> SentSecrets {
        let mut sent = SentSecrets::default();
        sent.add(self.client.secret());
        if let Some(token) = &self.token {
            sent.add(token.secret());
        }
        if let Some(verifier) = &self.verifier {
            sent.add(verifier.secret());
        }
        sent
    }

    /// The request signed, its base string, and the signature.
    fn sign_all<B: SignableBody>(
        &self,
        request: Request<B>,
        nonce: &str,
        timestamp: u64,
    ) -> Result<(Request<B>, String, String), Error> {
        let (mut parts, body) = request.into_parts();
        let mut is_form = is_form(&parts.headers);
        let needs_body = is_form || self.body_hash || self.placement == Placement::Body;
        let (mut body, bytes) = if needs_body {
            match body.try_into_bytes() {
                Ok(bytes) => (None, Some(bytes)),
                Err(_) => {
                    return Err(Error::body(
                        "the body cannot be read without waiting; send a Full<Bytes> \
                         (see SignableBody)",
                    ))
                }
            }
        } else {
            (Some(body), None)
        };
        let bytes = bytes.unwrap_or_default();
        if self.placement == Placement::Body && !is_form {
            if !bytes.is_empty() || parts.headers.contains_key(CONTENT_TYPE) {
                return Err(Error::body(
                    "body placement needs an application/x-www-form-urlencoded body, or none",
                ));
            }
            parts
                .headers
                .insert(CONTENT_TYPE, HeaderValue::from_static(FORM));
            is_form = true;
        }
        // NOTE: a stale `oauth_signature` in the query or the form is never
        // signed (§3.4.1.3.1) nor sent: the one computed below is the only
        // one the provider sees, whatever the placement.
        if let Some(query) = parts.uri.query() {
            if let Some(kept) = signature::without_signature(query.as_bytes()) {
                let kept = String::from_utf8(kept)
                    .map_err(|_| Error::config("cannot build the signed request URI"))?;
                parts.uri = with_query(&parts.uri, &kept, &[])?;
            }
        }
        let bytes = match signature::without_signature(&bytes) {
            Some(kept) if is_form => Bytes::from(kept),
            _ => bytes,
        };

        let body_hash = (self.body_hash && !is_form).then(|| self.method.body_hash(&bytes));
        let mut protocol = self.protocol_parameters(nonce, timestamp);
        if let Some(hash) = body_hash {
            protocol.push(("oauth_body_hash", hash));
        }

        let mut hosts = parts.headers.get_all(HOST).iter();
        let host = hosts.next().map(HeaderValue::as_bytes);
        if hosts.next().is_some() {
            return Err(Error::config("the request has more than one Host header"));
        }
        let base_string = signature::request_base_string(
            &parts.method,
            &parts.uri,
            host,
            is_form.then_some(&bytes[..]),
            protocol.iter().map(|(name, value)| (name, value)),
        )?;
        let token_secret = self.token.as_ref().map_or("", |t| t.secret());
        let oauth_signature = self.method.sign(
            &base_string,
            self.client.secret(),
            token_secret,
            self.client.rsa_key(),
        )?;
        protocol.push(("oauth_signature", oauth_signature.clone()));

        let bytes = match self.placement {
            Placement::Header => {
                let value = self.authorization(&protocol)?;
                parts.headers.insert(AUTHORIZATION, value);
                bytes
            }
            Placement::Query => {
                let query = parts.uri.query().unwrap_or_default().to_owned();
                parts.uri = with_query(&parts.uri, &query, &protocol)?;
                bytes
            }
            Placement::Body => {
                let mut out = BytesMut::from(&bytes[..]);
                for (name, value) in &protocol {
                    if !out.is_empty() {
                        out.extend_from_slice(b"&");
                    }
                    out.extend_from_slice(name.as_bytes());
                    out.extend_from_slice(b"=");
                    out.extend_from_slice(encode(value.as_bytes()).as_bytes());
                }
                out.freeze()
            }
        };
        // NOTE: a body that was read is rebuilt from `bytes`, which may have
        // grown (body placement) or shrunk (a stale signature removed).
        if body.is_none() && parts.headers.contains_key(CONTENT_LENGTH) {
            parts
                .headers
                .insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        }
        let body = match body.take() {
            Some(body) => body,
            None => B::from_bytes(bytes)
                .ok_or_else(|| Error::body("this body type cannot hold the signed body"))?,
        };
        Ok((
            Request::from_parts(parts, body),
            base_string,
            oauth_signature,
        ))
    }

    /// The protocol parameters but the signature, unencoded, in the order
    /// they are sent.
    fn protocol_parameters(&self, nonce: &str, timestamp: u64) -> Vec<(&'static str, String)> {
        let mut params = Vec::with_capacity(10);
        params.push(("oauth_consumer_key", self.client.key().to_owned()));
        if let Some(token) = &self.token {
            params.push(("oauth_token", token.token().to_owned()));
        }
        params.push(("oauth_signature_method", self.method.as_str().to_owned()));
        params.push(("oauth_timestamp", timestamp.to_string()));
        params.push(("oauth_nonce", nonce.to_owned()));
        if self.version {
            params.push(("oauth_version", "1.0".to_owned()));
        }
        if let Some(callback) = &self.callback {
            params.push(("oauth_callback", callback.clone()));
        }
        if let Some(verifier) = &self.verifier {
            params.push(("oauth_verifier", verifier.secret().to_owned()));
        }
        params
    }

    /// `Authorization: OAuth realm="…", name="value", …` (§3.5.1), marked
    /// sensitive.
    fn authorization(&self, protocol: &[(&'static str, String)]) -> Result<HeaderValue, Error> {
        let mut value = String::from("OAuth ");
        if let Some(realm) = &self.realm {
            value.push_str("realm=");
            value.push_str(&quoted(realm)?);
            value.push_str(", ");
        }
        for (i, (name, param)) in protocol.iter().enumerate() {
            if i > 0 {
                value.push_str(", ");
            }
            value.push_str(name);
            value.push_str("=\"");
            value.push_str(&encode(param.as_bytes()));
            value.push('"');
        }
        let mut value = HeaderValue::try_from(value)
            .map_err(|_| Error::config("the realm cannot be sent in a header"))?;
        value.set_sensitive(true);
        Ok(value)
    }
}

/// A quoted-string (RFC 2616 §2.2) for `realm`.
fn quoted(text: &str) -> Result<String, Error> {
    if text.chars().any(|c| !(c == ' ' || c.is_ascii_graphic())) {
        return Err(Error::config(
            "the realm must be printable ASCII to be sent in a header",
        ));
    }
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    Ok(out)
}

/// Whether the first `Content-Type` is a form, read from its bytes: a
/// parameter with non-ASCII octets (`charset="é"`) must not turn a form the
/// provider will parse into a body the signer ignores.
fn is_form(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|value| {
        let bytes = value.as_bytes();
        let mime = bytes.split(|&b| b == b';').next().unwrap_or_default();
        mime.trim_ascii().eq_ignore_ascii_case(FORM.as_bytes())
    })
}

/// `uri` with `query` for its query, and the protocol parameters appended
/// to it (§3.5.3); no `?` when both are empty.
fn with_query(uri: &Uri, query: &str, protocol: &[(&'static str, String)]) -> Result<Uri, Error> {
    let mut query = query.to_owned();
    for (name, value) in protocol {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(name);
        query.push('=');
        query.push_str(&encode(value.as_bytes()));
    }
    let invalid = |_| Error::config("cannot build the signed request URI");
    let mut parts = uri.clone().into_parts();
    let path_and_query = if query.is_empty() {
        uri.path().to_owned()
    } else {
        format!("{}?{query}", uri.path())
    };
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).map_err(invalid)?);
    Uri::from_parts(parts).map_err(|_| Error::config("cannot build the signed request URI"))
}

/// A fresh `oauth_nonce`: 32 alphanumeric characters (about 190 bits).
///
/// The nonce lets the provider refuse a replayed request (§3.3); it must be
/// unique, not secret, since the signature is what cannot be forged. So it
/// comes from `fastrand` (already a dependency, seeded per thread from the
/// OS) rather than a cryptographic generator.
fn nonce() -> String {
    std::iter::repeat_with(fastrand::alphanumeric)
        .take(NONCE_LEN)
        .collect()
}

/// Seconds since the Unix epoch, by the wall clock (§3.3); 0 if the clock
/// is set before 1970.
fn timestamp() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::Method;
    use http_body_util::{combinators::BoxBody, BodyExt, Full};

    fn hmac_signer() -> Signer {
        Signer::new(ClientCredentials::new("ck", "cs")).token(TokenCredentials::new("tk", "ts"))
    }

    #[test]
    fn nonces_are_fresh_and_alphanumeric() {
        let (a, b) = (nonce(), nonce());
        assert_ne!(a, b);
        assert_eq!(a.len(), NONCE_LEN);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn header_placement_marks_the_header_sensitive() {
        let request = Request::get("http://example.com/")
            .body(Bytes::new())
            .unwrap();
        let signed = hmac_signer().sign(request).unwrap();
        assert!(signed.headers()[AUTHORIZATION].is_sensitive());
    }

    #[test]
    fn query_placement_appends_to_the_query() {
        let signer = hmac_signer().placement(Placement::Query);
        let request = Request::get("http://example.com/a?b=1")
            .body(Bytes::new())
            .unwrap();
        let signed = signer.sign_with(request, "n", 1).unwrap();
        let query = signed.uri().query().unwrap();
        assert!(query.starts_with("b=1&oauth_consumer_key=ck&oauth_token=tk&"));
        assert!(query.contains("&oauth_signature="));
        assert!(!signed.headers().contains_key(AUTHORIZATION));

        let request = Request::get("http://example.com/a")
            .body(Bytes::new())
            .unwrap();
        let signed = signer.sign_with(request, "n", 1).unwrap();
        assert!(signed
            .uri()
            .query()
            .unwrap()
            .starts_with("oauth_consumer_key=ck&"));
    }

    #[test]
    fn query_placement_on_a_uri_without_a_path() {
        let signer = hmac_signer().placement(Placement::Query);
        let request = Request::get("http://example.com?b=1")
            .body(Bytes::new())
            .unwrap();
        let (signed, base) = signer.sign_with_base_string(request, "n", 1).unwrap();
        assert!(base.starts_with("GET&http%3A%2F%2Fexample.com%2F&b%3D1%26"));
        assert_eq!(signed.uri().path(), "/");
        assert!(signed
            .uri()
            .query()
            .unwrap()
            .starts_with("b=1&oauth_consumer_key=ck&"));
    }

    #[test]
    fn body_placement_makes_a_form_of_an_empty_body() {
        let signer = hmac_signer().placement(Placement::Body);
        let request = Request::post("http://example.com/")
            .body(Bytes::new())
            .unwrap();
        let signed = signer.sign_with(request, "n", 1).unwrap();
        assert_eq!(signed.headers()[CONTENT_TYPE], FORM);
        assert!(signed.into_body().starts_with(b"oauth_consumer_key=ck&"));
    }

    #[test]
    fn body_placement_appends_to_a_form_and_fixes_its_length() {
        let signer = hmac_signer().placement(Placement::Body);
        let request = Request::post("http://example.com/")
            .header(CONTENT_TYPE, FORM)
            .header(CONTENT_LENGTH, 3)
            .body(Bytes::from_static(b"a=1"))
            .unwrap();
        let signed = signer.sign_with(request, "n", 1).unwrap();
        let length: usize = signed.headers()[CONTENT_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = signed.into_body();
        assert!(body.starts_with(b"a=1&oauth_consumer_key=ck&"));
        assert_eq!(length, body.len());
    }

    #[test]
    fn body_placement_refuses_a_json_body() {
        let signer = hmac_signer().placement(Placement::Body);
        let request = Request::post("http://example.com/")
            .header(CONTENT_TYPE, "application/json")
            .body(Bytes::from_static(b"{}"))
            .unwrap();
        assert!(signer.sign(request).unwrap_err().is_body());
    }

    #[test]
    fn a_non_utf8_form_body_is_a_body_error() {
        let request = Request::post("http://example.com/")
            .header(CONTENT_TYPE, FORM)
            .body(Bytes::from_static(b"a=\xff"))
            .unwrap();
        assert!(hmac_signer().sign(request).unwrap_err().is_body());
    }

    #[test]
    fn a_boxed_form_body_is_a_body_error() {
        let body: BoxBody<Bytes, std::convert::Infallible> = Full::new(Bytes::new()).boxed();
        let request = Request::post("http://example.com/")
            .header(CONTENT_TYPE, FORM)
            .body(body)
            .unwrap();
        assert!(hmac_signer().sign(request).unwrap_err().is_body());
    }

    #[test]
    fn a_boxed_body_that_takes_no_part_is_signed() {
        let body: BoxBody<Bytes, std::convert::Infallible> = Full::new(Bytes::new()).boxed();
        let request = Request::post("http://example.com/")
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .unwrap();
        assert!(hmac_signer().sign(request).is_ok());
    }

    #[test]
    fn body_hash_covers_non_form_bodies_only() {
        let signer = hmac_signer().body_hash(true);
        let json = Request::post("http://example.com/")
            .header(CONTENT_TYPE, "application/json")
            .body(Bytes::from_static(b"Hello World!"))
            .unwrap();
        let (_, base) = signer.sign_with_base_string(json, "n", 1).unwrap();
        // The Body Hash draft's example: SHA-1 of "Hello World!".
        assert!(base.contains("oauth_body_hash%3DLve95gjOVATpfV8EL5X4nxwjKHE%253D"));

        let form = Request::post("http://example.com/")
            .header(CONTENT_TYPE, FORM)
            .body(Bytes::from_static(b"a=1"))
            .unwrap();
        let (_, base) = signer.sign_with_base_string(form, "n", 1).unwrap();
        assert!(!base.contains("oauth_body_hash"));
    }

    #[test]
    fn the_host_header_gives_the_base_string_host_and_port() {
        let request = |host: &'static [u8]| {
            Request::get("http://10.0.0.7:8080/photos?size=original")
                .header(http::header::HOST, HeaderValue::from_bytes(host).unwrap())
                .body(Bytes::new())
                .unwrap()
        };
        for (host, base_uri) in [
            (
                &b"Photos.Example.NET"[..],
                "http%3A%2F%2Fphotos.example.net%2Fphotos&",
            ),
            (
                b"photos.example.net:80",
                "http%3A%2F%2Fphotos.example.net%2Fphotos&",
            ),
            (
                b"photos.example.net:9000",
                "http%3A%2F%2Fphotos.example.net%3A9000%2Fphotos&",
            ),
            (b"[::1]:8443", "http%3A%2F%2F%5B%3A%3A1%5D%3A8443%2Fphotos&"),
        ] {
            let (_, base) = hmac_signer()
                .sign_with_base_string(request(host), "n", 1)
                .unwrap();
            assert!(base.starts_with(&format!("GET&{base_uri}")), "{base}");
        }
        for host in [
            &b"h\xc3\xa9.example"[..],
            b"user@h.example",
            b"h.example:65536",
            b"h.example:8a",
        ] {
            let e = hmac_signer().sign(request(host)).unwrap_err();
            assert!(e.is_config(), "{host:?}: {e}");
        }
        let mut twice = request(b"a.example");
        twice
            .headers_mut()
            .append(http::header::HOST, HeaderValue::from_static("b.example"));
        assert!(hmac_signer().sign(twice).unwrap_err().is_config());
    }

    #[test]
    fn a_port_out_of_range_is_refused_not_dropped() {
        for uri in [
            "http://example.com:65536/a",
            "http://example.com:99999/a",
            "https://[::1]:70000/",
        ] {
            let request = Request::get(uri).body(Bytes::new()).unwrap();
            let e = hmac_signer().sign(request).unwrap_err();
            assert!(
                e.is_config() && e.to_string().contains("65535"),
                "{uri}: {e}"
            );
        }
        // An empty port is no port (RFC 3986 §6.2.3).
        let request = Request::get("http://example.com:/a")
            .body(Bytes::new())
            .unwrap();
        let (_, base) = hmac_signer()
            .sign_with_base_string(request, "n", 1)
            .unwrap();
        assert!(base.starts_with("GET&http%3A%2F%2Fexample.com%2Fa&"));
    }

    #[test]
    fn a_stale_signature_is_neither_signed_nor_sent_twice() {
        for placement in [Placement::Header, Placement::Query, Placement::Body] {
            let signer = hmac_signer().placement(placement);
            let request = Request::post("http://example.com/a?oauth_signature=stale&b=1")
                .header(CONTENT_TYPE, FORM)
                .header(CONTENT_LENGTH, 28)
                .body(Bytes::from_static(b"c=2&oauth_signature=stale2&d"))
                .unwrap();
            let (signed, base) = signer.sign_with_base_string(request, "n", 1).unwrap();
            assert!(
                !base.contains("oauth_signature%3D") && !base.contains("stale"),
                "{base}"
            );
            assert!(base.contains("b%3D1") && base.contains("c%3D2") && base.contains("d%3D"));
            let query = signed.uri().query().unwrap_or_default().to_owned();
            let length = signed.headers()[CONTENT_LENGTH].clone();
            let body = String::from_utf8(signed.body().to_vec()).unwrap();
            let header = signed
                .headers()
                .get(AUTHORIZATION)
                .map(|h| String::from_utf8(h.as_bytes().to_vec()).unwrap())
                .unwrap_or_default();
            let everywhere = format!("{query} {body} {header}");
            assert_eq!(
                everywhere.matches("oauth_signature=").count(),
                1,
                "{placement}: {everywhere}"
            );
            assert!(!everywhere.contains("stale"), "{placement}: {everywhere}");
            assert_eq!(length, body.len().to_string().as_str(), "{placement}");
        }
    }

    #[test]
    fn a_form_body_that_is_not_form_encoded_is_refused() {
        for body in [
            &b"a=\xc3\xa9"[..],
            b"a=%zz",
            b"a=%4",
            b"a=x y",
            b"a=1\r\nb=2",
            b"a=\xff",
        ] {
            let request = Request::post("http://example.com/")
                .header(CONTENT_TYPE, FORM)
                .body(Bytes::copy_from_slice(body))
                .unwrap();
            let e = hmac_signer().sign(request).unwrap_err();
            assert!(e.is_body(), "{body:?}: {e}");
        }
        // The same octets are fine in a body that is not a form.
        let request = Request::post("http://example.com/")
            .header(CONTENT_TYPE, "text/plain")
            .body(Bytes::from_static(b"a=%zz"))
            .unwrap();
        assert!(hmac_signer().sign(request).is_ok());
        // And a query that is not validly encoded is refused too.
        let request = Request::get("http://example.com/?a=%zz")
            .body(Bytes::new())
            .unwrap();
        assert!(hmac_signer().sign(request).unwrap_err().is_config());
    }

    #[test]
    fn a_form_content_type_with_non_ascii_parameters_is_still_a_form() {
        let request = Request::post("http://example.com/")
            .header(
                CONTENT_TYPE,
                HeaderValue::from_bytes(b"application/x-www-form-urlencoded; x=\"\xc3\xa9\"")
                    .unwrap(),
            )
            .body(Bytes::from_static(b"a=1"))
            .unwrap();
        let (_, base) = hmac_signer()
            .sign_with_base_string(request, "n", 1)
            .unwrap();
        assert!(base.contains("a%3D1"), "{base}");
    }

    #[test]
    fn lower_case_methods_are_signed_upper_case() {
        let method = Method::from_bytes(b"get").unwrap();
        let request = Request::builder()
            .method(method)
            .uri("http://example.com/")
            .body(Bytes::new())
            .unwrap();
        let (_, base) = hmac_signer()
            .sign_with_base_string(request, "n", 1)
            .unwrap();
        assert!(base.starts_with("GET&"));
    }

    #[test]
    fn rsa_method_without_rsa_credentials_fails_the_check() {
        let signer = hmac_signer().method(SignatureMethod::RsaSha256);
        assert!(signer.check().unwrap_err().is_config());
        assert!(hmac_signer().check().is_ok());
    }

    #[test]
    fn realm_is_quoted_and_checked() {
        let signer = hmac_signer().realm(r#"a "b" \c"#);
        let request = Request::get("http://example.com/")
            .body(Bytes::new())
            .unwrap();
        let signed = signer.sign(request).unwrap();
        let header = signed.headers()[AUTHORIZATION].to_str().unwrap();
        assert!(header.starts_with(r#"OAuth realm="a \"b\" \\c", "#));
        assert!(hmac_signer().realm("é").check().unwrap_err().is_config());
    }

    #[test]
    fn debug_of_a_layer_hides_every_secret() {
        let layer =
            crate::oauth1::OAuth1Layer::new(ClientCredentials::new("ck", "consumer-s3cret"))
                .token(TokenCredentials::new("access-t0ken", "token-s3cret"))
                .verifier(Verifier::new("verif1er"));
        let printed = format!("{layer:?}");
        for secret in [
            "consumer-s3cret",
            "access-t0ken",
            "token-s3cret",
            "verif1er",
        ] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
    }
}
