//! Hooks: what happens with each deploy event.
//!
//! A [`Hook`] receives every event on the dispatcher's thread (see [`crate::dispatch`]),
//! never on the thread that deploys. Closures `FnMut(&Event) -> Result<(), HookError>` are
//! hooks. Built in: [`MetricsHook`], [`LogHook`], and with the `sqlite` feature
//! [`HistoryHook`](crate::store::HistoryHook).
//!
//! ```
//! use axi_obs_deploy::hook::{Hook, HookError};
//! use axi_obs_deploy::event::Event;
//!
//! let mut seen = 0;
//! let mut count = move |_e: &Event| -> Result<(), HookError> {
//!     seen += 1;
//!     Ok(())
//! };
//! fn takes_hook(_h: &mut impl Hook) {}
//! takes_hook(&mut count);
//! ```

use std::collections::HashSet;

use crate::event::{Event, EventKind, StepStatus, unix_ms};
use crate::names;

/// The error a hook reports; counted and logged by the dispatcher.
pub type HookError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Receives deploy events, one at a time, on the dispatcher's thread.
pub trait Hook: Send + 'static {
    /// A short name for logs and the `hook` label of
    /// [`HOOK_FAILURES_METRIC`](crate::names::HOOK_FAILURES_METRIC). Defaults to the type name.
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }

    /// Handles one event. An error (or a panic) is counted and logged; the next event still
    /// comes.
    ///
    /// # Errors
    ///
    /// Whatever the hook could not do.
    fn on_event(&mut self, event: &Event) -> Result<(), HookError>;
}

impl<F> Hook for F
where
    F: FnMut(&Event) -> Result<(), HookError> + Send + 'static,
{
    fn name(&self) -> &str {
        "closure"
    }

    fn on_event(&mut self, event: &Event) -> Result<(), HookError> {
        self(event)
    }
}

/// Records deploys through the [`metrics`] facade (the recorder of the dispatcher's thread,
/// see [`DispatcherBuilder::metrics_recorder`](crate::dispatch::DispatcherBuilder::metrics_recorder)).
///
/// | metric | type | labels |
/// |---|---|---|
/// | [`deploys_total`](names::DEPLOYS_TOTAL) | counter | `project`, `environment`, `status` |
/// | [`deploy_duration_seconds`](names::DEPLOY_DURATION) | histogram | `project`, `environment`, `status` |
/// | [`deploy_last_success_timestamp_seconds`](names::DEPLOY_LAST_SUCCESS) | gauge | `project`, `environment` |
/// | [`deploys_in_progress`](names::DEPLOYS_IN_PROGRESS) | gauge | `project`, `environment` |
/// | [`deploy_step_duration_seconds`](names::STEP_DURATION) | histogram | `project`, `environment`, `step`, `status` |
///
/// Step names are user text: the core recorder's per-metric series cap bounds them.
#[derive(Debug, Default)]
pub struct MetricsHook {
    described: bool,
    /// Deployments seen started and not yet finished, so a duplicate terminal event cannot
    /// push the in-progress gauge below zero. Bounded by [`MetricsHook::MAX_OPEN`] (the
    /// oldest let go of first) and by [`MetricsHook::MAX_OPEN_AGE`].
    open: std::collections::HashMap<String, OpenDeploy>,
    /// When the open deployments were last checked for age (event time).
    swept: Option<time::OffsetDateTime>,
    /// Deployments that ended lately: a second terminal event for one (another id, a GitHub
    /// `error` then `success`) is not counted again, as the history keeps the first outcome.
    ended: RecentlyEnded,
}

/// Whether open deployments are to be checked for age at `now` (event time): at most once
/// a minute; `swept` remembers the last check.
pub(crate) fn sweep_due(
    swept: &mut Option<time::OffsetDateTime>,
    now: time::OffsetDateTime,
) -> bool {
    if swept.is_some_and(|t| now - t < time::Duration::minutes(1)) {
        return false;
    }
    *swept = Some(now);
    true
}

