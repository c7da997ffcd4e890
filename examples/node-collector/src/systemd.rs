//! The state of configured systemd units in node_exporter's systemd collector shape, read with
//! `systemctl show --property=ActiveState,Type,LoadState UNIT...` in the background on the collector's
//! own schedule (never during a scrape; killed past its timeout).
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `node_systemd_unit_state` | `name`, `state`, `type` | one series per state (`active`, `activating`, `deactivating`, `inactive`, `failed`), 1 for the unit's current one |
//! | `axi_systemd_unit_loaded` | `name` | 1 when systemd has the unit loaded; 0 for a unit it does not know (a typo in the name, a unit not installed), which then has no `node_systemd_unit_state` series, as node_exporter lists only loaded units (`systemctl show` would call it `inactive`) |
//! | `axi_systemd_scrape_success` | | 1 when the last `systemctl show` ran and parsed |
//! | `axi_systemd_scrape_duration_seconds` | | how long it took |
//!
//! As in node_exporter, `type` is the unit's `Type` for `.service` and `.mount` units (`simple`,
//! `forking`, `notify`, `ext4`...; a name without a suffix is a service, as systemctl reads it)
//! and empty for the others. It runs only when systemd is the
//! init system (`/run/systemd/system` exists under the root filesystem, as `sd_booted()`
//! checks) and units are listed.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::sync::PoisonError;
use std::time::Duration;

use crate::command::{self, Cache, CommandError};
use crate::config::SystemdConfig;
use crate::{CollectError, Collector, Families, Paths};

/// node_exporter's unit states, in its order.
pub const STATES: [&str; 5] = ["active", "activating", "deactivating", "inactive", "failed"];

/// One unit as `systemctl show` described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitState {
    /// The unit name as configured.
    pub name: String,
    /// `ActiveState`.
    pub active_state: String,
    /// The `type` label (see the module docs).
    pub kind: String,
    /// Whether systemd has the unit loaded (`LoadState=loaded`; true when not reported).
    pub loaded: bool,
}

/// Parses `systemctl show` output for `units` (one `KEY=value` block per unit, in the order of
/// the arguments, separated by blank lines). A unit is named by its `Id` when the block has
/// one, as node_exporter names it: `nginx` is `nginx.service`, an alias (`sshd.service` on
/// Debian) its unit's own name (`ssh.service`); a unit configured twice under two of its
/// names is reported once.
///
/// # Errors
///
/// When the number of blocks differs from the number of units or a block has no `ActiveState`.
pub fn parse_show(output: &str, units: &[String]) -> Result<Vec<UnitState>, String> {
    let blocks: Vec<&str> = output
        .split("\n\n")
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .collect();
    if blocks.len() != units.len() {
        return Err(format!("{} blocks for {} units", blocks.len(), units.len()));
    }
    let mut seen = std::collections::HashSet::new();
    let parsed: Result<Vec<UnitState>, String> = units
        .iter()
        .zip(blocks)
        .map(|(given, block)| {
            let prop = |key: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                    .map(str::to_owned)
            };
            let name = prop("Id")
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| given.clone());
            let active_state =
                prop("ActiveState").ok_or_else(|| format!("{given}: no ActiveState"))?;
            let service_or_mount =
                name.ends_with(".service") || name.ends_with(".mount") || !name.contains('.');
            let kind = if service_or_mount {
                prop("Type").unwrap_or_default()
            } else {
                String::new()
            };
            Ok(UnitState {
                name,
                active_state,
                kind,
                loaded: prop("LoadState").is_none_or(|l| l == "loaded"),
            })
        })
        .collect();
    Ok(parsed?
        .into_iter()
        .filter(|u| seen.insert(u.name.clone()))
        .collect())
}

/// Runs `systemctl show` in the background and renders its last result.
#[derive(Debug, Clone)]
pub struct Systemd {
    cache: Cache<Vec<UnitState>>,
}

