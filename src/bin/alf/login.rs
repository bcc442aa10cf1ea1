//! `alf login`: the authorization-code flow with PKCE and a loopback
//! redirect (RFC 8252 §7.3).
//!
//! Any local process can connect to the loopback port, so the redirect is
//! served by a real HTTP server (hyper), one task per connection, each with
//! a deadline: an idle or slow connection stalls nobody, a reset ends only
//! its own connection, and a callback whose `state` is not this login's is
//! answered with an error page while alf keeps waiting for the browser.
//! The browser hears the outcome after the code exchange: signed in,
//! denied, or failed.

use std::{
    convert::Infallible,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::oneshot};
use tower::BoxError;
use tower_alf::{grant::AuthorizationCode, Token};

use crate::{
    args::OAuthArgs,
    print_metadata, terminal,
    tokens::{self, usage, Usage},
};

/// How long to wait for the browser to come back.
const WAIT: Duration = Duration::from_secs(300);

/// How long a connection to the redirect may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one connection may live, the code exchange included.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(120);

/// The parameters of a callback that may appear once only (RFC 6749 §3.1).
const SINGLE: [&str; 5] = ["code", "state", "error", "error_description", "error_uri"];

pub(crate) async fn run(
    args: &OAuthArgs,
    authorization_url: Option<&str>,
    port: u16,
    save: Option<&Path>,
    print_token: bool,
) -> Result<ExitCode, BoxError> {
    // Before anything is spent: a --save that cannot work fails now.
    let save = save.map(SaveTarget::prepare).transpose()?;
    let (endpoint, metadata) = tokens::user_flow_endpoint(args).await?;
    let authorization_url = match (authorization_url, &metadata) {
        (Some(url), _) => url.to_owned(),
        (None, Some(metadata)) => metadata
            .get("authorization_endpoint")
            .and_then(|v| v.as_str())
            .ok_or_else(|| usage("the server's metadata has no authorization_endpoint"))?
            .to_owned(),
        (None, None) => return Err(usage("--authorization-url (or --issuer) is required").into()),
    };

    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let redirect_uri = format!(
        "http://127.0.0.1:{}/callback",
        listener.local_addr()?.port()
    );
    let mut flow = AuthorizationCode::new(endpoint, authorization_url, &redirect_uri);
    for scope in &args.scopes {
        flow = flow.scope(scope);
    }
    for (name, value) in &args.params {
        flow = flow.param(name, value);
    }
    let pending = flow.authorize()?;

    let (found, callback) = oneshot::channel();
    let redirect = Arc::new(Redirect {
        state: pending.state().to_owned(),
        found: Mutex::new(Some(found)),
        told_forged: AtomicBool::new(false),
    });
    let server = tokio::spawn(serve(listener, redirect));
    // The URL may come from the server's metadata.
    eprintln!(
        "Open this URL in your browser to sign in:\n{}",
        terminal::escape(pending.url())
    );
    let waited = tokio::time::timeout(WAIT, callback).await;
    let callback = match waited {
        Ok(Ok(callback)) => callback,
        Ok(Err(_)) => {
            server.abort();
            return Err(usage("the loopback redirect stopped").into());
        }
        Err(_) => {
            server.abort();
            return Err(usage("no sign-in within 5 minutes").into());
        }
    };
    // One callback is all alf takes; later connections are refused.
    server.abort();

    let token = match repeated(&callback.query) {
        Some(name) => Err(format!(
            "the callback repeats the parameter {name}, which RFC 6749 §3.1 forbids: refused"
        )
        .into()),
        None => pending
            .finish(&callback.query)
            .await
            .map_err(BoxError::from),
    };
    let token = match token {
        Ok(token) => token,
        Err(e) => {
            let denied = e
                .downcast_ref::<tower_alf::Error>()
                .is_some_and(|e| e.is_authorization() && e.oauth_error().is_some());
            callback
                .tell(if denied { Page::Denied } else { Page::Failed })
                .await;
            return Err(e);
        }
    };
    let saved = save.map(|target| target.save(&token));
    let page = match &saved {
        Some(Err(_)) => Page::NotSaved,
        _ => Page::SignedIn,
    };
    callback.tell(page).await;
    // The token's metadata is printed whether or not saving worked.
    print_metadata(&token, print_token);
    if let Some(saved) = saved {
        let path = saved?;
        eprintln!(
            "saved the token set to {}",
            terminal::escape(&path.display().to_string())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What the connections share: this login's `state`, and the way to hand
/// its callback to the login, taken by the first callback that carries it.
struct Redirect {
    state: String,
    found: Mutex<Option<oneshot::Sender<Callback>>>,
    /// Whether the terminal was told about a forged callback (once is
    /// enough: another process must not flood it).
    told_forged: AtomicBool,
}

/// The browser's callback, waiting for its answer.
struct Callback {
    query: String,
    /// The page to answer with.
    reply: oneshot::Sender<Page>,
    /// Ends when the connection is done (the page was sent, or it failed).
    done: oneshot::Receiver<()>,
}

impl Callback {
    /// Answers the browser with `page` and waits (a little) until it was
    /// sent, so that the process does not exit under it.
    async fn tell(self, page: Page) {
        if self.reply.send(page).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), self.done).await;
        }
    }
}

