//! The alert life-cycle of one alerting rule, as Prometheus's `AlertingRule.Eval`: pending,
//! firing, inactive; `for`, `keep_firing_for`, resolved retention, `limit`; the `ALERTS` and
//! `ALERTS_FOR_STATE` samples.

use std::collections::{BTreeMap, HashMap};

use crate::promql::{EvalError, Labels, Sample};

/// How long a resolved alert is kept (and re-sent as resolved), as Prometheus.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60_000;

/// Where an alert is in its life-cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    /// Resolved (kept for [`RESOLVED_RETENTION_MS`] so it can be sent as resolved).
    Inactive,
    /// The condition holds, `for` has not elapsed yet.
    Pending,
    /// The condition held for `for`.
    Firing,
}

impl AlertState {
    /// `inactive`, `pending` or `firing`, as in Prometheus's API and `ALERTS{alertstate}`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert (one label set) of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Labels: the sample's (without `__name__`), then the rule's, then `alertname`.
    pub labels: Labels,
    /// Expanded annotations.
    pub annotations: BTreeMap<String, String>,
    /// The state.
    pub state: AlertState,
    /// The last value of the expression for this alert.
    pub value: f64,
    /// When the condition started to hold (ms).
    pub active_at: i64,
    /// When it started firing (ms).
    pub fired_at: Option<i64>,
    /// When it was resolved (ms).
    pub resolved_at: Option<i64>,
    /// When it was last sent to Alertmanager (ms), maintained by the sender.
    pub last_sent_at: Option<i64>,
    /// The first evaluation at which the condition no longer held while `keep_firing_for`
    /// kept it firing (ms).
    pub keep_firing_since: Option<i64>,
}

/// What the rule needs to expand templates for one output sample: the sample's labels
/// (without `__name__`), its value, and the text; returns the expansion (Prometheus puts
/// expansion errors into the text itself).
pub type Expand<'a> = dyn Fn(&Labels, f64, &str) -> String + 'a;

/// The state of one alerting rule across evaluations.
#[derive(Debug, Clone)]
pub struct AlertingState {
    /// The alert name.
    pub name: String,
    /// `for`, in ms.
    pub for_ms: i64,
    /// `keep_firing_for`, in ms.
    pub keep_firing_for_ms: i64,
    /// Rule labels (templates), group labels already merged in.
    pub labels: BTreeMap<String, String>,
    /// Annotations (templates).
    pub annotations: BTreeMap<String, String>,
    /// Active and recently resolved alerts, by label set.
    pub active: HashMap<Labels, Alert>,
    /// Whether `for` state has been restored after a start (only then are `ALERTS` and
    /// `ALERTS_FOR_STATE` written).
    pub restored: bool,
    /// Saved states no alert matched when they were restored, each waiting for its alert to
    /// become active; with the grace period, the outage tolerance and the restore's time.
    late_restore: Vec<(Labels, i64, i64)>,
    restore_limits: (i64, i64, i64),
}

impl AlertingState {
    /// A rule with no alerts yet.
    pub fn new(
        name: String,
        for_ms: i64,
        keep_firing_for_ms: i64,
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
    ) -> Self {
        AlertingState {
            name,
            for_ms,
            keep_firing_for_ms,
            labels,
            annotations,
            active: HashMap::new(),
            restored: true,
            late_restore: Vec::new(),
            restore_limits: (0, 0, 0),
        }
    }

    /// Takes over what `previous` (the same rule before a reload) still waits to restore.
    pub(crate) fn carry_late_restore(&mut self, previous: &AlertingState) {
        self.late_restore.clone_from(&previous.late_restore);
        self.restore_limits = previous.restore_limits;
    }

