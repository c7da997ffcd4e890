//! The SQLite history: durability, idempotence, queries, stats and DORA figures.

#![allow(clippy::unwrap_used)] // helpers outside #[test] functions unwrap too

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axi_obs_deploy::clock::ManualClock;
use axi_obs_deploy::dispatch::Dispatcher;
use axi_obs_deploy::event::{DeploymentRef, from_unix_ms};
use axi_obs_deploy::hook::HookError;
use axi_obs_deploy::store::{Filter, History, HistoryHook, StoreError};
use axi_obs_deploy::{DeploySpec, Deployment, Event, EventKind, Status, Tracker};

const H: i64 = 3_600_000;
const S: i64 = 1_000;
const DAY: i64 = 24 * H;

#[test]
fn history_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deploys.db");
    let clock = ManualClock::at_unix_ms(1_700_000_000_000);
    let collected = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = collected.clone();
    let dispatcher = Dispatcher::builder()
        .hook(HistoryHook::new(History::open(&path).unwrap()))
        .hook(move |e: &Event| -> Result<(), HookError> {
            sink.lock().unwrap().push(e.clone());
            Ok(())
        })
        .build()
        .unwrap();
    let tracker = Tracker::with_clock(dispatcher, clock.clone());
    let deploy = tracker.start_with(
        DeploySpec::new("shop-api", "prod", "1.4.2")
            .commit("3f2a9c1")
            .commit_time(from_unix_ms(1_699_999_000_000)),
    );
    let id = deploy.id().to_owned();
    let mut step = deploy.step("build");
    clock.advance(Duration::from_secs(5));
    step.output_tail("line 1\nline 2\n");
    step.succeed();
    deploy.step("migrate").fail("lock timeout");
    clock.advance(Duration::from_secs(1));
    deploy.fail("migrate failed");
    assert!(tracker.dispatcher().flush(Duration::from_secs(30)));
    assert_eq!(tracker.dispatcher().stats().failures, 0);
    drop(tracker); // closes the hook thread and with it the connection

    let history = History::open(&path).unwrap();
    let expected = Deployment::from_events(collected.lock().unwrap().iter()).unwrap();
    let stored = history.get(&id).unwrap().unwrap();
    assert_eq!(stored, expected);
    assert_eq!(
        stored.steps[0].output_tail.as_deref(),
        Some("line 1\nline 2\n")
    );
    assert_eq!(history.events(&id).unwrap(), *collected.lock().unwrap());
    assert_eq!(history.schema_version().unwrap(), 2);
}

fn dref(id: &str, project: &str, env: &str, start: i64) -> DeploymentRef {
    DeploymentRef {
        id: id.into(),
        project: project.into(),
        environment: env.into(),
        version: format!("v-{id}"),
        started_at: from_unix_ms(start),
    }
}

fn started(d: &DeploymentRef, commit: Option<i64>) -> Event {
    Event::new(
        d.clone(),
        0,
        d.started_at,
        EventKind::Started {
            commit: commit.map(|_| "abc".to_owned()),
            commit_time: commit.map(from_unix_ms),
            actor: None,
            trigger: None,
        },
    )
}

/// One deployment: started at `start`, and if `end` is given, finished with `status`.
fn deploy(
    h: &mut History,
    id: &str,
    env: &str,
    start: i64,
    end: Option<(i64, Status)>,
    commit: Option<i64>,
) {
    let d = dref(id, "shop", env, start);
    let mut events = vec![started(&d, commit)];
    if let Some((end, status)) = end {
        let kind = match status {
            Status::Succeeded => EventKind::Succeeded,
            Status::Failed => EventKind::Failed {
                reason: "boom".into(),
            },
            Status::RolledBack => EventKind::RolledBack {
                to_version: "old".into(),
                reason: None,
            },
            Status::Cancelled => EventKind::Cancelled { reason: None },
            Status::InProgress => unreachable!(),
        };
        events.push(Event::new(d, 1, from_unix_ms(end), kind));
    }
    assert_eq!(h.insert_batch(&events).unwrap(), events.len());
}

