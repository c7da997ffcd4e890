//! The trace hook: one span per deployment, a child span per step, exact times and status.

#![allow(clippy::unwrap_used)] // helpers outside #[test] functions unwrap too

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axi_obs_core::otel::opentelemetry::trace::{SpanId, SpanKind, Status as SpanStatus};
use axi_obs_core::otel::opentelemetry::{Key, Value};
use axi_obs_core::testing::{Capture, CapturedSpan};
use axi_obs_deploy::clock::ManualClock;
use axi_obs_deploy::dispatch::Dispatcher;
use axi_obs_deploy::event::{DeploymentRef, StepRef, StepStatus, from_unix_ms};
use axi_obs_deploy::names;
use axi_obs_deploy::trace::{DEPLOY_ABANDONED, DEPLOY_UNFINISHED, STEP_UNFINISHED, TraceHook};
use axi_obs_deploy::{DeploySpec, Event, EventKind, Tracker};

const DEADLINE: Duration = Duration::from_secs(30);

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn attr(span: &CapturedSpan, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == Key::from(key.to_owned()))
        .map(|kv| kv.value.clone())
}

fn attr_str(span: &CapturedSpan, key: &str) -> Option<String> {
    attr(span, key).map(|v| v.as_str().into_owned())
}

fn by_name<'a>(spans: &'a [CapturedSpan], name: &str) -> &'a CapturedSpan {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name} in {:?}", names_of(spans)))
}

fn names_of(spans: &[CapturedSpan]) -> Vec<String> {
    spans.iter().map(|s| s.name.to_string()).collect()
}

fn dref(id: &str) -> DeploymentRef {
    DeploymentRef {
        id: id.into(),
        project: "shop".into(),
        environment: "prod".into(),
        version: "2.0.0".into(),
        started_at: from_unix_ms(1_000),
    }
}

fn event(id: &str, seq: u32, ms: i64, kind: EventKind) -> Event {
    Event::new(dref(id), seq, from_unix_ms(ms), kind)
}

fn started(id: &str) -> Event {
    event(
        id,
        0,
        1_000,
        EventKind::Started {
            commit: None,
            commit_time: None,
            actor: None,
            trigger: None,
        },
    )
}

fn step_started(id: &str, seq: u32, ms: i64, index: u32, name: &str) -> Event {
    event(
        id,
        seq,
        ms,
        EventKind::StepStarted {
            step: StepRef {
                index,
                name: name.into(),
            },
        },
    )
}

#[test]
fn a_deployment_is_a_span_tree_with_exact_times_and_status() {
    let cap = Capture::new();
    let clock = ManualClock::at_unix_ms(10_000);
    let dispatcher = Dispatcher::builder()
        .hook(TraceHook::new().tracer_provider(cap.tracer_provider()))
        .build()
        .unwrap();
    let tracker = Tracker::with_clock(dispatcher, clock.clone());

    let deploy = tracker.start_with(
        DeploySpec::new("shop-api", "prod", "1.4.2")
            .id("d-42")
            .commit("3f2a9c1")
            .actor("ci"),
    );
    clock.advance(Duration::from_millis(500));
    let build = deploy.step("build");
    clock.advance(Duration::from_secs(2));
    build.succeed();
    let migrate = deploy.step("migrate");
    clock.advance(Duration::from_secs(3));
    migrate.fail("lock timeout");
    clock.advance(Duration::from_millis(250));
    deploy.fail("migration failed");
    assert!(tracker.dispatcher().flush(DEADLINE));

    let spans = cap.spans();
    assert_eq!(
        names_of(&spans),
        ["build", "migrate", "deploy shop-api"],
        "steps end first, then the deployment"
    );
    let root = by_name(&spans, "deploy shop-api");
    let build = by_name(&spans, "build");
    let migrate = by_name(&spans, "migrate");

    // The tree: one trace, a root without parent, steps as its children.
    assert_eq!(root.parent_span_id, SpanId::INVALID);
    for step in [build, migrate] {
        assert_eq!(step.parent_span_id, root.span_context.span_id());
        assert_eq!(step.span_context.trace_id(), root.span_context.trace_id());
        assert_eq!(step.span_kind, SpanKind::Internal);
    }
    assert_eq!(root.span_kind, SpanKind::Internal);

    // Times are the events' times.
    assert_eq!((root.start_time, root.end_time), (at(10_000), at(15_750)));
    assert_eq!((build.start_time, build.end_time), (at(10_500), at(12_500)));
    assert_eq!(
        (migrate.start_time, migrate.end_time),
        (at(12_500), at(15_500))
    );

    // Status.
    assert_eq!(build.status, SpanStatus::Unset);
    assert_eq!(migrate.status, SpanStatus::error("lock timeout"));
    assert_eq!(root.status, SpanStatus::error("migration failed"));

    // Attributes.
    assert_eq!(attr_str(root, "deployment.id").as_deref(), Some("d-42"));
    assert_eq!(
        attr_str(root, "deployment.project").as_deref(),
        Some("shop-api")
    );
    assert_eq!(
        attr_str(root, "deployment.environment.name").as_deref(),
        Some("prod")
    );
    assert_eq!(
        attr_str(root, "deployment.version").as_deref(),
        Some("1.4.2")
    );
    assert_eq!(
        attr_str(root, "deployment.commit").as_deref(),
        Some("3f2a9c1")
    );
    assert_eq!(attr_str(root, "deployment.actor").as_deref(), Some("ci"));
    assert_eq!(attr(root, "deployment.trigger"), None);
    assert_eq!(
        attr_str(root, "deployment.status").as_deref(),
        Some("failed")
    );
    assert_eq!(attr_str(migrate, "deployment.id").as_deref(), Some("d-42"));
    assert_eq!(attr(migrate, "deployment.step.index"), Some(Value::I64(1)));
    assert_eq!(
        attr_str(migrate, "deployment.step.name").as_deref(),
        Some("migrate")
    );
}

