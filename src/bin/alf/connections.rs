//! A connector that keeps at most N connections open at once to each
//! origin: `alf --concurrency C` opens one connection per request in
//! flight.
//!
//! hyper-util's pool starts a new connection whenever a request finds no
//! idle one, even while another is being handed back to the pool, and
//! keeps the loser of that race: at `--concurrency 512`, some 950
//! connections for 512 requests in flight. Here each connection holds a
//! permit of a semaphore of C, released when the connection is dropped; a
//! request that finds none idle while C are open waits for the next one
//! handed back (hyper-util races its checkout against the connect, so the
//! first connection to come free is taken). The bound is per origin, as
//! the pool is: idle connections to one origin (before a redirect) never
//! hold up a connection to another.

use std::{
    collections::HashMap,
    future::Future,
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{BoxError, Service, ServiceExt};

/// `inner`, opening at most `limit` connections at once to each origin.
#[derive(Debug, Clone)]
pub(crate) struct Bounded<C> {
    inner: C,
    limit: usize,
    /// A semaphore of `limit` permits per origin (scheme and authority).
    origins: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl<C> Bounded<C> {
    pub(crate) fn new(inner: C, limit: usize) -> Self {
        Self {
            inner,
            limit: limit.clamp(1, Semaphore::MAX_PERMITS),
            origins: Arc::default(),
        }
    }

    fn permits(&self, uri: &Uri) -> Arc<Semaphore> {
        let origin = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or_default(),
            uri.authority().map_or("", |a| a.as_str())
        );
        let mut origins = self.origins.lock().unwrap_or_else(|e| e.into_inner());
        origins
            .entry(origin)
            .or_insert_with(|| Arc::new(Semaphore::new(self.limit)))
            .clone()
    }
}

impl<C> Service<Uri> for Bounded<C>
where
    C: Service<Uri> + Clone + Send + 'static,
    C::Response: Send,
    C::Future: Send,
    C::Error: Into<BoxError>,
{
    type Response = BoundedIo<C::Response>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // The inner connector is readied in `call`, on the clone it uses.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (inner, permits) = (self.inner.clone(), self.permits(&uri));
        Box::pin(async move {
            let permit = permits.acquire_owned().await?;
            let io = inner.oneshot(uri).await.map_err(Into::into)?;
            Ok(BoundedIo {
                io,
                _permit: permit,
            })
        })
    }
}

/// A connection holding its permit until it is dropped.
#[derive(Debug)]
pub(crate) struct BoundedIo<T> {
    io: T,
    _permit: OwnedSemaphorePermit,
}

impl<T: Read + Unpin> Read for BoundedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for BoundedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

impl<T: Connection> Connection for BoundedIo<T> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}
