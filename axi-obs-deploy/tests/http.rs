//! The axum routes on a loopback port: intake, SSE stream with replay, history, stats,
//! Grafana annotations, GitHub webhooks, and the real `axi-deploy flush` against them.

#![allow(clippy::unwrap_used)] // helpers outside #[test] functions unwrap too

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::Duration;

use axi_obs_deploy::clock::ManualClock;
use axi_obs_deploy::dispatch::Dispatcher;
use axi_obs_deploy::event::{DeploymentRef, StepRef, from_unix_ms};
use axi_obs_deploy::http::DeployRoutes;
use axi_obs_deploy::http::github::sign;
use axi_obs_deploy::store::History;
use axi_obs_deploy::stream::LiveStream;
use axi_obs_deploy::{Event, EventKind, Status, Tracker};
use serde_json::{Value, json};

/// A safety net against a hung test, never an assertion about speed.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long an SSE reader waits for the next frame before the test fails instead of hanging
/// (keep-alive comments arrive every second, so a read never blocks longer than that).
const SSE_DEADLINE: Duration = Duration::from_secs(60);

/// 2026-05-01T10:00:00Z.
const T0: i64 = 1_777_629_600_000;

struct Server {
    addr: SocketAddr,
    stream: LiveStream,
    db: PathBuf,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(configure: impl FnOnce(DeployRoutes) -> DeployRoutes) -> Self {
        // Numbered from 1 (the default starts from the clock), for readable expectations.
        Self::with_stream(LiveStream::builder().first_seq(1).build(), configure)
    }

    fn with_stream(
        stream: LiveStream,
        configure: impl FnOnce(DeployRoutes) -> DeployRoutes,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("deploys.db");
        let router: axum::Router =
            configure(DeployRoutes::new(History::open(&db).unwrap(), stream.clone()).unwrap())
                .into_router();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                axum::serve(listener, router)
                    .with_graceful_shutdown(async {
                        let _ = shutdown_rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        Self {
            addr: addr_rx.recv().unwrap(),
            stream,
            db,
            shutdown: Some(shutdown),
            thread: Some(thread),
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn history(&self) -> History {
        History::open(&self.db).unwrap()
    }

    /// Ids of the events the live stream kept, in sequence order.
    fn streamed_ids(&self) -> Vec<String> {
        self.stream
            .snapshot_after(0)
            .iter()
            .map(|i| i.event().id.clone())
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SSE responses end, then the server stops.
        self.stream.close();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .unwrap()
}

fn post(c: &reqwest::blocking::Client, url: &str, body: String) -> (u16, Value) {
    let resp = c
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, serde_json::from_str(&resp.text().unwrap()).unwrap())
}

fn get(c: &reqwest::blocking::Client, url: &str) -> (u16, Value) {
    let resp = c.get(url).send().unwrap();
    let status = resp.status().as_u16();
    (status, serde_json::from_str(&resp.text().unwrap()).unwrap())
}

fn dref(id: &str, project: &str, env: &str) -> DeploymentRef {
    DeploymentRef {
        id: id.into(),
        project: project.into(),
        environment: env.into(),
        version: "1.4.2".into(),
        started_at: from_unix_ms(T0),
    }
}

/// `n` step-started events of one deployment, each with a fresh id.
fn steps(deploy: &str, from: u32, n: u32) -> Vec<Event> {
    (from..from + n)
        .map(|i| {
            Event::new(
                dref(deploy, "shop-api", "prod"),
                i,
                from_unix_ms(T0 + i64::from(i)),
                EventKind::StepStarted {
                    step: StepRef {
                        index: i,
                        name: format!("s{i}"),
                    },
                },
            )
        })
        .collect()
}

/// One SSE frame.
#[derive(Debug, Default)]
struct Frame {
    id: Option<u64>,
    event: Option<String>,
    data: String,
}

struct SseClient {
    reader: BufReader<reqwest::blocking::Response>,
}

impl SseClient {
    fn connect(server: &Server, last_event_id: Option<u64>) -> Self {
        let mut req = client()
            .get(server.url("/api/deploy/stream"))
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = req.send().unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        assert_eq!(resp.headers()["x-accel-buffering"], "no");
        Self {
            reader: BufReader::new(resp),
        }
    }

    /// The next frame with a field (keep-alive comments skipped).
    fn next(&mut self) -> Frame {
        let mut frame = Frame::default();
        let mut any = false;
        let deadline = std::time::Instant::now() + SSE_DEADLINE;
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "no SSE frame within {SSE_DEADLINE:?}: the stream stalled"
            );
            let mut line = String::new();
            assert!(
                self.reader.read_line(&mut line).unwrap() > 0,
                "stream ended"
            );
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if any {
                    return frame;
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            any = true;
            match field {
                "id" => frame.id = Some(value.parse().unwrap()),
                "event" => frame.event = Some(value.to_owned()),
                "data" => frame.data.push_str(value),
                _ => {}
            }
        }
    }

    /// The next `n` deploy events as `(sequence number, event id)`; a `missed` notice fails.
    fn events(&mut self, n: usize) -> Vec<(u64, String)> {
        (0..n)
            .map(|_| {
                let f = self.next();
                assert_eq!(f.event, None, "unexpected notice: {f:?}");
                let event = Event::from_json(&f.data).unwrap();
                (f.id.unwrap(), event.id)
            })
            .collect()
    }
}

fn ids(events: &[Event]) -> Vec<String> {
    events.iter().map(|e| e.id.clone()).collect()
}

#[test]
fn sse_client_receives_every_event_in_order_while_1000_are_posted_at_full_speed() {
    let server = Server::start(|r| r);
    let events = steps("flood", 0, 1000);
    let mut sse = SseClient::connect(&server, None);
    let reader = std::thread::spawn(move || sse.events(1000));
    let c = client();
    for e in &events {
        let (status, body) = post(&c, &server.url("/api/deploy/events"), e.to_json());
        assert_eq!((status, &body["stored"]), (200, &json!(1)), "{body}");
    }
    let got = reader.join().unwrap();
    let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=1000).collect::<Vec<_>>());
    let got_ids: Vec<String> = got.into_iter().map(|(_, id)| id).collect();
    assert_eq!(got_ids, ids(&events), "every event, in the order posted");
    assert_eq!(server.history().events("flood").unwrap().len(), 1000);
}

#[test]
fn tracker_events_reach_sse_clients_through_the_stream_hook() {
    let server = Server::start(|r| r);
    let mut sse = SseClient::connect(&server, None);
    let dispatcher = Dispatcher::builder()
        .hook(server.stream.clone())
        .build()
        .unwrap();
    let tracker = Tracker::with_clock(dispatcher, ManualClock::at_unix_ms(T0));
    let deploy = tracker.start("docs", "prod", "7");
    deploy.step("upload").succeed();
    deploy.succeed();
    let got = sse.events(4);
    let kinds: Vec<String> = server
        .stream
        .snapshot_after(0)
        .iter()
        .map(|i| i.event().kind.type_name().to_owned())
        .collect();
    assert_eq!(
        kinds,
        ["started", "step_started", "step_finished", "succeeded"]
    );
    assert_eq!(
        got.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(
        got.into_iter().map(|(_, id)| id).collect::<Vec<_>>(),
        server.streamed_ids()
    );
}

#[test]
fn reconnect_with_last_event_id_misses_nothing_within_the_replay_window() {
    let server = Server::start(|r| r);
    let c = client();
    let url = server.url("/api/deploy/events");
    let events = steps("resume", 0, 600);
    let post_all = |batch: &[Event]| {
        for e in batch {
            assert_eq!(post(&c, &url, e.to_json()).0, 200);
        }
    };

    let mut first = SseClient::connect(&server, None);
    post_all(&events[..200]);
    let seen = first.events(120);
    drop(first); // the connection drops mid-stream
    post_all(&events[200..500]); // while disconnected

    let last = seen.last().unwrap().0;
    assert_eq!(last, 120);
    let mut again = SseClient::connect(&server, Some(last));
    let live = std::thread::spawn(move || again.events(480));
    post_all(&events[500..]); // live, after the replay
    let rest = live.join().unwrap();

    let mut all: Vec<(u64, String)> = seen;
    all.extend(rest);
    let seqs: Vec<u64> = all.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=600).collect::<Vec<_>>(), "no gap, no duplicate");
    let all_ids: Vec<String> = all.into_iter().map(|(_, id)| id).collect();
    assert_eq!(all_ids, ids(&events));
}

