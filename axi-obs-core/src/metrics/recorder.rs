//! The `metrics` recorder: a sharded registry of series with a per-metric series cap.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use metrics::{
    Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString, Unit,
};
use metrics_util::registry::{Registry, Storage};

use super::naming::MetricKind;
use super::storage::{DEFAULT_BUCKETS, HistogramCell, SEMCONV_DURATION_BUCKETS};
use crate::internal::RateLimit;

/// The label put on the series that absorbs label sets beyond the cap, as the OpenTelemetry
/// SDK does (`otel.metric.overflow="true"`, rendered `otel_metric_overflow="true"`).
pub const OVERFLOW_LABEL: &str = "otel.metric.overflow";
/// Counter of the handles given out for label sets beyond the cap (each goes to the overflow
/// series), labelled by metric name. With the `metrics` macros, which ask for a handle at each
/// call, that is every measurement naming such a label set; a handle kept and reused counts once.
pub const SERIES_OVERFLOW_METRIC: &str = "axi_obs_metric_series_overflow_total";

#[derive(Clone, Debug)]
pub(crate) struct Description {
    pub(crate) unit: Option<Unit>,
    pub(crate) help: SharedString,
}

type Descriptions = RwLock<HashMap<String, Description>>;

/// Metrics at their series cap: their overflow series' key and their overflow counter.
type Full = RwLock<HashMap<(MetricKind, KeyName), (Key, Arc<AtomicU64>)>>;

/// Storage that picks histogram buckets by metric name and unit.
#[derive(Debug)]
pub(crate) struct CellStorage {
    descriptions: Arc<Descriptions>,
    pub(crate) explicit: RwLock<HashMap<String, Arc<[f64]>>>,
    /// The bounds the unit or the name chose at a histogram's first series, kept for its
    /// later series: a `describe_histogram!` (with its unit) may come after the first record,
    /// and one family must keep one set of `le` bounds for `histogram_quantile`.
    chosen: RwLock<HashMap<String, Arc<[f64]>>>,
    semconv: Arc<[f64]>,
    default: Arc<[f64]>,
}

impl CellStorage {
    fn bounds_for(&self, name: &str) -> Arc<[f64]> {
        if let Some(b) = self
            .explicit
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return b.clone();
        }
        if let Some(b) = self
            .chosen
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return b.clone();
        }
        let unit = self
            .descriptions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .and_then(|d| d.unit);
        let seconds = match unit {
            Some(u) => u == Unit::Seconds,
            None => {
                name.ends_with("_seconds")
                    || name.ends_with(".duration")
                    || name.ends_with("_duration")
            }
        };
        let bounds = if seconds {
            self.semconv.clone()
        } else {
            self.default.clone()
        };
        self.chosen
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(name.to_owned())
            .or_insert(bounds)
            .clone()
    }
}

impl Storage<Key> for CellStorage {
    type Counter = Arc<AtomicU64>;
    type Gauge = Arc<AtomicU64>;
    type Histogram = Arc<HistogramCell>;

    fn counter(&self, _: &Key) -> Self::Counter {
        Arc::new(AtomicU64::new(0))
    }

    fn gauge(&self, _: &Key) -> Self::Gauge {
        Arc::new(AtomicU64::new(0f64.to_bits()))
    }

    fn histogram(&self, key: &Key) -> Self::Histogram {
        Arc::new(HistogramCell::new(self.bounds_for(key.name())))
    }
}

pub(crate) struct Inner {
    pub(crate) registry: Registry<Key, CellStorage>,
    pub(crate) descriptions: Arc<Descriptions>,
    /// Number of series per (kind, metric name); touched only when a series is created.
    cardinality: Mutex<HashMap<(MetricKind, KeyName), usize>>,
    /// Metrics at their cap, with their overflow series' key and their overflow counter:
    /// read (shared) before `cardinality` is locked, so a flood of new label sets on a full
    /// metric does not serialize every thread on that one lock.
    full: Full,
    cap: usize,
    overflow_warn: RateLimit,
    pub(crate) start_time: SystemTime,
    pub(crate) info: super::Info,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsRecorder")
            .field("series_cap", &self.cap)
            .finish_non_exhaustive()
    }
}

/// Options for a [`MetricsRecorder`].
#[derive(Clone, Debug)]
pub(crate) struct RecorderOptions {
    pub(crate) series_cap: usize,
    pub(crate) histogram_buckets: Vec<(String, Vec<f64>)>,
    pub(crate) info: super::Info,
}

