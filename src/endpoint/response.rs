//! Reading token endpoint answers: RFC 6749 §5.1 on success, §5.2 otherwise,
//! leniently where real servers differ from the RFC, and never panicking.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use http::{
    header::{CONTENT_TYPE, RETRY_AFTER},
    HeaderMap, StatusCode,
};
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::{
    error::{Error, ErrorCode, OAuthError},
    secret::{AccessToken, RefreshToken},
    token::{Token, TokenType},
};

/// Longest lifetime accepted from `expires_in` or a JWT's `exp`: ten years;
/// longer values are cut to it, so no lifetime a server sends can overflow
/// the clock.
pub(crate) const MAX_EXPIRES_IN: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Longest wait accepted from `Retry-After`, as seconds or as an HTTP date:
/// one hour; longer values are cut to it (and then to the retry policy's
/// `max_backoff`), so no value a server sends can overflow the clock.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Reads a token endpoint answer.
///
/// Accepted beyond the letter of RFC 6749: a UTF-8 byte order mark; any
/// `charset` parameter; `application/x-www-form-urlencoded` bodies (GitHub's
/// default); `expires_in` as an integer, a float, a numeric string or
/// `null`; a missing `token_type` (taken as `Bearer`). When `expires_in` is
/// missing and the access token is a JWT, its `exp` (unverified) schedules
/// the refresh. A success status whose body has an `error` member is an
/// error.
pub(crate) fn parse_response(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    sent_at: Instant,
) -> Result<Token, Error> {
    let fields = fields(headers, body);
    if !status.is_success() {
        let oauth = fields.as_ref().ok().and_then(oauth_error);
        return Err(Error::status(status, oauth, body).with_retry_after(retry_after(headers)));
    }
    let mut map = fields.map_err(|reason| Error::invalid_response(status, reason, body))?;
    if let Some(oauth) = oauth_error(&map) {
        return Err(Error::status(status, Some(oauth), body));
    }
    let invalid = |reason: String| Error::invalid_response(status, reason, body);

    let access_token = match map.remove("access_token") {
        Some(Value::String(token)) if !token.is_empty() => AccessToken::new(token),
        Some(Value::String(_)) => return Err(invalid("access_token is empty".into())),
        Some(_) => return Err(invalid("access_token is not a string".into())),
        None => return Err(invalid("access_token is missing".into())),
    };
    let token_type = match map.remove("token_type") {
        None | Some(Value::Null) => TokenType::Bearer,
        Some(Value::String(kind)) => TokenType::parse(&kind)
            .ok_or_else(|| invalid(format!("token_type {kind:?} is not supported")))?,
        Some(_) => return Err(invalid("token_type is not a string".into())),
    };
    let expires_in = match map.remove("expires_in") {
        None | Some(Value::Null) => jwt_lifetime(access_token.secret()),
        Some(value) => Some(expires_in(&value).map_err(|reason| invalid(reason.into()))?),
    };
    let scope = optional_string(&mut map, "scope").map_err(invalid)?;
    let refresh_token = optional_string(&mut map, "refresh_token").map_err(invalid)?;

    let mut token = Token::new(access_token, token_type, sent_at)?.with_extra(map);
    if let Some(expires_in) = expires_in {
        token = token.with_expires_in(expires_in);
    }
    if let Some(scope) = scope {
        token = token.with_scope(scope);
    }
    if let Some(refresh_token) = refresh_token {
        token = token.with_refresh_token(RefreshToken::new(refresh_token));
    }
    Ok(token)
}

/// The body's members: form-encoded when the server says so, JSON otherwise.
fn fields(headers: &HeaderMap, body: &[u8]) -> Result<Map<String, Value>, &'static str> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    std::str::from_utf8(body).map_err(|_| "response is not UTF-8")?;
    // Read as bytes: a non-ASCII parameter (`charset="é"`) must not hide
    // the media type before it.
    let media_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.as_bytes().split(|&b| b == b';').next())
        .map(|v| String::from_utf8_lossy(v).trim().to_ascii_lowercase());
    if media_type.as_deref() == Some("application/x-www-form-urlencoded") {
        return Ok(form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect());
    }
    serde_json::from_slice(body).map_err(|_| "response is not a JSON object")
}

/// `expires_in` as an integer, a float or a numeric string (real servers
/// send all three); negative or non-finite values are refused, values over
/// [`MAX_EXPIRES_IN`] cut to it. `0` is kept as the server said it; the
/// source gives every token a least lifetime (see `Timing`).
fn expires_in(value: &Value) -> Result<Duration, &'static str> {
    match seconds(value) {
        Ok(expires_in) => Ok(expires_in.min(MAX_EXPIRES_IN)),
        Err(BadSeconds::NotANumber) => Err("expires_in is not a number"),
        Err(BadSeconds::Negative) => Err("expires_in is negative or not finite"),
    }
}

