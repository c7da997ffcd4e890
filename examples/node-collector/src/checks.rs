//! Service checks node_exporter lacks: watched processes and listening ports.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `axi_process_up` | `name` | 1 while at least one matching process runs |
//! | `axi_process_count` | `name` | matching processes |
//! | `axi_process_restarts_total` | `name` | times the process was replaced (its oldest start time changed, also across scrapes that found it down) |
//! | `axi_process_cpu_seconds_total` | `name` | user + system CPU of the matching processes, counted across scrapes so that a process ending does not lower it (the CPU a process used between its last scrape and its end is not seen) |
//! | `axi_process_resident_memory_bytes` | `name` | resident memory of the matching processes |
//! | `axi_process_start_time_seconds` | `name` | start of the oldest matching process |
//! | `axi_port_listening` | `name`, `port` | 1 when a TCP socket (IPv4 or IPv6) listens on the port |

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::bounded::{Bounded, Unanswered};
use crate::collectors::USER_HZ;
use crate::config::{PortCheck, ProcessCheck, ProcessMatch};
use crate::{CollectError, Collector, Families, Paths, read};

/// One process found under `/proc`.
#[derive(Debug, Clone)]
struct Proc {
    pid: u32,
    /// The kernel's name for it (`/proc/<pid>/stat`'s second field, what `comm` holds).
    comm: String,
    start_ticks: u64,
    cpu_ticks: u64,
    rss_pages: u64,
    /// Where its code starts (`stat` field 26; 0 when not ours to see): changes when it calls
    /// `exec` (address space layout randomisation puts a new program elsewhere), with `comm`.
    start_code: u64,
}

#[derive(Debug, Default)]
struct Seen {
    /// Start (ticks since boot) of the oldest matching process when one was last seen; `None`
    /// before the first (a first start is not a restart).
    last_start: Option<u64>,
    restarts: u64,
    /// CPU ticks counted so far, over every matching process seen.
    cpu_ticks: u64,
    /// Each matching process's CPU ticks when last seen, by pid and start (a reused pid is
    /// another process), and the scrapes since that missed it.
    cpu_by_proc: HashMap<(u32, u64), (u64, u8)>,
}

/// Scrapes a matching process can be missed by (a pid file caught mid-rewrite, a command line
/// not read in time) while `/proc` cannot say it still runs, before its CPU baseline goes.
/// Seen again within them, only what it used since is added, not its whole life again.
const MISSED_SCRAPES_KEPT: u8 = 5;

impl Seen {
    /// Adds what `procs` used since it was last seen (all of it for a process not seen
    /// before) and returns the total: a counter that a process ending cannot lower. The
    /// baselines of processes not matched this time are kept while `alive` says they still
    /// run, else for [`MISSED_SCRAPES_KEPT`] scrapes.
    fn count_cpu(&mut self, procs: &[Proc], alive: impl Fn(&(u32, u64)) -> bool) -> u64 {
        for entry in self.cpu_by_proc.values_mut() {
            entry.1 = entry.1.saturating_add(1);
        }
        for p in procs {
            let key = (p.pid, p.start_ticks);
            let before = self.cpu_by_proc.get(&key).map_or(0, |e| e.0);
            self.cpu_ticks += p.cpu_ticks.saturating_sub(before);
            self.cpu_by_proc.insert(key, (p.cpu_ticks.max(before), 0));
        }
        self.cpu_by_proc
            .retain(|k, (_, missed)| *missed == 0 || *missed <= MISSED_SCRAPES_KEPT || alive(k));
        self.cpu_ticks
    }

    /// Notes the oldest matching process's start this scrape (`None`: none matched) and
    /// counts a restart when it is another process than the one last seen. A scrape that
    /// missed the process (not down; found again with the same start) is no restart.
    fn note_start(&mut self, oldest: Option<u64>) {
        if let Some(now) = oldest {
            if self.last_start.is_some_and(|before| before != now) {
                self.restarts += 1;
            }
            self.last_start = Some(now);
        }
    }
}

/// How long reading one command line may take. Reading it makes the kernel lock the process's
/// memory map, so the read waits while the process is stuck in uninterruptible sleep holding it
/// (a page fault on a dead NFS server): the reason `ps` hangs. A normal read takes microseconds.
pub const CMDLINE_TIMEOUT: Duration = Duration::from_millis(250);

/// How long all the command lines a scrape reads may take together.
pub const CMDLINE_BUDGET: Duration = Duration::from_secs(3);

