//! `/api/v1/targets` as Prometheus answers it: every scrape target with its labels, URL,
//! health, last error, and when and how long it was last scraped; Grafana, the portal and
//! scripts written for Prometheus read scrape health from it. `state` (`active`, `dropped`,
//! `any`) and `scrapePool` filter as in Prometheus 3.5. Targets are never dropped here
//! (`static_configs` without relabeling), so the dropped list is always empty.
//!
//! `/api/v1/metadata` lists the `# TYPE` and `# HELP` of the metric families the targets
//! exposed at their last scrape (Grafana's query builder shows them), with Prometheus's
//! `metric`, `limit` and `limit_per_metric`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use serde_json::{Value, json};

use super::query_api::{ApiError, Params, answer};
use super::scraper::TargetState;
use super::{Shared, lock};
use crate::delivery::rfc3339_nano;

/// This machine's name, read once (the host of `globalUrl`).
fn host_name() -> String {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| axi_obs_core::__private::host_name().unwrap_or_else(|| "localhost".into()))
        .clone()
}

/// Go's zero `time.Time` in JSON: a target not scraped yet.
const NEVER: &str = "0001-01-01T00:00:00Z";

/// Prometheus's `model.Duration` text: `15s`, `1m30s`, `2h`, `90d` (years and weeks only when
/// exact).
pub(crate) fn model_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut ms = ms;
    let mut out = String::new();
    for (unit, mult, exact) in [
        ("y", 365 * 86_400_000, true),
        ("w", 7 * 86_400_000, true),
        ("d", 86_400_000, false),
        ("h", 3_600_000, false),
        ("m", 60_000, false),
        ("s", 1_000, false),
        ("ms", 1, false),
    ] {
        if exact && ms % mult != 0 {
            continue;
        }
        let v = ms / mult;
        if v > 0 {
            out.push_str(&format!("{v}{unit}"));
            ms -= v * mult;
        }
    }
    out
}

/// The scrape URL as seen from elsewhere: a loopback host is replaced by this machine's name
/// (Prometheus's `globalUrl`; with the name of the port this server listens on, the URL of
/// this server as its clients reach it).
fn global_url(t: &TargetState, host: &str) -> String {
    let (target_host, port) = match t.address.rsplit_once(':') {
        Some((h, p)) => (h.trim_start_matches('[').trim_end_matches(']'), p),
        None => (t.address.as_str(), ""),
    };
    if matches!(target_host, "127.0.0.1" | "localhost" | "::1") {
        // The path and query of the scrape URL, after `http://address`.
        let rest = t
            .url
            .strip_prefix("http://")
            .and_then(|u| u.strip_prefix(t.address.as_str()))
            .unwrap_or(&t.metrics_path);
        format!("http://{host}:{port}{rest}")
    } else {
        t.url.clone()
    }
}

fn target_json(t: &TargetState, host: &str) -> Value {
    // The pool's defaults, under the target's own static labels.
    let mut discovered: BTreeMap<String, String> = BTreeMap::from([
        ("__address__".into(), t.address.clone()),
        ("__metrics_path__".into(), t.metrics_path.clone()),
        ("__scheme__".into(), "http".into()),
        ("__scrape_interval__".into(), model_duration(t.interval_ms)),
        ("__scrape_timeout__".into(), model_duration(t.timeout_ms)),
        ("job".into(), t.job.clone()),
    ]);
    discovered.extend(t.static_labels.clone());
    let labels: BTreeMap<&str, &str> = t.labels.iter().collect();
    json!({
        "discoveredLabels": discovered,
        "labels": labels,
        "scrapePool": t.job,
        "scrapeUrl": t.url,
        "globalUrl": global_url(t, host),
        "lastError": t.last_error,
        "lastScrape": t.last_scrape_ms.map_or_else(|| NEVER.to_owned(), rfc3339_nano),
        "lastScrapeDuration": t.last_duration,
        "health": match t.up {
            None => "unknown",
            Some(true) => "up",
            Some(false) => "down",
        },
        "scrapeInterval": model_duration(t.interval_ms),
        "scrapeTimeout": model_duration(t.timeout_ms),
    })
}

