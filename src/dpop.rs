//! DPoP: sender-constrained tokens (RFC 9449).
//!
//! A [`DPoPKey`] is the key pair a client proves possession of. Give it to
//! the token endpoint with
//! [`TokenEndpointBuilder::dpop`](crate::TokenEndpointBuilder::dpop) and
//! that is the whole switch from Bearer to DPoP:
//!
//! - every token request carries a `DPoP` proof (RFC 9449 §5), and a
//!   `400 use_dpop_nonce` answer is retried once with the server's nonce
//!   (not counted as a failed attempt by the [`RetryPolicy`](crate::RetryPolicy));
//! - a `token_type: DPoP` answer is accepted (it is refused without a key)
//!   and the token remembers the key it is bound to;
//! - [`BearerAuth`](crate::BearerAuth) sends such a token as
//!   `Authorization: DPoP <token>` with a fresh proof per request (`ath` over
//!   the token, the origin's nonce when one is known), replays once with a
//!   new proof on a `use_dpop_nonce` challenge (same token, no refresh), and
//!   refreshes on `invalid_token` as for Bearer.
//!
//! Nonces are cached per origin (`scheme://host:port`) in the key, updated
//! from every response that carries `DPoP-Nonce`.
//!
//! ```
//! use tower_alf::{dpop::DPoPKey, ClientAuth, TokenEndpoint};
//!
//! let key = DPoPKey::generate()?; // ES256, fresh from the OS random source
//! let endpoint = TokenEndpoint::builder("https://idp.example/oauth2/token")
//!     .client_auth(ClientAuth::basic("my-client", "s3cr3t"))
//!     .dpop(key.clone())
//!     .build()?;
//! assert_eq!(key.thumbprint().len(), 43);
//! # Ok::<_, tower_alf::Error>(())
//! ```

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use sha2::{Digest, Sha256};

use crate::{jwt::PrivateKey, Error};

/// The `DPoP` request header (RFC 9449 §4.1).
pub const DPOP: HeaderName = HeaderName::from_static("dpop");

/// The `DPoP-Nonce` response header (RFC 9449 §8).
pub const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// A DPoP key pair, the nonces servers gave it, and the proofs it signs.
///
/// Cheap to clone: clones share the key and the nonce cache. `Debug` shows
/// the algorithm and the thumbprint, never the key.
///
/// ```
/// use tower_alf::dpop::DPoPKey;
///
/// let key = DPoPKey::generate()?;
/// let proof = key.proof(&http::Method::GET, &"https://api.example/x?q=1".parse().unwrap(), None)?;
/// assert_eq!(proof.to_str().unwrap().split('.').count(), 3);
/// assert!(!format!("{key:?}").contains("\"d\""));
/// # Ok::<_, tower_alf::Error>(())
/// ```
#[derive(Clone)]
pub struct DPoPKey {
    inner: Arc<Inner>,
}

struct Inner {
    key: PrivateKey,
    /// A generated key signs directly: `jsonwebtoken` would parse the DER
    /// and derive the public key again for every proof.
    es256: Option<p256::ecdsa::SigningKey>,
    /// `{"alg":…,"jwk":{…},"typ":"dpop+jwt"}`, base64url: the same for every proof.
    header: String,
    thumbprint: String,
    nonces: Mutex<HashMap<String, HeaderValue>>,
}

impl DPoPKey {
    /// A fresh P-256 key (ES256), from the operating system's random source.
    pub fn generate() -> Result<Self, Error> {
        let mut bytes = [0u8; 32];
        loop {
            getrandom::getrandom(&mut bytes)
                .map_err(|_| Error::runtime("the operating system's random source failed"))?;
            // A scalar outside 1..n is refused; the odds are about 2^-32.
            if let Ok(secret) = p256::SecretKey::from_slice(&bytes) {
                let mut key = Self::new(PrivateKey::p256(&secret)?)?;
                if let Some(inner) = Arc::get_mut(&mut key.inner) {
                    inner.es256 = Some(p256::ecdsa::SigningKey::from(&secret));
                }
                return Ok(key);
            }
        }
    }

