//! OpenTelemetry-to-Prometheus name translation and unit mapping.
//!
//! Follows the OpenTelemetry specification "OTLP Metric points to Prometheus": invalid
//! characters become `_` (runs collapsed), the unit is appended as a word unless the name
//! already ends with it, and counters end in `_total`. So `http.server.request.duration` in
//! seconds renders as `http_server_request_duration_seconds`.

use metrics::Unit;

/// The kind of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetricKind {
    /// A monotonic counter.
    Counter,
    /// A gauge.
    Gauge,
    /// A histogram with explicit buckets.
    Histogram,
    /// A value of unknown kind (Prometheus `untyped`, OpenMetrics `unknown`), for metrics
    /// copied from sources that do not say (node_exporter's `/proc/vmstat` fields).
    Untyped,
}

impl MetricKind {
    pub(crate) fn prometheus_type(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
            MetricKind::Untyped => "untyped",
        }
    }
}

/// The Prometheus suffix word for a unit, or `None` for dimensionless counts.
pub(crate) fn unit_suffix(unit: Unit) -> Option<&'static str> {
    Some(match unit {
        Unit::Count => return None,
        Unit::CountPerSecond => "per_second",
        other => other.as_str(),
    })
}

/// The UCUM unit string OTLP carries for a unit.
pub(crate) fn ucum(unit: Unit) -> &'static str {
    match unit {
        // Not "1": OpenTelemetry-to-Prometheus translation turns "1" into a `_ratio` suffix.
        Unit::Count => "{count}",
        Unit::Percent => "%",
        Unit::Seconds => "s",
        Unit::Milliseconds => "ms",
        Unit::Microseconds => "us",
        Unit::Nanoseconds => "ns",
        Unit::Tebibytes => "TiBy",
        Unit::Gibibytes => "GiBy",
        Unit::Mebibytes => "MiBy",
        Unit::Kibibytes => "KiBy",
        Unit::Bytes => "By",
        Unit::TerabitsPerSecond => "Tbit/s",
        Unit::GigabitsPerSecond => "Gbit/s",
        Unit::MegabitsPerSecond => "Mbit/s",
        Unit::KilobitsPerSecond => "kbit/s",
        Unit::BitsPerSecond => "bit/s",
        Unit::CountPerSecond => "1/s",
    }
}

/// Replaces every character outside `[a-zA-Z0-9_:]` with `_`, collapses runs of `_`, and
/// prefixes a leading digit with `_`.
pub(crate) fn sanitize_metric_name(name: &str) -> String {
    sanitize(name, true)
}

/// Like [`sanitize_metric_name`] but `:` is not allowed (label names).
pub(crate) fn sanitize_label_name(name: &str) -> String {
    sanitize(name, false)
}

fn sanitize(name: &str, allow_colon: bool) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    let mut last_underscore = false;
    for (i, c) in name.chars().enumerate() {
        let ok = c.is_ascii_alphanumeric() || c == '_' || (allow_colon && c == ':');
        let c = if ok { c } else { '_' };
        if i == 0 && c.is_ascii_digit() {
            out.push('_');
        }
        if c == '_' {
            if last_underscore {
                continue;
            }
            last_underscore = true;
        } else {
            last_underscore = false;
        }
        out.push(c);
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// The Prometheus family name for a metric.
pub(crate) fn prometheus_name(name: &str, kind: MetricKind, unit: Option<Unit>) -> String {
    let mut n = sanitize_metric_name(name);
    if kind == MetricKind::Counter
        && let Some(stripped) = n.strip_suffix("_total")
    {
        n.truncate(stripped.len());
    }
    if let Some(suffix) = unit.and_then(unit_suffix) {
        let already = n.len() > suffix.len()
            && n.ends_with(suffix)
            && n.as_bytes()[n.len() - suffix.len() - 1] == b'_';
        if !already {
            n.push('_');
            n.push_str(suffix);
        }
    }
    if kind == MetricKind::Counter {
        n.push_str("_total");
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otel_names_translate_like_the_specification() {
        assert_eq!(
            prometheus_name(
                "http.server.request.duration",
                MetricKind::Histogram,
                Some(Unit::Seconds)
            ),
            "http_server_request_duration_seconds"
        );
        assert_eq!(
            prometheus_name(
                "http.server.active_requests",
                MetricKind::Gauge,
                Some(Unit::Count)
            ),
            "http_server_active_requests"
        );
        assert_eq!(
            prometheus_name(
                "http.server.request.body.size",
                MetricKind::Histogram,
                Some(Unit::Bytes)
            ),
            "http_server_request_body_size_bytes"
        );
        assert_eq!(
            prometheus_name("requests", MetricKind::Counter, None),
            "requests_total"
        );
        assert_eq!(
            prometheus_name("requests_total", MetricKind::Counter, None),
            "requests_total"
        );
        assert_eq!(
            prometheus_name(
                "cpu_seconds_total",
                MetricKind::Counter,
                Some(Unit::Seconds)
            ),
            "cpu_seconds_total"
        );
        assert_eq!(
            prometheus_name("gc.time", MetricKind::Counter, Some(Unit::Seconds)),
            "gc_time_seconds_total"
        );
        assert_eq!(
            prometheus_name("queue_seconds", MetricKind::Gauge, Some(Unit::Seconds)),
            "queue_seconds"
        );
        // "xseconds" does not end with the *word* seconds.
        assert_eq!(
            prometheus_name("xseconds", MetricKind::Gauge, Some(Unit::Seconds)),
            "xseconds_seconds"
        );
    }

    #[test]
    fn sanitizing() {
        assert_eq!(sanitize_metric_name("a.b-c  d"), "a_b_c_d");
        assert_eq!(sanitize_metric_name("9lives"), "_9lives");
        assert_eq!(sanitize_metric_name("ns:sub"), "ns:sub");
        assert_eq!(sanitize_label_name("ns:sub"), "ns_sub");
        assert_eq!(sanitize_label_name("http.route"), "http_route");
        assert_eq!(sanitize_label_name(""), "_");
    }
}
