//! The collectors, one module per source.

pub(crate) mod conntrack;
pub(crate) mod disk;
pub(crate) mod filesystem;
pub(crate) mod kernel;
pub(crate) mod memory;
mod netclass;
pub(crate) mod network;
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
pub use stat::{Cpu, Stat};
pub use system::{Os, Time, Uname};
pub use udp_queues::UdpQueues;

/// Clock ticks per second of `/proc/stat` times (USER_HZ, 100 on every Linux architecture
/// node_exporter supports; it assumes the same).
pub(crate) const USER_HZ: f64 = 100.0;

/// Every collector, in node_exporter's alphabetical order.
pub fn all() -> Vec<Box<dyn Collector>> {
    vec![
        Box::new(Arp),
        Box::new(Conntrack),
        Box::new(Cpu::default()),
        Box::new(DiskStats),
        Box::new(Entropy),
        Box::new(FileFd),
        Box::new(Filesystem::default()),
        Box::new(KernelHung),
        Box::new(LoadAvg),
        Box::new(MemInfo),
        Box::new(NetClass::default()),
        Box::new(NetDev),
        Box::new(NetStat),
        Box::new(Os),
        Box::new(Pressure),
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