#[test]
fn reconnect_from_beyond_the_replay_window_is_told_what_it_missed() {
    let stream = LiveStream::builder()
        .first_seq(1)
        .capacity(NonZeroUsize::new(50).unwrap())
        .build();
    let server = Server::with_stream(stream, |r| r);
    let c = client();
    let events = steps("window", 0, 100);
    // One request of 100 events.
    let body = serde_json::to_string(&events).unwrap();
    let (status, answer) = post(&c, &server.url("/api/deploy/events"), body);
    assert_eq!((status, &answer["stored"]), (200, &json!(100)));

    let mut sse = SseClient::connect(&server, Some(10));
    let notice = sse.next();
    assert_eq!(notice.event.as_deref(), Some("missed"));
    assert_eq!(notice.id, None, "a notice does not move Last-Event-ID");
    assert_eq!(
        serde_json::from_str::<Value>(&notice.data).unwrap(),
        json!({"missed": 40})
    );
    let rest = sse.events(50);
    assert_eq!(rest.first().unwrap().0, 51);
    assert_eq!(rest.last().unwrap(), &(100, events[99].id.clone()));

    // A fresh connection replays the last N asked for.
    let resp = client()
        .get(server.url("/api/deploy/stream?replay=2"))
        .send()
        .unwrap();
    let mut fresh = SseClient {
        reader: BufReader::new(resp),
    };
    assert_eq!(
        fresh.events(2).iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [99, 100]
    );
    // An id that is none of ours: not an error (an `EventSource` given one never reconnects),
    // but everything kept, after the notice that the window has moved on.
    let resp = client()
        .get(server.url("/api/deploy/stream"))
        .header("last-event-id", "abc")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut foreign = SseClient {
        reader: BufReader::new(resp),
    };
    let notice = foreign.next();
    assert_eq!(notice.event.as_deref(), Some("missed"));
    assert_eq!(
        serde_json::from_str::<Value>(&notice.data).unwrap(),
        json!({"missed": 50})
    );
    assert_eq!(foreign.events(1)[0].0, 51);
}

