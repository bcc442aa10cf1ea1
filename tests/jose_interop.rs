//! Signing inputs checked by an independent implementation: joserfc (PyPI)
//! generates the keys, tower-alf reads them as private JWKs and signs
//! hundreds of generated client assertions, JWT-bearer assertions and DPoP
//! proofs (on the token request and for generated request URIs), and
//! `tests/jose_interop/verify.py` checks each signature, `aud` verbatim
//! (RFC 7523 §3), and `htu`/`htm`/`ath` by its own reading of RFC 9449 and
//! RFC 3986 §6.2.2–6.2.3.
//!
//! Needs `python3` with joserfc (1.6 is pinned in
//! `tests/jose_interop/requirements.txt`); set `ALF_SKIP_PYTHON=1` to skip
//! where it is missing.
#![cfg(all(feature = "dpop", feature = "rustls"))]

#[path = "recording_endpoint/mod.rs"]
mod support;

use std::{path::PathBuf, process::Command};

use http::{Method, Uri};
use serde_json::{json, Value};
use tower_alf::{
    dpop::DPoPKey,
    grant::JwtBearer,
    jwt::{Algorithm, PrivateKey},
    ClientAuth, TokenEndpoint, TokenSource,
};

use support::{keys, TokenServer};

/// A small deterministic generator (xorshift64*), so a failure replays.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T: ?Sized>(&mut self, items: &'a [&'a T]) -> &'a T {
        items[self.below(items.len())]
    }

    /// Flips the case of some ASCII letters.
    fn cased(&mut self, text: &str) -> String {
        text.chars()
            .map(|c| {
                if self.below(3) == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect()
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/jose_interop/verify.py")
}

fn python(args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(script())
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "verify.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A generated absolute request URI: scheme and host in mixed case,
/// userinfo, default, empty or other ports, dot segments, percent-encodings,
/// query and fragment.
fn request_uri(g: &mut Gen) -> String {
    let scheme = g.pick(&["http", "https"]);
    let scheme = g.cased(scheme);
    let userinfo = g.pick(&["", "", "user@", "user:s3cr3t@", "a%20b:p%40ss@"]);
    let host = g.pick(&[
        "api.example",
        "Api.Example.COM",
        "127.0.0.1",
        "[::1]",
        "[FE80::A]",
        "xn--BCHER-kva.example",
    ]);
    let host = g.cased(host);
    let port = match g.below(5) {
        0 => String::new(),
        1 => ":".into(),
        2 => {
            if scheme.eq_ignore_ascii_case("https") {
                ":443".into()
            } else {
                ":80".into()
            }
        }
        3 => ":08443".into(),
        _ => format!(":{}", 1 + g.below(65535)),
    };
    let mut path = String::new();
    for _ in 0..g.below(6) {
        path.push('/');
        path.push_str(g.pick(&[
            "a", "B", ".", "..", "%7e", "%7Euser", "%2f", "%aa", "x%41y", "", "~t", "%C3%A9",
        ]));
    }
    let query = g.pick(&["", "?q=1", "?a=%2F&b", "?"]);
    format!("{scheme}://{userinfo}{host}{port}{path}{query}")
}

#[tokio::test]
async fn joserfc_verifies_generated_assertions_and_proofs() {
    if std::env::var_os("ALF_SKIP_PYTHON").is_some() {
        return;
    }
    let seed = std::env::var("ALF_INTEROP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234_abcd_0001u64);
    let mut g = Gen(seed);
    let dir = std::env::temp_dir().join(format!("alf-jose-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let keys_path = dir.join("keys.json");
    let jwks: Vec<Value> = serde_json::from_str(&python(&["keys", "16"])).unwrap();
    std::fs::write(&keys_path, serde_json::to_string(&jwks).unwrap()).unwrap();

    // Every key read from joserfc's private JWK, RSA with each RS/PS algorithm.
    let keys: Vec<PrivateKey> = jwks
        .iter()
        .map(|jwk| PrivateKey::from_jwk(&jwk.to_string()).expect("joserfc's JWK is read"))
        .collect();
    let rsa_algs = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ];
    let key = |g: &mut Gen, i: usize| {
        let key = keys[i].clone();
        if jwks[i]["kty"] == "RSA" {
            key.with_algorithm(rsa_algs[g.below(rsa_algs.len())])
                .unwrap()
        } else {
            key
        }
    };

    let dpop_keys: Vec<DPoPKey> = keys
        .iter()
        .map(|k| DPoPKey::new(k.clone()).unwrap())
        .collect();
    let server = TokenServer::start().await;
    let addr = server.addr.unwrap();
    let mut cases = Vec::new();
    for round in 0..160 {
        let i = g.below(keys.len());
        let url = match g.below(4) {
            0 => format!("http://{addr}"),
            1 => format!("{}://{addr}/token", g.cased("http")),
            2 => format!("http://{addr}/"),
            _ => format!("http://{addr}/token?tenant=a%2Fb"),
        };
        let audience = (g.below(3) == 0).then(|| {
            g.pick(&[
                "https://idp.example",
                "https://IdP.example:443/a/../b/",
                "urn:example:aud",
                "https://idp.example/realms/x?y",
            ])
            .to_owned()
        });
        let holder = g.below(keys.len());
        let dpop = (g.below(2) == 0).then(|| DPoPKey::new(key(&mut g, holder)).unwrap());
        let dpop_index = cases.len();
        match round % 3 {
            0 => {
                let mut auth =
                    ClientAuth::private_key_jwt(format!("client-{round}"), key(&mut g, i));
                if let Some(audience) = &audience {
                    auth = auth.assertion_audience(audience.clone());
                }
                let mut builder = TokenEndpoint::builder(&url).client_auth(auth);
                if let Some(dpop) = &dpop {
                    builder = builder.dpop(dpop.clone());
                }
                builder.build().unwrap().request(vec![]).await.unwrap();
                let got = server.last();
                cases.push(
                    json!({"kind": "assertion", "jwt": got.field("client_assertion"), "key": i,
                    "aud": audience.clone().unwrap_or_else(|| url.clone()),
                    "iss": format!("client-{round}"), "sub": format!("client-{round}")}),
                );
            }
            1 => {
                let secret = format!("shared-secret-{round}-{:016x}{:016x}", g.next(), g.next());
                let alg = g.pick(&["HS256", "HS384", "HS512"]);
                let mut auth = ClientAuth::client_secret_jwt("hs-client", secret.clone())
                    .with_hmac_algorithm(alg)
                    .unwrap();
                if let Some(audience) = &audience {
                    auth = auth.assertion_audience(audience.clone());
                }
                let mut builder = TokenEndpoint::builder(&url).client_auth(auth);
                if let Some(dpop) = &dpop {
                    builder = builder.dpop(dpop.clone());
                }
                builder.build().unwrap().request(vec![]).await.unwrap();
                let got = server.last();
                cases.push(json!({"kind": "assertion", "jwt": got.field("client_assertion"), "secret": secret, "alg": alg,
                    "aud": audience.clone().unwrap_or_else(|| url.clone()), "iss": "hs-client", "sub": "hs-client"}));
            }
            _ => {
                let mut builder = TokenEndpoint::builder(&url).client_auth(ClientAuth::anonymous());
                if let Some(dpop) = &dpop {
                    builder = builder.dpop(dpop.clone());
                }
                let mut grant =
                    JwtBearer::new(builder.build().unwrap(), key(&mut g, i), "robot@example")
                        .subject(format!("user-{round}"));
                if let Some(audience) = &audience {
                    grant = grant.audience(audience.clone());
                }
                TokenSource::new(grant).token().await.unwrap();
                let got = server.last();
                cases.push(json!({"kind": "assertion", "jwt": got.field("assertion"), "key": i,
                    "aud": audience.clone().unwrap_or_else(|| url.clone()), "iss": "robot@example", "sub": format!("user-{round}")}));
            }
        }
        if let Some(dpop) = dpop {
            let got = server.last();
            let proof = got
                .headers
                .get("dpop")
                .expect("a DPoP proof on the token request");
            assert_eq!(dpop.thumbprint(), dpop_keys[holder].thumbprint());
            cases.insert(
                dpop_index + 1,
                json!({"kind": "proof", "jwt": proof.to_str().unwrap(), "key": holder,
                "uri": url, "method": "POST", "token": null, "nonce": null}),
            );
        }
    }
    let methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"];
    for _ in 0..200 {
        let uri = request_uri(&mut g);
        let Ok(parsed) = uri.parse::<Uri>() else {
            continue;
        };
        let i = g.below(keys.len());
        let method: Method = methods[g.below(methods.len())].parse().unwrap();
        let token = (g.below(2) == 0).then(|| format!("tok-{:x}.{:x}~", g.next(), g.next()));
        let proof = match dpop_keys[i].proof(&method, &parsed, token.as_deref()) {
            Ok(proof) => proof,
            Err(e) => {
                // Only a port out of range is refused among these URIs.
                assert!(e.is_config(), "{uri}: {e}");
                assert!(
                    parsed
                        .port()
                        .is_some_and(|p| p.as_str().parse::<u16>().is_err()),
                    "{uri}: {e}"
                );
                continue;
            }
        };
        cases.push(
            json!({"kind": "proof", "jwt": proof.to_str().unwrap(), "key": i, "uri": uri,
            "method": method.as_str(), "token": token, "nonce": null}),
        );
    }

    let cases_path = dir.join("cases.jsonl");
    let lines: Vec<String> = cases.iter().map(Value::to_string).collect();
    std::fs::write(&cases_path, lines.join("\n") + "\n").unwrap();
    let report: Value = serde_json::from_str(&python(&[
        "verify",
        cases_path.to_str().unwrap(),
        keys_path.to_str().unwrap(),
    ]))
    .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let proofs = cases.iter().filter(|c| c["kind"] == "proof").count();
    eprintln!(
        "joserfc verified {} of {} generated JWTs ({} DPoP proofs)",
        report["verified"],
        cases.len(),
        proofs
    );
    assert_eq!(report["failed"], 0, "{:#}", report["failures"]);
    assert_eq!(report["verified"], cases.len());
    assert!(cases.len() >= 300 && proofs >= 150, "{} cases", cases.len());
}

/// Runs verify.py on `cases`; its report.
fn joserfc_verify(cases: &[Value], keys: &[Value], name: &str) -> Value {
    let dir = std::env::temp_dir().join(format!("alf-jose-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cases_path, keys_path) = (dir.join("cases.jsonl"), dir.join("keys.json"));
    let lines: Vec<String> = cases.iter().map(Value::to_string).collect();
    std::fs::write(&cases_path, lines.join("\n") + "\n").unwrap();
    std::fs::write(&keys_path, serde_json::to_string(keys).unwrap()).unwrap();
    let report = serde_json::from_str(&python(&[
        "verify",
        cases_path.to_str().unwrap(),
        keys_path.to_str().unwrap(),
    ]))
    .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    report
}

/// Every algorithm and every key encoding the crate reads, signed through
/// each path that signs (a client assertion, a JWT-bearer assertion, a
/// DPoP proof), verified by joserfc with the public key file (which the
/// crate never reads) or the secret.
#[tokio::test]
async fn joserfc_verifies_every_algorithm_and_key_encoding() {
    if std::env::var_os("ALF_SKIP_PYTHON").is_some() {
        return;
    }
    use Algorithm::*;
    let rsa = [RS256, RS384, RS512, PS256, PS384, PS512];
    let fixtures: [(&str, &str, &[Algorithm]); 9] = [
        (keys::RSA_PKCS1, keys::RSA_PUBLIC, &rsa),
        (keys::RSA_PKCS8, keys::RSA_PUBLIC, &rsa),
        (keys::P256_SEC1, keys::P256_PUBLIC, &[ES256]),
        (keys::P256_PKCS8, keys::P256_PUBLIC, &[ES256]),
        (
            include_str!("fixtures/p256_sec1_no_public.pem"),
            keys::P256_PUBLIC,
            &[ES256],
        ),
        (
            include_str!("fixtures/p256_pkcs8_no_public.pem"),
            keys::P256_PUBLIC,
            &[ES256],
        ),
        (keys::P384_SEC1, keys::P384_PUBLIC, &[ES384]),
        (
            include_str!("fixtures/p384_pkcs8.pem"),
            keys::P384_PUBLIC,
            &[ES384],
        ),
        (keys::ED25519, keys::ED25519_PUBLIC, &[EdDSA]),
    ];
    let server = TokenServer::start().await;
    let url = server.token_url();
    let mut cases = Vec::new();
    for (n, (private, public, algs)) in fixtures.iter().enumerate() {
        for alg in *algs {
            let key = PrivateKey::from_pem(private)
                .unwrap()
                .with_algorithm(*alg)
                .unwrap()
                .with_key_id(format!("f{n}-{alg}"));
            let dpop = DPoPKey::new(key.clone()).unwrap();
            let auth = ClientAuth::private_key_jwt(format!("client-{n}"), key.clone());
            let endpoint = TokenEndpoint::builder(&url)
                .client_auth(auth)
                .dpop(dpop.clone())
                .build()
                .unwrap();
            endpoint.request(vec![]).await.unwrap();
            let got = server.last();
            cases.push(
                json!({"kind": "assertion", "jwt": got.field("client_assertion"),
                "public_pem": public, "alg": alg.as_str(), "kid": format!("f{n}-{alg}"),
                "aud": url, "iss": format!("client-{n}"), "sub": format!("client-{n}")}),
            );
            cases.push(
                json!({"kind": "proof", "jwt": got.headers["dpop"].to_str().unwrap(),
                "public_pem": public, "alg": alg.as_str(), "uri": url, "method": "POST",
                "token": null, "nonce": null}),
            );
            let proof = dpop
                .proof(
                    &Method::GET,
                    &"https://api.example/r?q".parse().unwrap(),
                    Some("tok"),
                )
                .unwrap();
            cases.push(json!({"kind": "proof", "jwt": proof.to_str().unwrap(),
                "public_pem": public, "uri": "https://api.example/r", "method": "GET",
                "token": "tok", "nonce": null}));
            let anonymous = TokenEndpoint::builder(&url)
                .client_auth(ClientAuth::anonymous())
                .build()
                .unwrap();
            let grant = JwtBearer::new(anonymous, key, "robot@example").subject(format!("u{n}"));
            TokenSource::new(grant).token().await.unwrap();
            cases.push(
                json!({"kind": "assertion", "jwt": server.last().field("assertion"),
                "public_pem": public, "alg": alg.as_str(), "aud": url,
                "iss": "robot@example", "sub": format!("u{n}")}),
            );
        }
    }
    for alg in ["HS256", "HS384", "HS512"] {
        let secret = format!("a-shared-secret-for-{alg}-of-64-bytes-0123456789abcdef0123456789");
        let auth = ClientAuth::client_secret_jwt("hs", secret.clone())
            .with_hmac_algorithm(alg)
            .unwrap();
        let endpoint = TokenEndpoint::builder(&url)
            .client_auth(auth)
            .build()
            .unwrap();
        endpoint.request(vec![]).await.unwrap();
        cases.push(
            json!({"kind": "assertion", "jwt": server.last().field("client_assertion"),
            "secret": secret, "alg": alg, "aud": url, "iss": "hs", "sub": "hs"}),
        );
    }
    // A generated DPoP key (ring's generate_pkcs8): verified with the JWK
    // its proof embeds, which must be the key it reports.
    for _ in 0..4 {
        let key = DPoPKey::generate().unwrap();
        let proof = key
            .proof(
                &Method::DELETE,
                &"http://127.0.0.1:1/x".parse().unwrap(),
                None,
            )
            .unwrap();
        let public: Value = serde_json::from_str(&key.public_jwk()).unwrap();
        cases.push(json!({"kind": "proof", "jwt": proof.to_str().unwrap(),
            "public_jwk": public, "uri": "http://127.0.0.1:1/x", "method": "DELETE",
            "token": null, "nonce": null}));
    }
    let report = joserfc_verify(&cases, &[], "encodings");
    assert_eq!(report["failed"], 0, "{:#}", report["failures"]);
    assert_eq!(report["verified"], cases.len());
    let algs = report["algs"].as_object().unwrap();
    for alg in Algorithm::ALL
        .iter()
        .map(|a| a.as_str())
        .chain(["HS256", "HS384", "HS512"])
    {
        assert!(
            algs.get(alg).and_then(Value::as_u64).unwrap_or(0) > 0,
            "{alg}: {algs:?}"
        );
    }
}
