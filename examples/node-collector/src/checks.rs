//! Service checks node_exporter lacks: watched processes and listening ports.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `axi_process_up` | `name` | 1 while at least one matching process runs |
//! | `axi_process_count` | `name` | matching processes |
//! | `axi_process_restarts_total` | `name` | times the process was replaced (its oldest start time changed) or came back after being down |
//! | `axi_process_cpu_seconds_total` | `name` | user + system CPU of the matching processes, counted across scrapes so that a process ending does not lower it (the CPU a process used between its last scrape and its end is not seen) |
//! | `axi_process_resident_memory_bytes` | `name` | resident memory of the matching processes |
//! | `axi_process_start_time_seconds` | `name` | start of the oldest matching process |
//! | `axi_port_listening` | `name`, `port` | 1 when a TCP socket (IPv4 or IPv6) listens on the port |

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::collectors::USER_HZ;
use crate::config::{PortCheck, ProcessCheck, ProcessMatch};
use crate::{CollectError, Collector, Families, Paths, read};

/// One process found under `/proc`.
#[derive(Debug, Clone)]
struct Proc {
    pid: u32,
    start_ticks: u64,
    cpu_ticks: u64,
    rss_pages: u64,
}

#[derive(Debug, Default)]
struct Seen {
    /// Oldest start (ticks since boot) at the previous scrape; `None` when it was down.
    oldest: Option<u64>,
    /// Whether it was ever up (a first start is not a restart).
    ever_up: bool,
    restarts: u64,
    /// CPU ticks counted so far, over every matching process seen.
    cpu_ticks: u64,
    /// Each matching process's CPU ticks at the previous scrape, by pid and start (a reused
    /// pid is another process).
    cpu_by_proc: HashMap<(u32, u64), u64>,
}

impl Seen {
    /// Adds what `procs` used since the previous scrape (all of it for a process not seen
    /// before) and returns the total: a counter that a process ending cannot lower.
    fn count_cpu(&mut self, procs: &[Proc]) -> u64 {
        let mut now = HashMap::with_capacity(procs.len());
        for p in procs {
            let key = (p.pid, p.start_ticks);
            let before = self.cpu_by_proc.get(&key).copied().unwrap_or(0);
            self.cpu_ticks += p.cpu_ticks.saturating_sub(before);
            now.insert(key, p.cpu_ticks);
        }
        self.cpu_by_proc = now;
        self.cpu_ticks
    }
}

/// Watches configured processes.
#[derive(Debug)]
pub struct Processes {
    checks: Vec<ProcessCheck>,
    seen: Mutex<HashMap<String, Seen>>,
}

impl Processes {
    /// A collector for `checks`.
    pub fn new(checks: Vec<ProcessCheck>) -> Self {
        Self {
            checks,
            seen: Mutex::default(),
        }
    }
}

fn read_proc(paths: &Paths, pid: u32) -> Option<Proc> {
    let stat = std::fs::read_to_string(paths.proc(&format!("{pid}/stat"))).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Field N of /proc/<pid>/stat is f[N - 3].
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(Proc {
        pid,
        cpu_ticks: field(14)? + field(15)?,
        start_ticks: field(22)?,
        rss_pages: field(24)?,
    })
}

fn matches(paths: &Paths, matcher: &ProcessMatch) -> Vec<u32> {
    if let ProcessMatch::Pidfile(file) = matcher {
        let pid = std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        return pid
            .filter(|pid| paths.proc(&pid.to_string()).exists())
            .into_iter()
            .collect();
    }
    let Ok(dir) = std::fs::read_dir(&paths.proc) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| match matcher {
            ProcessMatch::Comm(name) => std::fs::read_to_string(paths.proc(&format!("{pid}/comm")))
                .map(|c| c.trim_end() == name)
                .unwrap_or(false),
            ProcessMatch::Cmdline(pattern) => std::fs::read(paths.proc(&format!("{pid}/cmdline")))
                .map(|raw| {
                    let line = String::from_utf8_lossy(&raw).replace('\0', " ");
                    pattern.0.is_match(line.trim_end())
                })
                .unwrap_or(false),
            ProcessMatch::Pidfile(_) => false,
        })
        .collect()
}

