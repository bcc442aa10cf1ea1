//! A compact JWS verifier for the tests, on ring's verification API and
//! its own parsing (it shares no code with the crate's signing path): the
//! key is a public PEM (SubjectPublicKeyInfo), a public JWK, or an HMAC
//! secret. The independent implementations (joserfc, PyJWT) check the same
//! JWS in tests/jose_interop.rs.

#![allow(dead_code, unreachable_pub)]

use base64::{
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
    Engine as _,
};
use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use serde_json::{Map, Value};

/// A JWS protected header.
#[derive(Debug, Clone)]
pub struct Header {
    pub alg: String,
    pub kid: Option<String>,
    pub typ: Option<String>,
    pub jwk: Option<Value>,
    /// Every member, as sent.
    pub raw: Map<String, Value>,
}

/// What a JWS is verified with.
#[derive(Debug, Clone, Copy)]
pub enum Key<'a> {
    /// A `-----BEGIN PUBLIC KEY-----` PEM.
    Pem(&'a str),
    /// A public JWK (RSA, EC P-256/P-384, OKP Ed25519).
    Jwk(&'a Value),
    /// An HMAC secret (`HS256`, `HS384`, `HS512`).
    Secret(&'a [u8]),
}

fn part(jws: &str, n: usize) -> Result<Vec<u8>, String> {
    let part = jws.split('.').nth(n).ok_or("not three parts")?;
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| format!("part {n}: {e}"))
}

/// The header, unverified.
pub fn decode_header(jws: &str) -> Result<Header, String> {
    if jws.split('.').count() != 3 {
        return Err("not a compact JWS".into());
    }
    let raw: Map<String, Value> =
        serde_json::from_slice(&part(jws, 0)?).map_err(|e| format!("header: {e}"))?;
    let text = |name: &str| raw.get(name).and_then(Value::as_str).map(str::to_owned);
    Ok(Header {
        alg: text("alg").ok_or("no alg")?,
        kid: text("kid"),
        typ: text("typ"),
        jwk: raw.get("jwk").cloned(),
        raw,
    })
}

/// Verifies the signature with `key` and the header's `alg`; the header and
/// the claims.
pub fn verify(jws: &str, key: Key<'_>) -> Result<(Header, Map<String, Value>), String> {
    let header = decode_header(jws)?;
    let input = &jws[..jws.rfind('.').unwrap()];
    let sig = part(jws, 2)?;
    match key {
        Key::Secret(secret) => {
            let alg = match header.alg.as_str() {
                "HS256" => ring::hmac::HMAC_SHA256,
                "HS384" => ring::hmac::HMAC_SHA384,
                "HS512" => ring::hmac::HMAC_SHA512,
                other => return Err(format!("{other} is not an HMAC algorithm")),
            };
            ring::hmac::verify(&ring::hmac::Key::new(alg, secret), input.as_bytes(), &sig)
                .map_err(|_| "bad HMAC".to_owned())?;
        }
        Key::Pem(pem) => {
            let (oid, public) = spki(pem)?;
            check(&header.alg, oid, &public, input, &sig)?;
        }
        Key::Jwk(jwk) => {
            let b = |name: &str| -> Result<Vec<u8>, String> {
                URL_SAFE_NO_PAD
                    .decode(jwk[name].as_str().ok_or(format!("no {name}"))?)
                    .map_err(|e| e.to_string())
            };
            match jwk["kty"].as_str() {
                Some("RSA") => {
                    let alg = rsa_alg(&header.alg)?;
                    signature::RsaPublicKeyComponents {
                        n: b("n")?,
                        e: b("e")?,
                    }
                    .verify(alg, input.as_bytes(), &sig)
                    .map_err(|_| "bad RSA signature".to_owned())?;
                }
                Some("EC") => {
                    let point = [vec![4], b("x")?, b("y")?].concat();
                    let oid = match jwk["crv"].as_str() {
                        Some("P-256") => P256,
                        Some("P-384") => P384,
                        crv => return Err(format!("curve {crv:?}")),
                    };
                    check(&header.alg, oid, &point, input, &sig)?;
                }
                Some("OKP") => check(&header.alg, ED25519, &b("x")?, input, &sig)?,
                kty => return Err(format!("kty {kty:?}")),
            }
        }
    }
    let claims = serde_json::from_slice(&part(jws, 1)?).map_err(|e| format!("claims: {e}"))?;
    Ok((header, claims))
}

const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const ED25519: &[u8] = &[0x2b, 0x65, 0x70];

fn rsa_alg(alg: &str) -> Result<&'static signature::RsaParameters, String> {
    Ok(match alg {
        "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
        "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
        "RS512" => &signature::RSA_PKCS1_2048_8192_SHA512,
        "PS256" => &signature::RSA_PSS_2048_8192_SHA256,
        "PS384" => &signature::RSA_PSS_2048_8192_SHA384,
        "PS512" => &signature::RSA_PSS_2048_8192_SHA512,
        other => return Err(format!("{other} is not an RSA algorithm")),
    })
}

/// Verifies with the key kind `oid` names (for EC keys, the curve) and
/// `alg`, which must fit it.
fn check(alg: &str, oid: &[u8], public: &[u8], input: &str, sig: &[u8]) -> Result<(), String> {
    let verifier: &'static dyn VerificationAlgorithm = match (oid, alg) {
        (RSA, alg) => rsa_alg(alg)?,
        (P256, "ES256") => &signature::ECDSA_P256_SHA256_FIXED,
        (P384, "ES384") => &signature::ECDSA_P384_SHA384_FIXED,
        (ED25519, "EdDSA") => &signature::ED25519,
        (_, alg) => return Err(format!("{alg} does not fit the key")),
    };
    UnparsedPublicKey::new(verifier, public)
        .verify(input.as_bytes(), sig)
        .map_err(|_| format!("bad {alg} signature"))
}

/// A SubjectPublicKeyInfo PEM's key OID (the curve for EC keys) and its
/// public key bits (RSAPublicKey DER, an EC point, 32 Ed25519 octets).
fn spki(pem: &str) -> Result<(&'static [u8], Vec<u8>), String> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    let der = STANDARD.decode(body).map_err(|e| e.to_string())?;
    let mut outer = Der(&der);
    let mut info = Der(outer.take(0x30)?);
    let mut alg = Der(info.take(0x30)?);
    let oid = alg.take(0x06)?;
    let oid = if oid == [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01] {
        alg.take(0x06)?
    } else {
        oid
    };
    let bits = info.take(0x03)?;
    let known = [RSA, P256, P384, ED25519]
        .into_iter()
        .find(|k| *k == oid)
        .ok_or("unknown key OID")?;
    Ok((known, bits.get(1..).ok_or("empty BIT STRING")?.to_vec()))
}

struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    fn take(&mut self, tag: u8) -> Result<&'a [u8], String> {
        let d = self.0;
        if d.len() < 2 || d[0] != tag {
            return Err(format!("expected DER tag {tag:#x}"));
        }
        let (len, start) = match d[1] {
            l if l < 0x80 => (usize::from(l), 2),
            l => {
                let n = usize::from(l & 0x7f);
                let len = d
                    .get(2..2 + n)
                    .ok_or("short")?
                    .iter()
                    .fold(0, |a, &b| (a << 8) | usize::from(b));
                (len, 2 + n)
            }
        };
        let value = d.get(start..start + len).ok_or("short DER")?;
        self.0 = &d[start + len..];
        Ok(value)
    }
}
