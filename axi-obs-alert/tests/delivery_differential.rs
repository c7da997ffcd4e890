//! Differential: a real Alertmanager 0.33 and our router get the same configuration
//! (webhook receiver, grouping, inhibition), the same silence and the same alert sequence
//! (fire, partial resolution, resolution of the inhibiting alert, full resolution); the
//! webhook bodies each delivers, per group and in order, must be equal.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axi_obs_alert::delivery::{
    AmAlert, Config, Dispatcher, DispatcherOptions, LabelSet, Matcher, Notifier, RetryPolicy,
    rfc3339_nano,
};
use axi_obs_core::testing::peer;
use serde_json::{Value, json};

mod common;

use common::{free_port, now_ms, start_alertmanager};

type Bodies = Arc<Mutex<Vec<Value>>>;

/// A receiver keeping the bodies posted to `/am` and to `/ours` apart.
async fn webhook_receiver() -> (u16, Bodies, Bodies) {
    let am: Bodies = Arc::default();
    let ours: Bodies = Arc::default();
    let (a, o) = (am.clone(), ours.clone());
    let app = axum::Router::new()
        .route(
            "/am",
            axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
                let a = a.clone();
                async move {
                    a.lock().expect("lock").push(v);
                    "ok"
                }
            }),
        )
        .route(
            "/ours",
            axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
                let o = o.clone();
                async move {
                    o.lock().expect("lock").push(v);
                    "ok"
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, am, ours)
}

const CONFIG: &str = r#"route:
  receiver: hook
  group_by: [alertname, cluster]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
inhibit_rules:
- source_matchers: [severity="critical"]
  target_matchers: [severity="warning"]
  equal: [cluster]
receivers:
- name: hook
  webhook_configs:
  - url: URL
"#;

struct Step {
    labels: LabelSet,
    starts_at: i64,
    ends_at: i64,
}

