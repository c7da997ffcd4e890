//! Deploy history in SQLite (feature `sqlite`).
//!
//! One file, opened in WAL mode with `synchronous=NORMAL`: a committed insert survives the
//! process being killed (`kill -9`); a power loss may roll back the last few commits. The
//! schema is created and upgraded by numbered migrations recorded in `schema_migrations`;
//! a file written by a newer build is refused rather than damaged. Events are stored
//! idempotently by event id, and each one also updates the folded `deployments` and `steps`
//! rows (order-tolerant, first terminal event wins, as [`Deployment::apply`]).
//!
//! ```
//! use axi_obs_deploy::store::{Filter, History};
//! use axi_obs_deploy::{Event, EventKind, Status};
//! use axi_obs_deploy::event::{DeploymentRef, from_unix_ms};
//!
//! let dir = tempfile::tempdir()?;
//! let mut history = History::open(dir.path().join("deploys.db"))?;
//! let dref = DeploymentRef {
//!     id: "d1".into(), project: "shop".into(), environment: "prod".into(),
//!     version: "2.0.0".into(), started_at: from_unix_ms(0),
//! };
//! let started = Event::new(dref.clone(), 0, from_unix_ms(0), EventKind::Started {
//!     commit: None, commit_time: None, actor: None, trigger: None,
//! });
//! assert!(history.insert(&started)?);
//! assert!(!history.insert(&started)?, "the same event id is stored once");
//! history.insert(&Event::new(dref, 1, from_unix_ms(60_000), EventKind::Succeeded))?;
//!
//! let last = history.last_deployment("shop", Some("prod"))?.expect("one deployment");
//! assert_eq!(last.status, Status::Succeeded);
//! assert_eq!(history.list(&Filter::default().project("shop"))?.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod stats;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use time::OffsetDateTime;

use crate::event::{Event, EventKind, StepStatus, from_unix_ms, unix_ms};
use crate::hook::{Hook, HookError};
use crate::model::{Deployment, Status, Step};

pub use stats::{Dora, Stats, percentile};

/// The migrations, in order; migration `n` (from 1) is `MIGRATIONS[n - 1]`.
const MIGRATIONS: &[&str] = &[
    // 1: events, folded deployments and steps.
    "CREATE TABLE events (
        id TEXT PRIMARY KEY,
        deploy_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        type TEXT NOT NULL,
        json TEXT NOT NULL
    );
    CREATE INDEX events_by_deploy ON events (deploy_id, seq);
    CREATE TABLE deployments (
        id TEXT PRIMARY KEY,
        project TEXT NOT NULL,
        environment TEXT NOT NULL,
        version TEXT NOT NULL,
        commit_sha TEXT,
        commit_time_ms INTEGER,
        actor TEXT,
        trigger_name TEXT,
        started_ms INTEGER NOT NULL,
        finished_ms INTEGER,
        status TEXT NOT NULL,
        error TEXT,
        rolled_back_to TEXT
    );
    CREATE INDEX deployments_by_target ON deployments (project, environment, started_ms);
    CREATE TABLE steps (
        deploy_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        name TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        finished_ms INTEGER,
        status TEXT NOT NULL,
        output_tail TEXT,
        error TEXT,
        PRIMARY KEY (deploy_id, idx)
    );",
    // 2: history queries over every project (the annotations Grafana asks for) and pruning
    // by time use an index instead of reading the whole table.
    "CREATE INDEX deployments_by_start ON deployments (started_ms);",
];

/// The most steps a deployment keeps (indices `0..MAX_STEPS`): a script printing step markers
/// in a loop would otherwise make every read of the deployment (and `/history`) unbounded. The
/// events of later steps are stored all the same ([`History::events`]).
pub const MAX_STEPS: u32 = 1_000;