/// The crafted history: see the comments for the known answers.
fn crafted() -> (tempfile::TempDir, History) {
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::open(dir.path().join("d.db")).unwrap();
    use Status::*;
    let b = DAY; // the window is [DAY, 3 * DAY)
    // Before the window: not counted.
    deploy(
        &mut h,
        "d0",
        "prod",
        b - 2 * H,
        Some((b - 2 * H + 60 * S, Succeeded)),
        None,
    );
    // Lead time 3660 s.
    deploy(
        &mut h,
        "d1",
        "prod",
        b + H,
        Some((b + H + 60 * S, Succeeded)),
        Some(b),
    );
    // Incident 1 begins (failed), continues (rolled back).
    deploy(
        &mut h,
        "d2",
        "prod",
        b + 2 * H,
        Some((b + 2 * H + 120 * S, Failed)),
        None,
    );
    deploy(
        &mut h,
        "d3",
        "prod",
        b + 3 * H,
        Some((b + 3 * H + 30 * S, RolledBack)),
        None,
    );
    // Restores incident 1 after 7170 s; lead time 3690 s.
    deploy(
        &mut h,
        "d4",
        "prod",
        b + 4 * H,
        Some((b + 4 * H + 90 * S, Succeeded)),
        Some(b + 3 * H),
    );
    deploy(
        &mut h,
        "d5",
        "prod",
        b + 5 * H,
        Some((b + 5 * H + 10 * S, Cancelled)),
        None,
    );
    deploy(
        &mut h,
        "d6",
        "prod",
        b + 6 * H,
        Some((b + 6 * H + 300 * S, Succeeded)),
        None,
    );
    // Incident 2, restored after 3655 s by d8 (lead time 1900 s).
    deploy(
        &mut h,
        "d7",
        "prod",
        b + 7 * H,
        Some((b + 7 * H + 45 * S, Failed)),
        None,
    );
    deploy(
        &mut h,
        "d8",
        "prod",
        b + 8 * H,
        Some((b + 8 * H + 100 * S, Succeeded)),
        Some(b + 7 * H + 30 * 60 * S),
    );
    deploy(&mut h, "d9", "prod", b + 9 * H, None, None);
    // Another environment: not counted.
    deploy(
        &mut h,
        "d10",
        "staging",
        b + 10 * H,
        Some((b + 10 * H + S, Failed)),
        None,
    );
    // Incident 3, not restored.
    deploy(
        &mut h,
        "d11",
        "prod",
        b + 47 * H,
        Some((b + 47 * H + 20 * S, Failed)),
        None,
    );
    (dir, h)
}

#[test]
fn stats_and_dora_figures_on_a_crafted_history() {
    let (_dir, h) = crafted();
    let s = h
        .stats("shop", "prod", from_unix_ms(DAY), from_unix_ms(3 * DAY))
        .unwrap();
    assert_eq!(
        (
            s.succeeded,
            s.failed,
            s.rolled_back,
            s.cancelled,
            s.in_progress
        ),
        (4, 3, 1, 1, 1)
    );
    assert_eq!(s.success_rate, Some(4.0 / 9.0));
    // Successful durations 60, 90, 100, 300 s: nearest rank.
    assert_eq!(s.duration_p50, Some(Duration::from_secs(90)));
    assert_eq!(s.duration_p95, Some(Duration::from_secs(300)));
    assert_eq!(s.dora.deployments_per_day, 2.0);
    // Lead times 1900, 3660, 3690 s.
    assert_eq!(s.dora.lead_time_p50, Some(Duration::from_secs(3660)));
    // (3 failed + 1 rolled back) / 8.
    assert_eq!(s.dora.change_failure_rate, Some(0.5));
    // Restores 3655 and 7170 s.
    assert_eq!(s.dora.time_to_restore_p50, Some(Duration::from_secs(3655)));
    assert_eq!(s.dora.unrestored_incidents, 1);
}

#[test]
fn stats_of_an_empty_window_have_no_rates() {
    let (_dir, h) = crafted();
    let s = h
        .stats(
            "shop",
            "prod",
            from_unix_ms(10 * DAY),
            from_unix_ms(11 * DAY),
        )
        .unwrap();
    assert_eq!(s.success_rate, None);
    assert_eq!(s.duration_p50, None);
    assert_eq!(s.dora.change_failure_rate, None);
    assert_eq!(s.dora.deployments_per_day, 0.0);
    assert_eq!(s.in_progress, 1, "d9 is still running");
}

