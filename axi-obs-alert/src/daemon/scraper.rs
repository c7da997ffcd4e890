//! Scraping static targets as Prometheus does: the text format or OpenMetrics (by the answer's
//! `Content-Type`), `up`,
//! `scrape_duration_seconds`, `scrape_samples_scraped`, `scrape_samples_post_metric_relabeling`,
//! `scrape_series_added`, target labels (`job`, `instance` and the static labels, a static
//! `job` or `instance` winning; `__metrics_path__` and `__param_<name>` shaping the URL, other
//! `__` labels dropped; conflicting scraped labels renamed `exported_*` unless
//! `honor_labels`), staleness markers for series that disappear or whose target goes down,
//! and each target's health, last scrape and `# TYPE`/`# HELP` for `/api/v1/targets` and
//! `/api/v1/metadata`.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::{ScrapeConfig, Shared, lock, now_ms, write};
use crate::promql::Labels;
use crate::promql::value::stale_nan;
use crate::scrape::{FamilyMetadata, Format, parse_metadata_as, parse_samples};

/// The running scrape loops, one per target, with the job settings each runs with.
pub(super) struct Scrapers {
    loops: Vec<Loop>,
    jobs: Vec<ScrapeConfig>,
}

/// One target's scrape loop.
struct Loop {
    /// The job's settings but its targets: a change restarts the loop.
    settings: ScrapeConfig,
    address: String,
    statics: BTreeMap<String, String>,
    state: Target,
    task: JoinHandle<()>,
}

impl Drop for Scrapers {
    fn drop(&mut self) {
        for l in &self.loops {
            l.task.abort();
        }
    }
}

/// The scrape pools as `/api/v1/targets` and `/api/v1/metadata` show them.
#[derive(Debug, Default)]
pub(super) struct Pools {
    /// Every job's name, targets or not.
    pub jobs: Vec<String>,
    pub targets: Vec<Target>,
}

/// Scrapes after which a family no longer exposed loses its metadata (Prometheus's scrape
/// cache keeps it that long).
const METADATA_SCRAPES: u64 = 10;

/// The `# TYPE` and `# HELP` a target exposed, kept as Prometheus's scrape cache keeps them.
#[derive(Debug, Clone, Default)]
pub(super) struct MetadataCache {
    /// By family name; shared with readers, copied when a scrape changes it.
    pub families: Arc<BTreeMap<String, FamilyMetadata>>,
    /// The successful scrape each family was last seen in.
    last_seen: BTreeMap<String, u64>,
    scrapes: u64,
}

impl MetadataCache {
    /// Takes in a successful scrape's metadata; families not seen for
    /// [`METADATA_SCRAPES`] scrapes with a body are dropped.
    fn update(&mut self, scraped: BTreeMap<String, FamilyMetadata>, empty_body: bool) {
        if empty_body {
            return;
        }
        self.scrapes += 1;
        let families = Arc::make_mut(&mut self.families);
        for (name, m) in scraped {
            self.last_seen.insert(name.clone(), self.scrapes);
            if families.get(&name) != Some(&m) {
                families.insert(name, m);
            }
        }
        let now = self.scrapes;
        self.last_seen.retain(|name, seen| {
            let keep = now - *seen <= METADATA_SCRAPES;
            if !keep {
                families.remove(name);
            }
            keep
        });
    }
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
    /// The `# TYPE` and `# HELP` of the metric families it exposes.
    pub metadata: MetadataCache,
    /// The series its last scrape wrote without their own timestamps: what the next one marks
    /// stale if they are gone, and what a removed target's are marked with. `None` once the
    /// target is removed: a scrape still in flight then writes nothing.
    series: Arc<Mutex<Option<HashSet<Labels>>>>,
}

impl TargetState {
    /// Takes over what an earlier loop of the same target saw (a reload restarted it).
    fn carry_over(&mut self, old: &TargetState) {
        self.last_scrape_ms = old.last_scrape_ms;
        self.last_duration = old.last_duration;
        self.last_error = old.last_error.clone();
        self.up = old.up;
        self.metadata = old.metadata.clone();
        self.series = old.series.clone();
    }
}

