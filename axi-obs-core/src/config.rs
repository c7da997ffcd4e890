//! Typed configuration and its resolution from code and `OTEL_*` environment variables.
//!
//! Precedence, for every setting: **code > signal-specific env var > generic env var > default**.
//! Environment variables whose value is empty count as unset, as the OpenTelemetry
//! specification asks. The names are public constants so applications can refer to them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{ConfigError, Source};

/// `OTEL_SDK_DISABLED`: `true` turns every OpenTelemetry export off (local logs and the
/// Prometheus registry keep working).
pub const OTEL_SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
/// `OTEL_SERVICE_NAME`: the `service.name` resource attribute.
pub const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// `OTEL_RESOURCE_ATTRIBUTES`: `key=value,key=value` resource attributes, keys and values
/// percent-encoded.
pub const OTEL_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
/// `OTEL_EXPORTER_OTLP_ENDPOINT`: base URL for every signal (HTTP appends `/v1/<signal>`).
pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_PROTOCOL`: `grpc` or `http/protobuf`.
pub const OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_HEADERS`: `key=value,key=value` headers sent with every export.
pub const OTEL_EXPORTER_OTLP_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
/// `OTEL_EXPORTER_OTLP_TIMEOUT`: export timeout in milliseconds.
pub const OTEL_EXPORTER_OTLP_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: full URL for traces, used as given.
pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`.
pub const OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_TRACES_HEADERS`.
pub const OTEL_EXPORTER_OTLP_TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
/// `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`.
pub const OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
/// `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`: full URL for logs, used as given.
pub const OTEL_EXPORTER_OTLP_LOGS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_LOGS_PROTOCOL`.
pub const OTEL_EXPORTER_OTLP_LOGS_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_LOGS_HEADERS`.
pub const OTEL_EXPORTER_OTLP_LOGS_HEADERS: &str = "OTEL_EXPORTER_OTLP_LOGS_HEADERS";
/// `OTEL_EXPORTER_OTLP_LOGS_TIMEOUT`.
pub const OTEL_EXPORTER_OTLP_LOGS_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT";
/// `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`: full URL for metrics, used as given.
pub const OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_METRICS_PROTOCOL`.
pub const OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_METRICS_HEADERS`.
pub const OTEL_EXPORTER_OTLP_METRICS_HEADERS: &str = "OTEL_EXPORTER_OTLP_METRICS_HEADERS";
/// `OTEL_EXPORTER_OTLP_METRICS_TIMEOUT`.
pub const OTEL_EXPORTER_OTLP_METRICS_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT";
/// `OTEL_EXPORTER_OTLP_COMPRESSION`: `gzip` or `none` (the default) for every signal.
pub const OTEL_EXPORTER_OTLP_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
/// `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION`: as the generic variable, for spans.
pub const OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION";
/// `OTEL_EXPORTER_OTLP_LOGS_COMPRESSION`: as the generic variable, for log records.
pub const OTEL_EXPORTER_OTLP_LOGS_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION";
/// `OTEL_EXPORTER_OTLP_METRICS_COMPRESSION`: as the generic variable, for metrics.
pub const OTEL_EXPORTER_OTLP_METRICS_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION";
/// `OTEL_TRACES_EXPORTER`: `otlp` or `none`.
pub const OTEL_TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
/// `OTEL_LOGS_EXPORTER`: `otlp` or `none`.
pub const OTEL_LOGS_EXPORTER: &str = "OTEL_LOGS_EXPORTER";
/// `OTEL_METRICS_EXPORTER`: `otlp`, `prometheus` (pull only) or `none`.
pub const OTEL_METRICS_EXPORTER: &str = "OTEL_METRICS_EXPORTER";
/// `OTEL_TRACES_SAMPLER`: `always_on`, `always_off`, `traceidratio`, `parentbased_always_on`,
/// `parentbased_always_off`, `parentbased_traceidratio`.
pub const OTEL_TRACES_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
/// `OTEL_TRACES_SAMPLER_ARG`: the ratio for the `*traceidratio` samplers, within `0..=1`.
pub const OTEL_TRACES_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
/// `OTEL_PROPAGATORS`: comma-separated `tracecontext`, `baggage`, `none`.
pub const OTEL_PROPAGATORS: &str = "OTEL_PROPAGATORS";
/// `OTEL_METRIC_EXPORT_INTERVAL`: OTLP metric push interval in milliseconds.
pub const OTEL_METRIC_EXPORT_INTERVAL: &str = "OTEL_METRIC_EXPORT_INTERVAL";
/// `OTEL_METRIC_EXPORT_TIMEOUT`: the longest one OTLP metric push may take, in milliseconds
/// (bounds the exporter's timeout).
pub const OTEL_METRIC_EXPORT_TIMEOUT: &str = "OTEL_METRIC_EXPORT_TIMEOUT";
/// `OTEL_ATTRIBUTE_COUNT_LIMIT`: attributes per span when `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`
/// is not set.
pub const OTEL_ATTRIBUTE_COUNT_LIMIT: &str = "OTEL_ATTRIBUTE_COUNT_LIMIT";
/// `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`: attributes kept per span (128).
pub const OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT: &str = "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT";
/// `OTEL_SPAN_EVENT_COUNT_LIMIT`: events kept per span (128).
pub const OTEL_SPAN_EVENT_COUNT_LIMIT: &str = "OTEL_SPAN_EVENT_COUNT_LIMIT";
/// `OTEL_SPAN_LINK_COUNT_LIMIT`: links kept per span (128).
pub const OTEL_SPAN_LINK_COUNT_LIMIT: &str = "OTEL_SPAN_LINK_COUNT_LIMIT";
/// `OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT`: attributes kept per span event (128).
pub const OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT: &str = "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT";
/// `OTEL_LINK_ATTRIBUTE_COUNT_LIMIT`: attributes kept per span link (128).
pub const OTEL_LINK_ATTRIBUTE_COUNT_LIMIT: &str = "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT";
/// `OTEL_BSP_SCHEDULE_DELAY`: longest wait of a span before its batch goes out (ms).
pub const OTEL_BSP_SCHEDULE_DELAY: &str = "OTEL_BSP_SCHEDULE_DELAY";
/// `OTEL_BSP_EXPORT_TIMEOUT`: the longest one span export may take (ms; bounds the exporter's
/// timeout).
pub const OTEL_BSP_EXPORT_TIMEOUT: &str = "OTEL_BSP_EXPORT_TIMEOUT";
/// `OTEL_BSP_MAX_QUEUE_SIZE`: spans held for export; beyond it they are dropped and counted.
pub const OTEL_BSP_MAX_QUEUE_SIZE: &str = "OTEL_BSP_MAX_QUEUE_SIZE";
/// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`: spans per export request, at most the queue size.
pub const OTEL_BSP_MAX_EXPORT_BATCH_SIZE: &str = "OTEL_BSP_MAX_EXPORT_BATCH_SIZE";
/// `OTEL_BLRP_SCHEDULE_DELAY`: longest wait of a log record before its batch goes out (ms).
pub const OTEL_BLRP_SCHEDULE_DELAY: &str = "OTEL_BLRP_SCHEDULE_DELAY";
/// `OTEL_BLRP_EXPORT_TIMEOUT`: the longest one log export may take (ms; bounds the exporter's
/// timeout).
pub const OTEL_BLRP_EXPORT_TIMEOUT: &str = "OTEL_BLRP_EXPORT_TIMEOUT";
/// `OTEL_BLRP_MAX_QUEUE_SIZE`: log records held for export; beyond it they are dropped and
/// counted.
pub const OTEL_BLRP_MAX_QUEUE_SIZE: &str = "OTEL_BLRP_MAX_QUEUE_SIZE";
/// `OTEL_BLRP_MAX_EXPORT_BATCH_SIZE`: log records per export request, at most the queue size.
pub const OTEL_BLRP_MAX_EXPORT_BATCH_SIZE: &str = "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE";
/// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`: only `cumulative` (what is pushed);
/// `delta` and `lowmemory` are refused when metrics are pushed (from the environment: ignored
/// with a warning; not read when metrics are not pushed).
pub const OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: &str =
    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE";
/// `OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION`: only
/// `explicit_bucket_histogram`; `base2_exponential_bucket_histogram` is refused when metrics
/// are pushed (from the environment: ignored with a warning).
pub const OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION: &str =
    "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION";
/// `RUST_LOG`: the log filter, in `tracing-subscriber` `EnvFilter` syntax.
pub const RUST_LOG: &str = "RUST_LOG";
/// `AXI_LOG_FORMAT`: `json`, `pretty` or `compact`.
pub const AXI_LOG_FORMAT: &str = "AXI_LOG_FORMAT";
/// `AXI_LOG_FILE`: write logs to this file, rotated daily, instead of standard output.
pub const AXI_LOG_FILE: &str = "AXI_LOG_FILE";

/// Default OTLP/HTTP endpoint, used when an exporter is selected explicitly without one.
pub const DEFAULT_HTTP_ENDPOINT: &str = "http://localhost:4318";
/// Default OTLP/gRPC endpoint, used when an exporter is selected explicitly without one.
pub const DEFAULT_GRPC_ENDPOINT: &str = "http://localhost:4317";
/// Default export timeout (the OpenTelemetry default).
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default OTLP metric push interval (the OpenTelemetry default).
pub const DEFAULT_METRIC_EXPORT_INTERVAL: Duration = Duration::from_secs(60);
/// Default log filter when neither code nor `RUST_LOG` sets one.
pub const DEFAULT_LOG_FILTER: &str = "info";

/// Where environment variables are read from.
///
/// [`Env::process`] (the default) reads the process environment. Tests and applications that
/// want no environment influence use [`Env::empty`] or a fixed map with [`Env::from_pairs`], so
/// nothing has to mutate the (process-global, `unsafe` to change) environment.
#[derive(Clone, Default)]
pub struct Env {
    fixed: Option<BTreeMap<String, String>>,
    /// Variables read as unset: their values could not be used (see [`resolve`]).
    ignored: Vec<&'static str>,
}

/// Shows a fixed environment with the values that may hold credentials (`*_HEADERS`, and the
/// user and password of `*_ENDPOINT` URLs) hidden.
impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.fixed {
            None => f.write_str("Env::process()"),
            Some(map) => f
                .debug_map()
                .entries(map.iter().map(|(k, v)| {
                    let shown = if k.ends_with("_HEADERS") {
                        "***".to_owned()
                    } else if k.ends_with("_ENDPOINT") {
                        redact_userinfo(v)
                    } else {
                        v.clone()
                    };
                    (k, shown)
                }))
                .finish(),
        }
    }
}

impl Env {
    /// Reads the process environment. This is the default.
    pub fn process() -> Self {
        Self::default()
    }

    /// An environment with no variables set.
    pub fn empty() -> Self {
        Self {
            fixed: Some(BTreeMap::new()),
            ignored: Vec::new(),
        }
    }

    /// A fixed set of variables; nothing is read from the process.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            fixed: Some(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
            ignored: Vec::new(),
        }
    }

    /// The value of `name`, with empty values treated as unset. A value that is not UTF-8 is
    /// read with U+FFFD for its invalid bytes (so a parse error shows it, naming the
    /// variable), not taken for unset.
    pub fn get(&self, name: &str) -> Option<String> {
        if self.ignored.contains(&name) {
            return None;
        }
        let value = match &self.fixed {
            Some(map) => map.get(name).cloned(),
            None => std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()),
        }?;
        let trimmed = value.trim();
        if trimmed.is_empty() {
            None
        } else {
            Some(trimmed.to_owned())
        }
    }
}

