//! Signed JWTs the client sends: private keys, algorithms and the signing
//! step shared by `private_key_jwt`, `client_secret_jwt` (RFC 7523 §2.2) and
//! the JWT-bearer grant (RFC 7523 §2.1).
//!
//! Signing is done by [`jsonwebtoken`] with its pure-Rust (RustCrypto)
//! backend. Keys are read here, with the RustCrypto key types, so that every
//! common encoding works: PEM in PKCS#1 (`RSA PRIVATE KEY`), PKCS#8
//! (`PRIVATE KEY`) and SEC1 (`EC PRIVATE KEY`), and private JWKs (RFC 7517).

use std::{
    fmt,
    str::FromStr,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Map, Value};

use crate::error::Error;

/// A JWS signing algorithm (RFC 7518 §3.1, RFC 8037).
///
/// Every asymmetric algorithm `jsonwebtoken` implements; `HS256` is used for
/// `client_secret_jwt` and is not a private-key algorithm. `ES512` is missing
/// because `jsonwebtoken` 10 does not implement it.
///
/// ```
/// use tower_alf::jwt::Algorithm;
///
/// let alg: Algorithm = "PS256".parse().unwrap();
/// assert_eq!(alg, Algorithm::PS256);
/// assert_eq!(alg.as_str(), "PS256");
/// assert!("none".parse::<Algorithm>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(clippy::upper_case_acronyms)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// Ed25519 (RFC 8037).
    EdDSA,
}

impl Algorithm {
    /// Every algorithm a [`PrivateKey`] can sign with.
    pub const ALL: [Algorithm; 9] = [
        Self::RS256,
        Self::RS384,
        Self::RS512,
        Self::PS256,
        Self::PS384,
        Self::PS512,
        Self::ES256,
        Self::ES384,
        Self::EdDSA,
    ];

    /// The `alg` header value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::RS384 => "RS384",
            Self::RS512 => "RS512",
            Self::PS256 => "PS256",
            Self::PS384 => "PS384",
            Self::PS512 => "PS512",
            Self::ES256 => "ES256",
            Self::ES384 => "ES384",
            Self::EdDSA => "EdDSA",
        }
    }

    fn to_jsonwebtoken(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as J;
        match self {
            Self::RS256 => J::RS256,
            Self::RS384 => J::RS384,
            Self::RS512 => J::RS512,
            Self::PS256 => J::PS256,
            Self::PS384 => J::PS384,
            Self::PS512 => J::PS512,
            Self::ES256 => J::ES256,
            Self::ES384 => J::ES384,
            Self::EdDSA => J::EdDSA,
        }
    }
}

impl FromStr for Algorithm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|alg| alg.as_str() == s)
            .ok_or_else(|| Error::config(format!("unsupported signing algorithm {s:?}")))
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of a [`PrivateKey`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyKind {
    /// An RSA key: `RS*` and `PS*` algorithms.
    Rsa,
    /// A P-256 key: `ES256`.
    P256,
    /// A P-384 key: `ES384`.
    P384,
    /// An Ed25519 key: `EdDSA`.
    Ed25519,
}

impl KeyKind {
    /// The algorithm used when none is chosen: `RS256`, `ES256`, `ES384`
    /// or `EdDSA`.
    pub const fn default_algorithm(self) -> Algorithm {
        match self {
            Self::Rsa => Algorithm::RS256,
            Self::P256 => Algorithm::ES256,
            Self::P384 => Algorithm::ES384,
            Self::Ed25519 => Algorithm::EdDSA,
        }
    }

    /// Whether a key of this kind signs with `alg`.
    pub fn supports(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            Self::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Self::P256 => alg == ES256,
            Self::P384 => alg == ES384,
            Self::Ed25519 => alg == EdDSA,
        }
    }
}

