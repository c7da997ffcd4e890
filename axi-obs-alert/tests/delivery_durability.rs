//! Durability of `axi-alert alertmanager`: a webhook receiver answers 500 for two minutes,
//! then 200. Two routers get the same alerts over the API; one runs through, the other is
//! killed with SIGKILL while nothing could be delivered and started again (nobody re-sends
//! it the alerts). Both must deliver every notification exactly once: the firing ones once
//! the receiver recovers, then a resolution posted while the receiver fails again and,
//! for the second router, across a second `kill -9`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;

use common::{Kill, free_port, now_ms};

/// How long the receiver fails at first, as the issue states it.
const FAIL_FOR: Duration = Duration::from_secs(120);

const CONFIG: &str = r#"route:
  receiver: hook
  group_by: [alertname]
  group_wait: 1s
  group_interval: 5s
  repeat_interval: 1h
receivers:
- name: hook
  webhook_configs:
  - url: URL
"#;

#[derive(Clone, Default)]
struct Receiver {
    failing: Arc<AtomicBool>,
    /// Bodies answered with 200, by path.
    accepted: Arc<Mutex<BTreeMap<String, Vec<Value>>>>,
}

impl Receiver {
    async fn start() -> (Receiver, u16) {
        let r = Receiver::default();
        r.failing.store(true, Ordering::SeqCst);
        let state = r.clone();
        let app = axum::Router::new().route(
            "/{who}",
            axum::routing::post(
                move |axum::extract::Path(who): axum::extract::Path<String>,
                      axum::Json(v): axum::Json<Value>| {
                    let state = state.clone();
                    async move {
                        if state.failing.load(Ordering::SeqCst) {
                            return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                        }
                        state
                            .accepted
                            .lock()
                            .expect("lock")
                            .entry(who)
                            .or_default()
                            .push(v);
                        axum::http::StatusCode::OK
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (r, port)
    }

    /// (group key, status) → how many notifications, for one router.
    fn counts(&self, who: &str) -> BTreeMap<(String, String), usize> {
        let mut out = BTreeMap::new();
        for b in self
            .accepted
            .lock()
            .expect("lock")
            .get(who)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let key = (
                b["groupKey"].as_str().expect("groupKey").to_string(),
                b["status"].as_str().expect("status").to_string(),
            );
            *out.entry(key).or_default() += 1;
        }
        out
    }

    async fn wait_for(&self, who: &str, want: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let n: usize = self.counts(who).values().sum();
            if n >= want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{who}: {n} of {want} notifications: {:?}",
                self.counts(who)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn start(config: &Path, storage: &Path, port: u16) -> Kill {
    Kill(
        std::process::Command::new(env!("CARGO_BIN_EXE_axi-alert"))
            .arg("alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", storage.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start axi-alert alertmanager"),
    )
}

async fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reqwest::get(format!("http://127.0.0.1:{port}/-/ready"))
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "port {port} never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn post(port: u16, alerts: &Value) {
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/v2/alerts"))
        .header("content-type", "application/json")
        .body(alerts.to_string())
        .send()
        .await
        .expect("post alerts");
    assert!(r.status().is_success(), "{}", r.status());
}

fn kill9(k: Kill) {
    let mut k = k;
    // `Child::kill` is SIGKILL: no shutdown handler runs.
    k.0.kill().expect("kill -9");
    k.0.wait().expect("reap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_notification_arrives_once_across_failures_and_kill_9() {
    let (receiver, hook) = Receiver::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ports = BTreeMap::new();
    let mut running = BTreeMap::new();
    for who in ["steady", "killed"] {
        let config = dir.path().join(format!("{who}.yml"));
        std::fs::write(
            &config,
            CONFIG.replace("URL", &format!("http://127.0.0.1:{hook}/{who}")),
        )
        .expect("config");
        let port = free_port();
        running.insert(who, start(&config, &dir.path().join(who), port));
        ports.insert(who, (port, config));
    }
    for (port, _) in ports.values() {
        wait_ready(*port).await;
    }
    let t0 = Instant::now();
    let far = axi_obs_alert::delivery::rfc3339_millis(now_ms() + 3_600_000);
    let firing: Vec<Value> = ["A", "B", "C", "D", "E"]
        .iter()
        .map(|n| json!({"labels": {"alertname": n, "job": "api"}, "endsAt": far}))
        .collect();
    for (port, _) in ports.values() {
        post(*port, &Value::Array(firing.clone())).await;
    }
    // While nothing can be delivered, kill one router and start it again.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (killed_port, killed_config) = ports["killed"].clone();
    kill9(running.remove("killed").expect("killed"));
    tokio::time::sleep(Duration::from_secs(5)).await;
    running.insert(
        "killed",
        start(&killed_config, &dir.path().join("killed"), killed_port),
    );
    wait_ready(killed_port).await;
    let held = reqwest::get(format!("http://127.0.0.1:{killed_port}/api/v2/alerts"))
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    let held: Value = serde_json::from_str(&held).expect("json");
    assert_eq!(held.as_array().expect("array").len(), 5, "{held:#}");

    tokio::time::sleep(FAIL_FOR.saturating_sub(t0.elapsed())).await;
    receiver.failing.store(false, Ordering::SeqCst);
    // Backoff reaches 60 s between attempts, so allow for two of them.
    for who in ["steady", "killed"] {
        receiver.wait_for(who, 5, Duration::from_secs(150)).await;
    }

    // The receiver fails again; A resolves; the second router dies before it could
    // deliver the resolution.
    receiver.failing.store(true, Ordering::SeqCst);
    let resolved = json!([{"labels": {"alertname": "A", "job": "api"},
        "endsAt": axi_obs_alert::delivery::rfc3339_millis(now_ms())}]);
    for (port, _) in ports.values() {
        post(*port, &resolved).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    kill9(running.remove("killed").expect("killed"));
    running.insert(
        "killed",
        start(&killed_config, &dir.path().join("killed"), killed_port),
    );
    wait_ready(killed_port).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    receiver.failing.store(false, Ordering::SeqCst);
    for who in ["steady", "killed"] {
        receiver.wait_for(who, 6, Duration::from_secs(90)).await;
    }
    // Quiet for longer than group_interval: nothing more arrives.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let mut want = BTreeMap::new();
    for n in ["A", "B", "C", "D", "E"] {
        want.insert(
            (format!("{{}}:{{alertname=\"{n}\"}}"), "firing".to_string()),
            1,
        );
    }
    want.insert(
        ("{}:{alertname=\"A\"}".to_string(), "resolved".to_string()),
        1,
    );
    for who in ["steady", "killed"] {
        assert_eq!(receiver.counts(who), want, "{who}");
    }
}