/// An OTLP wire protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP over gRPC (port 4317 by convention).
    Grpc,
    /// OTLP over HTTP with protobuf bodies (port 4318 by convention). The default.
    HttpProtobuf,
}

impl Protocol {
    fn parse(value: &str, setting: Source) -> Result<Self, ConfigError> {
        match value.to_ascii_lowercase().as_str() {
            "grpc" => Ok(Protocol::Grpc),
            "http/protobuf" => Ok(Protocol::HttpProtobuf),
            "http/json" => Err(ConfigError::new(
                setting,
                value,
                "http/json is not supported; use grpc or http/protobuf",
            )),
            _ => Err(ConfigError::new(
                setting,
                value,
                "unknown OTLP protocol; expected grpc or http/protobuf",
            )),
        }
    }
}

impl Protocol {
    /// Refuses a protocol this build cannot speak: gRPC needs the `otlp-grpc` feature.
    fn available(self, setting: Source) -> Result<(), ConfigError> {
        self.available_with(cfg!(feature = "otlp-grpc"), setting)
    }

    fn available_with(self, grpc_built: bool, setting: Source) -> Result<(), ConfigError> {
        if self == Protocol::Grpc && !grpc_built {
            return Err(ConfigError::new(
                setting,
                "grpc",
                "OTLP over gRPC is not in this build (axi-obs-core's `otlp-grpc` feature is \
                 off); use http/protobuf",
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        })
    }
}

/// One of the three OpenTelemetry signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Log records.
    Logs,
    /// Metric points.
    Metrics,
}

impl Signal {
    /// The lower-case name used in URLs, env var names and self-telemetry labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }

    fn env(self) -> SignalEnv {
        match self {
            Signal::Traces => SignalEnv {
                endpoint: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
                protocol: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
                headers: OTEL_EXPORTER_OTLP_TRACES_HEADERS,
                timeout: OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
                compression: OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
                exporter: OTEL_TRACES_EXPORTER,
            },
            Signal::Logs => SignalEnv {
                endpoint: OTEL_EXPORTER_OTLP_LOGS_ENDPOINT,
                protocol: OTEL_EXPORTER_OTLP_LOGS_PROTOCOL,
                headers: OTEL_EXPORTER_OTLP_LOGS_HEADERS,
                timeout: OTEL_EXPORTER_OTLP_LOGS_TIMEOUT,
                compression: OTEL_EXPORTER_OTLP_LOGS_COMPRESSION,
                exporter: OTEL_LOGS_EXPORTER,
            },
            Signal::Metrics => SignalEnv {
                endpoint: OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
                protocol: OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
                headers: OTEL_EXPORTER_OTLP_METRICS_HEADERS,
                timeout: OTEL_EXPORTER_OTLP_METRICS_TIMEOUT,
                compression: OTEL_EXPORTER_OTLP_METRICS_COMPRESSION,
                exporter: OTEL_METRICS_EXPORTER,
            },
        }
    }
}

struct SignalEnv {
    endpoint: &'static str,
    protocol: &'static str,
    headers: &'static str,
    timeout: &'static str,
    compression: &'static str,
    exporter: &'static str,
}

/// How log lines are written locally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line with ECS field names (`@timestamp`, `log.level`, `message`,
    /// `trace.id`, ...). The default when standard output is not a terminal.
    Json,
    /// Multi-line, human-oriented output.
    Pretty,
    /// One line per event, human-oriented. The default on a terminal.
    Compact,
}

impl LogFormat {
    fn parse(value: &str, setting: Source) -> Result<Self, ConfigError> {
        match value.to_ascii_lowercase().as_str() {
            "json" => Ok(LogFormat::Json),
            "pretty" => Ok(LogFormat::Pretty),
            "compact" => Ok(LogFormat::Compact),
            _ => Err(ConfigError::new(
                setting,
                value,
                "unknown log format; expected json, pretty or compact",
            )),
        }
    }
}

/// How often a log file is rotated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// A new file every hour.
    Hourly,
    /// A new file every day. The default.
    Daily,
    /// Never rotate (leave rotation to logrotate and reopen-free appends).
    Never,
}

/// A rotating log file.
///
/// The file name `/var/log/api/api.log` becomes `/var/log/api/api.2026-11-25.log` with daily
/// rotation; `keep` old files are kept (default 7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFile {
    pub(crate) path: PathBuf,
    pub(crate) rotation: Rotation,
    pub(crate) keep: usize,
}

impl LogFile {
    /// A daily-rotated file at `path`, keeping 7 old files.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            rotation: Rotation::Daily,
            keep: 7,
        }
    }

    /// Sets the rotation. Defaults to [`Rotation::Daily`].
    pub fn rotation(mut self, rotation: Rotation) -> Self {
        self.rotation = rotation;
        self
    }

    /// Sets how many rotated files are kept. Defaults to 7.
    pub fn keep(mut self, files: usize) -> Self {
        self.keep = files.max(1);
        self
    }
}

/// A custom log destination set with `TelemetryBuilder::log_writer`; taken once at build.
#[derive(Clone)]
pub(crate) struct WriterSlot(
    pub(crate) std::sync::Arc<std::sync::Mutex<Option<Box<dyn std::io::Write + Send>>>>,
);

impl fmt::Debug for WriterSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WriterSlot")
    }
}

/// Which root sampler decides whether a new trace is recorded.
#[derive(Clone, Debug, PartialEq)]
pub enum Sampler {
    /// Record every trace.
    AlwaysOn,
    /// Record no trace.
    AlwaysOff,
    /// Record this fraction of traces, by trace id, within `0..=1`.
    TraceIdRatio(f64),
    /// Follow the caller's sampling decision when there is a parent; otherwise use the inner
    /// sampler. `ParentBased(AlwaysOn)` is the default.
    ParentBased(Box<Sampler>),
}

impl Sampler {
    fn parse(name: &str, arg: Option<&str>) -> Result<Self, ConfigError> {
        let ratio = || -> Result<f64, ConfigError> {
            match arg {
                None => Ok(1.0),
                Some(a) => {
                    let r: f64 = a.parse().map_err(|_| {
                        ConfigError::new(
                            Source::Env(OTEL_TRACES_SAMPLER_ARG),
                            a,
                            "not a number; expected a sampling ratio within 0..=1",
                        )
                    })?;
                    if (0.0..=1.0).contains(&r) {
                        Ok(r)
                    } else {
                        Err(ConfigError::new(
                            Source::Env(OTEL_TRACES_SAMPLER_ARG),
                            a,
                            "the sampling ratio must be within 0..=1",
                        ))
                    }
                }
            }
        };
        Ok(match name.to_ascii_lowercase().as_str() {
            "always_on" => Sampler::AlwaysOn,
            "always_off" => Sampler::AlwaysOff,
            "traceidratio" => Sampler::TraceIdRatio(ratio()?),
            "parentbased_always_on" => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            "parentbased_always_off" => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            "parentbased_traceidratio" => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatio(ratio()?)))
            }
            other => {
                return Err(ConfigError::new(
                    Source::Env(OTEL_TRACES_SAMPLER),
                    other,
                    "unsupported sampler; expected always_on, always_off, traceidratio, \
                     parentbased_always_on, parentbased_always_off or parentbased_traceidratio",
                ));
            }
        })
    }

    pub(crate) fn validate(&self, setting: Source) -> Result<(), ConfigError> {
        match self {
            Sampler::TraceIdRatio(r) if !(0.0..=1.0).contains(r) => Err(ConfigError::new(
                setting,
                r.to_string(),
                "the sampling ratio must be within 0..=1",
            )),
            Sampler::ParentBased(inner) => inner.validate(setting),
            _ => Ok(()),
        }
    }
}

/// A W3C context propagator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagator {
    /// W3C `traceparent` / `tracestate`.
    TraceContext,
    /// W3C `baggage`.
    Baggage,
}

/// Whether a signal is exported over OTLP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exporter {
    /// Export over OTLP (to the default endpoint if none is configured).
    Otlp,
    /// Do not export this signal.
    None,
}

/// OTLP settings for one signal (or for all of them), as set in code. `Debug` hides the
/// credentials, as [`OtlpTarget`]'s does.
#[derive(Clone, Default)]
pub(crate) struct OtlpSettings {
    pub(crate) endpoint: Option<String>,
    pub(crate) protocol: Option<Protocol>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) compression: Option<Compression>,
    pub(crate) exporter: Option<Exporter>,
}

impl std::fmt::Debug for OtlpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpSettings")
            .field("endpoint", &self.endpoint.as_deref().map(redact_userinfo))
            .field("protocol", &self.protocol)
            .field("headers", &HeaderNames(&self.headers))
            .field("timeout", &self.timeout)
            .field("compression", &self.compression)
            .field("exporter", &self.exporter)
            .finish()
    }
}

/// Everything set in code through the builder. Resolved against the environment by [`resolve`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Settings {
    pub(crate) env: Env,
    pub(crate) sdk_disabled: Option<bool>,
    pub(crate) service_name: Option<String>,
    pub(crate) default_service_name: Option<String>,
    pub(crate) service_version: Option<String>,
    pub(crate) service_namespace: Option<String>,
    pub(crate) service_instance_id: Option<String>,
    pub(crate) environment: Option<String>,
    pub(crate) resource_attributes: Vec<(String, String)>,
    pub(crate) vcs_revision: Option<String>,
    pub(crate) log_format: Option<LogFormat>,
    pub(crate) log_filter: Option<String>,
    pub(crate) default_log_filter: Option<String>,
    pub(crate) log_file: Option<LogFile>,
    pub(crate) log_buffer_lines: Option<usize>,
    pub(crate) log_writer: Option<WriterSlot>,
    pub(crate) otlp: OtlpSettings,
    pub(crate) traces: OtlpSettings,
    pub(crate) logs: OtlpSettings,
    pub(crate) metrics: OtlpSettings,
    pub(crate) sampler: Option<Sampler>,
    pub(crate) propagators: Option<Vec<Propagator>>,
    pub(crate) metric_export_interval: Option<Duration>,
    pub(crate) series_cap: Option<usize>,
    pub(crate) process_metrics: Option<bool>,
    pub(crate) histogram_buckets: Vec<(String, Vec<f64>)>,
    pub(crate) queue_size: Option<usize>,
    pub(crate) shutdown_timeout: Option<Duration>,
}

/// A resolved, validated OTLP destination for one signal. Its `Debug` shows the endpoint
/// without credentials and the header names without their values.
#[derive(Clone, PartialEq)]
pub struct OtlpTarget {
    /// The full URL: for HTTP including the `/v1/<signal>` path, for gRPC the server address.
    pub endpoint: String,
    /// The setting the endpoint came from (a builder method or a variable), which an error
    /// about it names.
    pub endpoint_source: Source,
    /// The wire protocol.
    pub protocol: Protocol,
    /// Headers (gRPC metadata) sent with every export, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Per-export timeout.
    pub timeout: Duration,
    /// How request bodies are compressed.
    pub compression: Compression,
}

