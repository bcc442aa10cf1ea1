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

use crate::{
    challenge,
    replay::SavedRequest,
    source::{Replacement, TokenFuture},
    token::Binding,
    Error, TokenId, TokenSource,
};

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
        // The DPoP binding of the token sent, and where it was sent.
        dpop: Option<DPoP>,
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
        // Failed before sending (a DPoP proof could not be made).
        Failed {
            error: Option<BoxError>,
        },
    }
}

/// A DPoP-bound token's key and `ath`, and the request's method and URI,
/// to sign the proof of a replay and to file the nonces of the answers.
#[cfg(feature = "dpop")]
pub(crate) struct DPoP {
    binding: Binding,
    method: http::Method,
    uri: http::Uri,
}

/// Without the `dpop` feature no request carries a proof.
#[cfg(not(feature = "dpop"))]
pub(crate) type DPoP = std::convert::Infallible;

/// Adds a fresh `DPoP` proof of `binding` to `request` (RFC 9449 §7.1).
#[cfg(feature = "dpop")]
pub(crate) fn attach_proof<B>(binding: Binding, request: &mut Request<B>) -> Result<DPoP, Error> {
    let proof = binding.proof(request.method(), request.uri())?;
    request.headers_mut().insert(crate::dpop::DPOP, proof);
    Ok(DPoP {
        binding,
        method: request.method().clone(),
        uri: request.uri().clone(),
    })
}

/// Without the `dpop` feature there is no binding to prove.
#[cfg(not(feature = "dpop"))]
pub(crate) fn attach_proof<B>(binding: Binding, _: &mut Request<B>) -> Result<DPoP, Error> {
    match binding {}
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
        dpop: Option<DPoP>,
    ) -> Self {
        Self {
            state: State::Called { future },
            token: Some(token),
            source: Some(source),
            replay: replay.map(Replay::from),
            dpop,
        }
    }

    pub(crate) fn passthrough(future: S::Future) -> Self {
        Self {
            state: State::Called { future },
            token: None,
            source: None,
            replay: None,
            dpop: None,
        }
    }

    pub(crate) fn failed(error: Error) -> Self {
        Self {
            state: State::Failed {
                error: Some(error.into()),
            },
            token: None,
            source: None,
            replay: None,
            dpop: None,
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
            dpop: None,
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
                    if let Some(binding) = token.binding() {
                        *this.dpop = Some(attach_proof(binding, &mut request)?);
                    }
                    *this.token = Some(token.id());
                    let future = service.call(request);
                    this.state.set(State::Called { future });
                }
                StateProj::Called { future } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    let (Some(rejected), Some(source)) = (*this.token, this.source.as_ref()) else {
                        return Poll::Ready(Ok(response));
                    };
                    #[cfg(feature = "dpop")]
                    if let Some(dpop) = this.dpop.as_ref() {
                        let nonce = dpop
                            .binding
                            .key
                            .remember_nonce(&dpop.uri, response.headers());
                        if nonce
                            && response.status() == StatusCode::UNAUTHORIZED
                            && challenge::of(response.headers(), "dpop")
                                == challenge::Bearer::Challenge(Some("use_dpop_nonce".into()))
                        {
                            // RFC 9449 §9: the same token, a proof with the new nonce.
                            let Some(replay) = this
                                .replay
                                .as_mut()
                                .filter(|replay| replay.request.is_replayable())
                            else {
                                return Poll::Ready(Ok(response));
                            };
                            let Ok(proof) = dpop.binding.proof(&dpop.method, &dpop.uri) else {
                                return Poll::Ready(Ok(response));
                            };
                            replay
                                .request
                                .headers_mut()
                                .insert(crate::dpop::DPOP, proof);
                            tracing::debug!("DPoP nonce challenge: replaying with the new nonce");
                            this.state.set(State::Readying);
                            continue;
                        }
                    }
                    if response.status() != StatusCode::UNAUTHORIZED
                        || !wants_a_new_token(response.headers(), this.dpop.is_some())
                    {
                        // NOTE: one relaxed load once the token is known to
                        // have served: the throttle spares a revoked token.
                        source.served(rejected);
                        return Poll::Ready(Ok(response));
                    }
                    // NOTE: invalidate even when this request cannot be
                    // replayed, or later requests would keep sending the
                    // rejected token until it expires.
                    let Replacement::Coming(token) = source.replace(rejected) else {
                        // Throttled: the 401 as it is.
                        return Poll::Ready(Ok(response));
                    };
                    let replayable = this
                        .replay
                        .as_ref()
                        .is_some_and(|replay| replay.request.is_replayable());
                    if !replayable {
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
                        #[cfg(feature = "dpop")]
                        {
                            let request = &mut replay.request;
                            *this.dpop = None;
                            request.headers_mut().remove(crate::dpop::DPOP);
                            if let Some(binding) = token.binding() {
                                let (method, uri) =
                                    (request.method().clone(), request.uri().clone());
                                let proof = binding.proof(&method, &uri)?;
                                request.headers_mut().insert(crate::dpop::DPOP, proof);
                                *this.dpop = Some(DPoP {
                                    binding,
                                    method,
                                    uri,
                                });
                            }
                        }
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
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    if let (Some(token), Some(source)) = (*this.token, this.source.as_ref()) {
                        if response.status() != StatusCode::UNAUTHORIZED {
                            source.served(token);
                        }
                    }
                    #[cfg(feature = "dpop")]
                    if let Some(dpop) = this.dpop.as_ref() {
                        dpop.binding
                            .key
                            .remember_nonce(&dpop.uri, response.headers());
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Failed { error } => {
                    return Poll::Ready(Err(error.take().unwrap_or_else(polled_after_completion)));
                }
            }
        }
    }
}

/// Whether a 401 with these headers asks for another bearer token: not when
/// it challenges another scheme only (say `Basic`), nor when it says
/// `insufficient_scope` (RFC 6750 §3.1: a new token would not help).
///
/// For a DPoP-bound token the `DPoP` challenge decides, else the `Bearer` one.
fn wants_a_new_token(headers: &http::HeaderMap, dpop: bool) -> bool {
    if dpop {
        if let challenge::Bearer::Challenge(error) = challenge::of(headers, "dpop") {
            return error.as_deref() != Some("insufficient_scope");
        }
    }
    match challenge::bearer(headers) {
        challenge::Bearer::Absent => true,
        challenge::Bearer::Other => false,
        challenge::Bearer::Challenge(error) => error.as_deref() != Some("insufficient_scope"),
    }
}

fn polled_after_completion() -> BoxError {
    "ResponseFuture polled after completion".into()
}
