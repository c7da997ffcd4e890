//! Remediation actions: the configuration (and its errors with positions), the decisions
//! of the dispatcher on an explicit clock (cooldown, `max_runs`, silences, inhibition,
//! restarts, reconfiguration, the outcome on the next notification), and, through the
//! runner on the wall clock, real programs and URLs.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axi_obs_alert::delivery::{
    AmAlert, Clock as _, Config, Dispatcher, DispatcherOptions, Fingerprint, Matcher, Notifier,
    RemediationOutcome, RemediationResult, RemediationRun, RetryPolicy, Runner, SkipReason,
    SystemClock,
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

const ACTIONS: &str = r#"remediations:
- name: restart
  command: [/bin/true]
  cooldown: 10m
  max_runs: 3
  window: 1h
- name: page
  url: http://127.0.0.1:9/page
"#;

const TREE: &str = r#"route:
  receiver: hook
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 1h
  routes:
  - matchers: ['service="api"']
    remediations: [restart]
    routes:
    - matchers: ['quiet="true"']
      remediations: []
    - matchers: ['both="true"']
      remediations: [restart, page]
      continue: true
    - matchers: ['both="true"', 'x!="y"']
      remediations: [restart]
    - matchers: ['tier="web"']
receivers:
- name: hook
  webhook_configs:
  - url: http://127.0.0.1:9/hook
"#;

fn parse(yaml: &str) -> Config {
    Config::parse(yaml, Path::new("am.yml")).expect("config")
}

fn config(extra: &str) -> Config {
    parse(&format!("{ACTIONS}{TREE}{extra}"))
}

fn api(name: &str) -> AmAlert {
    alert(&[("alertname", name), ("service", "api")], T0, FAR)
}

fn fp(a: &AmAlert) -> Fingerprint {
    a.fingerprint()
}

/// The (action, alertname) of the queued runs, taken.
fn taken(d: &mut Dispatcher) -> Vec<(String, String)> {
    d.take_remediations(usize::MAX)
        .into_iter()
        .map(|r| (r.action().to_string(), r.alertname))
        .collect()
}

fn runs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, n)| (a.to_string(), n.to_string()))
        .collect()
}

#[test]
fn the_example_parses_and_routes_inherit_or_turn_off_their_actions() {
    let cfg = config("");
    let a = &cfg.remediations[0];
    assert_eq!(a.name, "restart");
    assert_eq!(a.command.as_deref(), Some(&["/bin/true".to_string()][..]));
    assert_eq!(
        (a.timeout.0, a.cooldown.0, a.max_runs, a.window.0),
        (
            Duration::from_secs(30),
            Duration::from_secs(600),
            3,
            Duration::from_secs(3600)
        )
    );
    let p = &cfg.remediations[1];
    assert_eq!(
        p.url.as_ref().map(|u| u.0.as_str()),
        Some("http://127.0.0.1:9/page")
    );
    // Defaults.
    assert_eq!(p.timeout.0, Duration::from_secs(30));
    assert_eq!(p.cooldown.0, Duration::from_secs(600));
    assert_eq!(p.max_runs, 3);
    assert_eq!(p.window.0, Duration::from_secs(3600));
    let tree = axi_obs_alert::delivery::Route::from_config(cfg.route.as_ref().expect("route"));
    assert!(tree.opts.remediations.is_empty());
    let api = &tree.routes[0];
    assert_eq!(api.opts.remediations, ["restart"]);
    assert!(api.routes[0].opts.remediations.is_empty(), "[] turns off");
    assert_eq!(api.routes[1].opts.remediations, ["restart", "page"]);
    assert_eq!(api.routes[3].opts.remediations, ["restart"], "inherited");
    // Without `remediations` the file is plain Alertmanager and the feature is off.
    assert!(parse(&plain_tree()).remediations.is_empty());
}

