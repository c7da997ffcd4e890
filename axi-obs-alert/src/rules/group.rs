//! Evaluating a rule group: rules in file order at one timestamp, recording rules writing
//! their output back so later rules of the same evaluation see it, alert state advanced, and
//! staleness markers for series that stopped.

use std::collections::{BTreeMap, HashSet};

use crate::promql::value::stale_nan;
use crate::promql::{self, Engine, EvalError, Labels, MemStorage, Sample, Storage, Value};
use crate::template::{self, Env, QuerySample};

use super::alerting::AlertingState;
use super::file::{Rule, RuleGroup, RuleKind};

/// The state of one rule of a group.
#[derive(Debug, Clone)]
pub enum RuleState {
    /// An alerting rule and its alerts.
    Alerting(AlertingState),
    /// A recording rule: the name and labels it writes.
    Recording {
        /// The recorded metric name.
        name: String,
        /// Labels set on every output sample (group labels merged in).
        labels: BTreeMap<String, String>,
    },
}

/// Answers one rule's expression: given the parsed expression, its text, the query time (ms)
/// and the local store. [`GroupState::eval`] uses the local engine; a remote Prometheus is
/// another answer.
pub type RuleQuery<'a> =
    dyn Fn(&promql::Expr, &str, i64, &MemStorage) -> Result<Value, EvalError> + 'a;

/// What alert templates see besides the alert itself.
#[derive(Debug, Clone, Default)]
pub struct TemplateContext {
    /// `$externalLabels`.
    pub external_labels: BTreeMap<String, String>,
    /// `$externalURL`, and `externalURL`/`pathPrefix`/`graphLink` in templates.
    pub external_url: String,
}

impl TemplateContext {
    /// Expands one label or annotation of alert `alert` as Prometheus's rule manager does;
    /// the template's `query` function evaluates over `store` at `ts`.
    #[allow(clippy::too_many_arguments)]
    pub fn expand(
        &self,
        alert: &str,
        labels: &Labels,
        value: f64,
        text: &str,
        engine: &Engine,
        store: &dyn Storage,
        ts: i64,
    ) -> String {
        if !text.contains("{{") {
            return text.to_owned();
        }
        let query = |q: &str| -> Result<Vec<QuerySample>, String> {
            let expr = promql::parse(q).map_err(|e| e.to_string())?;
            let to_map = |l: Labels| -> BTreeMap<String, String> {
                l.iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            };
            match engine
                .instant(store, &expr, ts)
                .map_err(|e| e.to_string())?
            {
                Value::Vector(v) => Ok(v
                    .into_iter()
                    .map(|s| QuerySample {
                        labels: to_map(s.labels),
                        value: s.v,
                    })
                    .collect()),
                Value::Scalar { v, .. } => Ok(vec![QuerySample {
                    labels: BTreeMap::new(),
                    value: v,
                }]),
                other => Err(format!(
                    "query result is not a vector or scalar: {}",
                    other.type_name()
                )),
            }
        };
        let env = Env::new(&self.external_url, ts).with_query(&query);
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        template::expand_alert(
            &format!("__alert_{alert}"),
            text,
            &labels,
            &self.external_labels,
            &self.external_url,
            value,
            &env,
        )
    }
}

/// The outcome of one rule in one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleOutcome {
    /// The rule's name.
    pub rule: String,
    /// How many samples it wrote.
    pub samples: usize,
    /// Its error, if it failed (its output is then empty, as Prometheus).
    pub error: Option<EvalError>,
    /// How long it took: the query, the alert state, writing the output.
    pub duration: std::time::Duration,
}

/// A group and the state of its rules across evaluations.
#[derive(Debug, Clone)]
pub struct GroupState {
    /// The group as loaded.
    pub group: RuleGroup,
    /// The file it was loaded from (empty when it came from elsewhere); with the name, what
    /// tells two groups apart ([`key`](Self::key)).
    pub file: std::path::PathBuf,
    /// Per rule, in file order.
    pub rules: Vec<RuleState>,
    /// Per rule, the series written at the previous evaluation (for staleness markers).
    previous: Vec<HashSet<Labels>>,
    /// Per rule, whether its last evaluation failed (its alerts are then not sent).
    failed: Vec<bool>,
}

