//! The YAML configuration: which collectors, which processes and ports to watch, which
//! endpoints to probe. Everything is optional; no file at all means every collector and no
//! checks. Errors name the file, line and field.
//!
//! ```yaml
//! collectors: [cpu, meminfo, filesystem]   # default: all
//! processes:
//!   - name: api                           # the `name` label
//!     match: { cmdline: "demo-service .*--listen" }   # or { comm: nginx } or { pidfile: /run/nginx.pid }
//! ports:
//!   - name: api
//!     port: 8080
//! probes:
//!   - name: api-health
//!     interval: 15s                        # default 30s
//!     http:
//!       url: http://127.0.0.1:8080/healthz
//!       expect_status: [200]               # default: any 2xx
//!       body_pattern: '"status":"ok"'      # optional regex
//!       timeout: 2s                        # default 5s
//!       follow_redirects: true             # default true, at most 10, as blackbox_exporter
//!   - name: site
//!     http:
//!       url: https://docs.example.com/
//!       ca_file: /etc/axi/internal-ca.pem  # optional: trust only these; default: system store
//!       insecure_skip_verify: false        # default false
//!   - name: database
//!     tcp: { address: "127.0.0.1:5432", timeout: 1s }
//! pm2:                                     # all optional
//!   enabled: auto                          # auto (pm2 on the PATH), true or false
//!   command: pm2
//!   interval: 15s
//!   timeout: 5s
//! systemd:                                 # read only where systemd runs
//!   units: [nginx.service, cron.service]
//!   command: systemctl
//!   interval: 15s
//!   timeout: 5s
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// A configuration error, naming the file and, where known, the line and field.
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Only these collectors; all when absent.
    #[serde(default)]
    pub collectors: Option<Vec<String>>,
    /// Processes to watch.
    #[serde(default)]
    pub processes: Vec<ProcessCheck>,
    /// TCP ports that must be listening.
    #[serde(default)]
    pub ports: Vec<PortCheck>,
    /// Endpoints to probe on their own schedule.
    #[serde(default)]
    pub probes: Vec<Probe>,
    /// PM2 processes from `pm2 jlist`. Defaults to on when `pm2` is on the `PATH`.
    #[serde(default)]
    pub pm2: Pm2Config,
    /// systemd unit states from `systemctl show`. Off unless units are listed.
    #[serde(default)]
    pub systemd: SystemdConfig,
}

/// Whether an optional source runs: `auto` (when its command is on the `PATH`), `true` or
/// `false`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Enabled {
    /// When the command is found on the `PATH` at start.
    #[default]
    Auto,
    /// Always; a missing command is reported as a failed scrape.
    Yes,
    /// Never.
    No,
}

impl<'de> Deserialize<'de> for Enabled {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(Self::Yes),
            Raw::Bool(false) => Ok(Self::No),
            Raw::Text(t) if t == "auto" => Ok(Self::Auto),
            Raw::Text(t) => Err(serde::de::Error::custom(format!(
                "expected auto, true or false, found {t:?}"
            ))),
        }
    }
}

/// `pm2:`: PM2's process list, read with `pm2 jlist` in the background.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pm2Config {
    /// `auto`, `true` or `false`. Defaults to `auto`.
    #[serde(default)]
    pub enabled: Enabled,
    /// The command (looked up on the `PATH` unless it contains a `/`). Defaults to `pm2`.
    #[serde(default = "default_pm2")]
    pub command: String,
    /// How often `pm2 jlist` runs. Defaults to 15 s.
    #[serde(default = "default_command_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// How long one run may take before it is killed. Defaults to 5 s.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// The `PM2_HOME` of the daemon to read: that of the user running the apps
    /// (`/home/deploy/.pm2`). Defaults to the collector's own `$PM2_HOME`, else `~/.pm2`.
    /// `pm2 jlist` is not run while its `rpc.sock` is missing: it would start an empty
    /// daemon of its own there and report no process.
    #[serde(default)]
    pub home: Option<std::path::PathBuf>,
}

impl Default for Pm2Config {
    fn default() -> Self {
        Self {
            enabled: Enabled::Auto,
            command: default_pm2(),
            interval: default_command_interval(),
            timeout: default_timeout(),
            home: None,
        }
    }
}