/// The longest a deployment is taken to run when matching annotation ranges, and drawn as
/// running (a day): one never finished (its runner killed) does not run "until now".
pub(crate) const MAX_REGION_MS: i64 = 24 * 3_600_000;

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// What went wrong with the history file; every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An SQLite operation failed.
    #[error("deploy history {}: {op}", path.display())]
    Sql {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The file was written by a newer build.
    #[error(
        "deploy history {}: schema version {found} is newer than this build's {SCHEMA_VERSION}; upgrade axi-obs-deploy",
        path.display()
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// An event names a deployment id already stored for another project, environment or
    /// version (a deployment id reused, such as a CI pipeline's id for two environments):
    /// refused, so that neither deployment is folded into the other. Nothing of the batch is
    /// stored then.
    #[error("deploy history {}: {mismatch}", path.display())]
    DeploymentMismatch {
        /// The database file.
        path: PathBuf,
        /// What differs.
        mismatch: Box<DeploymentMismatch>,
    },
    /// A stored value this build cannot read.
    #[error("deploy history {}: deployment {deploy_id}: {problem}", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// The deployment concerned.
        deploy_id: String,
        /// What is wrong.
        problem: String,
    },
}

/// An event whose deployment id is stored for another deployment: with other identifying
/// fields, or started by another `started` event (a retried CI job reusing the id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentMismatch {
    /// The event's id.
    pub event_id: String,
    /// The deployment id both use.
    pub deploy_id: String,
    /// `project`, `environment`, `version`, or [`START_EVENT`].
    pub field: &'static str,
    /// The stored deployment's value (for [`START_EVENT`]: the id of the event that started
    /// it).
    pub stored: String,
    /// The event's value (for [`START_EVENT`]: its own id).
    pub got: String,
}

/// [`DeploymentMismatch::field`] of a second `started` event for one deployment id.
pub const START_EVENT: &str = "start event";

impl std::fmt::Display for DeploymentMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            event_id,
            deploy_id,
            field,
            stored,
            got,
        } = self;
        if *field == START_EVENT {
            write!(
                f,
                "event {event_id} starts deployment {deploy_id} again, which event {stored} \
                 started: each run needs a deployment id of its own (a retried CI job too: \
                 include the attempt, $CI_JOB_ID or $GITHUB_RUN_ID-$GITHUB_RUN_ATTEMPT)"
            )
        } else {
            write!(
                f,
                "event {event_id} names deployment {deploy_id} with {field} {got:?}, but \
                 deployment {deploy_id} is stored with {field} {stored:?}: a deployment id must \
                 not be reused for another project, environment or version"
            )
        }
    }
}

impl std::error::Error for DeploymentMismatch {}

/// Which deployments [`History::list`] returns. Newest first by start time.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct Filter {
    project: Option<String>,
    environment: Option<String>,
    status: Option<Status>,
    since: Option<OffsetDateTime>,
    until: Option<OffsetDateTime>,
    /// Deployments running at some time in `[from, to)`, those in progress until `now`.
    overlapping: Option<(OffsetDateTime, OffsetDateTime, OffsetDateTime)>,
    limit: u32,
    /// Values each of which (or, with `tags_any`, one of which) the project, environment or
    /// status must equal.
    tags: Vec<String>,
    tags_any: bool,
    /// Whether each deployment comes with its steps.
    steps: bool,
    /// Whether the steps come with their output tails.
    step_output: bool,
}

impl Default for Filter {
    fn default() -> Self {
        Self {
            project: None,
            environment: None,
            status: None,
            since: None,
            until: None,
            overlapping: None,
            limit: 50,
            tags: Vec::new(),
            tags_any: false,
            steps: true,
            step_output: true,
        }
    }
}

