//! Network devices and the kernel's socket and protocol counters.

use super::num_at;
use crate::{CollectError, Collector, Families, Paths, read, read_lossy};

/// `node_network_{receive,transmit}_*_total{device}` from `/proc/net/dev`, plus
/// `receive_nohandler` from `/sys/class/net`. Every device by default, as node_exporter.
#[derive(Debug, Default)]
pub struct NetDev {
    exclude: Option<regex::Regex>,
}

impl NetDev {
    /// Leaving out the devices `exclude` matches.
    pub fn excluding(exclude: Option<regex::Regex>) -> Self {
        Self { exclude }
    }
}

/// `node_sockstat_*` from `/proc/net/sockstat` and `sockstat6`.
#[derive(Debug)]
pub struct SockStat;

/// `node_netstat_*` from `/proc/net/netstat`, `snmp` and `snmp6`, with node_exporter's default
/// field selection.
#[derive(Debug)]
pub struct NetStat;

/// `node_network_receive_*_total`: name and HELP, in `/proc/net/dev` column order.
const RECEIVE: [(&str, &str); 8] = [
    (
        "node_network_receive_bytes_total",
        "Network device statistic receive_bytes.",
    ),
    (
        "node_network_receive_packets_total",
        "Network device statistic receive_packets.",
    ),
    (
        "node_network_receive_errs_total",
        "Network device statistic receive_errs.",
    ),
    (
        "node_network_receive_drop_total",
        "Network device statistic receive_drop.",
    ),
    (
        "node_network_receive_fifo_total",
        "Network device statistic receive_fifo.",
    ),
    (
        "node_network_receive_frame_total",
        "Network device statistic receive_frame.",
    ),
    (
        "node_network_receive_compressed_total",
        "Network device statistic receive_compressed.",
    ),
    (
        "node_network_receive_multicast_total",
        "Network device statistic receive_multicast.",
    ),
];
/// `node_network_transmit_*_total`: name and HELP, in `/proc/net/dev` column order.
const TRANSMIT: [(&str, &str); 8] = [
    (
        "node_network_transmit_bytes_total",
        "Network device statistic transmit_bytes.",
    ),
    (
        "node_network_transmit_packets_total",
        "Network device statistic transmit_packets.",
    ),
    (
        "node_network_transmit_errs_total",
        "Network device statistic transmit_errs.",
    ),
    (
        "node_network_transmit_drop_total",
        "Network device statistic transmit_drop.",
    ),
    (
        "node_network_transmit_fifo_total",
        "Network device statistic transmit_fifo.",
    ),
    (
        "node_network_transmit_colls_total",
        "Network device statistic transmit_colls.",
    ),
    (
        "node_network_transmit_carrier_total",
        "Network device statistic transmit_carrier.",
    ),
    (
        "node_network_transmit_compressed_total",
        "Network device statistic transmit_compressed.",
    ),
];

impl Collector for NetDev {
    fn name(&self) -> &'static str {
        "netdev"
    }

    fn collect(&self, paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        let path = paths.proc("net/dev");
        let text = read_lossy(path.clone())?;
        let excluded = |dev: &str| self.exclude.as_ref().is_some_and(|re| re.is_match(dev));
        parse_netdev_excluding(&text, &path, out, &excluded)?;
        for dev in netdev_devices(&text).filter(|d| !excluded(d)) {
            let sys = paths.sys(&format!("class/net/{dev}/statistics/rx_nohandler"));
            if let Ok(s) = read(sys)
                && let Ok(n) = s.trim().parse::<f64>()
            {
                out.counter(
                    "node_network_receive_nohandler_total",
                    "Network device statistic receive_nohandler.",
                    &[("device", dev)],
                    n,
                );
            }
        }
        Ok(())
    }
}

/// The device names of `/proc/net/dev`, in file order.
fn netdev_devices(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .skip(2)
        .filter_map(|line| line.split_once(':').map(|(dev, _)| dev.trim()))
}

/// `node_network_{receive,transmit}_*_total{device}` from the text of `/proc/net/dev` (the
/// `receive_nohandler` counter comes from sysfs and is left to the collector).
///
/// # Errors
///
/// A device line with fewer than 16 counters or one that is not a number; the error names
/// `path`.
pub fn parse_netdev(
    text: &str,
    path: &std::path::Path,
    out: &mut Families,
) -> Result<(), CollectError> {
    parse_netdev_excluding(text, path, out, &|_| false)
}

fn parse_netdev_excluding(
    text: &str,
    path: &std::path::Path,
    out: &mut Families,
    excluded: &dyn Fn(&str) -> bool,
) -> Result<(), CollectError> {
    for line in text.lines().skip(2) {
        let Some((dev, rest)) = line.split_once(':') else {
            continue;
        };
        let dev = dev.trim();
        if excluded(dev) {
            continue;
        }
        let mut v = rest.split_whitespace();
        let labels = [("device", dev)];
        for (name, help) in RECEIVE.iter().chain(TRANSMIT.iter()) {
            let value = v.next().ok_or_else(|| CollectError::Parse {
                path: path.to_owned(),
                detail: format!("short line for {dev}"),
            })?;
            out.counter(
                name,
                help,
                &labels,
                num_at(value, path, || format!("{dev}, {name}"))?,
            );
        }
    }
    Ok(())
}

