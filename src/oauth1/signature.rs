//! The pieces of an RFC 5849 signature: percent-encoding (§3.6), the base
//! string URI (§3.4.1.2), parameter normalization (§3.4.1.3), the signature
//! base string (§3.4.1.1) and the signature methods (§3.4.2–§3.4.4).
//!
//! [`Signer`](super::Signer) puts these together; they are public so that a
//! provider (or a test, or a puzzled developer comparing base strings with a
//! provider's logs) can use them alone.
//!
//! ```
//! use tower_alf::oauth1::signature::{base_string, base_string_uri, encode, normalize_parameters};
//!
//! assert_eq!(encode("Ladies + Gentlemen".as_bytes()), "Ladies%20%2B%20Gentlemen");
//!
//! let uri: http::Uri = "HTTP://Example.COM:80/r%20v/X?id=123".parse().unwrap();
//! assert_eq!(base_string_uri(&uri).unwrap(), "http://example.com/r%20v/X");
//!
//! let params = normalize_parameters([("b", "2"), ("a", "x y"), ("a", "1")]);
//! assert_eq!(params, "a=1&a=x%20y&b=2");
//! assert_eq!(
//!     base_string(&http::Method::GET, "http://example.com/r%20v/X", &params),
//!     "GET&http%3A%2F%2Fexample.com%2Fr%2520v%2FX&a%3D1%26a%3Dx%2520y%26b%3D2",
//! );
//! ```

use std::{fmt, str::FromStr};

use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use hmac::{Hmac, KeyInit, Mac};
use http::{Method, Uri};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use rsa::signature::{SignatureEncoding, Signer as _};

use super::{credentials::RsaKey, Error};

/// The characters RFC 5849 §3.6 leaves unencoded: ALPHA, DIGIT, `-`, `.`,
/// `_`, `~`. Every other octet is encoded as `%XX` with upper-case hex.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes octets as RFC 5849 §3.6 requires (which is stricter
/// than form encoding: a space is `%20`, never `+`).
pub fn encode(input: &[u8]) -> String {
    percent_encoding::percent_encode(input, UNRESERVED).to_string()
}

/// Decodes one `application/x-www-form-urlencoded` name or value into
/// octets: `+` is a space, `%XX` an octet (RFC 5849 §3.4.1.3.1). The result
/// may be any octets; no UTF-8 round trip loses them.
pub(crate) fn form_decode(input: &[u8]) -> Vec<u8> {
    let replaced: Vec<u8> = input
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_encoding::percent_decode(&replaced).collect()
}

/// Parses an `application/x-www-form-urlencoded` string (a query or a form
/// body) into name/value octet pairs. Empty members are skipped; a member
/// without `=` has an empty value.
pub(crate) fn form_parse(input: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    members(input)
        .map(|member| {
            let (name, value) = split_member(member);
            (form_decode(name), form_decode(value))
        })
        .collect()
}

fn members(input: &[u8]) -> impl Iterator<Item = &[u8]> {
    input
        .split(|&b| b == b'&')
        .filter(|member| !member.is_empty())
}

fn split_member(member: &[u8]) -> (&[u8], &[u8]) {
    match member.iter().position(|&b| b == b'=') {
        Some(at) => (&member[..at], &member[at + 1..]),
        None => (member, &[][..]),
    }
}

/// Whether `input` follows the encoding rules of
/// `application/x-www-form-urlencoded`, which §3.4.1.3.1 asks of a query
/// and of a form body before their parameters are signed: only the
/// characters RFC 3986 §3.4 allows in a query (ALPHA, DIGIT,
/// `-._~!$&'()*+,;=:@/?`) and `%` followed by two hex digits. A raw space,
/// control, non-ASCII octet (`é`), `"`, `[`, `|`, … must be sent as `%XX`
/// (or a space as `+`). oauthlib applies the same set.
pub(crate) fn is_form_encoded(input: &[u8]) -> bool {
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'%' => {
                let hex = input.get(i + 1..i + 3);
                if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?".contains(&b) => i += 1,
            _ => return false,
        }
    }
    true
}

