//! The YAML configuration. Errors name the file, the line and the field.
//!
//! ```yaml
//! registry: /var/lib/axi-log-shipper/registry.json  # offsets; written atomically
//! poll_interval: 1s                  # how often globs are expanded and files read; default 1s
//! inputs:
//!   - name: nginx                    # unique; the `input` label of the self-metrics
//!     paths: [/var/log/nginx/access.log*]   # globs
//!     exclude: ["*.gz"]              # globs matched against the whole path; default none
//!     format: nginx                  # nginx | json | text; default text
//!     log_format: combined           # nginx only: `combined`, `main`, or a format string
//!     service: docs-site             # service.name of the records; default the input name
//!     access_metrics: true           # nginx only; default true
//!     max_line_bytes: 1048576        # longer lines are cut (and counted); default 1 MiB
//!     encoding: utf-8                # the files' character set (a WHATWG label: gbk, gb18030,
//!                                    # big5, shift_jis, euc-kr, windows-1252, ...); events are
//!                                    # shipped as UTF-8, multiline patterns match the decoded
//!                                    # text, max_line_bytes counts the file's bytes; UTF-16
//!                                    # and ISO-2022-JP are refused
//!     fingerprint_bytes: 1024        # identity = device + inode + hash of these first bytes
//!     close_inactive: 5m             # close a file at its end after this long without data
//!     start_at: beginning            # beginning | end, for files without a registry entry
//!                                    # found at start-up; files appearing later start at 0
//!     multiline:                     # default none: one event per line
//!       pattern: '^\s'               # continuation lines (Rust regex syntax) ...
//!       negate: false                # ... or, when true, the lines NOT matching it
//!       match: after                 # after: joined to the line before; before: to the next
//!       max_lines: 500               # lines per event; more are skipped (event flagged)
//!       timeout: 5s                  # a pending event leaves this long after its last line
//! access_metrics:
//!   path_patterns: ["/docs/**", "/api/users/*"]
//!   max_paths: 100                   # further path labels fold into `other`
//!   max_vhosts: 20
//!   default_vhost: "-"               # for formats without $host
//!   unique_visitors:                 # nginx_http_unique_visitors{vhost,window} (HyperLogLog)
//!     enabled: true                  # 16 KiB per virtual host; default true
//!     window: 5m                     # tumbling, aligned to the epoch; the gauge shows the
//!                                    # last complete window
//!     include_user_agent: false      # visitor = $remote_addr (+ $http_user_agent)
//! output:                            # exactly one
//!   otlp:
//!     endpoint: http://127.0.0.1:4318   # /v1/logs is appended for http/protobuf
//!     protocol: http/protobuf        # or grpc (endpoint http://127.0.0.1:4317)
//!     timeout: 10s
//!     headers: { authorization: "Bearer ..." }
//!     tls:                           # https:// endpoints; default: the system trust store
//!       ca_file: /etc/axi/ca.pem     # PEM; trust exactly these CAs instead
//!       insecure_skip_verify: false  # accept any certificate (tests only); not with ca_file
//!       cert_file: /etc/axi/client.pem   # client certificate (mutual TLS), with key_file
//!       key_file: /etc/axi/client.key
//!   # elasticsearch:                 # _bulk into <index_prefix>-YYYY.MM.DD (UTC day of the event)
//!   #   endpoint: http://127.0.0.1:9200
//!   #   index_prefix: logs             # default logs
//!   #   timeout: 10s
//!   #   headers: { authorization: "ApiKey ..." }
//!   #   tls: { ca_file: /etc/axi/ca.pem }   # as for otlp
//!   # stdout: {}                     # JSON lines, for debugging
//! batch:
//!   max_events: 2048                 # events per request (at most 100000)
//!   max_wait: 1s                     # a partial batch leaves after this long
//!   queue_events: 4096               # read-ahead; reading pauses while full
//!   queue_bytes: 67108864            # and while read-ahead + batch in flight hold 64 MiB
//! retry:
//!   initial_backoff: 100ms           # doubles per failed attempt ...
//!   max_backoff: 30s                 # ... up to this; retried until it succeeds
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::access::PathPattern;
pub use crate::output::TlsOptions;
use crate::parse::nginx::LogFormat;
pub use crate::tailer::{Match, MultilineSpec};
use std::num::NonZeroUsize;

