//! Recording the HTTP server metrics: names, labels, handles.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use axi_obs_core::__private::FxHasher;
use axi_obs_core::MetricsRecorder;
use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder, SharedString, Unit};

use super::append_map::AppendMap;
use super::methods::{METHODS, method_index};
use crate::names::{self, attr, axum_prometheus as ap};

static META: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// Which metric names the layer records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Naming {
    /// OpenTelemetry semantic conventions: `http.server.request.duration`,
    /// `http.server.active_requests` (Prometheus: `http_server_request_duration_seconds`,
    /// `http_server_active_requests`) with `http_request_method`, `http_route`,
    /// `http_response_status_code`, `url_scheme`, `network_protocol_version`, `error_type`.
    #[default]
    OpenTelemetry,
    /// The names axum-prometheus 0.10 uses, for dashboards migrating from it:
    /// `axum_http_requests_total`, `axum_http_requests_duration_seconds` (its buckets),
    /// `axum_http_requests_pending`, labels `method`, `endpoint`, `status`. Unlike
    /// axum-prometheus, unmatched requests get `endpoint="unmatched"`, never the raw path.
    AxumPrometheus,
}

/// Where metrics go: the process's global recorder, or an explicit one.
#[derive(Clone, Debug)]
pub(crate) enum Sink {
    Global,
    Explicit(MetricsRecorder),
}

/// Whether `r` keeps what it is given: not `metrics`' no-op fallback (a zero-sized type), which
/// `metrics::with_recorder` hands out before a global recorder is installed. A recorder of a
/// zero-sized type of one's own (one that forwards to statics) looks the same and is not
/// recorded into; every exporter in use holds state.
pub(crate) fn keeps_metrics(r: &dyn Recorder) -> bool {
    std::mem::size_of_val(r) != 0
}

impl Sink {
    fn with<T>(&self, f: impl FnOnce(&dyn Recorder) -> T) -> T {
        match self {
            Sink::Global => metrics::with_recorder(f),
            Sink::Explicit(r) => f(r),
        }
    }
}

/// Label pairs a hook returns.
pub(crate) type LabelPairs = Vec<(&'static str, String)>;
/// The application's custom-label hook.
pub(crate) type LabelHook = Box<dyn Fn(&crate::RequestView<'_>) -> LabelPairs + Send + Sync>;

/// Labels added by the application's hook, each key capped in distinct values.
pub(crate) struct CustomLabels {
    pub(crate) hook: LabelHook,
    pub(crate) cap: usize,
    seen: Mutex<FxMap<&'static str, FxSet<String>>>,
    /// Panics of the hook so far (warned of at the 1st, 2nd, 4th, 8th...).
    panics: AtomicU64,
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;
type FxSet<T> = HashSet<T, BuildHasherDefault<FxHasher>>;

/// The value used for a custom label once its key reached the cap.
pub const CUSTOM_LABEL_OVERFLOW: &str = "_other";

impl CustomLabels {
    pub(crate) fn new(hook: LabelHook, cap: usize) -> Self {
        Self {
            hook,
            cap,
            seen: Mutex::default(),
            panics: AtomicU64::new(0),
        }
    }

    /// The hook's labels for `view`, capped. A panic of the hook is caught: the request is
    /// then recorded without custom labels (it still gets its response, metrics and log line).
    pub(crate) fn labels(&self, view: &crate::RequestView<'_>) -> Vec<Label> {
        let raw = match std::panic::catch_unwind(AssertUnwindSafe(|| (self.hook)(view))) {
            Ok(raw) => raw,
            Err(payload) => {
                let n = self.panics.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(
                        panic = %super::service::panic_message(payload),
                        panics = n,
                        "the custom_labels hook panicked: request recorded without custom labels"
                    );
                }
                return Vec::new();
            }
        };
        if raw.is_empty() {
            return Vec::new();
        }
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        raw.into_iter()
            .map(|(k, v)| {
                let values = seen.entry(k).or_default();
                if values.contains(v.as_str()) {
                    Label::new(k, v)
                } else if values.len() < self.cap {
                    values.insert(v.clone());
                    Label::new(k, v)
                } else {
                    Label::new(k, CUSTOM_LABEL_OVERFLOW)
                }
            })
            .collect()
    }
}

impl std::fmt::Debug for CustomLabels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomLabels")
            .field("cap", &self.cap)
            .finish_non_exhaustive()
    }
}

