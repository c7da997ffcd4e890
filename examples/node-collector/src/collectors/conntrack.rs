//! Connection tracking: table size and limit from `/proc/sys/net/netfilter`, per-CPU statistics
//! from `/proc/net/stat/nf_conntrack`.

use super::num;
use crate::{CollectError, Collector, Families, Paths, read};

/// `node_nf_conntrack_entries`, `node_nf_conntrack_entries_limit` and the
/// `node_nf_conntrack_stat_*` gauges (summed over CPUs), as node_exporter's `conntrack`
/// collector reports them. Without the `nf_conntrack` module the collector fails (success 0)
/// and reports nothing, as node_exporter does; without the statistics file it reports the
/// table size and limit and fails.
#[derive(Debug)]
pub struct Conntrack;

/// The statistics node_exporter reports: name, HELP, and column in `/proc/net/stat/nf_conntrack`
/// (node_exporter's procfs library reads them by position; kernel 5.x renamed some columns but
/// kept these positions).
const STATS: [(&str, &str, usize); 8] = [
    (
        "node_nf_conntrack_stat_found",
        "Number of searched entries which were successful.",
        2,
    ),
    (
        "node_nf_conntrack_stat_invalid",
        "Number of packets seen which can not be tracked.",
        4,
    ),
    (
        "node_nf_conntrack_stat_ignore",
        "Number of packets seen which are already connected to a conntrack entry.",
        5,
    ),
    (
        "node_nf_conntrack_stat_insert",
        "Number of entries inserted into the list.",
        8,
    ),
    (
        "node_nf_conntrack_stat_insert_failed",
        "Number of entries for which list insertion was attempted but failed.",
        9,
    ),
    (
        "node_nf_conntrack_stat_drop",
        "Number of packets dropped due to conntrack failure.",
        10,
    ),
    (
        "node_nf_conntrack_stat_early_drop",
        "Number of dropped conntrack entries to make room for new ones, if maximum table size was reached.",
        11,
    ),
    (
        "node_nf_conntrack_stat_search_restart",
        "Number of conntrack table lookups which had to be restarted due to hashtable resizes.",
        16,
    ),
];

impl Collector for Conntrack {
    fn name(&self) -> &'static str {
        "conntrack"
    }

    fn collect(&self, paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        for (file, name, help) in [
            (
                "sys/net/netfilter/nf_conntrack_count",
                "node_nf_conntrack_entries",
                "Number of currently allocated flow entries for connection tracking.",
            ),
            (
                "sys/net/netfilter/nf_conntrack_max",
                "node_nf_conntrack_entries_limit",
                "Maximum size of connection tracking table.",
            ),
        ] {
            let path = paths.proc(file);
            let text = read(path.clone())?;
            out.gauge(name, help, &[], num(text.trim(), &path)?);
        }
        let path = paths.proc("net/stat/nf_conntrack");
        let text = read(path.clone())?;
        parse_conntrack_stat(&text, &path, out)
    }
}

