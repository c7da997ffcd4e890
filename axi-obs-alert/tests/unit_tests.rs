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

/// `promtool test rules FILE`'s output, when promtool is here.
fn promtool_test(file: &std::path::Path) -> Option<std::process::Output> {
    let promtool = axi_obs_core::testing::peer("promtool")?;
    Some(
        Command::new(promtool)
            .args(["test", "rules"])
            .arg(file)
            .output()
            .expect("run promtool"),
    )
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
    if let Some(out) = promtool_test(&test) {
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

/// The failure texts are promtool's: eval times as Prometheus durations (`5m`, `1d`, not Go's
/// `5m0s`), sample values in Go's `%E` (`1E+00`), alerts separated by commas. Compared with
/// promtool's own output when it is here.
#[test]
fn failure_texts_are_promtools() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: g\n    rules:\n      - alert: Down\n        expr: up == 0\n",
    )
    .unwrap();
    let test = dir.path().join("test.yml");
    std::fs::write(
        &test,
        "rule_files: [rules.yml]\ntests:\n  - interval: 1m\n    input_series:\n      - series: 'up{instance=\"a\"}'\n        values: '0x10'\n      - series: 'up{instance=\"b\"}'\n        values: '0x10'\n    alert_rule_test:\n      - eval_time: 5m\n        alertname: Down\n        exp_alerts: []\n    promql_expr_test:\n      - expr: up\n        eval_time: 5m\n        exp_samples:\n          - labels: 'up{instance=\"a\"}'\n            value: 0.5\n",
    )
    .unwrap();
    let Outcome::Failed(errs) = run_file(&test) else {
        panic!("expected a failure")
    };
    let text = errs.join("\n");
    assert!(text.contains("alertname: Down, time: 5m, "), "{text}");
    assert!(text.contains("Annotations:{},\n            1:"), "{text}");
    assert!(text.contains("expr: \"up\", time: 5m,"), "{text}");
    assert!(
        text.contains("exp: {__name__=\"up\", instance=\"a\"} 5E-01"),
        "{text}"
    );
    assert!(
        text.contains("got: {__name__=\"up\", instance=\"a\"} 0E+00"),
        "{text}"
    );
    if let Some(out) = promtool_test(&test) {
        let theirs = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        for piece in [
            "alertname: Down, time: 5m, ",
            "Annotations:{},\n            1:",
            "expr: \"up\", time: 5m,",
            "5E-01",
            "0E+00",
        ] {
            assert!(
                theirs.contains(piece),
                "promtool does not print {piece:?}:\n{theirs}"
            );
        }
    }
}

/// Empty values count, as in promtool: an annotation that expands to nothing is part of the
/// alert (a test that leaves it out fails), and an expected empty label or annotation the
/// alert does not have is a mismatch. Each verdict is also promtool's, when it is here.
#[test]
fn empty_labels_and_annotations_count_as_in_promtool() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: g\n    rules:\n      - alert: Down\n        expr: up == 0\n        labels: { severity: page }\n        annotations:\n          summary: '{{ $labels.nope }}'\n          runbook: 'see wiki'\n",
    )
    .unwrap();
    let cases = [
        // (exp_labels, exp_annotations, passes)
        (
            "{ severity: page }",
            "{ summary: '', runbook: 'see wiki' }",
            true,
        ),
        ("{ severity: page }", "{ runbook: 'see wiki' }", false),
        (
            "{ severity: page }",
            "{ summary: '', runbook: 'see wiki', extra: '' }",
            false,
        ),
        (
            "{ severity: page, team: '' }",
            "{ summary: '', runbook: 'see wiki' }",
            false,
        ),
    ];
    for (i, (labels, annotations, passes)) in cases.into_iter().enumerate() {
        let test = dir.path().join(format!("test{i}.yml"));
        std::fs::write(
            &test,
            format!(
                "rule_files: [rules.yml]\ntests:\n  - interval: 1m\n    input_series:\n      - series: 'up{{instance=\"a\"}}'\n        values: '0x3'\n    alert_rule_test:\n      - eval_time: 1m\n        alertname: Down\n        exp_alerts:\n          - exp_labels: {labels}\n            exp_annotations: {annotations}\n"
            ),
        )
        .unwrap();
        let ours = run_file(&test);
        let with_instance = std::fs::read_to_string(&test)
            .unwrap()
            .replace("severity: page", "severity: page, instance: a");
        std::fs::write(&test, with_instance).unwrap();
        let ours_full = run_file(&test);
        assert!(
            matches!(ours, Outcome::Failed(_)),
            "case {i}: the instance label is missing from the expectation: {ours:?}"
        );
        assert_eq!(
            matches!(ours_full, Outcome::Passed),
            passes,
            "case {i}: {labels} {annotations}: {ours_full:?}"
        );
        if let Some(out) = promtool_test(&test) {
            assert_eq!(out.status.success(), passes, "case {i}: promtool: {out:?}");
        }
    }
}
