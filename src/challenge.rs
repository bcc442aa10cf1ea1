//! Reading `WWW-Authenticate` challenges (RFC 9110 §11.6.1, RFC 6750 §3).

use http::{header::WWW_AUTHENTICATE, HeaderMap};

/// What a 401's `WWW-Authenticate` says about bearer tokens.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Bearer {
    /// No challenge at all (many servers send none).
    Absent,
    /// Challenges, none of them `Bearer` (say `Basic`): not about our token.
    Other,
    /// A `Bearer` challenge, with its `error` parameter if any.
    Challenge(Option<String>),
}

/// Reads the `Bearer` challenge of a response's `WWW-Authenticate`.
pub(crate) fn bearer(headers: &HeaderMap) -> Bearer {
    of(headers, "bearer")
}

/// Reads the challenge for `scheme` (`bearer`, `dpop`) of a response's
/// `WWW-Authenticate`.
pub(crate) fn of(headers: &HeaderMap, scheme: &str) -> Bearer {
    let mut seen = false;
    for value in headers.get_all(WWW_AUTHENTICATE) {
        seen = true;
        let Ok(value) = value.to_str() else { continue };
        if let Some(challenge) = challenges(value)
            .into_iter()
            .find(|c| c.scheme.eq_ignore_ascii_case(scheme))
        {
            return Bearer::Challenge(challenge.param("error").map(str::to_owned));
        }
    }
    if seen {
        Bearer::Other
    } else {
        Bearer::Absent
    }
}

/// The `error` parameter of the `Bearer` challenge in `headers`, if any.
pub(crate) fn bearer_error(headers: &HeaderMap) -> Option<String> {
    match bearer(headers) {
        Bearer::Challenge(error) => error,
        Bearer::Absent | Bearer::Other => None,
    }
}

#[derive(Debug, PartialEq)]
struct Challenge<'a> {
    scheme: &'a str,
    params: Vec<(&'a str, String)>,
}

impl Challenge<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Splits a header value into challenges. Lenient: what it cannot read it
/// skips.
fn challenges(value: &str) -> Vec<Challenge<'_>> {
    let mut out: Vec<Challenge<'_>> = Vec::new();
    for item in split_commas(value) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        // `scheme [param]` starts a challenge; a bare `name=value` continues one.
        let (scheme, rest) = match item.split_once([' ', '\t']) {
            Some((head, rest)) if !head.contains('=') => (Some(head), rest.trim()),
            _ if !item.contains('=') => (Some(item), ""),
            _ => (None, item),
        };
        if let Some(scheme) = scheme {
            out.push(Challenge {
                scheme,
                params: Vec::new(),
            });
        }
        let (Some(challenge), Some((name, value))) = (out.last_mut(), rest.split_once('=')) else {
            continue;
        };
        challenge.params.push((name.trim(), unquote(value.trim())));
    }
    out
}

/// Splits at commas outside quoted strings.
fn split_commas(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

fn unquote(value: &str) -> String {
    let Some(inner) = value.strip_prefix('"') else {
        return value.to_owned();
    };
    let inner = inner.strip_suffix('"').unwrap_or(inner);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' {
            chars.next().unwrap_or('\\')
        } else {
            c
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn error_of(values: &[&str]) -> Option<String> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(WWW_AUTHENTICATE, HeaderValue::from_str(v).unwrap());
        }
        bearer_error(&headers)
    }

    #[test]
    fn reads_the_rfc_6750_examples() {
        assert_eq!(error_of(&[r#"Bearer realm="example""#]), None);
        assert_eq!(
            error_of(&[
                r#"Bearer realm="example", error="invalid_token", error_description="The access token expired""#
            ])
            .as_deref(),
            Some("invalid_token")
        );
        assert_eq!(
            error_of(&[r#"Bearer error="insufficient_scope", scope="a b""#]).as_deref(),
            Some("insufficient_scope")
        );
    }

    #[test]
    fn finds_bearer_among_other_challenges_and_headers() {
        assert_eq!(
            error_of(&[r#"Basic realm="a, b", Bearer error=insufficient_scope"#]).as_deref(),
            Some("insufficient_scope")
        );
        assert_eq!(
            error_of(&["Basic realm=x", r#"bearer error="invalid_token""#]).as_deref(),
            Some("invalid_token")
        );
        assert_eq!(error_of(&[r#"Basic error="insufficient_scope""#]), None);
    }

    #[test]
    fn tells_absent_other_and_bearer_challenges_apart() {
        let of = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(WWW_AUTHENTICATE, HeaderValue::from_str(v).unwrap());
            }
            bearer(&headers)
        };
        assert_eq!(of(&[]), Bearer::Absent);
        assert_eq!(of(&[r#"Basic realm="x""#]), Bearer::Other);
        assert_eq!(of(&["Basic realm=x", "Bearer"]), Bearer::Challenge(None));
    }

    #[test]
    fn quoted_strings_keep_commas_and_escapes() {
        let c = challenges(r#"Bearer error_description="a, \"b\"", error="x""#);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].param("error_description"), Some(r#"a, "b""#));
        assert_eq!(c[0].param("error"), Some("x"));
    }

    #[test]
    fn garbage_does_not_panic() {
        for v in [
            "",
            ",,,",
            "=",
            "\"",
            "Bearer \"",
            "Bearer =,=",
            "a b c=\"\\",
        ] {
            let _ = challenges(v);
        }
    }
}
