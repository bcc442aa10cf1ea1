//! Reading `WWW-Authenticate` challenges (RFC 9110 §11.6.1, RFC 6750 §3,
//! RFC 9449 §7.1).
//!
//! The grammar, and how this reader bends it:
//!
//! ```text
//! WWW-Authenticate = #challenge                      ; and several header lines
//! challenge        = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//! auth-param       = token BWS "=" BWS ( token / quoted-string )
//! ```
//!
//! - It reads bytes, never `&str`: a quoted string may hold `obs-text`
//!   (`"Jeton expiré"` in Latin-1 or UTF-8), and values are decoded lossily.
//! - A challenge starts at a token followed by a space (or a comma, or the
//!   end) that is not followed by `=`; anything else continues the current
//!   challenge's parameters.
//! - What it cannot read it skips up to the next comma outside a quoted
//!   string; it never fails and never panics.
//! - Scheme and parameter names compare ASCII case-insensitively.
//!
//! And what a gRPC answer says: `grpc-status` (gRPC over HTTP/2, "Status"),
//! 16 being `UNAUTHENTICATED`, the rejection a gRPC server sends instead of
//! a 401, in the headers of a *Trailers-Only* answer (HTTP 200) or in the
//! trailers after the messages.

use std::borrow::Cow;

use http::{header::WWW_AUTHENTICATE, HeaderMap, StatusCode};

/// The `grpc-status` header or trailer.
pub(crate) const GRPC_STATUS: &str = "grpc-status";

/// `UNAUTHENTICATED`: the request has no valid credentials.
const UNAUTHENTICATED: u32 = 16;

/// The gRPC status code in `headers` (headers of a Trailers-Only answer, or
/// trailers), if there is one and it is a number: ASCII digits only, as
/// the gRPC spec writes it and tonic reads it. Anything else is no status
/// (the answer passes through as it is).
pub(crate) fn grpc_status(headers: &HeaderMap) -> Option<u32> {
    let value = headers.get(GRPC_STATUS)?.as_bytes();
    if value.is_empty() || value.len() > 10 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Whether `headers` carry `grpc-status: 16` (`UNAUTHENTICATED`).
pub(crate) fn is_grpc_unauthenticated(headers: &HeaderMap) -> bool {
    grpc_status(headers) == Some(UNAUTHENTICATED)
}

/// Whether an answer rejects the credentials it was sent with: HTTP 401, or
/// a gRPC Trailers-Only answer (HTTP 200, the status in the headers) with
/// `grpc-status: 16`. What the challenge then says is read apart.
pub(crate) fn rejects_credentials(status: StatusCode, headers: &HeaderMap) -> bool {
    status == StatusCode::UNAUTHORIZED
        || (status == StatusCode::OK && is_grpc_unauthenticated(headers))
}

/// What a 401's `WWW-Authenticate` says about one authentication scheme
/// (`Bearer`, `DPoP`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SchemeChallenge {
    /// No challenge at all (many servers send none).
    Absent,
    /// Challenges, none of them for the scheme (say `Basic`): not about our
    /// token.
    Other,
    /// A challenge for the scheme, with its `error` parameter if any.
    Challenge(Option<String>),
}

/// Reads the `Bearer` challenge of a response's `WWW-Authenticate`.
pub(crate) fn bearer(headers: &HeaderMap) -> SchemeChallenge {
    of(headers, "bearer")
}

/// Reads the challenge for `scheme` (`bearer`, `dpop`) of a response's
/// `WWW-Authenticate` header lines: the first challenge of that scheme,
/// in order, across every line.
pub(crate) fn of(headers: &HeaderMap, scheme: &str) -> SchemeChallenge {
    of_values(
        headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.as_bytes()),
        scheme,
    )
}

/// [`of`] over raw header values.
pub(crate) fn of_values<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
    scheme: &str,
) -> SchemeChallenge {
    let mut seen = false;
    for value in values {
        seen = true;
        if let Some(challenge) = challenges(value)
            .into_iter()
            .find(|c| c.scheme.eq_ignore_ascii_case(scheme.as_bytes()))
        {
            return SchemeChallenge::Challenge(challenge.param("error").map(Cow::into_owned));
        }
    }
    if seen {
        SchemeChallenge::Other
    } else {
        SchemeChallenge::Absent
    }
}

