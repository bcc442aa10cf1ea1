//! `-v`: every HTTP exchange alf makes (discovery, the device request, the
//! token request, the request and its replay or redirects), printed on
//! stderr as curl -v prints it: `> ` for what is sent, `< ` for what came
//! back, `* ` for alf's notes.
//!
//! Nothing secret is printed. The library's redaction is its own
//! (`pub(crate)`), so alf masks here, by name and by value:
//! - header values: `Authorization` keeps its scheme and shows a token's
//!   fingerprint (`Bearer [sha256:1a2b3c4d]`; `Basic [redacted]`), and any
//!   header whose name says token, secret, key, password, session, cookie
//!   or auth is masked the same way;
//! - token request forms and token responses (form or JSON): the values of
//!   credential parameters and members (`client_secret`, assertions,
//!   `code`, `code_verifier`, `refresh_token`, `access_token`, `id_token`,
//!   `device_code`, …);
//! - everywhere, by value: every secret the request sent (in the raw,
//!   form-encoded, percent-encoded and JSON-escaped forms a server might
//!   echo), and anything shaped like a JWT.
//!
//! A fingerprint is `[sha256:` and the first 8 hex digits of the value's
//! SHA-256, so the same token can be recognized across lines and runs.

use std::{
    fmt::Write as _,
    io::Write as _,
    pin::Pin,
    sync::atomic::{AtomicBool, Ordering},
    task::{Context, Poll},
};

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use sha2::{Digest, Sha256};
use tower::{BoxError, Service};

use crate::terminal;

static VERBOSE: AtomicBool = AtomicBool::new(false);

/// `-v` was given.
pub(crate) fn set(verbose: bool) {
    VERBOSE.store(verbose, Ordering::Relaxed);
}

/// Whether `-v` was given.
pub(crate) fn on() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

/// The most of a token endpoint's answer printed.
const MAX_BODY_SHOWN: usize = 4096;

/// Form parameters and JSON members whose values are credentials.
const SECRET_NAMES: [&str; 16] = [
    "client_secret",
    "client_assertion",
    "assertion",
    "subject_token",
    "actor_token",
    "refresh_token",
    "access_token",
    "id_token",
    "issued_token",
    "token",
    "code",
    "code_verifier",
    "device_code",
    "password",
    "dpop_jkt",
    "user_code",
];

/// `[sha256:` and the first 8 hex digits of `value`'s SHA-256 `]`.
pub(crate) fn fingerprint(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    let mut out = String::from("[sha256:");
    for byte in &digest[..4] {
        let _ = write!(out, "{byte:02x}");
    }
    out.push(']');
    out
}

/// Whether a header's value is a credential, by its name.
fn secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "auth", "token", "secret", "key", "password", "session", "cookie",
    ]
    .iter()
    .any(|word| name.contains(word))
        && name != "www-authenticate"
}

/// A header value as -v shows it.
fn header_shown(name: &str, value: &HeaderValue, secrets: &Secrets) -> String {
    let text = terminal::escape_bytes(value.as_bytes());
    if name.eq_ignore_ascii_case("authorization")
        || name.eq_ignore_ascii_case("proxy-authorization")
    {
        return match text.split_once(' ') {
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("basic") => {
                format!("{scheme} [redacted]")
            }
            Some((scheme, credentials)) => format!("{scheme} {}", fingerprint(credentials.trim())),
            None => "[redacted]".to_owned(),
        };
    }
    if secret_header(name) {
        return fingerprint(&text);
    }
    if name.eq_ignore_ascii_case("location") || name.eq_ignore_ascii_case("content-location") {
        return uri_shown(&text, secrets);
    }
    secrets.scrub(&text)
}

/// The secrets one request sent, to find again in its answer.
#[derive(Default, Clone)]
struct Secrets(Vec<String>);

impl Secrets {
    fn add(&mut self, value: &str) {
        if value.len() >= 4 && !self.0.iter().any(|v| v == value) {
            self.0.push(value.to_owned());
        }
    }

