//! Standard process metrics, with the names client_golang and node tooling use.
//!
//! Read from `/proc/self` at render time (Linux); nothing runs in the background. On other
//! systems no process metrics are produced.

use std::time::SystemTime;

use super::{Family, MetricKind, Series, Value};

/// Clock ticks per second for `/proc/<pid>/stat` times. Linux fixes the user-visible value
/// (USER_HZ) at 100 on every mainstream architecture; Prometheus's procfs library assumes the
/// same.
const USER_HZ: f64 = 100.0;

fn gauge(name: &str, help: &str, value: f64) -> Family {
    Family {
        name: name.to_owned(),
        kind: MetricKind::Gauge,
        unit: None,
        help: Some(help.to_owned()),
        series: vec![Series {
            labels: Vec::new(),
            value: Value::Gauge(value),
        }],
    }
}

#[cfg(target_os = "linux")]
pub(crate) fn collect(_start: SystemTime) -> Vec<Family> {
    let mut out = Vec::with_capacity(7);
    if let Some(stat) = read_stat() {
        // A counter family whose value is fractional: carried as a float (`Value::Gauge`),
        // rendered and exported with the family's kind (counter / monotonic sum).
        out.push(Family {
            name: "process_cpu_seconds_total".into(),
            kind: MetricKind::Counter,
            unit: None,
            help: Some("Total user and system CPU time spent in seconds.".into()),
            series: vec![Series {
                labels: Vec::new(),
                value: Value::Gauge((stat.utime + stat.stime) as f64 / USER_HZ),
            }],
        });
        out.push(gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            stat.vsize as f64,
        ));
        out.push(gauge(
            "process_threads",
            "Number of OS threads in the process.",
            stat.threads as f64,
        ));
        if let Some(boot) = boot_time() {
            out.push(gauge(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                boot + stat.starttime as f64 / USER_HZ,
            ));
        }
    }
    if let Some(rss) = resident_bytes() {
        out.push(gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            rss as f64,
        ));
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        // The directory handle itself is one of the entries; do not count it.
        let n = dir.count().saturating_sub(1);
        out.push(gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            n as f64,
        ));
    }
    if let Some(max) = max_fds() {
        out.push(gauge(
            "process_max_fds",
            "Maximum number of open file descriptors.",
            max,
        ));
    }
    out
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn collect(_start: SystemTime) -> Vec<Family> {
    Vec::new()
}

struct Stat {
    utime: u64,
    stime: u64,
    threads: u64,
    starttime: u64,
    vsize: u64,
}

#[cfg(target_os = "linux")]
fn read_stat() -> Option<Stat> {
    parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

fn parse_stat(s: &str) -> Option<Stat> {
    // `pid (comm) state ...`: comm may hold spaces and parentheses, so split at the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state); field N is f[N - 3].
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        threads: field(20)?,
        starttime: field(22)?,
        vsize: field(23)?,
    })
}

#[cfg(target_os = "linux")]
fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<f64>().ok())
}

#[cfg(target_os = "linux")]
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(target_os = "linux")]
fn max_fds() -> Option<f64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        Some(f64::INFINITY)
    } else {
        soft.parse::<f64>().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_command_name() {
        let line = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 \
                    12345 1048576 300 18446744073709551615";
        let s = parse_stat(line).unwrap();
        assert_eq!(
            (s.utime, s.stime, s.threads, s.starttime, s.vsize),
            (250, 50, 7, 12345, 1048576)
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn collects_every_standard_metric_on_linux() {
        let names: Vec<String> = collect(SystemTime::now())
            .into_iter()
            .map(|f| f.name)
            .collect();
        for want in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
            "process_threads",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "missing {want} in {names:?}"
            );
        }
    }
}
