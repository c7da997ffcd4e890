//! Deploy-aware alerts: `LastDeployEnricher` over a real history, alone and inside
//! axi-obs-alert's in-process rules.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axi_obs_alert::enrich::AnnotationEnricher;
use axi_obs_alert::inprocess::InProcessRules;
use axi_obs_alert::promql::Labels;
use axi_obs_alert::rules::{Alert, AlertState};
use axi_obs_deploy::alert::LastDeployEnricher;
use axi_obs_deploy::event::{DeploymentRef, from_unix_ms};
use axi_obs_deploy::store::History;
use axi_obs_deploy::{Event, EventKind};

/// 2026-05-01T10:00:00Z.
const T0: i64 = 1_777_629_600_000;
const MIN: i64 = 60_000;

fn deploy(
    h: &mut History,
    id: &str,
    env: &str,
    version: &str,
    start: i64,
    end: Option<(i64, EventKind)>,
) {
    let d = DeploymentRef {
        id: id.into(),
        project: "axi-star-cloud".into(),
        environment: env.into(),
        version: version.into(),
        started_at: from_unix_ms(start),
    };
    let started = EventKind::Started {
        commit: None,
        commit_time: None,
        actor: None,
        trigger: None,
    };
    h.insert(&Event::new(d.clone(), 0, from_unix_ms(start), started))
        .unwrap();
    if let Some((at, kind)) = end {
        h.insert(&Event::new(d, 1, from_unix_ms(at), kind)).unwrap();
    }
}

fn alert(labels: &[(&str, &str)], active_at: i64) -> Alert {
    Alert {
        labels: Labels::from_pairs(labels.iter().copied()),
        annotations: BTreeMap::new(),
        state: AlertState::Firing,
        value: 1.0,
        active_at,
        fired_at: Some(active_at),
        resolved_at: None,
        last_sent_at: None,
        keep_firing_since: None,
    }
}

fn enrich(e: &mut LastDeployEnricher, a: &Alert) -> BTreeMap<String, String> {
    e.enrich(a).into_iter().collect()
}