/// A [`metrics::Recorder`] that keeps every series in memory for Prometheus rendering and OTLP
/// push.
///
/// Cheap to clone (an `Arc`). Each metric name holds at most the configured number of label
/// sets (default 2000); further label sets are folded into one series labelled
/// `otel_metric_overflow="true"`, and `axi_obs_metric_series_overflow_total{metric=...}` counts
/// the handles given out for such label sets (each macro call naming one). A flood of unique label values therefore cannot grow
/// memory or the `/metrics` page without bound.
#[derive(Clone, Debug)]
pub struct MetricsRecorder {
    pub(crate) inner: Arc<Inner>,
}

impl MetricsRecorder {
    pub(crate) fn new(opts: RecorderOptions) -> Self {
        let descriptions: Arc<Descriptions> = Arc::default();
        let storage = CellStorage {
            descriptions: descriptions.clone(),
            explicit: RwLock::new(
                opts.histogram_buckets
                    .into_iter()
                    .map(|(name, b)| (name, Arc::from(b)))
                    .collect(),
            ),
            chosen: RwLock::default(),
            semconv: Arc::from(SEMCONV_DURATION_BUCKETS),
            default: Arc::from(DEFAULT_BUCKETS),
        };
        let inner = Inner {
            registry: Registry::new(storage),
            descriptions,
            cardinality: Mutex::default(),
            full: RwLock::default(),
            cap: opts.series_cap,
            overflow_warn: RateLimit::every_secs(10),
            start_time: SystemTime::now(),
            info: opts.info,
        };
        let rec = Self {
            inner: Arc::new(inner),
        };
        rec.describe(
            SERIES_OVERFLOW_METRIC,
            None,
            "Handles given out for label sets beyond a metric's series cap (they record into its overflow series; one per metrics macro call)",
        );
        crate::internal::describe_all(&rec);
        rec
    }

    /// A handle for rendering and inspecting what this recorder holds.
    pub fn handle(&self) -> super::MetricsHandle {
        super::MetricsHandle {
            inner: self.inner.clone(),
        }
    }

    pub(crate) fn describe(&self, name: &str, unit: Option<Unit>, help: &'static str) {
        self.inner
            .descriptions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                name.to_owned(),
                Description {
                    unit,
                    help: SharedString::const_str(help),
                },
            );
    }

    /// Sets the bucket bounds for histograms recorded as `name` from now on (series created
    /// earlier keep theirs). Libraries use this to pin the buckets of the metrics they define.
    ///
    /// # Errors
    ///
    /// If `bounds` is empty, not finite or not strictly increasing.
    pub fn set_histogram_buckets(
        &self,
        name: &str,
        bounds: &[f64],
    ) -> Result<(), crate::ConfigError> {
        self.handle().set_histogram_buckets(name, bounds)
    }

    /// Describes a metric (unit and help text) on this recorder, like the `describe_*!`
    /// macros do on the global one.
    pub fn describe_metric(&self, name: &str, unit: Option<Unit>, help: &str) {
        self.describe_key(
            KeyName::from(name.to_owned()),
            unit,
            SharedString::from(help.to_owned()),
        );
    }

    /// An internal counter that bypasses the cap (for self-telemetry with bounded labels).
    pub(crate) fn internal_counter(&self, key: &Key) -> Arc<AtomicU64> {
        self.inner
            .registry
            .get_or_create_counter(key, |c| c.clone())
    }

    fn describe_key(&self, key: KeyName, unit: Option<Unit>, help: SharedString) {
        let mut map = self
            .inner
            .descriptions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry(key.as_str().to_owned()).or_insert(Description {
            unit: None,
            help: SharedString::const_str(""),
        });
        if unit.is_some() {
            entry.unit = unit;
        }
        if !help.is_empty() {
            entry.help = help;
        }
    }

    /// Creates the series for a key not yet registered: `key` itself while the metric has
    /// room, else its overflow series. Counting and creating happen under one lock, so
    /// concurrent first registrations of one label set count once.
    fn admit<H>(
        &self,
        kind: MetricKind,
        key: &Key,
        get_or_create: impl Fn(&Key) -> H,
        exists: impl Fn(&Key) -> bool,
    ) -> H {
        if let Some((overflow, folded)) = self
            .inner
            .full
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(kind, key.name_shared()))
        {
            folded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.warn_overflow(key.name());
            return get_or_create(overflow);
        }
        let mut counts = self
            .inner
            .cardinality
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Another thread may have created it while we waited for the lock.
        if exists(key) {
            return get_or_create(key);
        }
        let n = counts.entry((kind, key.name_shared())).or_insert(0);
        if *n < self.inner.cap {
            *n += 1;
            return get_or_create(key);
        }
        let overflow = Key::from_parts(key.name_shared(), vec![Label::new(OVERFLOW_LABEL, "true")]);
        let handle = get_or_create(&overflow);
        drop(counts);
        let counter_key = Key::from_parts(
            SERIES_OVERFLOW_METRIC,
            vec![Label::new("metric", key.name().to_owned())],
        );
        let folded = self.internal_counter(&counter_key);
        folded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner
            .full
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((kind, key.name_shared()))
            .or_insert((overflow, folded));
        self.warn_overflow(key.name());
        handle
    }

    fn warn_overflow(&self, name: &str) {
        if self.inner.overflow_warn.allow() {
            tracing::warn!(
                target: "axi_obs_core::metrics",
                metric = name,
                series_cap = self.inner.cap,
                "metric reached its series cap; new label sets are folded into the overflow series"
            );
        }
    }
}

