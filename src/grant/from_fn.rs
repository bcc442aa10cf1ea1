//! [`from_fn`]: a grant from an async closure.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tower::Service;

use super::FetchToken;
use crate::{error::Error, token::Token};

/// A grant from an async closure: the closure is called with each
/// [`FetchToken`] and answers the token, or the [`Error`] why not.
///
/// The source keeps everything else: the cache, single flight (one call at
/// a time, however many callers wait), background refresh before expiry,
/// the 401 replay, the memory of a [permanent](Error::is_permanent) failure
/// and the backoff of a failed background refresh. Fail with the public
/// constructors ([`Error::retryable`], [`Error::permanent`],
/// [`Error::from_response`], [`Error::invalid_response`],
/// [`Error::transport`]) to get the same predicates and redaction as the
/// built-in grants.
///
/// # Bounds, and why
///
/// - `F: Fn(FetchToken) -> Fut`: called once per fetch; `Fn`, not `FnMut`,
///   because the grant is shared (it is kept in an `Arc`), so state the
///   closure keeps goes in an `Arc` or an atomic.
/// - `F: Send + Sync + 'static`: a [`TokenSource`](crate::TokenSource) is
///   shared across threads and fetches in a spawned task.
/// - `Fut: Future<Output = Result<Token, Error>> + Send + 'static`: the
///   fetch runs in a spawned task that outlives the caller, so the future
///   owns what it uses (clone it in before `async move`).
///
/// ```
/// use std::time::Duration;
/// use tower_alf::{grant, Error, Token, TokenSource};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Error> {
/// let source = TokenSource::new(grant::from_fn(|request: grant::FetchToken| async move {
///     let access_token = "from-my-vault"; // ask your own service here
///     Ok(Token::bearer(access_token)?
///         .with_issued_at(request.started_at)
///         .with_expires_in(Duration::from_secs(3600)))
/// }));
/// assert_eq!(source.token().await?.access_token().secret(), "from-my-vault");
/// # Ok(()) }
/// ```
pub fn from_fn<F, Fut>(f: F) -> FromFn<F>
where
    F: Fn(FetchToken) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Token, Error>> + Send + 'static,
{
    FromFn { f: Arc::new(f) }
}

/// The grant [`from_fn`] makes.
pub struct FromFn<F> {
    f: Arc<F>,
}

impl<F> Clone for FromFn<F> {
    fn clone(&self) -> Self {
        Self {
            f: Arc::clone(&self.f),
        }
    }
}

impl<F> fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromFn").finish_non_exhaustive()
    }
}

impl<F, Fut> Service<FetchToken> for FromFn<F>
where
    F: Fn(FetchToken) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Token, Error>> + Send + 'static,
{
    type Response = Token;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Token, Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: FetchToken) -> Self::Future {
        Box::pin((self.f)(request))
    }
}
