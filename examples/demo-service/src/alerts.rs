//! The demo's alert rules, evaluated in-process over its own metrics (axi-obs-alert), made
//! deploy-aware: a firing alert carries the last deployment of the service
//! (`last_deploy: started 3 min after v1.2.3 of demo-service went out to prod`).
//!
//! Every sample read gets the labels `project` and `environment` (the service as deployed), so
//! the alerts have them and [`LastDeployEnricher`](axi_obs_deploy::alert::LastDeployEnricher)
//! finds the deployment. Alerts that start firing are logged (`WARN`, with their annotations).

use std::collections::HashSet;
use std::time::Duration;

use axi_obs_alert::inprocess::InProcessRules;
use axi_obs_alert::rules::AlertState;

use crate::Deploys;
use crate::deploys::Error;

/// The rules, in Prometheus's rule-file format.
pub const RULES: &str = r#"groups:
  - name: demo-shop
    rules:
      - alert: OrdersNotCreated
        # A demo rule that fires on the first rejected or failed order (the load mode sends
        # some); a real service would alert on a rate over a window.
        expr: sum by (project, environment) (shop_orders_total{status=~"rejected|failed"}) > 0
        labels:
          severity: warning
        annotations:
          summary: "{{ $value }} orders of {{ $labels.project }} were rejected or failed"
"#;

/// Where the alerts come from and what they say about the service.
#[derive(Clone, Debug)]
pub struct AlertsConfig {
    /// The `project` label: the name deploys are recorded under (`axi-deploy --project`).
    pub project: String,
    /// The `environment` label (`axi-deploy --env`).
    pub environment: String,
    /// How often rules are evaluated.
    pub interval: Duration,
}

/// Starts evaluating [`RULES`] on a background thread (stopped when the result is dropped),
/// with the last deployment from `deploys` added to the alerts' annotations.
///
/// # Errors
///
/// When the rules are invalid (they are not) or the history cannot be opened.
pub fn start(config: &AlertsConfig, deploys: Option<&Deploys>) -> Result<InProcessRules, Error> {
    let mut firing: HashSet<String> = HashSet::new();
    let mut builder = InProcessRules::builder()
        .rules_yaml(RULES)
        .interval(config.interval)
        .label("project", config.project.clone())
        .label("environment", config.environment.clone())
        .on_alerts(move |alerts| {
            let now: HashSet<String> = alerts
                .iter()
                .filter(|a| a.state == AlertState::Firing)
                .map(|a| a.labels.to_string())
                .collect();
            for a in alerts.iter().filter(|a| a.state == AlertState::Firing) {
                if !firing.contains(&a.labels.to_string()) {
                    let annotations = serde_json::to_string(&a.annotations).unwrap_or_default();
                    tracing::warn!(alert = %a.labels, annotations = %annotations, "alert firing");
                }
            }
            firing = now;
        });
    if let Some(d) = deploys {
        builder = builder.enricher(d.last_deploy_enricher()?);
    }
    builder.start().map_err(|errors| {
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        Error::from(text.join("; "))
    })
}