/// `systemd:`: the state of listed units, read with `systemctl show` in the background when
/// systemd runs (`/run/systemd/system` exists under the root filesystem).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemdConfig {
    /// Unit names, e.g. `nginx.service`. None by default (nothing runs).
    #[serde(default)]
    pub units: Vec<String>,
    /// The command (looked up on the `PATH` unless it contains a `/`). Defaults to
    /// `systemctl`.
    #[serde(default = "default_systemctl")]
    pub command: String,
    /// How often it runs. Defaults to 15 s.
    #[serde(default = "default_command_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// How long one run may take before it is killed. Defaults to 5 s.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for SystemdConfig {
    fn default() -> Self {
        Self {
            units: Vec::new(),
            command: default_systemctl(),
            interval: default_command_interval(),
            timeout: default_timeout(),
        }
    }
}

fn default_pm2() -> String {
    "pm2".into()
}

fn default_systemctl() -> String {
    "systemctl".into()
}

fn default_command_interval() -> Duration {
    Duration::from_secs(15)
}

/// A watched process (or group of processes matching one rule).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessCheck {
    /// The `name` label.
    pub name: String,
    /// How to find it: a one-key map, `{ comm: ... }`, `{ cmdline: ... }` or `{ pidfile: ... }`.
    #[serde(rename = "match", with = "serde_norway::with::singleton_map")]
    pub matcher: ProcessMatch,
}

/// How a watched process is found.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum ProcessMatch {
    /// The process name (`/proc/<pid>/comm`, at most 15 characters), exactly. A longer one
    /// could never match (the kernel keeps only its first 15): refused when the file is read.
    #[serde(deserialize_with = "comm_name")]
    Comm(String),
    /// A regular expression searched in the full command line (arguments joined by spaces).
    Cmdline(Pattern),
    /// A file holding the pid.
    Pidfile(PathBuf),
}

/// A `comm` name: 1 to 15 bytes, as the kernel keeps them.
fn comm_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    match s.len() {
        1..=15 => Ok(s),
        0 => Err(serde::de::Error::custom("comm is empty")),
        n => Err(serde::de::Error::custom(format!(
            "comm {s:?} is {n} bytes: the kernel keeps a process name's first 15 only, so it \
             could never match; use {{ cmdline: ... }} for longer names"
        ))),
    }
}

/// A regular expression, compiled when the file is read (so a bad one is reported with its
/// line).
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        regex::Regex::new(&s)
            .map(Pattern)
            .map_err(|e| serde::de::Error::custom(format!("invalid regular expression {s:?}: {e}")))
    }
}

/// A port that must be listening (TCP, IPv4 or IPv6).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortCheck {
    /// The `name` label.
    pub name: String,
    /// The port.
    pub port: u16,
}

/// One probe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    /// The `probe` label.
    pub name: String,
    /// How often it runs. Defaults to 30 s.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// An HTTP probe.
    #[serde(default)]
    pub http: Option<HttpProbe>,
    /// A TCP connect probe.
    #[serde(default)]
    pub tcp: Option<TcpProbe>,
}

fn default_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// An HTTP(S) GET probe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpProbe {
    /// The URL.
    pub url: String,
    /// Statuses that count as success. Defaults to any 2xx.
    #[serde(default)]
    pub expect_status: Vec<u16>,
    /// A regular expression the body must match.
    #[serde(default)]
    pub body_pattern: Option<Pattern>,
    /// Deadline of the whole probe. Defaults to 5 s.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// `https://` URLs and redirects to them: accept any server certificate (a self-signed test server). The
    /// expiry and TLS version are still reported. Defaults to false.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// `https://` URLs and redirects to them: trust exactly the PEM certificates in this file instead of the system
    /// trust store. Read when the configuration is loaded.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Follow redirects, at most [`MAX_REDIRECTS`](crate::probes::MAX_REDIRECTS), as
    /// blackbox_exporter's `follow_redirects`. Defaults to true.
    #[serde(default = "yes")]
    pub follow_redirects: bool,
}

fn yes() -> bool {
    true
}

