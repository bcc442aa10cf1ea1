//! Runs one signing operation of benches/signing.rs `N` times, for an
//! instruction count the machine's load cannot move: run it under
//! callgrind with two counts and divide the difference.
//!
//! ```text
//! cargo build --release -p tower-alf-benches --example signing_ops
//! valgrind --tool=callgrind target/release/examples/signing_ops es256 dpop_proof 200
//! ```
//!
//! Operations: `dpop_proof`, `client_assertion`, `jwt_bearer`, and
//! `direct_<operation>` (one ring signature of an input of that
//! operation's signing-input size); keys `es256` or `rs256`.

use base64::{engine::general_purpose::STANDARD, Engine as _};
use http::{Method, Uri};
use ring::{
    rand::SystemRandom,
    signature::{EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256},
};
use tower_alf::{dpop::DPoPKey, grant::JwtBearer, jwt::PrivateKey, ClientAuth, TokenEndpoint};

const P256_PKCS8: &str = include_str!("../../tests/fixtures/p256_pkcs8.pem");
const RSA_PKCS8: &str = include_str!("../../tests/fixtures/rsa_pkcs8.pem");
const TOKEN_URL: &str = "https://idp.example/oauth2/token";

fn der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (alg, op, n) = (&args[1], &args[2], args[3].parse::<usize>().unwrap());
    let rng = SystemRandom::new();
    let uri: Uri = "https://api.example/v1/orders?page=2".parse().unwrap();
    let token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
    let pem = if alg == "es256" {
        P256_PKCS8
    } else {
        RSA_PKCS8
    };
    let key = PrivateKey::from_pem(pem).unwrap().with_key_id("2024-06");
    let dpop = if alg == "es256" {
        DPoPKey::generate().unwrap()
    } else {
        DPoPKey::new(PrivateKey::from_pem(pem).unwrap()).unwrap()
    };
    let auth = ClientAuth::private_key_jwt("reporting-service", key.clone());
    let endpoint = TokenEndpoint::builder(TOKEN_URL)
        .client_auth(ClientAuth::anonymous())
        .build()
        .unwrap();
    let bearer = JwtBearer::new(endpoint, key, "robot@demo.iam.example")
        .subject("user-42")
        .scope("https://api.example/auth/reports");
    let run = |op: &str| -> String {
        match op {
            "dpop_proof" => dpop
                .proof(&Method::GET, &uri, Some(token))
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned(),
            "client_assertion" => auth.assertion(TOKEN_URL).unwrap().unwrap(),
            _ => bearer.assertion().unwrap(),
        }
    };
    let mut total = 0;
    if let Some(of) = op.strip_prefix("direct_") {
        let input = vec![b'e'; run(of).rfind('.').unwrap()];
        if alg == "es256" {
            let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der(pem), &rng)
                .unwrap();
            for _ in 0..n {
                total += key.sign(&rng, &input).unwrap().as_ref().len();
            }
        } else {
            let key = RsaKeyPair::from_pkcs8(&der(pem)).unwrap();
            let mut sig = [0u8; 256];
            for _ in 0..n {
                key.sign(&RSA_PKCS1_SHA256, &rng, &input, &mut sig).unwrap();
                total += sig.len();
            }
        }
    } else {
        for _ in 0..n {
            total += run(op).len();
        }
    }
    println!("{total}");
}
