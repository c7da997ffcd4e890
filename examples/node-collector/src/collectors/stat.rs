//! `/proc/stat`: CPU times, boot time, context switches, forks, interrupts, processes.

use super::{USER_HZ, num};
use crate::{CollectError, Collector, Families, Paths, read};

/// `node_cpu_seconds_total` and `node_cpu_guest_seconds_total`.
#[derive(Debug)]
pub struct Cpu;

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
        parse_cpu(&text, &path, out)
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
    let mut any = false;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(label) = fields.next() else { continue };
        // Per-CPU lines only ("cpu0", "cpu1", ...); the aggregate "cpu" line is not exported.
        let Some(cpu) = label.strip_prefix("cpu").filter(|n| !n.is_empty()) else {
            continue;
        };
        let values: Vec<f64> = fields.map(|f| num(f, path)).collect::<Result<_, _>>()?;
        if values.len() < 8 {
            return Err(CollectError::Parse {
                path: path.to_owned(),
                detail: format!("short cpu line {line:?}"),
            });
        }
        any = true;
        for (mode, v) in CPU_MODES.iter().zip(&values) {
            out.counter(
                "node_cpu_seconds_total",
                "Seconds the CPUs spent in each mode.",
                &[("cpu", cpu), ("mode", mode)],
                v / USER_HZ,
            );
        }
        for (mode, idx) in [("user", 8), ("nice", 9)] {
            out.counter(
                "node_cpu_guest_seconds_total",
                "Seconds the CPUs spent in guests (VMs) for each mode.",
                &[("cpu", cpu), ("mode", mode)],
                values.get(idx).copied().unwrap_or(0.0) / USER_HZ,
            );
        }
    }
    if any {
        Ok(())
    } else {
        Err(CollectError::Parse {
            path: path.to_owned(),
            detail: "no per-CPU lines".into(),
        })
    }
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
