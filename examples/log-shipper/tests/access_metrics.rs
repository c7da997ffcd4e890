//! Access metrics from parsed lines: totals equal the counts by status, labels stay bounded.

#![allow(clippy::unwrap_used)]

use axi_obs_core::testing::Capture;
use log_shipper::access::{AccessMetrics, PathPattern};
use log_shipper::parse::Parser;
use log_shipper::parse::nginx::LogFormat;

#[test]
fn metric_totals_equal_counts_by_status_and_paths_are_capped() {
    let format = LogFormat::compile(
        r#"$host $remote_addr [$time_local] "$request" $status $body_bytes_sent $request_time"#,
    )
    .unwrap();
    let parser = Parser::Nginx(format);
    let m = AccessMetrics::new(vec![PathPattern::parse("/docs/**").unwrap()], 5, 20, "-");
    let cap = Capture::new();
    let statuses = [200u16, 200, 304, 404, 500, 200, 301, 404];
    let mut want = std::collections::BTreeMap::<&str, u64>::new();
    let mut bytes = 0;
    cap.run(|| {
        log_shipper::names::describe();
        for i in 0..800u64 {
            let status = statuses[i as usize % statuses.len()];
            let path = if i % 3 == 0 {
                format!("/docs/page{i}.html")
            } else {
                format!("/blog/post{}.html", i % 50)
            };
            let line = format!(
                r#"docs.test 10.0.0.{} [26/Nov/2026:02:08:49 +0000] "GET {path} HTTP/1.1" {status} {} 0.0{}"#,
                i % 250,
                i * 10,
                i % 10
            );
            bytes += i * 10;
            *want.entry(AccessMetrics::status_class(Some(status))).or_default() += 1;
            let parsed = parser.parse(line);
            m.observe(parsed.access.as_ref().unwrap());
        }
    });
    let snap = cap.metrics();
    let requests = snap.family("nginx_http_requests_total").unwrap();
    for (class, n) in &want {
        let s = requests
            .series_with(&[
                ("vhost", "docs.test"),
                ("method", "GET"),
                ("status_class", class),
            ])
            .unwrap();
        assert_eq!(s.value.as_counter(), Some(*n), "{class}");
    }
    assert_eq!(requests.series.len(), want.len());
    let bytes_family = snap.family("nginx_http_response_bytes_total").unwrap();
    assert_eq!(bytes_family.series[0].value.as_counter(), Some(bytes));
    let hist = snap.family("nginx_http_request_duration_seconds").unwrap();
    assert_eq!(hist.series[0].value.as_histogram().unwrap().count, 800);
    let paths = snap.family("nginx_http_path_requests_total").unwrap();
    let labels: std::collections::BTreeSet<&str> = paths
        .series
        .iter()
        .flat_map(|s| {
            s.labels
                .iter()
                .filter(|(k, _)| k == "path")
                .map(|(_, v)| v.as_str())
        })
        .collect();
    // The pattern, 5 learned paths, and `other`.
    assert!(
        labels.contains("/docs/**") && labels.contains("other"),
        "{labels:?}"
    );
    assert_eq!(labels.len(), 7, "{labels:?}");
    let total: u64 = paths
        .series
        .iter()
        .map(|s| s.value.as_counter().unwrap())
        .sum();
    assert_eq!(total, 800);
}

#[test]
fn unique_visitors_per_vhost_are_gauged_when_the_window_ends() {
    use log_shipper::visitors::UniqueVisitors;
    let parser = Parser::Nginx(
        LogFormat::compile(
            r#"$host $remote_addr [$time_local] "$request" $status "$http_user_agent""#,
        )
        .unwrap(),
    );
    let m = AccessMetrics::new(vec![], 10, 20, "-").with_unique_visitors(UniqueVisitors::new(
        std::time::Duration::from_secs(300),
        false,
    ));
    // 2026-11-26T10:00:00Z: a window starts.
    let t0 = 1_795_687_200_000_000_000u64;
    let cap = Capture::new();
    cap.run(|| {
        // docs.test: 30 000 distinct addresses, each seen twice; blog.test: 40 addresses.
        for round in 0..2u64 {
            for i in 0..30_000u64 {
                let line = format!(
                    r#"docs.test 10.{}.{}.{} [26/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 "ua""#,
                    i >> 16,
                    (i >> 8) & 255,
                    i & 255
                );
                let a = parser.parse(line).access.unwrap();
                m.observe_at(&a, t0 + round * 1_000_000_000 + i);
            }
        }
        for i in 0..400u64 {
            let line = format!(
                r#"blog.test 192.0.2.{} [26/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 "ua""#,
                i % 40
            );
            m.observe_at(&parser.parse(line).access.unwrap(), t0 + i);
        }
        // Nothing is gauged before the window is complete.
        m.tick(t0 + 299_000_000_000);
        assert!(m.unique_visitors().unwrap().last_window().is_empty());
        m.tick(t0 + 300_000_000_000);
    });
    let snap = cap.metrics();
    let family = snap.family("nginx_http_unique_visitors").unwrap();
    let gauge = |vhost: &str| {
        family
            .series_with(&[("vhost", vhost), ("window", "5m")])
            .unwrap()
            .value
            .as_gauge()
            .unwrap()
    };
    let docs = gauge("docs.test");
    assert!((docs - 30_000.0).abs() / 30_000.0 < 0.03, "{docs}");
    assert_eq!(gauge("blog.test"), 40.0);
}
