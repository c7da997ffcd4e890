//! Routing decisions side by side with the real Alertmanager's: `amtool config routes test`
//! (Alertmanager 0.33's own routing code) and our [`Route`] read the same configuration and
//! route the same label sets. The configuration holds what Alertmanager's default (fallback)
//! matcher parser reads its own way: backslashes in quoted values (`db\.prod`, `v\d+` are
//! regex escapes, `\t` stays a backslash and a `t`) and a child route with `receiver: ''`,
//! which inherits its parent's.
//!
//! Needs the `amtool` peer (scripts/install-peers.sh); without it the test prints a notice
//! and skips, and fails when `AXI_REQUIRE_PEERS=1`.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use axi_obs_alert::delivery::{Config, LabelSet, Route};

const CONFIG: &str = r#"route:
  receiver: default
  routes:
    - matchers: ['instance=~"db\.prod"']
      receiver: db
    - matchers: ['path=~"/api/v\d+"', 'tab="x\ty"']
      receiver: api
    - matchers: [team="ops"]
      receiver: ''
      continue: true
      routes:
        - matchers: [sev="page"]
          receiver: pager
    - matchers: ['team=~"ops|dev"']
      receiver: teams
receivers:
  - name: default
  - name: db
  - name: api
  - name: pager
  - name: teams
"#;

#[test]
fn amtool_and_our_routes_agree() {
    let Some(amtool) = axi_obs_core::testing::peer("amtool") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alertmanager.yml");
    std::fs::write(&file, CONFIG).unwrap();
    let cfg = Config::load(&file).unwrap_or_else(|e| panic!("our loader refused it: {e}"));
    let tree = Route::from_config(cfg.route.as_ref().unwrap());

    // Label sets, as (name, value) pairs.
    let cases: &[&[(&str, &str)]] = &[
        &[("instance", "db.prod")],
        &[("instance", "dbXprod")],
        // (A real tab cannot be given to amtool: its own label parser reads `\t` as the
        // classic parser does, a backslash and a `t`.)
        &[("path", "/api/v2"), ("tab", "x\\ty")],
        &[("path", "/api/vX"), ("tab", "x\\ty")],
        &[("team", "ops")],
        &[("team", "ops"), ("sev", "page")],
        &[("team", "dev")],
    ];
    for labels in cases {
        let theirs = amtool_routes(&amtool, &file, labels);
        let set: LabelSet = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let ours: Vec<String> = tree
            .matches(&set)
            .iter()
            .map(|r| r.opts.receiver.clone())
            .collect();
        assert_eq!(ours.join(","), theirs, "{labels:?}");
    }
}

/// The receivers `amtool config routes test` names for `labels`, comma-separated.
fn amtool_routes(amtool: &Path, config: &Path, labels: &[(&str, &str)]) -> String {
    let out = Command::new(amtool)
        .args(["config", "routes", "test"])
        .arg(format!("--config.file={}", config.display()))
        // Each label as a quoted matcher, Go-escaped, so amtool reads the value exactly.
        .args(labels.iter().map(|(k, v)| {
            let v = v.replace('\\', "\\\\").replace('"', "\\\"");
            format!("{k}=\"{v}\"")
        }))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "amtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Its parser warnings come first, on stdout too; the answer is the last line.
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout.trim().lines().last().unwrap_or("").to_owned()
}
