//! Deploy events and their versioned JSON form.
//!
//! A deployment is a stream of [`Event`]s: [`Started`](EventKind::Started), then any number
//! of [`StepStarted`](EventKind::StepStarted) / [`StepFinished`](EventKind::StepFinished),
//! then exactly one terminal event ([`Succeeded`](EventKind::Succeeded),
//! [`Failed`](EventKind::Failed), [`RolledBack`](EventKind::RolledBack) or
//! [`Cancelled`](EventKind::Cancelled)). Every event carries a [`DeploymentRef`] (id,
//! project, environment, version, start time), so a consumer needs no earlier event to label
//! or time it.
//!
//! # JSON, schema 1
//!
//! Other tools (CI scripts, the `axi-deploy` CLI, another language) may produce events.
//! Timestamps are RFC 3339; optional fields may be omitted; unknown fields are ignored.
//!
//! ```
//! use axi_obs_deploy::event::{Event, EventKind};
//!
//! let json = r#"{
//!   "schema": 1,
//!   "id": "9f1c2a7e0d3b4c5a8e6f7a1b2c3d4e5f",
//!   "deployment": {
//!     "id": "d-42", "project": "shop-api", "environment": "prod",
//!     "version": "1.4.2", "started_at": "2026-05-01T10:00:00Z"
//!   },
//!   "seq": 0,
//!   "at": "2026-05-01T10:00:00Z",
//!   "type": "started",
//!   "commit": "3f2a9c1",
//!   "actor": "ci"
//! }"#;
//! let event = Event::from_json(json)?;
//! assert!(matches!(event.kind, EventKind::Started { .. }));
//! assert_eq!(event.deployment.project, "shop-api");
//! // Round trip.
//! assert_eq!(Event::from_json(&event.to_json())?, event);
//! # Ok::<(), axi_obs_deploy::event::EventError>(())
//! ```
//!
//! | `type` | fields besides the common ones |
//! |---|---|
//! | `started` | `commit`, `commit_time`, `actor`, `trigger` (all optional) |
//! | `step_started` | `step` (`{"index": 0, "name": "build"}`) |
//! | `step_finished` | `step`, `started_at`, `status` (`succeeded` / `failed`), `output_tail`, `error` (optional) |
//! | `succeeded` | |
//! | `failed` | `reason` |
//! | `rolled_back` | `to_version`, `reason` (optional) |
//! | `cancelled` | `reason` (optional) |

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The JSON schema version this crate writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Longest accepted project, environment, version, actor, trigger, commit or step name, in
/// bytes.
pub const MAX_NAME_LEN: usize = 256;

/// Longest kept output tail or reason, in bytes (longer text keeps its end).
pub const MAX_TEXT_LEN: usize = 16 * 1024;

/// One thing that happened to a deployment. See the [module documentation](self).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Schema version of this JSON form; [`SCHEMA_VERSION`].
    pub schema: u32,
    /// Unique id of this event: delivery and storage are idempotent by it.
    pub id: String,
    /// The deployment this event belongs to.
    pub deployment: DeploymentRef,
    /// Position of the event within its deployment, from 0.
    pub seq: u32,
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What every event says about its deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentRef {
    /// Unique id of the deployment.
    pub id: String,
    /// Project (service, site) deployed, e.g. `shop-api`.
    pub project: String,
    /// Target environment, e.g. `prod`.
    pub environment: String,
    /// Version deployed, e.g. `1.4.2`.
    pub version: String,
    /// When the deployment started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
}

/// A step of a deployment: its position (from 0) and name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRef {
    /// Position of the step within the deployment, from 0.
    pub index: u32,
    /// Name, e.g. `migrate`.
    pub name: String,
}

/// The outcome of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Started, not finished.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished with an error (or abandoned).
    Failed,
}

