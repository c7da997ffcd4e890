//! `GET /metrics` of the `axi-alert` servers: the registry of the installed axi-obs-core
//! telemetry (delivery counters in Alertmanager's naming, remediation counters, ...) as
//! Prometheus text, as Prometheus and Alertmanager expose their own.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The Prometheus text of the installed telemetry's registry, gzipped when the scraper
/// takes it (as Prometheus's and Alertmanager's own pages are); 404 when no telemetry is
/// installed (the library used without `axi_obs_core::Telemetry`).
pub(crate) async fn metrics(headers: HeaderMap) -> Response {
    match axi_obs_core::global_metrics() {
        Some(m) => page(&headers, axi_obs_core::metrics::CONTENT_TYPE, m.render()),
        None => (StatusCode::NOT_FOUND, "no metrics registry installed\n").into_response(),
    }
}

/// A Prometheus text page of `content_type`, gzipped when `headers` accept it.
pub(crate) fn page(headers: &HeaderMap, content_type: &'static str, text: String) -> Response {
    let ctype = (header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let vary = (header::VARY, HeaderValue::from_static("Accept-Encoding"));
    match axi_obs_core::__private::gzip_if_accepted(headers, text.as_bytes()) {
        Some(zipped) => {
            let gzip = (header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            ([ctype, vary, gzip], zipped).into_response()
        }
        None => ([ctype, vary], text).into_response(),
    }
}
