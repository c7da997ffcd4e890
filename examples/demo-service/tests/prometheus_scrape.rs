//! A real Prometheus 3.x scrapes the demo under load, once negotiating OpenMetrics and once
//! the Prometheus text format: `up` is 1 for both, the process and application metrics are
//! queryable, and the p99 latency by route has exactly one series per route.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Demo, Killed, free_port, get, poll};

fn query(prom: &str, q: &str) -> Option<Vec<serde_json::Value>> {
    let url = format!(
        "{prom}/api/v1/query?query={}",
        q.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' =>
                    (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    );
    let body: serde_json::Value = serde_json::from_str(&get(&url)?).ok()?;
    if body["status"] != "success" {
        return None;
    }
    let result = body["data"]["result"].as_array()?.clone();
    (!result.is_empty()).then_some(result)
}

#[test]
fn prometheus_scrapes_the_demo() {
    let Some(prometheus) = axi_obs_core::testing::peer("prometheus") else {
        return;
    };
    let demo = Demo::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: demo\n    scrape_protocols: [OpenMetricsText1.0.0]\n    static_configs:\n      - targets: ['{addr}']\n  - job_name: demo-text\n    scrape_protocols: [PrometheusText0.0.4]\n    static_configs:\n      - targets: ['{addr}']\n",
            addr = demo.addr
        ),
    )
    .unwrap();
    let port = free_port();
    let prom = format!("http://127.0.0.1:{port}");
    let _prometheus = Killed(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    poll(Duration::from_secs(60), "Prometheus ready", || {
        get(&format!("{prom}/-/ready"))
    });

    let up = poll(Duration::from_secs(60), "up{job=\"demo\"} == 1", || {
        let r = query(&prom, "up{job=\"demo\"}")?;
        (r[0]["value"][1] == "1").then_some(r)
    });
    assert_eq!(up[0]["metric"]["instance"], demo.addr.to_string());
    poll(
        Duration::from_secs(60),
        "up{job=\"demo-text\"} == 1",
        || {
            let r = query(&prom, "up{job=\"demo-text\"}")?;
            (r[0]["value"][1] == "1").then_some(())
        },
    );

    for q in [
        "process_resident_memory_bytes{job=\"demo\"}",
        "process_cpu_seconds_total{job=\"demo\"}",
        "process_open_fds{job=\"demo\"}",
        "process_start_time_seconds{job=\"demo\"}",
        "target_info{job=\"demo\",service_name=\"demo-service\"}",
        "service_build_info{job=\"demo\"}",
    ] {
        poll(Duration::from_secs(30), q, || query(&prom, q));
    }
    // An application metric, moving under the built-in load.
    let created = poll(Duration::from_secs(60), "orders created", || {
        let r = query(&prom, "shop_orders_total{job=\"demo\",status=\"created\"}")?;
        let v: f64 = r[0]["value"][1].as_str()?.parse().ok()?;
        (v > 0.0).then_some(v)
    });
    assert!(created > 0.0);
    // The query: p99 by route, one series per route the load exercises.
    let expected = [
        "/api/orders",
        "/api/products",
        "/api/products/{id}",
        "/api/recommendations",
    ];
    let routes = poll(Duration::from_secs(90), "p99 latency by route", || {
        let r = query(
            &prom,
            "histogram_quantile(0.99, sum by (le, http_route) (rate(http_server_request_duration_seconds_bucket{job=\"demo\"}[1m])))",
        )?;
        let mut routes: Vec<String> = r
            .iter()
            .map(|s| {
                s["metric"]["http_route"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        routes.sort();
        (routes == expected).then_some(routes)
    });
    assert_eq!(routes, expected);
    poll(Duration::from_secs(60), "payment latency quantile", || {
        query(
            &prom,
            "histogram_quantile(0.99, sum by (le) (rate(shop_payment_duration_seconds_bucket{job=\"demo\"}[30s])))",
        )
    });
}
