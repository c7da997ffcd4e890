//! Prometheus text exposition format 0.0.4.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::naming::{prometheus_name, sanitize_label_name};
use super::{Family, MetricKind, Snapshot, Value};

/// The `Content-Type` of [`MetricsHandle::render`](super::MetricsHandle::render)'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The `Content-Type` of
/// [`MetricsHandle::render_openmetrics`](super::MetricsHandle::render_openmetrics)'s output.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Which text format to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// Prometheus text exposition 0.0.4.
    Prometheus,
    /// OpenMetrics text 1.0.0.
    OpenMetrics,
}

/// Renders `families` in the Prometheus text format 0.0.4: the same encoder `/metrics` uses,
/// for programs that collect families themselves (collectors reading `/proc`, say).
pub fn render_families(families: &[Family]) -> String {
    render_as(families, Format::Prometheus)
}

/// Why a family was left out of the page.
const SAMPLE_NAME_CLASH: &str = "a metric's name is another metric's sample name (a histogram `x` writes `x_count`, `x_sum`, `x_bucket`); it is left out of /metrics";
const KIND_CLASH: &str = "two metrics of different kinds (a counter and a gauge, say) have one Prometheus name; the second is left out of /metrics";
const SERIES_CLASH: &str = "two metrics have one Prometheus name and the same labels (names that differ by `.` and `_`, or by a `_total` suffix); only the first recorded series is written to /metrics (OTLP gets both): rename one";
const FAMILY_CLASH: &str = "two metrics have one OpenMetrics family name (a counter `x`, written `x_total`, and a gauge `x`); the second is left out of the OpenMetrics page";

/// Says once per family and reason (per process) that it was left out of the page.
fn warn_clash(family: &str, why: &'static str) {
    static WARNED: std::sync::Mutex<std::collections::BTreeSet<String>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let first = WARNED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(format!("{family}\0{why}"));
    if first {
        tracing::warn!(target: "axi_obs_core::metrics", family, "{why}");
    }
}

pub(crate) fn render(snapshot: &Snapshot) -> String {
    render_as(&snapshot.families, Format::Prometheus)
}

