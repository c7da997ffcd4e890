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

/// The last evaluation timestamp `axi-alert run` on `port` reports for its one group.
async fn last_evaluation(client: &reqwest::Client, port: u16) -> Option<f64> {
    let page = common::get_text(client, port, "/metrics").await?;
    page.lines()
        .find(|l| l.starts_with("prometheus_rule_group_last_evaluation_timestamp_seconds{"))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

/// `axi-alert run` over one group `g` (one recording rule) evaluated every `interval`, after
/// its first evaluation: the running process, its folder, its port and that evaluation's time.
struct OneGroup {
    _run: common::Kill,
    dir: tempfile::TempDir,
    port: u16,
    client: reqwest::Client,
    first: f64,
}

fn one_group_rules(interval: &str) -> String {
    format!(
        "groups:\n  - name: g\n    interval: {interval}\n    rules:\n      - record: one\n        expr: vector(1)\n"
    )
}

impl OneGroup {
    async fn start(interval: &str) -> OneGroup {
        let (dir, config) = common::run_dir(
            &[("r.yml", &one_group_rules(interval))],
            "global:\n  evaluation_interval: 1s\nrule_files: [r.yml]\n",
        );
        let port = free_port();
        let run = start_run(&config, port, Vec::<String>::new());
        let client = reqwest::Client::new();
        // A new group runs at once, at its latest slot.
        let first = poll(
            "the first evaluation",
            Duration::from_secs(30),
            async || last_evaluation(&client, port).await,
        )
        .await;
        OneGroup {
            _run: run,
            dir,
            port,
            client,
            first,
        }
    }

    /// Rewrites the group with `interval` and reloads.
    async fn reload_with(&self, interval: &str) {
        std::fs::write(self.dir.path().join("r.yml"), one_group_rules(interval)).unwrap();
        common::reload(&self.client, self.port).await;
    }

    async fn last_evaluation(&self) -> Option<f64> {
        last_evaluation(&self.client, self.port).await
    }
}

/// A reload that lengthens a group's interval does not evaluate it at the new interval's
/// latest slot when that lies before its last evaluation (an hour's slot almost always does):
/// as Prometheus's restarted group, it waits for the next slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_longer_interval_after_a_reload_never_evaluates_in_the_past() {
    let run = OneGroup::start("1s").await;
    let before = run.last_evaluation().await.unwrap();
    run.reload_with("1h").await;
    // The old interval's next slot comes within a second of the reload.
    let watch_until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < watch_until {
        let last = run.last_evaluation().await.unwrap();
        assert!(
            last >= before,
            "evaluated at {last} after evaluating at {before}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A reload that shortens a group's interval (1h to 1s) evaluates it on the new interval at
/// once, not at the old interval's next slot an hour away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shorter_interval_after_a_reload_applies_at_once() {
    let run = OneGroup::start("1h").await;
    run.reload_with("1s").await;
    let mut seen = Vec::new();
    poll(
        "evaluations every second",
        Duration::from_secs(15),
        async || {
            let last = run.last_evaluation().await?;
            if seen.last() != Some(&last) && last > run.first {
                seen.push(last);
            }
            (seen.len() >= 3).then_some(())
        },
    )
    .await;
}

/// A subquery without a step takes the global `evaluation_interval` (1 s here), as in
/// Prometheus, not the group's (10 s): `[3s:]` holds three points.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subqueries_without_a_step_take_the_global_evaluation_interval() {
    let (_dir, config) = common::run_dir(
        &[(
            "r.yml",
            "groups:\n  - name: g\n    interval: 10s\n    rules:\n      - record: points\n        expr: count_over_time(vector(1)[3s:])\n",
        )],
        "global:\n  evaluation_interval: 1s\nrule_files: [r.yml]\n",
    );
    let port = free_port();
    let _run = start_run(&config, port, Vec::<String>::new());
    let client = reqwest::Client::new();
    let value = poll(
        "the recorded point count",
        Duration::from_secs(30),
        async || {
            let body = common::get_json(&client, port, "/api/v1/query?query=points").await?;
            body["data"]["result"][0]["value"][1]
                .as_str()
                .map(str::to_owned)
        },
    )
    .await;
    assert_eq!(value, "3");
}

/// The query API's subqueries without a step take the global `evaluation_interval` too, as
/// Prometheus's do, and a reload's new one: `[3s:]` holds three points at 1 s, one at 3 s
/// (instead of the engine's default of a minute, which holds at most one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_apis_subqueries_take_the_global_evaluation_interval() {
    let config = |interval: &str| format!("global:\n  evaluation_interval: {interval}\n");
    let (dir, path) = common::run_dir(&[], &config("1s"));
    let port = free_port();
    let _run = start_run(&path, port, Vec::<String>::new());
    let client = reqwest::Client::new();
    let points = async || {
        let q = "/api/v1/query?query=count_over_time(vector(1)%5B3s:%5D)&time=1000";
        let body = common::get_json(&client, port, q).await?;
        body["data"]["result"][0]["value"][1]
            .as_str()
            .map(str::to_owned)
    };
    let at_1s = poll("the query API", Duration::from_secs(30), points).await;
    assert_eq!(at_1s, "3");
    std::fs::write(dir.path().join("prometheus.yml"), config("3s")).unwrap();
    common::reload(&client, port).await;
    assert_eq!(points().await.as_deref(), Some("1"));
}

