//! node_exporter (the real one, Debian's 1.x) and axi-node-collector side by side on this
//! machine: every family both emit has the same type, HELP and label names, and the values
//! agree; promtool finds nothing in ours that it does not find in node_exporter's; a real
//! Prometheus scrapes ours. Prints the coverage of node_exporter's families.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(url: &str) -> Option<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let r = reqwest::get(url).await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.text().await.ok()
    })
}

fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_ours() -> (Killed, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_axi-node-collector"))
        .args(["--listen", "127.0.0.1:0"])
        .env("AXI_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["message"] == "listening"
            {
                let _ = tx.send(
                    v["address"]
                        .as_str()
                        .unwrap()
                        .parse::<SocketAddr>()
                        .unwrap(),
                );
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("axi-node-collector did not start");
    (Killed(child), addr)
}

#[derive(Debug, Default)]
struct Fam {
    kind: String,
    help: String,
    samples: BTreeMap<Vec<(String, String)>, f64>,
}

/// A small Prometheus text parser: enough for both outputs (no escapes in these label values
/// beyond `\"` and `\\`).
fn parse(text: &str) -> BTreeMap<String, Fam> {
    let mut out: BTreeMap<String, Fam> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.entry(name.to_owned()).or_default().help = help.to_owned();
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            out.entry(name.to_owned()).or_default().kind = kind.to_owned();
        } else if !line.is_empty() && !line.starts_with('#') {
            let (head, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match head.split_once('{') {
                Some((n, l)) => (n, l.trim_end_matches('}')),
                None => (head, ""),
            };
            let mut parsed = Vec::new();
            let mut rest = labels;
            while let Some((k, after)) = rest.split_once("=\"") {
                let mut value = String::new();
                let mut chars = after.char_indices();
                let mut end = after.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                value.push(n);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                parsed.push((k.trim_start_matches(',').to_owned(), value));
                rest = &after[end..];
            }
            parsed.sort();
            let v: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or(f64::NAN),
            };
            out.entry(name.to_owned())
                .or_default()
                .samples
                .insert(parsed, v);
        }
    }
    out
}

/// Families whose values move too fast between two scrapes to compare.
fn volatile(name: &str) -> bool {
    name.starts_with("node_scrape_collector_duration")
        || name == "node_procs_running"
        || name == "node_procs_blocked"
        || name == "node_disk_io_now"
        || name.starts_with("node_sockstat_")
        || name == "node_netstat_Tcp_CurrEstab"
        || name == "node_filefd_allocated"
        || name == "node_entropy_available_bits"
}

fn agree(name: &str, ours: f64, theirs: f64) -> bool {
    if name == "node_time_seconds" {
        return (ours - theirs).abs() < 5.0;
    }
    if name.starts_with("node_load") {
        return (ours - theirs).abs() < 1.0;
    }
    if name.starts_with("node_pressure") {
        return (ours - theirs).abs() < 5.0 + theirs.abs() * 0.05;
    }
    // Counters and memory move between the two scrapes: 5 % or a small absolute slack.
    (ours - theirs).abs() <= 0.05 * ours.abs().max(theirs.abs()) + 64.0
}