    /// The secrets in a request's headers and form body.
    fn of(headers: &HeaderMap, body: &[u8]) -> Self {
        let mut secrets = Self::default();
        for (name, value) in headers {
            let Ok(value) = value.to_str() else { continue };
            if name == http::header::AUTHORIZATION {
                match value.split_once(' ') {
                    Some((scheme, b64)) if scheme.eq_ignore_ascii_case("basic") => {
                        if let Some(pair) = base64::engine::general_purpose::STANDARD
                            .decode(b64.trim())
                            .ok()
                            .and_then(|bytes| String::from_utf8(bytes).ok())
                        {
                            if let Some((_, secret)) = pair.split_once(':') {
                                secrets.add(secret);
                                secrets.add(&form_decode(secret));
                            }
                        }
                        secrets.add(b64.trim());
                    }
                    Some((_, credentials)) => secrets.add(credentials.trim()),
                    None => secrets.add(value),
                }
            } else if secret_header(name.as_str()) {
                secrets.add(value);
            }
        }
        for (name, value) in form_urlencoded::parse(body) {
            if SECRET_NAMES.contains(&name.as_ref()) {
                secrets.add(&value);
            }
        }
        secrets
    }

    /// `text` with every secret, in any encoding a server might echo it
    /// in, replaced by its fingerprint, and JWT-shaped runs too.
    fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        let mut patterns: Vec<(String, String)> = Vec::new();
        for secret in &self.0 {
            let shown = fingerprint(secret);
            let json = serde_json::to_string(secret).unwrap_or_default();
            let json = json.trim_matches('"').to_owned();
            let form = form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>();
            let percent = form.replace('+', "%20");
            for pattern in [secret.clone(), json, form, percent] {
                patterns.push((pattern, shown.clone()));
            }
        }
        patterns.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        for (pattern, shown) in patterns {
            if !pattern.is_empty() {
                out = out.replace(&pattern, &shown);
            }
        }
        mask_jwts(&out)
    }
}

fn form_decode(value: &str) -> String {
    form_urlencoded::parse(format!("x={value}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Runs shaped like a JWT (`eyJ…` in two or more dot-separated base64url
/// parts) replaced by their fingerprints.
fn mask_jwts(text: &str) -> String {
    let is_part = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("eyJ") {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail.find(|c: char| !is_part(c)).unwrap_or(tail.len());
        let run = &tail[..end];
        if run.matches('.').count() >= 1 && run.len() >= 16 {
            out.push_str(&fingerprint(run));
        } else {
            out.push_str(run);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// A URI (or a request target) as -v shows it: a query parameter whose
/// name says it is a credential (`access_token`, `api_key`, …) by its
/// value's fingerprint, user information masked, the rest scrubbed.
fn uri_shown(uri: &str, secrets: &Secrets) -> String {
    let (head, query) = match uri.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (uri, None),
    };
    let head = match head.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('/') {
            Some((authority, path)) => format!("{scheme}://{}/{path}", authority_shown(authority)),
            None => format!("{scheme}://{}", authority_shown(rest)),
        },
        None => head.to_owned(),
    };
    let mut out = secrets.scrub(&head);
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                let decoded = form_decode(name);
                if SECRET_NAMES.contains(&decoded.as_str()) || secret_header(&decoded) {
                    format!("{name}={}", fingerprint(&form_decode(value)))
                } else {
                    secrets.scrub(pair)
                }
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    terminal::escape(&out)
}

/// An authority without its user information.
fn authority_shown(authority: &str) -> String {
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("[redacted]@{host}"),
        None => authority.to_owned(),
    }
}

/// A token request's form, its credentials masked.
fn form_shown(body: &[u8], secrets: &Secrets) -> String {
    let Ok(text) = std::str::from_utf8(body) else {
        return format!("[{} bytes, not UTF-8]", body.len());
    };
    let pairs: Vec<String> = text
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = form_decode(name);
            if SECRET_NAMES.contains(&decoded.as_str()) {
                let value = form_decode(value);
                let shown = if decoded == "client_secret" || decoded == "password" {
                    "[redacted]".to_owned()
                } else {
                    fingerprint(&value)
                };
                format!("{name}={shown}")
            } else {
                secrets.scrub(pair)
            }
        })
        .collect();
    terminal::escape(&pairs.join("&"))
}

/// A token endpoint's answer, its credentials masked: JSON members by
/// name, then everything by value.
fn answer_shown(body: &[u8], secrets: &Secrets) -> String {
    fn mask(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                for (name, member) in map.iter_mut() {
                    match member {
                        serde_json::Value::String(s) if SECRET_NAMES.contains(&name.as_str()) => {
                            *s = fingerprint(s);
                        }
                        other => mask(other),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(mask),
            _ => {}
        }
    }
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(mut json) => {
            mask(&mut json);
            json.to_string()
        }
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            if text.contains('=') && !text.contains(' ') {
                form_shown(text.as_bytes(), secrets)
            } else {
                text.into_owned()
            }
        }
    };
    let mut shown = terminal::escape(&secrets.scrub(&text));
    if shown.len() > MAX_BODY_SHOWN {
        let mut cut = MAX_BODY_SHOWN;
        while !shown.is_char_boundary(cut) {
            cut -= 1;
        }
        shown.truncate(cut);
        shown.push_str(" […]");
    }
    shown
}