/// Accepts connections until aborted, each served by a task of its own.
async fn serve(listener: TcpListener, redirect: Arc<Redirect>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // A connection reset before it was accepted, or no descriptor
            // left: neither ends the login.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let redirect = redirect.clone();
        tokio::spawn(async move {
            let (done, done_rx) = oneshot::channel::<()>();
            let done_rx = Arc::new(Mutex::new(Some(done_rx)));
            let service = service_fn(move |request| {
                let (redirect, done_rx) = (redirect.clone(), done_rx.clone());
                async move { Ok::<_, Infallible>(handle(request, &redirect, &done_rx).await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
            drop(done);
        });
    }
}

/// One request to the redirect: `GET /callback` with this login's `state`
/// is handed to the login and answered once the exchange is over; anything
/// else gets an error page, and the login keeps waiting.
async fn handle(
    request: Request<Incoming>,
    redirect: &Redirect,
    done: &Mutex<Option<oneshot::Receiver<()>>>,
) -> Response<Full<Bytes>> {
    if request.uri().path() != "/callback" {
        return Page::NotFound.response();
    }
    if request.method() != Method::GET {
        return Page::MethodNotAllowed.response();
    }
    let query = request.uri().query().unwrap_or_default();
    let states: Vec<_> = form_urlencoded::parse(query.as_bytes())
        .filter(|(name, _)| name == "state")
        .map(|(_, value)| value)
        .collect();
    let ours = matches!(&states[..], [state] if same(state.as_bytes(), redirect.state.as_bytes()));
    if !ours {
        if !redirect.told_forged.swap(true, Ordering::Relaxed) {
            eprintln!(
                "alf: ignored a callback whose state is not this login's (forged or stale); \
                 still waiting"
            );
        }
        return Page::NotThisLogin.response();
    }
    let found = redirect
        .found
        .lock()
        .ok()
        .and_then(|mut found| found.take());
    let done = done.lock().ok().and_then(|mut done| done.take());
    let (Some(found), Some(done)) = (found, done) else {
        return Page::Used.response();
    };
    let (reply, page) = oneshot::channel();
    let callback = Callback {
        query: query.to_owned(),
        reply,
        done,
    };
    if found.send(callback).is_err() {
        return Page::Failed.response();
    }
    page.await.unwrap_or(Page::Failed).response()
}

/// The first parameter of [`SINGLE`] that `query` has more than once.
fn repeated(query: &str) -> Option<&'static str> {
    let query = query.split('#').next().unwrap_or_default();
    SINGLE.into_iter().find(|single| {
        form_urlencoded::parse(query.as_bytes())
            .filter(|(name, _)| name == single)
            .count()
            > 1
    })
}

/// Compares two byte strings in time that depends on their lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The pages the browser may see.
#[derive(Debug, Clone, Copy)]
enum Page {
    SignedIn,
    NotSaved,
    Denied,
    Failed,
    NotThisLogin,
    Used,
    NotFound,
    MethodNotAllowed,
}

impl Page {
    fn response(self) -> Response<Full<Bytes>> {
        let (status, text) = match self {
            Page::SignedIn => (
                StatusCode::OK,
                "Signed in: you can close this window and return to the terminal.",
            ),
            Page::NotSaved => (
                StatusCode::OK,
                "Signed in, but alf could not save the token: see the terminal.",
            ),
            Page::Denied => (
                StatusCode::FORBIDDEN,
                "Sign-in denied: the authorization server refused. See the terminal.",
            ),
            Page::Failed => (
                StatusCode::BAD_GATEWAY,
                "Sign-in failed: alf could not get a token. See the terminal.",
            ),
            Page::NotThisLogin => (
                StatusCode::BAD_REQUEST,
                "This callback is not for the sign-in alf is waiting for (its state does \
                 not match). alf is still waiting.",
            ),
            Page::Used => (StatusCode::CONFLICT, "This sign-in was already completed."),
            Page::NotFound => (StatusCode::NOT_FOUND, "Not found."),
            Page::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "Use GET."),
        };
        let body = format!("<!doctype html><title>alf</title><p>{text}</p>\n");
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/html; charset=utf-8"),
        );
        headers.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
        if matches!(self, Page::MethodNotAllowed) {
            headers.insert(header::ALLOW, header::HeaderValue::from_static("GET"));
        }
        response
    }
}

