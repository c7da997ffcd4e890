//! HTTP content negotiation shared by the crates' endpoints (`/metrics`, `/federate`): the
//! ranges of an `Accept` or `Accept-Encoding` header, and gzip when the client takes it.

use std::io::Write as _;

/// The ranges of an `Accept` / `Accept-Encoding` value: `(range, quality, version)`, the
/// quality 1 when absent and 0 when unreadable ("not acceptable").
pub fn media_ranges(header: &str) -> impl Iterator<Item = (&str, f32, Option<&str>)> {
    header.split(',').filter_map(|part| {
        let mut params = part.split(';').map(str::trim);
        let range = params.next().filter(|r| !r.is_empty())?;
        let (mut q, mut version) = (1.0_f32, None);
        for param in params {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            if name.trim().eq_ignore_ascii_case("q") {
                q = value.parse().unwrap_or(0.0);
            } else if name.trim().eq_ignore_ascii_case("version") {
                version = Some(value);
            }
        }
        Some((range, q, version))
    })
}

/// The values of every field line of `name`, joined with commas: repeated lines form one
/// list (RFC 9110, section 5.3), so `Accept-Encoding: br` then `Accept-Encoding: gzip`
/// accepts gzip.
pub fn joined(headers: &http::HeaderMap, name: http::header::HeaderName) -> String {
    let mut out = String::new();
    for v in headers.get_all(name).iter().filter_map(|v| v.to_str().ok()) {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(v);
    }
    out
}

/// True when `Accept-Encoding` allows gzip: named (or `x-gzip`) with a non-zero quality, or
/// not named and `*` allowed.
pub fn accepts_gzip(enc: &str) -> bool {
    let mut any = None;
    for (coding, q, _) in media_ranges(enc) {
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            return q > 0.0;
        }
        if coding == "*" {
            any = Some(q > 0.0);
        }
    }
    any.unwrap_or(false)
}

/// `body` gzipped (fast level, as scrape pages are written once per scrape) when `headers`
/// accept gzip; `None` when they do not (or compressing failed): send it as it is.
pub fn gzip_if_accepted(headers: &http::HeaderMap, body: &[u8]) -> Option<Vec<u8>> {
    if !accepts_gzip(&joined(headers, http::header::ACCEPT_ENCODING)) {
        return None;
    }
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    enc.write_all(body).and_then(|()| enc.finish()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Repeated `Accept-Encoding` lines are one list: gzip in the second line counts.
    #[test]
    fn repeated_header_lines_form_one_list() {
        let mut h = http::HeaderMap::new();
        h.append(http::header::ACCEPT_ENCODING, "br".parse().unwrap());
        h.append(http::header::ACCEPT_ENCODING, "gzip".parse().unwrap());
        assert_eq!(joined(&h, http::header::ACCEPT_ENCODING), "br,gzip");
        assert!(gzip_if_accepted(&h, b"page").is_some());
        assert!(gzip_if_accepted(&http::HeaderMap::new(), b"page").is_none());
    }

    #[test]
    fn gzip_is_taken_as_http_says() {
        assert!(accepts_gzip("gzip, deflate"));
        assert!(accepts_gzip("br;q=1.0, gzip;q=0.8"));
        assert!(accepts_gzip("*"));
        assert!(accepts_gzip("X-GZIP"));
        assert!(!accepts_gzip("gzip;q=0, *"));
        assert!(!accepts_gzip("*;q=0"));
        assert!(!accepts_gzip("gzip;q=0, identity"));
        assert!(!accepts_gzip("identity"));
        assert!(!accepts_gzip(""));
        let mut h = http::HeaderMap::new();
        assert_eq!(gzip_if_accepted(&h, b"x"), None);
        h.insert(http::header::ACCEPT_ENCODING, "gzip".parse().unwrap());
        let zipped = gzip_if_accepted(&h, b"hello").unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&zipped[..]), &mut out)
            .unwrap();
        assert_eq!(out, "hello");
    }
}
