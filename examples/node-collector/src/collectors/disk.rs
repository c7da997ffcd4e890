//! `/proc/diskstats` as node_exporter's `diskstats` collector reports it.

use super::num_at;
use crate::{CollectError, Collector, Families, Paths, read};

/// `node_disk_*{device}`: completed, merged, bytes and time of reads, writes, discards and
/// flushes, I/Os in progress and I/O time. Partitions and virtual devices are ignored as
/// node_exporter's default `--collector.diskstats.device-exclude` does:
/// `^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$`.
///
/// Another exclusion replaces that one ([`DiskStats::excluding`]).
#[derive(Debug, Default)]
pub struct DiskStats {
    exclude: Option<regex::Regex>,
}

impl DiskStats {
    /// Leaving out the devices `exclude` matches instead of node_exporter's default ones.
    pub fn excluding(exclude: Option<regex::Regex>) -> Self {
        Self { exclude }
    }
}

/// Bytes per sector in `/proc/diskstats` (always 512, whatever the device's sector size).
const SECTOR: f64 = 512.0;

impl Collector for DiskStats {
    fn name(&self) -> &'static str {
        "diskstats"
    }

    fn collect(&self, paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        let path = paths.proc("diskstats");
        let text = read(path.clone())?;
        parse_diskstats_excluding(&text, &path, out, self.exclude.as_ref())
    }
}

/// `node_disk_*{device}` from the text of `/proc/diskstats`, excluded devices left out.
///
/// # Errors
///
/// A field of a reported device is not a number; the error names `path`.
pub fn parse_diskstats(
    text: &str,
    path: &std::path::Path,
    out: &mut Families,
) -> Result<(), CollectError> {
    parse_diskstats_excluding(text, path, out, None)
}

/// [`parse_diskstats`] leaving out the devices `exclude` matches (node_exporter's default
/// ones when `None`).
///
/// # Errors
///
/// As [`parse_diskstats`].
pub(crate) fn parse_diskstats_excluding(
    text: &str,
    path: &std::path::Path,
    out: &mut Families,
    exclude: Option<&regex::Regex>,
) -> Result<(), CollectError> {
    for (n, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 14 {
            continue;
        }
        let dev = f[2];
        if exclude.map_or_else(|| excluded(dev), |re| re.is_match(dev)) {
            continue;
        }
        let v = |i: usize| -> Result<f64, CollectError> {
            match f.get(i) {
                Some(s) => num_at(s, path, || {
                    format!("line {}, {dev}, field {}", n + 1, i + 1)
                }),
                None => Ok(0.0),
            }
        };
        let d = &[("device", dev)];
        let c = |out: &mut Families, name: &str, help: &str, value: f64| {
            out.counter(name, help, d, value)
        };
        c(
            out,
            "node_disk_reads_completed_total",
            "The total number of reads completed successfully.",
            v(3)?,
        );
        c(
            out,
            "node_disk_reads_merged_total",
            "The total number of reads merged.",
            v(4)?,
        );
        c(
            out,
            "node_disk_read_bytes_total",
            "The total number of bytes read successfully.",
            v(5)? * SECTOR,
        );
        c(
            out,
            "node_disk_read_time_seconds_total",
            "The total number of seconds spent by all reads.",
            v(6)? / 1000.0,
        );
        c(
            out,
            "node_disk_writes_completed_total",
            "The total number of writes completed successfully.",
            v(7)?,
        );
        c(
            out,
            "node_disk_writes_merged_total",
            "The number of writes merged.",
            v(8)?,
        );
        c(
            out,
            "node_disk_written_bytes_total",
            "The total number of bytes written successfully.",
            v(9)? * SECTOR,
        );
        c(
            out,
            "node_disk_write_time_seconds_total",
            "This is the total number of seconds spent by all writes.",
            v(10)? / 1000.0,
        );
        out.gauge(
            "node_disk_io_now",
            "The number of I/Os currently in progress.",
            d,
            v(11)?,
        );
        c(
            out,
            "node_disk_io_time_seconds_total",
            "Total seconds spent doing I/Os.",
            v(12)? / 1000.0,
        );
        c(
            out,
            "node_disk_io_time_weighted_seconds_total",
            "The weighted # of seconds spent doing I/Os.",
            v(13)? / 1000.0,
        );
        if f.len() >= 18 {
            c(
                out,
                "node_disk_discards_completed_total",
                "The total number of discards completed successfully.",
                v(14)?,
            );
            c(
                out,
                "node_disk_discards_merged_total",
                "The total number of discards merged.",
                v(15)?,
            );
            c(
                out,
                "node_disk_discarded_sectors_total",
                "The total number of sectors discarded successfully.",
                v(16)?,
            );
            c(
                out,
                "node_disk_discard_time_seconds_total",
                "This is the total number of seconds spent by all discards.",
                v(17)? / 1000.0,
            );
        }
        if f.len() >= 20 {
            c(
                out,
                "node_disk_flush_requests_total",
                "The total number of flush requests completed successfully",
                v(18)?,
            );
            c(
                out,
                "node_disk_flush_requests_time_seconds_total",
                "This is the total number of seconds spent by all flush requests.",
                v(19)? / 1000.0,
            );
        }
    }
    Ok(())
}