impl std::fmt::Debug for OtlpTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpTarget")
            .field("endpoint", &redact_userinfo(&self.endpoint))
            .field("protocol", &self.protocol)
            .field("headers", &HeaderNames(&self.headers))
            .field("timeout", &self.timeout)
            .field("compression", &self.compression)
            .finish()
    }
}

/// Headers as `Debug` shows them: names only, values (tokens, keys) hidden.
struct HeaderNames<'a>(&'a [(String, String)]);

impl std::fmt::Debug for HeaderNames<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, _)| (k, "***")))
            .finish()
    }
}

/// Compression of OTLP request bodies (`OTEL_EXPORTER_OTLP_COMPRESSION`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// Bodies as they are. The default.
    #[default]
    None,
    /// gzip: `Content-Encoding: gzip` over HTTP, `grpc-encoding: gzip` over gRPC. Collectors
    /// accept it; it saves most of the bytes of span and log batches on a slow link.
    Gzip,
}

impl Compression {
    fn parse(value: &str, setting: Source) -> Result<Self, ConfigError> {
        match value.to_ascii_lowercase().as_str() {
            "gzip" => Ok(Compression::Gzip),
            "none" => Ok(Compression::None),
            _ => Err(ConfigError::new(setting, value, "expected gzip or none")),
        }
    }
}

/// The configuration after applying code, environment and defaults.
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub(crate) sdk_disabled: bool,
    pub(crate) resource: Vec<(String, String)>,
    pub(crate) vcs_revision: Option<String>,
    pub(crate) log_format: Option<LogFormat>,
    pub(crate) log_filter: String,
    pub(crate) log_file: Option<LogFile>,
    pub(crate) log_buffer_lines: usize,
    pub(crate) log_writer: Option<WriterSlot>,
    pub(crate) traces: Option<OtlpTarget>,
    pub(crate) logs: Option<OtlpTarget>,
    pub(crate) metrics: Option<OtlpTarget>,
    pub(crate) sampler: Sampler,
    /// True when the sampler came from code or `OTEL_TRACES_SAMPLER`, not the default.
    pub(crate) sampler_explicit: bool,
    pub(crate) propagators: Vec<Propagator>,
    pub(crate) metric_export_interval: Duration,
    pub(crate) series_cap: usize,
    pub(crate) process_metrics: bool,
    pub(crate) histogram_buckets: Vec<(String, Vec<f64>)>,
    pub(crate) span_batch: BatchConfig,
    pub(crate) log_batch: BatchConfig,
    pub(crate) span_limits: SpanLimits,
    pub(crate) shutdown_timeout: Duration,
    /// The environment variables ignored because their values could not be used.
    pub(crate) env_warnings: Vec<ConfigError>,
}

/// What one span keeps (`OTEL_SPAN_*_COUNT_LIMIT`, `OTEL_{EVENT,LINK}_ATTRIBUTE_COUNT_LIMIT`);
/// beyond it the SDK drops and counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SpanLimits {
    pub(crate) attributes: u32,
    pub(crate) events: u32,
    pub(crate) links: u32,
    pub(crate) attributes_per_event: u32,
    pub(crate) attributes_per_link: u32,
}

/// The span limits from `env`: 128 each, as the specification's defaults, read here (not by
/// the SDK from the process's environment, which would bypass [`Env`] and ignore bad values).
fn resolve_span_limits(env: &Env) -> Result<SpanLimits, ConfigError> {
    let limit = |names: &[&'static str]| -> Result<u32, ConfigError> {
        for name in names {
            if let Some(v) = env.get(name) {
                return v.trim().parse::<u32>().map_err(|_| {
                    ConfigError::new(Source::Env(name), &v, "expected a whole number (0 or more)")
                });
            }
        }
        Ok(128)
    };
    Ok(SpanLimits {
        attributes: limit(&[OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT, OTEL_ATTRIBUTE_COUNT_LIMIT])?,
        events: limit(&[OTEL_SPAN_EVENT_COUNT_LIMIT])?,
        links: limit(&[OTEL_SPAN_LINK_COUNT_LIMIT])?,
        attributes_per_event: limit(&[
            OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT,
            OTEL_ATTRIBUTE_COUNT_LIMIT,
        ])?,
        attributes_per_link: limit(&[OTEL_LINK_ATTRIBUTE_COUNT_LIMIT, OTEL_ATTRIBUTE_COUNT_LIMIT])?,
    })
}

/// How a batching export queue behaves (the batch span and log record processors).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct BatchConfig {
    /// Queue bound; when full, new items are dropped.
    pub(crate) max_queue: usize,
    /// Items per export request.
    pub(crate) max_batch: usize,
    /// Longest time an item waits before its batch is sent.
    pub(crate) delay: Duration,
}

/// The `OTEL_BSP_*` or `OTEL_BLRP_*` variables of one batch processor and its defaults.
struct BatchVars {
    delay: &'static str,
    export_timeout: &'static str,
    max_queue: &'static str,
    max_batch: &'static str,
    default_delay: Duration,
}

const SPAN_BATCH_VARS: BatchVars = BatchVars {
    delay: OTEL_BSP_SCHEDULE_DELAY,
    export_timeout: OTEL_BSP_EXPORT_TIMEOUT,
    max_queue: OTEL_BSP_MAX_QUEUE_SIZE,
    max_batch: OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
    default_delay: Duration::from_secs(5),
};

const LOG_BATCH_VARS: BatchVars = BatchVars {
    delay: OTEL_BLRP_SCHEDULE_DELAY,
    export_timeout: OTEL_BLRP_EXPORT_TIMEOUT,
    max_queue: OTEL_BLRP_MAX_QUEUE_SIZE,
    max_batch: OTEL_BLRP_MAX_EXPORT_BATCH_SIZE,
    default_delay: Duration::from_secs(1),
};

/// Default items per export request (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`'s default).
pub const DEFAULT_MAX_EXPORT_BATCH: usize = 512;

/// One batch processor's settings: the queue bound from code (`export_queue_size`, for both
/// processors) or its variable, the batch size and delay from the variables, each checked.
fn resolve_batch(
    s: &Settings,
    vars: &BatchVars,
    exported: bool,
) -> Result<BatchConfig, ConfigError> {
    // The variables of a signal not exported are not read: set for every service of a host,
    // they must not make noise in one that does not export it.
    let empty = Env::empty();
    let env = if exported { &s.env } else { &empty };
    let max_queue = match (s.queue_size, env.get(vars.max_queue)) {
        (Some(n), _) => (n, Source::Code("export_queue_size")),
        (None, Some(v)) => (
            parse_count(&v, Source::Env(vars.max_queue))?,
            Source::Env(vars.max_queue),
        ),
        (None, None) => (DEFAULT_QUEUE_SIZE, Source::Code("export_queue_size")),
    };
    if max_queue.0 > MAX_QUEUE_SIZE {
        return Err(ConfigError::new(
            max_queue.1,
            max_queue.0.to_string(),
            format!("must be at most {MAX_QUEUE_SIZE}"),
        ));
    }
    let max_queue = max_queue.0.max(1);
    let max_batch = match env.get(vars.max_batch) {
        Some(v) => {
            // At most the queue, as the SDKs clamp it (the queue may be set in code, the
            // batch size for a whole host).
            parse_count(&v, Source::Env(vars.max_batch))?.min(max_queue)
        }
        None => DEFAULT_MAX_EXPORT_BATCH.min(max_queue),
    };
    let delay = match env.get(vars.delay) {
        Some(v) => parse_millis(&v, Source::Env(vars.delay))?,
        None => vars.default_delay,
    };
    Ok(BatchConfig {
        max_queue,
        max_batch,
        delay,
    })
}

/// A positive whole number (a count of items).
fn parse_count(value: &str, setting: Source) -> Result<usize, ConfigError> {
    match value.parse::<usize>() {
        Ok(0) | Err(_) => Err(ConfigError::new(
            setting,
            value,
            "expected a positive whole number",
        )),
        Ok(n) => Ok(n),
    }
}

/// Bounds `target`'s per-export timeout by the processor's export timeout variable `var`,
/// when set (the exporter cannot take longer than its processor allows).
fn bound_export_timeout(
    target: &mut Option<OtlpTarget>,
    env: &Env,
    var: &'static str,
) -> Result<(), ConfigError> {
    // Read only for a signal exported, as the batch variables.
    if let Some(t) = target
        && let Some(v) = env.get(var)
    {
        t.timeout = t.timeout.min(parse_millis(&v, Source::Env(var))?);
    }
    Ok(())
}

/// Checks a variable that has one supported value (`accepted`, case-insensitive): anything
/// else is refused with `why` (an error that [`resolve`] turns into a warning).
fn only_value(env: &Env, var: &'static str, accepted: &str, why: &str) -> Result<(), ConfigError> {
    match env.get(var) {
        Some(v) if !v.eq_ignore_ascii_case(accepted) => {
            Err(ConfigError::new(Source::Env(var), v, why.to_owned()))
        }
        _ => Ok(()),
    }
}

/// Default per-metric series cap (the OpenTelemetry SDK's cardinality limit).
pub const DEFAULT_SERIES_CAP: usize = 2000;
/// Default bound of each export queue (spans, log records), as `OTEL_BSP_MAX_QUEUE_SIZE`.
pub const DEFAULT_QUEUE_SIZE: usize = 2048;
/// Default bound of the local log writer's buffer, in lines.
pub const DEFAULT_LOG_BUFFER_LINES: usize = 65_536;
/// Default deadline for flushing and shutting down every provider.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves `s`, an environment variable whose value cannot be used taken as unset, as the
/// OpenTelemetry specification asks (an unknown or unsupported value, a malformed boolean,
/// number or list is ignored with a warning): a variable set for a whole host or injected by
/// an operator cannot stop a service from starting. Each variable ignored is in
/// [`Resolved::env_warnings`], with why. A value set in code that cannot be used is an error.
pub(crate) fn resolve(s: &Settings) -> Result<Resolved, ConfigError> {
    let mut s = std::borrow::Cow::Borrowed(s);
    let mut ignored = Vec::new();
    // Each round ignores one more variable, so this ends.
    loop {
        match resolve_strict(&s) {
            Ok(mut r) => {
                r.env_warnings = ignored;
                return Ok(r);
            }
            Err(e) => match e.setting {
                Source::Env(var) if s.env.get(var).is_some() => {
                    s.to_mut().env.ignored.push(var);
                    ignored.push(e);
                }
                _ => return Err(e),
            },
        }
    }
}