/// A settled process's command line, and what its `stat` said when it was read: another
/// `comm` or code address means the process has called `exec` since (a start script that
/// ends in `exec node main.js`), and the line is read again.
#[derive(Debug)]
struct Cmdline {
    line: Arc<str>,
    comm: String,
    start_code: u64,
}

impl Cmdline {
    fn still_of(&self, p: &Proc) -> bool {
        self.comm == p.comm && self.start_code == p.start_code
    }
}

/// How old a process must be before its command line is kept instead of read at every scrape.
/// A new process shows its parent's command line until it has called `exec`, and many programs
/// rewrite theirs just after starting (nginx and PostgreSQL workers, PM2's apps): a line read
/// in those first moments would stay wrong for the process's whole life.
pub const CMDLINE_SETTLED_SECONDS: f64 = 10.0;

/// Watches configured processes.
///
/// A scrape lists `/proc` once for all checks and reads each process's `stat` (its `comm`, start,
/// CPU time and resident memory). Command lines are read only for `cmdline` checks, and once per
/// process (by pid and start time) after its first [`CMDLINE_SETTLED_SECONDS`]. Those reads are
/// bounded: a process whose command line is not read within [`CMDLINE_TIMEOUT`] (or what is left of
/// the scrape's [`CMDLINE_BUDGET`]) is left out of that scrape, and skipped at once by later ones
/// until the hung read returns, instead of hanging the scrape. A process watched since before it
/// hung is not affected: its command line is already known.
#[derive(Debug)]
pub struct Processes {
    checks: Vec<ProcessCheck>,
    /// Held for a whole collection: scrapes served in parallel (two Prometheus replicas) take
    /// turns, so each applies its reading of `/proc` after the one before it. Interleaved,
    /// an older reading applied last reset the CPU baselines back (the next scrape counted
    /// that time again) and counted one restart several times.
    turn: Mutex<()>,
    seen: Mutex<HashMap<String, Seen>>,
    /// Command lines of settled processes, by pid and start time; only those seen at the last
    /// scan are kept.
    cmdlines: Mutex<HashMap<(u32, u64), Cmdline>>,
    reads: Bounded,
    /// [`CMDLINE_TIMEOUT`] and [`CMDLINE_BUDGET`].
    limits: (Duration, Duration),
}

impl Processes {
    /// A collector for `checks`.
    pub fn new(checks: Vec<ProcessCheck>) -> Self {
        Self {
            checks,
            turn: Mutex::default(),
            seen: Mutex::default(),
            cmdlines: Mutex::default(),
            reads: Bounded::new("cmdline"),
            limits: (CMDLINE_TIMEOUT, CMDLINE_BUDGET),
        }
    }

    #[cfg(test)]
    fn with_cmdline_limits(mut self, per_read: Duration, budget: Duration) -> Self {
        self.limits = (per_read, budget);
        self
    }

    /// The command line of `p` (arguments joined by spaces), from the cache or read within
    /// what is left until `deadline`; `None` when it could not be read.
    fn cmdline(
        &self,
        paths: &Paths,
        p: &Proc,
        age_seconds: f64,
        deadline: Instant,
    ) -> Option<Arc<str>> {
        let key = (p.pid, p.start_ticks);
        let lock = || self.cmdlines.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(kept) = lock().get(&key)
            && kept.still_of(p)
        {
            return Some(kept.line.clone());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let timeout = left.min(self.limits.0);
        let path = paths.proc(&format!("{}/cmdline", p.pid));
        let read = self.reads.call(
            &format!("{}/{}", p.pid, p.start_ticks),
            timeout,
            move || std::fs::read(path),
        );
        let raw = match read {
            Ok(Ok(raw)) => raw,
            // Gone since the scan, or not ours to read.
            Ok(Err(_)) => return None,
            Err(Unanswered::Timeout(t)) => {
                tracing::warn!(
                    pid = p.pid,
                    comm = %p.comm,
                    timeout = ?t,
                    "command line not read in time (the process may be in uninterruptible \
                     sleep): it is left out, and skipped until the read returns"
                );
                return None;
            }
            Err(e) => {
                tracing::debug!(pid = p.pid, error = ?e, "command line not read");
                return None;
            }
        };
        let line: Arc<str> = String::from_utf8_lossy(&raw)
            .replace('\0', " ")
            .trim_end()
            .into();
        if age_seconds >= CMDLINE_SETTLED_SECONDS {
            lock().insert(
                key,
                Cmdline {
                    line: line.clone(),
                    comm: p.comm.clone(),
                    start_code: p.start_code,
                },
            );
        }
        Some(line)
    }
}

/// A process from the text of its `/proc/<pid>/stat`.
fn parse_stat(pid: u32, stat: &str) -> Option<Proc> {
    // The name is in parentheses and may itself hold them: up to the last `)`.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // Field N of /proc/<pid>/stat is f[N - 3].
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(Proc {
        pid,
        comm,
        cpu_ticks: field(14)? + field(15)?,
        start_ticks: field(22)?,
        rss_pages: field(24)?,
        start_code: field(26).unwrap_or(0),
    })
}

fn read_proc(paths: &Paths, pid: u32) -> Option<Proc> {
    // Bytes: a `comm` that is not UTF-8 (the kernel writes the name as it is) reads as
    // U+FFFD rather than hiding the process.
    let stat = std::fs::read(paths.proc(&format!("{pid}/stat"))).ok()?;
    parse_stat(pid, &String::from_utf8_lossy(&stat))
}

/// Every process under `/proc`, in no particular order.
fn scan(paths: &Paths) -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir(&paths.proc) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| read_proc(paths, pid))
        .collect()
}