/// A static target's labels and scrape URL as Prometheus derives them: static `job` and
/// `instance` labels win over the job name and the address; `__metrics_path__` and
/// `__param_<name>` change the URL; other labels starting with `__` are dropped.
fn target_labels_and_url(
    job: &ScrapeConfig,
    address: &str,
    statics: &BTreeMap<String, String>,
) -> (Labels, String, String) {
    let mut labels = Labels::from_pairs(
        statics
            .iter()
            .filter(|(k, _)| !k.starts_with("__"))
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    if labels.get("job").is_none() {
        labels.set("job".into(), job.job_name.clone());
    }
    if labels.get("instance").is_none() {
        labels.set("instance".into(), address.to_owned());
    }
    let path = statics
        .get("__metrics_path__")
        .cloned()
        .unwrap_or_else(|| job.metrics_path.clone());
    let params: Vec<(&str, &str)> = statics
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("__param_")?, v.as_str())))
        .collect();
    let mut url = format!("http://{address}{path}");
    if !params.is_empty() {
        url.push(if path.contains('?') { '&' } else { '?' });
        url.push_str(
            &form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params)
                .finish(),
        );
    }
    (labels, url, path)
}

/// One target's state, written by its scrape loop; a restart gives new ones, so a loop
/// that was stopped cannot write into its successor's.
pub(super) type Target = Arc<Mutex<TargetState>>;

/// A job's settings without its targets.
fn settings(job: &ScrapeConfig) -> ScrapeConfig {
    ScrapeConfig {
        targets: Vec::new(),
        ..job.clone()
    }
}

impl Scrapers {
    /// Starts a loop per target of the configured jobs.
    pub(super) fn start(shared: Arc<Shared>) -> Scrapers {
        let mut scrapers = Scrapers {
            loops: Vec::new(),
            jobs: Vec::new(),
        };
        scrapers.apply(&shared);
        scrapers
    }

    /// After a reload, as Prometheus's scrape manager applies a configuration: the loop of a
    /// target whose job settings and labels are unchanged goes on untouched; a changed one is
    /// restarted keeping what it saw (its health, metadata, and the series it marks stale when
    /// they disappear); a target removed from a job that remains gets staleness markers for its
    /// series and `up` at once; the targets of a job removed whole are stopped without markers
    /// (their series age out), as Prometheus stops a scrape pool. A change to the rules alone
    /// leaves scraping alone.
    pub(super) fn restart(&mut self, shared: Arc<Shared>) {
        if lock(&shared.rules).config.scrape_configs == self.jobs {
            return;
        }
        self.apply(&shared);
    }

