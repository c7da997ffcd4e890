//! The tracker API: start a deployment, open steps as guards, finish it.
//!
//! A [`Deploy`] handle or a [`StepGuard`] **dropped unfinished records a failure** with the
//! reason `abandoned` (`abandoned (panicked)` while unwinding): a deployment is never silently
//! lost, and an early `?` return cannot mark a step as succeeded.
//!
//! ```
//! use axi_obs_deploy::{DeploySpec, Tracker, dispatch::Dispatcher};
//!
//! let tracker = Tracker::new(Dispatcher::builder().build()?);
//! let deploy = tracker.start_with(
//!     DeploySpec::new("shop-api", "prod", "1.4.2").commit("3f2a9c1").actor("ci"),
//! );
//! let mut step = deploy.step("build");
//! step.output_tail("compiled 42 crates");
//! step.succeed();
//! deploy.run_step("migrate", || Ok::<_, std::io::Error>(()))?;
//! deploy.succeed();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use time::OffsetDateTime;

use crate::clock::{Clock, SystemClock};
use crate::dispatch::Dispatcher;
use crate::event::{
    DeploymentRef, Event, EventKind, StepRef, StepStatus, from_unix_ms, new_id, tail_text, unix_ms,
};

/// The reason recorded for a deployment or step dropped unfinished.
pub const ABANDONED: &str = "abandoned";

/// Starts deployments and sends their events to a [`Dispatcher`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Tracker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dispatcher: Dispatcher,
    clock: Arc<dyn Clock>,
}

/// What a deployment is: the arguments of [`Tracker::start_with`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct DeploySpec {
    pub(crate) project: String,
    pub(crate) environment: String,
    pub(crate) version: String,
    pub(crate) id: Option<String>,
    pub(crate) commit: Option<String>,
    pub(crate) commit_time: Option<OffsetDateTime>,
    pub(crate) actor: Option<String>,
    pub(crate) trigger: Option<String>,
}

impl DeploySpec {
    /// A deployment of `version` of `project` to `environment`.
    pub fn new(
        project: impl Into<String>,
        environment: impl Into<String>,
        version: impl Into<String>,
    ) -> Self {
        Self {
            project: project.into(),
            environment: environment.into(),
            version: version.into(),
            id: None,
            commit: None,
            commit_time: None,
            actor: None,
            trigger: None,
        }
    }

    /// The deployment id. Defaults to a new random id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The commit deployed. Defaults to none.
    pub fn commit(mut self, sha: impl Into<String>) -> Self {
        self.commit = Some(sha.into());
        self
    }

    /// When the commit was made (for the DORA lead time). Defaults to unknown.
    pub fn commit_time(mut self, at: OffsetDateTime) -> Self {
        self.commit_time = Some(at);
        self
    }

    /// Who started it. Defaults to none.
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Why it started (`push`, `manual`, ...). Defaults to none.
    pub fn trigger(mut self, trigger: impl Into<String>) -> Self {
        self.trigger = Some(trigger.into());
        self
    }
}

impl Tracker {
    /// A tracker on the system clock.
    pub fn new(dispatcher: Dispatcher) -> Self {
        Self::with_clock(dispatcher, SystemClock)
    }

    /// A tracker on `clock`.
    pub fn with_clock(dispatcher: Dispatcher, clock: impl Clock) -> Self {
        Self {
            inner: Arc::new(Inner {
                dispatcher,
                clock: Arc::new(clock),
            }),
        }
    }

    /// The dispatcher, for [`stats`](Dispatcher::stats), [`flush`](Dispatcher::flush) and
    /// [`shutdown`](Dispatcher::shutdown).
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.inner.dispatcher
    }

    /// Starts a deployment of `version` of `project` to `environment`.
    pub fn start(
        &self,
        project: impl Into<String>,
        environment: impl Into<String>,
        version: impl Into<String>,
    ) -> Deploy {
        self.start_with(DeploySpec::new(project, environment, version))
    }

    /// Starts a deployment described by `spec`; sends [`EventKind::Started`].
    pub fn start_with(&self, spec: DeploySpec) -> Deploy {
        let at = self.now();
        let deploy = Deploy {
            tracker: self.clone(),
            dref: DeploymentRef {
                id: spec.id.unwrap_or_else(new_id),
                project: spec.project,
                environment: spec.environment,
                version: spec.version,
                started_at: at,
            }
            // Within the limits the history checks when it reads: an empty project or a
            // name over 256 bytes would make the deployment unreadable later.
            .fitted(),
            seq: AtomicU32::new(0),
            next_step: AtomicU32::new(0),
            finished: false,
        };
        deploy.emit_at(
            at,
            EventKind::Started {
                commit: spec.commit,
                commit_time: spec.commit_time,
                actor: spec.actor,
                trigger: spec.trigger,
            },
        );
        deploy
    }

    /// The clock's time, truncated to milliseconds (what the history store keeps).
    fn now(&self) -> OffsetDateTime {
        from_unix_ms(unix_ms(self.inner.clock.now()))
    }
}