/// `input` without its `oauth_signature` members, or `None` when it has
/// none. The other members keep their bytes and their order.
pub(crate) fn without_signature(input: &[u8]) -> Option<Vec<u8>> {
    let is_signature = |member: &[u8]| form_decode(split_member(member).0) == b"oauth_signature";
    if !members(input).any(is_signature) {
        return None;
    }
    let kept: Vec<&[u8]> = members(input).filter(|m| !is_signature(m)).collect();
    Some(kept.join(&b'&'))
}

/// The base string URI of RFC 5849 §3.4.1.2: scheme and host in lower
/// case, the port only when it is not the scheme's default (80 for `http`,
/// 443 for `https`), the path as sent (`/` when empty), no query, no
/// fragment, no user information.
///
/// Fails when `uri` is not absolute, or its port is not a number from 1 to
/// 65535 (an empty port, `http://host:/`, is no port, RFC 3986 §6.2.3).
/// A request that carries a `Host` header is signed with
/// [`base_string_uri_with_host`], which takes host and port from it.
pub fn base_string_uri(uri: &Uri) -> Result<String, Error> {
    base_string_uri_with_host(uri, None)
}

/// The base string URI of §3.4.1.2 for a request whose `Host` header is
/// `host`: step 2 says host and port "MUST match the content of the HTTP
/// request `Host` header field", so they are taken from it when it is
/// given, and from `uri`'s authority otherwise. Scheme and path always come
/// from `uri`.
///
/// ```
/// use tower_alf::oauth1::signature::base_string_uri_with_host;
///
/// let uri: http::Uri = "http://10.0.0.7:8080/photos?size=original".parse().unwrap();
/// let base = base_string_uri_with_host(&uri, Some(b"Photos.Example.NET")).unwrap();
/// assert_eq!(base, "http://photos.example.net/photos");
/// ```
///
/// Fails when `uri` is not absolute, when `host` is not a valid
/// `host[:port]` (non-ASCII, user information, a space), or when a port is
/// out of range.
pub fn base_string_uri_with_host(uri: &Uri, host: Option<&[u8]>) -> Result<String, Error> {
    let scheme = uri
        .scheme_str()
        .ok_or_else(|| Error::config("the request URI must be absolute (no scheme)"))?
        .to_ascii_lowercase();
    let authority = uri
        .authority()
        .ok_or_else(|| Error::config("the request URI must be absolute (no host)"))?;
    let host_port = match authority.as_str().rsplit_once('@') {
        Some((_userinfo, host_port)) => host_port,
        None => authority.as_str(),
    };
    // NOTE: the URI's port is checked even when the Host header overrides
    // it: the request is dialled there.
    let from_uri = host_and_port(host_port, "request URI")?;
    let (host, port) = match host {
        Some(header) => {
            let header = std::str::from_utf8(header)
                .ok()
                .filter(|h| !h.contains('@') && http::uri::Authority::try_from(*h).is_ok())
                .ok_or_else(|| {
                    Error::config("the Host header is not a valid host[:port] (RFC 9110 §7.2)")
                })?;
            host_and_port(header, "Host header")?
        }
        None => from_uri,
    };
    let default_port = match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    };
    let mut out = String::with_capacity(scheme.len() + host.len() + uri.path().len() + 10);
    out.push_str(&scheme);
    out.push_str("://");
    out.push_str(&host);
    if let Some(port) = port {
        if Some(port) != default_port {
            out.push(':');
            out.push_str(&port.to_string());
        }
    }
    match uri.path() {
        "" => out.push('/'),
        path => out.push_str(path),
    }
    Ok(out)
}

