//! axum integration for axi-obs: **not yet implemented** (issue "axi-obs-axum: one layer for
//! HTTP metrics, server spans, request ids and access logs").
//!
//! This crate will hold a tower layer for axum 0.8 routers that records
//! `http.server.request.duration` / `http.server.active_requests` with OpenTelemetry
//! semantic-convention names, a server span continuing the caller's W3C trace, a request id
//! and one access-log line per request, plus the `/metrics`, `/healthz`, `/readyz` and
//! `/version` routes. Until then it exports nothing; use `axi_obs_core::MetricsHandle::render`
//! to serve `/metrics` yourself.