/// A TCP connect probe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpProbe {
    /// `host:port`.
    pub address: String,
    /// Connect deadline. Defaults to 5 s.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

impl Config {
    /// Reads and validates `path`.
    ///
    /// # Errors
    ///
    /// When the file cannot be read, is not valid YAML of this shape, or names a collector that
    /// does not exist, a duplicate name, or a probe without exactly one kind.
    pub fn load(path: &Path, known_collectors: &[&str]) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, path, known_collectors)
    }

    /// Parses and validates `text` (read from `file`).
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load).
    pub fn parse(text: &str, file: &Path, known_collectors: &[&str]) -> Result<Self, ConfigError> {
        let err = |line: Option<usize>, message: String| ConfigError {
            file: file.to_owned(),
            line,
            message,
        };
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let config: Config = serde_norway::from_str(text)
            .map_err(|e| err(e.location().map(|l| l.line()), e.to_string()))?;
        let locate = Locate::new(text);
        if let Some(cs) = &config.collectors {
            for (i, c) in cs.iter().enumerate() {
                if !known_collectors.contains(&c.as_str()) {
                    let line = locate.item("collectors", i).map(|b| {
                        locate
                            .line_in(b, |l| l.contains(c.as_str()))
                            .unwrap_or(Locate::start(b))
                    });
                    return Err(err(
                        line,
                        format!(
                            "collectors: unknown collector {c:?}; known: {}",
                            known_collectors.join(", ")
                        ),
                    ));
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, p) in config.probes.iter().enumerate() {
            let item = locate.item("probes", i);
            let line = item.map(Locate::start);
            if !names.insert(("probe", p.name.clone())) {
                return Err(err(line, format!("probes: duplicate name {:?}", p.name)));
            }
            match (&p.http, &p.tcp) {
                (Some(h), None) => {
                    let uri: http::Uri = h.url.parse().map_err(|e| {
                        err(
                            line,
                            format!("probes[{}].http.url: {:?} is not a URL: {e}", p.name, h.url),
                        )
                    })?;
                    match uri.scheme_str() {
                        // An http:// URL reaches TLS only through a redirect to https://.
                        Some("http")
                            if !h.follow_redirects
                                && (h.insecure_skip_verify || h.ca_file.is_some()) =>
                        {
                            return Err(err(
                                line,
                                format!(
                                    "probes[{}].http: insecure_skip_verify and ca_file apply to https:// URLs (or redirects to them) only",
                                    p.name
                                ),
                            ));
                        }
                        Some("http" | "https") => {
                            if let Some(ca) = &h.ca_file {
                                crate::tls::read_ca_file(ca).map_err(|e| {
                                    err(
                                        item.and_then(|b| locate.key_in(b, "ca_file")).or(line),
                                        format!("probes[{}].http.{e}", p.name),
                                    )
                                })?;
                            }
                        }
                        _ => {
                            return Err(err(
                                line,
                                format!(
                                    "probes[{}].http.url: expected an http:// or https:// URL",
                                    p.name
                                ),
                            ));
                        }
                    }
                    if uri.host().is_none() {
                        return Err(err(line, format!("probes[{}].http.url: no host", p.name)));
                    }
                }
                (None, Some(t)) => {
                    if !t.address.contains(':') {
                        return Err(err(
                            line,
                            format!("probes[{}].tcp.address: expected host:port", p.name),
                        ));
                    }
                }
                _ => {
                    return Err(err(
                        line,
                        format!("probes[{}]: exactly one of http or tcp is needed", p.name),
                    ));
                }
            }
            if p.interval.is_zero() {
                return Err(err(
                    line,
                    format!("probes[{}].interval: must be positive", p.name),
                ));
            }
        }
        for (i, p) in config.processes.iter().enumerate() {
            if !names.insert(("process", p.name.clone())) {
                return Err(err(
                    locate.item("processes", i).map(Locate::start),
                    format!("processes: duplicate name {:?}", p.name),
                ));
            }
        }
        for (i, p) in config.ports.iter().enumerate() {
            if !names.insert(("port", p.name.clone())) {
                return Err(err(
                    locate.item("ports", i).map(Locate::start),
                    format!("ports: duplicate name {:?}", p.name),
                ));
            }
        }
        for (section, command, interval, timeout) in [
            (
                "pm2",
                &config.pm2.command,
                config.pm2.interval,
                config.pm2.timeout,
            ),
            (
                "systemd",
                &config.systemd.command,
                config.systemd.interval,
                config.systemd.timeout,
            ),
        ] {
            let section_block = locate.section(section);
            let line = section_block.map(Locate::start);
            let key = |k: &str| section_block.and_then(|b| locate.key_in(b, k)).or(line);
            if command.trim().is_empty() {
                return Err(err(key("command"), format!("{section}.command: empty")));
            }
            if interval.is_zero() || timeout.is_zero() {
                let which = if interval.is_zero() {
                    "interval"
                } else {
                    "timeout"
                };
                return Err(err(
                    key(which),
                    format!("{section}: interval and timeout must be positive"),
                ));
            }
        }
        for unit in &config.systemd.units {
            if unit.is_empty()
                || unit.starts_with('-')
                || unit.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                let block = locate.section("systemd");
                return Err(err(
                    block.and_then(|b| {
                        locate
                            .line_in(b, |l| l.contains(unit.as_str()) && !unit.is_empty())
                            .or_else(|| locate.key_in(b, "units"))
                    }),
                    format!("systemd.units: {unit:?} is not a unit name"),
                ));
            }
        }
        Ok(config)
    }
}

