//! Deploy events per second, in memory and persisted, each side by side with a peer.
//!
//! * `deploy_events_in_memory`: 100 deployments of 3 steps (800 events) per iteration through
//!   `Tracker` → `Dispatcher` with the metrics, log and live-stream hooks on, waiting until
//!   every hook has handled every event (`flush`). Logs go through axi-obs-core's installed
//!   layer stack (JSON to a sink), metrics into its recorder. Peers: the same events built the
//!   same way (random id, timestamps, one `DeploymentRef` clone each) pushed through a std
//!   `sync_channel` and a `tokio::sync::broadcast` channel to a thread that only drops them:
//!   the transport floor, without any hook. A row without hooks shows the tracker and
//!   dispatcher's own cost.
//! * `deploy_events_persisted`: 1,000 fresh events per iteration into the SQLite history with
//!   `History::insert_batch` (one transaction; WAL, `synchronous=NORMAL`; idempotent by event
//!   id and folded into the deployments and steps tables). Peer: a plain `rusqlite` insert
//!   loop of the same events (same JSON) into an events-only table, one transaction, same
//!   pragmas, no idempotency check and no folding. The first row writes into one history that
//!   grows through the run (its size is printed); a second row writes each batch into a new
//!   file, as small as most real histories. A last row stores one event per transaction
//!   (`History::insert`) to show what batching buys.

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use axi_obs_deploy::dispatch::Dispatcher;
use axi_obs_deploy::event::{DeploymentRef, Event, EventKind, StepRef, StepStatus, new_id};
use axi_obs_deploy::hook::{LogHook, MetricsHook};
use axi_obs_deploy::store::History;
use axi_obs_deploy::stream::LiveStream;
use axi_obs_deploy::{DeploySpec, Tracker};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use time::OffsetDateTime;
use tracing_subscriber::layer::SubscriberExt;

const DEPLOYS: usize = 100;
const STEPS: usize = 3;
/// Events per deployment: started, a start and a finish per step, succeeded.
const EVENTS_PER_DEPLOY: usize = 2 + 2 * STEPS;
const QUEUE: usize = 4096;
const FLUSH: Duration = Duration::from_secs(30);
const STEP_NAMES: [&str; STEPS] = ["build", "migrate", "restart"];

/// What the tracker does for one deployment, as plain events.
fn deployment_events(project: &str, mut send: impl FnMut(Event)) {
    let now = OffsetDateTime::now_utc;
    let dref = DeploymentRef {
        id: new_id(),
        project: project.to_owned(),
        environment: "prod".to_owned(),
        version: "1.4.2".to_owned(),
        started_at: now(),
    };
    let mut seq = 0;
    let mut emit = |kind: EventKind| {
        send(Event::new(dref.clone(), seq, now(), kind));
        seq += 1;
    };
    emit(EventKind::Started {
        commit: Some("3f2a9c1".to_owned()),
        commit_time: None,
        actor: None,
        trigger: None,
    });
    for (index, name) in STEP_NAMES.iter().enumerate() {
        let step = StepRef {
            index: index as u32,
            name: (*name).to_owned(),
        };
        let started_at = now();
        emit(EventKind::StepStarted { step: step.clone() });
        emit(EventKind::StepFinished {
            step,
            started_at,
            status: StepStatus::Succeeded,
            output_tail: None,
            error: None,
        });
    }
    emit(EventKind::Succeeded);
}

fn run_tracker(tracker: &Tracker) {
    for i in 0..DEPLOYS {
        let deploy = tracker.start_with(
            DeploySpec::new(
                if i % 2 == 0 { "shop-api" } else { "docs" },
                "prod",
                "1.4.2",
            )
            .commit("3f2a9c1"),
        );
        for name in STEP_NAMES {
            deploy.step(name).succeed();
        }
        deploy.succeed();
    }
    assert!(tracker.dispatcher().flush(FLUSH));
}