/// Lines written to stderr at once, so that concurrent exchanges do not
/// interleave within a block.
fn print(lines: &[String]) {
    let mut text = String::new();
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// An HTTP client service that prints each exchange when `-v` is on;
/// `answers` says whether the answer's body is printed too (the token
/// endpoint's, discovery's: not a request's, which goes to stdout).
#[derive(Debug, Clone)]
pub(crate) struct Verbose<S> {
    inner: S,
    what: &'static str,
    answers: bool,
}

impl<S> Verbose<S> {
    /// `inner`, printing exchanges labelled `what` ("token endpoint").
    pub(crate) fn new(inner: S, what: &'static str, answers: bool) -> Self {
        Self {
            inner,
            what,
            answers,
        }
    }
}

impl<S, B> Service<Request<Full<Bytes>>> for Verbose<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Unpin,
{
    type Response = Response<Shown<B>>;
    type Error = BoxError;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Response<Shown<B>>, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<Full<Bytes>>) -> Self::Future {
        if !on() {
            let future = self.inner.call(request);
            return Box::pin(async move {
                let response = future.await.map_err(Into::into)?;
                Ok(response.map(|body| Shown { body, shown: None }))
            });
        }
        let (what, answers) = (self.what, self.answers);
        let body = full_bytes(request.body().clone());
        let secrets = Secrets::of(request.headers(), &body);
        let mut lines = vec![format!(
            "* {what}: {} {}",
            request.method(),
            uri_shown(&request.uri().to_string(), &secrets)
        )];
        let target = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        lines.push(format!(
            "> {} {} {:?}",
            request.method(),
            uri_shown(&target, &secrets),
            request.version()
        ));
        if !request.headers().contains_key(http::header::HOST) {
            if let Some(authority) = request.uri().authority() {
                let host = authority_shown(authority.as_str());
                lines.push(format!("> host: {}", terminal::escape(&host)));
            }
        }
        for (name, value) in request.headers() {
            lines.push(format!(
                "> {name}: {}",
                header_shown(name.as_str(), value, &secrets)
            ));
        }
        lines.push(">".to_owned());
        if !body.is_empty() {
            let form = request
                .headers()
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|v| {
                    v.as_bytes()
                        .starts_with(b"application/x-www-form-urlencoded")
                });
            if answers && form {
                lines.push(format!("> {}", form_shown(&body, &secrets)));
            } else {
                lines.push(format!("* sent a body of {} bytes", body.len()));
            }
        }
        print(&lines);
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = match future.await {
                Ok(response) => response,
                Err(e) => {
                    let e: BoxError = e.into();
                    print(&[format!(
                        "* {what}: no answer: {}",
                        secrets.scrub(&terminal::escape(&crate::describe(&*e)))
                    )]);
                    return Err(e);
                }
            };
            let mut lines = Vec::new();
            if let Some(info) = response
                .extensions()
                .get::<hyper_util::client::legacy::connect::HttpInfo>()
            {
                lines.push(format!(
                    "* connection {} -> {}",
                    info.local_addr(),
                    info.remote_addr()
                ));
            }
            lines.push(format!("< {:?} {}", response.version(), response.status()));
            for (name, value) in response.headers() {
                lines.push(format!(
                    "< {name}: {}",
                    header_shown(name.as_str(), value, &secrets)
                ));
            }
            lines.push("<".to_owned());
            print(&lines);
            let shown = answers.then(|| Answer {
                what,
                secrets,
                bytes: BytesMut::new(),
            });
            Ok(response.map(|body| Shown { body, shown }))
        })
    }
}