#[test]
fn list_filters_and_last_deployment() {
    let (_dir, h) = crafted();
    let ids = |f: Filter| {
        h.list(&f)
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(Filter::default()
            .project("shop")
            .environment("prod")
            .status(Status::Failed)),
        ["d11", "d7", "d2"]
    );
    assert_eq!(ids(Filter::default().limit(2)), ["d11", "d10"]);
    assert_eq!(
        ids(Filter::default()
            .since(from_unix_ms(DAY + 4 * H))
            .until(from_unix_ms(DAY + 6 * H))),
        ["d5", "d4"]
    );
    assert!(ids(Filter::default().project("nope")).is_empty());
    // Tags (Grafana's): every one matches the project, environment or status, before the
    // limit; with `any`, one of them.
    let tags = |t: &[&str]| t.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        ids(Filter::default()
            .tags(tags(&["prod", "failed"]), false)
            .limit(2)),
        ["d11", "d7"]
    );
    assert_eq!(
        ids(Filter::default()
            .tags(tags(&["staging", "nope"]), true)
            .limit(1)),
        ["d10"]
    );
    assert!(ids(Filter::default().tags(tags(&["prod", "nope"]), false)).is_empty());
    let last = h.last_deployment("shop", Some("prod")).unwrap().unwrap();
    assert_eq!((last.id.as_str(), last.status), ("d11", Status::Failed));
    assert_eq!(last.error.as_deref(), Some("boom"));
    let last = h.last_deployment("shop", Some("staging")).unwrap().unwrap();
    assert_eq!(last.id, "d10");
    assert_eq!(h.last_deployment("shop", None).unwrap().unwrap().id, "d11");
    assert!(h.last_deployment("other", None).unwrap().is_none());
}

#[test]
fn events_are_idempotent_and_order_tolerant() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::open(dir.path().join("d.db")).unwrap();
    let d = dref("x", "shop", "prod", 0);
    let events = vec![
        started(&d, None),
        Event::new(d.clone(), 1, from_unix_ms(5_000), EventKind::Succeeded),
        Event::new(
            d.clone(),
            2,
            from_unix_ms(6_000),
            EventKind::Failed {
                reason: "late".into(),
            },
        ),
    ];
    // Terminal first, then start, then everything again.
    assert!(h.insert(&events[1]).unwrap());
    assert!(h.insert(&events[0]).unwrap());
    assert!(h.insert(&events[2]).unwrap());
    assert_eq!(h.insert_batch(&events).unwrap(), 0);
    let stored = h.get("x").unwrap().unwrap();
    assert_eq!(
        stored.status,
        Status::Succeeded,
        "the first terminal event wins"
    );
    assert_eq!(stored.duration(), Some(Duration::from_secs(5)));
    assert_eq!(stored, Deployment::from_events(&events).unwrap());
    assert_eq!(h.events("x").unwrap().len(), 3);
}

#[test]
fn a_file_from_a_newer_build_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.db");
    drop(History::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO schema_migrations (version, applied_ms) VALUES (99, 0)",
        [],
    )
    .unwrap();
    drop(conn);
    let err = History::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::NewerSchema { found: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("d.db"), "{err}");
}

#[test]
fn opening_a_non_database_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.db");
    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
    let err = History::open(&path).unwrap_err().to_string();
    assert!(err.contains("garbage.db"), "{err}");
}

const CHILD_DB_ENV: &str = "AXI_DEPLOY_TEST_KILL9_DB";
const COMMITTED: &str = "committed ";

