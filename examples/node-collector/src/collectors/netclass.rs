//! `/sys/class/net/<device>`: link properties, as node_exporter's `netclass` collector reports
//! them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use crate::{CollectError, Collector, Families, Paths};

/// `node_network_{up,carrier,mtu_bytes,speed_bytes,flags,...}{device}` and `node_network_info`.
///
/// Keeps the attribute files of up to 16 interfaces open between scrapes (see `Device`); a
/// scrape holds them under a lock, so two concurrent scrapes read them one after the other.
#[derive(Default)]
pub struct NetClass {
    open: Mutex<HashMap<String, Device>>,
    exclude: Option<regex::Regex>,
}

impl NetClass {
    /// Leaving out the interfaces `exclude` matches (node_exporter's
    /// `--collector.netclass.ignored-devices`).
    pub fn excluding(exclude: Option<regex::Regex>) -> Self {
        Self {
            open: Mutex::default(),
            exclude,
        }
    }
}

impl std::fmt::Debug for NetClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("NetClass")
            .field("kept_open", &open.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// (sysfs file, metric name, HELP, counter?) for the numeric properties.
const PROPERTIES: [(&str, &str, &str, bool); 14] = [
    (
        "addr_assign_type",
        "node_network_address_assign_type",
        "Network device property: address_assign_type",
        false,
    ),
    (
        "carrier",
        "node_network_carrier",
        "Network device property: carrier",
        false,
    ),
    (
        "carrier_changes",
        "node_network_carrier_changes_total",
        "Network device property: carrier_changes_total",
        true,
    ),
    (
        "carrier_up_count",
        "node_network_carrier_up_changes_total",
        "Network device property: carrier_up_changes_total",
        true,
    ),
    (
        "carrier_down_count",
        "node_network_carrier_down_changes_total",
        "Network device property: carrier_down_changes_total",
        true,
    ),
    (
        "dev_id",
        "node_network_device_id",
        "Network device property: device_id",
        false,
    ),
    (
        "dormant",
        "node_network_dormant",
        "Network device property: dormant",
        false,
    ),
    (
        "flags",
        "node_network_flags",
        "Network device property: flags",
        false,
    ),
    (
        "ifindex",
        "node_network_iface_id",
        "Network device property: iface_id",
        false,
    ),
    (
        "iflink",
        "node_network_iface_link",
        "Network device property: iface_link",
        false,
    ),
    (
        "link_mode",
        "node_network_iface_link_mode",
        "Network device property: iface_link_mode",
        false,
    ),
    (
        "mtu",
        "node_network_mtu_bytes",
        "Network device property: mtu_bytes",
        false,
    ),
    (
        "name_assign_type",
        "node_network_name_assign_type",
        "Network device property: name_assign_type",
        false,
    ),
    (
        "netdev_group",
        "node_network_net_dev_group",
        "Network device property: net_dev_group",
        false,
    ),
];

/// Interfaces whose attribute files stay open between scrapes; others (a host with hundreds of
/// virtual interfaces) are opened and closed at every scrape. About 25 descriptors each, so at
/// most 400 are held, well under the usual limit of 1024.
const MAX_KEPT_OPEN: usize = 16;

/// One interface's folder and the attribute files read from it, kept open between scrapes.
///
/// Opening a sysfs file is most of what reading it costs (path walk through
/// `/sys/class/net/<device>` and its symbolic link into `/sys/devices`, then kernfs's own open);
/// reading an open attribute again from offset 0 makes the kernel format it afresh. The folder
/// is opened once (`O_PATH`) and its inode remembered: a device removed and re-created under the
/// same name has a new inode, so its files are opened again; a removed device's files answer
/// `ENODEV`, which drops them too.
struct Device {
    ino: u64,
    dir: rustix::fd::OwnedFd,
    files: HashMap<&'static str, Option<std::fs::File>>,
    gone: bool,
}

impl Device {
    fn open(path: &Path, ino: u64) -> Option<Self> {
        use rustix::fs::{Mode, OFlags};
        let dir = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        Some(Self {
            ino,
            dir,
            files: HashMap::with_capacity(32),
            gone: false,
        })
    }

    /// A sysfs attribute, trimmed: at most a page, returned whole by one `pread` at offset 0.
    /// `None` when it is missing or unreadable (a down link's `carrier` answers `EINVAL`).
    fn read_trim(&mut self, name: &'static str) -> Option<String> {
        use rustix::fs::{Mode, OFlags};
        use std::os::unix::fs::FileExt;
        let dir = &self.dir;
        let file = self
            .files
            .entry(name)
            .or_insert_with(|| {
                rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                    .ok()
                    .map(std::fs::File::from)
            })
            .as_ref()?;
        let mut buf = [0u8; 4096];
        let n = match file.read_at(&mut buf, 0) {
            Ok(n) => n,
            Err(e) => {
                if e.raw_os_error() == Some(rustix::io::Errno::NODEV.raw_os_error()) {
                    self.gone = true;
                }
                return None;
            }
        };
        std::str::from_utf8(&buf[..n])
            .ok()
            .map(|s| s.trim().to_owned())
    }
}

/// Decimal or `0x` hexadecimal (`flags`, `dev_id`).
fn number(s: &str) -> Option<f64> {
    match s.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16).ok().map(|v| v as f64),
        None => s.parse::<f64>().ok(),
    }
}

