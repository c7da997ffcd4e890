//! The rule manager's own metrics, with Prometheus's names, help and `rule_group` label
//! (`file;name`), so the alerts teams already run on a Prometheus's rule evaluation (the
//! `PrometheusRuleFailures` and `PrometheusMissingRuleEvaluations` of the Prometheus
//! mixin, say) work on `axi-alert run` as they are.
//!
//! They are kept here, not in the metrics registry: a group removed by a reload loses its
//! series, as Prometheus deletes them, instead of leaving a last-evaluation time that stops
//! moving and looks like a stuck group. Prometheus's two summaries without a `rule_group`
//! (`prometheus_rule_evaluation_duration_seconds`, `prometheus_rule_group_duration_seconds`)
//! are not served.

use std::collections::BTreeMap;
use std::time::Duration;

use axi_obs_core::metrics::{Family, MetricKind, Series, Value};

use crate::rules::RuleOutcome;

/// The counters and last values of one group.
#[derive(Debug, Default, Clone, PartialEq)]
struct GroupStats {
    interval_ms: i64,
    rules: usize,
    /// The evaluation timestamp of the last evaluation (ms).
    last_ts: Option<i64>,
    last_duration: Duration,
    last_rule_duration_sum: Duration,
    last_samples: usize,
    last_restore_duration: Option<Duration>,
    iterations: u64,
    missed: u64,
    evaluations: u64,
    failures: u64,
    /// When the last evaluation started (wall clock, ms), for `/api/v1/rules`.
    last_started_ms: Option<i64>,
    /// Each rule's name, error and duration at the last evaluation, in file order.
    last_rules: Vec<RuleRun>,
}

/// One rule's last evaluation, as `/api/v1/rules` shows it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct RuleRun {
    pub name: String,
    pub error: Option<String>,
    /// When it started (wall clock, ms).
    pub started_ms: i64,
    pub duration: Duration,
}

/// A group's last evaluation, as `/api/v1/rules` shows it.
pub(super) struct GroupRun<'a> {
    pub started_ms: i64,
    pub duration: Duration,
    pub rules: &'a [RuleRun],
}

/// How a family reads its value off a group's statistics (none: no series for the group).
type Read = dyn Fn(&GroupStats) -> Option<Value>;

fn counter(n: u64) -> Option<Value> {
    Some(Value::Counter(n))
}

fn gauge(v: f64) -> Option<Value> {
    Some(Value::Gauge(v))
}

/// Every loaded group's statistics, by group key (`file;name`).
#[derive(Debug, Default)]
pub(super) struct GroupMetrics {
    groups: BTreeMap<String, GroupStats>,
}

/// One evaluation of a group, as the evaluation loop saw it.
pub(super) struct Evaluation<'a> {
    /// The group's key.
    pub key: &'a str,
    /// Its interval (ms).
    pub interval_ms: i64,
    /// The evaluation timestamp (ms).
    pub ts: i64,
    /// How long the whole evaluation took.
    pub duration: Duration,
    /// What each rule did.
    pub outcomes: &'a [RuleOutcome],
    /// When the evaluation started (wall clock, ms).
    pub started_ms: i64,
}

impl GroupMetrics {
    /// Counts one evaluation. Slots skipped since the previous one (the evaluation loop was
    /// late by more than an interval) count as missed iterations, and as scheduled ones,
    /// as Prometheus counts them.
    pub(super) fn evaluated(&mut self, e: &Evaluation<'_>) {
        let s = self.groups.entry(e.key.to_owned()).or_default();
        let missed = match s.last_ts {
            Some(last) if e.interval_ms > 0 && e.ts > last => {
                u64::try_from((e.ts - last) / e.interval_ms - 1).unwrap_or(0)
            }
            _ => 0,
        };
        s.missed += missed;
        s.iterations += missed + 1;
        s.interval_ms = e.interval_ms;
        s.rules = e.outcomes.len();
        s.last_ts = Some(e.ts);
        s.last_duration = e.duration;
        s.last_rule_duration_sum = e.outcomes.iter().map(|o| o.duration).sum();
        s.last_samples = e.outcomes.iter().map(|o| o.samples).sum();
        s.evaluations += e.outcomes.len() as u64;
        s.failures += e.outcomes.iter().filter(|o| o.error.is_some()).count() as u64;
        s.last_started_ms = Some(e.started_ms);
        // Rules run one after the other: each started when the ones before it ended.
        let mut at = Duration::ZERO;
        s.last_rules = e
            .outcomes
            .iter()
            .map(|o| {
                let run = RuleRun {
                    name: o.rule.clone(),
                    error: o.error.as_ref().map(ToString::to_string),
                    started_ms: e.started_ms + at.as_millis() as i64,
                    duration: o.duration,
                };
                at += o.duration;
                run
            })
            .collect();
    }

