//! The built-in alert router against a real Alertmanager 0.33, same routing tree (nested
//! routes, `continue`, an inhibition rule, a silence), same run:
//!
//! - `delivery/dispatch`: our [`Dispatcher`] in process: 10,000 firing alerts re-sent (as
//!   Prometheus re-sends every evaluation) through routing and grouping, then a flush of
//!   every group through inhibition, silences and the notification-log dedup.
//! - `delivery/ingest/*`: `POST /api/v2/alerts` in batches of 256 (the batch size
//!   Prometheus sends) over loopback HTTP, to `axi-alert alertmanager`'s server (run in this
//!   process on a runtime of its own, state file on) and to Alertmanager.
//! - `delivery/fire_to_webhook/*`: with `group_wait: 0`, the time from handing over a new
//!   firing alert to the webhook request arriving at a local receiver: ours in process
//!   (what `InProcessRules` does), ours over the HTTP API, and Alertmanager over its API.
//!
//! Alertmanager comes from `$AXI_PEERS_BIN` or `PATH` (`scripts/install-peers.sh`); without
//! it only our rows run.

#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axi_obs_alert::delivery::{
    AmAlert, Config, Dispatcher, DispatcherOptions, LabelSet, Matcher, Notifier, RetryPolicy,
    Runner, ServeOptions, SystemClock, rfc3339_millis, serve,
};
use axi_obs_benches::{KillOnDrop, free_port, peer};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::sync::mpsc;

/// The allocator the `axi-alert` binary runs with (its feature `mimalloc`), since the
/// ingest rows run that binary's server in this process.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ALERTS: usize = 10_000;
const BATCH: usize = 256;

/// The routing tree both sides run; `GROUP_WAIT` and `URL` are filled in.
const CONFIG: &str = r#"route:
  receiver: default
  group_by: [alertname, cluster]
  group_wait: GROUP_WAIT
  group_interval: 5m
  repeat_interval: 4h
  routes:
  - matchers: [team="db"]
    receiver: db
    routes:
    - matchers: [severity="critical"]
      receiver: db-pager
  - matchers: [team="web"]
    receiver: web
    continue: true
  - matchers: ['severity=~"critical|page"']
    receiver: pager
inhibit_rules:
- source_matchers: [severity="critical"]
  target_matchers: [severity="warning"]
  equal: [alertname, cluster]
receivers:
- name: default
  webhook_configs: [{url: "URL"}]
- name: db
  webhook_configs: [{url: "URL"}]
- name: db-pager
  webhook_configs: [{url: "URL"}]
- name: web
  webhook_configs: [{url: "URL"}]
- name: pager
  webhook_configs: [{url: "URL"}]
"#;

fn config_text(group_wait: &str, url: &str) -> String {
    CONFIG.replace("GROUP_WAIT", group_wait).replace("URL", url)
}