/// What the layer knows about a request when it records it.
pub(crate) struct Labels {
    pub(crate) method: &'static str,
    pub(crate) route: SharedString,
    pub(crate) scheme: &'static str,
    pub(crate) version: &'static str,
    pub(crate) custom: Vec<Label>,
}

#[derive(Debug)]
pub(crate) struct Instruments {
    pub(crate) sink: Sink,
    pub(crate) naming: Naming,
    pub(crate) body_sizes: bool,
    /// Set once the metrics are described to a recorder that keeps them.
    described: AtomicBool,
    /// Set once the absence of a recorder was reported.
    warned_no_recorder: AtomicBool,
    /// Registered handles by their label values, so a request costs a hash of a few integers
    /// instead of building and hashing a `metrics::Key` (used without custom labels).
    active: HandleCache<(usize, u8, u8), Gauge>,
    /// The in-flight gauges with OpenTelemetry names (no route label): one per method and
    /// scheme, found by index, without a lock.
    otel_active: GaugeTable,
    durations: HandleCache<DurationKey, Handles>,
    /// The same for label sets with custom labels, keyed by a hash of those too.
    custom_durations: CustomHandleCache,
}

/// Duration handles of label sets that include custom labels: keyed by the fixed labels and a
/// hash of the custom ones; each entry keeps its custom labels, compared on every hit.
struct CustomHandleCache {
    map: AppendMap<(DurationKey, u64), CustomEntry>,
}

impl Default for CustomHandleCache {
    fn default() -> Self {
        Self {
            map: AppendMap::new(MAX_CACHED),
        }
    }
}

struct CustomEntry {
    custom: Box<[Label]>,
    handles: Handles,
}

/// What a finished request of one label set records into.
#[derive(Clone)]
pub(crate) struct Handles {
    duration: Histogram,
    /// axum-prometheus names: the request counter.
    requests: Option<Counter>,
    /// Body sizes on: the request and response body size histograms.
    body_sizes: Option<(Histogram, Histogram)>,
}

impl std::fmt::Debug for CustomHandleCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CustomHandleCache")
    }
}

impl CustomHandleCache {
    /// The handles of a label set with custom labels; registered by `make` on first use, and
    /// on every use when the cache is full or another label set took this one's hash first.
    fn get_or(
        &self,
        key: DurationKey,
        custom: &[Label],
        make: impl Fn() -> Handles,
    ) -> Cow<'_, Handles> {
        let key = (key, hash_labels(custom));
        let entry = match self.map.get(&key) {
            Some(e) => Some(e),
            None => self.map.get_or_insert_with(key, || CustomEntry {
                custom: custom.into(),
                handles: make(),
            }),
        };
        match entry {
            Some(e) if *e.custom == *custom => Cow::Borrowed(&e.handles),
            _ => Cow::Owned(make()),
        }
    }
}

fn hash_labels(labels: &[Label]) -> u64 {
    use std::hash::Hasher as _;
    let mut h = FxHasher::default();
    for l in labels {
        h.write(l.key().as_bytes());
        h.write_u8(0xff);
        h.write(l.value().as_bytes());
        h.write_u8(0xff);
    }
    h.finish()
}

/// `http.server.active_requests` handles by method index and scheme index.
struct GaugeTable([[OnceLock<Gauge>; 2]; METHODS.len() + 1]);

impl Default for GaugeTable {
    fn default() -> Self {
        Self(std::array::from_fn(|_| {
            std::array::from_fn(|_| OnceLock::new())
        }))
    }
}

