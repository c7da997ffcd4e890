//! Request ids: accept a valid incoming one, or generate one.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};

use http::{HeaderMap, HeaderName, HeaderValue};

/// The request id of the current request, in the request's extensions.
///
/// ```
/// use axi_obs_axum::RequestId;
/// async fn handler(id: axum::Extension<RequestId>) -> String {
///     format!("your request id is {}", id.as_str())
/// }
/// ```
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
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How request ids are read and made.
#[derive(Clone, Debug)]
pub(crate) struct RequestIdConfig {
    pub(crate) header: HeaderName,
    pub(crate) max_len: usize,
}

impl Default for RequestIdConfig {
    fn default() -> Self {
        Self {
            header: HeaderName::from_static("x-request-id"),
            max_len: 128,
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
    fn generated_ids_differ() {
        let a = generate();
        let b = generate();
        assert_ne!(a, b);
        assert!(a.to_str().unwrap().bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
