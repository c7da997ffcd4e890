//! `/sys/class/net/<device>`: link properties, as node_exporter's `netclass` collector reports
//! them.

use crate::{CollectError, Collector, Families, Paths};

/// `node_network_{up,carrier,mtu_bytes,speed_bytes,flags,...}{device}` and `node_network_info`.
#[derive(Debug)]
pub struct NetClass;

/// (sysfs file, metric suffix, counter?) for the numeric properties.
const PROPERTIES: [(&str, &str, bool); 14] = [
    ("addr_assign_type", "address_assign_type", false),
    ("carrier", "carrier", false),
    ("carrier_changes", "carrier_changes_total", true),
    ("carrier_up_count", "carrier_up_changes_total", true),
    ("carrier_down_count", "carrier_down_changes_total", true),
    ("dev_id", "device_id", false),
    ("dormant", "dormant", false),
    ("flags", "flags", false),
    ("ifindex", "iface_id", false),
    ("iflink", "iface_link", false),
    ("link_mode", "iface_link_mode", false),
    ("mtu", "mtu_bytes", false),
    ("name_assign_type", "name_assign_type", false),
    ("netdev_group", "net_dev_group", false),
];

/// A sysfs attribute: at most a page, returned whole by one `read` (open, read, close; no
/// `statx` and no second read for end of file, which `read_to_string` spends).
fn read_trim(path: &std::path::Path) -> Option<String> {
    use std::io::Read;
    let mut buf = [0u8; 4096];
    let n = std::fs::File::open(path).ok()?.read(&mut buf).ok()?;
    std::str::from_utf8(&buf[..n])
        .ok()
        .map(|s| s.trim().to_owned())
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
        for entry in dir.flatten() {
            let dev = entry.file_name().to_string_lossy().into_owned();
            let p = entry.path();
            let d = [("device", dev.as_str())];
            for (file, suffix, counter) in PROPERTIES {
                // Unreadable attributes (carrier of a down link answers EINVAL) are skipped, as
                // node_exporter does.
                let Some(v) = read_trim(&p.join(file)).as_deref().and_then(number) else {
                    continue;
                };
                let name = format!("node_network_{suffix}");
                let help = format!("Network device property: {suffix}");
                if counter {
                    out.counter(&name, &help, &d, v);
                } else {
                    out.gauge(&name, &help, &d, v);
                }
            }
            if let Some(v) = read_trim(&p.join("type")).as_deref().and_then(number) {
                out.gauge(
                    "node_network_protocol_type",
                    "Network device property: protocol_type",
                    &d,
                    v,
                );
            }
            if let Some(v) = read_trim(&p.join("speed")).as_deref().and_then(number) {
                // Mbit/s to bytes/s; an unknown speed (-1) stays negative, as node_exporter has it.
                out.gauge(
                    "node_network_speed_bytes",
                    "Network device property: speed_bytes",
                    &d,
                    v * 125_000.0,
                );
            }
            if let Some(v) = read_trim(&p.join("tx_queue_len"))
                .as_deref()
                .and_then(number)
            {
                out.gauge(
                    "node_network_transmit_queue_length",
                    "Network device property: transmit_queue_length",
                    &d,
                    v,
                );
            }
            let operstate = read_trim(&p.join("operstate")).unwrap_or_default();
            out.gauge(
                "node_network_up",
                "Value is 1 if operstate is 'up', 0 otherwise.",
                &d,
                if operstate == "up" { 1.0 } else { 0.0 },
            );
            let flags = read_trim(&p.join("flags"))
                .as_deref()
                .and_then(number)
                .unwrap_or(0.0) as i64;
            let text = |f: &str| read_trim(&p.join(f)).unwrap_or_default();
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
        }
        Ok(())
    }
}
