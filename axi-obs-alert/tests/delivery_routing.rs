//! Routing, group keys and the webhook payload against Alertmanager's own test vectors and
//! payloads captured from a real Alertmanager 0.33.1 (read from `$AXI_CONFORMANCE_DIR`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axi_obs_alert::delivery::{
    AmAlert, Config, DEFAULT_GROUP_INTERVAL, DEFAULT_GROUP_WAIT, DEFAULT_REPEAT_INTERVAL, LabelSet,
    Notification, NotificationReason, Route, WebhookMessage, parse_rfc3339,
};
use serde_json::Value;

fn conformance_dir() -> Option<PathBuf> {
    match std::env::var_os("AXI_CONFORMANCE_DIR") {
        Some(d) => Some(PathBuf::from(d)),
        None => {
            eprintln!("SKIPPED: AXI_CONFORMANCE_DIR is not set");
            None
        }
    }
}

fn read_json(path: &Path) -> Value {
    let raw =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&raw).expect("JSON")
}

/// Reads Go expressions from route_test.go: `def.GroupWait`, `2 * time.Minute`, ...
fn go_duration(s: &str, default: Duration) -> Duration {
    if s.starts_with("def.") {
        return default;
    }
    let (n, unit) = s.split_once(" * ").expect("N * unit");
    let n: u64 = n.parse().expect("number");
    match unit {
        "time.Second" => Duration::from_secs(n),
        "time.Minute" => Duration::from_secs(60 * n),
        "time.Hour" => Duration::from_secs(3600 * n),
        other => panic!("unknown unit {other}"),
    }
}