/// Splits `host[:port]` (no user information) into the host in lower case
/// and the port, refusing a port that is not digits, is 0 or exceeds
/// 65535.
/// `http::Uri` keeps such ports in the authority and answers `None` for
/// them, which would sign (and dial) the default port instead.
fn host_and_port(authority: &str, what: &str) -> Result<(String, Option<u16>), Error> {
    let (host, port) = if authority.starts_with('[') {
        match authority.find(']') {
            Some(end) => (&authority[..=end], &authority[end + 1..]),
            None => {
                return Err(Error::config(format!(
                    "the {what} has an unclosed IPv6 host"
                )))
            }
        }
    } else {
        match authority.find(':') {
            Some(at) => (&authority[..at], &authority[at..]),
            None => (authority, ""),
        }
    };
    if host.is_empty() {
        return Err(Error::config(format!("the {what} has no host")));
    }
    let port = match port.strip_prefix(':') {
        None if port.is_empty() => None,
        None => return Err(Error::config(format!("the {what} has junk after its host"))),
        Some("") => None,
        Some(digits) => Some(
            digits
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| digits.parse::<u16>().ok())
                .flatten()
                .filter(|&port| port != 0)
                .ok_or_else(|| {
                    Error::config(format!("the {what}'s port is not a number from 1 to 65535"))
                })?,
        ),
    };
    Ok((host.to_ascii_lowercase(), port))
}

/// Normalizes request parameters as RFC 5849 §3.4.1.3.2 says: each name and
/// value percent-encoded (§3.6), sorted by encoded name, then by encoded
/// value, joined as `name=value` with `&`.
///
/// Give it every parameter that takes part: the query's, the protocol
/// parameters (without `realm` and `oauth_signature`) and, for a form body,
/// the form's; repeated names are kept. [`request_base_string`] collects
/// them from a request.
pub fn normalize_parameters<N, V>(params: impl IntoIterator<Item = (N, V)>) -> String
where
    N: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut encoded: Vec<(String, String)> = params
        .into_iter()
        .map(|(name, value)| (encode(name.as_ref()), encode(value.as_ref())))
        .collect();
    encoded.sort_unstable();
    let mut out = String::new();
    for (i, (name, value)) in encoded.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// The signature base string of RFC 5849 §3.4.1.1: the upper-case method,
/// the encoded base string URI and the encoded normalized parameters,
/// joined with `&`.
pub fn base_string(method: &Method, base_string_uri: &str, normalized_parameters: &str) -> String {
    let method = method.as_str().to_ascii_uppercase();
    format!(
        "{method}&{}&{}",
        encode(base_string_uri.as_bytes()),
        encode(normalized_parameters.as_bytes())
    )
}

