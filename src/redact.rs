//! Every rule about what may leave the crate in text: body excerpts, the
//! masking of credentials by name and by value, and the escaping of server
//! text.
//!
//! Three layers, applied in this order wherever server text becomes part of
//! an [`Error`](crate::Error), a `Display`, a `Debug` or a tracing field:
//!
//! 1. **By value**: every secret the client itself sent in the request that
//!    got this answer ([`SentSecrets`]: the client secret, a client or grant
//!    assertion, a refresh, subject or actor token, a code and its
//!    verifier, a password) is replaced by `[redacted]` wherever it appears,
//!    in any of the forms a server could echo it in: as is, form-urlencoded
//!    (`+` for space), percent-encoded (either hex case), JSON-escaped
//!    (with or without `\uXXXX` for non-ASCII, `\/` for `/`), and Base64
//!    (standard and URL-safe, padded or not, at each of the three offsets it
//!    can take inside a longer Base64 text), and the same for the `id:secret`
//!    of HTTP Basic.
//! 2. **By name**: JSON members, form pairs and auth schemes that carry
//!    credentials ([`SENSITIVE_KEYS`], `Basic`/`Bearer`/`DPoP`), and anything
//!    shaped like a JWT. A non-JSON body that names a credential is withheld.
//! 3. **Control characters** (C0, DEL, C1, and the bidirectional overrides)
//!    are escaped (`\u{1b}`), so server text cannot move a terminal's cursor,
//!    set its title or fake a line of output.
//!
//! Only then is an excerpt cut to [`EXCERPT_LIMIT`], so a secret can never
//! survive in part because the cut fell inside it.

use std::{borrow::Cow, fmt};

use base64::{
    engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD},
    Engine as _,
};

/// How much of a response body an error keeps.
pub(crate) const EXCERPT_LIMIT: usize = 512;

/// What a secret is replaced with.
const REDACTED: &str = "[redacted]";

/// Names (JSON members, form pairs, header names) whose values are
/// credentials, compared ASCII case-insensitively.
pub(crate) const SENSITIVE_KEYS: &[&str] = &[
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "client_assertion",
    "assertion",
    "subject_token",
    "actor_token",
    "device_code",
    "code_verifier",
    "password",
    "code",
    "token",
    "authorization",
    "proxy-authorization",
    "oauth_token",
    "oauth_token_secret",
    "oauth_verifier",
    "oauth_signature",
];

/// Form parameters of a token request whose values are secrets: what a
/// [`SentSecrets`] takes from the form the request sends.
const SENT_SECRET_PARAMS: &[&str] = &[
    "client_secret",
    "client_assertion",
    "assertion",
    "refresh_token",
    "subject_token",
    "actor_token",
    "code",
    "code_verifier",
    "device_code",
    "password",
    "access_token",
    "token",
];

// ===== SentSecrets =====

/// The secrets one token request sent, to scrub by value from whatever the
/// server answered to it.
///
/// Filled by the attempt that builds the request (the client
/// authentication's secret and Basic credentials, and every form parameter
/// in [`SENT_SECRET_PARAMS`]), applied when an error is built from the
/// answer. Holds the raw values only: their encodings are made on the error
/// path, never on a successful request.
#[derive(Clone, Default)]
pub(crate) struct SentSecrets {
    values: Vec<String>,
}

impl SentSecrets {
    /// Adds one secret value (empty values are ignored).
    pub(crate) fn add(&mut self, value: impl Into<String>) {
        let value = value.into();
        if !value.is_empty() && !self.values.contains(&value) {
            self.values.push(value);
        }
    }

    /// Adds the values of the secret parameters of a request form.
    pub(crate) fn add_form(&mut self, form: &[(String, String)]) {
        for (name, value) in form {
            if SENT_SECRET_PARAMS
                .iter()
                .any(|key| key.eq_ignore_ascii_case(name))
            {
                self.add(value.as_str());
            }
        }
    }

    /// Every form of every secret to look for, longest first, so that a
    /// longer encoding is replaced before a shorter one inside it.
    fn patterns(&self) -> Vec<String> {
        let mut patterns = Vec::new();
        for value in &self.values {
            encodings(value, &mut patterns);
        }
        patterns.retain(|p| !p.is_empty());
        patterns.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        patterns.dedup();
        patterns
    }

    /// `text` with every form of every secret replaced by `[redacted]`.
    pub(crate) fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.values.is_empty() {
            return Cow::Borrowed(text);
        }
        scrub_with(text, &self.patterns())
    }
}