    /// Advances the life-cycle with the expression's result at `ts` and returns the samples
    /// to write at `write_ts` (`ts` minus the query offset): `ALERTS` and `ALERTS_FOR_STATE`
    /// for every pending and firing alert.
    pub fn eval(
        &mut self,
        result: Vec<Sample>,
        ts: i64,
        write_ts: i64,
        limit: usize,
        expand: &Expand<'_>,
    ) -> Result<Vec<Sample>, EvalError> {
        let mut current: HashMap<Labels, Alert> = HashMap::with_capacity(result.len());
        for s in result {
            // Templates see the sample's labels as they are, `__name__` included (Prometheus
            // hands `$labels` the sample's metric); the alert's own labels leave it out.
            let mut labels = s.labels.without_name();
            for (k, v) in &self.labels {
                labels.set(k.clone(), expand(&s.labels, s.v, v));
            }
            labels.set("alertname".into(), self.name.clone());
            let annotations = self
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), expand(&s.labels, s.v, v)))
                .collect();
            if current.contains_key(&labels) {
                return Err(EvalError::new(
                    "vector contains metrics with the same labelset after applying alert labels",
                ));
            }
            current.insert(
                labels.clone(),
                Alert {
                    labels,
                    annotations,
                    state: AlertState::Pending,
                    value: s.v,
                    active_at: ts,
                    fired_at: None,
                    resolved_at: None,
                    last_sent_at: None,
                    keep_firing_since: None,
                },
            );
        }
        // A set: a rule over 10,000 series would otherwise compare every active alert with
        // every result (quadratic, under the store's and the rules' locks).
        let present: std::collections::HashSet<Labels> = current.keys().cloned().collect();
        for (labels, a) in current {
            match self.active.get_mut(&labels) {
                Some(existing) if existing.state != AlertState::Inactive => {
                    existing.value = a.value;
                    existing.annotations = a.annotations;
                }
                _ => {
                    let mut a = a;
                    self.restore_late(&mut a, ts);
                    self.active.insert(labels, a);
                }
            }
        }

        let mut out = Vec::new();
        let mut active_count = 0;
        let mut delete = Vec::new();
        // Deterministic output order: by labels.
        let mut keys: Vec<Labels> = self.active.keys().cloned().collect();
        keys.sort();
        for key in keys {
            let Some(a) = self.active.get_mut(&key) else {
                continue;
            };
            if !present.contains(&key) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && self.keep_firing_for_ms > 0 {
                    let since = *a.keep_firing_since.get_or_insert(ts);
                    keep_firing = ts - since < self.keep_firing_for_ms;
                }
                if a.state == AlertState::Pending
                    || a.resolved_at
                        .is_some_and(|r| ts - r > RESOLVED_RETENTION_MS)
                {
                    delete.push(key.clone());
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    a.state = AlertState::Inactive;
                    a.resolved_at = Some(ts);
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since = None;
            }
            active_count += 1;
            if a.state == AlertState::Pending && ts - a.active_at >= self.for_ms {
                a.state = AlertState::Firing;
                a.fired_at = Some(ts);
            }
            // A firing alert whose rule was reloaded with a longer `for` has not held long
            // enough now: pending again, as Prometheus 3.12 does (an alert is not left firing
            // on a hold it no longer meets).
            if a.state == AlertState::Firing && ts - a.active_at < self.for_ms {
                a.state = AlertState::Pending;
                a.fired_at = None;
                a.last_sent_at = None;
                a.keep_firing_since = None;
            }
            if self.restored {
                let mut alerts = a.labels.clone();
                alerts.set("__name__".into(), "ALERTS".into());
                alerts.set("alertstate".into(), a.state.as_str().into());
                out.push(Sample {
                    labels: alerts,
                    t: write_ts,
                    v: 1.0,
                });
                let mut for_state = a.labels.clone();
                for_state.set("__name__".into(), "ALERTS_FOR_STATE".into());
                out.push(Sample {
                    labels: for_state,
                    t: write_ts,
                    v: (a.active_at / 1000) as f64,
                });
            }
        }
        for key in delete {
            self.active.remove(&key);
        }
        if limit > 0 && active_count > limit {
            self.active.clear();
            return Err(EvalError::new(format!(
                "exceeded limit of {limit} with {active_count} alerts"
            )));
        }
        Ok(out)
    }

    /// Restores `for` state after a restart, as Prometheus's `RestoreForState`: `saved` holds,
    /// per alert label set, the last `ALERTS_FOR_STATE` sample written before the restart
    /// (`down_at`, the evaluation time it was written at, and `active_at`, its value), both in
    /// ms. Called after the group's second evaluation at `ts`. Rules whose `for` is shorter
    /// than `grace_ms` are not restored (they wait their `for` again); samples older than
    /// `ts - outage_tolerance_ms` are ignored. For each currently active alert with a saved
    /// state, the time already spent pending counts, except the downtime, and at least
    /// `grace_ms` remains before it fires. `ALERTS` is written from then on.
    pub fn restore_for_state(
        &mut self,
        saved: &[(Labels, i64, i64)],
        ts: i64,
        grace_ms: i64,
        outage_tolerance_ms: i64,
    ) {
        self.restored = true;
        if self.for_ms < grace_ms {
            return;
        }
        self.restore_limits = (grace_ms, outage_tolerance_ms, ts);
        let mut used = vec![false; saved.len()];
        for a in self.active.values_mut() {
            if a.state == AlertState::Inactive {
                continue;
            }
            let Some(i) = saved
                .iter()
                .position(|(l, down_at, _)| *l == a.labels && *down_at >= ts - outage_tolerance_ms)
            else {
                continue;
            };
            used[i] = true;
            let (_, down_at, active_at) = saved[i];
            a.active_at = restored_active_at(self.for_ms, grace_ms, ts, down_at, active_at);
        }
        // Prometheus reads the state from its TSDB, which also holds the data the rules read
        // from before the restart, so the alerts are active again at once. This evaluator's
        // store starts empty: an alert whose expression needs history (`rate(x[5m])` needs two
        // scrapes) becomes active only later. Its saved state waits for it, for at most the
        // grace period after the restore (a warm-up, not a later episode of the alert) and
        // within the outage tolerance.
        self.late_restore = saved
            .iter()
            .zip(used)
            .filter(|((_, down_at, _), used)| !used && *down_at >= ts - outage_tolerance_ms)
            .map(|(s, _)| s.clone())
            .collect();
    }

    /// Restores `a`, an alert that became active at `ts`, from a saved state that waited for
    /// it (see [`restore_for_state`](Self::restore_for_state)).
    fn restore_late(&mut self, a: &mut Alert, ts: i64) {
        if self.late_restore.is_empty() {
            return;
        }
        let (grace_ms, outage_tolerance_ms, restored_at) = self.restore_limits;
        if ts > restored_at + grace_ms {
            self.late_restore.clear();
            return;
        }
        self.late_restore
            .retain(|(_, down_at, _)| *down_at >= ts - outage_tolerance_ms);
        if let Some(i) = self
            .late_restore
            .iter()
            .position(|(l, _, _)| *l == a.labels)
        {
            let (_, down_at, active_at) = self.late_restore.swap_remove(i);
            a.active_at = restored_active_at(self.for_ms, grace_ms, ts, down_at, active_at);
        }
    }

    /// What to save so that [`AlertingState::restore_for_state`] can restore after a restart:
    /// (labels, now, active_at) for every pending and firing alert, and the saved states still
    /// waiting for their alert as they were saved.
    pub fn for_state(&self, now: i64) -> Vec<(Labels, i64, i64)> {
        self.alerts()
            .into_iter()
            .map(|a| (a.labels.clone(), now, a.active_at))
            .chain(self.late_restore.iter().cloned())
            .collect()
    }

    /// Pending and firing alerts, sorted by labels.
    pub fn alerts(&self) -> Vec<&Alert> {
        let mut v: Vec<&Alert> = self
            .active
            .values()
            .filter(|a| a.state != AlertState::Inactive)
            .collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        v
    }
}

