//! OTLP over HTTP/protobuf and gRPC: one request per batch, bounded retries within the
//! export timeout.
//!
//! Retries follow the OTLP specification: HTTP 429, 502, 503, 504 and connection failures;
//! gRPC `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `ABORTED`, `CANCELLED`, `OUT_OF_RANGE`,
//! `DATA_LOSS`, and `RESOURCE_EXHAUSTED` when its status carries a `google.rpc.RetryInfo`.
//! Backoff doubles from 100 ms, never shorter than an HTTP `Retry-After` (seconds or an HTTP
//! date) or a gRPC `RetryInfo` delay; no attempt starts after the timeout, so one batch never
//! holds the pipeline longer than the configured export timeout. A partial success in the answer (items
//! the collector refused) is read and reported, not retried, as the specification says.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
#[cfg(feature = "otlp-grpc")]
use opentelemetry_proto::tonic::collector::{
    logs::v1::logs_service_client::LogsServiceClient,
    metrics::v1::metrics_service_client::MetricsServiceClient,
    trace::v1::trace_service_client::TraceServiceClient,
};
use prost::Message;

use crate::config::{Compression, OtlpTarget, Protocol};

/// Why one export failed (after retries).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExportError {
    #[error("HTTP {status} from {url}")]
    HttpStatus {
        status: u16,
        url: String,
        /// The server's `Retry-After` (seconds or HTTP date), on 429 and 503.
        retry_after: Option<Duration>,
    },
    #[error("request to {url} failed: {message}")]
    Http { url: String, message: String },
    #[cfg(feature = "otlp-grpc")]
    #[error("gRPC {code:?} from {url}: {message}")]
    Grpc {
        code: tonic::Code,
        url: String,
        message: String,
        /// The server's `google.rpc.RetryInfo` delay, when its status carries one.
        retry_delay: Option<Duration>,
    },
    #[cfg(feature = "otlp-grpc")]
    #[error("invalid gRPC endpoint {url}: {message}")]
    Endpoint { url: String, message: String },
    #[cfg(not(feature = "otlp-grpc"))]
    #[error("OTLP over gRPC to {url} is not in this build (axi-obs-core's `otlp-grpc` feature)")]
    NoGrpc { url: String },
    /// No answer in time: `after` is how long the export had been trying; `cut_short`
    /// when a flush or shutdown deadline came before the export timeout.
    #[error("export timed out after {after:?}{}", cut_note(*.cut_short))]
    Timeout { after: Duration, cut_short: bool },
}

fn cut_note(cut_short: bool) -> &'static str {
    if cut_short {
        ", cut short by the flush or shutdown deadline"
    } else {
        ""
    }
}

impl ExportError {
    /// How long the server asked to be left alone before a retry, if it said.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            ExportError::HttpStatus { retry_after, .. } => *retry_after,
            #[cfg(feature = "otlp-grpc")]
            ExportError::Grpc { retry_delay, .. } => *retry_delay,
            _ => None,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            ExportError::HttpStatus { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            ExportError::Http { .. } => true,
            #[cfg(feature = "otlp-grpc")]
            // The OTLP specification's retryable codes. `RESOURCE_EXHAUSTED` is retryable only
            // when the server says recovery is possible, with a `RetryInfo`.
            ExportError::Grpc {
                code, retry_delay, ..
            } => match code {
                tonic::Code::ResourceExhausted => retry_delay.is_some(),
                tonic::Code::Unavailable
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Aborted
                | tonic::Code::Cancelled
                | tonic::Code::OutOfRange
                | tonic::Code::DataLoss => true,
                _ => false,
            },
            #[cfg(feature = "otlp-grpc")]
            ExportError::Endpoint { .. } => false,
            #[cfg(not(feature = "otlp-grpc"))]
            ExportError::NoGrpc { .. } => false,
            ExportError::Timeout { .. } => false,
        }
    }
}

/// A connection to one OTLP endpoint for one signal.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    kind: Kind,
    url: String,
    /// `url` as errors and logs show it: without the credentials it may carry.
    shown: String,
    timeout: Duration,
    compression: Compression,
}

#[derive(Debug, Clone)]
enum Kind {
    Http {
        client: reqwest::Client,
        headers: http::HeaderMap,
    },
    #[cfg(feature = "otlp-grpc")]
    Grpc {
        channel: tonic::transport::Channel,
        metadata: tonic::metadata::MetadataMap,
    },
}

/// What a collector that took an export said it refused (OTLP partial success): the items
/// it dropped, and why. Not retried, as the specification says; counted as failed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Rejected {
    pub(crate) items: u64,
    pub(crate) message: String,
}

