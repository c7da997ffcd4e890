//! The hook dispatcher (bounded, never blocking) and the built-in metrics and log hooks.

#![allow(clippy::unwrap_used)] // helpers outside #[test] functions unwrap too

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axi_obs_core::testing::Capture;
use axi_obs_deploy::clock::ManualClock;
use axi_obs_deploy::dispatch::{Dispatcher, DispatcherStats};
use axi_obs_deploy::hook::{Hook, HookError, LogHook, MetricsHook};
use axi_obs_deploy::names;
use axi_obs_deploy::{Event, Tracker};

const DEADLINE: Duration = Duration::from_secs(30);

#[test]
fn blocking_hook_never_blocks_finish_and_drops_are_counted() {
    let cap = Capture::new();
    let (entered_tx, entered_rx) = mpsc::channel::<()>();
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let gate_rx = Mutex::new(gate_rx);
    let blocked_once = std::sync::atomic::AtomicBool::new(false);
    let dispatcher = Dispatcher::builder()
        .capacity(2.try_into().unwrap())
        .metrics_recorder(Arc::new(cap.recorder().clone()))
        .tracing_dispatch(cap.dispatch())
        .hook(move |_e: &Event| -> Result<(), HookError> {
            if !blocked_once.swap(true, std::sync::atomic::Ordering::SeqCst) {
                entered_tx.send(()).unwrap();
                // Blocks until the test opens the gate.
                gate_rx.lock().unwrap().recv().unwrap();
            }
            Ok(())
        })
        .build()
        .unwrap();
    let tracker = Tracker::with_clock(dispatcher, ManualClock::at_unix_ms(0));

    let deploy = tracker.start("shop-api", "prod", "1.0.0"); // event 1: taken by the hook
    entered_rx.recv_timeout(DEADLINE).unwrap();

    // 10 steps (20 events) and the finish: 21 events while the hook is stuck.
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for i in 0..10 {
            deploy.step(format!("step {i}")).succeed();
        }
        deploy.succeed();
        done_tx.send(()).unwrap();
    });
    done_rx
        .recv_timeout(DEADLINE)
        .expect("finishing a deploy must not wait for a stuck hook");

    let stats = tracker.dispatcher().stats();
    assert_eq!(stats.accepted, 3, "1 taken by the hook + 2 queued");
    assert_eq!(stats.dropped, 19);
    let dropped = cap.metrics();
    let family = dropped.family(names::HOOK_EVENTS_DROPPED_METRIC).unwrap();
    assert_eq!(family.series[0].value.as_counter(), Some(19));
    assert!(
        cap.logs().iter().any(|l| l["message"]
            .as_str()
            .unwrap()
            .starts_with("deploy event dropped")),
        "{}",
        cap.log_text()
    );

    gate_tx.send(()).unwrap();
    assert!(tracker.dispatcher().flush(DEADLINE));
    assert_eq!(
        tracker.dispatcher().stats(),
        DispatcherStats {
            accepted: 3,
            dropped: 19,
            handled: 3,
            failures: 0
        }
    );
}

struct Failing;

impl Hook for Failing {
    fn name(&self) -> &str {
        "failing"
    }
    fn on_event(&mut self, _e: &Event) -> Result<(), HookError> {
        Err("webhook returned 500".into())
    }
}

#[test]
fn failing_and_panicking_hooks_are_counted_and_the_others_still_run() {
    let cap = Capture::new();
    let seen = Arc::new(Mutex::new(0u32));
    let counter = seen.clone();
    let dispatcher = Dispatcher::builder()
        .metrics_recorder(Arc::new(cap.recorder().clone()))
        .tracing_dispatch(cap.dispatch())
        .hook(Failing)
        .hook(|_e: &Event| -> Result<(), HookError> { panic!("hook bug") })
        .hook(move |_e: &Event| -> Result<(), HookError> {
            *counter.lock().unwrap() += 1;
            Ok(())
        })
        .build()
        .unwrap();
    let tracker = Tracker::new(dispatcher);
    let deploy = tracker.start("p", "prod", "1");
    deploy.step("s").succeed();
    deploy.succeed();
    assert!(tracker.dispatcher().flush(DEADLINE));

    assert_eq!(*seen.lock().unwrap(), 4, "the third hook saw every event");
    assert_eq!(tracker.dispatcher().stats().failures, 8);
    let snap = cap.metrics();
    let family = snap.family(names::HOOK_FAILURES_METRIC).unwrap();
    let count = |hook| {
        family
            .series_with(&[("hook", hook)])
            .unwrap()
            .value
            .as_counter()
    };
    assert_eq!(count("failing"), Some(4));
    assert_eq!(count("closure"), Some(4));
    let warned: Vec<_> = cap
        .logs()
        .into_iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .unwrap()
                .starts_with("deploy hook failed")
        })
        .collect();
    assert_eq!(warned.len(), 1, "failure logs are rate-limited");
    assert_eq!(warned[0]["error.message"], "webhook returned 500");
    assert_eq!(warned[0]["hook"], "failing");
}

