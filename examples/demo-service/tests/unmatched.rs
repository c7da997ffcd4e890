//! The demo observes requests that match no route: its layer wraps every route and the 404
//! fallback (the operational routes are merged in before the layer, not after).

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::{Demo, get, poll};

#[test]
fn unmatched_requests_are_observed() {
    let demo = Demo::start(&[]);
    // A 404: `get` answers `None` for any non-success status.
    assert_eq!(get(&demo.url("/no/such/page?x=1")), None);
    get(&demo.url("/healthz")).unwrap();
    let page = poll(Duration::from_secs(10), "the 404 on /metrics", || {
        let page = get(&demo.url("/metrics"))?;
        page.contains("http_route=\"unmatched\"").then_some(page)
    });
    assert!(
        page.lines().any(
            |l| l.starts_with("http_server_request_duration_seconds_count{")
                && l.contains("http_response_status_code=\"404\"")
                && l.contains("http_route=\"unmatched\"")
        ),
        "{page}"
    );
    assert!(!page.contains("http_route=\"/healthz\""), "{page}");
    let line = poll(Duration::from_secs(10), "the 404's access-log line", || {
        demo.logs().into_iter().find(|l| {
            l["log.logger"] == "axi_obs_axum::access" && l["http.response.status_code"] == 404
        })
    });
    assert_eq!(line["url.path"], "/no/such/page");
    assert_eq!(line["http.route"], "unmatched");
}
