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
//!   - name: database
//!     tcp: { address: "127.0.0.1:5432", timeout: 1s }
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
    /// The process name (`/proc/<pid>/comm`, at most 15 characters), exactly.
    Comm(String),
    /// A regular expression searched in the full command line (arguments joined by spaces).
    Cmdline(Pattern),
    /// A file holding the pid.
    Pidfile(PathBuf),
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
        if let Some(cs) = &config.collectors {
            for c in cs {
                if !known_collectors.contains(&c.as_str()) {
                    return Err(err(
                        line_of(text, c),
                        format!(
                            "collectors: unknown collector {c:?}; known: {}",
                            known_collectors.join(", ")
                        ),
                    ));
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for p in &config.probes {
            let line = line_of(text, &p.name);
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
                        Some("http") => {}
                        Some("https") => {
                            return Err(err(
                                line,
                                format!(
                                    "probes[{}].http.url: https probes are not supported yet",
                                    p.name
                                ),
                            ));
                        }
                        _ => {
                            return Err(err(
                                line,
                                format!("probes[{}].http.url: expected an http:// URL", p.name),
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
        for p in &config.processes {
            if !names.insert(("process", p.name.clone())) {
                return Err(err(
                    line_of(text, &p.name),
                    format!("processes: duplicate name {:?}", p.name),
                ));
            }
        }
        for p in &config.ports {
            if !names.insert(("port", p.name.clone())) {
                return Err(err(
                    line_of(text, &p.name),
                    format!("ports: duplicate name {:?}", p.name),
                ));
            }
        }
        Ok(config)
    }
}

/// The first line (1-based) mentioning `needle`, to point errors found after parsing.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
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

        let e = parse("probes:\n  - name: s\n    http: { url: 'https://a/' }\n").unwrap_err();
        assert!(e.to_string().contains("https"), "{e}");

        let e = parse("ports:\n  - name: p\n    port: 70000\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
    }
}
