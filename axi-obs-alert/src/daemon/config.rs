//! The `axi-alert run` configuration: the subset of Prometheus's own `prometheus.yml` that a
//! standalone rule evaluator needs, so one file serves both.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::delivery::{AlertmanagerAuth, DEFAULT_TIMEOUT, TlsConfig};
use crate::rules::parse_duration;

/// A loaded configuration, durations in milliseconds, paths resolved against the file. Read
/// it; it is made by [`Config::load`] (fields are added as Prometheus settings are).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
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
    /// `rule_files` as written, with the directory they are relative to: expanded again
    /// ([`Config::expand_rule_files`]) to see a file added under a glob.
    pub rule_file_patterns: (PathBuf, Vec<String>),
    /// Scrape jobs.
    pub scrape_configs: Vec<ScrapeConfig>,
    /// `alerting.alertmanagers`: where firing and resolved alerts are sent.
    pub alertmanagers: Vec<AlertmanagerConfig>,
}

/// The files `patterns` name under `base`, each once, in order. As Prometheus: an entry that
/// names no file is left out (warned of when `config` names the file being loaded; it is
/// silent there), and a file named twice (`rules/*.yml` and `rules/a.yml`) is loaded once, so
/// each of its groups exists once.
fn expand_rule_files(
    base: &Path,
    patterns: &[String],
    config: Option<&Path>,
) -> Result<Vec<PathBuf>, String> {
    let mut rule_files: Vec<PathBuf> = Vec::new();
    for pattern in patterns {
        let matched = crate::rules::glob::rule_files(base, pattern)?;
        if matched.is_empty()
            && let Some(config) = config
        {
            tracing::warn!(
                config = %config.display(),
                pattern = %pattern,
                "rule_files entry names no file; it is left out"
            );
        }
        for f in matched {
            if !rule_files.contains(&f) {
                rule_files.push(f);
            }
        }
    }
    Ok(rule_files)
}

/// One `alerting.alertmanagers[]` entry: Alertmanagers sharing the same settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertmanagerConfig {
    /// Base URLs, `scheme://target` + `path_prefix` (alerts go to `<base>/api/v2/alerts`).
    pub urls: Vec<String>,
    /// Per-request timeout (`timeout`, default 10 s).
    pub timeout: Duration,
    /// `basic_auth` or `authorization`, secrets read from their files at load.
    pub auth: Option<AlertmanagerAuth>,
    /// `tls_config`, relative file names resolved against the configuration file's folder.
    pub tls: Option<TlsConfig>,
}

/// One scrape job with static targets (made by [`Config::load`]; fields are added as
/// Prometheus settings are).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
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
    /// `body_size_limit`: the largest page taken, in bytes after decompression; a larger
    /// one fails the scrape ("body size limit exceeded"). Unset or 0:
    /// [`DEFAULT_BODY_SIZE_LIMIT`] (Prometheus: no limit).
    pub body_size_limit: u64,
    /// `sample_limit`: the most samples a scrape may bring; more fail the whole scrape
    /// ("sample limit exceeded"), as in Prometheus. 0: no limit.
    pub sample_limit: u64,
    /// `fallback_scrape_protocol`: how to read a page whose `Content-Type` is missing or not
    /// one Prometheus reads (`PrometheusText0.0.4`, `PrometheusText1.0.0`,
    /// `OpenMetricsText0.0.1`, `OpenMetricsText1.0.0`); without it such a page fails the
    /// scrape, as in Prometheus 3.
    pub fallback_format: Option<crate::scrape::Format>,
}

