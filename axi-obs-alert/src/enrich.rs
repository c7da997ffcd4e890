//! Annotation enrichers: extra annotations computed for an alert when it is handed out, from
//! something the rule cannot query (a deploy history, an owner directory, a runbook index).
//!
//! An [`AnnotationEnricher`] sees each alert of an evaluation round (pending, firing and
//! recently resolved, with labels, value and `active_at`) and returns annotations to add. The
//! rule's own annotations win: an enricher's annotation is only added where the alert has none
//! of that name. Closures `FnMut(&Alert) -> Vec<(String, String)>` are enrichers.
//! [`InProcessBuilder::enricher`](crate::inprocess::InProcessBuilder::enricher) runs them on
//! the evaluation thread after each round, before [`InProcessRules::alerts`] and `on_alerts`
//! see the alerts.
//!
//! This is how a sibling crate makes alerts deploy-aware without either crate depending on the
//! other: axi-obs-deploy (feature `alert`) implements this trait over its history ("started
//! 3 min after v1.4.2 of axi-star-cloud went out"), and the application connects them.
//!
//! ```
//! use std::collections::BTreeMap;
//! use axi_obs_alert::enrich::{AnnotationEnricher, apply};
//! use axi_obs_alert::promql::Labels;
//! use axi_obs_alert::rules::{Alert, AlertState};
//!
//! let owner = |a: &Alert| match a.labels.get("service") {
//!     Some("checkout") => vec![("owner".to_string(), "team-payments".to_string())],
//!     _ => Vec::new(),
//! };
//! let mut alerts = vec![Alert {
//!     labels: Labels::from_pairs([("alertname", "Down"), ("service", "checkout")]),
//!     annotations: BTreeMap::new(),
//!     state: AlertState::Firing,
//!     value: 1.0,
//!     active_at: 0,
//!     fired_at: Some(0),
//!     resolved_at: None,
//!     last_sent_at: None,
//!     keep_firing_since: None,
//! }];
//! let mut enrichers: Vec<Box<dyn AnnotationEnricher>> = vec![Box::new(owner)];
//! apply(&mut enrichers, &mut alerts);
//! assert_eq!(alerts[0].annotations["owner"], "team-payments");
//! ```
//!
//! [`InProcessRules::alerts`]: crate::inprocess::InProcessRules::alerts

use crate::rules::Alert;

/// Computes annotations to add to an alert. See the [module documentation](self).
pub trait AnnotationEnricher: Send + 'static {
    /// Annotations for `alert` (name, value). Called on the evaluation thread once per alert
    /// per round: keep it quick, and return nothing rather than fail.
    fn enrich(&mut self, alert: &Alert) -> Vec<(String, String)>;
}

impl<F> AnnotationEnricher for F
where
    F: FnMut(&Alert) -> Vec<(String, String)> + Send + 'static,
{
    fn enrich(&mut self, alert: &Alert) -> Vec<(String, String)> {
        self(alert)
    }
}

/// Runs every enricher over every alert, adding the annotations the alert does not have yet.
pub fn apply<'a>(
    enrichers: &mut [Box<dyn AnnotationEnricher>],
    alerts: impl IntoIterator<Item = &'a mut Alert>,
) {
    for alert in alerts {
        for e in enrichers.iter_mut() {
            for (name, value) in e.enrich(alert) {
                alert.annotations.entry(name).or_insert(value);
            }
        }
    }
}