fn ls(pairs: &[(&str, &str)]) -> LabelSet {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn annotations(labels: &LabelSet) -> LabelSet {
    ls(&[(
        "summary",
        &format!(
            "{} is wrong",
            labels.get("alertname").map_or("", String::as_str)
        ),
    )])
}

const GENERATOR: &str = "http://prometheus:9090/graph?g0.expr=up+%3D%3D+0&g0.tab=1";

/// Posts `steps` to Alertmanager in one request and inserts them into ours at the same time.
async fn post(http: &reqwest::Client, base: &str, d: &mut Dispatcher, steps: &[Step]) {
    let body: Vec<Value> = steps
        .iter()
        .map(|s| {
            json!({
                "labels": s.labels,
                "annotations": annotations(&s.labels),
                "startsAt": rfc3339_nano(s.starts_at),
                "endsAt": rfc3339_nano(s.ends_at),
                "generatorURL": GENERATOR,
            })
        })
        .collect();
    let now = now_ms();
    {
        for s in steps {
            d.insert(
                AmAlert {
                    labels: s.labels.clone(),
                    annotations: annotations(&s.labels),
                    starts_at: s.starts_at,
                    ends_at: Some(s.ends_at),
                    generator_url: GENERATOR.to_string(),
                },
                now,
            );
        }
    }
    let r = http
        .post(format!("{base}/api/v2/alerts"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).expect("json"))
        .send()
        .await
        .expect("post alerts");
    assert!(r.status().is_success(), "{}", r.status());
}

/// Drives our dispatcher on the wall clock until both sides delivered `want` bodies in all
/// and then stayed quiet for `quiet` (longer than group_interval), or `limit` passes.
async fn settle(
    d: &mut Dispatcher,
    n: &Notifier,
    am: &Bodies,
    ours: &Bodies,
    want: usize,
    quiet: Duration,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    let mut since: Option<Instant> = None;
    loop {
        d.tick(now_ms(), n).await.expect("tick");
        let (a, o) = (
            am.lock().expect("lock").len(),
            ours.lock().expect("lock").len(),
        );
        if a >= want && o >= want {
            let start = *since.get_or_insert_with(Instant::now);
            if start.elapsed() >= quiet {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out: Alertmanager sent {a}, we sent {o}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Bodies per group key, in the order sent.
fn by_group(bodies: &Bodies) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for b in bodies.lock().expect("lock").iter() {
        out.entry(b["groupKey"].as_str().expect("groupKey").to_string())
            .or_default()
            .push(b.clone());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_alertmanager_and_our_router_deliver_the_same_bodies() {
    let Some(am_bin) = peer("alertmanager") else {
        return;
    };
    let (hook_port, am_bodies, our_bodies) = webhook_receiver().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let am_config = CONFIG.replace("URL", &format!("http://127.0.0.1:{hook_port}/am"));
    let our_config = CONFIG.replace("URL", &format!("http://127.0.0.1:{hook_port}/ours"));
    let config_path = dir.path().join("alertmanager.yml");
    std::fs::write(&config_path, &am_config).expect("write config");
    let cfg = Config::parse(&our_config, Path::new("ours.yml")).unwrap_or_else(|e| panic!("{e}"));
    let _am = start_alertmanager(&am_bin, &config_path, &dir.path().join("data"), port, &base);
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = match http.get(format!("{base}/-/ready")).send().await {
            Ok(r) => r.status().is_success(),
            Err(_) => false,
        };
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "Alertmanager not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut d = Dispatcher::new(
        &cfg,
        DispatcherOptions {
            external_url: base.clone(),
            ..DispatcherOptions::default()
        },
        now_ms(),
    )
    .expect("dispatcher");
    let n = Notifier::new(
        axi_obs_alert::delivery::http_client().expect("the delivery HTTP client"),
        RetryPolicy::default(),
    );

    // The same silence on both sides.
    let t = now_ms();
    let r = http
        .post(format!("{base}/api/v2/silences"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&json!({
            "matchers": [{"name": "alertname", "value": "DiffSilenced", "isRegex": false, "isEqual": true}],
            "startsAt": rfc3339_nano(t),
            "endsAt": rfc3339_nano(t + 3_600_000),
            "createdBy": "test",
            "comment": "differential",
        })).expect("json"))
        .send()
        .await
        .expect("silence");
    assert!(r.status().is_success(), "{}", r.status());
    d.silences_mut()
        .create(
            Matcher::parse_list(r#"alertname="DiffSilenced""#).expect("matcher"),
            t,
            t + 3_600_000,
            "test",
            "differential",
            t,
        )
        .expect("our silence");

    let start = now_ms();
    let far = start + 600_000;
    let a1 = ls(&[
        ("alertname", "Diff"),
        ("cluster", "a"),
        ("severity", "warning"),
        ("instance", "1"),
    ]);
    let a2 = ls(&[
        ("alertname", "Diff"),
        ("cluster", "a"),
        ("severity", "warning"),
        ("instance", "2"),
    ]);
    let crit = ls(&[
        ("alertname", "DiffCrit"),
        ("cluster", "b"),
        ("severity", "critical"),
    ]);
    let inh = ls(&[
        ("alertname", "DiffInh"),
        ("cluster", "b"),
        ("severity", "warning"),
    ]);
    let sil = ls(&[
        ("alertname", "DiffSilenced"),
        ("cluster", "a"),
        ("severity", "info"),
    ]);
    let step = |l: &LabelSet, end: i64| Step {
        labels: l.clone(),
        starts_at: start,
        ends_at: end,
    };
    let quiet = Duration::from_secs(5);
    let limit = Duration::from_secs(60);

    // 1. Everything fires: Diff (2 alerts) and DiffCrit are notified; DiffInh is inhibited,
    //    DiffSilenced silenced.
    post(
        &http,
        &base,
        &mut d,
        &[
            step(&a1, far),
            step(&a2, far),
            step(&crit, far),
            step(&inh, far),
            step(&sil, far),
        ],
    )
    .await;
    settle(&mut d, &n, &am_bodies, &our_bodies, 2, quiet, limit).await;
    // 2. One Diff alert and the inhibiting alert resolve: Diff "some alerts resolved",
    //    DiffCrit "all alerts resolved", DiffInh notified for the first time.
    let t2 = now_ms();
    post(
        &http,
        &base,
        &mut d,
        &[
            step(&a1, t2),
            step(&a2, far),
            step(&crit, t2),
            step(&inh, far),
            step(&sil, far),
        ],
    )
    .await;
    settle(&mut d, &n, &am_bodies, &our_bodies, 5, quiet, limit).await;
    // 3. Everything resolves.
    let t3 = now_ms();
    post(
        &http,
        &base,
        &mut d,
        &[step(&a2, t3), step(&inh, t3), step(&sil, t3)],
    )
    .await;
    settle(&mut d, &n, &am_bodies, &our_bodies, 7, quiet, limit).await;

    let am = by_group(&am_bodies);
    let ours = by_group(&our_bodies);
    let reasons = |m: &BTreeMap<String, Vec<Value>>| -> Vec<(String, Vec<String>)> {
        m.iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.iter()
                        .map(|b| b["notification_reason"].as_str().unwrap_or("").to_string())
                        .collect(),
                )
            })
            .collect()
    };
    assert_eq!(reasons(&ours), reasons(&am));
    assert_eq!(
        reasons(&am),
        vec![
            (
                r#"{}:{alertname="Diff", cluster="a"}"#.to_string(),
                vec![
                    "first notification".to_string(),
                    "some alerts resolved".to_string(),
                    "all alerts resolved".to_string()
                ]
            ),
            (
                r#"{}:{alertname="DiffCrit", cluster="b"}"#.to_string(),
                vec![
                    "first notification".to_string(),
                    "all alerts resolved".to_string()
                ]
            ),
            (
                r#"{}:{alertname="DiffInh", cluster="b"}"#.to_string(),
                vec![
                    "first notification".to_string(),
                    "all alerts resolved".to_string()
                ]
            ),
        ]
    );
    // Field for field: times were posted explicitly and the external URL is the same.
    assert_eq!(ours, am);
    assert_eq!(
        our_bodies.lock().expect("lock").len(),
        am_bodies.lock().expect("lock").len()
    );
}
