//! [`CountedBody`]: a body of unknown size, counted as it passes. A response's count is
//! recorded when it has been sent; a request's is read when the response is recorded.

use std::any::Any;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use metrics::Histogram;

/// Where a [`CountedBody`]'s data bytes go.
enum Count {
    /// A response: counted here, recorded in `http.server.response.body.size` once, when the
    /// body ends, fails, or is dropped unfinished (the client went away: what was handed to
    /// the server so far).
    Record {
        sent: u64,
        histogram: Option<Histogram>,
    },
    /// A request: added to a count the finished request reads.
    Shared(Arc<AtomicU64>),
}

impl Count {
    fn add(&mut self, n: u64) {
        match self {
            Count::Record { sent, .. } => *sent += n,
            Count::Shared(read) => {
                read.fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// The body is over: a response's size is what was sent.
    fn finish(&mut self) {
        if let Count::Record { sent, histogram } = self
            && let Some(h) = histogram.take()
        {
            h.record(*sent as f64);
        }
    }
}

pin_project_lite::pin_project! {
    /// Passes a body through, counting its data bytes (see [`Count`]).
    pub(crate) struct CountedBody {
        #[pin]
        inner: Body,
        count: Count,
    }

    impl PinnedDrop for CountedBody {
        fn drop(this: Pin<&mut Self>) {
            this.project().count.finish();
        }
    }
}

impl CountedBody {
    /// A streamed response, recorded into `histogram` once sent.
    pub(crate) fn response(inner: Body, histogram: Histogram) -> Self {
        Self {
            inner,
            count: Count::Record {
                sent: 0,
                histogram: Some(histogram),
            },
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
                    this.count.add(data.len() as u64);
                }
            }
            // The end, or a failure.
            None | Some(Err(_)) => this.count.finish(),
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

/// Wraps the request's body in a [`CountedBody`] when it is axum's `Body` (as under
/// `Router::layer`); another body type is left alone and its size not recorded.
pub(crate) fn count_request_body<B: 'static>(req: &mut http::Request<B>) -> ReqSize {
    let Some(body) = (req.body_mut() as &mut dyn Any).downcast_mut::<Body>() else {
        return ReqSize::Unknown;
    };
    let read = Arc::new(AtomicU64::new(0));
    *body = Body::new(CountedBody {
        inner: std::mem::take(body),
        count: Count::Shared(read.clone()),
    });
    ReqSize::Counted(read)
}