fn in_memory(c: &mut Criterion) {
    let mut g = c.benchmark_group("deploy_events_in_memory");
    g.throughput(Throughput::Elements((DEPLOYS * EVENTS_PER_DEPLOY) as u64));

    // axi-obs-core's stack, built (not installed): JSON logs to a sink, the recorder.
    let parts = axi_obs_core::Telemetry::builder()
        .env(axi_obs_core::Env::empty())
        .service_name("bench")
        .log_format(axi_obs_core::LogFormat::Json)
        .log_writer(std::io::sink())
        .build()
        .unwrap();
    let recorder = Arc::new(parts.recorder);
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(parts.layer));
    let _guard = parts.guard;

    let hooked = Dispatcher::builder()
        .capacity(NonZeroUsize::new(QUEUE).unwrap())
        .metrics_recorder(recorder.clone())
        .tracing_dispatch(dispatch.clone())
        .hook(MetricsHook::new())
        .hook(LogHook::new())
        .hook(LiveStream::new())
        .build()
        .unwrap();
    let tracker = Tracker::new(hooked);
    g.bench_function(
        "axi Tracker + Dispatcher: metrics, log, stream hooks",
        |b| b.iter(|| run_tracker(&tracker)),
    );
    let stats = tracker.dispatcher().stats();
    assert_eq!(
        stats.dropped, 0,
        "queue overflowed: the figure would be wrong"
    );
    assert_eq!(stats.failures, 0);
    // (Skipped by a name filter, nothing ran.)
    if stats.accepted > 0 {
        assert!(recorder.handle().render().contains("deploys_total"));
    }

    let bare = Tracker::new(
        Dispatcher::builder()
            .capacity(NonZeroUsize::new(QUEUE).unwrap())
            .build()
            .unwrap(),
    );
    g.bench_function("axi Tracker + Dispatcher: no hooks", |b| {
        b.iter(|| run_tracker(&bare))
    });
    assert_eq!(bare.dispatcher().stats().dropped, 0);

    // Peer: std::sync::mpsc, a consumer thread that drops the events.
    let (tx, rx) = mpsc::sync_channel::<Option<Event>>(QUEUE);
    let (ack_tx, ack_rx) = mpsc::channel::<()>();
    let consumer = std::thread::spawn(move || {
        while let Ok(item) = rx.recv() {
            match item {
                Some(e) => drop(black_box(e)),
                None => ack_tx.send(()).unwrap(),
            }
        }
    });
    g.bench_function("std mpsc sync_channel, same events, no hooks", |b| {
        b.iter(|| {
            for i in 0..DEPLOYS {
                let project = if i % 2 == 0 { "shop-api" } else { "docs" };
                deployment_events(project, |e| tx.send(Some(e)).unwrap());
            }
            tx.send(None).unwrap();
            ack_rx.recv_timeout(FLUSH).unwrap();
        })
    });
    drop(tx);
    consumer.join().unwrap();

    // Peer: tokio::sync::broadcast (what LiveStream fans out with), one receiving thread.
    let (btx, mut brx) = tokio::sync::broadcast::channel::<Option<Event>>(QUEUE);
    let (ack_tx, ack_rx) = mpsc::channel::<()>();
    let consumer = std::thread::spawn(move || {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match brx.blocking_recv() {
                Ok(Some(e)) => drop(black_box(e)),
                Ok(None) => ack_tx.send(()).unwrap(),
                Err(RecvError::Lagged(n)) => panic!("broadcast receiver lagged by {n}"),
                Err(RecvError::Closed) => break,
            }
        }
    });
    g.bench_function("tokio broadcast, same events, no hooks", |b| {
        b.iter(|| {
            for i in 0..DEPLOYS {
                let project = if i % 2 == 0 { "shop-api" } else { "docs" };
                // At most QUEUE - 1 events in flight per iteration (800): never lags.
                deployment_events(project, |e| {
                    btx.send(Some(e)).unwrap();
                });
            }
            btx.send(None).unwrap();
            ack_rx.recv_timeout(FLUSH).unwrap();
        })
    });
    drop(btx);
    consumer.join().unwrap();
    g.finish();
}

const BATCH: usize = 1_000;

fn fresh_events(n: usize) -> Vec<Event> {
    let mut events = Vec::with_capacity(n);
    while events.len() < n {
        deployment_events("shop-api", |e| events.push(e));
    }
    events.truncate(n);
    events
}

fn plain_sqlite(path: &std::path::Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.execute_batch(
        "CREATE TABLE events (id TEXT NOT NULL, deploy_id TEXT NOT NULL, seq INTEGER NOT NULL,
            at_ms INTEGER NOT NULL, type TEXT NOT NULL, json TEXT NOT NULL)",
    )
    .unwrap();
    conn
}

fn unix_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn persisted(c: &mut Criterion) {
    let mut g = c.benchmark_group("deploy_events_persisted");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(8));
    let dir = tempfile::tempdir().unwrap();

    g.throughput(Throughput::Elements(BATCH as u64));
    let mut history = History::open(dir.path().join("history.db")).unwrap();
    g.bench_function(
        "axi History::insert_batch (1000 events, one transaction)",
        |b| {
            b.iter_batched(
                || fresh_events(BATCH),
                |events| assert_eq!(history.insert_batch(&events).unwrap(), BATCH),
                BatchSize::PerIteration,
            )
        },
    );

    let history_db = history.path().to_path_buf();
    let count: i64 = rusqlite::Connection::open(&history_db)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap();
    let bytes = std::fs::metadata(&history_db).unwrap().len();
    eprintln!("history after the run: {count} events, {} MiB", bytes >> 20);

    // The same batch into a new file each time: a small history, as most real ones are.
    let mut n = 0;
    g.bench_function(
        "axi History::insert_batch, new file each time (1000 events)",
        |b| {
            b.iter_batched(
                || {
                    n += 1;
                    let fresh = History::open(dir.path().join(format!("fresh-{n}.db"))).unwrap();
                    (fresh, fresh_events(BATCH))
                },
                |(mut fresh, events)| {
                    assert_eq!(fresh.insert_batch(&events).unwrap(), BATCH);
                    fresh // dropped (closed) outside the timing
                },
                BatchSize::PerIteration,
            )
        },
    );

    let mut conn = plain_sqlite(&dir.path().join("plain.db"));
    g.bench_function(
        "rusqlite plain INSERT loop (1000 events, one transaction)",
        |b| {
            b.iter_batched(
                || fresh_events(BATCH),
                |events| {
                    let tx = conn.transaction().unwrap();
                    {
                        let mut insert = tx
                            .prepare_cached(
                                "INSERT INTO events (id, deploy_id, seq, at_ms, type, json)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                            )
                            .unwrap();
                        for e in &events {
                            insert
                                .execute(rusqlite::params![
                                    e.id,
                                    e.deployment.id,
                                    e.seq,
                                    unix_ms(e.at),
                                    e.kind.type_name(),
                                    e.to_json()
                                ])
                                .unwrap();
                        }
                    }
                    tx.commit().unwrap();
                },
                BatchSize::PerIteration,
            )
        },
    );

    const SINGLE: usize = 100;
    g.throughput(Throughput::Elements(SINGLE as u64));
    g.bench_function(
        "axi History::insert (100 events, one transaction each)",
        |b| {
            b.iter_batched(
                || fresh_events(SINGLE),
                |events| {
                    for e in &events {
                        assert!(history.insert(e).unwrap());
                    }
                },
                BatchSize::PerIteration,
            )
        },
    );
    g.finish();
}

criterion_group!(benches, in_memory, persisted);
criterion_main!(benches);
