//! `axi-alert test` against `promtool test rules` (Prometheus 3.x) over every unit-test file of
//! Prometheus's `cmd/promtool/testdata`: the same files pass and fail.
//!
//! Needs `AXI_CONFORMANCE_DIR` and promtool (see tests/check_rules.rs). Files we report as
//! unsupported (native histograms) are listed, not compared; the other test groups of such a
//! file must still pass. A feature newer than the installed promtool (`start_timestamp`,
//! refused by promtool 3.5 as an unknown field) is compared with what newer promtool does:
//! the file passes.

use std::path::PathBuf;
use std::process::Command;

use axi_obs_alert::unittest::{Outcome, run_file};

#[test]
fn verdicts_agree_with_promtool() {
    let Some(dir) = std::env::var_os("AXI_CONFORMANCE_DIR").map(PathBuf::from) else {
        eprintln!("SKIPPED: AXI_CONFORMANCE_DIR is not set (scripts/test.sh sets it)");
        return;
    };
    let Some(promtool) = axi_obs_core::testing::peer("promtool") else {
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("promtool"))
        .expect("conformance/promtool")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yml")
                && std::fs::read_to_string(p).is_ok_and(|t| t.lines().any(|l| l == "tests:"))
        })
        .collect();
    files.sort();
    assert!(files.len() >= 10, "expected promtool's unit-test files");

    let mut disagreements = Vec::new();
    let mut unsupported = Vec::new();
    let (mut agree, mut newer) = (0, 0);
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let out = Command::new(&promtool)
            .args(["test", "rules"])
            .arg(f)
            .output()
            .expect("run promtool");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut theirs = out.status.success();
        if all.contains("field start_timestamp not found") {
            // The installed promtool predates start_timestamp; newer ones pass this file.
            theirs = true;
            newer += 1;
        }
        match run_file(f) {
            Outcome::Unsupported(why) => unsupported.push(format!("{name}: {why}")),
            Outcome::Passed if theirs => agree += 1,
            Outcome::Failed(_) if !theirs => agree += 1,
            Outcome::Passed => disagreements.push(format!(
                "{name}: promtool fails ({}), we pass",
                all.trim().lines().take(4).collect::<Vec<_>>().join(" | ")
            )),
            Outcome::Failed(errs) => disagreements.push(format!(
                "{name}: promtool passes, we fail: {}",
                errs.join(" | ")
            )),
        }
    }
    eprintln!(
        "{} unit-test files: {agree} verdicts agree with promtool ({newer} as newer promtool), {} unsupported, {} disagree",
        files.len(),
        unsupported.len(),
        disagreements.len()
    );
    for u in &unsupported {
        eprintln!("  unsupported: {u}");
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    assert!(
        unsupported.len() <= 1,
        "more files unsupported than native-histogram unittest.yml"
    );
}

#[test]
fn failures_say_what_differs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: g\n    rules:\n      - alert: Down\n        expr: up == 0\n        for: 2m\n        labels: { severity: page }\n        annotations:\n          summary: '{{ $labels.instance }} down, value {{ $value }}'\n",
    )
    .unwrap();
    let test = dir.path().join("test.yml");
    std::fs::write(
        &test,
        "rule_files: [rules.yml]\ntests:\n  - interval: 1m\n    input_series:\n      - series: 'up{instance=\"a\"}'\n        values: '0x5'\n    alert_rule_test:\n      - eval_time: 1m\n        alertname: Down\n        exp_alerts: []\n      - eval_time: 2m\n        alertname: Down\n        exp_alerts:\n          - exp_labels: { severity: page, instance: a }\n            exp_annotations: { summary: 'a down, value 0' }\n",
    )
    .unwrap();
    assert_eq!(run_file(&test), Outcome::Passed);

    // Expect it one minute early: pending alerts are invisible, so this fails.
    let early = std::fs::read_to_string(&test)
        .unwrap()
        .replace("eval_time: 2m", "eval_time: 1m30s");
    std::fs::write(&test, early).unwrap();
    let Outcome::Failed(errs) = run_file(&test) else {
        panic!("expected a failure")
    };
    assert!(errs[0].contains("alertname: Down, time: 1m30s"), "{errs:?}");
    assert!(errs[0].contains("got:[]"), "{errs:?}");
}

/// A recording rule with a UTF-8 name (Prometheus 3), read back by a quoted selector and by
/// an alert: passes here as under promtool.
#[test]
fn utf8_recording_rule_names_are_recorded_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yml"), RULES).unwrap();
    let test = dir.path().join("test.yml");
    std::fs::write(&test, TEST).unwrap();
    assert_eq!(run_file(&test), Outcome::Passed);
    if let Some(promtool) = axi_obs_core::testing::peer("promtool") {
        let out = Command::new(promtool)
            .args(["test", "rules"])
            .arg(&test)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    // The alert reads the recorded series: with a threshold it does not reach, it fails.
    std::fs::write(
        dir.path().join("rules.yml"),
        RULES.replace("> 0.5", "> 1.5"),
    )
    .unwrap();
    assert!(matches!(run_file(&test), Outcome::Failed(_)));
}

const RULES: &str = r#"groups:
- name: g
  interval: 1m
  rules:
  - record: "http.requests:rate5m"
    expr: sum(rate({"http.requests_total"}[5m]))
  - alert: Busy
    expr: '{"http.requests:rate5m"} > 0.5'
"#;

const TEST: &str = r#"rule_files: [rules.yml]
evaluation_interval: 1m
tests:
- interval: 1m
  input_series:
  - series: '{"http.requests_total", job="a"}'
    values: 0+60x20
  promql_expr_test:
  - expr: '{"http.requests:rate5m"}'
    eval_time: 10m
    exp_samples:
    - labels: '{__name__="http.requests:rate5m"}'
      value: 1
  alert_rule_test:
  - eval_time: 10m
    alertname: Busy
    exp_alerts:
    - exp_labels: {}
"#;
