//! The tracker API: events, steps as guards, the abandoned-on-drop rule.

#![allow(clippy::unwrap_used)] // helpers outside #[test] functions unwrap too

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axi_obs_deploy::clock::ManualClock;
use axi_obs_deploy::dispatch::Dispatcher;
use axi_obs_deploy::event::{StepStatus, unix_ms};
use axi_obs_deploy::hook::HookError;
use axi_obs_deploy::{DeploySpec, Deployment, Event, EventKind, Status, Tracker};

fn collecting(clock: &ManualClock) -> (Tracker, Arc<Mutex<Vec<Event>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let dispatcher = Dispatcher::builder()
        .hook(move |e: &Event| -> Result<(), HookError> {
            sink.lock().unwrap().push(e.clone());
            Ok(())
        })
        .build()
        .unwrap();
    (Tracker::with_clock(dispatcher, clock.clone()), seen)
}

fn drained(tracker: &Tracker, seen: &Arc<Mutex<Vec<Event>>>) -> Vec<Event> {
    assert!(tracker.dispatcher().flush(Duration::from_secs(10)));
    seen.lock().unwrap().clone()
}

#[test]
fn deploy_with_steps_emits_ordered_events_that_fold_into_the_deployment() {
    let clock = ManualClock::at_unix_ms(1_700_000_000_000);
    let (tracker, seen) = collecting(&clock);
    let deploy = tracker.start_with(
        DeploySpec::new("shop-api", "prod", "1.4.2")
            .commit("3f2a9c1")
            .actor("ci")
            .trigger("push"),
    );
    let mut build = deploy.step("build");
    clock.advance(Duration::from_secs(2));
    build.output_tail("compiled 42 crates\n");
    build.succeed();
    let migrate = deploy.step("migrate");
    clock.advance(Duration::from_millis(1500));
    migrate.fail("lock timeout");
    clock.advance(Duration::from_millis(500));
    deploy.fail("migrate failed");

    let events = drained(&tracker, &seen);
    let types: Vec<_> = events.iter().map(|e| e.kind.type_name()).collect();
    assert_eq!(
        types,
        [
            "started",
            "step_started",
            "step_finished",
            "step_started",
            "step_finished",
            "failed"
        ]
    );
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5]
    );
    let ids: std::collections::HashSet<_> = events.iter().map(|e| &e.id).collect();
    assert_eq!(ids.len(), 6, "event ids are unique");

    let d = Deployment::from_events(&events).unwrap();
    assert_eq!(d.project, "shop-api");
    assert_eq!(d.commit.as_deref(), Some("3f2a9c1"));
    assert_eq!(d.actor.as_deref(), Some("ci"));
    assert_eq!(d.trigger.as_deref(), Some("push"));
    assert_eq!(d.status, Status::Failed);
    assert_eq!(d.error.as_deref(), Some("migrate failed"));
    assert_eq!(d.duration(), Some(Duration::from_secs(4)));
    assert_eq!(d.steps.len(), 2);
    assert_eq!(d.steps[0].name, "build");
    assert_eq!(d.steps[0].status, StepStatus::Succeeded);
    assert_eq!(d.steps[0].duration(), Some(Duration::from_secs(2)));
    assert_eq!(
        d.steps[0].output_tail.as_deref(),
        Some("compiled 42 crates\n")
    );
    assert_eq!(d.steps[1].status, StepStatus::Failed);
    assert_eq!(d.steps[1].error.as_deref(), Some("lock timeout"));
    assert_eq!(d.steps[1].duration(), Some(Duration::from_millis(1500)));
    assert_eq!(unix_ms(d.started_at), 1_700_000_000_000);
}

#[test]
fn deploy_dropped_unfinished_is_recorded_as_failed_abandoned() {
    let clock = ManualClock::at_unix_ms(0);
    let (tracker, seen) = collecting(&clock);
    {
        let deploy = tracker.start("shop-api", "prod", "2.0.0");
        let _step = deploy.step("upload");
        clock.advance(Duration::from_secs(1));
        // Both dropped here, step first.
    }
    let events = drained(&tracker, &seen);
    let d = Deployment::from_events(&events).unwrap();
    assert_eq!(d.status, Status::Failed);
    assert_eq!(d.error.as_deref(), Some("abandoned"));
    assert_eq!(d.steps[0].status, StepStatus::Failed);
    assert_eq!(d.steps[0].error.as_deref(), Some("abandoned"));
    assert_eq!(d.duration(), Some(Duration::from_secs(1)));
}