/// A rule file added where a `rule_files` glob looks is loaded on its own, without a signal,
/// as Prometheus's auto-reload sees it; one removed takes its group away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_file_added_under_a_glob_is_loaded_without_a_signal() {
    let rules = |alert: &str| {
        format!(
            "groups:\n  - name: {alert}\n    interval: 1s\n    rules:\n      - alert: {alert}\n        expr: vector(1)\n"
        )
    };
    let (dir, config) = common::run_dir(
        &[("a.rules.yml", &rules("FromA"))],
        "global:\n  evaluation_interval: 1s\nrule_files: ['*.rules.yml']\n",
    );
    let port = free_port();
    let _run = start_run(&config, port, Vec::<String>::new());
    let client = reqwest::Client::new();
    let names = async |want: usize| {
        poll(
            "the rule files' alerts",
            Duration::from_secs(30),
            async || {
                let alerts = common::api_alerts(&client, port).await?;
                let mut names: Vec<String> = alerts
                    .iter()
                    .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_owned))
                    .collect();
                names.sort();
                (names.len() == want).then_some(names)
            },
        )
        .await
    };
    assert_eq!(names(1).await, ["FromA"]);
    std::fs::write(dir.path().join("b.rules.yml"), rules("FromB")).unwrap();
    assert_eq!(names(2).await, ["FromA", "FromB"]);
    std::fs::remove_file(dir.path().join("a.rules.yml")).unwrap();
    assert_eq!(names(1).await, ["FromB"]);
}

/// A reload that removes every rule leaves no group to run: the series its rules wrote
/// (`ALERTS`, recorded series) are still marked stale, two evaluation intervals later, as
/// Prometheus marks a removed group's series, not left answering for the lookback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_of_removed_rules_go_stale_with_no_group_left() {
    let (dir, config) = common::run_dir(
        &[(
            "r.yml",
            "groups:\n  - name: g\n    interval: 1s\n    rules:\n      - alert: Always\n        expr: vector(1)\n      - record: one\n        expr: vector(1)\n",
        )],
        "global:\n  evaluation_interval: 1s\nrule_files: [r.yml]\n",
    );
    let port = free_port();
    let _run = start_run(&config, port, Vec::<String>::new());
    let client = reqwest::Client::new();
    let count = async |q: &str| -> Option<usize> {
        let body = common::get_json(&client, port, &format!("/api/v1/query?query={q}")).await?;
        Some(body["data"]["result"].as_array()?.len())
    };
    poll("the rules' series", Duration::from_secs(30), async || {
        (count("ALERTS").await? == 1 && count("one").await? == 1).then_some(())
    })
    .await;
    std::fs::write(
        &config,
        "global:\n  evaluation_interval: 1s\nrule_files: []\n",
    )
    .unwrap();
    common::reload(&client, port).await;
    poll(
        "the removed rules' series stale",
        Duration::from_secs(15),
        async || (count("ALERTS").await? == 0 && count("one").await? == 0).then_some(()),
    )
    .await;
    drop(dir);
}