    fn apply(&mut self, shared: &Arc<Shared>) {
        let jobs = lock(&shared.rules).config.scrape_configs.clone();
        let client = reqwest::Client::new();
        let mut old = std::mem::take(&mut self.loops);
        // Every configured target, in order, with its loop when one runs unchanged. Those are
        // claimed first, for all targets: a target added before others on the same address (a
        // blackbox_exporter probing several hosts) must not take another's loop.
        let wanted: Vec<(
            &ScrapeConfig,
            ScrapeConfig,
            &String,
            &BTreeMap<String, String>,
        )> = jobs
            .iter()
            .flat_map(|job| {
                job.targets
                    .iter()
                    .map(move |(address, statics)| (job, settings(job), address, statics))
            })
            .collect();
        let mut unchanged: Vec<Option<Loop>> = wanted
            .iter()
            .map(|(job, settings, address, statics)| {
                let i = old.iter().position(|l| {
                    l.settings.job_name == job.job_name
                        && l.address == **address
                        && l.settings == *settings
                        && l.statics == **statics
                })?;
                Some(old.swap_remove(i))
            })
            .collect();
        let now = now_ms();
        // Targets restarted under other labels: their `up` and other synthetic series (under
        // the old labels) get staleness markers, as for a target gone.
        let mut relabelled = Vec::new();
        let mut loops = Vec::new();
        for (slot, (job, settings, address, statics)) in unchanged.iter_mut().zip(&wanted) {
            if let Some(l) = slot.take() {
                loops.push(l);
                continue;
            }
            let (job, address, statics) = (*job, *address, *statics);
            let (labels, url, metrics_path) = target_labels_and_url(job, address, statics);
            let mut state = TargetState {
                job: job.job_name.clone(),
                address: address.clone(),
                url,
                metrics_path,
                labels,
                static_labels: statics.clone(),
                interval_ms: job.interval_ms,
                timeout_ms: job.timeout_ms,
                last_scrape_ms: None,
                last_duration: 0.0,
                last_error: String::new(),
                up: None,
                metadata: MetadataCache::default(),
                series: Arc::new(Mutex::new(Some(HashSet::new()))),
            };
            // A target whose job's settings (or its own labels) changed: restarted, keeping
            // what its loop saw. Only a loop no configured target runs unchanged is taken.
            if let Some(i) = old
                .iter()
                .position(|l| l.settings.job_name == job.job_name && l.address == *address)
            {
                let previous = old.swap_remove(i);
                previous.task.abort();
                let before = lock(&previous.state);
                state.carry_over(&before);
                if before.labels != state.labels && before.last_scrape_ms.is_some() {
                    relabelled.push(before.labels.clone());
                }
            }
            let state: Target = Arc::new(Mutex::new(state));
            let task = tokio::spawn(scrape_loop(
                shared.clone(),
                client.clone(),
                job.clone(),
                state.clone(),
            ));
            loops.push(Loop {
                settings: settings.clone(),
                address: address.clone(),
                statics: statics.clone(),
                state,
                task,
            });
        }
        // Targets no longer configured: ended on the blocking pool, as the store's lock may
        // be held for a while (a rule round reading, a big scrape writing), and this runs on
        // the reload task.
        let mut ended = Vec::with_capacity(old.len() + relabelled.len());
        for labels in relabelled {
            // No series of its own to mark (the restarted loop carries them and marks those it
            // no longer sees): only the synthetic ones.
            ended.push((labels, Arc::new(Mutex::new(None)), Some(now)));
        }
        for gone in old {
            gone.task.abort();
            let s = lock(&gone.state);
            let job_remains = jobs.iter().any(|j| j.job_name == gone.settings.job_name);
            let stale_at = (job_remains && s.last_scrape_ms.is_some()).then_some(now);
            ended.push((s.labels.clone(), s.series.clone(), stale_at));
        }
        if !ended.is_empty() {
            let shared = shared.clone();
            tokio::task::spawn_blocking(move || {
                for (target, series, stale_at) in ended {
                    end_of_run(&shared, &target, &series, stale_at);
                }
            });
        }
        *lock(&shared.targets) = Pools {
            jobs: jobs.iter().map(|j| j.job_name.clone()).collect(),
            targets: loops.iter().map(|l| l.state.clone()).collect(),
        };
        self.loops = loops;
        self.jobs = jobs;
    }
}

/// Ends a stopped target: a scrape of it still in flight writes nothing from now on, and with
/// `stale_at`, its series and its synthetic ones (`up` ...) get staleness markers then, as
/// Prometheus's `endOfRunStaleness` writes them for a target removed from its job.
fn end_of_run(
    shared: &Shared,
    target: &Labels,
    series: &Mutex<Option<HashSet<Labels>>>,
    stale_at: Option<i64>,
) {
    // Under the store's lock, as scrapes append: one in flight either wrote before (its
    // series are marked) or finds the target stopped.
    let mut store = write(&shared.store);
    let series = lock(series).take().unwrap_or_default();
    let Some(t) = stale_at else {
        return;
    };
    for s in series {
        store.add(&s, t, stale_nan());
    }
    for name in SYNTHETIC {
        let mut ls = target.clone();
        ls.set("__name__".into(), name.into());
        store.add(&ls, t, stale_nan());
    }
}

