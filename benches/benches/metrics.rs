//! Metric recording through axi-obs's recorder, side by side with the bare
//! metrics-exporter-prometheus recorder and the OpenTelemetry SDK metrics API, in one run.
//!
//! Rows per group: `axi-obs` (our recorder: series cap + Prometheus and OTLP from one
//! registry), `metrics-exporter-prometheus` (its `PrometheusRecorder`, no HTTP listener),
//! `opentelemetry-sdk` (an `SdkMeterProvider` with a manual reader).

#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::{ManualReader, SdkMeterProvider};
use std::hint::black_box;

fn ours() -> axi_obs_core::MetricsRecorder {
    axi_obs_core::Telemetry::builder()
        .env(axi_obs_core::Env::empty())
        .log_writer(std::io::sink())
        .build()
        .unwrap()
        .recorder
}

fn prometheus() -> metrics_exporter_prometheus::PrometheusRecorder {
    metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder()
}

fn otel() -> SdkMeterProvider {
    SdkMeterProvider::builder()
        .with_reader(ManualReader::builder().build())
        .build()
}

fn counter_cached(c: &mut Criterion) {
    let mut g = c.benchmark_group("counter_increment_cached_handle");
    let rec = ours();
    let h = metrics::with_local_recorder(&rec, || metrics::counter!("requests_total"));
    g.bench_function("axi-obs", |b| b.iter(|| h.increment(black_box(1))));
    let rec = prometheus();
    let h = metrics::with_local_recorder(&rec, || metrics::counter!("requests_total"));
    g.bench_function("metrics-exporter-prometheus", |b| {
        b.iter(|| h.increment(black_box(1)))
    });
    let provider = otel();
    let counter = provider.meter("bench").u64_counter("requests").build();
    g.bench_function("opentelemetry-sdk", |b| {
        b.iter(|| counter.add(black_box(1), &[]))
    });
    g.finish();
}

fn counter_macro(c: &mut Criterion) {
    let mut g = c.benchmark_group("counter_macro_two_labels");
    let rec = ours();
    metrics::with_local_recorder(&rec, || {
        g.bench_function("axi-obs", |b| {
            b.iter(|| {
                metrics::counter!("requests_total", "method" => "GET", "route" => "/api/products")
                    .increment(black_box(1))
            })
        });
    });
    let rec = prometheus();
    metrics::with_local_recorder(&rec, || {
        g.bench_function("metrics-exporter-prometheus", |b| {
            b.iter(|| {
                metrics::counter!("requests_total", "method" => "GET", "route" => "/api/products")
                    .increment(black_box(1))
            })
        });
    });
    let provider = otel();
    let counter = provider.meter("bench").u64_counter("requests").build();
    g.bench_function("opentelemetry-sdk", |b| {
        b.iter(|| {
            counter.add(
                black_box(1),
                &[
                    KeyValue::new("method", "GET"),
                    KeyValue::new("route", "/api/products"),
                ],
            )
        })
    });
    g.finish();
}

fn histogram_cached(c: &mut Criterion) {
    let mut g = c.benchmark_group("histogram_record_cached_handle");
    let rec = ours();
    let h = metrics::with_local_recorder(&rec, || metrics::histogram!("request_duration_seconds"));
    g.bench_function("axi-obs", |b| b.iter(|| h.record(black_box(0.042))));
    // The peer keeps raw samples until rendered; render now and then so the bucket does not
    // grow without bound during the run (what its upkeep task does in production).
    let rec = prometheus();
    let handle = rec.handle();
    let h = metrics::with_local_recorder(&rec, || metrics::histogram!("request_duration_seconds"));
    g.bench_function("metrics-exporter-prometheus", |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            for _ in 0..iters {
                h.record(black_box(0.042));
            }
            let elapsed = start.elapsed();
            handle.run_upkeep();
            elapsed
        })
    });
    let provider = otel();
    let hist = provider
        .meter("bench")
        .f64_histogram("request.duration")
        .with_unit("s")
        .build();
    g.bench_function("opentelemetry-sdk", |b| {
        b.iter(|| hist.record(black_box(0.042), &[]))
    });
    g.finish();
}

criterion_group!(benches, counter_cached, counter_macro, histogram_cached);
criterion_main!(benches);
