//! Deploy-aware alerts (feature `alert`): [`LastDeployEnricher`] adds the last deployment of an
//! alert's project and environment to its annotations, through axi-obs-alert's
//! [`AnnotationEnricher`] hook.
//!
//! ```
//! use std::collections::BTreeMap;
//! use axi_obs_alert::enrich::AnnotationEnricher;
//! use axi_obs_alert::promql::Labels;
//! use axi_obs_alert::rules::{Alert, AlertState};
//! use axi_obs_deploy::alert::LastDeployEnricher;
//! use axi_obs_deploy::event::{DeploymentRef, from_unix_ms};
//! use axi_obs_deploy::store::History;
//! use axi_obs_deploy::{Event, EventKind};
//!
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("deploys.db");
//! let mut history = History::open(&path)?;
//! let d = DeploymentRef {
//!     id: "d-42".into(), project: "axi-star-cloud".into(), environment: "prod".into(),
//!     version: "v1.4.2".into(), started_at: from_unix_ms(1_000_000),
//! };
//! history.insert(&Event::new(d.clone(), 0, from_unix_ms(1_000_000), EventKind::Succeeded))?;
//!
//! let mut enricher = LastDeployEnricher::new(History::open(&path)?);
//! let alert = Alert {
//!     labels: Labels::from_pairs([("alertname", "HighErrorRate"),
//!         ("project", "axi-star-cloud"), ("environment", "prod")]),
//!     annotations: BTreeMap::new(),
//!     state: AlertState::Firing,
//!     value: 1.0,
//!     active_at: 1_000_000 + 3 * 60_000,
//!     fired_at: None, resolved_at: None, last_sent_at: None, keep_firing_since: None,
//! };
//! let added: BTreeMap<_, _> = enricher.enrich(&alert).into_iter().collect();
//! assert_eq!(added["last_deploy"], "started 3 min after v1.4.2 of axi-star-cloud went out to prod");
//! assert_eq!(added["last_deploy_version"], "v1.4.2");
//! assert_eq!(added["last_deploy_age_seconds"], "180");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What it adds
//!
//! The deployment is the last one of the alert's project (the first of the
//! [`project_labels`](LastDeployEnricher::project_labels) the alert has, default `project`,
//! then `service`) and environment (the first of the
//! [`environment_labels`](LastDeployEnricher::environment_labels), default `environment`,
//! then `env`; without one, any environment) that **started before the alert became active**
//! (`active_at`), and no longer than [`max_age`](LastDeployEnricher::max_age) before it
//! (default [`DEFAULT_MAX_AGE`]). Without such a deployment, nothing is added.
//!
//! | annotation | value |
//! |---|---|
//! | [`last_deploy`](LAST_DEPLOY) | `started 3 min after v1.4.2 of axi-star-cloud went out to prod` (`failed to deploy to`, `was rolled back in`, `was cancelled in` for the other outcomes); for a deployment not finished when the alert became active: `started 40 s into the deploy of v1.4.2 of axi-star-cloud to prod` |
//! | [`last_deploy_version`](LAST_DEPLOY_VERSION) | `v1.4.2` |
//! | [`last_deploy_id`](LAST_DEPLOY_ID) | the deployment id |
//! | [`last_deploy_status`](LAST_DEPLOY_STATUS) | `succeeded`, `failed`, `rolled_back`, `cancelled`, `in_progress` |
//! | [`last_deploy_at`](LAST_DEPLOY_AT) | RFC 3339: when it finished (when it started, if it had not finished) |
//! | [`last_deploy_age_seconds`](LAST_DEPLOY_AGE_SECONDS) | whole seconds from that time to the alert's `active_at` |
//!
//! Durations in the text are whole units, rounded down: seconds below 90 s, minutes below
//! 90 min, hours below 48 h, then days. A history that cannot be read adds nothing and logs a
//! warning (at most one a minute).

use std::time::{Duration, Instant};

use axi_obs_alert::enrich::AnnotationEnricher;
use axi_obs_alert::rules::Alert;
use time::OffsetDateTime;

use crate::event::from_unix_ms;
use crate::model::{Deployment, Status};
use crate::store::{Filter, History};

/// The sentence annotation.
pub const LAST_DEPLOY: &str = "last_deploy";
/// The version annotation.
pub const LAST_DEPLOY_VERSION: &str = "last_deploy_version";
/// The deployment id annotation.
pub const LAST_DEPLOY_ID: &str = "last_deploy_id";
/// The outcome annotation.
pub const LAST_DEPLOY_STATUS: &str = "last_deploy_status";
/// The time annotation (RFC 3339).
pub const LAST_DEPLOY_AT: &str = "last_deploy_at";
/// The age annotation, in whole seconds.
pub const LAST_DEPLOY_AGE_SECONDS: &str = "last_deploy_age_seconds";

/// Default oldest deployment still mentioned: 24 hours before the alert.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Adds the last deployment of an alert's project and environment to its annotations. See the
/// [module documentation](self).
#[derive(Debug)]
pub struct LastDeployEnricher {
    history: History,
    project_labels: Vec<String>,
    environment_labels: Vec<String>,
    max_age: Duration,
    last_warning: Option<Instant>,
}