    /// Forgets the last results of a group's rules (a reload changed them).
    pub(super) fn forget_rules(&mut self, key: &str) {
        if let Some(s) = self.groups.get_mut(key) {
            s.last_rules.clear();
        }
    }

    /// The group's last evaluation, if it ran since it was loaded.
    pub(super) fn last_run(&self, key: &str) -> Option<GroupRun<'_>> {
        let s = self.groups.get(key)?;
        Some(GroupRun {
            started_ms: s.last_started_ms?,
            duration: s.last_duration,
            rules: &s.last_rules,
        })
    }

    /// Records how long restoring the group's `for` state took.
    pub(super) fn restored(&mut self, key: &str, took: Duration) {
        self.groups
            .entry(key.to_owned())
            .or_default()
            .last_restore_duration = Some(took);
    }

    /// Forgets the groups a reload removed.
    pub(super) fn retain<'a>(&mut self, keys: impl IntoIterator<Item = &'a str>) {
        let keep: std::collections::HashSet<&str> = keys.into_iter().collect();
        self.groups.retain(|k, _| keep.contains(k.as_str()));
    }

    /// The families, one series per group (none when no group ran yet), for axi-obs-core's
    /// encoder.
    pub(super) fn families(&self) -> Vec<Family> {
        if self.groups.is_empty() {
            return Vec::new();
        }
        let families: [(&str, MetricKind, &str, &Read); 11] = [
            (
                "prometheus_rule_evaluation_failures_total",
                MetricKind::Counter,
                "The total number of rule evaluation failures.",
                &|s| counter(s.failures),
            ),
            (
                "prometheus_rule_evaluations_total",
                MetricKind::Counter,
                "The total number of rule evaluations.",
                &|s| counter(s.evaluations),
            ),
            (
                "prometheus_rule_group_interval_seconds",
                MetricKind::Gauge,
                "The interval of a rule group.",
                &|s| gauge(s.interval_ms as f64 / 1e3),
            ),
            (
                "prometheus_rule_group_iterations_missed_total",
                MetricKind::Counter,
                "The total number of rule group evaluations missed due to slow rule group evaluation.",
                &|s| counter(s.missed),
            ),
            (
                "prometheus_rule_group_iterations_total",
                MetricKind::Counter,
                "The total number of scheduled rule group evaluations, whether executed or missed.",
                &|s| counter(s.iterations),
            ),
            (
                "prometheus_rule_group_last_duration_seconds",
                MetricKind::Gauge,
                "The duration of the last rule group evaluation.",
                &|s| gauge(s.last_duration.as_secs_f64()),
            ),
            (
                "prometheus_rule_group_last_evaluation_samples",
                MetricKind::Gauge,
                "The number of samples returned during the last rule group evaluation.",
                &|s| gauge(s.last_samples as f64),
            ),
            (
                "prometheus_rule_group_last_evaluation_timestamp_seconds",
                MetricKind::Gauge,
                "The timestamp of the last rule group evaluation in seconds.",
                &|s| s.last_ts.and_then(|t| gauge(t as f64 / 1e3)),
            ),
            (
                "prometheus_rule_group_last_restore_duration_seconds",
                MetricKind::Gauge,
                "The duration of the last alert rules alerts restoration using the `ALERTS_FOR_STATE` series.",
                &|s| s.last_restore_duration.and_then(|d| gauge(d.as_secs_f64())),
            ),
            (
                "prometheus_rule_group_last_rule_duration_sum_seconds",
                MetricKind::Gauge,
                "The sum of time in seconds it took to evaluate each rule in the group regardless of concurrency. This should be higher than the group duration if rules are evaluated concurrently.",
                &|s| gauge(s.last_rule_duration_sum.as_secs_f64()),
            ),
            (
                "prometheus_rule_group_rules",
                MetricKind::Gauge,
                "The number of rules.",
                &|s| gauge(s.rules as f64),
            ),
        ];
        families
            .into_iter()
            .map(|(name, kind, help, get)| Family {
                name: name.to_owned(),
                kind,
                unit: None,
                help: Some(help.to_owned()),
                series: self
                    .groups
                    .iter()
                    .filter_map(|(key, s)| {
                        Some(Series {
                            labels: vec![("rule_group".to_owned(), key.clone())],
                            value: get(s)?,
                        })
                    })
                    .collect(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::EvalError;

    fn outcome(samples: usize, failed: bool) -> RuleOutcome {
        RuleOutcome {
            rule: "r".into(),
            samples,
            error: failed.then(|| EvalError::new("boom")),
            duration: Duration::from_millis(1),
        }
    }

    fn render(m: &GroupMetrics) -> String {
        axi_obs_core::metrics::render_families(&m.families())
    }

    fn eval<'a>(key: &'a str, ts: i64, outcomes: &'a [RuleOutcome]) -> Evaluation<'a> {
        Evaluation {
            key,
            interval_ms: 10_000,
            ts,
            duration: Duration::from_millis(3),
            outcomes,
            started_ms: ts,
        }
    }

    #[test]
    fn rules_are_forgotten_and_the_group_kept() {
        let mut m = GroupMetrics::default();
        let outcomes = [outcome(2, false), outcome(0, true)];
        m.evaluated(&eval("r.yml;g", 1_000_000, &outcomes));
        let run = m.last_run("r.yml;g").unwrap();
        assert_eq!(run.rules.len(), 2);
        assert_eq!(
            run.rules[1].started_ms,
            1_000_000 + run.rules[0].duration.as_millis() as i64
        );
        m.forget_rules("r.yml;g");
        let run = m.last_run("r.yml;g").unwrap();
        assert!(run.rules.is_empty());
        assert_eq!(run.started_ms, 1_000_000);
    }

    #[test]
    fn counts_evaluations_failures_and_missed_slots() {
        let mut m = GroupMetrics::default();
        let outcomes = [outcome(2, false), outcome(0, true)];
        m.evaluated(&eval("r.yml;g", 1_000_000, &outcomes));
        m.evaluated(&eval("r.yml;g", 1_010_000, &outcomes));
        // Two slots skipped (the loop was 20 s late).
        m.evaluated(&eval("r.yml;g", 1_040_000, &outcomes));
        let s = &m.groups["r.yml;g"];
        assert_eq!((s.iterations, s.missed), (5, 2));
        assert_eq!((s.evaluations, s.failures, s.last_samples), (6, 3, 2));
        let text = render(&m);
        for line in [
            "prometheus_rule_group_iterations_missed_total{rule_group=\"r.yml;g\"} 2",
            "prometheus_rule_group_iterations_total{rule_group=\"r.yml;g\"} 5",
            "prometheus_rule_evaluation_failures_total{rule_group=\"r.yml;g\"} 3",
            "prometheus_rule_group_interval_seconds{rule_group=\"r.yml;g\"} 10",
            "prometheus_rule_group_last_evaluation_timestamp_seconds{rule_group=\"r.yml;g\"} 1040",
            "prometheus_rule_group_last_duration_seconds{rule_group=\"r.yml;g\"} 0.003",
            "prometheus_rule_group_rules{rule_group=\"r.yml;g\"} 2",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        // Never restored: no restore duration line, but its family is described.
        assert!(!text.contains("prometheus_rule_group_last_restore_duration_seconds{"));
        m.restored("r.yml;g", Duration::from_millis(1));
        let text = render(&m);
        assert!(text.contains(
            "prometheus_rule_group_last_restore_duration_seconds{rule_group=\"r.yml;g\"} 0.001"
        ));
    }

    #[test]
    fn a_removed_group_loses_its_series_and_keys_are_escaped() {
        let mut m = GroupMetrics::default();
        m.evaluated(&eval("a.yml;kept", 0, &[]));
        m.evaluated(&eval("a.yml;say \"hi\"\\", 0, &[]));
        let text = render(&m);
        assert!(
            text.contains("{rule_group=\"a.yml;say \\\"hi\\\"\\\\\"}"),
            "{text}"
        );
        m.retain(["a.yml;kept"]);
        let text = render(&m);
        assert!(!text.contains("say"), "{text}");
        assert!(text.contains("a.yml;kept"));
        m.retain([]);
        let text = render(&m);
        assert_eq!(text, "");
        assert!(m.families().is_empty());
    }
}
