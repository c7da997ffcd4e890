//! A trace per deployment: [`TraceHook`] turns the event stream into OpenTelemetry spans.
//!
//! Each deployment becomes one root span (kind `internal`, name `deploy {project}`), with a
//! child span per step (name = the step's name). Start and end times are those of the events,
//! not of the hook thread, so a trace is exact even when the hooks run late. Spans go through
//! an OpenTelemetry tracer provider: by default the global one, which `axi_obs_core`'s
//! `install()` sets (and which exports over OTLP when a traces endpoint is configured), or the
//! one given to [`TraceHook::tracer_provider`].
//!
//! ```
//! use std::time::Duration;
//! use axi_obs_core::testing::Capture;
//! use axi_obs_deploy::dispatch::Dispatcher;
//! use axi_obs_deploy::trace::TraceHook;
//! use axi_obs_deploy::Tracker;
//!
//! let capture = Capture::new(); // any `TracerProvider`; omit the setter for the global one
//! let hook = TraceHook::new().tracer_provider(capture.tracer_provider());
//! let tracker = Tracker::new(Dispatcher::builder().hook(hook).build()?);
//! let deploy = tracker.start("shop-api", "prod", "1.4.2");
//! deploy.run_step("migrate", || Ok::<_, std::io::Error>(()))?;
//! deploy.succeed();
//! tracker.dispatcher().flush(Duration::from_secs(5));
//!
//! let spans = capture.spans(); // in end order: the step, then the deployment
//! assert_eq!(spans[0].name, "migrate");
//! assert_eq!(spans[1].name, "deploy shop-api");
//! assert_eq!(spans[0].parent_span_id, spans[1].span_context.span_id());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What the spans say
//!
//! | span | attributes | status |
//! |---|---|---|
//! | deployment | `deployment.id`, `deployment.project`, `deployment.environment.name` (semantic conventions), `deployment.version`, and where known `deployment.commit`, `deployment.actor`, `deployment.trigger`; at the end `deployment.status` and, for a rollback, `deployment.rolled_back_to` | error for `failed` and `rolled_back` (the reason as description), unset otherwise |
//! | step | `deployment.id`, `deployment.step.index`, `deployment.step.name` | error for a failed step (its error as description) |
//!
//! Names are constants in [`crate::names`]. Events may come in any order: a step or a
//! terminal event of a deployment whose `started` event was not seen opens the deployment
//! span at the deployment's start time (every event carries it); a step finish without its
//! start is traced from the finish event's `started_at`. Steps still open when the deployment
//! ends are ended with it, as errors. Events of a deployment that already ended (the last
//! [`RECENTLY_ENDED`] are remembered) are ignored, so a duplicate terminal event does not
//! make a second trace.
//!
//! # Memory
//!
//! Only open deployments are held: the root span and the start of each open step. At most
//! [`max_open`](TraceHook::max_open) deployments (default [`DEFAULT_MAX_OPEN`]) and
//! [`MAX_OPEN_STEPS`] open steps per deployment. **Past either cap, the newest is not traced**
//! and each event left out is counted in
//! [`axi_deploy_trace_events_dropped_total`](crate::names::TRACE_EVENTS_DROPPED_METRIC). When
//! the hook is dropped (the dispatcher shut down), deployments still open are ended at their
//! last event, as errors, so their spans are exported rather than lost. A deployment no
//! event of which came for a day (its runner killed) is ended the same way, as an error
//! ([`DEPLOY_ABANDONED`]), when a later event of any deployment arrives.

use std::borrow::Cow;
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::SystemTime;

use axi_obs_core::otel::opentelemetry::global::{BoxedSpan, BoxedTracer};
use axi_obs_core::otel::opentelemetry::trace::{
    Span as _, SpanKind, Status as SpanStatus, TraceContextExt as _, Tracer as _, TracerProvider,
};
use axi_obs_core::otel::opentelemetry::{Context, InstrumentationScope, KeyValue};
use time::OffsetDateTime;

