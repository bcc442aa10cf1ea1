//! [`TokenCommand`]: a token from a program's output (an exec credential
//! plugin, as kubectl's `exec` and AWS `credential_process` run).

use std::{
    ffi::OsString,
    fmt,
    future::Future,
    path::PathBuf,
    pin::Pin,
    process::Stdio,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::{Map, Value};
use tokio::{io::AsyncReadExt as _, process::Command};
use tower::Service;

use super::FetchToken;
use crate::{
    endpoint::response::{seconds, BadSeconds},
    error::Error,
    token::Token,
};

/// The most of a command's output read: 64 KiB.
const MAX_OUTPUT: u64 = 64 * 1024;

/// A grant that runs a program for every fetch and serves the token it
/// prints: an exec credential plugin, as kubectl's `exec` and AWS
/// `credential_process` run (a cloud CLI, a Vault client, an in-house
/// login tool).
///
/// The program is run directly, never through a shell: `program` and its
/// arguments are passed as they are, so nothing in them is interpreted.
/// Its standard input is empty, its standard error discarded (so nothing it
/// says reaches a log or an error), and its standard output must be one
/// JSON object, of at most 64 KiB:
///
/// ```json
/// {"access_token": "…", "expires_in": 3600}
/// {"access_token": "…", "expiration": "2026-12-01T18:00:00Z"}
/// ```
///
/// `expires_in` is seconds from when the program was started;
/// `expiration` an RFC 3339 time. With neither, the token lives until a
/// server rejects it. `scope` and `refresh_token` are read if present, any
/// other member is kept in [`Token::extra`].
///
/// Failures are typed, and never quote the output in the clear: a program
/// that cannot be started is [permanent](Error::is_permanent); one that
/// exits with a failure status, or runs past the
/// [timeout](Self::timeout) (it is then killed), is
/// [retryable](Error::is_retryable); output that is not such a JSON
/// object is an [invalid response](Error::is_invalid_response) with a
/// bounded, redacted excerpt. While the program fails, a token still valid
/// keeps being served.
///
/// ```
/// use std::time::Duration;
/// use tower_alf::{grant::TokenCommand, TokenSource};
///
/// let source = TokenSource::new(
///     TokenCommand::new("vault")
///         .args(["read", "-format=json", "-field=data", "oauth/token"])
///         .timeout(Duration::from_secs(10)),
/// );
/// ```
#[derive(Clone)]
pub struct TokenCommand {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    timeout: Duration,
}

impl fmt::Debug for TokenCommand {
    // The arguments and environment may hold secrets: only the program.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCommand")
            .field("program", &self.inner.program)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

impl TokenCommand {
    /// How long the program may run: 30 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

    /// Runs `program` (looked up in `PATH` when it has no `/`), with no
    /// arguments.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            inner: Arc::new(Inner {
                program: program.into(),
                args: Vec::new(),
                envs: Vec::new(),
                timeout: Self::DEFAULT_TIMEOUT,
            }),
        }
    }

    /// Adds one argument, passed as it is.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        Arc::make_mut(&mut self.inner).args.push(arg.into());
        self
    }

    /// Adds arguments, passed as they are.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Arc::make_mut(&mut self.inner)
            .args
            .extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the program, beside the ones it
    /// inherits.
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        Arc::make_mut(&mut self.inner)
            .envs
            .push((name.into(), value.into()));
        self
    }

    /// Sets how long the program may run before it is killed and the fetch
    /// fails (retryable). Defaults to [`Self::DEFAULT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        Arc::make_mut(&mut self.inner).timeout = timeout;
        self
    }
}

impl Inner {
    fn shown(&self) -> String {
        format!("the token command {}", self.program.display())
    }

    async fn run(&self, request: FetchToken) -> Result<Token, Error> {
        let shown = self.shown();
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::permanent(format!("cannot run {shown}: {e}")))?;
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let run = async {
            let mut output = Vec::new();
            (&mut stdout)
                .take(MAX_OUTPUT + 1)
                .read_to_end(&mut output)
                .await
                .map_err(|e| Error::retryable(format!("cannot read the output of {shown}: {e}")))?;
            if output.len() as u64 > MAX_OUTPUT {
                return Err(Error::permanent(format!(
                    "{shown} wrote more than {} KiB",
                    MAX_OUTPUT / 1024
                )));
            }
            let status = child
                .wait()
                .await
                .map_err(|e| Error::retryable(format!("cannot wait for {shown}: {e}")))?;
            Ok((status, output))
        };
        let (status, output) = match tokio::time::timeout(self.timeout, run).await {
            Ok(outcome) => outcome?,
            // The child is killed when dropped (`kill_on_drop`).
            Err(_) => {
                return Err(Error::retryable(format!(
                    "{shown} did not finish within {:?}",
                    self.timeout
                )))
            }
        };
        if !status.success() {
            return Err(Error::retryable(format!("{shown} failed ({status})")));
        }
        parse_output(&output, request, &shown)
    }
}

