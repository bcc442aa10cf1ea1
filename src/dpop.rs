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
    any::Any,
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use sha2::{Digest, Sha256};

use crate::{
    challenge::SchemeChallenge,
    endpoint::request::Proof,
    error::Error,
    http::{normalise_percent, NotAnOrigin, Origin},
    jwt::PrivateKey,
    store::{StoreGrant, StoredToken},
    token::{Binding, BindingKey, SenderConstraint, Token, TokenType},
};

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
    /// `{"alg":…,"jwk":{…},"typ":"dpop+jwt"}`, base64url: the same for every proof.
    header: String,
    thumbprint: String,
    nonces: Mutex<HashMap<Origin, HeaderValue>>,
}

impl DPoPKey {
    /// A fresh P-256 key (ES256), from the operating system's random source.
    pub fn generate() -> Result<Self, Error> {
        Self::new(PrivateKey::generate_p256()?)
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
        let jws = crate::jwt::compact_encoded(&self.inner.header, &claims, |input, out| {
            self.inner.key.sign_into(input, out)
        })?;
        HeaderValue::from_maybe_shared(Bytes::from(jws))
            .map_err(|_| Error::signing("the DPoP proof is not a valid header value"))
    }

    /// The nonce cached for `uri`'s origin (its scheme, host and port,
    /// normalised as `htu` is: `https://API.example:443` and
    /// `https://api.example` share one).
    pub fn nonce(&self, uri: &Uri) -> Option<HeaderValue> {
        self.nonce_for(&Target::of(uri).ok()?.origin)
    }

    fn nonce_for(&self, origin: &Origin) -> Option<HeaderValue> {
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

/// What a DPoP-bound token carries: its key and its `ath`; the
/// [`SenderConstraint`] a DPoP token authorizes requests through.
#[derive(Clone)]
pub(crate) struct DPoPBinding {
    pub(crate) key: DPoPKey,
    pub(crate) ath: String,
}

impl DPoPBinding {
    pub(crate) fn new(key: DPoPKey, access_token: &str) -> Self {
        Self {
            key,
            ath: ath(access_token),
        }
    }
}

impl SenderConstraint for DPoPBinding {
    fn challenge_scheme(&self) -> Option<&'static str> {
        Some("dpop")
    }

    fn thumbprint(&self) -> &str {
        self.key.thumbprint()
    }

    /// A fresh proof for a resource request with this token (RFC 9449 §7.1).
    fn authorize(&self, method: &Method, uri: &Uri, headers: &mut HeaderMap) -> Result<(), Error> {
        let proof = self.key.proof_with(method, uri, Some(&self.ath))?;
        headers.insert(DPOP, proof);
        Ok(())
    }

    fn unauthorize(&self, headers: &mut HeaderMap) {
        headers.remove(DPOP);
    }

    fn on_response(&self, uri: &Uri, headers: &HeaderMap) -> bool {
        self.key.remember_nonce(uri, headers)
    }

    fn needs_replay_without_refresh(&self, challenge: &SchemeChallenge) -> bool {
        matches!(challenge, SchemeChallenge::Challenge(Some(error)) if error == "use_dpop_nonce")
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl fmt::Debug for DPoPBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DPoPBinding")
            .field("thumbprint", &self.key.thumbprint())
            .finish_non_exhaustive()
    }
}

/// A stored `DPoP` token comes back bound to the key again.
impl BindingKey for DPoPKey {
    fn token_type(&self) -> TokenType {
        TokenType::DPoP
    }

    fn thumbprint(&self) -> &str {
        DPoPKey::thumbprint(self)
    }

    fn bind(&self, token: Token) -> Token {
        token.with_dpop(self.clone())
    }
}

/// DPoP as the token endpoint's [`Proof`]: a fresh proof per attempt, the
/// server's nonce remembered, one `use_dpop_nonce` retry, and
/// `token_type: DPoP` answers bound to the key.
impl Proof for DPoPKey {
    fn attach(&self, method: &Method, url: &Uri, headers: &mut HeaderMap) -> Result<(), Error> {
        headers.insert(DPOP, self.proof(method, url, None)?);
        Ok(())
    }