/// The `node_nf_conntrack_stat_*` gauges from the text of `/proc/net/stat/nf_conntrack`: a
/// header line, then one line per CPU of hexadecimal counters, summed over CPUs.
/// `search_restart` is 0 on kernels whose lines have 16 columns instead of 17.
///
/// # Errors
///
/// A line that is not 16 or 17 hexadecimal numbers; the error names `path`.
pub fn parse_conntrack_stat(
    text: &str,
    path: &std::path::Path,
    out: &mut Families,
) -> Result<(), CollectError> {
    let mut sums = [0u64; STATS.len()];
    let mut columns = Vec::with_capacity(17);
    for line in text.lines().skip(1) {
        columns.clear();
        for field in line.split_whitespace() {
            columns.push(
                u64::from_str_radix(field, 16).map_err(|_| CollectError::Parse {
                    path: path.to_owned(),
                    detail: format!("{field:?} is not hexadecimal"),
                })?,
            );
        }
        if !(16..=17).contains(&columns.len()) {
            return Err(CollectError::Parse {
                path: path.to_owned(),
                detail: format!("{} columns, expected 16 or 17", columns.len()),
            });
        }
        for (sum, (_, _, col)) in sums.iter_mut().zip(STATS) {
            *sum = sum.wrapping_add(columns.get(col).copied().unwrap_or(0));
        }
    }
    for (sum, (name, help, _)) in sums.iter().zip(STATS) {
        out.gauge(name, help, &[], *sum as f64);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kernel 6.x layout (17 columns, `clashres` and `chainlength` where older kernels had
    /// `searched` and `delete_list`), two CPUs.
    const STAT: &str = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart
00000021  00000000 00000001 00000000 0000000a 00000010 00000000 00000000 00000003 00000001 00000002 00000004 00000000  00000000 00000000 00000000 00000005
00000021  00000000 00000002 00000000 00000001 00000001 00000000 00000000 00000004 00000000 00000001 00000000 00000000  00000000 00000000 00000000 000000ff
";

    fn value(f: &Families, name: &str) -> f64 {
        f.get(name).unwrap().series[0].value.as_gauge().unwrap()
    }

    #[test]
    fn stat_sums_over_cpus() {
        let mut f = Families::default();
        parse_conntrack_stat(
            STAT,
            std::path::Path::new("/proc/net/stat/nf_conntrack"),
            &mut f,
        )
        .unwrap();
        assert_eq!(value(&f, "node_nf_conntrack_stat_found"), 3.0);
        assert_eq!(value(&f, "node_nf_conntrack_stat_invalid"), 11.0);
        assert_eq!(value(&f, "node_nf_conntrack_stat_ignore"), 17.0);
        assert_eq!(value(&f, "node_nf_conntrack_stat_insert"), 7.0);
        assert_eq!(value(&f, "node_nf_conntrack_stat_insert_failed"), 1.0);
        assert_eq!(value(&f, "node_nf_conntrack_stat_drop"), 3.0);
        assert_eq!(value(&f, "node_nf_conntrack_stat_early_drop"), 4.0);
        assert_eq!(value(&f, "node_nf_conntrack_stat_search_restart"), 260.0);
        assert_eq!(
            f.get("node_nf_conntrack_stat_insert_failed")
                .unwrap()
                .help
                .as_deref(),
            Some("Number of entries for which list insertion was attempted but failed.")
        );
    }

    #[test]
    fn sixteen_columns_have_no_search_restart() {
        let old: String = STAT
            .lines()
            .map(|l| {
                let mut f: Vec<&str> = l.split_whitespace().collect();
                f.pop();
                f.join(" ") + "\n"
            })
            .collect();
        let mut f = Families::default();
        parse_conntrack_stat(&old, std::path::Path::new("stat"), &mut f).unwrap();
        assert_eq!(value(&f, "node_nf_conntrack_stat_search_restart"), 0.0);
        assert_eq!(value(&f, "node_nf_conntrack_stat_found"), 3.0);
    }

    #[test]
    fn malformed_lines_name_the_file() {
        for bad in ["h\n0000 zz\n", "h\n00 01 02\n"] {
            let e = parse_conntrack_stat(
                bad,
                std::path::Path::new("/p/nf_conntrack"),
                &mut Families::default(),
            )
            .unwrap_err();
            assert!(e.to_string().contains("/p/nf_conntrack"), "{e}");
        }
    }

    #[test]
    fn collector_reads_a_fixture_tree() {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path();
        std::fs::create_dir_all(proc.join("sys/net/netfilter")).unwrap();
        std::fs::create_dir_all(proc.join("net/stat")).unwrap();
        std::fs::write(proc.join("sys/net/netfilter/nf_conntrack_count"), "12\n").unwrap();
        std::fs::write(proc.join("sys/net/netfilter/nf_conntrack_max"), "262144\n").unwrap();
        let paths = Paths {
            proc: proc.to_owned(),
            ..Paths::default()
        };
        // Without the statistics file: size and limit, and a failure.
        let mut f = Families::default();
        assert!(Conntrack.collect(&paths, &mut f).is_err());
        assert_eq!(value(&f, "node_nf_conntrack_entries"), 12.0);
        assert_eq!(value(&f, "node_nf_conntrack_entries_limit"), 262144.0);
        assert!(f.get("node_nf_conntrack_stat_found").is_none());
        std::fs::write(proc.join("net/stat/nf_conntrack"), STAT).unwrap();
        let mut f = Families::default();
        Conntrack.collect(&paths, &mut f).unwrap();
        assert_eq!(value(&f, "node_nf_conntrack_stat_drop"), 3.0);
    }
}
