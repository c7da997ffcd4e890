//! Remediation actions (ours; Alertmanager has none): when a firing alert reaches a route
//! that names actions, each action runs a program or calls a URL with the alert as JSON,
//! within a timeout, at most once per `cooldown` for the same alert and at most `max_runs`
//! times per `window`; its outcome is logged, counted and attached to the alert's next
//! notification as the annotation `remediation`.
//!
//! The [`Dispatcher`](super::Dispatcher) decides (on its explicit clock, no process or
//! request inside it): [`Dispatcher::insert`](super::Dispatcher::insert) records a run and
//! queues a [`RemediationRun`] in a bounded queue; the [`Runner`](super::Runner) takes the
//! queued runs, executes them ([`RemediationRun::execute`], at most
//! [`MAX_CONCURRENT_REMEDIATIONS`] at once) and hands each [`RemediationOutcome`] back
//! through [`Dispatcher::remediation_done`](super::Dispatcher::remediation_done).
//!
//! Safety: a program is started directly (argv, no shell) and its arguments are fixed in
//! the configuration; the alert (labels written by whoever can post alerts) only ever
//! reaches it as JSON on stdin. A silenced or inhibited alert triggers nothing, so a
//! silence during maintenance stops automatic restarts. The decision is made once the
//! request that brings the alert is in ([`Dispatcher::insert_all`](super::Dispatcher::insert_all):
//! an inhibiting alert anywhere in it counts). Known limit: not after the group's
//! `group_wait`, as Alertmanager applies inhibition to notifications; an inhibiting alert
//! that comes in a later request does not stop a run already decided. Nothing runs unless the
//! configuration has `remediations` and a route names them.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::config::{ConfigError, ModelDuration, RouteConfig, Secret};

mod exec;
mod state;

pub use exec::{RemediationOutcome, RemediationResult, RemediationRun};
pub(crate) use state::RemediationHistory;
pub use state::Remediations;

/// The default [`RemediationConfig::timeout`]: 30 s.
pub const DEFAULT_REMEDIATION_TIMEOUT: Duration = Duration::from_secs(30);
/// The default [`RemediationConfig::cooldown`]: 10 minutes.
pub const DEFAULT_REMEDIATION_COOLDOWN: Duration = Duration::from_secs(10 * 60);
/// The default [`RemediationConfig::max_runs`]: 3.
pub const DEFAULT_REMEDIATION_MAX_RUNS: u32 = 3;
/// The default [`RemediationConfig::window`]: 1 hour.
pub const DEFAULT_REMEDIATION_WINDOW: Duration = Duration::from_secs(3600);
/// Runs waiting to be executed at most; a run that finds the queue full is not recorded,
/// and is counted as skipped with reason `queue_full`.
pub const REMEDIATION_QUEUE_CAPACITY: usize = 64;
/// Runs a [`Runner`](super::Runner) executes at once; the others wait in the queue.
pub const MAX_CONCURRENT_REMEDIATIONS: usize = 4;
/// Bytes of a program's stdout and of its stderr kept (the rest is read and dropped).
pub const REMEDIATION_OUTPUT_LIMIT: usize = 4096;
/// The annotation carrying the outcomes in notifications, one line per action.
pub const ANNOTATION_REMEDIATION: &str = "remediation";
/// Remediation runs finished, per action and outcome (counter; labels `action`, `outcome`:
/// `success`, `failure`, `timeout`).
pub const METRIC_REMEDIATIONS_TOTAL: &str = "axi_alert_remediations_total";
/// Remediation runs not started, per action and reason (counter; labels `action`,
/// `reason`: `cooldown`, `max_runs`, `queue_full`).
pub const METRIC_REMEDIATIONS_SKIPPED_TOTAL: &str = "axi_alert_remediations_skipped_total";
/// Label key: the remediation action's name.
pub const LABEL_ACTION: &str = "action";
/// Label key: how a remediation run ended.
pub const LABEL_OUTCOME: &str = "outcome";

/// Characters of stderr (or of a response body, or an error) in an outcome line.
const DETAIL_CHARS: usize = 200;
/// How long output is still read after the program exited (a child it left behind may
/// hold the pipes open).
const OUTPUT_GRACE: Duration = Duration::from_millis(200);
/// Alerts with a remembered outcome at most; outcomes for further alerts are logged and
/// counted but not attached.
const MAX_OUTCOME_ALERTS: usize = 10_000;
/// How often expired run history is dropped.
const GC_INTERVAL_MS: i64 = 60_000;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn default_timeout() -> ModelDuration {
    ModelDuration(DEFAULT_REMEDIATION_TIMEOUT)
}

fn default_cooldown() -> ModelDuration {
    ModelDuration(DEFAULT_REMEDIATION_COOLDOWN)
}

fn default_max_runs() -> u32 {
    DEFAULT_REMEDIATION_MAX_RUNS
}

fn default_window() -> ModelDuration {
    ModelDuration(DEFAULT_REMEDIATION_WINDOW)
}