/// A deployment in progress. Finish it with [`succeed`](Self::succeed),
/// [`fail`](Self::fail), [`roll_back`](Self::roll_back) or [`cancel`](Self::cancel);
/// dropped unfinished it records [`EventKind::Failed`] with reason [`ABANDONED`].
#[derive(Debug)]
#[must_use = "a deployment dropped unfinished is recorded as failed (abandoned)"]
pub struct Deploy {
    tracker: Tracker,
    dref: DeploymentRef,
    seq: AtomicU32,
    next_step: AtomicU32,
    finished: bool,
}

impl Deploy {
    /// The deployment id.
    pub fn id(&self) -> &str {
        &self.dref.id
    }

    /// What every event of this deployment carries.
    pub fn deployment(&self) -> &DeploymentRef {
        &self.dref
    }

    /// Opens a step; sends [`EventKind::StepStarted`].
    pub fn step(&self, name: impl Into<String>) -> StepGuard<'_> {
        let at = self.tracker.now();
        let step = StepRef {
            index: self.next_step.fetch_add(1, Ordering::Relaxed),
            name: name.into(),
        };
        self.emit_at(at, EventKind::StepStarted { step: step.clone() });
        StepGuard {
            deploy: self,
            step,
            started_at: at,
            output_tail: None,
            done: false,
        }
    }

    /// Runs `f` as the step `name`: succeeded on `Ok`, failed with the error's text on `Err`.
    ///
    /// # Errors
    ///
    /// `f`'s error, unchanged.
    pub fn run_step<T, E: Display>(
        &self,
        name: impl Into<String>,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E> {
        let step = self.step(name);
        match f() {
            Ok(v) => {
                step.succeed();
                Ok(v)
            }
            Err(e) => {
                step.fail(e.to_string());
                Err(e)
            }
        }
    }

    /// Finishes successfully.
    pub fn succeed(mut self) {
        self.finish(EventKind::Succeeded);
    }

    /// Finishes as failed, with `reason` (its last 16 KiB).
    pub fn fail(mut self, reason: impl Into<String>) {
        let reason = tail_text(&reason.into()).to_owned();
        self.finish(EventKind::Failed { reason });
    }

    /// Finishes as rolled back to `to_version`.
    pub fn roll_back(mut self, to_version: impl Into<String>, reason: Option<String>) {
        self.finish(EventKind::RolledBack {
            to_version: to_version.into(),
            reason,
        });
    }

    /// Finishes as cancelled.
    pub fn cancel(mut self, reason: Option<String>) {
        self.finish(EventKind::Cancelled { reason });
    }

    fn finish(&mut self, kind: EventKind) {
        self.finished = true;
        self.emit_at(self.tracker.now(), kind);
    }

    fn emit_at(&self, at: OffsetDateTime, kind: EventKind) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        self.tracker
            .inner
            .dispatcher
            .send(Event::new(self.dref.clone(), seq, at, kind.fitted()));
    }
}

fn abandoned_reason() -> String {
    if std::thread::panicking() {
        format!("{ABANDONED} (panicked)")
    } else {
        ABANDONED.to_owned()
    }
}

impl Drop for Deploy {
    fn drop(&mut self) {
        if !self.finished {
            let reason = abandoned_reason();
            self.finish(EventKind::Failed { reason });
        }
    }
}

/// An open step. Finish it with [`succeed`](Self::succeed) or [`fail`](Self::fail); dropped
/// unfinished it is recorded as failed with error [`ABANDONED`].
#[derive(Debug)]
#[must_use = "a step dropped unfinished is recorded as failed (abandoned)"]
pub struct StepGuard<'a> {
    deploy: &'a Deploy,
    step: StepRef,
    started_at: OffsetDateTime,
    output_tail: Option<String>,
    done: bool,
}

impl StepGuard<'_> {
    /// The step's index and name.
    pub fn step(&self) -> &StepRef {
        &self.step
    }

    /// Sets the output tail sent with the finish (the last 16 KiB are kept).
    pub fn output_tail(&mut self, tail: impl Into<String>) {
        self.output_tail = Some(tail_text(&tail.into()).to_owned());
    }

    /// Finishes the step successfully.
    pub fn succeed(mut self) {
        self.finish(StepStatus::Succeeded, None);
    }

    /// Finishes the step as failed.
    pub fn fail(mut self, error: impl Into<String>) {
        let error = tail_text(&error.into()).to_owned();
        self.finish(StepStatus::Failed, Some(error));
    }

    fn finish(&mut self, status: StepStatus, error: Option<String>) {
        self.done = true;
        self.deploy.emit_at(
            self.deploy.tracker.now(),
            EventKind::StepFinished {
                step: self.step.clone(),
                started_at: self.started_at,
                status,
                output_tail: self.output_tail.take(),
                error,
            },
        );
    }
}

impl Drop for StepGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            let reason = abandoned_reason();
            self.finish(StepStatus::Failed, Some(reason));
        }
    }
}
