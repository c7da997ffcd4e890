//! A client on the official OpenTelemetry Python SDK calls the demo with its own trace
//! context: the demo's server span (exported over OTLP) continues that trace with the
//! client's span as parent, the access-log line has the same trace id, and the outbound call
//! carries the trace into a second service.

#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;
use std::time::Duration;

use axi_obs_core::Protocol;
use axi_obs_core::testing::{OtlpReceiver, ReceivedSpan, hex};
use support::Demo;

fn service(s: &ReceivedSpan) -> &str {
    s.resource
        .iter()
        .find(|(k, _)| k == "service.name")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_trace_continues_through_two_services() {
    let Some(python) = axi_obs_core::testing::peer("otel-python") else {
        return;
    };
    let receiver = OtlpReceiver::start(Protocol::HttpProtobuf).await.unwrap();
    let endpoint = receiver.endpoint();
    let mut b = Demo::start_with(
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SERVICE_NAME", "demo-b"),
        ],
    );
    let downstream = format!("http://{}", b.addr);
    let mut a = Demo::start_with(
        &["--downstream", &downstream],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SERVICE_NAME", "demo-a"),
        ],
    );

    let url = a.url("/api/recommendations");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/py/traced_client.py"
            ))
            .arg(url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let py: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(py["status"], 200, "{py}");
    let trace_id = py["trace_id"].as_str().unwrap().to_owned();
    let client_span_id = py["span_id"].as_str().unwrap().to_owned();

    // SIGTERM: both services shut down cleanly, flushing their spans.
    assert!(a.terminate().success());
    assert!(b.terminate().success());
    let done = receiver
        .wait_until(Duration::from_secs(30), |r| {
            let spans = r.spans();
            spans
                .iter()
                .any(|s| service(s) == "demo-a" && s.span.name == "GET /api/recommendations")
                && spans
                    .iter()
                    .any(|s| service(s) == "demo-b" && s.span.name == "GET /api/products")
        })
        .await;
    let spans = receiver.spans();
    assert!(
        done,
        "spans missing: {:#?}",
        spans
            .iter()
            .map(|s| (service(s), &s.span.name))
            .collect::<Vec<_>>()
    );

    let a_server = spans
        .iter()
        .find(|s| service(s) == "demo-a" && s.span.name == "GET /api/recommendations")
        .unwrap();
    assert_eq!(
        hex(&a_server.span.trace_id),
        trace_id,
        "the server span continues the client's trace"
    );
    assert_eq!(
        hex(&a_server.span.parent_span_id),
        client_span_id,
        "its parent is the Python span"
    );
    assert_eq!(a_server.span.kind, 2, "SPAN_KIND_SERVER");

    let a_client = spans
        .iter()
        .find(|s| service(s) == "demo-a" && s.span.kind == 3)
        .expect("demo-a's client span");
    assert_eq!(hex(&a_client.span.trace_id), trace_id);
    let b_server = spans
        .iter()
        .find(|s| service(s) == "demo-b" && s.span.name == "GET /api/products")
        .unwrap();
    assert_eq!(
        hex(&b_server.span.trace_id),
        trace_id,
        "the trace crosses into the second service"
    );
    assert_eq!(
        hex(&b_server.span.parent_span_id),
        hex(&a_client.span.span_id)
    );

    // The access-log line of that request carries the same trace id and the echoed request id.
    let logs = a.logs();
    let access = logs
        .iter()
        .find(|l| {
            l["log.logger"] == "axi_obs_axum::access" && l["url.path"] == "/api/recommendations"
        })
        .unwrap_or_else(|| panic!("no access log line: {logs:#?}"));
    assert_eq!(access["trace.id"], trace_id.as_str());
    assert_eq!(access["http.request.id"], py["request_id"]);
    assert_eq!(access["http.response.status_code"], 200);
}
