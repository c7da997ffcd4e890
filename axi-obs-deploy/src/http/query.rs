//! `GET /api/deploy/history`, `/stats` and `/annotations`: reads of the history.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::extract::{RawQuery, State};
use serde::Serialize;
use time::OffsetDateTime;

use super::Shared;
use super::params::{ApiError, Params};
use crate::event::unix_ms;
use crate::model::{Deployment, Status};
use crate::store::{Filter, History, Stats, StoreError};

/// Most deployments one history or annotations request returns.
const MAX_LIMIT: u32 = 1_000;
/// The largest `limit` of a history request with the steps' output (`output=true`).
const MAX_LIMIT_WITH_OUTPUT: u32 = 20;

async fn with_history<T: Send + 'static>(
    s: &Arc<Shared>,
    what: &'static str,
    f: impl FnOnce(&History) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let history = s.history.clone();
    tokio::task::spawn_blocking(move || {
        let history = history.lock().unwrap_or_else(PoisonError::into_inner);
        f(&history)
    })
    .await
    .map_err(|e| ApiError::internal(what, &e))?
    .map_err(|e| ApiError::internal(what, &e))
}

fn limit(p: &Params, default: u32) -> Result<u32, ApiError> {
    match p.number::<u32>("limit")? {
        Some(0) => Err(ApiError::bad_request(
            "query parameter `limit` must be at least 1",
        )),
        Some(n) if n > MAX_LIMIT => Err(ApiError::bad_request(format!(
            "query parameter `limit` must be at most {MAX_LIMIT}"
        ))),
        Some(n) => Ok(n),
        None => Ok(default),
    }
}

pub(crate) async fn history(
    State(s): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<Deployment>>, ApiError> {
    let p = Params::parse(query.as_deref());
    p.only(&[
        "project",
        "environment",
        "status",
        "since",
        "until",
        "limit",
        "output",
    ])?;
    let output = match p.one("output")? {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "query parameter `output`: `{v}` is not true or false"
            )));
        }
    };
    let n = limit(&p, if output { MAX_LIMIT_WITH_OUTPUT } else { 50 })?;
    // Each step keeps up to 16 KiB of output: with it, few deployments a request.
    if output && n > MAX_LIMIT_WITH_OUTPUT {
        return Err(ApiError::bad_request(format!(
            "query parameter `limit` must be at most {MAX_LIMIT_WITH_OUTPUT} with `output=true`"
        )));
    }
    let mut filter = Filter::default().limit(n);
    if !output {
        filter = filter.without_step_output();
    }
    if let Some(v) = p.one("project")? {
        filter = filter.project(v);
    }
    if let Some(v) = p.one("environment")? {
        filter = filter.environment(v);
    }
    if let Some(v) = p.one("status")? {
        let status = Status::parse(v).ok_or_else(|| {
            ApiError::bad_request(format!(
                "query parameter `status`: `{v}` is not one of {}",
                Status::ALL.map(Status::as_str).join(", ")
            ))
        })?;
        filter = filter.status(status);
    }
    if let Some(t) = p.time("since")? {
        filter = filter.since(t);
    }
    if let Some(t) = p.time("until")? {
        filter = filter.until(t);
    }
    with_history(&s, "reading the deploy history", move |h| h.list(&filter))
        .await
        .map(Json)
}

/// [`Stats`] with durations in seconds.
#[derive(Debug, Serialize)]
pub(crate) struct StatsJson {
    project: String,
    environment: String,
    #[serde(with = "time::serde::rfc3339")]
    since: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    until: OffsetDateTime,
    succeeded: u64,
    failed: u64,
    rolled_back: u64,
    cancelled: u64,
    in_progress: u64,
    success_rate: Option<f64>,
    duration_p50_seconds: Option<f64>,
    duration_p95_seconds: Option<f64>,
    dora: DoraJson,
}

#[derive(Debug, Serialize)]
struct DoraJson {
    deployments_per_day: f64,
    lead_time_p50_seconds: Option<f64>,
    change_failure_rate: Option<f64>,
    time_to_restore_p50_seconds: Option<f64>,
    unrestored_incidents: u64,
}