/// Prometheus's synthetic series of every scrape.
const SYNTHETIC: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

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
    let series = lock(&state).series.clone();
    let interval = Duration::from_millis(job.interval_ms as u64);
    // As Prometheus, each target scrapes at its own offset in the interval, from a hash of
    // the target: targets spread over the interval, and a restart keeps each on its phase.
    let first =
        tokio::time::Instant::now() + scrape_offset(&url, &target, job.interval_ms, now_ms());
    let mut ticker = tokio::time::interval_at(first, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticker.tick().await;
        let t = now_ms();
        let started = Instant::now();
        // Expanding and parsing a page (up to `body_size_limit`, 64 MiB by default) is CPU
        // work: on the blocking pool, not on one of the runtime's few workers, which serve the
        // API and the other scrapes meanwhile.
        let (limit, sample_limit) = (job.body_size_limit, job.sample_limit);
        let mut body = match fetch(&client, &url, &job).await {
            Ok(page) => tokio::task::spawn_blocking(move || {
                let (text, format) = page.decode(limit)?;
                let metadata = parse_metadata_as(&text, format)?;
                let samples = parse_samples(&text, format)?;
                if sample_limit > 0 && samples.len() as u64 > sample_limit {
                    return Err("sample limit exceeded".to_owned());
                }
                Ok((samples, metadata, text.trim().is_empty()))
            })
            .await
            .unwrap_or_else(|e| Err(format!("reading the page failed: {e}"))),
            Err(e) => Err(e),
        };
        let duration = started.elapsed().as_secs_f64();
        {
            let mut s = lock(&state);
            s.last_scrape_ms = Some(t);
            s.last_duration = duration;
            s.up = Some(body.is_ok());
            s.last_error = body.as_ref().err().cloned().unwrap_or_default();
            if let Ok((_, metadata, empty)) = &mut body {
                s.metadata.update(std::mem::take(metadata), *empty);
            }
        }
        let samples = match body {
            Ok((samples, _, _)) => Some(samples),
            Err(e) => {
                tracing::warn!(target = %url, error = %e, "scrape failed");
                None
            }
        };
        // The store's lock is held by rule evaluation for a whole group: waited for on the
        // blocking pool, not on one of the runtime's few workers (which also serve the API,
        // the notifications and the other scrapes).
        let (shared_now, target_now, honor) = (shared.clone(), target.clone(), job.honor_labels);
        let series_now = series.clone();
        // A panic while appending leaves the set empty: the next scrape starts afresh.
        let _ = tokio::task::spawn_blocking(move || {
            let mut store = write(&shared_now.store);
            let mut series = lock(&series_now);
            // The target was removed meanwhile: nothing more of it is written.
            let Some(previous) = series.take() else {
                return;
            };
            let current = append(
                &mut store,
                samples,
                previous,
                &target_now,
                honor,
                t,
                duration,
            );
            *series = Some(current);
        })
        .await;
    }
}

/// One scrape's page and its format, as Prometheus asks for it: `Accept-Encoding: gzip`
/// (most exporters then compress) and `X-Prometheus-Scrape-Timeout-Seconds` (blackbox_exporter
/// and others fit their own work into it), the body read as it streams and refused when it
/// reaches the job's `body_size_limit`, counted after decompression (so a small compressed
/// page cannot expand without bound), with Prometheus's error text.
async fn fetch(client: &reqwest::Client, url: &str, job: &ScrapeConfig) -> Result<Page, String> {
    let chain = |e: reqwest::Error| axi_obs_core::__private::error_chain(&e);
    let mut resp = client
        .get(url)
        .header(reqwest::header::ACCEPT, "text/plain;version=0.0.4")
        .header(reqwest::header::ACCEPT_ENCODING, "gzip")
        .header(
            "X-Prometheus-Scrape-Timeout-Seconds",
            crate::template::gofmt::format_float(job.timeout_ms as f64 / 1000.0, 'f', -1),
        )
        .timeout(Duration::from_millis(job.timeout_ms as u64))
        .send()
        .await
        .map_err(chain)?;
    if !resp.status().is_success() {
        return Err(format!("server returned HTTP status {}", resp.status()));
    }
    // As Prometheus, the parser follows the answer's `Content-Type` (Rust's
    // prometheus-client answers OpenMetrics whatever was asked).
    let header = |name| {
        resp.headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
    };
    let format = Format::for_scrape(header(reqwest::header::CONTENT_TYPE), job.fallback_format)?;
    let gzip = header(reqwest::header::CONTENT_ENCODING)
        .is_some_and(|e| e.trim().eq_ignore_ascii_case("gzip"));
    // Prometheus fails a page that reaches the limit (`n >= limit` of what it read). A
    // compressed page is bounded by the limit too (it is held whole before it is expanded).
    let limit = job.body_size_limit;
    let most_held = if gzip { limit } else { limit.saturating_sub(1) };
    let mut raw = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(chain)? {
        if (raw.len() + chunk.len()) as u64 > most_held {
            return Err(TOO_BIG.to_owned());
        }
        raw.extend_from_slice(&chunk);
    }
    Ok(Page { raw, gzip, format })
}

