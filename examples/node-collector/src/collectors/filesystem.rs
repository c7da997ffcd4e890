//! Mounted filesystems: sizes and inodes from `statvfs`, read-only state, mount info.

use crate::bounded::{Bounded, Unanswered};
use crate::{CollectError, Collector, Families, Paths, read_bytes};

/// `node_filesystem_{size,free,avail}_bytes`, `node_filesystem_files`,
/// `node_filesystem_files_free`, `node_filesystem_readonly`, `node_filesystem_device_error`
/// `{device,device_error,fstype,mountpoint}` and `node_filesystem_mount_info`, for the mounts of
/// PID 1 (the host's view, as node_exporter reads it), excluding node_exporter's default
/// pseudo-filesystem types and mount points.
///
/// A filesystem of any type but the local ones known to answer at once (network, FUSE ...) is
/// asked on a thread of its own, for at most 5 s (node_exporter's
/// `--collector.filesystem.mount-timeout`): a hung NFS server costs one parked thread, reports
/// `device_error` and is skipped until that call returns, instead of stalling every scrape.
#[derive(Debug)]
pub struct Filesystem {
    /// Statistics calls that may hang, by mount point.
    calls: Bounded,
    /// Replace node_exporter's default exclusions when given.
    mount_points_exclude: Option<regex::Regex>,
    fs_types_exclude: Option<regex::Regex>,
}

impl Default for Filesystem {
    fn default() -> Self {
        Self::excluding(None, None)
    }
}

impl Filesystem {
    /// Leaving out the mount points and filesystem types the expressions match, instead of
    /// node_exporter's default ones (each `None` keeps its default).
    pub fn excluding(mount_points: Option<regex::Regex>, fs_types: Option<regex::Regex>) -> Self {
        Self {
            calls: Bounded::new("statvfs"),
            mount_points_exclude: mount_points,
            fs_types_exclude: fs_types,
        }
    }

    fn excluded_type(&self, fstype: &str) -> bool {
        match &self.fs_types_exclude {
            Some(re) => re.is_match(fstype),
            None => EXCLUDED_TYPES.contains(&fstype),
        }
    }

    fn excluded(&self, m: &Mount) -> bool {
        self.excluded_type(&m.fstype)
            || match &self.mount_points_exclude {
                Some(re) => re.is_match(&m.mountpoint),
                None => excluded_mount(&m.mountpoint),
            }
    }
}

/// How long a network filesystem may take to answer.
const MOUNT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether a statistics call on `fstype` may hang: every type but the disk and memory file
/// systems known to answer from the kernel at once. A list of the network ones (NFS, CIFS,
/// FUSE ...) always misses some (virtiofs, beegfs, gpfs, vboxsf), and one hung mount of an
/// unlisted type hung every scrape; node_exporter bounds every mount.
fn may_hang(fstype: &str) -> bool {
    !matches!(
        fstype,
        "ext2"
            | "ext3"
            | "ext4"
            | "xfs"
            | "btrfs"
            | "zfs"
            | "f2fs"
            | "jfs"
            | "reiserfs"
            | "vfat"
            | "exfat"
            | "ntfs3"
            | "hfsplus"
            | "squashfs"
            | "iso9660"
            | "tmpfs"
            | "ramfs"
            | "devtmpfs"
    )
}

impl Filesystem {
    fn statvfs(&self, path: std::path::PathBuf, m: &Mount) -> Result<rustix::fs::StatVfs, String> {
        if may_hang(&m.fstype) {
            self.calls
                .call(&m.mountpoint, MOUNT_TIMEOUT, move || {
                    rustix::fs::statvfs(path.as_path())
                })
                .map_err(|e| match e {
                    Unanswered::Unresponsive => "mount point is in an unresponsive state".into(),
                    Unanswered::Timeout(t) => format!("no answer within {t:?}"),
                    Unanswered::NoThread(e) => format!("cannot start a thread: {e}"),
                })?
                .map_err(|e| e.to_string())
        } else {
            rustix::fs::statvfs(path.as_path()).map_err(|e| e.to_string())
        }
    }
}

/// node_exporter's default `--collector.filesystem.fs-types-exclude`.
const EXCLUDED_TYPES: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "devfs",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "erofs",
    "sysfs",
    "tracefs",
];

/// node_exporter's default `--collector.filesystem.mount-points-exclude`:
/// `^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)`.
fn excluded_mount(mountpoint: &str) -> bool {
    let Some(rest) = mountpoint.strip_prefix('/') else {
        return false;
    };
    let under = |dir: &str| rest == dir || rest.starts_with(&format!("{dir}/"));
    let strictly_under =
        |dir: &str| rest.len() > dir.len() + 1 && rest.starts_with(&format!("{dir}/"));
    under("dev")
        || under("proc")
        || under("sys")
        || strictly_under("run/credentials")
        || strictly_under("var/lib/docker")
        || strictly_under("var/lib/containers/storage")
}