impl LastDeployEnricher {
    /// An enricher reading `history` (open its own connection: `History::open` on the file the
    /// service writes; SQLite's WAL lets both work at once).
    pub fn new(history: History) -> Self {
        Self {
            history,
            project_labels: vec!["project".into(), "service".into()],
            environment_labels: vec!["environment".into(), "env".into()],
            max_age: DEFAULT_MAX_AGE,
            last_warning: None,
        }
    }

    /// Alert labels naming the project, tried in order. Defaults to `project`, `service`.
    pub fn project_labels<I, S>(mut self, labels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.project_labels = labels.into_iter().map(Into::into).collect();
        self
    }

    /// Alert labels naming the environment, tried in order; an alert with none of them is
    /// matched with deployments to any environment. Defaults to `environment`, `env`.
    pub fn environment_labels<I, S>(mut self, labels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.environment_labels = labels.into_iter().map(Into::into).collect();
        self
    }

    /// Deployments that started longer than this before the alert are not mentioned.
    /// Defaults to [`DEFAULT_MAX_AGE`].
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    fn first_label<'a>(alert: &'a Alert, names: &[String]) -> Option<&'a str> {
        names
            .iter()
            .find_map(|n| alert.labels.get(n))
            .filter(|v| !v.is_empty())
    }

    fn lookup(
        &self,
        project: &str,
        environment: Option<&str>,
        active: OffsetDateTime,
    ) -> Result<Option<Deployment>, crate::store::StoreError> {
        let mut filter = Filter::default()
            .project(project)
            .until(active.saturating_add(time::Duration::milliseconds(1)))
            .since(active.saturating_sub(
                time::Duration::try_from(self.max_age).unwrap_or(time::Duration::MAX),
            ))
            .limit(1)
            .without_steps();
        if let Some(env) = environment {
            filter = filter.environment(env);
        }
        Ok(self.history.list(&filter)?.into_iter().next())
    }
}

impl AnnotationEnricher for LastDeployEnricher {
    fn enrich(&mut self, alert: &Alert) -> Vec<(String, String)> {
        let Some(project) = Self::first_label(alert, &self.project_labels) else {
            return Vec::new();
        };
        let environment = Self::first_label(alert, &self.environment_labels);
        let active = from_unix_ms(alert.active_at);
        let deployment = match self.lookup(project, environment, active) {
            Ok(Some(d)) => d,
            Ok(None) => return Vec::new(),
            Err(e) => {
                let now = Instant::now();
                if self
                    .last_warning
                    .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60))
                {
                    self.last_warning = Some(now);
                    tracing::warn!(target: "axi_obs_deploy", error = %e, project,
                        "cannot read the deploy history for an alert (further errors within 60 s are not logged)");
                }
                return Vec::new();
            }
        };
        annotations(&deployment, active)
    }
}

/// The annotations for `d` and an alert active since `active`.
fn annotations(d: &Deployment, active: OffsetDateTime) -> Vec<(String, String)> {
    let finished = d
        .finished_at
        .filter(|f| d.status.is_terminal() && *f <= active);
    let (at, text, status) = match finished {
        Some(f) => {
            let outcome = match d.status {
                Status::Succeeded => format!("went out to {}", d.environment),
                Status::Failed => format!("failed to deploy to {}", d.environment),
                Status::RolledBack => format!("was rolled back in {}", d.environment),
                _ => format!("was cancelled in {}", d.environment),
            };
            let text = format!(
                "started {} after {} of {} {outcome}",
                human(active - f),
                d.version,
                d.project
            );
            (f, text, d.status.as_str())
        }
        None => {
            let text = format!(
                "started {} into the deploy of {} of {} to {}",
                human(active - d.started_at),
                d.version,
                d.project,
                d.environment
            );
            (d.started_at, text, Status::InProgress.as_str())
        }
    };
    let at_text = at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    vec![
        (LAST_DEPLOY.into(), text),
        (LAST_DEPLOY_VERSION.into(), d.version.clone()),
        (LAST_DEPLOY_ID.into(), d.id.clone()),
        (LAST_DEPLOY_STATUS.into(), status.into()),
        (LAST_DEPLOY_AT.into(), at_text),
        (
            LAST_DEPLOY_AGE_SECONDS.into(),
            (active - at).whole_seconds().max(0).to_string(),
        ),
    ]
}

/// Whole units, rounded down: `45 s`, `3 min`, `5 h`, `3 days`.
fn human(d: time::Duration) -> String {
    let s = d.whole_seconds().max(0);
    match s {
        0..90 => format!("{s} s"),
        90..5_400 => format!("{} min", s / 60),
        5_400..172_800 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_whole_units_rounded_down() {
        let h = |s| human(time::Duration::seconds(s));
        assert_eq!(
            [
                h(-5),
                h(0),
                h(89),
                h(90),
                h(199),
                h(5_399),
                h(5_400),
                h(172_799),
                h(172_800)
            ],
            [
                "0 s", "0 s", "89 s", "1 min", "3 min", "89 min", "1 h", "47 h", "2 days"
            ]
        );
    }
}
