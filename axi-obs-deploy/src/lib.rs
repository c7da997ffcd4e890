//! Deploy monitoring for axi-obs: a deployment is a typed, durable event stream that feeds
//! metrics, logs, traces, notifications and a history with DORA figures.
//!
//! ```
//! use std::time::Duration;
//! use axi_obs_deploy::dispatch::Dispatcher;
//! use axi_obs_deploy::hook::{LogHook, MetricsHook};
//! use axi_obs_deploy::store::{History, HistoryHook};
//! use axi_obs_deploy::{DeploySpec, Status, Tracker};
//!
//! let dir = tempfile::tempdir()?;
//! let db = dir.path().join("deploys.db");
//!
//! // Hooks run on their own thread behind a bounded queue: a slow hook never blocks a deploy.
//! let dispatcher = Dispatcher::builder()
//!     .hook(MetricsHook::new()) // deploys_total, deploy_duration_seconds, ...
//!     .hook(LogHook::new()) // one structured log event per transition
//!     .hook(HistoryHook::new(History::open(&db)?))
//!     .build()?;
//! let tracker = Tracker::new(dispatcher);
//!
//! let deploy = tracker.start_with(DeploySpec::new("shop-api", "prod", "1.4.2").commit("3f2a9c1"));
//! deploy.run_step("migrate", || Ok::<_, std::io::Error>(()))?;
//! let step = deploy.step("restart");
//! step.succeed();
//! deploy.succeed(); // dropping `deploy` unfinished would record it as failed ("abandoned")
//!
//! tracker.dispatcher().flush(Duration::from_secs(5));
//! let last = History::open(&db)?.last_deployment("shop-api", Some("prod"))?.expect("recorded");
//! assert_eq!(last.status, Status::Succeeded);
//! assert_eq!(last.steps.len(), 2);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Parts
//!
//! * [`event`]: the events (started, step started / finished, succeeded, failed, rolled back,
//!   cancelled) and their versioned JSON form (`"schema": 1`), which other tools may produce.
//! * [`Deployment`]: the state folded from events (also what the history returns).
//! * [`tracker`]: [`Tracker`] → [`Deploy`] → [`StepGuard`]; unfinished handles record a
//!   failure with reason `abandoned`, so no deployment is silently lost.
//! * [`dispatch`]: the bounded hook queue. **When full it drops the newest event** and counts
//!   it in `axi_deploy_hook_events_dropped_total`; hook errors and panics are counted in
//!   `axi_deploy_hook_failures_total{hook}` and logged, rate-limited.
//! * [`hook`]: the [`Hook`](hook::Hook) trait (closures are hooks), [`MetricsHook`](hook::MetricsHook),
//!   [`LogHook`](hook::LogHook); metric names in [`names`].
//! * [`store`] (feature `sqlite`): the SQLite history (WAL, migrations, idempotent by event id),
//!   list and filter, "last deployment of X", success rate, p50/p95 duration and the four
//!   DORA figures.
//! * [`session`] and [`spool`] (the latter with feature `cli`): what the `axi-deploy` CLI is made of: events
//!   built across processes, `##[step] NAME` marker lines, and the on-disk spool delivered
//!   at-least-once.
//! * [`stream`] (feature `stream`): [`LiveStream`](stream::LiveStream), a hook that keeps the
//!   last N events with sequence numbers and broadcasts them; slow subscribers are
//!   resynchronised from the ring or told what they missed, never waited for.
//! * [`http`] (feature `http`): [`DeployRoutes`](http::DeployRoutes), axum routes for event
//!   intake (what `axi-deploy --endpoint` posts to; its events also run through the metrics,
//!   log and trace hooks), the SSE stream and the [WebSocket](http::ws) stream with `Last-Event-ID`
//!   replay, history, stats, Grafana annotations, and [GitHub webhooks](http::github)
//!   verified with `X-Hub-Signature-256`.
//! * [`trace`]: [`TraceHook`](trace::TraceHook), one OpenTelemetry span per deployment with a
//!   child span per step, through the tracer provider `axi_obs_core` installs.
//! * [`notify`] (feature `notify`): [`NotifyHook`](notify::NotifyHook) posts a JSON summary of
//!   each finished deployment to a webhook, from the dispatcher's thread.
//! * [`alert`] (feature `alert`): [`LastDeployEnricher`](alert::LastDeployEnricher), the
//!   last deployment of an alert's project and environment added to its annotations through
//!   axi-obs-alert's enricher hook ("started 3 min after v1.4.2 of axi-star-cloud went out").
//! * [`robot`] (feature `alert`): [`RobotNotifyHook`](robot::RobotNotifyHook), finished
//!   deployments sent to DingTalk (signed) and WeCom robots through axi-obs-alert's
//!   integrations.
//! * [`clock`]: injected time, so tests are exact.
//!
//! # Features
//!
//! | feature | default | what |
//! |---|---|---|
//! | `sqlite` | yes | [`store`]: the SQLite history (SQLite compiled in) |
//! | `cli` | yes | the `axi-deploy` binary, [`spool`] (adds clap, anyhow, axi-obs-core's HTTPS client) |
//! | `stream` | with `http` | [`stream`]: the live stream hook (adds tokio's `sync`) |
//! | `http` | yes | [`http`]: the axum routes (adds axum, hmac, sha2, and for the WebSocket hyper-util, sha1, tungstenite; implies `sqlite`, `stream`) |
//! | `notify` | yes | [`notify`]: [`NotifyHook`](notify::NotifyHook), a JSON summary per finished deployment posted to a webhook (`http://` or `https://`; adds axi-obs-core's HTTPS client) |
//! | `alert` | no | [`alert`]: deploy-aware alert annotations; [`robot`]: DingTalk / WeCom deploy notifications (adds axi-obs-alert; implies `sqlite`, `notify`) |
//!
//! Library users who only track deploys in a service can use `default-features = false`
//! (plus `sqlite` for the history).

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alert")]
#[cfg_attr(docsrs, doc(cfg(feature = "alert")))]
pub mod alert;
pub mod clock;
pub mod dispatch;
pub mod event;
pub mod hook;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
mod model;
pub mod names;
#[cfg(feature = "notify")]
#[cfg_attr(docsrs, doc(cfg(feature = "notify")))]
pub mod notify;
#[cfg(feature = "alert")]
#[cfg_attr(docsrs, doc(cfg(feature = "alert")))]
pub mod robot;
pub mod session;
#[cfg(feature = "cli")]
#[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
pub mod spool;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod store;
#[cfg(feature = "stream")]
#[cfg_attr(docsrs, doc(cfg(feature = "stream")))]
pub mod stream;
pub mod trace;
pub mod tracker;

pub use event::{Event, EventKind};
pub use model::{Deployment, Status, Step};
pub use tracker::{Deploy, DeploySpec, StepGuard, Tracker};
