//! System metrics with node_exporter's names, types, labels and HELP text, read straight from
//! `/proc` and `/sys`, so dashboards built for node_exporter ("Node Exporter Full") work
//! unchanged.
//!
//! | collector | families (node_exporter's) |
//! |---|---|
//! | `cpu` | `node_cpu_seconds_total{cpu,mode}`, `node_cpu_guest_seconds_total{cpu,mode}` |
//! | `loadavg` | `node_load1`, `node_load5`, `node_load15` |
//! | `meminfo` | `node_memory_<Field>_bytes` (and the unit-less `HugePages_*` counts) |
//! | `stat` | `node_boot_time_seconds`, `node_context_switches_total`, `node_forks_total`, `node_intr_total`, `node_procs_running`, `node_procs_blocked` |
//! | `filefd` | `node_filefd_allocated`, `node_filefd_maximum` |
//! | `filesystem` | `node_filesystem_{size,free,avail}_bytes`, `_files`, `_files_free`, `_readonly`, `_device_error`, `_mount_info` (pseudo filesystems excluded as node_exporter does) |
//! | `diskstats` | `node_disk_*` (partitions and virtual devices excluded as node_exporter does) |
//! | `netdev` | `node_network_{receive,transmit}_*_total{device}` |
//! | `netclass` | `node_network_{up,carrier,mtu_bytes,speed_bytes,flags,...}{device}`, `node_network_info` |
//! | `softnet` | `node_softnet_*{cpu}` |
//! | `arp` | `node_arp_entries{device}` |
//! | `conntrack` | `node_nf_conntrack_entries`, `node_nf_conntrack_entries_limit`, `node_nf_conntrack_stat_*` |
//! | `kernel_hung`, `selinux` | `node_kernel_hung_tasks_total`, `node_selinux_enabled`, `node_selinux_current_mode`, `node_selinux_config_mode` (where SELinux is on) |
//! | `sockstat` | `node_sockstat_*` |
//! | `netstat` | `node_netstat_*` (node_exporter's default field selection) |
//! | `vmstat` | `node_vmstat_*` (node_exporter's default field selection) |
//! | `pressure` | `node_pressure_*_seconds_total` (PSI, where the kernel has it) |
//! | `schedstat` | `node_schedstat_{running,waiting}_seconds_total{cpu}`, `node_schedstat_timeslices_total{cpu}` (where the kernel keeps scheduler statistics) |
//! | `entropy` | `node_entropy_available_bits`, `node_entropy_pool_size_bits` |
//! | `udp_queues` | `node_udp_queues{ip,queue}` |
//! | `uname`, `os`, `time` | `node_uname_info`, `node_os_info`, `node_os_version`, `node_time_seconds`, `node_time_clocksource_*_info` |
//!
//! Not covered (node_exporter's default collectors on a typical host): `timex` (its values come
//! from the `adjtimex` system call, which neither `rustix` nor `nix` wraps, and this workspace
//! forbids `unsafe` code), `disk_info`, `textfile`. The side-by-side test prints the coverage on
//! the machine it runs on.
//!
//! The `/proc` parsers are public in [`parse`], for benchmarks and fuzzing.
//!
//! Beyond node_exporter: [`checks`] watches configured processes and listening ports;
//! [`probes`] runs HTTP(S) and TCP probes in the background with blackbox_exporter's metric
//! names, certificate expiry included ([`tls`]); [`pm2`] reads `pm2 jlist` and [`systemd`]
//! `systemctl show` on their own schedule, through [`command`], which bounds each run with a
//! timeout and caches the result. All are configured by the YAML file described in [`config`].
//! No scrape waits on the network or on a subprocess: it reads the last cached results.
//!
//! Every collector reports `node_scrape_collector_success{collector}` and
//! `node_scrape_collector_duration_seconds{collector}`, as node_exporter does. A collector that
//! fails (a file missing on this kernel) reports success 0 and the others go on.

mod bounded;
pub mod checks;
pub mod collectors;
pub mod command;
pub mod config;
mod families;
pub mod parse;
pub mod pm2;
pub mod probes;
pub mod systemd;
pub mod tls;

use std::path::PathBuf;
use std::time::Instant;

use axi_obs_core::metrics::{Family, MetricKind};

pub use families::Families;

/// Where the kernel's files are: `/proc`, `/sys` and the root filesystem (for `/etc`), so the
/// collector can run in a container with the host's folders mounted elsewhere, and tests can
/// point it at fixtures.
#[derive(Clone, Debug)]
pub struct Paths {
    /// `/proc` (node_exporter's `--path.procfs`).
    pub proc: PathBuf,
    /// `/sys` (`--path.sysfs`).
    pub sys: PathBuf,
    /// `/` (`--path.rootfs`).
    pub root: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Self {
            proc: "/proc".into(),
            sys: "/sys".into(),
            root: "/".into(),
        }
    }
}