impl fmt::Debug for SentSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentSecrets")
            .field("count", &self.values.len())
            .finish()
    }
}

fn scrub_with<'a>(text: &'a str, patterns: &[String]) -> Cow<'a, str> {
    let mut text = Cow::Borrowed(text);
    for pattern in patterns {
        if text.contains(pattern.as_str()) {
            text = Cow::Owned(text.replace(pattern.as_str(), REDACTED));
        }
    }
    text
}

/// Every form in which `value` could come back from a server.
fn encodings(value: &str, out: &mut Vec<String>) {
    let texts = [
        value.to_owned(),
        form_urlencoded::byte_serialize(value.as_bytes()).collect(),
        percent_encode(value, false),
        percent_encode(value, true),
        json_escape(value, false),
        json_escape(value, true),
        json_escape(value, false).replace('/', "\\/"),
        value.escape_debug().to_string(),
    ];
    for text in texts {
        if !text.is_empty() {
            out.push(lower_hex(&text));
            out.push(text);
        }
    }
    base64_forms(value.as_bytes(), out);
    // Inside an echoed form, the form-encoded value may itself be Base64ed.
    let form: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
    if form != value {
        base64_forms(form.as_bytes(), out);
    }
}

/// Base64 of `bytes` as a whole (four alphabets), and the characters that
/// encode only `bytes` when they sit at any offset inside a longer Base64
/// text (an echoed `Authorization: Basic` value, a Base64ed body).
fn base64_forms(bytes: &[u8], out: &mut Vec<String>) {
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        out.push(engine.encode(bytes));
    }
    for offset in 0..3usize {
        let mut shifted = vec![0u8; offset];
        shifted.extend_from_slice(bytes);
        let bits = shifted.len() * 8;
        // Characters wholly inside the value's bits: from the first one
        // after the prefix to the last one that ends within the value.
        let start = (offset * 8).div_ceil(6);
        let end = bits / 6;
        if end <= start || end - start < 4 {
            continue;
        }
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            let encoded = engine.encode(&shifted);
            if let Some(core) = encoded.get(start..end) {
                out.push(core.to_owned());
            }
        }
    }
}

/// `text` with the hex digits of its `%XX` escapes in lower case.
fn lower_hex(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut after_percent = 0;
    for c in text.chars() {
        if after_percent > 0 {
            out.push(c.to_ascii_lowercase());
            after_percent -= 1;
        } else {
            if c == '%' {
                after_percent = 2;
            }
            out.push(c);
        }
    }
    out
}

/// Percent-encoding of every byte but the RFC 3986 unreserved ones (space
/// as `%20`), or of every byte but letters and digits.
fn percent_encode(value: &str, strict: bool) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        let unreserved = byte.is_ascii_alphanumeric() || (!strict && b"-._~".contains(&byte));
        if unreserved {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The value as the inside of a JSON string; with `ascii`, non-ASCII as
/// `\uXXXX` (Python's `json.dumps` default).
fn json_escape(value: &str, ascii: bool) -> String {
    let quoted = serde_json::Value::String(value.to_owned()).to_string();
    let inner = &quoted[1..quoted.len() - 1];
    if !ascii {
        return inner.to_owned();
    }
    let mut out = String::with_capacity(inner.len());
    for c in inner.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

// ===== server text =====

/// Server text made safe to print: secrets sent removed by value, then
/// control characters escaped.
pub(crate) fn server_text(text: &str, sent: &SentSecrets) -> String {
    escape_controls(&sent.scrub(text)).into_owned()
}

/// Escapes C0 controls, DEL, C1 controls and the bidirectional formatting
/// characters as `\u{..}` (`\n`, `\r`, `\t` by name), and a backslash that
/// would start such an escape, so server text cannot drive a terminal.
pub(crate) fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

// ===== body excerpts =====

/// A bounded excerpt of a response body with every credential removed: the
/// secrets `sent` by value, credentials by name, JWTs and auth-scheme
/// credentials by shape, control characters escaped. `None` for an empty
/// body.
pub(crate) fn excerpt(body: &[u8], sent: &SentSecrets) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let patterns = sent.patterns();
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(json) => {
            let json = mask(json, &patterns);
            scrub_with(&json.to_string(), &patterns).into_owned()
        }
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = scrub_with(&text, &patterns);
            if names_a_credential(&text) {
                return Some("[body withheld: it may contain credentials]".to_owned());
            }
            text.into_owned()
        }
    };
    let text = mask_schemes(&mask_jwts(&mask_pairs(&text)));
    Some(truncate(escape_controls(&text).into_owned(), EXCERPT_LIMIT))
}