fn secs(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64())
}

impl From<Stats> for StatsJson {
    fn from(s: Stats) -> Self {
        Self {
            project: s.project,
            environment: s.environment,
            since: s.since,
            until: s.until,
            succeeded: s.succeeded,
            failed: s.failed,
            rolled_back: s.rolled_back,
            cancelled: s.cancelled,
            in_progress: s.in_progress,
            success_rate: s.success_rate,
            duration_p50_seconds: secs(s.duration_p50),
            duration_p95_seconds: secs(s.duration_p95),
            dora: DoraJson {
                deployments_per_day: s.dora.deployments_per_day,
                lead_time_p50_seconds: secs(s.dora.lead_time_p50),
                change_failure_rate: s.dora.change_failure_rate,
                time_to_restore_p50_seconds: secs(s.dora.time_to_restore_p50),
                unrestored_incidents: s.dora.unrestored_incidents,
            },
        }
    }
}

/// `days` days before `t`, as long as that is a time the history can hold.
fn days_before(t: OffsetDateTime, days: u32) -> Result<OffsetDateTime, ApiError> {
    crate::event::days_before(t, days).ok_or_else(|| {
        ApiError::bad_request(format!(
            "{days} days before {t} is outside the years 0001 to 9999"
        ))
    })
}

pub(crate) async fn stats(
    State(s): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
) -> Result<Json<StatsJson>, ApiError> {
    let p = Params::parse(query.as_deref());
    p.only(&["project", "environment", "since", "until", "days"])?;
    let required = |name: &str| -> Result<String, ApiError> {
        p.one(name)?
            .map(str::to_owned)
            .ok_or_else(|| ApiError::bad_request(format!("query parameter `{name}` is required")))
    };
    let (project, environment) = (required("project")?, required("environment")?);
    let until = p.time("until")?.unwrap_or_else(|| s.clock.now());
    let since = match (p.time("since")?, p.number::<u32>("days")?) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("give `since` or `days`, not both"));
        }
        (Some(t), None) => t,
        (None, days) => days_before(until, days.unwrap_or(30))?,
    };
    if since >= until {
        return Err(ApiError::bad_request("`since` must be before `until`"));
    }
    with_history(&s, "computing deploy stats", move |h| {
        h.stats(&project, &environment, since, until)
    })
    .await
    .map(|st| Json(st.into()))
}

/// One deployment in the shape of a Grafana annotation.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Annotation {
    time: i64,
    time_end: i64,
    is_region: bool,
    title: String,
    text: String,
    tags: [String; 3],
    deployment_id: String,
}

impl Annotation {
    fn new(d: Deployment, now: OffsetDateTime) -> Self {
        // One never finished (its runner killed) is drawn for a day at most, not until now.
        // Saturating: a start late in year 9999 (accepted input) must not overflow.
        let longest = d
            .started_at
            .saturating_add(time::Duration::milliseconds(crate::store::MAX_REGION_MS));
        let end = d.finished_at.unwrap_or(now.min(longest)).max(d.started_at);
        let title = format!("{} {} → {}", d.project, d.version, d.environment);
        let mut text = format!("{title}: {}", d.status.as_str().replace('_', " "));
        if d.finished_at.is_none() && now > longest {
            text.push_str(", no end recorded after a day");
        }
        if d.finished_at.is_some() {
            text.push_str(&format!(
                " in {}",
                human((end - d.started_at).whole_seconds())
            ));
        }
        if let Some(to) = &d.rolled_back_to {
            text.push_str(&format!(" (to {to})"));
        }
        if let Some(c) = &d.commit {
            text.push_str(&format!(", commit {}", c.get(..7).unwrap_or(c)));
        }
        if let Some(a) = &d.actor {
            text.push_str(&format!(", by {a}"));
        }
        if let Some(e) = d.error.as_deref().filter(|e| !e.is_empty()) {
            let e = e.lines().next().unwrap_or_default();
            let cut = e.char_indices().nth(200).map_or(e.len(), |(i, _)| i);
            text.push_str(&format!(": {}", &e[..cut]));
        }
        Self {
            time: unix_ms(d.started_at),
            time_end: unix_ms(end),
            is_region: true,
            title,
            text,
            tags: [d.project, d.environment, d.status.as_str().to_owned()],
            deployment_id: d.id,
        }
    }
}