/// A configuration error, naming the file and, where known, the line.
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong, starting with the field.
    pub message: String,
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The registry file.
    pub registry: PathBuf,
    /// How often globs are expanded and files read. Defaults to 1 s.
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// The inputs.
    pub inputs: Vec<Input>,
    /// Access-metrics settings.
    #[serde(default)]
    pub access_metrics: AccessMetricsConfig,
    /// Where events go.
    pub output: OutputConfig,
    /// Batching.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Retries.
    #[serde(default)]
    pub retry: RetryConfig,
}

/// How an input's lines are parsed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// nginx access log (`log_format`).
    Nginx,
    /// JSON lines.
    Json,
    /// Plain text with level detection.
    #[default]
    Text,
}

/// Where reading starts in files without a registry entry found at start-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// From the first byte.
    #[default]
    Beginning,
    /// From the current end (only new lines are shipped).
    End,
}

/// One input: a set of globs read with one parser.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Unique name.
    pub name: String,
    /// Globs of files to tail.
    pub paths: Vec<String>,
    /// Globs of paths to leave out.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Parser.
    #[serde(default)]
    pub format: Format,
    /// nginx format name or string. Defaults to `combined`.
    #[serde(default)]
    pub log_format: Option<String>,
    /// `service.name` of the records. Defaults to the input name.
    #[serde(default)]
    pub service: Option<String>,
    /// Derive access metrics (nginx inputs). Defaults to true.
    #[serde(default = "yes")]
    pub access_metrics: bool,
    /// Longest line kept whole, in bytes. Defaults to 1 MiB.
    #[serde(default = "default_max_line")]
    pub max_line_bytes: usize,
    /// The files' character set, a WHATWG encoding label (`gbk`, `gb18030`, `big5`,
    /// `shift_jis`, `euc-kr`, `windows-1252`, ...; not UTF-16 or ISO-2022-JP). Defaults to
    /// UTF-8.
    #[serde(default)]
    pub encoding: Option<String>,
    /// Bytes hashed for the file identity. Defaults to 1024.
    #[serde(default = "default_fingerprint")]
    pub fingerprint_bytes: usize,
    /// Close a file read to its end after this long without new data. Defaults to 5 min.
    #[serde(default = "default_close_inactive", with = "humantime_serde")]
    pub close_inactive: Duration,
    /// Where reading starts in files found at start-up without a registry entry.
    #[serde(default)]
    pub start_at: StartAt,
    /// Joining of continuation lines (stack traces) into one event. Defaults to none.
    #[serde(default)]
    pub multiline: Option<MultilineConfig>,
}

/// Multiline joining by pattern, as Filebeat's `multiline.type: pattern`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    /// Regular expression (Rust `regex` syntax) telling continuation lines.
    pub pattern: String,
    /// Continuation lines are those that do not match. Defaults to false.
    #[serde(default)]
    pub negate: bool,
    /// Join continuation lines to the line before (`after`) or after (`before`). Defaults to
    /// `after`.
    #[serde(default, rename = "match")]
    pub join: Match,
    /// Lines per event at most; further continuation lines are skipped. Defaults to 500.
    #[serde(default = "default_max_lines")]
    pub max_lines: usize,
    /// A pending event is sent this long after its last line. Defaults to 5 s.
    #[serde(default = "default_multiline_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

impl MultilineConfig {
    /// The compiled joining rule.
    ///
    /// # Errors
    ///
    /// When the pattern does not compile or `max_lines` or `timeout` is zero.
    pub fn spec(&self) -> Result<MultilineSpec, String> {
        let max_lines = NonZeroUsize::new(self.max_lines)
            .ok_or_else(|| "max_lines: must be positive".to_owned())?;
        if self.timeout.is_zero() {
            return Err("timeout: must be positive".into());
        }
        Ok(MultilineSpec::new(&self.pattern, self.negate, self.join)
            .map_err(|e| format!("pattern: {e}"))?
            .max_lines(max_lines)
            .timeout(self.timeout))
    }
}