/// Where things are in the file, to point errors found after parsing at their own lines: a
/// top-level section's block, the items of its list (block style, `- ` lines), and lines in
/// them. Flow-style lists (`probes: [{...}]`) are found as their section's line.
struct Locate<'t> {
    lines: Vec<&'t str>,
}

/// Lines `start..end` (0-based) of the file.
#[derive(Clone, Copy, Debug)]
struct Block {
    start: usize,
    end: usize,
}

impl<'t> Locate<'t> {
    fn new(text: &'t str) -> Self {
        Self {
            lines: text.lines().collect(),
        }
    }

    fn indent(l: &str) -> usize {
        l.len() - l.trim_start().len()
    }

    fn significant(l: &str) -> bool {
        let t = l.trim_start();
        !t.is_empty() && !t.starts_with('#')
    }

    /// The top-level `section:` line and the lines under it.
    fn section(&self, section: &str) -> Option<Block> {
        let start = self.lines.iter().position(|l| {
            Self::indent(l) == 0
                && l.strip_prefix(section)
                    .is_some_and(|r| r.trim_start().starts_with(':'))
        })?;
        let end = (start + 1..self.lines.len())
            .find(|&i| Self::significant(self.lines[i]) && Self::indent(self.lines[i]) == 0)
            .unwrap_or(self.lines.len());
        Some(Block { start, end })
    }

    /// The `index`-th item (0-based) of the list under `section`, or the section itself
    /// when its items are not on lines of their own.
    fn item(&self, section: &str, index: usize) -> Option<Block> {
        let sec = self.section(section)?;
        let dashes: Vec<usize> = (sec.start + 1..sec.end)
            .filter(|&i| self.lines[i].trim_start().starts_with('-'))
            .collect();
        let Some(&first) = dashes.first() else {
            return Some(sec);
        };
        let dash = Self::indent(self.lines[first]);
        let items: Vec<usize> = dashes
            .into_iter()
            .filter(|&i| Self::indent(self.lines[i]) == dash)
            .collect();
        let Some(&start) = items.get(index) else {
            return Some(sec);
        };
        let end = items.get(index + 1).copied().unwrap_or(sec.end);
        Some(Block { start, end })
    }

    /// The first line (1-based) of `block` that `f` accepts.
    fn line_in(&self, block: Block, f: impl Fn(&str) -> bool) -> Option<usize> {
        (block.start..block.end)
            .find(|&i| f(self.lines[i]))
            .map(|i| i + 1)
    }

    /// The line (1-based) in `block` that holds the key `key` (`key:` after a space, `{`,
    /// `,`, `- ` or at the start of the line).
    fn key_in(&self, block: Block, key: &str) -> Option<usize> {
        let pattern = format!("{key}:");
        self.line_in(block, |l| {
            l.match_indices(&pattern).any(|(at, _)| {
                l[..at]
                    .chars()
                    .next_back()
                    .is_none_or(|c| matches!(c, ' ' | '{' | ',' | '-' | '\t'))
            })
        })
    }

