//! Deploy monitoring for axi-obs: **not yet implemented** (issue "axi-obs-deploy: deploy events,
//! hooks, history, a live stream, and the `axi-deploy` CLI").
//!
//! This crate will hold a typed deploy event model (started, step, succeeded, failed, rolled
//! back), hooks that turn deploys into metrics, logs, traces, notifications and a live stream,
//! an SQLite history with DORA figures, and the `axi-deploy` CLI for CI pipelines. It exports
//! nothing yet.