/// [`TREE`] without any `remediations:` line.
fn plain_tree() -> String {
    TREE.lines()
        .filter(|l| !l.contains("remediations:"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn configuration_errors_name_the_problem_and_where() {
    let route = "route:\n  receiver: r\nreceivers: [{name: r}]\n";
    for (text, want, line, column) in [
        (
            format!("remediations:\n- name: a\n  command: []\n{route}"),
            r#"remediation "a": command must not be empty"#,
            3,
            3,
        ),
        (
            format!("remediations:\n- name: a\n  command: [x]\n  url: http://h/\n{route}"),
            r#"remediation "a": needs exactly one of command and url"#,
            2,
            9,
        ),
        (
            format!("remediations:\n- name: a\n  timeout: 5s\n{route}"),
            r#"remediation "a": needs exactly one of command and url"#,
            2,
            9,
        ),
        (
            format!("remediations:\n- name: a\n  url: ftp://h/\n{route}"),
            r#"remediation "a": url is not a valid http:// or https:// URL"#,
            3,
            3,
        ),
        (
            format!("remediations:\n- name: a\n  url: 'http://[::1/'\n{route}"),
            r#"remediation "a": url is not a valid http:// or https:// URL"#,
            3,
            3,
        ),
        (
            format!("remediations:\n- name: a\n  command: [x]\n  max_runs: 0\n{route}"),
            r#"remediation "a": max_runs cannot be zero"#,
            4,
            3,
        ),
        (
            format!("remediations:\n- name: a\n  command: [x]\n  timeout: 0s\n{route}"),
            r#"remediation "a": timeout cannot be zero"#,
            4,
            3,
        ),
        (
            format!(
                "remediations:\n- name: restart-api\n  command: [x]\n- name: restart-api\n  command: [y]\n{route}"
            ),
            r#"remediation name "restart-api" is not unique"#,
            4,
            9,
        ),
        (
            format!(
                "remediations:\n- name: a\n  command: [x]\n- name: ''\n  command: [y]\n{route}"
            ),
            "remediation name must not be empty",
            4,
            3,
        ),
        (
            "remediations:\n- name: restart\n  command: [x]\nroute:\n  receiver: r\n  routes:\n  - matchers: ['a=\"1\"']\n    remediations: [restart, restar]\nreceivers: [{name: r}]\n"
                .to_string(),
            r#"undefined remediation "restar" used in route"#,
            8,
            29,
        ),
        (
            format!("remediations:\n- name: a\n  command: [x]\n  shell: true\n{route}"),
            "unknown field `shell`",
            4,
            3,
        ),
    ] {
        let e = Config::parse(&text, Path::new("am.yml")).expect_err(&text);
        assert!(e.message.contains(want), "{text}\n{e}");
        assert_eq!(
            (e.line, e.column),
            (Some(line), Some(column)),
            "{text}\n{e}"
        );
        assert!(
            e.to_string()
                .starts_with(&format!("am.yml:{line}:{column}: ")),
            "{e}"
        );
    }
}

#[test]
fn a_firing_alert_runs_its_actions_once_per_cooldown_and_at_most_max_runs_per_window() {
    let cap = Capture::new();
    cap.run(|| {
        let mut d = Dispatcher::new(&config(""), DispatcherOptions::default(), T0).expect("d");
        let a = api("A");
        d.insert(a.clone(), T0);
        let queued = d.take_remediations(10);
        assert_eq!(queued.len(), 1);
        let run: &RemediationRun = &queued[0];
        assert_eq!((run.action(), run.requested_ms), ("restart", T0));
        let json: Value = serde_json::from_slice(&run.payload).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "action": "restart",
                "receiver": "hook",
                "status": "firing",
                "labels": {"alertname": "A", "service": "api"},
                "annotations": {"summary": "s"},
                "startsAt": "2026-01-01T00:00:00Z",
                "endsAt": "2026-01-01T16:40:00Z",
                "generatorURL": "http://prom/graph",
                "fingerprint": fp(&a).to_string(),
            })
        );
        // Prometheus re-sends every minute: within the cooldown nothing runs.
        for m in 1..10 {
            d.insert(api("A"), T0 + m * MIN);
        }
        assert!(taken(&mut d).is_empty());
        let r = d.remediations();
        assert_eq!(r.skipped("restart", SkipReason::Cooldown), 9);
        assert_eq!(r.last_run("restart", fp(&a)), Some(T0));
        // After the cooldown it runs again.
        d.insert(api("A"), T0 + 10 * MIN);
        assert_eq!(taken(&mut d), runs(&[("restart", "A")]));
        // Another alert has its own cooldown but shares max_runs (3 per hour).
        d.insert(api("B"), T0 + 11 * MIN);
        d.insert(api("C"), T0 + 12 * MIN);
        d.insert(api("A"), T0 + 20 * MIN);
        assert_eq!(taken(&mut d), runs(&[("restart", "B")]));
        let r = d.remediations();
        assert_eq!(r.skipped("restart", SkipReason::MaxRuns), 2);
        assert_eq!(r.runs_since("restart", T0 - 1), 3);
        // The first run leaves the window an hour later.
        d.insert(api("C"), T0 + 59 * MIN);
        assert!(taken(&mut d).is_empty());
        d.insert(api("C"), T0 + 60 * MIN);
        assert_eq!(taken(&mut d), runs(&[("restart", "C")]));
    });
    let restart = [("action", "restart")];
    assert_eq!(
        counter(
            &cap,
            "axi_alert_remediations_skipped_total",
            &[restart[0], ("reason", "cooldown")]
        ),
        9
    );
    assert_eq!(
        counter(
            &cap,
            "axi_alert_remediations_skipped_total",
            &[restart[0], ("reason", "max_runs")]
        ),
        3
    );
}

