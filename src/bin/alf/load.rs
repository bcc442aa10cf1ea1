//! Sending the request once, or N times with C in flight, and the stats.

use std::{
    collections::BTreeMap,
    io::{IsTerminal, Write},
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use http::{
    header::{ACCEPT, CONTENT_TYPE},
    HeaderName, HeaderValue, Method, Request, StatusCode, Uri,
};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use indicatif::ProgressBar;
use tokio::{task::JoinSet, time::Instant};
use tower::{timeout::TimeoutLayer, util::BoxCloneService, BoxError, ServiceBuilder, ServiceExt};
use tower_alf::{store::StoreStats, BearerAuthLayer, TokenSource};
use tower_http::follow_redirect::{
    policy::{Action, Attempt, FilterCredentials, Policy},
    FollowRedirectLayer,
};

use crate::{
    args::{Cli, RequestArgs},
    connections::Bounded,
    describe, input, oauth1, terminal,
    tokens::{self, Usage},
    verbose::{Shown, Verbose},
};

/// The request to send, built anew for each send.
#[derive(Debug, Clone)]
struct Template {
    method: Method,
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

impl Template {
    fn new(args: &RequestArgs, url: &str) -> Result<Self, Usage> {
        let uri: Uri = url
            .parse()
            .map_err(|_| Usage(format!("{url} is not a valid URL")))?;
        let mut body = match args.data.as_deref() {
            None => Vec::new(),
            Some(data) => match data.strip_prefix('@') {
                Some(path) => input::body_file(path)?,
                None => data.as_bytes().to_vec(),
            },
        };
        for field in &args.data_urlencode {
            if !body.is_empty() {
                body.push(b'&');
            }
            body.extend_from_slice(url_encoded(field)?.as_bytes());
        }
        if let Some(json) = &args.json {
            body = match json.strip_prefix('@') {
                Some(path) => input::body_from(path, "--json")?,
                None => json.as_bytes().to_vec(),
            };
        }
        let form = args.data.is_some() || !args.data_urlencode.is_empty();
        let method = match &args.method {
            Some(method) => Method::from_bytes(method.as_bytes())
                .map_err(|_| Usage(format!("{method} is not a valid method")))?,
            None if form || args.json.is_some() => Method::POST,
            None => Method::GET,
        };
        let mut headers = Vec::with_capacity(args.headers.len() + 1);
        for (name, value) in &args.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Usage(format!("{name:?} is not a valid header name")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| Usage(format!("the value of {name} is not a valid header value")))?;
            headers.push((name, value));
        }
        // As curl does with -d and --json.
        let content_type = match (form, args.json.is_some()) {
            (true, _) => Some("application/x-www-form-urlencoded"),
            (_, true) => Some("application/json"),
            _ => None,
        };
        if let Some(content_type) = content_type {
            if !headers.iter().any(|(name, _)| name == CONTENT_TYPE) {
                headers.push((CONTENT_TYPE, HeaderValue::from_static(content_type)));
            }
        }
        if args.json.is_some() && !headers.iter().any(|(name, _)| name == ACCEPT) {
            headers.push((ACCEPT, HeaderValue::from_static("application/json")));
        }
        Ok(Self {
            method,
            uri,
            headers,
            body: body.into(),
        })
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
        request
    }
}

/// One `--data-urlencode` field as curl encodes it: `content`,
/// `name=content`, `@file`, `name@file` (the name as given, the content
/// percent-encoded).
fn url_encoded(field: &str) -> Result<String, Usage> {
    let encode = |bytes: &[u8]| form_urlencoded::byte_serialize(bytes).collect::<String>();
    let at = field.find('@');
    let eq = field.find('=');
    Ok(match (eq, at) {
        (Some(eq), at) if at.is_none_or(|at| eq < at) => {
            format!("{}={}", &field[..eq], encode(&field.as_bytes()[eq + 1..]))
        }
        (_, Some(at)) => {
            let bytes = input::body_from(&field[at + 1..], "--data-urlencode")?;
            match &field[..at] {
                "" => encode(&bytes),
                name => format!("{name}={}", encode(&bytes)),
            }
        }
        _ => encode(field.as_bytes()),
    })
}

/// A `-w` format, checked: only the variables alf fills in.
#[derive(Debug)]
struct WriteOut(String);

impl WriteOut {
    const VARIABLES: [&'static str; 3] = ["http_code", "time_total", "size_download"];

    fn new(format: &str) -> Result<Self, Usage> {
        let mut rest = format;
        while let Some(start) = rest.find("%{") {
            let tail = &rest[start + 2..];
            let end = tail
                .find('}')
                .ok_or_else(|| Usage("-w: a %{ without its }".into()))?;
            if !Self::VARIABLES.contains(&&tail[..end]) {
                return Err(Usage(format!(
                    "-w: %{{{}}} is not a variable alf knows (it knows {})",
                    terminal::escape(&tail[..end]),
                    Self::VARIABLES.join(", ")
                )));
            }
            rest = &tail[end + 1..];
        }
        Ok(Self(format.to_owned()))
    }

    fn render(&self, status: StatusCode, time: Duration, size: usize) -> String {
        self.0
            .replace("%{http_code}", &status.as_u16().to_string())
            .replace("%{time_total}", &format!("{:.6}", time.as_secs_f64()))
            .replace("%{size_download}", &size.to_string())
            .replace("\\n", "\n")
            .replace("\\t", "\t")
    }
}

/// One send: how long it took and what came back.
struct Sample {
    latency: Duration,
    outcome: Result<StatusCode, Failure>,
}

/// A send that got no HTTP answer: why, and whether the connection
/// failed (could not be made, or broke before the answer was read).
struct Failure {
    reason: String,
    connection: bool,
}

impl Failure {
    fn new(error: &(dyn std::error::Error + 'static)) -> Self {
        Self {
            reason: describe(error),
            connection: is_connection_error(error),
        }
    }
}

/// Whether `error` (or one of its causes) is a connection's: hyper-util's
/// connect error, hyper's own (a connection that closed or broke
/// mid-exchange), or an I/O error.
fn is_connection_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some_and(|e| e.is_connect())
            || e.is::<hyper::Error>()
            || e.is::<std::io::Error>()
        {
            return true;
        }
        // A token fetch's failure is the token's, not the request's.
        if e.is::<tower_alf::Error>() {
            return false;
        }
        current = e.source();
    }
    false
}

/// -L: follow at most `left` redirects; tower-http's `FilterCredentials`
/// drops Authorization, Cookie and Proxy-Authorization from the first
/// cross-origin hop on (the token itself goes to the URL's origin only,
/// `BearerAuthLayer::only_origins`). `exceeded` tells that the limit
/// stopped it.
#[derive(Clone)]
struct Follow {
    left: usize,
    credentials: FilterCredentials,
    exceeded: Arc<AtomicBool>,
}

impl<E> Policy<Full<Bytes>, E> for Follow {
    fn redirect(&mut self, attempt: &Attempt<'_>) -> Result<Action, E> {
        if self.left == 0 {
            self.exceeded.store(true, Ordering::Relaxed);
            return Ok(Action::Stop);
        }
        self.left -= 1;
        Policy::<Full<Bytes>, E>::redirect(&mut self.credentials, attempt)
    }

    fn on_request(&mut self, request: &mut Request<Full<Bytes>>) {
        Policy::<Full<Bytes>, E>::on_request(&mut self.credentials, request);
        // DPoP proofs are bound to a URI: never one made for another.
        request.headers_mut().remove("dpop");
    }

    fn clone_body(&self, body: &Full<Bytes>) -> Option<Full<Bytes>> {
        Some(body.clone())
    }
}

/// The exit code when -L stopped at --max-redirs, curl's.
const EXIT_TOO_MANY_REDIRECTS: u8 = 47;

pub(crate) async fn run(cli: &Cli) -> Result<ExitCode, BoxError> {
    let url = cli
        .url
        .as_deref()
        .ok_or_else(|| Usage("a URL is required (or a subcommand: alf token)".into()))?;
    let template = Arc::new(Template::new(&cli.request, url)?);
    let single = [
        (cli.request.fail, "-f"),
        (cli.request.output.is_some(), "-o"),
        (cli.request.write_out.is_some(), "-w"),
        (cli.verbose, "-v"),
    ];
    if cli.request.repeat > 1 || cli.request.stats {
        if let Some((_, flag)) = single.iter().find(|(given, _)| *given) {
            return Err(Usage(format!(
                "{flag} is for a single request, not with --repeat or --stats"
            ))
            .into());
        }
    }
    let write_out = cli
        .request
        .write_out
        .as_deref()
        .map(WriteOut::new)
        .transpose()?;

    // One connection per request in flight: without a bound, hyper-util's
    // pool opens a new connection whenever a request finds none idle,
    // including while one is being handed back (at --concurrency 512, some
    // 950 connections for 512 in flight).
    let args = &cli.request;
    let connector = tokens::https_connector(&cli.oauth)?;
    let in_flight = args.concurrency.min(args.repeat) as usize;
    let http = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(in_flight)
        .build::<_, Full<Bytes>>(Bounded::new(connector, in_flight));
    let http = Verbose::new(http, "request", false);
    let timeout = cli.oauth.timeout.map(TimeoutLayer::new);
    let exceeded = Arc::new(AtomicBool::new(false));
    let follow = args.location.then(|| {
        FollowRedirectLayer::with_policy(Follow {
            left: args.max_redirs,
            credentials: FilterCredentials::new(),
            exceeded: exceeded.clone(),
        })
    });
    // OAuth 1.0a signs each request; OAuth 2 takes a token from a source,
    // whose counters feed the stats.
    let (client, source) = if cli.oauth1.oauth1_consumer_key.is_some() {
        if args.location {
            let message = "-L is not available with OAuth 1.0a signing: each hop would be \
                           signed, another origin's too";
            return Err(Usage(message.into()).into());
        }
        if cli.oauth.token_url.is_some() {
            let message = "--oauth1-consumer-key and --token-url exclude each other: sign with \
                           OAuth 1.0a or fetch an OAuth 2 token";
            return Err(Usage(message.into()).into());
        }
        let signed = ServiceBuilder::new()
            .option_layer(timeout)
            .option_layer(follow)
            .layer(oauth1::layer(&cli.oauth1)?)
            .service(http);
        (BoxCloneService::new(signed), None)
    } else {
        let (source, store) = tokens::source_and_store(&cli.oauth).await?;
        // The token goes to the URL's origin only: with -L, a redirect
        // elsewhere carries none.
        let origin = template.uri.clone();
        let authorized = ServiceBuilder::new()
            .option_layer(timeout)
            .option_layer(follow)
            .layer(BearerAuthLayer::new(source.clone()).only_origins([origin]))
            .service(http);
        (BoxCloneService::new(authorized), Some((source, store)))
    };

    if args.repeat == 1 && !args.stats {
        let code = once(client, &template, args, write_out).await?;
        if exceeded.load(Ordering::Relaxed) {
            eprintln!(
                "alf: gave up after {} redirects (--max-redirs); the last answer is above",
                args.max_redirs
            );
            return Ok(ExitCode::from(EXIT_TOO_MANY_REDIRECTS));
        }
        return Ok(code);
    }

    let progress = if args.repeat >= 100 && std::io::stderr().is_terminal() && !cli.quiet {
        ProgressBar::new(args.repeat)
    } else {
        ProgressBar::hidden()
    };
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..args.concurrency.min(args.repeat) {
        let (client, template, next, progress) = (
            client.clone(),
            template.clone(),
            next.clone(),
            progress.clone(),
        );
        let repeat = args.repeat;
        workers.spawn(async move {
            let mut samples = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < repeat {
                let started = Instant::now();
                let outcome = match client.clone().oneshot(template.request()).await {
                    Ok(response) => {
                        let status = response.status();
                        match response.into_body().collect().await {
                            Ok(_) => Ok(status),
                            Err(e) => Err(Failure::new(&e)),
                        }
                    }
                    Err(e) => Err(Failure::new(&*e)),
                };
                samples.push(Sample {
                    latency: started.elapsed(),
                    outcome,
                });
                progress.inc(1);
            }
            samples
        });
    }
    let mut samples = Vec::with_capacity(args.repeat as usize);
    while let Some(batch) = workers.join_next().await {
        samples.extend(batch?);
    }
    progress.finish_and_clear();

    if args.stats {
        println!("{}", stats(&samples, source.as_ref()));
    }
    Ok(verdict(&samples))
}

/// One request; the body goes to stdout (or `-o FILE`), as curl does.
async fn once<S>(
    client: S,
    template: &Template,
    args: &RequestArgs,
    write_out: Option<WriteOut>,
) -> Result<ExitCode, BoxError>
where
    S: tower::Service<
        Request<Full<Bytes>>,
        Response = http::Response<Shown<hyper::body::Incoming>>,
        Error = BoxError,
    >,
{
    let started = Instant::now();
    let response = client.oneshot(template.request()).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    let elapsed = started.elapsed();
    let failed = args.fail && parts.status.as_u16() >= 400;
    let mut out = std::io::stdout().lock();
    if args.include {
        writeln!(out, "{:?} {}", parts.version, parts.status)?;
        for (name, value) in &parts.headers {
            out.write_all(name.as_str().as_bytes())?;
            out.write_all(b": ")?;
            out.write_all(terminal::escape_bytes(value.as_bytes()).as_bytes())?;
            out.write_all(b"\n")?;
        }
        writeln!(out)?;
    }
    if !failed {
        match &args.output {
            Some(path) => std::fs::write(path, &body)
                .map_err(|e| Usage(format!("-o {}: cannot write it: {e}", path.display())))?,
            None => out.write_all(&body)?,
        }
    }
    if let Some(write_out) = &write_out {
        out.write_all(
            write_out
                .render(parts.status, elapsed, body.len())
                .as_bytes(),
        )?;
    }
    out.flush()?;
    if failed {
        eprintln!("alf: the server answered {} (-f)", parts.status);
        return Ok(ExitCode::from(EXIT_HTTP_FAIL));
    }
    Ok(verdict(&[Sample {
        latency: Duration::ZERO,
        outcome: Ok(parts.status),
    }]))
}

/// The exit code of `-f` for a status of 400 or more, curl's.
const EXIT_HTTP_FAIL: u8 = 22;

/// 0 when every response came back and none was 401 or 403; else 1, with
/// the reason on stderr.
fn verdict(samples: &[Sample]) -> ExitCode {
    let errors: Vec<&String> = samples
        .iter()
        .filter_map(|s| s.outcome.as_ref().err())
        .map(|failure| &failure.reason)
        .collect();
    let denied = samples
        .iter()
        .filter_map(|s| s.outcome.as_ref().ok())
        .filter(|status| matches!(*status, &StatusCode::UNAUTHORIZED | &StatusCode::FORBIDDEN))
        .count();
    if let Some(first) = errors.first() {
        let first = terminal::escape(first);
        if samples.len() == 1 {
            eprintln!("alf: {first}");
        } else {
            eprintln!(
                "alf: {} of {} requests failed; the first: {first}",
                errors.len(),
                samples.len()
            );
        }
        return ExitCode::FAILURE;
    }
    if denied > 0 {
        let status = samples.iter().find_map(|s| match s.outcome {
            Ok(status) if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN => {
                Some(status)
            }
            _ => None,
        });
        eprintln!(
            // NOTE: not "after the token was refreshed": a 401 is replayed
            // only when the body can be and the throttle allows; --stats
            // counts the replays and throttled rejections.
            "alf: {denied} of {} responses were denied ({})",
            samples.len(),
            status.unwrap_or(StatusCode::UNAUTHORIZED)
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The `--stats` line: counts from the crate's own counters, latency
/// percentiles (nearest rank) over every send.
fn stats(
    samples: &[Sample],
    source: Option<&(TokenSource, Option<StoreStats>)>,
) -> serde_json::Value {
    let mut status = BTreeMap::<String, u64>::new();
    for sample in samples {
        if let Ok(code) = sample.outcome {
            *status.entry(code.as_u16().to_string()).or_default() += 1;
        }
    }
    let mut latencies: Vec<f64> = samples
        .iter()
        .map(|s| s.latency.as_secs_f64() * 1e3)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * latencies.len() as f64).ceil() as usize;
        round(latencies[rank.clamp(1, latencies.len()) - 1])
    };
    let counters = source.map(|(source, _)| source.stats()).unwrap_or_default();

    let mut line = serde_json::json!({
        "requests": samples.len(),
        "status": status,
        "errors": samples.iter().filter(|s| s.outcome.is_err()).count(),
        "connection_errors": samples
            .iter()
            .filter(|s| s.outcome.as_ref().is_err_and(|f| f.connection))
            .count(),
        "token_fetches": counters.fetches,
        "token_refreshes": counters.refreshes,
        "token_failures": counters.failures,
        "replays": counters.replays,
        "throttled": counters.throttled,
        "store": null,
        "p50_ms": percentile(50.0),
        "p90_ms": percentile(90.0),
        "p99_ms": percentile(99.0),
        "max_ms": latencies.last().copied().map(round).unwrap_or(0.0),
    });
    // The store's counters: with --redis, or the token cache between runs.
    if let Some(store) = source.and_then(|(_, store)| store.as_ref()) {
        let store = store.snapshot();
        line["store"] = serde_json::json!({
            "hits": store.hits,
            "fetches": store.fetches,
            "lock_waits": store.lock_waits,
            "errors": store.store_errors,
        });
    }
    line
}

fn round(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}