pub(crate) fn render_as(families: &[Family], format: Format) -> String {
    let om = format == Format::OpenMetrics;
    // Group by the Prometheus family name; the first kind seen for a name wins (a counter and
    // a gauge cannot share a family).
    let mut groups: BTreeMap<String, Vec<&Family>> = BTreeMap::new();
    for f in families {
        let name = prometheus_name(&f.name, f.kind, f.unit);
        let group = groups.entry(name).or_default();
        if group.first().is_none_or(|g| g.kind == f.kind) {
            group.push(f);
        } else {
            warn_clash(&f.name, KIND_CLASH);
        }
    }
    // The family name each group is written under: OpenMetrics names a counter family without
    // `_total` and an info family without `_info`, their samples keeping the suffix
    // (`target_info` is the info family `target`). Family names are unique: of two groups
    // written under one name (a counter `thing` and a gauge `thing`), the first is kept.
    let mut written: BTreeMap<String, (String, bool, Vec<&Family>)> = BTreeMap::new();
    for (name, families) in groups {
        let kind = families[0].kind;
        let is_info = om
            && kind == MetricKind::Gauge
            && name.ends_with("_info")
            && families
                .iter()
                .flat_map(|f| &f.series)
                .all(|s| s.value.as_gauge() == Some(1.0));
        let family = if om && kind == MetricKind::Counter {
            name.strip_suffix("_total").unwrap_or(&name)
        } else if is_info {
            name.strip_suffix("_info").unwrap_or(&name)
        } else {
            &name
        };
        match written.entry(family.to_owned()) {
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert((name, is_info, families));
            }
            std::collections::btree_map::Entry::Occupied(_) => warn_clash(&name, FAMILY_CLASH),
        }
    }
    // Nor may a family's name or samples be another family's samples (a histogram `jobs`
    // writes `jobs_count`, which a gauge `jobs_count` would write again): of two that clash,
    // the first by name is kept, the other left out with a warning.
    let mut taken: std::collections::HashSet<String> = std::collections::HashSet::new();
    written.retain(|family, (name, _, families)| {
        // The sample names the family writes (a counter's keep `_total` in both formats).
        let names: Vec<String> = match families[0].kind {
            MetricKind::Histogram => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|s| format!("{name}{s}"))
                .collect(),
            _ => vec![name.clone()],
        };
        if names.iter().any(|n| taken.contains(n)) {
            warn_clash(family, SAMPLE_NAME_CLASH);
            return false;
        }
        taken.extend(names);
        true
    });
    let mut out = String::with_capacity(4096);
    for (family, (name, is_info, families)) in &written {
        let (family, name, is_info) = (family.as_str(), name.as_str(), *is_info);
        let kind = families[0].kind;
        if let Some(help) = families.iter().find_map(|f| f.help.as_deref()) {
            out.push_str("# HELP ");
            out.push_str(family);
            out.push(' ');
            escape_help(&mut out, help, om);
            out.push('\n');
        }
        let type_name = match (om, kind) {
            (true, MetricKind::Untyped) => "unknown",
            _ if is_info => "info",
            _ => kind.prometheus_type(),
        };
        let _ = writeln!(out, "# TYPE {family} {type_name}");
        if om
            && let Some(unit) = families[0].unit.and_then(super::naming::unit_suffix)
            && family.ends_with(unit)
        {
            let _ = writeln!(out, "# UNIT {family} {unit}");
        }
        let mut series: Vec<(Vec<(String, String)>, &Value)> = families
            .iter()
            .flat_map(|f| f.series.iter())
            .map(|s| (prometheus_labels(&s.labels), &s.value))
            .collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        // Names that differ before translation (`a.b` and `a_b`, `jobs` and `jobs_total`) can
        // meet in one family with the same labels: a label set is written once (the first
        // recorded), as both formats require, and the loss is said once.
        if series.windows(2).any(|w| w[0].0 == w[1].0) {
            warn_clash(name, SERIES_CLASH);
        }
        series.dedup_by(|later, earlier| later.0 == earlier.0);
        for (labels, value) in series {
            match value {
                Value::Counter(v) => {
                    sample(&mut out, name, "", &labels, None);
                    out.push_str(itoa::Buffer::new().format(*v));
                    out.push('\n');
                }
                Value::Gauge(v) => {
                    sample(&mut out, name, "", &labels, None);
                    push_float(&mut out, *v);
                    out.push('\n');
                }
                Value::Histogram(h) => {
                    let mut cumulative = 0u64;
                    let mut le = String::new();
                    for (i, count) in h.counts.iter().enumerate() {
                        cumulative += count;
                        le.clear();
                        match h.bounds.get(i) {
                            Some(b) if om => push_canonical_float(&mut le, *b),
                            Some(b) => push_float(&mut le, *b),
                            None => le.push_str("+Inf"),
                        }
                        sample(&mut out, name, "_bucket", &labels, Some(&le));
                        out.push_str(itoa::Buffer::new().format(cumulative));
                        out.push('\n');
                    }
                    // OpenMetrics: a histogram with negative thresholds or observations has no
                    // sum (it would not be a counter), and a sum is never NaN or negative
                    // (observations of +Inf and -Inf make it NaN).
                    if !om || (h.bounds.iter().all(|b| *b >= 0.0) && !h.negative && h.sum >= 0.0) {
                        sample(&mut out, name, "_sum", &labels, None);
                        push_float(&mut out, h.sum);
                        out.push('\n');
                    }
                    sample(&mut out, name, "_count", &labels, None);
                    out.push_str(itoa::Buffer::new().format(h.count));
                    out.push('\n');
                }
            }
        }
    }
    if om {
        out.push_str("# EOF\n");
    }
    out
}

