//! Access-log metrics: requests by status class, method and virtual host, by bounded path
//! pattern, response bytes and a request-time histogram, recorded through the `metrics`
//! facade (so axi-obs-core renders them on `/metrics`).
//!
//! Cardinality is bounded by construction: methods outside the standard set are `_OTHER`;
//! at most `max_vhosts` virtual hosts and `max_paths` path labels exist, later ones fold into
//! `other`. A path takes the first configured pattern it matches (`*` is one segment, `**`
//! any number); otherwise, for 2xx and 3xx responses only (so a scanner's 404s cannot fill the
//! cap), the path itself with id-like segments (digits, long hex, UUIDs) replaced by `:id`.
//!
//! ```
//! use log_shipper::access::{AccessMetrics, PathPattern};
//! use log_shipper::parse::nginx::Access;
//!
//! let m = AccessMetrics::new(vec![PathPattern::parse("/docs/**").unwrap()], 100, 20, "-");
//! let a = Access { path: Some("/docs/guide/intro.html".into()), status: Some(200), ..Access::default() };
//! assert_eq!(m.path_label(&a), "/docs/**");
//! ```

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::names;
use crate::parse::nginx::Access;
use crate::visitors::UniqueVisitors;

/// A configured path pattern: segments separated by `/`, where `*` matches one segment and
/// `**` (last) any number of segments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPattern {
    text: String,
    segments: Vec<String>,
}

impl PathPattern {
    /// Parses a pattern such as `/docs/**` or `/api/users/*`.
    ///
    /// # Errors
    ///
    /// When it does not start with `/` or has `**` before its last segment.
    pub fn parse(text: &str) -> Result<Self, String> {
        let rest = text
            .strip_prefix('/')
            .ok_or_else(|| format!("path pattern {text:?} must start with /"))?;
        let segments: Vec<String> = rest.split('/').map(str::to_owned).collect();
        if segments[..segments.len() - 1].iter().any(|s| s == "**") {
            return Err(format!(
                "path pattern {text:?}: ** is allowed only at the end"
            ));
        }
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    /// The pattern as written (the label value).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut segs = rest.split('/');
        for (i, p) in self.segments.iter().enumerate() {
            if p == "**" && i == self.segments.len() - 1 {
                return true;
            }
            match segs.next() {
                Some(s) if p == "*" || p == s => {}
                _ => return false,
            }
        }
        segs.next().is_none()
    }
}

/// A set of label values that stops growing at its cap.
#[derive(Debug)]
struct Capped {
    cap: usize,
    seen: Mutex<HashSet<String>>,
}

impl Capped {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// Whether `value` is one of the set's, adding it when `learn` and there is room.
    fn has(&self, value: &str, learn: bool) -> bool {
        if learn {
            return self.admit(value);
        }
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(value)
    }

    fn admit(&self, value: &str) -> bool {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.contains(value) {
            return true;
        }
        if seen.len() < self.cap {
            seen.insert(value.to_owned());
            return true;
        }
        false
    }
}

/// Label value for everything past a cap.
pub const OTHER: &str = "other";

const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Derives access metrics from parsed access-log lines. See the [module documentation](self).
///
/// The metric handles of a label set are looked up in the recorder the first time the set is
/// seen and kept (the sets are bounded by the caps), so a line costs no registry search.
#[derive(Debug)]
pub struct AccessMetrics {
    patterns: Vec<PathPattern>,
    paths: Capped,
    vhosts: Capped,
    default_vhost: String,
    visitors: Option<UniqueVisitors>,
    handles: Mutex<Handles>,
}

/// Metric handles by label values (label values only, so bounded like them).
#[derive(Debug, Default)]
struct Handles {
    vhosts: HashMap<String, VhostHandles>,
    /// By path label, then status class.
    paths: HashMap<String, Vec<(&'static str, metrics::Counter)>>,
}

#[derive(Debug, Default)]
struct VhostHandles {
    /// By method and status class.
    requests: Vec<((&'static str, &'static str), metrics::Counter)>,
    bytes: Option<metrics::Counter>,
    duration: Option<metrics::Histogram>,
}

impl AccessMetrics {
    /// Metrics with these path patterns, at most `max_paths` path labels and `max_vhosts`
    /// virtual hosts, and `default_vhost` for lines whose format has no `$host`.
    pub fn new(
        patterns: Vec<PathPattern>,
        max_paths: usize,
        max_vhosts: usize,
        default_vhost: &str,
    ) -> Self {
        Self {
            patterns,
            paths: Capped::new(max_paths),
            vhosts: Capped::new(max_vhosts),
            default_vhost: default_vhost.to_owned(),
            visitors: None,
            handles: Mutex::new(Handles::default()),
        }
    }

    /// Also estimates unique visitors per virtual host and window (see
    /// [`visitors`](crate::visitors)). Defaults to none.
    #[must_use]
    pub fn with_unique_visitors(mut self, visitors: UniqueVisitors) -> Self {
        self.visitors = Some(visitors);
        self
    }