#[test]
fn intake_is_idempotent_by_event_id_and_validates_the_whole_request() {
    let server = Server::start(|r| r.max_batch(NonZeroUsize::new(3).unwrap()));
    let c = client();
    let url = server.url("/api/deploy/events");
    let [a, b, d] = <[Event; 3]>::try_from(steps("idem", 0, 3)).unwrap();

    assert_eq!(
        post(&c, &url, a.to_json()),
        (200, json!({"received": 1, "stored": 1, "duplicates": 0}))
    );
    assert_eq!(
        post(&c, &url, a.to_json()),
        (200, json!({"received": 1, "stored": 0, "duplicates": 1})),
        "a replay answers 200 and changes nothing"
    );
    let batch = serde_json::to_string(&[&a, &b]).unwrap();
    assert_eq!(
        post(&c, &url, batch),
        (200, json!({"received": 2, "stored": 1, "duplicates": 1}))
    );
    // The same id with other content: not stored, and said so.
    let mut reused = serde_json::to_value(&a).unwrap();
    reused["deployment"]["version"] = json!("9.9.9");
    assert_eq!(
        post(&c, &url, reused.to_string()),
        (
            200,
            json!({"received": 1, "stored": 0, "duplicates": 1, "conflicts": 1})
        )
    );

    // One invalid event refuses the whole request.
    let mut bad = serde_json::to_value(&d).unwrap();
    bad["deployment"]["project"] = json!("");
    let body = serde_json::to_string(&json!([d.clone(), bad])).unwrap();
    let (status, answer) = post(&c, &url, body);
    assert_eq!(status, 400);
    let msg = answer["error"].as_str().unwrap();
    assert!(
        msg.starts_with("event [1]:") && msg.contains("deployment.project"),
        "{msg}"
    );
    let (status, answer) = post(&c, &url, "{\"schema\": 1".into());
    assert_eq!(status, 400, "{answer}");
    // A time the history could not write back as RFC 3339 (year -1 in UTC) is refused.
    let mut early = serde_json::to_value(&d).unwrap();
    early["at"] = json!("0000-01-01T00:00:00+01:00");
    let (status, answer) = post(&c, &url, serde_json::to_string(&early).unwrap());
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("`at`"),
        "{answer}"
    );
    let too_many = serde_json::to_string(&steps("many", 0, 4)).unwrap();
    assert_eq!(post(&c, &url, too_many).0, 413);

    assert_eq!(
        server.streamed_ids(),
        [a.id.clone(), b.id.clone()],
        "streamed once each"
    );
    let stored = server.history().events("idem").unwrap();
    assert_eq!(ids(&stored), [a.id, b.id]);
    assert!(server.history().events("many").unwrap().is_empty());
}

/// A deployment id reused for another environment (a CI pipeline's id, say) is refused with
/// 409 naming the event and the field, instead of folding the second deployment into the first
/// and losing it from the history.
#[test]
fn a_deployment_id_reused_for_another_environment_is_refused() {
    let server = Server::start(|r| r);
    let c = client();
    let url = server.url("/api/deploy/events");
    let staging = Event::new(
        dref("pipeline-77", "shop-api", "staging"),
        0,
        from_unix_ms(T0),
        EventKind::Succeeded,
    );
    assert_eq!(post(&c, &url, staging.to_json()).0, 200);
    let prod = [
        Event::new(
            dref("pipeline-78", "shop-api", "prod"),
            0,
            from_unix_ms(T0),
            EventKind::Succeeded,
        ),
        Event::new(
            dref("pipeline-77", "shop-api", "prod"),
            0,
            from_unix_ms(T0 + 1),
            EventKind::Succeeded,
        ),
    ];
    let (status, answer) = post(&c, &url, serde_json::to_string(&prod).unwrap());
    assert_eq!(status, 409, "{answer}");
    let msg = answer["error"].as_str().unwrap();
    assert!(
        msg.contains(&prod[1].id)
            && msg.contains("environment \"prod\"")
            && msg.contains("environment \"staging\""),
        "{msg}"
    );
    // Nothing of the request is stored or streamed; the first deployment is unchanged.
    let history = server.history();
    assert!(history.events("pipeline-78").unwrap().is_empty());
    assert_eq!(
        ids(&history.events("pipeline-77").unwrap()),
        std::slice::from_ref(&staging.id)
    );
    assert_eq!(
        history.get("pipeline-77").unwrap().unwrap().environment,
        "staging"
    );
    assert_eq!(server.streamed_ids(), [staging.id]);
    // Another version under the same id is refused too; the same deployment's later events
    // are not.
    let mut other_version = dref("pipeline-77", "shop-api", "staging");
    other_version.version = "2.0.0".into();
    let e = Event::new(other_version, 1, from_unix_ms(T0 + 2), EventKind::Succeeded);
    assert_eq!(post(&c, &url, e.to_json()).0, 409);
    let mut later_start = dref("pipeline-77", "shop-api", "staging");
    later_start.started_at = from_unix_ms(T0 + 5);
    let e = Event::new(later_start, 1, from_unix_ms(T0 + 6), EventKind::Succeeded);
    assert_eq!(post(&c, &url, e.to_json()).0, 200);
}