#[test]
fn success_is_unset_rollback_is_error_cancel_is_unset() {
    let cap = Capture::new();
    let dispatcher = Dispatcher::builder()
        .hook(TraceHook::new().tracer_provider(cap.tracer_provider()))
        .build()
        .unwrap();
    let tracker = Tracker::with_clock(dispatcher, ManualClock::at_unix_ms(0));
    tracker.start("ok", "prod", "1").succeed();
    tracker
        .start("back", "prod", "2")
        .roll_back("1", Some("error rate".into()));
    tracker.start("stop", "prod", "3").cancel(None);
    assert!(tracker.dispatcher().flush(DEADLINE));

    let spans = cap.spans();
    let ok = by_name(&spans, "deploy ok");
    assert_eq!(ok.status, SpanStatus::Unset);
    assert_eq!(
        attr_str(ok, "deployment.status").as_deref(),
        Some("succeeded")
    );
    let back = by_name(&spans, "deploy back");
    assert_eq!(
        back.status,
        SpanStatus::error("rolled back to 1: error rate")
    );
    assert_eq!(
        attr_str(back, "deployment.rolled_back_to").as_deref(),
        Some("1")
    );
    let stop = by_name(&spans, "deploy stop");
    assert_eq!(stop.status, SpanStatus::Unset);
    assert_eq!(
        attr_str(stop, "deployment.status").as_deref(),
        Some("cancelled")
    );
    // Each deployment is a trace of its own.
    assert_ne!(ok.span_context.trace_id(), back.span_context.trace_id());
}

#[test]
fn out_of_order_events_still_make_one_tree() {
    let cap = Capture::new();
    let mut hook = TraceHook::new().tracer_provider(cap.tracer_provider());
    use axi_obs_deploy::hook::Hook as _;
    // No `started` seen; a step finish without its start; a step left open.
    hook.on_event(&step_started("d1", 1, 2_000, 1, "open"))
        .unwrap();
    hook.on_event(&event(
        "d1",
        2,
        4_000,
        EventKind::StepFinished {
            step: StepRef {
                index: 0,
                name: "build".into(),
            },
            started_at: from_unix_ms(1_500),
            status: StepStatus::Succeeded,
            output_tail: None,
            error: None,
        },
    ))
    .unwrap();
    hook.on_event(&event("d1", 3, 5_000, EventKind::Succeeded))
        .unwrap();
    // A duplicate terminal event and a late step of the ended deployment add nothing.
    hook.on_event(&event("d1", 3, 5_000, EventKind::Succeeded))
        .unwrap();
    hook.on_event(&step_started("d1", 4, 6_000, 2, "late"))
        .unwrap();
    drop(hook);

    let spans = cap.spans();
    assert_eq!(names_of(&spans), ["build", "open", "deploy shop"]);
    let root = by_name(&spans, "deploy shop");
    assert_eq!((root.start_time, root.end_time), (at(1_000), at(5_000)));
    let build = by_name(&spans, "build");
    assert_eq!((build.start_time, build.end_time), (at(1_500), at(4_000)));
    let open = by_name(&spans, "open");
    assert_eq!((open.start_time, open.end_time), (at(2_000), at(5_000)));
    assert_eq!(open.status, SpanStatus::error(STEP_UNFINISHED));
    for step in [build, open] {
        assert_eq!(step.parent_span_id, root.span_context.span_id());
    }
}

