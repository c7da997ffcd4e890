//! Memory per stored sample: axi-obs's `MemStorage` beside Prometheus's head block, over the
//! PromQL benches' data set (13,200 series × 240 samples at 15 s).
//!
//! Not criterion: it measures bytes, not time. Ours: the store's own count of sample bytes
//! (compressed chunks plus the uncompressed tail) and the process's resident-set growth while
//! the store is filled (sample data, label sets, index). Prometheus: the samples reach its head
//! the way they do in production, by scraping: a local target serves the data set one sample
//! per series per scrape (timestamps in the exposition, `honor_labels`), 240 scrapes; then the
//! growth of its Go heap in use (after a garbage collection) and of its resident set, against a
//! baseline taken the same way while the target answered empty pages. Its chunk bytes alone are
//! not read from the head: `prometheus_tsdb_head_chunks_storage_size_bytes` grows in steps of
//! the chunk writer's buffer, and how many samples the cut chunks hold depends on where the
//! timestamps fall; the `promql` bench gives its XOR encoding from the blocks instead.
//!
//! `cargo bench -p axi-obs-benches --bench promql_memory` (Prometheus from `$AXI_PEERS_BIN` or
//! `PATH`; without it only our figures are printed).

#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axi_obs_alert::promql::MemStorage;
use axi_obs_benches::{free_port, http_get as get, peer};

#[path = "common/promql_data.rs"]
#[allow(dead_code)]
mod promql_data;
use promql_data::{SAMPLES, STEP_MS, SeriesGen, T0, dataset, series_text};

/// Current resident set of this process, bytes.
fn own_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that is not ours means another bench was asked for.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"promql_memory".contains(a.as_str()))
    {
        return;
    }
    let data = dataset();
    let samples = data.len() as u64 * SAMPLES as u64;

    let before = own_rss();
    let mut store = MemStorage::new();
    for (labels, value) in &data {
        for s in 0..SAMPLES {
            store.add(labels, T0 + s * STEP_MS, value(s));
        }
    }
    let grown = own_rss().saturating_sub(before);
    let st = store.stats();
    println!(
        "axi-obs MemStorage: {} series, {} samples; sample data {} bytes = {:.2} bytes/sample; \
         process RSS grew {:.1} MiB = {:.2} bytes/sample (labels and index included)",
        st.series,
        st.samples,
        st.sample_bytes,
        st.sample_bytes as f64 / st.samples as f64,
        grown as f64 / 1048576.0,
        grown as f64 / st.samples as f64,
    );
    drop(store);

    let Some(prometheus) = peer("prometheus") else {
        println!("prometheus not found: its head figures skipped (set AXI_PEERS_BIN)");
        return;
    };
    prometheus_head(&prometheus, &data, samples);
}

/// The step the target serves next: -1 = empty pages (baseline), 0..SAMPLES = that sample of
/// every series; it stays on the last one (the same timestamps again: Prometheus appends
/// nothing, and no series goes stale).
struct Target {
    step: AtomicI64,
    served: AtomicI64,
}

fn prometheus_head(prometheus: &std::path::Path, data: &[SeriesGen], samples: u64) {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target_port = listener.local_addr().unwrap().port();
    let target = Arc::new(Target {
        step: AtomicI64::new(-1),
        served: AtomicI64::new(0),
    });
    // Timestamps end just after now: the head takes samples within an hour of its newest one,
    // and Prometheus's own `up` series are written at the scrape time.
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let base = now_ms - 59 * 60 * 1000;
    let texts: Vec<String> = data.iter().map(|(labels, _)| series_text(labels)).collect();
    let pages: Arc<Vec<String>> = Arc::new(
        (0..SAMPLES)
            .map(|s| exposition(data, &texts, s, base + s * STEP_MS))
            .collect(),
    );
    {
        let target = target.clone();
        let pages = pages.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                serve(conn, &target, &pages);
            }
        });
    }
    let port = free_port();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global: {{scrape_interval: 250ms, scrape_timeout: 250ms}}\n\
             scrape_configs:\n  - job_name: data\n    honor_labels: true\n    \
             static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(prometheus)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let result = measure(port, &target, samples);
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        println!("prometheus head: {e}");
    }
}