/// Access-metrics settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessMetricsConfig {
    /// Path patterns (`*` one segment, `**` the rest).
    #[serde(default)]
    pub path_patterns: Vec<String>,
    /// Cap on path labels. Defaults to 100.
    #[serde(default = "default_max_paths")]
    pub max_paths: usize,
    /// Cap on virtual hosts. Defaults to 20.
    #[serde(default = "default_max_vhosts")]
    pub max_vhosts: usize,
    /// `vhost` for formats without `$host`. Defaults to `-`.
    #[serde(default = "default_vhost")]
    pub default_vhost: String,
    /// Unique visitors per window.
    #[serde(default)]
    pub unique_visitors: UniqueVisitorsConfig,
}

/// `nginx_http_unique_visitors{vhost,window}`: distinct clients per window (HyperLogLog).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UniqueVisitorsConfig {
    /// Whether to estimate them (16 KiB per virtual host). Defaults to true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Window length (tumbling, aligned to the epoch). Defaults to 5 min.
    #[serde(default = "default_visitor_window", with = "humantime_serde")]
    pub window: Duration,
    /// A visitor is an address and user agent, not just an address. Defaults to false.
    #[serde(default)]
    pub include_user_agent: bool,
}

impl Default for UniqueVisitorsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            window: default_visitor_window(),
            include_user_agent: false,
        }
    }
}

impl Default for AccessMetricsConfig {
    fn default() -> Self {
        Self {
            path_patterns: Vec::new(),
            max_paths: default_max_paths(),
            max_vhosts: default_max_vhosts(),
            default_vhost: default_vhost(),
            unique_visitors: UniqueVisitorsConfig::default(),
        }
    }
}

/// The output: exactly one of the fields.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// OTLP logs over HTTP/protobuf.
    #[serde(default)]
    pub otlp: Option<OtlpOutputConfig>,
    /// JSON lines on standard output.
    #[serde(default)]
    pub stdout: Option<StdoutConfig>,
    /// Elasticsearch `_bulk`.
    #[serde(default)]
    pub elasticsearch: Option<ElasticsearchOutputConfig>,
}

/// Elasticsearch `_bulk` output.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchOutputConfig {
    /// Base URL of the cluster (`/_bulk` is appended), e.g. `http://127.0.0.1:9200`.
    pub endpoint: String,
    /// Indices are `<index_prefix>-YYYY.MM.DD` (UTC day of the event). Defaults to `logs`.
    #[serde(default = "default_index_prefix")]
    pub index_prefix: String,
    /// Per-request timeout. Defaults to 10 s.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Extra request headers (`authorization: "ApiKey ..."`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// TLS of an `https://` endpoint. Defaults to the system trust store.
    #[serde(default)]
    pub tls: Option<TlsOptions>,
}

/// JSON lines on standard output (no settings).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {}

/// The OTLP transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    /// `POST {endpoint}/v1/logs` with a protobuf body (port 4318).
    #[default]
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// `LogsService/Export` over gRPC (port 4317).
    #[serde(rename = "grpc")]
    Grpc,
}

/// OTLP output.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpOutputConfig {
    /// Base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/logs` is appended for
    /// `http/protobuf`).
    pub endpoint: String,
    /// `http/protobuf` or `grpc`, as `OTEL_EXPORTER_OTLP_PROTOCOL`. Defaults to
    /// `http/protobuf`.
    #[serde(default)]
    pub protocol: OtlpProtocol,
    /// Per-request timeout. Defaults to 10 s.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// TLS of an `https://` endpoint. Defaults to the system trust store.
    #[serde(default)]
    pub tls: Option<TlsOptions>,
}

/// Batching and read-ahead.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Events per request. Defaults to 2048 (per-request costs: the HTTP exchange, the
    /// registry write, are shared by more events; see `bench/throughput.sh`).
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// A partial batch is sent after this long. Defaults to 1 s.
    #[serde(default = "default_max_wait", with = "humantime_serde")]
    pub max_wait: Duration,
    /// Events read ahead of the output; reading pauses while this many wait. Defaults to 4096.
    #[serde(default = "default_queue")]
    pub queue_events: usize,
    /// Bytes of events read ahead of the output and in the batch being sent; reading pauses
    /// while they hold this many. Defaults to 64 MiB (67108864). An event larger alone is
    /// read when nothing else is held.
    #[serde(default = "default_queue_bytes")]
    pub queue_bytes: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_events: default_max_events(),
            max_wait: default_max_wait(),
            queue_events: default_queue(),
            queue_bytes: default_queue_bytes(),
        }
    }
}