    fn answered(&self, url: &Uri, headers: &HeaderMap) {
        self.remember_nonce(url, headers);
    }

    fn wants_retry(&self, error: &Error) -> bool {
        error.status_code() == Some(StatusCode::BAD_REQUEST)
            && error
                .oauth_error()
                .is_some_and(|e| e.code().as_str() == "use_dpop_nonce")
    }

    fn accept(&self, token: Token, _status: StatusCode) -> Result<Token, Error> {
        if token.token_type() == TokenType::DPoP {
            return Ok(token.with_dpop(self.clone()));
        }
        Ok(token)
    }

    fn key_param(&self) -> (&'static str, String) {
        ("dpop_jkt", self.thumbprint().to_owned())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Token {
    /// Binds the token to `key`: it is sent with a DPoP proof of it.
    pub(crate) fn with_dpop(self, key: DPoPKey) -> Self {
        let binding = DPoPBinding::new(key, self.access_token().secret());
        self.bound(Binding::new(binding))
    }

    /// The thumbprint of the DPoP key the token is bound to (feature
    /// `dpop`); `None` for a Bearer token.
    pub fn dpop_thumbprint(&self) -> Option<&str> {
        let binding = self
            .sender_constraint()?
            .as_any()
            .downcast_ref::<DPoPBinding>()?;
        Some(binding.key.thumbprint())
    }
}

impl StoredToken {
    /// A [`Token`] again, bound to `key` when it is a `DPoP` token (feature
    /// `dpop`); a `Bearer` token comes back as [`StoredToken::to_token`]
    /// gives it.
    ///
    /// Fails when the token is bound to another key (its thumbprint is not
    /// `key`'s), or records no thumbprint.
    pub fn to_dpop_token(&self, key: &DPoPKey) -> Result<Token, Error> {
        self.to_bound_token(key)
    }
}

impl<G> StoreGrant<G> {
    /// The DPoP key of the grant's token endpoint (feature `dpop`): a
    /// `DPoP` token read from the store is bound to it again, since the
    /// stored form keeps only the key's thumbprint, if that thumbprint is
    /// this key's. Without it, or for a token bound to another key, a stored
    /// `DPoP` token is a miss (this instance fetches its own), never sent
    /// unbound or as `Bearer`; so is a first-format value, which did not
    /// record whether it was a `DPoP` token. Defaults to none.
    ///
    /// ```
    /// use tower_alf::{dpop::DPoPKey, store::{CacheKey, MemoryStore, StoreGrant}};
    /// # let grant = tower::service_fn(|_: tower_alf::grant::FetchToken| async {
    /// #     tower_alf::Token::bearer("t")
    /// # });
    /// let key = DPoPKey::generate()?;
    /// let cache_key = CacheKey::builder("https://idp.example/token", "client_credentials")
    ///     .param("dpop_jkt", key.thumbprint())
    ///     .build();
    /// let grant = StoreGrant::new(grant, MemoryStore::new(), cache_key).dpop(key);
    /// # Ok::<_, tower_alf::Error>(())
    /// ```
    pub fn dpop(self, key: DPoPKey) -> Self {
        self.rebind_with(Arc::new(key))
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

/// Where a proof goes: the request URI's [`Origin`] and its path,
/// normalised by RFC 3986 §6.2.2–6.2.3 (percent-encodings in upper case
/// and unreserved ones decoded, dot segments removed, an empty path is `/`), without
/// userinfo (a password in a URI must not go into every proof), query and
/// fragment.
///
/// The one normaliser shared by `htu` and the nonce cache.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    origin: Origin,
    /// The normalised path, never empty.
    path: String,
}

impl Target {
    fn of(uri: &Uri) -> Result<Self, Error> {
        let origin = Origin::of(uri).map_err(|problem| match problem {
            NotAnOrigin::Relative => Error::config(
                "a DPoP proof needs an absolute request URI (scheme and host); \
                 this request has a relative one",
            ),
            NotAnOrigin::Host => Error::config("the request URI's host is not valid"),
            NotAnOrigin::Port => {
                Error::config("the request URI's port is not a number from 0 to 65535")
            }
        })?;
        if !matches!(origin.scheme(), "https" | "http") {
            return Err(Error::config(
                "a DPoP proof is for an http or https request URI",
            ));
        }
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
    use crate::jwt::test_jws as jws;
    use serde_json::Value;

    const RSA_PKCS8: &str = include_str!("../tests/fixtures/rsa_pkcs8.pem");
    const P256_PKCS8: &str = include_str!("../tests/fixtures/p256_pkcs8.pem");

    /// Decodes a proof, checks its header and its signature with the JWK it
    /// embeds; the claims.
    fn verify(proof: &HeaderValue, key: &DPoPKey) -> serde_json::Map<String, Value> {
        let proof = proof.to_str().unwrap();
        let header = jws::decode_header(proof).unwrap();
        assert_eq!(header.typ.as_deref(), Some("dpop+jwt"));
        assert_eq!(header.alg, key.algorithm().as_str());
        let jwk = header.jwk.expect("the proof embeds its jwk");
        let (_, claims) = jws::verify(proof, jws::Key::Jwk(&jwk)).unwrap();
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
        claims
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
        let ed = DPoPKey::new(PrivateKey::from_ed25519_seed(&[7u8; 32]).unwrap()).unwrap();
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

/// The DPoP binding through every store: the stored form, the memory
/// store, and `StoreGrant`'s restore (tests moved here from `store/` with
/// the seam).
#[cfg(test)]
mod store_tests {
    use std::{
        sync::{
            atomic::{AtomicUsize, Ordering},
            Arc,
        },
        time::Duration,
    };

    use tokio::time::Instant;
    use tower::service_fn;

    use super::*;
    use crate::{
        grant::FetchToken,
        source::TokenSource,
        store::{CacheKey, MemoryStore, StoreGrant, StoredToken, TokenStore},
    };

    fn key() -> CacheKey {
        CacheKey::builder("https://idp/token", "client_credentials").build()
    }

    #[tokio::test]
    async fn dpop_tokens_from_the_store_are_bound_again_or_missed() {
        let dpop = crate::dpop::DPoPKey::generate().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let (counter, bound_to) = (calls.clone(), dpop.clone());
        let grant = tower::util::BoxCloneSyncService::new(service_fn(move |_: FetchToken| {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            let key = bound_to.clone();
            async move {
                let token = Token::new(
                    format!("tok-{n}").into(),
                    crate::TokenType::DPoP,
                    tokio::time::Instant::now(),
                )?;
                Ok(token
                    .with_expires_in(Duration::from_secs(3600))
                    .with_dpop(key))
            }
        }));
        let store = MemoryStore::new();
        let a = TokenSource::new(StoreGrant::new(grant.clone(), store.clone(), key()));
        let b = TokenSource::new(
            StoreGrant::new(grant.clone(), store.clone(), key()).dpop(dpop.clone()),
        );
        let c = TokenSource::new(StoreGrant::new(grant, store, key()));
        let ta = a.token().await.unwrap();
        let tb = b.token().await.unwrap();
        assert_eq!(
            ta.access_token(),
            tb.access_token(),
            "b takes the stored token"
        );
        assert_eq!(tb.dpop_thumbprint(), Some(dpop.thumbprint()));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let tc = c.token().await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2, "c has no key: it fetches");
        assert!(tc.dpop_thumbprint().is_some());
    }

    #[tokio::test]
    async fn a_dpop_token_comes_back_dpop_with_its_thumbprint() {
        let store = MemoryStore::new();
        let key = CacheKey::builder("https://idp/token", "client_credentials").build();
        let dpop = crate::dpop::DPoPKey::generate().unwrap();
        let token = Token::new("d".into(), crate::TokenType::DPoP, Instant::now())
            .unwrap()
            .with_dpop(dpop.clone());
        store
            .put(&key, &StoredToken::from_token(&token))
            .await
            .unwrap();
        let back = store.get(&key).await.unwrap().unwrap();
        assert_eq!(back.token_type(), crate::TokenType::DPoP);
        assert_eq!(back.dpop_thumbprint(), Some(dpop.thumbprint()));
        assert!(back.to_token().is_err(), "never unbound");
        let bound = back.to_dpop_token(&dpop).unwrap();
        assert_eq!(bound.header_value(), "DPoP d");
        assert!(bound.binding().is_some());
    }

    mod stored {
        use std::sync::LazyLock;

        use proptest::prelude::*;

        use super::*;

        static KEYS: LazyLock<[DPoPKey; 2]> =
            LazyLock::new(|| [DPoPKey::generate().unwrap(), DPoPKey::generate().unwrap()]);

        /// A token as a grant returns it: Bearer, or DPoP bound to `KEYS[0]`.
        fn token(
            dpop: bool,
            access: &str,
            lifetime: Option<u64>,
            scope: Option<String>,
            refresh: Option<String>,
            extra: Vec<(String, i64)>,
        ) -> Token {
            let kind = if dpop {
                TokenType::DPoP
            } else {
                TokenType::Bearer
            };
            let mut token = Token::new(access.into(), kind, Instant::now())
                .unwrap()
                .with_extra(extra.into_iter().map(|(k, v)| (k, v.into())).collect());
            if let Some(secs) = lifetime {
                token = token.with_expires_in(Duration::from_secs(secs));
            }
            if let Some(scope) = scope {
                token = token.with_scope(scope);
            }
            if let Some(refresh) = refresh {
                token = token.with_refresh_token(refresh);
            }
            if dpop {
                token = token.with_dpop(KEYS[0].clone());
            }
            token
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Every field that changes how a token is sent survives the
            /// bytes, and a DPoP token comes back only bound to its key.
            #[test]
            fn how_a_token_is_sent_survives_the_bytes(
                dpop in any::<bool>(),
                access in "[A-Za-z0-9._~+/-]{1,64}",
                lifetime in proptest::option::of(1u64..100_000_000),
                scope in proptest::option::of("[a-z:]{1,8}( [a-z:]{1,8}){0,3}"),
                refresh in proptest::option::of("[A-Za-z0-9]{1,32}"),
                extra in proptest::collection::vec(("[a-z_]{1,8}", any::<i64>()), 0..4),
            ) {
                let original = token(dpop, &access, lifetime, scope, refresh, extra);
                let stored = StoredToken::from_token(&original);
                let back = StoredToken::from_bytes(&stored.to_bytes()).unwrap();
                prop_assert_eq!(&back, &stored);
                prop_assert_eq!(back.token_type(), original.token_type());
                prop_assert_eq!(back.dpop_thumbprint(), original.dpop_thumbprint());

                let restored = back.to_dpop_token(&KEYS[0]).unwrap();
                prop_assert_eq!(restored.header_value(), original.header_value());
                prop_assert_eq!(restored.token_type(), original.token_type());
                prop_assert_eq!(restored.dpop_thumbprint(), original.dpop_thumbprint());
                prop_assert_eq!(restored.binding().is_some(), dpop);
                prop_assert_eq!(restored.scope(), original.scope());
                prop_assert_eq!(
                    restored.refresh_token().map(|t| t.secret().to_owned()),
                    original.refresh_token().map(|t| t.secret().to_owned())
                );
                prop_assert_eq!(restored.extra(), original.extra());
                prop_assert_eq!(restored.lifetime().is_some(), lifetime.is_some());

                // Never an unbound DPoP token: not without a key, not with
                // another key.
                prop_assert_eq!(back.to_token().is_ok(), !dpop);
                prop_assert_eq!(back.to_dpop_token(&KEYS[1]).is_ok(), !dpop);
            }
        }
    }
}
