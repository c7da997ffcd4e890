//! The tailer and registry through the whole pipeline, in process: rotation, copytruncate,
//! reused inodes, restarts, long and partial lines, retries under backpressure.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Memory, append, counts, start, wait_until, yaml};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_by_rename_and_create_while_appending_ships_every_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    // Only the live name is matched: the renamed file must be finished through its open
    // descriptor.
    let out = Memory::default();
    let running = start(
        &yaml(dir.path(), &log.display().to_string(), ""),
        out.clone(),
    );
    let n = 600;
    let writer = {
        let log = log.clone();
        let dir = dir.path().to_owned();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap();
            for i in 0..n {
                if i == n / 2 {
                    // logrotate: rename; the writer keeps writing to the old file for a while.
                    std::fs::rename(&log, dir.join("app.log.1")).unwrap();
                }
                if i == n / 2 + 50 {
                    // ... then reopens: a new file at the old path.
                    f = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&log)
                        .unwrap();
                }
                // Half lines now and then: the tailer must hold them until the newline.
                let line = format!("line {i}\n");
                if i % 7 == 0 {
                    f.write_all(&line.as_bytes()[..3]).unwrap();
                    f.flush().unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(3));
                    f.write_all(&line.as_bytes()[3..]).unwrap();
                } else {
                    f.write_all(line.as_bytes()).unwrap();
                }
                if i % 10 == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
            }
            f.write_all(b"sentinel\n").unwrap();
        })
    };
    writer.await.unwrap();
    assert!(
        wait_until(|| out.has("sentinel")).await,
        "{:?}",
        out.bodies().len()
    );
    assert!(
        wait_until(|| out.bodies().len() > n).await,
        "lines missing: got {}",
        out.bodies().len()
    );
    running.stop().await;
    let c = counts(&out.bodies());
    for i in 0..n {
        assert_eq!(c.get(&format!("line {i}")), Some(&1), "line {i}");
    }
    assert_eq!(out.bodies().len(), n + 1, "no duplicates, nothing else");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_reads_the_new_content_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let out = Memory::default();
    // The copies are excluded: they hold lines already shipped.
    let running = start(
        &yaml(
            dir.path(),
            &dir.path().join("app.log*").display().to_string(),
            "    exclude: ['*.1']\n",
        ),
        out.clone(),
    );
    let block = |from: usize, to: usize| {
        (from..to)
            .map(|i| format!("entry number {i:05}\n"))
            .collect::<String>()
    };
    append(&log, &block(0, 100));
    assert!(wait_until(|| out.bodies().len() == 100).await);
    // copytruncate, then fewer bytes than were read: the size shrinks below the offset.
    std::fs::copy(&log, dir.path().join("app.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&log, &block(100, 110));
    assert!(
        wait_until(|| out.bodies().len() == 110).await,
        "{}",
        out.bodies().len()
    );
    // copytruncate again, then more bytes than were read before the tailer looks: only the
    // first bytes (the fingerprint) tell.
    std::fs::copy(&log, dir.path().join("app.log.1")).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    f.set_len(0).unwrap();
    drop(f);
    append(&log, &block(110, 400));
    append(&log, "sentinel\n");
    assert!(wait_until(|| out.has("sentinel")).await);
    running.stop().await;
    let c = counts(&out.bodies());
    for i in 0..400 {
        assert_eq!(
            c.get(&format!("entry number {i:05}")),
            Some(&1),
            "entry {i}"
        );
    }
    assert_eq!(out.bodies().len(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_inode_with_different_content_is_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let config = yaml(dir.path(), &log.display().to_string(), "");
    append(
        &log,
        &(0..100).map(|i| format!("old {i}\n")).collect::<String>(),
    );
    let out = Memory::default();
    let running = start(&config, out.clone());
    assert!(wait_until(|| out.bodies().len() == 100).await);
    running.stop().await;
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&log).unwrap());

    // While the shipper is down, the inode gets new, longer content (what a deleted file's
    // inode reused by a new file looks like): device and inode match the registry, the
    // offset is within the file, only the fingerprint differs.
    std::fs::write(
        &log,
        (0..150).map(|i| format!("new {i}\n")).collect::<String>(),
    )
    .unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&log).unwrap()),
        ino
    );
    let out = Memory::default();
    let running = start(&config, out.clone());
    assert!(
        wait_until(|| out.bodies().len() >= 150).await,
        "{}",
        out.bodies().len()
    );
    running.stop().await;
    let bodies = out.bodies();
    assert_eq!(bodies.len(), 150);
    for (i, b) in bodies.iter().enumerate() {
        assert_eq!(b, &format!("new {i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_from_the_registry_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let config = yaml(dir.path(), &log.display().to_string(), "");
    append(
        &log,
        &(0..100).map(|i| format!("a {i}\n")).collect::<String>(),
    );
    let out = Memory::default();
    let running = start(&config, out.clone());
    assert!(wait_until(|| out.bodies().len() == 100).await);
    running.stop().await;

    let registry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("registry.json")).unwrap()).unwrap();
    let size = std::fs::metadata(&log).unwrap().len();
    assert_eq!(registry["files"][0]["offset"], size);

    append(
        &log,
        &(0..50).map(|i| format!("b {i}\n")).collect::<String>(),
    );
    append(&log, "partial without newline");
    let out = Memory::default();
    let running = start(&config, out.clone());
    assert!(wait_until(|| out.bodies().len() == 50).await);
    // The unfinished line is held until its newline arrives.
    append(&log, "... finished\n");
    assert!(wait_until(|| out.bodies().len() == 51).await);
    running.stop().await;
    let bodies = out.bodies();
    for (i, b) in bodies.iter().take(50).enumerate() {
        assert_eq!(b, &format!("b {i}"));
    }
    assert_eq!(bodies[50], "partial without newline... finished");
}