#[test]
fn metrics_hook_records_counts_durations_and_gauges() {
    let cap = Capture::new();
    let clock = ManualClock::at_unix_ms(1_700_000_000_000);
    let dispatcher = Dispatcher::builder()
        .metrics_recorder(Arc::new(cap.recorder().clone()))
        .hook(MetricsHook::new())
        .build()
        .unwrap();
    let tracker = Tracker::with_clock(dispatcher, clock.clone());

    let ok = tracker.start("shop-api", "prod", "1.4.2");
    let step = ok.step("migrate");
    clock.advance(Duration::from_secs(3));
    step.succeed();
    clock.advance(Duration::from_secs(7));
    ok.succeed();
    let bad = tracker.start("shop-api", "prod", "1.4.3");
    clock.advance(Duration::from_secs(1));
    let open = tracker.start("shop-api", "staging", "1.4.3");
    bad.fail("health check");
    assert!(tracker.dispatcher().flush(DEADLINE));

    let snap = cap.metrics();
    let total = snap.family(names::DEPLOYS_TOTAL).unwrap();
    let pe = [("project", "shop-api"), ("environment", "prod")];
    let with = |status| [pe[0], pe[1], ("status", status)];
    assert_eq!(
        total
            .series_with(&with("succeeded"))
            .unwrap()
            .value
            .as_counter(),
        Some(1)
    );
    assert_eq!(
        total
            .series_with(&with("failed"))
            .unwrap()
            .value
            .as_counter(),
        Some(1)
    );
    let dur = snap.family(names::DEPLOY_DURATION).unwrap();
    let h = dur
        .series_with(&with("succeeded"))
        .unwrap()
        .value
        .as_histogram()
        .unwrap();
    assert_eq!((h.count, h.sum), (1, 10.0));
    let h = dur
        .series_with(&with("failed"))
        .unwrap()
        .value
        .as_histogram()
        .unwrap();
    assert_eq!((h.count, h.sum), (1, 1.0));
    let step = snap.family(names::STEP_DURATION).unwrap();
    let h = step
        .series_with(&[pe[0], pe[1], ("step", "migrate"), ("status", "succeeded")])
        .unwrap()
        .value
        .as_histogram()
        .unwrap();
    assert_eq!((h.count, h.sum), (1, 3.0));
    let last = snap.family(names::DEPLOY_LAST_SUCCESS).unwrap();
    assert_eq!(
        last.series_with(&pe).unwrap().value.as_gauge(),
        Some(1_700_000_010.0)
    );
    let progress = snap.family(names::DEPLOYS_IN_PROGRESS).unwrap();
    assert_eq!(
        progress.series_with(&pe).unwrap().value.as_gauge(),
        Some(0.0)
    );
    assert_eq!(
        progress
            .series_with(&[("project", "shop-api"), ("environment", "staging")])
            .unwrap()
            .value
            .as_gauge(),
        Some(1.0)
    );
    assert!(total.help.is_some(), "metrics are described");
    open.cancel(None);
}

#[test]
fn log_hook_writes_one_structured_line_per_transition() {
    let cap = Capture::new();
    let dispatcher = Dispatcher::builder()
        .tracing_dispatch(cap.dispatch())
        .hook(LogHook::new())
        .build()
        .unwrap();
    let tracker = Tracker::with_clock(dispatcher, ManualClock::at_unix_ms(0));
    let deploy = tracker.start("shop-api", "prod", "1.4.2");
    deploy.step("migrate").fail("lock timeout");
    deploy.roll_back("1.4.1", Some("migration failed".into()));
    assert!(tracker.dispatcher().flush(DEADLINE));

    let logs = cap.logs();
    let messages: Vec<_> = logs
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            "deploy started",
            "deploy step started",
            "deploy step failed",
            "deploy rolled back"
        ]
    );
    for line in &logs {
        assert_eq!(line["deploy.project"], "shop-api", "{line}");
        assert_eq!(line["deploy.environment"], "prod");
        assert_eq!(line["deploy.version"], "1.4.2");
    }
    assert_eq!(logs[2]["log.level"], "WARN");
    assert_eq!(logs[2]["deploy.step"], "migrate");
    assert_eq!(logs[2]["deploy.reason"], "lock timeout");
    assert_eq!(logs[3]["deploy.rolled_back_to"], "1.4.1");
    assert_eq!(logs[3]["deploy.event"], "rolled_back");
}