/// Why a value is not a number of seconds.
pub(crate) enum BadSeconds {
    /// Not a number, nor a string holding one.
    NotANumber,
    /// Negative, infinite or NaN.
    Negative,
}

/// A number of seconds: an integer, a float or a numeric string; never
/// negative, and saturating (10^30 is `Duration::MAX`).
pub(crate) fn seconds(value: &Value) -> Result<Duration, BadSeconds> {
    let seconds = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .ok_or(BadSeconds::NotANumber)?;
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(BadSeconds::Negative);
    }
    Ok(Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX))
}

/// The lifetime a JWT access token claims, unverified and only to schedule
/// its refresh: `exp - iat` when both are there (the server's own clock on
/// both sides, so skew does not matter), else `exp` less the wall clock.
/// `None` when it is not a JWT, or the claims make no sense.
pub(crate) fn jwt_lifetime(token: &str) -> Option<Duration> {
    let claims = jwt_claims(token)?;
    let exp = claims.get("exp")?.as_f64()?;
    let start = match claims.get("iat").and_then(Value::as_f64) {
        Some(iat) => iat,
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_secs_f64(),
    };
    let seconds = exp - start;
    (seconds.is_finite() && seconds > 0.0)
        .then(|| Duration::try_from_secs_f64(seconds).ok())
        .flatten()
        .map(|d| d.min(MAX_EXPIRES_IN))
}

/// When a JWT says it expires (its `exp`, unverified), on the wall clock;
/// `None` when it is not a JWT or has no usable `exp`.
pub(crate) fn jwt_expires_at(token: &str) -> Option<SystemTime> {
    let exp = jwt_claims(token)?.get("exp")?.as_f64()?;
    if !exp.is_finite() || exp < 0.0 {
        return None;
    }
    UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(exp).ok()?)
}

/// A JWT's claims, unverified.
fn jwt_claims(token: &str) -> Option<Map<String, Value>> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?).ok()
}

fn optional_string(
    map: &mut Map<String, Value>,
    key: &'static str,
) -> Result<Option<String>, String> {
    match map.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{key} is not a string")),
    }
}

/// The RFC 6749 §5.2 error an answer carries, if it has an `error` string.
pub(crate) fn oauth_error(map: &Map<String, Value>) -> Option<OAuthError> {
    let code = map.get("error")?.as_str()?;
    let text = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_owned);
    Some(OAuthError::new(
        ErrorCode::from(code),
        text("error_description"),
        text("error_uri"),
    ))
}