    /// Ends the unique-visitor window if `now` (nanoseconds since the epoch) is past it.
    pub fn tick(&self, now: u64) {
        if let Some(v) = &self.visitors {
            v.tick(now);
        }
    }

    /// The unique-visitor estimates of the last complete window, if they are kept.
    pub fn unique_visitors(&self) -> Option<&UniqueVisitors> {
        self.visitors.as_ref()
    }

    /// The `status_class` label: `1xx` ... `5xx`, or `other`.
    pub fn status_class(status: Option<u16>) -> &'static str {
        match status {
            Some(100..=199) => "1xx",
            Some(200..=299) => "2xx",
            Some(300..=399) => "3xx",
            Some(400..=499) => "4xx",
            Some(500..=599) => "5xx",
            _ => OTHER,
        }
    }

    /// The `method` label: a standard method, else `_OTHER`.
    pub fn method_label(method: Option<&str>) -> &'static str {
        method
            .and_then(|m| METHODS.iter().find(|k| **k == m))
            .copied()
            .unwrap_or("_OTHER")
    }

    /// The `path` label for a line (see the [module documentation](self)).
    pub fn path_label(&self, a: &Access) -> String {
        self.path_label_cow(a).into_owned()
    }

    fn path_label_cow<'a>(&'a self, a: &'a Access) -> Cow<'a, str> {
        let Some(path) = a.path.as_deref() else {
            return Cow::Borrowed(OTHER);
        };
        if let Some(p) = self.patterns.iter().find(|p| p.matches(path)) {
            return Cow::Borrowed(p.as_str());
        }
        let normalized = normalize_cow(path);
        if self
            .paths
            .has(&normalized, matches!(a.status, Some(200..=399)))
        {
            normalized
        } else {
            Cow::Borrowed(OTHER)
        }
    }

    #[cfg(test)]
    fn vhost_label(&self, a: &Access) -> String {
        self.vhost_label_cow(a).into_owned()
    }

    fn vhost_label_cow<'a>(&'a self, a: &'a Access) -> Cow<'a, str> {
        let Some(host) = a.host.as_deref() else {
            return Cow::Borrowed(&self.default_vhost);
        };
        // `$host` may carry a port in some formats; the label is the name (an IPv6 literal
        // keeps its brackets).
        let host = match host.strip_prefix('[') {
            Some(rest) => rest.find(']').map_or(host, |i| &host[..i + 2]),
            None => host.split(':').next().unwrap_or(host),
        };
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        };
        // Not learnt from absolute-form requests (`GET http://any.example/`, sent as to a
        // proxy: open-proxy scanners), from which nginx takes `$host`: they would fill the
        // cap before the real names.
        if self.vhosts.has(&host, !a.absolute_target) {
            host
        } else {
            Cow::Borrowed(OTHER)
        }
    }

    /// Records one access-log line, read now.
    pub fn observe(&self, a: &Access) {
        self.observe_at(a, crate::record::now_unix_nano());
    }

    /// Records one access-log line read at `now` (nanoseconds since the epoch; the
    /// unique-visitor windows follow it).
    pub fn observe_at(&self, a: &Access, now: u64) {
        let class = Self::status_class(a.status);
        let vhost = self.vhost_label_cow(a);
        if let (Some(v), Some(addr)) = (&self.visitors, a.remote_addr.as_deref()) {
            v.observe(&vhost, addr, a.user_agent.as_deref(), now);
        }
        let method = Self::method_label(a.method.as_deref());
        let path = self.path_label_cow(a);
        let mut handles = self
            .handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let h = &mut *handles;
        let v = match h.vhosts.get_mut(&*vhost) {
            Some(v) => v,
            None => h.vhosts.entry(vhost.to_string()).or_default(),
        };
        let requests = match v.requests.iter().find(|(k, _)| *k == (method, class)) {
            Some((_, c)) => c,
            None => {
                let c = metrics::counter!(names::REQUESTS,
                    names::VHOST => vhost.to_string(), names::METHOD => method, names::STATUS_CLASS => class);
                v.requests.push(((method, class), c));
                &v.requests[v.requests.len() - 1].1
            }
        };
        requests.increment(1);
        if let Some(bytes) = a.body_bytes_sent.or(a.bytes_sent) {
            v.bytes
                .get_or_insert_with(
                    || metrics::counter!(names::RESPONSE_BYTES, names::VHOST => vhost.to_string()),
                )
                .increment(bytes);
        }
        if let Some(t) = a.request_time {
            v.duration
                .get_or_insert_with(|| {
                    metrics::histogram!(names::REQUEST_DURATION, names::VHOST => vhost.to_string())
                })
                .record(t);
        }
        let p = match h.paths.get_mut(&*path) {
            Some(p) => p,
            None => h.paths.entry(path.to_string()).or_default(),
        };
        match p.iter().find(|(k, _)| *k == class) {
            Some((_, c)) => c.increment(1),
            None => {
                let c = metrics::counter!(names::PATH_REQUESTS,
                    names::PATH => path.to_string(), names::STATUS_CLASS => class);
                c.increment(1);
                p.push((class, c));
            }
        }
    }
}

