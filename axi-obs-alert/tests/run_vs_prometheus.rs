//! A real Prometheus 3 and `axi-alert run` get the same configuration file (one scrape job,
//! one rule file) and scrape the same target; the firing alerts they report on
//! `/api/v1/alerts` (labels, annotations, state) must agree. Then the rule file changes on
//! disk: `axi-alert run` reloads it; a broken rule file is refused and the running rules stay.
//!
//! Needs the `prometheus` peer (scripts/install-peers.sh); without it the test prints a
//! notice and skips, and fails when `AXI_REQUIRE_PEERS=1`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{Kill, free_port, serve_metrics, start_prometheus};

const RULES: &str = r#"groups:
  - name: temperatures
    interval: 1s
    rules:
      - record: room:temp:max
        expr: max by (room) (temp_celsius)
      - alert: TooHot
        expr: room:temp:max > 25
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.room }} is at {{ $value }} degrees"
          target: "{{ $labels.room | toUpper }} on {{ $externalLabels.site }}"
"#;

/// (labels, annotations, state) of every alert in an `/api/v1/alerts` answer.
type AlertSet = BTreeSet<(String, String, String)>;

async fn alerts(client: &reqwest::Client, port: u16) -> Option<AlertSet> {
    let list = common::api_alerts(client, port).await?;
    Some(
        list.iter()
            .map(|a| {
                (
                    a["labels"].to_string(),
                    a["annotations"].to_string(),
                    a["state"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firing_alerts_agree_with_prometheus() {
    let Some(prometheus) = axi_obs_core::testing::peer("prometheus") else {
        return;
    };
    // The target: two rooms, one too hot.
    let target_port = serve_metrics("# TYPE temp_celsius gauge\ntemp_celsius{room=\"lab\",sensor=\"1\"} 31.5\ntemp_celsius{room=\"lab\",sensor=\"2\"} 30\ntemp_celsius{room=\"office\",sensor=\"3\"} 21\n").await;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yml"), RULES).unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  external_labels: {{site: plant-1}}\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: sensors\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
        ),
    )
    .unwrap();

    let (_prom, prom_port) = start_prometheus(&prometheus, &config, dir.path());
    let ours_port = free_port();
    let _ours = Kill(
        Command::new(env!("CARGO_BIN_EXE_axi-alert"))
            .args(["run", "--config"])
            .arg(&config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{ours_port}"))
            .env("AXI_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut theirs, mut ours) = (AlertSet::new(), AlertSet::new());
    while Instant::now() < deadline {
        theirs = alerts(&client, prom_port).await.unwrap_or_default();
        ours = alerts(&client, ours_port).await.unwrap_or_default();
        if !theirs.is_empty() && theirs == ours {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(!theirs.is_empty(), "Prometheus never reported the alert");
    assert_eq!(ours, theirs, "axi-alert run and Prometheus disagree");
    let (labels, annotations, state) = ours.iter().next().unwrap();
    assert_eq!(state, "firing");
    assert!(labels.contains("\"room\":\"lab\"") && labels.contains("\"severity\":\"page\""));
    assert!(
        annotations.contains("lab is at 31.5 degrees"),
        "{annotations}"
    );
    assert!(annotations.contains("LAB on plant-1"), "{annotations}");

    // A broken rule file is refused; the running rules keep firing.
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: x\n    rules:\n      - alert: A\n        expr: 'rate('\n",
    )
    .unwrap();
    let reload = client
        .post(format!("http://127.0.0.1:{ours_port}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 500);
    let why = reload.text().await.unwrap();
    assert!(
        why.contains("rules.yml:4: group \"x\", rule 1 (\"A\")")
            && why.contains("could not parse expression"),
        "{why}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(alerts(&client, ours_port).await.unwrap(), ours);

    // A good change on disk is picked up without a signal: a threshold no room reaches.
    std::fs::write(dir.path().join("rules.yml"), RULES.replace("> 25", "> 50")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if alerts(&client, ours_port)
            .await
            .is_some_and(|a| a.is_empty())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the changed rule file was not reloaded"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The scale-out path: Prometheus scrapes and stores, `axi-alert run --query-url` holds the
/// rules and asks Prometheus at each evaluation; the alerts are the ones Prometheus itself
/// would compute (here Prometheus has no rules, so the comparison is with the expected set).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_answered_by_a_remote_prometheus() {
    let Some(prometheus) = axi_obs_core::testing::peer("prometheus") else {
        return;
    };
    let target_port = serve_metrics(
        "# TYPE temp_celsius gauge\ntemp_celsius{room=\"lab\",sensor=\"1\"} 31.5\ntemp_celsius{room=\"office\",sensor=\"3\"} 21\n",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let prom_config = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sensors\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: t\n    interval: 1s\n    rules:\n      - alert: TooHot\n        expr: max by (room, job) (temp_celsius) > 25\n        annotations: {summary: '{{ $labels.room }} at {{ $value }}'}\n",
    )
    .unwrap();
    let our_config = dir.path().join("axi-alert.yml");
    std::fs::write(
        &our_config,
        "global:\n  evaluation_interval: 1s\nrule_files: [rules.yml]\n",
    )
    .unwrap();

    let (_prom, prom_port) = start_prometheus(&prometheus, &prom_config, dir.path());
    let ours_port = free_port();
    let _ours = Kill(
        Command::new(env!("CARGO_BIN_EXE_axi-alert"))
            .args(["run", "--config"])
            .arg(&our_config)
            .arg("--query-url")
            .arg(format!("http://127.0.0.1:{prom_port}"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{ours_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        let a = alerts(&client, ours_port).await.unwrap_or_default();
        if !a.is_empty() {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "no alert from the remote Prometheus"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let expected: AlertSet = [(
        r#"{"alertname":"TooHot","job":"sensors","room":"lab"}"#.to_owned(),
        r#"{"summary":"lab at 31.5"}"#.to_owned(),
        "firing".to_owned(),
    )]
    .into_iter()
    .collect();
    assert_eq!(got, expected);
}
