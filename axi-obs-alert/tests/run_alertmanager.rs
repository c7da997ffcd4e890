//! `axi-alert run` with Prometheus's `alerting.alertmanagers`: a rule that fires at once
//! reaches a real Alertmanager 0.33 with the rule's labels and annotations, the external
//! labels, and Prometheus's `endsAt` (evaluation time + 4 × max(evaluation interval, resend
//! delay)); an alert that resolves is sent at once as resolved, so Alertmanager stops
//! listing it long before its `endsAt`.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;

use axi_obs_core::testing::peer;
use serde_json::Value;

mod common;

use common::{free_port, now_ms, poll, serve, start_alertmanager, start_run};

fn parse_rfc3339(s: &str) -> i64 {
    axi_obs_alert::promqltest::parse_rfc3339_ms(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_sends_firing_alerts_to_alertmanager() {
    let Some(am_bin) = peer("alertmanager") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let am_config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &am_config,
        "route:\n  receiver: none\nreceivers:\n- name: none\n",
    )
    .unwrap();
    let am_port = free_port();
    let am_base = format!("http://127.0.0.1:{am_port}");
    let _am = start_alertmanager(
        &am_bin,
        &am_config,
        &dir.path().join("am-data"),
        am_port,
        "",
    );

    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: always\n    rules:\n      - alert: AxiRunAlways\n        expr: vector(1)\n        for: 0s\n        labels:\n          severity: page\n        annotations:\n          summary: 'value {{ $value }} in {{ $externalLabels.cluster }}'\n      - alert: AxiRunSwitch\n        expr: switch == 1\n",
    )
    .unwrap();
    // `switch` is 1 until the test turns it off.
    let on = Arc::new(AtomicBool::new(true));
    let flag = on.clone();
    let target_port = serve(Router::new().route(
        "/metrics",
        get(move || {
            let v = u8::from(flag.load(Ordering::SeqCst));
            async move { format!("# TYPE switch gauge\nswitch {v}\n") }
        }),
    ))
    .await;
    // A bearer token Alertmanager ignores (no web config): its file is read at load.
    std::fs::write(dir.path().join("token"), "tok\n").unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  external_labels:\n    cluster: test-run\n    replica: a\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: switch\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\nalerting:\n  alertmanagers:\n    - scheme: http\n      api_version: v2\n      timeout: 5s\n      authorization:\n        credentials_file: token\n      static_configs:\n        - targets: ['127.0.0.1:{am_port}']\n"
        ),
    )
    .unwrap();
    // Ready before the first evaluation: a batch Alertmanager refuses is dropped, as
    // Prometheus drops it, and sent again only after the 1 m resend delay.
    let client = reqwest::Client::new();
    poll("Alertmanager ready", Duration::from_secs(30), async || {
        let r = client.get(format!("{am_base}/-/ready")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    let port = free_port();
    let started = now_ms();
    let _run = start_run(&config, port, std::iter::empty::<&str>());

    // The alerts Alertmanager lists as active, by name.
    let listed = async |name: &str| -> Option<Vec<Value>> {
        let body = client
            .get(format!("{am_base}/api/v2/alerts?filter=alertname%3D{name}"))
            .send()
            .await
            .ok()?
            .bytes()
            .await
            .ok()?;
        let v: Value = serde_json::from_slice(&body).ok()?;
        v.as_array().cloned()
    };
    let alert = poll(
        "the alert in Alertmanager",
        Duration::from_secs(30),
        async || listed("AxiRunAlways").await?.first().cloned(),
    )
    .await;
    let labels: Value = serde_json::json!({
        "alertname": "AxiRunAlways",
        "severity": "page",
        "cluster": "test-run",
        "replica": "a",
    });
    assert_eq!(alert["labels"], labels);
    assert_eq!(
        alert["annotations"],
        serde_json::json!({"summary": "value 1 in test-run"})
    );
    assert_eq!(alert["status"]["state"], "active");
    let starts = parse_rfc3339(alert["startsAt"].as_str().unwrap());
    let ends = parse_rfc3339(alert["endsAt"].as_str().unwrap());
    assert!(
        starts >= started - 1_000,
        "startsAt {starts}, started {started}"
    );
    // endsAt = evaluation time + 4 × max(1 s, 1 m resend delay); startsAt is an earlier or
    // the same evaluation's time.
    assert!(
        ends - starts >= 240_000 && ends - starts <= 240_000 + 10_000,
        "startsAt {starts}, endsAt {ends}"
    );

    // Resolved: sent at once (not left to expire at its endsAt, minutes away).
    let switch = poll("the switch alert", Duration::from_secs(30), async || {
        listed("AxiRunSwitch").await?.first().cloned()
    })
    .await;
    assert_eq!(switch["labels"]["job"], "switch");
    assert_eq!(switch["labels"]["cluster"], "test-run");
    on.store(false, Ordering::SeqCst);
    poll(
        "the switch alert resolved",
        Duration::from_secs(30),
        async || listed("AxiRunSwitch").await?.is_empty().then_some(()),
    )
    .await;
    assert_eq!(listed("AxiRunAlways").await.unwrap().len(), 1);

    // Counted under Prometheus's names on run's own /metrics, which promtool accepts.
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sent_line = format!("prometheus_notifications_sent_total{{alertmanager=\"{am_base}\"}} ");
    let sent: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(&sent_line))
        .unwrap_or_else(|| panic!("no {sent_line:?} in {metrics}"))
        .parse()
        .unwrap();
    assert!(sent >= 3.0, "{metrics}");
    common::promtool_check_metrics(&metrics);
}

/// When a reload changes `alerting.alertmanagers`, the alerts still queued go to the new
/// Alertmanagers, as from Prometheus's single notification queue: not to the old ones after
/// they answer (here never), nor only at the next resend a minute later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_queued_when_the_alertmanagers_change_go_to_the_new_ones() {
    use axum::routing::post;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    // The old Alertmanager takes the first batch and never answers: what comes next waits.
    let hung_posts = Arc::new(AtomicUsize::new(0));
    let counted = hung_posts.clone();
    let hung_port = serve(Router::new().route(
        "/api/v2/alerts",
        post(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_secs(120)).await;
                ""
            }
        }),
    ))
    .await;
    // The new one records the names it is sent.
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let names = received.clone();
    let new_port = serve(Router::new().route(
        "/api/v2/alerts",
        post(move |body: axum::body::Bytes| {
            let alerts: Vec<Value> = serde_json::from_slice(&body).unwrap_or_default();
            names.lock().unwrap().extend(
                alerts
                    .iter()
                    .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_owned)),
            );
            async { "" }
        }),
    ))
    .await;

    let config_for = |am: u16| {
        format!(
            "global:\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nalerting:\n  alertmanagers:\n    - timeout: 60s\n      static_configs:\n        - targets: ['127.0.0.1:{am}']\n"
        )
    };
    let (dir, config) = common::run_dir(
        &[(
            "rules.yml",
            "groups:\n  - name: g\n    rules:\n      - alert: First\n        expr: vector(1)\n      - alert: Queued\n        expr: vector(1)\n        for: 2s\n",
        )],
        &config_for(hung_port),
    );
    let port = free_port();
    let _run = start_run(&config, port, std::iter::empty::<&str>());
    let client = reqwest::Client::new();
    poll(
        "the first batch on its way",
        Duration::from_secs(30),
        async || (hung_posts.load(Ordering::SeqCst) > 0).then_some(()),
    )
    .await;
    // `Queued` fires (and is sent to the notifier) two seconds later, behind the batch.
    poll("Queued firing", Duration::from_secs(30), async || {
        let alerts = common::api_alerts(&client, port).await?;
        alerts
            .iter()
            .any(|a| a["labels"]["alertname"] == "Queued" && a["state"] == "firing")
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        hung_posts.load(Ordering::SeqCst),
        1,
        "one batch, still on its way"
    );

    std::fs::write(&config, config_for(new_port)).unwrap();
    common::reload(&client, port).await;
    poll(
        "the queued alert at the new Alertmanager",
        Duration::from_secs(10),
        async || {
            received
                .lock()
                .unwrap()
                .iter()
                .any(|n| n == "Queued")
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        hung_posts.load(Ordering::SeqCst),
        1,
        "nothing more to the old one"
    );
    drop(dir);
}