    /// The first line (1-based) of `block`.
    fn start(block: Block) -> usize {
        block.start + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["cpu", "meminfo"];

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/axi/node.yml"), KNOWN)
    }

    #[test]
    fn a_full_file() {
        let c = parse(
            "collectors: [cpu]\nprocesses:\n  - name: api\n    match: { cmdline: 'demo-service .*' }\n  - name: web\n    match: { comm: nginx }\nports:\n  - name: api\n    port: 8080\nprobes:\n  - name: health\n    interval: 15s\n    http: { url: 'http://127.0.0.1:8080/healthz', expect_status: [200], body_pattern: ok, timeout: 2s }\n  - name: db\n    tcp: { address: '127.0.0.1:5432' }\n",
        )
        .unwrap();
        assert_eq!(c.processes.len(), 2);
        assert!(matches!(c.processes[1].matcher, ProcessMatch::Comm(ref n) if n == "nginx"));
        assert_eq!(c.probes[0].interval, Duration::from_secs(15));
        assert_eq!(
            c.probes[1].tcp.as_ref().unwrap().timeout,
            Duration::from_secs(5)
        );
        assert!(parse("").unwrap().probes.is_empty());
    }

    #[test]
    fn follow_redirects_defaults_to_true() {
        let c = parse(
            "probes:\n  - name: a\n    http: { url: 'http://a/' }\n  - name: b\n    http: { url: 'http://a/', follow_redirects: false }\n",
        )
        .unwrap();
        assert!(c.probes[0].http.as_ref().unwrap().follow_redirects);
        assert!(!c.probes[1].http.as_ref().unwrap().follow_redirects);
        let e =
            parse("probes:\n  - name: a\n    http: { url: 'http://a/', follow_redirects: 3 }\n")
                .unwrap_err();
        assert!(e.to_string().contains("follow_redirects"), "{e}");
        assert_eq!(e.line, Some(3));
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let e = parse("probes:\n  - name: x\n    intervall: 5s\n    tcp: { address: 'a:1' }\n")
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("/etc/axi/node.yml:3"), "{msg}");
        assert!(msg.contains("intervall"), "{msg}");

        let e =
            parse("processes:\n  - name: x\n    match: { cmdline: '(unclosed' }\n").unwrap_err();
        assert!(e.to_string().contains("invalid regular expression"), "{e}");
        assert_eq!(e.line, Some(3));

        // The kernel keeps 15 bytes of a process name: a longer comm could never match.
        let e = parse("processes:\n  - name: x\n    match: { comm: my-application-server }\n")
            .unwrap_err();
        assert!(e.to_string().contains("first 15 only"), "{e}");
        assert_eq!(e.line, Some(3));
        assert!(parse("processes:\n  - name: x\n    match: { comm: 123456789012345 }\n").is_ok());

        let e = parse("collectors: [cpu, gpu]\n").unwrap_err();
        assert!(
            e.to_string().contains("\"gpu\"") && e.line == Some(1),
            "{e}"
        );

        let e = parse("probes:\n  - name: both\n    http: { url: 'http://a/' }\n    tcp: { address: 'a:1' }\n").unwrap_err();
        assert!(
            e.to_string().contains("exactly one of http or tcp") && e.line == Some(2),
            "{e}"
        );

