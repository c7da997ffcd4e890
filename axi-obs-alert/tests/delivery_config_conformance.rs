//! Alertmanager's own configuration test files (`config/testdata`, from
//! `$AXI_CONFORMANCE_DIR`): the real `amtool check-config` 0.33 and our loader must accept
//! and reject the same files, for every file within the subset we implement. A file is
//! outside the subset when our loader refuses a field by name as unknown (integrations such
//! as Slack or OpsGenie, which we do not have) or as not supported (SMTP CRAM-MD5); those
//! are counted and listed, not compared.

use std::path::PathBuf;
use std::process::Command;

use axi_obs_alert::delivery::Config;
use axi_obs_core::testing::peer;

fn testdata() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("AXI_CONFORMANCE_DIR")?)
        .join("alertmanager/config/testdata");
    dir.is_dir().then_some(dir)
}

#[test]
fn amtool_and_our_loader_accept_and_reject_the_same_files() {
    let Some(dir) = testdata() else {
        eprintln!("AXI_CONFORMANCE_DIR not set or without alertmanager/config/testdata: skipped");
        return;
    };
    let Some(amtool) = peer("amtool") else {
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read testdata")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    files.sort();
    let (mut accepted, mut rejected, mut outside) = (Vec::new(), Vec::new(), Vec::new());
    let mut disagree = Vec::new();
    for f in &files {
        let name = f.file_name().expect("name").to_string_lossy().into_owned();
        // amtool resolves relative file references from the working directory.
        let theirs = Command::new(&amtool)
            .arg("check-config")
            .arg(f)
            .current_dir(&dir)
            .output()
            .expect("run amtool")
            .status
            .success();
        let ours = Config::load(f);
        match (&ours, theirs) {
            (Err(e), _)
                if e.message.contains("unknown field") || e.message.contains("not supported") =>
            {
                outside.push(format!(
                    "{name}: {}",
                    e.message.lines().next().unwrap_or("")
                ));
            }
            (Ok(_), true) => accepted.push(name),
            (Err(_), false) => rejected.push(name),
            (Ok(_), false) => disagree.push(format!("{name}: amtool rejects it, we accept it")),
            (Err(e), true) => {
                disagree.push(format!("{name}: amtool accepts it, we reject it: {e}"))
            }
        }
    }
    eprintln!(
        "{} files: {} accepted and {} rejected by both, {} outside our subset, {} disagreements",
        files.len(),
        accepted.len(),
        rejected.len(),
        outside.len(),
        disagree.len()
    );
    for o in &outside {
        eprintln!("  outside: {o}");
    }
    assert!(disagree.is_empty(), "{disagree:#?}");
    // The comparison covered files on both sides of the line (Alertmanager 0.33.1's
    // testdata: 2 accepted and 4 rejected within our subset).
    assert!(
        accepted.len() >= 2 && rejected.len() >= 4,
        "{accepted:?} {rejected:?}"
    );
}
