//! What a signed JWS costs beside the signature inside it: a DPoP proof, a
//! `private_key_jwt` client assertion and a JWT-bearer assertion, each with
//! ES256 and RS256 (2048-bit), side by side with one direct ring signature
//! of an input of the same size with the same kind of key. The crate's
//! share is the claims, the random `jti`, the JSON and the base64url.
//!
//! ```text
//! cargo bench -p tower-alf-benches --bench signing
//! ```

use base64::{engine::general_purpose::STANDARD, Engine as _};
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Method, Uri};
use ring::{
    rand::SystemRandom,
    signature::{EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256},
};
use tower_alf::{
    dpop::DPoPKey,
    grant::JwtBearer,
    jwt::{Algorithm, PrivateKey},
    ClientAuth, TokenEndpoint,
};

const P256_PKCS8: &str = include_str!("../tests/fixtures/p256_pkcs8.pem");
const RSA_PKCS8: &str = include_str!("../tests/fixtures/rsa_pkcs8.pem");
const TOKEN_URL: &str = "https://idp.example/oauth2/token";

fn der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).expect("a PEM fixture")
}

/// The length of a JWS's signing input (its first two parts and their dot).
fn input_len(jws: &str) -> usize {
    jws.rfind('.').expect("a compact JWS")
}

/// One direct signature, the floor of each row.
enum Direct {
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
}

impl Direct {
    fn sign(&self, rng: &SystemRandom, input: &[u8]) -> usize {
        match self {
            Self::Es256(key) => key.sign(rng, input).unwrap().as_ref().len(),
            Self::Rs256(key) => {
                let mut sig = [0u8; 256];
                key.sign(&RSA_PKCS1_SHA256, rng, input, &mut sig).unwrap();
                sig.len()
            }
        }
    }
}

fn signing(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let uri: Uri = "https://api.example/v1/orders?page=2".parse().unwrap();
    let token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
    let endpoint = TokenEndpoint::builder(TOKEN_URL)
        .client_auth(ClientAuth::anonymous())
        .build()
        .unwrap();
    for alg in [Algorithm::ES256, Algorithm::RS256] {
        let (key, direct, dpop) = match alg {
            Algorithm::ES256 => {
                let direct = EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &der(P256_PKCS8),
                    &rng,
                )
                .unwrap();
                // The DPoP key as most clients make it: generated.
                let dpop = DPoPKey::generate().unwrap();
                (
                    PrivateKey::from_pem(P256_PKCS8).unwrap(),
                    Direct::Es256(direct),
                    dpop,
                )
            }
            _ => {
                let key = PrivateKey::from_pem(RSA_PKCS8).unwrap();
                let direct = RsaKeyPair::from_pkcs8(&der(RSA_PKCS8)).unwrap();
                (
                    key.clone(),
                    Direct::Rs256(direct),
                    DPoPKey::new(key).unwrap(),
                )
            }
        };
        let key = key.with_key_id("2024-06");
        let auth = ClientAuth::private_key_jwt("reporting-service", key.clone());
        let bearer = JwtBearer::new(endpoint.clone(), key, "robot@demo.iam.example")
            .subject("user-42")
            .scope("https://api.example/auth/reports");

        let mut group = c.benchmark_group(format!("signing_{}", alg.as_str().to_lowercase()));
        let proof = || dpop.proof(&Method::GET, &uri, Some(token)).unwrap();
        let assertion = || auth.assertion(TOKEN_URL).unwrap().unwrap();
        let grant = || bearer.assertion().unwrap();
        let sizes = [
            ("dpop_proof", input_len(proof().to_str().unwrap())),
            ("client_assertion", input_len(&assertion())),
            ("jwt_bearer", input_len(&grant())),
        ];
        for (name, len) in sizes {
            let input = vec![b'e'; len];
            group.bench_function(format!("ring_direct_{name}_{len}b"), |b| {
                b.iter(|| direct.sign(&rng, &input))
            });
            match name {
                "dpop_proof" => group.bench_function(name, |b| b.iter(proof)),
                "client_assertion" => group.bench_function(name, |b| b.iter(assertion)),
                _ => group.bench_function(name, |b| b.iter(grant)),
            };
        }
        group.finish();
    }
}

criterion_group!(benches, signing);
criterion_main!(benches);
