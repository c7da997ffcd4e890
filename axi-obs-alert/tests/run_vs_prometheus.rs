//! A real Prometheus 3 and `axi-alert run` get the same configuration file (one scrape job,
//! one rule file) and scrape the same target; the firing alerts they report on
//! `/api/v1/alerts` (labels, annotations, state) must agree. Then the rule file changes on
//! disk: `axi-alert run` reloads it; a broken rule file is refused and the running rules stay.
//!
//! Needs the `prometheus` peer (scripts/install-peers.sh); without it the test prints a
//! notice and skips, and fails when `AXI_REQUIRE_PEERS=1`.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
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

/// A `prometheus.yml` scraping `target_port` every second, evaluating `rules.yml`.
fn sensors_config(target_port: u16) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  external_labels: {{site: plant-1}}\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: sensors\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
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
    std::fs::write(&config, sensors_config(target_port)).unwrap();

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

    // The lifecycle endpoints answer as Prometheus's (probes copied from it work).
    for path in ["/-/healthy", "/-/ready"] {
        let mut answers = Vec::new();
        for port in [ours_port, prom_port] {
            let r = client
                .get(format!("http://127.0.0.1:{port}{path}"))
                .send()
                .await
                .unwrap();
            answers.push((r.status().as_u16(), r.text().await.unwrap()));
        }
        assert_eq!(answers[0], answers[1], "{path}");
    }
    // PUT reloads too (Prometheus registers POST and PUT).
    let put = client
        .put(format!("http://127.0.0.1:{ours_port}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);

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

    // A reload asked over HTTP right after the configuration changed (what config-reloader
    // sidecars do) restarts the scrapers too: the new target is scraped, its room alerts.
    let hot_port =
        serve_metrics("# TYPE temp_celsius gauge\ntemp_celsius{room=\"office\",sensor=\"9\"} 55\n")
            .await;
    std::fs::write(&config, sensors_config(hot_port)).unwrap();
    let reload = client
        .post(format!("http://127.0.0.1:{ours_port}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = alerts(&client, ours_port).await.unwrap_or_default();
        if now
            .iter()
            .any(|(labels, _, _)| labels.contains("\"room\":\"office\""))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new scrape target was never scraped after the HTTP reload: {now:?}"
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

/// Every group is evaluated on Prometheus's slots: at an offset inside its interval from a
/// hash of its name and file, so two groups of one name in two files, and a group whose long
/// names need longer lengths in the hash, land where Prometheus evaluates them. Read from
/// `activeAt` of `for: 0` alerts, which both set to the evaluation timestamp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_run_on_prometheus_evaluation_slots() {
    let Some(prometheus) = axi_obs_core::testing::peer("prometheus") else {
        return;
    };
    const INTERVAL_MS: i64 = 3_000;
    // Lengths of 158 and 308 bytes: one byte and four bytes of length in the hashed encoding.
    let long_name = format!("ingress-{}", "x".repeat(150));
    let longer_name = format!("ingress-{}", "y".repeat(300));
    let dir = tempfile::tempdir().unwrap();
    let group = |name: &str, alert: &str| {
        format!(
            "  - name: {name:?}\n    interval: 3s\n    rules:\n      - alert: {alert}\n        expr: vector(1)\n"
        )
    };
    std::fs::write(
        dir.path().join("a.yml"),
        format!(
            "groups:\n{}{}{}",
            group("same", "SameInA"),
            group(&long_name, "Long"),
            group(&longer_name, "Longer")
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.yml"),
        format!("groups:\n{}", group("same", "SameInB")),
    )
    .unwrap();
    let config = dir.path().join("prometheus.yml");
    // `./` and a glob: both name the files by their cleaned paths.
    std::fs::write(
        &config,
        "global:\n  evaluation_interval: 3s\nrule_files: [./a.yml, 'b*.yml']\n",
    )
    .unwrap();

    let (_prom, prom_port) = start_prometheus(&prometheus, &config, dir.path());
    let ours_port = free_port();
    let _ours = common::start_run(&config, ours_port, Vec::<&str>::new());

    // alertname -> activeAt (ms) of every alert in an answer.
    async fn active_at(client: &reqwest::Client, port: u16) -> BTreeMap<String, i64> {
        common::api_alerts(client, port)
            .await
            .unwrap_or_default()
            .iter()
            .filter_map(|a| {
                let at = axi_obs_alert::promqltest::parse_rfc3339_ms(a["activeAt"].as_str()?)?;
                Some((a["labels"]["alertname"].as_str()?.to_owned(), at))
            })
            .collect()
    }
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (theirs, ours) = loop {
        let theirs = active_at(&client, prom_port).await;
        let ours = active_at(&client, ours_port).await;
        if theirs.len() == 4 && ours.len() == 4 {
            break (theirs, ours);
        }
        assert!(
            Instant::now() < deadline,
            "not every group ran: Prometheus {theirs:?}, axi-alert {ours:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let phase = |m: &BTreeMap<String, i64>| -> BTreeMap<String, i64> {
        m.iter()
            .map(|(k, v)| (k.clone(), v.rem_euclid(INTERVAL_MS)))
            .collect()
    };
    let (theirs, ours) = (phase(&theirs), phase(&ours));
    assert_eq!(ours, theirs, "evaluation slots (ms into each 3 s interval)");
    // They are spread, not all at the start of the interval.
    let distinct: BTreeSet<i64> = ours.values().copied().collect();
    assert!(distinct.len() > 1, "{ours:?}");
    // And where the slot module says they are.
    let a = dir.path().join("a.yml");
    let predicted = axi_obs_alert::rules::slot::offset_ns(
        "same",
        &a.to_string_lossy(),
        INTERVAL_MS * 1_000_000,
    ) / 1_000_000;
    assert_eq!(ours["SameInA"], predicted);
}

/// One `/metrics` page's `prometheus_rule_*` families with a `rule_group` label: name ->
/// (TYPE, HELP, rule_group -> value).
type RuleFamilies = BTreeMap<String, (String, String, BTreeMap<String, f64>)>;

fn rule_families(text: &str) -> RuleFamilies {
    let mut out = RuleFamilies::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP prometheus_rule_") {
            let (name, help) = rest.split_once(' ').unwrap();
            out.entry(format!("prometheus_rule_{name}")).or_default().1 = help.to_owned();
        } else if let Some(rest) = line.strip_prefix("# TYPE prometheus_rule_") {
            let (name, kind) = rest.split_once(' ').unwrap();
            out.entry(format!("prometheus_rule_{name}")).or_default().0 = kind.to_owned();
        } else if line.starts_with("prometheus_rule_")
            && let Some((name, rest)) = line.split_once("{rule_group=\"")
            && let Some((group, value)) = rest.split_once("\"} ")
        {
            out.entry(name.to_owned())
                .or_default()
                .2
                .insert(group.to_owned(), value.parse().unwrap());
        }
    }
    // The summaries without a `rule_group` (not served by axi-alert).
    out.retain(|_, (_, _, series)| !series.is_empty());
    out
}

/// `axi-alert run` serves Prometheus's rule-manager metrics: the same names, types, help and
/// `rule_group` values as a Prometheus running the same file, and the same counts (rules,
/// samples, failures per evaluation); `promtool check metrics` passes on the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_group_metrics_match_prometheus() {
    let Some(prometheus) = axi_obs_core::testing::peer("prometheus") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A firing alert, and a recording rule that fails at every evaluation: its rule label
    // makes the two series of its result one label set.
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: app\n    interval: 1s\n    rules:\n      - alert: Always\n        expr: vector(1)\n      - record: clash\n        expr: vector(1) or label_replace(vector(2), \"x\", \"1\", \"\", \"\")\n        labels: {x: '2'}\n",
    )
    .unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        "global:\n  evaluation_interval: 1s\nrule_files: [rules.yml]\n",
    )
    .unwrap();
    let (_prom, prom_port) = start_prometheus(&prometheus, &config, dir.path());
    let ours_port = free_port();
    let _ours = common::start_run(&config, ours_port, Vec::<&str>::new());

    let client = reqwest::Client::new();
    let page = |port: u16| {
        let client = client.clone();
        async move {
            let r = client
                .get(format!("http://127.0.0.1:{port}/metrics"))
                .send()
                .await
                .ok()?;
            r.text().await.ok()
        }
    };
    let iterations = |f: &RuleFamilies| -> f64 {
        f.get("prometheus_rule_group_iterations_total")
            .and_then(|(_, _, s)| s.values().next().copied())
            .unwrap_or(0.0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let (theirs, ours, our_text) = loop {
        let theirs = rule_families(&page(prom_port).await.unwrap_or_default());
        let our_text = page(ours_port).await.unwrap_or_default();
        let ours = rule_families(&our_text);
        // Past the `for` restore (after the second evaluation), on both.
        if iterations(&theirs) >= 4.0 && iterations(&ours) >= 4.0 {
            break (theirs, ours, our_text);
        }
        assert!(
            Instant::now() < deadline,
            "no evaluations counted: Prometheus {theirs:?}, axi-alert {ours:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    common::promtool_check_metrics(&our_text);

    let group = format!("{};app", dir.path().join("rules.yml").display());
    assert_eq!(ours.len(), 11, "{:?}", ours.keys());
    for (name, (kind, help, series)) in &ours {
        let Some((their_kind, their_help, their_series)) = theirs.get(name) else {
            panic!("Prometheus has no {name}");
        };
        assert_eq!((kind, help), (their_kind, their_help), "{name}");
        assert_eq!(
            series.keys().collect::<Vec<_>>(),
            their_series.keys().collect::<Vec<_>>(),
            "{name}: rule_group values"
        );
        assert_eq!(series.keys().next(), Some(&group), "{name}");
    }
    // The same counts on both sides.
    let value = |f: &RuleFamilies, name: &str| f[name].2[&group];
    for name in [
        "prometheus_rule_group_interval_seconds",
        "prometheus_rule_group_rules",
        "prometheus_rule_group_last_evaluation_samples",
        "prometheus_rule_group_iterations_missed_total",
    ] {
        assert_eq!(value(&ours, name), value(&theirs, name), "{name}");
    }
    assert_eq!(
        value(&ours, "prometheus_rule_group_last_evaluation_samples"),
        2.0
    );
    for (who, f) in [("axi-alert", &ours), ("Prometheus", &theirs)] {
        let ran = value(f, "prometheus_rule_group_iterations_total")
            - value(f, "prometheus_rule_group_iterations_missed_total");
        let failures = value(f, "prometheus_rule_evaluation_failures_total");
        let evaluations = value(f, "prometheus_rule_evaluations_total");
        // Pages are read one family after another: allow one evaluation in between.
        assert!(
            (failures - ran).abs() <= 1.0,
            "{who}: {failures} failures, {ran} runs"
        );
        assert!(
            (evaluations - 2.0 * ran).abs() <= 2.0,
            "{who}: {evaluations} rule evaluations, {ran} runs"
        );
        let last = value(f, "prometheus_rule_group_last_evaluation_timestamp_seconds");
        assert!(
            (now_secs() - last).abs() < 5.0,
            "{who}: last evaluation at {last}"
        );
    }
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
