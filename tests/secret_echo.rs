//! No secret the client sent comes back out, whatever the server echoes.
//!
//! A loopback token endpoint echoes each request every way a real one has
//! been seen to: the raw form inside a JSON string, in the
//! `error_description` and `error_uri`, decoded values under harmless
//! names, the form in Base64, the header block as text, the `Basic`
//! credentials without their scheme. Every grant that sends a secret is
//! driven against it, and every output channel (`Error`'s `Debug` and
//! `Display`, `body_excerpt()`, the OAuth error's fields, everything logged
//! at `TRACE` and above) is searched for every secret the server received,
//! raw, form- and percent-encoded and in Base64 (four alphabets, and the
//! `id:secret` of Basic).

use std::{
    io,
    sync::{Arc, Mutex},
};

use base64::{
    engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD},
    Engine as _,
};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tower_alf::{
    grant::{
        AuthorizationCode, ClientCredentials, JwtBearer, RefreshTokenGrant, SubjectToken,
        TokenExchange,
    },
    jwt::PrivateKey,
    ClientAuth, Error, RetryPolicy, TokenEndpoint, TokenSource,
};

const CLIENT_ID: &str = "echo-client";
const SECRET: &str = "cs+S3cret/ü 9=&Q~x";
const REFRESH: &str = "rt-Gh7/+ ü=xK2p";
const SUBJECT: &str = "st-Subject+/ 88=Lq";
const ACTOR: &str = "ac-Actor/+ 77=Mm";
const CODE: &str = "code-Zy8+/ ü=Aa";

/// Form parameters whose values the test treats as secrets it sent.
const SECRET_PARAMS: &[&str] = &[
    "client_secret",
    "client_assertion",
    "assertion",
    "refresh_token",
    "subject_token",
    "actor_token",
    "code",
    "code_verifier",
];

// ===== the echoing endpoint =====

/// How the endpoint answers: the status, and what it echoes besides the
/// `error_description` and `error_uri` of an OAuth error. One echo per
/// answer, so that each fits in the excerpt's 512 bytes.
#[derive(Clone, Copy, Debug)]
struct Mode {
    status: Status,
    echo: Echoed,
}

#[derive(Clone, Copy, Debug)]
enum Status {
    /// `400` with an OAuth error.
    OAuthError,
    /// `400` with an OAuth error whose `error_description` and `error_uri`
    /// quote the request (the refresh token, the assertion, …).
    Quoting,
    /// `200` with an echo and no token: an invalid response.
    Broken,
}

#[derive(Clone, Copy, Debug)]
enum Echoed {
    /// The raw form, inside a JSON string.
    RawBody,
    /// The decoded form values, under harmless names.
    Decoded,
    /// The values percent-encoded with `%20`.
    Percent,
    /// The form and each value in Base64.
    Base64,
    /// The request head as text, `Authorization` included.
    Headers,
    /// The `Basic` credentials without their scheme.
    AuthValue,
}

impl Echoed {
    const ALL: [Echoed; 6] = [
        Self::RawBody,
        Self::Decoded,
        Self::Percent,
        Self::Base64,
        Self::Headers,
        Self::AuthValue,
    ];

    fn member(self) -> &'static str {
        match self {
            Self::RawBody => "rawBody",
            Self::Decoded => "decoded",
            Self::Percent => "percent",
            Self::Base64 => "b64Body",
            Self::Headers => "headerDump",
            Self::AuthValue => "authValue",
        }
    }
}

/// Every mode: each echo, with either status.
fn modes() -> impl Iterator<Item = Mode> {
    Echoed::ALL.into_iter().flat_map(|echo| {
        [Status::OAuthError, Status::Broken]
            .into_iter()
            .map(move |status| Mode { status, echo })
    })
}

const OAUTH_RAW: Mode = Mode {
    status: Status::Quoting,
    echo: Echoed::RawBody,
};

struct Echo {
    url: String,
    /// Every request: its head (lower-cased names) and body.
    seen: Mutex<Vec<(String, String)>>,
}