/// Label keys translated to Prometheus names; keys that collide after translation have their
/// values joined with `;` (as the OpenTelemetry specification says), ordered by original key.
fn prometheus_labels(labels: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(labels.len());
    for (k, v) in labels {
        let mut k = sanitize_label_name(k);
        if k == "le" || k == "__name__" {
            // Reserved by the histogram encoding / the metric name itself.
            k.insert(0, '_');
        }
        if let Some(existing) = out.iter_mut().find(|(ek, _)| *ek == k) {
            existing.1.push(';');
            existing.1.push_str(v);
        } else {
            out.push((k, v.clone()));
        }
    }
    out.sort();
    out
}

fn sample(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(String, String)],
    le: Option<&str>,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        let mut first = true;
        for (k, v) in labels {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(k);
            out.push_str("=\"");
            escape_label_value(out, v);
            out.push('"');
        }
        if let Some(le) = le {
            if !first {
                out.push(',');
            }
            out.push_str("le=\"");
            out.push_str(le);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
}

pub(crate) fn push_float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        // Integral values without a trailing ".0", as Go's strconv 'g' prints them.
        out.push_str(itoa::Buffer::new().format(v as i64));
    } else {
        out.push_str(ryu::Buffer::new().format_finite(v));
    }
}

/// A number as OpenMetrics wants it where it must be canonical (a histogram's `le`): Go's
/// shortest `%g`, with `.0` added when that has neither a point nor an exponent (`1.0`,
/// `0.005`, `10000.0`, `1e-07`, `1e+06`), as the Prometheus client libraries write it.
pub(crate) fn push_canonical_float(out: &mut String, v: f64) {
    if !v.is_finite() {
        push_float(out, v);
        return;
    }
    // Shortest round-trip digits and the decimal exponent: `{:e}` writes `-1.2345e-7`.
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    out.push_str(sign);
    // Go's %g with the shortest precision: exponent form below 1e-4 and from 1e6 up.
    if !(-4..6).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
        return;
    }
    if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
        return;
    }
    let int_len = exp as usize + 1;
    if digits.len() > int_len {
        out.push_str(&digits[..int_len]);
        out.push('.');
        out.push_str(&digits[int_len..]);
    } else {
        out.push_str(&digits);
        for _ in digits.len()..int_len {
            out.push('0');
        }
        out.push_str(".0");
    }
}