impl GroupState {
    /// Prepares a loaded group; group labels are merged under each rule's own labels.
    pub fn new(group: RuleGroup) -> Self {
        let rules = group
            .rules
            .iter()
            .map(|r| {
                let mut labels = group.labels.clone();
                labels.extend(r.labels.clone());
                match &r.kind {
                    RuleKind::Alert(name) => RuleState::Alerting(AlertingState::new(
                        name.clone(),
                        r.for_.as_millis() as i64,
                        r.keep_firing_for.as_millis() as i64,
                        labels,
                        r.annotations.clone(),
                    )),
                    RuleKind::Record(name) => RuleState::Recording {
                        name: name.clone(),
                        labels,
                    },
                }
            })
            .collect();
        let previous = vec![HashSet::new(); group.rules.len()];
        let failed = vec![false; group.rules.len()];
        GroupState {
            group,
            file: std::path::PathBuf::new(),
            rules,
            previous,
            failed,
        }
    }

    /// The same group, loaded from `file`.
    #[must_use]
    pub fn from_file(mut self, file: &std::path::Path) -> Self {
        self.file = file.to_path_buf();
        self
    }

    /// The series rule `i` wrote at its last evaluation.
    pub fn written(&self, i: usize) -> impl Iterator<Item = &Labels> {
        self.previous.get(i).into_iter().flatten()
    }

    /// The series every rule of the group wrote at its last evaluation.
    pub fn all_written(&self) -> impl Iterator<Item = &Labels> {
        self.previous.iter().flatten()
    }

    /// Whether `other` is the same group: same file, same name (see [`key`](Self::key)).
    pub fn same_group(&self, other: &GroupState) -> bool {
        self.file == other.file && self.group.name == other.group.name
    }

    /// The alerting rules whose last evaluation succeeded, with their definitions: the ones
    /// whose alerts are sent (Prometheus sends nothing for a failed rule).
    pub fn sendable(&mut self) -> impl Iterator<Item = (&mut AlertingState, &Rule)> {
        self.rules
            .iter_mut()
            .zip(&self.group.rules)
            .zip(&self.failed)
            .filter_map(|((r, def), failed)| match r {
                RuleState::Alerting(a) if !failed => Some((a, def)),
                _ => None,
            })
    }

    /// Takes over `series` as written by rule `i` (a reload carrying a rule over), so they
    /// get staleness markers when it stops writing them.
    pub fn carry_written(&mut self, i: usize, series: impl IntoIterator<Item = Labels>) {
        if let Some(p) = self.previous.get_mut(i) {
            p.extend(series);
        }
    }

    /// The evaluation slot at `now_ms` of this group evaluated every `interval_ms`:
    /// Prometheus's slot for the same file path and group name ([`slot`](super::slot)).
    pub fn slot(&self, now_ms: i64, interval_ms: i64) -> super::slot::Slot {
        super::slot::slot(
            &self.group.name,
            &self.file.to_string_lossy(),
            now_ms,
            interval_ms,
        )
    }

    /// What identifies the group: `file;name`, as Prometheus's rule manager keys groups
    /// (groups of one name may live in several files).
    pub fn key(&self) -> String {
        format!("{};{}", self.file.display(), self.group.name)
    }

    /// Whether rule `i`'s last evaluation failed. As Prometheus, a failed rule's alerts are
    /// not sent after that evaluation (their `endsAt` is not pushed on, so Alertmanager lets
    /// them expire if the failure lasts).
    pub fn rule_failed(&self, i: usize) -> bool {
        self.failed.get(i).copied().unwrap_or(false)
    }

    /// Evaluates every rule at `ts` (ms), querying at `ts - query_offset_ms`, and writes the
    /// output into `store`; alert labels and annotations are expanded with `templates`.
    pub fn eval(
        &mut self,
        engine: &Engine,
        store: &mut MemStorage,
        ts: i64,
        query_offset_ms: i64,
        templates: &TemplateContext,
    ) -> Vec<RuleOutcome> {
        let local = |expr: &promql::Expr, _text: &str, t: i64, store: &MemStorage| {
            engine.instant(store, expr, t)
        };
        self.eval_with(&local, engine, store, ts, query_offset_ms, templates)
    }