    /// Uses `key` (ES256 by default for P-256; RS256, PS256, ES384 or EdDSA
    /// as the key and [`PrivateKey::with_algorithm`] say). Its `kid` is not
    /// sent: a proof carries the public key itself.
    pub fn new(key: PrivateKey) -> Result<Self, Error> {
        let jwk = jwk_json(key.public_jwk());
        let thumbprint = URL_SAFE_NO_PAD.encode(Sha256::digest(jwk.as_bytes()));
        let header = format!(
            r#"{{"alg":"{}","jwk":{jwk},"typ":"dpop+jwt"}}"#,
            key.algorithm().as_str()
        );
        Ok(Self {
            inner: Arc::new(Inner {
                header: URL_SAFE_NO_PAD.encode(header),
                key,
                es256: None,
                thumbprint,
                nonces: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The RFC 7638 JWK SHA-256 thumbprint of the public key, base64url:
    /// the `jkt` a server binds tokens to.
    pub fn thumbprint(&self) -> &str {
        &self.inner.thumbprint
    }

    /// The public key as a JWK (the members RFC 7638 requires).
    pub fn public_jwk(&self) -> String {
        jwk_json(self.inner.key.public_jwk())
    }

    /// The signing algorithm.
    pub fn algorithm(&self) -> crate::jwt::Algorithm {
        self.inner.key.algorithm()
    }

    /// A proof for a request (RFC 9449 §4.2): `jti` (random), `htm`, `htu`
    /// (`uri` without userinfo, query and fragment, normalised by RFC 3986
    /// §6.2.2–6.2.3: `https://User:pw@API.example:443/a/./b?q` gives
    /// `https://api.example/a/b`), `iat`, `nonce` (the one cached
    /// for the URI's origin, if any) and `ath` when `access_token` is given
    /// (base64url SHA-256 of it, for resource requests).
    ///
    /// # Errors
    ///
    /// A configuration error ([`Error::is_config`]) for a relative `uri`
    /// (no scheme or host: a proof must name where it goes, as an OAuth 1
    /// signature must), a scheme other than `http`/`https`, or a port out of
    /// range.
    pub fn proof(
        &self,
        method: &Method,
        uri: &Uri,
        access_token: Option<&str>,
    ) -> Result<HeaderValue, Error> {
        let ath = access_token.map(ath);
        self.proof_with(method, uri, ath.as_deref())
    }

    /// A proof with a precomputed `ath`.
    pub(crate) fn proof_with(
        &self,
        method: &Method,
        uri: &Uri,
        ath: Option<&str>,
    ) -> Result<HeaderValue, Error> {
        let target = Target::of(uri)?;
        let nonce = self.nonce_for(&target.origin);
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| Error::runtime("the system clock is before 1970"))?
            .as_secs();
        let mut claims = serde_json::Map::new();
        claims.insert("jti".into(), crate::jwt::random_id()?.into());
        claims.insert("htm".into(), method.as_str().into());
        claims.insert("htu".into(), target.htu().into());
        claims.insert("iat".into(), iat.into());
        if let Some(ath) = ath {
            claims.insert("ath".into(), ath.into());
        }
        if let Some(nonce) = nonce {
            // Only RFC 9449 §8 nonces (visible ASCII) are cached.
            let nonce = nonce
                .to_str()
                .map_err(|_| Error::signing("the cached DPoP nonce is not ASCII"))?;
            claims.insert("nonce".into(), nonce.into());
        }
        let claims = serde_json::to_vec(&claims)
            .map_err(|_| Error::signing("cannot encode the DPoP proof claims"))?;
        let mut jws = String::with_capacity(self.inner.header.len() + claims.len() * 4 / 3 + 100);
        jws.push_str(&self.inner.header);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(&claims, &mut jws);
        let signature = match &self.inner.es256 {
            Some(key) => {
                use p256::ecdsa::signature::Signer as _;
                let signature: p256::ecdsa::Signature = key.sign(jws.as_bytes());
                URL_SAFE_NO_PAD.encode(signature.to_bytes())
            }
            None => self.inner.key.sign_input(jws.as_bytes())?,
        };
        jws.push('.');
        jws.push_str(&signature);
        HeaderValue::from_maybe_shared(Bytes::from(jws))
            .map_err(|_| Error::signing("the DPoP proof is not a valid header value"))
    }

    /// The nonce cached for `uri`'s origin (its scheme, host and port,
    /// normalised as `htu` is: `https://API.example:443` and
    /// `https://api.example` share one).
    pub fn nonce(&self, uri: &Uri) -> Option<HeaderValue> {
        self.nonce_for(&Target::of(uri).ok()?.origin)
    }

    fn nonce_for(&self, origin: &str) -> Option<HeaderValue> {
        let nonces = self.inner.nonces.lock().unwrap_or_else(|e| e.into_inner());
        nonces.get(origin).cloned()
    }

    /// Caches the `DPoP-Nonce` of a response from `uri`, if it has one;
    /// whether a nonce is now cached from it.
    ///
    /// A nonce RFC 9449 §8 does not allow (empty, or a byte that is not
    /// visible ASCII, `"` and `\` excepted) is not cached: the nonce cached
    /// before for the origin, now stale, is dropped, a `WARN` event
    /// `"the server sent a DPoP-Nonce RFC 9449 does not allow; not using it"`
    /// says so, and `false` is returned (no proof is retried with it).
    pub fn remember_nonce(&self, uri: &Uri, headers: &HeaderMap) -> bool {
        let Some(nonce) = headers.get(DPOP_NONCE) else {
            return false;
        };
        let Ok(target) = Target::of(uri) else {
            return false;
        };
        let mut nonces = self.inner.nonces.lock().unwrap_or_else(|e| e.into_inner());
        if !is_nonce(nonce.as_bytes()) {
            nonces.remove(&target.origin);
            drop(nonces);
            tracing::warn!(
                origin = %target.origin,
                bytes = nonce.len(),
                "the server sent a DPoP-Nonce RFC 9449 does not allow; not using it"
            );
            return false;
        }
        if nonces.get(&target.origin) != Some(nonce) {
            nonces.insert(target.origin, nonce.clone());
        }
        true
    }
}

impl fmt::Debug for DPoPKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DPoPKey")
            .field("algorithm", &self.inner.key.algorithm())
            .field("thumbprint", &self.inner.thumbprint)
            .finish_non_exhaustive()
    }
}

/// What a DPoP-bound token carries: its key and its `ath`.
#[derive(Clone)]
pub(crate) struct Binding {
    pub(crate) key: DPoPKey,
    pub(crate) ath: String,
}

impl Binding {
    pub(crate) fn new(key: DPoPKey, access_token: &str) -> Self {
        Self {
            key,
            ath: ath(access_token),
        }
    }

    /// A proof for a resource request with this token.
    pub(crate) fn proof(&self, method: &Method, uri: &Uri) -> Result<HeaderValue, Error> {
        self.key.proof_with(method, uri, Some(&self.ath))
    }
}

impl fmt::Debug for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Binding")
            .field("thumbprint", &self.key.thumbprint())
            .finish_non_exhaustive()
    }
}