/// An export's answer, of one of the three signals: what it says was refused.
trait Answer: Message + Default {
    fn rejected(self) -> Rejected;
}

impl Rejected {
    fn new(items: i64, message: String) -> Self {
        Self {
            items: u64::try_from(items).unwrap_or(0),
            message,
        }
    }
}

impl Answer for ExportTraceServiceResponse {
    fn rejected(self) -> Rejected {
        self.partial_success
            .map(|p| Rejected::new(p.rejected_spans, p.error_message))
            .unwrap_or_default()
    }
}

impl Answer for ExportLogsServiceResponse {
    fn rejected(self) -> Rejected {
        self.partial_success
            .map(|p| Rejected::new(p.rejected_log_records, p.error_message))
            .unwrap_or_default()
    }
}

impl Answer for ExportMetricsServiceResponse {
    fn rejected(self) -> Rejected {
        self.partial_success
            .map(|p| Rejected::new(p.rejected_data_points, p.error_message))
            .unwrap_or_default()
    }
}

/// A request of one of the three signals.
pub(crate) enum Request {
    Traces(ExportTraceServiceRequest),
    Logs(ExportLogsServiceRequest),
    Metrics(ExportMetricsServiceRequest),
}

impl Request {
    /// The `partial_success` of this request's response message, decoded from `body` (an empty
    /// or undecodable body rejects nothing: collectors may answer 200 with no body).
    fn rejected_in(&self, body: &[u8]) -> Rejected {
        fn decode<A: Answer>(body: &[u8]) -> Rejected {
            A::decode(body).map(A::rejected).unwrap_or_default()
        }
        match self {
            Request::Traces(_) => decode::<ExportTraceServiceResponse>(body),
            Request::Logs(_) => decode::<ExportLogsServiceResponse>(body),
            Request::Metrics(_) => decode::<ExportMetricsServiceResponse>(body),
        }
    }

    fn encode(&self) -> Vec<u8> {
        match self {
            Request::Traces(r) => r.encode_to_vec(),
            Request::Logs(r) => r.encode_to_vec(),
            Request::Metrics(r) => r.encode_to_vec(),
        }
    }
}

