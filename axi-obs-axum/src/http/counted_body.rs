//! Bodies of unknown size, counted as they pass: [`CountedBody`] for responses (recorded when
//! sent), [`CountingRequestBody`] for requests (read when the response is recorded).

use std::any::Any;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use metrics::Histogram;

pin_project_lite::pin_project! {
    /// Passes a streamed response body through, counting its data bytes, and records the
    /// count in `http.server.response.body.size` once: when the body ends, fails, or is
    /// dropped unfinished (the client went away: what was handed to the server so far).
    pub(crate) struct CountedBody {
        #[pin]
        inner: Body,
        sent: u64,
        histogram: Option<Histogram>,
    }

    impl PinnedDrop for CountedBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(h) = this.histogram.take() {
                h.record(*this.sent as f64);
            }
        }
    }
}

impl CountedBody {
    pub(crate) fn new(inner: Body, histogram: Histogram) -> Self {
        Self {
            inner,
            sent: 0,
            histogram: Some(histogram),
        }
    }
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let polled = std::task::ready!(this.inner.poll_frame(cx));
        match &polled {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    *this.sent += data.len() as u64;
                }
            }
            // The end, or a failure: the size is what was sent.
            None | Some(Err(_)) => {
                if let Some(h) = this.histogram.take() {
                    h.record(*this.sent as f64);
                }
            }
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The size of a request's body, for `http.server.request.body.size`.
#[derive(Debug)]
pub(crate) enum ReqSize {
    /// Not recorded: body sizes are off, or the body could not be counted.
    Unknown,
    /// From `Content-Length` or an exact size hint.
    Known(u64),
    /// Counted as the handler reads the body: what it has read when the response is recorded.
    Counted(Arc<AtomicU64>),
}

impl ReqSize {
    pub(crate) fn bytes(&self) -> Option<u64> {
        match self {
            ReqSize::Unknown => None,
            ReqSize::Known(n) => Some(*n),
            ReqSize::Counted(read) => Some(read.load(Ordering::Relaxed)),
        }
    }
}

/// Wraps the request's body in a [`CountingRequestBody`] when it is axum's `Body` (as under
/// `Router::layer`); another body type is left alone and its size not recorded.
pub(crate) fn count_request_body<B: 'static>(req: &mut http::Request<B>) -> ReqSize {
    let Some(body) = (req.body_mut() as &mut dyn Any).downcast_mut::<Body>() else {
        return ReqSize::Unknown;
    };
    let read = Arc::new(AtomicU64::new(0));
    *body = Body::new(CountingRequestBody {
        inner: std::mem::take(body),
        read: read.clone(),
    });
    ReqSize::Counted(read)
}

pin_project_lite::pin_project! {
    /// Passes a request body through, adding the data bytes read to a shared count.
    pub(crate) struct CountingRequestBody {
        #[pin]
        inner: Body,
        read: Arc<AtomicU64>,
    }
}

impl http_body::Body for CountingRequestBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let polled = std::task::ready!(this.inner.poll_frame(cx));
        if let Some(Ok(frame)) = &polled
            && let Some(data) = frame.data_ref()
        {
            this.read.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