/// In the child process (the same test re-run with `CHILD_DB_ENV` set): write events until
/// killed, printing each id after its insert returned.
fn child_writer(path: std::ffi::OsString) {
    use std::io::Write;
    let mut h = History::open(path).unwrap();
    let mut out = std::io::stdout().lock();
    for i in 0u64.. {
        let d = dref(&format!("k{i}"), "shop", "prod", i as i64);
        let mut e = started(&d, None);
        if i % 2 == 1 {
            e = Event::new(d, 1, from_unix_ms(i as i64 + 1), EventKind::Succeeded);
        }
        h.insert(&e).unwrap();
        writeln!(out, "{COMMITTED}{}", e.id).unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn kill_9_loses_no_committed_event() {
    use std::os::unix::process::ExitStatusExt;
    if let Some(path) = std::env::var_os(CHILD_DB_ENV) {
        return child_writer(path);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flood.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "kill_9_loses_no_committed_event",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut committed = Vec::new();
    while committed.len() < 500 {
        let line = lines.next().expect("child ended early").unwrap();
        if let Some(id) = line.strip_prefix(COMMITTED) {
            committed.push(id.to_owned());
        }
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9));
    // Ids printed before the kill landed (a cut last line is not an id).
    for line in lines.map_while(Result::ok) {
        if let Some(id) = line.strip_prefix(COMMITTED)
            && id.len() == 32
        {
            committed.push(id.to_owned());
        }
    }

    let h = History::open(&path).unwrap();
    let missing: Vec<_> = committed
        .iter()
        .filter(|id| !h.contains_event(id).unwrap())
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} lost: {missing:?}",
        missing.len(),
        committed.len()
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

#[test]
fn prune_deletes_what_ended_before_the_cutoff_with_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::open(dir.path().join("d.db")).unwrap();
    // Ended before the cutoff; started before but ended after it; never ended (abandoned)
    // long before; started after.
    deploy(
        &mut h,
        "old",
        "prod",
        DAY,
        Some((DAY + H, Status::Succeeded)),
        None,
    );
    deploy(
        &mut h,
        "across",
        "prod",
        2 * DAY - H,
        Some((2 * DAY + H, Status::Failed)),
        None,
    );
    deploy(&mut h, "stuck", "prod", DAY, None, None);
    deploy(&mut h, "new", "prod", 3 * DAY, None, None);
    assert_eq!(h.prune(from_unix_ms(2 * DAY)).unwrap(), 2);
    let left: Vec<String> = h
        .list(&Filter::default())
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(left, ["new", "across"]);
    assert!(h.events("old").unwrap().is_empty());
    assert!(h.events("stuck").unwrap().is_empty());
    assert_eq!(h.events("across").unwrap().len(), 2);
    assert_eq!(h.prune(from_unix_ms(2 * DAY)).unwrap(), 0);
}

#[test]
fn overlapping_ranges_take_unfinished_deployments_as_running_for_at_most_a_day() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::open(dir.path().join("d.db")).unwrap();
    let from = 10 * DAY;
    deploy(&mut h, "abandoned", "prod", from - 2 * DAY, None, None);
    deploy(&mut h, "running", "prod", from - H, None, None);
    deploy(
        &mut h,
        "across",
        "prod",
        from - H,
        Some((from + H, Status::Succeeded)),
        None,
    );
    deploy(
        &mut h,
        "before",
        "prod",
        from - 2 * H,
        Some((from - H, Status::Succeeded)),
        None,
    );
    let ids: Vec<String> = h
        .list(&Filter::default().overlapping(
            from_unix_ms(from),
            from_unix_ms(from + DAY),
            from_unix_ms(from + DAY),
        ))
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["running", "across"]);
}

/// A deployment keeps its first `MAX_STEPS` steps (a script printing step markers in a loop
/// cannot make every read of it unbounded); the later steps' events are still stored. Lists
/// can leave steps out.
#[test]
fn a_deployment_keeps_at_most_max_steps_steps_and_lists_can_leave_them_out() {
    use axi_obs_deploy::event::StepRef;
    use axi_obs_deploy::store::MAX_STEPS;
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::open(dir.path().join("d.db")).unwrap();
    let d = dref("loop", "shop", "prod", DAY);
    let mut events = vec![started(&d, None)];
    for i in 0..=MAX_STEPS {
        events.push(Event::new(
            d.clone(),
            i + 1,
            from_unix_ms(DAY + i64::from(i)),
            EventKind::StepStarted {
                step: StepRef {
                    index: i,
                    name: format!("step {i}"),
                },
            },
        ));
    }
    assert_eq!(h.insert_batch(&events).unwrap(), events.len());
    let got = h.get("loop").unwrap().unwrap();
    assert_eq!(got.steps.len(), MAX_STEPS as usize);
    assert_eq!(got.steps.last().unwrap().index, MAX_STEPS - 1);
    assert_eq!(h.events("loop").unwrap().len(), events.len());
    let listed = h.list(&Filter::default().project("shop")).unwrap();
    assert_eq!(listed[0].steps.len(), MAX_STEPS as usize);
    let bare = h
        .list(&Filter::default().project("shop").without_steps())
        .unwrap();
    assert_eq!((bare[0].id.as_str(), bare[0].steps.len()), ("loop", 0));
}

