//! `/proc/stat`: CPU times, boot time, context switches, forks, interrupts, processes.

use super::{USER_HZ, num};
use crate::{CollectError, Collector, Families, Paths, read};

/// `node_cpu_seconds_total` and `node_cpu_guest_seconds_total`. Keeps each CPU's last times:
/// a time that goes back a little (the kernel's idle and iowait accounting does, on NO_HZ
/// kernels) is held at its last value, so the counter never decreases; one that goes back
/// by more than 3 s (a CPU taken offline and back) starts again, as
/// node_exporter does.
#[derive(Debug, Default)]
pub struct Cpu {
    last: std::sync::Mutex<std::collections::HashMap<String, Vec<f64>>>,
}

/// How far back a CPU's idle time may go before the CPU counts as reset (node_exporter's
/// value).
pub(crate) const JUMP_BACK_SECONDS: f64 = 3.0;

/// The place of `idle` among a CPU's modes.
const IDLE: usize = 3;

/// `node_boot_time_seconds`, `node_context_switches_total`, `node_forks_total`,
/// `node_intr_total`, `node_procs_running`, `node_procs_blocked`.
#[derive(Debug)]
pub struct Stat;

const CPU_MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

impl Collector for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn collect(&self, paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        let path = paths.proc("stat");
        let text = read(path.clone())?;
        let mut cpus = cpu_times(&text, &path)?;
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // As node_exporter's `updateCPUStats`: a CPU whose idle time went back by
        // JUMP_BACK_SECONDS or more was reset (offline and back): all its modes are taken as
        // they are. Otherwise no mode goes back (iowait on NO_HZ kernels, steal on some
        // hypervisors): each keeps the larger of its last and its new value.
        for (cpu, values) in &mut cpus {
            if let Some(prev) = last.get(*cpu) {
                let reset = matches!((values.get(IDLE), prev.get(IDLE)),
                    (Some(v), Some(p)) if p - v >= JUMP_BACK_SECONDS);
                if !reset {
                    for (v, p) in values.iter_mut().zip(prev) {
                        *v = v.max(*p);
                    }
                }
            }
        }
        // CPUs gone from the file are forgotten.
        last.clear();
        last.extend(cpus.iter().map(|(c, v)| ((*c).to_owned(), v.clone())));
        emit_cpu(&cpus, out);
        Ok(())
    }
}

/// The per-CPU lines of `/proc/stat`: the CPU number and its times in seconds (eight modes,
/// then guest and guest_nice, 0 when absent).
fn cpu_times<'a>(
    text: &'a str,
    path: &std::path::Path,
) -> Result<Vec<(&'a str, Vec<f64>)>, CollectError> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(label) = fields.next() else { continue };
        // Per-CPU lines only ("cpu0", "cpu1", ...); the aggregate "cpu" line is not exported.
        let Some(cpu) = label.strip_prefix("cpu").filter(|n| !n.is_empty()) else {
            continue;
        };
        let mut values: Vec<f64> = fields
            .map(|f| num(f, path).map(|v| v / USER_HZ))
            .collect::<Result<_, _>>()?;
        if values.len() < 8 {
            return Err(CollectError::Parse {
                path: path.to_owned(),
                detail: format!("short cpu line {line:?}"),
            });
        }
        values.resize(10, 0.0);
        out.push((cpu, values));
    }
    if out.is_empty() {
        return Err(CollectError::Parse {
            path: path.to_owned(),
            detail: "no per-CPU lines".into(),
        });
    }
    Ok(out)
}

fn emit_cpu(cpus: &[(&str, Vec<f64>)], out: &mut Families) {
    for (cpu, values) in cpus {
        for (mode, v) in CPU_MODES.iter().zip(values) {
            out.counter(
                "node_cpu_seconds_total",
                "Seconds the CPUs spent in each mode.",
                &[("cpu", cpu), ("mode", mode)],
                *v,
            );
        }
        for (mode, idx) in [("user", 8), ("nice", 9)] {
            out.counter(
                "node_cpu_guest_seconds_total",
                "Seconds the CPUs spent in guests (VMs) for each mode.",
                &[("cpu", cpu), ("mode", mode)],
                values[idx],
            );
        }
    }
}

/// `node_cpu_seconds_total` and `node_cpu_guest_seconds_total` from the text of `/proc/stat`.
///
/// # Errors
///
/// A per-CPU line with fewer than eight times or a field that is not a number, or no per-CPU
/// line at all; the error names `path`.
pub fn parse_cpu(
    text: &str,
    path: &std::path::Path,
    out: &mut Families,
) -> Result<(), CollectError> {
    emit_cpu(&cpu_times(text, path)?, out);
    Ok(())
}

impl Collector for Stat {
    fn name(&self) -> &'static str {
        "stat"
    }

    fn collect(&self, paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        let path = paths.proc("stat");
        let text = read(path.clone())?;
        parse_stat(&text, &path, out)
    }
}

