//! Rules evaluated inside the process deliver what they fire as Prometheus does: to an
//! Alertmanager (`POST /api/v2/alerts`, here a local recorder) and to the built-in router
//! (whose webhook notifications a local receiver records), firing then resolved, with the
//! enrichers' annotations.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axi_obs_alert::delivery::{
    AlertmanagerSender, Config, Dispatcher, DispatcherOptions, Notifier, RetryPolicy, Runner,
    SenderOptions, SystemClock, parse_rfc3339,
};
use axi_obs_alert::inprocess::InProcessRules;
use axi_obs_alert::rules::Alert;
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde_json::Value;

type Bodies = Arc<Mutex<Vec<(String, Value)>>>;

/// A local server recording every JSON body posted to it, with the path.
async fn recorder() -> (String, Bodies) {
    let bodies: Bodies = Arc::default();
    let record = |path: &'static str| {
        move |State(b): State<Bodies>, body: axum::body::Bytes| async move {
            let v: Value = serde_json::from_slice(&body).unwrap();
            b.lock().unwrap().push((path.to_string(), v));
        }
    };
    let app = Router::new()
        .route("/hook", post(record("/hook")))
        .route("/api/v2/alerts", post(record("/api/v2/alerts")))
        .with_state(bodies.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, bodies)
}

async fn wait_for(bodies: &Bodies, what: &str, pred: impl Fn(&(String, Value)) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((_, v)) = bodies.lock().unwrap().iter().find(|b| pred(b)) {
            return v.clone();
        }
        let seen = bodies.lock().unwrap().clone();
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fired_alerts_reach_alertmanager_and_the_router_then_resolve() {
    let (base, bodies) = recorder().await;
    let cfg = Config::parse(
        &format!(
            "route: {{receiver: hook, group_by: [alertname], group_wait: 0s, group_interval: 1s}}\n\
             receivers:\n- name: hook\n  webhook_configs: [{{url: '{base}/hook'}}]\n"
        ),
        Path::new("am.yml"),
    )
    .unwrap();
    let dispatcher = Dispatcher::new(&cfg, DispatcherOptions::default(), 0).unwrap();
    let notifier = Notifier::new(
        axi_obs_alert::delivery::http_client().expect("the delivery HTTP client"),
        RetryPolicy::default(),
    );
    let (runner, router_task) = Runner::spawn(dispatcher, notifier, SystemClock, 64);
    let sender = Arc::new(AlertmanagerSender::new(SenderOptions::new(vec![base.clone()])).unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sending = tokio::spawn({
        let sender = sender.clone();
        async move {
            sender
                .run(async {
                    let _ = stopped.await;
                })
                .await;
        }
    });

    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let rules = InProcessRules::builder()
        .rules_yaml(
            "groups:\n  - name: g\n    rules:\n      - alert: QueueDeep\n        expr: queue_depth > 3\n        labels: {severity: page}\n        annotations: {summary: 'deep queue'}\n",
        )
        .interval(Duration::from_millis(20))
        .label("instance", "self")
        .source(move || {
            // Deep for the first 50 rounds (1 s), then the series goes and the alert resolves.
            if c.fetch_add(1, Ordering::SeqCst) < 50 {
                "queue_depth{queue=\"jobs\"} 9\n".to_string()
            } else {
                String::new()
            }
        })
        .enricher(|_: &Alert| vec![("owner".to_string(), "team-queues".to_string())])
        .alertmanager(sender.clone())
        .router(runner.clone())
        .resend_delay(Duration::from_secs(60))
        .external_url("http://app:8080")
        .start()
        .unwrap();

    // To Alertmanager, as Prometheus sends: firing with an end in the future, the rule's
    // labels and annotations, the enricher's annotation, a generator URL.
    let firing = wait_for(
        &bodies,
        "a firing alert posted to Alertmanager",
        |(p, v)| p == "/api/v2/alerts" && v[0]["labels"]["alertname"] == "QueueDeep",
    )
    .await;
    let a = &firing[0];
    assert_eq!(a["labels"]["instance"], "self");
    assert_eq!(a["labels"]["severity"], "page");
    assert_eq!(a["annotations"]["summary"], "deep queue");
    assert_eq!(a["annotations"]["owner"], "team-queues");
    assert_eq!(
        a["generatorURL"],
        "http://app:8080/graph?g0.expr=queue_depth+%3E+3&g0.tab=1"
    );
    let starts = parse_rfc3339(a["startsAt"].as_str().unwrap())
        .unwrap()
        .unwrap();
    let ends = parse_rfc3339(a["endsAt"].as_str().unwrap())
        .unwrap()
        .unwrap();
    // 4 × max(interval, resend delay) = 4 minutes after the round that sent it.
    assert!(ends - starts >= 239_000, "endsAt {ends} startsAt {starts}");

    // Through the router: a webhook notification, with the enricher's annotation.
    let hook = wait_for(&bodies, "a firing webhook notification", |(p, v)| {
        p == "/hook" && v["status"] == "firing"
    })
    .await;
    assert_eq!(hook["groupLabels"]["alertname"], "QueueDeep");
    assert_eq!(hook["alerts"][0]["annotations"]["owner"], "team-queues");

    // The series goes: both hear of the resolution.
    wait_for(
        &bodies,
        "a resolved alert posted to Alertmanager",
        |(p, v)| {
            p == "/api/v2/alerts"
                && v[0]["endsAt"]
                    .as_str()
                    .is_some_and(|e| parse_rfc3339(e).unwrap().unwrap() <= ends - 200_000)
        },
    )
    .await;
    wait_for(&bodies, "a resolved webhook notification", |(p, v)| {
        p == "/hook" && v["status"] == "resolved"
    })
    .await;
    // Resent only after the resend delay (a minute): one firing post in this test.
    let firing_posts = bodies
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, v)| {
            p == "/api/v2/alerts"
                && v[0]["endsAt"]
                    .as_str()
                    .is_some_and(|e| parse_rfc3339(e).unwrap().unwrap() > starts + 100_000)
        })
        .count();
    assert_eq!(firing_posts, 1);

    drop(rules);
    let _ = stop.send(());
    sending.await.unwrap();
    runner.shutdown().await;
    router_task.await.unwrap();
}