/// The signature base string of a whole request, §3.4.1 from end to end:
/// the one builder [`Signer`](super::Signer) (and so
/// [`Flow`](super::Flow) and [`OAuth1Layer`](super::OAuth1Layer)) signs
/// with, public so that a provider can verify with the same rules.
///
/// - `uri` and `host` (the `Host` header, if the request has one) make the
///   base string URI ([`base_string_uri_with_host`]);
/// - the query's parameters take part, and `form_body`'s when the request
///   carries an `application/x-www-form-urlencoded` body;
/// - `protocol` holds the `oauth_*` parameters, unencoded, as the
///   `Authorization` header or the signer has them; its `realm` is left
///   out;
/// - `oauth_signature` is left out wherever it appears (§3.4.1.3.1), so a
///   stale one in the query or the body is never signed.
///
/// Fails with [`Error::is_config`] when the query, and with
/// [`Error::is_body`] when the form body, does not follow the form encoding
/// rules §3.4.1.3.1 requires (a raw `é`, a space, `[`, `%zz`): the RFC signs such
/// a body's parameters not at all, which would leave the body unprotected
/// while the provider, parsing it leniently, computes another base string.
/// Refusing is what oauthlib does too.
///
/// ```
/// use tower_alf::oauth1::signature::request_base_string;
///
/// let uri: http::Uri = "https://api.example/p?b=2&oauth_signature=stale".parse().unwrap();
/// let base = request_base_string(
///     &http::Method::POST,
///     &uri,
///     None,
///     Some(b"a=x+y"),
///     [("oauth_nonce", "n"), ("realm", "r")],
/// )
/// .unwrap();
/// assert_eq!(base, "POST&https%3A%2F%2Fapi.example%2Fp&a%3Dx%2520y%26b%3D2%26oauth_nonce%3Dn");
/// assert!(request_base_string(&http::Method::POST, &uri, None, Some("a=é".as_bytes()), [("oauth_nonce", "n")])
///     .unwrap_err()
///     .is_body());
/// ```
pub fn request_base_string<N, V>(
    method: &Method,
    uri: &Uri,
    host: Option<&[u8]>,
    form_body: Option<&[u8]>,
    protocol: impl IntoIterator<Item = (N, V)>,
) -> Result<String, Error>
where
    N: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let base_uri = base_string_uri_with_host(uri, host)?;
    let mut params: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    if let Some(query) = uri.query() {
        if !is_form_encoded(query.as_bytes()) {
            return Err(Error::config(
                "the request URI's query is not validly percent-encoded (RFC 5849 §3.4.1.3.1)",
            ));
        }
        params.extend(form_parse(query.as_bytes()));
    }
    if let Some(body) = form_body {
        if !is_form_encoded(body) {
            return Err(Error::body(
                "the form body does not follow the application/x-www-form-urlencoded \
                 encoding (RFC 5849 §3.4.1.3.1): a raw non-ASCII octet, a space or control, \
                 or a % without two hex digits",
            ));
        }
        params.extend(form_parse(body));
    }
    params.extend(
        protocol
            .into_iter()
            .map(|(name, value)| (name.as_ref().to_vec(), value.as_ref().to_vec()))
            .filter(|(name, _)| name != b"realm"),
    );
    params.retain(|(name, _)| name != b"oauth_signature");
    Ok(base_string(
        method,
        &base_uri,
        &normalize_parameters(params),
    ))
}

/// A signature method: how `oauth_signature` is computed (RFC 5849 §3.4).
///
/// Parses from, and displays as, its `oauth_signature_method` name
/// (case-insensitive when parsing), so a command line can take it as text:
///
/// ```
/// use tower_alf::oauth1::SignatureMethod;
///
/// let method: SignatureMethod = "hmac-sha256".parse().unwrap();
/// assert_eq!(method, SignatureMethod::HmacSha256);
/// assert_eq!(method.to_string(), "HMAC-SHA256");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureMethod {
    /// `HMAC-SHA1` (§3.4.2), keyed with the consumer and token secrets. The
    /// RFC's default and the most widely supported.
    HmacSha1,
    /// `HMAC-SHA256`, the same with SHA-256 (NetSuite, newer providers).
    HmacSha256,
    /// `HMAC-SHA512`, the same with SHA-512.
    HmacSha512,
    /// `RSA-SHA1` (§3.4.3): RSASSA-PKCS1-v1_5 with SHA-1, signed with the
    /// client's RSA private key; the provider holds the public key.
    RsaSha1,
    /// `RSA-SHA256`: RSASSA-PKCS1-v1_5 with SHA-256.
    RsaSha256,
    /// `PLAINTEXT` (§3.4.4): the secrets themselves, unhashed. Only over
    /// TLS: it protects nothing of the request.
    Plaintext,
}

impl SignatureMethod {
    /// Every method, in the order of this enum.
    pub const ALL: [SignatureMethod; 6] = [
        Self::HmacSha1,
        Self::HmacSha256,
        Self::HmacSha512,
        Self::RsaSha1,
        Self::RsaSha256,
        Self::Plaintext,
    ];