/// `node_boot_time_seconds`, `node_context_switches_total`, `node_forks_total`,
/// `node_intr_total`, `node_procs_running` and `node_procs_blocked` from the text of
/// `/proc/stat`.
///
/// # Errors
///
/// One of those fields is not a number; the error names `path`.
pub fn parse_stat(
    text: &str,
    path: &std::path::Path,
    out: &mut Families,
) -> Result<(), CollectError> {
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(key), Some(first)) = (fields.next(), fields.next()) else {
            continue;
        };
        match key {
            "intr" => out.counter(
                "node_intr_total",
                "Total number of interrupts serviced.",
                &[],
                num(first, path)?,
            ),
            "ctxt" => out.counter(
                "node_context_switches_total",
                "Total number of context switches.",
                &[],
                num(first, path)?,
            ),
            "btime" => out.gauge(
                "node_boot_time_seconds",
                "Node boot time, in unixtime.",
                &[],
                num(first, path)?,
            ),
            "processes" => out.counter(
                "node_forks_total",
                "Total number of forks.",
                &[],
                num(first, path)?,
            ),
            "procs_running" => out.gauge(
                "node_procs_running",
                "Number of processes in runnable state.",
                &[],
                num(first, path)?,
            ),
            "procs_blocked" => out.gauge(
                "node_procs_blocked",
                "Number of processes blocked waiting for I/O to complete.",
                &[],
                num(first, path)?,
            ),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 2 30 4000 5 0 6 0 0 0
cpu0 50 1 15 2000 3 0 3 0 10 1
cpu1 50 1 15 2000 2 0 3 0 0 0
intr 12345 1 2 3
ctxt 987654
btime 1795630000
processes 4321
procs_running 3
procs_blocked 1
softirq 1 2 3
";

    #[test]
    fn cpu_times_never_go_back_a_little_but_reset_on_a_big_jump() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            proc: dir.path().to_owned(),
            ..Paths::default()
        };
        let write = |idle: u64| {
            std::fs::write(
                dir.path().join("stat"),
                format!("cpu  1 0 0 {idle} 0 0 0 0\ncpu0 1 0 0 {idle} 0 0 0 0\n"),
            )
            .unwrap();
        };
        let idle = |c: &Cpu| {
            let mut f = Families::default();
            c.collect(&paths, &mut f).unwrap();
            f.get("node_cpu_seconds_total")
                .unwrap()
                .series_with(&[("cpu", "0"), ("mode", "idle")])
                .unwrap()
                .value
                .as_gauge()
                .unwrap()
        };
        let cpu = Cpu::default();
        write(100_000);
        assert_eq!(idle(&cpu), 1000.0);
        // 0.5 s back (NO_HZ idle accounting): held.
        write(99_950);
        assert_eq!(idle(&cpu), 1000.0);
        write(100_100);
        assert_eq!(idle(&cpu), 1001.0);
        // 900 s back: the CPU was reset (offline and back), taken as is.
        write(10_000);
        assert_eq!(idle(&cpu), 100.0);
    }

    /// Another mode than idle never goes back, however far (node_exporter holds it); only
    /// idle going back 3 s or more resets the CPU, every mode with it.
    #[test]
    fn only_idle_going_back_resets_a_cpu() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            proc: dir.path().to_owned(),
            ..Paths::default()
        };
        let write = |idle: u64, iowait: u64| {
            std::fs::write(
                dir.path().join("stat"),
                format!("cpu0 1 0 0 {idle} {iowait} 0 0 0\n"),
            )
            .unwrap();
        };
        let mode = |c: &Cpu, mode: &str| {
            let mut f = Families::default();
            c.collect(&paths, &mut f).unwrap();
            f.get("node_cpu_seconds_total")
                .unwrap()
                .series_with(&[("cpu", "0"), ("mode", mode)])
                .unwrap()
                .value
                .as_gauge()
                .unwrap()
        };
        let cpu = Cpu::default();
        write(100_000, 50_000);
        assert_eq!(mode(&cpu, "iowait"), 500.0);
        // iowait 400 s back (NO_HZ accounting), idle moving on: held, not a reset.
        write(100_100, 10_000);
        assert_eq!(mode(&cpu, "iowait"), 500.0);
        write(100_200, 60_000);
        assert_eq!(mode(&cpu, "iowait"), 600.0);
        // Idle 900 s back: a reset, iowait taken as it is too.
        write(10_000, 100);
        assert_eq!((mode(&cpu, "idle"), mode(&cpu, "iowait")), (100.0, 1.0));
    }

    #[test]
    fn cpu_and_stat() {
        let mut f = Families::default();
        let p = std::path::Path::new("/proc/stat");
        parse_cpu(STAT, p, &mut f).unwrap();
        parse_stat(STAT, p, &mut f).unwrap();
        let cpu = f.get("node_cpu_seconds_total").unwrap();
        assert_eq!(cpu.series.len(), 16);
        let user0 = cpu.series_with(&[("cpu", "0"), ("mode", "user")]).unwrap();
        assert_eq!(user0.value.as_gauge(), Some(0.5));
        let guest = f.get("node_cpu_guest_seconds_total").unwrap();
        assert_eq!(
            guest
                .series_with(&[("cpu", "0"), ("mode", "user")])
                .unwrap()
                .value
                .as_gauge(),
            Some(0.1)
        );
        assert_eq!(
            f.get("node_intr_total").unwrap().series[0].value.as_gauge(),
            Some(12345.0)
        );
        assert_eq!(
            f.get("node_forks_total").unwrap().series[0]
                .value
                .as_gauge(),
            Some(4321.0)
        );
        assert_eq!(
            f.get("node_procs_blocked").unwrap().series[0]
                .value
                .as_gauge(),
            Some(1.0)
        );
    }

    #[test]
    fn malformed_cpu_line_names_the_file() {
        let mut f = Families::default();
        let e = parse_cpu(
            "cpu0 1 2 x 4 5 6 7 8\n",
            std::path::Path::new("/p/stat"),
            &mut f,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("/p/stat") && e.to_string().contains("\"x\""),
            "{e}"
        );
    }
}
