//! The collectors, one module per source.

pub(crate) mod conntrack;
pub(crate) mod disk;
pub(crate) mod filesystem;
pub(crate) mod kernel;
pub(crate) mod memory;
mod netclass;
pub(crate) mod network;
pub(crate) mod schedstat;
pub(crate) mod stat;
mod system;
pub(crate) mod udp_queues;

use crate::Collector;

pub use conntrack::Conntrack;
pub use disk::DiskStats;
pub use filesystem::Filesystem;
pub use kernel::{Entropy, FileFd, KernelHung, LoadAvg, Pressure, Selinux};
pub use memory::{MemInfo, VmStat};
pub use netclass::NetClass;
pub use network::{Arp, NetDev, NetStat, SockStat, SoftNet};
pub use schedstat::Schedstat;
pub use stat::{Cpu, Stat};
pub use system::{Os, Time, Uname};
pub use udp_queues::UdpQueues;

/// Clock ticks per second of `/proc/stat` times (USER_HZ, 100 on every Linux architecture
/// node_exporter supports; it assumes the same).
pub(crate) const USER_HZ: f64 = 100.0;

/// What collectors leave out, as node_exporter's exclusion flags: a regular expression that
/// matches anywhere in the name (anchor it with `^...$`, as node_exporter's defaults are).
/// `None` keeps node_exporter's default.
#[derive(Clone, Debug, Default)]
pub struct Exclusions {
    /// Mount points the `filesystem` collector leaves out
    /// (`--collector.filesystem.mount-points-exclude`; default
    /// `^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)`).
    pub mount_points: Option<regex::Regex>,
    /// Filesystem types the `filesystem` collector leaves out
    /// (`--collector.filesystem.fs-types-exclude`; default: the pseudo filesystems, `autofs`
    /// to `tracefs`).
    pub fs_types: Option<regex::Regex>,
    /// Devices the `diskstats` collector leaves out (`--collector.diskstats.device-exclude`;
    /// default `^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$`).
    pub disk_devices: Option<regex::Regex>,
    /// Interfaces the `netdev` collector leaves out (`--collector.netdev.device-exclude`;
    /// default none), such as containers' `veth` pairs.
    pub netdev_devices: Option<regex::Regex>,
    /// Interfaces the `netclass` collector leaves out
    /// (`--collector.netclass.ignored-devices`; default none).
    pub netclass_devices: Option<regex::Regex>,
}

/// Every collector, in node_exporter's alphabetical order, with node_exporter's default
/// exclusions.
pub fn all() -> Vec<Box<dyn Collector>> {
    all_with(&Exclusions::default())
}

/// Every collector, in node_exporter's alphabetical order, leaving out what `exclusions` says.
pub fn all_with(exclusions: &Exclusions) -> Vec<Box<dyn Collector>> {
    vec![
        Box::new(Arp),
        Box::new(Conntrack),
        Box::new(Cpu::default()),
        Box::new(DiskStats::excluding(exclusions.disk_devices.clone())),
        Box::new(Entropy),
        Box::new(FileFd),
        Box::new(Filesystem::excluding(
            exclusions.mount_points.clone(),
            exclusions.fs_types.clone(),
        )),
        Box::new(KernelHung),
        Box::new(LoadAvg),
        Box::new(MemInfo),
        Box::new(NetClass::excluding(exclusions.netclass_devices.clone())),
        Box::new(NetDev::excluding(exclusions.netdev_devices.clone())),
        Box::new(NetStat),
        Box::new(Os),
        Box::new(Pressure),
        Box::new(Schedstat),
        Box::new(Selinux),
        Box::new(SockStat),
        Box::new(SoftNet),
        Box::new(Stat),
        Box::new(Time),
        Box::new(UdpQueues),
        Box::new(Uname),
        Box::new(VmStat),
    ]
}

/// Parses a number, naming the file on failure.
pub(crate) fn num(s: &str, path: &std::path::Path) -> Result<f64, crate::CollectError> {
    s.parse::<f64>().map_err(|_| crate::CollectError::Parse {
        path: path.to_owned(),
        detail: format!("{s:?} is not a number"),
    })
}

