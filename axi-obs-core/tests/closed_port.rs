//! Exporting to a closed port while emitting spans and logs at full speed for 10 s: the service
//! keeps serving, memory stays bounded, losses are counted, and shutdown returns.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axi_obs_core::{Env, OtlpConfig, Telemetry};
use tracing_subscriber::layer::SubscriberExt;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_endpoint_under_full_load_keeps_serving_with_bounded_memory() {
    let shutdown_timeout = Duration::from_secs(2);
    let parts = Telemetry::builder()
        .env(Env::empty())
        .service_name("closed-port")
        .otlp(
            OtlpConfig::new()
                .endpoint(format!("http://127.0.0.1:{}", closed_port()))
                .timeout(Duration::from_millis(500)),
        )
        .metric_export_interval(Duration::from_secs(1))
        .shutdown_timeout(shutdown_timeout)
        .log_writer(std::io::sink())
        .build()
        .unwrap();
    let metrics = parts.recorder.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(parts.layer));
    let guard = parts.guard;

    // The service: a route answering while telemetry is stuck.
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let stop = Arc::new(AtomicBool::new(false));
    let emitted = Arc::new(AtomicU64::new(0));
    let emitters: Vec<_> = (0..2)
        .map(|t| {
            let dispatch = dispatch.clone();
            let stop = stop.clone();
            let emitted = emitted.clone();
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let span = tracing::info_span!("work", thread = t, i);
                        let _g = span.enter();
                        tracing::info!(payload = "x", i, "unit of work done");
                        i += 1;
                    }
                    emitted.fetch_add(i, Ordering::Relaxed);
                })
            })
        })
        .collect();

    let client = reqwest::Client::new();
    let url = format!("http://{addr}/");
    let start = Instant::now();
    let mut served = 0u32;
    let mut rss_after_warmup = 0;
    while start.elapsed() < Duration::from_secs(10) {
        let res = client
            .get(&url)
            .send()
            .await
            .expect("the service must keep answering");
        assert_eq!(res.text().await.unwrap(), "ok");
        served += 1;
        if rss_after_warmup == 0 && start.elapsed() > Duration::from_secs(2) {
            rss_after_warmup = rss_bytes();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rss_end = rss_bytes();
    stop.store(true, Ordering::Relaxed);
    for e in emitters {
        e.join().unwrap();
    }
    let emitted = emitted.load(Ordering::Relaxed);

    let snap = metrics.snapshot();
    let items = snap.family("axi_obs_export_items_total").unwrap();
    let count = |signal: &str, outcome: &str| {
        items
            .series_with(&[("signal", signal), ("outcome", outcome)])
            .and_then(|s| s.value.as_counter())
            .unwrap_or(0)
    };
    println!(
        "emitted {emitted} spans+logs in 10 s; served {served} requests; RSS {:.1} MiB after warm-up, {:.1} MiB at the end; \
         traces dropped {} failed {}; logs dropped {} failed {}; metric points failed {}",
        rss_after_warmup as f64 / 1048576.0,
        rss_end as f64 / 1048576.0,
        count("traces", "dropped"),
        count("traces", "failed"),
        count("logs", "dropped"),
        count("logs", "failed"),
        count("metrics", "failed"),
    );
    assert!(served > 0);
    assert!(count("traces", "dropped") > 0 && count("logs", "dropped") > 0);
    assert!(count("traces", "failed") > 0 && count("logs", "failed") > 0);
    assert!(count("metrics", "failed") > 0);
    assert_eq!(count("traces", "exported"), 0);
    // Bounded queues: after the queues filled (first seconds), memory must not keep growing
    // with the millions of items emitted.
    let growth = rss_end.saturating_sub(rss_after_warmup);
    assert!(
        growth < 64 * 1024 * 1024,
        "RSS grew by {:.1} MiB after warm-up",
        growth as f64 / 1048576.0
    );

    // Shutdown gives up at its deadline instead of hanging on the dead endpoint. The outer
    // timeout only turns a hang into a failure.
    let started = Instant::now();
    let result = tokio::time::timeout(shutdown_timeout + Duration::from_secs(30), guard.shutdown())
        .await
        .expect("shutdown hung");
    println!("shutdown returned {result:?} after {:?}", started.elapsed());
}
