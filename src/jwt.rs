//! Signed JWTs the client sends: private keys, algorithms and the signing
//! step shared by `private_key_jwt`, `client_secret_jwt` (RFC 7523 §2.2),
//! the JWT-bearer grant (RFC 7523 §2.1), service-account assertions and
//! DPoP proofs (RFC 9449).
//!
//! Every JWS the crate makes goes through one path: one writer of the
//! compact serialisation (RFC 7515 §7.1), signed by ring (`RS*`, `PS*`,
//! `ES256`, `ES384`, `EdDSA`, and HMAC for `HS256`/`HS384`/`HS512`). Keys
//! are read here, in every common encoding: PEM in PKCS#1
//! (`RSA PRIVATE KEY`), PKCS#8 (`PRIVATE KEY`) and SEC1 (`EC PRIVATE KEY`),
//! and private JWKs (RFC 7517). What a key may leave out is derived: an EC
//! public point (p256, p384), an RSA JWK's CRT values (crypto-bigint).

mod der;

use std::{
    fmt,
    str::FromStr,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use ring::{
    rand::{SecureRandom as _, SystemRandom},
    signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair},
};
use serde_json::{Map, Value};

use crate::error::Error;

/// A JWS signing algorithm (RFC 7518 §3.1, RFC 8037).
///
/// Every asymmetric algorithm ring signs with; the `HS*` algorithms of
/// `client_secret_jwt` are not private-key algorithms. `ES512` is missing
/// because ring has no P-521.
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

    /// ring's RSA padding for an `RS*`/`PS*` algorithm.
    fn rsa_padding(self) -> Option<&'static dyn signature::RsaEncoding> {
        Some(match self {
            Self::RS256 => &signature::RSA_PKCS1_SHA256,
            Self::RS384 => &signature::RSA_PKCS1_SHA384,
            Self::RS512 => &signature::RSA_PKCS1_SHA512,
            Self::PS256 => &signature::RSA_PSS_SHA256,
            Self::PS384 => &signature::RSA_PSS_SHA384,
            Self::PS512 => &signature::RSA_PSS_SHA512,
            Self::ES256 | Self::ES384 | Self::EdDSA => return None,
        })
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

    /// The size in octets of a coordinate (and of the scalar) of an EC key.
    fn field_len(self) -> usize {
        match self {
            Self::P384 => 48,
            _ => 32,
        }
    }

    fn ecdsa(self) -> &'static signature::EcdsaSigningAlgorithm {
        match self {
            Self::P384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            _ => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        }
    }

    fn curve_name(self) -> &'static str {
        match self {
            Self::P384 => "P-384",
            Self::Ed25519 => "Ed25519",
            _ => "P-256",
        }
    }
}