impl Filter {
    /// Only this project. Defaults to all.
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.project = Some(project.into());
        self
    }

    /// Only this environment. Defaults to all.
    pub fn environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = Some(environment.into());
        self
    }

    /// Only this status. Defaults to all.
    pub fn status(mut self, status: Status) -> Self {
        self.status = Some(status);
        self
    }

    /// Only deployments started at or after `since`. Defaults to no bound.
    pub fn since(mut self, since: OffsetDateTime) -> Self {
        self.since = Some(since);
        self
    }

    /// Only deployments started before `until`. Defaults to no bound.
    pub fn until(mut self, until: OffsetDateTime) -> Self {
        self.until = Some(until);
        self
    }

    /// Only deployments running at some time in `[from, to)`: started before `to` and not
    /// finished before `from`, one still in progress running until `now`, as Grafana's
    /// annotation API matches a region to a dashboard's time range; those that started more
    /// than a day before `from` are left out (no deployment region is longer). Defaults to
    /// no bound.
    pub fn overlapping(
        mut self,
        from: OffsetDateTime,
        to: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Self {
        self.overlapping = Some((from, to, now));
        self
    }

    /// At most `limit` deployments. Defaults to 50.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }

    /// Only deployments whose project, environment or status equals every one of `tags`
    /// (with `any`, at least one of them): Grafana's annotation tags. Applied before the
    /// limit. Defaults to no tags.
    pub fn tags(mut self, tags: Vec<String>, any: bool) -> Self {
        self.tags = tags;
        self.tags_any = any;
        self
    }

    /// Deployments without their steps (`steps` left empty): one query instead of one more
    /// per deployment, and no step output read, for callers that show only the deployment
    /// (annotations, alert enrichment). Defaults to with steps.
    pub fn without_steps(mut self) -> Self {
        self.steps = false;
        self
    }

    /// Steps without their output tails (`output_tail` left `None`): a list of many
    /// deployments stays small (each step keeps up to 16 KiB of output). Defaults to with
    /// them.
    pub fn without_step_output(mut self) -> Self {
        self.step_output = false;
        self
    }
}

/// The deploy history file. See the [module documentation](self).
#[derive(Debug)]
pub struct History {
    conn: Connection,
    path: PathBuf,
}

