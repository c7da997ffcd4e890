//! What a collector answers is read: a partial success (OTLP: the items it refused, not to be
//! retried) counts those items as failed, not exported; a 429 with `Retry-After` is retried
//! no sooner than asked. Its own test process: it installs export threads.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axi_obs_core::testing::proto::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use axi_obs_core::{Env, MetricsHandle, OtlpConfig, Protocol, Telemetry};
use prost::Message;
use tracing_subscriber::layer::SubscriberExt;

/// Serves `/v1/traces` with `answer(n)` for the n-th request (from 0); other paths get 200.
/// Returns the address and the arrival time of every trace request.
async fn collector(
    answer: impl Fn(usize) -> axum::response::Response + Clone + Send + Sync + 'static,
) -> (std::net::SocketAddr, Arc<Mutex<Vec<Instant>>>) {
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let seen = arrivals.clone();
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(move || {
                let seen = seen.clone();
                let answer = answer.clone();
                async move {
                    let n = {
                        let mut s = seen.lock().unwrap();
                        s.push(Instant::now());
                        s.len() - 1
                    };
                    answer(n)
                }
            }),
        )
        .fallback(|| async { "" });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, arrivals)
}

fn protobuf(body: Vec<u8>) -> axum::response::Response {
    use axum::response::IntoResponse;
    ([("content-type", "application/x-protobuf")], body).into_response()
}

/// Exports `spans` spans to `addr` over OTLP/HTTP, shuts down, and returns the trace
/// counters by outcome.
async fn export_spans(addr: std::net::SocketAddr, spans: usize) -> (u64, u64) {
    export_spans_with(addr, Protocol::HttpProtobuf, spans).await
}

/// As [`export_spans`], over `protocol`.
async fn export_spans_with(
    addr: std::net::SocketAddr,
    protocol: Protocol,
    spans: usize,
) -> (u64, u64) {
    let parts = Telemetry::builder()
        .env(Env::from_pairs([
            ("OTEL_TRACES_SAMPLER", "always_on"),
            ("OTEL_LOGS_EXPORTER", "none"),
            ("OTEL_METRICS_EXPORTER", "none"),
        ]))
        .otlp(
            OtlpConfig::new()
                .endpoint(format!("http://{addr}"))
                .protocol(protocol),
        )
        .shutdown_timeout(Duration::from_secs(8))
        .log_writer(std::io::sink())
        .build()
        .unwrap();
    let metrics: MetricsHandle = parts.recorder.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(parts.layer));
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..spans {
            let _s = tracing::info_span!("work", i).entered();
        }
    });
    drop(dispatch);
    parts.guard.shutdown().await.unwrap();
    let snap = metrics.snapshot();
    let count = |outcome: &str| {
        snap.family("axi_obs_export_items_total")
            .and_then(|f| f.series_with(&[("signal", "traces"), ("outcome", outcome)]))
            .and_then(|s| s.value.as_counter())
            .unwrap_or(0)
    };
    (count("exported"), count("failed"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_success_counts_the_refused_items_as_failed() {
    let (addr, arrivals) = collector(|_| {
        protobuf(
            ExportTraceServiceResponse {
                partial_success: Some(ExportTracePartialSuccess {
                    rejected_spans: 3,
                    error_message: "3 spans too old".into(),
                }),
            }
            .encode_to_vec(),
        )
    })
    .await;
    assert_eq!(export_spans(addr, 10).await, (7, 3));
    // Not retried.
    assert_eq!(arrivals.lock().unwrap().len(), 1);
}

/// How long after a refusal with `status` and `Retry-After: value()` the exporter retried
/// (the collector accepts the retry).
async fn retried_after(
    status: axum::http::StatusCode,
    value: impl Fn() -> String + Clone + Send + Sync + 'static,
) -> Duration {
    use axum::response::IntoResponse;
    let (addr, arrivals) = collector(move |n| {
        if n == 0 {
            (status, [("retry-after", value())]).into_response()
        } else {
            protobuf(Vec::new())
        }
    })
    .await;
    assert_eq!(export_spans(addr, 5).await, (5, 0));
    let arrivals = arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 2, "one refusal, one retry");
    arrivals[1] - arrivals[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_waited_for() {
    let gap = retried_after(axum::http::StatusCode::TOO_MANY_REQUESTS, || "2".into()).await;
    assert!(
        gap >= Duration::from_secs(2),
        "retried after {gap:?}, sooner than the 2 s asked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_as_an_http_date_is_waited_for() {
    // Three seconds ahead, to the second: at least two from now.
    let gap = retried_after(axum::http::StatusCode::SERVICE_UNAVAILABLE, || {
        httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(3))
    })
    .await;
    assert!(
        gap >= Duration::from_secs(2),
        "retried after {gap:?}, sooner than the date asked"
    );
}

/// A gRPC collector answering its first trace export with `RESOURCE_EXHAUSTED` and a
/// `google.rpc.RetryInfo` of 1.5 s: retried (the OTLP specification's condition for that
/// code), and no sooner than the delay asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_exhausted_with_a_retry_info_is_retried_after_its_delay() {
    use axi_obs_core::testing::proto::collector::trace::v1::ExportTraceServiceRequest;
    use axi_obs_core::testing::proto::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };

    struct Busy(Arc<Mutex<Vec<Instant>>>);
    #[tonic::async_trait]
    impl TraceService for Busy {
        async fn export(
            &self,
            _: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let n = {
                let mut seen = self.0.lock().unwrap();
                seen.push(Instant::now());
                seen.len() - 1
            };
            if n > 0 {
                return Ok(tonic::Response::new(ExportTraceServiceResponse::default()));
            }
            Err(tonic::Status::with_details(
                tonic::Code::ResourceExhausted,
                "over quota, back in 1.5 s",
                axi_obs_core::__private::with_retry_info(
                    tonic::Code::ResourceExhausted as i32,
                    Duration::from_millis(1500),
                )
                .into(),
            ))
        }
    }

    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(Busy(arrivals.clone())))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    tokio::spawn(server);
    assert_eq!(export_spans_with(addr, Protocol::Grpc, 5).await, (5, 0));
    let arrivals = arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 2, "one refusal, one retry");
    let gap = arrivals[1] - arrivals[0];
    assert!(
        gap >= Duration::from_millis(1500),
        "retried after {gap:?}, sooner than the 1.5 s asked"
    );
}

/// A collector (or whatever the endpoint really is) answering 200 with a body that never
/// ends: the exporter reads at most 1 MiB of it and lets go of the connection, instead of
/// reading (and holding) it until the export times out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_reply_is_read_no_further_than_a_mebibyte() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let written = Arc::new(AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counter = written.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let (mut rx, mut tx) = socket.into_split();
                // The request is read and ignored.
                tokio::spawn(async move {
                    let mut buf = vec![0; 16 * 1024];
                    while matches!(rx.read(&mut buf).await, Ok(n) if n > 0) {}
                });
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ntransfer-encoding: chunked\r\n\r\n";
                if tx.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
                while tx.write_all(chunk.as_bytes()).await.is_ok() {
                    counter.fetch_add(0x10000, Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(export_spans(addr, 5).await, (5, 0));
    let written = written.load(Ordering::Relaxed);
    // 1 MiB read, plus what the two sockets' buffers took before the client let go.
    assert!(
        written < 64 << 20,
        "{written} bytes of the reply were sent before the exporter let go"
    );
}
