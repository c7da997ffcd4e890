//! Small kernel files: load average, file descriptors, entropy, pressure stall information.

use super::num;
use crate::{CollectError, Collector, Families, Paths, read};

/// `node_load1`, `node_load5`, `node_load15`.
#[derive(Debug)]
pub struct LoadAvg;

/// `node_filefd_allocated`, `node_filefd_maximum`.
#[derive(Debug)]
pub struct FileFd;

/// `node_entropy_available_bits`, `node_entropy_pool_size_bits`.
#[derive(Debug)]
pub struct Entropy;

/// `node_pressure_{cpu,io,memory}_{waiting,stalled}_seconds_total` (kernels with PSI).
#[derive(Debug)]
pub struct Pressure;

impl Collector for LoadAvg {
    fn name(&self) -> &'static str {
        "loadavg"
    }

    fn collect(&self, paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        let path = paths.proc("loadavg");
        let text = read(path.clone())?;
        parse_loadavg(&text, &path, out)
    }
}

/// `node_load1`, `node_load5` and `node_load15` from the text of `/proc/loadavg`.
///
/// # Errors
///
/// Fewer than three load averages, or one that is not a number; the error names `path`.
pub fn parse_loadavg(
    text: &str,
    path: &std::path::Path,
    out: &mut Families,
) -> Result<(), CollectError> {
    let mut f = text.split_whitespace();
    for (name, help) in [
        ("node_load1", "1m load average."),
        ("node_load5", "5m load average."),
        ("node_load15", "15m load average."),
    ] {
        let v = f.next().ok_or_else(|| CollectError::Parse {
            path: path.to_owned(),
            detail: "fewer than three load averages".into(),
        })?;
        out.gauge(name, help, &[], num(v, path)?);
    }
    Ok(())
}

impl Collector for FileFd {
    fn name(&self) -> &'static str {
        "filefd"
    }

    fn collect(&self, paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        let path = paths.proc("sys/fs/file-nr");
        let text = read(path.clone())?;
        let f: Vec<&str> = text.split_whitespace().collect();
        if f.len() < 3 {
            return Err(CollectError::Parse {
                path,
                detail: "expected three numbers".into(),
            });
        }
        out.gauge(
            "node_filefd_allocated",
            "File descriptor statistics: allocated.",
            &[],
            num(f[0], &path)?,
        );
        out.gauge(
            "node_filefd_maximum",
            "File descriptor statistics: maximum.",
            &[],
            num(f[2], &path)?,
        );
        Ok(())
    }
}

impl Collector for Entropy {
    fn name(&self) -> &'static str {
        "entropy"
    }

    fn collect(&self, paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        for (file, name, help) in [
            (
                "sys/kernel/random/entropy_avail",
                "node_entropy_available_bits",
                "Bits of available entropy.",
            ),
            (
                "sys/kernel/random/poolsize",
                "node_entropy_pool_size_bits",
                "Bits of entropy pool.",
            ),
        ] {
            let path = paths.proc(file);
            let text = read(path.clone())?;
            out.gauge(name, help, &[], num(text.trim(), &path)?);
        }
        Ok(())
    }
}

impl Collector for Pressure {
    fn name(&self) -> &'static str {
        "pressure"
    }

    fn collect(&self, paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        for resource in ["cpu", "io", "memory"] {
            let path = paths.proc(&format!("pressure/{resource}"));
            let text = read(path.clone())?;
            for line in text.lines() {
                let mut f = line.split_whitespace();
                let kind = f.next().unwrap_or_default();
                let total = f.find_map(|kv| kv.strip_prefix("total=")).ok_or_else(|| {
                    CollectError::Parse {
                        path: path.clone(),
                        detail: format!("no total= in {line:?}"),
                    }
                })?;
                let seconds = num(total, &path)? / 1e6;
                let (name, help) = match (resource, kind) {
                    ("cpu", "some") => (
                        "node_pressure_cpu_waiting_seconds_total",
                        "Total time in seconds that processes have waited for CPU time",
                    ),
                    ("io", "some") => (
                        "node_pressure_io_waiting_seconds_total",
                        "Total time in seconds that processes have waited due to IO congestion",
                    ),
                    ("io", "full") => (
                        "node_pressure_io_stalled_seconds_total",
                        "Total time in seconds no process could make progress due to IO congestion",
                    ),
                    ("memory", "some") => (
                        "node_pressure_memory_waiting_seconds_total",
                        "Total time in seconds that processes have waited for memory",
                    ),
                    ("memory", "full") => (
                        "node_pressure_memory_stalled_seconds_total",
                        "Total time in seconds no process could make progress due to memory congestion",
                    ),
                    // cpu "full" exists on newer kernels; node_exporter does not export it.
                    _ => continue,
                };
                out.counter(name, help, &[], seconds);
            }
        }
        Ok(())
    }
}