    /// As [`GroupState::eval`], but each rule's expression is answered by `query` (given the
    /// parsed expression, its text, the query time and the local store): a remote Prometheus
    /// for the scale-out path. Rule output is still written to `store`; templates query it.
    pub fn eval_with(
        &mut self,
        query: &RuleQuery<'_>,
        engine: &Engine,
        store: &mut MemStorage,
        ts: i64,
        query_offset_ms: i64,
        templates: &TemplateContext,
    ) -> Vec<RuleOutcome> {
        let query_ts = ts - query_offset_ms;
        let limit = self.group.limit;
        let mut outcomes = Vec::with_capacity(self.rules.len());
        for (i, rule) in self.rules.iter_mut().enumerate() {
            let started = std::time::Instant::now();
            let expr = &self.group.rules[i].expr;
            let text = &self.group.rules[i].expr_text;
            let result = query(expr, text, query_ts, store).and_then(|v| match v {
                Value::Vector(v) => Ok(v),
                Value::Scalar { v, .. } => Ok(vec![Sample {
                    labels: Labels::new(),
                    t: query_ts,
                    v,
                }]),
                other => Err(EvalError::new(format!(
                    "rule result is not a vector or scalar: {}",
                    other.type_name()
                ))),
            });
            let (name, written) = match rule {
                RuleState::Alerting(a) => {
                    let name = a.name.clone();
                    let reader: &MemStorage = store;
                    // Templates run at the evaluation time (their `query` too), not the
                    // offset query time, as Prometheus's rule manager runs them.
                    let expand = |labels: &Labels, value: f64, text: &str| {
                        templates.expand(&name, labels, value, text, engine, reader, ts)
                    };
                    let written = result.and_then(|v| a.eval(v, ts, query_ts, limit, &expand));
                    (name, written)
                }
                RuleState::Recording { name, labels } => (
                    name.clone(),
                    result.and_then(|v| record(name, labels, v, query_ts, limit)),
                ),
            };
            let samples = match written {
                Ok(s) => s,
                Err(e) => {
                    // As Prometheus's group evaluation: a failed rule writes nothing, and its
                    // earlier series get no staleness markers (they age out instead: one
                    // failed remote query must not make `ALERTS` vanish at once).
                    self.failed[i] = true;
                    outcomes.push(RuleOutcome {
                        rule: name,
                        samples: 0,
                        error: Some(e),
                        duration: started.elapsed(),
                    });
                    continue;
                }
            };
            self.failed[i] = false;
            // As Prometheus's storage: a sample at a timestamp another rule already wrote with
            // another value is refused (`duplicate sample for timestamp`, the rule's error;
            // the first value stays), and a staleness marker where a value was written is
            // dropped (the series now comes from a different rule).
            let mut now: HashSet<Labels> = HashSet::with_capacity(samples.len());
            let mut duplicate = None;
            for s in &samples {
                if let Some(p) = store.newest(&s.labels)
                    && p.t == s.t
                    && p.v.to_bits() != s.v.to_bits()
                {
                    duplicate.get_or_insert_with(|| {
                        promql::EvalError::new(format!(
                            "duplicate sample for timestamp; overrides not allowed: existing {}, new value {} for {}",
                            p.v, s.v, s.labels
                        ))
                    });
                    continue;
                }
                store.add(&s.labels, s.t, s.v);
                now.insert(s.labels.clone());
            }
            for gone in self.previous[i].difference(&now) {
                if store.newest(gone).is_some_and(|p| p.t == query_ts) {
                    continue;
                }
                store.add(gone, query_ts, stale_nan());
            }
            outcomes.push(RuleOutcome {
                rule: name,
                samples: now.len(),
                error: duplicate,
                duration: started.elapsed(),
            });
            self.previous[i] = now;
        }
        outcomes
    }
}