/// A deployment counted in progress.
#[derive(Debug)]
struct OpenDeploy {
    started_at: time::OffsetDateTime,
    project: String,
    environment: String,
}

impl OpenDeploy {
    /// Its series of the in-progress gauge.
    fn gauge(&self) -> metrics::Gauge {
        metrics::gauge!(names::DEPLOYS_IN_PROGRESS, "project" => self.project.clone(), "environment" => self.environment.clone())
    }

    /// Takes it out of the in-progress gauge.
    fn close(self) {
        self.gauge().decrement(1.0);
    }
}

/// The ids of the deployments that ended last, at most [`RECENTLY_ENDED`] of them (the
/// oldest forgotten first).
#[derive(Debug, Default)]
pub(crate) struct RecentlyEnded {
    order: std::collections::VecDeque<String>,
    set: HashSet<String>,
}

/// How many ended deployments the hooks remember, so late events of theirs are ignored.
pub const RECENTLY_ENDED: usize = 1_024;

impl RecentlyEnded {
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }

    /// Remembers `id`; false if it was remembered already.
    pub(crate) fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() >= RECENTLY_ENDED
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.set.insert(id.to_owned());
        self.order.push_back(id.to_owned());
        true
    }
}

impl MetricsHook {
    /// Most deployments counted in progress at once; past it, the one that started first
    /// is no longer counted.
    pub const MAX_OPEN: usize = 10_000;

    /// How long a deployment without an end (its runner killed, its cleanup step never run)
    /// counts in progress: a day, as its annotation is drawn. It then leaves the gauge, so
    /// a "deploy stuck" alert resolves instead of firing until the process restarts.
    pub const MAX_OPEN_AGE: time::Duration = time::Duration::hours(24);

    /// Lets go of the deployments open longer than [`MAX_OPEN_AGE`](Self::MAX_OPEN_AGE) at
    /// `now` (the newest event's time), checked at most once a minute.
    fn sweep(&mut self, now: time::OffsetDateTime) {
        if !sweep_due(&mut self.swept, now) {
            return;
        }
        for (id, o) in self
            .open
            .extract_if(|_, o| now - o.started_at > Self::MAX_OPEN_AGE)
        {
            tracing::info!(deploy.id = %id, deploy.project = %o.project, deploy.environment = %o.environment,
                "deployment without an end for a day: no longer counted in deploys_in_progress");
            o.close();
        }
    }

    /// A metrics hook.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Hook for MetricsHook {
    fn name(&self) -> &str {
        "metrics"
    }

    fn on_event(&mut self, e: &Event) -> Result<(), HookError> {
        if !self.described {
            names::describe();
            self.described = true;
        }
        let d = &e.deployment;
        self.sweep(e.at);
        let (p, env) = (d.project.clone(), d.environment.clone());
        match &e.kind {
            // A `started` arriving after its deployment's end (producers out of order) does
            // not open it again.
            EventKind::Started { .. }
                if !self.ended.contains(&d.id) && !self.open.contains_key(&d.id) =>
            {
                if self.open.len() >= Self::MAX_OPEN
                    && let Some(oldest) = self
                        .open
                        .iter()
                        .min_by_key(|(_, o)| o.started_at)
                        .map(|(id, _)| id.clone())
                    && let Some(o) = self.open.remove(&oldest)
                {
                    o.close();
                }
                let open = OpenDeploy {
                    started_at: d.started_at,
                    project: p,
                    environment: env,
                };
                open.gauge().increment(1.0);
                self.open.insert(d.id.clone(), open);
            }
            EventKind::Started { .. } => {}
            EventKind::StepStarted { .. } => {}
            EventKind::StepFinished {
                step,
                started_at,
                status,
                ..
            } => {
                let secs = (e.at - *started_at).as_seconds_f64().max(0.0);
                metrics::histogram!(names::STEP_DURATION, "project" => p, "environment" => env,
                    "step" => step.name.clone(), "status" => status.as_str())
                .record(secs);
            }
            kind => {
                let Some(status) = kind.terminal_status() else {
                    return Ok(());
                };
                if !self.ended.insert(&d.id) {
                    return Ok(());
                }
                if let Some(o) = self.open.remove(&d.id) {
                    o.close();
                }
                metrics::counter!(names::DEPLOYS_TOTAL, "project" => p.clone(),
                    "environment" => env.clone(), "status" => status.as_str())
                .increment(1);
                let secs = (e.at - d.started_at).as_seconds_f64().max(0.0);
                metrics::histogram!(names::DEPLOY_DURATION, "project" => p.clone(),
                    "environment" => env.clone(), "status" => status.as_str())
                .record(secs);
                if status == crate::Status::Succeeded {
                    metrics::gauge!(names::DEPLOY_LAST_SUCCESS, "project" => p, "environment" => env)
                        .set(unix_ms(e.at) as f64 / 1000.0);
                }
            }
        }
        Ok(())
    }
}