fn promtool_findings(promtool: &std::path::Path, text: &str) -> BTreeSet<String> {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn side_by_side_with_node_exporter() {
    let Some(node_exporter) = axi_obs_core::testing::peer("node_exporter") else {
        return;
    };
    let Some(promtool) = axi_obs_core::testing::peer("promtool") else {
        return;
    };
    let port = free_port();
    let _ne = Killed(
        Command::new(node_exporter)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (_ours, addr) = start_ours();
    let ne_url = format!("http://127.0.0.1:{port}/metrics");
    let ours_url = format!("http://{addr}/metrics");
    poll("node_exporter", || get(&ne_url));
    // Scrape back to back, ours before and after node_exporter, so that a value that moves
    // between the scrapes (memory mapped by other processes on a busy machine) is judged
    // against ours on both sides of node_exporter's reading.
    let before_text = get(&ours_url).unwrap();
    let theirs_text = get(&ne_url).unwrap();
    let ours_text = get(&ours_url).unwrap();
    let theirs = parse(&theirs_text);
    let ours = parse(&ours_text);
    let before = parse(&before_text);

    let ne_node: BTreeSet<&String> = theirs
        .keys()
        .filter(|n| {
            n.starts_with("node_")
                && !n.starts_with("node_exporter")
                && !n.starts_with("node_scrape")
        })
        .collect();
    let common: Vec<&String> = ne_node
        .iter()
        .copied()
        .filter(|n| ours.contains_key(*n))
        .collect();
    let mut problems = Vec::new();
    for name in &common {
        let (o, t) = (&ours[*name], &theirs[*name]);
        if o.kind != t.kind {
            problems.push(format!(
                "{name}: type {} vs node_exporter {}",
                o.kind, t.kind
            ));
        }
        if o.help != t.help {
            problems.push(format!(
                "{name}: HELP {:?} vs node_exporter {:?}",
                o.help, t.help
            ));
        }
        let label_names = |f: &Fam| -> BTreeSet<Vec<String>> {
            f.samples
                .keys()
                .map(|l| l.iter().map(|(k, _)| k.clone()).collect())
                .collect()
        };
        if label_names(o) != label_names(t) {
            problems.push(format!(
                "{name}: labels {:?} vs node_exporter {:?}",
                label_names(o),
                label_names(t)
            ));
        }
        if volatile(name) {
            continue;
        }
        for (labels, tv) in &t.samples {
            let earlier = before.get(*name).and_then(|f| f.samples.get(labels));
            let bracketed = |ov: f64| {
                earlier.is_some_and(|bv| {
                    agree(name, *bv, *tv) || (bv.min(ov) <= *tv && *tv <= bv.max(ov))
                })
            };
            match o.samples.get(labels) {
                Some(ov) if agree(name, *ov, *tv) || bracketed(*ov) => {}
                Some(ov) => problems.push(format!("{name}{labels:?}: {ov} vs node_exporter {tv}")),
                None => problems.push(format!(
                    "{name}{labels:?}: missing (node_exporter has {tv})"
                )),
            }
        }
    }
    // Exact at the same instant: sizes the kernel does not change between two reads.
    for name in [
        "node_memory_MemTotal_bytes",
        "node_boot_time_seconds",
        "node_filesystem_size_bytes",
        "node_filefd_maximum",
    ] {
        for (labels, tv) in &theirs[name].samples {
            assert_eq!(
                ours[name].samples.get(labels),
                Some(tv),
                "{name}{labels:?} must be exact"
            );
        }
    }
    // Collectors added after the first comparison: whatever of theirs node_exporter emits on this
    // machine, we must emit too (and the loop above compared it), so a regression cannot hide in
    // the coverage figure. Their parsers are tested on fixtures where the machine lacks them.
    let required: Vec<&&String> = ne_node
        .iter()
        .filter(|n| n.starts_with("node_udp_queues") || n.starts_with("node_nf_conntrack_"))
        .collect();
    println!("compared, added collectors: {required:?}");
    for name in &required {
        if !ours.contains_key(**name) {
            problems.push(format!("{name}: node_exporter emits it, we do not"));
        }
    }
    println!(
        "coverage: {} of node_exporter's {} node_* families on this machine ({:.0} %)",
        common.len(),
        ne_node.len(),
        100.0 * common.len() as f64 / ne_node.len() as f64
    );
    let missing: Vec<&&String> = ne_node.iter().filter(|n| !ours.contains_key(**n)).collect();
    println!("not emitted: {missing:?}");
    assert!(
        problems.is_empty(),
        "{} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );

    // promtool: our findings are node_exporter's own (its camelCase and `_bits` names), no more.
    let node_only = |text: &str| -> String {
        let keep: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("node_") && !l.contains("node_exporter"))
            .collect();
        keep.join("\n") + "\n"
    };
    let theirs_findings = promtool_findings(&promtool, &node_only(&theirs_text));
    let ours_findings = promtool_findings(&promtool, &ours_text);
    let extra: Vec<&String> = ours_findings.difference(&theirs_findings).collect();
    assert!(
        extra.is_empty(),
        "promtool findings only ours have: {extra:?}"
    );
}

#[test]
fn prometheus_scrapes_the_collector() {
    let Some(prometheus) = axi_obs_core::testing::peer("prometheus") else {
        return;
    };
    let (_ours, addr) = start_ours();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['{addr}']\n"),
    )
    .unwrap();
    let port = free_port();
    let _prom = Killed(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let q = |expr: &str| -> Option<Vec<serde_json::Value>> {
        let url = format!(
            "http://127.0.0.1:{port}/api/v1/query?query={}",
            expr.replace('{', "%7B")
                .replace('}', "%7D")
                .replace('"', "%22")
                .replace('=', "%3D")
        );
        let v: serde_json::Value = serde_json::from_str(&get(&url)?).ok()?;
        let r = v["data"]["result"].as_array()?.clone();
        (!r.is_empty()).then_some(r)
    };
    poll("up == 1", || q("up").filter(|r| r[0]["value"][1] == "1"));
    for expr in [
        "node_load1",
        "node_memory_MemTotal_bytes",
        "node_cpu_seconds_total",
        "node_filesystem_avail_bytes",
    ] {
        poll(expr, || q(expr));
    }
}