#[test]
fn each_action_runs_once_per_alert_even_when_several_routes_name_it() {
    let mut d = Dispatcher::new(&config(""), DispatcherOptions::default(), T0).expect("d");
    d.insert(
        alert(
            &[("alertname", "A"), ("service", "api"), ("both", "true")],
            T0,
            FAR,
        ),
        T0,
    );
    assert_eq!(taken(&mut d), runs(&[("restart", "A"), ("page", "A")]));
    // Inherited by a child route; turned off by `[]`; nothing outside the api route.
    d.insert(
        alert(
            &[("alertname", "W"), ("service", "api"), ("tier", "web")],
            T0,
            FAR,
        ),
        T0,
    );
    d.insert(
        alert(
            &[("alertname", "Q"), ("service", "api"), ("quiet", "true")],
            T0,
            FAR,
        ),
        T0,
    );
    d.insert(alert(&[("alertname", "O"), ("service", "db")], T0, FAR), T0);
    assert_eq!(taken(&mut d), runs(&[("restart", "W")]));
}

#[test]
fn resolved_silenced_and_inhibited_alerts_run_nothing() {
    let rules = r#"inhibit_rules:
- source_matchers: [alertname="Outage"]
  target_matchers: [service="api", alertname="Inhibited"]
"#;
    let mut d = Dispatcher::new(&config(rules), DispatcherOptions::default(), T0).expect("d");
    // Resolved.
    d.insert(
        alert(&[("alertname", "A"), ("service", "api")], T0 - MIN, T0),
        T0,
    );
    // Silenced (maintenance): no automatic restart.
    let id = d
        .silences_mut()
        .create(
            Matcher::parse_list(r#"alertname="Silenced""#).expect("matcher"),
            T0,
            T0 + 60 * MIN,
            "ops",
            "maintenance",
            T0,
        )
        .expect("silence");
    d.insert(api("Silenced"), T0);
    // Inhibited by a firing outage.
    d.insert(alert(&[("alertname", "Outage")], T0, FAR), T0);
    d.insert(api("Inhibited"), T0);
    assert!(taken(&mut d).is_empty());
    assert_eq!(
        d.remediations().last_run("restart", fp(&api("Silenced"))),
        None
    );
    // Once the silence is expired, the next re-send runs it.
    d.silences_mut().expire(&id, T0 + MIN).expect("expire");
    d.insert(api("Silenced"), T0 + 2 * MIN);
    assert_eq!(taken(&mut d), runs(&[("restart", "Silenced")]));
}

/// One request holding the target before the alert that inhibits it (Prometheus sends a
/// rule group's alerts together, in rule order): the actions are decided once the whole
/// request is in, so the inhibited target runs nothing. Alone, one by one, it would have run.
#[test]
fn an_inhibiting_alert_later_in_the_same_request_stops_the_run() {
    let rules = r#"inhibit_rules:
- source_matchers: [alertname="Outage"]
  target_matchers: [service="api", alertname="Inhibited"]
"#;
    let mut d = Dispatcher::new(&config(rules), DispatcherOptions::default(), T0).expect("d");
    let out = d.insert_all(
        vec![api("Inhibited"), alert(&[("alertname", "Outage")], T0, FAR)],
        T0,
    );
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|o| o.groups > 0), "{out:?}");
    assert!(taken(&mut d).is_empty());
    // The same order, one alert at a time: the target arrives first and runs.
    let mut d = Dispatcher::new(&config(rules), DispatcherOptions::default(), T0).expect("d");
    d.insert(api("Inhibited"), T0);
    d.insert(alert(&[("alertname", "Outage")], T0, FAR), T0);
    assert_eq!(taken(&mut d), runs(&[("restart", "Inhibited")]));
}

