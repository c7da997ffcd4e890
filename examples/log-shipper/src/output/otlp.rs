//! OTLP logs over HTTP/protobuf (`POST {endpoint}/v1/logs`), one request per batch, decoded
//! by any OpenTelemetry receiver. Records are grouped into one `ResourceLogs` per service,
//! with `service.name` and `host.name` resource attributes; each record carries
//! `log.file.path` and `log.file.name`.
//!
//! Status handling follows the OTLP specification: 2xx is success (a `partial_success` with
//! rejected records is logged and counted as dropped); 429, 502, 503, 504 and connection
//! failures are retryable (honouring `Retry-After` in seconds); other statuses are permanent.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::tls::TlsOptions;
use super::{Delivered, Output, SendError, SendFuture};
use crate::record::{Record, Value};
use axi_obs_core::https::HttpClient;

/// The OTLP/HTTP protobuf logs exporter (`http://` or `https://`).
#[derive(Debug)]
pub struct OtlpHttp {
    client: HttpClient,
    uri: http::Uri,
    url: String,
    headers: http::HeaderMap,
    host_name: String,
}

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("OTLP output: {0}")]
pub struct OtlpConfigError(String);

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn any(v: &Value) -> any_value::Value {
    match v {
        Value::Str(s) => any_value::Value::StringValue(s.clone()),
        Value::Int(i) => any_value::Value::IntValue(*i),
        Value::Float(f) => any_value::Value::DoubleValue(*f),
        Value::Bool(b) => any_value::Value::BoolValue(*b),
    }
}

