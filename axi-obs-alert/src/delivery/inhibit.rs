//! Inhibition as Alertmanager's `inhibit/inhibit.go`: a target alert is muted while a firing
//! source alert exists whose `equal` labels have the same values.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use super::config::InhibitRule;
use super::matcher::{MatchOp, Matcher};
use super::model::{AmAlert, Fingerprint, LabelSet};

#[derive(Debug, Clone)]
struct Rule {
    source: Vec<Matcher>,
    target: Vec<Matcher>,
    equal: Vec<String>,
    /// Alerts matching the source matchers (`scache`), by fingerprint.
    sources: HashMap<Fingerprint, Source>,
}

/// What inhibition needs of a source alert: its labels and when it ends (annotations and
/// the rest are not copied).
#[derive(Debug, Clone)]
struct Source {
    labels: LabelSet,
    ends_at: Option<i64>,
}

impl Source {
    fn resolved_at(&self, now_ms: i64) -> bool {
        self.ends_at.is_some_and(|e| e <= now_ms)
    }
}

fn all_match(ms: &[Matcher], labels: &LabelSet) -> bool {
    ms.iter().all(|m| m.matches(labels))
}

fn merged(
    matchers: &[Matcher],
    eq: &std::collections::BTreeMap<String, String>,
    re: &std::collections::BTreeMap<String, String>,
) -> Vec<Matcher> {
    let mut out: Vec<Matcher> = matchers.to_vec();
    // Equality matchers cannot fail; regular expressions were checked when the
    // configuration was read.
    out.extend(
        eq.iter()
            .filter_map(|(k, v)| Matcher::new(k, MatchOp::Equal, v).ok()),
    );
    out.extend(
        re.iter()
            .filter_map(|(k, v)| Matcher::new(k, MatchOp::Regex, v).ok()),
    );
    out
}

/// The inhibition rules and the source alerts each has seen.
///
/// ```
/// use std::path::Path;
/// use axi_obs_alert::delivery::{AmAlert, Config, Inhibitor, LabelSet};
///
/// let cfg = Config::parse(r#"
/// route: {receiver: r}
/// receivers: [{name: r}]
/// inhibit_rules:
/// - source_matchers: [severity="critical"]
///   target_matchers: [severity="warning"]
///   equal: [cluster]
/// "#, Path::new("am.yml")).unwrap();
/// let mut inh = Inhibitor::new(&cfg.inhibit_rules);
/// let ls = |s: &str| LabelSet::from([
///     ("severity".to_string(), s.to_string()),
///     ("cluster".to_string(), "a".to_string()),
/// ]);
/// inh.observe(&AmAlert { labels: ls("critical"), annotations: LabelSet::new(),
///     starts_at: 0, ends_at: Some(100), generator_url: String::new() });
/// assert!(inh.mutes(&ls("warning"), 50));
/// assert!(!inh.mutes(&ls("warning"), 100)); // the source resolved
/// ```
#[derive(Debug, Clone, Default)]
pub struct Inhibitor {
    rules: Vec<Rule>,
}

impl Inhibitor {
    /// The rules of a configuration (validated by [`Config::parse`](super::Config::parse)).
    pub fn new(rules: &[InhibitRule]) -> Inhibitor {
        Inhibitor {
            rules: rules
                .iter()
                .map(|r| Rule {
                    source: merged(&r.source_matchers.0, &r.source_match, &r.source_match_re.0),
                    target: merged(&r.target_matchers.0, &r.target_match, &r.target_match_re.0),
                    equal: r.equal.clone(),
                    sources: HashMap::new(),
                })
                .collect(),
        }
    }

    /// Takes note of a received alert: it becomes (or updates) a source of every rule
    /// whose source matchers it matches.
    pub fn observe(&mut self, alert: &AmAlert) {
        self.observe_labels(alert.fingerprint(), &alert.labels, alert.ends_at);
    }

    /// [`observe`](Inhibitor::observe) of an alert whose fingerprint is known: a source
    /// seen before only has its end updated (the same fingerprint, the same labels), so a
    /// re-sent alert costs no copy.
    pub(crate) fn observe_labels(
        &mut self,
        fp: Fingerprint,
        labels: &LabelSet,
        ends_at: Option<i64>,
    ) {
        for r in &mut self.rules {
            if !all_match(&r.source, labels) {
                continue;
            }
            match r.sources.entry(fp) {
                Entry::Occupied(mut e) => e.get_mut().ends_at = ends_at,
                Entry::Vacant(e) => {
                    e.insert(Source {
                        labels: labels.clone(),
                        ends_at,
                    });
                }
            }
        }
    }

    /// Whether an alert with `labels` is inhibited at `now_ms` (`Inhibitor.Mutes`): some
    /// rule's target matchers match it and a source alert of that rule fires at `now_ms`
    /// with the same values of the `equal` labels (a missing label counts as empty). When
    /// the alert also matches the rule's source matchers, sources that match the target
    /// matchers are ignored, so an alert never inhibits itself and alerts matching both
    /// sides never inhibit each other.
    pub fn mutes(&self, labels: &LabelSet, now_ms: i64) -> bool {
        self.sources_muting(labels, now_ms).next().is_some()
    }

    /// The fingerprints of the source alerts that inhibit an alert with `labels` at
    /// `now_ms` (the API's `inhibitedBy`), sorted, each once.
    pub fn inhibited_by(&self, labels: &LabelSet, now_ms: i64) -> Vec<Fingerprint> {
        let mut v: Vec<Fingerprint> = self.sources_muting(labels, now_ms).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    fn sources_muting<'a>(
        &'a self,
        labels: &'a LabelSet,
        now_ms: i64,
    ) -> impl Iterator<Item = Fingerprint> + 'a {
        let get = |ls: &'a LabelSet, n: &str| ls.get(n).map_or("", String::as_str);
        self.rules
            .iter()
            .filter(move |r| all_match(&r.target, labels))
            .flat_map(move |r| {
                let two_sided = all_match(&r.source, labels);
                r.sources.iter().filter_map(move |(fp, s)| {
                    (!s.resolved_at(now_ms)
                        && r.equal.iter().all(|n| get(&s.labels, n) == get(labels, n))
                        && !(two_sided && all_match(&r.target, &s.labels)))
                    .then_some(*fp)
                })
            })
    }

    /// Forgets source alerts resolved at `now_ms`; returns how many entries were dropped.
    pub fn gc(&mut self, now_ms: i64) -> usize {
        let mut n = 0;
        for r in &mut self.rules {
            let before = r.sources.len();
            r.sources.retain(|_, a| !a.resolved_at(now_ms));
            n += before - r.sources.len();
        }
        n
    }

    /// How many source alerts are held over all rules.
    pub fn sources(&self) -> usize {
        self.rules.iter().map(|r| r.sources.len()).sum()
    }
}
