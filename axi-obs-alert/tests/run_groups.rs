//! `axi-alert run` with two rule files that each hold a group of the same name: both groups
//! are evaluated (Prometheus keys groups by file and name).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

mod common;

use common::{free_port, poll, start_run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_of_one_name_in_two_files_are_both_evaluated() {
    let rules = |alert: &str| {
        format!(
            "groups:\n  - name: shared\n    interval: 1s\n    rules:\n      - alert: {alert}\n        expr: vector(1)\n"
        )
    };
    let (_dir, config) = common::run_dir(
        &[("a.yml", &rules("FromA")), ("b.yml", &rules("FromB"))],
        "global:\n  evaluation_interval: 1s\nrule_files: [a.yml, b.yml]\n",
    );
    let port = free_port();
    let _run = start_run(&config, port, Vec::<String>::new());
    let client = reqwest::Client::new();
    let names = poll("both groups' alerts", Duration::from_secs(30), async || {
        let alerts = common::api_alerts(&client, port).await?;
        let mut names: Vec<String> = alerts
            .iter()
            .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_owned))
            .collect();
        names.sort();
        (names.len() == 2).then_some(names)
    })
    .await;
    assert_eq!(names, ["FromA", "FromB"]);
}
