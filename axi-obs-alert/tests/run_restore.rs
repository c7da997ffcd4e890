//! `axi-alert run --state-file` killed with SIGKILL in the middle of a `for` period, then
//! restarted: the pending time before the kill counts (minus the downtime), as Prometheus's
//! `for` restore does, instead of the alert starting its `for` again at the restart.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

mod common;

use common::{Kill, free_port, now_ms, serve_metrics, start_run};

/// `activeAt` (ms) and state of the one alert, if any.
async fn alert(client: &reqwest::Client, port: u16) -> Option<(i64, String)> {
    let a = common::api_alerts(client, port).await?.first()?.clone();
    let at = a["activeAt"].as_str()?;
    Some((parse_rfc3339(at)?, a["state"].as_str()?.to_owned()))
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    axi_obs_alert::promqltest::parse_rfc3339_ms(s)
}

fn start(config: &std::path::Path, state: &std::path::Path, port: u16) -> Kill {
    let state = state.as_os_str();
    start_run(
        config,
        port,
        [
            "--for-grace-period".as_ref(),
            "2s".as_ref(),
            "--state-file".as_ref(),
            state,
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn for_state_survives_a_kill_9() {
    let target_port =
        serve_metrics("# TYPE temp_celsius gauge\ntemp_celsius{room=\"lab\"} 31.5\n").await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: t\n    interval: 1s\n    rules:\n      - alert: TooHot\n        expr: temp_celsius > 25\n        for: 10s\n",
    )
    .unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: sensors\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
        ),
    )
    .unwrap();
    let state = dir.path().join("alert-state.json");
    let port = free_port();
    let client = reqwest::Client::new();

    // Pending for at least 5 of its 10 seconds, then SIGKILL.
    let mut first = start(&config, &state, port);
    let deadline = Instant::now() + Duration::from_secs(60);
    let active_at = loop {
        assert!(Instant::now() < deadline, "the alert never went pending");
        if let Some((at, s)) = alert(&client, port).await
            && s == "pending"
            && now_ms() - at >= 5_000
        {
            break at;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    first.0.kill().unwrap();
    first.0.wait().unwrap();
    let saved = std::fs::read_to_string(&state).unwrap();
    assert!(saved.contains("\"alertname\":\"TooHot\""), "{saved}");

    // After the restart the alert is active since before the restart: the time it spent
    // pending counted. Without the restore it would be active since after the restart.
    let restarted_at = now_ms();
    let _second = start(&config, &state, port);
    let deadline = Instant::now() + Duration::from_secs(60);
    let restored = loop {
        assert!(
            Instant::now() < deadline,
            "no restored alert after the restart"
        );
        if let Some((at, _)) = alert(&client, port).await
            && at < restarted_at
        {
            break at;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        restored >= active_at / 1000 * 1000,
        "restored {restored}, first active {active_at}"
    );
    // And it goes on to fire.
    let deadline = Instant::now() + Duration::from_secs(60);
    while alert(&client, port)
        .await
        .is_none_or(|(_, s)| s != "firing")
    {
        assert!(Instant::now() < deadline, "the restored alert never fired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
