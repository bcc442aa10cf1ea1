//! An OAuth 1.0a provider on loopback whose verifier is written here from
//! RFC 5849: it shares no code with the crate's signer, and checks RSA
//! signatures with the public key through the `rsa` crate. It answers
//! `200 ok <body length>` to a valid request, `401 oauth_problem=…` to
//! any other.
#![allow(dead_code)] // each test file uses its own part

use std::net::SocketAddr;

use axum::{
    http::{HeaderMap, Method, StatusCode, Uri},
    Router,
};
use base64::{engine::general_purpose::STANDARD as BASE64, Engine as _};
use bytes::Bytes;
use hmac::{KeyInit, Mac};
use http::header::CONTENT_TYPE;
use rsa::{pkcs8::DecodePublicKey, signature::Verifier as _};
use sha2::Digest;

pub(crate) const RSA_PRIVATE: &str = include_str!("../fixtures/oauth1/test-only-rsa-key.pem");
pub(crate) const RSA_PUBLIC: &str = include_str!("../fixtures/oauth1/test-only-rsa-key.pub.pem");

pub(crate) const CONSUMER_KEY: &str = "loopback-client";
pub(crate) const CONSUMER_SECRET: &str = "c0nsumer s&cret";
pub(crate) const TOKEN: &str = "loopback-token";
pub(crate) const TOKEN_SECRET: &str = "t0ken/secret~";

// ===== the verifier, from RFC 5849 =====

/// §3.6: everything but ALPHA, DIGIT, `-`, `.`, `_`, `~` as `%XX`.
fn rfc_encode(input: &[u8]) -> String {
    let mut out = String::new();
    for &b in input {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn rfc_decode(input: &str, plus_is_space: bool) -> Vec<u8> {
    let bytes = input.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// §3.4.1.3.1: a query or form body as decoded name/value pairs.
fn form_pairs(input: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    input
        .split('&')
        .filter(|member| !member.is_empty())
        .map(|member| {
            let (name, value) = member.split_once('=').unwrap_or((member, ""));
            (rfc_decode(name, true), rfc_decode(value, true))
        })
        .collect()
}

/// §3.5.1: the parameters of `Authorization: OAuth …`.
fn header_pairs(value: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Some(params) = value.strip_prefix("OAuth ") else {
        return Vec::new();
    };
    params
        .split(',')
        .map(str::trim)
        .filter_map(|param| {
            let (name, value) = param.split_once('=')?;
            let value = value.strip_prefix('"')?.strip_suffix('"')?;
            Some((rfc_decode(name, false), rfc_decode(value, false)))
        })
        .collect()
}

/// Checks one request as a provider would; `Err` says why it is refused.
pub(crate) fn verify(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), &'static str> {
    let mut params = Vec::new();
    if let Some(query) = uri.query() {
        params.extend(form_pairs(query));
    }
    if let Some(authorization) = headers.get("authorization") {
        let pairs = header_pairs(authorization.to_str().map_err(|_| "bad header")?);
        params.extend(pairs.into_iter().filter(|(name, _)| name != b"realm"));
    }
    let is_form = headers.get(CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes()
            .starts_with(b"application/x-www-form-urlencoded")
    });
    if is_form {
        params.extend(form_pairs(
            std::str::from_utf8(body).map_err(|_| "form not UTF-8")?,
        ));
    }
    let get = |name: &[u8]| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
    };
    let signature = get(b"oauth_signature").ok_or("no signature")?;
    let method_name = get(b"oauth_signature_method").ok_or("no method")?;
    if get(b"oauth_consumer_key").as_deref() != Some(CONSUMER_KEY) {
        return Err("unknown consumer");
    }
    if get(b"oauth_token").as_deref() != Some(TOKEN) {
        return Err("unknown token");
    }
    if let Some(hash) = get(b"oauth_body_hash") {
        let expected = match method_name.as_str() {
            "HMAC-SHA256" | "RSA-SHA256" => BASE64.encode(sha2::Sha256::digest(body)),
            "HMAC-SHA512" => BASE64.encode(sha2::Sha512::digest(body)),
            _ => BASE64.encode(sha1::Sha1::digest(body)),
        };
        if hash != expected {
            return Err("body hash mismatch");
        }
    }

    let mut encoded: Vec<(String, String)> = params
        .iter()
        .filter(|(name, _)| name != b"oauth_signature")
        .map(|(n, v)| (rfc_encode(n), rfc_encode(v)))
        .collect();
    encoded.sort();
    let normalized = encoded
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let host = headers["host"].to_str().unwrap().to_ascii_lowercase();
    let base_uri = format!("http://{}{}", host.trim_end_matches(":80"), uri.path());
    let base_string = format!(
        "{}&{}&{}",
        method.as_str().to_ascii_uppercase(),
        rfc_encode(base_uri.as_bytes()),
        rfc_encode(normalized.as_bytes())
    );
    let key = format!(
        "{}&{}",
        rfc_encode(CONSUMER_SECRET.as_bytes()),
        rfc_encode(TOKEN_SECRET.as_bytes())
    );
    let hmac_ok = |expected: Vec<u8>| BASE64.decode(&signature).ok() == Some(expected);
    let ok = match method_name.as_str() {
        "HMAC-SHA1" => {
            let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes()).unwrap();
            mac.update(base_string.as_bytes());
            hmac_ok(mac.finalize().into_bytes().to_vec())
        }
        "HMAC-SHA256" => {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
            mac.update(base_string.as_bytes());
            hmac_ok(mac.finalize().into_bytes().to_vec())
        }
        "HMAC-SHA512" => {
            let mut mac = hmac::Hmac::<sha2::Sha512>::new_from_slice(key.as_bytes()).unwrap();
            mac.update(base_string.as_bytes());
            hmac_ok(mac.finalize().into_bytes().to_vec())
        }
        "PLAINTEXT" => signature == key,
        "RSA-SHA1" | "RSA-SHA256" => {
            let public = rsa::PublicKey::from_public_key_pem(RSA_PUBLIC).unwrap();
            let bytes = BASE64
                .decode(&signature)
                .map_err(|_| "signature not base64")?;
            let sig = rsa::pkcs1v15::Signature::try_from(bytes.as_slice())
                .map_err(|_| "bad RSA signature")?;
            if method_name == "RSA-SHA1" {
                rsa::pkcs1v15::VerifyingKey::<sha1::Sha1>::new(public)
                    .verify(base_string.as_bytes(), &sig)
                    .is_ok()
            } else {
                rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(public)
                    .verify(base_string.as_bytes(), &sig)
                    .is_ok()
            }
        }
        _ => return Err("unknown method"),
    };
    if ok {
        Ok(())
    } else {
        Err("signature_invalid")
    }
}

// ===== the provider and the client =====

pub(crate) async fn provider() -> SocketAddr {
    let app = Router::new().fallback(
        |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| async move {
            match verify(&method, &uri, &headers, &body) {
                Ok(()) => (StatusCode::OK, format!("ok {}", body.len())),
                Err(problem) => (StatusCode::UNAUTHORIZED, format!("oauth_problem={problem}")),
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}