/// The body as form pairs, if it looks like a form: UTF-8, no whitespace,
/// and an `=` in every member (how OAuth 1 providers answer, RFC 5849
/// §2.1).
#[cfg_attr(not(feature = "oauth1"), allow(dead_code))]
pub(crate) fn form_pairs(body: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(body).ok()?.trim();
    if text.is_empty()
        || text.chars().any(char::is_whitespace)
        || text.split('&').any(|member| !member.contains('='))
    {
        return None;
    }
    Some(
        form_urlencoded::parse(text.as_bytes())
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect(),
    )
}

/// Like [`excerpt`], for a server that answers in forms (an OAuth 1
/// provider): a form body is kept as a form, every member whose name is a
/// credential's ([`SENSITIVE_KEYS`], or any name with `secret` in it)
/// masked, every secret `sent` scrubbed by value from names and values
/// (decoded and re-encoded); any other body gets [`excerpt`]'s treatment.
#[cfg_attr(not(feature = "oauth1"), allow(dead_code))]
pub(crate) fn form_excerpt(body: &[u8], sent: &SentSecrets) -> Option<String> {
    let Some(pairs) = form_pairs(body) else {
        return excerpt(body, sent);
    };
    let patterns = sent.patterns();
    let encode = |text: &str| -> String {
        let text = scrub_with(text, &patterns);
        let encoded: String = form_urlencoded::byte_serialize(text.as_bytes()).collect();
        // `[redacted]` stays readable.
        encoded.replace("%5Bredacted%5D", REDACTED)
    };
    let members: Vec<String> = pairs
        .iter()
        .map(|(name, value)| {
            let sensitive = is_sensitive_key(name) || name.to_ascii_lowercase().contains("secret");
            let value = if sensitive {
                REDACTED.to_owned()
            } else {
                encode(value)
            };
            format!("{}={value}", encode(name))
        })
        .collect();
    let text = scrub_with(&members.join("&"), &patterns).into_owned();
    let text = mask_schemes(&mask_jwts(&text));
    Some(truncate(escape_controls(&text).into_owned(), EXCERPT_LIMIT))
}

/// Whether plain text mentions a credential's name.
fn names_a_credential(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    SENSITIVE_KEYS.iter().any(|key| lower.contains(key))
}

fn is_sensitive_key(key: &str) -> bool {
    SENSITIVE_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key))
}

/// Masks sensitive members by name and scrubs every string (member names
/// too) by value.
fn mask(value: serde_json::Value, patterns: &[String]) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| {
                    let value = if is_sensitive_key(&key) {
                        Value::String(REDACTED.to_owned())
                    } else {
                        mask(value, patterns)
                    };
                    (scrub_with(&key, patterns).into_owned(), value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| mask(v, patterns)).collect()),
        Value::String(text) => Value::String(scrub_with(&text, patterns).into_owned()),
        other => other,
    }
}

/// Masks `name=value` pairs of sensitive names inside text (a request form
/// echoed in a JSON string, an error page): the value up to the next `&`,
/// whitespace or quote.
fn mask_pairs(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    let mut at = 0;
    while let Some(eq) = lower[at..].find('=').map(|n| at + n) {
        let is_name = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-';
        let name_start = eq - bytes[..eq].iter().rev().take_while(|b| is_name(b)).count();
        let end = text[eq + 1..]
            .find(|c: char| c == '&' || c == '"' || c == '\'' || c == '\\' || c.is_whitespace())
            .map_or(text.len(), |n| eq + 1 + n);
        if name_start < eq && is_sensitive_key(&lower[name_start..eq]) && end > eq + 1 {
            out.push_str(&text[done..=eq]);
            out.push_str(REDACTED);
            done = end;
        }
        at = (eq + 1).max(end.min(bytes.len()));
    }
    out.push_str(&text[done..]);
    out
}

/// Replaces anything shaped like a JWT (`eyJ…` header, two dots) with
/// `[redacted]`: an access token can hide in any member or in plain text.
pub(crate) fn mask_jwts(text: &str) -> String {
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("eyJ") {
        out.push_str(&rest[..at]);
        let candidate = &rest[at..];
        let len = candidate
            .find(|c: char| !is_b64(c) && c != '.')
            .unwrap_or(candidate.len());
        if candidate[..len].matches('.').count() >= 2 {
            out.push_str(REDACTED);
        } else {
            out.push_str(&candidate[..len]);
        }
        rest = &candidate[len..];
    }
    out.push_str(rest);
    out
}

