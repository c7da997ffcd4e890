//! The built-in router's runtime, as Alertmanager's `dispatch/dispatch.go` and the notify
//! pipeline: alerts go to aggregation groups (one per route and group labels), each group
//! flushes after `group_wait` and then every `group_interval`; a flush mutes inhibited and
//! silenced alerts, asks the notification log whether each integration must be notified,
//! delivers, records what was sent and drops the resolved alerts it notified.
//!
//! Time is passed in: [`Dispatcher::insert`] and [`Dispatcher::tick`] take the current time
//! in milliseconds, so the same code runs on a real clock and in exact tests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::config::{Config, Receiver};
use super::inhibit::Inhibitor;
use super::model::{AmAlert, Fingerprint, LabelSet, sort_for_notification};
use super::nflog::{DEFAULT_RETENTION, IntegrationKey, NotificationLog, needs_update};
use super::notification::Notification;
use super::notify::{
    Integration, METRIC_ALERT_LIMIT_REACHED_TOTAL, METRIC_GROUP_LIMIT_REACHED_TOTAL, Notifier,
};
use super::route::{Route, RouteOpts};
use super::silence::Silences;
use super::state;

/// The default cap on aggregation groups.
pub const DEFAULT_MAX_GROUPS: usize = 10_000;
/// The default cap on alerts in one aggregation group.
pub const DEFAULT_MAX_ALERTS_PER_GROUP: usize = 10_000;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// How a [`Dispatcher`] runs.
#[derive(Debug, Clone)]
pub struct DispatcherOptions {
    /// This instance's URL, in every notification. Defaults to empty.
    pub external_url: String,
    /// At most this many aggregation groups; alerts for further groups are refused and
    /// counted. Defaults to [`DEFAULT_MAX_GROUPS`].
    pub max_groups: usize,
    /// At most this many alerts in one group; further alerts are refused and counted.
    /// Defaults to [`DEFAULT_MAX_ALERTS_PER_GROUP`].
    pub max_alerts_per_group: usize,
    /// How long notification log entries and expired silences are kept. Defaults to
    /// [`DEFAULT_RETENTION`] (120 h).
    pub retention: Duration,
    /// Where the notification log and the silences are persisted (written atomically after
    /// every change, read by [`Dispatcher::new`]). Defaults to none: nothing persisted.
    pub state_file: Option<PathBuf>,
}

impl Default for DispatcherOptions {
    fn default() -> Self {
        DispatcherOptions {
            external_url: String::new(),
            max_groups: DEFAULT_MAX_GROUPS,
            max_alerts_per_group: DEFAULT_MAX_ALERTS_PER_GROUP,
            retention: DEFAULT_RETENTION,
            state_file: None,
        }
    }
}

/// Why the dispatcher could not start or persist.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The configuration has no `route`.
    #[error("the configuration has no route")]
    NoRoute,
    /// The state file could not be read or written.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The state file is not a snapshot we wrote.
    #[error("state file {path}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// What became of an inserted alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Inserted {
    /// Groups that hold the alert now.
    pub groups: usize,
    /// Groups that refused it because a limit was reached.
    pub refused: usize,
}

/// One integration's share of a flush: what to send and what to log once it is sent.
#[derive(Debug, Clone)]
pub struct Job {
    /// The integration's key in the notification log.
    pub key: IntegrationKey,
    /// The integration.
    pub integration: Integration,
    /// The notification, its reason set by the dedup rules.
    pub notification: Notification,
    /// Fingerprints of the firing alerts notified.
    pub firing: BTreeSet<u64>,
    /// Fingerprints of the resolved alerts notified.
    pub resolved: BTreeSet<u64>,
    repeat_interval: Duration,
}

/// One aggregation group's flush: the notifications its integrations need (possibly none)
/// and the alerts it saw, to drop the resolved ones once every integration succeeded.
#[derive(Debug, Clone)]
pub struct Flush {
    /// The group key.
    pub group_key: String,
    /// The receiver.
    pub receiver: String,
    /// The flush time (ms).
    pub now_ms: i64,
    /// Notifications to send.
    pub jobs: Vec<Job>,
    /// Alerts muted by inhibition or a silence at this flush.
    pub muted: usize,
    alerts: Vec<AmAlert>,
}