impl Collector for NetClass {
    fn name(&self) -> &'static str {
        "netclass"
    }

    fn collect(&self, paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        let base = paths.sys("class/net");
        let dir = std::fs::read_dir(&base).map_err(|source| CollectError::Io {
            path: base.clone(),
            source,
        })?;
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let mut listed = std::collections::HashSet::new();
        for entry in dir.flatten() {
            let dev = entry.file_name().to_string_lossy().into_owned();
            if self.exclude.as_ref().is_some_and(|re| re.is_match(&dev)) {
                continue;
            }
            let path = entry.path();
            // Gone since the listing: nothing to report for it.
            let Ok(ino) = rustix::fs::stat(&path).map(|st| st.st_ino) else {
                continue;
            };
            listed.insert(dev.clone());
            let mut p = match open.remove(&dev) {
                Some(kept) if kept.ino == ino => kept,
                _ => match Device::open(&path, ino) {
                    Some(d) => d,
                    None => continue,
                },
            };
            let d = [("device", dev.as_str())];
            let mut flags = 0;
            for (file, name, help, counter) in PROPERTIES {
                // Unreadable attributes (carrier of a down link answers EINVAL) are skipped, as
                // node_exporter does.
                let Some(v) = p.read_trim(file).as_deref().and_then(number) else {
                    continue;
                };
                if file == "flags" {
                    flags = v as i64;
                }
                if counter {
                    out.counter(name, help, &d, v);
                } else {
                    out.gauge(name, help, &d, v);
                }
            }
            if let Some(v) = p.read_trim("type").as_deref().and_then(number) {
                out.gauge(
                    "node_network_protocol_type",
                    "Network device property: protocol_type",
                    &d,
                    v,
                );
            }
            if let Some(v) = p.read_trim("speed").as_deref().and_then(number) {
                // Mbit/s to bytes/s; an unknown speed (-1) stays negative, as node_exporter has it.
                out.gauge(
                    "node_network_speed_bytes",
                    "Network device property: speed_bytes",
                    &d,
                    v * 125_000.0,
                );
            }
            if let Some(v) = p.read_trim("tx_queue_len").as_deref().and_then(number) {
                out.gauge(
                    "node_network_transmit_queue_length",
                    "Network device property: transmit_queue_length",
                    &d,
                    v,
                );
            }
            let operstate = p.read_trim("operstate").unwrap_or_default();
            out.gauge(
                "node_network_up",
                "Value is 1 if operstate is 'up', 0 otherwise.",
                &d,
                if operstate == "up" { 1.0 } else { 0.0 },
            );
            let mut text = |f: &'static str| p.read_trim(f).unwrap_or_default();
            out.gauge(
                "node_network_info",
                "Non-numeric data from /sys/class/net/<iface>, value is always 1.",
                &[
                    ("address", &text("address")),
                    ("adminstate", if flags & 1 == 1 { "up" } else { "down" }),
                    ("broadcast", &text("broadcast")),
                    ("device", &dev),
                    ("duplex", &text("duplex")),
                    ("ifalias", &text("ifalias")),
                    ("operstate", &operstate),
                ],
                1.0,
            );
            if !p.gone && open.len() < MAX_KEPT_OPEN {
                open.insert(dev, p);
            }
        }
        // Interfaces gone from the listing: close their files.
        open.retain(|dev, _| listed.contains(dev));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(root: &Path, dev: &str, mtu: &str, address: &str) {
        let d = root.join("class/net").join(dev);
        std::fs::create_dir_all(&d).unwrap();
        for (file, value) in [
            ("mtu", mtu),
            ("flags", "0x1003"),
            ("operstate", "up"),
            ("address", address),
            ("ifindex", "2"),
        ] {
            std::fs::write(d.join(file), format!("{value}\n")).unwrap();
        }
    }

    fn gauge(f: &Families, name: &str, dev: &str) -> Option<f64> {
        f.get(name)?
            .series_with(&[("device", dev)])?
            .value
            .as_gauge()
    }

    /// Whether `node_network_info` has a series carrying all of `labels`.
    fn info_has(f: &Families, labels: &[(&str, &str)]) -> bool {
        f.get("node_network_info").unwrap().series.iter().any(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
        })
    }

    fn scrape(c: &NetClass, paths: &Paths) -> Families {
        let mut f = Families::default();
        c.collect(paths, &mut f).unwrap();
        f
    }

    #[test]
    fn kept_open_files_show_new_values_and_new_devices() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            sys: dir.path().to_owned(),
            ..Paths::default()
        };
        device(dir.path(), "eth0", "1500", "02:00:00:00:00:01");
        let c = NetClass::default();
        let f = scrape(&c, &paths);
        assert_eq!(gauge(&f, "node_network_mtu_bytes", "eth0"), Some(1500.0));
        assert_eq!(gauge(&f, "node_network_flags", "eth0"), Some(4099.0));
        assert_eq!(gauge(&f, "node_network_up", "eth0"), Some(1.0));
        assert!(info_has(
            &f,
            &[
                ("device", "eth0"),
                ("address", "02:00:00:00:00:01"),
                ("adminstate", "up")
            ]
        ));
        assert!(format!("{c:?}").contains("eth0"), "kept open: {c:?}");

        // The same file rewritten: the kept descriptor reads the new value.
        std::fs::write(dir.path().join("class/net/eth0/mtu"), "9000\n").unwrap();
        let f = scrape(&c, &paths);
        assert_eq!(gauge(&f, "node_network_mtu_bytes", "eth0"), Some(9000.0));

        // Removed and created again under the same name: a new folder, read afresh. (Made
        // before the old one is removed, so the filesystem cannot hand it the old inode number;
        // sysfs never reuses one.)
        device(dir.path(), "eth0.new", "1280", "02:00:00:00:00:02");
        std::fs::remove_dir_all(dir.path().join("class/net/eth0")).unwrap();
        std::fs::rename(
            dir.path().join("class/net/eth0.new"),
            dir.path().join("class/net/eth0"),
        )
        .unwrap();
        let f = scrape(&c, &paths);
        assert_eq!(gauge(&f, "node_network_mtu_bytes", "eth0"), Some(1280.0));
        assert!(info_has(
            &f,
            &[("device", "eth0"), ("address", "02:00:00:00:00:02")]
        ));

        // Gone: no series, and its files are closed.
        std::fs::remove_dir_all(dir.path().join("class/net/eth0")).unwrap();
        device(dir.path(), "eth1", "1500", "02:00:00:00:00:03");
        let f = scrape(&c, &paths);
        assert_eq!(gauge(&f, "node_network_mtu_bytes", "eth0"), None);
        assert_eq!(gauge(&f, "node_network_mtu_bytes", "eth1"), Some(1500.0));
        let kept = format!("{c:?}");
        assert!(!kept.contains("eth0") && kept.contains("eth1"), "{kept}");
    }

    #[test]
    fn at_most_sixteen_interfaces_are_kept_open() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            sys: dir.path().to_owned(),
            ..Paths::default()
        };
        for i in 0..20 {
            device(dir.path(), &format!("veth{i}"), "1500", "02:00:00:00:00:01");
        }
        let c = NetClass::default();
        let f = scrape(&c, &paths);
        // Every interface is reported; only the first 16 stay open.
        assert_eq!(f.get("node_network_mtu_bytes").unwrap().series.len(), 20);
        assert_eq!(
            c.open.lock().unwrap().len(),
            MAX_KEPT_OPEN,
            "kept open: {c:?}"
        );
    }
}