impl Recorder for MetricsRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe_key(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe_key(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe_key(key, unit, description);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let reg = &self.inner.registry;
        if let Some(c) = reg.get_counter(key) {
            return Counter::from_arc(c);
        }
        self.admit(
            MetricKind::Counter,
            key,
            |k| reg.get_or_create_counter(k, |c| Counter::from_arc(c.clone())),
            |k| reg.get_counter(k).is_some(),
        )
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let reg = &self.inner.registry;
        if let Some(g) = reg.get_gauge(key) {
            return Gauge::from_arc(g);
        }
        self.admit(
            MetricKind::Gauge,
            key,
            |k| reg.get_or_create_gauge(k, |g| Gauge::from_arc(g.clone())),
            |k| reg.get_gauge(k).is_some(),
        )
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let reg = &self.inner.registry;
        if let Some(h) = reg.get_histogram(key) {
            return Histogram::from_arc(h);
        }
        self.admit(
            MetricKind::Histogram,
            key,
            |k| reg.get_or_create_histogram(k, |h| Histogram::from_arc(h.clone())),
            |k| reg.get_histogram(k).is_some(),
        )
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn recorder(cap: usize) -> MetricsRecorder {
        MetricsRecorder::new(RecorderOptions {
            series_cap: cap,
            histogram_buckets: vec![("custom".into(), vec![1.0, 2.0])],
            info: super::super::Info::default(),
        })
    }

    #[test]
    fn series_beyond_the_cap_fold_into_one_overflow_series() {
        let rec = recorder(3);
        metrics::with_local_recorder(&rec, || {
            for i in 0..10 {
                metrics::counter!("hits", "user" => i.to_string()).increment(1);
            }
            // Existing series keep working after the cap is reached.
            metrics::counter!("hits", "user" => "0").increment(5);
        });
        let snap = rec.handle().snapshot();
        let hits = snap.family("hits").expect("hits family");
        assert_eq!(hits.series.len(), 4, "3 admitted + 1 overflow");
        let overflow = hits
            .series
            .iter()
            .find(|s| s.labels == vec![("otel.metric.overflow".to_owned(), "true".to_owned())])
            .expect("overflow series");
        assert_eq!(overflow.value.as_counter(), Some(7));
        let zero = hits
            .series
            .iter()
            .find(|s| s.labels == vec![("user".to_owned(), "0".to_owned())])
            .unwrap();
        assert_eq!(zero.value.as_counter(), Some(6));
        let folded = snap.family(SERIES_OVERFLOW_METRIC).unwrap();
        assert_eq!(
            folded.series[0].labels,
            vec![("metric".to_owned(), "hits".to_owned())]
        );
        assert_eq!(folded.series[0].value.as_counter(), Some(7));
    }

    /// Regression: concurrent first registrations of one label set used to count it once per
    /// thread, filling the cap with phantom series.
    /// Once a metric is at its cap, new label sets go to its overflow series without the
    /// registry-wide cardinality lock (a flood of unique label values must not serialize every
    /// thread, nor the first registration of unrelated metrics).
    #[test]
    fn a_full_metric_folds_new_label_sets_without_the_cardinality_lock() {
        let rec = recorder(1);
        metrics::with_local_recorder(&rec, || {
            metrics::counter!("c", "k" => "first").increment(1);
            metrics::counter!("c", "k" => "second").increment(1);
        });
        let held = rec.inner.cardinality.lock().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let r = rec.clone();
        std::thread::spawn(move || {
            metrics::with_local_recorder(&r, || {
                metrics::counter!("c", "k" => "third").increment(1);
            });
            let _ = tx.send(());
        });
        let answered = rx.recv_timeout(std::time::Duration::from_secs(20));
        drop(held);
        assert!(answered.is_ok(), "blocked on the cardinality lock");
        let snap = rec.handle().snapshot();
        let overflow = snap
            .family("c")
            .unwrap()
            .series
            .iter()
            .find(|s| s.labels == vec![(OVERFLOW_LABEL.to_owned(), "true".to_owned())])
            .unwrap()
            .value
            .as_counter();
        assert_eq!(overflow, Some(2));
        let folded = &snap.family(SERIES_OVERFLOW_METRIC).unwrap().series[0];
        assert_eq!(folded.value.as_counter(), Some(2));
    }

    #[test]
    fn concurrent_registrations_of_one_series_count_once() {
        let rec = recorder(2);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    metrics::with_local_recorder(&rec, || {
                        metrics::counter!("c", "k" => "same").increment(1);
                    })
                });
            }
        });
        metrics::with_local_recorder(&rec, || metrics::counter!("c", "k" => "other").increment(1));
        let snap = rec.handle().snapshot();
        assert_eq!(
            snap.family("c").unwrap().series.len(),
            2,
            "no overflow: 2 series fit the cap"
        );
        assert!(snap.family(SERIES_OVERFLOW_METRIC).is_none());
    }

    #[test]
    fn cap_is_per_metric_and_per_kind() {
        let rec = recorder(2);
        metrics::with_local_recorder(&rec, || {
            for i in 0..2 {
                metrics::counter!("a", "k" => i.to_string()).increment(1);
                metrics::counter!("b", "k" => i.to_string()).increment(1);
                metrics::gauge!("a", "k" => i.to_string()).set(1.0);
            }
        });
        let snap = rec.handle().snapshot();
        assert!(snap.family(SERIES_OVERFLOW_METRIC).is_none());
    }

    #[test]
    fn histogram_buckets_follow_name_unit_and_config() {
        let rec = recorder(10);
        metrics::with_local_recorder(&rec, || {
            metrics::describe_histogram!("payload", Unit::Bytes, "payload size");
            metrics::describe_histogram!("work.time", Unit::Seconds, "work time");
            metrics::histogram!("payload").record(1.0);
            metrics::histogram!("work.time").record(1.0);
            metrics::histogram!("db_query_seconds").record(1.0);
            metrics::histogram!("custom").record(1.0);
        });
        let snap = rec.handle().snapshot();
        let bounds = |name: &str| match &snap.family(name).unwrap().series[0].value {
            super::super::Value::Histogram(h) => h.bounds.to_vec(),
            _ => panic!("not a histogram"),
        };
        assert_eq!(bounds("payload"), DEFAULT_BUCKETS);
        assert_eq!(bounds("work.time"), SEMCONV_DURATION_BUCKETS);
        assert_eq!(bounds("db_query_seconds"), SEMCONV_DURATION_BUCKETS);
        assert_eq!(bounds("custom"), vec![1.0, 2.0]);
    }

    /// A histogram described (with its unit) after its first record keeps the buckets its
    /// first series got for every later series: one family, one set of `le` bounds.
    #[test]
    fn a_late_description_does_not_split_a_histograms_buckets() {
        let rec = recorder(10);
        metrics::with_local_recorder(&rec, || {
            metrics::histogram!("job.time", "q" => "a").record(0.3);
            metrics::describe_histogram!("job.time", Unit::Seconds, "job time");
            metrics::histogram!("job.time", "q" => "b").record(0.3);
        });
        let snap = rec.handle().snapshot();
        let family = snap.family("job.time").unwrap();
        assert_eq!(family.series.len(), 2);
        let all: Vec<Vec<f64>> = family
            .series
            .iter()
            .map(|s| match &s.value {
                super::super::Value::Histogram(h) => h.bounds.to_vec(),
                _ => panic!("not a histogram"),
            })
            .collect();
        assert_eq!(all[0], all[1]);
    }
}