/// The `error` parameter of the `Bearer` challenge in `headers`, if any.
pub(crate) fn bearer_error(headers: &HeaderMap) -> Option<String> {
    match bearer(headers) {
        SchemeChallenge::Challenge(error) => error,
        SchemeChallenge::Absent | SchemeChallenge::Other => None,
    }
}

/// One challenge: its scheme, its `token68` or its parameters (raw bytes,
/// quoted strings unescaped).
#[derive(Debug, PartialEq)]
struct Challenge<'a> {
    scheme: &'a [u8],
    token68: Option<&'a [u8]>,
    params: Vec<(&'a [u8], Vec<u8>)>,
}

impl Challenge<'_> {
    /// The first parameter called `name` (case-insensitive), decoded lossily.
    fn param(&self, name: &str) -> Option<Cow<'_, str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| String::from_utf8_lossy(v))
    }
}

/// `tchar` (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The characters of `token68` before its `=` padding (RFC 9110 §11.2).
fn is_token68(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// A cursor over one header value.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn peek_at(&self, at: usize) -> Option<u8> {
        self.bytes.get(at).copied()
    }

    fn skip_ows(&mut self) {
        while self.peek().is_some_and(is_ows) {
            self.at += 1;
        }
    }

    /// The longest run from here of bytes that pass `class`.
    fn run(&mut self, class: fn(u8) -> bool) -> &'a [u8] {
        let start = self.at;
        while self.peek().is_some_and(class) {
            self.at += 1;
        }
        &self.bytes[start..self.at]
    }

    /// Where OWS starting at `at` ends.
    fn after_ows(&self, mut at: usize) -> usize {
        while self.peek_at(at).is_some_and(is_ows) {
            at += 1;
        }
        at
    }

    /// A quoted string's content, the opening `"` under the cursor:
    /// backslash escapes undone. An unterminated one runs to the end.
    fn quoted(&mut self) -> Vec<u8> {
        self.at += 1;
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.at += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(escaped) = self.peek() {
                        self.at += 1;
                        out.push(escaped);
                    }
                }
                _ => out.push(b),
            }
        }
        out
    }

    /// Skips to the next comma outside a quoted string (or the end).
    fn skip_item(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b',' => return,
                b'"' => {
                    self.quoted();
                }
                _ => self.at += 1,
            }
        }
    }

    /// If a `token68` starts here and fills the item (up to a comma or the
    /// end), reads it.
    fn token68(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        let mut end = start;
        while self.peek_at(end).is_some_and(is_token68) {
            end += 1;
        }
        if end == start {
            return None;
        }
        while self.peek_at(end) == Some(b'=') {
            end += 1;
        }
        let next = self.after_ows(end);
        if !matches!(self.peek_at(next), None | Some(b',')) {
            return None;
        }
        self.at = next;
        Some(&self.bytes[start..end])
    }
}