fn human(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

pub(crate) async fn annotations(
    State(s): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<Annotation>>, ApiError> {
    /// The most `tags` (and `tag`) parameters one annotations query takes.
    const MAX_TAGS: usize = 32;
    // Grafana adds parameters of its own (dashboardUID, panelId, type, ...): not checked.
    let p = Params::parse(query.as_deref());
    let now = s.clock.now();
    let to = p.time("to")?.unwrap_or(now);
    let from = match p.time("from")? {
        Some(t) => t,
        None => days_before(to, 7)?,
    };
    let limit = limit(&p, 100)?;
    let tags: Vec<String> = p
        .all("tags")
        .chain(p.all("tag"))
        .map(str::to_owned)
        .collect();
    if tags.len() > MAX_TAGS {
        // Each tag is a condition of the query: thousands would exceed SQLite's limits.
        return Err(ApiError::bad_request(format!(
            "query parameter `tags`: {} given, at most {MAX_TAGS}",
            tags.len()
        )));
    }
    let match_any = p.flag("matchAny")?;
    // Tags are matched in the query, before its limit: older matching deployments are not
    // cut off by newer ones that do not match.
    // A deployment that started before the range and ran into it is shown too (Grafana's
    // own annotations: `time <= to` and `timeEnd >= from`).
    let mut filter = Filter::default()
        .overlapping(from, to, now)
        .limit(limit)
        .tags(tags, match_any)
        // An annotation shows none of them; Grafana asks at every refresh.
        .without_steps();
    if let Some(v) = p.one("project")? {
        filter = filter.project(v);
    }
    if let Some(v) = p.one("environment")? {
        filter = filter.environment(v);
    }
    let list = with_history(&s, "reading the deploy history", move |h| h.list(&filter)).await?;
    let out = list.into_iter().map(|d| Annotation::new(d, now)).collect();
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::from_unix_ms;

    fn deployment(status: Status, finished: Option<i64>) -> Deployment {
        Deployment {
            id: "d-42".into(),
            project: "shop-api".into(),
            environment: "prod".into(),
            version: "1.4.2".into(),
            commit: Some("3f2a9c1deadbeef".into()),
            commit_time: None,
            actor: Some("ci".into()),
            trigger: None,
            started_at: from_unix_ms(1_714_557_600_000),
            finished_at: finished.map(from_unix_ms),
            status,
            steps: Vec::new(),
            error: None,
            rolled_back_to: None,
        }
    }

    #[test]
    fn annotation_golden() {
        let a = Annotation::new(
            deployment(Status::Succeeded, Some(1_714_557_690_000)),
            from_unix_ms(0),
        );
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"time":1714557600000,"timeEnd":1714557690000,"isRegion":true,"title":"shop-api 1.4.2 → prod","text":"shop-api 1.4.2 → prod: succeeded in 90s, commit 3f2a9c1, by ci","tags":["shop-api","prod","succeeded"],"deploymentId":"d-42"}"#
        );
    }

    #[test]
    fn in_progress_annotation_ends_now() {
        let a = Annotation::new(
            deployment(Status::InProgress, None),
            from_unix_ms(1_714_557_605_000),
        );
        assert_eq!(
            (a.time_end, a.text.contains("in progress")),
            (1_714_557_605_000, true)
        );
        // Abandoned (its runner killed) a week ago: drawn for a day, not until now.
        let week = 7 * 24 * 3_600_000;
        let a = Annotation::new(
            deployment(Status::InProgress, None),
            from_unix_ms(1_714_557_600_000 + week),
        );
        assert_eq!(a.time_end, 1_714_557_600_000 + 24 * 3_600_000);
        assert!(
            a.text.contains("in progress, no end recorded after a day"),
            "{}",
            a.text
        );
        assert_eq!(human(3_725), "1h02m");
        assert_eq!(human(125), "2m05s");
    }
}