impl Paths {
    /// A path under `/proc`.
    pub fn proc(&self, rel: &str) -> PathBuf {
        self.proc.join(rel)
    }

    /// A path under `/sys`.
    pub fn sys(&self, rel: &str) -> PathBuf {
        self.sys.join(rel)
    }

    /// A path under the root filesystem.
    pub fn root(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }
}

/// Why a collector failed.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A file did not have the expected shape.
    #[error("unexpected content in {path}: {detail}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
}

/// Reads a file, naming it in the error. /proc and /sys files report a size of 0, so the
/// size probe `read_to_string` makes (`statx`, `lseek`) is skipped: read until end of file.
pub fn read(path: PathBuf) -> Result<String, CollectError> {
    let bytes = read_bytes(path.clone())?;
    String::from_utf8(bytes).map_err(|e| CollectError::Parse {
        path,
        detail: format!("not UTF-8: {e}"),
    })
}

/// [`read`] without the UTF-8 check: for files the kernel writes names into as they are
/// (mount points, interface names), which one name that is not UTF-8 must not make
/// unreadable.
pub fn read_bytes(path: PathBuf) -> Result<Vec<u8>, CollectError> {
    use std::io::Read;
    let io = |source| CollectError::Io {
        path: path.clone(),
        source,
    };
    let mut f = std::fs::File::open(&path).map_err(io)?;
    let mut bytes = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        match f.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        }
    }
    Ok(bytes)
}

/// [`read_bytes`] as text, bytes that are not UTF-8 read as U+FFFD.
pub fn read_lossy(path: PathBuf) -> Result<String, CollectError> {
    let bytes = read_bytes(path)?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// One source of metric families.
pub trait Collector: Send + Sync {
    /// The name used in `node_scrape_collector_*{collector=...}`.
    fn name(&self) -> &'static str;
    /// Appends this collector's families.
    ///
    /// # Errors
    ///
    /// When its source cannot be read or parsed; the scrape goes on with the other collectors.
    fn collect(&self, paths: &Paths, out: &mut Families) -> Result<(), CollectError>;
}

/// A set of collectors read together at each scrape.
pub struct Node {
    paths: Paths,
    collectors: Vec<Box<dyn Collector>>,
    /// The error each failing collector last logged, so a collector failing the same way at
    /// every scrape is warned of once (and again when its error changes), not every 15 s.
    failing: std::sync::Mutex<std::collections::HashMap<&'static str, String>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("paths", &self.paths)
            .field(
                "collectors",
                &self.collectors.iter().map(|c| c.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Node {
    /// Every collector of this crate, reading from `paths`.
    pub fn new(paths: Paths) -> Self {
        Self {
            paths,
            collectors: collectors::all(),
            failing: Default::default(),
        }
    }

    /// Only the named collectors (unknown names are ignored).
    pub fn with_collectors(paths: Paths, names: &[&str]) -> Self {
        Self::with_exclusions(paths, names, &collectors::Exclusions::default())
    }

    /// Only the named collectors, leaving out the devices and mounts `exclusions` names.
    pub fn with_exclusions(
        paths: Paths,
        names: &[&str],
        exclusions: &collectors::Exclusions,
    ) -> Self {
        Self {
            paths,
            collectors: collectors::all_with(exclusions)
                .into_iter()
                .filter(|c| names.contains(&c.name()))
                .collect(),
            failing: Default::default(),
        }
    }

    /// Adds a collector (checks, probes) after the built-in ones.
    pub fn add(&mut self, collector: Box<dyn Collector>) {
        self.collectors.push(collector);
    }

    /// Names of the active collectors.
    pub fn collector_names(&self) -> Vec<&'static str> {
        self.collectors.iter().map(|c| c.name()).collect()
    }

    /// Runs every collector once and returns all families, with the per-collector success and
    /// duration families.
    pub fn gather(&self) -> Vec<Family> {
        let mut out = Families::default();
        let mut status = Vec::with_capacity(self.collectors.len());
        for c in &self.collectors {
            let started = Instant::now();
            // A collector that panics (a bug, a file of a shape never seen) fails alone, as
            // one that returns an error: the scrape goes on with the others.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                c.collect(&self.paths, &mut out)
            }));
            let seconds = started.elapsed().as_secs_f64();
            let ok = match &result {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    self.log_failure(c.name(), e);
                    false
                }
                Err(_) => {
                    tracing::error!(collector = c.name(), "collector panicked");
                    false
                }
            };
            if ok {
                self.failing
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(c.name());
            }
            status.push((c.name(), ok, seconds));
        }
        for (name, ok, seconds) in status {
            out.add(
                "node_scrape_collector_duration_seconds",
                MetricKind::Gauge,
                "node_exporter: Duration of a collector scrape.",
                &[("collector", name)],
                seconds,
            );
            out.add(
                "node_scrape_collector_success",
                MetricKind::Gauge,
                "node_exporter: Whether a collector succeeded.",
                &[("collector", name)],
                if ok { 1.0 } else { 0.0 },
            );
        }
        out.into_vec()
    }

    /// Logs a collector's failure: a file this host does not have (no `/proc/pressure`, no
    /// conntrack module) at debug, as node_exporter's "no data"; anything else (a file of a
    /// shape not understood, a read refused) as a warning, once until the error changes or
    /// the collector succeeds again (`node_scrape_collector_success` says it at every scrape).
    fn log_failure(&self, collector: &'static str, e: &CollectError) {
        if let CollectError::Io { source, .. } = e
            && source.kind() == std::io::ErrorKind::NotFound
        {
            tracing::debug!(collector, error = %e, "collector has no data on this host");
            return;
        }
        let text = e.to_string();
        let mut failing = self
            .failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if failing.get(collector) == Some(&text) {
            tracing::debug!(collector, error = %e, "collector failed");
            return;
        }
        tracing::warn!(collector, error = %e, "collector failed (node_scrape_collector_success 0)");
        failing.insert(collector, text);
    }

    /// [`gather`](Self::gather) rendered as Prometheus text.
    pub fn render(&self) -> String {
        axi_obs_core::metrics::render_families(&self.gather())
    }
}