/// What a [`Dispatcher::tick`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Groups flushed.
    pub flushed: usize,
    /// Notifications delivered (requests accepted or nothing to send).
    pub sent: usize,
    /// Notifications that failed after their retries; they are tried again at the group's
    /// next flush.
    pub failed: usize,
}

#[derive(Debug, Clone)]
struct Group {
    opts: RouteOpts,
    labels: LabelSet,
    alerts: BTreeMap<Fingerprint, AmAlert>,
    next_flush_ms: i64,
    has_flushed: bool,
}

/// The built-in router: aggregation groups with their timers, inhibition, silences, the
/// notification log, and delivery through [`Notifier`].
///
/// ```
/// use std::path::Path;
/// use axi_obs_alert::delivery::{AmAlert, Config, Dispatcher, DispatcherOptions, LabelSet};
///
/// let cfg = Config::parse(r#"
/// route: {receiver: hook, group_by: [alertname], group_wait: 30s}
/// receivers:
/// - name: hook
///   webhook_configs: [{url: "http://127.0.0.1:9/"}]
/// "#, Path::new("am.yml")).unwrap();
/// let mut d = Dispatcher::new(&cfg, DispatcherOptions::default(), 0).unwrap();
/// let alert = AmAlert {
///     labels: LabelSet::from([("alertname".to_string(), "Down".to_string())]),
///     annotations: LabelSet::new(), starts_at: 0, ends_at: None, generator_url: String::new(),
/// };
/// d.insert(alert, 0);
/// assert_eq!(d.next_flush_ms(), Some(30_000));
/// assert!(d.due(29_999).is_empty());
/// let flushes = d.due(30_000);
/// assert_eq!(flushes[0].jobs[0].notification.reason.as_str(), "first notification");
/// ```
#[derive(Debug)]
pub struct Dispatcher {
    tree: Route,
    receivers: HashMap<String, Receiver>,
    inhibitor: Inhibitor,
    silences: Silences,
    nflog: NotificationLog,
    groups: BTreeMap<(String, String), Group>,
    resolve_timeout: Duration,
    opts: DispatcherOptions,
    groups_refused: u64,
    alerts_refused: u64,
    /// The silences may have changed since the last snapshot.
    dirty: bool,
}

impl Dispatcher {
    /// A dispatcher for `config` (validated by [`Config::parse`]); reads the notification
    /// log and silences from the state file when one is set and exists, dropping what
    /// expired before `now_ms`.
    ///
    /// # Errors
    ///
    /// When the configuration has no route or the state file cannot be read.
    pub fn new(
        config: &Config,
        opts: DispatcherOptions,
        now_ms: i64,
    ) -> Result<Dispatcher, DispatchError> {
        let route = config.route.as_ref().ok_or(DispatchError::NoRoute)?;
        let mut d = Dispatcher {
            tree: Route::from_config(route),
            receivers: config
                .receivers
                .iter()
                .map(|r| (r.name.clone(), r.clone()))
                .collect(),
            inhibitor: Inhibitor::new(&config.inhibit_rules),
            silences: Silences::new(opts.retention),
            nflog: NotificationLog::new(opts.retention),
            groups: BTreeMap::new(),
            resolve_timeout: config.global.resolve_timeout.0,
            opts,
            groups_refused: 0,
            alerts_refused: 0,
            dirty: false,
        };
        if let Some(path) = d.opts.state_file.clone() {
            d.load(&path, now_ms)?;
        }
        Ok(d)
    }

    fn load(&mut self, path: &Path, now_ms: i64) -> Result<(), DispatchError> {
        let Some(snap) = state::read(path)? else {
            return Ok(());
        };
        self.nflog.restore(snap.nflog, now_ms);
        self.silences
            .restore(snap.silences)
            .map_err(|message| DispatchError::Corrupt {
                path: path.to_path_buf(),
                message,
            })?;
        self.silences.gc(now_ms);
        Ok(())
    }