impl StepStatus {
    /// The lower-case name used in JSON, SQL and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s output.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// What happened. Serialized flat into the [`Event`] object, tagged by `"type"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The deployment started.
    Started {
        /// Commit deployed (a SHA).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        commit: Option<String>,
        /// When that commit was made, for the DORA lead time.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "time::serde::rfc3339::option"
        )]
        commit_time: Option<OffsetDateTime>,
        /// Who or what started it (a user, `ci`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        actor: Option<String>,
        /// Why: `push`, `manual`, `schedule`, a pipeline name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trigger: Option<String>,
    },
    /// A step started.
    StepStarted {
        /// Which step.
        step: StepRef,
    },
    /// A step finished.
    StepFinished {
        /// Which step.
        step: StepRef,
        /// When the step started.
        #[serde(with = "time::serde::rfc3339")]
        started_at: OffsetDateTime,
        /// How it ended ([`StepStatus::Succeeded`] or [`StepStatus::Failed`]).
        status: StepStatus,
        /// The last lines of its output.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output_tail: Option<String>,
        /// Why it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The deployment succeeded.
    Succeeded,
    /// The deployment failed.
    Failed {
        /// Why (`abandoned` for a handle dropped unfinished).
        reason: String,
    },
    /// The deployment was rolled back.
    RolledBack {
        /// The version now running.
        to_version: String,
        /// Why.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The deployment was cancelled before it finished.
    Cancelled {
        /// Why.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

impl EventKind {
    /// The `"type"` tag, e.g. `step_finished`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Started { .. } => "started",
            Self::StepStarted { .. } => "step_started",
            Self::StepFinished { .. } => "step_finished",
            Self::Succeeded => "succeeded",
            Self::Failed { .. } => "failed",
            Self::RolledBack { .. } => "rolled_back",
            Self::Cancelled { .. } => "cancelled",
        }
    }

    /// The deployment status this event ends in, for terminal events.
    pub fn terminal_status(&self) -> Option<crate::Status> {
        use crate::Status;
        match self {
            Self::Succeeded => Some(Status::Succeeded),
            Self::Failed { .. } => Some(Status::Failed),
            Self::RolledBack { .. } => Some(Status::RolledBack),
            Self::Cancelled { .. } => Some(Status::Cancelled),
            _ => None,
        }
    }
}

/// Why an event could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// Not JSON, or not an event object (serde's message, with the line and column when read
    /// from text).
    #[error("invalid deploy event JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A field of the wrong type, or a value it cannot hold (a negative `seq`, a time that is
    /// not RFC 3339), or a required field missing from an object.
    #[error("invalid deploy event field `{path}`: {source}")]
    At {
        /// Dotted path of the field (`deployment.started_at`, `kind.steps[0]`), or of the
        /// object missing a field.
        path: String,
        /// serde's message.
        source: serde_json::Error,
    },
    /// A schema version this crate does not read.
    #[error("unsupported deploy event schema {found} (this build reads schema {SCHEMA_VERSION})")]
    Schema {
        /// The `schema` field found.
        found: u32,
    },
    /// A field is empty or too long.
    #[error("invalid deploy event field `{field}`: {problem}")]
    Field {
        /// Dotted path of the field, e.g. `deployment.project`.
        field: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// An event from `de`, an error naming the path of the field at fault.
fn deserialize<'de, D>(de: D) -> Result<Event, EventError>
where
    D: serde::Deserializer<'de, Error = serde_json::Error>,
{
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let source = e.into_inner();
        if path.is_empty() || path == "." {
            EventError::Json(source)
        } else {
            EventError::At { path, source }
        }
    })
}

#[derive(Deserialize)]
struct SchemaProbe {
    schema: u32,
}

impl Event {
    /// A new event of schema [`SCHEMA_VERSION`] with a fresh random id ([`new_id`]).
    pub fn new(deployment: DeploymentRef, seq: u32, at: OffsetDateTime, kind: EventKind) -> Self {
        Self {
            schema: SCHEMA_VERSION,
            id: new_id(),
            deployment,
            seq,
            at,
            kind,
        }
    }

    /// Reads an event from its JSON form, checking the schema version and field sizes.
    ///
    /// # Errors
    ///
    /// [`EventError`] naming the field (or line and column) at fault.
    pub fn from_json(json: &str) -> Result<Self, EventError> {
        let probe: SchemaProbe = serde_json::from_str(json)?;
        if probe.schema != SCHEMA_VERSION {
            return Err(EventError::Schema {
                found: probe.schema,
            });
        }
        let mut de = serde_json::Deserializer::from_str(json);
        let event = deserialize(&mut de)?;
        de.end()?;
        event.validate()?;
        Ok(event)
    }