/// A file closed for `close_inactive`, then written to and renamed out of the glob before the
/// next scan (the renamed name is not matched): its last lines are read through its new name,
/// not lost with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_file_written_and_renamed_before_the_next_scan_loses_no_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    // Scans far apart, so that the write and the rename below fall between two of them.
    let config = yaml(
        dir.path(),
        &log.display().to_string(),
        "    close_inactive: 100ms\n",
    )
    .replace("poll_interval: 20ms", "poll_interval: 500ms");
    append(
        &log,
        &(0..10).map(|i| format!("a {i}\n")).collect::<String>(),
    );
    let out = Memory::default();
    let running = start(&config, out.clone());
    assert!(wait_until(|| out.bodies().len() == 10).await);
    // Closed at the first scan at least 100 ms after its last data.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    append(&log, "last 1\nlast 2\n");
    std::fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    append(&log, "new 0\n");
    assert!(
        wait_until(|| out.bodies().len() >= 13).await,
        "{:?}",
        out.bodies()
    );
    running.stop().await;
    let mut bodies = out.bodies();
    bodies.sort();
    let mut want: Vec<String> = (0..10).map(|i| format!("a {i}")).collect();
    want.extend(["last 1", "last 2", "new 0"].map(String::from));
    want.sort();
    assert_eq!(bodies, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_the_device_number_changed_resumes_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    // start_at: end as well: a file taken for new would then also lose what was written
    // while the shipper was down.
    let config = yaml(
        dir.path(),
        &log.display().to_string(),
        "    start_at: end\n",
    );
    append(&log, "before the first start\n");
    let out = Memory::default();
    let running = start(&config, out.clone());
    // The first scan finds the file and starts at its end.
    tokio::time::sleep(Duration::from_millis(200)).await;
    append(
        &log,
        &(0..100).map(|i| format!("a {i}\n")).collect::<String>(),
    );
    assert!(wait_until(|| out.bodies().len() == 100).await);
    running.stop().await;

    // What a reboot that renumbered the device looks like to the registry: same inode, same
    // path, same content, another st_dev.
    let reg_path = dir.path().join("registry.json");
    let mut registry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&reg_path).unwrap()).unwrap();
    let dev = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(&log).unwrap());
    assert_eq!(registry["files"][0]["dev"], dev);
    registry["files"][0]["dev"] = (dev + 1).into();
    std::fs::write(&reg_path, serde_json::to_vec(&registry).unwrap()).unwrap();
    let _ = std::fs::remove_file(dir.path().join("registry.json.synced"));

    append(
        &log,
        &(0..50).map(|i| format!("b {i}\n")).collect::<String>(),
    );
    let out = Memory::default();
    let running = start(&config, out.clone());
    assert!(wait_until(|| out.bodies().len() >= 50).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    running.stop().await;
    let bodies = out.bodies();
    assert_eq!(bodies.len(), 50, "{:?}", &bodies[..bodies.len().min(3)]);
    for (i, b) in bodies.iter().enumerate() {
        assert_eq!(b, &format!("b {i}"));
    }
    // One entry, under the device number the file has now, at its end.
    let registry: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&reg_path).unwrap()).unwrap();
    let files = registry["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{registry}");
    assert_eq!(files[0]["dev"], dev);
    assert_eq!(files[0]["offset"], std::fs::metadata(&log).unwrap().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lines_are_cut_and_counted_as_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let out = Memory::default();
    let running = start(
        &yaml(
            dir.path(),
            &log.display().to_string(),
            "    max_line_bytes: 16\n",
        ),
        out.clone(),
    );
    append(&log, &format!("{}\nshort\n", "x".repeat(100_000)));
    assert!(wait_until(|| out.bodies().len() == 2).await);
    running.stop().await;
    let records = out.records.lock().unwrap().clone();
    assert_eq!(records[0].body, "x".repeat(16));
    assert!(records[0].truncated);
    assert_eq!(records[1].body, "short");
    assert!(!records[1].truncated);
    assert_eq!(records[1].position.end, 100_001 + 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_file_is_read_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let out = Memory::default();
    let running = start(
        &yaml(dir.path(), &log.display().to_string(), ""),
        out.clone(),
    );
    append(&log, "one\n");
    assert!(wait_until(|| out.bodies().len() == 1).await);
    // The writer still has it open after the unlink and writes on.
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::fs::remove_file(&log).unwrap();
    std::io::Write::write_all(&mut f, b"two\nthree\n").unwrap();
    assert!(
        wait_until(|| out.bodies().len() == 3).await,
        "{:?}",
        out.bodies()
    );
    running.stop().await;
    assert_eq!(out.bodies(), ["one", "two", "three"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_under_backpressure_deliver_everything_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let out = Memory::default();
    out.fail_first.store(8, Ordering::SeqCst);
    let running = start(
        &yaml(dir.path(), &log.display().to_string(), ""),
        out.clone(),
    );
    // Far more than the queue (100 events) holds: the tailer must wait for the output.
    append(
        &log,
        &(0..1000).map(|i| format!("e {i}\n")).collect::<String>(),
    );
    assert!(wait_until(|| out.bodies().len() >= 1000).await);
    running.stop().await;
    assert_eq!(out.failures.load(Ordering::SeqCst), 8);
    let bodies = out.bodies();
    assert_eq!(bodies.len(), 1000);
    for (i, b) in bodies.iter().enumerate() {
        assert_eq!(b, &format!("e {i}"));
    }
    assert!(out.batches.lock().unwrap().iter().all(|n| *n <= 50));
}

/// `queue_bytes` bounds the bytes read ahead of the output and in the batch being sent: with
/// 4 KiB, no batch holds more than 4 KiB of events (about ten of these lines, where the
/// event bounds allow 50), the tailer waits for the output to give them back, and every
/// line arrives once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bytes_read_ahead_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let out = Memory::default();
    out.send_delay_ms.store(20, Ordering::SeqCst);
    let yaml = yaml(dir.path(), &log.display().to_string(), "")
        .replace("queue_events: 100", "queue_events: 100, queue_bytes: 4096");
    let running = start(&yaml, out.clone());
    let want: Vec<String> = (0..200)
        .map(|i| format!("{i:04} {}", "y".repeat(195)))
        .collect();
    append(&log, &(want.join("\n") + "\n"));
    assert!(wait_until(|| out.bodies().len() >= 200).await);
    running.stop().await;
    assert_eq!(out.bodies(), want);
    let records = out.records.lock().unwrap().clone();
    let weight = log_shipper::budget::weight(&records[0]);
    let most = (4096 / weight) as usize;
    let batches = out.batches.lock().unwrap().clone();
    assert!(
        batches.iter().all(|n| *n <= most),
        "at most {most} events of {weight} bytes a batch: {batches:?}"
    );
}

/// An output that finds batches too large (a collector's message size limit) gets them in
/// halves: everything arrives once, in order, no part sent twice; an event too large alone
/// is dropped and counted, and the file's offset still moves past it.
#[tokio::test]
async fn batches_too_large_are_sent_in_halves_and_an_event_too_large_alone_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let out = Memory::default();
    out.max_batch.store(3, Ordering::SeqCst);
    let running = start(
        &yaml(dir.path(), &log.display().to_string(), ""),
        out.clone(),
    );
    let mut text: String = (0..40).map(|i| format!("e {i}\n")).collect();
    text.push_str("HUGE\n");
    text.push_str(&(40..60).map(|i| format!("e {i}\n")).collect::<String>());
    append(&log, &text);
    assert!(wait_until(|| out.bodies().len() >= 60).await);
    running.stop().await;
    let bodies = out.bodies();
    let want: Vec<String> = (0..60).map(|i| format!("e {i}")).collect();
    assert_eq!(bodies, want);
    assert!(out.batches.lock().unwrap().iter().all(|n| *n <= 3));
    // The registry moved past every line, the dropped one included.
    let registry: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("registry.json")).unwrap())
            .unwrap();
    let size = std::fs::metadata(&log).unwrap().len();
    assert_eq!(registry["files"][0]["offset"], size);
}

