//! Property tests for the parsers of untrusted input: arbitrary bytes never
//! panic, and valid inputs come back as they went in.

use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use serde_json::json;
use tower_alf::fuzzing;

/// Characters RFC 6750 §2.1 allows in a bearer token (b64token).
const B64TOKEN: &str = "[A-Za-z0-9._~+/-]{1,64}=*";

fn expires_in_forms(secs: u32) -> Vec<serde_json::Value> {
    vec![json!(secs), json!(f64::from(secs)), json!(secs.to_string())]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn token_responses_never_panic(status in 100u16..600, content_type in proptest::collection::vec(any::<u8>(), 0..40), body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = fuzzing::token_response(status, &content_type, &body);
    }

    #[test]
    fn json_like_token_responses_never_panic(body in r#"\{"access_token":"[a-z]{0,5}"(,"(expires_in|token_type|scope|refresh_token|error)":("[^"]{0,8}"|-?[0-9.e+]{1,12}|null|true|\[\]|\{\}))*\}"#) {
        let _ = fuzzing::token_response(200, b"application/json", body.as_bytes());
    }

    #[test]
    fn valid_json_token_responses_round_trip(
        access_token in B64TOKEN,
        secs in 0u32..100_000_000,
        form in 0usize..3,
        scope in proptest::option::of("[a-z:]{1,10}( [a-z:]{1,10}){0,3}"),
        refresh_token in proptest::option::of(B64TOKEN),
        token_type in prop::sample::select(vec!["Bearer", "bearer", "BEARER"]),
    ) {
        let mut body = json!({
            "access_token": access_token,
            "token_type": token_type,
            "expires_in": expires_in_forms(secs)[form].clone(),
        });
        if let Some(scope) = &scope {
            body["scope"] = json!(scope);
        }
        if let Some(refresh_token) = &refresh_token {
            body["refresh_token"] = json!(refresh_token);
        }
        let token = fuzzing::token_response(200, b"application/json", body.to_string().as_bytes()).unwrap();
        prop_assert_eq!(token.access_token().secret(), access_token.as_str());
        prop_assert_eq!(token.lifetime(), Some(Duration::from_secs(secs.into())));
        prop_assert_eq!(token.scope(), scope.as_deref());
        prop_assert_eq!(token.refresh_token().map(|t| t.secret()), refresh_token.as_deref());
        let header = format!("Bearer {access_token}");
        prop_assert_eq!(token.header_value().to_str().unwrap(), header);
    }

    #[test]
    fn valid_form_token_responses_round_trip(access_token in B64TOKEN, secs in 0u32..1_000_000, scope in "[a-z:,]{1,20}") {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("access_token", &access_token)
            .append_pair("expires_in", &secs.to_string())
            .append_pair("scope", &scope)
            .append_pair("token_type", "bearer")
            .finish();
        let token = fuzzing::token_response(200, b"application/x-www-form-urlencoded; charset=utf-8", body.as_bytes()).unwrap();
        prop_assert_eq!(token.access_token().secret(), access_token.as_str());
        prop_assert_eq!(token.lifetime(), Some(Duration::from_secs(secs.into())));
        prop_assert_eq!(token.scope(), Some(scope.as_str()));
    }

    #[test]
    fn error_responses_keep_their_code(code in "[a-z_]{1,30}", description in "[ -~]{0,40}", status in 400u16..600) {
        let body = json!({"error": code, "error_description": description}).to_string();
        let error = fuzzing::token_response(status, b"application/json", body.as_bytes()).unwrap_err();
        let oauth = error.oauth_error().unwrap();
        prop_assert_eq!(oauth.code().as_str(), code.as_str());
        prop_assert_eq!(oauth.description(), Some(description.as_str()));
    }

    #[test]
    fn www_authenticate_never_panics(value in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = fuzzing::bearer_error(&value);
    }

    #[test]
    fn www_authenticate_finds_the_bearer_error(
        code in "[a-z_]{1,20}",
        realm in r#"[ -~]{0,20}"#,
        quoted in any::<bool>(),
        basic_first in any::<bool>(),
    ) {
        let realm = realm.replace('\\', "\\\\").replace('"', "\\\"");
        let error = if quoted { format!("\"{code}\"") } else { code.clone() };
        let bearer = format!(r#"Bearer realm="{realm}", error={error}, error_description="x, y""#);
        let value = if basic_first { format!(r#"Basic realm="{realm}", {bearer}"#) } else { bearer };
        prop_assert_eq!(fuzzing::bearer_error(value.as_bytes()), Some(code));
    }

    #[test]
    fn www_authenticate_never_panics_on_several_raw_lines(lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..4)) {
        let values: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        let _ = fuzzing::challenge_error(&values, "bearer");
        let _ = fuzzing::challenge_error(&values, "dpop");
    }

    #[test]
    fn www_authenticate_finds_the_error_of_generated_challenges(
        lines in proptest::collection::vec(proptest::collection::vec(challenge(), 0..4), 1..4),
    ) {
        let (values, expected) = render(&lines);
        let values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        prop_assert_eq!(fuzzing::challenge_error(&values, "bearer"), expected, "{:?}", values.iter().map(|v| String::from_utf8_lossy(v)).collect::<Vec<_>>());
    }

    #[test]
    fn retry_after_never_panics(value in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = fuzzing::retry_after(&value);
    }

    #[test]
    fn retry_after_reads_seconds_up_to_one_hour(secs in any::<u32>()) {
        let expected = Duration::from_secs(secs.into()).min(Duration::from_secs(3600));
        prop_assert_eq!(fuzzing::retry_after(secs.to_string().as_bytes()), Some(expected));
    }

    #[test]
    fn retry_after_reads_http_dates_up_to_one_hour(secs in 2u64..1_000_000) {
        let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(secs));
        let wait = fuzzing::retry_after(date.as_bytes()).unwrap();
        let secs = secs.min(3600);
        prop_assert!(wait <= Duration::from_secs(secs) && wait >= Duration::from_secs(secs - 2), "{:?} for {}", wait, secs);
    }
}

/// A generated challenge: a scheme as spelt on the wire, and its body.
#[derive(Debug, Clone)]
struct Challenge {
    scheme: String,
    body: Body,
}

#[derive(Debug, Clone)]
enum Body {
    None,
    Token68(String),
    Params(Vec<Param>),
}

/// `name BWS = BWS value`, the value a token or a quoted string (which may
/// hold escapes and non-ASCII bytes), then OWS before the next comma.
#[derive(Debug, Clone)]
struct Param {
    name: String,
    before: String,
    after: String,
    value: Vec<u8>,
    quoted: bool,
    comma: String,
}

fn ows() -> impl Strategy<Value = String> {
    "[ \t]{0,3}"
}

fn scheme() -> impl Strategy<Value = String> {
    prop_oneof![
        "[Bb][Ee][Aa][Rr][Ee][Rr]",
        "[Dd][Pp][Oo][Pp]",
        Just("Basic".to_owned()),
        Just("Negotiate".to_owned()),
        "X-[A-Za-z0-9!#$%&'*+.^_`|~-]{0,6}",
    ]
}

fn param() -> impl Strategy<Value = Param> {
    let name = prop_oneof![
        Just("error".to_owned()),
        Just("Error".to_owned()),
        Just("error_description".to_owned()),
        Just("realm".to_owned()),
        Just("scope".to_owned()),
        "[a-z][a-z0-9_-]{0,8}",
    ];
    let quoted_value = proptest::collection::vec(
        prop_oneof![
            Just(b'"'),
            Just(b'\\'),
            Just(b','),
            Just(b'='),
            Just(b' '),
            0x20u8..0x7f,
            0x80u8..=0xff
        ],
        0..24,
    );
    let token_value = "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,16}".prop_map(String::into_bytes);
    (
        name,
        ows(),
        ows(),
        prop_oneof![
            quoted_value.prop_map(|v| (v, true)),
            token_value.prop_map(|v| (v, false))
        ],
        ows(),
    )
        .prop_map(|(name, before, after, (value, quoted), comma)| Param {
            name,
            before,
            after,
            value,
            quoted,
            comma,
        })
}

fn challenge() -> impl Strategy<Value = Challenge> {
    let body = prop_oneof![
        Just(Body::None),
        "[A-Za-z0-9._~+/-]{1,20}={0,2}".prop_map(Body::Token68),
        proptest::collection::vec(param(), 0..5).prop_map(Body::Params),
    ];
    (scheme(), body).prop_map(|(scheme, body)| Challenge { scheme, body })
}

/// The header lines, and the `error` the first `Bearer` challenge carries:
/// `None` without a `Bearer` challenge, `Some(None)` when it has no `error`.
fn render(lines: &[Vec<Challenge>]) -> (Vec<Vec<u8>>, Option<Option<String>>) {
    let mut expected = None;
    let mut out = Vec::new();
    for line in lines {
        let mut wire = Vec::new();
        for (i, challenge) in line.iter().enumerate() {
            if i > 0 {
                wire.extend_from_slice(b", ");
            }
            wire.extend_from_slice(challenge.scheme.as_bytes());
            let mut error = None;
            match &challenge.body {
                Body::None => {}
                Body::Token68(token68) => {
                    wire.push(b' ');
                    wire.extend_from_slice(token68.as_bytes());
                }
                Body::Params(params) => {
                    for (j, p) in params.iter().enumerate() {
                        if j == 0 {
                            wire.push(b' ');
                        } else {
                            wire.push(b',');
                            wire.extend_from_slice(p.comma.as_bytes());
                        }
                        wire.extend_from_slice(p.name.as_bytes());
                        wire.extend_from_slice(p.before.as_bytes());
                        wire.push(b'=');
                        wire.extend_from_slice(p.after.as_bytes());
                        if p.quoted {
                            wire.push(b'"');
                            for &b in &p.value {
                                if b == b'"' || b == b'\\' {
                                    wire.push(b'\\');
                                }
                                wire.push(b);
                            }
                            wire.push(b'"');
                        } else {
                            wire.extend_from_slice(&p.value);
                        }
                        if p.name.eq_ignore_ascii_case("error") && error.is_none() {
                            error = Some(String::from_utf8_lossy(&p.value).into_owned());
                        }
                    }
                }
            }
            if challenge.scheme.eq_ignore_ascii_case("bearer") && expected.is_none() {
                expected = Some(error);
            }
        }
        out.push(wire);
    }
    (out, expected)
}
