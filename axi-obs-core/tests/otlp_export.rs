//! OTLP export end to end: a receiver decoding with opentelemetry-proto (gRPC and HTTP) gets
//! spans, log records and metrics with the configured resource; log records carry their span's
//! trace id; what was emitted right before shutdown arrives.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::Duration;

use axi_obs_core::testing::{OtlpReceiver, attr, hex};
use axi_obs_core::{Env, OtlpConfig, Protocol, Telemetry};
use tracing_subscriber::layer::SubscriberExt;

async fn roundtrip(protocol: Protocol) {
    let receiver = OtlpReceiver::start(protocol).await.unwrap();
    let parts = Telemetry::builder()
        .env(Env::from_pairs([(
            "OTEL_RESOURCE_ATTRIBUTES",
            "team=payments,deployment.environment.name=test",
        )]))
        .service_name("otlp-roundtrip")
        .service_version("1.2.3")
        .otlp(
            OtlpConfig::new()
                .endpoint(receiver.endpoint())
                .protocol(protocol)
                .header("x-api-key", "secret-key")
                .header("x-tenant-bin", "tenant-7"),
        )
        .log_writer(std::io::sink())
        .build()
        .unwrap();
    let recorder = parts.recorder.clone();
    let subscriber = tracing_subscriber::registry().with(parts.layer);
    let guard = parts.guard;

    tracing::subscriber::with_default(subscriber, || {
        metrics::with_local_recorder(&recorder, || {
            metrics::describe_counter!("orders_total", "Orders placed");
            metrics::counter!("orders_total", "channel" => "web").increment(3);
            metrics::histogram!("work.duration", "kind" => "batch").record(0.2);
        });
        let outer = tracing::info_span!("checkout", order_id = 42);
        let _o = outer.enter();
        let inner = tracing::info_span!("charge_card");
        let _i = inner.enter();
        tracing::info!(amount_cents = 1999, "card charged");
    });
    // Emitted right before shutdown: the span batch delay (5 s) has not passed, so only the
    // shutdown flush can deliver these.
    guard.shutdown().await.unwrap();

    let spans = receiver.spans();
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let checkout = spans.iter().find(|s| s.span.name == "checkout").unwrap();
    let charge = spans.iter().find(|s| s.span.name == "charge_card").unwrap();
    assert_eq!(checkout.span.trace_id, charge.span.trace_id);
    assert_eq!(charge.span.parent_span_id, checkout.span.span_id);
    let res = |k: &str| {
        checkout
            .resource
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(res("service.name").as_deref(), Some("otlp-roundtrip"));
    assert_eq!(res("service.version").as_deref(), Some("1.2.3"));
    assert_eq!(res("team").as_deref(), Some("payments"));
    assert_eq!(res("deployment.environment.name").as_deref(), Some("test"));
    assert_eq!(
        attr(&checkout.span.attributes, "order_id").as_deref(),
        Some("42")
    );

    let logs = receiver.logs();
    let line = logs
        .iter()
        .find(|l| axi_obs_core::testing::value_string(l.record.body.as_ref()) == "card charged")
        .unwrap_or_else(|| panic!("log record missing: {logs:#?}"));
    assert_eq!(hex(&line.record.trace_id), hex(&charge.span.trace_id));
    assert_eq!(hex(&line.record.span_id), hex(&charge.span.span_id));
    assert_eq!(line.record.severity_text, "INFO");
    assert_eq!(
        attr(&line.record.attributes, "amount_cents").as_deref(),
        Some("1999")
    );
    assert!(
        line.resource
            .contains(&("service.name".into(), "otlp-roundtrip".into()))
    );

    let metrics = receiver.metrics();
    let orders = metrics
        .iter()
        .find(|m| m.metric.name == "orders_total")
        .unwrap_or_else(|| panic!("orders_total missing: {metrics:#?}"));
    assert_eq!(orders.metric.description, "Orders placed");
    assert!(
        orders
            .resource
            .contains(&("team".into(), "payments".into()))
    );
    let work = metrics
        .iter()
        .find(|m| m.metric.name == "work.duration")
        .unwrap();
    match &work.metric.data {
        Some(axi_obs_core::testing::proto::metrics::v1::metric::Data::Histogram(h)) => {
            assert_eq!(h.data_points[0].count, 1);
            assert_eq!(h.data_points[0].explicit_bounds.len(), 14);
        }
        other => panic!("not a histogram: {other:?}"),
    }

    // Headers reach the receiver on every export.
    let headers = receiver.headers();
    assert!(!headers.is_empty());
    assert!(
        headers
            .iter()
            .all(|h| h.get("x-api-key").map(|v| v == "secret-key") == Some(true))
    );
    // A `-bin` header is gRPC binary metadata (base64 on the wire, as grpc-go sends it);
    // over HTTP it is an ordinary header.
    let tenant = match protocol {
        Protocol::Grpc => "dGVuYW50LTc",
        _ => "tenant-7",
    };
    assert!(
        headers
            .iter()
            .all(|h| h.get("x-tenant-bin").map(|v| v == tenant) == Some(true)),
        "{headers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_export_delivers_spans_logs_and_metrics() {
    roundtrip(Protocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_export_delivers_spans_logs_and_metrics() {
    roundtrip(Protocol::HttpProtobuf).await;
}

/// Dropping the guard inline on a current-thread runtime (where exporters that borrow the
/// application's runtime deadlock) completes and delivers, the collector being elsewhere.
#[test]
fn guard_drop_on_a_current_thread_runtime_delivers() {
    let collector = tokio::runtime::Runtime::new().unwrap();
    let receiver = collector
        .block_on(OtlpReceiver::start(Protocol::Grpc))
        .unwrap();
    let app = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    app.block_on(async {
        let parts = Telemetry::builder()
            .env(Env::empty())
            .traces(
                OtlpConfig::new()
                    .endpoint(receiver.endpoint())
                    .protocol(Protocol::Grpc),
            )
            .log_writer(std::io::sink())
            .build()
            .unwrap();
        let subscriber = tracing_subscriber::registry().with(parts.layer);
        tracing::subscriber::with_default(subscriber, || {
            let _s = tracing::info_span!("on_current_thread").entered();
        });
        drop(parts.guard);
    });
    assert_eq!(receiver.spans().len(), 1);
}

/// Env-only configuration (`OTEL_*` from an isolated environment) reaches the receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_from_env_only() {
    let receiver = OtlpReceiver::start(Protocol::HttpProtobuf).await.unwrap();
    let parts = Telemetry::builder()
        .env(Env::from_pairs([
            ("OTEL_SERVICE_NAME", "from-env"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint().as_str()),
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20abc"),
            ("OTEL_LOGS_EXPORTER", "none"),
            ("OTEL_METRICS_EXPORTER", "none"),
            ("OTEL_TRACES_SAMPLER", "always_on"),
        ]))
        .log_writer(std::io::sink())
        .build()
        .unwrap();
    assert!(parts.logger_provider.is_none());
    let subscriber = tracing_subscriber::registry().with(parts.layer);
    tracing::subscriber::with_default(subscriber, || {
        let _s = tracing::info_span!("env_configured").entered();
        tracing::info!("not exported: logs exporter is none");
    });
    parts.guard.shutdown().await.unwrap();
    let spans = receiver.spans();
    assert_eq!(spans.len(), 1);
    assert!(
        spans[0]
            .resource
            .contains(&("service.name".into(), "from-env".into()))
    );
    assert!(receiver.logs().is_empty());
    assert!(receiver.metrics().is_empty());
    assert!(
        receiver
            .headers()
            .iter()
            .all(|h| h.get("authorization").map(|v| v == "Bearer abc") == Some(true))
    );
}

/// Periodic metric push without shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_pushed_every_interval() {
    let receiver = OtlpReceiver::start(Protocol::HttpProtobuf).await.unwrap();
    let parts = Telemetry::builder()
        .env(Env::empty())
        .metrics_export(OtlpConfig::new().endpoint(format!("{}/v1/metrics", receiver.endpoint())))
        .metric_export_interval(Duration::from_millis(200))
        .log_writer(std::io::sink())
        .build()
        .unwrap();
    metrics::with_local_recorder(&parts.recorder, || {
        metrics::gauge!("queue_depth").set(7.0);
    });
    let pushed = receiver
        .wait_until(Duration::from_secs(10), |r| {
            r.metrics()
                .iter()
                .filter(|m| m.metric.name == "queue_depth")
                .count()
                >= 2
        })
        .await;
    assert!(
        pushed,
        "two pushes expected, got {:?}",
        receiver.metrics().len()
    );
    // Process metrics travel too; target_info does not (over OTLP the resource is the
    // resource, and receivers derive their own target_info from it).
    let names: Vec<String> = receiver
        .metrics()
        .into_iter()
        .map(|m| m.metric.name)
        .collect();
    assert!(names.iter().any(|n| n == "process_resident_memory_bytes"));
    assert!(
        !names
            .iter()
            .any(|n| n == "target_info" || n == "service_build_info")
    );
    drop(parts.guard);
}

/// `OTEL_EXPORTER_OTLP_COMPRESSION=gzip` over both protocols: the receiver (which, as a
/// collector, accepts gzip) gets the span and log record, and the requests say gzip.
/// `OTEL_BSP_SCHEDULE_DELAY=100` sends the span without a flush, long before the default 5 s.
async fn gzip_and_a_short_span_delay(protocol: Protocol, encoding_header: &str) {
    let receiver = OtlpReceiver::start(protocol).await.unwrap();
    let parts = Telemetry::builder()
        .env(Env::from_pairs([
            ("OTEL_SERVICE_NAME", "gzipped"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint().as_str()),
            (
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                match protocol {
                    Protocol::Grpc => "grpc",
                    Protocol::HttpProtobuf => "http/protobuf",
                },
            ),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_METRICS_EXPORTER", "none"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_TRACES_SAMPLER", "always_on"),
        ]))
        .log_writer(std::io::sink())
        .build()
        .unwrap();
    let subscriber = tracing_subscriber::registry().with(parts.layer);
    tracing::subscriber::with_default(subscriber, || {
        let _s = tracing::info_span!("compressed", payload = "x".repeat(4096)).entered();
        tracing::info!("a compressed log record");
    });
    assert!(
        receiver
            .wait_until(Duration::from_secs(3), |r| r.spans().len() == 1)
            .await,
        "the span did not arrive within 3 s of its 100 ms batch delay"
    );
    parts.guard.shutdown().await.unwrap();
    assert_eq!(receiver.logs().len(), 1);
    let headers = receiver.headers();
    assert!(
        !headers.is_empty()
            && headers
                .iter()
                .all(|h| h.get(encoding_header).map(|v| v == "gzip") == Some(true)),
        "{headers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_over_http() {
    gzip_and_a_short_span_delay(Protocol::HttpProtobuf, "content-encoding").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_over_grpc() {
    gzip_and_a_short_span_delay(Protocol::Grpc, "grpc-encoding").await;
}