/// A second run under one deployment id (a retried CI job reusing it) is refused at its
/// `started` event with 409, instead of its outcome being dropped under the first run's; the
/// first run's own `started` event sent again is not.
#[test]
fn a_second_start_of_a_deployment_id_is_refused() {
    let server = Server::start(|r| r);
    let c = client();
    let url = server.url("/api/deploy/events");
    let started = || EventKind::Started {
        commit: None,
        commit_time: None,
        actor: None,
        trigger: None,
    };
    let d = dref("pipeline-9", "shop-api", "prod");
    let first = Event::new(d.clone(), 0, from_unix_ms(T0), started());
    let failed = Event::new(
        d.clone(),
        1,
        from_unix_ms(T0 + 1),
        EventKind::Failed {
            reason: "boom".into(),
        },
    );
    for e in [&first, &failed, &first] {
        assert_eq!(post(&c, &url, e.to_json()).0, 200);
    }
    let retry = Event::new(d, 0, from_unix_ms(T0 + 60_000), started());
    let (status, answer) = post(&c, &url, retry.to_json());
    assert_eq!(status, 409, "{answer}");
    let msg = answer["error"].as_str().unwrap();
    assert!(
        msg.contains(&retry.id)
            && msg.contains("starts deployment pipeline-9 again")
            && msg.contains(&first.id),
        "{msg}"
    );
    assert_eq!(
        ids(&server.history().events("pipeline-9").unwrap()),
        [first.id.clone(), failed.id.clone()]
    );
}

// ---- GitHub ----

const SECRET: &str = "It's a Secret to Everybody";

fn workflow_run(action: &str, conclusion: Option<&str>) -> String {
    json!({
        "action": action,
        "workflow": {"id": 2823525, "name": "Deploy", "path": ".github/workflows/deploy.yml"},
        "workflow_run": {
            "id": 289782451,
            "name": "Deploy",
            "head_branch": "main",
            "head_sha": "3484a3fb816e0859fd6e1cea078d76385ff50625",
            "run_number": 17,
            "run_attempt": 1,
            "event": "push",
            "status": if action == "completed" { "completed" } else { "queued" },
            "conclusion": conclusion,
            "created_at": "2026-05-01T10:00:00Z",
            "run_started_at": "2026-05-01T10:00:02Z",
            "updated_at": "2026-05-01T10:03:02Z",
            "html_url": "https://github.com/octo-org/octo-repo/actions/runs/289782451",
            "actor": {"login": "Codertocat", "id": 1},
            "triggering_actor": {"login": "Codertocat", "id": 1},
            "head_commit": {
                "id": "3484a3fb816e0859fd6e1cea078d76385ff50625",
                "message": "ship it",
                "timestamp": "2026-05-01T09:58:00Z"
            },
            "pull_requests": []
        },
        "repository": {"id": 300029405, "name": "octo-repo", "full_name": "octo-org/octo-repo"},
        "sender": {"login": "Codertocat", "id": 1}
    })
    .to_string()
}

fn deployment(action_or_state: Option<&str>) -> String {
    let deployment = json!({
        "id": 145988746,
        "sha": "f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
        "ref": "v2.3.0",
        "task": "deploy",
        "payload": {},
        "environment": "production",
        "description": null,
        "creator": {"login": "Codertocat", "id": 21031067},
        "created_at": "2026-05-01T10:00:00Z",
        "updated_at": "2026-05-01T10:00:00Z"
    });
    let repository =
        json!({"id": 186853002, "name": "Hello-World", "full_name": "Codertocat/Hello-World"});
    match action_or_state {
        None => json!({"action": "created", "deployment": deployment, "repository": repository}),
        Some(state) => json!({
            "action": "created",
            "deployment_status": {
                "id": 209916254,
                "state": state,
                "description": "health check failed",
                "environment": "production",
                "created_at": "2026-05-01T10:01:30Z"
            },
            "deployment": deployment,
            "repository": repository
        }),
    }
    .to_string()
}