/// Tails `dir/*.log` into `out`, with `lines` lines (`a 0`, `a 1`, ...) in `a.log`.
fn start_on_a_backlog(dir: &std::path::Path, out: &Memory, lines: usize) -> common::Running {
    let glob = dir.join("*.log");
    let running = start(&yaml(dir, &glob.display().to_string(), ""), out.clone());
    append(
        &dir.join("a.log"),
        &(0..lines).map(|i| format!("a {i}\n")).collect::<String>(),
    );
    running
}

/// During an output outage the tailer waits on the full queue, but still looks for new files:
/// one created and rotated out of the globs before the outage ends is held open and shipped,
/// not missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_created_and_rotated_away_during_an_outage_is_not_missed() {
    let dir = tempfile::tempdir().unwrap();
    let out = Memory::default();
    // The output is down until told otherwise.
    out.fail_first.store(usize::MAX, Ordering::SeqCst);
    // More than the queue (100) and a batch (50) hold: the tailer ends up waiting.
    let running = start_on_a_backlog(dir.path(), &out, 300);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Created, written and rotated away (out of the globs) while the tailer waits.
    let b = dir.path().join("b.log");
    append(&b, "b 0\nb 1\n");
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::rename(&b, dir.path().join("b.log.1")).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(out.bodies().is_empty(), "the output was down");
    // The outage ends.
    out.fail_first.store(0, Ordering::SeqCst);
    assert!(
        wait_until(|| out.bodies().len() >= 302).await,
        "{} received; b's lines: {}",
        out.bodies().len(),
        out.bodies().iter().filter(|b| b.starts_with("b ")).count()
    );
    running.stop().await;
    let counts = counts(&out.bodies());
    assert_eq!(counts.len(), 302);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    assert_eq!(counts.get("b 0"), Some(&1));
    assert_eq!(counts.get("b 1"), Some(&1));
}