/// [`num`], the error naming where in the file too (`line 4, sda, field 6`).
pub(crate) fn num_at(
    s: &str,
    path: &std::path::Path,
    place: impl FnOnce() -> String,
) -> Result<f64, crate::CollectError> {
    num(s, path).map_err(|e| match e {
        crate::CollectError::Parse { path, detail } => crate::CollectError::Parse {
            path,
            detail: format!("{}: {detail}", place()),
        },
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Node, Paths};

    /// A `/proc`, `/sys` and root with two disks, two interfaces and three mounts.
    fn fixture(dir: &std::path::Path) -> Paths {
        let (proc, sys) = (dir.join("proc"), dir.join("sys"));
        for d in [
            proc.join("1"),
            proc.join("net"),
            dir.join("run/user/1000"),
            dir.join("data"),
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(
            proc.join("1/mounts"),
            "/dev/sda1 / ext4 rw 0 0\ntmpfs /run/user/1000 tmpfs rw 0 0\n/dev/sdb1 /data xfs rw 0 0\n",
        )
        .unwrap();
        let zeros = "0 ".repeat(17);
        std::fs::write(
            proc.join("diskstats"),
            format!("   8 0 sda {zeros}\n   8 1 sda1 {zeros}\n   7 0 loop0 {zeros}\n"),
        )
        .unwrap();
        let counters = "1 ".repeat(16);
        std::fs::write(
            proc.join("net/dev"),
            format!(
                "Inter-| Receive | Transmit\n face |bytes ...\n  eth0: {counters}\nveth1a2b: {counters}\n"
            ),
        )
        .unwrap();
        for dev in ["eth0", "veth1a2b"] {
            let d = sys.join("class/net").join(dev);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("mtu"), "1500\n").unwrap();
        }
        Paths {
            proc,
            sys,
            root: dir.to_owned(),
        }
    }

    fn has(text: &str, metric: &str, label: &str) -> bool {
        text.lines()
            .any(|l| l.starts_with(&format!("{metric}{{")) && l.contains(label))
    }

    /// node_exporter's exclusion flags: each replaces its default.
    #[test]
    fn exclusions_replace_node_exporters_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let paths = fixture(dir.path());
        let names = ["filesystem", "diskstats", "netdev", "netclass"];
        let size = "node_filesystem_size_bytes";
        let (disk, net, mtu) = (
            "node_disk_reads_completed_total",
            "node_network_receive_bytes_total",
            "node_network_mtu_bytes",
        );

        let text = Node::with_exclusions(paths.clone(), &names, &Exclusions::default()).render();
        for (metric, label, shown) in [
            (size, r#"mountpoint="/""#, true),
            (size, r#"mountpoint="/run/user/1000""#, true),
            (size, r#"mountpoint="/data""#, true),
            (disk, r#"device="sda""#, true),
            (disk, r#"device="sda1""#, false),
            (disk, r#"device="loop0""#, false),
            (net, r#"device="veth1a2b""#, true),
            (mtu, r#"device="veth1a2b""#, true),
        ] {
            assert_eq!(has(&text, metric, label), shown, "{metric} {label}\n{text}");
        }

        let re = |s: &str| Some(regex::Regex::new(s).unwrap());
        let exclusions = Exclusions {
            mount_points: re("^/run/"),
            fs_types: re("^xfs$"),
            disk_devices: re("^sd"),
            netdev_devices: re("^veth"),
            netclass_devices: re("^veth"),
        };
        let text = Node::with_exclusions(paths, &names, &exclusions).render();
        for (metric, label, shown) in [
            (size, r#"mountpoint="/""#, true),
            (size, r#"mountpoint="/run/user/1000""#, false),
            (size, r#"mountpoint="/data""#, false),
            (disk, r#"device="sda""#, false),
            (disk, r#"device="sda1""#, false),
            (disk, r#"device="loop0""#, true),
            (net, r#"device="eth0""#, true),
            (net, r#"device="veth1a2b""#, false),
            (mtu, r#"device="eth0""#, true),
            (mtu, r#"device="veth1a2b""#, false),
        ] {
            assert_eq!(has(&text, metric, label), shown, "{metric} {label}\n{text}");
        }
    }
}