/// `node_kernel_hung_tasks_total` from `/proc/sys/kernel/hung_task_detect_count`.
#[derive(Debug)]
pub struct KernelHung;

/// `node_selinux_enabled`, and where SELinux is on `node_selinux_current_mode` and
/// `node_selinux_config_mode` (nothing else when it is off, as node_exporter).
#[derive(Debug)]
pub struct Selinux;

impl Collector for KernelHung {
    fn name(&self) -> &'static str {
        "kernel_hung"
    }

    fn collect(&self, paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        let path = paths.proc("sys/kernel/hung_task_detect_count");
        let text = read(path.clone())?;
        out.counter(
            "node_kernel_hung_tasks_total",
            "Total number of tasks that have been detected as hung since the system booted.",
            &[],
            num(text.trim(), &path)?,
        );
        Ok(())
    }
}

impl Collector for Selinux {
    fn name(&self) -> &'static str {
        "selinux"
    }

    fn collect(&self, paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        let enforce = paths.sys("fs/selinux/enforce");
        let enabled = enforce.exists();
        out.gauge(
            "node_selinux_enabled",
            "SELinux is enabled, 1 is true, 0 is false",
            &[],
            if enabled { 1.0 } else { 0.0 },
        );
        if !enabled {
            return Ok(());
        }
        // As node_exporter (through go-selinux): the mode in force now, 1 enforcing and 0
        // permissive; the configured one, from `/etc/selinux/config`, -1 when disabled there
        // (or not said).
        let text = read(enforce.clone())?;
        out.gauge(
            "node_selinux_current_mode",
            "Current SELinux enforcement mode",
            &[],
            num(text.trim(), &enforce)?,
        );
        let configured = read(paths.root("etc/selinux/config")).ok().and_then(|t| {
            t.lines()
                .filter_map(|l| l.trim().strip_prefix("SELINUX="))
                .next_back()
                .map(|v| v.trim().trim_matches('"').to_owned())
        });
        out.gauge(
            "node_selinux_config_mode",
            "Configured SELinux enforcement mode",
            &[],
            match configured.as_deref() {
                Some("enforcing") => 1.0,
                Some("permissive") => 0.0,
                _ => -1.0,
            },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge(f: &Families, name: &str) -> Option<f64> {
        f.get(name)?.series.first()?.value.as_gauge()
    }

    /// SELinux on: the mode in force and the configured one, as node_exporter reports them;
    /// off: only `node_selinux_enabled` 0.
    #[test]
    fn selinux_modes() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            sys: dir.path().join("sys"),
            root: dir.path().to_owned(),
            ..Paths::default()
        };
        let mut f = Families::default();
        Selinux.collect(&paths, &mut f).unwrap();
        assert_eq!(gauge(&f, "node_selinux_enabled"), Some(0.0));
        assert!(f.get("node_selinux_current_mode").is_none());

        std::fs::create_dir_all(dir.path().join("sys/fs/selinux")).unwrap();
        std::fs::write(dir.path().join("sys/fs/selinux/enforce"), "0").unwrap();
        let mut f = Families::default();
        Selinux.collect(&paths, &mut f).unwrap();
        assert_eq!(gauge(&f, "node_selinux_enabled"), Some(1.0));
        assert_eq!(gauge(&f, "node_selinux_current_mode"), Some(0.0));
        // No configuration file: disabled there.
        assert_eq!(gauge(&f, "node_selinux_config_mode"), Some(-1.0));

        std::fs::create_dir_all(dir.path().join("etc/selinux")).unwrap();
        std::fs::write(
            dir.path().join("etc/selinux/config"),
            "# SELINUX= can take one of these three values:\nSELINUX=enforcing\nSELINUXTYPE=targeted\n",
        )
        .unwrap();
        let mut f = Families::default();
        Selinux.collect(&paths, &mut f).unwrap();
        assert_eq!(gauge(&f, "node_selinux_config_mode"), Some(1.0));
    }
}
