//! Events that arrive over HTTP (the intake and GitHub webhooks) reach the metrics, log and
//! trace hooks through the dispatcher `DeployRoutes::new` starts, with no wiring beyond it.
//!
//! The default hooks use the process's global recorder, subscriber and tracer provider, so
//! this file has a single test that installs a capture as those globals.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axi_obs_core::testing::Capture;
use axi_obs_deploy::event::{DeploymentRef, StepRef, StepStatus, from_unix_ms};
use axi_obs_deploy::http::DeployRoutes;
use axi_obs_deploy::http::github::sign;
use axi_obs_deploy::names;
use axi_obs_deploy::store::History;
use axi_obs_deploy::stream::LiveStream;
use axi_obs_deploy::{Event, EventKind};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(30);
const SECRET: &str = "s3cret";
/// 2026-05-01T10:00:00Z.
const T0: i64 = 1_777_629_600_000;

fn cli_events() -> Vec<Event> {
    let d = DeploymentRef {
        id: "d-cli".into(),
        project: "shop-api".into(),
        environment: "prod".into(),
        version: "1.4.2".into(),
        started_at: from_unix_ms(T0),
    };
    let step = StepRef {
        index: 0,
        name: "build".into(),
    };
    let kinds = [
        EventKind::Started {
            commit: None,
            commit_time: None,
            actor: None,
            trigger: None,
        },
        EventKind::StepStarted { step: step.clone() },
        EventKind::StepFinished {
            step,
            started_at: from_unix_ms(T0 + 1_000),
            status: StepStatus::Succeeded,
            error: None,
            output_tail: None,
        },
        EventKind::Succeeded,
    ];
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, k)| Event::new(d.clone(), i as u32, from_unix_ms(T0 + 1_000 * i as i64), k))
        .collect()
}

fn workflow_run_completed() -> String {
    json!({
        "action": "completed",
        "workflow": {"id": 1, "name": "Deploy"},
        "workflow_run": {
            "id": 42, "name": "Deploy", "head_branch": "main",
            "head_sha": "3484a3fb816e0859fd6e1cea078d76385ff50625", "run_attempt": 1,
            "event": "push", "status": "completed", "conclusion": "failure",
            "created_at": "2026-05-01T10:00:00Z", "run_started_at": "2026-05-01T10:00:02Z",
            "updated_at": "2026-05-01T10:03:02Z", "actor": {"login": "octocat"}
        },
        "repository": {"name": "docs-site"},
        "sender": {"login": "octocat"}
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_and_github_events_reach_the_default_metrics_log_and_trace_hooks() {
    let cap = Capture::new();
    metrics::set_global_recorder(cap.recorder().clone()).unwrap();
    tracing::dispatcher::set_global_default(cap.dispatch()).unwrap();
    axi_obs_core::otel::opentelemetry::global::set_tracer_provider(cap.tracer_provider().clone());

    let dir = tempfile::tempdir().unwrap();
    let routes = DeployRoutes::new(
        History::open(dir.path().join("deploys.db")).unwrap(),
        LiveStream::new(),
    )
    .unwrap()
    .github_secret(SECRET);
    let hooks = routes.hooks();
    let router: axum::Router = routes.into_router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let client = reqwest::Client::builder()
        .timeout(DEADLINE)
        .build()
        .unwrap();
    let body = serde_json::to_string(&cli_events()).unwrap();
    let resp = client
        .post(format!("{base}/api/deploy/events"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let gh = workflow_run_completed();
    let resp = client
        .post(format!("{base}/api/deploy/github"))
        .header("content-type", "application/json")
        .header("x-github-event", "workflow_run")
        .header("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
        .header(
            "x-hub-signature-256",
            sign(SECRET.as_bytes(), gh.as_bytes()),
        )
        .body(gh)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    let flushed = tokio::task::spawn_blocking(move || hooks.flush(DEADLINE))
        .await
        .unwrap();
    assert!(flushed, "the hooks did not catch up");

    // Metrics: one deploy per source, by outcome.
    let snap = cap.metrics();
    let total = snap.family(names::DEPLOYS_TOTAL).unwrap();
    let count = |p, e, s| {
        total
            .series_with(&[("project", p), ("environment", e), ("status", s)])
            .and_then(|s| s.value.as_counter())
    };
    assert_eq!(count("shop-api", "prod", "succeeded"), Some(1));
    assert_eq!(count("docs-site", "main", "failed"), Some(1));
    let steps = snap.family(names::STEP_DURATION).unwrap();
    assert!(
        steps
            .series_with(&[
                ("project", "shop-api"),
                ("environment", "prod"),
                ("step", "build"),
                ("status", "succeeded")
            ])
            .is_some()
    );

    // Logs: one structured line per transition.
    let logs = cap.logs();
    let line = |msg: &str, project: &str| {
        logs.iter()
            .find(|l| l["message"] == msg && l["deploy.project"] == project)
            .cloned()
            .unwrap_or_else(|| panic!("no `{msg}` line for {project}: {logs:#?}"))
    };
    assert_eq!(
        line("deploy succeeded", "shop-api")["deploy.version"],
        "1.4.2"
    );
    assert_eq!(
        line("deploy step finished", "shop-api")["deploy.step"],
        "build"
    );
    assert_eq!(
        line("deploy failed", "docs-site")["deploy.reason"],
        "failure"
    );

    // Traces: a deployment span with its step as a child, and one for the webhook's run.
    let spans = cap.spans();
    let root = spans
        .iter()
        .find(|s| s.name == "deploy shop-api")
        .unwrap_or_else(|| panic!("no deployment span: {spans:#?}"));
    let step = spans.iter().find(|s| s.name == "build").unwrap();
    assert_eq!(step.parent_span_id, root.span_context.span_id());
    assert!(spans.iter().any(|s| s.name == "deploy docs-site"));
}