impl Collector for Processes {
    fn name(&self) -> &'static str {
        "processes"
    }

    fn collect(&self, paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        let boot = read(paths.proc("stat"))?
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        let page = rustix::param::page_size() as f64;
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        for check in &self.checks {
            let procs: Vec<Proc> = matches(paths, &check.matcher)
                .into_iter()
                .filter_map(|pid| read_proc(paths, pid))
                .collect();
            let oldest = procs.iter().map(|p| p.start_ticks).min();
            let state = seen.entry(check.name.clone()).or_default();
            if let Some(now) = oldest {
                if state.ever_up && state.oldest != Some(now) {
                    state.restarts += 1;
                }
                state.ever_up = true;
            }
            state.oldest = oldest;
            let l = [("name", check.name.as_str())];
            out.gauge(
                "axi_process_up",
                "1 while at least one matching process runs.",
                &l,
                f64::from(u8::from(oldest.is_some())),
            );
            out.gauge(
                "axi_process_count",
                "Number of matching processes.",
                &l,
                procs.len() as f64,
            );
            out.counter(
                "axi_process_restarts_total",
                "Times the watched process was replaced or came back after being down.",
                &l,
                state.restarts as f64,
            );
            out.counter(
                "axi_process_cpu_seconds_total",
                "User and system CPU time of the matching processes, in seconds.",
                &l,
                state.count_cpu(&procs) as f64 / USER_HZ,
            );
            out.gauge(
                "axi_process_resident_memory_bytes",
                "Resident memory of the matching processes, in bytes.",
                &l,
                procs.iter().map(|p| p.rss_pages).sum::<u64>() as f64 * page,
            );
            if let Some(start) = oldest {
                out.gauge(
                    "axi_process_start_time_seconds",
                    "Start time of the oldest matching process, in seconds since the epoch.",
                    &l,
                    boot + start as f64 / USER_HZ,
                );
            }
        }
        Ok(())
    }
}

/// Checks that configured TCP ports are listening, from `/proc/net/tcp` and `tcp6`.
#[derive(Debug)]
pub struct Ports {
    checks: Vec<PortCheck>,
}

impl Ports {
    /// A collector for `checks`.
    pub fn new(checks: Vec<PortCheck>) -> Self {
        Self { checks }
    }
}

/// Local ports of sockets in state LISTEN (`0A`) in a `/proc/net/tcp*` table.
pub(crate) fn listening_ports(table: &str) -> impl Iterator<Item = u16> + '_ {
    table.lines().skip(1).filter_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(3) != Some(&"0A") {
            return None;
        }
        let port = f.get(1)?.rsplit_once(':')?.1;
        u16::from_str_radix(port, 16).ok()
    })
}

impl Collector for Ports {
    fn name(&self) -> &'static str {
        "ports"
    }

    fn collect(&self, paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        let mut listening = std::collections::HashSet::new();
        listening.extend(listening_ports(&read(paths.proc("net/tcp"))?));
        if let Ok(t6) = read(paths.proc("net/tcp6")) {
            listening.extend(listening_ports(&t6));
        }
        for check in &self.checks {
            let port = check.port.to_string();
            out.gauge(
                "axi_port_listening",
                "1 when a TCP socket listens on the port.",
                &[("name", &check.name), ("port", &port)],
                f64::from(u8::from(listening.contains(&check.port))),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_cpu_never_goes_down_when_a_process_ends() {
        let p = |pid, start, cpu| Proc {
            pid,
            start_ticks: start,
            cpu_ticks: cpu,
            rss_pages: 0,
        };
        let mut seen = Seen::default();
        assert_eq!(seen.count_cpu(&[p(1, 10, 100), p(2, 20, 50)]), 150);
        // Worker 2 exits: the total does not drop.
        assert_eq!(seen.count_cpu(&[p(1, 10, 120)]), 170);
        // A new worker counts with all it used.
        assert_eq!(seen.count_cpu(&[p(1, 10, 130), p(3, 30, 10)]), 190);
        // Pid 1 reused by another process (another start): a new process.
        assert_eq!(seen.count_cpu(&[p(1, 99, 5), p(3, 30, 10)]), 195);
    }

    #[test]
    fn listening_ports_from_proc_net_tcp() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:1F91 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
";
        let ports: Vec<u16> = listening_ports(table).collect();
        assert_eq!(ports, vec![8080]);
    }
}