/// Resolves `s`; any value that cannot be used, set in code or in the environment, is an
/// error naming where it was set.
fn resolve_strict(s: &Settings) -> Result<Resolved, ConfigError> {
    let env = &s.env;
    let sdk_disabled = match s.sdk_disabled {
        Some(v) => v,
        None => match env.get(OTEL_SDK_DISABLED) {
            None => false,
            Some(v) => parse_bool(&v, Source::Env(OTEL_SDK_DISABLED))?,
        },
    };

    let resource = resolve_resource(s)?;

    let log_format = match s.log_format {
        Some(f) => Some(f),
        None => match env.get(AXI_LOG_FORMAT) {
            Some(v) => Some(LogFormat::parse(&v, Source::Env(AXI_LOG_FORMAT))?),
            None => None,
        },
    };
    let log_filter = match (&s.log_filter, env.get(RUST_LOG), &s.default_log_filter) {
        (Some(code), _, _) => validate_filter(code, Source::Code("log_filter"))?,
        (None, Some(envv), _) => validate_filter(&envv, Source::Env(RUST_LOG))?,
        (None, None, Some(default)) => {
            validate_filter(default, Source::Code("default_log_filter"))?
        }
        (None, None, None) => DEFAULT_LOG_FILTER.to_owned(),
    };
    let log_file = match &s.log_file {
        Some(f) => Some(f.clone()),
        None => match env.get(AXI_LOG_FILE) {
            // Read lossily (see `Env::get`): a path with replaced bytes is another file.
            Some(v) if v.contains('\u{FFFD}') => {
                return Err(ConfigError::new(
                    Source::Env(AXI_LOG_FILE),
                    &v,
                    "not valid UTF-8: give the path in UTF-8",
                ));
            }
            v => v.map(LogFile::new),
        },
    };

    let (mut traces, mut logs, mut metrics) = if sdk_disabled {
        (None, None, None)
    } else {
        (
            resolve_target(s, Signal::Traces)?,
            resolve_target(s, Signal::Logs)?,
            resolve_target(s, Signal::Metrics)?,
        )
    };

    let sampler_explicit = s.sampler.is_some() || env.get(OTEL_TRACES_SAMPLER).is_some();
    let sampler = match &s.sampler {
        Some(sampler) => {
            sampler.validate(Source::Code("sampler"))?;
            sampler.clone()
        }
        None => match env.get(OTEL_TRACES_SAMPLER) {
            Some(name) => Sampler::parse(&name, env.get(OTEL_TRACES_SAMPLER_ARG).as_deref())?,
            None => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        },
    };

    let propagators = match &s.propagators {
        Some(p) => p.clone(),
        None => match env.get(OTEL_PROPAGATORS) {
            Some(v) => parse_propagators(&v)?,
            None => vec![Propagator::TraceContext, Propagator::Baggage],
        },
    };

    let metric_export_interval = match s.metric_export_interval {
        Some(d) if d.is_zero() => {
            return Err(ConfigError::new(
                Source::Code("metric_export_interval"),
                "0s",
                "the interval must be positive",
            ));
        }
        Some(d) => at_most_a_year(d, Source::Code("metric_export_interval"))?,
        // Read only when metrics are pushed: a variable set for every service of a host (a
        // cluster's delta preference, say) must not stop one that only serves `/metrics`.
        None => match env
            .get(OTEL_METRIC_EXPORT_INTERVAL)
            .filter(|_| metrics.is_some())
        {
            Some(v) => parse_millis(&v, Source::Env(OTEL_METRIC_EXPORT_INTERVAL))?,
            None => DEFAULT_METRIC_EXPORT_INTERVAL,
        },
    };

    for (name, bounds) in &s.histogram_buckets {
        validate_buckets(name, bounds)?;
    }

    let span_batch = resolve_batch(s, &SPAN_BATCH_VARS, traces.is_some())?;
    let span_limits = resolve_span_limits(env)?;
    let log_batch = resolve_batch(s, &LOG_BATCH_VARS, logs.is_some())?;
    bound_export_timeout(&mut traces, env, SPAN_BATCH_VARS.export_timeout)?;
    bound_export_timeout(&mut logs, env, LOG_BATCH_VARS.export_timeout)?;
    bound_export_timeout(&mut metrics, env, OTEL_METRIC_EXPORT_TIMEOUT)?;
    if metrics.is_some() {
        only_value(
            env,
            OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE,
            "cumulative",
            "only cumulative temporality is exported (delta and lowmemory are not supported)",
        )?;
        only_value(
            env,
            OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION,
            "explicit_bucket_histogram",
            "only explicit bucket histograms are exported (exponential histograms are not supported)",
        )?;
    }

    Ok(Resolved {
        sdk_disabled,
        resource,
        vcs_revision: s.vcs_revision.clone(),
        log_format,
        log_filter,
        log_file,
        log_buffer_lines: s
            .log_buffer_lines
            .unwrap_or(DEFAULT_LOG_BUFFER_LINES)
            .max(1),
        log_writer: s.log_writer.clone(),
        traces,
        logs,
        metrics,
        sampler,
        sampler_explicit,
        propagators,
        metric_export_interval,
        series_cap: s.series_cap.unwrap_or(DEFAULT_SERIES_CAP).max(1),
        process_metrics: s.process_metrics.unwrap_or(true),
        histogram_buckets: s.histogram_buckets.clone(),
        span_batch,
        span_limits,
        log_batch,
        shutdown_timeout: at_most_a_year(
            s.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
            Source::Code("shutdown_timeout"),
        )?,
        env_warnings: Vec::new(),
    })
}

fn parse_bool(value: &str, setting: Source) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ConfigError::new(setting, value, "expected true or false")),
    }
}

/// The longest interval, timeout or deadline accepted: a year. Longer ones are errors, not
/// a panic where a deadline is computed from them.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// The largest export queue accepted (items per signal).
pub(crate) const MAX_QUEUE_SIZE: usize = 1 << 24;

/// `d` when it is at most [`MAX_DURATION`].
fn at_most_a_year(d: Duration, setting: Source) -> Result<Duration, ConfigError> {
    if d > MAX_DURATION {
        return Err(ConfigError::new(
            setting,
            format!("{d:?}"),
            "must be at most a year (365 days)",
        ));
    }
    Ok(d)
}

fn parse_millis(value: &str, setting: Source) -> Result<Duration, ConfigError> {
    match value.parse::<u64>() {
        Ok(0) => Err(ConfigError::new(
            setting,
            value,
            "must be a positive number of milliseconds",
        )),
        Ok(ms) => at_most_a_year(Duration::from_millis(ms), setting),
        Err(_) => Err(ConfigError::new(
            setting,
            value,
            "expected a whole number of milliseconds",
        )),
    }
}

fn validate_filter(filter: &str, setting: Source) -> Result<String, ConfigError> {
    tracing_subscriber::EnvFilter::builder()
        .parse(filter)
        .map_err(|e| ConfigError::new(setting, filter, e.to_string()))?;
    Ok(filter.to_owned())
}

pub(crate) fn validate_buckets(name: &str, bounds: &[f64]) -> Result<(), ConfigError> {
    let setting = Source::Code("histogram_buckets");
    if bounds.is_empty() {
        return Err(ConfigError::new(
            setting,
            name,
            "at least one bucket bound is needed",
        ));
    }
    if bounds.iter().any(|b| !b.is_finite()) {
        return Err(ConfigError::new(
            setting,
            format!("{name}: {bounds:?}"),
            "bucket bounds must be finite (+Inf is implicit)",
        ));
    }
    if bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Err(ConfigError::new(
            setting,
            format!("{name}: {bounds:?}"),
            "bucket bounds must be strictly increasing",
        ));
    }
    Ok(())
}

fn parse_propagators(value: &str) -> Result<Vec<Propagator>, ConfigError> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.to_ascii_lowercase().as_str() {
            "tracecontext" => out.push(Propagator::TraceContext),
            "baggage" => out.push(Propagator::Baggage),
            "none" => {}
            other => {
                return Err(ConfigError::new(
                    Source::Env(OTEL_PROPAGATORS),
                    value,
                    format!(
                        "unsupported propagator {other:?}; expected tracecontext, baggage or none"
                    ),
                ));
            }
        }
    }
    // Each once, in order of first mention (`Vec::dedup` drops adjacent repeats only).
    let mut seen = Vec::with_capacity(out.len());
    for p in out {
        if !seen.contains(&p) {
            seen.push(p);
        }
    }
    Ok(seen)
}

/// Parses `key=value,key=value` lists (`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`),
/// percent-decoding values. With `secret` (headers carry API keys and tokens), errors show
/// keys and positions only, never values.
pub(crate) fn parse_key_values(
    value: &str,
    setting: Source,
    secret: bool,
) -> Result<Vec<(String, String)>, ConfigError> {
    let shown = |v: &str| -> String {
        if secret {
            v.split(',')
                .map(|item| match item.split_once('=') {
                    // A key that is not a header name may be the credential itself, its
                    // `Name=` forgotten (`Basic dXNlcjpw...==`): not shown either.
                    Some((k, _)) if http::HeaderName::from_bytes(k.trim().as_bytes()).is_ok() => {
                        format!("{}=<redacted>", k.trim())
                    }
                    _ => "<redacted>".to_owned(),
                })
                .collect::<Vec<_>>()
                .join(",")
        } else {
            v.to_owned()
        }
    };
    let mut out = Vec::new();
    for (index, item) in value.split(',').enumerate() {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let which = if secret {
            format!("item {}", index + 1)
        } else {
            format!("item {item:?}")
        };
        let Some((k, v)) = item.split_once('=') else {
            return Err(ConfigError::new(
                setting,
                shown(value),
                format!("{which} is not of the form key=value"),
            ));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(ConfigError::new(
                setting,
                shown(value),
                format!("{which} has an empty key"),
            ));
        }
        // Keys are percent-encoded as values are (`,` and `=` in either must be).
        let invalid = || {
            ConfigError::new(
                setting.clone(),
                shown(value),
                format!("{which} (key {k:?}) has an invalid percent-encoding"),
            )
        };
        let key = percent_decode(k).ok_or_else(invalid)?;
        let v = percent_decode(v.trim()).ok_or_else(invalid)?;
        out.push((key, v));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            // Two hex digits exactly (`from_str_radix` would take a sign: `%+1`).
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn resolve_resource(s: &Settings) -> Result<Vec<(String, String)>, ConfigError> {
    // Lowest precedence first; later inserts win.
    let mut attrs: BTreeMap<String, String> = BTreeMap::new();
    attrs.insert("service.name".into(), default_service_name());
    attrs.insert("telemetry.sdk.name".into(), "opentelemetry".into());
    attrs.insert("telemetry.sdk.language".into(), "rust".into());
    attrs.insert(
        "telemetry.sdk.version".into(),
        opentelemetry_sdk_version().into(),
    );
    attrs.insert("telemetry.distro.name".into(), "axi-obs".into());
    attrs.insert(
        "telemetry.distro.version".into(),
        env!("CARGO_PKG_VERSION").into(),
    );
    if let Some(host) = host_name() {
        attrs.insert("host.name".into(), host);
    }
    if let Some(name) = s
        .default_service_name
        .as_ref()
        .filter(|n| !n.trim().is_empty())
    {
        attrs.insert("service.name".into(), name.clone());
    }
    if let Some(v) = s.env.get(OTEL_RESOURCE_ATTRIBUTES) {
        for (k, v) in parse_key_values(&v, Source::Env(OTEL_RESOURCE_ATTRIBUTES), false)? {
            attrs.insert(k, v);
        }
    }
    if let Some(name) = s.env.get(OTEL_SERVICE_NAME) {
        attrs.insert("service.name".into(), name);
    }
    let code = [
        ("service.name", &s.service_name, "service_name"),
        ("service.version", &s.service_version, "service_version"),
        (
            "service.namespace",
            &s.service_namespace,
            "service_namespace",
        ),
        (
            "service.instance.id",
            &s.service_instance_id,
            "service_instance_id",
        ),
        ("deployment.environment.name", &s.environment, "environment"),
    ];
    for (key, value, method) in code {
        if let Some(v) = value {
            if v.trim().is_empty() {
                return Err(ConfigError::new(
                    Source::Code(method),
                    v,
                    "must not be empty",
                ));
            }
            attrs.insert(key.into(), v.clone());
        }
    }
    for (k, v) in &s.resource_attributes {
        if k.trim().is_empty() {
            return Err(ConfigError::new(
                Source::Code("resource_attribute"),
                format!("{k}={v}"),
                "the key must not be empty",
            ));
        }
        attrs.insert(k.clone(), v.clone());
    }
    Ok(attrs.into_iter().collect())
}

fn opentelemetry_sdk_version() -> &'static str {
    // The SDK version this crate is built against (workspace pins one).
    "0.33.1"
}

fn default_service_name() -> String {
    // As the specification says: `unknown_service:` followed by the executable name.
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()));
    match exe {
        Some(e) => format!("unknown_service:{e}"),
        None => "unknown_service".to_owned(),
    }
}

