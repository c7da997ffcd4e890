//! `kill -9` of the real binary mid-run, then a restart: every line arrives at a real OTLP
//! receiver, duplicates at most the batch in flight.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use axi_obs_core::Protocol;
use axi_obs_core::testing::{OtlpReceiver, value_string};
use common::{ChildGuard, free_port};

const BATCH: usize = 40;

fn spawn(config: &std::path::Path) -> ChildGuard {
    ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_axi-log-shipper"))
            .arg("--config")
            .arg(config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", free_port()))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

fn received(receiver: &OtlpReceiver) -> Vec<String> {
    receiver
        .logs()
        .iter()
        .map(|l| value_string(l.record.body.as_ref()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_then_restart_loses_no_line_and_duplicates_are_bounded() {
    let receiver = OtlpReceiver::start(Protocol::HttpProtobuf).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let config = dir.path().join("shipper.yml");
    std::fs::write(
        &config,
        format!(
            "registry: {}\npoll_interval: 10ms\ninputs:\n  - name: app\n    paths: ['{}']\n    format: json\noutput:\n  otlp: {{ endpoint: '{}' }}\nbatch: {{ max_events: {BATCH}, max_wait: 10ms, queue_events: 200 }}\n",
            dir.path().join("registry.json").display(),
            log.display(),
            receiver.endpoint()
        ),
    )
    .unwrap();
    let n = 3000;
    let writer = {
        let log = log.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap();
            for i in 0..n {
                writeln!(f, r#"{{"log.level":"INFO","message":"seq {i}"}}"#).unwrap();
                if i % 20 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        })
    };
    let mut child = spawn(&config);
    // Kill it once it has shipped a good part, while lines are still being written.
    assert!(
        receiver
            .wait_until(Duration::from_secs(30), |r| r.logs().len() >= 600)
            .await
    );
    let pid = child.0.id();
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    let before_restart = received(&receiver).len();
    assert!(before_restart < n, "killed too late to test anything");
    eprintln!("killed pid {pid} after {before_restart} records");
    let _child = spawn(&config);
    writer.await.unwrap();
    let all_seen = receiver
        .wait_until(Duration::from_secs(60), |r| {
            let bodies = received(r);
            (0..n).all(|i| bodies.contains(&format!("seq {i}")))
        })
        .await;
    let bodies = received(&receiver);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for b in &bodies {
        *counts.entry(b.as_str()).or_insert(0) += 1;
    }
    let missing: Vec<usize> = (0..n)
        .filter(|i| !counts.contains_key(format!("seq {i}").as_str()))
        .collect();
    assert!(all_seen && missing.is_empty(), "missing lines: {missing:?}");
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    eprintln!("{} records, {duplicates} duplicates", bodies.len());
    // The registry is replaced after every acknowledged batch: only the batch in flight
    // when the process died is sent again.
    assert!(
        duplicates <= BATCH,
        "{duplicates} duplicates, more than the batch in flight ({BATCH})"
    );
    assert!(counts.values().all(|c| *c <= 2));
}
