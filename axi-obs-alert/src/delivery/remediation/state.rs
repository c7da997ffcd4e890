//! The dispatcher's side: which runs to start (cooldown, `max_runs`, bounded queue), the
//! persisted run history, and the latest outcomes attached to notifications.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::exec::{RemediationOutcome, RemediationResult, RemediationRun};
use super::{
    ANNOTATION_REMEDIATION, GC_INTERVAL_MS, LABEL_ACTION, LABEL_OUTCOME, MAX_OUTCOME_ALERTS,
    METRIC_REMEDIATIONS_SKIPPED_TOTAL, METRIC_REMEDIATIONS_TOTAL, REMEDIATION_QUEUE_CAPACITY,
    RemediationConfig, SkipReason, ms,
};
use crate::delivery::model::{AmAlert, Fingerprint, LabelSet, ZERO_TIME, rfc3339_nano};
use crate::delivery::notify::LABEL_REASON;
use crate::delivery::route::Route;

/// The JSON a program reads on stdin and a URL receives as its body.
#[derive(Serialize)]
struct Payload<'a> {
    action: &'a str,
    receiver: &'a str,
    status: &'static str,
    labels: &'a LabelSet,
    annotations: &'a LabelSet,
    #[serde(rename = "startsAt")]
    starts_at: String,
    #[serde(rename = "endsAt")]
    ends_at: String,
    #[serde(rename = "generatorURL")]
    generator_url: &'a str,
    fingerprint: String,
}

/// The run history as the state file holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RemediationHistory {
    /// The last run per action and alert.
    #[serde(default)]
    last: Vec<LastRun>,
    /// Run times per action (ms), oldest first.
    #[serde(default)]
    runs: BTreeMap<String, Vec<i64>>,
}

