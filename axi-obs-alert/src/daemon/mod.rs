//! `axi-alert run`: a standalone rule evaluator. It scrapes static targets, evaluates rule
//! files on their groups' intervals, and answers `/api/v1/alerts` in Prometheus's shape. The
//! configuration is a subset of Prometheus's own (see [`Config`]), so one file serves both.
//! Groups run on Prometheus's evaluation slots ([`crate::rules::slot`]) and `/metrics`
//! carries Prometheus's rule-manager metrics (`prometheus_rule_*`, by `rule_group`).
//!
//! After each group evaluation, its alerts that need sending (Prometheus's rules: firing
//! ones every resend delay, resolved ones at once, `endsAt` as Prometheus computes it) go,
//! with `global.external_labels`, to every Alertmanager of `alerting.alertmanagers`, each
//! entry through its own [`AlertmanagerSender`]
//! (bounded queue, batches of 256, timeout, basic or bearer auth, `tls_config`). A reload
//! that changes the `alerting` section or the external labels replaces the senders (the old
//! ones send what they hold, then stop); at shutdown the queues are sent within 10 s.
//!
//! Samples live in a [`MemStorage`] trimmed to the longest range the rules read plus the
//! lookback, or to [`RunOptions::retention_ms`] when longer. Prometheus's query API answers
//! from it (`/api/v1/query`, `query_range`, `series`, `labels`, `label/<name>/values`,
//! `format_query`, `query_exemplars`, `status/buildinfo`), `/federate` serves the latest
//! samples of the selected series to a Prometheus that federates from it, and
//! `/api/v1/rules` lists the groups with each rule's health, last error and alerts, and
//! `/api/v1/targets` each scrape target's health, so
//! Grafana and `promtool query` read it as they read a Prometheus. A reload (SIGHUP, `POST /-/reload`, or a changed configuration or rule file)
//! that fails keeps the running rules and reports why; alert state carries over for rules
//! that did not change.

mod config;
mod federate;
mod group_metrics;
mod query_api;
mod remote;
mod rules_api;
mod scraper;
mod status_api;
mod targets_api;
pub(crate) use targets_api::model_duration;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};

pub use config::{AlertmanagerConfig, Config, DEFAULT_BODY_SIZE_LIMIT, ScrapeConfig};

use crate::delivery::{AlertmanagerSender, SenderOptions, group_alerts_to_send};
use crate::promql::{Engine, MemStorage};
use crate::rules::{AlertState, GroupState, RuleState, TemplateContext};

/// How `run` keeps alert state across restarts.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where `for` state is saved after every evaluation (atomically) and read at start;
    /// none: nothing is saved and every restart starts `for` again.
    pub state_file: Option<PathBuf>,
    /// Rules whose `for` is shorter are not restored; at least this much `for` remains after
    /// a restore (Prometheus's `--rules.alert.for-grace-period`, 10 m).
    pub for_grace_period_ms: i64,
    /// Saved state older than this is ignored (`--rules.alert.for-outage-tolerance`, 1 h).
    pub for_outage_tolerance_ms: i64,
    /// Answer rule expressions with this Prometheus's `/api/v1/query` instead of the local
    /// store (the scale-out path); scraping is then optional.
    pub query_url: Option<String>,
    /// A firing alert is sent again to the Alertmanagers after this long
    /// (`--rules.alert.resend-delay`, 1 m).
    pub resend_delay_ms: i64,
    /// Samples are kept at least this long (ms) for the query API, and always as long as the
    /// rules read (their longest range, offset and group `query_offset`, plus the lookback
    /// ([`QueryLimits::lookback_delta`]) and two evaluation intervals). Default 1 h (a dashboard's last hour); 0 keeps
    /// only what the rules read.
    pub retention_ms: i64,
    /// The limits of the query API.
    pub query: QueryLimits,
}

/// The limits of `/api/v1/query` and `/api/v1/query_range` (Prometheus's `--query.*` flags).
#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// The longest a query may run; a request's `timeout` parameter can only shorten it
    /// (`--query.timeout`, 2 m).
    pub timeout: Duration,
    /// Queries evaluated at once; more wait for a turn within their timeout
    /// (`--query.max-concurrency`, 20).
    pub max_concurrency: usize,
    /// The most samples one query may hold (`--query.max-samples`, 50 million).
    pub max_samples: usize,
    /// How far back an instant selector looks for a series' latest sample, in queries,
    /// `/federate` and rule evaluations (`--query.lookback-delta`, 5 m; zero is taken as
    /// that default, as in Prometheus); a query's `lookback_delta` parameter overrides it for
    /// that query.
    pub lookback_delta: Duration,
}

impl QueryLimits {
    /// [`QueryLimits::lookback_delta`] in milliseconds, for window arithmetic.
    pub(crate) fn lookback_ms(&self) -> i64 {
        i64::try_from(self.lookback_delta.as_millis()).unwrap_or(i64::MAX / 4)
    }
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            timeout: Duration::from_secs(120),
            max_concurrency: 20,
            max_samples: 50_000_000,
            lookback_delta: Duration::from_secs(300),
        }
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            state_file: None,
            for_grace_period_ms: 10 * 60_000,
            for_outage_tolerance_ms: 60 * 60_000,
            query_url: None,
            resend_delay_ms: 60_000,
            retention_ms: 60 * 60_000,
            query: QueryLimits::default(),
        }
    }
}

/// One saved alert: its group (`file;name`), labels, when the state was written and since when it was
/// active (ms). Prometheus keeps the same as `ALERTS_FOR_STATE` samples.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct SavedAlert {
    group: String,
    labels: BTreeMap<String, String>,
    saved_at: i64,
    active_at: i64,
}

