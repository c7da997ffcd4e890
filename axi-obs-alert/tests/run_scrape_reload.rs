//! A reload of `axi-alert run` that removes a target, as Prometheus's scrape manager applies
//! it: the removed target's series and `up` are marked stale at once (not left visible for
//! the lookback), the other target's loop goes on, and one whose labels changed is scraped
//! again under its new labels. Needs no peer.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::Value;

mod common;

use common::{free_port, poll, run_dir, serve_metrics, start_run};

async fn query(client: &reqwest::Client, port: u16, q: &str) -> Option<Value> {
    let url = format!(
        "http://127.0.0.1:{port}/api/v1/query?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("query", q)
            .finish()
    );
    let text = client.get(url).send().await.ok()?.text().await.ok()?;
    serde_json::from_str(&text).ok()
}

/// The `instance` labels of the series `q` answers with.
async fn instances(client: &reqwest::Client, port: u16, q: &str) -> Option<Vec<String>> {
    let body = query(client, port, q).await?;
    let mut v: Vec<String> = body["data"]["result"]
        .as_array()?
        .iter()
        .map(|s| {
            s["metric"]["instance"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    v.sort();
    Some(v)
}

fn config(targets: &[String]) -> String {
    let list = targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: [{list}]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_target_goes_stale_at_once() {
    let a = format!("127.0.0.1:{}", serve_metrics("work_total 1\n").await);
    let b = format!("127.0.0.1:{}", serve_metrics("work_total 2\n").await);
    let (dir, path) = run_dir(&[], &config(&[a.clone(), b.clone()]));
    let port = free_port();
    let _run = start_run(&path, port, ["--query.lookback-delta", "5m"]);
    let client = reqwest::Client::new();
    let both = {
        let mut v = vec![a.clone(), b.clone()];
        v.sort();
        v
    };
    poll(
        "both targets scraped",
        Duration::from_secs(30),
        async || {
            let got = instances(&client, port, "work_total").await?;
            (got == both).then_some(())
        },
    )
    .await;
    std::fs::write(&path, config(std::slice::from_ref(&a))).unwrap();
    let reloaded = client
        .post(format!("http://127.0.0.1:{port}/-/reload"))
        .send()
        .await
        .unwrap();
    assert!(reloaded.status().is_success());
    // Without staleness markers, B's series would answer for the 5 minute lookback.
    for q in ["work_total", "up"] {
        poll(
            &format!("{q} of the removed target gone"),
            Duration::from_secs(10),
            async || {
                let got = instances(&client, port, q).await?;
                (got == [a.clone()]).then_some(())
            },
        )
        .await;
    }
    drop(dir);
}