/// The `active_at` of an alert restored at `ts` from the state saved at `down_at`, as
/// Prometheus's `RestoreForState` computes it: the time it had spent pending before the
/// restart counts, the downtime does not, and at least `grace_ms` remains before it fires.
fn restored_active_at(for_ms: i64, grace_ms: i64, ts: i64, down_at: i64, active_at: i64) -> i64 {
    // Prometheus keeps whole seconds here.
    let (down_at, active_at) = (down_at / 1000 * 1000, active_at / 1000 * 1000);
    let remaining = for_ms - (down_at - active_at);
    if remaining <= 0 {
        active_at
    } else if remaining < grace_ms {
        ts + grace_ms - for_ms
    } else {
        active_at + (ts - down_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(instance: &str, v: f64) -> Sample {
        Sample {
            labels: Labels::from_pairs([("__name__", "up"), ("instance", instance)]),
            t: 0,
            v,
        }
    }

    fn no_templates(_: &Labels, _: f64, text: &str) -> String {
        text.to_owned()
    }

    fn states(r: &AlertingState) -> Vec<(String, &'static str)> {
        let mut v: Vec<_> = r
            .active
            .values()
            .map(|a| {
                (
                    a.labels.get("instance").unwrap_or("").to_owned(),
                    a.state.as_str(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn pending_then_firing_after_for_then_resolved() {
        let mut r = AlertingState::new("Down".into(), 120_000, 0, BTreeMap::new(), BTreeMap::new());
        let out = r
            .eval(vec![sample("a", 0.0)], 0, 0, 0, &no_templates)
            .unwrap();
        assert_eq!(states(&r), [("a".into(), "pending")]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].labels.get("alertstate"), Some("pending"));
        assert_eq!(out[0].labels.get("alertname"), Some("Down"));
        assert_eq!(out[0].labels.get("__name__"), Some("ALERTS"));
        r.eval(vec![sample("a", 0.0)], 60_000, 60_000, 0, &no_templates)
            .unwrap();
        assert_eq!(states(&r), [("a".into(), "pending")]);
        let out = r
            .eval(vec![sample("a", 0.0)], 120_000, 120_000, 0, &no_templates)
            .unwrap();
        assert_eq!(states(&r), [("a".into(), "firing")]);
        assert_eq!(out[1].labels.get("__name__"), Some("ALERTS_FOR_STATE"));
        assert_eq!(out[1].v, 0.0);
        let out = r.eval(vec![], 180_000, 180_000, 0, &no_templates).unwrap();
        assert!(out.is_empty());
        assert_eq!(states(&r), [("a".into(), "inactive")]);
        assert_eq!(r.active.values().next().unwrap().resolved_at, Some(180_000));
        // Kept for 15 minutes, then forgotten.
        r.eval(vec![], 180_000 + RESOLVED_RETENTION_MS, 0, 0, &no_templates)
            .unwrap();
        assert_eq!(r.active.len(), 1);
        r.eval(vec![], 181_000 + RESOLVED_RETENTION_MS, 0, 0, &no_templates)
            .unwrap();
        assert!(r.active.is_empty());
    }

    /// A rule reloaded with a longer `for` (the daemon carries the alerts over) sends its
    /// firing alert back to pending until it has held that long.
    #[test]
    fn a_longer_for_on_reload_sends_a_firing_alert_back_to_pending() {
        let mut r = AlertingState::new("Down".into(), 0, 0, BTreeMap::new(), BTreeMap::new());
        r.eval(vec![sample("a", 0.0)], 0, 0, 0, &no_templates)
            .unwrap();
        assert_eq!(states(&r), [("a".into(), "firing")]);
        let mut longer = AlertingState::new(
            "Down".into(),
            1_800_000,
            0,
            BTreeMap::new(),
            BTreeMap::new(),
        );
        longer.active = std::mem::take(&mut r.active);
        let out = longer
            .eval(vec![sample("a", 0.0)], 60_000, 60_000, 0, &no_templates)
            .unwrap();
        assert_eq!(states(&longer), [("a".into(), "pending")]);
        assert_eq!(out[0].labels.get("alertstate"), Some("pending"));
        let a = longer.active.values().next().unwrap();
        assert_eq!((a.active_at, a.fired_at, a.last_sent_at), (0, None, None));
        // Held long enough: firing again.
        longer
            .eval(
                vec![sample("a", 0.0)],
                1_800_000,
                1_800_000,
                0,
                &no_templates,
            )
            .unwrap();
        assert_eq!(states(&longer), [("a".into(), "firing")]);
    }

    #[test]
    fn a_pending_alert_that_vanishes_is_deleted() {
        let mut r = AlertingState::new("Down".into(), 300_000, 0, BTreeMap::new(), BTreeMap::new());
        r.eval(vec![sample("a", 0.0)], 0, 0, 0, &no_templates)
            .unwrap();
        r.eval(vec![], 60_000, 60_000, 0, &no_templates).unwrap();
        assert!(r.active.is_empty());
    }

    #[test]
    fn keep_firing_for_holds_a_firing_alert() {
        let mut r = AlertingState::new("Down".into(), 0, 120_000, BTreeMap::new(), BTreeMap::new());
        r.eval(vec![sample("a", 0.0)], 0, 0, 0, &no_templates)
            .unwrap();
        assert_eq!(states(&r), [("a".into(), "firing")]);
        let out = r.eval(vec![], 60_000, 60_000, 0, &no_templates).unwrap();
        assert_eq!(out.len(), 2, "still firing while keep_firing_for runs");
        r.eval(vec![], 120_000, 120_000, 0, &no_templates).unwrap();
        assert_eq!(states(&r), [("a".into(), "firing")]);
        r.eval(vec![], 180_000, 180_000, 0, &no_templates).unwrap();
        assert_eq!(states(&r), [("a".into(), "inactive")]);
    }

    #[test]
    fn a_resolved_alert_that_returns_starts_pending_again() {
        let mut r = AlertingState::new("Down".into(), 60_000, 0, BTreeMap::new(), BTreeMap::new());
        r.eval(vec![sample("a", 0.0)], 0, 0, 0, &no_templates)
            .unwrap();
        r.eval(vec![sample("a", 0.0)], 60_000, 0, 0, &no_templates)
            .unwrap();
        r.eval(vec![], 120_000, 0, 0, &no_templates).unwrap();
        r.eval(vec![sample("a", 0.0)], 180_000, 0, 0, &no_templates)
            .unwrap();
        let a = r.active.values().next().unwrap();
        assert_eq!((a.state, a.active_at), (AlertState::Pending, 180_000));
    }

    #[test]
    fn for_state_is_restored_as_prometheus_does() {
        let min = 60_000;
        let new_rule = || {
            let mut r =
                AlertingState::new("Down".into(), 30 * min, 0, BTreeMap::new(), BTreeMap::new());
            r.restored = false;
            r
        };
        let labels = |r: &mut AlertingState, ts: i64| {
            r.eval(vec![sample("a", 0.0)], ts, ts, 0, &no_templates)
                .unwrap();
            r.active.keys().next().unwrap().clone()
        };
        let restart = 100 * min;
        let grace = 10 * min;
        let tolerance = 60 * min;

        // Pending for 10 of 30 minutes, down for 5: the downtime does not count.
        let mut r = new_rule();
        let ls = labels(&mut r, restart);
        assert!(
            r.eval(vec![sample("a", 0.0)], restart, restart, 0, &no_templates)
                .unwrap()
                .is_empty(),
            "nothing written before the restore"
        );
        let saved = [(ls.clone(), restart - 5 * min, restart - 15 * min)];
        r.restore_for_state(&saved, restart, grace, tolerance);
        assert_eq!(r.active[&ls].active_at, restart - 10 * min);
        assert_eq!(
            r.eval(vec![sample("a", 0.0)], restart + min, 0, 0, &no_templates)
                .unwrap()
                .len(),
            2
        );

        // 25 of 30 minutes done: at least the grace period remains.
        let mut r = new_rule();
        let ls = labels(&mut r, restart);
        r.restore_for_state(
            &[(ls.clone(), restart - min, restart - 26 * min)],
            restart,
            grace,
            tolerance,
        );
        assert_eq!(r.active[&ls].active_at, restart + grace - 30 * min);

        // Already firing when it went down: fires at the next evaluation.
        let mut r = new_rule();
        let ls = labels(&mut r, restart);
        r.restore_for_state(
            &[(ls.clone(), restart - min, restart - 50 * min)],
            restart,
            grace,
            tolerance,
        );
        r.eval(vec![sample("a", 0.0)], restart + min, 0, 0, &no_templates)
            .unwrap();
        assert_eq!(r.active[&ls].state, AlertState::Firing);

        // Too old a state (beyond the outage tolerance) is ignored.
        let mut r = new_rule();
        let ls = labels(&mut r, restart);
        r.restore_for_state(
            &[(ls.clone(), restart - 61 * min, restart - 70 * min)],
            restart,
            grace,
            tolerance,
        );
        assert_eq!(r.active[&ls].active_at, restart);

        // A `for` shorter than the grace period is not restored.
        let mut r = AlertingState::new("Down".into(), 5 * min, 0, BTreeMap::new(), BTreeMap::new());
        let ls = labels(&mut r, restart);
        r.restore_for_state(
            &[(ls.clone(), restart - min, restart - 4 * min)],
            restart,
            grace,
            tolerance,
        );
        assert_eq!(r.active[&ls].active_at, restart);
        assert!(r.restored);
    }

    /// The store starts empty after a restart: an alert whose expression needs two scrapes
    /// (a `rate`) is not active at the restore. Its saved state waits for it for the grace
    /// period, so a firing alert fires again at once instead of waiting its `for` again; an
    /// alert that appears only after the grace period starts afresh.
    #[test]
    fn a_saved_state_waits_for_its_alert_during_the_grace_period() {
        let min = 60_000;
        let (restart, grace, tolerance) = (100 * min, 10 * min, 60 * min);
        let rule = || {
            let mut r =
                AlertingState::new("Down".into(), 30 * min, 0, BTreeMap::new(), BTreeMap::new());
            r.restored = false;
            r
        };
        // The alert's label set, as the rule makes it.
        let ls = {
            let mut r = rule();
            r.eval(vec![sample("a", 0.0)], 0, 0, 0, &no_templates)
                .unwrap();
            r.active.keys().next().unwrap().clone()
        };
        // Firing for 50 minutes when it went down.
        let saved = [(ls.clone(), restart - min, restart - 50 * min)];

        let mut r = rule();
        r.eval(vec![], restart, restart, 0, &no_templates).unwrap();
        r.restore_for_state(&saved, restart, grace, tolerance);
        assert!(r.active.is_empty());
        r.eval(vec![sample("a", 0.0)], restart + min, 0, 0, &no_templates)
            .unwrap();
        assert_eq!(r.active[&ls].state, AlertState::Firing);
        assert_eq!(r.active[&ls].active_at, restart - 50 * min);

        // First seen after the grace period: a new episode, pending from now.
        let mut r = rule();
        r.eval(vec![], restart, restart, 0, &no_templates).unwrap();
        r.restore_for_state(&saved, restart, grace, tolerance);
        let late = restart + grace + min;
        r.eval(vec![sample("a", 0.0)], late, 0, 0, &no_templates)
            .unwrap();
        assert_eq!(
            (r.active[&ls].state, r.active[&ls].active_at),
            (AlertState::Pending, late)
        );

        // A reload in between keeps what waits, and a second restart before the alert
        // appears saves it as it was saved.
        let mut r = rule();
        r.eval(vec![], restart, restart, 0, &no_templates).unwrap();
        r.restore_for_state(&saved, restart, grace, tolerance);
        assert_eq!(r.for_state(restart + 2 * min), saved);
        let mut reloaded = rule();
        reloaded.carry_late_restore(&r);
        reloaded
            .eval(vec![sample("a", 0.0)], restart + min, 0, 0, &no_templates)
            .unwrap();
        assert_eq!(reloaded.active[&ls].state, AlertState::Firing);
    }

    #[test]
    fn labels_and_annotations_are_expanded_and_limit_applies() {
        let labels = BTreeMap::from([("severity".to_owned(), "page".to_owned())]);
        let annotations = BTreeMap::from([("summary".to_owned(), "v=VALUE".to_owned())]);
        let mut r = AlertingState::new("Down".into(), 0, 0, labels, annotations);
        let expand = |_: &Labels, v: f64, text: &str| text.replace("VALUE", &v.to_string());
        r.eval(vec![sample("a", 3.0)], 0, 0, 0, &expand).unwrap();
        let a = r.alerts()[0];
        assert_eq!(a.labels.get("severity"), Some("page"));
        assert_eq!(a.annotations["summary"], "v=3");
        let err = r
            .eval(
                vec![sample("a", 1.0), sample("b", 1.0)],
                60_000,
                0,
                1,
                &expand,
            )
            .unwrap_err();
        assert_eq!(err.to_string(), "exceeded limit of 1 with 2 alerts");
        assert!(r.active.is_empty());
    }
}