/// The process named by a pid file, if it runs.
fn from_pidfile(paths: &Paths, file: &std::path::Path) -> Option<Proc> {
    let pid = std::fs::read_to_string(file)
        .ok()?
        .trim()
        .parse::<u32>()
        .ok()?;
    read_proc(paths, pid)
}

impl Collector for Processes {
    fn name(&self) -> &'static str {
        "processes"
    }

    fn collect(&self, paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        // Bounded: a turn reads for at most the command-line budget.
        let _turn = self.turn.lock().unwrap_or_else(PoisonError::into_inner);
        let boot = read(paths.proc("stat"))?
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        let page = rustix::param::page_size() as f64;
        let deadline = Instant::now() + self.limits.1;
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        // One scan of `/proc` for every check; none when only pid files are watched.
        let all = if self
            .checks
            .iter()
            .any(|c| !matches!(c.matcher, ProcessMatch::Pidfile(_)))
        {
            scan(paths)
        } else {
            Vec::new()
        };
        // Each process's command line, read at most once per scrape whatever the number of
        // `cmdline` checks.
        let mut lines: Vec<Option<Option<Arc<str>>>> = vec![None; all.len()];
        let mut matched: Vec<Vec<Proc>> = Vec::with_capacity(self.checks.len());
        for check in &self.checks {
            let procs = match &check.matcher {
                ProcessMatch::Pidfile(file) => from_pidfile(paths, file).into_iter().collect(),
                ProcessMatch::Comm(name) => {
                    all.iter().filter(|p| &p.comm == name).cloned().collect()
                }
                ProcessMatch::Cmdline(pattern) => {
                    let mut procs = Vec::new();
                    for (i, p) in all.iter().enumerate() {
                        let line = lines[i].get_or_insert_with(|| {
                            let age = now_unix - (boot + p.start_ticks as f64 / USER_HZ);
                            self.cmdline(paths, p, age, deadline)
                        });
                        if line.as_deref().is_some_and(|l| pattern.0.is_match(l)) {
                            procs.push(p.clone());
                        }
                    }
                    procs
                }
            };
            matched.push(procs);
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                budget = ?self.limits.1,
                "command lines took the whole budget to read (processes in uninterruptible \
                 sleep?): those not read are left out of this scrape"
            );
        }
        // Only processes still there keep their cached command line.
        let live: std::collections::HashSet<(u32, u64)> =
            all.iter().map(|p| (p.pid, p.start_ticks)).collect();
        if !all.is_empty() {
            self.cmdlines
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|k, _| live.contains(k));
        }
        // No file is read while the state is locked.
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        for (check, procs) in self.checks.iter().zip(matched) {
            let oldest = procs.iter().map(|p| p.start_ticks).min();
            let state = seen.entry(check.name.clone()).or_default();
            state.note_start(oldest);
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
                state.count_cpu(&procs, |k| live.contains(k)) as f64 / USER_HZ,
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

    /// A process of `pid` started at `start` ticks that has used `cpu` ticks.
    fn p(pid: u32, start: u64, cpu: u64) -> Proc {
        Proc {
            pid,
            comm: String::new(),
            start_ticks: start,
            cpu_ticks: cpu,
            rss_pages: 0,
            start_code: 0,
        }
    }

    #[test]
    fn process_cpu_never_goes_down_when_a_process_ends() {
        let gone = |_: &(u32, u64)| false;
        let mut seen = Seen::default();
        assert_eq!(seen.count_cpu(&[p(1, 10, 100), p(2, 20, 50)], gone), 150);
        // Worker 2 exits: the total does not drop.
        assert_eq!(seen.count_cpu(&[p(1, 10, 120)], gone), 170);
        // A new worker counts with all it used.
        assert_eq!(seen.count_cpu(&[p(1, 10, 130), p(3, 30, 10)], gone), 190);
        // Pid 1 reused by another process (another start): a new process.
        assert_eq!(seen.count_cpu(&[p(1, 99, 5), p(3, 30, 10)], gone), 195);
    }

    /// A scrape that misses a process that still runs (its pid file caught mid-rewrite, its
    /// command line not read in time) neither counts its whole CPU time again when it is
    /// found the next time nor calls that a restart.
    #[test]
    fn a_missed_scrape_is_neither_a_restart_nor_cpu_counted_twice() {
        let alive = |k: &(u32, u64)| *k == (1, 10);
        let mut seen = Seen::default();
        seen.note_start(Some(10));
        assert_eq!(seen.count_cpu(&[p(1, 10, 100)], alive), 100);
        // Missed for more scrapes than a process not known to run is remembered.
        for _ in 0..=MISSED_SCRAPES_KEPT {
            seen.note_start(None);
            assert_eq!(seen.count_cpu(&[], alive), 100);
        }
        seen.note_start(Some(10));
        assert_eq!(seen.count_cpu(&[p(1, 10, 110)], alive), 110);
        assert_eq!(seen.restarts, 0);
        // Replaced (another start): a restart, and the new process's CPU counts whole.
        seen.note_start(Some(50));
        assert_eq!(seen.count_cpu(&[p(2, 50, 7)], alive), 117);
        assert_eq!(seen.restarts, 1);
        // Down for a while, then back as a new process: one restart more.
        seen.note_start(None);
        seen.note_start(Some(90));
        assert_eq!(seen.restarts, 2);
        // Without `/proc` saying it runs (a pid-file check), a missed process is remembered
        // for a few scrapes only: the baselines stay bounded.
        let gone = |_: &(u32, u64)| false;
        for _ in 0..=MISSED_SCRAPES_KEPT {
            seen.count_cpu(&[], gone);
        }
        assert!(seen.cpu_by_proc.is_empty(), "{:?}", seen.cpu_by_proc);
    }

    #[test]
    fn stat_gives_name_start_cpu_and_memory_even_with_parentheses_in_the_name() {
        let mut fields = vec!["0"; 22];
        fields[0] = "S";
        fields[11] = "7"; // utime (field 14)
        fields[12] = "5"; // stime
        fields[19] = "4242"; // starttime (field 22)
        fields[21] = "99"; // rss (field 24)
        let stat = format!("123 (my (odd) name) {}\n", fields.join(" "));
        let p = parse_stat(123, &stat).unwrap();
        assert_eq!(p.comm, "my (odd) name");
        assert_eq!((p.cpu_ticks, p.start_ticks, p.rss_pages), (12, 4242, 99));
        assert!(parse_stat(1, "1 (short) S 0").is_none());
    }

    /// A `/proc` of three processes, under `dir`: the boot time 1,000 s ago, and one process
    /// per `(pid, comm, seconds since boot it started at)`.
    fn fake_proc(dir: &std::path::Path, procs: &[(u32, &str, f64)]) -> Paths {
        let boot = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            - 1_000;
        let proc = dir.join("proc");
        std::fs::create_dir_all(&proc).unwrap();
        std::fs::write(proc.join("stat"), format!("cpu 0 0 0 0\nbtime {boot}\n")).unwrap();
        for (pid, comm, started) in procs {
            let mut fields = vec!["0".to_owned(); 22];
            fields[0] = "S".into();
            fields[19] = ((started * USER_HZ) as u64).to_string();
            fields[21] = "10".into();
            std::fs::create_dir_all(proc.join(pid.to_string())).unwrap();
            std::fs::write(
                proc.join(format!("{pid}/stat")),
                format!("{pid} ({comm}) {}\n", fields.join(" ")),
            )
            .unwrap();
        }
        Paths {
            proc,
            ..Paths::default()
        }
    }

    /// A FIFO at `path`: a read of it hangs until a writer opens it, as a command line of a
    /// process in uninterruptible sleep does.
    fn make_fifo(path: &std::path::Path) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
    }

    fn checks(yaml: &str) -> Vec<ProcessCheck> {
        #[derive(serde::Deserialize)]
        struct File {
            processes: Vec<ProcessCheck>,
        }
        serde_norway::from_str::<File>(yaml).unwrap().processes
    }

    fn up(node: &crate::Node, name: &str) -> f64 {
        up_in(&node.render(), name)
    }

    fn scraped(processes: &Processes, paths: &Paths) -> String {
        let mut out = Families::default();
        processes.collect(paths, &mut out).unwrap();
        axi_obs_core::metrics::render_families(&out.into_vec())
    }

    fn up_in(text: &str, name: &str) -> f64 {
        let line = format!("axi_process_up{{name=\"{name}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("no {line} in\n{text}"))
            .parse()
            .unwrap()
    }

    /// A command line whose read hangs (a process in uninterruptible sleep; here a FIFO no one
    /// writes to) costs one scrape its timeout, is skipped at once by the next ones, and does not
    /// keep the other processes from being found.
    #[test]
    fn a_command_line_that_cannot_be_read_does_not_hang_the_scrape() {
        let dir = tempfile::tempdir().unwrap();
        let paths = fake_proc(
            dir.path(),
            &[
                (100, "stuck", 10.0),
                (200, "demo-service", 10.0),
                (300, "nginx", 10.0),
            ],
        );
        let fifo = paths.proc("100/cmdline");
        make_fifo(&fifo);
        std::fs::write(paths.proc("200/cmdline"), "demo-service\0--listen\0:8080\0").unwrap();
        std::fs::write(paths.proc("300/cmdline"), "nginx: master process\0").unwrap();
        let processes = Processes::new(checks(
            "processes:\n  - { name: api, match: { cmdline: 'demo-service .*--listen' } }\n  - { name: stuck, match: { cmdline: 'never' } }\n  - { name: web, match: { comm: nginx } }\n",
        ))
        .with_cmdline_limits(Duration::from_millis(100), Duration::from_secs(30));
        let mut node = crate::Node::with_collectors(paths.clone(), &[]);
        node.add(Box::new(processes));
        let node = Arc::new(node);
        // Without the bound, the scrape never returns: it runs on a thread of its own here, so
        // that the test fails instead of hanging.
        let scrape = |node: &Arc<crate::Node>| {
            let (tx, rx) = std::sync::mpsc::channel();
            let node = node.clone();
            std::thread::spawn(move || {
                let _ = tx.send((up(&node, "api"), up(&node, "stuck"), up(&node, "web")));
            });
            rx.recv_timeout(Duration::from_secs(20))
                .expect("the scrape hung on a command line that cannot be read")
        };
        assert_eq!(scrape(&node), (1.0, 0.0, 1.0));
        // The read still hangs: skipped at once, no second thread waits on it.
        assert_eq!(scrape(&node), (1.0, 0.0, 1.0));
        // A writer opens the FIFO and closes it: the hung read returns (end of file).
        drop(std::fs::OpenOptions::new().write(true).open(&fifo).unwrap());
        assert_eq!(scrape(&node), (1.0, 0.0, 1.0));
    }

    /// Scrapes served in parallel each apply their own reading, in turn: one that read
    /// `/proc` first and waits on a command line, then a later one, then a third, count the
    /// CPU once (10, 20, 20 s). (Here the second scrape also waits on the first's hung read of
    /// the same command line, so this order holds even without the `turn` lock: the test
    /// checks the outcome, not the race the lock closes, which needs the second scrape to
    /// finish first.)
    #[test]
    fn parallel_scrapes_take_turns_and_count_cpu_once() {
        let dir = tempfile::tempdir().unwrap();
        let paths = fake_proc(dir.path(), &[(100, "stuck", 10.0), (200, "worker", 10.0)]);
        let fifo = paths.proc("100/cmdline");
        make_fifo(&fifo);
        // The worker's user CPU: field 14 of its stat, in ticks.
        let set_cpu = |seconds: f64| {
            let stat = paths.proc("200/stat");
            let text = std::fs::read_to_string(&stat).unwrap();
            let (head, rest) = text.split_once(") ").unwrap();
            let mut fields: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
            fields[11] = ((seconds * USER_HZ) as u64).to_string();
            std::fs::write(&stat, format!("{head}) {}\n", fields.join(" "))).unwrap();
        };
        set_cpu(10.0);
        let processes = Arc::new(
            Processes::new(checks(
                "processes:\n  - { name: stuck, match: { cmdline: never } }\n  - { name: worker, match: { comm: worker } }\n",
            ))
            .with_cmdline_limits(Duration::from_secs(1), Duration::from_secs(30)),
        );
        let cpu = |text: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix("axi_process_cpu_seconds_total{name=\"worker\"} "))
                .unwrap()
                .parse()
                .unwrap()
        };
        let scrape = || {
            let (p, paths) = (processes.clone(), paths.clone());
            std::thread::spawn(move || scraped(&p, &paths))
        };
        // A reads 10 s, then waits on the FIFO (up to its 1 s timeout).
        let a = scrape();
        std::thread::sleep(Duration::from_millis(300));
        set_cpu(20.0);
        let b = scrape();
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        assert_eq!(
            (cpu(&a), cpu(&b)),
            (10.0, 20.0),
            "in turn, each its own reading"
        );
        assert_eq!(cpu(&scraped(&processes, &paths)), 20.0);
        // The hung read returns.
        drop(std::fs::OpenOptions::new().write(true).open(&fifo).unwrap());
    }

    /// A start script that runs for a while and then `exec`s the service keeps its pid and
    /// start time; its kept command line is read again once `stat` shows another program.
    #[test]
    fn a_kept_command_line_is_read_again_after_exec() {
        let dir = tempfile::tempdir().unwrap();
        let paths = fake_proc(dir.path(), &[(200, "bash", 10.0)]);
        std::fs::write(
            paths.proc("200/cmdline"),
            "/bin/bash\0/usr/local/bin/start-api\0",
        )
        .unwrap();
        let processes = Processes::new(checks(
            "processes:\n  - { name: api, match: { cmdline: 'main\\.js' } }\n",
        ));
        assert_eq!(up_in(&scraped(&processes, &paths), "api"), 0.0);
        // `exec node /srv/api/main.js`: same pid and start, another `comm`.
        fake_proc(dir.path(), &[(200, "node", 10.0)]);
        std::fs::write(paths.proc("200/cmdline"), "node\0/srv/api/main.js\0").unwrap();
        assert_eq!(up_in(&scraped(&processes, &paths), "api"), 1.0);
    }

    /// A settled process's command line is read once; a young one's at every scrape (it may
    /// still be its parent's, or be rewritten), and a process gone takes its line out of the
    /// cache.
    #[test]
    fn command_lines_are_kept_once_settled_and_forgotten_when_the_process_ends() {
        let dir = tempfile::tempdir().unwrap();
        let paths = fake_proc(dir.path(), &[(200, "node", 10.0), (300, "nginx", 999.5)]);
        std::fs::write(paths.proc("200/cmdline"), "node\0/srv/api/main.js\0").unwrap();
        // Just forked from the master: the master's line, rewritten a moment later.
        std::fs::write(paths.proc("300/cmdline"), "nginx: master process\0").unwrap();
        let processes = Processes::new(checks(
            "processes:\n  - { name: api, match: { cmdline: 'main\\.js' } }\n  - { name: master, match: { cmdline: '^nginx: master' } }\n",
        ));
        let cached = |p: &Processes| {
            let mut keys: Vec<u32> = p.cmdlines.lock().unwrap().keys().map(|k| k.0).collect();
            keys.sort_unstable();
            keys
        };
        let text = scraped(&processes, &paths);
        assert_eq!((up_in(&text, "api"), up_in(&text, "master")), (1.0, 1.0));
        assert_eq!(
            cached(&processes),
            vec![200],
            "only the settled process is kept"
        );
        std::fs::write(paths.proc("200/cmdline"), "something else\0").unwrap();
        std::fs::write(paths.proc("300/cmdline"), "nginx: worker process\0").unwrap();
        // The settled line is not read again; the young one is, and no longer matches.
        let text = scraped(&processes, &paths);
        assert_eq!((up_in(&text, "api"), up_in(&text, "master")), (1.0, 0.0));
        std::fs::remove_dir_all(paths.proc("200")).unwrap();
        let text = scraped(&processes, &paths);
        assert_eq!(up_in(&text, "api"), 0.0);
        assert!(
            cached(&processes).is_empty(),
            "an ended process's line is dropped"
        );
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
