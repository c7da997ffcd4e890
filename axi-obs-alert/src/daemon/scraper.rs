//! Scraping static targets as Prometheus does: the text format, `up`,
//! `scrape_duration_seconds`, `scrape_samples_scraped`, target labels (`job`, `instance`, the
//! static labels; conflicting scraped labels renamed `exported_*` unless `honor_labels`), and
//! staleness markers for series that disappear or whose target goes down.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::{ScrapeConfig, Shared, lock, now_ms, write};
use crate::promql::Labels;
use crate::promql::value::stale_nan;
use crate::scrape::{FamilyMetadata, parse_metadata, parse_text};

/// The running scrape loops.
pub(super) struct Scrapers {
    tasks: Vec<JoinHandle<()>>,
}

/// A target as `/api/v1/targets` shows it: its configuration and its last scrape.
#[derive(Debug, Clone)]
pub(super) struct TargetState {
    pub job: String,
    /// `host:port`.
    pub address: String,
    pub url: String,
    pub metrics_path: String,
    /// The target's labels (`job`, `instance`, its static labels).
    pub labels: Labels,
    /// Its static labels alone.
    pub static_labels: BTreeMap<String, String>,
    pub interval_ms: i64,
    pub timeout_ms: i64,
    /// When the last scrape started (ms), if there was one.
    pub last_scrape_ms: Option<i64>,
    pub last_duration: f64,
    pub last_error: String,
    pub up: Option<bool>,
    /// The `# TYPE` and `# HELP` of the metric families of the last successful scrape.
    pub metadata: BTreeMap<String, FamilyMetadata>,
}

/// One target's state, written by its scrape loop; a restart gives new ones, so a loop
/// that was stopped cannot write into its successor's.
pub(super) type Target = Arc<Mutex<TargetState>>;

impl Scrapers {
    pub(super) fn start(shared: Arc<Shared>) -> Scrapers {
        let jobs = lock(&shared.rules).config.scrape_configs.clone();
        let client = reqwest::Client::new();
        let mut tasks = Vec::new();
        let mut states = Vec::new();
        for job in jobs {
            for (target, labels) in &job.targets {
                let mut base = Labels::from_pairs(labels.clone());
                base.set("job".into(), job.job_name.clone());
                base.set("instance".into(), target.clone());
                let state: Target = Arc::new(Mutex::new(TargetState {
                    job: job.job_name.clone(),
                    address: target.clone(),
                    url: format!("http://{target}{}", job.metrics_path),
                    metrics_path: job.metrics_path.clone(),
                    labels: base,
                    static_labels: labels.clone(),
                    interval_ms: job.interval_ms,
                    timeout_ms: job.timeout_ms,
                    last_scrape_ms: None,
                    last_duration: 0.0,
                    last_error: String::new(),
                    up: None,
                    metadata: BTreeMap::new(),
                }));
                states.push(state.clone());
                tasks.push(tokio::spawn(scrape_loop(
                    shared.clone(),
                    client.clone(),
                    job.clone(),
                    state,
                )));
            }
        }
        *lock(&shared.targets) = states;
        Scrapers { tasks }
    }

    pub(super) fn restart(&mut self, shared: Arc<Shared>) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        *self = Scrapers::start(shared);
    }
}

async fn scrape_loop(
    shared: Arc<Shared>,
    client: reqwest::Client,
    job: ScrapeConfig,
    state: Target,
) {
    let (url, target) = {
        let s = lock(&state);
        (s.url.clone(), s.labels.clone())
    };
    let mut previous: HashSet<Labels> = HashSet::new();
    let interval = Duration::from_millis(job.interval_ms as u64);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticker.tick().await;
        let t = now_ms();
        let started = Instant::now();
        let mut body = async {
            let resp = client
                .get(&url)
                .header("accept", "text/plain;version=0.0.4")
                .timeout(Duration::from_millis(job.timeout_ms as u64))
                .send()
                .await
                .map_err(|e| axi_obs_core::__private::error_chain(&e))?;
            if !resp.status().is_success() {
                return Err(format!("server returned HTTP status {}", resp.status()));
            }
            resp.text()
                .await
                .map_err(|e| axi_obs_core::__private::error_chain(&e))
        }
        .await
        .and_then(|text| Ok((parse_text(&text)?, parse_metadata(&text))));
        let duration = started.elapsed().as_secs_f64();
        {
            let mut s = lock(&state);
            s.last_scrape_ms = Some(t);
            s.last_duration = duration;
            s.up = Some(body.is_ok());
            s.last_error = body.as_ref().err().cloned().unwrap_or_default();
            if let Ok((_, metadata)) = &mut body {
                s.metadata = std::mem::take(metadata);
            }
        }
        let mut store = write(&shared.store);
        let mut current = HashSet::new();
        let (up, scraped) = match body {
            Ok((samples, _)) => {
                let n = samples.len();
                for s in samples {
                    let labels = with_target_labels(s.labels, &target, job.honor_labels);
                    store.add(&labels, s.timestamp.unwrap_or(t), s.value);
                    current.insert(labels);
                }
                (1.0, n)
            }
            Err(e) => {
                tracing::warn!(target = %url, error = %e, "scrape failed");
                (0.0, 0)
            }
        };
        for gone in previous.difference(&current) {
            store.add(gone, t, stale_nan());
        }
        // Prometheus's synthetic series (no metric relabeling here: post-relabeling is what
        // was scraped; added: series this target did not have in its previous scrape).
        let added = current.difference(&previous).count();
        for (name, v) in [
            ("up", up),
            ("scrape_duration_seconds", duration),
            ("scrape_samples_scraped", scraped as f64),
            ("scrape_samples_post_metric_relabeling", scraped as f64),
            ("scrape_series_added", added as f64),
        ] {
            let mut ls = target.clone();
            ls.set("__name__".into(), name.into());
            store.add(&ls, t, v);
        }
        previous = current;
    }
}

/// Target labels win over scraped ones, which are kept as `exported_<name>`; with
/// `honor_labels` the scraped ones win.
fn with_target_labels(scraped: Labels, target: &Labels, honor: bool) -> Labels {
    let mut out = scraped;
    for (k, v) in target.iter() {
        match out.get(k).map(str::to_owned) {
            Some(_) if honor => {}
            Some(existing) => {
                out.set(format!("exported_{k}"), existing);
                out.set(k.to_owned(), v.to_owned());
            }
            None => out.set(k.to_owned(), v.to_owned()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_labels_and_exported_conflicts() {
        let target = Labels::from_pairs([("job", "api"), ("instance", "h:1")]);
        let scraped = Labels::from_pairs([("__name__", "m"), ("job", "inner")]);
        let l = with_target_labels(scraped.clone(), &target, false);
        assert_eq!(l.get("job"), Some("api"));
        assert_eq!(l.get("exported_job"), Some("inner"));
        let l = with_target_labels(scraped, &target, true);
        assert_eq!(l.get("job"), Some("inner"));
        assert_eq!(l.get("instance"), Some("h:1"));
    }
}
