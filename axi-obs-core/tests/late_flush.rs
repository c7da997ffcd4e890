//! A flush that gives up while an export is under way leaves its request queued behind that
//! export. Read late, past its deadline, it must not export what is queued with no time left
//! (every batch would fail and be lost although the collector is healthy): the items stay
//! for the normal pipeline and arrive. Its own test process: it installs an export thread.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axi_obs_core::{Env, OtlpConfig, Protocol, Telemetry};
use tracing_subscriber::layer::SubscriberExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_read_after_its_deadline_loses_nothing() {
    // A collector that takes 1.5 s per trace export, then accepts it.
    let requests = Arc::new(AtomicU64::new(0));
    let seen = requests.clone();
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(move || {
                let seen = seen.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
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

    let parts = Telemetry::builder()
        .env(Env::empty())
        .service_name("late-flush")
        .otlp(
            OtlpConfig::new()
                .endpoint(format!("http://{addr}"))
                .protocol(Protocol::HttpProtobuf),
        )
        .shutdown_timeout(Duration::from_millis(300))
        .log_writer(std::io::sink())
        .build()
        .unwrap();
    let metrics = parts.recorder.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(parts.layer));
    let guard = parts.guard;
    let emit = |n: usize| {
        tracing::dispatcher::with_default(&dispatch, || {
            for i in 0..n {
                let _s = tracing::info_span!("work", i).entered();
            }
        });
    };
    // A full batch (512 spans) goes out at once and keeps the exporter busy 1.5 s; 100 more
    // wait in the queue.
    emit(512);
    tokio::time::sleep(Duration::from_millis(200)).await;
    emit(100);
    let flushed = tokio::task::spawn_blocking(move || {
        let r = guard.force_flush();
        (r, guard)
    })
    .await
    .unwrap();
    assert!(flushed.0.is_err(), "the flush cannot finish in 300 ms");
    let guard = flushed.1;

    let count = |outcome: &str| {
        metrics
            .snapshot()
            .family("axi_obs_export_items_total")
            .and_then(|f| {
                f.series_with(&[("signal", "traces"), ("outcome", outcome)])
                    .and_then(|s| s.value.as_counter())
            })
            .unwrap_or(0)
    };
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