#[test]
fn without_remediations_nothing_is_queued() {
    let yaml = plain_tree();
    let mut d = Dispatcher::new(&parse(&yaml), DispatcherOptions::default(), T0).expect("d");
    d.insert(api("A"), T0);
    assert!(!d.remediations().is_enabled());
    assert!(taken(&mut d).is_empty());
    assert_eq!(d.remediations().skipped("restart", SkipReason::Cooldown), 0);
    // Actions defined but named by no route: nothing either.
    let yaml = format!("{ACTIONS}{yaml}");
    let mut d = Dispatcher::new(&parse(&yaml), DispatcherOptions::default(), T0).expect("d");
    d.insert(api("A"), T0);
    assert!(taken(&mut d).is_empty());
}

#[test]
fn a_full_queue_drops_runs_and_counts_them() {
    let cfg = parse(&format!(
        "remediations:\n- name: restart\n  command: [/bin/true]\n  max_runs: 1000\n- name: page\n  url: http://127.0.0.1:9/\n{TREE}"
    ));
    let mut d = Dispatcher::new(&cfg, DispatcherOptions::default(), T0).expect("d");
    for i in 0..70 {
        d.insert(api(&format!("A{i}")), T0);
    }
    let r = d.remediations();
    assert_eq!(r.queued(), 64);
    assert_eq!(r.skipped("restart", SkipReason::QueueFull), 6);
    // A dropped run was not recorded: the next re-send runs it once there is room.
    assert_eq!(d.take_remediations(4).len(), 4);
    d.insert(api("A69"), T0 + MIN);
    assert_eq!(d.remediations().queued(), 61);
    assert_eq!(
        d.remediations().last_run("restart", fp(&api("A69"))),
        Some(T0 + MIN)
    );
}