impl Systemd {
    /// Starts the background task on the current Tokio runtime, or returns `None` when no unit
    /// is configured or systemd is not running (no `run/systemd/system` under `paths.root`).
    /// `path` is the `PATH` to find the command on, also given to it.
    pub fn start(config: &SystemdConfig, paths: &Paths, path: &OsStr) -> Option<Self> {
        if config.units.is_empty() {
            return None;
        }
        if !paths.root("run/systemd/system").is_dir() {
            tracing::info!("systemd is not running here: unit states are not collected");
            return None;
        }
        let program: PathBuf =
            command::which(&config.command, path).unwrap_or_else(|| PathBuf::from(&config.command));
        let cache: Cache<Vec<UnitState>> = Cache::default();
        let path: OsString = path.to_owned();
        let timeout = config.timeout;
        let units = config.units.clone();
        command::spawn_schedule(config.interval, cache.clone(), move || {
            let (program, path, units) = (program.clone(), path.clone(), units.clone());
            async move {
                let mut args = vec!["show", "--property=Id,ActiveState,Type,LoadState"];
                args.extend(units.iter().map(String::as_str));
                let out = command::run(&program, &args, &path, timeout).await?;
                parse_show(&String::from_utf8_lossy(&out), &units).map_err(|detail| {
                    CommandError::Parse {
                        command: program.display().to_string(),
                        detail,
                    }
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

impl Collector for Systemd {
    fn name(&self) -> &'static str {
        "systemd"
    }

    fn collect(&self, _paths: &Paths, out: &mut Families) -> Result<(), CollectError> {
        let cache = self.cache.read().unwrap_or_else(PoisonError::into_inner);
        let Some(snapshot) = cache.as_ref() else {
            return Ok(());
        };
        out.gauge(
            "axi_systemd_scrape_success",
            "1 when the last systemctl show ran and its output was understood.",
            &[],
            f64::from(u8::from(snapshot.result.is_ok())),
        );
        out.gauge(
            "axi_systemd_scrape_duration_seconds",
            "How long the last systemctl show took, in seconds.",
            &[],
            snapshot.duration.as_secs_f64(),
        );
        let Ok(units) = &snapshot.result else {
            return Ok(());
        };
        for unit in units {
            out.gauge(
                "axi_systemd_unit_loaded",
                "1 when systemd has the unit loaded; 0 for a unit it does not know (a typo, a unit not installed).",
                &[("name", unit.name.as_str())],
                f64::from(u8::from(unit.loaded)),
            );
            if !unit.loaded {
                continue;
            }
            for state in STATES {
                out.gauge(
                    "node_systemd_unit_state",
                    "Systemd unit",
                    &[
                        ("name", unit.name.as_str()),
                        ("state", state),
                        ("type", unit.kind.as_str()),
                    ],
                    f64::from(u8::from(unit.active_state == state)),
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

    fn units(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn blocks_in_argument_order() {
        let out = "Type=notify\nActiveState=active\n\nActiveState=failed\n\nType=ext4\nActiveState=inactive\n";
        let got = parse_show(
            out,
            &units(&["nginx.service", "backup.timer", "data.mount"]),
        )
        .unwrap();
        assert_eq!(
            got,
            [
                UnitState {
                    name: "nginx.service".into(),
                    active_state: "active".into(),
                    kind: "notify".into(),
                    loaded: true
                },
                UnitState {
                    name: "backup.timer".into(),
                    active_state: "failed".into(),
                    kind: String::new(),
                    loaded: true
                },
                UnitState {
                    name: "data.mount".into(),
                    active_state: "inactive".into(),
                    kind: "ext4".into(),
                    loaded: true
                },
            ]
        );
    }

    /// A name without a suffix is a service (systemctl reads `nginx` as `nginx.service`), so
    /// it gets its `Type`; a unit systemd does not know is not loaded.
    #[test]
    fn bare_names_are_services_and_unknown_units_are_not_loaded() {
        let out = "Type=notify\nActiveState=active\nLoadState=loaded\n\nType=simple\nActiveState=inactive\nLoadState=not-found\n";
        let got = parse_show(out, &units(&["nginx", "ngnix.service"])).unwrap();
        assert_eq!((got[0].kind.as_str(), got[0].loaded), ("notify", true));
        assert!(!got[1].loaded);
    }

    /// Units are named by their `Id`, as node_exporter names them: a bare name is its
    /// `.service`, an alias its unit, and two names of one unit give one unit.
    #[test]
    fn units_are_named_by_their_id() {
        let out = "Id=nginx.service\nType=notify\nActiveState=active\nLoadState=loaded\n\n\
                   Id=ssh.service\nType=notify\nActiveState=active\nLoadState=loaded\n\n\
                   Id=nginx.service\nType=notify\nActiveState=active\nLoadState=loaded\n";
        let got = parse_show(out, &units(&["nginx", "sshd.service", "nginx.service"])).unwrap();
        let names: Vec<&str> = got.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["nginx.service", "ssh.service"]);
        assert_eq!(got[0].kind, "notify");
    }

    #[test]
    fn mismatched_output_is_an_error() {
        assert!(parse_show("ActiveState=active\n", &units(&["a.service", "b.service"])).is_err());
        assert!(parse_show("Type=simple\n", &units(&["a.service"])).is_err());
        assert!(parse_show("", &units(&["a.service"])).is_err());
    }
}