    /// The `oauth_signature_method` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::HmacSha1 => "HMAC-SHA1",
            Self::HmacSha256 => "HMAC-SHA256",
            Self::HmacSha512 => "HMAC-SHA512",
            Self::RsaSha1 => "RSA-SHA1",
            Self::RsaSha256 => "RSA-SHA256",
            Self::Plaintext => "PLAINTEXT",
        }
    }

    /// Whether this method signs with an RSA private key rather than the
    /// shared secrets.
    pub const fn is_rsa(self) -> bool {
        matches!(self, Self::RsaSha1 | Self::RsaSha256)
    }

    /// `oauth_body_hash` for a body: Base64 of its digest with the method's
    /// hash (SHA-1 for `PLAINTEXT`, which has none).
    pub(crate) fn body_hash(self, body: &[u8]) -> String {
        use sha2::Digest;
        match self {
            Self::HmacSha256 | Self::RsaSha256 => BASE64.encode(sha2::Sha256::digest(body)),
            Self::HmacSha512 => BASE64.encode(sha2::Sha512::digest(body)),
            Self::HmacSha1 | Self::RsaSha1 | Self::Plaintext => {
                BASE64.encode(sha1::Sha1::digest(body))
            }
        }
    }

    /// Computes `oauth_signature` over `base_string`.
    ///
    /// The HMAC methods and `PLAINTEXT` use the key of §3.4.2: the encoded
    /// consumer secret, `&`, the encoded token secret (empty when there is
    /// no token). The RSA methods use `rsa_key` and fail without one.
    pub fn sign(
        self,
        base_string: &str,
        consumer_secret: &str,
        token_secret: &str,
        rsa_key: Option<&RsaKey>,
    ) -> Result<String, Error> {
        let key = || {
            format!(
                "{}&{}",
                encode(consumer_secret.as_bytes()),
                encode(token_secret.as_bytes())
            )
        };
        let message = base_string.as_bytes();
        match self {
            Self::HmacSha1 => Ok(hmac::<sha1::Sha1>(key().as_bytes(), message)),
            Self::HmacSha256 => Ok(hmac::<sha2::Sha256>(key().as_bytes(), message)),
            Self::HmacSha512 => Ok(hmac::<sha2::Sha512>(key().as_bytes(), message)),
            Self::Plaintext => Ok(key()),
            Self::RsaSha1 | Self::RsaSha256 => {
                let rsa_key = rsa_key.ok_or_else(|| {
                    Error::config(format!(
                        "{} needs an RSA private key (ClientCredentials::rsa)",
                        self.as_str()
                    ))
                })?;
                let signature = if self == Self::RsaSha1 {
                    rsa_key.sha1().try_sign(message).map(|s| s.to_bytes())
                } else {
                    rsa_key.sha256().try_sign(message).map(|s| s.to_bytes())
                }
                .map_err(|e| Error::signing_with("RSA signing failed", Box::new(e)))?;
                Ok(BASE64.encode(signature))
            }
        }
    }
}

fn hmac<D: hmac::EagerHash>(key: &[u8], message: &[u8]) -> String
where
    Hmac<D>: KeyInit + Mac,
{
    // NOTE: HMAC takes keys of any length, so `new_from_slice` cannot fail.
    match <Hmac<D> as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(message);
            BASE64.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

impl fmt::Display for SignatureMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SignatureMethod {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|method| method.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                Error::config(format!(
                    "unknown signature method {s:?} (expected one of HMAC-SHA1, HMAC-SHA256, \
                     HMAC-SHA512, RSA-SHA1, RSA-SHA256, PLAINTEXT)"
                ))
            })
    }
}