/// The body size limit of a scrape job that sets none (64 MiB): bounded, where Prometheus
/// reads any size, and far above the few megabytes a large exporter serves.
pub const DEFAULT_BODY_SIZE_LIMIT: u64 = 64 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    global: RawGlobal,
    #[serde(default)]
    rule_files: Vec<String>,
    #[serde(default)]
    scrape_configs: Vec<RawScrape>,
    #[serde(default)]
    alerting: RawAlerting,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAlerting {
    #[serde(default)]
    alertmanagers: Vec<RawAlertmanager>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertmanager {
    #[serde(default)]
    static_configs: Vec<RawAmStatic>,
    #[serde(default)]
    scheme: Scheme,
    #[serde(default)]
    path_prefix: String,
    #[serde(default, deserialize_with = "duration")]
    timeout: Option<Duration>,
    /// Only `v2`, the one API Alertmanager still has.
    #[serde(default)]
    #[allow(dead_code)]
    api_version: ApiVersion,
    basic_auth: Option<RawBasicAuth>,
    authorization: Option<RawAuthorization>,
    tls_config: Option<TlsConfig>,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Scheme {
    #[default]
    Http,
    Https,
}

#[derive(Deserialize, Default)]
enum ApiVersion {
    #[default]
    #[serde(rename = "v2")]
    V2,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAmStatic {
    #[serde(default)]
    targets: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBasicAuth {
    #[serde(default)]
    username: String,
    password: Option<String>,
    password_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthorization {
    #[serde(rename = "type", default, deserialize_with = "bearer")]
    #[allow(dead_code)]
    kind: (),
    credentials: Option<String>,
    credentials_file: Option<String>,
}

/// A Prometheus duration (`10s`, `1m30s`).
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("duration {s:?}: {e}")))
}

/// `authorization.type`: only `Bearer` (Prometheus's default), any case.
fn bearer<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
    let s = String::deserialize(d)?;
    if s.eq_ignore_ascii_case("bearer") {
        Ok(())
    } else {
        Err(serde::de::Error::custom(format!(
            "authorization type {s:?} is not supported (only Bearer)"
        )))
    }
}

/// A secret given inline or in a file (read now, relative to `base`); not both.
fn secret(
    inline: Option<String>,
    file: Option<&str>,
    base: &Path,
    what: &str,
) -> Result<String, String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(format!("{what} and {what}_file are mutually exclusive")),
        (Some(s), None) => Ok(s),
        (None, Some(f)) => {
            let path = base.join(f);
            std::fs::read_to_string(&path)
                .map(|s| s.trim().to_string())
                .map_err(|e| format!("{what}_file {}: {e}", path.display()))
        }
        (None, None) => Ok(String::new()),
    }
}

