//! The state of a deployment, folded from its events.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::event::{DeploymentRef, Event, EventKind, StepStatus};

/// Where a deployment stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Started, no terminal event yet.
    InProgress,
    /// Finished successfully.
    Succeeded,
    /// Finished with an error, or abandoned (a handle dropped unfinished).
    Failed,
    /// Rolled back to an earlier version.
    RolledBack,
    /// Stopped before it finished, on purpose.
    Cancelled,
}

impl Status {
    /// Every status, in a stable order.
    pub const ALL: [Status; 5] = [
        Status::InProgress,
        Status::Succeeded,
        Status::Failed,
        Status::RolledBack,
        Status::Cancelled,
    ];

    /// The lower-case name used in JSON, SQL and metric labels (`in_progress`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in_progress",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::RolledBack => "rolled_back",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s output.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the deployment is over.
    pub fn is_terminal(self) -> bool {
        self != Self::InProgress
    }

    /// Whether this outcome counts as a failed change (DORA): failed or rolled back.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Failed | Self::RolledBack)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A deployment as known from its events.
///
/// ```
/// use axi_obs_deploy::{Deployment, Status};
/// use axi_obs_deploy::event::{DeploymentRef, Event, EventKind, SCHEMA_VERSION, from_unix_ms};
///
/// let dref = DeploymentRef {
///     id: "d1".into(), project: "shop".into(), environment: "prod".into(),
///     version: "2.0.0".into(), started_at: from_unix_ms(0),
/// };
/// let done = Event {
///     schema: SCHEMA_VERSION, id: "e2".into(), deployment: dref.clone(), seq: 1,
///     at: from_unix_ms(90_000), kind: EventKind::Succeeded,
/// };
/// let mut d = Deployment::new(&dref);
/// d.apply(&done);
/// assert_eq!(d.status, Status::Succeeded);
/// assert_eq!(d.duration(), Some(std::time::Duration::from_secs(90)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    /// Unique id.
    pub id: String,
    /// Project deployed.
    pub project: String,
    /// Target environment.
    pub environment: String,
    /// Version deployed.
    pub version: String,
    /// Commit deployed.
    pub commit: Option<String>,
    /// When that commit was made.
    #[serde(with = "time::serde::rfc3339::option")]
    pub commit_time: Option<OffsetDateTime>,
    /// Who started it.
    pub actor: Option<String>,
    /// Why it started.
    pub trigger: Option<String>,
    /// When it started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When it finished.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// Where it stands.
    pub status: Status,
    /// Its steps, by index.
    pub steps: Vec<Step>,
    /// Why it failed, was rolled back or cancelled.
    pub error: Option<String>,
    /// For a rollback, the version now running.
    pub rolled_back_to: Option<String>,
}

/// One step of a deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Position within the deployment, from 0.
    pub index: u32,
    /// Name.
    pub name: String,
    /// When it started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When it finished.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// Where it stands.
    pub status: StepStatus,
    /// The last lines of its output.
    pub output_tail: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

impl Step {
    /// Time from start to finish, when finished.
    pub fn duration(&self) -> Option<std::time::Duration> {
        duration(self.started_at, self.finished_at?)
    }
}

fn duration(from: OffsetDateTime, to: OffsetDateTime) -> Option<std::time::Duration> {
    (to - from).try_into().ok()
}

impl Deployment {
    /// A deployment in progress, with no steps, from what every event carries.
    pub fn new(dref: &DeploymentRef) -> Self {
        Self {
            id: dref.id.clone(),
            project: dref.project.clone(),
            environment: dref.environment.clone(),
            version: dref.version.clone(),
            commit: None,
            commit_time: None,
            actor: None,
            trigger: None,
            started_at: dref.started_at,
            finished_at: None,
            status: Status::InProgress,
            steps: Vec::new(),
            error: None,
            rolled_back_to: None,
        }
    }

    /// Folds events (of one deployment, in any order) into its state; `None` for no events.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Option<Self> {
        let mut it = events.into_iter();
        let first = it.next()?;
        let mut d = Self::new(&first.deployment);
        d.apply(first);
        for e in it {
            d.apply(e);
        }
        Some(d)
    }

    /// Time from start to finish, when finished (`None` if the clock went backwards).
    pub fn duration(&self) -> Option<std::time::Duration> {
        duration(self.started_at, self.finished_at?)
    }

    /// Applies one event. Order-tolerant: a step finish before its start still records the
    /// step, and the **first** terminal event wins (a later one is ignored), exactly as the
    /// history store does.
    pub fn apply(&mut self, event: &Event) {
        match &event.kind {
            EventKind::Started {
                commit,
                commit_time,
                actor,
                trigger,
            } => {
                self.commit.clone_from(commit);
                self.commit_time = *commit_time;
                self.actor.clone_from(actor);
                self.trigger.clone_from(trigger);
            }
            EventKind::StepStarted { step } => {
                if !self.steps.iter().any(|s| s.index == step.index) {
                    self.steps.push(Step {
                        index: step.index,
                        name: step.name.clone(),
                        started_at: event.at,
                        finished_at: None,
                        status: StepStatus::Running,
                        output_tail: None,
                        error: None,
                    });
                }
            }
            EventKind::StepFinished {
                step,
                started_at,
                status,
                output_tail,
                error,
            } => {
                let finished = Step {
                    index: step.index,
                    name: step.name.clone(),
                    started_at: *started_at,
                    finished_at: Some(event.at),
                    status: *status,
                    output_tail: output_tail.clone(),
                    error: error.clone(),
                };
                match self.steps.iter_mut().find(|s| s.index == step.index) {
                    Some(s) => *s = finished,
                    None => self.steps.push(finished),
                }
            }
            kind => {
                if self.status.is_terminal() {
                    return;
                }
                if let Some(status) = kind.terminal_status() {
                    self.status = status;
                    self.finished_at = Some(event.at);
                }
                match kind {
                    EventKind::Failed { reason } => self.error = Some(reason.clone()),
                    EventKind::RolledBack { to_version, reason } => {
                        self.rolled_back_to = Some(to_version.clone());
                        self.error.clone_from(reason);
                    }
                    EventKind::Cancelled { reason } => self.error.clone_from(reason),
                    _ => {}
                }
            }
        }
        self.steps.sort_by_key(|s| s.index);
    }
}