impl GaugeTable {
    fn slot(&self, method: u8, scheme: u8) -> Option<&OnceLock<Gauge>> {
        self.0
            .get(usize::from(method))
            .and_then(|row| row.get(usize::from(scheme)))
    }
}

/// An in-flight request counted by [`Instruments::start`], until [`Instruments::end`].
#[derive(Debug)]
pub(crate) enum Active {
    /// Not counted (metrics off).
    Off,
    /// The gauge of this method and scheme index in the layer's table.
    Indexed { method: u8, scheme: u8 },
    /// A gauge from the handle cache (labels that include the route).
    Owned(Gauge),
}

impl std::fmt::Debug for GaugeTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GaugeTable")
    }
}

/// Route (interned address), status, method, scheme, protocol version.
type DurationKey = (usize, u16, u8, u8, u8);

/// A bounded map from small keys to metric handles, read without a lock: a request records
/// through a borrowed handle (no lock held while a recorder's code runs, no reference count
/// touched).
struct HandleCache<K, V> {
    map: AppendMap<K, V>,
}

/// Most handles a cache keeps (label sets are bounded by routes × methods × statuses anyway).
const MAX_CACHED: usize = 100_000;

impl<K, V> Default for HandleCache<K, V> {
    fn default() -> Self {
        Self {
            map: AppendMap::new(MAX_CACHED),
        }
    }
}

impl<K, V> std::fmt::Debug for HandleCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HandleCache")
    }
}

impl<K: std::hash::Hash + Eq, V: Clone> HandleCache<K, V> {
    /// The handle of `key`; registered by `make` on first use, and on every use once the
    /// cache is full.
    fn get_or(&self, key: K, make: impl Fn() -> V) -> Cow<'_, V> {
        if let Some(v) = self.map.get(&key) {
            return Cow::Borrowed(v);
        }
        match self.map.get_or_insert_with(key, &make) {
            Some(v) => Cow::Borrowed(v),
            None => Cow::Owned(make()),
        }
    }
}

impl Clone for Instruments {
    fn clone(&self) -> Self {
        Self::new(self.sink.clone(), self.naming, self.body_sizes)
    }
}

impl Instruments {
    pub(crate) fn new(sink: Sink, naming: Naming, body_sizes: bool) -> Self {
        Self {
            sink,
            naming,
            body_sizes,
            described: AtomicBool::new(false),
            warned_no_recorder: AtomicBool::new(false),
            active: HandleCache::default(),
            otel_active: GaugeTable::default(),
            durations: HandleCache::default(),
            custom_durations: CustomHandleCache::default(),
        }
    }

    /// Describes the metrics on first use (the global recorder may be installed after the
    /// layer is built). Not done until a recorder is installed: a description given to
    /// `metrics`' no-op fallback would be lost, and with it the unit (`_seconds`). Returns
    /// whether a recorder that keeps metrics is there.
    #[inline]
    fn describe(&self) -> bool {
        self.described.load(Ordering::Relaxed) || self.describe_slow()
    }

