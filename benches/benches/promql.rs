//! Instant evaluation of typical alert expressions over 10,000 counter series × 1 h at 15 s
//! (plus 1,200 histogram bucket series and 2 × 1,000 gauges for a join), and a round of 100
//! rules; side by side in the same run with Prometheus 3 answering the same queries over the
//! same data (imported with `promtool tsdb create-blocks-from openmetrics`), when the
//! `prometheus` and `promtool` binaries are found in `$AXI_PEERS_BIN` or `PATH`.
//!
//! The Prometheus rows time a whole HTTP round trip on loopback; Prometheus's own
//! `stats.timings.evalTotalTime` for each query is printed next to them.

#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::hint::black_box;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axi_obs_alert::promql::{Engine, Expr, MemStorage, Value, parse};
use axi_obs_benches::{KillOnDrop, http_get as get, peer};
use criterion::{Criterion, criterion_group, criterion_main};

#[path = "common/promql_data.rs"]
mod promql_data;
use promql_data::{EVAL_MS, SAMPLES, STEP_MS, SeriesGen, T0, dataset, series_text};

const QUERIES: [(&str, &str); 3] = [
    (
        "rate_sum_by",
        "sum by (job) (rate(http_requests_total[5m]))",
    ),
    (
        "histogram_quantile",
        "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    ),
    (
        "one_to_one_join",
        "node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes < 0.2",
    ),
];

/// 100 rules shaped like the usual alert files: per-job error ratios, latency quantiles,
/// memory, plus a few wide aggregations.
fn rule_round() -> Vec<String> {
    let mut rules = Vec::new();
    for job in 0..10 {
        rules.push(format!(
            "sum(rate(http_requests_total{{job=\"job-{job}\",status=~\"5..\"}}[5m])) / sum(rate(http_requests_total{{job=\"job-{job}\"}}[5m])) > 0.05"
        ));
        rules.push(format!(
            "sum by (instance) (rate(http_requests_total{{job=\"job-{job}\"}}[5m])) > 100"
        ));
        rules.push(format!(
            "increase(http_requests_total{{job=\"job-{job}\",status=\"404\"}}[10m]) > 1000"
        ));
        rules.push(format!(
            "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket{{instance=\"10.1.0.{job}:8080\"}}[5m]))) > 1"
        ));
        rules.push(format!(
            "node_memory_MemAvailable_bytes{{instance=~\"10.2.{}.*\"}} / node_memory_MemTotal_bytes < 0.1",
            job % 4
        ));
        rules.push(format!("absent(http_requests_total{{job=\"job-{job}\"}})"));
        rules.push(format!(
            "max_over_time(node_memory_MemAvailable_bytes{{instance=\"10.2.0.{job}:9100\"}}[15m]) < 1e9"
        ));
        rules.push(format!(
            "count by (status) (http_requests_total{{job=\"job-{job}\",method=\"POST\"}}) > 50"
        ));
        rules.push(format!(
            "topk(3, rate(http_requests_total{{job=\"job-{job}\",status=\"500\"}}[5m]))"
        ));
        rules.push(format!(
            "avg_over_time(node_memory_MemAvailable_bytes{{instance=\"10.2.1.{job}:9100\"}}[30m]) / 1e9 < 1"
        ));
    }
    rules
}

struct Prometheus {
    _child: KillOnDrop,
    port: u16,
    _dir: tempfile::TempDir,
}

fn start_prometheus(data: &[SeriesGen]) -> Option<Prometheus> {
    let (prometheus, promtool) = (peer("prometheus")?, peer("promtool")?);
    let dir = tempfile::tempdir().unwrap();
    let om = dir.path().join("data.om");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&om).unwrap());
        let mut by_name: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
        for (i, (l, _)) in data.iter().enumerate() {
            by_name.entry(l.name().unwrap()).or_default().push(i);
        }
        for (name, idx) in by_name {
            let kind = if name.ends_with("_total") || name.ends_with("_bucket") {
                "counter"
            } else {
                "gauge"
            };
            // OpenMetrics counters are named without `_total` in TYPE lines.
            let family = name.strip_suffix("_total").unwrap_or(name);
            if kind == "counter" && name.ends_with("_total") {
                writeln!(f, "# TYPE {family} counter").unwrap();
            } else {
                writeln!(f, "# TYPE {name} gauge").unwrap();
            }
            for i in idx {
                let (labels, value) = &data[i];
                let series = series_text(labels);
                for s in 0..SAMPLES {
                    let t = T0 + s * STEP_MS;
                    writeln!(f, "{series} {} {}.{:03}", value(s), t / 1000, t % 1000).unwrap();
                }
            }
        }
        writeln!(f, "# EOF").unwrap();
    }
    let tsdb = dir.path().join("tsdb");
    let status = Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&tsdb)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "promtool tsdb create-blocks-from failed");
    std::fs::remove_file(&om).unwrap();
    // The same samples as Prometheus stores them: XOR chunks in the blocks' chunk files.
    let mut chunk_bytes = 0u64;
    for block in std::fs::read_dir(&tsdb).unwrap().flatten() {
        if let Ok(files) = std::fs::read_dir(block.path().join("chunks")) {
            chunk_bytes += files
                .flatten()
                .map(|f| f.metadata().unwrap().len())
                .sum::<u64>();
        }
    }
    let samples = data.len() as u64 * SAMPLES as u64;
    println!(
        "prometheus blocks: {chunk_bytes} bytes of chunk files for {samples} samples = {:.2} bytes/sample",
        chunk_bytes as f64 / samples as f64
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(&cfg, "global: {}\n").unwrap();
    let child = Command::new(&prometheus)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", tsdb.display()))
        .arg("--storage.tsdb.retention.time=100y")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--query.max-samples=50000000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let p = Prometheus {
        _child: KillOnDrop(child),
        port,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if get(port, "/-/ready").is_some_and(|b| b.contains("Ready")) {
            return Some(p);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("prometheus did not get ready");
}

fn query_path(q: &str, stats: bool) -> String {
    let mut enc = String::new();
    for b in q.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    let t = EVAL_MS as f64 / 1000.0;
    let stats = if stats { "&stats=all" } else { "" };
    format!("/api/v1/query?query={enc}&time={t}{stats}")
}

fn promql(c: &mut Criterion) {
    let data = dataset();
    let mut store = MemStorage::new();
    for (labels, value) in &data {
        for s in 0..SAMPLES {
            store.add(labels, T0 + s * STEP_MS, value(s));
        }
    }
    let st = store.stats();
    println!(
        "store: {} series, {} samples, {} bytes of sample data = {:.2} bytes/sample",
        st.series,
        st.samples,
        st.sample_bytes,
        st.sample_bytes as f64 / st.samples as f64
    );
    let engine = Engine::default();
    let prom = start_prometheus(&data);
    if prom.is_none() {
        println!("prometheus/promtool not found: Prometheus rows skipped (set AXI_PEERS_BIN)");
    }

    let mut g = c.benchmark_group("promql");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    for (name, q) in QUERIES {
        let expr = parse(q).unwrap();
        let ours = engine.instant(&store, &expr, EVAL_MS).unwrap();
        let n = match &ours {
            Value::Vector(v) => v.len(),
            _ => 1,
        };
        g.bench_function(format!("{name}/axi-obs"), |b| {
            b.iter(|| black_box(engine.instant(&store, &expr, EVAL_MS).unwrap()))
        });
        if let Some(p) = &prom {
            let body = get(p.port, &query_path(q, true)).unwrap();
            let eval = json_field(&body, "evalTotalTime");
            let results = body.matches("\"metric\"").count();
            println!(
                "{name}: ours {n} series, Prometheus {results} series; Prometheus evalTotalTime {eval} s"
            );
            assert_eq!(n, results, "result size differs for {q}");
            let path = query_path(q, false);
            g.bench_function(format!("{name}/prometheus-http"), |b| {
                b.iter(|| black_box(get(p.port, &path).unwrap()))
            });
        }
    }
    let rules: Vec<Expr> = rule_round().iter().map(|r| parse(r).unwrap()).collect();
    g.bench_function("rule_round_100/axi-obs", |b| {
        b.iter(|| {
            for r in &rules {
                black_box(engine.instant(&store, r, EVAL_MS).unwrap());
            }
        })
    });
    if let Some(p) = &prom {
        let paths: Vec<String> = rule_round().iter().map(|r| query_path(r, false)).collect();
        let total: f64 = rule_round()
            .iter()
            .map(|r| {
                json_field(&get(p.port, &query_path(r, true)).unwrap(), "evalTotalTime")
                    .parse::<f64>()
                    .unwrap_or(0.0)
            })
            .sum();
        println!("rule_round_100: Prometheus evalTotalTime summed {total:.6} s");
        g.bench_function("rule_round_100/prometheus-http", |b| {
            b.iter(|| {
                for path in &paths {
                    black_box(get(p.port, path).unwrap());
                }
            })
        });
    }
    g.finish();
}

fn json_field(body: &str, field: &str) -> String {
    let key = format!("\"{field}\":");
    body.split_once(&key)
        .map(|(_, rest)| rest.split([',', '}']).next().unwrap_or("").to_owned())
        .unwrap_or_default()
}

criterion_group!(benches, promql);
criterion_main!(benches);