impl History {
    /// Opens (creating if needed) the history at `path`: WAL mode, a 5 s busy timeout for
    /// concurrent writers, migrations applied.
    ///
    /// # Errors
    ///
    /// [`StoreError`] naming the file: cannot open, not a database, newer schema.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let conn = Connection::open(&path).map_err(sql(&path, "open"))?;
        let mut history = Self { conn, path };
        history.configure()?;
        history.migrate()?;
        Ok(history)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        sql(&self.path, op)
    }

    fn configure(&mut self) -> Result<(), StoreError> {
        self.conn
            .busy_timeout(Duration::from_secs(5))
            .map_err(sql(&self.path, "set busy timeout"))?;
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(sql(&self.path, "enable WAL"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Corrupt {
                path: self.path.clone(),
                deploy_id: String::new(),
                problem: format!("journal mode is `{mode}`, WAL could not be enabled"),
            });
        }
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql(&self.path, "set synchronous=NORMAL"))
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql(&path, "begin migration"))?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY,
                applied_ms INTEGER NOT NULL
            )",
        )
        .map_err(sql(&path, "create schema_migrations"))?;
        let current: u32 = tx
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )
            .map_err(sql(&path, "read schema version"))?;
        if current > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path,
                found: current,
            });
        }
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            tx.execute_batch(migration)
                .map_err(sql(&path, "apply migration"))?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_ms) VALUES (?1, ?2)",
                params![i as u32 + 1, unix_ms(OffsetDateTime::now_utc())],
            )
            .map_err(sql(&path, "record migration"))?;
        }
        tx.commit().map_err(sql(&path, "commit migration"))
    }

    /// The schema version of the open file.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sql`] if it cannot be read.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        self.conn
            .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
                r.get(0)
            })
            .map_err(self.err("read schema version"))
    }

    /// Stores `event` (and updates its deployment) in one transaction; `false` if an event
    /// with that id was already stored (nothing changes then).
    ///
    /// # Errors
    ///
    /// As [`insert_each`](Self::insert_each); nothing is stored then.
    pub fn insert(&mut self, event: &Event) -> Result<bool, StoreError> {
        Ok(self.insert_batch(std::slice::from_ref(event))? == 1)
    }

    /// Stores `events` in one transaction (much faster than one by one); returns how many
    /// were new.
    ///
    /// # Errors
    ///
    /// As [`insert_each`](Self::insert_each); nothing is stored then.
    pub fn insert_batch(&mut self, events: &[Event]) -> Result<usize, StoreError> {
        Ok(self.insert_each(events)?.into_iter().filter(|&n| n).count())
    }

    /// Stores `events` in one transaction, like [`insert_batch`](Self::insert_batch), and
    /// says for each one whether it was new (`false`: that id was already stored, or came
    /// earlier in `events`).
    ///
    /// # Errors
    ///
    /// [`StoreError::Sql`] naming the file; [`StoreError::DeploymentMismatch`] when an event
    /// names a deployment id stored (or first seen in `events`) with another project,
    /// environment or version. Nothing is stored then.
    pub fn insert_each(&mut self, events: &[Event]) -> Result<Vec<bool>, StoreError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql(&path, "begin insert"))?;
        let mut new = Vec::with_capacity(events.len());
        for event in events {
            new.push(apply(&tx, event).map_err(|e| match e {
                Applied::Sql(source) => StoreError::Sql {
                    path: path.clone(),
                    op: "insert event",
                    source,
                },
                Applied::Mismatch(mismatch) => StoreError::DeploymentMismatch {
                    path: path.clone(),
                    mismatch: Box::new(mismatch),
                },
            })?);
        }
        tx.commit().map_err(sql(&path, "commit insert"))?;
        Ok(new)
    }

    /// Deletes the deployments that ended before `before` (or, never ended, started before
    /// it: abandoned), with their events and steps, in one transaction; returns how many.
    /// The history keeps everything until asked: `axi-deploy prune --days N`, or a periodic
    /// call in the service that holds it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sql`] naming the file (nothing is deleted then).
    pub fn prune(&mut self, before: OffsetDateTime) -> Result<usize, StoreError> {
        let path = self.path.clone();
        let cutoff = unix_ms(before);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql(&path, "begin prune"))?;
        // `started_ms < cutoff` first, so the index narrows the scan.
        let old = "SELECT id FROM deployments WHERE started_ms < ?1 \
                   AND COALESCE(finished_ms, started_ms) < ?1";
        for table in ["events", "steps"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE deploy_id IN ({old})"),
                params![cutoff],
            )
            .map_err(sql(&path, "prune"))?;
        }
        let n = tx
            .execute(
                &format!("DELETE FROM deployments WHERE id IN ({old})"),
                params![cutoff],
            )
            .map_err(sql(&path, "prune"))?;
        tx.commit().map_err(sql(&path, "commit prune"))?;
        Ok(n)
    }

    /// Whether an event with this id is stored.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sql`] naming the file.
    pub fn contains_event(&self, event_id: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row("SELECT 1 FROM events WHERE id = ?1", [event_id], |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
            .map_err(self.err("look up event"))
    }

    /// The stored JSON of the event with this id (its one-line form, as
    /// [`Event::to_json`] writes it), if there is one.
    ///
    /// # Errors
    ///
    /// [`StoreError::Sql`] naming the file.
    pub fn event_json(&self, event_id: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT json FROM events WHERE id = ?1", [event_id], |r| {
                r.get::<_, String>(0)
            })
            .optional()
            .map_err(self.err("look up event"))
    }

    /// The stored events of one deployment, in `seq` order.
    ///
    /// # Errors
    ///
    /// [`StoreError`] naming the file.
    pub fn events(&self, deploy_id: &str) -> Result<Vec<Event>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT json FROM events WHERE deploy_id = ?1 ORDER BY seq, at_ms")
            .map_err(self.err("read events"))?;
        let rows = stmt
            .query_map([deploy_id], |r| r.get::<_, String>(0))
            .map_err(self.err("read events"))?;
        let mut out = Vec::new();
        for json in rows {
            let json = json.map_err(self.err("read events"))?;
            out.push(Event::from_json(&json).map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                deploy_id: deploy_id.to_owned(),
                problem: e.to_string(),
            })?);
        }
        Ok(out)
    }

    /// One deployment by id, with its steps.
    ///
    /// # Errors
    ///
    /// [`StoreError`] naming the file.
    pub fn get(&self, deploy_id: &str) -> Result<Option<Deployment>, StoreError> {
        let row = self
            .conn
            .query_row(
                &format!("SELECT {DEPLOY_COLUMNS} FROM deployments WHERE id = ?1"),
                [deploy_id],
                read_deployment,
            )
            .optional()
            .map_err(self.err("read deployment"))?;
        row.map(|r| self.finish_row(r, true, true)).transpose()
    }

    /// Deployments matching `filter`, newest first, with their steps.
    ///
    /// # Errors
    ///
    /// [`StoreError`] naming the file.
    pub fn list(&self, filter: &Filter) -> Result<Vec<Deployment>, StoreError> {
        let mut sql = format!("SELECT {DEPLOY_COLUMNS} FROM deployments WHERE 1=1");
        let mut args: Vec<Value> = Vec::new();
        let mut arg = |sql: &mut String, clause: &str, v: Value| {
            args.push(v);
            sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
        };
        if let Some(p) = &filter.project {
            arg(&mut sql, " AND project = ?", Value::Text(p.clone()));
        }
        if let Some(e) = &filter.environment {
            arg(&mut sql, " AND environment = ?", Value::Text(e.clone()));
        }
        if let Some(s) = filter.status {
            arg(&mut sql, " AND status = ?", Value::Text(s.as_str().into()));
        }
        if let Some(t) = filter.since {
            arg(&mut sql, " AND started_ms >= ?", Value::Integer(unix_ms(t)));
        }
        if let Some(t) = filter.until {
            arg(&mut sql, " AND started_ms < ?", Value::Integer(unix_ms(t)));
        }
        if let Some((from, to, now)) = filter.overlapping {
            // Regions last at most a day: the index bounds the scan from both sides, and a
            // deployment abandoned unfinished long ago does not run "until now" in every range.
            arg(
                &mut sql,
                " AND started_ms >= ?",
                Value::Integer(unix_ms(from).saturating_sub(MAX_REGION_MS)),
            );
            arg(&mut sql, " AND started_ms < ?", Value::Integer(unix_ms(to)));
            arg(
                &mut sql,
                " AND COALESCE(finished_ms, ?",
                Value::Integer(unix_ms(now)),
            );
            arg(&mut sql, ") >= ?", Value::Integer(unix_ms(from)));
        }
        if !filter.tags.is_empty() {
            sql.push_str(if filter.tags_any {
                " AND (0"
            } else {
                " AND (1"
            });
            for t in &filter.tags {
                let join = if filter.tags_any { " OR" } else { " AND" };
                sql.push_str(join);
                arg(
                    &mut sql,
                    " ? IN (project, environment, status)",
                    Value::Text(t.clone()),
                );
            }
            sql.push(')');
        }
        arg(
            &mut sql,
            " ORDER BY started_ms DESC, id DESC LIMIT ?",
            Value::Integer(i64::from(filter.limit)),
        );
        let mut stmt = self.conn.prepare(&sql).map_err(self.err("list"))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), read_deployment)
            .map_err(self.err("list"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err("list"))?;
        rows.into_iter()
            .map(|r| self.finish_row(r, filter.steps, filter.step_output))
            .collect()
    }

    /// The most recently started deployment of `project` (in `environment`, if given), any
    /// status: the "last deployment of X" an alert can be enriched with. For the last
    /// successful one, use [`list`](Self::list) with `.status(Status::Succeeded).limit(1)`.
    ///
    /// # Errors
    ///
    /// [`StoreError`] naming the file.
    pub fn last_deployment(
        &self,
        project: &str,
        environment: Option<&str>,
    ) -> Result<Option<Deployment>, StoreError> {
        let mut filter = Filter::default().project(project).limit(1);
        if let Some(env) = environment {
            filter = filter.environment(env);
        }
        Ok(self.list(&filter)?.into_iter().next())
    }

    /// Success rate, durations and DORA figures of `project` in `environment` for
    /// deployments finished in `[since, until)`. See [`Stats`] for the definitions.
    ///
    /// # Errors
    ///
    /// [`StoreError`] naming the file.
    pub fn stats(
        &self,
        project: &str,
        environment: &str,
        since: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<Stats, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT status, started_ms, finished_ms, commit_time_ms FROM deployments
                 WHERE project = ?1 AND environment = ?2
                   AND (finished_ms >= ?3 OR (finished_ms IS NULL AND started_ms < ?4))
                 ORDER BY COALESCE(finished_ms, started_ms), id",
            )
            .map_err(self.err("stats"))?;
        let rows = stmt
            .query_map(
                params![project, environment, unix_ms(since), unix_ms(until)],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                    ))
                },
            )
            .map_err(self.err("stats"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err("stats"))?;
        // The last success or failure before the window: whether an incident was already
        // under way when it began (its first failure is then before `since`, and its restore
        // is not one of the window's).
        let before: Option<(String, i64, Option<i64>, Option<i64>)> = self
            .conn
            .prepare_cached(
                "SELECT status, started_ms, finished_ms, commit_time_ms FROM deployments
                 WHERE project = ?1 AND environment = ?2 AND finished_ms < ?3
                   AND status IN ('succeeded', 'failed', 'rolled_back')
                 ORDER BY finished_ms DESC, id DESC LIMIT 1",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![project, environment, unix_ms(since)], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()
            })
            .map_err(self.err("stats"))?;
        let rows: Vec<_> = before.into_iter().chain(rows).collect();
        let mut records = Vec::with_capacity(rows.len());
        for (status, started, finished, commit) in rows {
            let status = Status::parse(&status).ok_or_else(|| StoreError::Corrupt {
                path: self.path.clone(),
                deploy_id: String::new(),
                problem: format!("unknown status `{status}`"),
            })?;
            records.push(stats::Record {
                status,
                started_ms: started,
                finished_ms: finished,
                commit_ms: commit,
            });
        }
        Ok(stats::compute(project, environment, since, until, &records))
    }

    /// The steps of deployment `id`, by index, with their output tails or not.
    fn steps(
        &self,
        id: &str,
        with_output: bool,
        corrupt: &dyn Fn(String) -> StoreError,
    ) -> Result<Vec<Step>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT idx, name, started_ms, finished_ms, status,
                    CASE WHEN ?2 THEN output_tail END, error
                 FROM steps WHERE deploy_id = ?1 ORDER BY idx",
            )
            .map_err(self.err("read steps"))?;
        let steps = stmt
            .query_map(params![id, with_output], |r| {
                Ok((
                    Step {
                        index: r.get(0)?,
                        name: r.get(1)?,
                        started_at: from_unix_ms(r.get(2)?),
                        finished_at: r.get::<_, Option<i64>>(3)?.map(from_unix_ms),
                        status: StepStatus::Running,
                        output_tail: r.get(5)?,
                        error: r.get(6)?,
                    },
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(self.err("read steps"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err("read steps"))?;
        steps
            .into_iter()
            .map(|(mut step, status)| {
                step.status = StepStatus::parse(&status)
                    .ok_or_else(|| corrupt(format!("step status `{status}`")))?;
                Ok(step)
            })
            .collect()
    }

    fn finish_row(
        &self,
        row: DeployRow,
        with_steps: bool,
        with_output: bool,
    ) -> Result<Deployment, StoreError> {
        let corrupt = |problem: String| StoreError::Corrupt {
            path: self.path.clone(),
            deploy_id: row.id.clone(),
            problem,
        };
        let status = Status::parse(&row.status)
            .ok_or_else(|| corrupt(format!("status `{}`", row.status)))?;
        let steps = if with_steps {
            self.steps(&row.id, with_output, &corrupt)?
        } else {
            Vec::new()
        };
        Ok(Deployment {
            id: row.id,
            project: row.project,
            environment: row.environment,
            version: row.version,
            commit: row.commit,
            commit_time: row.commit_ms.map(from_unix_ms),
            actor: row.actor,
            trigger: row.trigger,
            started_at: from_unix_ms(row.started_ms),
            finished_at: row.finished_ms.map(from_unix_ms),
            status,
            steps,
            error: row.error,
            rolled_back_to: row.rolled_back_to,
        })
    }
}

fn sql<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + 'a {
    move |source| StoreError::Sql {
        path: path.to_path_buf(),
        op,
        source,
    }
}

const DEPLOY_COLUMNS: &str = "id, project, environment, version, commit_sha, commit_time_ms, \
     actor, trigger_name, started_ms, finished_ms, status, error, rolled_back_to";

struct DeployRow {
    id: String,
    project: String,
    environment: String,
    version: String,
    commit: Option<String>,
    commit_ms: Option<i64>,
    actor: Option<String>,
    trigger: Option<String>,
    started_ms: i64,
    finished_ms: Option<i64>,
    status: String,
    error: Option<String>,
    rolled_back_to: Option<String>,
}

fn read_deployment(r: &Row<'_>) -> rusqlite::Result<DeployRow> {
    Ok(DeployRow {
        id: r.get(0)?,
        project: r.get(1)?,
        environment: r.get(2)?,
        version: r.get(3)?,
        commit: r.get(4)?,
        commit_ms: r.get(5)?,
        actor: r.get(6)?,
        trigger: r.get(7)?,
        started_ms: r.get(8)?,
        finished_ms: r.get(9)?,
        status: r.get(10)?,
        error: r.get(11)?,
        rolled_back_to: r.get(12)?,
    })
}

/// Why [`apply`] stored nothing.
enum Applied {
    Sql(rusqlite::Error),
    Mismatch(DeploymentMismatch),
}

impl From<rusqlite::Error> for Applied {
    fn from(e: rusqlite::Error) -> Self {
        Applied::Sql(e)
    }
}

/// Stores one event and folds it into its deployment; `false` for a duplicate id. An event
/// whose deployment id is stored for another project, environment or version is refused (the
/// caller rolls the transaction back). The start time may differ: producers derive it, and
/// GitHub gives a run's first webhook without `run_started_at`.
fn apply(tx: &rusqlite::Transaction<'_>, e: &Event) -> Result<bool, Applied> {
    let d = &e.deployment;
    let inserted = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO events (id, deploy_id, seq, at_ms, type, json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            e.id,
            d.id,
            e.seq,
            unix_ms(e.at),
            e.kind.type_name(),
            e.to_json()
        ])?;
    if inserted == 0 {
        return Ok(false);
    }
    let stored: Option<(String, String, String)> = tx
        .prepare_cached("SELECT project, environment, version FROM deployments WHERE id = ?1")?
        .query_row(params![d.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    if let Some((project, environment, version)) = stored {
        let differs = [
            ("project", project, &d.project),
            ("environment", environment, &d.environment),
            ("version", version, &d.version),
        ]
        .into_iter()
        .find(|(_, stored, got)| stored != *got);
        if let Some((field, stored, got)) = differs {
            return Err(Applied::Mismatch(DeploymentMismatch {
                event_id: e.id.clone(),
                deploy_id: d.id.clone(),
                field,
                stored,
                got: got.clone(),
            }));
        }
        // Another run under the same id (a retried job): its outcome would be lost under
        // the first run's, and its steps mixed with them.
        if matches!(e.kind, EventKind::Started { .. }) {
            let first: Option<String> = tx
                .prepare_cached(
                    "SELECT id FROM events WHERE deploy_id = ?1 AND type = 'started' AND id != ?2",
                )?
                .query_row(params![d.id, e.id], |r| r.get(0))
                .optional()?;
            if let Some(first) = first {
                return Err(Applied::Mismatch(DeploymentMismatch {
                    event_id: e.id.clone(),
                    deploy_id: d.id.clone(),
                    field: START_EVENT,
                    stored: first,
                    got: e.id.clone(),
                }));
            }
        }
    }
    tx.prepare_cached(
        "INSERT OR IGNORE INTO deployments (id, project, environment, version, started_ms, status)
         VALUES (?1, ?2, ?3, ?4, ?5, 'in_progress')",
    )?
    .execute(params![
        d.id,
        d.project,
        d.environment,
        d.version,
        unix_ms(d.started_at)
    ])?;
    let at = unix_ms(e.at);
    match &e.kind {
        EventKind::Started {
            commit,
            commit_time,
            actor,
            trigger,
        } => {
            tx.prepare_cached(
                "UPDATE deployments SET commit_sha = ?2, commit_time_ms = ?3, actor = ?4,
                 trigger_name = ?5 WHERE id = ?1",
            )?
            .execute(params![
                d.id,
                commit,
                commit_time.map(unix_ms),
                actor,
                trigger
            ])?;
        }
        EventKind::StepStarted { step } | EventKind::StepFinished { step, .. }
            if step.index >= MAX_STEPS => {}
        EventKind::StepStarted { step } => {
            tx.prepare_cached(
                "INSERT OR IGNORE INTO steps (deploy_id, idx, name, started_ms, status)
                 VALUES (?1, ?2, ?3, ?4, 'running')",
            )?
            .execute(params![d.id, step.index, step.name, at])?;
        }
        EventKind::StepFinished {
            step,
            started_at,
            status,
            output_tail,
            error,
        } => {
            tx.prepare_cached(
                "INSERT INTO steps (deploy_id, idx, name, started_ms, finished_ms, status,
                    output_tail, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (deploy_id, idx) DO UPDATE SET name = excluded.name,
                    started_ms = excluded.started_ms, finished_ms = excluded.finished_ms,
                    status = excluded.status, output_tail = excluded.output_tail,
                    error = excluded.error",
            )?
            .execute(params![
                d.id,
                step.index,
                step.name,
                unix_ms(*started_at),
                at,
                status.as_str(),
                output_tail,
                error
            ])?;
        }
        kind => {
            let (error, to) = match kind {
                EventKind::Failed { reason } => (Some(reason.as_str()), None),
                EventKind::RolledBack { to_version, reason } => {
                    (reason.as_deref(), Some(to_version.as_str()))
                }
                EventKind::Cancelled { reason } => (reason.as_deref(), None),
                _ => (None, None),
            };
            if let Some(status) = kind.terminal_status() {
                tx.prepare_cached(
                    "UPDATE deployments SET status = ?2, finished_ms = ?3, error = ?4,
                        rolled_back_to = ?5
                     WHERE id = ?1 AND status = 'in_progress'",
                )?
                .execute(params![d.id, status.as_str(), at, error, to])?;
            }
        }
    }
    Ok(true)
}

impl StoreError {
    /// Whether another connection held the database longer than the busy timeout (a
    /// `prune`, a local-mode CLI): worth trying again, unlike the other errors.
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            StoreError::Sql {
                source: rusqlite::Error::SqliteFailure(e, _),
                ..
            } if matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            )
        )
    }
}

