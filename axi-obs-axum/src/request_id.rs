//! Request ids: accept a valid incoming one, or generate one; hand it to the handler.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

/// The request id of the current request: an extractor, and [`RequestId::current`].
///
/// ```
/// use axi_obs_axum::RequestId;
/// async fn handler(id: RequestId) -> String {
///     format!("your request id is {}", id.as_str())
/// }
/// # let _: axum::routing::MethodRouter = axum::routing::get(handler);
/// ```
///
/// The layer makes the id current while it polls the request's future: the handler with its
/// extractors, and every layer added to the router before [`ObsLayer`](crate::ObsLayer). The
/// extractor and [`RequestId::current`] read it there, with no entry in the request's
/// extensions (adding one costs about 0.1 µs a request, as axum's map grows on its fourth
/// entry). `Extension<RequestId>` and `request.extensions()` find nothing unless
/// [`ObsLayer::request_id_extension`](crate::ObsLayer::request_id_extension) is on; turn it
/// on too for a service inside the layer that runs the handler on a task of its own (tower's
/// `Buffer`, a middleware that spawns), where the extractor then finds the extension.
///
/// Extracting it where no layer observes the request ([`ObsLayer::exclude_paths`](crate::ObsLayer::exclude_paths),
/// a route added after the layer) is answered `500` ([`MissingRequestId`]); extract
/// `Option<RequestId>` to handle that case yourself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub(crate) HeaderValue);

impl RequestId {
    /// The id as text (always visible ASCII).
    pub fn as_str(&self) -> &str {
        // Only ids made of visible ASCII are accepted or generated.
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }

    /// The id of the request whose future the layer is polling on this thread: `Some` in
    /// the handler, its extractors, layers added before [`ObsLayer`](crate::ObsLayer) and code
    /// they call, across their `.await`s; `None` elsewhere. That includes a task the handler
    /// spawns, a streamed response body (polled by the server after the handler returned),
    /// and `Drop` code of a handler whose client went away: extract the id first and move it
    /// there.
    ///
    /// ```
    /// fn audit(what: &str) {
    ///     let id = axi_obs_axum::RequestId::current();
    ///     println!("{what} (request {})", id.as_ref().map_or("-", |id| id.as_str()));
    /// }
    /// # audit("started");
    /// ```
    pub fn current() -> Option<RequestId> {
        CURRENT
            .try_with(|c| {
                let id = c.take();
                c.set(id.clone());
                id
            })
            .ok()
            .flatten()
    }

    /// The current id, else the one in the request's extensions (put there with
    /// `ObsLayer::request_id_extension`, read from a task other than the layer's).
    fn of(parts: &Parts) -> Option<RequestId> {
        RequestId::current().or_else(|| parts.extensions.get::<RequestId>().cloned())
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

thread_local! {
    /// The id of the request whose service or future runs on this thread.
    static CURRENT: Cell<Option<RequestId>> = const { Cell::new(None) };
}

/// The request id made current by [`enter`]; the one before it is current again on drop.
pub(crate) struct Entered {
    previous: Option<RequestId>,
}

/// Makes `id` the current request id until the guard is dropped. Layers nest: the innermost
/// layer's id is current inside it, the outer one's again after it. (A copy: the id's bytes
/// are shared, so it costs a reference count. Moving the id in and out instead measured
/// slower, as the poll then carries its result further.)
pub(crate) fn enter(id: &RequestId) -> Entered {
    let previous = CURRENT
        .try_with(|c| c.replace(Some(id.clone())))
        .ok()
        .flatten();
    Entered { previous }
}

impl Drop for Entered {
    fn drop(&mut self) {
        let previous = self.previous.take();
        // The thread's storage is only gone while the thread exits.
        let _ = CURRENT.try_with(|c| c.set(previous));
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = MissingRequestId;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        RequestId::of(parts).ok_or(MissingRequestId(()))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(RequestId::of(parts))
    }
}

/// The [`RequestId`] extractor found no id: the request did not pass through
/// [`ObsLayer`](crate::ObsLayer). Answered `500 Internal Server Error`, as axum answers a
/// missing extension.
#[derive(Debug)]
pub struct MissingRequestId(());

impl std::fmt::Display for MissingRequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "no request id: the handler is not behind axi_obs_axum::ObsLayer (a route added \
             after the layer, or a path in ObsLayer::exclude_paths), or runs on a task of its \
             own inside it (see ObsLayer::request_id_extension)",
        )
    }
}