    /// Writes the notification log and the silences to the state file (if one is set):
    /// a temporary file in the same directory, synced, then renamed over the old one, so a
    /// crash leaves either the old or the new snapshot.
    ///
    /// # Errors
    ///
    /// When writing fails.
    pub fn persist(&mut self) -> Result<(), DispatchError> {
        let Some(path) = &self.opts.state_file else {
            return Ok(());
        };
        state::write_atomic(path, &self.snapshot_bytes()).map_err(|source| DispatchError::Io {
            path: path.clone(),
            source,
        })?;
        self.dirty = false;
        Ok(())
    }

    /// [`persist`](Dispatcher::persist) with the file written on Tokio's blocking pool.
    ///
    /// # Errors
    ///
    /// When writing fails.
    pub async fn persist_async(&mut self) -> Result<(), DispatchError> {
        let Some(path) = self.opts.state_file.clone() else {
            return Ok(());
        };
        let bytes = self.snapshot_bytes();
        let target = path.clone();
        tokio::task::spawn_blocking(move || state::write_atomic(&target, &bytes))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            .map_err(|source| DispatchError::Io { path, source })?;
        self.dirty = false;
        Ok(())
    }

    fn snapshot_bytes(&self) -> Vec<u8> {
        state::encode(&self.nflog, &self.silences)
    }

    /// Takes an alert received at `now_ms` (an alert without an end gets
    /// `now + resolve_timeout`, as Alertmanager's API does) into every group its routes
    /// give. A new group flushes `group_wait` later; a group that never flushed flushes at
    /// once for an alert older than `group_wait`.
    pub fn insert(&mut self, mut alert: AmAlert, now_ms: i64) -> Inserted {
        if alert.ends_at.is_none() {
            alert.ends_at = Some(now_ms.saturating_add(ms(self.resolve_timeout)));
        }
        let fp = alert.fingerprint();
        let mut out = Inserted::default();
        let targets: Vec<(String, RouteOpts, LabelSet)> = self
            .tree
            .matches(&alert.labels)
            .into_iter()
            .map(|r| {
                (
                    r.group_key(&alert.labels),
                    r.opts.clone(),
                    r.group_labels(&alert.labels),
                )
            })
            .collect();
        for (group_key, opts, labels) in targets {
            let id = (group_key, opts.receiver.clone());
            if !self.groups.contains_key(&id) && self.groups.len() >= self.opts.max_groups {
                self.groups_refused += 1;
                metrics::counter!(METRIC_GROUP_LIMIT_REACHED_TOTAL).increment(1);
                out.refused += 1;
                continue;
            }
            let group = self.groups.entry(id).or_insert_with(|| Group {
                next_flush_ms: now_ms.saturating_add(ms(opts.group_wait)),
                opts,
                labels,
                alerts: BTreeMap::new(),
                has_flushed: false,
            });
            let full = group.alerts.len() >= self.opts.max_alerts_per_group;
            match group.alerts.get_mut(&fp) {
                Some(old) => {
                    let starts_at = if old.resolved_at(now_ms) {
                        alert.starts_at
                    } else {
                        old.starts_at.min(alert.starts_at)
                    };
                    *old = alert.clone();
                    old.starts_at = starts_at;
                }
                None if full => {
                    self.alerts_refused += 1;
                    metrics::counter!(METRIC_ALERT_LIMIT_REACHED_TOTAL).increment(1);
                    out.refused += 1;
                    continue;
                }
                None => {
                    group.alerts.insert(fp, alert.clone());
                }
            }
            if !group.has_flushed
                && alert.starts_at.saturating_add(ms(group.opts.group_wait)) < now_ms
            {
                group.next_flush_ms = now_ms;
            }
            out.groups += 1;
        }
        if out.groups > 0 {
            self.inhibitor.observe(&alert);
        }
        out
    }

    /// The earliest time a group is due to flush.
    pub fn next_flush_ms(&self) -> Option<i64> {
        self.groups.values().map(|g| g.next_flush_ms).min()
    }