/// Splits a header value into challenges. Lenient: what it cannot read it
/// skips.
fn challenges(value: &[u8]) -> Vec<Challenge<'_>> {
    let mut out: Vec<Challenge<'_>> = Vec::new();
    let mut reader = Reader {
        bytes: value,
        at: 0,
    };
    // Just after `scheme 1*SP`: where a token68 may stand.
    let mut after_scheme = false;
    loop {
        if !after_scheme {
            while reader.peek().is_some_and(|b| is_ows(b) || b == b',') {
                reader.at += 1;
            }
        }
        if reader.peek().is_none() {
            break;
        }
        if after_scheme {
            after_scheme = false;
            if let Some(token68) = reader.token68() {
                if let Some(challenge) = out.last_mut() {
                    challenge.token68 = Some(token68);
                }
                continue;
            }
        }
        let name = reader.run(is_tchar);
        if name.is_empty() {
            reader.skip_item();
            continue;
        }
        let equals = reader.after_ows(reader.at);
        if reader.peek_at(equals) == Some(b'=') {
            // `name BWS = BWS value`: a parameter of the current challenge.
            reader.at = equals + 1;
            reader.skip_ows();
            let value = match reader.peek() {
                Some(b'"') => reader.quoted(),
                _ => reader
                    .run(|b| !is_ows(b) && b != b',' && b != b'"')
                    .to_vec(),
            };
            if let Some(challenge) = out.last_mut() {
                challenge.params.push((name, value));
            }
            reader.skip_ows();
            if reader.peek() != Some(b',') {
                reader.skip_item();
            }
        } else {
            // A token not followed by `=`: a new challenge's scheme.
            out.push(Challenge {
                scheme: name,
                token68: None,
                params: Vec::new(),
            });
            if reader.peek().is_some_and(is_ows) {
                reader.skip_ows();
                after_scheme = true;
            } else if reader.peek() != Some(b',') {
                reader.skip_item();
            }
        }
    }
    out
}

#[cfg(test)]
mod grpc_tests {
    use http::HeaderValue;

    use super::*;

    fn with_status(value: &'static [u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(GRPC_STATUS, HeaderValue::from_bytes(value).unwrap());
        headers
    }

    #[test]
    fn grpc_status_is_read_as_ascii_digits_only() {
        assert_eq!(grpc_status(&with_status(b"16")), Some(16));
        assert_eq!(grpc_status(&with_status(b"0")), Some(0));
        for bad in [
            &b""[..],
            b" 16",
            b"16 ",
            b"+16",
            b"-16",
            b"0x10",
            b"sixteen",
            b"99999999999",
            b"16\xff",
        ] {
            assert_eq!(grpc_status(&with_status(bad)), None, "{bad:?}");
        }
        assert_eq!(grpc_status(&HeaderMap::new()), None);
    }

