//! OTLP over gRPC: the real binary ships a file to an in-process gRPC OTLP receiver; an
//! unreachable receiver is a retryable failure.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use axi_obs_core::Protocol;
use axi_obs_core::testing::{OtlpReceiver, attr, value_string};
use common::{ChildGuard, append, free_port};
use log_shipper::output::{OtlpGrpc, Output, SendError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_ships_every_line_over_grpc() {
    let receiver = OtlpReceiver::start(Protocol::Grpc).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let n = 250;
    append(
        &log,
        &(0..n)
            .map(|i| format!("2026-11-26 10:00:00 WARN line {i}\n"))
            .collect::<String>(),
    );
    let _child = ship(
        dir.path(),
        &log,
        &receiver.endpoint(),
        "grpc, headers: { x-tenant: t1 }",
        100,
    );
    let logs = each_line_once(&receiver, n).await;
    let first = &logs[0];
    assert!(
        first
            .resource
            .contains(&("service.name".to_owned(), "shop".to_owned())),
        "{:?}",
        first.resource
    );
    assert_eq!(first.record.severity_text, "WARN");
    assert_eq!(
        attr(&first.record.attributes, "log.file.path"),
        Some(log.display().to_string())
    );
    assert!(
        receiver
            .headers()
            .iter()
            .all(|h| h.get("x-tenant").and_then(|v| v.to_str().ok()) == Some("t1"))
    );
}

/// Starts the shipper on `log` with an OTLP output to `endpoint` with `protocol` (and any
/// more of the output's settings after it) and batches of `max_events`.
fn ship(
    dir: &std::path::Path,
    log: &std::path::Path,
    endpoint: &str,
    protocol: &str,
    max_events: usize,
) -> ChildGuard {
    let config = dir.join("shipper.yml");
    std::fs::write(
        &config,
        format!(
            "registry: {}\npoll_interval: 10ms\ninputs:\n  - name: app\n    service: shop\n    paths: ['{}']\noutput:\n  otlp: {{ endpoint: '{endpoint}', protocol: {protocol} }}\nbatch: {{ max_events: {max_events}, max_wait: 10ms, queue_events: {} }}\n",
            dir.join("registry.json").display(),
            log.display(),
            2 * max_events
        ),
    )
    .unwrap();
    ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_axi-log-shipper"))
            .arg("--config")
            .arg(&config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", free_port()))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

/// A receiver built on tonic with a 16 KiB message limit answers a 50 KB batch with
/// `OUT_OF_RANGE` ("decoded message length too large"): the batch goes again in halves until
/// each part passes, every line once (it was retried whole, forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_a_tonic_receivers_limit_is_sent_in_halves() {
    let receiver = OtlpReceiver::start_limited(Protocol::Grpc, Some(16 << 10))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let n = 300;
    append(
        &log,
        &(0..n)
            .map(|i| format!("line {i:04} {}\n", "x".repeat(500)))
            .collect::<String>(),
    );
    let _child = ship(dir.path(), &log, &receiver.endpoint(), "grpc", 100);
    each_line_once(&receiver, n).await;
}

/// Waits for `n` log records at `receiver`, then a little more for duplicates; asserts they
/// are `n` different lines, and returns them.
async fn each_line_once(
    receiver: &OtlpReceiver,
    n: usize,
) -> Vec<axi_obs_core::testing::ReceivedLog> {
    assert!(
        receiver
            .wait_until(Duration::from_secs(30), |r| r.logs().len() >= n)
            .await,
        "{} of {n}",
        receiver.logs().len()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = receiver.logs();
    let mut bodies: Vec<String> = logs
        .iter()
        .map(|l| value_string(l.record.body.as_ref()))
        .collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!((bodies.len(), logs.len()), (n, n), "each line once");
    logs
}

#[tokio::test]
async fn an_unreachable_receiver_is_retried() {
    let mut out = OtlpGrpc::new(
        &format!("http://127.0.0.1:{}", free_port()),
        Duration::from_secs(5),
        Vec::new(),
    )
    .unwrap();
    let record = common::record("a");
    let e = out.send(&[record]).await.unwrap_err();
    assert!(matches!(e, SendError::Retryable { .. }), "{e:?}");
}
