//! `axi-log-shipper`: tails log files without losing a line, parses nginx access logs (any
//! `log_format`), JSON lines (axi-obs-core's ECS fields) and plain text, derives access
//! metrics for `/metrics`, and ships the events as OTLP logs, into Elasticsearch (`_bulk`) or
//! as JSON lines on stdout.
//!
//! * [`tailer`]: globs polled, files followed by device + inode + fingerprint across
//!   rename, copytruncate and deletion; partial lines held; long lines cut; multiline
//!   joining (stack traces) by pattern.
//! * [`registry`]: offsets persisted atomically, advanced only after the output acknowledged:
//!   at-least-once, a restart or `kill -9` loses nothing.
//! * [`parse`]: nginx `log_format` compiler, JSON lines, text with level detection.
//! * [`access`]: `nginx_http_requests_total{vhost,method,status_class}` and friends, with
//!   bounded labels; [`visitors`]: unique visitors per window with a [`hll`] HyperLogLog.
//! * [`output`]: OTLP/HTTP protobuf, OTLP/gRPC, Elasticsearch `_bulk` (over `http://` or
//!   `https://`, see [`output::tls`]) and JSON lines; [`pipeline`]: bounded queue, batches,
//!   retries with backoff, backpressure that pauses reading.
//! * [`config`]: the YAML file.

pub mod access;
pub mod budget;
pub mod config;
pub mod hll;
pub mod names;
pub mod output;
pub mod parse;
pub mod pipeline;
pub mod record;
pub mod registry;
pub mod tailer;
pub mod visitors;
