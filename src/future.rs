//! The response future: token → call → (401 → refresh → replay).

use std::{
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use http::{header::AUTHORIZATION, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower::BoxError;
use tower_service::Service;

use crate::{challenge, replay::SavedRequest, source::TokenFuture, TokenId, TokenSource};

pin_project! {
    /// Response future for [`BearerAuth`](crate::BearerAuth).
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S::Future, S, B>,
        // The token the request was sent with.
        token: Option<TokenId>,
        // Where it came from: told when a server rejects it.
        source: Option<TokenSource>,
        // Present while a replay is still possible.
        replay: Option<Replay<S, B>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, B> {
        // No usable token was cached: waiting for one, holding the service
        // that was readied for this request.
        Token {
            #[pin]
            token: TokenFuture,
            service: Option<S>,
            request: Option<Request<B>>,
        },
        // Sent with our token.
        Called {
            #[pin]
            future: F,
        },
        // Answered 401: waiting for the token that replaces the rejected one.
        Refresh {
            #[pin]
            token: TokenFuture,
        },
        // Readying the replay's service.
        Readying,
        // The copy is sent; its answer is final.
        Replayed {
            #[pin]
            future: F,
        },
    }
}

/// What a replay needs: the copy, and a service to send it through.
struct Replay<S, B> {
    request: SavedRequest<B>,
    service: S,
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    pub(crate) fn called(
        future: S::Future,
        token: TokenId,
        source: TokenSource,
        replay: Option<(SavedRequest<B>, S)>,
    ) -> Self {
        Self {
            state: State::Called { future },
            token: Some(token),
            source: Some(source),
            replay: replay.map(Replay::from),
        }
    }

    pub(crate) fn passthrough(future: S::Future) -> Self {
        Self {
            state: State::Called { future },
            token: None,
            source: None,
            replay: None,
        }
    }

    pub(crate) fn waiting(
        token: TokenFuture,
        source: TokenSource,
        service: S,
        request: Request<B>,
        replay: Option<(SavedRequest<B>, S)>,
    ) -> Self {
        Self {
            state: State::Token {
                token,
                service: Some(service),
                request: Some(request),
            },
            // The id is filled in when the token arrives.
            token: None,
            source: Some(source),
            replay: replay.map(Replay::from),
        }
    }
}

impl<S, B> From<(SavedRequest<B>, S)> for Replay<S, B> {
    fn from((request, service): (SavedRequest<B>, S)) -> Self {
        Self { request, service }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<ResBody>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Token {
                    token,
                    service,
                    request,
                } => {
                    let token = ready!(token.poll(cx))?;
                    let (Some(mut service), Some(mut request)) = (service.take(), request.take())
                    else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let value = token.header_value().clone();
                    if let Some(replay) = this.replay.as_mut() {
                        replay.request.set_authorization(value.clone());
                    }
                    request.headers_mut().insert(AUTHORIZATION, value);
                    *this.token = Some(token.id());
                    let future = service.call(request);
                    this.state.set(State::Called { future });
                }
                StateProj::Called { future } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    let (Some(rejected), Some(source)) = (*this.token, this.source.as_ref()) else {
                        return Poll::Ready(Ok(response));
                    };
                    if response.status() != StatusCode::UNAUTHORIZED
                        || !wants_a_new_token(response.headers())
                    {
                        return Poll::Ready(Ok(response));
                    }
                    // NOTE: invalidate even when this request cannot be
                    // replayed, or later requests would keep sending the
                    // rejected token until it expires.
                    let token = source.invalidate(rejected);
                    let replayable = this
                        .replay
                        .as_ref()
                        .is_some_and(|replay| replay.request.is_replayable());
                    if !replayable || token.is_throttled() {
                        return Poll::Ready(Ok(response));
                    }
                    tracing::debug!("request answered 401: refreshing the token to replay it");
                    this.state.set(State::Refresh { token });
                }
                StateProj::Refresh { token } => {
                    let token = ready!(token.poll(cx))?;
                    if let Some(replay) = this.replay.as_mut() {
                        replay
                            .request
                            .set_authorization(token.header_value().clone());
                    }
                    *this.token = Some(token.id());
                    this.state.set(State::Readying);
                }
                StateProj::Readying => {
                    let Some(replay) = this.replay.as_mut() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    ready!(replay.service.poll_ready(cx)).map_err(Into::into)?;
                    let Some(Replay {
                        request,
                        mut service,
                    }) = this.replay.take()
                    else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    if let Some(source) = this.source.as_ref() {
                        source.count_replay();
                    }
                    tracing::debug!("replaying the request with a fresh token");
                    let future = service.call(request.into_request());
                    this.state.set(State::Replayed { future });
                }
                StateProj::Replayed { future } => {
                    return future.poll(cx).map_err(Into::into);
                }
            }
        }
    }
}

/// Whether a 401 with these headers asks for another bearer token: not when
/// it challenges another scheme only (say `Basic`), nor when it says
/// `insufficient_scope` (RFC 6750 §3.1: a new token would not help).
fn wants_a_new_token(headers: &http::HeaderMap) -> bool {
    match challenge::bearer(headers) {
        challenge::Bearer::Absent => true,
        challenge::Bearer::Other => false,
        challenge::Bearer::Challenge(error) => error.as_deref() != Some("insufficient_scope"),
    }
}

fn polled_after_completion() -> BoxError {
    "ResponseFuture polled after completion".into()
}
