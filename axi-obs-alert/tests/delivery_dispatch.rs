//! The built-in router's runtime with an explicit clock: aggregation groups and their three
//! timers, the dedup rules, inhibition, silences, restart from the persisted state, and
//! delivery with retries to a local webhook receiver; and the runner task on the wall clock.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axi_obs_alert::delivery::{
    Clock as _, Config, Dispatcher, DispatcherOptions, LabelSet, Matcher, Notifier, RetryPolicy,
    Runner, RunnerError, SilenceState, SystemClock,
};
use axi_obs_core::testing::Capture;
use serde_json::Value;

mod common;
use common::{alert, counter};

/// 2026-01-01T00:00:00Z in ms.
const T0: i64 = 1_767_225_600_000;
const S: i64 = 1000;
const MIN: i64 = 60 * S;
/// An end far ahead: the alert fires for the whole test.
const FAR: i64 = T0 + 1000 * MIN;

/// A local webhook receiver answering with scripted statuses (then 200) and keeping the
/// bodies it answered 200 to, and counting every request.
#[derive(Clone, Default)]
struct Hook {
    statuses: Arc<Mutex<VecDeque<u16>>>,
    accepted: Arc<Mutex<Vec<Value>>>,
    requests: Arc<Mutex<usize>>,
}

impl Hook {
    async fn start(statuses: &[u16]) -> (Hook, String) {
        let hook = Hook::default();
        hook.statuses
            .lock()
            .expect("lock")
            .extend(statuses.iter().copied());
        let h = hook.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
                let h = h.clone();
                async move {
                    *h.requests.lock().expect("lock") += 1;
                    let status = h.statuses.lock().expect("lock").pop_front().unwrap_or(200);
                    if status == 200 {
                        h.accepted.lock().expect("lock").push(v);
                    }
                    axum::http::StatusCode::from_u16(status).expect("status")
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (hook, format!("http://127.0.0.1:{port}/hook"))
    }

    fn take(&self) -> Vec<Value> {
        std::mem::take(&mut *self.accepted.lock().expect("lock"))
    }

    fn requests(&self) -> usize {
        *self.requests.lock().expect("lock")
    }
}

fn config(url: &str, extra: &str) -> Config {
    let yaml = format!(
        r#"
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 1h
receivers:
- name: hook
  webhook_configs:
  - url: {url}
{extra}
"#
    );
    Config::parse(&yaml, Path::new("am.yml")).expect("config")
}

/// Options persisting to a state file in a new directory (removed when the guard drops).
fn with_state_file() -> (tempfile::TempDir, impl Fn() -> DispatcherOptions) {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.json");
    let opts = move || DispatcherOptions {
        state_file: Some(state.clone()),
        ..DispatcherOptions::default()
    };
    (dir, opts)
}

fn notifier() -> Notifier {
    Notifier::new(
        axi_obs_alert::delivery::http_client().expect("the delivery HTTP client"),
        RetryPolicy {
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
            max_attempts: 5,
        },
    )
}

/// Ticks at every flush time up to and including `until`; returns the bodies accepted, each
/// with the tick time it was sent at.
async fn run_until(d: &mut Dispatcher, n: &Notifier, hook: &Hook, until: i64) -> Vec<(i64, Value)> {
    let mut out = Vec::new();
    while let Some(t) = d.next_flush_ms().filter(|t| *t <= until) {
        d.tick(t, n).await.expect("tick");
        out.extend(hook.take().into_iter().map(|b| (t, b)));
    }
    out
}

fn summary(sent: &[(i64, Value)]) -> Vec<(i64, String, String, usize)> {
    sent.iter()
        .map(|(t, b)| {
            (
                (t - T0) / S,
                b["groupLabels"]["alertname"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                b["notification_reason"].as_str().unwrap_or("").to_string(),
                b["alerts"].as_array().map_or(0, Vec::len),
            )
        })
        .collect()
}

fn row(t_s: i64, name: &str, reason: &str, n: usize) -> (i64, String, String, usize) {
    (t_s, name.to_string(), reason.to_string(), n)
}

#[tokio::test]
async fn grouping_and_the_three_timers() {
    let (hook, url) = Hook::start(&[]).await;
    let cfg = config(&url, "");
    let n = notifier();
    let mut d = Dispatcher::new(&cfg, DispatcherOptions::default(), T0).expect("dispatcher");
    d.insert(alert(&[("alertname", "X"), ("i", "1")], T0, FAR), T0);
    d.insert(
        alert(&[("alertname", "X"), ("i", "2")], T0, FAR),
        T0 + 10 * S,
    );
    d.insert(alert(&[("alertname", "Y")], T0, FAR), T0 + 10 * S);
    assert_eq!(d.group_count(), 2);
    // group_wait: X flushes 30 s after its first alert, Y 30 s after its own.
    assert!(run_until(&mut d, &n, &hook, T0 + 29_999).await.is_empty());
    let sent = run_until(&mut d, &n, &hook, T0 + 40 * S).await;
    assert_eq!(
        summary(&sent),
        vec![
            row(30, "X", "first notification", 2),
            row(40, "Y", "first notification", 1)
        ]
    );
    let body = &sent[0].1;
    assert_eq!(body["groupKey"], r#"{}:{alertname="X"}"#);
    assert_eq!(body["status"], "firing");
    assert_eq!(body["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(body["alerts"][1]["labels"]["i"], "2");
    // A new alert waits for the group_interval flush (30 s + 5 min), not group_wait.
    d.insert(
        alert(&[("alertname", "X"), ("i", "3")], T0 + MIN, FAR),
        T0 + MIN,
    );
    assert!(
        run_until(&mut d, &n, &hook, T0 + 5 * MIN + 29_999)
            .await
            .is_empty()
    );
    let sent = run_until(&mut d, &n, &hook, T0 + 5 * MIN + 30 * S).await;
    assert_eq!(summary(&sent), vec![row(330, "X", "new alerts added", 3)]);
    // Unchanged groups are notified again only once repeat_interval (1 h) has passed since
    // their last notification: X last sent at 330 s, Y at 40 s; flushes run every 5 min,
    // so each repeats at the first flush strictly after its last notification + 1 h.
    let sent = run_until(&mut d, &n, &hook, T0 + 71 * MIN).await;
    assert_eq!(
        summary(&sent),
        vec![
            row(3940, "Y", "repeat interval elapsed", 1),
            row(4230, "X", "repeat interval elapsed", 3)
        ]
    );
}

#[tokio::test]
async fn resolved_alerts_are_sent_once_then_removed() {
    let (hook, url) = Hook::start(&[]).await;
    let cfg = config(&url, "");
    let n = notifier();
    let mut d = Dispatcher::new(&cfg, DispatcherOptions::default(), T0).expect("dispatcher");
    d.insert(alert(&[("alertname", "X"), ("i", "1")], T0, FAR), T0);
    d.insert(alert(&[("alertname", "X"), ("i", "2")], T0, FAR), T0);
    assert_eq!(
        summary(&run_until(&mut d, &n, &hook, T0 + 30 * S).await).len(),
        1
    );
    // One alert resolves: with send_resolved (the webhook default) that is notified once.
    d.insert(
        alert(&[("alertname", "X"), ("i", "1")], T0, T0 + MIN),
        T0 + MIN,
    );
    let sent = run_until(&mut d, &n, &hook, T0 + 20 * MIN).await;
    assert_eq!(
        summary(&sent),
        vec![row(330, "X", "some alerts resolved", 2)]
    );
    let statuses: Vec<&str> = sent[0].1["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|a| a["status"].as_str().expect("status"))
        .collect();
    assert_eq!(statuses, ["resolved", "firing"]);
    assert_eq!(sent[0].1["alerts"][0]["endsAt"], "2026-01-01T00:01:00Z");
    // The resolved alert left the group after it was notified.
    assert_eq!(d.alert_count(), 1);
    // The last one resolves through its end passing: one notification, then the group goes.
    d.insert(
        alert(&[("alertname", "X"), ("i", "2")], T0, T0 + 21 * MIN),
        T0 + 20 * MIN,
    );
    let sent = run_until(&mut d, &n, &hook, T0 + 200 * MIN).await;
    assert_eq!(
        summary(&sent),
        vec![row(1530, "X", "all alerts resolved", 1)]
    );
    assert_eq!(sent[0].1["status"], "resolved");
    assert_eq!(d.group_count(), 0);
    assert_eq!(d.next_flush_ms(), None);
}

#[tokio::test]
async fn without_send_resolved_a_partial_resolution_is_not_notified() {
    let (hook, url) = Hook::start(&[]).await;
    let yaml = format!(
        "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 30s\n  group_interval: 5m\n  repeat_interval: 1h\nreceivers:\n- name: hook\n  webhook_configs:\n  - url: {url}\n    send_resolved: false\n"
    );
    let cfg = Config::parse(&yaml, Path::new("am.yml")).expect("config");
    let n = notifier();
    let mut d = Dispatcher::new(&cfg, DispatcherOptions::default(), T0).expect("dispatcher");
    d.insert(alert(&[("alertname", "X"), ("i", "1")], T0, FAR), T0);
    d.insert(alert(&[("alertname", "X"), ("i", "2")], T0, FAR), T0);
    run_until(&mut d, &n, &hook, T0 + 30 * S).await;
    d.insert(
        alert(&[("alertname", "X"), ("i", "1")], T0, T0 + MIN),
        T0 + MIN,
    );
    assert!(run_until(&mut d, &n, &hook, T0 + 30 * MIN).await.is_empty());
    // All resolved: the log is updated, but there is nothing to send without send_resolved.
    d.insert(
        alert(&[("alertname", "X"), ("i", "2")], T0, T0 + 31 * MIN),
        T0 + 31 * MIN,
    );
    assert!(
        run_until(&mut d, &n, &hook, T0 + 100 * MIN)
            .await
            .is_empty()
    );
    assert_eq!(hook.requests(), 1);
    assert_eq!(d.group_count(), 0);
}

#[tokio::test]
async fn inhibition_mutes_targets_while_a_source_fires() {
    let (hook, url) = Hook::start(&[]).await;
    let rules = r#"inhibit_rules:
- source_matchers: [severity="critical"]
  target_matchers: [severity="warning"]
  equal: [cluster]
- source_matchers: [alertname="Both"]
  target_matchers: [alertname="Both"]
"#;
    let cfg = Config::parse(
        &format!(
            "route:\n  receiver: hook\n  group_by: ['...']\n  group_wait: 30s\n  group_interval: 5m\n  repeat_interval: 1h\nreceivers:\n- name: hook\n  webhook_configs:\n  - url: {url}\n{rules}"
        ),
        Path::new("am.yml"),
    )
    .expect("config");
    let n = notifier();
    let mut d = Dispatcher::new(&cfg, DispatcherOptions::default(), T0).expect("dispatcher");
    let crit = |end| {
        alert(
            &[
                ("alertname", "C"),
                ("severity", "critical"),
                ("cluster", "a"),
            ],
            T0,
            end,
        )
    };
    d.insert(crit(FAR), T0);
    d.insert(
        alert(
            &[
                ("alertname", "W"),
                ("severity", "warning"),
                ("cluster", "a"),
            ],
            T0,
            FAR,
        ),
        T0,
    );
    d.insert(
        alert(
            &[
                ("alertname", "W"),
                ("severity", "warning"),
                ("cluster", "b"),
            ],
            T0,
            FAR,
        ),
        T0,
    );
    d.insert(
        alert(&[("alertname", "W"), ("severity", "warning")], T0, FAR),
        T0,
    );
    // Matches both sides of the second rule: it does not inhibit itself.
    d.insert(alert(&[("alertname", "Both")], T0, FAR), T0);
    let sent = run_until(&mut d, &n, &hook, T0 + 30 * S).await;
    let mut keys: Vec<String> = sent
        .iter()
        .map(|(_, b)| b["groupKey"].as_str().expect("key").to_string())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            r#"{}:{alertname="Both"}"#,
            r#"{}:{alertname="C", cluster="a", severity="critical"}"#,
            r#"{}:{alertname="W", cluster="b", severity="warning"}"#,
            r#"{}:{alertname="W", severity="warning"}"#,
        ]
    );
    let muted = |c: &str| {
        LabelSet::from([
            ("alertname".to_string(), "W".to_string()),
            ("severity".to_string(), "warning".to_string()),
            ("cluster".to_string(), c.to_string()),
        ])
    };
    assert!(d.is_muted(&muted("a"), T0 + 30 * S));
    // The source resolves: the target is notified at its group's next flush.
    d.insert(crit(T0 + MIN), T0 + MIN);
    let sent = run_until(&mut d, &n, &hook, T0 + 5 * MIN + 30 * S).await;
    let mut got: Vec<(String, String)> = sent
        .iter()
        .map(|(_, b)| {
            (
                b["groupKey"].as_str().expect("key").to_string(),
                b["notification_reason"]
                    .as_str()
                    .expect("reason")
                    .to_string(),
            )
        })
        .collect();
    // Both groups flush in the same tick and are delivered concurrently.
    got.sort();
    assert_eq!(
        got,
        [
            (
                r#"{}:{alertname="C", cluster="a", severity="critical"}"#.to_string(),
                "all alerts resolved".to_string()
            ),
            (
                r#"{}:{alertname="W", cluster="a", severity="warning"}"#.to_string(),
                "first notification".to_string()
            ),
        ]
    );
    assert!(!d.is_muted(&muted("a"), T0 + 6 * MIN));
}

#[tokio::test]
async fn silences_mute_until_expired_and_persist() {
    let (_dir, opts) = with_state_file();
    let (hook, url) = Hook::start(&[]).await;
    let cfg = config(&url, "");
    let n = notifier();
    let mut d = Dispatcher::new(&cfg, opts(), T0).expect("dispatcher");
    let m = Matcher::parse_list(r#"alertname="X", env=~"prod|stage""#).expect("matchers");
    let id = d
        .silences_mut()
        .create(m, T0, T0 + 60 * MIN, "ops", "maintenance", T0)
        .expect("silence");
    // Not persisted explicitly: the ticks below write it although they send nothing.
    d.insert(alert(&[("alertname", "X"), ("env", "prod")], T0, FAR), T0);
    assert!(run_until(&mut d, &n, &hook, T0 + 20 * MIN).await.is_empty());
    assert_eq!(d.silences().list().len(), 1);
    assert_eq!(
        d.silences().list()[0].state(T0 + 20 * MIN),
        SilenceState::Active
    );
    // A restart keeps the silence.
    let mut d = Dispatcher::new(&cfg, opts(), T0 + 21 * MIN).expect("restart");
    let s = d.silences().get(&id).expect("persisted silence");
    assert_eq!(
        (s.created_by.as_str(), s.comment.as_str()),
        ("ops", "maintenance")
    );
    d.insert(
        alert(&[("alertname", "X"), ("env", "prod")], T0, FAR),
        T0 + 21 * MIN,
    );
    // Old alert in a group that never flushed: flushed at once, but still silenced.
    assert!(run_until(&mut d, &n, &hook, T0 + 22 * MIN).await.is_empty());
    // Written by the next tick, without an explicit persist.
    d.silences_mut().expire(&id, T0 + 23 * MIN).expect("expire");
    let sent = run_until(&mut d, &n, &hook, T0 + 30 * MIN).await;
    assert_eq!(
        summary(&sent),
        vec![row(26 * 60, "X", "first notification", 1)]
    );
    let d = Dispatcher::new(&cfg, opts(), T0 + 31 * MIN).expect("restart");
    assert_eq!(
        d.silences().get(&id).expect("kept").state(T0 + 31 * MIN),
        SilenceState::Expired
    );
}

#[tokio::test]
async fn restart_from_the_persisted_log_does_not_renotify() {
    let (_dir, opts) = with_state_file();
    let (hook, url) = Hook::start(&[]).await;
    let cfg = config(&url, "");
    let n = notifier();
    let a = || alert(&[("alertname", "X")], T0, FAR);
    let mut d = Dispatcher::new(&cfg, opts(), T0).expect("dispatcher");
    d.insert(a(), T0);
    assert_eq!(run_until(&mut d, &n, &hook, T0 + 30 * S).await.len(), 1);
    drop(d);
    // The process restarts; Prometheus re-sends the firing alert.
    let mut d = Dispatcher::new(&cfg, opts(), T0 + 2 * MIN).expect("restart");
    assert_eq!(d.nflog().len(), 1);
    d.insert(a(), T0 + 2 * MIN);
    assert!(run_until(&mut d, &n, &hook, T0 + 50 * MIN).await.is_empty());
    // The repeat still happens after repeat_interval from the first notification.
    let sent = run_until(&mut d, &n, &hook, T0 + 70 * MIN).await;
    assert_eq!(
        summary(&sent),
        vec![row(3720, "X", "repeat interval elapsed", 1)]
    );
    // A restart with no state file notifies again: the log is what prevents it.
    let mut fresh =
        Dispatcher::new(&cfg, DispatcherOptions::default(), T0 + 71 * MIN).expect("fresh");
    fresh.insert(a(), T0 + 71 * MIN);
    let sent = run_until(&mut fresh, &n, &hook, T0 + 72 * MIN).await;
    assert_eq!(
        summary(&sent),
        vec![row(4260, "X", "first notification", 1)]
    );
    // Entries expire: 2 × repeat_interval after the last notification, nothing is left.
    let d = Dispatcher::new(&cfg, opts(), T0 + 62 * MIN + 120 * MIN).expect("restart");
    assert_eq!(d.nflog().len(), 0);
}

#[test]
fn webhook_answering_500_twice_then_200_gets_the_notification_once() {
    let cap = Capture::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    cap.run(|| {
        rt.block_on(async {
            let (hook, url) = Hook::start(&[500, 500]).await;
            let cfg = config(&url, "");
            let n = notifier();
            let mut d = Dispatcher::new(&cfg, DispatcherOptions::default(), T0).expect("d");
            d.insert(alert(&[("alertname", "X")], T0, FAR), T0);
            let sent = run_until(&mut d, &n, &hook, T0 + 20 * MIN).await;
            assert_eq!(summary(&sent), vec![row(30, "X", "first notification", 1)]);
            assert_eq!(hook.requests(), 3);
        })
    });
    let wh = [("integration", "webhook")];
    assert_eq!(counter(&cap, "alertmanager_notifications_total", &wh), 1);
    assert_eq!(
        counter(&cap, "alertmanager_notification_requests_total", &wh),
        3
    );
    assert_eq!(
        counter(&cap, "alertmanager_notification_requests_failed_total", &wh),
        2
    );
    assert_eq!(
        counter(&cap, "alertmanager_notifications_failed_total", &wh),
        0
    );
    let latency = cap
        .metrics()
        .family("alertmanager_notification_latency_seconds")
        .and_then(|f| f.series[0].value.as_histogram().map(|h| h.count))
        .expect("latency histogram");
    assert_eq!(latency, 3);
}

#[test]
fn a_4xx_answer_fails_at_once_and_the_next_flush_tries_again() {
    let cap = Capture::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    cap.run(|| {
        rt.block_on(async {
            let (hook, url) = Hook::start(&[400]).await;
            let cfg = config(&url, "");
            let n = notifier();
            let mut d = Dispatcher::new(&cfg, DispatcherOptions::default(), T0).expect("d");
            d.insert(alert(&[("alertname", "X")], T0, FAR), T0);
            let report = d.tick(T0 + 30 * S, &n).await.expect("tick");
            assert_eq!((report.sent, report.failed), (0, 1));
            assert_eq!(hook.requests(), 1);
            assert!(d.nflog().is_empty());
            let sent = run_until(&mut d, &n, &hook, T0 + 20 * MIN).await;
            assert_eq!(summary(&sent), vec![row(330, "X", "first notification", 1)]);
        })
    });
    let failed = [("integration", "webhook"), ("reason", "clientError")];
    assert_eq!(
        counter(&cap, "alertmanager_notifications_failed_total", &failed),
        1
    );
    assert_eq!(
        counter(
            &cap,
            "alertmanager_notifications_total",
            &[("integration", "webhook")]
        ),
        2
    );
}

#[tokio::test]
async fn group_and_alert_limits_refuse_and_count() {
    let (hook, url) = Hook::start(&[]).await;
    let cfg = config(&url, "");
    let opts = DispatcherOptions {
        max_groups: 1,
        max_alerts_per_group: 2,
        ..DispatcherOptions::default()
    };
    let mut d = Dispatcher::new(&cfg, opts, T0).expect("dispatcher");
    for i in ["1", "2", "3"] {
        d.insert(alert(&[("alertname", "X"), ("i", i)], T0, FAR), T0);
    }
    let other = d.insert(alert(&[("alertname", "Y")], T0, FAR), T0);
    assert_eq!((other.groups, other.refused), (0, 1));
    // An update of an alert already held is not refused.
    let again = d.insert(alert(&[("alertname", "X"), ("i", "2")], T0, FAR), T0);
    assert_eq!((again.groups, again.refused), (1, 0));
    assert_eq!((d.group_count(), d.alert_count()), (1, 2));
    assert_eq!((d.groups_refused(), d.alerts_refused()), (1, 1));
    let sent = run_until(&mut d, &n_default(), &hook, T0 + 30 * S).await;
    assert_eq!(summary(&sent), vec![row(30, "X", "first notification", 2)]);
}

/// A re-sent alert goes straight into the groups it went into before (the routing tree is
/// skipped); these are the cases where that shortcut must give way to routing again.
#[tokio::test]
async fn a_resent_alert_is_routed_again_when_its_groups_changed() {
    let (hook, url) = Hook::start(&[]).await;
    let two_routes = |group_by: &str| {
        let yaml = format!(
            r#"
route:
  receiver: hook
  group_by: [{group_by}]
  group_wait: 30s
  routes:
  - matchers: [team="db"]
    receiver: hook
    continue: true
  - matchers: [team="db"]
    receiver: other
receivers:
- name: hook
  webhook_configs: [{{url: "{url}"}}]
- name: other
  webhook_configs: [{{url: "{url}"}}]
"#
        );
        Config::parse(&yaml, Path::new("am.yml")).expect("config")
    };
    let opts = DispatcherOptions {
        max_alerts_per_group: 1,
        ..DispatcherOptions::default()
    };
    let mut d = Dispatcher::new(&two_routes("alertname"), opts, T0).expect("dispatcher");
    let a =
        |i: &str, ends_at: i64| alert(&[("alertname", "X"), ("team", "db"), ("i", i)], T0, ends_at);
    // Two groups take it, every time it is sent.
    for _ in 0..3 {
        let got = d.insert(a("1", FAR), T0);
        assert_eq!((got.groups, got.refused), (2, 0));
    }
    assert_eq!((d.group_count(), d.alert_count()), (2, 2));
    // A second alert of the same groups is refused (one alert per group), every time.
    for _ in 0..2 {
        let got = d.insert(a("2", FAR), T0);
        assert_eq!((got.groups, got.refused), (0, 2));
    }
    // The first resolves and is notified: it leaves, its groups go.
    d.insert(a("1", T0 + S), T0 + S);
    run_until(&mut d, &notifier(), &hook, T0 + 10 * MIN).await;
    assert_eq!(d.group_count(), 0);
    // The refused alert now finds room, and the first one, firing again, new groups.
    let got = d.insert(a("2", FAR), T0 + 11 * MIN);
    assert_eq!((got.groups, got.refused), (2, 0));
    let got = d.insert(a("1", FAR), T0 + 11 * MIN);
    assert_eq!((got.groups, got.refused), (0, 2));
    // A new configuration groups differently: the alerts held and the re-sent ones follow it.
    d.reconfigure(&two_routes("alertname, i"), T0 + 12 * MIN)
        .expect("reconfigure");
    assert_eq!((d.group_count(), d.alert_count()), (2, 2));
    let got = d.insert(a("1", FAR), T0 + 12 * MIN);
    assert_eq!((got.groups, got.refused), (2, 0));
    let got = d.insert(a("1", FAR), T0 + 12 * MIN);
    assert_eq!((got.groups, got.refused), (2, 0));
    assert_eq!((d.group_count(), d.alert_count()), (4, 4));
    let mut labels: Vec<String> = d
        .groups(T0 + 12 * MIN)
        .iter()
        .map(|g| format!("{} {:?}", g.receiver, g.labels))
        .collect();
    labels.sort();
    assert_eq!(
        labels,
        [
            r#"hook {"alertname": "X", "i": "1"}"#,
            r#"hook {"alertname": "X", "i": "2"}"#,
            r#"other {"alertname": "X", "i": "1"}"#,
            r#"other {"alertname": "X", "i": "2"}"#,
        ]
    );
}

fn n_default() -> Notifier {
    notifier()
}

#[tokio::test]
async fn runner_delivers_on_the_wall_clock_and_hands_back_its_state() {
    let (_dir, opts) = with_state_file();
    let (hook, url) = Hook::start(&[]).await;
    let yaml = format!(
        "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n- name: hook\n  webhook_configs:\n  - url: {url}\n"
    );
    let cfg = Config::parse(&yaml, Path::new("am.yml")).expect("config");
    let now = SystemClock.now_ms();
    let d = Dispatcher::new(&cfg, opts(), now).expect("dispatcher");
    let (runner, task) = Runner::spawn(d, notifier(), SystemClock, 2);
    let id = runner
        .create_silence(
            Matcher::parse_list(r#"alertname="S""#).expect("matcher"),
            now,
            now + 60 * MIN,
            "ops".into(),
            "quiet".into(),
        )
        .await
        .expect("silence");
    let refused = runner
        .create_silence(Vec::new(), now, now + MIN, "ops".into(), String::new())
        .await;
    assert!(
        matches!(refused, Err(RunnerError::Silence(_))),
        "{refused:?}"
    );
    let far = now + 60 * MIN;
    assert!(
        runner
            .send(vec![
                alert(&[("alertname", "X")], now, far),
                alert(&[("alertname", "S")], now, far)
            ])
            .await
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while hook.requests() == 0 {
        assert!(std::time::Instant::now() < deadline, "no notification");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    runner.shutdown().await;
    let d = task.await.expect("task");
    assert!(!runner.send(Vec::new()).await);
    let bodies = hook.take();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["groupKey"], r#"{}:{alertname="X"}"#);
    assert_eq!(d.nflog().len(), 1);
    let again = Dispatcher::new(&cfg, opts(), SystemClock.now_ms()).expect("restart");
    assert_eq!(again.nflog().entries(), d.nflog().entries());
    assert!(again.silences().get(&id).is_some());
}

#[tokio::test]
async fn alerts_survive_a_restart_and_what_was_not_delivered_is_sent() {
    let (_dir, opts) = with_state_file();
    // The receiver fails every attempt of the first flush (two groups, five attempts each).
    let (hook, url) = Hook::start(&[500; 10]).await;
    let cfg = config(&url, "");
    let n = notifier();
    let mut d = Dispatcher::new(&cfg, opts(), T0).expect("dispatcher");
    d.insert(alert(&[("alertname", "X")], T0, FAR), T0);
    d.insert(alert(&[("alertname", "Y")], T0, FAR), T0);
    assert!(run_until(&mut d, &n, &hook, T0 + 30 * S).await.is_empty());
    assert_eq!(hook.requests(), 10);
    // Killed here (no shutdown): the state written by the last tick is all there is. No
    // sender re-sends the alerts; they come back from the state file alone.
    drop(d);
    let mut d = Dispatcher::new(&cfg, opts(), T0 + MIN).expect("restart");
    assert_eq!(d.alert_count(), 2);
    assert_eq!(d.alerts(T0 + MIN)[0].updated_at, T0);
    let sent = run_until(&mut d, &n, &hook, T0 + MIN).await;
    assert_eq!(
        summary(&sent),
        vec![
            row(60, "X", "first notification", 1),
            row(60, "Y", "first notification", 1)
        ]
    );
    // X resolves; the process dies before the resolution was delivered.
    d.insert(alert(&[("alertname", "X")], T0, T0 + 2 * MIN), T0 + 2 * MIN);
    d.persist().expect("persist");
    drop(d);
    let mut d = Dispatcher::new(&cfg, opts(), T0 + 3 * MIN).expect("restart");
    let sent = run_until(&mut d, &n, &hook, T0 + 7 * MIN).await;
    // The restored group is older than group_wait: it flushes at once.
    assert_eq!(
        summary(&sent),
        vec![row(180, "X", "all alerts resolved", 1)]
    );
    assert_eq!(sent[0].1["status"], "resolved");
    // Y was notified before the restarts and is not notified again.
    assert_eq!(d.alert_count(), 1);
}

#[tokio::test]
async fn an_alert_whose_presumed_end_passed_during_a_long_restart_still_fires() {
    let (_dir, opts) = with_state_file();
    let (hook, url) = Hook::start(&[]).await;
    let cfg = config(&url, "");
    let n = notifier();
    // As Prometheus sends a firing alert: its end presumed 4 minutes after each sending.
    let mut d = Dispatcher::new(&cfg, opts(), T0).expect("dispatcher");
    d.insert(alert(&[("alertname", "X")], T0, T0 + 4 * MIN), T0);
    d.insert(alert(&[("alertname", "Y")], T0, T0 + 4 * MIN), T0);
    assert_eq!(run_until(&mut d, &n, &hook, T0 + 30 * S).await.len(), 2);
    // Y resolves and the resolution is received (its end is before its receipt).
    d.insert(alert(&[("alertname", "Y")], T0, T0 + MIN), T0 + MIN);
    d.persist().expect("persist");
    drop(d);
    // Down for ten minutes: both ends passed, but only Y is known to have resolved.
    let now = T0 + 11 * MIN;
    let mut d = Dispatcher::new(&cfg, opts(), now).expect("restart");
    let firing = d.alerts(now);
    assert_eq!(firing.len(), 1, "{firing:?}");
    assert_eq!(firing[0].alert.labels["alertname"], "X");
    // resolve_timeout (5m) from the restart.
    assert_eq!(firing[0].alert.ends_at, Some(now + 5 * MIN));
    let sent = run_until(&mut d, &n, &hook, now).await;
    assert_eq!(
        summary(&sent),
        vec![row(660, "Y", "all alerts resolved", 1)]
    );
    // The sender re-sends X still firing: nothing more is sent.
    d.insert(
        alert(&[("alertname", "X")], T0, now + 30 * MIN),
        now + 30 * S,
    );
    assert!(
        run_until(&mut d, &n, &hook, now + 20 * MIN)
            .await
            .is_empty()
    );
    // Down again past that end, and the sender is gone for good: X resolves by its
    // timeout.
    d.persist().expect("persist");
    drop(d);
    let later = now + 40 * MIN;
    let mut d = Dispatcher::new(&cfg, opts(), later).expect("restart");
    assert!(
        run_until(&mut d, &n, &hook, later + 4 * MIN)
            .await
            .is_empty()
    );
    let sent = run_until(&mut d, &n, &hook, later + 10 * MIN).await;
    assert_eq!(summary(&sent).len(), 1, "{sent:?}");
    assert_eq!(sent[0].1["status"], "resolved");
    assert_eq!(sent[0].1["groupLabels"]["alertname"], "X");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_receiver_holds_up_neither_other_groups_nor_the_runner() {
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let stuck_requests = Arc::new(Mutex::new(0usize));
    let (r, s) = (release.clone(), stuck_requests.clone());
    let app = axum::Router::new().route(
        "/stuck",
        axum::routing::post(move || {
            let (r, s) = (r.clone(), s.clone());
            async move {
                *s.lock().expect("lock") += 1;
                let _permit = r.acquire().await.expect("semaphore");
                "ok"
            }
        }),
    );
    let stuck_port = common::serve(app).await;
    let (hook, url) = Hook::start(&[]).await;
    let yaml = format!(
        "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n  routes:\n  - matchers: [team=\"slow\"]\n    receiver: stuck\nreceivers:\n- name: hook\n  webhook_configs:\n  - url: {url}\n- name: stuck\n  webhook_configs:\n  - url: http://127.0.0.1:{stuck_port}/stuck\n"
    );
    let cfg = Config::parse(&yaml, Path::new("am.yml")).expect("config");
    let now = SystemClock.now_ms();
    let d = Dispatcher::new(&cfg, DispatcherOptions::default(), now).expect("dispatcher");
    let (runner, task) = Runner::spawn(d, notifier(), SystemClock, 16);
    let far = now + 60 * MIN;
    runner
        .send(vec![alert(
            &[("alertname", "Slow"), ("team", "slow")],
            now,
            far,
        )])
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while *stuck_requests.lock().expect("lock") == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "stuck receiver not called"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // While that delivery hangs, another group is delivered and the runner answers.
    runner
        .send(vec![alert(&[("alertname", "Fast")], now, far)])
        .await;
    while hook.requests() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "other group not delivered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let held = runner
        .inspect(|d, now| d.alerts(now).len())
        .await
        .expect("inspect");
    assert_eq!(held, 2);
    // The stuck group is not flushed a second time while its delivery is in flight,
    // though its group_interval (1 s) passes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(*stuck_requests.lock().expect("lock"), 1);
    release.add_permits(1);
    runner.shutdown().await;
    let d = task.await.expect("task");
    assert_eq!(hook.take().len(), 1);
    // Shutdown waited for the released delivery: both groups are logged.
    assert_eq!(d.nflog().len(), 2);
}

/// A receiver that accepts the request and never answers does not hold its group for good:
/// the flush times out (after `group_interval`, at least 10 s, as Alertmanager's notification
/// timeout) and the group is flushed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_never_answers_times_out_and_is_tried_again() {
    let requests = Arc::new(Mutex::new(0usize));
    let r = requests.clone();
    let app = axum::Router::new().route(
        "/hang",
        axum::routing::post(move || {
            let r = r.clone();
            async move {
                *r.lock().expect("lock") += 1;
                std::future::pending::<()>().await;
                "never"
            }
        }),
    );
    let port = common::serve(app).await;
    let yaml = format!(
        "route:\n  receiver: hang\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\nreceivers:\n- name: hang\n  webhook_configs:\n  - url: http://127.0.0.1:{port}/hang\n"
    );
    let cfg = Config::parse(&yaml, Path::new("am.yml")).expect("config");
    let now = SystemClock.now_ms();
    let d = Dispatcher::new(&cfg, DispatcherOptions::default(), now).expect("dispatcher");
    let (runner, task) = Runner::spawn(d, notifier(), SystemClock, 16);
    runner
        .send(vec![alert(&[("alertname", "Hung")], now, now + 60 * MIN)])
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while *requests.lock().expect("lock") < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the hung delivery was never given up and tried again ({} requests)",
            requests.lock().expect("lock")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    runner.shutdown().await;
    let d = task.await.expect("task");
    // Nothing was delivered, so nothing is in the notification log.
    assert_eq!(d.nflog().len(), 0);
}

/// A reload while a group's delivery is still running does not flush that group a second
/// time before the delivery reports: the notification log is written only then, so a second
/// flush would send the same notification twice.
#[test]
fn a_reload_during_a_delivery_does_not_flush_the_group_twice() {
    let cfg = config("http://127.0.0.1:9/hook", "");
    let mut d = Dispatcher::new(&cfg, DispatcherOptions::default(), T0).expect("dispatcher");
    d.insert(alert(&[("alertname", "X")], T0, FAR), T0);
    let first = d.due(T0 + 30 * S);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].jobs.len(), 1);
    // The delivery is under way; the configuration is loaded again (unchanged).
    d.reconfigure(&cfg, T0 + 31 * S).expect("reconfigure");
    // The regrouped X would be due after its group_wait, but its delivery has not reported.
    assert!(d.due(T0 + 61 * S).is_empty());
    d.complete(&first[0], &[true]);
    // Reported: the group flushes again on its timers, and the log says X was notified.
    let later = d.due(T0 + 10 * MIN);
    assert_eq!(later.len(), 1);
    assert!(later[0].jobs.is_empty(), "X was already notified");
}

#[test]
fn time_intervals_mute_and_activate_routes() {
    let cap = Capture::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    cap.run(|| rt.block_on(time_intervals_flow()));
    // Counted as Alertmanager counts them: each flush of the muted group (00:00:30,
    // 00:05:30) and the active-time group's flush outside its interval (00:10:30).
    let reason = |r| {
        counter(
            &cap,
            "alertmanager_notifications_suppressed_total",
            &[("reason", r)],
        )
    };
    assert_eq!(reason("mute_time_interval"), 2);
    assert_eq!(reason("active_time_interval"), 1);
    assert_eq!(reason("silence"), 0);
}

async fn time_intervals_flow() {
    let (hook, url) = Hook::start(&[]).await;
    // T0 is Thursday 2026-01-01 00:00 UTC; the interval is its first ten minutes, also
    // written in Shanghai's time (08:00–08:10) to check the zone is applied.
    let yaml = format!(
        r#"
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 1h
  routes:
  - matchers: ['team="night"']
    mute_time_intervals: [first-ten-minutes]
  - matchers: ['team="day"']
    active_time_intervals: [first-ten-minutes]
    routes:
    - matchers: ['tier="child"']
receivers:
- name: hook
  webhook_configs:
  - url: {url}
time_intervals:
- name: first-ten-minutes
  time_intervals:
  - times: [{{start_time: '08:00', end_time: '08:10'}}]
    weekdays: [thursday]
    location: Asia/Shanghai
"#
    );
    let cfg = Config::parse(&yaml, Path::new("am.yml")).expect("config");
    let n = notifier();
    let mut d = Dispatcher::new(&cfg, DispatcherOptions::default(), T0).expect("dispatcher");
    d.insert(
        alert(&[("alertname", "Night"), ("team", "night")], T0, FAR),
        T0,
    );
    d.insert(alert(&[("alertname", "Day"), ("team", "day")], T0, FAR), T0);
    // A child of an active-time route: intervals are not inherited, so it always sends.
    d.insert(
        alert(
            &[("alertname", "Child"), ("team", "day"), ("tier", "child")],
            T0,
            FAR,
        ),
        T0,
    );
    // In the interval: the muted route sends nothing, the active one sends.
    let sent = run_until(&mut d, &n, &hook, T0 + 30 * S).await;
    let mut first = summary(&sent);
    first.sort();
    assert_eq!(
        first,
        vec![
            row(30, "Child", "first notification", 1),
            row(30, "Day", "first notification", 1)
        ]
    );
    // The API shows what muted the group at its flush.
    let muted_by = |d: &Dispatcher, name: &str| {
        d.groups(T0 + MIN)
            .into_iter()
            .find(|g| g.labels.get("alertname").map(String::as_str) == Some(name))
            .map(|g| g.muted_by)
    };
    let interval = Some(vec!["first-ten-minutes".to_owned()]);
    assert_eq!(muted_by(&d, "Night"), interval);
    assert_eq!(muted_by(&d, "Day"), Some(vec![]));
    assert!(
        run_until(&mut d, &n, &hook, T0 + 5 * MIN + 30 * S)
            .await
            .is_empty()
    );
    // Out of it (00:10:30): the muted route's group is notified for the first time (nothing
    // was logged while muted); the active one is now outside its interval.
    let sent = run_until(&mut d, &n, &hook, T0 + 10 * MIN + 30 * S).await;
    assert_eq!(
        summary(&sent),
        vec![row(630, "Night", "first notification", 1)]
    );
    // Now the active-time route is the muted one, and stays shown so across a reload.
    assert_eq!(muted_by(&d, "Night"), Some(vec![]));
    assert_eq!(muted_by(&d, "Day"), interval);
    d.reconfigure(&cfg, T0 + 11 * MIN).expect("reload");
    assert_eq!(muted_by(&d, "Day"), interval);
}

#[tokio::test]
async fn a_flush_with_every_alert_inhibited_keeps_what_muted_its_group() {
    let (hook, url) = Hook::start(&[]).await;
    // The `team="x"` route is muted for the first ten minutes; its only alert gets
    // inhibited at 00:01 by a critical alert on the root route.
    let cfg = Config::parse(
        &format!(
            "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 30s\n  group_interval: 5m\n  repeat_interval: 1h\n  routes:\n  - matchers: ['team=\"x\"']\n    mute_time_intervals: [early]\nreceivers:\n- name: hook\n  webhook_configs:\n  - url: {url}\ninhibit_rules:\n- source_matchers: [severity=\"critical\"]\n  target_matchers: [severity=\"warning\"]\ntime_intervals:\n- name: early\n  time_intervals:\n  - times: [{{start_time: '00:00', end_time: '00:10'}}]\n"
        ),
        Path::new("am.yml"),
    )
    .expect("config");
    let n = notifier();
    let mut d = Dispatcher::new(&cfg, DispatcherOptions::default(), T0).expect("dispatcher");
    d.insert(
        alert(
            &[("alertname", "W"), ("team", "x"), ("severity", "warning")],
            T0,
            FAR,
        ),
        T0,
    );
    let muted_by = |d: &Dispatcher| {
        d.groups(T0)
            .into_iter()
            .find(|g| g.labels.get("alertname").map(String::as_str) == Some("W"))
            .map(|g| g.muted_by)
    };
    let early = Some(vec!["early".to_owned()]);
    assert!(run_until(&mut d, &n, &hook, T0 + 30 * S).await.is_empty());
    assert_eq!(muted_by(&d), early);
    d.insert(
        alert(
            &[("alertname", "C"), ("severity", "critical")],
            T0 + MIN,
            FAR,
        ),
        T0 + MIN,
    );
    // 00:10:30: out of the interval, but every alert of the group is inhibited, so the time
    // stages do not run and the group still shows what muted it last.
    let sent = run_until(&mut d, &n, &hook, T0 + 10 * MIN + 30 * S).await;
    assert!(
        sent.iter()
            .all(|(_, b)| b["groupLabels"]["alertname"] == "C"),
        "{sent:?}"
    );
    assert_eq!(muted_by(&d), early);
}