impl Collector for SockStat {
    fn name(&self) -> &'static str {
        "sockstat"
    }

    fn collect(&self, paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        let page = rustix::param::page_size() as f64;
        for (file, required) in [("net/sockstat", true), ("net/sockstat6", false)] {
            let path = paths.proc(file);
            let text = match read(path.clone()) {
                Ok(t) => t,
                Err(e) if required => return Err(e),
                Err(_) => continue,
            };
            parse_sockstat(&text, &path, page, out)?;
        }
        Ok(())
    }
}

pub(crate) fn parse_sockstat(
    text: &str,
    path: &std::path::Path,
    page: f64,
    out: &mut Families,
) -> Result<(), CollectError> {
    for line in text.lines() {
        let Some((proto, rest)) = line.split_once(':') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        for pair in f.chunks(2) {
            let [key, value] = pair else { continue };
            let v = num_at(value, path, || format!("{proto} {key}"))?;
            if proto == "sockets" {
                if *key == "used" {
                    out.gauge(
                        "node_sockstat_sockets_used",
                        "Number of IPv4 sockets in use.",
                        &[],
                        v,
                    );
                }
                continue;
            }
            out.gauge(
                &format!("node_sockstat_{proto}_{key}"),
                &format!("Number of {proto} sockets in state {key}."),
                &[],
                v,
            );
            if *key == "mem" {
                out.gauge(
                    &format!("node_sockstat_{proto}_mem_bytes"),
                    &format!("Number of {proto} sockets in state mem_bytes."),
                    &[],
                    v * page,
                );
            }
        }
    }
    Ok(())
}

impl Collector for NetStat {
    fn name(&self) -> &'static str {
        "netstat"
    }

    fn collect(&self, paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        for file in ["net/netstat", "net/snmp"] {
            let path = paths.proc(file);
            let text = read(path.clone())?;
            let lines: Vec<&str> = text.lines().collect();
            for pair in lines.chunks(2) {
                let [names, values] = pair else { continue };
                let (Some((proto, names)), Some((_, values))) =
                    (names.split_once(':'), values.split_once(':'))
                else {
                    continue;
                };
                for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
                    emit(proto, name, value, &path, out)?;
                }
            }
        }
        let path = paths.proc("net/snmp6");
        if let Ok(text) = read(path.clone()) {
            for line in text.lines() {
                let mut f = line.split_whitespace();
                let (Some(key), Some(value)) = (f.next(), f.next()) else {
                    continue;
                };
                // "Ip6InOctets" -> ("Ip6", "InOctets"), "UdpLite6InErrors" -> ("UdpLite6", ...).
                let Some(split) = key.find('6').map(|i| i + 1) else {
                    continue;
                };
                emit(&key[..split], &key[split..], value, &path, out)?;
            }
        }
        Ok(())
    }
}

fn emit(
    proto: &str,
    field: &str,
    value: &str,
    path: &std::path::Path,
    out: &mut Families,
) -> Result<(), CollectError> {
    if !selected(proto, field) {
        return Ok(());
    }
    out.untyped(
        &format!("node_netstat_{proto}_{field}"),
        &format!("Statistic {proto}{field}."),
        &[],
        num_at(value, path, || format!("{proto} {field}"))?,
    );
    Ok(())
}