fn deliver(
    server: &Server,
    event: &str,
    delivery: &str,
    body: &str,
    signature: Option<String>,
) -> (u16, Value) {
    let mut req = client()
        .post(server.url("/api/deploy/github"))
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .body(body.to_owned());
    if let Some(sig) = signature {
        req = req.header("x-hub-signature-256", sig);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    (status, serde_json::from_str(&resp.text().unwrap()).unwrap())
}

fn signed(server: &Server, event: &str, delivery: &str, body: &str) -> (u16, Value) {
    deliver(
        server,
        event,
        delivery,
        body,
        Some(sign(SECRET.as_bytes(), body.as_bytes())),
    )
}

#[test]
fn github_valid_deliveries_map_a_workflow_run_to_a_deployment() {
    let server = Server::start(|r| r.github_secret(SECRET));
    let requested = workflow_run("requested", None);
    let (status, answer) = signed(&server, "workflow_run", "g-1", &requested);
    assert_eq!((status, &answer["stored"]), (200, &json!(1)), "{answer}");
    // in_progress is the same start: stored once.
    let (status, answer) = signed(
        &server,
        "workflow_run",
        "g-2",
        &workflow_run("in_progress", None),
    );
    assert_eq!(
        (status, &answer["duplicates"]),
        (200, &json!(1)),
        "{answer}"
    );
    let (status, answer) = signed(
        &server,
        "workflow_run",
        "g-3",
        &workflow_run("completed", Some("success")),
    );
    assert_eq!((status, &answer["stored"]), (200, &json!(1)), "{answer}");

    let d = server
        .history()
        .get("github-run-289782451-1")
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            d.project.as_str(),
            d.environment.as_str(),
            d.version.as_str()
        ),
        ("octo-repo", "main", "3484a3f")
    );
    assert_eq!(d.status, Status::Succeeded);
    assert_eq!(
        d.commit.as_deref(),
        Some("3484a3fb816e0859fd6e1cea078d76385ff50625")
    );
    assert_eq!(d.commit_time, Some(from_unix_ms(T0 - 120_000)));
    assert_eq!(
        (d.actor.as_deref(), d.trigger.as_deref()),
        (Some("Codertocat"), Some("push"))
    );
    assert_eq!(d.duration(), Some(Duration::from_secs(180)));
    assert_eq!(
        server.streamed_ids(),
        [
            "github-run-289782451-1-started",
            "github-run-289782451-1-completed"
        ]
    );

    // A ping and an unrelated event are acknowledged and ignored.
    let (status, answer) = signed(&server, "ping", "g-4", r#"{"zen":"Design for failure."}"#);
    assert_eq!((status, &answer["ignored"]), (200, &json!("ping")));
    let (status, answer) = signed(&server, "push", "g-5", r#"{"ref":"refs/heads/main"}"#);
    assert_eq!((status, &answer["ignored"]), (200, &json!("event `push`")));
    assert_eq!(server.streamed_ids().len(), 2);
}

#[test]
fn github_missing_malformed_and_wrong_signatures_get_401_and_store_nothing() {
    let server = Server::start(|r| r.github_secret(SECRET));
    let body = workflow_run("requested", None);
    let cases = [
        None,
        Some("sha256=".to_owned()),
        Some("sha1=0123".to_owned()),
        Some(sign(b"not the secret", body.as_bytes())),
        // Signed for another body: a tampered payload.
        Some(sign(
            SECRET.as_bytes(),
            workflow_run("completed", Some("success")).as_bytes(),
        )),
    ];
    for (i, sig) in cases.into_iter().enumerate() {
        let (status, answer) = deliver(&server, "workflow_run", &format!("bad-{i}"), &body, sig);
        assert_eq!(status, 401, "case {i}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("X-Hub-Signature-256"),
            "{answer}"
        );
    }
    assert!(server.streamed_ids().is_empty());
    assert!(
        server
            .history()
            .get("github-run-289782451-1")
            .unwrap()
            .is_none()
    );
    // The same body, correctly signed, with a delivery id refused before: accepted.
    let (status, _) = signed(&server, "workflow_run", "bad-3", &body);
    assert_eq!(status, 200);

    // Without a configured secret there is no webhook route at all.
    let open = Server::start(|r| r);
    let (status, _) = {
        let resp = client()
            .post(open.url("/api/deploy/github"))
            .header("x-github-event", "ping")
            .body("{}")
            .send()
            .unwrap();
        (resp.status().as_u16(), ())
    };
    assert_eq!(status, 404);
}

#[test]
fn github_replayed_delivery_answers_200_without_a_second_event() {
    let server = Server::start(|r| r.github_secret(SECRET));
    let body = workflow_run("completed", Some("failure"));
    let (status, first) = signed(
        &server,
        "workflow_run",
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        &body,
    );
    assert_eq!((status, &first["stored"]), (200, &json!(2)), "{first}");
    let (status, replay) = signed(
        &server,
        "workflow_run",
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        &body,
    );
    assert_eq!(status, 200);
    assert_eq!(replay["duplicate_delivery"], json!(true), "{replay}");
    // Redelivered under a new id (or after the memory forgot it): the event ids still match.
    let (status, again) = signed(&server, "workflow_run", "another-id", &body);
    assert_eq!(
        (status, &again["stored"], &again["duplicates"]),
        (200, &json!(0), &json!(2))
    );
    assert_eq!(server.streamed_ids().len(), 2, "no second event");
    let d = server
        .history()
        .get("github-run-289782451-1")
        .unwrap()
        .unwrap();
    assert_eq!(
        (d.status, d.error.as_deref()),
        (Status::Failed, Some("failure"))
    );
    assert_eq!(server.history().events(&d.id).unwrap().len(), 2);

    // A missing delivery id is refused (after the signature was checked).
    let mut req = client()
        .post(server.url("/api/deploy/github"))
        .header("x-github-event", "workflow_run")
        .header(
            "x-hub-signature-256",
            sign(SECRET.as_bytes(), body.as_bytes()),
        )
        .body(body.clone());
    req = req.header("content-type", "application/json");
    assert_eq!(req.send().unwrap().status().as_u16(), 400);
}

#[test]
fn github_deployment_and_deployment_status_map_to_a_failed_deploy() {
    let server = Server::start(|r| r.github_secret(SECRET));
    let (status, a) = signed(&server, "deployment", "d-1", &deployment(None));
    assert_eq!((status, &a["stored"]), (200, &json!(1)), "{a}");
    let (status, a) = signed(
        &server,
        "deployment_status",
        "d-2",
        &deployment(Some("in_progress")),
    );
    assert_eq!((status, &a["duplicates"]), (200, &json!(1)), "{a}");
    let (status, a) = signed(
        &server,
        "deployment_status",
        "d-3",
        &deployment(Some("failure")),
    );
    assert_eq!((status, &a["stored"]), (200, &json!(1)), "{a}");
    let (status, a) = signed(
        &server,
        "deployment_status",
        "d-4",
        &deployment(Some("inactive")),
    );
    assert_eq!(
        (status, &a["ignored"]),
        (200, &json!("deployment_status state `inactive`"))
    );

    let d = server
        .history()
        .get("github-deployment-145988746")
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            d.project.as_str(),
            d.environment.as_str(),
            d.version.as_str(),
            d.status
        ),
        ("Hello-World", "production", "v2.3.0", Status::Failed)
    );
    assert_eq!(d.error.as_deref(), Some("health check failed"));
    assert_eq!(d.duration(), Some(Duration::from_secs(90)));
    assert_eq!(d.trigger.as_deref(), Some("deploy"));

    // A payload that lacks what the mapping needs is a 400 naming the field.
    let (status, a) = signed(
        &server,
        "deployment",
        "d-5",
        r#"{"action":"created","repository":{"name":"x"}}"#,
    );
    assert_eq!(status, 400);
    assert!(a["error"].as_str().unwrap().contains("deployment"), "{a}");
}