#[test]
fn cooldowns_and_max_runs_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.json");
    let opts = || DispatcherOptions {
        state_file: Some(state.clone()),
        ..DispatcherOptions::default()
    };
    let cfg = config("");
    let mut d = Dispatcher::new(&cfg, opts(), T0).expect("d");
    d.insert(api("A"), T0);
    d.insert(api("B"), T0 + MIN);
    d.insert(api("C"), T0 + 2 * MIN);
    assert_eq!(taken(&mut d).len(), 3);
    d.persist().expect("persist");
    drop(d); // as kill -9: nothing but the file
    let mut d = Dispatcher::new(&cfg, opts(), T0 + 3 * MIN).expect("restart");
    // The restored alerts are back in their groups, but were not received again.
    assert_eq!(d.alert_count(), 3);
    assert!(taken(&mut d).is_empty());
    assert_eq!(
        d.remediations().last_run("restart", fp(&api("A"))),
        Some(T0)
    );
    d.insert(api("A"), T0 + 4 * MIN);
    assert!(taken(&mut d).is_empty());
    assert_eq!(d.remediations().skipped("restart", SkipReason::Cooldown), 1);
    // Past A's cooldown, max_runs still holds: three runs within the hour.
    d.insert(api("A"), T0 + 11 * MIN);
    assert!(taken(&mut d).is_empty());
    assert_eq!(d.remediations().skipped("restart", SkipReason::MaxRuns), 1);
    // A snapshot from before remediations (no such field) still loads.
    std::fs::write(
        &state,
        br#"{"version":2,"nflog":[],"silences":[],"alerts":[]}"#,
    )
    .expect("write");
    let mut d = Dispatcher::new(&cfg, opts(), T0).expect("old snapshot");
    d.insert(api("A"), T0);
    assert_eq!(taken(&mut d), runs(&[("restart", "A")]));
}

#[test]
fn reconfigure_takes_the_new_actions_and_regrouping_runs_nothing() {
    let cfg = config("");
    let mut d = Dispatcher::new(&cfg, DispatcherOptions::default(), T0).expect("d");
    d.insert(api("A"), T0);
    assert_eq!(taken(&mut d).len(), 1);
    let other = parse(&format!(
        "remediations:\n- name: scale\n  command: [/bin/true]\n  cooldown: 0s\n{}",
        TREE.replace("remediations: [restart]", "remediations: [scale]")
            .replace("remediations: [restart, page]", "remediations: [scale]")
    ));
    d.reconfigure(&other, T0 + 20 * MIN).expect("reconfigure");
    assert!(taken(&mut d).is_empty(), "regrouping is no receipt");
    d.insert(api("A"), T0 + 21 * MIN);
    assert_eq!(taken(&mut d), runs(&[("scale", "A")]));
    // Off again.
    d.reconfigure(
        &parse(
            TREE.replace("restart, page", "")
                .replace("[restart]", "[]")
                .as_str(),
        ),
        T0 + 22 * MIN,
    )
    .expect("reconfigure");
    d.insert(api("A"), T0 + 40 * MIN);
    assert!(taken(&mut d).is_empty());
}

fn outcome(a: &AmAlert, result: RemediationResult) -> RemediationOutcome {
    RemediationOutcome {
        action: "restart".into(),
        fingerprint: fp(a),
        alertname: a.labels["alertname"].clone(),
        result,
        elapsed: Duration::from_millis(1200),
        stdout: String::new(),
        stderr: String::new(),
    }
}