/// A dispatcher with the metrics hook alone, recording into `cap`.
fn metrics_only(cap: &Capture) -> Dispatcher {
    Dispatcher::builder()
        .metrics_recorder(Arc::new(cap.recorder().clone()))
        .hook(MetricsHook::new())
        .build()
        .unwrap()
}

/// A second terminal event for a deployment that already ended (another event id: a GitHub
/// `deployment_status` of `error` then `success`) is not counted again: the history keeps the
/// first outcome, and Prometheus must agree with it.
#[test]
fn metrics_hook_counts_a_deployment_once_however_many_terminal_events() {
    let cap = Capture::new();
    let dispatcher = metrics_only(&cap);
    let event = |id: &str, seq: u32, kind: &str| {
        axi_obs_deploy::event::Event::from_json(&format!(
            r#"{{"schema":1,"id":"{id}","deployment":{{"id":"d-1","project":"shop-api","environment":"prod","version":"1","started_at":"2026-05-01T10:00:00Z"}},"seq":{seq},"at":"2026-05-01T10:05:00Z","type":"{kind}","reason":"health check"}}"#
        ))
        .unwrap()
    };
    assert!(dispatcher.send(event("e1", 1, "failed")));
    assert!(dispatcher.send(event("e2", 2, "succeeded")));
    assert!(dispatcher.flush(DEADLINE));
    let snap = cap.metrics();
    let total = snap.family(names::DEPLOYS_TOTAL).unwrap();
    let pe = [("project", "shop-api"), ("environment", "prod")];
    assert_eq!(
        total
            .series_with(&[pe[0], pe[1], ("status", "failed")])
            .and_then(|s| s.value.as_counter()),
        Some(1)
    );
    assert!(
        total
            .series_with(&[pe[0], pe[1], ("status", "succeeded")])
            .is_none()
    );
    assert!(snap.family(names::DEPLOY_LAST_SUCCESS).is_none());
}

/// The in-progress gauge: a `started` arriving after its deployment's end does not open it
/// again, and a deployment without an end leaves it after a day (its runner killed), so a
/// "deploy stuck" alert resolves.
#[test]
fn the_in_progress_gauge_ignores_late_starts_and_lets_go_after_a_day() {
    let cap = Capture::new();
    let dispatcher = metrics_only(&cap);
    let event = |id: &str, deploy: &str, started: &str, at: &str, kind: &str| {
        axi_obs_deploy::event::Event::from_json(&format!(
            r#"{{"schema":1,"id":"{id}","deployment":{{"id":"{deploy}","project":"shop-api","environment":"prod","version":"1","started_at":"{started}"}},"seq":0,"at":"{at}","type":"{kind}","reason":"killed"}}"#
        ))
        .unwrap()
    };
    let in_progress = || {
        cap.metrics()
            .family(names::DEPLOYS_IN_PROGRESS)
            .and_then(|f| {
                f.series_with(&[("project", "shop-api"), ("environment", "prod")])
                    .and_then(|s| s.value.as_gauge())
            })
            .unwrap()
    };
    let t0 = "2026-05-01T10:00:00Z";
    // Ended before its start arrived.
    assert!(dispatcher.send(event(
        "e1",
        "early",
        t0,
        "2026-05-01T10:05:00Z",
        "succeeded"
    )));
    assert!(dispatcher.send(event("e2", "early", t0, t0, "started")));
    // Started, never ended.
    assert!(dispatcher.send(event("e3", "killed", t0, t0, "started")));
    assert!(dispatcher.flush(DEADLINE));
    assert_eq!(in_progress(), 1.0);
    // A day and a bit later, another deployment's start: the killed one is let go of.
    let later = "2026-05-02T10:30:00Z";
    assert!(dispatcher.send(event("e4", "next", later, later, "started")));
    assert!(dispatcher.flush(DEADLINE));
    assert_eq!(in_progress(), 1.0, "only `next` is in progress");
    // Its late end counts it, without taking the gauge below the one open deployment.
    assert!(dispatcher.send(event("e5", "killed", t0, later, "failed")));
    assert!(dispatcher.send(event("e6", "next", later, later, "succeeded")));
    assert!(dispatcher.flush(DEADLINE));
    assert_eq!(in_progress(), 0.0);
}
