//! `/proc/meminfo` and `/proc/vmstat`.

use super::num_at;
use crate::{CollectError, Collector, Families, Paths, read};

/// `node_memory_<Field>_bytes` for the `/proc/meminfo` fields node_exporter reports
/// (`Active(anon)` becomes `Active_anon`; fields without a `kB` unit, the `HugePages_*` counts,
/// keep no suffix).
#[derive(Debug)]
pub struct MemInfo;

/// `node_vmstat_<field>` for node_exporter's default field selection
/// (`oom_kill`, `pgpg*`, `pswp*`, `pg*fault*`), untyped as node_exporter has them.
#[derive(Debug)]
pub struct VmStat;

impl Collector for MemInfo {
    fn name(&self) -> &'static str {
        "meminfo"
    }

    fn collect(&self, paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        let path = paths.proc("meminfo");
        let text = read(path.clone())?;
        parse_meminfo(&text, &path, out)
    }
}

/// The `/proc/meminfo` fields node_exporter reports (those its procfs library knows); newer
/// kernel fields it does not know are left out too, so dashboards and lints see the same set.
const FIELDS: &[&str] = &[
    "MemTotal",
    "MemFree",
    "MemAvailable",
    "Buffers",
    "Cached",
    "SwapCached",
    "Active",
    "Inactive",
    "Active(anon)",
    "Inactive(anon)",
    "Active(file)",
    "Inactive(file)",
    "Unevictable",
    "Mlocked",
    "SwapTotal",
    "SwapFree",
    "Zswap",
    "Zswapped",
    "Dirty",
    "Writeback",
    "AnonPages",
    "Mapped",
    "Shmem",
    "Slab",
    "SReclaimable",
    "SUnreclaim",
    "KernelStack",
    "PageTables",
    "NFS_Unstable",
    "Bounce",
    "WritebackTmp",
    "CommitLimit",
    "Committed_AS",
    "VmallocTotal",
    "VmallocUsed",
    "VmallocChunk",
    "Percpu",
    "HardwareCorrupted",
    "AnonHugePages",
    "ShmemHugePages",
    "ShmemPmdMapped",
    "CmaTotal",
    "CmaFree",
    "HugePages_Total",
    "HugePages_Free",
    "HugePages_Rsvd",
    "HugePages_Surp",
    "Hugepagesize",
    "DirectMap4k",
    "DirectMap2M",
    "DirectMap1G",
];

/// `node_memory_*` from the text of `/proc/meminfo`.
///
/// # Errors
///
/// A reported field's value is not a number; the error names `path`.
pub fn parse_meminfo(
    text: &str,
    path: &std::path::Path,
    out: &mut Families,
) -> Result<(), CollectError> {
    // Reused across lines: "node_memory_" + the field, and the HELP text.
    const PREFIX: &str = "node_memory_";
    let mut name = String::with_capacity(64);
    let mut help = String::with_capacity(64);
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        if !FIELDS.contains(&key) {
            continue;
        }
        let mut parts = rest.split_whitespace();
        let Some(value) = parts.next() else { continue };
        let mut v = num_at(value, path, || key.to_owned())?;
        name.clear();
        name.push_str(PREFIX);
        // `Active(anon)` -> `Active_anon`.
        name.extend(key.chars().filter(|c| *c != ')').map(|c| match c {
            '(' => '_',
            c => c,
        }));
        if parts.next() == Some("kB") {
            v *= 1024.0;
            name.push_str("_bytes");
        }
        help.clear();
        help.push_str("Memory information field ");
        help.push_str(&name[PREFIX.len()..]);
        help.push('.');
        out.gauge(&name, &help, &[], v);
    }
    Ok(())
}

impl Collector for VmStat {
    fn name(&self) -> &'static str {
        "vmstat"
    }

    fn collect(&self, paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        let path = paths.proc("vmstat");
        let text = read(path.clone())?;
        for line in text.lines() {
            let Some((key, value)) = line.split_once(' ') else {
                continue;
            };
            if !vmstat_selected(key) {
                continue;
            }
            out.untyped(
                &format!("node_vmstat_{key}"),
                &format!("/proc/vmstat information field {key}."),
                &[],
                num_at(value.trim(), &path, || key.to_owned())?,
            );
        }
        Ok(())
    }
}

/// node_exporter's default `--collector.vmstat.fields`: `^(oom_kill|pgpg|pswp|pg.*fault).*`.
fn vmstat_selected(key: &str) -> bool {
    key.starts_with("oom_kill")
        || key.starts_with("pgpg")
        || key.starts_with("pswp")
        || (key.starts_with("pg") && key[2..].contains("fault"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_names_and_units() {
        let mut f = Families::default();
        parse_meminfo(
            "MemTotal:       24684084 kB\nActive(anon):      1000 kB\nHugePages_Total:       0\n",
            std::path::Path::new("/proc/meminfo"),
            &mut f,
        )
        .unwrap();
        let total = f.get("node_memory_MemTotal_bytes").unwrap();
        assert_eq!(total.series[0].value.as_gauge(), Some(24684084.0 * 1024.0));
        assert_eq!(
            total.help.as_deref(),
            Some("Memory information field MemTotal_bytes.")
        );
        assert!(f.get("node_memory_Active_anon_bytes").is_some());
        assert_eq!(
            f.get("node_memory_HugePages_Total").unwrap().series[0]
                .value
                .as_gauge(),
            Some(0.0)
        );
    }

    #[test]
    fn vmstat_selection() {
        for yes in ["oom_kill", "pgpgin", "pswpout", "pgfault", "pgmajfault"] {
            assert!(vmstat_selected(yes), "{yes}");
        }
        for no in ["nr_free_pages", "pgfree", "numa_hit"] {
            assert!(!vmstat_selected(no), "{no}");
        }
    }
}