fn escape_help(out: &mut String, s: &str, om: bool) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if om => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// `s` as a label value of the text exposition: `\`, `"` and newlines escaped.
pub(crate) fn escape_label_value(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::recorder;
    use metrics::Unit;

    #[test]
    fn renders_exact_exposition_text() {
        let rec = recorder(100);
        metrics::with_local_recorder(&rec, || {
            metrics::describe_counter!("orders", "Orders placed.\nBy \\ kind");
            metrics::describe_histogram!("work.duration", Unit::Seconds, "Work time");
            metrics::describe_gauge!("queue.depth", "Items waiting");
            metrics::counter!("orders", "kind" => "a\"b\\c\nd").increment(3);
            metrics::counter!("orders", "kind" => "plain").increment(1);
            metrics::gauge!("queue.depth").set(2.5);
            metrics::histogram!("work.duration", "http.route" => "/x").record(0.3);
            metrics::histogram!("work.duration", "http.route" => "/x").record(20.0);
        });
        let text = super::render(&rec.handle().snapshot());
        let expected = r#"# HELP orders_total Orders placed.\nBy \\ kind
# TYPE orders_total counter
orders_total{kind="a\"b\\c\nd"} 3
orders_total{kind="plain"} 1
# HELP queue_depth Items waiting
# TYPE queue_depth gauge
queue_depth 2.5
# HELP work_duration_seconds Work time
# TYPE work_duration_seconds histogram
work_duration_seconds_bucket{http_route="/x",le="0.005"} 0
work_duration_seconds_bucket{http_route="/x",le="0.01"} 0
work_duration_seconds_bucket{http_route="/x",le="0.025"} 0
work_duration_seconds_bucket{http_route="/x",le="0.05"} 0
work_duration_seconds_bucket{http_route="/x",le="0.075"} 0
work_duration_seconds_bucket{http_route="/x",le="0.1"} 0
work_duration_seconds_bucket{http_route="/x",le="0.25"} 0
work_duration_seconds_bucket{http_route="/x",le="0.5"} 1
work_duration_seconds_bucket{http_route="/x",le="0.75"} 1
work_duration_seconds_bucket{http_route="/x",le="1"} 1
work_duration_seconds_bucket{http_route="/x",le="2.5"} 1
work_duration_seconds_bucket{http_route="/x",le="5"} 1
work_duration_seconds_bucket{http_route="/x",le="7.5"} 1
work_duration_seconds_bucket{http_route="/x",le="10"} 1
work_duration_seconds_bucket{http_route="/x",le="+Inf"} 2
work_duration_seconds_sum{http_route="/x"} 20.3
work_duration_seconds_count{http_route="/x"} 2
"#;
        assert_eq!(text, expected);
    }

    #[test]
    fn a_metric_named_like_another_ones_samples_is_left_out() {
        let rec = recorder(100);
        metrics::with_local_recorder(&rec, || {
            metrics::histogram!("jobs").record(1.0);
            metrics::gauge!("jobs_count").set(7.0);
            metrics::gauge!("jobs_sum_other").set(1.0);
            // A counter's samples end in `_total`: no clash, in either format.
            metrics::counter!("jobs_sum").increment(2);
        });
        for text in [
            super::render(&rec.handle().snapshot()),
            super::render_as(
                &rec.handle().snapshot().families,
                super::Format::OpenMetrics,
            ),
        ] {
            // `jobs_count` is written once, by the histogram; the unrelated gauge stays.
            assert_eq!(text.matches("\njobs_count ").count(), 1, "{text}");
            assert!(!text.contains("# TYPE jobs_count") && !text.contains("jobs_count 7"));
            assert!(text.contains("# TYPE jobs histogram") && text.contains("jobs_sum_other 1"));
            assert!(text.contains("jobs_sum_total 2"), "{text}");
        }
    }

    /// A counter and a gauge of one name: both are on the text page (`x_total`, `x`), but
    /// OpenMetrics names both families `x` and keeps one; the other is left out with a
    /// warning, not silently. A gauge named like a counter's samples is left out with one.
    #[test]
    fn metrics_left_out_for_a_name_clash_are_said_so() {
        let rec = recorder(100);
        metrics::with_local_recorder(&rec, || {
            metrics::counter!("connections").increment(1);
            metrics::gauge!("connections").set(3.0);
            metrics::counter!("tasks").increment(1);
            metrics::gauge!("tasks_total").set(5.0);
        });
        let families = rec.handle().snapshot().families;
        let capture = crate::testing::Capture::new();
        let (text, om) = capture.run(|| {
            (
                super::render_as(&families, super::Format::Prometheus),
                super::render_as(&families, super::Format::OpenMetrics),
            )
        });
        assert!(
            text.contains("connections_total 1") && text.contains("\nconnections 3"),
            "{text}"
        );
        assert_eq!(om.matches("# TYPE connections ").count(), 1, "{om}");
        let logs = capture.log_text();
        assert!(
            logs.contains("one OpenMetrics family name") && logs.contains("connections"),
            "{logs}"
        );
        assert!(!text.contains("tasks_total 5"), "{text}");
        assert!(
            logs.contains("different kinds") && logs.contains("tasks_total"),
            "{logs}"
        );
    }

    #[test]
    fn openmetrics_text() {
        let rec = recorder(100);
        metrics::with_local_recorder(&rec, || {
            metrics::describe_counter!("gc.time", Unit::Seconds, "GC \"pause\" time");
            metrics::counter!("gc.time").increment(2);
            metrics::counter!("jobs_total").increment(1);
            metrics::histogram!("lat_seconds").record(0.3);
        });
        let text = super::render_as(
            &rec.handle().snapshot().families,
            super::Format::OpenMetrics,
        );
        assert!(
            text.contains("# HELP gc_time_seconds GC \\\"pause\\\" time\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE gc_time_seconds counter\n# UNIT gc_time_seconds seconds\ngc_time_seconds_total 2\n"), "{text}");
        assert!(
            text.contains("# TYPE jobs counter\njobs_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("lat_seconds_bucket{le=\"+Inf\"} 1\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn openmetrics_le_values_are_canonical() {
        let cases = [
            (0.005, "0.005"),
            (1.0, "1.0"),
            (0.0, "0.0"),
            (-1.0, "-1.0"),
            (10.0, "10.0"),
            (2.5, "2.5"),
            (10_000.0, "10000.0"),
            (123_456.5, "123456.5"),
            (1e6, "1e+06"),
            (1.5e7, "1.5e+07"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (1e-7, "1e-07"),
            (-2.5e-7, "-2.5e-07"),
            (1e21, "1e+21"),
        ];
        for (v, want) in cases {
            let mut out = String::new();
            super::push_canonical_float(&mut out, v);
            assert_eq!(out, want, "{v}");
        }
        let rec = recorder(100);
        metrics::with_local_recorder(&rec, || {
            metrics::histogram!("lat_seconds").record(0.3);
        });
        let om = super::render_as(
            &rec.handle().snapshot().families,
            super::Format::OpenMetrics,
        );
        assert!(om.contains("lat_seconds_bucket{le=\"1.0\"} 1\n"), "{om}");
        assert!(om.contains("lat_seconds_bucket{le=\"0.005\"} 0\n"), "{om}");
        // The 0.0.4 text keeps Go's plain `%g` (what promtool and client_golang write).
        let text = super::render(&rec.handle().snapshot());
        assert!(text.contains("lat_seconds_bucket{le=\"1\"} 1\n"), "{text}");
    }

    #[test]
    fn openmetrics_histograms_without_a_valid_sum_leave_it_out() {
        let rec = recorder(100);
        metrics::with_local_recorder(&rec, || {
            metrics::histogram!("ok_seconds").record(0.3);
            metrics::histogram!("odd_seconds").record(f64::INFINITY);
            metrics::histogram!("odd_seconds").record(f64::NEG_INFINITY);
        });
        let snapshot = rec.handle().snapshot();
        let om = super::render_as(&snapshot.families, super::Format::OpenMetrics);
        assert!(om.contains("ok_seconds_sum 0.3\n"), "{om}");
        assert!(!om.contains("odd_seconds_sum"), "{om}");
        assert!(om.contains("odd_seconds_count 2\n"), "{om}");
        // The 0.0.4 text keeps it (NaN is a valid sample there).
        assert!(super::render(&snapshot).contains("odd_seconds_sum NaN\n"));
    }

    /// Two metrics that meet in one series lose one of them on the page: said, once.
    #[test]
    fn a_series_left_out_for_a_name_clash_is_warned_of() {
        let cap = crate::testing::Capture::new();
        let _g = tracing::dispatcher::set_default(&cap.dispatch());
        let rec = recorder(100);
        metrics::with_local_recorder(&rec, || {
            metrics::counter!("clash.requests", "method" => "GET").increment(1);
            metrics::counter!("clash_requests", "method" => "GET").increment(5);
        });
        let snapshot = rec.handle().snapshot();
        let text = super::render(&snapshot);
        assert_eq!(text.matches("clash_requests_total{").count(), 1, "{text}");
        let _ = super::render(&snapshot);
        let warned: Vec<_> = cap
            .logs()
            .into_iter()
            .filter(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("only the first recorded series"))
            })
            .collect();
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert_eq!(warned[0]["family"], "clash_requests_total", "{warned:?}");
    }

    #[test]
    fn names_that_meet_after_translation_are_written_once() {
        let rec = recorder(100);
        metrics::with_local_recorder(&rec, || {
            // `jobs` and `jobs_total` are both the family `jobs_total`; `a.b` and `a_b` are
            // the same label. Each label set is written once.
            metrics::counter!("jobs").increment(1);
            metrics::counter!("jobs_total").increment(2);
            metrics::gauge!("temp", "a.b" => "x").set(1.0);
            metrics::gauge!("temp", "a_b" => "x").set(2.0);
            // A counter `thing` and a gauge `thing`: distinct in 0.0.4 (`thing_total` and
            // `thing`), one OpenMetrics family name, which must be unique.
            metrics::counter!("thing").increment(1);
            metrics::gauge!("thing").set(5.0);
            // A user label `le` is renamed; one already named `_le` joins it.
            metrics::gauge!("odd", "le" => "1", "_le" => "2").set(1.0);
        });
        let snapshot = rec.handle().snapshot();
        let text = super::render(&snapshot);
        assert_eq!(
            text.matches("\njobs_total ").count() + usize::from(text.starts_with("jobs_total ")),
            1,
            "{text}"
        );
        assert_eq!(text.matches("temp{a_b=\"x\"}").count(), 1, "{text}");
        assert!(text.contains("# TYPE thing_total counter\n"), "{text}");
        assert!(text.contains("# TYPE thing gauge\n"), "{text}");
        assert!(
            text.contains("odd{_le=\"1;2\"} 1\n") || text.contains("odd{_le=\"2;1\"} 1\n"),
            "{text}"
        );
        let om = super::render_as(&snapshot.families, super::Format::OpenMetrics);
        assert_eq!(om.matches("# TYPE thing ").count(), 1, "{om}");
        // An info gauge `build_info` is the OpenMetrics family `build`: one of them.
        let rec = recorder(100);
        metrics::with_local_recorder(&rec, || {
            metrics::gauge!("build_info", "version" => "1").set(1.0);
            metrics::gauge!("build").set(3.0);
        });
        let om2 = super::render_as(
            &rec.handle().snapshot().families,
            super::Format::OpenMetrics,
        );
        assert_eq!(om2.matches("# TYPE build ").count(), 1, "{om2}");
        assert_eq!(om.matches("\njobs_total ").count(), 1, "{om}");
        assert_eq!(om.matches("temp{a_b=\"x\"}").count(), 1, "{om}");
    }

    #[test]
    fn openmetrics_info_families() {
        use super::super::{Family, MetricKind, Series, Value};
        let info = Family {
            name: "target_info".into(),
            kind: MetricKind::Gauge,
            unit: None,
            help: Some("Target metadata".into()),
            series: vec![Series {
                labels: vec![("service_name".into(), "x".into())],
                value: Value::Gauge(1.0),
            }],
        };
        let text = super::render_as(std::slice::from_ref(&info), super::Format::OpenMetrics);
        assert_eq!(
            text,
            "# HELP target Target metadata\n# TYPE target info\ntarget_info{service_name=\"x\"} 1\n# EOF\n"
        );
        let text = super::render_as(&[info], super::Format::Prometheus);
        assert!(text.contains("# TYPE target_info gauge\n"), "{text}");
    }

    #[test]
    fn floats_render_like_go() {
        let mut s = String::new();
        for v in [
            1.0,
            0.005,
            -2.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e-7,
            1e20,
        ] {
            super::push_float(&mut s, v);
            s.push(' ');
        }
        assert_eq!(s, "1 0.005 -2 NaN +Inf -Inf 1e-7 1e20 ");
    }
}
