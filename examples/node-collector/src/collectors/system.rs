//! System identity and time: uname, os-release, clock.

use crate::{CollectError, Collector, Families, Paths, read};

/// `node_uname_info{domainname,machine,nodename,release,sysname,version}`.
#[derive(Debug)]
pub struct Uname;

/// `node_os_info` and `node_os_version` from `/etc/os-release` (or `/usr/lib/os-release`).
#[derive(Debug)]
pub struct Os;

/// `node_time_seconds`, `node_time_clocksource_{available,current}_info`, and
/// `node_time_zone_offset_seconds` when the system clock is in UTC.
#[derive(Debug)]
pub struct Time;

impl Collector for Uname {
    fn name(&self) -> &'static str {
        "uname"
    }

    fn collect(&self, _paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        let u = rustix::system::uname();
        let s = |c: &std::ffi::CStr| c.to_string_lossy().into_owned();
        let domain = s(u.domainname());
        out.gauge(
            "node_uname_info",
            "Labeled system information as provided by the uname system call.",
            &[
                (
                    "domainname",
                    if domain.is_empty() { "(none)" } else { &domain },
                ),
                ("machine", &s(u.machine())),
                ("nodename", &s(u.nodename())),
                ("release", &s(u.release())),
                ("sysname", &s(u.sysname())),
                ("version", &s(u.version())),
            ],
            1.0,
        );
        Ok(())
    }
}

const OS_LABELS: [(&str, &str); 12] = [
    ("build_id", "BUILD_ID"),
    ("id", "ID"),
    ("id_like", "ID_LIKE"),
    ("image_id", "IMAGE_ID"),
    ("image_version", "IMAGE_VERSION"),
    ("name", "NAME"),
    ("pretty_name", "PRETTY_NAME"),
    ("variant", "VARIANT"),
    ("variant_id", "VARIANT_ID"),
    ("version", "VERSION"),
    ("version_codename", "VERSION_CODENAME"),
    ("version_id", "VERSION_ID"),
];

pub(crate) fn parse_os_release(text: &str) -> std::collections::HashMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.starts_with('#') {
                return None;
            }
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
                .unwrap_or(v);
            Some((k.trim().to_owned(), v.replace("\\\"", "\"")))
        })
        .collect()
}

impl Collector for Os {
    fn name(&self) -> &'static str {
        "os"
    }

    fn collect(&self, paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        let text = read(paths.root("etc/os-release"))
            .or_else(|_| read(paths.root("usr/lib/os-release")))?;
        let kv = parse_os_release(&text);
        let get = |k: &str| kv.get(k).map(String::as_str).unwrap_or("");
        let labels: Vec<(&str, &str)> = OS_LABELS.iter().map(|(l, k)| (*l, get(k))).collect();
        out.gauge(
            "node_os_info",
            "A metric with a constant '1' value labeled by build_id, id, id_like, image_id, image_version, name, pretty_name, variant, variant_id, version, version_codename, version_id.",
            &labels,
            1.0,
        );
        // major.minor of VERSION_ID ("22.04.3" -> 22.04).
        let mut parts = get("VERSION_ID").split('.');
        let major = parts.next().unwrap_or("");
        let version = match parts.next() {
            Some(minor) => format!("{major}.{minor}"),
            None => major.to_owned(),
        };
        if let Ok(v) = version.parse::<f64>() {
            out.gauge(
                "node_os_version",
                "Metric containing the major.minor part of the OS version.",
                &[
                    ("id", get("ID")),
                    ("id_like", get("ID_LIKE")),
                    ("name", get("NAME")),
                ],
                v,
            );
        }
        Ok(())
    }
}

impl Collector for Time {
    fn name(&self) -> &'static str {
        "time"
    }

    fn collect(&self, paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        out.gauge(
            "node_time_seconds",
            "System time in seconds since epoch (1970).",
            &[],
            now,
        );
        if utc(paths) {
            out.gauge(
                "node_time_zone_offset_seconds",
                "System time zone offset in seconds.",
                &[("time_zone", "UTC")],
                0.0,
            );
        }
        let base = paths.sys("devices/system/clocksource");
        if let Ok(dir) = std::fs::read_dir(&base) {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(device) = name.strip_prefix("clocksource") else {
                    continue;
                };
                if let Ok(avail) =
                    std::fs::read_to_string(entry.path().join("available_clocksource"))
                {
                    for cs in avail.split_whitespace() {
                        out.gauge(
                            "node_time_clocksource_available_info",
                            "Available clocksources read from '/sys/devices/system/clocksource'.",
                            &[("clocksource", cs), ("device", device)],
                            1.0,
                        );
                    }
                }
                if let Ok(cur) = std::fs::read_to_string(entry.path().join("current_clocksource")) {
                    out.gauge(
                        "node_time_clocksource_current_info",
                        "Current clocksource read from '/sys/devices/system/clocksource'.",
                        &[("clocksource", cur.trim()), ("device", device)],
                        1.0,
                    );
                }
            }
        }
        Ok(())
    }
}

/// True when local time is UTC: `TZ` unset or UTC, and `/etc/localtime` absent or pointing at
/// a UTC zone. (Other zones would need the tz database's rules; the offset is then omitted.)
fn utc(paths: &Paths) -> bool {
    let tz_ok = std::env::var("TZ").map_or(true, |tz| {
        matches!(tz.as_str(), "" | "UTC" | "Etc/UTC" | ":UTC")
    });
    let localtime = paths.root("etc/localtime");
    let file_ok = match std::fs::read_link(&localtime) {
        Ok(target) => {
            let t = target.to_string_lossy();
            t.ends_with("/UTC")
                || t.ends_with("/UCT")
                || t.ends_with("/Zulu")
                || t.ends_with("Etc/UTC")
        }
        Err(_) => !localtime.exists(),
    };
    tz_ok && file_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release() {
        let kv = parse_os_release(
            "NAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\nID=ubuntu\n# comment\nID_LIKE=debian\n",
        );
        assert_eq!(kv["NAME"], "Ubuntu");
        assert_eq!(kv["VERSION_ID"], "22.04");
        assert_eq!(kv["ID_LIKE"], "debian");
    }
}