    /// Flushes the groups due at `now_ms` (their next flush moves `group_interval` ahead):
    /// mutes inhibited and silenced alerts and applies the dedup rules per integration.
    /// Deliver each [`Job`] and report with [`complete`](Dispatcher::complete), or let
    /// [`tick`](Dispatcher::tick) do both.
    pub fn due(&mut self, now_ms: i64) -> Vec<Flush> {
        self.nflog.gc(now_ms);
        self.silences.gc(now_ms);
        self.inhibitor.gc(now_ms);
        let mut flushes = Vec::new();
        for ((group_key, receiver), g) in &mut self.groups {
            if g.next_flush_ms > now_ms {
                continue;
            }
            g.next_flush_ms = now_ms.saturating_add(ms(g.opts.group_interval));
            g.has_flushed = true;
            let mut alerts: Vec<AmAlert> = g.alerts.values().cloned().collect();
            sort_for_notification(&mut alerts);
            let (kept, muted): (Vec<AmAlert>, Vec<AmAlert>) =
                alerts.iter().cloned().partition(|a| {
                    !self.inhibitor.mutes(&a.labels, now_ms)
                        && !self.silences.mutes(&a.labels, now_ms)
                });
            let mut jobs = Vec::new();
            if !kept.is_empty()
                && let Some(r) = self.receivers.get(receiver)
            {
                let mut firing = BTreeSet::new();
                let mut resolved = BTreeSet::new();
                for a in &kept {
                    if a.resolved_at(now_ms) {
                        resolved.insert(a.fingerprint().0);
                    } else {
                        firing.insert(a.fingerprint().0);
                    }
                }
                for (index, integration) in integrations(r).into_iter() {
                    let key = IntegrationKey {
                        receiver: receiver.clone(),
                        integration: integration.name().to_string(),
                        index,
                    };
                    let entry = self.nflog.get(group_key, &key, now_ms);
                    let Some(reason) = needs_update(
                        entry,
                        &firing,
                        &resolved,
                        integration.send_resolved(),
                        g.opts.repeat_interval,
                        now_ms,
                    ) else {
                        continue;
                    };
                    jobs.push(Job {
                        key,
                        notification: Notification {
                            receiver: receiver.clone(),
                            group_key: group_key.clone(),
                            group_labels: g.labels.clone(),
                            alerts: kept.clone(),
                            reason,
                            now_ms,
                            external_url: self.opts.external_url.clone(),
                        },
                        integration,
                        firing: firing.clone(),
                        resolved: resolved.clone(),
                        repeat_interval: g.opts.repeat_interval,
                    });
                }
            }
            flushes.push(Flush {
                group_key: group_key.clone(),
                receiver: receiver.clone(),
                now_ms,
                jobs,
                muted: muted.len(),
                alerts,
            });
        }
        flushes
    }

    /// Reports how the jobs of `flush` went (`ok[i]` for `flush.jobs[i]`): successful ones
    /// are written to the notification log; when all succeeded, the resolved alerts the
    /// flush saw (and that did not change since) leave the group, and an empty group is
    /// dropped.
    pub fn complete(&mut self, flush: &Flush, ok: &[bool]) {
        for (job, ok) in flush.jobs.iter().zip(ok) {
            if *ok {
                self.nflog.log(
                    &flush.group_key,
                    &job.key,
                    &job.firing,
                    &job.resolved,
                    flush.now_ms,
                    job.repeat_interval,
                );
            }
        }
        if ok.len() < flush.jobs.len() || ok.iter().any(|o| !o) {
            return;
        }
        let id = (flush.group_key.clone(), flush.receiver.clone());
        let Some(g) = self.groups.get_mut(&id) else {
            return;
        };
        for a in flush.alerts.iter().filter(|a| a.resolved_at(flush.now_ms)) {
            let fp = a.fingerprint();
            if g.alerts.get(&fp) == Some(a) {
                g.alerts.remove(&fp);
            }
        }
        if g.alerts.is_empty() {
            self.groups.remove(&id);
        }
    }