#[cfg(test)]
mod panic_tests {
    use super::*;

    struct Panics;

    impl Collector for Panics {
        fn name(&self) -> &'static str {
            "panics"
        }

        fn collect(&self, _: &Paths, _: &mut Families) -> Result<(), CollectError> {
            panic!("a shape never seen");
        }
    }

    /// A collector that panics fails alone: its success is 0, the others' families are there.
    #[test]
    fn a_panicking_collector_fails_alone() {
        let mut node = Node::with_collectors(Paths::default(), &["loadavg"]);
        node.add(Box::new(Panics));
        let text = node.render();
        assert!(
            text.contains("node_scrape_collector_success{collector=\"panics\"} 0"),
            "{text}"
        );
        assert!(text.contains("node_load1 "), "{text}");
    }
}

#[cfg(test)]
mod failure_log_tests {
    use std::sync::atomic::{AtomicU8, Ordering};

    use super::*;

    /// Fails as its `mode` says: 0 a file of an unknown shape, 1 a file this host lacks,
    /// 2 another shape, 3 success.
    struct Flaky(AtomicU8);

    impl Collector for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }

        fn collect(&self, _: &Paths, _: &mut Families) -> Result<(), CollectError> {
            let path = PathBuf::from("/proc/flaky");
            match self.0.load(Ordering::Relaxed) {
                0 => Err(CollectError::Parse {
                    path,
                    detail: "\"x\" is not a number".into(),
                }),
                1 => Err(CollectError::Io {
                    path,
                    source: std::io::ErrorKind::NotFound.into(),
                }),
                2 => Err(CollectError::Parse {
                    path,
                    detail: "\"y\" is not a number".into(),
                }),
                _ => Ok(()),
            }
        }
    }

    /// A collector that fails is warned of, once while it fails the same way (it is in
    /// `node_scrape_collector_success` at every scrape), again when its error changes or after
    /// it recovered; a file the host does not have is no warning.
    #[test]
    fn a_failing_collector_is_warned_of_once_per_error() {
        let capture = axi_obs_core::testing::Capture::new();
        let mut node = Node::with_collectors(Paths::default(), &[]);
        let mode = std::sync::Arc::new(Flaky(AtomicU8::new(0)));
        struct Shared(std::sync::Arc<Flaky>);
        impl Collector for Shared {
            fn name(&self) -> &'static str {
                self.0.name()
            }
            fn collect(&self, p: &Paths, o: &mut Families) -> Result<(), CollectError> {
                self.0.collect(p, o)
            }
        }
        node.add(Box::new(Shared(mode.clone())));
        let warnings = || {
            capture
                .logs()
                .iter()
                .filter(|l| l["log.level"] == "WARN" && l["collector"] == "flaky")
                .count()
        };
        capture.run(|| {
            for m in [0, 0, 0] {
                mode.0.store(m, Ordering::Relaxed);
                node.gather();
            }
        });
        assert_eq!(warnings(), 1, "{}", capture.log_text());
        capture.run(|| {
            for m in [1, 1, 2, 2, 3, 2] {
                mode.0.store(m, Ordering::Relaxed);
                node.gather();
            }
        });
        // Not for the missing file; once for the new error, once after the recovery.
        assert_eq!(warnings(), 3, "{}", capture.log_text());
    }
}
