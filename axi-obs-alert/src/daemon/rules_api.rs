//! `/api/v1/rules` as Prometheus answers it: every group with its rules, each rule's query,
//! health, last error, evaluation time and (alerting rules) state and active alerts. Grafana's
//! alert list and rule views, and the portal, read it.
//!
//! Filters as Prometheus 3.5: `type` (`alert` or `record`), `rule_name[]`, `rule_group[]`,
//! `file[]`, `match[]` (on the rules' labels) and `exclude_alerts`. Groups left without a
//! rule are not listed.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use serde_json::{Value, json};

use super::group_metrics::GroupRun;
use super::query_api::{ApiError, Params, answer, match_sets};
use super::{Shared, alert_json, group_interval_ms, lock};
use crate::delivery::rfc3339_nano;
use crate::promql::{Labels, Matcher};
use crate::rules::{AlertState, GroupState, RuleState};
use crate::template::gofmt::parse_bool;

/// Go's zero `time.Time` in JSON: a rule or group not evaluated yet.
const NEVER: &str = "0001-01-01T00:00:00Z";

/// What the request asks for.
struct Filter {
    alerts: bool,
    recordings: bool,
    exclude_alerts: bool,
    names: HashSet<String>,
    groups: HashSet<String>,
    files: HashSet<String>,
    matchers: Vec<Vec<Matcher>>,
}

impl Filter {
    fn parse(p: &Params) -> Result<Filter, ApiError> {
        let typ = p.get("type").to_ascii_lowercase();
        if !matches!(typ.as_str(), "" | "alert" | "record") {
            return Err(ApiError::param(
                "type",
                format!("not supported value {typ:?}"),
            ));
        }
        // Lower-cased first, as Prometheus does (`TRUE`, `True` and `tRuE` alike).
        let exclude_alerts = match p.get("exclude_alerts").to_ascii_lowercase().as_str() {
            "" => false,
            v => parse_bool(v).ok_or_else(|| {
                ApiError::param(
                    "exclude_alerts",
                    format!(
                        "error converting exclude_alerts: strconv.ParseBool: parsing {v:?}: invalid syntax"
                    ),
                )
            })?,
        };
        let set = |name: &str| -> HashSet<String> {
            p.all(name).into_iter().map(str::to_owned).collect()
        };
        Ok(Filter {
            alerts: typ != "record",
            recordings: typ != "alert",
            exclude_alerts,
            names: set("rule_name[]"),
            groups: set("rule_group[]"),
            files: set("file[]"),
            matchers: match_sets(&p.all("match[]"))?,
        })
    }

    fn wants_group(&self, g: &GroupState) -> bool {
        (self.groups.is_empty() || self.groups.contains(&g.group.name))
            && (self.files.is_empty() || self.files.contains(&g.file.display().to_string()))
    }

    fn wants_rule(&self, name: &str, labels: &std::collections::BTreeMap<String, String>) -> bool {
        if !self.names.is_empty() && !self.names.contains(name) {
            return false;
        }
        if self.matchers.is_empty() {
            return true;
        }
        let labels = Labels::from_pairs(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.matchers
            .iter()
            .any(|set| set.iter().all(|m| m.matches_labels(&labels)))
    }
}

/// A float as Go's `encoding/json` writes it: whole numbers without a fraction (`1`, not
/// `1.0`).
fn go_number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        (v as i64).into()
    } else {
        v.into()
    }
}

fn seconds(d: std::time::Duration) -> Value {
    go_number(d.as_secs_f64())
}

fn millis_as_seconds(ms: i64) -> Value {
    go_number(ms as f64 / 1e3)
}

/// `health`, `lastError`, `evaluationTime` and `lastEvaluation` of rule `i` of a group, from
/// its last evaluation ("unknown" before one, or when a reload changed the rule's place).
fn rule_run(run: Option<&GroupRun<'_>>, i: usize, name: &str) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    match run.and_then(|r| r.rules.get(i)).filter(|r| r.name == name) {
        Some(r) => {
            m.insert(
                "health".into(),
                if r.error.is_some() { "err" } else { "ok" }.into(),
            );
            if let Some(e) = &r.error {
                m.insert("lastError".into(), e.clone().into());
            }
            m.insert("evaluationTime".into(), seconds(r.duration));
            m.insert("lastEvaluation".into(), rfc3339_nano(r.started_ms).into());
        }
        None => {
            m.insert("health".into(), "unknown".into());
            m.insert("evaluationTime".into(), 0.into());
            m.insert("lastEvaluation".into(), NEVER.into());
        }
    }
    m
}

