//! One INFO event with three fields through axi-obs's ECS JSON layer, side by side with plain
//! `tracing-subscriber` JSON (`fmt().json()`), both writing to `io::sink`, in one run.
//!
//! A third row runs the full layer stack `Telemetry::build()` installs (filter + JSON layer +
//! the bounded non-blocking writer, draining to a sink) to show what the writer adds.

#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tracing_subscriber::layer::SubscriberExt;

fn event() {
    tracing::info!(
        order_id = black_box(42u64),
        channel = black_box("web"),
        paid = black_box(true),
        "order placed"
    );
}

fn info_event(c: &mut Criterion) {
    let mut g = c.benchmark_group("info_event_three_fields_json");

    let ours = tracing_subscriber::registry().with(axi_obs_core::logs::JsonLayer::new(
        std::io::sink,
        [("service.name", "bench"), ("service.version", "1.0.0")],
    ));
    tracing::subscriber::with_default(ours, || {
        g.bench_function("axi-obs JsonLayer", |b| b.iter(event));
    });

    let peer = tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(peer, || {
        g.bench_function("tracing-subscriber json", |b| b.iter(event));
    });

    let parts = axi_obs_core::Telemetry::builder()
        .env(axi_obs_core::Env::empty())
        .service_name("bench")
        .log_format(axi_obs_core::LogFormat::Json)
        .log_writer(std::io::sink())
        .build()
        .unwrap();
    let full = tracing_subscriber::registry().with(parts.layer);
    tracing::subscriber::with_default(full, || {
        g.bench_function("axi-obs installed stack (non-blocking writer)", |b| {
            b.iter(event)
        });
    });
    g.finish();
}

criterion_group!(benches, info_event);
criterion_main!(benches);
