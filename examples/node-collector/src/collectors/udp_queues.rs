//! UDP socket queues from `/proc/net/udp` and `/proc/net/udp6`.

use crate::{CollectError, Collector, Families, Paths, read};

/// `node_udp_queues{ip,queue}`: the bytes queued in UDP sockets' send (`tx`) and receive (`rx`)
/// queues, summed over sockets, for IPv4 (`v4`) and IPv6 (`v6`), as node_exporter's
/// `udp_queues` collector reports them. A file the kernel lacks (no IPv6) is skipped; with
/// neither, the collector fails.
#[derive(Debug)]
pub struct UdpQueues;

const NAME: &str = "node_udp_queues";
const HELP: &str = "Number of allocated memory in the kernel for UDP datagrams in bytes.";

impl Collector for UdpQueues {
    fn name(&self) -> &'static str {
        "udp_queues"
    }

    fn collect(&self, paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        let mut missing = 0;
        for (file, ip) in [("net/udp", "v4"), ("net/udp6", "v6")] {
            let path = paths.proc(file);
            match read(path.clone()) {
                Ok(text) => parse_udp_queues(&text, ip, &path, out)?,
                Err(CollectError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    missing += 1;
                }
                Err(e) => return Err(e),
            }
        }
        if missing == 2 {
            return Err(CollectError::Parse {
                path: paths.proc("net/udp"),
                detail: "neither /proc/net/udp nor udp6 exists".into(),
            });
        }
        Ok(())
    }
}

/// `node_udp_queues{ip,queue="tx"|"rx"}` from the text of `/proc/net/udp` (`ip` `"v4"`) or
/// `/proc/net/udp6` (`"v6"`): the header line, then one socket per line whose fifth field is
/// `tx_queue:rx_queue` in hexadecimal.
///
/// # Errors
///
/// A socket line with fewer than eight fields or queues that are not hexadecimal; the error
/// names `path`.
pub fn parse_udp_queues(
    text: &str,
    ip: &str,
    path: &std::path::Path,
    out: &mut Families,
) -> Result<(), CollectError> {
    let (mut tx, mut rx) = (0u64, 0u64);
    for line in text.lines().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |detail: String| CollectError::Parse {
            path: path.to_owned(),
            detail,
        };
        let mut fields = line.split_whitespace();
        let queues = fields.nth(4);
        // node_exporter's procfs library rejects lines shorter than eight fields (up to uid).
        if fields.nth(2).is_none() {
            return Err(bad(format!("short socket line {line:?}")));
        }
        let (t, r) = queues
            .and_then(|q| q.split_once(':'))
            .and_then(|(t, r)| {
                Some((
                    u64::from_str_radix(t, 16).ok()?,
                    u64::from_str_radix(r, 16).ok()?,
                ))
            })
            .ok_or_else(|| bad(format!("bad tx_queue:rx_queue in {line:?}")))?;
        tx = tx.wrapping_add(t);
        rx = rx.wrapping_add(r);
    }
    out.gauge(NAME, HELP, &[("ip", ip), ("queue", "tx")], tx as f64);
    out.gauge(NAME, HELP, &[("ip", ip), ("queue", "rx")], rx as f64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 3150: 0100007F:DF0A 00000000:0000 07 00000000:00000900 00:00000000 00000000     0        0 843450 2 00000000161326ed 0
 3179: 00000000:DF27 00000000:0000 07 00000010:00000100 00:00000000 00000000     0        0 843451 2 0000000050aaa232 0
";

    fn value(f: &Families, ip: &str, queue: &str) -> f64 {
        f.get(NAME)
            .unwrap()
            .series_with(&[("ip", ip), ("queue", queue)])
            .unwrap()
            .value
            .as_gauge()
            .unwrap()
    }

    #[test]
    fn queues_are_summed() {
        let mut f = Families::default();
        let p = std::path::Path::new("/proc/net/udp");
        parse_udp_queues(UDP, "v4", p, &mut f).unwrap();
        parse_udp_queues(UDP.lines().next().unwrap(), "v6", p, &mut f).unwrap();
        assert_eq!(value(&f, "v4", "rx"), (0x900 + 0x100) as f64);
        assert_eq!(value(&f, "v4", "tx"), 16.0);
        assert_eq!(value(&f, "v6", "rx"), 0.0);
        assert_eq!(f.get(NAME).unwrap().help.as_deref(), Some(HELP));
    }

    #[test]
    fn malformed_lines_name_the_file() {
        let p = std::path::Path::new("/p/udp");
        for bad in [
            "header\n 1: 0100007F:DF0A 00000000:0000 07 00000000:zz 00:00000000 00000000 0\n",
            "header\n 1: 0100007F:DF0A 00000000:0000 07 00000000\n",
            "header\n 1: 0100007F:DF0A 00000000:0000 07 0000000000000000 00:00000000 00000000 0\n",
        ] {
            let e = parse_udp_queues(bad, "v4", p, &mut Families::default()).unwrap_err();
            assert!(e.to_string().contains("/p/udp"), "{e}");
        }
    }

    #[test]
    fn missing_ipv6_is_skipped_but_not_both() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("net")).unwrap();
        let paths = Paths {
            proc: dir.path().to_owned(),
            ..Paths::default()
        };
        assert!(UdpQueues.collect(&paths, &mut Families::default()).is_err());
        std::fs::write(dir.path().join("net/udp"), UDP).unwrap();
        let mut f = Families::default();
        UdpQueues.collect(&paths, &mut f).unwrap();
        assert_eq!(value(&f, "v4", "rx"), 2560.0);
        assert!(
            f.get(NAME)
                .unwrap()
                .series_with(&[("ip", "v6"), ("queue", "rx")])
                .is_none()
        );
    }
}
