//! [`TokenFile`]: the token a file holds, read again for every fetch.

use std::{
    future::{ready, Ready},
    path::PathBuf,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tower::Service;

use super::FetchToken;
use crate::{
    endpoint::{client_auth::read_credential_file, response::jwt_lifetime},
    error::Error,
    token::Token,
};

/// A grant that serves the access token a file holds, read again for every
/// fetch: a token another process keeps fresh on disk (a Vault agent sink,
/// a Kubernetes projected service-account token sent as a bearer token, a
/// sidecar that logs in for you). A rotated file is served from the next
/// fetch on, without a restart.
///
/// When the token is a JWT, its `exp` (read unverified, only to schedule
/// the next read) is its expiry, so the source reads the file again in the
/// refresh window before it; otherwise the token is given
/// [`reread_every`](Self::reread_every) as its lifetime (default
/// [`DEFAULT_REREAD`](Self::DEFAULT_REREAD)). A 401 makes the source read
/// the file again at once.
///
/// The file must be a regular file (symbolic links followed) of at most
/// 64 KiB of UTF-8; surrounding whitespace is trimmed. Anything else is a
/// [permanent](Error::is_permanent) error naming the file, never quoting
/// it; an empty file (a writer caught mid-write) is retryable. While the
/// file is unusable, a token still valid keeps being served.
///
/// ```
/// use tower_alf::{grant::TokenFile, TokenSource};
///
/// let source = TokenSource::new(TokenFile::new("/var/run/secrets/tokens/api-token"));
/// ```
#[derive(Debug, Clone)]
pub struct TokenFile {
    path: Arc<PathBuf>,
    reread: Duration,
}

impl TokenFile {
    /// How long a token that is not a JWT is served before the file is read
    /// again: 60 s.
    pub const DEFAULT_REREAD: Duration = Duration::from_secs(60);

    /// Serves the token in `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: Arc::new(path.into()),
            reread: Self::DEFAULT_REREAD,
        }
    }

    /// Sets the lifetime given to a token that is not a JWT with an `exp`:
    /// how often the file is read again.
    pub fn reread_every(mut self, period: Duration) -> Self {
        self.reread = period;
        self
    }

    fn read(&self, request: &FetchToken) -> Result<Token, Error> {
        let text = read_credential_file(&self.path, "token file")?;
        let lifetime = jwt_lifetime(&text).unwrap_or(self.reread);
        Ok(Token::bearer(text)?
            .with_issued_at(request.started_at)
            .with_expires_in(lifetime))
    }
}

impl Service<FetchToken> for TokenFile {
    type Response = Token;
    type Error = Error;
    type Future = Ready<Result<Token, Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: FetchToken) -> Self::Future {
        ready(self.read(&request))
    }
}
