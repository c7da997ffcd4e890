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

/// The `(instance, lastScrape)` of every target of `/api/v1/targets`.
async fn targets(client: &reqwest::Client, port: u16) -> Option<Vec<(String, String)>> {
    let text = client
        .get(format!("http://127.0.0.1:{port}/api/v1/targets"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let body: Value = serde_json::from_str(&text).ok()?;
    let mut out: Vec<(String, String)> = body["data"]["activeTargets"]
        .as_array()?
        .iter()
        .map(|t| {
            (
                t["labels"]["instance"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                t["lastScrape"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    out.sort();
    Some(out)
}

fn probe_config(instances: &[&str], address: &str) -> String {
    let entries: String = instances
        .iter()
        .map(|i| format!("      - targets: ['{address}']\n        labels: {{instance: {i}}}\n"))
        .collect();
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: probe\n    static_configs:\n{entries}"
    )
}

/// Several targets on one address (a blackbox_exporter probing several hosts): a reload that
/// adds one before them leaves their loops alone, and the new one starts fresh, not with
/// another's scrape history; a target whose labels change has its old `up` marked stale at
/// once, not counted twice for the lookback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_sharing_an_address_keep_their_own_loops_across_a_reload() {
    let address = format!("127.0.0.1:{}", serve_metrics("probe_success 1\n").await);
    let (dir, path) = run_dir(&[], &probe_config(&["x", "y"], &address));
    let port = free_port();
    let _run = start_run(&path, port, ["--query.lookback-delta", "5m"]);
    let client = reqwest::Client::new();
    let never = "0001-01-01T00:00:00Z";
    poll("both scraped", Duration::from_secs(30), async || {
        let t = targets(&client, port).await?;
        (t.len() == 2 && t.iter().all(|(_, last)| last != never)).then_some(())
    })
    .await;
    std::fs::write(&path, probe_config(&["new", "x", "y"], &address)).unwrap();
    let before_reload = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let reloaded = client
        .post(format!("http://127.0.0.1:{port}/-/reload"))
        .send()
        .await
        .unwrap();
    assert!(reloaded.status().is_success());
    let t = targets(&client, port).await.unwrap();
    let new = t.iter().find(|(i, _)| i == "new").unwrap();
    // Never scraped, or scraped after the reload: not x's history.
    if new.1 != never {
        let at = axi_obs_alert::promqltest::parse_rfc3339_ms(&new.1).unwrap();
        assert!(at >= before_reload, "{t:?}");
    }
    // x and y keep their loops and what they saw: neither starts again as never scraped.
    for (i, last) in &t {
        if i != "new" {
            assert_ne!(last, never, "{i}: {t:?}");
        }
    }
    // Labels changed: one `up` per target again within seconds, not the old one with it.
    std::fs::write(&path, probe_config(&["new", "x", "z"], &address)).unwrap();
    client
        .post(format!("http://127.0.0.1:{port}/-/reload"))
        .send()
        .await
        .unwrap();
    poll(
        "the relabelled target's old up gone",
        Duration::from_secs(10),
        async || {
            let got = instances(&client, port, "up").await?;
            (got == ["new", "x", "z"]).then_some(())
        },
    )
    .await;
    drop(dir);
}