/// base64url SHA-256 of the access token (RFC 9449 §4.2 `ath`).
fn ath(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

fn jwk_json(members: &[(&'static str, String)]) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        // Names and values are fixed ASCII or base64url: no escaping needed.
        out.push_str(&format!(r#""{name}":"{value}""#));
    }
    out.push('}');
    out
}

/// Where a request goes, as DPoP signs it and keys nonces by it: an
/// absolute `http`/`https` URI normalised per RFC 3986 §6.2.2 (scheme and
/// host in lower case, percent-encodings in upper case and unreserved ones
/// decoded, dot segments removed) and §6.2.3 (the default port and an empty
/// port elided, an empty path is `/`), without userinfo (a password in a
/// URI must not go into every proof), query and fragment.
///
/// The one normaliser shared by `htu` and the nonce cache.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    /// `scheme://host[:port]`, the port only when it is not the default.
    origin: String,
    /// The normalised path, never empty.
    path: String,
}

impl Target {
    fn of(uri: &Uri) -> Result<Self, Error> {
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(Error::config(
                "a DPoP proof needs an absolute request URI (scheme and host); \
                 this request has a relative one",
            ));
        };
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "https" => 443,
            "http" => 80,
            _ => {
                return Err(Error::config(
                    "a DPoP proof is for an http or https request URI",
                ))
            }
        };
        // `userinfo@` is dropped: it is neither signed nor keyed.
        let host_port = authority
            .as_str()
            .rsplit_once('@')
            .map_or(authority.as_str(), |(_, rest)| rest);
        let (host, port) = match host_port.strip_prefix('[') {
            Some(v6) => {
                let (inside, rest) = v6.split_once(']').ok_or_else(bad_authority)?;
                let port = match rest {
                    "" => None,
                    rest => Some(rest.strip_prefix(':').ok_or_else(bad_authority)?),
                };
                (format!("[{}]", inside.to_ascii_lowercase()), port)
            }
            None => match host_port.rsplit_once(':') {
                Some((host, port)) => (normalise_host(host), Some(port)),
                None => (normalise_host(host_port), None),
            },
        };
        if host.is_empty() || host == "[]" {
            return Err(bad_authority());
        }
        let port = match port {
            None | Some("") => None,
            Some(port) => {
                let port: u16 = port
                    .parse()
                    .ok()
                    .filter(|_| port.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| {
                        Error::config("the request URI's port is not a number from 0 to 65535")
                    })?;
                (port != default_port).then_some(port)
            }
        };
        let origin = match port {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        };
        let mut path = remove_dot_segments(&normalise_percent(uri.path(), false));
        if path.is_empty() {
            path.push('/');
        }
        Ok(Self { origin, path })
    }

    /// The `htu` claim: `origin` and `path`.
    fn htu(&self) -> String {
        format!("{}{}", self.origin, self.path)
    }
}

fn bad_authority() -> Error {
    Error::config("the request URI's host is not valid")
}

/// A reg-name or IPv4 host: percent-encodings normalised, the rest in lower
/// case.
fn normalise_host(host: &str) -> String {
    normalise_percent(host, true)
}

/// RFC 3986 §6.2.2.1–6.2.2.2: `%xx` of an unreserved character decoded,
/// other `%xx` in upper case; with `lower`, every other character in lower
/// case (a host is case-insensitive).
fn normalise_percent(text: &str, lower: bool) -> String {
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

/// RFC 3986 §5.2.4.
fn remove_dot_segments(path: &str) -> String {
    let mut input = path;
    let mut out = String::with_capacity(path.len());
    while !input.is_empty() {
        if let Some(rest) = input
            .strip_prefix("../")
            .or_else(|| input.strip_prefix("./"))
        {
            input = rest;
        } else if input.starts_with("/./") {
            input = &input[2..];
        } else if input == "/." {
            input = "/";
        } else if input.starts_with("/../") || input == "/.." {
            input = if input == "/.." { "/" } else { &input[3..] };
            match out.rfind('/') {
                Some(at) => out.truncate(at),
                None => out.clear(),
            }
        } else if input == "." || input == ".." {
            input = "";
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..]
                .find('/')
                .map_or(input.len(), |at| at + start);
            out.push_str(&input[..end]);
            input = &input[end..];
        }
    }
    out
}

/// A nonce RFC 9449 §8 allows: `1*NQCHAR`, visible ASCII but `"` and `\`.
fn is_nonce(value: &[u8]) -> bool {
    !value.is_empty()
        && value
            .iter()
            .all(|&b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{jwk::Jwk, DecodingKey, Validation};
    use serde_json::Value;

    const RSA_PKCS8: &str = include_str!("../tests/fixtures/rsa_pkcs8.pem");
    const P256_PKCS8: &str = include_str!("../tests/fixtures/p256_pkcs8.pem");

    /// Decodes a proof, checks its header and its signature with the JWK it
    /// embeds; the claims.
    fn verify(proof: &HeaderValue, key: &DPoPKey) -> serde_json::Map<String, Value> {
        let proof = proof.to_str().unwrap();
        let header = jsonwebtoken::decode_header(proof).unwrap();
        assert_eq!(header.typ.as_deref(), Some("dpop+jwt"));
        assert_eq!(format!("{:?}", header.alg), key.algorithm().as_str());
        let jwk: Jwk = header.jwk.expect("the proof embeds its jwk");
        let decoding = DecodingKey::from_jwk(&jwk).unwrap();
        let mut validation = Validation::new(header.alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, Value>>(proof, &decoding, &validation)
                .unwrap();
        // No private member leaks into the header.
        let raw = URL_SAFE_NO_PAD
            .decode(proof.split('.').next().unwrap())
            .unwrap();
        let raw: Value = serde_json::from_slice(&raw).unwrap();
        assert!(raw["jwk"].get("d").is_none());
        assert_eq!(
            URL_SAFE_NO_PAD.encode(Sha256::digest(key.public_jwk().as_bytes())),
            key.thumbprint()
        );
        data.claims
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn generated_es256_proof_has_every_claim_and_verifies() {
        let key = DPoPKey::generate().unwrap();
        let uri: Uri = "https://Api.example:8443/orders/1?q=2#frag"
            .parse()
            .unwrap();
        let proof = key.proof(&Method::POST, &uri, None).unwrap();
        let claims = verify(&proof, &key);
        assert_eq!(claims["htm"], "POST");
        assert_eq!(claims["htu"], "https://api.example:8443/orders/1");
        assert_eq!(claims["jti"].as_str().unwrap().len(), 32);
        let iat = claims["iat"].as_u64().unwrap();
        assert!(iat.abs_diff(now()) <= 2);
        assert!(claims.get("ath").is_none());
        assert!(claims.get("nonce").is_none());
        assert_eq!(claims.len(), 4);
    }

    fn htu(uri: &str) -> Result<String, Error> {
        Target::of(&uri.parse().unwrap_or_else(|e| panic!("{uri}: {e}"))).map(|t| t.htu())
    }

    #[test]
    fn htu_is_normalised_by_rfc_3986() {
        for (uri, want) in [
            (
                "HTTPS://API.Example.COM:443/a?q#f",
                "https://api.example.com/a",
            ),
            ("http://api.example:80", "http://api.example/"),
            ("https://api.example:/x", "https://api.example/x"),
            ("https://api.example:8443/x", "https://api.example:8443/x"),
            ("http://api.example:443/x", "http://api.example:443/x"),
            (
                "https://api.example/a/./b/../c/%7euser/%2f%aa",
                "https://api.example/a/c/~user/%2F%AA",
            ),
            (
                "https://xn--BCHER-kva.Example./",
                "https://xn--bcher-kva.example./",
            ),
            ("https://[::1]:443/x", "https://[::1]/x"),
            ("https://[FE80::1]:8080/x", "https://[fe80::1]:8080/x"),
            ("https://127.0.0.1:0443/", "https://127.0.0.1/"),
        ] {
            assert_eq!(htu(uri).unwrap(), want, "{uri}");
        }
    }

    #[test]
    fn htu_never_carries_userinfo() {
        assert_eq!(
            htu("https://user:s3cr3t@API.example/x").unwrap(),
            "https://api.example/x"
        );
        let key = DPoPKey::generate().unwrap();
        let uri: Uri = "https://user:s3cr3t@api.example/x".parse().unwrap();
        let proof = key.proof(&Method::GET, &uri, None).unwrap();
        let claims = verify(&proof, &key);
        assert_eq!(claims["htu"], "https://api.example/x");
        let payload = proof.to_str().unwrap().split('.').nth(1).unwrap();
        let payload = URL_SAFE_NO_PAD.decode(payload).unwrap();
        assert!(!String::from_utf8_lossy(&payload).contains("s3cr3t"));
    }

    #[test]
    fn relative_and_unusable_uris_are_refused() {
        let key = DPoPKey::generate().unwrap();
        for uri in [
            "/orders/1?q",
            "*",
            "ftp://api.example/x",
            "https://api.example:65536/x",
            "https://api.example:99999/",
        ] {
            let Ok(uri) = uri.parse::<Uri>() else {
                continue;
            };
            let e = key.proof(&Method::GET, &uri, None).unwrap_err();
            assert!(e.is_config(), "{uri}: {e}");
        }
    }

    #[test]
    fn ath_is_the_sha256_of_the_access_token() {
        let key = DPoPKey::generate().unwrap();
        let uri: Uri = "https://api.example/x".parse().unwrap();
        let proof = key
            .proof(
                &Method::GET,
                &uri,
                Some("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            )
            .unwrap();
        let claims = verify(&proof, &key);
        // RFC 9449 §7.1's example token and its `ath`.
        assert_eq!(claims["ath"], "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo");
        assert_eq!(claims["htm"], "GET");
    }

    #[test]
    fn jti_is_unique_per_proof() {
        let key = DPoPKey::generate().unwrap();
        let uri: Uri = "https://api.example/x".parse().unwrap();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let claims = verify(&key.proof(&Method::GET, &uri, None).unwrap(), &key);
            assert!(seen.insert(claims["jti"].as_str().unwrap().to_owned()));
        }
    }

    #[test]
    fn nonces_are_cached_per_origin() {
        let key = DPoPKey::generate().unwrap();
        let a: Uri = "https://a.example/token".parse().unwrap();
        let a2: Uri = "https://A.example:443/other?x".parse().unwrap();
        let b: Uri = "https://b.example/token".parse().unwrap();
        let mut headers = HeaderMap::new();
        assert!(!key.remember_nonce(&a, &headers));
        headers.insert(DPOP_NONCE, HeaderValue::from_static("n-1"));
        assert!(key.remember_nonce(&a, &headers));
        let claims = verify(&key.proof(&Method::GET, &a2, None).unwrap(), &key);
        assert_eq!(claims["nonce"], "n-1");
        let claims = verify(&key.proof(&Method::GET, &b, None).unwrap(), &key);
        assert!(claims.get("nonce").is_none());
        headers.insert(DPOP_NONCE, HeaderValue::from_static("n-2"));
        key.remember_nonce(&a, &headers);
        assert_eq!(key.nonce(&a2).unwrap(), "n-2");
        // Clones share the cache.
        assert_eq!(key.clone().nonce(&a).unwrap(), "n-2");
    }

    #[test]
    fn nonces_outside_rfc_9449_are_not_cached() {
        let key = DPoPKey::generate().unwrap();
        let a: Uri = "https://a.example/token".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(DPOP_NONCE, HeaderValue::from_static("n-1"));
        assert!(key.remember_nonce(&a, &headers));
        for bad in [&b"expir\xc3\xa9"[..], b"a\"b", b"a b", b""] {
            headers.insert(DPOP_NONCE, HeaderValue::from_bytes(bad).unwrap());
            assert!(!key.remember_nonce(&a, &headers));
            // The stale nonce is gone too: no proof carries a nonce now.
            assert_eq!(key.nonce(&a), None);
            let claims = verify(&key.proof(&Method::GET, &a, None).unwrap(), &key);
            assert!(claims.get("nonce").is_none());
        }
    }

    #[test]
    fn a_refused_nonce_is_reported_by_a_warn_event() {
        #[derive(Clone, Default)]
        struct Buffer(std::sync::Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let key = DPoPKey::generate().unwrap();
        let uri: Uri = "https://a.example/token".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            DPOP_NONCE,
            HeaderValue::from_bytes(b"Jeton-expir\xe9").unwrap(),
        );
        tracing::subscriber::with_default(subscriber, || {
            assert!(!key.remember_nonce(&uri, &headers));
        });
        let logged = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert!(logged.contains("WARN"), "{logged}");
        assert!(
            logged.contains("DPoP-Nonce RFC 9449 does not allow"),
            "{logged}"
        );
        assert!(logged.contains("https://a.example"), "{logged}");
    }

    #[test]
    fn nonce_cache_and_htu_share_one_normaliser() {
        let key = DPoPKey::generate().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(DPOP_NONCE, HeaderValue::from_static("n-1"));
        let from: Uri = "HTTPS://user@API.example:443/token".parse().unwrap();
        assert!(key.remember_nonce(&from, &headers));
        for uri in [
            "https://api.example/x",
            "https://api.example:/y",
            "https://Api.Example:443",
        ] {
            let uri: Uri = uri.parse().unwrap();
            assert_eq!(key.nonce(&uri).unwrap(), "n-1", "{uri}");
        }
        let other: Uri = "https://api.example:8443/x".parse().unwrap();
        assert_eq!(key.nonce(&other), None);
    }

    #[test]
    fn user_supplied_keys_sign_verifiable_proofs() {
        let uri: Uri = "https://api.example/x".parse().unwrap();
        let p256 = DPoPKey::new(PrivateKey::from_pem(P256_PKCS8).unwrap()).unwrap();
        verify(&p256.proof(&Method::GET, &uri, Some("t")).unwrap(), &p256);
        for alg in [crate::jwt::Algorithm::RS256, crate::jwt::Algorithm::PS256] {
            let rsa = PrivateKey::from_pem(RSA_PKCS8)
                .unwrap()
                .with_algorithm(alg)
                .unwrap();
            let rsa = DPoPKey::new(rsa).unwrap();
            let claims = verify(&rsa.proof(&Method::PUT, &uri, Some("t")).unwrap(), &rsa);
            assert_eq!(claims["htm"], "PUT");
        }
        let ed = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let ed = DPoPKey::new(PrivateKey::ed25519(&ed).unwrap()).unwrap();
        assert_eq!(ed.algorithm().as_str(), "EdDSA");
        verify(&ed.proof(&Method::GET, &uri, None).unwrap(), &ed);
    }

    #[test]
    fn thumbprint_matches_rfc_7638_example() {
        // RFC 7638 §3.1: the RSA key and its thumbprint.
        let members = [
            ("e", "AQAB".to_owned()),
            ("kty", "RSA".to_owned()),
            ("n", "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw".to_owned()),
        ];
        let thumbprint = URL_SAFE_NO_PAD.encode(Sha256::digest(jwk_json(&members).as_bytes()));
        assert_eq!(thumbprint, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn debug_shows_no_key_material() {
        let key = DPoPKey::generate().unwrap();
        let debug = format!("{key:?}");
        assert!(debug.contains(key.thumbprint()));
        assert!(!debug.contains("\"x\""));
    }
}