        assert!(parse("probes:\n  - name: s\n    http: { url: 'https://a/' }\n").is_ok());
        let e = parse("probes:\n  - name: s\n    http:\n      url: 'https://a/'\n      ca_file: /nonexistent/ca.pem\n")
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("ca_file /nonexistent/ca.pem: cannot read")
                && e.line == Some(5),
            "{e}"
        );
        let e = parse(
            "probes:\n  - name: s\n    http: { url: 'http://a/', insecure_skip_verify: true, follow_redirects: false }\n",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("https:// URLs (or redirects to them) only"),
            "{e}"
        );
        // Followed redirects may lead to https://, where they apply.
        assert!(
            parse(
                "probes:\n  - name: s\n    http: { url: 'http://a/', insecure_skip_verify: true }\n"
            )
            .is_ok()
        );
        let e = parse("probes:\n  - name: s\n    http:\n      url: 'http://a/'\n      ca_file: /nonexistent/ca.pem\n")
            .unwrap_err();
        assert_eq!(e.line, Some(5), "{e}");
        let e = parse("probes:\n  - name: s\n    http: { url: 'ftp://a/' }\n").unwrap_err();
        assert!(e.to_string().contains("http:// or https://"), "{e}");

        let e = parse("ports:\n  - name: p\n    port: 70000\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");

        let e = parse("pm2:\n  enabled: maybe\n").unwrap_err();
        assert!(
            e.to_string().contains("auto, true or false") && e.line == Some(2),
            "{e}"
        );
        let e = parse("pm2:\n  timeout: 0s\n").unwrap_err();
        assert!(e.to_string().contains("pm2: interval and timeout"), "{e}");
        let e = parse("systemd:\n  units:\n    - nginx.service\n    - '--all'\n").unwrap_err();
        assert!(
            e.to_string().contains("\"--all\" is not a unit name") && e.line == Some(4),
            "{e}"
        );
        let e = parse("systemd:\n  unit: [a.service]\n").unwrap_err();
        assert!(e.to_string().contains("unit") && e.line == Some(2), "{e}");
    }

    /// An error in the third probe points at the third probe, not at the first line that
    /// mentions its name or the field: a duplicate name at the duplicate, a bad `ca_file` at
    /// that probe's `ca_file`, a name shared with a process at the probe.
    #[test]
    fn errors_point_at_their_own_entry() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, axi_obs_core::testing::TestPki::new(&["a"]).ca_pem).unwrap();
        let text = format!(
            "processes:\n  - name: api\n    match: {{ comm: api }}\nprobes:\n  - name: ok\n    http:\n      url: 'https://a/'\n      ca_file: {}\n  - name: api\n    tcp: {{ address: 'a:1' }}\n  - name: bad\n    http:\n      url: 'https://b/'\n      ca_file: /nonexistent/ca.pem\n",
            ca.display()
        );
        let e = parse(&text).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
        // Lines: 8 is the first probe's ca_file (a readable CA), 14 the third's.
        assert_eq!(e.line, Some(14), "{e}");
        let e = parse(
            "probes:\n  - name: a\n    tcp: { address: 'a:1' }\n  - name: b\n    tcp: { address: 'b:1' }\n  - name: a\n    tcp: { address: 'c:1' }\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("duplicate name \"a\""), "{e}");
        assert_eq!(e.line, Some(6), "{e}");
        let e = parse(
            "ports:\n  - name: web\n    port: 80\nprocesses:\n  - name: web\n    match: { comm: nginx }\n  - name: web\n    match: { comm: nginx }\n",
        )
        .unwrap_err();
        assert_eq!(e.line, Some(7), "{e}");
        let e = parse("systemd:\n  command: systemctl\n  interval: 0s\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
    }

    #[test]
    fn pm2_and_systemd_sections() {
        let c = parse("").unwrap();
        assert_eq!(c.pm2.enabled, Enabled::Auto);
        assert_eq!(c.pm2.command, "pm2");
        assert!(c.systemd.units.is_empty());
        let c = parse(
            "pm2: { enabled: false }\nsystemd:\n  units: [nginx.service, cron.service]\n  timeout: 2s\n",
        )
        .unwrap();
        assert_eq!(c.pm2.enabled, Enabled::No);
        assert_eq!(c.systemd.units, ["nginx.service", "cron.service"]);
        assert_eq!(c.systemd.timeout, Duration::from_secs(2));
        assert_eq!(c.systemd.command, "systemctl");
        let c = parse("pm2: { enabled: true, command: /opt/pm2/bin/pm2, interval: 1m }\n").unwrap();
        assert_eq!(c.pm2.enabled, Enabled::Yes);
        assert_eq!(c.pm2.interval, Duration::from_secs(60));
        assert_eq!(c.pm2.enabled, Enabled::Yes);
    }
}