fn labels(i: usize) -> LabelSet {
    let teams = ["db", "web", "ops"];
    let severities = ["warning", "critical"];
    [
        ("alertname", format!("Alert{}", i % 50)),
        ("cluster", format!("c{}", i % 20)),
        ("team", teams[i % 3].to_string()),
        ("severity", severities[(i / 3) % 2].to_string()),
        ("instance", format!("host-{i}:9100")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn alert(i: usize, starts_at: i64, ends_at: i64) -> AmAlert {
    AmAlert {
        labels: labels(i),
        annotations: LabelSet::from([("summary".to_string(), format!("alert {i} fires"))]),
        starts_at,
        ends_at: Some(ends_at),
        generator_url: "http://prometheus:9090/graph?g0.expr=up".into(),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

struct Alertmanager {
    _child: KillOnDrop,
    port: u16,
}

fn start_alertmanager(config: &Path, dir: &Path) -> Option<Alertmanager> {
    let bin = peer("alertmanager")?;
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some(Alertmanager {
        _child: KillOnDrop(child),
        port,
    })
}

async fn wait_ready(http: &reqwest::Client, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http
        .get(format!("http://127.0.0.1:{port}/-/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "port {port} never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A webhook receiver reporting the first `commonLabels.alertname` of each request.
async fn receiver() -> (String, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let tx = tx.clone();
        async move {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let name = v["commonLabels"]["alertname"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let _ = tx.send(name);
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://127.0.0.1:{port}/"), rx)
}

/// JSON bodies of `POST /api/v2/alerts`: every alert once, in batches.
fn batches(ends_at: i64) -> Vec<String> {
    let starts = rfc3339_millis(ends_at - 3_600_000);
    let ends = rfc3339_millis(ends_at);
    (0..ALERTS)
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(|chunk| {
            let v: Vec<serde_json::Value> = chunk
                .iter()
                .map(|i| {
                    serde_json::json!({
                        "labels": labels(*i),
                        "annotations": {"summary": format!("alert {i} fires")},
                        "startsAt": starts,
                        "endsAt": ends,
                        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
                    })
                })
                .collect();
            serde_json::to_string(&v).unwrap()
        })
        .collect()
}

fn dispatch(c: &mut Criterion) {
    let cfg = Config::parse(
        &config_text("30s", "http://127.0.0.1:9/"),
        Path::new("bench.yml"),
    )
    .unwrap();
    let t0 = now_ms();
    let mut d = Dispatcher::new(&cfg, DispatcherOptions::default(), t0).unwrap();
    d.silences_mut()
        .create(
            Matcher::parse_list(r#"{cluster="c3"}"#).unwrap(),
            t0,
            t0 + 86_400_000,
            "bench",
            "maintenance",
            t0,
        )
        .unwrap();
    let far = t0 + 86_400_000;
    let alerts: Vec<AmAlert> = (0..ALERTS).map(|i| alert(i, t0, far)).collect();
    let mut now = t0;
    // First round: every group notified once, so later rounds take the dedup path.
    for a in &alerts {
        d.insert(a.clone(), now);
    }
    now += 30_000;
    for f in d.due(now) {
        let ok = vec![true; f.jobs.len()];
        d.complete(&f, &ok);
    }
    println!(
        "delivery/dispatch: {} groups, {} alerts held",
        d.group_count(),
        d.alert_count()
    );
    let mut g = c.benchmark_group("delivery");
    g.throughput(Throughput::Elements(ALERTS as u64));
    g.sample_size(20);
    g.bench_function("dispatch", |b| {
        b.iter(|| {
            now += 300_000;
            // Re-sent as Prometheus re-sends a firing alert: its end 4 minutes ahead, so
            // the alerts stay firing however many rounds criterion runs.
            for a in &alerts {
                let mut a = a.clone();
                a.ends_at = Some(now + 240_000);
                d.insert(a, now);
            }
            let flushes = d.due(now);
            for f in &flushes {
                let ok = vec![true; f.jobs.len()];
                d.complete(f, &ok);
            }
            flushes.len()
        });
    });
    g.finish();
}

fn http(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // Our server on a runtime of its own, as the `axi-alert alertmanager` process has.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let (url, mut arrivals) = rt.block_on(receiver());

    let ingest_cfg = dir.path().join("ingest.yml");
    std::fs::write(&ingest_cfg, config_text("30s", &url)).unwrap();
    let latency_cfg = dir.path().join("latency.yml");
    std::fs::write(&latency_cfg, config_text("0s", &url)).unwrap();

    let ours_port = free_port();
    let ours_latency_port = free_port();
    for (cfg, port, name) in [
        (&ingest_cfg, ours_port, "ours-ingest"),
        (&latency_cfg, ours_latency_port, "ours-latency"),
    ] {
        let opts = ServeOptions {
            config_file: cfg.clone(),
            listen: ([127, 0, 0, 1], port).into(),
            storage_path: dir.path().join(name),
            external_url: String::new(),
            retention: Duration::from_secs(3600),
        };
        server_rt.spawn(async move { serve(opts).await.unwrap() });
    }
    let am = start_alertmanager(&ingest_cfg, &dir.path().join("am-ingest"));
    let am_latency = start_alertmanager(&latency_cfg, &dir.path().join("am-latency"));
    if am.is_none() {
        println!("alertmanager not found in $AXI_PEERS_BIN or PATH: only our rows run");
    }
    rt.block_on(async {
        wait_ready(&http, ours_port).await;
        wait_ready(&http, ours_latency_port).await;
        for a in am.iter().chain(am_latency.iter()) {
            wait_ready(&http, a.port).await;
        }
    });
    let bodies = batches(now_ms() + 86_400_000);

    let mut g = c.benchmark_group("delivery/ingest");
    g.throughput(Throughput::Elements(BATCH as u64));
    let mut targets = vec![("ours", ours_port)];
    if let Some(a) = &am {
        targets.push(("alertmanager", a.port));
    }
    for (name, port) in targets {
        let url = format!("http://127.0.0.1:{port}/api/v2/alerts");
        let mut next = 0usize;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let body = bodies[next % bodies.len()].clone();
                        next += 1;
                        let r = http
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await
                            .unwrap();
                        assert!(r.status().is_success(), "{}", r.status());
                    }
                    start.elapsed()
                })
            });
        });
    }
    g.finish();
    // Drain what the ingest servers delivered (group_wait 30 s may have passed).
    while arrivals.try_recv().is_ok() {}

    // Fire to webhook: each iteration a new alert name, so a new group with group_wait 0.
    let mut g = c.benchmark_group("delivery/fire_to_webhook");
    // Every iteration makes a new group, and a router holds at most 10,000 groups
    // (`DEFAULT_MAX_GROUPS`): short runs keep each router well below that.
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1));
    let cfg = Config::parse(&config_text("0s", &url), Path::new("latency.yml")).unwrap();
    // Every iteration makes a group: no cap on groups for this router.
    let opts = DispatcherOptions {
        max_groups: usize::MAX,
        ..DispatcherOptions::default()
    };
    let d = Dispatcher::new(&cfg, opts, now_ms()).unwrap();
    let notifier = Notifier::new(
        axi_obs_alert::delivery::http_client().expect("the delivery HTTP client"),
        RetryPolicy::default(),
    );
    let (runner, _task) = {
        let _guard = server_rt.enter();
        Runner::spawn(d, notifier, SystemClock, 1024)
    };
    let mut seq = 0usize;
    let mut one = |name: &str,
                   b: &mut criterion::Bencher<'_>,
                   send: &dyn Fn(
        String,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = ()> + Send>,
    >| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                seq += 1;
                let alertname = format!("Latency{name}{seq}");
                total += rt.block_on(async {
                    let start = Instant::now();
                    send(alertname.clone()).await;
                    loop {
                        let got = tokio::time::timeout(Duration::from_secs(30), arrivals.recv())
                            .await
                            .expect("webhook request within 30 s")
                            .expect("receiver");
                        if std::env::var_os("AXI_BENCH_DEBUG").is_some() {
                            println!("arrived {got} waiting for {alertname}");
                        }
                        if got == alertname {
                            return start.elapsed();
                        }
                    }
                });
            }
            total
        });
    };
    g.bench_function("ours-in-process", |b| {
        let runner = runner.clone();
        one("inproc", b, &move |name| {
            let runner = runner.clone();
            Box::pin(async move {
                let mut ls = labels(0);
                ls.insert("alertname".into(), name);
                let a = AmAlert {
                    labels: ls,
                    annotations: LabelSet::new(),
                    starts_at: now_ms(),
                    ends_at: None,
                    generator_url: String::new(),
                };
                assert!(runner.send(vec![a]).await);
            })
        });
    });
    let mut http_targets = vec![("ours-http", ours_latency_port)];
    if let Some(a) = &am_latency {
        http_targets.push(("alertmanager", a.port));
    }
    for (name, port) in http_targets {
        let url = format!("http://127.0.0.1:{port}/api/v2/alerts");
        let http = http.clone();
        g.bench_function(name, |b| {
            one(name, b, &|alertname| {
                let (http, url) = (http.clone(), url.clone());
                Box::pin(async move {
                    let mut ls = labels(0);
                    ls.insert("alertname".into(), alertname);
                    let body = serde_json::json!([{"labels": ls}]).to_string();
                    let r = http
                        .post(url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success());
                })
            });
        });
    }
    g.finish();
    rt.block_on(runner.shutdown());
}

criterion_group!(benches, dispatch, http);
criterion_main!(benches);