/// Reads `{access_token, expires_in | expiration}` from a command's output.
fn parse_output(output: &[u8], request: FetchToken, shown: &str) -> Result<Token, Error> {
    let invalid = |reason: String| Error::invalid_response(None, reason, output);
    let mut map: Map<String, Value> = serde_json::from_slice(output)
        .map_err(|_| invalid(format!("the output of {shown} is not a JSON object")))?;
    let access_token = match map.remove("access_token") {
        Some(Value::String(token)) if !token.is_empty() => token,
        _ => {
            return Err(invalid(format!(
                "the output of {shown} has no access_token string"
            )))
        }
    };
    let mut token = Token::bearer(access_token)
        .map_err(|_| {
            invalid(format!(
                "the access_token of {shown} cannot be sent in a header"
            ))
        })?
        .with_issued_at(request.started_at);
    match (map.remove("expires_in"), map.remove("expiration")) {
        (Some(expires_in), _) if !expires_in.is_null() => match seconds(&expires_in) {
            Ok(lifetime) => token = token.with_expires_in(lifetime),
            Err(BadSeconds::NotANumber | BadSeconds::Negative) => {
                return Err(invalid(format!(
                    "the expires_in of {shown} is not a number of seconds"
                )))
            }
        },
        (_, Some(Value::String(at))) => match rfc3339(&at) {
            Some(at) => token = token.with_expires_at(at),
            None => {
                return Err(invalid(format!(
                    "the expiration of {shown} is not an RFC 3339 time"
                )))
            }
        },
        (_, None | Some(Value::Null)) => {}
        (_, Some(_)) => {
            return Err(invalid(format!(
                "the expiration of {shown} is not an RFC 3339 time"
            )))
        }
    }
    if let Some(Value::String(scope)) = map.remove("scope") {
        token = token.with_scope(scope);
    }
    if let Some(Value::String(refresh)) = map.remove("refresh_token") {
        token = token.with_refresh_token(refresh);
    }
    map.remove("token_type");
    Ok(token.with_extra(map))
}

/// An RFC 3339 date-time (`2026-12-01T18:00:00Z`, `…T18:00:00.5+01:00`;
/// `t`, `z` and a space for `T` accepted), as a wall-clock time.
fn rfc3339(text: &str) -> Option<SystemTime> {
    let b = text.trim().as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        digits
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| std::str::from_utf8(digits).ok()?.parse().ok())
            .flatten()
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &b[19..];
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let digits = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        for (i, digit) in fraction[..digits].iter().take(9).enumerate() {
            nanos += u32::from(digit - b'0') * 10u32.pow(8 - i as u32);
        }
        rest = &fraction[digits..];
    }
    let offset = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let part = |a: u8, b: u8| -> Option<i64> {
                (a.is_ascii_digit() && b.is_ascii_digit())
                    .then(|| i64::from(a - b'0') * 10 + i64::from(b - b'0'))
            };
            let minutes = part(*h1, *h2)? * 60 + part(*m1, *m2)?;
            if *sign == b'+' {
                minutes * 60
            } else {
                -minutes * 60
            }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset;
    let secs = u64::try_from(secs).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

impl Service<FetchToken> for TokenCommand {
    type Response = Token;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Token, Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: FetchToken) -> Self::Future {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.run(request).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(text: &str) -> Option<u64> {
        rfc3339(text).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs())
    }

    #[test]
    fn rfc3339_times_are_read_with_their_offsets() {
        assert_eq!(unix("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix("2026-12-01T18:00:00Z"), Some(1_796_148_000));
        assert_eq!(unix("2026-12-01T19:00:00+01:00"), Some(1_796_148_000));
        assert_eq!(unix("2026-12-01t17:30:00.999-00:30"), Some(1_796_148_000));
        assert_eq!(unix("2000-02-29 00:00:00z"), Some(951_782_400));
    }

    #[test]
    fn malformed_rfc3339_times_are_refused() {
        for text in [
            "",
            "2026-12-01",
            "2026-12-01T18:00:00",
            "2026-13-01T18:00:00Z",
            "2026-12-01T18:00:00.Z",
            "2026-12-01T18:00:00+0100",
            "1969-12-31T23:59:59Z",
            "２０２６-12-01T18:00:00Z",
        ] {
            assert_eq!(rfc3339(text), None, "{text}");
        }
    }
}