/// Prometheus's metrics after a garbage collection (`/debug/pprof/heap?gc=1` runs one; `debug=1` asks for text), so the
/// heap in use is live data, not garbage waiting for the next cycle.
fn metrics_after_gc(port: u16) -> Result<String, String> {
    get(port, "/debug/pprof/heap?gc=1&debug=1")
        .ok_or_else(|| "no answer from /debug/pprof".to_owned())?;
    metrics(port)
}

/// Feeds the data set to Prometheus and prints its head's figures.
fn measure(port: u16, target: &Target, samples: u64) -> Result<(), String> {
    wait_for(Duration::from_secs(60), || {
        get(port, "/-/ready").is_some_and(|b| b.contains("Ready"))
    })?;
    // Baseline: ten scrapes of empty pages.
    wait_for(Duration::from_secs(30), || {
        target.served.load(Ordering::SeqCst) >= 10
    })?;
    let base = metrics_after_gc(port)?;
    target.step.store(0, Ordering::SeqCst);
    let started = Instant::now();
    let mut last_report = Instant::now();
    wait_for(Duration::from_secs(600), || {
        let page = metrics(port).unwrap_or_default();
        let appended = metric(&page, "prometheus_tsdb_head_samples_appended_total");
        let step = target.step.load(Ordering::SeqCst);
        if last_report.elapsed() > Duration::from_secs(15) {
            last_report = Instant::now();
            println!(
                "  step {step}, {} pages served, {appended} samples appended, out of bounds {}",
                target.served.load(Ordering::SeqCst),
                metric(
                    &page,
                    "prometheus_target_scrapes_sample_out_of_bounds_total"
                ),
            );
        }
        step >= SAMPLES - 1 && appended >= samples as f64
    })?;
    // Two more scrapes of the last page (nothing appended), then the figures.
    let served = target.served.load(Ordering::SeqCst);
    wait_for(Duration::from_secs(30), || {
        target.served.load(Ordering::SeqCst) >= served + 2
    })?;
    let after = metrics_after_gc(port)?;
    let diff = |name: &str| metric(&after, name) - metric(&base, name);
    let series = metric(&after, "prometheus_tsdb_head_series");
    let appended = diff("prometheus_tsdb_head_samples_appended_total");
    let chunks = metric(&after, "prometheus_tsdb_head_chunks");
    println!(
        "prometheus head: {series} series, {appended} samples appended in {:.0} s, {chunks} chunks",
        started.elapsed().as_secs_f64()
    );
    let rss = diff("process_resident_memory_bytes");
    let heap = diff("go_memstats_heap_inuse_bytes");
    println!(
        "prometheus head: process RSS grew {:.1} MiB = {:.2} bytes/sample; Go heap in use grew {:.1} MiB = {:.2} bytes/sample",
        rss / 1048576.0,
        rss / samples as f64,
        heap / 1048576.0,
        heap / samples as f64
    );
    Ok(())
}

/// One scrape's page: sample `s` of every series (`texts`: each one's `name{labels}`), at `t` ms.
fn exposition(data: &[SeriesGen], texts: &[String], s: i64, t: i64) -> String {
    let mut out = String::with_capacity(data.len() * 110);
    for ((_, value), text) in data.iter().zip(texts) {
        out.push_str(&format!("{text} {} {t}\n", value(s)));
    }
    out
}

fn serve(conn: TcpStream, target: &Target, pages: &[String]) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    // The request head; the body of a GET is empty.
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let step = target.step.load(Ordering::SeqCst);
    let body = if step < 0 {
        ""
    } else {
        pages[step as usize].as_str()
    };
    let mut conn = conn;
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    target.served.fetch_add(1, Ordering::SeqCst);
    if (0..SAMPLES - 1).contains(&step) {
        target.step.store(step + 1, Ordering::SeqCst);
    }
}

fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("gave up after {limit:?}"))
}

fn metrics(port: u16) -> Result<String, String> {
    get(port, "/metrics").ok_or_else(|| "no answer from /metrics".to_owned())
}

/// The sum of a family's samples in a text page, over all their labels (0 when absent):
/// `prometheus_tsdb_head_samples_appended_total` has a `type` label in Prometheus 3.
fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = match rest.strip_prefix('{') {
                Some(labelled) => labelled.split_once("} ")?.1,
                None => rest.strip_prefix(' ')?,
            };
            value.trim().parse::<f64>().ok()
        })
        .sum()
}
