//! [`ReplayBody`]: a stream kept as it is read, so it can be sent again.

use std::{
    fmt,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    task::{ready, Context, Poll},
};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::BoxError;

/// What the first send read, shared between a body and its copies.
#[derive(Debug, Default)]
pub(crate) struct Recording {
    chunks: Vec<Bytes>,
    trailers: Option<HeaderMap>,
    len: usize,
    /// The first send read the body to its end.
    complete: bool,
    /// The body outgrew the cap or failed: it cannot be sent again.
    spoiled: bool,
}

/// A handle on a [`Recording`], to ask whether a copy can be sent.
#[derive(Debug, Clone)]
pub(crate) struct RecordingHandle(Arc<Mutex<Recording>>);

impl RecordingHandle {
    fn lock(&self) -> MutexGuard<'_, Recording> {
        // NOTE: nothing panics while holding it; recover rather than poison.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the first send read the whole body within the cap.
    pub(crate) fn is_replayable(&self) -> bool {
        let recording = self.lock();
        recording.complete && !recording.spoiled
    }
}

pin_project! {
    /// A request body that keeps what the inner service reads, up to a cap,
    /// so that a copy can send it again after a 401.
    ///
    /// It never reads ahead of the inner service: it keeps each data frame
    /// (a reference count, not a copy, for `Bytes`) and the trailers as they
    /// pass. A copy (taken with [`CloneBody`](super::CloneBody) before the
    /// first send) replays exactly those frames, and only when the first
    /// send read the body to its end within the cap; otherwise the 401 is
    /// returned as it came. So a replayed body is never truncated, never
    /// duplicated. Past the cap the kept frames are dropped at once.
    ///
    /// Use it through [`ReplayStreams`](super::ReplayStreams), which wraps
    /// each body and boxes it back into your client's body type (one line
    /// for tonic), or wrap bodies yourself when your stack takes
    /// `ReplayBody<B>`: the default [`CheapClone`](super::CheapClone) policy
    /// copies it.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, StreamBody};
    /// use tower_alf::replay::ReplayBody;
    ///
    /// # async fn run() -> Result<(), tower::BoxError> {
    /// let chunks = futures_util::stream::iter(
    ///     ["a", "b"].map(|s| Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from(s)))),
    /// );
    /// let body = ReplayBody::new(StreamBody::new(chunks));
    /// # Ok(()) }
    /// ```
    pub struct ReplayBody<B> {
        #[pin]
        inner: Option<B>,
        recording: RecordingHandle,
        cap: usize,
        // For a copy: the next frame to send (the trailers after the chunks).
        cursor: usize,
    }
}

impl<B> ReplayBody<B> {
    /// Default cap: 64 KiB. A request body larger than that is sent once; a
    /// 401 for it is returned as is.
    pub const DEFAULT_CAP: usize = 64 * 1024;

    /// Wraps `body`, keeping up to [`Self::DEFAULT_CAP`] bytes of it.
    pub fn new(body: B) -> Self {
        Self::with_cap(body, Self::DEFAULT_CAP)
    }

    /// Wraps `body`, keeping up to `cap` bytes of it.
    pub fn with_cap(body: B, cap: usize) -> Self {
        Self {
            inner: Some(body),
            recording: RecordingHandle(Arc::default()),
            cap,
            cursor: 0,
        }
    }

    /// A copy that sends again what this body's first send read.
    pub(crate) fn copy(&self) -> Self {
        Self {
            inner: None,
            recording: self.recording.clone(),
            cap: self.cap,
            cursor: 0,
        }
    }

    pub(crate) fn recording(&self) -> RecordingHandle {
        self.recording.clone()
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(replay_next(&mut this.recording.lock(), this.cursor));
        };
        let frame = ready!(inner.poll_frame(cx));
        let mut recording = this.recording.lock();
        match &frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    if !recording.spoiled {
                        if recording.len + data.len() > *this.cap {
                            recording.spoiled = true;
                            recording.chunks = Vec::new();
                        } else {
                            recording.len += data.len();
                            recording.chunks.push(data.clone());
                        }
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    recording.trailers = Some(trailers.clone());
                }
            }
            Some(Err(_)) => recording.spoiled = true,
            None => recording.complete = true,
        }
        Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Some(inner) => {
                let end = inner.is_end_stream();
                if end {
                    // A client may stop polling once the body says it ended.
                    self.recording.lock().complete = true;
                }
                end
            }
            None => {
                // NOTE: not before the first send is complete: a copy is made
                // (and often boxed, which checks this) before anything is
                // recorded, and must not pass for an empty body then.
                let recording = self.recording.lock();
                recording.complete
                    && (self.cursor > recording.chunks.len()
                        || (self.cursor == recording.chunks.len() && recording.trailers.is_none()))
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(inner) => inner.size_hint(),
            None => {
                let recording = self.recording.lock();
                let sent: usize = recording
                    .chunks
                    .iter()
                    .take(self.cursor)
                    .map(Bytes::len)
                    .sum();
                SizeHint::with_exact((recording.len - sent.min(recording.len)) as u64)
            }
        }
    }
}

