//! One builder for JSON logs, OTLP traces and logs, and Prometheus / OTLP metrics.
//!
//! ```no_run
//! // Everything from the environment (OTEL_*, RUST_LOG, AXI_LOG_*); code wins where set.
//! let _telemetry = axi_obs_core::Telemetry::builder()
//!     .service_name("shop-api")
//!     .service_version(env!("CARGO_PKG_VERSION"))
//!     .install(); // flushes and shuts down when dropped at the end of main
//!
//! metrics::describe_counter!("orders_total", "Orders placed");
//! metrics::counter!("orders_total", "channel" => "web").increment(1);
//! let span = tracing::info_span!("checkout", order_id = 42);
//! let _entered = span.enter();
//! tracing::info!(amount_cents = 1999, "order placed"); // JSON line with trace.id
//! ```
//!
//! What you get, with no configuration:
//!
//! * **Logs**: JSON lines with ECS names (`@timestamp`, `log.level`, `message`, `log.logger`,
//!   `service.name`, `trace.id`, `span.id`, fields flattened) when standard output is not a
//!   terminal, a compact human format when it is; written by a background thread through a
//!   bounded buffer that drops (and counts) rather than blocks. See [`logs::JsonLayer`].
//! * **Metrics**: the [`metrics`] facade recorded in memory, rendered as Prometheus text by
//!   [`MetricsHandle::render`] (mount it on your router; `axi-obs-axum` does). Histograms are
//!   always buckets, durations use the OpenTelemetry semantic-convention bounds, each metric
//!   holds at most 2000 label sets, `process_*`, `target_info` and `service_build_info` are
//!   included. No port is opened.
//! * **Traces**: `tracing` spans are OpenTelemetry spans with W3C ids (so log lines carry
//!   `trace.id` and outgoing requests can propagate context) from the start, but nothing
//!   leaves the process until an OTLP endpoint is configured. Then spans go out in batches
//!   with a parent-based sampler, logs go out as OTLP log records carrying their span's trace
//!   id, and metrics are pushed every 60 s. `OTEL_SDK_DISABLED=true` removes the span layer.
//!
//! Everything that could hurt the host is bounded: export runs on its own thread behind
//! bounded queues; full queues drop and count (`axi_obs_export_items_total`,
//! `axi_obs_log_lines_dropped_total`, see [`internal`]); shutdown finishes within its timeout
//! on any runtime.
//!
//! # Configuration
//!
//! Precedence for every setting: **code > signal-specific environment variable > generic
//! environment variable > default**. Empty variables count as unset. An environment variable
//! whose value cannot be used (an unknown or unsupported value, a malformed number, boolean
//! or list) is read as unset, as the OpenTelemetry specification requires, and never
//! silently: [`TelemetryBuilder::install`] logs a warning naming it, its value and why, and
//! [`TelemetryBuilder::build`] returns them in [`Telemetry::env_warnings`]. A value set in
//! code that cannot be used is a [`ConfigError`] naming the builder method. "Refused" below
//! means exactly that.
//!
//! | variable | builder | default |
//! |---|---|---|
//! | `OTEL_SDK_DISABLED` | [`sdk_disabled`](TelemetryBuilder::sdk_disabled) | `false`; `true` turns all OTLP export off (local logs and `/metrics` stay) |
//! | `OTEL_SERVICE_NAME` | [`service_name`](TelemetryBuilder::service_name) (wins) / [`default_service_name`](TelemetryBuilder::default_service_name) (loses) | `service.name` from `OTEL_RESOURCE_ATTRIBUTES`, else `unknown_service:<exe>` |
//! | `OTEL_RESOURCE_ATTRIBUTES` | [`resource_attribute`](TelemetryBuilder::resource_attribute), [`service_version`](TelemetryBuilder::service_version), [`service_namespace`](TelemetryBuilder::service_namespace), [`environment`](TelemetryBuilder::environment) | `telemetry.sdk.*`, `host.name` |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | [`otlp`](TelemetryBuilder::otlp)`(OtlpConfig::new().endpoint(..))` | none: no export. HTTP appends `/v1/traces`, `/v1/logs`, `/v1/metrics` |
//! | `OTEL_EXPORTER_OTLP_{TRACES,LOGS,METRICS}_ENDPOINT` | [`traces`](TelemetryBuilder::traces) / [`logs`](TelemetryBuilder::logs) / [`metrics_export`](TelemetryBuilder::metrics_export) | the generic endpoint; used as given |
//! | `OTEL_EXPORTER_OTLP_PROTOCOL`, `..._{TRACES,LOGS,METRICS}_PROTOCOL` | [`OtlpConfig::protocol`] | `http/protobuf`; `grpc` supported, `http/json` refused (from the environment: ignored with a warning) |
//! | `OTEL_EXPORTER_OTLP_HEADERS`, `..._{TRACES,LOGS,METRICS}_HEADERS` | [`OtlpConfig::header`] | none; the signal's variable replaces the generic one (as every OTLP option), code-set headers merge per key on top |
//! | `OTEL_EXPORTER_OTLP_TIMEOUT`, `..._{TRACES,LOGS,METRICS}_TIMEOUT` (ms) | [`OtlpConfig::timeout`] | 10000 |
//! | `OTEL_EXPORTER_OTLP_COMPRESSION`, `..._{TRACES,LOGS,METRICS}_COMPRESSION` | [`OtlpConfig::compression`] | `none`; `gzip` over HTTP (`Content-Encoding`) and gRPC (`grpc-encoding`) |
//! | `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, `OTEL_BSP_EXPORT_TIMEOUT` (spans) | [`export_queue_size`](TelemetryBuilder::export_queue_size) (both queues) | 5000 ms, 2048, 512 (clamped to the queue), 30000 ms (bounds the exporter timeout); read only when spans are exported |
//! | `OTEL_BLRP_SCHEDULE_DELAY`, `OTEL_BLRP_MAX_QUEUE_SIZE`, `OTEL_BLRP_MAX_EXPORT_BATCH_SIZE`, `OTEL_BLRP_EXPORT_TIMEOUT` (log records) | as above | 1000 ms, 2048, 512, 30000 ms |
//! | `OTEL_{TRACES,LOGS,METRICS}_EXPORTER` | [`OtlpConfig::exporter`] | export iff an endpoint is set; `otlp` without endpoint uses `localhost:4318` (`4317` for gRPC); `none` turns the signal off; `prometheus` (metrics) means pull only |
//! | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | [`sampler`](TelemetryBuilder::sampler) | `parentbased_always_on`; ratio within `0..=1`. Without a traces exporter the default is `parentbased_always_off`: spans keep ids for logs and honour a caller's decision, but new traces are not recorded for nobody |
//! | `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`, `OTEL_SPAN_EVENT_COUNT_LIMIT`, `OTEL_SPAN_LINK_COUNT_LIMIT`, `OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT`, `OTEL_LINK_ATTRIBUTE_COUNT_LIMIT`, `OTEL_ATTRIBUTE_COUNT_LIMIT` (attribute fallback) | | 128 each; beyond a limit the SDK drops and counts |
//! | `OTEL_PROPAGATORS` | [`propagators`](TelemetryBuilder::propagators) | `tracecontext,baggage`; `none` allowed |
//! | `OTEL_METRIC_EXPORT_INTERVAL` (ms) | [`metric_export_interval`](TelemetryBuilder::metric_export_interval) | 60000 |
//! | `OTEL_METRIC_EXPORT_TIMEOUT` (ms) | | 30000; bounds the metrics exporter's timeout |
//! | `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`, `OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION` | | `cumulative` and `explicit_bucket_histogram`, the only ones exported: other values are refused when metrics are pushed over OTLP (not read otherwise) |
//! | `RUST_LOG` | [`log_filter`](TelemetryBuilder::log_filter) (wins) / [`default_log_filter`](TelemetryBuilder::default_log_filter) (loses) | `info`; `h2`, `hyper`, `hyper_util`, `tonic`, `reqwest`, `opentelemetry*` capped at `warn` unless named (their modules only: `hyperion` or `reqwest_tracing` are not capped) |
//! | `AXI_LOG_FORMAT` | [`log_format`](TelemetryBuilder::log_format) | `compact` on a terminal, else `json` |
//! | `AXI_LOG_FILE` | [`log_file`](TelemetryBuilder::log_file) | standard output; a file is rotated daily, 7 kept |
//!
//! Names are public constants in [`config`]. Tests pass their own environment with
//! [`TelemetryBuilder::env`] instead of mutating the process's.
//!
//! # Install, build, shut down
//!
//! * [`TelemetryBuilder::install`] sets the globals (tracing subscriber and `log` bridge,
//!   metrics recorder, OpenTelemetry tracer provider and propagator) and panics with a clear
//!   message on error; [`try_install`](TelemetryBuilder::try_install) returns
//!   [`InitError`] instead (a second install in one process is
//!   [`InitError::AlreadyInstalled`]). [`init`] is the zero-configuration form.
//! * [`TelemetryBuilder::build`] returns the [`Telemetry`] parts and sets nothing global: for
//!   tests, and for composing your own subscriber.
//! * The returned [`TelemetryGuard`] flushes and shuts down on drop, or through
//!   `guard.shutdown().await`; both within the shutdown timeout (default 5 s).
//!
//! # Features
//!
//! | feature | default | what |
//! |---|---|---|
//! | `otlp-grpc` | yes | OTLP export over gRPC (tonic, HTTP/2) beside OTLP over HTTP/protobuf, which is always in; off, a `grpc` protocol is refused at configuration ([`ConfigError`]) naming the feature. Small binaries (the node collector) leave it off |
//! | `testing` | no | [`testing::Capture`] (metrics, spans and log lines of one test, without globals), [`testing::OtlpReceiver`] (an in-process OTLP receiver), [`testing::peer`] |
//! | `tls` | no | [`tls`]: the rustls client configuration (ring provider, system trust store, PEM files, `insecure_skip_verify`) shared by the workspace's TLS clients |
//! | `https-client` | no | [`https`]: an HTTP client for `http://` and `https://` alike (hyper-util over hyper-rustls, configured from [`tls`]); implies `tls` |
//!
//! TLS for OTLP endpoints is not built in: export to a local collector (the usual
//! single-server setup) over plain HTTP or gRPC; `https://` endpoints are refused, saying
//! so.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
pub mod config;
mod encoding;
mod error;
mod export;
mod fast_hash;
mod guard;
mod hex;
#[cfg(feature = "https-client")]
#[cfg_attr(docsrs, doc(cfg(feature = "https-client")))]
pub mod https;
pub mod internal;
pub mod logs;
pub mod metrics;
mod rpc_status;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;
mod traces;

