//! The demo's `/metrics` page passes `promtool check metrics` (Prometheus 3.x) with no findings.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Demo, get, poll};

#[test]
fn metrics_page_passes_promtool_check_metrics() {
    let Some(promtool) = axi_obs_core::testing::peer("promtool") else {
        return;
    };
    // Two instances, so the outbound client metric is on the page too.
    let downstream = Demo::start_with(&[], &[]);
    let base = format!("http://{}", downstream.addr);
    let demo = Demo::start_with(&["--load", "--load-rps", "50", "--downstream", &base], &[]);
    // Wait until the load has produced business metrics of every kind.
    let page = poll(
        Duration::from_secs(60),
        "business metrics on /metrics",
        || {
            let page = get(&demo.url("/metrics"))?;
            (page.contains("shop_orders_total{status=\"created\"}")
                && page.contains("shop_orders_total{status=\"rejected\"}")
                && page.contains("shop_payment_duration_seconds_bucket")
                && page.contains("http_server_request_duration_seconds_bucket")
                && page.contains("http_client_request_duration_seconds_bucket"))
            .then_some(page)
        },
    );
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool failed ({}):\n{findings}\n--- page ---\n{page}",
        out.status
    );
    assert_eq!(findings.trim(), "", "promtool reported findings");
}