impl OtlpHttp {
    /// An exporter to `endpoint` (`/v1/logs` is appended) with a per-request `timeout` and
    /// extra `headers`; `https://` endpoints are verified against the system trust store.
    ///
    /// # Errors
    ///
    /// When the endpoint is not a URL or a header name or value is invalid.
    pub fn new(
        endpoint: &str,
        timeout: Duration,
        headers: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, OtlpConfigError> {
        Self::with_tls(endpoint, timeout, headers, &TlsOptions::default())
    }

    /// As [`new`](Self::new), with the TLS settings of `https://` endpoints (`ca_file`,
    /// `insecure_skip_verify`, client certificate).
    ///
    /// # Errors
    ///
    /// When the endpoint is not a URL, a header name or value is invalid, or a TLS file cannot
    /// be used.
    pub fn with_tls(
        endpoint: &str,
        timeout: Duration,
        headers: impl IntoIterator<Item = (String, String)>,
        tls: &TlsOptions,
    ) -> Result<Self, OtlpConfigError> {
        let mut map = http::HeaderMap::new();
        for (k, v) in headers {
            let name = http::HeaderName::try_from(k.as_str())
                .map_err(|e| OtlpConfigError(format!("header {k:?}: {e}")))?;
            // The value is a secret more often than not: never echo it.
            let value = http::HeaderValue::try_from(v.as_str())
                .map_err(|_| OtlpConfigError(format!("header {k:?}: invalid value")))?;
            map.insert(name, value);
        }
        let client = super::tls::http_client(tls, timeout)
            .map_err(|e| OtlpConfigError(format!("tls.{e}")))?;
        let url = format!("{}/v1/logs", endpoint.trim_end_matches('/'));
        let uri = url
            .parse()
            .map_err(|e| OtlpConfigError(format!("endpoint {endpoint:?}: {e}")))?;
        Ok(Self {
            client,
            uri,
            url,
            headers: map,
            host_name: host_name(),
        })
    }

    /// The request a batch becomes.
    pub fn encode(&self, batch: &[Record]) -> ExportLogsServiceRequest {
        encode_request(batch, &self.host_name)
    }

    async fn post(&self, body: Vec<u8>, events: usize) -> Result<Delivered, SendError> {
        let response = self
            .client
            .post(&self.uri, &self.headers, "application/x-protobuf", body)
            .await
            .map_err(|e| SendError::Retryable {
                message: format!("request to {} failed: {e}", self.url),
                retry_after: None,
            })?;
        let status = response.status;
        if status.is_success() {
            let mut delivered = Delivered::default();
            if let Ok(reply) = ExportLogsServiceResponse::decode(response.body)
                && let Some(partial) = reply.partial_success
                && partial.rejected_log_records > 0
            {
                tracing::warn!(
                    rejected = partial.rejected_log_records,
                    of = events,
                    message = %partial.error_message,
                    "the OTLP receiver rejected some records"
                );
                delivered.dropped = usize::try_from(partial.rejected_log_records)
                    .unwrap_or(events)
                    .min(events);
            }
            return Ok(delivered);
        }
        let message = format!("HTTP {} from {}", status.as_u16(), self.url);
        if status.as_u16() == 413 {
            return Err(SendError::TooLarge { message });
        }
        // 429, 502, 503 and 504 are the OTLP specification's retryable statuses. 401, 403
        // and 404 are retried too, where the specification drops the batch: a credential or a
        // URL is the operator's to fix, and dropping would throw away every line read until
        // then (as this shipper's Elasticsearch output, and Filebeat's, hold them).
        if matches!(status.as_u16(), 401 | 403 | 404 | 429 | 502 | 503 | 504) {
            let retry_after = retry_after(&response.headers);
            Err(SendError::Retryable {
                message,
                retry_after,
            })
        } else {
            Err(SendError::Rejected { message })
        }
    }
}

/// The OTLP request of a batch: one `ResourceLogs` per service, with `service.name` and
/// `host.name`.
pub(super) fn encode_request(batch: &[Record], host_name: &str) -> ExportLogsServiceRequest {
    let mut groups: Vec<(&str, Vec<LogRecord>)> = Vec::new();
    for r in batch {
        let record = log_record(r);
        match groups.iter_mut().find(|(s, _)| *s == &*r.service) {
            Some((_, v)) => v.push(record),
            None => groups.push((&r.service, vec![record])),
        }
    }
    ExportLogsServiceRequest {
        resource_logs: groups
            .into_iter()
            .map(|(service, log_records)| ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        kv(
                            "service.name",
                            any_value::Value::StringValue(service.into()),
                        ),
                        kv(
                            "host.name",
                            any_value::Value::StringValue(host_name.to_owned()),
                        ),
                    ],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "axi-log-shipper".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    log_records,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// The `Retry-After` of a response, in seconds.
pub(super) fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

fn log_record(r: &Record) -> LogRecord {
    let mut attributes = Vec::with_capacity(r.attributes.len() + 3);
    attributes.push(kv(
        "log.file.path",
        any_value::Value::StringValue(r.path.to_string()),
    ));
    let name = r.path.rsplit('/').next().unwrap_or(&r.path);
    attributes.push(kv(
        "log.file.name",
        any_value::Value::StringValue(name.to_owned()),
    ));
    if r.truncated {
        attributes.push(kv(
            "log.record.truncated",
            any_value::Value::BoolValue(true),
        ));
    }
    for (k, v) in &r.attributes {
        attributes.push(kv(k, any(v)));
    }
    LogRecord {
        time_unix_nano: r.time_unix_nano.unwrap_or(0),
        observed_time_unix_nano: r.observed_unix_nano,
        severity_number: r.level.map(|l| l.severity_number()).unwrap_or(0),
        severity_text: r.level.map(|l| l.as_str().to_owned()).unwrap_or_default(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(r.body.clone())),
        }),
        attributes,
        trace_id: r.trace_id.map(|t| t.to_vec()).unwrap_or_default(),
        span_id: r.span_id.map(|s| s.to_vec()).unwrap_or_default(),
        ..Default::default()
    }
}

/// This machine's name, for `host.name`.
pub(super) fn host_name() -> String {
    axi_obs_core::__private::host_name().unwrap_or_else(|| "localhost".into())
}

impl Output for OtlpHttp {
    fn kind(&self) -> &'static str {
        "otlp"
    }

    fn send<'a>(&'a mut self, batch: &'a [Record]) -> SendFuture<'a> {
        // The bytes of `self.encode(batch).encode_to_vec()`, without the intermediate structs.
        let body = super::otlp_encode::encode_request_bytes(batch, &self.host_name);
        Box::pin(self.post(body, batch.len()))
    }
}