/// `remediations[]`: a named action, a program or a URL, that routes refer to.
///
/// ```
/// use std::path::Path;
/// use axi_obs_alert::delivery::Config;
///
/// let cfg = Config::parse(r#"
/// remediations:
/// - name: restart-api
///   command: [/usr/bin/systemctl, restart, api]
///   timeout: 30s
///   cooldown: 10m
///   max_runs: 3
///   window: 1h
/// route:
///   receiver: ops
///   routes:
///   - matchers: ['service="api"']
///     remediations: [restart-api]
/// receivers: [{name: ops}]
/// "#, Path::new("am.yml")).unwrap();
/// assert_eq!(cfg.remediations[0].name, "restart-api");
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemediationConfig {
    /// The unique, non-empty name routes refer to.
    pub name: String,
    /// The program and its arguments, run directly (no shell); the alert is on stdin.
    /// Exactly one of `command` and `url`.
    pub command: Option<Vec<String>>,
    /// An `http://` URL to POST the alert to (2xx is success). Exactly one of `command` and
    /// `url`.
    pub url: Option<Secret>,
    /// How long a run may take; a program still running then is killed. Defaults to
    /// [`DEFAULT_REMEDIATION_TIMEOUT`]; not zero.
    #[serde(default = "default_timeout")]
    pub timeout: ModelDuration,
    /// The least time between two runs for the same alert (fingerprint). Defaults to
    /// [`DEFAULT_REMEDIATION_COOLDOWN`].
    #[serde(default = "default_cooldown")]
    pub cooldown: ModelDuration,
    /// The most runs of this action (over all alerts) within `window`. Defaults to
    /// [`DEFAULT_REMEDIATION_MAX_RUNS`]; not zero.
    #[serde(default = "default_max_runs")]
    pub max_runs: u32,
    /// The sliding window `max_runs` counts in. Defaults to
    /// [`DEFAULT_REMEDIATION_WINDOW`]; not zero.
    #[serde(default = "default_window")]
    pub window: ModelDuration,
}

/// Checks the `remediations` list and every route's `remediations` names; errors carry
/// `file:line:column` of the offending text.
pub(super) fn validate(
    actions: &[RemediationConfig],
    root: &RouteConfig,
    text: &str,
    path: &Path,
) -> Result<(), ConfigError> {
    let top = |key: &str| {
        text.lines()
            .position(|l| l.starts_with(key))
            .map_or(1, |i| i + 1)
    };
    let start = top("remediations:");
    let fail = |message: String, needle: &str, from: usize| {
        let at = locate(text, needle, from).or_else(|| locate(text, needle, 1));
        ConfigError {
            file: path.to_owned(),
            line: at.map(|(l, _)| l),
            column: at.map(|(_, c)| c),
            message,
        }
    };
    let mut names: BTreeSet<&str> = BTreeSet::new();
    // Each action is looked for after the previous one; its fields after its name.
    let mut from = start;
    for a in actions {
        if a.name.is_empty() {
            return Err(fail(
                "remediation name must not be empty".into(),
                "name",
                from,
            ));
        }
        let here = locate(text, &a.name, from).map_or(from, |(l, _)| l);
        if !names.insert(&a.name) {
            return Err(fail(
                format!("remediation name {:?} is not unique", a.name),
                &a.name,
                here,
            ));
        }
        from = here + 1;
        let what = |m: &str| format!("remediation {:?}: {m}", a.name);
        match (&a.command, &a.url) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(fail(
                    what("needs exactly one of command and url"),
                    &a.name,
                    here,
                ));
            }
            (Some(argv), None) => {
                if argv.first().is_none_or(String::is_empty) {
                    return Err(fail(
                        what("command must not be empty (a program and its arguments)"),
                        "command",
                        here,
                    ));
                }
            }
            (None, Some(url)) => {
                // The URL may hold a token: never echo it.
                let valid = url.0.parse::<http::Uri>().is_ok_and(|u| {
                    matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
                });
                if !valid {
                    return Err(fail(
                        what("url is not a valid http:// or https:// URL"),
                        "url",
                        here,
                    ));
                }
            }
        }
        if a.timeout.0.is_zero() {
            return Err(fail(what("timeout cannot be zero"), "timeout", here));
        }
        if a.max_runs == 0 {
            return Err(fail(what("max_runs cannot be zero"), "max_runs", here));
        }
        if a.window.0.is_zero() {
            return Err(fail(what("window cannot be zero"), "window", here));
        }
    }
    check_route(root, &names).map_err(|name| {
        fail(
            format!("undefined remediation {name:?} used in route"),
            &name,
            top("route:"),
        )
    })
}

fn check_route(r: &RouteConfig, names: &BTreeSet<&str>) -> Result<(), String> {
    for n in r.remediations.iter().flatten() {
        if !names.contains(n.as_str()) {
            return Err(n.clone());
        }
    }
    r.routes.iter().try_for_each(|c| check_route(c, names))
}

/// The 1-based line and column of the first `needle` on or after line `from` that stands
/// as a word of its own (not inside a longer name).
fn locate(text: &str, needle: &str, from: usize) -> Option<(usize, usize)> {
    let part = |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '.');
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find_map(|(i, l)| {
            l.match_indices(needle)
                .find(|(c, _)| {
                    !l[..*c].chars().next_back().is_some_and(part)
                        && !l[c + needle.len()..].chars().next().is_some_and(part)
                })
                .map(|(c, _)| (i + 1, l[..c].chars().count() + 1))
        })
}

/// Why a run was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// The action ran for this alert less than `cooldown` ago.
    Cooldown,
    /// The action ran `max_runs` times within `window`.
    MaxRuns,
    /// [`REMEDIATION_QUEUE_CAPACITY`] runs were already waiting.
    QueueFull,
}

impl SkipReason {
    /// The `reason` label value: `cooldown`, `max_runs`, `queue_full`.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Cooldown => "cooldown",
            SkipReason::MaxRuns => "max_runs",
            SkipReason::QueueFull => "queue_full",
        }
    }
}