fn read_state(path: &Path) -> Vec<SavedAlert> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(file = %path.display(), error = %e, "unreadable alert state; starting without it");
            Vec::new()
        }),
        Err(_) => Vec::new(),
    }
}

/// Writes the state next to its final name, then renames it over (atomic on POSIX).
/// The `for` state of every alert, to save: taken under the rules lock, written after it
/// (the write syncs to disk, which must not hold up the HTTP API). A group whose saved state
/// is still `pending` (not restored yet: that happens at its second evaluation) keeps it as
/// it was saved, as Prometheus writes no `ALERTS_FOR_STATE` before a rule is restored: its
/// alerts' `activeAt` is the restart's until then, and a second restart in that window
/// would otherwise lose the progress of every `for`.
fn state_to_save(groups: &[GroupState], now: i64, pending: &[SavedAlert]) -> Vec<SavedAlert> {
    let mut saved = Vec::new();
    for g in groups {
        let waiting: Vec<&SavedAlert> = pending.iter().filter(|s| belongs(&s.group, g)).collect();
        if !waiting.is_empty() {
            saved.extend(waiting.into_iter().cloned());
            continue;
        }
        for r in &g.rules {
            if let RuleState::Alerting(a) = r {
                for (labels, saved_at, active_at) in a.for_state(now) {
                    saved.push(SavedAlert {
                        group: g.key(),
                        labels: labels
                            .iter()
                            .map(|(k, v)| (k.to_owned(), v.to_owned()))
                            .collect(),
                        saved_at,
                        active_at,
                    });
                }
            }
        }
    }
    saved
}

/// Writes `saved` to `path` durably (a temporary file, synced, renamed over it).
fn write_state(path: &Path, saved: &[SavedAlert]) {
    let tmp = path.with_extension("tmp");
    let result = serde_json::to_vec(saved)
        .map_err(std::io::Error::other)
        .and_then(|bytes| {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        });
    if let Err(e) = result {
        tracing::warn!(file = %path.display(), error = %e, "cannot save alert state");
    }
}

/// Everything the tasks share.
struct Shared {
    options: RunOptions,
    config_path: PathBuf,
    /// Written by the scrapers and rule evaluation, read by queries.
    store: RwLock<MemStorage>,
    rules: Mutex<Loaded>,
    /// The rule manager's metrics (taken after `rules` when both are held).
    group_metrics: Mutex<group_metrics::GroupMetrics>,
    queries: query_api::Queries,
    /// The scrape jobs and their targets' states, replaced when the scrapers restart.
    targets: Mutex<scraper::Pools>,
}

/// The loaded configuration and rule groups.
struct Loaded {
    config: Config,
    groups: Vec<GroupState>,
    /// Modification times of the configuration and rule files when loaded.
    stamps: Vec<(PathBuf, Option<SystemTime>)>,
    /// How far back the rules read (ms), not counting the lookback: with it, the retention
    /// of the store.
    retention_ms: i64,
    /// The last reload error, if the last reload failed.
    last_error: Option<String>,
    /// Series of rules a reload dropped or changed: marked stale after the next round of
    /// evaluations, unless a rule wrote them again, or two evaluation intervals after the
    /// reload when no group runs by then (a reload that removed every rule), as Prometheus
    /// marks a removed group's series.
    gone: Vec<crate::promql::Labels>,
    /// When `gone` was filled (ms).
    gone_at: i64,
    /// The senders of `alerting.alertmanagers`.
    notifier: Notifier,
}

/// One [`AlertmanagerSender`] per `alerting.alertmanagers` entry; once started, each delivers
/// in its own task until the notifier is dropped or stopped, then sends what it holds.
#[derive(Default)]
struct Notifier {
    senders: Vec<Arc<AlertmanagerSender>>,
    /// Dropped (closing the channel) to stop the tasks.
    stop: Option<tokio::sync::watch::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Notifier {
    /// Builds (does not start) the senders of `config`.
    fn new(config: &Config) -> Result<Notifier, String> {
        let external_labels: crate::delivery::LabelSet = config
            .external_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut senders = Vec::new();
        for (i, am) in config.alertmanagers.iter().enumerate() {
            let mut opts = SenderOptions::new(am.urls.clone());
            opts.external_labels = external_labels.clone();
            opts.timeout = am.timeout;
            opts.auth = am.auth.clone();
            opts.tls = am.tls.clone();
            let sender = AlertmanagerSender::new(opts)
                .map_err(|e| format!("alerting.alertmanagers[{i}]: {e}"))?;
            senders.push(Arc::new(sender));
        }
        Ok(Notifier {
            senders,
            stop: None,
            tasks: Vec::new(),
        })
    }

    /// Starts a delivery task per sender, on the current runtime.
    fn start(&mut self) {
        let (stop, stopped) = tokio::sync::watch::channel(());
        for s in &self.senders {
            let (s, mut stopped) = (s.clone(), stopped.clone());
            self.tasks.push(tokio::spawn(async move {
                s.run(async move {
                    // Returns when the sender side is dropped.
                    while stopped.changed().await.is_ok() {}
                })
                .await;
            }));
        }
        self.stop = Some(stop);
    }

    /// Stops the tasks and waits, at most `limit`, for them to send what they hold.
    async fn stop(mut self, limit: Duration) {
        self.stop = None;
        let all = join_all(std::mem::take(&mut self.tasks));
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!("alerts still queued for Alertmanagers at shutdown were not all sent");
        }
    }

    /// The alerts the senders hold and have not sent yet, taken from them. Every sender was
    /// given the same alerts and sends from the front of its queue, so each holds the end of
    /// the same sequence: the longest holds every alert some Alertmanager has not been sent.
    fn take_queued(&self) -> Vec<crate::delivery::PostableAlert> {
        self.senders
            .iter()
            .map(|s| s.take_queued())
            .max_by_key(Vec::len)
            .unwrap_or_default()
    }