/// Where `--save` (and `--refresh-token-file`) writes: checked before the
/// URL is printed, written as a temporary file in the same directory
/// (created new, mode 0600, by `tempfile`), synced, then renamed over FILE.
/// A FILE that is a symbolic link, not a regular file, another user's, or
/// open to group or others is refused: alf replaces only files that are
/// its user's own and private.
pub(crate) struct SaveTarget {
    path: PathBuf,
    option: &'static str,
    temp: tempfile::NamedTempFile,
}

impl SaveTarget {
    /// For `--save FILE`.
    pub(crate) fn prepare(path: &Path) -> Result<Self, Usage> {
        Self::prepare_for(path, "--save")
    }

    /// For FILE of `option`, which names it in errors.
    pub(crate) fn prepare_for(path: &Path, option: &'static str) -> Result<Self, Usage> {
        let shown = path.display();
        if path.file_name().is_none() {
            return Err(usage(format!("{option} {shown}: not a file name")));
        }
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let temp = tempfile::Builder::new()
            .prefix(".alf-token-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|e| {
                usage(format!(
                    "{option} {shown}: cannot write in {}: {e}",
                    dir.display()
                ))
            })?;
        let target = Self {
            path: path.to_owned(),
            option,
            temp,
        };
        target.check()?;
        Ok(target)
    }

    /// FILE, if it exists, is a regular file of this process's user (the
    /// owner of the temporary file just created), closed to group and
    /// others.
    fn check(&self) -> Result<(), Usage> {
        let (option, shown) = (self.option, self.path.display());
        let metadata = match std::fs::symlink_metadata(&self.path) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(usage(format!("{option} {shown}: {e}"))),
        };
        if metadata.file_type().is_symlink() {
            return Err(usage(format!(
                "{option} {shown}: a symbolic link; alf does not write through links, name \
                 the file itself"
            )));
        }
        if !metadata.is_file() {
            return Err(usage(format!("{option} {shown}: not a regular file")));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let mine = self
                .temp
                .as_file()
                .metadata()
                .map_err(|e| usage(format!("{option} {shown}: {e}")))?
                .uid();
            if metadata.uid() != mine {
                return Err(usage(format!(
                    "{option} {shown}: owned by another user (uid {}); alf replaces only its \
                     own user's files",
                    metadata.uid()
                )));
            }
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(usage(format!(
                    "{option} {shown}: readable or writable by group or others (mode \
                     {mode:03o}); a token set must be its owner's only: chmod 600 it, or \
                     remove it"
                )));
            }
        }
        Ok(())
    }

    /// Writes the token set as JSON and renames it over FILE; FILE's path.
    pub(crate) fn save(self, token: &Token) -> Result<PathBuf, Usage> {
        let json = token_set_json(token);
        self.write(format!("{json}\n").as_bytes())
    }

    /// Writes `contents` and renames the file over FILE; FILE's path.
    pub(crate) fn write(mut self, contents: &[u8]) -> Result<PathBuf, Usage> {
        use std::io::Write;
        let failed = |e: std::io::Error| {
            usage(format!(
                "{} {}: cannot save the token set: {e}",
                self.option,
                self.path.display()
            ))
        };
        let file = self.temp.as_file_mut();
        file.write_all(contents).map_err(failed)?;
        file.sync_all().map_err(failed)?;
        self.check()?;
        let Self { path, option, temp } = self;
        temp.persist(&path).map_err(|e| {
            usage(format!(
                "{option} {}: cannot save the token set: {}",
                path.display(),
                e.error
            ))
        })?;
        // The rename itself survives a crash once the directory is synced.
        #[cfg(unix)]
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            let _ = std::fs::File::open(dir).and_then(|dir| dir.sync_all());
        }
        Ok(path)
    }
}

/// A token set as `--save` writes it: the access token, its type, the
/// refresh token, the scope and the expiry as Unix seconds.
pub(crate) fn token_set_json(token: &Token) -> serde_json::Value {
    let expires_at = token
        .expires_at_system_time()
        .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|at| at.as_secs());
    serde_json::json!({
        "access_token": token.access_token().secret(),
        "token_type": token.token_type().scheme(),
        "refresh_token": token.refresh_token().map(|t| t.secret()),
        "scope": token.scope(),
        "expires_at": expires_at,
    })
}