    /// Reads an event from an already parsed JSON value, with the checks of
    /// [`from_json`](Self::from_json).
    ///
    /// # Errors
    ///
    /// [`EventError`] naming the field at fault.
    pub fn from_value(value: serde_json::Value) -> Result<Self, EventError> {
        let found = value.get("schema").map(|s| s.as_u64());
        match found {
            None => {
                return Err(EventError::Field {
                    field: "schema",
                    problem: "missing",
                });
            }
            Some(Some(n)) if n == u64::from(SCHEMA_VERSION) => {}
            Some(Some(n)) => {
                return Err(EventError::Schema {
                    found: u32::try_from(n).unwrap_or(u32::MAX),
                });
            }
            Some(None) => {
                return Err(EventError::Field {
                    field: "schema",
                    problem: "not a number",
                });
            }
        }
        let event = deserialize(value)?;
        event.validate()?;
        Ok(event)
    }

    /// The JSON form (one line).
    pub fn to_json(&self) -> String {
        // Serializing plain strings, numbers and formatted timestamps cannot fail; the
        // fallback keeps that promise without a panic path.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Checks what serde cannot: non-empty names within [`MAX_NAME_LEN`], texts within
    /// [`MAX_TEXT_LEN`].
    ///
    /// # Errors
    ///
    /// [`EventError::Field`] naming the first field at fault.
    pub fn validate(&self) -> Result<(), EventError> {
        fn name(field: &'static str, v: &str) -> Result<(), EventError> {
            if v.is_empty() {
                return Err(EventError::Field {
                    field,
                    problem: "must not be empty",
                });
            }
            opt_name(field, Some(v))
        }
        fn opt_name(field: &'static str, v: Option<&str>) -> Result<(), EventError> {
            match v {
                Some(v) if v.len() > MAX_NAME_LEN => Err(EventError::Field {
                    field,
                    problem: "longer than 256 bytes",
                }),
                _ => Ok(()),
            }
        }
        fn text(field: &'static str, v: Option<&str>) -> Result<(), EventError> {
            match v {
                Some(v) if v.len() > MAX_TEXT_LEN => Err(EventError::Field {
                    field,
                    problem: "longer than 16 KiB",
                }),
                _ => Ok(()),
            }
        }
        fn when(field: &'static str, t: OffsetDateTime) -> Result<(), EventError> {
            if in_range(t) {
                Ok(())
            } else {
                Err(EventError::Field {
                    field,
                    problem: "outside the years 0001 to 9999 (UTC)",
                })
            }
        }
        when("at", self.at)?;
        when("deployment.started_at", self.deployment.started_at)?;
        name("id", &self.id)?;
        name("deployment.id", &self.deployment.id)?;
        name("deployment.project", &self.deployment.project)?;
        name("deployment.environment", &self.deployment.environment)?;
        name("deployment.version", &self.deployment.version)?;
        match &self.kind {
            EventKind::Started {
                commit,
                commit_time,
                actor,
                trigger,
                ..
            } => {
                if let Some(t) = commit_time {
                    when("commit_time", *t)?;
                }
                opt_name("commit", commit.as_deref())?;
                opt_name("actor", actor.as_deref())?;
                opt_name("trigger", trigger.as_deref())?;
            }
            EventKind::StepStarted { step } => name("step.name", &step.name)?,
            EventKind::StepFinished {
                step,
                started_at,
                status,
                output_tail,
                error,
                ..
            } => {
                when("started_at", *started_at)?;
                name("step.name", &step.name)?;
                if *status == StepStatus::Running {
                    return Err(EventError::Field {
                        field: "status",
                        problem: "a finished step is `succeeded` or `failed`",
                    });
                }
                text("output_tail", output_tail.as_deref())?;
                text("error", error.as_deref())?;
            }
            EventKind::Succeeded => {}
            EventKind::Failed { reason } => text("reason", Some(reason))?,
            EventKind::RolledBack { to_version, reason } => {
                name("to_version", to_version)?;
                text("reason", reason.as_deref())?;
            }
            EventKind::Cancelled { reason } => text("reason", reason.as_deref())?,
        }
        Ok(())
    }
}

/// A name within [`MAX_NAME_LEN`] (its first bytes), and not empty (`unknown`).
fn fit_name(s: String) -> String {
    if s.is_empty() {
        "unknown".to_owned()
    } else if s.len() > MAX_NAME_LEN {
        head(&s, MAX_NAME_LEN).to_owned()
    } else {
        s
    }
}

/// An optional name within [`MAX_NAME_LEN`] (its first bytes).
fn fit_opt_name(s: Option<String>) -> Option<String> {
    s.map(|s| match s.len() > MAX_NAME_LEN {
        true => head(&s, MAX_NAME_LEN).to_owned(),
        false => s,
    })
}

/// A text within [`MAX_TEXT_LEN`]: its first bytes, or its last for an output tail.
fn fit_text(s: String, keep_end: bool) -> String {
    match (s.len() > MAX_TEXT_LEN, keep_end) {
        (false, _) => s,
        (true, false) => head(&s, MAX_TEXT_LEN).to_owned(),
        (true, true) => tail_text(&s).to_owned(),
    }
}

impl DeploymentRef {
    /// This reference within what [`Event::validate`] accepts: names cut to
    /// [`MAX_NAME_LEN`] bytes, an empty one `unknown`. What code that builds events itself
    /// (the [`Tracker`](crate::Tracker)) applies, so no event it sends can later fail the
    /// history's reads.
    #[must_use]
    pub fn fitted(self) -> Self {
        Self {
            id: fit_name(self.id),
            project: fit_name(self.project),
            environment: fit_name(self.environment),
            version: fit_name(self.version),
            started_at: self.started_at,
        }
    }
}

impl EventKind {
    /// This kind within what [`Event::validate`] accepts: names cut to [`MAX_NAME_LEN`]
    /// bytes (an empty required one `unknown`), texts to [`MAX_TEXT_LEN`] (an output tail
    /// keeps its end, a reason or an error its start).
    #[must_use]
    pub fn fitted(self) -> Self {
        let step = |s: StepRef| StepRef {
            index: s.index,
            name: fit_name(s.name),
        };
        match self {
            EventKind::Started {
                commit,
                commit_time,
                actor,
                trigger,
            } => EventKind::Started {
                commit: fit_opt_name(commit),
                commit_time,
                actor: fit_opt_name(actor),
                trigger: fit_opt_name(trigger),
            },
            EventKind::StepStarted { step: s } => EventKind::StepStarted { step: step(s) },
            EventKind::StepFinished {
                step: s,
                started_at,
                status,
                output_tail,
                error,
            } => EventKind::StepFinished {
                step: step(s),
                started_at,
                status,
                output_tail: output_tail.map(|t| fit_text(t, true)),
                error: error.map(|t| fit_text(t, false)),
            },
            EventKind::Succeeded => EventKind::Succeeded,
            EventKind::Failed { reason } => EventKind::Failed {
                reason: fit_text(reason, false),
            },
            EventKind::RolledBack { to_version, reason } => EventKind::RolledBack {
                to_version: fit_name(to_version),
                reason: reason.map(|r| fit_text(r, false)),
            },
            EventKind::Cancelled { reason } => EventKind::Cancelled {
                reason: reason.map(|r| fit_text(r, false)),
            },
        }
    }
}

/// The first `max` bytes of `s`, cut at a character boundary.
pub fn head(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Keeps the last [`MAX_TEXT_LEN`] bytes of `s`, cut at a character boundary.
pub fn tail_text(s: &str) -> &str {
    if s.len() <= MAX_TEXT_LEN {
        return s;
    }
    let mut start = s.len() - MAX_TEXT_LEN;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// A new random id: 32 lower-case hex digits (128 bits from the operating system's source).
pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness (practically never): fall back to std's randomly keyed hasher
        // mixed with time, process id and a counter, still unique in practice.
        use std::hash::{BuildHasher, Hasher};
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
        for (i, chunk) in bytes.chunks_mut(8).enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(n);
            h.write_i128(nanos);
            h.write_u32(std::process::id());
            h.write_usize(i);
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    let mut s = String::with_capacity(32);
    for b in bytes {
        use std::fmt::Write;
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// `t` in whole milliseconds since the Unix epoch.
pub fn unix_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// `days` days before `t`, if that is a time the history can hold ([`in_range`]).
pub fn days_before(t: OffsetDateTime, days: u32) -> Option<OffsetDateTime> {
    t.checked_sub(time::Duration::days(i64::from(days)))
        .filter(|t| in_range(*t))
}

/// Whether `t` is a time the history stores and writes back (RFC 3339 has four-digit years):
/// in the years 0001 to 9999, UTC.
pub fn in_range(t: OffsetDateTime) -> bool {
    t.checked_to_offset(time::UtcOffset::UTC)
        .is_some_and(|u| (1..=9999).contains(&u.year()))
}

/// The instant `ms` milliseconds after the Unix epoch (clamped to the supported range).
pub fn from_unix_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started() -> Event {
        Event {
            schema: SCHEMA_VERSION,
            id: "e1".into(),
            deployment: DeploymentRef {
                id: "d1".into(),
                project: "p".into(),
                environment: "prod".into(),
                version: "1".into(),
                started_at: from_unix_ms(1_000),
            },
            seq: 0,
            at: from_unix_ms(1_000),
            kind: EventKind::Started {
                commit: None,
                commit_time: Some(from_unix_ms(500)),
                actor: None,
                trigger: None,
            },
        }
    }

    #[test]
    fn errors_name_the_field_at_fault() {
        let good: serde_json::Value = serde_json::from_str(&started().to_json()).unwrap();
        for (path, value, named) in [
            (&["seq"][..], serde_json::json!(-1), "`seq`"),
            (
                &["deployment", "started_at"][..],
                serde_json::json!("yesterday"),
                "`deployment.started_at`",
            ),
            (
                &["deployment", "project"][..],
                serde_json::json!(7),
                "`deployment.project`",
            ),
        ] {
            let mut v = good.clone();
            let (last, parents) = path.split_last().unwrap();
            let mut at = &mut v;
            for p in parents {
                at = &mut at[*p];
            }
            at[*last] = value;
            let from_value = Event::from_value(v.clone()).unwrap_err().to_string();
            assert!(from_value.contains(named), "{from_value}");
            let from_json = Event::from_json(&v.to_string()).unwrap_err().to_string();
            assert!(from_json.contains(named), "{from_json}");
        }
        // A missing field: the object it is missing from, and its name.
        let mut v = good.clone();
        v["deployment"].as_object_mut().unwrap().remove("project");
        let e = Event::from_value(v).unwrap_err().to_string();
        assert!(e.contains("`deployment`") && e.contains("project"), "{e}");
        // Not JSON: line and column.
        let e = Event::from_json("{\"schema\": 1,").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn json_is_flat_and_tagged() {
        let v: serde_json::Value = serde_json::from_str(&started().to_json()).unwrap();
        assert_eq!(v["type"], "started");
        assert_eq!(v["schema"], 1);
        assert_eq!(v["commit_time"], "1970-01-01T00:00:00.5Z");
        assert!(v.get("commit").is_none());
    }

    #[test]
    fn other_schema_is_refused() {
        let json = started().to_json().replace("\"schema\":1", "\"schema\":2");
        let err = Event::from_json(&json).unwrap_err();
        assert!(matches!(err, EventError::Schema { found: 2 }), "{err}");
    }

    #[test]
    fn empty_project_names_the_field() {
        let json = started()
            .to_json()
            .replace("\"project\":\"p\"", "\"project\":\"\"");
        let err = Event::from_json(&json).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid deploy event field `deployment.project`: must not be empty"
        );
    }

    #[test]
    fn unknown_type_is_an_error_with_position() {
        let json = started()
            .to_json()
            .replace("\"type\":\"started\"", "\"type\":\"exploded\"");
        let err = Event::from_json(&json).unwrap_err().to_string();
        assert!(err.contains("exploded"), "{err}");
    }

    #[test]
    fn tail_text_keeps_the_end_on_a_char_boundary() {
        let s = format!("é{}", "x".repeat(MAX_TEXT_LEN - 1));
        let t = tail_text(&s);
        assert!(t.len() <= MAX_TEXT_LEN);
        assert!(t.ends_with('x'));
        assert_eq!(tail_text("short"), "short");
    }

    #[test]
    fn ids_are_unique_hex() {
        let a = new_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, new_id());
    }
}
