//! [`CountedBody`]: a response body of unknown size, counted as it is sent.

use std::pin::Pin;
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
