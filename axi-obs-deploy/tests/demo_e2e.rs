//! End to end: the demo service (in this process, wired as its binary wires it) and the real
//! `axi-deploy run` binary posting to it. The deploy must show up in the demo's `/metrics`, its
//! JSON log lines, a trace exported over OTLP, an SSE client connected before the deploy, and
//! `GET /api/deploy/history`.
//!
//! The demo runs in-process because only this package's tests know where the `axi-deploy`
//! binary is (`CARGO_BIN_EXE_axi-deploy`); demo-service is a dev-dependency. Its telemetry is
//! installed globally, as in the binary, so this file holds a single test.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axi_obs_core::testing::{OtlpReceiver, attr, hex};
use axi_obs_core::{Env, LogFormat, OtlpConfig, Protocol};
use serde_json::Value;

/// A safety net against a hung test, never an assertion about speed.
const DEADLINE: Duration = Duration::from_secs(60);

/// Log lines written by the telemetry's background writer.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn json(&self) -> Vec<Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// Reads SSE frames until the `succeeded` event of project `demo`; returns `(id, data)` pairs.
async fn sse_until_succeeded(mut resp: reqwest::Response) -> Vec<(u64, Value)> {
    let mut buf = String::new();
    let mut frames = Vec::new();
    loop {
        let chunk = tokio::time::timeout(DEADLINE, resp.chunk())
            .await
            .expect("SSE stream stalled")
            .unwrap()
            .expect("SSE stream ended early");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let (mut id, mut data) = (None, None);
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = Some(v.trim().parse::<u64>().unwrap());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = Some(serde_json::from_str::<Value>(v.trim()).unwrap());
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                let done = data["type"] == "succeeded" && data["deployment"]["project"] == "demo";
                frames.push((id, data));
                if done {
                    return frames;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_through_axi_deploy_run_shows_in_metrics_logs_trace_stream_and_history() {
    let receiver = OtlpReceiver::start(Protocol::HttpProtobuf).await.unwrap();
    let lines = Lines::default();
    let telemetry = demo_service::telemetry()
        .env(Env::empty())
        .log_format(LogFormat::Json)
        .log_writer(lines.clone())
        .otlp(OtlpConfig::new().endpoint(receiver.endpoint()))
        .try_install()
        .unwrap();
    demo_service::describe_metrics();
    let dir = tempfile::tempdir().unwrap();
    let deploys = demo_service::Deploys::open(dir.path().join("data/deploys.db")).unwrap();
    let state = demo_service::AppState::new(axi_obs_core::global_metrics().unwrap(), None)
        .deploys(deploys.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, demo_service::app(state))
            .await
            .unwrap();
    });

    // A dashboard connected before the deploy.
    let client = reqwest::Client::builder().build().unwrap();
    let sse = client
        .get(format!("{base}/api/deploy/stream"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status().as_u16(), 200);
    let sse = tokio::spawn(sse_until_succeeded(sse));

    let script =
        r###"echo "##[step] build"; echo compiling; echo "##[step] migrate"; echo migrated"###;
    let spool = dir.path().join("spool");
    let cli = {
        let base = base.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_axi-deploy"))
                .args(["run", "--endpoint", &base, "--spool"])
                .arg(&spool)
                .args(["--project", "demo", "--env", "prod", "--version", "v1.2.3"])
                .args(["--", "sh", "-c", script])
                .env_remove("AXI_DEPLOY_ENDPOINT")
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    assert!(
        cli.status.success(),
        "axi-deploy run failed: {}",
        String::from_utf8_lossy(&cli.stderr)
    );
    // Spooled events are files in the spool itself (`active/` holds open sessions).
    assert!(
        std::fs::read_dir(dir.path().join("spool"))
            .map(|d| d.flatten().all(|e| e.path().is_dir()))
            .unwrap_or(true),
        "events were spooled instead of delivered: {}",
        String::from_utf8_lossy(&cli.stderr)
    );

    // The stream: every event of the deploy, in order, numbered.
    let frames = tokio::time::timeout(DEADLINE, sse).await.unwrap().unwrap();
    let kinds: Vec<String> = frames
        .iter()
        .map(|(_, d)| {
            let step = d["step"]["name"]
                .as_str()
                .map(|s| format!(" {s}"))
                .unwrap_or_default();
            format!("{}{step}", d["type"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "started",
            "step_started build",
            "step_finished build",
            "step_started migrate",
            "step_finished migrate",
            "succeeded"
        ]
    );
    assert!(frames.windows(2).all(|w| w[0].0 < w[1].0), "{frames:?}");
    assert!(
        frames
            .iter()
            .all(|(_, d)| d["deployment"]["version"] == "v1.2.3")
    );

    // The hooks run on their own thread: wait for them before reading their output.
    let hooks = deploys.hooks().clone();
    assert!(
        tokio::task::spawn_blocking(move || hooks.flush(DEADLINE))
            .await
            .unwrap()
    );

    // History.
    let history: Value = client
        .get(format!("{base}/api/deploy/history?project=demo"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = history.as_array().unwrap();
    assert_eq!(list.len(), 1, "{history}");
    assert_eq!(list[0]["environment"], "prod");
    assert_eq!(list[0]["version"], "v1.2.3");
    assert_eq!(list[0]["status"], "succeeded");
    let steps: Vec<&str> = list[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["build", "migrate"]);
    let deployment_id = list[0]["id"].as_str().unwrap().to_owned();

    // Metrics, as Prometheus would scrape them.
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sample = |name: &str, labels: &[&str]| {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|x| l.contains(x)))
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_owned)
    };
    let demo = ["project=\"demo\"", "environment=\"prod\""];
    assert_eq!(
        sample("deploys_total", &[demo[0], demo[1], "status=\"succeeded\""]).as_deref(),
        Some("1"),
        "{metrics}"
    );
    assert_eq!(
        sample("deploy_duration_seconds_count", &[demo[0], demo[1]]).as_deref(),
        Some("1")
    );
    assert_eq!(
        sample(
            "deploy_step_duration_seconds_count",
            &[demo[0], "step=\"migrate\""]
        )
        .as_deref(),
        Some("1")
    );
    assert_eq!(sample("deploys_in_progress", &demo).as_deref(), Some("0"));
    assert!(sample("deploy_last_success_timestamp_seconds", &demo).is_some());

    // A deploy-aware alert: the demo's in-process rules fire on a rejected order, and the
    // alert carries the deploy that went out just before.
    let finished_at = time::OffsetDateTime::parse(
        list[0]["finished_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let rules = demo_service::alerts::start(
        &demo_service::alerts::AlertsConfig {
            project: "demo".into(),
            environment: "prod".into(),
            interval: Duration::from_millis(50),
        },
        Some(&deploys),
    )
    .unwrap();
    let rejected = client
        .post(format!("{base}/api/orders"))
        .json(&serde_json::json!({"product_id": 1, "quantity": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(rejected.status().as_u16(), 422);
    let deadline = std::time::Instant::now() + DEADLINE;
    let firing = loop {
        if let Some(a) = rules
            .alerts()
            .into_iter()
            .find(|a| a.state == axi_obs_alert::rules::AlertState::Firing)
        {
            break a;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the demo alert never fired"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(firing.labels.get("alertname"), Some("OrdersNotCreated"));
    let age = (firing.active_at - axi_obs_deploy::event::unix_ms(finished_at)) / 1000;
    assert!(
        age >= 0,
        "the alert became active after the deploy finished"
    );
    let a = &firing.annotations;
    assert_eq!(a["last_deploy_version"], "v1.2.3");
    assert_eq!(a["last_deploy_id"], deployment_id.as_str());
    assert_eq!(a["last_deploy_status"], "succeeded");
    assert_eq!(a["last_deploy_age_seconds"], age.to_string());
    assert_eq!(
        a["last_deploy"],
        format!("started {age} s after v1.2.3 of demo went out to prod")
    );
    drop(rules);

    // Stop as the binary does, so the spans are exported and the logs written.
    deploys.shutdown(DEADLINE);
    server.abort();
    telemetry.shutdown().await.unwrap();

    // JSON log lines, one per transition.
    let logs = lines.json();
    let line = |msg: &str| {
        logs.iter()
            .find(|l| l["message"] == msg && l["deploy.project"] == "demo")
            .unwrap_or_else(|| panic!("no `{msg}` log line: {logs:#?}"))
    };
    let done = line("deploy succeeded");
    assert_eq!(done["deploy.version"], "v1.2.3");
    assert_eq!(done["deploy.environment"], "prod");
    assert_eq!(done["deploy.id"], deployment_id.as_str());
    assert_eq!(done["service.name"], "demo-service");
    assert_eq!(line("deploy step finished")["deploy.step"], "build");
    let alert_line = logs
        .iter()
        .find(|l| l["message"] == "alert firing")
        .unwrap_or_else(|| panic!("no `alert firing` log line: {logs:#?}"));
    assert!(
        alert_line["annotations"]
            .as_str()
            .unwrap()
            .contains("went out to prod"),
        "{alert_line}"
    );

    // The trace: one span for the deployment, its steps as children.
    assert!(
        receiver
            .wait_until(DEADLINE, |r| r
                .spans()
                .iter()
                .any(|s| s.span.name == "deploy demo"))
            .await,
        "no deployment span exported"
    );
    let spans = receiver.spans();
    let root = spans.iter().find(|s| s.span.name == "deploy demo").unwrap();
    assert_eq!(
        attr(&root.span.attributes, "deployment.version").as_deref(),
        Some("v1.2.3")
    );
    assert_eq!(
        attr(&root.span.attributes, "deployment.id").as_deref(),
        Some(deployment_id.as_str())
    );
    assert!(
        root.resource
            .iter()
            .any(|(k, v)| k == "service.name" && v == "demo-service")
    );
    for step in ["build", "migrate"] {
        let s = spans
            .iter()
            .find(|s| s.span.name == step)
            .unwrap_or_else(|| panic!("no `{step}` span"));
        assert_eq!(hex(&s.span.parent_span_id), hex(&root.span.span_id));
        assert_eq!(hex(&s.span.trace_id), hex(&root.span.trace_id));
    }
}