    #[cold]
    #[inline(never)]
    fn describe_slow(&self) -> bool {
        let real = self.sink.with(|r| {
            if !keeps_metrics(r) {
                if !self.warned_no_recorder.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        target: "axi_obs_axum::http",
                        "no metrics recorder is installed (or a zero-sized one, which looks the same): HTTP metrics are not recorded until one is (axi_obs_core::Telemetry::builder().install())"
                    );
                }
                return false;
            }
            match self.naming {
                Naming::OpenTelemetry => {
                    r.describe_histogram(
                        names::SERVER_REQUEST_DURATION.into(),
                        Some(Unit::Seconds),
                        "Duration of HTTP server requests.".into(),
                    );
                    r.describe_gauge(
                        names::SERVER_ACTIVE_REQUESTS.into(),
                        Some(Unit::Count),
                        "Number of active HTTP server requests.".into(),
                    );
                    if self.body_sizes {
                        r.describe_histogram(
                            names::SERVER_REQUEST_BODY_SIZE.into(),
                            Some(Unit::Bytes),
                            "Size of HTTP server request bodies.".into(),
                        );
                        r.describe_histogram(
                            names::SERVER_RESPONSE_BODY_SIZE.into(),
                            Some(Unit::Bytes),
                            "Size of HTTP server response bodies.".into(),
                        );
                    }
                }
                Naming::AxumPrometheus => {
                    r.describe_counter(
                        ap::REQUESTS_TOTAL.into(),
                        None,
                        "The total number of HTTP requests handled by the Axum application.".into(),
                    );
                    r.describe_histogram(
                        ap::REQUESTS_DURATION_SECONDS.into(),
                        Some(Unit::Seconds),
                        "The HTTP request latencies in seconds.".into(),
                    );
                    r.describe_gauge(
                        ap::REQUESTS_PENDING.into(),
                        None,
                        "The number of currently in-flight requests.".into(),
                    );
                }
            }
            true
        });
        if real {
            let buckets = match self.naming {
                Naming::OpenTelemetry => (names::SERVER_REQUEST_DURATION, names::DURATION_BUCKETS),
                Naming::AxumPrometheus => (ap::REQUESTS_DURATION_SECONDS, ap::BUCKETS),
            };
            let handle = match &self.sink {
                Sink::Explicit(r) => Some(r.handle()),
                Sink::Global => axi_obs_core::global_metrics(),
            };
            if let Some(h) = handle {
                // Static, valid bounds.
                let _ = h.set_histogram_buckets(buckets.0, buckets.1);
            }
            self.described.store(true, Ordering::Relaxed);
        }
        real
    }

    /// Registers and increments the in-flight gauge; returns what [`Instruments::end`] takes
    /// to decrement it.
    pub(crate) fn start(&self, labels: &Labels) -> Active {
        if !self.describe() {
            // No recorder yet: nothing would be kept, and nothing is cached (a handle from
            // `metrics`' no-op fallback would stay a no-op after one is installed).
            return Active::Off;
        }
        let (method, scheme) = (method_index(labels.method), scheme_index(labels.scheme));
        if self.naming == Naming::OpenTelemetry
            && let Some(slot) = self.otel_active.slot(method, scheme)
        {
            slot.get_or_init(|| self.register_active(labels))
                .increment(1.0);
            // Found again by index at the end: no handle clone (two atomic operations) per
            // request.
            return Active::Indexed { method, scheme };
        }
        let key = (labels.route.as_ptr() as usize, method, scheme);
        let g = self
            .active
            .get_or(key, || self.register_active(labels))
            .into_owned();
        g.increment(1.0);
        Active::Owned(g)
    }

    /// Decrements the in-flight gauge [`Instruments::start`] incremented.
    pub(crate) fn end(&self, active: Active) {
        match active {
            Active::Off => {}
            Active::Indexed { method, scheme } => {
                if let Some(g) = self
                    .otel_active
                    .slot(method, scheme)
                    .and_then(OnceLock::get)
                {
                    g.decrement(1.0);
                }
            }
            Active::Owned(g) => g.decrement(1.0),
        }
    }

    /// Registers the in-flight gauge of a label set.
    fn register_active(&self, labels: &Labels) -> Gauge {
        let key = match self.naming {
            Naming::OpenTelemetry => Key::from_parts(
                names::SERVER_ACTIVE_REQUESTS,
                vec![
                    Label::from_static_parts(attr::HTTP_REQUEST_METHOD, labels.method),
                    Label::from_static_parts(attr::URL_SCHEME, labels.scheme),
                ],
            ),
            Naming::AxumPrometheus => Key::from_parts(
                ap::REQUESTS_PENDING,
                vec![
                    Label::from_static_parts("method", labels.method),
                    Label::new("endpoint", labels.route.clone()),
                ],
            ),
        };
        self.sink.with(|r| r.register_gauge(&key, &META))
    }

    /// Records the finished request. With body sizes on and the response's size not known
    /// yet (a streamed body), returns the response body size histogram for the body to record
    /// into when it has been sent.
    pub(crate) fn finish(
        &self,
        labels: Labels,
        status: Option<u16>,
        error_type: Option<SharedString>,
        seconds: f64,
        body_sizes: (Option<u64>, Option<u64>),
    ) -> Option<Histogram> {
        if !self.describe() {
            // No recorder yet (see `start`): nothing to record into, nothing to cache.
            return None;
        }
        // The fast path: a status (so `error.type` follows from it). The cached handles are
        // the very ones the slow path registers.
        if let Some(code) = status {
            let key = (
                labels.route.as_ptr() as usize,
                code,
                method_index(labels.method),
                scheme_index(labels.scheme),
                version_index(labels.version),
            );
            let make = || self.register(&labels, code, error_type.clone());
            let h = if labels.custom.is_empty() {
                self.durations.get_or(key, make)
            } else {
                self.custom_durations.get_or(key, &labels.custom, make)
            };
            h.duration.record(seconds);
            if let Some(c) = &h.requests {
                c.increment(1);
            }
            if let Some((req, resp)) = &h.body_sizes {
                if let Some(n) = body_sizes.0 {
                    req.record(n as f64);
                }
                match body_sizes.1 {
                    Some(n) => resp.record(n as f64),
                    None => return Some(resp.clone()),
                }
            }
            return None;
        }
        self.finish_slow(labels, status, error_type, seconds, body_sizes);
        None
    }

    /// The labels of a finished request, in the order every path registers them: the fixed
    /// ones, `error.type`, then the custom ones. Without a status (no response) the
    /// OpenTelemetry set leaves the status out and axum-prometheus's has it empty.
    fn label_set(
        &self,
        labels: &Labels,
        status: Option<u16>,
        error_type: Option<SharedString>,
    ) -> Vec<Label> {
        let mut l = Vec::with_capacity(6 + labels.custom.len());
        match self.naming {
            Naming::OpenTelemetry => {
                l.push(Label::from_static_parts(
                    attr::HTTP_REQUEST_METHOD,
                    labels.method,
                ));
                l.push(Label::new(attr::HTTP_ROUTE, labels.route.clone()));
                if let Some(s) = status {
                    l.push(Label::new(attr::HTTP_RESPONSE_STATUS_CODE, status_str(s)));
                }
                l.push(Label::from_static_parts(attr::URL_SCHEME, labels.scheme));
                l.push(Label::from_static_parts(
                    attr::NETWORK_PROTOCOL_VERSION,
                    labels.version,
                ));
                if let Some(e) = error_type {
                    l.push(Label::new(attr::ERROR_TYPE, e));
                }
            }
            Naming::AxumPrometheus => {
                l.push(Label::from_static_parts("method", labels.method));
                l.push(Label::new("endpoint", labels.route.clone()));
                l.push(Label::new(
                    "status",
                    status.map(status_str).unwrap_or_default(),
                ));
            }
        }
        l.extend(labels.custom.iter().cloned());
        l
    }

    /// Registers the handles of a label set: the duration histogram, and the request counter
    /// for axum-prometheus names or the body size histograms when they are on.
    fn register(&self, labels: &Labels, code: u16, error_type: Option<SharedString>) -> Handles {
        let l = self.label_set(labels, Some(code), error_type);
        self.sink.with(|r| {
            let histogram = |name| r.register_histogram(&Key::from_parts(name, l.clone()), &META);
            match self.naming {
                Naming::OpenTelemetry => Handles {
                    body_sizes: self.body_sizes.then(|| {
                        (
                            histogram(names::SERVER_REQUEST_BODY_SIZE),
                            histogram(names::SERVER_RESPONSE_BODY_SIZE),
                        )
                    }),
                    duration: histogram(names::SERVER_REQUEST_DURATION),
                    requests: None,
                },
                Naming::AxumPrometheus => Handles {
                    duration: histogram(ap::REQUESTS_DURATION_SECONDS),
                    requests: Some(
                        r.register_counter(&Key::from_parts(ap::REQUESTS_TOTAL, l.clone()), &META),
                    ),
                    body_sizes: None,
                },
            }
        })
    }

    /// Records a request that ended without a status (cancelled, failed), uncached: its
    /// `error.type` is not implied by the cache key. Body sizes are registered only when known.
    fn finish_slow(
        &self,
        labels: Labels,
        status: Option<u16>,
        error_type: Option<SharedString>,
        seconds: f64,
        body_sizes: (Option<u64>, Option<u64>),
    ) {
        let l = self.label_set(&labels, status, error_type);
        self.sink.with(|r| {
            let histogram = |name| r.register_histogram(&Key::from_parts(name, l.clone()), &META);
            match self.naming {
                Naming::OpenTelemetry => {
                    if self.body_sizes {
                        if let Some(n) = body_sizes.0 {
                            histogram(names::SERVER_REQUEST_BODY_SIZE).record(n as f64);
                        }
                        if let Some(n) = body_sizes.1 {
                            histogram(names::SERVER_RESPONSE_BODY_SIZE).record(n as f64);
                        }
                    }
                    histogram(names::SERVER_REQUEST_DURATION).record(seconds);
                }
                Naming::AxumPrometheus => {
                    r.register_counter(&Key::from_parts(ap::REQUESTS_TOTAL, l.clone()), &META)
                        .increment(1);
                    histogram(ap::REQUESTS_DURATION_SECONDS).record(seconds);
                }
            }
        });
    }
}