/// Prometheus's error for a page that reaches `body_size_limit`.
const TOO_BIG: &str = "body size limit exceeded";

/// A page as it came, before it is expanded and read.
struct Page {
    raw: Vec<u8>,
    gzip: bool,
    format: Format,
}

impl Page {
    /// The page's text (expanded when compressed, refused when that reaches `limit`) and
    /// format.
    fn decode(self, limit: u64) -> Result<(String, Format), String> {
        use std::io::Read as _;
        let bytes = if self.gzip {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&self.raw[..])
                .take(limit.saturating_add(1))
                .read_to_end(&mut out)
                .map_err(|e| format!("decompressing the response: {e}"))?;
            if out.len() as u64 >= limit {
                return Err(TOO_BIG.to_owned());
            }
            out
        } else {
            self.raw
        };
        let text = match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        Ok((text, self.format))
    }
}

/// How long from `now_ms` until the target's next slot: the instant of each interval (counted
/// from the Unix epoch) at the offset a hash of its URL and labels gives.
fn scrape_offset(url: &str, target: &Labels, interval_ms: i64, now_ms: i64) -> Duration {
    use std::hash::{Hash, Hasher};
    let interval = interval_ms.max(1) as u64;
    // A fixed-key hash: the same target gets the same phase in every process.
    let mut h = std::hash::DefaultHasher::new();
    url.hash(&mut h);
    target.to_string().hash(&mut h);
    let phase = h.finish() % interval;
    let into = now_ms.rem_euclid(interval as i64) as u64;
    Duration::from_millis((phase + interval - into) % interval)
}

/// Writes one scrape's samples (`None`: the scrape failed) with its target labels, staleness
/// markers for the series of `previous` it no longer has, and Prometheus's synthetic series,
/// as Prometheus's scrape loop appends them; returns the series to mark stale next time.
///
/// - A series repeated in one scrape keeps its first value (Prometheus refuses the rest with
///   `duplicate sample for timestamp`).
/// - A sample with its own timestamp is not tracked for staleness (as Prometheus without
///   `track_timestamps_staleness`), and is dropped when it is not newer than the series'
///   newest point or more than 10 minutes ahead of the scrape (out of order, too far in the
///   future).
fn append(
    store: &mut crate::promql::MemStorage,
    samples: Option<Vec<crate::scrape::ScrapedSample>>,
    previous: HashSet<Labels>,
    target: &Labels,
    honor_labels: bool,
    t: i64,
    duration: f64,
) -> HashSet<Labels> {
    /// How far ahead of the scrape a sample's own timestamp may be (Prometheus's
    /// `maxAheadTime`).
    const MAX_AHEAD_MS: i64 = 10 * 60_000;
    let mut current = HashSet::new();
    let mut seen = HashSet::new();
    let up = samples.is_some();
    let scraped = samples.as_ref().map_or(0, Vec::len);
    for s in samples.into_iter().flatten() {
        let labels = with_target_labels(s.labels, target, honor_labels);
        if !seen.insert(labels.clone()) {
            continue;
        }
        match s.timestamp {
            None => {
                store.add(&labels, t, s.value);
                current.insert(labels);
            }
            Some(ts) => {
                if ts <= t + MAX_AHEAD_MS {
                    store.add_if_newer(&labels, ts, s.value);
                }
            }
        }
    }
    for gone in previous.difference(&current) {
        store.add(gone, t, stale_nan());
    }
    // Prometheus's synthetic series (no metric relabeling here: post-relabeling is what
    // was scraped; added: series this target did not have in its previous scrape).
    let added = current.difference(&previous).count();
    let values = [
        if up { 1.0 } else { 0.0 },
        duration,
        scraped as f64,
        scraped as f64,
        added as f64,
    ];
    for (name, v) in SYNTHETIC.into_iter().zip(values) {
        let mut ls = target.clone();
        ls.set("__name__".into(), name.into());
        store.add(&ls, t, v);
    }
    current
}