pub use builder::{OtlpConfig, Telemetry, TelemetryBuilder, global_metrics, init, try_init};
pub use config::{
    Compression, Env, Exporter, LogFile, LogFormat, Propagator, Protocol, Rotation, Sampler, Signal,
};
pub use error::{ConfigError, InitError, ShutdownError, Source};
pub use guard::TelemetryGuard;
pub use metrics::{MetricsHandle, MetricsRecorder};

/// The pinned OpenTelemetry crates, re-exported so applications never build a second version.
pub mod otel {
    pub use opentelemetry;
    pub use opentelemetry_sdk;
    pub use opentelemetry_semantic_conventions as semconv;
    pub use tracing_opentelemetry;
}

/// Not public API: helpers shared with the other axi-obs crates, which depend on this exact
/// version of this crate. May change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::config::host_name;

    /// `url` as logs and errors show it: the user and password it may carry replaced by
    /// `***` (`http://***@host/`), and its query too (`?***`), which webhook and robot URLs
    /// use for tokens (`?access_token=`, `?key=`).
    pub fn redact_url(url: &str) -> String {
        let mut shown = crate::config::redact_userinfo(url);
        if let Some(q) = shown.find('?') {
            let end = shown[q..].find('#').map_or(shown.len(), |f| q + f);
            shown.replace_range(q + 1..end, "***");
        }
        shown
    }

    /// An error and its sources, joined with `: `.
    pub fn error_chain(e: &dyn std::error::Error) -> String {
        crate::error_chain(e)
    }
    pub use crate::encoding::{accepts_gzip, gzip_if_accepted, joined, media_ranges};
    pub use crate::fast_hash::FxHasher;
    pub use crate::hex::hex16;
    pub use crate::rpc_status::{retry_info, with_retry_info};

    /// `s` as a label value of the text exposition: `\`, `"` and newlines escaped.
    pub fn escape_label_value(out: &mut String, s: &str) {
        crate::metrics::escape_label_value(out, s);
    }
}

/// The `metrics` facade this crate records, re-exported for version alignment.
pub use ::metrics as metrics_facade;

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_are_shown_without_credentials_or_query() {
        use super::__private::redact_url;
        assert_eq!(
            redact_url("http://u:p@host:80/hook?access_token=abc#frag"),
            "http://***@host:80/hook?***#frag"
        );
        assert_eq!(redact_url("http://host/hook"), "http://host/hook");
        assert_eq!(redact_url("http://host/?key=1&x=2"), "http://host/?***");
    }
}