/// A recording rule's output: the name set, the rule labels applied, duplicates refused.
fn record(
    name: &str,
    labels: &BTreeMap<String, String>,
    result: Vec<Sample>,
    t: i64,
    limit: usize,
) -> Result<Vec<Sample>, EvalError> {
    let mut seen = HashSet::with_capacity(result.len());
    let mut out = Vec::with_capacity(result.len());
    for s in result {
        let mut ls = s.labels;
        ls.set("__name__".into(), name.to_owned());
        for (k, v) in labels {
            ls.set(k.clone(), v.clone());
        }
        if !seen.insert(ls.clone()) {
            return Err(EvalError::new(
                "vector contains metrics with the same labelset after applying rule labels",
            ));
        }
        out.push(Sample {
            labels: ls,
            t,
            v: s.v,
        });
    }
    if limit > 0 && out.len() > limit {
        return Err(EvalError::new(format!(
            "exceeded limit of {limit} with {} series",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::promql::{Storage, storage::Matcher};
    use crate::rules::parse;

    const RULES: &str = "
groups:
  - name: g
    labels: { team: core }
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: JobDown
        expr: job:up:sum == 0
        for: 1m
        labels: { severity: page }
";

    #[test]
    fn recording_output_feeds_later_rules_and_goes_stale() {
        let (file, _) = parse(RULES, Path::new("r.yml")).unwrap();
        let mut g = GroupState::new(file.groups[0].clone());
        let mut store = MemStorage::new();
        let up = Labels::from_pairs([("__name__", "up"), ("job", "api"), ("instance", "a")]);
        let engine = Engine::default();
        let mut firing_at = None;
        for step in 0..4 {
            let ts = step * 60_000;
            store.add(&up, ts, 0.0);
            let out = g.eval(&engine, &mut store, ts, 0, &TemplateContext::default());
            assert!(out.iter().all(|o| o.error.is_none()), "{out:?}");
            let RuleState::Alerting(a) = &g.rules[1] else {
                unreachable!()
            };
            if firing_at.is_none()
                && a.alerts()
                    .first()
                    .is_some_and(|a| a.state.as_str() == "firing")
            {
                firing_at = Some(ts);
            }
        }
        assert_eq!(
            firing_at,
            Some(60_000),
            "for: 1m at a 1m interval fires on the 2nd eval"
        );
        let RuleState::Alerting(a) = &g.rules[1] else {
            unreachable!()
        };
        let alert = a.alerts()[0];
        assert_eq!(alert.labels.get("team"), Some("core"));
        assert_eq!(alert.labels.get("severity"), Some("page"));
        assert_eq!(alert.labels.get("job"), Some("api"));

        // The job comes back: the alert resolves, ALERTS goes stale.
        store.add(&up, 240_000, 1.0);
        g.eval(&engine, &mut store, 240_000, 0, &TemplateContext::default());
        let alerts = store.select(&[Matcher::equal("__name__", "ALERTS")], 0, 240_000);
        let last = alerts[0].points.last().unwrap();
        assert_eq!(last.t, 240_000);
        assert!(crate::promql::value::is_stale(last.v));
        let recorded = store.select(
            &[Matcher::equal("__name__", "job:up:sum")],
            180_000,
            240_000,
        );
        assert_eq!(recorded[0].labels.get("team"), Some("core"));
        assert_eq!(recorded[0].points.last().unwrap().v, 1.0);
    }

    /// Two rules writing one series at one time: the first value stays and the second rule
    /// reports Prometheus's duplicate-sample error; a staleness marker for a series another
    /// rule wrote at that time is dropped, so handing a series from one rule to another does
    /// not make it vanish for an interval.
    #[test]
    fn colliding_rule_outputs_keep_the_first_value_and_say_so() {
        let text = "
groups:
  - name: g
    rules:
      - record: x
        expr: vector(1)
      - record: x
        expr: vector(2)
      - record: y
        expr: vector(time()) >= 120
      - record: y
        expr: vector(time()) < 120
";
        let (file, _) = parse(text, Path::new("r.yml")).unwrap();
        let mut g = GroupState::new(file.groups[0].clone());
        let mut store = MemStorage::new();
        let engine = Engine::default();
        let newest = |store: &MemStorage, name: &str| {
            store
                .newest(&Labels::from_pairs([("__name__", name)]))
                .unwrap()
        };
        for ts in [60_000, 120_000] {
            let out = g.eval(&engine, &mut store, ts, 0, &TemplateContext::default());
            assert_eq!(newest(&store, "x").v, 1.0);
            assert!(out[0].error.is_none(), "{out:?}");
            let e = out[1]
                .error
                .as_ref()
                .map(|e| e.0.as_str())
                .unwrap_or_default();
            assert!(e.starts_with("duplicate sample for timestamp"), "{out:?}");
            assert_eq!(out[1].samples, 0);
            assert!(out[2].error.is_none() && out[3].error.is_none(), "{out:?}");
        }
        // At 120 s the first `y` rule takes the series over: its value, not the second rule's
        // staleness marker, is the series' point at 120 s.
        let y = newest(&store, "y");
        assert_eq!((y.t, y.v), (120_000, 120.0));
    }

    /// A failed evaluation writes nothing, marks nothing stale and sends nothing; the next
    /// good one carries on from the state before it.
    #[test]
    fn a_failed_evaluation_leaves_series_and_alerts_alone() {
        let rules = "
groups:
  - name: g
    rules:
      - alert: Down
        expr: up == 0
";
        let (file, _) = parse(rules, Path::new("r.yml")).unwrap();
        let mut g = GroupState::new(file.groups[0].clone());
        let mut store = MemStorage::new();
        let up = Labels::from_pairs([("__name__", "up"), ("job", "api")]);
        let engine = Engine::default();
        let fail = std::cell::Cell::new(false);
        let ask = |expr: &promql::Expr, _: &str, t: i64, s: &MemStorage| {
            if fail.get() {
                Err(EvalError::new("remote query timed out"))
            } else {
                engine.instant(s, expr, t)
            }
        };
        let send = |g: &mut GroupState, ts: i64| {
            crate::delivery::group_alerts_to_send(
                g,
                ts,
                std::time::Duration::from_secs(60),
                std::time::Duration::from_secs(60),
                "",
            )
        };
        store.add(&up, 0, 0.0);
        g.eval_with(&ask, &engine, &mut store, 0, 0, &TemplateContext::default());
        assert!(!g.rule_failed(0));
        assert_eq!(send(&mut g, 0).len(), 1, "firing at once (no `for`)");

        fail.set(true);
        store.add(&up, 60_000, 0.0);
        let out = g.eval_with(
            &ask,
            &engine,
            &mut store,
            60_000,
            0,
            &TemplateContext::default(),
        );
        assert!(out[0].error.is_some());
        assert!(g.rule_failed(0));
        // Past the resend delay, yet nothing is sent for the failed rule.
        assert!(send(&mut g, 120_001).is_empty());
        let alerts = store.select(&[Matcher::equal("__name__", "ALERTS")], -1, 60_000);
        assert!(
            alerts[0]
                .points
                .iter()
                .all(|p| !crate::promql::value::is_stale(p.v)),
            "no staleness marker for a failed evaluation: {:?}",
            alerts[0].points
        );

        fail.set(false);
        store.add(&up, 180_000, 0.0);
        g.eval_with(
            &ask,
            &engine,
            &mut store,
            180_000,
            0,
            &TemplateContext::default(),
        );
        assert!(!g.rule_failed(0));
        assert_eq!(send(&mut g, 180_000).len(), 1);
    }

    /// Templates see `__name__` in `$labels` and run at the evaluation time, not at the
    /// offset query time.
    #[test]
    fn templates_see_the_metric_name_and_the_evaluation_time() {
        let rules = r#"
groups:
  - name: g
    query_offset: 1m
    rules:
      - alert: Down
        expr: up == 0
        annotations:
          name: "{{ $labels.__name__ }}"
          now: "{{ with query \"time()\" }}{{ . | first | value }}{{ end }}"
"#;
        let (file, _) = parse(rules, Path::new("r.yml")).unwrap();
        let mut g = GroupState::new(file.groups[0].clone());
        let mut store = MemStorage::new();
        store.add(
            &Labels::from_pairs([("__name__", "up"), ("job", "api")]),
            540_000,
            0.0,
        );
        let out = g.eval(
            &Engine::default(),
            &mut store,
            600_000,
            60_000,
            &TemplateContext::default(),
        );
        assert!(out[0].error.is_none(), "{out:?}");
        let RuleState::Alerting(a) = &g.rules[0] else {
            unreachable!()
        };
        let alert = a.alerts()[0];
        assert_eq!(
            alert.annotations.get("name").map(String::as_str),
            Some("up")
        );
        assert_eq!(
            alert.annotations.get("now").map(String::as_str),
            Some("600")
        );
        assert_eq!(alert.labels.get("__name__"), None);
    }
}