/// This machine's name, as the kernel has it (`host.name`); `None` when unknown.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn resolve_target(s: &Settings, signal: Signal) -> Result<Option<OtlpTarget>, ConfigError> {
    let env = &s.env;
    let names = signal.env();
    let code = match signal {
        Signal::Traces => &s.traces,
        Signal::Logs => &s.logs,
        Signal::Metrics => &s.metrics,
    };
    let method = |m: &'static str| Source::Code(m);

    // Exporter selection: code (signal, then generic) > signal env.
    let exporter = match code.exporter.or(s.otlp.exporter) {
        Some(e) => Some(e),
        None => match env.get(names.exporter) {
            None => None,
            Some(v) => Some(parse_exporter(&v, signal, names.exporter)?),
        },
    };
    if exporter == Some(Exporter::None) {
        return Ok(None);
    }

    let (protocol, protocol_source) = match (code.protocol, s.otlp.protocol) {
        (Some(p), _) => (
            p,
            method(match signal {
                Signal::Traces => "traces_protocol",
                Signal::Logs => "logs_protocol",
                Signal::Metrics => "metrics_protocol",
            }),
        ),
        (None, Some(p)) => (p, method("otlp_protocol")),
        (None, None) => match env.get(names.protocol) {
            Some(v) => {
                let source = Source::Env(names.protocol);
                (Protocol::parse(&v, source.clone())?, source)
            }
            None => match env.get(OTEL_EXPORTER_OTLP_PROTOCOL) {
                Some(v) => {
                    let source = Source::Env(OTEL_EXPORTER_OTLP_PROTOCOL);
                    (Protocol::parse(&v, source.clone())?, source)
                }
                None => (Protocol::HttpProtobuf, method("otlp_protocol")),
            },
        },
    };

    // Endpoint: a signal endpoint (code or env) is used as given; a generic one gets the
    // signal path appended for HTTP.
    let signal_method = match signal {
        Signal::Traces => "traces_endpoint",
        Signal::Logs => "logs_endpoint",
        Signal::Metrics => "metrics_endpoint",
    };
    let endpoint = if let Some(e) = &code.endpoint {
        let source = method(signal_method);
        Some((validate_endpoint(e, source.clone())?, source))
    } else if let Some(e) = &s.otlp.endpoint {
        let source = method("otlp_endpoint");
        let e = validate_endpoint(e, source.clone())?;
        Some((join_endpoint(&e, protocol, signal), source))
    } else if let Some(e) = env.get(names.endpoint) {
        let source = Source::Env(names.endpoint);
        Some((validate_endpoint(&e, source.clone())?, source))
    } else if let Some(e) = env.get(OTEL_EXPORTER_OTLP_ENDPOINT) {
        let source = Source::Env(OTEL_EXPORTER_OTLP_ENDPOINT);
        let e = validate_endpoint(&e, source.clone())?;
        Some((join_endpoint(&e, protocol, signal), source))
    } else if exporter == Some(Exporter::Otlp) {
        let default = match protocol {
            Protocol::Grpc => DEFAULT_GRPC_ENDPOINT,
            Protocol::HttpProtobuf => DEFAULT_HTTP_ENDPOINT,
        };
        // The default: the setting that would change it is the signal's endpoint variable.
        Some((
            join_endpoint(default, protocol, signal),
            Source::Env(names.endpoint),
        ))
    } else {
        None
    };
    let Some((endpoint, endpoint_source)) = endpoint else {
        // No endpoint anywhere and no explicit exporter: nothing dials out.
        return Ok(None);
    };
    // Over gRPC the user and password of a URL are not sent as credentials: tonic would put
    // them in HTTP/2's `:authority`, in clear text, where proxies and collectors log it.
    if protocol == Protocol::Grpc
        && endpoint.split_once("://").is_some_and(|(_, rest)| {
            rest.split(['/', '?', '#'])
                .next()
                .is_some_and(|a| a.contains('@'))
        })
    {
        return Err(ConfigError::new(
            endpoint_source,
            redact_userinfo(&endpoint),
            "a user and password in the URL are not sent over gRPC; give the credential as a header \
             (OTEL_EXPORTER_OTLP_HEADERS=authorization=Basic%20...)",
        ));
    }
    protocol.available(protocol_source)?;

    // Headers: the signal's variable replaces the generic one (as every OTLP option: a
    // credential meant for the generic endpoint must not follow traces to another backend);
    // code-set headers then merge per key on top (signal over generic).
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut add = |pairs: Vec<(String, String)>, setting: Source| -> Result<(), ConfigError> {
        for (k, v) in pairs {
            let name = k.to_ascii_lowercase();
            // Not shown: a key that is no header name may be a credential whose `Name=` was
            // forgotten (`Basic dXNlcjpw...==` splits at its padding).
            http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                ConfigError::new(
                    setting.clone(),
                    "<redacted>",
                    "a key is not a valid header name (`Name=value` pairs, comma-separated)",
                )
            })?;
            http::HeaderValue::from_str(&v).map_err(|_| {
                ConfigError::new(
                    setting.clone(),
                    format!("{k}=<redacted>"),
                    "the header value contains characters not allowed in a header",
                )
            })?;
            headers.insert(name, v);
        }
        Ok(())
    };
    let env_headers = [names.headers, OTEL_EXPORTER_OTLP_HEADERS]
        .into_iter()
        .find_map(|name| env.get(name).map(|v| (name, v)));
    if let Some((name, v)) = env_headers {
        add(
            parse_key_values(&v, Source::Env(name), true)?,
            Source::Env(name),
        )?;
    }
    add(s.otlp.headers.clone(), method("otlp_header"))?;
    add(code.headers.clone(), method("header"))?;

    let timeout = match code.timeout.or(s.otlp.timeout) {
        Some(t) if t.is_zero() => {
            return Err(ConfigError::new(
                method("otlp_timeout"),
                "0s",
                "the timeout must be positive",
            ));
        }
        Some(t) => at_most_a_year(t, method("otlp_timeout"))?,
        None => match env.get(names.timeout) {
            Some(v) => parse_millis(&v, Source::Env(names.timeout))?,
            None => match env.get(OTEL_EXPORTER_OTLP_TIMEOUT) {
                Some(v) => parse_millis(&v, Source::Env(OTEL_EXPORTER_OTLP_TIMEOUT))?,
                None => DEFAULT_EXPORT_TIMEOUT,
            },
        },
    };

    let compression = match code.compression.or(s.otlp.compression) {
        Some(c) => c,
        None => match env.get(names.compression) {
            Some(v) => Compression::parse(&v, Source::Env(names.compression))?,
            None => match env.get(OTEL_EXPORTER_OTLP_COMPRESSION) {
                Some(v) => Compression::parse(&v, Source::Env(OTEL_EXPORTER_OTLP_COMPRESSION))?,
                None => Compression::None,
            },
        },
    };

    Ok(Some(OtlpTarget {
        endpoint,
        endpoint_source,
        protocol,
        headers: headers.into_iter().collect(),
        timeout,
        compression,
    }))
}

/// Parses an `OTEL_*_EXPORTER` list (comma-separated, case-insensitive): `otlp` anywhere in it
/// exports; `none` alone (or `prometheus` for metrics, which is pull-only) does not.
fn parse_exporter(value: &str, signal: Signal, var: &'static str) -> Result<Exporter, ConfigError> {
    let mut otlp = false;
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.to_ascii_lowercase().as_str() {
            "otlp" => otlp = true,
            "none" => {}
            // Pull-based Prometheus is always available; it only means "no push".
            "prometheus" if signal == Signal::Metrics => {}
            other => {
                return Err(ConfigError::new(
                    Source::Env(var),
                    value,
                    if signal == Signal::Metrics {
                        format!("unsupported exporter {other:?}; expected otlp, prometheus or none")
                    } else {
                        format!("unsupported exporter {other:?}; expected otlp or none")
                    },
                ));
            }
        }
    }
    Ok(if otlp { Exporter::Otlp } else { Exporter::None })
}

/// `url` with the user and password it may carry (`http://user:token@host`) replaced by
/// `***`: what error messages and logs show of an endpoint. A URL that does not parse loses
/// everything before its last `@`, so a password holding `/`, `?` or `#`, or a URL without a
/// scheme, is hidden too.
pub(crate) fn redact_userinfo(url: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[scheme_end..];
    let authority = rest.find(['/', '?', '#']).map_or(rest, |end| &rest[..end]);
    // No `@` in the authority, but it is not `host[:digits]` (`u:p` of `http://u:p/ss@host`)
    // or the URL does not parse: the `@` further on may end a password.
    let odd_port = has_odd_port(authority);
    let at = match authority.rfind('@') {
        Some(at) => Some(at),
        None if odd_port || url.parse::<http::Uri>().is_err() => rest.rfind('@'),
        None => None,
    };
    match at {
        Some(at) => format!("{}***{}", &url[..scheme_end], &rest[at..]),
        None => url.to_owned(),
    }
}

