//! What `axi-alert run` takes from a scrape, as Prometheus does: it asks for gzip and reads
//! a compressed page; `body_size_limit` (counted after decompression) and `sample_limit`
//! fail a scrape that exceeds them, with Prometheus's error texts in `/api/v1/targets` and
//! `up` 0. Needs no peer.

#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

mod common;

use common::{free_port, get_json, poll, run_dir, serve, start_run};

fn gzip(text: &str) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap()
}

/// Serves `text` gzip-compressed, and only to a client that asks for gzip (406 otherwise).
async fn serve_gzip(text: String) -> u16 {
    let body = gzip(&text);
    serve(Router::new().route(
        "/metrics",
        get(move |headers: HeaderMap| {
            let body = body.clone();
            async move {
                let asked = headers
                    .get(header::ACCEPT_ENCODING)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("gzip"));
                if !asked {
                    return StatusCode::NOT_ACCEPTABLE.into_response();
                }
                (
                    [
                        (header::CONTENT_ENCODING, "gzip"),
                        (header::CONTENT_TYPE, "text/plain; version=0.0.4"),
                    ],
                    body,
                )
                    .into_response()
            }
        }),
    ))
    .await
}

/// Serves the `X-Prometheus-Scrape-Timeout-Seconds` it was sent as `told_timeout_seconds`.
async fn serve_timeout_header() -> u16 {
    serve(Router::new().route(
        "/metrics",
        get(|headers: HeaderMap| async move {
            let told = headers
                .get("x-prometheus-scrape-timeout-seconds")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("NaN")
                .to_owned();
            format!("told_timeout_seconds {told}\n")
        }),
    ))
    .await
}

/// Serves `text` with no `Content-Type` at all.
async fn serve_untyped(text: &'static str) -> u16 {
    serve(Router::new().route(
        "/metrics",
        get(move || async move {
            let mut r = text.into_response();
            r.headers_mut().remove(header::CONTENT_TYPE);
            r
        }),
    ))
    .await
}

async fn serve_plain(text: String) -> u16 {
    serve(Router::new().route("/metrics", get(move || async move { text.clone() }))).await
}

/// `job => (health, lastError)` of every active target, once each has been scraped.
async fn targets(client: &reqwest::Client, port: u16) -> Option<Vec<(String, String, String)>> {
    let body = get_json(client, port, "/api/v1/targets").await?;
    let mut out: Vec<(String, String, String)> = body["data"]["activeTargets"]
        .as_array()?
        .iter()
        .map(|t| {
            let s = |k: &str| t[k].as_str().unwrap_or_default().to_owned();
            (
                t["labels"]["job"].as_str().unwrap_or_default().to_owned(),
                s("health"),
                s("lastError"),
            )
        })
        .collect();
    out.sort();
    out.iter().all(|(_, h, _)| h != "unknown").then_some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_pages_and_the_body_and_sample_limits() {
    let work = "# TYPE work_total counter\nwork_total 7\n";
    // 2 KiB of comments: 1 KiB of limit is exceeded, compressed or not.
    let padded = format!("{}{work}", "# padding padding padding padding\n".repeat(64));
    assert!(padded.len() > 2048 && gzip(&padded).len() < 1024);
    let many: String = (0..5).map(|i| format!("m{{i=\"{i}\"}} 1\n")).collect();
    let jobs = [
        ("gz", serve_gzip(work.to_owned()).await, ""),
        (
            "big",
            serve_plain(padded.clone()).await,
            "body_size_limit: 1KB",
        ),
        ("bomb", serve_gzip(padded).await, "body_size_limit: 1KB"),
        ("many", serve_plain(many.clone()).await, "sample_limit: 3"),
        ("enough", serve_plain(many).await, "sample_limit: 5"),
        // Exactly the limit: Prometheus fails a page that reaches it.
        (
            "exact",
            serve_plain(format!(
                "{work}{}",
                "#".repeat(1024 - work.len() - 1) + "\n"
            ))
            .await,
            "body_size_limit: 1KB",
        ),
        (
            "timeout",
            serve_timeout_header().await,
            "scrape_timeout: 750ms",
        ),
        // Prometheus 3 fails a page without a Content-Type unless the job names a fallback.
        ("untyped", serve_untyped("work_total 7\n").await, ""),
        (
            "untyped-fallback",
            serve_untyped("work_total 7\n").await,
            "fallback_scrape_protocol: PrometheusText0.0.4",
        ),
    ];
    let mut config =
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n".to_owned();
    for (job, port, extra) in jobs {
        config.push_str(&format!(
            "  - job_name: {job}\n    {extra}\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
        ));
    }
    let (_dir, path) = run_dir(&[], &config);
    let port = free_port();
    let _run = start_run(&path, port, [] as [&str; 0]);
    let client = reqwest::Client::new();
    let got = poll(
        "every target scraped",
        Duration::from_secs(30),
        async || targets(&client, port).await,
    )
    .await;
    let row = |job: &str, health: &str, error: &str| (job.into(), health.into(), error.into());
    assert_eq!(
        got,
        vec![
            row("big", "down", "body size limit exceeded"),
            row("bomb", "down", "body size limit exceeded"),
            row("enough", "up", ""),
            row("exact", "down", "body size limit exceeded"),
            row("gz", "up", ""),
            row("many", "down", "sample limit exceeded"),
            row("timeout", "up", ""),
            row(
                "untyped",
                "down",
                "non-compliant scrape target sending blank Content-Type and no fallback_scrape_protocol specified for target"
            ),
            row("untyped-fallback", "up", ""),
        ]
    );
    // The timeout the target was told, as Prometheus tells it (blackbox_exporter fits its
    // probe into it).
    let body = get_json(&client, port, "/api/v1/query?query=told_timeout_seconds")
        .await
        .unwrap();
    assert_eq!(body["data"]["result"][0]["value"][1], "0.75", "{body}");
    // The compressed page's samples are in the store.
    let body = get_json(&client, port, "/api/v1/query?query=work_total")
        .await
        .unwrap();
    assert_eq!(body["data"]["result"][0]["value"][1], "7", "{body}");
}