/// The copy's next frame: the kept chunks, then the trailers, then the end.
fn replay_next(
    recording: &mut Recording,
    cursor: &mut usize,
) -> Option<Result<Frame<Bytes>, BoxError>> {
    if !recording.complete || recording.spoiled {
        return Some(Err(
            "this body was not read whole within its cap, and cannot be sent again".into(),
        ));
    }
    if let Some(chunk) = recording.chunks.get(*cursor) {
        *cursor += 1;
        return Some(Ok(Frame::data(chunk.clone())));
    }
    if *cursor == recording.chunks.len() {
        *cursor += 1;
        if let Some(trailers) = &recording.trailers {
            return Some(Ok(Frame::trailers(trailers.clone())));
        }
    }
    None
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let recording = self.recording.lock();
        f.debug_struct("ReplayBody")
            .field("copy", &self.inner.is_none())
            .field("cap", &self.cap)
            .field("kept_bytes", &recording.len)
            .field("complete", &recording.complete)
            .field("spoiled", &recording.spoiled)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn stream(
        chunks: &'static [&'static str],
        trailers: bool,
    ) -> impl Body<Data = Bytes, Error = std::io::Error> {
        let mut frames: Vec<Result<Frame<Bytes>, std::io::Error>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
            .collect();
        if trailers {
            let mut map = HeaderMap::new();
            map.insert("grpc-status", "0".parse().unwrap());
            frames.push(Ok(Frame::trailers(map)));
        }
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn a_copy_replays_the_whole_body_and_its_trailers() {
        let body = ReplayBody::new(stream(&["hello ", "streaming ", "world"], true));
        let copy = body.copy();
        let first = body.collect().await.unwrap();
        assert_eq!(first.trailers().unwrap()["grpc-status"], "0");
        assert!(copy.recording().is_replayable());
        let again = copy.collect().await.unwrap();
        assert_eq!(again.trailers().unwrap()["grpc-status"], "0");
        assert_eq!(again.to_bytes(), "hello streaming world");
    }

    #[tokio::test]
    async fn past_the_cap_nothing_is_kept_and_the_copy_refuses() {
        let body = ReplayBody::with_cap(stream(&["0123456789", "0123456789"], false), 15);
        let copy = body.copy();
        assert_eq!(
            body.collect().await.unwrap().to_bytes().len(),
            20,
            "the first send is whole"
        );
        assert!(!copy.recording().is_replayable());
        assert!(copy.recording().lock().chunks.is_empty(), "memory freed");
        assert!(copy.collect().await.is_err());
    }

    #[tokio::test]
    async fn a_body_not_read_to_its_end_is_not_replayable() {
        let mut body = ReplayBody::new(stream(&["a", "b", "c"], false));
        let copy = body.copy();
        let _first_chunk = body.frame().await.unwrap().unwrap();
        drop(body);
        assert!(!copy.recording().is_replayable());
    }

    #[test]
    fn a_fresh_copy_does_not_claim_to_be_empty() {
        let body = ReplayBody::new(stream(&["a"], false));
        assert!(!body.copy().is_end_stream(), "boxing it would drop it");
    }

    #[tokio::test]
    async fn a_body_that_says_it_ended_is_complete_without_a_last_poll() {
        let mut body = ReplayBody::new(http_body_util::Full::new(Bytes::from_static(b"x")));
        let copy = body.copy();
        let _ = body.frame().await.unwrap().unwrap();
        assert!(body.is_end_stream());
        assert!(copy.recording().is_replayable());
        assert_eq!(copy.size_hint().exact(), Some(1));
        assert_eq!(copy.collect().await.unwrap().to_bytes(), "x");
    }
}
