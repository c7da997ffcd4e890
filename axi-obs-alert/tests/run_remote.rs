//! `axi-alert run --query-url` with a remote Prometheus that is slow to answer: while a query
//! is outstanding, the HTTP API still answers (the rules and the store are not locked across
//! the remote call).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

mod common;

use common::{free_port, poll, start_run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_while_a_remote_query_hangs() {
    let asked = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let (a, r) = (asked.clone(), release.clone());
    let remote = axum::Router::new().route(
        "/api/v1/query",
        axum::routing::post(move || {
            let (a, r) = (a.clone(), r.clone());
            async move {
                a.fetch_add(1, Ordering::SeqCst);
                // Held until the test lets it go.
                let _permit = r.acquire().await.unwrap();
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"x"},"value":[0,"1"]}]}}"#
            }
        }),
    );
    let remote_port = common::serve(remote).await;
    let (_dir, config) = common::run_dir(
        &[(
            "rules.yml",
            "groups:\n  - name: g\n    interval: 1s\n    rules:\n      - alert: Up\n        expr: up == 1\n",
        )],
        "global:\n  evaluation_interval: 1s\nrule_files: [rules.yml]\n",
    );
    let port = free_port();
    let _run = start_run(
        &config,
        port,
        [
            "--query-url".to_owned(),
            format!("http://127.0.0.1:{remote_port}"),
        ],
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    poll(
        "the first remote query",
        Duration::from_secs(30),
        async || (asked.load(Ordering::SeqCst) > 0).then_some(()),
    )
    .await;
    // The query hangs; the API answers anyway (a request blocked behind the locks would time
    // out instead).
    for _ in 0..3 {
        let alerts = common::api_alerts(&client, port).await;
        assert!(
            alerts.is_some(),
            "/api/v1/alerts did not answer during a remote query"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Released, the rule fires from the remote answer.
    release.add_permits(1_000);
    let names = poll(
        "the alert from the remote answer",
        Duration::from_secs(30),
        async || {
            let alerts = common::api_alerts(&client, port).await?;
            alerts
                .iter()
                .any(|a| a["labels"]["alertname"] == "Up")
                .then_some(alerts.len())
        },
    )
    .await;
    assert_eq!(names, 1);
}