impl std::error::Error for MissingRequestId {}

impl IntoResponse for MissingRequestId {
    fn into_response(self) -> Response {
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

/// How request ids are read and made.
#[derive(Clone, Debug)]
pub(crate) struct RequestIdConfig {
    pub(crate) header: HeaderName,
    pub(crate) max_len: usize,
    /// Also in the request's extensions.
    pub(crate) extension: bool,
}

impl Default for RequestIdConfig {
    fn default() -> Self {
        Self {
            header: HeaderName::from_static("x-request-id"),
            max_len: 128,
            extension: false,
        }
    }
}

impl RequestIdConfig {
    /// The incoming id if it is valid (1..=max_len characters of `A-Z a-z 0-9 - _ . : @ /
    /// + =`), else a fresh one.
    pub(crate) fn resolve(&self, headers: &HeaderMap) -> RequestId {
        if let Some(v) = crate::headers::get(headers, &self.header)
            && self.valid(v.as_bytes())
        {
            return RequestId(v.clone());
        }
        RequestId(generate())
    }

    fn valid(&self, id: &[u8]) -> bool {
        !id.is_empty()
            && id.len() <= self.max_len
            && id.iter().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(b, b'-' | b'_' | b'.' | b':' | b'@' | b'/' | b'+' | b'=')
            })
    }
}

thread_local! {
    static RNG: Cell<(u64, u64)> = Cell::new(seed());
}

fn seed() -> (u64, u64) {
    // RandomState is keyed from the OS's randomness once per process, then per thread.
    let s = std::collections::hash_map::RandomState::new();
    let mut a = s.build_hasher();
    a.write_u64(0x9e37_79b9_7f4a_7c15);
    let mut b = s.build_hasher();
    b.write_u64(0xd1b5_4a32_d192_ed03);
    (a.finish() | 1, b.finish() | 1)
}

fn next() -> u64 {
    RNG.with(|c| {
        // xorshift128+
        let (mut s1, s0) = c.get();
        let result = s0.wrapping_add(s1);
        s1 ^= s1 << 23;
        s1 = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
        c.set((s0, s1));
        result
    })
}

/// A fresh random 128-bit id, 32 lower-case hex characters.
fn generate() -> HeaderValue {
    let mut buf = [0u8; 32];
    let hex = axi_obs_core::__private::hex16;
    buf[..16].copy_from_slice(&hex(next()));
    buf[16..].copy_from_slice(&hex(next()));
    // One allocation that every clone shares (a `Bytes` copied from a slice would allocate
    // again on its first clone). Hex digits are always a valid header value.
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(buf))
        .unwrap_or(HeaderValue::from_static("0"))
}

/// A pseudo-random number in `[0, 1)`, for access-log sampling.
pub(crate) fn unit_random() -> f64 {
    (next() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ids_are_kept_invalid_replaced() {
        let c = RequestIdConfig::default();
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc-123_X.y:z"));
        assert_eq!(c.resolve(&h).as_str(), "abc-123_X.y:z");
        for bad in ["", "has space", "quote\"", "{json}"] {
            h.insert("x-request-id", HeaderValue::from_str(bad).unwrap());
            let id = c.resolve(&h);
            assert_ne!(id.as_str(), bad);
            assert_eq!(id.as_str().len(), 32);
        }
        h.insert(
            "x-request-id",
            HeaderValue::from_str(&"a".repeat(129)).unwrap(),
        );
        assert_eq!(c.resolve(&h).as_str().len(), 32);
    }

    #[test]
    fn entered_ids_nest_and_restore() {
        let a = RequestId(HeaderValue::from_static("a"));
        let b = RequestId(HeaderValue::from_static("b"));
        assert_eq!(RequestId::current(), None);
        {
            let _outer = enter(&a);
            assert_eq!(RequestId::current().as_ref(), Some(&a));
            {
                let _inner = enter(&b);
                assert_eq!(RequestId::current().as_ref(), Some(&b));
                // Reading it leaves it in place.
                assert_eq!(RequestId::current().as_ref(), Some(&b));
            }
            assert_eq!(RequestId::current().as_ref(), Some(&a));
        }
        assert_eq!(RequestId::current(), None);
    }

    #[test]
    fn generated_ids_differ() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(a.to_str().unwrap().bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