/// An incident that began before the window (its first failure before `since`) is not one of
/// the window's: its restore inside the window is not counted, nor timed from a later failure.
#[test]
fn an_incident_that_began_before_the_window_is_not_timed_from_its_later_failure() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = History::open(dir.path().join("d.db")).unwrap();
    let since = 10 * DAY;
    deploy(
        &mut h,
        "ok",
        "prod",
        since - 3 * H,
        Some((since - 3 * H + S, Status::Succeeded)),
        None,
    );
    deploy(
        &mut h,
        "f1",
        "prod",
        since - 2 * H,
        Some((since - H, Status::Failed)),
        None,
    );
    deploy(
        &mut h,
        "c",
        "prod",
        since - H,
        Some((since - H / 2, Status::Cancelled)),
        None,
    );
    deploy(
        &mut h,
        "f2",
        "prod",
        since,
        Some((since + H, Status::Failed)),
        None,
    );
    deploy(
        &mut h,
        "fix",
        "prod",
        since + 2 * H,
        Some((since + 3 * H, Status::Succeeded)),
        None,
    );
    let s = h
        .stats(
            "shop",
            "prod",
            from_unix_ms(since),
            from_unix_ms(since + DAY),
        )
        .unwrap();
    assert_eq!((s.succeeded, s.failed, s.cancelled), (1, 1, 0));
    assert_eq!(s.dora.time_to_restore_p50, None, "{s:?}");
    assert_eq!(s.dora.unrestored_incidents, 0);
    // One that begins in the window is timed from its first failure.
    deploy(
        &mut h,
        "f3",
        "prod",
        since + 4 * H,
        Some((since + 5 * H, Status::Failed)),
        None,
    );
    deploy(
        &mut h,
        "fix2",
        "prod",
        since + 6 * H,
        Some((since + 7 * H, Status::Succeeded)),
        None,
    );
    let s = h
        .stats(
            "shop",
            "prod",
            from_unix_ms(since),
            from_unix_ms(since + DAY),
        )
        .unwrap();
    assert_eq!(
        s.dora.time_to_restore_p50,
        Some(Duration::from_secs(2 * 3600))
    );
}

/// An event the database refuses for being busy (another process holds its write lock past
/// the 5 s busy timeout: `axi-deploy prune`, a local-mode CLI) is kept and stored before the
/// next event, or when the hook is dropped: not lost.
#[test]
fn events_refused_while_the_database_is_busy_are_stored_later() {
    use axi_obs_deploy::hook::Hook as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deploys.db");
    let mut hook = HistoryHook::new(History::open(&path).unwrap());
    let d = dref("busy-1", "shop-api", "prod", 1_000);
    let end = Event::new(d.clone(), 1, from_unix_ms(61_000), EventKind::Succeeded);

    let locker = rusqlite::Connection::open(&path).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    hook.on_event(&started(&d, None)).unwrap();
    locker.execute_batch("COMMIT").unwrap();
    assert!(
        History::open(&path)
            .unwrap()
            .get("busy-1")
            .unwrap()
            .is_none(),
        "not stored while busy"
    );
    hook.on_event(&end).unwrap();
    let stored = History::open(&path)
        .unwrap()
        .get("busy-1")
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, Status::Succeeded);

    // Kept while busy, then the hook is dropped (the dispatcher shuts down): stored then.
    let d2 = dref("busy-2", "shop-api", "prod", 100_000);
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    hook.on_event(&started(&d2, None)).unwrap();
    locker.execute_batch("COMMIT").unwrap();
    drop(hook);
    let stored = History::open(&path)
        .unwrap()
        .get("busy-2")
        .unwrap()
        .unwrap();
    assert_eq!(stored.status, Status::InProgress);
}
