//! Rule unit tests in promtool's format (`promtool test rules`): input series in the
//! expanding notation, rule files evaluated every `evaluation_interval`, firing alerts and
//! PromQL results compared with what the test expects.
//!
//! Semantics follow `cmd/promtool/unittest.go`: samples are loaded lazily up to each
//! evaluation time (a negative offset cannot see the future); all groups are evaluated at
//! every step from the start to the latest `eval_time`; an alert test at `eval_time` is
//! checked after the evaluation at the step `ts` with `ts <= eval_time < ts + interval`; only
//! firing alerts are compared, with `alertname` added to the expected labels; PromQL tests
//! run after the last evaluation; `for` state restoring is off. `start_timestamp` (newer
//! than promtool 3.5) moves the whole test group in time.

use crate::daemon::model_duration;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::promql::{self, Engine, Labels, MemStorage, Value};
use crate::promqltest::{SeqValue, parse_duration, parse_metric, parse_values};
use crate::rules::{AlertState, GroupState, RuleState, TemplateContext};

/// The outcome of one unit-test file.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every test group passed.
    Passed,
    /// What failed, in promtool's wording where it has one.
    Failed(Vec<String>),
    /// Every test group that ran passed, but some use what this implementation refuses
    /// (native histograms); which, and why.
    Unsupported(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    rule_files: Vec<String>,
    #[serde(default)]
    evaluation_interval: Option<String>,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    fuzzy_compare: bool,
    #[serde(default)]
    tests: Vec<TestGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    promql_expr_test: Vec<PromqlTest>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    #[serde(default)]
    external_url: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    start_timestamp: Option<serde_norway::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    #[serde(default)]
    values: serde_norway::Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTest {
    #[serde(default)]
    eval_time: Option<String>,
    #[serde(default)]
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromqlTest {
    expr: String,
    #[serde(default)]
    eval_time: Option<String>,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpSample {
    #[serde(default)]
    labels: String,
    #[serde(default)]
    value: Option<f64>,
    #[serde(default)]
    histogram: Option<String>,
}

/// Runs one unit-test file.
pub fn run_file(path: &Path) -> Outcome {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return Outcome::Failed(vec![format!("{}: {e}", path.display())]),
    };
    let file: TestFile = match serde_norway::from_str(&text) {
        Ok(f) => f,
        Err(e) => return Outcome::Failed(vec![format!("{}: {e}", path.display())]),
    };
    let base_dir = path.parent().unwrap_or(Path::new("."));
    let eval_interval = match file.evaluation_interval.as_deref().map(parse_duration) {
        None => 60_000,
        Some(Ok(0)) => 60_000,
        Some(Ok(d)) => d,
        Some(Err(e)) => return Outcome::Failed(vec![format!("evaluation_interval: {e}")]),
    };
    let mut order: HashMap<&str, usize> = HashMap::new();
    for (i, g) in file.group_eval_order.iter().enumerate() {
        if order.insert(g, i).is_some() {
            return Outcome::Failed(vec![format!(
                "group name repeated in evaluation order: {g}"
            )]);
        }
    }
    let rule_files = match resolve_rule_files(base_dir, &file.rule_files) {
        Ok(f) => f,
        Err(e) => return Outcome::Failed(vec![e]),
    };
    let mut errors = Vec::new();
    let mut unsupported = Vec::new();
    for (i, tg) in file.tests.iter().enumerate() {
        match run_group(tg, eval_interval, &order, &rule_files, file.fuzzy_compare) {
            Ok(errs) => errors.extend(errs),
            Err(GroupError::Unsupported(why)) => {
                let name = tg
                    .name
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default();
                unsupported.push(format!("test group {}{name}: {why}", i + 1));
            }
            Err(GroupError::Failed(errs)) => errors.extend(errs),
        }
    }
    if !errors.is_empty() {
        Outcome::Failed(errors)
    } else if !unsupported.is_empty() {
        Outcome::Unsupported(unsupported.join("; "))
    } else {
        Outcome::Passed
    }
}

enum GroupError {
    Unsupported(String),
    Failed(Vec<String>),
}

fn resolve_rule_files(base: &Path, patterns: &[String]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in patterns {
        // As promtool: a named file that does not exist is left out (it warns).
        out.extend(
            crate::rules::glob::rule_files(base, p)?
                .into_iter()
                .filter(|f| f.exists()),
        );
    }
    Ok(out)
}

fn duration_of(s: Option<&str>, what: &str) -> Result<i64, GroupError> {
    match s {
        None => Ok(0),
        Some(s) => parse_duration(s).map_err(|e| GroupError::Failed(vec![format!("{what}: {e}")])),
    }
}

fn start_timestamp(v: Option<&serde_norway::Value>) -> Result<i64, GroupError> {
    let bad = |s: String| GroupError::Failed(vec![format!("start_timestamp: {s}")]);
    match v {
        None | Some(serde_norway::Value::Null) => Ok(0),
        Some(serde_norway::Value::Number(n)) => n
            .as_f64()
            .map(|s| (s * 1000.0).round() as i64)
            .ok_or_else(|| bad(n.to_string())),
        Some(serde_norway::Value::String(s)) => {
            crate::promqltest::parse_time(s).map_err(|e| bad(format!("{s:?}: {e}")))
        }
        Some(other) => Err(bad(format!("{other:?}"))),
    }
}

fn run_group(
    tg: &TestGroup,
    eval_interval: i64,
    order: &HashMap<&str, usize>,
    rule_files: &[PathBuf],
    fuzzy: bool,
) -> Result<Vec<String>, GroupError> {
    let interval = match duration_of(tg.interval.as_deref(), "interval")? {
        0 => eval_interval,
        d => d,
    };
    let base = start_timestamp(tg.start_timestamp.as_ref())?;
    let test_name = tg
        .name
        .as_deref()
        .map(|n| format!("    name: {n},\n"))
        .unwrap_or_default();

    // Input samples, sorted by time for lazy loading.
    let mut input: Vec<(i64, Labels, f64)> = Vec::new();
    for s in &tg.input_series {
        let labels = parse_metric(&s.series).map_err(|e| GroupError::Failed(vec![e]))?;
        let values = match &s.values {
            serde_norway::Value::String(v) => v.clone(),
            serde_norway::Value::Number(n) => n.to_string(),
            serde_norway::Value::Null => String::new(),
            other => format!("{other:?}"),
        };
        let values = parse_values(&values)
            .map_err(|e| GroupError::Failed(vec![format!("{}: {e}", s.series)]))?;
        for (i, v) in values.into_iter().enumerate() {
            match v {
                SeqValue::Omitted => {}
                SeqValue::Float(f) => input.push((base + i as i64 * interval, labels.clone(), f)),
                SeqValue::Histogram => {
                    return Err(GroupError::Unsupported(format!(
                        "native histogram input in {}",
                        s.series
                    )));
                }
            }
        }
    }
    if tg
        .promql_expr_test
        .iter()
        .any(|t| t.exp_samples.iter().any(|s| s.histogram.is_some()))
    {
        return Err(GroupError::Unsupported(
            "expected native histogram samples".into(),
        ));
    }
    input.sort_by_key(|(t, _, _)| *t);

    // Rule groups, in group_eval_order first, then file order.
    let mut groups = Vec::new();
    for f in rule_files {
        match crate::rules::load(f) {
            Ok((file, _)) => groups.extend(file.groups),
            Err(errs) => {
                return Err(GroupError::Failed(
                    errs.iter().map(ToString::to_string).collect(),
                ));
            }
        }
    }
    groups.sort_by_key(|g| order.get(g.name.as_str()).copied().unwrap_or(0));
    let mut states: Vec<GroupState> = groups.into_iter().map(GroupState::new).collect();
    let templates = TemplateContext {
        external_labels: tg.external_labels.clone(),
        external_url: tg.external_url.clone().unwrap_or_default(),
    };

    let mut alert_tests: BTreeMap<i64, Vec<&AlertTest>> = BTreeMap::new();
    for a in &tg.alert_rule_test {
        let t = duration_of(a.eval_time.as_deref(), "eval_time")?;
        if a.alertname.is_empty() {
            let in_group = tg
                .name
                .as_deref()
                .map(|n| format!(" (in TestGroup {n})"))
                .unwrap_or_default();
            return Err(GroupError::Failed(vec![format!(
                "an item under alert_rule_test misses required attribute alertname at eval_time {}{in_group}",
                model_duration(t)
            )]));
        }
        alert_tests.entry(t).or_default().push(a);
    }
    let mut max_eval = alert_tests.keys().copied().max().unwrap_or(0);
    let mut promql_times = Vec::with_capacity(tg.promql_expr_test.len());
    for p in &tg.promql_expr_test {
        let t = duration_of(p.eval_time.as_deref(), "eval_time")?;
        max_eval = max_eval.max(t);
        promql_times.push(t);
    }

    let engine = Engine::default()
        .default_subquery_step(std::time::Duration::from_millis(eval_interval as u64));
    let mut store = MemStorage::new();
    let mut loaded = 0;
    let mut errors = Vec::new();
    let mut pending_checks = alert_tests.iter().peekable();
    let mut ts = base;
    while ts <= base + max_eval {
        while loaded < input.len() && input[loaded].0 <= ts {
            let (t, ls, v) = &input[loaded];
            store.add(ls, *t, *v);
            loaded += 1;
        }
        let mut eval_errors = Vec::new();
        for g in &mut states {
            for outcome in g.eval(&engine, &mut store, ts, 0, &templates) {
                if let Some(e) = outcome.error {
                    eval_errors.push(format!(
                        "    rule: {}, time: {}, err: {e}",
                        outcome.rule,
                        go_duration(ts)
                    ));
                }
            }
        }
        if !eval_errors.is_empty() {
            errors.extend(eval_errors);
            return Ok(errors);
        }
        while let Some(&(&t, _)) = pending_checks.peek() {
            if !(ts - base <= t && t < ts - base + eval_interval) {
                break;
            }
            if let Some((_, tests)) = pending_checks.next() {
                for test in tests {
                    check_alerts(&states, test, t, &test_name, &mut errors);
                }
            }
        }
        ts += eval_interval;
    }

    for (p, t) in tg.promql_expr_test.iter().zip(promql_times) {
        let at = base + t;
        let expr = match promql::parse(&p.expr) {
            Ok(e) => e,
            Err(e) => {
                errors.push(format!(
                    "    expr: {:?}, time: {}, err: {e}",
                    p.expr,
                    model_duration(t)
                ));
                continue;
            }
        };
        let got = match engine.instant(&store, &expr, at) {
            Ok(Value::Vector(v)) => v.into_iter().map(|s| (s.labels, s.v)).collect(),
            Ok(Value::Scalar { v, .. }) => vec![(Labels::new(), v)],
            Ok(_) => {
                errors.push(format!(
                    "    expr: {:?}, time: {}, err: rule result is not a vector or scalar",
                    p.expr,
                    model_duration(t)
                ));
                continue;
            }
            Err(e) => {
                errors.push(format!(
                    "    expr: {:?}, time: {}, err: {e}",
                    p.expr,
                    model_duration(t)
                ));
                continue;
            }
        };
        let mut expected = Vec::with_capacity(p.exp_samples.len());
        let mut bad = None;
        for s in &p.exp_samples {
            let parsed = if s.labels.trim().is_empty() {
                Ok(Labels::new())
            } else {
                parse_metric(&s.labels)
            };
            match parsed {
                Ok(l) => expected.push((l, s.value.unwrap_or(0.0))),
                Err(e) => {
                    bad = Some(format!("labels {:?}: {e}", s.labels));
                    break;
                }
            }
        }
        if let Some(e) = bad {
            errors.push(format!(
                "    expr: {:?}, time: {}, err: {e}",
                p.expr,
                model_duration(t)
            ));
            continue;
        }
        let mut got: Vec<(Labels, f64)> = got;
        got.sort_by(|a, b| a.0.cmp(&b.0));
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        let same = got.len() == expected.len()
            && got.iter().zip(&expected).all(|((gl, gv), (el, ev))| {
                gl == el
                    && if fuzzy {
                        within_one_ulp(*gv, *ev)
                    } else {
                        gv == ev
                    }
            });
        if !same {
            errors.push(format!(
                "{test_name}    expr: {:?}, time: {},\n        exp: {}\n        got: {}",
                p.expr,
                model_duration(t),
                samples_string(&expected),
                samples_string(&got)
            ));
        }
    }
    Ok(errors)
}

/// `fuzzy_compare`: equal, or neighbours (a difference in the last bit of the mantissa).
fn within_one_ulp(a: f64, b: f64) -> bool {
    a == b || a.next_up() == b || a.next_down() == b
}

/// An alert's labels and annotations, each sorted by name, empty values kept: promtool
/// compares what the rule made with `labels.FromMap` of what the test expects, which keeps an
/// expected empty value (so `exp_labels: {severity: ""}` never matches an alert without one),
/// and Prometheus keeps an annotation that expanded to nothing.
type AlertView = (Vec<(String, String)>, Vec<(String, String)>);

/// `pairs` sorted by name, the last of a repeated name kept.
fn sorted_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    let map: BTreeMap<String, String> = pairs.into_iter().collect();
    map.into_iter().collect()
}

/// Go's `labels.Labels.String()` of `pairs`: `{a="1", b=""}`.
fn pairs_go_string(pairs: &[(String, String)]) -> String {
    let body: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", body.join(", "))
}

fn check_alerts(
    states: &[GroupState],
    test: &AlertTest,
    t: i64,
    test_name: &str,
    errors: &mut Vec<String>,
) {
    let mut got: Vec<AlertView> = Vec::new();
    for g in states {
        for r in &g.rules {
            if let RuleState::Alerting(a) = r
                && a.name == test.alertname
            {
                for alert in a.alerts() {
                    if alert.state == AlertState::Firing {
                        got.push((
                            sorted_pairs(
                                alert
                                    .labels
                                    .iter()
                                    .map(|(k, v)| (k.to_owned(), v.to_owned())),
                            ),
                            sorted_pairs(alert.annotations.clone()),
                        ));
                    }
                }
            }
        }
    }
    let mut expected: Vec<AlertView> = test
        .exp_alerts
        .iter()
        .map(|a| {
            let labels = a
                .exp_labels
                .clone()
                .into_iter()
                .chain([("alertname".to_owned(), test.alertname.clone())]);
            (
                sorted_pairs(labels),
                sorted_pairs(a.exp_annotations.clone()),
            )
        })
        .collect();
    got.sort();
    expected.sort();
    if got != expected {
        errors.push(format!(
            "{test_name}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
            test.alertname,
            model_duration(t),
            alerts_string(&expected),
            alerts_string(&got)
        ));
    }
}

fn alerts_string(alerts: &[AlertView]) -> String {
    if alerts.is_empty() {
        return "[]".into();
    }
    // promtool's layout: entries separated by a comma, each indented under the list's.
    let entries: Vec<String> = alerts
        .iter()
        .enumerate()
        .map(|(i, (labels, ann))| {
            format!(
                "            {i}:\n              Labels:{}\n              Annotations:{}",
                pairs_go_string(labels),
                pairs_go_string(ann)
            )
        })
        .collect();
    format!("[\n{}\n            ]", entries.join(",\n"))
}

fn samples_string(samples: &[(Labels, f64)]) -> String {
    if samples.is_empty() {
        return "nil".into();
    }
    samples
        .iter()
        .map(|(l, v)| {
            format!(
                "{} {}",
                l.go_string(),
                crate::template::gofmt::format_float(*v, 'E', -1)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Go's `time.Duration.String()` of a duration in milliseconds (promtool's rule-error times;
/// its eval times are `model.Duration`s, [`model_duration`]): `0s`, `1m0s`, `1h2m3.5s`.
pub(crate) fn go_duration(ms: i64) -> String {
    crate::template::gotime::duration_string(ms.saturating_mul(1_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(60_000), "1m0s");
        assert_eq!(go_duration(3_723_500), "1h2m3.5s");
        assert_eq!(go_duration(500), "500ms");
        assert_eq!(go_duration(86_400_000), "24h0m0s");
    }

    #[test]
    fn fuzzy_compare_allows_one_ulp() {
        assert!(within_one_ulp(2.9999999999999996, 3.0));
        assert!(within_one_ulp(3.0000000000000004, 3.0));
        assert!(!within_one_ulp(2.9999999999999987, 3.0));
    }
}
