//! OTLP logs over gRPC (`opentelemetry.proto.collector.logs.v1.LogsService/Export`, usually
//! port 4317), with the same records and resources as [`OtlpHttp`](super::OtlpHttp).
//!
//! Status handling follows the OTLP specification: `OK` is success (a `partial_success` with
//! rejected records counts them as dropped); `CANCELLED`, `DEADLINE_EXCEEDED`,
//! `RESOURCE_EXHAUSTED`, `ABORTED`, `OUT_OF_RANGE`, `UNAVAILABLE` and `DATA_LOSS` are retried,
//! and so is `UNKNOWN`, which is how the client reports a receiver it cannot reach; other
//! codes refuse the batch for good.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use tonic::Code;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use super::otlp::{encode_request, host_name};
use super::tls::TlsOptions;
use super::{Delivered, Output, SendError, SendFuture};
use crate::record::Record;
use axi_obs_core::https::Connector;

/// The OTLP/gRPC logs exporter.
#[derive(Debug)]
pub struct OtlpGrpc {
    client: LogsServiceClient<Channel>,
    endpoint: String,
    metadata: MetadataMap,
    timeout: Duration,
    host_name: String,
}

/// Why the gRPC exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("OTLP/gRPC output: {0}")]
pub struct OtlpGrpcConfigError(String);

impl OtlpGrpc {
    /// An exporter to `endpoint` (`http://host:4317`, or `https://` verified against the
    /// system trust store) with a per-request `timeout` and extra `headers` sent as gRPC
    /// metadata. Connects on the first send, not here.
    ///
    /// # Errors
    ///
    /// When the endpoint is not a URI or a header name or value is not valid metadata.
    pub fn new(
        endpoint: &str,
        timeout: Duration,
        headers: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, OtlpGrpcConfigError> {
        Self::with_tls(endpoint, timeout, headers, &TlsOptions::default())
    }

    /// As [`new`](Self::new), with the TLS settings of `https://` endpoints (`ca_file`,
    /// `insecure_skip_verify`, client certificate); HTTP/2 is negotiated with ALPN `h2`.
    ///
    /// # Errors
    ///
    /// When the endpoint is not a URI, a header name or value is not valid metadata, or a TLS
    /// file cannot be used.
    pub fn with_tls(
        endpoint: &str,
        timeout: Duration,
        headers: impl IntoIterator<Item = (String, String)>,
        tls: &TlsOptions,
    ) -> Result<Self, OtlpGrpcConfigError> {
        let mut metadata = MetadataMap::new();
        for (k, v) in headers {
            let key = MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                .map_err(|e| OtlpGrpcConfigError(format!("header {k:?}: {e}")))?;
            // The value is a secret more often than not: never echo it.
            let value = MetadataValue::try_from(v.as_str())
                .map_err(|_| OtlpGrpcConfigError(format!("header {k:?}: invalid value")))?;
            metadata.insert(key, value);
        }
        let channel = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|e| OtlpGrpcConfigError(format!("endpoint {endpoint:?}: {e}")))?
            .timeout(timeout)
            .connect_timeout(timeout);
        let channel = if channel.uri().scheme_str() == Some("https") {
            // TLS by our connector (rustls with ring, the same verification as the HTTP
            // outputs); tonic's own TLS features stay off, so tonic passes the stream through.
            let config = tls
                .client_config()
                .map_err(|e| OtlpGrpcConfigError(format!("tls.{e}")))?;
            channel.connect_with_connector_lazy(
                Connector::new(config)
                    .connect_timeout(timeout)
                    .http2()
                    .build(),
            )
        } else {
            channel.connect_lazy()
        };
        Ok(Self {
            client: LogsServiceClient::new(channel),
            endpoint: endpoint.to_owned(),
            metadata,
            timeout,
            host_name: host_name(),
        })
    }

    async fn export(&mut self, batch: &[Record]) -> Result<Delivered, SendError> {
        let mut request = tonic::Request::new(encode_request(batch, &self.host_name));
        *request.metadata_mut() = self.metadata.clone();
        request.set_timeout(self.timeout);
        match self.client.export(request).await {
            Ok(reply) => {
                let mut delivered = Delivered::default();
                if let Some(partial) = reply.into_inner().partial_success
                    && partial.rejected_log_records > 0
                {
                    tracing::warn!(
                        rejected = partial.rejected_log_records,
                        of = batch.len(),
                        message = %partial.error_message,
                        "the OTLP receiver rejected some records"
                    );
                    delivered.dropped = usize::try_from(partial.rejected_log_records)
                        .unwrap_or(batch.len())
                        .min(batch.len());
                }
                Ok(delivered)
            }
            Err(status) => Err(classify(&status, &self.endpoint)),
        }
    }
}

