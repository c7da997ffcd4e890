//! Outputs: where batches of records go. An output acknowledges a batch by returning `Ok`;
//! only then does the registry move past its lines.

mod elasticsearch;
mod otlp;
mod otlp_encode;
mod otlp_grpc;
mod stdout;
pub mod tls;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use elasticsearch::{ElasticsearchBulk, ElasticsearchConfigError, ITEM_REFUSALS};
pub use otlp::{OtlpConfigError, OtlpHttp};
pub use otlp_grpc::{OtlpGrpc, OtlpGrpcConfigError};
pub use stdout::JsonLines;
pub use tls::{TlsConfigError, TlsOptions};

use crate::record::Record;

/// The future [`Output::send`] returns.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<Delivered, SendError>> + Send + 'a>>;

/// What became of an acknowledged batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Events the destination refused for good within an otherwise accepted batch (OTLP
    /// `partial_success`, Elasticsearch per-item 4xx such as mapping errors): counted in
    /// `log_shipper_events_dropped_total`, not retried. The rest are stored.
    pub dropped: usize,
}

/// Why a batch was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth trying again (connection failure, timeout, HTTP 429/502/503/504): the pipeline
    /// retries with backoff and reading pauses meanwhile.
    #[error("{message}")]
    Retryable {
        /// What happened.
        message: String,
        /// The receiver's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// Too large for the destination (HTTP 413, gRPC `RESOURCE_EXHAUSTED` without a
    /// `RetryInfo`, such as a collector's message size limit): the pipeline sends it again
    /// in halves, down to single events; an event too large alone is dropped and counted.
    #[error("{message}")]
    TooLarge {
        /// What happened.
        message: String,
    },
    /// Refused for good (a 4xx other than 429): retrying would fail the same way. The batch
    /// is counted as dropped and the pipeline moves on.
    #[error("{message}")]
    Rejected {
        /// What happened.
        message: String,
    },
}

/// A destination for batches of records.
pub trait Output: Send {
    /// The `output` label of the self-metrics (`otlp`, `stdout`).
    fn kind(&self) -> &'static str;

    /// Sends one batch; `Ok` means the destination has it (except the events
    /// [`Delivered::dropped`] counts). After an error the pipeline calls `send` again with the
    /// same batch.
    fn send<'a>(&'a mut self, batch: &'a [Record]) -> SendFuture<'a>;
}

/// The record as an ECS-style JSON object (`@timestamp`, `message`, `log.level`,
/// `log.file.path`, `service.name`, `trace.id`, `span.id`, `log.flags`, then the attributes).
pub fn record_json(r: &Record) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::Value as J;
    let mut m = serde_json::Map::new();
    m.insert(
        "@timestamp".into(),
        J::String(crate::parse::time::format_rfc3339_millis(
            r.time_unix_nano.unwrap_or(r.observed_unix_nano),
        )),
    );
    if let Some(l) = r.level {
        m.insert("log.level".into(), J::String(l.as_str().into()));
    }
    m.insert("message".into(), J::String(r.body.clone()));
    m.insert("log.file.path".into(), J::String(r.path.to_string()));
    m.insert("service.name".into(), J::String(r.service.to_string()));
    if let Some(t) = r.trace_id {
        m.insert("trace.id".into(), J::String(hex(&t)));
    }
    if let Some(s) = r.span_id {
        m.insert("span.id".into(), J::String(hex(&s)));
    }
    if r.truncated {
        m.insert(
            "log.flags".into(),
            J::Array(vec![J::String("truncated".into())]),
        );
    }
    for (k, v) in &r.attributes {
        m.entry(k.as_ref()).or_insert_with(|| v.to_json());
    }
    m
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