/// Whether `authority` (`[userinfo@]host[:port]`) ends in a `:port` that is not digits.
fn has_odd_port(authority: &str) -> bool {
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    match host_port.rsplit_once(':') {
        // An IPv6 address's own colons are inside the brackets.
        Some((host, _)) if host.starts_with('[') && !host.ends_with(']') => false,
        Some((_, port)) => !port.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// Checks that `url` is an absolute `http`/`https` URL with a host and a numeric port (if
/// any), and returns it trimmed. Errors show it without the credentials it may carry.
fn validate_endpoint(url: &str, setting: Source) -> Result<String, ConfigError> {
    let url = url.trim();
    let shown = redact_userinfo(url);
    let uri: http::Uri = url.parse().map_err(|e: http::uri::InvalidUri| {
        ConfigError::new(setting.clone(), &shown, e.to_string())
    })?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        Some(other) => {
            return Err(ConfigError::new(
                setting,
                &shown,
                format!("unsupported URL scheme {other:?}; expected http or https"),
            ));
        }
        None => {
            return Err(ConfigError::new(
                setting,
                &shown,
                "not an absolute URL; expected e.g. http://localhost:4318",
            ));
        }
    }
    match uri.host() {
        Some(h) if !h.is_empty() => {}
        _ => return Err(ConfigError::new(setting, &shown, "the URL has no host")),
    }
    if uri.authority().is_some_and(|a| has_odd_port(a.as_str())) {
        return Err(ConfigError::new(
            setting,
            &shown,
            "the port is not a number (a password holding `/`, `?` or `#` must be \
             percent-encoded)",
        ));
    }
    if uri.scheme_str() == Some("https") {
        return Err(ConfigError::new(
            setting,
            &shown,
            "https endpoints need TLS, which this build of axi-obs-core does not include; \
             export to a local collector over http",
        ));
    }
    Ok(url.to_owned())
}

fn join_endpoint(base: &str, protocol: Protocol, signal: Signal) -> String {
    match protocol {
        Protocol::Grpc => base.to_owned(),
        Protocol::HttpProtobuf => {
            format!("{}/v1/{}", base.trim_end_matches('/'), signal.as_str())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_output_hides_credentials() {
        let env = Env::from_pairs([
            (OTEL_EXPORTER_OTLP_HEADERS, "authorization=Bearer%20s3cret"),
            (
                OTEL_EXPORTER_OTLP_ENDPOINT,
                "http://user:s3cret@collector:4318",
            ),
            (OTEL_SERVICE_NAME, "shop"),
        ]);
        let settings = OtlpSettings {
            endpoint: Some("http://user:s3cret@collector:4318".into()),
            headers: vec![("x-api-key".into(), "s3cret".into())],
            ..OtlpSettings::default()
        };
        let target = OtlpTarget {
            endpoint: "http://user:s3cret@collector:4318/v1/traces".into(),
            endpoint_source: Source::Env(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT),
            protocol: Protocol::HttpProtobuf,
            headers: vec![("x-api-key".into(), "s3cret".into())],
            timeout: Duration::from_secs(10),
            compression: Compression::None,
        };
        for shown in [
            format!("{env:?}"),
            format!("{settings:?}"),
            format!("{target:?}"),
        ] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("collector:4318"), "{shown}");
        }
        assert!(format!("{env:?}").contains("shop"));
        assert!(format!("{target:?}").contains("x-api-key"));
    }

    #[test]
    fn endpoint_credentials_never_reach_an_error_message() {
        assert_eq!(
            redact_userinfo("http://user:tok@collector:4318/v1/traces?x=@"),
            "http://***@collector:4318/v1/traces?x=@"
        );
        assert_eq!(
            redact_userinfo("http://collector:4318/a@b"),
            "http://collector:4318/a@b"
        );
        assert_eq!(redact_userinfo("collector:4318"), "collector:4318");
        assert_eq!(
            redact_userinfo("http://[::1]:4318/v1"),
            "http://[::1]:4318/v1"
        );
        // Not a URL that parses: everything before the last `@` goes.
        assert_eq!(
            redact_userinfo("http://u:p/ss@host:4318"),
            "http://***@host:4318"
        );
        assert_eq!(
            redact_userinfo("user:tok@collector:4318"),
            "***@collector:4318"
        );
        for bad in ["user:tok@collector:4318", "http://u:p/ss@host:4318"] {
            let e = validate_endpoint(bad, Source::Env(OTEL_EXPORTER_OTLP_ENDPOINT))
                .unwrap_err()
                .to_string();
            assert!(!e.contains("tok") && !e.contains("p/ss"), "{e}");
        }
        let e = validate_endpoint(
            "ftp://user:tok@collector",
            Source::Env(OTEL_EXPORTER_OTLP_ENDPOINT),
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains("tok"), "{e}");
        assert!(e.contains("ftp://***@collector"), "{e}");
        // The URL itself keeps them: they are the user's to send.
        assert_eq!(
            validate_endpoint(
                "http://user:tok@collector:4318",
                Source::Env(OTEL_EXPORTER_OTLP_ENDPOINT)
            )
            .unwrap(),
            "http://user:tok@collector:4318"
        );
    }

    use super::*;

    /// The tests of what is refused and why resolve strictly: every value that cannot be
    /// used is an error. What `super::resolve` makes of a bad environment variable (ignored
    /// with a warning) is tested on its own below.
    fn resolve(s: &Settings) -> Result<Resolved, ConfigError> {
        resolve_strict(s)
    }

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings {
            env: Env::from_pairs(pairs.iter().copied()),
            ..Settings::default()
        }
    }

    #[test]
    fn environment_values_that_cannot_be_used_are_ignored_with_a_warning() {
        let endpoint = (OTEL_EXPORTER_OTLP_ENDPOINT, "http://collector:4318");
        // What an operator may inject, or a host set for every service: none of it stops
        // the service.
        let r = super::resolve(&settings(&[
            endpoint,
            (OTEL_SDK_DISABLED, "1"),
            (OTEL_PROPAGATORS, "tracecontext,baggage,b3"),
            (OTEL_EXPORTER_OTLP_PROTOCOL, "http/json"),
            (OTEL_TRACES_SAMPLER, "parentbased_traceidratio"),
            (OTEL_TRACES_SAMPLER_ARG, "half"),
            (OTEL_BSP_SCHEDULE_DELAY, "soon"),
            (OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE, "delta"),
            (OTEL_RESOURCE_ATTRIBUTES, "team=core,broken"),
            (OTEL_SERVICE_NAME, "api"),
        ]))
        .unwrap();
        let mut ignored: Vec<String> = r
            .env_warnings
            .iter()
            .map(|e| e.setting.to_string())
            .collect();
        ignored.sort();
        assert_eq!(
            ignored,
            [
                OTEL_BSP_SCHEDULE_DELAY,
                OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE,
                OTEL_EXPORTER_OTLP_PROTOCOL,
                OTEL_PROPAGATORS,
                OTEL_RESOURCE_ATTRIBUTES,
                OTEL_SDK_DISABLED,
                OTEL_TRACES_SAMPLER_ARG,
            ]
        );
        // Each as if unset: the defaults, and what the other variables say.
        assert!(!r.sdk_disabled);
        assert_eq!(
            r.propagators,
            vec![Propagator::TraceContext, Propagator::Baggage]
        );
        assert_eq!(
            r.traces.as_ref().map(|t| t.protocol),
            Some(Protocol::HttpProtobuf)
        );
        assert_eq!(
            r.sampler,
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatio(1.0)))
        );
        assert_eq!(r.span_batch.delay, Duration::from_secs(5));
        assert!(r.resource.contains(&("service.name".into(), "api".into())));
        assert!(!r.resource.iter().any(|(k, _)| k == "team"));
        // Each warning says why, as the error would.
        let why = r
            .env_warnings
            .iter()
            .find(|e| e.setting == Source::Env(OTEL_TRACES_SAMPLER_ARG))
            .unwrap()
            .to_string();
        assert!(why.contains("\"half\""), "{why}");
        // A value set in code is still an error.
        let mut s = settings(&[endpoint, (OTEL_SDK_DISABLED, "yes")]);
        s.shutdown_timeout = Some(Duration::MAX);
        let e = super::resolve(&s).unwrap_err();
        assert_eq!(e.setting, Source::Code("shutdown_timeout"));
        // Nothing to ignore, nothing to warn about.
        assert!(
            super::resolve(&settings(&[endpoint]))
                .unwrap()
                .env_warnings
                .is_empty()
        );
    }

    #[test]
    fn nothing_configured_means_no_exporter() {
        let r = resolve(&settings(&[])).unwrap();
        assert!(r.traces.is_none() && r.logs.is_none() && r.metrics.is_none());
        assert_eq!(r.log_filter, "info");
        assert_eq!(r.sampler, Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
        assert_eq!(
            r.propagators,
            vec![Propagator::TraceContext, Propagator::Baggage]
        );
    }

    #[test]
    fn absurd_durations_and_queue_sizes_are_errors_not_panics() {
        let endpoint = [(OTEL_EXPORTER_OTLP_ENDPOINT, "http://collector:4318")];
        let mut s = settings(&endpoint);
        s.shutdown_timeout = Some(Duration::MAX);
        let e = resolve(&s).unwrap_err().to_string();
        assert!(
            e.contains("shutdown_timeout") && e.contains("a year"),
            "{e}"
        );

        let mut s = settings(&endpoint);
        s.metric_export_interval = Some(Duration::MAX);
        assert!(resolve(&s).is_err());

        let mut s = settings(&endpoint);
        s.otlp.timeout = Some(Duration::MAX);
        let e = resolve(&s).unwrap_err().to_string();
        assert!(e.contains("otlp_timeout"), "{e}");

        let mut s = settings(&endpoint);
        s.queue_size = Some(usize::MAX);
        let e = resolve(&s).unwrap_err().to_string();
        assert!(e.contains("export_queue_size"), "{e}");

        let e = resolve(&settings(&[
            endpoint[0],
            (OTEL_EXPORTER_OTLP_TIMEOUT, "18446744073709551615"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains(OTEL_EXPORTER_OTLP_TIMEOUT), "{e}");

        // A year is allowed.
        let mut s = settings(&endpoint);
        s.shutdown_timeout = Some(MAX_DURATION);
        s.queue_size = Some(MAX_QUEUE_SIZE);
        assert!(resolve(&s).is_ok());
    }

    #[test]
    fn batch_processor_variables_are_applied_and_checked() {
        let endpoint = (OTEL_EXPORTER_OTLP_ENDPOINT, "http://collector:4318");
        let r = resolve(&settings(&[endpoint])).unwrap();
        assert_eq!(
            (r.span_batch, r.log_batch),
            (
                BatchConfig {
                    max_queue: 2048,
                    max_batch: 512,
                    delay: Duration::from_secs(5)
                },
                BatchConfig {
                    max_queue: 2048,
                    max_batch: 512,
                    delay: Duration::from_secs(1)
                }
            )
        );
        let r = resolve(&settings(&[
            endpoint,
            (OTEL_BSP_SCHEDULE_DELAY, "250"),
            (OTEL_BSP_MAX_QUEUE_SIZE, "8192"),
            (OTEL_BSP_MAX_EXPORT_BATCH_SIZE, "1024"),
            (OTEL_BSP_EXPORT_TIMEOUT, "3000"),
            (OTEL_BLRP_MAX_QUEUE_SIZE, "100"),
            (OTEL_BLRP_EXPORT_TIMEOUT, "60000"),
            (OTEL_METRIC_EXPORT_TIMEOUT, "500"),
        ]))
        .unwrap();
        assert_eq!(
            r.span_batch,
            BatchConfig {
                max_queue: 8192,
                max_batch: 1024,
                delay: Duration::from_millis(250)
            }
        );
        // The default batch never exceeds a smaller queue.
        assert_eq!((r.log_batch.max_queue, r.log_batch.max_batch), (100, 100));
        // Export timeouts bound the exporter's (10 s), never raise it.
        assert_eq!(r.traces.unwrap().timeout, Duration::from_secs(3));
        assert_eq!(r.logs.unwrap().timeout, Duration::from_secs(10));
        assert_eq!(r.metrics.unwrap().timeout, Duration::from_millis(500));

        // Code beats the variable for the queue bound.
        let mut s = settings(&[endpoint, (OTEL_BSP_MAX_QUEUE_SIZE, "8192")]);
        s.queue_size = Some(64);
        assert_eq!(resolve(&s).unwrap().span_batch.max_queue, 64);

        // A batch larger than the queue is clamped to it, as the SDKs do.
        let r = resolve(&settings(&[
            endpoint,
            (OTEL_BSP_MAX_EXPORT_BATCH_SIZE, "4096"),
        ]))
        .unwrap();
        assert_eq!(r.span_batch.max_batch, 2048);

        for (var, value, says) in [
            (OTEL_BLRP_MAX_QUEUE_SIZE, "0", "positive whole number"),
            (OTEL_BLRP_SCHEDULE_DELAY, "soon", "milliseconds"),
            (OTEL_BSP_EXPORT_TIMEOUT, "0", "positive"),
            (
                OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE,
                "delta",
                "cumulative",
            ),
            (
                OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION,
                "base2_exponential_bucket_histogram",
                "explicit bucket",
            ),
        ] {
            let e = resolve(&settings(&[endpoint, (var, value)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(var) && e.contains(says), "{var}={value}: {e}");
        }
        assert!(
            resolve(&settings(&[
                endpoint,
                (
                    OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE,
                    "Cumulative"
                ),
            ]))
            .is_ok()
        );
        // Metric push settings are read only when metrics are pushed: a host-wide delta
        // preference does not stop a service that only serves `/metrics`, or a disabled SDK.
        let unused = [
            (OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE, "delta"),
            (
                OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION,
                "base2_exponential_bucket_histogram",
            ),
            (OTEL_METRIC_EXPORT_INTERVAL, "soon"),
        ];
        assert!(resolve(&settings(&unused)).is_ok());
        // So are a signal's batch variables: not read when it is not exported.
        let r = resolve(&settings(&[
            (OTEL_BSP_SCHEDULE_DELAY, "soon"),
            (OTEL_BLRP_EXPORT_TIMEOUT, "0"),
        ]))
        .unwrap();
        assert!(r.traces.is_none() && r.logs.is_none());
        let mut disabled = unused.to_vec();
        disabled.extend([endpoint, (OTEL_SDK_DISABLED, "true")]);
        assert!(resolve(&settings(&disabled)).is_ok());
        let mut no_metrics = unused.to_vec();
        no_metrics.extend([endpoint, (OTEL_METRICS_EXPORTER, "none")]);
        assert!(
            resolve(&settings(&no_metrics)).is_ok(),
            "{:?}",
            resolve(&settings(&no_metrics)).err()
        );
    }

    #[test]
    fn compression_from_code_signal_and_generic_variables() {
        let endpoint = (OTEL_EXPORTER_OTLP_ENDPOINT, "http://collector:4318");
        let r = resolve(&settings(&[
            endpoint,
            (OTEL_EXPORTER_OTLP_COMPRESSION, "GZIP"),
            (OTEL_EXPORTER_OTLP_LOGS_COMPRESSION, "none"),
        ]))
        .unwrap();
        assert_eq!(r.traces.unwrap().compression, Compression::Gzip);
        assert_eq!(r.logs.unwrap().compression, Compression::None);
        assert_eq!(r.metrics.unwrap().compression, Compression::Gzip);
        let mut s = settings(&[endpoint, (OTEL_EXPORTER_OTLP_COMPRESSION, "gzip")]);
        s.otlp.compression = Some(Compression::None);
        assert_eq!(
            resolve(&s).unwrap().traces.unwrap().compression,
            Compression::None
        );
        let e = resolve(&settings(&[
            endpoint,
            (OTEL_EXPORTER_OTLP_TRACES_COMPRESSION, "brotli"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(OTEL_EXPORTER_OTLP_TRACES_COMPRESSION) && e.contains("gzip or none"),
            "{e}"
        );
    }

    #[test]
    fn generic_endpoint_gets_signal_paths_for_http() {
        let r = resolve(&settings(&[(
            OTEL_EXPORTER_OTLP_ENDPOINT,
            "http://collector:4318/",
        )]))
        .unwrap();
        assert_eq!(
            r.traces.unwrap().endpoint,
            "http://collector:4318/v1/traces"
        );
        assert_eq!(r.logs.unwrap().endpoint, "http://collector:4318/v1/logs");
        assert_eq!(
            r.metrics.unwrap().endpoint,
            "http://collector:4318/v1/metrics"
        );
    }

    #[test]
    fn signal_endpoint_is_used_as_given_and_beats_generic() {
        let r = resolve(&settings(&[
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://generic:4318"),
            (
                OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
                "http://traces:9999/custom",
            ),
        ]))
        .unwrap();
        let (traces, logs) = (r.traces.unwrap(), r.logs.unwrap());
        assert_eq!(traces.endpoint, "http://traces:9999/custom");
        assert_eq!(logs.endpoint, "http://generic:4318/v1/logs");
        // An error about an endpoint names the setting it came from.
        assert_eq!(
            traces.endpoint_source,
            Source::Env(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
        );
        assert_eq!(
            logs.endpoint_source,
            Source::Env(OTEL_EXPORTER_OTLP_ENDPOINT)
        );

        let mut s = settings(&[(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "http://env:4318")]);
        s.traces.endpoint = Some("http://code:4318/v1/traces".into());
        s.otlp.endpoint = Some("http://generic-code:4318".into());
        let r = resolve(&s).unwrap();
        let (traces, logs) = (r.traces.unwrap(), r.logs.unwrap());
        assert_eq!(traces.endpoint, "http://code:4318/v1/traces");
        assert_eq!(traces.endpoint_source, Source::Code("traces_endpoint"));
        assert_eq!(logs.endpoint, "http://generic-code:4318/v1/logs");
        assert_eq!(logs.endpoint_source, Source::Code("otlp_endpoint"));
    }

    #[test]
    fn code_beats_signal_env_beats_generic_env_beats_default() {
        let env = [
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://generic:4317"),
            (OTEL_EXPORTER_OTLP_PROTOCOL, "grpc"),
            (OTEL_EXPORTER_OTLP_TIMEOUT, "2000"),
            (OTEL_EXPORTER_OTLP_LOGS_TIMEOUT, "3000"),
            (OTEL_EXPORTER_OTLP_METRICS_PROTOCOL, "http/protobuf"),
        ];
        let mut s = settings(&env);
        s.traces.timeout = Some(Duration::from_millis(1500));
        let r = resolve(&s).unwrap();
        let traces = r.traces.unwrap();
        let logs = r.logs.unwrap();
        let metrics = r.metrics.unwrap();
        assert_eq!(traces.timeout, Duration::from_millis(1500)); // code
        assert_eq!(logs.timeout, Duration::from_millis(3000)); // signal env
        assert_eq!(metrics.timeout, Duration::from_millis(2000)); // generic env
        assert_eq!(traces.protocol, Protocol::Grpc);
        assert_eq!(traces.endpoint, "http://generic:4317"); // grpc: no path appended
        assert_eq!(metrics.protocol, Protocol::HttpProtobuf);
        assert_eq!(metrics.endpoint, "http://generic:4317/v1/metrics");

        let r = resolve(&settings(&[(OTEL_TRACES_EXPORTER, "otlp")])).unwrap();
        let traces = r.traces.unwrap();
        assert_eq!(traces.endpoint, "http://localhost:4318/v1/traces"); // default
        assert_eq!(traces.timeout, DEFAULT_EXPORT_TIMEOUT);
        assert!(r.logs.is_none());
    }

    #[test]
    fn grpc_without_the_feature_is_refused_naming_the_setting() {
        let source = Source::Env(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL);
        let e = Protocol::Grpc
            .available_with(false, source.clone())
            .unwrap_err();
        assert_eq!(e.setting, source);
        assert_eq!(e.value, "grpc");
        assert!(e.to_string().contains("`otlp-grpc`"), "{e}");
        assert!(
            e.to_string()
                .starts_with("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="),
            "{e}"
        );
        assert!(Protocol::Grpc.available_with(true, source.clone()).is_ok());
        assert!(Protocol::HttpProtobuf.available_with(false, source).is_ok());
        // This test build has the feature (dev-dependency `testing`), so the resolution that
        // calls the check accepts grpc.
        let r = resolve(&settings(&[
            (OTEL_EXPORTER_OTLP_PROTOCOL, "grpc"),
            (OTEL_TRACES_EXPORTER, "otlp"),
        ]))
        .unwrap();
        assert_eq!(r.traces.unwrap().protocol, Protocol::Grpc);
    }

    #[test]
    fn signal_headers_replace_generic_ones_and_code_merges_on_top() {
        let mut s = settings(&[
            (OTEL_EXPORTER_OTLP_HEADERS, "a=generic,b=generic,c=generic"),
            (OTEL_EXPORTER_OTLP_TRACES_HEADERS, "b=signal,c=signal"),
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://x:4318"),
        ]);
        s.traces.headers.push(("C".into(), "code".into()));
        let r = resolve(&s).unwrap();
        // The generic `a` (a credential for the generic endpoint, say) does not reach traces.
        assert_eq!(
            r.traces.unwrap().headers,
            vec![
                ("b".to_owned(), "signal".to_owned()),
                ("c".to_owned(), "code".to_owned()),
            ]
        );
        let logs = r.logs.unwrap();
        assert_eq!(logs.headers.len(), 3);
        assert_eq!(logs.headers[1], ("b".to_owned(), "generic".to_owned()));
    }

    #[test]
    fn a_log_file_path_that_was_not_utf8_is_refused() {
        let e = err(&[(AXI_LOG_FILE, "/var/log/app\u{FFFD}.log")]);
        assert_eq!(e.setting, Source::Env(AXI_LOG_FILE));
    }

    #[test]
    fn span_limits_come_from_env_with_the_general_fallback() {
        let r = resolve(&settings(&[
            (OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT, "2"),
            (OTEL_ATTRIBUTE_COUNT_LIMIT, "5"),
            (OTEL_SPAN_LINK_COUNT_LIMIT, "0"),
        ]))
        .unwrap();
        assert_eq!(
            r.span_limits,
            SpanLimits {
                attributes: 2,
                events: 128,
                links: 0,
                attributes_per_event: 5,
                attributes_per_link: 5,
            }
        );
        let defaults = resolve(&settings(&[])).unwrap().span_limits;
        assert_eq!(defaults.attributes, 128);
        let e = err(&[(OTEL_SPAN_EVENT_COUNT_LIMIT, "many")]);
        assert_eq!(e.setting, Source::Env(OTEL_SPAN_EVENT_COUNT_LIMIT));
    }

    #[test]
    fn propagators_are_deduplicated_and_percent_escapes_are_two_hex_digits() {
        let r = resolve(&settings(&[(
            OTEL_PROPAGATORS,
            "tracecontext,baggage,tracecontext",
        )]))
        .unwrap();
        assert_eq!(r.propagators.len(), 2, "{:?}", r.propagators);
        assert!(
            err(&[(OTEL_RESOURCE_ATTRIBUTES, "k=%+1")])
                .to_string()
                .contains(OTEL_RESOURCE_ATTRIBUTES)
        );
    }

    #[test]
    fn resource_attribute_keys_and_values_are_percent_decoded() {
        let r = resolve(&settings(&[(
            OTEL_RESOURCE_ATTRIBUTES,
            "odd%3Dkey%2Cname=a%2Cb%3Dc,plain=x",
        )]))
        .unwrap();
        assert!(
            r.resource
                .contains(&("odd=key,name".into(), "a,b=c".into())),
            "{:?}",
            r.resource
        );
        assert!(r.resource.contains(&("plain".into(), "x".into())));
        let e = err(&[(OTEL_RESOURCE_ATTRIBUTES, "bad%zzkey=v")]);
        assert_eq!(e.setting, Source::Env(OTEL_RESOURCE_ATTRIBUTES));
    }

    #[test]
    fn headers_are_percent_decoded() {
        let r = resolve(&settings(&[
            (
                OTEL_EXPORTER_OTLP_HEADERS,
                "authorization=Basic%20dXNlcjpwYXNz",
            ),
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://x:4318"),
        ]))
        .unwrap();
        assert_eq!(r.traces.unwrap().headers[0].1, "Basic dXNlcjpwYXNz");
    }

    /// Over gRPC a URL's user and password would travel in `:authority`, not as credentials:
    /// refused, naming the setting, without the password. Over HTTP they are Basic auth.
    #[test]
    fn user_info_in_a_grpc_endpoint_is_refused() {
        let e = resolve(&settings(&[
            (OTEL_EXPORTER_OTLP_PROTOCOL, "grpc"),
            (
                OTEL_EXPORTER_OTLP_ENDPOINT,
                "http://ingest:s3cret@collector:4317",
            ),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains(OTEL_EXPORTER_OTLP_ENDPOINT), "{e}");
        assert!(e.contains("not sent over gRPC"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        let r = resolve(&settings(&[(
            OTEL_EXPORTER_OTLP_ENDPOINT,
            "http://ingest:s3cret@collector:4318",
        )]))
        .unwrap();
        assert!(r.traces.is_some());
        // An `@` further on (a path or query) is no user info.
        resolve(&settings(&[
            (OTEL_EXPORTER_OTLP_PROTOCOL, "grpc"),
            (
                OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
                "http://collector:4317/x@y",
            ),
        ]))
        .unwrap();
    }

    /// A credential whose `Name=` was forgotten splits at its base64 padding into a "key":
    /// the error says what is wrong without showing it.
    #[test]
    fn a_header_credential_without_its_name_is_not_shown_in_the_error() {
        let e = resolve(&settings(&[
            (OTEL_EXPORTER_OTLP_HEADERS, "Basic dXNlcjpwYXNzd29yZA=="),
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://x:4318"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains(OTEL_EXPORTER_OTLP_HEADERS), "{e}");
        assert!(e.contains("not a valid header name"), "{e}");
        assert!(!e.contains("dXNlcjpw"), "{e}");
        let e = resolve(&settings(&[
            (OTEL_EXPORTER_OTLP_HEADERS, "x-a=1,Basic%20dXNlcjpwYXNz=="),
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://x:4318"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(!e.contains("dXNlcjpw"), "{e}");
    }

    #[test]
    fn exporter_none_and_sdk_disabled_turn_export_off() {
        let r = resolve(&settings(&[
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://x:4318"),
            (OTEL_TRACES_EXPORTER, "none"),
            (OTEL_METRICS_EXPORTER, "prometheus"),
        ]))
        .unwrap();
        assert!(r.traces.is_none());
        assert!(r.logs.is_some());
        assert!(r.metrics.is_none());

        let r = resolve(&settings(&[
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://x:4318"),
            (OTEL_SDK_DISABLED, "true"),
        ]))
        .unwrap();
        assert!(r.sdk_disabled);
        assert!(r.traces.is_none() && r.logs.is_none() && r.metrics.is_none());

        // Code wins over env.
        let mut s = settings(&[
            (OTEL_SDK_DISABLED, "true"),
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://x:4318"),
        ]);
        s.sdk_disabled = Some(false);
        assert!(resolve(&s).unwrap().traces.is_some());
    }

    #[test]
    fn service_name_precedence() {
        let r = resolve(&settings(&[])).unwrap();
        let name = |r: &Resolved| {
            r.resource
                .iter()
                .find(|(k, _)| k == "service.name")
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert!(name(&r).starts_with("unknown_service"));
        let r = resolve(&settings(&[(
            OTEL_RESOURCE_ATTRIBUTES,
            "service.name=from-attrs,team=core",
        )]))
        .unwrap();
        assert_eq!(name(&r), "from-attrs");
        assert!(r.resource.contains(&("team".into(), "core".into())));
        let r = resolve(&settings(&[
            (OTEL_RESOURCE_ATTRIBUTES, "service.name=from-attrs"),
            (OTEL_SERVICE_NAME, "from-env"),
        ]))
        .unwrap();
        assert_eq!(name(&r), "from-env");
        let mut s = settings(&[(OTEL_SERVICE_NAME, "from-env")]);
        s.service_name = Some("from-code".into());
        assert_eq!(name(&resolve(&s).unwrap()), "from-code");
        // A default from code loses to the environment, and beats the executable name.
        let mut s = settings(&[(OTEL_SERVICE_NAME, "from-env")]);
        s.default_service_name = Some("default".into());
        assert_eq!(name(&resolve(&s).unwrap()), "from-env");
        let mut s = settings(&[]);
        s.default_service_name = Some("default".into());
        assert_eq!(name(&resolve(&s).unwrap()), "default");
    }

    #[test]
    fn sampler_from_env() {
        let r = resolve(&settings(&[
            (OTEL_TRACES_SAMPLER, "parentbased_traceidratio"),
            (OTEL_TRACES_SAMPLER_ARG, "0.25"),
        ]))
        .unwrap();
        assert_eq!(
            r.sampler,
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatio(0.25)))
        );
        let r = resolve(&settings(&[(OTEL_TRACES_SAMPLER, "always_off")])).unwrap();
        assert_eq!(r.sampler, Sampler::AlwaysOff);
    }

    #[test]
    fn propagators_from_env() {
        let r = resolve(&settings(&[(OTEL_PROPAGATORS, "baggage")])).unwrap();
        assert_eq!(r.propagators, vec![Propagator::Baggage]);
        let r = resolve(&settings(&[(OTEL_PROPAGATORS, "none")])).unwrap();
        assert!(r.propagators.is_empty());
    }

    #[test]
    fn log_filter_precedence() {
        let r = resolve(&settings(&[(RUST_LOG, "debug")])).unwrap();
        assert_eq!(r.log_filter, "debug");
        let mut s = settings(&[(RUST_LOG, "debug")]);
        s.default_log_filter = Some("warn".into());
        assert_eq!(resolve(&s).unwrap().log_filter, "debug");
        s.log_filter = Some("error".into());
        assert_eq!(resolve(&s).unwrap().log_filter, "error");
        let mut s = settings(&[]);
        s.default_log_filter = Some("warn".into());
        assert_eq!(resolve(&s).unwrap().log_filter, "warn");
    }

    #[test]
    fn log_format_and_file_from_env() {
        let r = resolve(&settings(&[
            (AXI_LOG_FORMAT, "PRETTY"),
            (AXI_LOG_FILE, "/tmp/x/app.log"),
        ]))
        .unwrap();
        assert_eq!(r.log_format, Some(LogFormat::Pretty));
        assert_eq!(r.log_file.unwrap().path, PathBuf::from("/tmp/x/app.log"));
    }

    #[test]
    fn empty_values_count_as_unset() {
        let r = resolve(&settings(&[
            (OTEL_EXPORTER_OTLP_ENDPOINT, ""),
            (OTEL_SERVICE_NAME, " "),
        ]))
        .unwrap();
        assert!(r.traces.is_none());
    }

    fn err(pairs: &[(&str, &str)]) -> ConfigError {
        resolve(&settings(pairs)).unwrap_err()
    }

    #[test]
    fn bad_values_name_the_setting_and_value() {
        let e = err(&[(OTEL_EXPORTER_OTLP_ENDPOINT, "not a url")]);
        assert_eq!(e.setting, Source::Env(OTEL_EXPORTER_OTLP_ENDPOINT));
        assert_eq!(e.value, "not a url");
        assert!(
            e.to_string()
                .starts_with("OTEL_EXPORTER_OTLP_ENDPOINT=\"not a url\""),
            "{e}"
        );

        let e = err(&[(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "localhost:4318")]);
        assert_eq!(e.setting, Source::Env(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT));

        let e = err(&[(OTEL_EXPORTER_OTLP_ENDPOINT, "ftp://x:21")]);
        assert!(e.reason.contains("scheme"), "{e}");

        let e = err(&[
            (OTEL_EXPORTER_OTLP_PROTOCOL, "udp"),
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://x:1"),
        ]);
        assert_eq!(e.setting, Source::Env(OTEL_EXPORTER_OTLP_PROTOCOL));
        assert_eq!(e.value, "udp");

        let e = err(&[
            (OTEL_TRACES_SAMPLER, "traceidratio"),
            (OTEL_TRACES_SAMPLER_ARG, "1.5"),
        ]);
        assert_eq!(e.setting, Source::Env(OTEL_TRACES_SAMPLER_ARG));
        assert_eq!(e.value, "1.5");

        let e = err(&[
            (OTEL_TRACES_SAMPLER, "traceidratio"),
            (OTEL_TRACES_SAMPLER_ARG, "half"),
        ]);
        assert_eq!(e.setting, Source::Env(OTEL_TRACES_SAMPLER_ARG));

        let e = err(&[(OTEL_TRACES_SAMPLER, "jaeger_remote")]);
        assert_eq!(e.setting, Source::Env(OTEL_TRACES_SAMPLER));

        let e = err(&[(OTEL_RESOURCE_ATTRIBUTES, "team=core,broken")]);
        assert_eq!(e.setting, Source::Env(OTEL_RESOURCE_ATTRIBUTES));
        assert!(e.reason.contains("\"broken\""), "{e}");
        let e = err(&[(OTEL_RESOURCE_ATTRIBUTES, "=v")]);
        assert!(e.reason.contains("empty key"), "{e}");
        let e = err(&[(OTEL_RESOURCE_ATTRIBUTES, "k=%zz")]);
        assert!(e.reason.contains("percent"), "{e}");

        let e = err(&[
            (OTEL_EXPORTER_OTLP_TIMEOUT, "10s"),
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://x:1"),
        ]);
        assert_eq!(e.setting, Source::Env(OTEL_EXPORTER_OTLP_TIMEOUT));

        let e = err(&[(OTEL_SDK_DISABLED, "yes")]);
        assert_eq!(e.setting, Source::Env(OTEL_SDK_DISABLED));

        let e = err(&[(OTEL_PROPAGATORS, "tracecontext,b3")]);
        assert!(e.reason.contains("b3"), "{e}");

        let e = err(&[(OTEL_TRACES_EXPORTER, "jaeger")]);
        assert_eq!(e.setting, Source::Env(OTEL_TRACES_EXPORTER));

        let e = err(&[(RUST_LOG, "foo=notalevel")]);
        assert_eq!(e.setting, Source::Env(RUST_LOG));

        let e = err(&[(AXI_LOG_FORMAT, "xml")]);
        assert_eq!(e.setting, Source::Env(AXI_LOG_FORMAT));

        let e = err(&[
            (OTEL_EXPORTER_OTLP_HEADERS, "bad header=x"),
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://x:1"),
        ]);
        assert_eq!(e.setting, Source::Env(OTEL_EXPORTER_OTLP_HEADERS));
    }

    #[test]
    fn bad_code_values_name_the_builder_method() {
        let mut s = settings(&[]);
        s.sampler = Some(Sampler::TraceIdRatio(2.0));
        let e = resolve(&s).unwrap_err();
        assert_eq!(e.setting, Source::Code("sampler"));
        assert!(
            e.to_string().starts_with("TelemetryBuilder::sampler="),
            "{e}"
        );

        let mut s = settings(&[]);
        s.otlp.endpoint = Some("http//missing-colon".into());
        let e = resolve(&s).unwrap_err();
        assert_eq!(e.setting, Source::Code("otlp_endpoint"));

        let mut s = settings(&[]);
        s.histogram_buckets.push(("x".into(), vec![1.0, 0.5]));
        assert!(resolve(&s).unwrap_err().reason.contains("increasing"));
    }
}
