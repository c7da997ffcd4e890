//! `OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS`, read once per process: the test runs itself
//! again as a child process with the variable set (a process's environment is not changed
//! from inside it), and the child checks what `ObsLayer::new()` made of it.

#![allow(clippy::unwrap_used)]

use std::process::Command;

use axi_obs_axum::{KNOWN_METHODS_ENV, ObsLayer};
use axi_obs_core::testing::Capture;
use axum::Router;
use axum::body::Body;
use http::Request;
use tower::ServiceExt;

/// Set in the child: the test body runs there.
const CHILD: &str = "AXI_KNOWN_METHODS_CHILD";

/// Runs `test` of this binary in a child process with the variable set to `value`.
fn in_child(test: &str, value: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env(KNOWN_METHODS_ENV, value)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("1 passed"), "the child ran no test: {said}");
}

/// The methods each request's metric was recorded under.
async fn methods_recorded(methods: &[&str]) -> String {
    let cap = Capture::new();
    let app = Router::new()
        .route("/dav", axum::routing::any(|| async { "dav" }))
        .layer(
            ObsLayer::new()
                .recorder(cap.recorder().clone())
                .spans(false)
                .access_log(false),
        );
    for m in methods {
        let req = Request::builder()
            .method(http::Method::from_bytes(m.as_bytes()).unwrap())
            .uri("/dav")
            .body(Body::empty())
            .unwrap();
        app.clone().oneshot(req).await.unwrap();
    }
    cap.metrics_handle().render()
}

fn count(page: &str, method: &str) -> Option<String> {
    let prefix =
        format!("http_server_request_duration_seconds_count{{http_request_method=\"{method}\",");
    page.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next())
        .map(str::to_owned)
}

/// The variable replaces the default list: the methods it names are recorded as themselves,
/// every other one (a default method too) as `_OTHER`.
#[tokio::test(flavor = "current_thread")]
async fn the_variable_overrides_the_known_methods() {
    if std::env::var_os(CHILD).is_none() {
        in_child(
            "the_variable_overrides_the_known_methods",
            "GET, PROPFIND,REPORT",
        );
        return;
    }
    let page = methods_recorded(&["PROPFIND", "PROPFIND", "REPORT", "GET", "POST", "MKCOL"]).await;
    assert_eq!(count(&page, "PROPFIND").as_deref(), Some("2"), "{page}");
    assert_eq!(count(&page, "REPORT").as_deref(), Some("1"), "{page}");
    assert_eq!(count(&page, "GET").as_deref(), Some("1"), "{page}");
    assert_eq!(count(&page, "_OTHER").as_deref(), Some("2"), "{page}");
    assert_eq!(count(&page, "POST"), None, "{page}");
}

/// A value with an entry that is no method token is ignored as a whole (with a warning), as
/// the OpenTelemetry specification treats an unusable variable: the default list holds.
#[tokio::test(flavor = "current_thread")]
async fn an_unusable_value_leaves_the_default_list() {
    if std::env::var_os(CHILD).is_none() {
        in_child(
            "an_unusable_value_leaves_the_default_list",
            "GET,BAD METHOD",
        );
        return;
    }
    let page = methods_recorded(&["PROPFIND", "POST", "GET"]).await;
    assert_eq!(count(&page, "POST").as_deref(), Some("1"), "{page}");
    assert_eq!(count(&page, "GET").as_deref(), Some("1"), "{page}");
    assert_eq!(count(&page, "_OTHER").as_deref(), Some("1"), "{page}");
}
