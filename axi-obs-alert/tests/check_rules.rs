//! `axi_obs_alert::rules::load` against `promtool check rules` (Prometheus 3.x) over every
//! rule-file fixture of Prometheus's repository: the same files are accepted and rejected.
//!
//! Needs `AXI_CONFORMANCE_DIR` (the upstream test data, read in place) and promtool (a peer,
//! installed by scripts/install-peers.sh); without either it prints a notice and skips,
//! except that a missing promtool fails when `AXI_REQUIRE_PEERS=1`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn conformance() -> Option<PathBuf> {
    match std::env::var_os("AXI_CONFORMANCE_DIR") {
        Some(d) => Some(PathBuf::from(d)),
        None => {
            eprintln!("SKIPPED: AXI_CONFORMANCE_DIR is not set (scripts/test.sh sets it)");
            None
        }
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            out.push(p);
        }
    }
}

#[test]
fn verdicts_agree_with_promtool() {
    let Some(dir) = conformance() else { return };
    let Some(promtool) = axi_obs_core::testing::peer("promtool") else {
        return;
    };
    let mut files = Vec::new();
    yaml_files(&dir.join("rulefmt"), &mut files);
    yaml_files(&dir.join("promtool"), &mut files);
    assert!(
        files.len() > 30,
        "expected the rule fixtures under {}",
        dir.display()
    );

    let mut disagreements = Vec::new();
    let (mut accepted, mut rejected) = (0, 0);
    for f in &files {
        let out = Command::new(&promtool)
            .arg("check")
            .arg("rules")
            .arg(f)
            .output()
            .expect("run promtool");
        let theirs = out.status.success();
        let ours = axi_obs_alert::rules::load(f);
        let name = f.strip_prefix(&dir).unwrap_or(f).display().to_string();
        match &ours {
            Ok(_) => accepted += 1,
            Err(_) => rejected += 1,
        }
        if theirs != ours.is_ok() {
            let why = match &ours {
                Ok(_) => "we accept".to_owned(),
                Err(e) => format!("we reject: {}", e[0]),
            };
            disagreements.push(format!(
                "{name}: promtool {} ({}); {why}",
                if theirs { "accepts" } else { "rejects" },
                String::from_utf8_lossy(&out.stderr)
                    .trim()
                    .lines()
                    .last()
                    .unwrap_or("")
            ));
        }
    }
    eprintln!(
        "{} files: we accept {accepted}, reject {rejected}; {} disagreements with promtool",
        files.len(),
        disagreements.len()
    );
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

#[test]
fn every_error_names_file_line_group_and_rule() {
    let Some(dir) = conformance() else { return };
    let f = dir.join("promtool/bad-rules-syntax.yml");
    let errs = axi_obs_alert::rules::load(&f).unwrap_err();
    let s = errs[0].to_string();
    assert!(
        s.contains("bad-rules-syntax.yml:6: group \"bad-syntax\", rule 1 (\"x\"): could not parse expression"),
        "{s}"
    );
}

#[test]
fn the_cli_exits_1_and_prints_where() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yml");
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &good,
        "groups:\n  - name: g\n    rules:\n      - record: a:b\n        expr: sum(up)\n",
    )
    .unwrap();
    std::fs::write(
        &bad,
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: rate(up[5m]\n",
    )
    .unwrap();
    let run = |f: &Path| {
        Command::new(env!("CARGO_BIN_EXE_axi-alert"))
            .arg("check")
            .arg(f)
            .output()
            .unwrap()
    };
    let out = run(&good);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS: 1 rules found"));
    let out = run(&bad);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("bad.yml:4: group \"g\", rule 1 (\"A\"): could not parse expression"),
        "{text}"
    );
}

/// Recording-rule names as Prometheus 3 reads them (any UTF-8, but no braces), each file's
/// verdict the same as promtool's.
#[test]
fn utf8_recording_rule_names_as_promtool_reads_them() {
    let Some(promtool) = axi_obs_core::testing::peer("promtool") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, ok) in [
        ("http.server.requests:rate5m", true),
        ("with space", true),
        ("1abc", true),
        ("Höhe", true),
        ("a{b=\\\"c\\\"}", false),
        ("sum(x)}", false),
    ] {
        let f = dir.path().join("r.yml");
        std::fs::write(
            &f,
            format!("groups:\n- name: g\n  rules:\n  - record: \"{name}\"\n    expr: up\n"),
        )
        .expect("write");
        let theirs = Command::new(&promtool)
            .args(["check", "rules"])
            .arg(&f)
            .output()
            .expect("run promtool");
        let ours = axi_obs_alert::rules::load(&f);
        assert_eq!(theirs.status.success(), ok, "promtool on {name:?}");
        assert_eq!(ours.is_ok(), ok, "{name:?}: {ours:?}");
        if let Err(errs) = ours {
            assert!(
                errs.iter()
                    .any(|e| e.to_string().contains("braces present")),
                "{errs:?}"
            );
        }
    }
}