impl Echo {
    async fn start(mode: Mode) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo = Arc::new(Self {
            url: format!("http://{}/token", listener.local_addr().unwrap()),
            seen: Mutex::new(Vec::new()),
        });
        let server = echo.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(server.clone().answer(stream, mode));
            }
        });
        echo
    }

    async fn answer(self: Arc<Self>, mut stream: TcpStream, mode: Mode) {
        let Some((head, body)) = read_request(&mut stream).await else {
            return;
        };
        self.seen.lock().unwrap().push((head.clone(), body.clone()));
        let values: Vec<String> = form_urlencoded::parse(body.as_bytes())
            .map(|(_, v)| v.into_owned())
            .collect();
        let token68 = head
            .lines()
            .find_map(|l| l.strip_prefix("authorization: basic "))
            .unwrap_or_default()
            .trim()
            .to_owned();
        let mut echo = match mode.echo {
            Echoed::RawBody => json!({ "rawBody": body }),
            Echoed::Decoded => json!({ "decoded": values }),
            Echoed::Percent => {
                json!({ "percent": values.iter().map(|v| percent(v)).collect::<Vec<_>>() })
            }
            Echoed::Base64 => json!({
                "b64Body": STANDARD.encode(&body),
                "b64UrlBody": URL_SAFE_NO_PAD.encode(&body),
                "b64Values": values.iter().map(|v| STANDARD.encode(v)).collect::<Vec<_>>(),
            }),
            Echoed::Headers => json!({ "headerDump": head }),
            Echoed::AuthValue => json!({ "authValue": token68 }),
        };
        let status = match mode.status {
            Status::OAuthError => {
                echo["error"] = "invalid_grant".into();
                echo["error_description"] = "rejected".into();
                400
            }
            Status::Quoting => {
                echo["error"] = "invalid_grant".into();
                echo["error_description"] =
                    format!("rejected {}; raw {body}", values.join(", ")).into();
                echo["error_uri"] = format!("https://idp.example/e?{body}").into();
                400
            }
            Status::Broken => 200,
        };
        let body = echo.to_string();
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
    }

    /// Every secret the endpoint received: secret form values, the Basic
    /// credentials and the secret in them.
    fn received_secrets(&self) -> Vec<Secret> {
        let mut secrets = Vec::new();
        for (head, body) in self.seen.lock().unwrap().iter() {
            for (name, value) in form_urlencoded::parse(body.as_bytes()) {
                if SECRET_PARAMS.contains(&name.as_ref()) {
                    secrets.push(Secret::Value(value.into_owned()));
                }
            }
            let basic = head
                .lines()
                .find_map(|l| l.strip_prefix("authorization: basic "));
            if let Some(token68) = basic {
                let credentials = STANDARD.decode(token68.trim()).unwrap();
                let credentials = String::from_utf8(credentials).unwrap();
                let (_, secret) = credentials.split_once(':').unwrap();
                let secret: String = form_urlencoded::parse(format!("s={secret}").as_bytes())
                    .map(|(_, v)| v.into_owned())
                    .collect();
                secrets.push(Secret::Value(secret));
                secrets.push(Secret::Basic(credentials));
            }
        }
        assert!(!secrets.is_empty(), "the endpoint saw no secret");
        secrets
    }
}

