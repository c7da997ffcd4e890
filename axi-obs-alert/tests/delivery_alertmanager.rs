//! Delivery against a real Alertmanager 0.33 on loopback: alerts posted as Prometheus posts
//! them are listed by its API and by `amtool`, and its webhook notifications equal, field for
//! field, the ones our router builds for the same configuration and alerts.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axi_obs_alert::delivery::{
    AlertmanagerSender, AmAlert, Config, LabelSet, Notification, NotificationReason, Route,
    SenderOptions, WebhookMessage, alerts_to_send, parse_rfc3339, sort_for_notification,
};
use axi_obs_alert::promql::Labels;
use axi_obs_alert::rules::{Alert, AlertState};
use axi_obs_core::testing::peer;
use serde_json::Value;

const ALERTNAME: &str = "AxiDeliveryTest";

mod common;

use common::{free_port, now_ms, poll, start_alertmanager};

type Bodies = Arc<Mutex<Vec<Value>>>;

async fn webhook_receiver() -> (u16, Bodies) {
    let bodies: Bodies = Arc::default();
    let store = bodies.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let store = store.clone();
            async move {
                store.lock().expect("lock").push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, bodies)
}

fn rule_alert(instance: &str, fired_at: i64) -> Alert {
    Alert {
        labels: Labels::from_pairs([
            ("alertname", ALERTNAME),
            ("job", "api"),
            ("instance", instance),
            ("severity", "critical"),
        ]),
        annotations: BTreeMap::from([("summary".to_string(), format!("{instance} is down"))]),
        state: AlertState::Firing,
        value: 1.0,
        active_at: fired_at,
        fired_at: Some(fired_at),
        resolved_at: None,
        last_sent_at: None,
        keep_firing_since: None,
    }
}

fn labels_of(v: &Value) -> LabelSet {
    v.as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string").to_string()))
        .collect()
}

/// What our router would send for the alerts Alertmanager notified about.
fn our_message(
    cfg: &Config,
    body: &Value,
    reason: NotificationReason,
    now: i64,
    external_url: &str,
) -> Value {
    let tree = Route::from_config(cfg.route.as_ref().expect("route"));
    let mut alerts: Vec<AmAlert> = body["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|a| AmAlert {
            labels: labels_of(&a["labels"]),
            annotations: labels_of(&a["annotations"]),
            starts_at: parse_rfc3339(a["startsAt"].as_str().expect("t"))
                .expect("time")
                .expect("set"),
            // A firing alert's end lies ahead (Prometheus sent ValidUntil).
            ends_at: parse_rfc3339(a["endsAt"].as_str().expect("t"))
                .expect("time")
                .or(Some(now + 600_000)),
            generator_url: a["generatorURL"].as_str().expect("url").to_string(),
        })
        .collect();
    // Our own order, not the one received.
    alerts.reverse();
    sort_for_notification(&mut alerts);
    let routes = tree.matches(&alerts[0].labels);
    assert_eq!(routes.len(), 1);
    let route = routes[0];
    let n = Notification {
        receiver: route.opts.receiver.clone(),
        group_key: route.group_key(&alerts[0].labels),
        group_labels: route.group_labels(&alerts[0].labels),
        alerts,
        reason,
        now_ms: now,
        external_url: external_url.to_string(),
    };
    let hook = &cfg.receivers[0].webhook_configs[0];
    serde_json::to_value(WebhookMessage::new(
        &n,
        &n.alerts_for(hook.send_resolved),
        hook.max_alerts,
    ))
    .expect("json")
}