impl Transport {
    /// Builds the transport. For gRPC this must run inside the export runtime (the channel's
    /// connection task is spawned there); it connects lazily, so nothing dials out yet.
    pub(crate) fn new(target: &OtlpTarget) -> Result<Self, ExportError> {
        let url = target.endpoint.clone();
        let shown = crate::config::redact_userinfo(&url);
        let kind = match target.protocol {
            Protocol::HttpProtobuf => {
                let mut headers = http::HeaderMap::new();
                for (k, v) in &target.headers {
                    // Validated during configuration.
                    if let (Ok(k), Ok(v)) = (
                        http::HeaderName::from_bytes(k.as_bytes()),
                        http::HeaderValue::from_str(v),
                    ) {
                        headers.insert(k, v);
                    }
                }
                headers.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/x-protobuf"),
                );
                if target.compression == Compression::Gzip {
                    headers.insert(
                        http::header::CONTENT_ENCODING,
                        http::HeaderValue::from_static("gzip"),
                    );
                }
                headers.insert(
                    http::header::USER_AGENT,
                    http::HeaderValue::from_static(concat!("axi-obs/", env!("CARGO_PKG_VERSION"))),
                );
                let client = reqwest::Client::builder()
                    .timeout(target.timeout)
                    .connect_timeout(target.timeout)
                    .pool_idle_timeout(Duration::from_secs(60))
                    .build()
                    .map_err(|e| ExportError::Http {
                        url: shown.clone(),
                        message: e.to_string(),
                    })?;
                Kind::Http { client, headers }
            }
            #[cfg(feature = "otlp-grpc")]
            Protocol::Grpc => {
                let endpoint = tonic::transport::Endpoint::from_shared(url.clone())
                    .map_err(|e| ExportError::Endpoint {
                        url: shown.clone(),
                        message: e.to_string(),
                    })?
                    .timeout(target.timeout)
                    .connect_timeout(target.timeout)
                    .user_agent(concat!("axi-obs/", env!("CARGO_PKG_VERSION")))
                    .map_err(|e| ExportError::Endpoint {
                        url: shown.clone(),
                        message: e.to_string(),
                    })?;
                let mut metadata = tonic::metadata::MetadataMap::new();
                for (k, v) in &target.headers {
                    // Validated during configuration. A `-bin` key is gRPC binary metadata:
                    // the value's bytes go base64-encoded, as grpc-go sends such a header
                    // from `OTEL_EXPORTER_OTLP_HEADERS`.
                    if k.ends_with("-bin") {
                        if let Ok(k) = tonic::metadata::MetadataKey::from_bytes(k.as_bytes()) {
                            metadata.insert_bin(
                                k,
                                tonic::metadata::MetadataValue::from_bytes(v.as_bytes()),
                            );
                        }
                    } else if let (Ok(k), Ok(v)) = (
                        tonic::metadata::MetadataKey::from_bytes(k.as_bytes()),
                        tonic::metadata::MetadataValue::try_from(v.as_str()),
                    ) {
                        metadata.insert(k, v);
                    }
                }
                Kind::Grpc {
                    channel: endpoint.connect_lazy(),
                    metadata,
                }
            }
            // Refused during configuration already (`Protocol::available`).
            #[cfg(not(feature = "otlp-grpc"))]
            Protocol::Grpc => return Err(ExportError::NoGrpc { url: shown }),
        };
        Ok(Self {
            kind,
            url,
            shown,
            timeout: target.timeout,
            compression: target.compression,
        })
    }

    /// Sends `request`, retrying retryable failures until the export timeout, or `until` when
    /// that comes first (a flush or shutdown deadline).
    pub(crate) async fn send(
        &self,
        request: Request,
        until: Option<Instant>,
    ) -> Result<Rejected, ExportError> {
        let started = Instant::now();
        let full = started + self.timeout;
        let deadline = until.map_or(full, |u| u.min(full));
        let body = match self.kind {
            Kind::Http { .. } => match self.compression {
                Compression::None => request.encode(),
                Compression::Gzip => gzip(&request.encode()),
            },
            #[cfg(feature = "otlp-grpc")]
            Kind::Grpc { .. } => Vec::new(),
        };
        let mut backoff = Duration::from_millis(100);
        loop {
            let attempt = match &self.kind {
                Kind::Http { client, headers } => {
                    self.send_http(client, headers, body.clone(), &request, deadline)
                        .await
                }
                #[cfg(feature = "otlp-grpc")]
                Kind::Grpc { channel, metadata } => {
                    self.send_grpc(channel, metadata, &request, deadline).await
                }
            };
            match attempt {
                Ok(rejected) => return Ok(rejected),
                // Said as the whole export's time, not the attempt's.
                Err(ExportError::Timeout { .. }) => {
                    return Err(ExportError::Timeout {
                        after: round_ms(started.elapsed()),
                        cut_short: deadline < full,
                    });
                }
                Err(e) if e.retryable() => {
                    // Exponential, with jitter (as the OTLP specification asks), so exporters
                    // that failed together do not retry together; never sooner than the
                    // server's `Retry-After`. A wait that would reach the deadline ends the
                    // export with this error instead.
                    let wait = jittered(backoff).max(e.retry_after().unwrap_or_default());
                    if wait >= deadline.saturating_duration_since(Instant::now()) {
                        return Err(e);
                    }
                    tokio::time::sleep(wait).await;
                    backoff *= 2;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn send_http(
        &self,
        client: &reqwest::Client,
        headers: &http::HeaderMap,
        body: Vec<u8>,
        request: &Request,
        deadline: Instant,
    ) -> Result<Rejected, ExportError> {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let res = client
            .post(&self.url)
            .headers(headers.clone())
            .timeout(left)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    // The whole export's time is put in by `send`.
                    ExportError::Timeout {
                        after: left,
                        cut_short: false,
                    }
                } else {
                    ExportError::Http {
                        url: self.shown.clone(),
                        // reqwest's own text repeats the URL, named already.
                        message: crate::error_chain(&e.without_url()),
                    }
                }
            })?;
        let status = res.status();
        let retry_after = res
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        // Read the body: the partial success it may hold, and the connection is reusable. An
        // answer larger than any OTLP reply is not one (an endpoint pointed at the wrong
        // server): it is not kept, and the connection is dropped.
        let mut res = res;
        let mut reply = Vec::new();
        while let Ok(Some(chunk)) = res.chunk().await {
            if reply.len() + chunk.len() > MAX_REPLY_BYTES {
                reply.clear();
                break;
            }
            reply.extend_from_slice(&chunk);
        }
        if status.is_success() {
            Ok(request.rejected_in(&reply))
        } else {
            Err(ExportError::HttpStatus {
                status: status.as_u16(),
                url: self.shown.clone(),
                retry_after,
            })
        }
    }

    #[cfg(feature = "otlp-grpc")]
    async fn send_grpc(
        &self,
        channel: &tonic::transport::Channel,
        metadata: &tonic::metadata::MetadataMap,
        request: &Request,
        deadline: Instant,
    ) -> Result<Rejected, ExportError> {
        let timeout = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        fn req<T>(
            msg: T,
            metadata: &tonic::metadata::MetadataMap,
            timeout: Duration,
        ) -> tonic::Request<T> {
            let mut r = tonic::Request::new(msg);
            *r.metadata_mut() = metadata.clone();
            r.set_timeout(timeout);
            r
        }
        // `grpc-encoding: gzip` on the request; the answer may come back compressed too.
        let gzip = self.compression == Compression::Gzip;
        macro_rules! client {
            ($client:ident) => {{
                let c = $client::new(channel.clone())
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
                if gzip {
                    c.send_compressed(tonic::codec::CompressionEncoding::Gzip)
                } else {
                    c
                }
            }};
        }
        let result = match request {
            Request::Traces(m) => client!(TraceServiceClient)
                .export(req(m.clone(), metadata, timeout))
                .await
                .map(|r| r.into_inner().rejected()),
            Request::Logs(m) => client!(LogsServiceClient)
                .export(req(m.clone(), metadata, timeout))
                .await
                .map(|r| r.into_inner().rejected()),
            Request::Metrics(m) => client!(MetricsServiceClient)
                .export(req(m.clone(), metadata, timeout))
                .await
                .map(|r| r.into_inner().rejected()),
        };
        result.map_err(|s| ExportError::Grpc {
            code: s.code(),
            url: self.shown.clone(),
            message: s.message().to_owned(),
            retry_delay: crate::rpc_status::retry_info(s.details()),
        })
    }
}