impl RawAlertmanager {
    /// Checks one entry; `ctx` names it in errors.
    fn resolve(self, base: &Path, ctx: &str) -> Result<AlertmanagerConfig, String> {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        // As Prometheus's `path.Join("/", path_prefix, "/api/v2/alerts")`.
        let prefix = match self.path_prefix.trim_matches('/') {
            "" => String::new(),
            p => format!("/{p}"),
        };
        let mut urls = Vec::new();
        for st in self.static_configs {
            for t in st.targets {
                if t.is_empty() || t.contains('/') || t.contains('?') || t.contains('#') {
                    return Err(format!("{ctx}: target {t:?} is not host:port"));
                }
                urls.push(format!("{scheme}://{t}{prefix}"));
            }
        }
        let auth = match (self.basic_auth, self.authorization) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "{ctx}: basic_auth and authorization are mutually exclusive"
                ));
            }
            (Some(b), None) => Some(AlertmanagerAuth::Basic {
                password: secret(b.password, b.password_file.as_deref(), base, "password")
                    .map_err(|e| format!("{ctx}.basic_auth: {e}"))?,
                username: b.username,
            }),
            (None, Some(a)) => Some(AlertmanagerAuth::Bearer(
                secret(
                    a.credentials,
                    a.credentials_file.as_deref(),
                    base,
                    "credentials",
                )
                .map_err(|e| format!("{ctx}.authorization: {e}"))?,
            )),
            (None, None) => None,
        };
        let tls = self.tls_config.map(|mut t| {
            for f in [&mut t.ca_file, &mut t.cert_file, &mut t.key_file]
                .into_iter()
                .flatten()
            {
                *f = base.join(&*f).to_string_lossy().into_owned();
            }
            t
        });
        Ok(AlertmanagerConfig {
            urls,
            timeout: self.timeout.unwrap_or(DEFAULT_TIMEOUT),
            auth,
            tls,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    scrape_interval: Option<String>,
    scrape_timeout: Option<String>,
    evaluation_interval: Option<String>,
    body_size_limit: Option<String>,
    sample_limit: Option<u64>,
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
    body_size_limit: Option<String>,
    sample_limit: Option<u64>,
    fallback_scrape_protocol: Option<String>,
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
        if scrape_timeout_ms > scrape_interval_ms {
            // Prometheus refuses it (`GlobalConfig.UnmarshalYAML`) rather than clamping it.
            return Err(at(
                "global scrape timeout greater than scrape interval".to_owned()
            ));
        }
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
        let bytes = |what: &str, v: Option<&str>, default: u64| -> Result<u64, String> {
            match v {
                None => Ok(default),
                Some(s) => parse_base2_bytes(s).map_err(|e| at(format!("{what}: {e}"))),
            }
        };
        let body_size_limit = bytes("global.body_size_limit", g.body_size_limit.as_deref(), 0)?;
        let sample_limit = g.sample_limit.unwrap_or(0);
        let base = path.parent().unwrap_or(Path::new("."));
        let rule_files = expand_rule_files(base, &raw.rule_files, Some(path)).map_err(at)?;
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
                if let Some(scheme) = st.labels.get("__scheme__")
                    && scheme != "http"
                {
                    return Err(at(format!(
                        "{ctx}: label __scheme__ {scheme:?} is not supported (only http)"
                    )));
                }
                // Prometheus keeps one target per address and label set in a job.
                for t in st.targets {
                    if targets
                        .iter()
                        .any(|(seen, labels)| *seen == t && *labels == st.labels)
                    {
                        continue;
                    }
                    if t.contains('/') || !t.contains(':') {
                        return Err(at(format!("{ctx}: target {t:?} is not host:port")));
                    }
                    targets.push((t, st.labels.clone()));
                }
            }
            use crate::scrape::Format;
            let fallback_format = match s.fallback_scrape_protocol.as_deref() {
                None => None,
                Some("PrometheusText0.0.4" | "PrometheusText1.0.0") => Some(Format::Text),
                Some("OpenMetricsText0.0.1" | "OpenMetricsText1.0.0") => Some(Format::OpenMetrics),
                Some("PrometheusProto") => {
                    return Err(at(format!(
                        "{ctx}.fallback_scrape_protocol: PrometheusProto is not read by this \
                         evaluator (it asks for text)"
                    )));
                }
                Some(other) => {
                    return Err(at(format!(
                        "{ctx}.fallback_scrape_protocol: unknown protocol {other:?} (expected \
                         PrometheusText0.0.4, PrometheusText1.0.0, OpenMetricsText0.0.1 or \
                         OpenMetricsText1.0.0)"
                    )));
                }
            };
            let body_size_limit = match bytes(
                &format!("{ctx}.body_size_limit"),
                s.body_size_limit.as_deref(),
                body_size_limit,
            )? {
                0 => DEFAULT_BODY_SIZE_LIMIT,
                n => n,
            };
            scrape_configs.push(ScrapeConfig {
                job_name: s.job_name,
                interval_ms,
                timeout_ms,
                metrics_path: s.metrics_path.unwrap_or_else(|| "/metrics".into()),
                honor_labels: s.honor_labels,
                targets,
                body_size_limit,
                sample_limit: s.sample_limit.unwrap_or(sample_limit),
                fallback_format,
            });
        }
        let mut alertmanagers = Vec::new();
        for (i, am) in raw.alerting.alertmanagers.into_iter().enumerate() {
            let ctx = format!("alerting.alertmanagers[{i}]");
            alertmanagers.push(am.resolve(base, &ctx).map_err(at)?);
        }
        Ok(Config {
            scrape_interval_ms,
            scrape_timeout_ms,
            evaluation_interval_ms,
            external_labels: raw.global.external_labels,
            rule_files,
            rule_file_patterns: (base.to_owned(), raw.rule_files),
            scrape_configs,
            alertmanagers,
        })
    }

    /// The rule files the configuration's `rule_files` name now (a file may have been added
    /// under a glob since it was loaded).
    ///
    /// # Errors
    ///
    /// An invalid pattern.
    pub fn expand_rule_files(&self) -> Result<Vec<PathBuf>, String> {
        let (base, patterns) = &self.rule_file_patterns;
        expand_rule_files(base, patterns, None)
    }
}