/// The same with an output that is slow but never stops: no single wait lasts a poll
/// interval, yet the globs are expanded every interval while a long backlog is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_created_and_rotated_away_while_a_backlog_is_read_is_not_missed() {
    let dir = tempfile::tempdir().unwrap();
    let out = Memory::default();
    // 50 events per 5 ms at most: 20,000 lines take about 2 s; a record waits under the
    // 20 ms poll interval.
    out.send_delay_ms.store(5, Ordering::SeqCst);
    let running = start_on_a_backlog(dir.path(), &out, 20_000);
    assert!(wait_until(|| out.bodies().len() > 500).await);
    let b = dir.path().join("b.log");
    append(&b, "b 0\n");
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::rename(&b, dir.path().join("b.log.1")).unwrap();
    assert!(
        out.bodies().len() < 19_000,
        "the backlog must still be being read for this test to mean anything"
    );
    assert!(
        wait_until(|| out.bodies().len() >= 20_001).await,
        "{} received; b's line: {}",
        out.bodies().len(),
        out.has("b 0")
    );
    running.stop().await;
    let counts = counts(&out.bodies());
    assert_eq!(counts.len(), 20_001);
    assert!(counts.values().all(|n| *n == 1));
}

/// `start_at: end` skips what files held at the first scan, not what later ones hold. A file
/// created while the output is down, then a graceful stop before anything was acknowledged:
/// the registry written at shutdown knows the file, so the next start reads it from its
/// start instead of skipping it as a file never seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_found_during_an_outage_is_read_whole_after_a_restart_with_start_at_end() {
    let dir = tempfile::tempdir().unwrap();
    let glob = dir.path().join("*.log").display().to_string();
    let config = yaml(dir.path(), &glob, "    start_at: end\n");
    append(&dir.path().join("old.log"), "skipped by start_at: end\n");
    let down = Memory::default();
    down.fail_first.store(usize::MAX, Ordering::SeqCst);
    let running = start(&config, down.clone());
    // Past the first scan (20 ms polls), a new file.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let new = dir.path().join("new.log");
    append(
        &new,
        &(0..10).map(|i| format!("n {i}\n")).collect::<String>(),
    );
    assert!(wait_until(|| down.failures.load(Ordering::SeqCst) >= 2).await);
    running.stop().await;
    assert!(down.bodies().is_empty());

    let out = Memory::default();
    let running = start(&config, out.clone());
    assert!(
        wait_until(|| out.bodies().len() >= 10).await,
        "{:?}",
        out.bodies()
    );
    running.stop().await;
    let bodies = out.bodies();
    assert_eq!(
        bodies,
        (0..10).map(|i| format!("n {i}")).collect::<Vec<_>>()
    );
}
