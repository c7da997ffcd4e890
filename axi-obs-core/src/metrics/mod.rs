//! Metrics: the `metrics` facade recorded in memory, rendered as Prometheus text and pushed
//! over OTLP.
//!
//! Record with the `metrics` macros (`counter!`, `gauge!`, `histogram!`) anywhere in the
//! application; describe each metric once (`describe_counter!` etc.) so it gets `# HELP` text
//! and a unit. Names may use OpenTelemetry dots (`http.server.request.duration`); the
//! Prometheus rendering translates them (`http_server_request_duration_seconds`).
//!
//! | what | how |
//! |---|---|
//! | histograms | always explicit buckets, never summaries; durations in seconds get the semantic-convention bounds `0.005 … 10`, others the OpenTelemetry default bounds, or configure per metric; the bounds are chosen at a histogram's first series and kept for its later ones (so describe a histogram's unit before its first record) |
//! | cardinality | at most `series_cap` label sets per metric (default 2000), then one `otel_metric_overflow="true"` series |
//! | process | `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`, `process_start_time_seconds`, `process_threads` (Linux) |
//! | metadata | `target_info` with the resource attributes; `service_build_info` with name, version and revision |
//!
//! No port is opened: mount [`MetricsHandle::render`] on your own router (the `axi-obs-axum`
//! crate does this for `/metrics`).

mod naming;
mod process;
mod recorder;
mod render;
mod storage;

use std::sync::Arc;
use std::sync::atomic::Ordering;

pub use naming::MetricKind;
pub(crate) use recorder::RecorderOptions;
pub use recorder::{MetricsRecorder, OVERFLOW_LABEL, SERIES_OVERFLOW_METRIC};
pub(crate) use render::escape_label_value;
pub use render::{CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE, render_families};
pub use storage::{DEFAULT_BUCKETS, HistogramSnapshot, SEMCONV_DURATION_BUCKETS};

pub(crate) use naming::{prometheus_name, ucum};

/// Identity rendered as `target_info` and `service_build_info`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Info {
    /// Resource attributes (OpenTelemetry keys).
    pub(crate) resource: Vec<(String, String)>,
    pub(crate) vcs_revision: Option<String>,
    pub(crate) process: bool,
}

impl Info {
    fn attr(&self, key: &str) -> Option<&str> {
        self.resource
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A read handle on a [`MetricsRecorder`]: render the Prometheus page, take snapshots.
///
/// Cheap to clone. Obtained from [`Telemetry::metrics`](crate::Telemetry::metrics) or
/// [`MetricsRecorder::handle`].
#[derive(Clone, Debug)]
pub struct MetricsHandle {
    pub(crate) inner: Arc<recorder::Inner>,
}

/// The value of one series in a [`Snapshot`].
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A counter's total.
    Counter(u64),
    /// A gauge's current value.
    Gauge(f64),
    /// A histogram's buckets, count and sum.
    Histogram(HistogramSnapshot),
}

impl Value {
    /// The counter total, if this is a counter.
    pub fn as_counter(&self) -> Option<u64> {
        match self {
            Value::Counter(v) => Some(*v),
            _ => None,
        }
    }

    /// The gauge value, if this is a gauge.
    pub fn as_gauge(&self) -> Option<f64> {
        match self {
            Value::Gauge(v) => Some(*v),
            _ => None,
        }
    }

    /// The histogram, if this is a histogram.
    pub fn as_histogram(&self) -> Option<&HistogramSnapshot> {
        match self {
            Value::Histogram(h) => Some(h),
            _ => None,
        }
    }
}

/// One series: its labels (sorted by name) and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Label pairs with the keys as recorded (OpenTelemetry dots kept), sorted.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: Value,
}

/// All series of one metric name and kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// The name as recorded (e.g. `http.server.request.duration`).
    pub name: String,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// The unit given in the description, if any.
    pub unit: Option<metrics::Unit>,
    /// The description, if any.
    pub help: Option<String>,
    /// Series sorted by labels.
    pub series: Vec<Series>,
}

impl Family {
    /// The name Prometheus sees (unit and `_total` suffixes, invalid characters replaced).
    pub fn prometheus_name(&self) -> String {
        prometheus_name(&self.name, self.kind, self.unit)
    }

    /// The series whose labels equal `labels` (in any order).
    pub fn series_with(&self, labels: &[(&str, &str)]) -> Option<&Series> {
        let mut want: Vec<(&str, &str)> = labels.to_vec();
        want.sort();
        self.series.iter().find(|s| {
            s.labels.len() == want.len()
                && s.labels
                    .iter()
                    .zip(&want)
                    .all(|((k, v), (wk, wv))| k == wk && v == wv)
        })
    }
}

/// A point-in-time copy of every metric, families sorted by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// The families.
    pub families: Vec<Family>,
    /// Wall-clock time of the snapshot.
    pub(crate) time: Option<std::time::SystemTime>,
}

