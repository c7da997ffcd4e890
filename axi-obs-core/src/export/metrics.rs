//! OTLP push of the metrics registry: the same series `/metrics` shows, as cumulative OTLP
//! sums, gauges and explicit-bucket histograms, every export interval and at shutdown.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::sync::mpsc;

use super::batch::{Control, ControlHandle};
use super::transport::{Request, Transport};
use crate::internal::{ExportCounters, RateLimit};
use crate::metrics::{MetricKind, MetricsHandle, Snapshot, Value, ucum};

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub(crate) fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_owned())),
        }),
        ..Default::default()
    }
}

/// Converts a snapshot to an OTLP request; returns it with its number of data points.
pub(crate) fn to_request(
    snapshot: &Snapshot,
    resource: &[(String, String)],
    start: SystemTime,
) -> (ExportMetricsServiceRequest, u64) {
    let now = nanos(snapshot.time.unwrap_or_else(SystemTime::now));
    let recorder_start = nanos(start);
    // The process's CPU time counts from the process's start, not the recorder's: a
    // cumulative point's start time is when its accumulation began.
    let process_start = snapshot
        .families
        .iter()
        .find(|f| f.name == "process_start_time_seconds")
        .and_then(|f| f.series.first()?.value.as_gauge())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| (s * 1e9) as u64);
    let mut points = 0u64;
    let metrics = snapshot
        .families
        .iter()
        .map(|f| {
            let start = match process_start {
                Some(p) if f.name == "process_cpu_seconds_total" => p.min(recorder_start),
                _ => recorder_start,
            };
            let attrs = |labels: &[(String, String)]| -> Vec<KeyValue> {
                labels.iter().map(|(k, v)| kv(k, v)).collect()
            };
            let number = |labels: &[(String, String)], v: &Value| NumberDataPoint {
                attributes: attrs(labels),
                start_time_unix_nano: start,
                time_unix_nano: now,
                value: Some(match v {
                    Value::Counter(c) => {
                        // Saturates rather than wrapping negative past `i64::MAX`.
                        number_data_point::Value::AsInt(i64::try_from(*c).unwrap_or(i64::MAX))
                    }
                    Value::Gauge(g) => number_data_point::Value::AsDouble(*g),
                    Value::Histogram(_) => number_data_point::Value::AsDouble(0.0),
                }),
                ..Default::default()
            };
            points += f.series.len() as u64;
            let data = match f.kind {
                MetricKind::Counter => metric::Data::Sum(Sum {
                    data_points: f
                        .series
                        .iter()
                        .map(|s| number(&s.labels, &s.value))
                        .collect(),
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                }),
                MetricKind::Gauge | MetricKind::Untyped => metric::Data::Gauge(Gauge {
                    data_points: f
                        .series
                        .iter()
                        .map(|s| number(&s.labels, &s.value))
                        .collect(),
                }),
                MetricKind::Histogram => metric::Data::Histogram(Histogram {
                    data_points: f
                        .series
                        .iter()
                        .filter_map(|s| {
                            let h = s.value.as_histogram()?;
                            Some(HistogramDataPoint {
                                attributes: attrs(&s.labels),
                                start_time_unix_nano: start,
                                time_unix_nano: now,
                                count: h.count,
                                // Left out after a negative value (or an infinite sum),
                                // as the OTLP field's definition says.
                                sum: h.sum_is_meaningful().then_some(h.sum),
                                bucket_counts: h.counts.clone(),
                                explicit_bounds: h.bounds.to_vec(),
                                ..Default::default()
                            })
                        })
                        .collect(),
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                }),
            };
            Metric {
                name: f.name.clone(),
                description: f.help.clone().unwrap_or_default(),
                unit: f.unit.map(ucum).unwrap_or_default().to_owned(),
                data: Some(data),
                ..Default::default()
            }
        })
        .collect();
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource.iter().map(|(k, v)| kv(k, v)).collect(),
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "axi-obs-core".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    (request, points)
}

/// Starts the periodic push task; returns its control handle.
pub(crate) fn start(
    runtime: &tokio::runtime::Handle,
    transport: Transport,
    metrics: MetricsHandle,
    resource: Vec<(String, String)>,
    interval: Duration,
    counters: ExportCounters,
) -> ControlHandle {
    let (control, rx) = ControlHandle::channel();
    runtime.spawn(run(transport, metrics, resource, interval, counters, rx));
    control
}