use crate::event::{Event, EventKind, StepStatus};
use crate::hook::{Hook, HookError};
use crate::names;

/// Default most deployments traced at once.
pub const DEFAULT_MAX_OPEN: usize = 10_000;

/// Most started, unfinished steps remembered per open deployment.
pub const MAX_OPEN_STEPS: usize = 1_000;

pub use crate::hook::RECENTLY_ENDED;

/// The description of a step span ended by its deployment's end.
pub const STEP_UNFINISHED: &str = "step not finished when the deployment ended";

/// The description of a deployment span ended because the hook was dropped.
pub const DEPLOY_UNFINISHED: &str = "deployment not finished when tracing stopped";

/// The description of a deployment span ended because no event of it came for
/// [`MAX_OPEN_AGE`](crate::hook::MetricsHook::MAX_OPEN_AGE) (its runner killed).
pub const DEPLOY_ABANDONED: &str = "no event of the deployment for a day";

/// Turns deploy events into one OpenTelemetry span per deployment with a child span per step.
/// See the [module documentation](self).
pub struct TraceHook {
    tracer: Option<Arc<BoxedTracer>>,
    max_open: usize,
    open: HashMap<String, OpenDeploy>,
    ended: crate::hook::RecentlyEnded,
    described: bool,
    /// When the open deployments were last checked for age (event time).
    swept: Option<OffsetDateTime>,
}

struct OpenDeploy {
    /// Holds the deployment span; step spans are its children.
    cx: Context,
    /// Started steps not yet finished: index → (name, start).
    steps: HashMap<u32, (String, OffsetDateTime)>,
    last_at: OffsetDateTime,
}

impl std::fmt::Debug for TraceHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceHook")
            .field("explicit_tracer", &self.tracer.is_some())
            .field("max_open", &self.max_open)
            .field("open", &self.open.len())
            .finish_non_exhaustive()
    }
}