    fn send(&self, alerts: Vec<crate::delivery::PostableAlert>) {
        if let Some((last, rest)) = self.senders.split_last() {
            for s in rest {
                s.send(alerts.clone());
            }
            last.send(alerts);
        }
    }
}

async fn join_all(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn stamp(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Loads the configuration and every rule file; any error fails the whole load.
fn load(config_path: &Path) -> Result<Loaded, String> {
    let config = Config::load(config_path)?;
    let mut groups = Vec::new();
    let mut errors = Vec::new();
    for f in &config.rule_files {
        match crate::rules::load(f) {
            Ok((file, _)) => groups.extend(
                file.groups
                    .into_iter()
                    .map(|g| GroupState::new(g).from_file(f)),
            ),
            Err(errs) => errors.extend(errs.iter().map(ToString::to_string)),
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    let notifier = Notifier::new(&config)?;
    let mut stamps = vec![(config_path.to_owned(), stamp(config_path))];
    stamps.extend(config.rule_files.iter().map(|f| (f.clone(), stamp(f))));
    // A group's `query_offset` moves every window of its rules back by that much.
    let longest = groups
        .iter()
        .flat_map(|g| {
            let offset = group_offset_ms(g);
            g.group
                .rules
                .iter()
                .map(move |r| longest_range_ms(&r.expr) + offset)
        })
        .max()
        .unwrap_or(0);
    Ok(Loaded {
        retention_ms: longest + 2 * config.evaluation_interval_ms,
        config,
        groups,
        stamps,
        last_error: None,
        gone: Vec::new(),
        gone_at: 0,
        notifier,
    })
}

/// The longest range, subquery window and offset an expression reads, summed per path.
pub(crate) fn longest_range_ms(e: &crate::promql::Expr) -> i64 {
    use crate::promql::Expr as E;
    use promql_parser::parser::Offset;
    let off = |o: &Option<Offset>| match o {
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        _ => 0,
    };
    match e {
        E::Aggregate(a) => {
            longest_range_ms(&a.expr).max(a.param.as_deref().map(longest_range_ms).unwrap_or(0))
        }
        E::Unary(u) => longest_range_ms(&u.expr),
        E::Binary(b) => longest_range_ms(&b.lhs).max(longest_range_ms(&b.rhs)),
        E::Paren(p) => longest_range_ms(&p.expr),
        E::Subquery(s) => s.range.as_millis() as i64 + off(&s.offset) + longest_range_ms(&s.expr),
        E::VectorSelector(vs) => off(&vs.offset),
        E::MatrixSelector(ms) => ms.range.as_millis() as i64 + off(&ms.vs.offset),
        E::Call(c) => c
            .args
            .args
            .iter()
            .map(|a| longest_range_ms(a))
            .max()
            .unwrap_or(0),
        E::NumberLiteral(_) | E::StringLiteral(_) | E::Extension(_) => 0,
    }
}

impl Shared {
    /// Reloads; on failure keeps the running rules and records the error.
    fn reload(&self) -> Result<(), String> {
        match load(&self.config_path) {
            Ok(mut fresh) => {
                let mut current = lock(&self.rules);
                fresh.gone = carry_over_state(&current.groups, &mut fresh.groups);
                fresh.gone_at = if current.gone.is_empty() {
                    now_ms()
                } else {
                    current.gone_at
                };
                // Marks a previous reload left for this round are kept too.
                fresh.gone.append(&mut current.gone);
                if fresh.config.alertmanagers == current.config.alertmanagers
                    && fresh.config.external_labels == current.config.external_labels
                {
                    // The same Alertmanagers: keep the running senders and their queues.
                    fresh.notifier = std::mem::take(&mut current.notifier);
                } else {
                    // Alerts still queued go to the new Alertmanagers, as from Prometheus's one
                    // notification queue; the old senders finish a batch on its way and stop
                    // when dropped below.
                    let queued = current.notifier.take_queued();
                    fresh.notifier.start();
                    if !queued.is_empty() {
                        tracing::info!(
                            alerts = queued.len(),
                            "Alertmanagers changed: alerts still queued go to the new ones"
                        );
                        fresh.notifier.send(queued);
                    }
                }
                // A group whose rules changed shows its rules as not evaluated yet until it
                // runs again (Prometheus builds new rules for it); the group's own record stays.
                let changed: Vec<String> = fresh
                    .groups
                    .iter()
                    .filter(|g| {
                        current
                            .groups
                            .iter()
                            .find(|o| o.same_group(g))
                            .is_some_and(|o| !same_rules(o, g))
                    })
                    .map(GroupState::key)
                    .collect();
                *current = fresh;
                self.queries
                    .set_evaluation_interval(current.config.evaluation_interval_ms);
                let keys: Vec<String> = current.groups.iter().map(GroupState::key).collect();
                let mut metrics = lock(&self.group_metrics);
                metrics.retain(keys.iter().map(String::as_str));
                for key in &changed {
                    metrics.forget_rules(key);
                }
                drop(metrics);
                tracing::info!(groups = current.groups.len(), "rules loaded");
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "reload failed; keeping the running rules");
                lock(&self.rules).last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Whether the configuration or a rule file changed since the last load or failed
    /// reload, or the `rule_files` globs now name other files (one added, as Prometheus's
    /// auto-reload sees it, or removed).
    fn changed_on_disk(&self) -> bool {
        let r = lock(&self.rules);
        r.stamps.iter().any(|(p, s)| stamp(p) != *s)
            || r.config.expand_rule_files().is_ok_and(|now| {
                now.len() + 1 != r.stamps.len()
                    || now.iter().any(|f| !r.stamps.iter().any(|(p, _)| p == f))
            })
    }
}

/// Whether two loads of a group define the same rules, in the same order.
fn same_rules(a: &GroupState, b: &GroupState) -> bool {
    a.group.rules.len() == b.group.rules.len()
        && a.group.rules.iter().zip(&b.group.rules).all(|(x, y)| {
            x.kind == y.kind
                && x.expr_text == y.expr_text
                && x.labels == y.labels
                && x.annotations == y.annotations
                && x.for_ == y.for_
                && x.keep_firing_for == y.keep_firing_for
        })
}

/// Alert state, and the series each rule wrote, move to the reloaded rule with the same
/// group, kind, name and labels (whatever its expression). Returns the series of rules that
/// are gone, which get staleness markers, as Prometheus's rule manager marks them on a
/// reload; a kept rule's series it no longer writes are marked at its next evaluation.
fn carry_over_state(old: &[GroupState], new: &mut [GroupState]) -> Vec<crate::promql::Labels> {
    let mut carried: std::collections::HashSet<&crate::promql::Labels> =
        std::collections::HashSet::new();
    for g in new.iter_mut() {
        let Some(prev) = old.iter().find(|o| o.same_group(g)) else {
            continue;
        };
        // Each previous rule is taken over once, in order: two rules of one name (different
        // labels, say) keep their own state and series.
        let mut used = vec![false; prev.rules.len()];
        for i in 0..g.rules.len() {
            let def = &g.group.rules[i];
            let Some(j) = (0..prev.rules.len()).find(|&j| {
                let pdef = &prev.group.rules[j];
                // Prometheus's `Group.CopyState` matches by name and labels: a changed
                // expression (a threshold tuned) keeps its alerts, so a firing one is not
                // resolved and paged again after `for`.
                !used[j] && pdef.kind == def.kind && pdef.labels == def.labels
            }) else {
                continue;
            };
            used[j] = true;
            if let (RuleState::Alerting(a), RuleState::Alerting(pa)) =
                (&mut g.rules[i], &prev.rules[j])
            {
                a.active = pa.active.clone();
                a.carry_late_restore(pa);
            }
            g.carry_written(i, prev.written(j).cloned());
            carried.extend(prev.written(j));
        }
    }
    old.iter()
        .flat_map(GroupState::all_written)
        .filter(|l| !carried.contains(l))
        .cloned()
        .collect()
}

/// Runs until SIGTERM/SIGINT: scrapes, rule evaluation, and the HTTP API on `listen`.
pub async fn run(
    config_path: PathBuf,
    listen: std::net::SocketAddr,
    mut options: RunOptions,
) -> Result<(), String> {
    if options.query.lookback_delta.is_zero() {
        // As Prometheus's engine: no lookback is the default one.
        options.query.lookback_delta = QueryLimits::default().lookback_delta;
    }
    let mut loaded = load(&config_path)?;
    loaded.notifier.start();
    let saved = options
        .state_file
        .as_deref()
        .map(read_state)
        .unwrap_or_default();
    if options.state_file.is_some() {
        // As Prometheus: no ALERTS series until `for` state is restored.
        for g in &mut loaded.groups {
            for r in &mut g.rules {
                if let RuleState::Alerting(a) = r {
                    a.restored = false;
                }
            }
        }
    }
    let shared = Arc::new(Shared {
        queries: query_api::Queries::new(
            options.query.clone(),
            loaded.config.evaluation_interval_ms,
        ),
        targets: Mutex::default(),
        options,
        config_path,
        store: RwLock::new(MemStorage::new()),
        rules: Mutex::new(loaded),
        group_metrics: Mutex::default(),
    });
    let scrapers = scraper::Scrapers::start(shared.clone());
    let remote = match &shared.options.query_url {
        Some(url) => Some(remote::RemotePrometheus::new(url, Duration::from_secs(10))?),
        None => None,
    };
    // Evaluation is CPU work under the store's lock: its own thread, not a runtime worker.
    let evaluator = shared.clone();
    std::thread::Builder::new()
        .name("axi-alert-eval".into())
        .spawn(move || evaluate(&evaluator, saved, remote))
        .map_err(|e| format!("cannot start the evaluation thread: {e}"))?;
    // `/-/reload` asks the watcher, so that every reload (signal, file change, HTTP) takes one
    // path, scrapers restarted with the new configuration included.
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel::<ReloadReply>(8);
    tokio::spawn(watch(shared.clone(), scrapers, reload_rx));

    let app = query_api::routes()
        .route("/api/v1/alerts", get(alerts))
        .route(
            "/-/healthy",
            get(|| async { "Prometheus Server is Healthy.\n" }),
        )
        .route(
            "/-/ready",
            get(|| async { "Prometheus Server is Ready.\n" }),
        )
        .route("/-/reload", post(reload).put(reload))
        .route("/metrics", get(metrics))
        .layer(axum::Extension(reload_tx))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    tracing::info!(address = %listen, "listening");
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("server error: {e}"));
    // As Prometheus drains its notification queue on shutdown, bounded.
    let notifier = std::mem::take(&mut lock(&shared.rules).notifier);
    notifier.stop(Duration::from_secs(10)).await;
    served
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Reloads on SIGHUP and when a watched file changes (checked every second); restarts the
/// scrapers when the configuration changed.
/// Where the watcher answers a reload asked for over HTTP.
type ReloadReply = tokio::sync::oneshot::Sender<Result<(), String>>;

async fn watch(
    shared: Arc<Shared>,
    mut scrapers: scraper::Scrapers,
    mut asked: tokio::sync::mpsc::Receiver<ReloadReply>,
) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        let tick = tokio::time::sleep(Duration::from_secs(1));
        #[cfg(unix)]
        let signalled = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<()>();
        let mut reply = None;
        let by_signal = tokio::select! {
            () = tick => false,
            () = signalled => true,
            Some(r) = asked.recv() => {
                reply = Some(r);
                true
            }
        };
        // Off the runtime's workers: the check reads the files' metadata, a reload reads and
        // parses every file, and both wait for the rules' lock, which an evaluation round
        // holds while it runs.
        let checked = shared.clone();
        let result = tokio::task::spawn_blocking(move || {
            if !by_signal && !checked.changed_on_disk() {
                return None;
            }
            let result = checked.reload();
            if result.is_err() {
                // Remember the failed files' stamps, and the files the globs name now, so the
                // reload is not retried every second.
                let mut r = lock(&checked.rules);
                let now = r.config.expand_rule_files().unwrap_or_default();
                let config_path = checked.config_path.clone();
                r.stamps = std::iter::once(config_path)
                    .chain(now)
                    .map(|p| {
                        let s = stamp(&p);
                        (p, s)
                    })
                    .collect();
            }
            Some(result)
        })
        .await
        .unwrap_or_else(|e| Some(Err(format!("the reload failed: {e}"))));
        let Some(result) = result else { continue };
        let ok = result.is_ok();
        if let Some(r) = reply {
            let _ = r.send(result);
        }
        if ok {
            scrapers.restart(shared.clone());
        }
    }
}

/// Evaluates every group on its slots (Prometheus's: every interval, at an offset from the
/// group's name and file; see [`crate::rules::slot`]); restores saved `for` state after each
/// group's second evaluation and saves the state after every round that evaluated.
fn evaluate(shared: &Shared, mut saved: Vec<SavedAlert>, remote: Option<remote::RemotePrometheus>) {
    let lookback_ms = shared.options.query.lookback_ms();
    let engine = Engine::default().lookback(shared.options.query.lookback_delta);
    let mut next_due: BTreeMap<String, i64> = BTreeMap::new();
    let mut evaluations: BTreeMap<String, u32> = BTreeMap::new();
    // Each group's last evaluation timestamp, and the interval it was scheduled with.
    let mut last_ts: BTreeMap<String, i64> = BTreeMap::new();
    let mut scheduled_every: BTreeMap<String, i64> = BTreeMap::new();
    let mut last_trim = 0;
    let mut last_now = i64::MIN;
    loop {
        let now = now_ms();
        if now < last_now {
            // The wall clock was set back: the schedule moves back as far, instead of waiting
            // for the old due times (and for slots after the last evaluations) to come again.
            shift_back(&mut next_due, &mut last_ts, last_now - now);
            last_trim = last_trim.min(now);
        }
        last_now = now;
        let mut wake = now + 1_000;
        let mut evaluated = false;
        // A reload changed a group's interval: due at once, not at the old interval's next
        // slot (an hour away after shortening 1h to 1s), on the new interval's slots. Before
        // the prefetch, which asks the queries of the groups due.
        {
            let rules = lock(&shared.rules);
            let default_interval = rules.config.evaluation_interval_ms;
            for g in &rules.groups {
                let interval = group_interval_ms(g, default_interval);
                if scheduled_every
                    .insert(g.key(), interval)
                    .is_some_and(|before| before != interval)
                {
                    next_due.insert(g.key(), now);
                }
            }
        }
        // With a remote Prometheus, the due groups' queries are asked before the rules and the
        // store are locked: a slow answer must not hold the locks the HTTP API and the
        // scrapers take. (Its rules see only the remote data, so asking all of a group's
        // queries first gives what asking them in turn would.)
        let answers = match &remote {
            Some(r) => prefetch(shared, r, &next_due, now),
            None => HashMap::new(),
        };
        let mut to_save = None;
        {
            let mut guard = lock(&shared.rules);
            let rules = &mut *guard;
            let default_interval = rules.config.evaluation_interval_ms;
            let templates = TemplateContext {
                external_labels: rules.config.external_labels.clone(),
                external_url: String::new(),
            };
            let retention = rules
                .retention_ms
                .saturating_add(lookback_ms)
                .max(shared.options.retention_ms);
            for g in rules.groups.iter_mut() {
                let interval = group_interval_ms(g, default_interval);
                let offset = group_offset_ms(g);
                // A group new to the loop runs at once, at its latest slot.
                let due = next_due.entry(g.key()).or_insert(now);
                let slot = (*due <= now).then(|| g.slot(now, interval));
                if let Some(slot) = slot
                    && last_ts.get(&g.key()).is_some_and(|last| slot.ts <= *last)
                {
                    // A reload changed the group's interval: the new interval's latest slot
                    // can lie before the last evaluation. As Prometheus's restarted group,
                    // wait for the next slot instead of evaluating in the past.
                    *due = slot.next;
                } else if let Some(slot) = slot {
                    let ts = slot.ts;
                    let engine = engine
                        .clone()
                        .default_subquery_step(Duration::from_millis(default_interval as u64));
                    let started = std::time::Instant::now();
                    let started_ms = now_ms();
                    let mut store = write(&shared.store);
                    let outcomes = match &remote {
                        Some(r) => {
                            let ask =
                                |_: &crate::promql::Expr, text: &str, t: i64, _: &MemStorage| {
                                    // Asked now only if a reload brought it in since.
                                    match answers.get(&(text.to_owned(), t)) {
                                        Some(answer) => answer.clone(),
                                        None => r.instant(text, t),
                                    }
                                };
                            g.eval_with(&ask, &engine, &mut store, ts, offset, &templates)
                        }
                        None => g.eval(&engine, &mut store, ts, offset, &templates),
                    };
                    for o in &outcomes {
                        if let Some(e) = &o.error {
                            tracing::warn!(group = %g.group.name, rule = %o.rule, error = %e, "rule evaluation failed");
                        }
                    }
                    drop(store);
                    let key = g.key();
                    lock(&shared.group_metrics).evaluated(&group_metrics::Evaluation {
                        key: &key,
                        interval_ms: interval,
                        ts,
                        duration: started.elapsed(),
                        outcomes: &outcomes,
                        started_ms,
                    });
                    send_alerts(g, &rules.notifier, ts, interval, &shared.options);
                    *due = slot.next;
                    last_ts.insert(key.clone(), ts);
                    evaluated = true;
                    let n = evaluations.entry(key.clone()).or_insert(0);
                    *n += 1;
                    if *n == 2 {
                        let started = std::time::Instant::now();
                        restore_group(g, &mut saved, now_ms(), &shared.options);
                        lock(&shared.group_metrics).restored(&key, started.elapsed());
                    }
                }
                wake = wake.min(*due);
            }
            // Trimmed whether or not a group ran (with no rules, scrapes still arrive).
            if now - last_trim >= 1_000 {
                write(&shared.store).drop_before(now - retention);
                last_trim = now;
            }
            let gone_due = now - rules.gone_at >= 2 * default_interval;
            if (evaluated || gone_due) && !rules.gone.is_empty() {
                // After a reload, once groups have run again (new and changed groups run at
                // once), or two intervals later if none has: what no rule wrote again is
                // stale, marked after what they wrote.
                let written: std::collections::HashSet<&crate::promql::Labels> = rules
                    .groups
                    .iter()
                    .flat_map(GroupState::all_written)
                    .collect();
                let gone = std::mem::take(&mut rules.gone);
                let mut store = write(&shared.store);
                for series in gone.iter().filter(|l| !written.contains(l)) {
                    store.add(series, now, crate::promql::value::stale_nan());
                }
            }
            if evaluated && shared.options.state_file.is_some() {
                to_save = Some(state_to_save(&rules.groups, now, &saved));
            }
        }
        if let (Some(path), Some(saved)) = (&shared.options.state_file, to_save) {
            write_state(path, &saved);
        }
        let sleep = (wake - now_ms()).clamp(10, 1_000);
        std::thread::sleep(Duration::from_millis(sleep as u64));
    }
}

/// Moves every group's due time and last evaluation timestamp `back` milliseconds earlier.
fn shift_back(
    next_due: &mut BTreeMap<String, i64>,
    last_ts: &mut BTreeMap<String, i64>,
    back: i64,
) {
    for t in next_due.values_mut().chain(last_ts.values_mut()) {
        *t = t.saturating_sub(back);
    }
}

/// The remote answers of the queries of every group due at `now`, by query text and time,
/// asked with only a short hold of the rules lock (to list the queries).
fn prefetch(
    shared: &Shared,
    remote: &remote::RemotePrometheus,
    next_due: &BTreeMap<String, i64>,
    now: i64,
) -> HashMap<(String, i64), Result<crate::promql::Value, crate::promql::EvalError>> {
    let queries: Vec<(String, i64)> = {
        let rules = lock(&shared.rules);
        let default_interval = rules.config.evaluation_interval_ms;
        rules
            .groups
            .iter()
            .filter_map(|g| {
                let interval = group_interval_ms(g, default_interval);
                let due = next_due.get(&g.key()).copied().unwrap_or(now);
                (due <= now).then(|| {
                    let ts = g.slot(now, interval).ts - group_offset_ms(g);
                    g.group.rules.iter().map(move |r| (r.expr_text.clone(), ts))
                })
            })
            .flatten()
            .collect()
    };
    let mut answers = HashMap::with_capacity(queries.len());
    for key in queries {
        if let std::collections::hash_map::Entry::Vacant(slot) = answers.entry(key) {
            let (text, t) = slot.key();
            let answer = remote.instant(text, *t);
            slot.insert(answer);
        }
    }
    answers
}

/// A group's evaluation interval (ms): its own, else the global one.
fn group_interval_ms(g: &GroupState, default_interval: i64) -> i64 {
    g.group
        .interval
        .map(|d| d.as_millis() as i64)
        .filter(|i| *i > 0)
        .unwrap_or(default_interval)
}

/// A group's `query_offset` (ms).
fn group_offset_ms(g: &GroupState) -> i64 {
    g.group
        .query_offset
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Queues the group's alerts that need sending (Prometheus's `sendAlerts` after a group
/// evaluation at `ts`) for every Alertmanager. The generator URL is left out: `run` has no
/// external URL of its own.
fn send_alerts(g: &mut GroupState, notifier: &Notifier, ts: i64, interval_ms: i64, o: &RunOptions) {
    if notifier.senders.is_empty() {
        return;
    }
    let interval = Duration::from_millis(u64::try_from(interval_ms).unwrap_or(0));
    let resend = Duration::from_millis(u64::try_from(o.resend_delay_ms).unwrap_or(0));
    let batch = group_alerts_to_send(g, ts, interval, resend, "");
    if !batch.is_empty() {
        notifier.send(batch);
    }
}

/// Whether state saved under `key` is group `g`'s: saved under the group's key
/// (`file;name`), or, in a state file written before keys had it, the name alone.
fn belongs(key: &str, g: &GroupState) -> bool {
    key == g.key() || key == g.group.name || same_group_key(key, g)
}

/// Prometheus's `RestoreForState` for one group, from the saved state.
fn restore_group(g: &mut GroupState, saved: &mut Vec<SavedAlert>, ts: i64, o: &RunOptions) {
    let mine: Vec<(crate::promql::Labels, i64, i64)> = saved
        .iter()
        .filter(|s| belongs(&s.group, g))
        .map(|s| {
            (
                crate::promql::Labels::from_pairs(s.labels.clone()),
                s.saved_at,
                s.active_at,
            )
        })
        .collect();
    saved.retain(|s| !belongs(&s.group, g));
    for r in &mut g.rules {
        if let RuleState::Alerting(a) = r {
            a.restore_for_state(&mine, ts, o.for_grace_period_ms, o.for_outage_tolerance_ms);
        }
    }
}

/// `GET /metrics`: the telemetry registry (when installed) and the rule manager's metrics,
/// gzipped when the scraper takes it.
async fn metrics(
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    let mut families = axi_obs_core::global_metrics()
        .map(|m| m.snapshot_with_extras().families)
        .unwrap_or_default();
    families.extend(lock(&shared.group_metrics).families());
    crate::exposition::page(
        &headers,
        axi_obs_core::metrics::CONTENT_TYPE,
        axi_obs_core::metrics::render_families(&families),
    )
}

/// Whether a saved group key (`file;name`) names `g` once its path is cleaned: a state file
/// written before rule file paths were cleaned keys `/etc/prom/./rules.yml;g`.
fn same_group_key(saved: &str, g: &GroupState) -> bool {
    saved.match_indices(';').any(|(i, _)| {
        saved[i + 1..] == g.group.name
            && crate::rules::glob::clean(Path::new(&saved[..i])) == g.file
    })
}

/// `POST` or `PUT /-/reload`, as Prometheus: 200 with an empty body, or 500 with the error.
async fn reload(
    axum::Extension(watcher): axum::Extension<tokio::sync::mpsc::Sender<ReloadReply>>,
) -> impl IntoResponse {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let answer = match watcher.send(tx).await {
        Ok(()) => rx
            .await
            .unwrap_or_else(|_| Err("the reload was not done".to_owned())),
        Err(_) => Err("the configuration watcher has stopped".to_owned()),
    };
    match answer {
        Ok(()) => (axum::http::StatusCode::OK, String::new()),
        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// One alert of `/api/v1/alerts`, with Prometheus's fields.
fn alert_json(alert: &crate::rules::Alert) -> serde_json::Value {
    let labels: serde_json::Map<String, serde_json::Value> = alert
        .labels
        .iter()
        .map(|(k, v)| (k.to_owned(), v.into()))
        .collect();
    let mut json = serde_json::json!({
        "labels": labels,
        "annotations": alert.annotations,
        "state": alert.state.as_str(),
        "activeAt": crate::delivery::rfc3339_nano(alert.active_at),
        "value": crate::template::gofmt::format_float(alert.value, 'e', -1),
    });
    // As Prometheus: only while `keep_firing_for` holds the alert.
    if let (Some(since), Some(obj)) = (alert.keep_firing_since, json.as_object_mut()) {
        obj.insert(
            "keepFiringSince".to_owned(),
            crate::delivery::rfc3339_nano(since).into(),
        );
    }
    json
}

/// `/api/v1/alerts` as Prometheus answers it: pending and firing alerts.
/// On a blocking thread: the rules are locked for a whole round of evaluation, which must
/// not hold up the runtime's workers.
async fn alerts(State(shared): State<Arc<Shared>>) -> axum::response::Response {
    let listed = tokio::task::spawn_blocking(move || {
        let rules = lock(&shared.rules);
        let mut out = Vec::new();
        for g in &rules.groups {
            for r in &g.rules {
                let RuleState::Alerting(a) = r else { continue };
                for alert in a.alerts() {
                    if alert.state == AlertState::Inactive {
                        continue;
                    }
                    out.push(alert_json(alert));
                }
            }
        }
        out
    })
    .await;
    match listed {
        Ok(out) => axum::Json(serde_json::json!({"status": "success", "data": {"alerts": out}}))
            .into_response(),
        Err(e) => query_api::answer(Err::<String, _>(query_api::ApiError::internal(e))),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::promql::{Engine, MemStorage};
    use crate::rules::TemplateContext;

    #[test]
    fn alerts_have_prometheus_fields_and_keep_firing_since_only_when_held() {
        let mut alert = crate::rules::Alert {
            labels: crate::promql::Labels::from_pairs([("alertname", "Hot"), ("room", "lab")]),
            annotations: [("summary".to_owned(), "hot".to_owned())].into(),
            state: AlertState::Firing,
            value: f64::INFINITY,
            active_at: 1_700_000_000_000,
            fired_at: Some(1_700_000_000_000),
            resolved_at: None,
            last_sent_at: None,
            keep_firing_since: None,
        };
        let json = alert_json(&alert);
        assert_eq!(
            json,
            serde_json::json!({
                "labels": {"alertname": "Hot", "room": "lab"},
                "annotations": {"summary": "hot"},
                "state": "firing",
                "activeAt": "2023-11-14T22:13:20Z",
                "value": "+Inf",
            })
        );
        alert.keep_firing_since = Some(1_700_000_060_000);
        assert_eq!(
            alert_json(&alert)["keepFiringSince"],
            "2023-11-14T22:14:20Z"
        );
    }

    fn groups(text: &str) -> Vec<GroupState> {
        let (file, _) = crate::rules::parse(text, Path::new("r.yml")).unwrap();
        file.groups
            .into_iter()
            .map(|g| GroupState::new(g).from_file(Path::new("r.yml")))
            .collect()
    }

    #[test]
    fn a_group_whose_rules_changed_is_told_apart() {
        let text = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n";
        let a = groups(text);
        assert!(same_rules(&a[0], &groups(text)[0]));
        for changed in [
            text.replace("up == 0", "up == 1"),
            text.replace("expr: up == 0", "expr: up == 0\n        for: 5m"),
            format!("{text}      - record: r\n        expr: up\n"),
        ] {
            assert!(!same_rules(&a[0], &groups(&changed)[0]), "{changed}");
        }
    }

    #[test]
    fn saved_keys_written_before_paths_were_cleaned_still_name_their_group() {
        let text =
            "groups:\n  - name: 'a;b'\n    rules:\n      - record: x\n        expr: vector(1)\n";
        let (file, _) = crate::rules::parse(text, Path::new("r.yml")).unwrap();
        let g = GroupState::new(file.groups[0].clone()).from_file(Path::new("/etc/prom/rules.yml"));
        assert!(same_group_key("/etc/prom/./rules.yml;a;b", &g));
        assert!(same_group_key("/etc/x/../prom/rules.yml;a;b", &g));
        assert!(!same_group_key("/etc/other/rules.yml;a;b", &g));
        assert!(!same_group_key("/etc/prom/./rules.yml;a", &g));
    }

    /// The groups of `text`, evaluated once at 60 s.
    fn evaluated(text: &str) -> Vec<GroupState> {
        let mut groups = groups(text);
        let mut store = MemStorage::new();
        for g in &mut groups {
            g.eval(
                &Engine::default(),
                &mut store,
                60_000,
                0,
                &TemplateContext::default(),
            );
        }
        groups
    }

    /// A reload carries the alert state and the written series of the rules it keeps; the
    /// series of rules it drops (or changes) are returned for staleness markers.
    #[test]
    fn a_reload_hands_back_the_series_of_rules_that_are_gone() {
        let before = "
groups:
  - name: g
    rules:
      - record: kept:one
        expr: vector(1)
      - record: dropped:two
        expr: vector(2)
      - alert: Firing
        expr: vector(1)
";
        let old = evaluated(before);
        let mut new = groups(
            "
groups:
  - name: g
    rules:
      - record: kept:one
        expr: vector(1)
      - alert: Firing
        expr: vector(1)
",
        );
        let gone = carry_over_state(&old, &mut new);
        let names: Vec<&str> = gone.iter().filter_map(|l| l.get("__name__")).collect();
        assert_eq!(names, ["dropped:two"]);
        // The kept rules carry what they wrote (staleness works for them later) and the
        // alert its state.
        assert_eq!(new[0].written(0).count(), 1);
        // The alert's ALERTS and ALERTS_FOR_STATE.
        assert_eq!(new[0].written(1).count(), 2);
        let RuleState::Alerting(a) = &new[0].rules[1] else {
            unreachable!()
        };
        assert_eq!(a.alerts().len(), 1);
        // A group gone altogether: all of its series.
        let gone = carry_over_state(&old, &mut []);
        assert_eq!(gone.len(), 4);
    }

    /// A changed expression keeps the rule's firing alerts (Prometheus matches rules by name
    /// and labels), so tuning a threshold does not resolve and re-page them.
    #[test]
    fn a_changed_expression_keeps_the_alerts_of_its_rule() {
        let old = evaluated(
            "groups:\n  - name: g\n    rules:\n      - alert: High\n        expr: vector(1) > 0.5\n        for: 5m\n",
        );
        let RuleState::Alerting(before) = &old[0].rules[0] else {
            unreachable!()
        };
        assert_eq!(before.alerts().len(), 1);
        let mut new = groups(
            "groups:\n  - name: g\n    rules:\n      - alert: High\n        expr: vector(1) > 0.4\n        for: 5m\n",
        );
        assert!(carry_over_state(&old, &mut new).is_empty());
        let RuleState::Alerting(after) = &new[0].rules[0] else {
            unreachable!()
        };
        assert_eq!(after.alerts(), before.alerts());
        assert_eq!(new[0].written(0).count(), old[0].written(0).count());
    }

    /// Two rules of one name (different labels) each keep their own series over a reload.
    #[test]
    fn rules_of_one_name_keep_their_own_series() {
        let text = "
groups:
  - name: g
    rules:
      - record: job:x
        expr: vector(1)
        labels: { shard: a }
      - record: job:x
        expr: vector(1)
        labels: { shard: b }
";
        let old = evaluated(text);
        let mut new = groups(text);
        assert!(carry_over_state(&old, &mut new).is_empty());
        for (i, shard) in [(0, "a"), (1, "b")] {
            let series: Vec<_> = new[0].written(i).collect();
            assert_eq!(series.len(), 1);
            assert_eq!(series[0].get("shard"), Some(shard));
        }
    }

    /// Until a group is restored (its second evaluation), the state saved for it is written
    /// back as it was, not its alerts' `activeAt` of the restart: a second restart in that
    /// window keeps the progress of every `for`.
    #[test]
    fn state_waiting_for_its_restore_is_saved_again_as_it_was() {
        let text = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: vector(1) > 0\n        for: 30m\n";
        let groups = evaluated(text);
        let waiting = vec![SavedAlert {
            group: groups[0].key(),
            labels: BTreeMap::from([("alertname".to_owned(), "A".to_owned())]),
            saved_at: 50_000,
            active_at: -1_200_000,
        }];
        let saved = state_to_save(&groups, 61_000, &waiting);
        assert_eq!(saved.len(), 1);
        assert_eq!(
            (saved[0].saved_at, saved[0].active_at),
            (50_000, -1_200_000)
        );
        // Restored (nothing waiting): the alerts as they are.
        let saved = state_to_save(&groups, 61_000, &[]);
        assert_eq!((saved[0].saved_at, saved[0].active_at), (61_000, 60_000));
    }
}
