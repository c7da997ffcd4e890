//! PM2 processes, from `pm2 jlist` run in the background on the collector's own schedule
//! (never during a scrape; killed past its timeout). A scrape reads the last result.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `axi_pm2_process_up` | `name`, `id` | 1 when PM2 reports the process `online` |
//! | `axi_pm2_process_restarts_total` | `name`, `id` | PM2's `restart_time` |
//! | `axi_pm2_process_unstable_restarts_total` | `name`, `id` | PM2's `unstable_restarts` |
//! | `axi_pm2_process_cpu_percent` | `name`, `id` | PM2's `monit.cpu` (percent of one core) |
//! | `axi_pm2_process_memory_bytes` | `name`, `id` | PM2's `monit.memory` (resident bytes) |
//! | `axi_pm2_process_start_time_seconds` | `name`, `id` | last start (`pm_uptime`), Unix seconds, while online |
//! | `axi_pm2_scrape_success` | | 1 when the last `pm2 jlist` ran and parsed |
//! | `axi_pm2_scrape_duration_seconds` | | how long it took |
//!
//! With `enabled: auto` (the default) this runs only when `pm2` is on the `PATH` at start. It
//! reads the daemon of `home` (`PM2_HOME`, given to `pm2`; by default the collector's own
//! `$PM2_HOME` or `~/.pm2`), and does not run `pm2 jlist` while that daemon's `rpc.sock` is
//! missing: pm2 would start an empty daemon of its own there and report no process.
//! PM2 keeps `id` unique, so the series count is the PM2 process count, capped at
//! [`MAX_PROCESSES`].

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::sync::PoisonError;
use std::time::Duration;

use serde::Deserialize;

use crate::command::{self, Cache, CommandError};
use crate::config::{Enabled, Pm2Config};
use crate::{CollectError, Collector, Families, Paths};

/// At most this many PM2 processes are reported; the rest are dropped with a warning.
pub const MAX_PROCESSES: usize = 1000;

/// One entry of `pm2 jlist` (the fields read; PM2 prints many more).
#[derive(Debug, Clone, Deserialize)]
pub struct Pm2Process {
    /// The app name.
    pub name: String,
    /// PM2's id.
    pub pm_id: u64,
    /// The OS pid (0 when stopped).
    #[serde(default)]
    pub pid: u64,
    /// Live figures.
    #[serde(default)]
    pub monit: Monit,
    /// PM2's state for the process.
    pub pm2_env: Pm2Env,
}

/// `monit` of a `pm2 jlist` entry.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Monit {
    /// Resident memory, bytes.
    #[serde(default)]
    pub memory: f64,
    /// CPU, percent of one core.
    #[serde(default)]
    pub cpu: f64,
}

/// `pm2_env` of a `pm2 jlist` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct Pm2Env {
    /// `online`, `stopping`, `stopped`, `launching`, `errored`, `one-launch-status`.
    pub status: String,
    /// Restarts since the process was added.
    #[serde(default)]
    pub restart_time: f64,
    /// Restarts within `min_uptime` of the start.
    #[serde(default)]
    pub unstable_restarts: f64,
    /// Last start, Unix milliseconds.
    #[serde(default)]
    pub pm_uptime: f64,
}

/// Parses `pm2 jlist` output. PM2 may print a notice line (an out-of-date daemon, say) before
/// the JSON array; everything before the first line that starts with `[` is skipped.
///
/// # Errors
///
/// When no JSON array of process entries is found.
pub fn parse_jlist(output: &[u8]) -> Result<Vec<Pm2Process>, String> {
    let text = std::str::from_utf8(output).map_err(|e| format!("not UTF-8: {e}"))?;
    let start = if text.trim_start().starts_with('[') {
        0
    } else {
        text.match_indices('\n')
            .map(|(i, _)| i + 1)
            .find(|&i| text[i..].starts_with('['))
            .ok_or("no JSON array in the output")?
    };
    let mut list: Vec<Pm2Process> =
        serde_json::from_str(text[start..].trim_end()).map_err(|e| format!("JSON: {e}"))?;
    if list.len() > MAX_PROCESSES {
        tracing::warn!(
            processes = list.len(),
            kept = MAX_PROCESSES,
            "too many PM2 processes"
        );
        list.truncate(MAX_PROCESSES);
    }
    Ok(list)
}

/// Runs `pm2 jlist` in the background and renders its last result.
#[derive(Debug, Clone)]
pub struct Pm2 {
    cache: Cache<Vec<Pm2Process>>,
}

