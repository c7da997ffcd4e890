//! Header look-ups for names outside the standard set (`traceparent`, `x-request-id`).
//!
//! A `HeaderMap` look-up hashes the name; for a name that is not a standard header that is the
//! larger part of the cost, and most requests carry only a handful of headers. Below
//! [`SCAN_BELOW`] names a comparison of each name is cheaper and finds the same value.

use http::{HeaderMap, HeaderName, HeaderValue};

/// Maps with fewer distinct names than this are scanned instead of hashed into.
const SCAN_BELOW: usize = 12;

/// The first value of `name`, like [`HeaderMap::get`].
pub(crate) fn get<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    if headers.keys_len() < SCAN_BELOW {
        // `iter` yields each name's values in order, so the first match is the first value.
        headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    } else {
        headers.get(name)
    }
}

/// Whether any of `names` is present, like [`HeaderMap::contains_key`] for each.
pub(crate) fn contains_any(headers: &HeaderMap, names: &[HeaderName]) -> bool {
    if headers.keys_len() < SCAN_BELOW {
        headers.keys().any(|k| names.contains(k))
    } else {
        names.iter().any(|n| headers.contains_key(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_find_what_lookups_find() {
        let name = HeaderName::from_static("x-request-id");
        let other = HeaderName::from_static("traceparent");
        for extra in [0, 3, 20] {
            let mut h = HeaderMap::new();
            for i in 0..extra {
                h.insert(
                    HeaderName::from_bytes(format!("x-filler-{i}").as_bytes()).unwrap(),
                    HeaderValue::from_static("v"),
                );
            }
            assert_eq!(get(&h, &name), None);
            assert!(!contains_any(&h, &[name.clone(), other.clone()]));
            h.append(&name, HeaderValue::from_static("first"));
            h.append(&name, HeaderValue::from_static("second"));
            assert_eq!(get(&h, &name), h.get(&name));
            assert_eq!(get(&h, &name).unwrap(), "first");
            assert!(contains_any(&h, &[other.clone(), name.clone()]));
            assert!(!contains_any(&h, std::slice::from_ref(&other)));
        }
    }
}
