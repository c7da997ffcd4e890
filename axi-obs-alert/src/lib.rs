//! Alerting for axi-obs: **not yet implemented** (issues "axi-obs-alert engine" and
//! "axi-obs-alert delivery").
//!
//! This crate will hold Prometheus-format rule files with `promtool`-compatible validation, a
//! PromQL engine judged by Prometheus's own promqltest files, the alert life-cycle exactly as
//! Prometheus runs it, and Alertmanager-compatible delivery to webhook, mail, DingTalk and
//! WeCom. It exports nothing yet.
