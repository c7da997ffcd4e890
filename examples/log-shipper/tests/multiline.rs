//! Multiline joining through the whole pipeline: stack traces become one event, the timeout
//! sends the last one, and the registry never stops inside an event.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Memory, append, start, wait_until, yaml};
use log_shipper::registry::Registry;

const TRACE: &str = "2026-11-26 10:00:00 ERROR request failed\njava.lang.IllegalStateException: boom\n\tat com.example.Shop.pay(Shop.java:42)\n\tat com.example.Shop.main(Shop.java:7)\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_traces_become_one_event_and_the_last_leaves_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let out = Memory::default();
    let running = start(
        &yaml(
            dir.path(),
            &log.display().to_string(),
            "    multiline: { pattern: '^(\\s|java\\.)', match: after, timeout: 50ms }\n",
        ),
        out.clone(),
    );
    append(
        &log,
        &format!("2026-11-26 09:59:59 INFO started\n{TRACE}2026-11-26 10:00:01 WARN slow\n"),
    );
    // Nothing follows the last event: only the timeout sends it.
    assert!(
        wait_until(|| out.bodies().len() == 3).await,
        "{:?}",
        out.bodies()
    );
    running.stop().await;
    assert_eq!(
        out.bodies(),
        [
            "2026-11-26 09:59:59 INFO started",
            TRACE.trim_end(),
            "2026-11-26 10:00:01 WARN slow",
        ]
    );
    let records = out.records.lock().unwrap();
    // The joined event ends where its last line ends; the text parser found its level.
    assert_eq!(
        records[1].position.end,
        ("2026-11-26 09:59:59 INFO started\n".len() + TRACE.len()) as u64
    );
    assert_eq!(records[1].level, Some(log_shipper::record::Level::Error));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_stops_before_an_unfinished_event_and_a_restart_reads_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    // No timeout in the test's time: an event is complete only when the next one starts.
    let config = yaml(
        dir.path(),
        &log.display().to_string(),
        "    multiline: { pattern: '^\\s', timeout: 1h }\n",
    );
    let first = "E1 failed\n  at a\n  at b\n";
    append(&log, &format!("{first}E2 failed\n  at c\n"));
    let out = Memory::default();
    let running = start(&config, out.clone());
    assert!(wait_until(|| out.bodies().len() == 1).await);
    running.stop().await;
    assert_eq!(out.bodies(), ["E1 failed\n  at a\n  at b"]);
    let registry = Registry::load(&dir.path().join("registry.json")).unwrap();
    let offsets: Vec<u64> = registry.entries().map(|e| e.offset).collect();
    assert_eq!(offsets, [first.len() as u64], "not inside E2");

    // More of E2 arrives while the shipper is down; after the restart E2 is read from its
    // first line.
    append(&log, "  at d\nE3 done\n");
    let out = Memory::default();
    let running = start(&config, out.clone());
    assert!(wait_until(|| out.bodies().len() == 1).await);
    running.stop().await;
    assert_eq!(out.bodies(), ["E2 failed\n  at c\n  at d"]);
}