/// node_exporter's default device exclusion, without a regex engine.
fn excluded(dev: &str) -> bool {
    let digits_at = dev.find(|c: char| c.is_ascii_digit());
    let Some(i) = digits_at else { return false };
    let (prefix, number) = dev.split_at(i);
    if !number.chars().all(|c| c.is_ascii_digit()) {
        // nvme0n1p1: prefix "nvme", the rest "0n1p1".
        let mut parts = dev.strip_prefix("nvme").map(|r| r.split(['n', 'p']));
        if let Some(parts) = parts.as_mut() {
            let v: Vec<&str> = parts.collect();
            return dev.contains('p')
                && v.len() == 3
                && v.iter()
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
        }
        return false;
    }
    matches!(prefix, "ram" | "zram" | "loop" | "fd")
        || (prefix.len() == 3
            && matches!(&prefix[..2], "hd" | "sd" | "vd")
            && prefix.as_bytes()[2].is_ascii_lowercase())
        || (prefix.len() == 4 && &prefix[..3] == "xvd" && prefix.as_bytes()[3].is_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusions_match_node_exporter() {
        for yes in [
            "loop0",
            "ram1",
            "zram0",
            "fd0",
            "sda1",
            "vda2",
            "hdb3",
            "xvda1",
            "nvme0n1p1",
        ] {
            assert!(excluded(yes), "{yes}");
        }
        for no in ["sda", "vda", "nvme0n1", "dm-0", "md0", "sr0", "mmcblk0"] {
            assert!(!excluded(no), "{no}");
        }
    }

    /// A value that is no number is named with its line, device and field, so the line at
    /// fault in a new kernel's format can be found.
    #[test]
    fn a_bad_value_names_its_line_device_and_field() {
        let mut f = Families::default();
        let e = parse_diskstats(
            " 254 0 vda 1 2 3 4 5 6 7 8 9 10 11\n   8 0 sda 1 x 3 4 5 6 7 8 9 10 11\n",
            std::path::Path::new("/proc/diskstats"),
            &mut f,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "unexpected content in /proc/diskstats: line 2, sda, field 5: \"x\" is not a number"
        );
    }

    #[test]
    fn units() {
        let mut f = Families::default();
        parse_diskstats(
            " 254 0 vda 776790 100 2000 3000 50 60 4000 5000 2 6000 7000 8 9 10 11 12 13\n   7 0 loop0 1 1 1 1 1 1 1 1 1 1 1\n",
            std::path::Path::new("/proc/diskstats"),
            &mut f,
        )
        .unwrap();
        let get = |n: &str| {
            f.get(n)
                .unwrap()
                .series_with(&[("device", "vda")])
                .unwrap()
                .value
                .as_gauge()
                .unwrap()
        };
        assert_eq!(get("node_disk_reads_completed_total"), 776790.0);
        assert_eq!(get("node_disk_read_bytes_total"), 2000.0 * 512.0);
        assert_eq!(get("node_disk_read_time_seconds_total"), 3.0);
        assert_eq!(get("node_disk_flush_requests_total"), 12.0);
        assert!(
            f.get("node_disk_io_now")
                .unwrap()
                .series_with(&[("device", "loop0")])
                .is_none()
        );
    }
}