impl Default for TraceHook {
    fn default() -> Self {
        Self::new()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("axi-obs-deploy")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

impl TraceHook {
    /// A trace hook on the global tracer provider (looked up at the first event, so telemetry
    /// may be installed after the hook is built), at most [`DEFAULT_MAX_OPEN`] open
    /// deployments.
    pub fn new() -> Self {
        Self {
            tracer: None,
            max_open: DEFAULT_MAX_OPEN,
            open: HashMap::new(),
            ended: crate::hook::RecentlyEnded::default(),
            described: false,
            swept: None,
        }
    }

    /// Creates spans with `provider` instead of the global tracer provider (tests, or several
    /// providers in one process). Defaults to the global provider, which `axi_obs_core`'s
    /// `install()` sets.
    #[must_use]
    pub fn tracer_provider<P>(mut self, provider: &P) -> Self
    where
        P: TracerProvider,
        P::Tracer: Send + Sync + 'static,
        <P::Tracer as axi_obs_core::otel::opentelemetry::trace::Tracer>::Span:
            Send + Sync + 'static,
    {
        self.tracer = Some(Arc::new(BoxedTracer::new(Box::new(
            provider.tracer_with_scope(scope()),
        ))));
        self
    }

    /// Most deployments traced at once; events of further ones are dropped and counted.
    /// Defaults to [`DEFAULT_MAX_OPEN`].
    #[must_use]
    pub fn max_open(mut self, max: NonZeroUsize) -> Self {
        self.max_open = max.get();
        self
    }

    fn tracer(&mut self) -> Arc<BoxedTracer> {
        self.tracer
            .get_or_insert_with(|| {
                Arc::new(axi_obs_core::otel::opentelemetry::global::tracer_with_scope(scope()))
            })
            .clone()
    }

    fn dropped() {
        metrics::counter!(names::TRACE_EVENTS_DROPPED_METRIC).increment(1);
    }

    /// Ends, as errors at their last event, the deployments no event of which came for a
    /// day before `now` (the newest event's time), checked at most once a minute: a killed
    /// runner's deployment is exported, and does not hold one of the open places for good.
    fn sweep(&mut self, now: OffsetDateTime) {
        if !crate::hook::sweep_due(&mut self.swept, now) {
            return;
        }
        let quiet = |o: &OpenDeploy| now - o.last_at > crate::hook::MetricsHook::MAX_OPEN_AGE;
        if !self.open.values().any(quiet) {
            return;
        }
        let tracer = self.tracer();
        for (id, open) in self.open.extract_if(|_, o| quiet(o)) {
            end_unfinished(&tracer, &id, open, DEPLOY_ABANDONED);
            self.ended.insert(&id);
        }
    }

    /// The open deployment of `e`, opened at the deployment's start if it was not; `None` if
    /// it ended already or the cap is reached (counted).
    fn open_for(&mut self, e: &Event) -> Option<&mut OpenDeploy> {
        let d = &e.deployment;
        if self.ended.contains(&d.id) {
            return None;
        }
        if !self.open.contains_key(&d.id) {
            if self.open.len() >= self.max_open {
                Self::dropped();
                return None;
            }
            let mut attributes = vec![
                KeyValue::new(names::SPAN_DEPLOYMENT_ID, d.id.clone()),
                KeyValue::new(names::SPAN_DEPLOYMENT_PROJECT, d.project.clone()),
                KeyValue::new(names::SPAN_DEPLOYMENT_ENVIRONMENT, d.environment.clone()),
                KeyValue::new(names::SPAN_DEPLOYMENT_VERSION, d.version.clone()),
            ];
            if let EventKind::Started {
                commit,
                actor,
                trigger,
                ..
            } = &e.kind
            {
                let optional = [
                    (names::SPAN_DEPLOYMENT_COMMIT, commit),
                    (names::SPAN_DEPLOYMENT_ACTOR, actor),
                    (names::SPAN_DEPLOYMENT_TRIGGER, trigger),
                ];
                for (key, value) in optional {
                    if let Some(v) = value {
                        attributes.push(KeyValue::new(key, v.clone()));
                    }
                }
            }
            let tracer = self.tracer();
            let builder = tracer
                .span_builder(format!("deploy {}", d.project))
                .with_kind(SpanKind::Internal)
                .with_start_time(SystemTime::from(d.started_at))
                .with_attributes(attributes);
            // A fresh context: every deployment is a trace of its own, whatever the thread's
            // current context.
            let span = tracer.build_with_context(builder, &Context::new());
            self.open.insert(
                d.id.clone(),
                OpenDeploy {
                    cx: Context::new().with_span(span),
                    steps: HashMap::new(),
                    last_at: e.at,
                },
            );
        }
        let open = self.open.get_mut(&d.id)?;
        open.last_at = open.last_at.max(e.at);
        Some(open)
    }

    fn step_span(
        tracer: &BoxedTracer,
        parent: &Context,
        deploy_id: &str,
        index: u32,
        name: &str,
        started_at: OffsetDateTime,
    ) -> BoxedSpan {
        let builder = tracer
            .span_builder(name.to_owned())
            .with_kind(SpanKind::Internal)
            .with_start_time(SystemTime::from(started_at))
            .with_attributes([
                KeyValue::new(names::SPAN_DEPLOYMENT_ID, deploy_id.to_owned()),
                KeyValue::new(names::SPAN_STEP_INDEX, i64::from(index)),
                KeyValue::new(names::SPAN_STEP_NAME, name.to_owned()),
            ]);
        tracer.build_with_context(builder, parent)
    }
}

/// Ends a deployment span and its unfinished steps at `at`.
fn end_deploy(
    tracer: &BoxedTracer,
    deploy_id: &str,
    open: OpenDeploy,
    at: OffsetDateTime,
    status: SpanStatus,
    attributes: Vec<KeyValue>,
) {
    let mut steps: Vec<_> = open.steps.into_iter().collect();
    steps.sort_by_key(|(index, _)| *index);
    for (index, (name, started_at)) in steps {
        let mut span = TraceHook::step_span(tracer, &open.cx, deploy_id, index, &name, started_at);
        span.set_status(SpanStatus::error(STEP_UNFINISHED));
        span.end_with_timestamp(SystemTime::from(at.max(started_at)));
    }
    let span = open.cx.span();
    span.set_attributes(attributes);
    span.set_status(status);
    span.end_with_timestamp(SystemTime::from(at));
}

/// Ends a deployment that got no end at its last event, as an error saying why.
fn end_unfinished(tracer: &BoxedTracer, deploy_id: &str, open: OpenDeploy, why: &'static str) {
    let at = open.last_at;
    end_deploy(
        tracer,
        deploy_id,
        open,
        at,
        SpanStatus::error(why),
        Vec::new(),
    );
}

impl Hook for TraceHook {
    fn name(&self) -> &str {
        "trace"
    }

    fn on_event(&mut self, e: &Event) -> Result<(), HookError> {
        if !self.described {
            metrics::describe_counter!(
                names::TRACE_EVENTS_DROPPED_METRIC,
                "Deploy events not traced because too many deployments or steps were open"
            );
            self.described = true;
        }
        self.sweep(e.at);
        let Some(open) = self.open_for(e) else {
            return Ok(());
        };
        match &e.kind {
            EventKind::Started { .. } => {}
            EventKind::StepStarted { step } => {
                if open.steps.len() < MAX_OPEN_STEPS || open.steps.contains_key(&step.index) {
                    open.steps.insert(step.index, (step.name.clone(), e.at));
                } else {
                    Self::dropped();
                }
            }
            EventKind::StepFinished {
                step,
                started_at,
                status,
                error,
                ..
            } => {
                // The finish event carries the start: a step whose start was not seen (or
                // not kept) is still traced whole.
                open.steps.remove(&step.index);
                let cx = open.cx.clone();
                let tracer = self.tracer();
                let mut span = Self::step_span(
                    &tracer,
                    &cx,
                    &e.deployment.id,
                    step.index,
                    &step.name,
                    *started_at,
                );
                if *status == StepStatus::Failed {
                    let description = error.clone().unwrap_or_else(|| "failed".to_owned());
                    span.set_status(SpanStatus::error(description));
                }
                span.end_with_timestamp(SystemTime::from(e.at.max(*started_at)));
            }
            kind => {
                let Some(status) = kind.terminal_status() else {
                    return Ok(());
                };
                let id = e.deployment.id.clone();
                let Some(open) = self.open.remove(&id) else {
                    return Ok(());
                };
                let mut attributes = vec![KeyValue::new(
                    names::SPAN_DEPLOYMENT_STATUS,
                    status.as_str(),
                )];
                let span_status = match kind {
                    EventKind::Failed { reason } => SpanStatus::error(reason.clone()),
                    EventKind::RolledBack { to_version, reason } => {
                        attributes.push(KeyValue::new(
                            names::SPAN_DEPLOYMENT_ROLLED_BACK_TO,
                            to_version.clone(),
                        ));
                        let description: Cow<'static, str> = match reason {
                            Some(r) => format!("rolled back to {to_version}: {r}").into(),
                            None => format!("rolled back to {to_version}").into(),
                        };
                        SpanStatus::error(description)
                    }
                    _ => SpanStatus::Unset,
                };
                let tracer = self.tracer();
                let at = e.at.max(e.deployment.started_at);
                end_deploy(&tracer, &id, open, at, span_status, attributes);
                self.ended.insert(&id);
            }
        }
        Ok(())
    }
}

impl Drop for TraceHook {
    fn drop(&mut self) {
        let Some(tracer) = self.tracer.clone() else {
            return;
        };
        for (id, open) in self.open.drain() {
            end_unfinished(&tracer, &id, open, DEPLOY_UNFINISHED);
        }
    }
}
