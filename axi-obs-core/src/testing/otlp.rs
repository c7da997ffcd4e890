//! An in-process OTLP receiver (gRPC and HTTP/protobuf) for tests: point an exporter at it and
//! inspect what arrived, decoded with the official protobuf definitions.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use axi_obs_core::{Protocol, testing::OtlpReceiver};
//! let receiver = OtlpReceiver::start(Protocol::Grpc).await?;
//! // ... export to receiver.endpoint() ...
//! receiver.wait_until(std::time::Duration::from_secs(5), |r| !r.spans().is_empty()).await;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
    logs_service_server::{LogsService, LogsServiceServer},
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    metrics_service_server::{MetricsService, MetricsServiceServer},
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use crate::config::Protocol;

pub use opentelemetry_proto::tonic as proto;

/// Everything received, as raw requests.
#[derive(Debug, Default)]
struct Store {
    traces: Mutex<Vec<ExportTraceServiceRequest>>,
    logs: Mutex<Vec<ExportLogsServiceRequest>>,
    metrics: Mutex<Vec<ExportMetricsServiceRequest>>,
    headers: Mutex<Vec<http::HeaderMap>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A span with the resource attributes it was sent with.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    /// Resource attributes as strings.
    pub resource: Vec<(String, String)>,
    /// The span as sent.
    pub span: Span,
}

/// A log record with the resource attributes it was sent with.
#[derive(Clone, Debug)]
pub struct ReceivedLog {
    /// Resource attributes as strings.
    pub resource: Vec<(String, String)>,
    /// The record as sent.
    pub record: LogRecord,
}

/// A metric with the resource attributes it was sent with.
#[derive(Clone, Debug)]
pub struct ReceivedMetric {
    /// Resource attributes as strings.
    pub resource: Vec<(String, String)>,
    /// The metric as sent.
    pub metric: Metric,
}

/// A running OTLP receiver on `127.0.0.1`; stops when dropped.
#[derive(Debug)]
pub struct OtlpReceiver {
    addr: SocketAddr,
    store: Arc<Store>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl OtlpReceiver {
    /// Starts a receiver speaking `protocol` on an ephemeral loopback port. Must be called
    /// inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// If the port cannot be bound.
    pub async fn start(protocol: Protocol) -> std::io::Result<Self> {
        Self::start_limited(protocol, None).await
    }

    /// As [`start`](Self::start), refusing requests over `max_message_bytes` as a receiver
    /// with that limit does: over gRPC, tonic's own `max_decoding_message_size` (an
    /// `OUT_OF_RANGE` status); over HTTP, 413.
    ///
    /// # Errors
    ///
    /// If the port cannot be bound.
    pub async fn start_limited(
        protocol: Protocol,
        max_message_bytes: Option<usize>,
    ) -> std::io::Result<Self> {
        // tonic's and axum's defaults: 4 MiB, 2 MiB.
        let grpc_limit = max_message_bytes.unwrap_or(4 << 20);
        let http_limit = max_message_bytes.unwrap_or(2 << 20);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let store = Arc::new(Store::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        match protocol {
            Protocol::Grpc => {
                let svc = Grpc(store.clone());
                let server = tonic::transport::Server::builder()
                    .add_service(
                        TraceServiceServer::new(svc.clone())
                            .accept_compressed(GZIP)
                            .max_decoding_message_size(grpc_limit),
                    )
                    .add_service(
                        LogsServiceServer::new(svc.clone())
                            .accept_compressed(GZIP)
                            .max_decoding_message_size(grpc_limit),
                    )
                    .add_service(
                        MetricsServiceServer::new(svc)
                            .accept_compressed(GZIP)
                            .max_decoding_message_size(grpc_limit),
                    )
                    .serve_with_incoming_shutdown(
                        tonic::transport::server::TcpIncoming::from(listener),
                        async {
                            let _ = stopped.await;
                        },
                    );
                tokio::spawn(server);
            }
            Protocol::HttpProtobuf => {
                let app = axum::Router::new()
                    .route("/v1/traces", axum::routing::post(http_traces))
                    .route("/v1/logs", axum::routing::post(http_logs))
                    .route("/v1/metrics", axum::routing::post(http_metrics))
                    .layer(axum::extract::DefaultBodyLimit::max(http_limit))
                    .with_state(store.clone());
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await;
                });
            }
        }
        Ok(Self {
            addr,
            store,
            stop: Some(stop),
        })
    }

