//! [`TokenFuture`]: a source's answer, ready at once or after the fetch in
//! flight.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::sync::watch;

use super::{flight::Outcome, TokenSource};
use crate::error::Error;

/// The future returned by [`TokenSource::token`] and
/// [`TokenSource::invalidate`]; response future of the [`TokenSource`] service.
#[must_use = "futures do nothing unless polled"]
pub struct TokenFuture {
    state: FutureState,
}

enum FutureState {
    Ready(Option<Outcome>),
    /// Not polled yet: joins or starts the fetch when it is.
    Lazy(TokenSource),
    Waiting(Pin<Box<dyn Future<Output = Outcome> + Send>>),
}

impl TokenFuture {
    pub(super) fn ready(outcome: Outcome) -> Self {
        Self {
            state: FutureState::Ready(Some(outcome)),
        }
    }

    pub(super) fn lazy(source: TokenSource) -> Self {
        Self {
            state: FutureState::Lazy(source),
        }
    }

    pub(super) fn waiting(mut receiver: watch::Receiver<Option<Outcome>>) -> Self {
        let wait = async move {
            match receiver.wait_for(Option::is_some).await {
                Ok(outcome) => outcome.clone().unwrap_or_else(|| Err(Error::closed())),
                Err(_) => Err(Error::closed()),
            }
        };
        Self {
            state: FutureState::Waiting(Box::pin(wait)),
        }
    }
}

impl Future for TokenFuture {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        loop {
            match &mut self.state {
                FutureState::Ready(outcome) => {
                    return Poll::Ready(outcome.take().unwrap_or_else(|| Err(Error::closed())))
                }
                FutureState::Lazy(source) => {
                    // Never `Lazy` again: `wait` answers ready or waiting.
                    let next = source.wait().state;
                    self.state = next;
                }
                FutureState::Waiting(wait) => return wait.as_mut().poll(cx),
            }
        }
    }
}

impl fmt::Debug for TokenFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            FutureState::Ready(_) => "ready",
            FutureState::Lazy(_) => "not polled",
            FutureState::Waiting(_) => "waiting",
        };
        f.debug_struct("TokenFuture")
            .field("state", &state)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::source::tests::queued;

    #[test]
    fn polled_without_a_runtime_a_fetch_is_an_error_not_a_panic() {
        let (source, calls) = queued(&[]);
        let mut future = std::pin::pin!(source.token());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let Poll::Ready(outcome) = future.as_mut().poll(&mut cx) else {
            panic!("without a runtime the answer is at once");
        };
        assert!(outcome.unwrap_err().is_runtime());
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }
}