#[test]
fn the_outcome_rides_on_the_next_notification_without_causing_one() {
    let cap = Capture::new();
    cap.run(|| {
        let mut d = Dispatcher::new(&config(""), DispatcherOptions::default(), T0).expect("d");
        let a = api("A");
        d.insert(a.clone(), T0);
        d.insert(api("B"), T0);
        assert_eq!(taken(&mut d).len(), 2);
        d.remediation_done(
            &outcome(
                &a,
                RemediationResult::Succeeded {
                    status: "exit status 0".into(),
                },
            ),
            T0 + 2 * S,
        );
        let line = "restart: succeeded (exit status 0) in 1.2s at 2026-01-01T00:00:02Z";
        assert_eq!(d.remediations().outcome(fp(&a), "restart"), Some(line));
        let flushes = d.due(T0 + 30 * S);
        let f = flushes
            .iter()
            .find(|f| f.group_key.contains("\"A\""))
            .expect("A");
        let sent = &f.jobs[0].notification.alerts[0];
        assert_eq!(sent.annotations["remediation"], line);
        assert_eq!(sent.annotations["summary"], "s");
        assert_eq!(sent.fingerprint(), fp(&a));
        let other = flushes
            .iter()
            .find(|f| f.group_key.contains("\"B\""))
            .expect("B");
        assert!(
            !other.jobs[0].notification.alerts[0]
                .annotations
                .contains_key("remediation")
        );
        for f in &flushes {
            d.complete(f, &vec![true; f.jobs.len()]);
        }
        // A new outcome changes no fingerprint: no notification of its own.
        d.remediation_done(
            &outcome(
                &a,
                RemediationResult::Failed {
                    status: "exit status 1".into(),
                    detail: "unit api not found".into(),
                },
            ),
            T0 + 60 * S,
        );
        let flushes = d.due(T0 + 30 * S + 5 * MIN);
        assert!(flushes.iter().all(|f| f.jobs.is_empty()));
        for f in &flushes {
            d.complete(f, &[]);
        }
        // The alert resolves: the resolution carries the latest outcome, then it is gone.
        d.insert(
            alert(&[("alertname", "A"), ("service", "api")], T0, T0 + 10 * MIN),
            T0 + 10 * MIN,
        );
        let flushes = d.due(T0 + 30 * S + 10 * MIN);
        let f = flushes
            .iter()
            .find(|f| f.group_key.contains("\"A\""))
            .expect("A");
        assert_eq!(
            f.jobs[0].notification.alerts[0].annotations["remediation"],
            "restart: failed (exit status 1) in 1.2s at 2026-01-01T00:01:00Z: unit api not found"
        );
        for f in &flushes {
            d.complete(f, &vec![true; f.jobs.len()]);
        }
        assert_eq!(d.remediations().outcome(fp(&a), "restart"), None);
        // An outcome for an alert no group holds is logged and counted, not kept.
        d.remediation_done(
            &outcome(
                &a,
                RemediationResult::TimedOut {
                    after: Duration::from_secs(30),
                },
            ),
            T0 + 12 * MIN,
        );
        assert_eq!(d.remediations().outcome(fp(&a), "restart"), None);
    });
    let total = |o: &str| {
        counter(
            &cap,
            "axi_alert_remediations_total",
            &[("action", "restart"), ("outcome", o)],
        )
    };
    assert_eq!(
        (total("success"), total("failure"), total("timeout")),
        (1, 1, 1)
    );
    let logs = cap.log_text();
    assert!(logs.contains("restart: timed out after 30s"), "{logs}");
}

// ---- Through the runner, on the wall clock: real programs and URLs. ----

/// A local HTTP server: `/hook` keeps webhook bodies; `/fix` and `/broken` keep remediation
/// bodies and answer 200 and 500.
#[derive(Clone, Default)]
struct Server {
    hooks: Arc<Mutex<Vec<Value>>>,
    calls: Arc<Mutex<VecDeque<(String, Value)>>>,
}