impl Snapshot {
    /// The family recorded under `name` (the name as recorded, or its Prometheus name).
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families
            .iter()
            .find(|f| f.name == name)
            .or_else(|| self.families.iter().find(|f| f.prometheus_name() == name))
    }
}

impl MetricsHandle {
    /// Renders every metric in the Prometheus text exposition format 0.0.4
    /// (`text/plain; version=0.0.4; charset=utf-8`).
    pub fn render(&self) -> String {
        render::render(&self.snapshot_with_extras())
    }

    /// Renders every metric in the OpenMetrics text format 1.0.0 (for scrapers that negotiate
    /// it; Prometheus 3 does), ending with `# EOF`.
    pub fn render_openmetrics(&self) -> String {
        render::render_as(
            &self.snapshot_with_extras().families,
            render::Format::OpenMetrics,
        )
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
        crate::config::validate_buckets(name, bounds)?;
        self.inner
            .registry
            .storage()
            .explicit
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_owned(), Arc::from(bounds));
        Ok(())
    }

    /// A snapshot of the recorded metrics (without the computed process and info metrics).
    pub fn snapshot(&self) -> Snapshot {
        let inner = &self.inner;
        let descriptions = inner
            .descriptions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut map: std::collections::BTreeMap<(String, MetricKind), Vec<Series>> =
            std::collections::BTreeMap::new();
        let labels_of = |key: &metrics::Key| {
            let mut l: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            l.sort();
            l
        };
        inner.registry.visit_counters(|key, c| {
            map.entry((key.name().to_owned(), MetricKind::Counter))
                .or_default()
                .push(Series {
                    labels: labels_of(key),
                    value: Value::Counter(c.load(Ordering::Relaxed)),
                });
        });
        inner.registry.visit_gauges(|key, g| {
            map.entry((key.name().to_owned(), MetricKind::Gauge))
                .or_default()
                .push(Series {
                    labels: labels_of(key),
                    value: Value::Gauge(f64::from_bits(g.load(Ordering::Relaxed))),
                });
        });
        inner.registry.visit_histograms(|key, h| {
            map.entry((key.name().to_owned(), MetricKind::Histogram))
                .or_default()
                .push(Series {
                    labels: labels_of(key),
                    value: Value::Histogram(h.snapshot()),
                });
        });
        let families = map
            .into_iter()
            .map(|((name, kind), mut series)| {
                series.sort_by(|a, b| a.labels.cmp(&b.labels));
                let d = descriptions.get(&name);
                Family {
                    unit: d.and_then(|d| d.unit),
                    help: d.map(|d| d.help.to_string()).filter(|h| !h.is_empty()),
                    name,
                    kind,
                    series,
                }
            })
            .collect();
        Snapshot {
            families,
            time: Some(std::time::SystemTime::now()),
        }
    }

    /// What the OTLP push sends: the recorded metrics and the process metrics. Not
    /// `target_info` / `service_build_info`: over OTLP the resource travels as the resource,
    /// and receivers derive their own `target_info` from it.
    pub(crate) fn snapshot_for_push(&self) -> Snapshot {
        let mut snap = self.snapshot();
        if self.inner.info.process {
            snap.families
                .extend(process::collect(self.inner.start_time));
        }
        snap
    }

    /// A snapshot including `target_info`, `service_build_info` and the process metrics.
    pub fn snapshot_with_extras(&self) -> Snapshot {
        let mut snap = self.snapshot();
        let info = &self.inner.info;
        if !info.resource.is_empty() {
            snap.families.push(Family {
                name: "target_info".into(),
                kind: MetricKind::Gauge,
                unit: None,
                help: Some("Target metadata".into()),
                series: vec![Series {
                    labels: info.resource.clone(),
                    value: Value::Gauge(1.0),
                }],
            });
            let mut labels = vec![(
                "service.name".to_owned(),
                info.attr("service.name")
                    .unwrap_or("unknown_service")
                    .to_owned(),
            )];
            if let Some(v) = info.attr("service.version") {
                labels.push(("service.version".into(), v.into()));
            }
            if let Some(v) = &info.vcs_revision {
                labels.push(("vcs.revision".into(), v.clone()));
            }
            labels.sort();
            snap.families.push(Family {
                name: "service_build_info".into(),
                kind: MetricKind::Gauge,
                unit: None,
                help: Some("Build information of the service; always 1".into()),
                series: vec![Series {
                    labels,
                    value: Value::Gauge(1.0),
                }],
            });
        }
        if info.process {
            snap.families
                .extend(process::collect(self.inner.start_time));
        }
        snap
    }
}

#[cfg(test)]
pub(crate) mod tests {
    pub(crate) use super::recorder::tests::recorder;
}
