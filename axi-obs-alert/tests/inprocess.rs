//! Rules evaluated inside the process over its own metrics: from a given source, and from
//! the registry of the installed axi-obs-core telemetry.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axi_obs_alert::inprocess::InProcessRules;
use axi_obs_alert::rules::{Alert, AlertState};

fn wait_for(rules: &InProcessRules, what: &str, pred: impl Fn(&[Alert]) -> bool) -> Vec<Alert> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let a = rules.alerts();
        if pred(&a) {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {a:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn alerts_fire_from_a_source_and_resolve_when_the_series_goes() {
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let seen = Arc::new(AtomicU64::new(0));
    let s = seen.clone();
    let rules = InProcessRules::builder()
        .rules_yaml(
            "groups:\n  - name: g\n    rules:\n      - alert: QueueDeep\n        expr: queue_depth > 3\n        labels: {severity: page}\n        annotations: {summary: '{{ $labels.queue }} has {{ $value }} items on {{ $labels.instance }}'}\n",
        )
        .interval(Duration::from_millis(20))
        .label("instance", "self")
        .source(move || {
            let n = c.fetch_add(1, Ordering::SeqCst);
            if n < 40 {
                format!("# TYPE queue_depth gauge\nqueue_depth{{queue=\"jobs\"}} {n}\n")
            } else {
                String::new() // the series disappears
            }
        })
        .on_alerts(move |a| {
            s.fetch_add(a.len() as u64, Ordering::SeqCst);
        })
        .start()
        .unwrap();
    let firing = wait_for(&rules, "a firing alert", |a| {
        a.iter().any(|a| a.state == AlertState::Firing)
    });
    let a = &firing[0];
    assert_eq!(a.labels.get("alertname"), Some("QueueDeep"));
    assert_eq!(a.labels.get("severity"), Some("page"));
    assert!(
        a.annotations["summary"].starts_with("jobs has "),
        "{:?}",
        a.annotations
    );
    assert!(
        a.annotations["summary"].ends_with(" items on self"),
        "{:?}",
        a.annotations
    );
    assert!(a.value > 3.0);
    // The source stops exposing the series: a staleness marker ends it, the alert resolves.
    wait_for(&rules, "the alert to resolve", |a| {
        a.is_empty() && calls.load(Ordering::SeqCst) > 40
    });
    assert!(
        seen.load(Ordering::SeqCst) > 0,
        "on_alerts saw the firing alert"
    );
    drop(rules); // stops and joins the thread
}

#[test]
fn bad_rules_are_refused_with_where() {
    let err = InProcessRules::builder()
        .rules_yaml(
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: 'rate(x[5m]'\n",
        )
        .start()
        .unwrap_err();
    let s = err[0].to_string();
    assert!(
        s.starts_with("<rules 1>:4: group \"g\", rule 1 (\"A\"): could not parse"),
        "{s}"
    );
}

#[test]
fn the_registry_of_the_installed_telemetry_is_the_default_source() {
    let _telemetry = axi_obs_core::Telemetry::builder()
        .env(axi_obs_core::Env::empty())
        .service_name("inprocess-test")
        .log_writer(std::io::sink())
        .try_install()
        .unwrap();
    let rules = InProcessRules::builder()
        .rules_yaml(
            "groups:\n  - name: shop\n    rules:\n      - alert: PaymentsFailing\n        expr: shop_payments_failed_total > 2\n",
        )
        .interval(Duration::from_millis(20))
        .start()
        .unwrap();
    for _ in 0..5 {
        metrics::counter!("shop_payments_failed_total").increment(1);
    }
    let firing = wait_for(&rules, "the registry-driven alert", |a| {
        a.iter().any(|a| a.state == AlertState::Firing)
    });
    assert_eq!(firing[0].labels.get("alertname"), Some("PaymentsFailing"));
    assert_eq!(firing[0].value, 5.0);
}

/// A group's own `interval:` and `query_offset:` are kept: the slow group is evaluated only
/// once per its interval (its `time()` moves by at least that much between evaluations, while
/// the group on the reading interval moves in smaller steps), and the offset group queries an
/// hour in the past.
#[test]
fn groups_keep_their_own_interval_and_query_offset() {
    let seen: Arc<std::sync::Mutex<Vec<Vec<Alert>>>> = Arc::default();
    let s = seen.clone();
    let rules = InProcessRules::builder()
        .rules_yaml(
            "groups:
  - name: fast
    rules:
      - alert: Fast
        expr: vector(time())
  - name: slow
    interval: 300ms
    rules:
      - alert: Slow
        expr: vector(time())
  - name: behind
    query_offset: 1h
    rules:
      - alert: Behind
        expr: vector(time())
",
        )
        .interval(Duration::from_millis(20))
        .source(String::new)
        .on_alerts(move |a| s.lock().unwrap().push(a.to_vec()))
        .start()
        .unwrap();
    let value = |round: &[Alert], name: &str| {
        round
            .iter()
            .find(|a| a.labels.get("alertname") == Some(name))
            .map(|a| a.value)
    };
    let distinct = |name: &str| {
        let mut v: Vec<f64> = seen
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| value(r, name))
            .collect();
        v.dedup();
        v
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while distinct("Slow").len() < 4 {
        assert!(
            Instant::now() < deadline,
            "the slow group ran less than 4 times"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(rules);
    let slow = distinct("Slow");
    // The slow group keeps the cadence of its slots, 300 ms apart, and is evaluated at the
    // time it actually runs: one that ran late (a busy machine) is followed by a gap as much
    // shorter. Half the interval still tells it from the 20 ms of the reading interval.
    for w in slow.windows(2) {
        assert!(
            w[1] - w[0] >= 0.15,
            "slow group evaluated too soon: {slow:?}"
        );
    }
    let fast = distinct("Fast");
    assert!(
        fast.len() > slow.len() && fast.windows(2).any(|w| w[1] - w[0] < 0.15),
        "the fast group did not run on the reading interval: {fast:?}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let behind = distinct("Behind");
    assert!(!behind.is_empty());
    for v in &behind {
        assert!(
            (now - v - 3600.0).abs() < 60.0,
            "query_offset: queried at {v}, now {now}"
        );
    }
}

/// A group an hour behind (`query_offset: 1h`) finds the samples of an hour ago, those of
/// earlier rounds included: they are kept that long (samples carrying their own timestamps,
/// an hour old, stand in for an hour's wait).
#[test]
fn samples_are_kept_as_long_as_a_query_offset_reaches_back() {
    let rules = InProcessRules::builder()
        .rules_yaml(
            "groups:
  - name: behind
    query_offset: 1h
    rules:
      - alert: HourAgo
        expr: count_over_time(backlog[1m]) > 3
",
        )
        .interval(Duration::from_millis(20))
        .source(|| {
            let hour_ago = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
                - 3_600_000;
            format!("# TYPE backlog gauge\nbacklog 42 {hour_ago}\n")
        })
        .start()
        .unwrap();
    let firing = wait_for(&rules, "the hour-old sample's alert", |a| !a.is_empty());
    assert_eq!(firing[0].labels.get("alertname"), Some("HourAgo"));
    assert!(firing[0].value > 3.0, "{:?}", firing[0]);
}

/// A subquery without a step takes the reading interval (Prometheus's global
/// `evaluation_interval`), not the group's: 100 ms at a 20 ms step holds 5 points.
#[test]
fn subqueries_without_a_step_take_the_reading_interval() {
    let rules = InProcessRules::builder()
        .rules_yaml(
            "groups:
  - name: slow
    interval: 1s
    rules:
      - alert: Points
        expr: count_over_time(vector(1)[100ms:])
",
        )
        .interval(Duration::from_millis(20))
        .source(String::new)
        .start()
        .unwrap();
    let firing = wait_for(&rules, "the subquery's alert", |a| !a.is_empty());
    assert_eq!(firing[0].value, 5.0, "{:?}", firing[0]);
}

/// A sample older than its series' newest (a wall clock set back, a source's own timestamps
/// going back) is dropped, as Prometheus's head drops it: it never lands among the others.
#[test]
fn samples_older_than_their_series_newest_are_dropped() {
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let names: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>> = Arc::default();
    let n = names.clone();
    let first = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        - 1_000;
    let rules = InProcessRules::builder()
        .rules_yaml(
            "groups:
  - name: g
    rules:
      - alert: One
        expr: count_over_time(level[1h]) == 1
      - alert: More
        expr: count_over_time(level[1h]) > 1
",
        )
        .interval(Duration::from_millis(20))
        .source(move || {
            let t = if c.fetch_add(1, Ordering::SeqCst) == 0 {
                first
            } else {
                first - 10_000
            };
            format!("# TYPE level gauge\nlevel 5 {t}\n")
        })
        .on_alerts(move |alerts| {
            let mut n = n.lock().unwrap();
            for a in alerts {
                n.insert(a.labels.get("alertname").unwrap_or_default().to_owned());
            }
        })
        .start()
        .unwrap();
    wait_for(&rules, "ten reads", |_| calls.load(Ordering::SeqCst) >= 10);
    drop(rules);
    let names = names.lock().unwrap();
    assert!(names.contains("One"), "{names:?}");
    assert!(!names.contains("More"), "{names:?}");
}