#[test]
fn panic_during_a_deploy_records_abandoned_panicked() {
    let clock = ManualClock::at_unix_ms(0);
    let (tracker, seen) = collecting(&clock);
    let t = tracker.clone();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _deploy = t.start("shop-api", "prod", "2.0.0");
        panic!("deploy script exploded");
    }));
    assert!(result.is_err());
    let events = drained(&tracker, &seen);
    match &events.last().unwrap().kind {
        EventKind::Failed { reason } => assert_eq!(reason, "abandoned (panicked)"),
        other => panic!("expected failed, got {other:?}"),
    }
}

#[test]
fn finished_deploys_record_rollback_and_cancel() {
    let clock = ManualClock::at_unix_ms(0);
    let (tracker, seen) = collecting(&clock);
    let a = tracker.start("p", "prod", "2");
    let a_id = a.id().to_owned();
    a.roll_back("1", Some("error rate".into()));
    let b = tracker.start("p", "prod", "3");
    let b_id = b.id().to_owned();
    b.cancel(None);
    let events = drained(&tracker, &seen);
    let fold = |id: &str| {
        Deployment::from_events(events.iter().filter(|e| e.deployment.id == id)).unwrap()
    };
    let a = fold(&a_id);
    assert_eq!(a.status, Status::RolledBack);
    assert_eq!(a.rolled_back_to.as_deref(), Some("1"));
    assert_eq!(a.error.as_deref(), Some("error rate"));
    assert_eq!(fold(&b_id).status, Status::Cancelled);
    assert_eq!(
        events.len(),
        4,
        "no abandoned event after an explicit finish"
    );
}

/// Whatever the code passes (an empty project, a step name or a rollback's stderr far past
/// the limits), the tracker sends events the history accepts and can read back.
#[test]
fn oversized_or_empty_values_are_fitted_to_what_the_history_accepts() {
    let clock = ManualClock::at_unix_ms(0);
    let (tracker, seen) = collecting(&clock);
    let deploy = tracker.start("", "prod", "v".repeat(300));
    let id = deploy.id().to_owned();
    deploy.step("s".repeat(1000)).succeed();
    let stderr = format!("{}END", "e".repeat(20 * 1024));
    deploy.roll_back("1".repeat(300), Some(stderr));
    let events = drained(&tracker, &seen);
    assert_eq!(events.len(), 4);
    for e in &events {
        e.validate().unwrap_or_else(|err| panic!("{err}: {e:?}"));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut history = axi_obs_deploy::store::History::open(dir.path().join("d.db")).unwrap();
    for e in &events {
        history.insert(e).unwrap();
    }
    let d = history.get(&id).unwrap().unwrap();
    assert_eq!(d.project, "unknown");
    assert_eq!(d.version.len(), 256);
    assert_eq!(d.steps[0].name.len(), 256);
    assert_eq!(d.rolled_back_to.as_deref().map(str::len), Some(256));
    assert_eq!(d.error.as_deref().map(str::len), Some(16 * 1024));
    assert_eq!(history.events(&id).unwrap().len(), 4);
}

#[test]
fn run_step_records_the_error_text_and_returns_it() {
    let clock = ManualClock::at_unix_ms(0);
    let (tracker, seen) = collecting(&clock);
    let deploy = tracker.start("p", "prod", "1");
    let ok: Result<u32, String> = deploy.run_step("check", || Ok(7));
    assert_eq!(ok, Ok(7));
    let err: Result<(), String> = deploy.run_step("smoke", || Err("HTTP 502".to_owned()));
    assert_eq!(err, Err("HTTP 502".to_owned()));
    deploy.succeed();
    let d = Deployment::from_events(&drained(&tracker, &seen)).unwrap();
    assert_eq!(d.steps[0].status, StepStatus::Succeeded);
    assert_eq!(d.steps[1].status, StepStatus::Failed);
    assert_eq!(d.steps[1].error.as_deref(), Some("HTTP 502"));
    assert_eq!(d.status, Status::Succeeded);
}

#[test]
fn every_event_round_trips_through_json() {
    let clock = ManualClock::at_unix_ms(1_234);
    let (tracker, seen) = collecting(&clock);
    let deploy = tracker.start_with(
        DeploySpec::new("p", "prod", "1")
            .commit_time(axi_obs_deploy::event::from_unix_ms(1_000))
            .commit("abc"),
    );
    let mut s = deploy.step("s");
    s.output_tail("ünïcode ✓");
    s.succeed();
    deploy.roll_back("0", None);
    for e in drained(&tracker, &seen) {
        let json = e.to_json();
        assert_eq!(Event::from_json(&json).unwrap(), e, "{json}");
    }
}