impl Server {
    async fn start() -> (Server, String) {
        use axum::routing::post;
        let s = Server::default();
        let (h, c1, c2) = (s.clone(), s.clone(), s.clone());
        let app = axum::Router::new()
            .route(
                "/hook",
                post(move |axum::Json(v): axum::Json<Value>| {
                    let h = h.clone();
                    async move {
                        h.hooks.lock().expect("lock").push(v);
                        axum::http::StatusCode::OK
                    }
                }),
            )
            .route(
                "/fix",
                post(move |axum::Json(v): axum::Json<Value>| {
                    let c = c1.clone();
                    async move {
                        c.calls.lock().expect("lock").push_back(("fix".into(), v));
                        axum::http::StatusCode::OK
                    }
                }),
            )
            .route(
                "/broken",
                post(move |axum::Json(v): axum::Json<Value>| {
                    let c = c2.clone();
                    async move {
                        c.calls
                            .lock()
                            .expect("lock")
                            .push_back(("broken".into(), v));
                        (
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                            "database is down",
                        )
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (s, format!("http://127.0.0.1:{port}"))
    }
}

fn script(dir: &Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("script");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p.display().to_string()
}

#[test]
fn the_runner_runs_programs_and_urls_and_the_notification_tells_how_they_went() {
    let cap = Capture::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let saved = dir.path().join("stdin.json");
    // Saves stdin to $1 and its second argument to $1.arg.
    let ok = script(
        dir.path(),
        "ok.sh",
        "cat > \"$1\"\nprintf '%s' \"$2\" > \"$1.arg\"\necho restarted",
    );
    let pwned = dir.path().join("pwned");
    let trap = format!("$(touch {})", pwned.display());
    let fail = script(
        dir.path(),
        "fail.sh",
        "cat > /dev/null\necho 'unit api.service not found' >&2\nexit 1",
    );
    let annotations = cap.run(|| {
        rt.block_on(async {
            let (server, base) = Server::start().await;
            let yaml = format!(
                r#"remediations:
- name: ok
  command: ['{ok}', '{saved}', '{trap}']
- name: fail
  command: ['{fail}']
- name: slow
  command: [/bin/sleep, '30']
  timeout: 1s
- name: fix
  url: {base}/fix
- name: broken
  url: {base}/broken
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 3s
  group_interval: 1h
  repeat_interval: 1h
  routes:
  - matchers: [alertname="Ok"]
    remediations: [ok]
  - matchers: [alertname="Fail"]
    remediations: [fail]
  - matchers: [alertname="Slow"]
    remediations: [slow]
  - matchers: [alertname="Url"]
    remediations: [fix, broken]
  - matchers: [alertname="Quiet"]
receivers:
- name: hook
  webhook_configs:
  - url: {base}/hook
"#,
                saved = saved.display()
            );
            let cfg = parse(&yaml);
            let now = SystemClock.now_ms();
            let d = Dispatcher::new(&cfg, DispatcherOptions::default(), now).expect("d");
            let notifier = Notifier::new(
                axi_obs_alert::delivery::http_client().expect("the delivery HTTP client"),
                RetryPolicy::default(),
            );
            let (runner, task) = Runner::spawn(d, notifier, SystemClock, 16);
            let far = now + 60 * MIN;
            let sent = ["Ok", "Fail", "Slow", "Url", "Quiet"]
                .iter()
                .map(|n| alert(&[("alertname", n), ("service", "api")], now, far))
                .collect();
            assert!(runner.send(sent).await);
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while server.hooks.lock().expect("lock").len() < 5 {
                assert!(std::time::Instant::now() < deadline, "not all notified");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            runner.shutdown().await;
            let d = task.await.expect("task");
            assert_eq!(d.remediations().queued(), 0);
            let calls: Vec<(String, Value)> =
                server.calls.lock().expect("lock").drain(..).collect();
            assert_eq!(calls.len(), 2, "{calls:?}");
            for (path, body) in &calls {
                assert_eq!(body["action"], path.as_str());
                assert_eq!(body["labels"]["alertname"], "Url");
                assert_eq!(body["status"], "firing");
            }
            let hooks = server.hooks.lock().expect("lock").clone();
            hooks
                .iter()
                .map(|b| {
                    let a = &b["alerts"][0];
                    (
                        a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                        a["annotations"]["remediation"]
                            .as_str()
                            .unwrap_or("")
                            .to_string(),
                    )
                })
                .collect::<std::collections::BTreeMap<_, _>>()
        })
    });
    let stdin: Value =
        serde_json::from_slice(&std::fs::read(&saved).expect("the program saved stdin"))
            .expect("json");
    assert_eq!(stdin["action"], "ok");
    assert_eq!(stdin["receiver"], "hook");
    assert_eq!(stdin["labels"]["alertname"], "Ok");
    assert_eq!(stdin["labels"]["service"], "api");
    assert_eq!(stdin["fingerprint"].as_str().map(str::len), Some(16));
    // Arguments reach the program as written: no shell ever sees them.
    let arg = std::fs::read_to_string(dir.path().join("stdin.json.arg")).expect("arg");
    assert_eq!(arg, trap);
    assert!(!pwned.exists());
    let line = |n: &str| annotations.get(n).cloned().unwrap_or_default();
    assert!(
        line("Ok").starts_with("ok: succeeded (exit status 0) in "),
        "{annotations:?}"
    );
    assert!(
        line("Fail").starts_with("fail: failed (exit status 1) in "),
        "{annotations:?}"
    );
    assert!(
        line("Fail").ends_with(": unit api.service not found"),
        "{annotations:?}"
    );
    assert!(
        line("Slow").starts_with("slow: timed out after 1s at "),
        "{annotations:?}"
    );
    let url = line("Url");
    let url: Vec<&str> = url.lines().collect();
    assert_eq!(url.len(), 2, "{annotations:?}");
    assert!(
        url[0].starts_with("broken: failed (HTTP 500) in "),
        "{url:?}"
    );
    assert!(url[0].ends_with(": database is down"), "{url:?}");
    assert!(
        url[1].starts_with("fix: succeeded (HTTP 200) in "),
        "{url:?}"
    );
    assert_eq!(line("Quiet"), "");
    let total = |a: &str, o: &str| {
        counter(
            &cap,
            "axi_alert_remediations_total",
            &[("action", a), ("outcome", o)],
        )
    };
    assert_eq!(
        [
            total("ok", "success"),
            total("fail", "failure"),
            total("slow", "timeout"),
            total("fix", "success"),
            total("broken", "failure")
        ],
        [1; 5]
    );
}

#[tokio::test]
async fn shutdown_gives_a_running_program_the_grace_then_kills_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("pid");
    let slow = script(
        dir.path(),
        "slow.sh",
        &format!("echo $$ > '{}'\nexec sleep 60", pid_file.display()),
    );
    let yaml = format!(
        "remediations:\n- name: slow\n  command: ['{slow}']\n  timeout: 120s\nroute:\n  receiver: r\n  remediations: [slow]\nreceivers: [{{name: r}}]\n"
    );
    let now = SystemClock.now_ms();
    let d = Dispatcher::new(&parse(&yaml), DispatcherOptions::default(), now).expect("d");
    let notifier = Notifier::new(
        axi_obs_alert::delivery::http_client().expect("the delivery HTTP client"),
        RetryPolicy::default(),
    );
    let (runner, task) = Runner::spawn(d, notifier, SystemClock, 4);
    assert!(
        runner
            .send(vec![alert(&[("alertname", "A")], now, now + MIN)])
            .await
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
        {
            break pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the program did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let started = std::time::Instant::now();
    runner.shutdown().await;
    let d = task.await.expect("task");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(8),
        "{took:?}"
    );
    // Killed, not left running: gone, or a zombie until Tokio reaps it.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => break,
            Ok(stat)
                if stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|s| s.trim_start().starts_with('Z')) =>
            {
                break;
            }
            Ok(stat) => assert!(
                std::time::Instant::now() < deadline,
                "still running: {stat}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(d.remediations().queued(), 0);
}

#[test]
fn a_route_muted_by_its_time_intervals_runs_no_action() {
    // The `service="api"` route muted for the first hour of 2026 (T0 is its first instant).
    let tree = TREE.replace(
        "    remediations: [restart]\n    routes:",
        "    remediations: [restart]\n    mute_time_intervals: [new-year]\n    routes:",
    );
    let cfg = parse(&format!(
        "{ACTIONS}{tree}time_intervals:\n- name: new-year\n  time_intervals:\n  - years: ['2026']\n    months: [january]\n    days_of_month: ['1']\n    times: [{{start_time: '00:00', end_time: '01:00'}}]\n"
    ));
    let mut d = Dispatcher::new(&cfg, DispatcherOptions::default(), T0).expect("dispatcher");
    d.insert(api("Down"), T0);
    assert!(taken(&mut d).is_empty(), "muted: no run");
    // An hour later the route is not muted: a new alert's action runs.
    let later = alert(
        &[("alertname", "Later"), ("service", "api")],
        T0 + 3_600_000,
        FAR,
    );
    d.insert(later, T0 + 3_600_000);
    assert_eq!(taken(&mut d), runs(&[("restart", "Later")]));
}
