//! Flushes and shutdowns that give up while an export is under way.
//!
//! A flush that gives up leaves its request queued behind that export. Read late, past its
//! deadline, it must not export what is queued with no time left (every batch would fail and
//! be lost although the collector is healthy): the items stay for the normal pipeline and
//! arrive. A shutdown that gives up stops the export runtime: the items of that export, those
//! batched and those queued are lost, and must be counted as dropped, not vanish. And one
//! signal's collector too slow for the deadline does not take the other signals' time.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axi_obs_core::{Env, OtlpConfig, Protocol, Telemetry, TelemetryGuard};
use tracing_subscriber::layer::SubscriberExt;

/// A collector that takes `delay` per trace export, then accepts it; returns its address and
/// the count of trace exports it accepted.
async fn slow_collector(delay: Duration) -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let requests = Arc::new(AtomicU64::new(0));
    let seen = requests.clone();
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(move || {
                let seen = seen.clone();
                async move {
                    tokio::time::sleep(delay).await;
                    seen.fetch_add(1, Ordering::Relaxed);
                    (
                        [("content-type", "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                }
            }),
        )
        .fallback(|| async {
            (
                [("content-type", "application/x-protobuf")],
                Vec::<u8>::new(),
            )
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_starts_no_export_it_has_no_time_left_for() {
    let (addr, _) = slow_collector(Duration::from_millis(300)).await;
    let parts = Telemetry::builder()
        .env(Env::empty())
        .service_name("flush-margin")
        .otlp(
            OtlpConfig::new()
                .endpoint(format!("http://{addr}"))
                .protocol(Protocol::HttpProtobuf),
        )
        .export_queue_size(std::num::NonZeroUsize::new(8192).unwrap())
        .shutdown_timeout(Duration::from_millis(1450))
        .log_writer(std::io::sink())
        .build()
        .unwrap();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(parts.layer));
    // Eight full batches: the first goes out at once, the flush finds seven.
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..4096 {
            let _s = tracing::info_span!("work", i).entered();
        }
    });
    let metrics = parts.recorder.handle();
    let guard = parts.guard;
    let flushed = tokio::task::spawn_blocking(move || (guard.force_flush(), guard))
        .await
        .unwrap();
    // Read after the first export (300 ms), the flush has about 1.15 s: two exports, and not
    // a third it has 0.55 s left for (a 300 ms export needs twice that). Had it started,
    // the deadline would have cut the fourth short and lost its 512 spans.
    assert!(flushed.0.is_err(), "eight exports of 300 ms in 1.45 s");
    let guard = flushed.1;
    let count = |outcome: &str| span_items(&metrics, outcome);
    let deadline = Instant::now() + Duration::from_secs(20);
    while count("exported") < 4096 && count("failed") == 0 {
        assert!(
            Instant::now() < deadline,
            "exported {} of 4096",
            count("exported")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        (count("exported"), count("failed"), count("dropped")),
        (4096, 0, 0)
    );
    drop(guard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_read_after_its_deadline_loses_nothing() {
    let (addr, requests) = slow_collector(Duration::from_millis(1500)).await;
    let (metrics, guard) = busy_exporter(addr).await;
    let flushed = tokio::task::spawn_blocking(move || {
        let r = guard.force_flush();
        (r, guard)
    })
    .await
    .unwrap();
    assert!(flushed.0.is_err(), "the flush cannot finish in 300 ms");
    let guard = flushed.1;

    let count = |outcome: &str| span_items(&metrics, outcome);
    // The 100 go with the next batch (the span batch delay is 5 s), 1.5 s each way.
    let deadline = Instant::now() + Duration::from_secs(15);
    while count("exported") < 612 && count("failed") == 0 {
        assert!(
            Instant::now() < deadline,
            "exported {} of 612",
            count("exported")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        (count("exported"), count("failed"), count("dropped")),
        (612, 0, 0)
    );
    assert_eq!(requests.load(Ordering::Relaxed), 2);
    drop(guard);
}

/// Telemetry exporting spans to `addr`, with a 300 ms shutdown timeout, after 612 spans: a
/// full batch (512) that went out at once and keeps the exporter busy, and 100 more that
/// wait in the queue.
async fn busy_exporter(
    addr: std::net::SocketAddr,
) -> (axi_obs_core::MetricsHandle, TelemetryGuard) {
    let parts = Telemetry::builder()
        .env(Env::empty())
        .service_name("export-deadlines")
        .otlp(
            OtlpConfig::new()
                .endpoint(format!("http://{addr}"))
                .protocol(Protocol::HttpProtobuf),
        )
        .shutdown_timeout(Duration::from_millis(300))
        .log_writer(std::io::sink())
        .build()
        .unwrap();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(parts.layer));
    let emit = |n: usize| {
        tracing::dispatcher::with_default(&dispatch, || {
            for i in 0..n {
                let _s = tracing::info_span!("work", i).entered();
            }
        });
    };
    emit(512);
    tokio::time::sleep(Duration::from_millis(200)).await;
    emit(100);
    (parts.recorder.handle(), parts.guard)
}

/// `axi_obs_export_items_total{signal="traces",outcome}`.
fn span_items(metrics: &axi_obs_core::MetricsHandle, outcome: &str) -> u64 {
    items(metrics, "traces", outcome)
}

/// `axi_obs_export_items_total{signal,outcome}`.
fn items(metrics: &axi_obs_core::MetricsHandle, signal: &str, outcome: &str) -> u64 {
    metrics
        .snapshot()
        .family("axi_obs_export_items_total")
        .and_then(|f| {
            f.series_with(&[("signal", signal), ("outcome", outcome)])
                .and_then(|s| s.value.as_counter())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_of_an_export_cut_short_by_shutdown_are_counted_as_dropped() {
    // A collector that never answers in time (the exporter's timeout is 10 s, longer than the
    // 300 ms shutdown).
    let app = axum::Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        ""
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (metrics, mut guard) = busy_exporter(addr).await;
    let shut = tokio::task::spawn_blocking(move || {
        let r = guard.shutdown_blocking();
        (r, guard)
    })
    .await
    .unwrap();
    assert!(shut.0.is_err(), "the shutdown cannot finish in 300 ms");
    let count = |outcome: &str| span_items(&metrics, outcome);
    // The runtime's tasks are dropped as its threads wind down.
    let deadline = Instant::now() + Duration::from_secs(15);
    while count("dropped") + count("failed") + count("exported") < 612 {
        assert!(
            Instant::now() < deadline,
            "only {} of 612 accounted for (dropped {}, failed {}, exported {})",
            count("dropped") + count("failed") + count("exported"),
            count("dropped"),
            count("failed"),
            count("exported")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        (count("exported"), count("failed"), count("dropped")),
        (0, 0, 612)
    );
}

/// Spans go to a collector that never answers in time, logs to a healthy one that takes
/// 300 ms per request. Shutdown asks every export at once: the logs drain within the
/// deadline while the spans time out. (Asked one after the other, the spans used the whole
/// deadline, the logs got a millisecond, and every log record was lost.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_collector_for_spans_does_not_starve_the_logs_at_shutdown() {
    let app = axum::Router::new()
        .route(
            "/v1/logs",
            axum::routing::post(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }),
        )
        .fallback(|| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            ""
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let parts = Telemetry::builder()
        // The log batch delay is long: only the shutdown can send the records.
        .env(Env::from_pairs([("OTEL_BLRP_SCHEDULE_DELAY", "60000")]))
        .service_name("slow-spans")
        .traces(OtlpConfig::new().endpoint(format!("http://{addr}/v1/traces")))
        .logs(OtlpConfig::new().endpoint(format!("http://{addr}/v1/logs")))
        .shutdown_timeout(Duration::from_secs(2))
        .log_writer(std::io::sink())
        .build()
        .unwrap();
    let metrics = parts.recorder.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(parts.layer));
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..50 {
            let _s = tracing::info_span!("work", i).entered();
            tracing::info!(i, "did some work");
        }
    });
    let mut guard = parts.guard;
    let started = Instant::now();
    let shut = tokio::task::spawn_blocking(move || guard.shutdown_blocking())
        .await
        .unwrap();
    assert!(shut.is_err(), "the spans cannot be delivered in time");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        (
            items(&metrics, "logs", "exported"),
            items(&metrics, "logs", "dropped")
        ),
        (50, 0)
    );
}