/// What a gRPC status means for the batch.
fn classify(status: &tonic::Status, endpoint: &str) -> SendError {
    let message = format!(
        "gRPC {:?} from {endpoint}: {}",
        status.code(),
        status.message()
    );
    // The server's own delay before a retry, when its status carries a RetryInfo.
    let retry_delay = axi_obs_core::__private::retry_info(status.details());
    match status.code() {
        // A message over the receiver's size limit: a smaller batch passes. grpc-go answers
        // RESOURCE_EXHAUSTED "received message larger than max", grpc-java
        // RESOURCE_EXHAUSTED "... exceeds maximum size", tonic (Rust receivers) OUT_OF_RANGE
        // "decoded message length too large". Other exhaustion (a rate limit, an HTTP/2
        // ENHANCE_YOUR_CALM) is retried with backoff below.
        Code::ResourceExhausted | Code::OutOfRange
            if retry_delay.is_none() && names_a_size_limit(status.message()) =>
        {
            SendError::TooLarge { message }
        }
        // As for OTLP over HTTP's 401 and 403, a credential to fix: held and retried, not
        // dropped (the specification calls them permanent).
        Code::Unauthenticated | Code::PermissionDenied => SendError::Retryable {
            message,
            retry_after: None,
        },
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss
        | Code::Unknown => SendError::Retryable {
            message,
            retry_after: retry_delay,
        },
        _ => SendError::Rejected { message },
    }
}

/// Whether a gRPC error message says a message was over a size limit, in the words of the
/// gRPC implementations receivers are built on.
fn names_a_size_limit(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["larger than max", "length too large", "exceeds maximum"]
        .iter()
        .any(|s| m.contains(s))
}

impl Output for OtlpGrpc {
    fn kind(&self) -> &'static str {
        "otlp"
    }

    fn send<'a>(&'a mut self, batch: &'a [Record]) -> SendFuture<'a> {
        Box::pin(self.export(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_follow_the_otlp_specification() {
        let retryable = |c: Code| {
            matches!(
                classify(&tonic::Status::new(c, "x"), "e"),
                SendError::Retryable { .. }
            )
        };
        for c in [Code::Unavailable, Code::DeadlineExceeded, Code::Unknown] {
            assert!(retryable(c), "{c:?}");
        }
        // RESOURCE_EXHAUSTED: retried with a RetryInfo, else a batch too large.
        // (Its delay is the wait before the retry.)
        let retry_info = axi_obs_core::__private::with_retry_info(
            Code::ResourceExhausted as i32,
            std::time::Duration::from_secs(3),
        );
        let with = tonic::Status::with_details(
            Code::ResourceExhausted,
            "message larger than max, but try again",
            retry_info.into(),
        );
        assert!(matches!(
            classify(&with, "e"),
            SendError::Retryable {
                retry_after: Some(d),
                ..
            } if d == std::time::Duration::from_secs(3)
        ));
        let without = tonic::Status::new(
            Code::ResourceExhausted,
            "grpc: received message larger than max (5000000 vs. 4194304)",
        );
        assert!(matches!(
            classify(&without, "e"),
            SendError::TooLarge { .. }
        ));
        // tonic's (a Rust receiver's) and grpc-java's words for it.
        for (code, said) in [
            (
                Code::OutOfRange,
                "Error, decoded message length too large: found 5000000 bytes, the limit is: 4194304 bytes",
            ),
            (
                Code::ResourceExhausted,
                "gRPC message exceeds maximum size 4194304: 5000000",
            ),
        ] {
            assert!(matches!(
                classify(&tonic::Status::new(code, said), "e"),
                SendError::TooLarge { .. }
            ));
        }
        let limited = tonic::Status::new(Code::ResourceExhausted, "ingestion rate limit exceeded");
        assert!(matches!(
            classify(&limited, "e"),
            SendError::Retryable { .. }
        ));
        for c in [Code::InvalidArgument, Code::Unimplemented] {
            assert!(!retryable(c), "{c:?}");
        }
        // A credential to fix: held, not dropped.
        for c in [Code::Unauthenticated, Code::PermissionDenied] {
            assert!(retryable(c), "{c:?}");
        }
    }
}