/// Replaces the credentials after `Basic`, `Bearer` or `DPoP` with
/// `[redacted]`: an endpoint that echoes the request (httpbin-style) would
/// otherwise show the client secret in Base64.
pub(crate) fn mask_schemes(text: &str) -> String {
    const SCHEMES: [&str; 3] = ["basic ", "bearer ", "dpop "];
    let is_token68 = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    loop {
        let next = SCHEMES
            .iter()
            .filter_map(|scheme| {
                lower[done..]
                    .find(scheme)
                    .map(|at| (done + at, scheme.len()))
            })
            .min();
        let Some((at, len)) = next else { break };
        let start = at + len;
        let end = text[start..]
            .find(|c: char| !is_token68(c))
            .map_or(text.len(), |n| start + n);
        let at_word = at == 0 || !lower.as_bytes()[at - 1].is_ascii_alphanumeric();
        out.push_str(&text[done..start]);
        if at_word && end > start {
            out.push_str(REDACTED);
        } else {
            out.push_str(&text[start..end]);
        }
        done = end;
    }
    out.push_str(&text[done..]);
    out
}

/// `text` cut to at most `limit` bytes on a character boundary, with `…`
/// when something was cut.
pub(crate) fn truncate(mut text: String, limit: usize) -> String {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

// ===== connection URLs =====

/// Query parameters of a connection URL whose values are secrets: any name
/// containing one of these, ASCII case-insensitively.
#[cfg(feature = "redis")]
const SECRET_QUERY_PARTS: &[&str] = &["pass", "pwd", "secret", "token", "key", "auth"];

/// A connection URL (`redis://`, `rediss://`, `redis+unix://`, `unix://`)
/// fit to print: parsed, its password (or a userinfo without one) and the
/// value of every secret query parameter (`pass`, `password`, …) replaced
/// by `redacted`, its fragment dropped.
/// A URL that does not parse is not printed at all.
#[cfg(feature = "redis")]
pub(crate) fn connection_url(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw) else {
        return "[unreadable URL, not shown]".to_owned();
    };
    // Brackets would be percent-encoded in a URL: plain `redacted` there.
    if url.password().is_some() {
        let _ = url.set_password(Some("redacted"));
    } else if !url.username().is_empty() {
        // A lone userinfo is often the password (`redis://secret@host`).
        let _ = url.set_username("redacted");
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let lower = name.to_ascii_lowercase();
                let value = if SECRET_QUERY_PARTS.iter().any(|part| lower.contains(part)) {
                    "redacted".to_owned()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        url.set_query(None);
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
    }
    url.set_fragment(None);
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(values: &[&str]) -> SentSecrets {
        let mut sent = SentSecrets::default();
        for value in values {
            sent.add(*value);
        }
        sent
    }

    /// The forms of `secret` a test must not find.
    fn forms(secret: &str) -> Vec<String> {
        let form: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        vec![
            secret.to_owned(),
            form.clone(),
            STANDARD.encode(secret),
            URL_SAFE_NO_PAD.encode(secret),
            STANDARD.encode(&form),
        ]
    }

    #[test]
    fn a_sent_secret_is_scrubbed_in_every_encoding() {
        let secret = "s3cr+t/ é&x=1";
        let s = sent(&[secret]);
        let form: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        for text in forms(secret)
            .into_iter()
            .chain([
                lower_hex(&percent_encode(secret, false)),
                json_escape(secret, true),
                json_escape(secret, false).replace('/', "\\/"),
            ])
            .chain([STANDARD.encode(format!("grant_type=x&client_secret={form}&y=z"))])
        {
            let echoed = format!("before {text} after");
            let scrubbed = s.scrub(&echoed);
            for form in forms(secret) {
                assert!(!scrubbed.contains(&form), "{form:?} left in {scrubbed:?}");
            }
            assert!(scrubbed.starts_with("before "), "{scrubbed}");
        }
    }

    #[test]
    fn base64_inside_a_longer_base64_text_is_found_at_every_offset() {
        let secret = "hunter2-hunter2";
        let s = sent(&[secret]);
        for prefix in ["", "a", "ab", "abc"] {
            let whole = STANDARD.encode(format!("{prefix}{secret}tail"));
            let scrubbed = s.scrub(&whole);
            assert!(scrubbed.contains(REDACTED), "{prefix:?}: {scrubbed}");
        }
    }

    #[test]
    fn an_echoed_form_inside_json_is_scrubbed_and_masked() {
        let body = br#"{"error":"invalid_request","rawBody":"grant_type=refresh_token&refresh_token=rt-ABC%2Bdef&client_secret=zz"}"#;
        let excerpt = excerpt(body, &sent(&["rt-ABC+def"])).unwrap();
        assert!(!excerpt.contains("rt-ABC"), "{excerpt}");
        assert!(!excerpt.contains("zz"), "masked by name: {excerpt}");
        assert!(excerpt.contains("invalid_request"), "{excerpt}");
    }

    #[test]
    fn excerpts_mask_tokens_in_json_by_name() {
        let body = br#"{"access_token":"sekret","nested":{"subject_token":"r"},"code_verifier":"v","x":1}"#;
        let excerpt = excerpt(body, &SentSecrets::default()).unwrap();
        assert!(!excerpt.contains("sekret") && !excerpt.contains("\"r\""));
        assert!(!excerpt.contains("\"v\""));
        assert!(excerpt.contains("\"x\":1"));
    }

    #[test]
    fn the_cut_falls_after_scrubbing() {
        let secret = "x".repeat(40);
        let body = format!("{}{secret}", "a".repeat(EXCERPT_LIMIT - 10));
        let excerpt = excerpt(body.as_bytes(), &sent(&[&secret])).unwrap();
        assert!(!excerpt.contains("xxxx"), "{excerpt}");
    }

    #[test]
    fn control_characters_are_escaped() {
        let text = "a\u{1b}]0;pwned\u{7}\r\nalf: ok\u{7f}\u{9b}\u{202e}";
        assert_eq!(
            escape_controls(text),
            "a\\u{1b}]0;pwned\\u{7}\\r\\nalf: ok\\u{7f}\\u{9b}\\u{202e}"
        );
        assert!(matches!(escape_controls("plain é"), Cow::Borrowed(_)));
        let excerpt = excerpt(b"<p>\x1b[2J</p>", &SentSecrets::default()).unwrap();
        assert_eq!(excerpt, "<p>\\u{1b}[2J</p>");
    }

    #[test]
    fn form_excerpts_mask_credentials_by_name_and_by_value() {
        let body = b"oauth_token=tok-1&oauth_token_secret=sec-2&My_Secret=m&oauth_problem=token_rejected&echo=c%20s%26x&b64=YyBzJng%3D";
        let excerpt = form_excerpt(body, &sent(&["c s&x"])).unwrap();
        for gone in ["tok-1", "sec-2", "=m", "c%20s", "c s&x", "YyBzJng"] {
            assert!(!excerpt.contains(gone), "{gone:?} in {excerpt}");
        }
        assert!(
            excerpt.contains("oauth_problem=token_rejected"),
            "{excerpt}"
        );
        assert!(excerpt.contains("echo=[redacted]"), "{excerpt}");
        // Not a form: the generic rule.
        let excerpt = form_excerpt(b"Invalid signature.", &SentSecrets::default());
        assert_eq!(excerpt.as_deref(), Some("Invalid signature."));
    }

    #[test]
    fn form_pairs_are_masked_in_free_text() {
        assert_eq!(
            mask_pairs("got client_secret=abc&x=1 status_code=3 Code=zz"),
            "got client_secret=[redacted]&x=1 status_code=3 Code=[redacted]"
        );
    }

    #[cfg(feature = "redis")]
    #[test]
    fn connection_urls_are_parsed_and_redacted() {
        for (raw, shown) in [
            (
                "redis://user:hunter2@host:6379/0",
                "redis://user:redacted@host:6379/0",
            ),
            ("redis://hunter2@host/", "redis://redacted@host/"),
            (
                "redis+unix:///run/redis.sock?db=1&pass=hunter2",
                "redis+unix:///run/redis.sock?db=1&pass=redacted",
            ),
            (
                "unix:///s?password=hunter2#x",
                "unix:///s?password=redacted",
            ),
            ("redis://host/", "redis://host/"),
            ("not a url hunter2", "[unreadable URL, not shown]"),
        ] {
            assert_eq!(connection_url(raw), shown, "{raw}");
        }
    }
}