impl RemediationHistory {
    pub(crate) fn is_empty(&self) -> bool {
        self.last.is_empty() && self.runs.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LastRun {
    action: String,
    fingerprint: u64,
    at: i64,
}

/// The dispatcher's remediation state: the configured actions, the run history (persisted
/// in the state file, so a restart keeps cooldowns and `max_runs`), the queue of runs to
/// execute, the latest outcome per alert and action, and the skip counts.
#[derive(Debug, Default)]
pub struct Remediations {
    actions: BTreeMap<String, Arc<RemediationConfig>>,
    last_run: HashMap<(String, Fingerprint), i64>,
    runs: HashMap<String, VecDeque<i64>>,
    queue: VecDeque<RemediationRun>,
    outcomes: HashMap<Fingerprint, BTreeMap<String, String>>,
    skipped: BTreeMap<(String, SkipReason), u64>,
    next_gc_ms: i64,
}

impl Remediations {
    /// Takes the configured actions (none: off); the history is kept.
    pub(crate) fn configure(&mut self, actions: &[RemediationConfig]) {
        self.actions = actions
            .iter()
            .map(|a| (a.name.clone(), Arc::new(a.clone())))
            .collect();
        self.next_gc_ms = i64::MIN;
    }

    /// Whether any action is configured.
    pub fn is_enabled(&self) -> bool {
        !self.actions.is_empty()
    }

    /// Decides on the actions the `routes` an alert (firing, not muted) matched name:
    /// each once, if out of its cooldown for this alert and under `max_runs` in its window
    /// and the queue has room; records and queues the run, or counts the skip.
    pub(crate) fn trigger(
        &mut self,
        routes: &[&Route],
        alert: &AmAlert,
        fp: Fingerprint,
        now_ms: i64,
    ) {
        self.gc(now_ms);
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for r in routes {
            for name in &r.opts.remediations {
                if !seen.insert(name) {
                    continue;
                }
                // Route names were checked against the actions at load.
                let Some(cfg) = self.actions.get(name).map(Arc::clone) else {
                    continue;
                };
                let skip = self.decide(&cfg, fp, now_ms);
                if let Some(reason) = skip {
                    *self.skipped.entry((name.clone(), reason)).or_default() += 1;
                    metrics::counter!(
                        METRIC_REMEDIATIONS_SKIPPED_TOTAL,
                        LABEL_ACTION => name.clone(),
                        LABEL_REASON => reason.as_str()
                    )
                    .increment(1);
                    tracing::debug!(
                        action = %name,
                        fingerprint = %fp,
                        reason = reason.as_str(),
                        "remediation skipped"
                    );
                    continue;
                }
                let payload = Payload {
                    action: name,
                    receiver: &r.opts.receiver,
                    status: alert.status(now_ms),
                    labels: &alert.labels,
                    annotations: &alert.annotations,
                    starts_at: rfc3339_nano(alert.starts_at),
                    ends_at: alert
                        .ends_at
                        .map_or_else(|| ZERO_TIME.to_string(), rfc3339_nano),
                    generator_url: &alert.generator_url,
                    fingerprint: fp.to_string(),
                };
                self.queue.push_back(RemediationRun {
                    config: cfg,
                    fingerprint: fp,
                    alertname: alert.labels.get("alertname").cloned().unwrap_or_default(),
                    // Serializing strings and string maps cannot fail.
                    payload: serde_json::to_vec(&payload).unwrap_or_default(),
                    requested_ms: now_ms,
                });
            }
        }
    }

    /// Records a run of `cfg` for `fp` at `now_ms`, or says why not.
    fn decide(
        &mut self,
        cfg: &RemediationConfig,
        fp: Fingerprint,
        now_ms: i64,
    ) -> Option<SkipReason> {
        let key = (cfg.name.clone(), fp);
        if let Some(last) = self.last_run.get(&key)
            && now_ms.saturating_sub(*last) < ms(cfg.cooldown.0)
        {
            return Some(SkipReason::Cooldown);
        }
        let since = now_ms.saturating_sub(ms(cfg.window.0));
        let runs = self.runs.entry(cfg.name.clone()).or_default();
        while runs.front().is_some_and(|t| *t <= since) {
            runs.pop_front();
        }
        if runs.len() >= cfg.max_runs as usize {
            return Some(SkipReason::MaxRuns);
        }
        if self.queue.len() >= REMEDIATION_QUEUE_CAPACITY {
            return Some(SkipReason::QueueFull);
        }
        runs.push_back(now_ms);
        self.last_run.insert(key, now_ms);
        None
    }

    /// Drops history that no longer matters: unknown actions, last runs past their
    /// cooldown, run times past their window. At most once a minute.
    fn gc(&mut self, now_ms: i64) {
        if now_ms < self.next_gc_ms {
            return;
        }
        self.next_gc_ms = now_ms.saturating_add(GC_INTERVAL_MS);
        let actions = &self.actions;
        self.last_run.retain(|(name, _), at| {
            actions
                .get(name)
                .is_some_and(|c| now_ms.saturating_sub(*at) < ms(c.cooldown.0))
        });
        self.runs.retain(|name, times| {
            let Some(c) = actions.get(name) else {
                return false;
            };
            let since = now_ms.saturating_sub(ms(c.window.0));
            times.retain(|t| *t > since);
            !times.is_empty()
        });
    }

    /// Takes up to `max` queued runs, oldest first.
    pub(crate) fn take(&mut self, max: usize) -> Vec<RemediationRun> {
        let n = max.min(self.queue.len());
        self.queue.drain(..n).collect()
    }

    /// Logs and counts an outcome finished at `now_ms` and, when the alert is still
    /// `held`, keeps its line for the alert's notifications.
    pub(crate) fn done(&mut self, o: &RemediationOutcome, now_ms: i64, held: bool) {
        metrics::counter!(
            METRIC_REMEDIATIONS_TOTAL,
            LABEL_ACTION => o.action.clone(),
            LABEL_OUTCOME => o.result.as_str()
        )
        .increment(1);
        let line = o.line(now_ms);
        match &o.result {
            RemediationResult::Succeeded { .. } => tracing::info!(
                action = %o.action,
                alertname = %o.alertname,
                fingerprint = %o.fingerprint,
                outcome = o.result.as_str(),
                "{line}"
            ),
            _ => tracing::warn!(
                action = %o.action,
                alertname = %o.alertname,
                fingerprint = %o.fingerprint,
                outcome = o.result.as_str(),
                "{line}"
            ),
        }
        if !held
            || (self.outcomes.len() >= MAX_OUTCOME_ALERTS
                && !self.outcomes.contains_key(&o.fingerprint))
        {
            return;
        }
        self.outcomes
            .entry(o.fingerprint)
            .or_default()
            .insert(o.action.clone(), line);
    }

    /// Adds the `remediation` annotation to the alerts that have outcomes (nothing to do,
    /// and no work, when none has).
    pub(crate) fn annotate(&self, alerts: &mut [AmAlert]) {
        if self.outcomes.is_empty() {
            return;
        }
        for a in alerts {
            if let Some(lines) = self.outcomes.get(&a.fingerprint()) {
                let text: Vec<&str> = lines.values().map(String::as_str).collect();
                a.annotations
                    .insert(ANNOTATION_REMEDIATION.to_string(), text.join("\n"));
            }
        }
    }

    /// Forgets the outcomes of an alert that left every group.
    pub(crate) fn forget(&mut self, fp: Fingerprint) {
        if !self.outcomes.is_empty() {
            self.outcomes.remove(&fp);
        }
    }

    /// The history for the state file.
    pub(crate) fn history(&self) -> RemediationHistory {
        let mut last: Vec<LastRun> = self
            .last_run
            .iter()
            .map(|((action, fp), at)| LastRun {
                action: action.clone(),
                fingerprint: fp.0,
                at: *at,
            })
            .collect();
        last.sort_by(|a, b| (&a.action, a.fingerprint).cmp(&(&b.action, b.fingerprint)));
        RemediationHistory {
            last,
            runs: self
                .runs
                .iter()
                .filter(|(_, t)| !t.is_empty())
                .map(|(a, t)| (a.clone(), t.iter().copied().collect()))
                .collect(),
        }
    }

    /// Takes the history read from the state file.
    pub(crate) fn restore(&mut self, h: RemediationHistory) {
        for l in h.last {
            let at = self.last_run.entry((l.action, Fingerprint(l.fingerprint)));
            let at = at.or_insert(l.at);
            *at = (*at).max(l.at);
        }
        for (action, mut times) in h.runs {
            times.sort_unstable();
            self.runs.insert(action, times.into());
        }
    }

    /// Runs skipped so far for `action` and `reason`.
    pub fn skipped(&self, action: &str, reason: SkipReason) -> u64 {
        self.skipped
            .get(&(action.to_string(), reason))
            .copied()
            .unwrap_or(0)
    }

    /// When `action` last ran for the alert `fp` (ms), as far as the history remembers.
    pub fn last_run(&self, action: &str, fp: Fingerprint) -> Option<i64> {
        self.last_run.get(&(action.to_string(), fp)).copied()
    }

    /// How many runs of `action` the history holds after `since_ms`.
    pub fn runs_since(&self, action: &str, since_ms: i64) -> usize {
        self.runs
            .get(action)
            .map_or(0, |t| t.iter().filter(|t| **t > since_ms).count())
    }

    /// The latest outcome line of `action` for the alert `fp`, while the alert is held.
    pub fn outcome(&self, fp: Fingerprint, action: &str) -> Option<&str> {
        self.outcomes.get(&fp)?.get(action).map(String::as_str)
    }

    /// How many runs wait to be executed.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::delivery::ModelDuration;

    #[test]
    fn history_round_trips_and_old_entries_go() {
        let cfg = RemediationConfig {
            name: "a".into(),
            command: Some(vec!["/bin/true".into()]),
            url: None,
            timeout: ModelDuration(Duration::from_secs(1)),
            cooldown: ModelDuration(Duration::from_secs(60)),
            max_runs: 2,
            window: ModelDuration(Duration::from_secs(600)),
        };
        let mut r = Remediations::default();
        r.configure(std::slice::from_ref(&cfg));
        assert_eq!(r.decide(&cfg, Fingerprint(7), 0), None);
        assert_eq!(
            r.decide(&cfg, Fingerprint(7), 59_999),
            Some(SkipReason::Cooldown)
        );
        assert_eq!(r.decide(&cfg, Fingerprint(8), 1), None);
        assert_eq!(r.decide(&cfg, Fingerprint(9), 2), Some(SkipReason::MaxRuns));
        let h = r.history();
        let json = serde_json::to_string(&h).expect("json");
        let back: RemediationHistory = serde_json::from_str(&json).expect("back");
        assert_eq!(back, h);
        let mut again = Remediations::default();
        again.restore(back);
        again.configure(std::slice::from_ref(&cfg));
        assert_eq!(again.last_run("a", Fingerprint(7)), Some(0));
        assert_eq!(again.runs_since("a", -1), 2);
        // Past the window, the history is dropped and runs are allowed again.
        again.gc(600_002);
        assert!(again.history().is_empty());
        assert_eq!(again.decide(&cfg, Fingerprint(9), 600_002), None);
    }
}
