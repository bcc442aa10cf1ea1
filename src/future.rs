//! The response future: token → call → (401 → refresh → replay).
//!
//! The shape of tower's `retry/future.rs`: a private state enum polled in a
//! loop, the decision on an answer a pure function ([`verdict`]), the
//! replay sent through [`Oneshot`] (ready, then call). The token's sender
//! constraint, if any, is a value ([`Sent`]) the future carries: it files
//! what answers tell it and authorizes the replay; no feature is named here.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{ready, Context, Poll},
};

use http::{HeaderMap, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower::{util::Oneshot, BoxError};
use tower_service::Service;

use crate::{
    challenge::{self, SchemeChallenge},
    error::Error,
    replay::SavedRequest,
    source::{Replacement, SourceRef, TokenFuture, TokenSource},
    token::{SenderConstraint, Sent, TokenId},
};

pin_project! {
    /// Response future for [`BearerAuth`](crate::BearerAuth).
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
        // The token the request was sent with.
        token: Option<TokenId>,
        // Where it came from: told when a server rejects it.
        source: Option<SourceRef>,
        // Present while a replay is still possible.
        replay: Option<Replay<S, B>>,
        // What the token's sender constraint needs for the answers and a
        // replay; `None` for a Bearer token.
        sent: Option<Sent>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        // No usable token was cached: waiting for one, holding the service
        // that was readied for this request, and the request.
        Token {
            #[pin]
            token: TokenFuture,
            ready: Option<(S, Request<B>)>,
        },
        // Sent with our token (or passed through).
        Called {
            #[pin]
            future: S::Future,
        },
        // Answered 401: waiting for the token that replaces the rejected one.
        Refresh {
            #[pin]
            token: TokenFuture,
        },
        // The copy: readying a clone of the service, then sending; its
        // answer is final.
        Replaying {
            #[pin]
            future: Oneshot<S, Request<B>>,
        },
        // Failed before sending (the sender constraint could not authorize).
        Failed {
            error: Option<BoxError>,
        },
    }
}

impl<S, B> State<S, B>
where
    S: Service<Request<B>>,
{
    fn name(&self) -> &'static str {
        match self {
            Self::Token { .. } => "Token",
            Self::Called { .. } => "Called",
            Self::Refresh { .. } => "Refresh",
            Self::Replaying { .. } => "Replaying",
            Self::Failed { .. } => "Failed",
        }
    }
}

/// What a replay needs: the copy, and a service to send it through.
struct Replay<S, B> {
    request: SavedRequest<B>,
    service: S,
}