/// node_exporter's default `--collector.netstat.fields`.
fn selected(proto: &str, field: &str) -> bool {
    if field == "InErrors" || field == "InErrs" {
        return true;
    }
    match proto {
        "Ip" => field == "Forwarding",
        "Ip6" | "IpExt" => matches!(field, "InOctets" | "OutOctets"),
        "Icmp" | "Icmp6" => matches!(field, "InMsgs" | "OutMsgs"),
        "TcpExt" => {
            field.starts_with("Listen")
                || field.starts_with("Syncookies")
                || matches!(
                    field,
                    "TCPSynRetrans" | "TCPTimeouts" | "TCPOFOQueue" | "TCPRcvQDrop"
                )
        }
        "Tcp" => matches!(
            field,
            "ActiveOpens"
                | "InSegs"
                | "OutSegs"
                | "OutRsts"
                | "PassiveOpens"
                | "RetransSegs"
                | "CurrEstab"
        ),
        "Udp" | "Udp6" => matches!(
            field,
            "InDatagrams" | "OutDatagrams" | "NoPorts" | "RcvbufErrors" | "SndbufErrors"
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An interface name that is not UTF-8 (`ip link add $'\xff' type dummy`) does not make
    /// `/proc/net/dev` unreadable: the others are reported, it with U+FFFD.
    #[test]
    fn an_interface_name_that_is_not_utf8_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path().join("proc");
        std::fs::create_dir_all(proc.join("net")).unwrap();
        let mut text = b"Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n".to_vec();
        text.extend_from_slice(b"    lo: 100 1 0 0 0 0 0 0 200 2 0 0 0 0 0 0\n");
        text.extend_from_slice(b"  x\xff: 300 3 0 0 0 0 0 0 400 4 0 0 0 0 0 0\n");
        std::fs::write(proc.join("net/dev"), text).unwrap();
        let paths = Paths {
            proc,
            sys: dir.path().join("sys"),
            ..Paths::default()
        };
        let mut f = Families::default();
        NetDev::excluding(None).collect(&paths, &mut f).unwrap();
        let rx = f.get("node_network_receive_bytes_total").unwrap();
        for device in ["lo", "x\u{fffd}"] {
            assert!(
                rx.series_with(&[("device", device)]).is_some(),
                "{device}: {:?}",
                rx.series
            );
        }
    }

    #[test]
    fn sockstat_names() {
        let mut f = Families::default();
        parse_sockstat(
            "sockets: used 10\nTCP: inuse 1 orphan 0 tw 0 alloc 1 mem 44\nFRAG: inuse 0 memory 0\n",
            std::path::Path::new("/proc/net/sockstat"),
            4096.0,
            &mut f,
        )
        .unwrap();
        assert_eq!(
            f.get("node_sockstat_sockets_used").unwrap().series[0]
                .value
                .as_gauge(),
            Some(10.0)
        );
        assert_eq!(
            f.get("node_sockstat_TCP_mem_bytes").unwrap().series[0]
                .value
                .as_gauge(),
            Some(44.0 * 4096.0)
        );
        assert_eq!(
            f.get("node_sockstat_TCP_tw").unwrap().help.as_deref(),
            Some("Number of TCP sockets in state tw.")
        );
        assert!(f.get("node_sockstat_FRAG_memory").is_some());
    }

    #[test]
    fn netstat_selection() {
        assert!(selected("Tcp", "CurrEstab"));
        assert!(selected("TcpExt", "ListenDrops"));
        assert!(selected("UdpLite6", "InErrors"));
        assert!(selected("Ip", "Forwarding"));
        assert!(!selected("Tcp", "RtoMin"));
        assert!(!selected("TcpExt", "TCPHPHits"));
    }
}

/// `node_softnet_*{cpu}` from `/proc/net/softnet_stat`.
#[derive(Debug)]
pub struct SoftNet;

/// `node_arp_entries{device}` from `/proc/net/arp`.
#[derive(Debug)]
pub struct Arp;

impl Collector for SoftNet {
    fn name(&self) -> &'static str {
        "softnet"
    }

    fn collect(&self, paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        let path = paths.proc("net/softnet_stat");
        let text = read(path.clone())?;
        for (line_no, line) in text.lines().enumerate() {
            let v: Vec<u64> = line
                .split_whitespace()
                .map(|h| u64::from_str_radix(h, 16))
                .collect::<Result<_, _>>()
                .map_err(|_| CollectError::Parse {
                    path: path.clone(),
                    detail: format!("not hexadecimal: {line:?}"),
                })?;
            let col = |i: usize| v.get(i).copied().unwrap_or(0) as f64;
            // Newer kernels give the CPU index in column 13; older ones list CPUs in order.
            let cpu = if v.len() >= 13 {
                v[12].to_string()
            } else {
                line_no.to_string()
            };
            let l = [("cpu", cpu.as_str())];
            out.counter(
                "node_softnet_processed_total",
                "Number of processed packets",
                &l,
                col(0),
            );
            out.counter(
                "node_softnet_dropped_total",
                "Number of dropped packets",
                &l,
                col(1),
            );
            out.counter(
                "node_softnet_times_squeezed_total",
                "Number of times processing packets ran out of quota",
                &l,
                col(2),
            );
            out.counter(
                "node_softnet_cpu_collision_total",
                "Number of collision occur while obtaining device lock while transmitting",
                &l,
                col(8),
            );
            out.counter(
                "node_softnet_received_rps_total",
                "Number of times cpu woken up received_rps",
                &l,
                col(9),
            );
            out.counter(
                "node_softnet_flow_limit_count_total",
                "Number of times flow limit has been reached",
                &l,
                col(10),
            );
            out.gauge(
                "node_softnet_backlog_len",
                "Softnet backlog status",
                &l,
                col(11),
            );
        }
        Ok(())
    }
}

impl Collector for Arp {
    fn name(&self) -> &'static str {
        "arp"
    }

    fn collect(&self, paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        let text = read(paths.proc("net/arp"))?;
        let mut counts: std::collections::BTreeMap<String, f64> = std::collections::BTreeMap::new();
        for line in text.lines().skip(1) {
            if let Some(dev) = line.split_whitespace().nth(5) {
                *counts.entry(dev.to_owned()).or_default() += 1.0;
            }
        }
        for (dev, n) in counts {
            out.gauge(
                "node_arp_entries",
                "ARP entries by device",
                &[("device", &dev)],
                n,
            );
        }
        Ok(())
    }
}