/// Retry backoff.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// First wait. Defaults to 100 ms.
    #[serde(default = "default_initial_backoff", with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest wait. Defaults to 30 s.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_poll() -> Duration {
    Duration::from_secs(1)
}
fn default_max_line() -> usize {
    1 << 20
}
fn default_fingerprint() -> usize {
    1024
}
fn default_close_inactive() -> Duration {
    Duration::from_secs(300)
}
fn default_max_paths() -> usize {
    100
}
fn default_max_vhosts() -> usize {
    20
}
fn default_vhost() -> String {
    "-".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_visitor_window() -> Duration {
    Duration::from_secs(300)
}
fn default_max_lines() -> usize {
    500
}
fn default_multiline_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_index_prefix() -> String {
    "logs".into()
}
fn default_max_events() -> usize {
    2048
}
fn default_max_wait() -> Duration {
    Duration::from_secs(1)
}
fn default_queue() -> usize {
    4096
}
fn default_queue_bytes() -> u64 {
    crate::budget::DEFAULT_QUEUE_BYTES
}
fn default_initial_backoff() -> Duration {
    Duration::from_millis(100)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}

impl Input {
    /// The compiled nginx format of an nginx input (`combined` by default).
    ///
    /// # Errors
    ///
    /// When the format string does not compile.
    pub fn nginx_format(&self) -> Result<LogFormat, crate::parse::nginx::FormatError> {
        LogFormat::named_or_compile(self.log_format.as_deref().unwrap_or("combined"))
    }
}

impl Config {
    /// Reads and validates `path`.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or is not a valid configuration.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates `text`, read from `file`.
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load): unknown or missing fields, bad values (file:line), duplicate
    /// input names, invalid globs, nginx formats or path patterns, zero sizes, not exactly one
    /// output, an endpoint other than `http://` or `https://`, TLS settings on an `http://`
    /// endpoint, TLS files that cannot be used (the field and its line are named).
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        let err = |line: Option<usize>, message: String| ConfigError {
            file: file.to_owned(),
            line,
            message,
        };
        let config: Config = serde_norway::from_str(text)
            .map_err(|e| err(e.location().map(|l| l.line()), e.to_string()))?;
        if config.inputs.is_empty() {
            return Err(err(
                line_of(text, "inputs"),
                "inputs: at least one input is needed".into(),
            ));
        }
        if config.poll_interval.is_zero() {
            return Err(err(
                line_of(text, "poll_interval"),
                "poll_interval: must be positive".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for input in &config.inputs {
            // The input's own lines: a field's error points at its key there, else at the
            // input's `name:` (the first line mentioning a word can be another section's).
            let block = input_block(text, &input.name);
            let line = block.map(|b| b.name_line);
            let key = |k: &str| block.and_then(|b| b.key_line(text, k)).or(line);
            let field =
                |f: &str, m: String| err(key(f), format!("inputs[{}].{f}: {m}", input.name));
            if !names.insert(input.name.as_str()) {
                return Err(field("name", "duplicate input name".into()));
            }
            if input.paths.is_empty() {
                return Err(field("paths", "at least one glob is needed".into()));
            }
            for g in input.paths.iter().chain(&input.exclude) {
                glob::Pattern::new(g).map_err(|e| {
                    err(
                        block.and_then(|b| b.line_with(text, g)).or(line),
                        format!("inputs[{}]: invalid glob {g:?}: {e}", input.name),
                    )
                })?;
            }
            if input.format == Format::Nginx {
                input.nginx_format().map_err(|e| {
                    err(
                        input
                            .log_format
                            .as_deref()
                            .filter(|f| !f.is_empty())
                            .and_then(|_| key("log_format"))
                            .or(line),
                        format!("inputs[{}].log_format: {e}", input.name),
                    )
                })?;
            } else if input.log_format.is_some() {
                return Err(field(
                    "log_format",
                    "only nginx inputs have a log_format".into(),
                ));
            }
            if input.max_line_bytes == 0 {
                return Err(field("max_line_bytes", "must be positive".into()));
            }
            if input.fingerprint_bytes == 0 {
                return Err(field("fingerprint_bytes", "must be positive".into()));
            }
            if input.close_inactive.is_zero() {
                return Err(field("close_inactive", "must be positive".into()));
            }
            if let Some(label) = &input.encoding {
                encoding(label).map_err(|e| {
                    err(
                        key("encoding"),
                        format!("inputs[{}].encoding: {e}", input.name),
                    )
                })?;
            }
            if let Some(m) = &input.multiline {
                m.spec().map_err(|e| {
                    err(
                        key("multiline"),
                        format!("inputs[{}].multiline.{e}", input.name),
                    )
                })?;
            }
        }
        for p in &config.access_metrics.path_patterns {
            PathPattern::parse(p).map_err(|m| {
                err(
                    line_of(text, p),
                    format!("access_metrics.path_patterns: {m}"),
                )
            })?;
        }
        let uv = &config.access_metrics.unique_visitors;
        if uv.window < Duration::from_secs(1) {
            return Err(err(
                line_of(text, "unique_visitors"),
                "access_metrics.unique_visitors.window: at least 1s".into(),
            ));
        }
        let o = &config.output;
        let endpoint = match (&o.otlp, &o.stdout, &o.elasticsearch) {
            (Some(o), None, None) => Some(("otlp", &o.endpoint, &o.tls)),
            (None, Some(_), None) => None,
            (None, None, Some(e)) => {
                let p = &e.index_prefix;
                // Elasticsearch index names: lower case, no leading `-_+`, none of `\/*?"<>| ,#:`.
                if p.is_empty()
                    || p.starts_with(['-', '_', '+'])
                    || p.chars().any(|c| {
                        c.is_uppercase() || "\\/*?\"<>| ,#:".contains(c) || c.is_whitespace()
                    })
                {
                    return Err(err(
                        line_of(text, "index_prefix"),
                        format!(
                            "output.elasticsearch.index_prefix: {p:?} is not a valid index name (lower case, no spaces or \\/*?\"<>|,#:)"
                        ),
                    ));
                }
                Some(("elasticsearch", &e.endpoint, &e.tls))
            }
            _ => {
                return Err(err(
                    line_of(text, "output"),
                    "output: exactly one of otlp, elasticsearch or stdout is needed".into(),
                ));
            }
        };
        if let Some((kind, endpoint, tls)) = endpoint {
            let uri: http::Uri = endpoint.parse().map_err(|e| {
                err(
                    line_of(text, "endpoint"),
                    format!("output.{kind}.endpoint: {endpoint:?} is not a URL: {e}"),
                )
            })?;
            let https = uri.scheme_str() == Some("https");
            if !(https || uri.scheme_str() == Some("http")) || uri.host().is_none() {
                return Err(err(
                    line_of(text, "endpoint"),
                    format!(
                        "output.{kind}.endpoint: expected http://host:port or https://host:port, got {endpoint:?}"
                    ),
                ));
            }
            if let Some(tls) = tls {
                if !https && !tls.is_default() {
                    return Err(err(
                        line_of(text, "tls").or(line_of(text, "endpoint")),
                        format!(
                            "output.{kind}.tls: TLS settings need an https:// endpoint, got {endpoint:?}"
                        ),
                    ));
                }
                // Reads the files now, so that a missing CA or a key that does not fit the
                // certificate stops the start, not the first send.
                tls.client_config().map_err(|e| {
                    err(
                        line_of(text, e.field()).or(line_of(text, "tls")),
                        format!("output.{kind}.tls.{e}"),
                    )
                })?;
            }
        }
        let b = &config.batch;
        if b.max_events == 0 || b.queue_events == 0 || b.queue_bytes == 0 || b.max_wait.is_zero() {
            return Err(err(
                line_of(text, "batch"),
                "batch: max_events, queue_events, queue_bytes and max_wait must be positive".into(),
            ));
        }
        // A batch's buffer is allocated whole: an absurd size would abort the process.
        for (name, value, max) in [
            ("max_events", b.max_events, MAX_BATCH_EVENTS),
            ("queue_events", b.queue_events, MAX_QUEUE_EVENTS),
        ] {
            if value > max {
                return Err(err(
                    line_of(text, name).or(line_of(text, "batch")),
                    format!("batch.{name}: {value} is more than the {max} allowed"),
                ));
            }
        }
        let r = &config.retry;
        if r.initial_backoff.is_zero() || r.max_backoff < r.initial_backoff {
            return Err(err(
                line_of(text, "retry"),
                "retry: initial_backoff must be positive and at most max_backoff".into(),
            ));
        }
        Ok(config)
    }
}

/// The most events `batch.max_events` allows: an Elasticsearch bulk request or an OTLP
/// export of more is far past what either accepts well.
pub const MAX_BATCH_EVENTS: usize = 100_000;

/// The most events `batch.queue_events` allows (the queue is bounded in bytes too).
pub const MAX_QUEUE_EVENTS: usize = 10_000_000;

/// The first line (1-based) mentioning `needle`, to point at errors found after parsing.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

/// The lines of one `inputs` item: from the `- ` line that opens it to the next item or the
/// end of its block (0-based, end excluded), and its `name:` line (1-based).
#[derive(Clone, Copy, Debug)]
struct InputBlock {
    start: usize,
    end: usize,
    name_line: usize,
}

impl InputBlock {
    /// The line (1-based) in the block whose key is `key` (`key:` first on the line, after
    /// an item's `- `).
    fn key_line(self, text: &str, key: &str) -> Option<usize> {
        self.position(text, |l| yaml_key(l) == Some(key))
    }

    /// The line (1-based) in the block that holds `needle`.
    fn line_with(self, text: &str, needle: &str) -> Option<usize> {
        self.position(text, |l| l.contains(needle))
    }

    fn position(self, text: &str, f: impl Fn(&str) -> bool) -> Option<usize> {
        text.lines()
            .enumerate()
            .skip(self.start)
            .take(self.end - self.start)
            .find(|(_, l)| f(l))
            .map(|(i, _)| i + 1)
    }
}

/// The key of a block-style YAML line (`  key: value`, `- key: value`), if it has one.
fn yaml_key(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let t = t.strip_prefix("- ").map_or(t, str::trim_start);
    let (k, _) = t.split_once(':')?;
    let k = k.trim_end();
    (!k.is_empty() && !k.starts_with('#') && !k.contains(' ')).then_some(k)
}

/// The block of the input named `name` (its `name:` line with that value, unquoted).
fn input_block(text: &str, name: &str) -> Option<InputBlock> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let name_at = lines.iter().position(|l| {
        yaml_key(l) == Some("name")
            && l.split_once(':').is_some_and(|(_, v)| {
                let v = v.split(" #").next().unwrap_or(v).trim();
                v.trim_matches(|c| c == '\'' || c == '"') == name
            })
    })?;
    // The item's opening `- ` line: this one, or the nearest above at a smaller indent.
    let start = (0..=name_at)
        .rev()
        .find(|&i| {
            lines[i].trim_start().starts_with("- ")
                && (i == name_at || indent(lines[i]) < indent(lines[name_at]))
        })
        .unwrap_or(name_at);
    let dash = indent(lines[start]);
    let end = (start + 1..lines.len())
        .find(|&i| {
            let l = lines[i];
            let t = l.trim_start();
            !t.is_empty()
                && !t.starts_with('#')
                && (indent(l) < dash || (indent(l) == dash && t.starts_with('-')))
        })
        .unwrap_or(lines.len());
    Some(InputBlock {
        start,
        end,
        name_line: name_at + 1,
    })
}

#[cfg(test)]
mod tests;

/// The encoding named by `label` (a WHATWG label, as browsers read them); `None` for UTF-8,
/// which needs no decoding.
///
/// # Errors
///
/// An unknown label, and an encoding whose text is not split into lines at `\n` bytes
/// (UTF-16, ISO-2022-JP, the replacement encoding).
pub fn encoding(label: &str) -> Result<Option<&'static encoding_rs::Encoding>, String> {
    let e = encoding_rs::Encoding::for_label(label.trim().as_bytes()).ok_or_else(|| {
        format!(
            "unknown encoding {label:?} (a WHATWG label: utf-8, gbk, gb18030, big5, shift_jis, \
             euc-jp, euc-kr, windows-1252, iso-8859-2, koi8-r, ...)"
        )
    })?;
    if e == encoding_rs::UTF_8 {
        return Ok(None);
    }
    if !e.is_ascii_compatible() || e == encoding_rs::REPLACEMENT {
        return Err(format!(
            "encoding {label:?} ({}) is not supported: files are split into lines at newline \
             bytes, which only ASCII-compatible encodings keep",
            e.name()
        ));
    }
    Ok(Some(e))
}