/// A hook that stores every event in a [`History`] (on the dispatcher's thread).
///
/// An event the database refuses for being busy past its timeout (another process writing:
/// `axi-deploy prune`, a local-mode CLI) is not lost: it is kept, in order, and stored
/// before the next event, or when the hook is dropped; at most
/// [`HistoryHook::MAX_PENDING`] are kept (past that, the newest is refused, counted as a
/// hook failure).
#[derive(Debug)]
pub struct HistoryHook {
    history: History,
    pending: std::collections::VecDeque<Event>,
}

impl HistoryHook {
    /// Most events kept while the database is busy.
    pub const MAX_PENDING: usize = 10_000;

    /// Stores into `history`.
    pub fn new(history: History) -> Self {
        Self {
            history,
            pending: std::collections::VecDeque::new(),
        }
    }

    /// Stores the kept events, oldest first, until the database is busy again (`Err`, the
    /// rest kept). One that fails for another reason is dropped with a warning: retrying
    /// it would not help.
    fn store_pending(&mut self) -> Result<(), StoreError> {
        while let Some(e) = self.pending.front() {
            match self.history.insert(e) {
                Ok(_) => {}
                Err(err) if err.is_busy() => return Err(err),
                Err(err) => {
                    tracing::warn!(event.id = %e.id, deploy.id = %e.deployment.id, error = %err,
                        "deploy event kept while the history was busy could not be stored: dropped");
                }
            }
            self.pending.pop_front();
        }
        Ok(())
    }
}

impl Hook for HistoryHook {
    fn name(&self) -> &str {
        "history"
    }

    fn on_event(&mut self, event: &Event) -> Result<(), HookError> {
        let stored = match self.store_pending() {
            Ok(()) => self.history.insert(event).map(drop),
            Err(busy) => Err(busy),
        };
        match stored {
            Err(err) if err.is_busy() => {
                if self.pending.len() >= Self::MAX_PENDING {
                    return Err(format!(
                        "{err}; {} events already kept to retry: this one is lost",
                        Self::MAX_PENDING
                    )
                    .into());
                }
                tracing::warn!(event.id = %event.id, deploy.id = %event.deployment.id, error = %err,
                    kept = self.pending.len() + 1,
                    "deploy history busy: event kept, stored before the next one");
                self.pending.push_back(event.clone());
                Ok(())
            }
            other => Ok(other?),
        }
    }
}

impl Drop for HistoryHook {
    /// One last try for the events kept while the database was busy.
    fn drop(&mut self) {
        if !self.pending.is_empty()
            && let Err(err) = self.store_pending()
        {
            tracing::warn!(error = %err, lost = self.pending.len(),
                "deploy history still busy at shutdown: kept events not stored");
        }
    }
}