/// ring's key pair for a [`PrivateKey`].
enum KeyPair {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
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
    inner: Arc<KeyPair>,
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
    ///
    /// ring's limits apply to RSA keys: a modulus of 2048 to 4096 bits
    /// whose primes are a multiple of 512 bits (2048-, 3072- and 4096-bit
    /// keys), and a public exponent of at least 65537. Other keys are
    /// refused with a configuration error naming ring's reason.
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
        let body = |what: &str| {
            der::pem(text)
                .filter(|(l, _)| *l == label)
                .map(|(_, body)| body)
                .ok_or_else(|| unreadable(what))
        };
        match label {
            "RSA PRIVATE KEY" => {
                let key = RsaKeyPair::from_der(&body("PKCS#1 RSA")?)
                    .map_err(|e| rejected("PKCS#1 RSA", e))?;
                Ok(Self::rsa(key))
            }
            "EC PRIVATE KEY" => {
                let what = "SEC1 EC (P-256 or P-384)";
                let der = body(what)?;
                let der::Sec1 { d, curve, public } =
                    der::sec1(&der).ok_or_else(|| unreadable(what))?;
                let kind = match curve {
                    Some(der::P256) => KeyKind::P256,
                    Some(der::P384) => KeyKind::P384,
                    // Without parameters, the scalar's size tells.
                    None if d.len() == 32 => KeyKind::P256,
                    None if d.len() == 48 => KeyKind::P384,
                    _ => return Err(unreadable(what)),
                };
                Self::ec(kind, d, public).map_err(|_| unreadable(what))
            }
            "PRIVATE KEY" => {
                let what = "PKCS#8 (RSA, P-256, P-384 or Ed25519)";
                Self::from_pkcs8(&body(what)?).map_err(|e| match e {
                    Pkcs8Error::Rejected(kind, e) => rejected(kind, e),
                    Pkcs8Error::Unreadable => unreadable(what),
                })
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

    /// A PKCS#8 DER key: RSA, P-256, P-384 or Ed25519.
    fn from_pkcs8(der: &[u8]) -> Result<Self, Pkcs8Error> {
        let der::Pkcs8 {
            algorithm,
            params,
            key,
        } = der::pkcs8(der).ok_or(Pkcs8Error::Unreadable)?;
        match (algorithm, params) {
            (der::RSA_ENCRYPTION, _) => RsaKeyPair::from_pkcs8(der)
                .map(Self::rsa)
                .map_err(|e| Pkcs8Error::Rejected("PKCS#8 RSA", e)),
            (der::EC_PUBLIC_KEY, Some(curve)) => {
                let kind = match curve {
                    der::P256 => KeyKind::P256,
                    der::P384 => KeyKind::P384,
                    _ => return Err(Pkcs8Error::Unreadable),
                };
                let der::Sec1 { d, public, .. } = der::sec1(key).ok_or(Pkcs8Error::Unreadable)?;
                Self::ec(kind, d, public).map_err(|_| Pkcs8Error::Unreadable)
            }
            (der::ED25519, None) => Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .map(Self::ed25519)
                .map_err(|e| Pkcs8Error::Rejected("PKCS#8 Ed25519", e)),
            _ => Err(Pkcs8Error::Unreadable),
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
        let sized = |name: &str, crv: &str, len: usize| -> Result<Option<Vec<u8>>, Error> {
            match optional(name)? {
                Some(b) if b.len() != len => Err(Error::config(format!(
                    "the {crv} JWK's {name:?} is {} octets, not {len} (RFC 7518 §6.2)",
                    b.len()
                ))),
                b => Ok(b),
            }
        };
        let no_d = || Error::config("the JWK has no \"d\" member");
        let mut key = match (member("kty")?, jwk.get("crv").and_then(Value::as_str)) {
            ("RSA", _) => {
                let [n, e, d, p, q] = ["n", "e", "d", "p", "q"].map(bytes);
                let (n, e, d, p, q) = (n?, e?, d?, p?, q?);
                let crt = rsa_crt(&d, &p, &q).ok_or_else(|| {
                    Error::config("the RSA JWK is not a valid private key: p or q is not odd")
                })?;
                for (name, value) in ["dp", "dq", "qi"].into_iter().zip(&crt) {
                    if let Some(given) = optional(name)? {
                        if trim_zeros(&given) != trim_zeros(value) {
                            return Err(Error::config(format!(
                                "the RSA JWK's {name:?} is not the CRT value of its d, p and q"
                            )));
                        }
                    }
                }
                let [dp, dq, qi] = &crt;
                let components = ring::rsa::KeyPairComponents {
                    public_key: ring::rsa::PublicKeyComponents { n: &n, e: &e },
                    d: &d,
                    p: &p,
                    q: &q,
                    dP: dp,
                    dQ: dq,
                    qInv: qi,
                };
                let inconsistent = || {
                    Error::config(
                        "the RSA JWK does not hold together: n is not p·q, or d does not \
                         invert e",
                    )
                };
                let pair = RsaKeyPair::from_components(&components).map_err(|_| inconsistent())?;
                let key = Self::rsa(pair);
                // ring checks n = p·q; a signature, which ring verifies
                // with n and e, checks that d (through dp, dq) inverts e.
                key.sign_input(b"pairwise consistency")
                    .map_err(|_| inconsistent())?;
                key
            }
            ("EC", Some(crv @ ("P-256" | "P-384"))) => {
                let kind = if crv == "P-256" {
                    KeyKind::P256
                } else {
                    KeyKind::P384
                };
                let len = kind.field_len();
                let d = sized("d", crv, len)?.ok_or_else(no_d)?;
                let key = Self::ec(kind, &d, None)
                    .map_err(|_| Error::config(format!("the {crv} JWK has an invalid \"d\"")))?;
                key.check_public(
                    crv,
                    &[("x", sized("x", crv, len)?), ("y", sized("y", crv, len)?)],
                )?;
                key
            }
            ("OKP", Some(crv @ "Ed25519")) => {
                let d = sized("d", crv, 32)?.ok_or_else(no_d)?;
                let key = Self::from_ed25519_seed(&d)?;
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

    fn rsa(key: RsaKeyPair) -> Self {
        let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(key.public());
        let public = vec![
            ("e", URL_SAFE_NO_PAD.encode(&public.e)),
            ("kty", "RSA".to_owned()),
            ("n", URL_SAFE_NO_PAD.encode(&public.n)),
        ];
        Self::new(KeyPair::Rsa(key), KeyKind::Rsa, public)
    }

    /// An EC key from its scalar `d` and, when the file has it, its
    /// uncompressed public point (derived otherwise). ring refuses a point
    /// that is not `d`'s.
    fn ec(kind: KeyKind, d: &[u8], public: Option<&[u8]>) -> Result<Self, ()> {
        let len = kind.field_len();
        if d.len() != len {
            return Err(());
        }
        let point = match public {
            Some(point) if point.len() == 1 + 2 * len && point[0] == 4 => point.to_vec(),
            _ => derive_point(kind, d).ok_or(())?,
        };
        let pair = EcdsaKeyPair::from_private_key_and_public_key(
            kind.ecdsa(),
            d,
            &point,
            &SystemRandom::new(),
        )
        .map_err(|_| ())?;
        let public = vec![
            ("crv", kind.curve_name().to_owned()),
            ("kty", "EC".to_owned()),
            ("x", URL_SAFE_NO_PAD.encode(&point[1..=len])),
            ("y", URL_SAFE_NO_PAD.encode(&point[1 + len..])),
        ];
        Ok(Self::new(KeyPair::Ecdsa(pair), kind, public))
    }

    fn ed25519(key: Ed25519KeyPair) -> Self {
        let public = vec![
            ("crv", "Ed25519".to_owned()),
            ("kty", "OKP".to_owned()),
            ("x", URL_SAFE_NO_PAD.encode(key.public_key().as_ref())),
        ];
        Self::new(KeyPair::Ed25519(key), KeyKind::Ed25519, public)
    }

    /// An Ed25519 key from its 32-octet seed (RFC 8032's private key).
    pub(crate) fn from_ed25519_seed(seed: &[u8]) -> Result<Self, Error> {
        Ed25519KeyPair::from_seed_unchecked(seed)
            .map(Self::ed25519)
            .map_err(|_| Error::config("the Ed25519 private key is not 32 octets"))
    }

    /// A fresh P-256 key from the operating system's random source.
    #[cfg(any(feature = "dpop", test))]
    pub(crate) fn generate_p256() -> Result<Self, Error> {
        let rng = SystemRandom::new();
        let failed = || Error::runtime("could not generate a P-256 key");
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(KeyKind::P256.ecdsa(), &rng).map_err(|_| failed())?;
        Self::from_pkcs8(pkcs8.as_ref()).map_err(|_| failed())
    }

    fn new(key: KeyPair, kind: KeyKind, public: Vec<(&'static str, String)>) -> Self {
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

    /// Signs `message` (the JWS signing input) with the key's algorithm and
    /// appends the base64url signature to `out`.
    pub(crate) fn sign_into(&self, message: &[u8], out: &mut String) -> Result<(), Error> {
        let failed = || Error::signing(format!("could not sign a JWT with {}", self.algorithm));
        match &*self.inner {
            KeyPair::Rsa(key) => {
                let padding = self.algorithm.rsa_padding().ok_or_else(failed)?;
                // ring's largest modulus, 8192 bits.
                let mut buf = [0u8; 1024];
                let signature = buf
                    .get_mut(..key.public().modulus_len())
                    .ok_or_else(failed)?;
                key.sign(padding, &SystemRandom::new(), message, signature)
                    .map_err(|_| failed())?;
                URL_SAFE_NO_PAD.encode_string(signature, out);
            }
            KeyPair::Ecdsa(key) => {
                let signature = key
                    .sign(&SystemRandom::new(), message)
                    .map_err(|_| failed())?;
                URL_SAFE_NO_PAD.encode_string(signature, out);
            }
            KeyPair::Ed25519(key) => URL_SAFE_NO_PAD.encode_string(key.sign(message), out),
        }
        Ok(())
    }

    /// The base64url signature of `message`.
    fn sign_input(&self, message: &[u8]) -> Result<String, Error> {
        let mut out = String::new();
        self.sign_into(message, &mut out)?;
        Ok(out)
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

    /// A JWT of `claims`: header `{"alg":…,"kid":…,"typ":"JWT"}`.
    pub(crate) fn sign(&self, claims: &Map<String, Value>) -> Result<String, Error> {
        let header = jwt_header(self.algorithm.as_str(), self.key_id.as_deref())?;
        compact(&header, claims, |input, out| self.sign_into(input, out))
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

/// Why a PKCS#8 key was not read.
enum Pkcs8Error {
    Unreadable,
    Rejected(&'static str, ring::error::KeyRejected),
}

/// A configuration error for a key ring refused; ring's reason names a
/// property (`"TooSmall"`, `"InconsistentComponents"`), never key material.
fn rejected(what: &str, e: ring::error::KeyRejected) -> Error {
    Error::config(format!("cannot use the {what} private key: {e}"))
}

/// `d`'s public point, uncompressed, by p256 or p384's curve arithmetic.
fn derive_point(kind: KeyKind, d: &[u8]) -> Option<Vec<u8>> {
    use p256::elliptic_curve::sec1::ToSec1Point as _;
    match kind {
        KeyKind::P256 => {
            let secret = p256::SecretKey::from_slice(d).ok()?;
            Some(secret.public_key().to_sec1_point(false).as_bytes().to_vec())
        }
        KeyKind::P384 => {
            let secret = p384::SecretKey::from_slice(d).ok()?;
            Some(secret.public_key().to_sec1_point(false).as_bytes().to_vec())
        }
        KeyKind::Rsa | KeyKind::Ed25519 => None,
    }
}

/// An RSA key's CRT values from `d`, `p` and `q` (RFC 8017 §3.2):
/// `d mod (p−1)`, `d mod (q−1)` and `q⁻¹ mod p`, big-endian. `None` when
/// `p` or `q` is not an odd number above 1 or `q` has no inverse modulo `p`.
fn rsa_crt(d: &[u8], p: &[u8], q: &[u8]) -> Option<[Vec<u8>; 3]> {
    use crypto_bigint::{BoxedUint, NonZero, Odd};
    let int = |b: &[u8]| BoxedUint::from_be_slice_vartime(b);
    let (d, p, q) = (int(d), int(p), int(q));
    let minus_one = |x: &BoxedUint| {
        let one = BoxedUint::one_with_precision(x.bits_precision());
        Option::<NonZero<BoxedUint>>::from(NonZero::new(x.wrapping_sub(&one)))
    };
    let dp = d.rem(&minus_one(&p)?);
    let dq = d.rem(&minus_one(&q)?);
    let p_odd = Option::<Odd<BoxedUint>>::from(Odd::new(p.clone()))?;
    let q_mod_p = q.rem(&NonZero::new(p.clone()).into_option()?);
    let qi = Option::<BoxedUint>::from(q_mod_p.invert_odd_mod(&p_odd))?;
    Some([dp, dq, qi].map(|x| trim_zeros(&x.to_be_bytes()).to_vec()))
}

fn trim_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// A JWT header `{"alg":…,"kid":…,"typ":"JWT"}`, JSON.
fn jwt_header(alg: &str, kid: Option<&str>) -> Result<Vec<u8>, Error> {
    let mut header = Map::new();
    header.insert("alg".into(), alg.into());
    if let Some(kid) = kid {
        header.insert("kid".into(), kid.into());
    }
    header.insert("typ".into(), "JWT".into());
    serde_json::to_vec(&header).map_err(|_| Error::signing("cannot encode a JWT header"))
}

/// The compact JWS serialisation (RFC 7515 §7.1) of `header` (JSON) and
/// `claims`: `base64url(header).base64url(claims).base64url(signature)`,
/// where `sign` appends the base64url signature of the signing input (the
/// first two parts and their dot) to the string it is given. The one place
/// the crate writes a JWS: assertions, JWT-bearer grants and DPoP proofs.
pub(crate) fn compact(
    header: &[u8],
    claims: &impl serde::Serialize,
    sign: impl FnOnce(&[u8], &mut String) -> Result<(), Error>,
) -> Result<String, Error> {
    let claims =
        serde_json::to_vec(claims).map_err(|_| Error::signing("cannot encode the JWT claims"))?;
    compact_encoded(&URL_SAFE_NO_PAD.encode(header), &claims, sign)
}

/// [`compact`] with the header already base64url-encoded (a DPoP key's,
/// the same for every proof) and the claims as JSON.
pub(crate) fn compact_encoded(
    header_b64: &str,
    claims: &[u8],
    sign: impl FnOnce(&[u8], &mut String) -> Result<(), Error>,
) -> Result<String, Error> {
    // Base64 grows by 4/3; an RSA-4096 signature is 683 characters.
    let mut jws = String::with_capacity(header_b64.len() + claims.len() * 4 / 3 + 700);
    jws.push_str(header_b64);
    jws.push('.');
    URL_SAFE_NO_PAD.encode_string(claims, &mut jws);
    let mut signature = String::with_capacity(700);
    sign(jws.as_bytes(), &mut signature)?;
    jws.push('.');
    jws.push_str(&signature);
    Ok(jws)
}

/// An HMAC algorithm of `client_secret_jwt` (RFC 7518 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::upper_case_acronyms)]
pub(crate) enum Hmac {
    HS256,
    HS384,
    HS512,
}

impl Hmac {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::HS256 => "HS256",
            Self::HS384 => "HS384",
            Self::HS512 => "HS512",
        }
    }

    fn ring(self) -> ring::hmac::Algorithm {
        match self {
            Self::HS256 => ring::hmac::HMAC_SHA256,
            Self::HS384 => ring::hmac::HMAC_SHA384,
            Self::HS512 => ring::hmac::HMAC_SHA512,
        }
    }
}

/// Signs `claims` with `alg` and `secret` (`client_secret_jwt`).
pub(crate) fn sign_hmac(
    alg: Hmac,
    secret: &[u8],
    claims: &Map<String, Value>,
) -> Result<String, Error> {
    let header = jwt_header(alg.as_str(), None)?;
    compact(&header, claims, |input, out| {
        let key = ring::hmac::Key::new(alg.ring(), secret);
        URL_SAFE_NO_PAD.encode_string(ring::hmac::sign(&key, input), out);
        Ok(())
    })
}

/// 128 random bits from the operating system, hex-encoded: a `jti`, a
/// `state`, a PKCE verifier.
pub(crate) fn random_id() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::runtime("the operating system's random source failed"))?;
    let mut id = String::with_capacity(32);
    for b in bytes {
        use fmt::Write as _;
        let _ = write!(id, "{b:02x}");
    }
    Ok(id)
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
#[path = "../tests/recording_endpoint/jws.rs"]
pub(crate) mod test_jws;

#[cfg(test)]
mod tests {
    use super::*;
    use test_jws::Key;

    const RSA_PKCS1: &str = include_str!("../tests/fixtures/rsa_pkcs1.pem");
    const RSA_PKCS8: &str = include_str!("../tests/fixtures/rsa_pkcs8.pem");
    const P256_SEC1: &str = include_str!("../tests/fixtures/p256_sec1.pem");
    const P256_PKCS8: &str = include_str!("../tests/fixtures/p256_pkcs8.pem");
    const P384_SEC1: &str = include_str!("../tests/fixtures/p384_sec1.pem");
    const P384_PKCS8: &str = include_str!("../tests/fixtures/p384_pkcs8.pem");
    const ED25519: &str = include_str!("../tests/fixtures/ed25519_pkcs8.pem");

    #[test]
    fn pem_keys_of_every_encoding_are_read() {
        for (pem, kind) in [
            (RSA_PKCS1, KeyKind::Rsa),
            (RSA_PKCS8, KeyKind::Rsa),
            (P256_SEC1, KeyKind::P256),
            (P256_PKCS8, KeyKind::P256),
            (P384_SEC1, KeyKind::P384),
            (P384_PKCS8, KeyKind::P384),
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

    /// The scalar of a PKCS#8 or SEC1 EC key file.
    fn ec_scalar(pem: &str) -> Vec<u8> {
        let (label, der) = der::pem(pem).unwrap();
        let sec1 = if label == "PRIVATE KEY" {
            der::sec1(der::pkcs8(&der).unwrap().key).unwrap()
        } else {
            der::sec1(&der).unwrap()
        };
        sec1.d.to_vec()
    }

    #[test]
    fn ec_jwks_must_hold_together() {
        let own = PrivateKey::from_pem(P256_PKCS8).unwrap();
        let (x, y) = (public_member(&own, "x"), public_member(&own, "y"));
        let d = ec_scalar(P256_PKCS8);
        assert!(PrivateKey::from_jwk(&ec_jwk("P-256", &d, &x, &y)).is_ok());
        // Without x and y the public point is derived.
        let bare = serde_json::json!({"kty": "EC", "crv": "P-256", "d": b64(&d)}).to_string();
        assert_eq!(public_member(&PrivateKey::from_jwk(&bare).unwrap(), "x"), x);

        let other = PrivateKey::ec(KeyKind::P256, &[7u8; 32], None).unwrap();
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
    fn p384_jwks_are_read_with_and_without_their_public_point() {
        let own = PrivateKey::from_pem(P384_SEC1).unwrap();
        let (x, y) = (public_member(&own, "x"), public_member(&own, "y"));
        let d = ec_scalar(P384_SEC1);
        let full = PrivateKey::from_jwk(&ec_jwk("P-384", &d, &x, &y)).unwrap();
        assert_eq!(full.kind(), KeyKind::P384);
        let bare = serde_json::json!({"kty": "EC", "crv": "P-384", "d": b64(&d)}).to_string();
        assert_eq!(public_member(&PrivateKey::from_jwk(&bare).unwrap(), "y"), y);
        // Its signatures verify with the public PEM.
        let jwt = full.sign(&Map::new()).unwrap();
        let public = include_str!("../tests/fixtures/p384_public.pem");
        test_jws::verify(&jwt, Key::Pem(public)).unwrap();
        // A scalar of zero or above the group order is no key.
        for bad in [[0u8; 48], [0xff; 48]] {
            let jwk = serde_json::json!({"kty": "EC", "crv": "P-384", "d": b64(&bad)});
            assert!(PrivateKey::from_jwk(&jwk.to_string())
                .unwrap_err()
                .is_config());
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
        let other = public_member(&PrivateKey::from_ed25519_seed(&[9; 32]).unwrap(), "x");
        for bad in [jwk(d, &other), jwk(&d[..20], x), jwk(d, &x[..20])] {
            assert!(PrivateKey::from_jwk(&bad).unwrap_err().is_config());
        }
    }

    /// The integers of the PKCS#8 RSA fixture's RSAPrivateKey: n, e, d, p,
    /// q, dp, dq, qi.
    fn rsa_integers() -> Vec<Vec<u8>> {
        let (_, der) = der::pem(RSA_PKCS8).unwrap();
        let pkcs1 = der::pkcs8(&der).unwrap().key;
        let mut seq = der::Reader::new(der::Reader::new(pkcs1).expect(0x30).unwrap());
        seq.expect(0x02).unwrap(); // version
        (0..8)
            .map(|_| trim_zeros(seq.expect(0x02).unwrap()).to_vec())
            .collect()
    }

    /// `bytes` (big-endian) plus `k`.
    fn plus(bytes: &[u8], k: u8) -> Vec<u8> {
        let mut out = bytes.to_vec();
        let mut carry = u16::from(k);
        for b in out.iter_mut().rev() {
            let sum = u16::from(*b) + carry;
            *b = sum as u8;
            carry = sum >> 8;
        }
        if carry > 0 {
            out.insert(0, carry as u8);
        }
        out
    }

    #[test]
    fn rsa_jwks_must_hold_together() {
        let ints = rsa_integers();
        let names = ["n", "e", "d", "p", "q", "dp", "dq", "qi"];
        let mut good = serde_json::json!({"kty": "RSA"});
        for (name, value) in names.iter().zip(&ints) {
            good[*name] = b64(value).into();
        }
        assert!(PrivateKey::from_jwk(&good.to_string()).is_ok());
        let int = |name: &str| &ints[names.iter().position(|n| *n == name).unwrap()];
        for (member, value) in [
            ("d", b64(&plus(int("d"), 2))),
            ("n", b64(&plus(int("n"), 2))),
            ("e", b64(&plus(int("e"), 2))),
            ("dp", b64(&plus(int("dp"), 1))),
            ("dq", b64(&plus(int("dq"), 1))),
            ("qi", b64(&plus(int("qi"), 1))),
        ] {
            let mut bad = good.clone();
            bad[member] = value.into();
            let e = PrivateKey::from_jwk(&bad.to_string()).unwrap_err();
            assert!(e.is_config(), "{member}: {e}");
        }
    }

    #[test]
    fn rsa_jwks_without_crt_values_get_them_derived() {
        let ints = rsa_integers();
        let mut jwk = serde_json::json!({"kty": "RSA", "alg": "PS256"});
        for (name, value) in ["n", "e", "d", "p", "q"].iter().zip(&ints) {
            jwk[*name] = b64(value).into();
        }
        let key = PrivateKey::from_jwk(&jwk.to_string()).unwrap();
        assert_eq!(key.algorithm(), Algorithm::PS256);
        let jwt = key.sign(&Map::new()).unwrap();
        let public = include_str!("../tests/fixtures/rsa_public.pem");
        test_jws::verify(&jwt, Key::Pem(public)).unwrap();
        // The derived values are the fixture's own.
        let (d, p, q) = (&ints[2], &ints[3], &ints[4]);
        assert_eq!(rsa_crt(d, p, q).unwrap().to_vec(), ints[5..8].to_vec());
        // An even p is refused, not a panic.
        let mut even = jwk.clone();
        even["p"] = b64(&plus(p, 1)).into();
        assert!(PrivateKey::from_jwk(&even.to_string())
            .unwrap_err()
            .is_config());
    }

    #[test]
    fn keys_without_their_public_point_are_read_and_sign() {
        let public = include_str!("../tests/fixtures/p256_public.pem");
        let with = PrivateKey::from_pem(P256_SEC1).unwrap();
        for pem in [
            include_str!("../tests/fixtures/p256_sec1_no_public.pem"),
            include_str!("../tests/fixtures/p256_pkcs8_no_public.pem"),
        ] {
            let key = PrivateKey::from_pem(pem).unwrap();
            assert_eq!(key.kind(), KeyKind::P256);
            assert_eq!(public_member(&key, "x"), public_member(&with, "x"));
            assert_eq!(public_member(&key, "y"), public_member(&with, "y"));
            test_jws::verify(&key.sign(&Map::new()).unwrap(), Key::Pem(public)).unwrap();
        }
    }

    #[test]
    fn every_pem_key_signs_a_jwt_that_verifies_with_its_public_key() {
        for (pem, public) in [
            (RSA_PKCS1, include_str!("../tests/fixtures/rsa_public.pem")),
            (RSA_PKCS8, include_str!("../tests/fixtures/rsa_public.pem")),
            (P256_SEC1, include_str!("../tests/fixtures/p256_public.pem")),
            (
                P256_PKCS8,
                include_str!("../tests/fixtures/p256_public.pem"),
            ),
            (P384_SEC1, include_str!("../tests/fixtures/p384_public.pem")),
            (
                P384_PKCS8,
                include_str!("../tests/fixtures/p384_public.pem"),
            ),
            (
                ED25519,
                include_str!("../tests/fixtures/ed25519_public.pem"),
            ),
        ] {
            let key = PrivateKey::from_pem(pem).unwrap().with_key_id("k");
            for alg in Algorithm::ALL
                .into_iter()
                .filter(|a| key.kind().supports(*a))
            {
                let key = key.clone().with_algorithm(alg).unwrap();
                let mut claims = Map::new();
                claims.insert("sub".into(), "s".into());
                let jwt = key.sign(&claims).unwrap();
                let (header, got) = test_jws::verify(&jwt, Key::Pem(public))
                    .unwrap_or_else(|e| panic!("{alg}: {e}"));
                assert_eq!(header.alg, alg.as_str());
                assert_eq!(header.kid.as_deref(), Some("k"));
                assert_eq!(header.typ.as_deref(), Some("JWT"));
                assert_eq!(got, claims);
                // A signature over other claims does not verify.
                let forged = format!(
                    "{}.{}.{}",
                    jwt.split('.').next().unwrap(),
                    b64(br#"{"sub":"t"}"#),
                    jwt.rsplit('.').next().unwrap()
                );
                assert!(
                    test_jws::verify(&forged, Key::Pem(public)).is_err(),
                    "{alg}"
                );
            }
        }
    }

    #[test]
    fn hmac_jwts_verify_with_the_secret_for_each_algorithm() {
        let mut claims = Map::new();
        claims.insert("iss".into(), "c".into());
        for alg in [Hmac::HS256, Hmac::HS384, Hmac::HS512] {
            let jwt = sign_hmac(alg, b"a-shared-secret", &claims).unwrap();
            let (header, got) = test_jws::verify(&jwt, Key::Secret(b"a-shared-secret")).unwrap();
            assert_eq!(header.alg, alg.as_str());
            assert_eq!(got, claims);
            assert!(test_jws::verify(&jwt, Key::Secret(b"another-secret")).is_err());
        }
    }

    #[test]
    fn keys_ring_cannot_use_give_a_clear_config_error() {
        for (pem, says) in [
            (include_str!("../tests/fixtures/rsa1024_pkcs1.pem"), "RSA"),
            (include_str!("../tests/fixtures/p521_sec1.pem"), "SEC1"),
        ] {
            let e = PrivateKey::from_pem(pem).unwrap_err();
            assert!(e.is_config(), "{e}");
            assert!(e.to_string().contains(says), "{e}");
            let body: String = pem.lines().nth(1).unwrap().chars().take(24).collect();
            assert!(!e.to_string().contains(&body[8..]), "{e}");
        }
    }

    #[test]
    fn generated_p256_keys_differ_and_sign() {
        let (a, b) = (
            PrivateKey::generate_p256().unwrap(),
            PrivateKey::generate_p256().unwrap(),
        );
        assert_ne!(public_member(&a, "x"), public_member(&b, "x"));
        let jwk = serde_json::json!({"kty": "EC", "crv": "P-256",
            "x": public_member(&a, "x"), "y": public_member(&a, "y")});
        test_jws::verify(&a.sign(&Map::new()).unwrap(), Key::Jwk(&jwk)).unwrap();
        assert!(test_jws::verify(&b.sign(&Map::new()).unwrap(), Key::Jwk(&jwk)).is_err());
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
