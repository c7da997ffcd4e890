//! Alerting for axi-obs: Prometheus-format rules evaluated by a PromQL engine of our own.
//!
//! Built in slices; present now:
//!
//! - [`delivery`]: Alertmanager configuration (strict), routing and group keys exactly as
//!   Alertmanager, a built-in router (grouping, inhibition, silences, the notification log,
//!   state that survives `kill -9`) delivering webhook payload v4, mail, DingTalk and WeCom
//!   robots, Alertmanager's HTTP API v2 (`axi-alert alertmanager`), and a Prometheus-style
//!   sender to real Alertmanagers (`POST /api/v2/alerts`).
//! - [`promql`]: parse with `promql-parser` plus Prometheus's extra checks, evaluate instant
//!   and range queries over any [`promql::Storage`] with Prometheus 3 semantics (left-open
//!   windows, 5 m lookback, staleness markers, rate extrapolation, every stable float
//!   function and aggregation, vector matching with `on`/`ignoring`/`group_*`, `@`,
//!   subqueries, sample and time limits). Native histograms and experimental syntax are
//!   refused with an "unsupported" error.
//! - [`promqltest`]: Prometheus's own PromQL conformance scripts, run against the engine
//!   (`axi-alert promqltest`).
//! - [`rules`]: rule files loaded and validated as `promtool check rules` does
//!   (`axi-alert check`), and rule groups evaluated with Prometheus's alert life-cycle.
//! - [`template`]: Go `text/template` with Prometheus's template functions, for alert labels
//!   and annotations.
//! - [`unittest`]: rule unit tests in promtool's format (`axi-alert test`).
//! - [`daemon`] and [`scrape`]: `axi-alert run`, the standalone evaluator scraping static
//!   targets with a Prometheus-compatible configuration.
//! - [`inprocess`]: rules evaluated inside a service over its own axi-obs-core metrics, on a
//!   background thread, no Prometheus needed.
//! - [`enrich`]: annotation enrichers (a deploy-aware alert: "started 3 min after v1.4.2
//!   went out"), run on the alerts [`inprocess`] hands out.
//!
//! Next: remote write of recorded series, and native histograms.
//!
//! ```
//! use axi_obs_alert::promql::{parse, Engine, Labels, MemStorage, Value};
//!
//! let mut store = MemStorage::new();
//! let up = Labels::from_pairs([("__name__", "up"), ("job", "api"), ("instance", "a:80")]);
//! store.add(&up, 0, 0.0);
//! let Value::Vector(down) = Engine::default()
//!     .instant(&store, &parse("up == 0").unwrap(), 10_000)
//!     .unwrap()
//! else {
//!     unreachable!()
//! };
//! assert_eq!(down[0].labels.get("instance"), Some("a:80"));
//! ```

mod civil;
pub mod daemon;
pub mod delivery;
pub mod enrich;
#[cfg(feature = "api")]
mod exposition;
mod goregex;
pub mod inprocess;
pub mod promql;
pub mod promqltest;
pub mod rules;
pub mod scrape;
pub mod template;
pub mod unittest;