/// Static label values for every status code 100..=599 (others are formatted).
fn status_str(code: u16) -> SharedString {
    static TABLE: OnceLock<Vec<SharedString>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        (100u16..600)
            .map(|c| SharedString::from(std::sync::Arc::<str>::from(c.to_string())))
            .collect()
    });
    match code {
        100..=599 => table[(code - 100) as usize].clone(),
        other => SharedString::from(other.to_string()),
    }
}

fn scheme_index(s: &str) -> u8 {
    u8::from(s == "https")
}

fn version_index(v: &str) -> u8 {
    v.as_bytes().first().copied().unwrap_or(0) ^ v.as_bytes().get(2).copied().unwrap_or(0)
}

/// `network.protocol.version` for an HTTP version.
pub(crate) fn version_label(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_11 => "1.1",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "_OTHER",
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn custom_label_sets_sharing_a_hash_are_told_apart() {
        let cache = CustomHandleCache::default();
        let key: DurationKey = (1, 200, 0, 0, 0);
        let a = [Label::new("tenant", "a")];
        let b = [Label::new("tenant", "b")];
        let noop = || Handles {
            duration: Histogram::noop(),
            requests: None,
            body_sizes: None,
        };
        let made = Cell::new(0);
        let make = || {
            made.set(made.get() + 1);
            noop()
        };
        let _ = cache.get_or(key, &a, make);
        let _ = cache.get_or(key, &a, make);
        assert_eq!(made.get(), 1, "the second lookup is a hit");
        // Another label set filed under `a`'s hash, as a collision would: never `a`'s handles.
        cache
            .map
            .get_or_insert_with((key, hash_labels(&b)), || CustomEntry {
                custom: Box::new(a.clone()),
                handles: noop(),
            })
            .unwrap();
        let _ = cache.get_or(key, &b, make);
        let _ = cache.get_or(key, &b, make);
        assert_eq!(made.get(), 3, "a mismatched entry is never used");
        assert_ne!(hash_labels(&a), hash_labels(&b));
        assert_ne!(
            hash_labels(&[Label::new("ab", "c")]),
            hash_labels(&[Label::new("a", "bc")])
        );
    }
}