    /// The base URL (`http://127.0.0.1:PORT`), for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        lock(&self.store.traces)
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|rs| {
                let resource = resource(rs.resource.as_ref().map(|r| &r.attributes[..]));
                rs.scope_spans.iter().flat_map(move |ss| {
                    let resource = resource.clone();
                    ss.spans.iter().map(move |s| ReceivedSpan {
                        resource: resource.clone(),
                        span: s.clone(),
                    })
                })
            })
            .collect()
    }

    /// Every log record received so far.
    pub fn logs(&self) -> Vec<ReceivedLog> {
        lock(&self.store.logs)
            .iter()
            .flat_map(|r| &r.resource_logs)
            .flat_map(|rl| {
                let resource = resource(rl.resource.as_ref().map(|r| &r.attributes[..]));
                rl.scope_logs.iter().flat_map(move |sl| {
                    let resource = resource.clone();
                    sl.log_records.iter().map(move |l| ReceivedLog {
                        resource: resource.clone(),
                        record: l.clone(),
                    })
                })
            })
            .collect()
    }

    /// Every metric received so far (one entry per metric per export).
    pub fn metrics(&self) -> Vec<ReceivedMetric> {
        lock(&self.store.metrics)
            .iter()
            .flat_map(|r| &r.resource_metrics)
            .flat_map(|rm| {
                let resource = resource(rm.resource.as_ref().map(|r| &r.attributes[..]));
                rm.scope_metrics.iter().flat_map(move |sm| {
                    let resource = resource.clone();
                    sm.metrics.iter().map(move |m| ReceivedMetric {
                        resource: resource.clone(),
                        metric: m.clone(),
                    })
                })
            })
            .collect()
    }

    /// Request headers (gRPC metadata) of every export received.
    pub fn headers(&self) -> Vec<http::HeaderMap> {
        lock(&self.store.headers).clone()
    }

    /// Polls `done` until it returns true or `timeout` passes; returns its last answer.
    pub async fn wait_until(&self, timeout: Duration, done: impl Fn(&Self) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if done(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// String form of an attribute value.
pub fn value_string(v: Option<&proto::common::v1::AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// The value of attribute `key` in `attrs`, as a string.
pub fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| value_string(kv.value.as_ref()))
}

fn resource(attrs: Option<&[KeyValue]>) -> Vec<(String, String)> {
    attrs
        .unwrap_or_default()
        .iter()
        .map(|kv| (kv.key.clone(), value_string(kv.value.as_ref())))
        .collect()
}

/// Lower-case hex of an id (trace or span id bytes).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compressed requests are accepted, as collectors accept them.
const GZIP: tonic::codec::CompressionEncoding = tonic::codec::CompressionEncoding::Gzip;

/// The request body, gunzipped when its `Content-Encoding` says gzip (an undecodable body
/// stays as it is, and fails to decode as protobuf: a 400).
fn body_of(headers: &http::HeaderMap, body: axum::body::Bytes) -> axum::body::Bytes {
    let gzipped = headers
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    if !gzipped {
        return body;
    }
    let mut out = Vec::new();
    match std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut out) {
        Ok(_) => out.into(),
        Err(_) => body,
    }
}

#[derive(Clone, Debug)]
struct Grpc(Arc<Store>);

impl Grpc {
    fn note<T>(&self, req: &tonic::Request<T>) {
        lock(&self.0.headers).push(req.metadata().clone().into_headers());
    }
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.note(&req);
        lock(&self.0.traces).push(req.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        req: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.note(&req);
        lock(&self.0.logs).push(req.into_inner());
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.note(&req);
        lock(&self.0.metrics).push(req.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

type HttpReply = (
    http::StatusCode,
    [(http::HeaderName, &'static str); 1],
    Vec<u8>,
);

fn reply<R: Message>(r: Result<R, prost::DecodeError>, ok: impl Message) -> (HttpReply, Option<R>) {
    let ct = [(http::header::CONTENT_TYPE, "application/x-protobuf")];
    match r {
        Ok(m) => ((http::StatusCode::OK, ct, ok.encode_to_vec()), Some(m)),
        Err(_) => ((http::StatusCode::BAD_REQUEST, ct, Vec::new()), None),
    }
}

async fn http_traces(
    axum::extract::State(store): axum::extract::State<Arc<Store>>,
    headers: http::HeaderMap,
    body: axum::body::Bytes,
) -> HttpReply {
    let (out, msg) = reply(
        ExportTraceServiceRequest::decode(body_of(&headers, body)),
        ExportTraceServiceResponse::default(),
    );
    if let Some(m) = msg {
        lock(&store.headers).push(headers);
        lock(&store.traces).push(m);
    }
    out
}

async fn http_logs(
    axum::extract::State(store): axum::extract::State<Arc<Store>>,
    headers: http::HeaderMap,
    body: axum::body::Bytes,
) -> HttpReply {
    let (out, msg) = reply(
        ExportLogsServiceRequest::decode(body_of(&headers, body)),
        ExportLogsServiceResponse::default(),
    );
    if let Some(m) = msg {
        lock(&store.headers).push(headers);
        lock(&store.logs).push(m);
    }
    out
}

async fn http_metrics(
    axum::extract::State(store): axum::extract::State<Arc<Store>>,
    headers: http::HeaderMap,
    body: axum::body::Bytes,
) -> HttpReply {
    let (out, msg) = reply(
        ExportMetricsServiceRequest::decode(body_of(&headers, body)),
        ExportMetricsServiceResponse::default(),
    );
    if let Some(m) = msg {
        lock(&store.headers).push(headers);
        lock(&store.metrics).push(m);
    }
    out
}