async fn run(
    transport: Transport,
    metrics: MetricsHandle,
    resource: Vec<(String, String)>,
    interval: Duration,
    counters: ExportCounters,
    mut ctrl: mpsc::Receiver<Control>,
) {
    let warn = RateLimit::every_secs(60);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (metrics, transport, resource, counters, warn) =
        (&metrics, &transport, &resource, &counters, &warn);
    let push = move |until: Option<std::time::Instant>| async move {
        let snapshot = metrics.snapshot_for_push();
        let (request, points) = to_request(&snapshot, resource, metrics.inner.start_time);
        match transport.send(Request::Metrics(request), until).await {
            Ok(rejected) => {
                let refused = rejected.items.min(points);
                counters
                    .exported
                    .fetch_add(points - refused, Ordering::Relaxed);
                counters.failed.fetch_add(refused, Ordering::Relaxed);
                if refused > 0 && warn.allow() {
                    tracing::warn!(
                        target: "axi_obs_core::export",
                        signal = "metrics",
                        points = refused,
                        reason = %rejected.message,
                        "the OTLP collector refused part of a metric export"
                    );
                }
                Ok(())
            }
            Err(e) => {
                counters.failed.fetch_add(points, Ordering::Relaxed);
                if warn.allow() {
                    tracing::warn!(
                        target: "axi_obs_core::export",
                        signal = "metrics",
                        error = %e,
                        "OTLP metric export failed"
                    );
                }
                Err(e.to_string())
            }
        }
    };
    loop {
        tokio::select! {
            biased;
            c = ctrl.recv() => match c {
                Some(Control::Flush(reply, until)) => { let _ = reply.send(push(Some(until)).await); }
                Some(Control::Shutdown(reply, until)) => { let _ = reply.send(push(Some(until)).await); return; }
                None => return,
            },
            _ = tick.tick() => { let _ = push(None).await; }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A histogram that recorded a negative value is pushed without a sum (OTLP's
    /// `HistogramDataPoint.sum` "should not be filled out" then); one that did not keeps it.
    #[test]
    fn a_histogram_with_a_negative_value_is_pushed_without_a_sum() {
        let rec = crate::metrics::tests::recorder(10);
        metrics::with_local_recorder(&rec, || {
            metrics::histogram!("deviation").record(-3.0);
            metrics::histogram!("deviation").record(5.0);
            metrics::histogram!("size").record(5.0);
        });
        let (req, _) = to_request(&rec.handle().snapshot(), &[], SystemTime::UNIX_EPOCH);
        let sums: Vec<(String, Option<f64>)> = req.resource_metrics[0].scope_metrics[0]
            .metrics
            .iter()
            .filter_map(|m| match &m.data {
                Some(metric::Data::Histogram(h)) => Some((m.name.clone(), h.data_points[0].sum)),
                _ => None,
            })
            .collect();
        assert_eq!(
            sums,
            [
                ("deviation".to_owned(), None),
                ("size".to_owned(), Some(5.0))
            ]
        );
    }

    /// The process's CPU time is pushed with the process's start as its start time (it has
    /// counted since then), other sums with the recorder's.
    #[test]
    fn process_cpu_counts_from_the_process_start() {
        use crate::metrics::{Family, Series, Snapshot};
        let family = |name: &str, kind: MetricKind, v: f64| Family {
            name: name.into(),
            kind,
            unit: None,
            help: None,
            series: vec![Series {
                labels: Vec::new(),
                value: Value::Gauge(v),
            }],
        };
        let snapshot = Snapshot {
            families: vec![
                family("process_cpu_seconds_total", MetricKind::Counter, 20.0),
                family("process_start_time_seconds", MetricKind::Gauge, 1_000.0),
                family("work_total", MetricKind::Counter, 1.0),
            ],
            time: Some(UNIX_EPOCH + std::time::Duration::from_secs(5_000)),
        };
        let recorder_start = UNIX_EPOCH + std::time::Duration::from_secs(2_000);
        let (req, _) = to_request(&snapshot, &[], recorder_start);
        let starts: Vec<(String, u64)> = req.resource_metrics[0].scope_metrics[0]
            .metrics
            .iter()
            .filter_map(|m| match &m.data {
                Some(metric::Data::Sum(s)) => {
                    Some((m.name.clone(), s.data_points[0].start_time_unix_nano))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            starts,
            [
                ("process_cpu_seconds_total".to_owned(), 1_000_000_000_000),
                ("work_total".to_owned(), 2_000_000_000_000)
            ]
        );
    }
}
