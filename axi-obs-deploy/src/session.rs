//! Building the events of one deployment step by step, with state that can be saved between
//! processes (what the `axi-deploy` CLI's `start` / `step` / `finish` and `run` use), and the
//! step marker lines `run` recognises.
//!
//! A session has at most one open step: opening a step finishes the open one as succeeded.
//!
//! ```
//! use axi_obs_deploy::session::{Session, parse_marker};
//! use axi_obs_deploy::event::from_unix_ms;
//! use axi_obs_deploy::{DeploySpec, EventKind};
//!
//! let (mut s, started) = Session::start(DeploySpec::new("shop", "prod", "1"), from_unix_ms(0));
//! let mut events = vec![started];
//! events.extend(s.begin_step("build", None, from_unix_ms(1_000)));
//! events.extend(s.begin_step("migrate", Some("ok\n".into()), from_unix_ms(2_000)));
//! events.extend(s.finish(EventKind::Succeeded, None, from_unix_ms(3_000)));
//! let kinds: Vec<_> = events.iter().map(|e| e.kind.type_name()).collect();
//! assert_eq!(kinds, ["started", "step_started", "step_finished", "step_started",
//!                    "step_finished", "succeeded"]);
//! assert_eq!(parse_marker("##[step] deploy assets"), Some("deploy assets"));
//! ```

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::event::{DeploymentRef, Event, EventKind, StepRef, StepStatus, new_id, tail_text};
use crate::tracker::DeploySpec;

/// The marker that starts a step when a line of a wrapped command's output begins with it
/// (after optional whitespace): `##[step] NAME`.
pub const STEP_MARKER: &str = "##[step]";

/// The path of the intake route the `axi-deploy` CLI posts to (what
/// [`DeployRoutes`](crate#parts) serves).
pub const INTAKE_PATH: &str = "/api/deploy/events";

/// The URL events are posted to for an `--endpoint`: a base URL with no path
/// (`http://127.0.0.1:8080` or `http://127.0.0.1:8080/`) gets [`INTAKE_PATH`]; any other URL is
/// used as given.
///
/// ```
/// use axi_obs_deploy::session::intake_url;
///
/// assert_eq!(intake_url("http://127.0.0.1:8080"), "http://127.0.0.1:8080/api/deploy/events");
/// assert_eq!(intake_url("http://h:1/"), "http://h:1/api/deploy/events");
/// assert_eq!(intake_url("http://h:1/hooks/deploys"), "http://h:1/hooks/deploys");
/// ```
pub fn intake_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim();
    let after_scheme = trimmed.find("://").map_or(0, |i| i + 3);
    match trimmed[after_scheme..].find(['/', '?', '#']) {
        None => format!("{trimmed}{INTAKE_PATH}"),
        Some(i) if &trimmed[after_scheme + i..] == "/" => {
            format!("{}{INTAKE_PATH}", &trimmed[..after_scheme + i])
        }
        Some(_) => trimmed.to_owned(),
    }
}

/// The step name in a marker line, if `line` is one (`##[step] NAME`, name trimmed and
/// non-empty).
pub fn parse_marker(line: &str) -> Option<&str> {
    let name = line.trim_start().strip_prefix(STEP_MARKER)?.trim();
    (!name.is_empty()).then_some(name)
}

/// The state of a deployment being recorded. Serializable, so it can live in a file between
/// CLI invocations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The deployment.
    pub deployment: DeploymentRef,
    /// Sequence number of the next event.
    pub next_seq: u32,
    /// Index of the next step.
    pub next_step: u32,
    /// The open step and when it started.
    pub open_step: Option<OpenStep>,
}

/// A step that has started and not finished.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenStep {
    /// Which step.
    pub step: StepRef,
    /// When it started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
}

impl Session {
    /// Starts a deployment at `at`; returns the session and the `started` event.
    pub fn start(spec: DeploySpec, at: OffsetDateTime) -> (Self, Event) {
        let parts = spec;
        let mut s = Self {
            deployment: DeploymentRef {
                id: parts.id.unwrap_or_else(new_id),
                project: parts.project,
                environment: parts.environment,
                version: parts.version,
                started_at: at,
            },
            next_seq: 0,
            next_step: 0,
            open_step: None,
        };
        let e = s.event(
            at,
            EventKind::Started {
                commit: parts.commit,
                commit_time: parts.commit_time,
                actor: parts.actor,
                trigger: parts.trigger,
            },
        );
        (s, e)
    }

    fn event(&mut self, at: OffsetDateTime, kind: EventKind) -> Event {
        let e = Event::new(self.deployment.clone(), self.next_seq, at, kind);
        self.next_seq += 1;
        e
    }

    /// Opens step `name`, first finishing the open step (if any) as succeeded with
    /// `previous_tail` as its output tail.
    pub fn begin_step(
        &mut self,
        name: &str,
        previous_tail: Option<String>,
        at: OffsetDateTime,
    ) -> Vec<Event> {
        let mut out: Vec<Event> = self
            .end_step(StepStatus::Succeeded, None, previous_tail, at)
            .into_iter()
            .collect();
        // Cut to what an event may hold, so every event a session makes is valid (a long
        // `##[step]` line would otherwise be refused by the server, and the run's later events
        // with it).
        let step = StepRef {
            index: self.next_step,
            name: crate::event::head(name, crate::event::MAX_NAME_LEN).to_owned(),
        };
        self.next_step += 1;
        self.open_step = Some(OpenStep {
            step: step.clone(),
            started_at: at,
        });
        out.push(self.event(at, EventKind::StepStarted { step }));
        out
    }

