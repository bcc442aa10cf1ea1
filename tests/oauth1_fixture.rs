//! Cross-check against an independent implementation: every request in
//! `tests/fixtures/oauth1/signatures.json` was signed by Python's oauthlib
//! (see `generate.py` beside it); the signer must produce the same
//! signature base string, the same signature, and place the same
//! parameters, for every method and placement.

use bytes::Bytes;
use http::{header::CONTENT_TYPE, Request};
use serde::Deserialize;
use tower_alf::oauth1::{
    ClientCredentials, Placement, RsaKey, SignatureMethod, Signer, TokenCredentials, Verifier,
};

const FIXTURE: &str = include_str!("fixtures/oauth1/signatures.json");
const RSA_PKCS1: &str = include_str!("fixtures/oauth1/test-only-rsa-key.pem");
const RSA_PKCS8: &str = include_str!("fixtures/oauth1/test-only-rsa-key.pk8.pem");

#[derive(Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    http_method: String,
    uri: String,
    content_type: Option<String>,
    body: Option<String>,
    client_key: String,
    client_secret: String,
    token: Option<String>,
    token_secret: Option<String>,
    callback: Option<String>,
    verifier: Option<String>,
    realm: Option<String>,
    signature_method: String,
    placement: String,
    nonce: String,
    timestamp: u64,
    body_hash: bool,
    expected: Expected,
}

#[derive(Deserialize)]
struct Expected {
    base_string: String,
    signature: String,
    params: Vec<(String, String)>,
}

fn cases() -> Vec<Case> {
    serde_json::from_str::<Fixture>(FIXTURE).unwrap().cases
}

fn signer(case: &Case, rsa_pem: &str) -> Signer {
    let method: SignatureMethod = case.signature_method.parse().unwrap();
    let client = if method.is_rsa() {
        ClientCredentials::rsa(&case.client_key, RsaKey::from_pem(rsa_pem).unwrap())
    } else {
        ClientCredentials::new(&case.client_key, &case.client_secret)
    };
    let mut signer = Signer::new(client)
        .method(method)
        .placement(case.placement.parse::<Placement>().unwrap())
        .body_hash(case.body_hash);
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
    let mut builder = Request::builder()
        .method(case.http_method.as_str())
        .uri(&case.uri);
    if let Some(content_type) = &case.content_type {
        builder = builder.header(CONTENT_TYPE, content_type);
    }
    let body = case.body.clone().map(Bytes::from).unwrap_or_default();
    builder.body(body).unwrap()
}

/// Decoded parameters where the signer put them, sorted, as the generator
/// lists them.
fn placed(case: &Case, signed: &Request<Bytes>) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_decode(s)
            .map(|v| String::from_utf8(v).unwrap())
            .unwrap()
    };
    let mut params: Vec<(String, String)> = match case.placement.as_str() {
        "header" => {
            let header = signed.headers()["authorization"].to_str().unwrap();
            let header = header.strip_prefix("OAuth ").unwrap();
            header
                .split(", ")
                .map(|param| {
                    let (name, value) = param.split_once('=').unwrap();
                    let value = value.trim_matches('"');
                    (name.to_owned(), decode(value))
                })
                .collect()
        }
        "query" => form(signed.uri().query().unwrap_or_default()),
        "body" => form(std::str::from_utf8(signed.body()).unwrap()),
        other => panic!("unknown placement {other}"),
    };
    params.sort();
    params
}

fn form(s: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(s.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

fn check_all(rsa_pem: &str, only_rsa: bool) {
    let cases = cases();
    assert!(cases.len() > 100, "the fixture has {} cases", cases.len());
    let mut checked = 0;
    for case in &cases {
        let method: SignatureMethod = case.signature_method.parse().unwrap();
        if only_rsa && !method.is_rsa() {
            continue;
        }
        let signer = signer(case, rsa_pem);
        let (signed, base_string) = signer
            .sign_with_base_string(request(case), &case.nonce, case.timestamp)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(
            base_string, case.expected.base_string,
            "{}: base string",
            case.name
        );
        let params = placed(case, &signed);
        let signature = params
            .iter()
            .find(|(name, _)| name == "oauth_signature")
            .map(|(_, value)| value.as_str());
        assert_eq!(
            signature,
            Some(case.expected.signature.as_str()),
            "{}: signature",
            case.name
        );
        assert_eq!(params, case.expected.params, "{}: parameters", case.name);
        checked += 1;
    }
    assert!(checked > 0);
}

#[test]
fn every_fixture_request_matches_oauthlib() {
    check_all(RSA_PKCS1, false);
}

#[test]
fn rsa_signatures_match_with_a_pkcs8_key() {
    check_all(RSA_PKCS8, true);
}

#[test]
fn the_fixture_covers_every_method_and_placement() {
    let cases = cases();
    for method in SignatureMethod::ALL {
        for placement in ["header", "query", "body"] {
            assert!(
                cases
                    .iter()
                    .any(|c| c.signature_method == method.as_str() && c.placement == placement),
                "no {method} {placement} case"
            );
        }
    }
}
