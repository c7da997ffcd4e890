//! The demo's error bodies name the request id, as the layer echoes it and logs it.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::{Demo, poll};

/// Posts a rejected order (unknown product), with `x-request-id` when given: the status, the
/// echoed id and the JSON body.
fn reject(demo: &Demo, id: Option<&str>) -> (u16, String, serde_json::Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req = reqwest::Client::new()
            .post(demo.url("/api/orders"))
            .json(&serde_json::json!({ "product_id": 999, "quantity": 1 }));
        if let Some(id) = id {
            req = req.header("x-request-id", id);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let echoed = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        (status, echoed, res.json().await.unwrap())
    })
}

#[test]
fn a_rejected_order_names_its_request_id() {
    let demo = Demo::start_with(&[], &[]);
    let (status, echoed, body) = reject(&demo, Some("order-test-1"));
    assert_eq!(status, 422);
    assert_eq!(echoed, "order-test-1");
    assert_eq!(body["error"], "unknown product");
    assert_eq!(body["request_id"], "order-test-1");

    // A generated id: the body and the response header agree, and so does the log line.
    let (_, echoed, body) = reject(&demo, None);
    assert_eq!(echoed.len(), 32);
    assert_eq!(body["request_id"], echoed.as_str());
    let line = poll(Duration::from_secs(10), "the rejection's log line", || {
        demo.logs()
            .into_iter()
            .find(|l| l["message"] == "order rejected" && l["http.request.id"] == echoed.as_str())
    });
    assert_eq!(line["reason"], "unknown product");
}
