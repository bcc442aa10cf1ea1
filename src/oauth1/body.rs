//! Request bodies the signer can read without waiting.

use std::{
    pin::Pin,
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use http_body::Body;
use http_body_util::{
    combinators::{BoxBody, UnsyncBoxBody},
    Empty, Full,
};

/// A request body the OAuth 1 signer can read at once, and rebuild.
///
/// RFC 5849 signs the parameters of an `application/x-www-form-urlencoded`
/// body (§3.4.1.3.1), `oauth_body_hash` covers any other body, and body
/// placement (§3.5.2) appends to the form. All three need the *whole* body
/// before the first byte is sent, so the signer reads it, and gives the
/// inner service a body with the same bytes.
///
/// Bodies that already hold all their bytes implement this: `Full<Bytes>`,
/// `Empty<Bytes>`, `String`, `Bytes`, `Vec<u8>`. Boxed bodies implement it
/// too, but cannot be read (they may be streams): a request with a boxed
/// body is signed as long as its body takes no part in the signature (not a
/// form, no body hash, header or query placement), and fails with
/// [`Error::is_body`](super::Error::is_body) otherwise. To sign a streaming
/// form, collect it first (`http_body_util::BodyExt::collect`) and send a
/// `Full<Bytes>`; buffering a stream of unknown size inside a middleware
/// would hide a memory cost from you.
///
/// Implement it for your own body type:
///
/// ```
/// use bytes::Bytes;
/// use tower_alf::oauth1::SignableBody;
///
/// struct MyBody(Bytes);
///
/// impl SignableBody for MyBody {
///     fn try_into_bytes(self) -> Result<Bytes, Self> {
///         Ok(self.0)
///     }
///     fn from_bytes(bytes: Bytes) -> Option<Self> {
///         Some(MyBody(bytes))
///     }
/// }
/// ```
pub trait SignableBody: Sized {
    /// The whole body, or the body itself back when it cannot be read
    /// without waiting.
    fn try_into_bytes(self) -> Result<Bytes, Self>;

    /// A body holding `bytes`, or `None` when this type cannot hold them
    /// (an `Empty` body given bytes).
    fn from_bytes(bytes: Bytes) -> Option<Self>;
}

impl SignableBody for Full<Bytes> {
    fn try_into_bytes(mut self) -> Result<Bytes, Self> {
        // NOTE: `Full` yields its one data frame on the first poll and never
        // waits, so a no-op waker is enough.
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(&mut self).poll_frame(&mut cx) {
            Poll::Ready(Some(Ok(frame))) => Ok(frame.into_data().unwrap_or_default()),
            Poll::Ready(None) => Ok(Bytes::new()),
            Poll::Ready(Some(Err(never))) => match never {},
            Poll::Pending => Err(self),
        }
    }

    fn from_bytes(bytes: Bytes) -> Option<Self> {
        Some(Full::new(bytes))
    }
}

impl SignableBody for Empty<Bytes> {
    fn try_into_bytes(self) -> Result<Bytes, Self> {
        Ok(Bytes::new())
    }

    fn from_bytes(bytes: Bytes) -> Option<Self> {
        bytes.is_empty().then(Empty::new)
    }
}

impl SignableBody for Bytes {
    fn try_into_bytes(self) -> Result<Bytes, Self> {
        Ok(self)
    }

    fn from_bytes(bytes: Bytes) -> Option<Self> {
        Some(bytes)
    }
}

impl SignableBody for Vec<u8> {
    fn try_into_bytes(self) -> Result<Bytes, Self> {
        Ok(Bytes::from(self))
    }

    fn from_bytes(bytes: Bytes) -> Option<Self> {
        Some(bytes.to_vec())
    }
}

impl SignableBody for String {
    fn try_into_bytes(self) -> Result<Bytes, Self> {
        Ok(Bytes::from(self))
    }

    fn from_bytes(bytes: Bytes) -> Option<Self> {
        String::from_utf8(bytes.to_vec()).ok()
    }
}

impl<E> SignableBody for BoxBody<Bytes, E> {
    fn try_into_bytes(self) -> Result<Bytes, Self> {
        Err(self)
    }

    fn from_bytes(_bytes: Bytes) -> Option<Self> {
        None
    }
}

impl<E> SignableBody for UnsyncBoxBody<Bytes, E> {
    fn try_into_bytes(self) -> Result<Bytes, Self> {
        Err(self)
    }

    fn from_bytes(_bytes: Bytes) -> Option<Self> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_bodies_give_their_bytes() {
        let body = Full::new(Bytes::from_static(b"a=1"));
        assert_eq!(body.try_into_bytes().ok().unwrap(), "a=1");
        let empty = Full::new(Bytes::new());
        assert!(empty.try_into_bytes().ok().unwrap().is_empty());
    }

    #[test]
    fn empty_bodies_cannot_hold_bytes() {
        assert!(Empty::<Bytes>::from_bytes(Bytes::from_static(b"x")).is_none());
        assert!(Empty::<Bytes>::from_bytes(Bytes::new()).is_some());
    }
}
