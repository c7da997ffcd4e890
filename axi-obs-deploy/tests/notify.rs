//! The webhook notification hook against a local axum receiver.

#![allow(clippy::unwrap_used)] // helpers outside #[test] functions unwrap too

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use axi_obs_deploy::clock::ManualClock;
use axi_obs_deploy::dispatch::Dispatcher;
use axi_obs_deploy::notify::{NotifyHook, Summary};
use axi_obs_deploy::{DeploySpec, Status, Tracker};
use axum::http::{HeaderMap, StatusCode};

const DEADLINE: Duration = Duration::from_secs(30);

/// 2026-05-01T10:00:00Z.
const T0: i64 = 1_777_629_600_000;

type Received = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// A webhook receiver on a loopback port that answers `status` and keeps what it got.
struct Receiver {
    addr: SocketAddr,
    received: Received,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start(status: StatusCode) -> Self {
        let received = Received::default();
        let sink = received.clone();
        let router = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let sink = sink.clone();
                async move {
                    sink.lock().unwrap().push((headers, body));
                    status
                }
            }),
        );
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
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
            received,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    fn url(&self) -> axum::http::Uri {
        format!("http://{}/hook", self.addr).parse().unwrap()
    }

    fn bodies(&self) -> Vec<String> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.clone())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn failed_deploy_posts_the_golden_summary_once() {
    let receiver = Receiver::start(StatusCode::OK);
    let clock = ManualClock::at_unix_ms(T0);
    let tracker = Tracker::with_clock(
        Dispatcher::builder()
            .hook(NotifyHook::new(receiver.url()))
            .build()
            .unwrap(),
        clock.clone(),
    );
    let deploy = tracker.start_with(DeploySpec::new("shop-api", "prod", "1.4.2").id("d-42"));
    deploy.step("build").succeed();
    clock.advance(Duration::from_millis(5_500));
    deploy.fail("migration failed");
    assert!(tracker.dispatcher().flush(DEADLINE));
    assert_eq!(tracker.dispatcher().stats().failures, 0);

    // Only the terminal event is posted, as the golden body.
    let got = receiver.received.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    let (headers, body) = &got[0];
    let golden = include_str!("golden/notify_failed.json").trim_end();
    assert_eq!(body, golden);
    assert_eq!(headers["content-type"], "application/json");
    let key = headers["idempotency-key"].to_str().unwrap();
    assert_eq!(key.len(), 32, "the terminal event's id: {key}");

    let summary: Summary = serde_json::from_str(body).unwrap();
    assert_eq!(summary.status, Status::Failed);
    assert_eq!(summary.duration_seconds, 5.5);
}

#[test]
fn only_the_chosen_outcomes_are_posted() {
    let receiver = Receiver::start(StatusCode::NO_CONTENT);
    let tracker = Tracker::with_clock(
        Dispatcher::builder()
            .hook(NotifyHook::new(receiver.url()).statuses([Status::RolledBack]))
            .build()
            .unwrap(),
        ManualClock::at_unix_ms(T0),
    );
    tracker.start("a", "prod", "1").succeed();
    tracker
        .start("b", "prod", "2")
        .roll_back("1", Some("errors up".into()));
    tracker.start("c", "prod", "3").cancel(None);
    assert!(tracker.dispatcher().flush(DEADLINE));
    assert_eq!(tracker.dispatcher().stats().failures, 0);

    let bodies = receiver.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let summary: Summary = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(summary.deployment.project, "b");
    assert_eq!(summary.rolled_back_to.as_deref(), Some("1"));
    assert_eq!(
        summary.text,
        "b 2 to prod rolled back to 1 after 0.0 s: errors up"
    );
}

/// Two terminal events for one deployment (a GitHub `deployment_status` of `error`, then
/// `success`: two event ids): only the first outcome is announced, the one the history keeps.
#[test]
fn only_a_deployments_first_outcome_is_posted() {
    use axi_obs_deploy::event::{DeploymentRef, from_unix_ms};
    use axi_obs_deploy::{Event, EventKind};
    let receiver = Receiver::start(StatusCode::OK);
    let dispatcher = Dispatcher::builder()
        .hook(NotifyHook::new(receiver.url()))
        .build()
        .unwrap();
    let d = DeploymentRef {
        id: "gh-7".into(),
        project: "shop-api".into(),
        environment: "prod".into(),
        version: "1.4.2".into(),
        started_at: from_unix_ms(T0),
    };
    let failed = EventKind::Failed {
        reason: "error".into(),
    };
    assert!(dispatcher.send(Event::new(d.clone(), 1, from_unix_ms(T0 + 1_000), failed)));
    assert!(dispatcher.send(Event::new(
        d,
        2,
        from_unix_ms(T0 + 2_000),
        EventKind::Succeeded
    )));
    assert!(dispatcher.flush(DEADLINE));
    let bodies = receiver.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let summary: Summary = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(summary.status, Status::Failed);
}

#[test]
fn non_2xx_and_unreachable_webhooks_are_hook_failures_not_deploy_failures() {
    let receiver = Receiver::start(StatusCode::INTERNAL_SERVER_ERROR);
    // A port nothing listens on: bind, note it, close.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let tracker = Tracker::with_clock(
        Dispatcher::builder()
            .hook(NotifyHook::new(receiver.url()))
            .hook(
                NotifyHook::new(format!("http://{closed}/hook").parse().unwrap())
                    .timeout(Duration::from_secs(5)),
            )
            .build()
            .unwrap(),
        ManualClock::at_unix_ms(T0),
    );
    tracker.start("shop-api", "prod", "1").succeed();
    assert!(tracker.dispatcher().flush(DEADLINE));
    let stats = tracker.dispatcher().stats();
    assert_eq!(stats.handled, 2);
    assert_eq!(stats.failures, 2, "one per webhook: HTTP 500 and refused");
    assert_eq!(
        receiver.bodies().len(),
        1,
        "the 500 webhook was reached once"
    );
}
