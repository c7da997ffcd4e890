//! `GET /metrics` of the `axi-alert` servers: the registry of the installed axi-obs-core
//! telemetry (delivery counters in Alertmanager's naming, remediation counters, ...) as
//! Prometheus text, as Prometheus and Alertmanager expose their own.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The Prometheus text of the installed telemetry's registry; 404 when no telemetry is
/// installed (the library used without `axi_obs_core::Telemetry`).
pub(crate) async fn metrics() -> Response {
    match axi_obs_core::global_metrics() {
        Some(m) => (
            [(header::CONTENT_TYPE, axi_obs_core::metrics::CONTENT_TYPE)],
            m.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no metrics registry installed\n").into_response(),
    }
}