/// [`normalize`] without an allocation when the path is already normal (most are).
fn normalize_cow(path: &str) -> Cow<'_, str> {
    let unchanged = path.starts_with('/')
        && !path.starts_with("//")
        && path[1..]
            .split('/')
            .enumerate()
            .all(|(i, seg)| i < 8 && !id_like(seg));
    if unchanged {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(normalize(path))
    }
}

fn id_like(seg: &str) -> bool {
    let digits = !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit());
    let hex = seg.len() >= 16 && seg.bytes().all(|b| b.is_ascii_hexdigit());
    let uuid = seg.len() == 36
        && seg.bytes().filter(|b| *b == b'-').count() == 4
        && seg.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    digits || hex || uuid
}

/// The path with id-like segments replaced by `:id`, at most 8 segments (deeper ones `…`).
fn normalize(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.trim_start_matches('/').split('/').enumerate() {
        out.push('/');
        if i == 8 {
            out.push_str("...");
            break;
        }
        if id_like(seg) {
            out.push_str(":id");
        } else {
            out.push_str(seg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let p = PathPattern::parse("/api/users/*").unwrap();
        assert!(p.matches("/api/users/42"));
        assert!(!p.matches("/api/users/42/orders"));
        assert!(!p.matches("/api/users"));
        let p = PathPattern::parse("/docs/**").unwrap();
        assert!(p.matches("/docs/a/b/c.html"));
        assert!(p.matches("/docs/"));
        assert!(!p.matches("/doc"));
        assert!(PathPattern::parse("docs").is_err());
        assert!(PathPattern::parse("/**/x").is_err());
    }

    #[test]
    fn normalized_paths() {
        assert_eq!(normalize("/users/123/orders"), "/users/:id/orders");
        assert_eq!(
            normalize("/o/550e8400-e29b-41d4-a716-446655440000"),
            "/o/:id"
        );
        assert_eq!(normalize("/a/b/c/d/e/f/g/h/i/j"), "/a/b/c/d/e/f/g/h/...");
        assert_eq!(normalize("/"), "/");
        // The allocation-free path gives the same labels.
        for p in [
            "/",
            "",
            "/a",
            "a/b",
            "//a",
            "/a/b/",
            "/users/123/orders",
            "/x/deadbeefdeadbeef0",
            "/a/b/c/d/e/f/g/h",
            "/a/b/c/d/e/f/g/h/i",
            "/o/550e8400-e29b-41d4-a716-446655440000",
            "/docs/v1.2/intro.html",
            "/a//b",
            "/%20/é",
        ] {
            assert_eq!(normalize_cow(p), normalize(p), "{p:?}");
        }
    }

    #[test]
    fn the_path_cap_folds_into_other_and_404s_do_not_learn() {
        let m = AccessMetrics::new(vec![], 2, 1, "-");
        let a = |p: &str, s: u16| Access {
            path: Some(p.into()),
            status: Some(s),
            ..Access::default()
        };
        assert_eq!(m.path_label(&a("/scan/1.php", 404)), OTHER);
        assert_eq!(m.path_label(&a("/a.html", 200)), "/a.html");
        assert_eq!(m.path_label(&a("/a.html", 404)), "/a.html");
        assert_eq!(m.path_label(&a("/b.html", 304)), "/b.html");
        assert_eq!(m.path_label(&a("/c.html", 200)), OTHER);
        assert_eq!(m.path_label(&a("/b.html", 200)), "/b.html");
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(AccessMetrics::method_label(Some("GET")), "GET");
        assert_eq!(AccessMetrics::method_label(Some("FOO")), "_OTHER");
        assert_eq!(AccessMetrics::method_label(None), "_OTHER");
        assert_eq!(AccessMetrics::status_class(Some(503)), "5xx");
        assert_eq!(AccessMetrics::status_class(Some(99)), OTHER);
        let m = AccessMetrics::new(vec![], 1, 2, "-");
        let h = |h: &str, absolute_target: bool| Access {
            host: Some(h.into()),
            absolute_target,
            ..Access::default()
        };
        // Scanners' absolute-form requests do not take the places of the real hosts.
        assert_eq!(m.vhost_label(&h("proxy-probe.example", true)), OTHER);
        assert_eq!(m.vhost_label(&h("scan.example", true)), OTHER);
        assert_eq!(
            m.vhost_label(&h("Docs.example.com:443", false)),
            "docs.example.com"
        );
        assert_eq!(
            m.vhost_label(&h("docs.example.com", true)),
            "docs.example.com"
        );
        assert_eq!(
            m.vhost_label(&h("[2001:db8::1]:8080", false)),
            "[2001:db8::1]"
        );
        assert_eq!(m.vhost_label(&h("other.example.com", false)), OTHER);
        // No `$host` in the format: the default name.
        assert_eq!(m.vhost_label(&Access::default()), "-");
    }
}
