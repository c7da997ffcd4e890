//! Success rate, durations and the four DORA figures, computed from stored deployments.

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::event::unix_ms;
use crate::model::Status;

/// Figures for one project and environment over a window `[since, until)`.
///
/// A deployment belongs to the window if it **finished** in it. Cancelled deployments count
/// in `cancelled` and the success rate, never as a change failure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stats {
    /// Project.
    pub project: String,
    /// Environment.
    pub environment: String,
    /// Window start.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// Window end (exclusive).
    #[serde(with = "time::serde::rfc3339")]
    pub until: OffsetDateTime,
    /// Finished in the window, by outcome.
    pub succeeded: u64,
    /// Failed (including abandoned).
    pub failed: u64,
    /// Rolled back.
    pub rolled_back: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// Started before `until` and not finished.
    pub in_progress: u64,
    /// `succeeded / (succeeded + failed + rolled_back + cancelled)`; `None` with nothing
    /// finished.
    pub success_rate: Option<f64>,
    /// Median duration of successful deployments (nearest rank).
    pub duration_p50: Option<Duration>,
    /// 95th percentile duration of successful deployments (nearest rank).
    pub duration_p95: Option<Duration>,
    /// The DORA figures.
    pub dora: Dora,
}

/// The four DORA figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Dora {
    /// Deployment frequency: successful deployments per day of the window.
    pub deployments_per_day: f64,
    /// Lead time for changes: median of commit time → successful deployment finished, over
    /// deployments whose commit time is known; `None` if none is.
    pub lead_time_p50: Option<Duration>,
    /// Change failure rate: `(failed + rolled_back) / (succeeded + failed + rolled_back)`;
    /// `None` with no such deployment.
    pub change_failure_rate: Option<f64>,
    /// Time to restore: median of first failure → next success finished, over incidents
    /// (consecutive failures form one) that began in the window and have been restored,
    /// even after the window.
    pub time_to_restore_p50: Option<Duration>,
    /// Incidents that began in the window and have no success after them yet.
    pub unrestored_incidents: u64,
}

/// The nearest-rank percentile (`p` in `0..=1`) of sorted values: the value at rank
/// `ceil(p × n)`, at least the first. `None` for no values.
///
/// ```
/// use axi_obs_deploy::store::percentile;
/// assert_eq!(percentile(&[1, 2, 3, 4], 0.5), Some(2));
/// assert_eq!(percentile(&[1, 2, 3, 4], 0.95), Some(4));
/// assert_eq!(percentile(&[], 0.5), None);
/// ```
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

pub(super) struct Record {
    pub(super) status: Status,
    pub(super) started_ms: i64,
    pub(super) finished_ms: Option<i64>,
    pub(super) commit_ms: Option<i64>,
}

fn ms(values: &mut [u64], p: f64) -> Option<Duration> {
    values.sort_unstable();
    percentile(values, p).map(Duration::from_millis)
}

fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// `records` hold every deployment finished at or after `since` (and the unfinished ones
/// started before `until`), sorted by finish time, after the last success or failure finished
/// before `since` (if any: it tells whether an incident began before the window).
pub(super) fn compute(
    project: &str,
    environment: &str,
    since: OffsetDateTime,
    until: OffsetDateTime,
    records: &[Record],
) -> Stats {
    let (from, to) = (unix_ms(since), unix_ms(until));
    let in_window = |t: i64| t >= from && t < to;
    let (mut succeeded, mut failed, mut rolled_back, mut cancelled, mut in_progress) =
        (0, 0, 0, 0, 0);
    let mut durations = Vec::new();
    let mut lead_times = Vec::new();
    for r in records {
        let Some(fin) = r.finished_ms else {
            if r.started_ms < to {
                in_progress += 1;
            }
            continue;
        };
        if !in_window(fin) {
            continue;
        }
        match r.status {
            Status::Succeeded => {
                succeeded += 1;
                durations.push(fin.saturating_sub(r.started_ms).max(0) as u64);
                if let Some(c) = r.commit_ms {
                    lead_times.push(fin.saturating_sub(c).max(0) as u64);
                }
            }
            Status::Failed => failed += 1,
            Status::RolledBack => rolled_back += 1,
            Status::Cancelled => cancelled += 1,
            Status::InProgress => in_progress += 1,
        }
    }

    // Incidents: a run of failures ended by the next success.
    let mut restores = Vec::new();
    let mut unrestored = 0;
    let mut incident_start: Option<i64> = None;
    for r in records {
        let Some(fin) = r.finished_ms else { continue };
        match r.status {
            s if s.is_failure() => {
                incident_start.get_or_insert(fin);
            }
            Status::Succeeded => {
                if let Some(start) = incident_start.take()
                    && in_window(start)
                {
                    restores.push(fin.saturating_sub(start).max(0) as u64);
                }
            }
            _ => {}
        }
    }
    if incident_start.is_some_and(in_window) {
        unrestored += 1;
    }

    let days = (to - from) as f64 / 86_400_000.0;
    Stats {
        project: project.to_owned(),
        environment: environment.to_owned(),
        since,
        until,
        succeeded,
        failed,
        rolled_back,
        cancelled,
        in_progress,
        success_rate: ratio(succeeded, succeeded + failed + rolled_back + cancelled),
        duration_p50: ms(&mut durations, 0.5),
        duration_p95: ms(&mut durations, 0.95),
        dora: Dora {
            deployments_per_day: if days > 0.0 {
                succeeded as f64 / days
            } else {
                0.0
            },
            lead_time_p50: ms(&mut lead_times, 0.5),
            change_failure_rate: ratio(failed + rolled_back, succeeded + failed + rolled_back),
            time_to_restore_p50: ms(&mut restores, 0.5),
            unrestored_incidents: unrestored,
        },
    }
}