#[test]
fn open_deployments_are_capped_and_the_rest_counted() {
    let cap = Capture::new();
    let mut hook = TraceHook::new()
        .tracer_provider(cap.tracer_provider())
        .max_open(1.try_into().unwrap());
    use axi_obs_deploy::hook::Hook as _;
    cap.run(|| {
        hook.on_event(&started("d1")).unwrap();
        hook.on_event(&started("d2")).unwrap(); // over the cap
        hook.on_event(&step_started("d2", 1, 1_100, 0, "x"))
            .unwrap(); // still over
        hook.on_event(&event("d1", 1, 2_000, EventKind::Succeeded))
            .unwrap();
        hook.on_event(&started("d3")).unwrap(); // room again
    });
    let dropped = cap
        .metrics()
        .family(names::TRACE_EVENTS_DROPPED_METRIC)
        .unwrap()
        .series[0]
        .value
        .as_counter();
    assert_eq!(dropped, Some(2));
    // d3 is still open: dropping the hook ends it at its last event, as an error.
    drop(hook);
    let spans = cap.spans();
    assert_eq!(spans.len(), 2, "{:?}", names_of(&spans));
    assert_eq!(attr_str(&spans[0], "deployment.id").as_deref(), Some("d1"));
    assert_eq!(attr_str(&spans[1], "deployment.id").as_deref(), Some("d3"));
    assert_eq!(spans[1].status, SpanStatus::error(DEPLOY_UNFINISHED));
    assert_eq!(spans[1].end_time, at(1_000));
}

/// A deployment no event of which came for a day (its runner killed) is ended at its last
/// event, as an error, when a later event arrives: exported, and its open place freed.
#[test]
fn a_deployment_silent_for_a_day_is_ended_as_abandoned() {
    let cap = Capture::new();
    let mut hook = TraceHook::new()
        .tracer_provider(cap.tracer_provider())
        .max_open(1.try_into().unwrap());
    use axi_obs_deploy::hook::Hook as _;
    const DAY: i64 = 86_400_000;
    cap.run(|| {
        hook.on_event(&started("killed")).unwrap();
        hook.on_event(&step_started("killed", 1, 5_000, 0, "migrate"))
            .unwrap();
        // Not a day yet: the cap of one still holds `killed`.
        hook.on_event(&event(
            "other",
            0,
            5_000 + DAY - 120_000,
            EventKind::Succeeded,
        ))
        .unwrap();
        // A day after its last event: `killed` is ended, and the next deployment is traced.
        let next = Event::new(
            DeploymentRef {
                started_at: from_unix_ms(5_001 + DAY),
                ..dref("next")
            },
            1,
            from_unix_ms(5_002 + DAY),
            EventKind::Succeeded,
        );
        hook.on_event(&next).unwrap();
        // A late event of the abandoned one makes no second trace.
        hook.on_event(&event("killed", 2, 6_000 + DAY, EventKind::Succeeded))
            .unwrap();
    });
    drop(hook);
    let spans = cap.spans();
    let deploys: Vec<_> = spans.iter().filter(|s| s.name == "deploy shop").collect();
    assert_eq!(deploys.len(), 2, "{:?}", names_of(&spans));
    let killed = deploys
        .iter()
        .find(|s| attr_str(s, "deployment.id").as_deref() == Some("killed"))
        .unwrap();
    assert_eq!(killed.status, SpanStatus::error(DEPLOY_ABANDONED));
    assert_eq!(killed.end_time, at(5_000));
    let step = by_name(&spans, "migrate");
    assert_eq!(step.status, SpanStatus::error(STEP_UNFINISHED));
    assert!(
        deploys
            .iter()
            .any(|s| attr_str(s, "deployment.id").as_deref() == Some("next"))
    );
}

#[test]
fn trace_hook_runs_with_the_other_hooks_and_metrics_recorder() {
    // The dispatcher's recorder receives the trace hook's drop counter too.
    let cap = Capture::new();
    let dispatcher = Dispatcher::builder()
        .metrics_recorder(Arc::new(cap.recorder().clone()))
        .hook(axi_obs_deploy::hook::MetricsHook::new())
        .hook(
            TraceHook::new()
                .tracer_provider(cap.tracer_provider())
                .max_open(1.try_into().unwrap()),
        )
        .build()
        .unwrap();
    let tracker = Tracker::with_clock(dispatcher, ManualClock::at_unix_ms(0));
    let a = tracker.start("a", "prod", "1");
    let b = tracker.start("b", "prod", "1");
    b.succeed();
    a.succeed();
    assert!(tracker.dispatcher().flush(DEADLINE));
    assert_eq!(names_of(&cap.spans()), ["deploy a"]);
    let snapshot = cap.metrics();
    let dropped = snapshot.family(names::TRACE_EVENTS_DROPPED_METRIC).unwrap();
    assert_eq!(dropped.series[0].value.as_counter(), Some(2));
    assert!(snapshot.family(names::DEPLOYS_TOTAL).is_some());
}