/// Where the protocol parameters and the signature go (RFC 5849 §3.5).
///
/// Parses from text, so a command line can take it: `header` (also
/// `authorization`), `query` (also `uri`), `body` (also `form`).
///
/// ```
/// use tower_alf::oauth1::Placement;
///
/// assert_eq!("query".parse::<Placement>().unwrap(), Placement::Query);
/// assert_eq!(Placement::default(), Placement::Header);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Placement {
    /// The `Authorization: OAuth …` header (§3.5.1), the default and the
    /// RFC's preference.
    #[default]
    Header,
    /// Appended to the request URI's query (§3.5.3).
    Query,
    /// Appended to an `application/x-www-form-urlencoded` body (§3.5.2).
    /// The request must carry such a body, or none at all (one is then
    /// made, with its `Content-Type`).
    Body,
}

impl Placement {
    /// The name this placement parses from.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Header => "header",
            Self::Query => "query",
            Self::Body => "body",
        }
    }
}

impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Placement {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "header" | "authorization" | "auth_header" => Ok(Self::Header),
            "query" | "uri" => Ok(Self::Query),
            "body" | "form" => Ok(Self::Body),
            _ => Err(Error::config(format!(
                "unknown placement {s:?} (expected header, query or body)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_leaves_only_the_unreserved_set() {
        let all: Vec<u8> = (0..=255).collect();
        let encoded = encode(&all);
        let plain: String = encoded
            .split('%')
            .map(|s| s.get(2..).unwrap_or(s))
            .collect();
        assert_eq!(
            plain,
            "-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~"
        );
        assert_eq!(encode(b" +/*\xe2\x98\x83"), "%20%2B%2F%2A%E2%98%83");
    }

    #[test]
    fn form_decoding_keeps_raw_octets() {
        assert_eq!(form_decode(b"a+b%20c%ff%2B"), b"a b c\xff+");
        assert_eq!(
            form_parse(b"a=1&&b&c=&=d"),
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), vec![]),
                (b"c".to_vec(), vec![]),
                (vec![], b"d".to_vec()),
            ]
        );
    }

    #[test]
    fn base_string_uri_drops_default_ports_only() {
        let cases = [
            (
                "http://EXAMPLE.com:80/r%20v/X?id=123",
                "http://example.com/r%20v/X",
            ),
            (
                "https://www.example.net:8080/?q=1",
                "https://www.example.net:8080/",
            ),
            ("https://example.com:443", "https://example.com/"),
            ("http://example.com:443/a", "http://example.com:443/a"),
            (
                "https://user:pw@example.com/a#frag",
                "https://example.com/a",
            ),
            ("http://[::1]:8080/a", "http://[::1]:8080/a"),
        ];
        for (uri, expected) in cases {
            let uri: Uri = uri.parse().unwrap();
            assert_eq!(base_string_uri(&uri).unwrap(), expected, "{uri}");
        }
    }

    #[test]
    fn base_string_uri_needs_an_absolute_uri() {
        let uri: Uri = "/path?x=1".parse().unwrap();
        assert!(base_string_uri(&uri).unwrap_err().is_config());
    }

    #[test]
    fn methods_and_placements_parse_from_their_names() {
        for method in SignatureMethod::ALL {
            assert_eq!(method.as_str().parse::<SignatureMethod>().unwrap(), method);
            let lower = method.as_str().to_ascii_lowercase();
            assert_eq!(lower.parse::<SignatureMethod>().unwrap(), method);
        }
        for placement in [Placement::Header, Placement::Query, Placement::Body] {
            assert_eq!(placement.as_str().parse::<Placement>().unwrap(), placement);
        }
        assert!("fragment".parse::<Placement>().unwrap_err().is_config());
    }

    #[test]
    fn plaintext_is_the_encoded_key() {
        let sig = SignatureMethod::Plaintext.sign("ignored", "c&s", "t s", None);
        assert_eq!(sig.unwrap(), "c%26s&t%20s");
    }

    #[test]
    fn rsa_without_a_key_is_a_config_error() {
        let e = SignatureMethod::RsaSha1
            .sign("x", "", "", None)
            .unwrap_err();
        assert!(e.is_config());
    }
}
