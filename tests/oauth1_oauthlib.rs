//! The signature base string against an independent implementation, on
//! generated inputs: `tests/fixtures/oauth1/generate.py --random SEED COUNT`
//! draws requests from a seeded generator (methods, URIs with ports, case
//! and paths, query and form parameters with reserved and non-ASCII
//! characters and duplicate names, a Host header, a stale
//! `oauth_signature`, invalid encodings and ports) and has oauthlib compute
//! each base string and signature, or refuse the input. The signer must
//! compute the same, or refuse the same, for every one of them.
//!
//! Runs in the venv of `tests/authlib_oauth1` (made from PyPI by the first
//! test that needs it). The seed is fixed so a failure reproduces;
//! `OAUTH1_RANDOM_SEED` and `OAUTH1_RANDOM_COUNT` draw others.

mod authlib_oauth1;

use std::process::Command;

use bytes::Bytes;
use http::{
    header::{AUTHORIZATION, CONTENT_TYPE, HOST},
    HeaderValue, Method, Request,
};
use serde::Deserialize;
use tower_alf::oauth1::{
    ClientCredentials, Placement, RsaKey, SignatureMethod, Signer, TokenCredentials, Verifier,
};

const RSA_PKCS1: &str = include_str!("fixtures/oauth1/test-only-rsa-key.pem");

#[derive(Deserialize)]
struct Generated {
    reference: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    http_method: String,
    uri: String,
    host: Option<String>,
    content_type: Option<String>,
    body: Option<String>,
    client_key: String,
    client_secret: String,
    token: Option<String>,
    token_secret: Option<String>,
    callback: Option<String>,
    verifier: Option<String>,
    realm: Option<String>,
    version: bool,
    signature_method: String,
    placement: String,
    nonce: String,
    timestamp: u64,
    invalid: Option<String>,
    expected: Expected,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Expected {
    Signed {
        base_string: String,
        signature: String,
    },
    Refused {
        refused: String,
    },
}

fn generate(seed: u64, count: usize) -> Generated {
    let python = authlib_oauth1::python();
    let script = authlib_oauth1::dir().join("../fixtures/oauth1/generate.py");
    let out = Command::new(python)
        .arg(script)
        .args(["--random", &seed.to_string(), &count.to_string()])
        .output()
        .expect("the generator runs");
    assert!(
        out.status.success(),
        "generate.py --random failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the generator prints JSON")
}

fn signer(case: &Case) -> Signer {
    let method: SignatureMethod = case.signature_method.parse().unwrap();
    let client = if method.is_rsa() {
        ClientCredentials::rsa(&case.client_key, RsaKey::from_pem(RSA_PKCS1).unwrap())
    } else {
        ClientCredentials::new(&case.client_key, &case.client_secret)
    };
    let mut signer = Signer::new(client)
        .method(method)
        .placement(case.placement.parse::<Placement>().unwrap())
        .version(case.version);
    if let (Some(token), Some(secret)) = (&case.token, &case.token_secret) {
        signer = signer.token(TokenCredentials::new(token, secret));
    }
    if let Some(callback) = &case.callback {
        signer = signer.callback(callback);
    }
    if let Some(verifier) = &case.verifier {
        signer = signer.verifier(Verifier::new(verifier));
    }
    if let Some(realm) = &case.realm {
        signer = signer.realm(realm);
    }
    signer
}

fn request(case: &Case) -> Request<Bytes> {
    let method = Method::from_bytes(case.http_method.as_bytes()).unwrap();
    let mut builder = Request::builder().method(method).uri(&case.uri);
    if let Some(host) = &case.host {
        builder = builder.header(HOST, HeaderValue::from_str(host).unwrap());
    }
    if let Some(content_type) = &case.content_type {
        builder = builder.header(CONTENT_TYPE, content_type);
    }
    let body = case.body.clone().map(Bytes::from).unwrap_or_default();
    builder
        .body(body)
        .unwrap_or_else(|e| panic!("{}: {e}: {}", case.name, case.uri))
}

/// Every `oauth_signature` the signed request carries, decoded, wherever
/// it is.
fn signatures(signed: &Request<Bytes>) -> Vec<String> {
    let form = |bytes: &[u8]| -> Vec<String> {
        form_urlencoded::parse(bytes)
            .filter(|(name, _)| name == "oauth_signature")
            .map(|(_, value)| value.into_owned())
            .collect()
    };
    let mut found = form(signed.uri().query().unwrap_or_default().as_bytes());
    found.extend(form(signed.body()));
    if let Some(header) = signed.headers().get(AUTHORIZATION) {
        let header = std::str::from_utf8(header.as_bytes()).unwrap();
        for param in header.trim_start_matches("OAuth ").split(", ") {
            if let Some(value) = param.strip_prefix("oauth_signature=") {
                let value = value.trim_matches('"');
                let decoded = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
                found.push(decoded.into_owned());
            }
        }
    }
    found
}

fn seed_and_count() -> (u64, usize) {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    (
        var("OAUTH1_RANDOM_SEED").unwrap_or(20_240_513),
        var("OAUTH1_RANDOM_COUNT").map_or(800, |n: u64| n as usize),
    )
}

#[test]
fn generated_requests_sign_as_oauthlib_signs_them() {
    let (seed, count) = seed_and_count();
    let generated = generate(seed, count);
    assert_eq!(generated.cases.len(), count);
    let (mut signed_alike, mut refused_alike, mut mismatches) = (0, 0, Vec::new());
    for case in &generated.cases {
        let result = signer(case).sign_with_base_string(request(case), &case.nonce, case.timestamp);
        match (&case.expected, result) {
            (
                Expected::Signed {
                    base_string,
                    signature,
                },
                Ok((signed, ours)),
            ) => {
                let sent = signatures(&signed);
                if &ours != base_string {
                    mismatches.push(format!(
                        "{}: base string\n  uri  {}\n  ours {ours}\n  ref  {base_string}",
                        case.name, case.uri
                    ));
                } else if sent != [signature.clone()] {
                    mismatches.push(format!(
                        "{}: signature sent {sent:?}, oauthlib {signature}",
                        case.name
                    ));
                } else {
                    signed_alike += 1;
                }
            }
            (Expected::Signed { .. }, Err(e)) => mismatches.push(format!(
                "{}: refused ({e}), oauthlib signs it: {}",
                case.name, case.uri
            )),
            (Expected::Refused { refused }, Ok(_)) => mismatches.push(format!(
                "{}: signed, oauthlib refuses it ({refused}): {} {:?}",
                case.name, case.uri, case.body
            )),
            (Expected::Refused { .. }, Err(e)) => {
                let typed = match case.invalid.as_deref() {
                    Some("body") => e.is_body(),
                    _ => e.is_config(),
                };
                if typed {
                    refused_alike += 1;
                } else {
                    mismatches.push(format!("{}: refused with the wrong kind: {e}", case.name));
                }
            }
        }
    }
    println!(
        "{signed_alike} generated requests signed as {} signs them, {refused_alike} refused by both \
         (seed {seed})",
        generated.reference
    );
    assert!(
        mismatches.is_empty(),
        "{} of {count} generated requests differ from {}:\n{}",
        mismatches.len(),
        generated.reference,
        mismatches.join("\n")
    );
    // The generator must exercise both sides, or this test proves little.
    assert!(
        signed_alike > count / 2 && refused_alike > count / 50,
        "{signed_alike} {refused_alike}"
    );
}
