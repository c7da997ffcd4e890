//! The `axi-alert run` configuration: the subset of Prometheus's own `prometheus.yml` that a
//! standalone rule evaluator needs, so one file serves both.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::rules::parse_duration;

/// A loaded configuration, durations in milliseconds, paths resolved against the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Default scrape interval (Prometheus default 1 m).
    pub scrape_interval_ms: i64,
    /// Default scrape timeout (10 s, at most the interval).
    pub scrape_timeout_ms: i64,
    /// Default rule-group interval (1 m).
    pub evaluation_interval_ms: i64,
    /// `external_labels`, for templates.
    pub external_labels: BTreeMap<String, String>,
    /// Rule files (globs expanded).
    pub rule_files: Vec<PathBuf>,
    /// Scrape jobs.
    pub scrape_configs: Vec<ScrapeConfig>,
}

/// One scrape job with static targets.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapeConfig {
    /// `job_name`, the `job` label.
    pub job_name: String,
    /// Interval (ms).
    pub interval_ms: i64,
    /// Timeout (ms).
    pub timeout_ms: i64,
    /// Path, default `/metrics`.
    pub metrics_path: String,
    /// Keep the target's own `job`/`instance` labels on conflicts.
    pub honor_labels: bool,
    /// Targets (`host:port`) with their extra labels.
    pub targets: Vec<(String, BTreeMap<String, String>)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    global: RawGlobal,
    #[serde(default)]
    rule_files: Vec<String>,
    #[serde(default)]
    scrape_configs: Vec<RawScrape>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    scrape_interval: Option<String>,
    scrape_timeout: Option<String>,
    evaluation_interval: Option<String>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScrape {
    job_name: String,
    scrape_interval: Option<String>,
    scrape_timeout: Option<String>,
    metrics_path: Option<String>,
    scheme: Option<String>,
    #[serde(default)]
    honor_labels: bool,
    #[serde(default)]
    static_configs: Vec<RawStatic>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatic {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

impl Config {
    /// Reads and checks a configuration file; errors name the file, and the line for YAML
    /// errors.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Self::parse(&text, path)
    }

    /// Checks configuration text; `path` names it and anchors relative rule files.
    pub fn parse(text: &str, path: &Path) -> Result<Config, String> {
        let at = |m: String| format!("{}: {m}", path.display());
        let raw: RawConfig = serde_norway::from_str(text).map_err(|e| {
            let line = e
                .location()
                .map(|l| format!(":{}", l.line()))
                .unwrap_or_default();
            format!("{}{line}: {e}", path.display())
        })?;
        let dur = |what: &str, v: Option<&str>, default: i64| -> Result<i64, String> {
            match v {
                None => Ok(default),
                Some(s) => parse_duration(s)
                    .map(|d| d.as_millis() as i64)
                    .map_err(|e| at(format!("{what}: {e}"))),
            }
        };
        let g = &raw.global;
        let scrape_interval_ms = dur(
            "global.scrape_interval",
            g.scrape_interval.as_deref(),
            60_000,
        )?;
        let scrape_timeout_ms = dur(
            "global.scrape_timeout",
            g.scrape_timeout.as_deref(),
            10_000.min(scrape_interval_ms),
        )?;
        let evaluation_interval_ms = dur(
            "global.evaluation_interval",
            g.evaluation_interval.as_deref(),
            60_000,
        )?;
        for (what, v) in [
            ("global.scrape_interval", scrape_interval_ms),
            ("global.evaluation_interval", evaluation_interval_ms),
        ] {
            if v <= 0 {
                return Err(at(format!("{what} must be greater than 0")));
            }
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let mut rule_files = Vec::new();
        for pattern in &raw.rule_files {
            let matched = crate::rules::glob::rule_files(base, pattern).map_err(at)?;
            rule_files.extend(matched);
        }
        let mut scrape_configs = Vec::new();
        let mut jobs = std::collections::HashSet::new();
        for (i, s) in raw.scrape_configs.into_iter().enumerate() {
            let ctx = format!("scrape_configs[{i}] ({})", s.job_name);
            if !jobs.insert(s.job_name.clone()) {
                return Err(at(format!("{ctx}: job_name is repeated")));
            }
            if let Some(scheme) = s.scheme.as_deref()
                && scheme != "http"
            {
                return Err(at(format!(
                    "{ctx}: scheme {scheme:?} is not supported (only http)"
                )));
            }
            let interval_ms = dur(
                &format!("{ctx}.scrape_interval"),
                s.scrape_interval.as_deref(),
                scrape_interval_ms,
            )?;
            let timeout_ms = dur(
                &format!("{ctx}.scrape_timeout"),
                s.scrape_timeout.as_deref(),
                scrape_timeout_ms.min(interval_ms),
            )?;
            if interval_ms <= 0 || timeout_ms <= 0 || timeout_ms > interval_ms {
                return Err(at(format!(
                    "{ctx}: scrape_timeout must be greater than 0 and at most scrape_interval"
                )));
            }
            let mut targets = Vec::new();
            for st in s.static_configs {
                for t in st.targets {
                    if t.contains('/') || !t.contains(':') {
                        return Err(at(format!("{ctx}: target {t:?} is not host:port")));
                    }
                    targets.push((t, st.labels.clone()));
                }
            }
            scrape_configs.push(ScrapeConfig {
                job_name: s.job_name,
                interval_ms,
                timeout_ms,
                metrics_path: s.metrics_path.unwrap_or_else(|| "/metrics".into()),
                honor_labels: s.honor_labels,
                targets,
            });
        }
        Ok(Config {
            scrape_interval_ms,
            scrape_timeout_ms,
            evaluation_interval_ms,
            external_labels: raw.global.external_labels,
            rule_files,
            scrape_configs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prometheus_config_subset() {
        let text = "global:\n  scrape_interval: 5s\n  evaluation_interval: 10s\n  external_labels: {env: prod}\nrule_files: [rules.yml]\nscrape_configs:\n  - job_name: api\n    static_configs:\n      - targets: ['127.0.0.1:8080']\n        labels: {team: core}\n";
        let c = Config::parse(text, Path::new("/etc/axi/prometheus.yml")).unwrap();
        assert_eq!(c.scrape_interval_ms, 5_000);
        assert_eq!(c.scrape_configs[0].timeout_ms, 5_000);
        assert_eq!(c.rule_files, [PathBuf::from("/etc/axi/rules.yml")]);
        assert_eq!(c.scrape_configs[0].targets[0].1["team"], "core");
    }

    #[test]
    fn errors_name_the_file_and_what() {
        let e = Config::parse("alerting: {}\n", Path::new("p.yml")).unwrap_err();
        assert!(
            e.starts_with("p.yml:1:") && e.contains("unknown field `alerting`"),
            "{e}"
        );
        let e = Config::parse(
            "scrape_configs:\n  - job_name: a\n    scheme: https\n",
            Path::new("p.yml"),
        )
        .unwrap_err();
        assert!(e.contains("scrape_configs[0] (a): scheme \"https\""), "{e}");
    }
}
