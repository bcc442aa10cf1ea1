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