async fn read_request(stream: &mut TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| l.strip_prefix("content-length:").map(str::to_owned))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    // Header names in lower case, values as sent.
    let head = head
        .lines()
        .map(|line| match line.split_once(':') {
            Some((name, value)) => {
                let value = value.trim();
                match value.split_once(' ') {
                    Some((scheme, rest)) if name.eq_ignore_ascii_case("authorization") => {
                        format!("authorization: {} {rest}", scheme.to_ascii_lowercase())
                    }
                    _ => format!("{}: {value}", name.to_ascii_lowercase()),
                }
            }
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\r\n");
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
    Some((head, body))
}

fn percent(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

// ===== what must not appear =====

enum Secret {
    /// A secret value.
    Value(String),
    /// `id:secret` as the Basic scheme carries it, before Base64.
    Basic(String),
}

impl Secret {
    /// The byte sequences that must not appear.
    fn forms(&self) -> Vec<String> {
        let base64 = |bytes: &str| {
            vec![
                STANDARD.encode(bytes),
                STANDARD_NO_PAD.encode(bytes),
                URL_SAFE.encode(bytes),
                URL_SAFE_NO_PAD.encode(bytes),
            ]
        };
        match self {
            Self::Value(value) => {
                let mut forms = vec![
                    value.clone(),
                    form_urlencoded::byte_serialize(value.as_bytes()).collect(),
                    percent(value),
                    percent(value).to_ascii_lowercase(),
                ];
                forms.extend(base64(value));
                forms
            }
            Self::Basic(credentials) => base64(credentials),
        }
    }
}

fn configured_secrets() -> Vec<Secret> {
    let encoded = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    vec![
        Secret::Value(SECRET.to_owned()),
        Secret::Value(REFRESH.to_owned()),
        Secret::Value(SUBJECT.to_owned()),
        Secret::Value(ACTOR.to_owned()),
        Secret::Value(CODE.to_owned()),
        Secret::Basic(format!("{}:{}", encoded(CLIENT_ID), encoded(SECRET))),
        Secret::Basic(format!("{CLIENT_ID}:{SECRET}")),
    ]
}

fn assert_hides(channel: &str, grant: &str, text: &str, secrets: &[Secret]) {
    for secret in secrets {
        for form in secret.forms() {
            assert!(
                !text.contains(&form),
                "{grant}: {channel} shows {form:?}:\n{text}"
            );
        }
    }
}

// ===== the grants =====

fn endpoint(echo: &Echo, auth: ClientAuth) -> TokenEndpoint {
    TokenEndpoint::builder(&echo.url)
        .client_auth(auth)
        .retry(RetryPolicy::none())
        .build()
        .unwrap()
}

fn key() -> PrivateKey {
    PrivateKey::from_pem(include_str!("fixtures/p256_sec1.pem")).unwrap()
}

const GRANTS: &[&str] = &[
    "client_credentials basic",
    "client_credentials basic_raw",
    "client_credentials post",
    "client_credentials client_secret_jwt",
    "client_credentials private_key_jwt",
    "refresh_token",
    "token_exchange subject and actor",
    "jwt_bearer assertion",
    "authorization_code with verifier",
];

/// Runs `grant` against a fresh echoing endpoint; its error, everything
/// logged meanwhile, and the secrets the endpoint received.
async fn run(grant: &str, mode: Mode) -> (Error, String, Vec<Secret>) {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let echo = Echo::start(mode).await;
    let error = match grant {
        "client_credentials basic" => {
            let e = endpoint(&echo, ClientAuth::basic(CLIENT_ID, SECRET));
            TokenSource::new(ClientCredentials::new(e))
                .token()
                .await
                .map(drop)
        }
        "client_credentials basic_raw" => {
            let e = endpoint(&echo, ClientAuth::basic_raw(CLIENT_ID, SECRET));
            TokenSource::new(ClientCredentials::new(e))
                .token()
                .await
                .map(drop)
        }
        "client_credentials post" => {
            let e = endpoint(&echo, ClientAuth::post(CLIENT_ID, SECRET));
            TokenSource::new(ClientCredentials::new(e))
                .token()
                .await
                .map(drop)
        }
        "client_credentials client_secret_jwt" => {
            let e = endpoint(&echo, ClientAuth::client_secret_jwt(CLIENT_ID, SECRET));
            TokenSource::new(ClientCredentials::new(e))
                .token()
                .await
                .map(drop)
        }
        "client_credentials private_key_jwt" => {
            let e = endpoint(&echo, ClientAuth::private_key_jwt(CLIENT_ID, key()));
            TokenSource::new(ClientCredentials::new(e))
                .token()
                .await
                .map(drop)
        }
        "refresh_token" => {
            let e = endpoint(&echo, ClientAuth::post(CLIENT_ID, SECRET));
            TokenSource::new(RefreshTokenGrant::new(e, REFRESH))
                .token()
                .await
                .map(drop)
        }
        "token_exchange subject and actor" => {
            let e = endpoint(&echo, ClientAuth::basic(CLIENT_ID, SECRET));
            let grant = TokenExchange::new(e, SubjectToken::token(SUBJECT, SubjectToken::JWT))
                .actor(SubjectToken::token(ACTOR, SubjectToken::ACCESS_TOKEN));
            TokenSource::new(grant).token().await.map(drop)
        }
        "jwt_bearer assertion" => {
            let e = endpoint(&echo, ClientAuth::post(CLIENT_ID, SECRET));
            TokenSource::new(JwtBearer::new(e, key(), CLIENT_ID))
                .token()
                .await
                .map(drop)
        }
        "authorization_code with verifier" => {
            let e = endpoint(&echo, ClientAuth::basic(CLIENT_ID, SECRET));
            AuthorizationCode::new(e, "https://idp.example/auth", "http://127.0.0.1:1/cb")
                .authorize()
                .unwrap()
                .exchange(CODE)
                .await
                .map(drop)
        }
        other => unreachable!("no grant {other}"),
    }
    .expect_err("the echoing endpoint issues no token");
    let mut secrets = echo.received_secrets();
    secrets.extend(configured_secrets());
    (error, capture.text(), secrets)
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ===== one test per output channel =====

#[tokio::test]
async fn error_debug_shows_no_secret_sent() {
    for grant in GRANTS {
        for mode in modes() {
            let (error, _, secrets) = run(grant, mode).await;
            let debug = format!("{error:?} {error:#?}");
            let member = mode.echo.member();
            assert!(debug.contains(member), "{grant}: {member} is kept: {debug}");
            assert_hides("Debug", grant, &debug, &secrets);
        }
    }
}

#[tokio::test]
async fn error_display_shows_no_secret_sent() {
    for grant in GRANTS {
        let (error, _, secrets) = run(grant, OAUTH_RAW).await;
        let display = error.to_string();
        assert!(display.contains("invalid_grant: rejected"), "{display}");
        assert_hides("Display", grant, &display, &secrets);
    }
}

#[tokio::test]
async fn body_excerpt_shows_no_secret_sent() {
    for grant in GRANTS {
        for mode in modes() {
            let (error, _, secrets) = run(grant, mode).await;
            let excerpt = error.body_excerpt().expect("an excerpt");
            let member = mode.echo.member();
            assert!(
                excerpt.contains(member),
                "{grant}: {member} is kept: {excerpt}"
            );
            assert_hides("body_excerpt()", grant, excerpt, &secrets);
        }
    }
}

#[tokio::test]
async fn oauth_error_fields_show_no_secret_sent() {
    for grant in GRANTS {
        let (error, _, secrets) = run(grant, OAUTH_RAW).await;
        let oauth = error.oauth_error().expect("an OAuth error");
        let description = oauth.description().expect("a description");
        assert!(description.starts_with("rejected "), "{description}");
        assert_hides("error_description", grant, description, &secrets);
        assert_hides("error_uri", grant, oauth.uri().unwrap(), &secrets);
        assert_hides("OAuthError Display", grant, &oauth.to_string(), &secrets);
        assert_hides("OAuthError Debug", grant, &format!("{oauth:?}"), &secrets);
    }
}

#[tokio::test]
async fn tracing_events_show_no_secret_sent() {
    for grant in GRANTS {
        let (_, logs, secrets) = run(grant, OAUTH_RAW).await;
        if !grant.starts_with("authorization_code") {
            assert!(
                logs.contains("WARN") && logs.contains("token fetch failed"),
                "{grant}: the source logs the failure:\n{logs}"
            );
        }
        assert_hides("tracing", grant, &logs, &secrets);
    }
}

#[tokio::test]
async fn basic_credentials_are_scrubbed_in_every_base64_alphabet() {
    let (error, _, _) = run(
        "client_credentials basic",
        Mode {
            status: Status::OAuthError,
            echo: Echoed::AuthValue,
        },
    )
    .await;
    let debug = format!("{error:?}");
    let encoded = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let credentials = format!("{}:{}", encoded(CLIENT_ID), encoded(SECRET));
    for form in Secret::Basic(credentials).forms() {
        assert!(!debug.contains(&form), "{form} in {debug}");
    }
}