/// A size as Prometheus reads `body_size_limit` (`units.Base2Bytes`): `0`, or a number
/// (decimals allowed) followed by a unit, `B`, `KB`, `MB`, `GB`, `TB`, `PB`, `EB` or the
/// same with `iB`, every one a power of 1024.
fn parse_base2_bytes(s: &str) -> Result<u64, String> {
    if s == "0" {
        return Ok(0);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{s:?}: missing unit (B, KB, MB, GB, ...)"))?;
    let (number, unit) = s.split_at(split);
    let power = match unit {
        "B" => 0,
        "KB" | "KiB" => 1,
        "MB" | "MiB" => 2,
        "GB" | "GiB" => 3,
        "TB" | "TiB" => 4,
        "PB" | "PiB" => 5,
        "EB" | "EiB" => 6,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (B, KB, MB, GB, ...)")),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{s:?}: {number:?} is not a number"))?;
    let bytes = n * 1024f64.powi(power);
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{s:?}: too large"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_size_and_sample_limits_as_prometheus_reads_them() {
        assert_eq!(parse_base2_bytes("0"), Ok(0));
        assert_eq!(parse_base2_bytes("512B"), Ok(512));
        assert_eq!(parse_base2_bytes("10MB"), Ok(10 << 20));
        assert_eq!(parse_base2_bytes("10MiB"), Ok(10 << 20));
        assert_eq!(parse_base2_bytes("1.5KB"), Ok(1536));
        assert!(
            parse_base2_bytes("100")
                .unwrap_err()
                .contains("missing unit")
        );
        assert!(
            parse_base2_bytes("1mb")
                .unwrap_err()
                .contains("unknown unit")
        );
        let c = Config::parse(
            "global:\n  body_size_limit: 1MB\n  sample_limit: 50\nscrape_configs:\n  - job_name: a\n  - job_name: b\n    body_size_limit: 0\n    sample_limit: 0\n  - job_name: c\n    body_size_limit: 2KB\n",
            Path::new("p.yml"),
        )
        .unwrap();
        let limits: Vec<(u64, u64)> = c
            .scrape_configs
            .iter()
            .map(|j| (j.body_size_limit, j.sample_limit))
            .collect();
        assert_eq!(
            limits,
            [(1 << 20, 50), (DEFAULT_BODY_SIZE_LIMIT, 0), (2048, 50)]
        );
        let e = Config::parse(
            "scrape_configs:\n  - job_name: a\n    body_size_limit: lots\n",
            Path::new("p.yml"),
        )
        .unwrap_err();
        assert!(
            e.starts_with("p.yml: scrape_configs[0] (a).body_size_limit: "),
            "{e}"
        );
    }

    #[test]
    fn a_prometheus_config_subset() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["rules.yml", "other.yml"] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        // A file named twice is loaded once; an entry naming no file is left out (as
        // Prometheus's `filepath.Glob` leaves it out).
        let text = "global:\n  scrape_interval: 5s\n  evaluation_interval: 10s\n  external_labels: {env: prod}\nrule_files: [rules.yml, '*.yml', missing.yml, 'none-*.yml']\nscrape_configs:\n  - job_name: api\n    static_configs:\n      - targets: ['127.0.0.1:8080']\n        labels: {team: core}\n";
        let c = Config::parse(text, &dir.path().join("prometheus.yml")).unwrap();
        assert_eq!(c.scrape_interval_ms, 5_000);
        assert_eq!(c.scrape_configs[0].timeout_ms, 5_000);
        assert_eq!(
            c.rule_files,
            [dir.path().join("rules.yml"), dir.path().join("other.yml")]
        );
        assert_eq!(c.scrape_configs[0].targets[0].1["team"], "core");
    }

    #[test]
    fn a_global_timeout_longer_than_the_interval_is_refused() {
        let e = Config::parse(
            "global:\n  scrape_interval: 10s\n  scrape_timeout: 20s\n",
            Path::new("p.yml"),
        )
        .unwrap_err();
        assert!(
            e.contains("global scrape timeout greater than scrape interval"),
            "{e}"
        );
        // Left out, it is the default 10 s, or the interval when that is shorter.
        let c = Config::parse(
            "global:\n  scrape_interval: 5s\nscrape_configs:\n  - job_name: a\n",
            Path::new("p.yml"),
        )
        .unwrap();
        assert_eq!(c.scrape_timeout_ms, 5_000);
    }

    #[test]
    fn errors_name_the_file_and_what() {
        let e = Config::parse("remote_write: []\n", Path::new("p.yml")).unwrap_err();
        assert!(
            e.starts_with("p.yml:1:") && e.contains("unknown field `remote_write`"),
            "{e}"
        );
        let e = Config::parse(
            "scrape_configs:\n  - job_name: a\n    scheme: https\n",
            Path::new("p.yml"),
        )
        .unwrap_err();
        assert!(e.contains("scrape_configs[0] (a): scheme \"https\""), "{e}");
    }

    #[test]
    fn alertmanagers_as_prometheus_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\n").unwrap();
        let text = "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['am1:9093', 'am2:9093']\n      path_prefix: am/\n      timeout: 3s\n      basic_auth: {username: prom, password_file: pw}\n    - scheme: https\n      api_version: v2\n      static_configs: [{targets: ['am3:9093']}]\n      authorization: {type: Bearer, credentials: tok}\n      tls_config: {ca_file: ca.pem, server_name: am.test}\n";
        let c = Config::parse(text, &dir.path().join("prometheus.yml")).unwrap();
        let [a, b] = &c.alertmanagers[..] else {
            panic!("{:?}", c.alertmanagers)
        };
        assert_eq!(a.urls, ["http://am1:9093/am", "http://am2:9093/am"]);
        assert_eq!(a.timeout, Duration::from_secs(3));
        assert_eq!(
            a.auth,
            Some(AlertmanagerAuth::Basic {
                username: "prom".into(),
                password: "s3cret".into()
            })
        );
        assert_eq!(a.tls, None);
        assert_eq!(b.urls, ["https://am3:9093"]);
        assert_eq!(b.timeout, DEFAULT_TIMEOUT);
        assert_eq!(b.auth, Some(AlertmanagerAuth::Bearer("tok".into())));
        let tls = b.tls.as_ref().unwrap();
        assert_eq!(
            tls.ca_file.as_deref(),
            Some(dir.path().join("ca.pem").to_str().unwrap())
        );
        assert_eq!(tls.server_name.as_deref(), Some("am.test"));
    }

    #[test]
    fn alerting_errors_name_the_line_and_the_field() {
        let p = Path::new("p.yml");
        let am = |body: &str| {
            Config::parse(
                &format!("alerting:\n  alertmanagers:\n    - static_configs: [{{targets: ['a:1']}}]\n{body}"),
                p,
            )
            .unwrap_err()
        };
        for (body, line, what) in [
            ("      scheme: ftp\n", 4, "unknown variant `ftp`"),
            ("      api_version: v1\n", 4, "unknown variant `v1`"),
            // A value refused by its own check is placed at its entry.
            ("      timeout: soon\n", 3, "duration \"soon\""),
            (
                "      relabel_configs: []\n",
                4,
                "unknown field `relabel_configs`",
            ),
            (
                "      basic_auth: {username: u, username_file: f}\n",
                4,
                "unknown field `username_file`",
            ),
            (
                "      authorization: {type: Basic, credentials: x}\n",
                4,
                "only Bearer",
            ),
            ("      tls_config: {ca: x}\n", 4, "unknown field `ca`"),
        ] {
            let e = am(body);
            assert!(e.starts_with(&format!("p.yml:{line}:")), "{body}: {e}");
            assert!(e.contains(what), "{body}: {e}");
        }
        let e = am("      basic_auth: {username: u, password: a, password_file: b}\n");
        assert!(
            e.contains("alerting.alertmanagers[0].basic_auth: password and password_file"),
            "{e}"
        );
        let e = am("      basic_auth: {username: u}\n      authorization: {credentials: t}\n");
        assert!(
            e.contains("alerting.alertmanagers[0]: basic_auth and authorization"),
            "{e}"
        );
        let e = am("      authorization: {credentials_file: /nonexistent/tok}\n");
        assert!(e.contains("credentials_file /nonexistent/tok"), "{e}");
        let e = Config::parse(
            "alerting:\n  alertmanagers:\n    - static_configs: [{targets: ['http://a:1']}]\n",
            p,
        )
        .unwrap_err();
        assert!(
            e.contains("alerting.alertmanagers[0]: target \"http://a:1\" is not host:port"),
            "{e}"
        );
    }
}