#[test]
fn the_last_deployment_before_the_alert_is_described_by_outcome_and_age() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deploys.db");
    let mut h = History::open(&path).unwrap();
    deploy(
        &mut h,
        "d1",
        "prod",
        "v1.4.1",
        T0,
        Some((T0 + MIN, EventKind::Succeeded)),
    );
    deploy(
        &mut h,
        "d2",
        "staging",
        "v1.4.2",
        T0 + 2 * MIN,
        Some((
            T0 + 3 * MIN,
            EventKind::Failed {
                reason: "tests".into(),
            },
        )),
    );
    deploy(
        &mut h,
        "d3",
        "prod",
        "v1.4.2",
        T0 + 10 * MIN,
        Some((
            T0 + 12 * MIN,
            EventKind::RolledBack {
                to_version: "v1.4.1".into(),
                reason: None,
            },
        )),
    );
    deploy(&mut h, "d4", "prod", "v1.4.3", T0 + 60 * MIN, None);
    let mut e = LastDeployEnricher::new(History::open(&path).unwrap());
    let prod = [("project", "axi-star-cloud"), ("environment", "prod")];

    // Between d1 and d3: d1, succeeded 3 min before.
    let got = enrich(&mut e, &alert(&prod, T0 + 4 * MIN + 5_000));
    assert_eq!(
        got["last_deploy"],
        "started 3 min after v1.4.1 of axi-star-cloud went out to prod"
    );
    assert_eq!(got["last_deploy_version"], "v1.4.1");
    assert_eq!(got["last_deploy_id"], "d1");
    assert_eq!(got["last_deploy_status"], "succeeded");
    assert_eq!(got["last_deploy_at"], "2026-05-01T10:01:00Z");
    assert_eq!(got["last_deploy_age_seconds"], "185");

    // During d3 (started, not finished yet when the alert became active).
    let got = enrich(&mut e, &alert(&prod, T0 + 10 * MIN + 40_000));
    assert_eq!(
        got["last_deploy"],
        "started 40 s into the deploy of v1.4.2 of axi-star-cloud to prod"
    );
    assert_eq!(got["last_deploy_status"], "in_progress");

    // After d3's rollback; `service` and `env` labels found when `project` is absent.
    let got = enrich(
        &mut e,
        &alert(
            &[("service", "axi-star-cloud"), ("env", "prod")],
            T0 + 14 * MIN,
        ),
    );
    assert_eq!(
        got["last_deploy"],
        "started 2 min after v1.4.2 of axi-star-cloud was rolled back in prod"
    );

    // Another environment, and any environment when the alert has none.
    let staging = [("project", "axi-star-cloud"), ("environment", "staging")];
    let got = enrich(&mut e, &alert(&staging, T0 + 5 * MIN));
    assert_eq!(
        got["last_deploy"],
        "started 2 min after v1.4.2 of axi-star-cloud failed to deploy to staging"
    );
    let got = enrich(
        &mut e,
        &alert(&[("project", "axi-star-cloud")], T0 + 5 * MIN),
    );
    assert_eq!(got["last_deploy_id"], "d2");

    // Nothing: no project label, an unknown project, before any deploy, or too old.
    assert!(e.enrich(&alert(&[("job", "x")], T0 + 5 * MIN)).is_empty());
    assert!(
        e.enrich(&alert(&[("project", "other")], T0 + 5 * MIN))
            .is_empty()
    );
    assert!(e.enrich(&alert(&prod, T0 - MIN)).is_empty());
    let mut short =
        LastDeployEnricher::new(History::open(&path).unwrap()).max_age(Duration::from_secs(60));
    assert!(short.enrich(&alert(&prod, T0 + 5 * MIN)).is_empty());

    // Configured label names.
    let mut custom = LastDeployEnricher::new(History::open(&path).unwrap())
        .project_labels(["app"])
        .environment_labels(["stage"]);
    let got = enrich(
        &mut custom,
        &alert(
            &[
                ("app", "axi-star-cloud"),
                ("stage", "prod"),
                ("project", "other"),
            ],
            T0 + 4 * MIN,
        ),
    );
    assert_eq!(got["last_deploy_id"], "d1");
}

#[test]
fn in_process_rules_hand_out_firing_alerts_with_the_last_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deploys.db");
    let mut h = History::open(&path).unwrap();
    let now = axi_obs_deploy::event::unix_ms(time::OffsetDateTime::now_utc());
    deploy(
        &mut h,
        "d9",
        "prod",
        "v2.0.0",
        now - 10 * MIN,
        Some((now - 7 * MIN, EventKind::Succeeded)),
    );
    let rules = InProcessRules::builder()
        .rules_yaml("groups:\n  - name: g\n    rules:\n      - alert: Errors\n        expr: app_errors > 0\n        labels:\n          project: axi-star-cloud\n          environment: prod\n        annotations:\n          summary: errors\n")
        .source(|| "# TYPE app_errors gauge\napp_errors 3\n".to_owned())
        .interval(Duration::from_millis(20))
        .enricher(LastDeployEnricher::new(History::open(&path).unwrap()))
        .start()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let firing = loop {
        if let Some(a) = rules
            .alerts()
            .into_iter()
            .find(|a| a.state == AlertState::Firing)
        {
            break a;
        }
        assert!(Instant::now() < deadline, "no firing alert");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        firing.annotations["summary"], "errors",
        "the rule's own annotations stay"
    );
    assert_eq!(firing.annotations["last_deploy_version"], "v2.0.0");
    let age = (firing.active_at - (now - 7 * MIN)) / 1000;
    assert_eq!(
        firing.annotations["last_deploy_age_seconds"],
        age.to_string()
    );
    assert_eq!(
        firing.annotations["last_deploy"],
        format!(
            "started {} min after v2.0.0 of axi-star-cloud went out to prod",
            age / 60
        )
    );
}