/// `GET /api/v1/targets`.
pub(super) async fn targets(State(shared): State<Arc<Shared>>, p: Params) -> Response {
    let state = p.get("state").to_ascii_lowercase();
    let pool = p.get("scrapePool");
    let active = matches!(state.as_str(), "" | "any" | "active");
    let dropped = matches!(state.as_str(), "" | "any" | "dropped");
    let host = host_name();
    let (jobs, all): (Vec<String>, Vec<TargetState>) = {
        let pools = lock(&shared.targets);
        (
            pools.jobs.clone(),
            pools.targets.iter().map(|t| lock(t).clone()).collect(),
        )
    };
    // Counted over every pool, targets or not, whatever `scrapePool` asks (as Prometheus).
    let counts = dropped.then(|| {
        jobs.into_iter()
            .map(|j| (j, 0))
            .collect::<BTreeMap<String, u32>>()
    });
    let mut targets: Vec<TargetState> = all
        .into_iter()
        .filter(|t| pool.is_empty() || t.job == pool)
        .collect();
    // By scrape pool, as Prometheus lists them (configuration order within one).
    targets.sort_by(|a, b| a.job.cmp(&b.job));
    // As Prometheus: both lists always there (empty when not asked for), the counts only
    // with the dropped targets.
    let list: Vec<Value> = if active {
        targets.iter().map(|t| target_json(t, &host)).collect()
    } else {
        Vec::new()
    };
    let data = json!({
        "activeTargets": list,
        "droppedTargets": [],
        "droppedTargetCounts": counts,
    });
    answer(Ok(data.to_string()))
}

/// A count parameter (`limit`, `limit_per_metric`): a number, or none when absent.
fn count_param(p: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    match p.get(name) {
        "" => Ok(None),
        v => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_data(format!("{name} must be a number"))),
    }
}

/// `GET /api/v1/metadata`.
pub(super) async fn metadata(State(shared): State<Arc<Shared>>, p: Params) -> Response {
    answer((|| {
        // As Prometheus: negative means no limit; `limit_per_metric` 0 too.
        let limit = count_param(&p, "limit")?.filter(|n| *n >= 0);
        let per_metric = count_param(&p, "limit_per_metric")?.filter(|n| *n > 0);
        let metric = p.get("metric");
        // The targets' maps are shared, not copied: the locks are held only to take them.
        let maps: Vec<_> = lock(&shared.targets)
            .targets
            .iter()
            .map(|t| lock(t).metadata.families.clone())
            .collect();
        let mut families: BTreeMap<&str, std::collections::BTreeSet<(&str, &str)>> =
            BTreeMap::new();
        for map in &maps {
            let wanted: Vec<(&String, &crate::scrape::FamilyMetadata)> = if metric.is_empty() {
                map.iter().collect()
            } else {
                map.get_key_value(metric).into_iter().collect()
            };
            for (name, m) in wanted {
                families
                    .entry(name.as_str())
                    .or_default()
                    .insert((m.kind.as_str(), m.help.as_str()));
            }
        }
        let mut data = serde_json::Map::new();
        for (name, set) in families {
            if limit.is_some_and(|l| data.len() as i64 >= l) {
                break;
            }
            let list: Vec<Value> = set
                .into_iter()
                .take(per_metric.map_or(usize::MAX, |n| n as usize))
                .map(|(kind, help)| json!({"type": kind, "help": help, "unit": ""}))
                .collect();
            data.insert(name.to_owned(), list.into());
        }
        Ok(Value::Object(data).to_string())
    })())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_prometheus_writes_them() {
        for (ms, text) in [
            (0, "0s"),
            (1_000, "1s"),
            (15_000, "15s"),
            (90_000, "1m30s"),
            (3_600_000, "1h"),
            (1_500, "1s500ms"),
            (90 * 86_400_000, "90d"),
            (14 * 86_400_000, "2w"),
            (365 * 86_400_000, "1y"),
        ] {
            assert_eq!(model_duration(ms), text, "{ms}");
        }
    }
}