impl Pm2 {
    /// Starts the background task on the current Tokio runtime, or returns `None` when PM2 is
    /// off: `enabled: false`, or `auto` with the command not found on `path` (a `PATH` value,
    /// also given to the command).
    pub fn start(config: &Pm2Config, path: &OsStr) -> Option<Self> {
        let found = command::which(&config.command, path);
        let program: PathBuf = match (config.enabled, found) {
            (Enabled::No, _) | (Enabled::Auto, None) => return None,
            (_, Some(p)) => p,
            (Enabled::Yes, None) => PathBuf::from(&config.command),
        };
        let home = config
            .home
            .clone()
            .or_else(|| std::env::var_os("PM2_HOME").map(PathBuf::from))
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pm2")))
            .unwrap_or_else(|| PathBuf::from(".pm2"));
        tracing::info!(command = %program.display(), home = %home.display(), interval = ?config.interval, "watching PM2");
        let cache: Cache<Vec<Pm2Process>> = Cache::default();
        let path: OsString = path.to_owned();
        let timeout = config.timeout;
        command::spawn_schedule(config.interval, cache.clone(), move || {
            let (program, path, home) = (program.clone(), path.clone(), home.clone());
            async move {
                // No daemon there: `pm2 jlist` would start an empty one of its own and report
                // no process, for good.
                if !home.join("rpc.sock").exists() {
                    return Err(CommandError::Spawn {
                        command: program.display().to_string(),
                        detail: format!(
                            "no PM2 daemon at {} (no rpc.sock): not run, as it would start an \
                             empty daemon of its own; set pm2.home to the PM2_HOME of the user \
                             running the apps",
                            home.display()
                        ),
                    });
                }
                let env = [("PM2_HOME", home.as_os_str())];
                let out = command::run_with_env(&program, &["jlist"], &path, &env, timeout).await?;
                parse_jlist(&out).map_err(|detail| CommandError::Parse {
                    command: program.display().to_string(),
                    detail,
                })
            }
        });
        Some(Self { cache })
    }

    /// Waits until the first run has finished, or `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        command::wait_ready(&self.cache, timeout).await
    }
}

impl Collector for Pm2 {
    fn name(&self) -> &'static str {
        "pm2"
    }

    fn collect(&self, _paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
        let Some(snapshot) = cache.as_ref() else {
            return Ok(());
        };
        out.gauge(
            "axi_pm2_scrape_success",
            "1 when the last pm2 jlist ran and its output was understood.",
            &[],
            f64::from(u8::from(snapshot.result.is_ok())),
        );
        out.gauge(
            "axi_pm2_scrape_duration_seconds",
            "How long the last pm2 jlist took, in seconds.",
            &[],
            snapshot.duration.as_secs_f64(),
        );
        let Ok(list) = &snapshot.result else {
            return Ok(());
        };
        for p in list {
            let id = p.pm_id.to_string();
            let l = [("name", p.name.as_str()), ("id", id.as_str())];
            let online = p.pm2_env.status == "online";
            out.gauge(
                "axi_pm2_process_up",
                "1 when PM2 reports the process online.",
                &l,
                f64::from(u8::from(online)),
            );
            out.counter(
                "axi_pm2_process_restarts_total",
                "Restarts of the process counted by PM2 (restart_time).",
                &l,
                p.pm2_env.restart_time,
            );
            out.counter(
                "axi_pm2_process_unstable_restarts_total",
                "Restarts within min_uptime counted by PM2 (unstable_restarts).",
                &l,
                p.pm2_env.unstable_restarts,
            );
            out.gauge(
                "axi_pm2_process_cpu_percent",
                "CPU use of the process reported by PM2, in percent of one core.",
                &l,
                p.monit.cpu,
            );
            out.gauge(
                "axi_pm2_process_memory_bytes",
                "Resident memory of the process reported by PM2, in bytes.",
                &l,
                p.monit.memory,
            );
            if online && p.pm2_env.pm_uptime > 0.0 {
                out.gauge(
                    "axi_pm2_process_start_time_seconds",
                    "Last start of the process reported by PM2, in seconds since the epoch.",
                    &l,
                    p.pm2_env.pm_uptime / 1000.0,
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_notice_before_the_json_is_skipped() {
        let out = b">>>> In-memory PM2 is out-of-date, do:\n>>>> $ pm2 update\n[{\"name\":\"a\",\"pm_id\":3,\"pm2_env\":{\"status\":\"stopped\"}}]\n";
        let list = parse_jlist(out).unwrap();
        assert_eq!(list[0].pm_id, 3);
        assert_eq!(list[0].monit.memory, 0.0);
        assert!(parse_jlist(b"[]").unwrap().is_empty());
    }

    #[test]
    fn malformed_output_is_an_error() {
        for bad in [
            &b""[..],
            b"not json",
            b"[{\"name\":\"a\"}]",
            b"{\"name\":\"a\"}",
            b"[{\"name\":\"a\",\"pm_id\":\"x\",\"pm2_env\":{\"status\":\"online\"}}]",
            b"\xff[]",
        ] {
            assert!(
                parse_jlist(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