/// `Retry-After` (RFC 9110 §10.2.3): delay seconds or an HTTP date, as a
/// wait from now, at most [`MAX_RETRY_AFTER`]. `None` when absent or
/// unreadable.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is "a very long time", not unreadable.
        Duration::from_secs(value.parse().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn parse(content_type: &str, body: &str) -> Result<Token, Error> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        parse_response(StatusCode::OK, &headers, body.as_bytes(), Instant::now())
    }

    fn ok(body: &str) -> Result<Token, Error> {
        parse("application/json", body)
    }

    fn jwt(claims: &str) -> String {
        let encode = |s: &str| URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", encode(r#"{"alg":"RS256"}"#), encode(claims))
    }

    #[test]
    fn expires_in_accepts_integer_float_and_string() {
        for body in [
            r#"{"access_token":"a","token_type":"bearer","expires_in":3600}"#,
            r#"{"access_token":"a","token_type":"Bearer","expires_in":3600.0}"#,
            r#"{"access_token":"a","token_type":"BEARER","expires_in":"3600"}"#,
        ] {
            let lifetime = ok(body).unwrap().lifetime();
            assert_eq!(lifetime, Some(Duration::from_secs(3600)), "{body}");
        }
    }

    #[test]
    fn missing_or_null_expires_in_leaves_no_expiry() {
        let t = ok(r#"{"access_token":"a","token_type":"Bearer"}"#).unwrap();
        assert_eq!(t.lifetime(), None);
        let t = ok(r#"{"access_token":"a","expires_in":null}"#).unwrap();
        assert_eq!(t.lifetime(), None);
    }

    #[test]
    fn malformed_success_bodies_are_invalid_responses() {
        for body in [
            "not json",
            "[1,2]",
            r#"{"token_type":"Bearer"}"#,
            r#"{"access_token":42}"#,
            r#"{"access_token":""}"#,
            r#"{"access_token":"a","expires_in":"soon"}"#,
            r#"{"access_token":"a","expires_in":-5}"#,
            r#"{"access_token":"a","token_type":"mac"}"#,
            r#"{"access_token":"a","scope":["x"]}"#,
        ] {
            let e = ok(body).unwrap_err();
            assert!(e.is_invalid_response(), "{body}: {e}");
        }
        let body = b"{\"access_token\":\"\xff\"}";
        let e = parse_response(StatusCode::OK, &HeaderMap::new(), body, Instant::now());
        assert_eq!(
            e.unwrap_err().to_string(),
            "invalid token endpoint response: response is not UTF-8"
        );
    }

    #[test]
    fn huge_expires_in_is_capped() {
        let t = ok(r#"{"access_token":"a","expires_in":1e300}"#).unwrap();
        assert_eq!(t.lifetime(), Some(MAX_EXPIRES_IN));
    }

    #[test]
    fn unknown_members_are_kept() {
        let body = r#"{"access_token":"a","scope":"x y","refresh_token":"r","id_token":"i","n":1}"#;
        let t = ok(body).unwrap();
        assert_eq!(t.scope(), Some("x y"));
        assert_eq!(t.refresh_token().unwrap().secret(), "r");
        assert_eq!(t.extra()["n"], 1);
        assert!(t.extra().contains_key("id_token"));
    }

    #[test]
    fn error_responses_carry_rfc_6749_fields_and_retry_after() {
        let body =
            br#"{"error":"invalid_client","error_description":"nope","error_uri":"https://e/x"}"#;
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        let e =
            parse_response(StatusCode::UNAUTHORIZED, &headers, body, Instant::now()).unwrap_err();
        let oauth = e.oauth_error().unwrap();
        assert_eq!(oauth.code(), &ErrorCode::InvalidClient);
        assert_eq!(oauth.description(), Some("nope"));
        assert_eq!(oauth.uri(), Some("https://e/x"));
        assert_eq!(e.status_code(), Some(StatusCode::UNAUTHORIZED));
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    }

    #[test]
    fn a_success_status_with_an_error_member_is_an_error() {
        let e = ok(r#"{"error":"invalid_scope"}"#).unwrap_err();
        assert_eq!(e.oauth_error().unwrap().code(), &ErrorCode::InvalidScope);
    }

    #[test]
    fn a_byte_order_mark_and_charset_are_accepted() {
        let t = parse(
            "application/json; charset=UTF-8",
            "\u{feff}{\"access_token\":\"a\",\"expires_in\":60}",
        )
        .unwrap();
        assert_eq!(t.lifetime(), Some(Duration::from_secs(60)));
    }

    #[test]
    fn form_encoded_responses_are_read_like_github_sends_them() {
        let t = parse(
            "application/x-www-form-urlencoded; charset=utf-8",
            "access_token=gho_16C7e42F292c6912E7710c838347Ae178B4a&scope=repo%2Cgist&token_type=bearer&expires_in=28800",
        )
        .unwrap();
        assert_eq!(
            t.access_token().secret(),
            "gho_16C7e42F292c6912E7710c838347Ae178B4a"
        );
        assert_eq!(t.scope(), Some("repo,gist"));
        assert_eq!(t.lifetime(), Some(Duration::from_secs(28800)));
    }

    #[test]
    fn a_form_content_type_with_a_non_ascii_parameter_is_still_a_form() {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_bytes("application/x-www-form-urlencoded; x=\"é\"".as_bytes())
                .unwrap(),
        );
        let t = parse_response(
            StatusCode::OK,
            &headers,
            b"access_token=a&token_type=bearer",
            Instant::now(),
        )
        .unwrap();
        assert_eq!(t.access_token().secret(), "a");
    }

    #[test]
    fn a_jwt_exp_schedules_a_token_without_expires_in() {
        let token = jwt(r#"{"iat":1700000000,"exp":1700000900,"sub":"x"}"#);
        let t = ok(&format!(r#"{{"access_token":"{token}"}}"#)).unwrap();
        assert_eq!(t.lifetime(), Some(Duration::from_secs(900)));

        // expires_in wins over exp; nonsense claims are ignored.
        let t = ok(&format!(r#"{{"access_token":"{token}","expires_in":60}}"#)).unwrap();
        assert_eq!(t.lifetime(), Some(Duration::from_secs(60)));
        for claims in [r#"{"iat":10,"exp":5}"#, r#"{"exp":"soon"}"#, "not json"] {
            let t = ok(&format!(r#"{{"access_token":"{}"}}"#, jwt(claims))).unwrap();
            assert_eq!(t.lifetime(), None, "{claims}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(120)));
        let later = SystemTime::now() + Duration::from_secs(30);
        let date = httpdate::fmt_http_date(later);
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&date).unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(
            wait <= Duration::from_secs(30) && wait >= Duration::from_secs(28),
            "{wait:?}"
        );
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(
            retry_after(&headers),
            Some(Duration::ZERO),
            "a past date: now"
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }
}
