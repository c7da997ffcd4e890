//! `/api/v1/status/buildinfo`, which Grafana reads when a Prometheus data source is saved to
//! tell which Prometheus (and which of its features) it talks to.

use axum::response::Response;
use serde_json::json;

use super::query_api::answer;

/// The Prometheus release whose HTTP API this daemon answers, and whose answers
/// `tests/run_query_api.rs` compares it with. Reported as `version`, as other servers of
/// Prometheus's API do (VictoriaMetrics, for one), so Grafana enables what that release
/// supports; `revision` names what really answers.
const PROMETHEUS_API_VERSION: &str = "3.5.0";

/// `GET /api/v1/status/buildinfo`: Prometheus's fields, all present (clients decode them as
/// a struct); the Go-specific ones empty.
pub(super) async fn buildinfo() -> Response {
    let data = json!({
        "version": PROMETHEUS_API_VERSION,
        "revision": concat!("axi-alert ", env!("CARGO_PKG_VERSION")),
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    });
    answer(Ok::<_, super::query_api::ApiError>(data.to_string()))
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn buildinfo_has_prometheus_fields_and_names_axi_alert() {
        let r = super::buildinfo().await;
        assert_eq!(r.status(), 200);
        let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["status"], "success");
        let data = v["data"].as_object().unwrap();
        let mut keys: Vec<&str> = data.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "branch",
                "buildDate",
                "buildUser",
                "goVersion",
                "revision",
                "version"
            ]
        );
        assert!(data["revision"].as_str().unwrap().starts_with("axi-alert "));
    }
}