/// Writes one structured `tracing` event per transition, target `axi_obs_deploy`.
///
/// Fields: `deploy.id`, `deploy.project`, `deploy.environment`, `deploy.version`,
/// `deploy.event` (the event type), and where they apply `deploy.step`, `deploy.status`,
/// `deploy.duration_ms`, `deploy.reason`. Failures, rollbacks, cancellations and failed
/// steps are `WARN`, the rest `INFO`.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogHook;

impl LogHook {
    /// A log hook.
    pub fn new() -> Self {
        Self
    }
}

impl Hook for LogHook {
    fn name(&self) -> &str {
        "log"
    }

    fn on_event(&mut self, e: &Event) -> Result<(), HookError> {
        let d = &e.deployment;
        let ms = |from: time::OffsetDateTime| (e.at - from).whole_milliseconds().max(0) as u64;
        macro_rules! log {
            ($lvl:ident, $msg:expr $(, $($k:ident).+ = $v:expr)*) => {
                tracing::$lvl!(target: "axi_obs_deploy", {
                    deploy.id = %d.id, deploy.project = %d.project,
                    deploy.environment = %d.environment, deploy.version = %d.version,
                    deploy.event = e.kind.type_name() $(, $($k).+ = $v)* }, $msg)
            };
        }
        match &e.kind {
            EventKind::Started { commit, .. } => log!(
                info,
                "deploy started",
                deploy.commit = commit.as_deref().unwrap_or("")
            ),
            EventKind::StepStarted { step } => {
                log!(
                    info,
                    "deploy step started",
                    deploy.step = step.name.as_str()
                )
            }
            EventKind::StepFinished {
                step,
                started_at,
                status,
                error,
                ..
            } => {
                if *status == StepStatus::Failed {
                    log!(
                        warn,
                        "deploy step failed",
                        deploy.step = step.name.as_str(),
                        deploy.status = status.as_str(),
                        deploy.duration_ms = ms(*started_at),
                        deploy.reason = error.as_deref().unwrap_or("")
                    )
                } else {
                    log!(
                        info,
                        "deploy step finished",
                        deploy.step = step.name.as_str(),
                        deploy.status = status.as_str(),
                        deploy.duration_ms = ms(*started_at)
                    )
                }
            }
            EventKind::Succeeded => log!(
                info,
                "deploy succeeded",
                deploy.status = "succeeded",
                deploy.duration_ms = ms(d.started_at)
            ),
            EventKind::Failed { reason } => log!(
                warn,
                "deploy failed",
                deploy.status = "failed",
                deploy.duration_ms = ms(d.started_at),
                deploy.reason = reason.as_str()
            ),
            EventKind::RolledBack { to_version, reason } => log!(
                warn,
                "deploy rolled back",
                deploy.status = "rolled_back",
                deploy.duration_ms = ms(d.started_at),
                deploy.rolled_back_to = to_version.as_str(),
                deploy.reason = reason.as_deref().unwrap_or("")
            ),
            EventKind::Cancelled { reason } => log!(
                warn,
                "deploy cancelled",
                deploy.status = "cancelled",
                deploy.duration_ms = ms(d.started_at),
                deploy.reason = reason.as_deref().unwrap_or("")
            ),
        }
        Ok(())
    }
}