/// A private signing key, with the algorithm and key id it signs with.
///
/// Read one from PEM ([`PrivateKey::from_pem`]: PKCS#1, PKCS#8 or SEC1) or
/// from a private JWK ([`PrivateKey::from_jwk`]). The key material never
/// appears in `Debug`, `Display` or errors. Cheap to clone.
///
/// ```
/// use tower_alf::jwt::{Algorithm, PrivateKey};
///
/// # fn main() -> Result<(), tower_alf::Error> {
/// # let pem = include_str!("../tests/fixtures/rsa_pkcs1.pem");
/// let key = PrivateKey::from_pem(pem)?
///     .with_algorithm(Algorithm::PS256)?
///     .with_key_id("2024-06");
/// assert_eq!(key.algorithm(), Algorithm::PS256);
/// assert!(!format!("{key:?}").contains("MII"));
/// // An RSA key cannot sign ES256.
/// assert!(key.with_algorithm(Algorithm::ES256).unwrap_err().is_config());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PrivateKey {
    inner: Arc<EncodingKey>,
    kind: KeyKind,
    algorithm: Algorithm,
    key_id: Option<String>,
    /// The public half as the JWK members RFC 7638 requires, in
    /// lexicographic order (the DPoP `jwk` header and thumbprint).
    #[cfg_attr(not(feature = "dpop"), allow(dead_code))]
    public: Arc<[(&'static str, String)]>,
}

impl PrivateKey {
    /// Reads a PEM private key: `RSA PRIVATE KEY` (PKCS#1), `EC PRIVATE KEY`
    /// (SEC1, P-256 or P-384) or `PRIVATE KEY` (PKCS#8: RSA, P-256, P-384 or
    /// Ed25519). Encrypted keys are refused; decrypt them first.
    pub fn from_pem(pem: impl AsRef<[u8]>) -> Result<Self, Error> {
        let text = std::str::from_utf8(pem.as_ref())
            .map_err(|_| Error::config("the private key is not PEM text"))?;
        let label = text
            .lines()
            .find_map(|line| {
                line.trim()
                    .strip_prefix("-----BEGIN ")
                    .and_then(|rest| rest.strip_suffix("-----"))
            })
            .ok_or_else(|| Error::config("the private key is not PEM: no BEGIN line"))?;
        let unreadable = |what: &str| Error::config(format!("cannot read the {what} private key"));
        match label {
            "RSA PRIVATE KEY" => {
                use rsa_jwt::pkcs1::DecodeRsaPrivateKey;
                let key = rsa_jwt::RsaPrivateKey::from_pkcs1_pem(text)
                    .map_err(|_| unreadable("PKCS#1 RSA"))?;
                Self::rsa(&key)
            }
            "EC PRIVATE KEY" => {
                if let Ok(key) = p256::SecretKey::from_sec1_pem(text) {
                    Self::p256(&key)
                } else if let Ok(key) = p384::SecretKey::from_sec1_pem(text) {
                    Self::p384(&key)
                } else {
                    Err(unreadable("SEC1 EC (P-256 or P-384)"))
                }
            }
            "PRIVATE KEY" => {
                use p256::pkcs8::DecodePrivateKey;
                if let Ok(key) = rsa_jwt::RsaPrivateKey::from_pkcs8_pem(text) {
                    Self::rsa(&key)
                } else if let Ok(key) = p256::SecretKey::from_pkcs8_pem(text) {
                    Self::p256(&key)
                } else if let Ok(key) = p384::SecretKey::from_pkcs8_pem(text) {
                    Self::p384(&key)
                } else if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_pem(text) {
                    Self::ed25519(&key)
                } else {
                    Err(unreadable("PKCS#8 (RSA, P-256, P-384 or Ed25519)"))
                }
            }
            "ENCRYPTED PRIVATE KEY" => Err(Error::config(
                "encrypted private keys are not supported: decrypt it first \
                 (openssl pkcs8 -in key.pem -nocrypt)",
            )),
            other if other.contains("PUBLIC KEY") || other.contains("CERTIFICATE") => Err(
                Error::config(format!("expected a private key, found a {other}")),
            ),
            other => Err(Error::config(format!(
                "unsupported PEM block {other:?}: expected RSA PRIVATE KEY, EC PRIVATE KEY \
                 or PRIVATE KEY"
            ))),
        }
    }

    /// Reads a private JWK (RFC 7517): `kty` `RSA` (with `n`, `e`, `d`, `p`,
    /// `q`), `EC` with `crv` `P-256` or `P-384` (with `d`), or `OKP` with
    /// `crv` `Ed25519` (with `d`). Its `kid` and `alg`, when present, are
    /// taken as the key id and algorithm.
    ///
    /// The key must hold together (RFC 7518 §6.2–6.3, RFC 8037 §2), or it
    /// is refused with a configuration error that shows no key material:
    ///
    /// - EC: `d`, `x` and `y` are exactly the curve's size (32 octets for
    ///   P-256, 48 for P-384), and `x`/`y`, when present, are the public
    ///   point of `d`; a 32-octet `d` labelled `P-384` is refused, not
    ///   padded into another key;
    /// - OKP Ed25519: `d` is 32 octets, and `x`, when present, is its
    ///   public key;
    /// - RSA: `n` is `p`·`q`, `d` inverts `e` modulo `p`−1 and `q`−1, and
    ///   `dp`, `dq`, `qi`, when present, are the CRT values of `d`, `p`, `q`.
    ///
    /// ```
    /// use tower_alf::jwt::PrivateKey;
    ///
    /// // RFC 8037 §A.1's key with another key's "x".
    /// let jwk = r#"{"kty":"OKP","crv":"Ed25519",
    ///     "d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
    ///     "x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#;
    /// assert!(PrivateKey::from_jwk(jwk).unwrap_err().is_config());
    /// ```
    pub fn from_jwk(jwk: &str) -> Result<Self, Error> {
        let jwk: Map<String, Value> =
            serde_json::from_str(jwk).map_err(|_| Error::config("the JWK is not a JSON object"))?;
        let member = |name: &str| -> Result<&str, Error> {
            jwk.get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| Error::config(format!("the JWK has no {name:?} member")))
        };
        let bytes = |name: &str| -> Result<Vec<u8>, Error> {
            URL_SAFE_NO_PAD
                .decode(member(name)?.trim_end_matches('='))
                .map_err(|_| Error::config(format!("the JWK member {name:?} is not base64url")))
        };
        let optional = |name: &str| -> Result<Option<Vec<u8>>, Error> {
            match jwk.get(name) {
                None => Ok(None),
                Some(_) => bytes(name).map(Some),
            }
        };
        let big = |name: &str| bytes(name).map(|b| rsa_jwt::BigUint::from_bytes_be(&b));
        let sized = |name: &str, crv: &str, len: usize| -> Result<Option<Vec<u8>>, Error> {
            match optional(name)? {
                Some(b) if b.len() != len => Err(Error::config(format!(
                    "the {crv} JWK's {name:?} is {} octets, not {len} (RFC 7518 §6.2)",
                    b.len()
                ))),
                b => Ok(b),
            }
        };
        let mut key = match (member("kty")?, jwk.get("crv").and_then(Value::as_str)) {
            ("RSA", _) => {
                use rsa_jwt::traits::PrivateKeyParts;
                let key = rsa_jwt::RsaPrivateKey::from_components(
                    big("n")?,
                    big("e")?,
                    big("d")?,
                    vec![big("p")?, big("q")?],
                )
                .map_err(|_| Error::config("the RSA JWK is not a valid private key"))?;
                key.validate().map_err(|_| {
                    Error::config(
                        "the RSA JWK does not hold together: n is not p·q, or d does not \
                         invert e",
                    )
                })?;
                for (name, value) in [
                    ("dp", key.dp().cloned()),
                    ("dq", key.dq().cloned()),
                    ("qi", key.crt_coefficient()),
                ] {
                    if let Some(given) = optional(name)? {
                        if value != Some(rsa_jwt::BigUint::from_bytes_be(&given)) {
                            return Err(Error::config(format!(
                                "the RSA JWK's {name:?} is not the CRT value of its d, p and q"
                            )));
                        }
                    }
                }
                Self::rsa(&key)?
            }
            ("EC", Some(crv @ "P-256")) => {
                let d = sized("d", crv, 32)?
                    .ok_or_else(|| Error::config("the JWK has no \"d\" member"))?;
                let key = Self::p256(
                    &p256::SecretKey::from_slice(&d)
                        .map_err(|_| Error::config("the P-256 JWK has an invalid \"d\""))?,
                )?;
                key.check_public(
                    crv,
                    &[("x", sized("x", crv, 32)?), ("y", sized("y", crv, 32)?)],
                )?;
                key
            }
            ("EC", Some(crv @ "P-384")) => {
                let d = sized("d", crv, 48)?
                    .ok_or_else(|| Error::config("the JWK has no \"d\" member"))?;
                let key = Self::p384(
                    &p384::SecretKey::from_slice(&d)
                        .map_err(|_| Error::config("the P-384 JWK has an invalid \"d\""))?,
                )?;
                key.check_public(
                    crv,
                    &[("x", sized("x", crv, 48)?), ("y", sized("y", crv, 48)?)],
                )?;
                key
            }
            ("OKP", Some(crv @ "Ed25519")) => {
                let d: [u8; 32] = sized("d", crv, 32)?
                    .ok_or_else(|| Error::config("the JWK has no \"d\" member"))?
                    .try_into()
                    .map_err(|_| Error::config("the Ed25519 JWK \"d\" is not 32 bytes"))?;
                let key = Self::ed25519(&ed25519_dalek::SigningKey::from_bytes(&d))?;
                key.check_public(crv, &[("x", sized("x", crv, 32)?)])?;
                key
            }
            (kty, crv) => {
                return Err(Error::config(format!(
                    "unsupported JWK: kty {kty:?}, crv {crv:?}"
                )))
            }
        };
        if let Some(alg) = jwk.get("alg").and_then(Value::as_str) {
            key = key.with_algorithm(alg.parse()?)?;
        }
        if let Some(kid) = jwk.get("kid").and_then(Value::as_str) {
            key = key.with_key_id(kid);
        }
        Ok(key)
    }

    /// Refuses public members (`x`, `y`) given with a private key that are
    /// not the key's own.
    fn check_public(&self, crv: &str, given: &[(&str, Option<Vec<u8>>)]) -> Result<(), Error> {
        for (name, value) in given {
            let Some(value) = value else { continue };
            let own = self
                .public
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| URL_SAFE_NO_PAD.decode(v).ok());
            if own.as_deref() != Some(value.as_slice()) {
                return Err(Error::config(format!(
                    "the {crv} JWK's {name:?} is not the public key of its \"d\" \
                     (RFC 7518 §6.2): the members belong to different keys"
                )));
            }
        }
        Ok(())
    }

    fn rsa(key: &rsa_jwt::RsaPrivateKey) -> Result<Self, Error> {
        use rsa_jwt::{pkcs1::EncodeRsaPrivateKey, traits::PublicKeyParts};
        let der = key
            .to_pkcs1_der()
            .map_err(|_| Error::config("cannot encode the RSA private key"))?;
        let public = vec![
            ("e", URL_SAFE_NO_PAD.encode(key.e().to_bytes_be())),
            ("kty", "RSA".to_owned()),
            ("n", URL_SAFE_NO_PAD.encode(key.n().to_bytes_be())),
        ];
        Ok(Self::new(
            EncodingKey::from_rsa_der(der.as_bytes()),
            KeyKind::Rsa,
            public,
        ))
    }

    pub(crate) fn p256(key: &p256::SecretKey) -> Result<Self, Error> {
        use p256::{elliptic_curve::sec1::ToEncodedPoint, pkcs8::EncodePrivateKey};
        let der = key
            .to_pkcs8_der()
            .map_err(|_| Error::config("cannot encode the P-256 private key"))?;
        let point = key.public_key().to_encoded_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err(Error::config("the P-256 public key is the identity"));
        };
        let public = vec![
            ("crv", "P-256".to_owned()),
            ("kty", "EC".to_owned()),
            ("x", URL_SAFE_NO_PAD.encode(x)),
            ("y", URL_SAFE_NO_PAD.encode(y)),
        ];
        Ok(Self::new(
            EncodingKey::from_ec_der(der.as_bytes()),
            KeyKind::P256,
            public,
        ))
    }

    fn p384(key: &p384::SecretKey) -> Result<Self, Error> {
        use p384::{elliptic_curve::sec1::ToEncodedPoint, pkcs8::EncodePrivateKey};
        let der = key
            .to_pkcs8_der()
            .map_err(|_| Error::config("cannot encode the P-384 private key"))?;
        let point = key.public_key().to_encoded_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err(Error::config("the P-384 public key is the identity"));
        };
        let public = vec![
            ("crv", "P-384".to_owned()),
            ("kty", "EC".to_owned()),
            ("x", URL_SAFE_NO_PAD.encode(x)),
            ("y", URL_SAFE_NO_PAD.encode(y)),
        ];
        Ok(Self::new(
            EncodingKey::from_ec_der(der.as_bytes()),
            KeyKind::P384,
            public,
        ))
    }

    pub(crate) fn ed25519(key: &ed25519_dalek::SigningKey) -> Result<Self, Error> {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let der = key
            .to_pkcs8_der()
            .map_err(|_| Error::config("cannot encode the Ed25519 private key"))?;
        let public = vec![
            ("crv", "Ed25519".to_owned()),
            ("kty", "OKP".to_owned()),
            ("x", URL_SAFE_NO_PAD.encode(key.verifying_key().to_bytes())),
        ];
        Ok(Self::new(
            EncodingKey::from_ed_der(der.as_bytes()),
            KeyKind::Ed25519,
            public,
        ))
    }

    fn new(key: EncodingKey, kind: KeyKind, public: Vec<(&'static str, String)>) -> Self {
        Self {
            inner: Arc::new(key),
            kind,
            algorithm: kind.default_algorithm(),
            key_id: None,
            public: public.into(),
        }
    }

    /// The public JWK members RFC 7638 requires, in lexicographic order.
    #[cfg(feature = "dpop")]
    pub(crate) fn public_jwk(&self) -> &[(&'static str, String)] {
        &self.public
    }

    /// Signs `message` (the JWS signing input) with the key's algorithm:
    /// the base64url signature.
    #[cfg(feature = "dpop")]
    pub(crate) fn sign_input(&self, message: &[u8]) -> Result<String, Error> {
        jsonwebtoken::crypto::sign(message, &self.inner, self.algorithm.to_jsonwebtoken())
            .map_err(|_| Error::signing(format!("could not sign a JWT with {}", self.algorithm)))
    }

    /// Signs with `alg` instead of the key's default
    /// ([`KeyKind::default_algorithm`]). Fails when the key cannot sign with
    /// it (an EC key and `RS256`, for instance).
    pub fn with_algorithm(mut self, alg: Algorithm) -> Result<Self, Error> {
        if !self.kind.supports(alg) {
            return Err(Error::config(format!(
                "a {:?} key cannot sign {alg}",
                self.kind
            )));
        }
        self.algorithm = alg;
        Ok(self)
    }

    /// Sets the `kid` header of every JWT signed with this key, so the
    /// server knows which of the client's keys to check it with.
    pub fn with_key_id(mut self, key_id: impl Into<String>) -> Self {
        self.key_id = Some(key_id.into());
        self
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The kind of key.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The key id sent as `kid`, if any.
    pub fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }

    pub(crate) fn sign(&self, claims: &Map<String, Value>) -> Result<String, Error> {
        let mut header = Header::new(self.algorithm.to_jsonwebtoken());
        header.kid.clone_from(&self.key_id);
        jsonwebtoken::encode(&header, claims, &self.inner)
            .map_err(|_| Error::signing(format!("could not sign a JWT with {}", self.algorithm)))
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("kind", &self.kind)
            .field("algorithm", &self.algorithm)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Signs `claims` with HS256 and `secret` (`client_secret_jwt`).
pub(crate) fn sign_hs256(secret: &[u8], claims: &Map<String, Value>) -> Result<String, Error> {
    let header = Header::new(jsonwebtoken::Algorithm::HS256);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret))
        .map_err(|_| Error::signing("could not sign a JWT with HS256"))
}

/// 128 random bits from the operating system, hex-encoded: a `jti`, a
/// `state`, a PKCE verifier.
pub(crate) fn random_id() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes)
        .map_err(|_| Error::runtime("the operating system's random source failed"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The standard claims of an assertion: `iss`, `sub`, `aud`, `iat`, `exp`
/// (now + `lifetime`), `jti` (fresh, random).
pub(crate) fn assertion_claims(
    issuer: &str,
    subject: &str,
    audience: &str,
    lifetime: Duration,
) -> Result<Map<String, Value>, Error> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| Error::runtime("the system clock is before 1970"))?
        .as_secs();
    let mut claims = Map::new();
    claims.insert("iss".into(), issuer.into());
    claims.insert("sub".into(), subject.into());
    claims.insert("aud".into(), audience.into());
    claims.insert("iat".into(), now.into());
    claims.insert(
        "exp".into(),
        now.saturating_add(lifetime.as_secs().max(1)).into(),
    );
    claims.insert("jti".into(), random_id()?.into());
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_PKCS1: &str = include_str!("../tests/fixtures/rsa_pkcs1.pem");
    const RSA_PKCS8: &str = include_str!("../tests/fixtures/rsa_pkcs8.pem");
    const P256_SEC1: &str = include_str!("../tests/fixtures/p256_sec1.pem");
    const P256_PKCS8: &str = include_str!("../tests/fixtures/p256_pkcs8.pem");
    const P384_SEC1: &str = include_str!("../tests/fixtures/p384_sec1.pem");
    const ED25519: &str = include_str!("../tests/fixtures/ed25519_pkcs8.pem");

    #[test]
    fn pem_keys_of_every_encoding_are_read() {
        for (pem, kind) in [
            (RSA_PKCS1, KeyKind::Rsa),
            (RSA_PKCS8, KeyKind::Rsa),
            (P256_SEC1, KeyKind::P256),
            (P256_PKCS8, KeyKind::P256),
            (P384_SEC1, KeyKind::P384),
            (ED25519, KeyKind::Ed25519),
        ] {
            let key = PrivateKey::from_pem(pem).unwrap();
            assert_eq!(key.kind(), kind);
            assert_eq!(key.algorithm(), kind.default_algorithm());
        }
    }

    #[test]
    fn unusable_pem_gives_a_config_error_without_key_material() {
        let public = include_str!("../tests/fixtures/rsa_public.pem");
        for pem in [
            public,
            "garbage",
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        ] {
            let e = PrivateKey::from_pem(pem).unwrap_err();
            assert!(e.is_config(), "{e}");
            assert!(!e.to_string().contains("AAAA"), "{e}");
        }
    }

    #[test]
    fn algorithm_must_fit_the_key() {
        let key = PrivateKey::from_pem(P256_SEC1).unwrap();
        assert!(key.clone().with_algorithm(Algorithm::RS256).is_err());
        assert!(key.with_algorithm(Algorithm::ES256).is_ok());
    }

    #[test]
    fn jwk_keys_are_read_with_kid_and_alg() {
        let jwk = r#"{"kty":"OKP","crv":"Ed25519","kid":"k1","alg":"EdDSA",
            "d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
            "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
        let key = PrivateKey::from_jwk(jwk).unwrap();
        assert_eq!(key.kind(), KeyKind::Ed25519);
        assert_eq!(key.key_id(), Some("k1"));
        assert!(PrivateKey::from_jwk(r#"{"kty":"oct","k":"AAAA"}"#).is_err());
        assert!(PrivateKey::from_jwk("not json").is_err());
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn ec_jwk(crv: &str, d: &[u8], x: &str, y: &str) -> String {
        serde_json::json!({"kty": "EC", "crv": crv, "d": b64(d), "x": x, "y": y}).to_string()
    }

    fn public_member(key: &PrivateKey, name: &str) -> String {
        key.public
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap()
            .1
            .clone()
    }

    #[test]
    fn ec_jwks_must_hold_together() {
        use p256::pkcs8::DecodePrivateKey;
        let secret = p256::SecretKey::from_pkcs8_pem(P256_PKCS8).unwrap();
        let own = PrivateKey::p256(&secret).unwrap();
        let (x, y) = (public_member(&own, "x"), public_member(&own, "y"));
        let d = secret.to_bytes();
        assert!(PrivateKey::from_jwk(&ec_jwk("P-256", &d, &x, &y)).is_ok());
        // Without x and y the public point is derived.
        let bare = serde_json::json!({"kty": "EC", "crv": "P-256", "d": b64(&d)}).to_string();
        assert_eq!(public_member(&PrivateKey::from_jwk(&bare).unwrap(), "x"), x);

        let other = PrivateKey::p256(&p256::SecretKey::from_slice(&[7u8; 32]).unwrap()).unwrap();
        let (ox, oy) = (public_member(&other, "x"), public_member(&other, "y"));
        for jwk in [
            ec_jwk("P-256", &d, &ox, &oy),
            ec_jwk("P-256", &d, &x, &oy),
            ec_jwk("P-256", &d, &ox, &y),
            // A 32-octet d labelled P-384 is not padded into another key.
            ec_jwk("P-384", &d, &b64(&[1; 48]), &b64(&[2; 48])),
            serde_json::json!({"kty": "EC", "crv": "P-384", "d": b64(&d)}).to_string(),
            // Short coordinates, a short d.
            ec_jwk("P-256", &d, &x[..40], &y),
            ec_jwk("P-256", &d[1..], &x, &y),
        ] {
            let e = PrivateKey::from_jwk(&jwk).unwrap_err();
            assert!(e.is_config(), "{e}");
            assert!(!e.to_string().contains(&b64(&d)), "{e}");
        }
    }

    #[test]
    fn ed25519_jwks_must_hold_together() {
        // RFC 8037 §A.1.
        let d = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
        let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        let jwk = |d: &str, x: &str| {
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "d": d, "x": x}).to_string()
        };
        assert!(PrivateKey::from_jwk(&jwk(d, x)).is_ok());
        let other = b64(ed25519_dalek::SigningKey::from_bytes(&[9; 32])
            .verifying_key()
            .as_bytes());
        for bad in [jwk(d, &other), jwk(&d[..20], x), jwk(d, &x[..20])] {
            assert!(PrivateKey::from_jwk(&bad).unwrap_err().is_config());
        }
    }

    #[test]
    fn rsa_jwks_must_hold_together() {
        use rsa_jwt::{
            pkcs8::DecodePrivateKey,
            traits::{PrivateKeyParts, PublicKeyParts},
            BigUint,
        };
        let key = rsa_jwt::RsaPrivateKey::from_pkcs8_pem(RSA_PKCS8).unwrap();
        let n = |v: &BigUint| b64(&v.to_bytes_be());
        let good = serde_json::json!({
            "kty": "RSA", "n": n(key.n()), "e": n(key.e()), "d": n(key.d()),
            "p": n(&key.primes()[0]), "q": n(&key.primes()[1]),
            "dp": n(key.dp().unwrap()), "dq": n(key.dq().unwrap()),
            "qi": n(&key.crt_coefficient().unwrap()),
        });
        assert!(PrivateKey::from_jwk(&good.to_string()).is_ok());
        let one = BigUint::from(1u8);
        let two = BigUint::from(2u8);
        for (member, value) in [
            ("d", n(&(key.d() + &two))),
            ("n", n(&(key.n() + &two))),
            ("e", n(&(key.e() + &two))),
            ("dp", n(&(key.dp().unwrap() + &one))),
            ("dq", n(&(key.dq().unwrap() + &one))),
            ("qi", n(&(key.crt_coefficient().unwrap() + &one))),
        ] {
            let mut bad = good.clone();
            bad[member] = value.into();
            let e = PrivateKey::from_jwk(&bad.to_string()).unwrap_err();
            assert!(e.is_config(), "{member}: {e}");
        }
    }

    #[test]
    fn debug_shows_no_key_material() {
        let key = PrivateKey::from_pem(RSA_PKCS1).unwrap().with_key_id("k");
        let debug = format!("{key:?}");
        assert!(debug.contains("Rsa") && debug.contains("RS256") && debug.contains("\"k\""));
        assert!(!debug.contains("content") && debug.len() < 120, "{debug}");
    }

    #[test]
    fn random_ids_differ() {
        assert_ne!(random_id().unwrap(), random_id().unwrap());
        assert_eq!(random_id().unwrap().len(), 32);
    }
}