    /// Flushes what is due at `now_ms`, delivers through `notifier` (all notifications of
    /// the tick concurrently, each with its retries), records the outcome and persists the
    /// state. Returns when every delivery has finished.
    ///
    /// # Errors
    ///
    /// When the state cannot be persisted (deliveries happened and are in memory).
    pub async fn tick(
        &mut self,
        now_ms: i64,
        notifier: &Notifier,
    ) -> Result<TickReport, DispatchError> {
        let flushes = self.due(now_ms);
        let mut report = TickReport {
            flushed: flushes.len(),
            ..TickReport::default()
        };
        let mut ok: Vec<Vec<bool>> = flushes.iter().map(|f| vec![false; f.jobs.len()]).collect();
        let mut set = tokio::task::JoinSet::new();
        for (i, f) in flushes.iter().enumerate() {
            for (j, job) in f.jobs.iter().enumerate() {
                let notifier = notifier.clone();
                let integration = job.integration.clone();
                let notification = job.notification.clone();
                set.spawn(async move {
                    let good = notifier.deliver(&integration, &notification).await.is_ok();
                    (i, j, good)
                });
            }
        }
        while let Some(done) = set.join_next().await {
            // A delivery task that panicked counts as failed: its slot stays `false`.
            if let Ok((i, j, good)) = done {
                ok[i][j] = good;
            }
        }
        let mut changed = false;
        for (f, ok) in flushes.iter().zip(&ok) {
            for good in ok {
                if *good {
                    report.sent += 1;
                } else {
                    report.failed += 1;
                }
            }
            changed |= ok.iter().any(|o| *o);
            self.complete(f, ok);
        }
        if changed || self.dirty {
            self.persist_async().await?;
        }
        Ok(report)
    }

    /// The silences, to create, list and expire them. Changes are written at the next
    /// [`tick`](Dispatcher::tick); call [`persist`](Dispatcher::persist) to write them at
    /// once.
    pub fn silences_mut(&mut self) -> &mut Silences {
        self.dirty = true;
        &mut self.silences
    }

    /// The silences.
    pub fn silences(&self) -> &Silences {
        &self.silences
    }

    /// The notification log.
    pub fn nflog(&self) -> &NotificationLog {
        &self.nflog
    }

    /// How many aggregation groups exist.
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// How many alerts the groups hold in all.
    pub fn alert_count(&self) -> usize {
        self.groups.values().map(|g| g.alerts.len()).sum()
    }

    /// The alerts of the group with this key and receiver, in notification order.
    pub fn group_alerts(&self, group_key: &str, receiver: &str) -> Vec<AmAlert> {
        let mut v: Vec<AmAlert> = self
            .groups
            .get(&(group_key.to_string(), receiver.to_string()))
            .map(|g| g.alerts.values().cloned().collect())
            .unwrap_or_default();
        sort_for_notification(&mut v);
        v
    }

    /// Groups refused so far because [`DispatcherOptions::max_groups`] was reached.
    pub fn groups_refused(&self) -> u64 {
        self.groups_refused
    }

    /// Alerts refused so far because a group was full.
    pub fn alerts_refused(&self) -> u64 {
        self.alerts_refused
    }

    /// Whether an alert with `labels` is muted at `now_ms` (inhibited or silenced).
    pub fn is_muted(&self, labels: &LabelSet, now_ms: i64) -> bool {
        self.inhibitor.mutes(labels, now_ms) || self.silences.mutes(labels, now_ms)
    }
}

fn integrations(r: &Receiver) -> Vec<(usize, Integration)> {
    let mut v: Vec<(usize, Integration)> = Vec::new();
    v.extend(
        r.webhook_configs
            .iter()
            .cloned()
            .map(Integration::Webhook)
            .enumerate(),
    );
    v.extend(
        r.dingtalk_configs
            .iter()
            .cloned()
            .map(Integration::DingTalk)
            .enumerate(),
    );
    v.extend(
        r.wecom_configs
            .iter()
            .cloned()
            .map(Integration::WeCom)
            .enumerate(),
    );
    v
}