fn group_json(
    g: &GroupState,
    run: Option<&GroupRun<'_>>,
    default_interval: i64,
    f: &Filter,
) -> Value {
    let mut rules = Vec::new();
    for (i, (def, state)) in g.group.rules.iter().zip(&g.rules).enumerate() {
        let query = def.expr.to_string();
        let mut rule = match state {
            RuleState::Alerting(a) => {
                if !f.alerts || !f.wants_rule(&a.name, &a.labels) {
                    continue;
                }
                let alerts = a.alerts();
                let rule_state = alerts
                    .iter()
                    .map(|al| match al.state {
                        AlertState::Firing => 2,
                        AlertState::Pending => 1,
                        AlertState::Inactive => 0,
                    })
                    .max()
                    .map_or("inactive", |s| match s {
                        2 => "firing",
                        1 => "pending",
                        _ => "inactive",
                    });
                let alerts: Value = if f.exclude_alerts {
                    Value::Null
                } else {
                    alerts
                        .into_iter()
                        .map(alert_json)
                        .collect::<Vec<_>>()
                        .into()
                };
                json!({
                    "state": rule_state,
                    "name": a.name,
                    "query": query,
                    "duration": millis_as_seconds(a.for_ms),
                    "keepFiringFor": millis_as_seconds(a.keep_firing_for_ms),
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "alerts": alerts,
                    "type": "alerting",
                })
            }
            RuleState::Recording { name, labels } => {
                if !f.recordings || !f.wants_rule(name, labels) {
                    continue;
                }
                let mut rule = json!({
                    "name": name,
                    "query": query,
                    "type": "recording",
                });
                // `omitempty` in Prometheus's `RecordingRule`.
                if let (false, Some(obj)) = (labels.is_empty(), rule.as_object_mut()) {
                    obj.insert("labels".into(), json!(labels));
                }
                rule
            }
        };
        if let Some(obj) = rule.as_object_mut() {
            obj.extend(rule_run(run, i, def.kind.name()));
        }
        rules.push(rule);
    }
    json!({
        "name": g.group.name,
        "file": g.file.display().to_string(),
        "rules": rules,
        "interval": millis_as_seconds(group_interval_ms(g, default_interval)),
        "limit": g.group.limit,
        "evaluationTime": run.map_or_else(|| 0.into(), |r| seconds(r.duration)),
        "lastEvaluation": run.map_or_else(|| NEVER.to_owned(), |r| rfc3339_nano(r.started_ms)),
    })
}

/// `GET` or `POST /api/v1/rules`. On a blocking thread: the rules are locked for a whole
/// round of evaluation, which must not hold up the runtime's workers.
pub(super) async fn rules(State(shared): State<Arc<Shared>>, p: Params) -> Response {
    let answered = tokio::task::spawn_blocking(move || {
        p.form_error()?;
        let f = Filter::parse(&p)?;
        let rules = lock(&shared.rules);
        let metrics = lock(&shared.group_metrics);
        let default_interval = rules.config.evaluation_interval_ms;
        let groups: Vec<Value> = rules
            .groups
            .iter()
            .filter(|g| f.wants_group(g))
            .map(|g| group_json(g, metrics.last_run(&g.key()).as_ref(), default_interval, &f))
            .filter(|g| g["rules"].as_array().is_some_and(|r| !r.is_empty()))
            .collect();
        Ok(json!({ "groups": groups }).to_string())
    })
    .await;
    answer(answered.unwrap_or_else(|e| Err(ApiError::internal(e))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_as_go_writes_them() {
        assert_eq!(go_number(1.0).to_string(), "1");
        assert_eq!(go_number(3600.0).to_string(), "3600");
        assert_eq!(go_number(0.25).to_string(), "0.25");
        assert_eq!(
            seconds(std::time::Duration::from_micros(1500)).to_string(),
            "0.0015"
        );
    }

    #[test]
    fn filters_are_checked() {
        let p = |pairs: &[(&str, &str)]| {
            Params::from_pairs(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            )
        };
        let f = Filter::parse(&p(&[("type", "ALERT"), ("exclude_alerts", "1")])).unwrap();
        assert!(f.alerts && !f.recordings && f.exclude_alerts);
        let e = Filter::parse(&p(&[("type", "alerts")])).err().unwrap();
        assert_eq!(
            e.message,
            "invalid parameter \"type\": not supported value \"alerts\""
        );
        assert!(Filter::parse(&p(&[("match[]", "{a=~\".*\"}")])).is_err());
    }
}