async fn amtool_query(amtool: &Path, url: &str) -> Vec<Value> {
    let out = tokio::process::Command::new(amtool)
        .args([
            &format!("--alertmanager.url={url}"),
            "alert",
            "query",
            "-o",
            "json",
            &format!("alertname={ALERTNAME}"),
        ])
        .output()
        .await
        .expect("amtool runs");
    assert!(
        out.status.success(),
        "amtool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .expect("amtool JSON")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_alertmanager_receives_lists_and_notifies_like_our_router() {
    let Some(am_bin) = peer("alertmanager") else {
        return;
    };
    let Some(amtool) = peer("amtool") else { return };
    let (hook_port, bodies) = webhook_receiver().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let config_text = format!(
        "route:\n  receiver: hook\n  group_by: [alertname, job]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n- name: hook\n  webhook_configs:\n  - url: http://127.0.0.1:{hook_port}/hook\n    send_resolved: true\n"
    );
    let config_path = dir.path().join("alertmanager.yml");
    std::fs::write(&config_path, &config_text).expect("write config");
    // The same file, read by our parser: the differential below uses our routing.
    let ours = Config::load(&config_path).unwrap_or_else(|e| panic!("{e}"));
    let _am = start_alertmanager(&am_bin, &config_path, &dir.path().join("data"), port, &base);
    let http = reqwest::Client::new();
    poll("Alertmanager ready", Duration::from_secs(30), async || {
        let r = http.get(format!("{base}/-/ready")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;

    // Fire, as Prometheus's rule manager and notifier do.
    let mut opts = SenderOptions::new(vec![base.clone()]);
    opts.external_labels = LabelSet::from([("cluster".to_string(), "test".to_string())]);
    let sender = AlertmanagerSender::new(opts).expect("sender");
    let fired = now_ms() - 10_000;
    let mut rules = vec![rule_alert("b:80", fired), rule_alert("a:80", fired)];
    let ts = now_ms();
    let batch = alerts_to_send(
        rules.iter_mut(),
        ts,
        Duration::from_secs(15),
        Duration::from_secs(60),
        "http://prometheus:9090/graph?g0.expr=up+%3D%3D+0&g0.tab=1",
    );
    assert_eq!(batch.len(), 2);
    sender.send(batch);
    let report = sender.flush().await;
    assert_eq!(
        (report.batches, report.alerts, report.failed_batches),
        (1, 2, 0),
        "{report:?}"
    );
    assert_eq!(sender.sent(), 2);

    // Its API lists them with the external label and Prometheus's times.
    let listed: Vec<Value> = poll("alerts in the API", Duration::from_secs(10), async || {
        let v: Value = http
            .get(format!(
                "{base}/api/v2/alerts?filter=alertname%3D{ALERTNAME}"
            ))
            .send()
            .await
            .ok()?
            .bytes()
            .await
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())?;
        let a = v.as_array()?.clone();
        (a.len() == 2).then_some(a)
    })
    .await;
    for a in &listed {
        assert_eq!(a["labels"]["cluster"], "test");
        assert_eq!(a["labels"]["job"], "api");
        assert_eq!(a["status"]["state"], "active");
        let starts = parse_rfc3339(a["startsAt"].as_str().expect("t")).expect("t");
        assert_eq!(starts, Some(fired));
        let ends = parse_rfc3339(a["endsAt"].as_str().expect("t")).expect("t");
        // ValidUntil = ts + 4 × max(15 s, 60 s).
        assert_eq!(ends, Some(ts + 240_000));
        assert_eq!(
            a["generatorURL"],
            "http://prometheus:9090/graph?g0.expr=up+%3D%3D+0&g0.tab=1"
        );
    }
    // And so does the real amtool.
    let q = amtool_query(&amtool, &base).await;
    let mut instances: Vec<&str> = q
        .iter()
        .map(|a| a["labels"]["instance"].as_str().expect("instance"))
        .collect();
    instances.sort_unstable();
    assert_eq!(instances, ["a:80", "b:80"]);

    // Its webhook notification equals ours, field for field.
    let firing = poll("firing webhook", Duration::from_secs(30), async || {
        let b = bodies.lock().expect("lock");
        // Under load the first flush may hold one alert; the next (group_interval 1s) has both.
        b.iter()
            .find(|v| {
                v["status"] == "firing" && v["alerts"].as_array().is_some_and(|a| a.len() == 2)
            })
            .cloned()
    })
    .await;
    assert_eq!(
        firing["groupKey"],
        format!("{{}}:{{alertname=\"{ALERTNAME}\", job=\"api\"}}")
    );
    assert_eq!(firing["alerts"].as_array().expect("alerts").len(), 2);
    assert_eq!(firing["commonLabels"]["cluster"], "test");
    // When the first flush held one alert, this is Alertmanager's second notification of the
    // group; which one it is belongs to the notification log, not built here yet.
    let reason = if firing["notification_reason"] == "new alerts added" {
        NotificationReason::NewAlertsAdded
    } else {
        NotificationReason::FirstNotification
    };
    let expected = our_message(&ours, &firing, reason, now_ms(), &base);
    assert_eq!(firing, expected);

    // Resolve: sent at once with endsAt = resolvedAt.
    let resolved_at = now_ms();
    for a in &mut rules {
        a.state = AlertState::Inactive;
        a.resolved_at = Some(resolved_at);
    }
    let batch = alerts_to_send(
        rules.iter_mut(),
        resolved_at,
        Duration::from_secs(15),
        Duration::from_secs(60),
        "http://prometheus:9090/graph?g0.expr=up+%3D%3D+0&g0.tab=1",
    );
    assert_eq!(batch.len(), 2);
    assert!(batch.iter().all(|a| a.ends_at == Some(resolved_at)));
    sender.send(batch);
    assert_eq!(sender.flush().await.failed_batches, 0);

    let resolved = poll("resolved webhook", Duration::from_secs(30), async || {
        let b = bodies.lock().expect("lock");
        b.iter().find(|v| v["status"] == "resolved").cloned()
    })
    .await;
    assert_eq!(resolved["groupKey"], firing["groupKey"]);
    for a in resolved["alerts"].as_array().expect("alerts") {
        assert_eq!(
            parse_rfc3339(a["endsAt"].as_str().expect("t")).expect("t"),
            Some(resolved_at)
        );
    }
    let expected = our_message(
        &ours,
        &resolved,
        NotificationReason::AllAlertsResolved,
        now_ms(),
        &base,
    );
    assert_eq!(resolved, expected);

    // No longer active: neither the API nor amtool list them.
    poll(
        "alerts gone from the API",
        Duration::from_secs(10),
        async || {
            let v: Value = http
                .get(format!(
                    "{base}/api/v2/alerts?filter=alertname%3D{ALERTNAME}"
                ))
                .send()
                .await
                .ok()?
                .bytes()
                .await
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())?;
            v.as_array()?.is_empty().then_some(())
        },
    )
    .await;
    assert!(amtool_query(&amtool, &base).await.is_empty());
}