/// A `Full` body's bytes: it is one frame, ready at once.
fn full_bytes(mut body: Full<Bytes>) -> Bytes {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut out = BytesMut::new();
    while let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut body).poll_frame(&mut cx) {
        if let Ok(data) = frame.into_data() {
            out.extend_from_slice(&data);
        }
    }
    out.freeze()
}

/// What is kept of an answer's body to print it once it has all come.
struct Answer {
    what: &'static str,
    secrets: Secrets,
    bytes: BytesMut,
}

/// A response body that passes through as it is; with `-v`, a token
/// endpoint's is printed (masked) once it has all been read.
pub(crate) struct Shown<B> {
    body: B,
    shown: Option<Answer>,
}

impl<B: Body<Data = Bytes> + Unpin> Body for Shown<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(answer), Some(data)) = (&mut this.shown, frame.data_ref()) {
                    let room = (MAX_BODY_SHOWN * 4).saturating_sub(answer.bytes.len());
                    answer
                        .bytes
                        .extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Poll::Ready(None) => {
                if let Some(answer) = this.shown.take() {
                    print(&[format!(
                        "* {} answered: {}",
                        answer.what,
                        answer_shown(&answer.bytes, &answer.secrets)
                    )]);
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_is_eight_hex_digits_of_sha256() {
        // sha256("abc") = ba7816bf…
        assert_eq!(fingerprint("abc"), "[sha256:ba7816bf]");
    }

    #[test]
    fn forms_answers_and_headers_show_no_secret() {
        let body = b"grant_type=client_credentials&client_secret=s%26cret-1&scope=a+b&client_assertion=eyJhbGciOiJFUzI1NiJ9.e30.sig";
        let mut headers = HeaderMap::new();
        let basic = base64::engine::general_purpose::STANDARD.encode("cli:pa ss:w0rd");
        headers.insert(
            http::header::AUTHORIZATION,
            format!("Basic {basic}").parse().unwrap(),
        );
        headers.insert("x-api-key", "k-123456".parse().unwrap());
        let secrets = Secrets::of(&headers, body);
        let form = form_shown(body, &secrets);
        assert!(form.contains("grant_type=client_credentials&client_secret=[redacted]&scope=a+b&client_assertion=[sha256:"), "{form}");
        assert!(!form.contains("eyJ"), "{form}");
        for (name, value) in &headers {
            let shown = header_shown(name.as_str(), value, &secrets);
            assert!(
                !shown.contains(&basic) && !shown.contains("k-123456"),
                "{shown}"
            );
        }
        let answer = br#"{"access_token":"at-1","refresh_token":"rt-1","error_description":"bad s&cret-1 and pa ss:w0rd and s%26cret-1","id":"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."}"#;
        let shown = answer_shown(answer, &secrets);
        for secret in [
            "at-1",
            "rt-1",
            "s&cret-1",
            "s%26cret-1",
            "pa ss:w0rd",
            "eyJ",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains(&fingerprint("at-1")), "{shown}");
    }

    #[test]
    fn credentials_in_a_url_are_masked() {
        let shown = uri_shown(
            "https://me:pa55w0rd@api.example/v1?access_token=at-77&page=2&api_key=k-99",
            &Secrets::default(),
        );
        assert_eq!(
            shown,
            format!(
                "https://[redacted]@api.example/v1?access_token={}&page=2&api_key={}",
                fingerprint("at-77"),
                fingerprint("k-99")
            )
        );
        assert_eq!(uri_shown("/token", &Secrets::default()), "/token");
    }
}