impl<S, B> From<(SavedRequest<B>, S)> for Replay<S, B> {
    fn from((request, service): (SavedRequest<B>, S)) -> Self {
        Self { request, service }
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    /// Sent with the token `token` of `source` (a [`TokenSource`], or a
    /// handle's [`SourceRef`]).
    pub(crate) fn called(
        future: S::Future,
        token: TokenId,
        source: impl Into<SourceRef>,
        replay: Option<(SavedRequest<B>, S)>,
        sent: Option<Sent>,
    ) -> Self {
        Self {
            state: State::Called { future },
            token: Some(token),
            source: Some(source.into()),
            replay: replay.map(Replay::from),
            sent,
        }
    }

    pub(crate) fn passthrough(future: S::Future) -> Self {
        Self {
            state: State::Called { future },
            token: None,
            source: None,
            replay: None,
            sent: None,
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
            sent: None,
        }
    }

    /// Waiting for `token` of `source` (a [`TokenSource`], or a handle's
    /// [`SourceRef`]).
    pub(crate) fn waiting(
        token: TokenFuture,
        source: impl Into<SourceRef>,
        service: S,
        request: Request<B>,
        replay: Option<(SavedRequest<B>, S)>,
    ) -> Self {
        Self {
            state: State::Token {
                token,
                ready: Some((service, request)),
            },
            // The id is filled in when the token arrives.
            token: None,
            source: Some(source.into()),
            replay: replay.map(Replay::from),
            sent: None,
        }
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("state", &self.state.name())
            .field("token", &self.token)
            .field("replayable", &self.replay.is_some())
            .field("constrained", &self.sent.is_some())
            .finish_non_exhaustive()
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
                StateProj::Token { token, ready } => {
                    let token = ready!(token.poll(cx))?;
                    let Some((mut service, mut request)) = ready.take() else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    if let Some(replay) = this.replay.as_mut() {
                        replay
                            .request
                            .set_authorization(token.header_value().clone());
                    }
                    *this.sent = token.authorize(&mut request)?;
                    *this.token = Some(token.id());
                    let future = service.call(request);
                    this.state.set(State::Called { future });
                }
                StateProj::Called { future } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    let (Some(rejected), Some(source)) = (*this.token, this.source.as_ref()) else {
                        return Poll::Ready(Ok(response));
                    };
                    let sent = this.sent.as_ref();
                    let news = sent.is_some_and(|sent| sent.on_response(response.headers()));
                    let replayable = || {
                        this.replay
                            .as_ref()
                            .is_some_and(|replay| replay.request.is_replayable())
                    };
                    let constraint = sent.map(|sent| (sent.constraint(), news));
                    match verdict(
                        response.status(),
                        response.headers(),
                        constraint,
                        replayable,
                    ) {
                        Verdict::Served => {
                            // NOTE: one relaxed load once the token is known
                            // to have served: the throttle spares a revoked
                            // token.
                            source.served(rejected);
                            return Poll::Ready(Ok(response));
                        }
                        Verdict::AsIs => return Poll::Ready(Ok(response)),
                        Verdict::ReplaySameToken => {
                            let (Some(sent), Some(mut replay)) = (sent, this.replay.take()) else {
                                return Poll::Ready(Ok(response));
                            };
                            if sent.authorize_again(replay.request.headers_mut()).is_err() {
                                return Poll::Ready(Ok(response));
                            }
                            tracing::debug!(
                                "sender constraint challenge (a new DPoP nonce): replaying with the same token"
                            );
                            this.state.set(replaying(source, replay));
                        }
                        Verdict::Rejected { replay } => {
                            // NOTE: invalidate even when this request cannot
                            // be replayed, or later requests would keep
                            // sending the rejected token until it expires.
                            let Replacement::Coming(token) = source.replace(rejected) else {
                                // Throttled: the 401 as it is.
                                return Poll::Ready(Ok(response));
                            };
                            if !replay {
                                return Poll::Ready(Ok(response));
                            }
                            tracing::debug!(
                                "request answered 401: refreshing the token to replay it"
                            );
                            this.state.set(State::Refresh { token });
                        }
                    }
                }
                StateProj::Refresh { token } => {
                    let token = ready!(token.poll(cx))?;
                    let (Some(mut replay), Some(source)) =
                        (this.replay.take(), this.source.as_ref())
                    else {
                        return Poll::Ready(Err(polled_after_completion()));
                    };
                    let request = &mut replay.request;
                    request.set_authorization(token.header_value().clone());
                    if let Some(old) = this.sent.take() {
                        old.unauthorize(request.headers_mut());
                    }
                    if let Some(binding) = token.binding() {
                        let (method, uri) = (request.method().clone(), request.uri().clone());
                        *this.sent = Some(binding.authorize(method, uri, request.headers_mut())?);
                    }
                    *this.token = Some(token.id());
                    tracing::debug!("replaying the request with a fresh token");
                    this.state.set(replaying(source, replay));
                }
                StateProj::Replaying { future } => {
                    let response = ready!(future.poll(cx)).map_err(Into::into)?;
                    if let (Some(token), Some(source)) = (*this.token, this.source.as_ref()) {
                        if !challenge::rejects_credentials(response.status(), response.headers()) {
                            source.served(token);
                        }
                    }
                    if let Some(sent) = this.sent.as_ref() {
                        sent.on_response(response.headers());
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

/// The replay's state: `replay`'s copy, through its clone of the service,
/// readied first (see the `Clone` section of [`BearerAuth`](crate::BearerAuth)).
fn replaying<S, B>(source: &TokenSource, replay: Replay<S, B>) -> State<S, B>
where
    S: Service<Request<B>>,
{
    source.count_replay();
    State::Replaying {
        future: Oneshot::new(replay.service, replay.request.into_request()),
    }
}

/// What the answer to a request sent with our token calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Final; the token served (any answer but a 401 that a new token
    /// would cure).
    Served,
    /// Final as it is; the token neither served nor was rejected (the
    /// sender constraint asked for a replay that cannot be made).
    AsIs,
    /// The same token again, authorized anew: the sender constraint asked
    /// (RFC 9449 §9 `use_dpop_nonce`).
    ReplaySameToken,
    /// The token was rejected: invalidate it, and replay with a new one
    /// when `replay` (and the source is not throttling).
    Rejected { replay: bool },
}

/// Decides on an answer: its status and headers, the sender constraint of
/// the token sent with whether the answer told it something new
/// ([`Sent::on_response`]), and whether the copy can be sent (asked only
/// on a 401).
///
/// A 401 asks for a new token unless it challenges another scheme only
/// (say `Basic`) or says `insufficient_scope` (RFC 6750 §3.1: a new token
/// would not help). For a constrained token its scheme's challenge decides
/// (`DPoP`), else the `Bearer` one. A gRPC Trailers-Only answer with
/// `grpc-status: 16` (HTTP 200, `UNAUTHENTICATED`, as tonic servers reject
/// a token) is read as a 401; a `grpc-status` that is not a number is no
/// rejection. Shared by [`BearerAuth`](crate::BearerAuth) and the reqwest
/// middleware.
pub(crate) fn verdict(
    status: StatusCode,
    headers: &HeaderMap,
    constraint: Option<(&dyn SenderConstraint, bool)>,
    replayable: impl FnOnce() -> bool,
) -> Verdict {
    if !challenge::rejects_credentials(status, headers) {
        return Verdict::Served;
    }
    let own = constraint.and_then(|(constraint, news)| {
        let scheme = constraint.challenge_scheme()?;
        Some((constraint, news, challenge::of(headers, scheme)))
    });
    if let Some((constraint, true, challenge)) = &own {
        if constraint.needs_replay_without_refresh(challenge) {
            return if replayable() {
                Verdict::ReplaySameToken
            } else {
                Verdict::AsIs
            };
        }
    }
    let challenge = match own {
        Some((_, _, challenge @ SchemeChallenge::Challenge(_))) => challenge,
        _ => challenge::bearer(headers),
    };
    let wants_a_new_token = match challenge {
        SchemeChallenge::Absent => true,
        SchemeChallenge::Other => false,
        SchemeChallenge::Challenge(error) => error.as_deref() != Some("insufficient_scope"),
    };
    if wants_a_new_token {
        Verdict::Rejected {
            replay: replayable(),
        }
    } else {
        Verdict::Served
    }
}

fn polled_after_completion() -> BoxError {
    "ResponseFuture polled after completion".into()
}

#[cfg(test)]
mod tests {
    use std::any::Any;

    use http::{header::WWW_AUTHENTICATE, HeaderValue, Method, Uri};

    use super::*;

    /// A sender constraint with its own challenge scheme, as DPoP has.
    #[derive(Debug)]
    struct Bound;

    impl SenderConstraint for Bound {
        fn challenge_scheme(&self) -> Option<&'static str> {
            Some("dpop")
        }
        fn thumbprint(&self) -> &str {
            "t"
        }
        fn authorize(&self, _: &Method, _: &Uri, _: &mut HeaderMap) -> Result<(), Error> {
            Ok(())
        }
        fn unauthorize(&self, _: &mut HeaderMap) {}
        fn on_response(&self, _: &Uri, _: &HeaderMap) -> bool {
            false
        }
        fn needs_replay_without_refresh(&self, challenge: &SchemeChallenge) -> bool {
            *challenge == SchemeChallenge::Challenge(Some("use_dpop_nonce".into()))
        }
        fn as_any(&self) -> &dyn Any {
            self
        }
    }

    fn headers(challenges: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for challenge in challenges {
            headers.append(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        headers
    }

    fn bearer(status: StatusCode, challenges: &[&'static str], replayable: bool) -> Verdict {
        verdict(status, &headers(challenges), None, || replayable)
    }

    fn bound(challenges: &[&'static str], news: bool, replayable: bool) -> Verdict {
        let constraint: &dyn SenderConstraint = &Bound;
        let headers = headers(challenges);
        verdict(
            StatusCode::UNAUTHORIZED,
            &headers,
            Some((constraint, news)),
            || replayable,
        )
    }

    const UNAUTHORIZED: StatusCode = StatusCode::UNAUTHORIZED;

    #[test]
    fn any_answer_but_401_means_the_token_served() {
        for status in [
            StatusCode::OK,
            StatusCode::FORBIDDEN,
            StatusCode::BAD_GATEWAY,
        ] {
            assert_eq!(
                bearer(status, &[r#"Bearer error="invalid_token""#], true),
                Verdict::Served
            );
        }
    }

    #[test]
    fn a_401_without_challenge_or_with_invalid_token_rejects_the_token() {
        for challenges in [&[][..], &[r#"Bearer error="invalid_token""#], &["Bearer"]] {
            assert_eq!(
                bearer(UNAUTHORIZED, challenges, true),
                Verdict::Rejected { replay: true },
                "{challenges:?}"
            );
            assert_eq!(
                bearer(UNAUTHORIZED, challenges, false),
                Verdict::Rejected { replay: false },
                "{challenges:?}"
            );
        }
    }

    #[test]
    fn a_401_for_another_scheme_or_insufficient_scope_keeps_the_token() {
        assert_eq!(
            bearer(UNAUTHORIZED, &[r#"Basic realm="x""#], true),
            Verdict::Served
        );
        assert_eq!(
            bearer(
                UNAUTHORIZED,
                &[r#"Bearer error="insufficient_scope""#],
                true
            ),
            Verdict::Served
        );
    }

    #[test]
    fn a_grpc_unauthenticated_in_the_headers_rejects_the_token() {
        let grpc = |value: &'static str| {
            let mut headers = headers(&[]);
            headers.insert("grpc-status", HeaderValue::from_static(value));
            verdict(StatusCode::OK, &headers, None, || true)
        };
        assert_eq!(grpc("16"), Verdict::Rejected { replay: true });
        for other in ["0", "7", "14", "unauthenticated", " 16"] {
            assert_eq!(grpc(other), Verdict::Served, "{other:?}");
        }
    }

    #[test]
    fn replayability_is_asked_only_on_a_401_that_calls_for_a_replay() {
        let asked = std::cell::Cell::new(false);
        let ask = || {
            asked.set(true);
            true
        };
        verdict(StatusCode::OK, &HeaderMap::new(), None, ask);
        assert!(!asked.get());
    }

    #[test]
    fn a_constraint_challenge_with_news_replays_the_same_token() {
        let nonce = r#"DPoP error="use_dpop_nonce""#;
        assert_eq!(bound(&[nonce], true, true), Verdict::ReplaySameToken);
        assert_eq!(bound(&[nonce], true, false), Verdict::AsIs);
        // Nothing new filed (no nonce, or the same one): a new token.
        assert_eq!(
            bound(&[nonce], false, true),
            Verdict::Rejected { replay: true }
        );
    }

    #[test]
    fn the_constraint_scheme_challenge_speaks_for_a_bound_token() {
        let scope = r#"DPoP error="insufficient_scope""#;
        let invalid = r#"Bearer error="invalid_token""#;
        assert_eq!(bound(&[invalid, scope], false, true), Verdict::Served);
        // No challenge of its own scheme: the Bearer one decides.
        assert_eq!(
            bound(&[r#"Bearer error="insufficient_scope""#], true, true),
            Verdict::Served
        );
        assert_eq!(
            bound(&[invalid], true, true),
            Verdict::Rejected { replay: true }
        );
        assert_eq!(
            bearer(UNAUTHORIZED, &[scope], true),
            Verdict::Served,
            "a Bearer token reads only the Bearer challenge: DPoP alone is another scheme"
        );
    }
}
