use tower_layer::Layer;

use crate::{replay::CheapClone, BearerAuth, TokenSource};

/// Applies [`BearerAuth`] to a service: adds `Authorization: Bearer …` from a
/// shared [`TokenSource`] and replays a request once after a 401.
///
/// See the [crate documentation](crate) for an example.
#[derive(Debug, Clone)]
#[must_use]
pub struct BearerAuthLayer<C = CheapClone> {
    source: TokenSource,
    clone_body: C,
}

impl BearerAuthLayer {
    /// A layer that takes its tokens from `source` and replays requests whose
    /// body is cheap to copy (see [`CheapClone`]).
    pub fn new(source: TokenSource) -> Self {
        Self {
            source,
            clone_body: CheapClone,
        }
    }
}

impl<C> BearerAuthLayer<C> {
    /// Chooses which request bodies are kept for a replay after a 401:
    /// [`NoReplay`](crate::replay::NoReplay) to never replay, a
    /// [`clone_body_fn`](crate::replay::clone_body_fn) closure, or your own
    /// [`CloneBody`](crate::replay::CloneBody). Defaults to [`CheapClone`].
    pub fn clone_body<C2>(self, policy: C2) -> BearerAuthLayer<C2> {
        BearerAuthLayer {
            source: self.source,
            clone_body: policy,
        }
    }
}

impl<S, C: Clone> Layer<S> for BearerAuthLayer<C> {
    type Service = BearerAuth<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        BearerAuth::with_policy(inner, self.source.clone(), self.clone_body.clone())
    }
}