/// Target labels win over scraped ones, which are kept as `exported_<name>` (or
/// `exported_exported_<name>` ... when that is taken, shortest names first, as Prometheus's
/// `resolveConflictingExposedLabels`); with `honor_labels` the scraped ones win.
fn with_target_labels(scraped: Labels, target: &Labels, honor: bool) -> Labels {
    let mut out = scraped;
    let mut conflicting: Vec<(String, String)> = Vec::new();
    for (k, v) in target.iter() {
        match out.get(k).map(str::to_owned) {
            Some(_) if honor => {}
            Some(existing) => {
                conflicting.push((k.to_owned(), existing));
                out.set(k.to_owned(), v.to_owned());
            }
            None => out.set(k.to_owned(), v.to_owned()),
        }
    }
    conflicting.sort_by_key(|(k, _)| k.len());
    for (k, v) in conflicting {
        let mut name = k;
        loop {
            name = format!("exported_{name}");
            if out.get(&name).is_none_or(str::is_empty) {
                out.set(name, v);
                break;
            }
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
        // `exported_job` already exposed: the conflict goes one prefix further.
        let scraped = Labels::from_pairs([("__name__", "m"), ("job", "x"), ("exported_job", "y")]);
        let l = with_target_labels(scraped, &target, false);
        assert_eq!(
            (
                l.get("job"),
                l.get("exported_job"),
                l.get("exported_exported_job")
            ),
            (Some("api"), Some("y"), Some("x"))
        );
    }

    /// Each target has its phase in the interval, the same at every start; targets spread.
    #[test]
    fn targets_scrape_at_a_stable_offset_of_their_own() {
        let a = Labels::from_pairs([("job", "api"), ("instance", "a:1")]);
        let b = Labels::from_pairs([("job", "api"), ("instance", "b:1")]);
        let slot = |url: &str, l: &Labels, now: i64| {
            now + scrape_offset(url, l, 15_000, now).as_millis() as i64
        };
        let (ta, tb) = (
            slot("http://a:1/metrics", &a, 1_000_000),
            slot("http://b:1/metrics", &b, 1_000_000),
        );
        assert!((1_000_000..1_015_000).contains(&ta));
        assert_ne!(ta % 15_000, tb % 15_000, "two targets, two phases");
        // Later (another start): the same phase.
        assert_eq!(
            slot("http://a:1/metrics", &a, 1_234_567) % 15_000,
            ta % 15_000
        );
    }

    /// As Prometheus's scrape loop appends: a series repeated in one scrape keeps its first
    /// value; samples with their own timestamps are not marked stale when they disappear and
    /// are dropped when out of order or too far ahead; a series that disappears gets a
    /// staleness marker.
    #[test]
    fn a_scrape_appends_as_prometheus_does() {
        use crate::scrape::parse_text;
        let target = Labels::from_pairs([("job", "api"), ("instance", "h:1")]);
        let mut store = crate::promql::MemStorage::new();
        let series = |name: &str| {
            let mut l = Labels::from_pairs([("__name__", name)]);
            for (k, v) in target.iter() {
                l.set(k.to_owned(), v.to_owned());
            }
            l
        };
        let body = "dup 1\ndup 5\ngone 1\nown_ts 7 50000\n";
        let prev = append(
            &mut store,
            Some(parse_text(body).unwrap()),
            HashSet::new(),
            &target,
            false,
            60_000,
            0.1,
        );
        assert_eq!(store.newest(&series("dup")).unwrap().v, 1.0);
        assert_eq!(store.newest(&series("own_ts")).unwrap().t, 50_000);
        assert_eq!(prev.len(), 2, "{prev:?}");
        // Next scrape: `gone` and `own_ts` are missing, `own_ts` is back with an older and a
        // far-future timestamp.
        let body = "dup 2\n";
        let prev = append(
            &mut store,
            Some(parse_text(body).unwrap()),
            prev,
            &target,
            false,
            120_000,
            0.1,
        );
        assert!(crate::promql::value::is_stale(
            store.newest(&series("gone")).unwrap().v
        ));
        assert_eq!(
            store.newest(&series("own_ts")).unwrap().t,
            50_000,
            "not marked stale"
        );
        let body = "dup 3\nown_ts 8 40000\n";
        append(
            &mut store,
            Some(parse_text(body).unwrap()),
            prev.clone(),
            &target,
            false,
            180_000,
            0.1,
        );
        assert_eq!(
            store.newest(&series("own_ts")).unwrap().v,
            7.0,
            "out of order dropped"
        );
        let body = "dup 3\nown_ts 9 999999999\n";
        append(
            &mut store,
            Some(parse_text(body).unwrap()),
            prev,
            &target,
            false,
            240_000,
            0.1,
        );
        assert_eq!(
            store.newest(&series("own_ts")).unwrap().v,
            7.0,
            "too far ahead dropped"
        );
        // A failed scrape: everything it had goes stale, `up` is 0.
        let prev = append(
            &mut store,
            None,
            HashSet::from([series("dup")]),
            &target,
            false,
            300_000,
            0.1,
        );
        assert!(prev.is_empty());
        assert!(crate::promql::value::is_stale(
            store.newest(&series("dup")).unwrap().v
        ));
        assert_eq!(store.newest(&series("up")).unwrap().v, 0.0);
    }

    fn job() -> ScrapeConfig {
        ScrapeConfig {
            job_name: "node".into(),
            interval_ms: 15_000,
            timeout_ms: 10_000,
            metrics_path: "/metrics".into(),
            honor_labels: false,
            targets: Vec::new(),
            body_size_limit: super::super::DEFAULT_BODY_SIZE_LIMIT,
            sample_limit: 0,
            fallback_format: None,
        }
    }

    #[test]
    fn static_labels_name_the_target_and_shape_its_url() {
        let statics = BTreeMap::from([
            ("instance".to_owned(), "db-1".to_owned()),
            ("__metrics_path__".to_owned(), "/probe".to_owned()),
            ("__param_module".to_owned(), "http 2xx".to_owned()),
            ("__meta_x".to_owned(), "dropped".to_owned()),
            ("site".to_owned(), "a".to_owned()),
        ]);
        let (labels, url, path) = target_labels_and_url(&job(), "10.0.0.1:9100", &statics);
        assert_eq!(labels.get("instance"), Some("db-1"));
        assert_eq!(labels.get("job"), Some("node"));
        assert_eq!(labels.get("site"), Some("a"));
        assert_eq!(labels.get("__meta_x"), None);
        assert_eq!(labels.get("__metrics_path__"), None);
        assert_eq!(path, "/probe");
        assert_eq!(url, "http://10.0.0.1:9100/probe?module=http+2xx");
        let (labels, url, _) = target_labels_and_url(&job(), "h:1", &BTreeMap::new());
        assert_eq!(labels.get("instance"), Some("h:1"));
        assert_eq!(url, "http://h:1/metrics");
    }

    #[test]
    fn metadata_outlives_ten_scrapes_without_its_family() {
        let meta = |names: &[&str]| -> BTreeMap<String, FamilyMetadata> {
            names
                .iter()
                .map(|n| {
                    let m = FamilyMetadata {
                        kind: "gauge".into(),
                        help: String::new(),
                    };
                    ((*n).to_owned(), m)
                })
                .collect()
        };
        let mut c = MetadataCache::default();
        c.update(meta(&["a", "b"]), false);
        for _ in 0..10 {
            c.update(meta(&["a"]), false);
            // An empty body does not count.
            c.update(BTreeMap::new(), true);
        }
        assert!(c.families.contains_key("b"));
        c.update(meta(&["a"]), false);
        assert!(!c.families.contains_key("b"));
        assert!(c.families.contains_key("a"));
    }
}