/// A mount point as the host names it: without the `--path.rootfs` prefix when the collector
/// runs in a container that sees the host's root there (`/host/boot` is `/boot`; `/host` is
/// `/`), as node_exporter strips it. Other mount points are kept.
fn strip_rootfs(root: &std::path::Path, mountpoint: String) -> String {
    let root = root.to_string_lossy();
    let root = root.trim_end_matches('/');
    if root.is_empty() {
        return mountpoint;
    }
    match mountpoint.strip_prefix(root) {
        Some("") => "/".to_owned(),
        Some(rest) if rest.starts_with('/') => rest.to_owned(),
        _ => mountpoint,
    }
}

/// One line of a mounts file (`/proc/<pid>/mounts`), with `\040`-style escapes decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The mounted device (`/dev/vda1`, `tmpfs`): the `device` label.
    pub device: String,
    /// Where it is mounted: the `mountpoint` label (bytes that are not UTF-8 read as
    /// U+FFFD).
    pub mountpoint: String,
    /// Where it is mounted, as the kernel has it (any bytes): the path `statvfs` is given.
    pub path: std::path::PathBuf,
    /// The filesystem type: the `fstype` label.
    pub fstype: String,
    /// Whether the options include `ro`.
    pub readonly: bool,
}

/// A mount field with the kernel's octal escapes (`\040` for a space) undone. The kernel
/// escapes only space, tab, newline and backslash; any other byte is written as it is, UTF-8
/// or not.
fn unescape(b: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = u16::from(b[i + 1] - b'0') * 64
                + u16::from(b[i + 2] - b'0') * 8
                + u16::from(b[i + 3] - b'0');
            // Above `\377` is no byte: kept as written.
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Bytes as a label value: UTF-8, with U+FFFD for bytes that are not.
fn label(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The mounts listed in the text of `/proc/<pid>/mounts`, in file order; lines with fewer than
/// four fields are skipped.
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    parse_mount_bytes(text.as_bytes())
}

/// [`parse_mounts`] of the file's bytes: a name that is not UTF-8 (written by the kernel as
/// it is) loses no other mount; its labels read U+FFFD for the bad bytes, and its
/// [`Mount::path`] keeps them.
pub(crate) fn parse_mount_bytes(bytes: &[u8]) -> Vec<Mount> {
    use std::os::unix::ffi::OsStringExt as _;
    bytes
        .split(|b| *b == b'\n')
        .filter_map(|line| {
            let f: Vec<&[u8]> = line
                .split(u8::is_ascii_whitespace)
                .filter(|f| !f.is_empty())
                .collect();
            if f.len() < 4 {
                return None;
            }
            let mountpoint = unescape(f[1]);
            Some(Mount {
                device: label(&unescape(f[0])),
                mountpoint: label(&mountpoint),
                path: std::ffi::OsString::from_vec(mountpoint).into(),
                fstype: label(f[2]),
                readonly: f[3].split(|b| *b == b',').any(|o| o == b"ro"),
            })
        })
        .collect()
}

impl Collector for Filesystem {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn collect(&self, paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        let mounts_path = paths.proc("1/mounts");
        let text = match read_bytes(mounts_path) {
            Ok(t) => t,
            // Without access to PID 1 (an unprivileged container), our own view.
            Err(_) => read_bytes(paths.proc("self/mounts"))?,
        };
        let mut seen = std::collections::HashSet::new();
        // Last first: of mounts stacked on one point, the last one mounted is the one visible
        // there (what `statvfs` measures), and the one reported.
        for mut m in parse_mount_bytes(&text).into_iter().rev() {
            m.mountpoint = strip_rootfs(&paths.root, m.mountpoint);
            if self.excluded(&m) {
                continue;
            }
            if !seen.insert(m.mountpoint.clone()) {
                continue;
            }
            let labels = |err: &str| -> Vec<(String, String)> {
                vec![
                    ("device".into(), m.device.clone()),
                    ("device_error".into(), err.to_owned()),
                    ("fstype".into(), m.fstype.clone()),
                    ("mountpoint".into(), m.mountpoint.clone()),
                ]
            };
            // The kernel's path: under the root file system's prefix already, or put there.
            let path = if m.path.starts_with(&paths.root) {
                m.path.clone()
            } else {
                paths.root.join(m.path.strip_prefix("/").unwrap_or(&m.path))
            };
            match self.statvfs(path, &m) {
                Ok(st) => {
                    let l = labels("");
                    let l: Vec<(&str, &str)> =
                        l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    let bs = st.f_frsize as f64;
                    out.gauge(
                        "node_filesystem_size_bytes",
                        "Filesystem size in bytes.",
                        &l,
                        st.f_blocks as f64 * bs,
                    );
                    out.gauge(
                        "node_filesystem_free_bytes",
                        "Filesystem free space in bytes.",
                        &l,
                        st.f_bfree as f64 * bs,
                    );
                    out.gauge(
                        "node_filesystem_avail_bytes",
                        "Filesystem space available to non-root users in bytes.",
                        &l,
                        st.f_bavail as f64 * bs,
                    );
                    out.gauge(
                        "node_filesystem_files",
                        "Filesystem total file nodes.",
                        &l,
                        st.f_files as f64,
                    );
                    out.gauge(
                        "node_filesystem_files_free",
                        "Filesystem total free file nodes.",
                        &l,
                        st.f_ffree as f64,
                    );
                    out.gauge(
                        "node_filesystem_readonly",
                        "Filesystem read-only status.",
                        &l,
                        if m.readonly { 1.0 } else { 0.0 },
                    );
                    out.gauge(
                        "node_filesystem_device_error",
                        "Whether an error occurred while getting statistics for the given device.",
                        &l,
                        0.0,
                    );
                }
                Err(e) => {
                    let l = labels(&e);
                    let l: Vec<(&str, &str)> =
                        l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    out.gauge(
                        "node_filesystem_device_error",
                        "Whether an error occurred while getting statistics for the given device.",
                        &l,
                        1.0,
                    );
                }
            }
        }
        // Mount information (device numbers) from mountinfo, for the same mounts.
        if let Ok(info) = read_bytes(paths.proc("1/mountinfo"))
            .or_else(|_| read_bytes(paths.proc("self/mountinfo")))
        {
            let mut seen_info = std::collections::HashSet::new();
            // Last first, as above: the top of a stack of mounts. Fields as bytes, as in the
            // mounts file: a name that is not UTF-8 is written as it is.
            for line in info.split(|b| *b == b'\n').rev() {
                let fields: Vec<&[u8]> = line
                    .split(u8::is_ascii_whitespace)
                    .filter(|f| !f.is_empty())
                    .collect();
                let Some(sep) = fields.iter().position(|f| *f == b"-") else {
                    continue;
                };
                let (l, r) = (&fields[..sep], &fields[sep + 1..]);
                if l.len() < 5 || r.len() < 2 {
                    continue;
                }
                let mountpoint = strip_rootfs(&paths.root, label(&unescape(l[4])));
                let fstype = label(r[0]);
                if !seen.contains(&mountpoint) || self.excluded_type(&fstype) {
                    continue;
                }
                if !seen_info.insert(mountpoint.clone()) {
                    continue;
                }
                let numbers = label(l[2]);
                let (major, minor) = numbers.split_once(':').unwrap_or((&numbers, ""));
                let device = label(&unescape(r[1]));
                out.gauge(
                    "node_filesystem_mount_info",
                    "Filesystem mount information.",
                    &[
                        ("device", &device),
                        ("major", major),
                        ("minor", minor),
                        ("mountpoint", &mountpoint),
                    ],
                    1.0,
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_but_the_known_local_ones_is_bounded() {
        for t in [
            "nfs4",
            "cifs",
            "fuse.sshfs",
            "virtiofs",
            "beegfs",
            "gpfs",
            "overlay",
        ] {
            assert!(may_hang(t), "{t}");
        }
        for t in ["ext4", "xfs", "btrfs", "tmpfs", "vfat"] {
            assert!(!may_hang(t), "{t}");
        }
    }

    #[test]
    fn stacked_mounts_report_the_top_one() {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path().join("proc");
        std::fs::create_dir_all(proc.join("1")).unwrap();
        std::fs::write(
            proc.join("1/mounts"),
            "/dev/sdb1 / ext4 rw 0 0\n/dev/sda1 / xfs rw,relatime 0 0\n",
        )
        .unwrap();
        let paths = Paths {
            proc,
            root: dir.path().to_owned(),
            ..Paths::default()
        };
        let mut f = Families::default();
        Filesystem::default().collect(&paths, &mut f).unwrap();
        let size = f.get("node_filesystem_size_bytes").unwrap();
        assert_eq!(size.series.len(), 1);
        assert!(
            size.series_with(&[
                ("device", "/dev/sda1"),
                ("device_error", ""),
                ("fstype", "xfs"),
                ("mountpoint", "/"),
            ])
            .is_some(),
            "{:?}",
            size.series
        );
    }

    /// The kernel writes bytes other than space, tab, newline and backslash as they are: a
    /// mount point that is not UTF-8 is reported (its label with U+FFFD, its statistics read
    /// through its real path), and the other mounts with it.
    #[test]
    fn a_mount_point_that_is_not_utf8_loses_nothing() {
        use std::os::unix::ffi::OsStrExt as _;
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path().join("proc");
        std::fs::create_dir_all(proc.join("1")).unwrap();
        let latin1 = std::ffi::OsStr::from_bytes(b"caf\xe9");
        std::fs::create_dir_all(dir.path().join("mnt").join(latin1)).unwrap();
        std::fs::write(
            proc.join("1/mounts"),
            b"/dev/sdb1 /mnt/caf\xe9 ext4 rw 0 0\n/dev/sda1 / ext4 rw 0 0\n",
        )
        .unwrap();
        std::fs::write(
            proc.join("1/mountinfo"),
            b"36 35 8:17 / /mnt/caf\xe9 rw,noatime shared:1 - ext4 /dev/sdb1 rw\n\
              25 1 8:1 / / rw - ext4 /dev/sda1 rw\n",
        )
        .unwrap();
        let paths = Paths {
            proc,
            root: dir.path().to_owned(),
            ..Paths::default()
        };
        let mut f = Families::default();
        Filesystem::default().collect(&paths, &mut f).unwrap();
        let size = f.get("node_filesystem_size_bytes").unwrap();
        assert_eq!(size.series.len(), 2, "{:?}", size.series);
        for (device, mountpoint) in [("/dev/sda1", "/"), ("/dev/sdb1", "/mnt/caf\u{fffd}")] {
            assert!(
                size.series_with(&[
                    ("device", device),
                    ("device_error", ""),
                    ("fstype", "ext4"),
                    ("mountpoint", mountpoint),
                ])
                .is_some(),
                "{mountpoint}: {:?}",
                size.series
            );
        }
        let info = f.get("node_filesystem_mount_info").unwrap();
        assert!(
            info.series_with(&[
                ("device", "/dev/sdb1"),
                ("major", "8"),
                ("minor", "17"),
                ("mountpoint", "/mnt/caf\u{fffd}"),
            ])
            .is_some(),
            "{:?}",
            info.series
        );
    }

    #[test]
    fn the_rootfs_prefix_is_stripped_from_mount_points() {
        let host = std::path::Path::new("/host/");
        for (given, host_name) in [
            ("/host", "/"),
            ("/host/boot", "/boot"),
            ("/hostile", "/hostile"),
            ("/etc/hosts", "/etc/hosts"),
        ] {
            assert_eq!(strip_rootfs(host, given.to_owned()), host_name, "{given}");
        }
        assert_eq!(
            strip_rootfs(std::path::Path::new("/"), "/boot".into()),
            "/boot"
        );
    }

    #[test]
    fn mount_point_exclusions() {
        for yes in [
            "/dev",
            "/dev/shm",
            "/proc",
            "/sys/fs/cgroup",
            "/run/credentials/x.service",
            "/var/lib/docker/overlay2/abc",
        ] {
            assert!(excluded_mount(yes), "{yes}");
        }
        for no in [
            "/",
            "/home",
            "/devices",
            "/run",
            "/run/credentials",
            "/var/lib/docker",
            "/mnt/data",
        ] {
            assert!(!excluded_mount(no), "{no}");
        }
    }

    #[test]
    fn mounts_parse_with_escapes() {
        let m = parse_mounts("/dev/sdb1 /mnt/my\\040disk ext4 ro,relatime 0 0\n");
        assert_eq!(m[0].mountpoint, "/mnt/my disk");
        // UTF-8 names stay whole; an escaped UTF-8 byte sequence too; `\7xx` is no byte.
        let m = parse_mounts(
            "/dev/sdc1 /mnt/données ext4 rw 0 0\n/dev/sdd1 /mnt/caf\\303\\251 ext4 rw 0 0\n/dev/sde1 /mnt/x\\777 ext4 rw 0 0\n",
        );
        assert_eq!(m[0].mountpoint, "/mnt/données");
        assert_eq!(m[1].mountpoint, "/mnt/café");
        assert_eq!(m[2].mountpoint, "/mnt/x\\777");
        let m = parse_mounts("/dev/sdb1 /mnt/my\\040disk ext4 ro,relatime 0 0\n");
        assert!(m[0].readonly);
        assert_eq!(m[0].fstype, "ext4");
    }
}
