//! DPoP proof creation (RFC 9449 §4), once per resource request when tokens
//! are DPoP-bound: a generated ES256 key and a supplied RS256 key, both
//! signed by ring. No lock is held while a proof is signed. benches/signing.rs
//! sets each beside one direct ring signature.
//!
//! ```text
//! cargo bench -p tower-alf-benches --bench dpop
//! ```

use criterion::{criterion_group, criterion_main, Criterion};
use http::{Method, Uri};
use tower_alf::{dpop::DPoPKey, jwt::PrivateKey};

fn proofs(c: &mut Criterion) {
    let uri: Uri = "https://api.example/v1/orders?page=2".parse().unwrap();
    let token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
    let es256 = DPoPKey::generate().expect("a generated ES256 key");
    let rsa_pem = include_str!("../tests/fixtures/rsa_pkcs1.pem");
    let rs256 = DPoPKey::new(PrivateKey::from_pem(rsa_pem).expect("the test RSA key"))
        .expect("an RS256 DPoP key");
    let mut group = c.benchmark_group("dpop_proof");
    group.bench_function("es256_generated", |b| {
        b.iter(|| es256.proof(&Method::GET, &uri, Some(token)).unwrap())
    });
    group.bench_function("rs256_supplied", |b| {
        b.iter(|| rs256.proof(&Method::GET, &uri, Some(token)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, proofs);
criterion_main!(benches);
