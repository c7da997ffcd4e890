//! `node_schedstat_*` from `/proc/schedstat`: per CPU, the time spent running tasks and the
//! time tasks spent waiting for it, and the time slices it ran, as node_exporter's default
//! `schedstat` collector reports them.

use super::num;
use crate::{CollectError, Collector, Families, Paths, read};

/// The `schedstat` collector.
#[derive(Debug, Default)]
pub struct Schedstat;

impl Collector for Schedstat {
    fn name(&self) -> &'static str {
        "schedstat"
    }

    fn collect(&self, paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        let path = paths.proc("schedstat");
        // Absent on kernels built without scheduler statistics: "no data", as for
        // node_exporter.
        let text = read(path.clone())?;
        parse_schedstat(&text, &path, out)
    }
}

/// The families of `/proc/schedstat`'s `cpuN` lines: `cpuN` and nine numbers, of which the
/// seventh is the time spent running (ns), the eighth the time spent waiting to run (ns) and
/// the ninth the time slices run. Other lines (`version`, `timestamp`, `domainN`) are skipped.
///
/// # Errors
///
/// A `cpuN` line with fewer than nine numbers, or one that is not a number.
pub fn parse_schedstat(
    text: &str,
    path: &std::path::Path,
    out: &mut Families,
) -> Result<(), CollectError> {
    for (n, line) in text.lines().enumerate() {
        let mut f = line.split_whitespace();
        let Some(cpu) = f
            .next()
            .and_then(|c| c.strip_prefix("cpu"))
            .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let fields: Vec<&str> = f.collect();
        let [.., running, waiting, slices] = fields.get(..9).unwrap_or_default() else {
            return Err(CollectError::Parse {
                path: path.to_owned(),
                detail: format!(
                    "line {}: cpu{cpu} has {} fields, expected at least 9",
                    n + 1,
                    fields.len()
                ),
            });
        };
        let labels = [("cpu", cpu)];
        out.counter(
            "node_schedstat_running_seconds_total",
            "Number of seconds CPU spent running a process.",
            &labels,
            num(running, path)? / 1e9,
        );
        out.counter(
            "node_schedstat_waiting_seconds_total",
            "Number of seconds spent by processing waiting for this CPU.",
            &labels,
            num(waiting, path)? / 1e9,
        );
        out.counter(
            "node_schedstat_timeslices_total",
            "Number of timeslices executed by CPU.",
            &labels,
            num(slices, path)?,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_cpu_running_waiting_and_slices() {
        let text = "version 15\ntimestamp 4295000000\ncpu0 0 0 0 0 0 0 2000000000 1000000000 42\ndomain0 3 0 0 0 0 0 0 0 0\ncpu1 1 2 3 4 5 6 500000000 250000000 7\n";
        let mut f = Families::default();
        parse_schedstat(text, std::path::Path::new("/proc/schedstat"), &mut f).unwrap();
        let value = |name: &str, cpu: &str| {
            f.get(name)
                .and_then(|fam| fam.series_with(&[("cpu", cpu)]))
                .map(|s| s.value.clone())
        };
        use axi_obs_core::metrics::Value;
        let v = |x: Option<Value>| match x {
            Some(Value::Counter(c)) => c as f64,
            Some(Value::Gauge(g)) => g,
            other => panic!("{other:?}"),
        };
        assert_eq!(v(value("node_schedstat_running_seconds_total", "0")), 2.0);
        assert_eq!(v(value("node_schedstat_waiting_seconds_total", "0")), 1.0);
        assert_eq!(v(value("node_schedstat_timeslices_total", "0")), 42.0);
        assert_eq!(v(value("node_schedstat_running_seconds_total", "1")), 0.5);
        assert_eq!(v(value("node_schedstat_timeslices_total", "1")), 7.0);
        assert_eq!(
            f.get("node_schedstat_timeslices_total")
                .unwrap()
                .series
                .len(),
            2
        );
    }

    #[test]
    fn a_short_cpu_line_is_an_error_naming_it() {
        let mut f = Families::default();
        let e = parse_schedstat(
            "version 15\ncpu0 1 2 3\n",
            std::path::Path::new("/proc/schedstat"),
            &mut f,
        )
        .unwrap_err();
        assert!(e.to_string().contains("line 2: cpu0 has 3 fields"), "{e}");
    }
}