#[test]
fn github_workflow_filter_and_form_encoded_payloads() {
    let server = Server::start(|r| {
        r.github(axi_obs_deploy::http::github::GithubConfig::new(SECRET).workflows(["Release"]))
    });
    let (status, a) = signed(
        &server,
        "workflow_run",
        "w-1",
        &workflow_run("requested", None),
    );
    assert_eq!((status, &a["ignored"]), (200, &json!("workflow `Deploy`")));
    let release = workflow_run("requested", None).replace("\"Deploy\"", "\"Release\"");
    let form: String = form_encode(&release);
    let resp = client()
        .post(server.url("/api/deploy/github"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-github-event", "workflow_run")
        .header("x-github-delivery", "w-2")
        .header(
            "x-hub-signature-256",
            sign(SECRET.as_bytes(), form.as_bytes()),
        )
        .body(form)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(server.streamed_ids(), ["github-run-289782451-1-started"]);
}

/// A delivery whose mapped event would not be valid (a repository name longer than the
/// history keeps) is a 400 naming the field, and stores nothing.
#[test]
fn github_deliveries_that_map_to_invalid_events_are_refused() {
    let server = Server::start(|r| r.github_secret(SECRET));
    let long = "r".repeat(300);
    let body = workflow_run("requested", None)
        .replace("\"octo-repo\"", &format!("\"{long}\""))
        .replace("octo-org/octo-repo", &format!("octo-org/{long}"));
    let (status, answer) = signed(&server, "workflow_run", "g-long", &body);
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("deployment.project"),
        "{answer}"
    );
    assert!(server.streamed_ids().is_empty());
}

fn form_encode(json: &str) -> String {
    let mut out = String::from("payload=");
    for b in json.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.*".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---- the CLI against the router ----

#[test]
fn cli_flush_against_the_router_delivers_each_spooled_event_exactly_once() {
    let server = Server::start(|r| r);
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let cli = |args: &[&str], endpoint: &str| {
        Command::new(env!("CARGO_BIN_EXE_axi-deploy"))
            .args(args)
            .env("AXI_DEPLOY_ENDPOINT", endpoint)
            .env("AXI_DEPLOY_SPOOL", &spool)
            .env("AXI_DEPLOY_DB", dir.path().join("local.db"))
            .env("HOME", dir.path())
            .output()
            .unwrap()
    };
    // A path the router does not serve answers 404: every event is spooled.
    let wrong = server.url("/api/deploy/nope");
    let out = cli(
        &[
            "run",
            "--project",
            "shop-api",
            "--env",
            "prod",
            "--version",
            "2",
            "--",
            "sh",
            "-c",
            "echo '##[step] build'; echo '##[step] migrate'",
        ],
        &wrong,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spooled = spooled(&spool);
    assert_eq!(spooled.len(), 6);
    assert!(server.streamed_ids().is_empty());

    // An earlier flush delivered the first event but its answer was lost: it is still spooled.
    let c = client();
    let (status, _) = post(&c, &server.url("/api/deploy/events"), spooled[0].to_json());
    assert_eq!(status, 200);

    let endpoint = server.url("/api/deploy/events");
    // The right URL alone finds nothing: the events wait for the one they were sent to.
    let out = cli(&["flush"], &endpoint);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "delivered 0, remaining 0"
    );
    // Taken from the wrong URL's spool, to the right one.
    let out = cli(&["flush", "--from", &wrong], &endpoint);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "delivered 6, remaining 0"
    );
    assert!(self::spooled(&spool).is_empty());
    let out = cli(&["flush"], &endpoint);
    assert!(out.status.success());

    let deploy_id = &spooled[0].deployment.id;
    let stored = server.history().events(deploy_id).unwrap();
    assert_eq!(stored, spooled, "each spooled event stored once, in order");
    assert_eq!(server.streamed_ids(), ids(&spooled), "and streamed once");
    let d = server.history().get(deploy_id).unwrap().unwrap();
    assert_eq!((d.status, d.steps.len()), (Status::Succeeded, 2));
}

/// The events waiting in `dir`, the spool, for every destination (each has a folder).
fn spooled(dir: &std::path::Path) -> Vec<Event> {
    let list = |d: &std::path::Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(d)
            .map(|rd| rd.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default()
    };
    let mut files: Vec<_> = list(dir)
        .iter()
        .filter(|d| d.is_dir() && !d.ends_with("active"))
        .flat_map(|d| list(d))
        .collect();
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    files
        .iter()
        .map(|p| Event::from_json(std::fs::read_to_string(p).unwrap().trim()).unwrap())
        .collect()
}

// ---- history, stats, annotations ----

fn finished(id: &str, project: &str, env: &str, secs: i64, end: EventKind) -> [Event; 2] {
    let d = dref(id, project, env);
    [
        Event::new(
            d.clone(),
            0,
            from_unix_ms(T0),
            EventKind::Started {
                commit: Some("3f2a9c1deadbeef".into()),
                commit_time: None,
                actor: Some("ci".into()),
                trigger: None,
            },
        ),
        Event::new(d, 1, from_unix_ms(T0 + secs * 1000), end),
    ]
}

fn seeded() -> Server {
    // Clock: 5 minutes after T0, so the in-progress deployment ends there.
    let server = Server::start(|r| r.clock(ManualClock::at_unix_ms(T0 + 300_000)));
    let mut events: Vec<Event> = Vec::new();
    events.extend(finished("d1", "shop-api", "prod", 90, EventKind::Succeeded));
    events.extend(finished(
        "d2",
        "shop-api",
        "staging",
        30,
        EventKind::Failed {
            reason: "migration 42 failed".into(),
        },
    ));
    let mut d3 = dref("d3", "docs", "prod");
    d3.started_at = from_unix_ms(T0 + 60_000);
    events.push(Event::new(
        d3,
        0,
        from_unix_ms(T0 + 60_000),
        EventKind::Started {
            commit: None,
            commit_time: None,
            actor: None,
            trigger: None,
        },
    ));
    let body = serde_json::to_string(&events).unwrap();
    assert_eq!(
        post(&client(), &server.url("/api/deploy/events"), body).0,
        200
    );
    server
}

/// A deployment at the far end of the accepted range (late in year 9999): its annotation's
/// one-day cap is computed without overflowing (was a panic of the request's task).
#[test]
fn annotations_of_a_deployment_late_in_year_9999_do_not_overflow() {
    // 9999-12-31T23:00:00Z.
    const LATE: i64 = 253_402_297_200_000;
    let server = Server::start(|r| r.clock(ManualClock::at_unix_ms(LATE + 60_000)));
    let mut d = dref("far", "shop-api", "prod");
    d.started_at = from_unix_ms(LATE);
    let events = [
        Event::new(
            d.clone(),
            0,
            from_unix_ms(LATE),
            EventKind::Started {
                commit: None,
                commit_time: None,
                actor: None,
                trigger: None,
            },
        ),
        Event::new(d, 1, from_unix_ms(LATE + 30_000), EventKind::Succeeded),
    ];
    let body = serde_json::to_string(&events).unwrap();
    assert_eq!(
        post(&client(), &server.url("/api/deploy/events"), body).0,
        200
    );
    let (status, all) = get(
        &client(),
        &server.url(&format!(
            "/api/deploy/annotations?from={}&to={}",
            LATE - 3_600_000,
            LATE + 3_599_000
        )),
    );
    assert_eq!(status, 200, "{all}");
    assert_eq!(all[0]["deploymentId"], "far", "{all}");
    assert_eq!(all[0]["timeEnd"], LATE + 30_000, "{all}");
}

#[test]
fn annotations_have_grafanas_shape_and_filter_by_tags() {
    let server = seeded();
    let c = client();
    let (from, to) = (T0 - 3_600_000, T0 + 3_600_000);
    let base = server.url(&format!(
        "/api/deploy/annotations?from={from}&to={to}&dashboardUID=abc&panelId=2&type=annotation"
    ));
    let (status, all) = get(&c, &base);
    assert_eq!(status, 200);
    let all = all.as_array().unwrap();
    let order: Vec<&str> = all
        .iter()
        .map(|a| a["deploymentId"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["d3", "d2", "d1"], "newest first");
    assert_eq!(
        all[2],
        json!({
            "time": T0, "timeEnd": T0 + 90_000, "isRegion": true,
            "title": "shop-api 1.4.2 → prod",
            "text": "shop-api 1.4.2 → prod: succeeded in 90s, commit 3f2a9c1, by ci",
            "tags": ["shop-api", "prod", "succeeded"],
            "deploymentId": "d1"
        })
    );
    assert_eq!(
        all[0]["timeEnd"],
        json!(T0 + 300_000),
        "in progress ends now"
    );
    assert_eq!(all[0]["tags"], json!(["docs", "prod", "in_progress"]));
    assert_eq!(
        all[1]["text"],
        json!(
            "shop-api 1.4.2 → staging: failed in 30s, commit 3f2a9c1, by ci: migration 42 failed"
        )
    );

    let (_, prod_shop) = get(&c, &format!("{base}&tags=shop-api&tags=prod"));
    assert_eq!(prod_shop.as_array().unwrap().len(), 1);
    assert_eq!(prod_shop[0]["deploymentId"], json!("d1"));
    let (_, any) = get(&c, &format!("{base}&tags=failed&tags=docs&matchAny=true"));
    let any: Vec<&str> = any
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["deploymentId"].as_str().unwrap())
        .collect();
    assert_eq!(any, ["d3", "d2"]);
    let (_, none) = get(
        &c,
        &server.url(&format!(
            "/api/deploy/annotations?from={}&to={}",
            T0 + 3_600_000,
            T0 + 7_200_000
        )),
    );
    assert_eq!(none, json!([]));
    // A range starting after d1 started and before it finished shows it (Grafana's regions
    // overlap the range); d2, finished before the range, does not.
    let (_, overlapping) = get(
        &c,
        &server.url(&format!(
            "/api/deploy/annotations?from={}&to={}",
            T0 + 60_000,
            T0 + 3_600_000
        )),
    );
    let ids: Vec<&str> = overlapping
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["deploymentId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["d3", "d1"]);
    let (status, _) = get(&c, &format!("{base}&limit=0"));
    assert_eq!(status, 400);
    // Thousands of tags are a 400 naming the parameter, not a failed query (500).
    let many: String = (0..1500).map(|i| format!("&tags=t{i}")).collect();
    let (status, body) = get(&c, &format!("{base}{many}"));
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("`tags`"), "{body}");
}

/// The history lists steps without their output tails (up to 16 KiB each) unless asked
/// with `output=true`, which takes at most 20 deployments a request.
#[test]
fn history_leaves_step_output_out_unless_asked() {
    let server = Server::start(|r| r);
    let c = client();
    let d = dref("d-out", "shop-api", "prod");
    let step = StepRef {
        index: 0,
        name: "build".into(),
    };
    let events = [
        EventKind::StepStarted { step: step.clone() },
        EventKind::StepFinished {
            step,
            started_at: from_unix_ms(T0),
            status: axi_obs_deploy::event::StepStatus::Succeeded,
            error: None,
            output_tail: Some("compiled 42 crates\n".into()),
        },
    ]
    .into_iter()
    .enumerate()
    .map(|(i, k)| Event::new(d.clone(), i as u32, from_unix_ms(T0 + i as i64), k))
    .collect::<Vec<_>>();
    let body = serde_json::to_string(&events).unwrap();
    assert_eq!(post(&c, &server.url("/api/deploy/events"), body).0, 200);
    let (_, list) = get(&c, &server.url("/api/deploy/history"));
    assert_eq!(list[0]["steps"][0]["name"], "build");
    assert_eq!(list[0]["steps"][0]["output_tail"], Value::Null, "{list}");
    let (_, full) = get(&c, &server.url("/api/deploy/history?output=true&limit=20"));
    assert_eq!(full[0]["steps"][0]["output_tail"], "compiled 42 crates\n");
    let (status, _) = get(&c, &server.url("/api/deploy/history?output=true"));
    assert_eq!(status, 200, "20 by default with the output");
    for query in ["output=true&limit=21", "output=yes"] {
        let (status, err) = get(&c, &server.url(&format!("/api/deploy/history?{query}")));
        assert_eq!(status, 400, "{query}: {err}");
    }
}

#[test]
fn history_and_stats_answer_json_and_name_bad_parameters() {
    let server = seeded();
    let c = client();
    let (status, list) = get(&c, &server.url("/api/deploy/history?project=shop-api"));
    assert_eq!(status, 200);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let (_, failed) = get(&c, &server.url("/api/deploy/history?status=failed"));
    assert_eq!(failed[0]["id"], json!("d2"));
    assert_eq!(failed.as_array().unwrap().len(), 1);
    let (_, since) = get(
        &c,
        &server.url("/api/deploy/history?since=2026-05-01T10:00:30Z"),
    );
    assert_eq!(since.as_array().unwrap().len(), 1, "{since}");

    let (status, stats) = get(
        &c,
        &server.url(&format!(
            "/api/deploy/stats?project=shop-api&environment=prod&since={}&until={}",
            T0 - 1,
            T0 + 3_600_000
        )),
    );
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["succeeded"], json!(1));
    assert_eq!(stats["success_rate"], json!(1.0));
    assert_eq!(stats["duration_p50_seconds"], json!(90.0));
    assert_eq!(stats["dora"]["change_failure_rate"], json!(0.0));
    let (status, days) = get(
        &c,
        &server.url("/api/deploy/stats?project=shop-api&environment=staging&days=1"),
    );
    assert_eq!((status, &days["failed"]), (200, &json!(1)), "{days}");

    for (query, needle) in [
        ("/api/deploy/history?projet=x", "`projet`"),
        ("/api/deploy/history?status=bogus", "`bogus`"),
        ("/api/deploy/history?since=yesterday", "`since`"),
        ("/api/deploy/history?limit=5000", "`limit`"),
        ("/api/deploy/stats?project=shop-api", "`environment`"),
        // Times the history cannot hold are refused, not a panic or a silent 1970.
        (
            "/api/deploy/stats?project=shop-api&environment=staging&days=4294967295",
            "4294967295 days",
        ),
        ("/api/deploy/history?since=99999999999999999", "`since`"),
        ("/api/deploy/history?since=-62167219200001", "`since`"),
        ("/api/deploy/annotations?to=-377705116800000", "`to`"),
        ("/api/deploy/annotations?to=-62135596700000", "7 days"),
        ("/api/deploy/history?until=0000-06-01T00:00:00Z", "`until`"),
    ] {
        let (status, err) = get(&c, &server.url(query));
        assert_eq!(status, 400, "{query}");
        let msg = err["error"].as_str().unwrap();
        assert!(msg.contains(needle), "{query}: {msg}");
    }
    let names: HashSet<&str> = list[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert!(
        names.contains("status") && names.contains("steps"),
        "{names:?}"
    );
}