    #[test]
    fn a_trailers_only_unauthenticated_rejects_like_a_401() {
        let unauthenticated = with_status(b"16");
        assert!(rejects_credentials(StatusCode::OK, &unauthenticated));
        assert!(rejects_credentials(
            StatusCode::UNAUTHORIZED,
            &HeaderMap::new()
        ));
        assert!(!rejects_credentials(StatusCode::OK, &HeaderMap::new()));
        assert!(!rejects_credentials(StatusCode::OK, &with_status(b"7")));
        assert!(!rejects_credentials(StatusCode::OK, &with_status(b"16x")));
        // gRPC answers are HTTP 200; another status with it is not gRPC's.
        assert!(!rejects_credentials(
            StatusCode::BAD_GATEWAY,
            &unauthenticated
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn error_of(values: &[&[u8]]) -> Option<String> {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(WWW_AUTHENTICATE, HeaderValue::from_bytes(v).unwrap());
        }
        bearer_error(&headers)
    }

    fn param(value: &[u8], scheme: &str, name: &str) -> Option<String> {
        challenges(value)
            .iter()
            .find(|c| c.scheme.eq_ignore_ascii_case(scheme.as_bytes()))
            .and_then(|c| c.param(name).map(Cow::into_owned))
    }

    #[test]
    fn reads_the_rfc_6750_examples() {
        assert_eq!(error_of(&[br#"Bearer realm="example""#]), None);
        assert_eq!(
            error_of(&[
                br#"Bearer realm="example", error="invalid_token", error_description="The access token expired""#
            ])
            .as_deref(),
            Some("invalid_token")
        );
        assert_eq!(
            error_of(&[br#"Bearer error="insufficient_scope", scope="a b""#]).as_deref(),
            Some("insufficient_scope")
        );
    }

    #[test]
    fn non_ascii_descriptions_do_not_hide_the_bearer_challenge() {
        for value in [
            "Bearer error=\"invalid_token\", error_description=\"Jeton expiré\"".as_bytes(),
            b"Bearer error=\"invalid_token\", error_description=\"Jeton expir\xe9\"",
            b"Bearer error_description=\"\xff\xfe\x80\", error=invalid_token",
        ] {
            assert_eq!(error_of(&[value]).as_deref(), Some("invalid_token"));
        }
        assert_eq!(
            param(
                "Bearer error_description=\"Jeton expiré\"".as_bytes(),
                "bearer",
                "error_description"
            )
            .as_deref(),
            Some("Jeton expiré")
        );
    }

    #[test]
    fn bad_whitespace_around_equals_is_allowed() {
        for value in [
            &br#"Bearer error ="insufficient_scope""#[..],
            br#"Bearer error= "insufficient_scope""#,
            b"Bearer error \t=\t insufficient_scope",
            br#"Bearer realm = "x" , error = "insufficient_scope""#,
        ] {
            assert_eq!(
                error_of(&[value]).as_deref(),
                Some("insufficient_scope"),
                "{}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn finds_bearer_among_other_challenges_and_headers() {
        assert_eq!(
            error_of(&[br#"Basic realm="a, b", Bearer error=insufficient_scope"#]).as_deref(),
            Some("insufficient_scope")
        );
        assert_eq!(
            error_of(&[b"Basic realm=x", br#"bearer error="invalid_token""#]).as_deref(),
            Some("invalid_token")
        );
        assert_eq!(error_of(&[br#"Basic error="insufficient_scope""#]), None);
        assert_eq!(
            error_of(&[br#"Negotiate a87421000492aa874209af8bc028==, BEARER error="x""#])
                .as_deref(),
            Some("x")
        );
        assert_eq!(
            error_of(&[br#"DPoP algs="ES256 PS256", error="use_dpop_nonce", Bearer error="y""#])
                .as_deref(),
            Some("y")
        );
    }

    #[test]
    fn token68_is_read_and_not_taken_for_a_parameter() {
        let c = challenges(b"Negotiate abc+/x==, Basic realm=\"r\", Foo, Bar baz");
        let schemes: Vec<_> = c.iter().map(|c| c.scheme).collect();
        assert_eq!(
            schemes,
            [&b"Negotiate"[..], b"Basic", b"Foo", b"Bar"],
            "{c:?}"
        );
        assert_eq!(c[0].token68, Some(&b"abc+/x=="[..]));
        assert!(c[0].params.is_empty());
        assert_eq!(c[1].param("realm").as_deref(), Some("r"));
        assert_eq!(c[3].token68, Some(&b"baz"[..]));
    }

    #[test]
    fn dpop_challenges_are_read_by_the_same_parser() {
        let mut headers = HeaderMap::new();
        headers.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"dpop error = "use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#),
        );
        assert_eq!(
            of(&headers, "dpop"),
            SchemeChallenge::Challenge(Some("use_dpop_nonce".into()))
        );
        assert_eq!(bearer(&headers), SchemeChallenge::Other);
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
        assert_eq!(of(&[]), SchemeChallenge::Absent);
        assert_eq!(of(&[r#"Basic realm="x""#]), SchemeChallenge::Other);
        assert_eq!(
            of(&["Basic realm=x", "Bearer"]),
            SchemeChallenge::Challenge(None)
        );
        assert_eq!(of(&["Bearer, Basic"]), SchemeChallenge::Challenge(None));
    }

    #[test]
    fn quoted_strings_keep_commas_and_escapes() {
        let c = challenges(br#"Bearer error_description="a, \"b\" \\", error="x""#);
        assert_eq!(c.len(), 1);
        assert_eq!(
            c[0].param("error_description").as_deref(),
            Some(r#"a, "b" \"#)
        );
        assert_eq!(c[0].param("error").as_deref(), Some("x"));
    }

    #[test]
    fn garbage_does_not_panic() {
        for v in [
            &b""[..],
            b",,,",
            b"=",
            b"\"",
            b"Bearer \"",
            b"Bearer =,=",
            b"a b c=\"\\",
            b"\\",
            b"Bearer error=\"\\",
            b"\xff\xfe =\" ,",
            b"Bearer ====, ,= =",
        ] {
            let _ = challenges(v);
        }
    }
}