/// `d` to whole milliseconds, as an error says it.
fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().try_into().unwrap_or(u64::MAX))
}

/// `body` gzipped (default level), for `Content-Encoding: gzip`.
fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::default(),
    );
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(body);
    enc.finish().unwrap_or_default()
}

/// `d` scaled by a random factor in `[0.5, 1.5)`.
fn jittered(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // A fresh `RandomState` is keyed differently on every call; its hash is random enough
    // for spreading retries.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(d.as_nanos() as u64);
    let unit = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
    d.mul_f64(0.5 + unit)
}

/// The most of a collector's HTTP answer read: an OTLP reply holds at most a partial
/// success message.
const MAX_REPLY_BYTES: usize = 1 << 20;

/// `Retry-After` in either of its forms (RFC 9110 §10.2.3): seconds, or an HTTP date (the
/// time until it; a date past is no wait). Beyond an hour is past any export deadline
/// anyway.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    let wait = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(v)
            .ok()?
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    };
    Some(wait.min(Duration::from_secs(3600)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn retry_after_in_both_forms() {
        use super::parse_retry_after;
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("86400"), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        let ahead = std::time::SystemTime::now() + Duration::from_secs(120);
        let wait = parse_retry_after(&httpdate::fmt_http_date(ahead)).unwrap();
        assert!(
            wait > Duration::from_secs(110) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    /// An export error (here: nothing listens) names the endpoint without its credentials;
    /// reqwest's own text, which repeats the URL, is left out.
    #[tokio::test]
    async fn export_errors_show_the_endpoint_without_its_credentials() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(9);
        let target = crate::config::OtlpTarget {
            endpoint: format!("http://user:s3cret@127.0.0.1:{port}/v1/traces"),
            endpoint_source: crate::Source::Env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            protocol: crate::config::Protocol::HttpProtobuf,
            headers: Vec::new(),
            timeout: Duration::from_millis(300),
            compression: crate::config::Compression::None,
        };
        let transport = super::Transport::new(&target).unwrap_or_else(|e| panic!("{e}"));
        let request = super::Request::Traces(Default::default());
        let e = match transport.send(request, None).await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("nothing listens on port {port}"),
        };
        assert!(!e.contains("s3cret"), "{e}");
        assert!(e.contains(&format!("http://***@127.0.0.1:{port}")), "{e}");
    }

    #[test]
    fn jitter_stays_within_half_to_one_and_a_half_and_varies() {
        let d = Duration::from_millis(100);
        let all: Vec<Duration> = (0..200).map(|_| super::jittered(d)).collect();
        assert!(all.iter().all(|j| *j >= d / 2 && *j < d.mul_f64(1.5)));
        let distinct: std::collections::HashSet<Duration> = all.iter().copied().collect();
        assert!(distinct.len() > 100, "{} distinct of 200", distinct.len());
    }
}