    /// Finishes the open step, if any.
    pub fn end_step(
        &mut self,
        status: StepStatus,
        error: Option<String>,
        tail: Option<String>,
        at: OffsetDateTime,
    ) -> Option<Event> {
        let open = self.open_step.take()?;
        Some(self.event(
            at,
            EventKind::StepFinished {
                step: open.step,
                started_at: open.started_at,
                status,
                output_tail: tail.map(|t| tail_text(&t).to_owned()),
                error: error.map(|e| tail_text(&e).to_owned()),
            },
        ))
    }

    /// Finishes the deployment with `kind` (a terminal kind), first finishing the open step:
    /// succeeded if `kind` is [`EventKind::Succeeded`], else failed with the same reason.
    pub fn finish(
        &mut self,
        kind: EventKind,
        open_step_tail: Option<String>,
        at: OffsetDateTime,
    ) -> Vec<Event> {
        let kind = kind.fitted();
        let (status, error) = match &kind {
            EventKind::Succeeded => (StepStatus::Succeeded, None),
            EventKind::Failed { reason } => (StepStatus::Failed, Some(reason.clone())),
            EventKind::RolledBack { reason, .. } | EventKind::Cancelled { reason } => (
                StepStatus::Failed,
                Some(
                    reason
                        .clone()
                        .unwrap_or_else(|| kind.type_name().to_owned()),
                ),
            ),
            _ => (StepStatus::Failed, None),
        };
        let mut out: Vec<Event> = self
            .end_step(status, error, open_step_tail, at)
            .into_iter()
            .collect();
        out.push(self.event(at, kind));
        out
    }
}

/// The last `max_lines` lines of output (each cut to its last 1 KiB).
#[derive(Clone, Debug)]
pub struct OutputTail {
    lines: VecDeque<String>,
    max_lines: usize,
}

impl OutputTail {
    /// Longest kept line, in bytes.
    pub const MAX_LINE: usize = 1024;

    /// An empty tail keeping `max_lines` lines.
    pub fn new(max_lines: usize) -> Self {
        Self {
            lines: VecDeque::with_capacity(max_lines.min(256)),
            max_lines,
        }
    }

    /// Adds a line (without its newline).
    pub fn push(&mut self, line: &str) {
        if self.max_lines == 0 {
            return;
        }
        if self.lines.len() == self.max_lines {
            self.lines.pop_front();
        }
        let mut start = line.len().saturating_sub(Self::MAX_LINE);
        while !line.is_char_boundary(start) {
            start += 1;
        }
        self.lines.push_back(line[start..].to_owned());
    }

    /// Whether no line was kept.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The kept lines, each followed by a newline, and empties the tail; `None` if empty.
    pub fn take(&mut self) -> Option<String> {
        if self.lines.is_empty() {
            return None;
        }
        let mut s = String::new();
        for l in self.lines.drain(..) {
            s.push_str(&l);
            s.push('\n');
        }
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers() {
        assert_eq!(parse_marker("  ##[step]   build  "), Some("build"));
        assert_eq!(parse_marker("##[step]"), None);
        assert_eq!(parse_marker("echo ##[step] x"), None);
        assert_eq!(parse_marker("##[group] x"), None);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let mut t = OutputTail::new(2);
        for l in ["a", "b", "c"] {
            t.push(l);
        }
        assert_eq!(t.take().as_deref(), Some("b\nc\n"));
        assert!(t.take().is_none());
    }

    #[test]
    fn session_round_trips_through_json_and_finishes_the_open_step() {
        let (mut s, _) = Session::start(
            DeploySpec::new("p", "e", "1"),
            crate::event::from_unix_ms(0),
        );
        let _ = s.begin_step("a", None, crate::event::from_unix_ms(1));
        let s2: Session = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(s2, s);
        let events = s.finish(
            EventKind::Failed { reason: "x".into() },
            None,
            crate::event::from_unix_ms(2),
        );
        match &events[0].kind {
            EventKind::StepFinished { status, error, .. } => {
                assert_eq!(*status, StepStatus::Failed);
                assert_eq!(error.as_deref(), Some("x"));
            }
            k => panic!("{k:?}"),
        }
        assert_eq!(
            events[1].seq, 3,
            "started, step started, step finished, failed"
        );
    }

    /// Whatever a command prints as a step name or a reason, the events are valid.
    #[test]
    fn long_step_names_and_reasons_are_cut_to_valid_events() {
        let (mut s, started) = Session::start(
            DeploySpec::new("p", "e", "1"),
            crate::event::from_unix_ms(0),
        );
        let mut events = vec![started];
        events.extend(s.begin_step(&"é".repeat(300), None, crate::event::from_unix_ms(1)));
        events.extend(s.finish(
            EventKind::Failed {
                reason: "x".repeat(20_000),
            },
            None,
            crate::event::from_unix_ms(2),
        ));
        for e in &events {
            e.validate().unwrap_or_else(|err| panic!("{err}: {e:?}"));
        }
        match &events[1].kind {
            EventKind::StepStarted { step } => {
                assert_eq!(step.name.len(), 256);
                assert!(step.name.chars().all(|c| c == 'é'));
            }
            k => panic!("{k:?}"),
        }
    }
}