/// `def.GroupBy` (the root's, empty here) or `lset("foo", "bar")`.
fn go_group_by(s: &str) -> BTreeSet<String> {
    if s == "def.GroupBy" {
        return BTreeSet::new();
    }
    let inner = s
        .strip_prefix("lset(")
        .and_then(|r| r.strip_suffix(')'))
        .expect("lset(...)");
    inner
        .split(',')
        .map(|p| p.trim().trim_matches('"').to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn labels_of(v: &Value) -> LabelSet {
    v.as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string").to_string()))
        .collect()
}

#[test]
fn alertmanager_route_match_cases() {
    let Some(dir) = conformance_dir() else { return };
    let doc = read_json(&dir.join("alertmanager/derived/route_match_cases.json"));
    let mut passed = 0;
    for test in doc["tests"].as_array().expect("tests") {
        let name = test["test"].as_str().expect("name");
        // The vectors hold the `route:` node itself.
        let yaml = format!(
            "route:\n{}\nreceivers: [{{name: notify-def}}, {{name: notify-A}}, {{name: notify-testing}}, {{name: notify-productionA}}, {{name: notify-productionB}}, {{name: notify-BC}}]\n",
            test["config_yaml"]
                .as_str()
                .expect("yaml")
                .lines()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let cfg = Config::parse(&yaml, Path::new(name)).unwrap_or_else(|e| panic!("{e}"));
        let tree = Route::from_config(cfg.route.as_ref().expect("route"));
        for (i, case) in test["cases"].as_array().expect("cases").iter().enumerate() {
            let labels = labels_of(&case["input_labels"]);
            let got = tree.matches(&labels);
            let want = case["expected_routes"].as_array().expect("routes");
            let ctx = format!("{name} case {i} {labels:?}");
            assert_eq!(got.len(), want.len(), "{ctx}");
            for (r, w) in got.iter().zip(want) {
                assert_eq!(
                    r.opts.receiver,
                    w["Receiver"].as_str().expect("rcv"),
                    "{ctx}"
                );
                assert_eq!(
                    r.opts.group_by,
                    go_group_by(w["GroupBy"].as_str().expect("gb")),
                    "{ctx}"
                );
                assert_eq!(
                    r.opts.group_by_all.to_string(),
                    w["GroupByAll"].as_str().expect("gba"),
                    "{ctx}"
                );
                assert_eq!(
                    r.opts.group_wait,
                    go_duration(w["GroupWait"].as_str().expect("gw"), DEFAULT_GROUP_WAIT),
                    "{ctx}"
                );
                assert_eq!(
                    r.opts.group_interval,
                    go_duration(
                        w["GroupInterval"].as_str().expect("gi"),
                        DEFAULT_GROUP_INTERVAL
                    ),
                    "{ctx}"
                );
                assert_eq!(
                    r.opts.repeat_interval,
                    go_duration(
                        w["RepeatInterval"].as_str().expect("ri"),
                        DEFAULT_REPEAT_INTERVAL
                    ),
                    "{ctx}"
                );
            }
            let keys: Vec<&str> = got.iter().map(|r| r.key()).collect();
            let want_keys: Vec<&str> = case["expected_route_keys"]
                .as_array()
                .expect("keys")
                .iter()
                .map(|k| k.as_str().expect("key"))
                .collect();
            assert_eq!(keys, want_keys, "{ctx}");
            passed += 1;
        }
    }
    assert_eq!(passed, 24, "all 24 routing cases");
}

/// Replaces what legitimately differs between runs (times, URLs) before comparing.
fn normalize(mut v: Value) -> Value {
    v["externalURL"] = Value::Null;
    for a in v["alerts"].as_array_mut().expect("alerts") {
        a["startsAt"] = Value::Null;
        a["generatorURL"] = Value::Null;
        if a["endsAt"] != "0001-01-01T00:00:00Z" {
            a["endsAt"] = Value::Null;
        }
    }
    v
}

fn sample_notification(sample: &Value, now_ms: i64, reason: NotificationReason) -> Notification {
    let cfg = Config::parse(
        "route:\n  receiver: hook\n  group_by: [alertname]\nreceivers:\n- name: hook\n  webhook_configs:\n  - url: http://127.0.0.1:1/\n",
        Path::new("am.yml"),
    )
    .expect("config");
    let tree = Route::from_config(cfg.route.as_ref().expect("route"));
    let a = &sample["alerts"][0];
    let labels = labels_of(&a["labels"]);
    let route = tree.matches(&labels)[0];
    Notification {
        receiver: route.opts.receiver.clone(),
        group_key: route.group_key(&labels),
        group_labels: route.group_labels(&labels),
        alerts: vec![AmAlert {
            labels,
            annotations: labels_of(&a["annotations"]),
            starts_at: parse_rfc3339(a["startsAt"].as_str().expect("startsAt"))
                .expect("time")
                .expect("set"),
            ends_at: parse_rfc3339(a["endsAt"].as_str().expect("endsAt")).expect("time"),
            generator_url: a["generatorURL"].as_str().expect("url").to_string(),
        }],
        reason,
        now_ms,
        external_url: sample["externalURL"].as_str().expect("url").to_string(),
    }
}

#[test]
fn webhook_payload_matches_alertmanager_0_33_1_samples() {
    let Some(dir) = conformance_dir() else { return };
    for (file, reason) in [
        (
            "webhook-sample-0.33.1-firing.json",
            NotificationReason::FirstNotification,
        ),
        (
            "webhook-sample-0.33.1-resolved.json",
            NotificationReason::AllAlertsResolved,
        ),
    ] {
        let sample = read_json(&dir.join("alertmanager").join(file));
        let starts = parse_rfc3339(sample["alerts"][0]["startsAt"].as_str().expect("t"))
            .expect("time")
            .expect("set");
        // Firing: the flush is before any end; resolved: at the recorded end.
        let ends = parse_rfc3339(sample["alerts"][0]["endsAt"].as_str().expect("t")).expect("t");
        let now = ends.unwrap_or(starts + 1000);
        let mut n = sample_notification(&sample, now, reason);
        if ends.is_none() {
            // A firing alert's end lies ahead (Alertmanager hides it as the zero time).
            n.alerts[0].ends_at = Some(now + 300_000);
        }
        let msg = WebhookMessage::new(&n, &n.alerts, 0);
        let ours = serde_json::to_value(&msg).expect("json");
        // Exact, field for field, times and URLs included (they are taken from the sample).
        assert_eq!(ours, sample, "{file}");
        // And the key order of the body is Alertmanager's.
        let raw = std::fs::read_to_string(dir.join("alertmanager").join(file)).expect("read");
        assert_eq!(
            serde_json::to_string(&msg).expect("json"),
            raw.trim(),
            "{file}"
        );
        assert_eq!(normalize(ours), normalize(sample), "{file}");
    }
}

#[test]
fn alertmanager_config_testdata_of_the_supported_subset() {
    let Some(dir) = conformance_dir() else { return };
    let td = dir.join("alertmanager/config/testdata");
    // Accepted by Alertmanager and within our subset.
    let path = td.join("conf.group-by-all.yml");
    let cfg = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let tree = Route::from_config(cfg.route.as_ref().expect("route"));
    assert!(tree.opts.group_by_all);
    assert_eq!(tree.opts.repeat_interval, Duration::from_secs(3 * 3600));
    // Rejected by Alertmanager: a null regular expression in match_re.
    for bad in [
        "conf.nil-match_re-route.yml",
        "conf.nil-source_match_re-inhibition.yml",
        "conf.nil-target_match_re-inhibition.yml",
    ] {
        let e = Config::load(&td.join(bad)).expect_err(bad);
        assert!(e.message.contains("is null"), "{bad}: {e}");
        let line = std::fs::read_to_string(td.join(bad))
            .expect("read")
            .lines()
            .position(|l| l.contains("invalid_"))
            .map(|i| i + 1);
        assert_eq!(e.line, line, "{bad}: {e}");
    }
    // Valid for Alertmanager, but with integrations we do not have: refused by name.
    for (unsupported, field) in [
        ("conf.slack-default-app-token.yml", "slack_app_token"),
        ("conf.good.yml", "slack_api_url"),
    ] {
        let e = Config::load(&td.join(unsupported)).expect_err(unsupported);
        assert!(e.message.contains(field), "{unsupported}: {e}");
        assert!(e.line.is_some(), "{unsupported}: {e}");
    }
    // Mail: accepted with the global SMTP settings inherited, or refused, as Alertmanager.
    let cfg = Config::load(&td.join("conf.smtp-no-username-or-password.yml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mail = &cfg.receivers[0].email_configs[0];
    assert_eq!(
        (mail.smarthost.as_str(), mail.hello.as_str()),
        ("localhost:25", "host.example.org")
    );
    let e = Config::load(&td.join("conf.smtp-both-password-and-file.yml"))
        .expect_err("password and password file");
    assert!(
        e.message.contains("at most one of smtp_auth_password"),
        "{e}"
    );
}
