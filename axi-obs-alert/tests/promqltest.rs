//! Runs Prometheus's stable promqltest files against the engine.
//!
//! The files are not in this repository: set `AXI_CONFORMANCE_DIR` to the conformance
//! directory (the one holding `promqltest/*.test`, or the `promqltest` directory itself).
//! Without it the test prints a notice and skips (the data is not a peer: nothing to
//! install).
//!
//! Every eval of the stable files must pass or be reported as unsupported with its reason
//! (native-histogram data, experimental functions); none may fail.

use std::path::PathBuf;

use axi_obs_alert::promqltest::{FileReport, run_file};

/// The files Prometheus keeps for stable PromQL (the others test experimental features or
/// native histograms).
const STABLE_FILES: [&str; 12] = [
    "aggregators",
    "at_modifier",
    "collision",
    "functions",
    "histograms",
    "literals",
    "operators",
    "range_queries",
    "selectors",
    "staleness",
    "subquery",
    "trig_functions",
];

/// The fewest evals that must pass over the stable files (972 of 1,214 when this was set;
/// the other 242 are unsupported: native histograms and experimental functions). Raise it as
/// support grows.
const MIN_PASSED: usize = 972;

fn conformance_dir() -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("AXI_CONFORMANCE_DIR") else {
        eprintln!("SKIPPED: AXI_CONFORMANCE_DIR is not set (scripts/test.sh sets it)");
        return None;
    };
    let dir = PathBuf::from(dir);
    let nested = dir.join("promqltest");
    Some(if nested.is_dir() { nested } else { dir })
}

#[test]
fn stable_promqltest_files() {
    let Some(dir) = conformance_dir() else {
        return;
    };
    let reports: Vec<FileReport> = STABLE_FILES
        .iter()
        .map(|f| run_file(&dir.join(format!("{f}.test"))))
        .collect();

    eprintln!(
        "{:<20} {:>7} {:>7} {:>12}",
        "file", "passed", "failed", "unsupported"
    );
    let (mut passed, mut failed, mut unsupported) = (0, 0, 0);
    for (name, r) in STABLE_FILES.iter().zip(&reports) {
        eprintln!(
            "{name:<20} {:>7} {:>7} {:>12}",
            r.passed,
            r.failed.len(),
            r.unsupported.len()
        );
        passed += r.passed;
        failed += r.failed.len();
        unsupported += r.unsupported.len();
    }
    eprintln!("{:<20} {passed:>7} {failed:>7} {unsupported:>12}", "total");

    let format_errors: Vec<String> = reports
        .iter()
        .flat_map(|r| {
            r.format_errors()
                .map(move |f| format!("{}:{}: {}: {}", r.name, f.line, f.expr, f.message))
        })
        .collect();
    assert!(
        format_errors.is_empty(),
        "the runner could not read parts of the files:\n{}",
        format_errors.join("\n")
    );
    let eval_failures: Vec<String> = reports
        .iter()
        .flat_map(|r| {
            r.eval_failures()
                .map(move |f| format!("{}:{}: {}: {}", r.name, f.line, f.expr, f.message))
        })
        .collect();
    assert!(
        eval_failures.is_empty(),
        "{} evals failed:\n{}",
        eval_failures.len(),
        eval_failures.join("\n")
    );
    assert!(
        passed >= MIN_PASSED,
        "{passed} evals passed, fewer than the floor of {MIN_PASSED}"
    );
}
